"""The Kafka listener's session: a single-node Kafka 3.x cluster. This module holds the connection, the
response ordering, topics (KafkaBroker) and the data path (Metadata, Produce, Fetch, ListOffsets,
CreateTopics); feature modules register the other APIs with :func:`handler` and own their state:
kafka_groups (consumer groups, classic protocol: FindCoordinator, Join/Sync/Heartbeat/LeaveGroup, offset
commits and fetches, Describe/List/DeleteGroups), kafka_txn (InitProducerId, idempotent producer state,
transaction coordinator, LSO and aborted-transaction index), kafka_admin (DeleteTopics, CreatePartitions,
DeleteRecords, DescribeCluster, Describe/Alter/IncrementalAlterConfigs, the log cleaner) and kafka_sasl
(SaslHandshake, SaslAuthenticate: PLAIN, SCRAM-SHA-256/512).

Strategy: ``data_received`` feeds the sans-IO codec (wire/kafka) and answers each request. Kafka clients
need responses in request order per connection, while a Produce waits for durability and a Fetch may
long-poll: every request takes a slot in ``_pending`` and responses are written as the head slots
complete. Produce and Fetch are pipelined; any other request waits until the connection's earlier
non-data requests are answered, so it sees their effects as on Kafka, which handles one request per
connection at a time (``_admit``: a JoinGroup behind an OffsetCommit sees the commit). Produce batches are validated (CRC-32C, magic 2, sizes) and stored verbatim by the storage log,
never decoded; Fetch hands the log's file regions to the connection, which sends them with sendfile.

Semantics follow Apache Kafka 3.x:
- ApiVersions advertises exactly what is implemented here (record-batch versions only: Produce v3+,
  Fetch v4+, since older versions carry the pre-v2 message format that the log does not store).
- Metadata auto-creates topics when the client allows it (``auto.create.topics.enable`` on,
  ``num.partitions`` 1); node 0 at the listener's address is broker, controller and leader of everything.
- Produce: acks=0 gets no response; acks=1/-1 are answered once the appended batches are durable under
  the fsync policy. Exactly one record batch per partition (ProduceRequest.validateRecords). Errors:
  UNKNOWN_TOPIC_OR_PARTITION, INVALID_RECORD, CORRUPT_MESSAGE, MESSAGE_TOO_LARGE (max.message.bytes),
  RECORD_LIST_TOO_LARGE (segment.bytes), UNSUPPORTED_COMPRESSION_TYPE (zstd before v7),
  INVALID_REQUIRED_ACKS.
- Fetch: whole batches from the one containing the fetch offset, as many as ``partition_max_bytes`` and
  ``max_bytes`` allow (at least one, KIP-74); OFFSET_OUT_OF_RANGE outside the log; ``min_bytes``/
  ``max_wait_ms`` long-poll woken by appends to the fetched partitions. Bench: bench/kafka.py.
- Topics and their partition count live in the metadata store and come back at start.

- Idempotent and transactional producers (KIP-98): Produce checks each batch's producer id, epoch and
  sequence against the partition's producer state (kafka_txn / core.transactions: headers only, never the
  records); Fetch reports the last stable offset, and read_committed fetches stop at it and carry the
  aborted transactions of the fetched range.
- Admin APIs, topic configs and the log cleaner live in kafka_admin (configs are applied to the partition
  logs here, in KafkaBroker); SASL in kafka_sasl, behind a gate at the top of ``_handle`` and, for the
  legacy SaslHandshake v0 raw tokens, of ``data_received``.

Rules: event-loop thread only; no await and no logging per request or record.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, Callable

import orjson

from omnibus.core.topics import (InvalidTopicConfig, Topic, TopicConfig, log_overrides, valid_topic_name,
                                  validate_topic_configs)
from omnibus.storage.files import FileRegion
from omnibus.storage.log import RecordTooLargeError
from omnibus.storage.records import (COMPRESSION_GZIP, COMPRESSION_MASK, COMPRESSION_NONE, CONTROL_BIT,
                                     TRANSACTIONAL_BIT, StorageError, decode_records, read_header)
from omnibus.wire.kafka import errors as E
from omnibus.wire.kafka import messages as M
from omnibus.wire.kafka.connection import KafkaConnection, Request
from omnibus.wire.kafka.errors import KafkaProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from omnibus.server.app import BrokerServer
    from omnibus.server.transport import Connection

__all__ = ["KafkaSession", "KafkaBroker"]

NODE_ID = 0
CLUSTER_ID = "omnibus-single-node-cluster"
#: Kafka num.partitions default, used for auto-created topics.
DEFAULT_PARTITIONS = 1
TOPICS_NAMESPACE = "kafka/topics"
#: What ApiVersions advertises: implemented APIs only, record-batch (magic 2) versions only.
VERSIONS: dict[int, tuple[int, int]] = {
    M.API_VERSIONS: (0, 3),
    M.METADATA: (0, 12),
    M.PRODUCE: (3, 9),
    M.FETCH: (4, 12),
    M.LIST_OFFSETS: (1, 7),
    M.CREATE_TOPICS: (0, 7),
    M.INIT_PRODUCER_ID: (0, 4),
}
#: API key -> handler(session, request) for the APIs that feature modules add (groups, admin, transactions,
#: SASL). A handler answers through ``session.respond`` (or takes a slot itself and completes it later).
HANDLERS: dict[int, Callable[["KafkaSession", Request], None]] = {}


def handler(api_key: int, versions: tuple[int, int]) -> Callable:
    """Register ``fn(session, request)`` for ``api_key`` and advertise ``versions`` in ApiVersions."""
    def register(fn: Callable[["KafkaSession", Request], None]) -> Callable:
        HANDLERS[api_key] = fn
        VERSIONS[api_key] = versions
        return fn
    return register


PRODUCER_ID_KEY = "next_producer_id"
#: core.transactions outcomes -> Produce error codes (an old epoch is INVALID_PRODUCER_EPOCH on Produce).
_PRODUCE_CODES = {"out_of_order": E.OUT_OF_ORDER_SEQUENCE_NUMBER, "fenced": E.INVALID_PRODUCER_EPOCH,
                  "invalid_txn_state": E.INVALID_TXN_STATE}
EARLIEST, LATEST = -2, -1  # ListOffsets special timestamps


class Region(FileRegion):
    """A storage file region whose ``len()`` is its size, as the Kafka encoder counts record parts."""

    __slots__ = ()

    def __len__(self) -> int:  # type: ignore[override]
        return self.size


class KafkaBroker:
    """Broker-wide Kafka state: topics (persisted in the metadata store) and fetch waiters."""

    def __init__(self, server: "BrokerServer") -> None:
        self.server = server
        self.topics: dict[str, Topic] = {}
        self.waiters: dict[tuple[str, int], set] = {}
        #: Unused (kept for callers): producer state lives in kafka_txn.TxnService, per partition log.
        self.sequences: dict[tuple[str, int, int], list[int]] = {}
        meta = server.meta
        if meta is not None:
            for name, raw in meta.items(TOPICS_NAMESPACE):
                d = orjson.loads(raw)
                self._open(name, d["partitions"], uuid.UUID(d["topic_id"]), d.get("configs", {}))
        #: Compaction of cleanup.policy=compact topics (kafka_admin.LogCleaner).
        self.cleaner = kafka_admin.LogCleaner(self)

    @classmethod
    def of(cls, server: "BrokerServer") -> "KafkaBroker":
        broker = getattr(server, "kafka", None)
        if broker is None:
            broker = server.kafka = cls(server)
        return broker

    def _open(self, name: str, partitions: int, topic_id: uuid.UUID, configs: dict[str, str]) -> Topic:
        overrides = log_overrides(configs)
        logs = [self.server.open_log(f"kafka/{name}-{p}", **overrides) for p in range(partitions)]
        topic = Topic(name, logs, TopicConfig(configs=configs), topic_id=topic_id)
        self.topics[name] = topic
        return topic

    def _persist(self, topic: Topic) -> None:
        if self.server.meta is not None:
            self.server.meta.put(TOPICS_NAMESPACE, topic.name, orjson.dumps({
                "partitions": len(topic), "topic_id": str(topic.topic_id), "configs": dict(topic.config.configs)}))

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None) -> Topic:
        """Create a topic; ``configs`` must be valid (core.topics.validate_topic_configs)."""
        topic = self._open(name, partitions, uuid.uuid4(), dict(configs or {}))
        self._persist(topic)
        return topic

    def delete_topic(self, name: str) -> None:
        """DeleteTopics: forget the topic, remove its logs from disk and the metadata store, and answer the
        fetches long-polling it (they now see UNKNOWN_TOPIC_OR_PARTITION)."""
        topic = self.topics.pop(name)
        if self.server.meta is not None:
            self.server.meta.delete(TOPICS_NAMESPACE, name)
        for p in range(len(topic)):
            self.server.delete_log(f"kafka/{name}-{p}")
            for key in [k for k in self.sequences if k[0] == name and k[1] == p]:
                del self.sequences[key]
            self.appended(name, p)

    def add_partitions(self, name: str, total: int) -> None:
        """CreatePartitions: grow ``name`` to ``total`` partitions (the caller checked total > current)."""
        topic = self.topics[name]
        overrides = log_overrides(topic.config.configs)
        logs = [self.server.open_log(f"kafka/{name}-{p}", **overrides) for p in range(len(topic), total)]
        topic._partitions.extend(logs)
        self._persist(topic)

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace the topic's config overrides (validated) and apply them to every partition's log."""
        topic = self.topics[name]
        topic.config = TopicConfig(configs=dict(configs))
        log_config = self.server.log_config(**log_overrides(configs))
        for log in topic.partitions():
            log.reconfigure(log_config)
        self._persist(topic)

    def next_producer_id(self) -> int:
        """A producer id never handed out before, also across restarts (kept in the metadata store)."""
        meta = self.server.meta
        raw = meta.get(TOPICS_NAMESPACE + "/state", PRODUCER_ID_KEY) if meta is not None else None
        pid = int(raw) if raw else getattr(self, "_pid", 1000)
        self._pid = pid + 1
        if meta is not None:
            meta.put(TOPICS_NAMESPACE + "/state", PRODUCER_ID_KEY, str(pid + 1).encode())
        return pid

    def appended(self, topic: str, partition: int) -> None:
        """Wake the long-polling fetches of this partition."""
        waiters = self.waiters.pop((topic, partition), None)
        if waiters:
            for fetch in waiters:
                fetch.wake()


#: Kafka's batch iterator (ByteBufferLogInputStream) needs this much to read a batch's size and magic.
HEADER_SIZE_UP_TO_MAGIC = 17
#: The smallest size field it accepts (LegacyRecord.RECORD_OVERHEAD_V0).
MIN_RECORD_OVERHEAD = 14
#: Record batch compression type id of zstd (attributes bits 0-2).
ZSTD = 4


def _one_batch(records: Any, version: int) -> int:
    """Kafka's ProduceRequest.validateRecords (v3+) over one partition's records: the size of the one
    whole record batch they start with, or minus an error code. No whole batch, or a second whole batch
    after it, or magic 0/1: INVALID_RECORD ("Produce requests with version 3+ are only allowed to contain
    exactly one record batch per partition"); a size field below the record overhead or a magic above 2:
    CORRUPT_MESSAGE; zstd before Produce v7: UNSUPPORTED_COMPRESSION_TYPE (KIP-110). Bytes after the batch
    that do not make a whole batch are dropped, as Kafka's trimInvalidBytes does. The CRC is checked by
    the log's append."""
    n = len(records)
    if n < HEADER_SIZE_UP_TO_MAGIC:
        return -E.INVALID_RECORD
    size = int.from_bytes(records[8:12], "big", signed=True) + 12
    magic = records[16]
    if size - 12 < MIN_RECORD_OVERHEAD or magic > 2:
        return -E.CORRUPT_MESSAGE
    if n < size or magic != 2:
        return -E.INVALID_RECORD
    if version < 7 and records[22] & 7 == ZSTD:  # attributes (int16 at 21): compression in bits 0-2
        return -E.UNSUPPORTED_COMPRESSION_TYPE
    if n - size >= HEADER_SIZE_UP_TO_MAGIC:
        second = int.from_bytes(records[size + 8:size + 12], "big", signed=True)
        if second < MIN_RECORD_OVERHEAD or records[size + 16] > 2:
            return -E.CORRUPT_MESSAGE
        if n - size >= second + 12:
            return -E.INVALID_RECORD
    return size


#: Requests handled at once even while earlier requests of their connection are in progress: the data path
#: stays pipelined (a log orders its own appends and reads). Any other request waits, see KafkaSession._admit.
PIPELINED = frozenset((M.PRODUCE, M.FETCH))


def _topic_refusal(cfg: dict, acks: int, records: Any, topic: str, partition: int
                   ) -> tuple[int, str, list[tuple[int, str]]] | None:
    """What Kafka refuses because of a topic's configs (only topics with overrides get here): with
    acks=all, fewer in-sync replicas (one, here) than ``min.insync.replicas`` is NOT_ENOUGH_REPLICAS
    (Partition.appendRecordsToLeader); on a compacted topic a record without a key is INVALID_RECORD
    (LogValidator.validateKey, with the per-record errors of v8+). Records are decoded for the key check
    only on compacted topics, and only when the core can decode their codec (none, gzip); other codecs
    are stored unchecked (the cleaner drops keyless records). Returns (code, message, record errors)."""
    if acks == -1:
        try:
            min_isr = int(cfg.get("min.insync.replicas", 1))
        except ValueError:
            min_isr = 1
        if min_isr > 1:
            return (E.NOT_ENOUGH_REPLICAS, f"The size of the current ISR Set(0) is insufficient to satisfy the "
                                           f"min.isr requirement of {min_isr} for partition {topic}-{partition}", [])
    if "compact" in cfg.get("cleanup.policy", "") and \
            read_header(records).attributes & COMPRESSION_MASK in (COMPRESSION_NONE, COMPRESSION_GZIP):
        try:
            decoded = decode_records(records, validate=False)
        except StorageError:
            return None  # the append reports it as CORRUPT_MESSAGE
        bad = [(i, f"Compacted topic cannot accept message without key in topic partition {topic}-{partition}")
               for i, (_, r) in enumerate(decoded) if r.key is None]
        if bad:
            first = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in bad[:3])
            return (E.INVALID_RECORD, f"One or more records have been rejected due to {len(bad)} record errors "
                                      f"in total, and only showing the first three errors at most: [{first}]", bad)
    return None


class _Slot:
    __slots__ = ("parts", "done", "barrier")

    def __init__(self, barrier: bool = False) -> None:
        self.parts: list | None = None
        self.done = False
        #: Taken by a request outside PIPELINED: later requests of the connection wait until it is done.
        self.barrier = barrier


class _PendingFetch:
    __slots__ = ("session", "request", "slot", "timer", "keys", "finished")

    def __init__(self, session: "KafkaSession", request: Request, slot: _Slot) -> None:
        self.session = session
        self.request = request
        self.slot = slot
        self.timer: asyncio.TimerHandle | None = None
        self.keys: list[tuple[str, int]] = []
        self.finished = False

    def wake(self) -> None:
        if self.finished:
            return
        body = self.request.body
        session = self.session
        if body.isolation_level == 1 and not session.closed:
            # read_committed: an append of open-transaction data does not move the LSO; keep waiting until
            # a marker (or the timer) makes min_bytes available. A vanished topic ends the wait.
            topics = session.broker.topics
            if all(key[0] in topics for key in self.keys):
                response, total = session._fetch_body(body)
                if total < body.min_bytes:
                    waiters = session.broker.waiters
                    for key in self.keys:
                        waiters.setdefault(key, set()).add(self)
                    return
                self.cancel()
                session.complete(self.slot, session.kafka.encode_response_parts(self.request, response))
                return
        self.finish()

    def expire(self) -> None:
        if not self.finished:
            self.finish()

    def cancel(self) -> None:
        """Stop waiting: no timer, no longer in the partitions' waiter sets."""
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        waiters = self.session.broker.waiters
        for key in self.keys:
            s = waiters.get(key)
            if s is not None:
                s.discard(self)

    def finish(self) -> None:
        self.cancel()
        session = self.session
        if not session.closed:
            body, _ = session._fetch_body(self.request.body)
            session.complete(self.slot, session.kafka.encode_response_parts(self.request, body))


class KafkaSession:
    """One Kafka client connection."""

    def __init__(self, conn: "Connection", server: "BrokerServer") -> None:
        self.conn = conn
        self.server = server
        self.broker = KafkaBroker.of(server)
        self.kafka = KafkaConnection(max_request_size=server.settings.limits.max_frame_bytes, versions=VERSIONS)
        self._pending: list[_Slot] = []
        self._fetches: list[_PendingFetch] = []
        self.closed = False
        #: Requests waiting for an earlier non-data request of this connection to be answered (_admit).
        self._deferred: list[Request] | None = None
        self._draining = False
        self._handling = M.PRODUCE  # api key of the request being handled (slot() reads it)
        #: SASL exchange in progress (kafka_sasl.SaslState) until authenticated; None = no auth needed/done.
        self.sasl = kafka_sasl.new_state(self)

    # -- input -----------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.sasl is not None and self.sasl.raw:  # after SaslHandshake v0: raw SASL tokens, no framing
            data = self.sasl.raw_received(self, data)
            if not data or self.closed:
                return
        self.kafka.receive_data(data)
        for req in self.kafka.events():
            if isinstance(req, KafkaProtocolError):  # Kafka closes the connection without an answer
                self._close_after_pending()
                return
            self._admit(req)

    def _admit(self, req: Request) -> None:
        """Handle ``req`` now, or queue it behind the connection's unanswered non-data requests.

        Kafka handles one request per connection at a time (its socket server mutes the channel until the
        response is sent), so what a request does is visible to every later request of that connection:
        a JoinGroup sent after an OffsetCommit runs once that commit is durable and visible to OffsetFetch,
        so the partition's next owner starts where the old one committed. Omnibus keeps Produce and Fetch
        pipelined (PIPELINED) and makes every other request wait while a non-data request of its
        connection is unanswered; requests that follow a waiting one wait too, so order is kept."""
        if self._deferred is not None:
            self._deferred.append(req)
        elif self._barrier_pending():
            self._deferred = [req]
        else:
            self._handle(req)

    def _barrier_pending(self) -> bool:
        for s in self._pending:
            if s.barrier and not s.done:
                return True
        return False

    def _drain(self) -> None:
        """Handle the deferred requests, in order, while no non-data request is unanswered."""
        self._draining = True
        try:
            deferred = self._deferred
            while deferred and not self.closed and not self._barrier_pending():
                self._handle(deferred.pop(0))
            if not deferred:
                self._deferred = None
        finally:
            self._draining = False

    def _handle(self, req: Request) -> None:
        key = req.api_key
        self._handling = key
        if self.sasl is not None and key not in kafka_sasl.PRE_AUTH_APIS:
            self._close_after_pending()  # Kafka: unexpected request during SASL handshake closes
            return
        if key == M.API_VERSIONS:
            if req.error_code:
                self.respond(req, None, raw=self.kafka.encode_unsupported_version(req))
            else:
                self.respond(req, self._api_versions())
        elif key == M.METADATA:
            self.respond(req, self._metadata(req.body, req.api_version))
        elif key == M.PRODUCE:
            self._produce(req)
        elif key == M.FETCH:
            self._fetch(req)
        elif key == M.LIST_OFFSETS:
            self.respond(req, self._list_offsets(req.body))
        elif key == M.CREATE_TOPICS:
            self.respond(req, self._create_topics(req.body))
        elif key == M.INIT_PRODUCER_ID:
            self.respond(req, self._init_producer_id(req))
        else:
            fn = HANDLERS.get(key)
            if fn is None:  # the codec only lets advertised APIs through
                self._close_after_pending()
            else:
                fn(self, req)

    # -- ordered responses -----------------------------------------------------------------------------
    def slot(self) -> _Slot:
        """A place in the response order, for an answer given later with :meth:`complete`."""
        slot = _Slot(self._handling not in PIPELINED)
        self._pending.append(slot)
        return slot

    def respond(self, req: Request, body: Any, raw: bytes | None = None) -> None:
        """Answer ``req`` with the response ``body`` (in request order)."""
        slot = self.slot()
        self.complete(slot, [raw] if raw is not None else self.kafka.encode_response_parts(req, body))

    def complete(self, slot: _Slot, parts: list | None) -> None:
        """Fill ``slot`` with encoded response parts and write every completed slot at the head."""
        slot.parts = parts
        slot.done = True
        pending = self._pending
        conn = self.conn
        while pending and pending[0].done:
            head = pending.pop(0)
            for part in head.parts or ():
                if isinstance(part, (bytes, bytearray, memoryview)):
                    conn.write(part)
                else:
                    conn.write_regions([part])
        if self._deferred is not None and not self._draining and slot.barrier:
            self._drain()

    def _close_after_pending(self) -> None:
        self.closed = True
        for f in self._fetches:
            f.cancel()
        self.conn.close()

    # -- APIs ------------------------------------------------------------------------------------------
    def _api_versions(self) -> Any:
        R = M.ApiVersionsResponse
        return R(error_code=0, api_keys=[R.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                                         for k, (lo, hi) in sorted(VERSIONS.items())], throttle_time_ms=0)

    def _address(self) -> tuple[str, int]:
        return self.server.listeners.get("kafka", (self.server.settings.host, self.server.settings.kafka_port))

    def _metadata(self, body: Any, version: int) -> Any:
        R = M.MetadataResponse
        broker = self.broker
        host, port = self._address()
        if body.topics is None:  # all topics
            names = list(broker.topics)
        else:
            names = [t.name for t in body.topics]
        # Metadata v0-v3 have no allow flag: they always auto-create, as Kafka did.
        allow = body.allow_auto_topic_creation if version >= 4 else True
        topics = []
        for name in names:
            topic = broker.topics.get(name)
            if topic is None and allow and valid_topic_name(name or ""):
                topic = broker.create_topic(name, DEFAULT_PARTITIONS)
            if topic is None:
                code = E.INVALID_TOPIC_EXCEPTION if not valid_topic_name(name or "") else E.UNKNOWN_TOPIC_OR_PARTITION
                topics.append(R.MetadataResponseTopic(error_code=code, name=name, partitions=[]))
                continue
            parts = [R.MetadataResponsePartition(error_code=0, partition_index=i, leader_id=NODE_ID, leader_epoch=0,
                                                 replica_nodes=[NODE_ID], isr_nodes=[NODE_ID], offline_replicas=[])
                     for i in range(len(topic))]
            topics.append(R.MetadataResponseTopic(error_code=0, name=name, topic_id=topic.topic_id.bytes,
                                                  is_internal=False, partitions=parts))
        return R(throttle_time_ms=0, brokers=[R.MetadataResponseBroker(node_id=NODE_ID, host=host, port=port)],
                 cluster_id=CLUSTER_ID, controller_id=NODE_ID, topics=topics)

    def _produce(self, req: Request) -> None:
        body = req.body
        R = M.ProduceResponse
        acks = body.acks
        broker = self.broker
        responses = []
        waits: list[tuple[Any, int]] = []
        for td in body.topic_data:
            topic = broker.topics.get(td.name)
            parts = []
            for pd in td.partition_data:
                code, base, start = 0, -1, -1
                if acks not in (0, 1, -1):
                    code = E.INVALID_REQUIRED_ACKS
                elif topic is None or not 0 <= pd.index < len(topic):
                    code = E.UNKNOWN_TOPIC_OR_PARTITION
                elif pd.records is None:
                    code = E.CORRUPT_MESSAGE
                elif (shape := _one_batch(pd.records, req.api_version)) < 0:
                    code = -shape
                else:
                    log = topic.partition(pd.index)
                    records = pd.records if shape == len(pd.records) else pd.records[:shape]
                    try:
                        h = read_header(records)
                    except StorageError:
                        h = None
                        code = E.CORRUPT_MESSAGE
                    state = None
                    if h is not None and h.producer_id >= 0:
                        state, code, dup = self._check_sequence(td.name, pd.index, log, h)
                        if dup is not None:  # a retried batch already appended: its original offsets
                            base, start = dup[0], log.start_offset
                            waits.append((log, dup[1]))
                            parts.append(R.PartitionProduceResponse(index=pd.index, error_code=0, base_offset=base,
                                                                    log_append_time_ms=-1, log_start_offset=start))
                            continue
                    elif h is not None and h.attributes & CONTROL_BIT:
                        code = E.INVALID_RECORD  # Kafka: control records are not appended by clients
                    if code:
                        parts.append(R.PartitionProduceResponse(index=pd.index, error_code=code, base_offset=base,
                                                                log_append_time_ms=-1, log_start_offset=start))
                        continue
                    cfg = topic.config.configs
                    if cfg and (refusal := _topic_refusal(cfg, acks, records, td.name, pd.index)) is not None:
                        # Kafka: acks=all below min.insync.replicas; keyless records on a compacted topic
                        parts.append(R.PartitionProduceResponse(
                            index=pd.index, error_code=refusal[0], base_offset=-1, log_append_time_ms=-1,
                            log_start_offset=-1, error_message=refusal[1],
                            record_errors=[R.BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=m)
                                           for i, m in refusal[2]]))
                        continue
                    if log.config.segment_bytes < shape <= log.config.max_batch_bytes:
                        # Kafka UnifiedLog.append: a batch no segment can hold (RecordBatchTooLargeException)
                        parts.append(R.PartitionProduceResponse(index=pd.index, error_code=E.RECORD_LIST_TOO_LARGE,
                                                                base_offset=-1, log_append_time_ms=-1,
                                                                log_start_offset=-1))
                        continue
                    try:
                        result = log.append(records)
                    except RecordTooLargeError:
                        code = E.MESSAGE_TOO_LARGE
                    except StorageError:  # bad CRC, magic, sizes
                        code = E.CORRUPT_MESSAGE
                    else:
                        base, start = result.base_offset, log.start_offset
                        waits.append((log, result.last_offset))
                        if state is not None:
                            state.record(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta, base,
                                         bool(h.attributes & TRANSACTIONAL_BIT))
                        broker.appended(td.name, pd.index)
                parts.append(R.PartitionProduceResponse(index=pd.index, error_code=code, base_offset=base,
                                                        log_append_time_ms=-1, log_start_offset=start))
            responses.append(R.TopicProduceResponse(name=td.name, partition_responses=parts))
        if acks == 0:
            return  # Kafka sends no response for acks=0
        slot = self.slot()
        response = R(responses=responses, throttle_time_ms=0)
        if not waits:
            self.complete(slot, self.kafka.encode_response_parts(req, response))
            return
        remaining = [len(waits)]

        def durable() -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and not self.closed:
                self.complete(slot, self.kafka.encode_response_parts(req, response))

        for log, offset in waits:
            log.when_durable(offset, durable)

    # -- idempotent producer (KIP-98): per (partition, producer) state in core.transactions ------------
    def _check_sequence(self, topic: str, partition: int, log: Any, h: Any) -> tuple[Any, int, Any]:
        """(partition producer state, error code, (base, last) offsets of a duplicate) for a batch with a
        producer id, as Kafka's ProducerStateManager checks it: a retry of one of the last five batches is a
        duplicate answered with its offsets, an older epoch is INVALID_PRODUCER_EPOCH, a gap is
        OUT_OF_ORDER_SEQUENCE_NUMBER, a transactional batch to a partition outside the producer's open
        transaction is INVALID_TXN_STATE (Kafka 3.6+ verification)."""
        svc = kafka_txn.service(self.broker)
        state = svc.state(log)
        transactional = bool(h.attributes & TRANSACTIONAL_BIT)
        outcome, dup = state.check(h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta,
                                   transactional)
        if outcome == "duplicate":
            return state, 0, dup
        if outcome != "ok":
            return state, _PRODUCE_CODES[outcome], None
        if transactional and not svc.coordinator.partition_in_txn(h.producer_id, h.producer_epoch,
                                                                  (topic, partition)):
            return state, E.INVALID_TXN_STATE, None
        return state, 0, None

    def _init_producer_id(self, req: Request) -> Any:
        return kafka_txn.init_producer_id(self, req)

    def _fetch_body(self, body: Any) -> tuple[Any, int]:
        """The Fetch response for ``body`` as things stand now, and how many record bytes it carries."""
        R = M.FetchResponse
        broker = self.broker
        budget = body.max_bytes if body.max_bytes > 0 else 1 << 62
        total = 0
        out = []
        txn = kafka_txn.service(broker)
        committed = body.isolation_level == 1
        A = R.AbortedTransaction
        for ft in body.topics:
            topic = broker.topics.get(ft.topic)
            parts = []
            for fp in ft.partitions:
                if topic is None or not 0 <= fp.partition < len(topic):
                    parts.append(R.PartitionData(partition_index=fp.partition, error_code=E.UNKNOWN_TOPIC_OR_PARTITION,
                                                 high_watermark=-1, last_stable_offset=-1, log_start_offset=-1,
                                                 records=b""))
                    continue
                # Error partitions carry empty records, not null, as Kafka's (librdkafka rejects a null set).
                log = topic.partition(fp.partition)
                start, end = log.start_offset, log.end_offset
                if not start <= fp.fetch_offset <= end:
                    parts.append(R.PartitionData(partition_index=fp.partition, error_code=E.OFFSET_OUT_OF_RANGE,
                                                 high_watermark=end, last_stable_offset=end, log_start_offset=start,
                                                 records=b""))
                    continue
                records: list = []
                # Last stable offset (KIP-98): read_committed sees only what lies below it.
                lso = txn.state(log).lso(end)
                upto = lso if committed else end
                aborted = []
                limit = min(fp.partition_max_bytes, budget - total)
                if fp.fetch_offset < upto and (limit > 0 or total == 0):
                    regions = log.read(fp.fetch_offset, max(limit, 1), below=upto if upto < end else None)
                    records = [Region(r.fd, r.position, r.size) for r in regions]
                    total += sum(r.size for r in regions)
                    if committed:
                        aborted = [A(producer_id=pid, first_offset=first)
                                   for pid, first in txn.state(log).aborted_between(fp.fetch_offset, upto)]
                parts.append(R.PartitionData(partition_index=fp.partition, error_code=0, high_watermark=end,
                                             last_stable_offset=lso, log_start_offset=start,
                                             aborted_transactions=aborted, preferred_read_replica=-1,
                                             records=records or b""))
            out.append(R.FetchableTopicResponse(topic=ft.topic, partitions=parts))
        return R(throttle_time_ms=0, error_code=0, session_id=0, responses=out), total

    def _fetch(self, req: Request) -> None:
        body = req.body
        response, total = self._fetch_body(body)
        if total >= body.min_bytes or body.max_wait_ms <= 0:
            self.respond(req, response)
            return
        # Long-poll: answer on the first append to a fetched partition, or at max_wait_ms.
        slot = self.slot()
        fetch = _PendingFetch(self, req, slot)
        for ft in body.topics:
            for fp in ft.partitions:
                key = (ft.topic, fp.partition)
                fetch.keys.append(key)
                self.broker.waiters.setdefault(key, set()).add(fetch)
        fetch.timer = asyncio.get_running_loop().call_later(body.max_wait_ms / 1000, fetch.expire)
        self._fetches = [f for f in self._fetches if not f.finished]
        self._fetches.append(fetch)

    def _list_offsets(self, body: Any) -> Any:
        R = M.ListOffsetsResponse
        out = []
        for t in body.topics:
            topic = self.broker.topics.get(t.name)
            parts = []
            for p in t.partitions:
                if topic is None or not 0 <= p.partition_index < len(topic):
                    parts.append(R.ListOffsetsPartitionResponse(partition_index=p.partition_index,
                                                                error_code=E.UNKNOWN_TOPIC_OR_PARTITION,
                                                                timestamp=-1, offset=-1))
                    continue
                log = topic.partition(p.partition_index)
                if p.timestamp == EARLIEST:
                    offset = log.start_offset
                elif p.timestamp == LATEST:  # read_committed (v2+): the last stable offset (KIP-98)
                    offset = log.end_offset
                    if getattr(body, "isolation_level", 0) == 1:
                        offset = kafka_txn.service(self.broker).state(log).lso(offset)
                else:
                    found = log.offset_for_timestamp(p.timestamp)
                    offset = found if found is not None else -1
                parts.append(R.ListOffsetsPartitionResponse(partition_index=p.partition_index, error_code=0,
                                                            timestamp=-1, offset=offset, leader_epoch=0,
                                                            old_style_offsets=[offset]))
            out.append(R.ListOffsetsTopicResponse(name=t.name, partitions=parts))
        return R(throttle_time_ms=0, topics=out)

    def _create_topics(self, body: Any) -> Any:
        R = M.CreateTopicsResponse
        out = []
        for t in body.topics:
            n = t.num_partitions if t.num_partitions != -1 else DEFAULT_PARTITIONS
            code, message = 0, None
            if not valid_topic_name(t.name):
                code, message = E.INVALID_TOPIC_EXCEPTION, f"Topic name '{t.name}' is illegal"
            elif t.name in self.broker.topics:
                code, message = E.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists."
            elif n < 1:
                code, message = E.INVALID_PARTITIONS, "Number of partitions must be larger than 0."
            elif t.replication_factor not in (-1, 1):
                code = E.INVALID_REPLICATION_FACTOR
                message = f"Unable to replicate the partition {t.replication_factor} time(s): The target " \
                          "replication factor of " f"{t.replication_factor} cannot be reached because only " \
                          "1 broker(s) are registered."
            configs: dict[str, str] = {}
            if code == 0:
                try:
                    configs = validate_topic_configs({c.name: c.value for c in t.configs})
                except InvalidTopicConfig as e:
                    code, message = E.INVALID_CONFIG, str(e)
            topic = None
            if code == 0 and not body.validate_only:
                topic = self.broker.create_topic(t.name, n, configs)
            out.append(R.CreatableTopicResult(name=t.name, topic_id=topic.topic_id.bytes if topic else bytes(16),
                                              error_code=code, error_message=message,
                                              num_partitions=n if code == 0 else -1,
                                              replication_factor=1 if code == 0 else -1,
                                              configs=kafka_admin.created_topic_configs(self.server, configs)
                                              if code == 0 else []))
        return R(throttle_time_ms=0, topics=out)

    # -- teardown --------------------------------------------------------------------------------------
    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for f in self._fetches:
            f.cancel()

    def shutdown(self) -> None:
        self._close_after_pending()

    @staticmethod
    def server_started(server: "BrokerServer") -> None:
        """At broker start (app._warm_sessions): open the Kafka state now, not at the first Kafka
        connection, so restored topics get retention and compaction without a client."""
        KafkaBroker.of(server)


# Feature modules register their APIs with ``handler`` on import (imported last: they import this module).
from omnibus.server import kafka_admin, kafka_groups, kafka_sasl, kafka_txn  # noqa: E402,F401
