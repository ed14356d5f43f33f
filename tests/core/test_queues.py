"""Queues over logs: delivery order, requeue position, dead-lettering, restart, purge, collection."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnibus.core import queues as queues_mod
from omnibus.core.clock import ManualClock
from omnibus.core.messages import Message
from omnibus.core.queues import Queue
from omnibus.storage import Log, LogConfig
from omnibus.storage.acks import QueueAcks

SMALL = LogConfig(fsync="never", segment_bytes=400, file_delete_delay_ms=0)


def open_queue(path, config: LogConfig = SMALL, clock: ManualClock | None = None, **kw) -> Queue:
    clock = clock or ManualClock()
    log = Log.open(path, config, clock=clock.now_ms)
    return Queue("q", log, QueueAcks(log), clock, **kw)


def msgs(*bodies: str) -> list[Message]:
    return [Message("rk", b.encode(), exchange="ex") for b in bodies]


def bodies(q: Queue, n: int) -> list[str]:
    out = []
    for _ in range(n):
        d = q.deliver_next()
        assert d is not None
        out.append(d.message.body.decode())
    return out


@pytest.fixture
def queue(tmp_path):
    q = open_queue(tmp_path / "q")
    yield q
    q.close()


def test_publish_deliver_ack(queue):
    assert queue.publish(msgs("a", "b")) == range(0, 2)
    assert queue.publish(msgs("c")) == range(2, 3)
    assert queue.publish([]) == range(0)
    assert queue.message_count == 3 and queue.unacked_count == 0
    d = queue.deliver_next()
    assert (d.offset, d.message.body, d.delivery_count, d.redelivered) == (0, b"a", 1, False)
    assert d.message.routing_key == "rk" and d.message.exchange == "ex"
    assert d.message.timestamp_ms == queue.clock.now_ms()
    assert queue.message_count == 2 and queue.unacked_count == 1 and len(queue) == 3
    assert queue.ack(0)
    assert not queue.ack(0)
    assert not queue.ack(1)  # not delivered yet
    assert queue.acks.is_acked(0)
    assert bodies(queue, 2) == ["b", "c"]
    assert queue.deliver_next() is None


def test_deliver_sees_publishes_after_reaching_the_end(queue):
    queue.publish(msgs("a"))
    assert bodies(queue, 1) == ["a"]
    assert queue.deliver_next() is None
    for i in range(50):  # enough to roll segments under the reader
        queue.publish(msgs(f"m{i}"))
        assert bodies(queue, 1) == [f"m{i}"]
    assert len(queue.log.segments()) > 1


def test_requeue_goes_back_to_original_position(queue):
    queue.publish(msgs("0", "1", "2", "3", "4", "5"))
    ds = [queue.deliver_next() for _ in range(5)]
    assert queue.reject(3, requeue=True) is None
    assert queue.reject(1, requeue=True) is None
    assert queue.message_count == 3 and queue.unacked_count == 3
    d1, d3, d5 = queue.deliver_next(), queue.deliver_next(), queue.deliver_next()
    assert [d1.offset, d3.offset, d5.offset] == [1, 3, 5]
    assert (d1.delivery_count, d1.redelivered) == (2, True)
    assert (d5.delivery_count, d5.redelivered) == (1, False)
    assert ds[0].delivery_count == 1
    assert queue.delivery_count(1) == 2


def test_requeue_many_and_unknown(queue):
    queue.publish(msgs("a", "b", "c"))
    for _ in range(3):
        queue.deliver_next()
    assert queue.requeue([2, 0, 99]) == 2
    assert [queue.deliver_next().offset for _ in range(2)] == [0, 2]
    with pytest.raises(KeyError):
        queue.reject(99, requeue=False)


def test_reject_without_requeue_returns_the_message(queue):
    queue.publish(msgs("dead", "alive"))
    d = queue.deliver_next()
    dead = queue.reject(d.offset, requeue=False)
    assert dead.message.body == b"dead" and dead.delivery_count == 1 and dead.offset == 0
    assert queue.acks.is_acked(0)
    assert queue.unacked_count == 0 and queue.message_count == 1


def test_restart_makes_unacked_ready_and_redelivered(tmp_path):
    clock = ManualClock()
    q = open_queue(tmp_path / "q", clock=clock)
    q.publish(msgs(*(str(i) for i in range(10))))
    for _ in range(5):
        q.deliver_next()
    q.ack(0)
    q.ack(2)
    q.close()
    q = open_queue(tmp_path / "q", clock=clock)
    assert q.message_count == 8 and q.unacked_count == 0
    d = q.deliver_next()
    assert (d.offset, d.redelivered, d.delivery_count) == (1, True, 1)
    assert [q.deliver_next().offset for _ in range(7)] == [3, 4, 5, 6, 7, 8, 9]
    q.publish(msgs("new"))
    d = q.deliver_next()
    assert (d.offset, d.redelivered) == (10, False)
    q.close()


def test_purge_keeps_in_flight(tmp_path):
    q = open_queue(tmp_path / "q")
    q.publish(msgs("a", "b", "c", "d"))
    q.deliver_next()
    q.deliver_next()
    q.reject(1, requeue=True)
    assert q.purge() == 3  # 1 (requeued), 2, 3
    assert q.message_count == 0 and q.unacked_count == 1
    assert q.deliver_next() is None
    q.close()
    q = open_queue(tmp_path / "q")
    assert q.message_count == 1  # only the unacked in-flight one comes back
    assert q.deliver_next().offset == 0
    q.close()


def test_collect_deletes_settled_segments(tmp_path):
    q = open_queue(tmp_path / "q")
    for i in range(40):
        q.publish(msgs(f"m{i}"))
    assert len(q.log.segments()) > 3
    for _ in range(30):
        d = q.deliver_next()
        q.ack(d.offset)
    before = len(q.log.segments())
    assert q.collect() > 0
    assert len(q.log.segments()) < before
    assert bodies(q, 10) == [f"m{i}" for i in range(30, 40)]
    q.close()


def test_oversized_publish_is_split(tmp_path):
    cfg = LogConfig(fsync="never", max_batch_bytes=300)
    q = open_queue(tmp_path / "q", config=cfg)
    offsets = q.publish([Message("k", bytes([i]) * 60) for i in range(8)])
    assert offsets == range(0, 8)
    assert len(list(q.log.batches(0))) > 1
    assert [q.deliver_next().message.body[0] for _ in range(8)] == list(range(8))
    q.close()


def test_sparse_ready_set_after_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(queues_mod, "READER_RESTART_GAP", 4)
    q = open_queue(tmp_path / "q", config=LogConfig(fsync="never"))
    for i in range(60):
        q.publish(msgs(str(i)))
    keep = {3, 4, 20, 21, 22, 55}
    for _ in range(60):
        d = q.deliver_next()
        if d.offset not in keep:
            q.ack(d.offset)
    q.close()
    q = open_queue(tmp_path / "q", config=LogConfig(fsync="never"))
    assert bodies(q, 6) == [str(i) for i in sorted(keep)]
    q.close()


def test_queue_properties(tmp_path):
    q = open_queue(tmp_path / "q", durable=False, exclusive=True, auto_delete=True,
                   arguments={"x-message-ttl": 1000})
    assert (q.durable, q.exclusive, q.auto_delete) == (False, True, True)
    assert q.arguments == {"x-message-ttl": 1000}
    assert "ready=0" in repr(q)
    q.close()


# -- model-based test ----------------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 4)),
        st.tuples(st.just("deliver"), st.integers(1, 3)),
        st.tuples(st.just("ack"), st.integers(0, 100)),
        st.tuples(st.just("reject"), st.integers(0, 100), st.booleans()),
        st.tuples(st.just("requeue"), st.integers(0, 100)),
        st.just(("purge",)),
        st.just(("restart",)),
        st.just(("collect",)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_queue_against_model(ops):
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock()
        q = open_queue(f"{tmp}/q", clock=clock)
        body_of: dict[int, bytes] = {}
        ready: set[int] = set()
        inflight: dict[int, int] = {}
        counts: dict[int, int] = {}
        settled: set[int] = set()
        recovered_end = 0
        serial = 0
        try:
            for op in ops:
                kind = op[0]
                if kind == "publish":
                    batch = []
                    for _ in range(op[1]):
                        serial += 1
                        batch.append(Message("k", b"m%d" % serial))
                    offs = q.publish(batch)
                    for o, m in zip(offs, batch):
                        body_of[o] = m.body
                        ready.add(o)
                elif kind == "deliver":
                    for _ in range(op[1]):
                        d = q.deliver_next()
                        if not ready:
                            assert d is None
                            continue
                        o = min(ready)
                        ready.discard(o)
                        n = counts.pop(o, 0) + 1
                        inflight[o] = n
                        assert d.offset == o
                        assert d.message.body == body_of[o]
                        assert d.delivery_count == n
                        assert d.redelivered == (n > 1 or o < recovered_end)
                elif kind in ("ack", "reject", "requeue"):
                    if not inflight:
                        assert not q.ack(op[1] + 1000)
                        continue
                    o = sorted(inflight)[op[1] % len(inflight)]
                    if kind == "ack":
                        assert q.ack(o)
                        del inflight[o]
                        settled.add(o)
                    elif kind == "reject" and not op[2]:
                        dead = q.reject(o, requeue=False)
                        assert dead.message.body == body_of[o]
                        assert dead.delivery_count == inflight.pop(o)
                        settled.add(o)
                    else:
                        if kind == "reject":
                            assert q.reject(o, requeue=True) is None
                        else:
                            assert q.requeue([o]) == 1
                        counts[o] = inflight.pop(o)
                        ready.add(o)
                elif kind == "purge":
                    assert q.purge() == len(ready)
                    settled |= ready
                    for o in ready:
                        counts.pop(o, None)
                    ready.clear()
                elif kind == "restart":
                    q.close()
                    q = open_queue(f"{tmp}/q", clock=clock)
                    ready |= set(inflight)
                    inflight.clear()
                    counts.clear()
                    recovered_end = len(body_of)
                else:
                    q.collect()
                assert q.message_count == len(ready)
                assert q.unacked_count == len(inflight)
                for o in settled:
                    assert q.acks.is_acked(o)
        finally:
            q.close()
