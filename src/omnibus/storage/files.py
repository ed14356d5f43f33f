"""File regions and zero-copy sending: how log bytes reach a socket without passing through Python.

Strategy
    :meth:`omnibus.storage.log.Log.read` returns :class:`FileRegion` s (fd, position, size) instead of
    bytes. The server sends them with :func:`send_region`, a thin wrapper over ``os.sendfile``: the kernel
    copies page cache to socket buffers and no Python object ever holds the payload.

    uvloop's ``loop.sendfile`` raises ``NotImplementedError`` (uvloop transports do not implement the
    sendfile fast path), so the server calls :func:`send_region` directly on the raw, non-blocking socket
    fd, and only when the transport's own write buffer is empty (``transport.get_write_buffer_size() ==
    0``), otherwise bytes queued by ``transport.write`` and bytes sent here would interleave. On a partial
    send it keeps the rest (:meth:`FileRegion.advance`) and retries when the socket is writable again.

Rules
    * A region's fd belongs to its log segment; never close it. It stays valid until the segment is
      deleted and then for at least ``LogConfig.file_delete_delay_ms`` more (deleted segments are renamed
      and closed later, like Kafka's file.delete.delay.ms), or until the log is closed.
    * :func:`send_region` never blocks on a non-blocking socket: it returns what the kernel took (0 on
      EAGAIN); the caller loops.

Concurrency: :func:`send_region` is a single syscall; any thread, but the caller owns the socket
(event-loop thread only in the server).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from .records import StorageError

__all__ = ["FileRegion", "RegionGoneError", "send_region", "write_fully"]


class RegionGoneError(StorageError):
    """The file ended before the region did: its segment was truncated or deleted under the sender."""


class FileRegion(NamedTuple):
    """``size`` bytes of the open file ``fd`` from ``position``; feed to ``os.sendfile``/``os.pread``."""

    fd: int
    position: int
    size: int

    def advance(self, n: int) -> "FileRegion":
        """The part not yet sent after ``n`` bytes went out."""
        return FileRegion(self.fd, self.position + n, self.size - n)


def send_region(sock_fd: int, region: FileRegion) -> int:
    """Send as much of ``region`` as the socket takes now; returns bytes sent (0 if it would block).

    Raises :class:`RegionGoneError` if the file is shorter than the region says, and lets socket errors
    (ECONNRESET, EPIPE, ...) propagate for the caller to close the connection.
    """
    if region.size <= 0:
        return 0
    while True:
        try:
            sent = os.sendfile(sock_fd, region.fd, region.position, region.size)
        except (BlockingIOError, InterruptedError) as e:
            if isinstance(e, InterruptedError):
                continue
            return 0
        if sent == 0:
            raise RegionGoneError(f"file ended before region {region}")
        return sent


def write_fully(fd: int, buffers: list, position: int) -> int:
    """``os.pwritev`` until every buffer is written (regular files may write short, e.g. on a full disk
    the call then raises ENOSPC). Returns the number of bytes written. Blocks: a page-cache copy."""
    total = sum(len(b) for b in buffers)
    done = os.pwritev(fd, buffers, position)
    while done < total:
        rest = memoryview(b"".join(bytes(b) for b in buffers))[done:]  # rare: only after a short write
        n = os.pwrite(fd, rest, position + done)
        if n <= 0:
            raise OSError(f"pwrite wrote {n} bytes")
        done += n
    return total
