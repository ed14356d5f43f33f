"""Kafka, first slice, with confluent-kafka (librdkafka, the strictest client): produce with every
compression codec librdkafka ships, keys, headers, timestamps and delivery reports; consumers that
``assign()`` partitions at explicit offsets (no consumer groups yet: librdkafka needs a ``group.id`` to
build a consumer, so one is set, but ``subscribe()`` is never called and nothing is committed);
``list_topics()`` metadata; AdminClient CreateTopics.

librdkafka reports protocol trouble through ``error_cb`` rather than exceptions, so every client here
collects its errors and each test asserts there were none (disconnects at broker shutdown excepted).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING, OFFSET_END, TIMESTAMP_CREATE_TIME, Consumer, KafkaError, KafkaException, Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from omnibus import SyncBroker  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TS0 = 1_700_000_000_000


#: librdkafka logs through Python logging (not stderr); clients made by a test, closed before its broker stops.
LOG = logging.getLogger("librdkafka")
_CLIENTS: list = []


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        try:
            yield b
        finally:
            for c in _CLIENTS:
                if isinstance(c, Consumer):
                    try:
                        c.close()
                    except RuntimeError:  # already closed
                        pass
                elif isinstance(c, Producer):
                    c.purge()
                    c.flush(0)
            _CLIENTS.clear()
            gc.collect()


def admin_client(boot: str, errors: "Errors") -> AdminClient:
    a = AdminClient({"bootstrap.servers": boot, "error_cb": errors, "logger": LOG})
    _CLIENTS.append(a)
    return a


class Errors(list):
    """An ``error_cb`` that keeps what librdkafka reports."""

    def __call__(self, err: KafkaError) -> None:
        self.append(err)


def producer(boot: str, errors: Errors, **conf: Any) -> Producer:
    p = Producer({"bootstrap.servers": boot, "error_cb": errors, "logger": LOG, "linger.ms": 5,
                  "message.timeout.ms": 10000, **conf})
    _CLIENTS.append(p)
    return p


def consumer(boot: str, errors: Errors, **conf: Any) -> Consumer:
    # group.id only because librdkafka requires one; subscribe() is never called, nothing is committed.
    c = Consumer({"bootstrap.servers": boot, "group.id": "assign-only", "enable.auto.commit": False,
                  "enable.auto.offset.store": False, "error_cb": errors, "logger": LOG, **conf})
    _CLIENTS.append(c)
    return c


def poll_n(c: Consumer, n: int, timeout: float = 15.0) -> list:
    """Poll until ``n`` messages arrived (failing on a message error) or ``timeout`` passed."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m)
    return got


def assert_quiet(c: Consumer, seconds: float = 0.6) -> None:
    """No message arrives for ``seconds`` (partition EOF events are not messages)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = c.poll(0.1)
        assert m is None or (m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF), m


def real(errors: Errors) -> list:
    # Transport errors at broker shutdown are not protocol errors.
    return [e for e in errors if e.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)]


@pytest.mark.parametrize("codec", CODECS)
def test_produce_every_codec_keys_headers_timestamps_delivery_reports(broker, codec):
    boot = broker.kafka_bootstrap
    errors = Errors()
    topic = f"codec-{codec}"
    p = producer(boot, errors, **{"compression.type": codec, "acks": "all", "batch.num.messages": 50})
    reports: list = []
    n = 300
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=(b"value-%d-" % i) * 20, headers=[("n", b"%d" % i), ("c", codec)],
                  timestamp=TS0 + i, on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))
    assert p.flush(15) == 0
    assert [r[0] for r in reports] == [None] * n
    assert sorted(r[2] for r in reports) == list(range(n))  # one auto-created partition, dense offsets
    assert {r[1] for r in reports} == {0}

    c = consumer(boot, errors)
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = poll_n(c, n)
    c.close()
    assert [m.offset() for m in got] == list(range(n))
    for i, m in enumerate(got):
        assert m.key() == b"k%d" % i
        assert m.value() == (b"value-%d-" % i) * 20
        assert m.headers() == [("n", b"%d" % i), ("c", codec.encode())]
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, TS0 + i)
        assert m.topic() == topic and m.partition() == 0
    assert real(errors) == []


def test_assign_offset_beginning_end_and_number(broker):
    boot = broker.kafka_bootstrap
    errors = Errors()
    admin = admin_client(boot, errors)
    admin.create_topics([NewTopic("offsets", 2, 1)])["offsets"].result(10)
    p = producer(boot, errors, acks="1")
    for i in range(40):
        p.produce("offsets", value=b"a%d" % i, partition=i % 2)
    assert p.flush(10) == 0

    begin = consumer(boot, errors)
    begin.assign([TopicPartition("offsets", 0, OFFSET_BEGINNING), TopicPartition("offsets", 1, OFFSET_BEGINNING)])
    got = poll_n(begin, 40)
    assert len(got) == 40
    for part in (0, 1):
        msgs = [m for m in got if m.partition() == part]
        assert [m.offset() for m in msgs] == list(range(20))
        assert [m.value() for m in msgs] == [b"a%d" % i for i in range(part, 40, 2)]

    numbered = consumer(boot, errors)
    numbered.assign([TopicPartition("offsets", 1, 15)])
    got = poll_n(numbered, 5)
    assert [(m.offset(), m.value()) for m in got] == [(o, b"a%d" % (2 * o + 1)) for o in range(15, 20)]

    end = consumer(boot, errors)
    end.assign([TopicPartition("offsets", 0, OFFSET_END)])
    assert_quiet(end)  # nothing old arrives; only what is produced after the assignment
    for i in range(40, 46):
        p.produce("offsets", value=b"a%d" % i, partition=0)
    assert p.flush(10) == 0
    got = poll_n(end, 6)
    assert [(m.offset(), m.value()) for m in got] == [(20 + i, b"a%d" % (40 + i)) for i in range(6)]
    # The earlier consumers see the new records too (long-poll fetches woken by the append).
    got = poll_n(begin, 6)
    assert [m.value() for m in got] == [b"a%d" % i for i in range(40, 46)]
    assert_quiet(numbered)

    lo, hi = end.get_watermark_offsets(TopicPartition("offsets", 0), timeout=5)
    assert (lo, hi) == (0, 26)
    # offsets_for_times -> ListOffsets with a timestamp
    found = end.offsets_for_times([TopicPartition("offsets", 1, 0)], timeout=5)
    assert found[0].offset == 0
    for c in (begin, numbered, end):
        c.close()
    assert real(errors) == []


def test_assign_out_of_range_offset_resets(broker):
    boot = broker.kafka_bootstrap
    errors = Errors()
    p = producer(boot, errors)
    for i in range(10):
        p.produce("oor", value=b"%d" % i)
    assert p.flush(10) == 0
    c = consumer(boot, errors, **{"auto.offset.reset": "earliest"})
    c.assign([TopicPartition("oor", 0, 500)])  # beyond the end: OFFSET_OUT_OF_RANGE, then reset
    got = poll_n(c, 10)
    c.close()
    assert [m.offset() for m in got] == list(range(10))
    assert real(errors) == []


def test_many_records_across_fetches(broker):
    """Enough data that the consumer needs many fetches, some starting inside a batch."""
    boot = broker.kafka_bootstrap
    errors = Errors()
    p = producer(boot, errors, **{"compression.type": "lz4", "acks": "all"})
    n = 20000
    payload = b"x" * 200
    for i in range(n):
        p.produce("bulk", value=payload + b"%d" % i)
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    c = consumer(boot, errors, **{"fetch.max.bytes": 1_048_576, "message.max.bytes": 1_000_000,
                                           "max.partition.fetch.bytes": 65536})
    c.assign([TopicPartition("bulk", 0, 7777)])
    got = poll_n(c, n - 7777, timeout=30)
    c.close()
    assert len(got) == n - 7777
    assert got[0].offset() == 7777 and got[-1].offset() == n - 1
    assert all(m.value() == payload + b"%d" % m.offset() for m in got)
    assert real(errors) == []


def test_idempotent_producer(broker):
    boot = broker.kafka_bootstrap
    errors = Errors()
    p = producer(boot, errors, **{"enable.idempotence": True, "compression.type": "zstd"})
    reports: list = []
    for i in range(500):
        p.produce("idem", value=b"%d" % i, on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert p.flush(15) == 0
    assert [r[0] for r in reports] == [None] * 500
    assert [r[1] for r in reports] == list(range(500))
    assert real(errors) == []


def test_list_topics_metadata(broker):
    boot = broker.kafka_bootstrap
    host, port = boot.rsplit(":", 1)
    errors = Errors()
    admin = admin_client(boot, errors)
    for f in admin.create_topics([NewTopic("meta-a", 3, 1), NewTopic("meta-b", 1, 1)]).values():
        f.result(10)
    md = admin.list_topics(timeout=10)
    assert md.cluster_id
    assert md.controller_id == 0
    assert {b.id: (b.host, b.port) for b in md.brokers.values()} == {0: (host, int(port))}
    assert {"meta-a", "meta-b"} <= set(md.topics)
    a = md.topics["meta-a"]
    assert a.error is None
    assert sorted(a.partitions) == [0, 1, 2]
    for pm in a.partitions.values():
        assert (pm.leader, pm.replicas, pm.isrs, pm.error) == (0, [0], [0], None)
    # One topic only
    one = admin.list_topics("meta-b", timeout=10)
    assert list(one.topics) == ["meta-b"] and len(one.topics["meta-b"].partitions) == 1

    # A consumer's metadata requests do not auto-create the topics it assigns (a producer's do).
    c = consumer(boot, errors)
    c.assign([TopicPartition("ghost", 0, OFFSET_BEGINNING)])
    c.poll(1.0)
    c.close()
    assert "ghost" not in admin.list_topics(timeout=10).topics
    p = producer(boot, errors)
    p.produce("made-by-producer", value=b"x")
    assert p.flush(10) == 0
    assert "made-by-producer" in admin.list_topics(timeout=10).topics
    assert real(errors) == []


def test_admin_create_topics(broker):
    boot = broker.kafka_bootstrap
    errors = Errors()
    admin = admin_client(boot, errors)
    fs = admin.create_topics([NewTopic("adm", 4, 1, config={"retention.ms": "60000"})])
    assert fs["adm"].result(10) is None
    fs = admin.create_topics([NewTopic("adm", 4, 1)])
    with pytest.raises(KafkaException) as exc:
        fs["adm"].result(10)
    assert exc.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    fs = admin.create_topics([NewTopic("bad-rf", 1, 3)])
    with pytest.raises(KafkaException) as exc:
        fs["bad-rf"].result(10)
    assert exc.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    # validate_only creates nothing
    admin.create_topics([NewTopic("dry", 1, 1)], validate_only=True)["dry"].result(10)
    md = admin.list_topics(timeout=10)
    assert len(md.topics["adm"].partitions) == 4 and "dry" not in md.topics
    # The new topic's partitions take writes at once.
    p = producer(boot, errors, acks="all")
    reports: list = []
    for part in range(4):
        p.produce("adm", value=b"p%d" % part, partition=part, on_delivery=lambda e, m: reports.append((e, m.partition())))
    assert p.flush(10) == 0
    assert sorted(reports, key=lambda r: r[1]) == [(None, i) for i in range(4)]
    assert real(errors) == []
