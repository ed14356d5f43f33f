"""Fetch (key 1): records from partitions at offsets, long-polled by min_bytes/max_wait_ms.

Versions 0-17 (Kafka's FetchRequest.json/FetchResponse.json): v3 max_bytes; v4 isolation level, last
stable offset and aborted transactions (KIP-98); v5 log start offset; v7 fetch sessions (KIP-227); v9
current leader epoch; v11 rack id and preferred read replica (KIP-392); v12 flexible, diverging epoch,
current leader and snapshot id as tagged fields; v13 topic ids instead of names; v15 replica state
(KIP-903); v16 node endpoints (KIP-951); v17 replica directory id (KIP-853).

Encoding the response for the session: ``PartitionData.records`` may be bytes, a
:class:`~omnibus.wire.kafka.types.FileRegion` (any object with ``__len__``), or a list of such chunks (a
fetch across segment files); ``KafkaConnection.encode_response_parts`` then returns the response as a list
whose regions stand alone after their length prefix, ready for ``sendfile``.
"""

from __future__ import annotations

from omnibus.wire.kafka.types import (INT8, INT16, INT32, INT64, RECORDS, REQUEST, RESPONSE, STRING, UUID, Array, F,
                                      Struct, message)
from omnibus.wire.kafka.messages.produce import LeaderIdAndEpoch, NodeEndpoint

__all__ = ["API_KEY", "FetchRequest", "FetchResponse", "READ_UNCOMMITTED", "READ_COMMITTED"]

API_KEY = 1
READ_UNCOMMITTED = 0
READ_COMMITTED = 1

FetchRequest = message("FetchRequest", api_key=API_KEY, kind=REQUEST, versions="0-17", flexible="12+", fields=[
    F("cluster_id", STRING, "12+", nullable="12+", tag=0, default=None),
    F("replica_id", INT32, "0-14", default=-1),
    F("replica_state", Struct("ReplicaState", [
        F("replica_id", INT32, default=-1),
        F("replica_epoch", INT64, default=-1),
    ]), "15+", tag=1),
    F("max_wait_ms", INT32),
    F("min_bytes", INT32),
    F("max_bytes", INT32, "3+", default=0x7FFFFFFF),
    F("isolation_level", INT8, "4+", default=READ_UNCOMMITTED),
    F("session_id", INT32, "7+", default=0),
    F("session_epoch", INT32, "7+", default=-1),
    F("topics", Array(Struct("FetchTopic", [
        F("topic", STRING, "0-12"),
        F("topic_id", UUID, "13+"),
        F("partitions", Array(Struct("FetchPartition", [
            F("partition", INT32),
            F("current_leader_epoch", INT32, "9+", default=-1),
            F("fetch_offset", INT64),
            F("last_fetched_epoch", INT32, "12+", default=-1),
            F("log_start_offset", INT64, "5+", default=-1),
            F("partition_max_bytes", INT32),
            F("replica_directory_id", UUID, "17+", tag=0),
        ]))),
    ]))),
    F("forgotten_topics_data", Array(Struct("ForgottenTopic", [
        F("topic", STRING, "7-12"),
        F("topic_id", UUID, "13+"),
        F("partitions", Array(INT32), "7+"),
    ])), "7+"),
    F("rack_id", STRING, "11+", default=""),
])

FetchResponse = message("FetchResponse", api_key=API_KEY, kind=RESPONSE, versions="0-17", flexible="12+", fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("error_code", INT16, "7+"),
    F("session_id", INT32, "7+", default=0),
    F("responses", Array(Struct("FetchableTopicResponse", [
        F("topic", STRING, "0-12"),
        F("topic_id", UUID, "13+"),
        F("partitions", Array(Struct("PartitionData", [
            F("partition_index", INT32),
            F("error_code", INT16),
            F("high_watermark", INT64),
            F("last_stable_offset", INT64, "4+", default=-1),
            F("log_start_offset", INT64, "5+", default=-1),
            F("diverging_epoch", Struct("EpochEndOffset", [
                F("epoch", INT32, default=-1),
                F("end_offset", INT64, default=-1),
            ]), "12+", tag=0),
            F("current_leader", LeaderIdAndEpoch, "12+", tag=1),
            F("snapshot_id", Struct("SnapshotId", [
                F("end_offset", INT64, default=-1),
                F("epoch", INT32, default=-1),
            ]), "12+", tag=2),
            F("aborted_transactions", Array(Struct("AbortedTransaction", [
                F("producer_id", INT64),
                F("first_offset", INT64),
            ])), "4+", nullable="4+"),
            F("preferred_read_replica", INT32, "11+", default=-1),
            F("records", RECORDS, nullable="0+"),
        ]))),
    ]))),
    F("node_endpoints", Array(NodeEndpoint), "16+", tag=0),
])
