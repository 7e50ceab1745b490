"""KRaft metadata records: a small hand-written codec in Kafka's byte layout.

What it owns. One frozen dataclass per metadata record type the controller writes or the image
replays, and ``encode_record`` / ``decode_record`` between those values and the bytes of one
record's value in the metadata log. The schemas are Apache Kafka's
(``metadata/src/main/resources/common/metadata/*.json``); they are not in
``../shared/kafka-spec`` yet, so this module stands in for the generator and keeps to the fields
we use. Once the schemas are added there, ``tools.codegen`` should take over and this file
should shrink to the ``MetadataRecord`` union and the frame.

Layout (Kafka's ``AbstractApiMessageSerde``): an unsigned varint *frame version* (always 1; 0
was KRaft's 2.8 preview and is refused), an unsigned varint api key, an unsigned varint record
version, then the record's fields. Every metadata record is flexible from version 0: compact
strings and arrays (unsigned varint length + 1, 0 for null), and a tagged-field section after
every struct. Tagged fields are written only when they differ from their default, in ascending
tag order; on reading, tags we do not know are skipped.

Records (api key, versions: fields in wire order; ``tN`` is tagged field N, ``?`` nullable):

- 0 ``RegisterBrokerRecord`` v0-3: broker id, zk-migrating (v2+), incarnation id, broker epoch,
  endpoints, features, rack?, fenced, in controlled shutdown (v1+), t0 log dirs (v3+).
- 1 ``UnregisterBrokerRecord`` v0: broker id, broker epoch.
- 2 ``TopicRecord`` v0: name, topic id.
- 3 ``PartitionRecord`` v0-2: partition id, topic id, replicas, isr, removing, adding, leader,
  leader epoch, partition epoch, directories (v1+); t0 leader recovery state, t1 elr? (v2+),
  t2 last known elr? (v2+).
- 4 ``ConfigRecord`` v0: resource type, resource name, name, value? (null deletes).
- 5 ``PartitionChangeRecord`` v0-2: partition id, topic id; t0 isr?, t1 leader (-2: no change),
  t2 replicas?, t3 removing?, t4 adding?, t5 leader recovery state (-1: no change), t6 elr?
  (v2+), t7 last known elr? (v2+), t8 directories? (v1+).
- 7 ``FenceBrokerRecord`` v0 and 8 ``UnfenceBrokerRecord`` v0: broker id, broker epoch.
- 9 ``RemoveTopicRecord`` v0: topic id.
- 12 ``FeatureLevelRecord`` v0: feature name, level.
- 15 ``ProducerIdsRecord`` v0: broker id, broker epoch, next producer id.
- 17 ``BrokerRegistrationChangeRecord`` v0-2: broker id, broker epoch; t0 fenced (-1 unfence,
  1 fence), t1 in controlled shutdown (v1+), t2 log dirs (v2+).
- 20 ``NoOpRecord`` v0: nothing.

Versions. ``encode_record(record)`` writes the lowest version that carries every non-default
field (so a partition without ELR is a version 0 record, as a pre-KIP-966 cluster writes it);
``encode_record(record, version)`` writes a given version and raises ``EncodeError`` when the
record has a non-default value in a field that version lacks. Decoding gives the values of
fields a version lacks their defaults.

Records of a type this module does not know decode as ``UnknownRecord`` (api key, version and
the raw body), so replay can skip them, as a broker skips record types newer than itself.

Contract: pure functions over bytes. Malformed input raises ``ProtocolError`` (a corrupt log is
the caller's to handle); a record that cannot be written raises ``EncodeError``.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Self, TypeAlias, TypeVar

from protocol.errors import EncodeError, ProtocolError
from protocol.primitives import (
    I8,
    I16,
    I32,
    I64,
    U16,
    read_compact_array_len,
    read_compact_nullable_string,
    read_compact_string,
    read_tag_header,
    read_uuid,
    read_uvarint,
    uvarint_bytes,
    write_compact_array_len,
    write_compact_nullable_string,
    write_compact_string,
    write_tagged_raw,
)

FRAME_VERSION = 1
NO_LEADER = -1
NO_LEADER_CHANGE = -2

# LeaderRecoveryState (KIP-704): RECOVERED, or RECOVERING after an unclean election until the
# new leader says otherwise. -1 in a PartitionChangeRecord means "no change".
RECOVERED = 0
RECOVERING = 1
RECOVERY_NO_CHANGE = -1

# BrokerRegistrationChangeRecord's Fenced field: -1 unfences, 1 fences, 0 leaves it alone.
UNFENCE = -1
FENCE = 1
NO_FENCE_CHANGE = 0

IntList: TypeAlias = tuple[int, ...]
UuidList: TypeAlias = tuple[uuid.UUID, ...]
T = TypeVar("T")
_NO_UUIDS: UuidList = ()


# --- reading ---------------------------------------------------------------------------------------


class _Reader:
    """A position in a buffer; every read checks what remains and raises ProtocolError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def _fixed(self, s: struct.Struct, width: int) -> int:
        if self.pos + width > len(self.buf):
            raise ProtocolError("record truncated")
        (value,) = s.unpack_from(self.buf, self.pos)
        self.pos += width
        return int(value)

    def i8(self) -> int:
        return self._fixed(I8, 1)

    def i16(self) -> int:
        return self._fixed(I16, 2)

    def u16(self) -> int:
        return self._fixed(U16, 2)

    def i32(self) -> int:
        return self._fixed(I32, 4)

    def i64(self) -> int:
        return self._fixed(I64, 8)

    def boolean(self) -> bool:
        return self.i8() != 0

    def uvarint(self) -> int:
        value, self.pos = read_uvarint(self.buf, self.pos)
        return value

    def uuid(self) -> uuid.UUID:
        value, self.pos = read_uuid(self.buf, self.pos)
        return value

    def string(self) -> str:
        self._need(1)
        value, self.pos = read_compact_string(self.buf, self.pos)
        return value

    def nullable_string(self) -> str | None:
        self._need(1)
        value, self.pos = read_compact_nullable_string(self.buf, self.pos)
        return value

    def _count(self, item_bytes_min: int) -> int:
        self._need(1)
        n, self.pos = read_compact_array_len(self.buf, self.pos, item_bytes_min)
        return n

    def int32s(self) -> IntList:
        n = self._count(4)
        if n < 0:
            raise ProtocolError("non-nullable array is null")
        return tuple(self.i32() for _ in range(n))

    def nullable_int32s(self) -> IntList | None:
        n = self._count(4)
        return None if n < 0 else tuple(self.i32() for _ in range(n))

    def uuids(self) -> UuidList:
        n = self._count(16)
        if n < 0:
            raise ProtocolError("non-nullable array is null")
        return tuple(self.uuid() for _ in range(n))

    def nullable_uuids(self) -> UuidList | None:
        n = self._count(16)
        return None if n < 0 else tuple(self.uuid() for _ in range(n))

    def structs(self, item_bytes_min: int, read_one: Callable[[_Reader], T]) -> tuple[T, ...]:
        n = self._count(item_bytes_min)
        if n < 0:
            raise ProtocolError("non-nullable array is null")
        return tuple(read_one(self) for _ in range(n))

    def tags(self) -> dict[int, _Reader]:
        """A tagged-field section: a reader over each field's body, by tag (unknown tags too)."""
        count = self.uvarint()
        if count * 2 > len(self.buf) - self.pos:
            raise ProtocolError(f"tagged field count {count} cannot fit")
        found: dict[int, _Reader] = {}
        last = -1
        for _ in range(count):
            tag, start, end = read_tag_header(self.buf, self.pos)
            if tag <= last:
                raise ProtocolError(f"tagged field {tag} out of order")
            last = tag
            found[tag] = _Reader(self.buf[:end], start)
            self.pos = end
        return found

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise ProtocolError("record truncated")

    def done(self) -> None:
        """A tagged field's body must be read exactly."""
        if self.pos != len(self.buf):
            raise ProtocolError("tagged field has bytes left over")


def _tag(tags: dict[int, _Reader], tag: int, read: Callable[[_Reader], T], default: T) -> T:
    r = tags.get(tag)
    if r is None:
        return default
    value = read(r)
    r.done()
    return value


# --- writing ---------------------------------------------------------------------------------------


def _int32s(out: bytearray, values: IntList) -> None:
    write_compact_array_len(out, len(values))
    for v in values:
        out += I32.pack(v)


def _nullable_int32s(out: bytearray, values: IntList | None) -> None:
    if values is None:
        out += b"\x00"
    else:
        _int32s(out, values)


def _uuids(out: bytearray, values: UuidList) -> None:
    write_compact_array_len(out, len(values))
    for v in values:
        out += v.bytes


def _nullable_uuids(out: bytearray, values: UuidList | None) -> None:
    if values is None:
        out += b"\x00"
    else:
        _uuids(out, values)


def _tagged(out: bytearray, fields: list[tuple[int, bytes | bytearray]]) -> None:
    """Tagged fields in ascending order (``fields`` is built in that order)."""
    out += uvarint_bytes(len(fields))
    for tag, body in fields:
        write_tagged_raw(out, tag, body)


def _int32s_body(values: IntList) -> bytearray:
    out = bytearray()
    _int32s(out, values)
    return out


def _uuids_body(values: UuidList) -> bytearray:
    out = bytearray()
    _uuids(out, values)
    return out


def _int8(value: int) -> bytes:
    return I8.pack(value)


# --- record types ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    name: str
    host: str
    port: int
    security_protocol: int = 0  # 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL

    def _encode(self, out: bytearray) -> None:
        write_compact_string(out, self.name)
        write_compact_string(out, self.host)
        out += U16.pack(self.port)
        out += I16.pack(self.security_protocol)
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader) -> BrokerEndpoint:
        value = BrokerEndpoint(r.string(), r.string(), r.u16(), r.i16())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class BrokerFeature:
    name: str
    min_supported_version: int
    max_supported_version: int

    def _encode(self, out: bytearray) -> None:
        write_compact_string(out, self.name)
        out += I16.pack(self.min_supported_version)
        out += I16.pack(self.max_supported_version)
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader) -> BrokerFeature:
        value = BrokerFeature(r.string(), r.i16(), r.i16())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class RegisterBrokerRecord:
    API_KEY: ClassVar[int] = 0
    VERSIONS: ClassVar[tuple[int, int]] = (0, 3)

    broker_id: int
    incarnation_id: uuid.UUID
    broker_epoch: int
    endpoints: tuple[BrokerEndpoint, ...] = ()
    features: tuple[BrokerFeature, ...] = ()
    rack: str | None = None
    fenced: bool = True
    in_controlled_shutdown: bool = False  # v1+
    is_migrating_zk_broker: bool = False  # v2+
    log_dirs: UuidList = ()  # v3+, tagged

    def _min_version(self) -> int:
        if self.log_dirs:
            return 3
        if self.is_migrating_zk_broker:
            return 2
        return 1 if self.in_controlled_shutdown else 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.broker_id)
        if version >= 2:
            out += _int8(self.is_migrating_zk_broker)
        out += self.incarnation_id.bytes
        out += I64.pack(self.broker_epoch)
        write_compact_array_len(out, len(self.endpoints))
        for e in self.endpoints:
            e._encode(out)
        write_compact_array_len(out, len(self.features))
        for f in self.features:
            f._encode(out)
        write_compact_nullable_string(out, self.rack)
        out += _int8(self.fenced)
        if version >= 1:
            out += _int8(self.in_controlled_shutdown)
        tags: list[tuple[int, bytes | bytearray]] = []
        if version >= 3 and self.log_dirs:
            tags.append((0, _uuids_body(self.log_dirs)))
        _tagged(out, tags)

    @staticmethod
    def _decode(r: _Reader, version: int) -> RegisterBrokerRecord:
        broker_id = r.i32()
        migrating = r.boolean() if version >= 2 else False
        incarnation = r.uuid()
        epoch = r.i64()
        endpoints = r.structs(7, BrokerEndpoint._decode)
        features = r.structs(6, BrokerFeature._decode)
        rack = r.nullable_string()
        fenced = r.boolean()
        shutting_down = r.boolean() if version >= 1 else False
        tags = r.tags()
        log_dirs = _tag(tags, 0, _Reader.uuids, _NO_UUIDS) if version >= 3 else _NO_UUIDS
        return RegisterBrokerRecord(
            broker_id=broker_id, incarnation_id=incarnation, broker_epoch=epoch,
            endpoints=endpoints, features=features, rack=rack, fenced=fenced,
            in_controlled_shutdown=shutting_down, is_migrating_zk_broker=migrating,
            log_dirs=log_dirs)


@dataclass(frozen=True, slots=True)
class UnregisterBrokerRecord:
    API_KEY: ClassVar[int] = 1
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    broker_id: int
    broker_epoch: int

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.broker_id)
        out += I64.pack(self.broker_epoch)
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> UnregisterBrokerRecord:
        value = UnregisterBrokerRecord(r.i32(), r.i64())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class TopicRecord:
    API_KEY: ClassVar[int] = 2
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    name: str
    topic_id: uuid.UUID

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        write_compact_string(out, self.name)
        out += self.topic_id.bytes
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> TopicRecord:
        value = TopicRecord(r.string(), r.uuid())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    API_KEY: ClassVar[int] = 3
    VERSIONS: ClassVar[tuple[int, int]] = (0, 2)

    topic_id: uuid.UUID
    partition_id: int
    replicas: IntList
    isr: IntList
    leader: int
    leader_epoch: int = 0
    partition_epoch: int = 0
    removing_replicas: IntList = ()
    adding_replicas: IntList = ()
    leader_recovery_state: int = RECOVERED
    directories: UuidList = ()  # v1+
    elr: IntList | None = None  # v2+, tagged
    last_known_elr: IntList | None = None  # v2+, tagged

    def _min_version(self) -> int:
        if self.elr is not None or self.last_known_elr is not None:
            return 2
        return 1 if self.directories else 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.partition_id)
        out += self.topic_id.bytes
        _int32s(out, self.replicas)
        _int32s(out, self.isr)
        _int32s(out, self.removing_replicas)
        _int32s(out, self.adding_replicas)
        out += I32.pack(self.leader)
        out += I32.pack(self.leader_epoch)
        out += I32.pack(self.partition_epoch)
        if version >= 1:
            _uuids(out, self.directories)
        tags: list[tuple[int, bytes | bytearray]] = []
        if self.leader_recovery_state != RECOVERED:
            tags.append((0, _int8(self.leader_recovery_state)))
        if version >= 2:
            if self.elr is not None:
                tags.append((1, _int32s_body(self.elr)))
            if self.last_known_elr is not None:
                tags.append((2, _int32s_body(self.last_known_elr)))
        _tagged(out, tags)

    @staticmethod
    def _decode(r: _Reader, version: int) -> PartitionRecord:
        partition_id = r.i32()
        topic_id = r.uuid()
        replicas, isr, removing, adding = r.int32s(), r.int32s(), r.int32s(), r.int32s()
        leader, leader_epoch, partition_epoch = r.i32(), r.i32(), r.i32()
        directories = r.uuids() if version >= 1 else ()
        tags = r.tags()
        recovery = _tag(tags, 0, _Reader.i8, RECOVERED)
        elr = _tag(tags, 1, _Reader.nullable_int32s, None) if version >= 2 else None
        last_known = _tag(tags, 2, _Reader.nullable_int32s, None) if version >= 2 else None
        return PartitionRecord(
            topic_id=topic_id, partition_id=partition_id, replicas=replicas, isr=isr, leader=leader,
            leader_epoch=leader_epoch, partition_epoch=partition_epoch, removing_replicas=removing,
            adding_replicas=adding, leader_recovery_state=recovery,
            directories=directories, elr=elr, last_known_elr=last_known)


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    API_KEY: ClassVar[int] = 4
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    resource_type: int  # 2 topic, 4 broker (Kafka's ConfigResource.Type)
    resource_name: str
    name: str
    value: str | None  # None deletes the key

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += _int8(self.resource_type)
        write_compact_string(out, self.resource_name)
        write_compact_string(out, self.name)
        write_compact_nullable_string(out, self.value)
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> ConfigRecord:
        value = ConfigRecord(r.i8(), r.string(), r.string(), r.nullable_string())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class PartitionChangeRecord:
    """A change to one partition; ``None`` (and -2, -1 below) mean "unchanged".

    Replaying it always bumps the partition epoch, and bumps the leader epoch whenever
    ``leader`` is not ``NO_LEADER_CHANGE`` (even when it names the current leader: that is how
    the controller forces a new leader epoch).
    """

    API_KEY: ClassVar[int] = 5
    VERSIONS: ClassVar[tuple[int, int]] = (0, 2)

    topic_id: uuid.UUID
    partition_id: int
    isr: IntList | None = None
    leader: int = NO_LEADER_CHANGE
    replicas: IntList | None = None
    removing_replicas: IntList | None = None
    adding_replicas: IntList | None = None
    leader_recovery_state: int = RECOVERY_NO_CHANGE
    elr: IntList | None = None  # v2+
    last_known_elr: IntList | None = None  # v2+
    directories: UuidList | None = None  # v1+

    def _min_version(self) -> int:
        if self.elr is not None or self.last_known_elr is not None:
            return 2
        return 1 if self.directories is not None else 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.partition_id)
        out += self.topic_id.bytes
        tags: list[tuple[int, bytes | bytearray]] = []
        if self.isr is not None:
            tags.append((0, _int32s_body(self.isr)))
        if self.leader != NO_LEADER_CHANGE:
            tags.append((1, I32.pack(self.leader)))
        for tag, values in ((2, self.replicas), (3, self.removing_replicas), (4, self.adding_replicas)):
            if values is not None:
                tags.append((tag, _int32s_body(values)))
        if self.leader_recovery_state != RECOVERY_NO_CHANGE:
            tags.append((5, _int8(self.leader_recovery_state)))
        if version >= 2:
            for tag, values in ((6, self.elr), (7, self.last_known_elr)):
                if values is not None:
                    tags.append((tag, _int32s_body(values)))
        if version >= 1 and self.directories is not None:
            tags.append((8, _uuids_body(self.directories)))
        _tagged(out, tags)

    @staticmethod
    def _decode(r: _Reader, version: int) -> PartitionChangeRecord:
        partition_id = r.i32()
        topic_id = r.uuid()
        tags = r.tags()
        arrays = _Reader.nullable_int32s
        return PartitionChangeRecord(
            topic_id=topic_id, partition_id=partition_id,
            isr=_tag(tags, 0, arrays, None),
            leader=_tag(tags, 1, _Reader.i32, NO_LEADER_CHANGE),
            replicas=_tag(tags, 2, arrays, None),
            removing_replicas=_tag(tags, 3, arrays, None),
            adding_replicas=_tag(tags, 4, arrays, None),
            leader_recovery_state=_tag(tags, 5, _Reader.i8, RECOVERY_NO_CHANGE),
            elr=_tag(tags, 6, arrays, None) if version >= 2 else None,
            last_known_elr=_tag(tags, 7, arrays, None) if version >= 2 else None,
            directories=_tag(tags, 8, _Reader.nullable_uuids, None) if version >= 1 else None,
        )


@dataclass(frozen=True, slots=True)
class _BrokerEpochRecord:
    """FenceBrokerRecord and UnfenceBrokerRecord: the same two fields under two api keys."""

    API_KEY: ClassVar[int]
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    broker_id: int
    broker_epoch: int

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.broker_id)
        out += I64.pack(self.broker_epoch)
        out += b"\x00"

    @classmethod
    def _decode(cls, r: _Reader, version: int) -> Self:
        value = cls(r.i32(), r.i64())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class FenceBrokerRecord(_BrokerEpochRecord):
    API_KEY: ClassVar[int] = 7


@dataclass(frozen=True, slots=True)
class UnfenceBrokerRecord(_BrokerEpochRecord):
    API_KEY: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class RemoveTopicRecord:
    API_KEY: ClassVar[int] = 9
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    topic_id: uuid.UUID

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += self.topic_id.bytes
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> RemoveTopicRecord:
        value = RemoveTopicRecord(r.uuid())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class FeatureLevelRecord:
    API_KEY: ClassVar[int] = 12
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    name: str
    feature_level: int  # 0 removes the feature

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        write_compact_string(out, self.name)
        out += I16.pack(self.feature_level)
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> FeatureLevelRecord:
        value = FeatureLevelRecord(r.string(), r.i16())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class ProducerIdsRecord:
    API_KEY: ClassVar[int] = 15
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    broker_id: int
    broker_epoch: int
    next_producer_id: int

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.broker_id)
        out += I64.pack(self.broker_epoch)
        out += I64.pack(self.next_producer_id)
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> ProducerIdsRecord:
        value = ProducerIdsRecord(r.i32(), r.i64(), r.i64())
        r.tags()
        return value


@dataclass(frozen=True, slots=True)
class BrokerRegistrationChangeRecord:
    API_KEY: ClassVar[int] = 17
    VERSIONS: ClassVar[tuple[int, int]] = (0, 2)

    broker_id: int
    broker_epoch: int
    fenced: int = NO_FENCE_CHANGE  # UNFENCE, NO_FENCE_CHANGE or FENCE
    in_controlled_shutdown: int = 0  # v1+: 1 enters controlled shutdown, 0 no change
    log_dirs: UuidList = ()  # v2+

    def _min_version(self) -> int:
        if self.log_dirs:
            return 2
        return 1 if self.in_controlled_shutdown else 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += I32.pack(self.broker_id)
        out += I64.pack(self.broker_epoch)
        tags: list[tuple[int, bytes | bytearray]] = []
        if self.fenced != NO_FENCE_CHANGE:
            tags.append((0, _int8(self.fenced)))
        if version >= 1 and self.in_controlled_shutdown:
            tags.append((1, _int8(self.in_controlled_shutdown)))
        if version >= 2 and self.log_dirs:
            tags.append((2, _uuids_body(self.log_dirs)))
        _tagged(out, tags)

    @staticmethod
    def _decode(r: _Reader, version: int) -> BrokerRegistrationChangeRecord:
        broker_id, epoch = r.i32(), r.i64()
        tags = r.tags()
        return BrokerRegistrationChangeRecord(
            broker_id=broker_id, broker_epoch=epoch,
            fenced=_tag(tags, 0, _Reader.i8, NO_FENCE_CHANGE),
            in_controlled_shutdown=_tag(tags, 1, _Reader.i8, 0) if version >= 1 else 0,
            log_dirs=_tag(tags, 2, _Reader.uuids, _NO_UUIDS) if version >= 2 else _NO_UUIDS,
        )


@dataclass(frozen=True, slots=True)
class NoOpRecord:
    API_KEY: ClassVar[int] = 20
    VERSIONS: ClassVar[tuple[int, int]] = (0, 0)

    def _min_version(self) -> int:
        return 0

    def _encode(self, out: bytearray, version: int) -> None:
        out += b"\x00"

    @staticmethod
    def _decode(r: _Reader, version: int) -> NoOpRecord:
        r.tags()
        return NoOpRecord()


@dataclass(frozen=True, slots=True)
class UnknownRecord:
    """A record type this codec does not know, kept as it came: replay skips it."""

    api_key: int
    version: int
    body: bytes


KnownRecord: TypeAlias = (
    RegisterBrokerRecord | UnregisterBrokerRecord | TopicRecord | PartitionRecord | ConfigRecord
    | PartitionChangeRecord | FenceBrokerRecord | UnfenceBrokerRecord | RemoveTopicRecord
    | FeatureLevelRecord | ProducerIdsRecord | BrokerRegistrationChangeRecord | NoOpRecord
)
MetadataRecord: TypeAlias = KnownRecord | UnknownRecord

RECORD_TYPES: dict[int, type[KnownRecord]] = {
    cls.API_KEY: cls for cls in (
        RegisterBrokerRecord, UnregisterBrokerRecord, TopicRecord, PartitionRecord, ConfigRecord,
        PartitionChangeRecord, FenceBrokerRecord, UnfenceBrokerRecord, RemoveTopicRecord,
        FeatureLevelRecord, ProducerIdsRecord, BrokerRegistrationChangeRecord, NoOpRecord,
    )
}

VERSION_MAX = 0x7FFF  # frame fields are read as unsigned varints but must fit an int16


# --- the frame -------------------------------------------------------------------------------------


def encode_record(record: MetadataRecord, version: int | None = None) -> bytes:
    """One record's value in the metadata log: frame version, api key, version, fields.

    ``version`` None writes the lowest version that carries every non-default field.
    """
    if isinstance(record, UnknownRecord):
        if version is not None and version != record.version:
            raise EncodeError(f"an unknown record (api key {record.api_key}) can only be written as it came")
        return (uvarint_bytes(FRAME_VERSION) + uvarint_bytes(record.api_key) + uvarint_bytes(record.version)
                + record.body)
    low, high = record.VERSIONS
    needed = record._min_version()
    if version is None:
        version = needed
    elif not low <= version <= high:
        raise EncodeError(f"{type(record).__name__} has versions {low}-{high}, not {version}")
    elif version < needed:
        raise EncodeError(f"{type(record).__name__} version {version} cannot carry its non-default "
                          f"fields (they need version {needed})")
    out = bytearray(uvarint_bytes(FRAME_VERSION))
    out += uvarint_bytes(record.API_KEY)
    out += uvarint_bytes(version)
    record._encode(out, version)
    return bytes(out)


def decode_record(data: bytes | bytearray | memoryview) -> MetadataRecord:
    """The record in one metadata log record's value; raises ProtocolError if malformed."""
    return decode_record_and_version(data)[0]


def decode_record_and_version(data: bytes | bytearray | memoryview) -> tuple[MetadataRecord, int]:
    r = _Reader(memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data))
    frame = r.uvarint()
    if frame != FRAME_VERSION:
        if frame == 0:
            raise ProtocolError("metadata record frame version 0 (KRaft preview) is not supported")
        raise ProtocolError(f"unknown metadata record frame version {frame}")
    api_key, version = r.uvarint(), r.uvarint()
    if api_key > VERSION_MAX or version > VERSION_MAX:
        raise ProtocolError("metadata record type or version does not fit an int16")
    cls = RECORD_TYPES.get(api_key)
    if cls is None:
        return UnknownRecord(api_key, version, bytes(r.buf[r.pos:])), version
    low, high = cls.VERSIONS
    if not low <= version <= high:
        raise ProtocolError(f"{cls.__name__} version {version} is not one of {low}-{high}")
    try:
        record = cls._decode(r, version)
    except (IndexError, ValueError) as e:  # ValueError covers struct.error
        raise ProtocolError(f"malformed {cls.__name__}: {e}") from None
    if r.pos != len(r.buf):
        raise ProtocolError(f"{len(r.buf) - r.pos} byte(s) after a {cls.__name__}")
    return record, version


__all__ = [
    "FENCE",
    "FRAME_VERSION",
    "NO_FENCE_CHANGE",
    "NO_LEADER",
    "NO_LEADER_CHANGE",
    "RECORD_TYPES",
    "RECOVERED",
    "RECOVERING",
    "RECOVERY_NO_CHANGE",
    "UNFENCE",
    "BrokerEndpoint",
    "BrokerFeature",
    "BrokerRegistrationChangeRecord",
    "ConfigRecord",
    "FeatureLevelRecord",
    "FenceBrokerRecord",
    "KnownRecord",
    "MetadataRecord",
    "NoOpRecord",
    "PartitionChangeRecord",
    "PartitionRecord",
    "ProducerIdsRecord",
    "RegisterBrokerRecord",
    "RemoveTopicRecord",
    "TopicRecord",
    "UnfenceBrokerRecord",
    "UnknownRecord",
    "UnregisterBrokerRecord",
    "decode_record",
    "decode_record_and_version",
    "encode_record",
]
