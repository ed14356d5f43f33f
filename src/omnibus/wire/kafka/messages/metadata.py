"""Metadata (key 3): brokers, controller, cluster id, and topics with their partitions.

Versions 0-12 (Kafka's MetadataRequest.json/MetadataResponse.json): v1 adds rack, controller and
is_internal, and a null topic list meaning "all topics" (in v0 an empty list means all); v2 cluster id;
v3 throttle time; v4 allow_auto_topic_creation (librdkafka consumers send false); v5 offline replicas;
v7 leader epoch; v8 authorized operations (cluster ones until v10); v9 flexible; v10 topic ids; v12
topic name nullable (lookup by id).
"""

from __future__ import annotations

from omnibus.wire.kafka.types import BOOL, INT16, INT32, REQUEST, RESPONSE, STRING, UUID, Array, F, Struct, message

__all__ = ["API_KEY", "MetadataRequest", "MetadataResponse"]

API_KEY = 3

#: ``*_authorized_operations`` value meaning "not requested" (Integer.MIN_VALUE in Kafka).
AUTHORIZED_OPERATIONS_OMITTED = -2147483648

MetadataRequest = message("MetadataRequest", api_key=API_KEY, kind=REQUEST, versions="0-12", flexible="9+", fields=[
    F("topics", Array(Struct("MetadataRequestTopic", [
        F("topic_id", UUID, "10+"),
        F("name", STRING, nullable="10+"),
    ])), nullable="1+", default=[]),
    F("allow_auto_topic_creation", BOOL, "4+", default=True),
    F("include_cluster_authorized_operations", BOOL, "8-10"),
    F("include_topic_authorized_operations", BOOL, "8+"),
])

MetadataResponse = message("MetadataResponse", api_key=API_KEY, kind=RESPONSE, versions="0-12", flexible="9+", fields=[
    F("throttle_time_ms", INT32, "3+"),
    F("brokers", Array(Struct("MetadataResponseBroker", [
        F("node_id", INT32),
        F("host", STRING),
        F("port", INT32),
        F("rack", STRING, "1+", nullable="1+", default=None),
    ]))),
    F("cluster_id", STRING, "2+", nullable="2+", default=None),
    F("controller_id", INT32, "1+", default=-1),
    F("topics", Array(Struct("MetadataResponseTopic", [
        F("error_code", INT16),
        F("name", STRING, nullable="12+", default=""),
        F("topic_id", UUID, "10+"),
        F("is_internal", BOOL, "1+", default=False),
        F("partitions", Array(Struct("MetadataResponsePartition", [
            F("error_code", INT16),
            F("partition_index", INT32),
            F("leader_id", INT32),
            F("leader_epoch", INT32, "7+", default=-1),
            F("replica_nodes", Array(INT32)),
            F("isr_nodes", Array(INT32)),
            F("offline_replicas", Array(INT32), "5+"),
        ]))),
        F("topic_authorized_operations", INT32, "8+", default=AUTHORIZED_OPERATIONS_OMITTED),
    ]))),
    F("cluster_authorized_operations", INT32, "8-10", default=AUTHORIZED_OPERATIONS_OMITTED),
])
