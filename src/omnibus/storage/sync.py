"""Group commit: one worker thread fsyncs every log that asked for durability (design decision 3).

Strategy
    Appends never fsync. A log with unsynced data calls :meth:`Syncer._request` once (a per-log flag
    keeps it to one request per round); the worker wakes when the request is due, runs one sync round
    for the log (``Log._sync_round``: capture the end offset, fdatasync, advance ``durable_offset``, pop
    the satisfied ``when_durable`` callbacks) and hands the callbacks to ``dispatch`` in one call.

    * ``always``: due at once. Appends that arrive while an fsync runs set the flag again and are covered
      by the next fsync: one fsync per group of waiting appenders, never one per append.
    * ``interval``: due ``fsync_interval_ms`` after the first unsynced append; one fsync per interval.
    * ``never``: no requests for data (only for sealing rolled segments); callbacks run inline.

    Rolled segments are sealed here too (data and indexes fsynced, then the recovery point advanced),
    and deleted segments are closed and unlinked here after their delay, off the event loop.

Rules
    * ``dispatch(fn, *args)`` runs completion callbacks on the owner's thread, e.g. an asyncio loop's
      ``call_soon_threadsafe``. With ``dispatch=None`` callbacks run on the syncer thread.
    * A callback that raises is logged (error path only) and does not stop the worker.
    * After :meth:`close`, requests run their round inline on the caller's thread (shutdown only).

Concurrency: thread-safe. ``start``/``close`` block (close: a final fsync of every dirty log, then join).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Callable

from . import stats

__all__ = ["Syncer"]

log = logging.getLogger(__name__)

#: Longest the worker sleeps with nothing due; only bounds how long a missed wake-up could last.
IDLE_WAIT_S = 1.0


def _run_callbacks(callbacks) -> None:
    for cb in callbacks:
        try:
            cb()
        except Exception:  # noqa: BLE001 - a broken callback must not take the others down
            log.exception("durability callback failed")


class Syncer:
    """One worker thread doing fsyncs (os.fdatasync) for every log that has a pending durability
    request. thread-safe."""

    def __init__(self, dispatch: Callable[..., None] | None = None) -> None:
        self._dispatch = dispatch
        self._cond = threading.Condition(threading.Lock())
        self._pending: dict = {}  # Log -> monotonic due time
        self._destroy: list = []  # (monotonic due time, LogSegment)
        self._logs: weakref.WeakSet = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._count_lock = threading.Lock()
        self.fsync_count = 0  #: total fsyncs done for this syncer's logs (metrics)
        self.rounds = 0  #: sync rounds run
        self.errors = 0  #: rounds that failed with an I/O error (the log is then failed)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="omnibus-syncer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Final fsync of every dirty log, destroy pending deleted segments, join the worker."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        else:
            self._final()
        self._closed = True

    def __enter__(self) -> "Syncer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- called by logs -------------------------------------------------------------------------------

    def _register(self, log_) -> None:
        with self._cond:
            self._logs.add(log_)

    def _unregister(self, log_) -> None:
        with self._cond:
            self._logs.discard(log_)
            self._pending.pop(log_, None)

    def _request(self, log_, delay_s: float) -> None:
        """Ask for a sync round of ``log_`` within ``delay_s`` seconds."""
        due = time.monotonic() + delay_s
        with self._cond:
            if not self._closing:
                prev = self._pending.get(log_)
                if prev is None or due < prev:
                    self._pending[log_] = due
                    self._cond.notify()
                return
        log_._sync_round(force=False)  # closed or closing: do it here

    def _schedule_destroy(self, segment, delay_s: float) -> None:
        with self._cond:
            if not self._closing:
                self._destroy.append((time.monotonic() + delay_s, segment))
                self._cond.notify()
                return
        segment.destroy()

    def _deliver(self, callbacks: list) -> None:
        if self._dispatch is None:
            _run_callbacks(callbacks)
        else:
            self._dispatch(_run_callbacks, callbacks)

    def _count(self, fsyncs: int, *, error: bool = False) -> None:
        with self._count_lock:
            self.fsync_count += fsyncs
            self.rounds += 1
            if error:
                self.errors += 1
        stats.add_fsyncs(fsyncs)

    # -- worker ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while True:
                    now = time.monotonic()
                    due = [lg for lg, t in self._pending.items() if t <= now]
                    gone = [seg for t, seg in self._destroy if t <= now]
                    if due or gone or self._closing:
                        break
                    deadline = min(
                        [*self._pending.values(), *(t for t, _ in self._destroy)], default=now + IDLE_WAIT_S
                    )
                    cond.wait(max(deadline - now, 0.0))
                for lg in due:
                    del self._pending[lg]
                if gone:
                    self._destroy = [(t, s) for t, s in self._destroy if t > now]
                closing = self._closing
            for lg in due:
                self._round(lg)
            for seg in gone:
                self._destroy_segment(seg)
            if closing:
                break
        self._final()

    def _round(self, lg) -> None:
        try:
            lg._sync_round(force=False)
        except Exception:  # noqa: BLE001 - keep the worker alive for the other logs
            log.exception("sync round failed for %r", lg)

    @staticmethod
    def _destroy_segment(seg) -> None:
        try:
            seg.destroy()
        except OSError:
            log.exception("could not delete segment %r", seg)

    def _final(self) -> None:
        with self._cond:
            self._closing = True
            logs = list(self._logs)
            self._pending.clear()
            gone = [seg for _, seg in self._destroy]
            self._destroy = []
        for lg in logs:
            if not lg.closed and lg.failure is None:
                try:
                    lg._sync_round(force=True)
                except Exception:  # noqa: BLE001
                    log.exception("final sync failed for %r", lg)
        for seg in gone:
            self._destroy_segment(seg)
