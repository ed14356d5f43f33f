"""Consumer groups with the classic rebalance protocol: membership, generations, leader election, protocol
selection, assignments, session expiry and static membership, without any wire format.

Strategy: one :class:`GroupCoordinator` holds every group as Kafka's GroupCoordinator/GroupMetadata do
(Kafka 3.x, ``core/src/main/scala/kafka/coordinator/group``), with the same states (Empty,
PreparingRebalance, CompletingRebalance, Stable, Dead), the same transitions and the same outcomes, named by
:class:`GroupError` (the server maps them to its protocol's codes):

- join: a new dynamic member of a v4+ client first gets MEMBER_ID_REQUIRED and a member id (KIP-394) and
  is "pending" until it joins with it; a join parks until every member has rejoined or the rebalance
  timeout (the largest of the members') passes, then the members that did not rejoin are dropped, a
  generation starts, the protocol is chosen by vote among those every member supports, and the leader
  gets every member's metadata. A new empty group waits ``initial_rebalance_delay_ms`` (extended while new
  members keep arriving, up to the rebalance timeout), as ``group.initial.rebalance.delay.ms``.
- sync: followers wait for the leader's assignments; members the leader left out get an empty one;
  members that send no SyncGroup within the rebalance timeout are dropped (Kafka 3.x DelayedSync).
- heartbeats refresh a member's session; a member whose session runs out is removed and the group
  rebalances. Members parked in a join or sync need no heartbeats (as Kafka's ``hasSatisfiedHeartbeat``).
- static members (``group.instance.id``, KIP-345) keep their place across restarts: a rejoin with an
  unknown member id replaces the old id (fencing it: FENCED_INSTANCE_ID) without a rebalance when the group
  is stable and the chosen protocol stays.

Time comes from the injected :class:`~omnibus.core.clock.Clock` (``monotonic``). Timers are entries in a
heap: :meth:`GroupCoordinator.poll` runs the due ones and :meth:`GroupCoordinator.next_deadline` says when
to call it next (``on_timer(deadline)`` announces each new timer), so the server keeps one loop timer and
tests move a ManualClock. JoinGroup and SyncGroup
answers go to the callbacks passed with the request (possibly later, from ``poll`` or from another member's
request); every parked callback is answered exactly once (where Kafka would leave a replaced request
unanswered until the client times out, we answer REBALANCE_IN_PROGRESS or UNKNOWN_MEMBER_ID).

Offsets are not kept here: :meth:`GroupCoordinator.check_offset_commit` says whether a commit is allowed
(creating a "simple" group for a group-less commit, as Kafka does) and the server stores them.

Rules: event-loop thread only; no I/O; callbacks must not call back into the coordinator.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

from omnibus.core.clock import Clock

__all__ = [
    "GroupError", "GroupState", "GroupConfig", "JoinResult", "SyncResult", "MemberSummary", "GroupSummary",
    "GroupOverview", "Member", "Group", "GroupCoordinator", "NEW_MEMBER_JOIN_TIMEOUT_MS", "UNKNOWN_MEMBER_ID",
]

#: Kafka GroupCoordinator.NewMemberJoinTimeoutMs: a new member's parked JoinGroup is dropped after 5 minutes
#: (it cannot heartbeat before it has joined).
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000
#: The timer heap is swept of cancelled entries when it grows past this (and past twice its live size).
COMPACT_MIN = 1024
#: The member id of a member that has none yet (JoinGroupRequest.UNKNOWN_MEMBER_ID).
UNKNOWN_MEMBER_ID = ""


class GroupError(enum.Enum):
    """Outcomes, named as Kafka's error codes (the server maps the name)."""

    NONE = "NONE"
    UNKNOWN_MEMBER_ID = "UNKNOWN_MEMBER_ID"
    ILLEGAL_GENERATION = "ILLEGAL_GENERATION"
    REBALANCE_IN_PROGRESS = "REBALANCE_IN_PROGRESS"
    MEMBER_ID_REQUIRED = "MEMBER_ID_REQUIRED"
    FENCED_INSTANCE_ID = "FENCED_INSTANCE_ID"
    INCONSISTENT_GROUP_PROTOCOL = "INCONSISTENT_GROUP_PROTOCOL"
    INVALID_SESSION_TIMEOUT = "INVALID_SESSION_TIMEOUT"
    INVALID_GROUP_ID = "INVALID_GROUP_ID"
    NON_EMPTY_GROUP = "NON_EMPTY_GROUP"
    GROUP_ID_NOT_FOUND = "GROUP_ID_NOT_FOUND"


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE,
                                             GroupState.COMPLETING_REBALANCE, GroupState.STABLE, GroupState.DEAD)
#: States a rebalance may start from (Kafka PreparingRebalance.validPreviousStates).
_CAN_REBALANCE = frozenset((EMPTY, COMPLETING, STABLE))
NONE = GroupError.NONE


@dataclass(frozen=True)
class GroupConfig:
    """Kafka's group.min.session.timeout.ms, group.max.session.timeout.ms, group.initial.rebalance.delay.ms."""

    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3000
    new_member_join_timeout_ms: int = NEW_MEMBER_JOIN_TIMEOUT_MS


@dataclass
class JoinResult:
    error: GroupError
    member_id: str
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    #: (member id, group instance id, metadata) of every member: for the leader only.
    members: list = field(default_factory=list)
    skip_assignment: bool = False


@dataclass
class SyncResult:
    error: GroupError
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


class MemberSummary(NamedTuple):
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


class GroupSummary(NamedTuple):
    state: str
    protocol_type: str
    protocol: str
    members: list


class GroupOverview(NamedTuple):
    group_id: str
    protocol_type: str
    state: str


JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]


class _Timer:
    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _cancel(timer: _Timer | None) -> None:
    if timer is not None:
        timer.cancelled = True


class Member:
    """One member of a group (Kafka MemberMetadata)."""

    __slots__ = ("member_id", "instance_id", "client_id", "client_host", "rebalance_timeout_ms",
                 "session_timeout_ms", "protocol_type", "protocols", "assignment", "join_cb", "sync_cb", "is_new",
                 "timer")

    def __init__(self, member_id: str, instance_id: str | None, client_id: str, client_host: str,
                 rebalance_timeout_ms: int, session_timeout_ms: int, protocol_type: str,
                 protocols: list[tuple[str, bytes]]) -> None:
        self.member_id = member_id
        self.instance_id = instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = protocols
        self.assignment = b""
        self.join_cb: JoinCallback | None = None
        self.sync_cb: SyncCallback | None = None
        self.is_new = False
        self.timer: _Timer | None = None

    def metadata(self, protocol: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} does not support any of the candidate protocols")

    @property
    def has_satisfied_heartbeat(self) -> bool:
        """Members parked in a join or sync need no heartbeat, unless they are new (Kafka MemberMetadata)."""
        return not self.is_new and (self.join_cb is not None or self.sync_cb is not None)

    def __repr__(self) -> str:
        return f"Member({self.member_id!r}, instance={self.instance_id!r})"


class Group:
    """One group (Kafka GroupMetadata). Read it freely; change it only through the coordinator."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.state = EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id -> member id
        self.pending_members: dict[str, _Timer] = {}  # member ids handed out with MEMBER_ID_REQUIRED
        self.pending_sync: set[str] = set()
        self._supported: Counter[str] = Counter()
        self.awaiting_join = 0
        self.new_member_added = False
        self.join_timer: _Timer | None = None
        self.join_initial = False
        self.join_remaining_ms = 0
        self.sync_timer: _Timer | None = None

    # -- queries ---------------------------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return not self.members

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def all_joined(self) -> bool:
        return len(self.members) == self.awaiting_join and not self.pending_members

    def supports_protocols(self, protocol_type: str, names: Iterable[str]) -> bool:
        names = list(names)
        if self.state is EMPTY:
            return bool(protocol_type) and bool(names)
        n = len(self.members)
        return self.protocol_type == protocol_type and any(self._supported[p] == n for p in names)

    def select_protocol(self) -> str:
        """The protocol every member supports that most members prefer (ties: the first voted for)."""
        n = len(self.members)
        candidates = {p for p, c in self._supported.items() if c == n}
        votes = [m.vote(candidates) for m in self.members.values()]
        counts = Counter(votes)
        best = max(counts.values())
        return next(v for v in votes if counts[v] == best)

    def member_metadata(self) -> list[tuple[str, str | None, bytes]]:
        return [(m.member_id, m.instance_id, m.metadata(self.protocol_name)) for m in self.members.values()]

    # -- membership bookkeeping (no transitions) -------------------------------------------------------
    def _add(self, member: Member, callback: JoinCallback | None) -> None:
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self._supported.update(p for p, _ in member.protocols)
        member.join_cb = callback
        if callback is not None:
            self.awaiting_join += 1
        _cancel(self.pending_members.pop(member.member_id, None))

    def _remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self._supported.subtract(p for p, _ in member.protocols)
            if member.join_cb is not None:
                self.awaiting_join -= 1
            if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
                del self.static_members[member.instance_id]
            _cancel(member.timer)
            member.timer = None
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        _cancel(self.pending_members.pop(member_id, None))
        self.pending_sync.discard(member_id)
        return member

    def _update(self, member: Member, protocols: list[tuple[str, bytes]], rebalance_timeout_ms: int,
                session_timeout_ms: int, callback: JoinCallback | None) -> None:
        self._supported.subtract(p for p, _ in member.protocols)
        member.protocols = protocols
        self._supported.update(p for p, _ in protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        old = member.join_cb
        if callback is not None and old is None:
            self.awaiting_join += 1
        elif callback is None and old is not None:
            self.awaiting_join -= 1
        member.join_cb = callback
        if old is not None and callback is not None:  # a replaced JoinGroup: answer it rather than drop it
            old(JoinResult(GroupError.REBALANCE_IN_PROGRESS, member.member_id))

    def _invoke_join(self, member: Member, result: JoinResult) -> None:
        cb = member.join_cb
        if cb is not None:
            member.join_cb = None
            self.awaiting_join -= 1
            cb(result)

    def _invoke_sync(self, member: Member, result: SyncResult) -> bool:
        cb = member.sync_cb
        if cb is None:
            return False
        member.sync_cb = None
        cb(result)
        return True

    def summary(self) -> GroupSummary:
        if self.state is STABLE:
            proto = self.protocol_name or ""
            members = [MemberSummary(m.member_id, m.instance_id, m.client_id, m.client_host, m.metadata(proto),
                                     m.assignment) for m in self.members.values()]
            return GroupSummary(self.state.value, self.protocol_type or "", proto, members)
        members = [MemberSummary(m.member_id, m.instance_id, m.client_id, m.client_host, b"", b"")
                   for m in self.members.values()]
        return GroupSummary(self.state.value, self.protocol_type or "", "", members)

    def overview(self) -> GroupOverview:
        return GroupOverview(self.group_id, self.protocol_type or "", self.state.value)

    def __repr__(self) -> str:
        return (f"Group({self.group_id!r}, {self.state.value}, generation={self.generation}, "
                f"members={list(self.members)})")


class GroupCoordinator:
    """Every group of one broker. ``on_generation(group)`` is called when a generation starts (the group
    went to CompletingRebalance or Empty), for the server to persist what it keeps across restarts.
    Event-loop thread only."""

    def __init__(self, clock: Clock, config: GroupConfig | None = None, *,
                 on_generation: Callable[[Group], None] | None = None,
                 on_timer: Callable[[float], None] | None = None,
                 new_member_id: Callable[[str], str] | None = None) -> None:
        self.clock = clock
        self.config = config or GroupConfig()
        self.groups: dict[str, Group] = {}
        self._on_generation = on_generation
        self._on_timer = on_timer
        self._new_member_id = new_member_id or (lambda prefix: f"{prefix}-{uuid.uuid4()}")
        self._heap: list[tuple[float, int, _Timer]] = []
        self._compact_at = COMPACT_MIN
        self._seq = itertools.count()

    # -- timers ----------------------------------------------------------------------------------------
    def _after(self, delay_ms: float, fn: Callable[[], None]) -> _Timer:
        timer = _Timer(fn)
        deadline = self.clock.monotonic() + max(delay_ms, 0) / 1000.0
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._seq), timer))
        if len(heap) > self._compact_at:  # every heartbeat leaves a cancelled entry behind: sweep them
            heap[:] = [e for e in heap if not e[2].cancelled]
            heapq.heapify(heap)
            self._compact_at = max(COMPACT_MIN, 2 * len(heap))
        if self._on_timer is not None:
            self._on_timer(deadline)
        return timer

    def next_deadline(self) -> float | None:
        """The clock's ``monotonic()`` reading at which :meth:`poll` has work, or None."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def poll(self) -> None:
        """Run every timer that is due (session expiry, rebalance and sync timeouts, the initial delay)."""
        heap = self._heap
        while heap and heap[0][0] <= self.clock.monotonic():
            timer = heapq.heappop(heap)[2]
            if not timer.cancelled:
                timer.cancelled = True
                timer.fn()

    def close(self) -> None:
        """Forget every timer (the broker is stopping)."""
        for _, _, timer in self._heap:
            timer.cancelled = True
        self._heap.clear()

    def _live(self, group: Group) -> bool:
        return self.groups.get(group.group_id) is group

    # -- groups ----------------------------------------------------------------------------------------
    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def restore(self, group_id: str, protocol_type: str | None = None, generation: int = 0) -> Group:
        """An Empty group known from the metadata store (committed offsets survive a restart; members do not)."""
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
            group.protocol_type = protocol_type or None
            group.generation = generation
        return group

    def _get_or_create(self, group_id: str) -> Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
        return group

    # -- JoinGroup -------------------------------------------------------------------------------------
    def join(self, group_id: str, member_id: str, instance_id: str | None, *, protocol_type: str,
             protocols: list[tuple[str, bytes]], session_timeout_ms: int, rebalance_timeout_ms: int,
             callback: JoinCallback, client_id: str = "", client_host: str = "",
             require_known_member_id: bool = True, supports_skip_assignment: bool = False) -> None:
        """JoinGroup: ``callback`` gets the answer, now or once the rebalance completes."""
        if not group_id:
            callback(JoinResult(GroupError.INVALID_GROUP_ID, member_id))
            return
        cfg = self.config
        if not cfg.min_session_timeout_ms <= session_timeout_ms <= cfg.max_session_timeout_ms:
            callback(JoinResult(GroupError.INVALID_SESSION_TIMEOUT, member_id))
            return
        unknown = member_id == UNKNOWN_MEMBER_ID
        group = self.groups.get(group_id)
        if group is None:
            if not unknown:
                callback(JoinResult(GroupError.UNKNOWN_MEMBER_ID, member_id))
                return
            group = self._get_or_create(group_id)
        names = [p for p, _ in protocols]
        if not group.supports_protocols(protocol_type, names):
            callback(JoinResult(GroupError.INCONSISTENT_GROUP_PROTOCOL, member_id))
        elif unknown:
            new_id = self._new_member_id(instance_id if instance_id is not None else client_id)
            if instance_id is not None:
                old_id = group.static_members.get(instance_id)
                if old_id is not None:
                    self._update_static_member(group, old_id, new_id, instance_id, protocols, rebalance_timeout_ms,
                                               session_timeout_ms, callback, supports_skip_assignment)
                else:
                    self._add_member(group, new_id, instance_id, client_id, client_host, rebalance_timeout_ms,
                                     session_timeout_ms, protocol_type, protocols, callback)
            elif require_known_member_id:
                group.pending_members[new_id] = self._after(
                    session_timeout_ms, lambda: self._expire_pending(group, new_id))
                callback(JoinResult(GroupError.MEMBER_ID_REQUIRED, new_id))
            else:
                self._add_member(group, new_id, None, client_id, client_host, rebalance_timeout_ms,
                                 session_timeout_ms, protocol_type, protocols, callback)
        elif member_id in group.pending_members:
            if instance_id is not None:  # pending members are dynamic (Kafka: IllegalStateException)
                callback(JoinResult(GroupError.UNKNOWN_MEMBER_ID, member_id))
            else:
                self._add_member(group, member_id, None, client_id, client_host, rebalance_timeout_ms,
                                 session_timeout_ms, protocol_type, protocols, callback)
        else:
            self._join_current(group, member_id, instance_id, protocols, rebalance_timeout_ms, session_timeout_ms,
                               callback)
        if group.state is PREPARING:
            self._try_complete_join(group)

    def _join_current(self, group: Group, member_id: str, instance_id: str | None,
                      protocols: list[tuple[str, bytes]], rebalance_timeout_ms: int, session_timeout_ms: int,
                      callback: JoinCallback) -> None:
        error = self._validate_member(group, member_id, instance_id)
        if error is not None:
            callback(JoinResult(error, member_id))
            return
        member = group.members[member_id]
        state = group.state
        if state is PREPARING:
            self._update_and_rebalance(group, member, protocols, rebalance_timeout_ms, session_timeout_ms, callback)
        elif state is COMPLETING:
            if member.protocols == protocols:  # a retry of a join whose answer was lost: the same answer
                callback(self._current_generation(group, member_id, with_members=group.leader_id == member_id))
            else:
                self._update_and_rebalance(group, member, protocols, rebalance_timeout_ms, session_timeout_ms,
                                           callback)
        elif state is STABLE:
            if group.leader_id == member_id or member.protocols != protocols:
                # the leader rejoins to have a new assignment computed (e.g. topic metadata changed)
                self._update_and_rebalance(group, member, protocols, rebalance_timeout_ms, session_timeout_ms,
                                           callback)
            else:
                callback(self._current_generation(group, member_id, with_members=False))
        else:
            callback(JoinResult(GroupError.UNKNOWN_MEMBER_ID, member_id))

    def _current_generation(self, group: Group, member_id: str, *, with_members: bool,
                            leader: str | None = None, skip_assignment: bool = False) -> JoinResult:
        return JoinResult(NONE, member_id, group.generation, group.protocol_type, group.protocol_name,
                          (leader if leader is not None else group.leader_id) or "",
                          group.member_metadata() if with_members else [], skip_assignment)

    @staticmethod
    def _validate_member(group: Group, member_id: str, instance_id: str | None) -> GroupError | None:
        """Kafka validateCurrentMember: a static member's instance id must map to this member id."""
        if instance_id is not None:
            current = group.static_members.get(instance_id)
            if current is None:
                return GroupError.UNKNOWN_MEMBER_ID
            if current != member_id:
                return GroupError.FENCED_INSTANCE_ID
        if member_id not in group.members:
            return GroupError.UNKNOWN_MEMBER_ID
        return None

    def _add_member(self, group: Group, member_id: str, instance_id: str | None, client_id: str, client_host: str,
                    rebalance_timeout_ms: int, session_timeout_ms: int, protocol_type: str,
                    protocols: list[tuple[str, bytes]], callback: JoinCallback) -> None:
        member = Member(member_id, instance_id, client_id, client_host, rebalance_timeout_ms, session_timeout_ms,
                        protocol_type, protocols)
        member.is_new = True
        if group.state is PREPARING and group.generation == 0:
            group.new_member_added = True  # extends the initial rebalance delay
        group._add(member, callback)
        # A new member cannot heartbeat until it has joined; its parked join is dropped after this long.
        self._schedule_heartbeat(group, member, self.config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance(group)

    def _update_and_rebalance(self, group: Group, member: Member, protocols: list[tuple[str, bytes]],
                              rebalance_timeout_ms: int, session_timeout_ms: int, callback: JoinCallback) -> None:
        group._update(member, protocols, rebalance_timeout_ms, session_timeout_ms, callback)
        self._maybe_prepare_rebalance(group)

    def _update_static_member(self, group: Group, old_id: str, new_id: str, instance_id: str,
                              protocols: list[tuple[str, bytes]], rebalance_timeout_ms: int, session_timeout_ms: int,
                              callback: JoinCallback, supports_skip_assignment: bool) -> None:
        """A static member rejoined with an unknown member id (e.g. after a restart): it takes over its
        instance's place under a new member id; the old id is fenced."""
        current_leader = group.leader_id
        member = group.members.pop(old_id)
        group._invoke_join(member, JoinResult(GroupError.FENCED_INSTANCE_ID, old_id))
        group._invoke_sync(member, SyncResult(GroupError.FENCED_INSTANCE_ID))
        # _invoke_join decremented awaiting_join for the popped member; it is still counted as a member.
        member.member_id = new_id
        group.members[new_id] = member
        if group.leader_id == old_id:
            group.leader_id = new_id
        group.static_members[instance_id] = new_id
        if old_id in group.pending_sync:
            group.pending_sync.discard(old_id)
            group.pending_sync.add(new_id)
        self._schedule_heartbeat(group, member, member.session_timeout_ms)
        group._update(member, protocols, rebalance_timeout_ms, session_timeout_ms, callback)
        state = group.state
        if state is STABLE:
            if group.protocol_name == group.select_protocol():
                if supports_skip_assignment:  # KIP-814: the leader learns it leads but keeps the assignment
                    is_leader = group.leader_id == new_id
                    group._invoke_join(member, self._current_generation(group, new_id, with_members=is_leader,
                                                                        skip_assignment=is_leader))
                else:  # the old leader id, so that a rejoining leader does not compute a useless assignment
                    group._invoke_join(member, self._current_generation(group, new_id, with_members=False,
                                                                        leader=current_leader or ""))
                self._schedule_heartbeat(group, member, member.session_timeout_ms)
            else:
                self._maybe_prepare_rebalance(group)
        elif state is COMPLETING:
            # the leader may have been given the old member id: rebalance so the new id gets an assignment
            self._prepare_rebalance(group)

    # -- rebalance -------------------------------------------------------------------------------------
    def _maybe_prepare_rebalance(self, group: Group) -> None:
        if group.state in _CAN_REBALANCE:
            self._prepare_rebalance(group)

    def _prepare_rebalance(self, group: Group) -> None:
        if group.state is COMPLETING:  # members parked in SyncGroup must rejoin
            self._reset_and_propagate(group, GroupError.REBALANCE_IN_PROGRESS)
        self._clear_pending_sync(group)
        initial = group.state is EMPTY
        group.state = PREPARING
        if initial:
            delay = self.config.initial_rebalance_delay_ms
            self._schedule_join(group, delay, initial=True,
                                remaining_ms=max(group.rebalance_timeout_ms() - delay, 0))
        else:
            self._schedule_join(group, group.rebalance_timeout_ms(), initial=False)
            self._try_complete_join(group)

    def _schedule_join(self, group: Group, delay_ms: int, *, initial: bool, remaining_ms: int = 0) -> None:
        _cancel(group.join_timer)
        group.join_initial = initial
        group.join_remaining_ms = remaining_ms
        group.join_timer = self._after(delay_ms, lambda: self._expire_join(group))

    def _try_complete_join(self, group: Group) -> None:
        """Kafka DelayedJoin.tryComplete (the initial delay never completes early)."""
        if group.state is PREPARING and not group.join_initial and group.all_joined():
            self._complete_join(group)

    def _expire_join(self, group: Group) -> None:
        if not self._live(group) or group.state is not PREPARING:
            return
        group.join_timer = None
        if group.join_initial and group.new_member_added and group.join_remaining_ms != 0:
            # new members keep arriving: wait once more, up to the rebalance timeout (InitialDelayedJoin)
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, group.join_remaining_ms)
            remaining = max(group.join_remaining_ms - delay, 0)
            self._schedule_join(group, delay, initial=True, remaining_ms=remaining)
            return
        self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        _cancel(group.join_timer)
        group.join_timer = None
        group.join_initial = False
        for member in [m for m in group.members.values() if m.join_cb is None and m.instance_id is None]:
            group._remove(member.member_id)  # dynamic members that did not rejoin in time
        leader = group.members.get(group.leader_id) if group.leader_id is not None else None
        if leader is not None and leader.join_cb is None:  # the leader did not rejoin: any member that did
            joined = next((m for m in group.members.values() if m.join_cb is not None), None)
            if joined is None:  # nobody rejoined: wait until sessions expire the silent members
                self._schedule_join(group, group.rebalance_timeout_ms(), initial=False)
                return
            group.leader_id = joined.member_id
        # initNextGeneration
        group.generation += 1
        group.pending_sync.clear()
        if group.members:
            group.protocol_name = group.select_protocol()
            group.state = COMPLETING
        else:
            group.protocol_name = None
            group.state = EMPTY
            group.leader_id = None
        group.new_member_added = False
        if self._on_generation is not None:
            self._on_generation(group)
        if group.state is EMPTY:
            return
        for member in list(group.members.values()):
            result = self._current_generation(group, member.member_id, with_members=group.leader_id == member.member_id)
            group._invoke_join(member, result)
            self._schedule_heartbeat(group, member, member.session_timeout_ms)
            member.is_new = False
            group.pending_sync.add(member.member_id)
        generation = group.generation
        _cancel(group.sync_timer)
        group.sync_timer = self._after(group.rebalance_timeout_ms(), lambda: self._expire_sync(group, generation))

    def _expire_pending(self, group: Group, member_id: str) -> None:
        if self._live(group) and group.pending_members.pop(member_id, None) is not None:
            if group.state is PREPARING:
                self._try_complete_join(group)

    # -- SyncGroup -------------------------------------------------------------------------------------
    def sync(self, group_id: str, generation: int, member_id: str, instance_id: str | None, *,
             assignments: dict[str, bytes], callback: SyncCallback, protocol_type: str | None = None,
             protocol_name: str | None = None) -> None:
        """SyncGroup: the leader brings ``assignments``; every member's ``callback`` gets its own."""
        if not group_id:
            callback(SyncResult(GroupError.INVALID_GROUP_ID))
            return
        group = self.groups.get(group_id)
        if group is None:
            callback(SyncResult(GroupError.UNKNOWN_MEMBER_ID))
            return
        error = self._validate_member(group, member_id, instance_id)
        if error is None:
            if generation != group.generation:
                error = GroupError.ILLEGAL_GENERATION
            elif protocol_type is not None and protocol_type != group.protocol_type:
                error = GroupError.INCONSISTENT_GROUP_PROTOCOL
            elif protocol_name is not None and protocol_name != group.protocol_name:
                error = GroupError.INCONSISTENT_GROUP_PROTOCOL
        if error is not None:
            callback(SyncResult(error))
            return
        state = group.state
        if state is EMPTY:
            callback(SyncResult(GroupError.UNKNOWN_MEMBER_ID))
        elif state is PREPARING:
            callback(SyncResult(GroupError.REBALANCE_IN_PROGRESS))
        elif state is COMPLETING:
            member = group.members[member_id]
            if member.sync_cb is not None:  # a replaced SyncGroup: answer it rather than drop it
                group._invoke_sync(member, SyncResult(GroupError.REBALANCE_IN_PROGRESS))
            member.sync_cb = callback
            self._sync_received(group, member_id)
            if group.leader_id == member_id:
                for m in group.members.values():  # members the leader left out get an empty assignment
                    m.assignment = bytes(assignments.get(m.member_id, b""))
                self._propagate(group, NONE)
                group.state = STABLE
        elif state is STABLE:
            self._sync_received(group, member_id)
            member = group.members[member_id]
            callback(SyncResult(NONE, group.protocol_type, group.protocol_name, member.assignment))
            self._schedule_heartbeat(group, member, member.session_timeout_ms)

    def _sync_received(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            _cancel(group.sync_timer)
            group.sync_timer = None

    def _clear_pending_sync(self, group: Group) -> None:
        group.pending_sync.clear()
        _cancel(group.sync_timer)
        group.sync_timer = None

    def _expire_sync(self, group: Group, generation: int) -> None:
        """Members that sent no SyncGroup within the rebalance timeout are removed (Kafka DelayedSync)."""
        if not self._live(group) or generation != group.generation or group.state not in (COMPLETING, STABLE):
            return
        group.sync_timer = None
        if group.pending_sync:
            for member_id in list(group.pending_sync):
                group._remove(member_id)
            self._prepare_rebalance(group)

    def _propagate(self, group: Group, error: GroupError) -> None:
        ptype, pname = (group.protocol_type, group.protocol_name) if error is NONE else (None, None)
        for member in list(group.members.values()):
            if group._invoke_sync(member, SyncResult(error, ptype, pname, member.assignment)):
                self._schedule_heartbeat(group, member, member.session_timeout_ms)

    def _reset_and_propagate(self, group: Group, error: GroupError) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate(group, error)

    # -- Heartbeat, sessions ---------------------------------------------------------------------------
    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None = None) -> GroupError:
        if not group_id:
            return GroupError.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None:
            return GroupError.UNKNOWN_MEMBER_ID
        error = self._validate_member(group, member_id, instance_id)
        if error is not None:
            return error
        if generation != group.generation:
            return GroupError.ILLEGAL_GENERATION
        state = group.state
        if state is EMPTY:
            return GroupError.UNKNOWN_MEMBER_ID
        member = group.members[member_id]
        self._schedule_heartbeat(group, member, member.session_timeout_ms)
        return GroupError.REBALANCE_IN_PROGRESS if state is PREPARING else NONE

    def _schedule_heartbeat(self, group: Group, member: Member, timeout_ms: int) -> None:
        """Kafka completeAndScheduleNextExpiration: the member's session starts over."""
        _cancel(member.timer)
        if member.has_satisfied_heartbeat:
            member.timer = None
            return
        member.timer = self._after(timeout_ms, lambda: self._expire_heartbeat(group, member))

    def _expire_heartbeat(self, group: Group, member: Member) -> None:
        member.timer = None
        if not self._live(group) or group.members.get(member.member_id) is not member:
            return
        if not member.has_satisfied_heartbeat:
            self._remove_and_update(group, member)

    def _remove_and_update(self, group: Group, member: Member) -> None:
        """Kafka removeMemberAndUpdateGroup."""
        group._invoke_join(member, JoinResult(GroupError.UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID))
        group._invoke_sync(member, SyncResult(GroupError.UNKNOWN_MEMBER_ID))
        group._remove(member.member_id)
        state = group.state
        if state is STABLE or state is COMPLETING:
            self._maybe_prepare_rebalance(group)
        elif state is PREPARING:
            self._try_complete_join(group)

    # -- LeaveGroup ------------------------------------------------------------------------------------
    def leave(self, group_id: str, members: list[tuple[str, str | None]]) -> tuple[GroupError, list[GroupError]]:
        """LeaveGroup for (member id, group instance id) pairs: (request error, one error per member). A
        member id of "" with an instance id removes that static member (the admin's removeMembersFromGroup)."""
        if not group_id:
            return GroupError.INVALID_GROUP_ID, []
        group = self.groups.get(group_id)
        if group is None:
            return NONE, [GroupError.UNKNOWN_MEMBER_ID] * len(members)
        errors = []
        for member_id, instance_id in members:
            if member_id == UNKNOWN_MEMBER_ID:
                current = group.static_members.get(instance_id) if instance_id is not None else None
                if current is None:
                    errors.append(GroupError.UNKNOWN_MEMBER_ID)
                else:
                    self._remove_and_update(group, group.members[current])
                    errors.append(NONE)
            elif member_id in group.pending_members:
                _cancel(group.pending_members.pop(member_id))
                if group.state is PREPARING:
                    self._try_complete_join(group)
                errors.append(NONE)
            else:
                error = self._validate_member(group, member_id, instance_id)
                if error is None:
                    self._remove_and_update(group, group.members[member_id])
                    error = NONE
                errors.append(error)
        return NONE, errors

    # -- offsets ---------------------------------------------------------------------------------------
    def check_offset_commit(self, group_id: str, member_id: str, instance_id: str | None, generation: int, *,
                            transactional: bool = False) -> GroupError:
        """May this OffsetCommit (or TxnOffsetCommit) store its offsets? A commit with generation -1 to an
        unknown group creates a "simple" group (a consumer that assigns partitions itself, or an admin)."""
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0 and not transactional:
                return GroupError.ILLEGAL_GENERATION  # the group is gone, or this is an older generation
            group = self._get_or_create(group_id)
        state = group.state
        if generation < 0 and state is EMPTY:
            return NONE
        if generation >= 0 or member_id != UNKNOWN_MEMBER_ID or instance_id is not None:
            error = self._validate_member(group, member_id, instance_id)
            if error is not None:
                return error
            if generation != group.generation:
                return GroupError.ILLEGAL_GENERATION
        elif not transactional and state is not EMPTY:
            return GroupError.UNKNOWN_MEMBER_ID  # only members commit to a group that has members
        if transactional:
            return NONE
        if state is COMPLETING:
            return GroupError.REBALANCE_IN_PROGRESS
        if state is STABLE or state is PREPARING:
            # commits count as a sign of life; the heartbeat response announces a rebalance
            member = group.members[member_id]
            self._schedule_heartbeat(group, member, member.session_timeout_ms)
        return NONE

    # -- DescribeGroups, ListGroups, DeleteGroups ------------------------------------------------------
    def describe(self, group_id: str) -> GroupSummary:
        group = self.groups.get(group_id)
        if group is None:
            return GroupSummary(DEAD.value, "", "", [])
        return group.summary()

    def list_groups(self, states: Iterable[str] = ()) -> list[GroupOverview]:
        """Every group, or those in one of ``states`` (compared without case, as Kafka 3.x)."""
        wanted = {s.lower() for s in states}
        return [g.overview() for g in self.groups.values() if not wanted or g.state.value.lower() in wanted]

    def remove_idle_groups(self, keep: Callable[[str], bool]) -> list[str]:
        """Forget Empty groups with no pending member unless ``keep(group_id)`` (e.g. it has committed
        offsets), as Kafka's periodic offsets cleanup drops empty groups without offsets. Returns their ids."""
        idle = [g for g in self.groups.values()
                if g.state is EMPTY and not g.pending_members and not keep(g.group_id)]
        for group in idle:
            group.state = DEAD
            _cancel(group.join_timer)
            _cancel(group.sync_timer)
            del self.groups[group.group_id]
        return [g.group_id for g in idle]

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, GroupError]:
        """DeleteGroups: only empty groups go (Dead); the server then removes their offsets."""
        out: dict[str, GroupError] = {}
        for group_id in group_ids:
            if group_id in out:
                continue
            group = self.groups.get(group_id)
            if group is None:
                out[group_id] = GroupError.GROUP_ID_NOT_FOUND
            elif group.state is EMPTY:
                group.state = DEAD
                for timer in group.pending_members.values():
                    timer.cancel()
                group.pending_members.clear()
                _cancel(group.join_timer)
                _cancel(group.sync_timer)
                del self.groups[group_id]
                out[group_id] = NONE
            else:
                out[group_id] = GroupError.NON_EMPTY_GROUP
        return out
