"""The records the group coordinator keeps in ``__consumer_offsets``, in Kafka's byte format.

What it owns. A hand-written codec for the four record types a classic group coordinator writes
and reads back: ``OffsetCommitKey``/``OffsetCommitValue`` (a committed offset) and
``GroupMetadataKey``/``GroupMetadataValue`` (a group's membership after a rebalance), plus the
placement rule that maps a group to its ``__consumer_offsets`` partition.

Layout (Kafka's, byte for byte). A record key is an int16 *key version* followed by the key's
fields; the key version says which record type it is: 0 and 1 are offset commits, 2 is group
metadata, 3 and above belong to the KIP-848 consumer and share groups (decoded as
``UnknownKey``; loading skips them, as Kafka's loader skips record types it does not know). A
record value is an int16 *value version* followed by the value's fields; a null value is a
tombstone. Value versions 0-3 use classic encodings (int16-length strings, int32-length bytes
and arrays); version 4 is flexible (compact lengths and a tagged-field section per struct, whose
unknown tags are skipped). Fields by version:

- ``OffsetCommitKey`` v0-1: group string, topic string, partition int32.
- ``OffsetCommitValue`` v0-4: offset int64; leader epoch int32 (v3+); metadata string; commit
  timestamp int64; expire timestamp int64 (v1 only).
- ``GroupMetadataKey`` v2: group string.
- ``GroupMetadataValue`` v0-4: protocol type string; generation int32; protocol nullable string;
  leader nullable string; current state timestamp int64 (v2+); members: member id string, group
  instance id nullable string (v3+), client id string, client host string, rebalance timeout int32
  (v1+), session timeout int32, subscription bytes, assignment bytes.

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

from protocol.errors import ProtocolError
from protocol.primitives import (
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
    skip_tagged_fields,
    write_bytes,
    write_compact_array_len,
    write_compact_bytes,
    write_compact_nullable_string,
    write_compact_string,
    write_nullable_string,
    write_string,
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


@dataclass(frozen=True, slots=True)
class UnknownKey:
    """A key version this coordinator does not handle (KIP-848 consumer or share group records)."""

    version: int


RecordKey = OffsetCommitKey | GroupMetadataKey | UnknownKey
RecordValue = OffsetCommitValue | GroupMetadataValue


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


def encode_key(key: OffsetCommitKey | GroupMetadataKey) -> bytes:
    out = bytearray()
    if isinstance(key, OffsetCommitKey):
        out += I16.pack(OFFSET_COMMIT_KEY_VERSION)
        write_string(out, key.group)
        write_string(out, key.topic)
        out += I32.pack(key.partition)
    else:
        out += I16.pack(GROUP_METADATA_KEY_VERSION)
        write_string(out, key.group)
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
    v = GROUP_METADATA_VALUE_VERSION if version is None else version
    return _encode_group_metadata_value(value, v)


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
