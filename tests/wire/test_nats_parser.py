"""The NATS client-protocol parser (omnibus.wire.nats.parser), no event loop.

Every op fed whole, one byte at a time and split at every index; nats-server's argument forms
(server/parser_test.go TestParsePubArg, TestShouldFail) and its error texts and close behaviour
(server/parser.go parseErr/overMaxControlLineLimit, server/client.go processPub/processHeaderPub/
parseSub/processUnsub/processConnect, readLoop); Hypothesis over random bytes and random splits.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from omnibus.wire.nats import encoder as enc
from omnibus.wire.nats import parser as nats_parser
from omnibus.wire.nats.parser import (
    ERR_MAX_CONTROL_LINE, ERR_MAX_PAYLOAD, ERR_UNKNOWN_OP, MAX_CONTROL_LINE_SIZE, MAX_PAYLOAD_SIZE, NEED_DATA,
    NO_LIMIT, OP_CONNECT, OP_ERROR, OP_HPUB, OP_PING, OP_PONG, OP_PUB, OP_SUB, OP_UNSUB, NatsParser,
    NatsProtocolError,
)

HDRS = b"NATS/1.0\r\nFoo: Bar\r\n\r\n"

# (wire bytes, events) for every event type, in the forms clients send.
CASES: list[tuple[bytes, list[tuple]]] = [
    (b'CONNECT {"verbose":false,"pedantic":false,"name":"x","headers":true}\r\n',
     [(OP_CONNECT, {"verbose": False, "pedantic": False, "name": "x", "headers": True})]),
    (b"PUB foo.bar 5\r\nhello\r\n", [(OP_PUB, "foo.bar", None, b"hello")]),
    (b"PUB foo.bar _INBOX.1 5\r\nhello\r\n", [(OP_PUB, "foo.bar", "_INBOX.1", b"hello")]),
    (b"PUB foo 0\r\n\r\n", [(OP_PUB, "foo", None, b"")]),
    (b"PUB foo 6\r\na\r\nb\r\n\r\n", [(OP_PUB, "foo", None, b"a\r\nb\r\n")]),
    (b"HPUB foo 22 27\r\n" + HDRS + b"hello\r\n", [(OP_HPUB, "foo", None, HDRS, b"hello")]),
    (b"HPUB foo rep 22 22\r\n" + HDRS + b"\r\n", [(OP_HPUB, "foo", "rep", HDRS, b"")]),
    (b"HPUB foo 0 2\r\nhi\r\n", [(OP_HPUB, "foo", None, b"", b"hi")]),
    (b"SUB foo.* 1\r\n", [(OP_SUB, "foo.*", None, "1")]),
    (b"SUB foo.> workers 22\r\n", [(OP_SUB, "foo.>", "workers", "22")]),
    (b"UNSUB 1\r\n", [(OP_UNSUB, "1", None)]),
    (b"UNSUB 1 10\r\n", [(OP_UNSUB, "1", 10)]),
    (b"PING\r\n", [(OP_PING,)]),
    (b"PONG\r\n", [(OP_PONG,)]),
]


def feed(chunks, **kw) -> tuple[list[tuple], NatsProtocolError | None]:
    """Feed chunks one by one, calling events() after each; return (good events, error or None)."""
    p = NatsParser(**kw)
    out: list[tuple] = []
    for c in chunks:
        p.receive_data(c)
        evs = p.events()
        if evs and evs[-1][0] == OP_ERROR:
            err = evs.pop()[1]
            out.extend(evs)
            return out, err
        out.extend(evs)
    return out, None


def whole(data: bytes, **kw):
    return feed([data], **kw)


def bytewise(data: bytes, **kw):
    return feed([data[i:i + 1] for i in range(len(data))], **kw)


def same_everywhere(data: bytes, **kw):
    """Parse whole, one byte at a time and split at every index; assert all agree; return the result."""
    ref = whole(data, **kw)
    assert _norm(bytewise(data, **kw)) == _norm(ref)
    for i in range(1, len(data)):
        assert _norm(feed([data[:i], data[i:]], **kw)) == _norm(ref), i
    return ref


def general_only(data: bytes, max_payload: int = MAX_PAYLOAD_SIZE, max_control_line: int = MAX_CONTROL_LINE_SIZE):
    """The reference path alone (NatsParser._general, no fast path, no cache), on the whole input."""
    p = NatsParser()
    out: list[tuple] = []
    pos = 0
    try:
        while pos < len(data):
            pos = p._general(data, pos, len(data), out.append, max_payload if max_payload >= 0 else 1 << 62,
                             max_control_line)
            if pos < 0:
                break
    except NatsProtocolError as e:
        return out, e
    return out, None


def _norm(result):
    evs, err = result
    return evs, None if err is None else (err.message, err.fatal, err.send_err)


def error_of(data: bytes, **kw) -> NatsProtocolError:
    evs, err = same_everywhere(data, **kw)
    assert err is not None, evs
    return err


# -- good input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, events", CASES)
def test_each_op_whole_bytewise_and_split(data, events):
    assert same_everywhere(data) == (events, None)


def test_long_mixed_stream_split_everywhere():
    data = b"".join(d for d, _ in CASES) * 2
    expected = [e for _, evs in CASES for e in evs] * 2
    assert same_everywhere(data) == (expected, None)


def test_three_way_splits():
    data = b"".join(d for d, _ in CASES[:9])
    expected = [e for _, evs in CASES[:9] for e in evs]
    step = 7
    for i in range(1, len(data), step):
        for j in range(i, len(data), step):
            assert feed([data[:i], data[i:j], data[j:]]) == (expected, None)


def test_events_returns_empty_list_when_nothing_complete():
    p = NatsParser()
    assert p.events() == []
    p.receive_data(b"PUB foo 5\r\nhel")
    assert p.events() == []
    assert p.events() == []
    assert p.buffered == len(b"PUB foo 5\r\nhel")
    p.receive_data(b"lo\r\n")
    assert p.events() == [(OP_PUB, "foo", None, b"hello")]
    assert p.buffered == 0


def test_next_event_h11_style():
    p = NatsParser()
    assert p.next_event() is NEED_DATA
    p.receive_data(b"PING\r\nSUB a 1\r\nPUB a 1\r\n")
    assert p.next_event() == (OP_PING,)
    assert p.next_event() == (OP_SUB, "a", None, "1")
    assert p.next_event() is NEED_DATA
    p.receive_data(b"x\r\nPONG\r\n")
    assert p.next_event() == (OP_PUB, "a", None, b"x")
    # events() hands out what next_event had parsed but not returned yet, first
    assert p.events() == [(OP_PONG,)]
    assert p.next_event() is NEED_DATA


def test_next_event_raises_after_good_events():
    p = NatsParser()
    p.receive_data(b"PING\r\nFOO\r\n")
    assert p.next_event() == (OP_PING,)
    with pytest.raises(NatsProtocolError) as ei:
        p.next_event()
    assert ei.value.message == ERR_UNKNOWN_OP
    with pytest.raises(NatsProtocolError):
        p.next_event()


def test_memoryview_and_bytearray_input_are_copied():
    data = bytearray(b"PUB foo 3\r\nabc\r\n")
    p = NatsParser()
    p.receive_data(data)
    data[11:14] = b"xyz"  # the caller reuses its buffer: our payload must not change
    assert p.events() == [(OP_PUB, "foo", None, b"abc")]
    p.receive_data(memoryview(b"PING\r\n"))
    assert p.events() == [(OP_PING,)]


@pytest.mark.parametrize("op", [b"pub", b"Pub", b"pUb", b"PUB"])
def test_op_names_case_insensitive(op):
    assert whole(op + b" foo 1\r\nx\r\n") == ([(OP_PUB, "foo", None, b"x")], None)


def test_all_op_names_case_insensitive():
    data = (b'connect {}\r\nPing\r\npONG\r\nsub a 1\r\nSuB a q 2\r\nunsub 1\r\nUnSub 2 3\r\n'
            b"hpub a 12 13\r\nNATS/1.0\r\n\r\nx\r\n+ok\r\ninfo {}\r\n")
    evs, err = same_everywhere(data)
    assert err is None
    assert evs == [(OP_CONNECT, {}), (OP_PING,), (OP_PONG,), (OP_SUB, "a", None, "1"), (OP_SUB, "a", "q", "2"),
                   (OP_UNSUB, "1", None), (OP_UNSUB, "2", 3), (OP_HPUB, "a", None, b"NATS/1.0\r\n\r\n", b"x")]


# nats-server server/parser_test.go TestParsePubArg: every one of these is subject "foo"/"a", size 22 etc.
PUB_ARGS = [
    ("a 2", "a", None, 2), ("foo 22", "foo", None, 22), (" foo 22", "foo", None, 22),
    ("foo 22 ", "foo", None, 22), ("foo   22", "foo", None, 22), (" foo   22 ", "foo", None, 22),
    ("foo bar 22", "foo", "bar", 22), ("  foo   bar  22  ", "foo", "bar", 22),
    ("a\t2", "a", None, 2), ("\tfoo\t22\t", "foo", None, 22), ("foo\t\t\t22", "foo", None, 22),
    ("foo\tbar\t22", "foo", "bar", 22), ("\t \tfoo\t \t \tbar\t \t22\t \t", "foo", "bar", 22),
    ("\t\tfoo\t\t\tbar\t\t2222\t\t", "foo", "bar", 2222), ("\t \tfoo\t \t \t\t\t2222\t \t", "foo", None, 2222),
]


@pytest.mark.parametrize("arg, subject, reply, size", PUB_ARGS)
def test_pub_args_spaces_and_tabs(arg, subject, reply, size):
    payload = bytes(range(256))[:size] if size < 256 else b"z" * size
    data = b"PUB " + arg.encode() + b"\r\n" + payload + b"\r\n"
    assert whole(data) == ([(OP_PUB, subject, reply, payload)], None)
    hdata = b"HPUB\t" + re.sub(r"(\d+)", r"2 \1", arg).encode() + b"\r\n"  # header size 2 before the total
    assert whole(hdata + payload + b"\r\n") == ([(OP_HPUB, subject, reply, payload[:2], payload[2:])], None)


def test_sub_unsub_connect_blanks():
    data = (b"SUB\t foo \t q\t 9 \r\nUNSUB \t9\t 5 \r\nCONNECT{}\r\nCONNECT \t {\"echo\":false}\r\n"
            b"PING  extra junk\r\nPONG\t\r\n")
    assert same_everywhere(data) == ([(OP_SUB, "foo", "q", "9"), (OP_UNSUB, "9", 5), (OP_CONNECT, {}),
                                      (OP_CONNECT, {"echo": False}), (OP_PING,), (OP_PONG,)], None)


def test_bare_lf_ends_control_lines():
    # parser.go: "\n" ends a line; a "\r" before it is dropped when present.
    data = b"PUB foo 3\nabc\r\nSUB foo 1\nPING\nPONG\nUNSUB 1\nCONNECT {}\n"
    assert same_everywhere(data) == ([(OP_PUB, "foo", None, b"abc"), (OP_SUB, "foo", None, "1"), (OP_PING,),
                                      (OP_PONG,), (OP_UNSUB, "1", None), (OP_CONNECT, {})], None)


def test_first_argument_byte_is_never_the_line_end():
    # parser.go enters PUB_ARG on the first non-blank byte without looking at it, so a "\n" there is
    # part of the argument and the line runs to the next "\n".
    assert whole(b"PUB \nfoo 1\r\nx\r\n") == ([(OP_PUB, "\nfoo", None, b"x")], None)
    assert whole(b"CONNECT\n{}\r\n") == ([(OP_CONNECT, {})], None)


def test_payload_may_hold_anything():
    payload = b"PUB x 1\r\n\r\n\n\r" + bytes(range(256))
    data = b"PUB foo %d\r\n" % len(payload) + payload + b"\r\nPING\r\n"
    assert same_everywhere(data) == ([(OP_PUB, "foo", None, payload), (OP_PING,)], None)


def test_client_info_and_ok_are_accepted_silently():
    assert same_everywhere(b'INFO {"server_id":"x"}\r\n+OK\r\nPING\r\n') == ([(OP_PING,)], None)


def test_unsub_max_that_is_not_a_positive_number_means_now():
    # client.go processUnsub: max = parseSize(args[1]); only max > 0 is kept, no error otherwise.
    assert whole(b"UNSUB 1 abc\r\nUNSUB 2 0\r\nUNSUB 3 -5\r\nUNSUB 4 7\r\n") == (
        [(OP_UNSUB, "1", None), (OP_UNSUB, "2", None), (OP_UNSUB, "3", None), (OP_UNSUB, "4", 7)], None)


def test_non_utf8_subjects_round_trip_to_msg():
    subject = b"caf\xc3\xa9.\xff\xfe"  # valid UTF-8, then two bytes that are not
    evs, err = whole(b"PUB " + subject + b" r\x80 2\r\nhi\r\nSUB " + subject + b" q\x81 s\x82\r\n")
    assert err is None
    (_, s, reply, payload), (_, sub_s, queue, sid) = evs
    assert s == sub_s and s.startswith("café.")
    assert enc.msg(s, sid, reply, payload) == b"MSG " + subject + b" s\x82 r\x80 2\r\nhi\r\n"
    assert queue.encode("utf-8", "surrogateescape") == b"q\x81"


def test_connect_options():
    evs, err = whole(b'CONNECT {"verbose":true,"protocol":1,"user":null,"unknown":[1,{"x":1e999}]}\r\n')
    assert err is None and evs == [(OP_CONNECT, {"verbose": True, "protocol": 1, "user": None,
                                                 "unknown": [1, {"x": float("inf")}]})]
    assert whole(b"CONNECT null\r\n") == ([(OP_CONNECT, {})], None)
    # Go's json matches struct fields case-insensitively; we report the canonical names
    assert whole(b'CONNECT {"Verbose":true,"NAME":"n","Other":1}\r\n') == (
        [(OP_CONNECT, {"verbose": True, "name": "n", "Other": 1})], None)
    # integers beyond 64 bits in fields Go ignores are fine for Go (orjson alone would refuse them)
    assert whole(b'CONNECT {"x":123456789012345678901234567890}\r\n')[1] is None


def test_max_payload_is_settable_and_no_limit():
    p = NatsParser(max_payload=10)
    p.receive_data(b"PUB a 10\r\n0123456789\r\n")
    assert p.events() == [(OP_PUB, "a", None, b"0123456789")]
    p.max_payload = 20
    p.receive_data(b"PUB a 20\r\n" + b"x" * 20 + b"\r\n")
    assert len(p.events()) == 1
    p.max_payload = NO_LIMIT
    p.receive_data(b"PUB a 999999999\r\n")
    assert p.events() == []  # accepted, waiting for the payload


def test_defaults_are_nats_servers():
    assert MAX_CONTROL_LINE_SIZE == 4096 and MAX_PAYLOAD_SIZE == 1024 * 1024
    p = NatsParser()
    assert p.max_payload == MAX_PAYLOAD_SIZE and p.max_control_line == MAX_CONTROL_LINE_SIZE


def test_large_payload_in_chunks_joins_once():
    size = MAX_PAYLOAD_SIZE
    data = b"PUB big %d\r\n" % size + b"x" * size + b"\r\nPING\r\n"
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    p = NatsParser()
    got = []
    for c in chunks[:-1]:
        p.receive_data(c)
        got += p.events()
        assert got == []
        assert len(p._chunks) <= len(chunks)  # waiting: chunks are not joined on every read
    p.receive_data(chunks[-1])
    got += p.events()
    assert got == [(OP_PUB, "big", None, b"x" * size), (OP_PING,)]


def test_shared_fast_path_cache_respects_each_parsers_limits():
    line = b"PUB cached.subject 100\r\n" + b"x" * 100 + b"\r\n"
    assert whole(line * 2)[1] is None  # now cached
    evs, err = whole(line, max_payload=50)
    assert evs == [] and err.message == ERR_MAX_PAYLOAD
    evs, err = whole(line, max_control_line=10)
    assert evs == [] and err.message == ERR_MAX_CONTROL_LINE


def test_cache_is_bounded():
    for i in range(nats_parser.PUB_LINE_CACHE_SIZE + 10):
        whole(b"PUB s.%d 0\r\n\r\n" % i)
    assert len(nats_parser._PUB_LINES) <= nats_parser.PUB_LINE_CACHE_SIZE


# -- errors --------------------------------------------------------------------------------------------
# nats-server server/parser_test.go TestShouldFail: each must fail.
SHOULD_FAIL = [
    b"xxx", b"Px", b"PIx", b"PINx", b" PING", b"POx", b"PONx", b"+x", b"+Ox", b"-x", b"-Ex", b"-ERx", b"-ERRx",
    b"Cx", b"COx", b"CONx", b"CONNx", b"CONNEx", b"CONNECx", b"CONNECT \r\n", b"PUx", b"PUB foo\r\n",
    b"PUB  \r\n", b"PUB foo bar       \r\n", b"PUB foo 2\r\nok \r\n", b"PUB foo 2\r\nok\r \n", b"Sx", b"SUx",
    b"SUB\r\n", b"SUB  \r\n", b"SUB foo\r\n", b"SUB foo bar baz 22\r\n", b"Ux", b"UNx", b"UNSx", b"UNSUx",
    b"UNSUBx", b"UNSUBUNSUB 1\r\n", b"UNSUB_2\r\n", b"UNSUB_UNSUB_UNSUB 2\r\n", b"UNSUB_\t2\r\n", b"UNSUB\r\n",
    b"UNSUB \r\n", b"UNSUB          \t       \r\n", b"Ix", b"INx", b"INFx", b"INFO  \r\n",
    # and from a client, anything server-to-server or server-to-client
    b"M", b"MSG foo 1 2\r\nhi\r\n", b"HMSG foo 1 2 2\r\nhi\r\n", b"RS+ foo\r\n", b"A+ foo\r\n", b"LS+ foo\r\n",
]


@pytest.mark.parametrize("data", SHOULD_FAIL, ids=[repr(d)[2:-1][:30] for d in SHOULD_FAIL])
def test_nats_server_should_fail_list(data):
    err = error_of(data)
    assert err.fatal


# (input, message, send_err): send_err=False means nats-server logs `message` and closes without -ERR.
ERRORS = [
    (b"FOO bar\r\n", ERR_UNKNOWN_OP, True),
    (b"PUBLISH foo 1\r\n", ERR_UNKNOWN_OP, True),
    (b"PINX\r\n", ERR_UNKNOWN_OP, True),
    (b"PUB foo 2\r\nabc\r\n", ERR_UNKNOWN_OP, True),  # payload longer than announced
    (b"PUB foo 2\r\nab\n", ERR_UNKNOWN_OP, True),  # payload must end with exactly \r\n
    (b"PUB foo 2\r\nabXY", ERR_UNKNOWN_OP, True),
    (b"PUB foo\r\n", 'processPub Parse Error: "foo"', False),
    (b"PUB foo bar baz 1\r\n", 'processPub Parse Error: "foo bar baz 1"', False),
    (b"PUB foo bar\r\n", 'processPub Bad or Missing Size: "foo bar"', False),
    (b"PUB foo -1\r\n", 'processPub Bad or Missing Size: "foo -1"', False),
    (b"PUB foo +1\r\n", 'processPub Bad or Missing Size: "foo +1"', False),
    (b"PUB foo 1234567890\r\n", 'processPub Bad or Missing Size: "foo 1234567890"', False),
    (b"PUB foo 3333333333333333333333333333333333333333333\r\n",
     'processPub Bad or Missing Size: "foo 3333333333333333333333333333333333333333333"', False),
    (b"PUB foo 1048577\r\n", ERR_MAX_PAYLOAD, True),
    (b"PUB foo 999999999\r\n", ERR_MAX_PAYLOAD, True),
    (b"HPUB foo 2\r\n", 'processHeaderPub Parse Error: "foo 2"', False),
    (b"HPUB foo x 2\r\n", 'processHeaderPub Bad or Missing Header Size: "foo x 2"', False),
    (b"HPUB foo 2 x\r\n", 'processHeaderPub Bad or Missing Total Size: "foo 2 x"', False),
    (b"HPUB foo 12 10\r\n", 'processHeaderPub Header Size larger then TotalSize: "foo 12 10"', False),
    (b"HPUB foo r 12 10\r\n", 'processHeaderPub Header Size larger then TotalSize: "foo r 12 10"', False),
    (b"HPUB foo 2 1048577\r\n", ERR_MAX_PAYLOAD, True),
    (b"SUB foo\r\n", 'processSub Parse Error: "foo"', False),
    (b"SUB foo q 1 extra\r\n", 'processSub Parse Error: "foo q 1 extra"', False),
    (b"UNSUB\t\r\n", 'processUnsub Parse Error: "\\r"', False),
    (b"UNSUB 1 2 3\r\n", 'processUnsub Parse Error: "1 2 3"', False),
    (b"-ERR 'boom'\r\n", "Client Error 'boom'", False),
]


@pytest.mark.parametrize("data, message, send_err", ERRORS)
def test_errors_exact_text_and_close(data, message, send_err):
    err = error_of(data)
    assert (err.message, str(err), err.fatal, err.send_err) == (message, message, True, send_err)
    assert err.wire == (b"-ERR '" + message.encode() + b"'\r\n" if send_err else b"")


@pytest.mark.parametrize("data", [
    b"CONNECT {\r\n", b"CONNECT {'a':1}\r\n", b"CONNECT []\r\n", b"CONNECT 1\r\n", b"CONNECT {} x\r\n",
    b'CONNECT {"verbose":"yes"}\r\n', b'CONNECT {"protocol":1.5}\r\n', b'CONNECT {"protocol":true}\r\n',
    b'CONNECT {"name":1}\r\n', b'CONNECT {"VERBOSE":1}\r\n', b"CONNECT {\"a\":NaN}\r\n", b"CONNECT\r\n",
    b"INFO {\r\n", b"INFO [1]\r\n",
])
def test_connect_and_info_bad_json_close_without_err(data):
    # client.go processConnect/processInfo return the json error; readLoop logs it and closes.
    err = error_of(data)
    assert err.fatal and not err.send_err and err.wire == b""
    assert err.message.startswith(("processConnect", "processInfo"))


def test_payload_over_max_is_raised_at_the_control_line():
    p = NatsParser(max_payload=100)
    p.receive_data(b"PING\r\nPUB foo 101\r\n")  # the payload has not arrived
    evs = p.events()
    assert evs[0] == (OP_PING,)
    assert evs[1][0] == OP_ERROR and evs[1][1].message == ERR_MAX_PAYLOAD and evs[1][1].send_err


def test_max_control_line():
    mcl = 16
    ok = b"PUB " + b"s" * (mcl - 2) + b" 0\r\n\r\n"  # argument of exactly mcl bytes
    assert whole(ok, max_control_line=mcl)[1] is None
    over = b"PUB " + b"s" * (mcl - 1) + b" 0\r\n\r\n"
    assert error_of(over, max_control_line=mcl).message == ERR_MAX_CONTROL_LINE
    # an incomplete line is checked too: no "\n" ever arrives
    p = NatsParser(max_control_line=mcl)
    p.receive_data(b"SUB " + b"x" * mcl)
    assert p.events() == []
    p.receive_data(b"x")
    (op, err), = p.events()
    assert op == OP_ERROR and err.message == ERR_MAX_CONTROL_LINE and err.fatal and err.send_err
    assert err.wire == b"-ERR 'maximum control line exceeded'\r\n"


@pytest.mark.parametrize("data", [b"CONNECT {}" + b" " * 70 + b"\r\n", b"SUB " + b"a" * 65 + b" 1\r\n"],
                         ids=["connect", "sub"])
def test_long_lines(data):
    assert error_of(data, max_control_line=64).message == ERR_MAX_CONTROL_LINE


def test_long_lines_default_limit():
    assert whole(b"SUB " + b"a" * 4094 + b" 1\r\n") == ([(OP_SUB, "a" * 4094, None, "1")], None)
    for data in (b"SUB " + b"a" * 4095 + b" 1\r\n", b"PUB " + b"a" * 4097):
        assert whole(data)[1].message == ERR_MAX_CONTROL_LINE
        assert feed([data[:3000], data[3000:]])[1].message == ERR_MAX_CONTROL_LINE


@pytest.mark.parametrize("data, event", [
    (b"PING" + b" x" * 40 + b"\r\n", (OP_PING,)),
    (b"PONG" + b"\t" * 80 + b"\r\n", (OP_PONG,)),
    (b"+OK" + b"x" * 80 + b"\r\nPING\r\n", (OP_PING,)),
    (b"PUB" + b" \t" * 40 + b"foo 0\r\n\r\n", (OP_PUB, "foo", None, b"")),
    (b"SUB" + b" " * 80 + b"foo 1\r\n", (OP_SUB, "foo", None, "1")),
    (b"CONNECT" + b" " * 80 + b"{}\r\n", (OP_CONNECT, {})),
], ids=["ping", "pong", "ok", "pub", "sub", "connect"])
def test_ignored_bytes_have_no_cap(data, event):
    # parser.go skips blanks after an op name and everything after PING/PONG/+OK without a cap.
    assert same_everywhere(data, max_control_line=16) == ([event], None)


def test_ignored_bytes_are_not_kept():
    p = NatsParser()
    p.receive_data(b"PING")
    for _ in range(100):
        p.receive_data(b" " * 10_000)
        assert p.events() == [] and p.buffered <= 10_005
    p.receive_data(b"\r\nSUB")
    for _ in range(100):
        p.receive_data(b"\t" * 10_000)
        assert p.events() == [(OP_PING,)] * (_ == 0) and p.buffered <= 10_005
    p.receive_data(b"a 1\r\n")
    assert p.events() == [(OP_SUB, "a", None, "1")]


def test_unknown_op_is_raised_as_soon_as_the_byte_arrives():
    p = NatsParser()
    p.receive_data(b"PUB foo 1\r\nx\r\nPX")  # no "\n" yet: nats-server rejects at the "X"
    evs = p.events()
    assert evs[0] == (OP_PUB, "foo", None, b"x")
    assert evs[1][0] == OP_ERROR and evs[1][1].message == ERR_UNKNOWN_OP


def test_good_events_come_before_the_error_then_the_parser_is_dead():
    p = NatsParser()
    p.receive_data(b"SUB a 1\r\nPUB a 1\r\nx\r\nBAD\r\nPING\r\n")
    evs = p.events()
    assert evs[:2] == [(OP_SUB, "a", None, "1"), (OP_PUB, "a", None, b"x")]
    assert evs[2][0] == OP_ERROR
    err = evs[2][1]
    assert p.error is err
    for call in (p.events, p.next_event, lambda: p.receive_data(b"PING\r\n")):
        with pytest.raises(NatsProtocolError) as ei:
            call()
        assert ei.value is err
    assert len(evs) == 3  # nothing after the error


def test_error_after_events_in_every_split():
    data = b"SUB a 1\r\nPUB a 3\r\nabc\r\nPUB a 1\r\nxy\r\nPING\r\n"
    evs, err = same_everywhere(data)
    assert evs == [(OP_SUB, "a", None, "1"), (OP_PUB, "a", None, b"abc")]
    assert err.message == ERR_UNKNOWN_OP


def test_error_is_a_protocol_error():
    from omnibus.wire._common.errors import ProtocolError
    err = error_of(b"X")
    assert isinstance(err, ProtocolError) and repr(err).startswith("NatsProtocolError(")


# -- properties ----------------------------------------------------------------------------------------
_token = st.text(alphabet="abcXYZ019_-$", min_size=1, max_size=8)
_subject = st.lists(_token, min_size=1, max_size=4).map(".".join)
_blank = st.text(alphabet=" \t", min_size=1, max_size=3).map(str.encode)
_eol = st.sampled_from([b"\r\n", b"\n"])


def _case(word: bytes, flips: list[bool]) -> bytes:
    return bytes(c ^ 0x20 if f and chr(c).isalpha() else c for c, f in zip(word, flips + [False] * 10))


@st.composite
def ops(draw):
    """One valid op with random spelling: (bytes, expected events)."""
    kind = draw(st.sampled_from(["PUB", "HPUB", "SUB", "UNSUB", "PING", "PONG", "CONNECT", "INFO", "+OK"]))
    name = _case(kind.encode(), draw(st.lists(st.booleans(), max_size=8)))
    sp = lambda: draw(_blank)  # noqa: E731
    eol = draw(_eol)
    subject = draw(_subject)
    if kind in ("PUB", "HPUB"):
        reply = draw(st.none() | _subject)
        payload = draw(st.binary(max_size=40))
        r = b"" if reply is None else reply.encode() + sp()
        if kind == "PUB":
            line = name + sp() + subject.encode() + sp() + r + b"%d" % len(payload)
            return line + eol + payload + b"\r\n", [(OP_PUB, subject, reply, payload)]
        headers = b"NATS/1.0\r\n" + draw(st.binary(max_size=10)) + b"\r\n\r\n"
        line = name + sp() + subject.encode() + sp() + r + b"%d" % len(headers) + sp() + \
            b"%d" % (len(headers) + len(payload))
        return line + eol + headers + payload + b"\r\n", [(OP_HPUB, subject, reply, headers, payload)]
    if kind == "SUB":
        queue = draw(st.none() | _token)
        sid = draw(_token)
        q = b"" if queue is None else queue.encode() + sp()
        return name + sp() + subject.encode() + sp() + q + sid.encode() + eol, [(OP_SUB, subject, queue, sid)]
    if kind == "UNSUB":
        sid = draw(_token)
        mx = draw(st.none() | st.integers(1, 10**6))
        m = b"" if mx is None else sp() + b"%d" % mx
        return name + sp() + sid.encode() + m + eol, [(OP_UNSUB, sid, mx)]
    if kind in ("CONNECT", "INFO"):
        opts = draw(st.dictionaries(st.sampled_from(["verbose", "pedantic", "echo", "headers"]), st.booleans()))
        import json
        body = name + draw(st.sampled_from([b"", b" ", b"\t "])) + json.dumps(opts).encode() + eol
        return body, ([(OP_CONNECT, opts)] if kind == "CONNECT" else [])
    return name + draw(st.sampled_from([b"", b" ", b" junk"])) + eol, \
        {"PING": [(OP_PING,)], "PONG": [(OP_PONG,)], "+OK": []}[kind]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops(), min_size=1, max_size=12), st.lists(st.integers(0, 2000), max_size=6))
def test_valid_streams_any_split_same_events(op_list, cuts):
    data = b"".join(d for d, _ in op_list)
    expected = [e for _, evs in op_list for e in evs]
    assert whole(data) == (expected, None)
    assert general_only(data) == (expected, None)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[i:j] for i, j in zip([0] + points, points + [len(data)])]
    assert feed(chunks) == (expected, None)


_FRAGMENTS = [
    b"PUB ", b"pub ", b"HPUB ", b"SUB ", b"UNSUB ", b"PING", b"PONG", b"CONNECT ", b"INFO ", b"+OK", b"-ERR ",
    b"foo", b"a.b", b" ", b"\t", b"\r\n", b"\n", b"\r", b"0", b"1", b"5", b"12", b"22", b"-1", b"{}", b"{",
    b"NATS/1.0\r\n\r\n", b"\x00", b"\xff", b"x",
]
_fragments = st.sampled_from(_FRAGMENTS)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=6) | _fragments, max_size=30), st.lists(st.integers(0, 500), max_size=5),
       st.integers(4, 64), st.integers(0, 32))
def test_random_bytes_only_events_or_protocol_errors(parts, cuts, mcl, max_payload):
    data = b"".join(parts)
    ref = whole(data, max_control_line=mcl, max_payload=max_payload)  # raises on anything unexpected
    evs, _ = ref
    for ev in evs:
        assert isinstance(ev, tuple) and ev[0] in (OP_CONNECT, OP_PUB, OP_HPUB, OP_SUB, OP_UNSUB, OP_PING,
                                                   OP_PONG)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[i:j] for i, j in zip([0] + points, points + [len(data)])]
    assert _norm(feed(chunks, max_control_line=mcl, max_payload=max_payload)) == _norm(ref)
    assert _norm(bytewise(data, max_control_line=mcl, max_payload=max_payload)) == _norm(ref)
    assert _norm(general_only(data, max_control_line=mcl, max_payload=max_payload)) == _norm(ref)


def test_every_triple_of_fragments():
    """Exhaustive over short streams: no exception but NatsProtocolError, and the same result whether
    fed whole or cut at a fragment boundary."""
    for a in _FRAGMENTS:
        for b in _FRAGMENTS:
            for c in _FRAGMENTS:
                data = a + b + c
                ref = _norm(whole(data, max_control_line=8))
                assert _norm(general_only(data, max_control_line=8)) == ref, data
                assert _norm(feed([a, b + c], max_control_line=8)) == ref, data
                assert _norm(feed([a + b, c], max_control_line=8)) == ref, data


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"PUB", b"HPUB"]), _subject, st.none() | _subject,
                          st.binary(max_size=20), st.integers(0, 12)), min_size=1, max_size=10),
       st.integers(0, 40), st.integers(8, 64))
def test_fast_paths_agree_with_the_reference_path(pubs, max_payload, mcl):
    """Upper-case, single-spaced PUB/HPUB (the fast paths' shape, cached or not) against _general alone,
    with limits that some of them break."""
    data = b""
    for op, subject, reply, payload, hdr in pubs:
        r = b"" if reply is None else reply.encode() + b" "
        if op == b"PUB":
            data += b"PUB %b %b%d\r\n%b\r\n" % (subject.encode(), r, len(payload), payload)
        else:
            data += b"HPUB %b %b%d %d\r\n%b\r\n" % (subject.encode(), r, hdr, len(payload), payload)
    for _ in range(2):  # the second time, lines without reply come from the cache
        ref = _norm(general_only(data, max_payload=max_payload, max_control_line=mcl))
        assert _norm(whole(data, max_payload=max_payload, max_control_line=mcl)) == ref


def test_a_payload_trickling_in_keeps_few_chunks():
    p = NatsParser()
    data = b"PUB a 50000\r\n" + b"x" * 50000 + b"\r\n"
    for i in range(len(data) - 1):
        p.receive_data(data[i:i + 1])
        assert p.events() == []
        assert len(p._chunks) <= 2 + i // 4096
    p.receive_data(data[-1:])
    assert p.events() == [(OP_PUB, "a", None, b"x" * 50000)]
