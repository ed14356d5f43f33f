"""Log compaction (Kafka ``cleanup.policy=compact``, LogCleaner.scala): keep the latest record per key.

Strategy, in three steps so the event loop never waits on the disk work:

1. :func:`plan` (log's thread): pick the *cleanable* segments: closed ones (never the active segment,
   nor one whose seal the syncer has not fsynced yet), oldest first, stopping at the first segment whose
   newest record is younger than ``min_compaction_lag_ms``. Each gets a private dup of its fd.
2. :func:`build` (any thread; blocks): pass one reads every cleanable batch and maps each key to its
   latest offset; pass two groups consecutive segments (up to ``segment_bytes`` of input, Kafka's
   groupSegmentsBySize) and streams each group that loses records, or merges several segments, into one
   new segment under ``<log>/.cleaner/``: a batch keeps the records that are the latest for their key
   (tombstones -- null values -- until their delete horizon: as Kafka 3.x does (KIP-534), the first clean
   that keeps a tombstone stamps its batch with ``now + delete_retention_ms``, and a clean after that
   removes it),
   re-encoded with their original offsets, timestamps, producer fields and attributes. Offsets stay
   (gaps are fine in Kafka). A batch whose records all stay is copied byte for byte. The new segment is
   opened with :class:`LogSegment` and recovered (CRC-checked, indexes built), then fsynced.
3. :func:`install` (log's thread): swap each rebuilt segment in, crash-safely, with renames only: the
   old segments' index files are renamed ``*.deleted`` (a crash now leaves the old ``.log`` files without
   indexes: the loader rebuilds them); ``os.replace`` puts the cleaned ``.log`` over the group's first
   one -- the one atomic step that commits the clean; the group's other ``.log`` files are renamed
   ``*.deleted`` (a crash before that leaves segments wholly covered by the merged one, which
   ``Log.open`` drops); the new indexes are moved in. ``.cleaner/`` leftovers of a crash are removed by
   the next run, and the loader never looks into directories. The old segments' fds stay open for
   ``file_delete_delay_ms`` so file regions already handed to a sender stay valid, as for a deleted
   segment.

Offsets within a segment must stay contiguous from batch to batch (the loader checks it to find torn
writes), so the output *tiles* the group's offset range: a gap left by removed batches is covered by
stretching the previous batch's ``lastOffsetDelta`` over it (a header patch and a new CRC; Kafka's own
cleaner also keeps ``lastOffsetDelta`` when it drops a batch's last records), or at the start by moving
the first re-encoded batch's base offset back -- but only for plain batches: an idempotent,
transactional or control batch keeps its exact span (producer state is replayed from those headers), and
the gap next to it gets an empty batch (recordsCount 0), which Kafka's cleaner writes too and clients
step over. A group left with no records at all is deleted -- except the one holding the log's first
segment, which stays as a single empty batch so the log start offset does not move (consumers at old
offsets read on from the next data, as with Kafka).

What is left untouched (kept byte for byte, and not counted as the latest value of their keys):
control batches and transactional batches (Kafka removes aborted data and old markers; we keep them,
which is safe but keeps more), and batches compressed with a codec :mod:`records` cannot decode (snappy,
lz4, zstd). Records without a key are removed, as Kafka's cleaner does.

Concurrency: ``plan``/``install`` on the log's thread (event loop); ``build`` touches only dup'd fds and
``.cleaner/``, so it runs in a worker thread while the log keeps appending.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from typing import Callable

from crc32c import crc32c

from .loader import fsync_dir
from .log import Log
from .records import (
    COMPRESSION_GZIP,
    COMPRESSION_NONE,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    CorruptBatchError,
    UnsupportedCompressionError,
    decode_records,
    _CRC_AT,
    _CRC_FROM,
    encode_varint,
    read_header,
    seal_crc,
)
from .index import MAX_RELATIVE_OFFSET
from .segment import DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment, segment_path

__all__ = ["CLEANER_DIR", "CleanResult", "Plan", "plan", "build", "install", "compact"]

#: Scratch directory inside a log directory for segments being rebuilt.
CLEANER_DIR = ".cleaner"
#: Bytes per pread while scanning a segment.
READ_CHUNK = 1 << 20
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_LAST_OFFSET_DELTA_AT = 23
#: Kafka DefaultRecordBatch.DELETE_HORIZON_FLAG_MASK (KIP-534): baseTimestamp holds the delete horizon.
DELETE_HORIZON_BIT = 0x40

#: Test hook: called with a step name during :func:`install` (a crash test makes it ``os._exit``).
SWAP_HOOK: Callable[[str], None] | None = None


@dataclass
class _Seg:
    seg: LogSegment
    base: int
    next_offset: int
    size: int
    fd: int


@dataclass
class Plan:
    log_path: str
    segments: list[_Seg]
    now_ms: int
    delete_retention_ms: int
    index_interval_bytes: int
    first_base: int  # base offset of the log's first segment
    segment_bytes: int  # input bytes merged into one cleaned segment at most

    @property
    def clean_point(self) -> int:
        """One past the last offset this plan covers."""
        return self.segments[-1].next_offset

    def release(self) -> None:
        """Close the plan's fds without building (a caller that decides not to clean after all)."""
        for s in self.segments:
            os.close(s.fd)
        self.segments = []


@dataclass
class CleanResult:
    """What one compaction did."""

    segments_rewritten: int = 0
    segments_deleted: int = 0
    records_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    #: (old segment, new segment or None to delete, records removed); filled by build, used by install.
    swaps: list = field(default_factory=list)


# -- step 1 ------------------------------------------------------------------------------------------

def plan(log: Log, now_ms: int | None = None) -> Plan | None:
    """The cleanable segments of ``log`` (module docstring), or None if there is nothing to do.
    Log's thread."""
    cfg = log.config
    if "compact" not in cfg.cleanup_policy or log.closed or log.failure is not None:
        return None
    now = log._clock() if now_ms is None else now_ms
    with log._lock:
        closed = log._segments[:-1]
        unsynced = set(map(id, log._sealed))
    chosen: list[_Seg] = []
    for seg in closed:
        if id(seg) in unsynced or seg.deleted:
            break
        if seg.max_timestamp >= 0 and now - seg.max_timestamp < cfg.min_compaction_lag_ms:
            break
        fd = seg.dup_fd()
        if fd is None:
            break
        chosen.append(_Seg(seg, seg.base_offset, seg.next_offset, seg.size, fd))
    if not chosen:
        return None
    return Plan(log.path, chosen, now, cfg.delete_retention_ms, cfg.index_interval_bytes, closed[0].base_offset,
                cfg.segment_bytes)


# -- step 2 ------------------------------------------------------------------------------------------

def _batches(fd: int, size: int):
    """(header, bytes of the whole batch) for every batch in a segment file."""
    pos = 0
    while pos + HEADER_SIZE <= size:
        chunk = os.pread(fd, min(READ_CHUNK, size - pos), pos)
        mv = memoryview(chunk)
        b = 0
        while b + HEADER_SIZE <= len(chunk):
            h = read_header(mv, b)
            end = b + h.batch_length + LOG_OVERHEAD
            if end > len(chunk):
                break
            yield h, mv[b:end]
            b = end
        if b == 0:
            h = read_header(mv, 0)
            whole = os.pread(fd, h.batch_length + LOG_OVERHEAD, pos)
            if len(whole) < h.batch_length + LOG_OVERHEAD:
                raise CorruptBatchError(f"truncated batch at position {pos}")
            yield h, memoryview(whole)
            b = len(whole)
        pos += b


def _decodable(h: BatchHeader) -> bool:
    return not (h.is_control or h.is_transactional) and h.compression in (COMPRESSION_NONE, COMPRESSION_GZIP)


def _records(h: BatchHeader, view: memoryview):
    """The batch's records, or None when it is kept verbatim (undecodable or malformed)."""
    if not _decodable(h):
        return None
    try:
        return decode_records(view, validate=True)
    except (CorruptBatchError, UnsupportedCompressionError):
        return None


def _encode_batch(h: BatchHeader, base: int, last_offset: int, records: list, horizon: int | None = None) -> bytes:
    """A v2 batch holding ``records`` ((offset, Record) pairs) at their own offsets and timestamps, with
    ``h``'s producer fields and attributes, spanning [base, last_offset]. With ``horizon`` the batch gets
    Kafka's delete horizon (KIP-534: attributes bit 6, the horizon in the baseTimestamp field; record
    timestamps stay, their deltas are taken from it)."""
    import zlib

    lat = h.log_append_time
    attributes = h.attributes
    if horizon is not None:
        attributes |= DELETE_HORIZON_BIT
        base_ts = horizon
    elif attributes & DELETE_HORIZON_BIT or lat:
        base_ts = h.base_timestamp
    else:
        base_ts = min(r.timestamp_ms for _, r in records)
    max_ts = h.max_timestamp if lat else max(r.timestamp_ms for _, r in records)
    parts = []
    for off, rec in records:
        ts_delta = 0 if lat else rec.timestamp_ms - base_ts
        body = [b"\x00", encode_varint(ts_delta), encode_varint(off - base)]
        for blob in (rec.key, rec.value):
            if blob is None:
                body.append(encode_varint(-1))
            else:
                body.append(encode_varint(len(blob)))
                body.append(blob)
        body.append(encode_varint(len(rec.headers)))
        for hk, hv in rec.headers:
            hkb = hk.encode()
            body += [encode_varint(len(hkb)), hkb]
            if hv is None:
                body.append(encode_varint(-1))
            else:
                body += [encode_varint(len(hv)), hv]
        data = b"".join(body)
        parts.append(encode_varint(len(data)))
        parts.append(data)
    payload = b"".join(parts)
    if h.compression == COMPRESSION_GZIP:
        c = zlib.compressobj(wbits=31)
        payload = c.compress(payload) + c.flush()
    head = bytearray(HEADER.pack(base, HEADER_SIZE - LOG_OVERHEAD + len(payload), h.partition_leader_epoch, MAGIC, 0,
                                 attributes, last_offset - base, base_ts, max_ts, h.producer_id, h.producer_epoch,
                                 h.base_sequence, len(records)))
    _U32.pack_into(head, _CRC_AT, crc32c(payload, crc32c(memoryview(head)[_CRC_FROM:])))
    return bytes(head) + payload


def _stretch(batch: bytes, last_offset: int) -> bytes:
    """``batch`` with its lastOffsetDelta moved so it ends at ``last_offset`` (new CRC; records untouched)."""
    b = bytearray(batch)
    h = read_header(b)
    _I32.pack_into(b, _LAST_OFFSET_DELTA_AT, last_offset - h.base_offset)
    seal_crc(b)
    return bytes(b)


def _empty_batch(base: int, last_offset: int) -> bytes:
    """A header-only batch (recordsCount 0) covering [base, last_offset]: what Kafka's cleaner leaves too."""
    head = bytearray(HEADER.pack(base, HEADER_SIZE - LOG_OVERHEAD, -1, MAGIC, 0, 0, last_offset - base, -1, -1, -1,
                                 -1, -1, 0))
    seal_crc(head)
    return bytes(head)


class _Out:
    """One output batch: verbatim bytes, or retained records to encode (with the source header)."""

    __slots__ = ("h", "raw", "records", "base", "last", "horizon")

    def __init__(self, h: BatchHeader, raw: bytes | None, records: list | None, horizon: int | None = None) -> None:
        self.h, self.raw, self.records, self.horizon = h, raw, records, horizon
        self.base, self.last = h.base_offset, h.base_offset + h.last_offset_delta

    def encode(self) -> bytes:
        if self.raw is not None:
            if self.last != self.h.base_offset + self.h.last_offset_delta:
                return _stretch(self.raw, self.last)
            return self.raw
        return _encode_batch(self.h, self.base, self.last, self.records or [], self.horizon)


def _plain(o: _Out) -> bool:
    """A batch whose offset span may change: no producer state (sequences map to offsets), not part of a
    transaction, not a control marker."""
    return o.h.producer_id < 0 and not o.h.is_control and not o.h.is_transactional


class _Writer:
    """Writes one cleaned segment file, streaming: batches go out as they come, each held back by one so a
    gap after it can still be covered by stretching it. The output tiles [base, next_offset) without a
    hole (module docstring): a gap after a plain batch is covered by stretching it, a gap at the start by
    moving a plain re-encoded batch's base back, any other gap by an empty batch, as Kafka's cleaner
    leaves for producer state."""

    def __init__(self, scratch: str, base: int) -> None:
        try:
            os.mkdir(scratch)  # not makedirs: a log deleted meanwhile must not come back as an empty directory
        except FileExistsError:
            pass
        self.scratch = scratch
        self.base = base
        self.fd = os.open(segment_path(scratch, base, LOG_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.pos = 0
        self.cursor = base
        self.pending: _Out | tuple[int, int] | None = None

    def _flush(self) -> None:
        item, self.pending = self.pending, None
        if item is None:
            return
        data = memoryview(item.encode() if isinstance(item, _Out) else _empty_batch(*item))
        while data:
            n = os.pwrite(self.fd, data, self.pos)
            self.pos += n
            data = data[n:]

    def _cover(self, until: int, nxt: _Out | None) -> None:
        """Cover the gap [cursor, until) before ``nxt`` (None at the end)."""
        prev = self.pending
        if isinstance(prev, _Out) and _plain(prev):
            prev.last = until - 1
        elif prev is None and nxt is not None and nxt.raw is None and _plain(nxt):
            nxt.base = self.cursor
        else:
            self._flush()
            self.pending = (self.cursor, until - 1)

    def add(self, o: _Out) -> None:
        if o.base > self.cursor:
            self._cover(o.base, o)
        self._flush()
        self.pending = o
        self.cursor = o.last + 1

    def finish(self, next_offset: int, p: Plan) -> LogSegment:
        """Close the file and open it as a segment (recovered: CRC-checked, indexes built). Blocks."""
        try:
            if self.cursor < next_offset:
                self._cover(next_offset, None)
            self._flush()
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
        seg = LogSegment.open_existing(self.scratch, self.base, index_interval_bytes=p.index_interval_bytes,
                                       now_ms=p.now_ms)
        if seg.recover() or seg.next_offset != next_offset:  # our own output failed validation: a bug
            seg.close()
            raise CorruptBatchError(f"cleaned segment {self.base} did not validate")
        seg.flush_indexes(sync=True)
        return seg

    def discard(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _groups(p: Plan) -> list[list[_Seg]]:
    """Consecutive segments merged into one cleaned segment: up to ``segment_bytes`` of input and offsets a
    segment's relative index can hold (Kafka LogCleaner.groupSegmentsBySize)."""
    groups: list[list[_Seg]] = []
    for s in p.segments:
        g = groups[-1] if groups else None
        if g is not None and sum(x.size for x in g) + s.size <= p.segment_bytes and \
                s.next_offset - 1 - g[0].base <= MAX_RELATIVE_OFFSET:
            g.append(s)
        else:
            groups.append([s])
    return groups


def build(p: Plan) -> CleanResult:
    """Step 2 (module docstring). Blocks: run in a worker thread. Closes the plan's fds."""
    result = CleanResult()
    scratch = os.path.join(p.log_path, CLEANER_DIR)
    try:
        shutil.rmtree(scratch, ignore_errors=True)
        # Pass 1: key -> latest offset over the cleanable segments.
        latest: dict[bytes, int] = {}
        for s in p.segments:
            for h, view in _batches(s.fd, s.size):
                recs = _records(h, view)
                if recs:
                    for off, rec in recs:
                        if rec.key is not None:
                            latest[rec.key] = off
        # Pass 2: rewrite each group that loses records or merges segments.
        for group in _groups(p):
            base, next_offset = group[0].base, group[-1].next_offset
            writer = _Writer(scratch, base)
            removed = kept = 0
            horizons = False
            try:
                for s in group:
                    for h, view in _batches(s.fd, s.size):
                        recs = _records(h, view)
                        if recs is None:
                            writer.add(_Out(h, bytes(view), None))
                            kept += 1
                            continue
                        # Tombstones go once the delete horizon their batch got when first cleaned has passed.
                        has_horizon = bool(h.attributes & DELETE_HORIZON_BIT)
                        expired = has_horizon and p.now_ms >= h.base_timestamp
                        keep = [(off, rec) for off, rec in recs if rec.key is not None
                                and latest.get(rec.key) == off and not (rec.value is None and expired)]
                        removed += len(recs) - len(keep)
                        kept += len(keep)
                        horizon = None
                        if not has_horizon and any(rec.value is None for _, rec in keep):
                            horizon = p.now_ms + p.delete_retention_ms
                            horizons = True
                        if len(keep) == len(recs) and horizon is None:
                            writer.add(_Out(h, bytes(view), None))
                        elif keep:
                            writer.add(_Out(h, None, keep, horizon))
                if removed == 0 and not horizons and len(group) == 1:  # nothing to gain
                    writer.discard()
                    os.unlink(segment_path(scratch, base, LOG_SUFFIX))
                    continue
                olds = [s.seg for s in group]
                result.records_removed += removed
                result.bytes_before += sum(s.size for s in group)
                if kept == 0 and base != p.first_base:  # nothing left: the segments go
                    writer.discard()
                    os.unlink(segment_path(scratch, base, LOG_SUFFIX))
                    result.swaps.append((olds, None, removed))
                    continue
                # (the log's first segment stays, as one empty batch if need be, so the start offset holds)
                new = writer.finish(next_offset, p)
            except BaseException:
                writer.discard()
                raise
            result.bytes_after += new.size
            result.swaps.append((olds, new, removed))
        if result.swaps:
            fsync_dir(scratch)
    except BaseException:
        for _olds, new, _n in result.swaps:
            if new is not None:
                new.close()
        result.swaps = []
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        for s in p.segments:
            os.close(s.fd)
    return result


# -- step 3 ------------------------------------------------------------------------------------------

def _hook(step: str) -> None:
    if SWAP_HOOK is not None:
        SWAP_HOOK(step)


def install(log: Log, result: CleanResult) -> CleanResult:
    """Step 3 (module docstring): swap the rebuilt segments in. Log's thread. A group with a segment that
    changed meanwhile (deleted by retention or DeleteRecords) is skipped."""
    directory = log.path
    for olds, new, removed in result.swaps:
        if log.closed or any(o.deleted or o not in log._segments for o in olds):
            if new is not None:
                new.close()
            result.records_removed -= removed
            continue
        if new is None:  # nothing left in these segments (never the log's first): they go
            for o in olds:
                log.delete_segment(o.base_offset)
            result.segments_deleted += len(olds)
            continue
        base = olds[0].base_offset
        _hook("start")
        for o in olds:
            o.index.rename(o.index.path + DELETED_SUFFIX)
            o.time_index.rename(o.time_index.path + DELETED_SUFFIX)
        _hook("indexes-renamed")
        # The one atomic step: from here the cleaned data is the log's (a crash before the renames below
        # leaves the merged segments' old files covered by it; Log.open drops them).
        os.replace(segment_path(new.directory, base, LOG_SUFFIX), segment_path(directory, base, LOG_SUFFIX))
        fsync_dir(directory)
        _hook("log-replaced")
        for o in olds[1:]:
            path = segment_path(directory, o.base_offset, LOG_SUFFIX)
            os.rename(path, path + DELETED_SUFFIX)
        if len(olds) > 1:
            fsync_dir(directory)
        _hook("olds-deleted")
        new.index.rename(segment_path(directory, base, INDEX_SUFFIX))
        new.time_index.rename(segment_path(directory, base, TIME_INDEX_SUFFIX))
        new.directory = directory
        fsync_dir(directory)
        _hook("done")
        log._replace_segments(olds, new)
        result.segments_rewritten += len(olds)
    shutil.rmtree(os.path.join(directory, CLEANER_DIR), ignore_errors=True)
    result.swaps = []
    return result


def compact(log: Log, now_ms: int | None = None) -> CleanResult:
    """All three steps on the calling thread (tests, tools). Blocks."""
    p = plan(log, now_ms)
    if p is None:
        return CleanResult()
    return install(log, build(p))
