"""Errors shared by the protocol codecs.

A codec raises :class:`ProtocolError` when the peer sent bytes that break the protocol. The session that
owns the codec maps it to the protocol's own answer (an AMQP connection.close with a reply code, a NATS
``-ERR``, a Kafka connection drop) and closes only that connection.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "FrameTooLargeError"]


class ProtocolError(Exception):
    """The peer broke the protocol. ``fatal`` says whether the connection must close."""

    def __init__(self, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.fatal = fatal


class FrameTooLargeError(ProtocolError):
    """A frame (or control line) is longer than the negotiated or configured maximum."""
