"""JetStream streams in the core: config rules, publish rules, limits, removals, reads, restart.

Real logs in tmp_path, a ManualClock for every time rule (max_age, duplicate window). Each rule cites the
nats-server function it follows (server/stream.go, memstore.go)."""

from __future__ import annotations

import pytest

from omnibus.core.clock import ManualClock
from omnibus.core.stream_registry import JetStream
from omnibus.core.streams import (
    BadRequest,
    InvalidJSON,
    DEFAULT_DUPLICATE_WINDOW,
    NANOS_PER_MS,
    DirectoryLogs,
    ExpectedLastSubjectSequenceMissing,
    HeaderTooLarge,
    MessageTooLarge,
    MsgDeleteFailed,
    NoMessageFound,
    PubAck,
    Publish,
    PurgeFailed,
    RollupFailed,
    SequenceNotFound,
    StoreFailed,
    StreamConfig,
    StreamConfigInvalid,
    StreamNameExists,
    StreamNotFound,
    StreamNotMatch,
    StreamReplicasNotSupported,
    StreamSealed,
    StreamSubjectOverlap,
    WrongLastMsgId,
    WrongLastSequence,
    encode_header_block,
    parse_header_block,
    subject_is_subset,
    subjects_overlap,
)
from omnibus.storage.log import LogConfig
from omnibus.storage.meta import MetaStore

MS = NANOS_PER_MS
SMALL = LogConfig(fsync="never", segment_bytes=2048, file_delete_delay_ms=0)


class Env:
    """A JetStream over real logs and a MetaStore in ``path``; ``reopen()`` simulates a restart."""

    def __init__(self, path, clock: ManualClock | None = None, log_config: LogConfig = SMALL) -> None:
        self.path = path
        self.clock = clock or ManualClock()
        self.log_config = log_config
        self._open()

    def _open(self) -> None:
        self.logs = DirectoryLogs(self.path / "logs", self.clock, file_config=self.log_config)
        self.meta = MetaStore(self.path / "meta.db", synchronous="NORMAL")
        self.js = JetStream(open_log=self.logs.open, delete_log=self.logs.delete, meta=self.meta,
                            clock=self.clock)
        self.js.restore()

    def reopen(self) -> JetStream:
        self.js.close()
        self.meta.close()
        self._open()
        return self.js

    def close(self) -> None:
        self.js.close()
        self.meta.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


def make(env: Env, **kw):
    kw.setdefault("subjects", ("s.>",))
    return env.js.add_stream(StreamConfig(name=kw.pop("name", "S"), **kw))[0]


def seqs(stream) -> list[int]:
    out = []
    s = stream.first_seq
    while s <= stream.last_seq:
        if stream.contains(s):
            out.append(s)
        s += 1
    return out


# -- helpers -----------------------------------------------------------------------------------------------


def test_subjects_overlap_matches_nats_server_subjects_collide():
    # sublist_test.go TestSublistSubjectCollide cases
    assert subjects_overlap("foo.*", "foo.*.bar.>") is False
    assert subjects_overlap("foo.*.bar.>", "foo.*") is False
    assert subjects_overlap("foo.*", "foo.foo") is True
    assert subjects_overlap("foo.*", "*.foo") is True
    assert subjects_overlap("foo.bar.>", "*.bar.foo") is True
    assert subjects_overlap("a.b", "a.b") is True
    assert subjects_overlap("a.b", "a.c") is False
    assert subjects_overlap(">", "a") is True
    assert subjects_overlap("a.>", "a") is False
    assert subjects_overlap("*.*", "a.>") is True
    assert subjects_overlap("a.*", "b.>") is False


def test_subject_is_subset():
    assert subject_is_subset("foo.*", ">")
    assert subject_is_subset("foo.*", "*.*")
    assert subject_is_subset("foo.*", "foo.*")
    assert not subject_is_subset("foo.*", "foo.bar")
    assert subject_is_subset("foo.bar", "foo.*")
    assert not subject_is_subset(">", "foo.>")


def test_header_block_round_trip_keeps_order_and_duplicates():
    block = b"NATS/1.0\r\nA: 1\r\nB:  two\r\nA: 3\r\n\r\n"
    pairs = parse_header_block(block)
    assert pairs == (("A", b"1"), ("B", b"two"), ("A", b"3"))
    assert parse_header_block(encode_header_block(pairs)) == pairs
    assert encode_header_block(()) is None
    assert parse_header_block(b"NATS/1.0 503\r\n\r\n") == ()


# -- configuration -----------------------------------------------------------------------------------------


def test_config_defaults_follow_check_stream_cfg():
    cfg = StreamConfig(name="S").normalized()
    assert cfg.subjects == ("S",)  # no subjects: the name
    assert cfg.duplicate_window == DEFAULT_DUPLICATE_WINDOW  # 2 min
    assert (cfg.max_msgs, cfg.max_bytes, cfg.max_msgs_per_subject, cfg.max_msg_size, cfg.max_consumers) == (-1,) * 5
    assert cfg.storage == "file" and cfg.num_replicas == 1
    # duplicate window follows a shorter max_age
    assert StreamConfig(name="S", max_age=1000 * MS).normalized().duplicate_window == 1000 * MS


@pytest.mark.parametrize("kw,text", [
    ({"name": "a.b"}, "stream name is required and can not contain '.', '*', '>', '\\', '/'"),
    ({"name": ""}, "stream name is required"),
    ({"retention": "bogus"}, "invalid retention"),
    ({"discard": "bogus"}, "invalid discard policy"),
    ({"storage": "tape"}, "invalid storage type"),
    ({"max_age": 5 * MS}, "max age needs to be >= 100ms"),
    ({"max_age": -1}, "max age can not be negative"),
    ({"duplicate_window": 5 * MS}, "duplicates window needs to be >= 100ms"),
    ({"max_age": 1000 * MS, "duplicate_window": 2000 * MS}, "duplicates window can not be larger then max age"),
    ({"deny_purge": True, "allow_rollup_hdrs": True}, "roll-ups require the purge permission"),
    # checkStreamCfgLocked checks overlap with later subjects before the duplicate set sees the second.
    ({"subjects": ("a", "a")}, 'subject "a" overlaps with "a"'),
    ({"subjects": ("a.*", "a.b")}, 'subject "a.*" overlaps with "a.b"'),
    ({"subjects": ("a..b",)}, "invalid subject"),
    ({"subjects": (">",)}, "capturing all subjects requires no-ack to be true"),
    ({"subjects": ("$JS.API.>",)}, "subjects that overlap with jetstream api require no-ack to be true"),
    ({"discard_new_per_subject": True}, "discard new per subject requires discard new policy to be set"),
    ({"mirror": {"name": "X"}}, "mirror is not supported by this server"),
])
def test_config_invalid(kw, text):
    kw.setdefault("name", "S")
    with pytest.raises(StreamConfigInvalid) as e:
        StreamConfig(**kw).normalized()
    assert str(e.value).startswith(text)


def test_config_replicas_and_round_trip():
    with pytest.raises(StreamReplicasNotSupported):
        StreamConfig(name="S", num_replicas=3).normalized()
    d = StreamConfig(name="S", subjects=("a.>",), max_age=3000 * MS).normalized().to_dict()
    d["some_future_field"] = 7
    back = StreamConfig.from_dict(d)
    assert back.to_dict() == d and back.extra == {"some_future_field": 7}
    with pytest.raises(InvalidJSON):  # nats-server fails to decode it: 10025
        StreamConfig.from_dict({"name": "S", "max_msgs": "ten"})
    with pytest.raises(InvalidJSON):
        StreamConfig.from_dict({"name": "S", "retention": "forever"})


def test_update_rules_follow_config_update_check():
    old = StreamConfig(name="S", deny_delete=True).normalized()
    with pytest.raises(StreamConfigInvalid, match="can not change storage type"):
        old.check_update(StreamConfig(name="S", storage="memory", deny_delete=True))
    with pytest.raises(StreamConfigInvalid, match="can not cancel deny message deletes"):
        old.check_update(StreamConfig(name="S"))
    with pytest.raises(StreamConfigInvalid, match="to/from workqueue"):
        old.check_update(StreamConfig(name="S", retention="workqueue", deny_delete=True))
    with pytest.raises(StreamConfigInvalid, match="can not change MaxConsumers"):
        old.check_update(StreamConfig(name="S", deny_delete=True, max_consumers=3))
    assert old.check_update(StreamConfig(name="S", deny_delete=True, retention="interest")).retention == "interest"
    sealed = old.check_update(StreamConfig(name="S", deny_delete=True, sealed=True, max_age=10_000 * MS))
    assert (sealed.max_age, sealed.discard, sealed.deny_purge) == (0, "new", True)


def test_registry_create_idempotent_name_exists_overlap_not_found(env):
    s, created = env.js.add_stream(StreamConfig(name="A", subjects=("a.>",)))
    assert created
    assert env.js.add_stream(StreamConfig(name="A", subjects=("a.>",))) == (s, False)
    with pytest.raises(StreamNameExists):
        env.js.add_stream(StreamConfig(name="A", subjects=("a.>",), max_msgs=5))
    with pytest.raises(StreamSubjectOverlap):
        env.js.add_stream(StreamConfig(name="B", subjects=("a.b",)))
    with pytest.raises(StreamSubjectOverlap):
        env.js.add_stream(StreamConfig(name="B", subjects=("a.*.c",)))
    env.js.add_stream(StreamConfig(name="B", subjects=("b.*",)))
    assert env.js.stream_for_subject("a.x.y") is s
    assert env.js.stream_for_subject("b.1").name == "B"
    assert env.js.stream_for_subject("c") is None
    assert env.js.stream_names() == ["A", "B"] and env.js.stream_names("b.2") == ["B"]
    with pytest.raises(StreamNotFound):
        env.js.stream("C")
    env.js.delete_stream("A")
    assert env.js.stream_for_subject("a.x") is None
    with pytest.raises(StreamNotFound):
        env.js.delete_stream("A")
    # A new stream with the old name starts empty.
    s2 = make(env, name="A", subjects=("a.>",))
    assert s2.state().messages == 0 and s2.last_seq == 0


def test_update_stream_enforces_new_limits_and_overlap(env):
    s = make(env)
    for i in range(10):
        s.append("s.x", b"%d" % i)
    make(env, name="T", subjects=("t.>",))
    with pytest.raises(StreamSubjectOverlap):
        env.js.update_stream(StreamConfig(name="S", subjects=("s.>", "t.1")))
    env.js.update_stream(StreamConfig(name="S", subjects=("s.>", "u.>"), max_msgs=3))
    assert seqs(s) == [8, 9, 10]
    assert env.js.stream_for_subject("u.1") is s
    with pytest.raises(StreamNotFound):
        env.js.update_stream(StreamConfig(name="Z"))


# -- publish -----------------------------------------------------------------------------------------------


def test_sequences_start_at_one_and_pub_ack_has_the_log_offset(env):
    s = make(env)
    assert s.append("s.a", b"x") == PubAck("S", 1, False, 0)
    assert s.append("s.b", b"y") == PubAck("S", 2, False, 1)
    st = s.state()
    assert (st.messages, st.first_seq, st.last_seq, st.num_subjects) == (2, 1, 2, 2)
    assert st.first_ts == st.last_ts == env.clock.now_ms()
    # The durability hook: the caller waits on the offset.
    fired = []
    s.log.when_durable(1, lambda: fired.append(True))
    assert fired  # fsync=never: at once


def test_first_seq_config(env):
    s = make(env, first_seq=100)
    assert s.state().first_seq == 100 and s.last_seq == 99
    assert s.append("s.a", b"x").seq == 100
    env.reopen()
    s = env.js.stream("S")
    assert s.append("s.a", b"y").seq == 101 and s.get(100).payload == b"x"


def test_append_many_is_one_batch_and_per_message_errors(env):
    s = make(env, max_msg_size=10)
    before = len(s.log.segments()), s.log.end_offset
    res = s.append_many([Publish("s.a", b"1"), Publish("s.a", b"x" * 11), Publish("s.b", b"2")])
    assert [r.seq for r in res if isinstance(r, PubAck)] == [1, 2]
    assert isinstance(res[1], MessageTooLarge)
    assert s.log.end_offset == before[1] + 2
    batches = list(s.log.batches(0))
    assert len(batches) == 1 and batches[0][0].records_count == 2


def test_dedup_within_window_returns_original_seq(env):
    s = make(env, duplicate_window=1000 * MS)
    a = s.append("s.a", b"1", {"Nats-Msg-Id": "m1"})
    dup = s.append("s.a", b"other", {"Nats-Msg-Id": "m1"})
    assert dup == PubAck("S", a.seq, True, a.offset)
    assert s.state().messages == 1
    assert s.append("s.a", b"2", msg_id="m2").seq == 2  # explicit option
    env.clock.advance(999)
    assert s.append("s.a", b"3", {"Nats-Msg-Id": "m1"}).duplicate
    env.clock.advance(1)  # now - ts >= window: forgotten (stream.go purgeMsgIds)
    assert s.append("s.a", b"4", {"Nats-Msg-Id": "m1"}) == PubAck("S", 3, False, 2)


def test_dedup_survives_restart_within_window(env):
    s = make(env)
    s.append("s.a", b"1", b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n")
    s = env.reopen().stream("S")
    assert s.append("s.a", b"1", {"Nats-Msg-Id": "abc"}).duplicate
    env.clock.advance(DEFAULT_DUPLICATE_WINDOW // MS)
    s = env.reopen().stream("S")
    assert not s.append("s.a", b"1", {"Nats-Msg-Id": "abc"}).duplicate


def test_dedup_disabled_with_zero_window_after_update(env):
    s = make(env)
    s.append("s.a", b"1", msg_id="x")
    assert s.append("s.a", b"1", msg_id="x").duplicate
    # duplicate_window 0 means the default; a window is only off for mirrors/sources in nats-server.
    assert StreamConfig(name="S", duplicate_window=0).normalized().duplicate_window == DEFAULT_DUPLICATE_WINDOW


def test_expected_stream(env):
    s = make(env)
    with pytest.raises(StreamNotMatch) as e:
        s.append("s.a", b"", {"Nats-Expected-Stream": "OTHER"})
    assert str(e.value) == "expected stream does not match"
    assert s.append("s.a", b"", {"Nats-Expected-Stream": "S"}).seq == 1


def test_expected_last_sequence(env):
    s = make(env)
    assert s.append("s.a", b"", expected_last_seq=0).seq == 1
    with pytest.raises(WrongLastSequence) as e:
        s.append("s.a", b"", {"Nats-Expected-Last-Sequence": "5"})
    assert str(e.value) == "wrong last sequence: 1"
    with pytest.raises(WrongLastSequence):
        s.append("s.a", b"", {"Nats-Expected-Last-Sequence": "garbage"})
    assert s.append("s.a", b"", {"Nats-Expected-Last-Sequence": "1"}).seq == 2


def test_expected_last_subject_sequence_and_subject_override(env):
    s = make(env)
    assert s.append("s.a", b"", expected_last_subject_seq=0).seq == 1  # none yet: 0 matches
    s.append("s.b", b"")
    with pytest.raises(WrongLastSequence) as e:
        s.append("s.a", b"", expected_last_subject_seq=0)
    assert e.value.last_seq == 1
    assert s.append("s.a", b"", {"Nats-Expected-Last-Subject-Sequence": "1"}).seq == 3
    # Check against another subject's last sequence.
    assert s.append("s.c", b"", expected_last_subject_seq=2, expected_last_subject_seq_subject="s.b").seq == 4
    with pytest.raises(ExpectedLastSubjectSequenceMissing):
        s.append("s.c", b"", {"Nats-Expected-Last-Subject-Sequence-Subject": "s.b"})


def test_expected_last_msg_id(env):
    s = make(env)
    with pytest.raises(WrongLastMsgId) as e:
        s.append("s.a", b"", expected_last_msg_id="x")
    assert str(e.value) == "wrong last msg ID: "
    s.append("s.a", b"", msg_id="first")
    assert s.append("s.a", b"", {"Nats-Expected-Last-Msg-Id": "first", "Nats-Msg-Id": "second"}).seq == 2
    with pytest.raises(WrongLastMsgId):
        s.append("s.a", b"", expected_last_msg_id="first")
    s = env.reopen().stream("S")  # the last msg id is rebuilt from the log
    assert s.append("s.a", b"", expected_last_msg_id="second").seq == 3


def test_check_order_expectations_before_dedup(env):
    # stream.go: expected-* checks come before the duplicate check.
    s = make(env)
    s.append("s.a", b"", msg_id="m")
    with pytest.raises(WrongLastSequence):
        s.append("s.a", b"", msg_id="m", expected_last_seq=7)
    assert s.append("s.a", b"", msg_id="m", expected_last_seq=1).duplicate


def test_max_msg_size_and_header_size(env):
    s = make(env, max_msg_size=16)
    block = b"NATS/1.0\r\nA: b\r\n\r\n"  # 18 bytes of header alone
    with pytest.raises(MessageTooLarge) as e:
        s.append("s.a", b"", block)
    assert str(e.value) == "message size exceeds maximum allowed"
    assert s.append("s.a", b"x" * 16).seq == 1
    s2 = make(env, name="H", subjects=("h",))
    with pytest.raises(HeaderTooLarge):
        s2.append("h", b"", {"Big": b"x" * 70_000})


def test_sealed_stream_refuses_everything(env):
    s = make(env)
    s.append("s.a", b"")
    env.js.update_stream(StreamConfig(name="S", subjects=("s.>",), sealed=True))
    with pytest.raises(StreamSealed):
        s.append("s.a", b"")
    with pytest.raises(StreamSealed):
        s.delete_msg(1)
    with pytest.raises(StreamSealed):
        s.purge()
    with pytest.raises(StreamConfigInvalid, match="for create can not be sealed"):  # only an update seals
        env.js.add_stream(StreamConfig(name="T", subjects=("t",), sealed=True))


# -- limits ------------------------------------------------------------------------------------------------


def test_discard_old_max_msgs_and_max_bytes(env):
    s = make(env, max_msgs=3)
    for i in range(5):
        s.append("s.a", b"%d" % i)
    assert seqs(s) == [3, 4, 5]
    st = s.state()
    assert (st.messages, st.first_seq, st.last_seq, st.num_deleted) == (3, 3, 5, 0)
    b = make(env, name="B", subjects=("b",), max_bytes=3 * (22 + 1 + 10 + 8))  # file store sizes
    for i in range(5):
        b.append("b", b"0123456789")
    assert seqs(b) == [3, 4, 5] and b.state().bytes == 3 * 41


def test_discard_new_refuses_with_store_errors(env):
    s = make(env, max_msgs=2, discard="new")
    s.append("s.a", b"1")
    s.append("s.b", b"2")
    with pytest.raises(StoreFailed) as e:
        s.append("s.c", b"3")
    assert str(e.value) == "maximum messages exceeded"
    b = make(env, name="B", subjects=("b",), max_bytes=60, discard="new")
    b.append("b", b"0123456789")
    with pytest.raises(StoreFailed, match="maximum bytes exceeded"):
        b.append("b", b"0123456789")
    assert seqs(s) == [1, 2] and seqs(b) == [1]


def test_discard_new_lets_a_replacing_message_through_at_the_subject_limit(env):
    # memstore.go storeRawMsg: "If we are tracking max messages per subject and are at the limit we
    # will replace, so this is ok."
    s = make(env, max_msgs=2, max_msgs_per_subject=1, discard="new")
    s.append("s.a", b"1")
    s.append("s.b", b"2")
    assert s.append("s.a", b"3").seq == 3
    assert seqs(s) == [2, 3]
    with pytest.raises(StoreFailed):
        s.append("s.c", b"4")


def test_discard_new_per_subject(env):
    s = make(env, max_msgs_per_subject=2, discard="new", discard_new_per_subject=True, allow_rollup_hdrs=True)
    s.append("s.a", b"1")
    s.append("s.a", b"2")
    with pytest.raises(StoreFailed, match="maximum messages per subject exceeded"):
        s.append("s.a", b"3")
    s.append("s.b", b"x")
    assert s.append("s.a", b"r", rollup="sub").seq == 4  # roll-ups pass
    assert seqs(s) == [3, 4]


def test_max_msgs_per_subject_keeps_history(env):
    s = make(env, max_msgs_per_subject=2)
    for i in range(4):
        s.append("s.a", b"a%d" % i)
        s.append("s.b", b"b%d" % i)
    assert [s.get(q).payload for q in seqs(s)] == [b"a2", b"b2", b"a3", b"b3"]
    assert s.subjects_state() == {"s.a": 2, "s.b": 2}
    assert s.state().num_deleted == 0  # removed from the head only... except interior ones:
    s.append("s.a", b"a4")  # removes s.a seq 5 -> interior
    assert seqs(s) == [6, 7, 8, 9] and s.state().first_seq == 6


def test_max_age_expiry_by_clock(env):
    s = make(env, max_age=1000 * MS)
    s.append("s.a", b"1")
    env.clock.advance(500)
    s.append("s.a", b"2")
    assert s.next_expiry_ms() == env.clock.now_ms() + 500
    assert s.expire() == 0
    env.clock.advance(499)
    assert s.expire() == 0
    env.clock.advance(1)  # ts <= now - max_age
    assert s.expire() == 1 and seqs(s) == [2]
    env.clock.advance(10_000)
    assert env.js.expire() == 1
    st = s.state()
    assert (st.messages, st.first_seq, st.last_seq, st.first_ts) == (0, 3, 2, 0)
    assert s.next_expiry_ms() is None


# -- removals ----------------------------------------------------------------------------------------------


def test_delete_msg_interior_and_head(env):
    s = make(env)
    for i in range(5):
        s.append("s.a", b"%d" % i)
    s.delete_msg(3)
    st = s.state(deleted_details=True)
    assert (st.messages, st.first_seq, st.num_deleted, st.deleted) == (4, 1, 1, [3])
    with pytest.raises(SequenceNotFound) as e:
        s.delete_msg(3)
    assert str(e.value) == "sequence 3 not found"
    with pytest.raises(MsgDeleteFailed) as e:  # past the end: nats-server's file store ErrStoreEOF
        s.delete_msg(99)
    assert str(e.value) == "stream store EOF"
    s.delete_msg(1)
    s.delete_msg(2)
    st = s.state()
    assert (st.first_seq, st.num_deleted, st.messages) == (4, 0, 2)
    with pytest.raises(MsgDeleteFailed) as e:  # below the first: ErrStoreMsgNotFound
        s.delete_msg(1)
    assert str(e.value) == "no message found"
    with pytest.raises(NoMessageFound):
        s.get(3)


def test_delete_last_message_keeps_last_seq(env):
    s = make(env)
    s.append("s.a", b"1")
    s.append("s.a", b"2")
    s.delete_msg(2)
    st = s.state()
    assert (st.messages, st.first_seq, st.last_seq) == (1, 1, 2)
    assert s.get_last_for_subject("s.a").seq == 1
    s.delete_msg(1)
    st = s.state()
    assert (st.messages, st.first_seq, st.last_seq) == (0, 3, 2)
    assert s.append("s.a", b"3").seq == 3


def test_deny_delete_and_deny_purge(env):
    s = make(env, deny_delete=True, deny_purge=True)
    s.append("s.a", b"")
    with pytest.raises(MsgDeleteFailed, match="message delete not permitted"):
        s.delete_msg(1)
    with pytest.raises(PurgeFailed, match="stream purge not permitted"):
        s.purge()


def test_purge_all_keeps_last_seq(env):
    s = make(env)
    for i in range(10):
        s.append(f"s.{i % 3}", b"x")
    assert s.purge() == 10
    st = s.state()
    assert (st.messages, st.bytes, st.first_seq, st.last_seq, st.num_subjects) == (0, 0, 11, 10, 0)
    assert s.append("s.a", b"").seq == 11
    s = env.reopen().stream("S")
    assert seqs(s) == [11] and s.state().first_seq == 11


def test_purge_filter_keep_and_seq(env):
    s = make(env)
    for i in range(1, 11):
        s.append("s.a" if i % 2 else "s.b", b"%d" % i)  # a: 1,3,5,7,9  b: 2,4,6,8,10
    assert s.purge(filter="s.a", keep=2) == 3
    assert seqs(s) == [2, 4, 6, 7, 8, 9, 10]
    assert s.purge(filter="s.b", seq=6) == 2  # below 6
    assert seqs(s) == [6, 7, 8, 9, 10]
    assert s.purge(seq=8) == 2
    assert seqs(s) == [8, 9, 10] and s.state().first_seq == 8
    assert s.purge(keep=1) == 2
    assert seqs(s) == [10]
    assert s.purge(seq=1) == 0
    with pytest.raises(BadRequest):  # nats-server: 10003 "bad request"
        s.purge(keep=1, seq=3)


def test_purge_to_a_sequence_past_the_end_moves_next_seq(env):
    # memstore.go compact: "compacting past the end of our range ... next message placed will have seq"
    s = make(env)
    s.append("s.a", b"")
    assert s.purge(seq=100) == 1
    st = s.state()
    assert (st.first_seq, st.last_seq, st.messages) == (100, 99, 0)
    assert s.append("s.a", b"x").seq == 100
    s = env.reopen().stream("S")
    assert s.get(100).payload == b"x" and s.append("s.a", b"y").seq == 101


def test_rollup_subject_and_all(env):
    s = make(env, allow_rollup_hdrs=True)
    for i in range(3):
        s.append("s.a", b"a%d" % i)
        s.append("s.b", b"b%d" % i)
    s.append("s.a", b"roll", {"Nats-Rollup": "sub"})
    assert [s.get(q).payload for q in seqs(s)] == [b"b0", b"b1", b"b2", b"roll"]
    s.append("s.c", b"all", {"Nats-Rollup": "ALL"})  # case-insensitive, as getRollup lowercases
    assert seqs(s) == [8]


def test_rollup_not_permitted_or_invalid(env):
    s = make(env)
    with pytest.raises(RollupFailed) as e:
        s.append("s.a", b"", rollup="sub")
    assert str(e.value) == "rollup not permitted"
    r = make(env, name="R", subjects=("r",), allow_rollup_hdrs=True)
    with pytest.raises(RollupFailed) as e:
        r.append("r", b"", {"Nats-Rollup": "bogus"})
    assert str(e.value) == 'rollup value invalid: "bogus"'


# -- reads -------------------------------------------------------------------------------------------------


def test_get_and_last_for_subject_and_next(env):
    s = make(env)
    s.append("s.a", b"1", {"H": "v"})
    s.append("s.b.x", b"2")
    s.append("s.a", b"3")
    m = s.get(1)
    assert (m.seq, m.subject, m.payload, m.headers, m.timestamp) == (1, "s.a", b"1", (("H", b"v"),),
                                                                      env.clock.now_ms())
    assert m.header_block() == b"NATS/1.0\r\nH: v\r\n\r\n"
    assert s.get_last_for_subject("s.a").payload == b"3"
    assert s.get_last_for_subject("s.b.*").seq == 2
    assert s.get_last_for_subject(">").seq == 3
    with pytest.raises(NoMessageFound):
        s.get_last_for_subject("s.zzz")
    assert s.get_next(2, "s.a").seq == 3
    assert s.get_next(1).seq == 1
    with pytest.raises(NoMessageFound):
        s.get_next(4)
    with pytest.raises(NoMessageFound):
        s.get(0)


def test_seq_for_time(env):
    s = make(env)
    t0 = env.clock.now_ms()
    s.append("s.a", b"")
    env.clock.advance(10)
    s.append("s.a", b"")
    s.append("s.a", b"")
    assert s.seq_for_time(t0) == 1
    assert s.seq_for_time(t0 + 5) == 2
    assert s.seq_for_time(t0 + 11) == 4  # past the end: last + 1
    s.delete_msg(2)
    assert s.seq_for_time(t0 + 5) == 3


def test_state_subjects_filter(env):
    s = make(env)
    for subj in ("s.a", "s.a", "s.b.1", "s.b.2"):
        s.append(subj, b"")
    assert s.state(subjects_filter="s.b.*").subjects == {"s.b.1": 1, "s.b.2": 1}
    assert s.state(subjects_filter=">").subjects == {"s.a": 2, "s.b.1": 1, "s.b.2": 1}
    assert "subjects" not in s.state().to_dict()


# -- persistence and storage -------------------------------------------------------------------------------


def test_restart_rebuilds_state_and_keeps_deletes(env):
    s = make(env)
    for i in range(200):
        s.append(f"s.{i % 7}", b"payload %d" % i, {"Nats-Msg-Id": f"id{i}"})
    s.delete_msg(50)
    s.delete_msg(51)
    s.delete_msg(1)
    s.purge(filter="s.3")
    before = s.state(deleted_details=True)
    first_bodies = [s.get(q).payload for q in seqs(s)[:5]]
    s = env.reopen().stream("S")
    after = s.state(deleted_details=True)
    assert after == before
    assert [s.get(q).payload for q in seqs(s)[:5]] == first_bodies
    assert s.append("s.x", b"").seq == 201
    assert len(s.log.segments()) > 1  # small segments: the rebuild spanned several


def test_fully_removed_segments_are_collected(env):
    s = make(env)
    for i in range(300):
        s.append("s.a", b"x" * 20)
    segs = s.log.segments()
    assert len(segs) > 3
    # Remove every message of the second segment (interior), then flush.
    second = segs[1]
    for off in range(second.base_offset, second.next_offset):
        s.delete_msg(off + 1)
    assert second.base_offset not in [x.base_offset for x in s.log.segments()]
    st = s.state()
    s = env.reopen().stream("S")
    assert s.state() == st


def test_memory_storage_keeps_config_not_messages(env):
    s = make(env, name="M", subjects=("m",), storage="memory")
    s.append("m", b"1")
    assert s.state().bytes == 1 + 1 + 16  # memstore.go memStoreMsgSizeRaw
    js = env.reopen()
    m = js.stream("M")
    assert m.config.storage == "memory" and m.state().messages == 0 and m.last_seq == 0


def test_kv_shaped_stream(env):
    """What the KV layer needs: history per key, roll-up purge markers, last by subject, revisions."""
    kv = env.js.add_stream(StreamConfig(
        name="KV_b", subjects=("$KV.b.>",), max_msgs_per_subject=3, discard="new", allow_rollup_hdrs=True,
        deny_delete=True, allow_direct=True))[0]
    r1 = kv.append("$KV.b.k", b"v1", expected_last_subject_seq=0)  # create
    with pytest.raises(WrongLastSequence):
        kv.append("$KV.b.k", b"again", expected_last_subject_seq=0)  # create of an existing key
    r2 = kv.append("$KV.b.k", b"v2", expected_last_subject_seq=r1.seq)  # update with revision
    kv.append("$KV.b.k", b"v3")
    kv.append("$KV.b.k", b"v4")
    assert kv.subjects_state() == {"$KV.b.k": 3}  # history 3, discard new does not refuse a key
    kv.append("$KV.b.k", b"", {"KV-Operation": "DEL"})  # delete marker
    last = kv.get_last_for_subject("$KV.b.k")
    assert last.headers == (("KV-Operation", b"DEL"),) and r2.seq == 2
    kv.append("$KV.b.k", b"", {"KV-Operation": "PURGE", "Nats-Rollup": "sub"})  # purge marker
    assert kv.subjects_state() == {"$KV.b.k": 1}
    assert kv.get_last_for_subject("$KV.b.k").header_block() == (
        b"NATS/1.0\r\nKV-Operation: PURGE\r\nNats-Rollup: sub\r\n\r\n")
    # purge_deletes: drop markers, keep nothing of that key
    kv.purge(filter="$KV.b.k")
    with pytest.raises(NoMessageFound):
        kv.get_last_for_subject("$KV.b.k")
