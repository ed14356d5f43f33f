"""AMQP 0-9-1 reply codes, the codec's error type, and RabbitMQ's error texts.

Strategy: every protocol violation the codec detects becomes one :class:`AMQPError` that carries what the
session needs to answer exactly as RabbitMQ 3.10 does: ``reply_code``, ``reply_text`` (already prefixed with
the code's name, ``"FRAME_ERROR - ..."``, and cut to 255 bytes with ``"..."`` as
``rabbit_binary_generator:amqp_exception_explanation`` does), ``class_id``/``method_id`` of the offending
method (0, 0 when RabbitMQ passes ``none``), ``scope`` (``"connection"`` → connection.close on channel 0,
``"channel"`` → channel.close on ``channel``), and ``action``, how the connection ends (see below).

The texts follow RabbitMQ; where they contain Erlang terms (``~p``/``~w`` in ``io_lib:format``), the terms are
rendered here as Erlang would (:func:`erl_p`, :func:`erl_w`), including ``~p``'s line breaks at 80 columns
(checked against ``erl`` 25 on a sweep of snippets; see tests/wire/test_amqp_errors.py).

Rules: no I/O; imports nothing of ours but ``wire._common``.
"""

from __future__ import annotations

from omnibus.wire._common.errors import ProtocolError

__all__ = [
    "REPLY_SUCCESS", "CONTENT_TOO_LARGE", "NO_ROUTE", "NO_CONSUMERS", "CONNECTION_FORCED", "INVALID_PATH",
    "ACCESS_REFUSED", "NOT_FOUND", "RESOURCE_LOCKED", "PRECONDITION_FAILED", "FRAME_ERROR", "SYNTAX_ERROR",
    "COMMAND_INVALID", "CHANNEL_ERROR", "UNEXPECTED_FRAME", "RESOURCE_ERROR", "NOT_ALLOWED", "NOT_IMPLEMENTED",
    "INTERNAL_ERROR", "REPLY_NAMES", "HARD_ERRORS", "AMQPError", "SEND_CLOSE", "SEND_CLOSE_AND_DROP",
    "SEND_HEADER_AND_DROP", "DROP", "erl_p", "erl_w", "amqp_error", "explanation",
]

# -- reply codes (spec 1.2 "Constants"; amqp-rabbitmq-0.9.1.json) --------------------------------------
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311  # soft
NO_ROUTE = 312  # soft (basic.return)
NO_CONSUMERS = 313  # soft (basic.return for immediate, unused by RabbitMQ)
CONNECTION_FORCED = 320  # hard
INVALID_PATH = 402  # hard
ACCESS_REFUSED = 403  # soft
NOT_FOUND = 404  # soft
RESOURCE_LOCKED = 405  # soft
PRECONDITION_FAILED = 406  # soft
FRAME_ERROR = 501  # hard
SYNTAX_ERROR = 502  # hard
COMMAND_INVALID = 503  # hard
CHANNEL_ERROR = 504  # hard
UNEXPECTED_FRAME = 505  # hard
RESOURCE_ERROR = 506  # hard
NOT_ALLOWED = 530  # hard
NOT_IMPLEMENTED = 540  # hard
INTERNAL_ERROR = 541  # hard

#: Code -> the name RabbitMQ puts before " - " in reply texts (rabbit_framing lookup_amqp_exception).
REPLY_NAMES: dict[int, str] = {
    311: "CONTENT_TOO_LARGE", 312: "NO_ROUTE", 313: "NO_CONSUMERS", 320: "CONNECTION_FORCED",
    402: "INVALID_PATH", 403: "ACCESS_REFUSED", 404: "NOT_FOUND", 405: "RESOURCE_LOCKED",
    406: "PRECONDITION_FAILED", 501: "FRAME_ERROR", 502: "SYNTAX_ERROR", 503: "COMMAND_INVALID",
    504: "CHANNEL_ERROR", 505: "UNEXPECTED_FRAME", 506: "RESOURCE_ERROR", 530: "NOT_ALLOWED",
    540: "NOT_IMPLEMENTED", 541: "INTERNAL_ERROR",
}
#: Codes the spec classes as hard errors: they always close the connection (rabbit_binary_generator
#: map_exception: ``SuggestedClose orelse Channel == 0``).
HARD_ERRORS = frozenset((320, 402, 501, 502, 503, 504, 505, 506, 530, 540, 541))

#: Longest reply text; RabbitMQ cuts at 252 bytes and appends "..." (amqp_exception_explanation).
MAX_REPLY_TEXT = 255

# -- how the connection ends after an error ------------------------------------------------------------
#: Send connection.close / channel.close and wait for the peer's close-ok (rabbit_reader respond_and_close).
SEND_CLOSE = "send_close"
#: Send connection.close, then close the socket without waiting: the byte stream lost sync (bad frame end,
#: frame over frame_max), rabbit_reader fatal_frame_error; or a handshake-phase refusal
#: (send_error_on_channel0_and_close). Nothing more is parsed.
SEND_CLOSE_AND_DROP = "send_close_and_drop"
#: Write our protocol header ``AMQP\\x00\\x00\\x09\\x01`` and close (rabbit_reader refuse_connection).
SEND_HEADER_AND_DROP = "send_header_and_drop"
#: Close the socket without writing anything: what RabbitMQ does for a bad frame before connection.open
#: (handshake_error, after a 3 s SILENT_CLOSE_DELAY the session may add).
DROP = "drop"


class AMQPError(ProtocolError):
    """The peer broke AMQP 0-9-1. Raised (or returned as the last event) by the codec.

    ``reply_text`` is the full text RabbitMQ would send, e.g. ``"FRAME_ERROR - type 9, all octets = <<>>:
    unknown_frame"``. ``scope`` is ``"connection"`` or ``"channel"``; ``channel`` is the channel the bad
    input arrived on (a connection-scope close is still sent on channel 0). ``action`` is one of
    :data:`SEND_CLOSE`, :data:`SEND_CLOSE_AND_DROP`, :data:`SEND_HEADER_AND_DROP`, :data:`DROP`.
    ``fatal`` (from :class:`ProtocolError`) is True for every connection-scope error.
    """

    def __init__(self, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0, *,
                 scope: str = "connection", channel: int = 0, action: str = SEND_CLOSE) -> None:
        super().__init__(reply_text, fatal=scope == "connection")
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.class_id = class_id
        self.method_id = method_id
        self.scope = scope
        self.channel = channel
        self.action = action

    @property
    def close_channel(self) -> int:
        """The channel the close method goes on: 0 for connection scope."""
        return 0 if self.scope == "connection" else self.channel

    def __repr__(self) -> str:
        return (f"AMQPError({self.reply_code}, {self.reply_text!r}, {self.class_id}, {self.method_id}, "
                f"scope={self.scope!r}, channel={self.channel}, action={self.action!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AMQPError):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.reply_code, self.reply_text, self.class_id, self.method_id, self.scope, self.channel,
                self.action)


def explanation(reply_code: int, text: str) -> str:
    """``"<NAME> - <text>"`` cut to 255 bytes as RabbitMQ does (cut counts UTF-8 bytes)."""
    full = f"{REPLY_NAMES[reply_code]} - {text}".encode("utf-8", "surrogateescape")
    if len(full) > MAX_REPLY_TEXT:
        full = full[:MAX_REPLY_TEXT - 3] + b"..."
    return full.decode("utf-8", "surrogateescape")


def amqp_error(reply_code: int, text: str, class_id: int = 0, method_id: int = 0, *, channel: int = 0,
               scope: str | None = None, action: str = SEND_CLOSE) -> AMQPError:
    """Build an error as ``rabbit_misc:amqp_error`` + ``map_exception`` do: hard codes (and anything on
    channel 0) close the connection, soft codes close the channel."""
    if scope is None:
        scope = "connection" if (reply_code in HARD_ERRORS or channel == 0) else "channel"
    return AMQPError(reply_code, explanation(reply_code, text), class_id, method_id, scope=scope,
                     channel=channel, action=action)


# -- Erlang term rendering -----------------------------------------------------------------------------
# The terms RabbitMQ formats into frame-error texts are integers, atoms, binaries and tuples of those.
# Atoms are passed as ``Atom("name")``; tuples as Python tuples; binaries as bytes.

class Atom(str):
    """An Erlang atom (printed bare)."""

    __slots__ = ()


#: io_lib_pretty's line length for ``~p`` (io_lib_format: default 80 columns).
_LINE_LENGTH = 80
#: Characters io_lib:printable_latin1_list accepts (what ``~p`` uses to print a binary as <<"...">>).
_PRINTABLE = frozenset(list(range(32, 127)) + list(range(160, 256)) + [8, 9, 10, 11, 12, 13, 27])
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 8: "\\b",
            12: "\\f", 27: "\\e"}


def _flat(term: object, pretty: bool) -> str:
    if isinstance(term, bool):
        return "true" if term else "false"
    if isinstance(term, int):
        return str(term)
    if isinstance(term, Atom):
        return str(term)
    if isinstance(term, (bytes, bytearray)):
        if not term:
            return "<<>>"
        if pretty and all(c in _PRINTABLE for c in term):
            # chars 160-255 go into RabbitMQ's reply text as single latin-1 bytes: keep them as lone
            # surrogates so that encoding the text with surrogateescape gives back those bytes
            return '<<"' + "".join(_ESCAPES.get(c) or (chr(c) if c < 128 else chr(0xDC00 + c)) for c in term) + '">>'
        return "<<" + ",".join(str(c) for c in term) + ">>"
    if isinstance(term, tuple):
        return "{" + ",".join(_flat(t, pretty) for t in term) + "}"
    raise TypeError(f"cannot render {term!r} as an Erlang term")


def erl_w(term: object) -> str:
    """``io_lib:format("~w", [Term])``: one line, binaries as byte lists."""
    return _flat(term, False)


def erl_p(term: object, col: int = 0) -> str:
    """``io_lib:format("~p", [Term])`` for a term starting at (0-based) column ``col`` of its line.

    Only the layouts RabbitMQ's frame-error texts can produce are modelled, after io_lib_pretty (OTP 25)
    and fitted against ``erl`` output: a byte-list binary is filled (continuation lines indented to the
    column after ``<<``, room per line ``80 - col - 3``, never under 8), a printable binary is printed as
    ``<<"...">>`` on one line, a tuple is printed flat when it ends by column 78, else filled with its
    continuation lines indented to the column after ``{``.
    """
    if isinstance(term, (bytes, bytearray)):
        flat = _flat(term, True)
        if not term or flat.startswith('<<"'):
            return flat  # snippets are at most 16 bytes: a string form always fits
        items = [str(c) for c in term]
        room0 = max(8, min(_LINE_LENGTH - (col + 3), len(flat) - 4))
        room = room0
        indent = "\n" + " " * (col + 2)
        out = ["<<"]
        for item in items[:-1]:
            need = len(item) + 1
            if room - need < 0:
                out.append(indent)
                room = room0
            out.append(item + ",")
            room -= need
        last = items[-1]
        if len(last) > room:
            out.append(indent)
        out.append(last + ">>")
        return "".join(out)
    if isinstance(term, tuple):
        parts = [_flat(t, True) for t in term]
        flat = "{" + ",".join(parts) + "}"
        if col + len(flat) <= _LINE_LENGTH - 2 or len(parts) < 2:
            return flat
        out = "{" + parts[0]
        cur = col + 1 + len(parts[0])
        for i, p in enumerate(parts[1:], 2):
            need = 1 + len(p)
            last = i == len(parts)
            fits = need < _LINE_LENGTH - (cur + 1) - 1 if last else need + 1 < _LINE_LENGTH - (cur + 1)
            if fits:
                out += "," + p
                cur += need
            else:
                out += ",\n" + " " * (col + 1) + p
                cur = col + 1 + len(p)
        return out + "}"
    return _flat(term, True)


def _last_line_len(s: str) -> int:
    return len(s) - (s.rfind("\n") + 1)


def payload_snippet(payload: bytes) -> tuple[str, bytes]:
    """rabbit_reader payload_snippet: ("all", payload) up to 16 bytes, else ("first 16", first 16)."""
    if len(payload) <= 16:
        return "all", payload
    return "first 16", payload[:16]


def frame_error_text(frame_type: int, payload: bytes, error: object) -> str:
    """rabbit_reader frame_error: ``"type ~p, ~s octets = ~p: ~p"``."""
    which, snippet = payload_snippet(payload)
    head = f"type {frame_type}, {which} octets = "
    text = head + erl_p(snippet, len(head)) + ": "
    return text + erl_p(error, _last_line_len(text))


def unexpected_frame_text(frame_type: int, payload: bytes) -> str:
    """rabbit_reader unexpected_frame: ``"type ~p, ~s octets = ~p"``."""
    which, snippet = payload_snippet(payload)
    head = f"type {frame_type}, {which} octets = "
    return head + erl_p(snippet, len(head))
