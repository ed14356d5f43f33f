"""Kafka log compaction with confluent-kafka: a ``cleanup.policy=compact`` topic with a small
``segment.bytes`` (so segments roll), keyed records and tombstones, the broker's log cleaner run now, and a
consumer from the beginning that sees only the latest value of each key (offsets kept, gaps skipped);
then the same after a restart, tombstones gone after their delete horizon, a topic switched to ``compact``
by IncrementalAlterConfigs, and kafka-python's idempotent producer and consumer over a compacted topic.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from omnibus import SyncBroker

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,  # noqa: E402
                                   NewTopic, ResourceType)

WAIT = 15
KEYS = 8
ROUNDS = 20


def run_cleaner(broker: SyncBroker):
    return asyncio.run_coroutine_threadsafe(broker.server.kafka.cleaner.run_once(), broker.loop).result(30)


def produce(boot: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> None:
    p = Producer({"bootstrap.servers": boot, "linger.ms": 0, "batch.num.messages": 1})
    for k, v in records:
        p.produce(topic, key=k, value=v)
        p.poll(0)
    assert p.flush(WAIT) == 0


def consume_all(boot: str, topic: str, with_timestamps: bool = False) -> list[tuple]:
    c = Consumer({"bootstrap.servers": boot, "group.id": "compaction-test", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(m.error())
            out.append((m.offset(), m.key(), m.value()) + ((m.timestamp()[1],) if with_timestamps else ()))
        else:
            raise AssertionError("did not reach the end of the partition")
    finally:
        c.close()
    return out


def _records() -> list[tuple[bytes, bytes | None]]:
    recs: list[tuple[bytes, bytes | None]] = []
    for r in range(ROUNDS):
        for k in range(KEYS):
            recs.append((b"key-%d" % k, b"value-%d-%d-" % (k, r) + b"x" * 40))
    recs.append((b"key-0", None))  # tombstone for key-0
    recs.append((b"key-1", None))
    recs.append((b"key-1", b"reborn"))  # a tombstone superseded
    # Filler that closes the segments holding the data above (the active segment is never cleaned).
    recs += [(b"filler-%d" % i, b"f" * 60) for i in range(12)]
    return recs


def _expect(recs, delete_retention_expired: bool) -> dict[bytes, bytes | None]:
    latest: dict[bytes, bytes | None] = {}
    for k, v in recs:
        latest[k] = v
    if delete_retention_expired:
        latest = {k: v for k, v in latest.items() if v is not None}
    return latest


def test_compacted_topic_keeps_latest_values(tmp_path):
    recs = _records()
    with SyncBroker(tmp_path) as b:
        a = AdminClient({"bootstrap.servers": b.kafka_bootstrap})
        configs = {"cleanup.policy": "compact", "segment.bytes": "1024", "delete.retention.ms": "1000"}
        a.create_topics([NewTopic("compacted", 1, 1, config=configs)])["compacted"].result(WAIT)
        produce(b.kafka_bootstrap, "compacted", recs)
        before = consume_all(b.kafka_bootstrap, "compacted")
        assert len(before) == len(recs)
        segments_before = len(b.call(lambda: b.server.kafka.topics["compacted"].partition(0).segments()))
        assert segments_before > 5

        stamped = consume_all(b.kafka_bootstrap, "compacted", with_timestamps=True)
        res = run_cleaner(b)
        cleaned_at = time.monotonic()
        assert res.records_removed > 0
        assert run_cleaner(b).records_removed == 0  # nothing new: the next round has nothing to do
        after = consume_all(b.kafka_bootstrap, "compacted")
        # offsets are the originals, ascending, with gaps where records went
        offsets = [o for o, _, _ in after]
        assert offsets == sorted(offsets) and len(after) < len(before)
        assert set(after) <= set(before)
        seen = {}
        for off, k, v in after:
            seen[k] = v
        assert seen == _expect(recs, delete_retention_expired=False)  # fresh tombstones are still there
        # every key of the cleaned part appears once; keys in the active segment may still have history
        active_base = b.call(lambda: b.server.kafka.topics["compacted"].partition(0).segments()[-1].base_offset)
        cleaned_keys = [k for o, k, _ in after if o < active_base]
        assert len(cleaned_keys) == len(set(cleaned_keys))
        assert (b"key-1", b"reborn") in [(k, v) for _, k, v in after]
        # re-encoded batches (some with Kafka's delete horizon in their base timestamp) keep record timestamps
        assert set(consume_all(b.kafka_bootstrap, "compacted", with_timestamps=True)) <= set(stamped)

    with SyncBroker(tmp_path) as b:  # the compacted log loads as is
        assert consume_all(b.kafka_bootstrap, "compacted") == after
        # tombstones go at the first clean after their delete horizon (first clean + delete.retention.ms)
        time.sleep(max(0.0, cleaned_at + 1.05 - time.monotonic()))
        run_cleaner(b)
        final = consume_all(b.kafka_bootstrap, "compacted")
        assert all(v is not None for _, _, v in final)
        assert {k: v for _, k, v in final} == _expect(recs, delete_retention_expired=True)


def test_delete_policy_topic_switched_to_compact(tmp_path):
    with SyncBroker(tmp_path) as b:
        a = AdminClient({"bootstrap.servers": b.kafka_bootstrap})
        a.create_topics([NewTopic("switch", 1, 1, config={"segment.bytes": "1024"})])["switch"].result(WAIT)
        recs = [(b"k%d" % (i % 3), b"v%d" % i + b"." * 50) for i in range(60)]
        recs += [(b"filler-%d" % i, b"f" * 60) for i in range(12)]
        produce(b.kafka_bootstrap, "switch", recs)
        assert run_cleaner(b).records_removed == 0  # cleanup.policy=delete: nothing compacts
        res = ConfigResource(ResourceType.TOPIC, "switch", incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
        a.incremental_alter_configs([res])[res].result(WAIT)
        assert run_cleaner(b).records_removed > 0
        got = consume_all(b.kafka_bootstrap, "switch")
        assert {k: v for _, k, v in got} == _expect(recs, delete_retention_expired=False)
        assert len(got) < len(recs)


def test_kafka_python_idempotent_producer_and_consumer(tmp_path):
    kafka = pytest.importorskip("kafka")
    with SyncBroker(tmp_path) as b:
        a = AdminClient({"bootstrap.servers": b.kafka_bootstrap})
        a.create_topics([NewTopic("kp", 1, 1, config={"cleanup.policy": "compact",
                                                      "segment.bytes": "1024"})])["kp"].result(WAIT)
        recs = _records()
        p = kafka.KafkaProducer(bootstrap_servers=b.kafka_bootstrap, enable_idempotence=True, linger_ms=0)
        for k, v in recs:
            p.send("kp", key=k, value=v).get(WAIT)  # one batch per record
        p.close()
        assert run_cleaner(b).records_removed > 0
        headers = b.call(lambda: [h for h, _ in b.server.kafka.topics["kp"].partition(0).batches(0)])
        assert all(h.producer_id >= 0 for h in headers if h.records_count)  # idempotent batches ...
        assert any(h.records_count == 0 for h in headers)  # ... so gaps got empty batches, as Kafka leaves
        c = kafka.KafkaConsumer(bootstrap_servers=b.kafka_bootstrap, group_id=None, auto_offset_reset="earliest")
        try:
            c.assign([kafka.TopicPartition("kp", 0)])
            c.seek_to_beginning()
            end = c.end_offsets([kafka.TopicPartition("kp", 0)])[kafka.TopicPartition("kp", 0)]
            got: list = []
            deadline = time.monotonic() + WAIT
            while c.position(kafka.TopicPartition("kp", 0)) < end and time.monotonic() < deadline:
                for batch in c.poll(timeout_ms=200).values():
                    got += [(r.offset, r.key, r.value) for r in batch]
            assert c.position(kafka.TopicPartition("kp", 0)) == end  # empty batches and gaps stepped over
        finally:
            c.close()
        assert {k: v for _, k, v in got} == _expect(recs, delete_retention_expired=False)
        assert len(got) < len(recs)
        assert consume_all(b.kafka_bootstrap, "kp") == got  # librdkafka reads the same
