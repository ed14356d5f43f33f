"""nats-server's monitoring endpoints on the HTTP listener, read while real nats-py clients are connected;
and bcrypt-hashed passwords, which nats-server accepts in its authorization block."""

from __future__ import annotations

import asyncio

import bcrypt
import nats
import orjson
import pytest
from nats.errors import NoServersError

from omnibus import Broker
from tests.helpers import http_get


async def get_json(url: str) -> dict:
    status, body = await asyncio.to_thread(http_get, url)
    assert status == 200, body
    return orjson.loads(body)


async def test_varz_connz_subsz_healthz(tmp_path):
    async with Broker(tmp_path) as broker:
        a = await nats.connect(broker.nats_url, name="alpha")
        b = await nats.connect(broker.nats_url, name="beta")
        try:
            got = []

            async def on_msg(m):
                got.append(m.data)

            await b.subscribe("metrics.>", cb=on_msg)
            await b.subscribe("work", queue="q")
            await b.flush()
            for i in range(10):
                await a.publish("metrics.cpu", b"x" * 10)
            await a.flush()
            for _ in range(100):
                if len(got) == 10:
                    break
                await asyncio.sleep(0.01)
            assert len(got) == 10
            base = broker.http_url
            varz = await get_json(base + "/varz")
            assert varz["server_name"] == "omnibus" and varz["proto"] == 1
            assert varz["port"] == broker.port("nats")
            assert varz["connections"] == 2
            assert varz["in_msgs"] == 10 and varz["out_msgs"] == 10
            assert varz["in_bytes"] == 100 and varz["out_bytes"] == 100
            assert varz["subscriptions"] == 2
            assert varz["max_payload"] == 1024 * 1024
            connz = await get_json(base + "/connz?subs=1")
            assert connz["num_connections"] == 2 and connz["total"] == 2
            by_name = {c["name"]: c for c in connz["connections"]}
            assert by_name["alpha"]["in_msgs"] == 10 and by_name["alpha"]["lang"] == "python3"
            assert by_name["beta"]["out_msgs"] == 10
            assert by_name["beta"]["subscriptions_list"] == ["metrics.>", "work"]
            limited = await get_json(base + "/connz?limit=1&offset=1")
            assert limited["num_connections"] == 1 and limited["total"] == 2
            subsz = await get_json(base + "/subsz")
            # matches are counted per trie lookup; a pipelined run of PUBs to one subject is matched once
            assert subsz["num_subscriptions"] == 2 and subsz["num_matches"] >= 1
            health = await get_json(base + "/healthz")
            assert health == {"status": "ok"}
        finally:
            await a.close()
            await b.close()
        status, body = await asyncio.to_thread(http_get, broker.http_url + "/connz?limit=x")
        assert status == 400


async def test_bcrypt_password(tmp_path):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    users = [{"user": "carol", "password": hashed}]
    async with Broker(tmp_path, settings={"nats.users": users}) as broker:
        url = broker.nats_url.replace("nats://", "nats://carol:s3cret@")
        nc = await nats.connect(url)
        sub = await nc.subscribe("x")
        await nc.publish("x", b"ok")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"ok"
        await nc.close()
        bad = broker.nats_url.replace("nats://", "nats://carol:wrong@")
        with pytest.raises((NoServersError, nats.errors.Error)):
            await nats.connect(bad, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
