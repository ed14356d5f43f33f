"""Sparse offset and time indexes of one log segment (Kafka OffsetIndex.java / TimeIndex.java).

Strategy
    The log appends an entry every ``index_interval_bytes`` of batches (LogSegment.append), so a lookup
    lands at most one interval before the wanted batch and the rest is a short header scan.

    * OffsetIndex: 8-byte entries ``relative offset uint32 | position uint32`` (big-endian, as Kafka).
      An entry names the *first* offset of the batch that starts at ``position``, so a floor lookup for
      any offset inside that batch returns the batch itself.
    * TimeIndex: 12-byte entries ``timestamp int64 | relative offset uint32``: "every batch before this
      offset has max timestamp <= timestamp". Entries are only appended when the timestamp grows.

    In memory each index is a pair of ``array`` s searched with ``bisect`` (C speed, no per-entry
    objects; 8 bytes per 4 KiB of log, so a full 1 GiB segment costs 2 MiB). The file is written from
    the arrays in large appends when the segment is flushed (at roll, by the syncer, and at close),
    not on every append. We chose this over Kafka's preallocated mmap because mmap'd files must be
    resized and trimmed, and an append-path mmap store saves nothing here: the index is tiny and only
    the recovery point depends on it being on disk.

    Indexes are rebuilt rather than checksummed: a segment past the recovery point, or one whose index
    fails the sanity check at open, has its indexes rebuilt from the log (see segment.py, loader.py).
    Indexes of segments loaded from disk are read lazily, on first lookup.

Concurrency
    Event-loop thread only for lookups and appends. ``flush`` may run on the syncer thread for a
    sealed (no longer appended) segment; a lock serialises flushes. Blocking: ``flush``/``load`` do file
    I/O (small); lookups and appends are memory-only.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right

__all__ = ["OffsetIndex", "TimeIndex", "OFFSET_ENTRY", "TIME_ENTRY", "MAX_RELATIVE_OFFSET"]

OFFSET_ENTRY = struct.Struct(">II")
TIME_ENTRY = struct.Struct(">qI")
#: Largest offset distance from a segment's base that a 4-byte relative offset may hold. Kafka rolls at
#: Integer.MAX_VALUE (LogSegment.canConvertToRelativeOffset); we do the same so files stay compatible.
MAX_RELATIVE_OFFSET = (1 << 31) - 1

_BIG_ENDIAN_HOST = sys.byteorder == "big"


class _IndexFile:
    """File bookkeeping shared by both indexes: lazy load, append-only flush, full rewrite after reset."""

    entry: struct.Struct

    def __init__(self, path: str, base_offset: int, *, load_from_file: bool) -> None:
        self.path = path
        self.base_offset = base_offset
        self._loaded = not load_from_file
        self._written = 0  # entries already in the file
        self._rewrite = not load_from_file  # next flush truncates the file and writes every entry
        self._flush_lock = threading.Lock()

    # subclasses: _entries_from(bytes), _pack_range(lo, hi) -> bytes, __len__, _truncate_entries(n)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        n = len(data) // self.entry.size
        self._entries_from(data[: n * self.entry.size])
        self._written = n
        self._loaded = True

    def file_entries(self) -> list[tuple[int, int]]:
        """Every entry as stored in the file (for checks); does not touch the in-memory copy."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        n = len(data) // self.entry.size
        return list(self.entry.iter_unpack(data[: n * self.entry.size]))

    def reset(self) -> None:
        """Forget every entry; the next flush rewrites the file."""
        self._truncate_entries(0)
        self._loaded = True
        self._written = 0
        self._rewrite = True

    def flush(self, *, sync: bool) -> None:
        """Write entries not yet in the file (or the whole file after a reset); fsync if ``sync``.
        Blocks: file I/O."""
        with self._flush_lock:
            if not self._loaded:  # never read, never appended: the file is already right
                if sync and os.path.exists(self.path):
                    _fsync_path(self.path)
                return
            n = len(self)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if self._rewrite else os.O_APPEND)
            fd = os.open(self.path, flags, 0o644)
            try:
                start = 0 if self._rewrite else self._written
                if n > start:
                    data = self._pack_range(start, n)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                self._written = n
                self._rewrite = False
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def file_size_ok(self) -> bool:
        try:
            return os.path.getsize(self.path) % self.entry.size == 0
        except OSError:
            return False

    def read_last_file_entry(self) -> tuple[int, int] | None:
        """The last entry in the file without loading the index (for the sanity check at open)."""
        size = self.entry.size
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            if end < size:
                return None
            f.seek(end - end % size - size)
            return self.entry.unpack(f.read(size))

    def rename(self, new_path: str) -> None:
        try:
            os.rename(self.path, new_path)
        except FileNotFoundError:
            pass
        self.path = new_path

    def delete(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _split_u32_pairs(data: bytes) -> tuple[array, array]:
    a = array("I")
    a.frombytes(data)
    if not _BIG_ENDIAN_HOST:
        a.byteswap()
    return a[0::2], a[1::2]


class OffsetIndex(_IndexFile):
    """Floor lookups offset -> position of the batch that starts there. See the module docstring."""

    entry = OFFSET_ENTRY

    def __init__(self, path: str, base_offset: int, *, load_from_file: bool = False) -> None:
        self._rel = array("I")
        self._pos = array("I")
        super().__init__(path, base_offset, load_from_file=load_from_file)

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._rel)

    def _entries_from(self, data: bytes) -> None:
        self._rel, self._pos = _split_u32_pairs(data)

    def _pack_range(self, lo: int, hi: int) -> bytes:
        inter = array("I", bytes(8 * (hi - lo)))
        inter[0::2] = self._rel[lo:hi]
        inter[1::2] = self._pos[lo:hi]
        if not _BIG_ENDIAN_HOST:
            inter.byteswap()
        return inter.tobytes()

    def _truncate_entries(self, n: int) -> None:
        del self._rel[n:]
        del self._pos[n:]

    def append(self, offset: int, position: int) -> None:
        """Add an entry; offsets and positions must grow (callers guarantee it)."""
        if not self._loaded:
            self._ensure_loaded()
        self._rel.append(offset - self.base_offset)
        self._pos.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry with offset <= ``offset``; (base, 0) if none."""
        if not self._loaded:
            self._ensure_loaded()
        i = bisect_right(self._rel, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._rel[i], self._pos[i]

    def lookup_position(self, position: int) -> tuple[int, int]:
        """(offset, position) of the last entry with position <= ``position``; (base, 0) if none."""
        if not self._loaded:
            self._ensure_loaded()
        i = bisect_right(self._pos, position) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self._rel[i], self._pos[i]

    def last_entry(self) -> tuple[int, int] | None:
        if not self._loaded:
            self._ensure_loaded()
        if not self._rel:
            return None
        return self.base_offset + self._rel[-1], self._pos[-1]

    def truncate_to(self, offset: int) -> None:
        """Drop entries for offsets >= ``offset`` (after the log was truncated there)."""
        self._ensure_loaded()
        n = bisect_left(self._rel, offset - self.base_offset)
        if n < len(self._rel):
            self._truncate_entries(n)
            self._written = min(self._written, n)
            self._rewrite = True

    def entries(self) -> list[tuple[int, int]]:
        """(absolute offset, position) pairs; for checks and tests."""
        self._ensure_loaded()
        return [(self.base_offset + r, p) for r, p in zip(self._rel, self._pos)]


class TimeIndex(_IndexFile):
    """Lookups timestamp -> offset from which to scan. See the module docstring."""

    entry = TIME_ENTRY

    def __init__(self, path: str, base_offset: int, *, load_from_file: bool = False) -> None:
        self._ts = array("q")
        self._rel = array("I")
        super().__init__(path, base_offset, load_from_file=load_from_file)

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._ts)

    def _entries_from(self, data: bytes) -> None:
        ts = array("q")
        rel = array("I")
        for t, r in TIME_ENTRY.iter_unpack(data):
            ts.append(t)
            rel.append(r)
        self._ts, self._rel = ts, rel

    def _pack_range(self, lo: int, hi: int) -> bytes:
        pack = TIME_ENTRY.pack
        return b"".join(pack(self._ts[i], self._rel[i]) for i in range(lo, hi))

    def _truncate_entries(self, n: int) -> None:
        del self._ts[n:]
        del self._rel[n:]

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add (timestamp, offset) if ``timestamp`` is above the last entry's (Kafka TimeIndex.maybeAppend)."""
        if not self._loaded:
            self._ensure_loaded()
        if self._ts and timestamp <= self._ts[-1]:
            return
        if timestamp < 0:
            return
        self._ts.append(timestamp)
        self._rel.append(offset - self.base_offset)

    def lookup_below(self, timestamp: int) -> int:
        """Offset of the last entry whose timestamp is < ``timestamp``: every batch before it has only
        smaller timestamps, so the first record with ts >= ``timestamp`` is at or after it."""
        if not self._loaded:
            self._ensure_loaded()
        i = bisect_left(self._ts, timestamp) - 1
        if i < 0:
            return self.base_offset
        return self.base_offset + self._rel[i]

    def last_entry(self) -> tuple[int, int] | None:
        """(timestamp, absolute offset) of the last entry, or None."""
        if not self._loaded:
            self._ensure_loaded()
        if not self._ts:
            return None
        return self._ts[-1], self.base_offset + self._rel[-1]

    def truncate_to(self, offset: int) -> None:
        """Drop entries naming offsets >= ``offset``."""
        self._ensure_loaded()
        n = len(self._rel)
        while n and self._rel[n - 1] >= offset - self.base_offset:
            n -= 1
        if n < len(self._rel):
            self._truncate_entries(n)
            self._written = min(self._written, n)
            self._rewrite = True

    def entries(self) -> list[tuple[int, int]]:
        """(timestamp, absolute offset) pairs; for checks and tests."""
        self._ensure_loaded()
        return [(t, self.base_offset + r) for t, r in zip(self._ts, self._rel)]
