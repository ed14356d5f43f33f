"""JetStream push consumers on the NATS listener: delivery to ``deliver_subject``, interest, queue
groups, flow control and idle heartbeats (nats-server 2.10 server/consumer.go; ADR-9 for the
control messages).

Strategy
    The core consumer (core/stream_consumers.py) picks what to deliver; this module decides *when* and
    writes the MSG/HMSG lines. A push consumer delivers only while its deliver subject has interest
    (nats-server ``registerNotification`` / ``updateDeliveryInterest``): interest is the broker's
    subject trie matched against ``deliver_subject`` (one cached lookup) at each delivery round; a SUB
    that matches a waiting consumer's deliver subject starts it at once (``on_subscribe``), a lost
    interest is noticed at the UNSUB or connection close (``interest_lost``; the sweep's
    ``check_interest`` is the backstop), which also starts the ``inactive_threshold`` clock (the consumer's ``push_bound`` goes false and its last activity is
    stamped). With ``deliver_group`` only members of that queue group count and each message goes to
    one of them, at random, as a queue subscriber would get it.

    Each delivery carries the ack reply subject ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.
    <ts ns>.<pending>`` (also for ack none: ordered consumers read sequences from it).

    Flow control (consumer.go ``setMaxPendingBytes``/``needFlowControl``/``processFlowControl``): a
    window of ``maxpb`` bytes that starts at 32 MiB / 16 and doubles up to 32 MiB with each answered
    request. Past half of the window with no request outstanding, a ``NATS/1.0 100 FlowControl
    Request`` status with reply ``$JS.FC.<stream>.<consumer>.<4 chars>`` goes out; past the whole
    window delivery stops until the client publishes to that reply subject. Sizes count as nats-server
    counts them: subject + reply + header block + payload.

    Idle heartbeats: one timer per consumer with ``idle_heartbeat``; when it fires and nothing was sent
    for that long while there is interest, ``NATS/1.0 100 Idle Heartbeat`` with ``Nats-Last-Consumer``
    / ``Nats-Last-Stream`` (plus ``Nats-Consumer-Stalled: <fc reply>`` while stalled on flow control)
    goes out (consumer.go ``sendIdleHeartbeat``).

    A round delivers at most ``ROUND_MESSAGES`` messages, then yields to the loop (call_soon) so the
    sockets drain and other work runs; bounded further by ``max_ack_pending`` (core) and flow control.

Not built: ``rate_limit_bps`` (accepted and stored, not enforced), ``replay_policy: original`` for push
(delivered as fast as instant), advisories.

Rules: event-loop thread only.
"""

from __future__ import annotations

import asyncio
import os
import time
from random import random
from typing import TYPE_CHECKING, Any

from omnibus.core.streams import NANOS_PER_MS, subject_is_subset
from omnibus.wire.nats import encoder as enc

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.core.stream_consumers import Consumer
    from omnibus.server.jetstream import JetStreamAPI

ACK_PREFIX = "$JS.ACK."
FC_PREFIX = "$JS.FC."  # jetstream_api.go jsFlowControlPre
#: consumer.go JsFlowControlMaxPending: the flow-control window's limit; it starts at 1/16 of it.
FLOW_CONTROL_MAX_PENDING = 32 * 1024 * 1024
#: Messages one delivery round hands out before yielding to the event loop.
ROUND_MESSAGES = 256
#: Messages taken from the core consumer per call within a round.
TAKE = 64

FC_REQUEST = b"NATS/1.0 100 FlowControl Request\r\n\r\n"
_FC_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class _Push:
    """Delivery state of one push consumer (nats-server keeps these on the consumer)."""

    __slots__ = ("consumer", "active", "pblimit", "maxpb", "pbytes", "fcid", "fcsz", "hb_s", "last_out",
                 "timer", "again")

    def __init__(self, consumer: "Consumer") -> None:
        self.consumer = consumer
        self.active = False
        cfg = consumer.config
        if cfg.flow_control:
            self.pblimit = FLOW_CONTROL_MAX_PENDING
            self.maxpb = FLOW_CONTROL_MAX_PENDING // 16
        else:
            self.pblimit = self.maxpb = 0
        self.pbytes = 0
        self.fcid = ""
        self.fcsz = 0
        self.hb_s = cfg.idle_heartbeat / (1000 * NANOS_PER_MS) if cfg.idle_heartbeat > 0 else 0.0
        self.last_out = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.again = False  # a continuation round is scheduled


class PushDelivery:
    """Every push consumer of one JetStreamAPI. Event-loop thread only."""

    def __init__(self, api: "JetStreamAPI") -> None:
        self.api = api
        self.router = api.router
        #: consumer -> its delivery state; empty = no push consumer (the SUB hook's truth test).
        self.states: dict[Any, _Push] = {}

    # -- registry ----------------------------------------------------------------------------------
    def track(self, consumer: "Consumer") -> None:
        """Start delivering for ``consumer`` if it is a push consumer (new, restored or updated)."""
        if not consumer.config.deliver_subject or consumer.stream.consumers.get(consumer.name) is not consumer:
            self.forget(consumer)  # a pull consumer, or deleted before this (call_soon) ran
            return
        p = self.states.get(consumer)
        if p is None:
            p = self.states[consumer] = _Push(consumer)
            if p.hb_s:
                p.timer = asyncio.get_running_loop().call_later(p.hb_s, self._heartbeat, consumer)
        self.serve(consumer)

    def forget(self, consumer: "Consumer") -> None:
        p = self.states.pop(consumer, None)
        if p is not None and p.timer is not None:
            p.timer.cancel()

    def forget_gone(self) -> None:
        """Drop the state of consumers no longer in their stream (deleted, expired, stream gone)."""
        for c in [c for c in self.states if c.stream.consumers.get(c.name) is not c or c.stream.closed]:
            self.forget(c)

    def close(self) -> None:
        for c in list(self.states):
            self.forget(c)

    # -- interest ----------------------------------------------------------------------------------
    def _targets(self, consumer: "Consumer") -> tuple[tuple, tuple] | None:
        """(plain subscriptions, queue groups' member tuples) for the deliver subject; None = no
        interest. With deliver_group only that group's members count."""
        cfg = consumer.config
        res = self.router.trie.match(cfg.deliver_subject)
        group = cfg.deliver_group
        if group:
            for name, members in res.groups:
                if name == group and members:
                    return (), (members,)
            return None
        if not res.plain and not res.groups:
            return None
        return res.plain, tuple(m for _, m in res.groups if m)

    def _set_active(self, p: _Push, active: bool) -> None:
        if p.active != active:
            p.active = active
            c = p.consumer
            c.push_bound = active
            c.touch()  # losing interest starts the inactive_threshold clock from now

    def on_subscribe(self, pattern: str) -> None:
        """A SUB on ``pattern``: start the consumers that were waiting for interest there."""
        for c, p in list(self.states.items()):
            if not p.active and subject_is_subset(c.config.deliver_subject, pattern):
                self.serve(c)

    def interest_lost(self) -> None:
        """An UNSUB or a closed connection: consumers whose deliver subject has no subscriber left stop
        at once (push_bound false, inactive_threshold clock running), as nats-server's interest
        notification does."""
        for c, p in self.states.items():
            if p.active and self._targets(c) is None:
                self._set_active(p, False)

    def check_interest(self) -> None:
        """Sweep: notice interest that went away (UNSUB, closed connection) and resume the rest."""
        for c, p in list(self.states.items()):
            if self._targets(c) is None:
                self._set_active(p, False)
            else:
                self.serve(c)

    # -- delivery ----------------------------------------------------------------------------------
    def serve(self, consumer: "Consumer") -> None:
        """One delivery round for ``consumer`` (see the module docstring)."""
        p = self.states.get(consumer)
        if p is None:
            return
        targets = self._targets(consumer)
        if targets is None:
            self._set_active(p, False)
            return
        self._set_active(p, True)
        plain, groups = targets
        cfg = consumer.config
        subj = cfg.deliver_subject
        prefix = f"{ACK_PREFIX}{consumer.stream.name}.{consumer.name}."
        budget = ROUND_MESSAGES
        maxpb = p.maxpb
        dlen = len(subj)
        last_size = 1
        while budget > 0:
            take = min(TAKE, budget)
            if maxpb:
                if p.pbytes > p.maxpb:
                    return  # stalled on flow control until the client answers
                # No more than the window has room for (judged by the last message's size), so the
                # stall happens where nats-server's per-message check puts it.
                take = min(take, (p.maxpb - p.pbytes) // last_size + 1)
            msgs = consumer.next_messages(take)
            if not msgs:
                return
            for m in msgs:
                ack = f"{prefix}{m.delivery_count}.{m.stream_seq}.{m.consumer_seq}.{m.timestamp * NANOS_PER_MS}.{m.pending}"
                block = m.header_block()
                payload = m.payload
                size = dlen + len(ack) + (len(block) if block else 0) + len(payload)
                self._send(plain, groups, m.subject, ack, block, payload, size)
                if maxpb:
                    p.pbytes += size
                    if not p.fcid:
                        if p.pbytes > p.maxpb // 2:
                            self._send_flow_control(p, plain, groups, subj)
                    elif p.pbytes - p.fcsz >= p.maxpb:
                        p.fcsz += size
                    last_size = size
            p.last_out = time.monotonic()
            budget -= len(msgs)
            if len(msgs) < take and budget > 0:
                return  # nothing more now (or max_ack_pending)
        if not p.again:  # more to send: continue after the loop has written this round
            p.again = True
            asyncio.get_running_loop().call_soon(self._continue, consumer)

    def _continue(self, consumer: "Consumer") -> None:
        p = self.states.get(consumer)
        if p is not None:
            p.again = False
            self.serve(consumer)

    @staticmethod
    def _send(plain: tuple, groups: tuple, subject: str, reply: str, block: bytes | None, payload: bytes,
              size: int) -> None:
        for sub in plain:
            _write(sub, subject, reply, block, payload, size)
        for members in groups:
            _write(members[int(random() * len(members))], subject, reply, block, payload, size)

    def _send_flow_control(self, p: _Push, plain: tuple, groups: tuple, subject: str) -> None:
        c = p.consumer
        rnd = "".join(_FC_ALPHABET[b % len(_FC_ALPHABET)] for b in os.urandom(4))
        p.fcid = f"{FC_PREFIX}{c.stream.name}.{c.name}.{rnd}"
        p.fcsz = p.pbytes
        self._send(plain, groups, subject, p.fcid, FC_REQUEST, b"", 0)

    def flow_control_reply(self, subject: str) -> None:
        """A client answered a flow-control request (consumer.go processFlowControl)."""
        tokens = subject[len(FC_PREFIX):].split(".")
        if len(tokens) < 3:
            return
        stream = self.api.js._streams.get(tokens[0])
        consumer = stream.consumers.get(tokens[1]) if stream is not None else None
        p = self.states.get(consumer) if consumer is not None else None
        if p is None or subject != p.fcid:
            return  # not the latest request: ignored
        if p.maxpb < p.pblimit:
            p.maxpb = min(p.maxpb * 2, p.pblimit)
        p.pbytes = max(p.pbytes - p.fcsz, 0)
        p.fcid, p.fcsz = "", 0
        self.serve(consumer)

    # -- idle heartbeats -----------------------------------------------------------------------------
    def _heartbeat(self, consumer: "Consumer") -> None:
        p = self.states.get(consumer)
        if p is None:
            return
        now = time.monotonic()
        due = p.last_out + p.hb_s
        if now >= due - 0.001:
            targets = self._targets(consumer)
            if targets is not None:
                dseq, sseq = consumer.last_delivered
                block = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: %d\r\nNats-Last-Stream: %d\r\n" % (
                    dseq, sseq)
                if p.fcid:
                    block += b"Nats-Consumer-Stalled: " + p.fcid.encode() + b"\r\n"
                self._send(targets[0], targets[1], consumer.config.deliver_subject, "", block + b"\r\n", b"", 0)
            p.last_out = now
            due = now + p.hb_s
        p.timer = asyncio.get_running_loop().call_later(max(due - now, 0.001), self._heartbeat, consumer)


def _write(sub: Any, subject: str, reply: str, block: bytes | None, payload: bytes, size: int) -> None:
    session = sub.session
    if block is None:
        session._deliver(sub, enc.msg(subject, sub.sid_b, reply or None, payload), size)
    elif session.headers:
        session._deliver(sub, enc.hmsg(subject, sub.sid_b, reply or None, block, payload), size)
    elif payload or not block.startswith(b"NATS/1.0 1"):  # control messages need headers support
        session._deliver(sub, enc.msg(subject, sub.sid_b, reply or None, payload), size)
