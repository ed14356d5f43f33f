"""JetStream on the NATS listener, first slice: the JSON API on ``$JS.API.>``, stream publishes with
PubAcks sent only once durable, pull consumers and acks, over the protocol-neutral core
(core/stream_registry.py, core/streams.py, core/stream_consumers.py).

Strategy: the NATS session hands every PUB whose subject starts with ``$JS.`` or belongs to a stream to
:class:`JetStreamAPI` before its normal routing (a stream publish still reaches plain subscribers, as in
nats-server). API requests are answered with nats-server's JSON shapes (server/jetstream_api.go) on the
request's reply subject; errors carry nats-server's ``code``/``err_code``/``description``
(server/errors.json, mapped below from the core's named exceptions).

Built: ``$JS.API.INFO``; ``STREAM.CREATE/UPDATE/INFO/DELETE/PURGE/NAMES/LIST``; ``STREAM.MSG.GET/DELETE``;
``CONSUMER.CREATE`` (with and without a name in the subject), ``CONSUMER.DURABLE.CREATE``,
``CONSUMER.INFO/DELETE/NAMES/LIST``; ``CONSUMER.MSG.NEXT`` (batch, expires, no_wait; 404/408 statuses);
acks ``+ACK``/``-NAK``/``+TERM``/``+WPI`` on ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``;
redelivery after ack_wait, pull-request idle heartbeats and ``inactive_threshold`` cleanup (a 0.25 s
sweep); push consumers with interest, queue groups, flow control and idle heartbeats
(jetstream_push.py, ``$JS.FC.`` replies); ``DIRECT.GET`` (jetstream_direct.py). Key-value buckets
(ADR-8) need nothing of their own: they are streams with roll-ups, per-subject limits, expectations and
direct gets, all built. Consumer configs and stream configs go out as nats-server writes them
(``omitempty`` fields left out, times in RFC 3339); error answers carry the request's response ``type``.
``max_age`` is enforced on time (the sweep, plus a timer for an expiry due before the next one);
``+NXT`` acks and asks for more (``_next_request``).
Not yet: advisories, ``rate_limit_bps``.

Rules: event-loop thread only; PubAck only after ``Log.when_durable``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

import orjson

from omnibus.core import stream_consumers as sc
from omnibus.core import streams as st
from omnibus.core.clock import SystemClock
from omnibus.core.stream_registry import JetStream
from omnibus.server.jetstream_direct import DIRECT_GET_PREFIX, direct_get
from omnibus.server.jetstream_push import FC_PREFIX, PushDelivery
from omnibus.wire.nats import encoder as enc

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.nats_session import NatsRouter, NatsSession

API_PREFIX = "$JS.API."
ACK_PREFIX = "$JS.ACK."
#: How often unacked deliveries are checked against ack_wait, and pull requests against expires.
SWEEP_INTERVAL_S = 0.25
#: nats-server's JetStream API limits (jetstream_api.go JSApiNamesLimit / JSApiListLimit).
NAMES_LIMIT = 1024
LIST_LIMIT = 256
#: STREAM.INFO's page of per-subject counts (JSMaxSubjectDetails).
SUBJECTS_LIMIT = 100_000

#: Core exceptions -> (HTTP-like code, nats-server err_code) from server/errors.json.
ERRORS: dict[type, tuple[int, int]] = {
    st.StreamNotFound: (404, 10059), st.StreamMismatch: (400, 10056), st.StreamNameExists: (400, 10058),
    st.StreamSubjectOverlap: (400, 10065),
    st.StreamConfigInvalid: (500, 10052), st.StreamReplicasNotSupported: (500, 10074),
    st.MaximumStreamsReached: (400, 10027), st.StreamNotMatch: (400, 10060), st.WrongLastSequence: (400, 10071),
    st.WrongLastMsgId: (400, 10070), st.MessageTooLarge: (400, 10054), st.HeaderTooLarge: (400, 10097),
    st.SequenceNotFound: (400, 10043), st.NoMessageFound: (404, 10037), st.StoreFailed: (503, 10077),
    st.StreamFailed: (503, 10077), st.RollupFailed: (500, 10111), st.PurgeFailed: (500, 10110),
    st.MsgDeleteFailed: (500, 10057), st.StreamSealed: (400, 10109),
    sc.ConsumerNotFound: (404, 10014), sc.ConsumerAlreadyExists: (400, 10148),
    sc.ConsumerDoesNotExist: (400, 10149), sc.ConsumerNameExists: (400, 10013),
    sc.ConsumerCreateFailed: (500, 10012), sc.MaximumConsumersReached: (400, 10026),
    sc.ConsumerBadDurableName: (400, 10103), sc.ConsumerWQRequiresExplicitAck: (400, 10098),
    sc.ConsumerWQConsumerNotUnique: (400, 10100), sc.ConsumerWQConsumerNotDeliverAll: (400, 10101),
    sc.ConsumerOverlappingSubjectFilters: (400, 10138), sc.ConsumerInvalidPolicy: (400, 10094),
    st.ReplicasCountNegative: (400, 10133), st.ExpectedLastSubjectSequenceMissing: (400, 10193),
    sc.ConsumerNameTooLong: (400, 10102), sc.ConsumerDescriptionTooLong: (400, 10107),
    sc.ConsumerMetadataTooLong: (400, 10135), sc.ConsumerInvalidSampling: (400, 10095),
    sc.ConsumerAckPolicyInvalid: (400, 10181), sc.ConsumerReplayPolicyInvalid: (400, 10182),
    sc.ConsumerAckWaitNegative: (400, 10183), sc.ConsumerBackOffNegative: (400, 10184),
    sc.ConsumerMaxDeliverBackoff: (400, 10116), sc.ConsumerDeliverToWildcards: (400, 10079),
    sc.ConsumerInvalidDeliverSubject: (400, 10112), sc.ConsumerDeliverCycle: (400, 10081),
    sc.ConsumerPushMaxWaiting: (400, 10080), sc.ConsumerMaxPendingAckPolicyRequired: (400, 10082),
    sc.ConsumerSmallHeartbeat: (400, 10083), sc.ConsumerPullRequiresAck: (400, 10084),
    sc.ConsumerPullWithRateLimit: (400, 10086), sc.ConsumerMaxWaitingNegative: (400, 10087),
    sc.ConsumerHeartbeatRequiresPush: (400, 10088), sc.ConsumerFlowControlRequiresPush: (400, 10089),
    sc.ConsumerDirectRequiresPush: (400, 10090), sc.ConsumerDirectRequiresEphemeral: (400, 10091),
    sc.ConsumerMaxRequestBatchNegative: (400, 10114), sc.ConsumerMaxRequestExpiresTooSmall: (400, 10115),
    sc.ConsumerFlowControlNeedsHeartbeats: (400, 10108), sc.ConsumerMaxPendingAckExcess: (400, 10121),
    sc.ConsumerInactiveThresholdExcess: (400, 10153), sc.ConsumerReplicasExceedsStream: (400, 10126),
    sc.ConsumerReplicasShouldMatchStream: (400, 10134), sc.ConsumerDuplicateFilterSubjects: (400, 10136),
    sc.ConsumerEmptyFilter: (400, 10139), sc.ConsumerDurableNameMismatch: (400, 10132),
    sc.ConsumerWQMultipleUnfiltered: (400, 10099), sc.ConsumerPriorityGroupWithPolicyNone: (400, 10196),
    sc.ConsumerPinnedTTLWithoutPriorityPolicyNone: (400, 10197), st.InvalidJSON: (400, 10025),
    sc.ConsumerNameMismatch: (400, 10017), sc.ConsumerEphemeralWithDurableName: (400, 10020),
    sc.ConsumerFilterNotSubset: (400, 10093),
}
#: Any other refusal (a config rule without an entry above): nats-server's generic bad request.
GENERIC_ERROR = (400, 10003)


def _iso(ms: int) -> str:
    """A ms timestamp as Go's RFC3339Nano writes it: UTC, trailing zeros of the fraction dropped."""
    frac = ms % 1000
    base = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:03d}".rstrip("0") + "Z" if frac else base + "Z"


#: A stream publish's Publish options, all None (read from the headers), and a fast tuple constructor
#: (the NamedTuple's generated __new__ costs a Python call per publish).
_NO_OPTIONS = (None,) * 7
_new_tuple = tuple.__new__


def _error(e: Exception) -> dict[str, Any]:
    code, err_code = ERRORS.get(type(e), GENERIC_ERROR)
    return {"error": {"code": code, "err_code": err_code, "description": str(e)}}


def _typed(op: str, answer: dict[str, Any]) -> dict[str, Any]:
    """An API error answer with the request's response ``type`` first, as nats-server writes it (its
    responses embed ApiResponse); a purge's also carries ``"purged": 0`` (not omitempty there)."""
    tokens = op.split(".")
    kind = tokens[1] if len(tokens) > 1 else ""
    if tokens[0] == "INFO":
        name = "account_info"
    elif tokens[0] == "STREAM" and kind == "MSG" and len(tokens) > 2:
        name = f"stream_msg_{tokens[2].lower()}"
    elif tokens[0] in ("STREAM", "CONSUMER") and kind:
        name = f"{tokens[0].lower()}_{'create' if kind == 'DURABLE' else kind.lower()}"
    else:
        return answer
    out = {"type": f"io.nats.jetstream.api.v1.{name}_response", **answer}
    if name == "stream_purge":
        out["purged"] = 0
    return out


class JetStreamAPI:
    """Broker-wide JetStream state on top of the NATS router. Event-loop thread only."""

    def __init__(self, router: "NatsRouter") -> None:
        self.router = router
        server = router.server
        # Streams enforce their own limits (max_age, max_bytes ...): their logs have no broker retention.
        self.js = JetStream(open_log=lambda name, storage: server.open_unbounded_log(f"jetstream/{name}"),
                            delete_log=lambda name: server.delete_log(f"jetstream/{name}"),
                            meta=server.meta, clock=SystemClock())
        self.js.restore()
        #: The registry's live name -> Stream dict (read-only here): an empty one lets every core NATS
        #: publish skip the stream lookup with one truth test.
        self.streams = self.js._streams
        #: stream -> (publishes, reply subjects) waiting for this loop turn's batch (``_flush_staged``).
        self._staged: dict[Any, tuple[list, list]] = {}
        self._looked_up: tuple[str, Any] = ("", None)
        #: (due ms, handle) of the timer for the next pull-request expiry or heartbeat, if armed.
        self._pull_timer: tuple[int, asyncio.TimerHandle] | None = None
        #: Push consumers (deliver_subject): interest, flow control, heartbeats (jetstream_push.py).
        self.push = PushDelivery(self)
        for stream in self.js.streams():
            for consumer in list(stream.consumers.values()):
                self.push.track(consumer)
        #: The max_age timer (``_arm_expiry``), when one is due before the next sweep.
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._sweep)

    # -- entry points from the NATS session ------------------------------------------------------------
    def handles(self, subject: str) -> bool:
        if subject.startswith("$JS."):
            return True
        stream = self.js.stream_for_subject(subject)
        self._looked_up = (subject, stream)  # publish() right after reuses the lookup
        return stream is not None

    def publish(self, session: "NatsSession", subject: str, reply: str | None, headers: bytes | None,
                payload: bytes) -> bool:
        """Handle a PUB; True if it was a JetStream API/ack message (not to be routed further)."""
        if subject[0] == "$":
            if self._staged:  # API requests and acks see every publish that came before them
                self._flush_staged()
            if subject.startswith(API_PREFIX):
                if subject.startswith(DIRECT_GET_PREFIX):
                    direct_get(self, session, subject, reply, payload)
                else:
                    self._api(subject[len(API_PREFIX):], reply, payload)
                return True
            if subject.startswith(ACK_PREFIX):
                self._ack(subject, reply, payload)
                return True
            if subject.startswith(FC_PREFIX):
                self.push.flow_control_reply(subject)
                return True
        looked_up = self._looked_up
        stream = looked_up[1] if looked_up[0] is subject else self.js.stream_for_subject(subject)
        if stream is not None:
            self._stage(stream, subject, reply, headers, payload)
        return False

    # -- replies ---------------------------------------------------------------------------------------
    def _reply(self, reply: str | None, obj: dict[str, Any]) -> None:
        if reply:
            self.router.publish_external(reply, orjson.dumps(obj))

    def _status(self, inbox: str, code: int, description: str, headers: tuple = ()) -> None:
        for sub in self.router.trie.match(inbox).values():
            sub.session._deliver(sub, enc.status_hmsg(inbox, sub.sid_b, code, description, headers), 0)

    def _pull_status(self, req: Any, code: int, description: str) -> None:
        """408/409 ending a pull request, with what it had left (consumer.go: Nats-Pending-Messages /
        Nats-Pending-Bytes)."""
        self._status(req.token, code, description, (("Nats-Pending-Messages", str(max(req.remaining, 0))),
                                                    ("Nats-Pending-Bytes", str(max(req.bytes_left, 0)))))

    # -- stream publishes ------------------------------------------------------------------------------
    def _stage(self, stream: Any, subject: str, reply: str | None, headers: bytes | None,
               payload: bytes) -> None:
        """Queue a stream publish; the publishes of one loop turn are stored as one batch per stream
        (one write, one durability wait) by :meth:`_flush_staged`, in arrival order."""
        staged = self._staged
        if not staged:
            asyncio.get_running_loop().call_soon(self._flush_staged)
        entry = staged.get(stream)
        if entry is None:
            entry = staged[stream] = ([], [])
        entry[0].append(_new_tuple(st.Publish, (subject, payload, headers, *_NO_OPTIONS)))
        entry[1].append(reply)

    def _flush_staged(self) -> None:
        staged = self._staged
        if not staged:
            return
        self._staged = {}
        for stream, (publishes, replies) in staged.items():
            try:
                results = stream.append_many(publishes)
            except st.JetStreamError as e:  # the stream failed (log error) or closed
                for reply in replies:
                    self._reply(reply, _error(e))
                continue
            self._serve(stream)
            durable_at = -1
            later: list[tuple[str, bytes]] = []
            head = b'{"stream":' + orjson.dumps(stream.name) + b',"seq":'  # nats-server's PubAck JSON
            for reply, ack in zip(replies, results):
                if not reply:
                    continue
                if isinstance(ack, st.JetStreamError):
                    body = orjson.dumps(_error(ack))
                else:
                    body = head + (b'%d,"duplicate":true}' % ack.seq if ack.duplicate else b"%d}" % ack.seq)
                    if ack.offset >= 0:
                        durable_at = ack.offset
                if durable_at < 0:  # nothing of this call before it waits for the disk
                    self.router.publish_external(reply, body)
                else:  # PubAcks keep publish order: after a stored message, the rest wait too
                    later.append((reply, body))
            if later:
                stream.log.when_durable(durable_at, lambda later=later: self._reply_all(later))

    def _reply_all(self, replies: list[tuple[str, bytes]]) -> None:
        publish = self.router.publish_external
        for reply, body in replies:
            publish(reply, body)

    # -- the JSON API ----------------------------------------------------------------------------------
    def _api(self, op: str, reply: str | None, payload: bytes) -> None:
        try:
            req = orjson.loads(payload) if payload.strip() else {}
        except orjson.JSONDecodeError:
            self._reply(reply, _typed(op, {"error": {"code": 400, "err_code": 10025, "description": "invalid JSON"}}))
            return
        try:
            result = self._dispatch(op, req, reply)
            if result is not None:  # CONSUMER.MSG.NEXT answers with messages, not JSON
                self._reply(reply, result)
        except st.JetStreamError as e:
            self._reply(reply, _typed(op, _error(e)))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            self._reply(reply, _typed(op, {"error": {"code": 400, "err_code": 10025,
                                                     "description": f"bad request: {e}"}}))

    def _dispatch(self, op: str, req: Any, reply: str | None) -> dict[str, Any] | None:
        js = self.js
        tokens = op.split(".")
        head = tokens[0]
        if op == "INFO":
            return {"type": "io.nats.jetstream.api.v1.account_info_response", "memory": 0,
                    "storage": sum(s.state().bytes for s in js.streams()), "streams": len(js.streams()),
                    "consumers": sum(len(s.consumers) for s in js.streams()),
                    "limits": {"max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
                               "max_ack_pending": -1, "memory_max_stream_bytes": -1,
                               "storage_max_stream_bytes": -1, "max_bytes_required": False},
                    "api": {"total": 0, "errors": 0}}
        if head == "STREAM" and len(tokens) >= 2:
            kind = tokens[1]
            name = ".".join(tokens[2:]) if kind not in ("NAMES", "LIST", "MSG") else None
            if kind in ("CREATE", "UPDATE") and req.get("name") != name:
                raise st.StreamMismatch()  # jsStreamCreateRequest: the body's name must be the subject's
            if kind == "CREATE":
                stream, created = js.add_stream(st.StreamConfig.from_dict(req))
                return self._stream_info(stream, "stream_create_response", did_create=created)
            if kind == "UPDATE":
                stream = js.update_stream(st.StreamConfig.from_dict(req))
                return self._stream_info(stream, "stream_update_response")
            if kind == "INFO":
                info = self._stream_info(js.stream(name), "stream_info_response",
                                         subjects_filter=req.get("subjects_filter") or None,
                                         deleted_details=bool(req.get("deleted_details")))
                subjects = info["state"].get("subjects")  # the response is paged over them (ApiPaged)
                info.update(total=len(subjects) if subjects else 0, offset=0,
                            limit=SUBJECTS_LIMIT if subjects else 0)
                return info
            if kind == "DELETE":
                js.delete_stream(name)
                self.push.forget_gone()
                return {"type": "io.nats.jetstream.api.v1.stream_delete_response", "success": True}
            if kind == "PURGE":
                purged = js.stream(name).purge(req.get("filter"), req.get("keep"), req.get("seq"))
                return {"type": "io.nats.jetstream.api.v1.stream_purge_response", "success": True,
                        "purged": purged}
            if kind == "NAMES":
                names = sorted(js.stream_names(req.get("subject")))
                offset, page = _page(names, req, NAMES_LIMIT)
                return {"type": "io.nats.jetstream.api.v1.stream_names_response", "total": len(names),
                        "offset": offset, "limit": NAMES_LIMIT, "streams": page}
            if kind == "LIST":
                names = js.stream_names(req.get("subject"))
                offset, page = _page(names, req, LIST_LIMIT)
                return {"type": "io.nats.jetstream.api.v1.stream_list_response", "total": len(names),
                        "offset": offset, "limit": LIST_LIMIT,
                        "streams": [self._stream_info(js.stream(n), None) for n in page]}
            if kind == "MSG" and len(tokens) >= 4 and tokens[2] == "GET":
                stream = js.stream(".".join(tokens[3:]))
                if req.get("last_by_subj"):
                    msg = stream.get_last_for_subject(req["last_by_subj"])
                elif req.get("next_by_subj"):
                    msg = stream.get_next(max(int(req.get("seq") or 0), 1), req["next_by_subj"])
                else:
                    msg = stream.get(int(req["seq"]))
                out = {"subject": msg.subject, "seq": msg.seq, "data": _b64(msg.payload), "time": _iso(msg.timestamp)}
                block = msg.header_block()
                if block:
                    out["hdrs"] = _b64(block)
                return {"type": "io.nats.jetstream.api.v1.stream_msg_get_response", "message": out}
            if kind == "MSG" and len(tokens) >= 4 and tokens[2] == "DELETE":
                stream = js.stream(".".join(tokens[3:]))
                if not req:  # isEmptyRequest: no body, or {}
                    raise st.BadRequest()
                stream.delete_msg(int(req.get("seq") or 0))  # no_erase: nothing is overwritten anyway
                return {"type": "io.nats.jetstream.api.v1.stream_msg_delete_response", "success": True}
        if head == "CONSUMER" and len(tokens) >= 3:
            kind = tokens[1]
            if kind in ("CREATE", "DURABLE"):
                if kind == "DURABLE":  # CONSUMER.DURABLE.CREATE.<stream>.<durable>
                    stream_name, name = tokens[3], tokens[4] if len(tokens) > 4 else None
                else:  # CONSUMER.CREATE.<stream>[.<name>[.<filter>]]
                    stream_name, name = tokens[2], tokens[3] if len(tokens) > 3 else None
                if req.get("stream_name") != stream_name:
                    raise st.StreamMismatch()  # jsConsumerCreateRequest
                cfg = sc.ConsumerConfig.from_dict(_consumer_config_in(req.get("config", {})))
                if kind == "CREATE" and name is None and cfg.durable_name:
                    raise sc.ConsumerEphemeralWithDurableName()  # the legacy ephemeral endpoint
                consumer, _created = js.add_consumer(stream_name, cfg, action=req.get("action", ""), name=name)
                # Push delivery starts after this reply has gone out.
                asyncio.get_running_loop().call_soon(self.push.track, consumer)
                return self._consumer_info(consumer, "consumer_create_response")
            if kind == "INFO":
                return self._consumer_info(js.consumer(tokens[2], tokens[3]), "consumer_info_response")
            if kind == "DELETE":
                js.delete_consumer(tokens[2], tokens[3])
                self.push.forget_gone()
                return {"type": "io.nats.jetstream.api.v1.consumer_delete_response", "success": True}
            if kind == "NAMES":
                names = sorted(js.consumer_names(tokens[2]))
                offset, page = _page(names, req, NAMES_LIMIT)
                return {"type": "io.nats.jetstream.api.v1.consumer_names_response", "total": len(names),
                        "offset": offset, "limit": NAMES_LIMIT, "consumers": page}
            if kind == "LIST":
                stream = js.stream(tokens[2])
                names = sorted(stream.consumers)
                offset, page = _page(names, req, LIST_LIMIT)
                return {"type": "io.nats.jetstream.api.v1.consumer_list_response", "total": len(names),
                        "offset": offset, "limit": LIST_LIMIT,
                        "consumers": [self._consumer_info(stream.consumers[n], None) for n in page]}
            if kind == "MSG" and len(tokens) >= 5 and tokens[2] == "NEXT":
                try:
                    consumer = js.consumer(tokens[3], tokens[4])
                except st.JetStreamError:  # no such consumer: nobody answers (as nats-server), rather than
                    return None  # a JSON error a client's fetch would take for a message
                self._pull(consumer, req, reply)
                return None
        return {"error": {"code": 400, "err_code": 10003, "description": "bad request"}}

    def _stream_info(self, stream: Any, kind: str | None, did_create: bool | None = None, *,
                     subjects_filter: str | None = None, deleted_details: bool = False) -> dict[str, Any]:
        state = stream.state(subjects_filter=subjects_filter, deleted_details=deleted_details)
        info: dict[str, Any] = {"config": _stream_config_out(stream.config), "created": _iso(stream.created_ms),
                                "state": _state_dict(state), "ts": _iso(stream.clock.now_ms())}
        if kind is not None:
            info["type"] = f"io.nats.jetstream.api.v1.{kind}"
        if did_create is not None:
            info["did_create"] = did_create
        return info

    def _consumer_info(self, consumer: Any, kind: str | None) -> dict[str, Any]:
        i = consumer.info()
        out = {"stream_name": i.stream_name, "name": i.name, "created": _iso(i.created),
               "config": _consumer_config_out(i.config),
               "delivered": {"consumer_seq": i.delivered.consumer_seq, "stream_seq": i.delivered.stream_seq},
               "ack_floor": {"consumer_seq": i.ack_floor.consumer_seq, "stream_seq": i.ack_floor.stream_seq},
               "num_ack_pending": i.num_ack_pending, "num_redelivered": i.num_redelivered,
               "num_waiting": i.num_waiting, "num_pending": i.num_pending, "ts": _iso(SystemClock().now_ms())}
        if i.push_bound:
            out["push_bound"] = True  # omitempty in nats-server
        if kind is not None:
            out["type"] = f"io.nats.jetstream.api.v1.{kind}"
        return out

    # -- pull consumers and acks -----------------------------------------------------------------------
    def _pull(self, consumer: Any, req: Any, reply: str | None) -> None:
        if not reply:
            return
        if isinstance(req, int):
            req = {"batch": req}
        expires_ns = int(req.get("expires", 0))
        # Rounded up: nats-py's follow-up request of a fetch can carry well under 1 ms, and it must
        # still expire (as 0 it would wait forever and take the next message from a later fetch).
        expires_ms = -(-expires_ns // 1_000_000) if expires_ns > 0 else 0
        try:
            consumer.pull(int(req.get("batch", 1)), expires_ms=expires_ms, no_wait=bool(req.get("no_wait")),
                          max_bytes=int(req.get("max_bytes", 0)), token=reply,
                          heartbeat_ms=int(req.get("idle_heartbeat", 0) or 0) // 1_000_000)
        except sc.PullRequestRefused as e:
            self._status(reply, e.status, str(e))
            return
        self._serve_consumer(consumer)
        if consumer.num_waiting:
            req = consumer.waiting_requests()[-1]
            if req.expires_ms or req.heartbeat_ms:
                due = min(t for t in (req.expires_ms, req.received_ms + req.heartbeat_ms if req.heartbeat_ms else 0) if t)
                self._arm_pull_timer(due)

    def _serve(self, stream: Any) -> None:
        for consumer in list(stream.consumers.values()):
            self._serve_consumer(consumer)

    def _serve_consumer(self, consumer: Any) -> None:
        if consumer.config.deliver_subject:
            self.push.serve(consumer)
            return
        if not consumer._waiting:
            return
        # Hot path (pull consume): one ack-subject prefix per consumer, tuple unpacking, one encode per
        # message per subscriber of the request's inbox.
        prefix = f"{ACK_PREFIX}{consumer.stream.name}.{consumer.name}."
        hmsg, msg = enc.hmsg, enc.msg
        for outcome in consumer.serve_pulls():
            inbox = outcome.request.token
            if outcome.messages:
                outcome.request.last_hb_ms = consumer.clock.now_ms()
            subs = list(self.router.trie.match(inbox).values())
            if len(subs) == 1 and not subs[0].max_msgs and not subs[0].session.closed:
                # One subscriber without auto-unsubscribe (the usual fetch inbox): one write for the lot.
                sub = subs[0]
                sid = sub.sid_b
                frames = []
                size = 0
                for sseq, cseq, dc, pending, subject, payload, headers, ts in outcome.messages:
                    ack = f"{prefix}{dc}.{sseq}.{cseq}.{ts * 1_000_000}.{pending}"
                    if headers:
                        frames.append(hmsg(subject, sid, ack, sc.encode_header_block(headers), payload))
                    else:
                        frames.append(msg(subject, sid, ack, payload))
                    size += len(payload)
                if frames:
                    session = sub.session
                    session.conn.write(b"".join(frames))
                    session.out_msgs += len(frames)
                    session.out_bytes += size
                    sub.delivered += len(frames)
            elif subs:
                for sseq, cseq, dc, pending, subject, payload, headers, ts in outcome.messages:
                    ack = f"{prefix}{dc}.{sseq}.{cseq}.{ts * 1_000_000}.{pending}"
                    block = sc.encode_header_block(headers) if headers else None
                    for sub in subs:
                        if block:
                            data = hmsg(subject, sub.sid_b, ack, block, payload)
                        else:
                            data = msg(subject, sub.sid_b, ack, payload)
                        sub.session._deliver(sub, data, len(payload))
            if outcome.finished == sc.PULL_NO_MESSAGES:
                self._status(inbox, 404, "No Messages")
            elif outcome.finished == sc.PULL_EXPIRED:
                self._pull_status(outcome.request, 408, "Request Timeout")
            elif outcome.finished == sc.PULL_MAX_BYTES:
                self._pull_status(outcome.request, 409, "Message Size Exceeds MaxBytes")

    def ack(self, subject: str, reply: str | None, payload: bytes) -> None:
        """A PUB to ``$JS.ACK.>`` straight from the NATS session (the hot path of every consumer)."""
        if self._staged:  # acks see every publish that came before them
            self._flush_staged()
        self._ack(subject, reply, payload)

    def _ack(self, subject: str, reply: str | None, payload: bytes) -> None:
        tokens = subject[len(ACK_PREFIX):].split(".")
        if len(tokens) < 7:
            return
        try:
            consumer = self.js.consumer(tokens[0], tokens[1])
            sseq = int(tokens[3])
        except (st.JetStreamError, ValueError):
            return
        body = payload.strip() if type(payload) is bytes else bytes(payload).strip()
        if not body or body == b"+ACK":
            consumer.ack(sseq)
        elif body.startswith(b"-NAK"):
            delay = None
            rest = body[4:].strip()
            if rest.startswith(b"{"):
                try:
                    delay = int(orjson.loads(rest).get("delay", 0)) // 1_000_000 or None
                except (orjson.JSONDecodeError, AttributeError, ValueError):
                    delay = None
            consumer.nak(sseq, delay)
        elif body.startswith(b"+TERM"):
            consumer.term(sseq)
        elif body == b"+WPI":
            consumer.in_progress(sseq)
        elif body.startswith(b"+NXT"):  # ack, then a pull request answered on the ack's reply subject
            consumer.ack(sseq)
            self._pull(consumer, _next_request(body[4:]), reply)
            return
        if reply:  # ack_sync / double ack: an empty reply confirms
            self.router.publish_external(reply, b"")
        self._serve_consumer(consumer)

    def _sweep(self) -> None:
        """ack_wait redeliveries and pull expiry, then flush consumer state."""
        now = SystemClock().now_ms()
        self.js.expire(now)  # max_age (and de-duplication ids past their window)
        self._arm_expiry(now)
        for stream in self.js.streams():
            for consumer in list(stream.consumers.values()):
                consumer.redeliveries_due(now)
                self._serve_consumer(consumer)
        self._pull_timers(now)
        if self.js.expire_inactive_consumers(now):  # inactive_threshold (ephemerals: 5 s by default)
            self.push.forget_gone()
        self.push.check_interest()
        self.js.flush()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL_S, self._sweep)

    def _arm_expiry(self, now: int) -> None:
        """A timer for the earliest max_age expiry due before the next sweep, so messages go on time
        (as nats-server's per-stream expiry timer) rather than at the sweep's granularity."""
        due = min((t for s in self.js.streams() if (t := s.next_expiry_ms()) is not None), default=None)
        if due is None or due - now >= SWEEP_INTERVAL_S * 1000:
            return  # nothing, or the next sweep arms it
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        self._expiry_timer = asyncio.get_running_loop().call_later(max(due - now, 0) / 1000, self._expire_due)

    def _expire_due(self) -> None:
        self._expiry_timer = None
        now = SystemClock().now_ms()
        self.js.expire(now)
        self._arm_expiry(now)

    def _pull_timers(self, now: int | None = None) -> None:
        """Waiting pull requests: 408 for the expired, idle heartbeats for those that asked
        (consumer.go processWaiting); then arm one timer for the earliest next deadline, so both happen
        on time rather than at the sweep's granularity."""
        if now is None:
            now = SystemClock().now_ms()
        if self._pull_timer is not None:
            self._pull_timer[1].cancel()  # this run replaces it (a no-op when it is the one firing)
            self._pull_timer = None
        due: int | None = None
        for stream in self.js.streams():
            for consumer in stream.consumers.values():
                if not consumer.num_waiting:
                    continue
                for outcome in consumer.expire_pulls(now):
                    self._pull_status(outcome.request, 408, "Request Timeout")
                for req in consumer.waiting_requests():
                    if req.heartbeat_ms:
                        if now - req.last_hb_ms >= req.heartbeat_ms:
                            req.last_hb_ms = now
                            dseq, sseq = consumer.last_delivered
                            self._status(req.token, 100, "Idle Heartbeat", (("Nats-Last-Consumer", str(dseq)),
                                                                            ("Nats-Last-Stream", str(sseq))))
                        t = req.last_hb_ms + req.heartbeat_ms
                        due = t if due is None or t < due else due
                    if req.expires_ms:
                        due = req.expires_ms if due is None or req.expires_ms < due else due
        if due is not None:
            self._arm_pull_timer(due)

    def _arm_pull_timer(self, due_ms: int) -> None:
        """Run ``_pull_timers`` at ``due_ms`` (wall clock), unless an earlier run is already armed."""
        timer = self._pull_timer
        if timer is not None:
            if timer[0] <= due_ms:
                return
            timer[1].cancel()
        delay = max(due_ms - SystemClock().now_ms(), 0) / 1000
        self._pull_timer = (due_ms, asyncio.get_running_loop().call_later(delay, self._pull_timers))

    def close(self) -> None:
        """Stop the sweeps and flush consumer state. Loop thread; blocks (fsync) at broker stop."""
        self._sweeper.cancel()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
        if self._pull_timer is not None:
            self._pull_timer[1].cancel()
        self.push.close()
        self.js.close()


#: StreamConfig fields nats-server leaves out of its JSON when empty (``omitempty`` in stream.go), and the
#: 2.11+ fields, which 2.10 does not write at all (left out when unset).
_STREAM_OMITEMPTY = frozenset((
    "description", "subjects", "max_msg_size", "no_ack", "duplicate_window", "placement", "mirror", "sources",
    "first_seq", "subject_transform", "republish", "discard_new_per_subject", "metadata", "allow_msg_ttl",
    "subject_delete_marker_ttl", "allow_msg_counter", "allow_atomic", "allow_msg_schedules", "allow_batched",
    "persist_mode"))


def _stream_config_out(cfg: Any) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items()
            if not (k in _STREAM_OMITEMPTY and (v is None or v == 0 or v == "" or v == [] or v == {} or v is False))}


#: ConsumerConfig fields nats-server leaves out of its JSON when empty/zero (``omitempty`` in consumer.go).
_CONSUMER_OMITEMPTY = frozenset((
    "durable_name", "name", "description", "opt_start_seq", "opt_start_time", "ack_wait", "max_deliver",
    "backoff", "filter_subject", "filter_subjects", "rate_limit_bps", "sample_freq", "max_waiting",
    "max_ack_pending", "flow_control", "headers_only", "max_batch", "max_expires", "max_bytes",
    "deliver_subject", "deliver_group", "idle_heartbeat", "inactive_threshold", "mem_storage", "direct",
    "metadata", "pause_until", "priority_groups", "priority_policy", "priority_timeout"))


def _consumer_config_in(d: Any) -> Any:
    """The API's consumer config -> the core's: RFC 3339 times become ns since the epoch."""
    if not isinstance(d, dict):
        return d
    d = dict(d)
    for key in ("opt_start_time", "pause_until"):
        v = d.get(key)
        if isinstance(v, str):
            try:
                d[key] = _parse_rfc3339_ns(v)
            except ValueError:
                raise st.StreamConfigInvalid(f"consumer configuration invalid: bad {key}") from None
    return d


def _consumer_config_out(cfg: Any) -> dict[str, Any]:
    """The core's consumer config as nats-server writes it: empty fields left out, times in RFC 3339."""
    out = {}
    for k, v in cfg.to_dict().items():
        if k in _CONSUMER_OMITEMPTY and (v is None or v == 0 or v == "" or v == [] or v == {} or v is False
                                         or (k == "priority_policy" and v == "none")):
            continue
        if k in ("opt_start_time", "pause_until") and isinstance(v, int):
            v = _rfc3339_ns(v)
        out[k] = v
    return out


def _parse_rfc3339_ns(text: str) -> int:
    head, _, rest = text.partition(".")
    frac = ""
    tz = ""
    if rest:
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
    else:
        for sep in ("Z", "+", "-"):
            j = head.rfind(sep)
            if j > 10:
                head, tz = head[:j], head[j:]
                break
    if tz == "Z" or not tz:
        tz = "+00:00"
    base = dt.datetime.fromisoformat(head + tz)
    return int(base.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _rfc3339_ns(ns: int) -> str:
    base = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = ns % 1_000_000_000
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


def _page(items: list, req: Any, limit: int) -> tuple[int, list]:
    """A NAMES/LIST page (ApiPagedRequest): from the request's ``offset`` (clamped to the total), at most
    ``limit`` items."""
    offset = req.get("offset", 0) if isinstance(req, dict) else 0
    offset = min(max(offset if isinstance(offset, int) else 0, 0), len(items))
    return offset, items[offset:offset + limit]


def _next_request(rest: bytes) -> Any:
    """The pull request an ``+NXT`` ack carries after the verb (consumer.go processNextMsgReq): nothing
    is a batch of 1, a JSON object is a full request, a number is a batch. For ``_pull``."""
    rest = rest.strip()
    if not rest:
        return {"batch": 1}
    if rest.startswith(b"{"):
        try:
            req = orjson.loads(rest)
        except orjson.JSONDecodeError:
            return {"batch": 1}
        return req if isinstance(req, dict) else {"batch": 1}
    try:
        return {"batch": max(int(rest), 1)}
    except ValueError:
        return {"batch": 1}


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(bytes(data)).decode()


def _state_dict(state: Any) -> dict[str, Any]:
    d = state.to_dict()
    if not d.get("num_deleted"):
        d.pop("num_deleted", None)  # omitempty in nats-server's StreamState
    for key in ("first_ts", "last_ts"):
        d[key] = _iso(d[key]) if d.get(key) else "0001-01-01T00:00:00Z"
    return d
