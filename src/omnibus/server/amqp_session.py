"""The AMQP 0-9-1 listener's session: RabbitMQ's behaviour on top of the sans-IO codec (wire/amqp) and the
core virtual host (core/vhost.py), whose queues keep message bodies in the storage log.

Strategy: ``data_received`` feeds the codec and acts on its events at once. Publishes of one read are
gathered and appended with one batch per queue (design decision 1: "batch the messages that arrive in the
same loop turn"), before any other method of the read is handled so that ordering is kept. After appends,
acks, qos changes and new consumers, each affected queue is *pumped*: ready messages go round-robin to its
consumers that have prefetch capacity. Publisher confirms go out only once every queue log a message was
appended to says it is durable under the fsync policy (``Log.when_durable``); an unroutable message is
confirmed at once, after its basic.return when mandatory, as RabbitMQ does.

Semantics follow RabbitMQ 3.x (rabbit_channel.erl), texts with ``"<NAME> - ... in vhost '/'"``:
- channel errors (404, 405, 406, 403) close the channel: its unacked messages are requeued and its
  consumers cancelled; connection errors (503, 504, 530, 540, 501-505 from the codec) close the connection.
- exclusive queues belong to their connection and go with it; auto-delete queues go when their last
  consumer is cancelled; server-named queues are ``amq.gen-`` + 22 url-safe base64 characters.
- prefetch: ``basic.qos`` with global=false sets the limit for consumers created afterwards on the
  channel (RabbitMQ 3.3+ semantics); global=true limits the whole channel. As RabbitMQ 3.10: 540 for
  ``prefetch_size != 0``, ``basic.recover requeue=false`` and ``channel.flow active=false``.
- queue.declare of an existing queue compares as rabbit_amqqueue assert_equivalence: exclusive (405),
  durable (an exclusive queue is never durable), auto_delete, then only RabbitMQ's declare arguments;
  unbinding what is not there succeeds. Texts name resources as rabbit_misc:rs ("queue 'q' in vhost '/'").
- Error replies are checked against RabbitMQ 3.10.8 by tests/server/test_amqp_raw.py
  (``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs the same tests against a real node).

Access control (core/auth.py, as rabbit_access_control): users log in with PLAIN or AMQPLAIN; the default
user only from loopback (``loopback_users``); connection.open needs a permission entry on the vhost (530);
every method checks the resources RabbitMQ's rabbit_channel checks (``_authorize``: declare/delete ->
configure, bind -> write on the destination and read on the source, publish -> write on the exchange with
"" as ``amq.default``, consume/get/purge -> read on the queue), 403 closes the channel. Each vhost has its
own ``AmqpBroker`` (consumers, exclusive owners) over its own core ``VirtualHost``; ``_current_vhost`` names
the vhost of the session being served, for RabbitMQ's texts.

Transactions (rabbit_channel tx): publishes are checked (permission, exchange) when they arrive and kept
in the channel, acks/nacks/rejects are taken off the unacked map into the channel's tx list; tx.commit
routes and appends the publishes, settles the acks and answers commit-ok once every log appended to is
durable; tx.rollback drops the publishes and puts the acks back as unacked.

connection.blocked (rabbit_reader, rabbit_alarm): ``AmqpNode`` checks broker RSS and free disk every
``ALARM_CHECK_INTERVAL``; while an alarm is on, a connection that publishes is blocked: it gets
connection.blocked ("low on memory" / "low on disk", if it announced the capability), the rest of that
read is held (``_held``) and the socket is not read until every alarm clears (then connection.unblocked
and the held methods are handled). Connections that only consume go on.

Stream queues (``x-queue-type=stream``, core/stream_queues.py): consumers need a prefetch and read by
offset (``x-stream-offset``), each delivery carries its offset header, acks only give credit back;
basic.get, queue.purge, nack/reject and no-ack consumers are 540 as in rabbit_stream_queue.

Access control, tx, blocking and streams are tested with pika/aio-pika/Kombu in tests/clients/
(test_amqp_access.py, test_amqp_tx.py, test_amqp_streams.py); ``OMNIBUS_AMQP_AGAINST=rabbitmq`` runs those
against RabbitMQ 3.10.8 too (tests/clients/amqp_target.py), and they pass on both.

Queue features (RabbitMQ ttl.html, dlx.html, maxlength.html, priority.html, consumer-priority.html,
single active consumer; core/queues.py does the per-queue bookkeeping, core/deadletter.py the x-death
history): a new queue's arguments are checked as rabbit_amqqueue declare_args (``_check_queue_args``, 406
texts observed on 3.10.8); a publish whose properties flag an expiration or a priority (one test of the
flags byte per publish) is decoded once and the core gets reserved record headers (``_message_extras``;
an invalid expiration is 406 on the channel); reject-publish refusals are nacked; after a publish is
pumped, ``AmqpBroker.after_publish`` drops over the length limit and expired heads and arms the queue's
TTL timer; dead letters are routed by ``AmqpBroker.drain_dead`` with the content header re-encoded for
them only (``patch_headers``/``patch_properties``), as ordinary appends to the target queues' logs;
``x-expires`` is a timer per queue (reset by declare, consume, cancel of the last consumer, get); single
active consumer and consumer priorities use ``_pump_special``, so plain queues keep the plain pump. Timers
do not wait for a client: ``AmqpSession.server_started`` gives every vhost its broker at start (restored
queues' timers run), and a publish from elsewhere (NATS on amq.topic) reaches ``AmqpBroker.published``
through ``VirtualHost.on_published`` (pump, limits, TTL timer, dead letters).

Not built yet (named so, see the issue's closing note): topic permissions, user tags beyond storing them.

Rules: event-loop thread only; no await and no logging per message. Run bench/amqp.py before changing
``_flush_publishes``, ``AmqpBroker.pump`` or ``Consumer.has_capacity``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import TYPE_CHECKING, Any

from omnibus import __version__
from omnibus.core.auth import CONFIGURE, FULL_ACCESS, READ, WRITE, Permissions, is_loopback, refused_text
from omnibus.core import deadletter
from omnibus.core.messages import Message
from omnibus.core.queues import HDR_EXPIRES, HDR_PRIORITY, REJECTED, shared_batch
from omnibus.core.stream_queues import StreamQueue, is_stream, parse_max_age
from omnibus.core.routing.exchanges import (AMQ_TOPIC, DEFAULT_EXCHANGE, ExchangeError, ExchangeInUse,
                                            ExchangeNotFound, ExchangeRef, InequivalentExchange,
                                            InvalidBinding, ReservedExchange, UnknownExchangeType)
from omnibus.core.vhost import (DEFAULT_VHOST, InequivalentQueue, QueueError, QueueInUse, QueueNotEmpty)
from omnibus.wire.amqp import frames as fr
from omnibus.wire.amqp import methods as m
from omnibus.wire.amqp.connection import AMQPConnection, MethodFrame, ProtocolHeader, Publish
from omnibus.wire.amqp.errors import (ACCESS_REFUSED, CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED,
                                      INTERNAL_ERROR, NO_ROUTE, NOT_ALLOWED, NOT_FOUND, NOT_IMPLEMENTED,
                                      PRECONDITION_FAILED, RESOURCE_LOCKED, SEND_CLOSE, AMQPError,
                                      amqp_error)
from omnibus.wire.amqp.fields import Timestamp, decode_table
from omnibus.wire.amqp.properties import (EMPTY_PROPERTIES, PropertiesError, decode_properties,
                                          patch_headers, patch_properties)

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.core.queues import Queue
    from omnibus.core.vhost import VirtualHost
    from omnibus.server.app import BrokerServer
    from omnibus.server.transport import Connection

__all__ = ["AmqpSession", "AmqpBroker"]

#: RabbitMQ's server properties; clients read the capabilities to enable features.
CAPABILITIES = {
    "publisher_confirms": True, "exchange_exchange_bindings": True, "basic.nack": True,
    "consumer_cancel_notify": True, "connection.blocked": True, "authentication_failure_close": True,
    "per_consumer_qos": True, "direct_reply_to": False, "consumer_priorities": True,
}
MECHANISMS = b"PLAIN AMQPLAIN"
#: Seconds to wait for connection.close-ok before dropping the socket (RabbitMQ: 3 s).
CLOSE_OK_TIMEOUT = 3.0
#: Bytes of deliveries queued for one connection in one loop turn before its consumers count as full.
#: With the transport's high-water mark below this bounds what a consumer that does not read (a no-ack
#: one above all: its messages are settled when sent) can take out of its queues into memory; the rest
#: stays in the log, as RabbitMQ's credit flow keeps it in the queue. Measured with bench/amqp.py: the
#: bound costs the 4 KiB transient case roughly 10% (within the run-to-run noise of a 2-core machine).
OUTPUT_LIMIT = 2 * 1024 * 1024
#: Write-buffer limits of an AMQP connection's transport (pause_writing above HIGH, resume below LOW).
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024


#: The vhost of the session whose input is being handled (set by ``AmqpSession.data_received``; the loop runs
#: one session's methods at a time), for RabbitMQ's "... in vhost 'v'" texts.
_current_vhost = [DEFAULT_VHOST]


def _vh(text: str) -> str:
    return f"{text} in vhost '{_current_vhost[0]}'"


#: Core exchange errors -> AMQP reply codes (rabbit_channel / rabbit_exchange).
_EXCHANGE_CODES = {ExchangeNotFound: NOT_FOUND, ExchangeInUse: PRECONDITION_FAILED,
                   InequivalentExchange: PRECONDITION_FAILED, ReservedExchange: ACCESS_REFUSED,
                   UnknownExchangeType: COMMAND_INVALID, InvalidBinding: PRECONDITION_FAILED}


def _rs(kind: str, name: str) -> str:
    """rabbit_misc:rs/1: how RabbitMQ names a resource in its texts."""
    return f"{kind} '{name}' in vhost '{_current_vhost[0]}'"


#: The queue arguments RabbitMQ 3.10 compares when a queue is declared again (rabbit_amqqueue
#: declare_args/0); any other argument may differ freely.
EQUIVALENCE_ARGS = ("x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
                    "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
                    "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer", "x-queue-type",
                    "x-quorum-initial-group-size", "x-max-age", "x-stream-max-segment-size-bytes",
                    "x-initial-cluster-size", "x-queue-leader-locator")
_MISSING = object()


def _erl(value: Any) -> str:
    """A field value as RabbitMQ prints it with ~tp/~ts (binaries bare, atoms bare)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _field_type(value: Any) -> str:
    """RabbitMQ's name of a field's type. The codec keeps Python values, not wire tags, so integers are
    named as pika sends them (signedint, or long past 32 bits)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(1 << 31) <= value < (1 << 31) else "long"
    return {float: "double", str: "longstr", bytes: "binary", dict: "table", list: "array"}.get(
        type(value), "longstr" if value is not None else "void")


def _type_class(value: Any) -> str:
    """rabbit_misc type_class: every integer type compares as int, floats as float."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def _inequivalent(field: str, resource: str, received: Any, current: Any) -> "ChannelError":
    """406 as rabbit_misc assert_field_equivalence / assert_args_equivalence word it."""
    def val(v: Any, typed: bool) -> str:
        if v is _MISSING:
            return "none"
        return f"the value '{_erl(v)}' of type '{_field_type(v)}'" if typed else f"'{_erl(v)}'"

    typed = received is _MISSING or current is _MISSING
    return ChannelError(PRECONDITION_FAILED, f"inequivalent arg '{field}' for {resource}: received "
                                             f"{val(received, typed)} but current is {val(current, typed)}")


#: rabbit_misc check_expiry and the queue argument validators of rabbit_amqqueue (declare_args/0, in its
#: order); the error terms as RabbitMQ 3.10.8 prints them with ~255p (observed on a real node).
def _want_int(v: Any) -> str | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return None
    return f'"expected integer, got {_field_type(v)}"'


def _non_neg(v: Any) -> str | None:
    return _want_int(v) or (f"{{value_negative,{v}}}" if v < 0 else None)


def _check_expires(v: Any) -> str | None:
    return _want_int(v) or ("{value_zero,0}" if v == 0 else f"{{value_negative,{v}}}" if v < 0 else None)


def _check_max_priority(v: Any) -> str | None:
    return _non_neg(v) or (f"{{max_value_exceeded,{v}}}" if v > MAX_PRIORITY else None)


def _check_longstr(v: Any) -> str | None:
    return None if isinstance(v, str) else f"{{unacceptable_type,{_field_type(v)}}}"


def _check_dlrk(v: Any, args: dict) -> str | None:
    if not isinstance(v, str):
        return f"{{unacceptable_type,{_field_type(v)}}}"
    return None if "x-dead-letter-exchange" in args else "routing_key_but_no_dlx_defined"


def _check_overflow(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"{{unacceptable_type,{_field_type(v)}}}"
    return None if v in ("drop-head", "reject-publish", "reject-publish-dlx") else "invalid_overflow"


def _check_queue_mode(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"{{unacceptable_type,{_field_type(v)}}}"
    return None if v in ("default", "lazy") else f"\"unsupported queue mode '{v}'\""


def _check_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"{{unacceptable_type,{_field_type(v)}}}"


#: RabbitMQ 3.10 x-max-priority upper bound (?MAX_SUPPORTED_PRIORITY).
MAX_PRIORITY = 255
#: Rounds of dead-lettering one drain runs (dead letters whose publishes make more); cycles are cut by
#: rabbit_dead_letter's rule first, this only bounds pathological topologies.
DEAD_LETTER_ROUNDS = 100
_QUEUE_ARG_CHECKS: tuple[tuple[str, Any], ...] = (
    ("x-expires", _check_expires), ("x-message-ttl", _non_neg), ("x-dead-letter-exchange", _check_longstr),
    ("x-dead-letter-routing-key", None), ("x-max-length", _non_neg), ("x-max-length-bytes", _non_neg),
    ("x-max-in-memory-length", _non_neg), ("x-max-in-memory-bytes", _non_neg),
    ("x-max-priority", _check_max_priority), ("x-overflow", _check_overflow), ("x-queue-mode", _check_queue_mode),
    ("x-single-active-consumer", _check_bool))


def _check_queue_args(name: str, args: dict | None) -> None:
    """A new queue's arguments as rabbit_channel / rabbit_amqqueue check them: first the dead-letter
    exchange's type (rabbit_misc r_arg), then each declare argument in order; 406 PRECONDITION_FAILED."""
    if not args:
        return
    dlx = args.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str):
        raise ChannelError(PRECONDITION_FAILED, f"invalid type '{_field_type(dlx)}' for arg "
                                                f"'x-dead-letter-exchange' in {_rs('queue', name)}")
    for key, check in _QUEUE_ARG_CHECKS:
        if key not in args:
            continue
        v = args[key]
        err = _check_dlrk(v, args) if check is None else check(v)
        if err is not None:
            raise ChannelError(PRECONDITION_FAILED, f"invalid arg '{key}' for {_rs('queue', name)}: {err}")


def _parse_expiration(text: str) -> tuple[int | None, str | None]:
    """rabbit_basic parse_expiration (Erlang string:to_integer then check_expiry): (ms, None) or
    (None, error term as RabbitMQ 3.10.8 prints it)."""
    i = 0
    if text[:1] in ("+", "-"):
        i = 1
    j = i
    while j < len(text) and text[j].isdigit() and text[j].isascii():
        j += 1
    if j == i:
        return None, "no_integer"
    n = int(text[:j])
    if j < len(text):
        return None, f'{{leftover_string,"{text[j:]}"}}'
    if n < 0:
        return None, f"{{value_negative,{n}}}"
    return n, None


def _exchange_error(e: ExchangeError) -> "ChannelError":
    """Core exchange errors with RabbitMQ's codes and texts (rabbit_channel, rabbit_exchange)."""
    code = _EXCHANGE_CODES.get(type(e), PRECONDITION_FAILED)
    text = str(e)
    if isinstance(e, ExchangeNotFound):
        text = f"no {_rs('exchange', e.name)}"
    elif isinstance(e, ExchangeInUse):
        text = f"{_rs('exchange', e.name)} in use"
    elif isinstance(e, InequivalentExchange):
        return _inequivalent(e.field, _rs("exchange", e.name), e.received if e.received is not None else _MISSING,
                             e.current if e.current is not None else _MISSING)
    elif isinstance(e, ReservedExchange) and text.startswith("deletion of system exchange '"):
        name = text[len("deletion of system exchange '"):].rsplit("' not allowed", 1)[0]
        text = f"deletion of system {_rs('exchange', name)} not allowed"
    elif isinstance(e, InvalidBinding) and text.startswith("Invalid x-match field value '"):
        value = text[len("Invalid x-match field value '"):].split("';", 1)[0]
        text = f'Invalid x-match field value <<"{value}">>; expected all, any, all-with-x, or any-with-x'
    return ChannelError(code, text)


def _ids(method: Any) -> tuple[int, int]:
    return method.CLASS_ID, method.METHOD_ID


class ChannelError(Exception):
    """Raised inside a method handler: close the channel (soft code) or the connection (hard code)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class Consumer:
    __slots__ = ("channel", "tag", "queue", "no_ack", "prefetch", "unacked", "exclusive", "priority")

    def __init__(self, channel: "Channel", tag: str, queue: str, no_ack: bool, prefetch: int,
                 exclusive: bool, priority: int = 0) -> None:
        self.channel = channel
        self.tag = tag
        self.queue = queue
        self.no_ack = no_ack
        self.prefetch = prefetch
        self.unacked = 0
        self.exclusive = exclusive
        self.priority = priority  # basic.consume x-priority (consumer-priority.html)

    def has_capacity(self) -> bool:
        ch = self.channel
        if not ch.active or ch.closing:
            return False
        conn = ch.session.conn
        if conn.writing_paused or conn._out_size > OUTPUT_LIMIT:
            ch.session.output_blocked(self.queue)  # go on once the socket has taken what is queued
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return not ch.global_prefetch or len(ch.unacked) < ch.global_prefetch


class StreamConsumer(Consumer):
    """A consumer of a stream queue: reads from its own offset; acks only give credit back."""

    __slots__ = ("offset",)

    def __init__(self, channel: "Channel", tag: str, queue: str, prefetch: int, exclusive: bool,
                 offset: int) -> None:
        super().__init__(channel, tag, queue, False, prefetch, exclusive)
        self.offset = offset


class Channel:
    __slots__ = ("id", "session", "unacked", "next_tag", "confirm", "publish_seq", "prefetch",
                 "global_prefetch", "consumers", "closing", "active", "tx", "tx_acks")

    def __init__(self, session: "AmqpSession", channel_id: int) -> None:
        self.id = channel_id
        self.session = session
        #: delivery tag -> (queue name, offset, consumer or None for basic.get)
        self.unacked: dict[int, tuple[str, int, Consumer | None]] = {}
        self.next_tag = 1
        self.confirm = False
        self.publish_seq = 0
        self.prefetch = 0  # for consumers created from now on (basic.qos global=false)
        self.global_prefetch = 0  # for the whole channel (global=true)
        self.consumers: dict[str, Consumer] = {}
        self.closing = False
        self.active = True  # channel.flow
        #: tx.select'ed: the publishes of the open transaction (None: not transactional)
        self.tx: list[Publish] | None = None
        #: settlements of the open transaction: (requeue: None = ack, bool = reject/nack, {tag: entry})
        self.tx_acks: list[tuple[bool | None, dict]] = []


#: Seconds between two resource checks (RabbitMQ: memory every 2.5 s, disk every 10 s at most). One check
#: reads /proc/self/statm and calls statvfs: a few microseconds.
ALARM_CHECK_INTERVAL = 0.5
#: rabbit_reader: the reason of connection.blocked is "low on " + the alarms joined by " & ".
ALARM_NAMES = ("memory", "disk")
try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (ValueError, OSError, AttributeError):  # pragma: no cover
    _PAGE_SIZE = 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):  # not Linux: no memory alarm
        return 0


class AmqpNode:
    """Server-wide AMQP state: access control, one ``AmqpBroker`` per vhost, resource alarms and the
    connections they block. Event-loop thread only."""

    def __init__(self, server: "BrokerServer") -> None:
        self.server = server
        settings = server.settings.amqp
        access = getattr(server, "access", None)
        if access is None:  # a server that did not configure access control: the settings' users, in memory
            from omnibus.core.auth import AccessControl

            access = AccessControl(None)
            access.configure(default_user=settings.default_user, default_pass=settings.default_pass,
                             default_vhost=settings.default_vhost, users=settings.users)
        self.access = access
        self.loopback_users = frozenset(settings.loopback_users)
        self.brokers: dict[str, AmqpBroker] = {}
        #: resource alarms on now ("memory", "disk"), the limits (0 = off; tests may change them)
        self.alarms: set[str] = set()
        self.memory_high_watermark = settings.memory_high_watermark_bytes
        self.disk_free_limit = settings.disk_free_limit_bytes
        self.blocked: set["AmqpSession"] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._check_alarms()
        server.closers.append(self.close)

    @classmethod
    def of(cls, server: "BrokerServer") -> "AmqpNode":
        node = getattr(server, "amqp_node", None)
        if node is None:
            node = server.amqp_node = cls(server)
        return node

    def broker(self, vhost: str) -> "AmqpBroker":
        broker = self.brokers.get(vhost)
        if broker is None:
            broker = self.brokers[vhost] = AmqpBroker(self.server, vhost)
        return broker

    def open_vhost(self, name: str) -> "VirtualHost | None":
        """The core vhost ``name``, opened on first use if access control knows it; None if unknown."""
        vh = self.server.vhosts.get(name)
        if vh is None and self.access.vhost_exists(name):
            opener = getattr(self.server, "_open_vhost", None)
            vh = opener(name) if opener is not None else None
        return vh

    # -- resource alarms (rabbit_alarm) ------------------------------------------------------------------
    def _check_alarms(self) -> None:
        alarms = set()
        if self.memory_high_watermark > 0 and _rss_bytes() > self.memory_high_watermark:
            alarms.add("memory")
        if self.disk_free_limit > 0:
            try:
                st = os.statvfs(self.server.data_dir)
                if st.f_bavail * st.f_frsize < self.disk_free_limit:
                    alarms.add("disk")
            except OSError:
                pass
        if alarms != self.alarms:
            self.alarms = alarms
            if not alarms:
                blocked, self.blocked = self.blocked, set()
                for session in blocked:
                    session.alarm_cleared()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover
            return
        self._timer = loop.call_later(ALARM_CHECK_INTERVAL, self._check_alarms)

    def blocked_reason(self) -> str:
        return "low on " + " & ".join(a for a in ALARM_NAMES if a in self.alarms)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class AmqpBroker:
    """One vhost's AMQP state: consumers per queue and exclusive owners. Event-loop thread only."""

    def __init__(self, server: "BrokerServer", name: str = DEFAULT_VHOST) -> None:
        self.server = server
        self.name = name
        self.consumers: dict[str, list[Consumer]] = {}
        self.rr: dict[str, int] = {}
        self.owners: dict[str, "AmqpSession"] = {}  # exclusive queue -> owning connection
        self.had_consumers: set[str] = set()
        #: queues whose consumers are served by _pump_special (single active consumer, x-priority)
        self.special: set[str] = set()
        #: single-active-consumer queue -> its active consumer
        self.active: dict[str, Consumer] = {}
        self._ttl_timers: dict[str, tuple[int, asyncio.TimerHandle, Queue]] = {}  # at the head's expiry
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}  # x-expires
        self._dead_queues: list[Queue] = []  # queues with dead letters to route
        self._dead_scheduled = False
        self._attach()

    @classmethod
    def of(cls, server: "BrokerServer", vhost: str = DEFAULT_VHOST) -> "AmqpBroker":
        return AmqpNode.of(server).broker(vhost)

    @property
    def vhost(self) -> "VirtualHost":
        return self.server.vhosts[self.name]

    def pump(self, name: str) -> None:
        """Hand ready messages of queue ``name`` to its consumers, round-robin. Hot path."""
        consumers = self.consumers.get(name)
        if not consumers:
            return
        if name in self.special:
            return self._pump_special(name, consumers)
        queue = self.vhost.queues.get(name)
        if queue is None:
            return
        if queue.__class__ is StreamQueue:
            return self._pump_stream(name, queue, consumers)
        n = len(consumers)
        rr = self.rr.get(name, 0)
        send = self._send
        while queue.message_count:
            for i in range(n):
                c = consumers[(rr + i) % n]
                if c.has_capacity():
                    rr = (rr + i + 1) % n
                    break
            else:
                break
            d = queue.deliver_next()
            if d is None:
                break
            send(c, name, queue, d)
        self.rr[name] = rr

    def _pump_stream(self, name: str, queue: StreamQueue, consumers: list[Consumer]) -> None:
        """Each consumer of a stream reads on from its own offset while it has credit (prefetch);
        deliveries carry ``x-stream-offset`` (rabbit_stream_queue). The batch read is shared."""
        end = queue.end_offset
        for c in consumers:
            while c.offset < end and c.has_capacity():
                msgs = queue.read(c.offset)
                if not msgs:
                    break
                ch = c.channel
                session = ch.session
                write, deliver = session.conn.write, session.amqp.deliver
                for offset, msg in msgs:
                    if not c.has_capacity():
                        break
                    tag = ch.next_tag
                    ch.next_tag = tag + 1
                    ch.unacked[tag] = (name, offset, c)
                    c.unacked += 1
                    try:
                        props = patch_headers(msg.properties or EMPTY_PROPERTIES, {"x-stream-offset": offset})
                    except PropertiesError:  # pragma: no cover (checked at publish)
                        props = msg.properties or EMPTY_PROPERTIES
                    write(deliver(ch.id, c.tag, tag, False, msg.exchange, msg.routing_key, props, bytes(msg.body)))
                    c.offset = offset + 1

    def remove_consumer(self, c: Consumer) -> None:
        lst = self.consumers.get(c.queue)
        if lst is not None and c in lst:
            lst.remove(c)
            if self.active.get(c.queue) is c:
                del self.active[c.queue]  # the next pump picks the new active consumer
            if not lst:
                del self.consumers[c.queue]
                self.rr.pop(c.queue, None)
                self.special.discard(c.queue)
                queue = self.vhost.queues.get(c.queue)
                if queue is not None and queue.auto_delete and c.queue in self.had_consumers:
                    self.delete_queue(c.queue)
                elif queue is not None and queue.expires is not None:
                    queue.touch()  # unused from now: the x-expires period starts again
                    self.arm_expires(queue)
            elif c.queue in self.special:
                self._update_special(c.queue)
                self.pump(c.queue)  # a single active consumer went: the next one takes over

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        consumers = list(self.consumers.get(name, ()))
        count = self.vhost.delete_queue(name, if_unused=if_unused, if_empty=if_empty, consumers=len(consumers))
        self.consumers.pop(name, None)
        self.rr.pop(name, None)
        self.owners.pop(name, None)
        self.had_consumers.discard(name)
        self.special.discard(name)
        self.active.pop(name, None)
        for timers in (self._idle_timers, self._ttl_timers):
            t = timers.pop(name, None)
            if t is not None:
                (t if isinstance(t, asyncio.TimerHandle) else t[1]).cancel()
        for c in consumers:  # server-sent basic.cancel (consumer_cancel_notify)
            ch = c.channel
            ch.consumers.pop(c.tag, None)
            if not ch.closing:
                ch.session.conn.write(ch.session.amqp.send(ch.id, m.BasicCancel(c.tag, True)))
        return count

    # -- queue features (TTL, x-expires, dead-lettering, length limits, SAC, consumer priority) ----------
    # Strategy: the core queue does the per-queue bookkeeping (core/queues.py); here live what needs the
    # event loop or AMQP: timers, dead-letter routing with the x-death properties, and the pump variant
    # for single-active-consumer queues and consumers with x-priority. Queues without these features are
    # never touched by this code (``special`` and ``q.timed``/``q.limited`` are checked per call).
    def _attach(self) -> None:
        """Hook the vhost's queues (restored ones too) to this broker: dead letters, timers."""
        vh = self.server.vhosts.get(self.name)
        if vh is None or vh.on_dead == self._on_dead:
            return
        vh.on_dead = self._on_dead
        vh.on_published = self.published  # any publish path (NATS on amq.topic too) pumps and arms timers
        for q in vh.queues.values():
            self.queue_created(q)

    def queue_created(self, q: "Queue") -> None:
        q.on_dead = self._on_dead
        self.arm_expires(q)
        self.schedule_expiry(q)

    def _update_special(self, name: str) -> None:
        """A queue's consumers need ``_pump_special``: single active consumer, or consumer priorities."""
        q = self.vhost.queues.get(name)
        lst = self.consumers.get(name)
        if q is not None and lst and (q.single_active_consumer or any(c.priority for c in lst)):
            self.special.add(name)
        else:
            self.special.discard(name)

    def _send(self, c: "Consumer", name: str, queue: "Queue", d: Any) -> None:
        ch = c.channel
        tag = ch.next_tag
        ch.next_tag = tag + 1
        msg = d.message
        if c.no_ack:
            queue.ack(d.offset)
        else:
            ch.unacked[tag] = (name, d.offset, c)
            c.unacked += 1
        session = ch.session
        session.conn.write(session.amqp.deliver(ch.id, c.tag, tag, d.redelivered, msg.exchange,
                                                msg.routing_key, msg.properties, bytes(msg.body)))

    def _pump_special(self, name: str, consumers: list["Consumer"]) -> None:
        """pump for a single-active-consumer queue or for consumers with x-priority (the highest priority
        with prefetch capacity gets the message, round-robin within a priority).

        Single active consumer as RabbitMQ 3.10's classic queue (rabbit_amqqueue_process basic_consume /
        new_single_active_consumer_after_basic_cancel): the first consumer of a queue without one becomes
        active whatever its priority, and a later one of higher priority does not take over; when the
        active one goes, the next is ``rabbit_queue_consumers:get_consumer``, the head of the consumers'
        priority queue: the highest x-priority, the earliest registered among equals."""
        queue = self.vhost.queues.get(name)
        if queue is None:
            return
        if queue.single_active_consumer:
            c = self.active.get(name)
            if c is None:
                c = consumers[0]
                for other in consumers:  # max() by priority, first registered among equals
                    if other.priority > c.priority:
                        c = other
                self.active[name] = c
            while queue.message_count and c.has_capacity():
                d = queue.deliver_next()
                if d is None:
                    break
                self._send(c, name, queue, d)
            return
        groups: dict[int, list[Consumer]] = {}
        for c in consumers:
            groups.setdefault(c.priority, []).append(c)
        order = [groups[p] for p in sorted(groups, reverse=True)]
        rr = self.rr.get(name, 0)
        while queue.message_count:
            chosen = None
            for g in order:
                n = len(g)
                for i in range(n):
                    c = g[(rr + i) % n]
                    if c.has_capacity():
                        chosen = c
                        rr += i + 1
                        break
                if chosen is not None:
                    break
            if chosen is None:
                break
            d = queue.deliver_next()
            if d is None:
                break
            self._send(chosen, name, queue, d)
        self.rr[name] = rr

    def after_publish(self, q: "Queue") -> None:
        """After a publish to a queue with limits or TTL was pumped: drop over the length limit
        (drop-head), drop expired heads (TTL 0: what no consumer took at once), arm the expiry timer."""
        if q.limited:
            q.enforce_limits()
        if q.timed:
            q.expire_head()
            self.schedule_expiry(q)

    def after_requeue(self, q: "Queue") -> None:
        """Messages came back to a queue with limits or TTL: as rabbit_amqqueue_process requeue_and_run,
        drop over the limit (drop-head) and expired heads before delivering again; arm the TTL timer."""
        if q.limited:
            q.enforce_limits()
        if q.timed:
            q.expire_head()
            self.schedule_expiry(q)

    # TTL timers: one per queue, at the head's expiry; a timer that finds nothing expired re-arms itself
    def schedule_expiry(self, q: "Queue") -> None:
        if not q.timed:
            return
        exp = q.next_expiry()
        if exp is None:
            return
        cur = self._ttl_timers.get(q.name)
        if cur is not None:
            if cur[0] <= exp and cur[2] is q:
                return
            cur[1].cancel()
        delay = max(0, exp - q.clock.now_ms() + 1) / 1000
        handle = asyncio.get_running_loop().call_later(delay, self._ttl_fire, q)
        self._ttl_timers[q.name] = (exp, handle, q)

    def _ttl_fire(self, q: "Queue") -> None:
        cur = self._ttl_timers.get(q.name)
        if cur is not None and cur[2] is q:
            del self._ttl_timers[q.name]
        vh = self.server.vhosts.get(self.name)  # None once the broker is stopping
        if vh is None or vh.queues.get(q.name) is not q:
            return
        q.expire_head()
        self.drain_dead()
        self.schedule_expiry(q)

    # x-expires: a queue unused (no consumer, no basic.get, no re-declare) for the period is deleted
    def arm_expires(self, q: "Queue", delay: float | None = None) -> None:
        if q.expires is None or q.name in self._idle_timers:
            return
        delay = q.expires / 1000 if delay is None else delay
        self._idle_timers[q.name] = asyncio.get_running_loop().call_later(delay, self._idle_fire, q)

    def _idle_fire(self, q: "Queue") -> None:
        self._idle_timers.pop(q.name, None)
        vh = self.server.vhosts.get(self.name)  # None once the broker is stopping
        if vh is None or vh.queues.get(q.name) is not q or self.consumers.get(q.name):
            return  # gone, or in use (the last consumer's cancel re-arms)
        left = q.expires / 1000 - (q.clock.monotonic() - q.last_used)
        if left > 0.0005:
            self.arm_expires(q, left)
            return
        self.delete_queue(q.name)  # its messages are not dead-lettered (dlx.html)

    # dead-lettering (rabbit_dead_letter): route a copy with x-death to the queue's DLX
    def _on_dead(self, q: "Queue") -> None:
        self._dead_queues.append(q)
        if not self._dead_scheduled:
            self._dead_scheduled = True
            asyncio.get_running_loop().call_soon(self.drain_dead)

    def drain_dead(self) -> None:
        """Route every pending dead letter (and those their publishes cause, e.g. a full target queue),
        one batch per target queue per round."""
        self._dead_scheduled = False
        if self.name not in self.server.vhosts:  # stopping
            self._dead_queues.clear()
            return
        rounds = 0
        while self._dead_queues and rounds < DEAD_LETTER_ROUNDS:
            rounds += 1
            queues, self._dead_queues = self._dead_queues, []
            per_queue: dict[str, list[Message]] = {}
            for q in queues:
                for msg, reason in q.take_dead_letters():
                    self._route_dead(q, msg, reason, per_queue)
            if per_queue:
                self.enqueue(per_queue)
        self._dead_queues.clear()

    def _route_dead(self, q: "Queue", msg: Message, reason: str, per_queue: dict[str, list[Message]]) -> None:
        vh = self.vhost
        dlx = q.dead_letter_exchange
        if dlx is None or dlx not in vh.exchanges:
            return  # a DLX that does not exist: dropped silently, as RabbitMQ
        raw = msg.properties or EMPTY_PROPERTIES
        try:
            props = decode_properties(raw)
        except PropertiesError:  # pragma: no cover (checked when published)
            raw, props = EMPTY_PROPERTIES, decode_properties(EMPTY_PROPERTIES)
        old = props.headers or {}
        dlrk = q.dead_letter_routing_key
        new = deadletter.dead_letter_headers(
            old, queue=q.name, reason=reason, exchange=msg.exchange, routing_key=msg.routing_key,
            dead_letter_routing_key=dlrk, time=Timestamp(vh.clock.now_ms() // 1000), expiration=props.expiration)
        changed = {k: new[k] for k in new if k not in old or k == deadletter.X_DEATH}
        raw = patch_headers(raw, set=changed, remove=("CC",) if dlrk is not None and "CC" in old else ())
        if props.expiration is not None:
            raw = patch_properties(raw, expiration=None)
        keys = [dlrk] if dlrk is not None else deadletter.death_routing_keys(msg.routing_key, old)
        x = vh.exchanges.get(dlx)
        route_headers = new if x is not None and x.type == "headers" else None
        dests: list[str] = []
        for key in keys:
            try:
                routed = vh.exchanges.route(dlx, key, route_headers)
            except ExchangeNotFound:  # pragma: no cover
                return
            for d in routed:
                if d.__class__ is str and d in vh.queues and d not in dests:
                    dests.append(d)
        if reason != REJECTED:
            deaths = new.get(deadletter.X_DEATH)
            dests = [d for d in dests if not deadletter.is_cycle(d, deaths)]
        if not dests:
            return
        headers = msg.headers
        if headers is not None and HDR_EXPIRES in headers:
            headers = {k: v for k, v in headers.items() if k != HDR_EXPIRES} or None
        copy = Message(keys[0], msg.body, headers, raw, exchange=dlx)
        for d in dests:
            per_queue.setdefault(d, []).append(copy)

    def enqueue(self, per_queue: dict[str, list[Message]]) -> None:
        """Append messages that need no confirm (dead letters) to their queues, then pump them."""
        queues = self.vhost.queues
        for name, msgs in per_queue.items():
            q = queues.get(name)
            if q is not None:
                q.publish_admitted(msgs)
        for name in per_queue:
            q = queues.get(name)
            if q is not None:
                self.pump(name)
                self.after_publish(q)

    def published(self, names: Any) -> None:
        """``VirtualHost.on_published``: messages were appended to the queues ``names`` by a publish that
        did not come through an AMQP session (a NATS publish on amq.topic): hand them to consumers, apply
        drop-head limits, drop expired heads and arm TTL timers, route what died."""
        vh = self.server.vhosts.get(self.name)
        if vh is None:  # stopping
            return
        queues = vh.queues
        for name in names:
            q = queues.get(name)
            if q is not None:
                self.pump(name)
                if q.limited or q.timed:
                    self.after_publish(q)
        if self._dead_queues:
            self.drain_dead()


class AmqpSession:
    """One AMQP client connection."""

    @staticmethod
    def server_started(server: "BrokerServer") -> None:
        """The broker is up (``BrokerServer._warm_sessions``): give every open vhost its ``AmqpBroker`` now,
        so restored queues' TTL and x-expires timers run and NATS publishes into AMQP queues are pumped
        without waiting for an AMQP connection to open the vhost."""
        node = AmqpNode.of(server)
        for name in list(server.vhosts):
            node.broker(name)

    def __init__(self, conn: "Connection", server: "BrokerServer") -> None:
        self.conn = conn
        self.server = server
        self.node = AmqpNode.of(server)
        self.broker = self.node.broker(DEFAULT_VHOST)  # the vhost's, from connection.open on
        limits = server.settings.limits
        tune = server.settings.amqp
        self.amqp = AMQPConnection(max_message_size=min(fr.MAX_MESSAGE_SIZE, limits.max_frame_bytes),
                                   frame_max=tune.frame_max, channel_max=tune.channel_max,
                                   heartbeat=tune.heartbeat)
        self.channels: dict[int, Channel] = {}
        self.user = ""
        self.vhost_name = DEFAULT_VHOST
        #: the user's permissions on the vhost; None = everything allowed (no check on the hot paths)
        self.perms: Permissions | None = None
        self.blocked_capable = False  # client_properties capabilities "connection.blocked"
        self.alarm_blocked = False  # not read while a resource alarm is on (we published meanwhile)
        self._sent_blocked = False
        self._held: list | None = None  # events read, not handled while blocked by an alarm
        self.closed = False
        self.last_recv = time.monotonic()
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._publishes: list[Publish] = []
        self.exclusive: set[str] = set()
        self._blocked: set[str] = set()  # queues whose delivery to us stopped at OUTPUT_LIMIT
        self._unblock_scheduled = False
        if conn.transport is not None:
            # resume before the buffer runs dry, so that a fast consumer's socket never idles (the
            # transport's default low-water mark, 0, is for sendfile, which AMQP does not use)
            conn.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)

    # -- input -----------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_recv = time.monotonic()
        self.amqp.receive_data(data)
        if self._held is not None:  # blocked by an alarm: what was read meanwhile waits too
            self._held.extend(self.amqp.events())
            return
        self._handle(self.amqp.events())

    def _handle(self, events: list) -> None:
        """Act on a read's events. While a resource alarm is on, the first publish blocks the connection
        and the events after it are held until the alarm clears (rabbit_reader stops handling its input
        at the blocking publish)."""
        _current_vhost[0] = self.vhost_name
        alarms = self.node.alarms
        for i, ev in enumerate(events):
            if type(ev) is Publish:
                self._publishes.append(ev)
                if alarms and not self.alarm_blocked:
                    self._flush_publishes()  # blocks us
                    if self.alarm_blocked:
                        self._held = events[i + 1:]
                        return
                continue
            if self._publishes:  # keep order: publishes before the method that follows them
                self._flush_publishes()
            if type(ev) is MethodFrame:
                try:
                    self._method(ev.channel, ev.method)
                except ChannelError as e:
                    self._error(ev.channel, e.code, e.text, ev.method)
            elif type(ev) is ProtocolHeader:
                self._start()
            elif isinstance(ev, AMQPError):
                self._codec_error(ev)
                return
            if self.closed:
                return
        if self._publishes:
            self._flush_publishes()

    def _start(self) -> None:
        props = {"product": "Omnibus", "version": __version__, "platform": "Python",
                 "capabilities": CAPABILITIES, "cluster_name": "omnibus",
                 "copyright": "Omnibus contributors", "information": "https://github.com/ (Omnibus broker)"}
        self.conn.write(self.amqp.send(0, m.ConnectionStart(0, 9, props, MECHANISMS, b"en_US")))

    def _codec_error(self, err: AMQPError) -> None:
        out = fr.error_bytes(err)
        if out:
            self.conn.write(out)
        if err.scope == "channel":
            self._channel_gone(err.channel)
            return
        if err.action == SEND_CLOSE:
            self._await_close_ok()
        else:
            self._close()

    def _error(self, channel: int, code: int, text: str, method: Any) -> None:
        """Send RabbitMQ's close for an error found while handling ``method``."""
        err = amqp_error(code, text, *_ids(method), channel=channel)
        if err.scope == "channel":
            self.conn.write(self.amqp.send(channel, m.ChannelClose(err.reply_code, err.reply_text,
                                                                   err.class_id, err.method_id)))
            self._channel_gone(channel, closing=True)
        else:
            self.conn.write(self.amqp.send(0, m.ConnectionClose(err.reply_code, err.reply_text,
                                                                err.class_id, err.method_id)))
            self._await_close_ok()

    def _await_close_ok(self) -> None:
        for ch_id in list(self.channels):
            self._channel_gone(ch_id)
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_OK_TIMEOUT, self._close)

    # -- methods ---------------------------------------------------------------------------------------
    def _method(self, ch_id: int, method: Any) -> None:
        handler = _HANDLERS.get(type(method))
        if handler is None:
            raise ChannelError(NOT_IMPLEMENTED, f"{method.NAME} is not implemented")
        if ch_id:
            ch = self.channels.get(ch_id)
            if ch is None and type(method) is not m.ChannelOpen:
                raise ChannelError(CHANNEL_ERROR, "expected 'channel.open'")  # codec normally catches this
            if ch is not None and ch.closing and type(method) not in (m.ChannelClose, m.ChannelCloseOk):
                return  # RabbitMQ drops methods on a closing channel
            if self.perms is not None:
                self._authorize(method)
            handler(self, ch_id, ch, method)
        else:
            handler(self, 0, None, method)

    # connection class
    def _start_ok(self, _id, _ch, method) -> None:
        user, password = _credentials(method.mechanism, method.response)
        caps = (method.client_properties or {}).get("capabilities") or {}
        caps = caps if isinstance(caps, dict) else {}
        self.blocked_capable = bool(caps.get("connection.blocked"))
        if not self._config_user_ok(user, password):
            if not caps.get("authentication_failure_close"):
                self._close()  # RabbitMQ tells only clients that announce the capability; others see a close
                return
            mech = method.mechanism.decode() if isinstance(method.mechanism, bytes) else method.mechanism
            # rabbit_reader auth_fail: connection.close with class/method 0, 0 (observed on 3.10.8)
            self.conn.write(self.amqp.send(0, m.ConnectionClose(
                ACCESS_REFUSED, f"ACCESS_REFUSED - Login was refused using authentication mechanism {mech}. "
                                "For details see the broker logfile.", 0, 0)))
            self._await_close_ok()
            return
        self.user = user
        a = self.amqp
        self.conn.write(a.send(0, m.ConnectionTune(a.server_channel_max, a.server_frame_max, a.server_heartbeat)))

    def _config_user_ok(self, user: str, password: str) -> bool:
        """rabbit_access_control check_user_pass_login, then check_user_loopback: a loopback user (the
        default ``guest``) only from a loopback address."""
        node = self.node
        if not node.access.authenticate(user, password):
            return False
        if user in node.loopback_users:
            peer = self.conn.transport.get_extra_info("peername") if self.conn.transport is not None else None
            host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
            return is_loopback(host)
        return True

    def _tune_ok(self, _id, _ch, method) -> None:
        if self.amqp.heartbeat:
            self._schedule_heartbeat()

    def _open(self, _id, _ch, method) -> None:
        """rabbit_reader connection.open: an unknown vhost is "not found" (the vhost limit check comes
        first), then rabbit_access_control check_vhost_access (530 both, observed on 3.10.8)."""
        node = self.node
        name = method.virtual_host or self.server.settings.amqp.default_vhost
        if not node.access.vhost_exists(name) or node.open_vhost(name) is None:
            raise ChannelError(NOT_ALLOWED, f"vhost {name} not found")
        if not node.access.check_vhost_access(self.user, name):
            raise ChannelError(NOT_ALLOWED, f"access to vhost '{name}' refused for user '{self.user}'")
        perms = node.access.permissions(self.user, name)
        self.perms = None if perms is None or perms.as_tuple() == FULL_ACCESS else perms
        self.vhost_name = _current_vhost[0] = name
        self.broker = node.broker(name)
        self.conn.write(self.amqp.send(0, m.ConnectionOpenOk("")))

    # access control (rabbit_channel check_*_permitted; the default exchange is checked as amq.default)
    def _check(self, permission: str, kind: str, name: str) -> None:
        perms = self.perms
        if perms is not None and not perms.allows(permission, name):
            raise ChannelError(ACCESS_REFUSED, refused_text(kind, name, self.vhost_name, self.user))

    def _authorize(self, method: Any) -> None:
        """The resources rabbit_channel checks before handling ``method``, in its order (queue.declare
        checks the name it settles on, in ``_queue_declare``; basic.publish in ``_flush_publishes``)."""
        t = type(method)
        if t is m.QueueDelete:
            self._check(CONFIGURE, "queue", method.queue)
        elif t is m.QueuePurge or t is m.BasicConsume or t is m.BasicGet:
            self._check(READ, "queue", method.queue)
        elif t is m.QueueBind or t is m.QueueUnbind:
            self._check(WRITE, "queue", method.queue)
            if method.exchange:  # the default exchange is refused by the handler first
                self._check(READ, "exchange", method.exchange)
        elif t is m.ExchangeBind or t is m.ExchangeUnbind:
            self._check(WRITE, "exchange", method.destination or "amq.default")
            if method.source and method.destination:
                self._check(READ, "exchange", method.source)
        elif t is m.ExchangeDeclare:
            if not method.passive and method.exchange:
                self._check(CONFIGURE, "exchange", method.exchange)
                ae = (method.arguments or {}).get("alternate-exchange")
                if isinstance(ae, (str, bytes)) and method.exchange not in self.broker.vhost.exchanges:
                    self._check(READ, "exchange", method.exchange)
                    self._check(WRITE, "exchange", _erl(ae))
        elif t is m.ExchangeDelete:
            if method.exchange and not method.exchange.startswith("amq."):  # system ones: 403 by the handler
                self._check(CONFIGURE, "exchange", method.exchange)

    def _check_declare(self, name: str, arguments: Any) -> None:
        """queue.declare: configure on the queue; a new queue with a dead-letter exchange also needs read
        on itself and write on that exchange (rabbit_channel)."""
        self._check(CONFIGURE, "queue", name)
        dlx = (arguments or {}).get("x-dead-letter-exchange")
        if isinstance(dlx, (str, bytes)) and name not in self.broker.vhost.queues:
            self._check(READ, "queue", name)
            self._check(WRITE, "exchange", _erl(dlx) or "amq.default")

    def _connection_close(self, _id, _ch, method) -> None:
        for ch_id in list(self.channels):
            self._channel_gone(ch_id)
        self.conn.write(self.amqp.send(0, m.ConnectionCloseOk()))
        self._close()

    def _connection_close_ok(self, _id, _ch, method) -> None:
        self._close()

    def _update_secret(self, _id, _ch, method) -> None:
        # the guest user's password does not expire; RabbitMQ answers ok for its internal backend
        self.conn.write(self.amqp.send(0, m.ConnectionUpdateSecretOk()))

    # channel class
    def _channel_open(self, ch_id, _ch, method) -> None:
        self.channels[ch_id] = Channel(self, ch_id)
        self.conn.write(fr.method_frame(ch_id, m.ChannelOpenOk(b"")))

    def _channel_close(self, ch_id, ch, method) -> None:
        self._channel_gone(ch_id)
        self.conn.write(self.amqp.send(ch_id, m.ChannelCloseOk()))

    def _channel_close_ok(self, ch_id, ch, method) -> None:
        self.channels.pop(ch_id, None)

    def _flow(self, ch_id, ch, method) -> None:
        if not method.active:  # RabbitMQ 3.x does not stop deliveries on request (rabbit_channel)
            raise ChannelError(NOT_IMPLEMENTED, "active=false")
        ch.active = bool(method.active)
        self.conn.write(fr.method_frame(ch_id, m.ChannelFlowOk(method.active)))
        if ch.active:
            for c in list(ch.consumers.values()):
                self.broker.pump(c.queue)

    # exchange class
    def _exchange_declare(self, ch_id, ch, method) -> None:
        vh = self.broker.vhost
        name = method.exchange
        if method.passive:
            if name not in vh.exchanges:
                raise ChannelError(NOT_FOUND, _vh(f"no exchange '{name}'"))
        else:
            try:
                vh.declare_exchange(name, method.type, durable=method.durable, auto_delete=method.auto_delete,
                                    internal=method.internal, arguments=method.arguments)
            except ExchangeError as e:
                raise _exchange_error(e) from None
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.ExchangeDeclareOk()))

    def _exchange_delete(self, ch_id, ch, method) -> None:
        try:
            self.broker.vhost.delete_exchange(method.exchange, if_unused=method.if_unused)
        except ExchangeError as e:
            raise _exchange_error(e) from None
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.ExchangeDeleteOk()))

    def _exchange_bind(self, ch_id, ch, method) -> None:
        self._bind_exchange(ch_id, method, bind=True)

    def _exchange_unbind(self, ch_id, ch, method) -> None:
        self._bind_exchange(ch_id, method, bind=False)

    def _bind_exchange(self, ch_id, method, *, bind: bool) -> None:
        vh = self.broker.vhost
        if not bind and (method.source not in vh.exchanges or method.destination not in vh.exchanges):
            if not method.nowait:  # RabbitMQ 3.10: unbinding what is not there succeeds
                self.conn.write(fr.method_frame(ch_id, m.ExchangeUnbindOk()))
            return
        for name in (method.source, method.destination):
            if name not in vh.exchanges:
                raise ChannelError(NOT_FOUND, _vh(f"no exchange '{name}'"))
        try:
            if bind:
                vh.bind(method.source, ExchangeRef(method.destination), method.routing_key, method.arguments)
            else:
                vh.unbind(method.source, ExchangeRef(method.destination), method.routing_key, method.arguments)
        except ExchangeError as e:
            raise _exchange_error(e) from None
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.ExchangeBindOk() if bind else m.ExchangeUnbindOk()))

    # queue class
    @staticmethod
    def _locked(name: str) -> ChannelError:
        return ChannelError(RESOURCE_LOCKED, _vh(
            f"cannot obtain exclusive access to locked queue '{name}'") + ". It could be originally declared "
            "on another connection or the exclusive property value does not match that of the original "
            "declaration.")

    def _check_owner(self, name: str) -> None:
        owner = self.broker.owners.get(name)
        if owner is not None and owner is not self:
            raise self._locked(name)

    def _queue(self, name: str) -> "Queue":
        q = self.broker.vhost.queues.get(name)
        if q is None:
            raise ChannelError(NOT_FOUND, _vh(f"no queue '{name}'"))
        self._check_owner(name)
        return q

    def _queue_declare(self, ch_id, ch, method) -> None:
        broker = self.broker
        vh = broker.vhost
        name = method.queue
        if method.passive:
            q = self._queue(name)
        else:
            if not name:
                name = "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
            elif name.startswith("amq."):
                raise ChannelError(ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'")
            if self.perms is not None:
                self._check_declare(name, method.arguments)
            self._check_owner(name)
            durable = bool(method.durable) and not method.exclusive  # rabbit_channel: exclusive ⇒ transient
            q = vh.queues.get(name)
            if q is not None:
                self._assert_equivalent(q, method, durable)
                q.touch()
            else:
                if is_stream(method.arguments) and not self._check_stream_declare(name, method, durable):
                    return
                _check_queue_args(name, method.arguments)
                try:
                    q, created = vh.declare_queue(name, durable=durable, exclusive=bool(method.exclusive),
                                                  auto_delete=bool(method.auto_delete), arguments=method.arguments)
                except InequivalentQueue as e:  # pragma: no cover (the queue did not exist)
                    raise ChannelError(PRECONDITION_FAILED, _vh(str(e))) from None
                if method.exclusive:
                    broker.owners[name] = self
                    self.exclusive.add(name)
                broker.queue_created(q)
        if not method.nowait:
            consumers = len(broker.consumers.get(name, ()))
            self.conn.write(fr.method_frame(ch_id, m.QueueDeclareOk(name, q.message_count, consumers)))

    def _check_stream_declare(self, name: str, method: Any, durable: bool) -> bool:
        """rabbit_stream_queue declare: auto-delete, exclusive, non-durable are refused (406, in that order,
        observed on 3.10.8); an x-max-age that does not parse crashes RabbitMQ's channel (541
        INTERNAL_ERROR, connection closed): False after that close."""
        for bad, prop in ((method.auto_delete, "auto-delete"), (method.exclusive, "exclusive-owner"),
                          (not durable, "non-durable")):
            if bad:
                raise ChannelError(PRECONDITION_FAILED, f"invalid property '{prop}' for {_rs('queue', name)}")
        age = (method.arguments or {}).get("x-max-age")
        if age is not None and parse_max_age(age) is None:
            self._internal_error()
            return False
        return True

    def _internal_error(self) -> None:
        """RabbitMQ's answer to a crash in a channel process: connection.close 541 "INTERNAL_ERROR"."""
        self.conn.write(self.amqp.send(0, m.ConnectionClose(INTERNAL_ERROR, "INTERNAL_ERROR", 0, 0)))
        self._await_close_ok()

    def _assert_equivalent(self, q: "Queue", method: Any, durable: bool) -> None:
        """queue.declare of an existing queue: rabbit_amqqueue assert_equivalence, in its order: exclusive
        access (405), durable, auto_delete, then only the arguments RabbitMQ compares."""
        if bool(q.exclusive) != bool(method.exclusive):
            raise self._locked(q.name)
        resource = _rs("queue", q.name)
        for field, want, have in (("durable", durable, q.durable), ("auto_delete", bool(method.auto_delete),
                                                                     q.auto_delete)):
            if bool(want) != bool(have):
                raise _inequivalent(field, resource, bool(want), bool(have))
        new = method.arguments or {}
        for key in EQUIVALENCE_ARGS:
            received, current = new.get(key, _MISSING), q.arguments.get(key, _MISSING)
            if received is _MISSING and current is _MISSING:
                continue
            if (received is _MISSING or current is _MISSING or _type_class(received) != _type_class(current)
                    or received != current):
                raise _inequivalent(key, resource, received, current)

    def _queue_bind(self, ch_id, ch, method) -> None:
        self._bind_queue(ch_id, method, bind=True)

    def _queue_unbind(self, ch_id, ch, method) -> None:
        self._bind_queue(ch_id, method, bind=False)

    def _bind_queue(self, ch_id, method, *, bind: bool) -> None:
        vh = self.broker.vhost
        if method.exchange == DEFAULT_EXCHANGE:
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        if not bind and (method.queue not in vh.queues or method.exchange not in vh.exchanges):
            # RabbitMQ 3.10: unbinding what is not there (missing queue or exchange) succeeds
            self.conn.write(fr.method_frame(ch_id, m.QueueUnbindOk()))
            return
        self._queue(method.queue)
        if method.exchange not in vh.exchanges:
            raise ChannelError(NOT_FOUND, _vh(f"no exchange '{method.exchange}'"))
        try:
            if bind:
                vh.bind(method.exchange, method.queue, method.routing_key, method.arguments)
            else:
                vh.unbind(method.exchange, method.queue, method.routing_key, method.arguments)
        except ExchangeError as e:
            raise _exchange_error(e) from None
        if bind and not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.QueueBindOk()))
        elif not bind:
            self.conn.write(fr.method_frame(ch_id, m.QueueUnbindOk()))

    def _queue_purge(self, ch_id, ch, method) -> None:
        q = self._queue(method.queue)
        if q.__class__ is StreamQueue:  # rabbit_stream_queue purge: 540, the connection closes
            raise ChannelError(NOT_IMPLEMENTED, f"queue.purge not supported by stream queues {_rs('queue', q.name)}")
        count = q.purge()
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.QueuePurgeOk(count)))

    def _queue_delete(self, ch_id, ch, method) -> None:
        name = method.queue
        if name in self.broker.vhost.queues:
            self._check_owner(name)
        try:
            count = self.broker.delete_queue(name, if_unused=method.if_unused, if_empty=method.if_empty)
        except QueueInUse:
            raise ChannelError(PRECONDITION_FAILED, f"{_rs('queue', name)} in use") from None
        except QueueNotEmpty:
            raise ChannelError(PRECONDITION_FAILED, f"{_rs('queue', name)} not empty") from None
        except QueueError as e:  # pragma: no cover
            raise ChannelError(PRECONDITION_FAILED, _vh(str(e))) from None
        self.exclusive.discard(name)
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.QueueDeleteOk(count)))

    # basic class
    def _qos(self, ch_id, ch, method) -> None:
        if method.prefetch_size:  # rabbit_channel: byte-based prefetch is not implemented
            raise ChannelError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})")
        if method.global_:
            ch.global_prefetch = method.prefetch_count
        else:
            ch.prefetch = method.prefetch_count
        self.conn.write(fr.method_frame(ch_id, m.BasicQosOk()))
        for c in list(ch.consumers.values()):
            self.broker.pump(c.queue)

    def _consume(self, ch_id, ch, method) -> None:
        broker = self.broker
        name = method.queue
        q = self._queue(name)
        if q.__class__ is StreamQueue:
            return self._consume_stream(ch_id, ch, method, q)
        priority = (method.arguments or {}).get("x-priority", 0)
        if priority is not None and (err := _want_int(priority)):  # rabbit_amqqueue consume_args
            raise ChannelError(PRECONDITION_FAILED, f"invalid arg 'x-priority' for {_rs('queue', name)}: {err}")
        tag = method.consumer_tag or "amq.ctag-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if tag in ch.consumers:
            raise ChannelError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        existing = broker.consumers.get(name, [])
        if existing and (method.exclusive or any(c.exclusive for c in existing)):
            raise ChannelError(ACCESS_REFUSED, f"{_rs('queue', name)} in exclusive use")
        c = Consumer(ch, tag, name, bool(method.no_ack), ch.prefetch, bool(method.exclusive), priority or 0)
        ch.consumers[tag] = c
        broker.consumers.setdefault(name, []).append(c)
        broker.had_consumers.add(name)
        if priority or getattr(q, "single_active_consumer", False):
            broker._update_special(name)
        if getattr(q, "expires", None) is not None:
            q.touch()
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.BasicConsumeOk(tag)))
        broker.pump(name)

    def _consume_stream(self, ch_id, ch, method, q: StreamQueue) -> None:
        """basic.consume on a stream (rabbit_stream_queue consume): a consumer prefetch is required (406),
        automatic acks are not supported (540); ``x-stream-offset`` is "first", "last", "next" (the
        default), an offset, a timestamp (seconds) or an age such as "1h"; anything else crashes
        RabbitMQ's channel (541)."""
        name = q.name
        if not ch.prefetch:
            raise ChannelError(PRECONDITION_FAILED, f"consumer prefetch count is not set for '{_rs('queue', name)}'")
        if method.no_ack:
            raise ChannelError(NOT_IMPLEMENTED, f"automatic acknowledgement not supported by stream queues "
                                                f"{_rs('queue', name)}")
        spec = (method.arguments or {}).get("x-stream-offset", "next")
        if isinstance(spec, bytes):
            spec = spec.decode("utf-8", "replace")
        if isinstance(spec, Timestamp):
            spec = ("timestamp", int(spec) * 1000)
        elif isinstance(spec, str) and spec not in ("first", "last", "next"):
            age = parse_max_age(spec)
            spec = None if age is None else ("age", age)
        elif isinstance(spec, bool) or not isinstance(spec, (str, int)):
            spec = None
        if spec is None:
            self._internal_error()
            return
        broker = self.broker
        tag = method.consumer_tag or "amq.ctag-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if tag in ch.consumers:
            raise ChannelError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        existing = broker.consumers.get(name, [])
        if existing and (method.exclusive or any(c.exclusive for c in existing)):
            raise ChannelError(ACCESS_REFUSED, f"{_rs('queue', name)} in exclusive use")
        c = StreamConsumer(ch, tag, name, ch.prefetch, bool(method.exclusive), q.resolve(spec))
        ch.consumers[tag] = c
        broker.consumers.setdefault(name, []).append(c)
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.BasicConsumeOk(tag)))
        broker.pump(name)

    def _cancel(self, ch_id, ch, method) -> None:
        c = ch.consumers.pop(method.consumer_tag, None)
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.BasicCancelOk(method.consumer_tag)))
        if c is not None:
            self.broker.remove_consumer(c)

    def _get(self, ch_id, ch, method) -> None:
        q = self._queue(method.queue)
        if q.__class__ is StreamQueue:  # rabbit_stream_queue dequeue: 540, the connection closes
            raise ChannelError(NOT_IMPLEMENTED, f"basic.get not supported by stream queues {_rs('queue', q.name)}")
        if q.timed:  # an expired head is never returned (TTL 0: nothing waits for a get)
            q.expire_head()
        if q.expires is not None:
            q.touch()
        d = q.deliver_next()
        if q.dead_letters:
            self.broker.drain_dead()
        if d is None:
            self.conn.write(fr.method_frame(ch_id, m.BasicGetEmpty("")))
            return
        tag = ch.next_tag
        ch.next_tag = tag + 1
        if method.no_ack:
            q.ack(d.offset)
        else:
            ch.unacked[tag] = (q.name, d.offset, None)
        msg = d.message
        self.conn.write(self.amqp.get_ok(ch_id, tag, d.redelivered, msg.exchange, msg.routing_key,
                                         q.message_count, msg.properties, bytes(msg.body)))

    def _tags(self, ch: Channel, tag: int, multiple: bool) -> list[int]:
        if multiple:
            tags = [t for t in ch.unacked if t <= tag] if tag else list(ch.unacked)
            return tags
        if tag not in ch.unacked:
            raise ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")
        return [tag]

    def _settle(self, ch: Channel, tags: list[int], requeue: bool | None) -> None:
        """ack (requeue None), or reject/nack with requeue True/False (False: dead-lettered when the
        queue has a dead-letter exchange, else discarded)."""
        vh = self.broker.vhost
        touched = set()
        for t in tags:
            name, offset, c = ch.unacked.pop(t)
            if c is not None:
                c.unacked -= 1
            q = vh.queues.get(name)
            if q is None:
                continue
            if requeue is None:
                q.ack(offset)
            else:
                q.reject(offset, requeue)
            touched.add(name)
        broker = self.broker
        for name in touched:
            if requeue:
                q = vh.queues.get(name)
                if q is not None and (q.limited or q.timed):
                    broker.after_requeue(q)
            broker.pump(name)
        if broker._dead_queues:
            broker.drain_dead()
        if ch.global_prefetch:  # channel-wide capacity freed: every consumer of the channel may go on
            for c in list(ch.consumers.values()):
                self.broker.pump(c.queue)

    def _settle_or_hold(self, ch: Channel, tags: list[int], requeue: bool | None) -> None:
        """Settle now, or, in a transaction, take the deliveries off the unacked map until tx.commit
        (rabbit_channel: a second ack of the same tag is then an unknown tag, as in RabbitMQ)."""
        if requeue is not None:  # rabbit_stream_queue settle: a stream cannot take a message back (540)
            for t in tags:
                entry = ch.unacked[t]
                if entry[2].__class__ is StreamConsumer:
                    raise ChannelError(NOT_IMPLEMENTED, "basic.nack and basic.reject not supported by stream "
                                                        f"queues {_rs('queue', entry[0])}")
        if ch.tx is None:
            self._settle(ch, tags, requeue)
        elif tags:
            unacked = ch.unacked
            ch.tx_acks.append((requeue, {t: unacked.pop(t) for t in tags}))

    def _ack(self, ch_id, ch, method) -> None:
        self._settle_or_hold(ch, self._tags(ch, method.delivery_tag, method.multiple), None)

    def _nack(self, ch_id, ch, method) -> None:
        self._settle_or_hold(ch, self._tags(ch, method.delivery_tag, method.multiple), bool(method.requeue))

    def _reject(self, ch_id, ch, method) -> None:
        self._settle_or_hold(ch, self._tags(ch, method.delivery_tag, False), bool(method.requeue))

    def _recover(self, ch_id, ch, method) -> None:
        if not method.requeue:  # rabbit_channel basic.recover_async requeue=false
            raise ChannelError(NOT_IMPLEMENTED, "requeue=false")
        self._settle(ch, sorted(ch.unacked), True)
        if type(method) is m.BasicRecover:
            self.conn.write(fr.method_frame(ch_id, m.BasicRecoverOk()))

    def _confirm_select(self, ch_id, ch, method) -> None:
        if ch.tx is not None:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode")
        ch.confirm = True
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.ConfirmSelectOk()))

    # tx class (rabbit_channel: publishes and settlements wait in the channel until commit)
    def _tx_select(self, ch_id, ch, method) -> None:
        if ch.confirm:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode")
        if ch.tx is None:
            ch.tx = []
        self.conn.write(fr.method_frame(ch_id, m.TxSelectOk()))

    def _tx_commit(self, ch_id, ch, method) -> None:
        if ch.tx is None:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional")
        publishes, ch.tx = ch.tx, []
        acks, ch.tx_acks = ch.tx_acks, []
        appended = self._flush_publishes(publishes) if publishes else {}
        for requeue, entries in acks:
            ch.unacked.update(entries)
            self._settle(ch, sorted(entries), requeue)
        if ch.closing or self.closed:
            return
        queues = self.broker.vhost.queues
        logs = [(queues[n].log, off) for n, off in appended.items() if n in queues]
        if not logs:
            self.conn.write(fr.method_frame(ch_id, m.TxCommitOk()))
            return
        remaining = [len(logs)]

        def durable() -> None:  # commit-ok once every message of the transaction is durable
            remaining[0] -= 1
            if remaining[0] == 0 and not self.closed and not ch.closing:
                self.conn.write(fr.method_frame(ch_id, m.TxCommitOk()))

        for log, offset in logs:
            log.when_durable(offset, durable)

    def _tx_rollback(self, ch_id, ch, method) -> None:
        if ch.tx is None:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional")
        ch.tx = []
        for _, entries in ch.tx_acks:  # back to unacked (rabbit_channel tx.rollback), not requeued
            ch.unacked.update(entries)
        ch.tx_acks = []
        self.conn.write(fr.method_frame(ch_id, m.TxRollbackOk()))

    # -- publish path ----------------------------------------------------------------------------------
    def _flush_publishes(self, committed: list[Publish] | None = None) -> dict[str, int]:
        """Route and append the publishes gathered from one read (or ``committed``: a transaction's, at
        tx.commit); one batch per queue. Returns {queue: last offset appended}. Hot path."""
        if committed is None:
            publishes, self._publishes = self._publishes, []
            if self.node.alarms and not self.alarm_blocked:
                self._alarm_block()
        else:
            publishes = committed
        perms = self.perms
        broker = self.broker
        vh = broker.vhost
        exchanges = vh.exchanges
        per_queue: dict[str, list[Message]] = {}
        routes: dict[tuple[str, str], tuple[list[str], list[list[Message]]]] = {}  # (queues, their per_queue lists)
        waits: list[tuple[Channel, int, list[str], Message]] = []  # confirm channel, tag, queues, message
        to_nats: list[tuple[str, bytes]] = []
        for p in publishes:
            ch = self.channels.get(p.channel)
            if ch is None or ch.closing:
                continue
            if ch.confirm:
                ch.publish_seq += 1
            if perms is not None and not perms.allows(WRITE, p.exchange or "amq.default"):
                self._error(p.channel, ACCESS_REFUSED, refused_text("exchange", p.exchange or "amq.default",
                                                                    self.vhost_name, self.user), m.BasicPublish)
                continue
            x = exchanges.get(p.exchange)
            if x is None:
                self._error(p.channel, NOT_FOUND, _vh(f"no exchange '{p.exchange}'"), m.BasicPublish)
                continue
            if x.internal:
                self._error(p.channel, ACCESS_REFUSED, _vh(f"cannot publish to internal exchange '{p.exchange}'"),
                            m.BasicPublish)
                continue
            extra = None
            props = p.properties
            if props and props[0] & 0x09:  # expiration (flag bit 7) or priority (bit 4) set: rare, decode
                extra = self._message_extras(p)
                if extra is False:
                    continue
            if ch.tx is not None and committed is None:
                ch.tx.append(p)  # checked now, routed and appended at tx.commit
                continue
            route = routes.get((p.exchange, p.routing_key)) if x.type != "headers" else None
            if route is None:  # once per exchange and routing key per read (headers exchanges: per message)
                headers = None
                if x.type == "headers" and p.properties:
                    headers = decode_properties(p.properties).headers or {}
                try:
                    dests = exchanges.route(p.exchange, p.routing_key, headers)
                except ExchangeNotFound:
                    dests = ()
                queues = [d for d in dests if d.__class__ is str and d in vh.queues]
                route = (queues, [per_queue.setdefault(name, []) for name in queues])
                if x.type != "headers":
                    routes[(p.exchange, p.routing_key)] = route
            queues = route[0]
            msg = Message(p.routing_key, p.body, extra, p.properties, exchange=p.exchange)
            if extra is not None and HDR_EXPIRES in extra:
                for name in queues:
                    vh.queues[name].mark_timed()
            if p.exchange == AMQ_TOPIC:
                to_nats.append((p.routing_key, p.body))
            for target in route[1]:
                target.append(msg)
            if not queues and p.mandatory:
                self.conn.write(self.amqp.basic_return(p.channel, NO_ROUTE, "NO_ROUTE", p.exchange,
                                                       p.routing_key, p.properties, p.body))
            if ch.confirm:
                if queues:
                    waits.append((ch, ch.publish_seq, queues, msg))
                else:
                    self.conn.write(fr.ack(ch.id, ch.publish_seq))
        last_offsets: dict[str, int] = {}
        refused: set[int] | None = None  # id() of messages a reject-publish queue refused
        shared = None  # a fan-out (every queue got the same messages): encode the batch once for all
        if len(per_queue) > 1:
            lists = iter(per_queue.values())
            first = next(lists)
            if all(msgs == first for msgs in lists):  # the same Message objects: identity, no field compare
                shared = shared_batch(first, vh.clock.now_ms())
        for name, msgs in per_queue.items():
            q = vh.queues.get(name)
            if q is None:  # deleted while this read was handled (an auto-delete queue of a failed channel)
                continue
            if q.rejects:
                offsets, bad = q.publish_admitted(msgs)
                if bad:
                    refused = refused or set()
                    refused.update(id(msgs[i]) for i in bad)
            elif shared is not None and q.__class__ is not StreamQueue:
                offsets = q.publish(msgs, shared)
            else:
                offsets = q.publish(msgs)
            if offsets:
                last_offsets[name] = offsets[-1]
        if waits:  # one durability wait per channel and set of queues, not one per message
            groups: dict[tuple, list[int]] = {}
            for ch, tag, queues, msg in waits:
                if refused is not None and id(msg) in refused:  # x-overflow reject-publish: nack, no return
                    self.conn.write(fr.nack(ch.id, tag))
                    continue
                key = (ch, queues[0]) if len(queues) == 1 else (ch, *queues)
                tags = groups.get(key)
                if tags is None:
                    groups[key] = [tag]
                else:
                    tags.append(tag)
            for key, tags in groups.items():
                self._confirm_when_durable(key[0], tags, [(vh.queues[n].log, last_offsets[n]) for n in key[1:]
                                                          if n in last_offsets])
        for name in per_queue:
            broker.pump(name)
            q = vh.queues.get(name)
            if q is not None and (q.limited or q.timed):
                broker.after_publish(q)
        if broker._dead_queues:
            broker.drain_dead()
        if to_nats:
            nats = getattr(self.server, "nats", None)
            if nats is not None:  # design decision 6: AMQP publishes on amq.topic reach NATS subscribers
                for subject, body in to_nats:
                    nats.publish_external(subject, body)
        return last_offsets

    def _message_extras(self, p: Publish) -> dict[str, str] | None | bool:
        """The reserved record headers for a publish that has an expiration or a priority (core/queues.py
        HDR_EXPIRES, HDR_PRIORITY); False after closing the channel for an invalid expiration
        (rabbit_channel check_expiration_header, 406)."""
        try:
            props = decode_properties(p.properties)
        except PropertiesError:
            return None
        extra: dict[str, str] = {}
        if props.expiration is not None:
            ms, err = _parse_expiration(props.expiration)
            if err is not None:
                self._error(p.channel, PRECONDITION_FAILED, f"invalid expiration '{props.expiration}': {err}",
                            m.BasicPublish)
                return False
            extra[HDR_EXPIRES] = str(self.broker.vhost.clock.now_ms() + ms)
        if props.priority:
            extra[HDR_PRIORITY] = str(props.priority)
        return extra or None

    def _confirm_when_durable(self, ch: Channel, tags: list[int], logs: list) -> None:
        """basic.ack each of ``tags`` (in order, one write) once every (log, offset) of ``logs`` is durable."""
        remaining = [len(logs)]

        def done() -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and not self.closed and not ch.closing:
                ack, ch_id = fr.ack, ch.id
                self.conn.write(ack(ch_id, tags[0]) if len(tags) == 1 else b"".join([ack(ch_id, t) for t in tags]))

        if not logs:  # every queue went before the append: nothing to wait for
            remaining[0] = 1
            done()
        for log, offset in logs:
            log.when_durable(offset, done)

    # -- teardown --------------------------------------------------------------------------------------
    def _channel_gone(self, ch_id: int, *, closing: bool = False) -> None:
        """Requeue the channel's unacked messages and cancel its consumers. ``closing``: we sent
        channel.close and wait for close-ok (the channel object stays, dropping methods)."""
        ch = self.channels.get(ch_id)
        if ch is None:
            return
        # consumers go first: requeueing pumps the queues, and a consumer of this channel must not be
        # handed the messages again (they would sit unacked on a dead channel)
        ch.closing = True
        for c in list(ch.consumers.values()):
            self.broker.remove_consumer(c)
        ch.consumers.clear()
        for _, entries in ch.tx_acks:  # an open transaction's settlements are dropped: requeue them
            ch.unacked.update(entries)
        ch.tx, ch.tx_acks = None, []
        if ch.unacked:
            self._settle(ch, sorted(ch.unacked), True)
        if not closing:
            self.channels.pop(ch_id, None)

    # -- output back-pressure -------------------------------------------------------------------------
    def output_blocked(self, queue: str) -> None:
        """A consumer of ours was skipped because our output is full; pump ``queue`` again once the
        transport has taken it (next loop turn, or resume_writing when the socket itself was full)."""
        self._blocked.add(queue)
        if not self._unblock_scheduled and not self.conn.writing_paused:
            self._unblock_scheduled = True
            asyncio.get_running_loop().call_soon(self._unblock)

    def _unblock(self) -> None:
        self._unblock_scheduled = False
        if self.closed or self.conn.writing_paused:
            return  # resume_writing will call us
        blocked, self._blocked = self._blocked, set()
        for name in blocked:
            self.broker.pump(name)

    def pause_writing(self) -> None:
        """The transport's buffer is over its high-water mark: stop reading too (what the transport does
        for sessions without this hook), and deliveries to us stop in has_capacity."""
        if self.conn.transport is not None:
            self.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.closed:
            return
        if self.conn.transport is not None and not self.alarm_blocked:
            self.conn.transport.resume_reading()
        self._unblock()

    # -- resource alarms (rabbit_reader control_throttle) ---------------------------------------------
    def _alarm_block(self) -> None:
        """We publish while an alarm is on: stop reading (this read's methods are still handled) and
        say so to a client that announced the capability (once per blocking, as RabbitMQ)."""
        self.alarm_blocked = True
        self.node.blocked.add(self)
        if self.conn.transport is not None:
            self.conn.transport.pause_reading()
        if self.blocked_capable and not self._sent_blocked:
            self._sent_blocked = True
            self.conn.write(self.amqp.send(0, m.ConnectionBlocked(self.node.blocked_reason())))

    def alarm_cleared(self) -> None:
        if self.closed or not self.alarm_blocked:
            return
        self.alarm_blocked = False
        if self._sent_blocked:
            self._sent_blocked = False
            self.conn.write(self.amqp.send(0, m.ConnectionUnblocked()))
        if self.conn.transport is not None and not self.conn.writing_paused:
            self.conn.transport.resume_reading()
        held, self._held = self._held, None
        if held:
            self._handle(held)

    def _schedule_heartbeat(self) -> None:
        interval = self.amqp.heartbeat
        loop = asyncio.get_running_loop()

        def beat() -> None:
            if self.closed:
                return
            # two missed beats: a dead peer (not while we do not read it: RabbitMQ pauses the monitor)
            if not self.alarm_blocked and time.monotonic() - self.last_recv > 2 * interval:
                self._close(abort=True)
                return
            self.conn.write(fr.HEARTBEAT)
            self._heartbeat_timer = loop.call_later(interval / 2, beat)

        self._heartbeat_timer = loop.call_later(interval / 2, beat)

    def _close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self._cleanup()
        if abort:
            self.conn.abort()
        else:
            self.conn.close()

    def _cleanup(self) -> None:
        self.closed = True
        self.node.blocked.discard(self)
        for timer in (self._heartbeat_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        for ch_id in list(self.channels):
            self._channel_gone(ch_id)
        for name in list(self.exclusive):
            if self.broker.owners.get(name) is self:
                self.broker.delete_queue(name)
        self.exclusive.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._cleanup()

    def shutdown(self) -> None:
        if self.closed:
            return
        if self.amqp.state.value == "open":
            self.conn.write(self.amqp.send(0, m.ConnectionClose(CONNECTION_FORCED, "CONNECTION_FORCED - "
                                                                "broker forced connection closure with "
                                                                "reason 'shutdown'", 0, 0)))
        self._close()


def _credentials(mechanism: Any, response: Any) -> tuple[str, str]:
    mech = mechanism.decode() if isinstance(mechanism, bytes) else str(mechanism)
    raw = response if isinstance(response, bytes) else str(response).encode("utf-8", "surrogateescape")
    try:
        if mech == "PLAIN":
            _, user, password = raw.split(b"\x00", 2)
            return user.decode(), password.decode()
        if mech == "AMQPLAIN":
            table = decode_table(raw)
            login, password = table.get("LOGIN", b""), table.get("PASSWORD", b"")
            return (login.decode() if isinstance(login, bytes) else str(login),
                    password.decode() if isinstance(password, bytes) else str(password))
    except (ValueError, UnicodeDecodeError, Exception):
        pass
    return "", ""


_S = AmqpSession
_HANDLERS: dict[type, Any] = {
    m.ConnectionStartOk: _S._start_ok, m.ConnectionTuneOk: _S._tune_ok, m.ConnectionOpen: _S._open,
    m.ConnectionClose: _S._connection_close, m.ConnectionCloseOk: _S._connection_close_ok,
    m.ConnectionUpdateSecret: _S._update_secret,
    m.ChannelOpen: _S._channel_open, m.ChannelClose: _S._channel_close, m.ChannelCloseOk: _S._channel_close_ok,
    m.ChannelFlow: _S._flow,
    m.ExchangeDeclare: _S._exchange_declare, m.ExchangeDelete: _S._exchange_delete,
    m.ExchangeBind: _S._exchange_bind, m.ExchangeUnbind: _S._exchange_unbind,
    m.QueueDeclare: _S._queue_declare, m.QueueBind: _S._queue_bind, m.QueueUnbind: _S._queue_unbind,
    m.QueuePurge: _S._queue_purge, m.QueueDelete: _S._queue_delete,
    m.BasicQos: _S._qos, m.BasicConsume: _S._consume, m.BasicCancel: _S._cancel, m.BasicGet: _S._get,
    m.BasicAck: _S._ack, m.BasicNack: _S._nack, m.BasicReject: _S._reject,
    m.BasicRecover: _S._recover, m.BasicRecoverAsync: _S._recover,
    m.ConfirmSelect: _S._confirm_select,
    m.TxSelect: _S._tx_select, m.TxCommit: _S._tx_commit, m.TxRollback: _S._tx_rollback,
}
del _S
