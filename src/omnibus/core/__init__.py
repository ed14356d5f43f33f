"""The protocol-neutral core: routing, queues, topics (and later streams, groups).

Rules (design.md, checked by tests/test_import_direction.py):
* imports only ``omnibus.core`` and ``omnibus.storage`` of ours, and never asyncio: it is
  synchronous and called from the server's event loop (every object here is "event-loop thread
  only" unless its docstring says otherwise);
* knows no AMQP reply code, Kafka error code or NATS sid: errors are core exceptions that the
  protocol sessions map;
* takes time from an injected ``Clock`` (``omnibus.core.clock``), never from ``time``.

Modules: ``clock`` (Clock, SystemClock, ManualClock), ``messages`` (Message <-> storage records),
``routing`` (subject trie, exchanges), ``queues`` (queues over logs), ``topics`` (Kafka topics).
"""

# Lazy (PEP 562): importing one submodule, e.g. the trie for the NATS listener, must not load every
# core module and the storage engine with it (they cost ~100 ms of the broker's start-up).
_EXPORTS = {
    "Clock": "omnibus.core.clock",
    "ManualClock": "omnibus.core.clock",
    "SystemClock": "omnibus.core.clock",
    "Message": "omnibus.core.messages",
    "Delivery": "omnibus.core.queues",
    "Queue": "omnibus.core.queues",
    "Topic": "omnibus.core.topics",
    "TopicConfig": "omnibus.core.topics",
    "UnknownPartition": "omnibus.core.topics",
}

__all__ = [
    "Clock",
    "Delivery",
    "ManualClock",
    "Message",
    "Queue",
    "SystemClock",
    "Topic",
    "TopicConfig",
    "UnknownPartition",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
