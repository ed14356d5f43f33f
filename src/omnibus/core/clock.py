"""Time for the core, injected so expiry, TTL and retention are tested without sleeping.

Strategy: the core never calls ``time`` itself. Every object that needs time takes a ``Clock``
(constructor argument) and asks it. Two readings, because they answer different questions:

* ``now_ms()``: wall-clock milliseconds since the Unix epoch. Goes into records (timestamps,
  Kafka ``CreateTime``/``LogAppendTime``, AMQP ``timestamp``) and into retention by age. It may jump
  (NTP, operator), so never use it to measure a duration.
* ``monotonic()``: seconds as a float from an arbitrary origin, never going backwards. Use it for
  durations: consumer timeouts, heartbeats, session expiry, rate windows.

``ManualClock`` moves both readings together, only when a test calls ``advance``.

Concurrency: clocks are plain reads; ``SystemClock`` is safe from any thread, ``ManualClock`` is
meant for the single test thread (event-loop thread only).
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "ManualClock", "MANUAL_CLOCK_EPOCH_MS"]

# Where a ManualClock starts by default: 2023-11-14T22:13:20Z. A realistic, fixed wall-clock value
# (not 0) so code that treats 0 or small timestamps as "unset" is exercised the way production is.
MANUAL_CLOCK_EPOCH_MS = 1_700_000_000_000


@runtime_checkable
class Clock(Protocol):
    """What the core needs from time. See the module docstring for which reading to use."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch (may jump; not for durations)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never decreases (for durations and deadlines)."""
        ...


class SystemClock:
    """The real clock: ``time.time_ns`` and ``time.monotonic``. Thread-safe."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to: ``advance(ms)`` moves both readings by ``ms``.

    ``set_now_ms`` moves only the wall clock (simulating an NTP step, forwards or backwards) so code
    can be tested for using the right reading. Event-loop (test) thread only.
    """

    __slots__ = ("_now_ms", "_monotonic")

    def __init__(self, now_ms: int = MANUAL_CLOCK_EPOCH_MS, monotonic: float = 0.0) -> None:
        self._now_ms = int(now_ms)
        self._monotonic = float(monotonic)

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, ms: int | float) -> None:
        """Move both readings forward by ``ms`` milliseconds (must not be negative)."""
        if ms < 0:
            raise ValueError(f"a clock cannot go backwards: advance({ms})")
        self._now_ms += int(ms)
        self._monotonic += ms / 1000.0

    def set_now_ms(self, now_ms: int) -> None:
        """Step the wall clock only (either direction), as NTP or an operator may do."""
        self._now_ms = int(now_ms)

    def __repr__(self) -> str:
        return f"ManualClock(now_ms={self._now_ms}, monotonic={self._monotonic})"
