"""AMQP access control and connection.blocked with pika against Omnibus: users, vhosts, permissions and
resource alarms as RabbitMQ 3.10 does them.

``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs the same tests against a real RabbitMQ 3.10.8 node set up the same
way with rabbitmqctl (``add_user u p; set_permissions -p / u '^c' '^w' '^r'``, alarms with
``set_vm_memory_high_watermark`` / ``set_disk_free_limit``): see tests/clients/amqp_target.py."""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ProbableAccessDeniedError, ProbableAuthenticationError

from omnibus import SyncBroker
from tests.clients.amqp_target import amqp_target_factory  # noqa: F401 (fixture)

USERS = [
    {"user": "u", "password": "p", "permissions": {"/": ["^c", "^w", "^r"]}},
    {"user": "app", "password": "s3cret", "tags": ["monitoring"], "vhosts": ["a", "b"]},
    {"user": "nobody", "password": "p"},
]


@pytest.fixture
def broker(amqp_target_factory):  # noqa: F811
    return amqp_target_factory(USERS)


def connect(broker, user="guest", password="guest", vhost="/", **kw):
    return broker.connect(user, password, vhost, **kw)


REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."


def test_login(broker):
    for user, password in (("u", "wrong"), ("ghost", "p"), ("guest", "u")):
        with pytest.raises(ProbableAuthenticationError) as e:
            connect(broker, user, password)
        assert str(e.value) == f"ConnectionClosedByBroker: (403) '{REFUSED}'"
    connect(broker).close()  # guest from loopback
    connect(broker, "u", "p").close()


def test_amqplain_login(broker):
    import kombu

    with kombu.Connection(broker.url("app", "s3cret", "a"), login_method="AMQPLAIN") as conn:
        conn.connect()
        assert conn.connected
    with kombu.Connection(broker.url("app", "wrong", "a"), login_method="AMQPLAIN", connect_timeout=5) as conn:
        with pytest.raises(Exception) as e:
            conn.connect()
        assert "ACCESS_REFUSED" in str(e.value) and "AMQPLAIN" in str(e.value)


def test_vhost_access(broker):
    with pytest.raises(ProbableAccessDeniedError) as e:
        connect(broker, "u", "p", "nope")
    assert str(e.value) == "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost nope not found'"
    with pytest.raises(ProbableAccessDeniedError) as e:
        connect(broker, "u", "p", "a")
    assert str(e.value) == "ConnectionClosedByBroker: (530) \"NOT_ALLOWED - access to vhost 'a' refused for user 'u'\""
    with pytest.raises(ProbableAccessDeniedError) as e:
        connect(broker, "nobody", "p", "/")
    assert "NOT_ALLOWED - access to vhost '/' refused for user 'nobody'" in str(e.value)
    with pytest.raises(ProbableAccessDeniedError):
        connect(broker, "app", "s3cret", "/")
    connect(broker, "app", "s3cret", "a").close()


def test_permissions_close_only_the_channel(broker):
    admin = connect(broker)
    ach = admin.channel()
    ach.queue_declare("rq")
    ach.queue_declare("cq")
    conn = connect(broker, "u", "p")

    def refused(fn, text):
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as e:
            fn(ch)
        assert (e.value.reply_code, e.value.reply_text) == (403, "ACCESS_REFUSED - " + text)
        assert conn.is_open

    def q(name):
        return f"access to queue '{name}' in vhost '/' refused for user 'u'"

    def x(name):
        return f"access to exchange '{name}' in vhost '/' refused for user 'u'"

    refused(lambda ch: ch.queue_declare("q"), q("q"))
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.queue_declare("")  # the server-generated name is checked
    assert e.value.reply_text.startswith("ACCESS_REFUSED - access to queue 'amq.gen-")
    refused(lambda ch: ch.basic_publish("", "cq", b"x") or ch.queue_declare("cq", passive=True), x("amq.default"))
    refused(lambda ch: ch.basic_publish("amq.direct", "cq", b"x") or ch.queue_declare("cq", passive=True),
            x("amq.direct"))
    refused(lambda ch: ch.basic_get("cq"), q("cq"))
    refused(lambda ch: ch.basic_consume("cq", lambda *a: None), q("cq"))
    refused(lambda ch: ch.queue_purge("cq"), q("cq"))
    refused(lambda ch: ch.queue_bind("cq", "amq.direct", "k"), q("cq"))
    refused(lambda ch: ch.exchange_declare("x1"), x("x1"))
    # a new queue with a dead-letter exchange also needs read on itself (and write on that exchange); a new
    # exchange with an alternate exchange read on itself (and write on the alternate)
    refused(lambda ch: ch.queue_declare("cdl", arguments={"x-dead-letter-exchange": "amq.fanout"}), q("cdl"))
    refused(lambda ch: ch.exchange_declare("cx", arguments={"alternate-exchange": "amq.fanout"}), x("cx"))
    refused(lambda ch: ch.exchange_declare(""), "operation not permitted on the default exchange")
    refused(lambda ch: ch.exchange_delete("amq.direct"), "deletion of system exchange 'amq.direct' in vhost '/' not allowed")
    refused(lambda ch: ch.queue_delete("rq"), q("rq"))
    # what the regexes allow works, on one channel
    ch = conn.channel()
    ch.queue_declare("cq")  # configure ^c
    assert ch.queue_declare("rq", passive=True).method.message_count == 0  # passive: no check
    ach.exchange_declare("wx", "fanout")
    ach.exchange_declare("rx", "fanout")
    ach.queue_declare("wq")
    ach.queue_bind("rq", "wx")
    ch.basic_publish("wx", "", b"hello")  # write ^w on the exchange
    ch.queue_bind("wq", "rx")  # write on queue wq, read on exchange rx
    got = None
    for _ in range(50):
        got = ch.basic_get("rq", auto_ack=True)  # read ^r
        if got[0] is not None:
            break
    assert got[2] == b"hello"
    ch.queue_delete("cq")
    conn.close()
    admin.close()


def test_vhosts_are_isolated_and_persist(broker):
    a, b = connect(broker, "app", "s3cret", "a"), connect(broker, "app", "s3cret", "b")
    cha, chb = a.channel(), b.channel()
    cha.queue_declare("same", durable=True)
    chb.queue_declare("same", durable=True)
    cha.confirm_delivery()
    chb.confirm_delivery()
    cha.basic_publish("", "same", b"in a", pika.BasicProperties(delivery_mode=2))
    for i in range(2):
        chb.basic_publish("", "same", b"in b %d" % i, pika.BasicProperties(delivery_mode=2))
    assert cha.queue_declare("same", passive=True).method.message_count == 1
    assert chb.queue_declare("same", passive=True).method.message_count == 2
    with pytest.raises(ChannelClosedByBroker) as e:
        cha.queue_declare("same", durable=False)
    assert e.value.reply_text == ("PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'same' in vhost "
                                  "'a': received 'false' but current is 'true'")
    guest = connect(broker)
    with pytest.raises(ChannelClosedByBroker) as e:
        guest.channel().queue_declare("same", passive=True)
    assert e.value.reply_text == "NOT_FOUND - no queue 'same' in vhost '/'"
    for c in (a, b, guest):
        c.close()
    broker.restart()
    a, b = connect(broker, "app", "s3cret", "a"), connect(broker, "app", "s3cret", "b")
    assert a.channel().basic_get("same", auto_ack=True)[2] == b"in a"
    assert b.channel().basic_get("same", auto_ack=True)[2] == b"in b 0"
    a.close()
    b.close()


def test_tune_values_from_settings(amqp_target_factory):  # noqa: F811
    broker = amqp_target_factory(amqp__heartbeat=7, amqp__frame_max=65536, amqp__channel_max=100,
                                 rabbit_conf={"heartbeat": 7, "frame_max": 65536, "channel_max": 100})
    conn = connect(broker)
    impl = conn._impl
    assert (impl.params.heartbeat, impl.params.frame_max, impl.params.channel_max) == (7, 65536, 100)
    conn.close()


def test_bad_user_config_fails_start(tmp_path):
    """Omnibus's own settings check (runs against Omnibus also with OMNIBUS_AMQP_AGAINST=rabbitmq)."""
    from omnibus.server.app import StartupError

    with pytest.raises(StartupError, match=r"amqp.users\[0\]"):
        SyncBroker(tmp_path, settings={"amqp.users": [{"password": "x"}]}).start()


def wait_for(conn, cond, timeout=15.0, step=0.05):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        conn.process_data_events(step)
    return cond()


def publish_until_blocked(conn, ch, events, timeout=15.0):
    """Publish (unroutable) until connection.blocked comes: the alarm is on, and RabbitMQ blocks a
    connection when it publishes while an alarm is on (rabbit_reader: blocking, then blocked)."""
    deadline = time.monotonic() + timeout
    while not events and time.monotonic() < deadline:
        ch.basic_publish("", "nowhere", b"probe")
        conn.process_data_events(0.2)
    return events


def test_connection_blocked_while_an_alarm_is_on(broker):
    """With the memory alarm on, a publishing connection gets connection.blocked ("low on memory") and is
    not read any more; a consuming one goes on; once the alarm clears, connection.unblocked and the held
    publishes arrive."""
    events = []
    pub = connect(broker, blocked_connection_timeout=60)
    pub.add_on_connection_blocked_callback(lambda _c, m: events.append(("blocked", m.method.reason)))
    pub.add_on_connection_unblocked_callback(lambda _c, m: events.append(("unblocked",)))
    sub = connect(broker)
    sch = sub.channel()
    sch.queue_declare("q")
    pch = pub.channel()
    broker.memory_alarm(True)
    time.sleep(0.6)  # an alarm check (Omnibus: every 0.5 s)
    pub.process_data_events(0.1)
    assert events == []  # not blocked before it publishes
    assert publish_until_blocked(pub, pch, events) == [("blocked", "low on memory")]
    for i in range(3):
        pch.basic_publish("", "q", b"held %d" % i)
    pub.process_data_events(0.3)
    # not read: held; the connection that does not publish is served
    assert sch.queue_declare("q", passive=True).method.message_count == 0
    broker.memory_alarm(False)
    assert wait_for(pub, lambda: len(events) == 2)
    assert events == [("blocked", "low on memory"), ("unblocked",)]
    pch.queue_declare("q", passive=True)  # a round trip: the held publishes were read before it
    assert [sch.basic_get("q", auto_ack=True)[2] for _ in range(3)] == [b"held %d" % i for i in range(3)]
    pub.close()
    sub.close()


def test_disk_alarm_reason(broker):
    events = []
    pub = connect(broker, blocked_connection_timeout=60)
    pub.add_on_connection_blocked_callback(lambda _c, m: events.append(m.method.reason))
    pub.add_on_connection_unblocked_callback(lambda _c, m: events.append("unblocked"))
    ch = pub.channel()
    broker.disk_alarm(True)
    assert publish_until_blocked(pub, ch, events) == ["low on disk"]
    # a blocked connection is not read, not even its connection.close (as RabbitMQ): clear the alarm first
    broker.disk_alarm(False)
    assert wait_for(pub, lambda: len(events) == 2)
    assert events == ["low on disk", "unblocked"]
    pub.close()


def test_memory_watermark_from_settings(amqp_target_factory):  # noqa: F811
    """A tiny watermark in the settings (RabbitMQ: vm_memory_high_watermark.absolute) means the alarm is on
    from the start: the first publish blocks the connection."""
    broker = amqp_target_factory(amqp__memory_high_watermark_bytes=1,
                                 rabbit_conf={"vm_memory_high_watermark.absolute": "1"})
    events = []
    pub = connect(broker, blocked_connection_timeout=60)
    pub.add_on_connection_blocked_callback(lambda _c, m: events.append(m.method.reason))
    pub.add_on_connection_unblocked_callback(lambda _c, m: events.append("unblocked"))
    assert publish_until_blocked(pub, pub.channel(), events) == ["low on memory"]
    broker.memory_alarm(False)
    assert wait_for(pub, lambda: len(events) == 2) and events == ["low on memory", "unblocked"]
    pub.close()
