"""Log against a plain-Python model under random operations, including crashes (Hypothesis stateful)."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from omnibus.storage import Log, LogConfig, OffsetOutOfRangeError, Record, Syncer, decode_records, validate_batch

from .util import ManualClock


def crash(log: Log) -> None:
    """Stop using a log the way SIGKILL would: no flush, no recovery point, fds just closed."""
    with log._round_lock:
        with log._lock:
            log._closed = True
        for seg in log._segments:
            seg.close()
    log.syncer._unregister(log)


class LogModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="omnibus-model-")
        self.syncer = Syncer()
        self.syncer.start()
        self.clock = ManualClock(1_000_000)
        self.cfg = LogConfig(fsync="never", segment_bytes=1500, index_interval_bytes=200, file_delete_delay_ms=0)
        self.log = Log.open(self.dir, self.cfg, syncer=self.syncer, clock=self.clock)
        self.values: list[bytes] = []  # offset -> value
        self.timestamps: list[int] = []
        self.start = 0

    def teardown(self) -> None:
        self.log.close()
        self.syncer.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(n=st.integers(1, 6), size=st.integers(0, 400))
    def append(self, n, size):
        base = len(self.values)
        self.clock.advance(7)
        recs = [Record(None, b"%d." % (base + i) + b"x" * size, (), self.clock.now + i) for i in range(n)]
        r = self.log.append_records(recs)
        assert (r.base_offset, r.last_offset) == (base, base + n - 1)
        self.values += [rec.value for rec in recs]
        self.timestamps += [rec.timestamp_ms for rec in recs]

    @rule()
    def roll(self):
        self.log.roll()

    @rule()
    def reopen(self):
        self.log.close()
        self.log = Log.open(self.dir, self.cfg, syncer=self.syncer, clock=self.clock)
        assert self.log.load_result.recovered_segments == 0

    @rule()
    def crash_and_recover(self):
        crash(self.log)
        self.log = Log.open(self.dir, self.cfg, syncer=self.syncer, clock=self.clock)
        assert self.log.load_result.truncated_bytes == 0  # the page cache kept everything

    @precondition(lambda self: self.values)
    @rule(data=st.data())
    def delete_records(self, data):
        upto = data.draw(st.integers(0, len(self.values)))
        self.start = max(self.start, upto)
        assert self.log.delete_records(upto) == self.start

    @precondition(lambda self: self.values)
    @rule(data=st.data(), max_bytes=st.integers(1, 3000))
    def read(self, data, max_bytes):
        offset = data.draw(st.integers(self.start, len(self.values)))
        raw = self.log.read_bytes(offset, max_bytes)
        if offset == len(self.values):
            assert raw == b""
            return
        pos, first = 0, True
        while pos < len(raw):
            h = validate_batch(raw, pos)
            if first:
                assert h.base_offset <= offset <= h.last_offset
                first = False
            for off, rec in decode_records(memoryview(raw)[pos : pos + h.size]):
                assert rec.value == self.values[off]
            pos += h.size
        assert pos == len(raw)

    @rule(ts=st.integers(999_000, 1_300_000))
    def time_lookup(self, ts):
        expect = next((o for o in range(self.start, len(self.values)) if self.timestamps[o] >= ts), None)
        assert self.log.offset_for_timestamp(ts) == expect

    @rule(offset=st.integers(-3, 0))
    def out_of_range(self, offset):
        try:
            self.log.read(self.start + offset - 1, 100)
        except OffsetOutOfRangeError:
            pass
        else:
            raise AssertionError("read below the start offset must fail")

    @invariant()
    def offsets(self):
        assert self.log.end_offset == len(self.values)
        assert self.log.start_offset == self.start


TestLogModel = LogModel.TestCase
TestLogModel.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
