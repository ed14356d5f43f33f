"""Sans-IO Kafka framing: size-prefixed requests in, size-prefixed responses out (broker side), and the
mirror image for tests that act as a client.

Strategy: ``receive_data`` only buffers (a list of received chunks; see :class:`KafkaConnection` for why
not ``wire._common.buffer.Buffer``); ``events`` cuts every complete request off the buffer (4-byte signed
size, then that many bytes), reads its header and decodes its body with the API's generated decoder, and
returns them as :class:`Request` objects, one call per ``data_received``. While a large request is
incomplete, ``events`` returns ``[]`` after one length comparison. Responses are encoded straight into one ``bytearray`` (size prefix patched at the end);
``encode_response_parts`` leaves large records and file regions out of it as separate parts.

Headers (Kafka's RequestHeader.json / ResponseHeader.json, KIP-482):
- request header v0: api_key int16, api_version int16, correlation_id int32 (only ControlledShutdown v0
  uses it; no API here does); v1: + client_id nullable *non-compact* string; v2: v1 + tagged fields.
  An API's flexible versions use v2, the others v1 (``request_header_version``).
- response header v0: correlation_id int32; v1: + tagged fields, for flexible versions -- except
  ApiVersions, whose response always uses v0 so that a client can read it before it knows the broker's
  versions (``response_header_version``; Kafka ApiKeys/ApiVersionsResponse).

What the broker does with bad input, as Kafka does (network/NetworkReceive.java, RequestContext.java,
SocketServer.scala), and so what this connection reports:
- size prefix negative → :class:`InvalidRequestSizeError`; larger than ``max_request_size`` (Kafka
  ``socket.request.max.bytes``, default 100 MiB) → :class:`RequestTooLargeError`, raised as soon as the
  four bytes are in, before the body arrives. Kafka closes the connection without a response.
- a request shorter than its header, a truncated header or body, a bad length inside, a varint too long,
  a null where the schema allows none → :class:`KafkaDecodeError` (Kafka: InvalidRequestException, close).
- an API key not implemented here → :class:`UnknownApiKeyError` (close).
- a version outside the supported range → :class:`UnsupportedVersionError` (close) -- except for
  ApiVersions: Kafka answers an ApiVersions request of any version it does not support, without parsing
  its body, with an ApiVersions *v0* response carrying UNSUPPORTED_VERSION (35) and, since KIP-511, the
  ApiVersions range alone, so the client can retry with a version both know. Such a request is delivered
  as a :class:`Request` with ``body=None`` and ``error_code=UNSUPPORTED_VERSION``; answer it with
  :meth:`KafkaConnection.encode_unsupported_version`. Its header is read as the version's header would
  be (v2 for versions >= 3, as Kafka does).
- bytes left in a request after its body: Kafka's generated readers ignore them, and so do we; with
  ``strict=True`` (tests, fuzzing) they are a :class:`KafkaDecodeError`.
All of these are fatal: ``events()`` returns the requests decoded before the error followed by the error
itself (an exception instance, not raised) as its last item; the session answers the good ones, then
closes. From then on every call raises :class:`ConnectionDeadError`. ``next_event()`` gives the same
h11-style: a Request, ``NEED_DATA``, or a raised error. No other exception escapes on any input bytes.

Semantics the session owns (not checked here): Produce with acks=0 gets no response; ApiVersions v3+
with an invalid client software name/version is answered with INVALID_REQUEST; SASL state (which APIs are
allowed before authentication); the legacy SaslHandshake v0 raw token exchange.

Rules: never awaits, never touches a socket or a clock; imports nothing of ours but ``wire._common`` and
``wire.kafka``. One connection object per socket; not thread-safe (event-loop thread only). Hot path: run
``python bench/kafka_codec.py`` before changing ``events`` or ``encode_response_parts``.
"""

from __future__ import annotations

import struct
from typing import Any

from omnibus.wire._common.buffer import Buffer
from omnibus.wire.kafka.errors import (UNSUPPORTED_VERSION, ConnectionDeadError, InvalidRequestSizeError,
                                       KafkaDecodeError, KafkaProtocolError, RequestTooLargeError,
                                       UnknownApiKeyError, UnsupportedVersionError)
from omnibus.wire.kafka.messages import API_NAMES, API_VERSIONS, REQUESTS, RESPONSES, SUPPORTED_VERSIONS
from omnibus.wire.kafka.types import skip_tagged_fields

__all__ = [
    "Request", "Response", "KafkaConnection", "KafkaClientConnection", "NEED_DATA",
    "DEFAULT_MAX_REQUEST_SIZE", "DEFAULT_MAX_RESPONSE_SIZE", "MIN_REQUEST_SIZE",
    "request_header_version", "response_header_version", "encode_request", "decode_request",
    "decode_response", "unsupported_version_response",
]

#: Kafka ``socket.request.max.bytes`` default (104857600): a larger size prefix closes the connection.
DEFAULT_MAX_REQUEST_SIZE = 100 * 1024 * 1024
#: Largest response the test client accepts (librdkafka's ``receive.message.max.bytes`` is 100000000;
#: we take the broker's request limit, plenty for tests).
DEFAULT_MAX_RESPONSE_SIZE = DEFAULT_MAX_REQUEST_SIZE
#: A request header v0 is api_key (2) + api_version (2) + correlation_id (4) bytes.
MIN_REQUEST_SIZE = 8
#: A response header v0 is correlation_id (4) bytes.
MIN_RESPONSE_SIZE = 4

_SIZE = struct.Struct(">i")
_HEADER_V0 = struct.Struct(">hhi")
_CLIENT_ID_LEN = struct.Struct(">h")
_EMPTY_TAGS = b"\x00"


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`KafkaConnection.next_event` when no complete request is buffered.
NEED_DATA = _NeedData()


def request_header_version(api_key: int, api_version: int) -> int:
    """2 for a flexible version of the API, else 1 (1 for an API key we do not know)."""
    cls = REQUESTS.get(api_key)
    if cls is not None and api_version in cls.SCHEMA.flexible:
        return 2
    return 1


def response_header_version(api_key: int, api_version: int) -> int:
    """1 for a flexible version of the API, else 0; always 0 for ApiVersions (see the module docstring)."""
    if api_key == API_VERSIONS:
        return 0
    cls = RESPONSES.get(api_key)
    return 1 if cls is not None and cls.SCHEMA.flexible.lo <= api_version <= cls.SCHEMA.flexible.hi else 0


class Request:
    """One request from a client.

    ``body`` is an instance of the API's request class (``omnibus.wire.kafka.messages``), or None for an
    ApiVersions request at an unsupported version (then ``error_code`` is UNSUPPORTED_VERSION; otherwise
    it is 0). ``client_id`` is None for header v0 or a null client id. ``size`` is the frame size without
    its 4-byte prefix."""

    __slots__ = ("api_key", "api_version", "correlation_id", "client_id", "body", "header_version", "error_code",
                 "size")

    def __init__(self, api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Any,
                 header_version: int = 1, error_code: int = 0, size: int = 0) -> None:
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.body = body
        self.header_version = header_version
        self.error_code = error_code
        self.size = size

    @property
    def api_name(self) -> str:
        return API_NAMES.get(self.api_key, f"Unknown({self.api_key})")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Request:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Request({self.api_name} v{self.api_version}, correlation_id={self.correlation_id}, "
                f"client_id={self.client_id!r}, body={self.body!r}"
                + (f", error_code={self.error_code}" if self.error_code else "") + ")")


class Response:
    """One response, as the test client decodes it."""

    __slots__ = ("api_key", "api_version", "correlation_id", "body")

    def __init__(self, api_key: int, api_version: int, correlation_id: int, body: Any) -> None:
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.body = body

    def __repr__(self) -> str:
        return f"Response({API_NAMES.get(self.api_key)} v{self.api_version}, {self.correlation_id}, {self.body!r})"


# -- encoding and decoding single frames ---------------------------------------------------------------

def encode_request(body: Any, api_version: int, correlation_id: int, client_id: str | None = "",
                   header_version: int | None = None) -> bytes:
    """A whole request frame: size prefix, header (v1 or v2 as the API version wants unless given),
    body. For tests and clients."""
    api_key = body.API_KEY
    if header_version is None:
        header_version = request_header_version(api_key, api_version)
    out = bytearray(4)
    out += _HEADER_V0.pack(api_key, api_version, correlation_id)
    if header_version >= 1:
        if client_id is None:
            out += b"\xff\xff"
        else:
            cid = client_id.encode()
            out += _CLIENT_ID_LEN.pack(len(cid))
            out += cid
    if header_version >= 2:
        out += _EMPTY_TAGS
    body.encode_into(api_version, out, None)
    _SIZE.pack_into(out, 0, len(out) - 4)
    return bytes(out)


_DECODERS: dict[int, tuple[Any, int]] = {}  # api_key << 16 | version → (body decoder, request header version)


def _decoder_entry(api_key: int, api_version: int) -> tuple[Any, int]:
    cls = REQUESTS[api_key]
    entry = _DECODERS[api_key << 16 | api_version] = (
        cls.decoder(api_version), 2 if api_version in cls.SCHEMA.flexible else 1)
    return entry


def decode_request(frame: bytes | memoryview, versions: dict[int, tuple[int, int]] | None = None,
                   strict: bool = False) -> Request:
    """Decode one request frame (without its size prefix). Raises a KafkaProtocolError subclass."""
    size = len(frame)
    if size < MIN_REQUEST_SIZE:
        raise KafkaDecodeError(f"request of {size} bytes is shorter than a request header")
    api_key, api_version, correlation_id = _HEADER_V0.unpack_from(frame, 0)
    rng = (SUPPORTED_VERSIONS if versions is None else versions).get(api_key)
    if rng is None:
        if api_key in REQUESTS:
            raise UnsupportedVersionError(f"{API_NAMES[api_key]} is not enabled on this listener", api_key=api_key,
                                          api_version=api_version, correlation_id=correlation_id)
        raise UnknownApiKeyError(f"unknown API key {api_key}", api_key=api_key, api_version=api_version,
                                 correlation_id=correlation_id)
    supported = rng[0] <= api_version <= rng[1]
    try:
        if supported:
            fn, header_version = _DECODERS.get(api_key << 16 | api_version) or _decoder_entry(api_key, api_version)
        elif api_key == API_VERSIONS:
            fn, header_version = None, 2 if api_version in REQUESTS[api_key].SCHEMA.flexible else 1
        else:
            lo, hi = rng
            raise UnsupportedVersionError(
                f"unsupported version {api_version} of {API_NAMES[api_key]} (supported {lo}-{hi})",
                api_key=api_key, api_version=api_version, correlation_id=correlation_id)
        n, = _CLIENT_ID_LEN.unpack_from(frame, 8)
        if n >= 0:
            pos = 10 + n
            if pos > size:
                raise KafkaDecodeError("client_id runs past the end of the request")
            client_id = str(frame[10:pos], "utf-8", "replace")
        elif n == -1:
            pos = 10
            client_id = None
        else:
            raise KafkaDecodeError(f"client_id has negative length {n}")
        if header_version == 2:
            pos = skip_tagged_fields(frame, pos)
        if fn is None:
            return Request(api_key, api_version, correlation_id, client_id, None, header_version,
                           UNSUPPORTED_VERSION, size)
        body, end = fn(frame, pos)
    except KafkaProtocolError as e:
        e.api_key, e.api_version, e.correlation_id = api_key, api_version, correlation_id
        raise
    except (struct.error, IndexError):
        raise KafkaDecodeError(f"{API_NAMES[api_key]} v{api_version} request is truncated", api_key=api_key,
                               api_version=api_version, correlation_id=correlation_id) from None
    if strict and end != size:
        raise KafkaDecodeError(f"{size - end} bytes after the end of a {API_NAMES[api_key]} v{api_version} "
                               "request", api_key=api_key, api_version=api_version, correlation_id=correlation_id)
    return Request(api_key, api_version, correlation_id, client_id, body, header_version, 0, size)


def _response_parts(api_key: int, api_version: int, correlation_id: int, body: Any) -> list:
    cls = RESPONSES.get(api_key)
    if type(body) is not cls:
        raise TypeError(f"{type(body).__name__} is not the response to API key {api_key}")
    out = bytearray(4)
    out += _SIZE.pack(correlation_id)
    if response_header_version(api_key, api_version) == 1:
        out += _EMPTY_TAGS
    parts: list = []
    body.encode_into(api_version, out, parts)
    if not parts:
        _SIZE.pack_into(out, 0, len(out) - 4)
        return [bytes(out)]
    if out:
        parts.append(bytes(out))
    total = -4
    for p in parts:
        total += p.nbytes if type(p) is memoryview else len(p)
    parts[0] = _SIZE.pack(total) + parts[0][4:]
    return parts


def unsupported_version_response(api_versions_range: tuple[int, int]) -> Any:
    """Kafka's answer body to an ApiVersions request at an unsupported version (encode it at v0)."""
    resp = RESPONSES[API_VERSIONS]
    return resp(error_code=UNSUPPORTED_VERSION, api_keys=[
        resp.ApiVersion(api_key=API_VERSIONS, min_version=api_versions_range[0], max_version=api_versions_range[1])])


def decode_response(frame: bytes, api_key: int, api_version: int, strict: bool = True) -> Response:
    """Decode one response frame (without its size prefix) to a request of ``api_key`` at
    ``api_version``. An ApiVersions response whose error is UNSUPPORTED_VERSION is decoded as v0, as
    clients do. Raises KafkaDecodeError."""
    if len(frame) < MIN_RESPONSE_SIZE:
        raise KafkaDecodeError(f"response of {len(frame)} bytes is shorter than a response header")
    correlation_id, = _SIZE.unpack_from(frame, 0)
    pos = 4
    if response_header_version(api_key, api_version) == 1:
        try:
            pos = skip_tagged_fields(frame, pos)
        except IndexError:
            raise KafkaDecodeError("response header is truncated") from None
    if api_key == API_VERSIONS and frame[pos:pos + 2] == b"\x00\x23":
        api_version = 0
    body, end = RESPONSES[api_key].decode(frame, api_version, pos)
    if strict and end != len(frame):
        raise KafkaDecodeError(f"{len(frame) - end} bytes after the end of the response")
    return Response(api_key, api_version, correlation_id, body)


# -- the broker side -----------------------------------------------------------------------------------

class KafkaConnection:
    """Broker side of one Kafka connection: bytes in, :class:`Request` events out; responses out.

    ``versions`` maps api_key → (min, max) of the versions accepted (default: everything the codec
    implements, ``messages.SUPPORTED_VERSIONS``); pass what the broker advertises in ApiVersions so that
    a request at any other version is treated as Kafka treats it. ``max_request_size`` is Kafka's
    ``socket.request.max.bytes``. Event-loop thread only.

    Buffering: received chunks are kept in a list (not ``wire._common.Buffer``, which copies every byte
    three times: append, slice out, compact). A request that arrived within one chunk is decoded from a
    ``memoryview`` of that chunk, so its records are never copied; a request spread over several chunks is
    joined once, when its last byte is in (the size prefix tells when). Leftover bytes after the last
    complete request are kept as one chunk."""

    __slots__ = ("_chunks", "_len", "_max", "_versions", "_strict", "_need", "error")

    def __init__(self, *, max_request_size: int = DEFAULT_MAX_REQUEST_SIZE,
                 versions: dict[int, tuple[int, int]] | None = None, strict: bool = False) -> None:
        self._chunks: list[bytes] = []
        self._len = 0
        self._max = max_request_size
        self._versions = dict(SUPPORTED_VERSIONS if versions is None else versions)
        for k, (lo, hi) in self._versions.items():
            if k not in REQUESTS or lo < REQUESTS[k].MIN_VERSION or hi > REQUESTS[k].MAX_VERSION:
                raise ValueError(f"the codec does not implement API key {k} versions {lo}-{hi}")
        self._strict = strict
        self._need = 4  # buffered bytes the next request needs before there is anything to do
        #: The protocol error that killed this connection, or None.
        self.error: KafkaProtocolError | None = None

    @property
    def versions(self) -> dict[int, tuple[int, int]]:
        """api_key → (min, max) accepted: what an ApiVersions response should advertise."""
        return dict(self._versions)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the socket (copied unless ``bytes``). Never parses."""
        if self.error is not None:
            raise ConnectionDeadError(f"connection is dead: {self.error}") from self.error
        if type(data) is not bytes:
            data = bytes(data)
        if data:
            self._chunks.append(data)
            self._len += len(data)

    def events(self) -> list:
        """Every complete request buffered, as :class:`Request`; the last item may instead be the
        :class:`KafkaProtocolError` that ends the connection (see the module docstring)."""
        if self.error is not None:
            raise ConnectionDeadError(f"connection is dead: {self.error}") from self.error
        if self._len < self._need:
            return []
        return self._parse(-1)

    def next_event(self) -> Any:
        """h11 style: the next :class:`Request`, or ``NEED_DATA``; raises the protocol error."""
        if self.error is not None:
            raise ConnectionDeadError(f"connection is dead: {self.error}") from self.error
        if self._len < self._need:
            return NEED_DATA
        evs = self._parse(1)
        if not evs:
            return NEED_DATA
        if isinstance(evs[0], KafkaProtocolError):
            raise evs[0]
        return evs[0]

    def _parse(self, limit: int) -> list:
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        view = memoryview(data)
        end = len(data)
        pos = 0
        need = 4
        out: list = []
        versions, strict, max_size = self._versions, self._strict, self._max
        while limit:
            if end - pos < 4:
                break
            size, = _SIZE.unpack_from(data, pos)
            if size < 0:
                return self._fail(out, InvalidRequestSizeError(f"Invalid receive (size = {size})"))
            if size > max_size:
                return self._fail(out, RequestTooLargeError(f"Invalid receive (size = {size} larger than {max_size})"))
            if end - pos - 4 < size:
                need = 4 + size
                break
            frame = view[pos + 4:pos + 4 + size]
            pos += 4 + size
            limit -= 1
            try:
                out.append(decode_request(frame, versions, strict))
            except KafkaProtocolError as e:
                return self._fail(out, e)
            except Exception as e:  # a bug of ours; never let it escape as anything else
                return self._fail(out, KafkaDecodeError(f"cannot decode request: {e!r}"))
        rest = end - pos
        self._chunks = [] if rest == 0 else [data] if pos == 0 else [data[pos:]]
        self._len = rest
        self._need = need
        return out

    def _fail(self, out: list, err: KafkaProtocolError) -> list:
        self.error = err
        self._chunks = []
        self._len = 0
        out.append(err)
        return out

    # -- responses --

    def encode_response(self, request: Request, body: Any) -> bytes:
        """The whole response frame (size prefix, header, body) as one ``bytes``. Records must be
        bytes-like here; use :meth:`encode_response_parts` for file regions."""
        parts = self.encode_response_parts(request, body)
        if len(parts) == 1:
            return parts[0]
        for p in parts:
            if not isinstance(p, (bytes, bytearray, memoryview)):
                raise TypeError("a response with file regions: use encode_response_parts")
        return b"".join(parts)

    def encode_response_parts(self, request: Request, body: Any) -> list:
        """The response frame as a list of parts to write in order: ``bytes`` for everything encoded
        here, and, as their own parts, each records value of at least ``types.SPLICE_MIN_BYTES`` bytes and
        each file region (any non-bytes object the caller put in a ``records`` field, e.g.
        :class:`~omnibus.wire.kafka.types.FileRegion`) right after its length prefix. The size prefix
        counts every part (``len()`` of a region)."""
        version = request.api_version
        if request.error_code == UNSUPPORTED_VERSION and request.api_key == API_VERSIONS:
            version = 0
        return _response_parts(request.api_key, version, request.correlation_id, body)

    def encode_unsupported_version(self, request: Request) -> bytes:
        """Kafka's answer to an ApiVersions request at an unsupported version: v0, UNSUPPORTED_VERSION, and
        the ApiVersions range this connection accepts."""
        body = unsupported_version_response(self._versions[API_VERSIONS])
        return _response_parts(API_VERSIONS, 0, request.correlation_id, body)[0]


# -- the client side (tests, benchmarks) ---------------------------------------------------------------

class KafkaClientConnection:
    """Client side of a Kafka connection, for tests and load generators: encodes requests (remembering
    each correlation id's API and version, since responses do not carry them) and decodes responses."""

    def __init__(self, client_id: str | None = "omnibus-test", *,
                 max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE) -> None:
        self.client_id = client_id
        self._buf = Buffer()
        self._max = max_response_size
        self._next_id = 0
        self._pending: dict[int, tuple[int, int]] = {}
        self.error: KafkaProtocolError | None = None

    def send_request(self, body: Any, api_version: int | None = None, correlation_id: int | None = None,
                     expect_response: bool = True) -> bytes:
        """Encode ``body`` (a request class instance) at ``api_version`` (default: the highest the codec
        knows). Pass ``expect_response=False`` for Produce with acks=0."""
        if api_version is None:
            api_version = body.MAX_VERSION
        if correlation_id is None:
            correlation_id = self._next_id
            self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        if expect_response:
            self._pending[correlation_id] = (body.API_KEY, api_version)
        return encode_request(body, api_version, correlation_id, self.client_id)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buf.feed(data)

    def events(self) -> list:
        """Every complete response, as :class:`Response`; the last item may be a KafkaProtocolError."""
        if self.error is not None:
            raise ConnectionDeadError(f"connection is dead: {self.error}") from self.error
        out: list = []
        buf = self._buf
        while True:
            head = buf.peek(4)
            if head is None:
                break
            size, = _SIZE.unpack(head)
            if size < 0 or size > self._max:
                self.error = InvalidRequestSizeError(f"Invalid receive (size = {size})")
                out.append(self.error)
                break
            if len(buf) < 4 + size:
                break
            buf.consume_exactly(4)
            frame = buf.consume_exactly(size)
            buf.commit()
            try:
                if len(frame) < MIN_RESPONSE_SIZE:
                    raise KafkaDecodeError("response shorter than its header")
                correlation_id, = _SIZE.unpack_from(frame, 0)
                pending = self._pending.pop(correlation_id, None)
                if pending is None:
                    raise KafkaDecodeError(f"response to unknown correlation id {correlation_id}")
                out.append(decode_response(frame, *pending))
            except KafkaProtocolError as e:
                self.error = e
                out.append(e)
                break
        return out

