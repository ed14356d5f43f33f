"""Kafka consumer groups and committed offsets with real clients against Omnibus: kafka-python
(``KafkaConsumer(group_id=...)`` members splitting a topic, commits surviving a broker restart, the admin's
list/describe/delete of groups and their offsets), aiokafka, confluent-kafka (subscribe, rebalance on a
second member, commit, ``committed()``), kcat ``-G``; plus raw requests for the answers clients only see
when something is wrong (FindCoordinator v4, bad session timeouts, commits from strangers, DeleteGroups)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as AioTP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.connection import KafkaClientConnection

#: Fast group timings for tests: Kafka's minimum session timeout (6 s), heartbeats every 100 ms.
FAST = dict(session_timeout_ms=6000, heartbeat_interval_ms=100)
#: kafka-python 3.0.12 can lose a completed join when a short poll times out inside its join-complete step
#: (the member then keeps an empty assignment): polls here are long enough to finish a rebalance.
POLL_MS = 500


def create_topic(boot: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=boot)
    admin.create_topics([NewTopic(name, partitions, 1)])
    admin.close()


def produce(boot: str, topic: str, partitions: int, per_partition: int, start: int = 0) -> None:
    p = KafkaProducer(bootstrap_servers=boot, acks="all")
    for i in range(start, start + per_partition):
        for part in range(partitions):
            p.send(topic, b"p%d-%d" % (part, i), partition=part)
    p.flush()
    p.close()


def poll_until(consumers, done, timeout: float = 20.0, got: dict | None = None):
    """Poll every consumer in turn (kafka-python rejoins inside poll) until ``done(got)``; ``got`` maps
    ``id(consumer)`` to the records it returned (pass the same dict to go on counting)."""
    got = {} if got is None else got
    for c in consumers:
        got.setdefault(id(c), [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            for recs in c.poll(timeout_ms=POLL_MS).values():
                got[id(c)] += recs
        if done(got):
            return got
    raise AssertionError(f"timed out; assignments {[c.assignment() for c in consumers]}, "
                         f"got {[len(v) for v in got.values()]}")


def test_kafka_python_two_members_split_commit_and_resume_after_restart(omnibus_broker_factory, tmp_path):
    data = tmp_path / "data"
    broker = omnibus_broker_factory(data_dir=data)
    boot = broker.kafka_bootstrap
    create_topic(boot, "split", 2)
    produce(boot, "split", 2, 10)
    c1 = KafkaConsumer("split", bootstrap_servers=boot, group_id="g-split", auto_offset_reset="earliest",
                       enable_auto_commit=False, client_id="one", **FAST)
    got: dict = {}
    poll_until([c1], lambda got: len(c1.assignment()) == 2, got=got)
    c2 = KafkaConsumer("split", bootstrap_servers=boot, group_id="g-split", auto_offset_reset="earliest",
                       enable_auto_commit=False, client_id="two", **FAST)
    # the second member joins: c1 learns of the rebalance from a heartbeat and rejoins; one partition each
    poll_until([c1, c2], lambda got: len(c1.assignment()) == 1 and len(c2.assignment()) == 1
               and len({r.value for recs in got.values() for r in recs}) >= 20, got=got)
    assert c1.assignment() | c2.assignment() == {TopicPartition("split", 0), TopicPartition("split", 1)}
    values = sorted(r.value for recs in got.values() for r in recs)
    assert len(set(values)) == 20  # every record at least once (c1 may re-read before the split)
    c1.commit()
    c2.commit()
    for c in (c1, c2):
        (tp,) = c.assignment()
        assert c.committed(tp) == 10
    admin = KafkaAdminClient(bootstrap_servers=boot)
    desc = admin.describe_groups(["g-split"])["g-split"]
    assert desc["group_state"] == "Stable" and desc["protocol_type"] == "consumer"
    assert sorted(m["client_id"] for m in desc["members"]) == ["one", "two"]
    assert all(m["client_host"] == "/127.0.0.1" for m in desc["members"])
    admin.close()
    c1.close()
    c2.close()
    produce(boot, "split", 2, 5, start=10)  # produced after the commits: the next member reads only these
    broker.stop()

    broker = omnibus_broker_factory(data_dir=data)
    boot = broker.kafka_bootstrap
    c3 = KafkaConsumer("split", bootstrap_servers=boot, group_id="g-split", auto_offset_reset="earliest",
                       enable_auto_commit=False, **FAST)
    assert c3.committed(TopicPartition("split", 0)) == 10
    got = poll_until([c3], lambda got: sum(map(len, got.values())) >= 10)
    recs = got[id(c3)]
    assert sorted((r.partition, r.offset) for r in recs) == [(p, o) for p in range(2) for o in range(10, 15)]
    c3.close()


def test_kafka_python_auto_commit_on_close_and_admin_offsets(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create_topic(boot, "ac", 1)
    produce(boot, "ac", 1, 7)
    c = KafkaConsumer("ac", bootstrap_servers=boot, group_id="g-ac", auto_offset_reset="earliest",
                      enable_auto_commit=True, **FAST)
    poll_until([c], lambda got: sum(map(len, got.values())) >= 7)
    c.close()  # commits the consumed position
    admin = KafkaAdminClient(bootstrap_servers=boot)
    offsets = admin.list_group_offsets(["g-ac"])["g-ac"]
    assert {tp: o.offset for tp, o in offsets.items()} == {TopicPartition("ac", 0): 7}
    admin.close()


def test_kafka_python_admin_list_describe_delete_groups(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap
    create_topic(boot, "adm", 2)
    produce(boot, "adm", 2, 3)
    c = KafkaConsumer("adm", bootstrap_servers=boot, group_id="g-live", auto_offset_reset="earliest",
                      enable_auto_commit=False, client_id="live", **FAST)
    poll_until([c], lambda got: sum(map(len, got.values())) >= 6)
    c.commit()
    simple = KafkaConsumer(bootstrap_servers=boot, group_id="g-simple", enable_auto_commit=False)
    simple.assign([TopicPartition("adm", 0)])
    from kafka.structs import OffsetAndMetadata
    simple.commit({TopicPartition("adm", 0): OffsetAndMetadata(2, "meta", -1)})  # generation -1: no group
    simple.close()

    admin = KafkaAdminClient(bootstrap_servers=boot)
    groups = {g["group_id"]: g for g in admin.list_groups()}
    assert groups["g-live"]["protocol_type"] == "consumer" and groups["g-live"]["group_state"] == "Stable"
    assert groups["g-simple"]["protocol_type"] == "" and groups["g-simple"]["group_state"] == "Empty"
    assert [g["group_id"] for g in admin.list_groups(states_filter=["stable"])] == ["g-live"]
    desc = admin.describe_groups(["g-live", "nope"])
    live = desc["g-live"]
    assert live["group_state"] == "Stable" and live["protocol_data"] == "range"  # kafka-python prefers range
    (member,) = live["members"]
    assert member["client_id"] == "live"
    assert member["member_metadata"]["topics"] == ["adm"]
    assert member["member_assignment"]["assigned_partitions"] == [{"topic": "adm", "partitions": [0, 1]}]
    assert desc["nope"]["group_state"] == "Dead" and desc["nope"]["members"] == []
    offsets = admin.list_group_offsets(["g-simple"])["g-simple"]
    assert offsets[TopicPartition("adm", 0)].offset == 2 and offsets[TopicPartition("adm", 0)].metadata == "meta"

    assert admin.delete_groups(["g-live", "g-simple", "nope"]) == {
        "g-live": "NonEmptyGroupError", "g-simple": "OK", "nope": "GroupIdNotFoundError"}
    c.close()  # leaves: the group is empty now, and can go
    assert admin.delete_groups(["g-live"]) == {"g-live": "OK"}
    assert admin.list_groups() == []
    assert admin.list_group_offsets(["g-live"])["g-live"] == {}
    admin.close()


def test_aiokafka_group_commit_and_resume(omnibus_broker):
    boot = omnibus_broker.kafka_bootstrap

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=boot)
        await producer.start()
        for i in range(12):
            await producer.send_and_wait("aio", b"m%d" % i)
        await producer.stop()
        tp = AioTP("aio", 0)
        c = AIOKafkaConsumer("aio", bootstrap_servers=boot, group_id="g-aio", auto_offset_reset="earliest",
                             enable_auto_commit=False, **FAST)
        await c.start()
        got = []
        async with asyncio.timeout(20):
            while len(got) < 8:
                for recs in (await c.getmany(timeout_ms=200, max_records=8 - len(got))).values():
                    got += recs
        await c.commit({tp: got[-1].offset + 1})
        assert await c.committed(tp) == 8
        await c.stop()
        c = AIOKafkaConsumer("aio", bootstrap_servers=boot, group_id="g-aio", auto_offset_reset="earliest",
                             enable_auto_commit=False, **FAST)
        await c.start()
        rest = []
        async with asyncio.timeout(20):
            while len(rest) < 4:
                for recs in (await c.getmany(timeout_ms=200)).values():
                    rest += recs
        await c.stop()
        return [r.value for r in got], [r.offset for r in rest]

    first, rest = asyncio.run(main())
    assert first == [b"m%d" % i for i in range(8)] and rest == [8, 9, 10, 11]


def test_confluent_kafka_subscribe_rebalance_commit(omnibus_broker):
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka import TopicPartition as CTP

    boot = omnibus_broker.kafka_bootstrap
    create_topic(boot, "ck", 2)
    errors = []

    def error_cb(err):
        if err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            errors.append(err)

    p = Producer({"bootstrap.servers": boot, "error_cb": error_cb})
    for i in range(20):
        p.produce("ck", b"v%d" % i, partition=i % 2)
    p.flush(10)
    assigned: dict[str, list] = {"a": [], "b": []}

    def consumer(name):
        c = Consumer({"bootstrap.servers": boot, "group.id": "g-ck", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 100,
                      "error_cb": error_cb, "client.id": name})

        def on_assign(cons, parts):
            assigned[name] = sorted(tp.partition for tp in parts)

        c.subscribe(["ck"], on_assign=on_assign)
        return c

    a = consumer("a")
    seen = []
    deadline = time.monotonic() + 20
    while len(assigned["a"]) < 2 and time.monotonic() < deadline:
        m = a.poll(0.1)
        if m is not None and not m.error():
            seen.append(m)
    assert assigned["a"] == [0, 1]
    b = consumer("b")
    deadline = time.monotonic() + 30
    while not (len(assigned["a"]) == 1 and len(assigned["b"]) == 1) and time.monotonic() < deadline:
        for c in (a, b):
            m = c.poll(0.05)
            if m is not None and not m.error():
                seen.append(m)
    assert sorted(assigned["a"] + assigned["b"]) == [0, 1], assigned
    got = {}
    deadline = time.monotonic() + 20
    while len(got) < 20 and time.monotonic() < deadline:
        for c in (a, b):
            m = c.poll(0.05)
            if m is not None and not m.error():
                got[(m.partition(), m.offset())] = c
    for m in seen:
        got.setdefault((m.partition(), m.offset()), None)
    assert len(got) == 20
    for c in (a, b):
        c.commit(asynchronous=False)
    for name, c in (("a", a), ("b", b)):
        (part,) = assigned[name]
        (tp,) = c.committed([CTP("ck", part)], timeout=10)
        assert tp.offset == 10 and tp.error is None
    a.close()
    b.close()
    assert errors == []


def test_confluent_kafka_static_member_restart_keeps_its_place(omnibus_broker):
    """A static member (group.instance.id) that closes sends no LeaveGroup; a new instance with the same id
    takes its place without a rebalance of the others, and the old member id is fenced."""
    from confluent_kafka import Consumer, KafkaError

    boot = omnibus_broker.kafka_bootstrap
    create_topic(boot, "st", 2)
    errors = []

    def error_cb(err):
        if err.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
            errors.append(err)

    assigned: dict = {}
    assigns: list = []

    def on_assign(name, parts):
        assigned[name] = sorted(p.partition for p in parts)
        assigns.append(name)

    def consumer(name, instance):
        c = Consumer({"bootstrap.servers": boot, "group.id": "g-static", "group.instance.id": instance,
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 100, "error_cb": error_cb,
                      "auto.offset.reset": "earliest", "client.id": name})
        c.subscribe(["st"], on_assign=lambda cons, parts: on_assign(name, parts))
        return c

    def poll_all(consumers, done, timeout=20):
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            for c in consumers:
                c.poll(0.05)
        assert done(), assigned

    a, b = consumer("a", "inst-a"), consumer("b", "inst-b")
    poll_all([a, b], lambda: len(assigned.get("a", [])) == 1 and len(assigned.get("b", [])) == 1)
    raw = Raw(omnibus_broker.port("kafka"))
    before = {m.group_instance_id: m.member_id
              for m in raw.call(M.DescribeGroupsRequest(groups=["g-static"]), 4).groups[0].members}
    assert set(before) == {"inst-a", "inst-b"}
    b.close()  # a static member leaves no LeaveGroup behind: it stays in the group
    group = raw.call(M.DescribeGroupsRequest(groups=["g-static"]), 4).groups[0]
    assert group.group_state == "Stable" and len(group.members) == 2
    b_assignment = assigned.pop("b")
    assigns.clear()
    b2 = consumer("b2", "inst-b")
    poll_all([a, b2], lambda: "b2" in assigned)
    for _ in range(10):
        a.poll(0.05)
    assert assigned["b2"] == b_assignment and assigns == ["b2"]  # the same partitions; a was not rebalanced
    group = raw.call(M.DescribeGroupsRequest(groups=["g-static"]), 4).groups[0]
    after = {m.group_instance_id: m.member_id for m in group.members}
    assert group.group_state == "Stable" and after["inst-a"] == before["inst-a"]
    assert after["inst-b"] != before["inst-b"]
    hb = raw.call(M.HeartbeatRequest(group_id="g-static", generation_id=-1, member_id=before["inst-b"],
                                     group_instance_id="inst-b"), 3)
    assert hb.error_code == E.FENCED_INSTANCE_ID
    a.close()
    b2.close()
    assert errors == []


def test_kcat_balanced_consumer_commits(omnibus_broker):
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        pytest.fail("kcat is not installed: apt-get install -y kcat")
    boot = omnibus_broker.kafka_bootstrap
    create_topic(boot, "kg", 2)
    produce(boot, "kg", 2, 5)
    proc = subprocess.run([binary, "-b", boot, "-G", "g-kcat", "-o", "beginning", "-e", "-q", "-f", "%p:%o %s\n",
                           "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=100", "kg"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = sorted(proc.stdout.decode().split("\n")[:-1])
    assert lines == sorted(f"{p}:{o} p{p}-{o}" for p in range(2) for o in range(5))
    admin = KafkaAdminClient(bootstrap_servers=boot)
    offsets = admin.list_group_offsets(["g-kcat"])["g-kcat"]  # committed when kcat closed its consumer
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 5, 1: 5}
    admin.close()


# -- raw requests ------------------------------------------------------------------------------------------
class Raw:
    """One connection speaking the codec's client side. ``call(body, version)`` sends and waits for the
    answer; ``call(None, None)`` only waits for the next answer of a request sent earlier."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.client = KafkaClientConnection()
        self.answers: list = []

    def call(self, body, version):
        if body is not None:
            self.sock.sendall(self.client.send_request(body, version))
        while not self.answers:
            self.answers += self.client.events()
            if self.answers:
                break
            data = self.sock.recv(65536)
            assert data, "the broker closed the connection"
            self.client.receive_data(data)
        return self.answers.pop(0).body


def join_body(group, member_id="", session=10_000, instance=None, protocols=(("range", b"x"),)):
    R = M.JoinGroupRequest
    return R(group_id=group, session_timeout_ms=session, rebalance_timeout_ms=10_000, member_id=member_id,
             group_instance_id=instance, protocol_type="consumer",
             protocols=[R.JoinGroupRequestProtocol(name=n, metadata=m) for n, m in protocols])


def test_raw_coordinator_join_sync_commit_errors(omnibus_broker):
    port = omnibus_broker.port("kafka")
    raw = Raw(port)
    raw.call(M.CreateTopicsRequest(topics=[M.CreateTopicsRequest.CreatableTopic(
        name="rt", num_partitions=1, replication_factor=1, assignments=[], configs=[])], timeout_ms=5000,
        validate_only=False), 4)
    # FindCoordinator: this node for groups and transactions, v4 batched
    r = raw.call(M.FindCoordinatorRequest(key="g", key_type=0), 3)
    assert (r.error_code, r.node_id, r.port) == (0, 0, port)
    r = raw.call(M.FindCoordinatorRequest(key_type=1, coordinator_keys=["t1", "t2"]), 4)
    assert [(c.key, c.node_id, c.port, c.error_code) for c in r.coordinators] == [
        ("t1", 0, port, 0), ("t2", 0, port, 0)]
    assert raw.call(M.FindCoordinatorRequest(key="g", key_type=7), 2).error_code == E.INVALID_REQUEST
    # JoinGroup errors
    assert raw.call(join_body("g", session=100), 5).error_code == E.INVALID_SESSION_TIMEOUT
    assert raw.call(join_body(""), 5).error_code == E.INVALID_GROUP_ID
    assert raw.call(join_body("g", member_id="stranger"), 5).error_code == E.UNKNOWN_MEMBER_ID
    r = raw.call(join_body("g"), 5)
    assert r.error_code == E.MEMBER_ID_REQUIRED and r.member_id
    member = r.member_id
    r = raw.call(join_body("g", member), 7)
    assert (r.error_code, r.generation_id, r.leader, r.protocol_type, r.protocol_name) == (
        0, 1, member, "consumer", "range")
    assert [(m.member_id, bytes(m.metadata)) for m in r.members] == [(member, b"x")]
    assert raw.call(join_body("g", protocols=(("sticky", b""),)), 5).error_code == E.INCONSISTENT_GROUP_PROTOCOL
    # OffsetCommit while CompletingRebalance; then SyncGroup, then commits and fetches
    OC = M.OffsetCommitRequest

    def commit(gen, mid, offset=5, topic="rt", partition=0, metadata="m"):
        r = raw.call(OC(group_id="g", generation_id_or_member_epoch=gen, member_id=mid, topics=[
            OC.OffsetCommitRequestTopic(name=topic, partitions=[OC.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_metadata=metadata)])]), 8)
        return r.topics[0].partitions[0].error_code

    assert commit(1, member) == E.REBALANCE_IN_PROGRESS
    SG = M.SyncGroupRequest
    r = raw.call(SG(group_id="g", generation_id=1, member_id=member, protocol_type="consumer", protocol_name="range",
                    assignments=[SG.SyncGroupRequestAssignment(member_id=member, assignment=b"mine")]), 5)
    assert (r.error_code, bytes(r.assignment), r.protocol_name) == (0, b"mine", "range")
    assert commit(1, member) == 0
    assert commit(0, member) == E.ILLEGAL_GENERATION
    assert commit(-1, "") == E.UNKNOWN_MEMBER_ID  # the group has members: strangers may not commit
    assert commit(1, member, topic="nope") == E.UNKNOWN_TOPIC_OR_PARTITION
    assert commit(1, member, partition=3) == E.UNKNOWN_TOPIC_OR_PARTITION
    assert commit(1, member, metadata="x" * 4097) == E.OFFSET_METADATA_TOO_LARGE
    HB = M.HeartbeatRequest
    assert raw.call(HB(group_id="g", generation_id=1, member_id=member), 4).error_code == 0
    assert raw.call(HB(group_id="g", generation_id=2, member_id=member), 4).error_code == E.ILLEGAL_GENERATION
    OF = M.OffsetFetchRequest
    r = raw.call(OF(group_id="g", topics=[OF.OffsetFetchRequestTopic(name="rt", partition_indexes=[0, 1])]), 7)
    assert [(p.partition_index, p.committed_offset, p.metadata) for p in r.topics[0].partitions] == [
        (0, 5, "m"), (1, -1, "")]
    r = raw.call(OF(groups=[OF.OffsetFetchRequestGroup(group_id="g", topics=None),
                            OF.OffsetFetchRequestGroup(group_id="none", topics=None)]), 8)
    assert [(g.group_id, [(t.name, [(p.partition_index, p.committed_offset) for p in t.partitions]) for t in g.topics])
            for g in r.groups] == [("g", [("rt", [(0, 5)])]), ("none", [])]
    # DeleteGroups, LeaveGroup v3 batched
    DG = M.DeleteGroupsRequest
    r = raw.call(DG(groups_names=["g", "missing"]), 2)
    assert [(x.group_id, x.error_code) for x in r.results] == [
        ("g", E.NON_EMPTY_GROUP), ("missing", E.GROUP_ID_NOT_FOUND)]
    LG = M.LeaveGroupRequest
    r = raw.call(LG(group_id="g", members=[LG.MemberIdentity(member_id=member), LG.MemberIdentity(member_id="x")]), 4)
    assert (r.error_code, [(m.member_id, m.error_code) for m in r.members]) == (
        0, [(member, 0), ("x", E.UNKNOWN_MEMBER_ID)])
    assert raw.call(LG(group_id="g", member_id="x"), 1).error_code == E.UNKNOWN_MEMBER_ID
    r = raw.call(M.ListGroupsRequest(states_filter=["Empty"]), 4)
    assert [(g.group_id, g.group_state) for g in r.groups] == [("g", "Empty")]
    assert commit(-1, "", offset=9) == 0  # an empty group takes simple commits
    r = raw.call(DG(groups_names=["g"]), 2)
    assert [(x.group_id, x.error_code) for x in r.results] == [("g", 0)]
    r = raw.call(OF(group_id="g", topics=None), 7)
    assert r.topics == [] and r.error_code == 0


@pytest.mark.omnibus(kafka__group_min_session_timeout_ms=100, kafka__group_initial_rebalance_delay_ms=300)
def test_raw_initial_delay_session_expiry_and_no_leftover_timers(omnibus_broker):
    """Two members joining 100 ms apart land in one generation (group.initial.rebalance.delay.ms); a member
    that stops heartbeating is expired after its session timeout and the group rebalances; a member whose
    connection simply closes expires too; afterwards no timer is left."""
    port = omnibus_broker.port("kafka")
    one, two = Raw(port), Raw(port)

    def member_id(raw):
        r = raw.call(join_body("gd", session=600), 5)
        assert r.error_code == E.MEMBER_ID_REQUIRED
        return r.member_id

    m1, m2 = member_id(one), member_id(two)
    t0 = time.monotonic()
    one.sock.sendall(one.client.send_request(join_body("gd", m1, session=600), 5))
    time.sleep(0.1)
    two.sock.sendall(two.client.send_request(join_body("gd", m2, session=600), 5))
    r1, r2 = one.call(None, None), two.call(None, None)
    waited = time.monotonic() - t0
    assert 0.35 <= waited < 2, waited  # the delay ran again after the second member arrived
    assert r1.generation_id == r2.generation_id == 1 and r1.leader == m1 and len(r1.members) == 2
    SG = M.SyncGroupRequest
    two.sock.sendall(two.client.send_request(SG(group_id="gd", generation_id=1, member_id=m2, assignments=[]), 3))
    r = one.call(SG(group_id="gd", generation_id=1, member_id=m1, assignments=[
        SG.SyncGroupRequestAssignment(member_id=m1, assignment=b"1"),
        SG.SyncGroupRequestAssignment(member_id=m2, assignment=b"2")]), 3)
    assert bytes(r.assignment) == b"1" and bytes(two.call(None, None).assignment) == b"2"
    HB = M.HeartbeatRequest
    deadline = time.monotonic() + 5
    while True:  # m1 heartbeats, m2 stays silent until its 600 ms session runs out
        code = one.call(HB(group_id="gd", generation_id=1, member_id=m1), 3).error_code
        if code == E.REBALANCE_IN_PROGRESS:
            break
        assert code == 0 and time.monotonic() < deadline
        time.sleep(0.1)
    assert two.call(HB(group_id="gd", generation_id=1, member_id=m2), 3).error_code == E.UNKNOWN_MEMBER_ID
    r = one.call(join_body("gd", m1, session=600), 5)
    assert r.generation_id == 2 and [m.member_id for m in r.members] == [m1]
    one.sock.close()  # no LeaveGroup: the session expires
    deadline = time.monotonic() + 5
    while two.call(M.DescribeGroupsRequest(groups=["gd"]), 1).groups[0].group_state != "Empty":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    groups = omnibus_broker.server.kafka_groups
    assert omnibus_broker.call(lambda: (groups.coordinator.next_deadline(), groups._timer)) == (None, None)


def test_offset_fetch_require_stable_sees_open_transaction_offsets(omnibus_broker):
    """OffsetFetch v7+ with require_stable answers UNSTABLE_OFFSET_COMMIT for a partition whose offsets sit
    in an open transaction (KIP-447); once the transaction commits, the offset is there."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka import TopicPartition as CTP

    boot = omnibus_broker.kafka_bootstrap
    create_topic(boot, "ts", 1)
    consumer = Consumer({"bootstrap.servers": boot, "group.id": "g-txn"})
    producer = Producer({"bootstrap.servers": boot, "transactional.id": "tx-groups"})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce("ts", b"x")
    producer.send_offsets_to_transaction([CTP("ts", 0, 42)], consumer.consumer_group_metadata(), 10)
    raw = Raw(omnibus_broker.port("kafka"))
    OF = M.OffsetFetchRequest

    def fetch(stable):
        r = raw.call(OF(group_id="g-txn", require_stable=stable, topics=[
            OF.OffsetFetchRequestTopic(name="ts", partition_indexes=[0])]), 7)
        p = r.topics[0].partitions[0]
        return p.committed_offset, p.error_code

    assert fetch(True) == (-1, E.UNSTABLE_OFFSET_COMMIT)
    assert fetch(False) == (-1, 0)
    producer.commit_transaction(10)
    assert fetch(True) == (42, 0)
    consumer.close()


def test_raw_static_member_rejoin_v9_skips_assignment_and_v8_gets_the_old_leader(omnibus_broker):
    """JoinGroup v9 (KIP-814): a static leader that rejoins a stable group is told it leads, with the members,
    but to skip the assignment; before v9 it is given the old leader id instead (and no members)."""
    raw = Raw(omnibus_broker.port("kafka"))
    r = raw.call(join_body("gs", instance="i-1"), 9)
    assert r.error_code == 0 and r.generation_id == 1 and r.leader == r.member_id and not r.skip_assignment
    first = r.member_id
    SG = M.SyncGroupRequest
    raw.call(SG(group_id="gs", generation_id=1, member_id=first, group_instance_id="i-1", assignments=[
        SG.SyncGroupRequestAssignment(member_id=first, assignment=b"a")]), 5)
    r = raw.call(join_body("gs", instance="i-1"), 9)
    second = r.member_id
    assert (r.error_code, r.generation_id, r.skip_assignment, r.leader) == (0, 1, True, second) and second != first
    assert [(m.member_id, m.group_instance_id) for m in r.members] == [(second, "i-1")]
    r = raw.call(join_body("gs", instance="i-1"), 8)
    assert (r.error_code, r.generation_id, r.skip_assignment, r.leader, r.members) == (0, 1, False, second, [])
    third = r.member_id
    r = raw.call(SG(group_id="gs", generation_id=1, member_id=third, group_instance_id="i-1", assignments=[]), 5)
    assert bytes(r.assignment) == b"a"  # the assignment stays with the instance
    HB = M.HeartbeatRequest
    r = raw.call(HB(group_id="gs", generation_id=1, member_id=second, group_instance_id="i-1"), 4)
    assert r.error_code == E.FENCED_INSTANCE_ID
    LG = M.LeaveGroupRequest
    r = raw.call(LG(group_id="gs", members=[LG.MemberIdentity(member_id="", group_instance_id="i-1",
                                                              reason="admin")]), 5)
    assert (r.error_code, [(m.group_instance_id, m.error_code) for m in r.members]) == (0, [("i-1", 0)])
    assert raw.call(M.DescribeGroupsRequest(groups=["gs"], include_authorized_operations=True), 5).groups[0] \
        .group_state == "Empty"
