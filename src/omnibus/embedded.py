"""Embedded brokers: run Omnibus inside your own process, for tests and tools.

``Broker`` runs on the caller's event loop (``async with Broker() as b``); ``SyncBroker`` runs a private
loop in a daemon thread for code without one (``with SyncBroker() as b``). Both default to free ports on
127.0.0.1 and, without ``data_dir``, to a fresh temporary directory removed on exit.

Addresses are exposed the way each protocol's clients want them: ``kafka_bootstrap`` ("host:port"),
``amqp_url`` ("amqp://guest:guest@host:port/"), ``nats_url`` ("nats://host:port"), ``http_url``. Asking
for a protocol this build has no listener for raises :class:`ProtocolUnavailableError`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from omnibus.config import Settings, load_settings
from omnibus.server.app import BrokerServer

__all__ = ["Broker", "SyncBroker", "ProtocolUnavailableError"]

#: How long SyncBroker waits for its thread to start or stop the broker.
THREAD_TIMEOUT = 30.0


class ProtocolUnavailableError(RuntimeError):
    """The broker has no listener for this protocol (not enabled, or not in this build yet)."""


def _settings(data_dir: str | Path | None, tmp: list[str], config: str | None, overrides: dict[str, Any],
              ) -> Settings:
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="omnibus-")
        tmp.append(data_dir)
    values: dict[str, Any] = {"data_dir": str(data_dir), "kafka_port": 0, "amqp_port": 0, "nats_port": 0,
                              "http_port": 0,
                              # Embedded brokers (and the pytest fixture) start consumer groups at once; Kafka waits 3 s.
                              "kafka.group_initial_rebalance_delay_ms": 0}
    values.update(overrides)
    return load_settings(config, environ={}, overrides=values)


class _Addresses:
    """Client-facing addresses of a started broker."""

    server: BrokerServer | None

    def _addr(self, proto: str) -> tuple[str, int]:
        if self.server is None:
            raise RuntimeError("the broker is not running")
        addr = self.server.address(proto)
        if addr is None:
            raise ProtocolUnavailableError(f"this broker has no {proto} listener")
        return addr

    @staticmethod
    def _host(host: str) -> str:
        return f"[{host}]" if ":" in host else host

    @property
    def kafka_bootstrap(self) -> str:
        host, port = self._addr("kafka")
        return f"{self._host(host)}:{port}"

    @property
    def amqp_url(self) -> str:
        host, port = self._addr("amqp")
        return f"amqp://guest:guest@{self._host(host)}:{port}/"

    @property
    def nats_url(self) -> str:
        host, port = self._addr("nats")
        return f"nats://{self._host(host)}:{port}"

    @property
    def http_url(self) -> str:
        host, port = self._addr("http")
        return f"http://{self._host(host)}:{port}"

    def port(self, proto: str) -> int:
        return self._addr(proto)[1]

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)


class Broker(_Addresses):
    """An Omnibus broker on the running event loop.

    ``Broker(data_dir=None, *, config=None, **settings)``: settings use the config names (``kafka_port``,
    ``host``, and ``"storage.fsync"`` style keys via ``settings={...}``). Ports default to 0 (free port).
    """

    def __init__(self, data_dir: str | Path | None = None, *, config: str | None = None,
                 settings: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._tmp: list[str] = []
        self.settings = _settings(data_dir, self._tmp, config, {**(settings or {}), **kwargs})
        self.server: BrokerServer | None = None

    async def start(self) -> "Broker":
        self.server = BrokerServer(self.settings)
        try:
            await self.server.start()
        except BaseException:
            self._cleanup()
            raise
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        for d in self._tmp:
            shutil.rmtree(d, ignore_errors=True)
        self._tmp.clear()

    async def __aenter__(self) -> "Broker":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class SyncBroker(_Addresses):
    """An Omnibus broker on its own event loop in a daemon thread, for synchronous code."""

    def __init__(self, data_dir: str | Path | None = None, *, config: str | None = None,
                 settings: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._inner = Broker(data_dir, config=config, settings=settings, **kwargs)
        self.settings = self._inner.settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def server(self) -> BrokerServer | None:  # type: ignore[override]
        return self._inner.server

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "not started"
        return self._loop

    def start(self) -> "SyncBroker":
        from omnibus.server.loop import new_event_loop

        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = self._loop = new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._inner.start())
            except BaseException as e:  # hand the failure to the caller's thread
                errors.append(e)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="omnibus-broker", daemon=True)
        self._thread.start()
        if not started.wait(THREAD_TIMEOUT):
            raise TimeoutError("the broker did not start in time")
        if errors:
            self._thread.join(THREAD_TIMEOUT)
            raise errors[0]
        return self

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the broker's loop and return its result (for tests poking at the broker)."""
        async def go() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(THREAD_TIMEOUT)

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._inner.stop(), self._loop)
        try:
            fut.result(THREAD_TIMEOUT)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREAD_TIMEOUT)
            self._thread = None

    def __enter__(self) -> "SyncBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
