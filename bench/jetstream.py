"""JetStream benchmark: Omnibus and ``nats-server -js`` side by side, same run, same load generator.

    python bench/jetstream.py [--quick] [--payloads 128,16384] [--fsync never|interval|always]
                              [--servers omnibus,nats-server]

Starts ``omnibus serve`` (free ports, temporary data dir) and ``nats-server`` with JetStream (file
storage in a temporary store_dir), both on 127.0.0.1. Each case gets a fresh file-storage stream
``BENCH`` on ``bench.>``. For each payload (128 B, 16 KiB):

- sync publish: publish, wait for the PubAck, publish the next (a request/reply round trip each);
- async publish: pipelined publishes with at most 1,000 PubAcks outstanding (the window of
  ``js.publish_async`` in the clients); the figure counts PubAcks received;
- pull consume: a durable pull consumer with ``ack_policy: explicit`` drains the stream that the async
  case filled, two ``CONSUMER.MSG.NEXT`` requests of 250 messages outstanding; each delivery is acked
  with a ``+ACK`` publish to its reply subject (the acks of one read go out in one write).

The load generator is one Python process on uvloop speaking the raw protocol (``bench/nats.py``'s
connection); it parses every PubAck and delivery, so on this 2-core machine the figures of the faster
server are partly client-bound: compare ratios. Omnibus's default ``--fsync`` here is ``never``, which is
what nats-server does by default (it writes to the OS and syncs every 2 minutes); ``--fsync interval``
shows Omnibus's own default (PubAck after a group-commit fsync). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import orjson
import uvloop  # a dependency of omnibus: the load generator runs on it

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench._servers import NatsServer, OmnibusServe  # noqa: E402
from bench.nats import Result, Row, connect, fmt_size, measured, print_table  # noqa: E402

STREAM = "BENCH"
WINDOW = 1000  # outstanding PubAcks in the async case
PULL_BATCH = 250
PULL_OUTSTANDING = 2
CASE_TIMEOUT = 120.0


class Client:
    """One raw NATS connection with request/reply and per-frame callbacks."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.handlers: dict[bytes, object] = {}
        conn.on_frame = self._frame
        conn.handshaking = False

    @classmethod
    async def open(cls, url: str) -> "Client":
        return cls(await connect(url))

    def _frame(self, subject: bytes, sid: bytes, reply: bytes, payload: bytes) -> None:
        fn = self.handlers.get(sid)
        if fn is not None:
            fn(subject, reply, payload)

    def sub(self, subject: bytes, sid: bytes, fn) -> None:
        self.handlers[sid] = fn
        self.conn.transport.write(b"SUB %s %s\r\n" % (subject, sid))

    async def request(self, subject: str, body: dict | None = None, timeout: float = 10.0) -> dict:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        sid = b"r%d" % id(fut)
        inbox = b"_INBOX.req.%s" % sid
        self.sub(inbox, sid, lambda s, r, p: fut.done() or fut.set_result(p))
        data = orjson.dumps(body) if body is not None else b""
        self.conn.transport.write(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), inbox, len(data), data))
        try:
            return orjson.loads(await asyncio.wait_for(fut, timeout))
        finally:
            self.conn.transport.write(b"UNSUB %s\r\n" % sid)
            self.handlers.pop(sid, None)

    def close(self) -> None:
        self.conn.close()


async def fresh_stream(c: Client) -> None:
    await c.request(f"$JS.API.STREAM.DELETE.{STREAM}")
    r = await c.request(f"$JS.API.STREAM.CREATE.{STREAM}",
                        {"name": STREAM, "subjects": ["bench.>"], "storage": "file", "retention": "limits",
                         "max_msgs": -1, "max_bytes": -1, "num_replicas": 1, "discard": "old"})
    if "error" in r:
        raise RuntimeError(f"stream create failed: {r['error']}")


async def case_sync(url: str, size: int, n: int) -> Result:
    c = await Client.open(url)
    try:
        await fresh_stream(c)
        payload = b"x" * size
        loop = asyncio.get_running_loop()
        state = {"fut": None, "err": None}

        def on_ack(subject: bytes, reply: bytes, data: bytes) -> None:
            if b'"error"' in data and state["err"] is None:
                state["err"] = data.decode(errors="replace")
            state["fut"].set_result(None)

        c.sub(b"_INBOX.sync", b"ack", on_ack)
        frame = b"PUB bench.sync _INBOX.sync %d\r\n%s\r\n" % (size, payload)
        t0 = time.perf_counter()
        for _ in range(n):
            state["fut"] = loop.create_future()
            c.conn.transport.write(frame)
            await asyncio.wait_for(state["fut"], CASE_TIMEOUT)
        dt = time.perf_counter() - t0
        if state["err"]:
            return Result(0, error=state["err"][:200])
        return Result(n / dt)
    finally:
        c.close()


async def publish_async(c: Client, size: int, n: int) -> float:
    """Publish n messages with at most WINDOW PubAcks outstanding; seconds until the last PubAck."""
    payload = b"x" * size
    loop = asyncio.get_running_loop()
    state = {"acked": 0, "err": None, "room": asyncio.Event(), "done": loop.create_future()}

    def on_ack(subject: bytes, reply: bytes, data: bytes) -> None:
        if b'"error"' in data and state["err"] is None:
            state["err"] = data.decode(errors="replace")
        state["acked"] += 1
        state["room"].set()
        if state["acked"] >= n and not state["done"].done():
            state["done"].set_result(None)

    c.sub(b"_INBOX.async", b"aack", on_ack)
    frame = b"PUB bench.async _INBOX.async %d\r\n%s\r\n" % (size, payload)
    chunk = max(1, min(100, (256 * 1024) // len(frame)))
    sent = 0
    t0 = time.perf_counter()
    while sent < n:
        room = WINDOW - (sent - state["acked"])
        if room <= 0:
            state["room"].clear()
            await asyncio.wait_for(state["room"].wait(), CASE_TIMEOUT)
            continue
        k = min(room, chunk, n - sent)
        c.conn.transport.write(frame * k)
        sent += k
        if not c.conn.can_write.is_set():
            await c.conn.can_write.wait()
    await asyncio.wait_for(state["done"], CASE_TIMEOUT)
    if state["err"]:
        raise RuntimeError(state["err"][:200])
    return time.perf_counter() - t0


async def case_async(url: str, size: int, n: int) -> Result:
    c = await Client.open(url)
    try:
        await fresh_stream(c)
        return Result(n / await publish_async(c, size, n))
    except RuntimeError as e:
        return Result(0, error=str(e))
    finally:
        c.close()


async def case_pull(url: str, size: int, n: int) -> Result:
    c = await Client.open(url)
    try:
        await fresh_stream(c)
        await publish_async(c, size, n)
        r = await c.request(f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.C",
                            {"stream_name": STREAM, "config": {"durable_name": "C", "ack_policy": "explicit",
                                                               "deliver_policy": "all", "max_ack_pending": -1,
                                                               "ack_wait": 60_000_000_000}})
        if "error" in r:
            return Result(0, error=f"consumer create: {r['error']}")
        loop = asyncio.get_running_loop()
        state = {"got": 0, "batch_left": 0, "done": loop.create_future(), "status": None}
        acks: list[bytes] = []
        next_req = b"PUB $JS.API.CONSUMER.MSG.NEXT.%s.C _INBOX.pull %d\r\n%s\r\n"
        body = orjson.dumps({"batch": PULL_BATCH, "expires": 5_000_000_000})
        req = next_req % (STREAM.encode(), len(body), body)

        def on_msg(subject: bytes, reply: bytes, data: bytes) -> None:
            if not reply.startswith(b"$JS.ACK."):
                return  # a status (408 request timeout, 404 no messages): not counted
            acks.append(b"PUB %s 4\r\n+ACK\r\n" % reply)
            state["got"] += 1
            state["batch_left"] -= 1

        def after_read() -> None:
            if acks:
                c.conn.transport.write(b"".join(acks))
                acks.clear()
            while state["batch_left"] <= (PULL_OUTSTANDING - 1) * PULL_BATCH and \
                    state["got"] + state["batch_left"] < n:
                c.conn.transport.write(req)
                state["batch_left"] += PULL_BATCH
            if state["got"] >= n and not state["done"].done():
                state["done"].set_result(None)

        c.sub(b"_INBOX.pull", b"pull", on_msg)
        c.conn.after_read = after_read
        t0 = time.perf_counter()
        for _ in range(PULL_OUTSTANDING):
            c.conn.transport.write(req)
            state["batch_left"] += PULL_BATCH
        await asyncio.wait_for(state["done"], CASE_TIMEOUT)
        dt = time.perf_counter() - t0
        await c.conn.ping()
        return Result(n / dt)
    except (RuntimeError, asyncio.TimeoutError) as e:
        return Result(0, error=f"{type(e).__name__}: {e}")
    finally:
        c.close()


async def run_all(urls: dict[str, str], payloads: list[int], quick: bool, pids: dict[str, int | None]) -> list[Row]:
    rows: list[Row] = []
    for url in urls.values():  # warm up
        await case_async(url, 128, 2_000)
    for size in payloads:
        small = size <= 1024
        n_sync = (500 if quick else 5_000) if small else (200 if quick else 2_000)
        n_async = (5_000 if quick else 100_000) if small else (1_000 if quick else 10_000)
        cases = [
            ("sync publish (PubAck each)", lambda url: case_sync(url, size, n_sync)),
            (f"async publish (window {WINDOW})", lambda url: case_async(url, size, n_async)),
            ("pull consume, explicit ack", lambda url: case_pull(url, size, n_async)),
        ]
        for label, fn in cases:
            row = Row(label, size, "msg/s")
            for name, url in urls.items():
                row.results[name] = await measured(pids.get(name), fn(url))
            rows.append(row)
        print(f"bench: {fmt_size(size)} done", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="much smaller counts (a smoke run)")
    ap.add_argument("--servers", default="omnibus,nats-server")
    ap.add_argument("--payloads", default="128,16384")
    ap.add_argument("--fsync", default="never", choices=("never", "interval", "always"),
                    help="Omnibus's storage.fsync for this run (nats-server syncs every 2 min by default)")
    args = ap.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    payloads = [int(p) for p in args.payloads.split(",")]
    started = []
    urls: dict[str, str] = {}
    pids: dict[str, int | None] = {}
    try:
        for s in servers:
            if s == "omnibus":
                srv = OmnibusServe(args=("--fsync", args.fsync)).start()
            elif s == "nats-server":
                srv = NatsServer(install=True, jetstream=True).start()
            else:
                ap.error(f"unknown server {s!r}")
            started.append(srv)
            urls[s], pids[s] = srv.url, srv.pid
        print(f"bench: {', '.join(f'{k} at {v}' for k, v in urls.items())}; omnibus fsync={args.fsync}; "
              f"{'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs", file=sys.stderr)
        rows = uvloop.run(run_all(urls, payloads, args.quick, pids))
        print_table(rows, list(urls))
    finally:
        for srv in started:
            srv.close()


if __name__ == "__main__":
    main()
