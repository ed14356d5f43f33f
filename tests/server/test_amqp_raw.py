"""The AMQP 0-9-1 listener on raw sockets: bad input gets the answer RabbitMQ 3.10 gives, and the broker
keeps serving everyone else.

Every expected reply here (code, text, class/method ids, and whether the socket is then closed) was
checked by running the same bytes against RabbitMQ 3.10.8 (Debian's ``rabbitmq-server``):
``OMNIBUS_AMQP_AGAINST=rabbitmq pytest tests/server/test_amqp_raw.py`` starts a node with
``bench/_servers.RabbitServer`` and re-checks them all. Where RabbitMQ's answer is not one a test can
pin down (it resets the socket instead of answering), the test says so and asserts what both do.

Each test also has a *bystander*: a connection opened before the bad client, with a channel, a queue and
a consumer, which must still publish and receive afterwards; and after the bad client a brand-new
connection must still declare, publish (with a confirm) and consume. Frames are built and read with
pamqp, an encoder/decoder independent of ours. Every socket read has a deadline: a test fails rather
than hangs.
"""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid

import pytest
from pamqp import body as pbody
from pamqp import commands as pc
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp import heartbeat as pheartbeat

from bench._servers import RabbitServer, rabbitmq_server_binary

AGAINST = os.environ.get("OMNIBUS_AMQP_AGAINST", "omnibus").strip().lower() or "omnibus"
if AGAINST not in ("omnibus", "rabbitmq"):
    raise pytest.UsageError(f"OMNIBUS_AMQP_AGAINST={AGAINST!r}: expected 'omnibus' or 'rabbitmq'")

READ_TIMEOUT = 5.0
HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_MAX = 131072
#: How long the broker may take to close the socket after it has said connection.close (and, where it
#: waits for one, got our close-ok). Omnibus closes at once.
DROP_WITHIN = 2.0
#: After a fatal frame error (bad frame end, frame over frame_max) the stream has lost sync: RabbitMQ
#: sends connection.close, ignores everything after, close-ok included, and closes the socket 3 s later
#: (observed: 3.0 s); Omnibus closes it at once, without waiting for close-ok either.
FATAL_DROP_WITHIN = 4.0


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    if AGAINST == "rabbitmq":
        if rabbitmq_server_binary() is None:
            pytest.fail("OMNIBUS_AMQP_AGAINST=rabbitmq but rabbitmq-server is not installed "
                        "(apt-get install rabbitmq-server)")
        with RabbitServer() as r:
            yield r.port
        return
    from omnibus import SyncBroker

    with SyncBroker(tmp_path_factory.mktemp("amqp-raw")) as b:
        yield b.port("amqp")


def raw_frame(ftype: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", ftype, channel, len(payload)) + payload + end


def mf(channel: int, method) -> bytes:
    return pframe.marshal(method, channel)


def content(channel: int, body: bytes, props: pc.Basic.Properties | None = None) -> bytes:
    out = [pframe.marshal(pheader.ContentHeader(0, len(body), props or pc.Basic.Properties()), channel)]
    if body:
        out.append(pframe.marshal(pbody.ContentBody(body), channel))
    return b"".join(out)


def publish(channel: int, exchange: str, routing_key: str, body: bytes, **kw) -> bytes:
    return mf(channel, pc.Basic.Publish(exchange=exchange, routing_key=routing_key, **kw)) + content(channel, body)


def qname(prefix: str = "raw") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Raw:
    """One client socket speaking AMQP frames; every read has a deadline."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        if self.eof:
            return False
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def raw(self, n: int, timeout: float = READ_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n and time.monotonic() < deadline and self._fill(deadline):
            pass
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def frame(self, timeout: float = READ_TIMEOUT):
        """(channel, pamqp frame object), or None on EOF/timeout. Heartbeats are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 7:
                size = struct.unpack_from(">I", self.buf, 3)[0]
                if len(self.buf) >= 8 + size:
                    data = bytes(self.buf[:8 + size])
                    del self.buf[:8 + size]
                    _, ch, obj = pframe.unmarshal(data)
                    if isinstance(obj, pheartbeat.Heartbeat):
                        continue
                    return ch, obj
            if time.monotonic() >= deadline or not self._fill(deadline):
                return None

    def expect(self, cls, channel: int | None = None):
        got = self.frame()
        assert got is not None, f"expected {cls.__name__}, got EOF/timeout"
        ch, obj = got
        assert isinstance(obj, cls), f"expected {cls.__name__}, got {obj!r} on channel {ch}"
        if channel is not None:
            assert ch == channel, (ch, obj)
        return obj

    def handshake(self, frame_max: int = FRAME_MAX, channel_max: int = 2047) -> "Raw":
        self.send(HEADER)
        self.expect(pc.Connection.Start, 0)
        self.send(mf(0, pc.Connection.StartOk(client_properties={"product": "raw-test", "capabilities": {
            "publisher_confirms": True, "consumer_cancel_notify": True, "basic.nack": True}},
            mechanism="PLAIN", response="\0guest\0guest")))
        self.expect(pc.Connection.Tune, 0)
        self.send(mf(0, pc.Connection.TuneOk(channel_max=channel_max, frame_max=frame_max, heartbeat=0)))
        self.send(mf(0, pc.Connection.Open(virtual_host="/")))
        self.expect(pc.Connection.OpenOk, 0)
        return self

    def open_channel(self, ch: int) -> None:
        self.send(mf(ch, pc.Channel.Open()))
        self.expect(pc.Channel.OpenOk, ch)

    def expect_close(self, channel: int = 0):
        """The next frame must be connection.close (channel 0) or channel.close; returns
        (reply_code, reply_text, class_id, method_id)."""
        cls = pc.Connection.Close if channel == 0 else pc.Channel.Close
        m = self.expect(cls, channel)
        return m.reply_code, m.reply_text, m.class_id, m.method_id

    def dropped(self, within: float = DROP_WITHIN) -> bool:
        """True when the broker closes the socket within ``within`` seconds (nothing else may arrive)."""
        deadline = time.monotonic() + within
        while not self.eof and time.monotonic() < deadline:
            if self._fill(deadline):
                pytest.fail(f"unexpected bytes before the close: {bytes(self.buf)[:200]!r}")
        return self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def opened(port: int, *channels: int) -> Raw:
    r = Raw(port).handshake()
    for ch in channels or (1,):
        r.open_channel(ch)
    return r


def close_ok_then_dropped(r: Raw) -> None:
    """After a connection.close from the broker: our close-ok ends the connection (RabbitMQ closes the
    socket once it has it)."""
    r.send(mf(0, pc.Connection.CloseOk()))
    assert r.dropped(), "the broker kept the socket open after close-ok"


def round_trip(r: Raw, ch: int, queue: str, body: bytes, tag: str, confirm: bool = True) -> None:
    """Publish ``body`` to ``queue`` (with a confirm when ``confirm``) and receive it on consumer ``tag``;
    ack it. The confirm and the delivery may come in either order (RabbitMQ confirms a transient message
    after it is enqueued, which may be after the delivery went out)."""
    r.send(publish(ch, "", queue, body))
    acked = not confirm
    deliver = None
    got = b""
    while not (acked and deliver is not None and len(got) == len(body)):
        f = r.frame()
        assert f is not None, f"EOF/timeout (acked={acked}, deliver={deliver!r}, {len(got)} body bytes)"
        c, obj = f
        assert c == ch, (c, obj)
        if isinstance(obj, pc.Basic.Ack):
            acked = True
        elif isinstance(obj, pc.Basic.Deliver):
            assert deliver is None and obj.consumer_tag == tag and obj.routing_key == queue, obj
            deliver = obj
        elif isinstance(obj, pheader.ContentHeader):
            assert deliver is not None and obj.body_size == len(body)
        elif isinstance(obj, pbody.ContentBody):
            got += obj.value
        else:
            pytest.fail(f"unexpected {obj!r}")
    assert got == body
    r.send(mf(ch, pc.Basic.Ack(delivery_tag=deliver.delivery_tag)))


class Bystander:
    """A good connection with a confirm channel consuming its own queue; ``check()`` proves it still works."""

    def __init__(self, port: int) -> None:
        self.r = opened(port, 1)
        self.queue = qname("bystander")
        r = self.r
        r.send(mf(1, pc.Queue.Declare(queue=self.queue, exclusive=True)))
        r.expect(pc.Queue.DeclareOk, 1)
        r.send(mf(1, pc.Confirm.Select()))
        r.expect(pc.Confirm.SelectOk, 1)
        r.send(mf(1, pc.Basic.Consume(queue=self.queue, consumer_tag="by")))
        r.expect(pc.Basic.ConsumeOk, 1)
        self.n = 0

    def check(self) -> None:
        self.n += 1
        round_trip(self.r, 1, self.queue, b"still here %d" % self.n, "by")

    def close(self) -> None:
        self.r.send(mf(0, pc.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)))
        self.r.expect(pc.Connection.CloseOk, 0)
        self.r.close()


def fresh_connection_works(port: int) -> None:
    """A new connection declares a queue, publishes with a confirm, consumes and acks, and closes."""
    r = opened(port, 1)
    q = qname("fresh")
    r.send(mf(1, pc.Queue.Declare(queue=q, auto_delete=True)))
    r.expect(pc.Queue.DeclareOk, 1)
    r.send(mf(1, pc.Confirm.Select()))
    r.expect(pc.Confirm.SelectOk, 1)
    r.send(mf(1, pc.Basic.Consume(queue=q, consumer_tag="fresh")))
    r.expect(pc.Basic.ConsumeOk, 1)
    round_trip(r, 1, q, b"x" * 5000, "fresh")
    r.send(mf(0, pc.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0)))
    r.expect(pc.Connection.CloseOk, 0)
    r.close()


@pytest.fixture
def bystander(port):
    b = Bystander(port)
    b.check()
    yield b
    b.check()  # the broker still serves the connection that was there all along ...
    b.close()
    fresh_connection_works(port)  # ... and a new one


# -- connection-level bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x09\x02", b"AMQP\x00\x00\x08\x00", b"AMQP\x01\x01\x00\x0a",
                                    b"GET / HTTP/1.1\r\n\r\n"], ids=["0-9-2", "0-8", "1-1-0-10", "http"])
def test_bad_protocol_header_gets_ours_back_then_close(port, bystander, header):
    r = Raw(port)
    r.send(header)
    assert r.raw(8) == HEADER
    assert r.dropped()
    r.close()


def test_header_0_9_is_served_as_0_9_1(port, bystander):
    # RabbitMQ accepts the 0-9 header ("AMQP" 1 1 0 9) and speaks 0-9-1 (rabbit_reader handshake)
    r = Raw(port)
    r.send(b"AMQP\x01\x01\x00\x09")
    start = r.expect(pc.Connection.Start, 0)
    assert (start.version_major, start.version_minor) == (0, 9)
    r.close()


def test_wrong_frame_end_octet(port, bystander):
    r = opened(port, 1)
    r.send(mf(1, pc.Queue.Declare(queue="q1"))[:-1] + b"\xcd")
    assert r.expect_close() == (501, "FRAME_ERROR - type 1, all octets = <<0,50,0,10,0,0,2,113,49,0,0,0,0,0>>: "
                                     "{invalid_frame_end_marker,\n" + " " * 60 + "205}", 0, 0)
    assert r.dropped(FATAL_DROP_WITHIN)  # the stream lost sync: no close-ok awaited
    r.close()


def test_frame_over_frame_max_is_refused_from_its_header(port, bystander):
    r = opened(port, 1)
    r.send(struct.pack(">BHI", 1, 1, FRAME_MAX + 1))  # the payload never comes
    assert r.expect_close() == (501, "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,131073,131064}",
                                0, 0)
    assert r.dropped(FATAL_DROP_WITHIN)
    r.close()


def test_frame_over_the_negotiated_smaller_frame_max(port, bystander):
    r = Raw(port).handshake(frame_max=4096)
    r.open_channel(1)
    q = qname()
    r.send(mf(1, pc.Queue.Declare(queue=q, exclusive=True)))
    r.expect(pc.Queue.DeclareOk, 1)
    # a body frame of 4097 bytes (payload) is over the frame_max of 4096 this client asked for
    r.send(mf(1, pc.Basic.Publish(exchange="", routing_key=q)) +
           pframe.marshal(pheader.ContentHeader(0, 5000, pc.Basic.Properties()), 1) +
           raw_frame(3, 1, b"y" * 4097))
    assert r.expect_close() == (501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}", 0, 0)
    assert r.dropped(FATAL_DROP_WITHIN)
    r.close()


def test_errors_before_tune_ok_close_without_a_word(port, bystander):
    # RabbitMQ answers nothing before tune-ok (states starting/securing/tuning: rabbit_reader
    # handshake_error) and closes the socket 3 s later; Omnibus closes it at once
    for data in (raw_frame(1, 0, b"\x00\x0a\x00\x0b" + b"\x00" * 4093),  # 4097 > 4096 until tune-ok
                 raw_frame(1, 0, b"\x00\x0a\x00\x0b", b"\x00"),  # bad frame end
                 raw_frame(9, 0, b""),  # unknown frame type
                 mf(1, pc.Channel.Open())):  # a channel before the connection is open
        r = Raw(port)
        r.send(HEADER)
        r.expect(pc.Connection.Start, 0)
        r.send(data)
        assert r.frame(timeout=FATAL_DROP_WITHIN) is None and r.eof, data
        r.close()


def _start_ok(password: str, capabilities: dict) -> bytes:
    return mf(0, pc.Connection.StartOk(client_properties={"product": "raw-test", "capabilities": capabilities},
                                       mechanism="PLAIN", response=f"\0guest\0{password}"))


def test_bad_password(port, bystander):
    r = Raw(port)
    r.send(HEADER)
    r.expect(pc.Connection.Start, 0)
    r.send(_start_ok("wrong", {"authentication_failure_close": True}))
    assert r.expect_close() == (403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                                     "For details see the broker logfile.", 0, 0)
    r.close()
    # a client that does not announce authentication_failure_close just sees the socket close
    r = Raw(port)
    r.send(HEADER)
    r.expect(pc.Connection.Start, 0)
    r.send(_start_ok("wrong", {}))
    assert r.frame(timeout=FATAL_DROP_WITHIN) is None and r.eof
    r.close()


def test_unknown_vhost(port, bystander):
    r = Raw(port)
    r.send(HEADER)
    r.expect(pc.Connection.Start, 0)
    r.send(_start_ok("guest", {}))
    r.expect(pc.Connection.Tune, 0)
    r.send(mf(0, pc.Connection.TuneOk(channel_max=10, frame_max=FRAME_MAX, heartbeat=0)) +
           mf(0, pc.Connection.Open(virtual_host="nope")))
    assert r.expect_close() == (530, "NOT_ALLOWED - vhost nope not found", 10, 40)
    close_ok_then_dropped(r)
    r.close()


def test_errors_after_tune_ok_before_open_are_answered(port, bystander):
    r = Raw(port)
    r.send(HEADER)
    r.expect(pc.Connection.Start, 0)
    r.send(_start_ok("guest", {}))
    r.expect(pc.Connection.Tune, 0)
    r.send(mf(0, pc.Connection.TuneOk(channel_max=10, frame_max=FRAME_MAX, heartbeat=0)) + mf(1, pc.Channel.Open()))
    assert r.expect_close() == (505, "UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,1,48>>", 0, 0)
    r.close()


@pytest.mark.parametrize("name, frames, reply", [
    ("content header without method", lambda: pframe.marshal(pheader.ContentHeader(0, 5, pc.Basic.Properties()), 1),
     (505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)),
    ("content body without method", lambda: raw_frame(3, 1, b"hello"),
     (505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)),
    ("body right after publish", lambda: mf(1, pc.Basic.Publish(exchange="", routing_key="q")) + raw_frame(3, 1, b"x"),
     (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", 60, 40)),
    ("method inside content", lambda: mf(1, pc.Basic.Publish(exchange="", routing_key="q")) +
     pframe.marshal(pheader.ContentHeader(0, 10, pc.Basic.Properties()), 1) + raw_frame(3, 1, b"hello") +
     mf(1, pc.Queue.Declare(queue="q1")),
     (505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40)),
    ("content header on channel 0", lambda: pframe.marshal(pheader.ContentHeader(0, 5, pc.Basic.Properties()), 0),
     (505, "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,5,0,0>>", 0, 0)),
    ("header for another class", lambda: mf(1, pc.Basic.Publish(exchange="", routing_key="q")) +
     raw_frame(2, 1, struct.pack(">HHQH", 50, 0, 5, 0)),
     (505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60, 40)),
])
def test_content_out_of_place(port, bystander, name, frames, reply):
    r = opened(port, 1)
    r.send(frames())
    assert r.expect_close() == reply
    close_ok_then_dropped(r)
    r.close()


def test_method_on_unopened_channel(port, bystander):
    r = opened(port, 1)
    r.send(mf(2, pc.Queue.Declare(queue="q1")))
    assert r.expect_close() == (504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)
    close_ok_then_dropped(r)
    r.close()


def test_publish_on_unopened_channel(port, bystander):
    r = opened(port, 1)
    r.send(publish(7, "", "q", b"hello"))
    assert r.expect_close() == (504, "CHANNEL_ERROR - expected 'channel.open'", 60, 40)
    close_ok_then_dropped(r)
    r.close()


def test_channel_open_twice(port, bystander):
    r = opened(port, 1)
    r.send(mf(1, pc.Channel.Open()))
    assert r.expect_close() == (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    close_ok_then_dropped(r)
    r.close()


def _unknown_method(port: int, payload: bytes, reply: tuple) -> None:
    r = opened(port, 1)
    r.send(raw_frame(1, 1, payload))
    if AGAINST == "rabbitmq":
        # RabbitMQ 3.10's frame decoder has no clause for an unknown class or method id
        # (rabbit_framing_amqp_0_9_1:lookup_method_name): the reader crashes and the socket is closed
        # without a reply. We answer what the spec (and RabbitMQ's own error table) means: 540.
        assert r.frame(timeout=DROP_WITHIN) is None and r.eof
    else:
        assert r.expect_close() == reply
        close_ok_then_dropped(r)
    r.close()


def test_unknown_method_of_a_known_class(port, bystander):
    _unknown_method(port, b"\x00\x32\x00\x63", (540, "NOT_IMPLEMENTED - unknown method {50,99}", 50, 99))  # queue.<99>


def test_unknown_class(port, bystander):
    _unknown_method(port, b"\x00\x63\x00\x01", (540, "NOT_IMPLEMENTED - unknown method {99,1}", 99, 1))


def test_unknown_method_on_channel_zero(port, bystander):
    _unknown_method(port, b"\x00\x0a\x00\x63", (540, "NOT_IMPLEMENTED - unknown method {10,99}", 10, 99))


def test_method_frame_too_short_for_ids(port, bystander):
    r = opened(port, 1)
    r.send(raw_frame(1, 1, b"\x00\x32"))
    assert r.expect_close() == (501, "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame", 0, 0)
    close_ok_then_dropped(r)
    r.close()


def test_unknown_frame_type(port, bystander):
    r = opened(port, 1)
    r.send(raw_frame(9, 1, b"\x01\x02"))
    assert r.expect_close() == (501, "FRAME_ERROR - type 9, all octets = <<1,2>>: unknown_frame", 0, 0)
    close_ok_then_dropped(r)
    r.close()


def test_heartbeat_on_a_channel(port, bystander):
    r = opened(port, 1)
    r.send(raw_frame(8, 1, b""))
    assert r.expect_close() == (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0)
    close_ok_then_dropped(r)
    r.close()


# -- field tables ----------------------------------------------------------------------------------------

def _declare_with_table(table_bytes: bytes) -> bytes:
    """queue.declare of 'q1' whose arguments field is ``table_bytes`` verbatim."""
    return raw_frame(1, 1, b"\x00\x32\x00\x0a" + b"\x00\x00" + b"\x02q1" + b"\x00" + table_bytes)


@pytest.mark.parametrize("name, table, text", [
    ("table length beyond the frame", b"\x00\x00\xff\xff",
     "FRAME_ERROR - cannot decode <<0,0,2,113,49,0,0,0,255,255>>"),
    ("truncated long string in the table", b"\x00\x00\x00\x10\x01aS\x00\x00\x00\x01",
     "FRAME_ERROR - cannot decode <<0,0,2,113,49,0,0,0,0,16,1,97,83,0,0,0,1>>"),
    ("value length past the table's end", b"\x00\x00\x00\x08\x01aS\x00\x00\x00\x10",
     "FRAME_ERROR - cannot decode <<0,0,2,113,49,0,0,0,0,8,1,97,83,0,0,0,16>>"),
    ("nested table length beyond its parent", b"\x00\x00\x00\x08\x01aF\x00\x00\x7f\xff",
     "FRAME_ERROR - cannot decode <<0,0,2,113,49,0,0,0,0,8,1,97,70,0,0,127,255>>"),
])
def test_malformed_field_table(port, bystander, name, table, text):
    r = opened(port, 1)
    r.send(_declare_with_table(table))
    assert r.expect_close() == (501, text, 50, 10)
    close_ok_then_dropped(r)
    r.close()


def test_oversized_field_table_in_a_frame_over_frame_max(port, bystander):
    # a table bigger than the negotiated frame_max can only arrive in a frame over frame_max
    big = b"".join(b"\x04k%04dS\x00\x00\x04\x00" % i + b"v" * 1024 for i in range(140))
    frame = _declare_with_table(struct.pack(">I", len(big)) + big)
    assert len(frame) > FRAME_MAX
    r = opened(port, 1)
    r.send(frame)
    code, text, cid, mid = r.expect_close()
    assert (code, cid, mid) == (501, 0, 0)
    assert text == f"FRAME_ERROR - type 1, all octets = <<>>: {{frame_too_large,{len(frame) - 8},131064}}"
    assert r.dropped(FATAL_DROP_WITHIN)
    r.close()


def test_large_field_table_within_frame_max_is_fine(port, bystander):
    table = {f"x-k{i:03d}": "v" * 1000 for i in range(100)}  # ~100 KB of arguments, under frame_max
    r = opened(port, 1)
    q = qname()
    r.send(mf(1, pc.Queue.Declare(queue=q, exclusive=True, arguments=table)))
    assert r.expect(pc.Queue.DeclareOk, 1).queue == q
    r.close()


def test_bad_field_type_letter(port, bystander):
    r = opened(port, 1)
    r.send(_declare_with_table(b"\x00\x00\x00\x03\x01aZ"))
    if AGAINST == "rabbitmq":
        # RabbitMQ 3.10's table parser has no clause for an unknown type letter (function_clause in
        # rabbit_binary_parser:parse_table): the reader crashes, the socket closes without a reply
        assert r.frame(timeout=DROP_WITHIN) is None and r.eof
    else:
        assert r.expect_close() == (501, "FRAME_ERROR - cannot decode <<0,0,2,113,49,0,0,0,0,3,1,97,90>>", 50, 10)
        close_ok_then_dropped(r)
    r.close()


# -- channel errors: only the channel closes -------------------------------------------------------------

def test_publish_to_missing_exchange_closes_only_the_channel(port, bystander):
    r = opened(port, 1)
    r.send(publish(1, "no-such-exchange", "k", b"lost"))
    assert r.expect_close(1) == (404, "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'", 60, 40)
    r.send(mf(1, pc.Channel.CloseOk()))
    # the connection survives: the same channel number opens again and works
    r.open_channel(1)
    q = qname()
    r.send(mf(1, pc.Queue.Declare(queue=q, exclusive=True)))
    r.expect(pc.Queue.DeclareOk, 1)
    r.send(mf(1, pc.Confirm.Select()))
    r.expect(pc.Confirm.SelectOk, 1)
    r.send(mf(1, pc.Basic.Consume(queue=q, consumer_tag="c")))
    r.expect(pc.Basic.ConsumeOk, 1)
    round_trip(r, 1, q, b"after the error", "c")
    r.close()


X = pc.Exchange.Declare
Q = pc.Queue.Declare
#: (name, frames on channel 1 that set up and then break it, the channel.close RabbitMQ 3.10.8 sent)
CHANNEL_ERRORS = [
    ("passive declare of a missing queue", lambda q: [Q(queue=q, passive=True)],
     (404, "NOT_FOUND - no queue '{q}' in vhost '/'", 50, 10)),
    ("passive declare of a missing exchange", lambda q: [X(exchange=q, passive=True)],
     (404, "NOT_FOUND - no exchange '{q}' in vhost '/'", 40, 10)),
    ("queue durable then transient", lambda q: [Q(queue=q, durable=True, auto_delete=True), Q(queue=q, auto_delete=True)],
     (406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but "
           "current is 'true'", 50, 10)),
    ("queue argument changed", lambda q: [Q(queue=q, auto_delete=True, arguments={"x-queue-mode": "lazy"}),
                                          Q(queue=q, auto_delete=True, arguments={"x-queue-mode": "default"})],
     (406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-mode' for queue '{q}' in vhost '/': received "
           "'default' but current is 'lazy'", 50, 10)),
    ("queue argument added", lambda q: [Q(queue=q, auto_delete=True),
                                        Q(queue=q, auto_delete=True, arguments={"x-queue-mode": "lazy"})],
     (406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-mode' for queue '{q}' in vhost '/': received the "
           "value 'lazy' of type 'longstr' but current is none", 50, 10)),
    ("non-exclusive queue redeclared exclusive", lambda q: [Q(queue=q, auto_delete=True),
                                                            Q(queue=q, auto_delete=True, exclusive=True)],
     (405, "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be "
           "originally declared on another connection or the exclusive property value does not match that of "
           "the original declaration.", 50, 10)),
    ("reserved queue name", lambda q: [Q(queue="amq." + q)],
     (403, "ACCESS_REFUSED - queue name 'amq.{q}' contains reserved prefix 'amq.*'", 50, 10)),
    ("exchange type changed", lambda q: [X(exchange=q, exchange_type="direct", auto_delete=True),
                                         X(exchange=q, exchange_type="fanout", auto_delete=True)],
     (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{q}' in vhost '/': received 'fanout' but "
           "current is 'direct'", 40, 10)),
    ("reserved exchange name", lambda q: [X(exchange="amq." + q, exchange_type="direct")],
     (403, "ACCESS_REFUSED - exchange name 'amq.{q}' contains reserved prefix 'amq.*'", 40, 10)),
    ("declare the default exchange", lambda q: [X(exchange="", exchange_type="direct")],
     (403, "ACCESS_REFUSED - operation not permitted on the default exchange", 40, 10)),
    ("delete a system exchange", lambda q: [pc.Exchange.Delete(exchange="amq.direct")],
     (403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed", 40, 20)),
    ("bind to the default exchange", lambda q: [Q(queue=q, exclusive=True), pc.Queue.Bind(queue=q, exchange="")],
     (403, "ACCESS_REFUSED - operation not permitted on the default exchange", 50, 20)),
    ("bind a missing queue", lambda q: [pc.Queue.Bind(queue=q, exchange="amq.direct")],
     (404, "NOT_FOUND - no queue '{q}' in vhost '/'", 50, 20)),
    ("bad x-match", lambda q: [Q(queue=q, exclusive=True),
                               pc.Queue.Bind(queue=q, exchange="amq.headers", arguments={"x-match": "foo"})],
     (406, 'PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; expected all, any, all-with-x, or '
           'any-with-x', 50, 20)),
    ("delete a queue that is not empty", lambda q: [Q(queue=q, exclusive=True), "publish",
                                                    pc.Queue.Delete(queue=q, if_empty=True)],
     (406, "PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty", 50, 40)),
    ("delete an exchange in use", lambda q: [X(exchange=q, exchange_type="direct", auto_delete=True),
                                             Q(queue=q, exclusive=True), pc.Queue.Bind(queue=q, exchange=q),
                                             pc.Exchange.Delete(exchange=q, if_unused=True)],
     (406, "PRECONDITION_FAILED - exchange '{q}' in vhost '/' in use", 40, 20)),
    ("consume a missing queue", lambda q: [pc.Basic.Consume(queue=q)],
     (404, "NOT_FOUND - no queue '{q}' in vhost '/'", 60, 20)),
    ("get from a missing queue", lambda q: [pc.Basic.Get(queue=q)],
     (404, "NOT_FOUND - no queue '{q}' in vhost '/'", 60, 70)),
    ("publish to an internal exchange", lambda q: [X(exchange=q, exchange_type="direct", internal=True, auto_delete=True),
                                                   "publish-x"],
     (403, "ACCESS_REFUSED - cannot publish to internal exchange '{q}' in vhost '/'", 60, 40)),
    ("unknown delivery tag", lambda q: [pc.Basic.Reject(delivery_tag=7)],
     (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 90)),
    ("ack a tag twice", lambda q: [Q(queue=q, exclusive=True), "publish", pc.Basic.Get(queue=q), "drain",
                                   pc.Basic.Ack(delivery_tag=1), pc.Basic.Ack(delivery_tag=1)],
     (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80)),
]


@pytest.mark.parametrize("name, steps, reply", CHANNEL_ERRORS, ids=[c[0] for c in CHANNEL_ERRORS])
def test_channel_errors_close_only_the_channel(port, bystander, name, steps, reply):
    r = opened(port, 1, 2)
    q = qname()
    for step in steps(q):
        if step == "publish":
            r.send(publish(1, "", q, b"x"))
        elif step == "publish-x":
            r.send(publish(1, q, "k", b"x"))
        elif step == "drain":
            while r.frame(timeout=0.3) is not None:
                pass
        else:
            r.send(mf(1, step))
    while True:
        got = r.frame()
        assert got is not None, "no channel.close"
        if isinstance(got[1], pc.Channel.Close):
            break
    code, text, cid, mid = reply
    assert (got[0], got[1].reply_code, got[1].reply_text, got[1].class_id, got[1].method_id) == (
        1, code, text.replace("{q}", q), cid, mid)
    # the connection and its other channel go on; channel 1 opens again after close-ok
    r.send(mf(1, pc.Channel.CloseOk()))
    r.open_channel(1)
    q2 = qname()
    r.send(mf(2, pc.Queue.Declare(queue=q2, exclusive=True)))
    r.expect(pc.Queue.DeclareOk, 2)
    r.send(mf(2, pc.Basic.Consume(queue=q2, consumer_tag="c2")))
    r.expect(pc.Basic.ConsumeOk, 2)
    round_trip(r, 2, q2, b"still fine", "c2", confirm=False)
    r.close()


def test_publish_with_confirms_to_missing_exchange(port, bystander):
    r = opened(port, 1)
    r.send(mf(1, pc.Confirm.Select()))
    r.expect(pc.Confirm.SelectOk, 1)
    r.send(publish(1, "no-such-exchange", "k", b"lost"))
    # no nack: the channel closes (RabbitMQ does not confirm a publish that closed the channel)
    assert r.expect_close(1) == (404, "NOT_FOUND - no exchange 'no-such-exchange' in vhost '/'", 60, 40)
    r.close()


def test_methods_on_a_closing_channel_are_dropped_until_close_ok(port, bystander):
    r = opened(port, 1)
    q = qname()
    r.send(publish(1, "no-such-exchange", "k", b"lost") +
           mf(1, pc.Queue.Declare(queue=q)) + publish(1, "", q, b"dropped"))
    assert r.expect_close(1)[0] == 404
    r.send(mf(1, pc.Channel.CloseOk()))
    r.open_channel(1)
    r.send(mf(1, pc.Queue.Declare(queue=q, passive=True)))  # the declare sent while closing was dropped
    assert r.expect_close(1) == (404, f"NOT_FOUND - no queue '{q}' in vhost '/'", 50, 10)
    r.close()


def test_channel_error_leaves_other_channels_working(port, bystander):
    r = opened(port, 1, 2, 3)
    q = qname()
    r.send(mf(2, pc.Queue.Declare(queue=q, exclusive=True)))
    r.expect(pc.Queue.DeclareOk, 2)
    r.send(mf(2, pc.Confirm.Select()))
    r.expect(pc.Confirm.SelectOk, 2)
    r.send(mf(2, pc.Basic.Consume(queue=q, consumer_tag="two")))
    r.expect(pc.Basic.ConsumeOk, 2)
    # channel 1: 404 on a passive declare; channel 3: 406 on an inequivalent redeclare
    r.send(mf(1, pc.Queue.Declare(queue="missing-" + q, passive=True)))
    assert r.expect_close(1) == (404, f"NOT_FOUND - no queue 'missing-{q}' in vhost '/'", 50, 10)
    r.send(mf(3, pc.Queue.Declare(queue=q, auto_delete=True, exclusive=True)))
    assert r.expect_close(3)[0] == 406
    round_trip(r, 2, q, b"channel two is fine", "two")
    r.send(mf(1, pc.Channel.CloseOk()) + mf(3, pc.Channel.CloseOk()))
    r.open_channel(3)
    r.send(publish(3, "", q, b"from three"))
    deliver = r.expect(pc.Basic.Deliver, 2)
    assert deliver.consumer_tag == "two"
    r.expect(pheader.ContentHeader, 2)
    assert r.expect(pbody.ContentBody, 2).value == b"from three"
    r.close()


def test_unacked_deliveries_of_a_failed_channel_go_to_another_consumer(port, bystander):
    # Bug found here: the session requeued a failed channel's deliveries before cancelling its consumers,
    # so the message went straight back to the dying channel's consumer and stayed unacked there forever.
    r = opened(port, 1, 2)
    q = qname()
    r.send(mf(1, pc.Queue.Declare(queue=q, exclusive=True)))
    r.expect(pc.Queue.DeclareOk, 1)
    r.send(publish(1, "", q, b"job"))
    r.send(mf(1, pc.Basic.Consume(queue=q, consumer_tag="one")))
    r.expect(pc.Basic.ConsumeOk, 1)
    d = r.expect(pc.Basic.Deliver, 1)
    assert not d.redelivered
    r.expect(pheader.ContentHeader, 1)
    r.expect(pbody.ContentBody, 1)
    r.send(mf(2, pc.Basic.Consume(queue=q, consumer_tag="two")))
    r.expect(pc.Basic.ConsumeOk, 2)
    r.send(mf(1, pc.Basic.Ack(delivery_tag=99)))  # unknown delivery tag: 406 closes channel 1
    # the close of channel 1 and the redelivery on channel 2 may come in either order (RabbitMQ's
    # channels are processes of their own)
    got = [r.frame() for _ in range(4)]
    assert None not in got, got
    close = [obj for ch, obj in got if ch == 1]
    assert len(close) == 1 and isinstance(close[0], pc.Channel.Close)
    assert (close[0].reply_code, close[0].reply_text, close[0].class_id, close[0].method_id) == (
        406, "PRECONDITION_FAILED - unknown delivery tag 99", 60, 80)
    d, hdr, body = [obj for ch, obj in got if ch == 2]  # requeued and redelivered to the other consumer
    assert isinstance(d, pc.Basic.Deliver) and d.consumer_tag == "two" and d.redelivered
    assert isinstance(hdr, pheader.ContentHeader) and body.value == b"job"
    r.close()


def test_many_bad_clients_in_a_row(port, bystander):
    bad = [
        lambda r: r.send(raw_frame(1, 1, b"\x00\x32")),
        lambda r: r.send(raw_frame(3, 1, b"x")),
        lambda r: r.send(mf(1, pc.Queue.Declare(queue="q"))[:-1] + b"\x00"),
        lambda r: r.send(struct.pack(">BHI", 1, 1, 1 << 30)),
        lambda r: r.send(mf(4, pc.Basic.Qos(prefetch_count=1))),
    ]
    for i in range(3):
        for act in bad:
            r = opened(port, 1)
            act(r)
            assert r.expect_close()[0] in (501, 504, 505)
            r.close()
        bystander.check()


# -- pipelining: everything a client writes in one go is handled, in order ------------------------------

def test_publishes_interleaved_with_other_methods_in_one_write(port, bystander):
    # Bug found here: the session gathered the publishes of one read in a list that the first flush
    # replaced, so a publish after another method in the same read (publish, purge, publish, delete) was
    # dropped, and its confirm never came.
    r = opened(port, 1)
    q = qname()
    r.send(mf(1, pc.Queue.Declare(queue=q, exclusive=True)) + mf(1, pc.Confirm.Select()))
    r.expect(pc.Queue.DeclareOk, 1)
    r.expect(pc.Confirm.SelectOk, 1)
    r.send(publish(1, "", q, b"a") + publish(1, "", q, b"b") + mf(1, pc.Queue.Purge(queue=q)) +
           publish(1, "", q, b"c") + mf(1, pc.Basic.Qos(prefetch_count=10)) + publish(1, "", q, b"d") +
           mf(1, pc.Queue.Declare(queue=q, passive=True)) + publish(1, "", q, b"e") +
           mf(1, pc.Queue.Delete(queue=q)))
    replies = []
    confirmed: set[int] = set()
    while len(confirmed) < 5 or not replies or replies[-1][0] != "DeleteOk":
        f = r.frame()  # confirms may come before or after the other replies; every publish gets one
        assert f is not None, (replies, confirmed)
        obj = f[1]
        if isinstance(obj, pc.Basic.Ack):
            confirmed |= set(range(1, obj.delivery_tag + 1)) if obj.multiple else {obj.delivery_tag}
        else:
            replies.append((type(obj).__name__, getattr(obj, "message_count", None)))
    # (RabbitMQ's passive declare may count before the publish just ahead of it lands: not compared)
    assert [(n, c if n != "DeclareOk" else None) for n, c in replies] == [
        ("PurgeOk", 2), ("QosOk", None), ("DeclareOk", None), ("DeleteOk", 3)]
    assert confirmed == {1, 2, 3, 4, 5}
    r.close()


# -- back-pressure ----------------------------------------------------------------------------------------

def test_a_no_ack_consumer_that_does_not_read_does_not_drain_its_queue(port, bystander):
    # Bug found here: deliveries went into the connection's output whatever its size, so a no-ack consumer
    # that stopped reading took its whole queue out of the log into memory, settled (lost if it then
    # died). Now delivery to it stops at the socket's back-pressure and the rest stays in the queue, as
    # RabbitMQ's credit flow keeps it.
    q = qname("slow")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(READ_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    slow = Raw.__new__(Raw)
    slow.sock, slow.buf, slow.eof = sock, bytearray(), False
    slow.handshake()
    slow.open_channel(1)
    slow.send(mf(1, pc.Queue.Declare(queue=q, auto_delete=True)))
    slow.expect(pc.Queue.DeclareOk, 1)
    slow.send(mf(1, pc.Basic.Consume(queue=q, consumer_tag="slow", no_ack=True)))
    slow.expect(pc.Basic.ConsumeOk, 1)
    # from now on the slow consumer reads nothing
    pub = opened(port, 1)
    pub.send(mf(1, pc.Confirm.Select()))
    pub.expect(pc.Confirm.SelectOk, 1)
    n, body = 4000, b"z" * 8192  # 32 MB: far more than the socket buffers and the broker's output limit
    pub.send(b"".join(publish(1, "", q, body) for _ in range(n)))
    confirmed = 0
    while confirmed < n:
        f = pub.frame(timeout=20)
        assert f is not None and isinstance(f[1], pc.Basic.Ack), (confirmed, f)
        confirmed = f[1].delivery_tag if f[1].multiple else confirmed + 1
    time.sleep(0.5)
    pub.send(mf(1, pc.Queue.Declare(queue=q, passive=True)))
    declared = pub.expect(pc.Queue.DeclareOk, 1)
    # what may have left: the broker's output limit (2 MiB) plus its transport buffer (4 MiB) plus the
    # kernel's socket buffers (here at most 4 MiB + 8 KiB): at most ~1300 of the 4000 8 KiB messages
    assert declared.message_count > n // 2, (
        f"only {declared.message_count} of {n} messages still in the queue ({declared.consumer_count} consumers)")
    # once the consumer reads again, it gets everything, in order
    got = 0
    slow.sock.settimeout(READ_TIMEOUT)
    while got < n:
        f = slow.frame(timeout=10)
        assert f is not None, got
        if isinstance(f[1], pc.Basic.Deliver):
            got += 1
    slow.close()
    pub.close()


# -- heartbeats ------------------------------------------------------------------------------------------

def test_heartbeats_both_ways(port, bystander):
    r = Raw(port)
    r.send(HEADER)
    r.expect(pc.Connection.Start, 0)
    r.send(_start_ok("guest", {}))
    r.expect(pc.Connection.Tune, 0)
    r.send(mf(0, pc.Connection.TuneOk(channel_max=10, frame_max=FRAME_MAX, heartbeat=1)) +
           mf(0, pc.Connection.Open(virtual_host="/")))
    r.expect(pc.Connection.OpenOk, 0)
    # the broker sends heartbeats (every heartbeat/2 s) while the connection is idle ...
    t0 = time.monotonic()
    beats = 0
    while time.monotonic() - t0 < 2.5:
        r.send(raw_frame(8, 0, b""))  # ... and a client that sends its own stays connected
        if len(r.buf) >= 8 or r._fill(time.monotonic() + 0.4):
            while len(r.buf) >= 8 and r.buf[:1] == b"\x08":
                del r.buf[:8]
                beats += 1
        assert not r.eof
    assert beats >= 2 and not r.buf
    # a client that goes quiet is dropped after two missed heartbeats (RabbitMQ: no close frame)
    t0 = time.monotonic()
    while not r.eof and time.monotonic() - t0 < 6:
        if r._fill(time.monotonic() + 0.5):
            while len(r.buf) >= 8 and r.buf[:1] == b"\x08":
                del r.buf[:8]
            assert not r.buf, bytes(r.buf)
    assert r.eof and 1.5 < time.monotonic() - t0 < 5.5
    r.close()
