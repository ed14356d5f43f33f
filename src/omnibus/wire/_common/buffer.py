"""A receive buffer for sans-IO codecs of length-prefixed binary frames (AMQP, Kafka).

Strategy (after wsproto's ``frame_protocol.Buffer``): bytes are appended with :meth:`feed`; a parser
reads with :meth:`consume_exactly` / :meth:`consume_at_most` and then either :meth:`commit`s what it read
(the frame was whole) or :meth:`rollback`s to the last commit (the frame is not complete yet, wait for
more bytes). Consumed bytes are dropped lazily, so a burst of small frames costs one ``del`` per commit
batch, not one per frame.

Rules: never awaits, never touches a socket or a clock. Returned slices are ``bytes`` copies of exactly
the requested length, so a caller can keep them after the buffer moves on.
"""

from __future__ import annotations

__all__ = ["Buffer"]

#: Drop consumed bytes from the front of the buffer once this many have piled up. Small enough to keep
#: memory flat under a stream of small frames, large enough that we rarely move the tail.
COMPACT_THRESHOLD = 64 * 1024


class Buffer:
    """Byte buffer with a read cursor and commit/rollback. Single-threaded; not shared between connections."""

    __slots__ = ("_data", "_committed", "_pos")

    def __init__(self, initial: bytes = b"") -> None:
        self._data = bytearray(initial)
        self._committed = 0  # bytes before this index are consumed for good
        self._pos = 0  # read cursor, >= _committed

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        self._data += data

    def __len__(self) -> int:
        """Bytes available to read past the cursor."""
        return len(self._data) - self._pos

    def consume_exactly(self, n: int) -> bytes | None:
        """Read exactly ``n`` bytes, or return None (cursor unchanged) if fewer are buffered."""
        end = self._pos + n
        if end > len(self._data):
            return None
        out = bytes(self._data[self._pos:end])
        self._pos = end
        return out

    def consume_at_most(self, n: int) -> bytes:
        """Read up to ``n`` bytes (possibly empty)."""
        end = min(self._pos + n, len(self._data))
        out = bytes(self._data[self._pos:end])
        self._pos = end
        return out

    def peek(self, n: int) -> bytes | None:
        """Look at the next ``n`` bytes without moving the cursor, or None if fewer are buffered."""
        end = self._pos + n
        if end > len(self._data):
            return None
        return bytes(self._data[self._pos:end])

    def commit(self) -> None:
        """Forget everything read so far; a later rollback returns here."""
        self._committed = self._pos
        if self._committed >= COMPACT_THRESHOLD or self._committed == len(self._data):
            del self._data[: self._committed]
            self._pos -= self._committed
            self._committed = 0

    def rollback(self) -> None:
        """Move the cursor back to the last commit (the frame was incomplete)."""
        self._pos = self._committed
