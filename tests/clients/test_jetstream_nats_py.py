"""JetStream, first slice, with nats-py: streams, PubAcks with de-duplication, pull consumers and acks,
redelivery, errors with nats-server's err_codes, and a durable consumer across a restart."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from omnibus import SyncBroker


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b


def test_stream_publish_dedup_pull_and_ack(broker):
    async def go():
        nc = await nats.connect(broker.nats_url)
        js = nc.jetstream()
        info = await js.add_stream(name="ORDERS", subjects=["orders.>"])
        assert (info.config.name, info.state.messages) == ("ORDERS", 0)
        plain = await nc.subscribe("orders.>")  # core subscribers still see stream publishes
        acks = [await js.publish("orders.new", b"o%d" % i, headers={"Nats-Msg-Id": f"id{i}"}) for i in range(5)]
        assert [a.seq for a in acks] == [1, 2, 3, 4, 5] and {a.stream for a in acks} == {"ORDERS"}
        dup = await js.publish("orders.new", b"again", headers={"Nats-Msg-Id": "id4"})
        assert (dup.seq, dup.duplicate) == (5, True)
        assert (await plain.next_msg(timeout=2)).data == b"o0"
        psub = await js.pull_subscribe("orders.>", durable="worker")
        msgs = await psub.fetch(3, timeout=2)
        assert [m.data for m in msgs] == [b"o0", b"o1", b"o2"]
        assert [m.metadata.sequence.stream for m in msgs] == [1, 2, 3]
        for m in msgs:
            await m.ack()
        rest = await psub.fetch(10, timeout=1)
        assert [m.data for m in rest] == [b"o3", b"o4"]
        for m in rest:
            await m.ack_sync()
        ci = await js.consumer_info("ORDERS", "worker")
        assert (ci.num_pending, ci.num_ack_pending, ci.delivered.stream_seq) == (0, 0, 5)
        si = await js.stream_info("ORDERS")
        assert (si.state.messages, si.state.first_seq, si.state.last_seq) == (5, 1, 5)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await psub.fetch(1, timeout=0.5)  # nothing left
        assert await js.streams_info() and (await js.stream_info("ORDERS")).config.subjects == ["orders.>"]
        await nc.close()
    run(go())


def test_redelivery_nak_and_workqueue(broker):
    async def go():
        nc = await nats.connect(broker.nats_url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="JOBS", subjects=["jobs.*"], retention=RetentionPolicy.WORK_QUEUE))
        for i in range(2):
            await js.publish("jobs.a", b"j%d" % i)
        psub = await js.pull_subscribe("jobs.*", durable="w", config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=0.5))
        first = await psub.fetch(1, timeout=2)
        assert first[0].data == b"j0"  # not acked: comes back after ack_wait
        again = await psub.fetch(2, timeout=3)
        assert [m.data for m in again][:1] == [b"j1"] or [m.data for m in again][:1] == [b"j0"]
        seen = {m.data: m for m in again}
        if b"j0" not in seen:
            seen.update({m.data: m for m in await psub.fetch(1, timeout=3)})
        assert seen[b"j0"].metadata.num_delivered == 2
        await seen[b"j1"].nak()
        redo = await psub.fetch(1, timeout=2)
        assert redo[0].data == b"j1" and redo[0].metadata.num_delivered == 2
        for m in (seen[b"j0"], redo[0]):
            await m.ack_sync()
        await asyncio.sleep(0.1)
        assert (await js.stream_info("JOBS")).state.messages == 0  # workqueue: acked messages are removed
        await nc.close()
    run(go())


def test_errors_carry_nats_server_codes(broker):
    async def go():
        nc = await nats.connect(broker.nats_url)
        js = nc.jetstream()
        with pytest.raises(NotFoundError) as e:
            await js.stream_info("NOPE")
        assert e.value.err_code == 10059 and e.value.description == "stream not found"
        await js.add_stream(name="A", subjects=["a.>"])
        with pytest.raises(BadRequestError) as e:
            await js.add_stream(name="B", subjects=["a.b"])
        assert e.value.err_code == 10065
        with pytest.raises(NotFoundError) as e:
            await js.consumer_info("A", "nobody")
        assert e.value.err_code == 10014
        await js.delete_stream("A")
        with pytest.raises(NotFoundError):
            await js.stream_info("A")
        await nc.close()
    run(go())


def test_durable_consumer_resumes_after_restart(tmp_path):
    async def first(url):
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="EV", subjects=["ev.>"])
        for i in range(6):
            await js.publish("ev.x", b"%d" % i)
        psub = await js.pull_subscribe("ev.>", durable="d", config=ConsumerConfig(ack_wait=1.0))
        for m in await psub.fetch(4, timeout=2):
            if m.data != b"3":  # leave one unacked
                await m.ack_sync()
        await nc.close()

    async def second(url):
        nc = await nats.connect(url)
        js = nc.jetstream()
        assert (await js.stream_info("EV")).state.messages == 6
        psub = await js.pull_subscribe("ev.>", durable="d")
        got = []
        for _ in range(6):  # "3" comes back once its 1 s ack_wait has passed
            try:
                batch = await psub.fetch(5, timeout=1)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nats-py raises either on no messages
                batch = []
            for m in batch:
                await m.ack_sync()
            got += batch
            if len(got) >= 3:
                break
        await nc.close()
        return sorted(m.data for m in got)

    with SyncBroker(tmp_path) as b:
        run(first(b.nats_url))
    with SyncBroker(tmp_path) as b:
        # the unacked "3" is redelivered after its ack_wait; "4" and "5" were never delivered; 0-2 stay acked
        assert run(second(b.nats_url)) == [b"3", b"4", b"5"]


def test_direct_get(broker):
    """$JS.API.DIRECT.GET.<stream> and .<stream>.<subject>: the message with Nats-Stream/-Subject/
    -Sequence/-Time-Stamp headers, 404/408 statuses; byte-for-byte what nats-server 2.9.10 answers
    (checked side by side, timestamps aside)."""
    async def go():
        nc = await nats.connect(broker.nats_url)
        js = nc.jetstream()
        await js.add_stream(name="DG", subjects=["dg.>"], allow_direct=True)
        await js.add_stream(name="ND", subjects=["nd.>"])
        await js.publish("dg.a", b"one", headers={"X": "1"})
        await js.publish("dg.b", b"two")
        await js.publish("dg.a", b"three")

        async def req(subject, data=b""):
            m = await nc.request(subject, data, timeout=1)
            h = dict(m.headers or {})
            ts = h.pop("Nats-Time-Stamp", None)
            return m.data, {getattr(k, "value", k): v for k, v in h.items()}, ts

        data, hdrs, ts = await req("$JS.API.DIRECT.GET.DG", b'{"seq":1}')
        assert (data, hdrs) == (b"one", {"X": "1", "Nats-Stream": "DG", "Nats-Subject": "dg.a", "Nats-Sequence": "1"})
        assert ts.endswith("Z") and ts.startswith("20")
        assert (await req("$JS.API.DIRECT.GET.DG", b'{"last_by_subj":"dg.a"}'))[:2] == (
            b"three", {"Nats-Stream": "DG", "Nats-Subject": "dg.a", "Nats-Sequence": "3"})
        assert (await req("$JS.API.DIRECT.GET.DG", b'{"next_by_subj":"dg.a","seq":2}'))[0] == b"three"
        assert (await req("$JS.API.DIRECT.GET.DG.dg.b"))[0] == b"two"  # last message on the subject
        statuses = {}
        for subject, body in [("DG", b'{"seq":9}'), ("DG.dg.zz", b""), ("DG", b""), ("DG", b"{"),
                              ("DG", b'{"seq":1,"last_by_subj":"dg.a"}'), ("DG.dg.a", b'{"seq":1}')]:
            _, h, _ = await req("$JS.API.DIRECT.GET." + subject, body)
            statuses[(subject, body)] = (h["Status"], h["Description"])
        assert list(statuses.values()) == [("404", "Message Not Found"), ("404", "Message Not Found"),
                                           ("408", "Empty Request"), ("408", "Malformed Request"),
                                           ("408", "Bad Request"), ("408", "Bad Request")]
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):  # no allow_direct: nobody answers
            await nc.request("$JS.API.DIRECT.GET.ND", b'{"seq":1}', timeout=0.3)
        m = await js.get_msg("DG", 1, direct=True)
        assert (m.subject, m.seq, m.data, m.headers["X"]) == ("dg.a", 1, b"one", "1")
        m = await js.get_msg("DG", subject="dg.b", direct=True)
        assert (m.seq, m.data) == (2, b"two")
        m = await js.get_msg("DG", seq=2, subject="dg.a", next=True)  # STREAM.MSG.GET next_by_subj
        assert (m.seq, m.data) == (3, b"three")
        with pytest.raises(NotFoundError):
            await js.get_msg("DG", 9, direct=True)
        await nc.close()
    run(go())


def test_pull_request_heartbeats_and_timeout_status(broker):
    """A CONSUMER.MSG.NEXT with idle_heartbeat gets ``100 Idle Heartbeat`` statuses (last sequences) on
    time while it waits, and its ``408 Request Timeout`` says what it had left -- as nats-server 2.9.10."""
    async def go():
        import json
        import time

        nc = await nats.connect(broker.nats_url)
        js = nc.jetstream()
        await js.add_stream(name="H", subjects=["h.>"])
        await js.publish("h.x", b"1")
        await js.add_consumer("H", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT))
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        t0 = time.monotonic()
        await nc.publish("$JS.API.CONSUMER.MSG.NEXT.H.c", json.dumps(
            {"batch": 3, "expires": 1_100_000_000, "idle_heartbeat": 400_000_000}).encode(), reply=inbox)
        seen = []
        while True:
            m = await sub.next_msg(timeout=2)
            h = {getattr(k, "value", k): v for k, v in (m.headers or {}).items()}
            seen.append((round(time.monotonic() - t0, 1), m.data, h))
            if h.get("Status") == "408":
                break
        assert seen[0][1:] == (b"1", {})
        beats = [s for s in seen if s[2].get("Status") == "100"]
        assert [s[2] for s in beats] == [{"Status": "100", "Description": "Idle Heartbeat",
                                         "Nats-Last-Consumer": "1", "Nats-Last-Stream": "1"}] * 2
        assert all(abs(s[0] - due) <= 0.2 for s, due in zip(beats, (0.4, 0.8)))  # on time, not per sweep
        assert seen[-1][2] == {"Status": "408", "Description": "Request Timeout", "Nats-Pending-Messages": "2",
                               "Nats-Pending-Bytes": "0"}
        assert 1.0 <= seen[-1][0] <= 1.3
        await nc.close()
    run(go())
