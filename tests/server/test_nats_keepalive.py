"""Server-initiated PINGs and stale-connection detection (nats-server ping_interval / ping_max), on raw
sockets against a real broker with a short interval."""

from __future__ import annotations

import socket
import time

from omnibus import SyncBroker


def read_until(sock: socket.socket, token: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while token not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_server_pings_and_closes_stale_connections(tmp_path):
    settings = {"nats.ping_interval_s": 0.2, "nats.max_pings_out": 2}
    with SyncBroker(tmp_path, settings=settings) as broker:
        alive = socket.create_connection(("127.0.0.1", broker.port("nats")))
        stale = socket.create_connection(("127.0.0.1", broker.port("nats")))
        for s in (alive, stale):
            assert read_until(s, b"\r\n").startswith(b"INFO ")
            s.sendall(b'CONNECT {"verbose":false}\r\n')
        t0 = time.monotonic()
        # The answering client keeps its connection: every server PING gets a PONG.
        for _ in range(4):
            assert read_until(alive, b"PING\r\n") == b"PING\r\n"
            alive.sendall(b"PONG\r\n")
        # The silent one gets max_pings_out PINGs, then nats-server's stale-connection error and a close.
        got = b""
        stale.settimeout(5)
        while chunk := stale.recv(4096):
            got += chunk
        assert got == b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
        assert time.monotonic() - t0 < 3
        alive.sendall(b"PING\r\n")
        assert read_until(alive, b"PONG\r\n").endswith(b"PONG\r\n")
        alive.close()
        stale.close()
