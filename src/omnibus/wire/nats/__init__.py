"""The NATS client protocol, sans-IO (see design.md).

- :mod:`.parser`: bytes from a client → event tuples (:class:`~.parser.NatsParser`), errors as
  :class:`~.parser.NatsProtocolError` with nats-server's exact ``-ERR`` text.
- :mod:`.encoder`: server → client ops as ready-to-write bytes (INFO, MSG, HMSG, PING, PONG, +OK, -ERR).

Rules: nothing here awaits or touches a socket or a clock; imports nothing of ours but ``wire._common``.
"""

from omnibus.wire.nats import encoder
from omnibus.wire.nats.parser import (NEED_DATA, OP_CONNECT, OP_ERROR, OP_HPUB, OP_PING, OP_PONG, OP_PUB,
                                      OP_SUB, OP_UNSUB, NatsParser, NatsProtocolError)

__all__ = ["encoder", "NatsParser", "NatsProtocolError", "NEED_DATA", "OP_CONNECT", "OP_PUB", "OP_HPUB",
           "OP_SUB", "OP_UNSUB", "OP_PING", "OP_PONG", "OP_ERROR"]
