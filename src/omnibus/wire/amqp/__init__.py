"""AMQP 0-9-1 (RabbitMQ dialect), sans-IO (see design.md). The foundation the AMQP session uses.

Module map:
- :mod:`.errors`: reply codes, :class:`~.errors.AMQPError` (code, RabbitMQ's text, class/method ids, scope,
  closing action), Erlang term rendering for RabbitMQ's frame-error texts.
- :mod:`.fields`: field tables and arrays, every field type as RabbitMQ reads it.
- :mod:`.methods`: every method of connection, channel, access, exchange, queue, basic, confirm, tx as a
  NamedTuple, with decoders/encoders built from one declarative table.
- :mod:`.properties`: basic content properties: decode, encode, patch (x-death, expiration) keeping bytes.
- :mod:`.frames`: protocol header, frame constants and limits, server → client frame builders (hot:
  ``deliver``, ``ack``, ``nack``; also get-ok, return, close).
- :mod:`.states`: connection and channel transition tables ``{(state, input): next_state}``.
- :mod:`.connection`: :class:`~.connection.AMQPConnection`, the server side of one connection:
  ``receive_data`` / ``events`` / ``next_event`` / ``send`` (h11 style), content assembly, the
  basic.publish hot path.

Rules: nothing here awaits or touches a socket or a clock; imports nothing of ours but ``wire._common``.
Run ``python bench/amqp_codec.py`` before changing the hot paths.
"""

from omnibus.wire.amqp import errors, fields, frames, methods, properties, states
from omnibus.wire.amqp.connection import NEED_DATA, AMQPConnection, MethodFrame, ProtocolHeader, Publish
from omnibus.wire.amqp.errors import AMQPError

__all__ = ["errors", "fields", "frames", "methods", "properties", "states", "AMQPConnection", "AMQPError",
           "MethodFrame", "ProtocolHeader", "Publish", "NEED_DATA"]
