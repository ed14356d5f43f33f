"""File regions reach a slow reader by sendfile only (the writability wait, no pread copies), in order; a
reader that hangs up mid-region leaves no watcher or fd behind. Uses the echo session of test_transport."""

from __future__ import annotations

import asyncio
import os

from omnibus import Broker
from omnibus.storage.files import FileRegion as Region
from tests.server.test_transport import FILE_REGIONS, echo_protocol  # noqa: F401  (fixture)


async def test_slow_reader_gets_regions_by_sendfile_only(echo_protocol, tmp_path, monkeypatch):  # noqa: F811
    data = os.urandom(8 * 1024 * 1024)
    (tmp_path / "blob").write_bytes(data)
    fd = os.open(tmp_path / "blob", os.O_RDONLY)
    FILE_REGIONS[:] = [Region(fd, 0, len(data)), Region(fd, 100, 5000)]
    expect = b"<" + data + data[100:5100] + b">\n"
    copies = []
    pread = os.pread

    def counting_pread(f, n, pos):
        if f == fd:
            copies.append(n)
        return pread(f, n, pos)

    monkeypatch.setattr(os, "pread", counting_pread)
    try:
        async with Broker(tmp_path / "d") as broker:
            r, w = await asyncio.open_connection("127.0.0.1", broker.port("nats"), limit=1 << 16)
            w.write(b"file\nx\nbye\n")
            got = bytearray()
            while chunk := await asyncio.wait_for(r.read(1 << 16), 10):
                got += chunk
                if len(got) < 2 * 1024 * 1024:
                    await asyncio.sleep(0.001)  # a slow start: the socket buffer fills many times
            assert bytes(got) == expect + b"x\nbye\n"
            assert copies == []  # every payload byte went out with sendfile
            w.close()
    finally:
        os.close(fd)
        FILE_REGIONS.clear()


def open_sockets() -> int:
    """Socket fds of this process (the broker runs in it)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return n


async def test_reader_hangs_up_while_a_region_waits(echo_protocol, tmp_path):  # noqa: F811
    data = os.urandom(16 * 1024 * 1024)
    (tmp_path / "blob").write_bytes(data)
    fd = os.open(tmp_path / "blob", os.O_RDONLY)
    FILE_REGIONS[:] = [Region(fd, 0, len(data))]
    try:
        async with Broker(tmp_path / "d") as broker:
            sockets_before = open_sockets()
            r, w = await asyncio.open_connection("127.0.0.1", broker.port("nats"))
            w.write(b"file\n")
            await asyncio.wait_for(r.readexactly(1024), 5)  # the region is under way, the socket full
            w.transport.abort()
            for _ in range(200):
                if not broker.server.connections and open_sockets() <= sockets_before:
                    break
                await asyncio.sleep(0.01)
            assert broker.server.connections == set()
            assert open_sockets() <= sockets_before  # the socket's dup is closed too
            # the listener still serves
            r2, w2 = await asyncio.open_connection("127.0.0.1", broker.port("nats"))
            w2.write(b"hi\n")
            assert await asyncio.wait_for(r2.readline(), 5) == b"hi\n"
            w2.close()
    finally:
        os.close(fd)
        FILE_REGIONS.clear()
