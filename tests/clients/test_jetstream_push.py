"""JetStream push consumers with nats-py: durable and ephemeral ``js.subscribe``, deliver_group queue
subscribers, manual acks, ack_wait redelivery, max_deliver, NAK with delay, TERM, ordered consumers,
deliver policies and headers_only on push, inactive_threshold cleanup, and flow control + idle
heartbeats observed on the wire (the counts match nats-server's, which stalls at the same message).

Every test also passes against a real nats-server with JetStream: ``OMNIBUS_TEST_AGAINST=nats-server``
(see conftest.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from bench._servers import NatsServer, free_port, nats_server_binary
from omnibus import SyncBroker
from tests.clients.conftest import AGAINST

TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)


def run(coro, limit: float = 30):
    return asyncio.run(asyncio.wait_for(coro, limit))


@pytest.fixture
def js_url(tmp_path):
    """A JetStream-enabled broker: Omnibus, or nats-server -js when OMNIBUS_TEST_AGAINST=nats-server."""
    if AGAINST == "nats-server":
        if nats_server_binary() is None:
            pytest.fail("OMNIBUS_TEST_AGAINST=nats-server but nats-server is not installed")
        with NatsServer(free_port(), jetstream=True) as s:
            yield s.url
    else:
        with SyncBroker(tmp_path) as b:
            yield b.nats_url


async def _stream(js, name: str, subject: str, payloads) -> None:
    await js.add_stream(name=name, subjects=[subject])
    futures = [await js.publish_async(subj, data) for subj, data in payloads]  # pipelined, stored in order
    acks = await asyncio.gather(*futures)
    assert [a.seq for a in acks] == list(range(1, len(acks) + 1))


def test_durable_push_manual_ack_nak_delay_term_redelivery_max_deliver(js_url):
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await _stream(js, "P", "p.>", [("p.x", b"%d" % i) for i in range(3)])
        sub = await js.subscribe("p.>", durable="dur", manual_ack=True,
                                 config=ConsumerConfig(ack_wait=0.6, max_deliver=3))
        first = [await sub.next_msg(timeout=2) for _ in range(3)]
        assert [m.data for m in first] == [b"0", b"1", b"2"]
        assert [m.metadata.sequence.stream for m in first] == [1, 2, 3]
        assert all(m.metadata.num_delivered == 1 for m in first)
        assert (await js.consumer_info("P", "dur")).push_bound
        await first[0].ack()
        t0 = time.monotonic()
        await first[1].nak(delay=0.3)
        await first[2].term()
        again = await sub.next_msg(timeout=2)  # the NAK'd one, after its delay, not before
        assert (again.data, again.metadata.num_delivered) == (b"1", 2)
        assert 0.25 <= time.monotonic() - t0 < 0.6
        third = await sub.next_msg(timeout=2)  # not acked: back after ack_wait
        assert (third.data, third.metadata.num_delivered) == (b"1", 3)
        with pytest.raises(TIMEOUTS):  # max_deliver 3 reached; TERM'd "2" never comes back
            await sub.next_msg(timeout=1.0)
        ci = await js.consumer_info("P", "dur")
        assert (ci.num_ack_pending, ci.num_pending, ci.delivered.stream_seq) == (0, 0, 3)
        await js.publish("p.x", b"3")  # new messages keep flowing to the bound subscription
        m = await sub.next_msg(timeout=2)
        assert m.data == b"3"
        await m.ack_sync()
        await nc.close()
    run(go())


def test_push_max_ack_pending_holds_back_until_acked(js_url):
    async def go():
        errors = []

        async def on_error(e):
            errors.append(e)

        nc = await nats.connect(js_url, error_cb=on_error)
        js = nc.jetstream()
        await _stream(js, "M", "m.>", [("m.x", b"%d" % i) for i in range(6)])
        sub = await js.subscribe("m.>", durable="slow", manual_ack=True, idle_heartbeat=0.2,
                                 config=ConsumerConfig(max_ack_pending=2))
        a, b = [await sub.next_msg(timeout=2) for _ in range(2)]
        with pytest.raises(TIMEOUTS):  # two pending: nothing more (heartbeats keep coming meanwhile)
            await sub.next_msg(timeout=0.6)
        await a.ack()
        c = await sub.next_msg(timeout=2)
        assert [m.data for m in (a, b, c)] == [b"0", b"1", b"2"]
        ci = await js.consumer_info("M", "slow")
        assert (ci.num_ack_pending, ci.num_pending, ci.config.max_ack_pending) == (2, 3, 2)
        assert not errors  # the heartbeats' Nats-Last-Consumer matched what nats-py saw (no mismatch error)
        await nc.close()
    run(go())


def test_durable_push_rebinds_after_unsubscribe_and_gets_what_was_published_meanwhile(js_url):
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await _stream(js, "B", "b.>", [("b.x", b"0")])
        sub = await js.subscribe("b.>", durable="again", manual_ack=True)
        m = await sub.next_msg(timeout=2)
        await m.ack_sync()
        await sub.unsubscribe()
        await nc.flush()
        assert not (await js.consumer_info("B", "again")).push_bound  # interest gone at the UNSUB
        await js.publish("b.x", b"1")  # nobody to deliver to: it waits
        await js.publish("b.x", b"2")
        await asyncio.sleep(0.1)
        ci = await js.consumer_info("B", "again")
        assert (ci.num_pending, ci.delivered.stream_seq) == (2, 1)
        sub = await js.subscribe("b.>", durable="again", manual_ack=True)  # not "already bound"
        got = [await sub.next_msg(timeout=2) for _ in range(2)]
        assert [(m.data, m.metadata.num_delivered) for m in got] == [(b"1", 1), (b"2", 1)]
        await nc.close()
    run(go())


def test_ephemeral_push_is_deleted_after_inactive_threshold(js_url):
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await _stream(js, "E", "e.>", [("e.a", b"a"), ("e.b", b"b")])
        got = []
        done = asyncio.Event()

        async def cb(msg):
            got.append(msg.data)
            if len(got) == 2:
                done.set()

        sub = await js.subscribe("e.>", cb=cb, inactive_threshold=0.5)
        await asyncio.wait_for(done.wait(), 3)
        assert got == [b"a", b"b"]
        name = sub._consumer
        ci = await js.consumer_info("E", name)
        assert ci.config.durable_name is None and ci.push_bound
        await sub.unsubscribe()  # no interest any more: deleted after its inactive_threshold
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                await js.consumer_info("E", name)
            except NotFoundError:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the ephemeral push consumer outlived its inactive_threshold")
        await nc.close()
    run(go())


def test_deliver_group_queue_subscribers_share_the_messages(js_url):
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await js.add_stream(name="Q", subjects=["q.>"])
        seen: dict[str, list[bytes]] = {"a": [], "b": []}
        done = asyncio.Event()

        def handler(who):
            async def cb(msg):
                seen[who].append(msg.data)
                if len(seen["a"]) + len(seen["b"]) == 40:
                    done.set()
            return cb

        await js.subscribe("q.>", queue="workers", cb=handler("a"))
        await js.subscribe("q.>", queue="workers", cb=handler("b"))  # binds to the same consumer
        ci = await js.consumer_info("Q", "workers")
        assert ci.config.deliver_group == "workers"
        for i in range(40):
            await js.publish("q.job", b"%d" % i)
        await asyncio.wait_for(done.wait(), 5)
        both = seen["a"] + seen["b"]
        assert sorted(both) == sorted(b"%d" % i for i in range(40))  # each exactly once
        assert seen["a"] and seen["b"]  # spread over the group (random member per message)
        await asyncio.sleep(0.2)  # auto-acks land
        assert (await js.consumer_info("Q", "workers")).num_ack_pending == 0
        await nc.close()
    run(go())


def test_ordered_consumer(js_url):
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await _stream(js, "O", "o.>", [("o.%d" % (i % 3), b"%d" % i) for i in range(30)])
        sub = await js.subscribe("o.>", ordered_consumer=True)
        got = [await sub.next_msg(timeout=2) for _ in range(30)]
        assert [m.data for m in got] == [b"%d" % i for i in range(30)]
        assert [m.metadata.sequence.consumer for m in got] == list(range(1, 31))
        ci = await sub.consumer_info()
        cfg = ci.config
        assert (cfg.flow_control, cfg.ack_policy, cfg.max_deliver, cfg.mem_storage) == (
            True, AckPolicy.NONE, 1, True)
        assert cfg.idle_heartbeat == 5 and cfg.inactive_threshold == 5
        await js.publish("o.1", b"late")
        assert (await sub.next_msg(timeout=2)).data == b"late"
        await nc.close()
    run(go())


def test_push_deliver_policies_and_headers_only(js_url):
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await js.add_stream(name="D", subjects=["d.>"])
        for i in range(6):
            await js.publish(f"d.{'ab'[i % 2]}", b"v%d" % i, headers={"H": str(i)})
        await asyncio.sleep(0.05)
        middle = dt.datetime.now(dt.timezone.utc)
        await asyncio.sleep(0.05)
        await js.publish("d.a", b"v6")

        async def first(**kw) -> list:
            sub = await js.subscribe("d.>", **kw)
            msgs = []
            while True:
                try:
                    msgs.append(await sub.next_msg(timeout=0.4))
                except TIMEOUTS:
                    break
            await sub.unsubscribe()
            return msgs

        assert [m.data for m in await first(deliver_policy=DeliverPolicy.LAST)] == [b"v6"]
        assert [m.data for m in await first(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)] == [b"v5", b"v6"]
        assert [m.data for m in await first(config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=5))] == [b"v4", b"v5", b"v6"]
        assert [m.data for m in await first(config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=middle.isoformat()))] == [b"v6"]
        sub = await js.subscribe("d.>", deliver_policy=DeliverPolicy.NEW)
        with pytest.raises(TIMEOUTS):
            await sub.next_msg(timeout=0.3)
        await js.publish("d.b", b"v7")
        assert (await sub.next_msg(timeout=2)).data == b"v7"
        heads = await first(headers_only=True)
        assert [m.data for m in heads] == [b""] * 8
        assert heads[0].headers["H"] == "0" and heads[0].headers["Nats-Msg-Size"] == "2"
        await nc.close()
    run(go())


def test_flow_control_stalls_delivery_and_idle_heartbeats_report_it(js_url):
    """400 messages of 8 KiB to a flow-controlled push consumer: the first FlowControl Request comes
    after half of the initial 2 MiB window (message 127) and delivery stalls once the window is full
    (message 254), until the request is answered; idle heartbeats carry the last sequences and the
    stalled request's reply subject. nats-server 2.9.10 gives the same numbers."""
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await _stream(js, "F", "f.>", [("f.x", b"%08d" % i + b"x" * 8184) for i in range(400)])
        inbox = nc.new_inbox()
        queue: asyncio.Queue = asyncio.Queue()

        async def cb(msg):
            await queue.put(msg)

        await nc.subscribe(inbox, cb=cb)
        await js.add_consumer("F", ConsumerConfig(deliver_subject=inbox, flow_control=True, idle_heartbeat=0.5,
                                                  ack_policy=AckPolicy.NONE))
        data = 0
        controls = []

        async def read_until_heartbeat():
            nonlocal data
            while True:
                m = await asyncio.wait_for(queue.get(), 3)
                if m.data:
                    assert int(m.data[:8]) == data
                    data += 1
                    continue
                assert m.headers["Status"] == "100"
                controls.append((data, m.headers["Description"], m.reply, dict(m.headers)))
                if m.headers["Description"] == "Idle Heartbeat":
                    return

        await read_until_heartbeat()
        fc = [c for c in controls if c[1] == "FlowControl Request"]
        assert [c[0] for c in fc] == [127] and fc[0][2].startswith("$JS.FC.F.")
        hb = controls[-1]
        assert hb[0] == data == 254  # stalled: nothing more until the request is answered
        assert hb[3]["Nats-Last-Consumer"] == "254" and hb[3]["Nats-Last-Stream"] == "254"
        assert hb[3]["Nats-Consumer-Stalled"] == fc[0][2]
        await nc.publish(fc[0][2], b"")  # answer: the window doubles and delivery resumes
        await read_until_heartbeat()
        assert data == 400
        assert controls[-1][3]["Nats-Last-Stream"] == "400"
        await nc.close()
    run(go())


def test_nats_py_ordered_consumer_answers_flow_control(js_url):
    """nats-py's ordered consumer answers flow control itself: 3 MiB arrive complete and in order."""
    async def go():
        nc = await nats.connect(js_url)
        js = nc.jetstream()
        await _stream(js, "G", "g.>", [("g.x", b"%08d" % i + b"y" * 16376) for i in range(192)])
        sub = await js.subscribe("g.>", ordered_consumer=True)
        got = [int((await sub.next_msg(timeout=3)).data[:8]) for _ in range(192)]
        assert got == list(range(192))
        await nc.close()
    run(go())


def test_durable_push_consumer_resumes_after_restart(tmp_path):
    """Consumer state (delivered, ack floor, pending) survives a broker restart: acked messages are not
    delivered again, the unacked one is (after ack_wait), new ones follow."""
    async def first(url):
        nc = await nats.connect(url)
        js = nc.jetstream()
        await _stream(js, "R", "r.>", [("r.x", b"%d" % i) for i in range(5)])
        sub = await js.subscribe("r.>", durable="keep", manual_ack=True, config=ConsumerConfig(ack_wait=0.5))
        for _ in range(5):
            m = await sub.next_msg(timeout=2)
            if m.data != b"2":
                await m.ack_sync()
        ci = await js.consumer_info("R", "keep")
        await nc.close()
        return ci

    async def second(url):
        nc = await nats.connect(url)
        js = nc.jetstream()
        ci = await js.consumer_info("R", "keep")
        assert (ci.delivered.stream_seq, ci.ack_floor.stream_seq, ci.num_ack_pending) == (5, 2, 1)
        assert not ci.push_bound
        await js.publish("r.x", b"5")
        sub = await js.subscribe("r.>", durable="keep", manual_ack=True)
        got = []
        while True:
            try:
                m = await sub.next_msg(timeout=1.2)
            except TIMEOUTS:
                break
            got.append((m.data, m.metadata.num_delivered))
            await m.ack_sync()
        await nc.close()
        return got

    with SyncBroker(tmp_path) as b:
        ci = run(first(b.nats_url))
        assert (ci.delivered.stream_seq, ci.num_ack_pending) == (5, 1)
    with SyncBroker(tmp_path) as b:
        assert sorted(run(second(b.nats_url))) == [(b"2", 2), (b"5", 1)]
