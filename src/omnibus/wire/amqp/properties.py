"""Basic-class content properties (spec 1.8 "basic" properties, 4.2.6.1 content header): decode the raw
property bytes a publisher sent, encode them, and patch them (e.g. add x-death headers) keeping what is not
changed byte for byte.

Strategy: the broker forwards the raw bytes (property flags + property list, exactly as the publisher
sent them) from publish to deliver; nothing is decoded on the hot path. :func:`decode_properties` is for
when the server needs a value (delivery_mode, expiration, priority, headers); :func:`patch_properties` /
:func:`patch_headers` rewrite only the fields they are asked to and keep the other fields' bytes, and the
untouched header entries' bytes, as they were.

As RabbitMQ (rabbit_framing_amqp_0_9_1 decode_properties(60, ...)): 14 flag bits from the top of the
16-bit flags word; the two low bits (bit 1 reserved, bit 0 "more flags") are ignored; the property list
must be consumed exactly; short strings are not UTF-8-checked. A malformed property list → :class:
`PropertiesError`; RabbitMQ then closes the connection with 541 INTERNAL_ERROR, class/method 0/0
(observed on 3.10.8 for a bad headers table, truncated list, trailing bytes, empty list):
:func:`properties_error` builds that.

Rules: no I/O; imports nothing of ours but this package.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable, Mapping, NamedTuple

from omnibus.wire.amqp import fields as _fields
from omnibus.wire.amqp.errors import INTERNAL_ERROR, AMQPError, AMQPError as _E, explanation

__all__ = ["BasicProperties", "PropertiesError", "decode_properties", "encode_properties",
           "patch_properties", "patch_headers", "properties_error", "EMPTY_PROPERTIES", "PROPERTY_TYPES"]


class PropertiesError(ValueError):
    """The property list does not decode."""


class BasicProperties(NamedTuple):
    """Decoded basic properties; None where the flag is clear."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: dict[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None


#: Field types in flag order (bit 15 first).
PROPERTY_TYPES = ("shortstr", "shortstr", "table", "octet", "octet", "shortstr", "shortstr", "shortstr",
                  "shortstr", "timestamp", "shortstr", "shortstr", "shortstr", "shortstr")
_FIELDS = BasicProperties._fields
#: Raw property bytes with no property set.
EMPTY_PROPERTIES = b"\x00\x00"

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def _split(raw: bytes) -> list[bytes | None]:
    """Raw bytes of each present property (None when absent). Raises PropertiesError."""
    if len(raw) < 2:
        raise PropertiesError("property flags missing")
    flags = _U16.unpack_from(raw)[0]
    pos = 2
    end = len(raw)
    out: list[bytes | None] = []
    for i, typ in enumerate(PROPERTY_TYPES):
        if not flags & (0x8000 >> i):
            out.append(None)
            continue
        if typ == "shortstr":
            if pos >= end:
                raise PropertiesError("truncated property list")
            n = 1 + raw[pos]
        elif typ == "table":
            if pos + 4 > end:
                raise PropertiesError("truncated property list")
            n = 4 + _U32.unpack_from(raw, pos)[0]
        elif typ == "octet":
            n = 1
        else:
            n = 8
        if pos + n > end:
            raise PropertiesError("truncated property list")
        out.append(raw[pos:pos + n])
        pos += n
    if pos != end:
        raise PropertiesError("trailing bytes after the property list")
    return out


def _decode_one(typ: str, b: bytes) -> Any:
    if typ == "shortstr":
        return b[1:].decode("utf-8", "surrogateescape")
    if typ == "octet":
        return b[0]
    if typ == "timestamp":
        return _fields.Timestamp(_U64.unpack(b)[0])
    try:
        return _fields.decode_table(b, 4)
    except _fields.FieldError as e:
        raise PropertiesError(str(e)) from None


def decode_properties(raw: bytes) -> BasicProperties:
    """Decode the property flags + list of a basic content header. Raises :class:`PropertiesError`."""
    if raw == EMPTY_PROPERTIES:
        return _EMPTY
    parts = _split(raw)
    return BasicProperties(*(None if b is None else _decode_one(t, b) for t, b in zip(PROPERTY_TYPES, parts)))


_EMPTY = BasicProperties()


def _encode_one(typ: str, v: Any) -> bytes:
    if typ == "shortstr":
        b = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
        if len(b) > 255:
            raise ValueError("short string property longer than 255 bytes")
        return bytes((len(b),)) + b
    if typ == "octet":
        return bytes((v,))
    if typ == "timestamp":
        return _U64.pack(int(v))
    return _fields.encode_table(v)


def _join(parts: list[bytes | None]) -> bytes:
    flags = 0
    for i, b in enumerate(parts):
        if b is not None:
            flags |= 0x8000 >> i
    return _U16.pack(flags) + b"".join(b for b in parts if b is not None)


def encode_properties(props: BasicProperties | Mapping[str, Any] | None = None, **kw: Any) -> bytes:
    """Property flags + list for the given values (a BasicProperties, a mapping, or keywords)."""
    if props is None:
        values = kw
    elif isinstance(props, BasicProperties):
        values = {**props._asdict(), **kw}
    else:
        values = {**props, **kw}
    parts: list[bytes | None] = []
    for name, typ in zip(_FIELDS, PROPERTY_TYPES):
        v = values.get(name)
        parts.append(None if v is None else _encode_one(typ, v))
    unknown = set(values) - set(_FIELDS)
    if unknown:
        raise TypeError(f"unknown basic properties: {sorted(unknown)}")
    return _join(parts)


def patch_properties(raw: bytes, **changes: Any) -> bytes:
    """``raw`` with the named properties replaced (None removes one); other properties keep their bytes.

    E.g. ``patch_properties(raw, expiration=None)`` strips ``expiration`` as RabbitMQ does when it
    dead-letters a message. Raises :class:`PropertiesError` if ``raw`` does not decode.
    """
    parts = _split(raw)
    for name, v in changes.items():
        i = _FIELDS.index(name)
        parts[i] = None if v is None else _encode_one(PROPERTY_TYPES[i], v)
    return _join(parts)


def patch_headers(raw: bytes, set: Mapping[str, Any] | None = None, remove: Iterable[str] = ()) -> bytes:
    """``raw`` with header entries set (placed first, in the given order, replacing any entry of the same
    name) and removed; every other header entry, and every other property, keeps its bytes.

    For x-death (RabbitMQ rabbit_dead_letter: the updated x-death array goes first) and for removing
    ``BCC`` before delivery (rabbit_basic). Raises :class:`PropertiesError` if ``raw`` does not decode.
    """
    parts = _split(raw)
    set = set or {}
    drop = {*remove, *set}
    kept: list[bytes] = []
    old = parts[2]
    if old is not None:
        pos, end = 4, len(old)
        try:
            while pos < end:
                n = old[pos]
                key = old[pos + 1:pos + 1 + n].decode("utf-8", "surrogateescape")
                start = pos
                _, pos = _fields._value(old, pos + 1 + n, end, 0)
                if key not in drop:
                    kept.append(old[start:pos])
        except (_fields.FieldError, IndexError) as e:
            raise PropertiesError(str(e)) from None
    new = [_fields._short_key(k) + _fields.encode_value(v) for k, v in set.items()]
    body = b"".join(new + kept)
    parts[2] = _U32.pack(len(body)) + body if (body or old is not None) else None
    return _join(parts)


def properties_error() -> AMQPError:
    """What RabbitMQ 3.10 sends when a publish's properties do not decode: connection.close 541
    ``"INTERNAL_ERROR"`` (no explanation: a non-AMQP exit reason, rabbit_binary_generator
    lookup_amqp_exception), class/method 0/0."""
    return _E(INTERNAL_ERROR, "INTERNAL_ERROR", 0, 0, scope="connection")


del explanation
