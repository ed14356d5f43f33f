"""Topic and config administration: CreateTopics (19), DeleteTopics (20), DeleteRecords (21),
DescribeConfigs (32), AlterConfigs (33), CreatePartitions (37), IncrementalAlterConfigs (44),
DescribeCluster (60).

Schemas as Kafka's *Request.json/*Response.json for each (versions in each ``message``): CreateTopics v1
validate_only, v5 flexible and the created topic's configs (KIP-525), v7 topic id; DeleteTopics v6 by name
or id (KIP-516); DescribeConfigs v1 synonyms, v3 type and documentation (KIP-569), v4 flexible;
DescribeCluster v1 endpoint type (KIP-919).
"""

from __future__ import annotations

from omnibus.wire.kafka.types import (BOOL, INT8, INT16, INT32, INT64, REQUEST, RESPONSE, STRING, UUID, Array, F, Struct,
                                      message)

__all__ = [
    "CreateTopicsRequest", "CreateTopicsResponse", "DeleteTopicsRequest", "DeleteTopicsResponse",
    "DeleteRecordsRequest", "DeleteRecordsResponse", "DescribeConfigsRequest", "DescribeConfigsResponse",
    "AlterConfigsRequest", "AlterConfigsResponse", "CreatePartitionsRequest", "CreatePartitionsResponse",
    "IncrementalAlterConfigsRequest", "IncrementalAlterConfigsResponse", "DescribeClusterRequest",
    "DescribeClusterResponse", "RESOURCE_TOPIC", "RESOURCE_BROKER", "RESOURCE_BROKER_LOGGER",
    "CONFIG_SOURCE_UNKNOWN", "CONFIG_SOURCE_TOPIC", "CONFIG_SOURCE_DEFAULT",
]

# ConfigResource.Type ids (DescribeConfigs/AlterConfigs resource_type).
RESOURCE_UNKNOWN = 0
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
# DescribeConfigsResponse config_source (DescribeConfigsResponse.ConfigSource).
CONFIG_SOURCE_UNKNOWN = 0
CONFIG_SOURCE_TOPIC = 1
CONFIG_SOURCE_DYNAMIC_BROKER = 2
CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER = 3
CONFIG_SOURCE_STATIC_BROKER = 4
CONFIG_SOURCE_DEFAULT = 5
# IncrementalAlterConfigs config_operation (AlterConfigOp.OpType).
OP_SET = 0
OP_DELETE = 1
OP_APPEND = 2
OP_SUBTRACT = 3

CreateTopicsRequest = message("CreateTopicsRequest", api_key=19, kind=REQUEST, versions="0-7", flexible="5+", fields=[
    F("topics", Array(Struct("CreatableTopic", [
        F("name", STRING),
        F("num_partitions", INT32),
        F("replication_factor", INT16),
        F("assignments", Array(Struct("CreatableReplicaAssignment", [
            F("partition_index", INT32),
            F("broker_ids", Array(INT32)),
        ]))),
        F("configs", Array(Struct("CreatableTopicConfig", [
            F("name", STRING),
            F("value", STRING, nullable="0+"),
        ]))),
    ]))),
    F("timeout_ms", INT32, default=60000),
    F("validate_only", BOOL, "1+", default=False),
])

CreateTopicsResponse = message("CreateTopicsResponse", api_key=19, kind=RESPONSE, versions="0-7", flexible="5+",
                               fields=[
    F("throttle_time_ms", INT32, "2+"),
    F("topics", Array(Struct("CreatableTopicResult", [
        F("name", STRING),
        F("topic_id", UUID, "7+"),
        F("error_code", INT16),
        F("error_message", STRING, "1+", nullable="0+"),
        F("topic_config_error_code", INT16, "5+", tag=0),
        F("num_partitions", INT32, "5+", default=-1),
        F("replication_factor", INT16, "5+", default=-1),
        F("configs", Array(Struct("CreatableTopicConfigs", [
            F("name", STRING),
            F("value", STRING, nullable="0+"),
            F("read_only", BOOL),
            F("config_source", INT8, default=-1),
            F("is_sensitive", BOOL),
        ])), "5+", nullable="5+"),
    ]))),
])

DeleteTopicsRequest = message("DeleteTopicsRequest", api_key=20, kind=REQUEST, versions="0-6", flexible="4+", fields=[
    F("topics", Array(Struct("DeleteTopicState", [
        F("name", STRING, nullable="0+", default=None),
        F("topic_id", UUID),
    ])), "6+"),
    F("topic_names", Array(STRING), "0-5"),
    F("timeout_ms", INT32),
])

DeleteTopicsResponse = message("DeleteTopicsResponse", api_key=20, kind=RESPONSE, versions="0-6", flexible="4+",
                               fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("responses", Array(Struct("DeletableTopicResult", [
        F("name", STRING, nullable="6+", default=""),
        F("topic_id", UUID, "6+"),
        F("error_code", INT16),
        F("error_message", STRING, "5+", nullable="5+", default=None),
    ]))),
])

DeleteRecordsRequest = message("DeleteRecordsRequest", api_key=21, kind=REQUEST, versions="0-2", flexible="2+",
                               fields=[
    F("topics", Array(Struct("DeleteRecordsTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("DeleteRecordsPartition", [
            F("partition_index", INT32),
            F("offset", INT64),
        ]))),
    ]))),
    F("timeout_ms", INT32),
])

DeleteRecordsResponse = message("DeleteRecordsResponse", api_key=21, kind=RESPONSE, versions="0-2", flexible="2+",
                                fields=[
    F("throttle_time_ms", INT32),
    F("topics", Array(Struct("DeleteRecordsTopicResult", [
        F("name", STRING),
        F("partitions", Array(Struct("DeleteRecordsPartitionResult", [
            F("partition_index", INT32),
            F("low_watermark", INT64),
            F("error_code", INT16),
        ]))),
    ]))),
])

DescribeConfigsRequest = message("DescribeConfigsRequest", api_key=32, kind=REQUEST, versions="0-4", flexible="4+",
                                 fields=[
    F("resources", Array(Struct("DescribeConfigsResource", [
        F("resource_type", INT8),
        F("resource_name", STRING),
        F("configuration_keys", Array(STRING), nullable="0+"),
    ]))),
    F("include_synonyms", BOOL, "1+", default=False),
    F("include_documentation", BOOL, "3+", default=False),
])

DescribeConfigsResponse = message("DescribeConfigsResponse", api_key=32, kind=RESPONSE, versions="0-4",
                                  flexible="4+", fields=[
    F("throttle_time_ms", INT32),
    F("results", Array(Struct("DescribeConfigsResult", [
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+"),
        F("resource_type", INT8),
        F("resource_name", STRING),
        F("configs", Array(Struct("DescribeConfigsResourceResult", [
            F("name", STRING),
            F("value", STRING, nullable="0+"),
            F("read_only", BOOL),
            F("is_default", BOOL, "0"),
            F("config_source", INT8, "1+", default=-1),
            F("is_sensitive", BOOL),
            F("synonyms", Array(Struct("DescribeConfigsSynonym", [
                F("name", STRING),
                F("value", STRING, nullable="0+"),
                F("source", INT8),
            ])), "1+"),
            F("config_type", INT8, "3+", default=0),
            F("documentation", STRING, "3+", nullable="0+"),
        ]))),
    ]))),
])

_AlterConfigsResourceResponse = Struct("AlterConfigsResourceResponse", [
    F("error_code", INT16),
    F("error_message", STRING, nullable="0+"),
    F("resource_type", INT8),
    F("resource_name", STRING),
])

AlterConfigsRequest = message("AlterConfigsRequest", api_key=33, kind=REQUEST, versions="0-2", flexible="2+", fields=[
    F("resources", Array(Struct("AlterConfigsResource", [
        F("resource_type", INT8),
        F("resource_name", STRING),
        F("configs", Array(Struct("AlterableConfig", [
            F("name", STRING),
            F("value", STRING, nullable="0+"),
        ]))),
    ]))),
    F("validate_only", BOOL),
])

AlterConfigsResponse = message("AlterConfigsResponse", api_key=33, kind=RESPONSE, versions="0-2", flexible="2+",
                               fields=[
    F("throttle_time_ms", INT32),
    F("responses", Array(_AlterConfigsResourceResponse)),
])

CreatePartitionsRequest = message("CreatePartitionsRequest", api_key=37, kind=REQUEST, versions="0-3", flexible="2+",
                                  fields=[
    F("topics", Array(Struct("CreatePartitionsTopic", [
        F("name", STRING),
        F("count", INT32),
        F("assignments", Array(Struct("CreatePartitionsAssignment", [
            F("broker_ids", Array(INT32)),
        ])), nullable="0+"),
    ]))),
    F("timeout_ms", INT32),
    F("validate_only", BOOL),
])

CreatePartitionsResponse = message("CreatePartitionsResponse", api_key=37, kind=RESPONSE, versions="0-3",
                                   flexible="2+", fields=[
    F("throttle_time_ms", INT32),
    F("results", Array(Struct("CreatePartitionsTopicResult", [
        F("name", STRING),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+", default=None),
    ]))),
])

IncrementalAlterConfigsRequest = message("IncrementalAlterConfigsRequest", api_key=44, kind=REQUEST,
                                         versions="0-1", flexible="1+", fields=[
    F("resources", Array(Struct("AlterConfigsResource", [
        F("resource_type", INT8),
        F("resource_name", STRING),
        F("configs", Array(Struct("AlterableConfig", [
            F("name", STRING),
            F("config_operation", INT8),
            F("value", STRING, nullable="0+"),
        ]))),
    ]))),
    F("validate_only", BOOL),
])

IncrementalAlterConfigsResponse = message("IncrementalAlterConfigsResponse", api_key=44, kind=RESPONSE,
                                          versions="0-1", flexible="1+", fields=[
    F("throttle_time_ms", INT32),
    F("responses", Array(_AlterConfigsResourceResponse)),
])

DescribeClusterRequest = message("DescribeClusterRequest", api_key=60, kind=REQUEST, versions="0-1", flexible="0+",
                                 fields=[
    F("include_cluster_authorized_operations", BOOL),
    F("endpoint_type", INT8, "1+", default=1),
])

DescribeClusterResponse = message("DescribeClusterResponse", api_key=60, kind=RESPONSE, versions="0-1",
                                  flexible="0+", fields=[
    F("throttle_time_ms", INT32),
    F("error_code", INT16),
    F("error_message", STRING, nullable="0+", default=None),
    F("endpoint_type", INT8, "1+", default=1),
    F("cluster_id", STRING),
    F("controller_id", INT32, default=-1),
    F("brokers", Array(Struct("DescribeClusterBroker", [
        F("broker_id", INT32),
        F("host", STRING),
        F("port", INT32),
        F("rack", STRING, nullable="0+", default=None),
    ]))),
    F("cluster_authorized_operations", INT32, default=-2147483648),
])
