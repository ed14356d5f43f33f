"""The Kafka wire protocol, sans-IO (see design.md): the codec the Kafka session is built on.

- :mod:`.types`: primitive types and the schema DSL, compiled per API version to fast encode/decode
  functions; :class:`~.types.FileRegion` for zero-copy records in Fetch responses.
- :mod:`.messages`: one module per API family; one generated data class per request and response
  (``ProduceRequest``, ``FetchResponse``...), registries ``REQUESTS``, ``RESPONSES``,
  ``SUPPORTED_VERSIONS``, ``API_NAMES`` and the API key constants.
- :mod:`.connection`: framing and headers; :class:`~.connection.KafkaConnection` (broker side:
  ``receive_data`` / ``events`` → :class:`~.connection.Request`, ``encode_response`` /
  ``encode_response_parts``), :class:`~.connection.KafkaClientConnection` (tests and load generators).
- :mod:`.errors`: Kafka error codes (constants, names, retriable flags, messages) and the codec's
  exceptions (all fatal: close the connection).

Record batches are opaque bytes here: Produce hands them over as a ``memoryview``; Fetch takes bytes or
file regions. Parsing and validating batches belongs to the session and storage.

Rules: nothing here awaits or touches a socket or a clock; imports nothing of ours but ``wire._common``.
"""

from omnibus.wire.kafka import errors, messages, types
from omnibus.wire.kafka.connection import (DEFAULT_MAX_REQUEST_SIZE, NEED_DATA, KafkaClientConnection,
                                           KafkaConnection, Request, Response, decode_request, decode_response,
                                           encode_request, request_header_version, response_header_version)
from omnibus.wire.kafka.errors import (ConnectionDeadError, InvalidRequestSizeError, KafkaDecodeError,
                                       KafkaProtocolError, RequestTooLargeError, UnknownApiKeyError,
                                       UnsupportedVersionError)
from omnibus.wire.kafka.messages import API_NAMES, REQUESTS, RESPONSES, SUPPORTED_VERSIONS
from omnibus.wire.kafka.types import FileRegion

__all__ = [
    "errors", "messages", "types", "KafkaConnection", "KafkaClientConnection", "Request", "Response",
    "NEED_DATA", "DEFAULT_MAX_REQUEST_SIZE", "encode_request", "decode_request", "decode_response",
    "request_header_version", "response_header_version", "FileRegion", "REQUESTS", "RESPONSES",
    "SUPPORTED_VERSIONS", "API_NAMES", "KafkaProtocolError", "KafkaDecodeError", "InvalidRequestSizeError",
    "RequestTooLargeError", "UnknownApiKeyError", "UnsupportedVersionError", "ConnectionDeadError",
]
