"""Routing: the one subject/routing-key matcher (``trie``) and AMQP exchanges (``exchanges``).

NATS subjects and AMQP topic keys share one token trie (``SubjectTrie(style="nats"|"amqp")``);
exchanges route AMQP publishes and, through ``amq.topic``, core NATS publishes (design decision 6).
Synchronous, event-loop thread only, no protocol error codes.
"""

# Lazy (PEP 562): importing one submodule, e.g. the trie for the NATS listener, must not load every
# core module and the storage engine with it (they cost ~100 ms of the broker's start-up).
_EXPORTS = {
    "AMQ_TOPIC": "omnibus.core.routing.exchanges",
    "DEFAULT_EXCHANGE": "omnibus.core.routing.exchanges",
    "Binding": "omnibus.core.routing.exchanges",
    "Exchange": "omnibus.core.routing.exchanges",
    "ExchangeError": "omnibus.core.routing.exchanges",
    "ExchangeInUse": "omnibus.core.routing.exchanges",
    "ExchangeNotFound": "omnibus.core.routing.exchanges",
    "ExchangeRef": "omnibus.core.routing.exchanges",
    "Exchanges": "omnibus.core.routing.exchanges",
    "InequivalentExchange": "omnibus.core.routing.exchanges",
    "InvalidBinding": "omnibus.core.routing.exchanges",
    "ReservedExchange": "omnibus.core.routing.exchanges",
    "UnknownExchangeType": "omnibus.core.routing.exchanges",
    "nats_pattern_to_binding_key": "omnibus.core.routing.exchanges",
    "EMPTY_MATCH": "omnibus.core.routing.trie",
    "MatchResult": "omnibus.core.routing.trie",
    "SubjectTrie": "omnibus.core.routing.trie",
    "is_literal": "omnibus.core.routing.trie",
    "valid_nats_pattern": "omnibus.core.routing.trie",
    "valid_nats_subject": "omnibus.core.routing.trie",
}

__all__ = [
    "AMQ_TOPIC",
    "DEFAULT_EXCHANGE",
    "EMPTY_MATCH",
    "Binding",
    "Exchange",
    "ExchangeError",
    "ExchangeInUse",
    "ExchangeNotFound",
    "ExchangeRef",
    "Exchanges",
    "InequivalentExchange",
    "InvalidBinding",
    "MatchResult",
    "ReservedExchange",
    "SubjectTrie",
    "UnknownExchangeType",
    "is_literal",
    "nats_pattern_to_binding_key",
    "valid_nats_pattern",
    "valid_nats_subject",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
