"""Kafka admin APIs with real clients: kafka-python ``KafkaAdminClient`` (create/delete topics,
create_partitions, describe_configs, alter_configs), confluent-kafka ``AdminClient`` (describe_configs,
incremental_alter_configs, delete_records, describe_cluster), kcat metadata after a delete, and topic
configs that change what the broker does (retention.ms trims, max.message.bytes refuses, segment.bytes
rolls), also across a restart.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from omnibus import SyncBroker

kafka = pytest.importorskip("kafka")
confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,  # noqa: E402
                                   ConfigSource, NewTopic, ResourceType)
from kafka.admin import ConfigResource as KConfigResource  # noqa: E402
from kafka.admin import ConfigResourceType, KafkaAdminClient, NewPartitions  # noqa: E402
from kafka.admin import NewTopic as KNewTopic  # noqa: E402
from kafka.errors import (InvalidConfigurationError, InvalidPartitionsError,  # noqa: E402
                          UnknownTopicOrPartitionError)

WAIT = 15


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path, settings={"storage.retention_check_interval_ms": 100}) as b:
        yield b


@pytest.fixture
def kadmin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.kafka_bootstrap, request_timeout_ms=10000)
    yield a
    a.close()


@pytest.fixture
def cadmin(broker):
    return AdminClient({"bootstrap.servers": broker.kafka_bootstrap})


def _result(futures: dict) -> dict:
    return {k: f.result(WAIT) for k, f in futures.items()}


def _topic_configs(kadmin, name: str, keys=None, **kw) -> dict:
    res = kadmin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, name, keys)], config_filter="all", **kw)
    return res["topic"][name]


# -- kafka-python --------------------------------------------------------------------------------------

def test_kafka_python_topic_lifecycle(broker, kadmin):
    kadmin.create_topics([KNewTopic("life", 1, 1, topic_configs={"retention.ms": "3600000",
                                                                 "cleanup.policy": "compact,delete"})])
    kadmin.create_partitions({"life": NewPartitions(3)})
    desc = kadmin.describe_topics(["life"])
    assert len(desc[0]["partitions"]) == 3
    with pytest.raises(InvalidPartitionsError, match=r"The topic life currently has 3 partition\(s\); 2 would not "
                                                     "be an increase."):
        kadmin.create_partitions({"life": NewPartitions(2)})
    with pytest.raises(InvalidPartitionsError, match=r"Topic already has 3 partition\(s\)."):
        kadmin.create_partitions({"life": NewPartitions(3)})

    cfg = _topic_configs(kadmin, "life")
    assert cfg["retention.ms"]["value"] == "3600000"
    assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert cfg["cleanup.policy"]["value"] == "compact,delete"
    assert cfg["min.insync.replicas"] == {**cfg["min.insync.replicas"], "value": "1",
                                          "config_source": "DEFAULT_CONFIG", "read_only": False}
    assert {"segment.bytes", "max.message.bytes", "delete.retention.ms", "min.compaction.lag.ms",
            "segment.ms", "retention.bytes", "compression.type"} <= set(cfg)
    assert cfg["segment.bytes"]["config_type"] == "INT"

    # AlterConfigs (kafka-python describes first and sends every modified key along, since the request
    # replaces the whole set).
    res = kadmin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "life", configs={"segment.ms": "60000"})],
                               incremental=False)
    assert res == {"topic": {"life": "OK"}}
    cfg = _topic_configs(kadmin, "life", ["retention.ms", "segment.ms", "cleanup.policy"], include_synonyms=True)
    assert cfg["segment.ms"]["value"] == "60000" and cfg["segment.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert cfg["retention.ms"]["value"] == "3600000"
    assert [(s["name"], s["source"]) for s in cfg["segment.ms"]["synonyms"]] == [
        ("segment.ms", "DYNAMIC_TOPIC_CONFIG"), ("log.roll.hours", "DEFAULT_CONFIG")]

    # kafka-python's default on a broker with IncrementalAlterConfigs: only the named key changes.
    kadmin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "life", configs={"retention.ms": "7200000"})])
    cfg = _topic_configs(kadmin, "life", ["retention.ms", "segment.ms"])
    assert (cfg["retention.ms"]["value"], cfg["segment.ms"]["value"]) == ("7200000", "60000")

    kadmin.delete_topics(["life"])
    assert "life" not in kadmin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        kadmin.delete_topics(["life"])


def test_kafka_python_invalid_configs(broker, kadmin):
    with pytest.raises(InvalidConfigurationError, match="Unknown topic config name: no.such.config"):
        kadmin.create_topics([KNewTopic("bad", 1, 1, topic_configs={"no.such.config": "1"})])
    with pytest.raises(InvalidConfigurationError,
                       match="Invalid value abc for configuration retention.ms: Not a number of type LONG"):
        kadmin.create_topics([KNewTopic("bad", 1, 1, topic_configs={"retention.ms": "abc"})])
    assert "bad" not in kadmin.list_topics()
    kadmin.create_topics([KNewTopic("good", 1, 1)])
    res = kadmin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "good",
                                                configs={"cleanup.policy": "shred"})])
    assert res["topic"]["good"] == ("[Error 40] InvalidConfigurationError: Invalid value shred for configuration "
                                    "cleanup.policy: String must be one of: compact, delete")


def test_kafka_python_broker_configs(broker, kadmin):
    res = kadmin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "0")], config_filter="all")
    cfg = res["broker"]["0"]
    assert cfg["num.partitions"]["value"] == "1"
    assert cfg["log.retention.ms"]["read_only"] is True


def test_kcat_metadata_after_delete(broker, kadmin):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.fail("kcat is not installed: apt-get install -y kcat")
    kadmin.create_topics([KNewTopic("gone", 2, 1), KNewTopic("kept", 1, 1)])

    def topics() -> str:
        return subprocess.run([kcat, "-b", broker.kafka_bootstrap, "-L"], capture_output=True, text=True,
                              timeout=30, check=True).stdout

    assert 'topic "gone" with 2 partitions' in topics()
    kadmin.delete_topics(["gone"])
    out = topics()
    assert '"gone"' not in out and 'topic "kept" with 1 partitions' in out
    assert not (broker.data_dir / "logs" / "kafka" / "gone-0").exists()


# -- confluent-kafka -----------------------------------------------------------------------------------

def test_confluent_describe_and_incremental_alter(broker, cadmin):
    _result(cadmin.create_topics([NewTopic("inc", 1, 1, config={"retention.bytes": "1000000"})]))
    res = ConfigResource(ResourceType.TOPIC, "inc")
    cfg = cadmin.describe_configs([res])[res].result(WAIT)  # librdkafka always asks for synonyms
    assert cfg["retention.bytes"].value == "1000000"
    assert cfg["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not cfg["retention.bytes"].is_default
    assert cfg["delete.retention.ms"].value == "86400000" and cfg["delete.retention.ms"].is_default
    assert [s.name for s in cfg["retention.bytes"].synonyms.values()] == ["retention.bytes", "log.retention.bytes"]

    ops = ConfigResource(ResourceType.TOPIC, "inc", incremental_configs=[
        ConfigEntry("retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ConfigEntry("min.compaction.lag.ms", "100", incremental_operation=AlterConfigOpType.SET),
    ])
    cadmin.incremental_alter_configs([ops])[ops].result(WAIT)
    cfg = cadmin.describe_configs([res])[res].result(WAIT)
    assert cfg["retention.bytes"].value == "-1" and cfg["retention.bytes"].is_default
    assert cfg["cleanup.policy"].value == "delete,compact"
    assert cfg["min.compaction.lag.ms"].value == "100"

    sub = ConfigResource(ResourceType.TOPIC, "inc", incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)])
    cadmin.incremental_alter_configs([sub])[sub].result(WAIT)
    assert cadmin.describe_configs([res])[res].result(WAIT)["cleanup.policy"].value == "compact"

    bad = ConfigResource(ResourceType.TOPIC, "inc", incremental_configs=[
        ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND)])
    with pytest.raises(KafkaException, match="Can't APPEND to key retention.ms because its type is not LIST."):
        cadmin.incremental_alter_configs([bad])[bad].result(WAIT)
    bad = ConfigResource(ResourceType.TOPIC, "inc", incremental_configs=[
        ConfigEntry("segment.bytes", "10", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException,
                       match="Invalid value 10 for configuration segment.bytes: Value must be at least 14"):
        cadmin.incremental_alter_configs([bad])[bad].result(WAIT)
    # validate_only changes nothing
    dry = ConfigResource(ResourceType.TOPIC, "inc", incremental_configs=[
        ConfigEntry("retention.ms", "1234", incremental_operation=AlterConfigOpType.SET)])
    cadmin.incremental_alter_configs([dry], validate_only=True)[dry].result(WAIT)
    assert cadmin.describe_configs([res])[res].result(WAIT)["retention.ms"].value == "604800000"

    # AlterConfigs (not incremental) replaces the whole set: what it does not name returns to its default.
    whole = ConfigResource(ResourceType.TOPIC, "inc", set_config={"retention.ms": "999999"})
    with pytest.warns(DeprecationWarning):
        cadmin.alter_configs([whole])[whole].result(WAIT)
    cfg = cadmin.describe_configs([res])[res].result(WAIT)
    assert cfg["retention.ms"].value == "999999"
    assert cfg["cleanup.policy"].value == "delete" and cfg["min.compaction.lag.ms"].value == "0"

    missing = ConfigResource(ResourceType.TOPIC, "nope")
    with pytest.raises(KafkaException) as e:
        cadmin.describe_configs([missing])[missing].result(WAIT)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_confluent_delete_records_and_describe_cluster(broker, cadmin):
    _result(cadmin.create_topics([NewTopic("dr", 1, 1)]))
    p = Producer({"bootstrap.servers": broker.kafka_bootstrap})
    for i in range(20):
        p.produce("dr", value=b"v%d" % i)
    assert p.flush(WAIT) == 0
    tp = TopicPartition("dr", 0, 7)
    res = cadmin.delete_records([tp])[tp].result(WAIT)
    assert res.low_watermark == 7
    c = Consumer({"bootstrap.servers": broker.kafka_bootstrap, "group.id": "x", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        assert c.get_watermark_offsets(TopicPartition("dr", 0), timeout=WAIT) == (7, 20)
        c.assign([TopicPartition("dr", 0, 0)])
        msg = None
        deadline = time.monotonic() + WAIT
        while msg is None and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error():
                msg = None
        assert msg is not None and msg.offset() == 7 and msg.value() == b"v7"  # reset to earliest
    finally:
        c.close()
    past = TopicPartition("dr", 0, 21)
    with pytest.raises(KafkaException) as e:
        cadmin.delete_records([past])[past].result(WAIT)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    hw = TopicPartition("dr", 0, -1)  # OFFSET_END: up to the high watermark
    assert cadmin.delete_records([hw])[hw].result(WAIT).low_watermark == 20

    cluster = cadmin.describe_cluster(request_timeout=WAIT).result(WAIT)
    assert cluster.cluster_id == "omnibus-single-node-cluster"
    assert [n.id for n in cluster.nodes] == [0] and cluster.controller.id == 0
    assert cluster.nodes[0].port == broker.port("kafka")


# -- configs applied to the logs -----------------------------------------------------------------------

def test_retention_ms_via_alter_configs_trims(broker, cadmin):
    _result(cadmin.create_topics([NewTopic("ret", 1, 1, config={"segment.bytes": "1024"})]))
    p = Producer({"bootstrap.servers": broker.kafka_bootstrap, "linger.ms": 0})
    old = int(time.time() * 1000) - 3_600_000  # an hour ago
    for i in range(40):
        p.produce("ret", value=b"x" * 100, timestamp=old)
        p.flush(WAIT)
    p.produce("ret", value=b"new")
    assert p.flush(WAIT) == 0
    c = Consumer({"bootstrap.servers": broker.kafka_bootstrap, "group.id": "x"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition("ret", 0), timeout=WAIT)
        assert (low, high) == (0, 41)
        res = ConfigResource(ResourceType.TOPIC, "ret", incremental_configs=[
            ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)])
        cadmin.incremental_alter_configs([res])[res].result(WAIT)
        deadline = time.monotonic() + WAIT
        while low == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            low, high = c.get_watermark_offsets(TopicPartition("ret", 0), timeout=WAIT, cached=False)
        assert 30 <= low <= 40 and high == 41  # old segments gone; the active one (with "new") stays
    finally:
        c.close()


def test_max_message_bytes_and_restart(tmp_path):
    with SyncBroker(tmp_path) as b:
        a = AdminClient({"bootstrap.servers": b.kafka_bootstrap})
        _result(a.create_topics([NewTopic("mm", 1, 1, config={"max.message.bytes": "2000"})]))
        p = Producer({"bootstrap.servers": b.kafka_bootstrap, "linger.ms": 0, "compression.type": "none"})
        errors = []
        p.produce("mm", value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
        p.flush(WAIT)
        p.produce("mm", value=b"small", on_delivery=lambda err, msg: errors.append(err))
        p.flush(WAIT)
        assert [e.code() if e else None for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE, None]
    with SyncBroker(tmp_path) as b:  # configs come back with the topic
        a = AdminClient({"bootstrap.servers": b.kafka_bootstrap})
        res = ConfigResource(ResourceType.TOPIC, "mm")
        assert a.describe_configs([res])[res].result(WAIT)["max.message.bytes"].value == "2000"
        assert b.call(lambda: b.server.kafka.topics["mm"].partition(0).config.max_batch_bytes) == 2000


def test_create_topics_reports_configs_and_validate_only(broker):
    import socket

    from omnibus.wire.kafka import messages as M
    from omnibus.wire.kafka.connection import KafkaClientConnection

    host, port = broker.kafka_bootstrap.split(":")
    client = KafkaClientConnection()
    T = M.CreateTopicsRequest
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        def call(body, version):
            sock.sendall(client.send_request(body, version))
            while True:
                client.receive_data(sock.recv(65536))
                evs = client.events()
                if evs:
                    return evs[0].body

        req = T(topics=[T.CreatableTopic(name="kip525", num_partitions=2, replication_factor=1, assignments=[],
                                         configs=[T.CreatableTopicConfig(name="retention.ms", value="1000")])],
                timeout_ms=5000, validate_only=True)
        res = call(req, 7).topics[0]
        assert res.error_code == 0 and res.num_partitions == 2
        cfg = {c.name: (c.value, c.config_source) for c in res.configs}
        assert cfg["retention.ms"] == ("1000", 1) and cfg["cleanup.policy"] == ("delete", 5)
        assert "kip525" not in broker.call(lambda: list(broker.server.kafka.topics))  # validate_only


def test_delete_topic_answers_pending_fetch(broker, kadmin):
    import socket

    from omnibus.wire.kafka import messages as M
    from omnibus.wire.kafka.connection import KafkaClientConnection

    kadmin.create_topics([KNewTopic("polled", 1, 1)])
    host, port = broker.kafka_bootstrap.split(":")
    client = KafkaClientConnection()
    F = M.FetchRequest
    req = F(max_wait_ms=20000, min_bytes=1, topics=[F.FetchTopic(topic="polled", partitions=[
        F.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=65536)])], forgotten_topics_data=[])
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(client.send_request(req, 12))
        time.sleep(0.2)  # the fetch is now long-polling the empty partition
        started = time.monotonic()
        kadmin.delete_topics(["polled"])
        resp = None
        while resp is None:
            client.receive_data(sock.recv(65536))
            evs = client.events()
            resp = evs[0].body if evs else None
        assert time.monotonic() - started < 5  # answered at the delete, not at max_wait_ms
        assert resp.responses[0].partitions[0].error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION


def _raw_call(sock, client, body, version):
    sock.sendall(client.send_request(body, version))
    while True:
        client.receive_data(sock.recv(65536))
        evs = client.events()
        if evs:
            return evs[0].body


def test_delete_by_topic_id_documentation_and_restart(tmp_path):
    import socket
    import uuid

    from omnibus.wire.kafka import messages as M
    from omnibus.wire.kafka.connection import KafkaClientConnection

    D = M.DeleteTopicsRequest
    with SyncBroker(tmp_path) as b:
        a = KafkaAdminClient(bootstrap_servers=b.kafka_bootstrap)
        a.create_topics([KNewTopic("by-id", 1, 1), KNewTopic("by-name", 1, 1), KNewTopic("kept", 1, 1)])
        a.close()
        tid = b.call(lambda: b.server.kafka.topics["by-id"].topic_id)
        host, port = b.kafka_bootstrap.split(":")
        client = KafkaClientConnection()
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            res = _raw_call(sock, client, D(topics=[D.DeleteTopicState(name=None, topic_id=tid.bytes),
                                                    D.DeleteTopicState(name=None, topic_id=uuid.uuid4().bytes),
                                                    D.DeleteTopicState(name="by-name", topic_id=bytes(16))],
                                            timeout_ms=5000), 6)
            assert [(r.name, r.error_code) for r in res.responses] == [("by-id", 0), (None, 100), ("by-name", 0)]
            assert res.responses[0].topic_id == tid.bytes
            res = _raw_call(sock, client, D(topic_names=["nope"], timeout_ms=5000), 5)
            assert (res.responses[0].error_code, res.responses[0].error_message) == (
                3, "This server does not host this topic-partition.")
            C = M.DescribeConfigsRequest
            res = _raw_call(sock, client, C(resources=[C.DescribeConfigsResource(
                resource_type=2, resource_name="kept", configuration_keys=["retention.ms", "cleanup.policy"])],
                include_synonyms=False, include_documentation=True), 4)
            cfgs = {c.name: c for c in res.results[0].configs}
            assert set(cfgs) == {"retention.ms", "cleanup.policy"}
            assert cfgs["retention.ms"].documentation.startswith("This configuration controls the maximum time")
            assert cfgs["retention.ms"].config_type == 5 and cfgs["cleanup.policy"].config_type == 7
            res = _raw_call(sock, client, C(resources=[
                C.DescribeConfigsResource(resource_type=2, resource_name="kept", configuration_keys=[]),
                C.DescribeConfigsResource(resource_type=2, resource_name="bad name", configuration_keys=None),
                C.DescribeConfigsResource(resource_type=4, resource_name="x", configuration_keys=None),
                C.DescribeConfigsResource(resource_type=4, resource_name="7", configuration_keys=None)],
                include_synonyms=False, include_documentation=False), 4)
            assert len(res.results[0].configs) >= 25  # an empty key list means every config
            assert [(r.error_code, r.error_message) for r in res.results[1:]] == [
                (17, 'Topic name "bad name" is illegal, it contains a character other than ASCII alphanumerics, '
                     "'.', '_' and '-'"),
                (42, "Broker id must be an integer, but it is: x"),
                (42, "Unexpected broker id, expected 0 or empty string, but received 7")]
    with SyncBroker(tmp_path) as b:  # deleted topics stay deleted; the kept one is back
        from omnibus.server.kafka_session import KafkaBroker

        assert b.call(lambda: sorted(KafkaBroker.of(b.server).topics)) == ["kept"]
        assert sorted(p.name for p in (b.data_dir / "logs" / "kafka").iterdir()) == ["kept-0"]


def test_kafkajs_admin(broker):
    from tests.helpers import run_node_script

    r = run_node_script("kafkajs_admin.mjs", broker.kafka_bootstrap, "kafkajs")
    assert r["decrease"] == "Number of partitions is invalid"  # kafkajs's text for INVALID_PARTITIONS
    assert r["partitions"] == 3
    assert r["before"] == {"cleanup.policy": ["delete", True, 5], "retention.ms": ["3600000", False, 1]}
    # AlterConfigs replaces the set: retention.ms is back to the default
    assert r["after"] == {"cleanup.policy": ["compact,delete", False, 1], "retention.ms": ["604800000", True, 5]}
    assert r["invalid"] == "Configuration is invalid"  # INVALID_CONFIG
    assert (r["low"], r["high"]) == ("4", "10")
    assert (r["clusterId"], r["brokers"], r["controller"]) == ("omnibus-single-node-cluster", 1, 0)
    assert r["remaining"] == []
