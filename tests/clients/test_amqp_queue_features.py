"""AMQP queue features with pika against a running Omnibus: message/queue TTL, dead-lettering (x-death),
max-length (drop-head, reject-publish, bytes), x-expires, priorities, single active consumer, consumer
priority, argument validation, and a durable queue's arguments across a restart.

Every test but the restart one also passes against RabbitMQ 3.10.8: set ``OMNIBUS_QF_RABBIT_URL`` (e.g.
``amqp://guest:guest@127.0.0.1:5672/``) to run them against a running node.
"""

from __future__ import annotations

import datetime
import os
import time
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, NackError

RABBIT_URL = os.environ.get("OMNIBUS_QF_RABBIT_URL", "")


@pytest.fixture
def url(omnibus_broker_factory):
    if RABBIT_URL:
        return RABBIT_URL
    return omnibus_broker_factory().amqp_url


@pytest.fixture
def conn(url):
    c = pika.BlockingConnection(pika.URLParameters(url))
    yield c
    if c.is_open:
        c.close()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def get_within(ch, queue: str, seconds: float = 3.0):
    """basic.get until a message arrives (dead-lettering and expiry are asynchronous in RabbitMQ)."""
    deadline = time.monotonic() + seconds
    while True:
        mf, props, body = ch.basic_get(queue, auto_ack=True)
        if mf is not None or time.monotonic() > deadline:
            return mf, props, body
        time.sleep(0.02)


def drain(ch, queue: str) -> list[bytes]:
    out = []
    while True:
        mf, _, body = ch.basic_get(queue, auto_ack=True)
        if mf is None:
            return out
        out.append(body)


def dlx_pair(ch, **args):
    """A work queue dead-lettering (through the fanout exchange dlx) into a dead-letter queue."""
    dlx, work, dlq = uniq("dlx"), uniq("work"), uniq("dlq")
    ch.exchange_declare(dlx, "fanout", auto_delete=False)
    ch.queue_declare(dlq)
    ch.queue_bind(dlq, dlx)
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": dlx, **args})
    return dlx, work, dlq


def test_reject_dead_letters_with_x_death(conn):
    ch = conn.channel()
    dlx, work, dlq = dlx_pair(ch)
    ch.basic_publish("", work, b"m", pika.BasicProperties(headers={"h": "v"}, message_id="id-1",
                                                            content_type="text/plain"))
    mf, _, _ = ch.basic_get(work)
    ch.basic_reject(mf.delivery_tag, requeue=False)
    mf, props, body = get_within(ch, dlq)
    assert body == b"m" and mf.exchange == dlx and mf.routing_key == work
    assert props.message_id == "id-1" and props.content_type == "text/plain"
    h = props.headers
    assert h["h"] == "v"
    assert (h["x-first-death-reason"], h["x-first-death-queue"], h["x-first-death-exchange"]) == \
        ("rejected", work, "")
    [death] = h["x-death"]
    assert (death["count"], death["reason"], death["queue"], death["exchange"], death["routing-keys"]) == \
        (1, "rejected", work, "", [work])
    assert isinstance(death["time"], datetime.datetime)
    assert "original-expiration" not in death
    # the same message dies again in the same queue for the same reason: one entry, count 2
    ch.basic_publish("", work, body, props)
    mf, _, _ = ch.basic_get(work)
    ch.basic_nack(mf.delivery_tag, requeue=False)
    _, props2, _ = get_within(ch, dlq)
    [death2] = props2.headers["x-death"]
    assert (death2["count"], death2["reason"], death2["queue"]) == (2, "rejected", work)
    assert props2.headers["x-first-death-queue"] == work
    # requeue=true does not dead-letter
    ch.basic_publish("", work, b"again")
    mf, _, _ = ch.basic_get(work)
    ch.basic_nack(mf.delivery_tag, requeue=True)
    assert ch.basic_get(work, auto_ack=True)[2] == b"again"
    assert ch.basic_get(dlq) == (None, None, None)


def test_x_death_counts_per_queue_and_reason_most_recent_first(conn):
    # R dead-letters rejects to T, T dead-letters expired messages back to R: a cycle with a client's
    # reject in it is allowed; each entry's count goes up and the most recent death comes first
    ch = conn.channel()
    r, t = uniq("r"), uniq("t")
    ch.queue_declare(r, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": t})
    ch.queue_declare(t, arguments={"x-message-ttl": 30, "x-dead-letter-exchange": "",
                                   "x-dead-letter-routing-key": r})
    ch.basic_publish("", r, b"m")
    seen = []
    for _ in range(3):
        deadline = time.monotonic() + 3
        mf = None
        while mf is None and time.monotonic() < deadline:
            mf, props, _ = ch.basic_get(r)
            time.sleep(0.01)
        assert mf is not None and mf.routing_key == r
        deaths = (props.headers or {}).get("x-death", [])
        seen.append([(d["queue"], d["reason"], d["count"]) for d in deaths])
        ch.basic_reject(mf.delivery_tag, requeue=False)
    assert seen == [[], [(t, "expired", 1), (r, "rejected", 1)], [(t, "expired", 2), (r, "rejected", 2)]]
    assert props.headers["x-first-death-queue"] == r and props.headers["x-first-death-reason"] == "rejected"


def test_message_ttl_dead_letters_with_routing_key(conn):
    ch = conn.channel()
    work, dlq = uniq("work"), uniq("dlq")
    ch.queue_declare(dlq)
    ch.queue_declare(work, arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": dlq})
    for i in range(3):
        ch.basic_publish("", work, b"t%d" % i)
    got = []
    for _ in range(3):
        mf, props, body = get_within(ch, dlq)
        assert mf is not None, got
        got.append(body)
        assert mf.routing_key == dlq and mf.exchange == ""
        death = props.headers["x-death"][0]
        assert (death["reason"], death["queue"], death["routing-keys"]) == ("expired", work, [work])
    assert got == [b"t0", b"t1", b"t2"]
    assert ch.basic_get(work) == (None, None, None)


def test_per_message_expiration_dead_letters_without_expiration(conn):
    ch = conn.channel()
    dlx, work, dlq = dlx_pair(ch)
    ch.basic_publish("", work, b"short", pika.BasicProperties(expiration="30"))
    mf, props, body = get_within(ch, dlq)
    assert body == b"short"
    assert props.expiration is None
    death = props.headers["x-death"][0]
    assert (death["reason"], death["original-expiration"]) == ("expired", "30")


def test_expiry_only_at_the_head_and_never_delivered(conn):
    ch = conn.channel()
    q = uniq("heads")
    ch.queue_declare(q)
    ch.basic_publish("", q, b"long", pika.BasicProperties(expiration="60000"))
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="10"))
    time.sleep(0.2)
    assert ch.queue_declare(q, passive=True).method.message_count == 2  # "short" waits behind the head
    assert ch.basic_get(q, auto_ack=True)[2] == b"long"
    assert ch.basic_get(q) == (None, None, None)  # "short" expired at the head: never returned
    ttl0 = uniq("ttl0")
    ch.queue_declare(ttl0, arguments={"x-message-ttl": 0})
    ch.basic_publish("", ttl0, b"gone")
    assert ch.basic_get(ttl0) == (None, None, None)


def test_ttl_zero_and_max_length_zero_reach_a_waiting_consumer(conn):
    for args in ({"x-message-ttl": 0}, {"x-max-length": 0}):
        ch = conn.channel()
        q = uniq("zero")
        ch.queue_declare(q, arguments=args)
        ch.basic_qos(prefetch_count=1)
        got = []
        ch.basic_consume(q, lambda c, m, p, b: got.append(b))  # never acks: capacity for one message
        for i in range(3):
            ch.basic_publish("", q, b"%d" % i)
        pause(conn, 0.3)
        assert got == [b"0"], args  # the rest expired / dropped instead of waiting
        assert ch.queue_declare(q, passive=True).method.message_count == 0
        ch.close()


def test_max_length_drop_head_dead_letters(conn):
    ch = conn.channel()
    dlx, work, dlq = dlx_pair(ch, **{"x-max-length": 2})
    for i in range(5):
        ch.basic_publish("", work, b"m%d" % i)
    deadline = time.monotonic() + 3
    dead = []
    while len(dead) < 3 and time.monotonic() < deadline:
        mf, props, body = ch.basic_get(dlq, auto_ack=True)
        if mf is None:
            time.sleep(0.02)
            continue
        assert props.headers["x-death"][0]["reason"] == "maxlen"
        dead.append(body)
    assert dead == [b"m0", b"m1", b"m2"]
    assert drain(ch, work) == [b"m3", b"m4"]


def test_requeue_into_a_full_queue_drops_the_head_and_expired_requeue_dead_letters(conn):
    ch = conn.channel()
    dlq = uniq("dlq")
    ch.queue_declare(dlq)
    dl = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    q = uniq("full")
    ch.queue_declare(q, arguments={"x-max-length": 2, **dl})
    ch.basic_publish("", q, b"a")
    mf, _, _ = ch.basic_get(q)
    ch.basic_publish("", q, b"b")
    ch.basic_publish("", q, b"c")
    ch.basic_nack(mf.delivery_tag, requeue=True)  # "a" back at the head: 3 > 2, so the head goes
    assert get_within(ch, dlq)[2] == b"a"
    assert drain(ch, q) == [b"b", b"c"]
    t = uniq("ttl")
    ch.queue_declare(t, arguments={"x-message-ttl": 100, **dl})
    ch.basic_publish("", t, b"x")
    mf, _, _ = ch.basic_get(t)
    time.sleep(0.2)
    ch.basic_nack(mf.delivery_tag, requeue=True)  # expired while out: dead-lettered, not redelivered
    assert ch.basic_get(t) == (None, None, None)
    mf, props, body = get_within(ch, dlq)
    assert body == b"x" and props.headers["x-death"][0]["reason"] == "expired"


def test_reject_publish_nacks_with_confirms(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = uniq("full")
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish("", q, b"first")
    with pytest.raises(NackError):
        ch.basic_publish("", q, b"second", mandatory=True)  # nacked, not returned
    assert ch.queue_declare(q, passive=True).method.message_count == 1
    assert ch.basic_get(q, auto_ack=True)[2] == b"first"
    ch.basic_publish("", q, b"third")  # room again
    assert ch.basic_get(q, auto_ack=True)[2] == b"third"


def test_reject_publish_dlx_dead_letters_the_refused(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    dlx, work, dlq = dlx_pair(ch, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    ch.basic_publish("", work, b"kept")
    with pytest.raises(NackError):
        ch.basic_publish("", work, b"refused")
    mf, props, body = get_within(ch, dlq)
    assert body == b"refused" and props.headers["x-death"][0]["reason"] == "maxlen"
    assert drain(ch, work) == [b"kept"]


def test_max_length_bytes_drops_from_the_head(conn):
    ch = conn.channel()
    q = uniq("bytes")
    ch.queue_declare(q, arguments={"x-max-length-bytes": 10})
    for body in (b"12345", b"67890", b"abc"):
        ch.basic_publish("", q, body)
    assert drain(ch, q) == [b"67890", b"abc"]


def pause(conn, seconds: float) -> None:
    """Serve the connection's events for ``seconds`` (process_data_events returns early on an event)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        conn.process_data_events(time_limit=left)


def test_x_expires_deletes_an_unused_queue(conn):
    ch = conn.channel()
    idle, used = uniq("idle"), uniq("used")
    ch.queue_declare(idle, arguments={"x-expires": 300})
    ch.queue_declare(used, arguments={"x-expires": 800})
    ch.basic_publish("", idle, b"x")
    tag = ch.basic_consume(used, lambda *a: None)
    pause(conn, 1.0)
    assert ch.queue_declare(used, passive=True).method.consumer_count == 1  # a consumer keeps it
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().queue_declare(idle, passive=True)
    assert e.value.reply_code == 404
    ch.basic_cancel(tag)  # unused from now on
    pause(conn, 0.5)
    ch.basic_get(used)  # a get starts the period again
    pause(conn, 0.5)
    assert ch.queue_declare(used, passive=True).method.message_count == 0
    pause(conn, 1.0)
    with pytest.raises(ChannelClosedByBroker):
        conn.channel().queue_declare(used, passive=True)


def test_priority_order(conn):
    ch = conn.channel()
    q = uniq("prio")
    ch.queue_declare(q, arguments={"x-max-priority": 10})
    for body, prio in ((b"p1", 1), (b"p5a", 5), (b"none", None), (b"p10", 10), (b"p5b", 5), (b"p20", 20)):
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    mf, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"p10" and props.priority == 10
    assert drain(ch, q) == [b"p20", b"p5a", b"p5b", b"p1", b"none"]
    # a requeued message goes back to its place in its priority
    for body, prio in ((b"lo", 1), (b"hi", 9)):
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    mf, _, body = ch.basic_get(q)
    assert body == b"hi"
    ch.basic_publish("", q, b"hi2", pika.BasicProperties(priority=9))
    ch.basic_nack(mf.delivery_tag, requeue=True)
    assert drain(ch, q) == [b"hi", b"hi2", b"lo"]


def test_single_active_consumer_failover(conn):
    q = uniq("sac")
    ch1, ch2 = conn.channel(), conn.channel()
    ch1.queue_declare(q, arguments={"x-single-active-consumer": True})
    got: dict[str, list[bytes]] = {"a": [], "b": []}
    ta = ch1.basic_consume(q, lambda c, m, p, b: got["a"].append(b), auto_ack=True)
    ch2.basic_consume(q, lambda c, m, p, b: got["b"].append(b), auto_ack=True)
    assert ch1.queue_declare(q, passive=True).method.consumer_count == 2
    for i in range(4):
        ch1.basic_publish("", q, b"%d" % i)
    deadline = time.monotonic() + 3
    while len(got["a"]) < 4 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == {"a": [b"0", b"1", b"2", b"3"], "b": []}
    ch1.basic_cancel(ta)
    for i in range(4, 6):
        ch1.basic_publish("", q, b"%d" % i)
    while len(got["b"]) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == {"a": [b"0", b"1", b"2", b"3"], "b": [b"4", b"5"]}


def test_single_active_consumer_takes_over_when_the_channel_closes(conn):
    q = uniq("sac2")
    ch1, ch2 = conn.channel(), conn.channel()
    ch2.queue_declare(q, arguments={"x-single-active-consumer": True})
    held = []
    ch1.basic_qos(prefetch_count=10)
    ch1.basic_consume(q, lambda c, m, p, b: held.append(b))  # manual ack, never acked
    got = []
    ch2.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    for i in range(3):
        ch2.basic_publish("", q, b"%d" % i)
    deadline = time.monotonic() + 3
    while len(held) < 3 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert held == [b"0", b"1", b"2"] and got == []
    ch1.close()  # unacked come back and go to the new active consumer
    while len(got) < 3 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == [b"0", b"1", b"2"]


def test_consumer_priority(conn):
    q = uniq("cprio")
    hi_ch, lo_ch = conn.channel(), conn.channel()
    hi_ch.queue_declare(q)
    hi_ch.basic_qos(prefetch_count=2)
    hi, lo = [], []
    lo_ch.basic_consume(q, lambda c, m, p, b: lo.append(b), arguments={"x-priority": 1})
    hi_ch.basic_consume(q, lambda c, m, p, b: hi.append(b), arguments={"x-priority": 10})
    for i in range(6):
        hi_ch.basic_publish("", q, b"%d" % i)
    deadline = time.monotonic() + 3
    while len(hi) + len(lo) < 6 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert hi == [b"0", b"1"]  # the high-priority consumer while it has prefetch capacity
    assert lo == [b"2", b"3", b"4", b"5"]


BAD_ARGS = [
    ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': {{value_negative,-1}}"),
    ({"x-message-ttl": "x"},
     "invalid arg 'x-message-ttl' for queue '{q}' in vhost '/': \"expected integer, got longstr\""),
    ({"x-expires": 0}, "invalid arg 'x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
    ({"x-max-length": -2}, "invalid arg 'x-max-length' for queue '{q}' in vhost '/': {{value_negative,-2}}"),
    ({"x-max-length-bytes": True},
     "invalid arg 'x-max-length-bytes' for queue '{q}' in vhost '/': \"expected integer, got bool\""),
    ({"x-max-priority": 256}, "invalid arg 'x-max-priority' for queue '{q}' in vhost '/': {{max_value_exceeded,256}}"),
    ({"x-overflow": "nope"}, "invalid arg 'x-overflow' for queue '{q}' in vhost '/': invalid_overflow"),
    ({"x-dead-letter-exchange": 1},
     "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"),
    ({"x-dead-letter-routing-key": "k"},
     "invalid arg 'x-dead-letter-routing-key' for queue '{q}' in vhost '/': routing_key_but_no_dlx_defined"),
    ({"x-single-active-consumer": 1},
     "invalid arg 'x-single-active-consumer' for queue '{q}' in vhost '/': {{unacceptable_type,signedint}}"),
    ({"x-message-ttl": -1, "x-expires": 0}, "invalid arg 'x-expires' for queue '{q}' in vhost '/': {{value_zero,0}}"),
]


def test_bad_arguments_close_only_the_channel(conn):
    for args, text in BAD_ARGS:
        q = uniq("bad")
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.queue_declare(q, arguments=args)
        assert (e.value.reply_code, e.value.reply_text) == (406, "PRECONDITION_FAILED - " + text.format(q=q))
    for expiration, term in (("abc", "no_integer"), ("-1", "{value_negative,-1}"),
                             ("1x", '{leftover_string,"x"}')):
        ch = conn.channel()
        q = uniq("exp")
        ch.queue_declare(q)
        ch.basic_publish("", q, b"x", pika.BasicProperties(expiration=expiration))
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.queue_declare(q, passive=True)
        assert (e.value.reply_code, e.value.reply_text) == (
            406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {term}")
    ch = conn.channel()
    q = uniq("cons")
    ch.queue_declare(q)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume(q, lambda *a: None, arguments={"x-priority": "high"})
    assert e.value.reply_text == (f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{q}' in vhost '/': "
                                  '"expected integer, got longstr"')
    # the connection is fine; a valid re-declare with other arguments is 406 inequivalent
    ch = conn.channel()
    q = uniq("eq")
    ch.queue_declare(q, arguments={"x-message-ttl": 1000, "x-max-priority": 3})
    ch.queue_declare(q, arguments={"x-message-ttl": 1000, "x-max-priority": 3})
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare(q, arguments={"x-message-ttl": 2000, "x-max-priority": 3})
    assert e.value.reply_code == 406 and "inequivalent arg 'x-message-ttl'" in e.value.reply_text
    assert conn.is_open


def test_dead_letter_cycle_is_dropped_and_missing_dlx_drops(conn):
    ch = conn.channel()
    # a queue that dead-letters expired messages to itself: the second death there is a cycle, dropped
    q = uniq("loop")
    ch.queue_declare(q, arguments={"x-message-ttl": 20, "x-dead-letter-exchange": ""})
    ch.basic_publish("", q, b"x")
    deadline = time.monotonic() + 3
    while ch.queue_declare(q, passive=True).method.message_count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # a dead-lettered copy would be back by now
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    # a DLX that does not exist: dropped silently, the channel stays open
    q2 = uniq("nodlx")
    ch.queue_declare(q2, arguments={"x-dead-letter-exchange": uniq("missing")})
    ch.basic_publish("", q2, b"y")
    mf, _, _ = ch.basic_get(q2)
    ch.basic_reject(mf.delivery_tag, requeue=False)
    assert ch.queue_declare(q2, passive=True).method.message_count == 0


@pytest.mark.skipif(bool(RABBIT_URL), reason="restarts an Omnibus data dir")
def test_durable_queue_with_features_survives_restart(omnibus_broker_factory, tmp_path):
    data = tmp_path / "data"
    b = omnibus_broker_factory(data)
    args = {"x-message-ttl": 60000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dq",
            "x-max-length": 5, "x-max-priority": 4}
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("dq", durable=True)
    ch.queue_declare("q", durable=True, arguments=args)
    ch.queue_declare("soon", durable=True, arguments={"x-message-ttl": 400, "x-dead-letter-exchange": "",
                                                       "x-dead-letter-routing-key": "dq"})
    ch.confirm_delivery()
    persistent = pika.BasicProperties(delivery_mode=2)
    ch.basic_publish("", "q", b"low", persistent)
    ch.basic_publish("", "q", b"high", pika.BasicProperties(delivery_mode=2, priority=4))
    ch.basic_publish("", "soon", b"expires-after-restart", persistent)
    conn.close()
    b.stop()
    b = omnibus_broker_factory(data)
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("q", durable=True, arguments=args)  # equivalent: same arguments restored
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().queue_declare("q", durable=True, arguments={**args, "x-max-length": 6})
    assert e.value.reply_code == 406
    mf, props, body = get_within(ch, "dq")
    assert body == b"expires-after-restart" and props.headers["x-death"][0]["queue"] == "soon"
    assert drain(ch, "q") == [b"high", b"low"]  # priorities recovered from the log
    conn.close()
