"""Queue features in the core, with a ManualClock (no sleeping): TTL at the head, per-message expiry,
length limits (drop-head, reject-publish, bytes), dead letters with reasons, priority levels (and their
recovery), x-expires bookkeeping; and core/deadletter.py's x-death history and cycle rule."""

from __future__ import annotations

import pytest

from omnibus.core import deadletter
from omnibus.core.clock import ManualClock
from omnibus.core.messages import Message
from omnibus.core.queues import HDR_EXPIRES, HDR_PRIORITY, PriorityQueue, Queue, open_queue_class
from omnibus.storage import Log, LogConfig
from omnibus.storage.acks import QueueAcks

CONFIG = LogConfig(fsync="never", segment_bytes=1 << 20, file_delete_delay_ms=0)


def open_q(path, clock: ManualClock, **arguments) -> Queue:
    log = Log.open(path, CONFIG, clock=clock.now_ms)
    return open_queue_class(arguments)("q", log, QueueAcks(log), clock, arguments=arguments)


def m(body: str, **headers) -> Message:
    return Message("rk", body.encode(), headers or None, exchange="ex")


def next_body(q: Queue) -> str | None:
    d = q.deliver_next()
    return None if d is None else bytes(d.message.body).decode()


@pytest.fixture
def clock():
    return ManualClock()


def test_message_ttl_expires_only_at_the_head(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-message-ttl": 1000, "x-dead-letter-exchange": "dx"})
    seen = []
    q.on_dead = seen.append
    start = clock.now_ms()
    q.publish([m("a"), m("b")])
    clock.advance(500)
    q.publish([m("c")])
    assert q.next_expiry() == start + 1000
    clock.advance(499)
    assert q.expire_head() == 0 and q.message_count == 3
    clock.advance(1)  # now == expiry: expired (RabbitMQ: Now >= Expiry)
    assert q.expire_head() == 2
    assert [(bytes(x.body), r) for x, r in q.dead_letters] == [(b"a", "expired"), (b"b", "expired")]
    assert seen == [q]  # called once, when the first dead letter arrived
    assert q.next_expiry() == start + 1500
    assert q.take_dead_letters() and q.dead_letters == []
    clock.advance(600)
    assert next_body(q) is None  # "c" expired: never delivered
    assert [r for _, r in q.take_dead_letters()] == ["expired"]
    assert q.acks.is_acked(2) and q.message_count == 0
    q.close()


def test_ttl_zero_reaches_a_waiting_consumer_in_the_same_millisecond(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-message-ttl": 0})
    q.publish([m("now")])
    clock.advance(1)
    assert next_body(q) == "now"  # just published: what a waiting consumer takes is delivered
    q.publish([m("waits")])
    assert q.expire_head() == 1  # the session calls this after the pump: the rest is dropped
    q.publish([m("same-ms")])
    q.expire_head()
    assert q.message_count == 0  # now == expiry: expired (inclusive)
    q.publish([m("later")])
    assert q.expire_head() == 1  # but what waits is dropped at once
    assert q.message_count == 0 and q.dead_letters == []  # no DLX: dropped
    q.close()


def test_per_message_expiry_is_checked_at_the_head_only(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-dead-letter-exchange": "dx"})
    now = clock.now_ms()
    q.publish([m("long", **{HDR_EXPIRES: str(now + 60_000)}), m("short", **{HDR_EXPIRES: str(now + 10)}),
               m("plain")])
    assert not q.timed
    q.mark_timed()
    clock.advance(100)
    assert q.expire_head() == 0 and q.message_count == 3  # "short" waits behind "long"
    assert next_body(q) == "long"
    assert next_body(q) == "plain"  # "short" expired at the head: skipped and dead-lettered
    assert [(bytes(x.body), r) for x, r in q.dead_letters] == [(b"short", "expired")]
    q.close()


def test_queue_ttl_and_message_expiry_take_the_earlier(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-message-ttl": 5000})
    now = clock.now_ms()
    q.publish([m("own", **{HDR_EXPIRES: str(now + 100)}), m("queue")])
    assert q.next_expiry() == now + 100
    clock.advance(100)
    assert q.expire_head() == 1
    assert q.next_expiry() == now + 5000
    q.close()


def test_drop_head_max_length_dead_letters_maxlen(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-max-length": 2, "x-dead-letter-exchange": "dx"})
    q.publish([m(str(i)) for i in range(5)])
    assert q.message_count == 5  # publish does not enforce: a waiting consumer may take them first
    assert q.enforce_limits() == 3
    assert [(bytes(x.body), r) for x, r in q.dead_letters] == [(b"0", "maxlen"), (b"1", "maxlen"), (b"2", "maxlen")]
    assert [next_body(q), next_body(q), next_body(q)] == ["3", "4", None]
    q.close()


def test_max_length_bytes_accounting(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-max-length-bytes": 10})
    q.publish([m("12345"), m("67890"), m("abc")])
    assert q.ready_bytes == 13
    assert q.enforce_limits() == 1 and q.ready_bytes == 8
    d = q.deliver_next()
    assert bytes(d.message.body) == b"67890" and q.ready_bytes == 3
    q.reject(d.offset, requeue=True)
    assert q.ready_bytes == 8 and q.message_count == 2
    q.close()
    q = open_q(tmp_path / "q", clock, **{"x-max-length-bytes": 10})  # sizes rebuilt from the log
    assert q.ready_bytes == 8 and q.message_count == 2
    assert q.purge() == 2 and q.ready_bytes == 0
    q.close()


def test_reject_publish_refuses_what_would_overflow(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-max-length": 2, "x-overflow": "reject-publish"})
    offsets, refused = q.publish_admitted([m("a"), m("b"), m("c")])
    assert list(offsets) == [0, 1] and refused == [2]
    assert q.enforce_limits() == 0  # reject-publish never drops
    next_body(q)  # in flight does not count
    offsets, refused = q.publish_admitted([m("d"), m("e")])
    assert list(offsets) == [2] and refused == [1]
    q.close()
    q = open_q(tmp_path / "r", clock, **{"x-max-length-bytes": 4, "x-overflow": "reject-publish-dlx",
                                          "x-dead-letter-exchange": "dx"})
    _, refused = q.publish_admitted([m("abc"), m("de"), m("f")])
    assert refused == [1]
    assert [(bytes(x.body), r) for x, r in q.dead_letters] == [(b"de", "maxlen")]
    q.close()


def test_reject_without_requeue_dead_letters_and_no_dlx_drops(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-dead-letter-exchange": "dx"})
    q.publish([m("x", h="1")])
    d = q.deliver_next()
    q.reject(d.offset, requeue=False)
    [(msg, reason)] = q.take_dead_letters()
    assert (bytes(msg.body), reason, msg.headers, msg.exchange) == (b"x", "rejected", {"h": b"1"}, "ex")
    q.close()
    plain = open_q(tmp_path / "p", clock)
    plain.publish([m("y")])
    plain.reject(plain.deliver_next().offset, requeue=False)
    assert plain.dead_letters == []
    plain.close()


def test_priority_levels_order_requeue_and_recovery(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-max-priority": 5})
    assert isinstance(q, PriorityQueue)
    msgs = [m("p1", **{HDR_PRIORITY: "1"}), m("p5", **{HDR_PRIORITY: "5"}), m("none"),
            m("p9", **{HDR_PRIORITY: "9"}), m("p1b", **{HDR_PRIORITY: "1"})]
    q.publish(msgs)
    assert q.message_count == 5
    d = q.deliver_next()
    assert bytes(d.message.body) == b"p5"
    q.reject(d.offset, requeue=True)  # back to the front of level 5
    assert [next_body(q) for _ in range(2)] == ["p5", "p9"]  # p9 capped at 5, after p5
    q.close()
    q = open_q(tmp_path / "q", clock, **{"x-max-priority": 5})  # levels rebuilt from the headers
    assert q.message_count == 5
    assert [next_body(q) for _ in range(6)] == ["p5", "p9", "p1", "p1b", "none", None]
    assert q.purge() == 0
    q.close()


def test_priority_queue_with_limits_and_ttl(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-max-priority": 2, "x-max-length": 2, "x-message-ttl": 100,
                                          "x-dead-letter-exchange": "dx"})
    q.publish([m("lo"), m("hi", **{HDR_PRIORITY: "2"}), m("lo2")])
    assert q.enforce_limits() == 1  # the head is the highest priority: "hi" dropped first
    assert [bytes(x.body) for x, _ in q.take_dead_letters()] == [b"hi"]
    clock.advance(100)
    assert q.expire_head() == 2 and q.message_count == 0
    q.close()


def test_x_expires_bookkeeping(tmp_path, clock):
    q = open_q(tmp_path / "q", clock, **{"x-expires": 1000, "x-single-active-consumer": True})
    assert q.expires == 1000 and q.single_active_consumer
    t0 = q.last_used
    clock.advance(400)
    q.touch()
    assert q.last_used == t0 + 0.4
    q.close()


def test_plain_queue_stays_on_the_fast_path(tmp_path, clock):
    q = open_q(tmp_path / "q", clock)
    assert type(q) is Queue and not q.limited and not q.timed and not q.rejects
    q.publish([m("a")])
    assert q.next_expiry() is None and q.expire_head() == 0 and q.enforce_limits() == 0
    q.close()


# -- core/deadletter.py -----------------------------------------------------------------------------

def test_x_death_history():
    h = deadletter.update_x_death({"a": 1}, queue="q1", reason="rejected", exchange="ex", routing_keys=["k"],
                                  time=10)
    assert (h["x-first-death-reason"], h["x-first-death-queue"], h["x-first-death-exchange"]) == \
        ("rejected", "q1", "ex")
    assert h["x-death"] == [{"count": 1, "reason": "rejected", "queue": "q1", "time": 10, "exchange": "ex",
                             "routing-keys": ["k"]}]
    h = deadletter.update_x_death(h, queue="q2", reason="expired", exchange="", routing_keys=["q2"], time=11,
                                  original_expiration="50")
    assert [(d["queue"], d["reason"], d["count"]) for d in h["x-death"]] == [("q2", "expired", 1),
                                                                             ("q1", "rejected", 1)]
    assert h["x-death"][0]["original-expiration"] == "50"
    h = deadletter.update_x_death(h, queue="q1", reason="rejected", exchange="ex", routing_keys=["k"], time=12)
    assert [(d["queue"], d["reason"], d["count"]) for d in h["x-death"]] == [("q1", "rejected", 2),
                                                                             ("q2", "expired", 1)]
    assert h["x-first-death-queue"] == "q1" and h["a"] == 1


def test_dead_letter_headers_routing_keys_and_cc():
    h = deadletter.dead_letter_headers({"CC": ["c1", b"c2"]}, queue="q", reason="expired", exchange="x",
                                       routing_key="rk", dead_letter_routing_key="dl", time=1, expiration="5")
    assert "CC" not in h and h["x-death"][0]["routing-keys"] == ["rk", "c1", "c2"]
    assert deadletter.death_routing_keys("rk", None) == ["rk"]


def test_cycles():
    auto = [{"queue": "b", "reason": "expired"}, {"queue": "a", "reason": "maxlen"}]
    assert deadletter.is_cycle("a", auto) and deadletter.is_cycle("b", auto)
    assert not deadletter.is_cycle("c", auto)
    with_reject = [{"queue": "b", "reason": "rejected"}, {"queue": "a", "reason": "expired"}]
    assert not deadletter.is_cycle("a", with_reject)
    assert not deadletter.is_cycle("a", None)
