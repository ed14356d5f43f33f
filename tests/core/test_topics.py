"""Topics: creation on disk, partition lookup, offsets, growth, reopen."""

from __future__ import annotations

import os
import uuid

import pytest

from omnibus.core.clock import ManualClock
from omnibus.core.topics import (
    MAX_TOPIC_NAME_LENGTH,
    Topic,
    TopicConfig,
    UnknownPartition,
    partition_dir,
    valid_topic_name,
)
from omnibus.storage import LogConfig, Record

CFG = TopicConfig(log=LogConfig(fsync="never"))


def test_create_lookup_offsets(tmp_path):
    clock = ManualClock()
    t = Topic.create(tmp_path, "orders", 3, CFG, clock=clock.now_ms)
    assert len(t) == 3 == t.partition_count
    assert sorted(os.listdir(tmp_path)) == ["orders-0", "orders-1", "orders-2"]
    assert t.offsets(1) == (0, 0)
    t.partition(1).append_records([Record(b"k", b"v1", (), 10), Record(b"k", b"v2", (), 20)])
    assert t.earliest_offset(1) == 0 and t.latest_offset(1) == 2
    assert t.offset_for_timestamp(1, 15) == 1
    assert t.offset_for_timestamp(1, 25) is None
    assert t.latest_offset(0) == 0
    with pytest.raises(UnknownPartition) as e:
        t.partition(3)
    assert e.value.partition == 3
    with pytest.raises(UnknownPartition):
        t.partition(-1)
    assert isinstance(t.topic_id, uuid.UUID)
    t.close()
    again = Topic.create(tmp_path, "orders", 3, CFG, topic_id=t.topic_id)
    assert again.latest_offset(1) == 2 and again.topic_id == t.topic_id
    again.close()


def test_add_partitions(tmp_path):
    t = Topic.create(tmp_path, "t", 1, CFG)
    t.add_partitions(tmp_path, 3)
    assert len(t) == 3
    assert os.path.isdir(partition_dir(tmp_path, "t", 2))
    with pytest.raises(ValueError):
        t.add_partitions(tmp_path, 3)
    t.delete()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "name,ok",
    [("orders", True), ("a.b_c-D9", True), ("x" * MAX_TOPIC_NAME_LENGTH, True),
     ("x" * (MAX_TOPIC_NAME_LENGTH + 1), False), ("", False), (".", False), ("..", False),
     ("a b", False), ("a/b", False), ("ünï", False)],
)
def test_topic_names(name, ok):
    assert valid_topic_name(name) is ok


def test_invalid_construction(tmp_path):
    with pytest.raises(ValueError):
        Topic.create(tmp_path, "bad name", 1, CFG)
    with pytest.raises(ValueError):
        Topic.create(tmp_path, "t", 0, CFG)
    with pytest.raises(ValueError):
        Topic("t", [])
