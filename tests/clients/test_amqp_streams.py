"""AMQP stream queues (``x-queue-type=stream``) with pika against Omnibus, as RabbitMQ 3.10 serves them over
AMQP 0-9-1: consumers read by ``x-stream-offset`` with a prefetch, acks only give credit back, messages
stay. Codes and texts as RabbitMQ 3.10.8 answers: ``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs the same tests
against a real node (tests/clients/amqp_target.py)."""

from __future__ import annotations

import asyncio
import datetime
import time

import aio_pika
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from tests.clients.amqp_target import amqp_target_factory  # noqa: F401 (fixture)

STREAM = {"x-queue-type": "stream"}


@pytest.fixture
def broker(amqp_target_factory):  # noqa: F811
    return amqp_target_factory()


def connect(broker):
    return broker.connect()


def publish(ch, queue, bodies, **props):
    ch.confirm_delivery()
    for b in bodies:
        ch.basic_publish("", queue, b, pika.BasicProperties(**props))


def consume(conn, queue, offset=None, *, want, prefetch=100, ack=True, timeout=5.0, quiet=0.2, keep=False):
    """Consume on a new channel until ``want`` messages came (then wait ``quiet`` s for extra ones); the
    channel is closed then unless ``keep`` (pika rejects what it buffered for a cancelled consumer, and a
    stream answers a reject with 540)."""
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    got = []

    def on(_ch, method, props, body):
        got.append((body, props.headers.get("x-stream-offset")))
        if ack:
            _ch.basic_ack(method.delivery_tag)

    args = {} if offset is None else {"x-stream-offset": offset}
    ch.basic_consume(queue, on, arguments=args)
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.process_data_events(quiet)
    if not keep:
        ch.close()
    return ch, got


def declare_stream(conn, name, arguments=None, timeout=30.0):
    """queue.declare of a durable stream; after a restart RabbitMQ answers 404 "home node ... is down or
    inaccessible" until the stream is back, so retry that for a while."""
    deadline = time.monotonic() + timeout
    while True:
        ch = conn.channel()
        try:
            ch.queue_declare(name, durable=True, arguments={**STREAM, **(arguments or {})})
            return ch
        except ChannelClosedByBroker as e:
            if e.reply_code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_declare_rules(broker):
    conn = connect(broker)
    for kw, prop in (({"durable": False}, "non-durable"), ({"durable": True, "exclusive": True}, "exclusive-owner"),
                     ({"durable": True, "auto_delete": True}, "auto-delete")):
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            ch.queue_declare("s1", arguments=STREAM, **kw)
        assert (e.value.reply_code, e.value.reply_text) == (
            406, f"PRECONDITION_FAILED - invalid property '{prop}' for queue 's1' in vhost '/'")
    ch = conn.channel()
    ok = ch.queue_declare("s", durable=True, arguments=STREAM)
    assert ok.method.message_count == 0
    publish(ch, "s", [b"a", b"b"])
    assert ch.queue_declare("s", durable=True, arguments=STREAM).method.message_count == 0  # as RabbitMQ
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume("s", lambda *a: None)
    assert (e.value.reply_code, e.value.reply_text) == (
        406, "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's' in vhost '/''")
    conn.close()

    for action, text in ((lambda ch: ch.basic_get("s"), "basic.get not supported by stream queues"),
                         (lambda ch: ch.queue_purge("s"), "queue.purge not supported by stream queues"),
                         (lambda ch: (ch.basic_qos(prefetch_count=1), ch.basic_consume("s", lambda *a: None,
                                                                                       auto_ack=True)),
                          "automatic acknowledgement not supported by stream queues")):
        conn = connect(broker)
        with pytest.raises(ConnectionClosedByBroker) as e:
            action(conn.channel())
        assert (e.value.reply_code, e.value.reply_text) == (540, f"NOT_IMPLEMENTED - {text} queue 's' in vhost '/'")
    conn = connect(broker)
    with pytest.raises(ConnectionClosedByBroker) as e:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume("s", lambda *a: None, arguments={"x-stream-offset": "bogus"})
    assert (e.value.reply_code, e.value.reply_text) == (541, "INTERNAL_ERROR")


def test_offsets(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("s", durable=True, arguments=STREAM)
    publish(ch, "s", [b"m0", b"m1", b"m2"])
    publish(ch, "s", [b"m3", b"m4"])  # the confirm round trips make these later batches
    every = [(b"m%d" % i, i) for i in range(5)]
    assert consume(conn, "s", "first", want=5)[1] == every
    assert consume(conn, "s", 3, want=2)[1] == every[3:]
    assert consume(conn, "s", 99, want=0)[1] == []  # past the end: waits at the end
    assert consume(conn, "s", "1h", want=5)[1] == every
    hour_ago = datetime.datetime.fromtimestamp(time.time() - 3600)  # pika sends a datetime as a timestamp
    assert consume(conn, "s", hour_ago, want=5)[1] == every
    in_an_hour = datetime.datetime.fromtimestamp(time.time() + 3600)
    assert consume(conn, "s", in_an_hour, want=0)[1] == []
    last = consume(conn, "s", "last", want=1)[1]
    assert last and last[-1] == (b"m4", 4) and len(last) < 5  # from the last batch (RabbitMQ: last chunk)
    sub, got = consume(conn, "s", None, want=0, keep=True)  # default "next": only what comes from now on
    assert got == []
    publish(ch, "s", [b"m5"])
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    assert got == [(b"m5", 5)]
    conn.close()


def test_two_consumers_read_independently_and_acks_are_credit(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("s", durable=True, arguments=STREAM)
    publish(ch, "s", [b"x%d" % i for i in range(10)])
    _, a = consume(conn, "s", "first", want=10)
    bch, b = consume(conn, "s", "first", want=3, prefetch=3, ack=False, keep=True)
    assert [o for _, o in a] == list(range(10))
    assert [o for _, o in b] == [0, 1, 2]  # no acks: the prefetch holds it at three
    _, c = consume(conn, "s", "first", want=10)  # acked messages stay in the stream
    assert len(c) == 10
    bch.basic_nack(0, multiple=True)  # a stream takes nothing back: 540, the connection closes
    with pytest.raises(ConnectionClosedByBroker) as e:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            conn.process_data_events(0.1)
    assert (e.value.reply_code, e.value.reply_text) == (
        540, "NOT_IMPLEMENTED - basic.nack and basic.reject not supported by stream queues queue 's' in vhost '/'")


def test_stream_survives_restart(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("s", durable=True, arguments={**STREAM, "x-max-age": "7D"})
    publish(ch, "s", [b"p%d" % i for i in range(4)], delivery_mode=2)
    conn.close()
    broker.restart()
    conn = connect(broker)
    ch = declare_stream(conn, "s", {"x-max-age": "7D"})
    publish(ch, "s", [b"p4"])
    assert consume(conn, "s", "first", want=5)[1] == [(b"p%d" % i, i) for i in range(5)]
    conn.close()


def test_retention_by_size(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("s", durable=True, arguments={**STREAM, "x-max-length-bytes": 4000,
                                                   "x-stream-max-segment-size-bytes": 1000})
    sent = [b"%03d" % i + b"z" * 197 for i in range(80)]
    publish(ch, "s", sent)
    got = [b for b, _ in consume(conn, "s", "first", want=1)[1]]
    # whole old segments went when new ones were started; what is left is the tail, in order (RabbitMQ's
    # offsets are not message numbers, so bodies are compared)
    assert got and got[0] != sent[0] and got == sent[-len(got):]
    # osiris keeps at most the limit (oldest segments go while over it): 200 bytes of body plus under 100
    # of framing per message, segments of 1000 bytes
    assert (4000 - 2 * 1000) // 300 <= len(got) <= 4000 // 200
    conn.close()


def test_retention_by_age(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("s", durable=True, arguments={**STREAM, "x-max-age": "1s",
                                                   "x-stream-max-segment-size-bytes": 1000})
    old = [b"old%02d" % i + b"-" * 295 for i in range(10)]
    new = [b"new%02d" % i + b"-" * 295 for i in range(10)]
    publish(ch, "s", old)
    time.sleep(1.2)  # the age limit (1 s is the least x-max-age can say)
    publish(ch, "s", new)  # rolls segments: retention looks at the old ones
    got = [b for b, _ in consume(conn, "s", "first", want=1)[1]]
    # the segments wholly older than 1 s went; one that also holds new messages stays
    sent = old + new
    assert got[-10:] == new and got == sent[-len(got):] and len(got) < 13
    conn.close()


def test_bad_max_age(broker):
    conn = connect(broker)
    with pytest.raises(ConnectionClosedByBroker) as e:
        conn.channel().queue_declare("s", durable=True, arguments={**STREAM, "x-max-age": "bogus"})
    assert (e.value.reply_code, e.value.reply_text) == (541, "INTERNAL_ERROR")


def test_aio_pika_stream_consumer(broker):
    async def main():
        conn = await aio_pika.connect(broker.amqp_url)
        async with conn:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=10)
            q = await ch.declare_queue("as", durable=True, arguments=STREAM)
            for i in range(3):
                await ch.default_exchange.publish(aio_pika.Message(b"a%d" % i), routing_key="as")
            got = []
            async with q.iterator(arguments={"x-stream-offset": "first"}) as it:
                async for msg in it:
                    got.append((msg.body, msg.headers["x-stream-offset"]))
                    await msg.ack()
                    if len(got) == 3:
                        break
            assert got == [(b"a0", 0), (b"a1", 1), (b"a2", 2)]

    asyncio.run(asyncio.wait_for(main(), 20))
