"""Every AMQP 0-9-1 method (classes connection, channel, access, exchange, queue, basic, confirm, tx), both
directions, with RabbitMQ's extensions (exchange.bind/unbind, basic.nack, confirm.*, connection.blocked/
unblocked/update-secret), as declared in amqp-rabbitmq-0.9.1.json (rabbitmq-codegen) and spec chapter 1.

Strategy: one declarative table (:data:`_SPEC`) names each method's class id, method id, arguments with
their AMQP domain types and defaults, who may send it, and whether it is synchronous / carries content.
From it, at import time, this module makes one ``NamedTuple`` per method (``QueueDeclare``,
``BasicPublish``, ...; fields in spec order, snake_case, spec defaults) and one decoder and encoder per
method. NamedTuples because they are cheap to build (``tuple.__new__``), immutable, match-able
(``case QueueDeclare(queue=q, passive=True)``) and compare by value.

Why not pamqp for these: pamqp 3.x decodes a truncated or padded argument list without complaint, turns
invalid UTF-8 into bytes, guesses timestamps; RabbitMQ's generated decoder (rabbit_framing_amqp_0_9_1
``decode_method_fields``) matches the whole argument binary exactly and answers precise errors, which a
broker must reproduce. pamqp is used in the tests as an independent encoder/decoder to check this one.

Decoding as RabbitMQ does (rabbit_framing_amqp_0_9_1.erl, generated):
- The argument bytes must be exactly the arguments: a short or long binary (or a table length past the
  end) → 501 FRAME_ERROR ``"cannot decode <<...>>"`` (``~w`` of the argument bytes, rabbit_misc
  frame_error) with the method's class/method id.
- Short strings of methods *without content* must be UTF-8 (``rabbit_binary_parser:assert_utf8``), else
  501 ``"Malformed UTF-8 in shortstr"`` with class/method 0/0. Content methods (basic.publish, return,
  deliver, get-ok) are not checked: their strings are decoded with surrogateescape (lossless).
- A table whose inside is malformed (bad type tag, bad inner length): RabbitMQ 3.10 crashes the connection
  process (observed: TCP reset, no close). Here it is the same 501 "cannot decode" as above, so the
  client learns why; a deliberate difference.
- Long strings are ``bytes``; tables ``dict`` (see :mod:`.fields`); bits ``bool``; integers ``int``.

Rules: no I/O; imports nothing of ours but ``wire._common`` and this package.
"""

from __future__ import annotations

import struct
from types import MappingProxyType
from typing import Any, Callable, NamedTuple

from omnibus.wire.amqp import fields as _fields
from omnibus.wire.amqp.errors import FRAME_ERROR, AMQPError, amqp_error, erl_w

__all__ = ["MethodSpec", "METHODS", "BY_NAME", "decode_method", "encode_method", "method_spec",
           "CLIENT", "SERVER", "BOTH"]

CLIENT = "client"  # only a client sends it
SERVER = "server"  # only a server sends it
BOTH = "both"

_EMPTY_TABLE: Any = MappingProxyType({})

# (class id, class name, [(method id, method name, sender, synchronous, content,
#                          "arg:type[=default] ...")])
# Types: octet short long longlong shortstr longstr bit table timestamp. Defaults as in the JSON spec.
_SPEC: list[tuple[int, str, list[tuple[int, str, str, bool, bool, str]]]] = [
    (10, "connection", [
        (10, "start", SERVER, True, False,
         "version_major:octet=0 version_minor:octet=9 server_properties:table mechanisms:longstr=PLAIN "
         "locales:longstr=en_US"),
        (11, "start-ok", CLIENT, False, False,
         "client_properties:table mechanism:shortstr=PLAIN response:longstr locale:shortstr=en_US"),
        (20, "secure", SERVER, True, False, "challenge:longstr"),
        (21, "secure-ok", CLIENT, False, False, "response:longstr"),
        (30, "tune", SERVER, True, False, "channel_max:short=0 frame_max:long=0 heartbeat:short=0"),
        (31, "tune-ok", CLIENT, False, False, "channel_max:short=0 frame_max:long=0 heartbeat:short=0"),
        (40, "open", CLIENT, True, False, "virtual_host:shortstr=/ capabilities:shortstr= insist:bit=0"),
        (41, "open-ok", SERVER, False, False, "known_hosts:shortstr="),
        (50, "close", BOTH, True, False,
         "reply_code:short reply_text:shortstr= class_id:short method_id:short"),
        (51, "close-ok", BOTH, False, False, ""),
        (60, "blocked", SERVER, False, False, "reason:shortstr="),
        (61, "unblocked", SERVER, False, False, ""),
        # RabbitMQ's extension: the *client* renews its secret (OAuth 2 tokens), the server answers ok
        (70, "update-secret", CLIENT, True, False, "new_secret:longstr reason:shortstr"),
        (71, "update-secret-ok", SERVER, False, False, ""),
    ]),
    (20, "channel", [
        (10, "open", CLIENT, True, False, "out_of_band:shortstr="),
        (11, "open-ok", SERVER, False, False, "channel_id:longstr="),
        (20, "flow", BOTH, True, False, "active:bit"),
        (21, "flow-ok", BOTH, False, False, "active:bit"),
        (40, "close", BOTH, True, False,
         "reply_code:short reply_text:shortstr= class_id:short method_id:short"),
        (41, "close-ok", BOTH, False, False, ""),
    ]),
    (30, "access", [
        (10, "request", CLIENT, True, False,
         "realm:shortstr=/data exclusive:bit=0 passive:bit=1 active:bit=1 write:bit=1 read:bit=1"),
        (11, "request-ok", SERVER, False, False, "ticket:short=1"),
    ]),
    (40, "exchange", [
        (10, "declare", CLIENT, True, False,
         "ticket:short=0 exchange:shortstr type:shortstr=direct passive:bit=0 durable:bit=0 "
         "auto_delete:bit=0 internal:bit=0 nowait:bit=0 arguments:table"),
        (11, "declare-ok", SERVER, False, False, ""),
        (20, "delete", CLIENT, True, False, "ticket:short=0 exchange:shortstr if_unused:bit=0 nowait:bit=0"),
        (21, "delete-ok", SERVER, False, False, ""),
        (30, "bind", CLIENT, True, False,
         "ticket:short=0 destination:shortstr source:shortstr routing_key:shortstr= nowait:bit=0 "
         "arguments:table"),
        (31, "bind-ok", SERVER, False, False, ""),
        (40, "unbind", CLIENT, True, False,
         "ticket:short=0 destination:shortstr source:shortstr routing_key:shortstr= nowait:bit=0 "
         "arguments:table"),
        (51, "unbind-ok", SERVER, False, False, ""),
    ]),
    (50, "queue", [
        (10, "declare", CLIENT, True, False,
         "ticket:short=0 queue:shortstr= passive:bit=0 durable:bit=0 exclusive:bit=0 auto_delete:bit=0 "
         "nowait:bit=0 arguments:table"),
        (11, "declare-ok", SERVER, False, False, "queue:shortstr message_count:long consumer_count:long"),
        (20, "bind", CLIENT, True, False,
         "ticket:short=0 queue:shortstr= exchange:shortstr routing_key:shortstr= nowait:bit=0 "
         "arguments:table"),
        (21, "bind-ok", SERVER, False, False, ""),
        (30, "purge", CLIENT, True, False, "ticket:short=0 queue:shortstr= nowait:bit=0"),
        (31, "purge-ok", SERVER, False, False, "message_count:long"),
        (40, "delete", CLIENT, True, False,
         "ticket:short=0 queue:shortstr= if_unused:bit=0 if_empty:bit=0 nowait:bit=0"),
        (41, "delete-ok", SERVER, False, False, "message_count:long"),
        (50, "unbind", CLIENT, True, False,
         "ticket:short=0 queue:shortstr= exchange:shortstr routing_key:shortstr= arguments:table"),
        (51, "unbind-ok", SERVER, False, False, ""),
    ]),
    (60, "basic", [
        (10, "qos", CLIENT, True, False, "prefetch_size:long=0 prefetch_count:short=0 global_:bit=0"),
        (11, "qos-ok", SERVER, False, False, ""),
        (20, "consume", CLIENT, True, False,
         "ticket:short=0 queue:shortstr= consumer_tag:shortstr= no_local:bit=0 no_ack:bit=0 "
         "exclusive:bit=0 nowait:bit=0 arguments:table"),
        (21, "consume-ok", SERVER, False, False, "consumer_tag:shortstr"),
        (30, "cancel", BOTH, True, False, "consumer_tag:shortstr nowait:bit=0"),
        (31, "cancel-ok", BOTH, False, False, "consumer_tag:shortstr"),
        (40, "publish", CLIENT, False, True,
         "ticket:short=0 exchange:shortstr= routing_key:shortstr= mandatory:bit=0 immediate:bit=0"),
        (50, "return", SERVER, False, True,
         "reply_code:short reply_text:shortstr= exchange:shortstr routing_key:shortstr"),
        (60, "deliver", SERVER, False, True,
         "consumer_tag:shortstr delivery_tag:longlong redelivered:bit=0 exchange:shortstr "
         "routing_key:shortstr"),
        (70, "get", CLIENT, True, False, "ticket:short=0 queue:shortstr= no_ack:bit=0"),
        (71, "get-ok", SERVER, False, True,
         "delivery_tag:longlong redelivered:bit=0 exchange:shortstr routing_key:shortstr message_count:long"),
        (72, "get-empty", SERVER, False, False, "cluster_id:shortstr="),
        (80, "ack", BOTH, False, False, "delivery_tag:longlong=0 multiple:bit=0"),
        (90, "reject", CLIENT, False, False, "delivery_tag:longlong requeue:bit=1"),
        (100, "recover-async", CLIENT, False, False, "requeue:bit=0"),
        (110, "recover", CLIENT, True, False, "requeue:bit=0"),
        (111, "recover-ok", SERVER, False, False, ""),
        (120, "nack", BOTH, False, False, "delivery_tag:longlong=0 multiple:bit=0 requeue:bit=1"),
    ]),
    (85, "confirm", [
        (10, "select", CLIENT, True, False, "nowait:bit=0"),
        (11, "select-ok", SERVER, False, False, ""),
    ]),
    (90, "tx", [
        (10, "select", CLIENT, True, False, ""),
        (11, "select-ok", SERVER, False, False, ""),
        (20, "commit", CLIENT, True, False, ""),
        (21, "commit-ok", SERVER, False, False, ""),
        (30, "rollback", CLIENT, True, False, ""),
        (31, "rollback-ok", SERVER, False, False, ""),
    ]),
]


class MethodSpec(NamedTuple):
    """What the table says about one method; ``cls`` is its NamedTuple class."""

    class_id: int
    method_id: int
    name: str  # "queue.declare" (RabbitMQ's spelling with '_' is in erl_name)
    erl_name: str  # "queue.declare_ok" as RabbitMQ names the record
    sender: str  # CLIENT / SERVER / BOTH
    synchronous: bool
    content: bool
    args: tuple[tuple[str, str], ...]  # (field, type)
    cls: type
    decode: Callable[[bytes, int], tuple]  # (payload, offset of the first argument) -> method
    encode: Callable[[tuple], bytes]  # method -> class id + method id + arguments


_DEFAULTS = {"octet": 0, "short": 0, "long": 0, "longlong": 0, "timestamp": 0, "bit": False,
             "shortstr": "", "longstr": b"", "table": _EMPTY_TABLE}

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_FIXED = {"octet": _U8, "short": _U16, "long": _U32, "longlong": _U64, "timestamp": _U64}


class _Bad(Exception):
    """The argument bytes do not match the argument list (→ "cannot decode")."""


def _camel(cls_name: str, method_name: str) -> str:
    return cls_name.capitalize() + "".join(p.capitalize() for p in method_name.split("-"))


def _parse_default(typ: str, text: str | None) -> Any:
    if text is None:
        return _DEFAULTS[typ]
    if typ in _FIXED:
        return int(text)
    if typ == "bit":
        return text == "1"
    if typ == "shortstr":
        return text
    if typ == "longstr":
        return text.encode()
    return _DEFAULTS[typ]


def _make_decoder(class_id: int, method_id: int, args: tuple[tuple[str, str], ...], content: bool,
                  cls: type) -> Callable[[bytes, int], tuple]:
    """A decoder: structural pass (exact binary match), then UTF-8 checks and tables in field order."""
    check_utf8 = not content
    new = tuple.__new__

    def decode(payload: bytes, pos: int) -> tuple:
        end = len(payload)
        raw: list[Any] = []
        bitpos = 8
        bitbyte = 0
        try:
            for _, typ in args:
                if typ == "bit":
                    if bitpos == 8:
                        if pos >= end:
                            raise _Bad
                        bitbyte = payload[pos]
                        pos += 1
                        bitpos = 0
                    raw.append(bool(bitbyte & (1 << bitpos)))
                    bitpos += 1
                    continue
                bitpos = 8
                if typ == "shortstr":
                    if pos >= end:
                        raise _Bad
                    n = payload[pos]
                    pos += 1 + n
                    if pos > end:
                        raise _Bad
                    raw.append(payload[pos - n:pos])
                elif typ in ("longstr", "table"):
                    if pos + 4 > end:
                        raise _Bad
                    n = _U32.unpack_from(payload, pos)[0]
                    pos += 4 + n
                    if pos > end:
                        raise _Bad
                    raw.append((pos - n, pos) if typ == "table" else payload[pos - n:pos])
                else:
                    st = _FIXED[typ]
                    if pos + st.size > end:
                        raise _Bad
                    raw.append(st.unpack_from(payload, pos)[0])
                    pos += st.size
            if pos != end:
                raise _Bad
            for i, (_, typ) in enumerate(args):
                if typ == "shortstr":
                    b = raw[i]
                    if check_utf8:
                        try:
                            raw[i] = b.decode("utf-8")
                        except UnicodeDecodeError:
                            raise amqp_error(FRAME_ERROR, "Malformed UTF-8 in shortstr") from None
                    else:
                        raw[i] = b.decode("utf-8", "surrogateescape")
                elif typ == "table":
                    start, stop = raw[i]
                    raw[i] = _fields.decode_table(payload, start, stop)
        except (_Bad, _fields.FieldError):
            raise cannot_decode(class_id, method_id, payload[4:] if len(payload) >= 4 else payload) from None
        return new(cls, raw)

    return decode


def cannot_decode(class_id: int, method_id: int, fields_bin: bytes) -> AMQPError:
    """rabbit_misc:frame_error: 501 ``"cannot decode ~w"`` of the argument bytes."""
    return amqp_error(FRAME_ERROR, "cannot decode " + erl_w(bytes(fields_bin)), class_id, method_id)


def _make_encoder(class_id: int, method_id: int, args: tuple[tuple[str, str], ...]) -> Callable[[tuple], bytes]:
    head = struct.pack(">HH", class_id, method_id)

    def encode(m: tuple) -> bytes:
        out = [head]
        bits = 0
        nbits = -1
        for (name, typ), v in zip(args, m):
            if typ == "bit":
                if nbits == -1 or nbits == 8:
                    if nbits != -1:
                        out.append(bytes((bits,)))
                    bits, nbits = 0, 0
                if v:
                    bits |= 1 << nbits
                nbits += 1
                continue
            if nbits != -1:
                out.append(bytes((bits,)))
                bits, nbits = 0, -1
            if typ == "shortstr":
                raw = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
                if len(raw) > 255:
                    raise ValueError(f"{name}: short string longer than 255 bytes")
                out.append(bytes((len(raw),)) + raw)
            elif typ == "longstr":
                raw = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
                out.append(_U32.pack(len(raw)) + raw)
            elif typ == "table":
                out.append(_fields.encode_table(v))
            else:
                out.append(_FIXED[typ].pack(v))
        if nbits != -1:
            out.append(bytes((bits,)))
        return b"".join(out)

    return encode


#: (class id, method id) -> MethodSpec
METHODS: dict[tuple[int, int], MethodSpec] = {}
#: "queue.declare" -> MethodSpec
BY_NAME: dict[str, MethodSpec] = {}
#: NamedTuple class -> MethodSpec
_BY_CLASS: dict[type, MethodSpec] = {}
#: class id -> class name
CLASS_NAMES: dict[int, str] = {}


def _build() -> None:
    g = globals()
    for class_id, class_name, methods in _SPEC:
        CLASS_NAMES[class_id] = class_name
        for method_id, method_name, sender, sync, content, argtext in methods:
            args: list[tuple[str, str]] = []
            defaults: list[Any] = []
            for item in argtext.split():
                name, _, rest = item.partition(":")
                typ, eq, default = rest.partition("=")
                args.append((name, typ))
                defaults.append(_parse_default(typ, default if eq else None))
            # NamedTuple requires defaults only on a suffix: give every field one (spec default or zero
            # value), so ``QueueDeclare(queue="q")`` works.
            cls_name = _camel(class_name, method_name)
            cls = NamedTuple(cls_name, [(n, _PY_TYPES[t]) for n, t in args])  # type: ignore[misc]
            cls.__new__.__defaults__ = tuple(defaults)
            full = f"{class_name}.{method_name}"
            cls.__doc__ = (f"{full} ({class_id}, {method_id}); sent by {sender}"
                           f"{', synchronous' if sync else ''}{', carries content' if content else ''}.")
            cls.__module__ = __name__
            spec = MethodSpec(class_id, method_id, full, f"{class_name}.{method_name.replace('-', '_')}",
                              sender, sync, content, tuple(args), cls,
                              _make_decoder(class_id, method_id, tuple(args), content, cls),
                              _make_encoder(class_id, method_id, tuple(args)))
            cls.SPEC = spec  # type: ignore[attr-defined]
            cls.CLASS_ID = class_id  # type: ignore[attr-defined]
            cls.METHOD_ID = method_id  # type: ignore[attr-defined]
            cls.NAME = full  # type: ignore[attr-defined]
            METHODS[(class_id, method_id)] = spec
            BY_NAME[full] = spec
            _BY_CLASS[cls] = spec
            g[cls_name] = cls
            __all__.append(cls_name)


_PY_TYPES = {"octet": int, "short": int, "long": int, "longlong": int, "timestamp": int, "bit": bool,
             "shortstr": str, "longstr": bytes, "table": dict}

_build()


def method_spec(m: tuple) -> MethodSpec:
    """The spec of a method instance (``type(m).SPEC``)."""
    return _BY_CLASS[type(m)]


def encode_method(m: tuple) -> bytes:
    """Method frame payload: class id, method id, arguments."""
    return _BY_CLASS[type(m)].encode(m)


def decode_method(payload: bytes) -> tuple:
    """Decode a method frame payload (at least 4 bytes). Raises :class:`AMQPError` for an unknown method
    (see :func:`unknown_method`) or bad arguments."""
    class_id, method_id = struct.unpack_from(">HH", payload)
    spec = METHODS.get((class_id, method_id))
    if spec is None:
        raise unknown_method(class_id, method_id)
    return spec.decode(payload, 4)


def unknown_method(class_id: int, method_id: int) -> AMQPError:
    """A method id outside the table. RabbitMQ 3.10 crashes the connection (``exit({unknown_method_id,
    {C, M}})`` in lookup_method_name, observed: TCP reset without connection.close). Here: connection.close
    540 NOT_IMPLEMENTED naming the ids, so the client learns why; a deliberate difference."""
    from omnibus.wire.amqp.errors import NOT_IMPLEMENTED
    return amqp_error(NOT_IMPLEMENTED, f"unknown method {{{class_id},{method_id}}}", class_id, method_id)
