"""Model test: a stream (and two consumers) against a plain dict of seq -> message, under random appends
(with Nats-Msg-Ids and roll-ups, several per batch), deletes, purges (filter / keep / seq), max_age expiry by clock and restarts.

The reference model is the nats-server semantics written the slow obvious way (memstore.go
storeRawMsg/enforce*/PurgeEx/compact, stream.go dedup). After every operation the stream's state,
subjects, every live message and every consumer's num_pending must agree with it."""

from __future__ import annotations

import pathlib
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnibus.core.stream_consumers import ConsumerConfig
from omnibus.core.streams import (
    NANOS_PER_MS,
    MsgDeleteFailed,
    NoMessageFound,
    PubAck,
    Publish,
    SequenceNotFound,
    StreamConfig,
    header_block_len,
)
from omnibus.storage.log import LogConfig

from .test_streams import Env

SUBJECTS = ("s.a", "s.b", "s.c.x", "s.c.y")
WINDOW_MS = 2000
MAX_AGE_MS = 3000

CONFIGS = [
    {},
    {"max_msgs": 6},
    {"max_msgs_per_subject": 2},
    {"max_age": MAX_AGE_MS * NANOS_PER_MS},
    {"max_msgs": 8, "max_msgs_per_subject": 3, "max_age": MAX_AGE_MS * NANOS_PER_MS},
]


def _match(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, t in enumerate(p):
        if t == ">":
            return len(s) > i
        if i >= len(s) or (t != "*" and t != s[i]):
            return False
    return len(p) == len(s)


class Model:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.msgs: dict[int, tuple[str, bytes, int, str | None]] = {}
        self.last = 0
        self.first_hint = 1
        self.dedup: dict[str, tuple[int, int]] = {}
        self.ambiguous: set[str] = set()
        self.cursors = {"all": 1, "c": 1}  # consumer next seqs
        self.filters = {"all": ">", "c": "s.c.*"}

    def first(self) -> int:
        return min(self.msgs) if self.msgs else self.last + 1

    def remove(self, seq: int) -> None:
        del self.msgs[seq]

    def append(self, subject, payload, mid, now, rollup=None):
        for m, (_, ts) in list(self.dedup.items()):
            if now - ts >= WINDOW_MS:
                del self.dedup[m]
        if mid and mid in self.dedup:
            return self.dedup[mid][0], True
        seq = self.last = self.last + 1
        self.msgs[seq] = (subject, payload, now, mid)
        if mid:
            self.dedup[mid] = (seq, now)
            self.ambiguous.discard(mid)
        per = self.cfg.get("max_msgs_per_subject", -1)
        if per > 0:
            mine = sorted(q for q, m in self.msgs.items() if m[0] == subject)
            for q in mine[: max(0, len(mine) - per)]:
                self.remove(q)
        mx = self.cfg.get("max_msgs", -1)
        while mx > 0 and len(self.msgs) > mx:
            self.remove(min(self.msgs))
        if rollup == "sub":  # stream.go processJetStreamMsgWithRollup: purge subject, keep 1
            for q in [q for q, m in self.msgs.items() if m[0] == subject and q != seq]:
                self.remove(q)
        elif rollup == "all":
            for q in [q for q in self.msgs if q < seq]:
                self.remove(q)
        return seq, False

    def purge(self, subject, keep, seq):
        if seq == 1:
            return 0
        if subject in ("", ">") and keep == 0 and seq == 0:
            n = len(self.msgs)
            self.msgs.clear()
            return n
        if subject in ("", ">") and seq > 1:
            gone = [q for q in self.msgs if q < seq]
            for q in gone:
                self.remove(q)
            if seq > self.last + 1:
                self.last = seq - 1
            return len(gone)
        subject = subject or ">"
        matching = sorted(q for q, m in self.msgs.items() if _match(subject, m[0]))
        if keep:
            if keep >= len(matching):
                return 0
            matching = matching[: len(matching) - keep]
        if seq >= 1:
            matching = [q for q in matching if q <= seq - 1]
        for q in matching:
            self.remove(q)
        return len(matching)

    def expire(self, now):
        if "max_age" not in self.cfg:
            return
        for q in sorted(self.msgs):
            if self.msgs[q][2] <= now - MAX_AGE_MS:
                self.remove(q)
            else:
                break

    def pending(self, name: str) -> int:
        nxt = max(self.cursors[name], self.first())
        return sum(1 for q, m in self.msgs.items() if q >= nxt and _match(self.filters[name], m[0]))

    def deliver(self, name: str, n: int) -> list[int]:
        nxt = max(self.cursors[name], self.first())
        seqs = sorted(q for q, m in self.msgs.items() if q >= nxt and _match(self.filters[name], m[0]))[:n]
        if seqs:
            self.cursors[name] = seqs[-1] + 1
        if len(seqs) < n:
            self.cursors[name] = max(self.cursors[name], self.last + 1)
        return seqs


ops = st.one_of(
    st.tuples(st.just("append"), st.lists(st.tuples(st.sampled_from(SUBJECTS), st.binary(max_size=12),
                                                    st.sampled_from([None, None, "m1", "m2", "m3"]),
                                                    st.sampled_from([None] * 8 + ["sub", "all"])),
                                          min_size=1, max_size=5)),
    st.tuples(st.just("delete"), st.integers(0, 40)),
    st.tuples(st.just("purge"), st.sampled_from(["", ">", "s.a", "s.c.*", "s.b"]), st.integers(0, 3),
              st.sampled_from([0, 0, 1, 2, 5, 9, 30, 60])),
    st.tuples(st.just("advance"), st.sampled_from([1, 500, 1000, 2500])),
    st.tuples(st.just("deliver"), st.sampled_from(["all", "c"]), st.integers(1, 4)),
    st.tuples(st.just("restart"),),
)


def check(s, model: Model, consumers) -> None:
    st_ = s.state(subjects_filter=">")
    live = sorted(model.msgs)
    assert st_.messages == len(live)
    assert st_.last_seq == model.last
    assert st_.first_seq == model.first()
    assert st_.num_deleted == ((model.last - live[0] + 1 - len(live)) if live else 0)
    expected_subjects: dict[str, int] = {}
    for subj, *_ in model.msgs.values():
        expected_subjects[subj] = expected_subjects.get(subj, 0) + 1
    assert st_.subjects == expected_subjects and st_.num_subjects == len(expected_subjects)
    size = 0
    for q in live:
        subj, payload, ts, mid = model.msgs[q]
        m = s.get(q)
        assert (m.subject, m.payload, m.timestamp) == (subj, payload, ts)
        hdrs = (("Nats-Msg-Id", mid.encode()),) if mid else ()
        size += 22 + len(subj) + len(payload) + 8 + (4 + header_block_len(hdrs) if hdrs else 0)
    assert st_.bytes == size
    for subj in SUBJECTS:
        mine = [q for q in live if model.msgs[q][0] == subj]
        if mine:
            assert s.get_last_for_subject(subj).seq == mine[-1]
        else:
            try:
                s.get_last_for_subject(subj)
                raise AssertionError(f"{subj} should have no message")
            except NoMessageFound:
                pass
    for name, c in consumers.items():
        assert c.num_pending == model.pending(name), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=st.sampled_from(CONFIGS), program=st.lists(ops, max_size=25))
def test_stream_matches_reference_model(cfg, program):
    path = pathlib.Path(tempfile.mkdtemp())
    env = Env(path, log_config=LogConfig(fsync="never", segment_bytes=600, file_delete_delay_ms=0))
    try:
        js = env.js
        s = js.add_stream(StreamConfig(name="S", subjects=("s.>",), duplicate_window=WINDOW_MS * NANOS_PER_MS,
                                       allow_rollup_hdrs=True, **cfg))[0]

        def consumers_of(js):
            return {"all": js.consumer("S", "all"), "c": js.consumer("S", "c")}

        js.add_consumer("S", ConsumerConfig(durable_name="all"))
        js.add_consumer("S", ConsumerConfig(durable_name="c", filter_subject="s.c.*"))
        consumers = consumers_of(js)
        model = Model(cfg)
        for op in program:
            kind = op[0]
            if kind == "append":
                now = env.clock.now_ms()
                res = s.append_many([Publish(subj, payload, {"Nats-Msg-Id": mid} if mid else None, rollup=roll)
                                     for subj, payload, mid, roll in op[1]])
                for (subj, payload, mid, roll), r in zip(op[1], res):
                    assert isinstance(r, PubAck)
                    if mid in model.ambiguous:  # dedup after a restart only knows messages still in the log
                        if r.duplicate:
                            assert r.seq == model.dedup[mid][0]
                            continue
                        model.dedup.pop(mid, None)
                    assert (r.seq, r.duplicate) == model.append(subj, payload, mid, now, roll)
            elif kind == "delete":
                seq = op[1]
                if seq in model.msgs:
                    s.delete_msg(seq)
                    model.remove(seq)
                else:
                    try:
                        s.delete_msg(seq)
                        raise AssertionError("delete of a missing message")
                    except (SequenceNotFound, MsgDeleteFailed):  # interior gap / outside first..last
                        pass
            elif kind == "purge":
                _, subject, keep, seq = op
                if keep and seq:
                    seq = 0
                assert s.purge(subject, keep, seq) == model.purge(subject, keep, seq)
            elif kind == "advance":
                env.clock.advance(op[1])
                s.expire()
                model.expire(env.clock.now_ms())
            elif kind == "deliver":
                _, name, n = op
                got = [d.stream_seq for d in consumers[name].next_messages(n)]
                assert got == model.deliver(name, n)
            elif kind == "restart":
                js.flush()
                js = env.reopen()
                s = js.stream("S")
                consumers = consumers_of(js)
                model.ambiguous = set(model.dedup)
            check(s, model, consumers)
    finally:
        env.close()
        shutil.rmtree(path, ignore_errors=True)
