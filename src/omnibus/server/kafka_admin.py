"""Kafka admin APIs: DeleteTopics, CreatePartitions, DeleteRecords, DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs and DescribeCluster (registered with :func:`kafka_session.handler`).

Strategy: each handler turns the request into calls on :class:`~omnibus.server.kafka_session.KafkaBroker`
(``delete_topic``, ``add_partitions``, ``set_configs``) and the partitions' logs (``delete_records``), and
answers at once. Topic configs are validated and normalised by :mod:`omnibus.core.topics` (Kafka's
ConfigDef types, validators and INVALID_CONFIG texts); a topic stores only its overrides, everything else
is reported from the broker's settings or Kafka's defaults.

Semantics and error texts follow Apache Kafka 3.x in KRaft mode (``ControllerApis``, the controller's
``ReplicationControlManager`` and ``ConfigurationControlManager``, the broker's ``ConfigHelper``):
- DescribeConfigs lists every topic config Kafka reports, ``config_source`` DYNAMIC_TOPIC_CONFIG for an
  override, STATIC_BROKER_CONFIG where this broker's setting differs from Kafka's default, else
  DEFAULT_CONFIG; synonyms (the override, then the broker-level ``log.*`` name) and documentation when
  asked. BROKER resources name the node ("0") or the cluster default (""), all read-only.
- AlterConfigs replaces a topic's overrides; IncrementalAlterConfigs applies SET/DELETE/APPEND/SUBTRACT
  (APPEND/SUBTRACT only on LIST configs). Both honour ``validate_only``; broker configs cannot change
  dynamically here.
- DeleteRecords moves the low watermark (-1 = the high watermark); OFFSET_OUT_OF_RANGE past it;
  POLICY_VIOLATION on a topic whose cleanup.policy lacks delete (compact only).
- :class:`LogCleaner` compacts the partitions of ``cleanup.policy=compact`` topics every
  ``LOG_CLEANER_BACKOFF_MS`` (Kafka log.cleaner.backoff.ms) with storage/compaction.py, the segment
  rewriting in a worker thread.

Rules: event-loop thread only; admin traffic is rare, so clarity beats speed here.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from omnibus.core.topics import TOPIC_CONFIGS, InvalidTopicConfig, valid_topic_name, validate_topic_config
from omnibus.storage import compaction
from omnibus.storage.log import MAX_BATCH_BYTES, OffsetOutOfRangeError
from omnibus.storage.records import StorageError
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.messages import admin as A
from omnibus.server.kafka_session import CLUSTER_ID, NODE_ID, handler

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.kafka_session import KafkaSession
    from omnibus.wire.kafka.connection import Request

__all__ = ["describe_topic_configs", "created_topic_configs", "broker_defaults", "LogCleaner",
           "LOG_CLEANER_BACKOFF_MS"]

log = logging.getLogger(__name__)
#: Kafka log.cleaner.backoff.ms: how long the cleaner sleeps between looks for logs to compact.
LOG_CLEANER_BACKOFF_MS = 15_000

#: DescribeConfigsResponse config_type ids (KIP-569).
CONFIG_TYPES = {"BOOLEAN": 1, "STRING": 2, "INT": 3, "SHORT": 4, "LONG": 5, "DOUBLE": 6, "LIST": 7,
                "CLASS": 8, "PASSWORD": 9}
#: AclOperation bits a principal holds on the cluster when no authorizer is configured.
_CLUSTER_OPS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))
_HIGH_WATERMARK = -1  # DeleteRecordsRequest.HIGH_WATERMARK


def broker_defaults(server: Any) -> dict[str, str]:
    """Topic config name -> the value a topic without an override gets on this broker."""
    st = server.settings.storage
    d = {name: c.default for name, c in TOPIC_CONFIGS.items()}
    d.update({"retention.ms": str(st.retention_ms), "retention.bytes": str(st.retention_bytes),
              "segment.bytes": str(st.segment_bytes), "segment.ms": str(st.segment_ms),
              "index.interval.bytes": str(st.index_interval_bytes), "max.message.bytes": str(MAX_BATCH_BYTES)})
    return d


#: Where Kafka's DEFAULT_CONFIG synonym is another name than the topic config's broker synonym: the broker
#: default lives in the ``*.hours`` config (brokerConfigSynonyms: ms, minutes, hours; only hours has a default).
_DEFAULT_SYNONYMS = {"retention.ms": ("log.retention.hours", "168"), "segment.ms": ("log.roll.hours", "168"),
                     "segment.jitter.ms": ("log.roll.jitter.hours", "0")}


def _default_source(name: str, value: str) -> int:
    return A.CONFIG_SOURCE_DEFAULT if TOPIC_CONFIGS[name].default == value else A.CONFIG_SOURCE_STATIC_BROKER


def describe_topic_configs(server: Any, overrides: dict[str, str], keys: list[str] | None, version: int,
                           synonyms: bool, documentation: bool) -> list:
    R = M.DescribeConfigsResponse
    defaults = broker_defaults(server)
    out = []
    for name, cdef in TOPIC_CONFIGS.items():
        if keys is not None and name not in keys:
            continue
        default = defaults[name]
        dsource = _default_source(name, default)
        if name in overrides:
            value, source = overrides[name], A.CONFIG_SOURCE_TOPIC
        else:
            value, source = default, dsource
        syns = []
        if synonyms and version >= 1:
            if name in overrides:
                syns.append(R.DescribeConfigsSynonym(name=name, value=value, source=A.CONFIG_SOURCE_TOPIC))
            if cdef.synonym is not None:
                if dsource == A.CONFIG_SOURCE_STATIC_BROKER:
                    syns.append(R.DescribeConfigsSynonym(name=cdef.synonym, value=default, source=dsource))
                dname, dvalue = _DEFAULT_SYNONYMS.get(name, (cdef.synonym, cdef.default))
                syns.append(R.DescribeConfigsSynonym(name=dname, value=dvalue, source=A.CONFIG_SOURCE_DEFAULT))
        out.append(R.DescribeConfigsResourceResult(
            name=name, value=value, read_only=False, is_default=source == A.CONFIG_SOURCE_DEFAULT,
            config_source=source, is_sensitive=False, synonyms=syns, config_type=CONFIG_TYPES[cdef.type],
            documentation=cdef.doc if documentation else None))
    return out


def created_topic_configs(server: Any, overrides: dict[str, str]) -> list:
    """CreateTopics v5+ (KIP-525): the new topic's configs, as DescribeConfigs would report them."""
    R = M.CreateTopicsResponse
    return [R.CreatableTopicConfigs(name=c.name, value=c.value, read_only=c.read_only, config_source=c.config_source,
                                    is_sensitive=c.is_sensitive)
            for c in describe_topic_configs(server, overrides, None, 1, False, False)]


def _broker_configs(session: "KafkaSession") -> list[tuple[str, str, str, str]]:
    """(name, value, Kafka default, type) of the broker configs DescribeConfigs reports."""
    s = session.server.settings
    st, k = s.storage, s.kafka
    host, port = session._address()
    return [
        ("advertised.listeners", f"PLAINTEXT://{host}:{port}", "", "STRING"),
        ("auto.create.topics.enable", str(k.auto_create_topics_enable).lower(), "true", "BOOLEAN"),
        ("broker.id", str(NODE_ID), "-1", "INT"),
        ("default.replication.factor", "1", "1", "INT"),
        ("log.cleaner.delete.retention.ms", "86400000", "86400000", "LONG"),
        ("log.cleaner.min.compaction.lag.ms", "0", "0", "LONG"),
        ("log.cleanup.policy", "delete", "delete", "LIST"),
        ("log.dirs", str(session.server.data_dir), "/tmp/kafka-logs", "STRING"),
        ("log.index.interval.bytes", str(st.index_interval_bytes), "4096", "INT"),
        ("log.retention.bytes", str(st.retention_bytes), "-1", "LONG"),
        ("log.retention.check.interval.ms", str(st.retention_check_interval_ms), "300000", "LONG"),
        ("log.retention.ms", str(st.retention_ms), "604800000", "LONG"),
        ("log.roll.ms", str(st.segment_ms), "604800000", "LONG"),
        ("log.segment.bytes", str(st.segment_bytes), "1073741824", "INT"),
        ("message.max.bytes", str(MAX_BATCH_BYTES), "1048588", "INT"),
        ("min.insync.replicas", "1", "1", "INT"),
        ("node.id", str(NODE_ID), "-1", "INT"),
        ("num.partitions", str(k.num_partitions), "1", "INT"),
        ("offsets.topic.replication.factor", "1", "3", "SHORT"),
        ("sasl.enabled.mechanisms", ",".join(k.sasl_enabled_mechanisms), "GSSAPI", "LIST"),
    ]


def _describe_broker(session: "KafkaSession", keys: list[str] | None, version: int, synonyms: bool) -> list:
    R = M.DescribeConfigsResponse
    out = []
    for name, value, default, ctype in _broker_configs(session):
        if keys is not None and name not in keys:
            continue
        source = A.CONFIG_SOURCE_DEFAULT if value == default else A.CONFIG_SOURCE_STATIC_BROKER
        syns = [R.DescribeConfigsSynonym(name=name, value=value, source=source)] if synonyms and version >= 1 else []
        out.append(R.DescribeConfigsResourceResult(
            name=name, value=value, read_only=True, is_default=source == A.CONFIG_SOURCE_DEFAULT,
            config_source=source, is_sensitive=False, synonyms=syns, config_type=CONFIG_TYPES[ctype],
            documentation=None))
    return out


_RESOURCE_TYPES = {0: "UNKNOWN", 2: "TOPIC", 4: "BROKER", 8: "BROKER_LOGGER", 16: "CLIENT_METRICS", 32: "GROUP"}


def _bad_broker(name: str) -> str | None:
    """Kafka ConfigHelper's check of a BROKER resource name (None = fine)."""
    if name == "":
        return None
    try:
        broker_id = int(name)
    except ValueError:
        return f"Broker id must be an integer, but it is: {name}"
    if broker_id != NODE_ID:
        return f"Unexpected broker id, expected {NODE_ID} or empty string, but received {name}"
    return None


def _topic_name_error(name: str) -> str | None:
    """Kafka's Topic.validate texts (InvalidTopicException), or None for a legal name."""
    if not name:
        return "Topic name is illegal, it can't be empty"
    if name in (".", ".."):
        return 'Topic name cannot be "." or ".."'
    if len(name) > 249:
        return f"Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
    if not valid_topic_name(name):
        return (f'Topic name "{name}" is illegal, it contains a character other than ASCII alphanumerics, '
                "'.', '_' and '-'")
    return None


def _unsupported_type(resource_type: int) -> str:
    return f"Unsupported resource type: {_RESOURCE_TYPES.get(resource_type, resource_type)}"


# -- the log cleaner ----------------------------------------------------------------------------------

class LogCleaner:
    """Compacts the partitions of topics whose ``cleanup.policy`` includes ``compact`` (Kafka's LogCleaner
    thread): every ``LOG_CLEANER_BACKOFF_MS``, one log at a time, planning and swapping on the event loop
    and rewriting segments in a worker thread (storage/compaction.py). ``run_once`` is also what a test
    awaits to clean now. Event-loop thread only."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self._lock = asyncio.Lock()
        #: log path -> (clean point, time) of its last clean
        self._cleaned: dict[str, tuple[int, int]] = {}
        self._task = asyncio.get_running_loop().create_task(self._loop())
        broker.server.closers.append(self.stop)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(LOG_CLEANER_BACKOFF_MS / 1000)
            try:
                await self.run_once()
            except Exception:  # one bad log must not stop the cleaner; it is retried next round
                log.exception("log cleaner round failed")

    async def run_once(self) -> compaction.CleanResult:
        """Compact every compacted topic's partitions now; returns the totals."""
        total = compaction.CleanResult()
        loop = asyncio.get_running_loop()
        async with self._lock:
            for topic in list(self.broker.topics.values()):
                if "compact" not in topic.config.configs.get("cleanup.policy", "delete"):
                    continue
                for plog in topic.partitions():
                    p = compaction.plan(plog)
                    if p is None:
                        continue
                    # Nothing new since the last clean of this log, and no tombstone can have expired since:
                    # skip (a cheap stand-in for Kafka's min.cleanable.dirty.ratio).
                    last = self._cleaned.get(plog.path)
                    if last is not None and last[0] == p.clean_point and \
                            p.now_ms - last[1] < plog.config.delete_retention_ms:
                        p.release()
                        continue
                    try:
                        result = await loop.run_in_executor(None, compaction.build, p)
                    except (OSError, StorageError) as e:  # e.g. the topic was deleted meanwhile; next round
                        if not plog.closed:
                            log.warning("log cleaner: %s: %s", plog.path, e)
                        continue
                    compaction.install(plog, result)  # skips what changed meanwhile (deleted, closed)
                    self._cleaned[plog.path] = (p.clean_point, p.now_ms)
                    for name in ("segments_rewritten", "segments_deleted", "records_removed", "bytes_before",
                                 "bytes_after"):
                        setattr(total, name, getattr(total, name) + getattr(result, name))
        return total

    def stop(self) -> None:
        self._task.cancel()


# -- handlers ------------------------------------------------------------------------------------------

@handler(M.DESCRIBE_CONFIGS, (0, 4))
def describe_configs(session: "KafkaSession", req: "Request") -> None:
    body, version = req.body, req.api_version
    R = M.DescribeConfigsResponse
    results = []
    for res in body.resources:
        code, message, configs = 0, None, []
        # Kafka 3.x ConfigHelper: null or empty configuration_keys mean every config.
        keys = res.configuration_keys or None
        if res.resource_type == A.RESOURCE_TOPIC:
            topic = session.broker.topics.get(res.resource_name)
            message = _topic_name_error(res.resource_name)
            if message is not None:
                code = E.INVALID_TOPIC_EXCEPTION
            elif topic is None:  # the code alone, no message
                code = E.UNKNOWN_TOPIC_OR_PARTITION
            else:
                configs = describe_topic_configs(session.server, dict(topic.config.configs), keys, version,
                                                 body.include_synonyms, body.include_documentation)
        elif res.resource_type == A.RESOURCE_BROKER:
            message = _bad_broker(res.resource_name)
            if message is not None:
                code = E.INVALID_REQUEST
            elif res.resource_name:  # "" is the cluster-wide dynamic defaults: none here
                configs = _describe_broker(session, keys, version, body.include_synonyms)
        else:
            code, message = E.INVALID_REQUEST, _unsupported_type(res.resource_type)
        results.append(R.DescribeConfigsResult(error_code=code, error_message=message,
                                               resource_type=res.resource_type, resource_name=res.resource_name,
                                               configs=configs))
    session.respond(req, R(throttle_time_ms=0, results=results))


def _alter(session: "KafkaSession", res: Any, compute, validate_only: bool) -> tuple[int, str | None]:
    """Shared by AlterConfigs and IncrementalAlterConfigs: (error code, message) for one resource;
    ``compute(current overrides)`` returns the new overrides or raises InvalidTopicConfig."""
    if res.resource_type == A.RESOURCE_BROKER:
        message = _bad_broker(res.resource_name)
        if message is not None:
            return E.INVALID_REQUEST, message
        names = ", ".join(c.name for c in res.configs)
        return E.INVALID_REQUEST, f"Cannot update these configs dynamically: Set({names})"
    if res.resource_type != A.RESOURCE_TOPIC:
        return E.INVALID_REQUEST, _unsupported_type(res.resource_type)
    topic = session.broker.topics.get(res.resource_name)
    if topic is None:
        return E.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{res.resource_name}' does not exist."
    names = [c.name for c in res.configs]
    if len(set(names)) != len(names):
        dups = sorted({n for n in names if names.count(n) > 1})
        return E.INVALID_REQUEST, f"Error due to duplicate config keys : {','.join(dups)}"
    try:
        new = compute(dict(topic.config.configs))
    except InvalidTopicConfig as e:
        return E.INVALID_CONFIG, str(e)
    if not validate_only:
        session.broker.set_configs(topic.name, new)
    return 0, None


@handler(M.ALTER_CONFIGS, (0, 2))
def alter_configs(session: "KafkaSession", req: "Request") -> None:
    body = req.body
    R = M.AlterConfigsResponse
    out = []
    for res in body.resources:
        def compute(_current: dict[str, str], res: Any = res) -> dict[str, str]:
            # AlterConfigs replaces the whole set: what is not named returns to its default.
            return {c.name: validate_topic_config(c.name, c.value) for c in res.configs}
        code, message = _alter(session, res, compute, body.validate_only)
        out.append(R.AlterConfigsResourceResponse(error_code=code, error_message=message,
                                                  resource_type=res.resource_type, resource_name=res.resource_name))
    session.respond(req, R(throttle_time_ms=0, responses=out))


@handler(M.INCREMENTAL_ALTER_CONFIGS, (0, 1))
def incremental_alter_configs(session: "KafkaSession", req: "Request") -> None:
    body = req.body
    R = M.IncrementalAlterConfigsResponse
    defaults = broker_defaults(session.server)
    out = []
    for res in body.resources:
        def compute(current: dict[str, str], res: Any = res) -> dict[str, str]:
            # KRaft ConfigurationControlManager.incrementalAlterConfigResource, then validation of the result.
            for c in res.configs:
                cdef = TOPIC_CONFIGS.get(c.name)
                op = c.config_operation
                if op == A.OP_SET:
                    current[c.name] = validate_topic_config(c.name, c.value)
                elif op == A.OP_DELETE:
                    if cdef is None:
                        raise InvalidTopicConfig(f"Unknown topic config name: {c.name}")
                    current.pop(c.name, None)
                elif op in (A.OP_APPEND, A.OP_SUBTRACT):
                    if cdef is None or cdef.type != "LIST":
                        word = "APPEND" if op == A.OP_APPEND else "SUBTRACT"
                        raise InvalidTopicConfig(f"Can't {word} to key {c.name} because its type is not LIST.")
                    have = current.get(c.name, defaults[c.name])
                    items = [x for x in have.split(",") if x]
                    given = [x.strip() for x in (c.value or "").split(",") if x.strip()]
                    if op == A.OP_APPEND:
                        items += [x for x in given if x not in items]
                    else:
                        items = [x for x in items if x not in given]
                    current[c.name] = validate_topic_config(c.name, ",".join(items))
                else:
                    raise InvalidTopicConfig(f"Unknown operation {op} for config key: {c.name}")
            return current
        code, message = _alter(session, res, compute, body.validate_only)
        out.append(R.AlterConfigsResourceResponse(error_code=code, error_message=message,
                                                  resource_type=res.resource_type, resource_name=res.resource_name))
    session.respond(req, R(throttle_time_ms=0, responses=out))


@handler(M.DELETE_TOPICS, (0, 6))
def delete_topics(session: "KafkaSession", req: "Request") -> None:
    body, version = req.body, req.api_version
    R = M.DeleteTopicsResponse
    broker = session.broker
    if version >= 6:
        wanted = [(t.name, uuid.UUID(bytes=bytes(t.topic_id))) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    out = []
    for name, topic_id in wanted:
        code = 0
        tid = topic_id if topic_id is not None else uuid.UUID(int=0)
        if topic_id is not None and topic_id.int != 0:
            if name is not None:
                code = E.INVALID_REQUEST  # Kafka: name and id both set
            else:
                name = next((t.name for t in broker.topics.values() if t.topic_id == topic_id), None)
                if name is None:
                    code = E.UNKNOWN_TOPIC_ID
        elif name is None or name not in broker.topics:
            code = E.UNKNOWN_TOPIC_OR_PARTITION
        if code == 0:
            tid = broker.topics[name].topic_id
            broker.delete_topic(name)
        out.append(R.DeletableTopicResult(name=name, topic_id=tid.bytes, error_code=code,
                                          error_message=E.error_message(code) if code else None))
    session.respond(req, R(throttle_time_ms=0, responses=out))


def _check_assignments(assignments: list, additional: int) -> tuple[int, str | None]:
    if len(assignments) != additional:
        return E.INVALID_REPLICA_ASSIGNMENT, (f"Attempted to add {additional} additional partition(s), but only "
                                              f"{len(assignments)} assignment(s) were specified.")
    for a in assignments:
        ids = sorted(a.broker_ids)
        if not ids:
            return E.INVALID_REPLICA_ASSIGNMENT, "The manual partition assignment includes an empty replica list."
        for i, b in enumerate(ids):
            if b != NODE_ID:
                return E.INVALID_REPLICA_ASSIGNMENT, (f"The manual partition assignment includes broker {b}, but no "
                                                      "such broker is registered.")
            if i and ids[i - 1] == b:
                return E.INVALID_REPLICA_ASSIGNMENT, (f"The manual partition assignment includes the broker {b} more "
                                                      "than once.")
    return 0, None


@handler(M.CREATE_PARTITIONS, (0, 3))
def create_partitions(session: "KafkaSession", req: "Request") -> None:
    body = req.body
    R = M.CreatePartitionsResponse
    broker = session.broker
    out = []
    for t in body.topics:
        code, message = 0, None
        topic = broker.topics.get(t.name)
        # Texts of KRaft's ReplicationControlManager.createPartitions / validateManualPartitionAssignment.
        if topic is None:
            code, message = E.UNKNOWN_TOPIC_OR_PARTITION, E.error_message(E.UNKNOWN_TOPIC_OR_PARTITION)
        elif t.count == len(topic):
            code, message = E.INVALID_PARTITIONS, f"Topic already has {len(topic)} partition(s)."
        elif t.count < len(topic):
            code = E.INVALID_PARTITIONS
            message = (f"The topic {t.name} currently has {len(topic)} partition(s); {t.count} would not be an "
                       "increase.")
        elif t.assignments is not None:
            code, message = _check_assignments(t.assignments, t.count - len(topic))
        if code == 0 and not body.validate_only:
            broker.add_partitions(t.name, t.count)
        out.append(R.CreatePartitionsTopicResult(name=t.name, error_code=code, error_message=message))
    session.respond(req, R(throttle_time_ms=0, results=out))


@handler(M.DELETE_RECORDS, (0, 2))
def delete_records(session: "KafkaSession", req: "Request") -> None:
    R = M.DeleteRecordsResponse
    out = []
    for t in req.body.topics:
        topic = session.broker.topics.get(t.name)
        parts = []
        for p in t.partitions:
            code, low = 0, -1
            if topic is None or not 0 <= p.partition_index < len(topic):
                code = E.UNKNOWN_TOPIC_OR_PARTITION
            else:
                log = topic.partition(p.partition_index)
                offset = log.end_offset if p.offset == _HIGH_WATERMARK else p.offset
                if "delete" not in topic.config.configs.get("cleanup.policy", "delete"):
                    # Kafka Partition.deleteRecordsOnLeader: "... can not be deleted due to the configured policy"
                    code = E.POLICY_VIOLATION
                else:
                    try:
                        low = log.delete_records(offset)
                    except OffsetOutOfRangeError:
                        code = E.OFFSET_OUT_OF_RANGE
            parts.append(R.DeleteRecordsPartitionResult(partition_index=p.partition_index, low_watermark=low,
                                                        error_code=code))
        out.append(R.DeleteRecordsTopicResult(name=t.name, partitions=parts))
    session.respond(req, R(throttle_time_ms=0, topics=out))


@handler(M.DESCRIBE_CLUSTER, (0, 1))
def describe_cluster(session: "KafkaSession", req: "Request") -> None:
    body = req.body
    R = M.DescribeClusterResponse
    host, port = session._address()
    if req.api_version >= 1 and body.endpoint_type != 1:  # 1 = brokers; a broker serves no controller list
        session.respond(req, R(throttle_time_ms=0, error_code=E.UNSUPPORTED_ENDPOINT_TYPE,
                               error_message=E.error_message(E.UNSUPPORTED_ENDPOINT_TYPE),
                               endpoint_type=body.endpoint_type, cluster_id=CLUSTER_ID, controller_id=-1,
                               brokers=[]))
        return
    ops = _CLUSTER_OPS if body.include_cluster_authorized_operations else -2147483648
    session.respond(req, R(throttle_time_ms=0, error_code=0, error_message=None, endpoint_type=1,
                           cluster_id=CLUSTER_ID, controller_id=NODE_ID,
                           brokers=[R.DescribeClusterBroker(broker_id=NODE_ID, host=host, port=port, rack=None)],
                           cluster_authorized_operations=ops))
