"""Idempotent and transactional producers, protocol-neutral (Kafka KIP-98 semantics, Apache Kafka 3.x).

Two halves:

* :class:`PartitionProducers` — the state one partition keeps about the producers writing to it, as Kafka's
  ``ProducerStateManager``: per producer id the epoch, the sequence ranges and offsets of the last
  :data:`BATCHES_PER_PRODUCER` batches (a retry of any of them is a duplicate, answered with its original
  offset), and the first offset of its open transaction; per partition the open transactions (whose
  earliest first offset is the last stable offset, LSO) and the aborted-transaction index that
  read_committed fetches return. It is a pure function of the log's batch *headers*: :meth:`apply_header`
  rebuilds it from a scan (producer id/epoch, base sequence, last offset delta, the transactional and
  control bits), so it survives a restart without decoding a record; :meth:`snapshot`/:meth:`restore` let
  the server skip the scan of what a snapshot already covers.
* :class:`TransactionCoordinator` — transactional ids and their state machine (Kafka
  ``TransactionCoordinator``/``TransactionMetadata``): Empty -> Ongoing -> PrepareCommit/PrepareAbort ->
  CompleteCommit/CompleteAbort, epoch bumps on InitProducerId (fencing the previous producer and aborting
  its open transaction), timeouts by the injected clock, and offsets committed in a transaction kept
  pending until it commits. Every state change is handed to a ``persist(transactional_id, bytes)``
  callback (the server stores it in the metadata store) and restored with :meth:`TransactionCoordinator.load`.
  Writing the COMMIT/ABORT markers is the caller's job: :meth:`end_txn` returns the partitions, and
  :meth:`complete` is called once the markers are durable.

Results are the small string constants below (``OK``, ``FENCED``, ...); the Kafka session maps them to error
codes. Nothing here does I/O or knows a wire format.

Rules: event-loop thread only; the hot path (:meth:`PartitionProducers.check` / :meth:`record`) is a few dict
and tuple operations per batch, never per record.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable, Iterable

import orjson

from omnibus.core.clock import Clock

__all__ = [
    "BATCHES_PER_PRODUCER", "NO_EPOCH", "NO_SEQUENCE", "MAX_EPOCH",
    "OK", "DUPLICATE", "OUT_OF_ORDER", "FENCED", "INVALID_TXN_STATE", "INVALID_MAPPING", "CONCURRENT",
    "INVALID_TIMEOUT", "UNKNOWN_PRODUCER",
    "EMPTY", "ONGOING", "PREPARE_COMMIT", "PREPARE_ABORT", "COMPLETE_COMMIT", "COMPLETE_ABORT",
    "PartitionProducers", "TransactionCoordinator", "TxnMetadata",
]

#: Kafka ProducerStateEntry.NUM_BATCHES_TO_RETAIN (and max.in.flight.requests.per.connection <= 5).
BATCHES_PER_PRODUCER = 5
NO_EPOCH = -1
NO_SEQUENCE = -1
#: Kafka bumps to a new producer id once the epoch would reach Short.MAX_VALUE (TransactionMetadata).
MAX_EPOCH = 32767
_SEQ_WRAP = 0x7FFFFFFF

# Outcomes (mapped to protocol errors by the session).
OK = "ok"
DUPLICATE = "duplicate"
OUT_OF_ORDER = "out_of_order"
FENCED = "fenced"
INVALID_TXN_STATE = "invalid_txn_state"
INVALID_MAPPING = "invalid_producer_id_mapping"
CONCURRENT = "concurrent_transactions"
INVALID_TIMEOUT = "invalid_transaction_timeout"
UNKNOWN_PRODUCER = "unknown_producer_id"

# Transaction states (Kafka TransactionState).
EMPTY = "Empty"
ONGOING = "Ongoing"
PREPARE_COMMIT = "PrepareCommit"
PREPARE_ABORT = "PrepareAbort"
COMPLETE_COMMIT = "CompleteCommit"
COMPLETE_ABORT = "CompleteAbort"


def _in_sequence(last: int, first: int) -> bool:
    """Kafka ProducerAppendInfo.inSequence: next after ``last``, wrapping at Integer.MAX_VALUE."""
    return first == last + 1 or (first == 0 and last == _SEQ_WRAP)


class _Producer:
    __slots__ = ("epoch", "batches", "txn_first")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        #: (first seq, last seq, base offset, last offset) of the last batches, oldest first.
        self.batches: list[tuple[int, int, int, int]] = []
        self.txn_first = -1  # first offset of the open transaction, -1 if none


class PartitionProducers:
    """Producer state of one partition. See the module docstring. Event-loop thread only."""

    __slots__ = ("producers", "ongoing", "aborted", "_aborted_last", "applied")

    def __init__(self) -> None:
        self.producers: dict[int, _Producer] = {}
        #: Open transactions: producer id -> first offset. Offsets only grow, so insertion order is offset
        #: order and the first value is the LSO.
        self.ongoing: dict[int, int] = {}
        #: Aborted transactions (first offset, last offset = the ABORT marker's, producer id), by last offset.
        self.aborted: list[tuple[int, int, int]] = []
        self._aborted_last: list[int] = []
        #: Every batch below this offset has been applied (the scan resumes here).
        self.applied = 0

    # -- produce path ---------------------------------------------------------------------------------
    def check(self, pid: int, epoch: int, first_seq: int, last_delta: int, transactional: bool
              ) -> tuple[str, tuple[int, int] | None]:
        """Validate a batch before it is appended (Kafka UnifiedLog.analyzeAndValidateProducerState).

        Returns ``(OK, None)``, ``(DUPLICATE, (base offset, last offset))`` for a retry of one of the last
        five batches, or ``(FENCED | OUT_OF_ORDER | INVALID_TXN_STATE, None)``."""
        entry = self.producers.get(pid)
        if entry is None:  # unknown producer (new, or its batches were deleted): any sequence goes (KIP-360)
            return OK, None
        last_seq = first_seq + last_delta
        if epoch == entry.epoch:
            for f, l, base, last in entry.batches:
                if f == first_seq and l == last_seq:
                    return DUPLICATE, (base, last)
        if epoch < entry.epoch:
            return FENCED, None
        if entry.txn_first >= 0 and not transactional:  # Kafka: "Expected transactional write from producer"
            return INVALID_TXN_STATE, None
        if epoch != entry.epoch:
            if first_seq != 0 and entry.epoch != NO_EPOCH:
                return OUT_OF_ORDER, None
            return OK, None
        if entry.batches:
            if not _in_sequence(entry.batches[-1][1], first_seq):
                return OUT_OF_ORDER, None
        elif first_seq != 0:  # epoch known only from a marker: its sequences start at 0
            return OUT_OF_ORDER, None
        return OK, None

    def record(self, pid: int, epoch: int, first_seq: int, last_delta: int, base_offset: int,
               transactional: bool) -> None:
        """The batch was appended at ``base_offset``: remember it (and open a transaction)."""
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = _Producer(epoch)
        elif entry.epoch != epoch:
            entry.epoch = epoch
            entry.batches.clear()
        batches = entry.batches
        batches.append((first_seq, (first_seq + last_delta) & _SEQ_WRAP if first_seq >= 0 else NO_SEQUENCE,
                        base_offset, base_offset + last_delta))
        if len(batches) > BATCHES_PER_PRODUCER:
            del batches[0]
        if transactional and entry.txn_first < 0:
            entry.txn_first = base_offset
            self.ongoing[pid] = base_offset
        end = base_offset + last_delta + 1
        if end > self.applied:
            self.applied = end

    def check_marker(self, pid: int, epoch: int) -> str:
        """May a COMMIT/ABORT marker of ``epoch`` be written? (an older epoch is fenced)."""
        entry = self.producers.get(pid)
        return FENCED if entry is not None and epoch < entry.epoch else OK

    def complete_txn(self, pid: int, epoch: int, commit: bool, marker_offset: int) -> None:
        """A COMMIT/ABORT marker was appended at ``marker_offset`` (Kafka appendEndTxnMarker)."""
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = _Producer(epoch)
        elif epoch != entry.epoch:
            entry.epoch = epoch
            entry.batches.clear()
        first = self.ongoing.pop(pid, None)
        entry.txn_first = -1
        if not commit and first is not None:
            self.aborted.append((first, marker_offset, pid))
            self._aborted_last.append(marker_offset)
        if marker_offset + 1 > self.applied:
            self.applied = marker_offset + 1

    # -- fetch path -----------------------------------------------------------------------------------
    def lso(self, high_watermark: int) -> int:
        """Last stable offset: the first offset of the earliest open transaction, else the high watermark."""
        if self.ongoing:
            first = next(iter(self.ongoing.values()))
            return first if first < high_watermark else high_watermark
        return high_watermark

    def aborted_between(self, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions overlapping [start, end) (Kafka
        collectAbortedTransactions: last offset >= start and first offset < end)."""
        if not self.aborted:
            return []
        out = []
        for i in range(bisect_left(self._aborted_last, start), len(self.aborted)):
            first, _last, pid = self.aborted[i]
            if first < end:
                out.append((pid, first))
        return out

    def truncate(self, log_start: int) -> None:
        """Retention moved the log start: forget aborted transactions wholly below it, and producers whose
        last batch lies below it and that have no open transaction (Kafka evicts unretained producers)."""
        i = bisect_left(self._aborted_last, log_start)
        if i:
            del self.aborted[:i]
            del self._aborted_last[:i]
        gone = [pid for pid, e in self.producers.items()
                if e.txn_first < 0 and e.batches and e.batches[-1][3] < log_start]
        for pid in gone:
            del self.producers[pid]

    # -- rebuild --------------------------------------------------------------------------------------
    def apply_header(self, pid: int, epoch: int, first_seq: int, base_offset: int, last_delta: int,
                     transactional: bool, control_commit: bool | None) -> None:
        """Replay one batch header from the log (``control_commit``: None for a data batch, else whether
        the control batch is a COMMIT marker)."""
        if pid < 0:
            end = base_offset + last_delta + 1
            if end > self.applied:
                self.applied = end
            return
        if control_commit is not None:
            self.complete_txn(pid, epoch, control_commit, base_offset + last_delta)
        else:
            self.record(pid, epoch, first_seq, last_delta, base_offset, transactional)

    def snapshot(self) -> bytes:
        return orjson.dumps({
            "applied": self.applied,
            "producers": [[pid, e.epoch, e.txn_first, e.batches] for pid, e in self.producers.items()],
            "ongoing": list(self.ongoing.items()),
            "aborted": self.aborted,
        })

    @classmethod
    def restore(cls, raw: bytes) -> "PartitionProducers":
        d = orjson.loads(raw)
        s = cls()
        s.applied = int(d["applied"])
        for pid, epoch, txn_first, batches in d["producers"]:
            e = s.producers[pid] = _Producer(epoch)
            e.txn_first = txn_first
            e.batches = [tuple(b) for b in batches]
        s.ongoing = {pid: first for pid, first in d["ongoing"]}
        s.aborted = [tuple(a) for a in d["aborted"]]
        s._aborted_last = [a[1] for a in s.aborted]
        return s


@dataclass
class TxnMetadata:
    """One transactional id (Kafka TransactionMetadata)."""

    transactional_id: str
    producer_id: int
    epoch: int
    timeout_ms: int
    state: str = EMPTY
    #: (topic, partition) in the open transaction.
    partitions: set = field(default_factory=set)
    #: Consumer groups added with AddOffsetsToTxn -> {(topic, partition): (offset, metadata)} committed
    #: with TxnOffsetCommit, applied when the transaction commits.
    groups: dict = field(default_factory=dict)
    #: Wall-clock start of the open transaction (ms), -1 if none.
    start_ms: int = -1
    #: Producer id and epoch before the last bump (Kafka lastProducerId/lastProducerEpoch), for KIP-360 retries.
    last_producer_id: int = -1
    last_epoch: int = -1

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "pid": self.producer_id, "epoch": self.epoch, "timeout_ms": self.timeout_ms, "state": self.state,
            "partitions": sorted(self.partitions), "start_ms": self.start_ms,
            "last": [self.last_producer_id, self.last_epoch],
            "groups": {g: [[t, p, o, m] for (t, p), (o, m) in offs.items()] for g, offs in self.groups.items()},
        })

    @classmethod
    def from_bytes(cls, txn_id: str, raw: bytes) -> "TxnMetadata":
        d = orjson.loads(raw)
        return cls(txn_id, d["pid"], d["epoch"], d["timeout_ms"], d["state"],
                   {(t, p) for t, p in d["partitions"]},
                   {g: {(t, p): (o, m) for t, p, o, m in offs} for g, offs in d["groups"].items()},
                   d["start_ms"], *d.get("last", (-1, -1)))


class TransactionCoordinator:
    """Transactional ids and their state machine. See the module docstring. Event-loop thread only.

    ``allocate_pid()`` hands out producer ids never used before; ``persist(txn_id, bytes)`` stores a
    transaction's metadata durably (called on every state change, before the caller answers)."""

    def __init__(self, clock: Clock, allocate_pid: Callable[[], int], persist: Callable[[str, bytes], None],
                 max_timeout_ms: int) -> None:
        self.clock = clock
        self.allocate_pid = allocate_pid
        self.persist = persist
        self.max_timeout_ms = max_timeout_ms
        self.txns: dict[str, TxnMetadata] = {}
        #: producer id -> transactional id, for the produce path's partition check.
        self.by_pid: dict[int, str] = {}

    def load(self, items: Iterable[tuple[str, bytes]]) -> list[TxnMetadata]:
        """Restore persisted transactions; returns those caught between prepare and complete (their
        markers must be written again, then :meth:`complete`)."""
        unfinished = []
        for txn_id, raw in items:
            meta = TxnMetadata.from_bytes(txn_id, raw)
            self.txns[txn_id] = meta
            self.by_pid[meta.producer_id] = txn_id
            if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                unfinished.append(meta)
        return unfinished

    def _save(self, meta: TxnMetadata) -> None:
        self.persist(meta.transactional_id, meta.to_bytes())

    def _check(self, txn_id: str, pid: int, epoch: int) -> tuple[str, TxnMetadata | None]:
        meta = self.txns.get(txn_id)
        if meta is None or meta.producer_id != pid:
            return INVALID_MAPPING, meta
        if epoch != meta.epoch:
            return FENCED, meta
        return OK, meta

    # -- InitProducerId -------------------------------------------------------------------------------
    def init_producer_id(self, txn_id: str, timeout_ms: int, expected_pid: int = -1, expected_epoch: int = -1
                         ) -> tuple[str, TxnMetadata | None, bool]:
        """Kafka TransactionCoordinator.handleInitProducerId for a transactional id.

        Returns (outcome, metadata, abort_started): with ``abort_started`` the previous producer's open
        transaction was fenced (epoch bumped) and moved to PrepareAbort: the caller writes its ABORT markers,
        calls :meth:`complete`, and the outcome is CONCURRENT (the client retries, as Kafka's do)."""
        if timeout_ms <= 0 or timeout_ms > self.max_timeout_ms:
            return INVALID_TIMEOUT, None, False
        meta = self.txns.get(txn_id)
        if meta is None:
            pid = self.allocate_pid()
            meta = TxnMetadata(txn_id, pid, 0, timeout_ms)
            self.txns[txn_id] = meta
            self.by_pid[pid] = txn_id
            self._save(meta)
            return OK, meta, False
        if expected_pid >= 0 and (expected_pid, expected_epoch) not in (
                (meta.producer_id, meta.epoch), (meta.last_producer_id, meta.last_epoch)):
            # KIP-360: a producer that still knows its id/epoch; only the current one, or the one before the
            # last bump (its retry after CONCURRENT_TRANSACTIONS), may re-initialise.
            if expected_pid not in (meta.producer_id, meta.last_producer_id):
                return INVALID_MAPPING, None, False
            return FENCED, None, False
        if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return CONCURRENT, meta, False
        if meta.state == ONGOING:  # fence the old producer, abort its transaction (Kafka PrepareEpochFence)
            self._bump(meta)
            self._prepare(meta, commit=False)
            return CONCURRENT, meta, True
        self._bump(meta)
        meta.timeout_ms = timeout_ms
        meta.state = EMPTY
        meta.partitions = set()
        meta.groups = {}
        meta.start_ms = -1
        self._save(meta)
        return OK, meta, False

    def _bump(self, meta: TxnMetadata) -> None:
        meta.last_producer_id, meta.last_epoch = meta.producer_id, meta.epoch
        if meta.epoch + 1 >= MAX_EPOCH:  # epoch exhausted: a new producer id, epoch 0
            self.by_pid.pop(meta.producer_id, None)
            meta.producer_id = self.allocate_pid()
            meta.epoch = 0
            self.by_pid[meta.producer_id] = meta.transactional_id
        else:
            meta.epoch += 1

    # -- within a transaction -------------------------------------------------------------------------
    def _begin(self, meta: TxnMetadata) -> None:
        if meta.state != ONGOING:
            meta.state = ONGOING
            meta.partitions = set()
            meta.groups = {}
            meta.start_ms = self.clock.now_ms()

    def add_partitions(self, txn_id: str, pid: int, epoch: int, partitions: Iterable[tuple[str, int]]) -> str:
        """AddPartitionsToTxn (the caller has checked that the partitions exist)."""
        outcome, meta = self._check(txn_id, pid, epoch)
        if outcome != OK:
            return outcome
        if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return CONCURRENT
        new = set(partitions)
        if meta.state == ONGOING and new <= meta.partitions:
            return OK
        self._begin(meta)
        meta.partitions |= new
        self._save(meta)
        return OK

    def add_offsets(self, txn_id: str, pid: int, epoch: int, group: str) -> str:
        """AddOffsetsToTxn: the group's offsets become part of the transaction."""
        outcome, meta = self._check(txn_id, pid, epoch)
        if outcome != OK:
            return outcome
        if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return CONCURRENT
        if meta.state == ONGOING and group in meta.groups:
            return OK
        self._begin(meta)
        meta.groups.setdefault(group, {})
        self._save(meta)
        return OK

    def txn_offset_commit(self, txn_id: str, pid: int, epoch: int, group: str,
                          offsets: Iterable[tuple[str, int, int, str | None]]) -> str:
        """TxnOffsetCommit: offsets pending until the transaction commits (dropped if it aborts)."""
        outcome, meta = self._check(txn_id, pid, epoch)
        if outcome != OK:
            return outcome
        if meta.state != ONGOING or group not in meta.groups:
            return INVALID_TXN_STATE
        pending = meta.groups[group]
        for t, p, o, m in offsets:
            pending[(t, p)] = (o, m)
        self._save(meta)
        return OK

    def partition_in_txn(self, pid: int, epoch: int, tp: tuple[str, int]) -> bool:
        """Produce-path check (Kafka 3.6+ transaction verification): a transactional batch of a producer the
        coordinator knows must go to a partition added to its open transaction."""
        txn_id = self.by_pid.get(pid)
        if txn_id is None:
            return True  # not ours (e.g. written before a restart lost nothing: we persist all) -> lenient
        meta = self.txns[txn_id]
        return meta.epoch == epoch and meta.state == ONGOING and tp in meta.partitions

    # -- ending ---------------------------------------------------------------------------------------
    def end_txn(self, txn_id: str, pid: int, epoch: int, commit: bool) -> tuple[str, TxnMetadata | None]:
        """EndTxn. On OK with a metadata in PrepareCommit/PrepareAbort the caller writes the markers to
        ``meta.partitions`` and calls :meth:`complete`; OK in a Complete state is an answered retry."""
        outcome, meta = self._check(txn_id, pid, epoch)
        if outcome != OK:
            return outcome, None
        state = meta.state
        if state == ONGOING:
            self._prepare(meta, commit)
            return OK, meta
        if state == COMPLETE_COMMIT:
            return (OK, meta) if commit else (INVALID_TXN_STATE, None)
        if state == COMPLETE_ABORT:
            return (OK, meta) if not commit else (INVALID_TXN_STATE, None)
        if state == PREPARE_COMMIT:
            return (CONCURRENT, None) if commit else (INVALID_TXN_STATE, None)
        if state == PREPARE_ABORT:
            return (CONCURRENT, None) if not commit else (INVALID_TXN_STATE, None)
        return INVALID_TXN_STATE, None  # Empty: nothing to end

    def _prepare(self, meta: TxnMetadata, commit: bool) -> None:
        meta.state = PREPARE_COMMIT if commit else PREPARE_ABORT
        self._save(meta)

    def complete(self, meta: TxnMetadata) -> dict:
        """The markers are durable: CompleteCommit/CompleteAbort. Returns the group offsets to make visible
        ({group: [(topic, partition, offset, metadata)]}; empty on abort)."""
        commit = meta.state == PREPARE_COMMIT
        offsets = {g: [(t, p, o, m) for (t, p), (o, m) in offs.items()] for g, offs in meta.groups.items()
                   if offs} if commit else {}
        meta.state = COMPLETE_COMMIT if commit else COMPLETE_ABORT
        meta.partitions = set()
        meta.groups = {}
        meta.start_ms = -1
        self._save(meta)
        return offsets

    def expired(self) -> list[TxnMetadata]:
        """Open transactions past their timeout, moved to PrepareAbort with the epoch bumped (Kafka
        abortTimedOutTransactions fences the producer): write their ABORT markers, then :meth:`complete`."""
        now = self.clock.now_ms()
        out = []
        for meta in self.txns.values():
            if meta.state == ONGOING and now - meta.start_ms >= meta.timeout_ms:
                self._bump(meta)
                self._prepare(meta, commit=False)
                out.append(meta)
        return out

    def next_deadline_ms(self) -> int | None:
        """Wall-clock ms at which the next open transaction times out, or None."""
        deadlines = [m.start_ms + m.timeout_ms for m in self.txns.values() if m.state == ONGOING]
        return min(deadlines) if deadlines else None
