"""AMQP 0-9-1 field tables and field arrays (spec 4.2.5.5, 4.2.1), read as RabbitMQ reads them.

Strategy: a table is decoded in one pass over ``bytes`` with precompiled ``struct.Struct``\\s, into a plain
``dict`` of plain Python values; encoding maps Python types back to type tags. The mapping follows
RabbitMQ's reader (rabbit_binary_parser parse_table/parse_array) and the "AMQP 0-9-1 errata"
(rabbitmq.com/amqp-0-9-1-errata, "field types"), which differs from the spec's table:

    tag  RabbitMQ type    Python           tag  RabbitMQ type   Python
    t    bool             bool             l    long (s64)      int    (yes, 'l' and 'L' are both signed
    b    byte (s8)        int              L    long (s64)      int     64-bit in RabbitMQ, errata 4.2.1)
    B    unsignedbyte     int              f    float (32)      float
    s    short (s16)      int    (spec: 's' is a short string; RabbitMQ: signed 16-bit, as Qpid)
    u    unsignedshort    int              d    double          float
    I    signedint (s32)  int              D    decimal         decimal.Decimal (scale octet, u32 value)
    i    unsignedint      int              S    longstr         str (UTF-8, surrogateescape: lossless)
    T    timestamp (u64)  Timestamp(int)   A    array           list
    F    table            dict             x    binary          bytes
    V    void             None

``U`` (the spec's short-int) and the spec's ``s`` short string are not read by RabbitMQ (its parser has no
clause for them; the connection fails), so they are errors here too. Keys are short strings decoded with
surrogateescape. A repeated key keeps its first value (RabbitMQ keeps a list and looks keys up with
``lists:keysearch``, which finds the first).

Encoding (:func:`encode_table`): bool→t, int→l (RabbitMQ writes x-death ``count`` as long), float→d,
Decimal→D, Timestamp→T, datetime→T, str→S, bytes→x, dict→F, list/tuple→A, None→V, and
:class:`Typed` for an explicit tag (``Typed("I", 5)``). :func:`encode_table` of :func:`decode_table` gives
back the same bytes except for the integer and float widths (``b B s u I i L`` come back as ``l``, ``f`` as
``d``); code that must keep a client's table byte for byte keeps the raw bytes
(see :func:`omnibus.wire.amqp.properties.patch_headers`).

Errors: :class:`FieldError` (a plain ``ValueError``); the caller turns it into the reply RabbitMQ sends in
that place (501 "cannot decode" for a method argument, 541 INTERNAL_ERROR for properties).

Rules: no I/O; imports nothing of ours.
"""

from __future__ import annotations

import datetime as _dt
import struct
from decimal import Decimal
from typing import Any, Mapping, NamedTuple

__all__ = ["FieldError", "Timestamp", "Typed", "decode_table", "decode_array", "encode_table",
           "encode_array", "encode_value", "table_bytes"]


class FieldError(ValueError):
    """Malformed field table/array bytes, or a Python value that cannot be encoded."""


class Timestamp(int):
    """A 'T' value (seconds since the epoch, unsigned 64-bit), kept as an int so it re-encodes as 'T'."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Timestamp({int(self)})"


class Typed(NamedTuple):
    """A value with an explicit field-type tag for encoding, e.g. ``Typed("I", -5)``."""

    tag: str
    value: Any


_U8 = struct.Struct(">B")
_S8 = struct.Struct(">b")
_U16 = struct.Struct(">H")
_S16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_S32 = struct.Struct(">i")
_S64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DEC = struct.Struct(">BI")

#: Nesting depth past which tables/arrays are refused (RabbitMQ has no limit but its stack; a frame is at
#: most frame_max bytes anyway, this only keeps Python's recursion bounded).
MAX_DEPTH = 64


def _value(data: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    """Decode the value whose tag byte is at ``pos``; return (value, next position)."""
    if pos >= end:
        raise FieldError("missing field value type")
    tag = data[pos]
    pos += 1
    if tag == 0x53:  # S
        if pos + 4 > end:
            raise FieldError("truncated long string")
        n = _U32.unpack_from(data, pos)[0]
        pos += 4
        if pos + n > end:
            raise FieldError("truncated long string")
        return data[pos:pos + n].decode("utf-8", "surrogateescape"), pos + n
    size = _FIXED.get(tag)
    if size is not None:
        if pos + size > end:
            raise FieldError(f"truncated {chr(tag)!r} value")
        return _FIXED_DECODE[tag](data, pos), pos + size
    if tag in (0x46, 0x41, 0x78):  # F A x
        if pos + 4 > end:
            raise FieldError("truncated length")
        n = _U32.unpack_from(data, pos)[0]
        pos += 4
        if pos + n > end:
            raise FieldError("truncated nested value")
        if tag == 0x78:
            return data[pos:pos + n], pos + n
        if depth >= MAX_DEPTH:
            raise FieldError("field tables nested too deeply")
        if tag == 0x46:
            return _table(data, pos, pos + n, depth + 1), pos + n
        return _array(data, pos, pos + n, depth + 1), pos + n
    if tag == 0x56:  # V
        return None, pos
    raise FieldError(f"unknown field type {chr(tag)!r}")


def _decimal(data: bytes, pos: int) -> Decimal:
    scale, value = _DEC.unpack_from(data, pos)
    return Decimal(value).scaleb(-scale)


_FIXED: dict[int, int] = {
    ord("t"): 1, ord("b"): 1, ord("B"): 1, ord("s"): 2, ord("u"): 2, ord("I"): 4, ord("i"): 4,
    ord("l"): 8, ord("L"): 8, ord("f"): 4, ord("d"): 8, ord("D"): 5, ord("T"): 8,
}
_FIXED_DECODE: dict[int, Any] = {
    ord("t"): lambda d, p: d[p] != 0,
    ord("b"): lambda d, p: _S8.unpack_from(d, p)[0],
    ord("B"): lambda d, p: d[p],
    ord("s"): lambda d, p: _S16.unpack_from(d, p)[0],
    ord("u"): lambda d, p: _U16.unpack_from(d, p)[0],
    ord("I"): lambda d, p: _S32.unpack_from(d, p)[0],
    ord("i"): lambda d, p: _U32.unpack_from(d, p)[0],
    ord("l"): lambda d, p: _S64.unpack_from(d, p)[0],
    ord("L"): lambda d, p: _S64.unpack_from(d, p)[0],
    ord("f"): lambda d, p: _F32.unpack_from(d, p)[0],
    ord("d"): lambda d, p: _F64.unpack_from(d, p)[0],
    ord("D"): _decimal,
    ord("T"): lambda d, p: Timestamp(_U64.unpack_from(d, p)[0]),
}


def _table(data: bytes, pos: int, end: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while pos < end:
        n = data[pos]
        pos += 1
        if pos + n > end:
            raise FieldError("truncated field name")
        key = data[pos:pos + n].decode("utf-8", "surrogateescape")
        value, pos = _value(data, pos + n, end, depth)
        if key not in out:
            out[key] = value
    return out


def _array(data: bytes, pos: int, end: int, depth: int) -> list[Any]:
    out: list[Any] = []
    while pos < end:
        value, pos = _value(data, pos, end, depth)
        out.append(value)
    return out


def decode_table(data: bytes, pos: int = 0, end: int | None = None) -> dict[str, Any]:
    """Decode the table *contents* ``data[pos:end]`` (without the 4-byte length). Raises FieldError."""
    return _table(data, pos, len(data) if end is None else end, 0)


def decode_array(data: bytes, pos: int = 0, end: int | None = None) -> list[Any]:
    """Decode the array *contents* ``data[pos:end]`` (without the 4-byte length). Raises FieldError."""
    return _array(data, pos, len(data) if end is None else end, 0)


# -- encoding ------------------------------------------------------------------------------------------
_TYPED_FIXED: dict[str, struct.Struct] = {
    "b": _S8, "B": _U8, "s": _S16, "u": _U16, "I": _S32, "i": _U32, "l": _S64, "L": _S64, "f": _F32,
    "d": _F64, "T": _U64,
}


def _short_key(key: str) -> bytes:
    raw = key.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise FieldError(f"field name longer than 255 bytes: {key[:40]!r}...")
    return bytes((len(raw),)) + raw


def encode_value(value: Any, depth: int = 0) -> bytes:
    """Tag byte + value bytes for one Python value."""
    try:
        if isinstance(value, Typed):
            tag, v = value
            if tag in _TYPED_FIXED:
                if tag == "T" and isinstance(v, _dt.datetime):
                    v = int(v.timestamp())
                return tag.encode() + _TYPED_FIXED[tag].pack(v)
            if tag == "t":
                return b"t\x01" if v else b"t\x00"
            if tag == "V":
                return b"V"
            if tag in ("S", "x"):
                raw = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)
                return tag.encode() + _U32.pack(len(raw)) + raw
            if tag in ("F", "A", "D"):
                enc = encode_value(v, depth)
                if enc[:1] != tag.encode():
                    raise FieldError(f"value {v!r} does not fit field type {tag!r}")
                return enc
            raise FieldError(f"unknown field type {tag!r}")
        if value is None:
            return b"V"
        if value is True:
            return b"t\x01"
        if value is False:
            return b"t\x00"
        if isinstance(value, Timestamp):
            return b"T" + _U64.pack(value)
        if isinstance(value, int):
            return b"l" + _S64.pack(value)
        if isinstance(value, float):
            return b"d" + _F64.pack(value)
        if isinstance(value, str):
            raw = value.encode("utf-8", "surrogateescape")
            return b"S" + _U32.pack(len(raw)) + raw
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            return b"x" + _U32.pack(len(raw)) + raw
        if isinstance(value, Decimal):
            sign, digits, exponent = value.as_tuple()
            if not isinstance(exponent, int):
                raise FieldError(f"cannot encode {value!r}")
            scale = -exponent
            intval = int("".join(map(str, digits)) or "0")
            if scale < 0:
                intval *= 10 ** (-scale)
                scale = 0
            if sign:
                raise FieldError(f"decimal {value} is negative (RabbitMQ reads an unsigned value)")
            return b"D" + _DEC.pack(scale, intval)
        if isinstance(value, _dt.datetime):
            return b"T" + _U64.pack(int(value.timestamp()))
        if isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                raise FieldError("field tables nested too deeply")
            raw = _table_body(value, depth + 1)
            return b"F" + _U32.pack(len(raw)) + raw
        if isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH:
                raise FieldError("field arrays nested too deeply")
            raw = b"".join(encode_value(v, depth + 1) for v in value)
            return b"A" + _U32.pack(len(raw)) + raw
    except struct.error as e:
        raise FieldError(f"cannot encode {value!r}: {e}") from None
    raise FieldError(f"cannot encode a {type(value).__name__} in a field table")


def _table_body(table: Mapping[str, Any], depth: int) -> bytes:
    return b"".join(_short_key(k) + encode_value(v, depth) for k, v in table.items())


def encode_table(table: Mapping[str, Any] | None) -> bytes:
    """The table with its 4-byte length prefix, as it goes into a method or property list."""
    if not table:
        return b"\x00\x00\x00\x00"
    raw = _table_body(table, 0)
    return _U32.pack(len(raw)) + raw


def encode_array(values: list[Any]) -> bytes:
    """An array with its 4-byte length prefix."""
    raw = b"".join(encode_value(v, 1) for v in values)
    return _U32.pack(len(raw)) + raw


def table_bytes(table: Mapping[str, Any] | None) -> bytes:
    """The table contents without the length prefix."""
    return _table_body(table, 0) if table else b""
