"""One ``asyncio.Protocol`` per client socket: bytes in to a session, bytes out in one write per loop turn.

Strategy (after asyncpg's ``protocol.pyx``): ``data_received`` hands the bytes to the connection's session,
which feeds its sans-IO codec and acts on the events at once, synchronously. Whatever the session (or
another connection's session, for fan-out) writes is queued in a list and handed to the transport with one
``writelines`` per loop turn, so a burst of 1,000 small messages costs one syscall, not 1,000.

Flow control: ``pause_writing``/``resume_writing`` come from the transport's high/low water marks. By
default a paused connection stops reading its socket (a request/response client then waits for us, which
is the back-pressure we want); sessions may override the hooks (NATS treats a subscriber that stays
behind as a slow consumer, see :attr:`Connection.pending_bytes`).

File regions (Kafka Fetch) go out with ``os.sendfile`` on the raw socket when nothing else is queued —
uvloop 0.23 raises NotImplementedError for ``loop.sendfile``. When the socket buffer is full, the rest
waits for the socket to become writable again (``loop.add_writer`` on a ``dup`` of the socket fd: uvloop
refuses add_writer on the fd its transport owns) and goes out with sendfile too, so no payload byte is
copied through Python; ``pread`` + write is only the fallback when sendfile or the writability wait is not
available. Ordering is never broken: bytes queued behind regions wait for them.

Rules: event-loop thread only. No logging and no per-message awaits on these paths; run bench/ before
changing them.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING, Any, Callable, Protocol

from omnibus.storage.files import FileRegion, RegionGoneError, send_region

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.app import BrokerServer

__all__ = ["Connection", "Session", "SessionFactory", "ProtocolStats"]

#: Transport write-buffer water marks. Above HIGH the transport calls pause_writing; at LOW, resume.
#: 1 MiB keeps a fast consumer's pipe full without letting one connection hold much memory (the kernel's
#: socket buffer holds more); LOW = 0 means "resume when empty", the moment sendfile can take over again.
WRITE_HIGH_WATER = 1024 * 1024
WRITE_LOW_WATER = 0
#: Read size for the pread fallback of a file region the socket would not take at once.
PREAD_CHUNK = 1024 * 1024


class Session(Protocol):
    """What a protocol session (server/<protocol>_session.py) offers to its connection."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def shutdown(self) -> None:
        """The broker is stopping: say goodbye in the protocol's words (e.g. AMQP 320) and close."""


SessionFactory = Callable[["Connection", "BrokerServer"], Session]


class ProtocolStats:
    """Plain counters for one protocol, read by the metrics collector at scrape time (no locks, no labels
    on the hot path)."""

    __slots__ = ("connections", "connections_total", "bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.connections = 0
        self.connections_total = 0
        self.bytes_in = 0
        self.bytes_out = 0


class Connection(asyncio.Protocol):
    """A client socket bound to one session. Event-loop thread only."""

    __slots__ = ("server", "protocol", "stats", "transport", "session", "peer", "_factory", "_out",
                 "_out_size", "_flush_scheduled", "_loop", "writing_paused", "closed", "_closing", "_regions",
                 "pending_limit", "_wfd")

    def __init__(self, server: "BrokerServer", protocol: str, factory: SessionFactory,
                 stats: ProtocolStats) -> None:
        self.server = server
        self.protocol = protocol
        self.stats = stats
        self._factory = factory
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.peer: tuple[str, int] | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.writing_paused = False
        self.closed = False  # no more input or output
        self._closing = False  # close() was called while file regions were still queued
        self._regions: list[Any] | None = None
        #: Set by a session that wants slow-consumer detection: when more than this many bytes wait in
        #: the transport after a flush, ``session.slow_consumer()`` is called (once per loop turn, not
        #: per message).
        self.pending_limit = 0
        #: A dup of the socket fd watched for writability while a file region waits for socket space.
        self._wfd: int | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - the socket died already
                pass
        self.peer = transport.get_extra_info("peername")
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        if not self.server.add_connection(self):
            # Over max_connections: refuse without a session, as nats-server does before INFO.
            self.closed = True
            transport.abort()
            return
        self.stats.connections += 1
        self.stats.connections_total += 1
        self.session = self._factory(self, self.server)

    def data_received(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        if self.session is not None and not self.closed:
            self.session.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.stats.connections -= 1
        self.closed = True
        self._out.clear()
        self._out_size = 0
        self._regions = None
        self._stop_waiting()
        self.server.remove_connection(self)
        if self.session is not None:
            self.session.connection_lost(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True
        hook = getattr(self.session, "pause_writing", None)
        if hook is not None:
            hook()
        elif self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        hook = getattr(self.session, "resume_writing", None)
        if hook is not None:
            hook()
        elif self.transport is not None and not self.closed:
            self.transport.resume_reading()
        if self._regions:
            self._send_regions()

    # -- output ----------------------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Bytes queued for this client and not yet taken by the kernel."""
        buffered = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return self._out_size + buffered

    def write(self, data: bytes) -> None:
        """Queue bytes; they go out with everything else queued in this loop turn."""
        if self.closed or self._closing:
            return
        self._out.append(data)
        self._out_size += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand everything queued to the transport now (one syscall for the lot)."""
        self._flush_scheduled = False
        if not self._out or self.closed or self.transport is None:
            return
        out = self._out
        self.stats.bytes_out += self._out_size
        self._out = []
        self._out_size = 0
        if self._regions:
            # File regions are ahead of these bytes; keep order by queueing behind them.
            self._regions.extend(out)
            return
        if len(out) == 1:
            self.transport.write(out[0])
        else:
            self.transport.writelines(out)
        if self.pending_limit and self.transport.get_write_buffer_size() > self.pending_limit:
            self.session.slow_consumer()  # type: ignore[union-attr]

    def write_regions(self, regions: list[FileRegion]) -> None:
        """Send file regions (``Log.read``'s :class:`FileRegion` s) after what is queued.

        Uses ``os.sendfile`` on the socket while the transport's buffer is empty; whatever the kernel does
        not take at once is read with ``pread`` and written through the transport, keeping order.
        """
        if self.closed or self._closing or not regions:
            return
        self.flush()
        if self._regions is None:
            self._regions = []
        self._regions.extend(regions)
        self._send_regions()

    def _send_regions(self) -> None:
        """Drain the region queue: sendfile while the transport is empty; when the socket is full, wait
        until it is writable (:meth:`_wait_writable`) and sendfile the rest. Fallback when that cannot
        be used (no socket fd, sendfile refused): push pread chunks through the transport until it pauses
        us, then continue from ``resume_writing`` (the low-water mark is 0, so that means "buffer empty"
        and sendfile can take over again)."""
        queue = self._regions
        transport = self.transport
        if not queue or transport is None or self.closed:
            return
        sock = transport.get_extra_info("socket")
        fileno = sock.fileno() if sock is not None else -1
        while queue:
            if self.writing_paused:
                return  # resume_writing calls us again
            item = queue[0]
            if isinstance(item, (bytes, bytearray, memoryview)):
                transport.write(item)
                queue.pop(0)
                continue
            if fileno >= 0 and transport.get_write_buffer_size() == 0:
                try:
                    sent = send_region(fileno, item)
                except (OSError, RegionGoneError):
                    sent = -1  # a socket sendfile cannot serve, or a shrunk file: the pread path decides
                if sent >= 0:
                    self.stats.bytes_out += sent
                    if sent == item.size:
                        queue.pop(0)
                        continue
                    if sent:
                        item = queue[0] = item.advance(sent)
                    if self._wait_writable(fileno):
                        return  # the socket is full: _writable continues with sendfile
            chunk = os.pread(item.fd, min(PREAD_CHUNK, item.size), item.position)
            if not chunk:  # the file ended under us (segment truncated): nothing more to send from it
                queue.pop(0)
                continue
            transport.write(chunk)
            self.stats.bytes_out += len(chunk)
            if len(chunk) == item.size:
                queue.pop(0)
            else:
                queue[0] = item.advance(len(chunk))
        self._regions = None
        if self._closing:
            self.closed = True
            transport.close()

    def _wait_writable(self, fileno: int) -> bool:
        """Call :meth:`_writable` once the socket has room again; False if that cannot be arranged."""
        if self._wfd is not None:
            return True
        try:
            fd = os.dup(fileno)
        except OSError:
            return False
        try:
            self._loop.add_writer(fd, self._writable)
        except (OSError, RuntimeError, NotImplementedError, ValueError):
            os.close(fd)
            return False
        self._wfd = fd
        return True

    def _writable(self) -> None:
        self._stop_waiting()
        self._send_regions()

    def _stop_waiting(self) -> None:
        """Stop watching the socket's dup (before closing it, so the poller never sees a stale fd)."""
        fd = self._wfd
        if fd is not None:
            self._wfd = None
            self._loop.remove_writer(fd)
            os.close(fd)

    def close(self) -> None:
        """Flush what is queued, then close (the session's connection_lost follows)."""
        if self.closed or self._closing:
            return
        self.flush()
        if self._regions:
            self._closing = True  # _send_regions closes once the queued regions are out
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding queued output."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
