"""The virtual host: topology, durable persistence across a restart, publish into queue logs, and the
NATS <-> AMQP meeting point (amq.topic) at core level."""

from __future__ import annotations

import shutil

import pytest

from omnibus.core.clock import ManualClock
from omnibus.core.messages import Message
from omnibus.core.routing.exchanges import ExchangeNotFound, ExchangeRef
from omnibus.core.vhost import (InequivalentQueue, QueueNotEmpty, QueueNotFound, VirtualHost,
                                queue_log_name)
from omnibus.storage.log import Log, LogConfig
from omnibus.storage.meta import MetaStore


class Host:
    """A vhost over real logs and a real metadata store in ``tmp_path``; ``restart()`` reopens both."""

    def __init__(self, tmp_path):
        self.root = tmp_path / "logs"
        self.meta_path = tmp_path / "meta.sqlite"
        self.open()

    def open(self):
        self.logs: dict[str, Log] = {}
        self.meta = MetaStore(self.meta_path)
        self.vhost = VirtualHost("/", open_log=self.open_log, delete_log=self.delete_log, meta=self.meta,
                                 clock=ManualClock())

    def open_log(self, name):
        log = self.logs[name] = Log.open(self.root / name, LogConfig(fsync="never"))
        return log

    def delete_log(self, name):
        log = self.logs.pop(name, None)
        if log is not None:
            log.delete()
        shutil.rmtree(self.root / name, ignore_errors=True)

    def on_disk(self):
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob("amqp/*/*"))

    def restart(self):
        self.vhost.close()
        self.meta.close()
        self.open()
        self.vhost.restore(self.on_disk())
        return self.vhost


def drain(queue):
    out = []
    while (d := queue.deliver_next()) is not None:
        out.append(d)
        queue.ack(d.offset)
    return out


def test_route_and_deliver_through_each_exchange_type(tmp_path):
    v = Host(tmp_path).vhost
    for name in ("q1", "q2", "q3"):
        v.declare_queue(name)
    v.declare_exchange("logs", "fanout")
    v.declare_exchange("events", "topic")
    v.bind("logs", "q1")
    v.bind("logs", "q2")
    v.bind("events", "q3", "order.*.created")
    routed, sinks = v.publish("logs", [Message("", b"a"), Message("", b"b")])
    assert routed == 2 and sinks == []
    routed, _ = v.publish("events", [Message("order.eu.created", b"c"), Message("order.eu.paid", b"x")])
    assert routed == 1
    routed, _ = v.publish("", [Message("q3", b"direct")])  # the default exchange
    assert routed == 1
    assert [d.message.body for d in drain(v.queues["q1"])] == [b"a", b"b"]
    assert [d.message.body for d in drain(v.queues["q2"])] == [b"a", b"b"]
    assert [d.message.body for d in drain(v.queues["q3"])] == [b"c", b"direct"]
    assert v.publish("", [Message("nope", b"lost")])[0] == 0
    with pytest.raises(ExchangeNotFound):
        v.publish("missing", [Message("k", b"x")])


def test_durable_topology_and_messages_survive_restart_transient_ones_do_not(tmp_path):
    host = Host(tmp_path)
    v = host.vhost
    v.declare_exchange("durable-x", "direct", durable=True)
    v.declare_exchange("transient-x", "direct", durable=False)
    v.declare_queue("keep", durable=True, arguments={"x-max-priority": 5})
    v.declare_queue("temp", durable=False)
    v.bind("durable-x", "keep", "k")
    v.bind("durable-x", "temp", "k")
    v.bind("amq.topic", "keep", "a.#")
    v.bind("durable-x", ExchangeRef("amq.fanout"), "k")
    v.publish("durable-x", [Message("k", b"m1"), Message("k", b"m2")])
    assert v.queues["temp"].message_count == 2
    assert queue_log_name("/", "temp") in host.on_disk()

    v = host.restart()
    assert "durable-x" in v.exchanges and "transient-x" not in v.exchanges
    assert set(v.queues) == {"keep"}
    assert v.queues["keep"].arguments == {"x-max-priority": 5}
    assert queue_log_name("/", "temp") not in host.on_disk()  # a transient queue's log is deleted
    deliveries = drain(v.queues["keep"])
    assert [d.message.body for d in deliveries] == [b"m1", b"m2"]
    assert all(d.redelivered for d in deliveries)  # may have been delivered before the restart
    # bindings came back: both the queue binding and the exchange-to-exchange binding
    assert v.publish("durable-x", [Message("k", b"m3")])[0] == 1
    assert v.publish("amq.topic", [Message("a.b.c", b"m4")])[0] == 1
    assert [d.message.body for d in drain(v.queues["keep"])] == [b"m3", b"m4"]


def test_declare_equivalence_and_delete_rules(tmp_path):
    host = Host(tmp_path)
    v = host.vhost
    q, created = v.declare_queue("q", durable=True)
    assert created
    assert v.declare_queue("q", durable=True) == (q, False)
    with pytest.raises(InequivalentQueue, match="inequivalent arg 'durable' for queue 'q'"):
        v.declare_queue("q", durable=False)
    with pytest.raises(InequivalentQueue, match="x-message-ttl"):
        v.declare_queue("q", durable=True, arguments={"x-message-ttl": 10})
    with pytest.raises(QueueNotFound):
        v.bind("amq.direct", "nope", "k")
    v.publish("", [Message("q", b"1")])
    with pytest.raises(QueueNotEmpty):
        v.delete_queue("q", if_empty=True)
    assert v.delete_queue("q") == 1
    assert "q" not in v.queues and host.on_disk() == []
    assert v.delete_queue("q") == 0  # deleting a missing queue is fine, as in RabbitMQ 3.x
    v = host.restart()
    assert v.queues == {}


def test_deleting_an_exchange_forgets_its_persisted_bindings(tmp_path):
    host = Host(tmp_path)
    v = host.vhost
    v.declare_exchange("x", "fanout")
    v.declare_queue("q")
    v.bind("x", "q")
    v.delete_exchange("x")
    v.declare_exchange("x", "fanout")  # same name again, no bindings
    v = host.restart()
    assert v.publish("x", [Message("", b"m")])[0] == 0


def test_nats_subjects_meet_amqp_queues_on_amq_topic(tmp_path):
    """Design decision 6 at core level: a NATS publish (subject) routed through amq.topic reaches an
    AMQP queue bound there, and NATS subscription sinks bound with NATS patterns come back as sinks."""
    v = Host(tmp_path).vhost
    v.declare_queue("orders")
    v.bind("amq.topic", "orders", "orders.*.created")
    nats_sub = object()  # opaque to the core
    v.exchanges.bind_subject(nats_sub, "orders.>")
    routed, sinks = v.publish("amq.topic", [Message("orders.eu.created", b"from nats"),
                                            Message("orders.eu.paid", b"only nats")])
    assert routed == 2
    assert [d.message.body for d in drain(v.queues["orders"])] == [b"from nats"]
    assert [(s, m.body) for s, m in sinks] == [(nats_sub, b"from nats"), (nats_sub, b"only nats")]
    assert v.exchanges.route_subject("orders") == frozenset()  # NATS '>' needs at least one token
