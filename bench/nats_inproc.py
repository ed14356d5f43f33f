"""CPU cost of the NATS publish path without sockets (not a test): codec + session + connection queueing.

A publisher session is fed 64 KiB chunks of ``PUB foo.bar 128``; one (or ``--subs``) subscriber sessions
queue the MSG frames on connections whose transports only count bytes. The best of ``--runs`` is
printed, since this VM's timings swing by a third from run to run. The socket I/O that ``bench/nats.py``
also measures is left out, so this is the ceiling the Python code sets.

Usage: python bench/nats_inproc.py [--subs N] [--runs N] [--payload BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from omnibus.config import load_settings  # noqa: E402
from omnibus.core.clock import SystemClock  # noqa: E402
from omnibus.core.vhost import VirtualHost  # noqa: E402
from omnibus.server.nats_session import NatsSession  # noqa: E402
from omnibus.server.transport import Connection, ProtocolStats  # noqa: E402


class CountingTransport:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, b: bytes) -> None:
        self.bytes += len(b)

    def writelines(self, items) -> None:
        for b in items:
            self.bytes += len(b)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, key):
        return None

    def set_write_buffer_limits(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


class Server:
    def __init__(self) -> None:
        self.settings = load_settings(environ={})
        self.listeners: dict = {}
        # A vhost with nothing bound to amq.topic, as in a broker without AMQP clients.
        self.vhosts = {"/": VirtualHost("/", open_log=None, delete_log=None, meta=None, clock=SystemClock())}
        self.meta = None  # no JetStream streams: nothing to restore
        self.closers: list = []

    def add_connection(self, conn) -> bool:
        return True

    def remove_connection(self, conn) -> None:
        pass


async def run_once(subs: int, payload: int, chunks: int) -> float:
    server = Server()
    conns = []
    for _ in range(subs + 1):
        c = Connection(server, "nats", NatsSession, ProtocolStats())
        c.connection_made(CountingTransport())
        conns.append(c)
    pub, subscribers = conns[0], conns[1:]
    for i, s in enumerate(subscribers):
        s.data_received(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB foo.bar %d\r\n' % i)
    pub.data_received(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    msg = b"PUB foo.bar %d\r\n" % payload + b"x" * payload + b"\r\n"
    per_chunk = max(1, 65536 // len(msg))
    chunk = msg * per_chunk
    t = time.perf_counter()
    for _ in range(chunks):
        pub.data_received(chunk)
        for s in subscribers:
            s.flush()
    return chunks * per_chunk / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--payload", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=200)
    a = ap.parse_args()
    best = max(asyncio.run(run_once(a.subs, a.payload, a.chunks)) for _ in range(a.runs))
    print(f"NATS in-process, {a.payload} B, pub -> {a.subs} sub(s): {best / 1e3:.0f}k msg/s published "
          f"({1e6 / best:.2f} us per published message), best of {a.runs}")


if __name__ == "__main__":
    main()
