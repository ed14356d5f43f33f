"""AMQP queue features with aio-pika (asyncio, over aiormq) against a running Omnibus: dead-lettering on
reject, expiry and max-length with x-death, reject-publish nacks with confirms, max-length-bytes,
x-expires, priorities, single active consumer failover, consumer priority, bad arguments (406 closes
only the channel) and a durable queue's TTL/DLX arguments across a restart.

Set ``OMNIBUS_QF_RABBIT_URL`` to run the tests (all but the restart one) against a RabbitMQ node.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import uuid

import aio_pika
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from aio_pika.exceptions import ChannelPreconditionFailed, DeliveryError
from pamqp.commands import Basic

from tests.clients.conftest import bounded

RABBIT_URL = os.environ.get("OMNIBUS_QF_RABBIT_URL", "")


@pytest.fixture
def url(omnibus_broker_factory):
    if RABBIT_URL:
        return RABBIT_URL
    return omnibus_broker_factory().amqp_url


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def get_within(queue: aio_pika.abc.AbstractQueue, seconds: float = 3.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is not None or loop.time() > deadline:
            return msg
        await asyncio.sleep(0.02)


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[bytes]:
    out = []
    while (msg := await queue.get(no_ack=True, fail=False)) is not None:
        out.append(msg.body)
    return out


async def dlx_pair(ch: aio_pika.abc.AbstractChannel, **args):
    dlx = await ch.declare_exchange(uniq("dlx"), ExchangeType.FANOUT)
    dlq = await ch.declare_queue(uniq("dlq"))
    await dlq.bind(dlx)
    work = await ch.declare_queue(uniq("work"), arguments={"x-dead-letter-exchange": dlx.name, **args})
    return dlx, work, dlq


@bounded(20)
async def test_dead_letters_on_reject_expiry_and_max_length(url):
    async with await aio_pika.connect(url, timeout=5) as conn:
        ch = await conn.channel()
        dlx, work, dlq = await dlx_pair(ch, **{"x-max-length": 2})
        await ch.default_exchange.publish(Message(b"r", headers={"k": "v"}), routing_key=work.name)
        msg = await work.get()
        await msg.reject(requeue=False)
        dead = await get_within(dlq)
        assert dead.body == b"r" and dead.exchange == dlx.name and dead.routing_key == work.name
        assert dead.headers["k"] == "v" and dead.headers["x-first-death-reason"] == "rejected"
        [death] = dead.headers["x-death"]
        assert (death["count"], death["reason"], death["queue"], death["exchange"], death["routing-keys"]) == \
            (1, "rejected", work.name, "", [work.name])
        assert isinstance(death["time"], datetime.datetime)
        # per-message expiration: dead-lettered without it, original-expiration in x-death
        await ch.default_exchange.publish(Message(b"e", expiration=0.03), routing_key=work.name)
        dead = await get_within(dlq)
        assert dead.body == b"e" and dead.expiration is None
        death = dead.headers["x-death"][0]
        assert (death["reason"], death["original-expiration"]) == ("expired", "30")
        # max-length 2, drop-head: the oldest go to the DLX, reason maxlen
        for i in range(4):
            await ch.default_exchange.publish(Message(b"m%d" % i), routing_key=work.name)
        got = [await get_within(dlq) for _ in range(2)]
        assert [m.body for m in got] == [b"m0", b"m1"]
        assert {m.headers["x-death"][0]["reason"] for m in got} == {"maxlen"}
        assert await drain(work) == [b"m2", b"m3"]


@bounded(20)
async def test_queue_ttl_dead_letters_with_routing_key(url):
    async with await aio_pika.connect(url, timeout=5) as conn:
        ch = await conn.channel()
        dlq = await ch.declare_queue(uniq("dlq"))
        work = await ch.declare_queue(uniq("ttl"), arguments={
            "x-message-ttl": 40, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq.name})
        await ch.default_exchange.publish(Message(b"old"), routing_key=work.name)
        dead = await get_within(dlq)
        assert dead.body == b"old" and dead.routing_key == dlq.name
        assert dead.headers["x-death"][0]["reason"] == "expired"
        assert await work.get(fail=False) is None


@bounded(20)
async def test_reject_publish_nack_and_max_length_bytes(url):
    async with await aio_pika.connect(url, timeout=5) as conn:
        ch = await conn.channel()  # confirms on
        full = await ch.declare_queue(uniq("full"), arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        for body in (b"a", b"b"):
            assert isinstance(await ch.default_exchange.publish(Message(body), routing_key=full.name), Basic.Ack)
        with pytest.raises(DeliveryError) as e:
            await ch.default_exchange.publish(Message(b"c"), routing_key=full.name)
        assert isinstance(e.value.frame, Basic.Nack)
        assert await drain(full) == [b"a", b"b"]
        sized = await ch.declare_queue(uniq("bytes"), arguments={"x-max-length-bytes": 8})
        for body in (b"1234", b"5678", b"9"):
            await ch.default_exchange.publish(Message(body), routing_key=sized.name)
        assert await drain(sized) == [b"5678", b"9"]


@bounded(20)
async def test_x_expires_and_priorities(url):
    async with await aio_pika.connect(url, timeout=5) as conn:
        ch = await conn.channel()
        gone = await ch.declare_queue(uniq("exp"), arguments={"x-expires": 200})
        prio = await ch.declare_queue(uniq("prio"), arguments={"x-max-priority": 5})
        for body, p in ((b"low", 0), (b"top", 5), (b"mid", 3), (b"over", 9), (b"mid2", 3)):
            await ch.default_exchange.publish(Message(body, priority=p), routing_key=prio.name)
        assert await drain(prio) == [b"top", b"over", b"mid", b"mid2", b"low"]
        await asyncio.sleep(0.5)
        ch2 = await conn.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await ch2.declare_queue(gone.name, passive=True)


@bounded(20)
async def test_single_active_consumer_failover_and_consumer_priority(url):
    async with await aio_pika.connect(url, timeout=5) as conn:
        ch1, ch2 = await conn.channel(), await conn.channel()
        q1 = await ch1.declare_queue(uniq("sac"), arguments={"x-single-active-consumer": True})
        q2 = await ch2.get_queue(q1.name)
        got: asyncio.Queue = asyncio.Queue()

        def on(who):
            async def cb(msg):
                await msg.ack()
                await got.put((who, msg.body))
            return cb

        tag_a = await q1.consume(on("a"))
        await q2.consume(on("b"))
        for i in range(3):
            await ch1.default_exchange.publish(Message(b"%d" % i), routing_key=q1.name)
        assert [await asyncio.wait_for(got.get(), 5) for _ in range(3)] == [("a", b"0"), ("a", b"1"), ("a", b"2")]
        await q1.cancel(tag_a)
        for i in range(3, 5):
            await ch1.default_exchange.publish(Message(b"%d" % i), routing_key=q1.name)
        assert [await asyncio.wait_for(got.get(), 5) for _ in range(2)] == [("b", b"3"), ("b", b"4")]

        # consumer priority: the high one gets messages while it has prefetch capacity
        hi_ch, lo_ch = await conn.channel(), await conn.channel()
        await hi_ch.set_qos(prefetch_count=1)
        q = await hi_ch.declare_queue(uniq("cp"))
        lo_q = await lo_ch.get_queue(q.name)
        seen: asyncio.Queue = asyncio.Queue()
        held = []

        async def hi_cb(msg):
            held.append(msg)  # not acked: capacity 1 stays used
            await seen.put(("hi", msg.body))

        async def lo_cb(msg):
            await msg.ack()
            await seen.put(("lo", msg.body))

        await lo_q.consume(lo_cb, arguments={"x-priority": 0})
        await q.consume(hi_cb, arguments={"x-priority": 5})
        for i in range(3):
            await hi_ch.default_exchange.publish(Message(b"%d" % i), routing_key=q.name)
        out = [await asyncio.wait_for(seen.get(), 5) for _ in range(3)]
        assert sorted(out) == [("hi", b"0"), ("lo", b"1"), ("lo", b"2")]


@bounded(20)
async def test_bad_arguments_close_only_the_channel(url):
    async with await aio_pika.connect(url, timeout=5) as conn:
        for args, term in (({"x-message-ttl": -1}, "{value_negative,-1}"),
                           ({"x-max-priority": 300}, "{max_value_exceeded,300}"),
                           ({"x-overflow": "drop-tail"}, "invalid_overflow")):
            ch = await conn.channel()
            name = uniq("bad")
            with pytest.raises(ChannelPreconditionFailed) as e:
                await ch.declare_queue(name, arguments=args)
            key = next(iter(args))
            assert f"invalid arg '{key}' for queue '{name}' in vhost '/': {term}" in str(e.value)
        ch = await conn.channel()
        name = uniq("ok")
        q = await ch.declare_queue(name, arguments={"x-message-ttl": 500})
        assert q.name == name and not conn.is_closed


@pytest.mark.skipif(bool(RABBIT_URL), reason="restarts an Omnibus data dir")
@bounded(40)
async def test_durable_ttl_dlx_queue_survives_restart(omnibus_broker_factory, tmp_path):
    data = tmp_path / "data"
    b = omnibus_broker_factory(data)
    args = {"x-message-ttl": 300, "x-dead-letter-exchange": "dead", "x-max-length": 10}
    async with await aio_pika.connect(b.amqp_url, timeout=5) as conn:
        ch = await conn.channel()
        dead = await ch.declare_exchange("dead", ExchangeType.FANOUT, durable=True)
        dlq = await ch.declare_queue("dlq", durable=True)
        await dlq.bind(dead)
        await ch.declare_queue("ttl-q", durable=True, arguments=args)
        await ch.default_exchange.publish(Message(b"survivor", delivery_mode=DeliveryMode.PERSISTENT),
                                          routing_key="ttl-q")
    await asyncio.get_running_loop().run_in_executor(None, b.stop)
    b = omnibus_broker_factory(data)
    async with await aio_pika.connect(b.amqp_url, timeout=5) as conn:
        ch = await conn.channel()
        q = await ch.declare_queue("ttl-q", durable=True, arguments=args)  # same arguments: equivalent
        assert q.name == "ttl-q"
        dlq = await ch.get_queue("dlq")
        dead = await get_within(dlq, 5)
        assert dead is not None and dead.body == b"survivor"
        assert dead.headers["x-death"][0]["queue"] == "ttl-q"
