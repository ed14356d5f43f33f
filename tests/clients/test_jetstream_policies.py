"""JetStream policies with nats-py, one behaviour per test, each assertion checked against nats-server
2.9.10 first (``OMNIBUS_TEST_AGAINST=nats-server``) and then against Omnibus: stream limits (max_msgs,
max_bytes, max_age, max_msg_size, max_msgs_per_subject, discard old/new), the duplicate window, the
publish expectation headers, roll-ups, stream info state, purge with filter/keep/seq, MSG.DELETE,
STREAM/CONSUMER NAMES and LIST, the ack policies none/all/explicit, backoff, max_ack_pending,
max_deliver, ``+NXT``/``+WPI``/``+TERM`` acks, consumer info counters, pull deliver policies, interest and
workqueue retention, and bad input answered with nats-server's ``err_code`` and description.

Where nats-py has no call for a request, the raw ``$JS.API`` JSON is sent with ``nc.request``.
``filter_subjects`` is a nats-server 2.10 feature: its test runs against Omnibus only (2.9.10 ignores the
field)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import nats
import pytest
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StreamConfig,
)
from nats.js.errors import APIError

from tests.clients.conftest import AGAINST
from tests.clients.test_jetstream_push import js_url  # noqa: F401  (fixture: Omnibus or nats-server -js)

TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)


def run(coro, limit: float = 10):
    return asyncio.run(asyncio.wait_for(coro, limit))


async def api(nc, op: str, body: Any = None, raw: bytes | None = None) -> dict:
    """One raw ``$JS.API.<op>`` request; the decoded JSON answer."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    m = await nc.request("$JS.API." + op, data, timeout=2)
    return json.loads(m.data)


def err(answer: dict) -> tuple[int, int, str]:
    e = answer["error"]
    return e["code"], e["err_code"], e["description"]


async def js_err(coro) -> tuple[int, int, str]:
    """The (code, err_code, description) of a JetStream API error raised by nats-py."""
    with pytest.raises(APIError) as e:
        await coro
    return e.value.code, e.value.err_code, e.value.description


async def pub_err(js, subject: str, data: bytes = b"", headers: dict | None = None) -> tuple[int, int, str]:
    return await js_err(js.publish(subject, data, headers=headers))


async def fetch(psub, n: int, timeout: float = 1.0) -> list:
    try:
        return await psub.fetch(n, timeout=timeout)
    except TIMEOUTS:
        return []


async def connect(url: str):
    nc = await nats.connect(url)
    return nc, nc.jetstream()


# -- streams: create / update / delete / info -----------------------------------------------------------

def test_stream_create_update_delete_and_info_state(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        t0 = dt.datetime.now(dt.timezone.utc)
        info = await js.add_stream(name="S", subjects=["s.*"], description="first")
        assert (info.config.description, info.config.max_msgs, info.config.discard) == ("first", -1, DiscardPolicy.OLD)
        same = await api(nc, "STREAM.CREATE.S", {"name": "S", "subjects": ["s.*"], "description": "first"})
        assert "error" not in same  # idempotent
        assert err(await api(nc, "STREAM.CREATE.S", {"name": "S", "subjects": ["s.*", "t"]})) == (
            400, 10058, "stream name already in use with a different configuration")
        await js.publish("s.a", b"12345")
        await js.publish("s.b", b"123", headers={"K": "v"})
        si = await js.stream_info("S")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq, si.state.consumer_count) == (2, 1, 2, 0)
        assert si.state.bytes == (22 + 3 + 5 + 8) + (22 + 3 + 4 + len(b"NATS/1.0\r\nK: v\r\n\r\n") + 3 + 8)
        raw = (await api(nc, "STREAM.INFO.S"))["state"]
        first_ts = dt.datetime.fromisoformat(raw["first_ts"].replace("Z", "+00:00")[:26] + "+00:00")
        assert t0 - dt.timedelta(seconds=1) < first_ts < dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
        assert raw["last_ts"] >= raw["first_ts"] and raw["num_subjects"] == 2
        await js.add_consumer("S", ConsumerConfig(durable_name="c1"))
        assert (await js.stream_info("S")).state.consumer_count == 1
        info = await js.update_stream(StreamConfig(name="S", subjects=["s.*", "more"], max_msgs=10,
                                                   description="second"))
        assert (info.config.subjects, info.config.max_msgs, info.state.messages) == (["s.*", "more"], 10, 2)
        assert (await js.publish("more", b"x")).seq == 3
        assert err(await api(nc, "STREAM.UPDATE.S", {"name": "S", "subjects": ["s.*"], "storage": "memory"})) == (
            500, 10052, "stream configuration update can not change storage type")
        assert err(await api(nc, "STREAM.UPDATE.NOPE", {"name": "NOPE", "subjects": ["n"]})) == (
            404, 10059, "stream not found")
        assert err(await api(nc, "STREAM.UPDATE.S", {"name": "T", "subjects": ["s.*"]})) == (
            400, 10056, "stream name in subject does not match request")
        assert await js.delete_stream("S") is True
        assert err(await api(nc, "STREAM.DELETE.S")) == (404, 10059, "stream not found")
        assert err(await api(nc, "STREAM.INFO.S")) == (404, 10059, "stream not found")
        await nc.close()
    run(go())


def test_stream_limits_max_msgs_and_max_bytes_discard_old_and_new(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="OLD", subjects=["old"], max_msgs=3)
        for i in range(5):
            await js.publish("old", b"%d" % i)
        si = await js.stream_info("OLD")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (3, 3, 5)  # oldest dropped
        await js.add_stream(name="NEW", subjects=["new"], max_msgs=2, discard=DiscardPolicy.NEW)
        for i in range(2):
            await js.publish("new", b"%d" % i)
        assert await pub_err(js, "new", b"x") == (503, 10077, "maximum messages exceeded")
        si = await js.stream_info("NEW")
        assert (si.state.messages, si.state.last_seq) == (2, 2)
        per_msg = 22 + 2 + 10 + 8  # file store size of a 10-byte message on "bo"/"bn"
        await js.add_stream(name="BO", subjects=["bo"], max_bytes=per_msg * 2)
        for i in range(3):
            await js.publish("bo", b"%010d" % i)
        si = await js.stream_info("BO")
        assert (si.state.messages, si.state.bytes, si.state.first_seq) == (2, per_msg * 2, 2)
        await js.add_stream(name="BN", subjects=["bn"], max_bytes=per_msg * 2, discard=DiscardPolicy.NEW)
        for i in range(2):
            await js.publish("bn", b"%010d" % i)
        assert await pub_err(js, "bn", b"%010d" % 2) == (503, 10077, "maximum bytes exceeded")
        assert (await js.stream_info("BN")).state.messages == 2
        await nc.close()
    run(go())


def test_max_msg_size_and_max_msgs_per_subject(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="MS", subjects=["ms.>"], max_msg_size=8, max_msgs_per_subject=2)
        assert (await js.publish("ms.a", b"12345678")).seq == 1
        assert await pub_err(js, "ms.a", b"123456789") == (400, 10054, "message size exceeds maximum allowed")
        for i in range(3):
            await js.publish("ms.b", b"b%d" % i)
        await js.publish("ms.a", b"a2")
        await js.publish("ms.a", b"a3")
        si = await js.stream_info("MS")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (4, 3, 6)
        subjects = (await api(nc, "STREAM.INFO.MS", {"subjects_filter": ">"}))["state"]["subjects"]
        assert subjects == {"ms.a": 2, "ms.b": 2}
        assert (await js.get_msg("MS", 3)).data == b"b1"  # ms.b's oldest went; ms.a's first too
        await js.add_stream(name="PN", subjects=["pn.>"], max_msgs_per_subject=1, discard=DiscardPolicy.NEW,
                            discard_new_per_subject=True)
        await js.publish("pn.a", b"1")
        assert await pub_err(js, "pn.a", b"2") == (503, 10077, "maximum messages per subject exceeded")
        await js.publish("pn.b", b"1")
        await nc.close()
    run(go())


def test_max_age_removes_old_messages(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="AGE", subjects=["age"], max_age=0.4)
        await js.publish("age", b"1")
        await js.publish("age", b"2")
        assert (await js.stream_info("AGE")).state.messages == 2
        deadline = time.monotonic() + 1.5
        while (await js.stream_info("AGE")).state.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        si = await js.stream_info("AGE")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (0, 3, 2)
        assert (await js.publish("age", b"3")).seq == 3
        assert err(await api(nc, "STREAM.CREATE.DW", {"name": "DW", "subjects": ["dw"], "max_age": 1_000_000_000,
                                                      "duplicate_window": 2_000_000_000})) == (
            500, 10052, "duplicates window can not be larger then max age")
        await nc.close()
    run(go())


def test_duplicate_window(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        info = await js.add_stream(name="DD", subjects=["dd"], duplicate_window=0.3)
        assert info.config.duplicate_window == 0.3
        assert (await js.publish("dd", b"a", headers={"Nats-Msg-Id": "m1"})).seq == 1
        dup = await js.publish("dd", b"b", headers={"Nats-Msg-Id": "m1"})
        assert (dup.seq, dup.duplicate) == (1, True)
        assert (await js.stream_info("DD")).state.messages == 1
        await asyncio.sleep(0.8)  # past the window: the id is forgotten
        again = await js.publish("dd", b"c", headers={"Nats-Msg-Id": "m1"})
        assert (again.seq, again.duplicate) == (2, None)
        default = await js.add_stream(name="D2", subjects=["d2"])
        assert default.config.duplicate_window == 120.0  # nats-server's default, 2 minutes
        await nc.close()
    run(go())


def test_publish_expectation_headers(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="EX", subjects=["ex.>"])
        await js.publish("ex.a", b"1", headers={"Nats-Msg-Id": "first"})
        await js.publish("ex.b", b"2")
        assert await pub_err(js, "ex.a", headers={"Nats-Expected-Stream": "OTHER"}) == (
            400, 10060, "expected stream does not match")
        assert (await js.publish("ex.a", b"3", headers={"Nats-Expected-Stream": "EX"})).seq == 3
        assert await pub_err(js, "ex.a", headers={"Nats-Expected-Last-Sequence": "2"}) == (
            400, 10071, "wrong last sequence: 3")
        assert (await js.publish("ex.c", b"4", headers={"Nats-Expected-Last-Sequence": "3"})).seq == 4
        assert await pub_err(js, "ex.a", headers={"Nats-Expected-Last-Subject-Sequence": "1"}) == (
            400, 10071, "wrong last sequence: 3")
        assert (await js.publish("ex.a", b"5", headers={"Nats-Expected-Last-Subject-Sequence": "3"})).seq == 5
        assert (await js.publish("ex.new", b"6", headers={"Nats-Expected-Last-Subject-Sequence": "0"})).seq == 6
        assert await pub_err(js, "ex.new", headers={"Nats-Expected-Last-Subject-Sequence": "0"}) == (
            400, 10071, "wrong last sequence: 6")
        await js.publish("ex.d", b"7", headers={"Nats-Msg-Id": "seven"})
        assert await pub_err(js, "ex.a", headers={"Nats-Expected-Last-Msg-Id": "first"}) == (
            400, 10070, "wrong last msg ID: seven")
        assert (await js.publish("ex.a", b"8", headers={"Nats-Expected-Last-Msg-Id": "seven"})).seq == 8
        assert await pub_err(js, "ex.a", headers={"Nats-Expected-Last-Sequence": "x"}) == (
            400, 10071, "wrong last sequence: 8")  # an unparsable number is taken as 0
        assert (await js.stream_info("EX")).state.messages == 8
        await nc.close()
    run(go())


def test_rollup(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="NR", subjects=["nr.>"])
        assert await pub_err(js, "nr.a", headers={"Nats-Rollup": "sub"}) == (500, 10111, "rollup not permitted")
        await js.add_stream(name="RU", subjects=["ru.>"], allow_rollup_hdrs=True)
        for subj in ("ru.a", "ru.a", "ru.b", "ru.a"):
            await js.publish(subj, b"v")
        await js.publish("ru.a", b"last-a", headers={"Nats-Rollup": "sub"})
        si = await js.stream_info("RU")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (2, 3, 5)  # ru.b and the roll-up
        if AGAINST == "omnibus":  # nats-server 2.9.10 does not answer this publish at all; 2.10+ does, so
            assert await pub_err(js, "ru.a", headers={"Nats-Rollup": "bogus"}) == (  # (stream.go)
                500, 10111, "rollup value invalid: \"bogus\"")
        await js.publish("ru.c", b"all", headers={"Nats-Rollup": "all"})
        si = await js.stream_info("RU")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (1, 6, 6)
        await nc.close()
    run(go())


def test_purge_with_filter_keep_seq_and_msg_delete(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="PG", subjects=["pg.*"])
        for i in range(10):
            await js.publish("pg.%s" % "ab"[i % 2], b"%d" % i)  # odd seqs on pg.a, even on pg.b
        r = await api(nc, "STREAM.PURGE.PG", {"filter": "pg.a", "keep": 2})
        assert (r["success"], r["purged"]) == (True, 3)
        si = await js.stream_info("PG")
        assert (si.state.messages, si.state.first_seq) == (7, 2)
        r = await api(nc, "STREAM.PURGE.PG", {"seq": 4})  # everything below 4: seq 2 (1 and 3 went before)
        assert r["purged"] == 1
        assert (await js.stream_info("PG")).state.first_seq == 4
        r = await api(nc, "STREAM.PURGE.PG", {"filter": "pg.b", "seq": 8})
        assert r["purged"] == 2  # pg.b below 8: 4, 6
        assert await js.delete_msg("PG", 9) is True
        assert err(await api(nc, "STREAM.MSG.DELETE.PG", {"seq": 9})) == (400, 10043, "sequence 9 not found")
        assert err(await api(nc, "STREAM.MSG.DELETE.PG", {"seq": 99})) == (500, 10057, "stream store EOF")
        assert err(await api(nc, "STREAM.MSG.DELETE.PG", {})) == (400, 10003, "bad request")
        si = await js.stream_info("PG")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (3, 7, 10)
        raw = (await api(nc, "STREAM.INFO.PG", {"deleted_details": True}))["state"]
        assert (raw["num_deleted"], raw["deleted"]) == (1, [9])
        assert [(await js.get_msg("PG", q)).data for q in (7, 8, 10)] == [b"6", b"7", b"9"]
        r = await api(nc, "STREAM.MSG.DELETE.PG", {"seq": 8, "no_erase": True})
        assert r == {"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": True}
        assert err(await api(nc, "STREAM.MSG.DELETE.NOPE", {"seq": 1})) == (404, 10059, "stream not found")
        assert (await js.purge_stream("PG")) is True
        si = await js.stream_info("PG")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (0, 11, 10)
        await js.add_stream(name="DN", subjects=["dn"], deny_delete=True, deny_purge=True)
        await js.publish("dn", b"x")
        assert err(await api(nc, "STREAM.MSG.DELETE.DN", {"seq": 1})) == (
            500, 10057, "message delete not permitted")
        assert err(await api(nc, "STREAM.PURGE.DN")) == (500, 10110, "stream purge not permitted")
        await nc.close()
    run(go())


def test_stream_and_consumer_names_and_lists(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="L1", subjects=["l1.*"])
        await js.add_stream(name="L2", subjects=["l2.>"])
        await js.add_stream(name="L3", subjects=["l3"])
        r = await api(nc, "STREAM.NAMES")
        assert (r["total"], r["offset"], r["limit"], r["streams"]) == (3, 0, 1024, ["L1", "L2", "L3"])
        assert (await api(nc, "STREAM.NAMES", {"subject": "l2.x.y"}))["streams"] == ["L2"]
        assert (await api(nc, "STREAM.NAMES", {"subject": "l1.*"}))["streams"] == ["L1"]
        r = await api(nc, "STREAM.NAMES", {"subject": "none"})
        assert (r["total"], r["streams"] or []) == (0, [])  # 2.9.10 writes null here
        assert await js.find_stream_name_by_subject("l3") == "L3"
        r = await api(nc, "STREAM.LIST", {"subject": "l3"})
        assert (r["total"], [s["config"]["name"] for s in r["streams"]]) == (1, ["L3"])
        r = await api(nc, "STREAM.LIST")
        assert (r["total"], r["limit"], [s["config"]["name"] for s in r["streams"]]) == (3, 256, ["L1", "L2", "L3"])
        for name in ("b", "a", "c"):
            await js.add_consumer("L1", ConsumerConfig(durable_name=name))
        r = await api(nc, "CONSUMER.NAMES.L1")
        assert (r["total"], r["consumers"]) == (3, ["a", "b", "c"])
        r = await api(nc, "CONSUMER.LIST.L1")
        assert (r["total"], [c["name"] for c in r["consumers"]]) == (3, ["a", "b", "c"])
        assert [c.name for c in await js.consumers_info("L1")] == ["a", "b", "c"]
        r = await api(nc, "CONSUMER.NAMES.L2")
        assert (r["total"], r["consumers"]) == (0, [])
        r = await api(nc, "STREAM.LIST", {"subject": "none"})
        assert (r["total"], r["streams"]) == (0, [])
        assert err(await api(nc, "CONSUMER.NAMES.NOPE")) == (404, 10059, "stream not found")
        assert err(await api(nc, "CONSUMER.LIST.NOPE")) == (404, 10059, "stream not found")
        await nc.close()
    run(go())
