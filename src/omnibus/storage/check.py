"""Offline verification and repair of every log under a data directory (``omnibus check-data``).

Strategy
    Walk ``data_dir``; every directory holding ``{digits}.log`` files is a log. For each segment, read
    every batch in order and check what recovery checks (header sanity, whole batch present, CRC-32C,
    recordsCount = lastOffsetDelta + 1, offsets contiguous from the segment's base), then check both
    indexes against the batches actually found. The interval an index was built with is not recorded,
    so "matches a rebuilt one" is checked by meaning rather than byte equality: every offset index entry
    must name a real batch start with that batch's base offset, in increasing order; every time index
    entry (ts, offset) must have ts equal to the largest timestamp of the batches up to ``offset`` and
    ``offset`` a batch start, increasing. Across segments, overlaps are problems, gaps are not (queues
    delete fully acked segments from the middle).

    With ``repair=True`` a segment with a bad batch is truncated just before it and its indexes rebuilt
    (LogSegment.recover), and a segment whose indexes disagree gets them rebuilt. Later segments are
    kept: this is an operator's tool, and deleting good data after a bit flip is not its call.

Rules: read-only unless ``repair``. Run while the broker is stopped: it takes no lock on the logs.
Concurrency: blocks (reads every byte of every log); call from a CLI or an executor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from crc32c import crc32c

from .index import OFFSET_ENTRY, TIME_ENTRY
from .loader import RECOVERY_POINT_FILE, STRAY_SUFFIXES, read_offset_file, segment_bases, write_offset_file
from .records import HEADER_SIZE, LOG_OVERHEAD, CorruptBatchError, read_header
from .segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, LogSegment, segment_path

__all__ = ["Problem", "LogReport", "CheckReport", "check_data", "check_log", "READ_CHUNK"]

#: Bytes per read while verifying; large to amortise syscalls over many batches.
READ_CHUNK = 4 << 20


@dataclass
class Problem:
    segment: int | None  # base offset of the segment, None for log-level problems
    kind: str  # corrupt-batch | torn-tail | bad-index | bad-timeindex | missing-index | overlap | recovery-point
    detail: str
    repaired: bool = False

    def __str__(self) -> str:
        where = f"segment {self.segment:020d}" if self.segment is not None else "log"
        fixed = " [repaired]" if self.repaired else ""
        return f"{where}: {self.kind}: {self.detail}{fixed}"


@dataclass
class LogReport:
    path: str
    segments: int = 0
    batches: int = 0
    records: int = 0
    bytes: int = 0
    start_offset: int | None = None
    end_offset: int | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not problems: gaps, stray files

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)


@dataclass
class CheckReport:
    data_dir: str
    repair: bool
    logs: list[LogReport] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for lg in self.logs for p in lg.problems]

    @property
    def ok(self) -> bool:
        return all(lg.ok for lg in self.logs)

    @property
    def totals(self) -> dict[str, int]:
        return {
            "logs": len(self.logs),
            "segments": sum(lg.segments for lg in self.logs),
            "batches": sum(lg.batches for lg in self.logs),
            "records": sum(lg.records for lg in self.logs),
            "bytes": sum(lg.bytes for lg in self.logs),
            "problems": len(self.problems),
            "repaired": sum(p.repaired for p in self.problems),
        }

    def format(self) -> str:
        """Human-readable report, one line per log and per problem, totals last."""
        lines = []
        for lg in self.logs:
            status = "ok" if not lg.problems else ("repaired" if lg.ok else "PROBLEMS")
            lines.append(
                f"{lg.path}: {status}: {lg.segments} segments, {lg.batches} batches, {lg.records} records, "
                f"{lg.bytes} bytes, offsets [{lg.start_offset}, {lg.end_offset})"
            )
            lines += [f"  {p}" for p in lg.problems]
            lines += [f"  note: {n}" for n in lg.notes]
        t = self.totals
        lines.append(
            f"total: {t['logs']} logs, {t['segments']} segments, {t['batches']} batches, {t['records']} records, "
            f"{t['bytes']} bytes, {t['problems']} problems ({t['repaired']} repaired)"
        )
        return "\n".join(lines)


def _find_logs(data_dir: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if d != ".cleaner")  # compaction scratch (compaction.CLEANER_DIR)
        if any(f.endswith(LOG_SUFFIX) and f[: -len(LOG_SUFFIX)].isdigit() for f in files):
            found.append(root)
    return found


def check_data(data_dir, repair: bool = False) -> CheckReport:
    """Verify (and with ``repair``, fix) every log under ``data_dir``. Blocks."""
    data_dir = os.fspath(data_dir)
    report = CheckReport(data_dir=data_dir, repair=repair)
    for path in _find_logs(data_dir):
        report.logs.append(check_log(path, repair=repair))
    return report


@dataclass
class _SegmentScan:
    base: int
    size: int = 0  # bytes of valid batches
    file_size: int = 0
    next_offset: int = 0
    batches: int = 0
    records: int = 0
    starts: dict = field(default_factory=dict)  # position -> base offset of each valid batch
    prefix_max_ts: dict = field(default_factory=dict)  # batch base offset -> max ts up to and including it
    problem: Problem | None = None


def _scan_segment(path: str, base: int) -> _SegmentScan:
    scan = _SegmentScan(base=base, next_offset=base)
    with open(segment_path(path, base, LOG_SUFFIX), "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        scan.file_size = size
        pos = 0
        buf = b""
        buf_pos = 0
        max_ts = -1
        expected = base
        while pos < size:
            rel = pos - buf_pos
            if rel + HEADER_SIZE > len(buf):
                buf = os.pread(fd, READ_CHUNK, pos)
                buf_pos, rel = pos, 0
            if len(buf) - rel < HEADER_SIZE:
                scan.problem = Problem(base, "torn-tail", f"{size - pos} bytes at position {pos} are not a whole header")
                break
            try:
                h = read_header(buf, rel)
            except CorruptBatchError as e:
                scan.problem = Problem(base, "corrupt-batch", f"at position {pos}: {e}")
                break
            bsize = h.batch_length + LOG_OVERHEAD
            if pos + bsize > size:
                scan.problem = Problem(
                    base, "torn-tail", f"batch at position {pos} needs {bsize} bytes, {size - pos} left"
                )
                break
            if rel + bsize > len(buf):
                buf = os.pread(fd, max(READ_CHUNK, bsize), pos)
                buf_pos, rel = pos, 0
            if crc32c(memoryview(buf)[rel + 21 : rel + bsize]) != h.crc:
                scan.problem = Problem(base, "corrupt-batch", f"CRC mismatch in batch at position {pos}")
                break
            # Compaction (compaction.py, as Kafka's cleaner) leaves batches with fewer records than offsets.
            if not 0 <= h.records_count <= h.last_offset_delta + 1:
                scan.problem = Problem(
                    base, "corrupt-batch", f"batch at position {pos}: recordsCount {h.records_count} "
                    f"> lastOffsetDelta + 1 ({h.last_offset_delta + 1})"
                )
                break
            if h.base_offset != expected:
                scan.problem = Problem(
                    base, "corrupt-batch", f"batch at position {pos} has base offset {h.base_offset}, expected {expected}"
                )
                break
            max_ts = max(max_ts, h.max_timestamp)
            scan.starts[pos] = h.base_offset
            scan.prefix_max_ts[h.base_offset] = max_ts
            scan.batches += 1
            scan.records += h.records_count
            expected = h.base_offset + h.last_offset_delta + 1
            pos += bsize
        scan.size = pos if scan.problem is not None else size
        scan.next_offset = expected
    return scan


def _check_indexes(path: str, scan: _SegmentScan) -> list[Problem]:
    problems = []
    base = scan.base
    for suffix, entry, kind in ((INDEX_SUFFIX, OFFSET_ENTRY, "bad-index"), (TIME_INDEX_SUFFIX, TIME_ENTRY, "bad-timeindex")):
        ipath = segment_path(path, base, suffix)
        if not os.path.exists(ipath):
            if scan.batches:
                problems.append(Problem(base, "missing-index", f"{os.path.basename(ipath)} is missing"))
            continue
        data = open(ipath, "rb").read()
        if len(data) % entry.size:
            problems.append(Problem(base, kind, f"size {len(data)} is not a multiple of {entry.size}"))
            continue
        last_key = None
        for n, (a, b) in enumerate(entry.iter_unpack(data)):
            if suffix == INDEX_SUFFIX:
                rel, pos = a, b
                if scan.problem is not None and pos >= scan.size:
                    break  # past the bad batch: part of that problem, fixed by the same repair
                ok = scan.starts.get(pos) == base + rel and (last_key is None or rel > last_key)
                last_key = rel
                if not ok:
                    problems.append(Problem(base, kind, f"entry {n} (offset {base + rel}, position {pos}) is not a batch start"))
                    break
            else:
                ts, rel = a, b
                if scan.problem is not None and base + rel >= scan.next_offset:
                    break
                ok = scan.prefix_max_ts.get(base + rel) == ts and (last_key is None or ts > last_key)
                last_key = ts
                if not ok:
                    problems.append(Problem(base, kind, f"entry {n} (timestamp {ts}, offset {base + rel}) does not match the batches"))
                    break
    return problems


def check_log(path: str, repair: bool = False) -> LogReport:
    """Verify one log directory; see the module docstring. Blocks."""
    report = LogReport(path=path)
    for name in sorted(os.listdir(path)):
        if name.endswith(STRAY_SUFFIXES):
            report.notes.append(f"stray file {name} (removed when the log is next opened)")
    bases = segment_bases(path)
    prev_next = None
    for base in bases:
        scan = _scan_segment(path, base)
        report.segments += 1
        report.batches += scan.batches
        report.records += scan.records
        report.bytes += scan.file_size
        if report.start_offset is None:
            report.start_offset = base
        seg_problems = []
        if prev_next is not None and base < prev_next:
            seg_problems.append(Problem(base, "overlap", f"starts at {base} but the previous segment ends at {prev_next}"))
        elif prev_next is not None and base > prev_next:
            report.notes.append(f"gap: offsets [{prev_next}, {base}) are not stored (collected or deleted)")
        if scan.problem is not None:
            seg_problems.append(scan.problem)
        index_problems = _check_indexes(path, scan)
        seg_problems += index_problems
        if repair and (scan.problem is not None or index_problems):
            seg = LogSegment.open_existing(path, base, index_interval_bytes=4096, now_ms=0)
            try:
                removed = seg.recover()
                os.fsync(seg.fd)
                seg.flush_indexes(sync=True)
            finally:
                seg.close()
            for p in seg_problems:
                if p.kind != "overlap":
                    p.repaired = True
            if removed:
                report.notes.append(f"segment {base:020d}: truncated {removed} bytes")
                report.bytes -= removed
        report.problems += seg_problems
        prev_next = scan.next_offset
    report.end_offset = prev_next
    rp = read_offset_file(os.path.join(path, RECOVERY_POINT_FILE))
    if rp is not None and prev_next is not None and rp > prev_next:
        p = Problem(None, "recovery-point", f"recovery point {rp} is past the end offset {prev_next}")
        if repair:
            write_offset_file(os.path.join(path, RECOVERY_POINT_FILE), prev_next, sync=True)
            p.repaired = True
        report.problems.append(p)
    return report
