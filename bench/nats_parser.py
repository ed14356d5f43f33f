"""Micro-benchmark of the sans-IO NATS codec (omnibus.wire.nats).

Run before changing NatsParser.events / _general or the encoder's msg functions:

    python bench/nats_parser.py            # all scenarios
    python bench/nats_parser.py --quick    # fewer rounds

Parser scenarios: a stream of 10,000 ``PUB foo.bar 128\\r\\n<128 B>\\r\\n`` fed in 64 KiB chunks (the target
is > 1,000,000 events/s), the same with a reply subject, HPUB, the general path (tabs), a mixed stream, and
a 1 MiB payload fed in 64 KiB chunks. Encoder scenarios: msg() per subscriber vs msg_parts() once plus one
concatenation per subscriber (fan-out to 10 sids). Numbers are the best of several rounds.

Measured on the 2-core dev VM (CPython 3.11.7; other jobs running, so runs vary by up to 2x; best runs):
  PUB foo.bar 128, same line again and again (cache hit)   ~1.5 M events/s  (~650 ns/event)
  PUB, sizes varying 0..199 (200 cached lines)              ~0.9-1.5 M events/s
  PUB, 10k distinct subjects or request inboxes (no cache)  ~0.65 M events/s (~1.5 us/event)
  HPUB same line / with unique reply                         ~1.3 M / ~0.55 M events/s
  lower case / tabs (general path); mixed with SUB/UNSUB/PING ~0.35 M; ~0.5 M events/s
  1 MiB payloads in 64 KiB reads                             ~4.5 GB/s (one join per payload)
  MSG fan-out: msg() per sid ~500-900 ns; msg_parts() once + head+sid+tail ~150-280 ns per sid
"""

from __future__ import annotations

import argparse
import time

from omnibus.wire.nats import encoder as enc
from omnibus.wire.nats.parser import NatsParser

CHUNK = 64 * 1024


def chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def run_parser(stream: bytes, expected: int, rounds: int, chunk: int = CHUNK,
               max_payload: int = 1024 * 1024) -> float:
    """Best events/s over ``rounds`` feeds of ``stream`` in ``chunk``-byte reads."""
    parts = chunks(stream, chunk)
    best = 0.0
    for _ in range(rounds):
        p = NatsParser(max_payload=max_payload)
        count = 0
        t0 = time.perf_counter()
        for part in parts:
            p.receive_data(part)
            count += len(p.events())
        dt = time.perf_counter() - t0
        assert count == expected, (count, expected)
        best = max(best, count / dt)
    return best


def bench_parser(rounds: int) -> None:
    payload = bytes(range(128))
    n = 10_000
    # (name, stream of n ops, events per op)
    scenarios = [
        ("PUB foo.bar 128 (target > 1M/s)", (b"PUB foo.bar 128\r\n" + payload + b"\r\n") * n, 1),
        ("PUB foo.bar <0..199> (sizes vary)",
         b"".join(b"PUB foo.bar %d\r\n" % (i % 200) + payload[:i % 200] + b"x" * (i % 200 - 128) + b"\r\n"
                  for i in range(n)), 1),
        ("PUB foo.bar.<i> 128 (10k subjects)",
         b"".join(b"PUB foo.bar.%d 128\r\n" % i + payload + b"\r\n" for i in range(n)), 1),
        ("PUB foo.bar _INBOX.<i> 128 (requests)",
         b"".join(b"PUB foo.bar _INBOX.Hx3kQ1.%d 128\r\n" % i + payload + b"\r\n" for i in range(n)), 1),
        ("PUB foo.bar 0 (empty payload)", b"PUB foo.bar 0\r\n\r\n" * n, 1),
        ("HPUB foo.bar 24 152", (b"HPUB foo.bar 24 152\r\nNATS/1.0\r\nA: bcdefgh\r\n\r\n" + payload + b"\r\n") * n,
         1),
        ("HPUB foo.bar _INBOX.<i> 24 152",
         b"".join(b"HPUB foo.bar _INBOX.Hx3kQ1.%d 24 152\r\nNATS/1.0\r\nA: bcdefgh\r\n\r\n" % i + payload + b"\r\n"
                  for i in range(n)), 1),
        ("pub\\tfoo.bar\\t128 (general path)", (b"pub\tfoo.bar\t128\r\n" + payload + b"\r\n") * n, 1),
        ("PUB/SUB/UNSUB/PING mixed", (b"PUB a.b 128\r\n" + payload + b"\r\nSUB a.* q 12\r\nUNSUB 12 5\r\nPING\r\n") * n,
         4),
    ]
    print(f"parser, {n:,} ops per stream, {CHUNK // 1024} KiB reads, best of {rounds}")
    for name, stream, events_per_op in scenarios:
        rate = run_parser(stream, n * events_per_op, rounds)
        mbs = len(stream) / 1e6 * rate / (n * events_per_op)
        print(f"  {name:40s} {rate:>12,.0f} events/s  {1e9 / rate:>6,.0f} ns/event  {mbs:>6,.0f} MB/s")
    big = b"PUB big 1048576\r\n" + b"x" * 1048576 + b"\r\n"
    rate = run_parser(big * 20, 20, rounds)
    print(f"  {'PUB 1 MiB payload':40s} {rate:>12,.0f} events/s  {'':>16s}  {rate * len(big) / 1e6:>6,.0f} MB/s")
    # one byte at a time: the worst case for the split-buffer path
    small = (b"PUB foo.bar 16\r\n" + payload[:16] + b"\r\n") * 200
    rate = run_parser(small, 200, max(1, rounds // 2), chunk=1)
    print(f"  {'PUB 16 B fed one byte at a time':40s} {rate:>12,.0f} events/s")


def bench_encoder(rounds: int) -> None:
    payload = bytes(range(128))
    sids = [str(i).encode() for i in range(10)]
    n = 20_000
    print(f"encoder, fan-out of one 128 B message to {len(sids)} sids, {n:,} messages")

    def per_sid(label: str, fn) -> None:
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        print(f"  {label:40s} {best / (n * len(sids)) * 1e9:>8.0f} ns per MSG")

    def with_msg() -> None:
        for _ in range(n):
            for sid in sids:
                enc.msg("foo.bar", sid, None, payload)

    def with_parts() -> None:
        for _ in range(n):
            head, tail = enc.msg_parts("foo.bar", None, payload)
            for sid in sids:
                head + sid + tail

    def with_msg_reply() -> None:
        for _ in range(n):
            for sid in sids:
                enc.msg("foo.bar", sid, "_INBOX.abc", payload)

    def with_parts_reply() -> None:
        for _ in range(n):
            head, tail = enc.msg_parts("foo.bar", "_INBOX.abc", payload)
            for sid in sids:
                head + sid + tail

    per_sid("msg() per sid", with_msg)
    per_sid("msg_parts() once + head+sid+tail", with_parts)
    per_sid("msg() per sid, with reply", with_msg_reply)
    per_sid("msg_parts() once, with reply", with_parts_reply)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    args = ap.parse_args()
    rounds = 2 if args.quick else 7
    bench_parser(rounds)
    bench_encoder(max(1, rounds // 2))


if __name__ == "__main__":
    main()
