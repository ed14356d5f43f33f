"""Startup benchmark (not a test): time from exec of ``omnibus serve`` to its ``ready`` line, and the
start/stop time of an embedded SyncBroker (what the pytest fixture costs a test).

Goals (issue 2): ready in under 0.5 s; the fixture well under 100 ms.
Usage: python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._servers import OmnibusServe  # noqa: E402


def serve_once(data_dir: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    serve = OmnibusServe(data_dir).start()
    ready = time.perf_counter() - t0
    t1 = time.perf_counter()
    serve.stop()
    return ready, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    from omnibus import SyncBroker

    with tempfile.TemporaryDirectory() as tmp:
        serve = [serve_once(f"{tmp}/s{i}") for i in range(args.runs)]
        emb_start, emb_stop = [], []
        SyncBroker(f"{tmp}/warm").start().stop()  # imports paid once, as in a test session
        for i in range(args.runs):
            t0 = time.perf_counter()
            b = SyncBroker(f"{tmp}/e{i}").start()
            t1 = time.perf_counter()
            b.stop()
            emb_start.append(t1 - t0)
            emb_stop.append(time.perf_counter() - t1)
    med = statistics.median
    print(f"omnibus serve: exec -> ready  median {med(r for r, _ in serve) * 1000:7.1f} ms   "
          f"(goal < 500 ms, ratio {med(r for r, _ in serve) / 0.5:.2f} of budget)")
    print(f"omnibus serve: SIGTERM -> exit median {med(s for _, s in serve) * 1000:7.1f} ms   (goal < 5000 ms)")
    print(f"SyncBroker start               median {med(emb_start) * 1000:7.1f} ms   (goal < 100 ms)")
    print(f"SyncBroker stop                median {med(emb_stop) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
