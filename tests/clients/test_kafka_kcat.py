"""Kafka, first slice, with kcat (Debian package ``kcat``, librdkafka underneath): ``-L`` metadata (text
and JSON), ``-P`` produce with keys, headers and compression, ``-C -e`` consume from the beginning, from
an offset and from the end.

``./scripts/test`` installs kcat (apt-get) when it is missing and it runs as root; nothing here is
skipped: without kcat every test fails and says what to install.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from omnibus import SyncBroker

FORMAT = "%t|%p|%o|%k|%s|%h\n"


@pytest.fixture
def broker(tmp_path):
    with SyncBroker(tmp_path) as b:
        yield b


def kcat(boot: str, *args: str, input: bytes | None = None, timeout: float = 30) -> str:
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        pytest.fail("kcat is not installed: apt-get install -y kcat (./scripts/test does it when run as root)")
    proc = subprocess.run([binary, "-b", boot, "-X", "socket.timeout.ms=10000", *args], input=input,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, f"kcat {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
    return proc.stdout.decode()


def consume(boot: str, topic: str, *args: str) -> list[list[str]]:
    out = kcat(boot, "-C", "-t", topic, "-e", "-q", "-f", FORMAT, *args)
    return [line.split("|") for line in out.splitlines() if line]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume(broker, codec):
    boot = broker.kafka_bootstrap
    lines = b"".join(b"k%d:value %d\n" % (i, i) for i in range(50))
    kcat(boot, "-P", "-t", "kc", "-K", ":", "-H", "src=kcat", "-H", f"codec={codec}", "-z", codec, input=lines)
    got = consume(boot, "kc", "-o", "beginning")
    assert got == [["kc", "0", str(i), f"k{i}", f"value {i}", f"src=kcat,codec={codec}"] for i in range(50)]
    # -o <offset> and -o -N (N from the end)
    assert [r[2] for r in consume(boot, "kc", "-o", "45")] == ["45", "46", "47", "48", "49"]
    assert [r[4] for r in consume(boot, "kc", "-o", "-2")] == ["value 48", "value 49"]
    # -o end -e: nothing to read, exits at once
    assert consume(boot, "kc", "-o", "end") == []


def test_produce_to_partition_and_metadata(broker):
    boot = broker.kafka_bootstrap
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic("parts", 3, 1)])["parts"].result(10)
    for p in range(3):
        kcat(boot, "-P", "-t", "parts", "-p", str(p), input=b"a%d\nb%d\n" % (p, p))
    for p in range(3):
        assert [r[4] for r in consume(boot, "parts", "-p", str(p), "-o", "beginning")] == [f"a{p}", f"b{p}"]

    text = kcat(boot, "-L")
    host, port = boot.rsplit(":", 1)
    assert f"broker 0 at {host}:{port} (controller)" in text
    assert 'topic "parts" with 3 partitions:' in text
    assert "partition 2, leader 0, replicas: 0, isrs: 0" in text

    md = json.loads(kcat(boot, "-L", "-J", "-t", "parts"))
    assert md["controllerid"] == 0
    assert md["brokers"] == [{"id": 0, "name": f"{host}:{port}"}]
    [topic] = md["topics"]
    assert topic["topic"] == "parts" and "error" not in topic
    assert [(p["partition"], p["leader"], p["replicas"], p["isrs"]) for p in topic["partitions"]] == [
        (i, 0, [{"id": 0}], [{"id": 0}]) for i in range(3)]
