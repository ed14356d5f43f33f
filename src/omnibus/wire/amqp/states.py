"""Connection and channel state machines of AMQP 0-9-1 as transition tables (after h2's
``{(state, input): next_state}``; h11 ``_state.py`` "everything that affects the state machine lives here").

Rule: a (state, input) pair that is not in a table is a protocol error. :func:`connection_error` and
:func:`channel_error` say which one, with RabbitMQ 3.10's reply code and text (rabbit_reader.erl,
rabbit_channel.erl; observed on a real RabbitMQ 3.10.8):

- Connection, before connection.open is accepted (handshake): RabbitMQ answers any unexpected frame by
  closing the socket without a close method (rabbit_reader handle_exception → ``handshake_error``,
  after SILENT_CLOSE_DELAY = 3 s). Action :data:`~.errors.DROP`, code 504 "unexpected method in
  connection state <starting|tuning|opening>" for the log.
- Connection, OPEN: a method on channel 0 that is not connection.close/close-ok (or a server-only one)
  → 504 CHANNEL_ERROR "unexpected method in connection state running" with the method's ids
  (rabbit_reader handle_method0 last clause).
- Channel not open, a method other than channel.open → 504 CHANNEL_ERROR "expected 'channel.open'"
  (rabbit_channel handle_method, first clause); a content header or body → 505 UNEXPECTED_FRAME
  "expected method frame, got non method frame instead" (rabbit_command_assembler: the reader makes a
  channel for any frame on a new number, and the assembler sees the header first).
- Channel OPEN, channel.open again → 504 "second 'channel.open' seen"; channel.close-ok or flow-ok
  when none is awaited → 503 COMMAND_INVALID "unimplemented method".
- After the server sent connection.close (CLOSING), every frame but connection.close / close-ok is
  dropped (spec 2.2.4 / rabbit_reader closing state); after channel.close, every frame on that channel
  but channel.close / close-ok is dropped (spec 1.5.2.5 rule).

This module holds tables and pure functions only; :mod:`.connection` applies them.
"""

from __future__ import annotations

from enum import Enum

from omnibus.wire.amqp.errors import (CHANNEL_ERROR, COMMAND_INVALID, DROP, UNEXPECTED_FRAME, AMQPError,
                                      amqp_error)

__all__ = ["ConnectionState", "ConnectionInput", "ChannelState", "ChannelInput", "CONNECTION_TRANSITIONS",
           "CHANNEL_TRANSITIONS", "connection_next", "channel_next", "connection_error", "channel_error",
           "IGNORED"]


class ConnectionState(Enum):
    AWAITING_HEADER = "awaiting_header"  # nothing received yet
    HEADER_RECEIVED = "header_received"  # good protocol header in; server owes connection.start
    START_SENT = "start_sent"  # awaiting connection.start-ok
    START_OK_RECEIVED = "start_ok_received"  # server authenticates: secure, tune or close
    SECURE_SENT = "secure_sent"  # awaiting connection.secure-ok
    TUNE_SENT = "tune_sent"  # awaiting connection.tune-ok
    OPENING = "opening"  # tune-ok in; awaiting connection.open
    OPEN_RECEIVED = "open_received"  # server checks the vhost: open-ok or close
    OPEN = "open"  # running
    CLOSING = "closing"  # server sent connection.close; awaiting close-ok
    CLOSE_RECEIVED = "close_received"  # peer sent connection.close; server owes close-ok
    CLOSED = "closed"


class ConnectionInput(Enum):
    RECV_HEADER = "recv_header"
    SEND_START = "send_start"
    RECV_START_OK = "recv_start_ok"
    SEND_SECURE = "send_secure"
    RECV_SECURE_OK = "recv_secure_ok"
    SEND_TUNE = "send_tune"
    RECV_TUNE_OK = "recv_tune_ok"
    RECV_OPEN = "recv_open"
    SEND_OPEN_OK = "send_open_ok"
    RECV_CHANNEL_FRAME = "recv_channel_frame"  # any frame on a channel other than 0
    RECV_HEARTBEAT = "recv_heartbeat"
    RECV_METHOD = "recv_method"  # a channel-0 method with no transition of its own
    SEND_CLOSE = "send_close"
    RECV_CLOSE = "recv_close"
    SEND_CLOSE_OK = "send_close_ok"
    RECV_CLOSE_OK = "recv_close_ok"
    SEND_BLOCKED = "send_blocked"  # connection.blocked / unblocked / update-secret-ok (server → client)


class ChannelState(Enum):
    ABSENT = "absent"  # never opened, or closed and forgotten
    OPEN = "open"
    CLOSING = "closing"  # server sent channel.close; awaiting close-ok
    CLOSE_RECEIVED = "close_received"  # client sent channel.close; server owes close-ok


class ChannelInput(Enum):
    RECV_OPEN = "recv_open"
    RECV_METHOD = "recv_method"  # any other method
    RECV_CONTENT = "recv_content"  # content header or body frame
    RECV_CLOSE = "recv_close"
    RECV_CLOSE_OK = "recv_close_ok"
    SEND_CLOSE = "send_close"
    SEND_CLOSE_OK = "send_close_ok"
    SEND_METHOD = "send_method"  # anything else the server sends on the channel


#: Marks an input that is accepted and dropped (no event), e.g. frames after the server sent close.
IGNORED = "ignored"

S, I = ConnectionState, ConnectionInput
CONNECTION_TRANSITIONS: dict[tuple[ConnectionState, ConnectionInput], ConnectionState | str] = {
    (S.AWAITING_HEADER, I.RECV_HEADER): S.HEADER_RECEIVED,
    (S.HEADER_RECEIVED, I.SEND_START): S.START_SENT,
    (S.START_SENT, I.RECV_START_OK): S.START_OK_RECEIVED,
    (S.START_OK_RECEIVED, I.SEND_SECURE): S.SECURE_SENT,
    (S.SECURE_SENT, I.RECV_SECURE_OK): S.START_OK_RECEIVED,
    (S.START_OK_RECEIVED, I.SEND_TUNE): S.TUNE_SENT,
    (S.TUNE_SENT, I.RECV_TUNE_OK): S.OPENING,
    (S.OPENING, I.RECV_OPEN): S.OPEN_RECEIVED,
    (S.OPEN_RECEIVED, I.SEND_OPEN_OK): S.OPEN,
    (S.OPEN, I.RECV_CHANNEL_FRAME): S.OPEN,
    (S.OPEN, I.SEND_BLOCKED): S.OPEN,
    (S.OPEN, I.RECV_CLOSE): S.CLOSE_RECEIVED,
    (S.CLOSE_RECEIVED, I.SEND_CLOSE_OK): S.CLOSED,
    (S.CLOSE_RECEIVED, I.RECV_CHANNEL_FRAME): IGNORED,
    (S.CLOSE_RECEIVED, I.RECV_HEARTBEAT): IGNORED,
    (S.CLOSE_RECEIVED, I.RECV_METHOD): IGNORED,
    (S.CLOSING, I.RECV_CLOSE_OK): S.CLOSED,
    (S.CLOSING, I.RECV_CLOSE): S.CLOSING,  # both sides closed at once: answer close-ok, keep waiting
    (S.CLOSING, I.SEND_CLOSE_OK): S.CLOSING,
    (S.CLOSING, I.RECV_CHANNEL_FRAME): IGNORED,
    (S.CLOSING, I.RECV_HEARTBEAT): IGNORED,
    (S.CLOSING, I.RECV_METHOD): IGNORED,
    (S.CLOSING, I.RECV_OPEN): IGNORED,
    (S.CLOSING, I.RECV_TUNE_OK): IGNORED,
    (S.CLOSING, I.RECV_START_OK): IGNORED,
    (S.CLOSING, I.RECV_SECURE_OK): IGNORED,
}
# Pipelining: events() parses a whole read before the session answers, so a frame may arrive while the
# server still owes its reply (e.g. tune-ok + connection.open + channel.open in one read, as pika sends
# tune-ok and open together). The receive side treats "reply owed" states as if the reply had been sent;
# RabbitMQ, which answers each frame before reading the next, sees the same order.
CONNECTION_TRANSITIONS.update({
    (S.HEADER_RECEIVED, I.RECV_START_OK): S.START_OK_RECEIVED,
    (S.START_OK_RECEIVED, I.RECV_TUNE_OK): S.OPENING,
    (S.OPEN_RECEIVED, I.RECV_CHANNEL_FRAME): S.OPEN_RECEIVED,
    (S.OPEN_RECEIVED, I.RECV_CLOSE): S.CLOSE_RECEIVED,
})
#: Handshake order: a send whose own transition is missing but whose state was already passed on the
#: receive side (pipelining, above) is accepted without moving the state.
HANDSHAKE_ORDER = (S.HEADER_RECEIVED, S.START_SENT, S.START_OK_RECEIVED, S.SECURE_SENT, S.TUNE_SENT, S.OPENING,
                   S.OPEN_RECEIVED, S.OPEN)
SEND_NEEDS = {I.SEND_START: S.HEADER_RECEIVED, I.SEND_SECURE: S.START_OK_RECEIVED,
              I.SEND_TUNE: S.START_OK_RECEIVED, I.SEND_OPEN_OK: S.OPEN_RECEIVED}
# A heartbeat on channel 0 is accepted in every state once the header is in (rabbit_reader handle_frame:
# ``heartbeat -> State`` for channel 0, whatever the connection state).
for _s in (S.HEADER_RECEIVED, S.START_SENT, S.START_OK_RECEIVED, S.SECURE_SENT, S.TUNE_SENT, S.OPENING,
           S.OPEN_RECEIVED, S.OPEN):
    CONNECTION_TRANSITIONS[(_s, I.RECV_HEARTBEAT)] = _s
# The server may close at any point after it sent connection.start (e.g. auth refused, vhost refused).
for _s in (S.START_SENT, S.START_OK_RECEIVED, S.SECURE_SENT, S.TUNE_SENT, S.OPENING, S.OPEN_RECEIVED, S.OPEN):
    CONNECTION_TRANSITIONS[(_s, I.SEND_CLOSE)] = S.CLOSING
del _s

C, CI = ChannelState, ChannelInput
CHANNEL_TRANSITIONS: dict[tuple[ChannelState, ChannelInput], ChannelState | str] = {
    (C.ABSENT, CI.RECV_OPEN): C.OPEN,
    (C.OPEN, CI.RECV_METHOD): C.OPEN,
    (C.OPEN, CI.RECV_CONTENT): C.OPEN,
    (C.OPEN, CI.SEND_METHOD): C.OPEN,
    (C.OPEN, CI.RECV_CLOSE): C.CLOSE_RECEIVED,
    (C.OPEN, CI.SEND_CLOSE): C.CLOSING,
    (C.CLOSE_RECEIVED, CI.SEND_CLOSE_OK): C.ABSENT,
    (C.CLOSE_RECEIVED, CI.RECV_METHOD): IGNORED,
    (C.CLOSE_RECEIVED, CI.RECV_CONTENT): IGNORED,
    (C.CLOSING, CI.RECV_CLOSE_OK): C.ABSENT,
    (C.CLOSING, CI.RECV_CLOSE): C.CLOSING,  # both closed at once: answer close-ok, keep waiting
    (C.CLOSING, CI.SEND_CLOSE_OK): C.CLOSING,
    (C.CLOSING, CI.RECV_METHOD): IGNORED,
    (C.CLOSING, CI.RECV_CONTENT): IGNORED,
    (C.CLOSING, CI.RECV_OPEN): IGNORED,
}
del S, I, C, CI

#: RabbitMQ's name for the connection state, as it appears in "unexpected method in connection state ~w"
#: (rabbit_reader #v1.connection_state).
ERL_STATE = {
    ConnectionState.AWAITING_HEADER: "pre_init", ConnectionState.HEADER_RECEIVED: "starting",
    ConnectionState.START_SENT: "starting", ConnectionState.START_OK_RECEIVED: "starting",
    ConnectionState.SECURE_SENT: "securing", ConnectionState.TUNE_SENT: "tuning",
    ConnectionState.OPENING: "opening", ConnectionState.OPEN_RECEIVED: "running",
    ConnectionState.OPEN: "running", ConnectionState.CLOSING: "closing",
    ConnectionState.CLOSE_RECEIVED: "closing", ConnectionState.CLOSED: "closed",
}

#: States in which RabbitMQ answers any error by closing the socket without a word (rabbit_reader
#: handle_exception for connection_state starting/securing/tuning: a handshake_error, logged, then the
#: socket is closed after ?SILENT_CLOSE_DELAY = 3 s). Observed on RabbitMQ 3.10.8 for an unexpected
#: method, a frame over frame_max, a bad frame end, an unknown frame type and bad tune-ok values
#: (tests/server/test_amqp_raw.py, OMNIBUS_AMQP_AGAINST=rabbitmq). In ``opening`` (tune-ok in, awaiting
#: connection.open) RabbitMQ does answer with connection.close (send_error_on_channel0_and_close).
_HANDSHAKE = frozenset((ConnectionState.AWAITING_HEADER, ConnectionState.HEADER_RECEIVED,
                        ConnectionState.START_SENT, ConnectionState.START_OK_RECEIVED,
                        ConnectionState.SECURE_SENT, ConnectionState.TUNE_SENT))
SILENT_STATES = _HANDSHAKE
# OPEN_RECEIVED counts as running: RabbitMQ answers open-ok before it reads the next frame.


def connection_next(state: ConnectionState, inp: ConnectionInput) -> ConnectionState | str | None:
    """The next state, :data:`IGNORED`, or None when the pair is a protocol error."""
    return CONNECTION_TRANSITIONS.get((state, inp))


def channel_next(state: ChannelState, inp: ChannelInput) -> ChannelState | str | None:
    return CHANNEL_TRANSITIONS.get((state, inp))


def connection_error(state: ConnectionState, inp: ConnectionInput, class_id: int = 0,
                     method_id: int = 0) -> AMQPError:
    """The error for a (state, input) pair missing from :data:`CONNECTION_TRANSITIONS`."""
    text = f"unexpected method in connection state {ERL_STATE[state]}"
    if state in _HANDSHAKE:
        return amqp_error(CHANNEL_ERROR, text, class_id, method_id, action=DROP)
    if inp.name.startswith("SEND_"):
        # the session tried to send something the state does not allow: a bug on our side
        raise ValueError(f"cannot {inp.value} in connection state {state.value}")
    return amqp_error(CHANNEL_ERROR, text, class_id, method_id)


def channel_error(state: ChannelState, inp: ChannelInput, channel: int, class_id: int = 0,
                  method_id: int = 0) -> AMQPError:
    """The error for a (state, input) pair missing from :data:`CHANNEL_TRANSITIONS`."""
    if inp.name.startswith("SEND_"):
        raise ValueError(f"cannot {inp.value} on channel {channel} in state {state.value}")
    if state is ChannelState.ABSENT:
        if inp is ChannelInput.RECV_CONTENT:
            return amqp_error(UNEXPECTED_FRAME, "expected method frame, got non method frame instead",
                              channel=channel)
        return amqp_error(CHANNEL_ERROR, "expected 'channel.open'", class_id, method_id, channel=channel)
    if inp is ChannelInput.RECV_OPEN:
        return amqp_error(CHANNEL_ERROR, "second 'channel.open' seen", class_id, method_id, channel=channel)
    return amqp_error(COMMAND_INVALID, "unimplemented method", class_id, method_id, channel=channel)
