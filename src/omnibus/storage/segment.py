"""One log segment: a file of whole record batches plus its two sparse indexes (Kafka LogSegment.java).

Strategy
    Files are ``{base_offset:020d}.log``, ``.index`` and ``.timeindex`` (zero-padded so ``ls`` sorts
    them, Kafka LogFileUtils). The ``.log`` file is written only at its end, with ``os.pwritev`` at
    the position we track (no Python-level buffer that a SIGKILL could lose: once ``append`` returns the
    bytes are in the page cache). Every ``index_interval_bytes`` of batches the segment adds one offset
    index entry and (if the max timestamp grew) one time index entry.

    Lookups go through the offset index to a batch boundary, then scan batch *headers* forward, reading
    one small block per step and skipping over batch bodies, so reads never pull payloads into Python.

    :meth:`LogSegment.recover` is the crash path: it re-validates every batch (structure, CRC, offsets
    increasing), rebuilds both indexes from scratch, and truncates the file at the first bad batch.

Rules
    * Header scans of our own files do not re-check CRCs (append and recovery did); ``recover`` and
      ``omnibus.storage.check`` do.
    * ``SCAN_BLOCK`` and ``RECOVERY_CHUNK`` bound how much one pread pulls in.

Concurrency
    Event-loop thread only, except :meth:`sync_data` and :meth:`flush_indexes` which the syncer thread
    runs for sealed segments, and :meth:`destroy` (syncer thread, after the delete delay). The fd is
    duplicated under ``_fd_lock`` before an fsync, so closing it concurrently is safe.
    Blocks: every method does file I/O (page cache in the normal case; ``recover`` reads the segment).
"""

from __future__ import annotations

import os
import threading
from typing import Iterator

from crc32c import crc32c

from .files import FileRegion, write_fully
from .index import MAX_RELATIVE_OFFSET, OffsetIndex, TimeIndex
from .records import HEADER_SIZE, LOG_OVERHEAD, BatchHeader, CorruptBatchError, read_header

__all__ = [
    "LogSegment",
    "segment_path",
    "LOG_SUFFIX",
    "INDEX_SUFFIX",
    "TIME_INDEX_SUFFIX",
    "DELETED_SUFFIX",
    "SCAN_BLOCK",
    "RECOVERY_CHUNK",
]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
#: Appended to a deleted segment's file names until it is closed and unlinked (Kafka DELETED_FILE_SUFFIX).
DELETED_SUFFIX = ".deleted"

#: Bytes read per header-scan step: one default index interval plus a header, so a scan from an index
#: entry to the wanted batch is usually a single pread.
SCAN_BLOCK = 4096 + HEADER_SIZE
#: Bytes read per step by recovery; large to amortise syscalls, small enough to not matter for memory.
RECOVERY_CHUNK = 4 << 20

_O_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
#: fdatasync skips the inode's timestamps; where it does not exist (macOS) fsync does the same job.
_fdatasync = getattr(os, "fdatasync", os.fsync)


def segment_path(directory: str, base_offset: int, suffix: str) -> str:
    return os.path.join(directory, f"{base_offset:020d}{suffix}")


class LogSegment:
    """See the module docstring. Attributes are read freely by the owning log; mutated only here."""

    __slots__ = (
        "directory",
        "base_offset",
        "fd",
        "size",
        "next_offset",
        "max_timestamp",
        "offset_of_max_timestamp",
        "created_ms",
        "index",
        "time_index",
        "index_interval_bytes",
        "bytes_since_index",
        "closed",
        "deleted",
        "_fd_lock",
    )

    def __init__(
        self,
        directory: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        created_ms: int,
        load_indexes_from_file: bool,
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.fd = os.open(segment_path(directory, base_offset, LOG_SUFFIX), _O_FLAGS, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.created_ms = created_ms
        self.index_interval_bytes = index_interval_bytes
        self.bytes_since_index = 0
        self.index = OffsetIndex(
            segment_path(directory, base_offset, INDEX_SUFFIX),
            base_offset,
            load_from_file=load_indexes_from_file,
        )
        self.time_index = TimeIndex(
            segment_path(directory, base_offset, TIME_INDEX_SUFFIX),
            base_offset,
            load_from_file=load_indexes_from_file,
        )
        self.closed = False
        self.deleted = False
        self._fd_lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str, base_offset: int, *, index_interval_bytes: int, now_ms: int) -> "LogSegment":
        """A new, empty segment (truncating any leftover file of that name). Blocks: creates files."""
        seg = cls(
            directory,
            base_offset,
            index_interval_bytes=index_interval_bytes,
            created_ms=now_ms,
            load_indexes_from_file=False,
        )
        if seg.size:
            os.ftruncate(seg.fd, 0)
            seg.size = 0
        return seg

    @classmethod
    def open_existing(
        cls, directory: str, base_offset: int, *, index_interval_bytes: int, now_ms: int
    ) -> "LogSegment":
        """Open files left by a previous run. The caller then either :meth:`load_trusted` or
        :meth:`recover` s it (loader.py decides which)."""
        return cls(
            directory,
            base_offset,
            index_interval_bytes=index_interval_bytes,
            created_ms=now_ms,
            load_indexes_from_file=True,
        )

    def load_trusted(self) -> bool:
        """Adopt a segment below the recovery point without reading it all: sanity-check the index files
        (Kafka AbstractIndex.sanityCheck, plus: the last offset index entry must point at a batch that
        starts with that offset), find ``next_offset`` by scanning headers from the last index entry to
        the end of the file, and take the max timestamp from the time index's last entry (written when
        the segment was sealed or closed). Returns False if anything is off: the caller recovers."""
        try:
            if not (self.index.file_size_ok() and self.time_index.file_size_ok()):
                return False
            last = self.index.read_last_file_entry()
            start_offset, pos = self.base_offset, 0
            if last is not None:
                rel, pos = last
                start_offset = self.base_offset + rel
                if pos >= self.size:
                    return False
                h = self._header_at(pos)
                if h is None or h.base_offset != start_offset:
                    return False
            next_offset = start_offset
            end = pos
            for p, h in self._iter_headers(pos, self.size):
                if h.base_offset != next_offset:
                    return False
                next_offset = h.next_offset
                end = p + h.size
            if end != self.size:
                return False
            if next_offset - self.base_offset > MAX_RELATIVE_OFFSET + 1:
                return False
            tlast = self.time_index.read_last_file_entry()
            if tlast is not None:
                ts, trel = tlast
                if self.base_offset + trel >= next_offset and self.size:
                    return False
                self.max_timestamp = ts
                self.offset_of_max_timestamp = self.base_offset + trel
            elif self.size:
                # Sealed segments always end with a time index entry (unless no batch had a timestamp).
                first = self._header_at(0)
                if first is None or first.max_timestamp >= 0:
                    return False
        except (OSError, CorruptBatchError):
            return False
        self.next_offset = next_offset
        self.bytes_since_index = self.size - pos
        first = self._header_at(0) if self.size else None
        if first is not None and first.max_timestamp >= 0:
            self.created_ms = min(self.created_ms, first.max_timestamp)
        return True

    # -- append ---------------------------------------------------------------------------------------

    def append(self, head, body, base_offset: int, next_offset: int, max_timestamp: int) -> int:
        """Write one batch (``head`` + ``body``, already patched to ``base_offset``) at the end; returns
        its position. On a failed write the file is cut back to its previous length so no partial batch
        stays behind. Event-loop thread only. Hot path: run bench/storage.py before changing it."""
        pos = self.size
        try:
            n = write_fully(self.fd, [head, body], pos)
        except OSError:
            try:
                os.ftruncate(self.fd, pos)
            except OSError:
                pass
            raise
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = base_offset
        if self.bytes_since_index > self.index_interval_bytes:
            self.index.append(base_offset, pos)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self.bytes_since_index = 0
        self.bytes_since_index += n
        self.size = pos + n
        self.next_offset = next_offset
        return pos

    def seal(self) -> None:
        """Called when the segment stops being active (Kafka onBecomeInactiveSegment): make sure the
        time index ends with the segment's max timestamp so a restart can read it without a scan."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)

    def can_hold(self, last_offset: int) -> bool:
        return last_offset - self.base_offset <= MAX_RELATIVE_OFFSET

    # -- reads ----------------------------------------------------------------------------------------

    def _header_at(self, pos: int) -> BatchHeader | None:
        data = os.pread(self.fd, HEADER_SIZE, pos)
        try:
            return read_header(data)
        except CorruptBatchError:
            return None

    def _iter_headers(self, pos: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each batch from ``pos`` (a batch boundary) up to ``end``. Reads
        ``SCAN_BLOCK`` bytes per pread and skips over bodies. Stops at a batch that would cross ``end``;
        raises CorruptBatchError on a malformed header."""
        fd = self.fd
        while pos + HEADER_SIZE <= end:
            block = os.pread(fd, min(SCAN_BLOCK, end - pos), pos)
            bpos = 0
            blen = len(block)
            if blen < HEADER_SIZE:
                return
            while bpos + HEADER_SIZE <= blen:
                h = read_header(block, bpos)
                size = h.batch_length + LOG_OVERHEAD
                if pos + size > end:
                    return
                yield pos, h
                pos += size
                bpos += size

    def find_batch(self, offset: int) -> tuple[int, BatchHeader] | None:
        """(position, header) of the batch containing ``offset``, or of the first batch after it if
        ``offset`` falls in a gap; None if nothing at or after ``offset`` is in this segment.

        If the index entry does not point at the batch it names (a damaged index that passed the
        open-time sanity check), the answer comes from a scan from the start of the segment instead."""
        if offset >= self.next_offset:
            return None
        indexed_offset, pos = self.index.lookup(offset)
        if pos:
            try:
                h = read_header(os.pread(self.fd, HEADER_SIZE, pos))
            except CorruptBatchError:
                h = None
            if h is None or h.base_offset != indexed_offset:
                pos = 0
        for p, h in self._iter_headers(pos, self.size):
            if h.base_offset + h.last_offset_delta >= offset:
                return p, h
        return None

    def region(self, start: int, first_size: int, max_bytes: int) -> FileRegion:
        """Whole batches from position ``start`` (a batch boundary whose batch is ``first_size`` long)
        up to ``max_bytes`` in total, always including the first one (KIP-74)."""
        limit = start + max(max_bytes, first_size)
        if limit >= self.size:
            return FileRegion(self.fd, start, self.size - start)
        _, pos = self.index.lookup_position(limit)
        if pos < start + first_size:
            pos = start + first_size
        end = pos
        for p, h in self._iter_headers(pos, limit):
            end = p + h.batch_length + LOG_OVERHEAD
        return FileRegion(self.fd, start, end - start)

    def find_offset_by_timestamp(self, timestamp: int) -> tuple[int, BatchHeader] | None:
        """(position, header) of the first batch whose max timestamp is >= ``timestamp``, or None."""
        if self.max_timestamp < timestamp:
            return None
        offset = self.time_index.lookup_below(timestamp)
        found = self.find_batch(offset)
        if found is None:
            return None
        start = found[0]
        for p, h in self._iter_headers(start, self.size):
            if h.max_timestamp >= timestamp:
                return p, h
        return None

    # -- durability (syncer thread for sealed segments) -------------------------------------------------

    def dup_fd(self) -> int | None:
        """A private duplicate of the log fd for an fsync on another thread, or None once closed."""
        with self._fd_lock:
            if self.closed:
                return None
            return os.dup(self.fd)

    def sync_data(self) -> bool:
        """fdatasync the log file; False if the segment was closed meanwhile. Blocks."""
        fd = self.dup_fd()
        if fd is None:
            return False
        try:
            _fdatasync(fd)
        finally:
            os.close(fd)
        return True

    def flush_indexes(self, *, sync: bool) -> None:
        """Write pending index entries (and fsync them if ``sync``). Blocks."""
        if self.deleted:
            return
        self.index.flush(sync=sync)
        self.time_index.flush(sync=sync)

    # -- recovery -------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Re-validate every batch, rebuild both indexes, truncate at the first bad batch (Kafka
        LogSegment.recover). Returns the number of bytes truncated. Blocks: reads the whole segment."""
        self.index.reset()
        self.time_index.reset()
        fd = self.fd
        size = os.fstat(fd).st_size
        interval = self.index_interval_bytes
        expected = self.base_offset
        max_ts = -1
        off_max = self.base_offset
        since = 0
        pos = 0  # file position of the next batch
        buf = b""
        buf_pos = 0  # file position of buf[0]
        first_ts = None
        while pos + HEADER_SIZE <= size:
            rel = pos - buf_pos
            if rel + HEADER_SIZE > len(buf):
                buf = os.pread(fd, RECOVERY_CHUNK, pos)
                buf_pos, rel = pos, 0
            try:
                h = read_header(buf, rel)
            except CorruptBatchError:
                break
            bsize = h.batch_length + LOG_OVERHEAD
            if pos + bsize > size:
                break
            if rel + bsize > len(buf):
                buf = os.pread(fd, max(RECOVERY_CHUNK, bsize), pos)
                buf_pos, rel = pos, 0
                if len(buf) < bsize:
                    break
            mv = memoryview(buf)
            if crc32c(mv[rel + 21 : rel + bsize]) != h.crc:
                break
            # Our offsets are contiguous within a segment, so anything else (a flipped baseOffset, which
            # the CRC does not cover) marks the end of the valid data.
            if h.base_offset != expected or not self.can_hold(h.base_offset + h.last_offset_delta):
                break
            if h.max_timestamp > max_ts:
                max_ts = h.max_timestamp
                off_max = h.base_offset
            if first_ts is None:
                first_ts = h.max_timestamp
            if since > interval:
                self.index.append(h.base_offset, pos)
                self.time_index.maybe_append(max_ts, off_max)
                since = 0
            since += bsize
            expected = h.base_offset + h.last_offset_delta + 1
            pos += bsize
        truncated = size - pos
        if truncated:
            os.ftruncate(fd, pos)
        self.size = pos
        self.next_offset = expected
        self.max_timestamp = max_ts
        self.offset_of_max_timestamp = off_max
        self.bytes_since_index = since
        if first_ts is not None and first_ts >= 0:
            self.created_ms = min(self.created_ms, first_ts)
        self.seal()
        return truncated

    # -- lifetime -------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._fd_lock:
            if not self.closed:
                self.closed = True
                os.close(self.fd)

    def rename_for_delete(self) -> None:
        """Rename the files to ``*.deleted`` (readers holding the fd keep working). Event-loop thread."""
        self.deleted = True
        log_path = segment_path(self.directory, self.base_offset, LOG_SUFFIX)
        try:
            os.rename(log_path, log_path + DELETED_SUFFIX)
        except FileNotFoundError:
            pass
        self.index.rename(self.index.path + DELETED_SUFFIX)
        self.time_index.rename(self.time_index.path + DELETED_SUFFIX)

    def destroy(self) -> None:
        """Close the fd and unlink the renamed files. Blocks (unlinking a big file frees extents)."""
        self.close()
        log_path = segment_path(self.directory, self.base_offset, LOG_SUFFIX) + DELETED_SUFFIX
        for path in (log_path, self.index.path, self.time_index.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        return f"LogSegment(base={self.base_offset}, next={self.next_offset}, size={self.size})"
