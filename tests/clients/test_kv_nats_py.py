"""Key-value buckets with nats-py (``js.create_key_value`` / ``js.key_value``): put/get/create/update/
delete/purge/keys/history/watch over a ``KV_<bucket>`` stream, revision conflicts with nats-server's
error, the bucket's stream configuration (ADR-8), and the values surviving a restart. Also green
against nats-server 2.9.10 (``OMNIBUS_TEST_AGAINST=nats-server``)."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError

from omnibus import SyncBroker
from tests.clients.test_jetstream_push import js_url  # noqa: F401  (fixture)


def run(coro, limit: float = 30):
    return asyncio.run(asyncio.wait_for(coro, limit))


def test_put_get_create_update_delete_purge(js_url):  # noqa: F811
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="cfg", history=5, direct=True)  # gets use DIRECT.GET
        si = await js.stream_info("KV_cfg")
        c = si.config
        assert c.subjects == ["$KV.cfg.>"] and c.max_msgs_per_subject == 5
        assert (c.allow_rollup_hdrs, c.deny_delete, c.allow_direct, str(c.discard)) == (True, True, True, "new")
        assert await kv.put("a.b", b"1") == 1
        assert await kv.put("a.b", b"2") == 2
        e = await kv.get("a.b")
        assert (e.key, e.value, e.revision) == ("a.b", b"2", 2)
        assert (await kv.get("a.b", revision=1)).value == b"1"
        with pytest.raises(KeyNotFoundError):
            await kv.get("missing")
        with pytest.raises(KeyWrongLastSequenceError) as err:  # create: the key exists
            await kv.create("a.b", b"x")
        assert "wrong last sequence: 2" in str(err.value)
        assert await kv.create("new", b"n") == 3
        with pytest.raises(KeyWrongLastSequenceError) as err:  # update from a stale revision
            await kv.update("a.b", b"3", last=1)
        assert "wrong last sequence: 2" in str(err.value)
        assert await kv.update("a.b", b"3", last=2) == 4
        await kv.delete("new")
        with pytest.raises(KeyNotFoundError):
            await kv.get("new")
        assert await kv.create("new", b"again") == 6  # create over a delete marker
        for i in range(6):
            await kv.put("hist", b"h%d" % i)
        assert [e.value for e in await kv.history("hist")] == [b"h%d" % i for i in range(1, 6)]  # history=5
        await kv.purge("hist")  # a roll-up: only the purge marker is left
        hist = await kv.history("hist")
        assert [(e.value, e.operation) for e in hist] == [(b"", "PURGE")]
        assert sorted(await kv.keys()) == ["a.b", "new"]
        st = await kv.status()
        assert (st.bucket, st.history) == ("cfg", 5)
        same = await js.key_value("cfg")
        assert (await same.get("a.b")).value == b"3"
        with pytest.raises(BucketNotFoundError):
            await js.key_value("nope")
        await js.delete_key_value("cfg")
        with pytest.raises(BucketNotFoundError):
            await js.key_value("cfg")
        await nc.close()
    run(go())


def test_watch_and_empty_bucket(js_url):  # noqa: F811
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="w")
        with pytest.raises(NoKeysError):
            await kv.keys()
        await kv.put("k1", b"old")
        await kv.put("k1", b"v1")
        await kv.put("k2", b"v2")
        watcher = await kv.watchall()
        initial = []
        while True:
            e = await watcher.updates(timeout=2)
            if e is None:  # end of the initial values
                break
            initial.append((e.key, e.value, e.operation))
        assert initial == [("k1", b"v1", None), ("k2", b"v2", None)]  # last per subject
        await kv.put("k3", b"v3")
        await kv.delete("k1")
        e = await watcher.updates(timeout=2)
        assert (e.key, e.value, e.revision, e.operation) == ("k3", b"v3", 4, None)
        e = await watcher.updates(timeout=2)
        assert (e.key, e.operation) == ("k1", "DEL")
        await watcher.stop()
        one = await kv.watch("k2")
        e = await one.updates(timeout=2)
        assert (e.key, e.value) == ("k2", b"v2")
        await kv.put("k3", b"other key")
        await kv.put("k2", b"v2b")
        e = await one.updates(timeout=2)  # the marker, then only k2's change
        if e is None:
            e = await one.updates(timeout=2)
        assert (e.key, e.value) == ("k2", b"v2b")
        await one.stop()
        await nc.close()
    run(go())


def test_purge_deletes_leaves_live_keys(js_url):  # noqa: F811
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="pd", history=3)
        await kv.put("a", b"1")
        await kv.put("b", b"2")
        await kv.delete("a")
        await kv.purge("b")
        await kv.put("c", b"3")
        assert (await js.stream_info("KV_pd")).state.messages == 4  # b's purge rolled up its value
        await kv.purge_deletes(olderthan=-1)  # STREAM.PURGE per marker, keep 0
        assert (await js.stream_info("KV_pd")).state.messages == 1
        st = await kv.status()
        assert (st.values, st.history) == (1, 3)
        assert await kv.keys() == ["c"]
        await nc.close()
    run(go())


def test_bucket_survives_restart(tmp_path):
    async def write(url):
        nc = await nats.connect(url)
        kv = await nc.jetstream().create_key_value(bucket="keep", history=3)
        for i in range(4):
            await kv.put("k", b"v%d" % i)
        await kv.put("gone", b"x")
        await kv.delete("gone")
        await nc.close()

    async def read(url):
        nc = await nats.connect(url)
        kv = await nc.jetstream().key_value("keep")
        e = await kv.get("k")
        hist = [h.value for h in await kv.history("k")]
        keys = await kv.keys()
        with pytest.raises(KeyNotFoundError):
            await kv.get("gone")
        await nc.close()
        return e.value, e.revision, hist, keys

    with SyncBroker(tmp_path) as b:
        run(write(b.nats_url))
    with SyncBroker(tmp_path) as b:
        assert run(read(b.nats_url)) == (b"v3", 4, [b"v1", b"v2", b"v3"], ["k"])
