"""Exchanges: RabbitMQ routing semantics per type, topology rules, NATS interop mapping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnibus.core.routing.exchanges import (
    AMQ_TOPIC,
    STANDARD_EXCHANGES,
    Exchange,
    ExchangeInUse,
    ExchangeNotFound,
    ExchangeRef,
    Exchanges,
    InequivalentExchange,
    InvalidBinding,
    ReservedExchange,
    UnknownExchangeType,
    nats_pattern_to_binding_key,
)
from omnibus.core.routing.trie import SubjectTrie, valid_nats_subject

# -- registry and topology rules -----------------------------------------------------------------


def test_predeclared_exchanges():
    xs = Exchanges()
    assert "" in xs
    for name, type_ in STANDARD_EXCHANGES:
        assert xs[name].type == type_
        assert xs[name].durable
    assert {x.name for x in xs} == {""} | {n for n, _ in STANDARD_EXCHANGES}
    assert xs["amq.match"].type == "headers"


def test_default_exchange_routes_to_named_queue():
    queues = {"q1"}
    xs = Exchanges(queue_exists=queues.__contains__)
    assert xs.route("", "q1") == {"q1"}
    assert xs.route("", "nope") == set()
    assert Exchanges().route("", "anything") == {"anything"}  # caller filters


def test_default_exchange_is_off_limits():
    xs = Exchanges()
    with pytest.raises(ReservedExchange, match="default exchange"):
        xs.bind("", "q", "q")
    with pytest.raises(ReservedExchange):
        xs.unbind("", "q", "q")
    with pytest.raises(ReservedExchange):
        xs.declare("", "direct")
    with pytest.raises(ReservedExchange):
        xs.delete("")


def test_reserved_prefix():
    xs = Exchanges()
    with pytest.raises(ReservedExchange, match="reserved prefix"):
        xs.declare("amq.custom", "direct")
    x, created = xs.declare("amq.topic", "topic")  # re-declare an existing one: fine
    assert not created and x is xs["amq.topic"]
    with pytest.raises(InequivalentExchange):
        xs.declare("amq.topic", "fanout")
    with pytest.raises(ReservedExchange, match="deletion of system exchange"):
        xs.delete("amq.direct")


def test_declare_equivalence():
    xs = Exchanges()
    x, created = xs.declare("logs", "fanout", durable=False)
    assert created
    again, created = xs.declare("logs", "fanout", durable=False)
    assert again is x and not created
    with pytest.raises(InequivalentExchange) as e:
        xs.declare("logs", "direct", durable=False)
    assert e.value.field == "type"
    assert "received 'direct' but current is 'fanout'" in str(e.value)
    with pytest.raises(InequivalentExchange, match="'durable'.*received 'true' but current is 'false'"):
        xs.declare("logs", "fanout", durable=True)
    with pytest.raises(InequivalentExchange, match="auto_delete"):
        xs.declare("logs", "fanout", durable=False, auto_delete=True)
    with pytest.raises(InequivalentExchange, match="internal"):
        xs.declare("logs", "fanout", durable=False, internal=True)
    with pytest.raises(InequivalentExchange, match="alternate-exchange"):
        xs.declare("logs", "fanout", durable=False, arguments={"alternate-exchange": "ae"})
    # other arguments are not compared (rabbit_exchange:assert_args_equivalence)
    xs.declare("logs", "fanout", durable=False, arguments={"x-whatever": 1})


def test_unknown_type():
    with pytest.raises(UnknownExchangeType, match="unknown exchange type 'x-consistent-hash'"):
        Exchanges().declare("h", "x-consistent-hash")
    with pytest.raises(UnknownExchangeType):
        Exchange("h", "bogus")


def test_bind_to_missing_exchanges():
    xs = Exchanges()
    with pytest.raises(ExchangeNotFound, match="no exchange 'nope'"):
        xs.bind("nope", "q", "k")
    with pytest.raises(ExchangeNotFound):
        xs.bind("amq.direct", ExchangeRef("nope"), "k")
    with pytest.raises(ExchangeNotFound):
        xs.route("nope", "k")


def test_delete_if_unused_and_missing():
    xs = Exchanges()
    xs.declare("x", "direct")
    xs.bind("x", "q", "k")
    with pytest.raises(ExchangeInUse):
        xs.delete("x", if_unused=True)
    assert xs.delete("x") is not None
    assert "x" not in xs
    assert xs.delete("x") is None  # deleting a missing exchange succeeds, as RabbitMQ


def test_auto_delete_after_last_binding():
    deleted = []
    xs = Exchanges(on_auto_delete=deleted.append)
    xs.declare("tmp", "direct", auto_delete=True)
    assert "tmp" in xs  # never bound: stays
    xs.bind("tmp", "q1", "a")
    xs.bind("tmp", "q2", "b")
    assert xs.unbind("tmp", "q1", "a")
    assert "tmp" in xs
    assert xs.unbind("tmp", "q2", "b")
    assert "tmp" not in xs
    assert [x.name for x in deleted] == ["tmp"]


def test_remove_destination_unbinds_everywhere_and_auto_deletes():
    deleted = []
    xs = Exchanges(on_auto_delete=deleted.append)
    xs.declare("tmp", "fanout", auto_delete=True)
    xs.bind("tmp", "q", "")
    xs.bind("amq.direct", "q", "k1")
    xs.bind("amq.direct", "q", "k2")
    xs.bind("amq.direct", "other", "k1")
    assert xs.remove_destination("q") == 3
    assert xs.route("amq.direct", "k1") == {"other"}
    assert "tmp" not in xs and [x.name for x in deleted] == ["tmp"]


# -- per-type routing ----------------------------------------------------------------------------


def test_direct():
    x = Exchange("d", "direct")
    assert x.bind("q1", "k")
    assert not x.bind("q1", "k")  # identical binding: no-op
    assert x.bind("q1", "k", {"a": 1})  # differs in arguments: a second binding
    x.bind("q2", "k")
    x.bind("q3", "other")
    assert x.route("k") == {"q1", "q2"}
    assert x.route("other") == {"q3"}
    assert x.route("K") == set()
    assert x.unbind("q1", "k")
    assert x.route("k") == {"q1", "q2"}  # the binding with arguments still routes
    assert x.unbind("q1", "k", {"a": 1})
    assert x.route("k") == {"q2"}
    assert not x.unbind("q1", "k")
    assert len(x) == 2


def test_binding_arguments_identity_is_order_independent_and_typed():
    x = Exchange("d", "direct")
    assert x.bind("q", "k", {"a": 1, "b": [1, 2]})
    assert not x.bind("q", "k", {"b": [1, 2], "a": 1})
    assert x.bind("q", "k", {"a": True, "b": [1, 2]})  # True is not 1
    assert len(x) == 2


def test_fanout_ignores_key():
    x = Exchange("f", "fanout")
    x.bind("q1", "whatever")
    x.bind("q2", "")
    x.bind("q2", "again")
    assert x.route("anything") == {"q1", "q2"}
    x.unbind("q2", "")
    assert x.route("") == {"q1", "q2"}
    x.unbind("q2", "again")
    assert x.route("") == {"q1"}


def test_topic_tutorial_five():
    x = Exchange("t", "topic")
    x.bind("Q1", "*.orange.*")
    x.bind("Q2", "*.*.rabbit")
    x.bind("Q2", "lazy.#")
    assert x.route("quick.orange.rabbit") == {"Q1", "Q2"}
    assert x.route("lazy.orange.elephant") == {"Q1", "Q2"}
    assert x.route("quick.orange.fox") == {"Q1"}
    assert x.route("lazy.pink.rabbit") == {"Q2"}
    assert x.route("quick.orange.male.rabbit") == set()
    assert x.route("lazy") == {"Q2"}
    x.unbind("Q2", "lazy.#")
    assert x.route("lazy") == set()
    assert x.route("a.b.rabbit") == {"Q2"}


def test_topic_same_key_different_arguments_refcounted():
    x = Exchange("t", "topic")
    x.bind("q", "a.#", {"v": 1})
    x.bind("q", "a.#", {"v": 2})
    x.unbind("q", "a.#", {"v": 1})
    assert x.route("a.b") == {"q"}
    x.unbind("q", "a.#", {"v": 2})
    assert x.route("a.b") == set()


def test_headers_all_and_any():
    x = Exchange("h", "headers")
    x.bind("all", "", {"x-match": "all", "format": "pdf", "type": "report"})
    x.bind("any", "", {"x-match": "any", "format": "zip", "type": "log"})
    x.bind("default-all", "", {"format": "pdf"})
    assert x.route("", {"format": "pdf", "type": "report"}) == {"all", "default-all"}
    assert x.route("", {"format": "pdf"}) == {"default-all"}
    assert x.route("", {"type": "log"}) == {"any"}
    assert x.route("", {"format": "zip", "extra": 1}) == {"any"}
    assert x.route("", None) == set()
    assert x.route("", {}) == set()


def test_headers_x_keys_ignored_unless_with_x():
    x = Exchange("h", "headers")
    x.bind("all", "", {"x-match": "all", "x-tenant": "a", "k": 1})
    x.bind("all-with-x", "", {"x-match": "all-with-x", "x-tenant": "a", "k": 1})
    x.bind("any-with-x", "", {"x-match": "any-with-x", "x-tenant": "a"})
    x.bind("any", "", {"x-match": "any", "x-tenant": "a"})  # nothing left to compare: never
    assert x.route("", {"k": 1}) == {"all"}
    assert x.route("", {"k": 1, "x-tenant": "a"}) == {"all", "all-with-x", "any-with-x"}
    assert x.route("", {"k": 1, "x-tenant": "b"}) == {"all"}


def test_headers_empty_spec_and_void_values():
    x = Exchange("h", "headers")
    x.bind("everything", "", {})  # all with nothing to compare: every message
    x.bind("present", "", {"trace": None})  # void: presence only
    assert x.route("", {}) == {"everything"}
    assert x.route("", {"trace": "anything"}) == {"everything", "present"}
    assert x.route("", {"trace": None}) == {"everything", "present"}


def test_headers_value_comparison():
    x = Exchange("h", "headers")
    x.bind("bool", "", {"flag": True})
    x.bind("int", "", {"flag": 1})
    x.bind("bytes", "", {"name": b"abc"})
    assert x.route("", {"flag": True}) == {"bool"}
    assert x.route("", {"flag": 1}) == {"int"}
    assert x.route("", {"name": "abc"}) == {"bytes"}  # longstr decoded either way


def test_headers_invalid_x_match():
    x = Exchange("h", "headers")
    with pytest.raises(InvalidBinding, match="Invalid x-match field value 'some'"):
        x.bind("q", "", {"x-match": "some"})
    with pytest.raises(InvalidBinding, match="type"):
        x.bind("q", "", {"x-match": 1})
    assert len(x) == 0
    assert x.bind("q", "", {"x-match": b"any", "a": 1})  # bytes longstr accepted
    assert x.route("", {"a": 1}) == {"q"}


def test_headers_unbind_by_arguments():
    x = Exchange("h", "headers")
    x.bind("q", "", {"a": 1})
    x.bind("q", "", {"b": 2})
    assert x.unbind("q", "", {"a": 1})
    assert x.route("", {"a": 1}) == set()
    assert x.route("", {"b": 2}) == {"q"}


# -- exchange-to-exchange and alternate exchanges -------------------------------------------------


def test_exchange_to_exchange_chain_and_cycle():
    xs = Exchanges()
    xs.declare("a", "fanout")
    xs.declare("b", "direct")
    xs.bind("a", ExchangeRef("b"), "")
    xs.bind("a", "qa", "")
    xs.bind("b", "qb", "k")
    xs.bind("b", ExchangeRef("a"), "k")  # a cycle: each exchange is visited once
    assert xs.route("a", "k") == {"qa", "qb"}
    assert xs.route("a", "other") == {"qa"}
    assert xs.route("b", "k") == {"qa", "qb"}
    assert all(not isinstance(d, ExchangeRef) for d in xs.route("a", "k"))


def test_deleting_an_exchange_removes_bindings_to_it():
    xs = Exchanges()
    xs.declare("src", "direct")
    xs.declare("dst", "fanout")
    xs.bind("src", ExchangeRef("dst"), "k")
    xs.bind("dst", "q", "")
    assert xs.route("src", "k") == {"q"}
    xs.delete("dst")
    assert xs.route("src", "k") == set()
    assert not xs["src"].has_bindings()
    assert xs._e2e == 0


def test_alternate_exchange_only_when_unrouted():
    xs = Exchanges()
    xs.declare("unrouted", "fanout")
    xs.declare("main", "direct", arguments={"alternate-exchange": "unrouted"})
    xs.bind("unrouted", "lost-and-found", "")
    xs.bind("main", "q", "known")
    assert xs.route("main", "known") == {"q"}
    assert xs.route("main", "unknown") == {"lost-and-found"}
    xs.declare("ghost", "direct", arguments={"alternate-exchange": "missing"})
    assert xs.route("ghost", "x") == set()  # a missing AE is ignored


def test_alternate_exchange_cycle():
    xs = Exchanges()
    xs.declare("a", "direct", arguments={"alternate-exchange": "b"})
    xs.declare("b", "direct", arguments={"alternate-exchange": "a"})
    assert xs.route("a", "k") == set()


# -- NATS interop --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nats,amqp",
    [("a.b", "a.b"), ("a.*", "a.*"), ("a.>", "a.*.#"), (">", "*.#"), ("a.*.>", "a.*.*.#"),
     ("*.*", "*.*")],
)
def test_nats_pattern_to_binding_key(nats, amqp):
    assert nats_pattern_to_binding_key(nats) == amqp


@pytest.mark.parametrize("bad", ["", "a..b", "a.>.b", "a.#", "#", "a b"])
def test_nats_pattern_refused(bad):
    with pytest.raises(ValueError):
        nats_pattern_to_binding_key(bad)


def test_nats_and_amqp_share_amq_topic():
    xs = Exchanges()
    sink = object()  # a NATS subscription's sink: opaque to the core
    xs.bind_subject(sink, "orders.>")
    xs.bind(AMQ_TOPIC, "amqp-queue", "orders.#")
    assert xs.route_subject("orders") == {"amqp-queue"}  # NATS '>' needs one more token
    assert xs.route_subject("orders.eu.new") == {sink, "amqp-queue"}
    assert xs.route(AMQ_TOPIC, "orders.eu") == {sink, "amqp-queue"}  # an AMQP publish
    assert xs.unbind_subject(sink, "orders.>")
    assert xs.route_subject("orders.eu") == {"amqp-queue"}


NATS_TOK = st.sampled_from(["a", "b", "c*"])


@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(
        st.builds(lambda toks, tail: ".".join(toks + tail),
                  st.lists(st.one_of(NATS_TOK, st.just("*")), max_size=3),
                  st.sampled_from([[], [">"]])).filter(bool),
        max_size=6,
    ),
    subjects=st.lists(st.lists(NATS_TOK, min_size=1, max_size=4).map(".".join), max_size=6),
)
def test_converted_bindings_route_like_nats(patterns, subjects):
    nats = SubjectTrie("nats")
    xs = Exchanges()
    for i, p in enumerate(patterns):
        nats.insert(p, i)
        xs.bind_subject(i, p)
    for s in subjects:
        assert valid_nats_subject(s)
        assert xs.route_subject(s) == set(nats.match(s).plain), s


# -- bookkeeping invariant under random topology changes ------------------------------------------

NAMES = ["x1", "x2", "x3"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("declare"), st.sampled_from(NAMES), st.sampled_from(["direct", "fanout"]),
                  st.booleans(), st.sampled_from([None, "x1", "x2"])),
        st.tuples(st.just("delete"), st.sampled_from(NAMES)),
        st.tuples(st.just("bind"), st.sampled_from(NAMES),
                  st.one_of(st.sampled_from(["q1", "q2"]), st.sampled_from(NAMES).map(ExchangeRef)),
                  st.sampled_from(["", "k"])),
        st.tuples(st.just("unbind"), st.sampled_from(NAMES),
                  st.one_of(st.sampled_from(["q1", "q2"]), st.sampled_from(NAMES).map(ExchangeRef)),
                  st.sampled_from(["", "k"])),
        st.tuples(st.just("remove_dest"),
                  st.one_of(st.sampled_from(["q1", "q2"]), st.sampled_from(NAMES).map(ExchangeRef))),
    ),
    min_size=5,
    max_size=40,
)
SETUP = st.lists(
    st.tuples(st.sampled_from(["direct", "fanout"]), st.booleans(),
              st.sampled_from([None, None, "x1", "x2"])),
    min_size=len(NAMES), max_size=len(NAMES),
)


def _recount(xs: Exchanges) -> int:
    n = sum(1 for b in xs.bindings() if isinstance(b.destination, ExchangeRef))
    return n + sum(1 for x in xs if x.alternate_exchange is not None)


def _reference_route(xs: Exchanges, name: str, key: str) -> set:
    out, seen, work = set(), {name}, [name]
    while work:
        x = xs.get(work.pop())
        if x is None:
            continue
        dests = x.route(key)
        if not dests and x.alternate_exchange and x.alternate_exchange not in seen:
            seen.add(x.alternate_exchange)
            work.append(x.alternate_exchange)
        for d in dests:
            if isinstance(d, ExchangeRef):
                if d.name not in seen:
                    seen.add(d.name)
                    work.append(d.name)
            else:
                out.add(d)
    return out


@settings(max_examples=150, deadline=None)
@given(setup=SETUP, ops=OPS)
def test_topology_bookkeeping(setup, ops):
    xs = Exchanges()
    for name, (type_, auto, ae) in zip(NAMES, setup):
        xs.declare(name, type_, auto_delete=auto,
                   arguments={"alternate-exchange": ae} if ae else None)
    for op in ops:
        try:
            if op[0] == "declare":
                _, name, type_, auto, ae = op
                xs.declare(name, type_, auto_delete=auto,
                           arguments={"alternate-exchange": ae} if ae else None)
            elif op[0] == "delete":
                xs.delete(op[1])
            elif op[0] == "bind":
                xs.bind(op[1], op[2], op[3])
            elif op[0] == "unbind":
                xs.unbind(op[1], op[2], op[3])
            else:
                xs.remove_destination(op[1])
        except (ExchangeNotFound, InequivalentExchange):
            pass
        assert xs._e2e == _recount(xs)
        for b in xs.bindings():  # no binding points at a deleted exchange
            if isinstance(b.destination, ExchangeRef):
                assert b.destination.name in xs
        for x in xs:
            if x.name:
                for key in ("", "k"):
                    assert set(xs.route(x.name, key)) == _reference_route(xs, x.name, key)
