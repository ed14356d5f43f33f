"""Micro-benchmark of the sans-IO AMQP codec (omnibus.wire.amqp), no sockets.

Run before changing AMQPConnection.events / _parse (publish hot path) or frames.deliver / content_frames:

    python bench/amqp_codec.py            # best of 5 rounds
    python bench/amqp_codec.py --quick

Scenarios: 20,000 basic.publish + content header + body triples (128 B body, content_type+delivery_mode
properties) fed to AMQPConnection in 64 KiB reads (issue 4: ~430,000/s for a hand-written struct parse,
~63,000/s via pamqp); the same triples unmarshalled by pamqp for comparison; basic.deliver triples encoded
by frames.deliver; basic.ack frames encoded.

Measured on the 2-core dev VM (CPython 3.11.7, --quick, other jobs running):
  publish+header+body parsed by AMQPConnection.events      ~177,000 /s  (below the ~430,000/s target:
      only the publish method frame has an inline fast path; the content header still goes through
      AMQPConnection._frame; inlining it is the next step)
  same triples via pamqp frame.unmarshal                    ~26,000 /s  (this loop also slices the input)
  deliver+header+body encoded, 128 B                        ~429,000 /s
  deliver+header+body encoded, 300 KiB (3 body frames)       ~43,000 /s
  basic.ack frames encoded                                 ~2,760,000 /s
"""

from __future__ import annotations

import argparse
import time

from pamqp import body as pbody
from pamqp import commands as pc
from pamqp import frame as pframe
from pamqp import header as pheader

from omnibus.wire.amqp import frames
from omnibus.wire.amqp.connection import AMQPConnection

CHUNK = 64 * 1024
N = 20_000


def handshake() -> bytes:
    return b"".join([
        frames.PROTOCOL_HEADER,
        pframe.marshal(pc.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\0g\0g"), 0),
        pframe.marshal(pc.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=60), 0),
        pframe.marshal(pc.Connection.Open(virtual_host="/"), 0),
        pframe.marshal(pc.Channel.Open(), 1),
    ])


def triple(body: bytes) -> bytes:
    props = pc.Basic.Properties(content_type="application/octet-stream", delivery_mode=2)
    return (pframe.marshal(pc.Basic.Publish(exchange="", routing_key="bench.queue"), 1)
            + pframe.marshal(pheader.ContentHeader(0, len(body), props), 1)
            + pframe.marshal(pbody.ContentBody(body), 1))


def bench_parse(rounds: int) -> float:
    stream = triple(bytes(128)) * N
    parts = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
    best = 0.0
    for _ in range(rounds):
        c = AMQPConnection()
        c.receive_data(handshake())
        for ev in c.events():  # play the session's handshake replies
            pass
        c.state = c.state.OPEN  # as if start/tune/open-ok were sent
        t0 = time.perf_counter()
        n = 0
        for p in parts:
            c.receive_data(p)
            n += len(c.events())
        dt = time.perf_counter() - t0
        assert n == N, n
        best = max(best, N / dt)
    return best


def bench_pamqp(rounds: int) -> float:
    stream = triple(bytes(128)) * (N // 4)
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        pos, n = 0, 0
        data = stream
        while pos < len(data):
            used, _, _ = pframe.unmarshal(data[pos:pos + 200_000][:len(data) - pos])
            pos += used
            n += 1
        dt = time.perf_counter() - t0
        best = max(best, (n // 3) / dt)
    return best


def bench_deliver(rounds: int, size: int) -> float:
    body = bytes(size)
    props = b"\x90\x00\x18application/octet-stream\x02"
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(N):
            frames.deliver(1, "amq.ctag-abc", i, False, "", "bench.queue", props, body, 131072)
        best = max(best, N / (time.perf_counter() - t0))
    return best


def bench_ack(rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(N):
            frames.ack(1, i, False)
        best = max(best, N / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    rounds = 2 if ap.parse_args().quick else 5
    print(f"publish+header+body parsed (AMQPConnection.events, 128 B): {bench_parse(rounds):>12,.0f} /s")
    print(f"publish+header+body parsed (pamqp frame.unmarshal):        {bench_pamqp(rounds):>12,.0f} /s")
    print(f"deliver+header+body encoded (frames.deliver, 128 B):       {bench_deliver(rounds, 128):>12,.0f} /s")
    print(f"deliver+header+body encoded (frames.deliver, 300 KiB):     {bench_deliver(rounds, 300 * 1024):>12,.0f} /s")
    print(f"basic.ack encoded (frames.ack):                             {bench_ack(rounds):>12,.0f} /s")


if __name__ == "__main__":
    main()
