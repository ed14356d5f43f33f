"""Log compaction (storage/compaction.py): latest value per key in closed segments, offsets kept,
tombstones after delete_retention_ms, min_compaction_lag_ms, batches left untouched (transactional,
undecodable, corrupt), the result surviving a reopen, and a real crash (os._exit in a child process) at
every step of the swap.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from omnibus.storage import compaction
from omnibus.storage.log import Log, LogConfig
from omnibus.storage.records import (COMPRESSION_SNAPPY, TRANSACTIONAL_BIT, Record, build_batch, decode_records,
                                     read_header)

from .util import ManualClock

NOW = 1_700_000_000_000
DAY = 86_400_000


def _log(path, clock=None, **cfg) -> Log:
    base = dict(segment_bytes=400, fsync="never", cleanup_policy="compact", delete_retention_ms=DAY,
                file_delete_delay_ms=0)
    base.update(cfg)
    return Log.open(path, LogConfig(**base), clock=clock or ManualClock(NOW))


def _put(log: Log, key: bytes | None, value: bytes | None, ts: int = NOW - 10 * DAY, **kw) -> int:
    return log.append(build_batch([Record(key, value, (), ts)], **kw)).base_offset


def _contents(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    for h, view in log.batches(log.start_offset):
        if h.compression not in (0, 1):
            out.append((h.base_offset, b"<verbatim>", None))
            continue
        for off, rec in decode_records(bytes(view)):
            if off >= log.start_offset:
                out.append((off, rec.key, rec.value))
    return out


def _latest(entries) -> dict:
    d = {}
    for off, k, v in entries:
        d[k] = (off, v)
    return d


def _flush(log: Log) -> None:
    log.flush()  # seals: the syncer has fsynced every closed segment, so all of them are cleanable


def test_keeps_latest_per_key_and_offsets(tmp_path):
    clock = ManualClock(NOW)
    log = _log(tmp_path / "l", clock=clock)
    for i in range(60):
        _put(log, b"k%d" % (i % 5), b"v%d" % i)
    _put(log, b"k0", None)  # tombstone (10 days old, but its delete horizon starts at the first clean)
    log.roll()
    for i in range(3):
        _put(log, b"k1", b"active%d" % i)  # the active segment is never cleaned
    _flush(log)
    before = _contents(log)
    end, segments_before = log.end_offset, len(log.segments())
    res = compaction.compact(log)
    after = _contents(log)
    assert res.records_removed > 0 and res.segments_rewritten + res.segments_deleted > 0
    assert log.end_offset == end
    # every record kept is exactly a record from before, at its offset
    assert set(after) <= set(before)
    active_base = log.segments()[-1].base_offset
    closed = [e for e in after if e[0] < active_base]
    keys = [k for _, k, _ in closed]
    assert len(keys) == len(set(keys))  # one record per key in the cleaned part
    assert [(k, v) for _, k, v in closed if k == b"k0"] == [(b"k0", None)]  # only the tombstone is left
    horizon = [h for h, _ in log.batches(0) if h.attributes & compaction.DELETE_HORIZON_BIT]
    assert [h.base_timestamp for h in horizon] == [NOW + DAY]  # KIP-534: stamped with its delete horizon
    latest_before = _latest(e for e in before if e[0] < active_base)
    for off, k, v in closed:
        assert latest_before[k] == (off, v)
    assert [e for e in after if e[0] >= active_base] == [e for e in before if e[0] >= active_base]
    assert len(log.segments()) <= segments_before
    # reading from any old offset still works (gaps are stepped over)
    for off in range(0, end):
        if off >= log.start_offset:
            log.read(off, 100)
    log.close()
    again = _log(tmp_path / "l", clock=clock)
    assert _contents(again) == after and again.end_offset == end
    clock.advance(DAY)  # past the horizon: the tombstone goes
    compaction.compact(again)
    assert [e for e in _contents(again) if e[1] == b"k0"] == []
    # and the other records keep their original timestamps through the re-encoding
    stamps = {off: rec.timestamp_ms for h, v in again.batches(0) for off, rec in decode_records(bytes(v))}
    assert set(stamps.values()) <= {NOW - 10 * DAY}
    again.close()


def test_tombstone_kept_until_delete_retention(tmp_path):
    clock = ManualClock(NOW)
    log = _log(tmp_path / "l", clock=clock)
    for i in range(20):
        _put(log, b"a", b"x" * 20 + b"%d" % i, ts=NOW)
    _put(log, b"a", None, ts=NOW)
    for i in range(30):
        _put(log, b"b%d" % i, b"y" * 30, ts=NOW)
    _flush(log)
    compaction.compact(log)
    assert [e for e in _contents(log) if e[1] == b"a"] == [(20, b"a", None)]  # only the fresh tombstone
    clock.advance(DAY + 1)
    compaction.compact(log)
    assert [e for e in _contents(log) if e[1] == b"a"] == []
    log.close()


def test_min_compaction_lag(tmp_path):
    clock = ManualClock(NOW)
    log = _log(tmp_path / "l", clock=clock, min_compaction_lag_ms=60_000)
    for i in range(40):
        _put(log, b"k", b"v%d" % i + b"." * 20, ts=NOW - 1000)
    _flush(log)
    assert compaction.plan(log) is None  # every closed segment is younger than the lag
    clock.advance(60_000)
    res = compaction.compact(log)
    assert res.records_removed > 0
    log.close()


def test_not_compacted_without_policy(tmp_path):
    log = _log(tmp_path / "l", cleanup_policy="delete")
    for i in range(40):
        _put(log, b"k", b"v" * 30)
    _flush(log)
    assert compaction.plan(log) is None
    log.close()


def test_untouched_batches_and_malformed_input(tmp_path):
    log = _log(tmp_path / "l", segment_bytes=2000)
    # A transactional batch and an (undecodable) snappy-flagged batch: kept byte for byte, keys not counted.
    txn = build_batch([Record(b"t", b"txn", (), NOW)], producer_id=7, producer_epoch=0, base_sequence=0,
                      attributes=TRANSACTIONAL_BIT)
    log.append(txn)
    raw = bytearray(build_batch([Record(b"s", b"plain", (), NOW)]))
    from crc32c import crc32c

    raw[22] |= COMPRESSION_SNAPPY  # attributes low byte: claims snappy, the payload is not
    raw[17:21] = crc32c(bytes(raw[21:])).to_bytes(4, "big")
    log.append(bytes(raw))
    _put(log, None, b"no key")  # removed, as Kafka's cleaner does
    for i in range(30):
        _put(log, b"t", b"later%d" % i)  # newer than the transactional record, which still stays
    log.roll()
    _put(log, b"z", b"active")
    _flush(log)
    compaction.compact(log)
    batches = [(h, bytes(v)) for h, v in log.batches(0)]
    assert batches[0][1] == txn.replace(txn[:8], (0).to_bytes(8, "big"), 1)
    assert read_header(batches[1][1]).compression == COMPRESSION_SNAPPY
    entries = _contents(log)
    assert (2, None, b"no key") not in entries
    assert [e for e in entries if e[1] == b"t"][-1][2] == b"later29"
    log.close()


def test_corrupt_batch_is_left_alone(tmp_path):
    log = _log(tmp_path / "l", segment_bytes=4000)
    for i in range(20):
        _put(log, b"k", b"v%d" % i)
    log.roll()
    _put(log, b"z", b"active")
    _flush(log)
    # flip a payload byte of batch 3 on disk: its CRC no longer matches; compaction must not choke on it
    seg_file = tmp_path / "l" / ("%020d.log" % 0)
    positions = []
    pos = 0
    data = seg_file.read_bytes()
    while pos < len(data):
        positions.append(pos)
        pos += read_header(data, pos).size
    with open(seg_file, "r+b") as f:
        f.seek(positions[3] + 70)
        b = f.read(1)
        f.seek(positions[3] + 70)
        f.write(bytes([b[0] ^ 0xFF]))
    res = compaction.compact(log)
    assert res.records_removed == 18  # all but the corrupt one (kept verbatim) and the latest
    offsets = [h.base_offset for h, _ in log.batches(0)]
    assert 3 in offsets and 19 in offsets
    log.close()


def test_gap_at_segment_start_before_verbatim_batch(tmp_path):
    log = _log(tmp_path / "l", segment_bytes=4000)
    for i in range(5):
        _put(log, b"k", b"old%d" % i)
    txn = build_batch([Record(b"t", b"txn", (), NOW)], producer_id=7, producer_epoch=0, base_sequence=0,
                      attributes=TRANSACTIONAL_BIT)
    log.append(txn)
    _put(log, b"k", b"new")
    log.roll()
    _put(log, b"z", b"active")
    _flush(log)
    compaction.compact(log)
    hs = [h for h, _ in log.batches(0)]
    assert (hs[0].base_offset, hs[0].records_count, hs[0].last_offset_delta) == (0, 0, 4)  # empty filler
    assert hs[1].base_offset == 5 and hs[1].is_transactional
    assert _contents(log)[-2:] == [(6, b"k", b"new"), (7, b"z", b"active")]
    log.close()
    again = _log(tmp_path / "l")
    assert again.end_offset == 8 and again.load_result.truncated_bytes == 0
    again.close()


CHILD = textwrap.dedent("""
    import os, sys
    from omnibus.storage import compaction
    from omnibus.storage.log import Log, LogConfig
    from omnibus.storage.records import Record, build_batch
    path, step, merge = sys.argv[1], sys.argv[2], sys.argv[3] == "merge"
    log = Log.open(path, LogConfig(segment_bytes=400, fsync="always", cleanup_policy="compact",
                                   delete_retention_ms=86_400_000), clock=lambda: 1_700_000_000_000)
    for i in range(80):
        log.append(build_batch([Record(b"k%d" % (i % 4), b"v%d" % i, (), 1_699_000_000_000)]))
    log.flush()
    if merge:  # bigger segments from now on: the cleaner merges the small ones into groups
        log.reconfigure(LogConfig(segment_bytes=4000, fsync="always", cleanup_policy="compact",
                                  delete_retention_ms=86_400_000))
    print(log.end_offset, len(log.segments()), flush=True)
    def hook(name):
        if name == step:
            os._exit(17)
    compaction.SWAP_HOOK = hook
    compaction.compact(log)
    os._exit(0)
""")


@pytest.mark.parametrize("merge", ["merge", "single"])
@pytest.mark.parametrize("step", ["start", "indexes-renamed", "log-replaced", "olds-deleted", "done"])
def test_crash_mid_swap_recovers(tmp_path, step, merge):
    path = tmp_path / "l"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), step, merge], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 17, proc.stderr
    end, segments_before = map(int, proc.stdout.split()[:2])
    log = _log(path, fsync="always")
    try:
        assert log.end_offset == end and log.load_result.truncated_bytes == 0
        entries = _contents(log)
        latest = _latest(entries)
        assert {k: v for k, (_, v) in latest.items()} == {b"k%d" % j: b"v%d" % (76 + j) for j in range(4)}
        offs = [e[0] for e in entries]
        assert offs == sorted(set(offs))
        # the log still compacts and reads after the crash
        compaction.compact(log)
        assert {k: v for k, (_, v) in _latest(_contents(log)).items()} == {
            b"k%d" % j: b"v%d" % (76 + j) for j in range(4)}
        assert not (path / compaction.CLEANER_DIR).exists()  # the crash's scratch files are gone
        if merge == "merge":
            assert len(log.segments()) < segments_before / 3
    finally:
        log.close()
    assert not any(n.endswith(".deleted") for n in os.listdir(path))


def test_check_data_accepts_a_compacted_log(tmp_path):
    from omnibus.storage.check import check_data

    log = _log(tmp_path / "data" / "l")
    for i in range(60):
        _put(log, b"k%d" % (i % 5), b"v%d" % i)
    log.roll()
    _put(log, b"z", b"active")
    _flush(log)
    assert compaction.compact(log).records_removed > 0
    before = _contents(log)
    log.close()
    report = check_data(tmp_path / "data", repair=True)
    assert report.ok and not report.problems, report.format()
    again = _log(tmp_path / "data" / "l")
    assert _contents(again) == before
    again.close()


def test_idempotent_batches_keep_their_span(tmp_path):
    log = _log(tmp_path / "l", segment_bytes=4000)
    for i in range(6):  # one producer, sequences 0..5, one record per batch
        log.append(build_batch([Record(b"k%d" % (i % 2), b"v%d" % i, (), NOW - DAY)], producer_id=42,
                               producer_epoch=0, base_sequence=i))
    log.roll()
    _put(log, b"z", b"active")
    _flush(log)
    compaction.compact(log)
    hs = [h for h, _ in log.batches(0)]
    spans = [(h.base_offset, h.last_offset_delta, h.records_count, h.producer_id, h.base_sequence) for h in hs]
    # offsets 0-3 lost their records: an empty filler covers them; the producer's batches keep base and span
    assert spans == [(0, 3, 0, -1, -1), (4, 0, 1, 42, 4), (5, 0, 1, 42, 5), (6, 0, 1, -1, -1)]
    log.close()


def test_small_segments_are_merged(tmp_path):
    log = _log(tmp_path / "l", segment_bytes=300)
    for i in range(200):
        _put(log, b"k%d" % (i % 50), b"v%d" % i)
    log.roll()
    _put(log, b"z", b"active")
    _flush(log)
    before = _contents(log)
    n_before = len(log.segments())
    log.reconfigure(LogConfig(segment_bytes=100_000, fsync="never", cleanup_policy="compact",
                              delete_retention_ms=DAY, file_delete_delay_ms=0))
    res = compaction.compact(log)
    assert res.records_removed == 150
    assert len(log.segments()) == 2  # everything closed merged into one segment, plus the active one
    after = _contents(log)
    assert after == [e for e in before if e[0] >= 150]  # the latest of each key, at their offsets
    assert log.segments()[0].base_offset == 0 and log.start_offset == 0
    log.close()
    again = _log(tmp_path / "l")
    assert _contents(again) == after and len(again.segments()) == 2
    again.close()
    assert n_before > 20
