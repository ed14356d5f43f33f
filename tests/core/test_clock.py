import time

from omnibus.core.clock import MANUAL_CLOCK_EPOCH_MS, Clock, ManualClock, SystemClock


def test_system_clock_readings():
    c = SystemClock()
    assert isinstance(c, Clock)
    assert abs(c.now_ms() - time.time() * 1000) < 5_000
    a = c.monotonic()
    assert c.monotonic() >= a


def test_manual_clock_moves_only_when_told():
    c = ManualClock()
    assert isinstance(c, Clock)
    assert c.now_ms() == MANUAL_CLOCK_EPOCH_MS
    assert c.monotonic() == 0.0
    c.advance(1500)
    assert c.now_ms() == MANUAL_CLOCK_EPOCH_MS + 1500
    assert c.monotonic() == 1.5


def test_manual_clock_wall_step_leaves_monotonic():
    c = ManualClock(now_ms=10_000, monotonic=5.0)
    c.set_now_ms(1_000)
    assert c.now_ms() == 1_000
    assert c.monotonic() == 5.0


def test_manual_clock_refuses_to_go_backwards():
    c = ManualClock()
    try:
        c.advance(-1)
    except ValueError:
        pass
    else:
        raise AssertionError("advance(-1) must raise")
