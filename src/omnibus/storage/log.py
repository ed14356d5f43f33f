"""The segmented append-only log that every protocol stores into (Kafka UnifiedLog/LocalLog).

Strategy
    A log is a directory of segments (segment.py) holding Kafka v2 record batches (records.py). Appends
    validate the batch's CRC, assign offsets by patching baseOffset in a 61-byte copy of the header, and
    write header + untouched body with one ``pwritev`` to the active segment. The active segment rolls
    when the next batch would overflow ``segment_bytes``, when it is older than ``segment_ms`` (by the
    injected clock), or when relative offsets would overflow 31 bits. Reads return file regions for
    ``sendfile`` (files.py) or bytes copied with ``pread``.

    Durability is group commit (design decision 3, sync.py): appends never fsync on the calling thread.
    They mark the log dirty with its :class:`~omnibus.storage.sync.Syncer`, whose worker fdatasyncs and
    then advances ``durable_offset`` and fires ``when_durable`` callbacks through the syncer's dispatch.
    Rolled segments are sealed by the worker too (data + indexes fsynced, then the ``recovery-point`` file
    advanced to the new active segment), so a crash re-scans only the active segment (loader.py).
    Deleted segments are renamed ``*.deleted`` at once and closed/unlinked by the worker after
    ``file_delete_delay_ms`` (Kafka file.delete.delay.ms), so file regions already handed out stay valid.

Rules
    * Offsets are contiguous within a segment; gaps between segments appear only when a queue deletes a
      fully-acked segment from the middle (acks.py). Reads step over gaps.
    * ``start_offset`` <= every readable offset <= ``end_offset``. Reads below start or past end raise
      :class:`OffsetOutOfRangeError` (Kafka OFFSET_OUT_OF_RANGE).
    * Limits are named constants (``MAX_BATCH_BYTES``, ``FILE_DELETE_DELAY_MS``) with their reason.
    * No logging, locking or allocation beyond the header copy and the result tuple on the append path;
      run ``python bench/storage.py`` before changing it.

Concurrency
    A Log belongs to one thread ("event-loop thread only"): the broker's loop, or a test. Its syncer
    thread touches only the durability state, under ``_lock``. Methods that do file I/O beyond page-cache
    writes say "blocks": ``open``, ``flush``, ``close``, ``delete``; the rest copy into or out of the page
    cache and are fine on the loop.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

from . import stats
from .files import FileRegion
from .loader import LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE, fsync_dir, load_log, write_offset_file
from .records import (
    HEADER_SIZE,
    TIMESTAMP_TYPE_BIT,
    BatchHeader,
    CorruptBatchError,
    Record,
    StorageError,
    UnsupportedCompressionError,
    build_batch,
    decode_records,
    patched_header,
    read_header,
    validate_batch,
)
from .segment import LogSegment
from .sync import Syncer

__all__ = [
    "LogConfig",
    "Log",
    "AppendResult",
    "SegmentInfo",
    "RecordTooLargeError",
    "OffsetOutOfRangeError",
    "LogClosedError",
    "LogFailedError",
    "MAX_BATCH_BYTES",
    "FILE_DELETE_DELAY_MS",
    "FSYNC_POLICIES",
    "MAX_SEGMENT_BYTES",
    "BATCH_READ_CHUNK",
]

#: Largest batch one append accepts. Kafka's message.max.bytes is ~1 MiB; we allow 8 MiB so AMQP bodies
#: of a few MiB fit in one entry. Configurable per log (LogConfig.max_batch_bytes).
MAX_BATCH_BYTES = 8 << 20
#: How long a deleted segment's files stay open (renamed ``*.deleted``) before they are closed and
#: unlinked, so FileRegions already handed to a sender stay valid. Kafka file.delete.delay.ms default.
FILE_DELETE_DELAY_MS = 60_000
#: Positions are stored as uint32 but Kafka caps log.segment.bytes at Integer.MAX_VALUE; so do we.
MAX_SEGMENT_BYTES = (1 << 31) - 1
#: Bytes per pread in ``Log.batches``: big enough to amortise the syscall over many small batches.
BATCH_READ_CHUNK = 256 << 10
FSYNC_POLICIES = ("always", "interval", "never")


class RecordTooLargeError(StorageError):
    """The batch is larger than ``max_batch_bytes`` (Kafka MESSAGE_TOO_LARGE)."""


class OffsetOutOfRangeError(StorageError):
    """The offset is below the log start offset or past the end (Kafka OFFSET_OUT_OF_RANGE)."""


class LogClosedError(StorageError):
    """The log was closed."""


class LogFailedError(StorageError):
    """A write or fsync failed; the log refuses appends (as Kafka takes a failed log dir offline).
    After an fsync error the page cache can no longer be trusted to reach disk, so retrying is wrong."""


@dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 1 << 30  # Kafka log.segment.bytes default
    segment_ms: int = 7 * 24 * 3600 * 1000  # Kafka log.roll.ms default
    index_interval_bytes: int = 4096  # Kafka log.index.interval.bytes default
    retention_ms: int = -1  # -1 = unlimited
    retention_bytes: int = -1  # -1 = unlimited
    fsync: str = "interval"  # "always" | "interval" | "never"
    fsync_interval_ms: int = 5
    max_batch_bytes: int = MAX_BATCH_BYTES
    file_delete_delay_ms: int = FILE_DELETE_DELAY_MS
    #: Kafka cleanup.policy: "delete" (time/size retention), "compact" (compaction.py), or both.
    cleanup_policy: str = "delete"
    delete_retention_ms: int = 86_400_000  # Kafka delete.retention.ms: how long tombstones survive compaction
    min_compaction_lag_ms: int = 0  # Kafka min.compaction.lag.ms

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {self.fsync!r}")
        if not HEADER_SIZE <= self.segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in [{HEADER_SIZE}, {MAX_SEGMENT_BYTES}]")
        if self.segment_ms <= 0 or self.index_interval_bytes < 0 or self.fsync_interval_ms < 0:
            raise ValueError("segment_ms must be > 0, index_interval_bytes and fsync_interval_ms >= 0")
        if self.max_batch_bytes < HEADER_SIZE or self.file_delete_delay_ms < 0:
            raise ValueError("max_batch_bytes must hold a header; file_delete_delay_ms must be >= 0")


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    timestamp_ms: int  # the LogAppendTime given to the batch, or -1 (CreateTime)
    position: int  # byte position of the batch in its segment


class SegmentInfo(NamedTuple):
    base_offset: int
    next_offset: int  # one past the last offset in the segment
    size: int
    max_timestamp: int  # -1 if no batch carried a timestamp


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _drop_covered_segments(path: str, segments: list[LogSegment]) -> None:
    """Remove segments whose offsets a previous segment already covers: what a crash leaves between
    compaction's swap of a merged segment and the removal of the segments it replaced (compaction.py)."""
    i = 1
    while i < len(segments) - 1:  # never the active (last) segment
        prev, seg = segments[i - 1], segments[i]
        if seg.base_offset < prev.next_offset and seg.next_offset <= prev.next_offset:
            seg.close()
            for suffix in (".log", ".index", ".timeindex"):
                try:
                    os.unlink(os.path.join(path, f"{seg.base_offset:020d}{suffix}"))
                except FileNotFoundError:
                    pass
            del segments[i]
            continue
        i += 1


class Log:
    """See the module docstring. Create with :meth:`open`."""

    def __init__(self, path: str, config: LogConfig, syncer: Syncer, own_syncer: bool, clock, loaded) -> None:
        self.path = path
        self.config = config
        self._clock = clock
        self._syncer = syncer
        self._own_syncer = own_syncer
        self._segments: list[LogSegment] = loaded.segments
        self._bases: list[int] = [s.base_offset for s in self._segments]
        self._active: LogSegment = self._segments[-1]
        self._start_offset: int = loaded.start_offset
        self._end_offset: int = self._active.next_offset
        self.load_result = loaded
        self._policy = config.fsync
        self._never = config.fsync == "never"
        self._sync_delay_s = 0.0 if config.fsync != "interval" else config.fsync_interval_ms / 1000.0
        self._max_batch = config.max_batch_bytes
        self._segment_bytes = config.segment_bytes
        self._segment_ms = config.segment_ms
        # Durability state, shared with the syncer thread under _lock.
        self._lock = threading.Lock()
        self._round_lock = threading.Lock()  # one sync round at a time (worker vs flush/close)
        self._rp_lock = threading.Lock()
        self._durable = self._end_offset  # everything loaded was fsynced by the loader or before
        self._waiters: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._sealed: list[LogSegment] = []
        self._sync_pending = False
        self._dir_dirty = False
        self._closed = False
        self.failure: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path,
        config: LogConfig = LogConfig(),
        *,
        syncer: Syncer | None = None,
        clock: Callable[[], int] = _wall_clock_ms,
    ) -> "Log":
        """Open (creating if needed) the log in directory ``path`` and run recovery (loader.py).

        Without a ``syncer`` the log starts a private :class:`~omnibus.storage.sync.Syncer` with
        ``dispatch=None`` (callbacks then run on that syncer's thread) and closes it in :meth:`close`.
        A shared syncer is started if it was not yet; close it after its logs.
        Blocks: run in an executor when called from an event loop.
        """
        path = os.fspath(path)
        if not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            fsync_dir(os.path.dirname(os.path.abspath(path)))
        loaded = load_log(path, index_interval_bytes=config.index_interval_bytes, now_ms=clock())
        _drop_covered_segments(path, loaded.segments)
        own = syncer is None
        if own:
            syncer = Syncer()
        syncer.start()  # idempotent: a shared syncer may already run
        log = cls(path, config, syncer, own, clock, loaded)
        syncer._register(log)
        return log

    def close(self) -> None:
        """Flush (fsync data and indexes, write the recovery point) and close every file. Idempotent.
        Blocks."""
        if self._closed:
            return
        try:
            if self.failure is None:
                self.flush()
        finally:
            with self._round_lock:
                with self._lock:
                    self._closed = True
                for seg in self._segments:
                    seg.close()
            self._syncer._unregister(self)
            if self._own_syncer:
                self._syncer.close()

    def delete(self) -> None:
        """Close the log and remove its directory. Blocks."""
        if not self._closed:
            with self._lock:
                self.failure = self.failure or LogClosedError("deleted")  # skip the flush
            self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "Log":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- properties -----------------------------------------------------------------------------------

    @property
    def start_offset(self) -> int:
        """The log start offset: the first offset a reader may ask for."""
        return self._start_offset

    @property
    def end_offset(self) -> int:
        """The next offset to assign (Kafka log end offset)."""
        return self._end_offset

    @property
    def durable_offset(self) -> int:
        """Every offset below this is durable under the log's policy (policy never: the end offset)."""
        return self._end_offset if self._never else self._durable

    @property
    def recovery_point(self) -> int:
        return self.load_result.recovery_point

    @property
    def syncer(self) -> Syncer:
        return self._syncer

    @property
    def closed(self) -> bool:
        return self._closed

    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    # -- append ---------------------------------------------------------------------------------------

    def reconfigure(self, config: LogConfig) -> None:
        """Apply a new config (Kafka AlterConfigs on a topic): segment size/age, batch limit and retention
        take effect from the next append or retention check. The fsync policy is kept. Event-loop thread."""
        if config.fsync != self.config.fsync or config.fsync_interval_ms != self.config.fsync_interval_ms:
            raise ValueError("the fsync policy of an open log cannot change")
        self.config = config
        self._max_batch = config.max_batch_bytes
        self._segment_bytes = config.segment_bytes
        self._segment_ms = config.segment_ms

    def append(self, batch, *, log_append_time: bool = False) -> AppendResult:
        """Append one v2 record batch; returns its assigned offsets. Event-loop thread only.

        Raises CorruptBatchError (bad CRC/structure, not exactly one batch, no records),
        RecordTooLargeError, LogClosedError, LogFailedError. The batch buffer is not modified.
        """
        if self._closed:
            raise LogClosedError(self.path)
        if self.failure is not None:
            raise LogFailedError(f"{self.path}: {self.failure}") from self.failure
        mv = batch if type(batch) is memoryview else memoryview(batch)
        n = mv.nbytes
        if n > self._max_batch:
            raise RecordTooLargeError(f"batch of {n} bytes exceeds max_batch_bytes {self._max_batch}")
        h = validate_batch(mv)
        if h.batch_length + 12 != n:
            raise CorruptBatchError(f"buffer holds {n} bytes but the batch is {h.batch_length + 12}")
        if h.records_count != h.last_offset_delta + 1:
            raise CorruptBatchError(
                f"recordsCount {h.records_count} does not match lastOffsetDelta {h.last_offset_delta}"
            )
        base = self._end_offset
        next_offset = base + h.last_offset_delta + 1
        seg = self._active
        now = self._clock()
        if seg.size and (
            seg.size + n > self._segment_bytes
            or now - seg.created_ms >= self._segment_ms
            or not seg.can_hold(next_offset - 1)
        ):
            seg = self._roll(now)
        if log_append_time:
            head = patched_header(mv, base, now)
            max_ts = now
            ts = now
        else:
            head = patched_header(mv, base, None)
            max_ts = h.max_timestamp
            ts = -1
        try:
            pos = seg.append(head, mv[HEADER_SIZE:], base, next_offset, max_ts)
        except OSError as e:
            self.failure = e
            raise LogFailedError(f"{self.path}: write failed: {e}") from e
        self._end_offset = next_offset
        stats.appends += 1
        stats.bytes_appended += n
        if not self._never and not self._sync_pending:
            self._request_sync()
        return AppendResult(base, next_offset - 1, ts, pos)

    def append_records(self, records: Iterable[Record], *, log_append_time: bool = False) -> AppendResult:
        """Convenience: :func:`~omnibus.storage.records.build_batch` (timestamps from the log's clock
        where unset) then :meth:`append`."""
        return self.append(build_batch(records, now_ms=self._clock()), log_append_time=log_append_time)

    def roll(self) -> None:
        """Start a new active segment now (no-op if the active one is empty)."""
        if self._active.size:
            self._roll(self._clock())

    def _roll(self, now: int) -> LogSegment:
        old = self._active
        old.seal()
        new = LogSegment.create(
            self.path, self._end_offset, index_interval_bytes=self.config.index_interval_bytes, now_ms=now
        )
        with self._lock:
            self._sealed.append(old)
            self._segments.append(new)
            self._bases.append(new.base_offset)
            self._active = new
            self._dir_dirty = True
        self._request_sync(0.0)  # seal promptly under every policy (Kafka flushes on roll too)
        return new

    # -- durability -----------------------------------------------------------------------------------

    def _request_sync(self, delay_s: float | None = None) -> None:
        with self._lock:
            if self._sync_pending and delay_s is None:
                return
            self._sync_pending = True
        self._syncer._request(self, self._sync_delay_s if delay_s is None else delay_s)

    def when_durable(self, offset: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once every entry up to and including ``offset`` is durable.

        Policy never, or already durable: called now, inline. Otherwise called after the fsync that
        covers it, through the syncer's dispatch (on the syncer thread if dispatch is None). If the log
        fails (fsync error) pending callbacks are never called; see :attr:`failure`.
        """
        if self._never or offset < self._durable:
            callback()
            return
        with self._lock:
            if offset >= self._durable:
                heapq.heappush(self._waiters, (offset, next(self._seq), callback))
                return
        callback()

    def flush(self) -> None:
        """fsync everything appended so far (data, indexes, directory), write the recovery point, and
        fire the callbacks it satisfies. Blocks; owner thread."""
        if self._closed:
            return
        self._active.seal()
        self._sync_round(force=True, active_indexes=True)
        if self.failure is not None:
            raise LogFailedError(f"{self.path}: {self.failure}") from self.failure

    def _sync_round(self, *, force: bool, active_indexes: bool = False) -> None:
        """One group commit: fsync what was written before the round started, then release waiters.
        Runs on the syncer thread (force=False) or the owner thread (flush). Blocks."""
        with self._round_lock:
            with self._lock:
                if self._closed:
                    return
                self._sync_pending = False
                sealed, self._sealed = self._sealed, []
                active = self._active
                target = self._end_offset
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            fsyncs = 0
            try:
                for seg in sealed:
                    if seg.sync_data():
                        fsyncs += 1
                    if not seg.deleted:
                        seg.flush_indexes(sync=True)
                        fsyncs += 2
                if dir_dirty:
                    fsync_dir(self.path)
                    fsyncs += 1
                if force or not self._never:
                    if active.sync_data():
                        fsyncs += 1
                if active_indexes:
                    active.flush_indexes(sync=True)
                    fsyncs += 2
                if sealed or active_indexes:
                    self._write_recovery_point(target if active_indexes else active.base_offset)
                    fsyncs += 2
            except OSError as e:
                self.failure = e
                self._syncer._count(fsyncs, error=True)
                return
            self._syncer._count(fsyncs)
            ready = None
            with self._lock:
                if (force or not self._never) and target > self._durable:
                    self._durable = target
                waiters = self._waiters
                if waiters and waiters[0][0] < self._durable:
                    ready = []
                    durable = self._durable
                    while waiters and waiters[0][0] < durable:
                        ready.append(heapq.heappop(waiters)[2])
        if ready:
            self._syncer._deliver(ready)

    def _write_recovery_point(self, offset: int) -> None:
        with self._rp_lock:
            if offset > self.load_result.recovery_point:
                write_offset_file(os.path.join(self.path, RECOVERY_POINT_FILE), offset, sync=True)
                self.load_result.recovery_point = offset

    # -- reads ----------------------------------------------------------------------------------------

    def _check_offset(self, offset: int) -> None:
        if offset < self._start_offset or offset > self._end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} outside [{self._start_offset}, {self._end_offset}] of {self.path}"
            )

    def _segment_index(self, offset: int) -> int:
        i = bisect_right(self._bases, offset) - 1
        return i if i > 0 else 0

    def read(self, offset: int, max_bytes: int, below: int | None = None) -> list[FileRegion]:
        """File regions of whole batches, starting with the batch that contains ``offset`` (which may
        begin before it), up to ``max_bytes`` in total but always at least one batch (KIP-74). Empty at
        the end of the log. Regions may span segments (one region per segment). With ``below`` (an
        offset where a batch starts, e.g. Kafka's last stable offset), nothing from that batch on.

        A region's fd stays valid until its segment is deleted plus ``file_delete_delay_ms``, or the
        log is closed. Event-loop thread only.
        """
        self._check_offset(offset)
        if offset == self._end_offset or (below is not None and offset >= below):
            return []
        segments = self._segments
        i = self._segment_index(offset)
        regions: list[FileRegion] = []
        budget = max_bytes
        while i < len(segments):
            seg = segments[i]
            found = seg.find_batch(offset)
            if found is not None:
                pos, h = found
                first_size = h.batch_length + 12
                if regions and first_size > budget:
                    break
                region = seg.region(pos, first_size, budget)
                regions.append(region)
                budget -= region.size
                if budget <= 0:
                    break
            i += 1
            if i < len(segments):
                offset = segments[i].base_offset
        if below is not None and below < self._end_offset:
            regions = self._cut_at(regions, below)
        return regions

    def _cut_at(self, regions: list[FileRegion], offset: int) -> list[FileRegion]:
        """``regions`` without the batch that starts at ``offset`` and everything after it."""
        seg = self._segments[self._segment_index(offset)]
        found = seg.find_batch(offset)
        if found is None:
            return regions
        cut = found[0]
        out = []
        for r in regions:
            if r.fd == seg.fd:
                if r.position < cut:
                    out.append(FileRegion(r.fd, r.position, min(r.size, cut - r.position)))
                break
            out.append(r)
        return out

    def read_bytes(self, offset: int, max_bytes: int) -> bytes:
        """Like :meth:`read` but copied into one bytes object with pread."""
        parts = [os.pread(r.fd, r.size, r.position) for r in self.read(offset, max_bytes)]
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def batches(self, offset: int) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Every batch from the one containing ``offset`` to the end, as (header, view of the whole
        batch). Reads ``BATCH_READ_CHUNK`` bytes per pread; sees appends made while iterating. CRCs are
        not re-checked (append did). Event-loop thread only."""
        self._check_offset(offset)
        while offset < self._end_offset:
            segments = self._segments
            i = self._segment_index(offset)
            seg = segments[i]
            found = seg.find_batch(offset)
            if found is None:
                if i + 1 < len(segments):
                    offset = segments[i + 1].base_offset
                    continue
                return
            pos = found[0]
            while pos + HEADER_SIZE <= seg.size:
                buf = os.pread(seg.fd, min(BATCH_READ_CHUNK, seg.size - pos), pos)
                mv = memoryview(buf)
                b = 0
                blen = len(buf)
                while b + HEADER_SIZE <= blen:
                    h = read_header(mv, b)
                    end = b + h.batch_length + 12
                    if end > blen:
                        break
                    yield h, mv[b:end]
                    offset = h.base_offset + h.last_offset_delta + 1
                    b = end
                if b == 0:  # one batch larger than the chunk
                    h = read_header(mv, 0)
                    whole = memoryview(os.pread(seg.fd, h.batch_length + 12, pos))
                    yield h, whole
                    offset = h.base_offset + h.last_offset_delta + 1
                    b = len(whole)
                pos += b

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset (>= start offset) whose record timestamp is >= ``timestamp_ms``, or None
        (Kafka ListOffsets by timestamp; the special -1/-2 targets are the caller's business).
        Compressed batches we cannot decode answer with their base offset."""
        for seg in self._segments:
            if seg.max_timestamp < timestamp_ms or seg.next_offset <= self._start_offset:
                continue
            found = seg.find_offset_by_timestamp(timestamp_ms)
            if found is None:
                continue
            start = max(found[1].base_offset, self._start_offset)
            for h, view in self.batches(start):
                if h.max_timestamp < timestamp_ms:
                    continue
                if h.attributes & TIMESTAMP_TYPE_BIT:
                    return max(h.base_offset, self._start_offset)
                try:
                    records = decode_records(view, validate=False)
                except UnsupportedCompressionError:
                    return max(h.base_offset, self._start_offset)
                for off, rec in records:
                    if off >= self._start_offset and rec.timestamp_ms >= timestamp_ms:
                        return off
            return None
        return None

    # -- segments and retention -----------------------------------------------------------------------

    def segments(self) -> list[SegmentInfo]:
        return [SegmentInfo(s.base_offset, s.next_offset, s.size, s.max_timestamp) for s in self._segments]

    def segment_base(self, offset: int) -> int | None:
        """Base offset of the segment holding ``offset``, or None (below the first segment, in a gap,
        or at/past the end)."""
        i = bisect_right(self._bases, offset) - 1
        if i < 0 or offset >= self._segments[i].next_offset:
            return None
        return self._bases[i]

    def delete_segment(self, base_offset: int) -> None:
        """Delete the (non-active) segment starting at ``base_offset``; if it was the first one, the
        start offset moves to the next segment. Files are renamed now, unlinked later (module doc)."""
        i = bisect_right(self._bases, base_offset) - 1
        if i < 0 or self._bases[i] != base_offset:
            raise KeyError(f"no segment with base offset {base_offset}")
        seg = self._segments[i]
        if seg is self._active:
            raise ValueError("cannot delete the active segment")
        self._remove_segment(i)
        if i == 0:
            self._set_start_offset(max(self._start_offset, self._segments[0].base_offset))

    def _replace_segments(self, olds: list[LogSegment], new: LogSegment) -> None:
        """Compaction (compaction.install, after the files were swapped by rename): ``new`` covers the
        offsets of the consecutive segments ``olds`` and takes their place; their fds close after
        ``file_delete_delay_ms`` so regions already handed out stay valid. Event-loop thread only."""
        with self._lock:
            i = self._segments.index(olds[0])
            if self._segments[i:i + len(olds)] != olds:
                raise ValueError("segments to replace are not consecutive")
            self._segments[i:i + len(olds)] = [new]
            self._bases[i:i + len(olds)] = [new.base_offset]
        for old in olds:
            old.deleted = True
            self._syncer._schedule_destroy(old, self.config.file_delete_delay_ms / 1000.0)

    def _remove_segment(self, i: int) -> None:
        with self._lock:
            seg = self._segments.pop(i)
            self._bases.pop(i)
        seg.rename_for_delete()
        self._syncer._schedule_destroy(seg, self.config.file_delete_delay_ms / 1000.0)

    def _set_start_offset(self, offset: int) -> None:
        if offset != self._start_offset:
            self._start_offset = offset
            # Not fsynced: losing it in a crash only makes already-deleted records visible again.
            write_offset_file(os.path.join(self.path, LOG_START_OFFSET_FILE), offset, sync=False)

    def delete_records(self, before_offset: int) -> int:
        """Move the start offset up to ``before_offset`` (Kafka DeleteRecords) and delete every segment
        wholly below it (never the active one). Returns the new start offset (the low watermark)."""
        if before_offset > self._end_offset or before_offset < 0:
            raise OffsetOutOfRangeError(f"{before_offset} is past the end offset {self._end_offset}")
        if before_offset <= self._start_offset:
            return self._start_offset
        while len(self._segments) > 1 and self._segments[0].next_offset <= before_offset:
            self._remove_segment(0)
        self._set_start_offset(before_offset)
        return before_offset

    def enforce_retention(self) -> int:
        """Delete the oldest segments that break retention; returns how many (Kafka
        UnifiedLog.deleteRetentionMsBreachedSegments / deleteRetentionSizeBreachedSegments). By time: a
        segment goes once ``now - max_timestamp > retention_ms`` (file mtime when no batch had a
        timestamp). By size: oldest first, while the log stays >= retention_bytes without it. Scans stop
        at the first segment to keep; the active segment is never deleted."""
        deleted = 0
        cfg = self.config
        if "delete" not in cfg.cleanup_policy:  # Kafka: a compact-only topic is never trimmed by time/size
            return 0
        if cfg.retention_ms >= 0:
            now = self._clock()
            while len(self._segments) > 1:
                seg = self._segments[0]
                ts = seg.max_timestamp
                if ts < 0:
                    ts = int(os.fstat(seg.fd).st_mtime * 1000)
                if now - ts <= cfg.retention_ms:
                    break
                self._remove_segment(0)
                deleted += 1
        if cfg.retention_bytes >= 0:
            excess = self.size_bytes() - cfg.retention_bytes
            while len(self._segments) > 1 and excess - self._segments[0].size >= 0:
                excess -= self._segments[0].size
                self._remove_segment(0)
                deleted += 1
        if deleted:
            self._set_start_offset(max(self._start_offset, self._segments[0].base_offset))
        return deleted

    def __repr__(self) -> str:
        return f"Log({self.path!r}, start={self._start_offset}, end={self._end_offset})"
