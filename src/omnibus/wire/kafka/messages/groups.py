"""The classic consumer-group protocol: FindCoordinator (10), JoinGroup (11), Heartbeat (12),
LeaveGroup (13), SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

Schemas as Kafka's *Request.json/*Response.json for each (versions in each ``message``): FindCoordinator
v4 batches keys (KIP-699); JoinGroup v4 MEMBER_ID_REQUIRED (KIP-394), v5 static membership
``group_instance_id`` (KIP-345), v7 protocol type in the response, v8 reason (KIP-800), v9 skip_assignment
(KIP-814); LeaveGroup v3 batches members (KIP-345); SyncGroup v5 protocol type/name (KIP-559).
Member metadata and assignments are opaque ``bytes`` (the consumer protocol's own encoding).
"""

from __future__ import annotations

from omnibus.wire.kafka.types import (BOOL, BYTES, INT8, INT16, INT32, REQUEST, RESPONSE, STRING, Array, F, Struct,
                                      message)

__all__ = [
    "FindCoordinatorRequest", "FindCoordinatorResponse", "JoinGroupRequest", "JoinGroupResponse",
    "HeartbeatRequest", "HeartbeatResponse", "LeaveGroupRequest", "LeaveGroupResponse", "SyncGroupRequest",
    "SyncGroupResponse", "DescribeGroupsRequest", "DescribeGroupsResponse", "ListGroupsRequest",
    "ListGroupsResponse", "DeleteGroupsRequest", "DeleteGroupsResponse", "COORDINATOR_GROUP",
    "COORDINATOR_TRANSACTION",
]

# FindCoordinator key_type (FindCoordinatorRequest.java CoordinatorType).
COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1

FindCoordinatorRequest = message("FindCoordinatorRequest", api_key=10, kind=REQUEST, versions="0-6", flexible="3+",
                                 fields=[
    F("key", STRING, "0-3"),
    F("key_type", INT8, "1+", default=COORDINATOR_GROUP),
    F("coordinator_keys", Array(STRING), "4+"),
])

FindCoordinatorResponse = message("FindCoordinatorResponse", api_key=10, kind=RESPONSE, versions="0-6",
                                  flexible="3+", fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("error_code", INT16, "0-3"),
    F("error_message", STRING, "1-3", nullable="1-3"),
    F("node_id", INT32, "0-3"),
    F("host", STRING, "0-3"),
    F("port", INT32, "0-3"),
    F("coordinators", Array(Struct("Coordinator", [
        F("key", STRING),
        F("node_id", INT32),
        F("host", STRING),
        F("port", INT32),
        F("error_code", INT16),
        F("error_message", STRING, nullable="0+"),
    ])), "4+"),
])

JoinGroupRequest = message("JoinGroupRequest", api_key=11, kind=REQUEST, versions="0-9", flexible="6+", fields=[
    F("group_id", STRING),
    F("session_timeout_ms", INT32),
    F("rebalance_timeout_ms", INT32, "1+", default=-1),
    F("member_id", STRING),
    F("group_instance_id", STRING, "5+", nullable="5+", default=None),
    F("protocol_type", STRING),
    F("protocols", Array(Struct("JoinGroupRequestProtocol", [
        F("name", STRING),
        F("metadata", BYTES),
    ]))),
    F("reason", STRING, "8+", nullable="8+", default=None),
])

JoinGroupResponse = message("JoinGroupResponse", api_key=11, kind=RESPONSE, versions="0-9", flexible="6+", fields=[
    F("throttle_time_ms", INT32, "2+"),
    F("error_code", INT16),
    F("generation_id", INT32, default=-1),
    F("protocol_type", STRING, "7+", nullable="7+", default=None),
    F("protocol_name", STRING, nullable="7+", default=""),
    F("leader", STRING),
    F("skip_assignment", BOOL, "9+", default=False),
    F("member_id", STRING),
    F("members", Array(Struct("JoinGroupResponseMember", [
        F("member_id", STRING),
        F("group_instance_id", STRING, "5+", nullable="5+", default=None),
        F("metadata", BYTES),
    ]))),
])

HeartbeatRequest = message("HeartbeatRequest", api_key=12, kind=REQUEST, versions="0-4", flexible="4+", fields=[
    F("group_id", STRING),
    F("generation_id", INT32),
    F("member_id", STRING),
    F("group_instance_id", STRING, "3+", nullable="3+", default=None),
])

HeartbeatResponse = message("HeartbeatResponse", api_key=12, kind=RESPONSE, versions="0-4", flexible="4+", fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("error_code", INT16),
])

LeaveGroupRequest = message("LeaveGroupRequest", api_key=13, kind=REQUEST, versions="0-5", flexible="4+", fields=[
    F("group_id", STRING),
    F("member_id", STRING, "0-2"),
    F("members", Array(Struct("MemberIdentity", [
        F("member_id", STRING),
        F("group_instance_id", STRING, nullable="3+", default=None),
        F("reason", STRING, "5+", nullable="5+", default=None),
    ])), "3+"),
])

LeaveGroupResponse = message("LeaveGroupResponse", api_key=13, kind=RESPONSE, versions="0-5", flexible="4+", fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("error_code", INT16),
    F("members", Array(Struct("MemberResponse", [
        F("member_id", STRING),
        F("group_instance_id", STRING, nullable="3+"),
        F("error_code", INT16),
    ])), "3+"),
])

SyncGroupRequest = message("SyncGroupRequest", api_key=14, kind=REQUEST, versions="0-5", flexible="4+", fields=[
    F("group_id", STRING),
    F("generation_id", INT32),
    F("member_id", STRING),
    F("group_instance_id", STRING, "3+", nullable="3+", default=None),
    F("protocol_type", STRING, "5+", nullable="5+", default=None),
    F("protocol_name", STRING, "5+", nullable="5+", default=None),
    F("assignments", Array(Struct("SyncGroupRequestAssignment", [
        F("member_id", STRING),
        F("assignment", BYTES),
    ]))),
])

SyncGroupResponse = message("SyncGroupResponse", api_key=14, kind=RESPONSE, versions="0-5", flexible="4+", fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("error_code", INT16),
    F("protocol_type", STRING, "5+", nullable="5+", default=None),
    F("protocol_name", STRING, "5+", nullable="5+", default=None),
    F("assignment", BYTES),
])

DescribeGroupsRequest = message("DescribeGroupsRequest", api_key=15, kind=REQUEST, versions="0-5", flexible="5+",
                                fields=[
    F("groups", Array(STRING)),
    F("include_authorized_operations", BOOL, "3+"),
])

DescribeGroupsResponse = message("DescribeGroupsResponse", api_key=15, kind=RESPONSE, versions="0-5", flexible="5+",
                                 fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("groups", Array(Struct("DescribedGroup", [
        F("error_code", INT16),
        F("group_id", STRING),
        F("group_state", STRING),
        F("protocol_type", STRING),
        F("protocol_data", STRING),
        F("members", Array(Struct("DescribedGroupMember", [
            F("member_id", STRING),
            F("group_instance_id", STRING, "4+", nullable="4+", default=None),
            F("client_id", STRING),
            F("client_host", STRING),
            F("member_metadata", BYTES),
            F("member_assignment", BYTES),
        ]))),
        F("authorized_operations", INT32, "3+", default=-2147483648),
    ]))),
])

ListGroupsRequest = message("ListGroupsRequest", api_key=16, kind=REQUEST, versions="0-5", flexible="3+", fields=[
    F("states_filter", Array(STRING), "4+"),
    F("types_filter", Array(STRING), "5+"),
])

ListGroupsResponse = message("ListGroupsResponse", api_key=16, kind=RESPONSE, versions="0-5", flexible="3+", fields=[
    F("throttle_time_ms", INT32, "1+"),
    F("error_code", INT16),
    F("groups", Array(Struct("ListedGroup", [
        F("group_id", STRING),
        F("protocol_type", STRING),
        F("group_state", STRING, "4+"),
        F("group_type", STRING, "5+"),
    ]))),
])

DeleteGroupsRequest = message("DeleteGroupsRequest", api_key=42, kind=REQUEST, versions="0-2", flexible="2+", fields=[
    F("groups_names", Array(STRING)),
])

DeleteGroupsResponse = message("DeleteGroupsResponse", api_key=42, kind=RESPONSE, versions="0-2", flexible="2+",
                               fields=[
    F("throttle_time_ms", INT32),
    F("results", Array(Struct("DeletableGroupResult", [
        F("group_id", STRING),
        F("error_code", INT16),
    ]))),
])
