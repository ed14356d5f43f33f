"""Log compaction (Kafka ``cleanup.policy=compact``, LogCleaner.scala): keep the latest record per key.

Strategy, in three steps so the event loop never waits on the disk work:

1. :func:`plan` (log's thread): pick the *cleanable* segments: closed ones (never the active segment,
   nor one whose seal the syncer has not fsynced yet), oldest first, stopping at the first segment whose
   newest record is younger than ``min_compaction_lag_ms``. Each gets a private dup of its fd.
2. :func:`build` (any thread; blocks): pass one reads every cleanable batch and maps each key to its
   latest offset; pass two rewrites each segment that loses records into ``<log>/.cleaner/``: a batch
   keeps the records that are the latest for their key (tombstones -- null values -- only until
   ``delete_retention_ms`` after their batch's timestamp), re-encoded with their original offsets,
   timestamps, producer fields and attributes. Offsets stay (gaps are fine in Kafka). A batch whose
   records all stay is copied byte for byte. The new segment is opened with :class:`LogSegment` and
   recovered (CRC-checked, indexes built), then fsynced.
3. :func:`install` (log's thread): swap each rebuilt segment in, crash-safely, with renames only:
   the old segment's index files are renamed ``*.deleted`` (a crash now leaves the old ``.log`` without
   indexes: the loader rebuilds them), then ``os.replace`` puts the cleaned ``.log`` over the old one
   in one atomic step (a crash after it leaves the new ``.log`` without indexes: rebuilt too), then the
   new indexes are moved in. ``.cleaner/`` leftovers of a crash are removed by the next run, and the
   loader never looks into directories. The old segment's fd stays open for ``file_delete_delay_ms``
   so file regions already handed to a sender stay valid, as for a deleted segment.

Offsets within a segment must stay contiguous from batch to batch (the loader checks it to find torn
writes), so the output *tiles* the segment's offset range: a gap left by removed batches is covered by
stretching the previous batch's ``lastOffsetDelta`` over it (a header patch and a new CRC; Kafka's own
cleaner also keeps ``lastOffsetDelta`` when it drops a batch's last records), or at the segment's start
by moving the first re-encoded batch's base offset back -- but only for plain batches: an idempotent,
transactional or control batch keeps its exact span (producer state is replayed from those headers), and
the gap next to it gets an empty batch (recordsCount 0), which Kafka's cleaner writes too and clients
step over. A segment left with no
records at all is deleted -- except the log's first segment, which stays as an empty file so the log
start offset does not move (consumers at old offsets read on from the next data, as with Kafka).

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
    StorageError,
    UnsupportedCompressionError,
    decode_records,
    encode_varint,
    read_header,
)
from .segment import DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment, segment_path

__all__ = ["CLEANER_DIR", "CleanResult", "Plan", "plan", "build", "install", "compact"]

#: Scratch directory inside a log directory for segments being rebuilt.
CLEANER_DIR = ".cleaner"
#: Bytes per pread while scanning a segment.
READ_CHUNK = 1 << 20
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_LAST_OFFSET_DELTA_AT = 23
_CRC_AT = 17
_CRC_FROM = 21

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
    return Plan(log.path, chosen, now, cfg.delete_retention_ms, cfg.index_interval_bytes, closed[0].base_offset)


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


def _encode_batch(h: BatchHeader, base: int, last_offset: int, records: list) -> bytes:
    """A v2 batch holding ``records`` ((offset, Record) pairs) at their own offsets and timestamps, with
    ``h``'s producer fields and attributes, spanning [base, last_offset]."""
    import zlib

    lat = h.log_append_time
    base_ts = h.base_timestamp if lat else min(r.timestamp_ms for _, r in records)
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
                                 h.attributes, last_offset - base, base_ts, max_ts, h.producer_id, h.producer_epoch,
                                 h.base_sequence, len(records)))
    _U32.pack_into(head, _CRC_AT, crc32c(payload, crc32c(memoryview(head)[_CRC_FROM:])))
    return bytes(head) + payload


def _stretch(batch: bytes, last_offset: int) -> bytes:
    """``batch`` with its lastOffsetDelta moved so it ends at ``last_offset`` (new CRC; records untouched)."""
    b = bytearray(batch)
    h = read_header(b)
    _I32.pack_into(b, _LAST_OFFSET_DELTA_AT, last_offset - h.base_offset)
    _U32.pack_into(b, _CRC_AT, crc32c(memoryview(b)[_CRC_FROM:]))
    return bytes(b)


def _empty_batch(base: int, last_offset: int) -> bytes:
    """A header-only batch (recordsCount 0) covering [base, last_offset]: what Kafka's cleaner leaves too."""
    head = bytearray(HEADER.pack(base, HEADER_SIZE - LOG_OVERHEAD, -1, MAGIC, 0, 0, last_offset - base, -1, -1, -1,
                                 -1, -1, 0))
    _U32.pack_into(head, _CRC_AT, crc32c(memoryview(head)[_CRC_FROM:]))
    return bytes(head)


class _Out:
    """One output batch: verbatim bytes, or retained records to encode (with the source header)."""

    __slots__ = ("h", "raw", "records", "base", "last")

    def __init__(self, h: BatchHeader, raw: bytes | None, records: list | None) -> None:
        self.h, self.raw, self.records = h, raw, records
        self.base, self.last = h.base_offset, h.base_offset + h.last_offset_delta

    def encode(self) -> bytes:
        if self.raw is not None:
            if self.last != self.h.base_offset + self.h.last_offset_delta:
                return _stretch(self.raw, self.last)
            return self.raw
        return _encode_batch(self.h, self.base, self.last, self.records or [])


def _plain(o: _Out) -> bool:
    """A batch whose offset span may change: no producer state (sequences map to offsets), not part of a
    transaction, not a control marker."""
    return o.h.producer_id < 0 and not o.h.is_control and not o.h.is_transactional


def _tile(out: list[_Out], base: int, next_offset: int) -> list[bytes]:
    """Encode ``out`` so the batches cover [base, next_offset) without a hole (module docstring): a gap
    after a plain batch is covered by stretching it, a gap at the start by moving a plain re-encoded
    batch's base back, any other gap by an empty batch, as Kafka's cleaner leaves for producer state."""
    items: list = []  # _Out or (first, last) of an empty filler batch
    cursor = base
    for o in out:
        if o.base > cursor:
            prev = items[-1] if items else None
            if isinstance(prev, _Out) and _plain(prev):
                prev.last = o.base - 1
            elif prev is None and o.raw is None and _plain(o):
                o.base = cursor
            else:
                items.append((cursor, o.base - 1))
        items.append(o)
        cursor = o.last + 1
    if cursor < next_offset:
        prev = items[-1] if items else None
        if isinstance(prev, _Out) and _plain(prev):
            prev.last = next_offset - 1
        else:
            items.append((cursor, next_offset - 1))
    return [i.encode() if isinstance(i, _Out) else _empty_batch(*i) for i in items]


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
        # Pass 2: rewrite what loses records.
        for s in p.segments:
            out: list[_Out] = []
            removed = 0
            for h, view in _batches(s.fd, s.size):
                recs = _records(h, view)
                if recs is None:
                    out.append(_Out(h, bytes(view), None))
                    continue
                expired = p.now_ms - h.max_timestamp > p.delete_retention_ms
                keep = [(off, rec) for off, rec in recs
                        if rec.key is not None and latest.get(rec.key) == off and not (rec.value is None and expired)]
                removed += len(recs) - len(keep)
                if len(keep) == len(recs):
                    out.append(_Out(h, bytes(view), None))
                elif keep:
                    out.append(_Out(h, None, keep))
            if removed == 0:
                continue
            result.records_removed += removed
            result.bytes_before += s.size
            if not out and s.base != p.first_base:
                result.swaps.append((s.seg, None, removed))
                continue
            if not out:  # the log's first segment stays, empty, so the log start offset does not move
                new = _write_segment(scratch, s.base, [], p)
                result.swaps.append((s.seg, new, removed))
                continue
            new = _write_segment(scratch, s.base, _tile(out, s.base, s.next_offset), p)
            if new.next_offset != s.next_offset:  # never swap in something that does not cover the same range
                new.close()
                raise StorageError(f"cleaned segment {s.base} ends at {new.next_offset}, not {s.next_offset}")
            result.bytes_after += new.size
            result.swaps.append((s.seg, new, removed))
    except BaseException:
        for _old, new, _n in result.swaps:
            if new is not None:
                new.close()
        result.swaps = []
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        for s in p.segments:
            os.close(s.fd)
    return result


def _write_segment(scratch: str, base: int, data: list[bytes], p: Plan) -> LogSegment:
    try:
        os.mkdir(scratch)  # not makedirs: a log deleted meanwhile must not come back as an empty directory
    except FileExistsError:
        pass
    path = segment_path(scratch, base, LOG_SUFFIX)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        blob = memoryview(b"".join(data))
        while blob:
            blob = blob[os.write(fd, blob):]
        os.fsync(fd)
    finally:
        os.close(fd)
    seg = LogSegment.open_existing(scratch, base, index_interval_bytes=p.index_interval_bytes, now_ms=p.now_ms)
    if seg.recover():  # our own output failed validation: a bug, never swap it in
        seg.close()
        raise CorruptBatchError(f"cleaned segment {base} did not validate")
    seg.flush_indexes(sync=True)
    fsync_dir(scratch)
    return seg


# -- step 3 ------------------------------------------------------------------------------------------

def _hook(step: str) -> None:
    if SWAP_HOOK is not None:
        SWAP_HOOK(step)


def install(log: Log, result: CleanResult) -> CleanResult:
    """Step 3 (module docstring): swap the rebuilt segments in. Log's thread. A segment that changed
    meanwhile (deleted by retention or DeleteRecords) is skipped."""
    directory = log.path
    for old, new, removed in result.swaps:
        if old not in log._segments or old.deleted or log.closed:
            if new is not None:
                new.close()
            result.records_removed -= removed
            continue
        if new is None:  # nothing left: the segment goes (the start offset moves if it was the first)
            log.delete_segment(old.base_offset)
            result.segments_deleted += 1
            continue
        base = old.base_offset
        _hook("start")
        old.index.rename(old.index.path + DELETED_SUFFIX)
        old.time_index.rename(old.time_index.path + DELETED_SUFFIX)
        _hook("indexes-renamed")
        os.replace(segment_path(new.directory, base, LOG_SUFFIX), segment_path(directory, base, LOG_SUFFIX))
        fsync_dir(directory)
        _hook("log-replaced")
        new.index.rename(segment_path(directory, base, INDEX_SUFFIX))
        new.time_index.rename(segment_path(directory, base, TIME_INDEX_SUFFIX))
        new.directory = directory
        fsync_dir(directory)
        _hook("done")
        log._replace_segment(old, new)
        result.segments_rewritten += 1
    shutil.rmtree(os.path.join(directory, CLEANER_DIR), ignore_errors=True)
    result.swaps = []
    return result


def compact(log: Log, now_ms: int | None = None) -> CleanResult:
    """All three steps on the calling thread (tests, tools). Blocks."""
    p = plan(log, now_ms)
    if p is None:
        return CleanResult()
    return install(log, build(p))
