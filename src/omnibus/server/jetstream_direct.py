"""JetStream direct get: ``$JS.API.DIRECT.GET.<stream>`` (JSON request) and
``$JS.API.DIRECT.GET.<stream>.<subject>`` (last message on that subject), as nats-server 2.10
(stream.go processDirectGetRequest / processDirectGetLastBySubjectRequest / getDirectRequest).

Strategy: the answer is the stored message itself, not JSON: its own headers plus ``Nats-Stream``,
``Nats-Subject``, ``Nats-Sequence`` and ``Nats-Time-Stamp`` (RFC 3339 with nanoseconds, UTC), sent to
the request's reply subject; a miss is a ``NATS/1.0 404 Message Not Found`` status, a bad request a
``408`` status with nats-server's description. A stream without ``allow_direct`` has no responder (as in
nats-server, which subscribes these subjects only for such streams; its catch-all ``$JS.API.>``
subscription swallows the request, so the requester times out -- no 503, as observed with 2.9.10).

Request fields: ``seq``, ``last_by_subj``, ``next_by_subj`` (with ``seq`` as the start). As in 2.10,
the 2.11 batch fields (``batch``, ``max_bytes``, ``multi_last``, ``start_time``, ``up_to_*``) are not
known: ignored, one message is answered.

Rules: event-loop thread only.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson

from omnibus.core import streams as st
from omnibus.wire.nats import encoder as enc

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.jetstream import JetStreamAPI
    from omnibus.server.nats_session import NatsSession

DIRECT_GET_PREFIX = "$JS.API.DIRECT.GET."


def rfc3339_nano(ms: int) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC time in ms (fraction without trailing zeros)."""
    t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    frac = ms % 1000
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        base += "." + f"{frac:03d}".rstrip("0")
    return base + "Z"


def direct_get(api: "JetStreamAPI", session: "NatsSession", subject: str, reply: str | None,
               payload: bytes) -> None:
    """Answer one DIRECT.GET request (``session`` is the requester's; unused but for symmetry with the
    other entry points)."""
    if not reply:
        return
    name, _, key = subject[len(DIRECT_GET_PREFIX):].partition(".")
    stream = api.js._streams.get(name)
    if stream is None or not stream.config.allow_direct:
        return

    def status(code: int, text: str) -> None:
        for sub in api.router.trie.match(reply).values():
            sub.session._deliver(sub, enc.status_hmsg(reply, sub.sid_b, code, text), 0)

    body = bytes(payload).strip()
    req: Any = {}
    if body:
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict):
            status(408, "Malformed Request")
            return
    elif not key:
        status(408, "Empty Request")
        return
    seq = req.get("seq") or 0
    last_for = req.get("last_by_subj") or ""
    next_for = req.get("next_by_subj") or ""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(last_for, str) \
            or not isinstance(next_for, str):
        status(408, "Malformed Request")
        return
    if key:  # processDirectGetLastBySubjectRequest: the subject is the key, the body may not say more
        if last_for or next_for or seq:
            status(408, "Bad Request")
            return
        last_for = key
    elif not seq and not last_for and not next_for:
        status(408, "Empty Request")
        return
    elif (seq and last_for) or (last_for and next_for):
        status(408, "Bad Request")
        return
    try:
        if last_for:
            msg = stream.get_last_for_subject(last_for)
        elif next_for:
            msg = stream.get_next(max(seq, 1), next_for)
        else:
            msg = stream.get(seq)
    except st.JetStreamError:
        status(404, "Message Not Found")
        return
    block = st.encode_header_block(msg.headers, (
        ("Nats-Stream", name.encode()), ("Nats-Subject", msg.subject.encode()),
        ("Nats-Sequence", str(msg.seq).encode()), ("Nats-Time-Stamp", rfc3339_nano(msg.timestamp).encode())))
    data = msg.payload
    for sub in api.router.trie.match(reply).values():
        if sub.session.headers:
            sub.session._deliver(sub, enc.hmsg(reply, sub.sid_b, None, block, data), len(data))
        else:
            sub.session._deliver(sub, enc.msg(reply, sub.sid_b, None, data), len(data))
