"""Message <-> storage record mapping: round trips, layout, records written by Kafka producers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnibus.core.messages import (
    HDR_EXCHANGE,
    HDR_PROPERTIES,
    Message,
    batch_to_messages,
    message_to_record,
    messages_to_batch,
    record_to_message,
)
from omnibus.storage.records import NO_TIMESTAMP, Record, build_batch

NOW = 1_700_000_000_000


def test_record_layout():
    m = Message("a.b", b"body", {"k": "v"}, b"\x90\x00props", 123, "amq.topic")
    r = message_to_record(m)
    assert r.key == b"a.b"
    assert r.value == b"body"
    assert r.headers == ((HDR_EXCHANGE, b"amq.topic"), (HDR_PROPERTIES, b"\x90\x00props"), ("k", b"v"))
    assert r.timestamp_ms == 123


def test_defaults_store_nothing_extra():
    r = message_to_record(Message("q"))
    assert r == Record(b"q", b"", (), NO_TIMESTAMP)
    m = record_to_message(r)
    assert m == Message("q")
    assert m.exchange == "" and m.properties == b"" and m.headers is None


def test_memoryview_body_is_not_copied_into_the_record():
    buf = bytearray(b"xxhello")
    body = memoryview(buf)[2:]
    r = message_to_record(Message("k", body))
    assert r.value is body
    (off, back), = batch_to_messages(messages_to_batch([Message("k", body)], now_ms=NOW))
    assert back.body == b"hello"


def test_batch_round_trip_and_timestamps():
    msgs = [Message("a", b"1", timestamp_ms=5), Message("b", b"2"), Message("", b"3", exchange="x")]
    batch = messages_to_batch(msgs, now_ms=NOW)
    back = batch_to_messages(batch)
    assert [o for o, _ in back] == [0, 1, 2]
    assert back[0][1] == msgs[0]
    assert back[1][1].timestamp_ms == NOW  # stamped on append
    assert back[2][1].routing_key == "" and back[2][1].exchange == "x"


def test_multi_value_headers():
    m = Message("s", b"", {"a": ["1", b"2", None], "b": "x"})
    r = message_to_record(m)
    assert r.headers == (("a", b"1"), ("a", b"2"), ("a", None), ("b", b"x"))
    assert record_to_message(r).headers == {"a": [b"1", b"2", None], "b": b"x"}


def test_typed_header_values_refused():
    with pytest.raises(TypeError, match="properties bytes"):
        message_to_record(Message("s", b"", {"n": 1}))


def test_record_written_by_a_kafka_producer():
    r = Record(None, None, (("trace", b"t1"), ("trace", b"t2"), ("h", None)), 42)
    m = record_to_message(r)
    assert m.routing_key == "" and m.body == b"" and m.exchange == "" and m.properties == b""
    assert m.headers == {"trace": [b"t1", b"t2"], "h": None}
    bad_utf8 = record_to_message(Record(b"\xff\xfek", b"v"))
    assert bad_utf8.routing_key == "\ufffd\ufffdk"
    (off, back), = batch_to_messages(build_batch([Record(b"k", b"v", (), 7)], base_offset=100))
    assert off == 100 and back.routing_key == "k" and back.body == b"v" and back.timestamp_ms == 7


HEADER_VALUE = st.one_of(st.binary(max_size=8), st.text(max_size=8), st.none())
HEADERS = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(max_size=6).filter(lambda k: not k.startswith("omnibus.")),
        st.one_of(HEADER_VALUE, st.lists(HEADER_VALUE, max_size=3)),
        max_size=4,
    ),
)


def expected_headers(headers):
    if not headers:
        return None
    out = {}
    for k, v in headers.items():
        vals = v if isinstance(v, list) else [v]
        vals = [x.encode() if isinstance(x, str) else x for x in vals]
        if not vals:
            continue
        out[k] = vals[0] if len(vals) == 1 else vals
    return out or None


@settings(max_examples=150, deadline=None)
@given(
    msgs=st.lists(
        st.builds(
            Message,
            routing_key=st.text(max_size=20),
            body=st.binary(max_size=64),
            headers=HEADERS,
            properties=st.binary(max_size=16),
            timestamp_ms=st.one_of(st.just(NO_TIMESTAMP), st.integers(0, 2**50)),
            exchange=st.text(max_size=10),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_round_trip_property(msgs):
    back = batch_to_messages(messages_to_batch(msgs, now_ms=NOW))
    assert [o for o, _ in back] == list(range(len(msgs)))
    for m, (_, b) in zip(msgs, back):
        assert b.routing_key == m.routing_key
        assert b.body == m.body
        assert b.properties == m.properties
        assert b.exchange == m.exchange
        assert b.timestamp_ms == (NOW if m.timestamp_ms == NO_TIMESTAMP else m.timestamp_ms)
        assert (b.headers or None) == expected_headers(m.headers)
