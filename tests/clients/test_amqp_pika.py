"""AMQP 0-9-1 with pika (BlockingConnection) against a running Omnibus: the first slice of issue 4."""

from __future__ import annotations

import asyncio
import time

import nats
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker, ProbableAuthenticationError

from omnibus import SyncBroker


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b


def connect(broker, **kw):
    return pika.BlockingConnection(pika.URLParameters(broker.amqp_url + "?" + "&".join(
        f"{k}={v}" for k, v in kw.items())) if kw else pika.URLParameters(broker.amqp_url))


def drain_get(ch, queue):
    out = []
    while True:
        mf, props, body = ch.basic_get(queue, auto_ack=True)
        if mf is None:
            return out
        out.append(body)


def test_publish_confirm_get_and_properties(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q", durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(content_type="application/json", delivery_mode=2, headers={"a": 1, "b": "x"},
                                 correlation_id="c-1", reply_to="r", message_id="m-1", priority=3)
    for i in range(3):
        ch.basic_publish("", "q", b'{"n": %d}' % i, props)  # raises if nacked
    mf, got, body = ch.basic_get("q")
    assert body == b'{"n": 0}' and not mf.redelivered and mf.message_count == 2
    assert (got.content_type, got.delivery_mode, got.headers, got.correlation_id, got.reply_to,
            got.message_id, got.priority) == ("application/json", 2, {"a": 1, "b": "x"}, "c-1", "r", "m-1", 3)
    ch.basic_ack(mf.delivery_tag)
    assert drain_get(ch, "q") == [b'{"n": 1}', b'{"n": 2}']
    assert ch.basic_get("q") == (None, None, None)
    conn.close()


def test_exchange_types_route_like_rabbitmq(broker):
    conn = connect(broker)
    ch = conn.channel()
    for name, kind in (("dx", "direct"), ("tx", "topic"), ("fx", "fanout"), ("hx", "headers")):
        ch.exchange_declare(name, kind)
    for q in ("d", "t1", "t2", "f1", "f2", "h"):
        ch.queue_declare(q)
    ch.queue_bind("d", "dx", "red")
    ch.queue_bind("t1", "tx", "*.orange.*")
    ch.queue_bind("t2", "tx", "lazy.#")
    ch.queue_bind("f1", "fx")
    ch.queue_bind("f2", "fx")
    ch.queue_bind("h", "hx", arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.basic_publish("dx", "red", b"r")
    ch.basic_publish("dx", "blue", b"lost")
    for key in ("quick.orange.rabbit", "lazy.orange.elephant", "lazy", "quick.brown.fox"):
        ch.basic_publish("tx", key, key.encode())
    ch.basic_publish("fx", "ignored", b"all")
    ch.basic_publish("hx", "", b"yes", pika.BasicProperties(headers={"format": "pdf", "type": "report"}))
    ch.basic_publish("hx", "", b"no", pika.BasicProperties(headers={"format": "pdf"}))
    assert drain_get(ch, "d") == [b"r"]
    assert drain_get(ch, "t1") == [b"quick.orange.rabbit", b"lazy.orange.elephant"]
    assert drain_get(ch, "t2") == [b"lazy.orange.elephant", b"lazy"]
    assert drain_get(ch, "f1") == drain_get(ch, "f2") == [b"all"]
    assert drain_get(ch, "h") == [b"yes"]
    conn.close()


def test_consume_prefetch_ack_and_requeue_order(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("work")
    for i in range(6):
        ch.basic_publish("", "work", b"%d" % i)
    ch.basic_qos(prefetch_count=2)
    seen = []
    auto = []

    def on_msg(c, m, p, body):
        seen.append((body, m.redelivered, m.delivery_tag))
        if auto:
            c.basic_ack(m.delivery_tag)

    ch.basic_consume("work", on_msg)
    conn.process_data_events(time_limit=0.3)
    assert [b for b, _, _ in seen] == [b"0", b"1"]  # prefetch 2: nothing more until one is settled
    ch.basic_nack(seen[0][2], requeue=True)  # back to its original position, redelivered
    conn.process_data_events(time_limit=0.3)
    assert [(b, r) for b, r, _ in seen] == [(b"0", False), (b"1", False), (b"0", True)]
    auto.append(True)
    ch.basic_ack(seen[2][2], multiple=True)  # settles tags 2 and 3 ("1" and the redelivered "0")
    deadline = time.monotonic() + 5
    while len(seen) < 7 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert [b for b, _, _ in seen] == [b"0", b"1", b"0", b"2", b"3", b"4", b"5"]
    assert ch.queue_declare("work", passive=True).method.message_count == 0
    conn.close()


def test_mandatory_return_then_confirm(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("amq.direct", "nobody", b"x", mandatory=True)
    conn.close()


def test_errors_close_only_the_channel(broker):
    conn = connect(broker)
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare("missing", passive=True)
    assert e.value.reply_code == 404 and e.value.reply_text == "NOT_FOUND - no queue 'missing' in vhost '/'"
    ch2 = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch2.basic_publish("no-such-exchange", "k", b"x")
        ch2.queue_declare("after")  # the close arrives before this completes
    assert e.value.reply_code == 404
    ch3 = conn.channel()
    ch3.queue_declare("q", durable=True)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch3.queue_declare("q", durable=False)
    assert e.value.reply_code == 406 and "inequivalent arg 'durable' for queue 'q'" in e.value.reply_text
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().exchange_declare("amq.custom", "direct")
    assert e.value.reply_code == 403
    assert conn.channel().queue_declare("q", durable=True).method.queue == "q"  # connection still fine
    conn.close()


def test_exclusive_and_auto_delete_lifecycles(broker):
    owner = connect(broker)
    other = connect(broker)
    och = owner.channel()
    q = och.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-") and len(q) == len("amq.gen-") + 22
    with pytest.raises(ChannelClosedByBroker) as e:
        other.channel().queue_declare(q, passive=True)
    assert e.value.reply_code == 405
    och.queue_declare("ad", auto_delete=True)
    tag = och.basic_consume("ad", lambda *a: None)
    och.basic_cancel(tag)
    with pytest.raises(ChannelClosedByBroker):
        other.channel().queue_declare("ad", passive=True)  # deleted with its last consumer
    owner.close()
    time.sleep(0.1)
    with pytest.raises(ChannelClosedByBroker) as e:
        other.channel().queue_declare(q, passive=True)  # deleted with its connection
    assert e.value.reply_code == 404
    other.close()


def test_unacked_messages_are_requeued_when_the_channel_closes(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("jobs")
    ch.basic_publish("", "jobs", b"job")
    mf, _, body = ch.basic_get("jobs")
    assert body == b"job"
    ch.close()
    ch = conn.channel()
    mf, _, body = ch.basic_get("jobs", auto_ack=True)
    assert body == b"job" and mf.redelivered
    conn.close()


def test_durable_queue_and_confirmed_messages_survive_restart(tmp_path):
    with SyncBroker(tmp_path) as b:
        conn = connect(b)
        ch = conn.channel()
        ch.exchange_declare("orders", "topic", durable=True)
        ch.queue_declare("eu", durable=True)
        ch.queue_bind("eu", "orders", "eu.#")
        ch.confirm_delivery()
        for i in range(10):
            ch.basic_publish("orders", "eu.new", b"%d" % i, pika.BasicProperties(delivery_mode=2))
        conn.close()
    with SyncBroker(tmp_path) as b:
        conn = connect(b)
        ch = conn.channel()
        assert ch.queue_declare("eu", passive=True).method.message_count == 10
        ch.basic_publish("orders", "eu.again", b"bound")  # the durable binding came back too
        assert drain_get(ch, "eu") == [b"%d" % i for i in range(10)] + [b"bound"]
        conn.close()


def test_bad_credentials_and_unknown_vhost(broker):
    bad = pika.URLParameters(broker.amqp_url.replace("guest:guest", "guest:wrong"))
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(bad)
    vhost = pika.URLParameters(broker.amqp_url + "other")
    with pytest.raises((ConnectionClosedByBroker, pika.exceptions.ProbableAccessDeniedError)):
        pika.BlockingConnection(vhost)
    conn = connect(broker)  # the broker keeps serving
    conn.channel().queue_declare("fine")
    conn.close()


def test_amqp_and_nats_meet_on_amq_topic(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("from-nats")
    ch.queue_bind("from-nats", "amq.topic", "sensors.*.temp")

    async def nats_side():
        nc = await nats.connect(broker.nats_url)
        sub = await nc.subscribe("alerts.>")
        await nc.flush()
        await nc.publish("sensors.kitchen.temp", b"21.5")
        await nc.flush()
        await asyncio.to_thread(ch.basic_publish, "amq.topic", "alerts.fire", b"from amqp")
        msg = await sub.next_msg(timeout=3)
        await nc.close()
        return msg.subject, msg.data

    assert asyncio.run(nats_side()) == ("alerts.fire", b"from amqp")
    assert drain_get(ch, "from-nats") == [b"21.5"]
    conn.close()
