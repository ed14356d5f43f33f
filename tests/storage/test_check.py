"""Offline check and repair of a data directory (omnibus.storage.check)."""

from __future__ import annotations

import os

from omnibus.storage import Log, LogConfig
from omnibus.storage.check import check_data
from omnibus.storage.segment import segment_path

from .util import batch

ONE = len(batch(3))


def make_logs(data_dir) -> list[str]:
    paths = []
    for name in ("kafka/orders-0", "queues/q1"):
        path = os.path.join(data_dir, name)
        log = Log.open(path, LogConfig(fsync="never", segment_bytes=4 * ONE, index_interval_bytes=100))
        for i in range(10):
            log.append(batch(3, tag=i, ts=1000 + i))
        log.close()
        paths.append(path)
    return paths


def test_clean_data_dir_passes(tmp_path):
    make_logs(tmp_path)
    report = check_data(tmp_path)
    assert report.ok and report.problems == []
    assert report.totals == {
        "logs": 2, "segments": 6, "batches": 20, "records": 60, "bytes": 20 * ONE, "problems": 0, "repaired": 0
    }
    assert "total: 2 logs" in report.format()


def test_finds_and_repairs_a_torn_tail(tmp_path):
    q1 = make_logs(tmp_path)[1]
    last = segment_path(q1, 24, ".log")
    os.truncate(last, os.path.getsize(last) - 10)
    report = check_data(tmp_path)
    assert not report.ok
    p, rp = report.problems
    assert (p.segment, p.kind, p.repaired) == (24, "torn-tail", False)
    assert rp.kind == "recovery-point"  # the clean close recorded 30, the data now ends at 27
    assert os.path.getsize(last) == 2 * ONE - 10  # not repaired without repair=True

    report = check_data(tmp_path, repair=True)
    assert report.ok and all(p.repaired for p in report.problems)
    assert os.path.getsize(last) == ONE
    assert check_data(tmp_path).problems == []
    log = Log.open(q1, LogConfig(fsync="never"))
    assert log.end_offset == 27
    log.close()


def test_finds_corrupt_batches_and_bad_indexes(tmp_path):
    orders = make_logs(tmp_path)[0]
    seg = segment_path(orders, 12, ".log")
    data = bytearray(open(seg, "rb").read())
    data[ONE + 70] ^= 1  # inside the second batch of the middle segment
    open(seg, "wb").write(data)
    idx = segment_path(orders, 0, ".index")
    entries = bytearray(open(idx, "rb").read())
    assert entries, "the index should have entries with a 100-byte interval"
    entries[-1] ^= 0x10  # a position that is no batch start
    open(idx, "wb").write(entries)
    os.unlink(segment_path(orders, 24, ".timeindex"))

    report = check_data(tmp_path)
    kinds = sorted((p.segment, p.kind) for p in report.problems)
    assert kinds == [(0, "bad-index"), (12, "corrupt-batch"), (24, "missing-index")]
    report = check_data(tmp_path, repair=True)
    assert report.ok
    again = check_data(tmp_path)
    assert again.problems == []
    assert any("gap" in n for lg in again.logs for n in lg.notes)  # segment 12 lost batches 2..4
