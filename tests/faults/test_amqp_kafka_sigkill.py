"""AMQP publisher confirms and Kafka acks under SIGKILL: ``omnibus serve`` as a real process, killed while
clients publish; after a restart on the same data directory, everything the broker confirmed is there.

1. AMQP: a raw-socket publisher (pre-built frames, so the broker is the busy side) sends persistent
   messages to a durable queue on a confirm channel and reads the basic.acks (``multiple`` or single)
   as they come. The broker is SIGKILLed at a random moment. After a restart, pika reads the queue: every
   confirmed message is there, in publish order, exactly once; unconfirmed ones may or may not be.
   The durable queue and its binding to a durable exchange come back too.
2. Kafka: confluent-kafka (librdkafka) produces with ``acks=all``; the broker is SIGKILLed at a random
   moment. After a restart a consumer reads the partition from the beginning: every record whose delivery
   report said success is at the offset the report named, with its value.

Bounded: one run each, the kill within 1.2 s of the first publish.
"""

from __future__ import annotations

import random
import signal
import socket
import threading
import time

import pika
from confluent_kafka import Consumer, Producer, TopicPartition
from pamqp import commands as pc

from tests.helpers import start_serve
from tests.server.test_amqp_raw import Raw, content, mf


def _kill(srv) -> None:
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    assert srv.proc.returncode == -signal.SIGKILL
    srv.proc = None


def _body(i: int) -> bytes:
    return b"m-%08d-" % i + b"x" * (100 + i % 300)


def test_amqp_confirmed_persistent_messages_survive_sigkill(tmp_path):
    data = tmp_path / "data"
    srv = start_serve(data)
    try:
        r = Raw(srv.amqp_port).handshake()
        r.open_channel(1)
        r.send(mf(1, pc.Exchange.Declare(exchange="crash-x", exchange_type="direct", durable=True)))
        r.expect(pc.Exchange.DeclareOk, 1)
        r.send(mf(1, pc.Queue.Declare(queue="crash", durable=True)))
        r.expect(pc.Queue.DeclareOk, 1)
        r.send(mf(1, pc.Queue.Bind(queue="crash", exchange="crash-x", routing_key="k")))
        r.expect(pc.Queue.BindOk, 1)
        r.send(mf(1, pc.Confirm.Select()))
        r.expect(pc.Confirm.SelectOk, 1)
        persistent = pc.Basic.Properties(delivery_mode=2)
        publish = mf(1, pc.Basic.Publish(exchange="crash-x", routing_key="k"))
        confirmed = 0  # every delivery tag <= this one is confirmed (tags are publish index + 1)
        singles: set[int] = set()
        timer = threading.Timer(random.uniform(0.3, 0.8), _kill, (srv,))
        timer.start()
        i = 0
        try:
            while srv.proc is not None and i < 100_000:
                r.send(b"".join(publish + content(1, _body(i + k), persistent) for k in range(100)))
                i += 100
                while True:
                    got = r.frame(timeout=0.001)
                    if got is None:
                        break
                    ch, obj = got
                    assert isinstance(obj, pc.Basic.Ack), obj  # no nacks, no other frames
                    if obj.multiple:
                        confirmed = max(confirmed, obj.delivery_tag)
                    else:
                        singles.add(obj.delivery_tag)
        except (OSError, socket.timeout):
            pass  # the broker died under the publisher
        timer.join()
        if srv.proc is not None:
            _kill(srv)
        r.close()
        tags = singles | set(range(1, confirmed + 1))
        assert tags, "nothing was confirmed before the kill (raise the kill delay?)"

        srv = start_serve(data)
        conn = pika.BlockingConnection(pika.URLParameters(srv.amqp_url))
        ch = conn.channel()
        ch.exchange_declare("crash-x", "direct", durable=True, passive=True)  # the topology came back
        ch.queue_bind("crash", "crash-x", "k")  # re-binding is a no-op on an existing binding
        got = []
        ch.basic_qos(prefetch_count=2000)
        for method, _props, body in ch.consume("crash", auto_ack=True, inactivity_timeout=1):
            if method is None:
                break
            got.append(body)
        conn.close()
        indexes = [int(b[2:10]) for b in got]
        assert indexes == sorted(set(indexes)), "messages came back out of order or twice"
        assert all(got[k] == _body(idx) for k, idx in enumerate(indexes))
        missing = sorted(t - 1 for t in tags if t - 1 not in set(indexes))
        assert not missing, f"{len(missing)} confirmed messages lost, first {missing[:5]} ({len(tags)} confirmed)"
        # Nothing beyond what was published, and the confirmed ones are a prefix-closed set of them.
        assert indexes[-1] < i
    finally:
        srv.close()


def test_kafka_acked_records_survive_sigkill(tmp_path):
    data = tmp_path / "data"
    srv = start_serve(data)
    try:
        bootstrap = "%s:%d" % srv.listeners["kafka"]
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 3000, "socket.timeout.ms": 3000, "retries": 0})
        acked: dict[int, bytes] = {}

        def report(err, msg) -> None:
            if err is None:
                acked[msg.offset()] = msg.value()

        # The topic exists before the clock starts (auto-created by the first produce).
        p.produce("crash", _body(0), partition=0, on_delivery=report)
        assert p.flush(10) == 0 and acked
        timer = threading.Timer(random.uniform(0.4, 1.2), _kill, (srv,))
        timer.start()
        i = 1
        deadline = time.monotonic() + 5
        while srv.proc is not None and time.monotonic() < deadline:
            try:
                p.produce("crash", _body(i), partition=0, on_delivery=report)
                i += 1
            except BufferError:
                pass
            p.poll(0)
        timer.join()
        p.flush(4)  # delivery reports of what the broker acked before it died; the rest time out
        assert len(acked) > 1

        srv = start_serve(data)
        bootstrap = "%s:%d" % srv.listeners["kafka"]
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "sigkill-check", "enable.auto.commit": False})
        c.assign([TopicPartition("crash", 0, 0)])
        stored: dict[int, bytes] = {}
        errors: list[str] = []
        last, top = max(acked), -1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and top < last:
            for m in c.consume(10_000, 0.5):
                if m.error() is None:
                    stored[m.offset()] = m.value()
                    top = max(top, m.offset())
                else:
                    errors.append(str(m.error()))
        watermarks = c.get_watermark_offsets(TopicPartition("crash", 0), timeout=5)
        c.close()
        lost = sorted(o for o, v in acked.items() if stored.get(o) != v)
        assert not lost, (f"{len(lost)} acked records lost or changed, first offsets {lost[:5]} of {len(acked)}; "
                          f"read up to {top}, watermarks {watermarks}, errors {errors[:3]}")
    finally:
        srv.close()
