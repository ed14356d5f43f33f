"""Produce and consume with every compression codec each client supports: kafka-python and aiokafka with
none/gzip/snappy/lz4/zstd (python-snappy, lz4, zstandard and cramjam are in the test extra),
kafkajs 2.2.4 with the codecs it ships (none, gzip); confluent-kafka's five are in test_kafka_confluent.
Batches are stored verbatim, so what one client compressed another reads back: each kafka-python topic is
also read by confluent-kafka."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.helpers import run_node_script

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
#: Record batch attributes bits 0-2 (Kafka CompressionType ids).
CODEC_IDS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
N = 30


def stored_codecs(broker, topic):
    """The compression ids of the batches the broker stored for partition 0 of ``topic``."""
    def read():
        return {h.attributes & 7 for h, _ in broker.server.kafka.topics[topic].partition(0).batches(0)}
    return broker.call(read)


def expected(codec):
    name = codec or "none"
    return [(b"k%d" % i, (b"%s-%d-" % (name.encode(), i)) * 20, [("n", b"%d" % i)]) for i in range(N)]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_every_codec(omnibus_broker, codec):
    boot = omnibus_broker.kafka_bootstrap
    topic = f"kp-codec-{codec or 'none'}"
    p = KafkaProducer(bootstrap_servers=boot, acks="all", compression_type=codec, linger_ms=20)
    for key, value, headers in expected(codec):
        p.send(topic, key=key, value=value, headers=headers, partition=0)
    p.flush()
    p.close()
    c = KafkaConsumer(bootstrap_servers=boot, auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=500)
    c.assign([TopicPartition(topic, 0)])
    got, deadline = [], time.monotonic() + 10
    while len(got) < N and time.monotonic() < deadline:
        got += list(c)
    c.close()
    assert [(m.key, m.value, m.headers) for m in got] == expected(codec)
    assert [m.offset for m in got] == list(range(N))
    assert stored_codecs(omnibus_broker, topic) == {CODEC_IDS[codec]}

    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as CTP
    cc = Consumer({"bootstrap.servers": boot, "group.id": "codec-reader", "enable.auto.commit": False})
    cc.assign([CTP(topic, 0, OFFSET_BEGINNING)])
    seen, deadline = [], time.monotonic() + 10
    while len(seen) < N and time.monotonic() < deadline:
        seen += [m for m in cc.consume(N, 0.2) if m.error() is None]
    cc.close()
    assert [(m.key(), m.value()) for m in seen] == [(k, v) for k, v, _ in expected(codec)]


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_every_codec(omnibus_broker, codec):
    boot = omnibus_broker.kafka_bootstrap
    topic = f"aio-codec-{codec or 'none'}"

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=boot, acks="all", compression_type=codec, linger_ms=20)
        await p.start()
        try:
            batch = p.create_batch()
            for key, value, headers in expected(codec):
                assert batch.append(key=key, value=value, timestamp=None, headers=headers) is not None
            await (await p.send_batch(batch, topic, partition=0))
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=boot, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            got = []
            while len(got) < N:
                got.append(await asyncio.wait_for(c.getone(), 10))
        finally:
            await c.stop()
        return got

    got = asyncio.run(run())
    assert [(m.key, m.value, list(m.headers)) for m in got] == \
        [(k, v, [(hk, hv) for hk, hv in h]) for k, v, h in expected(codec)]
    assert [m.offset for m in got] == list(range(N))
    assert stored_codecs(omnibus_broker, topic) == {CODEC_IDS[codec]}


def test_kafkajs_codecs_it_ships(omnibus_broker):
    r = run_node_script("kafkajs_codecs.mjs", omnibus_broker.kafka_bootstrap, "kafkajs")
    for name in ("none", "gzip"):
        got = r["got"][f"kjs-codec-{name}"]
        assert got == [[f"k{i}", f"{name}-{i}-" * 20, f"{i}", i] for i in range(20)]
        assert stored_codecs(omnibus_broker, f"kjs-codec-{name}") == {CODEC_IDS[None if name == "none" else name]}
