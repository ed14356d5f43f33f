"""Message bodies live in the storage log, not in Python memory: 1,000,000 persistent 1 KiB messages in a
queue add less than 200 MB of broker RSS (issue 4, "Memory"); measured here, RSS does not grow at all.

The publisher is a raw socket writing pre-built publish frames (pamqp builds one; the bytes are repeated),
so the test spends its time in the broker, not in a client library. The queue's message count is read
with a passive queue.declare on the same channel, which the broker answers only after every publish
before it has been routed.
"""

from __future__ import annotations

import time

from pamqp import commands as pc

from bench._servers import rss_of
from tests.helpers import start_serve
from tests.server.test_amqp_raw import Raw, content, mf

N = 1_000_000
BODY = b"m" * 1024
CHUNK = 1000
#: The issue's bound on RSS growth while 1 GB of bodies are queued.
MAX_GROWTH = 200 * 1024 * 1024


def _count(r: Raw, queue: str) -> int:
    r.send(mf(1, pc.Queue.Declare(queue=queue, passive=True)))
    return r.expect(pc.Queue.DeclareOk, 1).message_count


def test_a_million_queued_messages_stay_on_disk(tmp_path):
    srv = start_serve(tmp_path / "data")
    try:
        r = Raw(srv.amqp_port).handshake()
        r.open_channel(1)
        r.send(mf(1, pc.Queue.Declare(queue="big", durable=True)))
        r.expect(pc.Queue.DeclareOk, 1)
        frame = mf(1, pc.Basic.Publish(exchange="", routing_key="big")) + \
            content(1, BODY, pc.Basic.Properties(delivery_mode=2))  # persistent
        chunk = frame * CHUNK
        # Warm up: the first 10k messages bring the broker's code paths and buffers to steady state.
        for _ in range(10):
            r.send(chunk)
        assert _count(r, "big") == 10 * CHUNK
        before = rss_of(srv.pid)
        t0 = time.monotonic()
        for _ in range(N // CHUNK - 10):
            r.send(chunk)
        assert _count(r, "big") == N
        elapsed = time.monotonic() - t0
        after = rss_of(srv.pid)
        growth = after - before
        assert growth < MAX_GROWTH, (
            f"RSS grew {growth / 2**20:.0f} MiB while {N * len(BODY) / 2**20:.0f} MiB of bodies were queued "
            f"({before / 2**20:.0f} -> {after / 2**20:.0f} MiB, {elapsed:.1f} s)")
        # The messages are really there: the first and the last can be fetched.
        r.send(mf(1, pc.Basic.Get(queue="big", no_ack=True)))
        ok = r.expect(pc.Basic.GetOk, 1)
        assert ok.message_count == N - 1
        r.close()
    finally:
        srv.close()
