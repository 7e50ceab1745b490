"""The records the group coordinator keeps in ``__consumer_offsets``, in Kafka's byte format.

What it owns. A hand-written codec for the record types the group coordinator writes and reads
back: ``OffsetCommitKey``/``OffsetCommitValue`` (a committed offset) and
``GroupMetadataKey``/``GroupMetadataValue`` (a classic group's membership after a rebalance);
the KIP-848 consumer group records (listed below); plus the placement rule that maps a group to
its ``__consumer_offsets`` partition.

Layout (Kafka's, byte for byte). A record key is an int16 *key version* followed by the key's
fields; the key version says which record type it is: 0 and 1 are offset commits, 2 is group
metadata, 3-8 and 16 are consumer group records; other versions (share and streams groups) are
decoded as ``UnknownKey`` and loading skips them, as Kafka's loader skips record types it does
not know. A record value is an int16 *value version* followed by the value's fields; a null
value is a tombstone. Classic value versions 0-3 use classic encodings (int16-length strings,
int32-length bytes and arrays); version 4 is flexible (compact lengths and a tagged-field section
per struct, whose unknown tags are skipped). Fields by version:

- ``OffsetCommitKey`` v0-1: group string, topic string, partition int32.
- ``OffsetCommitValue`` v0-4: offset int64; leader epoch int32 (v3+); metadata string; commit
  timestamp int64; expire timestamp int64 (v1 only).
- ``GroupMetadataKey`` v2: group string.
- ``GroupMetadataValue`` v0-4: protocol type string; generation int32; protocol nullable string;
  leader nullable string; current state timestamp int64 (v2+); members: member id string, group
  instance id nullable string (v3+), client id string, client host string, rebalance timeout int32
  (v1+), session timeout int32, subscription bytes, assignment bytes.

Consumer group records (KIP-848; Kafka 3.9/4.0 ``group-coordinator`` message schemas). Keys are
non-flexible (int16-length strings); every value is value version 0 and flexible (compact
strings and arrays, an empty tagged-field section after each struct, unknown tags skipped):

- key 3 ``ConsumerGroupMetadataKey`` (group) -> epoch int32.
- key 4 ``ConsumerGroupPartitionMetadataKey`` (group) -> topics: [topic id uuid, topic name,
  partition count int32, partition metadata: [partition int32, racks [string]]].
- key 5 ``ConsumerGroupMemberMetadataKey`` (group, member id) -> instance id?, rack id?, client
  id, client host, subscribed topic names [string], subscribed topic regex?, rebalance timeout
  int32, server assignor?; tag 0 (the classic-protocol metadata of a member that joined with
  JoinGroup) is skipped: this coordinator never admits classic members to consumer groups.
- key 6 ``ConsumerGroupTargetAssignmentMetadataKey`` (group) -> assignment epoch int32.
- key 7 ``ConsumerGroupTargetAssignmentMemberKey`` (group, member id) -> topic partitions:
  [topic id uuid, partitions [int32]].
- key 8 ``ConsumerGroupCurrentMemberAssignmentKey`` (group, member id) -> member epoch int32,
  previous member epoch int32, state int8, assigned partitions and partitions pending
  revocation (both [topic id uuid, partitions [int32]]).
- key 16 ``ConsumerGroupRegularExpressionKey`` (group, regex) -> topics [string], version int64,
  timestamp int64 (Kafka 4.0).

What we write is what Kafka 3.x/4.0 writes: key version 1 for offset commits (2 for groups),
``OffsetCommitValue`` v3, or v1 when the commit carries an explicit expire timestamp
(OffsetCommit v2-v4 with a retention time), and ``GroupMetadataValue`` v3. Reading accepts every
version; fields a version lacks take Kafka's defaults (-1 for leader epoch, timestamps and the
rebalance timeout, null for the group instance id).

Contract: pure functions over bytes; malformed input raises ``ProtocolError`` (a corrupt log is
the caller's to handle). Strings are UTF-8 and come back exactly as written when they were valid
UTF-8 (Kafka, like ``protocol.primitives``, replaces malformed sequences when it decodes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from uuid import UUID

from protocol.errors import ProtocolError
from protocol.primitives import (
    I8,
    I16,
    I32,
    I64,
    read_array_len,
    read_bytes,
    read_compact_array_len,
    read_compact_bytes,
    read_compact_nullable_string,
    read_compact_string,
    read_nullable_string,
    read_string,
    read_uuid,
    skip_tagged_fields,
    write_bytes,
    write_compact_array_len,
    write_compact_bytes,
    write_compact_nullable_string,
    write_compact_string,
    write_nullable_string,
    write_string,
    write_uuid,
)

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1
GROUP_METADATA_VALUE_VERSION = 3
VALUE_VERSION_MAX = 4
FLEXIBLE_VALUE_VERSION = 4

NO_TIMESTAMP = -1
NO_LEADER_EPOCH = -1

# Key versions of the KIP-848 consumer group records.
CONSUMER_GROUP_METADATA_KEY_VERSION = 3
CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION = 4
CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION = 5
CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION = 6
CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION = 7
CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION = 8
CONSUMER_GROUP_REGULAR_EXPRESSION_KEY_VERSION = 16
CONSUMER_GROUP_VALUE_VERSION = 0

_INT_MIN = -(2**31)


# --- record types --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = NO_LEADER_EPOCH
    metadata: str = ""
    commit_timestamp_ms: int = NO_TIMESTAMP
    expire_timestamp_ms: int = NO_TIMESTAMP  # written only by value version 1


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp_ms: int = NO_TIMESTAMP
    members: tuple[MemberMetadata, ...] = ()


# --- consumer group (KIP-848) record types ------------------------------------------------------

# A member's partitions as the records carry them: (topic id, partitions) pairs.
TopicPartitions = tuple[tuple[UUID, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class TopicMetadataRecord:
    topic_id: UUID
    topic_name: str
    num_partitions: int
    # (partition, racks); deprecated in Kafka and written empty, as Kafka 4.0 writes it.
    partition_racks: tuple[tuple[int, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class ConsumerGroupPartitionMetadataValue:
    topics: tuple[TopicMetadataRecord, ...]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberValue:
    topic_partitions: TopicPartitions


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int  # MemberState's byte (broker.group.consumer.MemberState)
    assigned_partitions: TopicPartitions
    partitions_pending_revocation: TopicPartitions


@dataclass(frozen=True, slots=True)
class ConsumerGroupRegularExpressionKey:
    group: str
    regex: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupRegularExpressionValue:
    topics: tuple[str, ...]
    version: int  # Kafka: the metadata image offset it was resolved against; here the coordinator's topics version
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class UnknownKey:
    """A key version this coordinator does not handle (share and streams group records)."""

    version: int


ConsumerGroupKey = (ConsumerGroupMetadataKey | ConsumerGroupPartitionMetadataKey | ConsumerGroupMemberMetadataKey
                    | ConsumerGroupTargetAssignmentMetadataKey | ConsumerGroupTargetAssignmentMemberKey
                    | ConsumerGroupCurrentMemberAssignmentKey | ConsumerGroupRegularExpressionKey)
ConsumerGroupValue = (ConsumerGroupMetadataValue | ConsumerGroupPartitionMetadataValue
                      | ConsumerGroupMemberMetadataValue | ConsumerGroupTargetAssignmentMetadataValue
                      | ConsumerGroupTargetAssignmentMemberValue | ConsumerGroupCurrentMemberAssignmentValue
                      | ConsumerGroupRegularExpressionValue)
CONSUMER_GROUP_KEYS = (ConsumerGroupMetadataKey, ConsumerGroupPartitionMetadataKey, ConsumerGroupMemberMetadataKey,
                       ConsumerGroupTargetAssignmentMetadataKey, ConsumerGroupTargetAssignmentMemberKey,
                       ConsumerGroupCurrentMemberAssignmentKey, ConsumerGroupRegularExpressionKey)

RecordKey = OffsetCommitKey | GroupMetadataKey | ConsumerGroupKey | UnknownKey
RecordValue = OffsetCommitValue | GroupMetadataValue | ConsumerGroupValue


# --- placement -----------------------------------------------------------------------------------


def java_string_hashcode(s: str) -> int:
    """Java's ``String.hashCode``: ``sum(c[i] * 31**(n-1-i))`` over UTF-16 code units, as an int32."""
    h = 0
    units = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def java_abs(n: int) -> int:
    """Kafka's ``Utils.abs``: the absolute value, except that Integer.MIN_VALUE maps to 0."""
    return 0 if n == _INT_MIN else abs(n)


def partition_for(group_id: str, offsets_topic_partitions: int) -> int:
    """The ``__consumer_offsets`` partition that holds ``group_id`` (Kafka's ``partitionFor``)."""
    assert offsets_topic_partitions > 0
    return java_abs(java_string_hashcode(group_id)) % offsets_topic_partitions


# --- encoding ------------------------------------------------------------------------------------


_CONSUMER_KEY_VERSIONS: dict[type, int] = {
    ConsumerGroupMetadataKey: CONSUMER_GROUP_METADATA_KEY_VERSION,
    ConsumerGroupPartitionMetadataKey: CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION,
    ConsumerGroupMemberMetadataKey: CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION,
    ConsumerGroupTargetAssignmentMetadataKey: CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION,
    ConsumerGroupTargetAssignmentMemberKey: CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
    ConsumerGroupCurrentMemberAssignmentKey: CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
    ConsumerGroupRegularExpressionKey: CONSUMER_GROUP_REGULAR_EXPRESSION_KEY_VERSION,
}


def encode_key(key: OffsetCommitKey | GroupMetadataKey | ConsumerGroupKey) -> bytes:
    out = bytearray()
    if isinstance(key, OffsetCommitKey):
        out += I16.pack(OFFSET_COMMIT_KEY_VERSION)
        write_string(out, key.group)
        write_string(out, key.topic)
        out += I32.pack(key.partition)
    elif isinstance(key, GroupMetadataKey):
        out += I16.pack(GROUP_METADATA_KEY_VERSION)
        write_string(out, key.group)
    else:
        out += I16.pack(_CONSUMER_KEY_VERSIONS[type(key)])
        write_string(out, key.group)
        if isinstance(key, ConsumerGroupRegularExpressionKey):
            write_string(out, key.regex)
        elif isinstance(key, (ConsumerGroupMemberMetadataKey, ConsumerGroupTargetAssignmentMemberKey,
                              ConsumerGroupCurrentMemberAssignmentKey)):
            write_string(out, key.member_id)
    return bytes(out)


def offset_commit_value_version(value: OffsetCommitValue) -> int:
    """The version Kafka writes: v1 when the commit has an expire timestamp, else v3."""
    if value.expire_timestamp_ms != NO_TIMESTAMP:
        return OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY
    return OFFSET_COMMIT_VALUE_VERSION


def encode_value(value: RecordValue, version: int | None = None) -> bytes:
    """A value with its version prefix; ``version`` defaults to the one Kafka writes."""
    if isinstance(value, OffsetCommitValue):
        v = offset_commit_value_version(value) if version is None else version
        return _encode_offset_commit_value(value, v)
    if isinstance(value, GroupMetadataValue):
        v = GROUP_METADATA_VALUE_VERSION if version is None else version
        return _encode_group_metadata_value(value, v)
    assert version in (None, CONSUMER_GROUP_VALUE_VERSION), version
    return _encode_consumer_group_value(value)


def _encode_offset_commit_value(value: OffsetCommitValue, version: int) -> bytes:
    assert 0 <= version <= VALUE_VERSION_MAX
    flexible = version >= FLEXIBLE_VALUE_VERSION
    out = bytearray(I16.pack(version))
    out += I64.pack(value.offset)
    if version >= 3:
        out += I32.pack(value.leader_epoch)
    if flexible:
        write_compact_string(out, value.metadata)
    else:
        write_string(out, value.metadata)
    out += I64.pack(value.commit_timestamp_ms)
    if version == 1:
        out += I64.pack(value.expire_timestamp_ms)
    if flexible:
        out += b"\x00"
    return bytes(out)


def _encode_group_metadata_value(value: GroupMetadataValue, version: int) -> bytes:
    assert 0 <= version <= VALUE_VERSION_MAX
    flexible = version >= FLEXIBLE_VALUE_VERSION
    put_string = write_compact_string if flexible else write_string
    put_nullable = write_compact_nullable_string if flexible else write_nullable_string
    put_bytes = write_compact_bytes if flexible else write_bytes
    out = bytearray(I16.pack(version))
    put_string(out, value.protocol_type)
    out += I32.pack(value.generation)
    put_nullable(out, value.protocol)
    put_nullable(out, value.leader)
    if version >= 2:
        out += I64.pack(value.current_state_timestamp_ms)
    if flexible:
        write_compact_array_len(out, len(value.members))
    else:
        out += I32.pack(len(value.members))
    for m in value.members:
        put_string(out, m.member_id)
        if version >= 3:
            put_nullable(out, m.group_instance_id)
        put_string(out, m.client_id)
        put_string(out, m.client_host)
        if version >= 1:
            out += I32.pack(m.rebalance_timeout_ms)
        out += I32.pack(m.session_timeout_ms)
        put_bytes(out, m.subscription)
        put_bytes(out, m.assignment)
        if flexible:
            out += b"\x00"
    if flexible:
        out += b"\x00"
    return bytes(out)


def _write_topic_partitions(out: bytearray, topic_partitions: TopicPartitions) -> None:
    write_compact_array_len(out, len(topic_partitions))
    for topic_id, partitions in topic_partitions:
        write_uuid(out, topic_id)
        write_compact_array_len(out, len(partitions))
        out += struct.pack(f">{len(partitions)}i", *partitions)
        out += b"\x00"


def _write_compact_strings(out: bytearray, values: tuple[str, ...]) -> None:
    write_compact_array_len(out, len(values))
    for v in values:
        write_compact_string(out, v)


def _encode_consumer_group_value(value: ConsumerGroupValue) -> bytes:
    out = bytearray(I16.pack(CONSUMER_GROUP_VALUE_VERSION))
    if isinstance(value, ConsumerGroupMetadataValue):
        out += I32.pack(value.epoch)
    elif isinstance(value, ConsumerGroupPartitionMetadataValue):
        write_compact_array_len(out, len(value.topics))
        for t in value.topics:
            write_uuid(out, t.topic_id)
            write_compact_string(out, t.topic_name)
            out += I32.pack(t.num_partitions)
            write_compact_array_len(out, len(t.partition_racks))
            for partition, racks in t.partition_racks:
                out += I32.pack(partition)
                _write_compact_strings(out, racks)
                out += b"\x00"
            out += b"\x00"
    elif isinstance(value, ConsumerGroupMemberMetadataValue):
        write_compact_nullable_string(out, value.instance_id)
        write_compact_nullable_string(out, value.rack_id)
        write_compact_string(out, value.client_id)
        write_compact_string(out, value.client_host)
        _write_compact_strings(out, value.subscribed_topic_names)
        write_compact_nullable_string(out, value.subscribed_topic_regex)
        out += I32.pack(value.rebalance_timeout_ms)
        write_compact_nullable_string(out, value.server_assignor)
    elif isinstance(value, ConsumerGroupTargetAssignmentMetadataValue):
        out += I32.pack(value.assignment_epoch)
    elif isinstance(value, ConsumerGroupTargetAssignmentMemberValue):
        _write_topic_partitions(out, value.topic_partitions)
    elif isinstance(value, ConsumerGroupCurrentMemberAssignmentValue):
        out += I32.pack(value.member_epoch)
        out += I32.pack(value.previous_member_epoch)
        out += I8.pack(value.state)
        _write_topic_partitions(out, value.assigned_partitions)
        _write_topic_partitions(out, value.partitions_pending_revocation)
    else:
        assert isinstance(value, ConsumerGroupRegularExpressionValue), value
        _write_compact_strings(out, value.topics)
        out += I64.pack(value.version)
        out += I64.pack(value.timestamp_ms)
    out += b"\x00"
    return bytes(out)


# --- decoding ------------------------------------------------------------------------------------


def decode_key(data: bytes | bytearray | memoryview) -> RecordKey:
    buf = memoryview(data)
    try:
        (version,) = I16.unpack_from(buf, 0)
        pos = 2
        if version in (0, 1):
            group, pos = read_string(buf, pos)
            topic, pos = read_string(buf, pos)
            (partition,) = I32.unpack_from(buf, pos)
            return OffsetCommitKey(group, topic, partition)
        if version == 2:
            group, pos = read_string(buf, pos)
            return GroupMetadataKey(group)
        if version in (CONSUMER_GROUP_METADATA_KEY_VERSION, CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION,
                       CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION):
            group, pos = read_string(buf, pos)
            if version == CONSUMER_GROUP_METADATA_KEY_VERSION:
                return ConsumerGroupMetadataKey(group)
            if version == CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION:
                return ConsumerGroupPartitionMetadataKey(group)
            return ConsumerGroupTargetAssignmentMetadataKey(group)
        if version in (CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION, CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
                       CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
                       CONSUMER_GROUP_REGULAR_EXPRESSION_KEY_VERSION):
            group, pos = read_string(buf, pos)
            second, pos = read_string(buf, pos)
            if version == CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION:
                return ConsumerGroupMemberMetadataKey(group, second)
            if version == CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION:
                return ConsumerGroupTargetAssignmentMemberKey(group, second)
            if version == CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION:
                return ConsumerGroupCurrentMemberAssignmentKey(group, second)
            return ConsumerGroupRegularExpressionKey(group, second)
    except (struct.error, IndexError) as e:
        raise ProtocolError(f"truncated __consumer_offsets key: {e}") from None
    if version < 0:
        raise ProtocolError(f"__consumer_offsets key has negative version {version}")
    return UnknownKey(version)


def decode_value(key: RecordKey, data: bytes | bytearray | memoryview | None) -> RecordValue | None:
    """The value for ``key``; None for a tombstone (and for the values of unknown keys)."""
    if data is None or isinstance(key, UnknownKey):
        return None
    buf = memoryview(data)
    try:
        (version,) = I16.unpack_from(buf, 0)
        if isinstance(key, CONSUMER_GROUP_KEYS):
            if version != CONSUMER_GROUP_VALUE_VERSION:
                raise ProtocolError(f"{type(key).__name__} value version {version} is not 0")
            return _decode_consumer_group_value(key, buf)
        if not 0 <= version <= VALUE_VERSION_MAX:
            raise ProtocolError(f"__consumer_offsets value version {version} is not 0-{VALUE_VERSION_MAX}")
        if isinstance(key, OffsetCommitKey):
            return _decode_offset_commit_value(buf, version)
        return _decode_group_metadata_value(buf, version)
    except (struct.error, IndexError) as e:
        raise ProtocolError(f"truncated __consumer_offsets value: {e}") from None


def _decode_offset_commit_value(buf: memoryview, version: int) -> OffsetCommitValue:
    flexible = version >= FLEXIBLE_VALUE_VERSION
    pos = 2
    (offset,) = I64.unpack_from(buf, pos)
    pos += 8
    leader_epoch = NO_LEADER_EPOCH
    if version >= 3:
        (leader_epoch,) = I32.unpack_from(buf, pos)
        pos += 4
    metadata, pos = read_compact_string(buf, pos) if flexible else read_string(buf, pos)
    (commit_ts,) = I64.unpack_from(buf, pos)
    pos += 8
    expire_ts = NO_TIMESTAMP
    if version == 1:
        (expire_ts,) = I64.unpack_from(buf, pos)
        pos += 8
    if flexible:
        skip_tagged_fields(buf, pos)
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_ts, expire_ts)


def _decode_group_metadata_value(buf: memoryview, version: int) -> GroupMetadataValue:
    flexible = version >= FLEXIBLE_VALUE_VERSION
    get_string = read_compact_string if flexible else read_string
    get_nullable = read_compact_nullable_string if flexible else read_nullable_string
    get_bytes = read_compact_bytes if flexible else read_bytes
    pos = 2
    protocol_type, pos = get_string(buf, pos)
    (generation,) = I32.unpack_from(buf, pos)
    pos += 4
    protocol, pos = get_nullable(buf, pos)
    leader, pos = get_nullable(buf, pos)
    state_ts = NO_TIMESTAMP
    if version >= 2:
        (state_ts,) = I64.unpack_from(buf, pos)
        pos += 8
    # Each member takes at least 14 bytes even in the compact encoding.
    if flexible:
        count, pos = read_compact_array_len(buf, pos, 14)
        if count < 0:
            raise ProtocolError("GroupMetadataValue members array is null")
    else:
        count, pos = read_array_len(buf, pos, 14)
    members = []
    for _ in range(count):
        member_id, pos = get_string(buf, pos)
        instance_id: str | None = None
        if version >= 3:
            instance_id, pos = get_nullable(buf, pos)
        client_id, pos = get_string(buf, pos)
        client_host, pos = get_string(buf, pos)
        rebalance_timeout = -1
        if version >= 1:
            (rebalance_timeout,) = I32.unpack_from(buf, pos)
            pos += 4
        (session_timeout,) = I32.unpack_from(buf, pos)
        pos += 4
        subscription, pos = get_bytes(buf, pos)
        assignment, pos = get_bytes(buf, pos)
        if flexible:
            pos = skip_tagged_fields(buf, pos)
        members.append(MemberMetadata(
            member_id, instance_id, client_id, client_host, rebalance_timeout, session_timeout,
            bytes(subscription), bytes(assignment),
        ))
    if flexible:
        skip_tagged_fields(buf, pos)
    return GroupMetadataValue(protocol_type, generation, protocol, leader, state_ts, tuple(members))


# --- decoding consumer group values --------------------------------------------------------------


def _read_topic_partitions(buf: memoryview, pos: int) -> tuple[TopicPartitions, int]:
    count, pos = read_compact_array_len(buf, pos, 18)
    if count < 0:
        raise ProtocolError("topic partitions array is null")
    out = []
    for _ in range(count):
        topic_id, pos = read_uuid(buf, pos)
        n, pos = read_compact_array_len(buf, pos, 4)
        if n < 0:
            raise ProtocolError("partitions array is null")
        partitions = struct.unpack_from(f">{n}i", buf, pos)
        pos += 4 * n
        pos = skip_tagged_fields(buf, pos)
        out.append((topic_id, tuple(partitions)))
    return tuple(out), pos


def _read_compact_strings(buf: memoryview, pos: int) -> tuple[tuple[str, ...], int]:
    count, pos = read_compact_array_len(buf, pos, 1)
    if count < 0:
        raise ProtocolError("string array is null")
    out = []
    for _ in range(count):
        s, pos = read_compact_string(buf, pos)
        out.append(s)
    return tuple(out), pos


def _decode_consumer_group_value(key: ConsumerGroupKey, buf: memoryview) -> ConsumerGroupValue:
    pos = 2
    value: ConsumerGroupValue
    if isinstance(key, ConsumerGroupMetadataKey):
        (epoch,) = I32.unpack_from(buf, pos)
        pos += 4
        value = ConsumerGroupMetadataValue(epoch)
    elif isinstance(key, ConsumerGroupPartitionMetadataKey):
        count, pos = read_compact_array_len(buf, pos, 23)
        if count < 0:
            raise ProtocolError("ConsumerGroupPartitionMetadataValue topics array is null")
        topics = []
        for _ in range(count):
            topic_id, pos = read_uuid(buf, pos)
            name, pos = read_compact_string(buf, pos)
            (num_partitions,) = I32.unpack_from(buf, pos)
            pos += 4
            n, pos = read_compact_array_len(buf, pos, 6)
            racks_by_partition = []
            for _ in range(max(n, 0)):
                (partition,) = I32.unpack_from(buf, pos)
                pos += 4
                racks, pos = _read_compact_strings(buf, pos)
                pos = skip_tagged_fields(buf, pos)
                racks_by_partition.append((partition, racks))
            pos = skip_tagged_fields(buf, pos)
            topics.append(TopicMetadataRecord(topic_id, name, num_partitions, tuple(racks_by_partition)))
        value = ConsumerGroupPartitionMetadataValue(tuple(topics))
    elif isinstance(key, ConsumerGroupMemberMetadataKey):
        instance_id, pos = read_compact_nullable_string(buf, pos)
        rack_id, pos = read_compact_nullable_string(buf, pos)
        client_id, pos = read_compact_string(buf, pos)
        client_host, pos = read_compact_string(buf, pos)
        names, pos = _read_compact_strings(buf, pos)
        regex, pos = read_compact_nullable_string(buf, pos)
        (rebalance_timeout_ms,) = I32.unpack_from(buf, pos)
        pos += 4
        assignor, pos = read_compact_nullable_string(buf, pos)
        value = ConsumerGroupMemberMetadataValue(instance_id, rack_id, client_id, client_host, names, regex,
                                                 rebalance_timeout_ms, assignor)
    elif isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
        (assignment_epoch,) = I32.unpack_from(buf, pos)
        pos += 4
        value = ConsumerGroupTargetAssignmentMetadataValue(assignment_epoch)
    elif isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
        tps, pos = _read_topic_partitions(buf, pos)
        value = ConsumerGroupTargetAssignmentMemberValue(tps)
    elif isinstance(key, ConsumerGroupCurrentMemberAssignmentKey):
        member_epoch, previous_epoch = struct.unpack_from(">ii", buf, pos)
        pos += 8
        (state,) = I8.unpack_from(buf, pos)
        pos += 1
        assigned, pos = _read_topic_partitions(buf, pos)
        pending, pos = _read_topic_partitions(buf, pos)
        value = ConsumerGroupCurrentMemberAssignmentValue(member_epoch, previous_epoch, state, assigned, pending)
    else:
        assert isinstance(key, ConsumerGroupRegularExpressionKey), key
        topics_, pos = _read_compact_strings(buf, pos)
        version, timestamp_ms = struct.unpack_from(">qq", buf, pos)
        pos += 16
        value = ConsumerGroupRegularExpressionValue(topics_, version, timestamp_ms)
    skip_tagged_fields(buf, pos)
    return value
