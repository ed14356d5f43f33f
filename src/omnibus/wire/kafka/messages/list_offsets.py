"""ListOffsets (key 2): the offset for a timestamp, or the earliest/latest offset, per partition.

Versions 0-10 (Kafka's ListOffsetsRequest.json/ListOffsetsResponse.json): v0 returns a list of old-style
offsets (max_num_offsets); v1 a single timestamp/offset; v2 isolation level; v4 leader epochs; v6
flexible; v7 max timestamp (KIP-734); v8 earliest local (KIP-405); v9 latest tiered (KIP-1005); v10
timeout_ms (KIP-1075).
"""

from __future__ import annotations

from omnibus.wire.kafka.types import INT8, INT16, INT32, INT64, REQUEST, RESPONSE, STRING, Array, F, Struct, message

__all__ = ["API_KEY", "ListOffsetsRequest", "ListOffsetsResponse", "LATEST_TIMESTAMP", "EARLIEST_TIMESTAMP",
           "MAX_TIMESTAMP", "EARLIEST_LOCAL_TIMESTAMP", "LATEST_TIERED_TIMESTAMP"]

API_KEY = 2

# Special ``timestamp`` values of a ListOffsets partition (ListOffsetsRequest.java).
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3  # v7+
EARLIEST_LOCAL_TIMESTAMP = -4  # v8+
LATEST_TIERED_TIMESTAMP = -5  # v9+

ListOffsetsRequest = message("ListOffsetsRequest", api_key=API_KEY, kind=REQUEST, versions="0-10", flexible="6+",
                             fields=[
    F("replica_id", INT32),
    F("isolation_level", INT8, "2+"),
    F("topics", Array(Struct("ListOffsetsTopic", [
        F("name", STRING),
        F("partitions", Array(Struct("ListOffsetsPartition", [
            F("partition_index", INT32),
            F("current_leader_epoch", INT32, "4+", default=-1),
            F("timestamp", INT64),
            F("max_num_offsets", INT32, "0", default=1),
        ]))),
    ]))),
    F("timeout_ms", INT32, "10+"),
])

ListOffsetsResponse = message("ListOffsetsResponse", api_key=API_KEY, kind=RESPONSE, versions="0-10", flexible="6+",
                              fields=[
    F("throttle_time_ms", INT32, "2+"),
    F("topics", Array(Struct("ListOffsetsTopicResponse", [
        F("name", STRING),
        F("partitions", Array(Struct("ListOffsetsPartitionResponse", [
            F("partition_index", INT32),
            F("error_code", INT16),
            F("old_style_offsets", Array(INT64), "0"),
            F("timestamp", INT64, "1+", default=-1),
            F("offset", INT64, "1+", default=-1),
            F("leader_epoch", INT32, "4+", default=-1),
        ]))),
    ]))),
])
