"""Goal: ErrorCode matches Kafka's error table code for code, and handles codes it does not know.

The expected values below were read from Apache Kafka's ``Errors.java`` (4.0 line) and its
exception classes, independently of the module under test, so a shifted code, a misspelt name or
a wrong retriable flag fails here.
"""

from __future__ import annotations

import struct

import pytest

from protocol.error_codes import ErrorCode

# Kafka 4.0 defines every code from -1 to 129 with no gaps.
LOWEST_CODE = -1
HIGHEST_CODE = 129

# Every name in code order, starting at -1: the whole of Kafka's table, so any shifted code fails.
KAFKA_NAMES_BY_CODE = [
    "UNKNOWN_SERVER_ERROR",
    "NONE",
    "OFFSET_OUT_OF_RANGE",
    "CORRUPT_MESSAGE",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "INVALID_FETCH_SIZE",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "REQUEST_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "REPLICA_NOT_AVAILABLE",
    "MESSAGE_TOO_LARGE",
    "STALE_CONTROLLER_EPOCH",
    "OFFSET_METADATA_TOO_LARGE",
    "NETWORK_EXCEPTION",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "INVALID_TOPIC_EXCEPTION",
    "RECORD_LIST_TOO_LARGE",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "INVALID_REQUIRED_ACKS",
    "ILLEGAL_GENERATION",
    "INCONSISTENT_GROUP_PROTOCOL",
    "INVALID_GROUP_ID",
    "UNKNOWN_MEMBER_ID",
    "INVALID_SESSION_TIMEOUT",
    "REBALANCE_IN_PROGRESS",
    "INVALID_COMMIT_OFFSET_SIZE",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "INVALID_TIMESTAMP",
    "UNSUPPORTED_SASL_MECHANISM",
    "ILLEGAL_SASL_STATE",
    "UNSUPPORTED_VERSION",
    "TOPIC_ALREADY_EXISTS",
    "INVALID_PARTITIONS",
    "INVALID_REPLICATION_FACTOR",
    "INVALID_REPLICA_ASSIGNMENT",
    "INVALID_CONFIG",
    "NOT_CONTROLLER",
    "INVALID_REQUEST",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "POLICY_VIOLATION",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "DUPLICATE_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "INVALID_TXN_STATE",
    "INVALID_PRODUCER_ID_MAPPING",
    "INVALID_TRANSACTION_TIMEOUT",
    "CONCURRENT_TRANSACTIONS",
    "TRANSACTION_COORDINATOR_FENCED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "SECURITY_DISABLED",
    "OPERATION_NOT_ATTEMPTED",
    "KAFKA_STORAGE_ERROR",
    "LOG_DIR_NOT_FOUND",
    "SASL_AUTHENTICATION_FAILED",
    "UNKNOWN_PRODUCER_ID",
    "REASSIGNMENT_IN_PROGRESS",
    "DELEGATION_TOKEN_AUTH_DISABLED",
    "DELEGATION_TOKEN_NOT_FOUND",
    "DELEGATION_TOKEN_OWNER_MISMATCH",
    "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
    "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
    "DELEGATION_TOKEN_EXPIRED",
    "INVALID_PRINCIPAL_TYPE",
    "NON_EMPTY_GROUP",
    "GROUP_ID_NOT_FOUND",
    "FETCH_SESSION_ID_NOT_FOUND",
    "INVALID_FETCH_SESSION_EPOCH",
    "LISTENER_NOT_FOUND",
    "TOPIC_DELETION_DISABLED",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "UNSUPPORTED_COMPRESSION_TYPE",
    "STALE_BROKER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
    "MEMBER_ID_REQUIRED",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "GROUP_MAX_SIZE_REACHED",
    "FENCED_INSTANCE_ID",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "ELECTION_NOT_NEEDED",
    "NO_REASSIGNMENT_IN_PROGRESS",
    "GROUP_SUBSCRIBED_TO_TOPIC",
    "INVALID_RECORD",
    "UNSTABLE_OFFSET_COMMIT",
    "THROTTLING_QUOTA_EXCEEDED",
    "PRODUCER_FENCED",
    "RESOURCE_NOT_FOUND",
    "DUPLICATE_RESOURCE",
    "UNACCEPTABLE_CREDENTIAL",
    "INCONSISTENT_VOTER_SET",
    "INVALID_UPDATE_VERSION",
    "FEATURE_UPDATE_FAILED",
    "PRINCIPAL_DESERIALIZATION_FAILURE",
    "SNAPSHOT_NOT_FOUND",
    "POSITION_OUT_OF_RANGE",
    "UNKNOWN_TOPIC_ID",
    "DUPLICATE_BROKER_REGISTRATION",
    "BROKER_ID_NOT_REGISTERED",
    "INCONSISTENT_TOPIC_ID",
    "INCONSISTENT_CLUSTER_ID",
    "TRANSACTIONAL_ID_NOT_FOUND",
    "FETCH_SESSION_TOPIC_ID_ERROR",
    "INELIGIBLE_REPLICA",
    "NEW_LEADER_ELECTED",
    "OFFSET_MOVED_TO_TIERED_STORAGE",
    "FENCED_MEMBER_EPOCH",
    "UNRELEASED_INSTANCE_ID",
    "UNSUPPORTED_ASSIGNOR",
    "STALE_MEMBER_EPOCH",
    "MISMATCHED_ENDPOINT_TYPE",
    "UNSUPPORTED_ENDPOINT_TYPE",
    "UNKNOWN_CONTROLLER_ID",
    "UNKNOWN_SUBSCRIPTION_ID",
    "TELEMETRY_TOO_LARGE",
    "INVALID_REGISTRATION",
    "TRANSACTION_ABORTABLE",
    "INVALID_RECORD_STATE",
    "SHARE_SESSION_NOT_FOUND",
    "INVALID_SHARE_SESSION_EPOCH",
    "FENCED_STATE_EPOCH",
    "INVALID_VOTER_KEY",
    "DUPLICATE_VOTER",
    "VOTER_NOT_FOUND",
    "INVALID_REGULAR_EXPRESSION",
    "REBOOTSTRAP_REQUIRED",
]

SPOT_CHECKS = [
    ("UNKNOWN_SERVER_ERROR", -1),
    ("NONE", 0),
    ("OFFSET_OUT_OF_RANGE", 1),
    ("CORRUPT_MESSAGE", 2),
    ("UNKNOWN_TOPIC_OR_PARTITION", 3),
    ("NOT_LEADER_OR_FOLLOWER", 6),
    ("REQUEST_TIMED_OUT", 7),
    ("MESSAGE_TOO_LARGE", 10),
    ("COORDINATOR_NOT_AVAILABLE", 15),
    ("NOT_COORDINATOR", 16),
    ("INVALID_TOPIC_EXCEPTION", 17),
    ("ILLEGAL_GENERATION", 22),
    ("UNKNOWN_MEMBER_ID", 25),
    ("REBALANCE_IN_PROGRESS", 27),
    ("UNSUPPORTED_VERSION", 35),
    ("TOPIC_ALREADY_EXISTS", 36),
    ("INVALID_PARTITIONS", 37),
    ("INVALID_REPLICA_ASSIGNMENT", 39),
    ("NOT_CONTROLLER", 41),
    ("INVALID_REQUEST", 42),
    ("POLICY_VIOLATION", 44),
    ("OUT_OF_ORDER_SEQUENCE_NUMBER", 45),
    ("INVALID_PRODUCER_EPOCH", 47),
    ("INVALID_TXN_STATE", 48),
    ("CONCURRENT_TRANSACTIONS", 51),
    ("KAFKA_STORAGE_ERROR", 56),
    ("SASL_AUTHENTICATION_FAILED", 58),
    ("INVALID_PRINCIPAL_TYPE", 67),
    ("GROUP_ID_NOT_FOUND", 69),
    ("LISTENER_NOT_FOUND", 72),
    ("TOPIC_DELETION_DISABLED", 73),
    ("FENCED_LEADER_EPOCH", 74),
    ("UNKNOWN_LEADER_EPOCH", 75),
    ("MEMBER_ID_REQUIRED", 79),
    ("FENCED_INSTANCE_ID", 82),
    ("INVALID_RECORD", 87),
    ("THROTTLING_QUOTA_EXCEEDED", 89),
    ("PRODUCER_FENCED", 90),
    ("POSITION_OUT_OF_RANGE", 99),
    ("UNKNOWN_TOPIC_ID", 100),
    ("INCONSISTENT_TOPIC_ID", 103),
    ("FENCED_MEMBER_EPOCH", 110),
    ("INVALID_REGISTRATION", 119),
    ("TRANSACTION_ABORTABLE", 120),
    ("INVALID_REGULAR_EXPRESSION", 128),
    ("REBOOTSTRAP_REQUIRED", 129),
]

# Every code whose Kafka exception extends RetriableException (some through
# InvalidMetadataException). All other codes are not retriable.
RETRIABLE = {
    "CORRUPT_MESSAGE",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "REQUEST_TIMED_OUT",
    "REPLICA_NOT_AVAILABLE",
    "NETWORK_EXCEPTION",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "NOT_CONTROLLER",
    "CONCURRENT_TRANSACTIONS",
    "KAFKA_STORAGE_ERROR",
    "FETCH_SESSION_ID_NOT_FOUND",
    "INVALID_FETCH_SESSION_EPOCH",
    "LISTENER_NOT_FOUND",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "ELECTION_NOT_NEEDED",
    "UNSTABLE_OFFSET_COMMIT",
    "THROTTLING_QUOTA_EXCEEDED",
    "UNKNOWN_TOPIC_ID",
    "INCONSISTENT_TOPIC_ID",
    "FETCH_SESSION_TOPIC_ID_ERROR",
    "SHARE_SESSION_NOT_FOUND",
    "INVALID_SHARE_SESSION_EPOCH",
}

RETRIABLE_SPOT_CHECKS = [
    (ErrorCode.NOT_LEADER_OR_FOLLOWER, True),
    (ErrorCode.NOT_ENOUGH_REPLICAS, True),
    (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, True),
    (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, True),
    (ErrorCode.CORRUPT_MESSAGE, True),
    (ErrorCode.REQUEST_TIMED_OUT, True),
    (ErrorCode.KAFKA_STORAGE_ERROR, True),
    (ErrorCode.CONCURRENT_TRANSACTIONS, True),
    (ErrorCode.UNKNOWN_TOPIC_ID, True),
    (ErrorCode.NONE, False),
    (ErrorCode.UNKNOWN_SERVER_ERROR, False),
    (ErrorCode.OFFSET_OUT_OF_RANGE, False),
    (ErrorCode.TOPIC_AUTHORIZATION_FAILED, False),
    (ErrorCode.INVALID_TOPIC_EXCEPTION, False),
    (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, False),
    (ErrorCode.MESSAGE_TOO_LARGE, False),
    (ErrorCode.BROKER_NOT_AVAILABLE, False),
    (ErrorCode.REBALANCE_IN_PROGRESS, False),
    (ErrorCode.PRODUCER_FENCED, False),
    (ErrorCode.UNKNOWN_PRODUCER_ID, False),
    (ErrorCode.INVALID_PRODUCER_EPOCH, False),
    (ErrorCode.TRANSACTION_ABORTABLE, False),
    (ErrorCode.REBOOTSTRAP_REQUIRED, False),
]


@pytest.mark.parametrize(("name", "code"), SPOT_CHECKS)
def test_name_and_code_match_kafka(name: str, code: int) -> None:
    assert ErrorCode[name] == code
    assert ErrorCode(code).name == name


def test_full_table_matches_kafka() -> None:
    assert [member.name for member in sorted(ErrorCode)] == KAFKA_NAMES_BY_CODE
    for code, name in enumerate(KAFKA_NAMES_BY_CODE, start=LOWEST_CODE):
        assert ErrorCode[name] == code


def test_codes_are_unique_and_contiguous() -> None:
    codes = [int(member) for member in ErrorCode]
    assert len(codes) == len(set(codes))
    # No aliases: every name is its own member.
    assert len(ErrorCode.__members__) == len(codes)
    assert sorted(codes) == list(range(LOWEST_CODE, HIGHEST_CODE + 1))
    assert len(codes) == 131


def test_every_code_fits_int16() -> None:
    for member in ErrorCode:
        assert struct.unpack(">h", struct.pack(">h", member))[0] == member


def test_retriable_set_matches_kafka() -> None:
    assert {member.name for member in ErrorCode if member.retriable} == RETRIABLE


@pytest.mark.parametrize(("member", "retriable"), RETRIABLE_SPOT_CHECKS)
def test_retriable_flag(member: ErrorCode, retriable: bool) -> None:
    assert member.retriable is retriable


def test_every_member_has_a_distinct_message() -> None:
    messages = [member.message for member in ErrorCode]
    for member, message in zip(ErrorCode, messages, strict=True):
        assert isinstance(message, str)
        assert message.strip(), member.name
        assert message.endswith("."), member.name
    assert len(set(messages)) == len(messages)


def test_from_code_returns_members_for_known_codes() -> None:
    assert ErrorCode.from_code(0) is ErrorCode.NONE
    assert ErrorCode.from_code(6) is ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert ErrorCode.from_code(HIGHEST_CODE) is ErrorCode.REBOOTSTRAP_REQUIRED
    for member in ErrorCode:
        assert ErrorCode.from_code(int(member)) is member


@pytest.mark.parametrize("code", [HIGHEST_CODE + 1, 999, 32767, -2, -32768])
def test_from_code_passes_unknown_codes_through(code: int) -> None:
    result = ErrorCode.from_code(code)
    assert result == code
    assert not isinstance(result, ErrorCode)


def test_members_are_ints_and_attributes_read_only() -> None:
    assert ErrorCode.NOT_LEADER_OR_FOLLOWER == 6
    assert int(ErrorCode.UNKNOWN_SERVER_ERROR) == -1
    assert ErrorCode.NONE + 0 == 0
    with pytest.raises(AttributeError):
        ErrorCode.NONE.retriable = True  # type: ignore[misc]
