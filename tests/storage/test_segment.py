"""OffsetIndex, TimeIndex and LogSegment on real files (omnibus.storage.index / segment)."""

from __future__ import annotations

import os

from omnibus.storage.index import OffsetIndex, TimeIndex
from omnibus.storage.records import patched_header, validate_batch
from omnibus.storage.segment import LogSegment, segment_path

from .util import batch


def test_offset_index_floor_lookup_flush_reload(tmp_path):
    path = str(tmp_path / "0.index")
    idx = OffsetIndex(path, 100)
    assert idx.lookup(150) == (100, 0)  # empty: start of segment
    for i in range(1, 50):
        idx.append(100 + 10 * i, 1000 * i)
    assert idx.lookup(100) == (100, 0)
    assert idx.lookup(110) == (110, 1000)
    assert idx.lookup(119) == (110, 1000)
    assert idx.lookup(10_000) == (590, 49_000)
    assert idx.lookup_position(2500) == (120, 2000)
    assert idx.lookup_position(10) == (100, 0)
    idx.flush(sync=True)
    assert os.path.getsize(path) == 49 * 8
    idx.append(600, 50_000)
    idx.flush(sync=False)  # append-only flush of the new entry
    again = OffsetIndex(path, 100, load_from_file=True)
    assert again.entries() == idx.entries() and len(again) == 50
    again.truncate_to(300)
    again.flush(sync=False)
    assert OffsetIndex(path, 100, load_from_file=True).last_entry() == (290, 19_000)
    again.reset()
    again.flush(sync=False)
    assert os.path.getsize(path) == 0


def test_time_index_only_grows_and_looks_up_below(tmp_path):
    path = str(tmp_path / "0.timeindex")
    ti = TimeIndex(path, 0)
    ti.maybe_append(100, 0)
    ti.maybe_append(100, 5)  # same timestamp: ignored
    ti.maybe_append(90, 6)  # smaller: ignored
    ti.maybe_append(200, 10)
    ti.maybe_append(300, 20)
    assert ti.entries() == [(100, 0), (200, 10), (300, 20)]
    assert ti.lookup_below(50) == 0
    assert ti.lookup_below(100) == 0  # strictly below: no entry -> segment start
    assert ti.lookup_below(201) == 10
    assert ti.lookup_below(10**12) == 20
    ti.flush(sync=True)
    loaded = TimeIndex(path, 0, load_from_file=True)
    assert loaded.entries() == ti.entries() and loaded.last_entry() == (300, 20)


def _fill(seg: LogSegment, count: int, per_batch: int = 3) -> list[tuple[int, int, int]]:
    """Append ``count`` batches; returns (base, next, position) of each."""
    out = []
    for i in range(count):
        raw = memoryview(batch(per_batch, ts=1000 + i, tag=i))
        h = validate_batch(raw)
        base = seg.next_offset
        nxt = base + h.last_offset_delta + 1
        pos = seg.append(patched_header(raw, base, None), raw[61:], base, nxt, h.max_timestamp)
        out.append((base, nxt, pos))
    return out


def test_segment_append_indexes_and_finds_every_offset(tmp_path):
    seg = LogSegment.create(str(tmp_path), 500, index_interval_bytes=400, now_ms=0)
    layout = _fill(seg, 40)
    assert os.path.basename(segment_path(str(tmp_path), 500, ".log")) == "00000000000000000500.log"
    assert seg.next_offset == 500 + 40 * 3
    entries = seg.index.entries()
    assert 5 < len(entries) < 40  # sparse
    assert all(any(e == (b, p) for b, _, p in layout) for e in entries)  # entries are batch starts
    for base, nxt, pos in layout:
        for off in range(base, nxt):
            p, h = seg.find_batch(off)
            assert (p, h.base_offset) == (pos, base)
    assert seg.find_batch(seg.next_offset) is None
    # A region always holds the first batch, then whole batches within max_bytes.
    first = layout[3]
    size = layout[4][2] - layout[3][2]
    assert seg.region(first[2], size, 1).size == size
    r = seg.region(first[2], size, 5 * size + size // 2)
    assert r.size == 5 * size and r.position == first[2]
    assert seg.region(first[2], size, 10**9).size == seg.size - first[2]
    # Time lookups find the first batch whose max timestamp reaches the target.
    p, h = seg.find_offset_by_timestamp(1000 + 17 + 2)  # batch 17's last record has ts 1000+17+2
    assert h.base_offset == layout[17][0]
    assert seg.find_offset_by_timestamp(10**9) is None
    seg.close()


def test_segment_recover_rebuilds_same_indexes_and_truncates(tmp_path):
    seg = LogSegment.create(str(tmp_path), 0, index_interval_bytes=300, now_ms=0)
    layout = _fill(seg, 20)
    seg.seal()
    before = (seg.index.entries(), seg.time_index.entries(), seg.next_offset, seg.max_timestamp)
    assert seg.recover() == 0
    assert (seg.index.entries(), seg.time_index.entries(), seg.next_offset, seg.max_timestamp) == before
    # Tear the last batch: recovery truncates to the previous batch boundary.
    torn = seg.size - 7
    os.ftruncate(seg.fd, torn)
    assert seg.recover() == torn - layout[-1][2]
    assert seg.size == layout[-1][2] and seg.next_offset == layout[-1][0]
    seg.close()


def test_load_trusted_reads_only_the_tail(tmp_path):
    d = str(tmp_path)
    seg = LogSegment.create(d, 0, index_interval_bytes=300, now_ms=0)
    _fill(seg, 20)
    seg.seal()
    seg.flush_indexes(sync=True)
    expect = (seg.next_offset, seg.max_timestamp, seg.size)
    seg.close()
    again = LogSegment.open_existing(d, 0, index_interval_bytes=300, now_ms=0)
    assert again.load_trusted()
    assert (again.next_offset, again.max_timestamp, again.size) == expect
    again.close()
    # A garbage index fails the sanity check.
    with open(segment_path(d, 0, ".index"), "wb") as f:
        f.write(os.urandom(64))
    bad = LogSegment.open_existing(d, 0, index_interval_bytes=300, now_ms=0)
    assert not bad.load_trusted()
    bad.close()
