"""A virtual host: exchanges, queues and bindings as one unit, with durable topology kept in the metadata
store, and the publish path from an exchange into queue logs.

Strategy
    Exchanges and bindings are the core ``Exchanges`` registry; queues are core ``Queue`` s over logs
    that the host opens through an injected ``open_log(relative_name) -> Log`` (the server's, so every
    log shares the broker's syncer and settings). Destinations in bindings are queue names (``str``);
    other hashables are opaque sinks (e.g. a NATS subscription bridge) that ``publish`` hands back to the
    caller instead of appending, so the core never knows what a sink is (design decision 6).

    Durable exchanges, durable queues and the bindings between durable ends are written to the
    ``MetaStore`` (namespace ``vhost/<name>/{exchanges,queues,bindings}``) as they change, and
    ``restore()`` rebuilds them at start; transient queues' logs found at start are deleted, as
    RabbitMQ drops transient queues on restart.

Rules
    * No protocol here: errors are core exceptions (``QueueNotFound``, ``QueueInUse``,
      ``QueueNotEmpty``, ``InequivalentQueue`` and the exchange errors); sessions map them to reply codes.
    * ``publish`` appends one batch per queue per call: callers gather a loop turn's publishes.
    * Event-loop thread only. Opening and deleting logs blocks briefly (file system).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from omnibus.core.clock import Clock
from omnibus.core.messages import Message
from omnibus.core.queues import Queue, open_queue_class
from omnibus.core.routing.exchanges import ExchangeRef, Exchanges
from omnibus.core.stream_queues import StreamQueue, is_stream
from omnibus.core.stream_queues import log_overrides as stream_log_overrides
from omnibus.storage.acks import QueueAcks
from omnibus.storage.log import Log
from omnibus.storage.meta import MetaStore

__all__ = ["VirtualHost", "QueueNotFound", "QueueInUse", "QueueNotEmpty", "InequivalentQueue",
           "queue_log_name"]

DEFAULT_VHOST = "/"


class QueueError(Exception):
    """Base of queue errors; ``str(e)`` is RabbitMQ's text without the vhost suffix."""


class QueueNotFound(QueueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no queue '{name}'")
        self.name = name


class QueueInUse(QueueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"queue '{name}' in use")
        self.name = name


class QueueNotEmpty(QueueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"queue '{name}' not empty")
        self.name = name


class InequivalentQueue(QueueError):
    """queue.declare of an existing queue with other properties (RabbitMQ: 406 PRECONDITION_FAILED)."""

    def __init__(self, name: str, field: str, received: Any, current: Any) -> None:
        super().__init__(f"inequivalent arg '{field}' for queue '{name}': received {received!r} but "
                         f"current is {current!r}")
        self.name = name
        self.field = field


def queue_log_name(vhost: str, queue: str) -> str:
    """The log directory (relative to the broker's logs dir) of a queue: names are percent-quoted so any
    AMQP short string is a safe single path component."""
    return f"amqp/{quote(vhost, safe='')}/{quote(queue, safe='') or '%00'}"


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=str)


class VirtualHost:
    """One vhost. ``open_log(name)`` opens or creates a log; ``delete_log(name)`` removes one."""

    def __init__(self, name: str, *, open_log: Callable[..., Log], delete_log: Callable[[str], None],
                 meta: MetaStore | None, clock: Clock, transient_log: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self._open_log = open_log
        #: ``open_log`` keyword overrides for the logs of non-durable queues (the server: ``fsync="never"``;
        #: RabbitMQ never persists a transient queue's messages, and its log is deleted at the next start)
        self._transient_log = dict(transient_log or {})
        self._delete_log = delete_log
        self.meta = meta
        self.clock = clock
        self.queues: dict[str, Queue] = {}
        #: set on every queue as ``Queue.on_dead`` (a session's dead-letter router); see core/queues.py
        self.on_dead: Callable[[Queue], None] | None = None
        #: called by ``publish`` with the names of the queues it appended to, whoever published (a NATS
        #: publish on amq.topic too): the AMQP side hands the messages to consumers, applies drop-head
        #: limits and arms TTL timers there. Without it ``publish`` applies the limits itself.
        self.on_published: Callable[[Iterable[str]], None] | None = None
        self.exchanges = Exchanges(queue_exists=self.queues.__contains__, on_auto_delete=self._exchange_gone)
        ns = f"vhost/{name}"
        self._ns_x, self._ns_q, self._ns_b = f"{ns}/exchanges", f"{ns}/queues", f"{ns}/bindings"

    # -- persistence -----------------------------------------------------------------------------
    def restore(self, known_logs: Iterable[str] = ()) -> None:
        """Rebuild durable topology from the metadata store; delete logs of queues that were transient.

        ``known_logs``: relative names of queue logs present on disk (so stale transient ones go)."""
        meta = self.meta
        if meta is None:
            return
        for _, raw in meta.items(self._ns_x):
            d = orjson.loads(raw)
            self.exchanges.declare(d["name"], d["type"], durable=True, auto_delete=d["auto_delete"],
                                   internal=d["internal"], arguments=d["arguments"])
        for _, raw in meta.items(self._ns_q):
            d = orjson.loads(raw)
            self._create_queue(d["name"], durable=True, exclusive=False, auto_delete=d["auto_delete"],
                               arguments=d["arguments"])
        for _, raw in meta.items(self._ns_b):
            d = orjson.loads(raw)
            dest = ExchangeRef(d["dest"]) if d["dest_is_exchange"] else d["dest"]
            if d["source"] in self.exchanges and (d["dest_is_exchange"] or d["dest"] in self.queues):
                self.exchanges.bind(d["source"], dest, d["key"], d["arguments"])
        durable_logs = {queue_log_name(self.name, q) for q in self.queues}
        for log_name in known_logs:
            if log_name not in durable_logs:
                self._delete_log(log_name)

    def _binding_key(self, source: str, dest: Hashable, key: str, arguments: Mapping[str, Any]) -> str:
        d = dest.name if isinstance(dest, ExchangeRef) else dest
        return _json([source, isinstance(dest, ExchangeRef), d, key, sorted(arguments.items())]).decode()

    def _durable_end(self, dest: Hashable) -> bool:
        if isinstance(dest, ExchangeRef):
            x = self.exchanges.get(dest.name)
            return x is not None and x.durable
        q = self.queues.get(dest) if isinstance(dest, str) else None
        return q is not None and q.durable

    # -- exchanges -------------------------------------------------------------------------------
    def declare_exchange(self, name: str, type: str = "direct", *, durable: bool = True,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: Mapping[str, Any] | None = None):
        x, created = self.exchanges.declare(name, type, durable=durable, auto_delete=auto_delete,
                                            internal=internal, arguments=arguments)
        if created and durable and self.meta is not None:
            self.meta.put(self._ns_x, name, _json({"name": name, "type": type, "auto_delete": auto_delete,
                                                   "internal": internal, "arguments": dict(arguments or {})}))
        return x, created

    def delete_exchange(self, name: str, *, if_unused: bool = False):
        x = self.exchanges.delete(name, if_unused=if_unused)
        if x is not None:
            self._exchange_gone(x)
        return x

    def _exchange_gone(self, x) -> None:
        if self.meta is None:
            return
        with self.meta.transaction():
            self.meta.delete(self._ns_x, x.name)
            for key, raw in self.meta.items(self._ns_b):
                d = orjson.loads(raw)
                if d["source"] == x.name or (d["dest_is_exchange"] and d["dest"] == x.name):
                    self.meta.delete(self._ns_b, key)

    # -- queues ----------------------------------------------------------------------------------
    def declare_queue(self, name: str, *, durable: bool = True, exclusive: bool = False,
                      auto_delete: bool = False, arguments: Mapping[str, Any] | None = None,
                      ) -> tuple[Queue, bool]:
        """queue.declare (not passive). Returns (queue, created); raises InequivalentQueue."""
        arguments = dict(arguments or {})
        q = self.queues.get(name)
        if q is not None:
            for field, want, have in (("durable", durable, q.durable), ("exclusive", exclusive, q.exclusive),
                                      ("auto_delete", auto_delete, q.auto_delete)):
                if want != have:
                    raise InequivalentQueue(name, field, want, have)
            for key in set(arguments) | set(q.arguments):
                if arguments.get(key) != q.arguments.get(key):
                    raise InequivalentQueue(name, key, arguments.get(key), q.arguments.get(key))
            return q, False
        q = self._create_queue(name, durable=durable, exclusive=exclusive, auto_delete=auto_delete,
                               arguments=arguments)
        if durable and self.meta is not None:
            self.meta.put(self._ns_q, name, _json({"name": name, "auto_delete": auto_delete,
                                                   "arguments": arguments}))
        return q, True

    def _create_queue(self, name: str, *, durable: bool, exclusive: bool, auto_delete: bool,
                      arguments: Mapping[str, Any]) -> Queue:
        if is_stream(arguments):  # x-queue-type=stream: a log read by offset, retention from its arguments
            log = self._open_log(queue_log_name(self.name, name), **stream_log_overrides(arguments))
            stream = StreamQueue(name, log, self.clock, durable=durable, exclusive=exclusive,
                                 auto_delete=auto_delete, arguments=arguments)
            self.queues[name] = stream
            return stream  # type: ignore[return-value]
        if not durable and self._transient_log:
            log = self._open_log(queue_log_name(self.name, name), **self._transient_log)
        else:
            log = self._open_log(queue_log_name(self.name, name))
        q = open_queue_class(arguments)(name, log, QueueAcks(log), self.clock, durable=durable,
                                        exclusive=exclusive, auto_delete=auto_delete, arguments=arguments)
        q.on_dead = self.on_dead
        self.queues[name] = q
        return q

    def get_queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise QueueNotFound(name)
        return q

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False,
                     consumers: int = 0) -> int:
        """queue.delete; returns the number of messages deleted. ``consumers`` is the session's count
        (the core does not track consumers). A missing queue is not an error (RabbitMQ 3.x)."""
        q = self.queues.get(name)
        if q is None:
            return 0
        if if_unused and consumers:
            raise QueueInUse(name)
        if if_empty and q.message_count:
            raise QueueNotEmpty(name)
        count = q.message_count
        del self.queues[name]
        self.exchanges.remove_destination(name)
        if self.meta is not None:
            with self.meta.transaction():
                self.meta.delete(self._ns_q, name)
                for key, raw in self.meta.items(self._ns_b):
                    d = orjson.loads(raw)
                    if not d["dest_is_exchange"] and d["dest"] == name:
                        self.meta.delete(self._ns_b, key)
        log_name = queue_log_name(self.name, name)
        q.close()
        self._delete_log(log_name)
        return count

    # -- bindings --------------------------------------------------------------------------------
    def bind(self, source: str, dest: Hashable, routing_key: str = "",
             arguments: Mapping[str, Any] | None = None) -> bool:
        """queue.bind (dest = queue name), exchange.bind (dest = ExchangeRef) or a sink. Raises
        QueueNotFound for a missing queue and the exchange errors for a missing exchange."""
        arguments = dict(arguments or {})
        if isinstance(dest, str) and dest not in self.queues:
            raise QueueNotFound(dest)
        created = self.exchanges.bind(source, dest, routing_key, arguments)
        src = self.exchanges.get(source)
        if (created and self.meta is not None and src is not None and src.durable
                and isinstance(dest, (str, ExchangeRef)) and self._durable_end(dest)):
            is_x = isinstance(dest, ExchangeRef)
            self.meta.put(self._ns_b, self._binding_key(source, dest, routing_key, arguments), _json({
                "source": source, "dest": dest.name if is_x else dest, "dest_is_exchange": is_x,
                "key": routing_key, "arguments": arguments}))
        return created

    def unbind(self, source: str, dest: Hashable, routing_key: str = "",
               arguments: Mapping[str, Any] | None = None) -> bool:
        arguments = dict(arguments or {})
        removed = self.exchanges.unbind(source, dest, routing_key, arguments)
        if removed and self.meta is not None and isinstance(dest, (str, ExchangeRef)):
            self.meta.delete(self._ns_b, self._binding_key(source, dest, routing_key, arguments))
        return removed

    # -- publish ---------------------------------------------------------------------------------
    def publish(self, exchange: str, messages: Sequence[Message]) -> tuple[int, list]:
        """Route each message and append it to its queues, one batch per queue. Returns (number of
        messages routed to at least one destination, [(sink, message), ...] for opaque sinks), after
        calling ``on_published`` (if set) with the queues appended to. Raises ExchangeNotFound. Hot path."""
        per_queue: dict[str, list[Message]] = {}
        sinks: list = []
        routed = 0
        route = self.exchanges.route
        queues = self.queues
        for msg in messages:
            dests = route(exchange, msg.routing_key, msg.headers)
            if not dests:
                continue
            routed += 1
            for d in dests:
                if d.__class__ is str:
                    if d in queues:
                        per_queue.setdefault(d, []).append(msg)
                else:
                    sinks.append((d, msg))
        hook = self.on_published
        for name, msgs in per_queue.items():
            q = queues[name]
            if q.limited:  # x-max-length(-bytes): refuse (reject-publish) or drop from the head
                q.publish_admitted(msgs)
                if hook is None:
                    q.enforce_limits()
            else:
                q.publish(msgs)
        if per_queue and hook is not None:
            hook(per_queue)
        return routed, sinks

    def close(self) -> None:
        for q in self.queues.values():
            q.close()
        self.queues.clear()
