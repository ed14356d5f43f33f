"""The server side of one AMQP 0-9-1 connection, sans-IO (h11 style): bytes in → events out, methods in →
bytes out. It checks the protocol header, splits frames, enforces frame_max and the frame-end octet,
assembles content per channel, applies the connection and channel tables of :mod:`.states`, negotiates
tune values, and reports every violation as an :class:`~.errors.AMQPError` with RabbitMQ 3.10's reply
code, text, class/method ids, scope and closing action.

Contract (one connection per object; event-loop thread only; never awaits, no socket, no clock):

- ``receive_data(data)`` only buffers. Chunks are kept in a list and joined once a whole frame is there,
  so a large body arriving in many reads is copied once.
- ``events()`` parses every complete frame and returns the events as a list, one call per
  ``data_received`` (the fast path). An error is the **last item** of the list (an ``AMQPError``
  instance). A connection-scope error stops parsing for this call; after one whose ``action`` is
  ``SEND_CLOSE`` the connection is CLOSING and later calls drop everything but connection.close /
  close-ok (RabbitMQ's closing state); after any other action it is dead (CLOSED) and ``events()``
  returns ``[]``. A channel-scope error (406 oversized message) moves that channel to CLOSING, parsing
  goes on.
- ``next_event()`` returns one event, :data:`NEED_DATA`, or raises the error (h11's interface).
- ``send(channel, method)`` returns the frame bytes and moves the state (connection.start/tune/open-ok/
  close/close-ok, channel.close/close-ok). ``deliver``/``ack``/``nack``/``get_ok``/``basic_return`` return
  ready frames using the negotiated frame_max. After an error, write ``frames.error_bytes(err)``; the
  codec already moved its own state, so do not also ``send`` that close.

Events (NamedTuples):
    ProtocolHeader(major, minor, revision)          good header; answer connection.start
    MethodFrame(channel, method)                    any method without content (methods.* NamedTuple)
    Publish(channel, exchange, routing_key, mandatory, immediate, properties, body)
                                                    basic.publish + header + body in one event;
                                                    properties: the raw property bytes, forward as is
Any received byte is proof of life for heartbeat purposes: heartbeat frames produce no event.

What is checked here, with RabbitMQ's answer (rabbit_reader.erl, rabbit_command_assembler.erl,
rabbit_channel.erl of 3.10; all observed on RabbitMQ 3.10.8, tests/wire/test_amqp_connection.py):
- Protocol header other than ``AMQP 0 0 9 1`` (or ``AMQP 1 1 0 9``, 0-9, which RabbitMQ treats as
  0-9-1): write ours and close (refuse_connection) → action SEND_HEADER_AND_DROP.
- Frame payload > frame_max (4096 until tune-ok): 501 ``type T, all octets = <<>>: {frame_too_large,
  N,frame_max-8}``; frame-end octet not 0xCE: 501 ``..: {invalid_frame_end_marker,N}``; both
  SEND_CLOSE_AND_DROP (fatal_frame_error: the stream lost sync).
- Unknown frame type, a method payload under 4 bytes, a content header under 14, a heartbeat with a
  payload: 501 ``type T, all octets = <<..>>: unknown_frame`` (analyze_frame → error).
- Content header/body on channel 0, heartbeat on another channel: 505 ``type T, all octets = ...``.
- Content assembly (rabbit_command_assembler process/2), 505 with the content method's ids:
  ``expected method frame, got non method frame instead``; ``expected content header for class 60,
  got non content header frame instead`` (also for a header with weight ≠ 0);
  ``expected content header for class 60, got one for class C instead``;
  ``expected content body, got non content body frame instead``. A body frame past the declared size:
  RabbitMQ 3.10 waits forever (it only notices at the next frame); RabbitMQ 4 answers 501
  ``content body frame exceeds remaining content size`` at once, which we do.
- basic.publish with immediate=true: 540 ``immediate=true`` (rabbit_channel), after the content.
- Body size over max_message_size (128 MiB): channel error 406 ``message size N is larger than
  configured max size M`` (rabbit_channel check_msg_size), after the content (the body is dropped as it
  arrives, not buffered).
- Channel count over the negotiated channel_max on channel.open: 530 ``number of channels opened (N)
  has reached the negotiated channel_max (M)``. Channel *numbers* above channel_max are accepted, as
  RabbitMQ 3.10 does.
- tune-ok values: 530 ``negotiated frame_max = 100 is lower than the minimum allowed value (4096)``,
  ``... is higher than the maximum allowed value (131072)``, ``negotiated channel_max = 0 (no limit) is
  higher than the maximum allowed value (2047)`` with class/method connection.tune (10, 30); the text is
  for the log: see the next rule.
- Any error before tune-ok (RabbitMQ's states starting, securing, tuning) gets action DROP: RabbitMQ 3.10.8
  answers nothing and closes (observed; rabbit_reader handshake_error). From ``opening`` on it answers with
  connection.close; a channel frame in ``opening`` is 505 ``type T, all octets = ...``.
- Unknown class or method ids: 540 ``unknown method {C,M}``. RabbitMQ 3.10.8's reader crashes on them and
  the socket closes without a reply (observed); we answer what its error table means instead.
- The tables of :mod:`.states` for everything else.

Run ``python bench/amqp_codec.py`` before changing ``AMQPConnection.events``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

from omnibus.wire.amqp import frames as _fr
from omnibus.wire.amqp import methods as _m
from omnibus.wire.amqp import states as _st
from omnibus.wire.amqp.errors import (DROP, FRAME_ERROR, NOT_ALLOWED, NOT_IMPLEMENTED, PRECONDITION_FAILED,
                                      SEND_CLOSE, SEND_CLOSE_AND_DROP, SEND_HEADER_AND_DROP, UNEXPECTED_FRAME,
                                      AMQPError, Atom, amqp_error, frame_error_text, unexpected_frame_text)
from omnibus.wire.amqp.states import (IGNORED, ChannelInput, ChannelState, ConnectionInput, ConnectionState,
                                      channel_error, channel_next, connection_error, connection_next)

__all__ = ["AMQPConnection", "ProtocolHeader", "MethodFrame", "Publish", "NEED_DATA"]


class ProtocolHeader(NamedTuple):
    major: int
    minor: int
    revision: int


class MethodFrame(NamedTuple):
    channel: int
    method: Any


class Publish(NamedTuple):
    channel: int
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    properties: bytes
    body: bytes


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Any = _NeedData()

_new = tuple.__new__
_unpack_hdr = _fr._HDR.unpack_from
_HEADER_09 = b"AMQP\x01\x01\x00\x09"
_PUBLISH_ID = b"\x00\x3c\x00\x28"
_CI = ConnectionInput
_CS = ConnectionState
_CHI = ChannelInput
_CHS = ChannelState
_RECV_INPUT = {
    _m.ConnectionStartOk: _CI.RECV_START_OK, _m.ConnectionSecureOk: _CI.RECV_SECURE_OK,  # type: ignore[attr-defined]
    _m.ConnectionTuneOk: _CI.RECV_TUNE_OK, _m.ConnectionOpen: _CI.RECV_OPEN,  # type: ignore[attr-defined]
    _m.ConnectionClose: _CI.RECV_CLOSE, _m.ConnectionCloseOk: _CI.RECV_CLOSE_OK,  # type: ignore[attr-defined]
}
_SEND_INPUT = {
    _m.ConnectionStart: _CI.SEND_START, _m.ConnectionSecure: _CI.SEND_SECURE,  # type: ignore[attr-defined]
    _m.ConnectionTune: _CI.SEND_TUNE, _m.ConnectionOpenOk: _CI.SEND_OPEN_OK,  # type: ignore[attr-defined]
    _m.ConnectionClose: _CI.SEND_CLOSE, _m.ConnectionCloseOk: _CI.SEND_CLOSE_OK,  # type: ignore[attr-defined]
    _m.ConnectionBlocked: _CI.SEND_BLOCKED, _m.ConnectionUnblocked: _CI.SEND_BLOCKED,  # type: ignore[attr-defined]
    _m.ConnectionUpdateSecretOk: _CI.SEND_BLOCKED,  # type: ignore[attr-defined]
}

# content assembly record: [method, class_id, remaining or -1 (awaiting header), properties, chunks,
#                            oversize (declared size when over max_message_size, else 0)]
_A_METHOD, _A_CLASS, _A_REMAINING, _A_PROPS, _A_CHUNKS, _A_OVERSIZE = range(6)


class AMQPConnection:
    """Server side of one AMQP 0-9-1 connection. Event-loop thread only."""

    def __init__(self, *, frame_max: int = _fr.FRAME_MAX_DEFAULT, channel_max: int = _fr.CHANNEL_MAX_DEFAULT,
                 heartbeat: int = _fr.HEARTBEAT_DEFAULT, initial_frame_max: int = _fr.FRAME_MIN_SIZE,
                 max_message_size: int = _fr.MAX_MESSAGE_SIZE) -> None:
        #: What the server offers in connection.tune (RabbitMQ's frame_max / channel_max / heartbeat).
        self.server_frame_max = frame_max
        self.server_channel_max = channel_max
        self.server_heartbeat = heartbeat
        self.max_message_size = max_message_size
        #: Negotiated values (set by tune-ok). frame_max limits incoming frames from the start.
        self.frame_max = initial_frame_max
        self.channel_max = 0
        self.heartbeat = 0
        self.state = ConnectionState.AWAITING_HEADER
        #: channel number -> ChannelState (absent channels are not in the dict)
        self.channels: dict[int, ChannelState] = {}
        self._content: dict[int, list] = {}
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 8  # bytes needed before parsing is worth trying
        self._dead = False
        self._pending: deque = deque()
        self._error: AMQPError | None = None
        self._cursor = 0

    # -- receiving ---------------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Buffer received bytes (never parses)."""
        if data:
            self._chunks.append(bytes(data))
            self._have += len(data)

    def next_event(self) -> Any:
        """One event, NEED_DATA, or raises the AMQPError (h11 style)."""
        if not self._pending:
            self._pending.extend(self.events())
        if not self._pending:
            if self._error is not None and self._dead:
                raise self._error
            return NEED_DATA
        ev = self._pending.popleft()
        if isinstance(ev, AMQPError):
            raise ev
        return ev

    def events(self) -> list:
        """Every complete event in the buffer; an error is the last item. See the module docstring."""
        if self._dead or self._have < self._need:
            return []
        chunks = self._chunks
        buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        out: list = []
        self._cursor = 0
        try:
            pos = self._parse(buf, out)
        except AMQPError as err:
            if self.state in _st.SILENT_STATES and err.action != SEND_HEADER_AND_DROP:
                # before tune-ok RabbitMQ answers nothing and closes (rabbit_reader handshake_error)
                err = AMQPError(err.reply_code, err.reply_text, err.class_id, err.method_id, scope=err.scope,
                                channel=err.channel, action=DROP)
            self._fail(err)
            out.append(err)
            pos = self._cursor  # just past the frame that failed; the rest is parsed in CLOSING state
            self._need = 1
        if self._dead:
            self._chunks = []
            self._have = 0
            self._need = 1 << 62
        else:
            rest = buf[pos:] if pos else buf
            self._chunks = [rest] if rest else []
            self._have = len(rest)
        return out

    def _fail(self, err: AMQPError) -> None:
        self._error = err
        if err.scope == "channel":
            self.channels[err.channel] = ChannelState.CLOSING
            self._content.pop(err.channel, None)
            return
        self._content.clear()
        if err.action == SEND_CLOSE and self.state not in (_CS.CLOSING, _CS.CLOSED):
            self.state = ConnectionState.CLOSING
        else:
            self.state = ConnectionState.CLOSED
            self._dead = True

    def _parse(self, buf: bytes, out: list) -> int:
        """Parse frames from ``buf``; return the position of the first unparsed byte. Sets ``_need``."""
        pos = 0
        end = len(buf)
        append = out.append
        if self.state is _CS.AWAITING_HEADER:
            if end < 8:
                self._need = 8
                return 0
            head = buf[:8]
            if head != _fr.PROTOCOL_HEADER and head != _HEADER_09:
                raise AMQPError(FRAME_ERROR, f"bad protocol header {head!r}", scope="connection",
                                action=SEND_HEADER_AND_DROP)
            self.state = _CS.HEADER_RECEIVED
            append(_new(ProtocolHeader, (0, 9, 1)))
            pos = 8
        content = self._content
        channels = self.channels
        OPEN = _CHS.OPEN
        while True:
            self._cursor = pos
            if end - pos < 7:
                self._need = 7
                return pos
            ftype, ch, size = _unpack_hdr(buf, pos)
            fend = pos + 7 + size
            if fend >= end:
                if self.frame_max and size > self.frame_max:
                    self._frame_too_large(ftype, ch, size)
                self._need = fend + 1 - pos
                return pos
            if self.frame_max and size > self.frame_max:
                self._frame_too_large(ftype, ch, size)
            if buf[fend] != 0xCE:
                raise amqp_error(FRAME_ERROR, frame_error_text(ftype, buf[pos + 7:fend],
                                                               (Atom("invalid_frame_end_marker"), buf[fend])),
                                 channel=ch, action=SEND_CLOSE_AND_DROP)
            # -- hot path: basic.publish + header + body on an open channel ------------------------------
            if ftype == 1 and ch and buf[pos + 7:pos + 11] == _PUBLISH_ID and ch not in content \
                    and channels.get(ch) is OPEN and self.state is _CS.OPEN:
                p = pos + 13  # skip ticket
                n = buf[p]
                exchange = buf[p + 1:p + 1 + n]
                p += 1 + n
                if p < fend:
                    n = buf[p]
                    rk = buf[p + 1:p + 1 + n]
                    p += 1 + n
                    if p + 1 == fend:
                        bits = buf[p]
                        content[ch] = [(exchange.decode("utf-8", "surrogateescape"),
                                        rk.decode("utf-8", "surrogateescape"), bool(bits & 1), bool(bits & 2)),
                                       60, -1, None, None, 0]
                        pos = fend + 1
                        continue
                # malformed: the general path produces RabbitMQ's error
            payload = buf[pos + 7:fend]
            pos = self._cursor = fend + 1
            if ftype == 3 and ch in content:  # body frame of a content being assembled
                a = content[ch]
                rem = a[_A_REMAINING]
                if rem > 0 and channels.get(ch) is OPEN:
                    rem -= size
                    if rem < 0:
                        raise amqp_error(FRAME_ERROR, "content body frame exceeds remaining content size",
                                         *self._content_ids(a), channel=ch)
                    if not a[_A_OVERSIZE]:
                        a[_A_CHUNKS].append(payload)
                    if rem:
                        a[_A_REMAINING] = rem
                        continue
                    self._complete(ch, a, append)
                    continue
            self._frame(ftype, ch, size, payload, append)
        return pos  # pragma: no cover

    def _frame_too_large(self, ftype: int, ch: int, size: int) -> None:
        raise amqp_error(FRAME_ERROR, frame_error_text(ftype, b"", (Atom("frame_too_large"), size,
                                                                    self.frame_max - _fr.FRAME_OVERHEAD)),
                         channel=ch, action=SEND_CLOSE_AND_DROP)

    @staticmethod
    def _content_ids(a: list) -> tuple[int, int]:
        """Class/method ids of the content method being assembled (a publish is kept as a plain tuple)."""
        m = a[_A_METHOD]
        return (m.CLASS_ID, m.METHOD_ID) if hasattr(m, "CLASS_ID") else (60, 40)

    def _complete(self, ch: int, a: list, append) -> None:
        """The content of channel ``ch`` is whole: emit it (or its error)."""
        del self._content[ch]
        m = a[_A_METHOD]
        cid, mid = self._content_ids(a)
        body_chunks = a[_A_CHUNKS]
        if not hasattr(m, "CLASS_ID"):  # publish (fast-path tuple)
            exchange, rk, mandatory, immediate = m
            if immediate:
                raise amqp_error(NOT_IMPLEMENTED, "immediate=true", 60, 40, channel=ch)
            if a[_A_OVERSIZE]:
                self._oversize(ch, a, append)
                return
            body = b"".join(body_chunks) if body_chunks else b""
            append(_new(Publish, (ch, exchange, rk, mandatory, immediate, a[_A_PROPS], body)))
            return
        # a content method a client must not send (basic.return/deliver/get-ok): rabbit_channel answers
        # "unimplemented method" once the content is in
        raise amqp_error(503, "unimplemented method", cid, mid, channel=ch)

    def _oversize(self, ch: int, a: list, append) -> None:
        err = amqp_error(PRECONDITION_FAILED, f"message size {a[_A_OVERSIZE]} is larger than configured max "
                                              f"size {self.max_message_size}", 60, 40, channel=ch,
                         scope="channel")
        self._fail(err)
        append(err)

    def _frame(self, ftype: int, ch: int, size: int, payload: bytes, append) -> None:
        """Every frame but the hot-path ones."""
        state = self.state
        if ftype == 1:
            if size < 4:
                raise self._unknown_frame(ftype, ch, payload)
            if ch == 0:
                self._method0(_m.decode_method(payload), append)
                return
            if state is not _CS.OPEN and state is not _CS.OPEN_RECEIVED:
                if state in (_CS.CLOSING, _CS.CLOSE_RECEIVED):
                    return
                if state is _CS.OPENING:  # rabbit_reader handle_frame before running: unexpected_frame
                    raise amqp_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload), channel=ch)
                raise connection_error(state, _CI.RECV_CHANNEL_FRAME)
            a = self._content.get(ch)
            if a is not None:
                # rabbit_command_assembler: the method id is looked up (unknown → error) but its
                # arguments are not decoded while content is incomplete
                ids = _fr.struct.unpack_from(">HH", payload)
                if ids not in _m.METHODS:
                    raise _m.unknown_method(*ids)
                cid, mid = self._content_ids(a)
                if a[_A_REMAINING] == -1:
                    raise amqp_error(UNEXPECTED_FRAME, f"expected content header for class {a[_A_CLASS]}, got "
                                                       "non content header frame instead", cid, mid, channel=ch)
                raise amqp_error(UNEXPECTED_FRAME, "expected content body, got non content body frame instead",
                                 cid, mid, channel=ch)
            method = _m.decode_method(payload)
            self._channel_method(ch, method, append)
            return
        if ftype == 2 or ftype == 3:
            if ftype == 2 and size < 14:
                raise self._unknown_frame(ftype, ch, payload)
            if ch == 0:
                if state in (_CS.CLOSING, _CS.CLOSE_RECEIVED):
                    return
                raise amqp_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload), channel=ch)
            if state is not _CS.OPEN and state is not _CS.OPEN_RECEIVED:
                if state in (_CS.CLOSING, _CS.CLOSE_RECEIVED):
                    return
                if state is _CS.OPENING:
                    raise amqp_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload), channel=ch)
                raise connection_error(state, _CI.RECV_CHANNEL_FRAME)
            cstate = self.channels.get(ch, _CHS.ABSENT)
            nxt = channel_next(cstate, _CHI.RECV_CONTENT)
            if nxt is None:
                raise channel_error(cstate, _CHI.RECV_CONTENT, ch)
            if nxt is IGNORED:
                return
            a = self._content.get(ch)
            if a is None:
                raise amqp_error(UNEXPECTED_FRAME, "expected method frame, got non method frame instead",
                                 channel=ch)
            cid, mid = self._content_ids(a)
            if a[_A_REMAINING] == -1:  # awaiting the header
                if ftype == 3:
                    raise amqp_error(UNEXPECTED_FRAME, f"expected content header for class {a[_A_CLASS]}, got "
                                                       "non content header frame instead", cid, mid, channel=ch)
                hclass, weight, body_size = _fr.struct.unpack_from(">HHQ", payload)
                if weight != 0:
                    raise amqp_error(UNEXPECTED_FRAME, f"expected content header for class {a[_A_CLASS]}, got "
                                                       "non content header frame instead", cid, mid, channel=ch)
                if hclass != a[_A_CLASS]:
                    raise amqp_error(UNEXPECTED_FRAME, f"expected content header for class {a[_A_CLASS]}, got "
                                                       f"one for class {hclass} instead", cid, mid, channel=ch)
                a[_A_PROPS] = payload[12:]
                a[_A_CHUNKS] = []
                if body_size > self.max_message_size:
                    a[_A_OVERSIZE] = body_size
                if body_size == 0:
                    self._complete(ch, a, append)
                else:
                    a[_A_REMAINING] = body_size
                return
            # awaiting body but got a header (bodies are handled in _parse)
            raise amqp_error(UNEXPECTED_FRAME, "expected content body, got non content body frame instead",
                             cid, mid, channel=ch)
        if ftype == 8:
            if size:
                raise self._unknown_frame(ftype, ch, payload)
            if ch != 0:
                if state in (_CS.CLOSING, _CS.CLOSE_RECEIVED):
                    return
                raise amqp_error(UNEXPECTED_FRAME, unexpected_frame_text(ftype, payload), channel=ch)
            nxt = connection_next(state, _CI.RECV_HEARTBEAT)
            if nxt is None:
                raise connection_error(state, _CI.RECV_HEARTBEAT)
            return
        raise self._unknown_frame(ftype, ch, payload)

    def _unknown_frame(self, ftype: int, ch: int, payload: bytes) -> AMQPError:
        err = amqp_error(FRAME_ERROR, frame_error_text(ftype, payload, Atom("unknown_frame")), channel=ch)
        if self.state is not _CS.OPEN and self.state is not _CS.OPEN_RECEIVED:
            return connection_error(self.state, _CI.RECV_METHOD) if self.state not in (
                _CS.CLOSING, _CS.CLOSE_RECEIVED) else err
        return err

    def _method0(self, method: Any, append) -> None:
        """A method on channel 0."""
        state = self.state
        cls = type(method)
        inp = _RECV_INPUT.get(cls, _CI.RECV_METHOD)
        if state is _CS.OPEN and cls is _m.ConnectionUpdateSecret:  # type: ignore[attr-defined]
            # the session answers update-secret-ok (RabbitMQ 3.10.8 does, observed)
            append(_new(MethodFrame, (0, method)))
            return
        nxt = connection_next(state, inp)
        if nxt is None:
            raise connection_error(state, inp, cls.CLASS_ID, cls.METHOD_ID)
        if nxt is IGNORED:
            return
        if inp is _CI.RECV_TUNE_OK:
            self._tune(method)
        self.state = nxt
        if nxt is _CS.CLOSED:
            self._dead = True
            self._need = 1 << 62
        append(_new(MethodFrame, (0, method)))

    def _tune(self, m: Any) -> None:
        """connection.tune-ok: validate as rabbit_reader validate_negotiated_integer_value, then apply."""
        for field, minimum, value, server in (("frame_max", _fr.FRAME_MIN_SIZE, m.frame_max, self.server_frame_max),
                                              ("channel_max", 1, m.channel_max, self.server_channel_max)):
            detail = " (no limit)" if field == "channel_max" and value == 0 else ""
            if value != 0 and value < minimum:
                text = f"negotiated {field} = {value}{detail} is lower than the minimum allowed value ({minimum})"
            elif server != 0 and (value == 0 or value > server):
                text = f"negotiated {field} = {value}{detail} is higher than the maximum allowed value ({server})"
            else:
                continue
            raise amqp_error(NOT_ALLOWED, text, 10, 30, action=SEND_CLOSE_AND_DROP)
        self.frame_max = m.frame_max
        self.channel_max = m.channel_max
        self.heartbeat = m.heartbeat

    def _channel_method(self, ch: int, method: Any, append) -> None:
        cls = type(method)
        cid, mid = cls.CLASS_ID, cls.METHOD_ID
        cstate = self.channels.get(ch, _CHS.ABSENT)
        if cls is _m.ChannelOpen:  # type: ignore[attr-defined]
            inp = _CHI.RECV_OPEN
        elif cls is _m.ChannelClose:  # type: ignore[attr-defined]
            inp = _CHI.RECV_CLOSE
        elif cls is _m.ChannelCloseOk:  # type: ignore[attr-defined]
            inp = _CHI.RECV_CLOSE_OK
        else:
            inp = _CHI.RECV_METHOD
        nxt = channel_next(cstate, inp)
        if nxt is None:
            raise channel_error(cstate, inp, ch, cid, mid)
        if nxt is IGNORED:
            return
        spec = cls.SPEC
        if inp is _CHI.RECV_METHOD and (cid == 10 or cls is _m.ChannelFlowOk  # type: ignore[attr-defined]
                                        or (spec.sender == _m.SERVER and not spec.content)):
            # connection methods on a channel, and server-only methods: rabbit_channel handle_method
            # last clause
            raise amqp_error(503, "unimplemented method", cid, mid, channel=ch)
        if inp is _CHI.RECV_OPEN and self.channel_max and self._open_count() >= self.channel_max:
            raise amqp_error(NOT_ALLOWED, f"number of channels opened ({self._open_count()}) has reached the "
                                          f"negotiated channel_max ({self.channel_max})", channel=ch,
                             scope="connection")
        if nxt is _CHS.ABSENT:
            self.channels.pop(ch, None)
        else:
            self.channels[ch] = nxt  # type: ignore[assignment]
        if spec.content:
            if cls is _m.BasicPublish:  # type: ignore[attr-defined]
                rec: Any = (method.exchange, method.routing_key, method.mandatory, method.immediate)
            else:
                rec = method
            self._content[ch] = [rec, cid, -1, None, None, 0]
            return
        append(_new(MethodFrame, (ch, method)))

    def _open_count(self) -> int:
        return len(self.channels)

    # -- sending -----------------------------------------------------------------------------------------
    def send(self, channel: int, method: Any) -> bytes:
        """Frame bytes for a method the server sends, moving the connection/channel state."""
        cls = type(method)
        if channel == 0:
            inp = _SEND_INPUT.get(cls)
            if inp is not None:
                nxt = connection_next(self.state, inp)
                if nxt is None and inp in _st.SEND_NEEDS and self.state in _st.HANDSHAKE_ORDER and \
                        _st.HANDSHAKE_ORDER.index(self.state) >= _st.HANDSHAKE_ORDER.index(_st.SEND_NEEDS[inp]):
                    nxt = self.state  # the receive side already moved past it (pipelining)
                    if inp is _CI.SEND_OPEN_OK and self.state is _CS.OPEN_RECEIVED:
                        nxt = _CS.OPEN
                if nxt is None or nxt is IGNORED:
                    raise ValueError(f"cannot send {cls.NAME} in connection state {self.state.value}")
                self.state = nxt  # type: ignore[assignment]
                if nxt is _CS.CLOSED:
                    self._dead = True
                    self._need = 1 << 62
        else:
            cstate = self.channels.get(channel, _CHS.ABSENT)
            if cls is _m.ChannelClose:  # type: ignore[attr-defined]
                inp2 = _CHI.SEND_CLOSE
            elif cls is _m.ChannelCloseOk:  # type: ignore[attr-defined]
                inp2 = _CHI.SEND_CLOSE_OK
            else:
                inp2 = None
            if inp2 is not None:
                nxt2 = channel_next(cstate, inp2)
                if nxt2 is None:
                    raise ValueError(f"cannot send {cls.NAME} on channel {channel} in state {cstate.value}")
                if nxt2 is _CHS.ABSENT:
                    self.channels.pop(channel, None)
                    self._content.pop(channel, None)
                else:
                    self.channels[channel] = nxt2  # type: ignore[assignment]
                    if nxt2 is _CHS.CLOSING:
                        self._content.pop(channel, None)
        return _fr.method_frame(channel, method)

    def deliver(self, channel: int, consumer_tag: str, delivery_tag: int, redelivered: bool, exchange: str,
                routing_key: str, properties: bytes, body: bytes) -> bytes:
        """basic.deliver + content frames at the negotiated frame_max."""
        return _fr.deliver(channel, consumer_tag, delivery_tag, redelivered, exchange, routing_key, properties,
                           body, self.frame_max)

    def get_ok(self, channel: int, delivery_tag: int, redelivered: bool, exchange: str, routing_key: str,
               message_count: int, properties: bytes, body: bytes) -> bytes:
        return _fr.get_ok(channel, delivery_tag, redelivered, exchange, routing_key, message_count, properties,
                          body, self.frame_max)

    def basic_return(self, channel: int, reply_code: int, reply_text: str, exchange: str, routing_key: str,
                     properties: bytes, body: bytes) -> bytes:
        return _fr.basic_return(channel, reply_code, reply_text, exchange, routing_key, properties, body,
                                self.frame_max)

    ack = staticmethod(_fr.ack)
    nack = staticmethod(_fr.nack)
    heartbeat_frame = _fr.HEARTBEAT
