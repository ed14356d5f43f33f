"""Kafka framing and headers (omnibus.wire.kafka.connection), no event loop.

Request streams fed whole, one byte at a time and split at every index; header versions per API version;
the ApiVersions-at-an-unsupported-version answer (v0, error 35, ApiVersions range only, as Kafka's
ApiVersionsRequest.getErrorResponse); malformed input (negative or oversized size prefix, short frames,
unknown API key, unsupported version, truncated bodies, trailing bytes in strict mode, garbage after a
complete request) yields the documented KafkaProtocolError as the last event and never another
exception (Hypothesis over random bytes and over mutations of valid requests); response parts with file
regions for sendfile.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from omnibus.wire.kafka import messages as m
from omnibus.wire.kafka.connection import (NEED_DATA, KafkaClientConnection, KafkaConnection, Request,
                                           decode_request, encode_request, request_header_version,
                                           response_header_version)
from omnibus.wire.kafka.errors import (UNSUPPORTED_VERSION, ConnectionDeadError, InvalidRequestSizeError,
                                       KafkaDecodeError, KafkaProtocolError, RequestTooLargeError, UnknownApiKeyError,
                                       UnsupportedVersionError)
from omnibus.wire.kafka.types import SPLICE_MIN_BYTES, FileRegion
from tests.wire.test_kafka_messages import random_struct

PRODUCE = m.ProduceRequest(transactional_id=None, acks=1, timeout_ms=1000, topic_data=[
    m.ProduceRequest.TopicProduceData(name="topic", partition_data=[
        m.ProduceRequest.PartitionProduceData(index=0, records=b"\x01" * 61)])])


def sample_stream() -> tuple[bytes, list[Request]]:
    """A pipelined stream of requests of several APIs, header versions v1 and v2, with their events."""
    reqs = [
        (m.ApiVersionsRequest(client_software_name="librdkafka", client_software_version="2.3.0"), 3, "rdkafka"),
        (m.ApiVersionsRequest(), 0, None),
        (m.MetadataRequest(topics=None), 1, "kafka-python"),
        (m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name="t")]), 12, "x"),
        (PRODUCE, 9, "producer"),
        (PRODUCE, 3, ""),
        (m.FetchRequest(max_wait_ms=500, min_bytes=1, topics=[m.FetchRequest.FetchTopic(topic="t", partitions=[
            m.FetchRequest.FetchPartition(partition=0, fetch_offset=7, partition_max_bytes=1 << 20)])]), 12, "c"),
        (m.HeartbeatRequest(group_id="g", generation_id=3, member_id="m-1"), 4, "c"),
        (m.SaslHandshakeRequest(mechanism="PLAIN"), 1, "c"),
    ]
    data = b""
    events = []
    for i, (body, v, cid) in enumerate(reqs):
        frame = encode_request(body, v, 1000 + i, cid)
        data += frame
        events.append(Request(body.API_KEY, v, 1000 + i, cid, body, request_header_version(body.API_KEY, v), 0,
                              len(frame) - 4))
    return data, events


def feed(chunks, **kw) -> tuple[list, KafkaProtocolError | None]:
    conn = KafkaConnection(**kw)
    out: list = []
    for c in chunks:
        conn.receive_data(c)
        evs = conn.events()
        if evs and isinstance(evs[-1], KafkaProtocolError):
            out.extend(evs[:-1])
            return out, evs[-1]
        out.extend(evs)
    return out, None


def same_everywhere(data: bytes, **kw):
    """Feed whole, one byte at a time and split at every index; all must agree; return the result."""
    ref = feed([data], **kw)
    key = _norm(ref)
    assert _norm(feed([data[i:i + 1] for i in range(len(data))], **kw)) == key
    for i in range(1, len(data)):
        assert _norm(feed([data[:i], data[i:]], **kw)) == key, i
    return ref


def _norm(res):
    evs, err = res  # Requests compare by value (records are memoryviews: compared by content)
    return evs, (type(err), str(err)) if err else None


# -- good streams --------------------------------------------------------------------------------------

def test_stream_whole_bytewise_and_every_split():
    data, expected = sample_stream()
    evs, err = same_everywhere(data)
    assert err is None
    assert evs == expected


def test_next_event_h11_style():
    data, expected = sample_stream()
    conn = KafkaConnection()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[:10])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[10:])
    got = []
    while (ev := conn.next_event()) is not NEED_DATA:
        got.append(ev)
    assert got == expected


def test_header_versions():
    assert request_header_version(m.PRODUCE, 8) == 1 and request_header_version(m.PRODUCE, 9) == 2
    assert response_header_version(m.PRODUCE, 8) == 0 and response_header_version(m.PRODUCE, 9) == 1
    assert request_header_version(m.API_VERSIONS, 3) == 2
    assert response_header_version(m.API_VERSIONS, 3) == 0  # always v0
    assert request_header_version(m.SASL_HANDSHAKE, 1) == 1 and response_header_version(m.SASL_HANDSHAKE, 1) == 0
    assert request_header_version(m.DESCRIBE_CLUSTER, 0) == 2


def test_request_header_golden():
    # Metadata v1 (header v1): size, api_key 3, version 1, correlation 7, client_id "ab", topics null.
    assert encode_request(m.MetadataRequest(topics=None), 1, 7, "ab") == bytes.fromhex(
        "00000010" "0003" "0001" "00000007" "0002" "6162" "ffffffff")
    # Metadata v9 (header v2): client_id stays a non-compact string, then an empty tag section.
    assert encode_request(m.MetadataRequest(topics=None), 9, 7, None) == bytes.fromhex(
        "00000010" "0003" "0009" "00000007" "ffff" "00" "00" "01" "00" "00" "00")
    # header tags, topics=null, allow_auto_topic_creation, include_cluster_/include_topic_authorized_operations
    # (v8-10 and v8+), body tags


def test_header_v2_unknown_tags_skipped():
    frame = bytearray(encode_request(m.HeartbeatRequest(group_id="g", generation_id=1, member_id="m"), 4, 5, "c"))
    # replace the empty header tag section (after client id "c") with one unknown tag of 2 bytes
    i = 4 + 8 + 2 + 1
    assert frame[i] == 0
    frame[i:i + 1] = bytes.fromhex("01" "09" "02" "abcd")
    struct.pack_into(">i", frame, 0, len(frame) - 4)
    evs, err = same_everywhere(bytes(frame))
    assert err is None and evs[0].body == m.HeartbeatRequest(group_id="g", generation_id=1, member_id="m")


def test_response_encoding_and_client_decoding():
    data, events = sample_stream()
    client = KafkaClientConnection()
    server = KafkaConnection()
    for ev in events:  # register what the client "sent"
        client._pending[ev.correlation_id] = (ev.api_key, ev.api_version)
    server.receive_data(data)
    out = b""
    bodies = []
    for req in server.events():
        body = random_struct(m.RESPONSES[req.api_key].SCHEMA, req.api_version,
                             req.api_version in m.RESPONSES[req.api_key].SCHEMA.flexible, random.Random(req.api_key))
        if req.api_key == m.API_VERSIONS:
            body.error_code = 0
        bodies.append(body)
        out += server.encode_response(req, body)
    for i in range(len(out) + 1):  # responses split anywhere
        c = KafkaClientConnection()
        c._pending = dict(client._pending)
        c.receive_data(out[:i])
        got = c.events()
        c.receive_data(out[i:])
        got += c.events()
        assert [r.body for r in got] == bodies
        assert [r.correlation_id for r in got] == [e.correlation_id for e in events]


def test_response_header_v1_golden():
    req = Request(m.HEARTBEAT, 4, 9, "c", m.HeartbeatRequest())
    assert KafkaConnection().encode_response(req, m.HeartbeatResponse(error_code=27)) == bytes.fromhex(
        "0000000c" "00000009" "00" "00000000" "001b" "00")
    req = Request(m.API_VERSIONS, 3, 9, "c", m.ApiVersionsRequest())
    data = KafkaConnection().encode_response(req, m.ApiVersionsResponse())
    assert data[4:8] == bytes.fromhex("00000009") and data[8:10] == b"\x00\x00"  # no header tag byte


def test_wrong_response_type_is_a_type_error():
    req = Request(m.HEARTBEAT, 4, 9, "c", m.HeartbeatRequest())
    with pytest.raises(TypeError):
        KafkaConnection().encode_response(req, m.SyncGroupResponse())


# -- ApiVersions at an unsupported version -------------------------------------------------------------

def raw_request(api_key: int, version: int, correlation_id: int, rest: bytes = b"", client_id: bytes = b"c",
                tags: bool = False) -> bytes:
    body = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    body += (b"\x00" if tags else b"") + rest
    return struct.pack(">i", len(body)) + body


def test_api_versions_unsupported_version_answered_v0():
    data = raw_request(m.API_VERSIONS, 77, 5, rest=b"garbage that is not parsed", tags=True)
    evs, err = same_everywhere(data)
    assert err is None
    (req,) = evs
    assert (req.api_key, req.api_version, req.correlation_id, req.body, req.error_code) == (18, 77, 5, None, 35)
    conn = KafkaConnection()
    resp = conn.encode_unsupported_version(req)
    # v0 body: error 35, [ApiVersions 0-4]; header v0
    assert resp == bytes.fromhex("00000010" "00000005" "0023" "00000001" "0012" "0000" "0004")
    # The same through encode_response with the body built by the session.
    assert conn.encode_response(req, m.ApiVersionsResponse(error_code=UNSUPPORTED_VERSION, api_keys=[
        m.ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)])) == resp
    # A client that sent v77 reads it as v0.
    client = KafkaClientConnection()
    client._pending[5] = (18, 4)
    client.receive_data(resp)
    (r,) = client.events()
    assert r.api_version == 0 and r.body.error_code == 35 and r.body.api_keys[0].max_version == 4


def test_api_versions_range_restricted_by_session():
    conn = KafkaConnection(versions={m.API_VERSIONS: (0, 3), m.METADATA: (0, 12)})
    conn.receive_data(encode_request(m.ApiVersionsRequest(), 4, 1, "c"))
    (req,) = conn.events()
    assert req.error_code == UNSUPPORTED_VERSION
    assert conn.encode_unsupported_version(req).endswith(bytes.fromhex("0012" "0000" "0003"))
    conn.receive_data(encode_request(PRODUCE, 3, 2, "c"))
    (err,) = conn.events()
    assert isinstance(err, UnknownApiKeyError) or isinstance(err, UnsupportedVersionError)


def test_versions_beyond_codec_rejected():
    with pytest.raises(ValueError):
        KafkaConnection(versions={m.PRODUCE: (0, 99)})


# -- malformed input -----------------------------------------------------------------------------------

GOOD = encode_request(m.HeartbeatRequest(group_id="g", generation_id=1, member_id="m"), 3, 1, "c")

BAD_CASES = [
    ("negative size", struct.pack(">i", -1), InvalidRequestSizeError),
    ("very negative size", struct.pack(">i", -0x80000000), InvalidRequestSizeError),
    ("size over max", struct.pack(">i", 1000) + b"\x00" * 10, RequestTooLargeError),
    ("zero size", struct.pack(">i", 0), KafkaDecodeError),
    ("short header", struct.pack(">i", 7) + b"\x00" * 7, KafkaDecodeError),
    ("unknown api key", raw_request(99, 0, 1), UnknownApiKeyError),
    ("negative api key", raw_request(-1, 0, 1), UnknownApiKeyError),
    ("unsupported produce version", raw_request(m.PRODUCE, 12, 1), UnsupportedVersionError),
    ("negative version", raw_request(m.METADATA, -1, 1), UnsupportedVersionError),
    ("truncated client id", struct.pack(">ihhih", 10, 12, 3, 1, 5) + b"ab", KafkaDecodeError),
    ("client id length -2", struct.pack(">ihhih", 10, 12, 3, 1, -2), KafkaDecodeError),
    ("truncated body", GOOD[:-3] and struct.pack(">i", len(GOOD) - 7) + GOOD[4:-3], KafkaDecodeError),
    ("string length past end", raw_request(m.HEARTBEAT, 0, 1, rest=struct.pack(">h", 100) + b"g"),
     KafkaDecodeError),
    ("non-nullable string null", raw_request(m.HEARTBEAT, 0, 1, rest=struct.pack(">h", -1)), KafkaDecodeError),
    ("array length -5", raw_request(m.METADATA, 1, 1, rest=struct.pack(">i", -5)), KafkaDecodeError),
    ("array length huge", raw_request(m.METADATA, 0, 1, rest=struct.pack(">i", 0x7FFFFFFF)), KafkaDecodeError),
    ("v0 topics null", raw_request(m.METADATA, 0, 1, rest=struct.pack(">i", -1)), KafkaDecodeError),
    ("records length past end", raw_request(m.PRODUCE, 3, 1, rest=bytes.fromhex(
        "ffff" "0001" "00000001" "00000001" "000174" "00000001" "00000000" "7fffffff")), KafkaDecodeError),
    ("varint too long", raw_request(m.HEARTBEAT, 4, 1, rest=b"\xff" * 6, tags=True), KafkaDecodeError),
    ("bad header tag size", raw_request(m.HEARTBEAT, 4, 1, rest=b"", tags=False) and
     struct.pack(">i", 14) + struct.pack(">hhih", 12, 4, 1, 1) + b"c" + b"\x01\x00\x05ab", KafkaDecodeError),
]


@pytest.mark.parametrize("name,data,exc", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_malformed(name, data, exc):
    evs, err = same_everywhere(GOOD + data, max_request_size=500)
    assert len(evs) == 1 and evs[0].body.group_id == "g"  # the good request before is delivered
    assert type(err) is exc, (name, err)
    assert err.fatal


def test_size_over_max_detected_before_body():
    conn = KafkaConnection(max_request_size=100)
    conn.receive_data(struct.pack(">i", 101))
    (err,) = conn.events()
    assert isinstance(err, RequestTooLargeError) and "101" in str(err)
    default = KafkaConnection()
    default.receive_data(struct.pack(">i", 100 * 1024 * 1024 + 1))
    assert isinstance(default.events()[0], RequestTooLargeError)
    ok = KafkaConnection()
    ok.receive_data(struct.pack(">i", 100 * 1024 * 1024))
    assert ok.events() == []


def test_dead_after_error():
    conn = KafkaConnection()
    conn.receive_data(raw_request(99, 0, 1))
    (err,) = conn.events()
    assert conn.error is err
    with pytest.raises(ConnectionDeadError):
        conn.events()
    with pytest.raises(ConnectionDeadError):
        conn.receive_data(b"x")
    with pytest.raises(ConnectionDeadError):
        conn.next_event()


def test_next_event_raises_error():
    conn = KafkaConnection()
    conn.receive_data(GOOD + raw_request(99, 0, 1))
    assert conn.next_event().api_key == m.HEARTBEAT
    with pytest.raises(UnknownApiKeyError):
        conn.next_event()


def test_trailing_bytes_ignored_like_kafka_or_rejected_when_strict():
    frame = bytearray(GOOD + b"junk")
    struct.pack_into(">i", frame, 0, len(frame) - 4)
    evs, err = same_everywhere(bytes(frame))
    assert err is None and evs[0].body.group_id == "g"
    evs, err = same_everywhere(bytes(frame), strict=True)
    assert evs == [] and isinstance(err, KafkaDecodeError) and "4 bytes after" in str(err)


def test_garbage_after_complete_request():
    evs, err = same_everywhere(GOOD + b"\x00\x00\x00\x09garbage!!")
    assert len(evs) == 1 and isinstance(err, UnknownApiKeyError)  # "ga" = 0x6761
    evs, err = same_everywhere(GOOD + b"\xde\xad")
    assert len(evs) == 1 and err is None  # incomplete: waits for more


def test_error_context():
    conn = KafkaConnection()
    conn.receive_data(raw_request(m.HEARTBEAT, 0, 42, rest=struct.pack(">h", 100)))
    (err,) = conn.events()
    assert (err.api_key, err.api_version, err.correlation_id) == (m.HEARTBEAT, 0, 42)


# -- Hypothesis: never another exception ---------------------------------------------------------------

ALLOWED = (KafkaProtocolError,)


def _check_any(data: bytes, chunks: list[int]) -> None:
    conn = KafkaConnection(max_request_size=1 << 16, strict=True)
    pos = 0
    for n in chunks + [len(data)]:
        piece = data[pos:pos + n]
        pos += n
        conn.receive_data(piece)
        evs = conn.events()
        for e in evs[:-1]:
            assert isinstance(e, Request)
        if evs and isinstance(evs[-1], KafkaProtocolError):
            assert "cannot decode request" not in str(evs[-1])  # that would be a bug of ours
            return
        if pos >= len(data):
            return


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=5))
def test_random_bytes(data, chunks):
    _check_any(data, chunks)


def _valid_frames() -> list[bytes]:
    rng = random.Random(5)
    frames = []
    for key, cls in sorted(m.REQUESTS.items()):
        for v in range(cls.MIN_VERSION, cls.MAX_VERSION + 1):
            body = random_struct(cls.SCHEMA, v, v in cls.SCHEMA.flexible, rng)
            frames.append(encode_request(body, v, 1, "c"))
    return frames


FRAMES = _valid_frames()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FRAMES), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.integers(0, 10_000), st.lists(st.integers(1, 64), max_size=4))
def test_mutated_valid_requests(frame, flips, cut, chunks):
    data = bytearray(frame)
    for i, b in flips:
        data[4 + i % max(1, len(data) - 4)] = b  # keep the size prefix: exercise the body decoders
    data = bytes(data[:4 + cut % (len(data) - 3)])
    fixed = struct.pack(">i", len(data) - 4) + data[4:]
    _check_any(fixed, chunks)


def test_every_valid_frame_decodes_strictly():
    for f in FRAMES:
        req = decode_request(f[4:], strict=True)
        assert req.body is not None


# -- response parts for sendfile -----------------------------------------------------------------------

def _fetch_response(records) -> m.FetchResponse:
    P = m.FetchResponse.PartitionData
    return m.FetchResponse(responses=[m.FetchResponse.FetchableTopicResponse(topic="t", partitions=[
        P(partition_index=0, high_watermark=10, records=records),
        P(partition_index=1, high_watermark=3, records=b"small"),
    ])])


@pytest.mark.parametrize("version", [4, 11, 12, 16])
def test_fetch_response_parts_with_file_regions(version):
    req = Request(m.FETCH, version, 3, "c", m.FetchRequest())
    conn = KafkaConnection()
    big = bytes(range(256)) * 40  # 10 KiB
    region_a = FileRegion("seg-0", 100, 6000)
    region_b = FileRegion("seg-1", 0, 4240)
    parts = conn.encode_response_parts(req, _fetch_response([region_a, region_b]))
    assert region_a in parts and region_b in parts
    # Fill the regions with the bytes they stand for: the result equals the all-bytes encoding.
    filled = b"".join(big[:6000] if p is region_a else big[6000:] if p is region_b else p for p in parts)
    assert filled == conn.encode_response(req, _fetch_response(big))
    assert struct.unpack(">i", filled[:4])[0] == len(filled) - 4
    client = KafkaClientConnection()
    client._pending[3] = (m.FETCH, version)
    client.receive_data(filled)
    (resp,) = client.events()
    assert bytes(resp.body.responses[0].partitions[0].records) == big


def test_large_bytes_records_are_not_copied():
    req = Request(m.FETCH, 12, 3, "c", m.FetchRequest())
    big = b"z" * SPLICE_MIN_BYTES
    parts = KafkaConnection().encode_response_parts(req, _fetch_response(big))
    assert any(p is big for p in parts)
    small = KafkaConnection().encode_response_parts(req, _fetch_response(b"z" * 10))
    assert len(small) == 1


def test_regions_need_encode_response_parts():
    req = Request(m.FETCH, 12, 3, "c", m.FetchRequest())
    with pytest.raises(TypeError):
        KafkaConnection().encode_response(req, _fetch_response(FileRegion("f", 0, 10)))


def test_produce_records_are_a_view_of_the_frame():
    conn = KafkaConnection()
    conn.receive_data(encode_request(PRODUCE, 9, 1, "c"))
    (req,) = conn.events()
    rec = req.body.topic_data[0].partition_data[0].records
    assert isinstance(rec, memoryview) and bytes(rec) == b"\x01" * 61


def test_empty_version_table_accepts_nothing_but_answers_api_versions():
    conn = KafkaConnection(versions={m.API_VERSIONS: (0, 3)})
    conn.receive_data(bytearray(GOOD))  # bytes-like input is copied
    (err,) = conn.events()
    assert isinstance(err, UnsupportedVersionError) and "not enabled" in str(err)
    with pytest.raises(UnsupportedVersionError):
        decode_request(GOOD[4:], versions={})


def test_receive_data_copies_reused_buffers():
    conn = KafkaConnection()
    buf = bytearray(GOOD)
    conn.receive_data(memoryview(buf)[:10])
    conn.receive_data(buf[10:])
    buf[:] = b"\x00" * len(buf)  # the caller reuses its buffer
    (req,) = conn.events()
    assert req.body.group_id == "g"
