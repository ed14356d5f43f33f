"""Committed consumer-group offsets: OffsetCommit (key 8) and OffsetFetch (key 9).

Schemas as Kafka's OffsetCommit*/OffsetFetch*.json. OffsetCommit: v1 generation, member and a per-partition
commit timestamp (v1 only); v2-4 retention time; v6 leader epoch; v7 group instance id; v8 flexible; v9
member epoch for the new protocol (KIP-848). OffsetFetch: v2 null topics = all, top-level error code; v5
leader epoch; v6 flexible; v7 require_stable (KIP-447); v8 batches groups (KIP-709); v9 member id/epoch.
"""

from __future__ import annotations

from omnibus.wire.kafka.types import BOOL, INT16, INT32, INT64, REQUEST, RESPONSE, STRING, Array, F, Struct, message

__all__ = ["OffsetCommitRequest", "OffsetCommitResponse", "OffsetFetchRequest", "OffsetFetchResponse"]

OffsetCommitRequest = message("OffsetCommitRequest", api_key=8, kind=REQUEST, versions="0-9", flexible="8+", fields=[
    F("group_id", STRING),
    F("generation_id_or_member_epoch", INT32, "1+", default=-1),
    F("member_id", STRING, "1+"),
    F("group_instance_id", STRING, "7+", nullable="7+", default=None),
    F("retention_time_ms", INT64, "2-4", default=-1),
    F("topics", Array(Struct("OffsetCommitRequestTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("OffsetCommitRequestPartition", [
            F("partition_index", INT32),
            F("committed_offset", INT64),
            F("committed_leader_epoch", INT32, "6+", default=-1),
            F("commit_timestamp", INT64, "1", default=-1),
            F("committed_metadata", STRING, nullable="0+"),
        ]))),
    ]))),
])

OffsetCommitResponse = message("OffsetCommitResponse", api_key=8, kind=RESPONSE, versions="0-9", flexible="8+",
                               fields=[
    F("throttle_time_ms", INT32, "3+"),
    F("topics", Array(Struct("OffsetCommitResponseTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("OffsetCommitResponsePartition", [
            F("partition_index", INT32),
            F("error_code", INT16),
        ]))),
    ]))),
])

OffsetFetchRequest = message("OffsetFetchRequest", api_key=9, kind=REQUEST, versions="0-9", flexible="6+", fields=[
    F("group_id", STRING, "0-7"),
    F("topics", Array(Struct("OffsetFetchRequestTopic", [
        F("name", STRING),
        F("partition_indexes", Array(INT32)),
    ])), "0-7", nullable="2-7", default=[]),
    F("groups", Array(Struct("OffsetFetchRequestGroup", [
        F("group_id", STRING),
        F("member_id", STRING, "9+", nullable="9+", default=None),
        F("member_epoch", INT32, "9+", default=-1),
        F("topics", Array(Struct("OffsetFetchRequestTopics", [
            F("name", STRING),
            F("partition_indexes", Array(INT32)),
        ])), nullable="8+"),
    ])), "8+"),
    F("require_stable", BOOL, "7+", default=False),
])

OffsetFetchResponse = message("OffsetFetchResponse", api_key=9, kind=RESPONSE, versions="0-9", flexible="6+",
                              fields=[
    F("throttle_time_ms", INT32, "3+"),
    F("topics", Array(Struct("OffsetFetchResponseTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("OffsetFetchResponsePartition", [
            F("partition_index", INT32),
            F("committed_offset", INT64),
            F("committed_leader_epoch", INT32, "5-7", default=-1),
            F("metadata", STRING, nullable="0-7"),
            F("error_code", INT16),
        ]))),
    ])), "0-7"),
    F("error_code", INT16, "2-7", default=0),
    F("groups", Array(Struct("OffsetFetchResponseGroup", [
        F("group_id", STRING),
        F("topics", Array(Struct("OffsetFetchResponseTopics", [
            F("name", STRING),
            F("partitions", Array(Struct("OffsetFetchResponsePartitions", [
                F("partition_index", INT32),
                F("committed_offset", INT64),
                F("committed_leader_epoch", INT32, default=-1),
                F("metadata", STRING, nullable="0+"),
                F("error_code", INT16),
            ]))),
        ]))),
        F("error_code", INT16, default=0),
    ])), "8+"),
])
