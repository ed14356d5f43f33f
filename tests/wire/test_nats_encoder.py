"""The NATS encoder (omnibus.wire.nats.encoder): byte formats of nats-server server/client.go
(msgHeader, errProto, pingProto/pongProto/okProto, no-responders HMSG) and util.go generateInfoJSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from omnibus.wire.nats import encoder as enc

PAYLOADS = [b"", b"hello", b"a\r\nb\r\n", bytes(range(256))]


def test_constants():
    assert (enc.PING, enc.PONG, enc.OK) == (b"PING\r\n", b"PONG\r\n", b"+OK\r\n")


def test_info_has_a_space_before_crlf_like_nats_server():
    out = enc.info({"server_id": "x", "max_payload": 1048576, "headers": True})
    assert out.startswith(b"INFO {") and out.endswith(b"} \r\n")
    assert json.loads(out[5:-3]) == {"server_id": "x", "max_payload": 1048576, "headers": True}


def test_err():
    assert enc.err("Unknown Protocol Operation") == b"-ERR 'Unknown Protocol Operation'\r\n"
    assert enc.err('Permissions Violation for Publish to "caf\udcff"') == \
        b"-ERR 'Permissions Violation for Publish to \"caf\xff\"'\r\n"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_msg(payload):
    n = b"%d" % len(payload)
    assert enc.msg("foo.bar", "9", None, payload) == b"MSG foo.bar 9 " + n + b"\r\n" + payload + b"\r\n"
    assert enc.msg(b"foo.bar", b"9", b"_INBOX.1", payload) == \
        b"MSG foo.bar 9 _INBOX.1 " + n + b"\r\n" + payload + b"\r\n"
    assert enc.msg("foo", "1", "", payload) == enc.msg("foo", "1", None, payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hmsg(payload):
    h = b"NATS/1.0\r\nA: b\r\n\r\n"
    sizes = b"%d %d" % (len(h), len(h) + len(payload))
    assert enc.hmsg("foo", "2", None, h, payload) == b"HMSG foo 2 " + sizes + b"\r\n" + h + payload + b"\r\n"
    assert enc.hmsg("foo", b"2", "r", h, payload) == b"HMSG foo 2 r " + sizes + b"\r\n" + h + payload + b"\r\n"


def test_surrogateescape_round_trip():
    raw = b"caf\xc3\xa9.\xff"
    s = raw.decode("utf-8", "surrogateescape")
    assert enc.msg(s, "1", s, b"x") == b"MSG " + raw + b" 1 " + raw + b" 1\r\nx\r\n"


@given(st.sampled_from(["a", "foo.bar.baz"]), st.none() | st.sampled_from(["r", "_INBOX.abc"]),
       st.binary(max_size=64), st.lists(st.sampled_from([b"1", b"22", b"sid-x"]), min_size=1, max_size=4))
def test_parts_equal_full_encoding(subject, reply, payload, sids):
    head, tail = enc.msg_parts(subject, reply, payload)
    for sid in sids:
        assert head + sid + tail == enc.msg(subject, sid, reply, payload)
    headers = b"NATS/1.0\r\nK: v\r\n\r\n"
    head, tail = enc.hmsg_parts(subject, reply, headers, payload)
    for sid in sids:
        assert head + sid + tail == enc.hmsg(subject, sid, reply, headers, payload)


def test_no_responders_is_nats_servers_bytes():
    # client.go: fmt.Sprintf("HMSG %s %s %d %d\r\nNATS/1.0 503\r\nNats-Subject: %s\r\n\r\n\r\n", reply, sid,
    # hdrLen, hdrLen, subject) with hdrLen = 32 + len(subject)
    subject = "service.echo"
    out = enc.no_responders("_INBOX.abc.1", "7", subject)
    n = 32 + len(subject)
    assert out == b"HMSG _INBOX.abc.1 7 %d %d\r\nNATS/1.0 503\r\nNats-Subject: service.echo\r\n\r\n\r\n" % (n, n)


def test_status_hmsg():
    # nats-server before 2.12: "HMSG %s %s 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    assert enc.status_hmsg("_INBOX.x", "3", 503) == b"HMSG _INBOX.x 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    block = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n"
    assert enc.status_hmsg("in", "1", 408, "Request Timeout", [("Nats-Pending-Messages", "1")]) == \
        b"HMSG in 1 %d %d\r\n" % (len(block), len(block)) + block + b"\r\n"


def test_encoded_msg_parses_back_as_a_publish():
    """What we send as MSG/HMSG has the shape of the PUB/HPUB the parser takes (same sizes, same framing)."""
    from omnibus.wire.nats.parser import OP_HPUB, OP_PUB, NatsParser
    headers = b"NATS/1.0\r\nX: y\r\n\r\n"
    wire = enc.msg("a.b", "1", "r", b"data\r\n") + enc.hmsg("a.b", "1", None, headers, b"pl")
    wire = wire.replace(b"MSG a.b 1 ", b"PUB a.b ")  # drops the sid; "HMSG a.b 1 " becomes "HPUB a.b " too
    p = NatsParser()
    p.receive_data(wire)
    assert p.events() == [(OP_PUB, "a.b", "r", b"data\r\n"), (OP_HPUB, "a.b", None, headers, b"pl")]
