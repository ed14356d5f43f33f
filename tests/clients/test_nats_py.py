"""NATS core with the real nats-py client: what an application does, against Omnibus, unchanged.

Every test here also passes against nats-server 2.9 (``OMNIBUS_TEST_AGAINST=nats-server``), which is the
spec. Each test is bounded in time (``bounded``); the clients connect with short timeouts and fast
reconnects so that a broken broker fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import nats
import nats.errors
import pytest

from tests.clients.conftest import bounded

#: The permissions used by the permission tests, in nats-server's ``authorization.users`` shape.
USERS = [
    {"user": "alice", "password": "alice-pw",
     "permissions": {"publish": {"allow": [">"], "deny": ["secret.>"]}, "subscribe": {"allow": [">"]}}},
    {"user": "bob", "password": "bob-pw", "permissions": {"publish": ["pub.>"], "subscribe": [">"]}},
    {"user": "root", "password": "root-pw"},
]


class Client:
    """Connect nats-py with bounded timeouts and keep its async errors for the test to inspect."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.disconnected = asyncio.Event()
        self.reconnected = asyncio.Event()
        self.closed = asyncio.Event()

    async def connect(self, url: str, **kw: Any) -> nats.NATS:
        async def error_cb(e: Exception) -> None:
            self.errors.append(e)

        async def disconnected_cb() -> None:
            self.disconnected.set()

        async def reconnected_cb() -> None:
            self.reconnected.set()

        async def closed_cb() -> None:
            self.closed.set()

        options: dict[str, Any] = dict(connect_timeout=2, reconnect_time_wait=0.2, max_reconnect_attempts=3,
                                       error_cb=error_cb, disconnected_cb=disconnected_cb,
                                       reconnected_cb=reconnected_cb, closed_cb=closed_cb)
        options.update(kw)
        return await nats.connect(url, **options)


async def connect(url: str, **kw: Any) -> nats.NATS:
    return await Client().connect(url, **kw)


async def collect(sub, n: int, timeout: float = 5.0) -> list:
    """The next ``n`` messages of a (callback-less) subscription."""
    return [await sub.next_msg(timeout=timeout) for _ in range(n)]


async def assert_no_more(sub, wait: float = 0.3) -> None:
    with pytest.raises(nats.errors.TimeoutError):
        msg = await sub.next_msg(timeout=wait)
        pytest.fail(f"unexpected message {msg.subject} {msg.data!r}")


@bounded(20)
async def test_pub_sub(nats_url):
    nc = await connect(nats_url)
    sub = await nc.subscribe("greet.joe")
    await nc.flush()
    for i in range(5):
        await nc.publish("greet.joe", b"hello %d" % i)
    await nc.publish("greet.sue", b"not for joe")
    msgs = await collect(sub, 5)
    assert [(m.subject, m.data) for m in msgs] == [("greet.joe", b"hello %d" % i) for i in range(5)]
    assert all(m.reply == "" for m in msgs)
    await assert_no_more(sub)
    await nc.close()


@bounded(20)
async def test_pub_sub_between_connections_keeps_order_and_bytes(nats_url):
    pub, sub_nc = await connect(nats_url), await connect(nats_url)
    sub = await sub_nc.subscribe("bytes")
    await sub_nc.flush()
    payloads = [bytes(range(256)) * 4, b"", b"\r\n\r\nMSG x 1 2\r\n", b"\x00" * 70_000]
    for p in payloads:
        await pub.publish("bytes", p)
    await pub.flush()
    assert [m.data for m in await collect(sub, len(payloads))] == payloads
    await pub.close()
    await sub_nc.close()


@bounded(20)
async def test_wildcards(nats_url):
    nc = await connect(nats_url)
    star = await nc.subscribe("orders.*")
    tail = await nc.subscribe("orders.>")
    mid = await nc.subscribe("orders.*.shipped")
    everything = await nc.subscribe(">")
    await nc.flush()
    for subject in ("orders.1", "orders.1.shipped", "orders.2.lost", "orders", "other.1"):
        await nc.publish(subject, subject.encode())
    await nc.flush()
    assert [m.subject for m in await collect(star, 1)] == ["orders.1"]
    assert [m.subject for m in await collect(tail, 3)] == ["orders.1", "orders.1.shipped", "orders.2.lost"]
    assert [m.subject for m in await collect(mid, 1)] == ["orders.1.shipped"]
    assert [m.subject for m in await collect(everything, 5)] == [
        "orders.1", "orders.1.shipped", "orders.2.lost", "orders", "other.1"]
    for sub in (star, tail, mid, everything):
        await assert_no_more(sub, 0.2)
    await nc.close()


@bounded(30)
async def test_queue_groups(nats_url):
    pub = await connect(nats_url)
    conns = [await connect(nats_url) for _ in range(3)]
    got: dict[str, list[bytes]] = {}

    def handler(name: str):
        got[name] = []

        async def cb(msg) -> None:
            got[name].append(msg.data)
        return cb

    for i, nc in enumerate(conns):
        await nc.subscribe("work", queue="workers", cb=handler(f"w{i}"))
        if i < 2:
            await nc.subscribe("work", queue="audit", cb=handler(f"a{i}"))
    await conns[0].subscribe("work", cb=handler("plain"))
    for nc in conns:
        await nc.flush()
    n = 300
    sent = [b"job %d" % i for i in range(n)]
    for data in sent:
        await pub.publish("work", data)
    await pub.flush()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline and sum(len(v) for v in got.values()) < 3 * n:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive now
    workers = [d for k in ("w0", "w1", "w2") for d in got[k]]
    audit = [d for k in ("a0", "a1") for d in got[k]]
    # Each message exactly once per group...
    assert sorted(workers) == sorted(sent)
    assert sorted(audit) == sorted(sent)
    # ...spread over the members (nats-server picks a random member: each gets some of 300)...
    assert all(len(got[k]) > 0 for k in ("w0", "w1", "w2", "a0", "a1")), {k: len(v) for k, v in got.items()}
    # ...and a plain subscriber gets everything, in order.
    assert got["plain"] == sent
    for nc in (pub, *conns):
        await nc.close()


@bounded(20)
async def test_request_reply(nats_url):
    responder, requester = await connect(nats_url), await connect(nats_url)

    async def answer(msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    await responder.subscribe("svc.echo", cb=answer)
    await responder.flush()
    for i in range(20):
        reply = await requester.request("svc.echo", b"%d" % i, timeout=2)
        assert reply.data == b"pong:%d" % i
    # Requests in flight at once are matched to their own replies.
    replies = await asyncio.gather(*(requester.request("svc.echo", b"c%d" % i, timeout=3) for i in range(50)))
    assert [r.data for r in replies] == [b"pong:c%d" % i for i in range(50)]
    await responder.close()
    await requester.close()


@bounded(20)
async def test_request_reply_with_queue_group_responders(nats_url):
    requester = await connect(nats_url)
    responders = [await connect(nats_url) for _ in range(2)]
    answered: Counter = Counter()
    for i, nc in enumerate(responders):
        async def answer(msg, i=i) -> None:
            answered[i] += 1
            await msg.respond(b"from %d" % i)
        await nc.subscribe("svc.q", queue="svc", cb=answer)
        await nc.flush()
    for _ in range(40):
        reply = await requester.request("svc.q", b"", timeout=2)
        assert reply.data in (b"from 0", b"from 1")
    assert sum(answered.values()) == 40  # one responder per request, never both
    for nc in (requester, *responders):
        await nc.close()


@bounded(20)
async def test_headers_round_trip(nats_url):
    nc = await connect(nats_url)
    sub = await nc.subscribe("hdr")
    await nc.flush()
    headers = {"Foo": "bar", "X-Trace-Id": "0af7651916cd43dd8448eb211c80319c", "Empty-Ish": " spaced "}
    await nc.publish("hdr", b"with headers", headers=headers)
    await nc.publish("hdr", b"", headers={"Only": "headers"})
    await nc.publish("hdr", b"no headers")
    m1, m2, m3 = await collect(sub, 3)
    assert m1.data == b"with headers"
    assert {k: v.strip() for k, v in m1.headers.items()} == {k: v.strip() for k, v in headers.items()}
    assert (m2.data, m2.headers) == (b"", {"Only": "headers"})
    assert (m3.data, m3.headers) == (b"no headers", None)
    await nc.close()


@bounded(20)
async def test_headers_on_request_and_reply(nats_url):
    nc = await connect(nats_url)

    async def answer(msg) -> None:
        await nc.publish(msg.reply, msg.data.upper(), headers={"Seen": msg.headers.get("Ask", "?")})

    await nc.subscribe("svc.hdr", cb=answer)
    await nc.flush()
    reply = await nc.request("svc.hdr", b"abc", timeout=2, headers={"Ask": "please"})
    assert (reply.data, reply.headers) == (b"ABC", {"Seen": "please"})
    await nc.close()


@bounded(20)
async def test_no_responders(nats_url):
    nc = await connect(nats_url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("nobody.home", b"anyone?", timeout=5)
    assert loop.time() - started < 2, "no-responders must be immediate, not a timeout"
    assert nc.is_connected
    await nc.close()


@bounded(20)
async def test_auto_unsubscribe_limit(nats_url):
    nc = await connect(nats_url)
    sub = await nc.subscribe("auto")
    await sub.unsubscribe(limit=3)
    await nc.flush()
    for i in range(10):
        await nc.publish("auto", b"%d" % i)
    await nc.flush()
    assert [m.data for m in await collect(sub, 3)] == [b"0", b"1", b"2"]
    await assert_no_more(sub)
    sub2 = await nc.subscribe("auto2", max_msgs=2)
    for i in range(5):
        await nc.publish("auto2", b"%d" % i)
    assert [m.data for m in await collect(sub2, 2)] == [b"0", b"1"]
    await nc.close()


@bounded(20)
async def test_auto_unsubscribe_is_done_by_the_server(nats_url):
    """``unsubscribe(limit=N)`` sends ``UNSUB <sid> N``: after N deliveries the broker itself drops the
    interest, so a request then has no responders (the client's own bookkeeping cannot fake that).
    (nats-py's ``subscribe(max_msgs=N)`` is client-side only: it sends no UNSUB until a reconnect.)"""
    responder, requester = await connect(nats_url), await connect(nats_url)

    async def answer(msg) -> None:
        await msg.respond(b"ok")

    sub = await responder.subscribe("svc.limit", cb=answer)
    await sub.unsubscribe(limit=2)
    await responder.flush()
    assert (await requester.request("svc.limit", b"", timeout=2)).data == b"ok"
    assert (await requester.request("svc.limit", b"", timeout=2)).data == b"ok"
    with pytest.raises(nats.errors.NoRespondersError):
        await requester.request("svc.limit", b"", timeout=2)
    await responder.close()
    await requester.close()


@bounded(30)
async def test_drain_delivers_pending_then_closes(nats_url):
    pub = await connect(nats_url)
    client = Client()
    nc = await client.connect(nats_url)
    got: list[bytes] = []

    async def slow(msg) -> None:
        await asyncio.sleep(0.005)
        got.append(msg.data)

    await nc.subscribe("drain.me", cb=slow)
    await nc.flush()
    n = 100
    for i in range(n):
        await pub.publish("drain.me", b"%d" % i)
    await pub.flush()
    while not got:
        await asyncio.sleep(0.005)
    assert len(got) < n, "the callback is slow: most messages are still pending when drain starts"
    await nc.drain()
    await asyncio.wait_for(client.closed.wait(), 10)
    assert nc.is_closed
    assert got == [b"%d" % i for i in range(n)]
    # Once drained, the subject has no interest left: later publishes go nowhere and the broker is fine.
    with pytest.raises(nats.errors.NoRespondersError):
        await pub.request("drain.me", b"", timeout=2)
    await pub.close()


@bounded(60)
async def test_reconnect_after_broker_restart(nats_target):
    pub_client, sub_client = Client(), Client()
    opts = dict(reconnect_time_wait=0.1, max_reconnect_attempts=200)
    pub = await pub_client.connect(nats_target.url, **opts)
    sub_nc = await sub_client.connect(nats_target.url, **opts)
    sub = await sub_nc.subscribe("after.restart")
    await sub_nc.flush()
    await pub.publish("after.restart", b"before")
    assert (await sub.next_msg(timeout=5)).data == b"before"

    port = nats_target.port
    await asyncio.to_thread(nats_target.restart)
    assert nats_target.port == port
    await asyncio.wait_for(sub_client.disconnected.wait(), 10)
    await asyncio.wait_for(sub_client.reconnected.wait(), 20)
    await asyncio.wait_for(pub_client.reconnected.wait(), 20)
    await sub_nc.flush(timeout=5)  # the client re-sent its SUB on reconnect; wait for the broker to have it
    await pub.publish("after.restart", b"after")
    await pub.flush(timeout=5)
    assert (await sub.next_msg(timeout=5)).data == b"after"
    assert sub_nc.stats["reconnects"] >= 1
    await pub.close()
    await sub_nc.close()


@bounded(20)
async def test_auth_user_password(nats_target_factory):
    target = nats_target_factory(user="app", password="s3cret-pw")
    nc = await connect(target.url, user="app", password="s3cret-pw")
    sub = await nc.subscribe("authed")
    await nc.publish("authed", b"in")
    assert (await sub.next_msg(timeout=5)).data == b"in"
    await nc.close()
    # The same credentials in the URL work too.
    nc = await connect(f"nats://app:s3cret-pw@{target.host}:{target.port}")
    await nc.flush()
    await nc.close()
    for kw in (dict(user="app", password="wrong"), dict(user="nobody", password="s3cret-pw"), {}):
        with pytest.raises(nats.errors.Error) as e:
            await connect(target.url, allow_reconnect=False, max_reconnect_attempts=0, **kw)
        assert "Authorization Violation" in str(e.value), kw


@bounded(20)
async def test_auth_token(nats_target_factory):
    target = nats_target_factory(token="t0ken-xyz")
    nc = await connect(target.url, token="t0ken-xyz")
    sub = await nc.subscribe("authed")
    await nc.publish("authed", b"in")
    assert (await sub.next_msg(timeout=5)).data == b"in"
    await nc.close()
    for kw in (dict(token="wrong"), dict(user="t0ken-xyz", password="x"), {}):
        with pytest.raises(nats.errors.Error) as e:
            await connect(target.url, allow_reconnect=False, max_reconnect_attempts=0, **kw)
        assert "Authorization Violation" in str(e.value), kw


@bounded(20)
async def test_auth_users_list(nats_target_factory):
    target = nats_target_factory(users=USERS)
    for user, password in (("alice", "alice-pw"), ("bob", "bob-pw"), ("root", "root-pw")):
        nc = await connect(target.url, user=user, password=password)
        await nc.flush()
        await nc.close()
    with pytest.raises(nats.errors.Error) as e:
        await connect(target.url, user="alice", password="bob-pw", allow_reconnect=False,
                      max_reconnect_attempts=0)
    assert "Authorization Violation" in str(e.value)


@bounded(20)
async def test_publish_permission_violation(nats_target_factory):
    target = nats_target_factory(users=USERS)
    watcher = await connect(target.url, user="root", password="root-pw")
    everything = await watcher.subscribe(">")
    await watcher.flush()

    client = Client()
    nc = await client.connect(target.url, user="alice", password="alice-pw")
    await nc.publish("secret.plans", b"leak")
    await nc.flush()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not client.errors and loop.time() < deadline:
        await asyncio.sleep(0.01)
    # The broker sends -ERR 'Permissions Violation for Publish to "secret.plans"' (exact bytes checked in
    # tests/server/test_nats_raw.py); nats-py lower-cases it on the way to the error callback.
    assert [str(e) for e in client.errors] == ['nats: permissions violation for publish to "secret.plans"']
    # The connection stays open and allowed subjects still work; the denied message went nowhere.
    assert nc.is_connected and not nc.is_closed
    await nc.publish("public.news", b"ok")
    await nc.flush()
    msg = await everything.next_msg(timeout=5)
    assert (msg.subject, msg.data) == ("public.news", b"ok")
    await assert_no_more(everything)

    # A plain list of subjects is an allow list.
    bob = Client()
    nc2 = await bob.connect(target.url, user="bob", password="bob-pw")
    await nc2.publish("pub.ok", b"1")
    await nc2.publish("private", b"2")
    await nc2.flush()
    deadline = loop.time() + 5
    while not bob.errors and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert [str(e) for e in bob.errors] == ['nats: permissions violation for publish to "private"']
    assert [m.subject for m in await collect(everything, 1)] == ["pub.ok"]
    await assert_no_more(everything)
    assert nc2.is_connected
    for c in (nc, nc2, watcher):
        await c.close()


@bounded(20)
async def test_no_echo(nats_url):
    quiet = await connect(nats_url, no_echo=True)
    other = await connect(nats_url)
    sub = await quiet.subscribe("echo")
    await quiet.flush()
    await quiet.publish("echo", b"mine")
    await quiet.flush()
    await other.publish("echo", b"theirs")
    await other.flush()
    assert [m.data for m in await collect(sub, 1)] == [b"theirs"]
    await assert_no_more(sub)
    # With echo on (the default), a connection gets its own messages.
    loud = await connect(nats_url)
    sub2 = await loud.subscribe("echo")
    await loud.publish("echo", b"own")
    assert (await sub2.next_msg(timeout=5)).data == b"own"
    for c in (quiet, other, loud):
        await c.close()


@bounded(20)
async def test_max_payload(nats_target_factory):
    target = nats_target_factory(max_payload=1024)
    nc = await connect(target.url)
    assert nc.max_payload == 1024  # read from INFO
    sub = await nc.subscribe("big")
    await nc.publish("big", b"x" * 1024)
    assert len((await sub.next_msg(timeout=5)).data) == 1024
    with pytest.raises(nats.errors.MaxPayloadError):
        await nc.publish("big", b"x" * 1025)
    assert nc.is_connected
    await nc.close()
