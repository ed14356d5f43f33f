"""Queues over logs (design decision 2, as LavinMQ): a log of messages plus consumption state.

Strategy
    The messages live in a ``Log`` (one v2 batch per ``publish`` call: callers batch a loop turn's
    publishes) and stay there: Python holds offsets, not bodies. Consumption state:

    * ready: offsets waiting for delivery, as a deque of ``[start, end)`` runs. Publishes append
      contiguous offsets and deliveries take from the front, so a backlog of millions of messages is
      usually one run (a few ints), not millions of ints;
    * requeued: a min-heap of offsets given back (``reject(requeue=True)``, ``requeue``). Delivery
      takes the smaller of heap top and ready head, so a requeued message goes back to its original
      position, as RabbitMQ does ("requeued to its original position ... if possible");
    * in flight: ``{offset: delivery_count}`` for delivered, not yet settled messages. It survives
      nothing: on restart every unacked offset (``QueueAcks.unacked_offsets()``) is ready again, and
      every offset below the end of the log at open is delivered with ``redelivered=True``
      (AMQP basic.deliver: "this message may have been previously delivered");
    * acks: ``QueueAcks`` bitmaps on disk; a settled (acked, dead-lettered, purged) offset is acked
      there and whole segments are deleted by ``collect``.

    Bodies are read from the log at delivery through one open ``Log.batches`` iterator (one pread per
    ``BATCH_READ_CHUNK`` of consecutive batches) and a cache of the last decoded batch, so
    delivering a batch of N messages decodes it once. Before that comes the *recent cache*: the queue
    keeps the ``Message`` objects of its appends and delivers those, so the common publish -> deliver
    path never decodes what it has just encoded (it was ~26% of the broker's time in bench/amqp.py). It
    holds at most ``RECENT_QUEUE_BYTES`` per queue and ``RECENT_TOTAL_BYTES`` per process (encoded sizes;
    an append that does not fit is not kept), drops an append once delivery has read past it (behind a
    backlog, consumers are served from the log up to the next kept append, from the cache in it), and
    keeps no message with headers (read back, header values are bytes). A fan-out encodes once:
    ``shared_batch`` makes the batch every queue appends verbatim.

Rules
    * Delivery counts are per offset and per process (not persisted); the first delivery has count 1.
    * ``reject(requeue=False)`` settles the message and returns it, so a dead-letter exchange can route
      it; the queue does not know exchanges.
    * Time comes from the injected clock (record timestamps, ``now_ms`` for expiry, ``monotonic`` for
      ``x-expires`` idleness).

Features (RabbitMQ 3.x classic-queue semantics; arguments arrive validated by the session)
    A queue without feature arguments takes the plain paths above; the features cost it one attribute
    test per ``deliver_next`` (``self._featured or msg.headers is not None``) and one per ``publish``
    call, nothing per ack. Per-message facts the core needs travel as reserved record headers that the
    publishing session adds only to messages that carry them: ``HDR_EXPIRES`` (absolute expiry, ms since
    the epoch, from AMQP ``expiration``) and ``HDR_PRIORITY`` (AMQP ``priority``). So they survive a
    restart with the log, and the core never parses a protocol's properties.

    * TTL (``x-message-ttl`` and per-message expiry): a message expires at ``timestamp + ttl`` (the record
      timestamp is the enqueue time) or at its own expiry, the earlier. As RabbitMQ, only the head
      expires: ``deliver_next`` skips expired heads, ``expire_head`` drops them (a timer of the session's
      calls it at ``next_expiry``), and an expired message is never delivered. Expired means
      ``now >= expiry`` everywhere except in ``deliver_next`` (``now > expiry``, and never for the
      messages of the last ``publish`` until the next ``expire_head``): what a waiting consumer takes right
      after a publish is delivered even with TTL 0, as RabbitMQ hands a message to a waiting consumer
      before enqueueing it. The session calls ``expire_head`` once it has pumped a publish. A queue that
      recovered messages at open is timed (they may carry ``HDR_EXPIRES``) only until none of them is
      ready or in flight; then it takes the plain paths again.
    * Length limits (``x-max-length``, ``x-max-length-bytes``; ready messages only, as RabbitMQ counts):
      ``drop-head`` (default) publishes and then ``enforce_limits`` drops from the head (reason
      ``maxlen``); ``reject-publish(-dlx)``: ``publish_admitted`` refuses a message that would overflow
      (the -dlx variant dead-letters it, reason ``maxlen``). Byte limits keep the body size of each ready
      message in ``_sizes`` (offset -> size) and a running ``_ready_bytes``.
    * Dead-lettering: the queue does not know exchanges. A message that dies (``rejected``, ``expired``,
      ``maxlen``) on a queue with ``x-dead-letter-exchange`` is appended to ``dead_letters`` as
      ``(message, reason)`` (body copied) and ``on_dead(queue)`` is called; the session routes it.
    * Priorities (``x-max-priority``): ``PriorityQueue`` keeps one ready set (runs + requeue heap) per
      priority level over the one log, and delivers from the highest non-empty level; a message's
      priority is capped at the maximum, no priority is 0. One log keeps one durability/ack/collection
      path; the price is that a segment is collected only once every level has settled it.
    * ``x-expires``: ``last_used`` (monotonic seconds) is reset by ``touch``; the session deletes an
      unused queue whose ``expires`` period passed.

Concurrency: event-loop thread only (same thread as the log). ``close`` blocks (fsync).
Hot paths: ``publish``, ``deliver_next``, ``_read``, ``ack``: run ``python bench/amqp.py`` before and after
changing them (the codec and log underneath are measured by ``python bench/storage.py``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from omnibus.core.clock import Clock
from omnibus.core.messages import HDR_EXCHANGE, HDR_PROPERTIES, Message, batch_to_messages, messages_to_batch
from omnibus.storage.acks import QueueAcks
from omnibus.storage.log import Log
from omnibus.storage.records import HEADER, HEADER_SIZE, LOG_OVERHEAD, MAGIC, BatchHeader, encode_varint, seal_crc

__all__ = ["Delivery", "Queue", "PriorityQueue", "open_queue_class", "READER_RESTART_GAP", "HDR_EXPIRES",
           "HDR_PRIORITY", "DROP_HEAD", "REJECT_PUBLISH", "REJECT_PUBLISH_DLX", "shared_batch",
           "recent_bytes_total", "RECENT_QUEUE_BYTES", "RECENT_TOTAL_BYTES"]

#: Reserved record headers (see the module docstring). Short: written once per message that has them.
HDR_EXPIRES = "omnibus.e"
HDR_PRIORITY = "omnibus.pr"
#: x-overflow behaviours (RabbitMQ maxlength.html).
DROP_HEAD = "drop-head"
REJECT_PUBLISH = "reject-publish"
REJECT_PUBLISH_DLX = "reject-publish-dlx"
#: Dead-letter reasons as RabbitMQ names them in x-death.
REJECTED, EXPIRED, MAXLEN = "rejected", "expired", "maxlen"


def _int_arg(arguments: Mapping[str, Any], key: str) -> int | None:
    v = arguments.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str_arg(arguments: Mapping[str, Any], key: str) -> str | None:
    v = arguments.get(key)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v if isinstance(v, str) else None


def open_queue_class(arguments: Mapping[str, Any] | None) -> "type[Queue]":
    """The class for a queue with these arguments: ``PriorityQueue`` for ``x-max-priority`` >= 1."""
    mp = _int_arg(arguments or {}, "x-max-priority")
    return PriorityQueue if mp is not None and mp >= 1 else Queue

#: The recent cache (see ``Queue._read``): a queue keeps the messages of its appends not yet read, at
#: most this many encoded bytes per queue and ``RECENT_TOTAL_BYTES`` over all queues of the process, so a
#: backlog still costs offsets, not bodies (design decision 2).
RECENT_QUEUE_BYTES = 4 * 1024 * 1024
RECENT_TOTAL_BYTES = 64 * 1024 * 1024
_recent_total = [0]  # bytes held by every queue's recent cache (event-loop thread only)


def recent_bytes_total() -> int:
    """Bytes of encoded batches whose messages recent caches hold now (for tests and metrics)."""
    return _recent_total[0]


def shared_batch(messages: Sequence[Message], now_ms: int) -> tuple[bytes | bytearray, bool]:
    """(one encoded batch for ``messages``, whether a recent cache may keep them). Several queues append
    the batch verbatim (``Queue.publish(messages, batch)``: a fan-out encodes once). Messages without a
    timestamp are stamped ``now_ms`` first, so that the ``Message`` objects a recent cache keeps say what
    the log says; messages with headers are not kept (read back, header values are bytes, which a
    publisher's need not be). Messages without headers (the plain AMQP publish) take ``encode_plain``."""
    plain = True
    for msg in messages:
        if msg.timestamp_ms < 0:
            msg.timestamp_ms = now_ms
        if msg.headers is not None or msg.properties.__class__ is not bytes:
            plain = False
    if plain and len(messages) <= PLAIN_MAX_RECORDS:
        return encode_plain(messages), True
    return messages_to_batch(messages, now_ms=now_ms), plain


#: encode_plain's table of record prefixes (attributes 0, timestamp delta 0, offset delta i), grown on
#: demand up to this many records per batch (more take messages_to_batch).
PLAIN_MAX_RECORDS = 1 << 16
_PLAIN_PREFIX: list[bytes] = []
_HDR_X = encode_varint(len(HDR_EXCHANGE.encode())) + HDR_EXCHANGE.encode()
_HDR_P = encode_varint(len(HDR_PROPERTIES.encode())) + HDR_PROPERTIES.encode()
_NO_HEADERS = encode_varint(0)


def encode_plain(messages: Sequence[Message]) -> bytearray:
    """The bytes ``messages_to_batch`` makes, for timestamped messages without headers whose properties
    are ``bytes``, at a fraction of the cost: the record key and the (exchange, properties) headers are
    encoded once per distinct value in the batch, record prefixes come from a table, and no ``Record`` is
    built. (It was ~13% of the broker's time in bench/amqp.py.) tests/core/test_queue_recent.py checks it
    byte for byte against ``messages_to_batch``. Hot path."""
    n = len(messages)
    prefix = _PLAIN_PREFIX
    if len(prefix) < n:
        prefix.extend([b"\x00\x00" + encode_varint(i) for i in range(len(prefix), n)])
    keys: dict[str, bytes] = {}
    heads: dict[tuple[str, bytes], bytes] = {}
    varint = encode_varint
    parts: list = [b""]  # [0]: the batch header, once the sizes are known
    add = parts.extend
    base_ts = max_ts = messages[0].timestamp_ms
    size = 0
    for i, msg in enumerate(messages):
        rk = msg.routing_key
        kp = keys.get(rk)
        if kp is None:
            kb = rk.encode()
            kp = keys[rk] = varint(len(kb)) + kb
        exchange, props = msg.exchange, msg.properties
        hp = heads.get((exchange, props))
        if hp is None:
            hp = _plain_headers(exchange, props)
            heads[(exchange, props)] = hp
        ts = msg.timestamp_ms
        if ts == base_ts:
            pre = prefix[i]
        else:
            pre = b"\x00" + varint(ts - base_ts) + varint(i)
            if ts > max_ts:
                max_ts = ts
        body = msg.body
        vl = varint(len(body))
        rec = len(pre) + len(kp) + len(vl) + len(body) + len(hp)
        ln = varint(rec)
        add((ln, pre, kp, vl, body, hp))
        size += len(ln) + rec
    parts[0] = HEADER.pack(0, HEADER_SIZE - LOG_OVERHEAD + size, -1, MAGIC, 0, 0, n - 1, base_ts, max_ts,
                           -1, -1, -1, n)
    batch = bytearray().join(parts)  # one copy of the bodies; the CRC is patched in place
    seal_crc(batch)
    return batch


def _plain_headers(exchange: str, props: bytes) -> bytes:
    """Header count and headers of a record for ``message_to_record``'s exchange and properties."""
    out = []
    if exchange:
        xb = exchange.encode()
        out.append(_HDR_X + encode_varint(len(xb)) + xb)
    if props:
        out.append(_HDR_P + encode_varint(len(props)) + props)
    return encode_varint(len(out)) + b"".join(out) if out else _NO_HEADERS


# When the next offset to read is this far past the open batch iterator, start a new iterator at it
# (an index lookup) instead of reading through the batches in between. Sparse ready sets appear after
# a restart with many acked messages; reading ahead is cheaper for small gaps.
READER_RESTART_GAP = 4096


class Delivery:
    """A message handed to a consumer. ``delivery_count`` counts this delivery (first = 1)."""

    __slots__ = ("offset", "message", "delivery_count", "redelivered")

    def __init__(self, offset: int, message: Message, delivery_count: int, redelivered: bool) -> None:
        self.offset = offset
        self.message = message
        self.delivery_count = delivery_count
        self.redelivered = redelivered

    def __repr__(self) -> str:
        return (f"Delivery(offset={self.offset}, delivery_count={self.delivery_count}, "
                f"redelivered={self.redelivered}, message={self.message!r})")


class Queue:
    """A queue over ``log`` with consumption state in ``acks``; the queue owns both (``close``).

    Build it right after opening the log: everything already in the log at construction counts as
    possibly delivered before (``redelivered=True``). Event-loop thread only.
    """

    def __init__(
        self,
        name: str,
        log: Log,
        acks: QueueAcks,
        clock: Clock,
        *,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.acks = acks
        self.clock = clock
        self.durable = durable
        self.exclusive = exclusive
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments or {})
        a = self.arguments
        #: feature settings (None: not set)
        self.message_ttl = _int_arg(a, "x-message-ttl")
        self.expires = _int_arg(a, "x-expires")
        self.max_length = _int_arg(a, "x-max-length")
        self.max_length_bytes = _int_arg(a, "x-max-length-bytes")
        overflow = _str_arg(a, "x-overflow")
        self.overflow = overflow if overflow in (REJECT_PUBLISH, REJECT_PUBLISH_DLX) else DROP_HEAD
        self.dead_letter_exchange = _str_arg(a, "x-dead-letter-exchange")
        self.dead_letter_routing_key = _str_arg(a, "x-dead-letter-routing-key")
        self.single_active_consumer = a.get("x-single-active-consumer") is True
        self.limited = self.max_length is not None or self.max_length_bytes is not None
        #: publish_admitted may refuse messages (reject-publish / reject-publish-dlx)
        self.rejects = self.limited and self.overflow != DROP_HEAD
        #: messages may expire (queue TTL, or a publisher sent one with an expiry: ``mark_timed``)
        self.timed = self.message_ttl is not None
        self._sizes: dict[int, int] | None = {} if self.max_length_bytes is not None else None
        self._ready_bytes = 0
        self._featured = self.timed or self._sizes is not None
        #: [start, end) of the last publish: deliverable despite TTL until ``expire_head`` (see docstring)
        self._fresh = (0, 0)
        #: (message, reason) that died here, for the dead-letter exchange; see ``on_dead``
        self.dead_letters: list[tuple[Message, str]] = []
        #: called with this queue when ``dead_letters`` gets its first entry (set by the host)
        self.on_dead: Callable[["Queue"], None] | None = None
        #: monotonic seconds of the last use (x-expires)
        self.last_used = clock.monotonic()
        self._ready: deque[list[int]] = deque()  # [start, end) runs, ascending, disjoint
        self._ready_count = 0
        self._requeued: list[int] = []  # min-heap
        self._inflight: dict[int, int] = {}  # offset -> delivery count
        self._counts: dict[int, int] = {}  # delivery counts of requeued (not in flight) offsets
        self._recovered_end = log.end_offset
        # read path
        self._reader: Iterator[tuple[BatchHeader, memoryview]] | None = None
        self._reader_next = -1  # first offset after the last batch the reader yielded
        self._cache_base = 0
        self._cache_end = 0  # [base, end) of the cached batch
        self._cache: dict[int, Message] = {}
        #: the recent cache: (first, end, messages, encoded bytes) of kept appends, ascending
        self._recent: deque[tuple[int, int, Sequence[Message], int]] = deque()
        self._recent_bytes = 0
        #: timed only because messages were recovered (see ``_end_recovery_timing``)
        self._timed_for_recovery = False
        self._rebuild()

    def _rebuild(self) -> None:
        ready = self._ready
        count = 0
        for off in self.acks.unacked_offsets():
            if ready and ready[-1][1] == off:
                ready[-1][1] = off + 1
            else:
                ready.append([off, off + 1])
            count += 1
        self._ready_count = count
        if self._sizes is not None:
            for start, end in ready:
                for off in range(start, end):
                    self._add_size(off, self._read(off))
        if count and not self.timed:
            # recovered messages may carry their own expiry (HDR_EXPIRES); check them at the head
            self.mark_timed()
            self._timed_for_recovery = True

    def _add_size(self, offset: int, msg: Message) -> None:
        size = len(msg.body)
        self._sizes[offset] = size  # type: ignore[index]
        self._ready_bytes += size

    def mark_timed(self) -> None:
        """Messages of this queue may expire (a publisher sent one with ``HDR_EXPIRES``)."""
        self.timed = True
        self._featured = True
        self._timed_for_recovery = False

    def _lowest_ready(self) -> int | None:
        """The smallest ready offset (None if nothing is ready)."""
        requeued, ready = self._requeued, self._ready
        if requeued and (not ready or requeued[0] < ready[0][0]):
            return requeued[0]
        return ready[0][0] if ready else None

    def _end_recovery_timing(self) -> None:
        """A queue timed only because it recovered messages (which may carry ``HDR_EXPIRES``) goes back
        to the plain paths once none of them is ready or in flight any more."""
        end = self._recovered_end
        low = self._lowest_ready()
        if (low is not None and low < end) or any(o < end for o in self._inflight):
            return
        self._timed_for_recovery = False
        self.timed = self.message_ttl is not None
        self._featured = self.timed or self._sizes is not None

    def touch(self) -> None:
        """The queue was used (declared, consumed from, basic.get): restart its x-expires period."""
        self.last_used = self.clock.monotonic()

    # -- counts --------------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """Ready messages (what AMQP queue.declare-ok reports)."""
        return self._ready_count + len(self._requeued)

    @property
    def ready_bytes(self) -> int:
        """Body bytes of the ready messages (tracked only with ``x-max-length-bytes``)."""
        return self._ready_bytes

    @property
    def unacked_count(self) -> int:
        """Delivered, not yet settled."""
        return len(self._inflight)

    def __len__(self) -> int:
        """Ready plus in flight."""
        return self.message_count + len(self._inflight)

    def in_flight(self) -> tuple[int, ...]:
        return tuple(self._inflight)

    def delivery_count(self, offset: int) -> int:
        """How many times ``offset`` was delivered in this process (0 if never or settled)."""
        n = self._inflight.get(offset)
        return n if n is not None else self._counts.get(offset, 0)

    # -- publish -------------------------------------------------------------------------------

    def publish(self, messages: Sequence[Message], batch: tuple[bytes | bytearray, bool] | None = None) -> range:
        """Append ``messages`` as one batch (split only if it exceeds the log's max batch size) and
        make them ready. Returns their offsets. Hot path. ``batch``: ``shared_batch(messages, ...)``,
        already encoded (a fan-out encodes once for all its queues). Length limits are not applied here:
        call ``enforce_limits`` (drop-head) after handing what you can to consumers, or use
        ``publish_admitted`` for reject-publish queues."""
        if not messages:
            return range(0)
        encoded, plain = shared_batch(messages, self.clock.now_ms()) if batch is None else batch
        first, end, size = self._append(messages, encoded)
        recent = self._recent
        if plain and (
                self._recent_bytes + size <= RECENT_QUEUE_BYTES and _recent_total[0] + size <= RECENT_TOTAL_BYTES):
            recent.append((first, end, messages, size))
            self._recent_bytes += size
            _recent_total[0] += size
        if self._featured:
            self._fresh = (first, end)
            if self._sizes is not None:
                for off, msg in zip(range(first, end), messages):
                    self._add_size(off, msg)
        self._make_ready(first, end, messages)
        return range(first, end)

    def _make_ready(self, first: int, end: int, messages: Sequence[Message]) -> None:
        ready = self._ready
        if ready and ready[-1][1] == first:
            ready[-1][1] = end
        else:
            ready.append([first, end])
        self._ready_count += end - first

    def publish_admitted(self, messages: Sequence[Message]) -> tuple[range, list[int]]:
        """publish, refusing what would overflow a reject-publish queue (RabbitMQ will_overflow: the
        queue length + 1 over max-length, or its bytes + the body over max-length-bytes). Returns (offsets
        of the accepted, indexes in ``messages`` of the refused). reject-publish-dlx dead-letters the
        refused (reason maxlen)."""
        if not self.rejects:
            return self.publish(messages), []
        n, size = self.message_count, self._ready_bytes
        ml, mb = self.max_length, self.max_length_bytes
        accepted: list[Message] = []
        refused: list[int] = []
        for i, msg in enumerate(messages):
            b = len(msg.body)
            if (ml is not None and n + 1 > ml) or (mb is not None and size + b > mb):
                refused.append(i)
                if self.overflow == REJECT_PUBLISH_DLX:
                    self._dead(msg, MAXLEN)
            else:
                accepted.append(msg)
                n += 1
                size += b
        return self.publish(accepted), refused

    def _over_limit(self) -> bool:
        return ((self.max_length is not None and self.message_count > self.max_length)
                or (self.max_length_bytes is not None and self._ready_bytes > self.max_length_bytes))

    def enforce_limits(self) -> int:
        """drop-head: drop (and dead-letter, reason maxlen) from the head while the ready messages are
        over x-max-length / x-max-length-bytes. Returns how many were dropped."""
        n = 0
        if not self.limited or self.rejects:
            return 0
        while self._over_limit():
            taken = self._take()
            if taken is None:  # pragma: no cover (over the limit means something is ready)
                break
            offset = taken[0]
            self._settle_dead(offset, self._read(offset), MAXLEN)
            n += 1
        return n

    def _append(self, messages: Sequence[Message], batch: bytes | bytearray | None = None) -> tuple[int, int, int]:
        """Append; returns (first offset, end offset, encoded bytes)."""
        if batch is None:
            batch = messages_to_batch(messages, now_ms=self.clock.now_ms())
        if len(batch) > self.log.config.max_batch_bytes and len(messages) > 1:
            half = len(messages) // 2
            first, _, n1 = self._append(messages[:half])
            _, end, n2 = self._append(messages[half:])
            return first, end, n1 + n2
        result = self.log.append(batch)
        return result.base_offset, result.last_offset + 1, len(batch)

    # -- deliver -------------------------------------------------------------------------------

    def deliver_next(self) -> Delivery | None:
        """Take the first ready message (in offset order; by priority level in PriorityQueue, whose
        ``_take`` decides), mark it in flight, read it from the log. Expired heads are dropped on the way
        (never delivered). None if nothing is ready. Hot path."""
        while True:
            taken = self._take()
            if taken is None:
                return None
            offset, count = taken
            msg = self._read(offset)
            if (self._featured or msg.headers is not None) and self._expired(offset, msg):
                self._settle_dead(offset, msg, EXPIRED)
                continue
            self._inflight[offset] = count
            return Delivery(offset, msg, count, count > 1 or offset < self._recovered_end)

    def _expired(self, offset: int, msg: Message) -> bool:
        """Whether a message just taken from the ready set is past its expiry (and not one the last
        publish keeps deliverable to a waiting consumer, see ``_fresh``)."""
        exp = self.expiry_of(msg)
        return exp is not None and exp < self.clock.now_ms() and not self._fresh[0] <= offset < self._fresh[1]

    def expiry_of(self, msg: Message) -> int | None:
        """When ``msg`` expires in this queue (ms since the epoch), or None."""
        exp = msg.timestamp_ms + self.message_ttl if self.message_ttl is not None else None
        headers = msg.headers
        if headers is not None:
            own = headers.get(HDR_EXPIRES)
            if own is not None:
                try:
                    own_ms = int(own)
                except (TypeError, ValueError):
                    return exp
                if exp is None or own_ms < exp:
                    exp = own_ms
        return exp

    def _take(self) -> tuple[int, int] | None:
        """Remove the next ready offset from the ready set: (offset, delivery count so far + 1)."""
        requeued = self._requeued
        ready = self._ready
        if requeued and (not ready or requeued[0] < ready[0][0]):
            offset = heapq.heappop(requeued)
            count = self._counts.pop(offset, 0) + 1
        elif ready:
            run = ready[0]
            offset = run[0]
            if offset + 1 == run[1]:
                ready.popleft()
            else:
                run[0] = offset + 1
            self._ready_count -= 1
            count = 1
        else:
            return None
        if self._sizes is not None:
            self._ready_bytes -= self._sizes.pop(offset, 0)
        return offset, count

    def peek_offset(self) -> int | None:
        """The offset ``deliver_next`` would take, without taking it."""
        requeued = self._requeued
        ready = self._ready
        if requeued and (not ready or requeued[0] < ready[0][0]):
            return requeued[0]
        return ready[0][0] if ready else None

    def next_expiry(self) -> int | None:
        """When the head message expires (ms since the epoch), or None (no head, or it never expires).
        Only the head expires (RabbitMQ ttl.html), so this is when ``expire_head`` has work."""
        if not self.timed:
            return None
        offset = self.peek_offset()
        return None if offset is None else self.expiry_of(self._read(offset))

    def expire_head(self, now_ms: int | None = None) -> int:
        """Drop expired messages at the head (``now >= expiry``), dead-lettering them (reason
        expired). Returns how many."""
        if not self.timed:
            return 0
        self._fresh = (0, 0)
        now = self.clock.now_ms() if now_ms is None else now_ms
        n = 0
        while True:
            offset = self.peek_offset()
            if offset is None:
                break
            msg = self._read(offset)
            exp = self.expiry_of(msg)
            if exp is None or exp > now:
                break
            self._take()
            self._settle_dead(offset, msg, EXPIRED)
            n += 1
        if self._timed_for_recovery:
            self._end_recovery_timing()
        return n

    def _settle_dead(self, offset: int, msg: Message, reason: str) -> None:
        """A message taken from the ready set dies: settle it and hand it to the dead-letter exchange."""
        self._counts.pop(offset, None)
        self.acks.ack(offset)
        self._dead(msg, reason)

    def _dead(self, msg: Message, reason: str) -> None:
        if self.dead_letter_exchange is None:
            return  # no DLX: the message is dropped
        first = not self.dead_letters
        self.dead_letters.append((Message(msg.routing_key, bytes(msg.body), msg.headers, bytes(msg.properties),
                                          msg.timestamp_ms, msg.exchange), reason))
        if first and self.on_dead is not None:
            self.on_dead(self)

    def take_dead_letters(self) -> list[tuple[Message, str]]:
        """The messages that died here since the last call, with their reasons."""
        out, self.dead_letters = self.dead_letters, []
        return out

    def _drop_recent(self) -> None:
        self._recent.clear()
        _recent_total[0] -= self._recent_bytes
        self._recent_bytes = 0

    def _read(self, offset: int) -> Message:
        """The message at ``offset``: from the recent cache (the ``Message`` objects of recent appends: no
        decoding of what was just encoded), else from the last decoded batch, else from the log. Reading
        past the oldest kept append drops it: delivery has moved beyond it (what comes back later,
        requeued, is read from the log). Hot path."""
        recent = self._recent
        while recent:
            entry = recent[0]
            if offset < entry[0]:
                break
            if offset < entry[1]:
                return entry[2][offset - entry[0]]
            recent.popleft()
            self._recent_bytes -= entry[3]
            _recent_total[0] -= entry[3]
        if self._cache_base <= offset < self._cache_end:
            msg = self._cache.get(offset)
            if msg is not None:
                return msg
        reader = self._reader
        fresh = (reader is None or offset < self._reader_next
                 or offset >= self._reader_next + READER_RESTART_GAP)
        while True:
            if fresh:
                reader = self._reader = self.log.batches(offset)
            for h, view in reader:  # type: ignore[union-attr]
                end = h.base_offset + h.last_offset_delta + 1
                self._reader_next = end
                if end <= offset:
                    continue  # a batch before the one we need (read-ahead over a small gap)
                self._cache = dict(batch_to_messages(view, validate=False))
                self._cache_base, self._cache_end = h.base_offset, end
                msg = self._cache.get(offset)
                if msg is not None:
                    return msg
                break
            self._reader = None  # exhausted: it stopped at the end offset it saw
            if fresh:
                raise LookupError(f"queue {self.name!r}: offset {offset} not in {self.log.path}")
            fresh = True  # the old reader ended before later appends: retry from the offset

    # -- settle --------------------------------------------------------------------------------

    def ack(self, offset: int) -> bool:
        """Settle a delivered message. False if ``offset`` is not in flight. Hot path."""
        if self._inflight.pop(offset, None) is None:
            return False
        self.acks.ack(offset)
        return True

    def reject(self, offset: int, requeue: bool) -> Delivery | None:
        """basic.reject / basic.nack of one delivered message. ``requeue``: back to its original
        position, returns None. Otherwise settled as dead (dead-lettered with reason rejected when the
        queue has a DLX) and returned. Raises KeyError if ``offset`` is not in flight."""
        count = self._inflight.pop(offset, None)
        if count is None:
            raise KeyError(f"offset {offset} is not in flight on queue {self.name!r}")
        if requeue:
            self._give_back(offset, count)
            return None
        message = self._read(offset)
        self.acks.ack(offset)
        self._dead(message, REJECTED)
        return Delivery(offset, message, count, True)

    def _give_back(self, offset: int, count: int) -> None:
        self._counts[offset] = count
        heapq.heappush(self._requeued, offset)
        if self._sizes is not None:
            self._add_size(offset, self._read(offset))

    def requeue(self, offsets: Iterable[int]) -> int:
        """Give back in-flight messages (a consumer or channel went away: basic.recover, close).
        Unknown offsets are ignored; returns how many were requeued."""
        n = 0
        for offset in offsets:
            count = self._inflight.pop(offset, None)
            if count is not None:
                self._give_back(offset, count)
                n += 1
        return n

    def purge(self) -> int:
        """queue.purge: settle every ready message (in-flight ones stay). Returns how many."""
        n = self.message_count
        ack = self.acks.ack
        for start, end in self._ready:
            for offset in range(start, end):
                ack(offset)
        for offset in self._requeued:
            ack(offset)
            self._counts.pop(offset, None)
        self._ready.clear()
        self._requeued.clear()
        self._ready_count = 0
        self._drop_recent()
        if self._sizes is not None:
            self._sizes.clear()
            self._ready_bytes = 0
        return n

    # -- housekeeping --------------------------------------------------------------------------

    def flush(self) -> None:
        """Write dirty ack bitmaps to the page cache (once per loop turn or so)."""
        self.acks.flush()

    def collect(self) -> int:
        """Delete fully settled segments; returns how many. Flushes acks first."""
        self.acks.flush()
        deleted = self.acks.collect()
        if deleted:
            self._reader = None  # it may hold a deleted segment's chunk; harmless, but start afresh
        return deleted

    def close(self) -> None:
        """Flush and fsync acks, close the log. In-flight messages become ready on the next open.
        Blocks."""
        self._reader = None
        self._drop_recent()
        self.acks.close()
        self.log.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, ready={self.message_count}, "
                f"unacked={self.unacked_count}, log={self.log.path!r})")


class PriorityQueue(Queue):
    """A queue with ``x-max-priority``: one ready set per priority level over the one log.

    Each level is ``[runs, requeue heap]`` as the plain queue's ready set; delivery takes from the highest
    non-empty level (its smallest offset), so within a level order is publish order and a requeued
    message goes back to its place in its level. ``_ready_count`` counts every level (``_requeued`` of
    the base class stays empty). The priority of a message is its ``HDR_PRIORITY`` header, capped at
    ``max_priority``; none is 0 (RabbitMQ priority.html). Recovery reads each unsettled message's header.
    """

    def __init__(self, name: str, log: Log, acks: QueueAcks, clock: Clock, **kw: Any) -> None:
        mp = _int_arg(kw.get("arguments") or {}, "x-max-priority")
        self.max_priority = max(0, min(255, mp or 0))
        self._levels: list[tuple[deque[list[int]], list[int]]] = [
            (deque(), []) for _ in range(self.max_priority + 1)]
        super().__init__(name, log, acks, clock, **kw)

    def _priority(self, msg: Message) -> int:
        headers = msg.headers
        if headers is None:
            return 0
        p = headers.get(HDR_PRIORITY)
        if p is None:
            return 0
        try:
            p = int(p)
        except (TypeError, ValueError):
            return 0
        return min(max(p, 0), self.max_priority)

    def _rebuild(self) -> None:
        count = 0
        for off in self.acks.unacked_offsets():
            msg = self._read(off)
            self._push_run(self._levels[self._priority(msg)][0], off)
            if self._sizes is not None:
                self._add_size(off, msg)
            count += 1
        self._ready_count = count
        if count and not self.timed:
            self.mark_timed()
            self._timed_for_recovery = True

    def _lowest_ready(self) -> int | None:
        low = None
        for runs, heap in self._levels:
            for cand in (runs[0][0] if runs else None, heap[0] if heap else None):
                if cand is not None and (low is None or cand < low):
                    low = cand
        return low

    @staticmethod
    def _push_run(runs: deque[list[int]], off: int) -> None:
        if runs and runs[-1][1] == off:
            runs[-1][1] = off + 1
        else:
            runs.append([off, off + 1])

    def _make_ready(self, first: int, end: int, messages: Sequence[Message]) -> None:
        levels = self._levels
        prio = self._priority
        for off, msg in zip(range(first, end), messages):
            self._push_run(levels[prio(msg)][0], off)
        self._ready_count += end - first

    def _level(self) -> tuple[deque[list[int]], list[int]] | None:
        for level in reversed(self._levels):
            if level[0] or level[1]:
                return level
        return None

    def peek_offset(self) -> int | None:
        level = self._level()
        if level is None:
            return None
        runs, heap = level
        if heap and (not runs or heap[0] < runs[0][0]):
            return heap[0]
        return runs[0][0]

    def _take(self) -> tuple[int, int] | None:
        level = self._level()
        if level is None:
            return None
        runs, heap = level
        if heap and (not runs or heap[0] < runs[0][0]):
            offset = heapq.heappop(heap)
            count = self._counts.pop(offset, 0) + 1
        else:
            run = runs[0]
            offset = run[0]
            if offset + 1 == run[1]:
                runs.popleft()
            else:
                run[0] = offset + 1
            count = 1
        self._ready_count -= 1
        if self._sizes is not None:
            self._ready_bytes -= self._sizes.pop(offset, 0)
        return offset, count

    def _give_back(self, offset: int, count: int) -> None:
        self._counts[offset] = count
        msg = self._read(offset)
        heapq.heappush(self._levels[self._priority(msg)][1], offset)
        self._ready_count += 1
        if self._sizes is not None:
            self._add_size(offset, msg)

    def purge(self) -> int:
        n = self._ready_count
        ack = self.acks.ack
        for runs, heap in self._levels:
            for start, end in runs:
                for offset in range(start, end):
                    ack(offset)
            for offset in heap:
                ack(offset)
                self._counts.pop(offset, None)
            runs.clear()
            heap.clear()
        self._ready_count = 0
        self._drop_recent()
        if self._sizes is not None:
            self._sizes.clear()
            self._ready_bytes = 0
        return n
