"""Kafka SASL (SASL_PLAINTEXT) with real clients: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 with
confluent-kafka (librdkafka: SaslHandshake v1 + SaslAuthenticate) and kafka-python (the same, and the
legacy SaslHandshake v0 raw-token exchange when told the broker is 0.11), good and bad passwords, an
unsupported mechanism, and a client that skips authentication (its first non-SASL request closes the
connection, as Kafka does).
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from omnibus import SyncBroker
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.connection import KafkaClientConnection

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka import TopicPartition as KafkaTopicPartition  # noqa: E402
from kafka.errors import KafkaError as KafkaPythonError  # noqa: E402

USERS = [{"user": "alice", "password": "alice-secret"}, {"user": "bob=,x", "password": "pw2"}]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
WAIT = 15


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with SyncBroker(tmp_path_factory.mktemp("sasl"), settings={"kafka.users": USERS}) as b:
        yield b


def _conf(broker, mech: str, user: str, password: str, **extra) -> dict:
    return {"bootstrap.servers": broker.kafka_bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mech, "sasl.username": user, "sasl.password": password, **extra}


@pytest.mark.parametrize("mech", MECHANISMS)
def test_confluent_good_password(broker, mech):
    topic = f"sasl-c-{mech.lower()}"
    errors: list = []
    p = Producer(_conf(broker, mech, "alice", "alice-secret", **{"error_cb": errors.append, "linger.ms": 0}))
    for i in range(5):
        p.produce(topic, value=b"m%d" % i, key=b"k")
    assert p.flush(WAIT) == 0
    c = Consumer(_conf(broker, mech, "bob=,x", "pw2", **{"group.id": "g", "enable.auto.commit": False}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got: list = []
        deadline = time.monotonic() + WAIT
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        assert got == [b"m%d" % i for i in range(5)]
    finally:
        c.close()
    assert errors == []


@pytest.mark.parametrize("mech", MECHANISMS)
def test_confluent_bad_password(broker, mech):
    errors: list = []
    p = Producer(_conf(broker, mech, "alice", "wrong", error_cb=errors.append))
    deadline = time.monotonic() + WAIT
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION
    expected = ("Authentication failed: Invalid username or password" if mech == "PLAIN" else
                f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}")
    assert expected in errors[0].str()


def test_confluent_unsupported_mechanism(tmp_path):
    with SyncBroker(tmp_path, settings={"kafka.users": USERS, "kafka.sasl_enabled_mechanisms": ["SCRAM-SHA-512"]}) as b:
        errors: list = []
        p = Producer(_conf(b, "PLAIN", "alice", "alice-secret", error_cb=errors.append))
        deadline = time.monotonic() + WAIT
        while not errors and time.monotonic() < deadline:
            p.poll(0.2)
        assert errors, "no error reported"
        assert "SCRAM-SHA-512" in errors[0].str()  # librdkafka quotes the broker's enabled list


def _kafka_python(broker, mech, user, password, **kw):
    return dict(bootstrap_servers=broker.kafka_bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mech,
                sasl_plain_username=user, sasl_plain_password=password, request_timeout_ms=10000, **kw)


@pytest.mark.parametrize("mech", MECHANISMS)
@pytest.mark.parametrize("legacy", [False, True], ids=["authenticate", "handshake-v0-raw"])
def test_kafka_python_good_password(broker, mech, legacy):
    topic = f"sasl-kp-{mech.lower()}-{int(legacy)}"
    kw = {"api_version": (0, 11, 0)} if legacy else {}
    p = KafkaProducer(**_kafka_python(broker, mech, "alice", "alice-secret", **kw))
    p.send(topic, b"hello").get(WAIT)
    p.close()
    c = KafkaConsumer(**_kafka_python(broker, mech, "alice", "alice-secret", **kw), group_id=None)
    try:
        c.assign([KafkaTopicPartition(topic, 0)])
        c.seek_to_beginning()
        got: list = []
        deadline = time.monotonic() + WAIT
        while not got and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=200).values():
                got += [r.value for r in records]
        assert got == [b"hello"]
    finally:
        c.close()


@pytest.mark.parametrize("mech", MECHANISMS)
@pytest.mark.parametrize("legacy", [False, True], ids=["authenticate", "handshake-v0-raw"])
def test_kafka_python_bad_password(broker, mech, legacy, caplog):
    kw = {"api_version": (0, 11, 0)} if legacy else {}
    caplog.set_level(logging.WARNING, logger="kafka")
    with pytest.raises(KafkaPythonError):
        p = KafkaProducer(**_kafka_python(broker, mech, "alice", "nope", max_block_ms=1000, bootstrap_timeout_ms=1000,
                                          **kw))
        try:
            p.send("never", b"x").get(WAIT)  # with api_version given, the first connection is made here
        finally:
            p.close(timeout=0)
    if not legacy:  # SaslAuthenticate carries Kafka's message; after raw tokens the broker just closes
        expected = ("Authentication failed: Invalid username or password" if mech == "PLAIN" else
                    "Authentication failed during authentication due to invalid credentials with SASL mechanism "
                    + mech)
        assert expected in caplog.text


def _raw(broker) -> tuple[socket.socket, KafkaClientConnection]:
    host, port = broker.kafka_bootstrap.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock, KafkaClientConnection()


def _call(sock, client, body, version):
    sock.sendall(client.send_request(body, version))
    while True:
        data = sock.recv(65536)
        if not data:
            return None
        client.receive_data(data)
        evs = client.events()
        if evs:
            return evs[0].body


def test_unauthenticated_request_closes(broker):
    sock, client = _raw(broker)
    try:
        # ApiVersions is served before authentication ...
        resp = _call(sock, client, M.ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
        assert resp.error_code == 0
        assert {k.api_key for k in resp.api_keys} >= {M.SASL_HANDSHAKE, M.SASL_AUTHENTICATE}
        # ... anything else closes the connection without an answer.
        assert _call(sock, client, M.MetadataRequest(topics=None), 1) is None
    finally:
        sock.close()


def test_raw_handshake_errors(broker):
    sock, client = _raw(broker)
    try:
        resp = _call(sock, client, M.SaslHandshakeRequest(mechanism="GSSAPI"), 1)
        assert resp.error_code == 33 and resp.mechanisms == MECHANISMS  # UNSUPPORTED_SASL_MECHANISM
        assert sock.recv(10) == b""  # then closed, as Kafka does
    finally:
        sock.close()
    sock, client = _raw(broker)
    try:
        assert _call(sock, client, M.SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == 0
        resp = _call(sock, client, M.SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00bad"), 2)
        assert (resp.error_code, resp.error_message) == (58, "Authentication failed: Invalid username or password")
        assert sock.recv(10) == b""
    finally:
        sock.close()
    sock, client = _raw(broker)
    try:
        assert _call(sock, client, M.SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == 0
        resp = _call(sock, client, M.SaslAuthenticateRequest(auth_bytes=b"\x00alice\x00alice-secret"), 2)
        assert (resp.error_code, resp.session_lifetime_ms) == (0, 0)
        assert _call(sock, client, M.MetadataRequest(topics=[]), 1).brokers[0].node_id == 0
        resp = _call(sock, client, M.SaslAuthenticateRequest(auth_bytes=b"x"), 2)
        assert resp.error_code == 34  # ILLEGAL_SASL_STATE after authentication
    finally:
        sock.close()


def test_no_users_means_no_sasl(tmp_path):
    with SyncBroker(tmp_path) as b:
        sock, client = _raw(b)
        try:
            assert _call(sock, client, M.MetadataRequest(topics=[]), 1).brokers[0].node_id == 0
            assert _call(sock, client, M.SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == 34
        finally:
            sock.close()


@pytest.mark.parametrize("mech", MECHANISMS)
def test_kafkajs(broker, mech):
    import json
    import shutil
    import subprocess

    from tests.helpers import JS_DIR

    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("node and tests/clients/js/node_modules/kafkajs are needed: run ./scripts/test (npm ci)")

    def run(password: str) -> dict:
        proc = subprocess.run([node, str(JS_DIR / "kafkajs_sasl.mjs"), broker.kafka_bootstrap, mech.lower(), "alice",
                               password], cwd=JS_DIR, capture_output=True, text=True, timeout=45,
                              stdin=subprocess.DEVNULL)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert run("alice-secret") == {"ok": True, "high": "1"}
    r = run("wrong")
    expected = ("Authentication failed: Invalid username or password" if mech == "PLAIN" else
                f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mech}")
    assert r["ok"] is False and r["type"] == "KafkaJSSASLAuthenticationError" and r["message"].endswith(expected)


@pytest.mark.parametrize("mech", MECHANISMS)
def test_aiokafka(broker, mech, caplog):
    import asyncio

    aiokafka = pytest.importorskip("aiokafka")
    from aiokafka.errors import KafkaConnectionError

    async def send(password: str) -> None:
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.kafka_bootstrap, security_protocol="SASL_PLAINTEXT",
                                      sasl_mechanism=mech, sasl_plain_username="alice", sasl_plain_password=password,
                                      request_timeout_ms=5000)
        try:
            await p.start()
            await p.send_and_wait(f"aio-sasl-{mech.lower()}", b"x")
        finally:
            await p.stop()

    asyncio.run(send("alice-secret"))
    caplog.set_level(logging.ERROR, logger="aiokafka")
    with pytest.raises(KafkaConnectionError):
        asyncio.run(send("wrong"))
    assert "[Error 58] SaslAuthenticationFailed: Authentication failed" in caplog.text


def test_client_without_sasl_is_disconnected(broker):
    # librdkafka (PLAINTEXT) sends ApiVersions, which is answered, then Metadata, which closes the connection.
    errors: list = []
    p = Producer({"bootstrap.servers": broker.kafka_bootstrap, "error_cb": errors.append,
                  "reconnect.backoff.ms": 1000})
    deadline = time.monotonic() + WAIT
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    assert errors and errors[0].code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
    md = None
    with pytest.raises(confluent_kafka.KafkaException):
        md = p.list_topics(timeout=1)
    assert md is None
