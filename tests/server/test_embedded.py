"""The embedded API and the pytest plugin start and stop cleanly and serve HTTP."""

from __future__ import annotations

import asyncio
import time

import pytest

from omnibus import Broker, SyncBroker
from omnibus.embedded import ProtocolUnavailableError
from omnibus.server.app import SESSIONS
from tests.helpers import http_get


async def test_async_broker_temp_dir_is_removed():
    async with Broker() as broker:
        data_dir = broker.data_dir
        assert data_dir.exists()
        status, body = await asyncio.to_thread(http_get, broker.http_url + "/healthz")  # not on the loop
        assert status == 200
        assert broker.http_url.startswith("http://127.0.0.1:")
    assert not data_dir.exists()


async def test_explicit_data_dir_is_kept(tmp_path):
    async with Broker(tmp_path / "d", settings={"storage.fsync": "always"}) as broker:
        assert broker.settings.storage.fsync == "always"
    assert (tmp_path / "d" / "meta.sqlite").exists()


async def test_missing_protocols_raise_clearly():
    async with Broker() as broker:
        for proto, attr in (("kafka", "kafka_bootstrap"), ("amqp", "amqp_url"), ("nats", "nats_url")):
            if proto in SESSIONS:
                assert getattr(broker, attr)
            else:
                with pytest.raises(ProtocolUnavailableError):
                    getattr(broker, attr)


def test_sync_broker_restart_on_same_dir(tmp_path):
    with SyncBroker(tmp_path) as b1:
        assert http_get(b1.http_url + "/healthz")[0] == 200
    with SyncBroker(tmp_path) as b2:  # the data-dir lock was released
        assert http_get(b2.http_url + "/healthz")[0] == 200


def test_two_brokers_side_by_side():
    with SyncBroker() as a, SyncBroker() as b:
        assert a.http_url != b.http_url
        assert http_get(a.http_url + "/metrics")[0] == 200
        assert http_get(b.http_url + "/metrics")[0] == 200


def test_pytest_fixture(omnibus_broker):
    status, body = http_get(omnibus_broker.http_url + "/healthz")
    assert status == 200
    assert omnibus_broker.data_dir.exists()


@pytest.mark.omnibus(storage__fsync="never")
def test_fixture_marker_and_factory(omnibus_broker, omnibus_broker_factory):
    assert omnibus_broker.settings.storage.fsync == "never"
    t0 = time.perf_counter()
    other = omnibus_broker_factory(storage__fsync="always")
    elapsed = time.perf_counter() - t0
    assert other.settings.storage.fsync == "always"
    print(f"second broker started in {elapsed * 1000:.1f} ms")  # measured, not asserted (see bench/)


def test_protocol_state_is_restored_at_start_without_a_client(tmp_path):
    """Kafka topics (retention, compaction) and JetStream streams (max_age, consumer timers) come back
    when the broker starts, not when the first client of that protocol connects."""
    from kafka import KafkaProducer

    with SyncBroker(tmp_path) as b:
        p = KafkaProducer(bootstrap_servers=b.kafka_bootstrap)
        p.send("restored", b"x").get(timeout=10)
        p.close()
    with SyncBroker(tmp_path) as b:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
                getattr(b.server, "kafka", None) is not None and getattr(b.server, "nats", None) is not None):
            time.sleep(0.02)
        assert "restored" in b.server.kafka.topics
        assert b.server.kafka.topics["restored"].partition(0).end_offset == 1
        assert b.server.nats.jetstream is not None
