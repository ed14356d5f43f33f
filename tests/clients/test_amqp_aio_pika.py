"""AMQP 0-9-1 with aio-pika (asyncio, over aiormq) against a running Omnibus.

Covers what aio-pika users do every day: declare, publish with confirms (aio-pika turns them on by
default), consume with manual ack and prefetch, reject/requeue, a topic exchange, get, and the robust
connection: when the broker goes away and comes back on the same port and data dir, ``connect_robust``
reconnects, re-declares its topology, restores its consumers, and the durable queue's confirmed messages
are still there. Every test is bounded in time.
"""

from __future__ import annotations

import asyncio

import aio_pika
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from pamqp.commands import Basic

from bench._servers import free_port
from omnibus import SyncBroker
from tests.clients.conftest import bounded


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b


async def take(queue: asyncio.Queue, n: int, timeout: float = 5.0) -> list:
    return [await asyncio.wait_for(queue.get(), timeout) for _ in range(n)]


@bounded(30)
async def test_publish_consume_ack(broker):
    conn = await aio_pika.connect(broker.amqp_url, timeout=5)
    async with conn:
        ch = await conn.channel()  # publisher confirms on by default
        await ch.set_qos(prefetch_count=3)
        q = await ch.declare_queue("aio-work", durable=True)
        for i in range(10):
            confirm = await ch.default_exchange.publish(
                Message(b"job %d" % i, delivery_mode=DeliveryMode.PERSISTENT, headers={"n": i},
                        content_type="text/plain", correlation_id=f"c{i}"),
                routing_key="aio-work")
            assert isinstance(confirm, Basic.Ack)
        got: asyncio.Queue = asyncio.Queue()
        held: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            held.append(msg)
            await got.put((msg.body, msg.headers, msg.correlation_id, msg.redelivered))

        tag = await q.consume(on_message)
        first = await take(got, 3)
        assert [b for b, *_ in first] == [b"job 0", b"job 1", b"job 2"]
        assert first[1][1:] == ({"n": 1}, "c1", False)
        await asyncio.sleep(0.2)
        assert got.empty()  # prefetch 3: nothing more until something is settled
        await held[0].ack()
        await held[1].reject(requeue=True)  # comes back first, redelivered
        nxt = await take(got, 2)
        assert sorted(nxt) == sorted([(b"job 1", {"n": 1}, "c1", True), (b"job 3", {"n": 3}, "c3", False)])
        for m in held[2:]:
            await m.ack()
        held.clear()

        async def ack_all() -> None:
            while True:
                if held:
                    await held.pop(0).ack()
                else:
                    await asyncio.sleep(0.01)

        acker = asyncio.create_task(ack_all())
        rest = await take(got, 6)
        acker.cancel()
        assert sorted(b for b, *_ in rest) == [b"job %d" % i for i in range(4, 10)]
        await q.cancel(tag)
        await asyncio.sleep(0.1)
        while held:
            await held.pop(0).ack()
        declared = await ch.declare_queue("aio-work", passive=True)
        assert declared.declaration_result.message_count == 0


@bounded(30)
async def test_topic_exchange_get_and_mandatory_return(broker):
    conn = await aio_pika.connect(broker.amqp_url, timeout=5)
    async with conn:
        ch = await conn.channel(on_return_raises=True)
        x = await ch.declare_exchange("aio-topic", ExchangeType.TOPIC, auto_delete=True)
        q = await ch.declare_queue(exclusive=True)  # server-named
        assert q.name.startswith("amq.gen-")
        await q.bind(x, "eu.*.orders")
        await x.publish(Message(b"yes"), routing_key="eu.fr.orders")
        await x.publish(Message(b"no"), routing_key="us.ny.orders", mandatory=False)  # aio-pika: True by default
        msg = await q.get(timeout=5)
        assert msg.body == b"yes" and msg.routing_key == "eu.fr.orders" and msg.exchange == "aio-topic"
        await msg.ack()
        assert await q.get(fail=False, timeout=5) is None
        with pytest.raises(aio_pika.exceptions.DeliveryError) as e:
            await x.publish(Message(b"lost"), routing_key="nowhere", mandatory=True)
        assert e.value.frame is not None and e.value.frame.reply_code == 312


@bounded(30)
async def test_channel_error_is_raised_and_connection_survives(broker):
    conn = await aio_pika.connect(broker.amqp_url, timeout=5)
    async with conn:
        ch = await conn.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as e:
            await ch.declare_queue("aio-missing", passive=True)
        assert "NOT_FOUND - no queue 'aio-missing' in vhost '/'" in str(e.value)
        ch2 = await conn.channel()
        q = await ch2.declare_queue("aio-after", auto_delete=True)
        await ch2.default_exchange.publish(Message(b"ok"), routing_key=q.name)
        msg = await q.get(timeout=5)
        assert msg.body == b"ok"
        await msg.ack()


@bounded(60)
async def test_robust_connection_reconnects_after_broker_restart(tmp_path):
    port = free_port()
    settings = {"amqp_port": port}
    b = await asyncio.to_thread(lambda: SyncBroker(tmp_path, settings=settings).start())
    try:
        conn = await aio_pika.connect_robust(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=5,
                                             reconnect_interval=0.3)
        reconnected = asyncio.Event()
        conn.reconnect_callbacks.add(lambda *_: reconnected.set())
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=10)
        q = await ch.declare_queue("aio-robust", durable=True)
        got: asyncio.Queue = asyncio.Queue()

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            await got.put(msg.body)
            await msg.ack()

        await q.consume(on_message)
        await ch.default_exchange.publish(Message(b"before", delivery_mode=DeliveryMode.PERSISTENT),
                                          routing_key="aio-robust")
        assert await take(got, 1) == [b"before"]

        # stop the broker; publish a confirmed persistent message from another connection after restart
        # ... but first one confirmed while nobody consumes it, to prove it survives the restart
        other = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=5)
        och = await other.channel()
        oq = await och.declare_queue("aio-kept", durable=True)
        await och.default_exchange.publish(Message(b"kept", delivery_mode=DeliveryMode.PERSISTENT),
                                           routing_key="aio-kept")
        await asyncio.to_thread(b.stop)
        await asyncio.sleep(0.5)
        b = await asyncio.to_thread(lambda: SyncBroker(tmp_path, settings=settings).start())
        await asyncio.wait_for(reconnected.wait(), 20)
        await asyncio.sleep(0.3)  # the robust channel re-declares its queue and consumer
        await ch.default_exchange.publish(Message(b"after", delivery_mode=DeliveryMode.PERSISTENT),
                                          routing_key="aio-robust")
        assert await take(got, 1, timeout=10) == [b"after"]
        kept_q = await ch.declare_queue("aio-kept", durable=True)
        msg = await kept_q.get(timeout=5)
        assert msg.body == b"kept"
        await msg.ack()
        await conn.close()
        try:
            await asyncio.wait_for(other.close(), 2)
        except Exception:
            pass  # the plain connection died with the first broker
        del oq
    finally:
        await asyncio.to_thread(b.stop)
