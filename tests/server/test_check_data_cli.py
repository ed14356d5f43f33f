"""``omnibus check-data`` on a real data dir: finds a torn tail, repairs it, then reports OK."""

from __future__ import annotations

import os
import subprocess
import sys

from omnibus.storage.log import Log, LogConfig
from omnibus.storage.records import Record


def run_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "omnibus", "check-data", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_check_data_finds_and_repairs_a_torn_tail(tmp_path):
    log_dir = tmp_path / "logs" / "orders"
    log = Log.open(log_dir, LogConfig(fsync="never"))
    for i in range(5):
        log.append_records([Record(None, b"v%d" % j, (), 1_700_000_000_000 + j) for j in range(10)])
    log.close()
    seg = log_dir / f"{0:020d}.log"
    with open(seg, "r+b") as f:  # tear the last batch in half
        f.truncate(seg.stat().st_size - 20)

    first = run_check(str(tmp_path))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "PROBLEMS FOUND" in first.stdout and "--repair" in first.stdout
    assert "Traceback" not in first.stderr

    fixed = run_check(str(tmp_path), "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "repaired" in fixed.stdout

    again = run_check(str(tmp_path))
    assert again.returncode == 0, again.stdout
    assert "4 batches, 40 records" in again.stdout and ": OK" in again.stdout
    reopened = Log.open(log_dir, LogConfig(fsync="never"))
    assert reopened.end_offset == 40
    reopened.close()


def test_check_data_missing_dir_is_one_line(tmp_path):
    res = run_check(str(tmp_path / "nope"))
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr
