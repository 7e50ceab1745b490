"""The metadata image: the cluster's state as a pure replay of the metadata log's records.

What it owns. ``MetadataImage``, an immutable value holding what the committed records say:
registered brokers (epoch, incarnation, rack, endpoints, fenced, in controlled shutdown), topics
by name and by id, each partition's ``PartitionRegistration`` (replicas, ISR, leader, leader
epoch, partition epoch, recovery state, replicas being added or removed by a reassignment, and
KIP-966's eligible leader replicas and last known ELR), config overrides (per topic, and the
cluster-level defaults Kafka keeps under the broker resource with an empty name), finalized feature
levels and the next producer id block. ``image.apply(records, base_offset=...)`` returns a new
image; the old one is untouched, so a reader may hold an image while the next is built. The
queries the broker needs (partitions a broker leads or replicates, a topic by id, the offline
replicas of a partition, ...) are methods, and ``local_changes(old, new, broker_id)`` is the delta
a broker acts on: which partitions it must now lead, follow, or delete.

Also here: Kafka's rules for legal topic names (at most 249 characters of ``[a-zA-Z0-9._-]``, not
``.`` or ``..``) and for names that collide once ``.`` and ``_`` are treated alike, so the
controller can apply them without importing the broker.

Theory of operation. Replay follows Kafka's ``MetadataDelta``/``*Image`` classes: a delta
collects the records' effects over a base image and ``apply`` builds the next image, sharing every
topic and broker the records did not touch (``old.topics_by_id[x] is new.topics_by_id[x]`` when
``x`` did not change), so a record costs time in the size of what it changed plus a copy of the
top-level maps once per batch, not once per record. A ``PartitionChangeRecord`` always bumps the
partition epoch and bumps the leader epoch when its leader field is set (-2 means unchanged; the
controller sets it to the current leader to force a bump). The offset of each
``RegisterBrokerRecord`` is kept, as ``BrokerRegistration.registration_offset``: a broker is
caught up once its metadata offset has reached it.

Contract. Replay never raises for record types it does not know (``UnknownRecord``, skipped) or
for records that change nothing; it raises ``ReplayError`` for a record that contradicts the
image (a partition of an unknown topic, a second ``TopicRecord`` for a name, a change to an
unregistered broker): the log is corrupt or the controller has a bug, and the caller must stop.
Pure: no I/O, clock or randomness. Bounds: the image grows with brokers, topics, partitions and
config keys, like Kafka's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from replication.records import (
    FENCE,
    NO_LEADER,
    NO_LEADER_CHANGE,
    RECOVERED,
    RECOVERY_NO_CHANGE,
    UNFENCE,
    BrokerEndpoint,
    BrokerFeature,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    FeatureLevelRecord,
    FenceBrokerRecord,
    MetadataRecord,
    NoOpRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnfenceBrokerRecord,
    UnknownRecord,
    UnregisterBrokerRecord,
)

# ConfigResource types (Kafka's ConfigResource.Type ids, as in DescribeConfigs).
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4

METADATA_VERSION_FEATURE = "metadata.version"
# KIP-966's switch: level 1 turns on eligible leader replicas and unclean-shutdown detection.
ELR_VERSION_FEATURE = "eligible.leader.replicas.version"
CLUSTER_DEFAULT = ""  # the broker resource name of the cluster-level (default) configs

TOPIC_NAME_CHARS_MAX = 249
_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")


def topic_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a topic name (Kafka's ``Topic.validate``), or None."""
    if not name:
        return "topic name is empty"
    if name in (".", ".."):
        return f"topic name cannot be {name!r}"
    if len(name) > TOPIC_NAME_CHARS_MAX:
        return f"topic name is {len(name)} characters long; the limit is {TOPIC_NAME_CHARS_MAX}"
    if not _LEGAL_TOPIC.match(name):
        return f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_' and '-'"
    return None


def collision_key(name: str) -> str:
    """Kafka's metric names replace '.' with '_', so two topics with one key may not coexist."""
    return name.replace(".", "_")


class ReplayError(Exception):
    """A record contradicts the image it is replayed onto: a corrupt log or a controller bug."""


# --- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    broker_id: int
    epoch: int
    incarnation_id: uuid.UUID
    endpoints: tuple[BrokerEndpoint, ...] = ()
    features: tuple[BrokerFeature, ...] = ()
    rack: str | None = None
    fenced: bool = True
    in_controlled_shutdown: bool = False
    registration_offset: int = -1  # offset of the RegisterBrokerRecord that made this registration

    @property
    def is_active(self) -> bool:
        """Unfenced and not shutting down: may lead partitions, join an ISR, get new replicas."""
        return not self.fenced and not self.in_controlled_shutdown

    def endpoint(self, listener: str) -> BrokerEndpoint | None:
        for e in self.endpoints:
            if e.name == listener:
                return e
        return None


@dataclass(frozen=True, slots=True)
class PartitionRegistration:
    """One partition's assignment and leadership, as Kafka's ``PartitionRegistration``."""

    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int = 0
    partition_epoch: int = 0
    removing_replicas: tuple[int, ...] = ()
    adding_replicas: tuple[int, ...] = ()
    leader_recovery_state: int = RECOVERED
    elr: tuple[int, ...] = ()
    last_known_elr: tuple[int, ...] = ()

    @staticmethod
    def from_record(r: PartitionRecord) -> PartitionRegistration:
        return PartitionRegistration(
            replicas=r.replicas, isr=r.isr, leader=r.leader, leader_epoch=r.leader_epoch,
            partition_epoch=r.partition_epoch, removing_replicas=r.removing_replicas,
            adding_replicas=r.adding_replicas, leader_recovery_state=r.leader_recovery_state,
            elr=r.elr or (), last_known_elr=r.last_known_elr or ())

    def to_record(self, topic_id: uuid.UUID, partition_id: int) -> PartitionRecord:
        return PartitionRecord(
            topic_id=topic_id, partition_id=partition_id, replicas=self.replicas, isr=self.isr,
            leader=self.leader, leader_epoch=self.leader_epoch, partition_epoch=self.partition_epoch,
            removing_replicas=self.removing_replicas, adding_replicas=self.adding_replicas,
            leader_recovery_state=self.leader_recovery_state,
            elr=self.elr or None, last_known_elr=self.last_known_elr or None)

    def merge(self, change: PartitionChangeRecord) -> PartitionRegistration:
        """This partition after ``change``: the partition epoch always goes up by one."""
        leader, leader_epoch = self.leader, self.leader_epoch
        if change.leader != NO_LEADER_CHANGE:
            leader, leader_epoch = change.leader, self.leader_epoch + 1
        recovery = self.leader_recovery_state
        if change.leader_recovery_state != RECOVERY_NO_CHANGE:
            recovery = change.leader_recovery_state
        return PartitionRegistration(
            replicas=self.replicas if change.replicas is None else change.replicas,
            isr=self.isr if change.isr is None else change.isr,
            leader=leader,
            leader_epoch=leader_epoch,
            partition_epoch=self.partition_epoch + 1,
            removing_replicas=self.removing_replicas if change.removing_replicas is None
            else change.removing_replicas,
            adding_replicas=self.adding_replicas if change.adding_replicas is None
            else change.adding_replicas,
            leader_recovery_state=recovery,
            elr=self.elr if change.elr is None else change.elr,
            last_known_elr=self.last_known_elr if change.last_known_elr is None else change.last_known_elr,
        )

    @property
    def has_leader(self) -> bool:
        return self.leader != NO_LEADER

    @property
    def preferred_leader(self) -> int:
        return self.replicas[0] if self.replicas else NO_LEADER

    @property
    def has_preferred_leader(self) -> bool:
        return self.leader == self.preferred_leader

    @property
    def is_reassigning(self) -> bool:
        return bool(self.removing_replicas or self.adding_replicas)

    def target_replicas(self) -> tuple[int, ...]:
        """The replica set a reassignment in progress will end with (``replicas`` when none)."""
        return tuple(r for r in self.replicas if r not in self.removing_replicas)


@dataclass(frozen=True, slots=True)
class TopicImage:
    name: str
    topic_id: uuid.UUID
    partitions: Mapping[int, PartitionRegistration]  # partition id -> registration; read-only

    def partition(self, partition_id: int) -> PartitionRegistration | None:
        return self.partitions.get(partition_id)

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


@dataclass(frozen=True, slots=True)
class PartitionView:
    """One partition with the names a broker needs to act on it."""

    topic_name: str
    topic_id: uuid.UUID
    partition_id: int
    registration: PartitionRegistration


@dataclass(frozen=True, slots=True)
class LocalChanges:
    """What changed for one broker between two images (Kafka's ``TopicsDelta.localChanges``).

    ``leaders``: partitions the broker leads in the new image that are new or changed (any
    change bumps the partition epoch). ``followers``: likewise for partitions it replicates but
    does not lead (including partitions with no leader). ``deletes``: partitions the broker held
    a replica of and no longer does: the topic was deleted or a reassignment removed the broker.
    """

    leaders: tuple[PartitionView, ...] = ()
    followers: tuple[PartitionView, ...] = ()
    deletes: tuple[PartitionView, ...] = ()  # the registration as it was in the old image


_EMPTY_MAP: Mapping = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MetadataImage:
    """The state after replaying every record up to ``offset`` (-1: nothing yet).

    The mappings are read-only views; values are frozen. Build the next image with ``apply``.
    """

    offset: int = -1
    brokers: Mapping[int, BrokerRegistration] = field(default_factory=lambda: _EMPTY_MAP)
    topics_by_id: Mapping[uuid.UUID, TopicImage] = field(default_factory=lambda: _EMPTY_MAP)
    topic_ids_by_name: Mapping[str, uuid.UUID] = field(default_factory=lambda: _EMPTY_MAP)
    # (resource type, resource name) -> {key: value}
    configs: Mapping[tuple[int, str], Mapping[str, str]] = field(default_factory=lambda: _EMPTY_MAP)
    features: Mapping[str, int] = field(default_factory=lambda: _EMPTY_MAP)
    next_producer_id: int = 0

    # --- replay ------------------------------------------------------------------------------------

    def apply(self, records: Iterable[MetadataRecord], *, base_offset: int) -> MetadataImage:
        """The image after ``records``, which sit at consecutive offsets from ``base_offset``."""
        delta = MetadataDelta(self)
        offset = base_offset - 1
        for offset, record in enumerate(records, base_offset):
            delta.replay(record, offset)
        return delta.apply(max(offset, self.offset))

    @staticmethod
    def from_records(records: Iterable[MetadataRecord], *, offset: int) -> MetadataImage:
        """An image loaded from a snapshot taken at ``offset`` (see ``snapshot_records``)."""
        delta = MetadataDelta(MetadataImage())
        for record in records:
            delta.replay(record, offset)
        return delta.apply(offset)

    def snapshot_records(self) -> list[MetadataRecord]:
        """Records that rebuild this image from nothing (a metadata snapshot's contents).

        Registration offsets are not records: a broker loaded from a snapshot counts as
        registered at the snapshot's offset.
        """
        out: list[MetadataRecord] = [FeatureLevelRecord(name, level) for name, level in sorted(self.features.items())]
        for b in sorted(self.brokers.values(), key=lambda b: b.broker_id):
            out.append(RegisterBrokerRecord(
                broker_id=b.broker_id, incarnation_id=b.incarnation_id, broker_epoch=b.epoch,
                endpoints=b.endpoints, features=b.features, rack=b.rack, fenced=b.fenced,
                in_controlled_shutdown=b.in_controlled_shutdown))
        for t in sorted(self.topics_by_id.values(), key=lambda t: t.name):
            out.append(TopicRecord(t.name, t.topic_id))
            for pid in sorted(t.partitions):
                out.append(t.partitions[pid].to_record(t.topic_id, pid))
        for (rtype, rname), values in sorted(self.configs.items()):
            out += [ConfigRecord(rtype, rname, k, v) for k, v in sorted(values.items())]
        if self.next_producer_id:
            out.append(ProducerIdsRecord(-1, -1, self.next_producer_id))
        return out

    # --- queries -----------------------------------------------------------------------------------

    def broker(self, broker_id: int) -> BrokerRegistration | None:
        return self.brokers.get(broker_id)

    def is_active(self, broker_id: int) -> bool:
        b = self.brokers.get(broker_id)
        return b is not None and b.is_active

    def unfenced_brokers(self) -> list[BrokerRegistration]:
        return [b for b in sorted(self.brokers.values(), key=lambda b: b.broker_id) if not b.fenced]

    def topic(self, name: str) -> TopicImage | None:
        topic_id = self.topic_ids_by_name.get(name)
        return None if topic_id is None else self.topics_by_id[topic_id]

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicImage | None:
        return self.topics_by_id.get(topic_id)

    def partition(self, topic_id: uuid.UUID, partition_id: int) -> PartitionRegistration | None:
        t = self.topics_by_id.get(topic_id)
        return None if t is None else t.partitions.get(partition_id)

    def replicas_of(self, topic: str, partition_id: int) -> tuple[int, ...]:
        t = self.topic(topic)
        p = None if t is None else t.partitions.get(partition_id)
        return () if p is None else p.replicas

    def offline_replicas(self, p: PartitionRegistration) -> tuple[int, ...]:
        """Replicas on brokers that are fenced or not registered (Metadata's offline replicas)."""
        return tuple(r for r in p.replicas if (b := self.brokers.get(r)) is None or b.fenced)

    def partitions(self) -> Iterator[PartitionView]:
        """Every partition, topics by name, partitions by id."""
        for t in sorted(self.topics_by_id.values(), key=lambda t: t.name):
            for pid in sorted(t.partitions):
                yield PartitionView(t.name, t.topic_id, pid, t.partitions[pid])

    def partitions_led_by(self, broker_id: int) -> list[PartitionView]:
        return [v for v in self.partitions() if v.registration.leader == broker_id]

    def partitions_with_replica(self, broker_id: int) -> list[PartitionView]:
        return [v for v in self.partitions() if broker_id in v.registration.replicas]

    def reassigning_partitions(self) -> list[PartitionView]:
        return [v for v in self.partitions() if v.registration.is_reassigning]

    def topic_configs(self, name: str) -> Mapping[str, str]:
        return self.configs.get((RESOURCE_TOPIC, name), _EMPTY_MAP)

    def cluster_config(self, key: str) -> str | None:
        """A cluster-level default (ConfigRecord on the broker resource named ""), or None."""
        return self.configs.get((RESOURCE_BROKER, CLUSTER_DEFAULT), _EMPTY_MAP).get(key)

    def feature_level(self, name: str) -> int:
        """A finalized feature's level; 0 when it is not set (Kafka's "disabled")."""
        return self.features.get(name, 0)

    @property
    def elr_enabled(self) -> bool:
        """KIP-966's eligible leader replicas are on (``eligible.leader.replicas.version`` >= 1)."""
        return self.feature_level(ELR_VERSION_FEATURE) >= 1

    def colliding_topic(self, name: str) -> str | None:
        """An existing topic whose name collides with ``name`` ('.' vs '_'), if any."""
        key = collision_key(name)
        for other in self.topic_ids_by_name:
            if other != name and collision_key(other) == key:
                return other
        return None


EMPTY_IMAGE = MetadataImage()


# --- replay ----------------------------------------------------------------------------------------


class _TopicDelta:
    __slots__ = ("base", "name", "topic_id", "partitions")

    def __init__(self, name: str, topic_id: uuid.UUID, base: TopicImage | None) -> None:
        self.base = base
        self.name = name
        self.topic_id = topic_id
        self.partitions: dict[int, PartitionRegistration] = {}

    def get(self, partition_id: int) -> PartitionRegistration | None:
        p = self.partitions.get(partition_id)
        if p is None and self.base is not None:
            p = self.base.partitions.get(partition_id)
        return p

    def apply(self) -> TopicImage:
        if self.base is not None and not self.partitions:
            return self.base
        merged = dict(self.base.partitions) if self.base is not None else {}
        merged.update(self.partitions)
        return TopicImage(self.name, self.topic_id, MappingProxyType(merged))


class MetadataDelta:
    """Records replayed over a base image; ``apply`` makes the next image.

    ``broker``, ``partition`` and ``topic_id`` answer with the base image overlaid with what was
    replayed so far, which is how the controller sees the effect of the records it is writing.
    """

    def __init__(self, image: MetadataImage) -> None:
        self.image = image
        self._brokers: dict[int, BrokerRegistration | None] = {}  # None: unregistered
        self._topics: dict[uuid.UUID, _TopicDelta | None] = {}  # None: removed
        self._names: dict[str, uuid.UUID | None] = {}
        self._configs: dict[tuple[int, str], dict[str, str] | None] = {}
        self._features: dict[str, int] = {}
        self._next_producer_id: int | None = None

    # --- current state (base image overlaid with this delta) ----------------------------------------

    def broker(self, broker_id: int) -> BrokerRegistration | None:
        if broker_id in self._brokers:
            return self._brokers[broker_id]
        return self.image.brokers.get(broker_id)

    def is_active(self, broker_id: int) -> bool:
        b = self.broker(broker_id)
        return b is not None and b.is_active

    def partition(self, topic_id: uuid.UUID, partition_id: int) -> PartitionRegistration | None:
        td = self._topic(topic_id)
        return None if td is None else td.get(partition_id)

    def topic_id(self, name: str) -> uuid.UUID | None:
        return self._topic_id(name)

    def feature_level(self, name: str) -> int:
        level = self._features.get(name)
        return self.image.feature_level(name) if level is None else level

    def cluster_config(self, key: str) -> str | None:
        return self._config_value((RESOURCE_BROKER, CLUSTER_DEFAULT), key)

    def topic_config(self, name: str, key: str) -> str | None:
        return self._config_value((RESOURCE_TOPIC, name), key)

    def _config_value(self, resource: tuple[int, str], key: str) -> str | None:
        if resource in self._configs:
            values = self._configs[resource]
            return None if values is None else values.get(key)
        return self.image.configs.get(resource, _EMPTY_MAP).get(key)

    def has_topic(self, topic_id: uuid.UUID) -> bool:
        return self._topic(topic_id) is not None

    def _topic(self, topic_id: uuid.UUID) -> _TopicDelta | None:
        if topic_id in self._topics:
            return self._topics[topic_id]
        base = self.image.topics_by_id.get(topic_id)
        if base is None:
            return None
        td = _TopicDelta(base.name, topic_id, base)
        self._topics[topic_id] = td
        return td

    def _topic_id(self, name: str) -> uuid.UUID | None:
        if name in self._names:
            return self._names[name]
        return self.image.topic_ids_by_name.get(name)

    def _config(self, key: tuple[int, str]) -> dict[str, str]:
        current = self._configs.get(key)
        if current is None:
            current = dict(self.image.configs.get(key, {})) if key not in self._configs else {}
            self._configs[key] = current
        return current

    # --- records -----------------------------------------------------------------------------------

    def replay(self, record: MetadataRecord, offset: int) -> None:
        match record:
            case RegisterBrokerRecord():
                self._brokers[record.broker_id] = BrokerRegistration(
                    broker_id=record.broker_id, epoch=record.broker_epoch,
                    incarnation_id=record.incarnation_id, endpoints=record.endpoints,
                    features=record.features, rack=record.rack, fenced=record.fenced,
                    in_controlled_shutdown=record.in_controlled_shutdown, registration_offset=offset)
            case UnregisterBrokerRecord():
                b = self._registered(record.broker_id, record.broker_epoch, record)
                self._brokers[b.broker_id] = None
            case FenceBrokerRecord():
                b = self._registered(record.broker_id, record.broker_epoch, record)
                self._brokers[b.broker_id] = replace(b, fenced=True)
            case UnfenceBrokerRecord():
                b = self._registered(record.broker_id, record.broker_epoch, record)
                self._brokers[b.broker_id] = replace(b, fenced=False)
            case BrokerRegistrationChangeRecord():
                b = self._registered(record.broker_id, record.broker_epoch, record)
                self._brokers[b.broker_id] = broker_after(b, record)
            case TopicRecord():
                if self._topic_id(record.name) is not None:
                    raise ReplayError(f"second TopicRecord for topic {record.name!r}")
                if self._topic(record.topic_id) is not None:
                    raise ReplayError(f"topic id {record.topic_id} is in use already")
                self._names[record.name] = record.topic_id
                self._topics[record.topic_id] = _TopicDelta(record.name, record.topic_id, None)
            case PartitionRecord():
                td = self._topic(record.topic_id)
                if td is None:
                    raise ReplayError(f"PartitionRecord for unknown topic id {record.topic_id}")
                td.partitions[record.partition_id] = PartitionRegistration.from_record(record)
            case PartitionChangeRecord():
                td = self._topic(record.topic_id)
                p = None if td is None else td.get(record.partition_id)
                if td is None or p is None:
                    raise ReplayError(f"PartitionChangeRecord for unknown partition "
                                      f"{record.topic_id}:{record.partition_id}")
                td.partitions[record.partition_id] = p.merge(record)
            case RemoveTopicRecord():
                td = self._topic(record.topic_id)
                if td is None:
                    raise ReplayError(f"RemoveTopicRecord for unknown topic id {record.topic_id}")
                self._topics[record.topic_id] = None
                self._names[td.name] = None
                # Kafka drops a deleted topic's config overrides with it.
                self._configs[(RESOURCE_TOPIC, td.name)] = None
            case ConfigRecord():
                values = self._config((record.resource_type, record.resource_name))
                if record.value is None:
                    values.pop(record.name, None)
                else:
                    values[record.name] = record.value
            case FeatureLevelRecord():
                self._features[record.name] = record.feature_level
            case ProducerIdsRecord():
                self._next_producer_id = record.next_producer_id
            case NoOpRecord() | UnknownRecord():
                pass

    def _registered(self, broker_id: int, epoch: int, record: object) -> BrokerRegistration:
        b = self.broker(broker_id)
        if b is None or b.epoch != epoch:
            raise ReplayError(f"{type(record).__name__} for broker {broker_id} epoch {epoch}, "
                              f"which is not registered with that epoch")
        return b

    def apply(self, offset: int) -> MetadataImage:
        image = self.image
        brokers: Mapping[int, BrokerRegistration] = image.brokers
        if self._brokers:
            merged_brokers = dict(image.brokers)
            for broker_id, b in self._brokers.items():
                if b is None:
                    merged_brokers.pop(broker_id, None)
                else:
                    merged_brokers[broker_id] = b
            brokers = MappingProxyType(merged_brokers)
        topics: Mapping[uuid.UUID, TopicImage] = image.topics_by_id
        names: Mapping[str, uuid.UUID] = image.topic_ids_by_name
        changed = {tid: td for tid, td in self._topics.items()
                   if td is None or td.base is None or td.partitions}
        if changed:
            merged_topics = dict(image.topics_by_id)
            for topic_id, td in changed.items():
                if td is None:
                    merged_topics.pop(topic_id, None)
                else:
                    merged_topics[topic_id] = td.apply()
            topics = MappingProxyType(merged_topics)
        if self._names:
            merged_names = dict(image.topic_ids_by_name)
            for name, named_id in self._names.items():
                if named_id is None:
                    merged_names.pop(name, None)
                else:
                    merged_names[name] = named_id
            names = MappingProxyType(merged_names)
        configs: Mapping[tuple[int, str], Mapping[str, str]] = image.configs
        if self._configs:
            merged_configs = dict(image.configs)
            for key, values in self._configs.items():
                if values:
                    merged_configs[key] = MappingProxyType(values)
                else:
                    merged_configs.pop(key, None)
            configs = MappingProxyType(merged_configs)
        features: Mapping[str, int] = image.features
        if self._features:
            merged_features = dict(image.features)
            for name, level in self._features.items():
                if level == 0:
                    merged_features.pop(name, None)
                else:
                    merged_features[name] = level
            features = MappingProxyType(merged_features)
        next_pid = image.next_producer_id if self._next_producer_id is None else self._next_producer_id
        return MetadataImage(offset=offset, brokers=brokers, topics_by_id=topics, topic_ids_by_name=names,
                             configs=configs, features=features, next_producer_id=next_pid)


def broker_after(b: BrokerRegistration, change: BrokerRegistrationChangeRecord) -> BrokerRegistration:
    """A registration after a BrokerRegistrationChangeRecord.

    As in Kafka, fencing leaves the controlled-shutdown flag alone: only a new registration
    clears it.
    """
    fenced, shutting_down = b.fenced, b.in_controlled_shutdown
    if change.fenced == FENCE:
        fenced = True
    elif change.fenced == UNFENCE:
        fenced = False
    if change.in_controlled_shutdown:
        shutting_down = True
    return replace(b, fenced=fenced, in_controlled_shutdown=shutting_down)


# --- what changed for one broker -------------------------------------------------------------------


def local_changes(old: MetadataImage, new: MetadataImage, broker_id: int) -> LocalChanges:
    """The partitions ``broker_id`` must start leading, following or deleting going old -> new.

    Cost: topics whose ``TopicImage`` is shared between the images are skipped outright, so
    this is linear in the topics and partitions that changed.
    """
    leaders: list[PartitionView] = []
    followers: list[PartitionView] = []
    deletes: list[PartitionView] = []
    for topic_id, t in old.topics_by_id.items():
        if topic_id not in new.topics_by_id:
            deletes += [PartitionView(t.name, topic_id, pid, p) for pid, p in sorted(t.partitions.items())
                        if broker_id in p.replicas]
    for topic_id, t in new.topics_by_id.items():
        before = old.topics_by_id.get(topic_id)
        if before is t:
            continue
        for pid in sorted(t.partitions):
            p = t.partitions[pid]
            prev = None if before is None else before.partitions.get(pid)
            if prev is not None and prev.partition_epoch == p.partition_epoch and prev == p:
                continue
            view = PartitionView(t.name, topic_id, pid, p)
            if p.leader == broker_id:
                leaders.append(view)
            elif broker_id in p.replicas:
                followers.append(view)
            elif prev is not None and broker_id in prev.replicas:
                deletes.append(PartitionView(t.name, topic_id, pid, prev))
    return LocalChanges(tuple(leaders), tuple(followers), tuple(deletes))


__all__ = [
    "CLUSTER_DEFAULT",
    "ELR_VERSION_FEATURE",
    "EMPTY_IMAGE",
    "METADATA_VERSION_FEATURE",
    "RESOURCE_BROKER",
    "RESOURCE_TOPIC",
    "BrokerRegistration",
    "LocalChanges",
    "MetadataDelta",
    "MetadataImage",
    "PartitionRegistration",
    "PartitionView",
    "ReplayError",
    "TopicImage",
    "broker_after",
    "collision_key",
    "local_changes",
    "topic_name_error",
]
