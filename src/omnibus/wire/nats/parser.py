"""Sans-IO parser for the NATS client protocol, client → server direction (CONNECT, PUB, HPUB, SUB, UNSUB,
PING, PONG; INFO, +OK and -ERR from a client are understood as nats-server understands them).

Strategy (after nats-server ``server/parser.go``, without copying it): ``receive_data`` only buffers;
``events`` parses every complete op in the buffer and returns them as plain tuples, one call per
``data_received``. A control line is found with ``bytes.find(b"\\n")``, its arguments are sliced with
``bytes.split`` (no regex), and a payload is jumped over by its announced length (never scanned), then its
``\\r\\n`` is checked. An op cut by the end of the buffer is left unconsumed and re-parsed when more bytes
arrive; while a long payload is still incomplete, ``events`` returns ``[]`` at once without joining the
new chunks, so a 1 MiB payload that arrives in 64 KiB reads is copied once, not 16 times.
Two fast paths run inline in the loop, for what clients send most: (1) a PUB/HPUB control line without
reply that was seen before is looked up whole in ``_PUB_LINES`` (bounded, shared by all parsers; a
publisher repeats its subject and size), which replaces split, int and decode by one dict lookup;
(2) ``PUB|HPUB <subject> [reply] [<hdr>] <size>\\r\\n`` in upper case with single spaces. Anything else
(lower case, tabs, runs of blanks, a bare ``\\n``, a bad size, an incomplete op, an error, other ops) goes
to ``_general``, the reference implementation every op can go through; the fast paths only take input
on which ``_general`` would give the same event. Run ``python bench/nats_parser.py`` before changing
``NatsParser.events`` or ``_general``.

What nats-server does, and so what this parser does (file/function of nats-server named beside each):
- Op names are case-insensitive (``PUB``, ``pub``, ``Pub``); PUB, HPUB, SUB, UNSUB and -ERR need at least
  one space or tab after the name, CONNECT and INFO take their argument after zero or more (parser.go).
- A line ends at ``\\n``; one ``\\r`` before it is dropped, so a bare ``\\n`` also ends a line
  (parser.go ``*_ARG`` states, ``c.drop``). The first argument byte is never taken as the line end
  (parser.go enters ``*_ARG`` on that byte without looking at it), so ``"PUB \\n..."`` runs to the next
  ``\\n``. PING, PONG and +OK ignore anything up to the ``\\n`` (parser.go ``OP_PING``).
- PUB and HPUB split their arguments on spaces and tabs (client.go ``processPub``/``processHeaderPub``);
  SUB and UNSUB also on ``\\r`` and ``\\n`` (client.go ``splitArg``). Sizes are 1 to 9 ASCII digits
  (util.go ``parseSize``), so a sign or a tenth digit is a bad size.
- What follows PING/PONG/+OK up to the ``\\n``, and the blanks between an op name and its argument, are
  skipped without a cap (parser.go ``OP_PING``, ``OP_PUB_SPC``...); while such a line is incomplete we keep
  only its name (and one blank), so memory stays bounded.
- The payload must be followed by exactly ``\\r\\n`` (parser.go ``MSG_END_R``/``MSG_END_N``).
- UNSUB's max is parsed with ``parseSize``; a max that is not a positive number unsubscribes at once
  (client.go ``processUnsub``: no error), reported here as ``max_msgs=None``.

Errors, and what nats-server sends for each (all of them close the connection, so ``fatal`` is True):
- ``-ERR 'Unknown Protocol Operation'``: a byte that no op accepts at that point, including a payload not
  followed by ``\\r\\n`` (parser.go ``parseErr``). Raised as soon as the bad byte arrives.
- ``-ERR 'Maximum Payload Violation'``: PUB/HPUB total size > ``max_payload`` (client.go
  ``maxPayloadViolation``), raised at the control line, before the payload is read.
- ``-ERR 'maximum control line exceeded'`` (lower case: parser.go ``overMaxControlLineLimit`` sends
  ``ErrMaxControlLine.Error()``; the protocol doc's capitalised spelling is not what the server sends):
  an op's argument longer than ``max_control_line``, checked when the line ends and, for a line still
  incomplete, on what has arrived so far.
- No ``-ERR`` at all, just a close: PUB/HPUB/SUB/UNSUB with the wrong number of arguments, a bad size,
  an HPUB header size larger than its total size, CONNECT or INFO JSON that does not decode, and a
  ``-ERR`` sent by the client. nats-server returns these from ``parse`` and ``readLoop`` only logs them
  (``c.Error(err)``) before ``closeConnection(ProtocolViolation)``. Such errors have ``send_err=False``
  and their message is the text nats-server logs (e.g. ``processPub Parse Error: "foo"``).

Delivery of errors: ``events()`` returns the ops parsed before the error followed by one final
``(OP_ERROR, NatsProtocolError)`` tuple; from then on the parser is dead and every call
(``receive_data``, ``events``, ``next_event``) raises that error. ``next_event()`` returns the good
events one by one and then raises the error (h11 style).

Text: subjects, reply subjects, queue names and sids are decoded as UTF-8 with ``surrogateescape``, so
any bytes decode without error and ``s.encode("utf-8", "surrogateescape")`` gives back exactly the bytes
the client sent (the encoder does that); UTF-8 subjects read the same as AMQP routing keys. Subject
validity is not checked here (the session does, with ``core.routing.trie.valid_nats_subject``).

Checked against a real nats-server 2.9.10 on loopback (every input of tests/wire/test_nats_parser.py's
error and edge cases, ~140, sent after a CONNECT): the same ``-ERR`` bytes, the same close or not.

Known differences from nats-server, all on input no client library produces:
- An argument line holding a ``\\r`` before its end: nats-server drops one byte before the ``\\n`` if it saw
  any ``\\r`` (when the line arrived in one read; across reads it drops every ``\\r``). We follow the
  one-read behaviour.
- HMSG from a client: parser.go lets a client's HMSG through to a size it never set; we answer
  'Unknown Protocol Operation', as for MSG, RS+, A+, LS+ (which parser.go rejects at once).
- CONNECT/INFO JSON: decoded with orjson (stdlib ``json`` as a fallback for integers beyond 64 bits and
  invalid UTF-8, which Go's decoder accepts). For CONNECT, the types of nats-server's ``ClientOpts``
  fields are checked as Go's ``json.Unmarshal`` would; keys match case-insensitively as in Go and are
  reported under their canonical lower-case name. INFO's field types are not checked.
- Whether HPUB is allowed (CONNECT ``headers``) and whether the first op must be CONNECT (auth) are
  connection state: the session checks them.

Rules: never awaits, never touches a socket or a clock; imports nothing of ours but ``wire._common``.
One parser per connection; not thread-safe (event-loop thread only).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import orjson

from omnibus.wire._common.errors import ProtocolError

__all__ = [
    "OP_CONNECT", "OP_PUB", "OP_HPUB", "OP_SUB", "OP_UNSUB", "OP_PING", "OP_PONG", "OP_ERROR",
    "NEED_DATA", "NatsParser", "NatsProtocolError",
    "MAX_CONTROL_LINE_SIZE", "MAX_PAYLOAD_SIZE", "NO_LIMIT",
    "ERR_UNKNOWN_OP", "ERR_MAX_PAYLOAD", "ERR_MAX_CONTROL_LINE",
]

# -- events --------------------------------------------------------------------------------------------
# Each event is a tuple whose first item is one of these ops:
#   (OP_CONNECT, options: dict)
#   (OP_PUB, subject: str, reply: str | None, payload: bytes)
#   (OP_HPUB, subject: str, reply: str | None, headers: bytes, payload: bytes)  # headers: raw "NATS/1.0..." block
#   (OP_SUB, subject: str, queue: str | None, sid: str)
#   (OP_UNSUB, sid: str, max_msgs: int | None)   # None: unsubscribe now (no max, or max not a positive number)
#   (OP_PING,)  (OP_PONG,)
#   (OP_ERROR, NatsProtocolError)                # always the last event of an events() call
OP_CONNECT = 1
OP_PUB = 2
OP_HPUB = 3
OP_SUB = 4
OP_UNSUB = 5
OP_PING = 6
OP_PONG = 7
OP_ERROR = 8


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`NatsParser.next_event` when no complete op is buffered (h11's ``NEED_DATA``).
NEED_DATA: Any = _NeedData()

# -- limits --------------------------------------------------------------------------------------------
#: Longest op argument (the bytes after "PUB "), nats-server const.go MAX_CONTROL_LINE_SIZE = 4096.
MAX_CONTROL_LINE_SIZE = 4096
#: Largest PUB/HPUB total size, nats-server const.go MAX_PAYLOAD_SIZE = 1024 * 1024 (1 MiB).
MAX_PAYLOAD_SIZE = 1024 * 1024
#: ``max_payload`` value that disables the check (nats-server ``jwt.NoLimit`` = -1).
NO_LIMIT = -1
#: Most digits a size may have, nats-server util.go parseSize ``maxParseSizeLen = 9`` ("999M").
MAX_SIZE_DIGITS = 9

# -- error texts, exactly as nats-server sends them inside -ERR '...' -----------------------------------
ERR_UNKNOWN_OP = "Unknown Protocol Operation"  # parser.go parseErr
ERR_MAX_PAYLOAD = "Maximum Payload Violation"  # client.go maxPayloadViolation
ERR_MAX_CONTROL_LINE = "maximum control line exceeded"  # errors.go ErrMaxControlLine, sent by overMaxControlLineLimit


class NatsProtocolError(ProtocolError):
    """The client broke the NATS protocol.

    ``message`` (also ``str(e)``): when ``send_err`` is True, exactly the text nats-server puts inside
    ``-ERR '...'``; when False, nats-server sends no ``-ERR`` and just closes, and ``message`` is the text
    it logs. ``fatal``: nats-server closes the connection (True for every error this parser raises).
    ``wire``: the bytes to write before closing (``b""`` when nats-server writes none).
    """

    def __init__(self, message: str, *, fatal: bool = True, send_err: bool = True) -> None:
        super().__init__(message, fatal=fatal)
        self.message = message
        self.send_err = send_err

    @property
    def wire(self) -> bytes:
        if not self.send_err:
            return b""
        return b"-ERR '" + self.message.encode("utf-8", "surrogateescape") + b"'\r\n"

    def __repr__(self) -> str:
        return f"NatsProtocolError({self.message!r}, fatal={self.fatal}, send_err={self.send_err})"


def _unknown_op() -> NatsProtocolError:
    return NatsProtocolError(ERR_UNKNOWN_OP)


def _silent(message: str) -> NatsProtocolError:
    return NatsProtocolError(message, send_err=False)


def _q(b: bytes) -> str:
    """Go's %q of a byte slice, near enough for a log line."""
    return '"' + b.decode("latin-1").encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


# -- op names ------------------------------------------------------------------------------------------
_K_PUB, _K_HPUB, _K_SUB, _K_UNSUB, _K_CONNECT, _K_INFO, _K_PING, _K_PONG, _K_OK, _K_ERR = range(10)
#: Op names a client may send, upper case. No name is a prefix of another, so the first hit decides.
_WORDS: tuple[tuple[bytes, int], ...] = (
    (b"PUB", _K_PUB), (b"PING", _K_PING), (b"PONG", _K_PONG), (b"HPUB", _K_HPUB), (b"SUB", _K_SUB),
    (b"UNSUB", _K_UNSUB), (b"CONNECT", _K_CONNECT), (b"INFO", _K_INFO), (b"+OK", _K_OK), (b"-ERR", _K_ERR),
)
_LONGEST_WORD = max(len(w) for w, _ in _WORDS)
#: First byte (either case) -> the op names starting with it.
_BY_FIRST: dict[int, tuple[tuple[bytes, int], ...]] = {}
for _w, _k in _WORDS:
    for _c in {_w[0], ord(chr(_w[0]).lower())}:
        _BY_FIRST[_c] = _BY_FIRST.get(_c, ()) + ((_w, _k),)
del _w, _k, _c
_LINE_ONLY = frozenset((_K_PING, _K_PONG, _K_OK))  # anything up to "\n" is ignored
_NEEDS_SPACE = frozenset((_K_PUB, _K_HPUB, _K_SUB, _K_UNSUB, _K_ERR))  # CONNECT/INFO don't

# processPub/processHeaderPub split on space and tab; splitArg (SUB, UNSUB) also on CR and LF.
_TABS_TO_SPACE = bytes.maketrans(b"\t", b" ")
_SEPS_TO_SPACE = bytes.maketrans(b"\t\r\n", b"   ")

#: Parsed PUB/HPUB control lines without reply ("PUB foo.bar 128\r" -> ("foo.bar", 128, -1)), shared by every
#: parser of the process (a publisher repeats the same subject and size; inboxes in replies would only
#: churn it, so lines with a reply are not kept). Holds only lines the fast path accepted; the limits
#: are still checked on every hit. Cleared when full.
_PUB_LINES: dict[bytes, tuple[str, int, int]] = {}  # line -> (subject, size, header size or -1 for PUB)
#: Lines _PUB_LINES keeps before it is cleared (~100 B each).
PUB_LINE_CACHE_SIZE = 4096

#: Size arguments with the line's "\r" (b"128\r" -> 128) the fast path has parsed, shared, cleared when full.
_SIZES: dict[bytes, int] = {}


def _size_cr(b: bytes) -> int | None:
    """parseSize of ``b`` without its last byte ("\r"), remembered in _SIZES; None if not a size."""
    digits = b[:-1]
    if 0 < len(digits) <= MAX_SIZE_DIGITS and digits.isdigit():
        if len(_SIZES) >= PUB_LINE_CACHE_SIZE:
            _SIZES.clear()
        _SIZES[b] = n = int(digits)
        return n
    return None


#: Received chunks shorter than this are merged while they wait (bounds the per-chunk overhead when a
#: payload trickles in a few bytes per read).
_SMALL_CHUNK = 4096

_PING_EVENT = (OP_PING,)
_PONG_EVENT = (OP_PONG,)
_UNLIMITED = 1 << 62


def _split(arg: bytes, table: bytes) -> list[bytes]:
    """Non-empty tokens of ``arg`` between the separators ``table`` maps to space."""
    if 9 in arg or 13 in arg or 10 in arg:
        arg = arg.translate(table)
    parts = arg.split(b" ")
    if b"" in parts:
        return [p for p in parts if p]
    return parts


def _size(b: bytes) -> int:
    """nats-server util.go parseSize: 1-9 ASCII digits, else -1."""
    if 0 < len(b) <= MAX_SIZE_DIGITS and b.isdigit():
        return int(b)
    return -1


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# -- CONNECT JSON --------------------------------------------------------------------------------------
_BOOL, _STR, _INT, _OBJ = range(4)
#: nats-server client.go ``ClientOpts``: JSON name -> Go type (json.Unmarshal rejects other JSON types).
_CONNECT_FIELDS: dict[str, int] = {
    "echo": _BOOL, "verbose": _BOOL, "pedantic": _BOOL, "tls_required": _BOOL, "nkey": _STR, "jwt": _STR,
    "sig": _STR, "auth_token": _STR, "user": _STR, "pass": _STR, "name": _STR, "lang": _STR,
    "version": _STR, "protocol": _INT, "account": _STR, "new_account": _BOOL, "headers": _BOOL,
    "no_responders": _BOOL, "import": _OBJ, "export": _OBJ, "remote_account": _STR, "proxy_sig": _STR,
}
_GO_INT_MIN, _GO_INT_MAX = -(1 << 63), (1 << 63) - 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _json(arg: bytes, what: str) -> Any:
    """Decode a CONNECT/INFO argument as Go's encoding/json would accept it."""
    try:
        return orjson.loads(arg)
    except orjson.JSONDecodeError as e:
        first = e
    try:  # Go also takes integers beyond 64 bits (in fields it ignores) and invalid UTF-8 (as U+FFFD)
        return json.loads(arg.decode("utf-8", "replace"), parse_constant=_reject_constant)
    except ValueError:
        raise _silent(f"{what}: {first}") from None


def _connect_options(arg: bytes) -> dict[str, Any]:
    opts = _json(arg, "processConnect")
    if opts is None:  # Go: null into a struct is a no-op
        return {}
    if type(opts) is not dict:
        raise _silent(f"processConnect: json: cannot unmarshal {type(opts).__name__} into Go value of type "
                      "server.ClientOpts")
    renamed = None
    for key, value in opts.items():
        kind = _CONNECT_FIELDS.get(key)
        if kind is None:
            low = key.lower()
            kind = _CONNECT_FIELDS.get(low)
            if kind is None:
                continue  # unknown field: ignored, as by Go
            renamed = True
        if value is None:
            continue
        t = type(value)
        if (kind == _BOOL and t is not bool) or (kind == _STR and t is not str) or (kind == _OBJ and t is not dict) \
                or (kind == _INT and (t is not int or not _GO_INT_MIN <= value <= _GO_INT_MAX)):
            raise _silent(f"processConnect: json: cannot unmarshal {t.__name__} into Go struct field "
                          f"ClientOpts.{key}")
    if renamed:  # Go matches keys case-insensitively; later keys win, in document order
        canon: dict[str, Any] = {}
        for key, value in opts.items():
            low = key.lower()
            canon[low if low in _CONNECT_FIELDS else key] = value
        opts = canon
    return opts


# -- the parser ----------------------------------------------------------------------------------------
class NatsParser:
    """Bytes from one NATS client in, event tuples out. Event-loop thread only; never blocks.

    ``max_payload`` and ``max_control_line`` are plain attributes: the session may change them at any
    time (e.g. after CONNECT); they apply from the next op parsed. ``max_payload = NO_LIMIT`` (-1)
    disables the payload check, as in nats-server.
    """

    __slots__ = ("max_payload", "max_control_line", "_buf", "_pos", "_chunks", "_chunks_len", "_need",
                 "_queue", "_kept", "error")

    def __init__(self, *, max_payload: int = MAX_PAYLOAD_SIZE, max_control_line: int = MAX_CONTROL_LINE_SIZE
                 ) -> None:
        self.max_payload = max_payload
        self.max_control_line = max_control_line
        self._buf = b""  # unparsed bytes start at _pos; received chunks wait in _chunks until needed
        self._pos = 0
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._need = 0  # bytes (from _pos) needed before parsing can make progress
        self._queue: deque[tuple] = deque()  # events parsed but not yet handed out by next_event
        self._kept: bytes | None = None  # set by _wait_with: what to keep of an incomplete op
        #: The fatal error once one was found (the parser is dead), else None.
        self.error: NatsProtocolError | None = None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the client. Never parses."""
        if self.error is not None:
            raise self.error
        if type(data) is not bytes:
            data = bytes(data)  # own a copy: event payloads are slices of it
        if not data:
            return
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf = data  # drained: take the chunk as is, no copy
            self._pos = 0
        else:
            chunks = self._chunks
            if chunks and len(chunks[-1]) < _SMALL_CHUNK:  # a trickle of tiny reads: keep the list short
                chunks[-1] += data
            else:
                chunks.append(data)
            self._chunks_len += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed by a complete op."""
        return len(self._buf) - self._pos + self._chunks_len

    def next_event(self) -> Any:
        """One event tuple, or ``NEED_DATA``; raises :class:`NatsProtocolError` where ``events`` would
        return ``(OP_ERROR, e)``."""
        q = self._queue
        if not q:
            q.extend(self.events())
            if not q:
                return NEED_DATA
        ev = q.popleft()
        if ev[0] == OP_ERROR:
            raise ev[1]
        return ev

    def events(self) -> list[tuple]:
        """Parse every complete op buffered; return their events in order (``[]`` if none).

        A protocol error ends the list as ``(OP_ERROR, e)`` after the events parsed before it; the parser
        is then dead and later calls raise ``e``. Hot path: run ``python bench/nats_parser.py``.
        """
        if self.error is not None:
            raise self.error
        if self._queue:  # events that next_event parsed but did not hand out yet come first
            out = list(self._queue)
            self._queue.clear()
        else:
            out = []
        if len(self._buf) - self._pos + self._chunks_len < self._need:
            return out  # the op under way (e.g. a long payload) is still incomplete: don't join yet
        if self._chunks:
            self._chunks.insert(0, memoryview(self._buf)[self._pos:])
            self._buf = b"".join(self._chunks)
            self._pos = 0
            self._chunks = []
            self._chunks_len = 0
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if pos >= n:
            return out
        self._need = 0
        append = out.append
        find = buf.find
        max_payload = self.max_payload
        if max_payload < 0:
            max_payload = _UNLIMITED
        mcl = self.max_control_line
        cache = _PUB_LINES
        cache_get = cache.get
        sizes_get = _SIZES.get
        try:
            while pos < n:
                # Fast path 1: a PUB/HPUB control line seen before (without reply), looked up whole, "\r"
                # included, in _PUB_LINES: one slice and one dict lookup replace split/int/decode.
                nl = find(b"\n", pos)
                if nl > 0:
                    hit = cache_get(buf[pos:nl])
                    if hit is not None:
                        subject, size, hdr = hit
                        start = nl + 1
                        end = start + size
                        if end + 2 <= n and buf[end] == 13 and buf[end + 1] == 10 and size <= max_payload \
                                and nl - pos - 5 <= mcl:
                            if hdr < 0:
                                append((OP_PUB, subject, None, buf[start:end]))
                            else:
                                append((OP_HPUB, subject, None, buf[start:start + hdr], buf[start + hdr:end]))
                            pos = end + 2
                            continue
                    # Fast path 2: "PUB <subject> [<reply>] <size>\r\n" or "HPUB <subject> [<reply>] <hdr>
                    # <size>\r\n" in upper case with single spaces, no tabs, within limits, its payload
                    # complete in the buffer. Anything else goes to _general.
                    elif 6 < nl - pos <= mcl + 5 and 9 not in (line := buf[pos:nl]) and line[-1] == 13:
                        parts = line.split(b" ")
                        np = len(parts)
                        size = sizes_get(parts[-1]) if np > 2 else None  # b"128\r" -> 128
                        if size is None and np > 2:
                            size = _size_cr(parts[-1])
                        op = parts[0]
                        if op == b"PUB":
                            hdr = -1
                        elif op == b"HPUB" and np > 3:
                            hdr = sizes_get(parts[-2] + b"\r")
                            if hdr is None:
                                hdr = _size_cr(parts[-2] + b"\r")
                            np -= 1
                            if size is not None and hdr is not None and hdr > size:
                                size = None  # _general reports it
                        else:
                            size = None
                        if size is not None and hdr is not None and size <= max_payload:
                            subject_b = parts[1]
                            if np == 3 and subject_b:
                                subject = subject_b.decode("utf-8", "surrogateescape")
                                reply = None
                                # JetStream acks ($JS.ACK.<stream>.<consumer>.<n>.<seq>...) are never
                                # repeated: caching them would only churn the cache.
                                if not subject_b.startswith(b"$JS.ACK."):
                                    if len(cache) >= PUB_LINE_CACHE_SIZE:
                                        cache.clear()
                                    cache[line] = (subject, size, hdr)
                            elif np == 4 and subject_b and parts[2]:
                                subject = subject_b.decode("utf-8", "surrogateescape")
                                reply = parts[2].decode("utf-8", "surrogateescape")
                            else:
                                subject = None
                            start = nl + 1
                            end = start + size
                            if subject is not None and end + 2 <= n and buf[end] == 13 and buf[end + 1] == 10:
                                if hdr < 0:
                                    append((OP_PUB, subject, reply, buf[start:end]))
                                else:
                                    append((OP_HPUB, subject, reply, buf[start:start + hdr], buf[start + hdr:end]))
                                pos = end + 2
                                continue
                nxt = self._general(buf, pos, n, append, max_payload, mcl)
                if nxt < 0:
                    break
                pos = nxt
        except NatsProtocolError as e:
            self.error = e
            self._buf = b""
            self._pos = 0
            self._chunks = []
            self._chunks_len = 0
            append((OP_ERROR, e))
            return out
        if pos >= n:
            self._buf = b""
            self._pos = 0
        elif self._kept is not None:  # _general dropped the ignorable tail of the incomplete op
            self._buf = self._kept
            self._pos = 0
            self._kept = None
        else:
            self._pos = pos
        return out

    # -- the reference path ----------------------------------------------------------------------------
    def _general(self, buf: bytes, pos: int, n: int, append: Any, max_payload: int, mcl: int) -> int:
        """Parse the op at ``buf[pos]``: append its event (if any) and return the position after it, or
        return -1 (and set ``_need``) if it is not complete yet. Raises NatsProtocolError."""
        words = _BY_FIRST.get(buf[pos])
        if words is None:
            raise _unknown_op()
        head = buf[pos:pos + _LONGEST_WORD].upper()
        for word, kind in words:
            if head.startswith(word):
                break
        else:
            if pos + len(head) == n and any(w.startswith(head) for w, _ in words):
                return self._wait(pos, n)  # the buffer ends inside an op name
            raise _unknown_op()
        w = pos + len(word)

        if kind in _LINE_ONLY:  # PING, PONG, +OK: anything up to "\n" is ignored (parser.go OP_PING)
            nl = buf.find(b"\n", w)
            if nl < 0:  # parser.go discards those bytes as they come, without a cap: keep only the name
                return self._wait_with(buf[pos:w])
            if kind == _K_PING:
                append(_PING_EVENT)
            elif kind == _K_PONG:
                append(_PONG_EVENT)
            return nl + 1

        if kind in _NEEDS_SPACE:
            if w == n:
                return self._wait(pos, n)
            if buf[w] != 32 and buf[w] != 9:
                raise _unknown_op()
        a = w
        if a < n and (buf[a] == 32 or buf[a] == 9):
            a += 1
            while a < n and (buf[a] == 32 or buf[a] == 9):  # a run of blanks: skip it 64 bytes at a time
                seg = buf[a:a + 64]
                a += len(seg) - len(seg.lstrip(b" \t"))
        if a == n:  # only blanks so far; parser.go skips them without a cap: keep the name and one blank
            return self._wait_with(buf[pos:w + 1])
        # The byte at `a` starts the argument whatever it is; the line ends at the next "\n".
        nl = buf.find(b"\n", a + 1)
        end = n if nl < 0 else nl
        # parser.go: c.drop is set by any "\r" seen in the *_ARG state, and drops one byte before "\n".
        drop = 1 if (end - 1 > a and buf[end - 1] == 13) or buf.find(b"\r", a + 1, end) >= 0 else 0
        if end - drop - a > mcl:  # parser.go overMaxControlLineLimit, on whole and on partial arguments
            raise NatsProtocolError(ERR_MAX_CONTROL_LINE)
        if nl < 0:
            return self._wait(pos, n)
        arg = buf[a:nl - drop]

        if kind == _K_PUB or kind == _K_HPUB:
            args = _split(arg, _TABS_TO_SPACE)
            if kind == _K_PUB:
                if len(args) == 2:
                    subject, reply, hdr_b, size_b = args[0], None, None, args[1]
                elif len(args) == 3:
                    subject, reply, hdr_b, size_b = args[0], args[1], None, args[2]
                else:
                    raise _silent(f"processPub Parse Error: {_q(arg)}")
                size = _size(size_b)
                if size < 0:
                    raise _silent(f"processPub Bad or Missing Size: {_q(arg)}")
                hdr = 0
            else:
                if len(args) == 3:
                    subject, reply, hdr_b, size_b = args[0], None, args[1], args[2]
                elif len(args) == 4:
                    subject, reply, hdr_b, size_b = args
                else:
                    raise _silent(f"processHeaderPub Parse Error: {_q(arg)}")
                hdr = _size(hdr_b)
                size = _size(size_b)
                if hdr < 0:
                    raise _silent(f"processHeaderPub Bad or Missing Header Size: {_q(arg)}")
                if size < 0:
                    raise _silent(f"processHeaderPub Bad or Missing Total Size: {_q(arg)}")
                if hdr > size:
                    raise _silent(f"processHeaderPub Header Size larger then TotalSize: {_q(arg)}")
            if size > max_payload:
                raise NatsProtocolError(ERR_MAX_PAYLOAD)
            start = nl + 1
            end = start + size
            if end + 2 > n:  # wait for the payload; check its "\r" as soon as it is here
                if end < n:
                    if buf[end] != 13:
                        raise _unknown_op()
                    self._need = end + 2 - pos
                else:
                    self._need = end + 1 - pos
                return -1
            if buf[end] != 13 or buf[end + 1] != 10:
                raise _unknown_op()
            if kind == _K_PUB:
                append((OP_PUB, _dec(subject), None if reply is None else _dec(reply), buf[start:end]))
            else:
                mid = start + hdr
                append((OP_HPUB, _dec(subject), None if reply is None else _dec(reply), buf[start:mid],
                        buf[mid:end]))
            return end + 2

        if kind == _K_SUB:
            args = _split(arg, _SEPS_TO_SPACE)
            if len(args) == 2:
                append((OP_SUB, _dec(args[0]), None, _dec(args[1])))
            elif len(args) == 3:
                append((OP_SUB, _dec(args[0]), _dec(args[1]), _dec(args[2])))
            else:
                raise _silent(f"processSub Parse Error: {_q(arg)}")
        elif kind == _K_UNSUB:
            args = _split(arg, _SEPS_TO_SPACE)
            if len(args) == 1:
                append((OP_UNSUB, _dec(args[0]), None))
            elif len(args) == 2:
                max_msgs = _size(args[1])
                append((OP_UNSUB, _dec(args[0]), max_msgs if max_msgs > 0 else None))
            else:
                raise _silent(f"processUnsub Parse Error: {_q(arg)}")
        elif kind == _K_CONNECT:
            append((OP_CONNECT, _connect_options(arg)))
        elif kind == _K_INFO:  # a client's INFO is decoded and ignored (client.go processInfo)
            info = _json(arg, "processInfo")
            if info is not None and type(info) is not dict:
                raise _silent(f"processInfo: json: cannot unmarshal {type(info).__name__} into Go value of "
                              "type server.Info")
        else:  # -ERR from a client: nats-server logs it and closes (client.go processErr)
            raise _silent(f"Client Error {_dec(arg)}")
        return nl + 1

    def _wait(self, pos: int, n: int) -> int:
        self._need = n - pos + 1
        return -1

    def _wait_with(self, kept: bytes) -> int:
        """Wait for more bytes, keeping only ``kept`` of the incomplete op (its ignorable tail dropped)."""
        self._kept = kept
        self._need = len(kept) + 1
        return -1
