"""core/stream_queues.py: offsets resolved as RabbitMQ's x-stream-offset specs, reads by offset, and
retention (x-max-age through the log, x-max-length-bytes as osiris_log eval_max_bytes)."""

from __future__ import annotations

import pytest

from omnibus.core.clock import ManualClock
from omnibus.core.messages import Message
from omnibus.core.stream_queues import StreamQueue, is_stream, log_overrides, parse_max_age
from omnibus.storage import Log, LogConfig


def open_stream(path, clock, arguments=None, **config):
    args = dict(arguments or {})
    over = log_overrides(args)
    over.update(config)
    log = Log.open(path, LogConfig(fsync="never", **over), clock=clock.now_ms)
    return StreamQueue("s", log, clock, arguments=args)


def msgs(*bodies):
    return [Message("k", b) for b in bodies]


@pytest.mark.parametrize("text,ms", [("7D", 7 * 86_400_000), ("1Y", 365 * 86_400_000), ("2M", 60 * 86_400_000),
                                     ("12h", 12 * 3_600_000), ("30m", 1_800_000), ("1s", 1000),
                                     (b"5s", 5000), ("0s", None), ("1d", None), ("s", None), ("1.5h", None),
                                     ("", None), (10, None)])
def test_parse_max_age(text, ms):
    assert parse_max_age(text) == ms


def test_log_overrides_and_type():
    assert is_stream({"x-queue-type": "stream"}) and is_stream({"x-queue-type": b"stream"})
    assert not is_stream({"x-queue-type": "quorum"}) and not is_stream(None)
    o = log_overrides({"x-max-age": "1h", "x-max-length-bytes": 10, "x-stream-max-segment-size-bytes": 4096})
    assert o == {"retention_ms": 3_600_000, "retention_bytes": -1, "segment_bytes": 4096}
    assert log_overrides({})["segment_bytes"] == 500_000_000


def test_resolve_and_read(tmp_path):
    clock = ManualClock()
    s = open_stream(tmp_path / "s", clock)
    assert s.resolve("first") == s.resolve("last") == s.resolve("next") == 0
    s.publish(msgs(b"a", b"b", b"c"))
    t1 = clock.now_ms()
    clock.advance(10_000)
    s.publish(msgs(b"d", b"e"))
    assert (s.resolve("first"), s.resolve("last"), s.resolve("next")) == (0, 3, 5)
    assert s.resolve(4) == 4 and s.resolve(99) == 5 and s.resolve(-3) == 0
    assert s.resolve(("timestamp", t1 + 1)) == 3 and s.resolve(("timestamp", t1)) == 0
    assert s.resolve(("timestamp", clock.now_ms() + 1)) == 5
    assert s.resolve(("age", 5_000)) == 3 and s.resolve(("age", 60_000)) == 0
    assert [(o, m.body) for o, m in s.read(1)] == [(1, b"b"), (2, b"c")]  # the rest of that batch
    assert [o for o, _ in s.read(3)] == [3, 4] and s.read(5) == []
    assert s.message_count == 0 and len(s) == 5  # queue.declare-ok counts 0, as RabbitMQ
    s.close()
    s = open_stream(tmp_path / "s", clock)  # reopened: "last" is found again
    assert s.resolve("last") == 3
    s.close()


def test_max_length_bytes_keeps_at_most_the_limit(tmp_path):
    clock = ManualClock()
    s = open_stream(tmp_path / "s", clock, {"x-max-length-bytes": 2000}, segment_bytes=600)
    for i in range(30):
        s.publish(msgs(b"%02d" % i + b"x" * 100))
    sizes = [seg.size for seg in s.log.segments()]
    assert len(sizes) > 1 and sum(sizes) <= 2000 + sizes[-1]  # the active segment may still be growing
    assert s.first_offset > 0 and s.end_offset == 30
    assert [m.body[:2] for _, m in s.read(s.first_offset)][0] == b"%02d" % s.first_offset
    s.close()


def test_max_age_by_segment(tmp_path):
    clock = ManualClock()
    s = open_stream(tmp_path / "s", clock, {"x-max-age": "10s"}, segment_bytes=400)
    for i in range(6):
        s.publish(msgs(b"old" * 40))
    clock.advance(11_000)
    for i in range(6):
        s.publish(msgs(b"new" * 40))
    kept = [m.body[:3] for o in range(s.first_offset, s.end_offset) for oo, m in s.read(o) if oo == o]
    assert kept[-6:] == [b"new"] * 6 and kept.count(b"old") <= 2  # old segments went, whole
    s.close()
