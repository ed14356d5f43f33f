"""JetStream consumers in the core: deliver and ack policies, re-delivery (ack_wait, backoff, NAK, TERM,
max_deliver), max_ack_pending, workqueue and interest retention, pull requests, restart.

Every time rule is driven by a ManualClock; rules cite nats-server consumer.go."""

from __future__ import annotations

import pytest

from omnibus.core.stream_consumers import (
    PULL_DONE,
    PULL_EXPIRED,
    PULL_MAX_BYTES,
    PULL_NO_MESSAGES,
    STOP_MAX_ACK_PENDING,
    STOP_MAX_BYTES,
    STOP_NO_MESSAGES,
    ConsumerAlreadyExists,
    ConsumerConfig,
    ConsumerCreateFailed,
    ConsumerDeliverCycle,
    ConsumerDoesNotExist,
    ConsumerDuplicateFilterSubjects,
    ConsumerInvalidPolicy,
    ConsumerIsPushBased,
    ConsumerMaxDeliverBackoff,
    ConsumerNotFound,
    ConsumerOverlappingSubjectFilters,
    ConsumerPullRequiresAck,
    ConsumerPushMaxWaiting,
    ConsumerWQConsumerNotDeliverAll,
    ConsumerWQConsumerNotUnique,
    ConsumerWQMultipleUnfiltered,
    ConsumerWQRequiresExplicitAck,
    ExceededMaxRequestBatch,
    ExceededMaxWaiting,
    MaximumConsumersReached,
    NoMessages,
)
from omnibus.core.streams import NANOS_PER_MS, StreamConfig, StreamConfigInvalid

from .test_streams import Env

MS = NANOS_PER_MS
SEC = 1000 * MS


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def stream(env, **kw):
    kw.setdefault("subjects", ("s.>",))
    return env.js.add_stream(StreamConfig(name=kw.pop("name", "S"), **kw))[0]


def consumer(env, stream_name="S", **kw):
    return env.js.add_consumer(stream_name, ConsumerConfig(**kw))[0]


def fill(s, *subjects, n=1):
    for _ in range(n):
        for subj in subjects:
            s.append(subj, subj.encode())


def delivered(batch):
    return [d.stream_seq for d in batch]


# -- config ------------------------------------------------------------------------------------------------


def test_config_defaults_follow_set_consumer_config_defaults(env):
    s = stream(env)
    c = consumer(env, durable_name="d", ack_policy="explicit")
    cfg = c.config
    assert (cfg.ack_wait, cfg.max_deliver, cfg.max_ack_pending, cfg.max_waiting) == (30 * SEC, -1, 1000, 512)
    assert cfg.inactive_threshold == 0  # durable
    e = consumer(env, ack_policy="none")
    assert e.config.inactive_threshold == 5 * SEC and e.config.max_ack_pending == 0  # ephemeral
    assert len(e.name) == 8 and e.config.name == e.name
    b = consumer(env, durable_name="b", ack_policy="explicit", backoff=(1 * SEC, 5 * SEC), max_deliver=5)
    assert b.config.ack_wait == 1 * SEC  # BackOff[0] overrides AckWait
    assert s.state().consumer_count == 3


@pytest.mark.parametrize("kw,err", [
    ({"deliver_policy": "by_start_sequence"}, ConsumerInvalidPolicy),
    ({"deliver_policy": "all", "opt_start_seq": 3}, ConsumerInvalidPolicy),
    ({"deliver_policy": "last_per_subject"}, ConsumerInvalidPolicy),
    ({"deliver_policy": "by_start_time"}, ConsumerInvalidPolicy),
    ({"ack_policy": "explicit", "backoff": (1, 2, 3), "max_deliver": 2}, ConsumerMaxDeliverBackoff),
    ({"filter_subject": "s.a", "filter_subjects": ("s.b",)}, ConsumerDuplicateFilterSubjects),
    ({"filter_subjects": ("s.*", "s.a")}, ConsumerOverlappingSubjectFilters),
    ({"deliver_subject": "s.out"}, ConsumerDeliverCycle),
    ({"deliver_subject": "out", "max_waiting": 5}, ConsumerPushMaxWaiting),
    ({"durable_name": "a.b"}, StreamConfigInvalid),
    ({"filter_subject": "s..x"}, StreamConfigInvalid),
])
def test_config_invalid(env, kw, err):
    stream(env)
    with pytest.raises(err):
        consumer(env, **kw)


def test_invalid_policy_text():
    with pytest.raises(ConsumerInvalidPolicy) as e:
        ConsumerConfig(deliver_policy="new", opt_start_seq=5).normalized(StreamConfig(name="S").normalized())
    assert str(e.value) == "consumer delivery policy is deliver new, but optional start sequence is also set"


def test_create_update_actions(env):
    stream(env)
    c = consumer(env, durable_name="d", ack_policy="explicit")
    same, created = env.js.add_consumer("S", ConsumerConfig(durable_name="d", ack_policy="explicit"),
                                        action="create")
    assert same is c and not created
    with pytest.raises(ConsumerAlreadyExists):
        env.js.add_consumer("S", ConsumerConfig(durable_name="d", ack_policy="explicit", max_deliver=3),
                            action="create")
    env.js.add_consumer("S", ConsumerConfig(durable_name="d", ack_policy="explicit", max_deliver=3))
    assert c.config.max_deliver == 3
    with pytest.raises(ConsumerCreateFailed, match="ack policy can not be updated"):
        env.js.add_consumer("S", ConsumerConfig(durable_name="d", ack_policy="all"))
    with pytest.raises(ConsumerDoesNotExist):
        env.js.add_consumer("S", ConsumerConfig(durable_name="x"), action="update")
    with pytest.raises(ConsumerNotFound):
        env.js.consumer("S", "x")
    env.js.delete_consumer("S", "d")
    with pytest.raises(ConsumerNotFound):
        env.js.delete_consumer("S", "d")


def test_max_consumers(env):
    stream(env, max_consumers=1)
    consumer(env, durable_name="a")
    with pytest.raises(MaximumConsumersReached):
        consumer(env, durable_name="b")


# -- deliver policies --------------------------------------------------------------------------------------


def test_deliver_all_new_last(env):
    s = stream(env)
    fill(s, "s.a", "s.b", "s.c")
    assert delivered(consumer(env, deliver_policy="all").next_messages(10)) == [1, 2, 3]
    new = consumer(env, deliver_policy="new")
    last = consumer(env, deliver_policy="last")
    assert new.next_messages(10) == [] and new.info().num_pending == 0
    assert delivered(last.next_messages(10)) == [3]
    s.append("s.d", b"")
    assert delivered(new.next_messages(10)) == [4]
    assert delivered(last.next_messages(10)) == [4]


def test_deliver_last_with_filter_and_empty_stream(env):
    s = stream(env)
    c0 = consumer(env, deliver_policy="last")
    fill(s, "s.a", "s.b", "s.a", "s.b")
    assert delivered(c0.next_messages(10)) == [1, 2, 3, 4]  # created on an empty stream: from 1
    c = consumer(env, deliver_policy="last", filter_subject="s.a")
    assert delivered(c.next_messages(10)) == [3]


def test_deliver_by_start_sequence_and_time(env):
    s = stream(env)
    t0 = env.clock.now_ms()
    fill(s, "s.a", "s.b")
    env.clock.advance(100)
    fill(s, "s.c", "s.d")
    assert delivered(consumer(env, deliver_policy="by_start_sequence", opt_start_seq=3).next_messages(9)) == [3, 4]
    c = consumer(env, deliver_policy="by_start_time", opt_start_time=(t0 + 50) * MS)
    assert delivered(c.next_messages(9)) == [3, 4]
    future = consumer(env, deliver_policy="by_start_sequence", opt_start_seq=10)
    fill(s, "s.e", n=7)
    assert delivered(future.next_messages(20)) == [10, 11]


def test_deliver_last_per_subject_then_new(env):
    s = stream(env)
    fill(s, "s.a", "s.b", "s.a", "s.c", "s.b", "x" if False else "s.a")  # a:1,3,6 b:2,5 c:4
    c = consumer(env, deliver_policy="last_per_subject", filter_subjects=("s.a", "s.b"))
    assert c.info().num_pending == 2
    got = c.next_messages(1)
    assert delivered(got) == [5] and got[0].pending == 1
    s.append("s.a", b"new")  # 7
    s.append("s.c", b"filtered out")  # 8
    assert c.info().num_pending == 2
    assert delivered(c.next_messages(10)) == [6, 7]
    assert c.info().delivered.stream_seq == 8 and c.info().num_pending == 0  # scanned to the end


def test_filters_wildcards_and_many_subjects(env):
    s = stream(env)
    for i in range(30):
        s.append(f"s.k{i}.x", b"")
        s.append(f"s.k{i}.y", b"")
    c = consumer(env, filter_subject="s.*.y")
    assert c.info().num_pending == 30
    got = c.next_messages(100)
    assert delivered(got) == list(range(2, 61, 2))
    multi = consumer(env, filter_subjects=("s.k1.x", "s.k2.*"))
    assert delivered(multi.next_messages(100)) == [3, 5, 6]


def test_headers_only(env):
    s = stream(env)
    s.append("s.a", b"12345", {"A": "b"})
    d = consumer(env, headers_only=True).next_messages(1)[0]
    assert d.payload == b"" and d.headers == (("A", b"b"), ("Nats-Msg-Size", b"5"))
    assert d.header_block() == b"NATS/1.0\r\nA: b\r\nNats-Msg-Size: 5\r\n\r\n"


# -- ack policies ------------------------------------------------------------------------------------------


def test_ack_none_settles_on_delivery(env):
    s = stream(env)
    fill(s, "s.a", n=3)
    c = consumer(env, ack_policy="none")
    assert delivered(c.next_messages(2)) == [1, 2]
    info = c.info()
    assert (info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_ack_pending) == (2, 2, 0)
    assert c.redeliveries_due(env.clock.now_ms() + 10**9).queued == []


def test_ack_explicit_floor_and_state(env):
    s = stream(env)
    fill(s, "s.a", n=5)
    c = consumer(env, durable_name="d", ack_policy="explicit")
    got = c.next_messages(4)
    assert [(d.stream_seq, d.consumer_seq, d.delivery_count, d.pending) for d in got] == [
        (1, 1, 1, 4), (2, 2, 1, 3), (3, 3, 1, 2), (4, 4, 1, 1)]
    assert c.ack(2) and not c.ack(2)
    assert c.info().ack_floor.stream_seq == 0
    assert c.ack(1)
    info = c.info()
    assert (info.ack_floor.consumer_seq, info.ack_floor.stream_seq, info.num_ack_pending) == (2, 2, 2)
    assert not c.ack(5)  # not delivered yet: ignored
    c.ack(3)
    c.ack(4)
    info = c.info()
    assert (info.ack_floor.stream_seq, info.delivered.stream_seq, info.num_pending) == (4, 4, 1)


def test_ack_all_settles_everything_below(env):
    s = stream(env)
    fill(s, "s.a", n=5)
    c = consumer(env, ack_policy="all")
    c.next_messages(5)
    assert c.ack(3)
    info = c.info()
    assert (info.ack_floor.stream_seq, info.num_ack_pending) == (3, 2)
    assert not c.ack(2)
    env.clock.advance(30_000)
    assert c.redeliveries_due().queued == [4, 5]


# -- re-delivery -------------------------------------------------------------------------------------------


def test_redelivery_after_ack_wait(env):
    s = stream(env)
    fill(s, "s.a", n=2)
    c = consumer(env, ack_policy="explicit", ack_wait=1 * SEC)
    c.next_messages(2)
    c.ack(2)
    t = env.clock.now_ms()
    check = c.redeliveries_due()
    assert check.queued == [] and check.next_due_ms == t + 1000
    env.clock.advance(999)
    assert c.redeliveries_due().queued == []
    env.clock.advance(1)
    assert c.redeliveries_due().queued == [1]
    got = c.next_messages(5)
    assert [(d.stream_seq, d.consumer_seq, d.delivery_count) for d in got] == [(1, 3, 2)]
    info = c.info()
    assert (info.num_redelivered, info.num_ack_pending, info.delivered.consumer_seq) == (1, 1, 3)
    c.ack(1)
    assert c.info().num_redelivered == 0 and c.info().ack_floor.stream_seq == 2


def test_backoff_schedule(env):
    s = stream(env)
    s.append("s.a", b"")
    c = consumer(env, ack_policy="explicit", backoff=(1 * SEC, 3 * SEC, 10 * SEC), max_deliver=10)
    times = []
    start = env.clock.now_ms()
    c.next_messages(1)
    for _ in range(5):
        for _ in range(20_000):
            env.clock.advance(100)
            if c.redeliveries_due().queued:
                break
        d = c.next_messages(1)[0]
        times.append((env.clock.now_ms() - start, d.delivery_count))
        start = env.clock.now_ms()
    # wait before delivery n+1 = backoff[n-1], the last value repeating (checkPending)
    assert times == [(1000, 2), (3000, 3), (10000, 4), (10000, 5), (10000, 6)]


def test_nak_now_and_with_delay(env):
    s = stream(env)
    fill(s, "s.a", n=3)
    c = consumer(env, ack_policy="explicit", ack_wait=30 * SEC)
    c.next_messages(3)
    assert c.nak(2)
    assert [(d.stream_seq, d.delivery_count) for d in c.next_messages(5)] == [(2, 2)]
    assert c.nak(3, delay_ms=500)
    assert c.next_messages(5) == []
    env.clock.advance(499)
    assert c.redeliveries_due().queued == []
    env.clock.advance(1)
    assert c.redeliveries_due().queued == [3]
    assert delivered(c.next_messages(5)) == [3]
    assert not c.nak(99)
    assert [e.kind for e in c.take_events()] == ["nak", "nak"]


def test_term_stops_redelivery(env):
    s = stream(env)
    fill(s, "s.a", n=2)
    c = consumer(env, ack_policy="explicit", ack_wait=1 * SEC)
    c.next_messages(2)
    assert c.term(1, "bad payload")
    env.clock.advance(5000)
    assert c.redeliveries_due().queued == [2]
    ev = c.take_events()
    assert ev[0].kind == "terminated" and ev[0].stream_seq == 1 and ev[0].reason == "bad payload"


def test_in_progress_resets_the_ack_timer(env):
    s = stream(env)
    s.append("s.a", b"")
    c = consumer(env, ack_policy="explicit", ack_wait=1 * SEC)
    c.next_messages(1)
    env.clock.advance(800)
    assert c.in_progress(1)
    env.clock.advance(800)
    assert c.redeliveries_due().queued == []
    env.clock.advance(200)
    assert c.redeliveries_due().queued == [1]


def test_max_deliver_stops_redelivery_with_one_event(env):
    s = stream(env)
    fill(s, "s.a", n=2)
    c = consumer(env, ack_policy="explicit", ack_wait=1 * SEC, max_deliver=2)
    c.next_messages(2)
    c.ack(2)
    env.clock.advance(1000)
    assert c.redeliveries_due().queued == [1]
    assert c.next_messages(5)[0].delivery_count == 2
    env.clock.advance(1000)
    check = c.redeliveries_due()
    assert check.queued == [] and check.next_due_ms is None
    ev = c.take_events()
    assert [(e.kind, e.stream_seq, e.deliveries) for e in ev] == [("max_deliveries", 1, 2)]
    info = c.info()
    assert (info.num_ack_pending, info.ack_floor.stream_seq, info.num_redelivered) == (0, 0, 1)  # nats-server 2.9.10: the floor waits for a later ack
    env.clock.advance(10_000)
    assert c.redeliveries_due().queued == [] and c.next_messages(5) == [] and c.take_events() == []


def test_max_deliver_via_nak(env):
    s = stream(env)
    s.append("s.a", b"")
    c = consumer(env, ack_policy="explicit", max_deliver=2)
    c.next_messages(1)
    c.nak(1)
    assert c.next_messages(1)[0].delivery_count == 2
    c.nak(1)
    assert c.next_messages(1) == []  # getNextMsg: dc > maxdc, dropped from pending
    assert [e.kind for e in c.take_events()] == ["nak", "nak", "max_deliveries"]
    assert c.info().num_ack_pending == 0


def test_max_ack_pending_stops_new_deliveries_not_redeliveries(env):
    s = stream(env)
    fill(s, "s.a", n=5)
    c = consumer(env, ack_policy="explicit", max_ack_pending=2, ack_wait=1 * SEC)
    got = c.next_messages(10)
    assert delivered(got) == [1, 2] and got.stop_reason == STOP_MAX_ACK_PENDING
    env.clock.advance(1000)
    c.redeliveries_due()
    assert delivered(c.next_messages(10)) == [1, 2]  # re-deliveries still flow
    c.ack(1)
    assert delivered(c.next_messages(10)) == [3]


def test_max_bytes_stops_before_a_message_that_does_not_fit(env):
    s = stream(env)
    s.append("s.a", b"x" * 10)  # size 3 + 10 = 13
    s.append("s.a", b"x" * 10)
    s.append("s.a", b"x" * 50)
    c = consumer(env, ack_policy="explicit")
    got = c.next_messages(10, max_bytes=30)
    assert delivered(got) == [1, 2] and got.stop_reason == STOP_MAX_BYTES
    got = c.next_messages(10, max_bytes=30)
    assert got == [] and got.stop_reason == STOP_MAX_BYTES
    assert delivered(c.next_messages(10, max_bytes=1000)) == [3]
    assert c.next_messages(10).stop_reason == STOP_NO_MESSAGES


def test_pending_message_removed_from_stream_is_settled(env):
    s = stream(env)
    fill(s, "s.a", n=3)
    c = consumer(env, ack_policy="explicit", ack_wait=1 * SEC)
    c.next_messages(3)
    s.delete_msg(2)
    assert c.info().num_ack_pending == 2
    ev = c.take_events()
    assert ev[0].kind == "terminated" and ev[0].reason == "Unacknowledged message was deleted"
    s.purge()
    info = c.info()
    assert (info.num_ack_pending, info.ack_floor.stream_seq, info.num_pending) == (0, 3, 0)


def test_purge_moves_consumers_past_what_went(env):
    s = stream(env)
    fill(s, "s.a", "s.b", n=5)
    c = consumer(env, ack_policy="explicit")
    a = consumer(env, ack_policy="explicit", filter_subject="s.a")
    assert c.info().num_pending == 10 and a.info().num_pending == 5
    s.purge(filter="s.a")
    assert c.info().num_pending == 5 and a.info().num_pending == 0
    s.purge(seq=8)
    assert c.info().num_pending == 2
    assert delivered(c.next_messages(10)) == [8, 10]


# -- retention ---------------------------------------------------------------------------------------------


def test_workqueue_acked_messages_leave_the_stream(env):
    s = stream(env, retention="workqueue")
    fill(s, "s.a", n=4)
    c = consumer(env, durable_name="w", ack_policy="explicit")
    c.next_messages(4)
    c.ack(2)
    c.ack(1)
    st = s.state()
    assert (st.messages, st.first_seq) == (2, 3)
    c.term(3)
    assert s.state().messages == 1


def test_workqueue_consumer_rules(env):
    stream(env, retention="workqueue")
    with pytest.raises(ConsumerWQRequiresExplicitAck):
        consumer(env, ack_policy="all")
    with pytest.raises(ConsumerPullRequiresAck):
        consumer(env, ack_policy="none")
    with pytest.raises(ConsumerWQConsumerNotDeliverAll):
        consumer(env, ack_policy="explicit", deliver_policy="new")
    consumer(env, durable_name="a", ack_policy="explicit", filter_subject="s.a")
    with pytest.raises(ConsumerWQMultipleUnfiltered):
        consumer(env, durable_name="b", ack_policy="explicit")
    with pytest.raises(ConsumerWQConsumerNotUnique):
        consumer(env, durable_name="b", ack_policy="explicit", filter_subject="s.*")
    consumer(env, durable_name="b", ack_policy="explicit", filter_subject="s.b")


def test_workqueue_keeps_messages_without_a_consumer_and_max_delivered_ones(env):
    s = stream(env, retention="workqueue")
    fill(s, "s.a", "s.b")
    c = consumer(env, durable_name="a", ack_policy="explicit", filter_subject="s.a", max_deliver=1,
                 ack_wait=1 * SEC)
    c.next_messages(5)
    env.clock.advance(1000)
    c.redeliveries_due()
    assert s.state().messages == 2  # s.b waits for a consumer; s.a reached max_deliver and stays
    c.ack(1)  # a late ack still removes it (processAckMsg acks the stream regardless)
    assert s.state().messages == 1


def test_interest_retention_removes_once_every_consumer_acked(env):
    s = stream(env, retention="interest")
    s.append("s.a", b"no interest yet")  # no consumer: the sequence is used, nothing kept
    st = s.state()
    assert (st.messages, st.last_seq) == (0, 1)
    a = consumer(env, durable_name="a", ack_policy="explicit")
    b = consumer(env, durable_name="b", ack_policy="explicit")
    only = consumer(env, durable_name="f", ack_policy="explicit", filter_subject="s.x")
    fill(s, "s.a", "s.x")  # 2, 3
    assert s.state().messages == 2
    a.next_messages(5)
    b.next_messages(5)
    a.ack(2)
    assert s.contains(2)
    b.ack(2)
    assert not s.contains(2)  # s.x consumer never wanted it
    a.ack(3)
    b.ack(3)
    assert s.contains(3)
    only.next_messages(5)
    only.ack(3)
    assert s.state().messages == 0


def test_interest_retention_ack_none_and_consumer_delete(env):
    s = stream(env, retention="interest")
    a = consumer(env, durable_name="a", ack_policy="none")
    b = consumer(env, durable_name="b", ack_policy="explicit")
    fill(s, "s.a", n=3)
    a.next_messages(5)
    assert s.state().messages == 3  # b still needs them
    b.next_messages(1)
    b.ack(1)
    assert s.state().messages == 2
    env.js.delete_consumer("S", "b")  # cleanupNoInterestMessages
    assert s.state().messages == 0


# -- pull requests -----------------------------------------------------------------------------------------


def test_pull_requests_wait_serve_and_finish(env):
    s = stream(env)
    c = consumer(env, durable_name="p", ack_policy="explicit")
    r1 = c.pull(2, expires_ms=1000, token="r1")
    r2 = c.pull(5, token="r2")
    assert c.info().num_waiting == 2
    assert c.serve_pulls() == []
    fill(s, "s.a", n=3)
    out = c.serve_pulls()
    assert [(o.request.token, delivered(o.messages), o.finished) for o in out] == [
        ("r1", [1, 2], PULL_DONE), ("r2", [3], None)]
    assert r2.remaining == 4 and c.num_waiting == 1 and r1.remaining == 0
    env.clock.advance(10**6)
    assert c.expire_pulls() == []  # r2 never expires
    c.cancel_pull("r2")
    assert c.num_waiting == 0


def test_pull_expiry_no_wait_and_limits(env):
    s = stream(env)
    c = consumer(env, durable_name="p", ack_policy="explicit", max_batch=10, max_waiting=1)
    with pytest.raises(NoMessages) as e:
        c.pull(1, no_wait=True)
    assert (e.value.status, str(e.value)) == (404, "No Messages")
    with pytest.raises(ExceededMaxRequestBatch, match="Exceeded MaxRequestBatch of 10"):
        c.pull(11)
    c.pull(1, expires_ms=500, token="a")
    assert c.next_pull_deadline_ms() == env.clock.now_ms() + 500
    with pytest.raises(ExceededMaxWaiting):
        c.pull(1, token="b")
    env.clock.advance(500)
    out = c.expire_pulls()
    assert [(o.request.token, o.finished) for o in out] == [("a", PULL_EXPIRED)]
    fill(s, "s.a", n=2)
    c.pull(5, no_wait=True, token="nw")
    out = c.serve_pulls()
    assert [(o.request.token, delivered(o.messages), o.finished) for o in out] == [("nw", [1, 2], PULL_NO_MESSAGES)]
    s.append("s.a", b"x" * 100)
    c.pull(5, max_bytes=20, token="mb")
    out = c.serve_pulls()
    assert [(o.request.token, o.finished) for o in out] == [("mb", PULL_MAX_BYTES)]
    push = consumer(env, deliver_subject="out")
    with pytest.raises(ConsumerIsPushBased):
        push.pull(1)


# -- persistence -------------------------------------------------------------------------------------------


def test_durable_consumer_resumes_after_restart_with_only_unacked_redelivered(env):
    s = stream(env, retention="workqueue")
    fill(s, "s.a", n=10)
    c = consumer(env, durable_name="d", ack_policy="explicit", ack_wait=2 * SEC)
    got = c.next_messages(6)
    for d in got[:4]:
        c.ack(d.stream_seq)
    env.js.flush()
    js = env.reopen()
    s = js.stream("S")
    c = js.consumer("S", "d")
    info = c.info()
    assert (info.delivered.stream_seq, info.ack_floor.stream_seq, info.num_ack_pending, info.num_pending) == (
        6, 4, 2, 4)
    assert s.state().messages == 6 and s.first_seq == 5
    env.clock.advance(1000)
    assert delivered(c.next_messages(10)) == [7, 8, 9, 10]  # new ones first; 5, 6 are pending
    env.clock.advance(1000)  # 5 and 6 were delivered 2 s ago (before the restart)
    assert c.redeliveries_due().queued == [5, 6]
    got = c.next_messages(10)
    assert [(d.stream_seq, d.delivery_count) for d in got] == [(5, 2), (6, 2)]
    for q in (5, 6, 7, 8, 9, 10):
        c.ack(q)
    env.js.flush()
    js = env.reopen()
    assert js.stream("S").state().messages == 0
    assert js.consumer("S", "d").next_messages(10) == []


def test_restart_reconciles_acks_persisted_before_removals(env):
    """Consumer state flushed, stream removals not: restart removes what the consumer settled."""
    s = stream(env, retention="workqueue")
    fill(s, "s.a", n=5)
    c = consumer(env, durable_name="d", ack_policy="explicit")
    c.next_messages(5)
    c.ack(2)
    c.ack(4)
    env.js.write_state(env.js.collect_state())
    s.acks._acks.clear()  # lose the unflushed removal bits, as a crash would
    s._deferred_acks.clear()
    s.flush = lambda: None  # and do not flush them at close
    js = env.reopen()
    assert js.stream("S").state().messages == 3
    assert sorted(js.consumer("S", "d").pending_seqs()) == [1, 3, 5]


def test_ephemeral_consumers_are_not_persisted_and_expire_when_inactive(env):
    stream(env)
    e = consumer(env, ack_policy="none")
    consumer(env, durable_name="d")
    env.clock.advance(4999)
    assert env.js.expire_inactive_consumers() == []
    env.clock.advance(1)
    assert env.js.expire_inactive_consumers() == [("S", e.name)]
    e2 = consumer(env, ack_policy="none")
    js = env.reopen()
    assert js.consumer_names("S") == ["d"] and e2.name not in js.consumer_names("S")


def test_update_limits_to_interest_drops_what_no_consumer_needs(env):
    s = stream(env)
    fill(s, "s.a", "s.b", n=2)
    c = consumer(env, durable_name="a", ack_policy="explicit", filter_subject="s.a")
    c.next_messages(1)
    c.ack(1)
    env.js.update_stream(StreamConfig(name="S", subjects=("s.>",), retention="interest"))
    assert [q for q in range(1, 5) if s.contains(q)] == [3]  # s.b had no interest, 1 was acked
    c.next_messages(5)
    c.ack(3)
    assert s.state().messages == 0


def test_append_with_a_bad_payload_type_changes_nothing(env):
    s = stream(env)
    with pytest.raises(TypeError):
        s.append("s.a", "not bytes")  # type: ignore[arg-type]
    assert s.append("s.a", b"ok").seq == 1 and s.state().messages == 1


def test_term_under_ack_all_settles_everything_up_to_it(env):
    # consumer.go processTerm -> processAckMsgLocked: the AckAll branch moves the floor.
    s = stream(env)
    fill(s, "s.a", n=4)
    c = consumer(env, ack_policy="all")
    c.next_messages(4)
    assert c.term(3)
    info = c.info()
    assert (info.ack_floor.stream_seq, info.num_ack_pending) == (3, 1)


# -- push consumers: what the session's push delivery relies on ---------------------------------------------


def test_last_delivered_counts_redeliveries_and_survives_restart(env):
    s = stream(env)
    fill(s, "s.a", n=4)
    c = consumer(env, durable_name="p", deliver_subject="out", ack_policy="explicit", ack_wait=1 * SEC)
    assert c.last_delivered == (0, 0)
    assert delivered(c.next_messages(3)) == [1, 2, 3]
    assert c.last_delivered == (3, 3)  # idle heartbeat: Nats-Last-Consumer 3, Nats-Last-Stream 3
    c.nak(2)
    assert [(d.stream_seq, d.consumer_seq, d.delivery_count) for d in c.next_messages(1)] == [(2, 4, 2)]
    assert c.last_delivered == (4, 3)  # a redelivery takes a consumer sequence, not a stream one
    c.ack(1)
    env.js.flush()
    js = env.reopen()
    r = js.consumer("S", "p")
    assert r.config.deliver_subject == "out" and r.last_delivered == (4, 3)
    assert sorted(r.pending_seqs()) == [2, 3]
    assert delivered(r.next_messages(5)) == [4]


def test_push_inactive_threshold_counts_only_without_interest(env):
    stream(env)
    c = consumer(env, deliver_subject="out", ack_policy="none", inactive_threshold=2 * SEC)
    start = env.clock.now_ms()
    assert c.inactive_deadline_ms() == start + 2000
    c.push_bound = True  # the session saw a subscriber on "out"
    assert c.inactive_deadline_ms() is None
    env.clock.advance(10_000)
    assert env.js.expire_inactive_consumers() == []
    c.push_bound = False  # interest gone: the clock starts when the session notices
    c.touch()
    assert c.inactive_deadline_ms() == env.clock.now_ms() + 2000
    env.clock.advance(1900)
    assert env.js.expire_inactive_consumers() == []
    env.clock.advance(200)
    assert env.js.expire_inactive_consumers() == [("S", c.name)]
    assert env.js.consumer_names("S") == []


def test_pull_request_heartbeat_clock_starts_at_receipt(env):
    s = stream(env)
    c = consumer(env, durable_name="q", ack_policy="explicit")
    req = c.pull(5, expires_ms=10_000, heartbeat_ms=1000, token="inbox")
    assert (req.heartbeat_ms, req.last_hb_ms) == (1000, env.clock.now_ms())
    fill(s, "s.a")
    [out] = c.serve_pulls()
    assert delivered(out.messages) == [1] and out.finished is None


def test_allow_msg_ttl_is_dropped_as_nats_server_2_10_does(env):
    # nats-py sets allow_msg_ttl on every KV bucket; 2.10 does not know the field and ignores it.
    s = stream(env, name="KV_b", subjects=("$KV.b.>",), allow_msg_ttl=True, max_msgs_per_subject=5,
               allow_rollup_hdrs=True, deny_delete=True, allow_direct=True, discard="new")
    assert s.config.allow_msg_ttl is False and s.config.allow_direct is True
    same, created = env.js.add_stream(StreamConfig(name="KV_b", subjects=("$KV.b.>",), allow_msg_ttl=True,
                                                   max_msgs_per_subject=5, allow_rollup_hdrs=True,
                                                   deny_delete=True, allow_direct=True, discard="new"))
    assert same is s and created is False  # idempotent create still matches
