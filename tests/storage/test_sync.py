"""Durability policies and group commit (omnibus.storage.sync)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from omnibus.storage import Log, LogConfig, Syncer, stats
from omnibus.storage.loader import RECOVERY_POINT_FILE, read_offset_file

from .util import batch, wait_for


class RecordingDispatch:
    """A dispatch that runs callbacks on the calling (syncer) thread but notes each call, like
    loop.call_soon_threadsafe would hand them over."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[str] = set()

    def __call__(self, fn, *args) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        fn(*args)


def test_never_calls_back_inline(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="never"), syncer=syncer)
        r = log.append(batch(2))
        before = syncer.fsync_count
        called = []
        log.when_durable(r.last_offset, lambda: called.append(threading.current_thread()))
        assert called == [threading.current_thread()]
        assert log.durable_offset == log.end_offset == 2
        time.sleep(0.05)
        assert syncer.fsync_count == before  # the worker never fsyncs data under "never"
        log.close()


def test_always_calls_back_only_after_fsync(tmp_path):
    dispatch = RecordingDispatch()
    with Syncer(dispatch) as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="always"), syncer=syncer)
        seen = []
        r = log.append(batch(2))

        def cb():
            # At callback time the fsync that covers the offset has happened.
            seen.append((log.durable_offset, syncer.fsync_count))

        log.when_durable(r.last_offset, cb)
        assert wait_for(lambda: seen)
        durable, fsyncs = seen[0]
        assert durable > r.last_offset and fsyncs >= 1
        assert dispatch.calls >= 1 and dispatch.threads == {"omnibus-syncer"}
        # Already durable: inline.
        inline = []
        log.when_durable(r.last_offset, lambda: inline.append(1))
        assert inline == [1]
        log.close()


def test_interval_waits_for_the_interval(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="interval", fsync_interval_ms=300), syncer=syncer)
        fired = threading.Event()
        t0 = time.monotonic()
        r = log.append(batch(1))
        log.when_durable(r.last_offset, fired.set)
        time.sleep(0.1)
        assert not fired.is_set() and log.durable_offset == 0
        assert fired.wait(5)
        assert time.monotonic() - t0 >= 0.28
        assert log.durable_offset == 1
        log.close()


def test_group_commit_many_appends_few_fsyncs(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="always"), syncer=syncer)
        done = []
        lock = threading.Lock()
        n = 3000
        data = batch(1, size=100)
        before = syncer.rounds
        for _ in range(n):
            r = log.append(data)
            log.when_durable(r.last_offset, lambda o=r.last_offset: done.append(o))
        assert wait_for(lambda: len(done) == n, timeout=20)
        rounds = syncer.rounds - before
        assert rounds < n / 2, f"{rounds} fsync rounds for {n} appends"
        with lock:
            assert sorted(done) == list(range(n))
        log.close()


def test_appends_during_an_fsync_share_the_next_one(tmp_path):
    """Deterministic group commit: while a round is in progress (we hold it, as a slow fsync would),
    every append joins the one pending request; one more round then covers them all."""
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="always"), syncer=syncer)
        done = []
        r = log.append(batch(1))
        log.when_durable(r.last_offset, lambda: done.append(0))
        assert wait_for(lambda: done)
        before = syncer.rounds
        with log._round_lock:  # the worker's next round blocks here, like a long fdatasync
            for _ in range(500):
                r = log.append(batch(1))
                log.when_durable(r.last_offset, lambda o=r.last_offset: done.append(o))
            time.sleep(0.05)
            assert len(done) == 1
        assert wait_for(lambda: len(done) == 501)
        assert syncer.rounds - before <= 2
        log.close()


def test_callbacks_fire_in_offset_order_within_a_round(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="interval", fsync_interval_ms=50), syncer=syncer)
        order = []
        for _ in range(5):
            log.append(batch(1))
        for off in (4, 0, 2, 1, 3):
            log.when_durable(off, lambda o=off: order.append(o))
        assert wait_for(lambda: len(order) == 5)
        assert order == [0, 1, 2, 3, 4]
        log.close()


def test_flush_is_synchronous_and_fires_waiters(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="interval", fsync_interval_ms=60_000), syncer=syncer)
        fired = []
        r = log.append(batch(1))
        log.when_durable(r.last_offset, lambda: fired.append(1))
        log.flush()
        assert fired == [1] and log.durable_offset == 1
        assert read_offset_file(os.path.join(log.path, RECOVERY_POINT_FILE)) == 1
        log.close()


def test_syncer_close_does_a_final_fsync(tmp_path):
    syncer = Syncer()
    syncer.start()
    log = Log.open(tmp_path / "log", LogConfig(fsync="interval", fsync_interval_ms=60_000), syncer=syncer)
    fired = []
    r = log.append(batch(1))
    log.when_durable(r.last_offset, lambda: fired.append(1))
    syncer.close()
    assert fired == [1]
    # After the syncer is gone, requests are served inline.
    r = log.append(batch(1))
    assert log.durable_offset == 2
    log.close()


def test_roll_seals_old_segment_in_the_worker(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="never"), syncer=syncer)
        log.append(batch(2))
        log.roll()
        log.append(batch(2))
        rp = os.path.join(log.path, RECOVERY_POINT_FILE)
        assert wait_for(lambda: read_offset_file(rp) == 2)  # advanced to the new active segment
        assert os.path.exists(os.path.join(log.path, "00000000000000000000.index"))
        log.close()
        assert read_offset_file(rp) == 4


def test_private_syncer_when_none_given(tmp_path):
    log = Log.open(tmp_path / "log", LogConfig(fsync="always"))
    fired = threading.Event()
    threads = []
    r = log.append(batch(1))
    log.when_durable(r.last_offset, lambda: (threads.append(threading.current_thread().name), fired.set()))
    assert fired.wait(5)
    assert threads == ["omnibus-syncer"]  # dispatch=None: callbacks on the private syncer thread
    private = log.syncer
    log.close()
    assert private._closed


def test_many_logs_share_one_syncer(tmp_path):
    with Syncer() as syncer:
        logs = [Log.open(tmp_path / f"log{i}", LogConfig(fsync="always"), syncer=syncer) for i in range(5)]
        done = []
        for lg in logs:
            r = lg.append(batch(1))
            lg.when_durable(r.last_offset, lambda p=lg.path: done.append(p))
        assert wait_for(lambda: len(done) == 5)
        for lg in logs:
            lg.close()


def test_stats_counters(tmp_path):
    a0, b0, f0 = stats.appends, stats.bytes_appended, stats.fsyncs
    data = batch(2)
    log = Log.open(tmp_path / "log", LogConfig(fsync="always"))
    log.append(data)
    log.flush()
    assert stats.appends == a0 + 1 and stats.bytes_appended == b0 + len(data)
    assert stats.fsyncs > f0
    log.close()


def test_callback_errors_do_not_stop_the_worker(tmp_path):
    with Syncer() as syncer:
        log = Log.open(tmp_path / "log", LogConfig(fsync="always"), syncer=syncer)
        ok = threading.Event()
        r = log.append(batch(1))
        log.when_durable(r.last_offset, lambda: 1 / 0)
        log.when_durable(r.last_offset, ok.set)
        assert ok.wait(5)
        r = log.append(batch(1))
        again = threading.Event()
        log.when_durable(r.last_offset, again.set)
        assert again.wait(5)
        log.close()


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_asyncio_dispatch(tmp_path, policy):
    import asyncio

    async def main():
        loop = asyncio.get_running_loop()
        syncer = Syncer(loop.call_soon_threadsafe)
        syncer.start()
        log = Log.open(tmp_path / "log", LogConfig(fsync=policy), syncer=syncer)
        fut = loop.create_future()
        r = log.append(batch(1))
        log.when_durable(r.last_offset, lambda: fut.set_result(threading.current_thread()))
        thread = await asyncio.wait_for(fut, 5)
        log.close()
        syncer.close()
        return thread

    assert asyncio.run(main()) is threading.main_thread()
