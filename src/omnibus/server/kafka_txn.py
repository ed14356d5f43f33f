"""Kafka idempotent and transactional producers (KIP-98, Apache Kafka 3.x semantics): the glue between the
Kafka session and :mod:`omnibus.core.transactions`.

Strategy
    :class:`TxnService` (one per broker, made on first use) owns the transaction coordinator and every
    partition's producer state. Producer state is loaded lazily, on the first Produce or Fetch that touches a
    partition after start: from the snapshot taken at the last clean stop (metadata store, namespace
    ``kafka/producer-state``) plus a scan of batch *headers* after it (``LogSegment._iter_headers``: one small
    pread per few KiB, bodies skipped, only control batches' first record key peeked), or from the log start
    when there is none. Snapshots are also taken every ``SNAPSHOT_INTERVAL_S`` for partitions that moved, and
    stored only once the log is durable up to them, so after a crash the scan covers at most that interval's
    writes. So start-up costs nothing and no record is ever decoded.

    EndTxn (and fencing by InitProducerId, and the timeout abort) writes a COMMIT/ABORT control batch to
    every partition of the transaction, waits until all are durable (``Log.when_durable``), then completes
    the transaction in the coordinator (persisted) and makes its TxnOffsetCommit offsets visible with
    ``MetaStore.commit_offsets``; only then does EndTxn answer. Appending a marker moves the partition's LSO
    and wakes its long-polling fetches.

    The transaction timeout is one loop timer at the earliest deadline, re-armed after every change and
    cancelled at server stop (``server.closers``), where the producer-state snapshots are written too.

Error mapping: PRODUCER_FENCED for the coordinator APIs from the versions that know it (KIP-588: InitProducerId
v4, AddPartitionsToTxn/AddOffsetsToTxn/EndTxn v2), INVALID_PRODUCER_EPOCH before; Produce answers an old epoch
with INVALID_PRODUCER_EPOCH (Kafka ProducerAppendInfo).

Rules: event-loop thread only. The metadata-store writes block briefly (one SQLite commit per transaction
state change, as Kafka writes one __transaction_state record); they are off the produce/fetch hot path.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Callable

from omnibus.core import transactions as T
from omnibus.core.clock import SystemClock
from omnibus.server import kafka_groups
from omnibus.server.kafka_session import KafkaSession, handler
from omnibus.storage.records import (CONTROL_BIT, CONTROL_COMMIT, CONTROL_PEEK_BYTES, StorageError,
                                     build_control_batch, control_type)
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.connection import Request

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.kafka_session import KafkaBroker
    from omnibus.storage.log import Log

__all__ = ["TxnService", "service"]

TXN_NAMESPACE = "kafka/transactions"
SNAPSHOT_NAMESPACE = "kafka/producer-state"
#: How often loaded partitions' producer state is snapshotted (Kafka snapshots at each segment roll).
SNAPSHOT_INTERVAL_S = 30.0

#: Outcome -> Kafka error code (PRODUCER_FENCED is mapped down for old versions by ``_fenced``).
_CODES = {
    T.OK: E.NONE, T.OUT_OF_ORDER: E.OUT_OF_ORDER_SEQUENCE_NUMBER, T.FENCED: E.PRODUCER_FENCED,
    T.INVALID_TXN_STATE: E.INVALID_TXN_STATE, T.INVALID_MAPPING: E.INVALID_PRODUCER_ID_MAPPING,
    T.CONCURRENT: E.CONCURRENT_TRANSACTIONS, T.INVALID_TIMEOUT: E.INVALID_TRANSACTION_TIMEOUT,
    T.UNKNOWN_PRODUCER: E.UNKNOWN_PRODUCER_ID,
}


def _code(outcome: str, version: int, fenced_from: int) -> int:
    code = _CODES[outcome]
    if code == E.PRODUCER_FENCED and version < fenced_from:
        return E.INVALID_PRODUCER_EPOCH  # KIP-588: older clients know only INVALID_PRODUCER_EPOCH
    return code


def service(broker: "KafkaBroker") -> "TxnService":
    svc = getattr(broker, "txn", None)
    if svc is None:
        svc = broker.txn = TxnService(broker)
    return svc


class TxnService:
    """See the module docstring. Event-loop thread only."""

    def __init__(self, broker: "KafkaBroker") -> None:
        self.broker = broker
        server = broker.server
        self.meta = server.meta
        self.data_dir = str(server.data_dir)
        self.clock = SystemClock()
        self.coordinator = T.TransactionCoordinator(self.clock, broker.next_producer_id, self._persist,
                                                    server.settings.kafka.transaction_max_timeout_ms)
        #: log path -> (log, state): the log identity guards against a deleted and re-created topic.
        self.states: dict[str, tuple["Log", T.PartitionProducers]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        #: log path -> end offset of its last snapshot; a loop timer snapshots what moved since.
        self._snapped: dict[str, int] = {}
        self._snap_timer = asyncio.get_running_loop().call_later(SNAPSHOT_INTERVAL_S, self._snapshot_tick)
        server.closers.append(self.close)
        unfinished = self.coordinator.load(self.meta.items(TXN_NAMESPACE) if self.meta is not None else ())
        for meta in unfinished:  # a stop between prepare and complete: write the markers again
            self.write_markers(meta, None)
        self._arm()

    # -- persistence ----------------------------------------------------------------------------------
    def _persist(self, txn_id: str, raw: bytes) -> None:
        if self.meta is not None:
            self.meta.put(TXN_NAMESPACE, txn_id, raw)

    def _key(self, log: "Log") -> str:
        return os.path.relpath(log.path, self.data_dir)

    def state(self, log: "Log") -> T.PartitionProducers:
        """The producer state of ``log``'s partition (loaded on first use; see the module docstring)."""
        entry = self.states.get(log.path)
        if entry is not None and entry[0] is log:
            return entry[1]
        # Another log at a known path: the topic was deleted and re-created; its old snapshot is not for it.
        st = self._load(log, use_snapshot=entry is None)
        self.states[log.path] = (log, st)
        return st

    def _load(self, log: "Log", use_snapshot: bool = True) -> T.PartitionProducers:
        st = None
        if self.meta is not None:
            key = self._key(log)
            raw = self.meta.get(SNAPSHOT_NAMESPACE, key)
            if raw is not None:
                self.meta.delete(SNAPSHOT_NAMESPACE, key)  # taken again periodically and at the clean stop
            if raw is not None and use_snapshot:
                try:
                    snap = T.PartitionProducers.restore(raw)
                except (ValueError, KeyError, TypeError):
                    snap = None
                if snap is not None and snap.applied <= log.end_offset:
                    st = snap
        if st is None:
            st = T.PartitionProducers()
            st.applied = log.start_offset
        start = max(st.applied, log.start_offset)
        if start < log.end_offset:
            scan_headers(log, start, st)
        st.truncate(log.start_offset)
        return st

    def _snapshot_tick(self) -> None:
        """Periodic snapshots, so a restart after a crash scans only the log written since. A snapshot is stored
        only once the log is durable up to its offset: it then never covers data a crash could take back."""
        if self._closed:
            return
        self._snap_timer = asyncio.get_running_loop().call_later(SNAPSHOT_INTERVAL_S, self._snapshot_tick)
        for path, (log, st) in list(self.states.items()):
            end = log.end_offset
            if log.closed or end == self._snapped.get(path, 0):
                continue
            self._snapped[path] = end
            st.applied = end  # every append to a Kafka log goes through Produce or write_markers
            st.truncate(log.start_offset)
            raw, key = st.snapshot(), self._key(log)

            def store(raw: bytes = raw, key: str = key, log: "Log" = log) -> None:
                if self.meta is not None and not self._closed and self.states.get(log.path, (None,))[0] is log:
                    self.meta.put(SNAPSHOT_NAMESPACE, key, raw)

            log.when_durable(end - 1, store)

    def close(self) -> None:
        """Server stop (before the logs flush): cancel the timers and snapshot every loaded partition's state."""
        self._closed = True
        self._snap_timer.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.meta is None:
            return
        with self.meta.transaction():
            for key, _raw in self.meta.items(SNAPSHOT_NAMESPACE):  # partitions deleted meanwhile
                if not os.path.isdir(os.path.join(self.data_dir, key)):
                    self.meta.delete(SNAPSHOT_NAMESPACE, key)
            for path, (log, st) in self.states.items():
                if log.closed:  # deleted meanwhile
                    self.meta.delete(SNAPSHOT_NAMESPACE, self._key(log))
                    continue
                st.applied = log.end_offset
                st.truncate(log.start_offset)
                self.meta.put(SNAPSHOT_NAMESPACE, self._key(log), st.snapshot())

    # -- timeouts -------------------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed:
            return
        deadline = self.coordinator.next_deadline_ms()
        if deadline is None:
            return
        delay = max(0.0, (deadline - self.clock.now_ms()) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        for meta in self.coordinator.expired():
            self.write_markers(meta, None)
        self._arm()

    # -- markers --------------------------------------------------------------------------------------
    def write_markers(self, meta: T.TxnMetadata, done: Callable[[int], None] | None) -> None:
        """Append the transaction's COMMIT/ABORT marker to each of its partitions; once all are durable,
        complete it (offsets become visible) and call ``done(error_code)``."""
        commit = meta.state == T.PREPARE_COMMIT
        pid, epoch = meta.producer_id, meta.epoch
        broker = self.broker
        waits = []
        error = E.NONE
        for name, p in sorted(meta.partitions):
            topic = broker.topics.get(name)
            if topic is None or not 0 <= p < len(topic):
                continue  # deleted meanwhile: nothing to mark
            log = topic.partition(p)
            st = self.state(log)
            try:
                result = log.append(build_control_batch(pid, epoch, commit, now_ms=self.clock.now_ms()))
            except StorageError:
                error = E.KAFKA_STORAGE_ERROR
                continue
            st.complete_txn(pid, epoch, commit, result.base_offset)
            broker.appended(name, p)
            waits.append((log, result.last_offset))
        remaining = [len(waits)]

        def finish() -> None:
            offsets = self.coordinator.complete(meta) if error == E.NONE else {}
            left = [len(offsets)]

            def stored(_exc: BaseException | None = None) -> None:
                left[0] -= 1
                if left[0] <= 0:
                    self._arm()
                    if done is not None:
                        done(error)

            if not offsets:
                stored()
                return
            for group, rows in offsets.items():
                self._store_offsets(group, rows, stored)

        if not waits:
            finish()
            return

        def durable() -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                finish()

        for log, offset in waits:
            log.when_durable(offset, durable)


    def _store_offsets(self, group: str, rows: list, done: Callable[[BaseException | None], None]) -> None:
        """Make a committed transaction's group offsets visible (the groups module's durable store and cache;
        the metadata store directly when that module is absent)."""
        rows = [(t, p, o, m if m is not None else "") for t, p, o, m in rows]
        server = self.broker.server
        groups_cls = getattr(kafka_groups, "KafkaGroups", None)
        if groups_cls is not None:
            groups_cls.of(server).store_offsets(group, rows, done)
            return
        if self.meta is not None:
            self.meta.commit_offsets(group, rows, commit_timestamp_ms=self.clock.now_ms())
        done(None)


def scan_headers(log: "Log", start: int, st: T.PartitionProducers) -> None:
    """Replay the headers of every batch of ``log`` from ``start`` into ``st`` (no record is decoded; a
    control batch's first record key is peeked for COMMIT/ABORT). Blocks (reads the log's files)."""
    for seg in list(log._segments):  # storage internals, read-only: the header walk the loader uses
        if seg.next_offset <= start:
            continue
        found = seg.find_batch(start)
        if found is None:
            continue
        for pos, h in seg._iter_headers(found[0], seg.size):
            last = h.base_offset + h.last_offset_delta
            if last < start:
                continue
            control = None
            attrs = h.attributes
            if attrs & CONTROL_BIT and h.producer_id >= 0:
                try:
                    control = control_type(os.pread(seg.fd, CONTROL_PEEK_BYTES, pos)) == CONTROL_COMMIT
                except StorageError:
                    continue
            st.apply_header(h.producer_id, h.producer_epoch, h.base_sequence, h.base_offset, h.last_offset_delta,
                            bool(attrs & 0x10), control)


# -- InitProducerId (called by the session) -----------------------------------------------------------------

def init_producer_id(session: KafkaSession, req: Request) -> Any:
    R = M.InitProducerIdResponse
    body = req.body
    broker = session.broker
    if body.transactional_id is None:  # idempotent producer: a fresh id, epoch 0 (Kafka 3.x)
        return R(throttle_time_ms=0, error_code=0, producer_id=broker.next_producer_id(), producer_epoch=0)
    if not body.transactional_id:  # Kafka: an empty transactional id is an INVALID_REQUEST
        return R(throttle_time_ms=0, error_code=E.INVALID_REQUEST, producer_id=-1, producer_epoch=-1)
    svc = service(broker)
    outcome, meta, abort_started = svc.coordinator.init_producer_id(
        body.transactional_id, body.transaction_timeout_ms, body.producer_id, body.producer_epoch)
    if abort_started:
        svc.write_markers(meta, None)
    if outcome != T.OK:
        return R(throttle_time_ms=0, error_code=_code(outcome, req.api_version, 4), producer_id=-1,
                 producer_epoch=-1)
    return R(throttle_time_ms=0, error_code=0, producer_id=meta.producer_id, producer_epoch=meta.epoch)


# -- coordinator APIs ---------------------------------------------------------------------------------------

@handler(M.ADD_PARTITIONS_TO_TXN, (0, 3))
def add_partitions_to_txn(session: KafkaSession, req: Request) -> None:
    R = M.AddPartitionsToTxnResponse
    body = req.body
    svc = service(session.broker)
    topics = session.broker.topics
    wanted = [(t.name, p) for t in body.v3_and_below_topics for p in t.partitions]
    unknown = {(n, p) for n, p in wanted if n not in topics or not 0 <= p < len(topics[n])}
    if unknown:  # Kafka: the unknown ones fail, the rest are not attempted
        codes = {tp: (E.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown else E.OPERATION_NOT_ATTEMPTED) for tp in wanted}
    else:
        outcome = svc.coordinator.add_partitions(body.v3_and_below_transactional_id, body.v3_and_below_producer_id,
                                                 body.v3_and_below_producer_epoch, wanted)
        code = _code(outcome, req.api_version, 2)
        codes = {tp: code for tp in wanted}
        svc._arm()
    results = [R.AddPartitionsToTxnTopicResult(name=t.name, results_by_partition=[
        R.AddPartitionsToTxnPartitionResult(partition_index=p, partition_error_code=codes[(t.name, p)])
        for p in t.partitions]) for t in body.v3_and_below_topics]
    session.respond(req, R(throttle_time_ms=0, results_by_topic_v3_and_below=results))


@handler(M.ADD_OFFSETS_TO_TXN, (0, 3))
def add_offsets_to_txn(session: KafkaSession, req: Request) -> None:
    body = req.body
    svc = service(session.broker)
    outcome = svc.coordinator.add_offsets(body.transactional_id, body.producer_id, body.producer_epoch,
                                          body.group_id)
    svc._arm()
    session.respond(req, M.AddOffsetsToTxnResponse(throttle_time_ms=0,
                                                   error_code=_code(outcome, req.api_version, 2)))


@handler(M.TXN_OFFSET_COMMIT, (0, 3))
def txn_offset_commit(session: KafkaSession, req: Request) -> None:
    R = M.TxnOffsetCommitResponse
    body = req.body
    svc = service(session.broker)
    topics = session.broker.topics
    rows, unknown = [], set()
    for t in body.topics:
        for p in t.partitions:
            if t.name not in topics or not 0 <= p.partition_index < len(topics[t.name]):
                unknown.add((t.name, p.partition_index))
            else:
                rows.append((t.name, p.partition_index, p.committed_offset, p.committed_metadata))
    code = E.NONE
    groups_cls = getattr(kafka_groups, "KafkaGroups", None)
    if groups_cls is not None:  # the group's member and generation (KIP-447, v3+), as OffsetCommit checks them
        v3 = req.api_version >= 3
        error = groups_cls.of(session.server).coordinator.check_offset_commit(
            body.group_id, body.member_id if v3 else "", body.group_instance_id if v3 else None,
            body.generation_id if v3 else -1, transactional=True)
        code = kafka_groups._code(error)
    if code == E.NONE:
        outcome = svc.coordinator.txn_offset_commit(body.transactional_id, body.producer_id, body.producer_epoch,
                                                    body.group_id, rows)
        code = _code(outcome, req.api_version, 99)  # the group coordinator answers INVALID_PRODUCER_EPOCH
    out = [R.TxnOffsetCommitResponseTopic(name=t.name, partitions=[
        R.TxnOffsetCommitResponsePartition(
            partition_index=p.partition_index,
            error_code=E.UNKNOWN_TOPIC_OR_PARTITION if (t.name, p.partition_index) in unknown else code)
        for p in t.partitions]) for t in body.topics]
    session.respond(req, R(throttle_time_ms=0, topics=out))


@handler(M.END_TXN, (0, 3))
def end_txn(session: KafkaSession, req: Request) -> None:
    R = M.EndTxnResponse
    body = req.body
    svc = service(session.broker)
    outcome, meta = svc.coordinator.end_txn(body.transactional_id, body.producer_id, body.producer_epoch,
                                            body.committed)
    if outcome != T.OK or meta.state not in (T.PREPARE_COMMIT, T.PREPARE_ABORT):
        session.respond(req, R(throttle_time_ms=0, error_code=_code(outcome, req.api_version, 2)))
        return
    slot = session.slot()

    def done(error: int) -> None:
        if not session.closed:
            session.complete(slot, session.kafka.encode_response_parts(req, R(throttle_time_ms=0, error_code=error)))

    svc.write_markers(meta, done)

