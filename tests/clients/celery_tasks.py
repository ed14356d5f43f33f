"""The Celery app that tests/clients/test_kombu_celery.py runs a real worker for (``celery -A
tests.clients.celery_tasks worker -P solo``). The broker URL comes from ``OMNIBUS_CELERY_BROKER``;
results go back through the ``rpc://`` backend, i.e. as AMQP messages through the same broker."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("omnibus_tests", broker=os.environ.get("OMNIBUS_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
             backend="rpc://")
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True, broker_connection_max_retries=3,
    worker_prefetch_multiplier=1, task_acks_late=True,
    broker_heartbeat=10,  # AMQP heartbeats both ways while the worker waits
)


@app.task(name="omnibus.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="omnibus.echo")
def echo(payload: dict) -> dict:
    return {"got": payload, "pid": os.getpid()}


@app.task(name="omnibus.fail")
def fail(message: str) -> None:
    raise ValueError(message)
