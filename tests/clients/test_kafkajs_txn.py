"""kafkajs 2.2.4 idempotent producer (InitProducerId v0/v1, no producer id/epoch fields) and transactional
producer (commit with sendOffsets, abort, fencing by a second producer), read back with confluent-kafka at
both isolation levels."""

from __future__ import annotations

from tests.clients.test_kafka_transactions import committed, create, read_all
from tests.helpers import run_node_script


def test_kafkajs_idempotent_producer(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "kjs-idem")
    result = run_node_script("kafkajs_idempotent.mjs", boot, "kafkajs")
    assert result["offsets"] == [0, 10, 20, 30, 40]
    assert read_all(boot, "kjs-idem", "read_uncommitted") == [f"m{i}".encode() for i in range(50)]


def test_kafkajs_transactions(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "kjs-tx")
    result = run_node_script("kafkajs_txn.mjs", boot, "kafkajs")
    assert result["fenced"] is not None  # the zombie's commit failed
    assert read_all(boot, "kjs-tx", "read_committed") == [b"c1", b"c2", b"c3", b"c4"]
    assert read_all(boot, "kjs-tx", "read_uncommitted") == [b"c1", b"c2", b"a1", b"c3", b"zombie", b"c4"]
    assert committed(boot, "kjs-group", "kjs-tx") == 2
