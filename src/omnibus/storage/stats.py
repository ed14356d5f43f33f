"""Process-wide storage counters, plain ints for the metrics endpoint to read (Prometheus later).

Rules: incremented in place by log.py (``appends``, ``bytes_appended``: owner thread, no lock: a lost
increment between two event loops in one process is acceptable for a metric) and sync.py (``fsyncs``,
under ``_fsync_lock`` since several syncer threads may exist). Reading is always safe.
Concurrency: thread-safe to read; see above for writes.
"""

from __future__ import annotations

import threading

appends = 0  #: batches appended by every log
bytes_appended = 0  #: bytes of those batches
fsyncs = 0  #: fdatasync/fsync calls made for logs (data files, index files and directories)

_fsync_lock = threading.Lock()


def add_fsyncs(n: int) -> None:
    global fsyncs
    with _fsync_lock:
        fsyncs += n


def snapshot() -> dict[str, int]:
    return {"appends": appends, "bytes_appended": bytes_appended, "fsyncs": fsyncs}
