"""The queue's recent cache and shared batches (core/queues.py): what a consumer that keeps up takes is
served from the ``Message`` objects just appended (no decoding), a backlog is still read from the log,
the cache is bounded per queue and per process, a fan-out appends one encoded batch to every queue, and
every sequence of operations delivers exactly what it delivers with the cache off."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnibus.core import queues as queues_mod
from omnibus.core.clock import ManualClock
from omnibus.core.messages import Message, batch_to_messages
from omnibus.core.queues import Queue, recent_bytes_total, shared_batch
from omnibus.storage import Log, LogConfig
from omnibus.storage.acks import QueueAcks

CONFIG = LogConfig(fsync="never", segment_bytes=4096, file_delete_delay_ms=0)


def open_queue(path, clock: ManualClock | None = None, **kw) -> Queue:
    clock = clock or ManualClock()
    log = Log.open(path, CONFIG, clock=clock.now_ms)
    return Queue("q", log, QueueAcks(log), clock, **kw)


def msgs(*bodies: str, **kw) -> list[Message]:
    return [Message("rk", b.encode(), exchange="ex", properties=b"\x00\x00", **kw) for b in bodies]


@pytest.fixture(autouse=True)
def own_budget(monkeypatch):
    """A process-wide byte count of our own, whatever other queues of this process hold."""
    monkeypatch.setattr(queues_mod, "_recent_total", [0])


@pytest.fixture
def decodes(monkeypatch):
    """Counts batch decodes done by queues."""
    n = [0]

    def counting(batch, *, validate=True):
        n[0] += 1
        return batch_to_messages(batch, validate=validate)

    monkeypatch.setattr(queues_mod, "batch_to_messages", counting)
    return n


def test_a_consumer_that_keeps_up_is_served_without_decoding(tmp_path, decodes):
    q = open_queue(tmp_path / "q")
    before = recent_bytes_total()
    for round_ in range(3):
        sent = msgs(*(f"{round_}-{i}" for i in range(5)))
        q.publish(sent)
        got = [q.deliver_next() for _ in range(5)]
        assert [d.message for d in got] == sent and all(d.message is s for d, s in zip(got, sent))
        assert all(d.message.timestamp_ms == q.clock.now_ms() for d in got)  # stamped, as in the log
        for d in got:
            q.ack(d.offset)
    assert decodes[0] == 0
    assert q.deliver_next() is None
    assert recent_bytes_total() > before  # the last append is kept until delivery moves past it
    q.close()
    assert recent_bytes_total() == before


def test_a_backlog_is_read_from_the_log(tmp_path, decodes):
    q = open_queue(tmp_path / "q")
    q.publish(msgs("a", "b"))
    assert q.deliver_next().message.body == b"a"  # from the recent cache
    q.publish(msgs("c"))  # kept too ("b" is still ready ahead of it)
    q.close()
    q = open_queue(tmp_path / "q")  # after a restart everything ready comes from the log
    q.publish(msgs("d"))  # behind a backlog: the backlog comes from the log, then "d" from the cache
    assert [bytes(q.deliver_next().message.body) for _ in range(3)] == [b"a", b"b", b"c"]
    assert decodes[0] >= 1
    n = decodes[0]
    assert q.deliver_next().message.body == b"d" and decodes[0] == n
    q.close()


def test_requeued_and_rejected_messages_read_the_same(tmp_path):
    q = open_queue(tmp_path / "q", arguments={"x-dead-letter-exchange": "dx"})
    q.publish(msgs("a", "b", "c"))
    a, b, c = (q.deliver_next() for _ in range(3))
    q.publish(msgs("d"))
    assert q.deliver_next().message.body == b"d"  # reading past the first append drops it from the cache
    q.reject(b.offset, requeue=True)
    again = q.deliver_next()
    assert (again.offset, bytes(again.message.body), again.redelivered, again.delivery_count) == (1, b"b", True, 2)
    dead = q.reject(c.offset, requeue=False)
    assert bytes(dead.message.body) == b"c"
    [(msg, reason)] = q.take_dead_letters()
    assert (bytes(msg.body), reason, msg.exchange) == (b"c", "rejected", "ex")
    q.close()


def test_messages_with_headers_are_read_back_from_the_log(tmp_path):
    q = open_queue(tmp_path / "q")
    q.publish([Message("rk", b"x", {"h": "1"}, exchange="ex")])
    d = q.deliver_next()
    assert d.message.headers == {"h": b"1"}  # as stored: header values read back as bytes
    q.close()


def test_the_cache_is_bounded(tmp_path, monkeypatch, decodes):
    monkeypatch.setattr(queues_mod, "RECENT_QUEUE_BYTES", 600)
    q = open_queue(tmp_path / "q")
    before = recent_bytes_total()
    for i in range(20):  # nobody consumes: the cache stops growing at its bound
        q.publish(msgs(f"{i:02d}" * 20))
    assert 0 < recent_bytes_total() - before <= 600
    assert [bytes(q.deliver_next().message.body) for _ in range(20)] == [b"%02d" % i * 20 for i in range(20)]
    assert decodes[0] >= 1  # what did not fit came from the log
    assert recent_bytes_total() == before  # delivery moved past every cached append
    monkeypatch.setattr(queues_mod, "RECENT_TOTAL_BYTES", before)  # no room left in the process
    q.publish(msgs("x"))
    assert recent_bytes_total() == before
    assert q.deliver_next().message.body == b"x"
    q.close()


def test_purge_drops_the_cache(tmp_path):
    q = open_queue(tmp_path / "q")
    before = recent_bytes_total()
    q.publish(msgs("a", "b"))
    assert recent_bytes_total() > before
    assert q.purge() == 2
    assert recent_bytes_total() == before
    q.publish(msgs("c"))
    assert q.deliver_next().message.body == b"c"
    q.close()


def test_a_shared_batch_is_appended_verbatim_to_every_queue(tmp_path, decodes):
    clock = ManualClock()
    queues = [open_queue(tmp_path / f"q{i}", clock) for i in range(3)]
    queues[1].publish(msgs("earlier"))  # a queue at another offset takes the same bytes
    queues[1].ack(queues[1].deliver_next().offset)
    sent = msgs("a", "b", "c")
    batch = shared_batch(sent, clock.now_ms())
    assert all(m.timestamp_ms == clock.now_ms() for m in sent)
    ranges = [q.publish(sent, batch) for q in queues]
    assert ranges == [range(0, 3), range(1, 4), range(0, 3)]
    for q in queues:
        assert [q.deliver_next().message for _ in range(3)] == sent
        stored = [m for _, m in batch_to_messages(next(iter(q.log.batches(ranges[queues.index(q)][0])))[1])]
        assert [bytes(m.body) for m in stored] == [b"a", b"b", b"c"]
        assert all(m.timestamp_ms == clock.now_ms() and m.exchange == "ex" for m in stored)
        q.close()


# Operations: ("pub", n) publish n messages; ("take",) deliver one; ("ack",) / ("requeue",) / ("dead",)
# the oldest in-flight message; ("restart",) close and reopen.
OPS = st.lists(st.one_of(
    st.tuples(st.just("pub"), st.integers(1, 4)),
    st.tuples(st.sampled_from(["take", "take", "ack", "requeue", "dead", "restart"])),
), max_size=40)


def run(ops, recent_bytes: int) -> list:
    saved = queues_mod.RECENT_QUEUE_BYTES
    queues_mod.RECENT_QUEUE_BYTES = recent_bytes
    out: list = []
    try:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "q"
            clock = ManualClock()
            q = open_queue(path, clock)
            n = 0
            for op in ops:
                if op[0] == "pub":
                    q.publish(msgs(*(str(n + i) for i in range(op[1]))))
                    n += op[1]
                elif op[0] == "take":
                    dl = q.deliver_next()
                    out.append(None if dl is None else (dl.offset, bytes(dl.message.body), dl.redelivered,
                                                        dl.delivery_count, dl.message.timestamp_ms))
                elif op[0] == "restart":
                    q.close()
                    q = open_queue(path, clock)
                else:
                    inflight = q.in_flight()
                    if inflight:
                        off = min(inflight)
                        if op[0] == "ack":
                            q.ack(off)
                        elif op[0] == "requeue":
                            q.requeue([off])
                        else:
                            out.append(("dead", bytes(q.reject(off, requeue=False).message.body)))
                clock.advance(1)
            out.append(("left", q.message_count, q.unacked_count))
            q.close()
    finally:
        queues_mod.RECENT_QUEUE_BYTES = saved
    return out


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_the_cache_never_changes_what_is_delivered(ops):
    assert run(ops, queues_mod.RECENT_QUEUE_BYTES) == run(ops, 0)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
PLAIN = st.builds(
    lambda rk, body, props, ex, dt: Message(rk, body, None, props, 1_700_000_000_000 + dt, ex),
    TEXT, st.one_of(st.binary(max_size=64), st.binary(min_size=4090, max_size=4200)),
    st.sampled_from([b"", b"\x00\x00", b"\x10\x00\x02", bytes(range(40))]), st.sampled_from(["", "ex", "é-x"]),
    st.sampled_from([0, 0, 0, 1, -5, 300_000]))


@settings(max_examples=150, deadline=None)
@given(st.lists(PLAIN, min_size=1, max_size=30))
def test_encode_plain_makes_the_bytes_messages_to_batch_makes(messages):
    from omnibus.core.messages import messages_to_batch
    from omnibus.core.queues import encode_plain

    assert bytes(encode_plain(messages)) == messages_to_batch(messages, now_ms=1)


def test_encode_plain_past_the_small_varints():
    from omnibus.core.messages import messages_to_batch
    from omnibus.core.queues import encode_plain

    messages = [Message(f"k{i % 3}", b"%d" % i, None, b"\x00\x00", 1_700_000_000_000, "x") for i in range(9000)]
    assert bytes(encode_plain(messages)) == messages_to_batch(messages, now_ms=1)


def test_a_restored_queue_goes_back_to_the_plain_path_once_its_recovered_messages_are_settled(tmp_path):
    """Recovered messages may carry their own expiry, so a queue that recovered some is timed; once none
    of them is ready or in flight any more it is not (no per-message expiry checks, no TTL timer)."""
    from omnibus.core.queues import HDR_EXPIRES

    clock = ManualClock()
    q = open_queue(tmp_path / "q", clock)
    q.publish(msgs("a", "b"))
    q.publish([Message("rk", b"c", {HDR_EXPIRES: str(clock.now_ms() + 1000)}, exchange="ex")])
    q.close()
    q = open_queue(tmp_path / "q", clock)
    assert q.timed
    a, b, c = (q.deliver_next() for _ in range(3))
    q.ack(a.offset)
    q.ack(b.offset)
    q.requeue([c.offset])  # a recovered message with its own expiry is ready again
    q.publish(msgs("new"))
    q.expire_head()
    assert q.timed and q.next_expiry() == clock.now_ms() + 1000
    clock.advance(1000)
    assert q.expire_head() == 1  # it expires at the head, with no consumer
    assert not q.timed and q.next_expiry() is None
    assert q.deliver_next().message.body == b"new"
    q.close()

    q = open_queue(tmp_path / "q2", clock, arguments={"x-message-ttl": 5000})
    q.publish(msgs("x"))
    q.close()
    q = open_queue(tmp_path / "q2", clock, arguments={"x-message-ttl": 5000})
    d = q.deliver_next()
    q.ack(d.offset)
    q.expire_head()
    assert q.timed  # its TTL keeps it timed
    q.close()
