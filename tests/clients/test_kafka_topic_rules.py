"""Produce-time rules that come from a topic's configs, through confluent-kafka (librdkafka) and kafka-python:
``min.insync.replicas`` above the one in-sync replica refuses acks=all with NOT_ENOUGH_REPLICAS (acks=1
still works); a compacted topic refuses records without a key with INVALID_RECORD and Kafka's message,
and DeleteRecords on it with POLICY_VIOLATION.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError, NotEnoughReplicasError

WAIT = 15


def _create(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(WAIT)


def _produce(bootstrap: str, topic: str, key: bytes | None, acks: str) -> KafkaError | None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "retries": 0, "message.timeout.ms": 5000})
    out: list = []
    p.produce(topic, b"v", key=key, on_delivery=lambda err, msg: out.append(err))
    p.flush(WAIT)
    assert len(out) == 1
    return out[0]


def test_min_insync_replicas_refuses_acks_all(omnibus_broker):
    bootstrap = omnibus_broker.kafka_bootstrap
    _create(bootstrap, "strict", {"min.insync.replicas": "2"})
    err = _produce(bootstrap, "strict", b"k", "all")
    assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
    assert _produce(bootstrap, "strict", b"k", "1") is None  # acks=1 does not wait for the ISR
    kp = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0)
    with pytest.raises(NotEnoughReplicasError):
        kp.send("strict", b"v", key=b"k").get(timeout=WAIT)
    kp.close()


def test_compacted_topic_refuses_keyless_records(omnibus_broker):
    bootstrap = omnibus_broker.kafka_bootstrap
    _create(bootstrap, "table", {"cleanup.policy": "compact"})
    err = _produce(bootstrap, "table", None, "all")
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    assert _produce(bootstrap, "table", b"k", "all") is None
    kp = KafkaProducer(bootstrap_servers=bootstrap, retries=0, compression_type="gzip")
    with pytest.raises(InvalidRecordError) as e:
        kp.send("table", b"v").get(timeout=WAIT)
    assert "Compacted topic cannot accept message without key in topic partition table-0" in str(e.value)
    kp.send("table", b"v", key=b"k").get(timeout=WAIT)
    kp.close()


def test_delete_records_needs_the_delete_policy(omnibus_broker):
    from confluent_kafka import KafkaException, TopicPartition

    bootstrap = omnibus_broker.kafka_bootstrap
    _create(bootstrap, "kept", {"cleanup.policy": "compact"})
    assert _produce(bootstrap, "kept", b"k", "all") is None
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.delete_records([TopicPartition("kept", 0, 1)])[TopicPartition("kept", 0, 1)]
    with pytest.raises(KafkaException) as e:
        fut.result(WAIT)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION
