"""A consumer group of three confluent-kafka (librdkafka) members that rebalances as members join one
after another and one leaves mid-way: every produced message is processed exactly once.

Why exactly once is the right expectation: each member records a message as processed when ``consume``
returns it, commits what it processed every few batches, and commits the rest in its revocation callback
(eager protocol: every rebalance revokes every partition first, and ``close`` revokes before LeaveGroup).
So at every hand-over the committed offset of a partition is exactly one past the last message its old
owner processed, and the new owner starts there (OffsetFetch after SyncGroup). A duplicate means the
broker lost or refused a commit, or answered OffsetFetch with something older; a gap means it
answered with something newer or handed a partition to two members at once.
"""

from __future__ import annotations

import time

import pytest

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
                           "heartbeat.interval.ms": 100, "error_cb": error_cb})
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


def run_until(members, done, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: "
                                 f"{[(m.name, m.assignment, m.batches) for m in members]}")
        for m in members:
            m.step()


def test_group_of_three_join_leave_exactly_once(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(10)
    p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5})
    produced = []
    for i in range(PARTITIONS * PER_PARTITION):
        value = b"m%04d" % i
        p.produce(TOPIC, value, partition=i % PARTITIONS)
        produced.append(value)
    assert p.flush(10) == 0

    processed: list = []
    errors: list = []
    a = Member("a", boot, processed, errors)
    run_until([a], lambda: len(processed) >= 100 and len(a.assignment) == PARTITIONS, "a alone")

    b = Member("b", boot, processed, errors)  # joins: a gives up half
    run_until([a, b], lambda: b.assignment and a.assignment and len(processed) >= 200, "a and b")

    c = Member("c", boot, processed, errors)  # joins: two partitions each
    run_until([a, b, c], lambda: all(len(m.assignment) == 2 for m in (a, b, c)) and len(processed) >= 300,
              "a, b and c")
    assert sorted(a.assignment + b.assignment + c.assignment) == list(range(PARTITIONS))

    b.c.close()  # leaves mid-way: revokes (commits) and sends LeaveGroup; a and c share its partitions
    run_until([a, c], lambda: len(a.assignment) == len(c.assignment) == 3, "a and c after b left")
    assert len(processed) < len(produced), "the leave was not mid-way"
    run_until([a, c], lambda: len(processed) >= len(produced), "the rest")
    for m in (a, c):  # nothing more arrives
        m.step()
        m.commit()

    values = [v for v, *_ in processed]
    dups = sorted({v for v in values if values.count(v) > 1})
    assert dups == [], [x for x in processed if x[0] in dups[:3]]
    assert sorted(values) == sorted(produced)
    assert {name for _, name, _, _ in processed} == {"a", "b", "c"}
    assert a.rebalances >= 4 and c.rebalances >= 2  # a: alone, +b, +c, -b
    committed = a.c.committed([TP(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    assert [(tp.partition, tp.offset) for tp in committed] == [(p, PER_PARTITION) for p in range(PARTITIONS)]
    a.c.close()
    c.c.close()
    assert errors == []
