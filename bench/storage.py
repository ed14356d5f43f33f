"""Storage benchmark: omnibus.storage against this machine's own limits, measured in the same run.

    python bench/storage.py [--seconds N] [--dir PATH]

Prints, for 1 KiB records in batches of 100:
  * append throughput under each fsync policy (MB/s, records/s) and, for always, with one batch in
    flight (each producer waits for its durability callback before sending the next: latency-bound);
  * build+append (AMQP/NATS path: records encoded by build_batch);
  * read throughput (read_bytes, batches()+decode_records) and sendfile to a 127.0.0.1 socket;
next to the machine limits: sequential write with fdatasync (``dd ... conv=fdatasync``) and loopback
TCP throughput, with ratios. Target: fsync=interval appends >= 50% of the dd figure.
Not a test: numbers depend on the disk and on what else runs. Nothing here listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from omnibus.storage import Log, LogConfig, Record, build_batch, decode_records, send_region  # noqa: E402

RECORD_BYTES = 1024
BATCH_RECORDS = 100
MAX_BYTES_PER_RUN = 4 << 30  # stop a run early rather than fill the disk
MB = 1e6


def make_batches(n: int = 16) -> list[bytes]:
    now = int(time.time() * 1000)
    return [
        build_batch([Record(b"key-%d" % i, os.urandom(RECORD_BYTES), (), now) for i in range(BATCH_RECORDS)])
        for _ in range(n)
    ]


# -- machine limits ----------------------------------------------------------------------------------


def dd_limit(directory: str) -> float:
    target = os.path.join(directory, "dd.tmp")
    try:
        proc = subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=256", "conv=fdatasync"],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if os.path.exists(target):
            os.unlink(target)
    m = re.search(r"(\d+) bytes .* copied, ([\d.]+) s", proc.stderr)
    return int(m.group(1)) / float(m.group(2)) / MB


def _drain(sock: socket.socket, total: list) -> None:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(view)
        if not n:
            break
        total[0] += n


def _socket_pair() -> tuple[socket.socket, socket.socket]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    client = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    srv.close()
    return client, conn


def loopback_limit(seconds: float) -> float:
    client, conn = _socket_pair()
    got = [0]
    t = threading.Thread(target=_drain, args=(conn, got))
    t.start()
    chunk = b"\0" * (1 << 20)
    start = time.perf_counter()
    sent = 0
    while time.perf_counter() - start < seconds:
        client.sendall(chunk)
        sent += len(chunk)
    client.close()
    t.join()
    conn.close()
    return got[0] / (time.perf_counter() - start) / MB


# -- omnibus.storage ---------------------------------------------------------------------------------


def bench_append(directory: str, policy: str, seconds: float, batches: list[bytes]) -> dict:
    path = os.path.join(directory, f"append-{policy}")
    log = Log.open(path, LogConfig(fsync=policy))
    size = len(batches[0])
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for b in batches:
            log.append(b)
        n += len(batches)
        if time.perf_counter() >= deadline or n * size >= MAX_BYTES_PER_RUN:
            break
    appended = time.perf_counter()
    if policy != "never":
        done = threading.Event()
        log.when_durable(log.end_offset - 1, done.set)
        done.wait(60)
    durable = time.perf_counter()
    fsyncs = log.syncer.fsync_count
    log.close()
    shutil.rmtree(path)
    elapsed = durable - start
    return {
        "name": f"append fsync={policy}",
        "mb_s": n * size / elapsed / MB,
        "rec_s": n * BATCH_RECORDS / elapsed,
        "extra": f"{n} batches, {fsyncs} fsyncs, append-only time {appended - start:.2f}s",
    }


def bench_append_one_in_flight(directory: str, seconds: float, batches: list[bytes]) -> dict:
    path = os.path.join(directory, "append-always-1")
    log = Log.open(path, LogConfig(fsync="always"))
    size = len(batches[0])
    n = 0
    ev = threading.Event()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        ev.clear()
        r = log.append(batches[n % len(batches)])
        log.when_durable(r.last_offset, ev.set)
        ev.wait()
        n += 1
    elapsed = time.perf_counter() - start
    log.close()
    shutil.rmtree(path)
    return {
        "name": "append fsync=always, 1 batch in flight",
        "mb_s": n * size / elapsed / MB,
        "rec_s": n * BATCH_RECORDS / elapsed,
        "extra": f"{elapsed / n * 1e3:.2f} ms per durable batch",
    }


def bench_build_append(directory: str, seconds: float) -> dict:
    path = os.path.join(directory, "build-append")
    log = Log.open(path, LogConfig(fsync="interval"))
    payloads = [os.urandom(RECORD_BYTES) for _ in range(BATCH_RECORDS)]
    n = 0
    nbytes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        r = log.append_records([Record(b"rk", p, (("exchange", b"amq.topic"),)) for p in payloads])
        n += 1
    nbytes = log.size_bytes()
    elapsed = time.perf_counter() - start
    log.close()
    shutil.rmtree(path)
    return {
        "name": "build_batch+append fsync=interval",
        "mb_s": nbytes / elapsed / MB,
        "rec_s": n * BATCH_RECORDS / elapsed,
        "extra": "AMQP/NATS path: 100 records encoded per batch",
    }


def bench_reads(directory: str, seconds: float, batches: list[bytes], loopback: float) -> list[dict]:
    path = os.path.join(directory, "reads")
    log = Log.open(path, LogConfig(fsync="never", segment_bytes=256 << 20))
    target = min(1 << 30, int(seconds * 400 * MB))
    while log.size_bytes() < target:
        for b in batches:
            log.append(b)
    log.flush()
    total = log.size_bytes()
    out = []

    def timed(name, fn, extra=""):
        start = time.perf_counter()
        nbytes, nrec = fn()
        el = time.perf_counter() - start
        out.append({"name": name, "mb_s": nbytes / el / MB, "rec_s": nrec / el if nrec else None, "extra": extra})

    def read_all():
        off, n = 0, 0
        while off < log.end_offset:
            data = log.read_bytes(off, 1 << 20)
            n += len(data)
            off = _next_offset(data)
        return n, 0

    def _next_offset(data):
        pos, last = 0, 0
        while pos < len(data):
            blen = int.from_bytes(data[pos + 8 : pos + 12], "big")
            last = int.from_bytes(data[pos : pos + 8], "big") + int.from_bytes(data[pos + 23 : pos + 27], "big") + 1
            pos += blen + 12
        return last

    def iterate_decode():
        n, recs = 0, 0
        for h, view in log.batches(0):
            n += len(view)
            recs += len(decode_records(view, validate=False))
        return n, recs

    def sendfile_all():
        client, conn = _socket_pair()
        got = [0]
        t = threading.Thread(target=_drain, args=(conn, got))
        t.start()
        off = 0
        while off < log.end_offset:
            regions = log.read(off, 8 << 20)
            for r in regions:
                while r.size:
                    n = send_region(client.fileno(), r)
                    r = r.advance(n)
            last = regions[-1]
            off = _region_end_offset(last)
        client.close()
        t.join()
        conn.close()
        return got[0], 0

    def _region_end_offset(region):
        # The last batch's header: scan headers in the region (cheap, headers only).
        pos, end, nxt = region.position, region.position + region.size, 0
        while pos < end:
            head = os.pread(region.fd, 61, pos)
            nxt = int.from_bytes(head[0:8], "big") + int.from_bytes(head[23:27], "big") + 1
            pos += int.from_bytes(head[8:12], "big") + 12
        return nxt

    timed("read_bytes (pread, 1 MiB fetches)", read_all, f"{total / MB:.0f} MB in page cache")
    timed("batches() + decode_records", iterate_decode)
    timed("sendfile to 127.0.0.1 (8 MiB fetches)", sendfile_all)
    out[-1]["limit"] = loopback
    log.close()
    shutil.rmtree(path)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    ap.add_argument("--dir", default=None, help="directory on the disk to test (default: a temp dir)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="omnibus-bench-", dir=args.dir)
    try:
        batches = make_batches()
        print(f"omnibus storage bench: {RECORD_BYTES} B records, {BATCH_RECORDS} per batch "
              f"({len(batches[0])} B batches), {args.seconds:g}s per run, dir {base}")
        os.sync()
        disk = dd_limit(base)
        net = loopback_limit(min(args.seconds, 2.0))
        print(f"machine: sequential write + fdatasync (dd, 256 MiB): {disk:8.1f} MB/s")
        print(f"machine: loopback TCP 127.0.0.1 (1 MiB sends):       {net:8.1f} MB/s")
        print()
        bench_append(base, "never", min(args.seconds, 1.0), batches)  # warm-up: page allocation, imports
        rows = []
        for policy in ("never", "interval", "always"):
            os.sync()
            row = bench_append(base, policy, args.seconds, batches)
            row["limit"] = disk
            rows.append(row)
        os.sync()
        row = bench_append_one_in_flight(base, args.seconds, batches)
        row["limit"] = disk
        rows.append(row)
        row = bench_build_append(base, args.seconds)
        row["limit"] = disk
        rows.append(row)
        os.sync()
        rows += bench_reads(base, args.seconds, batches, net)
        print(f"{'measurement':42} {'MB/s':>9} {'records/s':>12} {'vs limit':>9}  notes")
        for r in rows:
            rec = f"{r['rec_s']:12,.0f}" if r.get("rec_s") else f"{'':12}"
            ratio = f"{r['mb_s'] / r['limit']:8.0%}" if r.get("limit") else f"{'':9}"
            print(f"{r['name']:42} {r['mb_s']:9.1f} {rec} {ratio:>9}  {r.get('extra', '')}")
        interval = next(r for r in rows if r["name"] == "append fsync=interval")
        verdict = "MET" if interval["mb_s"] >= 0.5 * disk else "MISSED"
        print(f"\ntarget fsync=interval >= 50% of dd: {interval['mb_s'] / disk:.0%} -> {verdict}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
