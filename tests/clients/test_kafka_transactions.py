"""Kafka transactions (KIP-98) with real clients: confluent-kafka (librdkafka) and aiokafka transactional
producers; read_committed consumers see committed records only, read_uncommitted ones see everything;
send_offsets_to_transaction makes offsets visible only on commit; a second producer with the same
transactional.id fences the first and aborts its transaction; the transaction timeout aborts; coordinator
errors; and the aborted-transaction index and open transactions survive a restart."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.clients.test_kafka_idempotent import RawKafka, batch
from omnibus.storage.meta import MetaStore
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402

_CLIENTS: list = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    for c in _CLIENTS:
        try:
            if isinstance(c, Consumer):
                c.close()
            else:
                c.purge()
                c.flush(0)
        except (RuntimeError, KafkaException):
            pass
    _CLIENTS.clear()


def producer(boot: str, txn_id: str, **conf) -> Producer:
    p = Producer({"bootstrap.servers": boot, "transactional.id": txn_id, "linger.ms": 1, **conf})
    _CLIENTS.append(p)
    return p


def read_all(boot: str, topic: str, isolation: str, partitions: int = 1, timeout: float = 10) -> list[bytes]:
    """Every record of ``topic`` up to each partition's end (EOF), as the isolation level shows them."""
    c = Consumer({"bootstrap.servers": boot, "group.id": "reader", "enable.auto.commit": False,
                  "isolation.level": isolation, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, eof = [], set()
    deadline = time.monotonic() + timeout
    while len(eof) < partitions and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
            continue
        out.append(m.value())
    c.close()
    assert len(eof) == partitions, f"no EOF on {topic} within {timeout}s"
    return out


def committed(boot: str, group: str, topic: str, partition: int = 0) -> int:
    """The group's committed offset (OffsetFetch through confluent-kafka); -1001 when there is none."""
    c = Consumer({"bootstrap.servers": boot, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(topic, partition)], timeout=10)
        return tp.offset
    finally:
        c.close()


def create(boot: str, topic: str, partitions: int = 1) -> None:
    k = RawKafka(boot)
    k.create_topic(topic, partitions)
    k.close()


def test_confluent_commit_and_abort(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "tx", 2)
    p = producer(boot, "t-commit")
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("tx", b"c1", partition=0)
    p.produce("tx", b"c2", partition=1)
    p.commit_transaction(10)
    p.begin_transaction()
    p.produce("tx", b"a1", partition=0)
    p.produce("tx", b"a2", partition=1)
    assert p.flush(10) == 0  # written before the abort (else librdkafka just drops them)
    p.abort_transaction(10)
    p.begin_transaction()
    p.produce("tx", b"c3", partition=0)
    p.commit_transaction(10)
    assert sorted(read_all(boot, "tx", "read_committed", 2)) == [b"c1", b"c2", b"c3"]
    assert sorted(read_all(boot, "tx", "read_uncommitted", 2)) == [b"a1", b"a2", b"c1", b"c2", b"c3"]


def test_read_committed_waits_for_commit(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "wait")
    p = producer(boot, "t-wait")
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("wait", b"pending")
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": boot, "group.id": "w", "enable.auto.commit": False,
                  "isolation.level": "read_committed", "fetch.wait.max.ms": 5000})
    _CLIENTS.append(c)
    c.assign([TopicPartition("wait", 0, 0)])
    assert c.poll(1.0) is None  # below the LSO there is nothing yet
    p.commit_transaction(10)
    t0 = time.monotonic()
    m = None
    while m is None and time.monotonic() - t0 < 10:
        m = c.poll(0.2)
    assert m is not None and not m.error() and m.value() == b"pending"
    assert time.monotonic() - t0 < 3  # the commit woke the long-poll (fetch.wait.max.ms is 5 s)


def test_send_offsets_to_transaction(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "src")
    create(boot, "dst")
    consumer = Consumer({"bootstrap.servers": boot, "group.id": "eos-group", "enable.auto.commit": False})
    _CLIENTS.append(consumer)
    p = producer(boot, "t-offsets")
    p.init_transactions(10)
    meta = consumer.consumer_group_metadata()
    p.begin_transaction()
    p.produce("dst", b"out-1")
    p.send_offsets_to_transaction([TopicPartition("src", 0, 7)], meta, 10)
    p.abort_transaction(10)
    assert committed(boot, "eos-group", "src") == ck.OFFSET_INVALID
    p.begin_transaction()
    p.produce("dst", b"out-2")
    p.send_offsets_to_transaction([TopicPartition("src", 0, 11)], meta, 10)
    p.commit_transaction(10)
    assert committed(boot, "eos-group", "src") == 11  # visible once EndTxn has answered
    assert read_all(boot, "dst", "read_committed") == [b"out-2"]


def test_second_producer_fences_the_first(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "fence")
    p1 = producer(boot, "t-fence")
    p1.init_transactions(10)
    p1.begin_transaction()
    p1.produce("fence", b"zombie")
    assert p1.flush(10) == 0
    p2 = producer(boot, "t-fence")
    p2.init_transactions(10)  # fences p1 and aborts its open transaction
    p2.begin_transaction()
    p2.produce("fence", b"live")
    p2.commit_transaction(10)
    with pytest.raises(KafkaException) as info:
        p1.commit_transaction(10)
    assert info.value.args[0].fatal()  # librdkafka: fenced by a newer instance
    assert read_all(boot, "fence", "read_committed") == [b"live"]
    assert read_all(boot, "fence", "read_uncommitted") == [b"zombie", b"live"]


def test_transaction_timeout_aborts(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "slow")
    p = producer(boot, "t-slow", **{"transaction.timeout.ms": 1000, "message.timeout.ms": 1000})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("slow", b"late")
    assert p.flush(10) == 0
    time.sleep(1.5)  # past transaction.timeout.ms: the coordinator aborts and bumps the epoch
    assert read_all(boot, "slow", "read_committed") == []
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    k = RawKafka(boot)
    R = M.FetchRequest
    body = R(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=1, topics=[R.FetchTopic(
        topic="slow", partitions=[R.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])],
        forgotten_topics_data=[])
    part = k.call(body, 11).responses[0].partitions[0]
    assert part.last_stable_offset == part.high_watermark == 2  # the record and the ABORT marker
    assert [(a.first_offset) for a in part.aborted_transactions] == [0]
    k.close()


def test_coordinator_errors(omnibus_broker):
    k = RawKafka(omnibus_broker.kafka_bootstrap)
    k.create_topic("errs")
    max_ms = omnibus_broker.server.settings.kafka.transaction_max_timeout_ms
    assert k.init_pid("t-err", max_ms + 1)[0] == E.INVALID_TRANSACTION_TIMEOUT
    assert k.init_pid("", 60000)[0] == E.INVALID_REQUEST
    code, pid, epoch = k.init_pid("t-err", 60000)
    assert code == 0
    end = lambda p, e, v=1: k.call(M.EndTxnRequest(transactional_id="t-err", producer_id=p, producer_epoch=e,
                                                   committed=True), v).error_code
    assert end(pid, epoch) == E.INVALID_TXN_STATE          # nothing open
    assert end(pid + 1, epoch) == E.INVALID_PRODUCER_ID_MAPPING
    # A transactional batch to a partition not added to the transaction.
    assert k.produce("errs", batch(pid, epoch, 0, 1, transactional=True), txn_id="t-err")[0] == E.INVALID_TXN_STATE
    R = M.AddPartitionsToTxnRequest
    add = R(v3_and_below_transactional_id="t-err", v3_and_below_producer_id=pid, v3_and_below_producer_epoch=epoch,
            v3_and_below_topics=[R.AddPartitionsToTxnTopic(name="errs", partitions=[0]),
                                 R.AddPartitionsToTxnTopic(name="nope", partitions=[0])])
    res = k.call(add, 1).results_by_topic_v3_and_below
    codes = {r.name: r.results_by_partition[0].partition_error_code for r in res}
    assert codes == {"errs": E.OPERATION_NOT_ATTEMPTED, "nope": E.UNKNOWN_TOPIC_OR_PARTITION}
    add.v3_and_below_topics = add.v3_and_below_topics[:1]
    assert k.call(add, 1).results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
    assert k.produce("errs", batch(pid, epoch, 0, 1, transactional=True), txn_id="t-err") == (0, 0)
    L = M.ListOffsetsRequest
    latest = lambda iso: k.call(L(replica_id=-1, isolation_level=iso, topics=[L.ListOffsetsTopic(
        name="errs", partitions=[L.ListOffsetsPartition(partition_index=0, timestamp=-1)])]), 2).topics[0].partitions[0].offset
    assert (latest(0), latest(1)) == (1, 0)  # read_committed's latest is the LSO, below the open transaction
    # A new InitProducerId fences this epoch: old versions hear INVALID_PRODUCER_EPOCH, new ones PRODUCER_FENCED.
    assert k.init_pid("t-err", 60000)[0] == E.CONCURRENT_TRANSACTIONS   # aborting the open transaction
    deadline = time.monotonic() + 5
    while (r := k.init_pid("t-err", 60000))[0] == E.CONCURRENT_TRANSACTIONS and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r[0] == 0 and r[1] == pid and r[2] == epoch + 2
    assert end(pid, epoch, 1) == E.INVALID_PRODUCER_EPOCH
    assert end(pid, epoch, 2) == E.PRODUCER_FENCED
    assert k.produce("errs", batch(pid, epoch, 1, 1, transactional=True), txn_id="t-err")[0] \
        == E.INVALID_PRODUCER_EPOCH
    k.close()


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "header-scan"])
def test_transactions_survive_restart(omnibus_broker_factory, tmp_path, snapshot):
    data = tmp_path / "data"
    b = omnibus_broker_factory(data_dir=data)
    boot = b.kafka_bootstrap
    create(boot, "persist")
    p = producer(boot, "t-persist")
    p.init_transactions(10)
    for value, commit in ((b"c1", True), (b"a1", False), (b"c2", True)):
        p.begin_transaction()
        p.produce("persist", value)
        assert p.flush(10) == 0
        p.commit_transaction(10) if commit else p.abort_transaction(10)
    p.begin_transaction()
    p.produce("persist", b"open")  # left open across the restart
    assert p.flush(10) == 0
    p.purge()
    _CLIENTS.remove(p)
    del p
    b.stop()
    if not snapshot:
        with MetaStore(data / "meta.sqlite") as meta:  # as after a crash: rebuilt from the log's headers
            assert meta.clear("kafka/producer-state") == 1
    b = omnibus_broker_factory(data_dir=data)
    boot = b.kafka_bootstrap
    assert read_all(boot, "persist", "read_committed") == [b"c1", b"c2"]
    # The same transactional.id comes back: its open transaction is aborted, then it carries on.
    p = producer(boot, "t-persist")
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("persist", b"c3")
    p.commit_transaction(10)
    assert read_all(boot, "persist", "read_committed") == [b"c1", b"c2", b"c3"]
    assert read_all(boot, "persist", "read_uncommitted") == [b"c1", b"a1", b"c2", b"open", b"c3"]


def test_aiokafka_transactions(omnibus_broker):
    aiokafka = pytest.importorskip("aiokafka")
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as ATP

    boot = omnibus_broker.kafka_bootstrap
    create(boot, "aio-tx")

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=boot, transactional_id="t-aio")
        await p.start()
        try:
            async with p.transaction():
                await p.send_and_wait("aio-tx", b"c1")
                await p.send_offsets_to_transaction({ATP("aio-tx", 0): 1}, "aio-group")
            await p.begin_transaction()
            await p.send_and_wait("aio-tx", b"a1")
            await p.abort_transaction()
            async with p.transaction():
                await p.send_and_wait("aio-tx", b"c2")
        finally:
            await p.stop()
        seen = {}
        for iso in ("read_committed", "read_uncommitted"):
            c = AIOKafkaConsumer(bootstrap_servers=boot, isolation_level=iso, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
            await c.start()
            try:
                c.assign([ATP("aio-tx", 0)])
                c.seek(ATP("aio-tx", 0), 0)
                got: list = []
                deadline = asyncio.get_running_loop().time() + 10
                want = 2 if iso == "read_committed" else 3
                while len(got) < want and asyncio.get_running_loop().time() < deadline:
                    batches = await c.getmany(timeout_ms=300)
                    for msgs in batches.values():
                        got.extend(m.value for m in msgs)
                seen[iso] = got
            finally:
                await c.stop()
        return seen

    seen = asyncio.run(main())
    assert seen == {"read_committed": [b"c1", b"c2"], "read_uncommitted": [b"c1", b"a1", b"c2"]}
    assert committed(boot, "aio-group", "aio-tx") == 1


def test_consume_transform_produce_with_a_group_member(omnibus_broker):
    """The exactly-once loop: a subscribed consumer (group member, generation >= 1) feeds a transactional
    producer whose offsets commit with the output (TxnOffsetCommit v3 checks the member and generation)."""
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "eos-in")
    create(boot, "eos-out")
    feed = Producer({"bootstrap.servers": boot})
    _CLIENTS.append(feed)
    for i in range(5):
        feed.produce("eos-in", str(i).encode())
    assert feed.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": boot, "group.id": "eos-loop", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    _CLIENTS.append(consumer)
    consumer.subscribe(["eos-in"])
    p = producer(boot, "t-eos-loop")
    p.init_transactions(10)
    seen: list = []
    deadline = time.monotonic() + 15
    while len(seen) < 5 and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is None or m.error():
            continue
        seen.append(m.value())
        p.begin_transaction()
        p.produce("eos-out", b"x" + m.value())
        p.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(),
                                      10)
        p.commit_transaction(10)
    assert seen == [b"0", b"1", b"2", b"3", b"4"]
    consumer.close()
    _CLIENTS.remove(consumer)
    assert committed(boot, "eos-loop", "eos-in") == 5
    assert read_all(boot, "eos-out", "read_committed") == [b"x0", b"x1", b"x2", b"x3", b"x4"]


def test_kafka_python_transactions(omnibus_broker):
    kafka = pytest.importorskip("kafka")
    boot = omnibus_broker.kafka_bootstrap
    create(boot, "kp-tx")
    p = kafka.KafkaProducer(bootstrap_servers=boot, transactional_id="t-kafka-python")
    p.init_transactions()
    p.begin_transaction()
    p.send("kp-tx", b"c1")
    p.commit_transaction()
    p.begin_transaction()
    p.send("kp-tx", b"a1")
    p.flush()
    p.abort_transaction()
    p.begin_transaction()
    p.send("kp-tx", b"c2")
    p.commit_transaction()
    p.close()
    seen = {}
    for iso in ("read_committed", "read_uncommitted"):
        c = kafka.KafkaConsumer(bootstrap_servers=boot, isolation_level=iso, enable_auto_commit=False,
                                auto_offset_reset="earliest", consumer_timeout_ms=1500)
        c.assign([kafka.TopicPartition("kp-tx", 0)])
        seen[iso] = [m.value for m in c]
        c.close()
    assert seen == {"read_committed": [b"c1", b"c2"], "read_uncommitted": [b"c1", b"a1", b"c2"]}
