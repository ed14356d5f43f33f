"""AMQP 0-9-1 edge semantics with pika, aiormq and aio-pika, as RabbitMQ 3.10 has them: the server-sent
basic.cancel when a consumed queue is deleted (``consumer_cancel_notify``), exclusive and auto-delete
lifecycles, ``immediate`` (540), mandatory returns ahead of the confirm, basic.recover, basic.qos global
vs per-consumer, single-active-consumer hand-over by consumer priority, and an aio-pika robust connection
re-declaring its transient queue after a broker restart.

``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs the same tests against a real RabbitMQ 3.10.8 node
(tests/clients/amqp_target.py); every test passes on both.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import aiormq
import pika
import pytest
from pamqp.commands import Basic
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from tests.clients.amqp_target import amqp_target_factory  # noqa: F401 (fixture)


@pytest.fixture
def broker(amqp_target_factory):  # noqa: F811
    return amqp_target_factory()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pump(conn, until, timeout: float = 3.0) -> None:
    """Process pika events until ``until()`` holds (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)


def settle(conn, seconds: float = 0.3) -> None:
    """Process events for a while (to see that nothing more arrives)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)


def exists(broker, queue: str) -> bool:
    c = broker.connect()
    try:
        c.channel().queue_declare(queue, passive=True)
        return True
    except ChannelClosedByBroker as e:
        assert e.reply_code == 404
        return False
    finally:
        if c.is_open:
            c.close()


def test_deleting_a_consumed_queue_cancels_its_consumers(broker):
    """consumer_cancel_notify: the consumer gets basic.cancel, the channel stays open."""
    conn, other = broker.connect(), broker.connect()
    ch = conn.channel()
    q = uniq("cancelled")
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    tag2 = ch.basic_consume(q, lambda *a: None)
    other.channel().queue_delete(q)
    pump(conn, lambda: len(cancelled) == 2)
    assert sorted(cancelled) == sorted([tag, tag2])
    assert ch.is_open and ch.consumer_tags == []
    assert ch.queue_declare(uniq("still-open")).method.message_count == 0  # the channel still works
    conn.close()
    other.close()


def test_auto_delete_lifecycle(broker):
    conn = broker.connect()
    ch1, ch2 = conn.channel(), conn.channel()
    q = uniq("ad")
    ch1.queue_declare(q, auto_delete=True)
    settle(conn, 0.1)
    assert exists(broker, q)  # never had a consumer: stays
    t1 = ch1.basic_consume(q, lambda *a: None)
    ch2.basic_consume(q, lambda *a: None)
    ch1.basic_cancel(t1)
    assert exists(broker, q)  # one consumer left
    ch2.close()  # the last consumer goes with its channel
    settle(conn, 0.1)
    assert not exists(broker, q)
    conn.close()


def test_exclusive_queue_and_exclusive_consumer(broker):
    owner, other = broker.connect(), broker.connect()
    och = owner.channel()
    q = och.queue_declare("", exclusive=True).method.queue
    for attempt in ("consume", "get", "purge", "delete", "bind"):
        ch = other.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            if attempt == "consume":
                ch.basic_consume(q, lambda *a: None)
            elif attempt == "get":
                ch.basic_get(q)
            elif attempt == "purge":
                ch.queue_purge(q)
            elif attempt == "delete":
                ch.queue_delete(q)
            else:
                ch.queue_bind(q, "amq.fanout")
        assert e.value.reply_code == 405, attempt
        assert e.value.reply_text == (
            f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be "
            "originally declared on another connection or the exclusive property value does not match that of "
            "the original declaration."), attempt
    # an exclusive consumer keeps others off a shared queue
    shared = uniq("shared")
    och.queue_declare(shared)
    och.basic_consume(shared, lambda *a: None, exclusive=True)
    with pytest.raises(ChannelClosedByBroker) as e:
        other.channel().basic_consume(shared, lambda *a: None)
    assert (e.value.reply_code, e.value.reply_text) == (
        403, f"ACCESS_REFUSED - queue '{shared}' in vhost '/' in exclusive use")
    owner.close()
    time.sleep(0.1)
    assert not exists(broker, q)  # gone with its connection
    assert exists(broker, shared)  # not exclusive, not auto-delete: stays
    other.channel().queue_delete(shared)
    other.close()


def test_immediate_is_not_implemented(broker):
    async def main():
        conn = await aiormq.connect(broker.amqp_url)
        ch = await conn.channel()  # confirms on: the publish waits for its answer, here the close
        with pytest.raises(aiormq.exceptions.ConnectionNotImplemented) as e:  # aiormq's class for 540
            await ch.basic_publish(b"x", routing_key="nowhere", immediate=True)
        assert str(e.value) == "NOT_IMPLEMENTED - immediate=true"

    asyncio.run(asyncio.wait_for(main(), 20))


def test_mandatory_return_comes_before_the_confirm(broker):
    """aiormq resolves a publish with the returned message only when basic.return arrives before the
    basic.ack of that publish; a routed mandatory publish gets just the ack."""
    async def main():
        conn = await aiormq.connect(broker.amqp_url)
        ch = await conn.channel(publisher_confirms=True, on_return_raises=False)
        q = uniq("routed")
        await ch.queue_declare(q, auto_delete=False)
        props = Basic.Properties(message_id="m-1", headers={"h": "v"})
        result = await ch.basic_publish(b"lost", exchange="amq.direct", routing_key="nobody",
                                        properties=props, mandatory=True)
        assert isinstance(result, aiormq.abc.DeliveredMessage), result
        assert result.body == b"lost" and result.header.properties.headers == {"h": "v"}
        ret = result.delivery
        assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (
            312, "NO_ROUTE", "amq.direct", "nobody")
        ok = await ch.basic_publish(b"kept", routing_key=q, properties=Basic.Properties(message_id="m-2"),
                                    mandatory=True)
        assert isinstance(ok, Basic.Ack)
        await ch.queue_delete(q)
        await conn.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_recover_requeues_unacked_and_redelivers(broker):
    conn = broker.connect()
    ch = conn.channel()
    q = uniq("recover")
    ch.queue_declare(q)
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((b, m.redelivered, m.delivery_tag)))
    pump(conn, lambda: len(got) == 3)
    assert [(b, r) for b, r, _ in got] == [(b"0", False), (b"1", False), (b"2", False)]
    ch.basic_recover(requeue=True)
    pump(conn, lambda: len(got) == 6)
    again = got[3:]
    assert [(b, r) for b, r, _ in again] == [(b"0", True), (b"1", True), (b"2", True)]
    assert [t for _, _, t in again] == [4, 5, 6]  # new delivery tags
    ch.basic_ack(6, multiple=True)
    settle(conn, 0.1)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    with pytest.raises(ConnectionClosedByBroker) as e:  # RabbitMQ: requeue=false is not implemented
        ch.basic_recover(requeue=False)
    assert (e.value.reply_code, e.value.reply_text) == (540, "NOT_IMPLEMENTED - requeue=false")


def _consume_counts(conn, ch, queues: list[str]) -> list[int]:
    counts = [0] * len(queues)
    for i, q in enumerate(queues):
        ch.basic_consume(q, lambda c, m, p, b, i=i: counts.__setitem__(i, counts[i] + 1))
    settle(conn, 0.4)
    return counts


def test_qos_global_and_per_consumer(broker):
    """RabbitMQ 3.3+: global=false limits each consumer created afterwards on the channel; global=true
    limits the whole channel; both at once apply together."""
    conn = broker.connect()
    setup = conn.channel()
    queues = [uniq(f"qos{i}") for i in range(6)]
    for q in queues:
        setup.queue_declare(q)
        for i in range(10):
            setup.basic_publish("", q, b"%d" % i)
    per_consumer = conn.channel()
    per_consumer.basic_qos(prefetch_count=2)
    assert _consume_counts(conn, per_consumer, queues[0:2]) == [2, 2]
    whole_channel = conn.channel()
    whole_channel.basic_qos(prefetch_count=3, global_qos=True)
    counts = _consume_counts(conn, whole_channel, queues[2:4])
    assert sum(counts) == 3 and counts[0] == 3  # the first consumer took the channel's whole budget
    both = conn.channel()
    both.basic_qos(prefetch_count=2)
    both.basic_qos(prefetch_count=3, global_qos=True)
    assert _consume_counts(conn, both, queues[4:6]) == [2, 1]
    conn.close()


def test_single_active_consumer_hands_over_to_the_highest_priority(broker):
    """rabbit_amqqueue_process: the first consumer is active whatever its priority (a later higher one
    does not take over); when it goes, the highest x-priority waiting consumer (the earliest among equals)
    becomes active."""
    conn = broker.connect()
    ch = conn.channel()
    q = uniq("sac-prio")
    ch.queue_declare(q, arguments={"x-single-active-consumer": True})
    got: dict[str, list[bytes]] = {k: [] for k in ("first", "low", "high", "high2")}

    def consumer(name, priority):
        return ch.basic_consume(q, lambda c, m, p, b: got[name].append(b), auto_ack=True,
                                arguments={"x-priority": priority})

    t_first = consumer("first", 0)
    consumer("low", 1)
    t_high = consumer("high", 5)
    consumer("high2", 5)
    ch.basic_publish("", q, b"a")
    pump(conn, lambda: got["first"])
    ch.basic_cancel(t_first)
    ch.basic_publish("", q, b"b")
    pump(conn, lambda: got["high"])
    ch.basic_cancel(t_high)
    ch.basic_publish("", q, b"c")
    pump(conn, lambda: got["high2"])
    settle(conn, 0.1)
    assert got == {"first": [b"a"], "low": [], "high": [b"b"], "high2": [b"c"]}
    conn.close()


def test_robust_connection_redeclares_its_transient_queue_after_a_restart(broker):
    """aio-pika's robust connection: after the broker restarts, the transient queue (gone with the
    restart) is declared again, bound again, and consumption resumes on it."""
    async def main():
        conn = await aio_pika.connect_robust(broker.amqp_url, timeout=5, reconnect_interval=0.3)
        reconnected = asyncio.Event()
        conn.reconnect_callbacks.add(lambda *_: reconnected.set())
        ch = await conn.channel()
        x = await ch.declare_exchange("robust-x", aio_pika.ExchangeType.DIRECT, durable=False)
        q = await ch.declare_queue("robust-transient", durable=False)
        await q.bind(x, "k")
        got: asyncio.Queue = asyncio.Queue()

        async def on_message(msg):
            await got.put(msg.body)
            await msg.ack()

        await q.consume(on_message)
        await x.publish(aio_pika.Message(b"before"), routing_key="k")
        assert await asyncio.wait_for(got.get(), 5) == b"before"
        await asyncio.to_thread(broker.restart)
        await asyncio.wait_for(reconnected.wait(), 30)
        deadline = time.monotonic() + 10
        while True:  # the robust channel restores exchange, queue, binding and consumer after reconnecting
            await x.publish(aio_pika.Message(b"after"), routing_key="k")
            try:
                assert await asyncio.wait_for(got.get(), 0.5) == b"after"
                break
            except (asyncio.TimeoutError, TimeoutError):
                assert time.monotonic() < deadline, "consumption did not resume"
        await conn.close()

    asyncio.run(asyncio.wait_for(main(), 60))
