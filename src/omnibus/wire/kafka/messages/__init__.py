"""Kafka API message schemas, one module per API family, and the registry the connection dispatches on.

Each module declares its requests and responses with the DSL of :mod:`omnibus.wire.kafka.types`; every
name below is a generated data class (``ProduceRequest(acks=1, timeout_ms=30000, topic_data=[...])``,
nested structs as attributes: ``ProduceRequest.TopicProduceData``). ``REQUESTS``/``RESPONSES`` map an API
key to its classes; ``API_NAMES`` to Kafka's name for it; ``SUPPORTED_VERSIONS`` to the (min, max)
versions this codec implements, which is what an ApiVersions response may advertise at most (the session
may advertise less).

Rules: declarations only, no I/O; imports nothing of ours but ``wire.kafka``.
"""

from __future__ import annotations

from omnibus.wire.kafka.messages.admin import (AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest,
                                               CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
                                               DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest,
                                               DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
                                               DescribeConfigsRequest, DescribeConfigsResponse,
                                               IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse)
from omnibus.wire.kafka.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from omnibus.wire.kafka.messages.fetch import FetchRequest, FetchResponse
from omnibus.wire.kafka.messages.groups import (DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
                                                DescribeGroupsResponse, FindCoordinatorRequest,
                                                FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
                                                JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
                                                LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
                                                SyncGroupRequest, SyncGroupResponse)
from omnibus.wire.kafka.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from omnibus.wire.kafka.messages.metadata import MetadataRequest, MetadataResponse
from omnibus.wire.kafka.messages.offsets import (OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
                                                 OffsetFetchResponse)
from omnibus.wire.kafka.messages.produce import ProduceRequest, ProduceResponse
from omnibus.wire.kafka.messages.sasl import (SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
                                              SaslHandshakeResponse)
from omnibus.wire.kafka.messages.transactions import (AddOffsetsToTxnRequest, AddOffsetsToTxnResponse,
                                                      AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
                                                      EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
                                                      InitProducerIdResponse, TxnOffsetCommitRequest,
                                                      TxnOffsetCommitResponse)

# API keys (Kafka protocol guide, "Api Keys"), for the APIs this codec implements.
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
SASL_HANDSHAKE = 17
API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
DELETE_RECORDS = 21
INIT_PRODUCER_ID = 22
ADD_PARTITIONS_TO_TXN = 24
ADD_OFFSETS_TO_TXN = 25
END_TXN = 26
TXN_OFFSET_COMMIT = 28
DESCRIBE_CONFIGS = 32
ALTER_CONFIGS = 33
SASL_AUTHENTICATE = 36
CREATE_PARTITIONS = 37
DELETE_GROUPS = 42
INCREMENTAL_ALTER_CONFIGS = 44
DESCRIBE_CLUSTER = 60

_PAIRS = [
    (ProduceRequest, ProduceResponse), (FetchRequest, FetchResponse), (ListOffsetsRequest, ListOffsetsResponse),
    (MetadataRequest, MetadataResponse), (OffsetCommitRequest, OffsetCommitResponse),
    (OffsetFetchRequest, OffsetFetchResponse), (FindCoordinatorRequest, FindCoordinatorResponse),
    (JoinGroupRequest, JoinGroupResponse), (HeartbeatRequest, HeartbeatResponse),
    (LeaveGroupRequest, LeaveGroupResponse), (SyncGroupRequest, SyncGroupResponse),
    (DescribeGroupsRequest, DescribeGroupsResponse), (ListGroupsRequest, ListGroupsResponse),
    (SaslHandshakeRequest, SaslHandshakeResponse), (ApiVersionsRequest, ApiVersionsResponse),
    (CreateTopicsRequest, CreateTopicsResponse), (DeleteTopicsRequest, DeleteTopicsResponse),
    (DeleteRecordsRequest, DeleteRecordsResponse), (InitProducerIdRequest, InitProducerIdResponse),
    (AddPartitionsToTxnRequest, AddPartitionsToTxnResponse), (AddOffsetsToTxnRequest, AddOffsetsToTxnResponse),
    (EndTxnRequest, EndTxnResponse), (TxnOffsetCommitRequest, TxnOffsetCommitResponse),
    (DescribeConfigsRequest, DescribeConfigsResponse), (AlterConfigsRequest, AlterConfigsResponse),
    (SaslAuthenticateRequest, SaslAuthenticateResponse), (CreatePartitionsRequest, CreatePartitionsResponse),
    (DeleteGroupsRequest, DeleteGroupsResponse),
    (IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse),
    (DescribeClusterRequest, DescribeClusterResponse),
]

#: api_key → request class / response class.
REQUESTS: dict[int, type] = {req.API_KEY: req for req, _ in _PAIRS}
RESPONSES: dict[int, type] = {resp.API_KEY: resp for _, resp in _PAIRS}
#: api_key → Kafka's name for the API ("Produce", "ApiVersions", ...).
API_NAMES: dict[int, str] = {req.API_KEY: req.__name__[:-len("Request")] for req, _ in _PAIRS}
#: api_key → (min, max) versions this codec encodes and decodes.
SUPPORTED_VERSIONS: dict[int, tuple[int, int]] = {req.API_KEY: (req.MIN_VERSION, req.MAX_VERSION) for req, _ in _PAIRS}


def _check() -> None:
    for req, resp in _PAIRS:
        assert req.API_KEY == resp.API_KEY and req.SCHEMA.valid.lo == resp.SCHEMA.valid.lo, req
        assert req.SCHEMA.valid.hi == resp.SCHEMA.valid.hi and req.SCHEMA.flexible.lo == resp.SCHEMA.flexible.lo, req


_check()

__all__ = ["REQUESTS", "RESPONSES", "API_NAMES", "SUPPORTED_VERSIONS"] + [c.__name__ for pair in _PAIRS for c in pair] + [
    n for n in list(globals()) if n.isupper() and isinstance(globals()[n], int)]
