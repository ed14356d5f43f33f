"""Queue ack bitmaps: ack, restart, unacked iteration, collection (omnibus.storage.acks)."""

from __future__ import annotations

import os
import random

import pytest

from omnibus.storage import Log, LogConfig
from omnibus.storage.acks import QueueAcks, ack_path

from .util import batch

ONE = len(batch(4))


def open_log(path) -> Log:
    return Log.open(path, LogConfig(fsync="never", segment_bytes=3 * ONE, file_delete_delay_ms=0))


def fill(log: Log, batches: int) -> None:
    for i in range(batches):
        log.append(batch(4, tag=i))


def test_ack_and_query(tmp_path):
    log = open_log(tmp_path / "q")
    fill(log, 7)  # 28 offsets, segments of 12
    acks = QueueAcks(log)
    assert acks.ack(3) and not acks.ack(3)
    assert acks.is_acked(3) and not acks.is_acked(4)
    assert acks.acked_count(0) == 1
    with pytest.raises(ValueError):
        acks.ack(28)
    assert list(acks.unacked_offsets())[:4] == [0, 1, 2, 4]
    assert len(list(acks.unacked_offsets())) == 27
    acks.close()
    log.close()


def test_acks_survive_restart(tmp_path):
    log = open_log(tmp_path / "q")
    fill(log, 7)
    acks = QueueAcks(log)
    rng = random.Random(7)
    acked = set(rng.sample(range(28), 15))
    for o in acked:
        acks.ack(o)
    acks.close()
    log.close()
    assert os.path.getsize(ack_path(str(tmp_path / "q"), 0)) <= 2  # 12 offsets -> 2 bytes of bitmap
    log = open_log(tmp_path / "q")
    acks = QueueAcks(log)
    assert {o for o in range(28) if acks.is_acked(o)} == acked
    assert list(acks.unacked_offsets()) == sorted(set(range(28)) - acked)
    assert list(acks.unacked_offsets(start=20)) == sorted(o for o in set(range(20, 28)) - acked)
    acks.close()
    log.close()


def test_unflushed_acks_are_lost_not_corrupting(tmp_path):
    log = open_log(tmp_path / "q")
    fill(log, 3)
    acks = QueueAcks(log)
    acks.ack(0)
    acks.flush()
    acks.ack(1)  # never flushed: a crash now redelivers offset 1
    log.close()
    log = open_log(tmp_path / "q")
    again = QueueAcks(log)
    assert again.is_acked(0) and not again.is_acked(1)
    log.close()


def test_collect_deletes_fully_acked_segments_and_survives_restart(tmp_path):
    log = open_log(tmp_path / "q")
    fill(log, 9)  # segments [0,12) [12,24) [24,36)
    acks = QueueAcks(log)
    assert [s.base_offset for s in log.segments()] == [0, 12, 24]
    for o in range(12, 24):  # the middle segment
        acks.ack(o)
    for o in range(0, 11):  # all but one of the first
        acks.ack(o)
    for o in range(24, 36):  # the active segment: never collected
        acks.ack(o)
    acks.flush()
    assert acks.collect() == 1
    assert [s.base_offset for s in log.segments()] == [0, 24]
    assert not os.path.exists(ack_path(log.path, 12))
    assert list(acks.unacked_offsets()) == [11]
    assert acks.is_acked(15)  # in the gap: gone, counts as consumed
    acks.close()
    log.close()

    log = open_log(tmp_path / "q")
    acks = QueueAcks(log)
    assert [s.base_offset for s in log.segments()] == [0, 24]
    assert list(acks.unacked_offsets()) == [11]
    acks.ack(11)
    assert acks.collect() == 1
    assert log.start_offset == 24 and list(acks.unacked_offsets()) == []
    acks.close()
    log.close()


def test_offsets_below_log_start_count_as_consumed(tmp_path):
    log = open_log(tmp_path / "q")
    fill(log, 6)
    acks = QueueAcks(log)
    log.delete_records(6)
    assert list(acks.unacked_offsets())[:2] == [6, 7]
    for o in range(6, 12):
        acks.ack(o)
    assert acks.collect() == 1
    assert log.start_offset == 12
    acks.close()
    log.close()


def test_orphan_ack_files_are_removed(tmp_path):
    log = Log.open(tmp_path / "q", LogConfig(fsync="never", segment_bytes=3 * ONE, retention_bytes=0,
                                              file_delete_delay_ms=0))
    fill(log, 9)
    acks = QueueAcks(log)
    acks.ack(0)
    acks.close()
    assert log.enforce_retention() == 2  # the log deleted segments 0 and 12 on its own
    again = QueueAcks(log)
    assert not os.path.exists(ack_path(log.path, 0))
    assert again.acked_count(0) == 0
    log.close()


def test_large_bitmap_iteration_is_fast(tmp_path):
    log = Log.open(tmp_path / "q", LogConfig(fsync="never"))
    for i in range(100):
        log.append(batch(500, size=0, tag=i))
    acks = QueueAcks(log)
    for o in range(0, 50_000):
        if o % 1000:
            acks.ack(o)
    acks.close()
    acks = QueueAcks(log)
    assert list(acks.unacked_offsets()) == list(range(0, 50_000, 1000))
    log.close()
