"""The connection layer with a tiny line-echo session on real sockets: batching, file regions via sendfile,
max connections, shutdown."""

from __future__ import annotations

import asyncio
import os

import pytest

from omnibus import Broker
from omnibus.server import app
from omnibus.storage.files import FileRegion as Region

FILE_REGIONS: list = []


class EchoSession:
    """Echoes each line; the line ``file`` sends FILE_REGIONS, ``bye`` closes. Test-only."""

    def __init__(self, conn, server):
        self.conn = conn
        self.buf = b""
        self.lost = None

    def data_received(self, data):
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line == b"file":
                self.conn.write(b"<")
                self.conn.write_regions(FILE_REGIONS)
                self.conn.write(b">\n")
            elif line == b"bye":
                self.conn.write(b"bye\n")
                self.conn.close()
            else:
                self.conn.write(line + b"\n")

    def connection_lost(self, exc):
        self.lost = exc

    def shutdown(self):
        self.conn.write(b"shutting down\n")
        self.conn.close()


@pytest.fixture
def echo_protocol(monkeypatch):
    monkeypatch.setitem(app.SESSIONS, "nats", "tests.server.test_transport:EchoSession")


async def test_echo_many_lines_and_close(echo_protocol, tmp_path):
    async with Broker(tmp_path) as broker:
        r, w = await asyncio.open_connection("127.0.0.1", broker.port("nats"))
        lines = [f"line {i}".encode() for i in range(2000)]
        w.write(b"\n".join(lines) + b"\nbye\n")
        got = await asyncio.wait_for(r.read(), 5)
        assert got == b"\n".join(lines) + b"\nbye\n"
        stats = broker.server.stats["nats"]
        assert stats.bytes_in == stats.bytes_out == len(got)
        w.close()


async def test_file_regions_go_out_in_order(echo_protocol, tmp_path):
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "blob"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    FILE_REGIONS[:] = [Region(fd, 10, 1000), Region(fd, 2048, len(data) - 4096)]
    expect = b"<" + data[10:1010] + data[2048:len(data) - 2048] + b">\n"
    try:
        async with Broker(tmp_path / "d") as broker:
            r, w = await asyncio.open_connection("127.0.0.1", broker.port("nats"))
            w.write(b"file\nfile\nbye\n")
            await asyncio.sleep(0.05)  # let the socket buffer fill, exercising the pread fallback
            got = await asyncio.wait_for(r.read(), 10)
            assert got == expect + expect + b"bye\n"
            w.close()
    finally:
        os.close(fd)
        FILE_REGIONS.clear()


async def test_max_connections(echo_protocol, tmp_path):
    async with Broker(tmp_path, settings={"limits.max_connections": 2}) as broker:
        port = broker.port("nats")
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for r, w in conns:
            w.write(b"hi\n")
            assert await asyncio.wait_for(r.readline(), 5) == b"hi\n"
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r3.read(), 5) == b""  # refused: closed at once
        for r, w in conns:  # the others keep working
            w.write(b"still\n")
            assert await asyncio.wait_for(r.readline(), 5) == b"still\n"
            w.close()
        w3.close()


async def test_graceful_stop_says_goodbye(echo_protocol, tmp_path):
    broker = await Broker(tmp_path).start()
    r, w = await asyncio.open_connection("127.0.0.1", broker.port("nats"))
    w.write(b"x\n")
    assert await r.readline() == b"x\n"
    await asyncio.wait_for(broker.stop(), 5)
    assert await asyncio.wait_for(r.read(), 5) == b"shutting down\n"
    assert broker.server.connections == set()
    w.close()


def test_file_regions_on_uvloop(echo_protocol, tmp_path):
    """The same through SyncBroker, whose loop is uvloop (its transports differ from asyncio's)."""
    import socket

    from omnibus import SyncBroker
    from omnibus.server.loop import LOOP_NAME

    data = os.urandom(2 * 1024 * 1024)
    (tmp_path / "blob").write_bytes(data)
    fd = os.open(tmp_path / "blob", os.O_RDONLY)
    FILE_REGIONS[:] = [Region(fd, 0, len(data))]
    try:
        with SyncBroker(tmp_path / "d") as broker:
            assert LOOP_NAME == "uvloop"
            with socket.create_connection(("127.0.0.1", broker.port("nats")), timeout=10) as s:
                s.sendall(b"file\nbye\n")
                got = b""
                while chunk := s.recv(1 << 20):
                    got += chunk
            assert got == b"<" + data + b">\nbye\n"
            assert broker.server.stats["nats"].bytes_out == len(got)
    finally:
        os.close(fd)
        FILE_REGIONS.clear()
