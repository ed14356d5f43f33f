"""Kafka v2 record batches: round trips, byte-exact layout, and malformed input (omnibus.storage.records)."""

from __future__ import annotations

import struct
import zlib

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnibus.storage.records import (
    HEADER_SIZE,
    TIMESTAMP_TYPE_BIT,
    CorruptBatchError,
    Record,
    UnsupportedCompressionError,
    build_batch,
    decode_records,
    decode_varint,
    encode_varint,
    patch_base_offset,
    set_log_append_time,
    validate_batch,
)


def test_varint_known_values():
    # Zigzag examples from the protobuf / Kafka ByteUtils docs.
    assert encode_varint(0) == b"\x00"
    assert encode_varint(-1) == b"\x01"
    assert encode_varint(1) == b"\x02"
    assert encode_varint(-2) == b"\x03"
    assert encode_varint(63) == b"\x7e"
    assert encode_varint(64) == b"\x80\x01"
    assert encode_varint(-(1 << 63)) == b"\xff" * 9 + b"\x01"


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_varint_round_trip(n):
    enc = encode_varint(n)
    assert decode_varint(enc, 0) == (n, len(enc))


def test_every_field_against_hand_built_bytes():
    rec = Record(b"k", b"value", (("h1", b"x"), ("h2", None)), 1_000_005)
    built = build_batch(
        [Record(None, b"", (), 1_000_000), rec],
        base_offset=42,
        producer_id=7,
        producer_epoch=3,
        base_sequence=11,
        partition_leader_epoch=5,
    )

    def record(body: bytes) -> bytes:
        return encode_varint(len(body)) + body

    r0 = b"\x00" + b"\x00" + b"\x00" + b"\x01" + b"\x00" + b"\x00"  # attrs, tsΔ 0, offΔ 0, key null, value len 0, 0 headers
    r1 = (
        b"\x00"
        + b"\x0a"  # tsΔ 5
        + b"\x02"  # offΔ 1
        + b"\x02k"  # key len 1
        + b"\x0avalue"  # value len 5
        + b"\x04"  # 2 headers
        + b"\x04h1" + b"\x02x"
        + b"\x04h2" + b"\x01"
    )
    records = record(r0) + record(r1)
    tail = struct.pack(">hiqqqhii", 0, 1, 1_000_000, 1_000_005, 7, 3, 11, 2) + records
    crc = crc32c(tail)
    expected = struct.pack(">qiibI", 42, 49 + len(records), 5, 2, crc) + tail
    assert built == expected
    assert len(expected) - len(records) == HEADER_SIZE

    h = validate_batch(built)
    assert (h.base_offset, h.size, h.partition_leader_epoch, h.magic) == (42, len(built), 5, 2)
    assert (h.last_offset_delta, h.base_timestamp, h.max_timestamp) == (1, 1_000_000, 1_000_005)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.records_count) == (7, 3, 11, 2)
    assert (h.last_offset, h.next_offset, h.compression) == (43, 44, 0)
    assert decode_records(built) == [(42, Record(None, b"", (), 1_000_000)), (43, rec)]


records_st = st.lists(
    st.builds(
        Record,
        st.none() | st.binary(max_size=40),
        st.none() | st.binary(max_size=300),
        st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3).map(tuple),
        st.integers(min_value=0, max_value=1 << 45),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(records_st, st.integers(min_value=0, max_value=1 << 40), st.sampled_from([0, 1]))
def test_round_trip(records, base, codec):
    batch = build_batch(records, base_offset=base, attributes=codec)
    h = validate_batch(batch)
    assert h.size == len(batch) and h.records_count == len(records) and h.compression == codec
    assert h.max_timestamp == max(r.timestamp_ms for r in records)
    assert decode_records(batch) == [(base + i, r) for i, r in enumerate(records)]


def test_no_timestamp_uses_now():
    batch = build_batch([Record(None, b"a"), Record(None, b"b", (), 5)], now_ms=1000)
    assert [r.timestamp_ms for _, r in decode_records(batch)] == [1000, 5]


def test_patch_base_offset_keeps_crc():
    batch = bytearray(build_batch([Record(None, b"a", (), 1)] * 3))
    patch_base_offset(batch, 1 << 40)
    h = validate_batch(batch)
    assert h.base_offset == 1 << 40
    assert [o for o, _ in decode_records(batch)] == [(1 << 40) + i for i in range(3)]


def test_set_log_append_time():
    batch = bytearray(build_batch([Record(None, b"a", (), 1), Record(None, b"b", (), 2)]))
    set_log_append_time(batch, 99_999)
    h = validate_batch(batch)  # CRC recomputed
    assert h.attributes & TIMESTAMP_TYPE_BIT and h.log_append_time
    assert h.max_timestamp == 99_999 and h.base_timestamp == 1
    assert [r.timestamp_ms for _, r in decode_records(batch)] == [99_999, 99_999]


def test_unsupported_codecs():
    batch = bytearray(build_batch([Record(None, b"a", (), 1)]))
    for codec in (2, 3, 4):
        struct.pack_into(">h", batch, 21, codec)
        struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
        assert validate_batch(batch).compression == codec  # storing is fine
        with pytest.raises(UnsupportedCompressionError):
            decode_records(batch)
        with pytest.raises(UnsupportedCompressionError):
            build_batch([Record(None, b"a", (), 1)], attributes=codec)


def test_zlib_framed_gzip_attribute_also_decodes():
    good = build_batch([Record(b"k", b"v" * 100, (), 3)], attributes=1)
    assert decode_records(good)[0][1].value == b"v" * 100


def test_gzip_bomb_is_refused(monkeypatch):
    import omnibus.storage.records as records_mod

    monkeypatch.setattr(records_mod, "MAX_DECOMPRESSED_BYTES", 1000)
    batch = build_batch([Record(None, b"\x00" * 5000, (), 1)], attributes=1)
    with pytest.raises(CorruptBatchError):
        decode_records(batch)


GOOD = build_batch(
    [Record(b"key", b"value" * 3, (("h", b"v"),), 10), Record(None, None, (), 11)], base_offset=5
)


def test_truncated_at_every_index():
    for n in range(len(GOOD)):
        with pytest.raises(CorruptBatchError):
            validate_batch(GOOD[:n])
        with pytest.raises(CorruptBatchError):
            decode_records(GOOD[:n], validate=False)


def test_every_single_bit_flip_in_crc_range_is_detected():
    for i in range(16, len(GOOD)):  # magic, crc, and everything under the crc
        for bit in (0x01, 0x80):
            bad = bytearray(GOOD)
            bad[i] ^= bit
            with pytest.raises(CorruptBatchError):
                validate_batch(bad)


def test_bad_magic_and_negative_lengths():
    bad = bytearray(GOOD)
    bad[16] = 1
    with pytest.raises(CorruptBatchError, match="magic"):
        validate_batch(bad)
    for length in (-1, -(1 << 31), 0, 48):
        bad = bytearray(GOOD)
        struct.pack_into(">i", bad, 8, length)
        with pytest.raises(CorruptBatchError):
            validate_batch(bad)
    bad = bytearray(GOOD)
    struct.pack_into(">i", bad, 57, -3)  # recordsCount
    struct.pack_into(">I", bad, 17, crc32c(bytes(bad[21:])))
    with pytest.raises(CorruptBatchError):
        validate_batch(bad)


def _recrc(buf: bytearray) -> bytearray:
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    return buf


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mangled_records_with_valid_crc_raise_only_corrupt(data):
    """Garbage under a correct CRC (a buggy producer, not a disk error) must still raise the named error."""
    buf = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(HEADER_SIZE - 4, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(HEADER_SIZE, len(buf)))
    buf = buf[:cut]
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    _recrc(buf)
    try:
        decode_records(buf)
    except CorruptBatchError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_corrupt(blob):
    for fn in (validate_batch, decode_records):
        try:
            fn(blob)
        except CorruptBatchError:
            pass
    # And with a plausible header in front, so the parser reaches the records.
    buf = bytearray(GOOD[:HEADER_SIZE]) + blob
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    _recrc(buf)
    try:
        decode_records(buf)
    except CorruptBatchError:
        pass


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=100))
def test_garbage_gzip_payload_raises_corrupt(blob):
    buf = bytearray(GOOD[:HEADER_SIZE]) + blob
    struct.pack_into(">h", buf, 21, 1)
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    _recrc(buf)
    with pytest.raises(CorruptBatchError):
        decode_records(buf)


def test_valid_gzip_of_garbage_records_raises_corrupt():
    c = zlib.compressobj(wbits=31)
    payload = c.compress(b"\x7f" * 30) + c.flush()
    buf = bytearray(GOOD[:HEADER_SIZE]) + payload
    struct.pack_into(">h", buf, 21, 1)
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    _recrc(buf)
    with pytest.raises(CorruptBatchError):
        decode_records(buf)
