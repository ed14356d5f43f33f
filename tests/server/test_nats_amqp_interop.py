"""Design decision 6 through a running broker: a nats-py publish lands in a durable queue bound to
amq.topic of the default vhost (the AMQP side binds through the core until the AMQP listener lands), and
the queue and its messages survive a restart."""

from __future__ import annotations

import asyncio

import nats

from omnibus import SyncBroker


def queue_bodies(broker: SyncBroker, name: str) -> list[bytes]:
    def take():
        q = broker.server.vhosts["/"].queues[name]
        out = []
        while (d := q.deliver_next()) is not None:
            out.append(bytes(d.message.body))
            q.ack(d.offset)
        return out
    return broker.call(take)


def test_nats_publish_reaches_amqp_queue_on_amq_topic(tmp_path):
    with SyncBroker(tmp_path) as broker:
        def bind():
            vhost = broker.server.vhosts["/"]
            vhost.declare_queue("orders", durable=True)
            vhost.bind("amq.topic", "orders", "orders.*.created")
        broker.call(bind)

        async def publish():
            nc = await nats.connect(broker.nats_url)
            sub = await nc.subscribe("orders.>")
            await nc.publish("orders.eu.created", b"one")
            await nc.publish("orders.eu.paid", b"not for the queue")
            await nc.publish("orders.us.created", b"two")
            got = [(await sub.next_msg(timeout=2)).data for _ in range(3)]
            await nc.close()
            return got

        assert asyncio.run(publish()) == [b"one", b"not for the queue", b"two"]  # NATS still gets all

    # Durable queue and its messages come back after a restart.
    with SyncBroker(tmp_path) as broker:
        assert queue_bodies(broker, "orders") == [b"one", b"two"]


def test_queue_and_stream_logs_are_not_trimmed_by_broker_retention(tmp_path):
    """Queues keep messages until acked and streams enforce their own limits; only Kafka topics follow
    storage.retention_ms / retention_bytes."""
    with SyncBroker(tmp_path, settings={"storage.retention_ms": 1, "storage.retention_bytes": 1}) as broker:
        def check():
            server = broker.server
            q, _ = server.vhosts["/"].declare_queue("keep")
            kafka_log = server.open_log("kafka/t-0")
            return (q.log.config.retention_ms, q.log.config.retention_bytes,
                    kafka_log.config.retention_ms, kafka_log.config.retention_bytes)
        assert broker.call(check) == (-1, -1, 1, 1)
