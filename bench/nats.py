"""NATS core benchmark, in the style of ``nats bench``: Omnibus and nats-server side by side, same run.

    python bench/nats.py [--quick] [--servers omnibus,nats-server] [--payloads 16,128,16384]
                         [--omnibus-url nats://...] [--nats-server-url nats://...]

Starts ``omnibus serve`` (free ports, temporary data dir) and ``nats-server`` (installed with apt-get by
``bench/_servers.py`` if missing), both on 127.0.0.1, unless URLs of running servers are given. For each
payload (16 B, 128 B, 16 KiB) it measures:

- publish only: one connection publishes N messages nobody subscribes to (pipelined PUBs in ~256 KiB
  writes), ending with PING/PONG, so the figure counts messages the server has processed;
- pub -> 1 sub, pub -> 4 subs (fan-out; the figure is messages published per second, each delivered 4
  times), queue group of 4 (each message to one member): from the first write until every subscriber
  has counted all its messages. The publisher stays within a window (16 MiB) of the slowest subscriber,
  so the figure is a sustained end-to-end rate, not a burst into buffers;
- request/reply latency at a fixed 5,000 req/s: a responder on its own connection answers each
  request; latency runs from each request's *scheduled* send time to its reply (no coordinated omission).

The client is this one Python process on uvloop: subscribers count MSG frames by counting their exact
header line in each read (``bytes.count``; payloads are ``x`` bytes, so they cannot contain it) and
never parse payloads. On a 2-core machine the client shares the CPUs with the server, so nats-server's
figures may be client-bound; compare ratios, not absolutes. Not a test; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvloop  # a dependency of omnibus: the load generator runs on it

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench._servers import NatsServer, OmnibusServe  # noqa: E402

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"headers":false,"name":"bench"}\r\n'
PING, PONG = b"PING\r\n", b"PONG\r\n"
#: Bytes per publisher write.
WRITE_CHUNK = 256 * 1024
#: How far (bytes) the publisher may run ahead of its slowest subscriber.
WINDOW_BYTES = 16 * 1024 * 1024
CASE_TIMEOUT = 120.0
#: Frames at least this long are counted by jumping over payloads rather than by bytes.count.
JUMP_MIN_FRAME = 1024
RATE = 5000  # requests per second for the latency case


def split_url(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Conn(asyncio.Protocol):
    """A raw NATS client connection: handshake, then either counting (subscriber) or a callback."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.info = asyncio.get_running_loop().create_future()
        self.pongs: asyncio.Queue = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()
        self.handshaking = True
        self.closing = False
        self.buf = bytearray()
        # counting mode
        self.header: bytes = b""
        self.count = 0
        self.carry = b""
        self.skip = 0
        self.frame_size = 0
        self.target = 0
        self.done: asyncio.Future | None = None
        # frame mode
        self.on_frame = None  # (subject, sid, reply, payload) -> None
        self.after_read = None  # () -> None, after the frames of one read were handled
        # flow control of our own writes
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=4 * WRITE_CHUNK)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc) -> None:
        self.can_write.set()
        if not self.closed.done():
            self.closed.set_result(exc)
        if self.done is not None and not self.done.done() and not self.closing:
            self.done.set_exception(ConnectionError(f"connection lost after {self.count} messages: {exc}"))

    def data_received(self, data: bytes) -> None:
        if self.handshaking or self.on_frame is not None:
            self.buf += data
            self._parse()
            if self.after_read is not None:
                self.after_read()
            return
        if self.frame_size >= JUMP_MIN_FRAME:
            self._jump(data)
        else:
            joined = self.carry + data
            self.count += joined.count(self.header) - self.carry.count(self.header)
            pings = joined.count(PING) - self.carry.count(PING)
            if pings:
                self.transport.write(PONG * pings)
            self.carry = joined[-(len(self.header) - 1):]
        if self.done is not None and self.count >= self.target and not self.done.done():
            self.done.set_result(None)

    def _jump(self, data: bytes) -> None:
        """Large frames: read each control line, jump over the payload without looking at it."""
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.buf += data[i:]
                return
            line = bytes(self.buf) + data[i:j + 1] if self.buf else data[i:j + 1]
            self.buf.clear()
            i = j + 1
            if line.startswith(b"MSG "):
                self.count += 1
                self.skip = int(line.rsplit(b" ", 1)[1]) + 2
            elif line == PING:
                self.transport.write(PONG)
            elif line == PONG:
                self.pongs.put_nowait(True)

    def _parse(self) -> None:
        buf = self.buf
        pos = 0
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = bytes(buf[pos:end])
            if line.startswith(b"MSG "):
                parts = line.split(b" ")
                size = int(parts[-1])
                if len(buf) < end + 2 + size + 2:
                    break
                payload = bytes(buf[end + 2:end + 2 + size])
                reply = parts[3] if len(parts) == 5 else b""
                pos = end + 2 + size + 2
                if self.on_frame is not None:
                    self.on_frame(parts[1], parts[2], reply, payload)
                continue
            pos = end + 2
            if line.startswith(b"INFO "):
                if not self.info.done():
                    self.info.set_result(line[5:])
            elif line == b"PING":
                self.transport.write(PONG)
            elif line == b"PONG":
                self.pongs.put_nowait(True)
            elif line.startswith(b"-ERR"):
                print(f"bench: server error: {line.decode(errors='replace')}", file=sys.stderr)
        del buf[:pos]

    def count_frames(self, header: bytes, payload_size: int) -> None:
        """From now on, count this subscription's MSG frames (``header`` is their exact MSG line).

        Small frames: count ``header`` in each read (``bytes.count``, C speed; no per-frame Python).
        Large frames: jump from control line to control line over the payloads.
        Call right after the handshake's PONG, before anything is published."""
        assert not self.buf, self.buf
        self.header = header
        self.frame_size = len(header) + payload_size + 2
        self.handshaking = False
        self.carry = b""

    async def ping(self, timeout: float = 30.0) -> None:
        self.transport.write(PING)
        await asyncio.wait_for(self.pongs.get(), timeout)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


async def connect(url: str, subs: list[bytes] = ()) -> Conn:
    host, port = split_url(url)
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Conn, host, port)
    await asyncio.wait_for(conn.info, 10)
    conn.transport.write(CONNECT + b"".join(subs))
    await conn.ping()
    return conn


def pub_frames(subject: bytes, payload: bytes) -> tuple[bytes, int]:
    """One write's worth of PUB frames, and how many messages it holds."""
    frame = b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload)
    k = max(1, WRITE_CHUNK // len(frame))
    return frame * k, k


@dataclass
class Result:
    value: float  # msgs/s, or seconds for latencies
    extra: str = ""
    error: str = ""


async def publish(pub: Conn, subject: bytes, payload: bytes, n: int, subs: list[Conn] = ()) -> None:
    chunk, k = pub_frames(subject, payload)
    window = max(k, WINDOW_BYTES // (len(payload) + 32))
    sent = 0
    while sent < n:
        todo = min(k, n - sent)
        pub.transport.write(chunk if todo == k else chunk[:todo * (len(chunk) // k)])
        sent += todo
        if not pub.can_write.is_set():
            await pub.can_write.wait()
        if pub.closed.done():
            raise ConnectionError("publisher connection lost")
        if subs:
            while sent - min(s.count for s in subs) > window:
                await asyncio.sleep(0.0005)
                for s in subs:
                    if s.closed.done():
                        raise ConnectionError(f"subscriber lost after {s.count} messages (slow consumer?)")


async def case_pub_only(url: str, size: int, n: int) -> Result:
    payload = b"x" * size
    pub = await connect(url)
    try:
        t0 = time.perf_counter()
        await publish(pub, b"bench.none", payload, n)
        await pub.ping(CASE_TIMEOUT)
        dt = time.perf_counter() - t0
    finally:
        pub.close()
    return Result(n / dt, f"{n * size / dt / 1e6:.0f} MB/s")


async def case_fanout(url: str, size: int, n: int, nsubs: int, queue: bool) -> Result:
    payload = b"x" * size
    subject = b"bench.fan"
    subs = []
    for i in range(nsubs):
        sid = b"%d" % (i + 1)
        subs.append(await connect(url, [b"SUB %s %s%s\r\n" % (subject, b"q " if queue else b"", sid)]))
        subs[-1].count_frames(b"MSG %s %s %d\r\n" % (subject, sid, size), size)
    pub = await connect(url)
    loop = asyncio.get_running_loop()
    try:
        if not queue:
            for s in subs:
                s.target = n
                s.done = loop.create_future()
        t0 = time.perf_counter()
        if queue:
            async def all_in() -> None:
                while sum(s.count for s in subs) < n:
                    for s in subs:
                        if s.closed.done():
                            raise ConnectionError("queue member lost (slow consumer?)")
                    await asyncio.sleep(0.0005)
            pub_task = asyncio.ensure_future(publish(pub, subject, payload, n))
            await asyncio.wait_for(asyncio.gather(pub_task, all_in()), CASE_TIMEOUT)
        else:
            pub_task = asyncio.ensure_future(publish(pub, subject, payload, n, subs))
            await asyncio.wait_for(asyncio.gather(pub_task, *(s.done for s in subs)), CASE_TIMEOUT)
        dt = time.perf_counter() - t0
        delivered = sum(s.count for s in subs)
        extra = f"{delivered / dt / 1e6:.2f}M deliveries/s" if nsubs > 1 else f"{n * size / dt / 1e6:.0f} MB/s"
        if queue:
            spread = "/".join(str(s.count) for s in subs)
            extra += f", spread {spread}"
        return Result(n / dt, extra)
    except (asyncio.TimeoutError, ConnectionError) as e:
        return Result(0.0, error=f"{type(e).__name__}: {e} (counts {[s.count for s in subs]})")
    finally:
        pub.close()
        for s in subs:
            s.close()


async def case_latency(url: str, size: int, n: int, rate: int = RATE) -> tuple[Result, Result]:
    payload = b"x" * size
    loop = asyncio.get_running_loop()
    responder = await connect(url, [b"SUB bench.req 1\r\n"])
    requester = await connect(url, [b"SUB _INBOX.bench.* 1\r\n"])
    answer = b"%d\r\n%s\r\n" % (size, payload)
    out: list[bytes] = []

    def respond(subject: bytes, sid: bytes, reply: bytes, data: bytes) -> None:
        out.append(b"PUB " + reply + b" " + answer)

    def flush_responses() -> None:
        if out:
            responder.transport.write(b"".join(out))
            out.clear()

    responder.on_frame = respond
    responder.after_read = flush_responses  # answer everything of one read in one write
    latencies = [0.0] * n
    sent_at = [0.0] * n
    got = 0
    all_done = loop.create_future()

    def on_reply(subject: bytes, sid: bytes, reply: bytes, data: bytes) -> None:
        nonlocal got
        i = int(subject.rsplit(b".", 1)[1])
        latencies[i] = time.perf_counter() - sent_at[i]
        got += 1
        if got == n and not all_done.done():
            all_done.set_result(None)

    requester.on_frame = on_reply
    head = b"PUB bench.req _INBOX.bench."
    tail = b" %d\r\n%s\r\n" % (size, payload)
    try:
        t0 = time.perf_counter()
        i = 0
        while i < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            if due > i:
                now = time.perf_counter()
                for j in range(i, due):
                    sent_at[j] = now
                requester.transport.write(b"".join(head + b"%d" % j + tail for j in range(i, due)))
                i = due
            await asyncio.sleep(0.001)  # 1 ms ticks: 5 requests per write at 5k/s
        await asyncio.wait_for(all_done, 30)
    except asyncio.TimeoutError:
        err = f"only {got} of {n} replies"
        return Result(0.0, error=err), Result(0.0, error=err)
    finally:
        responder.close()
        requester.close()
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p99 = lat[min(n - 1, int(n * 0.99))]
    return Result(p50, f"max {lat[-1] * 1e3:.2f} ms"), Result(p99, f"p99.9 {lat[min(n - 1, int(n * 0.999))] * 1e6:.0f} µs")


# -- running and printing --------------------------------------------------------------------------------

@dataclass
class Row:
    case: str
    payload: int
    unit: str  # "msg/s" or "latency"
    results: dict[str, Result] = field(default_factory=dict)


def fmt_size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def fmt_value(r: Result | None, unit: str) -> str:
    if r is None:
        return "-"
    if r.error:
        return "FAILED"
    if unit == "latency":
        return f"{r.value * 1e6:,.0f} µs"
    v = r.value
    return f"{v / 1e6:.2f}M msg/s" if v >= 1e6 else f"{v / 1e3:.1f}k msg/s"


def print_table(rows: list[Row], servers: list[str]) -> None:
    headers = ["case", "payload", *servers]
    if len(servers) == 2:
        headers.append(f"{servers[0]}/{servers[1]}")
    table = [headers]
    notes = []
    for row in rows:
        cells = [row.case, fmt_size(row.payload)]
        for s in servers:
            r = row.results.get(s)
            cells.append(fmt_value(r, row.unit))
            if r is not None and r.error:
                notes.append(f"{row.case} {fmt_size(row.payload)} on {s}: {r.error}")
            elif r is not None and r.extra:
                notes.append(f"{row.case} {fmt_size(row.payload)} on {s}: {r.extra}")
        if len(servers) == 2:
            a, b = (row.results.get(s) for s in servers)
            if a and b and not a.error and not b.error and b.value:
                cells.append(f"{a.value / b.value:.2f}")
            else:
                cells.append("-")
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for k, r in enumerate(table):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    if len(servers) == 2:
        print(f"\nratio = {servers[0]} / {servers[1]}: above 1 is better for msg/s, below 1 is better for latency.")
    if notes:
        print("\nnotes:")
        for n in notes:
            print("  " + n)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, from /proc (0 when the server was not started by us)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(pid: int | None, coro) -> Result:
    """Run one case; add the server's CPU use (in cores, i.e. CPU seconds per wall second) to its notes."""
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    r = await coro
    if pid is not None and not r.error:
        cores = (cpu_seconds(pid) - c0) / (time.perf_counter() - t0)
        r.extra = f"{r.extra}, server CPU {cores:.2f} cores" if r.extra else f"server CPU {cores:.2f} cores"
    return r


async def run_all(urls: dict[str, str], payloads: list[int], quick: bool,
                  pids: dict[str, int | None] | None = None) -> list[Row]:
    pids = pids or {}
    rows: list[Row] = []
    for name, url in urls.items():  # warm up: connections, match caches, the allocator
        await case_fanout(url, 128, 5_000 if quick else 50_000, 1, False)
    for size in payloads:
        n = (20_000 if quick else 200_000) if size <= 1024 else (2_000 if quick else 20_000)
        cases = [
            ("publish only", lambda url: case_pub_only(url, size, n)),
            ("pub -> 1 sub", lambda url: case_fanout(url, size, n, 1, False)),
            ("pub -> 4 subs (fan-out)", lambda url: case_fanout(url, size, n, 4, False)),
            ("queue group of 4", lambda url: case_fanout(url, size, n, 4, True)),
        ]
        for label, fn in cases:
            row = Row(label, size, "msg/s")
            for name, url in urls.items():
                row.results[name] = await measured(pids.get(name), fn(url))
            rows.append(row)
        p50 = Row(f"req/reply p50 @{RATE // 1000}k/s", size, "latency")
        p99 = Row(f"req/reply p99 @{RATE // 1000}k/s", size, "latency")
        for name, url in urls.items():
            p50.results[name], p99.results[name] = await case_latency(url, size, 1_000 if quick else 10_000)
        rows += [p50, p99]
        print(f"bench: {fmt_size(size)} done", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="much smaller counts (a smoke run)")
    ap.add_argument("--servers", default="omnibus,nats-server")
    ap.add_argument("--payloads", default="16,128,16384")
    ap.add_argument("--omnibus-url", help="use a running Omnibus instead of starting one")
    ap.add_argument("--nats-server-url", help="use a running nats-server instead of starting one")
    args = ap.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    payloads = [int(p) for p in args.payloads.split(",")]
    started = []
    urls: dict[str, str] = {}
    pids: dict[str, int | None] = {}
    try:
        for s in servers:
            if s == "omnibus":
                if args.omnibus_url:
                    urls[s], pids[s] = args.omnibus_url, None
                else:
                    srv = OmnibusServe(args=("--fsync", "never")).start()
                    started.append(srv)
                    urls[s], pids[s] = srv.url, srv.pid
            elif s == "nats-server":
                if args.nats_server_url:
                    urls[s], pids[s] = args.nats_server_url, None
                else:
                    srv = NatsServer(install=True).start()
                    started.append(srv)
                    urls[s], pids[s] = srv.url, srv.pid
            else:
                ap.error(f"unknown server {s!r}")
        print(f"bench: {', '.join(f'{k} at {v}' for k, v in urls.items())}; "
              f"{'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs", file=sys.stderr)
        rows = uvloop.run(run_all(urls, payloads, args.quick, pids))
        print_table(rows, list(urls))
    finally:
        for srv in started:
            srv.close()


if __name__ == "__main__":
    main()
