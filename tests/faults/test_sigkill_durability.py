"""SIGKILL during appends with fsync=always: every offset reported durable survives, intact.

A child process appends 1 KiB records (in small batches) to a log with fsync=always and prints each
offset as ``when_durable`` reports it. The parent kills it with SIGKILL at a random moment, reopens the
log (recovery runs: the child never closed it) and checks that every reported offset is readable and
holds exactly the bytes the child wrote there. The child's stdout goes to a file so that a slow reader
can never stall it. Bounded: a few runs of at most ~1 s each.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from omnibus.storage import Log, LogConfig, decode_records

CHILD = r"""
import os, sys
from omnibus.storage import Log, LogConfig, Record

def value(offset):
    return (b"%012d" % offset) * 85 + b"\n" * 4       # 1024 bytes, derived from the offset

log = Log.open(sys.argv[1], LogConfig(fsync="always", segment_bytes=256 << 10))
os.write(1, b"ready\n")
n = 0
while True:
    count = 1 + n % 7
    base = log.end_offset
    r = log.append_records([Record(b"k", value(base + i), (), 1_700_000_000_000 + base + i) for i in range(count)])
    assert r.base_offset == base
    last = r.last_offset
    log.when_durable(last, lambda last=last: os.write(1, b"%d\n" % last))
    n += 1
"""

RUNS = 3


def value(offset: int) -> bytes:
    return (b"%012d" % offset) * 85 + b"\n" * 4


def wait_for_lines(path: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            if f.read().count(b"\n") >= n:
                return
        time.sleep(0.01)
    raise AssertionError(f"child did not report {n} lines within {timeout}s")


@pytest.mark.parametrize("run", range(RUNS))
def test_sigkill_keeps_every_reported_offset(tmp_path, run):
    log_dir = str(tmp_path / "log")
    out_path = str(tmp_path / "stdout")
    rng = random.Random()
    with open(out_path, "wb") as out:
        child = subprocess.Popen([sys.executable, "-c", CHILD, log_dir], stdout=out, stderr=subprocess.PIPE)
    try:
        wait_for_lines(out_path, 2, timeout=20)  # "ready" and one durable offset
        time.sleep(rng.uniform(0.2, 1.0))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()
    child.stderr.close()

    lines = open(out_path, "rb").read().split(b"\n")
    complete = lines[:-1]  # the last piece may be cut mid-write
    assert complete[0] == b"ready"
    reported = [int(x) for x in complete[1:]]
    assert reported == sorted(reported) and reported

    log = Log.open(log_dir, LogConfig(fsync="never"))
    try:
        assert log.end_offset > reported[-1]
        assert len(log.segments()) > 1 or reported[-1] < 250  # rolls happened while appending
        seen = {}
        for h, view in log.batches(0):
            for off, rec in decode_records(view):
                seen[off] = rec.value
        assert sorted(seen) == list(range(log.end_offset))  # nothing missing, nothing torn
        assert log.load_result.recovered_segments >= 1  # the child never closed: recovery ran
        for off in reported:
            assert seen[off] == value(off)
        for off, v in seen.items():  # and whatever else survived is intact too
            assert v == value(off)
    finally:
        log.close()
