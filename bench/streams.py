"""JetStream core benchmark: omnibus.core.streams without sockets or JSON (the CPU ceiling of the core).

    python bench/streams.py [--seconds N] [--dir PATH] [--fsync never|interval]

Prints, for 128 B payloads:
  * append: publishes/s when a loop turn gathers 100 publishes into one ``append_many`` call (one batch),
    plain, with a Nats-Msg-Id header each (de-duplication map), and with 10 consumers attached;
  * pull + explicit ack: messages/s of ``next_messages(100)`` followed by one ``ack`` per message,
    on a limits stream, on a workqueue stream (each ack removes the message), and with a wildcard
    filter matching half the subjects;
  * restart: seconds to reopen a stream of N messages (the index rebuild reads the whole log).
Not a test: numbers depend on the machine. Run it before and after changing the hot paths named in
streams.py / stream_consumers.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from omnibus.core.clock import SystemClock  # noqa: E402
from omnibus.core.stream_consumers import ConsumerConfig  # noqa: E402
from omnibus.core.stream_registry import JetStream  # noqa: E402
from omnibus.core.streams import DirectoryLogs, Publish, StreamConfig  # noqa: E402
from omnibus.storage.log import LogConfig  # noqa: E402

PAYLOAD = 128
BATCH = 100


def make_js(root: str, fsync: str) -> JetStream:
    clock = SystemClock()
    logs = DirectoryLogs(root, clock, file_config=LogConfig(fsync=fsync, segment_bytes=64 << 20))
    return JetStream(open_log=logs.open, delete_log=logs.delete, meta=None, clock=clock)


def bench_append(root: str, seconds: float, fsync: str, *, msg_ids: bool = False, consumers: int = 0) -> float:
    js = make_js(root, fsync)
    s = js.add_stream(StreamConfig(name="B", subjects=("b.>",)))[0]
    for i in range(consumers):
        js.add_consumer("B", ConsumerConfig(durable_name=f"c{i}", ack_policy="explicit"))
    payload = os.urandom(PAYLOAD)
    subjects = [f"b.{i % 10}" for i in range(BATCH)]
    n = 0
    k = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        if msg_ids:
            batch = [Publish(subj, payload, {"Nats-Msg-Id": f"id-{k + i}"}) for i, subj in enumerate(subjects)]
            k += BATCH
        else:
            batch = [Publish(subj, payload) for subj in subjects]
        s.append_many(batch)
        n += BATCH
        if n % (BATCH * 50) == 0:
            s.flush()
            if time.perf_counter() > deadline:
                break
    elapsed = time.perf_counter() - t0
    js.close()
    return n / elapsed


def bench_consume(root: str, seconds: float, fsync: str, *, retention: str = "limits",
                  filter_subject: str = "") -> float:
    js = make_js(root, fsync)
    s = js.add_stream(StreamConfig(name="C", subjects=("c.>",), retention=retention))[0]
    payload = os.urandom(PAYLOAD)
    subjects = [f"c.{i % 2}.{i % 10}" for i in range(BATCH)]
    total = 0
    t_fill = time.perf_counter() + seconds
    while time.perf_counter() < t_fill and total < 2_000_000:  # fill about as long as we consume
        s.append_many([Publish(subj, payload) for subj in subjects])
        total += BATCH
    s.flush()
    c = js.add_consumer("C", ConsumerConfig(durable_name="w", ack_policy="explicit", max_ack_pending=10_000,
                                            filter_subject=filter_subject))[0]
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        got = c.next_messages(BATCH)
        if not got:
            break
        for d in got:
            c.ack(d.stream_seq)
        n += len(got)
        if n % (BATCH * 50) == 0:
            s.flush()
            if time.perf_counter() > deadline:
                break
    elapsed = time.perf_counter() - t0
    js.close()
    return n / elapsed


def bench_restart(root: str, fsync: str, messages: int) -> float:
    js = make_js(root, fsync)
    s = js.add_stream(StreamConfig(name="R", subjects=("r.>",)))[0]
    payload = os.urandom(PAYLOAD)
    for i in range(0, messages, BATCH):
        s.append_many([Publish(f"r.{j % 50}", payload) for j in range(BATCH)])
    cfg = s.config
    s.close()
    clock = SystemClock()
    logs = DirectoryLogs(root, clock, file_config=LogConfig(fsync=fsync, segment_bytes=64 << 20))
    from omnibus.core.streams import Stream, stream_log_name

    t0 = time.perf_counter()
    s2 = Stream.open(cfg, logs.open(stream_log_name("R"), "file"), clock)
    elapsed = time.perf_counter() - t0
    assert s2.state().messages == messages
    s2.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--fsync", default="interval", choices=("never", "interval"))
    ap.add_argument("--restart-messages", type=int, default=200_000)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="omnibus-bench-streams-", dir=args.dir)
    try:
        def run(name, fn, *a, **kw):
            d = os.path.join(base, name)
            v = fn(d, *a, **kw)
            shutil.rmtree(d, ignore_errors=True)
            return v

        print(f"omnibus core streams, {PAYLOAD} B payloads, batches of {BATCH}, fsync={args.fsync}, "
              f"python {sys.version.split()[0]}")
        rows = [
            ("append (one batch per 100 publishes)", run("a1", bench_append, args.seconds, args.fsync)),
            ("append with Nats-Msg-Id", run("a2", bench_append, args.seconds, args.fsync, msg_ids=True)),
            ("append, 10 consumers attached", run("a3", bench_append, args.seconds, args.fsync, consumers=10)),
            ("next_messages(100) + ack each, limits", run("c1", bench_consume, args.seconds, args.fsync)),
            ("next_messages(100) + ack each, workqueue", run("c2", bench_consume, args.seconds, args.fsync,
                                                            retention="workqueue")),
            ("next_messages(100) + ack each, filter c.1.*", run("c3", bench_consume, args.seconds, args.fsync,
                                                               filter_subject="c.1.*")),
        ]
        for name, rate in rows:
            print(f"  {name:<46} {rate:>12,.0f} msgs/s")
        secs = run("r", bench_restart, args.fsync, args.restart_messages)
        print(f"  {'reopen (index rebuild) of ' + format(args.restart_messages, ',') + ' messages':<46} "
              f"{secs:>12.2f} s  ({args.restart_messages / secs:,.0f} msgs/s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
