"""The AMQP codec pieces without a connection (omnibus.wire.amqp fields, methods, properties, frames,
errors), no event loop. pamqp 3.x serves as an independent encoder/decoder; expected error texts were
recorded from a real RabbitMQ 3.10.8 (Erlang/OTP 25) on loopback.
"""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st
from pamqp import commands as pc
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import body as pbody

from omnibus.wire.amqp import errors, fields, frames, methods as M, properties as P
from omnibus.wire.amqp.errors import AMQPError, Atom, erl_w, frame_error_text, unexpected_frame_text


# -- field tables ------------------------------------------------------------------------------------
def entry(key: bytes, tag: bytes, raw: bytes) -> bytes:
    return bytes((len(key),)) + key + tag + raw


TYPE_CASES = [  # (tag, raw value bytes, decoded value) for every type RabbitMQ reads
    (b"t", b"\x01", True), (b"t", b"\x00", False), (b"t", b"\x07", True),
    (b"b", b"\xff", -1), (b"B", b"\xff", 255),
    (b"s", b"\xff\xfe", -2), (b"u", b"\xff\xfe", 65534),
    (b"I", b"\xff\xff\xff\xfe", -2), (b"i", b"\xff\xff\xff\xfe", 4294967294),
    (b"l", b"\xff" * 8, -1), (b"L", b"\xff" * 8, -1),  # errata: both signed 64-bit in RabbitMQ
    (b"f", struct.pack(">f", 1.5), 1.5), (b"d", struct.pack(">d", -2.25), -2.25),
    (b"D", b"\x02\x00\x00\x00\x96", Decimal("1.50")),
    (b"S", b"\x00\x00\x00\x03abc", "abc"), (b"S", b"\x00\x00\x00\x02\xff\xfe", "\udcff\udcfe"),
    (b"T", b"\x00\x00\x00\x00\x65\x00\x00\x00", fields.Timestamp(1694498816)),
    (b"F", b"\x00\x00\x00\x05" + entry(b"k", b"V", b"") + b"\x00V", {"k": None, "": None}),
    (b"A", b"\x00\x00\x00\x07" + b"b\x01" + b"S\x00\x00\x00\x00", [1, ""]),
    (b"x", b"\x00\x00\x00\x02\x00\x01", b"\x00\x01"),
    (b"V", b"", None),
]


@pytest.mark.parametrize("tag, raw, value", TYPE_CASES)
def test_every_field_type_decodes_as_rabbitmq(tag, raw, value):
    body = entry(b"key", tag, raw)
    got = fields.decode_table(body)
    assert got == {"key": value}
    assert type(got["key"]) is type(value) or (tag == b"T" and isinstance(got["key"], fields.Timestamp))
    assert fields.decode_array(tag + raw) == [value]


@pytest.mark.parametrize("tag, raw, value", TYPE_CASES)
def test_every_decoded_value_encodes_back_to_a_value_that_decodes_the_same(tag, raw, value):
    enc = fields.encode_table({"key": value})
    assert fields.decode_table(enc, 4) == {"key": value}
    if tag in (b"t", b"l", b"d", b"D", b"S", b"T", b"F", b"A", b"x", b"V") and tag != b"A" and tag != b"F":
        assert enc[4:] == entry(b"key", tag, raw) or tag == b"t"  # t\x07 comes back as t\x01


@pytest.mark.parametrize("tag", [b"U", b"Z", b"c", b"\x00"])
def test_types_rabbitmq_does_not_read_are_errors(tag):
    with pytest.raises(fields.FieldError):
        fields.decode_table(entry(b"a", tag, b"\x00\x01"))


@pytest.mark.parametrize("body", [
    entry(b"a", b"S", b"\x00\x00\x00\x09abc"),  # string past the end
    entry(b"a", b"I", b"\x00\x01"),  # truncated int
    b"\x05ab",  # key past the end
    entry(b"a", b"F", b"\x00\x00\x00\x04\x01xV"),  # nested table past the end
    b"\x01a",  # no type
])
def test_truncated_tables_are_errors(body):
    with pytest.raises(fields.FieldError):
        fields.decode_table(body)


def test_repeated_key_keeps_the_first_value_as_rabbitmq_lookup_does():
    assert fields.decode_table(entry(b"a", b"b", b"\x01") + entry(b"a", b"b", b"\x02")) == {"a": 1}


def test_typed_values_and_python_types_encode():
    raw = fields.encode_table({"i": fields.Typed("I", -5), "u": fields.Typed("u", 7), "n": None,
                               "ts": fields.Timestamp(5), "l": [1, "x"], "t": {"a": True}})
    assert fields.decode_table(raw, 4) == {"i": -5, "u": 7, "n": None, "ts": 5, "l": [1, "x"], "t": {"a": True}}
    assert b"\x01iI\xff\xff\xff\xfb" in raw and b"\x01uu\x00\x07" in raw
    with pytest.raises(fields.FieldError):
        fields.encode_table({"x": object()})
    with pytest.raises(fields.FieldError):
        fields.encode_table({"x": 1 << 70})


def test_pamqp_encoded_tables_decode_the_same():
    table = {"s": "str", "i": 5, "i2": 70000, "f": 1.25, "b": True, "n": None,
             "nested": {"a": [1, 2, "x"]}}
    from pamqp import encode as penc
    raw = penc.field_table(table)
    got = fields.decode_table(raw, 4)
    assert got == table


@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20))
@settings(max_examples=200, deadline=None)
def test_table_round_trip_property(value):
    raw = fields.encode_table({"v": value})
    assert fields.decode_table(raw, 4) == {"v": value}


@given(st.binary(max_size=64))
@settings(max_examples=400, deadline=None)
def test_random_table_bytes_decode_or_raise_field_error(data):
    try:
        fields.decode_table(data)
    except fields.FieldError:
        pass


# -- methods -----------------------------------------------------------------------------------------
def sample(spec: M.MethodSpec):
    vals = []
    for i, (name, typ) in enumerate(spec.args):
        if name == "ticket":
            vals.append(0)
            continue
        vals.append({"octet": 7, "short": 300 + i, "long": 70000 + i, "longlong": (1 << 40) + i, "timestamp": 5,
                     "bit": i % 2 == 0, "shortstr": f"s{i}", "longstr": b"\x00long" + bytes([i]),
                     "table": {"k": i, "x": "y"}}[typ])
    return spec.cls(*vals)


@pytest.mark.parametrize("spec", list(M.METHODS.values()), ids=lambda s: s.name)
def test_every_method_round_trips(spec):
    m = sample(spec)
    payload = M.encode_method(m)
    assert payload[:4] == struct.pack(">HH", spec.class_id, spec.method_id)
    assert M.decode_method(payload) == m
    assert type(m).CLASS_ID == spec.class_id and M.method_spec(m) is spec


def test_method_count_and_defaults():
    assert len(M.METHODS) == 66
    assert M.QueueDeclare(queue="q").arguments == {}
    assert M.BasicReject(1).requeue is True and M.BasicNack().requeue is True
    assert M.ConnectionStart(server_properties={}).version_minor == 9


def _pamqp_classes():
    out = []
    for spec in M.METHODS.values():
        cls_name, _, meth = spec.name.partition(".")
        pcls = getattr(getattr(pc, cls_name.capitalize(), None), "".join(p.capitalize() for p in meth.split("-")), None)
        if pcls is not None:
            out.append((spec, pcls))
    return out


@pytest.mark.parametrize("spec, pcls", _pamqp_classes(), ids=lambda x: getattr(x, "name", ""))
def test_pamqp_encodes_what_we_decode_and_back(spec, pcls):
    ours = sample(spec)
    # Reserved fields, with the only values pamqp accepts for them.
    reserved = {"out_of_band": "0", "channel_id": "0", "known_hosts": "", "cluster_id": "", "capabilities": "",
                "insist": False}
    ours = ours._replace(**{f: (v.encode() if isinstance(getattr(ours, f), bytes) and isinstance(v, str) else v)
                            for f, v in reserved.items() if f in ours._fields})
    kwargs = {}
    for (name, typ), v in zip(spec.args, ours):
        pname = {"global_": "global_"}.get(name, name)
        if pname == "type":
            pname = "exchange_type"
        kwargs[pname] = v.decode("latin-1") if typ == "longstr" and spec.name != "connection.start" else v
    if spec.name == "connection.start":
        kwargs["mechanisms"] = "PLAIN"; kwargs["locales"] = "en_US"
    pm = pcls(**kwargs)
    raw = pframe.marshal(pm, 1)
    ftype, ch, size = struct.unpack_from(">BHI", raw)
    decoded = M.decode_method(raw[7:7 + size])
    # and our encoding is read back by pamqp to the same attributes
    ours_raw = frames.method_frame(1, decoded)
    _, _, back = pframe.unmarshal(ours_raw)
    for name, _ in spec.args:
        assert getattr(decoded, name) is not None
        pv = getattr(back, name, None)
        if isinstance(pv, (bytes, str)) and isinstance(getattr(decoded, name), (bytes, str)):
            a = pv.encode("latin-1") if isinstance(pv, str) and isinstance(getattr(decoded, name), bytes) else pv
            b = getattr(decoded, name)
            assert (a if not isinstance(a, bytes) else a) == b or str(a) == str(b)


def test_bits_pack_into_one_octet_in_order():
    raw = M.encode_method(M.QueueDeclare(queue="q", passive=True, exclusive=True, nowait=True))
    assert raw[-5] == 0b10101 and raw[-4:] == b"\x00\x00\x00\x00"


def test_cannot_decode_text_matches_rabbitmq():
    # recorded: queue.declare with one trailing byte
    payload = M.encode_method(M.QueueDeclare(queue="q1")) + b"\x00"
    with pytest.raises(AMQPError) as e:
        M.decode_method(payload)
    assert (e.value.reply_code, e.value.reply_text, e.value.class_id, e.value.method_id) == (
        501, "FRAME_ERROR - cannot decode <<0,0,2,113,49,0,0,0,0,0,0>>", 50, 10)


def test_malformed_utf8_in_shortstr_of_a_non_content_method():
    payload = b"\x00\x32\x00\x0a\x00\x00\x02\xff\xfe\x00\x00\x00\x00\x00"
    with pytest.raises(AMQPError) as e:
        M.decode_method(payload)
    assert (e.value.reply_code, e.value.reply_text, e.value.class_id) == (
        501, "FRAME_ERROR - Malformed UTF-8 in shortstr", 0)
    # content methods are not checked: bytes come back unchanged
    pub = M.decode_method(b"\x00\x3c\x00\x28\x00\x00\x00\x02\xff\xfe\x00")
    assert pub.routing_key.encode("utf-8", "surrogateescape") == b"\xff\xfe"


def test_long_reply_text_is_cut_to_255_bytes():
    err = errors.amqp_error(501, "cannot decode " + erl_w(bytes(131068)), 50, 10)
    assert len(err.reply_text.encode()) == 255 and err.reply_text.endswith(",...")


# -- Erlang term rendering (texts recorded from RabbitMQ 3.10.8 / erl 25) ---------------------------------
RECORDED = [
    (frame_error_text(1, bytes([0, 50, 0, 10, 0, 0, 2, 113, 49, 0, 0, 0, 0, 0]),
                      (Atom("invalid_frame_end_marker"), 205)),
     "type 1, all octets = <<0,50,0,10,0,0,2,113,49,0,0,0,0,0>>: {invalid_frame_end_marker,\n"
     + " " * 60 + "205}"),
    (frame_error_text(1, b"", (Atom("frame_too_large"), 131073, 131064)),
     "type 1, all octets = <<>>: {frame_too_large,131073,131064}"),
    (frame_error_text(65, b"\x01\x02", Atom("unknown_frame")), "type 65, all octets = <<1,2>>: unknown_frame"),
    (frame_error_text(8, b"xx", Atom("unknown_frame")), 'type 8, all octets = <<"xx">>: unknown_frame'),
    (unexpected_frame_text(3, b"hello"), 'type 3, all octets = <<"hello">>'),
    (unexpected_frame_text(2, bytes([0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0])),
     "type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,5,0,0>>"),
    # from erl 25 directly
    (frame_error_text(1, bytes([104, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 32, 49, 50, 51, 0, 9]),
                      Atom("unknown_frame")),
     "type 1, first 16 octets = <<104,101,108,108,111,32,119,111,114,108,100,32,49,\n"
     + " " * 28 + "50,51,0>>: unknown_frame"),
    (unexpected_frame_text(3, b'h\nllo\t"\\'), 'type 3, all octets = <<"h\\nllo\\t\\"\\\\">>'),
]


@pytest.mark.parametrize("mine, expected", RECORDED)
def test_erlang_rendering_matches_recordings(mine, expected):
    assert mine == expected


# -- properties --------------------------------------------------------------------------------------
def test_properties_decode_pamqp_encoded():
    props = pc.Basic.Properties(content_type="text/plain", headers={"a": 1, "b": "x"}, delivery_mode=2,
                                priority=5, correlation_id="c", reply_to="r", expiration="1000", message_id="m",
                                timestamp=None, message_type="t", user_id="guest", app_id="app")
    raw = pframe.marshal(pheader.ContentHeader(0, 3, props), 1)[7 + 12:-1]
    got = P.decode_properties(raw)
    assert got == P.BasicProperties("text/plain", None, {"a": 1, "b": "x"}, 2, 5, "c", "r", "1000", "m", None,
                                    "t", "guest", "app", None)
    assert P.decode_properties(P.encode_properties(got)) == got


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x80\x00\x05ab", b"\x00\x01\x00\x00", b"\x00\x00xyz",
                                 b"\x20\x00\x00\x00\x00\x03\x01aZ"])
def test_bad_properties_raise_and_map_to_541(raw):
    with pytest.raises(P.PropertiesError):
        P.decode_properties(raw)
    err = P.properties_error()
    assert (err.reply_code, err.reply_text, err.class_id, err.method_id) == (541, "INTERNAL_ERROR", 0, 0)


def test_patch_headers_keeps_untouched_bytes_and_puts_new_first():
    original = P.encode_properties(content_type="a", headers={"keep": fields.Typed("I", 7), "BCC": ["x"]},
                                   expiration="5")
    patched = P.patch_headers(original, set={"x-death": [{"count": 1, "reason": "expired",
                                                         "time": fields.Timestamp(10)}]}, remove=["BCC"])
    props = P.decode_properties(patched)
    assert list(props.headers) == ["x-death", "keep"]
    assert props.headers["x-death"][0]["count"] == 1 and props.content_type == "a" and props.expiration == "5"
    assert b"\x04keepI\x00\x00\x00\x07" in patched  # kept as 'I', not re-encoded as 'l'
    assert P.decode_properties(P.patch_properties(patched, expiration=None)).expiration is None
    assert P.decode_properties(P.patch_headers(P.EMPTY_PROPERTIES, set={"a": 1})).headers == {"a": 1}


# -- frames ------------------------------------------------------------------------------------------
def split_frames(data: bytes):
    out = []
    while data:
        t, ch, n = struct.unpack_from(">BHI", data)
        assert data[7 + n] == 0xCE
        out.append((t, ch, data[7:7 + n]))
        data = data[8 + n:]
    return out


@pytest.mark.parametrize("size", [0, 1, 4087, 4088, 4089, 10000, 3 * 4088])
def test_deliver_splits_body_at_frame_max(size):
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    raw = frames.deliver(3, "ctag", 42, True, "ex", "rk", b"\x90\x00\x01a\x02", body, 4096)
    fr = split_frames(raw)
    assert all(8 + len(p) <= 4096 for _, _, p in fr)
    assert M.decode_method(fr[0][2]) == M.BasicDeliver("ctag", 42, True, "ex", "rk")
    assert fr[1][0] == 2 and struct.unpack_from(">HHQ", fr[1][2]) == (60, 0, size)
    assert fr[1][2][12:] == b"\x90\x00\x01a\x02"
    assert b"".join(p for t, _, p in fr[2:]) == body and all(t == 3 for t, _, _ in fr[2:])
    assert len(fr) == 2 + (size + 4087) // 4088
    # pamqp reads them back
    n, ch, m = pframe.unmarshal(raw)
    assert ch == 3 and m.delivery_tag == 42 and m.redelivered is True


def test_ack_nack_heartbeat_frames():
    assert frames.ack(1, 5, True) == frames.method_frame(1, M.BasicAck(5, True))
    assert frames.nack(2, 7, False, True) == frames.method_frame(2, M.BasicNack(7, False, True))
    assert frames.HEARTBEAT == b"\x08\x00\x00\x00\x00\x00\x00\xce"
    assert frames.get_ok(1, 1, False, "", "q", 3, b"\x00\x00", b"x", 4096).startswith(
        frames.method_frame(1, M.BasicGetOk(1, False, "", "q", 3)))
    assert frames.basic_return(1, 312, "NO_ROUTE", "ex", "rk", b"\x00\x00", b"", 4096) == \
        frames.method_frame(1, M.BasicReturn(312, "NO_ROUTE", "ex", "rk")) + \
        b"\x02\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x00" + bytes(8) + b"\x00\x00\xce"


def test_error_bytes():
    assert frames.error_bytes(AMQPError(501, "x", action=errors.SEND_HEADER_AND_DROP)) == frames.PROTOCOL_HEADER
    assert frames.error_bytes(AMQPError(504, "x", action=errors.DROP)) == b""
    ch = errors.amqp_error(406, "PRECONDITION_FAILED", 60, 40, channel=3)
    assert ch.scope == "channel"
    assert frames.error_bytes(ch) == frames.channel_close(3, 406, ch.reply_text, 60, 40)
