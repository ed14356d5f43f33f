"""Encoder for the NATS client protocol, server → client direction (INFO, MSG, HMSG, PING, PONG, +OK, -ERR).

Strategy: each op is one ``bytes`` built with a single ``%`` format (or ``join``), ready for one
``transport.write``. Text arguments may be ``str`` or ``bytes``; ``str`` is encoded as UTF-8 with
``surrogateescape``, the inverse of the parser's decoding, so a subject goes back on the wire exactly as
the client sent it. For fan-out, :func:`msg_parts` / :func:`hmsg_parts` build everything but the sid once
(``head + sid + tail`` per subscriber), so the size digits and reply are not formatted again per sid.
Run ``python bench/nats_parser.py`` (encoder section) before changing ``msg`` or the parts.

Byte formats follow nats-server server/client.go: ``msgHeader`` (``MSG <subject> <sid> [reply] <#bytes>``,
``HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>``), ``errProto`` (``-ERR '%s'``),
``pingProto``/``pongProto``/``okProto``, util.go ``generateInfoJSON`` (``INFO <json> \\r\\n``, with a space
before the CRLF), and ``processInboundClientMsg``'s no-responders status message.

Rules: never awaits, never touches a socket or a clock; imports nothing of ours. No validation: callers
pass subjects and sids they already checked.
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

__all__ = [
    "PING", "PONG", "OK", "info", "msg", "hmsg", "err", "msg_parts", "hmsg_parts", "status_hmsg",
    "no_responders", "HEADER_VERSION",
]

PING = b"PING\r\n"  # client.go pingProto
PONG = b"PONG\r\n"  # client.go pongProto
OK = b"+OK\r\n"  # client.go okProto
#: First line of a header block (client.go hdrLine "NATS/1.0\r\n" without the CRLF).
HEADER_VERSION = b"NATS/1.0"

Text = str | bytes


def _b(s: Text | bytearray | memoryview) -> bytes:
    if type(s) is bytes:
        return s
    if type(s) is str:
        return s.encode("utf-8", "surrogateescape")
    return bytes(s)


def info(options: dict[str, Any]) -> bytes:
    """``INFO {json} \\r\\n`` (nats-server joins "INFO", the JSON and CRLF with spaces)."""
    return b"INFO " + orjson.dumps(options) + b" \r\n"


def err(message: str) -> bytes:
    """``-ERR '<message>'\\r\\n``."""
    return b"-ERR '" + message.encode("utf-8", "surrogateescape") + b"'\r\n"


def msg(subject: Text, sid: Text, reply: Text | None, payload: bytes) -> bytes:
    """``MSG <subject> <sid> [reply] <#bytes>\\r\\n<payload>\\r\\n``."""
    if reply:
        return b"MSG %b %b %b %d\r\n%b\r\n" % (_b(subject), _b(sid), _b(reply), len(payload), payload)
    return b"MSG %b %b %d\r\n%b\r\n" % (_b(subject), _b(sid), len(payload), payload)


def hmsg(subject: Text, sid: Text, reply: Text | None, headers: bytes, payload: bytes) -> bytes:
    """``HMSG <subject> <sid> [reply] <#header bytes> <#total bytes>\\r\\n<headers><payload>\\r\\n``."""
    hl = len(headers)
    if reply:
        return b"HMSG %b %b %b %d %d\r\n%b%b\r\n" % (_b(subject), _b(sid), _b(reply), hl, hl + len(payload),
                                                   headers, payload)
    return b"HMSG %b %b %d %d\r\n%b%b\r\n" % (_b(subject), _b(sid), hl, hl + len(payload), headers, payload)


def msg_parts(subject: Text, reply: Text | None, payload: bytes) -> tuple[bytes, bytes]:
    """``(head, tail)`` such that ``head + sid + tail`` is :func:`msg` for ``sid`` (bytes).

    For fan-out: build once per published message, then one concatenation per subscriber.
    """
    if reply:
        return b"MSG " + _b(subject) + b" ", b" %b %d\r\n%b\r\n" % (_b(reply), len(payload), payload)
    return b"MSG " + _b(subject) + b" ", b" %d\r\n%b\r\n" % (len(payload), payload)


def hmsg_parts(subject: Text, reply: Text | None, headers: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """``(head, tail)`` such that ``head + sid + tail`` is :func:`hmsg` for ``sid`` (bytes)."""
    hl = len(headers)
    if reply:
        tail = b" %b %d %d\r\n%b%b\r\n" % (_b(reply), hl, hl + len(payload), headers, payload)
    else:
        tail = b" %d %d\r\n%b%b\r\n" % (hl, hl + len(payload), headers, payload)
    return b"HMSG " + _b(subject) + b" ", tail


def status_hmsg(subject: Text, sid: Text, status_code: int, description: str = "",
                headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A status message with no payload: ``HMSG <subject> <sid> <n> <n>\\r\\nNATS/1.0 <code>[ <description>]\\r\\n
    [<name>: <value>\\r\\n ...]\\r\\n\\r\\n`` (as nats-server sends 503 no-responders, 408 timeouts, 100 idle
    heartbeats)."""
    block = b"NATS/1.0 %d" % status_code
    if description:
        block += b" " + _b(description)
    block += b"\r\n"
    for name, value in headers:
        block += _b(name) + b": " + _b(value) + b"\r\n"
    block += b"\r\n"
    return hmsg(subject, sid, None, block, b"")


def no_responders(reply: Text, sid: Text, subject: Text) -> bytes:
    """nats-server's answer to a request nobody received, byte for byte (client.go, no_responders branch
    of ``processInboundClientMsg``, nats-server >= 2.12): ``HMSG <reply> <sid> <n> <n>\\r\\nNATS/1.0 503\\r\\n
    Nats-Subject: <subject>\\r\\n\\r\\n\\r\\n`` with ``n = 32 + len(subject)``. (Before 2.12 it sent the block
    without the Nats-Subject header, which is ``status_hmsg(reply, sid, 503)``.)"""
    return hmsg(reply, sid, None, b"NATS/1.0 503\r\nNats-Subject: " + _b(subject) + b"\r\n\r\n", b"")
