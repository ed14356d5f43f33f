"""SubjectTrie: edge cases of both syntaxes, and a Hypothesis comparison with naive matchers."""

from __future__ import annotations

import time
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnibus.core.routing.trie import (
    EMPTY_MATCH,
    MatchResult,
    SubjectTrie,
    is_literal,
    valid_nats_pattern,
    valid_nats_subject,
)

# -- reference matchers (obviously correct, slow) ------------------------------------------------


def ref_nats(pattern: str, subject: str) -> bool:
    pt, st_ = pattern.split("."), subject.split(".")
    if "" in st_:
        return False
    for i, tok in enumerate(pt):
        if tok == ">":
            return len(st_) > i
        if i >= len(st_):
            return False
        if tok != "*" and tok != st_[i]:
            return False
    return len(pt) == len(st_)


def ref_amqp(pattern: str, subject: str) -> bool:
    pw = pattern.split(".") if pattern else []
    sw = subject.split(".") if subject else []

    @lru_cache(maxsize=None)
    def m(i: int, j: int) -> bool:
        if i == len(pw):
            return j == len(sw)
        tok = pw[i]
        if tok == "#":
            return m(i + 1, j) or (j < len(sw) and m(i, j + 1))
        if j == len(sw):
            return False
        return (tok == "*" or tok == sw[j]) and m(i + 1, j + 1)

    return m(0, 0)


def plain_of(trie: SubjectTrie, subject: str) -> set:
    r = trie.match(subject)
    assert len(r.plain) == len(set(r.plain)), "duplicate values in a result"
    return set(r.plain)


# -- NATS edge cases -----------------------------------------------------------------------------


def test_nats_full_wildcard_needs_at_least_one_token():
    t = SubjectTrie("nats")
    t.insert("a.>", "fwc")
    assert plain_of(t, "a") == set()
    assert plain_of(t, "a.b") == {"fwc"}
    assert plain_of(t, "a.b.c.d") == {"fwc"}
    t.insert(">", "all")
    assert plain_of(t, "a") == {"all"}
    assert plain_of(t, "x.y") == {"all"}


def test_nats_star_is_exactly_one_token():
    t = SubjectTrie("nats")
    t.insert("*", "one")
    t.insert("a.*", "a-one")
    t.insert("*.b", "one-b")
    assert plain_of(t, "a") == {"one"}
    assert plain_of(t, "a.b") == {"a-one", "one-b"}
    assert plain_of(t, "a.b.c") == set()


def test_nats_wildcards_only_as_whole_tokens():
    t = SubjectTrie("nats")
    t.insert("a*.b>", "lit")
    assert is_literal("a*.b>")
    assert plain_of(t, "a*.b>") == {"lit"}
    assert plain_of(t, "ab.b>") == set()


def test_nats_subject_with_empty_token_matches_nothing():
    t = SubjectTrie("nats")
    t.insert(">", "all")
    for bad in ("", ".", "a..b", ".a", "a."):
        assert t.match(bad) is EMPTY_MATCH


@pytest.mark.parametrize("bad", ["", ".", "a..b", ".a", "a.", "a.>.b", ">.a"])
def test_nats_insert_rejects_invalid_patterns(bad):
    t = SubjectTrie("nats")
    with pytest.raises(ValueError):
        t.insert(bad, 1)
    assert t.remove(bad, 1) is False
    assert len(t) == 0


def test_queue_groups_gathered_across_patterns():
    t = SubjectTrie("nats")
    t.insert("orders.*", "p1")
    t.insert("orders.new", "w1", group="workers")
    t.insert("orders.>", "w2", group="workers")
    t.insert("orders.*", "a1", group="audit")
    r = t.match("orders.new")
    assert set(r.plain) == {"p1"}
    groups = dict(r.groups)
    assert set(groups) == {"workers", "audit"}
    assert set(groups["workers"]) == {"w1", "w2"}
    assert groups["audit"] == ("a1",)
    assert set(r.values()) == {"p1", "w1", "w2", "a1"}
    assert t.remove("orders.new", "w1", group="workers")
    assert not t.remove("orders.new", "w1", group="workers")
    assert not t.remove("orders.>", "w2")  # plain entry with that value does not exist
    assert dict(t.match("orders.new").groups)["workers"] == ("w2",)


def test_insert_is_idempotent_and_counts():
    t = SubjectTrie("nats")
    assert t.insert("a.b", 1)
    assert not t.insert("a.b", 1)
    assert t.insert("a.b", 1, group="g")
    assert len(t) == 2
    assert t.remove("a.b", 1)
    assert not t.remove("a.b", 1)
    assert len(t) == 1
    assert sorted(t.entries(), key=repr) == [("a.b", 1, "g")]


def test_remove_prunes_every_node():
    for style, patterns in (("nats", ["a.b.c", "a.*.>", "*.b", ">"]),
                            ("amqp", ["a.#.b", "#", "", "*.*", "a..b"])):
        t = SubjectTrie(style)
        for p in patterns:
            t.insert(p, p)
        for p in patterns:
            assert t.remove(p, p)
        root = t._root
        assert root.is_empty(), style
        assert len(t) == 0
        assert list(t.entries()) == []


def test_results_are_immutable_snapshots():
    t = SubjectTrie("nats")
    t.insert("a.*", 1)
    held = t.match("a.b")
    t.insert("a.b", 2)
    t.remove("a.*", 1)
    assert held == MatchResult((1,), ())
    assert t.match("a.b").plain == (2,)


def test_deep_subject_does_not_recurse():
    t = SubjectTrie("nats")
    n = 5000
    t.insert(".".join(["*"] * n), "stars")
    t.insert(".".join(["*"] * (n - 1)) + ".>", "tail")
    subject = ".".join(["x"] * n)
    assert plain_of(t, subject) == {"stars", "tail"}
    a = SubjectTrie("amqp")
    a.insert(".".join(["*"] * n), "stars")
    assert plain_of(a, subject) == {"stars"}


# -- cache ---------------------------------------------------------------------------------------


def test_cache_literal_insert_pops_only_its_subject():
    t = SubjectTrie("nats")
    t.insert("a.*", 1)
    t.match("a.b")
    t.match("a.c")
    assert t.cache_count == 2
    t.insert("a.b", 2)
    assert t.cache_count == 1
    assert plain_of(t, "a.b") == {1, 2}
    assert plain_of(t, "a.c") == {1}
    t.remove("a.b", 2)
    assert plain_of(t, "a.b") == {1}


def test_cache_wildcard_change_clears():
    t = SubjectTrie("nats")
    t.insert("a.b", 1)
    t.match("a.b")
    t.match("x.y")
    t.insert("*.y", 2)
    assert t.cache_count == 0
    assert plain_of(t, "x.y") == {2}
    t.remove("*.y", 2)
    assert plain_of(t, "x.y") == set()


def test_cache_is_bounded_and_counts_hits():
    t = SubjectTrie("nats", cache_size=8)
    t.insert(">", 1)
    for i in range(100):
        assert t.match(f"s.{i}").plain == (1,)
        assert t.cache_count <= 8
    before = t.cache_hits
    t.match("s.99")
    assert t.cache_hits == before + 1
    assert t.matches == 101


def test_cache_disabled():
    t = SubjectTrie("amqp", cache_size=0)
    t.insert("#", 1)
    assert t.match("a").plain == (1,)
    assert t.cache_count == 0


def test_unknown_style():
    with pytest.raises(ValueError):
        SubjectTrie("mqtt")  # type: ignore[arg-type]


# -- AMQP edge cases (RabbitMQ topic exchange semantics) -----------------------------------------


def test_amqp_hash_matches_zero_words():
    t = SubjectTrie("amqp")
    t.insert("#", "hash")
    t.insert("a.#", "a-hash")
    t.insert("#.b", "hash-b")
    t.insert("a.#.b", "a-hash-b")
    assert plain_of(t, "") == {"hash"}
    assert plain_of(t, "a") == {"hash", "a-hash"}
    assert plain_of(t, "b") == {"hash", "hash-b"}
    assert plain_of(t, "a.b") == {"hash", "a-hash", "hash-b", "a-hash-b"}
    assert plain_of(t, "a.x.y.b") == {"hash", "a-hash", "hash-b", "a-hash-b"}
    assert plain_of(t, "a.x.y.c") == {"hash", "a-hash"}


def test_amqp_star_needs_exactly_one_word():
    t = SubjectTrie("amqp")
    t.insert("*", "star")
    assert plain_of(t, "") == set()  # the empty key has zero words
    assert plain_of(t, "a") == {"star"}
    assert plain_of(t, "a.b") == set()
    t.insert("a.*", "a-star")
    assert plain_of(t, "a.") == {"a-star"}  # an empty word is still a word
    assert plain_of(t, "a") == {"star"}


def test_amqp_empty_binding_key_matches_only_empty_routing_key():
    t = SubjectTrie("amqp")
    t.insert("", "empty")
    assert plain_of(t, "") == {"empty"}
    assert plain_of(t, "a") == set()
    assert plain_of(t, ".") == set()


def test_amqp_each_destination_once():
    t = SubjectTrie("amqp")
    for p in ("#.#", "#.#.#", "a.#", "#.a", "*.#", "#"):
        t.insert(p, "q")
    assert t.match("a.a.a").plain == ("q",)


def test_amqp_rabbitmq_tutorial_five():
    # https://www.rabbitmq.com/tutorials/tutorial-five-python
    t = SubjectTrie("amqp")
    t.insert("*.orange.*", "Q1")
    t.insert("*.*.rabbit", "Q2")
    t.insert("lazy.#", "Q2")
    cases = {
        "quick.orange.rabbit": {"Q1", "Q2"},
        "lazy.orange.elephant": {"Q1", "Q2"},
        "quick.orange.fox": {"Q1"},
        "lazy.brown.fox": {"Q2"},
        "lazy.pink.rabbit": {"Q2"},
        "quick.brown.fox": set(),
        "orange": set(),
        "quick.orange.male.rabbit": set(),
        "lazy.orange.male.rabbit": {"Q2"},
    }
    for key, want in cases.items():
        assert plain_of(t, key) == want, key


def test_amqp_many_hashes_stay_polynomial():
    t = SubjectTrie("amqp", cache_size=0)
    t.insert(".".join(["#"] * 12) + ".x", "q")
    subject = ".".join(["w"] * 120)
    start = time.perf_counter()
    assert t.match(subject) is EMPTY_MATCH
    assert plain_of(t, subject + ".x") == {"q"}
    assert time.perf_counter() - start < 2.0


def test_amqp_wildcard_words_in_routing_key_are_literal_words():
    t = SubjectTrie("amqp")
    t.insert("a.b", 1)
    t.insert("a.*", 2)
    assert plain_of(t, "a.*") == {2}
    assert plain_of(t, "a.#") == {2}


# -- validation helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject,pattern_ok,subject_ok",
    [
        ("foo", True, True),
        ("foo.bar.baz", True, True),
        ("foo.*", True, False),
        ("foo.>", True, False),
        (">", True, False),
        ("*.*", True, False),
        ("foo*.b>r", True, True),  # wildcards only as whole tokens
        ("foo.>.bar", False, False),
        ("", False, False),
        (".", False, False),
        ("foo.", False, False),
        (".foo", False, False),
        ("foo..bar", False, False),
        ("foo bar", False, False),
        ("foo\tbar", False, False),
        ("foo\nbar", False, False),
        ("foo\rbar", False, False),
        ("foo\fbar", False, False),
        ("foo. .bar", False, False),
    ],
)
def test_nats_validation(subject, pattern_ok, subject_ok):
    assert valid_nats_pattern(subject) is pattern_ok
    assert valid_nats_subject(subject) is subject_ok


def test_is_literal_amqp():
    assert is_literal("a.b", "amqp")
    assert not is_literal("a.#", "amqp")
    assert is_literal("a.>", "amqp")  # '>' means nothing to AMQP
    assert not is_literal("a.>", "nats")
    assert is_literal("a#.b", "amqp")


# -- property tests against the reference matchers -----------------------------------------------

# Small alphabets so that patterns, subjects and cached subjects collide often; literal patterns
# are drawn from the subject strategy so the literal-pattern cache path (pop one entry) is hit.
NATS_TOKENS = st.sampled_from(["a", "b", "a*"])
NATS_LITERAL = st.lists(NATS_TOKENS, min_size=1, max_size=4).map(".".join)
NATS_PATTERN = st.one_of(
    st.builds(
        lambda toks, tail: ".".join(toks + tail),
        st.lists(st.one_of(NATS_TOKENS, st.just("*")), min_size=0, max_size=4),
        st.sampled_from([[], [], [">"]]),
    ).filter(bool),
    NATS_LITERAL,
)
NATS_SUBJECT = st.one_of(
    NATS_LITERAL,
    NATS_LITERAL,
    st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=4).map(".".join),  # invalid too
)

AMQP_WORDS = st.sampled_from(["a", "b", "", "a#"])
AMQP_SUBJECT = st.lists(AMQP_WORDS, max_size=5).map(".".join)
AMQP_PATTERN = st.one_of(
    st.lists(st.one_of(AMQP_WORDS, st.sampled_from(["*", "#"])), max_size=5).map(".".join),
    AMQP_SUBJECT,
)

VALUES = st.integers(0, 5)
GROUPS = st.sampled_from([None, None, "g1", "g2"])


def op_strategy(pattern, subject, min_size=0):
    return st.lists(
        st.one_of(
            st.tuples(st.just("ins"), pattern, VALUES, GROUPS),
            st.tuples(st.just("rem"), pattern, VALUES, GROUPS),
            st.tuples(st.just("rem_existing"), st.integers(0, 1000)),
            st.tuples(st.just("match"), subject),
            st.tuples(st.just("match"), subject),
        ),
        min_size=min_size,
        max_size=60,
    )


def run_model(style, ops, cache_size, ref):
    trie = SubjectTrie(style, cache_size=cache_size)
    model: dict[tuple, None] = {}  # (pattern, value, group)
    for op in ops:
        kind = op[0]
        if kind == "ins":
            _, p, v, g = op
            assert trie.insert(p, v, g) is ((p, v, g) not in model)
            model[(p, v, g)] = None
        elif kind in ("rem", "rem_existing"):
            if kind == "rem_existing":
                if not model:
                    continue
                p, v, g = list(model)[op[1] % len(model)]
            else:
                _, p, v, g = op
            assert trie.remove(p, v, g) is ((p, v, g) in model)
            model.pop((p, v, g), None)
        else:
            subject = op[1]
            r = trie.match(subject)
            want_plain = {v for (p, v, g) in model if g is None and ref(p, subject)}
            want_groups: dict[str, set] = {}
            for p, v, g in model:
                if g is not None and ref(p, subject):
                    want_groups.setdefault(g, set()).add(v)
            assert len(r.plain) == len(set(r.plain))
            assert set(r.plain) == want_plain, (subject, model)
            names = [name for name, _ in r.groups]
            assert len(names) == len(set(names))
            got_groups = {}
            for name, members in r.groups:
                assert members, "empty group in a result"
                assert len(members) == len(set(members))
                got_groups[name] = set(members)
            assert got_groups == want_groups, (subject, model)
            assert bool(r) == bool(want_plain or want_groups)
        assert len(trie) == len(model)
        if cache_size:
            assert trie.cache_count <= cache_size
    assert sorted(trie.entries(), key=repr) == sorted(model, key=repr)


@settings(max_examples=100, deadline=None)
@given(ops=op_strategy(NATS_PATTERN, NATS_SUBJECT), cache_size=st.sampled_from([0, 1, 2, 3, 1024]))
def test_nats_trie_matches_reference(ops, cache_size):
    run_model("nats", ops, cache_size, ref_nats)


@settings(max_examples=100, deadline=None)
@given(ops=op_strategy(AMQP_PATTERN, AMQP_SUBJECT), cache_size=st.sampled_from([0, 1, 2, 3, 1024]))
def test_amqp_trie_matches_reference(ops, cache_size):
    run_model("amqp", ops, cache_size, ref_amqp)


@given(pattern=NATS_PATTERN, subject=NATS_SUBJECT)
def test_nats_validity_agrees_with_insertability(pattern, subject):
    t = SubjectTrie("nats")
    t.insert(pattern, 1)  # generated patterns are valid
    assert valid_nats_pattern(pattern)
    if valid_nats_subject(subject):
        assert bool(t.match(subject)) == ref_nats(pattern, subject)


SHORT_LITERAL = st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2).map(".".join)


@settings(max_examples=50, deadline=None)
@given(ops=op_strategy(SHORT_LITERAL, SHORT_LITERAL, min_size=20), cache_size=st.sampled_from([1, 2, 1024]))
def test_literal_patterns_keep_cache_coherent(ops, cache_size):
    # Only literal patterns: no cache.clear() hides a stale entry, so this exercises the
    # pop-one-entry invalidation path on its own.
    run_model("nats", ops, cache_size, ref_nats)


def test_plain_set_is_computed_once_per_cached_result():
    t = SubjectTrie("amqp")
    t.insert("a.*", "q1")
    t.insert("#", "q2")
    r = t.match("a.b")
    s = r.plain_set()
    assert s == {"q1", "q2"}
    assert t.match("a.b").plain_set() is s  # cache hit: same result, same set
    assert EMPTY_MATCH.plain_set() == frozenset()
