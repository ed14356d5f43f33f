"""Pipelined runs of PUBs to one subject (delivered to each subscriber in one write) keep nats-server's
per-message semantics: echo off, queue groups, auto-unsubscribe and counters."""

from __future__ import annotations

import socket
import time

from omnibus import SyncBroker


def connect(port: int, opts: bytes = b'{"verbose":false,"pedantic":false}') -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.recv(4096)  # INFO
    s.sendall(b"CONNECT " + opts + b"\r\n")
    return s


def read_msgs(s: socket.socket, until: bytes = b"PONG\r\n") -> bytes:
    data = b""
    deadline = time.monotonic() + 5
    while not data.endswith(until) and time.monotonic() < deadline:
        data += s.recv(1 << 20)
    return data


def test_runs_keep_echo_queue_groups_and_auto_unsubscribe(tmp_path):
    with SyncBroker(tmp_path) as broker:
        port = broker.port("nats")
        pub = connect(port, b'{"verbose":false,"pedantic":false,"echo":false}')
        plain = connect(port)
        limited = connect(port)
        q1, q2 = connect(port), connect(port)
        pub.sendall(b"SUB run 1\r\nPING\r\n")  # its own subscription: echo off, so it gets nothing
        plain.sendall(b"SUB run 7\r\nPING\r\n")
        limited.sendall(b"SUB run 8\r\nUNSUB 8 3\r\nPING\r\n")
        q1.sendall(b"SUB run workers 2\r\nPING\r\n")
        q2.sendall(b"SUB run workers 3\r\nPING\r\n")
        for s in (pub, plain, limited, q1, q2):
            assert read_msgs(s) == b"PONG\r\n"
        run = b"".join(b"PUB run %d\r\n%s\r\n" % (len(b"m%d" % i), b"m%d" % i) for i in range(50))
        pub.sendall(run + b"PING\r\n")
        assert read_msgs(pub) == b"PONG\r\n"
        for s in (plain, limited, q1, q2):
            s.sendall(b"PING\r\n")
        expected = b"".join(b"MSG run 7 %d\r\nm%d\r\n" % (len(b"m%d" % i), i) for i in range(50))
        assert read_msgs(plain) == expected + b"PONG\r\n"
        assert read_msgs(limited) == b"MSG run 8 2\r\nm0\r\nMSG run 8 2\r\nm1\r\nMSG run 8 2\r\nm2\r\nPONG\r\n"
        got_q = read_msgs(q1).count(b"MSG run 2 ") + read_msgs(q2).count(b"MSG run 3 ")
        assert got_q == 50  # each message to exactly one member of the group
        for s in (pub, plain, limited, q1, q2):
            s.close()


def test_run_fast_path_to_plain_subscribers_with_echo_off(tmp_path):
    with SyncBroker(tmp_path) as broker:
        port = broker.port("nats")
        pub = connect(port, b'{"verbose":false,"pedantic":false,"echo":false}')
        a, b = connect(port), connect(port)
        pub.sendall(b"SUB fast 1\r\nPING\r\n")
        a.sendall(b"SUB fast 5\r\nSUB fast.> 6\r\nPING\r\n")
        b.sendall(b"SUB fast 9\r\nPING\r\n")
        for s in (pub, a, b):
            assert read_msgs(s) == b"PONG\r\n"
        payloads = [b"x" * (i % 7) for i in range(200)]
        pub.sendall(b"".join(b"PUB fast %d\r\n%s\r\n" % (len(p), p) for p in payloads) + b"PING\r\n")
        assert read_msgs(pub) == b"PONG\r\n"  # echo off: nothing back to the publisher
        a.sendall(b"PING\r\n")
        b.sendall(b"PING\r\n")
        assert read_msgs(a) == b"".join(b"MSG fast 5 %d\r\n%s\r\n" % (len(p), p) for p in payloads) + b"PONG\r\n"
        assert read_msgs(b) == b"".join(b"MSG fast 9 %d\r\n%s\r\n" % (len(p), p) for p in payloads) + b"PONG\r\n"
        varz_in = broker.call(lambda: broker.server.nats.totals())
        assert varz_in[0] == 200 and varz_in[1] == 400  # in_msgs, out_msgs counted per message
        for s in (pub, a, b):
            s.close()
