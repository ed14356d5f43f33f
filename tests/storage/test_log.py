"""Log: append/read, time lookups, rolling, retention, delete_records (omnibus.storage.log)."""

from __future__ import annotations

import os
import struct

import pytest

from omnibus.storage import (
    CorruptBatchError,
    Log,
    LogClosedError,
    LogConfig,
    OffsetOutOfRangeError,
    Record,
    RecordTooLargeError,
    Syncer,
    build_batch,
    decode_records,
    validate_batch,
)
from omnibus.storage.loader import LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, read_offset_file

from .util import ManualClock, batch


@pytest.fixture
def syncer():
    s = Syncer()
    s.start()
    yield s
    s.close()


def open_log(path, syncer, clock=None, **cfg) -> Log:
    cfg.setdefault("fsync", "never")
    kw = {"syncer": syncer}
    if clock is not None:
        kw["clock"] = clock
    return Log.open(path, LogConfig(**cfg), **kw)


def values(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in a byte range of whole batches."""
    out, pos = [], 0
    while pos < len(data):
        h = validate_batch(data, pos)
        out += [(o, r.value) for o, r in decode_records(memoryview(data)[pos : pos + h.size])]
        pos += h.size
    return out


def test_append_read_round_trip(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer)
    assert (log.start_offset, log.end_offset) == (0, 0)
    assert log.read(0, 1000) == []
    results = [log.append(batch(3, tag=i)) for i in range(10)]
    assert [(r.base_offset, r.last_offset, r.timestamp_ms) for r in results] == [
        (3 * i, 3 * i + 2, -1) for i in range(10)
    ]
    assert log.end_offset == 30
    got = values(log.read_bytes(0, 10**9))
    assert [o for o, _ in got] == list(range(30))
    assert got[7][1].startswith(b"2:1:")
    # Records appended with the convenience API come back too.
    r = log.append_records([Record(b"a", b"alpha", (), 5), Record(None, None)])
    assert (r.base_offset, r.last_offset) == (30, 31)
    assert values(log.read_bytes(30, 10**6)) == [(30, b"alpha"), (31, None)]
    log.close()


def test_read_from_inside_a_batch_returns_that_batch(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer, index_interval_bytes=100)
    for i in range(20):
        log.append(batch(5, tag=i))
    for offset in range(100):
        data = log.read_bytes(offset, 1)  # max_bytes below one batch: still one whole batch (KIP-74)
        h = validate_batch(data)
        assert h.base_offset == offset - offset % 5 and h.size == len(data)
    log.close()


def test_read_respects_max_bytes_with_whole_batches(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer, index_interval_bytes=0)
    sizes = [log.append(batch(2, size=100 + 10 * i, tag=i)) for i in range(10)]
    one = len(batch(2, size=100))
    regions = log.read(0, 3 * one + 50)
    assert len(regions) == 1
    data = log.read_bytes(0, 3 * one + 50)
    assert len(data) == regions[0].size
    got = values(data)
    assert [o for o, _ in got] == list(range(len(got)))
    assert 2 <= len(got) // 2 <= 3 and len(data) <= 3 * one + 50
    assert sizes[-1].last_offset == 19
    with pytest.raises(OffsetOutOfRangeError):
        log.read(21, 10)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 10)
    assert log.read(20, 10) == []
    log.close()


def test_read_and_batches_span_segments(tmp_path, syncer):
    one = len(batch(2))
    log = open_log(tmp_path / "log", syncer, segment_bytes=3 * one, index_interval_bytes=0)
    for i in range(10):
        log.append(batch(2, tag=i))
    assert [s.base_offset for s in log.segments()] == [0, 6, 12, 18]
    regions = log.read(4, 10**6)
    assert [r.size for r in regions] == [one, 3 * one, 3 * one, one]
    assert [o for o, _ in values(log.read_bytes(4, 10**6))] == list(range(4, 20))
    # A budget that ends inside the second segment stops at a whole batch.
    assert [o for o, _ in values(log.read_bytes(4, 2 * one + 10))] == list(range(4, 8))
    seen = [(h.base_offset, len(v)) for h, v in log.batches(7)]
    assert seen == [(b, one) for b in range(6, 20, 2)]
    log.close()


def test_batches_sees_appends_and_big_batches(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer)
    log.append(batch(1))
    it = log.batches(0)
    assert next(it)[0].base_offset == 0
    big = build_batch([Record(None, b"x" * (300 << 10))])  # larger than one read chunk
    log.append(big)
    h, view = next(it)
    assert h.base_offset == 1 and bytes(view[61:]) == big[61:]
    assert list(it) == []
    log.close()


def test_append_rejects_bad_input(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer, max_batch_bytes=2000)
    good = batch(2)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError):
        log.append(bad)
    with pytest.raises(CorruptBatchError):
        log.append(good + b"\x00")  # trailing bytes
    with pytest.raises(CorruptBatchError):
        log.append(good[:-1])
    with pytest.raises(RecordTooLargeError):
        log.append(batch(1, size=3000))
    assert log.end_offset == 0 and log.segments()[0].size == 0
    # memoryview and bytearray inputs work and are not modified.
    buf = bytearray(good)
    log.append(memoryview(buf))
    assert bytes(buf) == good
    log.close()
    with pytest.raises(LogClosedError):
        log.append(good)


def test_log_append_time(tmp_path, syncer):
    clock = ManualClock(5_000_000)
    log = open_log(tmp_path / "log", syncer, clock=clock)
    r = log.append(batch(3, ts=10), log_append_time=True)
    assert r.timestamp_ms == 5_000_000
    data = log.read_bytes(0, 10**6)
    h = validate_batch(data)  # the CRC was recomputed
    assert h.log_append_time and h.max_timestamp == 5_000_000
    assert [rec.timestamp_ms for _, rec in decode_records(data)] == [5_000_000] * 3
    assert log.offset_for_timestamp(4_000_000) == 0
    log.close()


def test_offset_for_timestamp(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer, segment_bytes=2000, index_interval_bytes=150)
    # Batch i holds records with timestamps 1000+10i, 1000+10i+1, 1000+10i+2.
    for i in range(30):
        log.append(batch(3, ts=1000 + 10 * i, tag=i))
    assert len(log.segments()) > 3
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(1000) == 0
    assert log.offset_for_timestamp(1001) == 1
    assert log.offset_for_timestamp(1003) == 3  # between batches: first record of the next batch
    assert log.offset_for_timestamp(1000 + 10 * 17 + 2) == 17 * 3 + 2
    assert log.offset_for_timestamp(1000 + 10 * 29 + 2) == 89
    assert log.offset_for_timestamp(1000 + 10 * 29 + 3) is None
    # Out-of-order timestamps: the first offset whose timestamp reaches the target wins.
    log.append_records([Record(None, b"late", (), 1)])
    log.append_records([Record(None, b"future", (), 10**6)])
    assert log.offset_for_timestamp(5000) == 91
    # The answer never precedes the start offset.
    log.delete_records(40)
    assert log.offset_for_timestamp(0) == 40
    log.close()


def test_roll_by_size_and_reopen(tmp_path, syncer):
    one = len(batch(2))
    log = open_log(tmp_path / "log", syncer, segment_bytes=4 * one)
    for i in range(10):
        log.append(batch(2, tag=i))
    infos = log.segments()
    assert [(s.base_offset, s.next_offset, s.size) for s in infos] == [
        (0, 8, 4 * one),
        (8, 16, 4 * one),
        (16, 20, 2 * one),
    ]
    log.close()
    assert sorted(os.listdir(tmp_path / "log"))[:3] == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]
    assert read_offset_file(str(tmp_path / "log" / RECOVERY_POINT_FILE)) == 20
    again = open_log(tmp_path / "log", syncer, segment_bytes=4 * one)
    assert again.load_result.recovered_segments == 0  # clean close: nothing re-scanned
    assert again.segments() == infos and again.end_offset == 20
    assert [o for o, _ in values(again.read_bytes(0, 10**6))] == list(range(20))
    again.append(batch(2))
    assert again.end_offset == 22
    again.close()


def test_oversized_batch_goes_alone_into_a_segment(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer, segment_bytes=500)
    log.append(batch(1))
    log.append(batch(1, size=2000))
    log.append(batch(1))
    assert [s.base_offset for s in log.segments()] == [0, 1, 2]
    log.close()


def test_roll_by_age_with_injected_clock(tmp_path, syncer):
    clock = ManualClock()
    log = open_log(tmp_path / "log", syncer, clock=clock, segment_ms=1000)
    log.append(batch(1, ts=clock.now))
    clock.advance(999)
    log.append(batch(1, ts=clock.now))
    assert len(log.segments()) == 1
    clock.advance(1)
    log.append(batch(1, ts=clock.now))
    assert [s.base_offset for s in log.segments()] == [0, 2]
    log.roll()
    log.roll()  # rolling an empty active segment does nothing
    assert [s.base_offset for s in log.segments()] == [0, 2, 3]
    log.close()


def test_retention_by_time(tmp_path, syncer):
    clock = ManualClock(1_000_000)
    log = open_log(tmp_path / "log", syncer, clock=clock, retention_ms=10_000, file_delete_delay_ms=0)
    for i in range(5):
        log.append(batch(2, ts=1_000_000 + 1000 * i))
        log.roll()
    log.append(batch(2, ts=2_000_000))  # active segment, never deleted
    clock.now = 1_000_000 + 1 + 10_000 + 2000  # segments whose max ts <= now - 10s - 1 go
    assert log.enforce_retention() == 2
    assert log.start_offset == 4 and log.segments()[0].base_offset == 4
    assert not os.path.exists(tmp_path / "log" / "00000000000000000000.log")
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)
    clock.now = 10**12
    assert log.enforce_retention() == 3
    assert [s.base_offset for s in log.segments()] == [10]
    log.close()


def test_retention_by_size(tmp_path, syncer):
    one = len(batch(2))
    log = open_log(tmp_path / "log", syncer, segment_bytes=2 * one, retention_bytes=5 * one)
    for i in range(10):
        log.append(batch(2, tag=i))
    assert log.size_bytes() == 10 * one
    # Kafka: delete oldest while what remains is still >= retention_bytes.
    assert log.enforce_retention() == 2
    assert log.size_bytes() == 6 * one and log.start_offset == 8
    assert log.enforce_retention() == 0
    log.close()


def test_delete_records(tmp_path, syncer):
    one = len(batch(2))
    log = open_log(tmp_path / "log", syncer, segment_bytes=2 * one, file_delete_delay_ms=0)
    for i in range(6):
        log.append(batch(2, tag=i))
    assert log.delete_records(5) == 5
    assert log.start_offset == 5
    assert [s.base_offset for s in log.segments()] == [4, 8]
    assert [o for o, _ in values(log.read_bytes(5, 10**6))][0] == 4  # whole batch containing 5
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    assert log.delete_records(3) == 5  # never moves back
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(13)
    assert log.delete_records(12) == 12  # everything: the active segment stays, empty of readable data
    assert log.read(12, 100) == []
    log.close()
    assert read_offset_file(str(tmp_path / "log" / LOG_START_OFFSET_FILE)) == 12
    again = open_log(tmp_path / "log", syncer)
    assert (again.start_offset, again.end_offset) == (12, 12)
    again.close()


def test_delete_segment_keeps_regions_valid_until_delay(tmp_path, syncer):
    one = len(batch(2))
    log = open_log(tmp_path / "log", syncer, segment_bytes=2 * one, file_delete_delay_ms=60_000)
    for i in range(6):
        log.append(batch(2, tag=i))
    region = log.read(4, 10**6)[0]
    log.delete_segment(4)  # a middle segment (acks do this): a gap appears
    assert [s.base_offset for s in log.segments()] == [0, 8]
    assert os.pread(region.fd, region.size, region.position)[:8] == struct.pack(">q", 4)
    assert [o for o, _ in values(log.read_bytes(4, 10**6))][0] == 8  # reads step over the gap
    assert [h.base_offset for h, _ in log.batches(2)] == [2, 8, 10]
    with pytest.raises(ValueError):
        log.delete_segment(8)  # active
    with pytest.raises(KeyError):
        log.delete_segment(5)
    log.delete_segment(0)
    assert log.start_offset == 8
    log.close()
    names = os.listdir(tmp_path / "log")
    assert any(n.endswith(".deleted") for n in names)  # delay not over: renamed, not yet unlinked
    again = open_log(tmp_path / "log", syncer)  # pass 1 removes them
    assert not any(n.endswith(".deleted") for n in os.listdir(tmp_path / "log"))
    assert again.start_offset == 8
    again.close()


def test_delete_removes_directory(tmp_path, syncer):
    log = open_log(tmp_path / "log", syncer)
    log.append(batch(1))
    log.delete()
    assert not os.path.exists(tmp_path / "log")


def test_config_validation():
    with pytest.raises(ValueError):
        LogConfig(fsync="sometimes")
    with pytest.raises(ValueError):
        LogConfig(segment_bytes=1 << 31)
