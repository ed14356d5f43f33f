"""AMQP 0-9-1 with Kombu (over py-amqp) and a real Celery worker against a running Omnibus.

Kombu: a producer and a consumer on a direct exchange with JSON bodies, a fanout to two queues, and
SimpleQueue. Celery: ``celery worker -P solo`` runs as a child process against Omnibus, executes tasks
sent from this process, and returns their results (and a task's exception) through the ``rpc://`` result
backend, i.e. as AMQP messages through the same broker. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from omnibus import SyncBroker

ROOT = Path(__file__).resolve().parents[2]
#: A Celery worker starts in 2-5 s on this machine.
WORKER_START_TIMEOUT = 40.0
TASK_TIMEOUT = 30.0


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b


def test_kombu_producer_consumer_direct_exchange(broker):
    with Connection(broker.amqp_url, connect_timeout=5) as conn:
        exchange = Exchange("kombu-x", type="direct", durable=True)
        queue = Queue("kombu-q", exchange=exchange, routing_key="orders", durable=True)
        with conn.channel() as ch:
            producer = Producer(ch, exchange=exchange, serializer="json")
            for i in range(10):
                producer.publish({"n": i, "item": "book"}, routing_key="orders", declare=[queue],
                                 headers={"source": "kombu"}, delivery_mode=2, retry=True)
            producer.publish({"n": -1}, routing_key="elsewhere")  # not routed: dropped
        got = []

        def on_message(body, message):
            got.append((body, message.headers.get("source"), message.delivery_info["routing_key"]))
            message.ack()

        with Consumer(conn, queues=[queue], callbacks=[on_message], accept=["json"], prefetch_count=4):
            deadline = time.monotonic() + 10
            while len(got) < 10 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
        assert got == [({"n": i, "item": "book"}, "kombu", "orders") for i in range(10)]
        with conn.channel() as ch:
            _, count, consumers = ch.queue_declare("kombu-q", passive=True)
            assert (count, consumers) == (0, 0)


def test_kombu_fanout_and_simple_queue(broker):
    with Connection(broker.amqp_url, connect_timeout=5) as conn:
        fan = Exchange("kombu-fan", type="fanout", durable=False, auto_delete=True)
        queues = [Queue(f"kombu-f{i}", exchange=fan, auto_delete=True) for i in range(2)]
        with conn.channel() as ch:
            for q in queues:
                q(ch).declare()
            Producer(ch, exchange=fan, serializer="json").publish({"hello": "all"})
        for q in queues:
            with conn.SimpleQueue(q) as sq:
                msg = sq.get(block=True, timeout=5)
                assert msg.payload == {"hello": "all"}
                msg.ack()
        with conn.SimpleQueue("kombu-simple") as sq:
            for i in range(3):
                sq.put({"i": i})
            out = []
            for _ in range(3):
                m = sq.get(block=True, timeout=5)
                out.append(m.payload["i"])
                m.ack()
            assert out == [0, 1, 2]
            with pytest.raises(sq.Empty):
                sq.get(block=True, timeout=0.3)


class Worker:
    """``celery -A tests.clients.celery_tasks worker -P solo`` as a child process."""

    def __init__(self, url: str, log: Path) -> None:
        self.log = log
        env = {**os.environ, "OMNIBUS_CELERY_BROKER": url, "PYTHONPATH": str(ROOT)}
        with open(log, "wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.clients.celery_tasks", "worker", "-P", "solo",
                 "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
                 "-n", f"omnibus-test-{os.getpid()}@localhost"],
                cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while b" ready." not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"celery worker did not become ready: {log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_celery_worker_runs_tasks_through_omnibus(broker, tmp_path):
    from tests.clients import celery_tasks

    app = celery_tasks.app
    app.conf.broker_url = broker.amqp_url
    worker = Worker(broker.amqp_url, tmp_path / "worker.log")
    try:
        r = celery_tasks.add.delay(2, 3)
        assert r.get(timeout=TASK_TIMEOUT) == 5
        results = [celery_tasks.add.apply_async((i, i)) for i in range(10)]
        assert [x.get(timeout=TASK_TIMEOUT) for x in results] == [2 * i for i in range(10)]
        e = celery_tasks.echo.delay({"text": "héllo", "n": [1, 2.5, None]})
        got = e.get(timeout=TASK_TIMEOUT)
        assert got["got"] == {"text": "héllo", "n": [1, 2.5, None]} and got["pid"] == worker.proc.pid
        bad = celery_tasks.fail.delay("boom")
        with pytest.raises(ValueError, match="boom"):
            bad.get(timeout=TASK_TIMEOUT)
        assert bad.state == "FAILURE"
        # remote control: a broadcast on the celery.pidbox fanout exchange, replies on reply.celery.pidbox
        replies = app.control.ping(timeout=3)
        assert replies == [{f"omnibus-test-{os.getpid()}@localhost": {"ok": "pong"}}]
    finally:
        worker.stop()
        app.close()
    log = (tmp_path / "worker.log").read_text()
    assert "Connected to amqp://guest:**@127.0.0.1" in log
    assert log.count("succeeded in") == 12, log[-3000:]
