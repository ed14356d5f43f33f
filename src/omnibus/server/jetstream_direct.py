"""JetStream direct get: ``$JS.API.DIRECT.GET.<stream>`` (JSON request) and
``$JS.API.DIRECT.GET.<stream>.<subject>`` (last message on that subject), as nats-server 2.10
(stream.go processDirectGetRequest / processDirectGetLastBySubjectRequest / getDirectRequest).

Strategy: the answer is the stored message itself, not JSON: its own headers plus ``Nats-Stream``,
``Nats-Subject``, ``Nats-Sequence`` and ``Nats-Time-Stamp`` (RFC 3339 with nanoseconds, UTC), sent to
the request's reply subject; a miss is a ``NATS/1.0 404 Message Not Found`` status, a bad request a
``408`` status with nats-server's description. A stream without ``allow_direct`` has no responder (as in
nats-server, which subscribes these subjects only for such streams): the requester gets the 503
no-responders status if it asked for them.

Request fields: ``seq``, ``last_by_subj``, ``next_by_subj`` (with ``seq`` as the start), ``start_time``,
``batch`` (with ``Nats-Num-Pending``/``Nats-Last-Sequence`` headers and a ``204 EOB`` status at the
end), ``max_bytes``, ``no_hdr``. Not built: ``multi_last`` / ``up_to_seq`` / ``up_to_time`` (2.11
batch gets), answered 408 Bad Request.

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
#: nats-server's MaxPending default (server/opts.go MAX_PENDING_SIZE): the byte cap of one batch.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def rfc3339_nano(ms: int) -> str:
    """Go's ``time.RFC3339Nano`` of a UTC time in ms (fraction without trailing zeros)."""
    t = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    frac = ms % 1000
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        base += "." + f"{frac:03d}".rstrip("0")
    return base + "Z"


def _parse_time_ms(text: str) -> int:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    head, _, rest = text.partition(".")
    if rest:  # Python parses at most 6 fraction digits
        digits = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


def direct_get(api: "JetStreamAPI", session: "NatsSession", subject: str, reply: str | None,
               payload: bytes) -> None:
    if not reply:
        return
    rest = subject[len(DIRECT_GET_PREFIX):]
    name, _, key = rest.partition(".")
    stream = api.js._streams.get(name)
    if stream is None or not stream.config.allow_direct:
        if session.no_responders:
            session._send_no_responders(reply)
        return

    def status(code: int, text: str, headers: tuple = ()) -> None:
        for sub in api.router.trie.match(reply).values():
            sub.session._deliver(sub, enc.status_hmsg(reply, sub.sid_b, code, text, headers), 0)

    body = bytes(payload).strip()
    req: Any = {}
    if body:
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            status(408, "Malformed Request")
            return
        if not isinstance(req, dict):
            status(408, "Malformed Request")
            return
    elif not key:
        status(408, "Empty Request")
        return
    seq = req.get("seq") or 0
    last_for = req.get("last_by_subj") or ""
    next_for = req.get("next_by_subj") or ""
    start_time = req.get("start_time")
    batch = req.get("batch") or 0
    multi = req.get("multi_last")
    try:
        seq, batch = int(seq), int(batch)
        max_bytes = int(req.get("max_bytes") or 0) or DEFAULT_MAX_BYTES
    except (TypeError, ValueError):
        status(408, "Malformed Request")
        return
    if key:
        if last_for or next_for or multi or seq or batch or start_time or req.get("up_to_seq") or req.get("up_to_time"):
            status(408, "Bad Request")
            return
        last_for = key
    else:
        if not seq and not last_for and not next_for and not multi and start_time is None:
            status(408, "Empty Request")
            return
        if ((seq and last_for) or (seq and start_time is not None) or (start_time is not None and last_for)
                or (last_for and next_for) or (last_for and batch) or multi or req.get("up_to_seq")
                or req.get("up_to_time")):
            status(408, "Bad Request")
            return
    if start_time is not None:
        try:
            seq = stream.seq_for_time(_parse_time_ms(str(start_time)))
        except ValueError:
            status(408, "Malformed Request")
            return
    no_hdr = bool(req.get("no_hdr"))
    is_batch = batch > 0
    n = batch if is_batch else 1
    flt = next_for or None
    pending = _num_pending(stream, seq, flt) if is_batch else 0
    last = 0
    sent = 0
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n):
        try:
            if last_for:
                msg = stream.get_last_for_subject(last_for)
            elif seq and not flt and i == 0 and not is_batch:
                msg = stream.get(seq)
            else:
                msg = stream.get_next(max(seq, 1), flt)
        except st.JetStreamError:
            if is_batch and i > 0:
                break
            status(404, "Message Not Found")
            return
        seq = msg.seq + 1
        block = None
        if not no_hdr:
            extra = [("Nats-Stream", name.encode()), ("Nats-Subject", msg.subject.encode()),
                     ("Nats-Sequence", str(msg.seq).encode()),
                     ("Nats-Time-Stamp", rfc3339_nano(msg.timestamp).encode())]
            if is_batch:
                pending = max(pending - 1, 0)
                extra += [("Nats-Num-Pending", str(pending).encode()), ("Nats-Last-Sequence", str(last).encode())]
            block = st.encode_header_block(msg.headers, tuple(extra))
        last = msg.seq
        out.append((block, msg.payload))
        sent += len(msg.subject) + st.header_block_len(msg.headers) + len(msg.payload)
        if sent >= max_bytes:
            break
    subs = api.router.trie.match(reply).values()
    for block, data in out:
        for sub in subs:
            if block is not None and sub.session.headers:
                sub.session._deliver(sub, enc.hmsg(reply, sub.sid_b, None, block, data), len(data))
            else:
                sub.session._deliver(sub, enc.msg(reply, sub.sid_b, None, data), len(data))
    if is_batch:
        status(204, "EOB", (("Nats-Num-Pending", str(_num_pending(stream, seq, flt))),
                            ("Nats-Last-Sequence", str(last))))


def _num_pending(stream: Any, seq: int, flt: str | None) -> int:
    return stream.count_matching(max(seq, stream.first_seq, 1), st.make_filter(stream, flt))
