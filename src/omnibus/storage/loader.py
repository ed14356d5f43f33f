"""Startup recovery of one log directory, in numbered passes (Kafka LogLoader.java).

Strategy
    A log directory holds segments (``{base:020d}.log/.index/.timeindex``), a ``recovery-point`` file
    (every offset below it was fsynced and the indexes of every segment wholly below it were flushed)
    and a ``log-start-offset`` file. Loading runs:

    1. **Remove stray files**: ``*.tmp`` (half-written small files), ``*.deleted`` (segments deleted but not
       yet unlinked when we stopped), ``*.cleaned``/``*.swap`` (Kafka leftovers), and index files whose
       ``.log`` is gone. Other files (``*.acks`` from acks.py) are left alone.
    2. **Load segments**: open every ``.log`` in offset order. Segments wholly below the recovery point
       are trusted: their indexes get a sanity check and ``next_offset`` comes from a short header scan of
       the tail (no CRC pass). A segment failing the check is recovered (rebuilt) like an unflushed one.
    3. **Recover segments past the recovery point**: every batch is re-validated (CRC, structure,
       offsets contiguous from the segment's base), indexes are rebuilt, and the torn tail is
       truncated at the last valid batch.
       Once a segment had to be truncated, every later segment is removed: its data was written after the
       torn write and cannot be trusted to follow it.

    After a clean ``Log.close()`` the recovery point equals the end offset and nothing is re-scanned;
    after a crash only the active segment (the recovery point advances at every roll) is.

Rules: small offset files are written to ``name.tmp``, fsynced, renamed over, and the directory fsynced.
Concurrency: blocks (reads whole segments in the worst case): call before the log is shared, in an
executor if on an event loop.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from .segment import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    segment_path,
)

__all__ = [
    "RECOVERY_POINT_FILE",
    "LOG_START_OFFSET_FILE",
    "STRAY_SUFFIXES",
    "LoadResult",
    "load_log",
    "read_offset_file",
    "write_offset_file",
    "fsync_dir",
    "segment_bases",
]

log = logging.getLogger(__name__)

RECOVERY_POINT_FILE = "recovery-point"
LOG_START_OFFSET_FILE = "log-start-offset"
TMP_SUFFIX = ".tmp"
#: Suffixes of files that are never valid at startup (Kafka LogLoader removeTempFilesAndCollectSwapFiles).
STRAY_SUFFIXES = (TMP_SUFFIX, DELETED_SUFFIX, ".cleaned", ".swap")


@dataclass
class LoadResult:
    """What ``load_log`` found and did; ``segments`` are open and ordered by base offset."""

    segments: list[LogSegment]
    recovery_point: int
    start_offset: int
    recovered_segments: int = 0  # segments re-validated (past the recovery point or failing checks)
    truncated_bytes: int = 0  # bytes cut from torn tails
    removed_segments: list[int] = field(default_factory=list)  # bases removed after a truncation
    removed_files: list[str] = field(default_factory=list)  # pass 1


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_offset_file(path: str) -> int | None:
    """The integer in a small offset file, or None if it is missing or unreadable (then the caller
    falls back to the safe value: recover everything / start at the first segment)."""
    try:
        with open(path, "rb") as f:
            text = f.read(64)
        value = int(text.strip())
    except (OSError, ValueError):
        return None
    return value if value >= 0 else None


def write_offset_file(path: str, value: int, *, sync: bool) -> None:
    """Atomically replace a small offset file. Blocks; with ``sync`` it is durable on return."""
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"%d\n" % value)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path) or ".")


def segment_bases(directory: str) -> list[int]:
    """Base offsets of the ``.log`` files in ``directory``, sorted."""
    bases = []
    for name in os.listdir(directory):
        if name.endswith(LOG_SUFFIX):
            stem = name[: -len(LOG_SUFFIX)]
            if stem.isdigit():
                bases.append(int(stem))
    bases.sort()
    return bases


def _remove_strays(directory: str) -> list[str]:
    removed = []
    names = set(os.listdir(directory))
    for name in sorted(names):
        path = os.path.join(directory, name)
        stray = name.endswith(STRAY_SUFFIXES)
        if not stray:
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                if name.endswith(suffix) and name[: -len(suffix)] + LOG_SUFFIX not in names:
                    stray = True
        if stray:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue  # a syncer destroying a deleted segment of the previous open got there first
            except IsADirectoryError:
                continue
            removed.append(name)
    return removed


def load_log(directory: str, *, index_interval_bytes: int, now_ms: int) -> LoadResult:
    """Run the passes described in the module docstring; returns open segments (at least one)."""
    # Pass 1: stray files.
    removed_files = _remove_strays(directory)

    rp_path = os.path.join(directory, RECOVERY_POINT_FILE)
    recovery_point = read_offset_file(rp_path) or 0
    start_file = read_offset_file(os.path.join(directory, LOG_START_OFFSET_FILE))

    # Pass 2 and 3: load in order; trust what is below the recovery point, recover the rest.
    segments: list[LogSegment] = []
    result = LoadResult(segments=segments, recovery_point=recovery_point, start_offset=0, removed_files=removed_files)
    truncated_at: int | None = None
    for base in segment_bases(directory):
        if truncated_at is not None:
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                try:
                    os.unlink(segment_path(directory, base, suffix))
                except FileNotFoundError:
                    pass
            result.removed_segments.append(base)
            continue
        seg = LogSegment.open_existing(
            directory, base, index_interval_bytes=index_interval_bytes, now_ms=now_ms
        )
        if segments and base < segments[-1].next_offset:
            log.warning("segment %d overlaps the previous one (ends at %d)", base, segments[-1].next_offset)
        trusted = seg.load_trusted() and seg.next_offset <= recovery_point
        if not trusted:
            truncated = seg.recover()
            result.recovered_segments += 1
            if truncated:
                result.truncated_bytes += truncated
                truncated_at = base
                log.warning("log %s: truncated %d torn bytes from segment %d", directory, truncated, base)
            # Recovered data may have been only in the page cache of a crashed process: make it durable
            # so the recovery point can move past it.
            os.fsync(seg.fd)
            seg.flush_indexes(sync=True)
        segments.append(seg)

    if not segments:
        base = max(start_file or 0, 0)
        segments.append(LogSegment.create(directory, base, index_interval_bytes=index_interval_bytes, now_ms=now_ms))
        fsync_dir(directory)

    end = segments[-1].next_offset
    start = segments[0].base_offset
    if start_file is not None:
        start = max(start, min(start_file, end))
    result.start_offset = start
    if result.recovered_segments or result.removed_segments:
        result.recovery_point = end
    else:
        result.recovery_point = min(recovery_point, end)
    if result.recovery_point != recovery_point or not os.path.exists(rp_path):
        write_offset_file(rp_path, result.recovery_point, sync=True)
    return result
