"""JetStream consumers over a core ``Stream``: the protocol-neutral part of pull and push delivery.

Strategy
    A consumer is a cursor over its stream plus acknowledgement state, the same state nats-server keeps
    (consumer.go), under the same names:

    * ``next_seq`` (nats ``o.sseq``): the next stream sequence to consider for a first delivery;
      ``_dseq``: the next consumer (delivery) sequence; every delivery, first or re-delivery, takes one.
    * ack floors (``o.adflr``/``o.asflr``): everything at or below is settled.
    * ``pending`` (``o.pending``): stream seq -> [consumer seq of the first delivery, delivered-at ms],
      in delivery order (an ``OrderedDict``: deliveries go out in ascending stream order, so the oldest
      pending entry is the first key and moving the ack floor is O(1)).
    * ``redelivered`` (``o.rdc``): stream seq -> times re-delivered (delivery count - 1); a message that
      reached ``max_deliver`` keeps its entry so interest retention keeps it (``needAck``).
    * a re-delivery queue (``o.rdq``) served before new messages.
    * ``num_pending`` (``o.npc``): messages not yet delivered, kept incrementally (stored +1, delivered
      -1, removed -1) and recounted after purges.

    Finding the next message is a scan of the stream's subject-id array (``Stream.next_seq_matching``):
    ``array.index`` for an unfiltered or literal filter, a per-subject-id match table otherwise, so a
    filter is matched once per distinct subject, never per message. Bodies are read from the log only
    for messages actually delivered.

    Pull and push share ``next_messages(batch, max_bytes)``; the session turns each ``Delivered`` into
    a MSG/HMSG with the ``$JS.ACK.<stream>.<consumer>.<delivery count>.<stream seq>.<consumer
    seq>.<timestamp ns>.<pending>`` reply subject built from its fields. Pull requests waiting for
    messages are kept here too (``pull``/``serve_pulls``/``expire_pulls``) with nats-server's limits;
    the session maps their outcomes to the 404/408/409 status messages.

Time
    Delivery times are wall-clock ms (``clock.now_ms()``), because pending state is persisted across
    restarts (as nats-server stores UnixNano). ack_wait, backoff, NAK delays and request expiry are
    tested by advancing a ManualClock. ``redeliveries_due()`` moves expired deliveries to the
    re-delivery queue and returns when to call it next; the session runs it from a timer.

Rules (nats-server consumer.go, cited per method)
    * Config defaults and checks: ``setConsumerConfigDefaults`` + ``checkConsumerCfg`` (errors with
      their err_code beside each class). Workqueue streams: explicit ack, deliver all, filters unique
      across consumers (``addConsumerWithAssignment``).
    * ack explicit: settles one message; ack all: settles everything up to it; ack none: a delivery is
      settled at once. On interest/workqueue retention a settle asks the stream to remove the message
      (``stream.ackMsg``); TERM settles like an ack.
    * A pending message past its deadline (``ack_wait``, or ``backoff[delivery count - 1]``, the last
      entry repeating) is re-delivered, unless it reached ``max_deliver``: then it leaves pending
      (the ack floor stays where it is until a later ack moves it, as nats-server's) and a
      ``max_deliveries`` event is emitted once (``hasMaxDeliveries``).
    * ``max_ack_pending`` stops first deliveries (never re-deliveries) while that many are pending.
    * NAK re-delivers at once, or ``delay_ms`` later; WPI (``in_progress``) restarts the ack timer.
    * A message removed from the stream while pending is settled as terminated ("Unacknowledged message
      was deleted", ``decStreamPending``); a purge moves the consumer past what it removed
      (``consumer.purge``).

Concurrency: event-loop thread only (the stream's thread). Hot paths: ``next_messages``, ``ack``;
    run ``python bench/streams.py`` before changing them.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple

from omnibus.core.routing.trie import is_literal, valid_nats_pattern, valid_nats_subject
from omnibus.core.streams import (
    HDR_MSG_SIZE,
    InvalidJSON,
    _check_enums,
    MAX_DESCRIPTION_LEN,
    MAX_METADATA_LEN,
    MAX_NAME_LEN,
    NANOS_PER_MS,
    Headers,
    JetStreamError,
    ReplicasCountNegative,
    Stream,
    StreamConfig,
    StreamConfigInvalid,
    StreamReplicasNotSupported,
    _check_types,
    encode_header_block,
    header_block_len,
    make_filter,
    subject_is_subset,
    subjects_overlap,
    valid_asset_name,
)

__all__ = [
    "ACK_POLICIES",
    "DEFAULT_ACK_WAIT",
    "DEFAULT_MAX_ACK_PENDING",
    "DEFAULT_MAX_WAITING",
    "DELIVER_POLICIES",
    "EPHEMERAL_INACTIVE_THRESHOLD",
    "Consumer",
    "ConsumerConfig",
    "ConsumerEvent",
    "ConsumerInfo",
    "Delivered",
    "DeliveredBatch",
    "PullOutcome",
    "PullRequest",
    "RedeliveryCheck",
    "create_consumer",
    "delete_consumer",
]

# -- constants (nats-server consumer.go / jetstream_api.go) ------------------------------------------------

DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("none", "all", "explicit")  # "flow_control" (sourcing) is refused
REPLAY_POLICIES = ("instant", "original")
#: What nats-server's JSON decoding accepts for the policy fields ("flow_control" decodes, then is refused).
_CONSUMER_ENUMS = {"deliver_policy": DELIVER_POLICIES, "ack_policy": (*ACK_POLICIES, "flow_control"),
                   "replay_policy": REPLAY_POLICIES}
DEFAULT_ACK_WAIT = 30_000 * NANOS_PER_MS  # JsAckWaitDefault = 30s
DEFAULT_MAX_ACK_PENDING = 1000  # JsDefaultMaxAckPending
DEFAULT_MAX_WAITING = 512  # jetstream_api.go JSWaitQueueDefaultMax
EPHEMERAL_INACTIVE_THRESHOLD = 5_000 * NANOS_PER_MS  # JsDeleteWaitTimeDefault = 5s
MIN_HEARTBEAT = 100 * NANOS_PER_MS  # "consumer idle heartbeat needs to be >= 100ms"
MIN_MAX_EXPIRES = NANOS_PER_MS  # "consumer max request expires needs to be >= 1ms"
#: Reasons nats-server gives when a pending message is settled for it (consumer.go).
TERM_REASON_DELETED = "Unacknowledged message was deleted"  # ackTermUnackedLimitsReason

# next_messages / pull outcomes
STOP_BATCH = "batch"  # the batch is full
STOP_NO_MESSAGES = "no_messages"  # nothing (more) to deliver now
STOP_MAX_ACK_PENDING = "max_ack_pending"  # max_ack_pending reached
STOP_MAX_BYTES = "max_bytes"  # the next message does not fit max_bytes
PULL_EXPIRED = "expired"  # 408 Request Timeout
PULL_NO_MESSAGES = "no_messages"  # 404 No Messages
PULL_MAX_BYTES = "max_bytes"  # 409 Message Size Exceeds MaxBytes
PULL_DONE = "done"  # batch delivered (nats-server sends nothing more)


# -- errors (nats-server err_code / description beside each) ---------------------------------------------


class ConsumerNotFound(JetStreamError):  # 10014 (404) "consumer not found"
    def __init__(self) -> None:
        super().__init__("consumer not found")


class ConsumerAlreadyExists(JetStreamError):  # 10148 "consumer already exists"
    def __init__(self) -> None:
        super().__init__("consumer already exists")


class ConsumerDoesNotExist(JetStreamError):  # 10149 "consumer does not exist"
    def __init__(self) -> None:
        super().__init__("consumer does not exist")


class ConsumerNameExists(JetStreamError):  # 10013 "consumer name already in use"
    def __init__(self) -> None:
        super().__init__("consumer name already in use")


class ConsumerNameMismatch(JetStreamError):  # 10017 "consumer name in subject does not match durable name in request"
    def __init__(self) -> None:
        super().__init__("consumer name in subject does not match durable name in request")


class ConsumerEphemeralWithDurableName(JetStreamError):
    # 10020 "consumer expected to be ephemeral but a durable name was set in request"
    def __init__(self) -> None:
        super().__init__("consumer expected to be ephemeral but a durable name was set in request")


class ConsumerFilterNotSubset(JetStreamError):
    # 10093 "consumer filter subject is not a valid subset of the interest subjects"
    def __init__(self) -> None:
        super().__init__("consumer filter subject is not a valid subset of the interest subjects")


class ConsumerCreateFailed(JetStreamError):  # 10012 (500) JSConsumerCreateErrF "{err}"
    """Update not allowed or feature not supported; ``str(e)`` is the {err} text."""


class MaximumConsumersReached(JetStreamError):  # 10026 "maximum consumers limit reached"
    def __init__(self) -> None:
        super().__init__("maximum consumers limit reached")


class ConsumerBadDurableName(JetStreamError):  # 10103 "durable name can not contain '.', '*', '>'"
    def __init__(self) -> None:
        super().__init__("durable name can not contain '.', '*', '>'")


class ConsumerNameTooLong(JetStreamError):  # 10102 "consumer name is too long, maximum allowed is {max}"
    def __init__(self) -> None:
        super().__init__(f"consumer name is too long, maximum allowed is {MAX_NAME_LEN}")


class ConsumerDescriptionTooLong(JetStreamError):  # 10107 "consumer description is too long, maximum allowed is {max}"
    def __init__(self) -> None:
        super().__init__(f"consumer description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}")


class ConsumerMetadataTooLong(JetStreamError):  # 10135 "consumer metadata exceeds maximum size of {limit}"
    def __init__(self) -> None:
        super().__init__(f"consumer metadata exceeds maximum size of {MAX_METADATA_LEN // 1024}KB")


class ConsumerInvalidPolicy(JetStreamError):  # 10094 JSConsumerInvalidPolicyErrF "{err}"
    """Deliver policy and start options conflict; ``str(e)`` is nats-server's text."""


class ConsumerInvalidSampling(JetStreamError):  # 10095 "failed to parse consumer sampling configuration: {err}"
    def __init__(self, err: str) -> None:
        super().__init__(f"failed to parse consumer sampling configuration: {err}")


class ConsumerAckPolicyInvalid(JetStreamError):  # 10181 "consumer ack policy invalid"
    def __init__(self) -> None:
        super().__init__("consumer ack policy invalid")


class ConsumerReplayPolicyInvalid(JetStreamError):  # 10182 "consumer replay policy invalid"
    def __init__(self) -> None:
        super().__init__("consumer replay policy invalid")


class ConsumerAckWaitNegative(JetStreamError):  # 10183 "consumer ack wait needs to be positive"
    def __init__(self) -> None:
        super().__init__("consumer ack wait needs to be positive")


class ConsumerBackOffNegative(JetStreamError):  # 10184 "consumer backoff needs to be positive"
    def __init__(self) -> None:
        super().__init__("consumer backoff needs to be positive")


class ConsumerMaxDeliverBackoff(JetStreamError):  # 10116 "max deliver is required to be > length of backoff values"
    def __init__(self) -> None:
        super().__init__("max deliver is required to be > length of backoff values")


class ConsumerDeliverToWildcards(JetStreamError):  # 10079 "consumer deliver subject has wildcards"
    def __init__(self) -> None:
        super().__init__("consumer deliver subject has wildcards")


class ConsumerInvalidDeliverSubject(JetStreamError):  # 10112 "invalid push consumer deliver subject"
    def __init__(self) -> None:
        super().__init__("invalid push consumer deliver subject")


class ConsumerDeliverCycle(JetStreamError):  # 10081 "consumer deliver subject forms a cycle"
    def __init__(self) -> None:
        super().__init__("consumer deliver subject forms a cycle")


class ConsumerPushMaxWaiting(JetStreamError):  # 10080 "consumer in push mode can not set max waiting"
    def __init__(self) -> None:
        super().__init__("consumer in push mode can not set max waiting")


class ConsumerMaxPendingAckPolicyRequired(JetStreamError):  # 10082 "consumer requires ack policy for max ack pending"
    def __init__(self) -> None:
        super().__init__("consumer requires ack policy for max ack pending")


class ConsumerSmallHeartbeat(JetStreamError):  # 10083 "consumer idle heartbeat needs to be >= 100ms"
    def __init__(self) -> None:
        super().__init__("consumer idle heartbeat needs to be >= 100ms")


class ConsumerPullRequiresAck(JetStreamError):  # 10084 "consumer in pull mode requires explicit ack policy on workqueue stream"
    def __init__(self) -> None:
        super().__init__("consumer in pull mode requires explicit ack policy on workqueue stream")


class ConsumerPullWithRateLimit(JetStreamError):  # 10086 "consumer in pull mode can not have rate limit set"
    def __init__(self) -> None:
        super().__init__("consumer in pull mode can not have rate limit set")


class ConsumerMaxWaitingNegative(JetStreamError):  # 10087 "consumer max waiting needs to be positive"
    def __init__(self) -> None:
        super().__init__("consumer max waiting needs to be positive")


class ConsumerHeartbeatRequiresPush(JetStreamError):  # 10088 "consumer idle heartbeat requires a push based consumer"
    def __init__(self) -> None:
        super().__init__("consumer idle heartbeat requires a push based consumer")


class ConsumerFlowControlRequiresPush(JetStreamError):  # 10089 "consumer flow control requires a push based consumer"
    def __init__(self) -> None:
        super().__init__("consumer flow control requires a push based consumer")


class ConsumerDirectRequiresPush(JetStreamError):  # 10090 "consumer direct requires a push based consumer"
    def __init__(self) -> None:
        super().__init__("consumer direct requires a push based consumer")


class ConsumerDirectRequiresEphemeral(JetStreamError):  # 10091 "consumer direct requires an ephemeral consumer"
    def __init__(self) -> None:
        super().__init__("consumer direct requires an ephemeral consumer")


class ConsumerMaxRequestBatchNegative(JetStreamError):  # 10114 "consumer max request batch needs to be > 0"
    def __init__(self) -> None:
        super().__init__("consumer max request batch needs to be > 0")


class ConsumerMaxRequestExpiresTooSmall(JetStreamError):  # 10115 "consumer max request expires needs to be >= 1ms"
    def __init__(self) -> None:
        super().__init__("consumer max request expires needs to be >= 1ms")


class ConsumerFlowControlNeedsHeartbeats(JetStreamError):  # 10108 "consumer with flow control also needs heartbeats"
    def __init__(self) -> None:
        super().__init__("consumer with flow control also needs heartbeats")


class ConsumerMaxPendingAckExcess(JetStreamError):  # 10121 "consumer max ack pending exceeds system limit of {limit}"
    def __init__(self, limit: int) -> None:
        super().__init__(f"consumer max ack pending exceeds system limit of {limit}")


class ConsumerInactiveThresholdExcess(JetStreamError):  # 10153 "consumer inactive threshold exceeds system limit of {limit}"
    def __init__(self, limit: Any) -> None:
        super().__init__(f"consumer inactive threshold exceeds system limit of {limit}")


class ConsumerReplicasExceedsStream(JetStreamError):  # 10126 "consumer config replica count exceeds parent stream"
    def __init__(self) -> None:
        super().__init__("consumer config replica count exceeds parent stream")


class ConsumerReplicasShouldMatchStream(JetStreamError):
    # 10134 "consumer config replicas must match interest retention stream's replicas"
    def __init__(self) -> None:
        super().__init__("consumer config replicas must match interest retention stream's replicas")


class ConsumerDuplicateFilterSubjects(JetStreamError):
    # 10136 "consumer cannot have both FilterSubject and FilterSubjects specified"
    def __init__(self) -> None:
        super().__init__("consumer cannot have both FilterSubject and FilterSubjects specified")


class ConsumerOverlappingSubjectFilters(JetStreamError):  # 10138 "consumer subject filters cannot overlap"
    def __init__(self) -> None:
        super().__init__("consumer subject filters cannot overlap")


class ConsumerEmptyFilter(JetStreamError):  # 10139 "consumer filter in FilterSubjects cannot be empty"
    def __init__(self) -> None:
        super().__init__("consumer filter in FilterSubjects cannot be empty")


class ConsumerDurableNameMismatch(JetStreamError):
    # 10132 "Consumer Durable and Name have to be equal if both are provided"
    def __init__(self) -> None:
        super().__init__("Consumer Durable and Name have to be equal if both are provided")


class ConsumerWQRequiresExplicitAck(JetStreamError):  # 10098 "workqueue stream requires explicit ack"
    def __init__(self) -> None:
        super().__init__("workqueue stream requires explicit ack")


class ConsumerWQMultipleUnfiltered(JetStreamError):
    # 10099 "multiple non-filtered consumers not allowed on workqueue stream"
    def __init__(self) -> None:
        super().__init__("multiple non-filtered consumers not allowed on workqueue stream")


class ConsumerWQConsumerNotUnique(JetStreamError):  # 10100 "filtered consumer not unique on workqueue stream"
    def __init__(self) -> None:
        super().__init__("filtered consumer not unique on workqueue stream")


class ConsumerWQConsumerNotDeliverAll(JetStreamError):  # 10101 "consumer must be deliver all on workqueue stream"
    def __init__(self) -> None:
        super().__init__("consumer must be deliver all on workqueue stream")


class ConsumerPriorityGroupWithPolicyNone(JetStreamError):
    # 10196 "consumer can not have priority groups when policy is none"
    def __init__(self) -> None:
        super().__init__("consumer can not have priority groups when policy is none")


class ConsumerPinnedTTLWithoutPriorityPolicyNone(JetStreamError):
    # 10197 "PinnedTTL cannot be set when PriorityPolicy is none"
    def __init__(self) -> None:
        super().__init__("PinnedTTL cannot be set when PriorityPolicy is none")


# Pull request refusals: not API errors but status messages on the request's reply subject.


class PullRequestRefused(JetStreamError):
    """A pull request refused at once; ``status`` and ``str(e)`` are what nats-server sends
    (``NATS/1.0 <status> <description>``, consumer.go processNextMsgRequest)."""

    status = 409


class ConsumerIsPushBased(PullRequestRefused):  # 409 "Consumer is push based"
    def __init__(self) -> None:
        super().__init__("Consumer is push based")


class ExceededMaxRequestBatch(PullRequestRefused):  # 409 "Exceeded MaxRequestBatch of %d"
    def __init__(self, limit: int) -> None:
        super().__init__(f"Exceeded MaxRequestBatch of {limit}")


class ExceededMaxRequestExpires(PullRequestRefused):  # 409 "Exceeded MaxRequestExpires of %v" (Go duration)
    def __init__(self, limit_ns: int) -> None:
        super().__init__(f"Exceeded MaxRequestExpires of {_go_duration(limit_ns)}")


class ExceededMaxRequestMaxBytes(PullRequestRefused):  # 409 "Exceeded MaxRequestMaxBytes of %v"
    def __init__(self, limit: int) -> None:
        super().__init__(f"Exceeded MaxRequestMaxBytes of {limit}")


class ExceededMaxWaiting(PullRequestRefused):  # 409 "Exceeded MaxWaiting"
    def __init__(self) -> None:
        super().__init__("Exceeded MaxWaiting")


class NoMessages(PullRequestRefused):  # 404 "No Messages" (no_wait request, nothing pending)
    status = 404

    def __init__(self) -> None:
        super().__init__("No Messages")


class BadPullRequest(PullRequestRefused):  # 400 "Bad Request - {err}"
    status = 400

    def __init__(self, err: str) -> None:
        super().__init__(f"Bad Request - {err}")


def _go_duration(ns: int) -> str:
    """Go's time.Duration String() for whole units (enough for limits people configure)."""
    if ns % 1_000_000_000 == 0:
        s = ns // 1_000_000_000
        h, rem = divmod(s, 3600)
        m, s = divmod(rem, 60)
        if h:
            return f"{h}h{m}m{s}s"
        if m:
            return f"{m}m{s}s"
        return f"{s}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    if ns % 1000 == 0:
        return f"{ns // 1000}\u00b5s"
    return f"{ns}ns"


# -- configuration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerConfig:
    """Every field of nats-server's ``ConsumerConfig`` (consumer.go), named as its JSON key, durations
    in nanoseconds, ``opt_start_time`` in nanoseconds since the epoch (the session parses the RFC 3339
    text). ``extra`` keeps unknown JSON keys."""

    durable_name: str = ""
    name: str = ""
    description: str = ""
    deliver_policy: str = "all"
    opt_start_seq: int = 0
    opt_start_time: int | None = None
    ack_policy: str = "none"
    ack_wait: int = 0
    max_deliver: int = 0
    backoff: tuple[int, ...] = ()
    filter_subject: str = ""
    filter_subjects: tuple[str, ...] = ()
    replay_policy: str = "instant"
    rate_limit_bps: int = 0
    sample_freq: str = ""
    max_waiting: int = 0
    max_ack_pending: int = 0
    flow_control: bool = False
    headers_only: bool = False
    max_batch: int = 0
    max_expires: int = 0
    max_bytes: int = 0
    deliver_subject: str = ""
    deliver_group: str = ""
    idle_heartbeat: int = 0
    inactive_threshold: int = 0
    num_replicas: int = 0
    mem_storage: bool = False
    direct: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)
    pause_until: int | None = None
    priority_groups: tuple[str, ...] = ()
    priority_policy: str = "none"
    priority_timeout: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ConsumerConfig":
        known = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in d.items():
            (kw if k in known else extra)[k] = v
        try:
            for k in ("backoff", "filter_subjects", "priority_groups"):
                if k in kw:
                    kw[k] = tuple(kw[k] or ())
            if kw.get("metadata") is None and "metadata" in kw:
                kw["metadata"] = {}
            for k in ("durable_name", "name", "description", "filter_subject", "deliver_subject",
                      "deliver_group", "sample_freq"):
                if k in kw and kw[k] is None:
                    kw[k] = ""
            cfg = cls(**kw, extra=extra)
            _check_types(cfg)
            for k in ("ack_wait", "max_deliver", "max_waiting", "max_ack_pending", "max_batch",
                      "max_expires", "max_bytes", "idle_heartbeat", "inactive_threshold", "opt_start_seq",
                      "num_replicas", "rate_limit_bps", "priority_timeout"):
                v = getattr(cfg, k)
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{k} must be an integer")
            if any(isinstance(b, bool) or not isinstance(b, int) for b in cfg.backoff):
                raise TypeError("backoff must be a list of durations")
        except (TypeError, ValueError):
            raise InvalidJSON() from None
        _check_enums(d, _CONSUMER_ENUMS)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        d["backoff"] = list(self.backoff)
        d["filter_subjects"] = list(self.filter_subjects)
        d["priority_groups"] = list(self.priority_groups)
        d["metadata"] = dict(self.metadata)
        d.update(self.extra)
        return d

    @property
    def filters(self) -> tuple[str, ...]:
        """nats-server ``gatherSubjectFilters``: filter_subject plus filter_subjects."""
        if self.filter_subject:
            return (self.filter_subject, *self.filter_subjects)
        return tuple(self.filter_subjects)

    @property
    def is_durable(self) -> bool:
        return bool(self.durable_name)

    @property
    def is_push(self) -> bool:
        return bool(self.deliver_subject)

    @property
    def ack_wait_ms(self) -> int:
        return self.ack_wait // NANOS_PER_MS

    def normalized(self, stream: StreamConfig, *, recovering: bool = False) -> "ConsumerConfig":
        """nats-server ``setConsumerConfigDefaults`` then ``checkConsumerCfg`` against the stream's
        configuration. Raises the errors above (and StreamConfigInvalid, 10052, where nats-server does).
        ``recovering``: a stored consumer being restored (its filters are not checked against the
        stream's subjects, which may have changed since, as nats-server)."""
        c = self
        kw: dict[str, Any] = {}
        if c.max_deliver == 0 or c.max_deliver < -1:
            kw["max_deliver"] = -1
        max_waiting = max(c.max_waiting, 0)
        max_ack_pending = -1 if c.max_ack_pending < -1 else c.max_ack_pending
        for name in ("max_batch", "max_expires", "max_bytes", "idle_heartbeat", "inactive_threshold",
                     "priority_timeout"):
            if getattr(c, name) < 0:
                kw[name] = 0
        if not c.deliver_subject and max_waiting == 0:
            max_waiting = DEFAULT_MAX_WAITING
        kw["max_waiting"] = max_waiting
        ack_wait = c.ack_wait
        if ack_wait == 0 and c.ack_policy in ("explicit", "all"):
            ack_wait = DEFAULT_ACK_WAIT
        if c.backoff:
            ack_wait = c.backoff[0]
        kw["ack_wait"] = ack_wait
        limits = stream.consumer_limits or {}
        if max_ack_pending == 0:
            max_ack_pending = int(limits.get("max_ack_pending") or 0)
        inactive = kw.get("inactive_threshold", c.inactive_threshold)
        if inactive == 0:
            inactive = int(limits.get("inactive_threshold") or 0)
        if max_ack_pending == 0 and c.ack_policy != "none":
            max_ack_pending = DEFAULT_MAX_ACK_PENDING
        if not c.durable_name and inactive <= 0:
            inactive = EPHEMERAL_INACTIVE_THRESHOLD  # updateInactiveThreshold stamps ephemerals
        kw["max_ack_pending"] = max_ack_pending
        kw["inactive_threshold"] = inactive
        n = replace(c, **kw)
        n._check(stream, recovering)
        return n

    def _check(self, stream: StreamConfig, recovering: bool = False) -> None:
        c = self
        bad_name = "can not contain '.', '*', '>', '\\', '/'"
        if c.name and not valid_asset_name(c.name):
            raise StreamConfigInvalid(f"consumer name {bad_name}")
        if c.durable_name and not valid_asset_name(c.durable_name):
            raise StreamConfigInvalid(f"consumer durable name {bad_name}")
        if c.num_replicas > 1:  # never clustered (nats-server 2.9.10 answers this before the checks below)
            raise StreamReplicasNotSupported()
        if c.num_replicas > 0 and c.num_replicas > stream.num_replicas:
            raise ConsumerReplicasExceedsStream()
        if c.num_replicas < 0:
            raise ReplicasCountNegative()
        if stream.retention in ("interest", "workqueue") and c.num_replicas not in (0, stream.num_replicas):
            raise ConsumerReplicasShouldMatchStream()
        if c.ack_policy == "flow_control":
            raise ConsumerCreateFailed("flow control ack policy is not supported by this server")
        if c.ack_policy not in ACK_POLICIES:
            raise ConsumerAckPolicyInvalid()
        if c.replay_policy not in REPLAY_POLICIES:
            raise ConsumerReplayPolicyInvalid()
        if c.deliver_policy not in DELIVER_POLICIES:
            raise ConsumerInvalidPolicy("consumer deliver policy invalid")
        if any(b < 0 for b in c.backoff):
            raise ConsumerBackOffNegative()
        if c.ack_wait < 0:
            raise ConsumerAckWaitNegative()
        if c.backoff and c.max_deliver != -1 and len(c.backoff) >= c.max_deliver:  # MaxDeliver <= len(BackOff)
            raise ConsumerMaxDeliverBackoff()
        if len(c.description) > MAX_DESCRIPTION_LEN:
            raise ConsumerDescriptionTooLong()
        if c.deliver_subject:
            if not is_literal(c.deliver_subject):
                raise ConsumerDeliverToWildcards()
            if not valid_nats_subject(c.deliver_subject):
                raise ConsumerInvalidDeliverSubject()
            if any(subjects_overlap(s, c.deliver_subject) for s in stream.subjects):
                raise ConsumerDeliverCycle()
            if c.max_waiting != 0:
                raise ConsumerPushMaxWaiting()
            if c.max_ack_pending > 0 and c.ack_policy == "none":
                raise ConsumerMaxPendingAckPolicyRequired()
            if 0 < c.idle_heartbeat < MIN_HEARTBEAT:
                raise ConsumerSmallHeartbeat()
        else:
            if c.ack_policy == "none" and stream.retention == "workqueue":
                raise ConsumerPullRequiresAck()
            if c.rate_limit_bps > 0:
                raise ConsumerPullWithRateLimit()
            if c.max_waiting < 0:
                raise ConsumerMaxWaitingNegative()
            if c.idle_heartbeat > 0:
                raise ConsumerHeartbeatRequiresPush()
            if c.flow_control:
                raise ConsumerFlowControlRequiresPush()
            if c.max_batch < 0:
                raise ConsumerMaxRequestBatchNegative()
            if c.max_expires != 0 and c.max_expires < MIN_MAX_EXPIRES:
                raise ConsumerMaxRequestExpiresTooSmall()
        limits = stream.consumer_limits or {}
        lim_map = int(limits.get("max_ack_pending") or 0)
        if lim_map > 0 and c.max_ack_pending > lim_map:
            raise ConsumerMaxPendingAckExcess(lim_map)
        lim_it = int(limits.get("inactive_threshold") or 0)
        if lim_it > 0 and c.inactive_threshold > lim_it:
            raise ConsumerInactiveThresholdExcess(_go_duration(lim_it))
        if c.direct:
            if not c.deliver_subject:
                raise ConsumerDirectRequiresPush()
            if c.durable_name:
                raise ConsumerDirectRequiresEphemeral()
        if c.filter_subject and c.filter_subjects:
            raise ConsumerDuplicateFilterSubjects()
        if c.filter_subject and not valid_nats_pattern(c.filter_subject):
            raise StreamConfigInvalid("invalid subject")  # ErrBadSubject
        if any(f == "" for f in c.filter_subjects):
            raise ConsumerEmptyFilter()
        filters = c.filters
        for i, f in enumerate(filters):
            if not valid_nats_pattern(f):
                raise StreamConfigInvalid("invalid subject")
            if not recovering and not _valid_filtered_subject(f, stream.subjects):
                raise ConsumerFilterNotSubset()
            for j, g in enumerate(filters):
                if i != j and subject_is_subset(f, g):
                    raise ConsumerOverlappingSubjectFilters()
        dp = c.deliver_policy

        def bad_start(p: str, start: str) -> ConsumerInvalidPolicy:
            return ConsumerInvalidPolicy(
                f"consumer delivery policy is deliver {p}, but optional start {start} is also set")

        def not_set(p: str, what: str) -> ConsumerInvalidPolicy:
            return ConsumerInvalidPolicy(f"consumer delivery policy is deliver {p}, but optional {what} is not set")

        if dp in ("all", "last", "new", "last_per_subject"):
            label = {"last_per_subject": "last per subject"}.get(dp, dp)
            if c.opt_start_seq > 0:
                raise bad_start(label, "sequence")
            if c.opt_start_time is not None:
                raise bad_start(label, "time")
            if dp == "last_per_subject" and not filters:
                raise not_set("last per subject", "filter subject")
        elif dp == "by_start_sequence":
            if c.opt_start_seq == 0:
                raise not_set("by start sequence", "start sequence")
            if c.opt_start_time is not None:
                raise bad_start("by start sequence", "time")
        elif dp == "by_start_time":
            if c.opt_start_time is None:
                raise not_set("by start time", "start time")
            if c.opt_start_seq != 0:
                raise bad_start("by start time", "start sequence")
        if c.sample_freq:
            s = c.sample_freq.removesuffix("%")
            if not s.isdigit():
                raise ConsumerInvalidSampling(f'strconv.Atoi: parsing "{s}": invalid syntax')
        if c.flow_control and c.idle_heartbeat == 0:
            raise ConsumerFlowControlNeedsHeartbeats()
        if c.durable_name and c.name and c.durable_name != c.name:
            raise ConsumerDurableNameMismatch()
        if sum(len(k) + len(v) for k, v in c.metadata.items()) > MAX_METADATA_LEN:
            raise ConsumerMetadataTooLong()
        if c.priority_policy not in ("none", ""):
            raise ConsumerCreateFailed("priority groups are not supported by this server")
        if c.priority_groups:
            raise ConsumerPriorityGroupWithPolicyNone()
        if c.priority_timeout > 0:
            raise ConsumerPinnedTTLWithoutPriorityPolicyNone()

    def check_update(self, new: "ConsumerConfig") -> None:
        """nats-server ``checkNewConsumerConfig`` (self: current). Raises ConsumerCreateFailed (10012)
        with nats-server's text, or ConsumerMaxDeliverBackoff."""
        cfg, n = self, new
        if _cmp(cfg) == _cmp(n):
            return
        checks = [
            (cfg.deliver_policy != n.deliver_policy, "deliver policy can not be updated"),
            (cfg.mem_storage != n.mem_storage, "storage type can not be updated"),
            (cfg.direct != n.direct, "direct can not be updated"),
            (cfg.opt_start_seq != n.opt_start_seq, "start sequence can not be updated"),
            (cfg.opt_start_time != n.opt_start_time, "start time can not be updated"),
            (cfg.ack_policy != n.ack_policy, "ack policy can not be updated"),
            (cfg.replay_policy != n.replay_policy, "replay policy can not be updated"),
            (cfg.idle_heartbeat != n.idle_heartbeat, "heart beats can not be updated"),
            (cfg.flow_control != n.flow_control, "flow control can not be updated"),
        ]
        for bad, text in checks:
            if bad:
                raise ConsumerCreateFailed(text)
        if cfg.deliver_subject != n.deliver_subject:
            if not cfg.deliver_subject:
                raise ConsumerCreateFailed("can not update pull consumer to push based")
            if not n.deliver_subject:
                raise ConsumerCreateFailed("can not update push consumer to pull based")
        if cfg.max_waiting != n.max_waiting:
            raise ConsumerCreateFailed("max waiting can not be updated")
        if n.backoff and n.max_deliver != -1 and len(n.backoff) >= n.max_deliver:
            raise ConsumerMaxDeliverBackoff()


def _cmp(cfg: ConsumerConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    d.pop("metadata", None)  # copyConsumerMetadata: metadata is not compared
    return d


# -- values handed out -----------------------------------------------------------------------------------


#: Builds NamedTuples without their generated Python ``__new__`` (hot paths: one per delivery).
_new_tuple = tuple.__new__


class Delivered(NamedTuple):
    """One delivery. ``pending`` is num_pending after it (the ack reply's last token); ``timestamp``
    is the message's store time in ms (the reply carries ns: multiply by 1e6)."""

    stream_seq: int
    consumer_seq: int
    delivery_count: int
    pending: int
    subject: str
    payload: bytes
    headers: Headers
    timestamp: int

    def header_block(self) -> bytes | None:
        return encode_header_block(self.headers)


class DeliveredBatch(list):
    """What ``next_messages`` returns: a list of Delivered plus ``stop_reason`` (STOP_*)."""

    stop_reason: str = STOP_BATCH


class ConsumerEvent(NamedTuple):
    """Advisory-worthy things that happened, drained with ``take_events``. ``kind``: "max_deliveries"
    ($JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES), "terminated" (MSG_TERMINATED), "nak" (MSG_NAKED)."""

    kind: str
    stream_seq: int
    consumer_seq: int
    deliveries: int
    reason: str = ""


class RedeliveryCheck(NamedTuple):
    """``redeliveries_due`` result: stream seqs queued for re-delivery now, and when to check next
    (ms, None if nothing is pending)."""

    queued: list[int]
    next_due_ms: int | None


@dataclass
class SequenceInfo:
    consumer_seq: int
    stream_seq: int
    last_active: int | None = None  # ms


@dataclass
class ConsumerInfo:
    """nats-server ``ConsumerInfo`` (JSON keys; ``created`` in ms)."""

    stream_name: str
    name: str
    created: int
    config: ConsumerConfig
    delivered: SequenceInfo
    ack_floor: SequenceInfo
    num_ack_pending: int
    num_redelivered: int
    num_waiting: int
    num_pending: int
    push_bound: bool = False


class PullRequest:
    """A waiting pull request (nats-server ``waitingRequest``). ``token`` is the session's handle (the
    reply subject). ``remaining``/``bytes_left`` count down as messages go to it."""

    __slots__ = ("token", "batch", "max_bytes", "expires_ms", "no_wait", "heartbeat_ms", "received_ms",
                 "remaining", "bytes_left", "delivered", "last_hb_ms")

    def __init__(self, token: Any, batch: int, max_bytes: int, expires_ms: int, no_wait: bool,
                 heartbeat_ms: int, received_ms: int) -> None:
        self.token = token
        self.batch = batch
        self.max_bytes = max_bytes
        self.expires_ms = expires_ms  # absolute, 0 = never
        self.no_wait = no_wait
        self.heartbeat_ms = heartbeat_ms
        self.received_ms = received_ms
        self.remaining = batch
        self.bytes_left = max_bytes
        self.delivered = 0
        self.last_hb_ms = received_ms  # when the session last sent this request something

    def __repr__(self) -> str:
        return (f"PullRequest({self.token!r}, remaining={self.remaining}, bytes_left={self.bytes_left}, "
                f"expires_ms={self.expires_ms}, no_wait={self.no_wait})")


class PullOutcome(NamedTuple):
    """Messages for a waiting request and, when the request is finished, why (PULL_*: the session
    sends 408 for expired, 404 for no_messages, 409 for max_bytes, nothing for done)."""

    request: PullRequest
    messages: list[Delivered]
    finished: str | None


# -- the consumer ----------------------------------------------------------------------------------------


class Consumer:
    """A consumer of ``stream``. Create with :func:`create_consumer`. Event-loop thread only."""

    def __init__(self, stream: Stream, name: str, config: ConsumerConfig, *, created_ms: int | None = None,
                 state: Mapping[str, Any] | None = None) -> None:
        self.stream = stream
        self.name = name
        self.config = config
        self.clock = stream.clock
        self.created_ms = created_ms if created_ms is not None else self.clock.now_ms()
        self._filter = make_filter(stream, config.filters)
        self._ack = config.ack_policy
        self._retention = stream.config.retention
        self._maxdc = config.max_deliver if config.max_deliver > 0 else 0
        self._maxp = config.max_ack_pending if config.ack_policy != "none" and config.max_ack_pending > 0 else 0
        self._next = 1
        self._dseq = 1
        self._floor_c = 0
        self._floor_s = 0
        self._pending: OrderedDict[int, list[int]] = OrderedDict()
        self._rdc: dict[int, int] = {}
        self._rdq: deque[int] = deque()
        self._rdq_set: set[int] = set()
        self._lss: deque[int] | None = None
        self._lss_set: set[int] = set()
        self._lss_resume = 0
        self._np = 0
        self._events: list[ConsumerEvent] = []
        self._waiting: deque[PullRequest] = deque()
        self.dirty = True
        self.last_active_ms = self.clock.now_ms()
        self.push_bound = False
        if state:
            self._restore(state)
        else:
            self._select_start()
        self._recount()

    # -- start position ----------------------------------------------------------------------------

    def _select_start(self) -> None:
        # consumer.go selectStartingSeqNo
        s = self.stream
        cfg = self.config
        first, last = s.first_seq, s.last_seq
        if cfg.opt_start_seq == 0:
            dp = cfg.deliver_policy
            if dp == "all":
                nxt = first
            elif dp == "last":
                nxt = last if self._filter.all else s.last_seq_matching(self._filter)
            elif dp == "last_per_subject":
                if s.config.max_msgs_per_subject == 1:
                    nxt = first
                else:
                    seqs = s.last_seqs_per_subject(self._filter)
                    self._lss_resume = last
                    if seqs:
                        self._lss = deque(seqs)
                        self._lss_set = set(seqs)
                        nxt = seqs[0]
                    else:
                        nxt = last
            elif dp == "by_start_time":
                nxt = s.seq_for_time((cfg.opt_start_time or 0) // NANOS_PER_MS)
            else:  # new
                nxt = last + 1
        else:
            nxt = cfg.opt_start_seq
        if last == 0 and s.messages == 0 and cfg.opt_start_seq == 0:
            nxt = 1
        elif nxt > last and cfg.opt_start_seq == 0:
            nxt = last + 1
        elif nxt < first:
            nxt = first
        self._next = nxt
        self._dseq = 1
        self._floor_c = 0
        self._floor_s = nxt - 1

    def _restore(self, st: Mapping[str, Any]) -> None:
        dc, ds = st["delivered"]
        self._dseq = dc + 1
        self._next = ds + 1
        self._floor_c, self._floor_s = st["ack_floor"]
        for sseq, dseq, ts in sorted(st.get("pending", ())):
            self._pending[sseq] = [dseq, ts]
        self._rdc = {int(k): v for k, v in st.get("redelivered", ())}
        lss = st.get("lss")
        if lss:
            self._lss = deque(lss)
            self._lss_set = set(lss)
            self._lss_resume = st.get("lss_resume", 0)
        last = self.stream.last_seq
        # reconcileStateWithStream: nothing past the stream's end.
        for sseq in [q for q in self._pending if q > last]:
            del self._pending[sseq]
        self._on_purge(recount=False)

    def _recount(self) -> None:
        s = self.stream
        if self._lss is not None:
            self._np = len(self._lss) + s.count_matching(self._lss_resume + 1, self._filter)
        else:
            self._np = s.count_matching(self._next, self._filter)

    # -- stream callbacks --------------------------------------------------------------------------

    def matches_sid(self, sid: int) -> bool:
        return self._filter.matches_sid(sid)

    @property
    def next_seq(self) -> int:
        return self._next

    def _on_stored_range(self, first: int, last: int) -> None:
        """Messages first..last were stored (some may already be gone again)."""
        lo = max(first, self._next if self._lss is None else self._lss_resume + 1)
        if lo <= last:
            self._np += self.stream.count_matching(lo, self._filter, last)

    def _on_removed(self, seq: int, sid: int) -> None:
        # consumer.go decStreamPending
        if self._lss is not None and seq in self._lss_set:
            self._lss_set.discard(seq)
            try:
                self._lss.remove(seq)
            except ValueError:
                pass
            self._np -= 1
        elif seq >= self._next and (self._lss is None or seq > self._lss_resume) and self._filter.matches_sid(sid):
            self._np -= 1
        p = self._pending.get(seq)
        if p is not None:
            dc = self._rdc.get(seq, 0) + 1
            self._settle(seq)
            self._rdc.pop(seq, None)
            self._events.append(ConsumerEvent("terminated", seq, p[0], dc, TERM_REASON_DELETED))
        elif seq in self._rdc:
            del self._rdc[seq]
            self.dirty = True

    def _on_purge(self, *, recount: bool = True) -> None:
        # consumer.go purge: move past what went, drop pending that went.
        s = self.stream
        first = s.first_seq
        if self._next < first:
            self._next = first
        for seq in [q for q in self._pending if not s.contains(q)]:
            p = self._pending[seq]
            if p[0] > self._floor_c:
                self._floor_c = p[0]
            self._settle(seq)
        for seq in [q for q in self._rdc if not s.contains(q)]:
            del self._rdc[seq]
        if self._rdq:
            self._rdq = deque(q for q in self._rdq if q in self._pending)
            self._rdq_set = set(self._rdq)
        if self._lss is not None:
            self._lss = deque(q for q in self._lss if s.contains(q))
            self._lss_set = set(self._lss)
            if not self._lss:
                self._lss = None
                self._next = max(self._next, self._lss_resume + 1)
        if not self._pending:
            self._floor_c, self._floor_s = self._dseq - 1, self._next - 1
        elif self._floor_s < first - 1:
            self._floor_s = first - 1
        if recount:
            self._recount()
        self.dirty = True

    def needs_ack(self, seq: int, sid: int) -> bool:
        """Does this consumer still need ``seq`` (interest/workqueue retention; consumer.go needAck)?"""
        if not self._filter.matches_sid(sid):
            return False
        if self._ack == "explicit":
            need = seq > self._floor_s and (seq >= self._next or seq in self._pending or seq in self._lss_set)
        else:
            need = seq > self._floor_s
        return need or seq in self._rdc

    # -- settling ----------------------------------------------------------------------------------

    def _settle(self, seq: int) -> None:
        """Remove ``seq`` from pending and move the ack floor (consumer.go moveAckFloor)."""
        pending = self._pending
        if not pending:
            return
        first = next(iter(pending))
        del pending[seq]
        if not pending:
            self._floor_c, self._floor_s = self._dseq - 1, self._next - 1
        elif seq == first:
            nseq, (ndseq, _) = next(iter(pending.items()))
            self._floor_c, self._floor_s = ndseq - 1, nseq - 1
        if seq in self._rdq_set:
            self._rdq_set.discard(seq)
            self._rdq.remove(seq)
        self.dirty = True

    def ack(self, stream_seq: int, consumer_seq: int | None = None) -> bool:
        """+ACK (consumer.go processAckMsg). Explicit: settles ``stream_seq``; all: settles everything
        up to it; none: nothing to do. Returns True if something was settled. On interest/workqueue
        retention the stream removes what no consumer needs any more. Hot path."""
        self.last_active_ms = self.clock.now_ms()
        ack = self._ack
        if ack == "none":
            return False
        if stream_seq >= self._next and stream_seq not in self._pending:
            return False  # above what was delivered: ignored
        if ack == "explicit":
            was = stream_seq in self._pending
            if was:
                self._settle(stream_seq)
            if self._rdc:
                self._rdc.pop(stream_seq, None)
            self.dirty = True
            if self._retention != "limits":
                self.stream.ack_msg(stream_seq, self)
            return was
        # ack all
        if stream_seq <= self._floor_s:
            return False
        p = self._pending.get(stream_seq)
        dseq = consumer_seq if consumer_seq is not None else (p[0] if p is not None else self._floor_c + 1)
        acked = [q for q in self._pending if q <= stream_seq]
        for q in acked:
            del self._pending[q]
            self._rdc.pop(q, None)
            if q in self._rdq_set:
                self._rdq_set.discard(q)
                self._rdq.remove(q)
        self._floor_c, self._floor_s = max(dseq, self._floor_c), stream_seq
        if not self._pending:
            self._floor_c, self._floor_s = self._dseq - 1, self._next - 1
        self.dirty = True
        if self._retention != "limits":
            for q in acked:
                self.stream.ack_msg(q, self)
            if stream_seq not in acked:
                self.stream.ack_msg(stream_seq, self)
        return bool(acked)

    def nak(self, stream_seq: int, delay_ms: int | None = None) -> bool:
        """-NAK (consumer.go processNak): re-deliver now, or ``delay_ms`` from now. False if the
        message is not pending (ignored, as nats-server)."""
        p = self._pending.get(stream_seq)
        if p is None:
            return False
        now = self.clock.now_ms()
        self.last_active_ms = now
        self._events.append(ConsumerEvent("nak", stream_seq, p[0], self._rdc.get(stream_seq, 0) + 1))
        if delay_ms is not None and delay_ms > 0:
            if stream_seq in self._rdq_set:
                self._rdq_set.discard(stream_seq)
                self._rdq.remove(stream_seq)
            # Due exactly delay_ms from now (nats-server: timestamp = now - ack_wait + delay).
            p[1] = now - self._wait_ms(stream_seq) + delay_ms
            self.dirty = True
            return True
        if stream_seq not in self._rdq_set:
            self._rdq.append(stream_seq)
            self._rdq_set.add(stream_seq)
        return True

    def term(self, stream_seq: int, reason: str = "") -> bool:
        """+TERM (consumer.go processTerm): settle through the ack path, never re-deliver; emits a
        "terminated" event. As in nats-server, under ack_policy all that settles everything up to
        ``stream_seq``. Returns True if something was settled."""
        p = self._pending.get(stream_seq)
        dseq = p[0] if p is not None else 0
        dc = self._rdc.get(stream_seq, 0) + 1
        was = self.ack(stream_seq)
        if was:
            self._events.append(ConsumerEvent("terminated", stream_seq, dseq, dc, reason))
        return was

    def in_progress(self, stream_seq: int) -> bool:
        """+WPI (consumer.go progressUpdate): restart the ack timer. False if not pending."""
        p = self._pending.get(stream_seq)
        if p is None:
            return False
        p[1] = self.last_active_ms = self.clock.now_ms()
        self.dirty = True
        return True

    def take_events(self) -> list[ConsumerEvent]:
        """Advisory-worthy events since the last call (max_deliveries, terminated, nak)."""
        ev, self._events = self._events, []
        return ev

    # -- re-delivery -------------------------------------------------------------------------------

    def _wait_ms(self, seq: int) -> int:
        backoff = self.config.backoff
        if backoff:
            i = self._rdc.get(seq, 0)
            return backoff[i if i < len(backoff) else -1] // NANOS_PER_MS
        return self.config.ack_wait // NANOS_PER_MS

    def redeliveries_due(self, now_ms: int | None = None) -> RedeliveryCheck:
        """Queue for re-delivery every pending message past its ack deadline (consumer.go
        checkPending); a message at max_deliver leaves pending instead (max_deliveries event, once).
        Returns the queued stream seqs and when to call again."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        if self._ack == "none" or not self._pending:
            return RedeliveryCheck([], None)
        expired: list[int] = []
        maxed: list[int] = []
        next_due: int | None = None
        rdq = self._rdq_set
        maxdc = self._maxdc
        for seq, p in self._pending.items():
            if seq in rdq:
                continue
            due = p[1] + self._wait_ms(seq)
            if now >= due:
                if maxdc and self._rdc.get(seq, 0) + 1 >= maxdc:
                    maxed.append(seq)
                else:
                    expired.append(seq)
            elif next_due is None or due < next_due:
                next_due = due
        for seq in maxed:  # hasMaxDeliveries: out of pending, the ack floor stays (it moves on a later ack)
            dc = self._rdc.get(seq, 0) + 1
            dseq = self._pending.pop(seq)[0]
            if seq in rdq:
                rdq.discard(seq)
                self._rdq.remove(seq)
            self.dirty = True
            self._rdc[seq] = dc
            if dc == maxdc:
                self._events.append(ConsumerEvent("max_deliveries", seq, dseq, dc))
        if expired:
            expired.sort()
            for seq in expired:
                self._rdq.append(seq)
                rdq.add(seq)
                self._pending[seq][1] = now
        if self._pending and next_due is None and expired:
            next_due = now + min(self._wait_ms(s) for s in expired)
        return RedeliveryCheck(expired, next_due)

    # -- delivery ----------------------------------------------------------------------------------

    def next_messages(self, batch: int, max_bytes: int | None = None, *, size_overhead: int = 0) -> DeliveredBatch:
        """Up to ``batch`` deliveries: queued re-deliveries first, then new messages in stream order
        (consumer.go getNextMsg). With ``max_bytes`` a message is delivered only if its size (subject
        + header block + payload + ``size_overhead``, the session's estimate of the reply subject)
        fits what is left; the first that does not stays undelivered and ``stop_reason`` is
        STOP_MAX_BYTES. Hot path: run bench/streams.py before changing."""
        out = DeliveredBatch()
        if batch <= 0:
            return out
        stream = self.stream
        now = self.clock.now_ms()
        self.last_active_ms = now
        left = max_bytes or 0
        ack = self._ack
        pending = self._pending
        headers_only = self.config.headers_only
        flt = self._filter
        shift = 1 + stream.shift
        while len(out) < batch:
            seq = 0
            dc = 1
            msg = None
            source = 0  # 1: re-delivery, 2: last-per-subject list, 3: new
            while self._rdq:
                s = self._rdq.popleft()
                self._rdq_set.discard(s)
                if s not in pending:
                    continue
                dc = self._rdc.get(s, 0) + 2
                if self._maxdc and dc > self._maxdc:
                    self._rdc[s] = dc - 1
                    if dc == self._maxdc + 1:
                        self._events.append(ConsumerEvent("max_deliveries", s, pending[s][0], dc - 1))
                    del pending[s]  # out of pending; the ack floor stays (getNextMsg)
                    self.dirty = True
                    continue
                msg = stream._live_record(s)
                if msg is None:
                    p = pending[s]
                    self._settle(s)
                    self._events.append(ConsumerEvent("terminated", s, p[0], dc - 1, TERM_REASON_DELETED))
                    continue
                seq, source = s, 1
                break
            if not seq:
                if self._maxp and len(pending) >= self._maxp:
                    out.stop_reason = STOP_MAX_ACK_PENDING
                    break
                if self._lss is not None:
                    s = self._lss[0]
                    msg = stream._live_record(s)
                    if msg is None:  # removed meanwhile (normally _on_removed took it out)
                        self._lss.popleft()
                        self._lss_set.discard(s)
                        if not self._lss:
                            self._end_lss()
                        continue
                    seq, source, dc = s, 2, 1
                else:
                    s = stream.next_seq_matching(self._next, flt)
                    if not s:
                        if self._next <= stream.last_seq:
                            self._next = stream.last_seq + 1
                        out.stop_reason = STOP_NO_MESSAGES
                        break
                    msg = stream._record(s - shift)  # live: next_seq_matching said so
                    if msg is None:
                        self._next = s + 1
                        continue
                    seq, source, dc = s, 3, 1
            payload = msg.value or b""  # type: ignore[union-attr]
            headers = msg.headers  # type: ignore[union-attr]
            key = msg.key  # type: ignore[union-attr]
            subject = key.decode() if key else ""
            if headers_only:
                headers = (*headers, (HDR_MSG_SIZE, str(len(payload)).encode()))
                payload = b""
            if max_bytes:
                size = len(subject) + header_block_len(headers) + len(payload) + size_overhead
                if size > left:
                    if source == 1:
                        self._rdq.appendleft(seq)
                        self._rdq_set.add(seq)
                    out.stop_reason = STOP_MAX_BYTES
                    break
                left -= size
            # Deliver.
            if source == 1:
                self._rdc[seq] = dc - 1
            else:
                self._np -= 1
                if source == 2:
                    self._lss.popleft()  # type: ignore[union-attr]
                    self._lss_set.discard(seq)
                    self._next = seq + 1
                    if not self._lss:
                        self._end_lss()
                else:
                    self._next = seq + 1
            dseq = self._dseq
            self._dseq = dseq + 1
            if ack == "none":
                self._floor_c, self._floor_s = dseq, seq
            else:
                p = pending.get(seq)
                if p is None:
                    pending[seq] = [dseq, now]
                else:
                    p[1] = now
            out.append(_new_tuple(Delivered, (seq, dseq, dc, self._np, subject, payload, headers,
                                              msg.timestamp_ms)))  # type: ignore[union-attr]
            if ack == "none" and self._retention != "limits":
                stream.ack_msg(seq, self)
            if max_bytes and left <= 0:
                break
        if out:
            self.dirty = True
        return out

    def _end_lss(self) -> None:
        self._lss = None
        self._lss_set = set()
        self._next = max(self._next, self._lss_resume + 1)

    # -- pull requests -----------------------------------------------------------------------------

    def pull(self, batch: int = 1, *, expires_ms: int = 0, no_wait: bool = False, max_bytes: int = 0,
             heartbeat_ms: int = 0, token: Any = None) -> PullRequest:
        """Register a pull request (CONSUMER.MSG.NEXT; consumer.go processNextMsgRequest) with nats-
        server's limits. ``expires_ms`` is relative (0 = never). Raises a PullRequestRefused subclass
        (409/404/400 status for the reply subject). Serve it with ``serve_pulls``."""
        cfg = self.config
        now = self.clock.now_ms()
        self.last_active_ms = now
        if cfg.is_push:
            raise ConsumerIsPushBased()
        if batch <= 0:
            batch = 1
        if cfg.max_batch > 0 and batch > cfg.max_batch:
            raise ExceededMaxRequestBatch(cfg.max_batch)
        if expires_ms and cfg.max_expires > 0 and expires_ms * NANOS_PER_MS > cfg.max_expires:
            raise ExceededMaxRequestExpires(cfg.max_expires)
        if max_bytes > 0 and cfg.max_bytes > 0 and max_bytes > cfg.max_bytes:
            raise ExceededMaxRequestMaxBytes(cfg.max_bytes)
        if heartbeat_ms and expires_ms and heartbeat_ms * 2 > expires_ms:
            raise BadPullRequest("heartbeat value too large")
        self.expire_pulls(now)  # make room, as nats-server does when the queue is full
        if no_wait:
            available = self._np + len(self._rdq)
            if available == 0 and not expires_ms:
                raise NoMessages()
        if len(self._waiting) >= max(cfg.max_waiting, 1):
            raise ExceededMaxWaiting()
        req = PullRequest(token, batch, max(max_bytes, 0), now + expires_ms if expires_ms else 0,
                          no_wait, heartbeat_ms, now)
        self._waiting.append(req)
        return req

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def waiting_requests(self) -> list[PullRequest]:
        return list(self._waiting)

    def cancel_pull(self, token: Any) -> bool:
        """Drop the waiting request(s) with ``token`` (the requester went away)."""
        before = len(self._waiting)
        self._waiting = deque(r for r in self._waiting if r.token != token)
        return len(self._waiting) != before

    def serve_pulls(self, *, size_overhead: int = 0) -> list[PullOutcome]:
        """Give available messages to waiting requests, oldest first (consumer.go nextWaiting /
        processWaiting). Finished requests are removed and reported with the reason."""
        out: list[PullOutcome] = []
        waiting = self._waiting
        exhausted = False
        while waiting and not exhausted:
            req = waiting[0]
            msgs = self.next_messages(req.remaining, req.bytes_left or None, size_overhead=size_overhead)
            req.remaining -= len(msgs)
            req.delivered += len(msgs)
            if req.max_bytes:
                req.bytes_left -= sum(len(m.subject) + header_block_len(m.headers) + len(m.payload) + size_overhead
                                      for m in msgs)
            finished = None
            if msgs.stop_reason == STOP_MAX_BYTES:
                finished = PULL_MAX_BYTES
            elif req.remaining <= 0 or (req.max_bytes and req.bytes_left <= 0):
                finished = PULL_DONE
            elif msgs.stop_reason in (STOP_NO_MESSAGES, STOP_MAX_ACK_PENDING):
                exhausted = True
                if req.no_wait and (not req.expires_ms or req.delivered > 0):
                    finished = PULL_NO_MESSAGES
            if finished:
                waiting.popleft()
            if msgs or finished:
                out.append(PullOutcome(req, list(msgs), finished))
        if exhausted:
            # processWaiting(eos=true): the other no_wait requests end too.
            keep = deque()
            for req in waiting:
                if req.no_wait and (not req.expires_ms or req.delivered > 0):
                    out.append(PullOutcome(req, [], PULL_NO_MESSAGES))
                else:
                    keep.append(req)
            self._waiting = keep
        return out

    def expire_pulls(self, now_ms: int | None = None) -> list[PullOutcome]:
        """Remove requests past their expiry (408 Request Timeout)."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        if not self._waiting:
            return []
        out = []
        keep = deque()
        for req in self._waiting:
            if req.expires_ms and now >= req.expires_ms:
                out.append(PullOutcome(req, [], PULL_EXPIRED))
            else:
                keep.append(req)
        self._waiting = keep
        return out

    def next_pull_deadline_ms(self) -> int | None:
        deadlines = [r.expires_ms for r in self._waiting if r.expires_ms]
        return min(deadlines) if deadlines else None

    # -- state -------------------------------------------------------------------------------------

    @property
    def num_pending(self) -> int:
        return max(self._np, 0)

    @property
    def num_ack_pending(self) -> int:
        return len(self._pending)

    @property
    def num_redelivered(self) -> int:
        return len(self._rdc)

    def pending_seqs(self) -> list[int]:
        return list(self._pending)

    @property
    def last_delivered(self) -> tuple[int, int]:
        """(consumer seq, stream seq) of the last delivery, as an idle heartbeat's Nats-Last-Consumer /
        Nats-Last-Stream carry them (consumer.go sendIdleHeartbeat: ``o.dseq-1``, ``o.sseq-1``)."""
        return self._dseq - 1, self._next - 1

    def touch(self) -> None:
        """Mark activity (push: the session saw interest on deliver_subject)."""
        self.last_active_ms = self.clock.now_ms()

    def inactive_deadline_ms(self) -> int | None:
        """When this consumer may be deleted for inactivity (``inactive_threshold``), or None."""
        t = self.config.inactive_threshold
        if t <= 0 or (self.push_bound and self.config.is_push) or self._waiting:
            return None
        return self.last_active_ms + t // NANOS_PER_MS

    def info(self) -> ConsumerInfo:
        """nats-server ``ConsumerInfo`` (consumer.go infoWithSnapAndReply)."""
        dseq = max(self._dseq, 1)
        sseq = max(self._next, 1)
        np = self.num_pending
        last = self.stream.last_seq
        if sseq > last:
            np = 0
        return ConsumerInfo(
            stream_name=self.stream.name, name=self.name, created=self.created_ms, config=self.config,
            delivered=SequenceInfo(dseq - 1, sseq - 1), ack_floor=SequenceInfo(self._floor_c, self._floor_s),
            num_ack_pending=len(self._pending), num_redelivered=len(self._rdc), num_waiting=len(self._waiting),
            num_pending=np, push_bound=self.push_bound and self.config.is_push,
        )

    def snapshot(self) -> dict[str, Any]:
        """The persistent state (nats-server ``ConsumerState``) as a JSON-able dict."""
        d: dict[str, Any] = {
            "delivered": [self._dseq - 1, self._next - 1],
            "ack_floor": [self._floor_c, self._floor_s],
            "pending": [[s, p[0], p[1]] for s, p in self._pending.items()],
            "redelivered": [[s, n] for s, n in self._rdc.items()],
        }
        if self._lss is not None:
            d["lss"] = list(self._lss)
            d["lss_resume"] = self._lss_resume
        return d

    def update_config(self, new: ConsumerConfig) -> None:
        """Apply an allowed update (``ConsumerConfig.check_update`` passed)."""
        filters_changed = new.filters != self.config.filters
        self.config = new
        self._maxdc = new.max_deliver if new.max_deliver > 0 else 0
        self._maxp = new.max_ack_pending if new.ack_policy != "none" and new.max_ack_pending > 0 else 0
        if filters_changed:
            self._filter = make_filter(self.stream, new.filters)
            self._recount()
        self.dirty = True

    def __repr__(self) -> str:
        return (f"Consumer({self.stream.name!r}/{self.name!r}, next={self._next}, pending={len(self._pending)}, "
                f"num_pending={self._np})")


# -- creation and deletion -------------------------------------------------------------------------------


def _new_name() -> str:
    # nats-server createConsumerName: 8 random alphanumerics. Randomness, not time: fine in the core.
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(alphabet[b % len(alphabet)] for b in os.urandom(8))


def create_consumer(stream: Stream, config: ConsumerConfig, *, action: str = "", name: str | None = None,
                    created_ms: int | None = None, state: Mapping[str, Any] | None = None,
                    recovering: bool = False) -> tuple[Consumer, bool]:
    """CONSUMER.CREATE / DURABLE.CREATE / UPDATE on ``stream`` (consumer.go
    addConsumerWithAssignment). ``action``: "" (create or update), "create", "update". ``name``: the
    name from the API subject, if any. Returns (consumer, created). Raises the errors above."""
    cfg = config.normalized(stream.config, recovering=recovering)
    scfg = stream.config
    cname = cfg.durable_name or cfg.name or name or ""
    if name and cname and name != cname:
        raise ConsumerNameMismatch()
    existing = stream.consumers.get(cname) if cname else None
    if existing is not None and not recovering:
        if action == "create" and _cmp(existing.config) != _cmp(cfg):
            raise ConsumerAlreadyExists()
        if scfg.retention == "workqueue" and not _partition_unique(stream, cname, cfg.filters):
            raise ConsumerWQConsumerNotUnique()
        existing.config.check_update(cfg)
        existing.update_config(cfg)
        return existing, False
    if action == "update":
        raise ConsumerDoesNotExist()
    if not recovering:
        if scfg.max_consumers > 0 and len(stream.consumers) >= scfg.max_consumers:
            raise MaximumConsumersReached()
        if scfg.retention == "workqueue" and not cfg.direct:
            if cfg.ack_policy != "explicit":
                raise ConsumerWQRequiresExplicitAck()
            if cfg.deliver_policy != "all":
                raise ConsumerWQConsumerNotDeliverAll()
            if stream.consumers:
                if not cfg.filters:
                    raise ConsumerWQMultipleUnfiltered()
                if not _partition_unique(stream, cname, cfg.filters):
                    raise ConsumerWQConsumerNotUnique()
    if cfg.durable_name and len(cfg.durable_name) > MAX_NAME_LEN:
        raise ConsumerNameTooLong()
    if not cname:
        while True:
            cname = _new_name()
            if cname not in stream.consumers:
                break
        cfg = replace(cfg, name=cname)
    if not valid_asset_name(cname):
        raise ConsumerBadDurableName()
    consumer = Consumer(stream, cname, cfg, created_ms=created_ms, state=state)
    stream.consumers[cname] = consumer
    return consumer, True


def _valid_filtered_subject(flt: str, subjects: Iterable[str]) -> bool:
    """consumer.go validFilteredSubject: the filter is inside one of the stream's subjects, or (with
    wildcards) overlaps one."""
    wild = not is_literal(flt)
    return any(subject_is_subset(flt, s) or (wild and subjects_overlap(flt, s)) for s in subjects)


def _partition_unique(stream: Stream, name: str, filters: Iterable[str]) -> bool:
    # stream.go partitionUnique
    for partition in filters:
        for n, c in stream.consumers.items():
            if n == name or c.config.direct:
                continue
            if not c.config.filters:
                return False
            if any(subjects_overlap(partition, f) for f in c.config.filters):
                return False
    return True


def delete_consumer(stream: Stream, name: str) -> Consumer:
    """CONSUMER.DELETE. On interest retention, messages only this consumer was holding go
    (consumer.go cleanupNoInterestMessages). Raises ConsumerNotFound."""
    c = stream.consumers.pop(name, None)
    if c is None:
        raise ConsumerNotFound()
    if stream.config.retention == "interest":
        stream.check_interest()
        stream.flush()
    return c

