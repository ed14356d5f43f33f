"""The protocol-neutral message, and its mapping to storage records (design decision 1).

Strategy: a ``Message`` is what crosses the core: routing key (AMQP routing key or NATS subject),
body, application headers, the publishing protocol's properties as opaque bytes, a timestamp and the
exchange it was published to. It is stored as one record of a Kafka v2 batch
(``omnibus.storage.records``), so every protocol reads every log:

* record key   = routing key, UTF-8 (``b""`` for the empty key; a null key reads back as ``""``)
* record value = body, verbatim
* record headers, in this order:
  - ``HDR_EXCHANGE`` (UTF-8 exchange name), only when the exchange is not ``""`` (the default
    exchange; also what a record written by a Kafka producer reads back as);
  - ``HDR_PROPERTIES`` (the properties bytes verbatim, e.g. an AMQP content header's property flags
    and list), only when non-empty: an AMQP delivery writes them back to the socket unparsed;
  - then the application headers, one record header per value (a list value repeats the key, as
    NATS multi-value headers and Kafka duplicate keys do). Values are ``bytes``, ``str`` (stored
    UTF-8) or ``None`` (null); other types are refused: typed AMQP header tables travel inside the
    properties bytes, not here.
* record timestamp = ``timestamp_ms`` (``NO_TIMESTAMP`` = -1: the batch builder stamps it with the
  ``now_ms`` it is given, which callers take from their injected clock).

The routing key is not repeated in a header (the design sketch lists it among the headers): the
record key already carries it for AMQP/NATS records, and bytes per message are the cost that
matters here. Reading back, application header values come back as ``bytes`` (or ``None``; a
repeated key as a list), because that is all a record can say.

Reserved header names start with ``RESERVED_PREFIX``; a Kafka consumer of an AMQP/NATS-written log
sees them as ordinary record headers.

Concurrency: pure functions and plain objects; event-loop thread only for mutation of a Message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omnibus.storage.records import NO_TIMESTAMP, Record, build_batch, decode_records

__all__ = [
    "HDR_EXCHANGE",
    "HDR_PROPERTIES",
    "RESERVED_PREFIX",
    "Message",
    "batch_to_messages",
    "message_to_record",
    "messages_to_batch",
    "record_to_message",
]

RESERVED_PREFIX = "omnibus."
HDR_EXCHANGE = "omnibus.x"  # short names: they are written once per stored message
HDR_PROPERTIES = "omnibus.p"


class Message:
    """One message as the core sees it. ``body`` is bytes or a byte memoryview (never copied here).

    ``headers`` maps a name to bytes/str/None or a list of those; ``None`` means no headers.
    ``properties`` is opaque to the core. ``timestamp_ms`` of -1 means "stamp it on append".
    """

    __slots__ = ("routing_key", "body", "headers", "properties", "timestamp_ms", "exchange")

    def __init__(
        self,
        routing_key: str,
        body: bytes | memoryview = b"",
        headers: Mapping[str, Any] | None = None,
        properties: bytes = b"",
        timestamp_ms: int = NO_TIMESTAMP,
        exchange: str = "",
    ) -> None:
        self.routing_key = routing_key
        self.body = body
        self.headers = headers
        self.properties = properties
        self.timestamp_ms = timestamp_ms
        self.exchange = exchange

    @property
    def subject(self) -> str:
        """The NATS name for the routing key."""
        return self.routing_key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.routing_key == other.routing_key
            and self.body == other.body
            and (self.headers or None) == (other.headers or None)
            and self.properties == other.properties
            and self.timestamp_ms == other.timestamp_ms
            and self.exchange == other.exchange
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Message(routing_key={self.routing_key!r}, body=<{len(self.body)} bytes>, "
                f"headers={self.headers!r}, properties=<{len(self.properties)} bytes>, "
                f"timestamp_ms={self.timestamp_ms}, exchange={self.exchange!r})")


def _header_value(name: str, value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"header {name!r}: a stored header value is bytes, str or None, not "
                    f"{type(value).__name__} (typed AMQP headers travel in the properties bytes)")


def message_to_record(msg: Message) -> Record:
    """The storage record for ``msg`` (see the module docstring for the layout). Hot path: every
    AMQP/NATS publish. No dedicated benchmark yet; ``python bench/storage.py`` measures the
    build_batch/decode_records work underneath."""
    headers: list[tuple[str, bytes | None]] = []
    if msg.exchange:
        headers.append((HDR_EXCHANGE, msg.exchange.encode()))
    if msg.properties:
        headers.append((HDR_PROPERTIES, bytes(msg.properties)))
    if msg.headers:
        for name, value in msg.headers.items():
            if isinstance(value, (list, tuple)):
                for v in value:
                    headers.append((name, _header_value(name, v)))
            else:
                headers.append((name, _header_value(name, value)))
    return Record(msg.routing_key.encode(), msg.body, tuple(headers), msg.timestamp_ms)


def record_to_message(record: Record) -> Message:
    """The Message a record holds. Records written by Kafka producers work too: their key (if any)
    becomes the routing key (UTF-8, invalid bytes replaced) and their headers the headers."""
    key = record.key
    routing_key = key.decode("utf-8", "replace") if key else ""
    exchange = ""
    properties = b""
    headers: dict[str, Any] | None = None
    for name, value in record.headers:
        if name == HDR_EXCHANGE:
            exchange = value.decode("utf-8", "replace") if value else ""
        elif name == HDR_PROPERTIES:
            properties = value or b""
        else:
            if headers is None:
                headers = {}
            if name in headers:
                have = headers[name]
                if isinstance(have, list):
                    have.append(value)
                else:
                    headers[name] = [have, value]
            else:
                headers[name] = value
    body = record.value if record.value is not None else b""
    return Message(routing_key, body, headers, properties, record.timestamp_ms, exchange)


def messages_to_batch(messages: Sequence[Message] | Iterable[Message], *, now_ms: int) -> bytes:
    """One v2 batch holding ``messages`` (a loop turn's publishes to one log). Messages with no
    timestamp get ``now_ms``: pass ``clock.now_ms()``."""
    return build_batch([message_to_record(m) for m in messages], now_ms=now_ms)


def batch_to_messages(batch: bytes | memoryview, *, validate: bool = True) -> list[tuple[int, Message]]:
    """``(offset, Message)`` for every record of one batch (CRC checked unless ``validate=False``,
    for batches the log already validated)."""
    return [(off, record_to_message(rec)) for off, rec in decode_records(batch, validate=validate)]
