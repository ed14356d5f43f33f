"""sendfile of log regions to a real socket (omnibus.storage.files)."""

from __future__ import annotations

import os
import socket

import pytest

from omnibus.storage import FileRegion, Log, LogConfig, RegionGoneError, send_region

from .util import batch


def test_send_regions_over_a_socket_pair(tmp_path):
    log = Log.open(tmp_path / "log", LogConfig(fsync="never", segment_bytes=20_000))
    for i in range(100):
        log.append(batch(5, size=100, tag=i))
    assert len(log.segments()) > 2
    regions = log.read(7, 10**9)
    expected = log.read_bytes(7, 10**9)
    assert len(regions) == len(log.segments()) and sum(r.size for r in regions) == len(expected)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    received = bytearray()
    pending = list(regions)
    partial = False
    while pending or len(received) < len(expected):
        if pending:
            n = send_region(a.fileno(), pending[0])
            if n < pending[0].size:
                partial = partial or n > 0
                pending[0] = pending[0].advance(n)
            else:
                pending.pop(0)
        try:
            received += b.recv(1 << 16)
        except BlockingIOError:
            pass
    assert bytes(received) == expected
    a.close()
    b.close()
    log.close()


def test_send_region_would_block_returns_zero(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1 << 20))
    fd = os.open(path, os.O_RDONLY)
    a, b = socket.socketpair()
    a.setblocking(False)
    total = 0
    while True:
        n = send_region(a.fileno(), FileRegion(fd, total, (1 << 20) - total))
        if n == 0:
            break  # the peer is not reading: EAGAIN, reported as 0
        total += n
    assert 0 < total < 1 << 20
    with pytest.raises(RegionGoneError):
        b.setblocking(False)
        while True:
            try:
                b.recv(1 << 20)
            except BlockingIOError:
                break
        send_region(a.fileno(), FileRegion(fd, 1 << 20, 100))  # past the end of the file
    a.close()
    b.close()
    os.close(fd)
