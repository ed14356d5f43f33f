"""Partitioned topics for Kafka: a name, a topic id and one ``Log`` per partition.

Strategy: lean on purpose. A topic maps a partition index to its log and answers the offset questions
Kafka asks (ListOffsets earliest/latest/by timestamp); produce and fetch go straight to the partition's
``Log`` (append of the producer's batch verbatim, ``read`` for sendfile). Consumer-group positions are
not here: they live in the metadata store (``omnibus.storage.meta``).

Rules
    * On disk a partition is the directory ``<topic>-<partition>`` under the data directory, as Kafka
      lays it out (``partition_dir``).
    * Topic names follow Kafka's rules (``valid_topic_name``): 1..249 characters from
      ``[a-zA-Z0-9._-]``, not ``.`` or ``..``.
    * With one replica the high watermark is the log end offset (Kafka advances the HW when the ISR
      has the data, not on fsync), so ``latest_offset`` is ``Log.end_offset``.
    * Errors are core exceptions (``UnknownPartition``); the Kafka session maps them to error codes.

Concurrency: event-loop thread only; ``create``, ``add_partitions`` and ``close`` block (they open or
fsync logs): run them in an executor from the loop.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omnibus.storage.log import Log, LogConfig
from omnibus.storage.sync import Syncer

__all__ = [
    "MAX_TOPIC_NAME_LENGTH",
    "TOPIC_CONFIGS",
    "APPLIED_CONFIGS",
    "ConfigDef",
    "InvalidTopicConfig",
    "validate_topic_config",
    "validate_topic_configs",
    "log_overrides",
    "Topic",
    "TopicConfig",
    "UnknownPartition",
    "partition_dir",
    "valid_topic_name",
]

# Kafka org.apache.kafka.common.internals.Topic: MAX_NAME_LENGTH = 249 (255 minus room for the
# "-<partition>" suffix and ".deleted" style suffixes in a file name).
MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class UnknownPartition(LookupError):
    """The topic has no such partition (Kafka UNKNOWN_TOPIC_OR_PARTITION)."""

    def __init__(self, topic: str, partition: int) -> None:
        super().__init__(f"topic {topic!r} has no partition {partition}")
        self.topic = topic
        self.partition = partition


def valid_topic_name(name: str) -> bool:
    """Kafka's topic name rule (``Topic.validate``)."""
    if not name or len(name) > MAX_TOPIC_NAME_LENGTH or name in (".", ".."):
        return False
    return all(ch in _LEGAL_CHARS for ch in name)


def partition_dir(data_dir: str | os.PathLike, topic: str, partition: int) -> str:
    return os.path.join(os.fspath(data_dir), f"{topic}-{partition}")


@dataclass(frozen=True)
class TopicConfig:
    """What a topic was created with. ``configs`` are Kafka topic configs as strings
    (``retention.ms`` ...); ``log`` is the LogConfig its partitions are opened with."""

    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)
    log: LogConfig = field(default_factory=LogConfig)


class Topic:
    """A Kafka topic over its partition logs. The topic owns the logs (``close``).
    Event-loop thread only."""

    __slots__ = ("name", "topic_id", "config", "_partitions")

    def __init__(self, name: str, partitions: list[Log], config: TopicConfig | None = None, *,
                 topic_id: uuid.UUID | None = None) -> None:
        if not valid_topic_name(name):
            raise ValueError(f"invalid topic name {name!r}")
        if not partitions:
            raise ValueError("a topic needs at least one partition")
        self.name = name
        self.topic_id = topic_id or uuid.uuid4()  # Kafka topic ids (KIP-516)
        self.config = config or TopicConfig()
        self._partitions: list[Log] = list(partitions)

    @classmethod
    def create(cls, data_dir: str | os.PathLike, name: str, partitions: int,
               config: TopicConfig | None = None, *, syncer: Syncer | None = None,
               clock: Callable[[], int] | None = None, topic_id: uuid.UUID | None = None) -> "Topic":
        """Open (creating if needed) ``partitions`` logs under ``data_dir``. Blocks."""
        if not valid_topic_name(name):
            raise ValueError(f"invalid topic name {name!r}")
        if partitions < 1:
            raise ValueError("a topic needs at least one partition")
        config = config or TopicConfig()
        logs = [cls._open_log(data_dir, name, p, config.log, syncer, clock) for p in range(partitions)]
        return cls(name, logs, config, topic_id=topic_id)

    @staticmethod
    def _open_log(data_dir, name: str, p: int, log_config: LogConfig, syncer: Syncer | None,
                  clock: Callable[[], int] | None) -> Log:
        kw: dict[str, Any] = {"syncer": syncer}
        if clock is not None:
            kw["clock"] = clock
        return Log.open(partition_dir(data_dir, name, p), log_config, **kw)

    def add_partitions(self, data_dir: str | os.PathLike, total: int, *,
                       syncer: Syncer | None = None, clock: Callable[[], int] | None = None) -> None:
        """Kafka CreatePartitions: grow to ``total`` partitions (never shrink). Blocks."""
        if total <= len(self._partitions):
            raise ValueError(f"topic {self.name!r} has {len(self._partitions)} partitions; "
                             f"the new count must be larger, not {total}")
        for p in range(len(self._partitions), total):
            self._partitions.append(self._open_log(data_dir, self.name, p, self.config.log, syncer, clock))

    # -- lookup --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._partitions)

    @property
    def partition_count(self) -> int:
        return len(self._partitions)

    def partition(self, index: int) -> Log:
        """The log of partition ``index``; raises UnknownPartition. Hot path (every produce/fetch)."""
        if 0 <= index < len(self._partitions):
            return self._partitions[index]
        raise UnknownPartition(self.name, index)

    def partitions(self) -> tuple[Log, ...]:
        return tuple(self._partitions)

    # -- offsets (ListOffsets) -----------------------------------------------------------------

    def earliest_offset(self, index: int) -> int:
        """Log start offset (ListOffsets timestamp -2)."""
        return self.partition(index).start_offset

    def latest_offset(self, index: int) -> int:
        """High watermark = log end offset with one replica (ListOffsets timestamp -1)."""
        return self.partition(index).end_offset

    def offsets(self, index: int) -> tuple[int, int]:
        log = self.partition(index)
        return log.start_offset, log.end_offset

    def offset_for_timestamp(self, index: int, timestamp_ms: int) -> int | None:
        """First offset with a timestamp >= ``timestamp_ms``, or None (ListOffsets by time)."""
        return self.partition(index).offset_for_timestamp(timestamp_ms)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close every partition log. Blocks."""
        for log in self._partitions:
            log.close()

    def delete(self) -> None:
        """Close and remove every partition's directory (DeleteTopics). Blocks."""
        for log in self._partitions:
            log.delete()

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, partitions={len(self._partitions)})"


# -- topic configs (Kafka LogConfig / TopicConfig) ------------------------------------------------------
#
# Every topic config Kafka 3.x reports in DescribeConfigs, with its type, its broker-level synonym
# (the ``log.*`` name a topic falls back to), Kafka's default and validator. Only the names in
# ``APPLIED_CONFIGS`` change what the broker does; the others are validated, stored and reported (they
# have no observable effect on a single node with this storage engine), except the ones in
# ``_UNSUPPORTED_VALUES`` whose non-default values would promise behaviour we do not have.

_LONG_MAX = (1 << 63) - 1
_INT_MAX = (1 << 31) - 1


class InvalidTopicConfig(ValueError):
    """A topic config name or value Kafka would refuse (INVALID_CONFIG); the message is Kafka's."""


@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: str  # Kafka ConfigDef.Type name: BOOLEAN STRING INT SHORT LONG DOUBLE LIST CLASS PASSWORD
    default: str
    synonym: str | None  # the broker config a topic inherits from (DescribeConfigs synonyms)
    doc: str
    at_least: float | None = None
    one_of: tuple[str, ...] | None = None


_DEFS = [
    ConfigDef("cleanup.policy", "LIST", "delete", "log.cleanup.policy",
              "This config designates the retention policy to use on log segments. The \"delete\" policy "
              "(which is the default) will discard old segments when their retention time or size limit has "
              "been reached. The \"compact\" policy will enable log compaction, which retains the latest "
              "value for each key. It is also possible to specify both policies in a comma-separated list "
              "(e.g. \"delete,compact\").", one_of=("compact", "delete")),
    ConfigDef("compression.type", "STRING", "producer", "compression.type",
              "Specify the final compression type for a given topic.",
              one_of=("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
    ConfigDef("delete.retention.ms", "LONG", "86400000", "log.cleaner.delete.retention.ms",
              "The amount of time to retain delete tombstone markers for log compacted topics.", at_least=0),
    ConfigDef("file.delete.delay.ms", "LONG", "60000", "log.segment.delete.delay.ms",
              "The time to wait before deleting a file from the filesystem", at_least=0),
    ConfigDef("flush.messages", "LONG", str(_LONG_MAX), "log.flush.interval.messages",
              "This setting allows specifying an interval at which we will force an fsync of data written to "
              "the log.", at_least=1),
    ConfigDef("flush.ms", "LONG", str(_LONG_MAX), "log.flush.interval.ms",
              "This setting allows specifying a time interval at which we will force an fsync of data written "
              "to the log.", at_least=0),
    ConfigDef("follower.replication.throttled.replicas", "LIST", "", "follower.replication.throttled.replicas",
              "A list of replicas for which log replication should be throttled on the follower side."),
    ConfigDef("index.interval.bytes", "INT", "4096", "log.index.interval.bytes",
              "This setting controls how frequently Kafka adds an index entry to its offset index.", at_least=0),
    ConfigDef("leader.replication.throttled.replicas", "LIST", "", "leader.replication.throttled.replicas",
              "A list of replicas for which log replication should be throttled on the leader side."),
    ConfigDef("local.retention.bytes", "LONG", "-2", "log.local.retention.bytes",
              "The maximum size of local log segments that can grow for a partition before it deletes the "
              "old segments.", at_least=-2),
    ConfigDef("local.retention.ms", "LONG", "-2", "log.local.retention.ms",
              "The number of milliseconds to keep the local log segment before it gets deleted.", at_least=-2),
    ConfigDef("max.compaction.lag.ms", "LONG", str(_LONG_MAX), "log.cleaner.max.compaction.lag.ms",
              "The maximum time a message will remain ineligible for compaction in the log.", at_least=1),
    ConfigDef("max.message.bytes", "INT", "1048588", "message.max.bytes",
              "The largest record batch size allowed by Kafka (after compression if compression is enabled).",
              at_least=0),
    ConfigDef("message.downconversion.enable", "BOOLEAN", "true", "log.message.downconversion.enable",
              "This configuration controls whether down-conversion of message formats is enabled to satisfy "
              "consume requests."),
    ConfigDef("message.format.version", "STRING", "3.0-IV1", "log.message.format.version",
              "[DEPRECATED] Specify the message format version the broker will use to append messages to the "
              "logs."),
    ConfigDef("message.timestamp.difference.max.ms", "LONG", str(_LONG_MAX),
              "log.message.timestamp.difference.max.ms",
              "The maximum difference allowed between the timestamp when a broker receives a message and the "
              "timestamp specified in the message.", at_least=0),
    ConfigDef("message.timestamp.type", "STRING", "CreateTime", "log.message.timestamp.type",
              "Define whether the timestamp in the message is message create time or log append time.",
              one_of=("CreateTime", "LogAppendTime")),
    ConfigDef("min.cleanable.dirty.ratio", "DOUBLE", "0.5", "log.cleaner.min.cleanable.ratio",
              "This configuration controls how frequently the log compactor will attempt to clean the log.",
              at_least=0),
    ConfigDef("min.compaction.lag.ms", "LONG", "0", "log.cleaner.min.compaction.lag.ms",
              "The minimum time a message will remain uncompacted in the log. Only applicable for logs that "
              "are being compacted.", at_least=0),
    ConfigDef("min.insync.replicas", "INT", "1", "min.insync.replicas",
              "When a producer sets acks to \"all\" (or \"-1\"), this configuration specifies the minimum "
              "number of replicas that must acknowledge a write for the write to be considered successful.",
              at_least=1),
    ConfigDef("preallocate", "BOOLEAN", "false", "log.preallocate",
              "True if we should preallocate the file on disk when creating a new log segment."),
    ConfigDef("remote.storage.enable", "BOOLEAN", "false", None,
              "To enable tiered storage for a topic, set this configuration as true."),
    ConfigDef("retention.bytes", "LONG", "-1", "log.retention.bytes",
              "This configuration controls the maximum size a partition (which consists of log segments) can "
              "grow to before we will discard old log segments to free up space if we are using the "
              "\"delete\" retention policy."),
    ConfigDef("retention.ms", "LONG", "604800000", "log.retention.ms",
              "This configuration controls the maximum time we will retain a log before we will discard old "
              "log segments to free up space if we are using the \"delete\" retention policy.", at_least=-1),
    ConfigDef("segment.bytes", "INT", "1073741824", "log.segment.bytes",
              "This configuration controls the segment file size for the log.", at_least=14),
    ConfigDef("segment.index.bytes", "INT", "10485760", "log.index.size.max.bytes",
              "This configuration controls the size of the index that maps offsets to file positions.",
              at_least=4),
    ConfigDef("segment.jitter.ms", "LONG", "0", "log.roll.jitter.ms",
              "The maximum random jitter subtracted from the scheduled segment roll time.", at_least=0),
    ConfigDef("segment.ms", "LONG", "604800000", "log.roll.ms",
              "This configuration controls the period of time after which Kafka will force the log to roll "
              "even if the segment file isn't full.", at_least=1),
    ConfigDef("unclean.leader.election.enable", "BOOLEAN", "false", "unclean.leader.election.enable",
              "Indicates whether to enable replicas not in the ISR set to be elected as leader as a last "
              "resort."),
]
#: name -> definition, in Kafka's (alphabetical) order.
TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in _DEFS}
#: The configs that change what the broker does (the rest are stored and reported only).
APPLIED_CONFIGS = frozenset({"retention.ms", "retention.bytes", "cleanup.policy", "segment.bytes",
                             "max.message.bytes", "min.insync.replicas", "delete.retention.ms",
                             "min.compaction.lag.ms", "segment.ms", "index.interval.bytes",
                             "file.delete.delay.ms"})
#: Values we refuse because honouring them needs behaviour this broker does not have.
_UNSUPPORTED_VALUES = {
    "compression.type": {"uncompressed", "zstd", "lz4", "snappy", "gzip"},  # no broker-side recompression
    "message.timestamp.type": {"LogAppendTime"},
    "remote.storage.enable": {"true"},
}


def _invalid(name: str, value: str, why: str) -> InvalidTopicConfig:
    # Kafka ConfigException(name, value, message): "Invalid value V for configuration N: message"
    return InvalidTopicConfig(f"Invalid value {value} for configuration {name}: {why}")


def validate_topic_config(name: str, value: str | None) -> str:
    """The normalised value of topic config ``name`` (Kafka ConfigDef.parseType + validators), or raise
    InvalidTopicConfig with Kafka's text."""
    d = TOPIC_CONFIGS.get(name)
    if d is None:
        raise InvalidTopicConfig(f"Unknown topic config name: {name}")
    if value is None:
        raise InvalidTopicConfig(f"Null value not supported for topic configs: {name}")
    v = value.strip()
    t = d.type
    if t in ("LONG", "INT", "SHORT"):
        try:
            n = int(v)
        except ValueError:
            raise _invalid(name, value, f"Not a number of type {t}") from None
        lim = _LONG_MAX if t == "LONG" else _INT_MAX
        if not -lim - 1 <= n <= lim:
            raise _invalid(name, value, f"Not a number of type {t}")
        if d.at_least is not None and n < d.at_least:
            raise _invalid(name, value, f"Value must be at least {int(d.at_least)}")
        v = str(n)
    elif t == "DOUBLE":
        try:
            x = float(v)
        except ValueError:
            raise _invalid(name, value, f"Not a number of type {t}") from None
        if d.at_least is not None and x < d.at_least:
            raise _invalid(name, value, f"Value must be at least {d.at_least}")
    elif t == "BOOLEAN":
        if v.lower() not in ("true", "false"):
            raise _invalid(name, value, "Expected value to be either true or false")
        v = v.lower()
    elif t == "LIST":
        items = [x.strip() for x in v.split(",")] if v else []
        if d.one_of is not None:
            for item in items:
                if item not in d.one_of:
                    raise _invalid(name, item, "String must be one of: " + ", ".join(d.one_of))
        v = ",".join(items)
    elif d.one_of is not None and v not in d.one_of:
        raise _invalid(name, value, "String must be one of: " + ", ".join(d.one_of))
    bad = _UNSUPPORTED_VALUES.get(name)
    if bad is not None and v in bad:
        raise InvalidTopicConfig(f"Invalid value {value} for configuration {name}: not supported by this broker")
    return v


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Validate every entry (see :func:`validate_topic_config`); returns the normalised mapping."""
    return {name: validate_topic_config(name, value) for name, value in configs.items()}


def log_overrides(configs: Mapping[str, str]) -> dict[str, Any]:
    """LogConfig keyword overrides for a topic's (validated) configs; unset ones keep the broker's."""
    out: dict[str, Any] = {}
    for name, value in configs.items():
        if name == "retention.ms":
            out["retention_ms"] = int(value)
        elif name == "retention.bytes":
            out["retention_bytes"] = int(value)
        elif name == "segment.bytes":
            # Kafka's floor is 14 bytes (a v0 record); a v2 batch header is 61, the least a segment can hold.
            out["segment_bytes"] = max(int(value), 61)
        elif name == "segment.ms":
            out["segment_ms"] = int(value)
        elif name == "max.message.bytes":
            out["max_batch_bytes"] = max(int(value), 61)
        elif name == "index.interval.bytes":
            out["index_interval_bytes"] = int(value)
        elif name == "file.delete.delay.ms":
            out["file_delete_delay_ms"] = int(value)
        elif name == "cleanup.policy":
            out["cleanup_policy"] = value
        elif name == "delete.retention.ms":
            out["delete_retention_ms"] = int(value)
        elif name == "min.compaction.lag.ms":
            out["min_compaction_lag_ms"] = int(value)
    return out
