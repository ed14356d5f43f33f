"""The NATS listener's session: nats-server's client protocol on top of the sans-IO codec in wire/nats.

Strategy: ``data_received`` feeds the parser and acts on every complete op at once. A PUB is matched in
the broker-wide subject trie (``core.routing.trie``, NATS style, with its match cache and queue groups)
and written to each matching subscriber's connection, which batches everything it got this loop turn
into one socket write. No await, no logging on this path: run ``python bench/nats.py`` before changing it.

Semantics follow nats-server (server/client.go), cited where they matter:
- INFO first; CONNECT options (verbose, pedantic, echo, headers, no_responders, user/pass, auth_token).
  With auth configured the first op must be CONNECT with valid credentials within auth_timeout,
  otherwise ``-ERR 'Authorization Violation'`` (or ``'Authentication Timeout'``) and close.
- Errors: unknown op, max payload, bad args close the connection; invalid subjects and permission
  violations are reported and the connection stays (as ``processSub``/``processPub`` do).
- Queue groups: each message goes to one member of each group; members are picked at random, as
  nats-server does (``rand.Int31n`` in ``processMsgResults``).
- no_responders: a request (PUB with reply) that reaches nobody gets a ``NATS/1.0 503`` status HMSG on
  the requester's own subscription that matches the reply subject (``client.go`` ``subForReply``).
- A client that did not announce headers support gets MSG without the header block.
- Slow consumer: when a connection's pending outbound bytes pass ``limits.max_pending_bytes`` after a
  flush, it is dropped (nats-server closes with ``SlowConsumerPendingBytes``); the publisher is never
  slowed. Checked once per loop turn by the connection (``Connection.pending_limit``), not per message.
- Server PINGs every ``nats.ping_interval_s``; ``max_pings_out`` unanswered ones close the connection with
  ``-ERR 'Stale Connection'``.

Rules: event-loop thread only. Subjects are ``str`` (decoded by the codec); MSG lines are built by the
codec's encoder.
"""

from __future__ import annotations

import asyncio
import hmac
from random import random
import secrets
import string
import time
from typing import TYPE_CHECKING, Any

import omnibus.http.nats_monitor  # noqa: F401  - registers /varz, /connz, /subsz
from omnibus import __version__
from omnibus.core.messages import Message
from omnibus.core.routing.exchanges import AMQ_TOPIC
from omnibus.core.routing.trie import SubjectTrie, valid_nats_pattern, valid_nats_subject
from omnibus.wire.nats import encoder as enc
from omnibus.wire.nats.parser import (OP_CONNECT, OP_ERROR, OP_HPUB, OP_PING, OP_PONG, OP_PUB, OP_SUB,
                                      OP_UNSUB, NatsParser, NatsProtocolError)

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.app import BrokerServer
    from omnibus.server.transport import Connection

__all__ = ["NatsSession", "NatsRouter"]

#: The nats-server version we speak for. Clients gate features on it (headers need >= 2.2); we implement
#: the 2.x client protocol, so we announce a 2.x version rather than our own.
PROTOCOL_VERSION = "2.10.0"

ERR_AUTH = "Authorization Violation"
ERR_AUTH_TIMEOUT = "Authentication Timeout"
ERR_STALE = "Stale Connection"
ERR_INVALID_SUBJECT = "Invalid Subject"
ERR_INVALID_PUB_SUBJECT = "Invalid Publish Subject"
ERR_NO_RESPONDERS_NEEDS_HEADERS = "no responders requires headers support"  # client.go processConnect


def _server_id() -> str:
    # nats-server ids are 56-char public NKEYs starting with "N"; clients treat it as opaque.
    return "N" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(55))


class Subscription:
    __slots__ = ("session", "subject", "queue", "sid", "sid_b", "max_msgs", "delivered")

    def __init__(self, session: "NatsSession", subject: str, queue: str | None, sid: str) -> None:
        self.session = session
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.sid_b = sid.encode("utf-8", "surrogateescape")
        self.max_msgs = 0
        self.delivered = 0


class Permissions:
    """Allow/deny subject lists as nats-server's ``permissions`` block; deny wins; no allow list = all."""

    __slots__ = ("allow", "deny")

    def __init__(self, spec: Any) -> None:
        if isinstance(spec, (list, tuple)):
            spec = {"allow": list(spec)}
        spec = spec or {}
        self.allow = self._trie(spec.get("allow"))
        self.deny = self._trie(spec.get("deny"))

    @staticmethod
    def _trie(subjects: Any) -> SubjectTrie | None:
        if not subjects:
            return None
        if isinstance(subjects, str):
            subjects = [subjects]
        trie = SubjectTrie("nats")
        for s in subjects:
            trie.insert(s, True)
        return trie

    def allows(self, subject: str) -> bool:
        if self.allow is not None and not self.allow.has_interest(subject):
            return False
        return self.deny is None or not self.deny.has_interest(subject)


def _secret_matches(configured: str, given: Any) -> bool:
    if not isinstance(given, str):
        return False
    if configured.startswith("$2"):  # bcrypt hash, as nats-server accepts (isBcrypt)
        import bcrypt

        try:
            return bcrypt.checkpw(given.encode(), configured.encode())
        except ValueError:
            return False
    return hmac.compare_digest(configured.encode(), given.encode())


class NatsRouter:
    """Broker-wide NATS state: the subject trie and counters for /varz. Event-loop thread only."""

    def __init__(self, server: "BrokerServer") -> None:
        self.server = server
        self.settings = server.settings
        self.trie = SubjectTrie("nats")
        self.server_id = _server_id()
        self.next_cid = 1
        self.sessions: dict[int, NatsSession] = {}
        #: Counters of closed sessions; live sessions count their own (no shared counter per message).
        self.closed_totals = [0, 0, 0, 0]  # in_msgs, out_msgs, in_bytes, out_bytes
        self.slow_consumers = 0
        #: Design decision 6: core NATS publishes also go through amq.topic of the default vhost, so AMQP
        #: queues bound there receive them (checked per publish with one call; nothing is bound there
        #: unless an AMQP client binds a queue).
        self.vhost = server.vhosts["/"]
        #: JetStream (``$JS.API.>``, stream subjects); restored with the first NATS connection.
        from omnibus.server.jetstream import JetStreamAPI

        self.jetstream = JetStreamAPI(self)
        server.closers.append(self.jetstream.close)
        self.amq_topic = self.vhost.exchanges[AMQ_TOPIC]
        #: Its live binding dict (mutated in place by core, never replaced): one truth test per publish
        #: instead of a method call on the hot path.
        self.amq_topic_bindings = self.amq_topic._bindings
        #: subject -> b"MSG <subject> " (bounded like the trie's match cache): saves encoding a hot
        #: subject for every message.
        self.msg_heads: dict[str, bytes] = {}
        self.started = time.time()

    def totals(self) -> tuple[int, int, int, int]:
        """(in_msgs, out_msgs, in_bytes, out_bytes) over every session since start."""
        t = list(self.closed_totals)
        for s in self.sessions.values():
            t[0] += s.in_msgs
            t[1] += s.out_msgs
            t[2] += s.in_bytes
            t[3] += s.out_bytes
        return t[0], t[1], t[2], t[3]

    def publish_external(self, subject: str, payload: bytes) -> None:
        """A message from another protocol (AMQP on amq.topic, design decision 6) to NATS subscribers."""
        result = self.trie.match(subject)
        if not (result.plain or result.groups):
            return
        head = self.msg_heads.get(subject) or _cache_head(self.msg_heads, subject)
        size = len(payload)
        tail = b" %d\r\n%b\r\n" % (size, payload)
        targets = list(result.plain)
        for _group, members in result.groups:
            targets.append(members[int(random() * len(members))])
        for sub in targets:
            sub.session._deliver(sub, head + sub.sid_b + tail, size)

    @classmethod
    def of(cls, server: "BrokerServer") -> "NatsRouter":
        router = getattr(server, "nats", None)
        if router is None:
            router = server.nats = cls(server)
        return router


class NatsSession:
    """One NATS client connection."""

    @staticmethod
    def server_started(server: "BrokerServer") -> None:
        """At broker start (app._warm_sessions): restore JetStream now, not at the first NATS connection,
        so streams' max_age and consumers' timers run without a client."""
        NatsRouter.of(server)

    def __init__(self, conn: "Connection", server: "BrokerServer") -> None:
        self.conn = conn
        self.router = router = NatsRouter.of(server)
        settings = server.settings
        self.nsettings = settings.nats
        self.max_payload = settings.limits.max_payload
        conn.pending_limit = settings.limits.max_pending_bytes
        self.parser = NatsParser(max_payload=self.max_payload, max_control_line=self.nsettings.max_control_line)
        self.cid = router.next_cid
        router.next_cid += 1
        router.sessions[self.cid] = self
        self.subs: dict[str, Subscription] = {}
        self.connected = False  # CONNECT received
        self.verbose = self.pedantic = False
        self._pub_checks = False  # pedantic or verbose or publish permissions: the PUB slow path
        self.echo = True
        self.headers = False
        self.no_responders = False
        self.name = self.lang = self.version = ""
        self.user = ""
        self.pub_perms: Permissions | None = None
        self.sub_perms: Permissions | None = None
        self.pings_out = 0
        self.in_msgs = self.out_msgs = self.in_bytes = self.out_bytes = 0
        self.start = time.time()
        self.last_activity = self.start
        self.closed = False
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(self.nsettings.ping_interval_s, self._send_ping)
        self._auth_timer = (loop.call_later(self.nsettings.auth_timeout_s, self._auth_timeout)
                            if self.nsettings.auth_required else None)
        conn.write(enc.info(self._info()))

    def _info(self) -> dict[str, Any]:
        host, port = self.router.server.listeners.get("nats", ("127.0.0.1", 0))
        info: dict[str, Any] = {
            "server_id": self.router.server_id, "server_name": self.nsettings.server_name,
            "version": PROTOCOL_VERSION, "proto": 1, "go": f"omnibus {__version__}", "host": host,
            "port": port, "headers": True, "max_payload": self.max_payload, "client_id": self.cid,
        }
        if self.conn.peer:
            info["client_ip"] = self.conn.peer[0]
        if self.nsettings.auth_required:
            info["auth_required"] = True
        return info

    # -- input -----------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = time.time()
        self.parser.receive_data(data)
        # The codec returns the good ops followed, on a protocol error, by one (OP_ERROR, error).
        events = self.parser.events()
        must_auth = not self.connected and self.nsettings.auth_required
        publish = self._publish
        i, n = 0, len(events)
        while i < n:
            ev = events[i]
            op = ev[0]
            i += 1
            if op == OP_PUB and not must_auth:  # the hot path; a PUB never closes its own session
                subject = ev[1]
                if ev[2] is None and i < n:
                    j = i
                    while j < n and events[j][0] == OP_PUB and events[j][1] == subject and events[j][2] is None:
                        j += 1
                    if j > i:  # a run of plain PUBs to one subject (pipelined publishers)
                        self._publish_run(subject, events, i - 1, j)
                        i = j
                        continue
                publish(subject, ev[2], None, ev[3])
                continue
            if self.closed:
                return
            if must_auth and op != OP_CONNECT:
                self._fatal(ERR_AUTH)
                return
            if op == OP_HPUB:
                if not self.headers:  # nats-server closes without an -ERR (processHeaderPub error)
                    self._close()
                    return
                publish(ev[1], ev[2], ev[3], ev[4])
            elif op == OP_SUB:
                self._subscribe(ev[1], ev[2], ev[3])
            elif op == OP_UNSUB:
                self._unsubscribe(ev[1], ev[2])
            elif op == OP_PING:
                self.conn.write(enc.PONG)
            elif op == OP_PONG:
                self.pings_out = 0
            elif op == OP_CONNECT:
                self._connect(ev[1])
                must_auth = not self.connected and self.nsettings.auth_required
            elif op == OP_PUB:
                publish(ev[1], ev[2], None, ev[3])
            elif op == OP_ERROR:
                self._protocol_error(ev[1])
                return

    def _ok(self) -> None:
        if self.verbose:
            self.conn.write(enc.OK)

    def _connect(self, opts: dict[str, Any]) -> None:
        if not isinstance(opts, dict):
            self._fatal("Invalid CONNECT")  # pragma: no cover - the parser checks JSON objects
            return
        # nats-server's defaultOpts: Verbose and Pedantic are true unless CONNECT says otherwise.
        self.verbose = bool(opts.get("verbose", True))
        self.pedantic = bool(opts.get("pedantic", True))
        self.echo = bool(opts.get("echo", True))
        self.headers = bool(opts.get("headers", False))
        self.no_responders = bool(opts.get("no_responders", False))
        if self.no_responders and not self.headers:
            self._fatal(ERR_NO_RESPONDERS_NEEDS_HEADERS)
            return
        self.name = str(opts.get("name") or "")
        self.lang = str(opts.get("lang") or "")
        self.version = str(opts.get("version") or "")
        if self.nsettings.auth_required and not self.connected:
            if not self._authenticate(opts):
                self._fatal(ERR_AUTH)
                return
        self.connected = True
        self._pub_checks = self.pedantic or self.verbose or self.pub_perms is not None
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self._ok()

    def _authenticate(self, opts: dict[str, Any]) -> bool:
        ns = self.nsettings
        user, password = opts.get("user"), opts.get("pass")
        for entry in ns.users:
            if entry.get("user") == user and _secret_matches(str(entry.get("password", "")), password):
                self.user = user
                perms = entry.get("permissions") or {}
                self.pub_perms = Permissions(perms["publish"]) if perms.get("publish") else None
                self.sub_perms = Permissions(perms["subscribe"]) if perms.get("subscribe") else None
                return True
        if ns.user and user == ns.user and _secret_matches(ns.password, password):
            self.user = user
            return True
        if ns.token and _secret_matches(ns.token, opts.get("auth_token")):
            return True
        return False

    # -- pub/sub ---------------------------------------------------------------------------------------
    def _publish(self, subject: str, reply: str | None, headers: bytes | None, payload: bytes) -> None:
        """Route one message to every matching subscriber. Hot path: run bench/nats.py before changing it."""
        if self._pub_checks:
            if self.pedantic and not valid_nats_subject(subject):
                self.conn.write(enc.err(ERR_INVALID_PUB_SUBJECT))
                return
            if self.pub_perms is not None and not self.pub_perms.allows(subject):
                self.conn.write(enc.err(f'Permissions Violation for Publish to "{subject}"'))
                return
            if self.verbose:  # nats-server acknowledges the PUB before it delivers it
                self.conn.write(enc.OK)
        size = len(payload) + (len(headers) if headers else 0)
        self.in_msgs += 1
        self.in_bytes += size
        router = self.router
        js = router.jetstream
        if subject[0] == "$" and subject.startswith("$JS.ACK."):  # hot path: a JetStream ack
            js.ack(subject, reply, payload)
            return
        if (subject[0] == "$" or js.streams) and js.handles(subject):
            if js.publish(self, subject, reply, headers, payload):
                return  # an API request or an ack, answered by JetStream
            reply = None  # a stream publish: the PubAck (sent when durable) is the reply
        result = router.trie.match(subject)
        delivered = 0
        if result.plain or result.groups:
            # Encode once; each subscriber costs one concatenation with its sid.
            if headers is None:
                head = router.msg_heads.get(subject)
                if head is None:
                    head = _cache_head(router.msg_heads, subject)
                if reply:
                    tail = b" %b %d\r\n%b\r\n" % (reply.encode("utf-8", "surrogateescape"), size, payload)
                else:
                    tail = b" %d\r\n%b\r\n" % (size, payload)
            else:
                head, tail = enc.hmsg_parts(subject, reply, headers, payload)
            echo = self.echo
            for sub in result.plain:
                session = sub.session
                if session is self and not echo or session.closed:
                    continue
                if headers is not None and not session.headers:
                    session._deliver(sub, enc.msg(subject, sub.sid_b, reply, payload), len(payload))
                else:  # _deliver, inlined for the common case
                    session.conn.write(head + sub.sid_b + tail)
                    session.out_msgs += 1
                    session.out_bytes += size
                    sub.delivered += 1
                    if sub.max_msgs and sub.delivered >= sub.max_msgs:
                        session._remove_sub(sub)
                delivered += 1
            for _group, members in result.groups:
                candidates = members if echo else [m for m in members if m.session is not self]
                if candidates:
                    # Random member, as nats-server (rand.Int31n in processMsgResults).
                    sub = candidates[int(random() * len(candidates))]
                    session = sub.session
                    if headers is not None and not session.headers:
                        session._deliver(sub, enc.msg(subject, sub.sid_b, reply, payload), len(payload))
                    else:
                        session._deliver(sub, head + sub.sid_b + tail, size)
                    delivered += 1
        if router.amq_topic_bindings:
            # To AMQP queues on amq.topic (design decision 6); the NATS header block is not mapped yet.
            delivered += router.vhost.publish(AMQ_TOPIC, (Message(subject, payload, exchange=AMQ_TOPIC),))[0]
        if not delivered and reply and self.no_responders:
            self._send_no_responders(reply)

    def _publish_run(self, subject: str, events: list, start: int, end: int) -> None:
        """``events[start:end]`` are PUBs to ``subject`` without reply or headers. When nothing needs a
        per-message decision (no queue group, no auto-unsubscribe, no verbose/pedantic/permissions, no
        JetStream or amq.topic interest) each subscriber gets the whole run in one write, with one
        match and one encoding of the subject; otherwise they go one by one. Hot path: run
        bench/nats.py before changing it."""
        router = self.router
        result = router.trie.match(subject)
        if (self._pub_checks or result.groups or subject[0] == "$" or router.jetstream.streams
                or router.amq_topic_bindings or any(sub.max_msgs for sub in result.plain)):
            publish = self._publish
            for k in range(start, end):
                publish(subject, None, None, events[k][3])
            return
        payloads = [events[k][3] for k in range(start, end)]
        count = end - start
        size = sum(map(len, payloads))
        self.in_msgs += count
        self.in_bytes += size
        if not result.plain:
            return
        head = router.msg_heads.get(subject) or _cache_head(router.msg_heads, subject)
        tails = [b" %d\r\n%b\r\n" % (len(p), p) for p in payloads]
        echo = self.echo
        for sub in result.plain:
            session = sub.session
            if session is self and not echo or session.closed:
                continue
            prefix = head + sub.sid_b
            session.conn.write(prefix + prefix.join(tails))
            session.out_msgs += count
            session.out_bytes += size
            sub.delivered += count

    def _deliver(self, sub: Subscription, data: bytes, size: int) -> None:
        """Queue one encoded MSG/HMSG for this client. Hot path: run bench/nats.py before changing it."""
        if self.closed:
            return
        self.conn.write(data)
        self.out_msgs += 1
        self.out_bytes += size
        sub.delivered += 1
        if sub.max_msgs and sub.delivered >= sub.max_msgs:
            self._remove_sub(sub)

    def slow_consumer(self) -> None:
        """Called by the connection when its unsent bytes pass limits.max_pending_bytes."""
        self.router.slow_consumers += 1
        self._close(abort=True)  # nats-server: SlowConsumerPendingBytes, connection closed

    def _send_no_responders(self, reply: str) -> None:
        for sub in self.router.trie.match(reply).values():
            if sub.session is self:
                # nats-server 2.9/2.10 send a bare 503 status (2.12 adds a Nats-Subject header).
                self.conn.write(enc.status_hmsg(reply, sub.sid_b, 503))
                return

    def _subscribe(self, subject: str, queue: str | None, sid: str) -> None:
        if not valid_nats_pattern(subject) or (queue is not None and not _valid_queue(queue)):
            self.conn.write(enc.err(ERR_INVALID_SUBJECT))
            return
        if self.sub_perms is not None and not self.sub_perms.allows(subject):
            self.conn.write(enc.err(f'Permissions Violation for Subscription to "{subject}"'))
            return
        if sid in self.subs:  # nats-server ignores a SUB that reuses a live sid
            self._ok()
            return
        sub = Subscription(self, subject, queue, sid)
        self.subs[sid] = sub
        self.router.trie.insert(subject, sub, queue)
        self._ok()
        push = self.router.jetstream.push
        if push.states:  # JetStream push consumers waiting for interest on this subject start now
            push.on_subscribe(subject)

    def _unsubscribe(self, sid: str, max_msgs: int | None) -> None:
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs and max_msgs > sub.delivered:
                sub.max_msgs = max_msgs
            else:
                self._remove_sub(sub)
        self._ok()

    def _remove_sub(self, sub: Subscription) -> None:
        if self.subs.pop(sub.sid, None) is not None:
            self.router.trie.remove(sub.subject, sub, sub.queue)
            push = self.router.jetstream.push
            if push.states:  # a JetStream push consumer may have lost its interest
                push.interest_lost()

    # -- keepalive, errors, close ----------------------------------------------------------------------
    def _send_ping(self) -> None:
        if self.closed:
            return
        if self.pings_out >= self.nsettings.max_pings_out:
            self._fatal(ERR_STALE)
            return
        self.pings_out += 1
        self.conn.write(enc.PING)
        self._ping_timer = asyncio.get_running_loop().call_later(self.nsettings.ping_interval_s, self._send_ping)

    def _auth_timeout(self) -> None:
        if not self.connected and not self.closed:
            self._fatal(ERR_AUTH_TIMEOUT)

    def _protocol_error(self, e: NatsProtocolError) -> None:
        # nats-server sends -ERR for some violations and just closes for others (e.send_err).
        if e.wire:
            self.conn.write(e.wire)
        if e.fatal:
            self._close()

    def _fatal(self, message: str) -> None:
        self.conn.write(enc.err(message))
        self._close()

    def _close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self._cleanup()
        if abort:
            self.conn.abort()
        else:
            self.conn.close()

    def _cleanup(self) -> None:
        self._ping_timer.cancel()
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        router = self.router
        trie = router.trie
        for sub in self.subs.values():
            trie.remove(sub.subject, sub, sub.queue)
        had_subs = bool(self.subs)
        self.subs.clear()
        if had_subs and router.jetstream.push.states:
            router.jetstream.push.interest_lost()
        if router.sessions.pop(self.cid, None) is not None:
            t = router.closed_totals
            t[0] += self.in_msgs
            t[1] += self.out_msgs
            t[2] += self.in_bytes
            t[3] += self.out_bytes

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self._cleanup()

    def shutdown(self) -> None:
        self._close()


#: Bound on cached MSG heads (as the trie's match cache, nats-server slCacheMax).
MSG_HEAD_CACHE_MAX = 1024


def _cache_head(cache: dict[str, bytes], subject: str) -> bytes:
    head = b"MSG " + subject.encode("utf-8", "surrogateescape") + b" "
    if len(cache) >= MSG_HEAD_CACHE_MAX:
        cache.clear()
    cache[subject] = head
    return head


def _valid_queue(queue: str) -> bool:
    # nats-server: a queue group name is a non-empty token without whitespace.
    return bool(queue) and not any(c in queue for c in " \t\r\n")
