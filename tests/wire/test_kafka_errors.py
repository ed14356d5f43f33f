"""Kafka error codes (omnibus.wire.kafka.errors): the codes the broker uses, with the names, retriable
flags and messages of Kafka 3.9's Errors.java; names and retriable flags cross-checked against
kafka-python's own table (kafka/errors.py) where installed."""

from __future__ import annotations

import pytest

from omnibus.wire.kafka import errors as e

# The codes the Kafka session will use (issue 5 and the protocol guide's table).
EXPECTED = {
    "NONE": 0, "OFFSET_OUT_OF_RANGE": 1, "CORRUPT_MESSAGE": 2, "UNKNOWN_TOPIC_OR_PARTITION": 3,
    "INVALID_FETCH_SIZE": 4, "LEADER_NOT_AVAILABLE": 5, "NOT_LEADER_OR_FOLLOWER": 6, "REQUEST_TIMED_OUT": 7,
    "MESSAGE_TOO_LARGE": 10, "COORDINATOR_LOAD_IN_PROGRESS": 14, "COORDINATOR_NOT_AVAILABLE": 15,
    "NOT_COORDINATOR": 16, "INVALID_TOPIC_EXCEPTION": 17, "RECORD_LIST_TOO_LARGE": 18,
    "NOT_ENOUGH_REPLICAS": 19, "INVALID_REQUIRED_ACKS": 21, "ILLEGAL_GENERATION": 22,
    "INCONSISTENT_GROUP_PROTOCOL": 23, "INVALID_GROUP_ID": 24, "UNKNOWN_MEMBER_ID": 25,
    "INVALID_SESSION_TIMEOUT": 26, "REBALANCE_IN_PROGRESS": 27, "INVALID_COMMIT_OFFSET_SIZE": 28,
    "TOPIC_AUTHORIZATION_FAILED": 29, "GROUP_AUTHORIZATION_FAILED": 30, "CLUSTER_AUTHORIZATION_FAILED": 31,
    "INVALID_TIMESTAMP": 32, "UNSUPPORTED_SASL_MECHANISM": 33, "ILLEGAL_SASL_STATE": 34,
    "UNSUPPORTED_VERSION": 35, "TOPIC_ALREADY_EXISTS": 36, "INVALID_PARTITIONS": 37,
    "INVALID_REPLICATION_FACTOR": 38, "INVALID_REPLICA_ASSIGNMENT": 39, "INVALID_CONFIG": 40,
    "NOT_CONTROLLER": 41, "INVALID_REQUEST": 42, "UNSUPPORTED_FOR_MESSAGE_FORMAT": 43, "POLICY_VIOLATION": 44,
    "OUT_OF_ORDER_SEQUENCE_NUMBER": 45, "DUPLICATE_SEQUENCE_NUMBER": 46, "INVALID_PRODUCER_EPOCH": 47,
    "INVALID_TXN_STATE": 48, "INVALID_PRODUCER_ID_MAPPING": 49, "INVALID_TRANSACTION_TIMEOUT": 50,
    "CONCURRENT_TRANSACTIONS": 51, "TRANSACTION_COORDINATOR_FENCED": 52, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": 53,
    "SECURITY_DISABLED": 54, "OPERATION_NOT_ATTEMPTED": 55, "KAFKA_STORAGE_ERROR": 56,
    "SASL_AUTHENTICATION_FAILED": 58, "UNKNOWN_PRODUCER_ID": 59, "NON_EMPTY_GROUP": 68, "GROUP_ID_NOT_FOUND": 69,
    "FETCH_SESSION_ID_NOT_FOUND": 70, "INVALID_FETCH_SESSION_EPOCH": 71, "FENCED_LEADER_EPOCH": 74,
    "UNKNOWN_LEADER_EPOCH": 75, "UNSUPPORTED_COMPRESSION_TYPE": 76, "MEMBER_ID_REQUIRED": 79,
    "GROUP_MAX_SIZE_REACHED": 81, "FENCED_INSTANCE_ID": 82, "INVALID_RECORD": 87, "UNSTABLE_OFFSET_COMMIT": 88,
    "PRODUCER_FENCED": 90, "UNKNOWN_TOPIC_ID": 100, "INCONSISTENT_TOPIC_ID": 103, "TRANSACTION_ABORTABLE": 120,
}


def test_named_constants():
    for name, code in EXPECTED.items():
        assert getattr(e, name) == code, name
        assert e.ERRORS[code].name == name
    assert e.error_name(3) == "UNKNOWN_TOPIC_OR_PARTITION" and e.error_name(9999) == "UNKNOWN(9999)"
    assert e.error_message(e.UNSUPPORTED_VERSION) == "The version of API is not supported."
    assert e.error_message(e.NONE) is None
    assert e.ERRORS[-1].name == "UNKNOWN_SERVER_ERROR"


def test_retriable_flags_from_the_protocol_guide():
    retriable = {2, 3, 5, 6, 7, 13, 14, 15, 16, 19, 20, 41, 51, 56, 70, 71, 74, 75, 88, 89, 100}
    for code in retriable:
        assert e.is_retriable(code), e.error_name(code)
    for code in (0, 1, 10, 17, 22, 25, 27, 35, 36, 42, 45, 46, 47, 59, 79):
        assert not e.is_retriable(code), e.error_name(code)


def test_table_is_consistent():
    for code, err in e.ERRORS.items():
        assert err.code == code and getattr(e, err.name) == code
        assert (err.message == "") == (code == 0)


# Where kafka-python's table differs from Kafka's Errors.java (we follow Kafka): its older names, and
# CORRUPT_MESSAGE, which Kafka's CorruptRecordException (a RetriableException) and the guide call retriable.
KAFKA_PYTHON_NAMES = {6: "NOT_LEADER_FOR_PARTITION", 10: "MESSAGE_SIZE_TOO_LARGE", 17: "INVALID_TOPIC",
                      39: "INVALID_REPLICATION_ASSIGNMENT", 128: "UNKNOWN"}
KAFKA_PYTHON_RETRIABLE = {2: False}


def test_against_kafka_python_table():
    ke = pytest.importorskip("kafka.errors")
    checked = 0
    for code, err in e.ERRORS.items():
        if code <= 0:
            continue
        theirs = ke.for_code(code)
        assert theirs is not ke.UnknownError or code in KAFKA_PYTHON_NAMES, code
        assert theirs.message == KAFKA_PYTHON_NAMES.get(code, err.name), code
        if theirs is not ke.UnknownError:
            assert theirs.retriable == KAFKA_PYTHON_RETRIABLE.get(code, err.retriable), (code, err.name)
        checked += 1
    assert checked > 100


def test_codec_exceptions_are_fatal_protocol_errors():
    from omnibus.wire._common.errors import FrameTooLargeError, ProtocolError
    for cls in (e.KafkaDecodeError, e.InvalidRequestSizeError, e.RequestTooLargeError, e.UnknownApiKeyError,
                e.UnsupportedVersionError, e.ConnectionDeadError):
        err = cls("x")
        assert isinstance(err, ProtocolError) and isinstance(err, e.KafkaProtocolError) and err.fatal
    assert issubclass(e.RequestTooLargeError, FrameTooLargeError)
