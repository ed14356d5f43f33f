"""AMQP 0-9-1 benchmark: Omnibus and RabbitMQ side by side, same load generator, same run.

    python bench/amqp.py [--quick] [--repeat N] [--servers omnibus,rabbitmq] [--sizes 100,4096]
                         [--cases transient,persistent,fanout]
                         [--omnibus-url amqp://...] [--rabbitmq-url amqp://...] [--fsync interval]

Starts ``omnibus serve`` (free ports, temporary data dir, ``--fsync`` as given: by default ``interval``,
which confirms a persistent message only after an fsync covers it) and a RabbitMQ node
(``bench/_servers.RabbitServer``: 127.0.0.1, a free port, its own temporary dirs; ``apt-get install
rabbitmq-server`` if it is missing), unless URLs of running brokers are given. For each body size (100 B
and 4 KiB) it measures, from the first publish until the last message is consumed (and confirmed):

- transient: a non-durable queue, non-persistent messages, no confirms, one auto-ack consumer. The
  publisher stays within a window (WINDOW messages) of the consumer, so this is a sustained end-to-end
  rate, not a burst into buffers.
- persistent + confirms: a durable queue, delivery-mode 2, publisher confirms with at most WINDOW
  unconfirmed messages, one consumer with manual acks (prefetch PREFETCH, one ``multiple`` ack per read).
- fan-out to 4: a fanout exchange bound to 4 non-durable queues, one auto-ack consumer each, transient
  messages; the figure is messages *published* per second (each is delivered 4 times).

The load generator is this one Python process on uvloop, raw sockets, no client library (pika and
aio-pika are slower than the brokers they would measure): publishes are pre-encoded frames written in
~256 KiB chunks; consumers read only frame headers and the delivery tag, never bodies. On a 2-core
machine the client shares the CPUs with the broker; compare ratios, not absolutes. Each figure is the
median of ``--repeat`` runs. Not a test; nothing listens beyond 127.0.0.1.

Omnibus's hot paths for these cases: ``AMQPConnection.events`` (publish parse), ``AmqpSession
._flush_publishes`` and ``AmqpBroker.pump`` (server/amqp_session.py), ``frames.deliver``.

Measured here (2 cores shared with other work, RabbitMQ 3.10.8 from Debian, Omnibus fsync=interval,
``--repeat 3``)::

    case                          body       omnibus     rabbitmq  omnibus/rabbitmq
    transient publish+consume     100 B  40.5k msg/s  38.6k msg/s              1.05
    persistent + confirms + acks  100 B  34.6k msg/s  14.7k msg/s              2.35
    fan-out to 4 queues           100 B  19.2k msg/s  16.3k msg/s              1.18
    transient publish+consume     4 KiB  26.4k msg/s  32.4k msg/s              0.81
    persistent + confirms + acks  4 KiB  19.4k msg/s   9.0k msg/s              2.16
    fan-out to 4 queues           4 KiB  11.5k msg/s   9.3k msg/s              1.23

Three full runs on the same code gave ratios 0.95-1.16 (transient 100 B), 2.28-3.32 (persistent 100 B),
1.18-1.34 (fan-out 100 B), 0.81-1.18 (transient 4 KiB), 2.04-2.66 (persistent 4 KiB) and 0.70-1.24
(fan-out 4 KiB): run-to-run spread is ±20% or more, since the client and both brokers share two cores
with whatever else runs. Before the changes below, the same machine measured 27.6k / 16.3k / 7.5k /
17.9k / 13.2k / 6.4k msg/s for Omnibus in these six rows.

py-spy on the broker (``py-spy record -p PID -f raw``), transient 100 B: the queue re-decoded the batches it
had just written (``Queue._read`` -> ``batch_to_messages``, 26%) and encoded them through the generic
record builder (``messages_to_batch``, 12-16%); a fan-out did both once per queue; every confirm took a
closure and a heap entry in ``Log.when_durable`` (~10% of the persistent case); transient queues were
fsynced. Now (core/queues.py): the *recent cache* delivers the ``Message`` objects just appended (bounded
per queue and per process), ``encode_plain`` builds the batch of header-less messages directly (0.9 us
instead of 4.8 us per 100 B message) and a fan-out encodes once (``shared_batch``); the session routes
once per exchange and routing key per read and waits for durability once per channel and queue set;
non-durable queues' logs never fsync (RabbitMQ does not persist them either). What remains in the
profile: the AMQP codec's publish parsing (~35-40%), building deliveries (``frames.deliver``,
``content_frames``, ~13%), ``pump`` (~12%); in fan-out 4 KiB the four consumers fall behind the
publisher (the client is the bottleneck there: the broker uses 0.8 cores), so part of their backlog is
read back from the log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import uvloop  # a dependency of omnibus: the load generator runs on it

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench._servers import OmnibusServe, RabbitServer  # noqa: E402
from omnibus.wire.amqp import frames as fr  # noqa: E402
from omnibus.wire.amqp import methods as m  # noqa: E402

HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_MAX = 131072
#: Messages the publisher may run ahead of its consumers (transient) or of its confirms (persistent).
WINDOW = 5000
#: basic.qos prefetch of the manual-ack consumer.
PREFETCH = 2000
#: Bytes per publisher write.
WRITE_CHUNK = 256 * 1024
CASE_TIMEOUT = 180.0
_HDR = struct.Struct(">BHI")
_U16x2 = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
PROPS_TRANSIENT = b"\x00\x00"
PROPS_PERSISTENT = b"\x10\x00\x02"  # property flags: delivery-mode present; delivery-mode 2


def split_url(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Client(asyncio.Protocol):
    """One raw AMQP connection with channel 1 open. Counts deliveries and confirms; everything else is a
    reply for :meth:`call`."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.replies: asyncio.Queue = asyncio.Queue()
        self.closed = loop.create_future()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.progress = asyncio.Event()  # set on every read that delivered or confirmed something
        self.delivered = 0
        self.last_tag = 0
        self.acked_tag = 0
        self.manual_ack = False
        self.confirmed = 0  # highest tag such that every tag up to it is confirmed
        self.nacked = 0
        self._pending_confirms: set[int] = set()

    # -- asyncio.Protocol -------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        self.can_write.set()
        self.progress.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = len(buf)
        pos = 0
        unpack_hdr = _HDR.unpack_from
        delivered = 0
        while end - pos >= 7:
            ftype, _ch, size = unpack_hdr(buf, pos)
            fend = pos + 8 + size
            if fend > end:
                break
            if ftype == 1:
                cid, mid = _U16x2.unpack_from(buf, pos + 7)
                if cid == 60 and mid == 60:  # basic.deliver: consumer tag, then the delivery tag
                    n = buf[pos + 11]
                    self.last_tag = _U64.unpack_from(buf, pos + 12 + n)[0]
                    delivered += 1
                elif cid == 60 and mid == 80:  # basic.ack (confirm)
                    self._confirm(_U64.unpack_from(buf, pos + 11)[0], buf[pos + 19] & 1)
                elif cid == 60 and mid == 120:  # basic.nack
                    self.nacked += 1
                    self._confirm(_U64.unpack_from(buf, pos + 11)[0], buf[pos + 19] & 1)
                else:
                    self.replies.put_nowait(m.decode_method(bytes(buf[pos + 7:fend - 1])))
            pos = fend
        if pos:
            del buf[:pos]
        if delivered:
            self.delivered += delivered
            if self.manual_ack and self.last_tag > self.acked_tag:
                self.acked_tag = self.last_tag
                self.transport.write(fr.method_frame(1, m.BasicAck(self.last_tag, True)))
            self.progress.set()

    def _confirm(self, tag: int, multiple: int) -> None:
        if multiple:
            if tag > self.confirmed:
                self.confirmed = tag
                self._pending_confirms = {t for t in self._pending_confirms if t > tag}
        else:
            self._pending_confirms.add(tag)
        while self.confirmed + 1 in self._pending_confirms:
            self.confirmed += 1
            self._pending_confirms.discard(self.confirmed)
        self.progress.set()

    # -- control ----------------------------------------------------------------------------------------
    async def call(self, method, expect: type, timeout: float = 10.0):
        self.transport.write(fr.method_frame(1 if method.CLASS_ID != 10 else 0, method))
        reply = await asyncio.wait_for(self.replies.get(), timeout)
        if not isinstance(reply, expect):
            raise RuntimeError(f"expected {expect.__name__}, got {reply!r}")
        return reply

    async def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(fr.method_frame(0, m.ConnectionClose(200, "bye", 0, 0)))
        try:
            await asyncio.wait_for(self.replies.get(), 5)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        self.transport.close()


async def connect(url: str) -> Client:
    host, port = split_url(url)
    loop = asyncio.get_running_loop()
    _, c = await loop.create_connection(Client, host, port)
    c.transport.write(HEADER)
    start = await asyncio.wait_for(c.replies.get(), 10)
    assert isinstance(start, m.ConnectionStart), start
    c.transport.write(fr.method_frame(0, m.ConnectionStartOk({"product": "omnibus-bench"}, "PLAIN",
                                                              b"\x00guest\x00guest", "en_US")))
    tune = await asyncio.wait_for(c.replies.get(), 10)
    assert isinstance(tune, m.ConnectionTune), tune
    c.transport.write(fr.method_frame(0, m.ConnectionTuneOk(tune.channel_max or 2047,
                                                             min(FRAME_MAX, tune.frame_max or FRAME_MAX), 0)))
    c.transport.write(fr.method_frame(0, m.ConnectionOpen("/", "", False)))
    ok = await asyncio.wait_for(c.replies.get(), 10)
    assert isinstance(ok, m.ConnectionOpenOk), ok
    c.transport.write(fr.method_frame(1, m.ChannelOpen("")))
    ok = await asyncio.wait_for(c.replies.get(), 10)
    assert isinstance(ok, m.ChannelOpenOk), ok
    return c


def publish_bytes(exchange: str, routing_key: str, props: bytes, body: bytes) -> bytes:
    return (fr.method_frame(1, m.BasicPublish(0, exchange, routing_key, False, False))
            + fr.content_frames(1, 60, props, body, FRAME_MAX))


async def publish(pub: Client, one: bytes, n: int, ahead, watch: list[Client]) -> None:
    """Write ``n`` copies of the publish ``one`` in WRITE_CHUNK writes, keeping ``ahead(sent) <= WINDOW``;
    ``watch``: the clients whose progress moves ``ahead`` (consumers, or the publisher for confirms)."""
    per_chunk = max(1, min(WRITE_CHUNK // len(one), WINDOW // 4))
    chunk = one * per_chunk
    sent = 0
    while sent < n:
        k = min(per_chunk, n - sent)
        if ahead(sent + k) > WINDOW:
            await wait_until(watch + [pub], lambda: ahead(sent + k) <= WINDOW)
        if not pub.can_write.is_set():
            await pub.can_write.wait()
        pub.transport.write(chunk if k == per_chunk else one * k)
        sent += k


async def wait_until(clients: list[Client], pred) -> None:
    """Wait until ``pred()``, re-checking whenever one of ``clients`` makes progress."""
    loop = asyncio.get_running_loop()
    while not pred():
        for c in clients:
            if c.closed.done():
                raise RuntimeError(f"connection closed: {c.closed.result()!r}")
            c.progress.clear()
        if pred():
            break
        waiters = [loop.create_task(c.progress.wait()) for c in clients]
        await asyncio.wait(waiters, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()


@dataclass
class Result:
    value: float = 0.0  # messages published per second
    error: str = ""
    extra: str = ""


async def case_queue(url: str, size: int, n: int, persistent: bool) -> Result:
    """One publisher, one queue, one consumer; transient (auto-ack, no confirms) or persistent (confirms,
    manual acks)."""
    qname = f"bench-{'p' if persistent else 't'}-{uuid.uuid4().hex[:8]}"
    pub, sub = await connect(url), await connect(url)
    try:
        await pub.call(m.QueueDeclare(0, qname, False, persistent, False, False, False, {}), m.QueueDeclareOk)
        if persistent:
            await pub.call(m.ConfirmSelect(False), m.ConfirmSelectOk)
            await sub.call(m.BasicQos(0, PREFETCH, False), m.BasicQosOk)
            sub.manual_ack = True
        await sub.call(m.BasicConsume(0, qname, "c", False, not persistent, False, False, {}), m.BasicConsumeOk)
        one = publish_bytes("", qname, PROPS_PERSISTENT if persistent else PROPS_TRANSIENT, b"x" * size)
        t0 = time.perf_counter()
        if persistent:
            await publish(pub, one, n, lambda sent: sent - pub.confirmed, [pub])
            await wait_until([pub, sub], lambda: pub.confirmed >= n and sub.delivered >= n)
        else:
            await publish(pub, one, n, lambda sent: sent - sub.delivered, [sub])
            await wait_until([sub], lambda: sub.delivered >= n)
        dt = time.perf_counter() - t0
        await pub.call(m.QueueDelete(0, qname, False, False, False), m.QueueDeleteOk)
        extra = f"{pub.nacked} nacked" if pub.nacked else ""
        return Result(n / dt, extra=extra)
    finally:
        await pub.close()
        await sub.close()


async def case_fanout(url: str, size: int, n: int, nqueues: int = 4) -> Result:
    xname = f"bench-fan-{uuid.uuid4().hex[:8]}"
    pub = await connect(url)
    subs = [await connect(url) for _ in range(nqueues)]
    try:
        await pub.call(m.ExchangeDeclare(0, xname, "fanout", False, False, False, False, False, {}),
                       m.ExchangeDeclareOk)
        for i, s in enumerate(subs):
            q = f"{xname}-{i}"
            await s.call(m.QueueDeclare(0, q, False, False, False, True, False, {}), m.QueueDeclareOk)
            await s.call(m.QueueBind(0, q, xname, "", False, {}), m.QueueBindOk)
            await s.call(m.BasicConsume(0, q, "c", False, True, False, False, {}), m.BasicConsumeOk)
        one = publish_bytes(xname, "", PROPS_TRANSIENT, b"x" * size)
        t0 = time.perf_counter()
        await publish(pub, one, n, lambda sent: sent - min(s.delivered for s in subs), subs)
        await wait_until(subs, lambda: all(s.delivered >= n for s in subs))
        dt = time.perf_counter() - t0
        await pub.call(m.ExchangeDelete(0, xname, False, False), m.ExchangeDeleteOk)
        return Result(n / dt)
    finally:
        await pub.close()
        for s in subs:
            await s.close()


# -- running and printing --------------------------------------------------------------------------------

@dataclass
class Row:
    case: str
    size: int
    results: dict[str, Result] = field(default_factory=dict)


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(pid: int | None, make, repeat: int) -> Result:
    """Median of ``repeat`` runs of ``make()``; notes the broker's CPU use (cores) over all of them."""
    values = []
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    extra = ""
    for _ in range(repeat):
        try:
            r = await asyncio.wait_for(make(), CASE_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - reported in the table
            return Result(error=f"{type(e).__name__}: {e}")
        values.append(r.value)
        extra = r.extra or extra
    cores = (cpu_seconds(pid) - c0) / (time.perf_counter() - t0) if pid is not None else None
    notes = [x for x in (extra, f"server CPU {cores:.2f} cores" if cores is not None else "") if x]
    if repeat > 1:
        notes.append("runs " + "/".join(f"{v / 1e3:.1f}k" for v in values))
    return Result(statistics.median(values), extra=", ".join(notes))


def fmt_size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def fmt_value(r: Result | None) -> str:
    if r is None:
        return "-"
    if r.error:
        return "FAILED"
    return f"{r.value / 1e3:.1f}k msg/s"


def print_table(rows: list[Row], servers: list[str]) -> None:
    headers = ["case", "body", *servers]
    if len(servers) == 2:
        headers.append(f"{servers[0]}/{servers[1]}")
    table = [headers]
    notes = []
    for row in rows:
        cells = [row.case, fmt_size(row.size)]
        for s in servers:
            r = row.results.get(s)
            cells.append(fmt_value(r))
            if r is not None and (r.error or r.extra):
                notes.append(f"{row.case} {fmt_size(row.size)} on {s}: {r.error or r.extra}")
        if len(servers) == 2:
            a, b = (row.results.get(s) for s in servers)
            cells.append(f"{a.value / b.value:.2f}" if a and b and not a.error and not b.error and b.value else "-")
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    for k, r in enumerate(table):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    if len(servers) == 2:
        print(f"\nratio = {servers[0]} / {servers[1]} (above 1: {servers[0]} is faster). Issue 4 targets: "
              "persistent + confirms >= 1.0, transient >= 0.5.")
    if notes:
        print("\nnotes:")
        for n in notes:
            print("  " + n)


CASES = ("transient", "persistent", "fanout")


async def run_all(urls: dict[str, str], pids: dict[str, int | None], sizes: list[int], quick: bool,
                  repeat: int, only: tuple[str, ...] = CASES) -> list[Row]:
    for url in urls.values():  # warm up: connections, queues, the allocator, RabbitMQ's JIT
        await case_queue(url, 100, 2_000 if quick else 20_000, False)
        await case_queue(url, 100, 1_000 if quick else 10_000, True)
    rows = []
    for size in sizes:
        small = size <= 1024
        n_t = (10_000 if quick else 100_000) if small else (4_000 if quick else 30_000)
        n_p = (5_000 if quick else 50_000) if small else (2_000 if quick else 20_000)
        n_f = (5_000 if quick else 40_000) if small else (2_000 if quick else 10_000)
        cases = [
            ("transient", "transient publish+consume", lambda url: case_queue(url, size, n_t, False)),
            ("persistent", "persistent + confirms + acks", lambda url: case_queue(url, size, n_p, True)),
            ("fanout", "fan-out to 4 queues", lambda url: case_fanout(url, size, n_f)),
        ]
        for key, label, make in cases:
            if key not in only:
                continue
            row = Row(label, size)
            for name, url in urls.items():
                row.results[name] = await measured(pids.get(name), lambda: make(url), repeat)
            rows.append(row)
        print(f"bench: {fmt_size(size)} done", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="much smaller counts (a smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    ap.add_argument("--servers", default="omnibus,rabbitmq")
    ap.add_argument("--sizes", default="100,4096", help="body sizes in bytes")
    ap.add_argument("--fsync", default="interval", help="Omnibus storage.fsync (always|interval|never)")
    ap.add_argument("--omnibus-url", help="use a running Omnibus instead of starting one")
    ap.add_argument("--rabbitmq-url", help="use a running RabbitMQ instead of starting one")
    ap.add_argument("--cases", default=",".join(CASES), help="which cases: " + ",".join(CASES))
    args = ap.parse_args()
    only = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    if any(c not in CASES for c in only):
        ap.error(f"--cases: expected some of {','.join(CASES)}")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    sizes = [int(x) for x in args.sizes.split(",")]
    started: list = []
    urls: dict[str, str] = {}
    pids: dict[str, int | None] = {}
    try:
        for s in servers:
            if s == "omnibus":
                if args.omnibus_url:
                    urls[s], pids[s] = args.omnibus_url, None
                else:
                    srv = OmnibusServe(args=("--fsync", args.fsync)).start()
                    started.append(srv)
                    urls[s], pids[s] = srv.amqp_url, srv.pid
            elif s == "rabbitmq":
                if args.rabbitmq_url:
                    urls[s], pids[s] = args.rabbitmq_url, None
                else:
                    srv = RabbitServer(install=True).start()
                    started.append(srv)
                    urls[s], pids[s] = srv.url, srv.pid
            else:
                ap.error(f"unknown server {s!r}")
        print(f"bench: {', '.join(f'{k} at {v}' for k, v in urls.items())}; omnibus fsync={args.fsync}; "
              f"{'quick' if args.quick else 'full'} run, median of {args.repeat}, {os.cpu_count()} CPUs",
              file=sys.stderr)
        rows = uvloop.run(run_all(urls, pids, sizes, args.quick, args.repeat, only))
        print_table(rows, list(urls))
    finally:
        for srv in started:
            srv.close()


if __name__ == "__main__":
    main()
