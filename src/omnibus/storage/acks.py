"""Queue consumption state on disk: which offsets of a log are acked (design decision 2, as LavinMQ).

Strategy
    A queue is a log plus, per segment, an ack file ``{base:020d}.acks`` next to the segment. Once every
    record of a non-active segment is acked (or dead-lettered, which the core acks here too),
    :meth:`QueueAcks.collect` deletes the segment and its ack file. Message bodies never enter Python.

    The ack file is a **bitmap**: bit ``i`` (least significant first within byte ``i // 8``) set means
    offset ``base + i`` is acked. LavinMQ appends 4-byte positions instead; we chose the bitmap because
    * it is 32x smaller (1 bit per message: 10 M messages cost 1.25 MiB, not 40 MiB),
    * re-acks and redelivered-then-acked messages cost nothing, the file never needs compacting,
    * a restart reads it straight back: no replay, ``is_acked`` is O(1) from the first call.
    The price is rewriting bytes in place instead of appending. Acks are set in memory and the dirty
    byte range of each bitmap is written with one ``pwrite`` by :meth:`QueueAcks.flush` (the owner calls
    it once per loop turn or so); since acks mostly arrive in offset order that range is small. Torn
    writes are harmless: bits only ever go from 0 to 1, so any mix of old and new sectors is a state we
    passed through. Acks not yet flushed when the process dies are lost and those messages are
    redelivered: at-least-once, as AMQP promises.

Rules
    * Offsets below the log start offset count as consumed (they are gone).
    * Ack files whose segment no longer exists (retention deleted it) are removed when noticed.
    * ``ACKS_SUFFIX`` files are left alone by the log loader.

Concurrency: event-loop thread only (same thread as the log). ``flush(sync=True)``/``close`` block on an
fsync; plain ``flush`` only copies into the page cache.
"""

from __future__ import annotations

import os
from typing import Iterator

from .log import Log

__all__ = ["QueueAcks", "ACKS_SUFFIX", "ack_path"]

ACKS_SUFFIX = ".acks"


def ack_path(directory: str, base_offset: int) -> str:
    return os.path.join(directory, f"{base_offset:020d}{ACKS_SUFFIX}")


class _SegmentAcks:
    __slots__ = ("base", "bits", "count", "lo", "hi", "fd", "path")

    def __init__(self, base: int, path: str, bits: bytearray) -> None:
        self.base = base
        self.path = path
        self.bits = bits
        self.count = int.from_bytes(bits, "little").bit_count()
        self.lo = len(bits)  # dirty byte range [lo, hi)
        self.hi = 0
        self.fd = -1

    def count_from(self, rel: int) -> int:
        """Acked bits at relative offsets >= rel."""
        if rel <= 0:
            return self.count
        return (int.from_bytes(self.bits, "little") >> rel).bit_count()


class QueueAcks:
    """Ack bitmaps for the segments of one log. See the module docstring."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._acks: dict[int, _SegmentAcks] = {}
        live = {s.base_offset for s in log.segments()}
        for name in os.listdir(log.path):
            if not name.endswith(ACKS_SUFFIX):
                continue
            stem = name[: -len(ACKS_SUFFIX)]
            if not stem.isdigit():
                continue
            base = int(stem)
            path = os.path.join(log.path, name)
            if base not in live:
                os.unlink(path)  # its segment was deleted (retention, or collect before a crash)
                continue
            with open(path, "rb") as f:
                self._acks[base] = _SegmentAcks(base, path, bytearray(f.read()))

    # -- acking ---------------------------------------------------------------------------------------

    def _state(self, base: int) -> _SegmentAcks:
        st = self._acks.get(base)
        if st is None:
            st = self._acks[base] = _SegmentAcks(base, ack_path(self.log.path, base), bytearray())
        return st

    def ack(self, offset: int) -> bool:
        """Mark ``offset`` acked; returns False if it already was (or its segment is gone).
        Raises ValueError for an offset at or past the log end."""
        if offset >= self.log.end_offset or offset < 0:
            raise ValueError(f"offset {offset} is not in the log (end {self.log.end_offset})")
        base = self.log.segment_base(offset)
        if base is None:
            return False
        st = self._state(base)
        rel = offset - base
        i = rel >> 3
        bit = 1 << (rel & 7)
        bits = st.bits
        if i >= len(bits):
            bits.extend(bytes(i + 1 - len(bits)))
        elif bits[i] & bit:
            return False
        bits[i] |= bit
        st.count += 1
        if i < st.lo:
            st.lo = i
        if i >= st.hi:
            st.hi = i + 1
        return True

    def is_acked(self, offset: int) -> bool:
        """True if ``offset`` was acked or is no longer in the log."""
        if offset < self.log.start_offset:
            return True
        base = self.log.segment_base(offset)
        if base is None:
            return offset < self.log.end_offset  # a gap: its segment was collected
        st = self._acks.get(base)
        if st is None:
            return False
        rel = offset - base
        i = rel >> 3
        return i < len(st.bits) and bool(st.bits[i] & (1 << (rel & 7)))

    def acked_count(self, segment_base: int) -> int:
        st = self._acks.get(segment_base)
        return st.count if st is not None else 0

    def unacked_offsets(self, start: int | None = None) -> Iterator[int]:
        """Every offset from ``start`` (default: the log start) that is in the log and not acked, in
        order; for rebuilding a queue's ready list on restart. Skips fully-acked bytes 8 at a time."""
        first = self.log.start_offset if start is None else max(start, self.log.start_offset)
        for info in self.log.segments():
            lo = max(first, info.base_offset)
            if lo >= info.next_offset:
                continue
            st = self._acks.get(info.base_offset)
            bits = st.bits if st is not None else b""
            nbits = len(bits)
            rel = lo - info.base_offset
            end = info.next_offset - info.base_offset
            while rel < end:
                i = rel >> 3
                if i >= nbits:
                    yield from range(info.base_offset + rel, info.next_offset)
                    break
                byte = bits[i]
                if byte == 0xFF and not rel & 7:
                    rel += 8
                    continue
                if not byte & (1 << (rel & 7)):
                    yield info.base_offset + rel
                rel += 1

    # -- persistence and collection ---------------------------------------------------------------------

    def flush(self, *, sync: bool = False) -> None:
        """Write every dirty bitmap range to its ack file (page cache); fsync too if ``sync``."""
        for st in self._acks.values():
            if st.hi > st.lo:
                if st.fd < 0:
                    st.fd = os.open(st.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
                view = memoryview(st.bits)[st.lo : st.hi]
                pos = st.lo
                while view:
                    n = os.pwrite(st.fd, view, pos)
                    view = view[n:]
                    pos += n
                st.lo, st.hi = len(st.bits), 0
            if sync and st.fd >= 0:
                os.fsync(st.fd)

    def collect(self) -> int:
        """Delete every non-active segment whose records are all acked (offsets below the log start
        count as acked), with its ack file; returns how many. Also drops state of segments the log
        deleted by itself (retention)."""
        infos = self.log.segments()
        live = {i.base_offset for i in infos}
        for base in [b for b in self._acks if b not in live]:
            self._drop(base)
        start = self.log.start_offset
        deleted = 0
        for info in infos[:-1]:  # never the active segment
            st = self._acks.get(info.base_offset)
            lo = max(start, info.base_offset)
            needed = info.next_offset - lo
            have = st.count_from(lo - info.base_offset) if st is not None else 0
            if needed <= 0 or have >= needed:
                self.log.delete_segment(info.base_offset)
                self._drop(info.base_offset)
                deleted += 1
        return deleted

    def _drop(self, base: int) -> None:
        st = self._acks.pop(base, None)
        if st is None:
            return
        if st.fd >= 0:
            os.close(st.fd)
        try:
            os.unlink(st.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Flush and fsync every ack file, then close them. Blocks."""
        self.flush(sync=True)
        for st in self._acks.values():
            if st.fd >= 0:
                os.close(st.fd)
                st.fd = -1
