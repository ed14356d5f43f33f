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

Not built yet (named so, see the issue's closing note): tx (answered 540 NOT_IMPLEMENTED), message and
queue TTL, dead-lettering, max-length, priorities, streams, single active consumer, access control beyond
the loopback guest user, connection.blocked, validation of queue arguments (RabbitMQ refuses e.g. a string
``x-max-length`` with 406 "invalid arg"; we accept and ignore it).

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
from omnibus.core.messages import Message
from omnibus.core.routing.exchanges import (AMQ_TOPIC, DEFAULT_EXCHANGE, ExchangeError, ExchangeInUse,
                                            ExchangeNotFound, ExchangeRef, InequivalentExchange,
                                            InvalidBinding, ReservedExchange, UnknownExchangeType)
from omnibus.core.vhost import (DEFAULT_VHOST, InequivalentQueue, QueueError, QueueInUse, QueueNotEmpty,
                                QueueNotFound)
from omnibus.wire.amqp import frames as fr
from omnibus.wire.amqp import methods as m
from omnibus.wire.amqp.connection import AMQPConnection, MethodFrame, ProtocolHeader, Publish
from omnibus.wire.amqp.errors import (ACCESS_REFUSED, CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED,
                                      NO_ROUTE, NOT_ALLOWED, NOT_FOUND, NOT_IMPLEMENTED,
                                      PRECONDITION_FAILED, RESOURCE_LOCKED, SEND_CLOSE, AMQPError,
                                      amqp_error)
from omnibus.wire.amqp.fields import decode_table
from omnibus.wire.amqp.properties import decode_properties

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.core.queues import Queue
    from omnibus.core.vhost import VirtualHost
    from omnibus.server.app import BrokerServer
    from omnibus.server.transport import Connection

__all__ = ["AmqpSession", "AmqpBroker"]

#: RabbitMQ's server properties; clients read the capabilities to enable features.
CAPABILITIES = {
    "publisher_confirms": True, "exchange_exchange_bindings": True, "basic.nack": True,
    "consumer_cancel_notify": True, "connection.blocked": False, "authentication_failure_close": True,
    "per_consumer_qos": True, "direct_reply_to": False, "consumer_priorities": False,
}
MECHANISMS = b"PLAIN AMQPLAIN"
#: The default user, allowed only from loopback (RabbitMQ's loopback_users); the listener binds loopback.
DEFAULT_USER = ("guest", "guest")
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


def _vh(text: str) -> str:
    return f"{text} in vhost '{DEFAULT_VHOST}'"


#: Core exchange errors -> AMQP reply codes (rabbit_channel / rabbit_exchange).
_EXCHANGE_CODES = {ExchangeNotFound: NOT_FOUND, ExchangeInUse: PRECONDITION_FAILED,
                   InequivalentExchange: PRECONDITION_FAILED, ReservedExchange: ACCESS_REFUSED,
                   UnknownExchangeType: COMMAND_INVALID, InvalidBinding: PRECONDITION_FAILED}


def _rs(kind: str, name: str) -> str:
    """rabbit_misc:rs/1: how RabbitMQ names a resource in its texts."""
    return f"{kind} '{name}' in vhost '{DEFAULT_VHOST}'"


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
    __slots__ = ("channel", "tag", "queue", "no_ack", "prefetch", "unacked", "exclusive")

    def __init__(self, channel: "Channel", tag: str, queue: str, no_ack: bool, prefetch: int,
                 exclusive: bool) -> None:
        self.channel = channel
        self.tag = tag
        self.queue = queue
        self.no_ack = no_ack
        self.prefetch = prefetch
        self.unacked = 0
        self.exclusive = exclusive

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


class Channel:
    __slots__ = ("id", "session", "unacked", "next_tag", "confirm", "publish_seq", "prefetch",
                 "global_prefetch", "consumers", "closing", "active")

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


class AmqpBroker:
    """Broker-wide AMQP state: consumers per queue and exclusive owners. Event-loop thread only."""

    def __init__(self, server: "BrokerServer") -> None:
        self.server = server
        self.consumers: dict[str, list[Consumer]] = {}
        self.rr: dict[str, int] = {}
        self.owners: dict[str, "AmqpSession"] = {}  # exclusive queue -> owning connection
        self.had_consumers: set[str] = set()

    @classmethod
    def of(cls, server: "BrokerServer") -> "AmqpBroker":
        broker = getattr(server, "amqp", None)
        if broker is None:
            broker = server.amqp = cls(server)
        return broker

    @property
    def vhost(self) -> "VirtualHost":
        return self.server.vhosts[DEFAULT_VHOST]

    def pump(self, name: str) -> None:
        """Hand ready messages of queue ``name`` to its consumers, round-robin. Hot path."""
        consumers = self.consumers.get(name)
        if not consumers:
            return
        queue = self.vhost.queues.get(name)
        if queue is None:
            return
        n = len(consumers)
        rr = self.rr.get(name, 0)
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
        self.rr[name] = rr

    def remove_consumer(self, c: Consumer) -> None:
        lst = self.consumers.get(c.queue)
        if lst is not None and c in lst:
            lst.remove(c)
            if not lst:
                del self.consumers[c.queue]
                self.rr.pop(c.queue, None)
                queue = self.vhost.queues.get(c.queue)
                if queue is not None and queue.auto_delete and c.queue in self.had_consumers:
                    self.delete_queue(c.queue)

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        consumers = list(self.consumers.get(name, ()))
        count = self.vhost.delete_queue(name, if_unused=if_unused, if_empty=if_empty, consumers=len(consumers))
        self.consumers.pop(name, None)
        self.rr.pop(name, None)
        self.owners.pop(name, None)
        self.had_consumers.discard(name)
        for c in consumers:  # server-sent basic.cancel (consumer_cancel_notify)
            ch = c.channel
            ch.consumers.pop(c.tag, None)
            if not ch.closing:
                ch.session.conn.write(ch.session.amqp.send(ch.id, m.BasicCancel(c.tag, True)))
        return count


class AmqpSession:
    """One AMQP client connection."""

    def __init__(self, conn: "Connection", server: "BrokerServer") -> None:
        self.conn = conn
        self.server = server
        self.broker = AmqpBroker.of(server)
        limits = server.settings.limits
        self.amqp = AMQPConnection(max_message_size=min(fr.MAX_MESSAGE_SIZE, limits.max_frame_bytes))
        self.channels: dict[int, Channel] = {}
        self.user = ""
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
        for ev in self.amqp.events():
            if type(ev) is Publish:
                self._publishes.append(ev)
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
            handler(self, ch_id, ch, method)
        else:
            handler(self, 0, None, method)

    # connection class
    def _start_ok(self, _id, _ch, method) -> None:
        user, password = _credentials(method.mechanism, method.response)
        if (user, password) != DEFAULT_USER and not self._config_user_ok(user, password):
            caps = (method.client_properties or {}).get("capabilities") or {}
            if not (isinstance(caps, dict) and caps.get("authentication_failure_close")):
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
        self.conn.write(self.amqp.send(0, m.ConnectionTune(fr.CHANNEL_MAX_DEFAULT, fr.FRAME_MAX_DEFAULT,
                                                           fr.HEARTBEAT_DEFAULT)))

    def _config_user_ok(self, user: str, password: str) -> bool:
        return False  # users from config and the metadata store: not built yet

    def _tune_ok(self, _id, _ch, method) -> None:
        if self.amqp.heartbeat:
            self._schedule_heartbeat()

    def _open(self, _id, _ch, method) -> None:
        if method.virtual_host not in (DEFAULT_VHOST, ""):
            raise ChannelError(NOT_ALLOWED, f"vhost {method.virtual_host} not found")
        self.conn.write(self.amqp.send(0, m.ConnectionOpenOk("")))

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
            self._check_owner(name)
            durable = bool(method.durable) and not method.exclusive  # rabbit_channel: exclusive ⇒ transient
            q = vh.queues.get(name)
            if q is not None:
                self._assert_equivalent(q, method, durable)
            else:
                try:
                    q, created = vh.declare_queue(name, durable=durable, exclusive=bool(method.exclusive),
                                                  auto_delete=bool(method.auto_delete), arguments=method.arguments)
                except InequivalentQueue as e:  # pragma: no cover (the queue did not exist)
                    raise ChannelError(PRECONDITION_FAILED, _vh(str(e))) from None
                if method.exclusive:
                    broker.owners[name] = self
                    self.exclusive.add(name)
        if not method.nowait:
            consumers = len(broker.consumers.get(name, ()))
            self.conn.write(fr.method_frame(ch_id, m.QueueDeclareOk(name, q.message_count, consumers)))

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
        count = self._queue(method.queue).purge()
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
        self._queue(name)
        tag = method.consumer_tag or "amq.ctag-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if tag in ch.consumers:
            raise ChannelError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        existing = broker.consumers.get(name, [])
        if existing and (method.exclusive or any(c.exclusive for c in existing)):
            raise ChannelError(ACCESS_REFUSED, f"queue '{name}' in vhost '{DEFAULT_VHOST}' in exclusive use")
        c = Consumer(ch, tag, name, bool(method.no_ack), ch.prefetch, bool(method.exclusive))
        ch.consumers[tag] = c
        broker.consumers.setdefault(name, []).append(c)
        broker.had_consumers.add(name)
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
        d = q.deliver_next()
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
        """ack (requeue None), or reject/nack with requeue True/False (False: discarded, no DLX yet)."""
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
        for name in touched:
            self.broker.pump(name)
        if ch.global_prefetch:  # channel-wide capacity freed: every consumer of the channel may go on
            for c in list(ch.consumers.values()):
                self.broker.pump(c.queue)

    def _ack(self, ch_id, ch, method) -> None:
        self._settle(ch, self._tags(ch, method.delivery_tag, method.multiple), None)

    def _nack(self, ch_id, ch, method) -> None:
        self._settle(ch, self._tags(ch, method.delivery_tag, method.multiple), bool(method.requeue))

    def _reject(self, ch_id, ch, method) -> None:
        self._settle(ch, self._tags(ch, method.delivery_tag, False), bool(method.requeue))

    def _recover(self, ch_id, ch, method) -> None:
        if not method.requeue:  # rabbit_channel basic.recover_async requeue=false
            raise ChannelError(NOT_IMPLEMENTED, "requeue=false")
        self._settle(ch, sorted(ch.unacked), True)
        if type(method) is m.BasicRecover:
            self.conn.write(fr.method_frame(ch_id, m.BasicRecoverOk()))

    def _confirm_select(self, ch_id, ch, method) -> None:
        ch.confirm = True
        if not method.nowait:
            self.conn.write(fr.method_frame(ch_id, m.ConfirmSelectOk()))

    def _tx(self, ch_id, ch, method) -> None:
        raise ChannelError(NOT_IMPLEMENTED, "transactions (tx.*) are not implemented yet")

    # -- publish path ----------------------------------------------------------------------------------
    def _flush_publishes(self) -> None:
        """Route and append the publishes gathered from one read; one batch per queue. Hot path."""
        publishes, self._publishes = self._publishes, []
        broker = self.broker
        vh = broker.vhost
        exchanges = vh.exchanges
        per_queue: dict[str, list[Message]] = {}
        waits: list[tuple[Channel, int, list[str]]] = []  # confirm channel, tag, queues appended to
        to_nats: list[tuple[str, bytes]] = []
        for p in publishes:
            ch = self.channels.get(p.channel)
            if ch is None or ch.closing:
                continue
            if ch.confirm:
                ch.publish_seq += 1
            x = exchanges.get(p.exchange)
            if x is None:
                self._error(p.channel, NOT_FOUND, _vh(f"no exchange '{p.exchange}'"), m.BasicPublish)
                continue
            if x.internal:
                self._error(p.channel, ACCESS_REFUSED, _vh(f"cannot publish to internal exchange '{p.exchange}'"),
                            m.BasicPublish)
                continue
            headers = None
            if x.type == "headers" and p.properties:
                headers = decode_properties(p.properties).headers or {}
            try:
                dests = exchanges.route(p.exchange, p.routing_key, headers)
            except ExchangeNotFound:
                dests = ()
            msg = Message(p.routing_key, p.body, None, p.properties, exchange=p.exchange)
            queues = [d for d in dests if d.__class__ is str and d in vh.queues]
            if p.exchange == AMQ_TOPIC:
                to_nats.append((p.routing_key, p.body))
            for name in queues:
                per_queue.setdefault(name, []).append(msg)
            if not queues and p.mandatory:
                self.conn.write(self.amqp.basic_return(p.channel, NO_ROUTE, "NO_ROUTE", p.exchange,
                                                       p.routing_key, p.properties, p.body))
            if ch.confirm:
                if queues:
                    waits.append((ch, ch.publish_seq, queues))
                else:
                    self.conn.write(fr.ack(ch.id, ch.publish_seq))
        last_offsets: dict[str, int] = {}
        for name, msgs in per_queue.items():
            offsets = vh.queues[name].publish(msgs)
            last_offsets[name] = offsets[-1]
        for ch, tag, queues in waits:
            self._confirm_when_durable(ch, tag, [(vh.queues[n].log, last_offsets[n]) for n in queues])
        for name in per_queue:
            broker.pump(name)
        if to_nats:
            nats = getattr(self.server, "nats", None)
            if nats is not None:  # design decision 6: AMQP publishes on amq.topic reach NATS subscribers
                for subject, body in to_nats:
                    nats.publish_external(subject, body)

    def _confirm_when_durable(self, ch: Channel, tag: int, logs: list) -> None:
        remaining = [len(logs)]

        def done() -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and not self.closed and not ch.closing:
                self.conn.write(fr.ack(ch.id, tag))

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
        if self.conn.transport is not None:
            self.conn.transport.resume_reading()
        self._unblock()

    def _schedule_heartbeat(self) -> None:
        interval = self.amqp.heartbeat
        loop = asyncio.get_running_loop()

        def beat() -> None:
            if self.closed:
                return
            if time.monotonic() - self.last_recv > 2 * interval:  # two missed beats: a dead peer
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
    m.TxSelect: _S._tx, m.TxCommit: _S._tx, m.TxRollback: _S._tx,
}
del _S
