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

from omnibus.core.clock import Clock, ManualClock, SystemClock
from omnibus.core.messages import Message
from omnibus.core.queues import Delivery, Queue
from omnibus.core.topics import Topic, TopicConfig, UnknownPartition

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
