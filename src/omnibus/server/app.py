"""The broker's life on the event loop: storage services, listeners, connections, graceful stop.

Start order: lock the data dir (one broker per dir, ``fcntl.flock`` on ``.lock``), open the metadata store,
start the group-commit syncer (its callbacks come back through ``loop.call_soon_threadsafe``), then one
listener per protocol that has a session (see :data:`SESSIONS`) plus HTTP; ``ready`` turns true when all of
them accept connections.

Stop order (SIGTERM/SIGINT in the CLI, ``__aexit__`` when embedded): stop accepting, ask every session to
say goodbye in its protocol's words, wait for connections to go (at most ``shutdown_timeout``, then
abort), fsync and close every log, close the metadata store, unlock.

Rules: event-loop thread only. Every startup failure raises :class:`StartupError` with one line for a
human (the CLI prints it; no traceback).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import importlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

from omnibus.config import PROTOCOLS, Settings
from omnibus.core.auth import AccessControl, AuthConfigError
from omnibus.core.clock import SystemClock
from omnibus.core.vhost import DEFAULT_VHOST, VirtualHost, queue_log_name
from omnibus.server.metrics import Metrics
from omnibus.server.transport import Connection, ProtocolStats, SessionFactory
from omnibus.storage.log import Log, LogConfig
from omnibus.storage.meta import MetaStore
from omnibus.storage.sync import Syncer

__all__ = ["BrokerServer", "StartupError", "SESSIONS"]

#: Protocol name -> "module:Class" of its session. A protocol whose issue has not landed yet is absent
#: and simply gets no listener.
SESSIONS: dict[str, str] = {
    "kafka": "omnibus.server.kafka_session:KafkaSession",
    "amqp": "omnibus.server.amqp_session:AmqpSession",
    "nats": "omnibus.server.nats_session:NatsSession",
    "http": "omnibus.server.http_session:HttpSession",
}

#: Listen backlog; Linux caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
META_FILE = "meta.sqlite"
LOCK_FILE = ".lock"
LOGS_DIR = "logs"


class StartupError(Exception):
    """The broker cannot start; the message is one line for a human."""


class _LazySession:
    """A session factory that imports its module on first use (or at ``load``). The codecs and session
    modules cost ~200 ms of imports together; the broker reports ready once its sockets listen and
    loads them right after (``_warm_sessions``), so start-up stays well under the 0.5 s budget and a
    client that connects in between only waits for its own protocol's import."""

    __slots__ = ("spec", "cls")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.cls: SessionFactory | None = None

    def load(self) -> SessionFactory:
        if self.cls is None:
            module, _, name = self.spec.partition(":")
            self.cls = getattr(importlib.import_module(module), name)
        return self.cls

    def __call__(self, conn: Connection, server: "BrokerServer"):
        return (self.cls or self.load())(conn, server)


class BrokerServer:
    """One running broker. Event-loop thread only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.ready = False
        self.started_at = 0.0
        self.listeners: dict[str, tuple[str, int]] = {}
        self.stats: dict[str, ProtocolStats] = {}
        self.connections: set[Connection] = set()
        self.metrics = Metrics(self)
        self.meta: MetaStore | None = None
        self.syncer: Syncer | None = None
        self.logs: dict[str, Log] = {}
        #: AMQP virtual hosts (core); "/" always exists. NATS publishes meet AMQP queues on its amq.topic.
        self.vhosts: dict[str, VirtualHost] = {}
        #: AMQP users, vhosts and permissions (set at start).
        self.access: AccessControl | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._factories: list[_LazySession] = []
        #: Close hooks of protocol state kept outside ``logs`` (e.g. JetStream's consumer state); run on
        #: the loop thread (so no timer of theirs races them) before the logs close. Stop time only.
        self.closers: list = []
        self._lock_fd: int | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._retention_task: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            self._open_data_dir()
            self.syncer = Syncer(dispatch=loop.call_soon_threadsafe)
            self.syncer.start()
            try:  # AMQP users, vhosts and permissions (core/auth.py): the store made to match the settings
                a = self.settings.amqp
                self.access = AccessControl(self.meta)
                self.access.configure(default_user=a.default_user, default_pass=a.default_pass,
                                      default_vhost=a.default_vhost, users=a.users)
            except AuthConfigError as e:
                raise StartupError(str(e)) from None
            for name in [DEFAULT_VHOST] + [v for v in self.access.vhosts() if v != DEFAULT_VHOST]:
                try:
                    self._open_vhost(name)
                except Exception as e:  # corrupt metadata or an unreadable queue log
                    raise StartupError(f"cannot restore virtual host '{name}': {e}") from None
            for proto in PROTOCOLS:
                spec = SESSIONS.get(proto)
                if spec is not None:
                    factory = _LazySession(spec)
                    self._factories.append(factory)
                    await self._listen(proto, factory)
        except BaseException:
            await self._close_storage()
            for srv in self._servers:
                srv.close()
            raise
        self._retention_task = loop.create_task(self._retention_loop())
        self.ready = True
        loop.call_soon(self._warm_sessions)

    def _warm_sessions(self) -> None:
        """Import every protocol's session now that the listeners are up (see _LazySession), and call its
        ``server_started(server)`` if it has one (AMQP: timers of restored queues start without a client)."""
        for factory in self._factories:
            if not self._stopping:
                started = getattr(factory.load(), "server_started", None)
                if started is not None:
                    started(self)

    def _open_data_dir(self) -> None:
        d = self.data_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StartupError(f"data dir {d} is not usable: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StartupError(f"data dir {d} is in use by another omnibus process") from None
        self._lock_fd = fd
        try:
            probe = d / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
            self.meta = MetaStore(d / META_FILE)
        except OSError as e:
            raise StartupError(f"data dir {d} is not writable: {e.strerror}") from None
        except Exception as e:  # sqlite3 errors: corrupt or unreadable metadata
            raise StartupError(f"cannot open metadata store {d / META_FILE}: {e}") from None

    async def _listen(self, proto: str, factory: SessionFactory) -> None:
        host, port = self.settings.host, self.settings.port(proto)
        stats = self.stats.setdefault(proto, ProtocolStats())
        loop = asyncio.get_running_loop()
        try:
            srv = await loop.create_server(lambda: Connection(self, proto, factory, stats), host, port,
                                           reuse_address=True, backlog=LISTEN_BACKLOG)
        except OSError as e:
            why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise StartupError(f"cannot listen for {proto} on {host}:{port}: {why}") from None
        self._servers.append(srv)
        sockname = srv.sockets[0].getsockname()
        self.listeners[proto] = (sockname[0], sockname[1])

    async def stop(self) -> None:
        """Graceful stop; idempotent. Returns once storage is flushed and closed."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self.ready = False
        if self._retention_task is not None:
            self._retention_task.cancel()
        for srv in self._servers:
            srv.close()
        for conn in list(self.connections):
            session = conn.session
            try:
                if session is not None and hasattr(session, "shutdown"):
                    session.shutdown()
                else:
                    conn.close()
            except Exception:  # a broken session must not stop the shutdown
                conn.abort()
        deadline = time.monotonic() + self.settings.shutdown_timeout * 0.6
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.abort()
        for srv in self._servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 0.5)
            except (asyncio.TimeoutError, Exception):
                pass
        await self._close_storage()
        self._stopped.set()

    async def _close_storage(self) -> None:
        loop = asyncio.get_running_loop()
        vhosts, self.vhosts = list(self.vhosts.values()), {}
        logs, self.logs = list(self.logs.values()), {}
        syncer, self.syncer = self.syncer, None

        closers, self.closers = list(self.closers), []
        for closer in closers:
            closer()

        def close_all() -> None:  # blocks (fsync): runs in the default executor
            for vhost in vhosts:
                vhost.close()
            for log in logs:
                log.close()
            if syncer is not None:
                syncer.close()

        await loop.run_in_executor(None, close_all)
        if self.meta is not None:
            self.meta.close()
            self.meta = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # -- connections -----------------------------------------------------------------------------------
    def add_connection(self, conn: Connection) -> bool:
        if self._stopping or len(self.connections) >= self.settings.limits.max_connections:
            return False
        self.connections.add(conn)
        return True

    def remove_connection(self, conn: Connection) -> None:
        self.connections.discard(conn)

    # -- logs ------------------------------------------------------------------------------------------
    def log_config(self, **overrides: Any) -> LogConfig:
        st = self.settings.storage
        base = dict(segment_bytes=st.segment_bytes, segment_ms=st.segment_ms,
                    index_interval_bytes=st.index_interval_bytes, retention_ms=st.retention_ms,
                    retention_bytes=st.retention_bytes, fsync=st.fsync,
                    fsync_interval_ms=st.fsync_interval_ms)
        base.update(overrides)
        return LogConfig(**base)

    def open_log(self, name: str, **overrides: Any) -> Log:
        """Open (or create) the log ``logs/<name>`` with the broker's storage settings; cached by name.

        Blocks for recovery of that one log (fast after a clean stop: only past the recovery point).
        """
        log = self.logs.get(name)
        if log is None:
            log = Log.open(self.data_dir / LOGS_DIR / name, self.log_config(**overrides), syncer=self.syncer)
            self.logs[name] = log
        return log

    def open_unbounded_log(self, name: str, **overrides: Any) -> Log:
        """A log that time/size retention never trims: queues and JetStream streams decide themselves
        what to remove (acks, stream limits); only Kafka topics use the broker's retention settings.
        ``overrides`` (AMQP stream queues: their x-max-age / x-max-length-bytes) win."""
        return self.open_log(name, **{"retention_ms": -1, "retention_bytes": -1, **overrides})

    def delete_log(self, name: str) -> None:
        """Close (if open) and remove the log ``logs/<name>``. Blocks briefly."""
        log = self.logs.pop(name, None)
        if log is not None:
            log.delete()
        else:
            shutil.rmtree(self.data_dir / LOGS_DIR / name, ignore_errors=True)

    def _open_vhost(self, name: str) -> VirtualHost:
        vhost = VirtualHost(name, open_log=self.open_unbounded_log, delete_log=self.delete_log, meta=self.meta,
                            clock=SystemClock(), transient_log={"fsync": "never"})
        prefix = queue_log_name(name, "x").rsplit("/", 1)[0]
        root = self.data_dir / LOGS_DIR / prefix
        on_disk = [f"{prefix}/{p.name}" for p in root.iterdir()] if root.is_dir() else []
        vhost.restore(on_disk)
        self.vhosts[name] = vhost
        return vhost

    async def _retention_loop(self) -> None:
        interval = self.settings.storage.retention_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            for log in list(self.logs.values()):
                log.enforce_retention()

    # -- facts for the CLI and the embedded API --------------------------------------------------------
    def address(self, proto: str) -> tuple[str, int] | None:
        return self.listeners.get(proto)

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at
