"""AMQP 0-9-1 framing (spec 2.3.5 / 4.2.3): protocol header, frame header (type, channel, size), frame-end
octet, and the server → client frame builders, with the hot ones (basic.deliver + content, basic.ack,
basic.nack) written by hand with precompiled ``struct.Struct``\\s.

Frame layout: ``type:u8 channel:u16 size:u32 payload[size] 0xCE``. Method payload: ``class:u16 method:u16
args``. Content header payload: ``class:u16 weight:u16(=0) body_size:u64 property_flags:u16
property_list``. Body payload: raw bytes. Heartbeat: type 8, channel 0, empty payload.

Limits (named, with RabbitMQ's value): see the constants below. frame_max counts the whole frame (header
and end octet, spec 4.2.3: "the total frame size"), so a body frame carries at most ``frame_max - 8``
bytes; RabbitMQ accepts an incoming frame whose *payload* is up to frame_max (a FRAME_SIZE_FUDGE of 8 for
clients that get it wrong, rabbit_reader handle_input) and so do we.

Run ``python bench/amqp_codec.py`` before changing :func:`deliver` or :func:`content_frames`.

Rules: no I/O; imports nothing of ours but this package.
"""

from __future__ import annotations

import struct

from omnibus.wire.amqp import methods as _m
from omnibus.wire.amqp.errors import AMQPError, SEND_CLOSE_AND_DROP, SEND_HEADER_AND_DROP, DROP

__all__ = [
    "PROTOCOL_HEADER", "FRAME_METHOD", "FRAME_HEADER", "FRAME_BODY", "FRAME_HEARTBEAT", "FRAME_END",
    "FRAME_HEADER_SIZE", "FRAME_OVERHEAD", "FRAME_MIN_SIZE", "FRAME_MAX_DEFAULT", "CHANNEL_MAX_DEFAULT",
    "HEARTBEAT_DEFAULT", "MAX_MESSAGE_SIZE", "HEARTBEAT", "method_frame", "content_frames", "deliver",
    "get_ok", "basic_return", "ack", "nack", "connection_close", "channel_close", "error_bytes",
]

#: What a 0-9-1 client sends first and what we answer to a header we do not speak (spec 4.2.2).
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
#: type + channel + size.
FRAME_HEADER_SIZE = 7
#: Header plus end octet: an empty frame (rabbit.hrl EMPTY_FRAME_SIZE = 8).
FRAME_OVERHEAD = 8
#: Smallest frame_max a peer may ask for, and the limit before tune-ok (spec FRAME-MIN-SIZE = 4096;
#: RabbitMQ initial_frame_max defaults to it).
FRAME_MIN_SIZE = 4096
#: frame_max the server offers in connection.tune (RabbitMQ ``frame_max`` default 131072).
FRAME_MAX_DEFAULT = 131072
#: channel_max the server offers (RabbitMQ ``channel_max`` default 2047).
CHANNEL_MAX_DEFAULT = 2047
#: heartbeat (seconds) the server offers (RabbitMQ ``heartbeat`` default 60).
HEARTBEAT_DEFAULT = 60
#: Largest body a publish may declare (RabbitMQ ``max_message_size`` default 128 MiB = 134217728 since
#: 3.8; its hard cap ?MAX_MSG_SIZE is 512 MiB).
MAX_MESSAGE_SIZE = 134217728

_HDR = struct.Struct(">BHI")
_METHOD_HEAD = struct.Struct(">BHIHH")  # frame header + class id + method id
_CONTENT_HEAD = struct.Struct(">BHIHHQ")  # frame header + class + weight + body size
_ACK = struct.Struct(">BHIHHQBB")  # whole basic.ack frame (+ end octet)
_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_Q_B = struct.Struct(">QB")
_END = b"\xce"

#: The heartbeat frame.
HEARTBEAT = _HDR.pack(FRAME_HEARTBEAT, 0, 0) + _END


def method_frame(channel: int, method: tuple) -> bytes:
    """A method frame for any method NamedTuple of :mod:`.methods`."""
    payload = _m.encode_method(method)
    return _HDR.pack(FRAME_METHOD, channel, len(payload)) + payload + _END


def content_frames(channel: int, class_id: int, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """Content header frame + body frames (each at most ``frame_max`` bytes in all; 0 = no limit).
    An empty body sends no body frame (as RabbitMQ, rabbit_binary_generator build_content_frames).
    Empty ``properties`` (a message that came from another protocol) are sent as property flags 0."""
    if not properties:
        properties = b"\x00\x00"
    blen = len(body)
    head = _CONTENT_HEAD.pack(FRAME_HEADER, channel, 12 + len(properties), class_id, 0, blen) + properties + _END
    if not blen:
        return head
    chunk = frame_max - FRAME_OVERHEAD if frame_max else blen
    if blen <= chunk:
        return b"".join((head, _HDR.pack(FRAME_BODY, channel, blen), body, _END))
    parts = [head]
    mv = memoryview(body)
    for i in range(0, blen, chunk):
        piece = mv[i:i + chunk]
        parts.append(_HDR.pack(FRAME_BODY, channel, len(piece)))
        parts.append(piece)
        parts.append(_END)
    return b"".join(parts)


def _short(s: str | bytes) -> bytes:
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    if len(b) > 255:
        raise ValueError("short string longer than 255 bytes")
    return _U8.pack(len(b)) + b


def deliver(channel: int, consumer_tag: str | bytes, delivery_tag: int, redelivered: bool, exchange: str | bytes,
            routing_key: str | bytes, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """basic.deliver (60, 60) + content header + body frames, ready to write. ``properties`` are the raw
    property bytes the publisher sent. Hot path: run bench/amqp_codec.py before changing."""
    args = b"".join((_short(consumer_tag), _Q_B.pack(delivery_tag, 1 if redelivered else 0), _short(exchange),
                     _short(routing_key)))
    return b"".join((_METHOD_HEAD.pack(FRAME_METHOD, channel, 4 + len(args), 60, 60), args, _END,
                     content_frames(channel, 60, properties, body, frame_max)))


def get_ok(channel: int, delivery_tag: int, redelivered: bool, exchange: str | bytes, routing_key: str | bytes,
           message_count: int, properties: bytes, body: bytes, frame_max: int) -> bytes:
    """basic.get-ok (60, 71) + content."""
    args = b"".join((_Q_B.pack(delivery_tag, 1 if redelivered else 0), _short(exchange), _short(routing_key),
                     _U32.pack(message_count)))
    return b"".join((_METHOD_HEAD.pack(FRAME_METHOD, channel, 4 + len(args), 60, 71), args, _END,
                     content_frames(channel, 60, properties, body, frame_max)))


def basic_return(channel: int, reply_code: int, reply_text: str, exchange: str | bytes, routing_key: str | bytes,
                 properties: bytes, body: bytes, frame_max: int) -> bytes:
    """basic.return (60, 50) + content (mandatory publish that was not routed: 312 NO_ROUTE)."""
    args = b"".join((struct.pack(">H", reply_code), _short(reply_text), _short(exchange), _short(routing_key)))
    return b"".join((_METHOD_HEAD.pack(FRAME_METHOD, channel, 4 + len(args), 60, 50), args, _END,
                     content_frames(channel, 60, properties, body, frame_max)))


def ack(channel: int, delivery_tag: int, multiple: bool = False) -> bytes:
    """basic.ack (60, 80) frame: a publisher confirm."""
    return _ACK.pack(FRAME_METHOD, channel, 13, 60, 80, delivery_tag, 1 if multiple else 0, FRAME_END)


_NACK = struct.Struct(">BHIHHQBB")


def nack(channel: int, delivery_tag: int, multiple: bool = False, requeue: bool = False) -> bytes:
    """basic.nack (60, 120) frame: a negative publisher confirm (requeue is meaningless server-side)."""
    bits = (1 if multiple else 0) | (2 if requeue else 0)
    return _NACK.pack(FRAME_METHOD, channel, 13, 60, 120, delivery_tag, bits, FRAME_END)


def connection_close(reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    return method_frame(0, _m.ConnectionClose(reply_code, reply_text, class_id, method_id))  # type: ignore[attr-defined]


def channel_close(channel: int, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0) -> bytes:
    return method_frame(channel, _m.ChannelClose(reply_code, reply_text, class_id, method_id))  # type: ignore[attr-defined]


def error_bytes(err: AMQPError) -> bytes:
    """What to write for an error before closing (or, for channel scope, carrying on)."""
    if err.action == SEND_HEADER_AND_DROP:
        return PROTOCOL_HEADER
    if err.action == DROP:
        return b""
    if err.scope == "channel":
        return channel_close(err.channel, err.reply_code, err.reply_text, err.class_id, err.method_id)
    return connection_close(err.reply_code, err.reply_text, err.class_id, err.method_id)


del SEND_CLOSE_AND_DROP
