"""JetStream under SIGKILL: ``omnibus serve`` as a real process, killed mid-stream.

1. PubAcks: nats-py publishes with ``js.publish_async`` (up to 500 PubAcks outstanding) while the test
   SIGKILLs the broker at a random moment; after a restart on the same data directory every message
   whose PubAck the client received is in the stream, at the sequence the PubAck named, with its bytes.
2. Consumer state: a durable pull consumer acks some deliveries and leaves some unacked; after the
   state flush (every 0.25 s) the broker is SIGKILLed. After a restart the acked messages are never
   delivered again, the unacked ones come back once (after ack_wait, with a delivery count of 2), and
   the never-delivered ones follow: no loss, no redelivery beyond the unacked.
"""

from __future__ import annotations

import asyncio
import random
import signal

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from tests.helpers import start_serve

TIMEOUTS = (nats.errors.TimeoutError, asyncio.TimeoutError)


def _kill(srv) -> None:
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    assert srv.proc.returncode == -signal.SIGKILL
    srv.proc = None


async def _connect(url: str):
    return await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                              error_cb=_quiet, disconnected_cb=_noop, closed_cb=_noop)


async def _quiet(e: Exception) -> None:
    pass


async def _noop() -> None:
    pass


def payload(i: int) -> bytes:
    return b"msg-%08d-" % i + bytes([65 + i % 26]) * (64 + i % 200)


async def _publish_until_killed(srv, kill_after: float) -> dict[int, int]:
    """Publish until the broker dies; returns {seq: message index} of every PubAck received."""
    nc = await _connect(srv.url)
    js = nc.jetstream(publish_async_max_pending=500)
    await js.add_stream(name="CRASH", subjects=["crash.>"])
    acked: dict[int, int] = {}
    futures: list[tuple[int, asyncio.Future]] = []
    loop = asyncio.get_running_loop()
    loop.call_later(kill_after, _kill, srv)
    i = 0
    try:
        while srv.proc is not None and i < 200_000:
            fut = await js.publish_async("crash.%d" % (i % 7), payload(i), wait_stall=2)
            futures.append((i, fut))
            i += 1
            if i % 100 == 0:
                await asyncio.sleep(0)
    except Exception:  # the broker went away under the publisher
        pass
    await asyncio.sleep(0.2)
    for idx, fut in futures:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            ack = fut.result()
            assert ack.stream == "CRASH"
            acked[ack.seq] = idx
        elif not fut.done():
            fut.cancel()
    try:
        await nc.close()
    except Exception:
        pass
    return acked


async def _read_all(url: str, expect: int) -> dict[int, tuple[str, bytes]]:
    nc = await _connect(url)
    js = nc.jetstream()
    info = await js.stream_info("CRASH")
    assert info.state.messages >= expect
    psub = await js.pull_subscribe("crash.>", durable="reader", config=ConsumerConfig(ack_policy=AckPolicy.NONE))
    got: dict[int, tuple[str, bytes]] = {}
    while len(got) < info.state.messages:
        for m in await psub.fetch(500, timeout=2):
            got[m.metadata.sequence.stream] = (m.subject, m.data)
    await nc.close()
    return got


@pytest.mark.parametrize("run", range(2))
def test_every_pub_acked_message_survives_sigkill(tmp_path, run):
    data = tmp_path / "data"
    srv = start_serve(data)
    try:
        acked = asyncio.run(asyncio.wait_for(_publish_until_killed(srv, random.uniform(0.4, 1.0)), 60))
    finally:
        srv.close()
    assert len(acked) > 50, "the broker died before any real publishing happened"
    srv = start_serve(data)
    try:
        stored = asyncio.run(asyncio.wait_for(_read_all(srv.url, len(acked)), 60))
    finally:
        srv.close()
    for seq, idx in acked.items():
        assert stored.get(seq) == ("crash.%d" % (idx % 7), payload(idx)), f"PubAck'd seq {seq} lost or wrong"
    # PubAcks go out in order: the acked sequences are 1..n without gaps
    assert sorted(acked) == list(range(1, len(acked) + 1))


def test_durable_consumer_state_survives_sigkill(tmp_path):
    data = tmp_path / "data"

    async def before(url: str) -> None:
        nc = await _connect(url)
        js = nc.jetstream()
        await js.add_stream(name="JOBS", subjects=["jobs.>"])
        for i in range(20):
            await js.publish("jobs.x", b"%d" % i)
        psub = await js.pull_subscribe("jobs.>", durable="w", config=ConsumerConfig(ack_wait=1.0))
        for m in await psub.fetch(10, timeout=2):
            if int(m.data) not in (2, 5, 8):  # left unacked
                await m.ack_sync()
        await asyncio.sleep(0.6)  # past the consumer-state flush (every 0.25 s)
        await nc.close()

    async def after(url: str) -> list[tuple[int, int]]:
        nc = await _connect(url)
        js = nc.jetstream()
        ci = await js.consumer_info("JOBS", "w")
        assert (ci.delivered.stream_seq, ci.num_ack_pending, ci.ack_floor.stream_seq) == (10, 3, 2)
        psub = await js.pull_subscribe("jobs.>", durable="w")
        got = []
        for _ in range(10):
            try:
                batch = await psub.fetch(20, timeout=0.8)
            except TIMEOUTS:
                batch = []
            for m in batch:
                got.append((int(m.data), m.metadata.num_delivered))
                await m.ack_sync()
            if len(got) >= 13:
                break
        await nc.close()
        return got

    srv = start_serve(data)
    try:
        asyncio.run(asyncio.wait_for(before(srv.url), 30))
        _kill(srv)
    finally:
        srv.close()
    srv = start_serve(data)
    try:
        got = asyncio.run(asyncio.wait_for(after(srv.url), 30))
    finally:
        srv.close()
    assert sorted(got) == sorted([(2, 2), (5, 2), (8, 2)] + [(i, 1) for i in range(10, 20)])
