"""Helpers shared by the storage tests: real batches, manual clocks, waiting for a condition."""

from __future__ import annotations

import time

from omnibus.storage.records import Record, build_batch


def batch(n: int = 3, *, size: int = 50, ts: int = 1_000, key: bytes | None = b"k", tag: int = 0) -> bytes:
    """A real v2 batch of ``n`` records whose values encode (tag, index) so tests can check content."""
    return build_batch(
        [Record(key, b"%d:%d:" % (tag, i) + b"v" * size, (("h", b"x"),), ts + i) for i in range(n)]
    )


class ManualClock:
    """An injected clock (ms) that only moves when told."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
