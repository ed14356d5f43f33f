"""Produce (key 0): record batches for partitions, and per-partition base offsets or errors.

Versions 0-11 (Kafka's ProduceRequest.json/ProduceResponse.json): v2 log append time; v3 transactional id
and record batch v2 only (KIP-98); v5 log start offset; v8 per-record errors (KIP-467); v9 flexible;
v10 current leader and node endpoints as tagged fields (KIP-951); v11 TRANSACTION_ABORTABLE (KIP-890).

``records`` is opaque here: a ``memoryview`` of the batch bytes as the client sent them (possibly several
batches, possibly null); the session validates the batch headers. acks=0 requests get no response at all
(the session must not call encode_response for them).
"""

from __future__ import annotations

from omnibus.wire.kafka.types import (INT16, INT32, INT64, RECORDS, REQUEST, RESPONSE, STRING, Array, F, Struct,
                                      message)

__all__ = ["API_KEY", "ProduceRequest", "ProduceResponse", "LeaderIdAndEpoch", "NodeEndpoint"]

API_KEY = 0

ProduceRequest = message("ProduceRequest", api_key=API_KEY, kind=REQUEST, versions="0-11", flexible="9+", fields=[
    F("transactional_id", STRING, "3+", nullable="3+", default=None),
    F("acks", INT16),
    F("timeout_ms", INT32),
    F("topic_data", Array(Struct("TopicProduceData", [
        F("name", STRING),
        F("partition_data", Array(Struct("PartitionProduceData", [
            F("index", INT32),
            F("records", RECORDS, nullable="0+"),
        ]))),
    ]))),
])

LeaderIdAndEpoch = Struct("LeaderIdAndEpoch", [
    F("leader_id", INT32, default=-1),
    F("leader_epoch", INT32, default=-1),
])

NodeEndpoint = Struct("NodeEndpoint", [
    F("node_id", INT32),
    F("host", STRING),
    F("port", INT32),
    F("rack", STRING, nullable="0+", default=None),
])

ProduceResponse = message("ProduceResponse", api_key=API_KEY, kind=RESPONSE, versions="0-11", flexible="9+", fields=[
    F("responses", Array(Struct("TopicProduceResponse", [
        F("name", STRING),
        F("partition_responses", Array(Struct("PartitionProduceResponse", [
            F("index", INT32),
            F("error_code", INT16),
            F("base_offset", INT64),
            F("log_append_time_ms", INT64, "2+", default=-1),
            F("log_start_offset", INT64, "5+", default=-1),
            F("record_errors", Array(Struct("BatchIndexAndErrorMessage", [
                F("batch_index", INT32),
                F("batch_index_error_message", STRING, nullable="0+", default=None),
            ])), "8+"),
            F("error_message", STRING, "8+", nullable="8+", default=None),
            F("current_leader", LeaderIdAndEpoch, "10+", tag=0),
        ]))),
    ]))),
    F("throttle_time_ms", INT32, "1+", default=0),
    F("node_endpoints", Array(NodeEndpoint), "10+", tag=0),
])
