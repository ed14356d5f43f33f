"""JetStream policies with nats-py, one behaviour per test, each assertion checked against nats-server
2.9.10 first (``OMNIBUS_TEST_AGAINST=nats-server``) and then against Omnibus: stream limits (max_msgs,
max_bytes, max_age, max_msg_size, max_msgs_per_subject, discard old/new), the duplicate window, the
publish expectation headers, roll-ups, stream info state, purge with filter/keep/seq, MSG.DELETE,
STREAM/CONSUMER NAMES and LIST, the ack policies none/all/explicit, backoff, max_ack_pending,
max_deliver, ``+NXT``/``+WPI``/``+TERM`` acks, consumer info counters, pull deliver policies, interest and
workqueue retention, and bad input answered with nats-server's ``err_code`` and description.

Where nats-py has no call for a request, the raw ``$JS.API`` JSON is sent with ``nc.request``. The last
test runs a subset through nats.js (js/js_policies.mjs).
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
from tests.helpers import run_node_script

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


def _rfc3339(text: str) -> dt.datetime:
    """Go's RFC3339Nano (up to 9 fraction digits, trailing zeros dropped) -> an aware datetime."""
    head, _, frac = text.rstrip("Z").partition(".")
    return dt.datetime.fromisoformat(head + "." + (frac + "000000")[:6] + "+00:00")


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
        first_ts = _rfc3339(raw["first_ts"])
        assert t0 - dt.timedelta(seconds=1) < first_ts < dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
        assert _rfc3339(raw["last_ts"]) >= first_ts and raw["num_subjects"] == 2
        for ts in (raw["first_ts"], raw["last_ts"]):  # Go's RFC3339Nano drops a fraction's trailing zeros
            assert "." not in ts or not ts.rstrip("Z").endswith("0")
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
        r = await api(nc, "STREAM.INFO.MS", {"subjects_filter": ">"})
        assert (r["state"]["subjects"], r["total"], r["offset"], r["limit"]) == ({"ms.a": 2, "ms.b": 2}, 2, 0, 100_000)
        r = await api(nc, "STREAM.INFO.MS", {"subjects_filter": "ms.b"})
        assert (r["state"]["subjects"], r["total"]) == ({"ms.b": 2}, 1)
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
        t0 = time.monotonic()
        await js.publish("age", b"1")
        await js.publish("age", b"2")
        assert (await js.stream_info("AGE")).state.messages == 2
        deadline = t0 + 1.5
        while (await js.stream_info("AGE")).state.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert 0.38 <= time.monotonic() - t0 < 0.55  # on time, not at some later sweep
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
        r = await api(nc, "STREAM.NAMES", {"offset": 1})  # pages (ApiPagedRequest)
        assert (r["total"], r["offset"], r["streams"]) == (3, 1, ["L2", "L3"])
        r = await api(nc, "STREAM.LIST", {"offset": 2})
        assert (r["total"], r["offset"], [s["config"]["name"] for s in r["streams"]]) == (3, 2, ["L3"])
        r = await api(nc, "CONSUMER.NAMES.L1", {"offset": 2})
        assert (r["total"], r["offset"], r["consumers"]) == (3, 2, ["c"])
        r = await api(nc, "CONSUMER.LIST.L1", {"offset": 9})
        assert (r["total"], r["offset"], r["consumers"]) == (3, 3, [])
        r = await api(nc, "CONSUMER.NAMES.L2")
        assert (r["total"], r["consumers"]) == (0, [])
        r = await api(nc, "STREAM.LIST", {"subject": "none"})
        assert (r["total"], r["streams"]) == (0, [])
        assert err(await api(nc, "CONSUMER.NAMES.NOPE")) == (404, 10059, "stream not found")
        assert err(await api(nc, "CONSUMER.LIST.NOPE")) == (404, 10059, "stream not found")
        await nc.close()
    run(go())


# -- consumers: ack policies, redelivery, flow limits, info counters ---------------------------------------

async def _fill(js, name: str, subject: str, n: int) -> None:
    await js.add_stream(name=name, subjects=[subject.split(".")[0] + ".>"])
    for i in range(n):
        await js.publish(subject, b"%d" % i)


def test_ack_policies_none_all_explicit(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "AP", "ap.x", 6)
        none = await js.pull_subscribe("ap.>", durable="none", config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        got = await none.fetch(4, timeout=1)
        assert [m.data for m in got] == [b"0", b"1", b"2", b"3"]
        ci = await js.consumer_info("AP", "none")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.ack_floor.consumer_seq, ci.num_pending) == (0, 4, 4, 2)
        assert got[0].reply == "" or got[0].reply is None or got[0].reply.startswith("$JS.ACK.")
        every = await js.pull_subscribe("ap.>", durable="all", config=ConsumerConfig(ack_policy=AckPolicy.ALL))
        got = await every.fetch(5, timeout=1)
        assert len(got) == 5
        ci = await js.consumer_info("AP", "all")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq) == (5, 0)
        await got[2].ack_sync()  # acks 1..3
        ci = await js.consumer_info("AP", "all")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.ack_floor.consumer_seq) == (2, 3, 3)
        await got[4].ack_sync()
        ci = await js.consumer_info("AP", "all")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.num_pending) == (0, 5, 1)
        one = await js.pull_subscribe("ap.>", durable="exp", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
        got = await one.fetch(3, timeout=1)
        await got[1].ack_sync()  # only seq 2: the floor stays below the unacked 1
        ci = await js.consumer_info("AP", "exp")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.delivered.stream_seq) == (2, 0, 3)
        await got[0].ack_sync()
        ci = await js.consumer_info("AP", "exp")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.ack_floor.consumer_seq) == (1, 2, 2)
        await got[2].ack()
        reply = await nc.request(got[2].reply, b"+ACK", timeout=1)  # AckAck: an empty reply, even when repeated
        assert reply.data == b""
        ci = await js.consumer_info("AP", "exp")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.num_pending) == (0, 3, 3)
        await nc.close()
    run(go())


def test_redelivery_after_ack_wait_max_deliver_and_info_counters(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "RD", "rd.x", 2)
        psub = await js.pull_subscribe("rd.>", durable="c", config=ConsumerConfig(ack_wait=0.3, max_deliver=2))
        first = await psub.fetch(2, timeout=1)
        assert [m.metadata.num_delivered for m in first] == [1, 1]
        await first[1].ack_sync()
        t0 = time.monotonic()
        again = await psub.fetch(1, timeout=2)  # seq 1 back after ack_wait
        assert (again[0].data, again[0].metadata.num_delivered) == (b"0", 2)
        assert again[0].metadata.sequence.consumer == 3 and 0.25 <= time.monotonic() - t0 < 1.0
        ci = await js.consumer_info("RD", "c")
        assert (ci.num_redelivered, ci.num_ack_pending, ci.delivered.consumer_seq, ci.delivered.stream_seq) == (
            1, 1, 3, 2)
        assert await fetch(psub, 1, timeout=0.8) == []  # max_deliver 2 reached: not again
        ci = await js.consumer_info("RD", "c")
        assert (ci.num_ack_pending, ci.num_pending, ci.ack_floor.stream_seq) == (0, 0, 0)  # it left pending
        await js.publish("rd.x", b"2")
        got = await psub.fetch(1, timeout=1)
        assert (got[0].data, got[0].metadata.sequence.stream, got[0].metadata.num_pending) == (b"2", 3, 0)
        await nc.close()
    run(go())


def test_nak_with_delay_and_term_on_pull(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "NK", "nk.x", 3)
        psub = await js.pull_subscribe("nk.>", durable="c", config=ConsumerConfig(ack_wait=5))
        a, b, c = await psub.fetch(3, timeout=1)
        t0 = time.monotonic()
        await a.nak(delay=0.4)
        await b.nak()
        await c.term()
        got = await psub.fetch(1, timeout=1)  # the plain NAK comes back at once
        assert (got[0].data, got[0].metadata.num_delivered) == (b"1", 2)
        assert time.monotonic() - t0 < 0.3
        got2 = await psub.fetch(1, timeout=1)  # the delayed one only after its delay
        assert (got2[0].data, got2[0].metadata.num_delivered) == (b"0", 2)
        assert 0.35 <= time.monotonic() - t0 < 0.9
        assert await fetch(psub, 1, timeout=0.3) == []  # TERM: never again
        ci = await js.consumer_info("NK", "c")
        assert (ci.num_ack_pending, ci.num_redelivered, ci.ack_floor.stream_seq) == (2, 2, 0)
        await nc.close()
    run(go())


def test_backoff_redelivery_schedule(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "BK", "bk.x", 1)
        info = await js.add_consumer("BK", ConsumerConfig(durable_name="c", backoff=[0.2, 0.6], max_deliver=4,
                                                          ack_policy=AckPolicy.EXPLICIT))
        assert (info.config.backoff, info.config.ack_wait) == ([0.2, 0.6], 0.2)  # ack_wait = backoff[0]
        psub = await js.pull_subscribe_bind("c", stream="BK")
        t0 = time.monotonic()
        times = []
        for _ in range(3):
            m = (await psub.fetch(1, timeout=2))[0]
            times.append((m.metadata.num_delivered, round(time.monotonic() - t0, 1)))
        assert [n for n, _ in times] == [1, 2, 3]
        assert 0.15 <= times[1][1] <= 0.5  # after backoff[0]
        assert 0.7 <= times[2][1] - times[1][1] + 0.1 <= 1.1  # then backoff[1] (~0.6 s)
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.BK.bad", {"stream_name": "BK", "config": {
            "durable_name": "bad", "ack_policy": "explicit", "backoff": [100_000_000, 200_000_000],
            "max_deliver": 2}})) == (400, 10116, "max deliver is required to be > length of backoff values")
        await nc.close()
    run(go())


def test_max_ack_pending_on_pull(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "MA", "ma.x", 5)
        psub = await js.pull_subscribe("ma.>", durable="c", config=ConsumerConfig(max_ack_pending=2))
        got = await psub.fetch(5, timeout=0.5)
        assert [m.data for m in got] == [b"0", b"1"]  # only as many as may be pending
        assert await fetch(psub, 1, timeout=0.3) == []
        await got[0].ack_sync()
        more = await psub.fetch(5, timeout=0.5)
        assert [m.data for m in more] == [b"2"]
        ci = await js.consumer_info("MA", "c")
        assert (ci.num_ack_pending, ci.num_pending, ci.config.max_ack_pending) == (2, 2, 2)
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.MA.none", {"stream_name": "MA", "config": {
            "durable_name": "none", "ack_policy": "none", "max_ack_pending": 5, "deliver_subject": "dl"}})) == (
            400, 10082, "consumer requires ack policy for max ack pending")
        await nc.close()
    run(go())


def test_next_ack_acks_and_asks_for_more(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "NX", "nx.x", 4)
        await js.add_consumer("NX", ConsumerConfig(durable_name="c"))
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.NX.c", b'{"batch":1}', reply=inbox)
        first = await sub.next_msg(timeout=1)
        assert first.data == b"0"
        await nc.publish(first.reply, b'+NXT {"batch":2}', reply=inbox)  # ack, and ask for 2 more
        got = [await sub.next_msg(timeout=1) for _ in range(2)]
        assert [m.data for m in got] == [b"1", b"2"]
        ci = await js.consumer_info("NX", "c")
        assert (ci.ack_floor.stream_seq, ci.num_ack_pending) == (1, 2)
        await nc.publish(got[0].reply, b"+NXT", reply=inbox)  # a bare +NXT asks for one
        assert (await sub.next_msg(timeout=1)).data == b"3"
        await nc.publish(got[1].reply, b"+NXT 1", reply=inbox)  # a number: the batch; nothing left to send
        with pytest.raises(TIMEOUTS):
            await sub.next_msg(timeout=0.3)
        ci = await js.consumer_info("NX", "c")
        assert (ci.ack_floor.stream_seq, ci.num_ack_pending, ci.num_waiting) == (3, 1, 1)
        await nc.close()
    run(go())


def test_in_progress_ack_restarts_ack_wait(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "WP", "wp.x", 2)
        psub = await js.pull_subscribe("wp.>", durable="c", config=ConsumerConfig(ack_wait=0.4))
        slow, idle = await psub.fetch(2, timeout=1)
        t0 = time.monotonic()
        for _ in range(3):  # keep seq 1 in progress past its 0.4 s ack_wait; seq 2 is left alone
            await asyncio.sleep(0.2)
            await slow.in_progress()
        assert time.monotonic() - t0 >= 0.6
        back = await psub.fetch(1, timeout=0.5)  # seq 2's ack_wait is over; seq 1's was restarted
        assert [(m.metadata.sequence.stream, m.metadata.num_delivered) for m in back] == [(2, 2)]
        await slow.ack_sync()
        ci = await js.consumer_info("WP", "c")
        assert (ci.num_redelivered, ci.num_ack_pending, ci.ack_floor.stream_seq) == (1, 1, 1)
        reply = await nc.request(slow.reply, b"+ACK", timeout=1)  # AckAck again for a settled message
        assert reply.data == b""
        await nc.close()
    run(go())


def test_pull_deliver_policies(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="DP", subjects=["dp.*"])
        for i in range(4):
            await js.publish("dp.%s" % "ab"[i % 2], b"%d" % i)
        await asyncio.sleep(0.05)
        middle = dt.datetime.now(dt.timezone.utc)
        await asyncio.sleep(0.05)
        await js.publish("dp.a", b"4")

        async def first(name: str, **cfg) -> list:
            await js.add_consumer("DP", ConsumerConfig(durable_name=name, **cfg))
            psub = await js.pull_subscribe_bind(name, stream="DP")
            return [(m.data, m.metadata.num_pending) for m in await fetch(psub, 10, timeout=0.3)]

        assert await first("all", deliver_policy=DeliverPolicy.ALL) == [
            (b"0", 4), (b"1", 3), (b"2", 2), (b"3", 1), (b"4", 0)]
        assert await first("last", deliver_policy=DeliverPolicy.LAST) == [(b"4", 0)]
        assert await first("lps", deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, filter_subject="dp.*") == [
            (b"3", 1), (b"4", 0)]
        assert await first("seq", deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=4) == [
            (b"3", 1), (b"4", 0)]
        assert await first("time", deliver_policy=DeliverPolicy.BY_START_TIME,
                           opt_start_time=middle.isoformat()) == [(b"4", 0)]
        assert await first("flt", filter_subject="dp.b") == [(b"1", 1), (b"3", 0)]
        assert await first("new", deliver_policy=DeliverPolicy.NEW) == []
        await asyncio.sleep(0.1)  # that fetch's request has expired on the server too (it would take "5")
        await js.publish("dp.b", b"5")
        psub = await js.pull_subscribe_bind("new", stream="DP")
        assert [m.data for m in await psub.fetch(1, timeout=1)] == [b"5"]
        ci = await js.consumer_info("DP", "time")
        assert (ci.num_pending, ci.delivered.stream_seq, ci.config.opt_start_time is not None) == (1, 5, True)
        await nc.close()
    run(go())


def test_interest_retention(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="IN", subjects=["in.*"], retention=RetentionPolicy.INTEREST)
        await js.publish("in.a", b"nobody")  # no consumer yet: not kept
        si = await js.stream_info("IN")
        assert (si.state.messages, si.state.last_seq) == (0, 1)
        one = await js.pull_subscribe("in.*", durable="one")
        two = await js.pull_subscribe("in.a", durable="two")  # interested in in.a only
        for i in range(3):
            await js.publish("in.a", b"a%d" % i)
        await js.publish("in.b", b"b")
        assert (await js.stream_info("IN")).state.messages == 4
        for m in await one.fetch(4, timeout=1):
            await m.ack_sync()
        await asyncio.sleep(0.05)
        si = await js.stream_info("IN")
        assert (si.state.messages, si.state.first_seq) == (3, 2)  # in.b went; in.a still wanted by "two"
        got = await two.fetch(3, timeout=1)
        await got[0].ack_sync()
        await got[2].ack_sync()
        await asyncio.sleep(0.05)
        si = await js.stream_info("IN")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (1, 3, 5)
        await js.delete_consumer("IN", "two")  # the last interest in seq 3 gone
        await asyncio.sleep(0.1)
        assert (await js.stream_info("IN")).state.messages == 0
        await nc.close()
    run(go())


def test_workqueue_retention(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="WQ", subjects=["wq.*"], retention=RetentionPolicy.WORK_QUEUE)
        for i in range(4):
            await js.publish("wq.%s" % "ab"[i % 2], b"%d" % i)
        a = await js.pull_subscribe("wq.a", durable="a")
        b = await js.pull_subscribe("wq.b", durable="b")

        def cc(name: str, **kw) -> dict:
            return {"stream_name": "WQ", "config": {"durable_name": name, "ack_policy": "explicit", **kw}}

        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.WQ.all", cc("all"))) == (
            400, 10099, "multiple non-filtered consumers not allowed on workqueue stream")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.WQ.star", cc("star", filter_subject="wq.*"))) == (
            400, 10100, "filtered consumer not unique on workqueue stream")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.WQ.a2", cc("a2", filter_subject="wq.a"))) == (
            400, 10100, "filtered consumer not unique on workqueue stream")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.WQ.l", cc("l", filter_subject="wq.c",
                                                                     deliver_policy="last"))) == (
            400, 10101, "consumer must be deliver all on workqueue stream")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.WQ.p", cc("p", filter_subject="wq.c", ack_policy="none",
                                                                     deliver_subject="out"))) == (
            400, 10098, "workqueue stream requires explicit ack")
        code, err_code, text = err(await api(nc, "CONSUMER.DURABLE.CREATE.WQ.n", cc(
            "n", filter_subject="wq.c", ack_policy="none")))
        assert (code, err_code) == (400, 10084)
        assert text == ("consumer in pull mode requires ack policy" if AGAINST == "nats-server"  # 2.9.10's text
                        else "consumer in pull mode requires explicit ack policy on workqueue stream")  # 2.10's
        got = await a.fetch(2, timeout=1)
        await got[0].ack_sync()
        await asyncio.sleep(0.05)
        si = await js.stream_info("WQ")
        assert (si.state.messages, si.state.first_seq) == (3, 2)  # acked: removed; delivered only: kept
        for m in await b.fetch(2, timeout=1):
            await m.ack_sync()
        await asyncio.sleep(0.05)
        si = await js.stream_info("WQ")
        assert (si.state.messages, si.state.first_seq) == (1, 3)
        await js.delete_consumer("WQ", "b")  # the partition is free again
        assert "error" not in await api(nc, "CONSUMER.DURABLE.CREATE.WQ.b2", cc("b2", filter_subject="wq.b"))
        await nc.close()
    run(go())


def test_bad_input_gets_nats_server_errors(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        assert await api(nc, "STREAM.CREATE.B", raw=b'{"name": "B", "subjects": [') == {
            "type": "io.nats.jetstream.api.v1.stream_create_response",
            "error": {"code": 400, "err_code": 10025, "description": "invalid JSON"}}
        for bad in ({"retention": "forever"}, {"max_msgs": "ten"}, {"discard": "never"}, {"storage": "tape"}):
            assert err(await api(nc, "STREAM.CREATE.B", {"name": "B", "subjects": ["b"], **bad})) == (
                400, 10025, "invalid JSON"), bad
        assert err(await api(nc, "STREAM.CREATE.B", {"name": "B", "subjects": ["a..b"]})) == (
            500, 10052, "invalid subject")
        assert err(await api(nc, "STREAM.CREATE.B", {"name": "B", "subjects": ["b"], "num_replicas": 3})) == (
            500, 10074, "replicas > 1 not supported in non-clustered mode")
        assert err(await api(nc, "STREAM.CREATE.B", {"name": "C", "subjects": ["b"]})) == (
            400, 10056, "stream name in subject does not match request")
        assert err(await api(nc, "STREAM.CREATE.B", {"name": "B", "subjects": ["b"], "sealed": True})) == (
            500, 10052, "stream configuration for create can not be sealed")
        await js.add_stream(name="C", subjects=["c.>"])
        assert err(await api(nc, "STREAM.CREATE.D", {"name": "D", "subjects": ["c.x.*"]})) == (
            400, 10065, "subjects overlap with an existing stream")
        await js.add_stream(name="E", subjects=["e"])
        assert err(await api(nc, "STREAM.UPDATE.E", {"name": "E", "subjects": ["e", "c.>"]})) == (
            400, 10065, "subjects overlap with an existing stream")
        for op in ("STREAM.INFO.NOPE", "STREAM.PURGE.NOPE", "STREAM.DELETE.NOPE", "CONSUMER.INFO.NOPE.c"):
            assert err(await api(nc, op)) == (404, 10059, "stream not found"), op
        assert err(await api(nc, "STREAM.MSG.GET.NOPE", {"seq": 1})) == (404, 10059, "stream not found")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.NOPE.c", {"stream_name": "NOPE", "config": {
            "durable_name": "c"}})) == (404, 10059, "stream not found")
        assert err(await api(nc, "CONSUMER.INFO.C.nobody")) == (404, 10014, "consumer not found")
        assert err(await api(nc, "CONSUMER.DELETE.C.nobody")) == (404, 10014, "consumer not found")
        for subject in ("CONSUMER.MSG.NEXT.C.nobody", "CONSUMER.MSG.NEXT.NOPE.c"):  # no consumer: no answer
            with pytest.raises(TIMEOUTS):  # (a JSON error here would reach a fetch as a message)
                await nc.request("$JS.API." + subject, b'{"batch":1}', timeout=0.2)
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.C.c", raw=b'{"config": ')) == (400, 10025, "invalid JSON")

        async def consumer_err(name: str, subject: str | None = None, stream: str = "C", **cfg):
            body = {"stream_name": stream, "config": {"durable_name": name, "ack_policy": "explicit", **cfg}}
            return err(await api(nc, subject or f"CONSUMER.DURABLE.CREATE.C.{name}", body))

        assert await consumer_err("s", deliver_policy="by_start_sequence") == (400, 10094, (
            "consumer delivery policy is deliver by start sequence, but optional start sequence is not set"))
        assert await consumer_err("s", deliver_policy="by_start_time") == (400, 10094, (
            "consumer delivery policy is deliver by start time, but optional start time is not set"))
        assert await consumer_err("s", opt_start_seq=3) == (400, 10094, (
            "consumer delivery policy is deliver all, but optional start sequence is also set"))
        assert await consumer_err("s", ack_policy="sometimes") == (400, 10025, "invalid JSON")
        assert await consumer_err("s", deliver_policy="whenever") == (400, 10025, "invalid JSON")
        assert await consumer_err("s", ack_wait="long") == (400, 10025, "invalid JSON")
        assert await consumer_err("e", subject="CONSUMER.CREATE.C") == (
            400, 10020, "consumer expected to be ephemeral but a durable name was set in request")
        assert await consumer_err("y", subject="CONSUMER.DURABLE.CREATE.C.x") == (
            400, 10017, "consumer name in subject does not match durable name in request")
        assert await consumer_err("x", stream="E") == (400, 10056, "stream name in subject does not match request")
        assert await consumer_err("f", filter_subject="zzz") == (
            400, 10093, "consumer filter subject is not a valid subset of the interest subjects")
        assert await consumer_err("h", idle_heartbeat=1_000_000_000) == (
            400, 10088, "consumer idle heartbeat requires a push based consumer")
        assert await consumer_err("w", deliver_subject="out.*") == (
            400, 10079, "consumer deliver subject has wildcards")
        assert await consumer_err("cy", deliver_subject="c.loop") == (
            400, 10081, "consumer deliver subject forms a cycle")
        assert await consumer_err("hb", deliver_subject="hb", idle_heartbeat=50_000_000) == (
            400, 10083, "consumer idle heartbeat needs to be >= 100ms")
        assert await consumer_err("fc", deliver_subject="fc", flow_control=True) == (
            400, 10108, "consumer with flow control also needs heartbeats")
        assert await consumer_err("mw", deliver_subject="mw", max_waiting=5) == (
            400, 10080, "consumer in push mode can not set max waiting")
        assert await consumer_err("r", num_replicas=3) == (
            500, 10074, "replicas > 1 not supported in non-clustered mode")
        assert await js.consumers_info("C") == []  # nothing was created
        await nc.close()
    run(go())


def test_push_ack_policies_and_counters(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "PA", "pa.x", 4)
        none = await js.subscribe("pa.>", durable="none", manual_ack=True,
                                  config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        got = [await none.next_msg(timeout=1) for _ in range(4)]
        assert [m.data for m in got] == [b"0", b"1", b"2", b"3"]
        ci = await js.consumer_info("PA", "none")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.delivered.consumer_seq, ci.num_pending) == (0, 4, 4, 0)
        every = await js.subscribe("pa.>", durable="all", manual_ack=True,
                                   config=ConsumerConfig(ack_policy=AckPolicy.ALL, ack_wait=0.5))
        got = [await every.next_msg(timeout=1) for _ in range(4)]
        await got[2].ack_sync()  # settles 1..3
        ci = await js.consumer_info("PA", "all")
        assert (ci.num_ack_pending, ci.ack_floor.stream_seq, ci.ack_floor.consumer_seq) == (1, 3, 3)
        again = await every.next_msg(timeout=1.5)  # only seq 4 comes back after ack_wait
        assert (again.data, again.metadata.num_delivered, again.metadata.sequence.consumer) == (b"3", 2, 5)
        await again.ack_sync()
        ci = await js.consumer_info("PA", "all")
        assert (ci.num_ack_pending, ci.num_redelivered, ci.ack_floor.stream_seq, ci.ack_floor.consumer_seq) == (
            0, 0, 4, 5)
        await nc.close()
    run(go())


def test_stream_update_applies_new_limits(js_url):  # noqa: F811
    async def go():
        nc, js = await connect(js_url)
        await _fill(js, "UP", "up.x", 5)
        await js.update_stream(StreamConfig(name="UP", subjects=["up.>"], max_msgs=2))
        si = await js.stream_info("UP")
        assert (si.state.messages, si.state.first_seq) == (2, 4)  # trimmed at once
        await js.update_stream(StreamConfig(name="UP", subjects=["up.>"], max_msgs=2, discard=DiscardPolicy.NEW))
        assert await pub_err(js, "up.x") == (503, 10077, "maximum messages exceeded")
        assert err(await api(nc, "STREAM.UPDATE.UP", {"name": "UP", "subjects": ["up.>"], "max_msgs": 2,
                                                      "discard": "new", "max_consumers": 5})) == (
            500, 10052, "stream configuration update can not change MaxConsumers")
        assert err(await api(nc, "STREAM.UPDATE.UP", {"name": "UP", "subjects": ["up.>"],
                                                      "retention": "workqueue"})) == (
            500, 10052, "stream configuration update can not change retention policy" + (
                "" if AGAINST == "nats-server" else " to/from workqueue"))  # 2.9.10 refuses any change; 2.10 this
        await nc.close()
    run(go())


def test_filter_subjects(js_url):  # noqa: F811
    if AGAINST == "nats-server":
        pytest.skip("filter_subjects is nats-server 2.10; the reference here is 2.9.10, which ignores it")

    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="FS", subjects=["fs.*"])
        for i, s in enumerate("abcab"):
            await js.publish(f"fs.{s}", b"%d" % i)
        info = await js.add_consumer("FS", ConsumerConfig(durable_name="ab", filter_subjects=["fs.a", "fs.b"]))
        assert (info.config.filter_subjects, info.config.filter_subject, info.num_pending) == (
            ["fs.a", "fs.b"], None, 4)
        psub = await js.pull_subscribe_bind("ab", stream="FS")
        assert [m.data for m in await psub.fetch(10, timeout=0.3)] == [b"0", b"1", b"3", b"4"]

        def cc(name: str, **kw) -> dict:
            return {"stream_name": "FS", "config": {"durable_name": name, "ack_policy": "explicit", **kw}}

        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.FS.o", cc("o", filter_subjects=["fs.*", "fs.a"]))) == (
            400, 10138, "consumer subject filters cannot overlap")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.FS.d", cc("d", filter_subject="fs.a",
                                                                     filter_subjects=["fs.b"]))) == (
            400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified")
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.FS.e", cc("e", filter_subjects=["fs.a", ""]))) == (
            400, 10139, "consumer filter in FilterSubjects cannot be empty")
        await js.add_stream(name="FW", subjects=["fw.*"], retention=RetentionPolicy.WORK_QUEUE)
        assert "error" not in await api(nc, "CONSUMER.DURABLE.CREATE.FW.ab", {"stream_name": "FW", "config": {
            "durable_name": "ab", "ack_policy": "explicit", "filter_subjects": ["fw.a", "fw.b"]}})
        assert err(await api(nc, "CONSUMER.DURABLE.CREATE.FW.bc", {"stream_name": "FW", "config": {
            "durable_name": "bc", "ack_policy": "explicit", "filter_subjects": ["fw.c", "fw.b"]}})) == (
            400, 10100, "filtered consumer not unique on workqueue stream")
        await nc.close()
    run(go())


def test_nats_js_policies(js_url):  # noqa: F811
    """The same policies through nats.js (tests/clients/js/js_policies.mjs); its JSON is identical against
    nats-server 2.9.10."""
    r = run_node_script("js_policies.mjs", js_url, "nats")
    assert r["full"] == [503, 10077, "maximum messages exceeded"]
    assert r["too_big"] == [400, 10054, "message size exceeds maximum allowed"]
    assert (r["purged"], r["deleted"]) == (2, True)
    assert r["delete_again"] == [400, 10043, "sequence 4 not found"]
    assert r["state"] == [3, 2, 6, 2] and r["names"] == ["JPPUR"]
    assert r["ack_all"] == [1, 5, 0]  # acking seq 5 settled 2 and 5; 6 pending
    assert r["nak_delay"] == [["1", 2, True]] and r["nak_info"] == [0, 0, 6]
    assert r["interest"] == [1, 0, 1]  # no consumer: the sequence is used, the message not kept
    assert r["wq_overlap"] == [400, 10100, "filtered consumer not unique on workqueue stream"]
    assert r["bad_policy"] == [
        400, 10094, "consumer delivery policy is deliver all, but optional start sequence is also set"]
    assert r["missing"] == [404, 10014, "consumer not found"]


def test_policies_hold_across_a_restart(tmp_path):
    """Omnibus only (a restart on the same data dir): workqueue removals, interest removals, the
    de-duplication window, per-subject limits and a durable's ack state all survive, so nothing acked
    comes back and nothing unacked is lost."""
    from omnibus import SyncBroker

    async def before(url):
        nc, js = await connect(url)
        await js.add_stream(name="WQ", subjects=["wq"], retention=RetentionPolicy.WORK_QUEUE)
        await js.add_stream(name="IN", subjects=["in"], retention=RetentionPolicy.INTEREST)
        await js.add_stream(name="DD", subjects=["dd"], duplicate_window=60)
        await js.add_stream(name="PS", subjects=["ps.*"], max_msgs_per_subject=2)
        for i in range(4):
            await js.publish("wq", b"w%d" % i)
        wq = await js.pull_subscribe("wq", durable="w", config=ConsumerConfig(ack_wait=0.5))
        got = await wq.fetch(3, timeout=1)
        await got[0].ack_sync()
        await got[2].ack_sync()  # seq 2 delivered, not acked; seq 4 never delivered
        ins = await js.pull_subscribe("in", durable="i")
        for i in range(2):
            await js.publish("in", b"i%d" % i)
        await (await ins.fetch(1, timeout=1))[0].ack_sync()
        await js.publish("dd", b"d", headers={"Nats-Msg-Id": "once"})
        for i in range(3):
            await js.publish("ps.a", b"p%d" % i)
        await nc.close()

    async def after(url):
        nc, js = await connect(url)
        si = await js.stream_info("WQ")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (2, 2, 4)
        wq = await js.pull_subscribe_bind("w", stream="WQ")
        got = [(m.data, m.metadata.num_delivered) for m in await fetch(wq, 2, timeout=1.5)]
        if len(got) < 2:  # seq 2 comes back once its ack_wait is over
            got += [(m.data, m.metadata.num_delivered) for m in await fetch(wq, 1, timeout=1.5)]
        assert sorted(got) == [(b"w1", 2), (b"w3", 1)]
        assert (await js.stream_info("IN")).state.messages == 1
        dup = await js.publish("dd", b"again", headers={"Nats-Msg-Id": "once"})
        assert (dup.seq, dup.duplicate) == (1, True)
        await js.publish("ps.a", b"p3")
        si = await js.stream_info("PS")
        assert (si.state.messages, si.state.first_seq) == (2, 3)
        await nc.close()

    with SyncBroker(tmp_path) as b:
        run(before(b.nats_url))
    with SyncBroker(tmp_path) as b:
        run(after(b.nats_url))


def test_pull_request_limits_answer_with_statuses(js_url):  # noqa: F811
    """CONSUMER.MSG.NEXT past the consumer's max_batch / max_expires / max_bytes / max_waiting, or with
    no_wait and nothing to send: the status nats-server sends (no JSON)."""
    async def go():
        nc, js = await connect(js_url)
        await js.add_stream(name="PR", subjects=["pr"])
        await api(nc, "CONSUMER.DURABLE.CREATE.PR.c", {"stream_name": "PR", "config": {
            "durable_name": "c", "ack_policy": "explicit", "max_batch": 2, "max_expires": 1_000_000_000,
            "max_waiting": 1, "max_bytes": 1000}})

        async def statuses(body: dict, wait: float = 1.0) -> list:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish("$JS.API.CONSUMER.MSG.NEXT.PR.c", json.dumps(body).encode(), reply=inbox)
            out = []
            while True:
                try:
                    m = await sub.next_msg(timeout=wait)
                except TIMEOUTS:
                    break
                h = {getattr(k, "value", k): v for k, v in (m.headers or {}).items()}
                out.append((m.data, h.get("Status"), h.get("Description"), h.get("Nats-Pending-Messages")))
                if h.get("Status"):  # a status ends the request
                    break
            await sub.unsubscribe()
            return out

        assert await statuses({"batch": 1, "no_wait": True}) == [(b"", "404", "No Messages", None)]
        assert await statuses({"batch": 5, "expires": 100_000_000}) == [
            (b"", "409", "Exceeded MaxRequestBatch of 2", None)]
        assert await statuses({"batch": 1, "expires": 5_000_000_000}) == [
            (b"", "409", "Exceeded MaxRequestExpires of 1s", None)]
        assert await statuses({"batch": 1, "max_bytes": 5000, "expires": 100_000_000}) == [
            (b"", "409", "Exceeded MaxRequestMaxBytes of 1000", None)]
        assert await statuses({"batch": 2, "expires": 200_000_000}) == [(b"", "408", "Request Timeout", "2")]
        # under a millisecond still expires (nats-py's fetch sends such follow-ups; one left waiting
        # would take the next message away from a later fetch)
        assert await statuses({"batch": 2, "expires": 500_000}) == [(b"", "408", "Request Timeout", "2")]
        waiting = nc.new_inbox()
        await nc.subscribe(waiting)
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.PR.c", b'{"batch":1,"expires":900000000}', reply=waiting)
        await nc.flush()
        assert (await js.consumer_info("PR", "c")).num_waiting == 1
        assert await statuses({"batch": 1, "expires": 200_000_000}) == [(b"", "409", "Exceeded MaxWaiting", None)]
        await nc.close()
    run(go())
