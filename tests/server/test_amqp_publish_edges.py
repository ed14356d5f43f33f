"""Edges of the AMQP publish path (``AmqpSession._flush_publishes`` routes a read's publishes once per
exchange and routing key, and confirms them with one durability wait per channel and queue set), on raw
sockets with the helpers of tests/server/test_amqp_raw.py; ``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs them
against RabbitMQ 3.10.8 too."""

from __future__ import annotations

from pamqp import commands as pc

from tests.server.test_amqp_raw import mf, opened, port, publish, qname  # noqa: F401 (port: fixture)


def test_a_queue_deleted_by_a_channel_error_in_the_same_read(port):  # noqa: F811
    """One read: a confirmed publish to an auto-delete queue whose only consumer is on channel 2, then a
    publish on channel 2 to a missing exchange. The 404 closes channel 2, which cancels the consumer, which
    deletes the queue before the read's publishes are appended: the first publish is still confirmed
    (it was routed), channel 2 is closed, the connection goes on."""
    r = opened(port, 1, 2)
    q = qname("ad")
    r.send(mf(2, pc.Queue.Declare(queue=q, auto_delete=True)) + mf(2, pc.Basic.Consume(queue=q, consumer_tag="c")))
    r.expect(pc.Queue.DeclareOk, 2)
    r.expect(pc.Basic.ConsumeOk, 2)
    r.send(mf(1, pc.Confirm.Select()))
    r.expect(pc.Confirm.SelectOk, 1)
    r.send(publish(1, "", q, b"routed") + publish(2, "no-such-exchange", "k", b"x"))
    got = []
    while len(got) < 2:
        f = r.frame()
        assert f is not None, got
        ch, obj = f
        if isinstance(obj, pc.Basic.Deliver):  # RabbitMQ may deliver before the channel closes
            r.frame()  # its content header
            r.frame()  # and body
            continue
        got.append((ch, type(obj).__name__, getattr(obj, "delivery_tag", None), getattr(obj, "reply_code", None)))
    assert sorted(got) == [(1, "Ack", 1, None), (2, "Close", None, 404)]
    r.send(mf(2, pc.Channel.CloseOk()))
    r.send(mf(1, pc.Queue.Declare(queue=q, passive=True)))
    while True:  # (RabbitMQ may still send channel 2 the delivery it had under way: skipped)
        f = r.frame()
        assert f is not None
        if f[0] == 1:
            break
    assert isinstance(f[1], pc.Channel.Close) and f[1].reply_code == 404  # gone with its last consumer
    r.close()


def test_many_publishes_of_one_read_to_two_routes_are_all_confirmed(port):  # noqa: F811
    r = opened(port, 1)
    qa, qb = qname("a"), qname("b")
    r.send(mf(1, pc.Queue.Declare(queue=qa, exclusive=True)) + mf(1, pc.Queue.Declare(queue=qb, exclusive=True))
           + mf(1, pc.Confirm.Select()))
    r.expect(pc.Queue.DeclareOk, 1)
    r.expect(pc.Queue.DeclareOk, 1)
    r.expect(pc.Confirm.SelectOk, 1)
    data = b"".join(publish(1, "", (qa, qb, "nowhere")[i % 3], b"m%d" % i) for i in range(300))
    r.send(data)
    confirmed: set[int] = set()
    while len(confirmed) < 300:
        f = r.frame()
        assert f is not None, len(confirmed)
        obj = f[1]
        assert isinstance(obj, pc.Basic.Ack), obj
        confirmed |= set(range(1, obj.delivery_tag + 1)) if obj.multiple else {obj.delivery_tag}
    assert confirmed == set(range(1, 301))
    r.send(mf(1, pc.Queue.Declare(queue=qa, passive=True)))
    assert r.expect(pc.Queue.DeclareOk, 1).message_count == 100
    r.send(mf(1, pc.Queue.Declare(queue=qb, passive=True)))
    assert r.expect(pc.Queue.DeclareOk, 1).message_count == 100
    r.close()
