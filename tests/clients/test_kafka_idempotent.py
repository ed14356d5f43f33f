"""Kafka idempotent producer (KIP-98): sequence checks, duplicates answered with their original offsets, fencing
by epoch, and producer state that survives a restart (from the clean-stop snapshot, and from a scan of the
log's batch headers when there is no snapshot).

Retries cannot be forced through a client library, so the sequence cases drive raw Produce requests built
with Omnibus's own wire codec (``KafkaClientConnection``) over a plain socket; confluent-kafka's idempotent
producer covers the client side.
"""

from __future__ import annotations

import socket
import time

import pytest

from omnibus.storage.meta import MetaStore
from omnibus.storage.records import Record, build_batch
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.connection import KafkaClientConnection


class RawKafka:
    """One blocking connection speaking Kafka through the codec."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.codec = KafkaClientConnection("raw-test")

    def call(self, body, version: int):
        self.sock.sendall(self.codec.send_request(body, version))
        while True:
            events = self.codec.events()
            if events:
                return events[0].body
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.codec.receive_data(data)

    def close(self) -> None:
        self.sock.close()

    # -- helpers --
    def create_topic(self, name: str, partitions: int = 1) -> None:
        R = M.CreateTopicsRequest
        body = R(topics=[R.CreatableTopic(name=name, num_partitions=partitions, replication_factor=1, assignments=[],
                                          configs=[])], timeout_ms=5000, validate_only=False)
        assert self.call(body, 4).topics[0].error_code == 0

    def init_pid(self, txn_id=None, timeout_ms=60000, version=1):
        r = self.call(M.InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=timeout_ms), version)
        return r.error_code, r.producer_id, r.producer_epoch

    def produce(self, topic: str, batch: bytes, partition: int = 0, txn_id=None):
        R = M.ProduceRequest
        body = R(transactional_id=txn_id, acks=-1, timeout_ms=5000, topic_data=[R.TopicProduceData(
            name=topic, partition_data=[R.PartitionProduceData(index=partition, records=batch)])])
        p = self.call(body, 8).responses[0].partition_responses[0]
        return p.error_code, p.base_offset

    def end_offset(self, topic: str, partition: int = 0) -> int:
        R = M.ListOffsetsRequest
        body = R(replica_id=-1, isolation_level=0, topics=[R.ListOffsetsTopic(name=topic, partitions=[
            R.ListOffsetsPartition(partition_index=partition, timestamp=-1)])])
        return self.call(body, 2).topics[0].partitions[0].offset


def batch(pid: int, epoch: int, seq: int, n: int, tag: str = "v", transactional: bool = False) -> bytes:
    return build_batch([Record(None, f"{tag}{seq + i}".encode()) for i in range(n)], producer_id=pid,
                       producer_epoch=epoch, base_sequence=seq, attributes=0x10 if transactional else 0)


def test_duplicates_gaps_and_epochs(omnibus_broker):
    k = RawKafka(omnibus_broker.kafka_bootstrap)
    k.create_topic("idem")
    code, pid, epoch = k.init_pid(version=0)
    assert code == 0 and pid >= 0 and epoch == 0
    assert k.produce("idem", batch(pid, 0, 0, 3)) == (0, 0)
    assert k.produce("idem", batch(pid, 0, 0, 3)) == (0, 0)        # retry: original offset, not appended
    assert k.produce("idem", batch(pid, 0, 3, 2)) == (0, 3)
    assert k.produce("idem", batch(pid, 0, 0, 3)) == (0, 0)        # an older batch of the last five
    assert k.end_offset("idem") == 5
    assert k.produce("idem", batch(pid, 0, 9, 1))[0] == E.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert k.produce("idem", batch(pid, 1, 4, 1))[0] == E.OUT_OF_ORDER_SEQUENCE_NUMBER  # new epoch starts at 0
    assert k.produce("idem", batch(pid, 1, 0, 1)) == (0, 5)
    assert k.produce("idem", batch(pid, 0, 5, 1))[0] == E.INVALID_PRODUCER_EPOCH
    # A client may not write control batches; a second producer id is independent.
    assert k.produce("idem", build_batch([Record(b"\0\0\0\1", b"x")], producer_id=-1, attributes=0x30))[0] \
        == E.INVALID_RECORD
    code, pid2, _ = k.init_pid(version=1)
    assert pid2 != pid and k.produce("idem", batch(pid2, 0, 0, 1)) == (0, 6)
    assert k.end_offset("idem") == 7
    k.close()


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "header-scan"])
def test_state_survives_restart(omnibus_broker_factory, tmp_path, snapshot):
    data = tmp_path / "data"
    b = omnibus_broker_factory(data_dir=data)
    k = RawKafka(b.kafka_bootstrap)
    k.create_topic("idem", partitions=2)
    _, pid, _ = k.init_pid()
    assert k.produce("idem", batch(pid, 0, 0, 3)) == (0, 0)
    assert k.produce("idem", batch(pid, 0, 3, 3)) == (0, 3)
    assert k.produce("idem", batch(pid, 0, 0, 2), partition=1) == (0, 0)
    k.close()
    b.stop()
    if not snapshot:  # as after a crash: no snapshot, state rebuilt from the log's batch headers
        with MetaStore(data / "meta.sqlite") as meta:
            assert meta.clear("kafka/producer-state") >= 1
    b = omnibus_broker_factory(data_dir=data)
    k = RawKafka(b.kafka_bootstrap)
    assert k.produce("idem", batch(pid, 0, 3, 3)) == (0, 3)            # retried after the restart
    assert k.produce("idem", batch(pid, 0, 0, 3)) == (0, 0)
    assert k.end_offset("idem") == 6
    assert k.produce("idem", batch(pid, 0, 7, 1))[0] == E.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert k.produce("idem", batch(pid, 0, 6, 1)) == (0, 6)
    assert k.produce("idem", batch(pid, 0, 0, 2), partition=1) == (0, 0)
    assert k.produce("idem", batch(pid, 0, 2, 1), partition=1) == (0, 2)
    k.close()


def test_confluent_idempotent_producer(omnibus_broker):
    ck = pytest.importorskip("confluent_kafka")
    boot = omnibus_broker.kafka_bootstrap
    errors: list = []
    p = ck.Producer({"bootstrap.servers": boot, "enable.idempotence": True, "linger.ms": 2, "error_cb": errors.append})
    for i in range(200):
        p.produce("idem-ck", str(i).encode(), partition=0)
        if i % 50 == 0:
            p.poll(0)
    assert p.flush(10) == 0
    c = ck.Consumer({"bootstrap.servers": boot, "group.id": "x", "enable.auto.commit": False,
                     "enable.partition.eof": True})
    c.assign([ck.TopicPartition("idem-ck", 0, 0)])
    values = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == ck.KafkaError._PARTITION_EOF:
                break
            continue
        values.append(int(m.value()))
    c.close()
    assert values == list(range(200))
    assert errors == []


def test_periodic_snapshot(omnibus_broker, monkeypatch):
    from omnibus.server import kafka_txn

    monkeypatch.setattr(kafka_txn, "SNAPSHOT_INTERVAL_S", 0.05)
    k = RawKafka(omnibus_broker.kafka_bootstrap)
    k.create_topic("snap")
    _, pid, _ = k.init_pid()
    assert k.produce("snap", batch(pid, 0, 0, 2)) == (0, 0)
    meta = omnibus_broker.server.meta
    deadline = time.monotonic() + 5
    while (raw := meta.get("kafka/producer-state", "logs/kafka/snap-0")) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw is not None
    from omnibus.core.transactions import PartitionProducers

    state = PartitionProducers.restore(raw)
    assert state.applied == 2 and state.check(pid, 0, 0, 1, False) == ("duplicate", (0, 1))
    k.close()


def test_recreated_topic_starts_with_fresh_producer_state(omnibus_broker):
    k = RawKafka(omnibus_broker.kafka_bootstrap)
    k.create_topic("again")
    _, pid, _ = k.init_pid()
    assert k.produce("again", batch(pid, 0, 0, 3)) == (0, 0)
    r = k.call(M.DeleteTopicsRequest(topic_names=["again"], timeout_ms=5000), 5)
    assert r.responses[0].error_code == 0
    k.create_topic("again")
    # Same producer, same sequences: a new partition, so this is appended, not taken for a duplicate.
    assert k.produce("again", batch(pid, 0, 0, 3)) == (0, 0)
    assert k.end_offset("again") == 3
    assert k.produce("again", batch(pid, 0, 0, 3)) == (0, 0)
    assert k.end_offset("again") == 3
    k.close()


def test_aiokafka_idempotent_producer(omnibus_broker):
    aiokafka = pytest.importorskip("aiokafka")
    import asyncio

    boot = omnibus_broker.kafka_bootstrap

    async def main():
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=boot, enable_idempotence=True)
        await p.start()
        try:
            offsets = [(await p.send_and_wait("idem-aio", str(i).encode(), partition=0)).offset for i in range(20)]
        finally:
            await p.stop()
        return offsets

    assert asyncio.run(main()) == list(range(20))
    k = RawKafka(boot)
    assert k.end_offset("idem-aio") == 20
    k.close()
