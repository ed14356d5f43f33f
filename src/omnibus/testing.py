"""pytest plugin (registered through the ``pytest11`` entry point): an Omnibus broker per test.

Fixtures:
- ``omnibus_broker`` — a :class:`omnibus.SyncBroker` on free 127.0.0.1 ports with a fresh data dir under
  the test's ``tmp_path``, stopped after the test. It runs on its own thread, so it serves sync tests and
  async tests (whatever their loop) alike: clients just connect to ``omnibus_broker.nats_url`` etc.
- ``omnibus_broker_factory`` — call it (with settings as keyword arguments) to start more brokers in one
  test, e.g. to restart one on the same ``data_dir``; all are stopped after the test.

Set ``@pytest.mark.omnibus(fsync="always")``-style options with the marker ``omnibus``: its keyword
arguments are passed as settings (``storage__fsync="always"`` for a sectioned setting).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:  # imported lazily: loading the plugin must not pull in the server for every pytest run
    from omnibus.embedded import SyncBroker

__all__ = ["omnibus_broker", "omnibus_broker_factory"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "omnibus(**settings): settings for the omnibus_broker fixture")


def _marker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("omnibus")
    if marker is None:
        return {}
    return {k.replace("__", "."): v for k, v in marker.kwargs.items()}


@pytest.fixture
def omnibus_broker_factory(tmp_path_factory: pytest.TempPathFactory,
                           request: pytest.FixtureRequest) -> Iterator[Callable[..., "SyncBroker"]]:
    from omnibus.embedded import SyncBroker

    started: list[SyncBroker] = []
    defaults = _marker_settings(request)

    def start(data_dir: Any = None, **settings: Any) -> SyncBroker:
        if data_dir is None:
            data_dir = tmp_path_factory.mktemp("omnibus")
        merged = {**defaults, **{k.replace("__", "."): v for k, v in settings.items()}}
        broker = SyncBroker(data_dir, settings=merged).start()
        started.append(broker)
        return broker

    yield start
    for broker in reversed(started):
        broker.stop()


@pytest.fixture
def omnibus_broker(omnibus_broker_factory: Callable[..., "SyncBroker"]) -> "SyncBroker":
    return omnibus_broker_factory()
