"""Kafka, first slice, with real clients: kafka-python and aiokafka produce and consume through Omnibus
(partitions assigned by the consumer; consumer groups are not built yet), plus raw-protocol checks with
the codec's test client for what clients cannot provoke."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as AioTP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from omnibus import SyncBroker
from omnibus.storage.records import Record, build_batch
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.connection import KafkaClientConnection


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b


def consume_all(boot: str, topic: str, partitions: int, *, expect: int, timeout: float = 10.0):
    c = KafkaConsumer(bootstrap_servers=boot, auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=500)
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    got, deadline = [], time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        got += list(c)
    c.close()
    return got


def test_kafka_python_produce_consume_keys_headers_gzip(broker):
    boot = broker.kafka_bootstrap
    admin = KafkaAdminClient(bootstrap_servers=boot)
    admin.create_topics([NewTopic("orders", 3, 1)])
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic("orders", 3, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=boot, acks="all", compression_type="gzip")
    for i in range(60):
        producer.send("orders", key=b"k%d" % i, value=b"v%d" % i, partition=i % 3, headers=[("n", b"%d" % i)],
                      timestamp_ms=1_700_000_000_000 + i)
    producer.flush()
    producer.close()
    got = consume_all(boot, "orders", 3, expect=60)
    assert len(got) == 60
    by_part = {p: [m for m in got if m.partition == p] for p in range(3)}
    for p, msgs in by_part.items():
        assert [m.offset for m in msgs] == list(range(20))  # offsets are dense per partition
        assert [m.value for m in msgs] == [b"v%d" % i for i in range(p, 60, 3)]
    m0 = by_part[0][0]
    assert (m0.key, m0.headers, m0.timestamp) == (b"k0", [("n", b"0")], 1_700_000_000_000)


def test_auto_create_seek_and_replay(broker):
    boot = broker.kafka_bootstrap
    producer = KafkaProducer(bootstrap_servers=boot, acks=1)
    for i in range(10):
        producer.send("auto", b"%d" % i).get(timeout=10)  # Metadata auto-creates the topic
    producer.close()
    c = KafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False, consumer_timeout_ms=1000)
    tp = TopicPartition("auto", 0)
    c.assign([tp])
    assert c.beginning_offsets([tp]) == {tp: 0} and c.end_offsets([tp]) == {tp: 10}
    c.seek(tp, 7)
    assert [m.value for m in c] == [b"7", b"8", b"9"]
    c.seek_to_beginning(tp)
    assert [m.value for m in c][:2] == [b"0", b"1"]  # replay
    c.close()


def test_aiokafka_roundtrip_and_long_poll(broker):
    boot = broker.kafka_bootstrap

    async def run():
        consumer = AIOKafkaConsumer(bootstrap_servers=boot, auto_offset_reset="earliest",
                                    enable_auto_commit=False, fetch_max_wait_ms=5000)
        producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all")
        await producer.start()
        await producer.send_and_wait("events", b"first")  # creates the topic
        await consumer.start()
        consumer.assign([AioTP("events", 0)])
        first = await asyncio.wait_for(consumer.getone(), 10)
        t0 = time.monotonic()
        later = asyncio.ensure_future(consumer.getone())
        await asyncio.sleep(0.3)
        await producer.send_and_wait("events", b"second", key=b"k")
        second = await asyncio.wait_for(later, 10)
        waited = time.monotonic() - t0
        await producer.stop()
        await consumer.stop()
        return first.value, second.value, second.key, waited

    first, second, key, waited = asyncio.run(run())
    assert (first, second, key) == (b"first", b"second", b"k")
    assert waited < 3  # the long-poll was woken by the append, not by its 5 s timer


def test_topics_and_data_survive_restart(tmp_path):
    with SyncBroker(tmp_path) as b:
        admin = KafkaAdminClient(bootstrap_servers=b.kafka_bootstrap)
        admin.create_topics([NewTopic("keep", 2, 1)])
        admin.close()
        p = KafkaProducer(bootstrap_servers=b.kafka_bootstrap, acks="all")
        for i in range(10):
            p.send("keep", b"%d" % i, partition=i % 2)
        p.flush()
        p.close()
    with SyncBroker(tmp_path) as b:
        got = consume_all(b.kafka_bootstrap, "keep", 2, expect=10)
        assert sorted(m.value for m in got) == sorted(b"%d" % i for i in range(10))


# -- raw protocol ------------------------------------------------------------------------------------

class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.client = KafkaClientConnection()

    def call(self, body, version):
        self.sock.sendall(self.client.send_request(body, version))
        while True:
            events = self.client.events()
            if events:
                return events[0].body
            data = self.sock.recv(65536)
            assert data, "the broker closed the connection"
            self.client.receive_data(data)

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def produce_body(topic, records, acks=-1):
    R = M.ProduceRequest
    return R(transactional_id=None, acks=acks, timeout_ms=5000, topic_data=[
        R.TopicProduceData(name=topic, partition_data=[R.PartitionProduceData(index=0, records=records)])])


def test_bad_crc_is_corrupt_message_and_idempotent_retries_are_deduplicated(broker):
    raw = Raw(broker.port("kafka"))
    raw.call(M.CreateTopicsRequest(topics=[M.CreateTopicsRequest.CreatableTopic(
        name="raw", num_partitions=1, replication_factor=1)], timeout_ms=1000), 4)
    good = build_batch([Record(None, b"x", (), 1)])
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    resp = raw.call(produce_body("raw", bytes(bad)), 9)
    assert resp.responses[0].partition_responses[0].error_code == E.CORRUPT_MESSAGE
    pid = raw.call(M.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=1000), 4)
    assert pid.error_code == 0 and pid.producer_id >= 0
    batch = build_batch([Record(None, b"once", (), 1)], producer_id=pid.producer_id, producer_epoch=0,
                        base_sequence=0)
    first = raw.call(produce_body("raw", batch), 9).responses[0].partition_responses[0]
    retry = raw.call(produce_body("raw", batch), 9).responses[0].partition_responses[0]
    assert first.error_code == retry.error_code == 0 and first.base_offset == retry.base_offset == 0
    gap = build_batch([Record(None, b"gap", (), 1)], producer_id=pid.producer_id, producer_epoch=0,
                      base_sequence=5)
    assert raw.call(produce_body("raw", gap), 9).responses[0].partition_responses[0].error_code == \
        E.OUT_OF_ORDER_SEQUENCE_NUMBER
    got = consume_all(broker.kafka_bootstrap, "raw", 1, expect=1, timeout=3)
    assert [m.value for m in got] == [b"once"]  # neither the corrupt batch nor the retry was stored


def test_malformed_requests_close_only_that_connection(broker):
    port = broker.port("kafka")
    for junk in (b"\x00\x00\x00\x08\x00\x00",  # truncated: the prefix says 8 bytes, 2 come, then EOF
                 b"\xff\xff\xff\xff",  # negative size
                 b"\x00\x00\x00\x0c\x03\xe7\x00\x00\x00\x00\x00\x01\xff\xff\x00\x00"):  # unknown api key 999
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(junk)
        if junk.startswith(b"\x00\x00\x00\x08"):
            s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""  # closed, no answer
        s.close()
    raw = Raw(port)  # the broker keeps serving
    versions = raw.call(M.ApiVersionsRequest(), 3)
    assert versions.error_code == 0 and any(k.api_key == M.PRODUCE for k in versions.api_keys)
