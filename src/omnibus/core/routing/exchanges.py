"""Exchanges: AMQP 0-9-1 routing (direct, fanout, topic, headers), protocol-neutral.

Strategy: an ``Exchange`` holds its bindings twice. ``_bindings`` is the identity set RabbitMQ keeps
(a binding is (destination, routing key, arguments); binding twice is a no-op) for listing,
persistence and unbinding. A per-type router holds the same bindings in the shape its ``route`` wants,
precomputed so a publish costs one lookup:

* direct: routing key -> frozenset of destinations (RabbitMQ ``rabbit_exchange_type_direct``)
* fanout: one frozenset of every destination
* topic: the shared ``SubjectTrie`` in ``"amqp"`` style (``*`` one word, ``#`` zero or more words)
* headers: a list of parsed binding specs scanned per message, as RabbitMQ does
  (``rabbit_exchange_type_headers``): ``x-match`` = ``all`` (default) / ``any`` ignore binding
  arguments starting with ``x-``; ``all-with-x`` / ``any-with-x`` (RabbitMQ 3.10+) compare them too;
  ``x-match`` itself is never compared. A binding argument with no value (AMQP field type ``V``,
  ``None`` here) matches on presence of the header alone. ``all`` with nothing to compare matches
  every message; ``any`` with nothing to compare matches none.

Destinations are opaque hashables: a ``str`` names a queue; an ``ExchangeRef`` is an exchange
(``exchange.bind``, a RabbitMQ extension); anything else (e.g. a NATS subscription sink) is passed
through to the caller untouched. ``Exchanges.route`` follows exchange-to-exchange bindings and
alternate exchanges (``alternate-exchange`` argument) exactly as ``rabbit_exchange:route/2``: each
exchange is visited once (cycles are harmless), and an exchange whose own bindings matched nothing
hands the message to its alternate exchange. The result holds only non-exchange destinations.

``Exchanges`` is one vhost's registry: the default exchange ``""`` (routes to the queue named by the
routing key; no bindings can be added to it) and the standard ``amq.direct``, ``amq.fanout``,
``amq.topic``, ``amq.headers``, ``amq.match`` are pre-declared, durable, as RabbitMQ does.
Declaring a new exchange named ``amq.*`` is refused; re-declaring an existing one with equal
properties is allowed. Errors are ``ExchangeError`` subclasses carrying RabbitMQ's reply text (without
the ``in vhost '/'`` part, which the session adds) and no reply code: the AMQP session maps
the class to the code (the mapping is written next to each class).

Interop (design decision 6): a core NATS publish is routed through ``amq.topic`` with the subject as
routing key: ``Exchanges.route_subject(subject)``. A NATS subscription joins by binding its sink to
``amq.topic`` with ``nats_pattern_to_binding_key(pattern)``: NATS ``*`` is AMQP ``*``; NATS ``>``
(one or more trailing tokens) becomes ``*.#`` (exactly one, then zero or more), because a bare ``#``
would also match zero tokens (``a.>`` must not match ``a``). A NATS token spelled ``#`` is a literal
in NATS but a wildcard in AMQP and cannot be expressed in a binding key: the conversion refuses it
(ValueError) rather than widen the subscription. ``Exchanges.bind_subject``/``unbind_subject`` wrap
both steps.

Concurrency: no locks; event-loop thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from omnibus.core.routing.trie import SubjectTrie, valid_nats_pattern

__all__ = [
    "AMQ_TOPIC",
    "DEFAULT_EXCHANGE",
    "EXCHANGE_TYPES",
    "RESERVED_PREFIX",
    "STANDARD_EXCHANGES",
    "Binding",
    "Exchange",
    "ExchangeError",
    "ExchangeInUse",
    "ExchangeNotFound",
    "ExchangeRef",
    "Exchanges",
    "InequivalentExchange",
    "InvalidBinding",
    "ReservedExchange",
    "UnknownExchangeType",
    "nats_pattern_to_binding_key",
]

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
DEFAULT_EXCHANGE = ""
AMQ_TOPIC = "amq.topic"
# Names clients may not declare (AMQP 0-9-1 exchange.declare: "Exchange names starting with 'amq.'
# are reserved for pre-declared and standardised exchanges").
RESERVED_PREFIX = "amq."
# Pre-declared in every vhost by RabbitMQ (rabbit_vhost:exchanges_to_declare), minus the internal
# amq.rabbitmq.trace, which we do not implement (firehose tracing).
STANDARD_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)
ALTERNATE_EXCHANGE_ARG = "alternate-exchange"
X_MATCH = "x-match"
X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")

_EMPTY: frozenset = frozenset()


# -- errors (the AMQP session maps each class to a reply code) ------------------------------------


class ExchangeError(Exception):
    """Base of topology errors raised by this module."""


class ExchangeNotFound(ExchangeError):
    """AMQP 404 NOT_FOUND (channel)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no exchange '{name}'")
        self.name = name


class ExchangeInUse(ExchangeError):
    """exchange.delete if-unused on an exchange with bindings: AMQP 406 PRECONDITION_FAILED."""

    def __init__(self, name: str) -> None:
        super().__init__(f"exchange '{name}' in use")
        self.name = name


class InequivalentExchange(ExchangeError):
    """Re-declare with different properties: AMQP 406 PRECONDITION_FAILED."""

    def __init__(self, name: str, field: str, received: Any, current: Any) -> None:
        super().__init__(
            f"inequivalent arg '{field}' for exchange '{name}': "
            f"received {_fmt(received)} but current is {_fmt(current)}"
        )
        self.name, self.field, self.received, self.current = name, field, received, current


class ReservedExchange(ExchangeError):
    """Operations on the default or an ``amq.*`` exchange that RabbitMQ refuses: AMQP 403
    ACCESS_REFUSED."""


class UnknownExchangeType(ExchangeError):
    """exchange.declare with a type we do not have: AMQP 503 COMMAND_INVALID (connection)."""

    def __init__(self, type_: str) -> None:
        super().__init__(f"unknown exchange type '{type_}'")
        self.type = type_


class InvalidBinding(ExchangeError):
    """A binding the exchange type refuses (bad ``x-match``): AMQP 406 PRECONDITION_FAILED."""


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return f"'{value}'"


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExchangeRef:
    """An exchange used as a binding destination (``exchange.bind``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Binding:
    source: str
    destination: Hashable
    routing_key: str
    arguments: Mapping[str, Any]


def _freeze(value: Any) -> Hashable:
    """A hashable, order-independent form of binding arguments, used as binding identity.

    bools are tagged so ``True`` and ``1`` stay different (AMQP field types differ).
    """
    if isinstance(value, Mapping):
        return ("table", tuple(sorted(((str(k), _freeze(v)) for k, v in value.items()))))
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_freeze(v) for v in value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _field_equal(a: Any, b: Any) -> bool:
    # Erlang compares AMQP values without Python's True == 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (bytes, bytearray, memoryview)) and isinstance(b, str):
        return bytes(a) == b.encode()
    if isinstance(b, (bytes, bytearray, memoryview)) and isinstance(a, str):
        return bytes(b) == a.encode()
    return a == b


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return None


# -- routers (one per exchange type) -----------------------------------------------------------


class _DirectRouter:
    __slots__ = ("_refs", "_routes")

    def __init__(self) -> None:
        self._refs: dict[tuple[str, Hashable], int] = {}  # (key, dest) -> bindings with it
        self._routes: dict[str, frozenset] = {}

    def add(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        n = self._refs.get((key, dest), 0)
        self._refs[(key, dest)] = n + 1
        if n == 0:
            self._routes[key] = self._routes.get(key, _EMPTY) | {dest}

    def remove(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        n = self._refs[(key, dest)] - 1
        if n:
            self._refs[(key, dest)] = n
            return
        del self._refs[(key, dest)]
        rest = self._routes[key] - {dest}
        if rest:
            self._routes[key] = rest
        else:
            del self._routes[key]

    def route(self, key: str, headers: Mapping[str, Any] | None) -> frozenset:
        return self._routes.get(key, _EMPTY)


class _FanoutRouter:
    __slots__ = ("_refs", "_all")

    def __init__(self) -> None:
        self._refs: dict[Hashable, int] = {}
        self._all: frozenset = _EMPTY

    def add(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        n = self._refs.get(dest, 0)
        self._refs[dest] = n + 1
        if n == 0:
            self._all = self._all | {dest}

    def remove(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        n = self._refs[dest] - 1
        if n:
            self._refs[dest] = n
        else:
            del self._refs[dest]
            self._all = self._all - {dest}

    def route(self, key: str, headers: Mapping[str, Any] | None) -> frozenset:
        return self._all


class _TopicRouter:
    __slots__ = ("_refs", "trie")

    def __init__(self) -> None:
        self._refs: dict[tuple[str, Hashable], int] = {}
        self.trie = SubjectTrie("amqp")

    def add(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        n = self._refs.get((key, dest), 0)
        self._refs[(key, dest)] = n + 1
        if n == 0:
            self.trie.insert(key, dest)

    def remove(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        n = self._refs[(key, dest)] - 1
        if n:
            self._refs[(key, dest)] = n
        else:
            del self._refs[(key, dest)]
            self.trie.remove(key, dest)

    def route(self, key: str, headers: Mapping[str, Any] | None) -> frozenset:
        return self.trie.match(key).plain_set()  # both cached per routing key; see trie.py


class _HeadersSpec:
    __slots__ = ("any", "items")

    def __init__(self, args: Mapping[str, Any]) -> None:
        raw = args.get(X_MATCH, "all")
        mode = _text(raw)
        if mode is None:
            raise InvalidBinding(
                f"Invalid x-match field type {type(raw).__name__} (value {raw!r}); expected longstr"
            )
        if mode not in X_MATCH_MODES:
            raise InvalidBinding(
                f"Invalid x-match field value '{mode}'; expected all, any, all-with-x, or any-with-x"
            )
        with_x = mode.endswith("-with-x")
        self.any = mode.startswith("any")
        self.items = tuple(
            (k, v) for k, v in args.items() if k != X_MATCH and (with_x or not k.startswith("x-"))
        )

    def matches(self, headers: Mapping[str, Any]) -> bool:
        if self.any:
            for k, v in self.items:
                if k in headers and (v is None or _field_equal(headers[k], v)):
                    return True
            return False
        for k, v in self.items:
            if k not in headers or (v is not None and not _field_equal(headers[k], v)):
                return False
        return True


class _HeadersRouter:
    __slots__ = ("_specs",)

    def __init__(self) -> None:
        self._specs: dict[tuple[Hashable, str, Hashable], tuple[Hashable, _HeadersSpec]] = {}

    @staticmethod
    def validate(args: Mapping[str, Any]) -> _HeadersSpec:
        return _HeadersSpec(args)

    def add(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        self._specs[(dest, key, _freeze(args))] = (dest, _HeadersSpec(args))

    def remove(self, dest: Hashable, key: str, args: Mapping[str, Any]) -> None:
        del self._specs[(dest, key, _freeze(args))]

    def route(self, key: str, headers: Mapping[str, Any] | None) -> frozenset:
        h = headers if headers is not None else {}
        out = {dest for dest, spec in self._specs.values() if spec.matches(h)}
        return frozenset(out) if out else _EMPTY


_ROUTERS = {
    "direct": _DirectRouter,
    "fanout": _FanoutRouter,
    "topic": _TopicRouter,
    "headers": _HeadersRouter,
}


# -- exchange ----------------------------------------------------------------------------------


class Exchange:
    """One exchange and its bindings (as source). Event-loop thread only.

    ``bind``/``unbind`` here do no topology checks (existence, default exchange, auto-delete):
    ``Exchanges`` does those. ``route`` returns the frozenset of this exchange's own matching
    destinations (exchange destinations are not followed here).
    """

    __slots__ = ("name", "type", "durable", "auto_delete", "internal", "arguments", "_bindings",
                 "_router")

    def __init__(
        self,
        name: str,
        type: str,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        router = _ROUTERS.get(type)
        if router is None:
            raise UnknownExchangeType(type)
        self.name = name
        self.type = type
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = dict(arguments or {})
        self._bindings: dict[tuple[Hashable, str, Hashable], Mapping[str, Any]] = {}
        self._router = router()

    @property
    def alternate_exchange(self) -> str | None:
        return _text(self.arguments.get(ALTERNATE_EXCHANGE_ARG))

    def bind(self, destination: Hashable, routing_key: str = "",
             arguments: Mapping[str, Any] | None = None) -> bool:
        """Add a binding; False if the identical binding exists. Raises InvalidBinding."""
        args = dict(arguments or {})
        ident = (destination, routing_key, _freeze(args))
        if ident in self._bindings:
            return False
        if self.type == "headers":
            _HeadersRouter.validate(args)
        self._router.add(destination, routing_key, args)
        self._bindings[ident] = args
        return True

    def unbind(self, destination: Hashable, routing_key: str = "",
               arguments: Mapping[str, Any] | None = None) -> bool:
        """Remove a binding; False if there was no such binding."""
        args = dict(arguments or {})
        ident = (destination, routing_key, _freeze(args))
        stored = self._bindings.pop(ident, None)
        if stored is None:
            return False
        self._router.remove(destination, routing_key, stored)
        return True

    def unbind_destination(self, destination: Hashable) -> int:
        """Remove every binding to ``destination``; returns how many."""
        gone = [ident for ident in self._bindings if ident[0] == destination]
        for ident in gone:
            args = self._bindings.pop(ident)
            self._router.remove(ident[0], ident[1], args)
        return len(gone)

    def route(self, routing_key: str, headers: Mapping[str, Any] | None = None) -> frozenset:
        """Destinations of this exchange's own bindings matching the message. Hot path."""
        return self._router.route(routing_key, headers)

    def bindings(self) -> Iterator[Binding]:
        for (dest, key, _), args in self._bindings.items():
            yield Binding(self.name, dest, key, args)

    def has_bindings(self) -> bool:
        return bool(self._bindings)

    def __len__(self) -> int:
        return len(self._bindings)

    def __repr__(self) -> str:
        return (f"Exchange({self.name!r}, {self.type!r}, durable={self.durable}, "
                f"auto_delete={self.auto_delete}, internal={self.internal}, "
                f"bindings={len(self._bindings)})")


def nats_pattern_to_binding_key(pattern: str) -> str:
    """A NATS subscription subject as an AMQP topic binding key (see the module docstring).

    ``a.*.>`` -> ``a.*.*.#``; ``>`` -> ``*.#``. Raises ValueError for an invalid NATS pattern or a
    literal ``#`` token, which AMQP cannot express.
    """
    if not valid_nats_pattern(pattern):
        raise ValueError(f"invalid NATS subject {pattern!r}")
    tokens = pattern.split(".")
    if "#" in tokens:
        raise ValueError(f"NATS subject {pattern!r} has a literal '#' token, a wildcard in AMQP")
    if tokens[-1] == ">":
        tokens[-1:] = ["*", "#"]
    return ".".join(tokens)


class Exchanges:
    """One vhost's exchanges, with RabbitMQ's topology rules. Event-loop thread only.

    ``queue_exists(name)`` lets the default exchange route only to queues that exist (as RabbitMQ);
    without it, the default exchange returns the routing key and the caller filters.
    ``on_auto_delete(exchange)`` is called for each exchange removed because its last binding went
    (``auto_delete``), so the caller can drop it from the metadata store.
    """

    __slots__ = ("_exchanges", "_queue_exists", "_on_auto_delete", "_e2e")

    def __init__(
        self,
        *,
        queue_exists: Callable[[str], bool] | None = None,
        on_auto_delete: Callable[[Exchange], None] | None = None,
    ) -> None:
        self._exchanges: dict[str, Exchange] = {}
        self._queue_exists = queue_exists
        self._on_auto_delete = on_auto_delete
        self._e2e = 0  # bindings whose destination is an exchange, or exchanges with an AE
        self._exchanges[DEFAULT_EXCHANGE] = Exchange(DEFAULT_EXCHANGE, "direct", durable=True)
        for name, type_ in STANDARD_EXCHANGES:
            self._exchanges[name] = Exchange(name, type_, durable=True)

    # -- lookup --------------------------------------------------------------------------------

    def get(self, name: str) -> Exchange | None:
        return self._exchanges.get(name)

    def __getitem__(self, name: str) -> Exchange:
        x = self._exchanges.get(name)
        if x is None:
            raise ExchangeNotFound(name)
        return x

    def __contains__(self, name: object) -> bool:
        return name in self._exchanges

    def __iter__(self) -> Iterator[Exchange]:
        return iter(list(self._exchanges.values()))

    def __len__(self) -> int:
        return len(self._exchanges)

    # -- declare / delete ----------------------------------------------------------------------

    def declare(
        self,
        name: str,
        type: str = "direct",
        *,
        durable: bool = True,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> tuple[Exchange, bool]:
        """exchange.declare (not passive: use ``get``/``[]`` for that). Returns (exchange, created).

        Order of checks as rabbit_channel: type, default exchange, then equivalence if it exists,
        else the reserved prefix.
        """
        if type not in _ROUTERS:
            raise UnknownExchangeType(type)
        if name == DEFAULT_EXCHANGE:
            raise ReservedExchange("operation not permitted on the default exchange")
        existing = self._exchanges.get(name)
        if existing is not None:
            self._assert_equivalent(existing, type, durable, auto_delete, internal, arguments or {})
            return existing, False
        if name.startswith(RESERVED_PREFIX):
            raise ReservedExchange(f"exchange name '{name}' contains reserved prefix 'amq.*'")
        x = Exchange(name, type, durable, auto_delete, internal, arguments)
        self._exchanges[name] = x
        if x.alternate_exchange is not None:
            self._e2e += 1
        return x, True

    def delete(self, name: str, *, if_unused: bool = False) -> Exchange | None:
        """exchange.delete. Returns the removed exchange, or None if it did not exist (RabbitMQ
        treats that as success). Bindings to the exchange (as destination) go with it."""
        if name == DEFAULT_EXCHANGE:
            raise ReservedExchange("operation not permitted on the default exchange")
        if name.startswith(RESERVED_PREFIX):  # rabbit_channel check_exchange_deletion
            raise ReservedExchange(f"deletion of system exchange '{name}' not allowed")
        x = self._exchanges.get(name)
        if x is None:
            return None
        if if_unused and x.has_bindings():
            raise ExchangeInUse(name)
        self._remove_exchange(x)
        return x

    # -- bindings ------------------------------------------------------------------------------

    def bind(self, source: str, destination: Hashable, routing_key: str = "",
             arguments: Mapping[str, Any] | None = None) -> bool:
        """queue.bind / exchange.bind. False if the identical binding exists.

        The caller checks that a queue destination exists; an ``ExchangeRef`` destination is
        checked here."""
        x = self._bindable(source)
        if isinstance(destination, ExchangeRef):
            self._bindable(destination.name)
        added = x.bind(destination, routing_key, arguments)
        if added and isinstance(destination, ExchangeRef):
            self._e2e += 1
        return added

    def unbind(self, source: str, destination: Hashable, routing_key: str = "",
               arguments: Mapping[str, Any] | None = None) -> bool:
        """queue.unbind / exchange.unbind. False if there was no such binding. An auto-delete
        source left without bindings is deleted."""
        x = self._bindable(source)
        removed = x.unbind(destination, routing_key, arguments)
        if removed:
            if isinstance(destination, ExchangeRef):
                self._e2e -= 1
            self._maybe_auto_delete(x)
        return removed

    def remove_destination(self, destination: Hashable) -> int:
        """Drop every binding to ``destination`` (a queue was deleted, a subscriber left).
        Returns how many bindings went; auto-delete sources left empty are deleted."""
        total = 0
        for x in list(self._exchanges.values()):
            if self._exchanges.get(x.name) is not x:
                continue  # auto-deleted while this loop ran (its bindings went with it)
            n = x.unbind_destination(destination)
            if n:
                total += n
                if isinstance(destination, ExchangeRef):
                    self._e2e -= n
                self._maybe_auto_delete(x)
        return total

    def bindings(self) -> Iterator[Binding]:
        for x in list(self._exchanges.values()):
            yield from x.bindings()

    # -- routing -------------------------------------------------------------------------------

    def route(self, exchange: str, routing_key: str,
              headers: Mapping[str, Any] | None = None) -> frozenset | set:
        """Destinations (queues and opaque sinks, never exchanges) for a message published to
        ``exchange``. Raises ExchangeNotFound. Does not refuse internal exchanges: the session
        checks ``Exchange.internal`` for client publishes. Hot path: with no exchange-to-exchange
        bindings and no alternate exchanges this is one dict lookup plus the router's lookup."""
        if exchange == DEFAULT_EXCHANGE:
            exists = self._queue_exists
            if exists is None or exists(routing_key):
                return frozenset((routing_key,))
            return _EMPTY
        x = self._exchanges.get(exchange)
        if x is None:
            raise ExchangeNotFound(exchange)
        dests = x._router.route(routing_key, headers)
        if not self._e2e:
            return dests
        return self._route_graph(x, dests, routing_key, headers)

    def route_subject(self, subject: str) -> frozenset | set:
        """Design decision 6: a core NATS publish goes through ``amq.topic``, subject = key."""
        return self.route(AMQ_TOPIC, subject)

    def bind_subject(self, destination: Hashable, nats_pattern: str) -> bool:
        """Bind a NATS subscriber (sink) to ``amq.topic`` for a NATS pattern."""
        return self.bind(AMQ_TOPIC, destination, nats_pattern_to_binding_key(nats_pattern))

    def unbind_subject(self, destination: Hashable, nats_pattern: str) -> bool:
        return self.unbind(AMQ_TOPIC, destination, nats_pattern_to_binding_key(nats_pattern))

    # -- internals -----------------------------------------------------------------------------

    def _route_graph(self, first: Exchange, first_dests: frozenset, routing_key: str,
                     headers: Mapping[str, Any] | None) -> set:
        # rabbit_exchange:route1/3: a worklist of exchanges, each visited once; an exchange whose
        # own bindings matched nothing contributes its alternate exchange instead.
        out: set = set()
        seen = {first.name}
        work: list[tuple[Exchange, frozenset]] = [(first, first_dests)]
        while work:
            x, dests = work.pop()
            if not dests:
                ae = x.alternate_exchange
                if ae is not None and ae not in seen:
                    nxt = self._exchanges.get(ae)
                    if nxt is not None:  # a missing AE is ignored, as RabbitMQ does
                        seen.add(ae)
                        work.append((nxt, nxt._router.route(routing_key, headers)))
                continue
            for d in dests:
                if isinstance(d, ExchangeRef):
                    if d.name not in seen:
                        seen.add(d.name)
                        nxt = self._exchanges.get(d.name)
                        if nxt is not None:
                            work.append((nxt, nxt._router.route(routing_key, headers)))
                else:
                    out.add(d)
        return out

    def _bindable(self, name: str) -> Exchange:
        if name == DEFAULT_EXCHANGE:
            raise ReservedExchange("operation not permitted on the default exchange")
        x = self._exchanges.get(name)
        if x is None:
            raise ExchangeNotFound(name)
        return x

    def _maybe_auto_delete(self, x: Exchange) -> None:
        if x.auto_delete and not x.has_bindings() and self._exchanges.get(x.name) is x:
            self._remove_exchange(x)
            if self._on_auto_delete is not None:
                self._on_auto_delete(x)

    def _remove_exchange(self, x: Exchange) -> None:
        del self._exchanges[x.name]
        if x.alternate_exchange is not None:
            self._e2e -= 1
        for b in x.bindings():
            if isinstance(b.destination, ExchangeRef):
                self._e2e -= 1
        self.remove_destination(ExchangeRef(x.name))

    @staticmethod
    def _assert_equivalent(x: Exchange, type_: str, durable: bool, auto_delete: bool,
                           internal: bool, arguments: Mapping[str, Any]) -> None:
        # rabbit_exchange:assert_equivalence: type, durable, auto_delete, internal, and of the
        # arguments only alternate-exchange.
        for field, received, current in (
            ("type", type_, x.type),
            ("durable", durable, x.durable),
            ("auto_delete", auto_delete, x.auto_delete),
            ("internal", internal, x.internal),
        ):
            if received != current:
                raise InequivalentExchange(x.name, field, received, current)
        received_ae = _text(arguments.get(ALTERNATE_EXCHANGE_ARG))
        if received_ae != x.alternate_exchange:
            raise InequivalentExchange(x.name, ALTERNATE_EXCHANGE_ARG, received_ae or "none",
                                       x.alternate_exchange or "none")
