"""core.transactions: partition producer state (sequences, duplicates, fencing, LSO, aborted index, rebuild
from headers, snapshots) and the transaction coordinator state machine, with a ManualClock."""

from __future__ import annotations

import pytest

from omnibus.core import transactions as T
from omnibus.core.clock import ManualClock


# -- partition producer state ----------------------------------------------------------------------------

def test_sequences_duplicates_and_gaps():
    s = T.PartitionProducers()
    assert s.check(7, 0, 0, 2, False) == (T.OK, None)
    s.record(7, 0, 0, 2, 100, False)  # seq 0-2 at offsets 100-102
    assert s.check(7, 0, 0, 2, False) == (T.DUPLICATE, (100, 102))
    assert s.check(7, 0, 5, 0, False) == (T.OUT_OF_ORDER, None)
    assert s.check(7, 0, 3, 1, False) == (T.OK, None)
    s.record(7, 0, 3, 1, 103, False)
    # Both retained batches are duplicates, answered with their own offsets.
    assert s.check(7, 0, 0, 2, False) == (T.DUPLICATE, (100, 102))
    assert s.check(7, 0, 3, 1, False) == (T.DUPLICATE, (103, 104))
    # A partial overlap is not a duplicate: it is out of order.
    assert s.check(7, 0, 1, 1, False) == (T.OUT_OF_ORDER, None)


def test_only_last_five_batches_are_remembered():
    s = T.PartitionProducers()
    for i in range(7):
        s.record(1, 0, i, 0, i, False)
    assert s.check(1, 0, 1, 0, False)[0] == T.OUT_OF_ORDER  # forgotten (6 batches later)
    assert s.check(1, 0, 2, 0, False) == (T.DUPLICATE, (2, 2))
    assert s.check(1, 0, 7, 0, False) == (T.OK, None)


def test_sequence_wraps_at_int_max():
    s = T.PartitionProducers()
    s.record(1, 0, 0x7FFFFFFF - 1, 1, 0, False)  # ends at Integer.MAX_VALUE
    assert s.check(1, 0, 0, 0, False) == (T.OK, None)


def test_epochs():
    s = T.PartitionProducers()
    s.record(1, 3, 0, 0, 0, False)
    assert s.check(1, 2, 1, 0, False) == (T.FENCED, None)
    assert s.check(1, 4, 5, 0, False) == (T.OUT_OF_ORDER, None)  # a new epoch starts at 0
    assert s.check(1, 4, 0, 0, False) == (T.OK, None)
    # Unknown producers may start anywhere (KIP-360: their state may have been deleted).
    assert s.check(99, 0, 42, 0, False) == (T.OK, None)


def test_transactions_lso_and_aborted_index():
    s = T.PartitionProducers()
    s.record(1, 0, 0, 1, 10, True)     # pid 1 txn from 10
    s.record(2, 0, 0, 0, 12, True)     # pid 2 txn from 12
    s.record(3, 0, 0, 0, 13, False)    # plain idempotent
    assert s.lso(14) == 10
    assert s.check(1, 0, 2, 0, False) == (T.INVALID_TXN_STATE, None)  # non-transactional write mid-txn
    s.complete_txn(1, 0, False, 14)    # abort pid 1 with a marker at 14
    assert s.lso(15) == 12
    s.complete_txn(2, 0, True, 15)
    assert s.lso(16) == 16
    assert s.aborted_between(0, 16) == [(1, 10)]
    assert s.aborted_between(15, 16) == []      # ended before the range
    assert s.aborted_between(0, 10) == []       # starts after the range
    # Same epoch continues its sequence after the marker.
    assert s.check(1, 0, 2, 0, True) == (T.OK, None)
    s.truncate(15)
    assert s.aborted == []
    assert s.producers == {}  # every last batch (11, 12, 13) lies below the new log start
    s.record(4, 0, 0, 0, 16, True)
    s.truncate(17)
    assert 4 in s.producers  # an open transaction keeps its producer


def test_fencing_marker_bumps_epoch():
    s = T.PartitionProducers()
    s.record(1, 0, 0, 0, 0, True)
    s.complete_txn(1, 1, False, 1)     # coordinator fenced epoch 0 and aborted with epoch 1
    assert s.check(1, 0, 1, 0, True) == (T.FENCED, None)
    assert s.check(1, 2, 0, 0, True) == (T.OK, None)
    assert s.check(1, 1, 3, 0, True) == (T.OUT_OF_ORDER, None)  # marker-only epoch: sequences restart at 0


def _replay(events):
    s = T.PartitionProducers()
    for e in events:
        s.apply_header(*e)
    return s


def test_rebuild_from_headers_and_snapshot_roundtrip():
    events = [
        (-1, -1, -1, 0, 4, False, None),     # plain batch, offsets 0-4
        (5, 0, 0, 5, 1, False, None),        # idempotent 5-6
        (6, 0, 0, 7, 0, True, None),         # txn 7
        (6, 0, -1, 8, 0, True, False),       # abort marker 8
        (8, 0, 0, 9, 0, True, None),         # open txn from 9
    ]
    s = _replay(events)
    assert s.applied == 10 and s.lso(10) == 9
    assert s.aborted_between(0, 10) == [(6, 7)]
    assert s.check(5, 0, 0, 1, False) == (T.DUPLICATE, (5, 6))
    r = T.PartitionProducers.restore(s.snapshot())
    assert r.applied == 10 and r.lso(10) == 9 and r.aborted_between(0, 10) == [(6, 7)]
    assert r.check(5, 0, 0, 1, False) == (T.DUPLICATE, (5, 6))
    assert r.check(5, 0, 2, 0, False) == (T.OK, None)


# -- coordinator -----------------------------------------------------------------------------------------

class Store(dict):
    def put(self, k, v):
        self[k] = v


@pytest.fixture
def coord():
    clock = ManualClock()
    pids = iter(range(1000, 2000))
    store = Store()
    c = T.TransactionCoordinator(clock, lambda: next(pids), store.put, max_timeout_ms=60_000)
    c.store = store
    return c


def test_init_allocates_then_bumps(coord):
    out, m, abort = coord.init_producer_id("t", 10_000)
    assert (out, m.producer_id, m.epoch, abort) == (T.OK, 1000, 0, False)
    out, m, _ = coord.init_producer_id("t", 10_000)
    assert (out, m.producer_id, m.epoch) == (T.OK, 1000, 1)
    assert coord.init_producer_id("t", 60_001)[0] == T.INVALID_TIMEOUT
    assert coord.init_producer_id("t", 0)[0] == T.INVALID_TIMEOUT
    assert T.TxnMetadata.from_bytes("t", coord.store["t"]).epoch == 1


def test_commit_cycle_with_offsets(coord):
    _, m, _ = coord.init_producer_id("t", 10_000)
    pid, ep = m.producer_id, m.epoch
    assert coord.end_txn("t", pid, ep, True)[0] == T.INVALID_TXN_STATE  # nothing open
    assert coord.add_partitions("t", pid, ep, [("a", 0), ("a", 1)]) == T.OK
    assert coord.txn_offset_commit("t", pid, ep, "g", [("a", 0, 5, None)]) == T.INVALID_TXN_STATE  # no AddOffsets
    assert coord.add_offsets("t", pid, ep, "g") == T.OK
    assert coord.txn_offset_commit("t", pid, ep, "g", [("a", 0, 5, "m")]) == T.OK
    assert coord.partition_in_txn(pid, ep, ("a", 1)) and not coord.partition_in_txn(pid, ep, ("b", 0))
    out, meta = coord.end_txn("t", pid, ep, True)
    assert out == T.OK and meta.state == T.PREPARE_COMMIT and meta.partitions == {("a", 0), ("a", 1)}
    assert coord.end_txn("t", pid, ep, True)[0] == T.CONCURRENT       # retry while completing
    assert coord.end_txn("t", pid, ep, False)[0] == T.INVALID_TXN_STATE
    assert coord.add_partitions("t", pid, ep, [("a", 0)]) == T.CONCURRENT
    assert coord.init_producer_id("t", 10_000)[0] == T.CONCURRENT
    assert coord.complete(meta) == {"g": [("a", 0, 5, "m")]}
    assert coord.end_txn("t", pid, ep, True) == (T.OK, meta)          # retry after completion
    assert coord.end_txn("t", pid, ep, False)[0] == T.INVALID_TXN_STATE


def test_abort_drops_offsets(coord):
    _, m, _ = coord.init_producer_id("t", 10_000)
    coord.add_offsets("t", m.producer_id, m.epoch, "g")
    coord.txn_offset_commit("t", m.producer_id, m.epoch, "g", [("a", 0, 5, None)])
    _, meta = coord.end_txn("t", m.producer_id, m.epoch, False)
    assert meta.state == T.PREPARE_ABORT and coord.complete(meta) == {}
    assert meta.state == T.COMPLETE_ABORT


def test_fencing_by_new_producer(coord):
    _, m, _ = coord.init_producer_id("t", 10_000)
    pid = m.producer_id
    coord.add_partitions("t", pid, 0, [("a", 0)])
    out, meta, abort = coord.init_producer_id("t", 10_000)  # a second producer, same id
    assert (out, abort, meta.state, meta.epoch) == (T.CONCURRENT, True, T.PREPARE_ABORT, 1)
    assert coord.end_txn("t", pid, 0, True)[0] == T.FENCED
    coord.complete(meta)
    out, meta, abort = coord.init_producer_id("t", 10_000)  # the client's retry
    assert (out, meta.epoch, abort) == (T.OK, 2, False)
    assert coord.add_partitions("t", pid, 0, [("a", 0)]) == T.FENCED
    assert coord.add_partitions("t", pid + 1, 2, [("a", 0)]) == T.INVALID_MAPPING
    assert coord.add_partitions("nope", pid, 2, [("a", 0)]) == T.INVALID_MAPPING


def test_timeout_aborts_and_fences(coord):
    clock = coord.clock
    _, m, _ = coord.init_producer_id("t", 1_000)
    assert coord.next_deadline_ms() is None
    coord.add_partitions("t", m.producer_id, 0, [("a", 0)])
    assert coord.next_deadline_ms() == clock.now_ms() + 1_000
    clock.advance(999)
    assert coord.expired() == []
    clock.advance(1)
    (meta,) = coord.expired()
    assert meta.state == T.PREPARE_ABORT and meta.epoch == 1
    coord.complete(meta)
    assert coord.end_txn("t", m.producer_id, 0, True)[0] == T.FENCED
    assert coord.next_deadline_ms() is None


def test_epoch_exhaustion_allocates_a_new_producer_id(coord):
    _, m, _ = coord.init_producer_id("t", 1_000)
    m.epoch = T.MAX_EPOCH - 1
    _, m, _ = coord.init_producer_id("t", 1_000)
    assert (m.producer_id, m.epoch) == (1001, 0)
    assert coord.by_pid[1001] == "t" and 1000 not in coord.by_pid


def test_load_restores_and_reports_unfinished(coord):
    _, m, _ = coord.init_producer_id("t", 1_000)
    coord.add_partitions("t", m.producer_id, 0, [("a", 0)])
    coord.end_txn("t", m.producer_id, 0, True)
    fresh = T.TransactionCoordinator(ManualClock(), lambda: 5000, lambda k, v: None, 60_000)
    (unfinished,) = fresh.load(coord.store.items())
    assert unfinished.state == T.PREPARE_COMMIT and unfinished.partitions == {("a", 0)}
    assert fresh.by_pid[m.producer_id] == "t"


def test_kip360_reinit_with_known_id_and_epoch(coord):
    _, m, _ = coord.init_producer_id("t", 10_000)
    pid = m.producer_id
    coord.add_partitions("t", pid, 0, [("a", 0)])
    out, meta, abort = coord.init_producer_id("t", 10_000, pid, 0)  # the same producer, mid-transaction
    assert (out, abort, meta.epoch) == (T.CONCURRENT, True, 1)
    coord.complete(meta)
    out, meta, _ = coord.init_producer_id("t", 10_000, pid, 0)      # its retry still names epoch 0
    assert (out, meta.epoch) == (T.OK, 2)
    assert coord.init_producer_id("t", 10_000, pid, 0)[0] == T.FENCED
    assert coord.init_producer_id("t", 10_000, pid + 7, 2)[0] == T.INVALID_MAPPING
    assert T.TxnMetadata.from_bytes("t", coord.store["t"]).last_epoch == 1
