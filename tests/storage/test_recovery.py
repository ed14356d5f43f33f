"""Crash recovery (omnibus.storage.loader): torn and corrupted tails at every byte, lost indexes,
stray files. An unclean stop is simulated by rewinding the recovery-point file, which is exactly the
state a crash leaves (it only advances at roll, flush and clean close)."""

from __future__ import annotations

import os
import shutil

import pytest

from omnibus.storage import Log, LogConfig, Syncer, decode_records, validate_batch
from omnibus.storage.loader import RECOVERY_POINT_FILE, write_offset_file
from omnibus.storage.segment import segment_path

from .util import batch

CFG = LogConfig(fsync="never", index_interval_bytes=200)


@pytest.fixture(scope="module")
def syncer():
    s = Syncer()
    s.start()
    yield s
    s.close()


def contents(log: Log) -> list[tuple[int, bytes]]:
    out = []
    for h, view in log.batches(log.start_offset):
        validate_batch(view)
        out += [(o, r.value) for o, r in decode_records(view)]
    return out


def build_template(path, syncer, segments: int = 2, per_segment: int = 4) -> tuple[list, int, int]:
    """A closed log of ``segments`` segments; returns (records, last batch position, last segment base)."""
    log = Log.open(path, CFG, syncer=syncer)
    for s in range(segments):
        if s:
            log.roll()
        for i in range(per_segment):
            log.append(batch(3, size=20, tag=s * 100 + i))
    records = contents(log)
    last_pos = [p for h, p in _positions(log)][-1]
    base = log.segments()[-1].base_offset
    log.close()
    return records, last_pos, base


def _positions(log: Log):
    seg = log._segments[-1]
    pos = 0
    while pos < seg.size:
        data = os.pread(seg.fd, 1 << 20, pos)
        h = validate_batch(data)
        yield h, pos
        pos += h.size


def unclean(path, base: int) -> None:
    """Rewind the recovery point to the active segment's base, as a crash would have left it."""
    write_offset_file(os.path.join(path, RECOVERY_POINT_FILE), base, sync=False)


def test_torn_tail_at_every_byte_keeps_exact_valid_prefix(tmp_path, syncer):
    template = str(tmp_path / "template")
    records, last_pos, base = build_template(template, syncer)
    log_file = segment_path(template, base, ".log")
    full = os.path.getsize(log_file)
    kept = records[:-3]  # the last batch holds 3 records
    for cut in range(last_pos, full):
        work = str(tmp_path / f"cut{cut}")
        shutil.copytree(template, work)
        os.truncate(segment_path(work, base, ".log"), cut)
        unclean(work, base)
        log = Log.open(work, CFG, syncer=syncer)
        assert log.load_result.truncated_bytes == cut - last_pos
        assert log.end_offset == kept[-1][0] + 1
        assert contents(log) == kept
        log.append(batch(1, tag=999))  # the log is usable after recovery
        assert log.end_offset == kept[-1][0] + 2
        log.close()
        shutil.rmtree(work)


def test_flipped_byte_in_last_batch_at_every_index(tmp_path, syncer):
    template = str(tmp_path / "template")
    records, last_pos, base = build_template(template, syncer)
    log_file = segment_path(template, base, ".log")
    pristine = open(log_file, "rb").read()
    for i in range(last_pos, len(pristine)):
        work = str(tmp_path / f"flip{i}")
        shutil.copytree(template, work)
        bad = bytearray(pristine)
        bad[i] ^= 0xFF
        with open(segment_path(work, base, ".log"), "wb") as f:
            f.write(bad)
        unclean(work, base)
        log = Log.open(work, CFG, syncer=syncer)
        rel = i - last_pos
        if 12 <= rel < 16:
            # partitionLeaderEpoch lies outside the CRC and means nothing to us: the batch survives.
            assert contents(log) == records
        else:
            assert contents(log) == records[:-3], f"flip at batch byte {rel}"
            assert log.load_result.truncated_bytes == len(pristine) - last_pos
        log.close()
        shutil.rmtree(work)


def test_torn_middle_segment_removes_later_segments(tmp_path, syncer):
    path = str(tmp_path / "log")
    records, _, _ = build_template(path, syncer, segments=3)
    first_bases = [0, 12, 24]
    os.truncate(segment_path(path, 12, ".log"), os.path.getsize(segment_path(path, 12, ".log")) - 1)
    unclean(path, 0)
    log = Log.open(path, CFG, syncer=syncer)
    assert log.load_result.removed_segments == [24]
    assert [s.base_offset for s in log.segments()] == first_bases[:2]
    assert contents(log) == records[:21]
    assert not os.path.exists(segment_path(path, 24, ".log"))
    log.close()


def test_recovery_point_limits_the_rescan(tmp_path, syncer):
    path = str(tmp_path / "log")
    _, _, base = build_template(path, syncer, segments=3)
    unclean(path, base)
    log = Log.open(path, CFG, syncer=syncer)
    assert log.load_result.recovered_segments == 1  # only the active segment
    log.close()
    log = Log.open(path, CFG, syncer=syncer)
    assert log.load_result.recovered_segments == 0
    log.close()


@pytest.mark.parametrize("damage", ["delete", "garbage", "short"])
def test_lost_or_corrupt_index_is_rebuilt(tmp_path, syncer, damage):
    path = str(tmp_path / "log")
    log = Log.open(path, CFG, syncer=syncer)
    for i in range(30):
        log.append(batch(3, size=40, tag=i))
    log.roll()
    log.append(batch(1))
    expected_entries = log._segments[0].index.entries()
    expected_times = log._segments[0].time_index.entries()
    records = contents(log)
    log.close()
    assert len(expected_entries) > 5
    for suffix in (".index", ".timeindex"):
        p = segment_path(path, 0, suffix)
        if damage == "delete":
            os.unlink(p)
        elif damage == "garbage":
            size = os.path.getsize(p)
            with open(p, "wb") as f:
                f.write(b"\xff" * size)
        else:
            os.truncate(p, os.path.getsize(p) - 3)
    log = Log.open(path, CFG, syncer=syncer)
    assert log.load_result.recovered_segments == 1
    seg = log._segments[0]
    assert seg.index.entries() == expected_entries
    assert seg.time_index.entries() == expected_times
    assert contents(log) == records
    for offset in range(0, 90, 7):
        assert validate_batch(log.read_bytes(offset, 1)).base_offset == offset - offset % 3
    log.close()


def test_index_lying_in_the_middle_falls_back_to_a_scan(tmp_path, syncer):
    """An index that passes the open-time sanity check but is wrong inside still reads correctly."""
    path = str(tmp_path / "log")
    log = Log.open(path, CFG, syncer=syncer)
    for i in range(30):
        log.append(batch(3, size=40, tag=i))
    log.roll()
    log.close()
    p = segment_path(path, 0, ".index")
    data = bytearray(open(p, "rb").read())
    data[4:8] = (7).to_bytes(4, "big")  # first entry's position now points mid-batch
    open(p, "wb").write(data)
    log = Log.open(path, CFG, syncer=syncer)
    for offset in range(0, 90):
        assert validate_batch(log.read_bytes(offset, 1)).base_offset == offset - offset % 3
    log.close()


def test_stray_files_are_removed_acks_kept(tmp_path, syncer):
    path = str(tmp_path / "log")
    build_template(path, syncer, segments=1)
    strays = [
        "recovery-point.tmp",
        "00000000000000000099.index",
        "00000000000000000099.timeindex",
        "00000000000000000050.log.deleted",
        "00000000000000000050.index.deleted",
        "00000000000000000007.log.swap",
    ]
    for name in strays + ["00000000000000000000.acks"]:
        open(os.path.join(path, name), "wb").write(b"x")
    log = Log.open(path, CFG, syncer=syncer)
    names = set(os.listdir(path))
    assert not names & set(strays)
    assert "00000000000000000000.acks" in names
    assert sorted(log.load_result.removed_files) == sorted(strays)
    log.close()


def test_empty_and_missing_files(tmp_path, syncer):
    path = str(tmp_path / "log")
    log = Log.open(path, CFG, syncer=syncer)
    log.close()
    os.unlink(os.path.join(path, RECOVERY_POINT_FILE))
    log = Log.open(path, CFG, syncer=syncer)
    assert (log.start_offset, log.end_offset) == (0, 0)
    log.append(batch(2))
    log.close()
    # Garbage in the recovery-point file means "recover everything", not a crash.
    open(os.path.join(path, RECOVERY_POINT_FILE), "wb").write(b"not a number")
    log = Log.open(path, CFG, syncer=syncer)
    assert log.end_offset == 2 and log.load_result.recovered_segments == 1
    log.close()
