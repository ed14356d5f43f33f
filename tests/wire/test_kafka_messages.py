"""Kafka message schemas (omnibus.wire.kafka.messages), no event loop.

For every API and every version the codec implements, requests and responses with random field values
round-trip (encode → decode → equal, and decode consumes exactly what encode wrote). Where kafka-python 3.x
is installed (it builds its codec from Kafka's own JSON schemas, a source independent of our hand-written
declarations), each of those encodings is decoded by kafka-python and re-encoded: the bytes must be the
same, for every version both implement. Every version aiokafka 0.14 declares (it keeps the old ones that
Kafka 4.0 and kafka-python 3 dropped) gets the same treatment with aiokafka's classes, so each (API,
version, direction) here is checked against at least one of the two; a few messages are also built with
aiokafka's own field names, and a few encodings are spelled out byte by byte from the protocol guide.
"""

from __future__ import annotations

import random
import struct
import warnings

import pytest

from omnibus.wire.kafka import messages as m
from omnibus.wire.kafka.errors import KafkaDecodeError
from omnibus.wire.kafka.types import (BOOL, BYTES, FLOAT64, INT8, INT16, INT32, INT64, RECORDS, STRING, UINT16,
                                      UINT32, UUID, VARINT, VARLONG, Array, Struct)

# kafka-python 3 loads its JSON schemas with deprecated importlib.resources calls, lazily.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

INT_RANGES = {
    INT8: (-(1 << 7), (1 << 7) - 1), INT16: (-(1 << 15), (1 << 15) - 1), INT32: (-(1 << 31), (1 << 31) - 1),
    INT64: (-(1 << 63), (1 << 63) - 1), UINT16: (0, (1 << 16) - 1), UINT32: (0, (1 << 32) - 1),
    VARINT: (-(1 << 31), (1 << 31) - 1), VARLONG: (-(1 << 63), (1 << 63) - 1),
}
ALPHABET = "abcXYZ019._-é€𝄞"


def random_value(t, version: int, flexible: bool, nullable: bool, rng: random.Random):
    """A random value of type ``t`` valid at ``version``."""
    if nullable and rng.random() < 0.2:
        return None
    if isinstance(t, Struct):
        return random_struct(t, version, flexible, rng)
    if isinstance(t, Array):
        return [random_value(t.elem, version, flexible, False, rng) for _ in range(rng.choice((0, 1, 2, 3)))]
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return rng.choice((0, -1, lo, hi, rng.randint(lo, hi))) if lo < 0 else rng.choice((0, hi, rng.randint(lo, hi)))
    if t is BOOL:
        return rng.random() < 0.5
    if t is FLOAT64:
        return rng.uniform(-1e9, 1e9)
    if t is UUID:
        return rng.randbytes(16)
    if t is STRING:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.choice((0, 1, 5, 40))))
    if t in (BYTES, RECORDS):
        return rng.randbytes(rng.choice((0, 1, 7, 300)))
    raise AssertionError(t)


def random_struct(schema: Struct, version: int, flexible: bool, rng: random.Random):
    kw = {}
    for f in schema.fields:
        if version in f.versions and (f.tag is None or flexible):
            kw[f.name] = random_value(f.type, version, flexible, version in f.nullable, rng)
    return schema.cls(**kw)


def unique_first_fields(obj, version: int) -> None:
    """Make array elements differ in their first field (Kafka's JSON marks many such fields ``mapKey``;
    kafka-python, like Kafka's Java classes, keeps one element per key)."""
    for name in obj.FIELDS:
        v = getattr(obj, name)
        if isinstance(v, list) and v and hasattr(v[0], "FIELDS"):
            seen = set()
            keep = []
            for e in v:
                key = repr(getattr(e, e.FIELDS[0]))
                if key not in seen:
                    seen.add(key)
                    keep.append(e)
                unique_first_fields(e, version)
            setattr(obj, name, keep)
        elif hasattr(v, "FIELDS"):
            unique_first_fields(v, version)


def cases():
    for api_key, req in sorted(m.REQUESTS.items()):
        resp = m.RESPONSES[api_key]
        for v in range(req.MIN_VERSION, req.MAX_VERSION + 1):
            yield pytest.param(req, v, id=f"{req.__name__}-v{v}")
            yield pytest.param(resp, v, id=f"{resp.__name__}-v{v}")


ALL = list(cases())


@pytest.mark.parametrize("cls,version", ALL)
def test_round_trip_random(cls, version):
    flexible = version in cls.SCHEMA.flexible
    rng = random.Random(f"{cls.__name__}{version}")
    for _ in range(8):
        obj = random_struct(cls.SCHEMA, version, flexible, rng)
        data = obj.encode(version)
        back, end = cls.decode(data, version)
        assert end == len(data)
        assert back == obj
        assert back.encode(version) == data
        # Every proper prefix is a clean decode error, never another exception.
        for cut in sorted({0, 1, len(data) // 2, len(data) - 1} - {len(data)}):
            if cut < 0:
                continue
            try:
                _, end = cls.decode(data[:cut], version)
            except KafkaDecodeError:
                continue
            # A prefix may decode when the tail was only empty arrays' worth of data; never past the cut.
            assert end <= cut


@pytest.mark.parametrize("cls,version", ALL)
def test_defaults_round_trip(cls, version):
    """A default-constructed message is encodable at every version whose non-nullable fields have
    non-None defaults."""
    obj = cls()
    try:
        data = obj.encode(version)
    except ValueError:
        # a field whose default is None (nullable in other versions) is not nullable at this version
        return
    back, end = cls.decode(data, version)
    assert end == len(data) and back == obj


# -- cross-check against kafka-python 3.x (codec generated from Kafka's JSON schemas) -----------------

def _kafka_python_classes() -> dict:
    with warnings.catch_warnings():  # its schema loader uses deprecated importlib.resources calls
        warnings.simplefilter("ignore", DeprecationWarning)
        return _load_kafka_python_classes()


def _load_kafka_python_classes() -> dict:
    try:
        import importlib
        import pkgutil

        import kafka.protocol as kp
        from kafka.protocol.api_message import ApiMessage
    except ImportError:
        return {}
    found = {}
    for info in pkgutil.walk_packages(kp.__path__, kp.__name__ + "."):
        if ".old" in info.name or "generate_stubs" in info.name:
            continue
        try:
            mod = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional modules of kafka-python
            continue
        for n in dir(mod):
            o = getattr(mod, n)
            if isinstance(o, type) and issubclass(o, ApiMessage) and o is not ApiMessage and getattr(o, "_json", None):
                found[o.name] = o
    return found


KP = _kafka_python_classes()


def _kp_versions(kp_cls) -> tuple[int, int]:
    return kp_cls._valid_versions


# Only the versions kafka-python 3 implements (its minimums follow Kafka 4.0, e.g. Produce v3, Fetch v4);
# older versions are checked against aiokafka below.
KP_CASES = [p for p in ALL if p.values[0].__name__ in KP
            and _kp_versions(KP[p.values[0].__name__])[0] <= p.values[1] <= _kp_versions(KP[p.values[0].__name__])[1]]


def test_kafka_python_has_every_api():
    assert KP, "kafka-python 3.x is a test dependency"
    missing = {cls.__name__ for cls, _ in (p.values for p in ALL)} - set(KP)
    assert not missing, f"kafka-python has no {sorted(missing)}"


@pytest.mark.parametrize("cls,version", KP_CASES)
def test_same_bytes_as_kafka_python(cls, version):
    kp_cls = KP[cls.__name__]
    flexible = version in cls.SCHEMA.flexible
    assert kp_cls.flexible_version_q(version) == flexible
    rng = random.Random(f"kp{cls.__name__}{version}")
    for _ in range(6):
        obj = random_struct(cls.SCHEMA, version, flexible, rng)
        unique_first_fields(obj, version)
        if cls is m.ApiVersionsResponse:
            obj.error_code = 0  # kafka-python (like Kafka's clients) reads an error response as v0
        data = obj.encode(version)
        theirs = kp_cls.decode(data, version=version)
        theirs._header = None  # kafka-python's decode leaves it unset, and its encode reads it
        assert theirs.encode(version=version) == data, theirs


def test_kafka_python_covers_every_api():
    if not KP:
        pytest.skip("kafka-python 3.x not installed")
    for cls in list(m.REQUESTS.values()) + list(m.RESPONSES.values()):
        assert cls.__name__ in KP


# -- old versions, against aiokafka's declarative classes ---------------------------------------------

aiokafka_protocol = pytest.importorskip("aiokafka.protocol.produce", reason="aiokafka not installed")


def _aio(module: str):
    import importlib
    return importlib.import_module(f"aiokafka.protocol.{module}")


def test_produce_v0_v2_like_aiokafka():
    P = _aio("produce")
    records = b"\x00" * 70
    for v in (0, 1, 2):
        theirs = getattr(P, f"ProduceRequest_v{v}")(1, 1000, [("t", [(0, records)])]).encode()
        ours = m.ProduceRequest(acks=1, timeout_ms=1000, topic_data=[m.ProduceRequest.TopicProduceData(
            name="t", partition_data=[m.ProduceRequest.PartitionProduceData(index=0, records=records)])]).encode(v)
        assert ours == theirs


def test_fetch_v0_v3_like_aiokafka():
    F = _aio("fetch")
    for v in (0, 1, 2, 3):
        args = [-1, 500, 1] + ([52428800] if v >= 3 else []) + [[("t", [(0, 42, 1048576)])]]
        theirs = getattr(F, f"FetchRequest_v{v}")(*args).encode()
        ours = m.FetchRequest(replica_id=-1, max_wait_ms=500, min_bytes=1, max_bytes=52428800, topics=[
            m.FetchRequest.FetchTopic(topic="t", partitions=[m.FetchRequest.FetchPartition(
                partition=0, fetch_offset=42, partition_max_bytes=1048576)])]).encode(v)
        assert ours == theirs, v
    # A v0 response: topics → partitions (error, high watermark, message set).
    theirs = b"".join([
        struct.pack(">i", 1), struct.pack(">h", 1), b"t", struct.pack(">i", 1),
        struct.pack(">ihqi", 0, 0, 99, 3), b"abc"])
    back, end = m.FetchResponse.decode(theirs, 0)
    assert end == len(theirs)
    part = back.responses[0].partitions[0]
    assert (back.responses[0].topic, part.high_watermark, bytes(part.records)) == ("t", 99, b"abc")
    decoded = F.FetchResponse_v0.decode(theirs)
    assert decoded.topics[0][0] == "t"


def test_metadata_v0_v1_like_aiokafka():
    M = _aio("metadata")
    topic = m.MetadataRequest.MetadataRequestTopic
    assert m.MetadataRequest(topics=[topic(name="a"), topic(name="b")]).encode(0) \
        == M.MetadataRequest_v0(["a", "b"]).encode()
    assert m.MetadataRequest(topics=None).encode(1) == M.MetadataRequest_v1(None).encode()


def test_list_offsets_v0_like_aiokafka():
    O = _aio("offset")
    theirs = O.OffsetRequest_v0(-1, [("t", [(0, -1, 1)])]).encode()
    ours = m.ListOffsetsRequest(replica_id=-1, topics=[m.ListOffsetsRequest.ListOffsetsTopic(name="t", partitions=[
        m.ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1, max_num_offsets=1)])]).encode(0)
    assert ours == theirs


def test_offset_commit_v0_v2_like_aiokafka():
    C = _aio("commit")
    topic = m.OffsetCommitRequest.OffsetCommitRequestTopic
    part = m.OffsetCommitRequest.OffsetCommitRequestPartition
    theirs = C.OffsetCommitRequest_v2("g", 5, "member", -1, [("t", [(0, 10, "meta")])]).encode()
    ours = m.OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=5, member_id="member",
                                 retention_time_ms=-1, topics=[topic(name="t", partitions=[
                                     part(partition_index=0, committed_offset=10, committed_metadata="meta")])]).encode(2)
    assert ours == theirs
    theirs = C.OffsetCommitRequest_v1("g", 5, "member", [("t", [(0, 10, 1234, "meta")])]).encode()
    ours = m.OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=5, member_id="member", topics=[
        topic(name="t", partitions=[part(partition_index=0, committed_offset=10, commit_timestamp=1234,
                                         committed_metadata="meta")])]).encode(1)
    assert ours == theirs


def test_join_group_v0_like_aiokafka():
    G = _aio("group")
    theirs = G.JoinGroupRequest_v0("g", 30000, "", "consumer", [("range", b"\x00\x01")]).encode()
    ours = m.JoinGroupRequest(group_id="g", session_timeout_ms=30000, member_id="", protocol_type="consumer",
                              protocols=[m.JoinGroupRequest.JoinGroupRequestProtocol(name="range",
                                                                                      metadata=b"\x00\x01")]).encode(0)
    assert ours == theirs


# -- byte by byte, from the protocol guide -------------------------------------------------------------

def test_produce_v9_golden():
    req = m.ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[
        m.ProduceRequest.TopicProduceData(name="t", partition_data=[
            m.ProduceRequest.PartitionProduceData(index=0, records=b"x" * 10)])])
    assert req.encode(9) == bytes.fromhex(
        "00"            # transactional_id: compact nullable string, null
        "ffff"          # acks -1
        "00007530"      # timeout 30000
        "02"            # topic_data: compact array of 1
        "0274"          # name "t"
        "02"            # partition_data: 1
        "00000000"      # index 0
        "0b" + "78" * 10 +  # records: compact bytes, 10
        "00" "00" "00")  # tagged fields of partition, topic, request


def test_produce_v3_golden():
    req = m.ProduceRequest(transactional_id="tx", acks=1, timeout_ms=5, topic_data=[
        m.ProduceRequest.TopicProduceData(name="t", partition_data=[
            m.ProduceRequest.PartitionProduceData(index=2, records=None)])])
    assert req.encode(3) == bytes.fromhex("00027478" "0001" "00000005" "00000001" "000174" "00000001" "00000002"
                                          "ffffffff")


def test_api_versions_response_v3_tagged_golden():
    resp = m.ApiVersionsResponse(error_code=0, api_keys=[m.ApiVersionsResponse.ApiVersion(
        api_key=18, min_version=0, max_version=3)], throttle_time_ms=0, zk_migration_ready=True)
    assert resp.encode(3) == bytes.fromhex(
        "0000" "02" "0012" "0000" "0003" "00" "00000000"
        "01" "03" "01" "01")  # one tagged field: tag 3, size 1, true
    back, _ = m.ApiVersionsResponse.decode(resp.encode(3), 3)
    assert back == resp


def test_fetch_response_v12_tagged_struct():
    P = m.FetchResponse.PartitionData
    resp = m.FetchResponse(responses=[m.FetchResponse.FetchableTopicResponse(topic="t", partitions=[
        P(partition_index=0, high_watermark=5, current_leader=m.FetchResponse.LeaderIdAndEpoch(leader_id=1,
                                                                                              leader_epoch=2),
          aborted_transactions=None, records=b"")])])
    data = resp.encode(12)
    back, end = m.FetchResponse.decode(data, 12)
    assert back == resp and end == len(data)
    # tagged section of the partition: 1 field, tag 1, size 9: leader 1, epoch 2 and the struct's own
    # (empty) tagged section -- a struct in a flexible version always ends with one, tagged or not.
    assert bytes.fromhex("01" "01" "09" "00000001" "00000002" "00") in data


def test_unknown_tagged_fields_are_skipped():
    body = bytearray(m.HeartbeatRequest(group_id="g", generation_id=1, member_id="m").encode(4))
    assert body[-1] == 0
    body[-1:] = bytes.fromhex("02" "05" "03" "aabbcc" "7f" "00")  # two unknown tags: 5 (3 bytes), 127 (empty)
    back, end = m.HeartbeatRequest.decode(bytes(body), 4)
    assert end == len(body) and back == m.HeartbeatRequest(group_id="g", generation_id=1, member_id="m")


def test_registry():
    assert m.SUPPORTED_VERSIONS[m.API_VERSIONS] == (0, 4)
    assert m.API_NAMES[m.PRODUCE] == "Produce"
    # The brief's minimum ranges are all covered.
    want = {0: 9, 1: 12, 2: 7, 3: 12, 8: 8, 9: 8, 10: 4, 11: 9, 12: 4, 13: 5, 14: 5, 17: 1, 18: 3, 19: 7, 20: 6,
            22: 4, 32: 4, 36: 2}
    for key, hi in want.items():
        assert m.SUPPORTED_VERSIONS[key][0] == 0 and m.SUPPORTED_VERSIONS[key][1] >= hi, key


# -- every version aiokafka declares (it keeps the old ones), byte for byte ---------------------------

def _aiokafka_classes() -> dict:
    """(api_key, "request"/"response", version) → aiokafka's declarative class for it."""
    import importlib
    import pkgutil

    import aiokafka.protocol as ap
    from aiokafka.protocol.api import Response as AioResponse
    found = {}
    for info in pkgutil.iter_modules(ap.__path__):
        mod = importlib.import_module("aiokafka.protocol." + info.name)
        for n in dir(mod):
            c = getattr(mod, n)
            if isinstance(c, type) and "_v" in n and all(hasattr(c, a) for a in ("API_KEY", "API_VERSION", "SCHEMA")):
                kind = "response" if issubclass(c, AioResponse) else "request"
                found[(c.API_KEY, kind, c.API_VERSION)] = c
    return found


AIO = _aiokafka_classes()
# Where aiokafka's declarations are wrong (Kafka's ListOffsetsRequest.json, and kafka-python 3 above, have
# CurrentLeaderEpoch as int32; aiokafka 0.14 declares it Int64 in OffsetRequest_v4/v5): not compared.
AIOKAFKA_BUGS = {("ListOffsetsRequest", 4), ("ListOffsetsRequest", 5)}

AIO_CASES = [pytest.param(cls, v, AIO[(cls.API_KEY, cls.SCHEMA.kind, v)], id=f"{cls.__name__}-v{v}")
             for cls, v in (p.values for p in ALL) if (cls.API_KEY, cls.SCHEMA.kind, v) in AIO
             and (cls.__name__, v) not in AIOKAFKA_BUGS]


@pytest.mark.parametrize("cls,version,aio_cls", AIO_CASES)
def test_same_bytes_as_aiokafka(cls, version, aio_cls):
    flexible = version in cls.SCHEMA.flexible
    rng = random.Random(f"aio{cls.__name__}{version}")
    for _ in range(6):
        obj = random_struct(cls.SCHEMA, version, flexible, rng)
        if cls is m.ApiVersionsResponse:
            obj.error_code = 0
        data = obj.encode(version)
        theirs = aio_cls.decode(data)
        assert theirs.encode() == data, theirs


def test_aiokafka_cases_cover_old_versions():
    names = {p.id for p in AIO_CASES}
    for want in ("ProduceRequest-v0", "FetchResponse-v0", "ListOffsetsRequest-v0", "OffsetFetchRequest-v0",
                 "CreateTopicsRequest-v0", "DescribeConfigsResponse-v0", "OffsetCommitRequest-v0"):
        assert want in names, want
