"""Fixtures for tests that speak NATS to a real broker: Omnibus by default, or nats-server for reference.

The spec for the NATS tests is "clients work unchanged and the broker behaves as nats-server does", so
every NATS test is written to pass against the real nats-server too. ``OMNIBUS_TEST_AGAINST`` picks the
broker:

- unset or ``omnibus`` (CI): an in-process :class:`omnibus.SyncBroker` per target, fresh data dir.
- ``nats-server``: a ``nats-server -a 127.0.0.1 -p PORT -c <generated config>`` child process
  (``apt-get install nats-server``; ``$NATS_SERVER`` names another binary).

Fixtures:
- ``nats_target_factory(**conf)`` starts a broker and returns a :class:`NatsTarget` (``url``, ``port``,
  ``host``, ``kind``, ``restart()``, ``rss()``); all are stopped after the test. ``conf`` uses one set of
  names for both brokers (see :data:`OMNIBUS_KEYS`): ``max_payload``, ``max_pending``,
  ``ping_interval_s``, ``max_pings_out``, ``user``/``password``, ``token``, ``users``.
- ``nats_target``: a default broker; ``nats_url``: its URL.

``tests/server/test_nats_raw.py`` imports these fixtures from here.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from bench._servers import NatsServer, free_port, nats_server_binary, rss_of

__all__ = ["AGAINST", "NatsTarget", "nats_target_factory", "nats_target", "nats_url", "bounded"]

#: Which broker the NATS tests run against: "omnibus" (default) or "nats-server".
AGAINST = os.environ.get("OMNIBUS_TEST_AGAINST", "omnibus").strip().lower() or "omnibus"
if AGAINST not in ("omnibus", "nats-server"):
    raise pytest.UsageError(f"OMNIBUS_TEST_AGAINST={AGAINST!r}: expected 'omnibus' or 'nats-server'")

#: Our neutral option names -> Omnibus settings keys. The ``nats.*`` keys mirror nats-server's options and
#: ``authorization`` block: ``users`` is a list of ``{user, password, permissions: {publish: {allow: [...],
#: deny: [...]}, subscribe: {...}}}``.
OMNIBUS_KEYS = {
    "max_payload": "limits.max_payload",
    "max_pending": "limits.max_pending_bytes",
    "ping_interval_s": "nats.ping_interval_s",
    "max_pings_out": "nats.max_pings_out",
    "user": "nats.user",
    "password": "nats.password",
    "token": "nats.token",
    "users": "nats.users",
}

#: Options only nats-server has. ``write_deadline_s``: nats-server (2.9: 10 s) also drops a slow consumer
#: whose socket write blocks that long, and stalls its publishers meanwhile; Omnibus drops on
#: ``max_pending`` alone and never slows a publisher.
NATS_SERVER_ONLY = {"write_deadline_s"}


def bounded(seconds: float) -> Callable:
    """Decorator for async tests: fail (instead of hanging) when the body takes longer than ``seconds``."""
    import asyncio

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            deadline = asyncio.timeout(seconds)
            try:
                async with deadline:
                    return await fn(*args, **kwargs)
            except TimeoutError:
                if deadline.expired():  # ours; a client's own timeout error passes through as itself
                    pytest.fail(f"{fn.__name__} took more than {seconds}s")
                raise
        return run
    return wrap


class NatsTarget:
    """A running NATS broker for one test. ``kind`` is "omnibus" or "nats-server"."""

    kind: str
    host = "127.0.0.1"
    port: int

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> "NatsTarget":
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop the broker, then start a new one on the same port (Omnibus: on the same data dir)."""
        self.stop()
        self.start()

    def rss(self) -> int:
        """Resident bytes of the broker's process (for Omnibus, in-process: this test process)."""
        raise NotImplementedError

    def close(self) -> None:
        self.stop()


class OmnibusTarget(NatsTarget):
    kind = "omnibus"

    def __init__(self, data_dir: Path, conf: dict[str, Any]) -> None:
        conf = {k: v for k, v in conf.items() if k not in NATS_SERVER_ONLY}
        unknown = set(conf) - set(OMNIBUS_KEYS)
        if unknown:
            raise TypeError(f"unknown NATS target options: {sorted(unknown)}")
        self.data_dir = data_dir
        self.settings = {OMNIBUS_KEYS[k]: v for k, v in conf.items() if v is not None}
        self.port = 0
        self.broker = None

    def start(self) -> "OmnibusTarget":
        from omnibus import SyncBroker

        self.broker = SyncBroker(self.data_dir, settings={**self.settings, "nats_port": self.port}).start()
        try:
            self.port = self.broker.port("nats")
        except BaseException:
            self.broker.stop()
            self.broker = None
            raise
        return self

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def rss(self) -> int:
        return rss_of(os.getpid())


class NatsServerTarget(NatsTarget):
    kind = "nats-server"

    def __init__(self, conf: dict[str, Any]) -> None:
        binary = nats_server_binary()
        if binary is None:
            pytest.fail("OMNIBUS_TEST_AGAINST=nats-server but nats-server is not installed: "
                        "apt-get install -y nats-server (or set NATS_SERVER=/path/to/nats-server)")
        self.server = NatsServer(free_port(), binary=binary, **conf)
        self.port = self.server.port

    def start(self) -> "NatsServerTarget":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def rss(self) -> int:
        assert self.server.proc is not None
        return rss_of(self.server.proc.pid)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def nats_target_factory() -> Iterator[Callable[..., NatsTarget]]:
    started: list[NatsTarget] = []
    tmp_dirs: list[str] = []

    def start(**conf: Any) -> NatsTarget:
        if AGAINST == "nats-server":
            target: NatsTarget = NatsServerTarget(conf)
        else:
            d = tempfile.mkdtemp(prefix="omnibus-nats-")
            tmp_dirs.append(d)
            target = OmnibusTarget(Path(d), conf)
        started.append(target)
        return target.start()

    yield start
    for target in reversed(started):
        target.close()
    for d in tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nats_target(nats_target_factory: Callable[..., NatsTarget]) -> NatsTarget:
    return nats_target_factory()


@pytest.fixture
def nats_url(nats_target: NatsTarget) -> str:
    return nats_target.url
