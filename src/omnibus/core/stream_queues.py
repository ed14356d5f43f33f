"""Stream queues (RabbitMQ ``x-queue-type=stream``): an append-only log that consumers read by offset.

Strategy
    The messages live in a ``Log`` exactly as a classic queue's do (one v2 batch per ``publish`` call), but
    nothing is ever settled: acks only give a consumer credit back (the session's business), and the log
    shrinks only by retention, whole segments at a time, as RabbitMQ streams do:

    * ``x-max-age`` ("7D", "12h", ...) -> the log's ``retention_ms`` (a segment goes once its newest
      message is older); ``x-stream-max-segment-size-bytes`` -> ``segment_bytes`` (RabbitMQ: 500 MB).
      :func:`log_overrides` maps them; the vhost opens the log with them. ``x-max-length-bytes`` is
      osiris's rule, not Kafka's (which the log implements): the oldest segments go while there is more
      than one and the stream is over the limit, so what stays is at most the limit (osiris_log
      eval_max_bytes). Retention runs when a publish starts a new segment (osiris evaluates it when it
      rolls a segment), at open, and on the broker's retention timer (age only).
    * A consumer keeps its own next offset; :meth:`StreamQueue.resolve` turns RabbitMQ's
      ``x-stream-offset`` specs into one ("first", "last" = the first offset of the last batch, as
      RabbitMQ's "last" is the last chunk, "next", an offset, a timestamp in ms, or an age).
    * :meth:`StreamQueue.read` returns the messages of the batch holding an offset, decoded once and
      cached, so consumers reading the same region share one decode.

Rules
    * No protocol here: specs arrive as Python values; the session validates and words errors.
    * ``message_count`` is 0, as RabbitMQ's rabbit_stream_queue:stat/1 reports for queue.declare-ok.
    * Event-loop thread only. ``close`` blocks (fsync).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omnibus.core.clock import Clock
from omnibus.core.messages import Message, batch_to_messages, messages_to_batch
from omnibus.storage.log import Log

__all__ = ["StreamQueue", "parse_max_age", "log_overrides", "is_stream", "STREAM_SEGMENT_BYTES"]

#: RabbitMQ's default x-stream-max-segment-size-bytes (500 MB).
STREAM_SEGMENT_BYTES = 500_000_000
#: rabbit_amqqueue unit_value_in_ms: Y = 365 days, M = 30 days.
_UNIT_MS = {"Y": 365 * 86_400_000, "M": 30 * 86_400_000, "D": 86_400_000, "h": 3_600_000, "m": 60_000,
            "s": 1000}
_AGE = re.compile(r"([0-9]+)([YMDhms])")


def parse_max_age(value: Any) -> int | None:
    """rabbit_amqqueue check_max_age: "<positive integer><Y|M|D|h|m|s>" in milliseconds, else None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    m = _AGE.fullmatch(value)
    if m is None or int(m.group(1)) <= 0:
        return None
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def is_stream(arguments: Mapping[str, Any] | None) -> bool:
    t = (arguments or {}).get("x-queue-type")
    return t == "stream" or t == b"stream"


def _int_arg(arguments: Mapping[str, Any], key: str) -> int | None:
    v = arguments.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def log_overrides(arguments: Mapping[str, Any]) -> dict[str, int]:
    """Log settings of a stream declared with ``arguments`` (unset ones: no limit)."""
    age = arguments.get("x-max-age")
    return {"retention_ms": parse_max_age(age) or -1 if age is not None else -1, "retention_bytes": -1,
            "segment_bytes": _int_arg(arguments, "x-stream-max-segment-size-bytes") or STREAM_SEGMENT_BYTES}


class StreamQueue:
    """A stream over ``log``; the queue owns the log (``close``). Event-loop thread only."""

    is_stream = True
    #: What the classic queues' feature hooks look at (core/queues.py: length limits, TTL, x-expires,
    #: single active consumer, dead-lettering); a stream has none of them.
    rejects = limited = timed = single_active_consumer = False
    expires = None
    dead_letters: tuple = ()
    on_dead = None
    last_used = 0

    def __init__(self, name: str, log: Log, clock: Clock, *, durable: bool = True, exclusive: bool = False,
                 auto_delete: bool = False, arguments: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.log = log
        self.clock = clock
        self.durable = durable
        self.exclusive = exclusive
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments or {})
        self._segment = -1  # base offset of the segment the last publish went to
        self.max_bytes = _int_arg(self.arguments, "x-max-length-bytes") or 0
        self._last_base = self._find_last_base()
        self._cache_base = 0
        self._cache_end = 0
        self._cache: list[tuple[int, Message]] = []
        self.enforce_retention()

    def _find_last_base(self) -> int:
        log = self.log
        if log.end_offset <= log.start_offset:
            return log.end_offset
        for h, _ in log.batches(log.end_offset - 1):
            return h.base_offset
        return log.end_offset  # pragma: no cover

    # -- counts (queue.declare-ok, management) -----------------------------------------------------
    @property
    def message_count(self) -> int:
        return 0

    @property
    def unacked_count(self) -> int:
        return 0

    def __len__(self) -> int:
        """Messages held (retention may have removed older ones)."""
        return self.log.end_offset - self.log.start_offset

    @property
    def first_offset(self) -> int:
        return self.log.start_offset

    @property
    def end_offset(self) -> int:
        return self.log.end_offset

    # -- publish -----------------------------------------------------------------------------------
    def publish(self, messages: Sequence[Message]) -> range:
        """Append ``messages`` as one batch (split if over the log's batch limit). Returns their offsets."""
        if not messages:
            return range(0)
        first, end = self._append(messages)
        segment = self.log.segment_base(end - 1)
        if segment != self._segment:  # a new segment: the older ones may now break retention
            self._segment = segment if segment is not None else -1
            self.enforce_retention()
        return range(first, end)

    def _append(self, messages: Sequence[Message]) -> tuple[int, int]:
        batch = messages_to_batch(messages, now_ms=self.clock.now_ms())
        if len(batch) > self.log.config.max_batch_bytes and len(messages) > 1:
            half = len(messages) // 2
            first, _ = self._append(messages[:half])
            _, end = self._append(messages[half:])
            return first, end
        result = self.log.append(batch)
        self._last_base = result.base_offset
        return result.base_offset, result.last_offset + 1

    def enforce_retention(self) -> int:
        """x-max-age through the log; x-max-length-bytes as osiris_log eval_max_bytes. Returns how many
        segments went."""
        log = self.log
        deleted = log.enforce_retention()
        if self.max_bytes:
            segments = log.segments()
            total = sum(seg.size for seg in segments)
            for seg in segments[:-1]:
                if total <= self.max_bytes:
                    break
                log.delete_segment(seg.base_offset)
                total -= seg.size
                deleted += 1
        return deleted

    # -- read --------------------------------------------------------------------------------------
    def resolve(self, spec: Any) -> int:
        """The first offset a consumer reads for ``spec``: "first", "last", "next", an int offset
        (clamped into the log), ("timestamp", ms) or ("age", ms)."""
        log = self.log
        start, end = log.start_offset, log.end_offset
        if spec == "first":
            return start
        if spec == "last":
            return max(start, min(self._last_base, end))
        if spec == "next":
            return end
        if isinstance(spec, tuple):
            kind, ms = spec
            ts = ms if kind == "timestamp" else self.clock.now_ms() - ms
            found = log.offset_for_timestamp(ts)
            return end if found is None else found
        return max(start, min(int(spec), end))

    def read(self, offset: int) -> list[tuple[int, Message]]:
        """The messages at ``offset`` and after it in the same batch (offset order); [] at the end. An
        offset removed by retention reads from the first one kept."""
        if self._cache_base <= offset < self._cache_end:
            return [pair for pair in self._cache if pair[0] >= offset]
        log = self.log
        offset = max(offset, log.start_offset)
        if offset >= log.end_offset:
            return []
        for h, view in log.batches(offset):
            self._cache = batch_to_messages(view, validate=False)
            self._cache_base, self._cache_end = h.base_offset, h.base_offset + h.last_offset_delta + 1
            return [pair for pair in self._cache if pair[0] >= offset]
        return []

    # -- what classic queues answer; a stream settles nothing --------------------------------------
    def deliver_next(self) -> None:
        return None

    def ack(self, offset: int) -> bool:
        return True

    def reject(self, offset: int, requeue: bool) -> None:
        return None

    def requeue(self, offsets: Iterable[int]) -> int:
        return 0

    def in_flight(self) -> tuple[int, ...]:
        return ()

    def flush(self) -> None:
        pass

    def touch(self) -> None:
        pass

    def mark_timed(self) -> None:
        pass

    def collect(self) -> int:
        return self.enforce_retention()

    def close(self) -> None:
        self._cache = []
        self.log.close()

    def __repr__(self) -> str:
        return f"StreamQueue({self.name!r}, offsets=[{self.log.start_offset}, {self.log.end_offset}))"
