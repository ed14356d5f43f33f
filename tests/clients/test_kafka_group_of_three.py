"""A consumer group of three members that rebalances as members join one after another and one leaves
mid-way: every produced message is processed exactly once. Once with confluent-kafka (librdkafka, the
members driven in turn by one thread), once with kafka-python (a thread per member).

Why exactly once is the right expectation: each member records a message as processed when ``consume``
returns it, commits what it processed every few batches, and commits the rest in its revocation callback
(eager protocol: every rebalance revokes every partition first, and ``close`` revokes before LeaveGroup).
So at every hand-over the committed offset of a partition is exactly one past the last message its old
owner processed, and the new owner starts there (OffsetFetch after SyncGroup). A duplicate means the
broker lost or refused a commit, or answered OffsetFetch with something older; a gap means it
answered with something newer or handed a partition to two members at once.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka import TopicPartition as KTP
from kafka.admin import KafkaAdminClient
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.structs import OffsetAndMetadata

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka import TopicPartition as TP  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "g3"
PARTITIONS = 6
PER_PARTITION = 100
#: Messages one ``consume`` call may return: small, so the joins and the leave land mid-stream.
BATCH = 10
#: Commit after this many processed batches (the rest is committed when partitions are revoked).
COMMIT_EVERY = 7
WAIT = 30.0
#: Bytes per partition per fetch: one or two of our batches.
FETCH_BYTES = 300
#: Time a kafka-python member spends "processing" one batch (its threads would otherwise drain the topic
#: before the others join).
WORK_S = 0.05


class Member:
    """One group member driven by the test's single thread (librdkafka runs its callbacks inside
    ``consume``/``close``)."""

    def __init__(self, name: str, boot: str, processed: list, errors: list) -> None:
        self.name = name
        self.processed = processed
        self.errors = errors
        self.assignment: list[int] = []
        self.pending: dict[int, int] = {}  # partition -> next offset, processed but not committed
        self.batches = 0
        self.rebalances = 0

        def error_cb(err: KafkaError) -> None:
            if err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                errors.append((name, err))

        self.c = Consumer({"bootstrap.servers": boot, "group.id": "group-of-three", "client.id": name,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False,
                           "partition.assignment.strategy": "range", "session.timeout.ms": 6000,
                           "heartbeat.interval.ms": 100, "error_cb": error_cb,
                           # small fetches: the partitions progress together (one fetch would otherwise
                           # bring a whole partition), so every hand-over moves unprocessed messages
                           "max.partition.fetch.bytes": FETCH_BYTES, "fetch.max.bytes": 6 * FETCH_BYTES,
                           "message.max.bytes": 1000})
        self.c.subscribe([TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, parts) -> None:
        self.assignment = sorted(tp.partition for tp in parts)
        self.rebalances += 1

    def _on_revoke(self, consumer, parts) -> None:
        self.commit()  # the clean hand-over: everything processed is committed before the rejoin
        self.assignment = []

    def commit(self) -> None:
        if not self.pending:
            return
        offsets = [TP(TOPIC, p, o) for p, o in sorted(self.pending.items())]
        try:
            result = self.c.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            self.errors.append((self.name, "commit", e))
            return
        bad = [tp for tp in result if tp.error is not None]
        if bad:
            self.errors.append((self.name, "commit", bad))
        self.pending.clear()

    def step(self) -> int:
        """One consume call: process (record) what it returns; commit every few batches."""
        msgs = self.c.consume(BATCH, 0.05)
        n = 0
        for m in msgs:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append((self.name, m.error()))
                continue
            self.processed.append((m.value(), self.name, m.partition(), m.offset()))
            self.pending[m.partition()] = m.offset() + 1
            n += 1
        if n:
            self.batches += 1
            if self.batches % COMMIT_EVERY == 0:
                self.commit()
        return n


def by(processed: list, name: str) -> int:
    """How many of the processed messages member ``name`` processed."""
    return sum(1 for x in list(processed) if x[1] == name)


def run_until(members, done, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: "
                                 f"{[(m.name, m.assignment, m.batches) for m in members]}")
        for m in members:
            m.step()


def produce_small_batches(boot: str, topic: str) -> list[bytes]:
    """PARTITIONS x PER_PARTITION records in batches of about BATCH records, so that small fetches move
    every partition forward a little at a time (the broker hands out whole batches)."""
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
    p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 0, "batch.num.messages": BATCH})
    produced = []
    for i in range(PARTITIONS * PER_PARTITION):
        produced.append(b"m%04d" % i)
        p.produce(topic, produced[-1], partition=i % PARTITIONS)
        if i % BATCH == BATCH - 1:
            p.flush(10)
    assert p.flush(10) == 0
    return produced


def check_exactly_once(processed: list, produced: list, b_parts: list, at_leave: int) -> None:
    values = [v for v, *_ in processed]
    dups = sorted({v for v in values if values.count(v) > 1})
    assert dups == [], [x for x in processed if x[0] in dups[:3]]
    assert sorted(values) == sorted(produced)
    assert {name for _, name, _, _ in processed} == {"a", "b", "c"}
    assert any(part in b_parts for _, name, part, _ in processed[at_leave:] if name != "b"), \
        "the leave was not mid-way: b's partitions had nothing left"


def test_group_of_three_join_leave_exactly_once(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    produced = produce_small_batches(boot, TOPIC)
    processed: list = []
    errors: list = []
    members: list[Member] = []
    try:
        a = Member("a", boot, processed, errors)
        members.append(a)
        run_until([a], lambda: len(processed) >= 100 and len(a.assignment) == PARTITIONS, "a alone")

        b = Member("b", boot, processed, errors)  # joins: a gives up half
        members.append(b)
        run_until([a, b], lambda: b.assignment and a.assignment and by(processed, "b") and len(processed) >= 200,
                  "a and b")

        c = Member("c", boot, processed, errors)  # joins: two partitions each
        members.append(c)
        run_until([a, b, c], lambda: all(len(m.assignment) == 2 for m in (a, b, c)) and by(processed, "c"),
                  "a, b and c")
        assert sorted(a.assignment + b.assignment + c.assignment) == list(range(PARTITIONS))

        b_parts, at_leave = b.assignment, len(processed)
        members.remove(b)
        b.c.close()  # leaves mid-way: revokes (commits) and sends LeaveGroup; a and c share its partitions
        run_until([a, c], lambda: len(a.assignment) == len(c.assignment) == 3, "a and c after b left")
        run_until([a, c], lambda: len(processed) >= len(produced), "the rest")
        for m in (a, c):  # nothing more arrives
            m.step()
            m.commit()
        assert errors == []
        check_exactly_once(processed, produced, b_parts, at_leave)
        assert a.rebalances >= 4 and c.rebalances >= 2  # a: alone, +b, +c, -b
        committed = a.c.committed([TP(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in committed] == [(p, PER_PARTITION) for p in range(PARTITIONS)]
    finally:
        for m in members:
            m.c.close()
    assert errors == []


# -- kafka-python: one thread per member ----------------------------------------------------------------

class KpMember(threading.Thread, ConsumerRebalanceListener):
    """A kafka-python member in its own thread: polls, records, commits every few batches and in
    ``on_partitions_revoked`` (kafka-python 3 also calls it from ``close``, before LeaveGroup). A sync
    listener runs on kafka-python's IO thread, where a blocking commit is refused, so it commits with
    ``commit_async``: the OffsetCommit goes out on the coordinator connection ahead of the JoinGroup (or
    LeaveGroup), and the broker handles a connection's requests in order."""

    def __init__(self, name: str, boot: str, topic: str, processed: list, lock: threading.Lock,
                 errors: list) -> None:
        threading.Thread.__init__(self, name=f"member-{name}", daemon=True)
        self.member, self.boot, self.topic = name, boot, topic
        self.processed, self.lock, self.errors = processed, lock, errors
        self.assignment: list[int] = []
        self.pending: dict[int, int] = {}
        self.batches = 0
        self.stopping = threading.Event()
        self.c: KafkaConsumer | None = None

    def on_partitions_revoked(self, revoked) -> None:
        self.commit(wait=False)
        self.assignment = []

    def on_partitions_assigned(self, assigned) -> None:
        self.assignment = sorted(tp.partition for tp in assigned)

    def commit(self, wait: bool = True) -> None:
        if not self.pending:
            return
        offsets = {KTP(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in self.pending.items()}
        self.pending.clear()
        try:
            if wait:
                self.c.commit(offsets)
            else:
                self.c.commit_async(offsets, callback=self._committed)
        except Exception as e:  # noqa: BLE001 - recorded, the test fails on it
            self.errors.append((self.member, "commit", repr(e)))

    def _committed(self, offsets, result) -> None:
        if isinstance(result, Exception):
            self.errors.append((self.member, "commit_async", repr(result)))

    def run(self) -> None:
        try:
            self.c = KafkaConsumer(bootstrap_servers=self.boot, group_id="kp-group-of-three", client_id=self.member,
                                   auto_offset_reset="earliest", enable_auto_commit=False,
                                   session_timeout_ms=6000, heartbeat_interval_ms=100,
                                   max_partition_fetch_bytes=FETCH_BYTES,
                                   partition_assignment_strategy=[RangePartitionAssignor])
            self.c.subscribe([self.topic], listener=self)
            while not self.stopping.is_set():
                n = 0
                for tp, msgs in self.c.poll(timeout_ms=500, max_records=BATCH).items():
                    with self.lock:
                        self.processed += [(m.value, self.member, tp.partition, m.offset) for m in msgs]
                    self.pending[tp.partition] = msgs[-1].offset + 1
                    n += len(msgs)
                if n:
                    self.batches += 1
                    if self.batches % COMMIT_EVERY == 0:
                        self.commit()
                    time.sleep(WORK_S)  # the processing: keeps the joins and the leave mid-stream
            self.c.close(autocommit=False)  # revokes (our listener commits), then LeaveGroup
        except Exception as e:  # noqa: BLE001
            self.errors.append((self.member, repr(e)))


def test_kafka_python_group_of_three_join_leave_exactly_once(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    topic = "kp-g3"
    produced = produce_small_batches(boot, topic)
    processed: list = []
    lock = threading.Lock()
    errors: list = []
    members: list[KpMember] = []

    def wait(what, done):
        deadline = time.monotonic() + WAIT
        while not done():
            assert not errors, errors
            assert time.monotonic() < deadline, f"timed out waiting for {what}: " \
                f"{[(m.member, m.assignment, m.batches) for m in members]} processed {len(processed)}"
            time.sleep(0.01)

    def join(name):
        m = KpMember(name, boot, topic, processed, lock, errors)
        members.append(m)
        m.start()
        return m

    try:
        a = join("a")
        wait("a alone", lambda: len(processed) >= 100 and len(a.assignment) == PARTITIONS)
        b = join("b")
        wait("a and b", lambda: b.assignment and a.assignment and by(processed, "b") and len(processed) >= 200)
        c = join("c")
        wait("a, b and c", lambda: all(len(m.assignment) == 2 for m in (a, b, c)) and by(processed, "c"))
        b_parts, at_leave = b.assignment, len(processed)
        b.stopping.set()  # leaves mid-way
        b.join(WAIT)
        wait("a and c after b left", lambda: len(a.assignment) == len(c.assignment) == 3)
        wait("the rest", lambda: len(processed) >= len(produced))
        time.sleep(0.3)  # nothing more may arrive
    finally:
        for m in members:
            m.stopping.set()
        for m in members:
            m.join(WAIT)
    assert errors == []
    check_exactly_once(processed, produced, b_parts, at_leave)
    admin = KafkaAdminClient(bootstrap_servers=boot)
    offsets = admin.list_group_offsets(["kp-group-of-three"])["kp-group-of-three"]
    assert sorted((tp.partition, om.offset) for tp, om in offsets.items()) == \
        [(p, PER_PARTITION) for p in range(PARTITIONS)]
    admin.close()


# -- the broker side of a clean hand-over, on the wire ---------------------------------------------------

def test_a_request_sees_what_earlier_requests_on_its_connection_did(omnibus_broker):
    """Kafka handles one request per connection at a time, so a request sees the effects of the ones sent
    before it on the same connection: an OffsetFetch (or the JoinGroup of a rebalance) pipelined right
    behind an OffsetCommit sees the commit, though the commit is answered only once it is durable."""
    import socket

    from omnibus.wire.kafka import messages as M
    from omnibus.wire.kafka.connection import KafkaClientConnection

    boot = omnibus_broker.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic("seen", 1, 1)])["seen"].result(10)
    C, F = M.OffsetCommitRequest, M.OffsetFetchRequest
    client = KafkaClientConnection()
    sock = socket.create_connection(("127.0.0.1", omnibus_broker.port("kafka")), timeout=5)
    try:
        for offset in (5, 9, 12):  # each round: commit and fetch sent together, answers read after
            commit = C(group_id="pipelined", generation_id_or_member_epoch=-1, member_id="", topics=[
                C.OffsetCommitRequestTopic(name="seen", partitions=[C.OffsetCommitRequestPartition(
                    partition_index=0, committed_offset=offset, committed_metadata="")])])
            fetch = F(group_id="pipelined", topics=[F.OffsetFetchRequestTopic(name="seen", partition_indexes=[0])])
            sock.sendall(client.send_request(commit, 8) + client.send_request(fetch, 7))
            answers: list = []
            while len(answers) < 2:
                data = sock.recv(65536)
                assert data, "the broker closed the connection"
                client.receive_data(data)
                answers += client.events()
            committed, fetched = (a.body for a in answers)
            assert committed.topics[0].partitions[0].error_code == 0
            part = fetched.topics[0].partitions[0]
            assert (part.error_code, part.committed_offset) == (0, offset)
    finally:
        sock.close()
