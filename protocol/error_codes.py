"""Kafka's error codes: the int16 values a broker puts in a response's error fields.

Contract: an ``ErrorCode`` is a *value*. Handlers return one in the response they build for a
well-formed request they cannot serve; nothing in the wire layer raises it, and nothing here is
an exception. Malformed bytes are a different kind of failure (``protocol.errors.ProtocolError``,
which closes the connection).

The enum covers every code Apache Kafka 4.0 defines, -1 through 129 with no gaps. Member names are
Kafka's own, so logs and tests read the same as Kafka's documentation. Each member has two
read-only attributes, looked up in ``_TABLE`` below:

- ``retriable``: True exactly when Kafka's client exception for the code is a retriable one, i.e.
  a client may send the same request again (usually after refreshing metadata) and expect success.
- ``message``: a short default description, for a response's error-message field when the handler
  has nothing more specific to say.

Codes from peers: a newer client or broker may send a code this table does not know. Decoders
keep error fields as plain ints; ``ErrorCode.from_code`` returns the member when there is one and
the int unchanged otherwise, so an unknown code is never an error in itself. (``ErrorCode(n)``
raises ``ValueError`` for an unknown ``n``; use it only where ``n`` is known to be ours.)
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """One Kafka error code; each member's value is its wire code."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    BROKER_NOT_AVAILABLE = 8
    REPLICA_NOT_AVAILABLE = 9
    MESSAGE_TOO_LARGE = 10
    STALE_CONTROLLER_EPOCH = 11
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    INVALID_COMMIT_OFFSET_SIZE = 28
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    INVALID_TIMESTAMP = 32
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    UNSUPPORTED_VERSION = 35
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    INVALID_CONFIG = 40
    NOT_CONTROLLER = 41
    INVALID_REQUEST = 42
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    SECURITY_DISABLED = 54
    OPERATION_NOT_ATTEMPTED = 55
    KAFKA_STORAGE_ERROR = 56
    LOG_DIR_NOT_FOUND = 57
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    REASSIGNMENT_IN_PROGRESS = 60
    DELEGATION_TOKEN_AUTH_DISABLED = 61
    DELEGATION_TOKEN_NOT_FOUND = 62
    DELEGATION_TOKEN_OWNER_MISMATCH = 63
    DELEGATION_TOKEN_REQUEST_NOT_ALLOWED = 64
    DELEGATION_TOKEN_AUTHORIZATION_FAILED = 65
    DELEGATION_TOKEN_EXPIRED = 66
    INVALID_PRINCIPAL_TYPE = 67
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    LISTENER_NOT_FOUND = 72
    TOPIC_DELETION_DISABLED = 73
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    UNSUPPORTED_COMPRESSION_TYPE = 76
    STALE_BROKER_EPOCH = 77
    OFFSET_NOT_AVAILABLE = 78
    MEMBER_ID_REQUIRED = 79
    PREFERRED_LEADER_NOT_AVAILABLE = 80
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    ELIGIBLE_LEADERS_NOT_AVAILABLE = 83
    ELECTION_NOT_NEEDED = 84
    NO_REASSIGNMENT_IN_PROGRESS = 85
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    INVALID_RECORD = 87
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93
    INCONSISTENT_VOTER_SET = 94
    INVALID_UPDATE_VERSION = 95
    FEATURE_UPDATE_FAILED = 96
    PRINCIPAL_DESERIALIZATION_FAILURE = 97
    SNAPSHOT_NOT_FOUND = 98
    POSITION_OUT_OF_RANGE = 99
    UNKNOWN_TOPIC_ID = 100
    DUPLICATE_BROKER_REGISTRATION = 101
    BROKER_ID_NOT_REGISTERED = 102
    INCONSISTENT_TOPIC_ID = 103
    INCONSISTENT_CLUSTER_ID = 104
    TRANSACTIONAL_ID_NOT_FOUND = 105
    FETCH_SESSION_TOPIC_ID_ERROR = 106
    INELIGIBLE_REPLICA = 107
    NEW_LEADER_ELECTED = 108
    OFFSET_MOVED_TO_TIERED_STORAGE = 109
    FENCED_MEMBER_EPOCH = 110
    UNRELEASED_INSTANCE_ID = 111
    UNSUPPORTED_ASSIGNOR = 112
    STALE_MEMBER_EPOCH = 113
    MISMATCHED_ENDPOINT_TYPE = 114
    UNSUPPORTED_ENDPOINT_TYPE = 115
    UNKNOWN_CONTROLLER_ID = 116
    UNKNOWN_SUBSCRIPTION_ID = 117
    TELEMETRY_TOO_LARGE = 118
    INVALID_REGISTRATION = 119
    TRANSACTION_ABORTABLE = 120
    INVALID_RECORD_STATE = 121
    SHARE_SESSION_NOT_FOUND = 122
    INVALID_SHARE_SESSION_EPOCH = 123
    FENCED_STATE_EPOCH = 124
    INVALID_VOTER_KEY = 125
    DUPLICATE_VOTER = 126
    VOTER_NOT_FOUND = 127
    INVALID_REGULAR_EXPRESSION = 128
    REBOOTSTRAP_REQUIRED = 129

    @property
    def retriable(self) -> bool:
        """Whether a client may retry the same request and expect it to succeed."""
        return _TABLE[self][0]

    @property
    def message(self) -> str:
        """A short default description of the error, in plain words."""
        return _TABLE[self][1]

    @classmethod
    def from_code(cls, code: int) -> ErrorCode | int:
        """The member for ``code``, or ``code`` itself when this table does not know it."""
        member = _BY_CODE.get(code)
        return code if member is None else member


# member -> (retriable, message). The retriable flags follow Kafka's exception classes: a code is
# retriable when its exception extends RetriableException (directly or through
# InvalidMetadataException). The messages are Trafka's own wording.
_TABLE: dict[ErrorCode, tuple[bool, str]] = {
    ErrorCode.UNKNOWN_SERVER_ERROR: (
        False,
        "The broker hit an unexpected internal error while handling the request.",
    ),
    ErrorCode.NONE: (False, "Success: no error."),
    ErrorCode.OFFSET_OUT_OF_RANGE: (
        False,
        "The offset asked for lies outside the range the partition's log holds.",
    ),
    ErrorCode.CORRUPT_MESSAGE: (
        True,
        "A record batch failed its checksum, has an impossible size or is malformed.",
    ),
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: (True, "The topic or partition is unknown to this broker."),
    ErrorCode.INVALID_FETCH_SIZE: (False, "The fetch size in the request is not acceptable."),
    ErrorCode.LEADER_NOT_AVAILABLE: (
        True,
        "The partition has no leader at the moment, usually during an election.",
    ),
    ErrorCode.NOT_LEADER_OR_FOLLOWER: (
        True,
        "This broker is not the partition's leader (or, for replica reads, a replica).",
    ),
    ErrorCode.REQUEST_TIMED_OUT: (True, "The broker gave up on the request when its timeout ran out."),
    ErrorCode.BROKER_NOT_AVAILABLE: (False, "The target broker is unavailable."),
    ErrorCode.REPLICA_NOT_AVAILABLE: (True, "A replica of the partition is unavailable on the broker."),
    ErrorCode.MESSAGE_TOO_LARGE: (False, "A record batch is larger than the broker or topic allows."),
    ErrorCode.STALE_CONTROLLER_EPOCH: (
        False,
        "The request carries an old controller epoch; the controller has moved.",
    ),
    ErrorCode.OFFSET_METADATA_TOO_LARGE: (
        False,
        "The metadata string attached to a committed offset is too long.",
    ),
    ErrorCode.NETWORK_EXCEPTION: (True, "The connection dropped before a response arrived."),
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS: (
        True,
        "The coordinator is still loading its state and cannot serve yet.",
    ),
    ErrorCode.COORDINATOR_NOT_AVAILABLE: (
        True,
        "No coordinator is available for the group or transaction right now.",
    ),
    ErrorCode.NOT_COORDINATOR: (
        True,
        "This broker is not the coordinator for the group or transactional id.",
    ),
    ErrorCode.INVALID_TOPIC_EXCEPTION: (
        False,
        "The topic name is illegal, or the operation is not allowed on this topic.",
    ),
    ErrorCode.RECORD_LIST_TOO_LARGE: (False, "A produced batch is larger than a log segment may be."),
    ErrorCode.NOT_ENOUGH_REPLICAS: (
        True,
        "Write refused: the partition has fewer in-sync replicas than required.",
    ),
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: (
        True,
        "The write was appended, but fewer in-sync replicas than required hold it.",
    ),
    ErrorCode.INVALID_REQUIRED_ACKS: (False, "The produce request's acks value is not -1, 0 or 1."),
    ErrorCode.ILLEGAL_GENERATION: (False, "The generation id does not match the group's current generation."),
    ErrorCode.INCONSISTENT_GROUP_PROTOCOL: (
        False,
        "The member's protocol type or protocols do not fit the group's.",
    ),
    ErrorCode.INVALID_GROUP_ID: (False, "The group id is empty or otherwise unusable."),
    ErrorCode.UNKNOWN_MEMBER_ID: (False, "The group coordinator does not know this member id."),
    ErrorCode.INVALID_SESSION_TIMEOUT: (
        False,
        "The session timeout lies outside the range the broker accepts.",
    ),
    ErrorCode.REBALANCE_IN_PROGRESS: (False, "The group is rebalancing; the member has to rejoin."),
    ErrorCode.INVALID_COMMIT_OFFSET_SIZE: (
        False,
        "The size of the offset data being committed is not acceptable.",
    ),
    ErrorCode.TOPIC_AUTHORIZATION_FAILED: (
        False,
        "The principal may not perform this operation on the topic.",
    ),
    ErrorCode.GROUP_AUTHORIZATION_FAILED: (
        False,
        "The principal may not perform this operation on the group.",
    ),
    ErrorCode.CLUSTER_AUTHORIZATION_FAILED: (
        False,
        "The principal may not perform this cluster-wide operation.",
    ),
    ErrorCode.INVALID_TIMESTAMP: (False, "A record timestamp falls outside the range the topic accepts."),
    ErrorCode.UNSUPPORTED_SASL_MECHANISM: (
        False,
        "The SASL mechanism asked for is not enabled on this broker.",
    ),
    ErrorCode.ILLEGAL_SASL_STATE: (False, "The request comes at the wrong stage of SASL authentication."),
    ErrorCode.UNSUPPORTED_VERSION: (False, "The broker does not implement this API or this version of it."),
    ErrorCode.TOPIC_ALREADY_EXISTS: (False, "A topic with this name exists already."),
    ErrorCode.INVALID_PARTITIONS: (False, "The requested partition count is not valid."),
    ErrorCode.INVALID_REPLICATION_FACTOR: (False, "The replication factor is not valid for this cluster."),
    ErrorCode.INVALID_REPLICA_ASSIGNMENT: (False, "The explicit replica assignment is not valid."),
    ErrorCode.INVALID_CONFIG: (False, "A configuration value in the request is not valid."),
    ErrorCode.NOT_CONTROLLER: (True, "This node is not the active controller."),
    ErrorCode.INVALID_REQUEST: (False, "The request is invalid: malformed, or unsuitable for this broker."),
    ErrorCode.UNSUPPORTED_FOR_MESSAGE_FORMAT: (
        False,
        "The request needs a newer record format than the topic has.",
    ),
    ErrorCode.POLICY_VIOLATION: (False, "The request breaks a policy configured on the broker."),
    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER: (
        False,
        "The producer's sequence number is ahead of what the broker expects.",
    ),
    ErrorCode.DUPLICATE_SEQUENCE_NUMBER: (
        False,
        "The producer's sequence number repeats one already written.",
    ),
    ErrorCode.INVALID_PRODUCER_EPOCH: (False, "The producer epoch is out of date."),
    ErrorCode.INVALID_TXN_STATE: (False, "The operation is not allowed in the transaction's current state."),
    ErrorCode.INVALID_PRODUCER_ID_MAPPING: (
        False,
        "The producer id is not the one assigned to this transactional id.",
    ),
    ErrorCode.INVALID_TRANSACTION_TIMEOUT: (False, "The transaction timeout is above the broker's maximum."),
    ErrorCode.CONCURRENT_TRANSACTIONS: (
        True,
        "Another operation on the same transaction is still under way.",
    ),
    ErrorCode.TRANSACTION_COORDINATOR_FENCED: (
        False,
        "The transaction coordinator that sent this is no longer current.",
    ),
    ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: (
        False,
        "The principal may not use this transactional id.",
    ),
    ErrorCode.SECURITY_DISABLED: (False, "Security features are turned off on this broker."),
    ErrorCode.OPERATION_NOT_ATTEMPTED: (
        False,
        "The broker skipped this operation, e.g. because another in the batch failed.",
    ),
    ErrorCode.KAFKA_STORAGE_ERROR: (True, "The broker could not read or write the log on disk."),
    ErrorCode.LOG_DIR_NOT_FOUND: (False, "The named log directory is not configured on the broker."),
    ErrorCode.SASL_AUTHENTICATION_FAILED: (False, "SASL authentication did not succeed."),
    ErrorCode.UNKNOWN_PRODUCER_ID: (
        False,
        "The broker holds no state for this producer id, e.g. after its records expired.",
    ),
    ErrorCode.REASSIGNMENT_IN_PROGRESS: (False, "A partition reassignment is already under way."),
    ErrorCode.DELEGATION_TOKEN_AUTH_DISABLED: (False, "Delegation tokens are not enabled on this broker."),
    ErrorCode.DELEGATION_TOKEN_NOT_FOUND: (False, "No such delegation token exists."),
    ErrorCode.DELEGATION_TOKEN_OWNER_MISMATCH: (
        False,
        "The principal is neither the token's owner nor a permitted renewer.",
    ),
    ErrorCode.DELEGATION_TOKEN_REQUEST_NOT_ALLOWED: (
        False,
        "Delegation token requests are refused on this kind of connection.",
    ),
    ErrorCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED: (
        False,
        "The principal may not perform this delegation token operation.",
    ),
    ErrorCode.DELEGATION_TOKEN_EXPIRED: (False, "The delegation token has expired."),
    ErrorCode.INVALID_PRINCIPAL_TYPE: (False, "The principal type given is not supported."),
    ErrorCode.NON_EMPTY_GROUP: (False, "The group still has members, so the operation is refused."),
    ErrorCode.GROUP_ID_NOT_FOUND: (False, "No group with this id exists."),
    ErrorCode.FETCH_SESSION_ID_NOT_FOUND: (
        True,
        "The incremental fetch session id is unknown to the broker.",
    ),
    ErrorCode.INVALID_FETCH_SESSION_EPOCH: (
        True,
        "The incremental fetch session epoch does not match the broker's.",
    ),
    ErrorCode.LISTENER_NOT_FOUND: (
        True,
        "The leader has no listener matching the one this request came in on.",
    ),
    ErrorCode.TOPIC_DELETION_DISABLED: (False, "Deleting topics is disabled on this cluster."),
    ErrorCode.FENCED_LEADER_EPOCH: (True, "The leader epoch in the request is older than the broker's."),
    ErrorCode.UNKNOWN_LEADER_EPOCH: (
        True,
        "The leader epoch in the request is newer than any the broker knows.",
    ),
    ErrorCode.UNSUPPORTED_COMPRESSION_TYPE: (
        False,
        "The client cannot read the compression codec this partition uses.",
    ),
    ErrorCode.STALE_BROKER_EPOCH: (False, "The broker epoch in the request is out of date."),
    ErrorCode.OFFSET_NOT_AVAILABLE: (
        True,
        "The new leader's high watermark has not caught up, so offsets are not safe yet.",
    ),
    ErrorCode.MEMBER_ID_REQUIRED: (
        False,
        "The member must rejoin using the member id the coordinator assigned.",
    ),
    ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE: (
        True,
        "The preferred replica cannot take leadership right now.",
    ),
    ErrorCode.GROUP_MAX_SIZE_REACHED: (False, "The group already has as many members as it may."),
    ErrorCode.FENCED_INSTANCE_ID: (
        False,
        "Another member with the same static instance id has replaced this one.",
    ),
    ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE: (
        True,
        "No replica eligible to lead the partition is available.",
    ),
    ErrorCode.ELECTION_NOT_NEEDED: (
        True,
        "The partition already has the desired leader; no election took place.",
    ),
    ErrorCode.NO_REASSIGNMENT_IN_PROGRESS: (False, "There is no partition reassignment to act on."),
    ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC: (
        False,
        "A topic's offsets cannot be deleted while the group subscribes to it.",
    ),
    ErrorCode.INVALID_RECORD: (False, "The broker rejected a record that failed its validation."),
    ErrorCode.UNSTABLE_OFFSET_COMMIT: (
        True,
        "Pending transactional offsets must settle before offsets can be read.",
    ),
    ErrorCode.THROTTLING_QUOTA_EXCEEDED: (
        True,
        "The request went over a throttling quota, such as a topic mutation rate.",
    ),
    ErrorCode.PRODUCER_FENCED: (
        False,
        "A newer producer with the same transactional id has fenced this one.",
    ),
    ErrorCode.RESOURCE_NOT_FOUND: (False, "The request refers to a resource that does not exist."),
    ErrorCode.DUPLICATE_RESOURCE: (False, "The request names the same resource more than once."),
    ErrorCode.UNACCEPTABLE_CREDENTIAL: (
        False,
        "The requested credential does not meet the acceptance rules.",
    ),
    ErrorCode.INCONSISTENT_VOTER_SET: (
        False,
        "A party to this voter-only request is not in the expected voter set.",
    ),
    ErrorCode.INVALID_UPDATE_VERSION: (False, "The requested feature version update is not valid."),
    ErrorCode.FEATURE_UPDATE_FAILED: (
        False,
        "The finalized features could not be updated because of an unexpected error.",
    ),
    ErrorCode.PRINCIPAL_DESERIALIZATION_FAILURE: (
        False,
        "The principal of a forwarded request could not be decoded.",
    ),
    ErrorCode.SNAPSHOT_NOT_FOUND: (False, "The requested metadata snapshot does not exist."),
    ErrorCode.POSITION_OUT_OF_RANGE: (
        False,
        "The requested snapshot position is negative or past the snapshot's end.",
    ),
    ErrorCode.UNKNOWN_TOPIC_ID: (True, "No topic with this topic id is hosted here."),
    ErrorCode.DUPLICATE_BROKER_REGISTRATION: (
        False,
        "Another live broker has already registered with this broker id.",
    ),
    ErrorCode.BROKER_ID_NOT_REGISTERED: (False, "No broker is registered with this id."),
    ErrorCode.INCONSISTENT_TOPIC_ID: (
        True,
        "The topic id in the request differs from the one the log records.",
    ),
    ErrorCode.INCONSISTENT_CLUSTER_ID: (False, "The cluster id in the request differs from this node's."),
    ErrorCode.TRANSACTIONAL_ID_NOT_FOUND: (False, "No transaction state exists for this transactional id."),
    ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR: (True, "The fetch session used topic ids inconsistently."),
    ErrorCode.INELIGIBLE_REPLICA: (
        False,
        "The proposed in-sync set includes a replica that may not join it.",
    ),
    ErrorCode.NEW_LEADER_ELECTED: (
        False,
        "The partition change was applied, but the partition has a new leader now.",
    ),
    ErrorCode.OFFSET_MOVED_TO_TIERED_STORAGE: (False, "The requested offset is only held in tiered storage."),
    ErrorCode.FENCED_MEMBER_EPOCH: (
        False,
        "The member's epoch was fenced; it must give up its partitions and rejoin.",
    ),
    ErrorCode.UNRELEASED_INSTANCE_ID: (
        False,
        "Another member still holds this static instance id and must leave first.",
    ),
    ErrorCode.UNSUPPORTED_ASSIGNOR: (
        False,
        "The group does not support the requested assignor or its version.",
    ),
    ErrorCode.STALE_MEMBER_EPOCH: (
        False,
        "The member's epoch is out of date; retry once a heartbeat brings the new one.",
    ),
    ErrorCode.MISMATCHED_ENDPOINT_TYPE: (
        False,
        "The request reached the wrong kind of endpoint (broker or controller).",
    ),
    ErrorCode.UNSUPPORTED_ENDPOINT_TYPE: (False, "The requested endpoint type is not supported."),
    ErrorCode.UNKNOWN_CONTROLLER_ID: (False, "No controller with this id is known."),
    ErrorCode.UNKNOWN_SUBSCRIPTION_ID: (False, "The telemetry subscription id is unknown or out of date."),
    ErrorCode.TELEMETRY_TOO_LARGE: (False, "The pushed telemetry payload is over the broker's limit."),
    ErrorCode.INVALID_REGISTRATION: (False, "The controller found the broker's registration invalid."),
    ErrorCode.TRANSACTION_ABORTABLE: (
        False,
        "The transaction failed; abort it to keep using the transactional id.",
    ),
    ErrorCode.INVALID_RECORD_STATE: (
        False,
        "The record's delivery state does not allow this acknowledgement.",
    ),
    ErrorCode.SHARE_SESSION_NOT_FOUND: (True, "The share session is unknown to the broker."),
    ErrorCode.INVALID_SHARE_SESSION_EPOCH: (True, "The share session epoch does not match the broker's."),
    ErrorCode.FENCED_STATE_EPOCH: (False, "The share-group state epoch in the request is out of date."),
    ErrorCode.INVALID_VOTER_KEY: (
        False,
        "The voter key does not identify the replica that received the request.",
    ),
    ErrorCode.DUPLICATE_VOTER: (False, "The voter is in the voter set already."),
    ErrorCode.VOTER_NOT_FOUND: (False, "The voter is not in the voter set."),
    ErrorCode.INVALID_REGULAR_EXPRESSION: (False, "The subscription's regular expression is not valid."),
    ErrorCode.REBOOTSTRAP_REQUIRED: (
        False,
        "The client's metadata is stale; it should bootstrap again from scratch.",
    ),
}

_BY_CODE: dict[int, ErrorCode] = {int(member): member for member in ErrorCode}
