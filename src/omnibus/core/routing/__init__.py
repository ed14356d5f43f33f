"""Routing: the one subject/routing-key matcher (``trie``) and AMQP exchanges (``exchanges``).

NATS subjects and AMQP topic keys share one token trie (``SubjectTrie(style="nats"|"amqp")``);
exchanges route AMQP publishes and, through ``amq.topic``, core NATS publishes (design decision 6).
Synchronous, event-loop thread only, no protocol error codes.
"""

from omnibus.core.routing.exchanges import (
    AMQ_TOPIC,
    DEFAULT_EXCHANGE,
    Binding,
    Exchange,
    ExchangeError,
    ExchangeInUse,
    ExchangeNotFound,
    ExchangeRef,
    Exchanges,
    InequivalentExchange,
    InvalidBinding,
    ReservedExchange,
    UnknownExchangeType,
    nats_pattern_to_binding_key,
)
from omnibus.core.routing.trie import (
    EMPTY_MATCH,
    MatchResult,
    SubjectTrie,
    is_literal,
    valid_nats_pattern,
    valid_nats_subject,
)

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
