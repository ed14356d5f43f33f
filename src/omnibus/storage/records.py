"""Kafka v2 record batches: the one on-disk entry format of every Omnibus log (design decision 1).

Strategy
    A batch is stored verbatim, exactly as a Kafka producer sends it and a Kafka consumer reads it, so a
    Fetch can hand file bytes to the socket with ``sendfile``. Only two things are ever patched: the base
    offset (which lies *outside* the CRC, so patching it costs nothing) and, for LogAppendTime, the
    attributes and maxTimestamp (inside the CRC, so the CRC is recomputed). AMQP and NATS messages are
    written with :func:`build_batch`.

Layout (big-endian; see the Kafka documentation, "Message Format", RecordBatch)::

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 | crc uint32 |
    attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64 |
    producerId int64 | producerEpoch int16 | baseSequence int32 | recordsCount int32 | records...

    batchLength counts the bytes after itself; the CRC-32C covers attributes .. end of batch.
    Each record: varint length, int8 attributes, varlong timestampDelta, varint offsetDelta,
    varint keyLength (-1 = null) + key, varint valueLength (-1 = null) + value, varint headerCount,
    headers (varint keyLength + utf-8 key, varint valueLength (-1 = null) + value). Varints are zigzag.

Rules
    * Malformed input raises :class:`CorruptBatchError` (or :class:`UnsupportedCompressionError` for a codec
      we cannot decode), never IndexError, struct.error or friends: callers feed this untrusted bytes.
    * Precompiled :class:`struct.Struct` objects and a table of small varints keep encode/decode cheap;
      no logging anywhere. Hot paths: ``validate_batch`` (every append), ``build_batch`` (every AMQP/NATS
      publish), ``decode_records`` (every AMQP/NATS delivery). Run ``python bench/storage.py`` before
      changing them.

Concurrency: pure functions on buffers; thread-safe.
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import Iterable, NamedTuple

from crc32c import crc32c

__all__ = [
    "seal_crc",
    "HEADER",
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "MAGIC",
    "MIN_BATCH_LENGTH",
    "MAX_DECOMPRESSED_BYTES",
    "NO_TIMESTAMP",
    "COMPRESSION_NONE",
    "COMPRESSION_GZIP",
    "COMPRESSION_SNAPPY",
    "COMPRESSION_LZ4",
    "COMPRESSION_ZSTD",
    "COMPRESSION_MASK",
    "TIMESTAMP_TYPE_BIT",
    "TRANSACTIONAL_BIT",
    "CONTROL_BIT",
    "StorageError",
    "CorruptBatchError",
    "UnsupportedCompressionError",
    "BatchHeader",
    "Record",
    "validate_batch",
    "read_header",
    "build_batch",
    "decode_records",
    "patch_base_offset",
    "set_log_append_time",
    "encode_varint",
    "decode_varint",
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "CONTROL_PEEK_BYTES",
    "build_control_batch",
    "control_type",
]

# -- layout ------------------------------------------------------------------------------------------

#: The 61-byte batch header, fields in the order of :class:`BatchHeader`.
HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
assert HEADER_SIZE == 61
#: baseOffset + batchLength: the bytes that batchLength does not count (Kafka Records.LOG_OVERHEAD).
LOG_OVERHEAD = 12
#: Smallest legal batchLength: a header with no records (Kafka RECORD_BATCH_OVERHEAD - LOG_OVERHEAD).
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
MAGIC = 2

# Field positions, for in-place patches.
_BASE_OFFSET_AT = 0
_MAGIC_AT = 16
_CRC_AT = 17
_CRC_FROM = 21  # the CRC covers attributes .. end
_ATTRIBUTES_AT = 21
_MAX_TIMESTAMP_AT = 35

_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")

COMPRESSION_MASK = 0x07
COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
TIMESTAMP_TYPE_BIT = 0x08  # 1 = LogAppendTime
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20

#: Kafka's RecordBatch.NO_TIMESTAMP: "the producer did not say"; build_batch replaces it with now.
NO_TIMESTAMP = -1

#: Cap on what one compressed batch may inflate to. A gzip bomb of a few KiB must not take the broker's
#: memory; 64 MiB is 8x the default max batch size (log.MAX_BATCH_BYTES), generous for real producers.
MAX_DECOMPRESSED_BYTES = 64 << 20

#: Longest legal varint: 10 bytes hold 64 bits at 7 bits per byte (Kafka ByteUtils.readVarlong).
_MAX_VARINT_BYTES = 10


class StorageError(Exception):
    """Base class of every error raised by ``omnibus.storage``."""


class CorruptBatchError(StorageError):
    """The bytes are not a valid v2 record batch (bad magic, bad length, CRC mismatch, bad records)."""


class UnsupportedCompressionError(StorageError):
    """The batch uses a codec we cannot decode here (snappy, lz4, zstd). Storing it is fine; only
    decoding its records is not (Kafka consumers decode it themselves)."""


class BatchHeader(NamedTuple):
    """The parsed 61-byte header. ``size`` is the whole batch including baseOffset and batchLength."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)


class Record(NamedTuple):
    """One record. ``timestamp_ms`` of :data:`NO_TIMESTAMP` (-1) means "stamp it when building"."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int = NO_TIMESTAMP


_make_header = BatchHeader._make
_unpack_header = HEADER.unpack_from


# -- header -----------------------------------------------------------------------------------------


def read_header(buf, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos`` without checking the CRC (for scans over data we wrote ourselves).

    Raises :class:`CorruptBatchError` when fewer than 61 bytes remain, the magic is not 2 or the length
    is below the minimum. It does not require the whole batch to be present in ``buf``.
    """
    if pos < 0 or len(buf) - pos < HEADER_SIZE:
        raise CorruptBatchError(f"truncated batch header: {len(buf) - pos} bytes, need {HEADER_SIZE}")
    h = _make_header(_unpack_header(buf, pos))
    if h.magic != MAGIC:
        raise CorruptBatchError(f"unsupported magic {h.magic}, expected {MAGIC}")
    if h.batch_length < MIN_BATCH_LENGTH:
        raise CorruptBatchError(f"batch length {h.batch_length} below minimum {MIN_BATCH_LENGTH}")
    if h.last_offset_delta < 0 or h.records_count < 0:
        raise CorruptBatchError(
            f"negative lastOffsetDelta {h.last_offset_delta} or recordsCount {h.records_count}"
        )
    return h


def validate_batch(buf, pos: int = 0) -> BatchHeader:
    """Validate the batch starting at ``pos`` of ``buf`` (header sanity, whole batch present, CRC-32C).

    ``buf`` is any bytes-like object; it may hold more bytes after the batch (the caller compares
    ``header.size`` with what it expected). Raises :class:`CorruptBatchError`.
    """
    h = read_header(buf, pos)
    end = pos + h.batch_length + LOG_OVERHEAD
    if end > len(buf):
        raise CorruptBatchError(f"truncated batch: length says {h.size} bytes, {len(buf) - pos} present")
    mv = buf if type(buf) is memoryview else memoryview(buf)
    actual = crc32c(mv[pos + _CRC_FROM : end])
    if actual != h.crc:
        raise CorruptBatchError(f"CRC mismatch: stored {h.crc:#010x}, computed {actual:#010x}")
    return h


def patch_base_offset(buf, base_offset: int) -> None:
    """Set baseOffset in place (``buf`` must be writable). It lies outside the CRC: no recompute."""
    _I64.pack_into(buf, _BASE_OFFSET_AT, base_offset)


def seal_crc(buf) -> None:
    """Recompute, in place, the CRC of the one batch in writable ``buf`` after its header fields or
    records were written or changed (the CRC covers attributes .. end)."""
    with memoryview(buf) as mv:
        _U32.pack_into(buf, _CRC_AT, crc32c(mv[_CRC_FROM:]))


def set_log_append_time(buf, timestamp_ms: int) -> None:
    """Mark the batch LogAppendTime with ``timestamp_ms``, in place: sets attribute bit 3, rewrites
    maxTimestamp (Kafka's DefaultRecordBatch.setMaxTimestamp; record deltas are left alone, readers use
    maxTimestamp for every record) and recomputes the CRC. ``buf`` holds exactly one batch, writable."""
    (attributes,) = _I16.unpack_from(buf, _ATTRIBUTES_AT)
    _I16.pack_into(buf, _ATTRIBUTES_AT, attributes | TIMESTAMP_TYPE_BIT)
    _I64.pack_into(buf, _MAX_TIMESTAMP_AT, timestamp_ms)
    seal_crc(buf)


def patched_header(batch: memoryview, base_offset: int, log_append_time_ms: int | None) -> bytearray:
    """A copy of the batch's 61-byte header with baseOffset set and, if ``log_append_time_ms`` is not
    None, LogAppendTime applied (CRC recomputed over the new header bytes plus the untouched rest).
    The log writes this header followed by ``batch[61:]`` with one pwritev: the body is never copied."""
    head = bytearray(batch[:HEADER_SIZE])
    _I64.pack_into(head, _BASE_OFFSET_AT, base_offset)
    if log_append_time_ms is not None:
        (attributes,) = _I16.unpack_from(head, _ATTRIBUTES_AT)
        _I16.pack_into(head, _ATTRIBUTES_AT, attributes | TIMESTAMP_TYPE_BIT)
        _I64.pack_into(head, _MAX_TIMESTAMP_AT, log_append_time_ms)
        crc = crc32c(batch[HEADER_SIZE:], crc32c(memoryview(head)[_CRC_FROM:]))
        _U32.pack_into(head, _CRC_AT, crc)
    return head


# -- varints ----------------------------------------------------------------------------------------

_SMALL_VARINT_LIMIT = 1 << 14  # zigzag values below this fit in two bytes; cached as bytes objects


def _encode_zigzag_slow(z: int) -> bytes:
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# One byte below 0x80, two bytes (low 7 bits with the continuation bit, then the rest) up to the limit.
_SMALL_VARINTS = [bytes((z,)) for z in range(0x80)] + [bytes(((z & 0x7F) | 0x80, z >> 7))
                                                     for z in range(0x80, _SMALL_VARINT_LIMIT)]
assert _SMALL_VARINTS[300] == _encode_zigzag_slow(300)


def encode_varint(n: int) -> bytes:
    """Zigzag varint (Kafka ByteUtils.writeVarint/writeVarlong; same bytes for both widths)."""
    z = (n << 1) ^ (n >> 63)
    if z < _SMALL_VARINT_LIMIT:
        return _SMALL_VARINTS[z]
    return _encode_zigzag_slow(z)


def decode_varint(buf, pos: int) -> tuple[int, int]:
    """Read a zigzag varint at ``pos``; returns (value, next_pos). Raises CorruptBatchError."""
    try:
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
        z = b & 0x7F
        shift = 7
        pos += 1
        limit = pos + _MAX_VARINT_BYTES - 1
        while True:
            if pos >= limit:
                raise CorruptBatchError("varint longer than 10 bytes")
            b = buf[pos]
            pos += 1
            z |= (b & 0x7F) << shift
            if b < 0x80:
                return (z >> 1) ^ -(z & 1), pos
            shift += 7
    except IndexError:
        raise CorruptBatchError("truncated varint") from None


_NULL = encode_varint(-1)
_ZERO = encode_varint(0)
_ATTR0 = b"\x00"


# -- build ------------------------------------------------------------------------------------------


#: build_batch copies as little as it can: each big batch allocation costs page faults (it is above
#: malloc's mmap threshold). Values above _JOIN_RECORD_MAX are not joined into their record; batches
#: above _JOIN_FOR_CRC_MAX made of large pieces get their CRC piece by piece and one final join.
_JOIN_RECORD_MAX = 4096
_JOIN_FOR_CRC_MAX = 128 * 1024


def build_batch(
    records: Iterable[Record],
    *,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
    partition_leader_epoch: int = -1,
    now_ms: int | None = None,
) -> bytes:
    """Encode records as one v2 batch. Records with ``timestamp_ms == -1`` get ``now_ms`` (default: the
    wall clock). ``attributes`` may select gzip (1); other codecs raise UnsupportedCompressionError.
    Raises ValueError for an empty record list."""
    records = records if isinstance(records, (list, tuple)) else list(records)
    if not records:
        raise ValueError("a batch needs at least one record")
    codec = attributes & COMPRESSION_MASK
    if codec not in (COMPRESSION_NONE, COMPRESSION_GZIP):
        raise UnsupportedCompressionError(f"cannot encode compression codec {codec}")
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    first_ts = records[0].timestamp_ms
    base_ts = now_ms if first_ts == NO_TIMESTAMP else first_ts
    max_ts = -1 << 63
    small = _SMALL_VARINTS
    parts: list = []
    append = parts.append
    for i, (key, value, headers, ts) in enumerate(records):
        if ts == NO_TIMESTAMP:
            ts = now_ms
        if ts > max_ts:
            max_ts = ts
        rec = [_ATTR0, encode_varint(ts - base_ts), small[i << 1] if i < 8192 else encode_varint(i)]
        if key is None:
            rec.append(_NULL)
        else:
            rec.append(encode_varint(len(key)))
            rec.append(key)
        if value is None:
            rec.append(_NULL)
        else:
            rec.append(encode_varint(len(value)))
            rec.append(value)
        if headers:
            rec.append(encode_varint(len(headers)))
            for hk, hv in headers:
                hkb = hk.encode()
                rec.append(encode_varint(len(hkb)))
                rec.append(hkb)
                if hv is None:
                    rec.append(_NULL)
                else:
                    rec.append(encode_varint(len(hv)))
                    rec.append(hv)
        else:
            rec.append(_ZERO)
        if value is not None and len(value) > _JOIN_RECORD_MAX:  # large: copied once, by the final join
            append(encode_varint(sum(map(len, rec))))
            parts += rec
        else:
            body = b"".join(rec)
            append(encode_varint(len(body)))
            append(body)
    if codec == COMPRESSION_GZIP:
        c = zlib.compressobj(wbits=31)  # gzip container, as Kafka's GZIPOutputStream writes
        parts = [c.compress(b"".join(parts)) + c.flush()]
    size = sum(map(len, parts))
    n = len(records)
    head = HEADER.pack(
        base_offset,
        HEADER_SIZE - LOG_OVERHEAD + size,
        partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        n - 1,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        n,
    )
    crc = crc32c(head[_CRC_FROM:])
    if size <= _JOIN_FOR_CRC_MAX or size < len(parts) * 1024:
        # Small pieces: one C call over the joined payload beats a call per piece.
        payload = b"".join(parts)
        crc = crc32c(payload, crc)
        parts = [payload]
    else:  # large values: CRC piece by piece, so they are copied only by the final join
        for part in parts:
            crc = crc32c(part, crc)
    return b"".join([head[:_CRC_AT], _U32.pack(crc), head[_CRC_AT + 4:], *parts])


# -- decode -----------------------------------------------------------------------------------------


def _inflate(data) -> bytes:
    d = zlib.decompressobj(wbits=47)  # 32 + 15: accept gzip or zlib framing
    try:
        out = d.decompress(data, MAX_DECOMPRESSED_BYTES)
    except zlib.error as e:
        raise CorruptBatchError(f"bad gzip data: {e}") from None
    if d.unconsumed_tail:
        raise CorruptBatchError(f"batch inflates beyond {MAX_DECOMPRESSED_BYTES} bytes")
    if not d.eof:
        raise CorruptBatchError("truncated gzip data")
    return out


def decode_records(batch, *, validate: bool = True) -> list[tuple[int, Record]]:
    """Decode every record of one batch into ``(offset, Record)`` pairs.

    ``batch`` holds at least one whole batch starting at index 0 (extra bytes after it are ignored).
    With ``validate`` the CRC is checked first. Uncompressed and gzip batches decode; other codecs raise
    :class:`UnsupportedCompressionError`. For LogAppendTime batches every record gets maxTimestamp
    (Kafka DefaultRecord semantics). Any malformation raises :class:`CorruptBatchError`.
    """
    mv = batch if type(batch) is memoryview else memoryview(batch)
    h = validate_batch(mv) if validate else read_header(mv)
    end = h.batch_length + LOG_OVERHEAD
    if end > len(mv):
        raise CorruptBatchError("truncated batch")
    codec = h.attributes & COMPRESSION_MASK
    if codec == COMPRESSION_NONE:
        data = mv[:end]
        pos = HEADER_SIZE
    elif codec == COMPRESSION_GZIP:
        data = _inflate(mv[HEADER_SIZE:end])
        pos = 0
        end = len(data)
    else:
        raise UnsupportedCompressionError(f"compression codec {codec} is not supported")
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    lat = h.max_timestamp if h.attributes & TIMESTAMP_TYPE_BIT else None
    # Hot path (consumers reading back): bytes index and slice faster than a memoryview, and most
    # varints are one byte, decoded inline; longer ones go through decode_varint.
    if type(data) is not bytes:
        data = bytes(data[:end])
    varint = decode_varint
    new_record = tuple.__new__  # the NamedTuple's own __new__ is a Python call per record
    out: list[tuple[int, Record]] = []
    append = out.append
    try:
        for _ in range(h.records_count):
            b = data[pos]
            if b < 0x80:
                length, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                length, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                length, pos = varint(data, pos)
            rend = pos + length
            if length < 0 or rend > end:
                raise CorruptBatchError(f"record length {length} overruns the batch")
            pos += 1  # record attributes: unused in v2
            b = data[pos]
            if b < 0x80:
                ts_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                ts_delta, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                ts_delta, pos = varint(data, pos)
            b = data[pos]
            if b < 0x80:
                off_delta, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                off_delta, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                off_delta, pos = varint(data, pos)
            b = data[pos]
            if b < 0x80:
                klen, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                klen, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                klen, pos = varint(data, pos)
            if klen < 0:
                if klen != -1:
                    raise CorruptBatchError(f"bad key length {klen}")
                key = None
            else:
                if pos + klen > rend:
                    raise CorruptBatchError("key overruns the record")
                key = data[pos : pos + klen]
                pos += klen
            b = data[pos]
            if b < 0x80:
                vlen, pos = (b >> 1) ^ -(b & 1), pos + 1
            elif data[pos + 1] < 0x80:
                b = (b & 0x7F) | (data[pos + 1] << 7)
                vlen, pos = (b >> 1) ^ -(b & 1), pos + 2
            else:
                vlen, pos = varint(data, pos)
            if vlen < 0:
                if vlen != -1:
                    raise CorruptBatchError(f"bad value length {vlen}")
                value = None
            else:
                if pos + vlen > rend:
                    raise CorruptBatchError("value overruns the record")
                value = data[pos : pos + vlen]
                pos += vlen
            if data[pos] == 0:  # no headers (zigzag 0)
                pos += 1
                headers: tuple = ()
            else:
                hcount, pos = varint(data, pos)
                if hcount < 0:
                    raise CorruptBatchError(f"negative header count {hcount}")
                hl = []
                for _h in range(hcount):
                    hklen, pos = varint(data, pos)
                    if hklen < 0 or pos + hklen > rend:
                        raise CorruptBatchError(f"bad header key length {hklen}")
                    hk = str(data[pos : pos + hklen], "utf-8")
                    pos += hklen
                    hvlen, pos = varint(data, pos)
                    if hvlen < 0:
                        if hvlen != -1:
                            raise CorruptBatchError(f"bad header value length {hvlen}")
                        hv = None
                    else:
                        if pos + hvlen > rend:
                            raise CorruptBatchError("header value overruns the record")
                        hv = data[pos : pos + hvlen]
                        pos += hvlen
                    hl.append((hk, hv))
                headers = tuple(hl)
            if pos != rend:
                raise CorruptBatchError("record length does not match its fields")
            append((base_offset + off_delta,
                    new_record(Record, (key, value, headers, lat if lat is not None else base_ts + ts_delta))))
    except (IndexError, UnicodeDecodeError) as e:
        raise CorruptBatchError(f"malformed record: {e}") from None
    if pos != end:
        raise CorruptBatchError(f"{end - pos} bytes after the last record")
    return out


# -- control batches (transaction markers, KIP-98) ---------------------------------------------------------

#: Control record types (Kafka ControlRecordType): the key of a control record is version int16 (0) +
#: type int16; an end-transaction marker's value is version int16 (0) + coordinatorEpoch int32.
CONTROL_ABORT = 0
CONTROL_COMMIT = 1
#: Bytes from a control batch's start that hold its first record's key: header + five short varints + key.
CONTROL_PEEK_BYTES = HEADER_SIZE + 16
_CONTROL_KEY = struct.Struct(">hh")
_MARKER_VALUE = struct.Struct(">hi")


def build_control_batch(producer_id: int, producer_epoch: int, commit: bool, *, coordinator_epoch: int = 0,
                        now_ms: int | None = None) -> bytes:
    """A COMMIT or ABORT marker batch (Kafka EndTransactionMarker): transactional + control attributes, one
    record, no sequence."""
    record = Record(_CONTROL_KEY.pack(0, CONTROL_COMMIT if commit else CONTROL_ABORT),
                    _MARKER_VALUE.pack(0, coordinator_epoch))
    return build_batch([record], producer_id=producer_id, producer_epoch=producer_epoch, base_sequence=-1,
                       attributes=TRANSACTIONAL_BIT | CONTROL_BIT, now_ms=now_ms)


def control_type(buf, pos: int = 0) -> int:
    """The control record type (CONTROL_COMMIT/CONTROL_ABORT/other) of the control batch at ``pos``; needs
    the first :data:`CONTROL_PEEK_BYTES` bytes only (control batches are never compressed). Raises
    CorruptBatchError."""
    p = pos + HEADER_SIZE
    _length, p = decode_varint(buf, p)
    p += 1  # attributes
    _ts, p = decode_varint(buf, p)
    _delta, p = decode_varint(buf, p)
    klen, p = decode_varint(buf, p)
    if klen < 4 or p + 4 > len(buf):
        raise CorruptBatchError("control record key too short")
    return _CONTROL_KEY.unpack_from(buf, p)[1]
