"""core.groups: the classic consumer-group state machine, driven by a ManualClock (no sleeping, no I/O).

Each scenario follows what Kafka's GroupCoordinator does (GroupCoordinatorTest.scala covers the same
ground): MEMBER_ID_REQUIRED, the initial rebalance delay, rebalances on join/leave/expiry, sync waiting for
the leader, pending-sync expiry, static members and fencing, offset-commit checks, delete/list/describe.
"""

from __future__ import annotations

import itertools

import pytest

from omnibus.core.clock import ManualClock
from omnibus.core.groups import (NEW_MEMBER_JOIN_TIMEOUT_MS, GroupConfig, GroupCoordinator, GroupError, GroupState,
                                  JoinResult, SyncResult)

E = GroupError
SESSION, REBALANCE = 10_000, 30_000
RANGE = [("range", b"meta-range")]


class Harness:
    def __init__(self, delay_ms: int = 0, **cfg) -> None:
        self.clock = ManualClock()
        ids = itertools.count(1)
        self.generations: list[tuple[str, int]] = []
        self.c = GroupCoordinator(self.clock, GroupConfig(initial_rebalance_delay_ms=delay_ms, **cfg),
                                  new_member_id=lambda prefix: f"{prefix}-{next(ids)}",
                                  on_generation=lambda g: self.generations.append((g.group_id, g.generation)))

    def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        self.c.poll()

    def join(self, member_id: str = "", group: str = "g", *, instance: str | None = None, protocols=RANGE,
             ptype: str = "consumer", session: int = SESSION, rebalance: int = REBALANCE, client: str = "c",
             require_known: bool = True, skip: bool = False) -> list[JoinResult]:
        out: list[JoinResult] = []
        self.c.join(group, member_id, instance, protocol_type=ptype, protocols=protocols, session_timeout_ms=session,
                    rebalance_timeout_ms=rebalance, callback=out.append, client_id=client, client_host="/127.0.0.1",
                    require_known_member_id=require_known, supports_skip_assignment=skip)
        return out

    def new_member(self, group: str = "g", **kw) -> tuple[str, list[JoinResult]]:
        """A v4+ dynamic member: MEMBER_ID_REQUIRED, then the join with the given id (parked)."""
        first = self.join("", group, **kw)
        assert len(first) == 1 and first[0].error is E.MEMBER_ID_REQUIRED
        member_id = first[0].member_id
        return member_id, self.join(member_id, group, **kw)

    def sync(self, member_id: str, generation: int, assignments: dict | None = None, group: str = "g",
             instance: str | None = None) -> list[SyncResult]:
        out: list[SyncResult] = []
        self.c.sync(group, generation, member_id, instance, assignments=assignments or {}, callback=out.append)
        return out

    def state(self, group: str = "g") -> str:
        return self.c.describe(group).state


def stable_pair(h: Harness) -> tuple[str, str, int]:
    """Two members in a Stable group: (leader, follower, generation)."""
    a, ja = h.new_member(client="a")
    h.advance(0)
    assert ja[0].error is E.NONE and ja[0].leader == a
    b, jb = h.new_member(client="b")
    assert jb == [] and h.state() == "PreparingRebalance"
    assert h.c.heartbeat("g", 1, a) is E.REBALANCE_IN_PROGRESS
    ja2 = h.join(a)
    assert len(ja2) == 1 and len(jb) == 1  # everyone rejoined: the rebalance completes at once
    gen = ja2[0].generation
    assert gen == 2 and jb[0].generation == 2 and ja2[0].leader == a
    sb = h.sync(b, gen)
    assert sb == []  # the follower waits for the leader
    sa = h.sync(a, gen, {a: b"A", b: b"B"})
    assert sa[0].assignment == b"A" and sb[0].assignment == b"B" and h.state() == "Stable"
    return a, b, gen


def test_member_id_required_then_join_completes_on_the_next_turn():
    h = Harness()
    first = h.join("")
    assert first[0].error is E.MEMBER_ID_REQUIRED and first[0].member_id.startswith("c-")
    assert first[0].generation == -1 and h.state() == "Empty"
    member_id = first[0].member_id
    joined = h.join(member_id)
    assert joined == [] and h.state() == "PreparingRebalance"  # the initial delay (0) still waits for a poll
    h.advance(0)
    r = joined[0]
    assert (r.error, r.member_id, r.generation, r.leader, r.protocol_type, r.protocol_name) == \
        (E.NONE, member_id, 1, member_id, "consumer", "range")
    assert r.members == [(member_id, None, b"meta-range")]  # the leader gets every member's metadata
    assert h.state() == "CompletingRebalance" and h.generations == [("g", 1)]
    s = h.sync(member_id, 1, {member_id: b"all"})
    assert s[0] == SyncResult(E.NONE, "consumer", "range", b"all") and h.state() == "Stable"


def test_old_clients_join_without_member_id_required():
    h = Harness()
    r = h.join("", require_known=False)
    assert r == []
    h.advance(0)
    assert r[0].error is E.NONE and r[0].member_id == "c-1"


def test_initial_rebalance_delay_gathers_members_and_is_extended_up_to_the_rebalance_timeout():
    h = Harness(delay_ms=3000)
    a, ja = h.new_member(rebalance=7000)
    h.advance(2000)
    b, jb = h.new_member(rebalance=7000)  # a new member during the delay extends it by another delay
    h.advance(1000)
    assert ja == [] and jb == []
    h.advance(2999)
    assert ja == []
    h.advance(1)  # 6000 ms after the first join
    assert ja[0].generation == jb[0].generation == 1 and len(ja[0].members) == 2
    # the extension is capped by the rebalance timeout: members keep arriving, the group still forms
    h2 = Harness(delay_ms=3000)
    x, jx = h2.new_member("g2", rebalance=5000)
    for _ in range(3):
        h2.advance(2500)
        h2.new_member("g2", rebalance=5000)
    assert jx and jx[0].generation == 1
    assert h2.clock.monotonic() <= 7.5


def test_rebalance_when_a_member_joins_a_stable_group_and_sync_waits_for_the_leader():
    h = Harness()
    a, b, gen = stable_pair(h)
    assert h.c.heartbeat("g", gen, a) is E.NONE and h.c.heartbeat("g", gen, b) is E.NONE
    assert h.c.heartbeat("g", gen - 1, a) is E.ILLEGAL_GENERATION
    assert h.c.heartbeat("g", gen, "nobody") is E.UNKNOWN_MEMBER_ID
    assert h.c.heartbeat("other", gen, a) is E.UNKNOWN_MEMBER_ID
    # a follower that rejoins with the same metadata in Stable just gets the current generation
    jb = h.join(b)
    assert jb[0].generation == gen and jb[0].members == [] and h.state() == "Stable"
    # the leader rejoining forces a rebalance (e.g. topic metadata changed)
    ja = h.join(a)
    assert ja == [] and h.state() == "PreparingRebalance"
    assert h.sync(b, gen)[0].error is E.REBALANCE_IN_PROGRESS
    jb = h.join(b)
    assert ja[0].generation == jb[0].generation == gen + 1


def test_session_expiry_removes_a_silent_member_and_rebalances():
    h = Harness()
    a, b, gen = stable_pair(h)
    for _ in range(4):  # a heartbeats, b does not
        h.advance(3000)
        assert h.c.heartbeat("g", gen, a) is E.NONE or h.state() == "PreparingRebalance"
    assert h.state() == "PreparingRebalance"  # b expired after 10 s
    assert h.c.heartbeat("g", gen, b) is E.UNKNOWN_MEMBER_ID
    assert h.c.heartbeat("g", gen, a) is E.REBALANCE_IN_PROGRESS
    ja = h.join(a)
    assert ja[0].generation == gen + 1 and [m[0] for m in ja[0].members] == [a]


def test_a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout():
    h = Harness()
    a, b, gen = stable_pair(h)
    ja = h.join(a)  # leader rejoins; b keeps heartbeating but never rejoins
    for _ in range(9):
        h.advance(3000)
        h.c.heartbeat("g", gen, b)
    assert ja == []
    h.advance(3000)  # 30 s rebalance timeout
    assert ja[0].generation == gen + 1 and [m[0] for m in ja[0].members] == [a]
    assert h.c.heartbeat("g", gen, b) is E.UNKNOWN_MEMBER_ID


def test_leader_that_does_not_rejoin_is_replaced():
    h = Harness()
    a, b, gen = stable_pair(h)
    h.c.leave("g", [])  # no-op
    jb = h.join(b, protocols=[("range", b"changed")])  # follower changes metadata: rebalance
    assert jb == []
    h.advance(REBALANCE)
    assert jb[0].leader == b and jb[0].generation == gen + 1 and len(jb[0].members) == 1


def test_pending_sync_expiry_removes_members_that_never_sync():
    h = Harness()
    a, ja = h.new_member(client="a")
    h.advance(0)
    b, jb = h.new_member(client="b")
    h.join(a)
    gen = jb[0].generation
    sa = h.sync(a, gen, {a: b"A", b: b"B"})
    assert sa[0].error is E.NONE and h.state() == "Stable"
    for _ in range(9):  # both heartbeat for 27 s
        h.advance(3000)
        assert h.c.heartbeat("g", gen, a) is E.NONE and h.c.heartbeat("g", gen, b) is E.NONE
    h.advance(2999)
    assert h.state() == "Stable"
    h.advance(1)  # 30 s rebalance timeout: b never sent SyncGroup
    assert h.state() == "PreparingRebalance" and h.c.heartbeat("g", gen, b) is E.UNKNOWN_MEMBER_ID


def test_leave_group_last_member_empties_the_group_and_pending_members_can_leave():
    h = Harness()
    a, b, gen = stable_pair(h)
    error, errors = h.c.leave("g", [(b, None), ("ghost", None)])
    assert error is E.NONE and errors == [E.NONE, E.UNKNOWN_MEMBER_ID]
    assert h.state() == "PreparingRebalance"
    ja = h.join(a)
    assert ja[0].generation == gen + 1
    assert h.c.leave("g", [(a, None)]) == (E.NONE, [E.NONE])
    assert h.state() == "Empty" and h.c.group("g").generation == gen + 2
    assert h.c.leave("nope", [(a, None)]) == (E.NONE, [E.UNKNOWN_MEMBER_ID])
    assert h.c.leave("", [(a, None)]) == (E.INVALID_GROUP_ID, [])
    pending = h.join("")[0].member_id
    assert h.c.leave("g", [(pending, None)]) == (E.NONE, [E.NONE])


def test_pending_member_blocks_the_rebalance_until_it_joins_or_expires():
    h = Harness()
    a, b, gen = stable_pair(h)
    pending = h.join("")[0].member_id  # got MEMBER_ID_REQUIRED, has not come back yet
    ja, jb = h.join(a), h.join(b)
    assert ja == [] and jb == []
    h.advance(SESSION)  # the pending member's session runs out
    assert ja[0].generation == gen + 1 and len(ja[0].members) == 2
    assert h.join(pending)[0].error is E.UNKNOWN_MEMBER_ID


def test_static_member_rejoin_keeps_the_assignment_and_fences_the_old_id():
    h = Harness()
    ja = h.join("", instance="i-a")  # static members never get MEMBER_ID_REQUIRED
    h.advance(0)
    a = ja[0].member_id
    assert a.startswith("i-a-") and ja[0].members == [(a, "i-a", b"meta-range")]
    h.sync(a, 1, {a: b"A"})
    # the static member restarts: a join with no member id takes over its place, no rebalance
    again = h.join("", instance="i-a")
    a2 = again[0].member_id
    assert again[0].error is E.NONE and a2 != a and again[0].generation == 1 and h.state() == "Stable"
    assert again[0].leader == a and again[0].members == []  # the old leader id: no assignment to compute
    assert h.sync(a2, 1, instance="i-a")[0].assignment == b"A"
    assert h.c.heartbeat("g", 1, a, "i-a") is E.FENCED_INSTANCE_ID
    assert h.c.heartbeat("g", 1, a2, "i-a") is E.NONE
    assert h.c.heartbeat("g", 1, a2, "i-b") is E.UNKNOWN_MEMBER_ID
    assert h.join(a, instance="i-a")[0].error is E.FENCED_INSTANCE_ID
    # JoinGroup v9 (KIP-814): the leader is told it leads but must skip the assignment
    third = h.join("", instance="i-a", skip=True)
    assert third[0].skip_assignment and third[0].leader == third[0].member_id and len(third[0].members) == 1
    # admin removal by instance id
    assert h.c.leave("g", [("", "i-a")]) == (E.NONE, [E.NONE])
    assert h.state() == "Empty"


def test_static_member_survives_a_rebalance_it_misses_until_its_session_expires():
    h = Harness()
    ja = h.join("", instance="i-a")
    h.advance(0)
    a = ja[0].member_id
    h.sync(a, 1, {a: b"A"})
    d, jd = h.new_member(client="d")
    for _ in range(10):  # it heartbeats (REBALANCE_IN_PROGRESS) but does not rejoin within the 30 s
        h.advance(3000)
        h.c.heartbeat("g", 1, a, "i-a")
    # the static member stays (a dynamic one would be dropped) and is in the new generation
    assert jd[0].generation == 2 and {m[0] for m in jd[0].members} == {a, d}
    h.advance(SESSION)  # but its session expires like anyone's
    assert a not in h.c.group("g").members


def test_parked_join_of_a_replaced_static_member_is_fenced():
    h = Harness()
    ja, jb = h.join("", instance="i-a"), h.join("", instance="i-b")
    h.advance(0)
    a = ja[0].member_id
    h.sync(a, 1, {a: b"A"})
    h.new_member(client="d")  # rebalance starts
    parked = h.join(a, instance="i-a")  # parked: i-b has not rejoined
    assert parked == []
    h.join("", instance="i-a")  # a duplicate instance takes over
    assert parked[0].error is E.FENCED_INSTANCE_ID


def test_protocol_checks_and_vote():
    h = Harness()
    a, ja = h.new_member(protocols=[("roundrobin", b"r"), ("range", b"x")])
    h.advance(0)
    assert ja[0].protocol_name == "roundrobin"
    assert h.join("", ptype="connect")[0].error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.join("", protocols=[("sticky", b"")])[0].error is E.INCONSISTENT_GROUP_PROTOCOL
    assert h.join("", "fresh", protocols=[])[0].error is E.INCONSISTENT_GROUP_PROTOCOL
    b, _ = h.new_member(protocols=[("range", b"y"), ("roundrobin", b"r")])
    c, _ = h.new_member(protocols=[("range", b"z"), ("roundrobin", b"r")])
    ja2 = h.join(a, protocols=[("roundrobin", b"r"), ("range", b"x")])
    assert ja2[0].protocol_name == "range"  # two votes for range against one
    assert sorted(m[2] for m in ja2[0].members) == [b"x", b"y", b"z"]


def test_request_validation():
    h = Harness()
    assert h.join("", session=5999)[0].error is E.INVALID_SESSION_TIMEOUT
    assert h.join("", session=1_800_001)[0].error is E.INVALID_SESSION_TIMEOUT
    assert h.join("", group="")[0].error is E.INVALID_GROUP_ID
    assert h.join("someone")[0].error is E.UNKNOWN_MEMBER_ID  # a member id for a group that does not exist
    assert h.sync("x", 1, group="")[0].error is E.INVALID_GROUP_ID
    assert h.sync("x", 1, group="none")[0].error is E.UNKNOWN_MEMBER_ID
    assert h.c.heartbeat("", 1, "x") is E.INVALID_GROUP_ID


def test_offset_commit_checks():
    h = Harness()
    # a consumer without group management commits with generation -1: a simple (Empty) group appears
    assert h.c.check_offset_commit("simple", "", None, -1) is E.NONE
    assert h.c.describe("simple").state == "Empty"
    assert h.c.check_offset_commit("gone", "m", None, 3) is E.ILLEGAL_GENERATION
    a, ja = h.new_member()
    assert h.c.check_offset_commit("g", a, None, 1) is E.UNKNOWN_MEMBER_ID or h.state() == "PreparingRebalance"
    h.advance(0)
    assert h.c.check_offset_commit("g", a, None, 1) is E.REBALANCE_IN_PROGRESS  # CompletingRebalance
    h.sync(a, 1, {a: b"A"})
    assert h.c.check_offset_commit("g", a, None, 1) is E.NONE
    assert h.c.check_offset_commit("g", a, None, 0) is E.ILLEGAL_GENERATION
    assert h.c.check_offset_commit("g", "", None, -1) is E.UNKNOWN_MEMBER_ID  # not a member, group not empty
    assert h.c.check_offset_commit("g", "x", None, 1) is E.UNKNOWN_MEMBER_ID
    # commits keep a member alive
    for _ in range(5):
        h.advance(4000)
        assert h.c.check_offset_commit("g", a, None, 1) is E.NONE
    assert h.state() == "Stable"
    assert h.c.check_offset_commit("g", "", None, -1, transactional=True) is E.NONE


def test_describe_list_delete():
    h = Harness()
    a, ja = h.new_member(client="cli")
    h.advance(0)
    h.sync(a, 1, {a: b"A"})
    h.c.check_offset_commit("simple", "", None, -1)
    s = h.c.describe("g")
    assert (s.state, s.protocol_type, s.protocol) == ("Stable", "consumer", "range")
    assert s.members[0] == (a, None, "cli", "/127.0.0.1", b"meta-range", b"A")
    assert h.c.describe("none") == ("Dead", "", "", [])
    assert {g.group_id: g.state for g in h.c.list_groups()} == {"g": "Stable", "simple": "Empty"}
    assert [g.group_id for g in h.c.list_groups(["empty"])] == ["simple"]
    assert [g.protocol_type for g in h.c.list_groups(["Stable"])] == ["consumer"]
    assert h.c.delete_groups(["g", "simple", "none", "simple"]) == {
        "g": E.NON_EMPTY_GROUP, "simple": E.NONE, "none": E.GROUP_ID_NOT_FOUND}
    assert h.c.group("simple") is None


def test_duplicate_join_and_sync_are_answered_not_dropped():
    h = Harness()
    a, b, gen = stable_pair(h)
    first = h.join(a)
    second = h.join(a)
    assert first[0].error is E.REBALANCE_IN_PROGRESS and second == []
    h.join(b)
    assert second[0].generation == gen + 1
    s1 = h.sync(b, gen + 1)
    s2 = h.sync(b, gen + 1)
    assert s1[0].error is E.REBALANCE_IN_PROGRESS and s2 == []


def test_new_member_join_timeout_and_timers_do_not_leak():
    h = Harness()
    a, b, gen = stable_pair(h)
    c, jc = h.new_member(client="c")  # parked until a and b rejoin; they never do, and stop heartbeating
    h.advance(SESSION)
    # a and b expired: the rebalance completes with c alone
    assert jc[0].generation == gen + 1 and [m[0] for m in jc[0].members] == [c]
    h.c.leave("g", [(c, None)])
    assert h.state() == "Empty"
    h.advance(10 * 60_000)
    assert h.c.next_deadline() is None  # nothing left to wake up for


@pytest.mark.parametrize("members", [1, 3])
def test_close_forgets_timers(members):
    h = Harness()
    for _ in range(members):
        h.new_member()
    assert h.c.next_deadline() is not None
    h.c.close()
    assert h.c.next_deadline() is None


def test_on_timer_announces_deadlines_and_idle_groups_are_forgotten():
    h = Harness()
    announced = []
    h.c._on_timer = announced.append
    a, ja = h.new_member()
    assert announced and min(announced) == h.c.next_deadline()
    h.advance(0)
    h.c.leave("g", [(a, None)])
    h.c.check_offset_commit("committed", "", None, -1)
    assert {g.group_id for g in h.c.list_groups()} == {"g", "committed"}
    assert h.c.remove_idle_groups(keep=lambda gid: gid == "committed") == ["g"]
    assert [g.group_id for g in h.c.list_groups()] == ["committed"]


# -- property: any interleaving keeps the bookkeeping consistent and answers every request exactly once ----
from hypothesis import given, settings, strategies as st  # noqa: E402

#: Mostly each client's natural next step (join, wait, sync, heartbeat), sometimes something out of turn.
OPS = st.tuples(st.sampled_from(["step"] * 20 + ["join", "restart", "sync", "heartbeat", "leave", "commit",
                                                  "advance", "advance", "delete"]), st.integers(0, 3))
ADVANCE_MS = [50, 3000, 10_000, 30_000]


def check_invariants(c: GroupCoordinator) -> None:
    for g in c.groups.values():
        members = g.members
        assert g.awaiting_join == sum(m.join_cb is not None for m in members.values())
        assert g.pending_sync <= set(members)
        assert (g.leader_id is None) == (not members) or g.leader_id in members
        assert all(members[mid].instance_id == iid for iid, mid in g.static_members.items())
        assert set(g.static_members.values()) == {m.member_id for m in members.values() if m.instance_id}
        counts = {}
        for m in members.values():
            for p, _ in m.protocols:
                counts[p] = counts.get(p, 0) + 1
        assert {p: n for p, n in g._supported.items() if n} == counts
        assert not set(g.pending_members) & set(members)
        if g.state is GroupState.EMPTY:
            assert not members
        if g.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            assert members and g.protocol_name is not None
        if g.state is not GroupState.COMPLETING_REBALANCE:
            assert all(m.sync_cb is None for m in members.values())
        if g.state is not GroupState.PREPARING_REBALANCE:
            assert all(m.join_cb is None for m in members.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, min_size=10, max_size=80), st.booleans())
def test_any_interleaving_keeps_invariants_and_answers_every_request_once(ops, static):
    h = Harness(delay_ms=100)
    ids = {i: "" for i in range(4)}
    gens = {i: -1 for i in range(4)}
    #: per client: what its next natural step is ("join", "wait", "sync", "heartbeat")
    phase = {i: "join" for i in range(4)}
    answers: dict[int, int] = {}
    seq = itertools.count()

    def answered(n, on_result=None):
        def cb(result):
            answers[n] = answers.get(n, 0) + 1
            assert answers[n] == 1, "answered twice"
            if on_result is not None:
                on_result(result)
        answers.setdefault(n, 0)
        return cb

    def on_join(i):
        def f(r):
            if r.error in (E.NONE, E.MEMBER_ID_REQUIRED):
                ids[i] = r.member_id
                gens[i] = r.generation
            elif r.error in (E.UNKNOWN_MEMBER_ID, E.FENCED_INSTANCE_ID):
                ids[i], gens[i] = "", -1
            phase[i] = "sync" if r.error is E.NONE else "join"
        return f

    def on_sync(i):
        def f(r):
            phase[i] = "heartbeat" if r.error is E.NONE else "join"
        return f

    for op, arg in ops:
        if op == "advance":
            h.advance(ADVANCE_MS[arg])
        elif op == "delete":
            h.c.delete_groups(["g"])
        else:
            i = arg
            instance = f"inst-{i}" if static and i % 2 else None
            if op == "step":
                op = phase[i]
                if op == "heartbeat" and h.c.heartbeat("g", gens[i], ids[i], instance) is not E.NONE:
                    phase[i] = "join"
                if op == "wait":
                    h.advance(100)  # parked: time passes
                if op in ("wait", "heartbeat"):
                    check_invariants(h.c)
                    continue
                phase[i] = "wait"
            if op in ("join", "restart"):
                member_id = "" if op == "restart" else ids[i]
                h.c.join("g", member_id, instance, protocol_type="consumer", protocols=RANGE,
                         session_timeout_ms=SESSION, rebalance_timeout_ms=REBALANCE,
                         callback=answered(next(seq), on_join(i)), client_id=f"c{i}")
            elif op == "sync":
                g = h.c.group("g")
                assignments = {m: b"x" for m in g.members} if g is not None and g.leader_id == ids[i] else {}
                h.c.sync("g", gens[i], ids[i], instance, assignments=assignments,
                         callback=answered(next(seq), on_sync(i)))
            elif op == "heartbeat":
                h.c.heartbeat("g", gens[i], ids[i], instance)
            elif op == "leave":
                h.c.leave("g", [(ids[i], instance)])
            elif op == "commit":
                h.c.check_offset_commit("g", ids[i], instance, gens[i])
        check_invariants(h.c)
    for _ in range(4):  # with time, every parked JoinGroup and SyncGroup gets its one answer
        h.advance(NEW_MEMBER_JOIN_TIMEOUT_MS)
        check_invariants(h.c)
    assert all(n == 1 for n in answers.values()), answers


def test_heartbeats_do_not_grow_the_timer_heap_without_bound():
    h = Harness()
    a, b, gen = stable_pair(h)
    for _ in range(5000):  # heartbeats every 10 ms for 50 s: each one cancels and reschedules a session timer
        h.advance(10)
        assert h.c.heartbeat("g", gen, a) is E.NONE and h.c.heartbeat("g", gen, b) is E.NONE
    assert len(h.c._heap) <= 2048
    assert h.state() == "Stable"
