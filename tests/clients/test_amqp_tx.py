"""AMQP transactions (tx.select / tx.commit / tx.rollback) with pika and aio-pika against Omnibus, with
RabbitMQ 3.10.8's rules and texts: ``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs the same tests against a real
node (tests/clients/amqp_target.py)."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.clients.amqp_target import amqp_target_factory  # noqa: F401 (fixture)


@pytest.fixture
def broker(amqp_target_factory):  # noqa: F811
    return amqp_target_factory()


def connect(broker):
    return broker.connect()


def count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def eventually(fn, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while (got := fn()) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def test_commit_and_rollback_of_publishes(broker):
    conn, other = connect(broker), connect(broker)
    ch, och = conn.channel(), other.channel()
    ch.queue_declare("q", durable=True)
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", "q", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    assert count(och, "q") == 0  # nothing visible before the commit
    ch.tx_commit()
    assert count(och, "q") == 3
    ch.basic_publish("", "q", b"dropped")
    ch.tx_rollback()
    ch.basic_publish("", "q", b"m3")
    ch.tx_commit()
    bodies = [och.basic_get("q", auto_ack=True)[2] for _ in range(4)]
    assert bodies == [b"m0", b"m1", b"m2", b"m3"] and count(och, "q") == 0
    # a mandatory publish that routes nowhere is returned at the commit (that is when it is routed)
    returned = []
    ch.add_on_return_callback(lambda _ch, method, _props, body: returned.append((method.reply_text, body)))
    ch.basic_publish("", "no-such-queue", b"r", mandatory=True)
    conn.process_data_events(0.05)
    assert returned == []
    ch.tx_commit()
    conn.process_data_events(0.05)
    assert returned == [("NO_ROUTE", b"r")]
    conn.close()
    other.close()


def test_commit_and_rollback_of_acks(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("q")
    for i in range(4):
        ch.basic_publish("", "q", b"m%d" % i)
    tx = conn.channel()
    tx.tx_select()
    tags = [tx.basic_get("q")[0].delivery_tag for _ in range(4)]
    tx.basic_ack(tags[0])
    tx.basic_nack(tags[1], requeue=True)
    tx.tx_rollback()  # the ack and the nack are undone: both still unacked on tx
    assert count(ch, "q") == 0
    tx.basic_ack(tags[1], multiple=True)  # tags 0 and 1 (0 is unacked again after the rollback)
    tx.basic_reject(tags[3], requeue=True)
    assert count(ch, "q") == 0
    tx.tx_commit()
    assert count(ch, "q") == 1  # the rejected one is back
    assert ch.basic_get("q", auto_ack=True)[2] == b"m3"
    # an ack inside a transaction that is never committed: the channel's close requeues the message
    ch.basic_publish("", "q", b"again")
    assert eventually(lambda: count(ch, "q"), 1) == 1
    tag = tx.basic_get("q")[0].delivery_tag
    tx.basic_ack(tag)
    with pytest.raises(ChannelClosedByBroker) as e:
        tx.basic_ack(tag)  # taken off the unacked set by the first ack, as RabbitMQ does
        tx.tx_commit()
    assert e.value.reply_code == 406 and e.value.reply_text == f"PRECONDITION_FAILED - unknown delivery tag {tag}"
    # "again" (its ack was never committed) and m2 (never acked); RabbitMQ requeues a closed channel's
    # messages asynchronously
    assert eventually(lambda: count(ch, "q"), 2) == 2
    conn.close()


def test_tx_errors(broker):
    conn = connect(broker)

    def refused(fn, text):
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            fn(ch)
        assert (e.value.reply_code, e.value.reply_text) == (406, "PRECONDITION_FAILED - " + text)
        assert conn.is_open

    refused(lambda ch: ch.tx_commit(), "channel is not transactional")
    refused(lambda ch: ch.tx_rollback(), "channel is not transactional")
    refused(lambda ch: (ch.confirm_delivery(), ch.tx_select()), "cannot switch from confirm to tx mode")
    refused(lambda ch: (ch.tx_select(), ch.confirm_delivery()), "cannot switch from tx to confirm mode")
    ch = conn.channel()
    ch.tx_select()
    ch.tx_select()  # again: fine
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_publish("missing", "k", b"x")  # checked when published, not at commit
        ch.tx_commit()
    assert e.value.reply_text == "NOT_FOUND - no exchange 'missing' in vhost '/'"
    conn.close()


def test_committed_persistent_messages_survive_restart(amqp_target_factory):  # noqa: F811
    broker = amqp_target_factory(storage__fsync="always")
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("d", durable=True)
    ch.tx_select()
    for i in range(5):
        ch.basic_publish("", "d", b"p%d" % i, pika.BasicProperties(delivery_mode=2))
    ch.tx_commit()  # answered once the log says the batch is durable
    conn.close()
    broker.restart()
    conn = connect(broker)
    ch = conn.channel()
    assert [ch.basic_get("d", auto_ack=True)[2] for _ in range(5)] == [b"p%d" % i for i in range(5)]
    conn.close()


def test_aio_pika_transaction(broker):
    async def main():
        conn = await aio_pika.connect(broker.amqp_url)
        async with conn:
            ch = await conn.channel(publisher_confirms=False)
            q = await ch.declare_queue("aq")
            async with ch.transaction():
                for i in range(3):
                    await ch.default_exchange.publish(aio_pika.Message(b"t%d" % i), routing_key="aq")
            tx = ch.transaction()
            await tx.select()
            await ch.default_exchange.publish(aio_pika.Message(b"gone"), routing_key="aq")
            await tx.rollback()
            await asyncio.sleep(0.05)
            got = []
            while (m := await q.get(no_ack=True, fail=False)) is not None:
                got.append(m.body)
            assert got == [b"t0", b"t1", b"t2"]

    asyncio.run(asyncio.wait_for(main(), 20))
