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
    delivering a batch of N messages decodes it once.

Rules
    * Delivery counts are per offset and per process (not persisted); the first delivery has count 1.
    * ``reject(requeue=False)`` settles the message and returns it, so a dead-letter exchange can route
      it; the queue does not know exchanges.
    * Queue arguments (TTL, max-length, DLX) are stored, not yet enforced here.
    * Time comes from the injected clock (record timestamps).

Concurrency: event-loop thread only (same thread as the log). ``close`` blocks (fsync).
Hot paths: ``publish``, ``deliver_next``, ``ack``. No dedicated queue benchmark yet (the codec and
log underneath are measured by ``python bench/storage.py``); time a publish/deliver/ack loop before
and after changing them.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from omnibus.core.clock import Clock
from omnibus.core.messages import Message, batch_to_messages, messages_to_batch
from omnibus.storage.acks import QueueAcks
from omnibus.storage.log import Log
from omnibus.storage.records import BatchHeader

__all__ = ["Delivery", "Queue", "READER_RESTART_GAP"]

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

    # -- counts --------------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """Ready messages (what AMQP queue.declare-ok reports)."""
        return self._ready_count + len(self._requeued)

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

    def publish(self, messages: Sequence[Message]) -> range:
        """Append ``messages`` as one batch (split only if it exceeds the log's max batch size) and
        make them ready. Returns their offsets. Hot path."""
        if not messages:
            return range(0)
        first, end = self._append(messages)
        ready = self._ready
        if ready and ready[-1][1] == first:
            ready[-1][1] = end
        else:
            ready.append([first, end])
        self._ready_count += end - first
        return range(first, end)

    def _append(self, messages: Sequence[Message]) -> tuple[int, int]:
        batch = messages_to_batch(messages, now_ms=self.clock.now_ms())
        if len(batch) > self.log.config.max_batch_bytes and len(messages) > 1:
            half = len(messages) // 2
            first, _ = self._append(messages[:half])
            _, end = self._append(messages[half:])
            return first, end
        result = self.log.append(batch)
        return result.base_offset, result.last_offset + 1

    # -- deliver -------------------------------------------------------------------------------

    def deliver_next(self) -> Delivery | None:
        """Take the first ready message (in offset order), mark it in flight, read it from the log.
        None if nothing is ready. Hot path."""
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
        self._inflight[offset] = count
        return Delivery(offset, self._read(offset), count,
                        count > 1 or offset < self._recovered_end)

    def _read(self, offset: int) -> Message:
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
        position, returns None. Otherwise settled as dead and returned (offset, message, count) for
        a dead-letter exchange to route. Raises KeyError if ``offset`` is not in flight."""
        count = self._inflight.pop(offset, None)
        if count is None:
            raise KeyError(f"offset {offset} is not in flight on queue {self.name!r}")
        if requeue:
            self._counts[offset] = count
            heapq.heappush(self._requeued, offset)
            return None
        message = self._read(offset)
        self.acks.ack(offset)
        return Delivery(offset, message, count, True)

    def requeue(self, offsets: Iterable[int]) -> int:
        """Give back in-flight messages (a consumer or channel went away: basic.recover, close).
        Unknown offsets are ignored; returns how many were requeued."""
        n = 0
        for offset in offsets:
            count = self._inflight.pop(offset, None)
            if count is not None:
                self._counts[offset] = count
                heapq.heappush(self._requeued, offset)
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
        self.acks.close()
        self.log.close()

    def __repr__(self) -> str:
        return (f"Queue({self.name!r}, ready={self.message_count}, unacked={self.unacked_count}, "
                f"log={self.log.path!r})")
