"""The shared receive buffer: length-prefixed frames fed whole, byte by byte, and split at every index."""

import struct

from hypothesis import given, strategies as st

from omnibus.wire._common.buffer import COMPACT_THRESHOLD, Buffer


def read_frames(buf: Buffer) -> list[bytes]:
    """A tiny 4-byte-length-prefixed frame reader in the style the codecs use."""
    out = []
    while True:
        head = buf.consume_exactly(4)
        if head is None:
            buf.rollback()
            return out
        body = buf.consume_exactly(struct.unpack(">I", head)[0])
        if body is None:
            buf.rollback()
            return out
        buf.commit()
        out.append(body)


def encode(frames):
    return b"".join(struct.pack(">I", len(f)) + f for f in frames)


FRAMES = [b"", b"a", b"hello", bytes(range(256)) * 3]


def test_whole():
    buf = Buffer()
    buf.feed(encode(FRAMES))
    assert read_frames(buf) == FRAMES
    assert len(buf) == 0


def test_one_byte_at_a_time():
    buf, got = Buffer(), []
    for b in encode(FRAMES):
        buf.feed(bytes([b]))
        got += read_frames(buf)
    assert got == FRAMES


def test_split_at_every_index():
    data = encode(FRAMES)
    for i in range(len(data) + 1):
        buf = Buffer()
        buf.feed(data[:i])
        got = read_frames(buf)
        buf.feed(data[i:])
        got += read_frames(buf)
        assert got == FRAMES, i


@given(st.lists(st.binary(max_size=300), max_size=20), st.lists(st.integers(1, 50), min_size=1))
def test_random_chunking(frames, sizes):
    data, buf, got, i, k = encode(frames), Buffer(), [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        buf.feed(memoryview(data)[i:i + n])
        i, k = i + n, k + 1
        got += read_frames(buf)
    assert got == frames


def test_peek_consume_at_most_and_compaction():
    buf = Buffer(b"abc")
    assert buf.peek(2) == b"ab" and buf.peek(4) is None
    assert buf.consume_at_most(10) == b"abc"
    buf.commit()
    big = b"x" * (COMPACT_THRESHOLD + 10)
    buf.feed(big + b"tail")
    assert buf.consume_exactly(len(big)) == big
    buf.commit()
    assert len(buf._data) == 4  # consumed prefix dropped
    assert buf.consume_exactly(4) == b"tail"
