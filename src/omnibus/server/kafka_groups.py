"""Kafka consumer groups (the classic protocol) and committed offsets: FindCoordinator, JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups.

Strategy: the protocol-neutral state machine is :class:`omnibus.core.groups.GroupCoordinator`; this module
turns requests into its calls and its results into responses. This node is the coordinator of every group
and transaction (FindCoordinator answers with itself; COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR never
happen). JoinGroup and SyncGroup take a response slot and are answered when the coordinator calls back.

Timers: the coordinator keeps its deadlines in a heap and announces each new one; :class:`KafkaGroups` keeps
one ``call_later`` on the loop armed at the earliest, and one that forgets idle groups every 10 minutes;
both are cancelled at stop through ``server.closers``.
Sessions own no timers: a closed connection's parked join is answered into the void (``session.closed``).

Offsets: committed offsets live in the metadata store (``group_offsets``) and, for reads, in a cache loaded
at start. Writes go through one worker thread (SQLite fsyncs per transaction): the commits that arrive while
a write runs are written together in the next transaction, in order; an OffsetCommit is answered, and its
offsets become visible to OffsetFetch, once that transaction is durable (Kafka answers after the append to
``__consumer_offsets``). Group membership does not survive a restart; offsets do, and so does each group's
protocol type and generation (namespace ``kafka/groups``) for groups that have offsets.

Kafka 3.x semantics (``GroupCoordinator.scala``, ``KafkaApis.scala``): OffsetCommit checks topics and
partitions (UNKNOWN_TOPIC_OR_PARTITION), metadata size (OFFSET_METADATA_TOO_LARGE above
``offset.metadata.max.bytes`` = 4096), then the group (generation, member); OffsetFetch returns -1 for
partitions never committed and every committed partition when topics is null, and UNSTABLE_OFFSET_COMMIT
with ``require_stable`` for a partition whose commit is being written or sits in an open transaction
(KIP-447); DeleteGroups removes a group's offsets with it.

For other modules: ``KafkaGroups.of(server)`` gives ``coordinator.check_offset_commit(...,
transactional=True)`` and :meth:`KafkaGroups.store_offsets` (TxnOffsetCommit), and :meth:`KafkaGroups.forget_topic`
(DeleteTopics).

Rules: event-loop thread only, except ``_MetaWriter._run`` (its worker thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import orjson

from omnibus.core.clock import SystemClock
from omnibus.core.groups import Group, GroupConfig, GroupCoordinator, GroupError, JoinResult, SyncResult
from omnibus.server.kafka_session import NODE_ID, handler
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.messages.groups import COORDINATOR_GROUP, COORDINATOR_TRANSACTION

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.app import BrokerServer
    from omnibus.server.kafka_session import KafkaSession
    from omnibus.storage.meta import MetaStore
    from omnibus.wire.kafka.connection import Request

__all__ = ["KafkaGroups", "CommittedOffset"]

GROUPS_NAMESPACE = "kafka/groups"
#: Kafka offset.metadata.max.bytes (default 4096).
OFFSET_METADATA_MAX_BYTES = 4096
#: DescribeGroups authorized_operations without ACLs: READ (3), DELETE (6), DESCRIBE (8) on a group.
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)
#: Authorized operations when the client did not ask for them (Integer.MIN_VALUE).
NOT_REQUESTED = -2147483648
#: A timer firing a hair early (loop clock vs. monotonic) re-arms at least this far out, not in a busy loop.
MIN_TIMER_S = 0.001
#: How often empty groups without offsets are forgotten (Kafka offsets.retention.check.interval.ms, 10 min).
IDLE_GROUP_CHECK_S = 600.0


class CommittedOffset(NamedTuple):
    offset: int
    metadata: str
    commit_timestamp_ms: int


def _code(error: GroupError) -> int:
    return getattr(E, error.name)


class _MetaWriter:
    """Serialises metadata-store writes on one worker thread; the writes queued while one transaction runs
    go together in the next (group commit). ``done(exc)`` runs on the loop once the transaction committed
    (``exc`` None) or failed."""

    def __init__(self, meta: "MetaStore | None", loop: asyncio.AbstractEventLoop) -> None:
        self.meta = meta
        self.loop = loop
        self._queue: list[tuple[Callable[["MetaStore"], None], Callable[[BaseException | None], None]]] = []
        self._busy = False
        self._closed = False
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="omnibus-groups")

    def submit(self, op: Callable[["MetaStore"], None], done: Callable[[BaseException | None], None]) -> None:
        if self.meta is None or self._closed:
            done(None if self.meta is None else RuntimeError("broker stopping"))
            return
        self._queue.append((op, done))
        if not self._busy:
            self._start()

    def _start(self) -> None:
        batch, self._queue = self._queue, []
        self._busy = True
        future = self.loop.run_in_executor(self._executor, self._run, batch)
        future.add_done_callback(lambda f: self._finished(batch, f))

    def _run(self, batch: list) -> None:  # worker thread: blocks on SQLite and its fsync
        meta = self.meta
        assert meta is not None
        with meta.transaction():
            for op, _ in batch:
                op(meta)

    def _finished(self, batch: list, future: asyncio.Future) -> None:
        self._busy = False
        exc = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        for _, done in batch:
            done(exc)
        if self._queue and not self._closed:
            self._start()

    def close(self) -> None:
        """Stop time (loop thread, before the store closes): finish the running write, then write what is
        still queued here."""
        self._closed = True
        self._executor.shutdown(wait=True)
        batch, self._queue = self._queue, []
        if batch and self.meta is not None:
            try:
                self._run(batch)
            except Exception:  # the broker is stopping; nobody is waiting for these answers
                pass


class KafkaGroups:
    """Broker-wide group state: the coordinator, the committed-offset cache, the coordinator's timer."""

    def __init__(self, server: "BrokerServer") -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        ks = server.settings.kafka
        self.clock = SystemClock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.coordinator = GroupCoordinator(self.clock, GroupConfig(
            min_session_timeout_ms=ks.group_min_session_timeout_ms,
            max_session_timeout_ms=ks.group_max_session_timeout_ms,
            initial_rebalance_delay_ms=ks.group_initial_rebalance_delay_ms),
            on_generation=self._generation, on_timer=self._wake_at)
        #: group -> (topic, partition) -> committed offset: what OffsetFetch answers (durable commits only).
        self.offsets: dict[str, dict[tuple[str, int], CommittedOffset]] = {}
        self.writer = _MetaWriter(server.meta, self.loop)
        #: group -> (topic, partition) -> commits of it still being written (not yet visible)
        self._writing: dict[str, dict[tuple[str, int], int]] = {}
        self._cleanup = self.loop.call_later(IDLE_GROUP_CHECK_S, self._remove_idle)
        self._restore()
        server.closers.append(self.close)

    @classmethod
    def of(cls, server: "BrokerServer") -> "KafkaGroups":
        groups = getattr(server, "kafka_groups", None)
        if groups is None:
            groups = server.kafka_groups = cls(server)
        return groups

    def _restore(self) -> None:
        meta = self.server.meta
        if meta is None:
            return
        docs = {k: orjson.loads(v) for k, v in meta.items(GROUPS_NAMESPACE)}
        for group_id in meta.groups():
            self.offsets[group_id] = {(e.topic, e.partition): CommittedOffset(e.offset, e.metadata or "",
                                                                              e.commit_timestamp_ms)
                                      for e in meta.fetch_offsets(group_id)}
            doc = docs.pop(group_id, {})
            self.coordinator.restore(group_id, doc.get("protocol_type"), doc.get("generation", 0))
        for group_id in docs:  # groups without offsets do not outlive a restart (Kafka expires them too)
            meta.delete(GROUPS_NAMESPACE, group_id)

    # -- timer -----------------------------------------------------------------------------------------
    def _wake_at(self, deadline: float) -> None:
        """The coordinator has a timer due at ``deadline`` (its clock's monotonic): make sure the loop timer
        fires by then."""
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_later(max(deadline - self.clock.monotonic(), 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self.coordinator.poll()
        deadline = self.coordinator.next_deadline()
        if deadline is not None:  # a hair early (loop clock vs. monotonic): come back soon, not in a busy loop
            self._wake_at(max(deadline, self.clock.monotonic() + MIN_TIMER_S))

    def _remove_idle(self) -> None:
        """Every ``IDLE_GROUP_CHECK_S``: empty groups without committed offsets are forgotten."""
        self.coordinator.remove_idle_groups(lambda group_id: bool(self.offsets.get(group_id)))
        self._cleanup = self.loop.call_later(IDLE_GROUP_CHECK_S, self._remove_idle)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._cleanup.cancel()
        self.coordinator.close()
        self.writer.close()

    # -- persistence -----------------------------------------------------------------------------------
    def _generation(self, group: Group) -> None:
        doc = orjson.dumps({"protocol_type": group.protocol_type, "generation": group.generation})
        self.writer.submit(lambda meta: meta.put(GROUPS_NAMESPACE, group.group_id, doc), lambda exc: None)

    def store_offsets(self, group_id: str, entries: list[tuple[str, int, int, str]],
                      done: Callable[[BaseException | None], None]) -> None:
        """Persist (topic, partition, offset, metadata) rows for ``group_id``; they become visible to
        OffsetFetch and ``done(None)`` runs once they are durable (``done(exc)`` if the write failed)."""
        now = self.clock.now_ms()
        rows = list(entries)
        writing = self._writing.setdefault(group_id, {})
        for topic, partition, _, _ in rows:
            writing[(topic, partition)] = writing.get((topic, partition), 0) + 1

        def write(meta: "MetaStore") -> None:
            meta.commit_offsets(group_id, rows, commit_timestamp_ms=now)

        def stored(exc: BaseException | None) -> None:
            for topic, partition, _, _ in rows:
                n = writing.get((topic, partition), 0) - 1
                if n > 0:
                    writing[(topic, partition)] = n
                else:
                    writing.pop((topic, partition), None)
            if not writing and self._writing.get(group_id) is writing:
                del self._writing[group_id]
            if exc is None:
                cache = self.offsets.setdefault(group_id, {})
                for topic, partition, offset, metadata in rows:
                    cache[(topic, partition)] = CommittedOffset(offset, metadata, now)
            done(exc)

        self.writer.submit(write, stored)

    def unstable(self, group_id: str) -> set[tuple[str, int]]:
        """Partitions of ``group_id`` with a commit not visible yet: being written, or part of an open
        transaction (TxnOffsetCommit). OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for
        them (KIP-447), as Kafka's hasPendingOffsetCommitsForTopicPartition."""
        out = set(self._writing.get(group_id, ()))
        txn = getattr(getattr(self.server, "kafka", None), "txn", None)
        for meta in getattr(getattr(txn, "coordinator", None), "txns", {}).values():
            pending = meta.groups.get(group_id)
            if pending:
                out.update(pending)
        return out

    def forget_topic(self, topic: str) -> None:
        """A topic was deleted: every group's offsets for it go."""
        for cache in self.offsets.values():
            for key in [k for k in cache if k[0] == topic]:
                del cache[key]
        self.writer.submit(lambda meta: meta.delete_topic_offsets(topic), lambda exc: None)

    def delete_group_data(self, group_id: str, done: Callable[[BaseException | None], None]) -> None:
        self.offsets.pop(group_id, None)

        def write(meta: "MetaStore") -> None:
            meta.delete_offsets(group_id)
            meta.delete(GROUPS_NAMESPACE, group_id)

        self.writer.submit(write, done)


def _groups(session: "KafkaSession") -> KafkaGroups:
    return KafkaGroups.of(session.server)


def _answer_later(session: "KafkaSession", req: "Request") -> Callable[[Any], None]:
    """A slot in the response order and the function that fills it with a response body."""
    slot = session.slot()

    def answer(body: Any) -> None:
        if not session.closed:
            session.complete(slot, session.kafka.encode_response_parts(req, body))
    return answer


# -- FindCoordinator --------------------------------------------------------------------------------------
@handler(M.FIND_COORDINATOR, (0, 4))
def find_coordinator(session: "KafkaSession", req: "Request") -> None:
    R = M.FindCoordinatorResponse
    body = req.body
    host, port = session._address()
    valid = body.key_type in (COORDINATOR_GROUP, COORDINATOR_TRANSACTION)
    code = 0 if valid else E.INVALID_REQUEST
    message = "NONE" if valid else "Unknown coordinator type received: %d" % body.key_type
    node = NODE_ID if valid else -1
    if req.api_version >= 4:
        coordinators = [R.Coordinator(key=key, node_id=node, host=host if valid else "", port=port if valid else -1,
                                      error_code=code, error_message=message) for key in body.coordinator_keys]
        session.respond(req, R(throttle_time_ms=0, coordinators=coordinators))
    else:
        session.respond(req, R(throttle_time_ms=0, error_code=code, error_message=message, node_id=node,
                               host=host if valid else "", port=port if valid else -1))


# -- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ------------------------------------------------------------
@handler(M.JOIN_GROUP, (0, 9))
def join_group(session: "KafkaSession", req: "Request") -> None:
    R = M.JoinGroupResponse
    body = req.body
    v = req.api_version
    answer = _answer_later(session, req)

    def joined(r: JoinResult) -> None:
        protocol_name = r.protocol_name if r.protocol_name is not None or v >= 7 else ""
        answer(R(throttle_time_ms=0, error_code=_code(r.error), generation_id=r.generation,
                 protocol_type=r.protocol_type, protocol_name=protocol_name, leader=r.leader,
                 skip_assignment=r.skip_assignment, member_id=r.member_id,
                 members=[R.JoinGroupResponseMember(member_id=mid, group_instance_id=iid, metadata=meta)
                          for mid, iid, meta in r.members]))

    instance_id = body.group_instance_id if v >= 5 else None
    peer = session.conn.peer
    _groups(session).coordinator.join(
        body.group_id, body.member_id or "", instance_id, protocol_type=body.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in body.protocols],
        session_timeout_ms=body.session_timeout_ms,
        rebalance_timeout_ms=body.rebalance_timeout_ms if v >= 1 else body.session_timeout_ms,
        callback=joined, client_id=req.client_id or "", client_host="/" + peer[0] if peer else "",
        require_known_member_id=v >= 4 and instance_id is None, supports_skip_assignment=v >= 9)


@handler(M.SYNC_GROUP, (0, 5))
def sync_group(session: "KafkaSession", req: "Request") -> None:
    R = M.SyncGroupResponse
    body = req.body
    v = req.api_version
    answer = _answer_later(session, req)

    def synced(r: SyncResult) -> None:
        answer(R(throttle_time_ms=0, error_code=_code(r.error), protocol_type=r.protocol_type,
                 protocol_name=r.protocol_name, assignment=r.assignment))

    _groups(session).coordinator.sync(
        body.group_id, body.generation_id, body.member_id, body.group_instance_id if v >= 3 else None,
        assignments={a.member_id: bytes(a.assignment) for a in body.assignments or ()}, callback=synced,
        protocol_type=body.protocol_type if v >= 5 else None, protocol_name=body.protocol_name if v >= 5 else None)


@handler(M.HEARTBEAT, (0, 4))
def heartbeat(session: "KafkaSession", req: "Request") -> None:
    body = req.body
    error = _groups(session).coordinator.heartbeat(body.group_id, body.generation_id, body.member_id,
                                         body.group_instance_id if req.api_version >= 3 else None)
    session.respond(req, M.HeartbeatResponse(throttle_time_ms=0, error_code=_code(error)))


@handler(M.LEAVE_GROUP, (0, 5))
def leave_group(session: "KafkaSession", req: "Request") -> None:
    R = M.LeaveGroupResponse
    body = req.body
    v = req.api_version
    if v >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in body.members]
    else:
        leaving = [(body.member_id, None)]
    error, member_errors = _groups(session).coordinator.leave(body.group_id, leaving)
    if v >= 3:
        session.respond(req, R(throttle_time_ms=0, error_code=_code(error), members=[
            R.MemberResponse(member_id=mid, group_instance_id=iid, error_code=_code(e))
            for (mid, iid), e in zip(leaving, member_errors)]))
    else:  # one member: its error is the response's (Kafka LeaveGroupResponse for v0-2)
        if error is GroupError.NONE:
            error = next((e for e in member_errors if e is not GroupError.NONE), GroupError.NONE)
        session.respond(req, R(throttle_time_ms=0, error_code=_code(error)))


# -- OffsetCommit, OffsetFetch ------------------------------------------------------------------------------
@handler(M.OFFSET_COMMIT, (0, 8))
def offset_commit(session: "KafkaSession", req: "Request") -> None:
    R = M.OffsetCommitResponse
    body = req.body
    v = req.api_version
    topics = session.broker.topics
    codes: dict[tuple[str, int], int] = {}
    valid: list[tuple[str, int, int, str]] = []
    for t in body.topics:
        topic = topics.get(t.name)
        for p in t.partitions:
            key = (t.name, p.partition_index)
            metadata = p.committed_metadata or ""
            if topic is None or not 0 <= p.partition_index < len(topic):
                codes[key] = E.UNKNOWN_TOPIC_OR_PARTITION
            elif len(metadata.encode()) > OFFSET_METADATA_MAX_BYTES:
                codes[key] = E.OFFSET_METADATA_TOO_LARGE
            else:
                codes[key] = 0
                valid.append((t.name, p.partition_index, p.committed_offset, metadata))

    def response() -> Any:
        return R(throttle_time_ms=0, topics=[R.OffsetCommitResponseTopic(name=t.name, partitions=[
            R.OffsetCommitResponsePartition(partition_index=p.partition_index,
                                            error_code=codes[(t.name, p.partition_index)])
            for p in t.partitions]) for t in body.topics])

    groups = _groups(session)
    generation = body.generation_id_or_member_epoch if v >= 1 else -1
    error = groups.coordinator.check_offset_commit(body.group_id, (body.member_id or "") if v >= 1 else "",
                                                   body.group_instance_id if v >= 7 else None, generation)
    if error is not GroupError.NONE or not valid:
        if error is not GroupError.NONE:
            for t, p, _, _ in valid:
                codes[(t, p)] = _code(error)
        session.respond(req, response())
        return
    answer = _answer_later(session, req)

    def stored(exc: BaseException | None) -> None:
        if exc is not None:
            for t, p, _, _ in valid:
                codes[(t, p)] = E.UNKNOWN_SERVER_ERROR
        answer(response())

    groups.store_offsets(body.group_id, valid, stored)


def _fetch_group(groups: KafkaGroups, group_id: str, topics: list[tuple[str, list[int]]] | None,
                 require_stable: bool) -> list:
    """[(topic, [(partition, offset, metadata, error code)])] for OffsetFetch: every committed partition when
    ``topics`` is None, else the asked ones (-1 and "" where nothing was committed); with ``require_stable``
    a partition whose commit is not settled is UNSTABLE_OFFSET_COMMIT."""
    cache = groups.offsets.get(group_id, {})
    if topics is None:
        topics = []
        for topic, partition in sorted(cache):
            if not topics or topics[-1][0] != topic:
                topics.append((topic, []))
            topics[-1][1].append(partition)
    unstable = groups.unstable(group_id) if require_stable else ()
    out = []
    for topic, partitions in topics:
        rows = []
        for p in partitions:
            c = cache.get((topic, p))
            if (topic, p) in unstable:
                rows.append((p, -1, "", E.UNSTABLE_OFFSET_COMMIT))
            else:
                rows.append((p, c.offset, c.metadata, 0) if c is not None else (p, -1, "", 0))
        out.append((topic, rows))
    return out


@handler(M.OFFSET_FETCH, (0, 8))
def offset_fetch(session: "KafkaSession", req: "Request") -> None:
    R = M.OffsetFetchResponse
    body = req.body
    groups = _groups(session)
    stable = req.api_version >= 7 and body.require_stable
    if req.api_version >= 8:
        out = []
        for g in body.groups:
            topics = None if g.topics is None else [(t.name, list(t.partition_indexes)) for t in g.topics]
            out.append(R.OffsetFetchResponseGroup(group_id=g.group_id, error_code=0, topics=[
                R.OffsetFetchResponseTopics(name=topic, partitions=[
                    R.OffsetFetchResponsePartitions(partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                                                    metadata=m, error_code=code) for p, o, m, code in rows])
                for topic, rows in _fetch_group(groups, g.group_id, topics, stable)]))
        session.respond(req, R(throttle_time_ms=0, groups=out))
        return
    topics = None if body.topics is None else [(t.name, list(t.partition_indexes)) for t in body.topics]
    result = _fetch_group(groups, body.group_id, topics, stable)
    session.respond(req, R(throttle_time_ms=0, error_code=0, topics=[
        R.OffsetFetchResponseTopic(name=topic, partitions=[
            R.OffsetFetchResponsePartition(partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                                           metadata=m, error_code=code) for p, o, m, code in rows])
        for topic, rows in result]))


# -- DescribeGroups, ListGroups, DeleteGroups ---------------------------------------------------------------
@handler(M.DESCRIBE_GROUPS, (0, 5))
def describe_groups(session: "KafkaSession", req: "Request") -> None:
    R = M.DescribeGroupsResponse
    body = req.body
    coordinator = _groups(session).coordinator
    ops = GROUP_OPERATIONS if req.api_version >= 3 and body.include_authorized_operations else NOT_REQUESTED
    out = []
    for group_id in body.groups:
        s = coordinator.describe(group_id)
        out.append(R.DescribedGroup(
            error_code=0, group_id=group_id, group_state=s.state, protocol_type=s.protocol_type,
            protocol_data=s.protocol, authorized_operations=ops, members=[
                R.DescribedGroupMember(member_id=m.member_id, group_instance_id=m.group_instance_id,
                                       client_id=m.client_id, client_host=m.client_host,
                                       member_metadata=m.metadata, member_assignment=m.assignment)
                for m in s.members]))
    session.respond(req, R(throttle_time_ms=0, groups=out))


@handler(M.LIST_GROUPS, (0, 4))
def list_groups(session: "KafkaSession", req: "Request") -> None:
    R = M.ListGroupsResponse
    states = (req.body.states_filter or ()) if req.api_version >= 4 else ()
    listed = _groups(session).coordinator.list_groups(states)
    session.respond(req, R(throttle_time_ms=0, error_code=0, groups=[
        R.ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type, group_state=g.state) for g in listed]))


@handler(M.DELETE_GROUPS, (0, 2))
def delete_groups(session: "KafkaSession", req: "Request") -> None:
    R = M.DeleteGroupsResponse
    groups = _groups(session)
    results = groups.coordinator.delete_groups(req.body.groups_names)
    codes = {g: _code(e) for g, e in results.items()}
    deleted = [g for g, e in results.items() if e is GroupError.NONE]

    def response() -> Any:
        return R(throttle_time_ms=0, results=[R.DeletableGroupResult(group_id=g, error_code=c)
                                              for g, c in codes.items()])

    if not deleted:
        session.respond(req, response())
        return
    answer = _answer_later(session, req)
    remaining = [len(deleted)]

    def gone(exc: BaseException | None, group_id: str) -> None:
        if exc is not None:
            codes[group_id] = E.UNKNOWN_SERVER_ERROR
        remaining[0] -= 1
        if remaining[0] == 0:
            answer(response())

    for group_id in deleted:
        groups.delete_group_data(group_id, lambda exc, g=group_id: gone(exc, g))
