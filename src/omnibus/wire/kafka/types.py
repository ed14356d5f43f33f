"""Kafka protocol primitive types and a small schema DSL compiled to fast encoders and decoders.

Strategy: every API message is declared once, in ``messages/``, as a list of :class:`Field` s, each with the
version range it exists in (and, where it applies, the versions in which it may be null and the tag it is
sent under in flexible versions) -- the same information as Kafka's JSON message schemas
(clients/src/main/resources/common/message/*.json), written as Python by hand. :func:`message` turns a
declaration into a plain data class (``__slots__``, keyword ``__init__`` with the schema's defaults,
``__eq__``, ``__repr__``); the nested structs become classes too, reachable as attributes of the
top-level class (``ProduceRequest.TopicProduceData``). For each version actually used, the schema is
compiled once (lazily, on first use) into Python source -- one decode function and one encode function per
struct and version -- and ``exec``'d: runs of fixed-size fields become one precompiled ``struct.Struct``
``unpack_from``/``pack`` (after aiokafka's ``protocol/types.py``), variable-size fields call small readers
and writers, arrays of structs are looped inline, absent fields get their default, ``__eq__`` compares one
tuple. bench/kafka_codec.py prints the rates (and kafka-python 3's compiled codec on the same Produce body).

Wire rules (Kafka protocol guide, "Protocol Primitive Types"; KIP-482 for flexible versions):
- Big-endian fixed ints ``int8``..``int64``, ``uint16``, ``uint32``, ``float64``; ``bool`` is one byte
  (non-zero = true, as Kafka reads it); ``uuid`` is 16 raw bytes (kept as ``bytes``, not ``uuid.UUID``).
- ``varint``/``varlong`` are zig-zag; unsigned varints (compact lengths, tags) are at most 5 bytes.
- In a version listed in the message's flexible versions, ``string``, ``bytes``, ``records`` and arrays
  are *compact* (unsigned-varint length + 1, 0 = null) and every struct ends with a tagged-field section
  (count, then tag/size/value), where known tagged fields are read and unknown ones skipped (the protocol
  says skip them).
- Null: a field may be null only in its ``nullable`` versions; a null length elsewhere is a decode error,
  and encoding ``None`` there is a ``ValueError`` (a bug of the caller, not of the peer).
- Strings are decoded as UTF-8 with ``errors="replace"`` (Java's ``new String(bytes, UTF_8)`` replaces
  invalid sequences too); a string longer than 32767 bytes is an error, as in Kafka.

Python values: ints, ``bool``, ``float``, ``str``/``None``, ``bytes``/``None`` for ``bytes``, ``bytes``
(16) for ``uuid``, ``list`` for arrays. ``records`` decode to a ``memoryview`` into the request frame (no
copy; the frame is an immutable ``bytes``, so the view stays valid as long as it is kept) or ``None``; to
encode, a records field takes ``None``, any bytes-like object, a :class:`FileRegion` (or any other object
with ``__len__`` that is not bytes-like), or a list/tuple of such chunks. Large bytes and every region are
not copied: :meth:`encode_parts` returns them as separate parts after their length prefix, for
``transport.writelines`` or ``os.sendfile``.

Defaults (what a field holds when the version being decoded does not have it, or when the constructor is
not given it): the schema's default where it names one; otherwise ``None`` for a field nullable in some
version (an absent error message or transactional id is null, as the broker sends them), else 0, False,
0.0, "", b"", 16 zero bytes, ``[]``, a default-constructed struct, and ``None`` for records. Encoding a
version that lacks a field silently drops the field's value (Kafka raises for a non-default value of a
non-ignorable field; we leave that check to the session).

Errors: decoders raise :class:`~omnibus.wire.kafka.errors.KafkaDecodeError` (truncated input, bad length,
varint too long, null where not nullable) and never another exception on any input bytes.

Rules: pure functions of their input, never awaits, never touches a socket or a clock; imports nothing of
ours but ``wire.kafka.errors``. Thread-safe after the first compile of a version (compilation is
idempotent). Run ``python bench/kafka_codec.py`` before changing the generated code.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterable

from omnibus.wire.kafka.errors import KafkaDecodeError

__all__ = [
    "INT8", "INT16", "INT32", "INT64", "UINT16", "UINT32", "FLOAT64", "BOOL", "UUID", "VARINT", "VARLONG",
    "STRING", "BYTES", "RECORDS", "Array", "Struct", "Field", "F", "message", "MessageSchema",
    "FileRegion", "VersionRange", "parse_versions", "ZERO_UUID", "REQUEST", "RESPONSE",
    "MAX_STRING_LENGTH", "SPLICE_MIN_BYTES",
    "read_uvarint", "write_uvarint", "skip_tagged_fields", "records_length",
]

#: Longest string Kafka accepts (a ``string`` length is an int16; compact strings are held to the same,
#: clients/.../protocol/types/Type.java ``COMPACT_STRING``: "String length ... is larger than the maximum").
MAX_STRING_LENGTH = 0x7FFF
#: Highest API version number (versions are int16).
MAX_VERSION = 0x7FFF
#: Bytes-like records at least this long are passed through as their own part by encode_parts instead of
#: being copied into the output buffer (a copy of 4 KiB costs about what one more part costs to write).
SPLICE_MIN_BYTES = 4096
#: Unsigned varints (compact lengths, tags, tag sizes) are at most 5 bytes (ByteUtils.readUnsignedVarint).
MAX_UVARINT_BYTES = 5
ZERO_UUID = bytes(16)
REQUEST = "request"
RESPONSE = "response"


# -- version ranges ------------------------------------------------------------------------------------

class VersionRange:
    """An inclusive range of versions: ``"0+"``, ``"3-7"``, ``"5"``, or ``"none"`` (empty)."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi

    def __contains__(self, version: int) -> bool:
        return self.lo <= version <= self.hi

    def __repr__(self) -> str:
        if self.lo > self.hi:
            return "none"
        return f"{self.lo}+" if self.hi == MAX_VERSION else f"{self.lo}-{self.hi}"


def parse_versions(spec: str | int | None) -> VersionRange:
    """``"3+"`` → 3..32767, ``"0-4"`` → 0..4, ``"5"``/5 → 5..5, ``"none"``/None → empty."""
    if spec is None or spec == "none":
        return VersionRange(1, 0)
    if isinstance(spec, int):
        return VersionRange(spec, spec)
    if spec.endswith("+"):
        return VersionRange(int(spec[:-1]), MAX_VERSION)
    if "-" in spec:
        lo, hi = spec.split("-")
        return VersionRange(int(lo), int(hi))
    return VersionRange(int(spec), int(spec))


# -- primitive types -----------------------------------------------------------------------------------

class _Type:
    """A primitive type. ``code`` is its ``struct`` format character(s) when it has a fixed size."""

    __slots__ = ("name", "code", "size", "zero")

    def __init__(self, name: str, code: str | None, size: int, zero: Any) -> None:
        self.name = name
        self.code = code
        self.size = size
        self.zero = zero

    def __repr__(self) -> str:
        return self.name.upper()


INT8 = _Type("int8", "b", 1, 0)
INT16 = _Type("int16", "h", 2, 0)
INT32 = _Type("int32", "i", 4, 0)
INT64 = _Type("int64", "q", 8, 0)
UINT16 = _Type("uint16", "H", 2, 0)
UINT32 = _Type("uint32", "I", 4, 0)
FLOAT64 = _Type("float64", "d", 8, 0.0)
BOOL = _Type("bool", "?", 1, False)
UUID = _Type("uuid", "16s", 16, ZERO_UUID)
VARINT = _Type("varint", None, 0, 0)
VARLONG = _Type("varlong", None, 0, 0)
STRING = _Type("string", None, 0, "")
BYTES = _Type("bytes", None, 0, b"")
RECORDS = _Type("records", None, 0, None)


class Array:
    """An array of a primitive type or of a :class:`Struct`."""

    __slots__ = ("elem",)

    def __init__(self, elem: "_Type | Struct") -> None:
        self.elem = elem

    def __repr__(self) -> str:
        return f"Array({self.elem!r})"


class Field:
    """One field of a struct: name (Python snake_case), type, the versions it exists in, the versions in
    which it may be null, and for a tagged field its tag (it is then sent only in flexible versions, in the
    tagged section, and only when it differs from its default)."""

    __slots__ = ("name", "type", "versions", "nullable", "tag", "default", "has_default")

    def __init__(self, name: str, type: "_Type | Array | Struct", versions: str | int = "0+", *,
                 nullable: str | int | None = None, tag: int | None = None, default: Any = ...) -> None:
        self.name = name
        self.type = type
        self.versions = parse_versions(versions)
        self.nullable = parse_versions(nullable)
        self.tag = tag
        self.has_default = default is not ...
        self.default = default if self.has_default else None

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type!r}, {self.versions!r})"

    def default_value(self) -> Any:
        """A fresh default value for this field."""
        t = self.type
        if self.has_default:
            d = self.default
            return list(d) if isinstance(d, list) else d
        if self.nullable.lo <= self.nullable.hi:
            return None
        if isinstance(t, Array):
            return []
        if isinstance(t, Struct):
            return t.cls()
        return t.zero


F = Field


class Struct:
    """A named list of fields; :attr:`cls` is its generated data class."""

    def __init__(self, name: str, fields: list[Field]) -> None:
        self.name = name
        self.fields = fields
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {name}")
        self.cls: type = _make_class(self)
        self._decoders: dict[tuple[int, bool], Callable] = {}
        self._encoders: dict[tuple[int, bool], Callable] = {}

    def __repr__(self) -> str:
        return f"Struct({self.name!r})"

    def children(self) -> Iterable["Struct"]:
        """Every struct nested in this one (depth first, each once)."""
        seen: set[int] = set()
        stack = [self]
        while stack:
            s = stack.pop()
            for f in s.fields:
                t = f.type.elem if isinstance(f.type, Array) else f.type
                if isinstance(t, Struct) and id(t) not in seen:
                    seen.add(id(t))
                    yield t
                    stack.append(t)

    def decoder(self, version: int, flexible: bool) -> Callable:
        key = (version, flexible)
        fn = self._decoders.get(key)
        if fn is None:
            fn = self._decoders[key] = _gen_decoder(self, version, flexible)
        return fn

    def encoder(self, version: int, flexible: bool) -> Callable:
        key = (version, flexible)
        fn = self._encoders.get(key)
        if fn is None:
            fn = self._encoders[key] = _gen_encoder(self, version, flexible)
        return fn


class MessageSchema(Struct):
    """A top-level request or response: API key, valid versions and flexible versions."""

    def __init__(self, name: str, api_key: int, kind: str, versions: str, flexible: str,
                 fields: list[Field]) -> None:
        super().__init__(name, fields)
        self.api_key = api_key
        self.kind = kind
        self.valid = parse_versions(versions)
        self.flexible = parse_versions(flexible)

    def is_flexible(self, version: int) -> bool:
        return version in self.flexible


# -- generated data classes ----------------------------------------------------------------------------

_NEW = object()  # sentinel: "build a fresh mutable default"


def _make_class(schema: Struct) -> type:
    names = [f.name for f in schema.fields]
    ns: dict[str, Any] = {"_NEW": _NEW, "_fields": schema.fields}
    params, body = [], []
    for i, f in enumerate(schema.fields):
        d = f.default_value() if not isinstance(f.type, Struct) else None
        mutable = isinstance(f.type, Struct) or isinstance(d, list)
        if mutable:
            params.append(f"{f.name}=_NEW")
            body.append(f"    self.{f.name} = _fields[{i}].default_value() if {f.name} is _NEW else {f.name}")
        else:
            ns[f"_d{i}"] = d
            params.append(f"{f.name}=_d{i}")
            body.append(f"    self.{f.name} = {f.name}")
    src = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    # __eq__ compares one tuple per side (encoders compare tagged struct fields with their defaults).
    mine = ", ".join(f"self.{n}" for n in names)
    theirs = ", ".join(f"other.{n}" for n in names)
    src += ("def __eq__(self, other):\n"
            "    if type(other) is not type(self):\n"
            "        return NotImplemented\n"
            f"    return ({mine},) == ({theirs},)\n") if names else (
            "def __eq__(self, other):\n"
            "    return type(other) is type(self) or NotImplemented\n")
    exec(compile(src, f"<kafka {schema.name}.__init__>", "exec"), ns)
    __eq__ = ns["__eq__"]

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__qualname__}({args})"

    return type(schema.name, (), {
        "__slots__": tuple(names), "__init__": ns["__init__"], "__eq__": __eq__, "__repr__": __repr__,
        "__hash__": None, "SCHEMA": schema, "FIELDS": tuple(names),
    })


# -- readers -------------------------------------------------------------------------------------------
# Each reader is ``read(buf, pos) -> (value, new_pos)``; ``buf`` is bytes or a memoryview of bytes.

_S_I16 = struct.Struct(">h")
_S_I32 = struct.Struct(">i")


def read_uvarint(buf: Any, pos: int) -> tuple[int, int]:
    """Unsigned varint at ``pos`` (at most 5 bytes)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 7 * MAX_UVARINT_BYTES:
            raise KafkaDecodeError("unsigned varint is longer than 5 bytes")


def _make_zigzag_reader(max_bytes: int) -> Callable:
    limit = 7 * max_bytes

    def read(buf: Any, pos: int) -> tuple[int, int]:
        result = 0
        shift = 0
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return (result >> 1) ^ -(result & 1), pos
            shift += 7
            if shift >= limit:
                raise KafkaDecodeError(f"varint is longer than {max_bytes} bytes")
    return read


_r_varint = _make_zigzag_reader(5)
_r_varlong = _make_zigzag_reader(10)


def _len_error(kind: str, n: int) -> KafkaDecodeError:
    if n < 0:
        return KafkaDecodeError(f"non-nullable {kind} field was serialized as null" if n == -1
                                else f"{kind} field has negative length {n}")
    return KafkaDecodeError(f"{kind} field of length {n} runs past the end of the request")


def _make_bytes_reader(kind: str, compact: bool, nullable: bool) -> Callable:
    """Reader for string / bytes / records, classic (int16/int32 length) or compact (uvarint + 1)."""
    is_str = kind == "string"
    is_records = kind == "records"
    fixed_len = _S_I16 if is_str else _S_I32
    width = fixed_len.size
    unpack = fixed_len.unpack_from

    def read(buf: Any, pos: int) -> tuple[Any, int]:
        if compact:
            n, pos = read_uvarint(buf, pos)
            n -= 1
        else:
            n, = unpack(buf, pos)
            pos += width
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            raise _len_error(kind, n)
        end = pos + n
        if end > len(buf):
            raise _len_error(kind, n)
        if is_str:
            if n > MAX_STRING_LENGTH:
                raise KafkaDecodeError(f"string field has length {n}, longer than {MAX_STRING_LENGTH}")
            return str(buf[pos:end], "utf-8", "replace"), end
        if is_records:
            return memoryview(buf)[pos:end], end
        return bytes(buf[pos:end]), end
    return read


def _read_array_len(buf: Any, pos: int, compact: bool) -> tuple[int, int]:
    if compact:
        n, pos = read_uvarint(buf, pos)
        return n - 1, pos
    n, = _S_I32.unpack_from(buf, pos)
    return n, pos + 4


def _make_array_reader(elem_reader: Callable | None, code: str | None, size: int, compact: bool,
                       nullable: bool) -> Callable:
    def read(buf: Any, pos: int) -> tuple[Any, int]:
        n, pos = _read_array_len(buf, pos, compact)
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            raise _len_error("array", n)
        if code is not None:
            end = pos + n * size
            if end > len(buf):
                raise _len_error("array", n)
            if code == "16s":
                return [bytes(buf[p:p + 16]) for p in range(pos, end, 16)], end
            return list(struct.unpack_from(f">{n}{code}", buf, pos)), end
        if n > len(buf) - pos:  # every element takes at least one byte
            raise _len_error("array", n)
        out = []
        append = out.append
        for _ in range(n):
            v, pos = elem_reader(buf, pos)
            append(v)
        return out, pos
    return read


def skip_tagged_fields(buf: Any, pos: int) -> int:
    """Skip a tagged-field section (all of its fields unknown); return the position after it."""
    if buf[pos] == 0:
        return pos + 1
    n, pos = read_uvarint(buf, pos)
    for _ in range(n):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise KafkaDecodeError("tagged field runs past the end of the request")
    return pos


def _fixed_reader(code: str) -> Callable:
    s = struct.Struct(">" + code)
    unpack = s.unpack_from
    size = s.size

    def read(buf: Any, pos: int) -> tuple[Any, int]:
        return unpack(buf, pos)[0], pos + size
    return read


def _reader(t: Any, version: int, flexible: bool, nullable: bool) -> Callable:
    """A reader callable for a value of type ``t`` (any type) at ``version``."""
    if isinstance(t, Struct):
        if nullable:
            raise NotImplementedError("nullable struct fields are not used by the APIs we implement")
        return t.decoder(version, flexible)
    if isinstance(t, Array):
        e = t.elem
        if isinstance(e, Struct):
            return _make_array_reader(e.decoder(version, flexible), None, 0, flexible, nullable)
        if e.code is not None:
            return _make_array_reader(None, e.code, e.size, flexible, nullable)
        return _make_array_reader(_reader(e, version, flexible, False), None, 0, flexible, nullable)
    if t.code is not None:
        return _fixed_reader(t.code)
    if t is VARINT:
        return _r_varint
    if t is VARLONG:
        return _r_varlong
    return _make_bytes_reader(t.name, flexible, nullable)


# -- writers -------------------------------------------------------------------------------------------
# Each writer is ``write(value, out: bytearray, parts: list | None)``. ``parts`` collects finished chunks
# when a records value is passed through instead of copied (encode_parts); None means "copy everything".

def write_uvarint(n: int) -> bytes:
    """Unsigned varint encoding of ``n`` (0 <= n < 2**35)."""
    if n < 0x80:
        return _SMALL_UVARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_UVARINTS = [bytes((i,)) for i in range(0x80)]


def _zigzag(n: int, bits: int) -> bytes:
    return write_uvarint((n << 1) ^ (n >> (bits - 1)) if n >= 0 else ((-n - 1) << 1) | 1)


def _w_varint(v: int, out: bytearray, parts: Any) -> None:
    if not -0x80000000 <= v <= 0x7FFFFFFF:
        raise ValueError(f"varint out of range: {v}")
    out += _zigzag(v, 32)


def _w_varlong(v: int, out: bytearray, parts: Any) -> None:
    if not -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
        raise ValueError(f"varlong out of range: {v}")
    out += _zigzag(v, 64)


_NULL_I16 = b"\xff\xff"
_NULL_I32 = b"\xff\xff\xff\xff"
_NULL_COMPACT = b"\x00"
_BYTES_LIKE = (bytes, bytearray, memoryview)


def records_length(v: Any) -> int:
    """Byte length of a records value (bytes-like, region with ``__len__``, or a list/tuple of them)."""
    if isinstance(v, memoryview):
        return v.nbytes
    if isinstance(v, (list, tuple)):
        return sum(records_length(c) for c in v)
    return len(v)


def _make_bytes_writer(kind: str, compact: bool, nullable: bool) -> Callable:
    is_str = kind == "string"
    is_records = kind == "records"
    pack_len = (_S_I16 if is_str else _S_I32).pack
    null = _NULL_COMPACT if compact else (_NULL_I16 if is_str else _NULL_I32)
    small = _SMALL_UVARINTS

    def write(v: Any, out: bytearray, parts: list | None) -> None:
        if v is None:
            if not nullable:
                raise ValueError(f"None for a non-nullable {kind} field")
            out += null
            return
        if is_str:
            v = v.encode()
            if len(v) > MAX_STRING_LENGTH:
                raise ValueError(f"string of {len(v)} bytes is longer than {MAX_STRING_LENGTH}")
        elif is_records and not isinstance(v, _BYTES_LIKE):
            chunks = v if isinstance(v, (list, tuple)) else (v,)
            n = 0
            for c in chunks:
                n += c.nbytes if isinstance(c, memoryview) else len(c)
            out += write_uvarint(n + 1) if compact else pack_len(n)
            if parts is None:
                raise TypeError("records given as regions: use encode_parts")
            parts.append(bytes(out))
            out.clear()
            for c in chunks:
                if isinstance(c, _BYTES_LIKE):
                    out += c
                else:
                    if out:
                        parts.append(bytes(out))
                        out.clear()
                    parts.append(c)
            return
        n = v.nbytes if isinstance(v, memoryview) else len(v)
        if compact:
            out += small[n + 1] if n < 127 else write_uvarint(n + 1)
        else:
            out += pack_len(n)
        if is_records and parts is not None and n >= SPLICE_MIN_BYTES:
            parts.append(bytes(out))
            out.clear()
            parts.append(v)
        else:
            out += v
    return write


def _fixed_writer(code: str) -> Callable:
    pack = struct.Struct(">" + code).pack

    def write(v: Any, out: bytearray, parts: Any) -> None:
        out += pack(v)
    return write


def _make_array_writer(elem_writer: Callable | None, code: str | None, compact: bool,
                       nullable: bool) -> Callable:
    pack_len = _S_I32.pack
    null = _NULL_COMPACT if compact else _NULL_I32

    def write(v: Any, out: bytearray, parts: list | None) -> None:
        if v is None:
            if not nullable:
                raise ValueError("None for a non-nullable array field")
            out += null
            return
        n = len(v)
        out += write_uvarint(n + 1) if compact else pack_len(n)
        if code is not None:
            if code == "16s":
                for u in v:
                    if len(u) != 16:
                        raise ValueError("a uuid is 16 bytes")
                    out += u
            elif n:
                out += struct.pack(f">{n}{code}", *v)
        else:
            for e in v:
                elem_writer(e, out, parts)
    return write


def _writer(t: Any, version: int, flexible: bool, nullable: bool) -> Callable:
    if isinstance(t, Struct):
        return t.encoder(version, flexible)
    if isinstance(t, Array):
        e = t.elem
        if isinstance(e, Struct):
            return _make_array_writer(e.encoder(version, flexible), None, flexible, nullable)
        if e.code is not None:
            return _make_array_writer(None, e.code, flexible, nullable)
        return _make_array_writer(_writer(e, version, flexible, False), None, flexible, nullable)
    if t.code is not None:
        return _fixed_writer(t.code)
    if t is VARINT:
        return _w_varint
    if t is VARLONG:
        return _w_varlong
    return _make_bytes_writer(t.name, flexible, nullable)


# -- code generation -----------------------------------------------------------------------------------

def _is_fixed(f: Field) -> bool:
    return isinstance(f.type, _Type) and f.type.code is not None


def _layout(schema: Struct, version: int, flexible: bool) -> tuple[list[Field], list[Field]]:
    """(regular fields, tagged fields) of ``schema`` at ``version``, tagged ones sorted by tag."""
    regular, tagged = [], []
    for f in schema.fields:
        if version not in f.versions:
            continue
        if f.tag is not None:
            if flexible:
                tagged.append(f)
        else:
            regular.append(f)
    tagged.sort(key=lambda f: f.tag)
    return regular, tagged


def _runs(fields: list[Field]) -> list[list[Field]]:
    """Group consecutive fixed-size fields into runs; every other field is a run of one."""
    runs: list[list[Field]] = []
    for f in fields:
        if _is_fixed(f) and runs and _is_fixed(runs[-1][0]):
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def _inline_array_decode(target: str, elem: str, compact: bool, nullable: bool) -> list[str]:
    """Source lines reading an array of structs into ``target`` (one function call per element)."""
    if compact:
        lines = ["    n = buf[pos]",
                 "    if n < 0x80:",
                 "        pos += 1",
                 "    else:",
                 "        n, pos = _uv(buf, pos)",
                 "    n -= 1"]
    else:
        lines = ["    n, = _I32(buf, pos)",
                 "    pos += 4"]
    lines += ["    if n < 0:"]
    if nullable:
        lines += ["        if n != -1:",
                  "            raise _len_error('array', n)",
                  f"        {target} = None"]
    else:
        lines += ["        raise _len_error('array', n)"]
    lines += ["    else:",
              "        if n > len(buf) - pos:",
              "            raise _len_error('array', n)",
              f"        {target} = []",
              f"        append = {target}.append",
              "        for _ in range(n):",
              f"            e, pos = {elem}(buf, pos)",
              "            append(e)"]
    return lines


def _inline_array_encode(source: str, elem: str, compact: bool, nullable: bool) -> list[str]:
    """Source lines writing the array of structs ``source``."""
    lines = [f"    v = {source}",
             "    if v is None:"]
    if nullable:
        lines.append("        out += " + ("b'\\x00'" if compact else "b'\\xff\\xff\\xff\\xff'"))
    else:
        lines.append("        raise ValueError('None for a non-nullable array field')")
    lines += ["    else:",
              "        out += " + ("(_small[len(v) + 1] if len(v) < 127 else _uvw(len(v) + 1))" if compact
                                  else "_I32p(len(v))"),
              "        for e in v:",
              f"            {elem}(e, out, parts)"]
    return lines


def _gen_decoder(schema: Struct, version: int, flexible: bool) -> Callable:
    regular, tagged = _layout(schema, version, flexible)
    ns: dict[str, Any] = {"_cls": schema.cls, "_uv": read_uvarint, "_skip": skip_tagged_fields,
                          "_Err": KafkaDecodeError, "_fields": schema.fields, "_len_error": _len_error,
                          "_I32": _S_I32.unpack_from}
    var = {f.name: f"v_{f.name}" for f in schema.fields}
    lines = ["def decode(buf, pos):"]
    for run in _runs(regular):
        if _is_fixed(run[0]):
            s = struct.Struct(">" + "".join(f.type.code for f in run))
            ns[f"_s{len(ns)}"] = s
            names = ", ".join(var[f.name] for f in run)
            lines.append(f"    {names}, = _s{len(ns) - 1}.unpack_from(buf, pos)")
            lines.append(f"    pos += {s.size}")
        elif isinstance(run[0].type, Array) and isinstance(run[0].type.elem, Struct):
            f = run[0]
            key = f"_e_{f.name}"
            ns[key] = f.type.elem.decoder(version, flexible)
            lines += _inline_array_decode(var[f.name], key, flexible, version in f.nullable)
        else:
            f = run[0]
            key = f"_r_{f.name}"
            ns[key] = _reader(f.type, version, flexible, version in f.nullable)
            lines.append(f"    {var[f.name]}, pos = {key}(buf, pos)")
    if flexible:
        if not tagged:
            lines.append("    pos = _skip(buf, pos)")
        else:
            for f in tagged:
                i = schema.fields.index(f)
                lines.append(f"    {var[f.name]} = _fields[{i}].default_value()")
            lines += [
                "    ntags, pos = _uv(buf, pos)",
                "    for _ in range(ntags):",
                "        tag, pos = _uv(buf, pos)",
                "        size, pos = _uv(buf, pos)",
                "        end = pos + size",
                "        if end > len(buf):",
                "            raise _Err('tagged field runs past the end of the request')",
            ]
            for j, f in enumerate(tagged):
                key = f"_t_{f.name}"
                ns[key] = _reader(f.type, version, flexible, version in f.nullable)
                kw = "if" if j == 0 else "elif"
                lines += [
                    f"        {kw} tag == {f.tag}:",
                    f"            {var[f.name]}, p = {key}(memoryview(buf)[:end], pos)",
                    "            if p != end:",
                    f"                raise _Err('tagged field {f.tag} has the wrong size')",
                ]
            lines.append("        pos = end")
    present = {f.name for f in regular} | {f.name for f in tagged}
    args = []
    for i, f in enumerate(schema.fields):
        if f.name in present:
            args.append(var[f.name])
        else:
            d = f.default_value()
            if isinstance(d, list) or isinstance(f.type, Struct):
                args.append(f"_fields[{i}].default_value()")
            else:
                ns[f"_d{i}"] = d
                args.append(f"_d{i}")
    lines.append(f"    return _cls({', '.join(args)}), pos")
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<kafka {schema.name} v{version} decode>", "exec"), ns)
    return ns["decode"]


def _gen_encoder(schema: Struct, version: int, flexible: bool) -> Callable:
    regular, tagged = _layout(schema, version, flexible)
    ns: dict[str, Any] = {"_uvw": write_uvarint, "_fields": schema.fields, "_I32p": _S_I32.pack,
                          "_small": _SMALL_UVARINTS}
    lines = ["def encode(o, out, parts):"]
    for run in _runs(regular):
        if _is_fixed(run[0]):
            s = struct.Struct(">" + "".join(f.type.code for f in run))
            key = f"_s{len(ns)}"
            ns[key] = s
            lines.append(f"    out += {key}.pack({', '.join('o.' + f.name for f in run)})")
        elif isinstance(run[0].type, Array) and isinstance(run[0].type.elem, Struct):
            f = run[0]
            key = f"_e_{f.name}"
            ns[key] = f.type.elem.encoder(version, flexible)
            lines += _inline_array_encode(f"o.{f.name}", key, flexible, version in f.nullable)
        else:
            f = run[0]
            key = f"_w_{f.name}"
            ns[key] = _writer(f.type, version, flexible, version in f.nullable)
            lines.append(f"    {key}(o.{f.name}, out, parts)")
    if flexible:
        if not tagged:
            lines.append("    out += b'\\x00'")
        else:
            # Tagged fields go out only when they differ from their default, in ascending tag order.
            lines += ["    ntags = 0"]
            for f in tagged:
                key = f"_w_{f.name}"
                ns[key] = _writer(f.type, version, flexible, version in f.nullable)
                ns[f"_def_{f.name}"] = f.default_value()
                ns[f"_tag_{f.name}"] = write_uvarint(f.tag)
                lines += [
                    f"    v = o.{f.name}",
                    f"    if v != _def_{f.name}:",
                    "        if not ntags:",
                    "            tb = bytearray()",
                    "        b = bytearray()",
                    f"        {key}(v, b, None)",
                    f"        tb += _tag_{f.name}",
                    "        tb += _uvw(len(b))",
                    "        tb += b",
                    "        ntags += 1",
                ]
            lines += ["    if ntags:",
                      "        out += _uvw(ntags)",
                      "        out += tb",
                      "    else:",
                      "        out += b'\\x00'"]
    if len(lines) == 1:
        lines.append("    pass")
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<kafka {schema.name} v{version} encode>", "exec"), ns)
    return ns["encode"]


# -- top-level messages --------------------------------------------------------------------------------

class FileRegion:
    """A byte range of an open file, spliced into an encoded response instead of copied (``sendfile``).

    Any object with ``__len__`` that is not bytes-like works as a records value; this one is a convenience
    for the session: ``file`` is whatever it needs to send it (a file object or descriptor)."""

    __slots__ = ("file", "offset", "length")

    def __init__(self, file: Any, offset: int, length: int) -> None:
        self.file = file
        self.offset = offset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __eq__(self, other: object) -> bool:
        return (type(other) is FileRegion and self.file == other.file and self.offset == other.offset
                and self.length == other.length)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FileRegion({self.file!r}, {self.offset}, {self.length})"


def message(name: str, *, api_key: int, kind: str, versions: str, flexible: str,
            fields: list[Field]) -> type:
    """Declare a request or response and return its data class.

    The class carries ``SCHEMA`` (the :class:`MessageSchema`), ``API_KEY``, ``MIN_VERSION``,
    ``MAX_VERSION``, nested struct classes as attributes, and:
      - ``obj.encode(version) -> bytes`` (the body only, no size prefix or header),
      - ``obj.encode_into(version, out, parts)`` (append to a bytearray; see :meth:`FileRegion`),
      - ``cls.decode(buf, version, pos=0) -> (obj, end)`` (raises KafkaDecodeError on bad input).
    """
    schema = MessageSchema(name, api_key, kind, versions, flexible, fields)
    cls = schema.cls
    cls.API_KEY = api_key
    cls.MIN_VERSION = schema.valid.lo
    cls.MAX_VERSION = schema.valid.hi
    for child in schema.children():
        if not hasattr(cls, child.name):
            setattr(cls, child.name, child.cls)
    lo, hi = schema.valid.lo, schema.valid.hi
    dec_cache: list[Callable | None] = [None] * (hi + 1)
    enc_cache: list[Callable | None] = [None] * (hi + 1)

    def _check(version: int) -> None:
        if not lo <= version <= hi:
            raise ValueError(f"{name} has no version {version} (valid {lo}-{hi})")

    def decoder(version: int) -> Callable:
        fn = dec_cache[version] if lo <= version <= hi else None
        if fn is None:
            _check(version)
            fn = dec_cache[version] = schema.decoder(version, version in schema.flexible)
        return fn

    def encoder(version: int) -> Callable:
        fn = enc_cache[version] if lo <= version <= hi else None
        if fn is None:
            _check(version)
            fn = enc_cache[version] = schema.encoder(version, version in schema.flexible)
        return fn

    def decode(buf: Any, version: int, pos: int = 0) -> tuple[Any, int]:
        fn = decoder(version)
        try:
            return fn(buf, pos)
        except (struct.error, IndexError):
            raise KafkaDecodeError(f"{name} v{version} is truncated") from None

    def encode(self: Any, version: int) -> bytes:
        out = bytearray()
        encoder(version)(self, out, None)
        return bytes(out)

    def encode_into(self: Any, version: int, out: bytearray, parts: list | None) -> None:
        encoder(version)(self, out, parts)

    cls.decoder = staticmethod(decoder)
    cls.encoder = staticmethod(encoder)
    cls.decode = staticmethod(decode)
    cls.encode = encode
    cls.encode_into = encode_into
    return cls
