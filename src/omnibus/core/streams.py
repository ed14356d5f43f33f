"""JetStream streams on the shared storage engine: the protocol-neutral core (issue 6).

Strategy
    A stream is one storage ``Log`` (Kafka v2 record batches, design decision 1) plus small indexes kept
    in Python; message bodies stay on disk (page cache) and are read back on demand. Each record is one
    message: key = subject (UTF-8), value = payload, record headers = the NATS headers as ordered
    ``(name, value)`` pairs (the ``omnibus.core.messages`` layout, so a Kafka or AMQP reader of the log
    sees the same message), timestamp = the append time in ms from the injected clock. One ``append`` /
    ``append_many`` call writes one batch (callers gather a loop turn's publishes; a batch is split only
    when it would pass the log's ``max_batch_bytes``).

    Sequences: JetStream sequences start at 1 and never go backwards. ``seq = offset + 1 + shift`` where
    ``shift`` is 0 for a new stream, ``first_seq - 1`` for a stream created with ``first_seq``, and moves
    only when a purge asks for a first sequence past the end (``purge(seq=N)`` with N > last_seq + 1,
    nats-server ``memStore.compact`` "past the end") -- at a moment the stream is empty, so no existing
    mapping changes. ``shift`` is kept in the MetaStore record of the stream.

    Per-message index, three parallel ``array`` s indexed by ``seq - _base`` (16 bytes per message, no
    Python object per message): subject id (``array('I')``, ``DELETED`` marks a removed message), timestamp
    ms (``array('q')``), stored size (``array('I')``, 0 once removed). Subject ids index a subject table
    with per-subject count / first / last sequence (first and last recomputed lazily after removals, as
    nats-server's ``SimpleState.firstNeedsUpdate``). The arrays give C-speed scans: the next message of a
    literal subject is ``array.index``, the bytes of a range is ``sum`` of a slice, a start time is a
    ``bisect`` over the timestamps.

    Removals (MSG.DELETE, limits, max_age, purges, roll-ups, workqueue/interest acks) never rewrite the
    log:
    * at the head they only move ``first_seq``; ``flush`` then moves the log start offset
      (``Log.delete_records``), which also drops whole segments below it;
    * in the interior they set the message's bit in a ``QueueAcks`` bitmap next to the segment (one bit
      per message, pwritten by ``flush``; a segment whose records are all removed is deleted by
      ``QueueAcks.collect``). So the deleted set survives a restart without a MetaStore write per ack.
    A restart reads the log once from its start offset and rebuilds every index (subject table, counts,
    bytes, the de-duplication map of Nats-Msg-Ids still inside ``duplicate_window``, and the last
    msg id), as nats-server's ``rebuildDedupe`` does from stored headers. Removals not yet flushed when
    the process dies come back (at-least-once; a workqueue message is then delivered again).

    Storage ``memory`` uses the same code over a log the registry wipes at start (fsync never): one read
    path, one recovery path; what nats-server keeps in RAM we keep in the page cache. Its contents are
    lost on restart, its configuration is not (as nats-server).

    Durability hook: ``PubAck.offset`` is the log offset of the message; the session sends the PubAck
    from ``stream.log.when_durable(offset, cb)`` (design decision 3).

Rules (each cites nats-server; the error classes carry its err_code/description in a comment)
    * Publish checks in nats-server's order (``stream.go processJetStreamMsgWithBatch``): expected stream
      (10060), expected last subject sequence (10071, with ...-Subject override; 10193 if the subject is
      given alone), expected last sequence (10071), duplicate Nats-Msg-Id inside the window (PubAck
      ``duplicate=True`` with the original sequence), expected last msg id (10070), roll-up permission and
      value (10111), max_msg_size (10054), header size (10097), discard-new limits (10077), then store.
    * Limits after a store (``memstore.go storeRawMsg``/``enforce*``): per-subject limit removes the
      subject's oldest; discard old removes from the head while over max_msgs / max_bytes; discard new
      refuses instead (a message that replaces one at the per-subject limit is let through).
    * ``max_age``: ``expire()`` removes head messages with ``ts <= now - max_age`` (``expireMsgs``).
    * Interest retention with no consumer interested in the subject: the sequence is used and the
      message removed at once (``SkipMsgNoInterest``). Workqueue/interest: a message is removed when no
      consumer needs an ack for it any more (``stream.ackMsg`` / ``consumer.needAck``).
    * Purge (``memStore.PurgeEx``): ``seq`` purges below it, ``keep`` keeps the newest N (of the
      filter), ``filter`` limits to matching subjects; a purge moves every consumer past what it removed.

Concurrency: event-loop thread only (the log's thread). ``flush`` copies into the page cache;
    ``close`` blocks (fsync). Hot paths: ``append_many``, ``_load`` and the consumer scans; run
    ``python bench/streams.py`` before changing them.
"""

from __future__ import annotations

import bisect
import os
import shutil
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NamedTuple
from urllib.parse import quote

from omnibus.core.clock import Clock
from omnibus.core.routing.trie import SubjectTrie, is_literal, valid_nats_pattern
from omnibus.storage.acks import QueueAcks
from omnibus.storage.log import Log, LogConfig
from omnibus.storage.records import HEADER_SIZE, Record, build_batch, decode_records

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "DELETED",
    "DISCARD_POLICIES",
    "MAX_NAME_LEN",
    "NANOS_PER_MS",
    "RETENTION_POLICIES",
    "STORAGE_TYPES",
    "JetStreamError",
    "PubAck",
    "Publish",
    "Stream",
    "StreamConfig",
    "StreamState",
    "StoredMessage",
    "encode_header_block",
    "header_value",
    "parse_header_block",
    "stream_log_name",
    "subject_is_subset",
    "subjects_overlap",
]

# -- constants (nats-server defaults, with where they come from) ----------------------------------------

NANOS_PER_MS = 1_000_000
#: Durations in configs are nanoseconds, exactly as the JetStream JSON API carries them.
DEFAULT_DUPLICATE_WINDOW = 120_000 * NANOS_PER_MS  # stream.go StreamDefaultDuplicatesWindow = 2 min
MIN_MAX_AGE = 100 * NANOS_PER_MS  # checkStreamCfg: "max age needs to be >= 100ms"
MIN_DUPLICATE_WINDOW = 100 * NANOS_PER_MS  # checkStreamCfg: "duplicates window needs to be >= 100ms"
MAX_NAME_LEN = 255  # jetstream_api.go JSMaxNameLen
MAX_DESCRIPTION_LEN = 4 * 1024  # JSMaxDescriptionLen
MAX_METADATA_LEN = 128 * 1024  # JSMaxMetadataLen (sum of key and value lengths)
MAX_REPLICAS = 5  # stream.go StreamMaxReplicas
MAX_HEADER_BYTES = 65535  # processJetStreamMsg: len(hdr) > math.MaxUint16 -> 10097
RETENTION_POLICIES = ("limits", "interest", "workqueue")
DISCARD_POLICIES = ("old", "new")
STORAGE_TYPES = ("file", "memory")
COMPRESSIONS = ("none", "s2")

#: Subject id of a removed message in the per-message index.
DELETED = 0xFFFFFFFF
#: Decoded batches kept for reads (a consumer reading a batch of N messages decodes it once).
READ_CACHE_BATCHES = 8
#: Trim the per-message arrays once this many leading entries are below first_seq (amortised O(1)).
TRIM_SLACK = 4096

# NATS header names the stream interprets (stream.go constants).
HDR_MSG_ID = "Nats-Msg-Id"
HDR_EXPECTED_STREAM = "Nats-Expected-Stream"
HDR_EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
HDR_EXPECTED_LAST_SUBJ_SEQ = "Nats-Expected-Last-Subject-Sequence"
HDR_EXPECTED_LAST_SUBJ_SEQ_SUBJ = "Nats-Expected-Last-Subject-Sequence-Subject"
HDR_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
HDR_ROLLUP = "Nats-Rollup"
HDR_MSG_SIZE = "Nats-Msg-Size"
ROLLUP_SUBJECT = "sub"
ROLLUP_ALL = "all"

_HEADER_LINE = b"NATS/1.0\r\n"
_NO_OPTIONS = (None,) * 7  # Publish fields after (subject, payload, headers): none given
_EMPTY_HD: dict[str, bytes] = {}  # shared, never written


# -- errors ----------------------------------------------------------------------------------------------
# Named core exceptions; the NATS session maps each to nats-server's err_code / description
# (server/errors.json), given in the comment beside each class. str(e) is nats-server's description.


class JetStreamError(Exception):
    """Base of every stream and consumer error."""


class StreamNotFound(JetStreamError):  # 10059 (404) "stream not found"
    def __init__(self, name: str = "") -> None:
        super().__init__("stream not found")
        self.name = name


class StreamNameExists(JetStreamError):  # 10058 "stream name already in use with a different configuration"
    def __init__(self) -> None:
        super().__init__("stream name already in use with a different configuration")


class StreamSubjectOverlap(JetStreamError):  # 10065 "subjects overlap with an existing stream"
    def __init__(self) -> None:
        super().__init__("subjects overlap with an existing stream")


class StreamConfigInvalid(JetStreamError):  # 10052 (500) JSStreamInvalidConfigF "{err}"
    """Invalid stream configuration (creation or update); ``str(e)`` is the {err} text."""


class InvalidJSON(JetStreamError):  # 10025 "invalid JSON"
    """A request nats-server's JSON decoding refuses: a value of the wrong type, or an enum string
    (retention, discard, storage, compression, ack/deliver/replay policy) it does not know."""

    def __init__(self) -> None:
        super().__init__("invalid JSON")


class BadRequest(JetStreamError):  # 10003 "bad request" (a request nats-server refuses as such)
    def __init__(self) -> None:
        super().__init__("bad request")


class StreamMismatch(JetStreamError):  # 10056 "stream name in subject does not match request"
    def __init__(self) -> None:
        super().__init__("stream name in subject does not match request")


class StreamReplicasNotSupported(JetStreamError):  # 10074 "replicas > 1 not supported in non-clustered mode"
    def __init__(self) -> None:
        super().__init__("replicas > 1 not supported in non-clustered mode")


class ReplicasCountNegative(JetStreamError):  # 10133 "replicas count cannot be negative"
    def __init__(self) -> None:
        super().__init__("replicas count cannot be negative")


class MaximumStreamsReached(JetStreamError):  # 10027 "maximum number of streams reached"
    def __init__(self) -> None:
        super().__init__("maximum number of streams reached")


class StreamSealed(JetStreamError):  # 10109 "invalid operation on sealed stream"
    def __init__(self) -> None:
        super().__init__("invalid operation on sealed stream")


class StreamNotMatch(JetStreamError):  # 10060 "expected stream does not match" (Nats-Expected-Stream)
    def __init__(self) -> None:
        super().__init__("expected stream does not match")


class WrongLastSequence(JetStreamError):  # 10071 "wrong last sequence: {seq}"
    def __init__(self, last_seq: int) -> None:
        super().__init__(f"wrong last sequence: {last_seq}")
        self.last_seq = last_seq


class ExpectedLastSubjectSequenceMissing(JetStreamError):
    # 10193 "missing sequence for expected last sequence per subject"
    def __init__(self) -> None:
        super().__init__("missing sequence for expected last sequence per subject")


class WrongLastMsgId(JetStreamError):  # 10070 "wrong last msg ID: {id}"
    def __init__(self, last_msg_id: str) -> None:
        super().__init__(f"wrong last msg ID: {last_msg_id}")
        self.last_msg_id = last_msg_id


class RollupFailed(JetStreamError):  # 10111 (500) JSStreamRollupFailedF "{err}"
    """``str(e)``: "rollup not permitted" or 'rollup value invalid: "x"'."""


class MessageTooLarge(JetStreamError):  # 10054 "message size exceeds maximum allowed"
    def __init__(self) -> None:
        super().__init__("message size exceeds maximum allowed")


class HeaderTooLarge(JetStreamError):  # 10097 "header size exceeds maximum allowed of 64k"
    def __init__(self) -> None:
        super().__init__("header size exceeds maximum allowed of 64k")


class StoreFailed(JetStreamError):  # 10077 (503) JSStreamStoreFailedF "{err}"
    """A discard-new limit refused the message, or the log failed. ``str(e)`` is the {err} text:
    "maximum messages exceeded" / "maximum bytes exceeded" / "maximum messages per subject exceeded"
    (store.go ErrMaxMsgs, ErrMaxBytes, ErrMaxMsgsPerSubject), "message too large" (ErrMsgTooLarge)."""


class MsgDeleteFailed(JetStreamError):  # 10057 (500) JSStreamMsgDeleteFailedF "{err}"
    """``str(e)`` "message delete not permitted" when deny_delete is set."""


class PurgeFailed(JetStreamError):  # 10110 (500) JSStreamPurgeFailedF "{err}"
    """``str(e)`` "stream purge not permitted" when deny_purge is set."""


class SequenceNotFound(JetStreamError):  # 10043 "sequence {seq} not found"
    def __init__(self, seq: int) -> None:
        super().__init__(f"sequence {seq} not found")
        self.seq = seq


class NoMessageFound(JetStreamError):  # 10037 (404) "no message found"
    def __init__(self) -> None:
        super().__init__("no message found")


class StreamFailed(JetStreamError):  # 10077 JSStreamStoreFailedF "{err}" (the log refused a write)
    """The stream's log failed (I/O); the stream refuses appends from now on."""


# -- headers ---------------------------------------------------------------------------------------------

Headers = tuple[tuple[str, bytes], ...]


def parse_header_block(block: bytes | bytearray | memoryview | None) -> Headers:
    """The ``(name, value)`` pairs of a NATS header block ``NATS/1.0[ status]\\r\\nK: V\\r\\n...\\r\\n``,
    in order, duplicates kept. Names are case-sensitive and values have leading spaces skipped, as
    nats-server's ``sliceHeader`` reads them; the version/status line is dropped (clients do not publish
    a status). Lines without a colon are ignored."""
    if not block:
        return ()
    data = bytes(block)
    lines = data.split(b"\r\n")
    out = []
    for line in lines[1:]:
        if not line:
            continue
        i = line.find(b":")
        if i <= 0:
            continue
        out.append((line[:i].decode("utf-8", "replace"), line[i + 1 :].lstrip(b" ")))
    return tuple(out)


def encode_header_block(headers: Headers | None, extra: Headers = ()) -> bytes | None:
    """The NATS header block of ``headers`` (+ ``extra``), or None when there are none."""
    if not headers and not extra:
        return None
    parts = [_HEADER_LINE]
    for name, value in (*headers, *extra) if extra else headers:  # type: ignore[misc]
        parts.append(name.encode())
        parts.append(b": ")
        parts.append(value or b"")
        parts.append(b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def header_block_len(headers: Headers) -> int:
    """Length of ``encode_header_block(headers)`` without building it (0 for no headers)."""
    if not headers:
        return 0
    n = len(_HEADER_LINE) + 2
    for name, value in headers:
        n += len(name) + 4 + (len(value) if value else 0)
    return n


def header_value(headers: Headers, name: str) -> bytes | None:
    """The first value of ``name`` (case-sensitive, as nats-server's ``getHeader``), or None."""
    for k, v in headers:
        if k == name:
            return v
    return None


def _normalize_headers(headers: Any) -> tuple[Headers, int, int]:
    """(pairs, the header length the limits see, the canonical block length the byte counts use).
    Accepts a raw NATS block, a mapping (a list value repeats the key), a sequence of pairs, or None."""
    if headers is None:
        return (), 0, 0
    if isinstance(headers, (bytes, bytearray, memoryview)):
        pairs = parse_header_block(headers)
        return pairs, len(headers), header_block_len(pairs)
    if type(headers) is dict or isinstance(headers, Mapping):
        out = []
        for k, v in headers.items():
            if isinstance(v, (list, tuple)):
                out.extend((k, _hv(x)) for x in v)
            else:
                out.append((k, v if type(v) is bytes else _hv(v)))
        pairs = tuple(out)
    else:
        pairs = tuple((k, _hv(v)) for k, v in headers)
    n = header_block_len(pairs)
    return pairs, n, n


def _hv(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    if v is None:
        return b""
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    return str(v).encode()


def _parse_uint(value: bytes | None) -> int | None:
    """A header's unsigned integer; nats-server's parseInt64 gives -1 for garbage, which then never
    matches (so a bad expected sequence fails the check rather than being ignored)."""
    if value is None or not value:
        return None
    return int(value) if value.isdigit() else -1


# -- subjects --------------------------------------------------------------------------------------------


def _is_wild(tok: str) -> bool:
    return tok == "*" or tok == ">"


def subjects_overlap(a: str, b: str) -> bool:
    """True if some literal subject matches both patterns (nats-server ``sublist.go SubjectsCollide``).

    A literal against a pattern is answered by the subject trie (``SubjectTrie`` match); two patterns
    with wildcards are compared token by token, as nats-server does (a trie matches subjects, not
    patterns against patterns). Wildcards count only as whole tokens, as in ``IsValidSubject``."""
    if a == b:
        return True
    ta, tb = a.split("."), b.split(".")
    la, lb = is_literal(a), is_literal(b)
    if la and lb:
        return False
    if la or lb:
        literal, pattern = (a, b) if la else (b, a)
        trie = SubjectTrie("nats", cache_size=0)
        try:
            trie.insert(pattern, True)
        except ValueError:
            return False
        return trie.has_interest(literal)
    fa, fb = ta[-1] == ">", tb[-1] == ">"
    if not fa and not fb and len(ta) != len(tb):
        return False
    if len(ta) < len(tb) and not fa or len(tb) < len(ta) and not fb:
        return False
    for x, y in zip(ta, tb):
        if not x or not y:
            return False
        if _is_wild(x) or _is_wild(y):
            continue
        if x != y:
            return False
    return True


def subject_is_subset(subject: str, of: str) -> bool:
    """True if every subject matched by ``subject`` is matched by ``of`` (nats-server
    ``subjectIsSubsetMatch`` / ``isSubsetMatchTokenized``): ``foo.*`` is a subset of ``>``, ``*.*`` and
    ``foo.*`` but not of ``foo.bar``."""
    tokens, test = subject.split("."), of.split(".")
    for i, t2 in enumerate(test):
        if i >= len(tokens) or not t2:
            return False
        if t2 == ">":
            return True
        t1 = tokens[i]
        if not t1 or t1 == ">":
            return False
        if t1 == "*":
            if t2 != "*":
                return False
            continue
        if t2 != "*" and t1 != t2:
            return False
    return len(tokens) == len(test)


def valid_asset_name(name: str) -> bool:
    """nats-server ``isValidAssetName``: non-empty, none of `` \\t\\r\\n\\f.*>\\\\/``."""
    return bool(name) and not any(c in name for c in " \t\r\n\f.*>\\/")


def stream_log_name(name: str) -> str:
    """The stream's log directory relative to the broker's logs dir (names percent-quoted)."""
    return f"jetstream/{quote(name, safe='')}"


# -- configuration ---------------------------------------------------------------------------------------


def _tuple(v: Any) -> tuple:
    if v is None:
        return ()
    return tuple(v)


@dataclass(frozen=True)
class StreamConfig:
    """Every field of nats-server's ``StreamConfig`` (stream.go), named as its JSON key, in its units
    (durations in nanoseconds). Fields Omnibus stores but does not implement (mirror, sources,
    transforms, republish, per-message TTL, counters, atomic/batch publish, schedules) are refused by
    :meth:`normalized` when set to anything but their default. ``extra`` keeps unknown JSON keys so an
    INFO echoes what was sent."""

    name: str
    description: str = ""
    subjects: tuple[str, ...] = ()
    retention: str = "limits"
    max_consumers: int = -1
    max_msgs: int = -1
    max_bytes: int = -1
    max_age: int = 0
    max_msgs_per_subject: int = -1
    max_msg_size: int = -1
    discard: str = "old"
    storage: str = "file"
    num_replicas: int = 1
    no_ack: bool = False
    duplicate_window: int = 0
    placement: Mapping[str, Any] | None = None
    mirror: Mapping[str, Any] | None = None
    sources: tuple[Mapping[str, Any], ...] = ()
    compression: str = "none"
    first_seq: int = 0
    subject_transform: Mapping[str, Any] | None = None
    republish: Mapping[str, Any] | None = None
    allow_direct: bool = False
    mirror_direct: bool = False
    discard_new_per_subject: bool = False
    sealed: bool = False
    deny_delete: bool = False
    deny_purge: bool = False
    allow_rollup_hdrs: bool = False
    consumer_limits: Mapping[str, Any] = field(default_factory=dict)
    allow_msg_ttl: bool = False
    subject_delete_marker_ttl: int = 0
    allow_msg_counter: bool = False
    allow_atomic: bool = False
    allow_msg_schedules: bool = False
    allow_batched: bool = False
    persist_mode: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- mapping ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StreamConfig":
        """From the JetStream JSON shape (already decoded). Unknown keys go to ``extra``. Raises
        StreamConfigInvalid for a value of the wrong type."""
        known = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for k, v in d.items():
            if k in known:
                kw[k] = v
            else:
                extra[k] = v
        if "name" not in kw or not isinstance(kw["name"], str):
            kw["name"] = str(kw.get("name") or "")
        try:
            for k in ("subjects", "sources"):
                if k in kw:
                    kw[k] = _tuple(kw[k])
            for k in ("consumer_limits", "metadata"):
                if k in kw and kw[k] is None:
                    kw[k] = {}
            cfg = cls(**kw, extra=extra)
            _check_types(cfg)
        except (TypeError, ValueError):
            raise InvalidJSON() from None
        _check_enums(d, _STREAM_ENUMS)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The JetStream JSON shape (lists for tuples, ``extra`` merged back)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        d["subjects"] = list(self.subjects)
        d["sources"] = [dict(s) for s in self.sources]
        d["consumer_limits"] = dict(self.consumer_limits)
        d["metadata"] = dict(self.metadata)
        for k in ("placement", "mirror", "subject_transform", "republish"):
            if d[k] is not None:
                d[k] = dict(d[k])
        d.update(self.extra)
        return d

    # -- derived ---------------------------------------------------------------------------------

    @property
    def max_age_ms(self) -> int:
        return self.max_age // NANOS_PER_MS if self.max_age > 0 else 0

    @property
    def duplicate_window_ms(self) -> int:
        return self.duplicate_window // NANOS_PER_MS if self.duplicate_window > 0 else 0

    # -- validation ------------------------------------------------------------------------------

    def normalized(self) -> "StreamConfig":
        """nats-server ``checkStreamCfg``: defaults filled in (file storage, -1 for unset limits, the
        duplicate window, subjects = [name]), then validated. Raises StreamConfigInvalid (10052) and
        friends with nats-server's texts."""
        c = self
        if not valid_asset_name(c.name):
            raise StreamConfigInvalid("stream name is required and can not contain '.', '*', '>', '\\', '/'")
        if len(c.name) > MAX_NAME_LEN:
            raise StreamConfigInvalid(f"stream name is too long, maximum allowed is {MAX_NAME_LEN}")
        if len(c.description) > MAX_DESCRIPTION_LEN:
            raise StreamConfigInvalid(
                f"stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}")
        if sum(len(k) + len(v) for k, v in c.metadata.items()) > MAX_METADATA_LEN:
            raise StreamConfigInvalid(f"stream metadata exceeds maximum size of {MAX_METADATA_LEN} bytes")
        if c.retention not in RETENTION_POLICIES:
            raise StreamConfigInvalid("invalid retention")
        if c.discard not in DISCARD_POLICIES:
            raise StreamConfigInvalid("invalid discard policy")
        if c.compression not in COMPRESSIONS and c.compression != "":
            raise StreamConfigInvalid("invalid compression")
        if c.storage not in STORAGE_TYPES:
            raise StreamConfigInvalid("invalid storage type")
        kw: dict[str, Any] = {}
        if c.compression == "":
            kw["compression"] = "none"
        replicas = c.num_replicas or 1
        if replicas > MAX_REPLICAS:
            raise StreamConfigInvalid(f"maximum replicas is {MAX_REPLICAS}")
        if replicas < 0:
            raise ReplicasCountNegative()
        if replicas > 1:
            raise StreamReplicasNotSupported()
        kw["num_replicas"] = replicas
        for name in ("max_msgs", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_consumers"):
            v = getattr(c, name)
            if v == 0 or v < -1:
                kw[name] = -1
        if c.max_age < 0:
            raise StreamConfigInvalid("max age can not be negative")
        if 0 < c.max_age < MIN_MAX_AGE:
            raise StreamConfigInvalid("max age needs to be >= 100ms")
        dup = c.duplicate_window
        if dup == 0 and c.mirror is None and not c.sources:
            dup = c.max_age if 0 < c.max_age < DEFAULT_DUPLICATE_WINDOW else DEFAULT_DUPLICATE_WINDOW
        if dup < 0:
            raise StreamConfigInvalid("duplicates window can not be negative")
        if c.max_age != 0 and dup > c.max_age:
            raise StreamConfigInvalid("duplicates window can not be larger then max age")
        if 0 < dup < MIN_DUPLICATE_WINDOW:
            raise StreamConfigInvalid("duplicates window needs to be >= 100ms")
        kw["duplicate_window"] = dup
        if c.deny_purge and c.allow_rollup_hdrs:
            raise StreamConfigInvalid("roll-ups require the purge permission")
        if c.discard_new_per_subject:
            if c.discard != "new":
                raise StreamConfigInvalid("discard new per subject requires discard new policy to be set")
            if kw.get("max_msgs_per_subject", c.max_msgs_per_subject) <= 0:
                raise StreamConfigInvalid("discard new per subject requires max msgs per subject > 0")
        if c.first_seq < 0:
            raise StreamConfigInvalid("first sequence can not be negative")
        if c.allow_msg_ttl:
            # A 2.11 field that nats-server 2.10 (whose version we announce) does not know: its JSON decoder
            # drops it, so the stream is created without per-message TTLs. nats-py >= 2.10 sets it on every
            # key-value bucket it creates.
            kw["allow_msg_ttl"] = False
        unsupported = [
            ("mirror", c.mirror is not None), ("sources", bool(c.sources)),
            ("subject_transform", c.subject_transform is not None), ("republish", c.republish is not None),
            ("subject_delete_marker_ttl", c.subject_delete_marker_ttl != 0),
            ("allow_msg_counter", c.allow_msg_counter), ("allow_atomic", c.allow_atomic),
            ("allow_msg_schedules", c.allow_msg_schedules), ("allow_batched", c.allow_batched),
            ("persist_mode", c.persist_mode not in ("", "default")),
        ]
        for what, used in unsupported:
            if used:
                raise StreamConfigInvalid(f"{what} is not supported by this server")
        subjects = c.subjects
        if not subjects:
            subjects = (c.name,)
        else:
            seen: set[str] = set()
            for i, subj in enumerate(subjects):
                if not isinstance(subj, str) or not valid_nats_pattern(subj):
                    raise StreamConfigInvalid("invalid subject")
                if subj in seen:
                    raise StreamConfigInvalid("duplicate subjects detected")
                if subj == ">" and not c.no_ack:
                    raise StreamConfigInvalid("capturing all subjects requires no-ack to be true")
                if not c.no_ack:
                    for ns in ("$JS.>", "$JSC.>", "$NRG.>"):
                        if subjects_overlap(subj, ns) and not subject_is_subset(subj, "$JS.EVENT.>"):
                            raise StreamConfigInvalid(
                                "subjects that overlap with jetstream api require no-ack to be true")
                    if subjects_overlap(subj, "$SYS.>") and not subject_is_subset(subj, "$SYS.ACCOUNT.>"):
                        raise StreamConfigInvalid("subjects that overlap with system api require no-ack to be true")
                for other in subjects[i + 1 :]:
                    if subjects_overlap(other, subj):
                        raise StreamConfigInvalid(f'subject "{subj}" overlaps with "{other}"')
                seen.add(subj)
        kw["subjects"] = tuple(subjects)
        if c.placement is not None and not any(c.placement.values()):
            kw["placement"] = None
        elif c.placement is not None and c.placement.get("preferred"):
            raise StreamConfigInvalid("preferred server not permitted in placement")
        return replace(c, **kw)

    def check_update(self, new: "StreamConfig") -> "StreamConfig":
        """nats-server ``configUpdateCheck`` (self is the current, normalized config): returns the
        normalized new config or raises StreamConfigInvalid with nats-server's text."""
        cfg = new.normalized()
        old = self
        if cfg.name != old.name:
            raise StreamConfigInvalid("stream configuration name must match original")
        if cfg.max_consumers != old.max_consumers:  # "Can't change MaxConsumers for now" (2.9-2.11)
            raise StreamConfigInvalid("stream configuration update can not change MaxConsumers")
        if cfg.storage != old.storage:
            raise StreamConfigInvalid("stream configuration update can not change storage type")
        if cfg.retention != old.retention and "workqueue" in (cfg.retention, old.retention):
            raise StreamConfigInvalid(
                "stream configuration update can not change retention policy to/from workqueue")
        if old.sealed and not cfg.sealed:
            raise StreamConfigInvalid("stream configuration update can not unseal a sealed stream")
        if old.deny_delete and not cfg.deny_delete:
            raise StreamConfigInvalid("stream configuration update can not cancel deny message deletes")
        if old.deny_purge and not cfg.deny_purge:
            raise StreamConfigInvalid("stream configuration update can not cancel deny purge")
        if cfg.first_seq != old.first_seq and cfg.first_seq:
            raise StreamConfigInvalid("stream configuration update can not change first sequence")
        if cfg.sealed:  # "Do some adjustments for being sealed."
            cfg = replace(cfg, max_age=0, discard="new", deny_delete=True, deny_purge=True,
                          allow_rollup_hdrs=False)
        return cfg


_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "retention": (str,), "discard": (str,), "storage": (str,),
    "compression": (str,), "persist_mode": (str,),
    "max_consumers": (int,), "max_msgs": (int,), "max_bytes": (int,), "max_age": (int,),
    "max_msgs_per_subject": (int,), "max_msg_size": (int,), "num_replicas": (int,),
    "duplicate_window": (int,), "first_seq": (int,), "subject_delete_marker_ttl": (int,),
    "no_ack": (bool,), "allow_direct": (bool,), "mirror_direct": (bool,), "discard_new_per_subject": (bool,),
    "sealed": (bool,), "deny_delete": (bool,), "deny_purge": (bool,), "allow_rollup_hdrs": (bool,),
    "allow_msg_ttl": (bool,), "allow_msg_counter": (bool,), "allow_atomic": (bool,),
    "allow_msg_schedules": (bool,), "allow_batched": (bool,),
}


#: Enum fields and the JSON strings nats-server's UnmarshalJSON accepts for them (anything else, when the
#: key is present, fails the decoding: 10025 "invalid JSON").
_STREAM_ENUMS = {"retention": RETENTION_POLICIES, "discard": DISCARD_POLICIES, "storage": STORAGE_TYPES,
                 "compression": (*COMPRESSIONS, "")}


def _check_enums(d: Mapping[str, Any], enums: Mapping[str, tuple[str, ...]]) -> None:
    for key, allowed in enums.items():
        if key in d and d[key] not in allowed:
            raise InvalidJSON()


def _check_types(cfg: Any) -> None:
    for name, types in _TYPES.items():
        if not hasattr(cfg, name):
            continue
        v = getattr(cfg, name)
        if types == (int,) and isinstance(v, bool):
            raise TypeError(f"{name} must be an integer")
        if not isinstance(v, types):
            raise TypeError(f"{name} has the wrong type")


# -- values handed out -----------------------------------------------------------------------------------


class PubAck(NamedTuple):
    """What a publish returns. ``offset``: the log offset to wait on with ``log.when_durable`` before
    sending the PubAck (for a duplicate: the original's offset)."""

    stream: str
    seq: int
    duplicate: bool = False
    offset: int = -1


#: Builds NamedTuples without their generated Python ``__new__`` (hot path: one per stored message).
_new_tuple = tuple.__new__


class Publish(NamedTuple):
    """One message of an ``append_many`` call. Options left as None are read from ``headers``
    (Nats-Msg-Id, Nats-Expected-*, Nats-Rollup), so a session can pass the publish through as is."""

    subject: str
    payload: bytes | memoryview = b""
    headers: Any = None
    msg_id: str | None = None
    expected_stream: str | None = None
    expected_last_seq: int | None = None
    expected_last_subject_seq: int | None = None
    expected_last_subject_seq_subject: str | None = None
    expected_last_msg_id: str | None = None
    rollup: str | None = None


class StoredMessage(NamedTuple):
    """A message read back (STREAM.MSG.GET, DIRECT.GET, consumers). ``timestamp`` in ms."""

    seq: int
    subject: str
    payload: bytes
    headers: Headers
    timestamp: int

    def header_block(self) -> bytes | None:
        return encode_header_block(self.headers)


@dataclass
class StreamState:
    """nats-server ``StreamState`` (JSON keys). Times are ms since the epoch (0 = unset)."""

    messages: int
    bytes: int
    first_seq: int
    first_ts: int
    last_seq: int
    last_ts: int
    num_deleted: int
    num_subjects: int
    consumer_count: int
    subjects: dict[str, int] | None = None
    deleted: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.subjects is None:
            del d["subjects"]
        if self.deleted is None:
            del d["deleted"]
        return d


class _Subject:
    __slots__ = ("name", "count", "first", "last", "first_stale", "last_stale")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.first = 0
        self.last = 0
        self.first_stale = False
        self.last_stale = False


# -- the stream ------------------------------------------------------------------------------------------


class Stream:
    """One JetStream stream over ``log``. Build with :meth:`open` (it rebuilds the indexes from the
    log). Event-loop thread only. See the module docstring."""

    def __init__(self, config: StreamConfig, log: Log, clock: Clock, *, created_ms: int = 0,
                 shift: int = 0) -> None:
        self.config = config
        self.log = log
        self.clock = clock
        self.created_ms = created_ms or clock.now_ms()
        self.acks = QueueAcks(log)
        self._shift = shift
        self.consumers: dict[str, Any] = {}  # name -> stream_consumers.Consumer
        self.failure: BaseException | None = None
        self._file = config.storage == "file"
        # per-message index
        self._base = log.start_offset + 1 + shift
        self._sids = array("I")
        self._ts = array("q")
        self._sizes = array("I")
        self._first = self._base
        self._last = log.end_offset + shift
        self._first_ts = 0
        self._last_ts = 0
        self._msgs = 0
        self._bytes = 0
        # subjects
        self._subjects: list[_Subject] = []
        self._sid_of: dict[str, int] = {}
        self._live_subjects = 0
        # de-duplication: msg id -> (seq, ts), and insertion order for expiry
        self._dedup: dict[str, tuple[int, int]] = {}
        self._dedup_order: deque[tuple[int, str]] = deque()
        self._last_msg_id = ""
        # persistence of removals
        self._head_dirty = False
        self._deferred_acks: list[int] = []  # offsets removed before their batch reached the log
        self._collect_due = False  # interior removals since the last QueueAcks.collect
        self._staging = 0  # first seq of the append_many call in progress (0: none)
        self._staged_bytes = 0
        self._purged_while_staging = False
        # read cache: base offset -> (end offset, records)
        self._cache: dict[int, tuple[int, list[Record]]] = {}
        self._hit: tuple[int, int, list[Record]] = (0, 0, [])
        self._closed = False
        self._listeners: list[Callable[[int, int], None]] = []
        #: Called with the stream when something kept in its MetaStore record changes (the sequence
        #: shift, after a purge past the end); the registry persists it.
        self.on_meta_change: Callable[["Stream"], None] | None = None
        self._rebuild()

    @classmethod
    def open(cls, config: StreamConfig, log: Log, clock: Clock, *, created_ms: int = 0,
             shift: int = 0) -> "Stream":
        """Open a stream with an already normalized ``config`` over ``log``, rebuilding the indexes
        from the log (blocks: reads the whole log once)."""
        return cls(config, log, clock, created_ms=created_ms, shift=shift)

    # -- rebuild -----------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        log = self.log
        start, end = log.start_offset, log.end_offset
        n = end - start
        sids = self._sids
        sids.extend(array("I", [DELETED]) * n)
        self._ts.extend(array("q", [0]) * n)
        self._sizes.extend(array("I", [0]) * n)
        if n == 0:
            self._first = self._last + 1
            return
        acks = self.acks
        window = self.config.duplicate_window_ms
        now = self.clock.now_ms()
        base = self._base
        shift1 = 1 + self._shift
        last_rec: Record | None = None
        dedup_candidates: list[tuple[int, str, int]] = []
        for h, view in log.batches(start):
            for off, rec in decode_records(view, validate=False):
                if off < start:
                    continue
                seq = off + shift1
                i = seq - base
                self._ts[i] = rec.timestamp_ms
                last_rec = rec
                pairs = rec.headers
                if window and pairs and now - rec.timestamp_ms < window:
                    mid = header_value(pairs, HDR_MSG_ID)
                    if mid:
                        dedup_candidates.append((rec.timestamp_ms, mid.decode("utf-8", "replace"), seq))
                if acks.is_acked(off):
                    continue
                subject = rec.key.decode("utf-8", "replace") if rec.key else ""
                size = self._msg_size(subject, header_block_len(pairs), len(rec.value or b""))
                sid = self._sid(subject)
                sids[i] = sid
                self._sizes[i] = size
                self._msgs += 1
                self._bytes += size
                st = self._subjects[sid]
                if st.count == 0:
                    self._live_subjects += 1
                    st.first = seq
                st.count += 1
                st.last = seq
        if last_rec is not None:
            self._last_ts = last_rec.timestamp_ms
            mid = header_value(last_rec.headers, HDR_MSG_ID)
            self._last_msg_id = mid.decode("utf-8", "replace") if mid else ""
        for ts, mid, seq in sorted(dedup_candidates):
            self._dedup[mid] = (seq, ts)
            self._dedup_order.append((ts, mid))
        self._first = base
        self._advance_first()

    # -- helpers -----------------------------------------------------------------------------------

    def _msg_size(self, subject: str, hlen: int, mlen: int) -> int:
        # nats-server accounting: filestore.go fileStoreMsgSizeRaw / memstore.go memStoreMsgSizeRaw
        slen = len(subject)
        if self._file:
            return 22 + slen + mlen + 8 + (4 + hlen if hlen else 0)
        return slen + hlen + mlen + 16

    def _sid(self, subject: str) -> int:
        sid = self._sid_of.get(subject)
        if sid is None:
            sid = self._sid_of[subject] = len(self._subjects)
            self._subjects.append(_Subject(subject))
        return sid

    def seq_to_offset(self, seq: int) -> int:
        return seq - 1 - self._shift

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def first_seq(self) -> int:
        return self._first

    @property
    def last_seq(self) -> int:
        return self._last

    @property
    def messages(self) -> int:
        return self._msgs

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def shift(self) -> int:
        return self._shift

    def subject_of_sid(self, sid: int) -> str:
        return self._subjects[sid].name

    @property
    def subject_count_total(self) -> int:
        """How many subject ids exist (ids are dense, 0..n-1; consumers extend match tables by it)."""
        return len(self._subjects)

    def sid_at(self, seq: int) -> int:
        """The subject id of ``seq``, or DELETED if it is not a live message."""
        i = seq - self._base
        if seq < self._first or i >= len(self._sids):
            return DELETED
        return self._sids[i]

    def contains(self, seq: int) -> bool:
        return self.sid_at(seq) != DELETED

    def timestamp_of(self, seq: int) -> int:
        i = seq - self._base
        return self._ts[i] if 0 <= i < len(self._ts) else 0

    def _advance_first(self) -> None:
        """Move ``_first`` over removed entries to the next live message (or last+1)."""
        sids = self._sids
        i = self._first - self._base
        n = len(sids)
        old = self._first
        while i < n and sids[i] == DELETED:
            i += 1
        self._first = self._base + i
        self._first_ts = self._ts[i] if i < n else 0
        if self._first != old:
            self._head_dirty = True

    # -- publish -----------------------------------------------------------------------------------

    def append(self, subject: str, payload: bytes | memoryview = b"", headers: Any = None, *,
               msg_id: str | None = None, expected_stream: str | None = None,
               expected_last_seq: int | None = None, expected_last_subject_seq: int | None = None,
               expected_last_subject_seq_subject: str | None = None,
               expected_last_msg_id: str | None = None, rollup: str | None = None) -> PubAck:
        """Store one message (one batch). Options left None are read from the headers. Raises a
        JetStreamError subclass when a rule refuses it (module docstring)."""
        result = self.append_many([Publish(subject, payload, headers, msg_id, expected_stream,
                                           expected_last_seq, expected_last_subject_seq,
                                           expected_last_subject_seq_subject, expected_last_msg_id,
                                           rollup)])[0]
        if isinstance(result, JetStreamError):
            raise result
        return result

    def append_many(self, publishes: Sequence[Publish]) -> list[PubAck | JetStreamError]:
        """Store a loop turn's publishes as one batch, in order, each checked against the state left
        by the ones before it. Returns per publish a PubAck or the JetStreamError that refused it (not
        raised: one bad message must not fail the others). Raises StreamFailed if the log fails. Hot
        path: run bench/streams.py before changing.

        Consumers hear about the stored messages once per call, after the write (``_on_stored_range``);
        removals of messages staged in the same call (limits, roll-ups) are not reported to them
        separately, and a purge during the call makes them recount instead."""
        if self.failure is not None:
            raise StreamFailed(f"{self.failure}")
        if self._closed:
            raise StreamFailed("stream closed")
        now = self.clock.now_ms()
        if self._dedup_order:
            self._expire_dedup(now)
        results: list[PubAck | JetStreamError] = []
        records: list[Record] = []
        first_new_seq = self._last + 1
        self._staging = first_new_seq
        self._staged_bytes = 0
        self._purged_while_staging = False
        stage = self._stage
        try:
            for pub in publishes:
                try:
                    results.append(stage(pub, now, records))
                except JetStreamError as e:
                    results.append(e)
            if not records:
                return results
            self._write(records, first_new_seq)
        finally:
            self._staging = 0
        if self._deferred_acks:
            for off in self._deferred_acks:
                self.acks.ack(off)
            self._deferred_acks.clear()
        last = self._last
        consumers = self.consumers
        if consumers:
            if self._purged_while_staging:
                for c in consumers.values():
                    c._on_purge()
            else:
                for c in consumers.values():
                    c._on_stored_range(first_new_seq, last)
        if self.config.retention == "interest":
            for seq in range(first_new_seq, last + 1):
                sid = self.sid_at(seq)
                if sid != DELETED and not any(c.matches_sid(sid) for c in consumers.values()):
                    self._remove(seq)
        for listener in self._listeners:
            listener(first_new_seq, last)
        return results

    def _stage(self, pub: Publish, now: int, records: list[Record]) -> PubAck:
        cfg = self.config
        if cfg.sealed:
            raise StreamSealed()
        subject, payload, headers = pub[0], pub[1], pub[2]
        if type(payload) is not bytes:
            payload = bytes(payload)  # before any state changes: a bad type raises here, not half-way
        msg_id = rollup = None
        if headers is None:
            pairs: Headers = ()
            hlen = canon = 0
        else:
            pairs, hlen, canon = _normalize_headers(headers)
        hd = _EMPTY_HD
        if pairs:
            for k, v in pairs:
                if k[:5] == "Nats-" and k not in hd:
                    if hd is _EMPTY_HD:
                        hd = {}
                    hd[k] = v
        if hd or pub[3:] != _NO_OPTIONS:
            msg_id, rollup = self._check_expectations(pub, hd)
            if msg_id:
                hit = self._dedup.get(msg_id)
                if hit is not None:
                    return PubAck(cfg.name, hit[0], True, hit[0] - 1 - self._shift)
            self._check_last_msg_id(pub, hd)
            if rollup:
                if not cfg.allow_rollup_hdrs or cfg.deny_purge:
                    raise RollupFailed("rollup not permitted")
                if rollup not in (ROLLUP_SUBJECT, ROLLUP_ALL):
                    raise RollupFailed(f'rollup value invalid: "{rollup}"')
        # Sizes.
        mlen = len(payload)
        if cfg.max_msg_size >= 0 and hlen + mlen > cfg.max_msg_size:
            raise MessageTooLarge()
        if hlen > MAX_HEADER_BYTES:
            raise HeaderTooLarge()
        key = subject.encode()
        approx = len(key) + mlen + hlen + 64
        if approx + HEADER_SIZE > self.log.config.max_batch_bytes:
            raise StoreFailed("message too large")
        size = (22 + len(subject) + mlen + 8 + (4 + canon if canon else 0)) if self._file else (
            len(subject) + canon + mlen + 16)
        # Discard new (memstore.go storeRawMsg).
        sid = self._sid_of.get(subject)
        per = cfg.max_msgs_per_subject
        if cfg.discard == "new":
            self._check_discard_new(sid, size, rollup)
        # Store: assign the sequence and index it.
        seq = self._last = self._last + 1
        if sid is None:
            sid = self._sid(subject)
        st = self._subjects[sid]
        self._sids.append(sid)
        self._ts.append(now)
        self._sizes.append(size)
        if self._msgs == 0:
            self._first = seq
            self._first_ts = now
        self._msgs += 1
        self._bytes += size
        self._last_ts = now
        if st.count == 0:
            self._live_subjects += 1
            st.first = seq
            st.first_stale = False
        st.count += 1
        st.last = seq
        st.last_stale = False
        records.append(_new_tuple(Record, (key, payload, pairs, now)))
        self._staged_bytes += approx
        self._last_msg_id = msg_id or ""
        if msg_id and cfg.duplicate_window > 0:
            self._dedup[msg_id] = (seq, now)
            self._dedup_order.append((now, msg_id))
        # Limits (memstore.go storeRawMsg, after the store).
        if per > 0 and st.count > per:
            while st.count > per:
                oldest = self._first_seq_of_sid(sid)
                if not oldest or not self._remove(oldest):
                    break
        if cfg.discard == "old":
            if cfg.max_msgs > 0:
                while self._msgs > cfg.max_msgs:
                    self._remove(self._first)
            if cfg.max_bytes > 0:
                while self._bytes > cfg.max_bytes and self._msgs:
                    self._remove(self._first)
        if rollup == ROLLUP_SUBJECT:
            self._purge_filtered(subject, keep=1, below=0)
        elif rollup == ROLLUP_ALL:
            self._compact(seq)
        return _new_tuple(PubAck, (cfg.name, seq, False, seq - 1 - self._shift))

    def _check_expectations(self, pub: Publish, hd: dict[str, bytes]) -> tuple[str | None, str | None]:
        """Expected stream / last subject sequence / last sequence, in nats-server's order; returns
        (msg id, roll-up) for the caller's next checks. ``hd``: first value of each Nats-* header."""
        cfg = self.config
        # Expected stream.
        exp_stream = pub.expected_stream
        if exp_stream is None and hd:
            v = hd.get(HDR_EXPECTED_STREAM)
            exp_stream = v.decode() if v else None
        if exp_stream and exp_stream != cfg.name:
            raise StreamNotMatch()
        # Expected last sequence per subject (with optional subject override).
        exp_subj_seq = pub.expected_last_subject_seq
        exp_subj = pub.expected_last_subject_seq_subject
        if hd:
            if exp_subj_seq is None:
                exp_subj_seq = _parse_uint(hd.get(HDR_EXPECTED_LAST_SUBJ_SEQ))
            if exp_subj is None:
                v = hd.get(HDR_EXPECTED_LAST_SUBJ_SEQ_SUBJ)
                exp_subj = v.decode() if v else None
        if exp_subj_seq is not None:
            last = self._last_seq_of(exp_subj or pub.subject)
            if last != exp_subj_seq:
                raise WrongLastSequence(last)
        elif exp_subj:
            raise ExpectedLastSubjectSequenceMissing()
        # Expected last sequence.
        exp_seq = pub.expected_last_seq
        if exp_seq is None and hd:
            exp_seq = _parse_uint(hd.get(HDR_EXPECTED_LAST_SEQ))
        if exp_seq is not None and exp_seq != self._last:
            raise WrongLastSequence(self._last)
        msg_id = pub.msg_id
        if msg_id is None and hd:
            v = hd.get(HDR_MSG_ID)
            msg_id = v.decode("utf-8", "replace") if v else None
        rollup = pub.rollup
        if rollup is None and hd:
            v = hd.get(HDR_ROLLUP)
            rollup = v.decode("utf-8", "replace").lower() if v else None
        return msg_id, rollup

    def _check_last_msg_id(self, pub: Publish, hd: dict[str, bytes]) -> None:
        exp_mid = pub.expected_last_msg_id
        if exp_mid is None and hd:
            v = hd.get(HDR_EXPECTED_LAST_MSG_ID)
            exp_mid = v.decode("utf-8", "replace") if v else None
        if exp_mid and exp_mid != self._last_msg_id:
            raise WrongLastMsgId(self._last_msg_id)

    def _check_discard_new(self, sid: int | None, size: int, rollup: str | None) -> None:
        cfg = self.config
        st = self._subjects[sid] if sid is not None else None
        at_subject_limit = (st is not None and cfg.max_msgs_per_subject > 0
                            and st.count >= cfg.max_msgs_per_subject)
        if at_subject_limit and cfg.discard_new_per_subject and not rollup:
            raise StoreFailed("maximum messages per subject exceeded")
        if cfg.max_msgs > 0 and self._msgs >= cfg.max_msgs and not at_subject_limit:
            raise StoreFailed("maximum messages exceeded")
        if cfg.max_bytes > 0 and self._bytes + size > cfg.max_bytes:
            if not at_subject_limit:
                raise StoreFailed("maximum bytes exceeded")
            oldest = self._first_seq_of_sid(sid)  # type: ignore[arg-type]
            if oldest == 0 or self._sizes[oldest - self._base] < size:
                raise StoreFailed("maximum bytes exceeded")

    def _write(self, records: list[Record], first_seq: int) -> None:
        """Append the staged records as one batch (split only past max_batch_bytes)."""
        limit = self.log.config.max_batch_bytes - HEADER_SIZE - 1024
        if self._staged_bytes <= limit:
            chunks = [records]
        else:
            chunks = []
            cur: list[Record] = []
            size = 0
            for r in records:
                n = len(r.key or b"") + len(r.value or b"") + 64 + header_block_len(r.headers)
                if cur and size + n > limit:
                    chunks.append(cur)
                    cur, size = [], 0
                cur.append(r)
                size += n
            chunks.append(cur)
        expected = self.seq_to_offset(first_seq)
        for chunk in chunks:
            try:
                result = self.log.append(build_batch(chunk, now_ms=chunk[0].timestamp_ms))
            except Exception as e:  # the log is failed (LogFailedError) or closed: the indexes ran ahead
                self.failure = e
                raise StreamFailed(f"{e}") from e
            if result.base_offset != expected:
                self.failure = RuntimeError(f"log offset {result.base_offset} != expected {expected}")
                raise StreamFailed(str(self.failure))
            self._cache_put(result.base_offset, result.last_offset + 1, chunk)
            expected = result.last_offset + 1

    def _expire_dedup(self, now: int) -> None:
        window = self.config.duplicate_window_ms
        order = self._dedup_order
        dedup = self._dedup
        while order and now - order[0][0] >= window:
            ts, mid = order.popleft()
            hit = dedup.get(mid)
            if hit is not None and hit[1] == ts:
                del dedup[mid]

    # -- subject index -----------------------------------------------------------------------------

    def _first_seq_of_sid(self, sid: int) -> int:
        st = self._subjects[sid]
        if st.count == 0:
            return 0
        if st.first_stale or st.first < self._first:
            start = max(st.first, self._first) - self._base
            try:
                i = self._sids.index(sid, start)
            except ValueError:
                return 0
            st.first = self._base + i
            st.first_stale = False
        return st.first

    def _last_seq_of_sid(self, sid: int) -> int:
        st = self._subjects[sid]
        if st.count == 0:
            return 0
        if st.last_stale:
            sids = self._sids
            lo = self._first - self._base
            i = st.last - self._base
            while i >= lo and sids[i] != sid:
                i -= 1
            st.last = self._base + i if i >= lo else 0
            st.last_stale = False
        return st.last

    def _last_seq_of(self, subject: str) -> int:
        """Last live sequence of a literal subject, 0 if none."""
        sid = self._sid_of.get(subject)
        return 0 if sid is None else self._last_seq_of_sid(sid)

    # -- removal -----------------------------------------------------------------------------------

    def _remove(self, seq: int, *, notify: bool = True) -> bool:
        """Remove one live message; False if it is not there. Every removal path goes through here
        (or through _compact for whole prefixes)."""
        i = seq - self._base
        if seq < self._first or i >= len(self._sids):
            return False
        sids = self._sids
        sid = sids[i]
        if sid == DELETED:
            return False
        sids[i] = DELETED
        self._msgs -= 1
        self._bytes -= self._sizes[i]
        self._sizes[i] = 0
        st = self._subjects[sid]
        st.count -= 1
        if st.count == 0:
            self._live_subjects -= 1
            st.first_stale = st.last_stale = False
        else:
            if seq == st.first:
                st.first = seq + 1
                st.first_stale = True
            if seq == st.last:
                st.last_stale = True
        if seq == self._first:
            self._advance_first()
        else:
            off = self.seq_to_offset(seq)
            if off < self.log.end_offset:
                self.acks.ack(off)
            else:
                self._deferred_acks.append(off)
            self._collect_due = True
        if notify and not (self._staging and seq >= self._staging):
            for c in self.consumers.values():
                c._on_removed(seq, sid)
        return True

    def _compact(self, below: int) -> int:
        """Remove every message with seq < ``below`` in bulk (memStore.compact); if ``below`` is past
        the end the stream becomes empty and the next message gets ``below`` (the shift moves).
        Returns how many were removed."""
        if below <= self._first:
            return 0
        if below > self._last + 1:
            purged = self._msgs
            self._reset_empty()
            # Next message gets seq `below`: shift so that log end maps to it.
            self._shift = below - 1 - self.log.end_offset
            self._last = below - 1
            self._base = self._first = below
            self._head_dirty = True
            self._notify_purge()
            if self.on_meta_change is not None:
                self.on_meta_change(self)
            return purged
        lo = self._first - self._base
        hi = below - self._base
        part = self._sids[lo:hi]
        counts = Counter(part)
        removed = len(part) - counts.pop(DELETED, 0)
        self._msgs -= removed
        self._bytes -= sum(self._sizes[lo:hi])
        for sid, n in counts.items():
            st = self._subjects[sid]
            st.count -= n
            if st.count == 0:
                self._live_subjects -= 1
                st.first_stale = st.last_stale = False
            else:
                st.first_stale = True
        self._first = below
        self._advance_first()
        self._head_dirty = True
        self._notify_purge()
        return removed

    def _reset_empty(self) -> None:
        self._msgs = 0
        self._bytes = 0
        for st in self._subjects:
            st.count = 0
            st.first_stale = st.last_stale = False
        self._live_subjects = 0
        self._sids = array("I")
        self._ts = array("q")
        self._sizes = array("I")
        self._base = self._first = self._last + 1
        self._first_ts = 0
        self._head_dirty = True

    def _notify_purge(self) -> None:
        if self._staging:
            self._purged_while_staging = True  # consumers recount once the call is written
            return
        for c in self.consumers.values():
            c._on_purge()

    # -- reads -------------------------------------------------------------------------------------

    def _cache_clear(self) -> None:
        self._cache.clear()
        self._hit = (0, 0, [])

    def _cache_put(self, base: int, end: int, records: list[Record]) -> None:
        cache = self._cache
        if len(cache) >= READ_CACHE_BATCHES:
            del cache[next(iter(cache))]
        cache[base] = (end, records)

    def _record(self, offset: int) -> Record | None:
        """The record at ``offset`` through the decoded-batch cache (last hit checked first)."""
        hit = self._hit
        if hit[0] <= offset < hit[1]:
            return hit[2][offset - hit[0]]
        for base, (end, records) in self._cache.items():
            if base <= offset < end:
                self._hit = (base, end, records)
                return records[offset - base]
        log = self.log
        if offset < log.start_offset or offset >= log.end_offset:
            return None
        data = log.read_bytes(offset, 1)
        if not data:
            return None
        decoded = decode_records(data, validate=False)
        if not decoded:
            return None
        base = decoded[0][0]
        records = [r for _, r in decoded]
        self._cache_put(base, base + len(records), records)
        if base <= offset < base + len(records):
            self._hit = (base, base + len(records), records)
            return records[offset - base]
        return None

    def _live_record(self, seq: int) -> Record | None:
        """The stored record of live message ``seq``, or None."""
        if self.sid_at(seq) == DELETED:
            return None
        return self._record(seq - 1 - self._shift)

    def _load(self, seq: int) -> StoredMessage | None:
        """The live message ``seq`` or None. Hot path for consumers."""
        if self.sid_at(seq) == DELETED:
            return None
        rec = self._record(self.seq_to_offset(seq))
        if rec is None:
            return None
        return StoredMessage(seq, rec.key.decode("utf-8", "replace") if rec.key else "",
                             rec.value if rec.value is not None else b"", rec.headers, rec.timestamp_ms)

    def get(self, seq: int) -> StoredMessage:
        """STREAM.MSG.GET by sequence. Raises NoMessageFound (10037)."""
        msg = self._load(seq)
        if msg is None:
            raise NoMessageFound()
        return msg

    def get_last_for_subject(self, subject: str) -> StoredMessage:
        """The newest message on ``subject`` (a literal, or a wildcard filter; ``>``/"" = the last
        message), as ``last_by_subj``. Raises NoMessageFound."""
        if subject in ("", ">"):
            return self.get(self._last)
        if is_literal(subject):
            seq = self._last_seq_of(subject)
        else:
            seq = 0
            for sid, st in enumerate(self._subjects):
                if st.count and _pattern_match(subject, st.name):
                    seq = max(seq, self._last_seq_of_sid(sid))
        if not seq:
            raise NoMessageFound()
        return self.get(seq)

    def get_next(self, seq: int, subject: str | None = None) -> StoredMessage:
        """The first message with sequence >= ``seq`` (on ``subject`` if given: ``next_by_subj``).
        Raises NoMessageFound."""
        found = self.next_seq_matching(max(seq, self._first), _Filter(self, subject))
        if not found:
            raise NoMessageFound()
        return self.get(found)

    def seq_for_time(self, ts_ms: int) -> int:
        """The first live sequence whose timestamp is >= ``ts_ms``, or last_seq + 1
        (nats-server ``GetSeqFromTime``, used by deliver by_start_time and MSG.GET start_time)."""
        lo = self._first - self._base
        i = bisect.bisect_left(self._ts, ts_ms, lo, len(self._ts))
        sids = self._sids
        while i < len(sids) and sids[i] == DELETED:
            i += 1
        return self._base + i

    def next_seq_matching(self, seq: int, flt: "_Filter") -> int:
        """First live sequence >= ``seq`` whose subject passes ``flt``; 0 if none. Scans the
        subject-id array at C speed for an unfiltered or literal filter."""
        sids = self._sids
        base = self._base
        i = max(seq, self._first) - base
        n = len(sids)
        if i >= n:
            return 0
        if flt.all:
            while i < n and sids[i] == DELETED:
                i += 1
            return base + i if i < n else 0
        wanted = flt.sids()
        if not wanted:
            return 0
        if len(wanted) <= 4:
            best = n
            for sid in wanted:
                try:
                    j = sids.index(sid, i, best)
                except ValueError:
                    continue
                best = j
            return base + best if best < n else 0
        table = flt.table
        while i < n:
            s = sids[i]
            if s != DELETED and s < len(table) and table[s]:
                return base + i
            i += 1
        return 0

    def count_matching(self, seq: int, flt: "_Filter", end: int | None = None) -> int:
        """How many live messages with ``seq`` <= sequence (<= ``end``) pass ``flt`` (a consumer's
        num_pending). C-speed counts over the subject-id array unless the filter matches many
        subjects."""
        lo = max(seq, self._first) - self._base
        sids = self._sids
        hi = len(sids) if end is None else min(len(sids), end - self._base + 1)
        if lo >= hi:
            return 0
        if flt.all:
            part = sids[lo:hi] if lo or hi < len(sids) else sids
            return len(part) - part.count(DELETED)
        wanted = flt.sids()
        if not wanted:
            return 0
        part = sids[lo:hi]
        if len(wanted) <= 8:
            return sum(part.count(s) for s in wanted)
        table = flt.table
        nt = len(table)
        return sum(1 for s in part if s < nt and table[s])

    def subjects_state(self, filter_subject: str = ">") -> dict[str, int]:
        """Live subjects matching ``filter_subject`` with their message counts (STREAM.INFO
        ``subjects_filter``)."""
        out = {}
        for st in self._subjects:
            if st.count and (filter_subject in ("", ">") or _pattern_match(filter_subject, st.name)):
                out[st.name] = st.count
        return out

    def last_seqs_per_subject(self, flt: "_Filter") -> list[int]:
        """Ascending last sequence of every live subject passing ``flt`` (deliver last_per_subject,
        nats-server ``MultiLastSeqs``)."""
        out = []
        for sid, st in enumerate(self._subjects):
            if st.count and flt.matches_sid(sid):
                last = self._last_seq_of_sid(sid)
                if last:
                    out.append(last)
        out.sort()
        return out

    def last_seq_matching(self, flt: "_Filter") -> int:
        """The newest live sequence passing ``flt`` (deliver last with a filter); 0 if none."""
        if flt.all:
            return self._last if self.contains(self._last) else 0
        best = 0
        for sid in flt.sids():
            best = max(best, self._last_seq_of_sid(sid))
        return best

    def deleted(self) -> list[int]:
        """Interior removed sequences between first and last (STREAM.INFO ``deleted_details``)."""
        if not self._msgs:
            return []
        lo = self._first - self._base
        sids = self._sids
        return [self._base + i for i in range(lo, len(sids)) if sids[i] == DELETED]

    def state(self, *, subjects_filter: str | None = None, deleted_details: bool = False) -> StreamState:
        """nats-server ``StreamState`` (STREAM.INFO ``state``)."""
        msgs = self._msgs
        first = self._first
        last = self._last
        num_deleted = (last - first + 1) - msgs if msgs else 0
        return StreamState(
            messages=msgs, bytes=self._bytes, first_seq=first, first_ts=self._first_ts if msgs else 0,
            last_seq=last, last_ts=self._last_ts, num_deleted=num_deleted,
            num_subjects=self._live_subjects, consumer_count=len(self.consumers),
            subjects=self.subjects_state(subjects_filter) if subjects_filter is not None else None,
            deleted=self.deleted() if deleted_details else None,
        )

    # -- operator removals -------------------------------------------------------------------------

    def delete_msg(self, seq: int) -> None:
        """STREAM.MSG.DELETE. Raises StreamSealed (10109), MsgDeleteFailed (10057) when deny_delete or
        ``seq`` is outside first..last, SequenceNotFound (10043) for an already removed one inside."""
        if self.config.sealed:
            raise StreamSealed()
        if self.config.deny_delete:
            raise MsgDeleteFailed("message delete not permitted")
        if not self._remove(seq):
            # nats-server's file store: past the end is ErrStoreEOF, below the first ErrStoreMsgNotFound
            # (both 10057), an interior gap "sequence N not found" (10043).
            if seq > self._last:
                raise MsgDeleteFailed("stream store EOF")
            if seq < self._first:
                raise MsgDeleteFailed("no message found")
            raise SequenceNotFound(seq)
        self.flush()

    def purge(self, filter: str | None = None, keep: int | None = None, seq: int | None = None) -> int:
        """STREAM.PURGE with the request's ``filter``, ``keep`` and ``seq`` (purge below seq).
        Returns how many messages went. Raises StreamSealed, PurgeFailed (10110) when deny_purge,
        StreamConfigInvalid for keep and seq together (nats-server's request check)."""
        if self.config.sealed:
            raise StreamSealed()
        if self.config.deny_purge:
            raise PurgeFailed("stream purge not permitted")
        keep = keep or 0
        seq = seq or 0
        if keep and seq:
            raise BadRequest()  # jsStreamPurgeRequest: "sequence and keep can not both be set" -> 10003
        if filter is not None and filter != "" and not valid_nats_pattern(filter):
            raise StreamConfigInvalid("invalid subject")
        n = self._purge(filter or "", keep, seq)
        self.flush()
        return n

    def _purge(self, subject: str, keep: int, seq: int) -> int:
        # memstore.go PurgeEx
        if seq == 1:
            return 0
        if subject in ("", ">"):
            if keep == 0 and seq == 0:
                return self._compact(self._last + 1)
            if seq > 1:
                return self._compact(seq)
        return self._purge_filtered(subject or ">", keep=keep, below=seq)

    def _purge_filtered(self, subject: str, *, keep: int, below: int) -> int:
        flt = _Filter(self, subject)
        total = self.count_matching(self._first, flt)
        if total == 0:
            return 0
        maxp = 0
        if keep:
            if keep >= total:
                return 0
            maxp = total - keep
        stop = below - 1 if below >= 1 else self._last
        purged = 0
        s = self.next_seq_matching(self._first, flt)
        while s and s <= stop:
            if self._remove(s, notify=False):
                purged += 1
                if maxp and purged >= maxp:
                    break
            s = self.next_seq_matching(s + 1, flt)
        if purged:
            self._notify_purge()
        return purged

    def expire(self, now_ms: int | None = None) -> int:
        """Remove head messages older than max_age (nats-server ``expireMsgs``: ``ts <= now - max_age``)
        and expired de-duplication ids. Returns how many messages went."""
        now = self.clock.now_ms() if now_ms is None else now_ms
        if self._dedup_order:
            self._expire_dedup(now)
        max_age = self.config.max_age_ms
        if not max_age:
            return 0
        cutoff = now - max_age
        n = 0
        while self._msgs and self._ts[self._first - self._base] <= cutoff:
            self._remove(self._first)
            n += 1
        return n

    def next_expiry_ms(self) -> int | None:
        """When ``expire`` next has work: the head message's expiry time, or None."""
        max_age = self.config.max_age_ms
        if not max_age or not self._msgs:
            return None
        return self._ts[self._first - self._base] + max_age

    # -- interest / workqueue retention --------------------------------------------------------------

    def ack_msg(self, seq: int, consumer: Any = None) -> bool:
        """A consumer settled ``seq``; on interest/workqueue retention remove it once no consumer
        needs an ack for it (nats-server ``stream.ackMsg``). Returns True if it was removed."""
        if self.config.retention == "limits":
            return False
        sid = self.sid_at(seq)
        if sid == DELETED:
            return False
        for c in self.consumers.values():
            if c.needs_ack(seq, sid):
                return False
        return self._remove(seq)

    def check_interest(self) -> int:
        """Remove every message no consumer needs any more: after an interest stream loses a consumer
        (nats-server ``cleanupNoInterestMessages``) and after a restart (``checkInterestState``), when
        consumer state and removals may have been persisted at different moments. Interest: a message
        goes when no consumer needs an ack for it (an interest stream with no consumer is emptied).
        Workqueue: a message goes when the consumer it belongs to has settled it; messages no consumer
        matches wait for one (only sequences below the furthest consumer position are scanned).
        O(messages) for interest streams: run at restart, consumer delete and retention change only.
        Returns how many went."""
        retention = self.config.retention
        if retention == "limits":
            return 0
        consumers = list(self.consumers.values())
        if not consumers:
            return self._compact(self._last + 1) if retention == "interest" else 0
        # Interest: scan everything (a message no consumer matches goes too). Workqueue: a message at or
        # past every consumer's position is still wanted by the consumer it matches, or waits for one.
        stop = self._last + 1 if retention == "interest" else max(c.next_seq for c in consumers)
        flt = _Filter(self, None)
        n = 0
        s = self.next_seq_matching(self._first, flt)
        while s and s < stop:
            sid = self.sid_at(s)
            if not any(c.needs_ack(s, sid) for c in consumers):
                if retention == "interest" or any(c.matches_sid(sid) for c in consumers):
                    self._remove(s)
                    n += 1
            s = self.next_seq_matching(s + 1, flt)
        return n

    # -- configuration -------------------------------------------------------------------------------

    def update_config(self, new: StreamConfig) -> None:
        """Apply an already checked (``StreamConfig.check_update``) configuration and enforce its
        limits at once, as nats-server's ``stream.update`` does. Consumers follow a retention change
        (limits <-> interest), and an interest stream drops what no consumer needs."""
        retention_changed = new.retention != self.config.retention
        self.config = new
        if retention_changed:
            for c in self.consumers.values():
                c._retention = new.retention
            self.check_interest()
        self._file = new.storage == "file"
        if new.max_msgs_per_subject > 0:
            for sid, st in enumerate(self._subjects):
                while st.count > new.max_msgs_per_subject:
                    oldest = self._first_seq_of_sid(sid)
                    if not oldest or not self._remove(oldest):
                        break
        if new.max_msgs > 0:
            while self._msgs > new.max_msgs:
                self._remove(self._first)
        if new.max_bytes > 0:
            while self._bytes > new.max_bytes and self._msgs:
                self._remove(self._first)
        if new.duplicate_window == 0:
            self._dedup.clear()
            self._dedup_order.clear()
        self.expire()
        self.flush()

    def add_listener(self, fn: Callable[[int, int], None]) -> None:
        """``fn(first_seq, last_seq)`` after each append call that stored messages (the session wakes
        push consumers and waiting pulls with it)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[int, int], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # -- persistence -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Persist removals: dirty ack bitmap ranges are pwritten and the log start offset follows
        first_seq (page cache; call once per loop turn or so, and before a PubAck-like reply to a
        delete/purge). Also trims the in-memory arrays and collects fully removed segments."""
        if self._closed or self.failure is not None:
            return
        collect = self._collect_due
        if self._head_dirty:
            self._head_dirty = False
            collect = True
            target = min(self.seq_to_offset(self._first), self.log.end_offset)
            if target > self.log.start_offset:
                before = len(self.log.segments())
                self.log.delete_records(target)
                if len(self.log.segments()) != before:
                    self._cache_clear()
            self._trim()
        self.acks.flush()
        if collect:
            self._collect_due = False
            if len(self.log.segments()) > 1 and self.acks.collect():
                self._cache_clear()

    def _trim(self) -> None:
        drop = self._first - self._base
        if drop > TRIM_SLACK and drop * 2 > len(self._sids):
            del self._sids[:drop]
            del self._ts[:drop]
            del self._sizes[:drop]
            self._base += drop

    def close(self) -> None:
        """Flush removals and close the log. Blocks (fsync)."""
        if self._closed:
            return
        try:
            self.flush()
            self.acks.close()
        finally:
            self._closed = True
            self.log.close()

    def delete(self) -> None:
        """Close and remove the stream's log directory (STREAM.DELETE). Blocks."""
        if not self._closed:
            self._closed = True
            try:
                self.acks.close()
            except OSError:
                pass
        self.log.delete()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (f"Stream({self.name!r}, msgs={self._msgs}, first={self._first}, last={self._last}, "
                f"consumers={len(self.consumers)})")


# -- filters ---------------------------------------------------------------------------------------------


def _pattern_match(pattern: str, subject: str) -> bool:
    """Does the literal ``subject`` match the NATS ``pattern``?"""
    if pattern == subject or pattern == ">":
        return True
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s):
            return False
        if tok != "*" and tok != s[i]:
            return False
    return len(p) == len(s)


class _Filter:
    """A set of NATS subject filters evaluated per subject id of one stream, with a lazily extended
    table (``table[sid]`` = 1 if it matches): one match per distinct subject, not per message.
    ``all`` is True for no filter (or ``>``)."""

    __slots__ = ("stream", "filters", "all", "table", "_trie", "_literal", "_matching", "_evaluated")

    def __init__(self, stream: Stream, filters: str | Iterable[str] | None) -> None:
        if isinstance(filters, str):
            filters = (filters,) if filters else ()
        self.stream = stream
        self.filters = tuple(filters or ())
        self.all = not self.filters or ">" in self.filters
        self.table = bytearray()
        self._literal = frozenset(f for f in self.filters if is_literal(f))
        wild = [f for f in self.filters if not is_literal(f)]
        self._trie: SubjectTrie | None = None
        if wild:
            self._trie = SubjectTrie("nats", cache_size=0)
            for f in wild:
                self._trie.insert(f, True)
        self._matching: list[int] = []
        self._evaluated = 0

    def matches_subject(self, subject: str) -> bool:
        if self.all or subject in self._literal:
            return True
        return self._trie is not None and self._trie.has_interest(subject)

    def _extend(self) -> None:
        n = self.stream.subject_count_total
        if self._evaluated >= n:
            return
        if self.all:
            self._evaluated = n
            return
        # Literal-only filters: the subject table lookup is enough.
        table = self.table
        if len(table) < n:
            table.extend(bytes(n - len(table)))
        if self._trie is None:
            sid_of = self.stream._sid_of
            for f in self._literal:
                sid = sid_of.get(f)
                if sid is not None and sid >= self._evaluated and not table[sid]:
                    table[sid] = 1
                    self._matching.append(sid)
        else:
            subjects = self.stream._subjects
            for sid in range(self._evaluated, n):
                if self.matches_subject(subjects[sid].name):
                    table[sid] = 1
                    self._matching.append(sid)
        self._evaluated = n

    def matches_sid(self, sid: int) -> bool:
        if self.all:
            return sid != DELETED
        if sid >= self._evaluated:
            if sid == DELETED:
                return False
            self._extend()
        return bool(self.table[sid])

    def sids(self) -> list[int]:
        self._extend()
        return self._matching


def make_filter(stream: Stream, filters: str | Iterable[str] | None) -> _Filter:
    """A subject filter bound to ``stream`` (consumers use one each)."""
    return _Filter(stream, filters)


# -- a default log opener (tests, embedded use) ----------------------------------------------------------


class DirectoryLogs:
    """Opens stream logs under ``root`` (``open(name, storage)`` / ``delete(name)``), the shape the
    registry injects. Memory storage gets ``fsync="never"``. The broker passes its own opener so every
    log shares its syncer and settings."""

    def __init__(self, root: str | os.PathLike, clock: Clock, *, file_config: LogConfig | None = None,
                 memory_config: LogConfig | None = None, syncer: Any = None) -> None:
        self.root = os.fspath(root)
        self.clock = clock
        self.file_config = file_config or LogConfig()
        self.memory_config = memory_config or replace(self.file_config, fsync="never")
        self.syncer = syncer

    def open(self, name: str, storage: str) -> Log:
        cfg = self.memory_config if storage == "memory" else self.file_config
        kw: dict[str, Any] = {"clock": self.clock.now_ms}
        if self.syncer is not None:
            kw["syncer"] = self.syncer
        return Log.open(os.path.join(self.root, name), cfg, **kw)

    def delete(self, name: str) -> None:
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def exists(self, name: str) -> bool:
        return os.path.isdir(os.path.join(self.root, name))

