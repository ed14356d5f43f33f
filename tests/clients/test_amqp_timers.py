"""Queue expiry that does not wait for an AMQP client: after a restart the broker arms the TTL and
``x-expires`` timers of restored queues by itself, and messages that arrive from NATS (design decision 6:
a NATS publish is routed through amq.topic) arm the TTL timer of the queue they land in and reach its
waiting AMQP consumers. pika and nats-py against Omnibus (the NATS interop and the restart are
Omnibus's; the expiry semantics are RabbitMQ's, checked by tests/clients/test_amqp_queue_features.py).
"""

from __future__ import annotations

import asyncio
import time

import nats
import pika
import pytest
from pika.exceptions import ChannelClosedByBroker


def wait_for(fn, want, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while (got := fn()) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def get_within(ch, queue: str, seconds: float = 3.0):
    deadline = time.monotonic() + seconds
    while True:
        mf, props, body = ch.basic_get(queue, auto_ack=True)
        if mf is not None or time.monotonic() > deadline:
            return mf, props, body
        time.sleep(0.02)


def nats_publish(url: str, items: list[tuple[str, bytes]]) -> None:
    async def main():
        nc = await nats.connect(url)
        for subject, payload in items:
            await nc.publish(subject, payload)
        await nc.flush()
        await nc.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_restored_queues_expire_without_any_client(omnibus_broker_factory, tmp_path):
    """A durable TTL queue with a DLX dead-letters its expired messages after a restart, and a durable
    queue with x-expires is deleted, while no connection of any protocol is open."""
    data = tmp_path / "data"
    b = omnibus_broker_factory(data)
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("dead", durable=True)
    ch.queue_declare("ttl", durable=True, arguments={"x-message-ttl": 2000, "x-dead-letter-exchange": "",
                                                     "x-dead-letter-routing-key": "dead"})
    ch.queue_declare("idle", durable=True, arguments={"x-expires": 1000})
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "ttl", b"m%d" % i, pika.BasicProperties(delivery_mode=2))
    conn.close()
    b.stop()

    b = omnibus_broker_factory(data)

    def state():
        queues = b.server.vhosts["/"].queues
        return (queues["ttl"].message_count if "ttl" in queues else None,
                queues["dead"].message_count if "dead" in queues else None,
                "idle" in queues)

    assert b.call(state)[2]  # restored
    assert wait_for(lambda: b.call(state), (0, 3, False), timeout=8) == (0, 3, False)
    assert not b.server.connections  # nobody opened the vhost: the broker's own timers did it

    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    got = []
    for _ in range(3):
        mf, props, body = ch.basic_get("dead", auto_ack=True)
        got.append(body)
        death = props.headers["x-death"][0]
        assert (death["queue"], death["reason"], death["count"]) == ("ttl", "expired", 1)
    assert got == [b"m0", b"m1", b"m2"]
    with pytest.raises(ChannelClosedByBroker) as e:
        conn.channel().queue_declare("idle", passive=True)
    assert e.value.reply_code == 404
    conn.close()


def test_nats_publish_into_a_ttl_queue_expires(omnibus_broker):
    b = omnibus_broker
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("sensor-dead")
    ch.queue_declare("sensor-ttl", arguments={"x-message-ttl": 200, "x-dead-letter-exchange": "",
                                              "x-dead-letter-routing-key": "sensor-dead"})
    ch.queue_bind("sensor-ttl", "amq.topic", "sensors.#")
    nats_publish(b.nats_url, [("sensors.a.temp", b"21.5"), ("sensors.b.temp", b"19.0")])
    got = []
    for _ in range(2):  # basic.get on the dead-letter queue: the TTL queue itself is not touched
        mf, props, body = get_within(ch, "sensor-dead", 5)
        assert mf is not None, "the NATS-published messages did not expire"
        death = props.headers["x-death"][0]
        got.append((body, death["reason"], death["exchange"], death["routing-keys"]))
    assert got == [(b"21.5", "expired", "amq.topic", ["sensors.a.temp"]),
                   (b"19.0", "expired", "amq.topic", ["sensors.b.temp"])]
    assert ch.queue_declare("sensor-ttl", passive=True).method.message_count == 0
    conn.close()


def test_nats_publish_reaches_a_waiting_amqp_consumer(omnibus_broker):
    b = omnibus_broker
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("from-nats")
    ch.queue_bind("from-nats", "amq.topic", "orders.*")
    got = []
    ch.basic_consume("from-nats", lambda c, m, p, body: got.append((m.exchange, m.routing_key, body)),
                     auto_ack=True)
    nats_publish(b.nats_url, [("orders.eu", b"one"), ("orders.us", b"two"), ("other.eu", b"no")])
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.02)
    assert got == [("amq.topic", "orders.eu", b"one"), ("amq.topic", "orders.us", b"two")]
    conn.close()


def test_nats_publish_into_a_max_length_queue_drops_the_head_to_its_dlx(omnibus_broker):
    b = omnibus_broker
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("capped-dead")
    ch.queue_declare("capped", arguments={"x-max-length": 2, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "capped-dead"})
    ch.queue_bind("capped", "amq.topic", "capped.*")
    nats_publish(b.nats_url, [(f"capped.{i}", b"%d" % i) for i in range(4)])
    mf, props, body = get_within(ch, "capped-dead", 5)
    assert (body, props.headers["x-death"][0]["reason"]) == (b"0", "maxlen")
    mf, props, body = get_within(ch, "capped-dead", 5)
    assert body == b"1"
    assert [ch.basic_get("capped", auto_ack=True)[2] for _ in range(2)] == [b"2", b"3"]
    conn.close()
