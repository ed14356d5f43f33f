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
