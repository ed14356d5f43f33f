"""Idempotent and transactional producers: InitProducerId (22), AddPartitionsToTxn (24),
AddOffsetsToTxn (25), EndTxn (26), TxnOffsetCommit (28).

Schemas as Kafka's *Request.json/*Response.json. InitProducerId v2 flexible, v3 producer id/epoch in the
request (KIP-360; kafkajs 2.2.4 sends only v0/v1, which have no such fields), v4 PRODUCER_FENCED, v5
TRANSACTION_ABORTABLE. AddPartitionsToTxn v4 batches transactions (brokers only, KIP-890); clients use
v0-3's single transaction. EndTxn stops at v4: v5 was still unstable in Kafka 3.9 (KIP-890 part 2).
"""

from __future__ import annotations

from omnibus.wire.kafka.types import BOOL, INT16, INT32, INT64, REQUEST, RESPONSE, STRING, Array, F, Struct, message

__all__ = [
    "InitProducerIdRequest", "InitProducerIdResponse", "AddPartitionsToTxnRequest", "AddPartitionsToTxnResponse",
    "AddOffsetsToTxnRequest", "AddOffsetsToTxnResponse", "EndTxnRequest", "EndTxnResponse",
    "TxnOffsetCommitRequest", "TxnOffsetCommitResponse",
]

InitProducerIdRequest = message("InitProducerIdRequest", api_key=22, kind=REQUEST, versions="0-5", flexible="2+",
                                fields=[
    F("transactional_id", STRING, nullable="0+"),
    F("transaction_timeout_ms", INT32),
    F("producer_id", INT64, "3+", default=-1),
    F("producer_epoch", INT16, "3+", default=-1),
])

InitProducerIdResponse = message("InitProducerIdResponse", api_key=22, kind=RESPONSE, versions="0-5", flexible="2+",
                                 fields=[
    F("throttle_time_ms", INT32),
    F("error_code", INT16),
    F("producer_id", INT64, default=-1),
    F("producer_epoch", INT16),
])

_AddPartitionsToTxnTopic = Struct("AddPartitionsToTxnTopic", [
    F("name", STRING),
    F("partitions", Array(INT32)),
])

AddPartitionsToTxnRequest = message("AddPartitionsToTxnRequest", api_key=24, kind=REQUEST, versions="0-5",
                                    flexible="3+", fields=[
    F("transactions", Array(Struct("AddPartitionsToTxnTransaction", [
        F("transactional_id", STRING),
        F("producer_id", INT64),
        F("producer_epoch", INT16),
        F("verify_only", BOOL, default=False),
        F("topics", Array(_AddPartitionsToTxnTopic)),
    ])), "4+"),
    F("v3_and_below_transactional_id", STRING, "0-3"),
    F("v3_and_below_producer_id", INT64, "0-3"),
    F("v3_and_below_producer_epoch", INT16, "0-3"),
    F("v3_and_below_topics", Array(_AddPartitionsToTxnTopic), "0-3"),
])

_AddPartitionsToTxnTopicResult = Struct("AddPartitionsToTxnTopicResult", [
    F("name", STRING),
    F("results_by_partition", Array(Struct("AddPartitionsToTxnPartitionResult", [
        F("partition_index", INT32),
        F("partition_error_code", INT16),
    ]))),
])

AddPartitionsToTxnResponse = message("AddPartitionsToTxnResponse", api_key=24, kind=RESPONSE, versions="0-5",
                                     flexible="3+", fields=[
    F("throttle_time_ms", INT32),
    F("error_code", INT16, "4+"),
    F("results_by_transaction", Array(Struct("AddPartitionsToTxnResult", [
        F("transactional_id", STRING),
        F("topic_results", Array(_AddPartitionsToTxnTopicResult)),
    ])), "4+"),
    F("results_by_topic_v3_and_below", Array(_AddPartitionsToTxnTopicResult), "0-3"),
])

AddOffsetsToTxnRequest = message("AddOffsetsToTxnRequest", api_key=25, kind=REQUEST, versions="0-4", flexible="3+",
                                 fields=[
    F("transactional_id", STRING),
    F("producer_id", INT64),
    F("producer_epoch", INT16),
    F("group_id", STRING),
])

AddOffsetsToTxnResponse = message("AddOffsetsToTxnResponse", api_key=25, kind=RESPONSE, versions="0-4", flexible="3+",
                                  fields=[
    F("throttle_time_ms", INT32),
    F("error_code", INT16),
])

EndTxnRequest = message("EndTxnRequest", api_key=26, kind=REQUEST, versions="0-4", flexible="3+", fields=[
    F("transactional_id", STRING),
    F("producer_id", INT64),
    F("producer_epoch", INT16),
    F("committed", BOOL),
])

EndTxnResponse = message("EndTxnResponse", api_key=26, kind=RESPONSE, versions="0-4", flexible="3+", fields=[
    F("throttle_time_ms", INT32),
    F("error_code", INT16),
])

TxnOffsetCommitRequest = message("TxnOffsetCommitRequest", api_key=28, kind=REQUEST, versions="0-4", flexible="3+",
                                 fields=[
    F("transactional_id", STRING),
    F("group_id", STRING),
    F("producer_id", INT64),
    F("producer_epoch", INT16),
    F("generation_id", INT32, "3+", default=-1),
    F("member_id", STRING, "3+", default=""),
    F("group_instance_id", STRING, "3+", nullable="3+", default=None),
    F("topics", Array(Struct("TxnOffsetCommitRequestTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("TxnOffsetCommitRequestPartition", [
            F("partition_index", INT32),
            F("committed_offset", INT64),
            F("committed_leader_epoch", INT32, "2+", default=-1),
            F("committed_metadata", STRING, nullable="0+"),
        ]))),
    ]))),
])

TxnOffsetCommitResponse = message("TxnOffsetCommitResponse", api_key=28, kind=RESPONSE, versions="0-4", flexible="3+",
                                  fields=[
    F("throttle_time_ms", INT32),
    F("topics", Array(Struct("TxnOffsetCommitResponseTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("TxnOffsetCommitResponsePartition", [
            F("partition_index", INT32),
            F("error_code", INT16),
        ]))),
    ]))),
])
