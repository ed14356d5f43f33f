"""Bad Kafka input over real sockets, answered as Kafka 3.x answers it: the offending partition gets the
error code (INVALID_RECORD for anything but exactly one record batch per partition, CORRUPT_MESSAGE for a
broken one, MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE for sizes), or the offending connection is closed
(oversized length prefix, an API version that is not supported); an unsupported ApiVersions version gets
UNSUPPORTED_VERSION with a v0 body. Other partitions and connections carry on."""

from __future__ import annotations

import socket
import struct

import pytest

from omnibus import SyncBroker
from omnibus.storage.records import Record, build_batch
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from tests.clients.test_kafka_clients import Raw, consume_all


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with SyncBroker(tmp_path_factory.mktemp("bad-input")) as b:
        yield b


def create(raw, name, **configs):
    C = M.CreateTopicsRequest
    resp = raw.call(C(topics=[C.CreatableTopic(name=name, num_partitions=2, replication_factor=1, configs=[
        C.CreatableTopicConfig(name=k.replace("_", "."), value=v) for k, v in configs.items()])],
        timeout_ms=1000), 5)
    assert resp.topics[0].error_code == 0, resp


def produce(raw, topic, per_partition, version=9):
    """One Produce request with ``per_partition[i]`` as partition i's records; the error codes back."""
    R = M.ProduceRequest
    body = R(transactional_id=None, acks=-1, timeout_ms=5000, topic_data=[R.TopicProduceData(
        name=topic, partition_data=[R.PartitionProduceData(index=i, records=rec)
                                    for i, rec in enumerate(per_partition)])])
    resp = raw.call(body, version)
    return [p.error_code for p in resp.responses[0].partition_responses]


def batch(*values):
    return build_batch([Record(None, v, (), 1) for v in values])


def test_two_batches_in_one_partition_are_invalid_record(broker):
    raw = Raw(broker.port("kafka"))
    create(raw, "two-batches")
    two = batch(b"a") + batch(b"b")
    for version in (3, 9):
        assert produce(raw, "two-batches", [two, batch(b"ok%d" % version)], version) == [E.INVALID_RECORD, 0]
    got = consume_all(broker.kafka_bootstrap, "two-batches", 2, expect=2, timeout=3)
    assert sorted(m.value for m in got) == [b"ok3", b"ok9"]  # nothing of the rejected records was stored


def test_record_set_shapes(broker):
    raw = Raw(broker.port("kafka"))
    create(raw, "shapes")
    one = batch(b"x")
    bad_size = bytearray(one)
    bad_size[8:12] = struct.pack(">i", 5)  # below the record overhead
    magic1 = bytearray(one)
    magic1[16] = 1
    magic7 = bytearray(one)
    magic7[16] = 7
    bad_crc = bytearray(one)
    bad_crc[-1] ^= 0xFF
    cases = {
        b"": E.INVALID_RECORD,  # no batch at all
        one[:16]: E.INVALID_RECORD,  # not even a size and magic
        one[:-1]: E.INVALID_RECORD,  # no whole batch
        bytes(bad_size): E.CORRUPT_MESSAGE,
        bytes(magic1): E.INVALID_RECORD,  # v3+ carries magic 2 only
        bytes(magic7): E.CORRUPT_MESSAGE,
        bytes(bad_crc): E.CORRUPT_MESSAGE,
        one + batch(b"y")[:30]: 0,  # a partial second batch is trimmed, as Kafka's trimInvalidBytes does
    }
    for records, code in cases.items():
        assert produce(raw, "shapes", [records]) == [code], records[:20]
    got = consume_all(broker.kafka_bootstrap, "shapes", 1, expect=1, timeout=3)
    assert [m.value for m in got] == [b"x"]


def test_zstd_needs_produce_v7(broker):
    raw = Raw(broker.port("kafka"))
    create(raw, "zstd-versions")
    zstd = bytearray(batch(b"z"))
    zstd[22] |= 4  # compression bits say zstd: refused by version before anything else is looked at
    assert produce(raw, "zstd-versions", [bytes(zstd)], 6) == [E.UNSUPPORTED_COMPRESSION_TYPE]
    assert produce(raw, "zstd-versions", [bytes(zstd)], 7) == [E.CORRUPT_MESSAGE]  # v7: on to the CRC


def test_batch_sizes_against_topic_limits(broker):
    raw = Raw(broker.port("kafka"))
    # max.message.bytes above segment.bytes: a batch between the two fits no segment.
    create(raw, "sizes", max_message_bytes="20000", segment_bytes="4000")
    assert produce(raw, "sizes", [batch(b"m" * 10_000)]) == [E.RECORD_LIST_TOO_LARGE]
    assert produce(raw, "sizes", [batch(b"m" * 30_000)]) == [E.MESSAGE_TOO_LARGE]
    assert produce(raw, "sizes", [batch(b"m" * 1000)]) == [0]


def test_connection_level_bad_input(broker):
    port = broker.port("kafka")
    # A length prefix over socket.request.max.bytes: closed before the body is read (InvalidReceiveException).
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(struct.pack(">i", 0x7FFF_FFFF) + b"\x00\x12\x00\x03")
    assert s.recv(100) == b""
    s.close()
    # A version of a known API that is not supported (Fetch v3, pre-v2 record format): closed, no answer.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = struct.pack(">hhi", M.FETCH, 3, 7) + struct.pack(">h", 1) + b"c" + bytes(40)
    s.sendall(struct.pack(">i", len(body)) + body)
    assert s.recv(100) == b""
    s.close()
    # ApiVersions in a version from the future: UNSUPPORTED_VERSION in a v0 body with the supported range.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = struct.pack(">hhi", M.API_VERSIONS, 99, 42) + struct.pack(">h", 1) + b"c" + b"\x00\x00\x00"
    s.sendall(struct.pack(">i", len(body)) + body)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    size, corr, code, n = struct.unpack(">iihi", data[:14])
    assert (corr, code) == (42, E.UNSUPPORTED_VERSION) and n >= 1
    keys = [struct.unpack(">hhh", data[14 + 6 * i:20 + 6 * i]) for i in range(n)]
    assert (M.API_VERSIONS, 0, 3) in keys
    s.close()
    raw = Raw(port)  # the broker keeps serving others
    assert raw.call(M.ApiVersionsRequest(), 3).error_code == 0
