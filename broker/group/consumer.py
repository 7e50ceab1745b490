"""KIP-848 consumer groups: the group model, reconciliation and target assignment, sans-IO.

What it owns. One ``ConsumerGroup`` (Kafka's ``ConsumerGroup``/``ModernGroup``): its members
(``ConsumerGroupMember``: subscription, epochs, assigned partitions, partitions pending
revocation), the group epoch, the target assignment and its epoch, the subscription metadata
(the subscribed topics that exist, with ids and partition counts), the resolved regular
expressions, and the derived indexes (static members, the epoch of every owned partition). The
state is changed *only* by replaying records (``ConsumerGroup.replay``), the same records that go
to ``__consumer_offsets``; so a group loaded from the log equals the live one.

Also here, as pure functions: reconciliation (``reconcile``, Kafka's ``CurrentAssignmentBuilder``),
the target assignment (``build_target_assignment``, Kafka's ``TargetAssignmentBuilder`` with an
assignor from assignors.py), subscription metadata, regular expressions, and the shapes of
ConsumerGroupDescribe. The request flows that need the group-id namespace, timers and the record
stream (heartbeat, leave, fencing, offsets) live in ``GroupCoordinator`` (coordinator.py).

What it never does: I/O, clocks (``now_ms`` comes in), randomness (member ids come in).

Theory of operation (KIP-848, as Kafka 3.9/4.0 run it). Every change to the membership or to
the subscribed topics bumps the *group epoch*. When the group epoch is ahead of the *target
assignment epoch*, the next heartbeat computes a new target assignment with the group's server
assignor and stamps it with the group epoch. Each member then converges on its target, one
heartbeat at a time (``reconcile``): partitions it must give up are first listed as *pending
revocation* and the member stays at its epoch (state UNREVOKED_PARTITIONS) until a heartbeat no
longer reports them as owned; only then does it move to the target epoch and receive new
partitions, and only those that no other member still owns (a partition's owner and epoch are
kept in ``partition_epochs``); the rest wait (UNRELEASED_PARTITIONS) and are handed over on a
later heartbeat once released. So no partition is ever owned by two members, and the member
epoch rises only when the member has revoked what it had to.

Regular expressions (``SubscribedTopicRegex``) are matched against whole topic names (RE2/J's
``matches``), here with Python's ``re.fullmatch``. RE2 has no backreferences, lookaround or
atomic groups; patterns using them are refused as INVALID_REGULAR_EXPRESSION, as RE2/J refuses
them. Python's matcher backtracks where RE2's does not, so patterns are also capped at
``REGEX_CHARS_MAX`` characters; topic names are at most 249 characters. Internal topics are never
matched by a regular expression.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from uuid import UUID

from broker.group import records as rec
from broker.group.assignors import Assignment, GroupSpec, MemberSpec, PartitionAssignor, TopicSpec
from protocol.errors import ProtocolError
from protocol.messages.consumer_group_describe import ConsumerGroupDescribeResponse

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
NO_PARTITION_EPOCH = -1
CONSUMER_GROUP_TYPE = "consumer"
CONSUMER_PROTOCOL_TYPE = "consumer"
REGEX_BATCH_REFRESH_INTERVAL_MS = 10_000  # Kafka's REGEX_BATCH_REFRESH_INTERVAL_MS
REGEX_CHARS_MAX = 1_000

Partitions = Mapping[UUID, frozenset[int]]
NO_PARTITIONS: Partitions = {}


class MemberState(enum.IntEnum):
    """Where a member is in its reconciliation; the value is the byte the records carry."""

    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127

    @classmethod
    def from_value(cls, value: int) -> MemberState:
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class ConsumerGroupState(enum.Enum):
    """The group's state; the value is the name ListGroups and ConsumerGroupDescribe report."""

    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


# --- topics --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One topic of the metadata snapshot the coordinator is given."""

    name: str
    topic_id: UUID
    partitions: int
    internal: bool = False


class TopicsImage:
    """An immutable snapshot of the broker's topics, by name and by id."""

    __slots__ = ("by_id", "by_name")

    def __init__(self, topics: Iterable[TopicInfo] = ()) -> None:
        self.by_name: dict[str, TopicInfo] = {t.name: t for t in topics}
        self.by_id: dict[UUID, TopicInfo] = {t.topic_id: t for t in self.by_name.values()}

    def same_topics(self, other: TopicsImage) -> bool:
        """Whether both hold the same topics (names, ids and partition counts)."""
        return self.by_name == other.by_name


EMPTY_TOPICS = TopicsImage()


@dataclass(frozen=True, slots=True)
class SubscribedTopic:
    """A subscribed topic that exists (an entry of Kafka's subscription metadata)."""

    topic_id: UUID
    name: str
    partitions: int


@dataclass(frozen=True, slots=True)
class ResolvedRegex:
    """What a regular expression matched, against which topics version, and when."""

    topics: frozenset[str]
    version: int
    timestamp_ms: int


# --- members -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerGroupMember:
    """One member (Kafka's ``ConsumerGroupMember``). Immutable: changes make a new value."""

    member_id: str
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: frozenset[str] = frozenset()
    subscribed_topic_regex: str | None = None  # None or "": no regular expression
    server_assignor: str | None = None
    assigned_partitions: Partitions = field(default_factory=dict)
    partitions_pending_revocation: Partitions = field(default_factory=dict)

    @property
    def regex(self) -> str | None:
        """The subscribed regular expression, None when there is none (an empty one included)."""
        return self.subscribed_topic_regex or None

    def is_reconciled_to(self, target_epoch: int) -> bool:
        return self.state is MemberState.STABLE and self.member_epoch == target_epoch

    def with_epoch(self, member_epoch: int) -> ConsumerGroupMember:
        """Kafka's ``updateMemberEpoch``: the current epoch becomes the previous one."""
        return replace(self, member_epoch=member_epoch, previous_member_epoch=self.member_epoch)

    def metadata_value(self) -> rec.ConsumerGroupMemberMetadataValue:
        return rec.ConsumerGroupMemberMetadataValue(
            instance_id=self.instance_id, rack_id=self.rack_id, client_id=self.client_id,
            client_host=self.client_host, subscribed_topic_names=tuple(sorted(self.subscribed_topic_names)),
            subscribed_topic_regex=self.subscribed_topic_regex, rebalance_timeout_ms=self.rebalance_timeout_ms,
            server_assignor=self.server_assignor)

    def assignment_value(self) -> rec.ConsumerGroupCurrentMemberAssignmentValue:
        return rec.ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch=self.member_epoch, previous_member_epoch=self.previous_member_epoch,
            state=int(self.state), assigned_partitions=to_topic_partitions(self.assigned_partitions),
            partitions_pending_revocation=to_topic_partitions(self.partitions_pending_revocation))

    def same_metadata(self, other: ConsumerGroupMember) -> bool:
        return self.metadata_value() == other.metadata_value()


def to_topic_partitions(partitions: Partitions) -> rec.TopicPartitions:
    """Partitions in the records' shape, in a stable order."""
    return tuple((t, tuple(sorted(ps))) for t, ps in sorted(partitions.items(), key=lambda kv: str(kv[0])) if ps)


def from_topic_partitions(topic_partitions: rec.TopicPartitions) -> dict[UUID, frozenset[int]]:
    out: dict[UUID, set[int]] = {}
    for t, ps in topic_partitions:
        out.setdefault(t, set()).update(ps)
    return {t: frozenset(ps) for t, ps in out.items() if ps}


# --- the group -----------------------------------------------------------------------------------


class ConsumerGroup:
    """One consumer group's state; see the module docstring. Change it only through ``replay``."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerGroupMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target_assignment: dict[str, Partitions] = {}
        self.subscription_metadata: dict[str, SubscribedTopic] = {}
        self.resolved_regexes: dict[str, ResolvedRegex] = {}
        # topic id -> partition -> epoch of the member that owns it (assigned or pending revocation)
        self.partition_epochs: dict[UUID, dict[int, int]] = {}

    # --- derived state ---------------------------------------------------------------------------

    @property
    def state(self) -> ConsumerGroupState:
        """Kafka's ``maybeUpdateGroupState``, computed on demand."""
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(not m.is_reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    @property
    def is_empty(self) -> bool:
        return not self.members

    def current_partition_epoch(self, topic_id: UUID, partition: int) -> int:
        return self.partition_epochs.get(topic_id, {}).get(partition, NO_PARTITION_EPOCH)

    def static_member(self, instance_id: str | None) -> ConsumerGroupMember | None:
        if instance_id is None:
            return None
        member_id = self.static_members.get(instance_id)
        return None if member_id is None else self.members[member_id]

    def target_assignment_of(self, member_id: str, instance_id: str | None) -> Partitions:
        """The member's target; a static member inherits the target of the member it replaces."""
        if instance_id is not None:
            previous = self.static_members.get(instance_id)
            if previous is not None:
                return self.target_assignment.get(previous, NO_PARTITIONS)
            return NO_PARTITIONS
        return self.target_assignment.get(member_id, NO_PARTITIONS)

    def subscribed_topic_counts(self, members: Iterable[ConsumerGroupMember] | None = None,
                                resolved: Mapping[str, ResolvedRegex] | None = None) -> Counter[str]:
        """How many subscriptions (by name, and through resolved regexes) each topic name has."""
        return subscribed_topic_counts(self.members.values() if members is None else members,
                                       self.resolved_regexes if resolved is None else resolved)

    def is_subscribed_to_topic(self, topic: str) -> bool:
        return topic in self.subscribed_topic_counts()

    def subscribed_regexes(self, members: Iterable[ConsumerGroupMember] | None = None) -> Counter[str]:
        return Counter(m.regex for m in (self.members.values() if members is None else members)
                       if m.regex is not None)

    def last_regex_refresh_ms(self) -> int | None:
        return max((r.timestamp_ms for r in self.resolved_regexes.values()), default=None)

    def members_with(self, updated: ConsumerGroupMember | None = None,
                     removed: Iterable[str] = ()) -> dict[str, ConsumerGroupMember]:
        """The members as they would be with ``updated`` added or replaced and ``removed`` gone."""
        members = {mid: m for mid, m in self.members.items() if mid not in set(removed)}
        if updated is not None:
            members[updated.member_id] = updated
        return members

    # --- replay ----------------------------------------------------------------------------------

    def replay(self, key: rec.ConsumerGroupKey, value: rec.ConsumerGroupValue | None) -> None:
        """Apply one consumer group record (a tombstone when ``value`` is None), as Kafka replays it.

        A ``ConsumerGroupMetadataKey`` tombstone is the caller's (it removes the group); here
        it only checks that the group was emptied first. Raises ``ProtocolError`` for records
        that contradict the state (a corrupt or foreign log).
        """
        if isinstance(key, rec.ConsumerGroupMetadataKey):
            if value is None:
                if self.members or self.target_assignment or self.assignment_epoch != -1:
                    raise ProtocolError(f"group {self.group_id!r}: deleted while it still has members or targets")
            else:
                assert isinstance(value, rec.ConsumerGroupMetadataValue)
                self.group_epoch = value.epoch
        elif isinstance(key, rec.ConsumerGroupPartitionMetadataKey):
            if value is None:
                self.subscription_metadata = {}
            else:
                assert isinstance(value, rec.ConsumerGroupPartitionMetadataValue)
                self.subscription_metadata = {
                    t.topic_name: SubscribedTopic(t.topic_id, t.topic_name, t.num_partitions) for t in value.topics}
        elif isinstance(key, rec.ConsumerGroupMemberMetadataKey):
            self._replay_member_metadata(key.member_id, value)
        elif isinstance(key, rec.ConsumerGroupTargetAssignmentMetadataKey):
            if value is None:
                if self.target_assignment:
                    raise ProtocolError(f"group {self.group_id!r}: target epoch deleted before the targets")
                self.assignment_epoch = -1
            else:
                assert isinstance(value, rec.ConsumerGroupTargetAssignmentMetadataValue)
                self.assignment_epoch = value.assignment_epoch
        elif isinstance(key, rec.ConsumerGroupTargetAssignmentMemberKey):
            if value is None:
                self.target_assignment.pop(key.member_id, None)
            else:
                assert isinstance(value, rec.ConsumerGroupTargetAssignmentMemberValue)
                self.target_assignment[key.member_id] = from_topic_partitions(value.topic_partitions)
        elif isinstance(key, rec.ConsumerGroupCurrentMemberAssignmentKey):
            self._replay_current_assignment(key.member_id, value)
        else:
            assert isinstance(key, rec.ConsumerGroupRegularExpressionKey), key
            if value is None:
                self.resolved_regexes.pop(key.regex, None)
            else:
                assert isinstance(value, rec.ConsumerGroupRegularExpressionValue)
                self.resolved_regexes[key.regex] = ResolvedRegex(
                    frozenset(value.topics), value.version, value.timestamp_ms)

    def _replay_member_metadata(self, member_id: str, value: rec.ConsumerGroupValue | None) -> None:
        old = self.members.get(member_id)
        if value is None:
            if old is None:
                return
            if old.member_epoch != LEAVE_GROUP_MEMBER_EPOCH or member_id in self.target_assignment:
                raise ProtocolError(f"group {self.group_id!r}: member {member_id!r} deleted before its assignments")
            self._put_member(old, None)
            return
        assert isinstance(value, rec.ConsumerGroupMemberMetadataValue)
        base = old if old is not None else ConsumerGroupMember(member_id)
        self._put_member(old, replace(
            base, instance_id=value.instance_id, rack_id=value.rack_id, client_id=value.client_id,
            client_host=value.client_host, subscribed_topic_names=frozenset(value.subscribed_topic_names),
            subscribed_topic_regex=value.subscribed_topic_regex, rebalance_timeout_ms=value.rebalance_timeout_ms,
            server_assignor=value.server_assignor))

    def _replay_current_assignment(self, member_id: str, value: rec.ConsumerGroupValue | None) -> None:
        old = self.members.get(member_id)
        if value is None:
            if old is None:
                return
            self._put_member(old, replace(
                old, member_epoch=LEAVE_GROUP_MEMBER_EPOCH, previous_member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                assigned_partitions={}, partitions_pending_revocation={}))
            return
        assert isinstance(value, rec.ConsumerGroupCurrentMemberAssignmentValue)
        base = old if old is not None else ConsumerGroupMember(member_id)
        self._put_member(old, replace(
            base, member_epoch=value.member_epoch, previous_member_epoch=value.previous_member_epoch,
            state=MemberState.from_value(value.state),
            assigned_partitions=from_topic_partitions(value.assigned_partitions),
            partitions_pending_revocation=from_topic_partitions(value.partitions_pending_revocation)))

    def _put_member(self, old: ConsumerGroupMember | None, new: ConsumerGroupMember | None) -> None:
        """Replace ``old`` with ``new`` (either may be None), keeping the indexes in step."""
        if old is not None:
            self._remove_partition_epochs(old.assigned_partitions, old.member_epoch)
            self._remove_partition_epochs(old.partitions_pending_revocation, old.member_epoch)
            if old.instance_id is not None and self.static_members.get(old.instance_id) == old.member_id:
                del self.static_members[old.instance_id]
            del self.members[old.member_id]
        if new is not None:
            self.members[new.member_id] = new
            self._add_partition_epochs(new.assigned_partitions, new.member_epoch)
            self._add_partition_epochs(new.partitions_pending_revocation, new.member_epoch)
            if new.instance_id is not None:
                self.static_members[new.instance_id] = new.member_id

    def _remove_partition_epochs(self, partitions: Partitions, epoch: int) -> None:
        for t, ps in partitions.items():
            epochs = self.partition_epochs.get(t)
            for p in ps:
                if epochs is None or epochs.pop(p, None) != epoch:
                    raise ProtocolError(f"group {self.group_id!r}: partition {t}-{p} is not owned at epoch {epoch}")
            if epochs is not None and not epochs:
                del self.partition_epochs[t]

    def _add_partition_epochs(self, partitions: Partitions, epoch: int) -> None:
        for t, ps in partitions.items():
            epochs = self.partition_epochs.setdefault(t, {})
            for p in ps:
                if p in epochs:
                    raise ProtocolError(f"group {self.group_id!r}: partition {t}-{p} already owned at epoch {epochs[p]}")
                epochs[p] = epoch


def subscribed_topic_counts(members: Iterable[ConsumerGroupMember],
                            resolved: Mapping[str, ResolvedRegex]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for m in members:
        counts.update(m.subscribed_topic_names)
        regex = m.regex
        if regex is not None and regex in resolved:
            counts.update(resolved[regex].topics)
    return counts


def subscription_metadata(topic_names: Iterable[str], topics: TopicsImage) -> dict[str, SubscribedTopic]:
    """Kafka's ``computeSubscriptionMetadata``: the subscribed topics that exist."""
    out = {}
    for name in topic_names:
        t = topics.by_name.get(name)
        if t is not None:
            out[name] = SubscribedTopic(t.topic_id, name, t.partitions)
    return out


def partition_metadata_value(metadata: Mapping[str, SubscribedTopic]) -> rec.ConsumerGroupPartitionMetadataValue:
    return rec.ConsumerGroupPartitionMetadataValue(tuple(
        rec.TopicMetadataRecord(t.topic_id, t.name, t.partitions) for _, t in sorted(metadata.items())))


# --- regular expressions -------------------------------------------------------------------------

_RE2_UNSUPPORTED = re.compile(r"\(\?[=!>]|\(\?<[=!]|\(\?P=|\\[1-9]|[*+?}][+]")


def compile_regex(pattern: str) -> re.Pattern[str] | None:
    """The pattern compiled, or None when RE2/J would refuse it (see the module docstring)."""
    if len(pattern) > REGEX_CHARS_MAX or _RE2_UNSUPPORTED.search(pattern):
        return None
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def resolve_regexes(regexes: Iterable[str], topics: TopicsImage) -> dict[str, frozenset[str]]:
    """Which non-internal topics each (valid) regular expression matches in full."""
    out: dict[str, frozenset[str]] = {}
    for pattern in regexes:
        compiled = compile_regex(pattern)
        if compiled is None:
            out[pattern] = frozenset()
            continue
        out[pattern] = frozenset(name for name, t in topics.by_name.items()
                                 if not t.internal and compiled.fullmatch(name) is not None)
    return out


# --- reconciliation (Kafka's CurrentAssignmentBuilder) ------------------------------------------

OwnedPartitions = Sequence[tuple[UUID, Sequence[int]]] | None


def _owns_any(owned: OwnedPartitions, partitions: Partitions) -> bool:
    """Whether the member still reports any of ``partitions`` as owned (unknown: assume it does)."""
    if owned is None:
        return True
    for topic_id, ps in owned:
        pending = partitions.get(topic_id)
        if pending and any(p in pending for p in ps):
            return True
    return False


def reconcile(member: ConsumerGroupMember, *, target_epoch: int, target: Partitions,
              partition_epoch: Callable[[UUID, int], int],
              owned: OwnedPartitions) -> ConsumerGroupMember | None:
    """The member's next state towards ``target`` (itself when it cannot move yet).

    ``owned`` is what the member reported owning in this heartbeat (None: not reported).
    ``partition_epoch`` gives the epoch of a partition's current owner, -1 when it has none.
    None means the member is in a state this code does not know and must be fenced.
    """
    state = member.state
    if state is MemberState.STABLE:
        if member.member_epoch != target_epoch:
            return _next_assignment(member, target_epoch, target, partition_epoch, owned)
        return member
    if state is MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.partitions_pending_revocation):
            return member  # revoke first: nothing moves until the member has let go
        return _next_assignment(member, target_epoch, target, partition_epoch, owned)
    if state is MemberState.UNRELEASED_PARTITIONS:
        return _next_assignment(member, target_epoch, target, partition_epoch, owned)
    if owned is None or owned:
        return None
    return _next_assignment(member, target_epoch, target, partition_epoch, owned)


def _next_assignment(member: ConsumerGroupMember, target_epoch: int, target: Partitions,
                     partition_epoch: Callable[[UUID, int], int],
                     owned: OwnedPartitions) -> ConsumerGroupMember:
    current = member.assigned_partitions
    has_unreleased = False
    assigned: dict[UUID, frozenset[int]] = {}
    revoking: dict[UUID, frozenset[int]] = {}
    pending: dict[UUID, frozenset[int]] = {}
    for topic_id in set(target) | set(current):
        want = target.get(topic_id, frozenset())
        have = current.get(topic_id, frozenset())
        keep = have & want
        if keep:
            assigned[topic_id] = keep
        if have - keep:
            revoking[topic_id] = have - keep
        free = {p for p in want - keep if partition_epoch(topic_id, p) == NO_PARTITION_EPOCH}
        if len(free) != len(want - keep):
            has_unreleased = True
        if free:
            pending[topic_id] = frozenset(free)
    if revoking and _owns_any(owned, revoking):
        # Revoke before assigning: stay at the current epoch until the member has let go.
        return replace(member.with_epoch(member.member_epoch), state=MemberState.UNREVOKED_PARTITIONS,
                       assigned_partitions=assigned, partitions_pending_revocation=revoking)
    for topic_id, ps in pending.items():
        assigned[topic_id] = assigned.get(topic_id, frozenset()) | ps
    state = MemberState.UNRELEASED_PARTITIONS if has_unreleased else MemberState.STABLE
    return replace(member.with_epoch(target_epoch), state=state, assigned_partitions=assigned,
                   partitions_pending_revocation={})


# --- target assignment (Kafka's TargetAssignmentBuilder) -----------------------------------------


def member_topic_ids(member: ConsumerGroupMember, resolved: Mapping[str, ResolvedRegex],
                     topics: TopicsImage) -> frozenset[UUID]:
    """The ids of the existing topics a member subscribes to, by name or through its regex."""
    names: set[str] = set(member.subscribed_topic_names)
    regex = member.regex
    if regex is not None and regex in resolved:
        names |= resolved[regex].topics
    return frozenset(topics.by_name[n].topic_id for n in names if n in topics.by_name)


@dataclass(frozen=True, slots=True)
class TargetAssignment:
    """A new target assignment and the records that persist it."""

    members: dict[str, Assignment]
    records: list[tuple[rec.ConsumerGroupKey, rec.ConsumerGroupValue | None]]


def build_target_assignment(group: ConsumerGroup, *, group_epoch: int, assignor: PartitionAssignor,
                            members: Mapping[str, ConsumerGroupMember], replaced: Mapping[str, str],
                            metadata: Mapping[str, SubscribedTopic], resolved: Mapping[str, ResolvedRegex],
                            topics: TopicsImage) -> TargetAssignment:
    """Run ``assignor`` over ``members`` (the group's members as they will be after this change).

    ``replaced`` maps the id of a static member that takes over from a departed one to the old
    id: it starts from the old member's target. Records go out only for members whose target
    changed, then the target assignment epoch (``group_epoch``).
    """
    specs = {}
    for member_id, m in members.items():
        current = group.target_assignment.get(replaced.get(member_id, member_id), NO_PARTITIONS)
        specs[member_id] = MemberSpec(member_id=member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                                      subscribed_topic_ids=member_topic_ids(m, resolved, topics),
                                      assignment=current)
    spec = GroupSpec(members=specs, topics={t.topic_id: TopicSpec(t.name, t.partitions) for t in metadata.values()})
    result = assignor.assign(spec)
    records: list[tuple[rec.ConsumerGroupKey, rec.ConsumerGroupValue | None]] = []
    new_targets: dict[str, Assignment] = {}
    for member_id in specs:
        new = {t: ps for t, ps in result.get(member_id, {}).items() if ps}
        new_targets[member_id] = new
        if member_id not in group.target_assignment or dict(group.target_assignment[member_id]) != new:
            records.append((rec.ConsumerGroupTargetAssignmentMemberKey(group.group_id, member_id),
                            rec.ConsumerGroupTargetAssignmentMemberValue(to_topic_partitions(new))))
    records.append((rec.ConsumerGroupTargetAssignmentMetadataKey(group.group_id),
                    rec.ConsumerGroupTargetAssignmentMetadataValue(group_epoch)))
    return TargetAssignment(new_targets, records)


# --- records of a whole member or group ----------------------------------------------------------


def member_tombstones(group_id: str, member_id: str) -> list[tuple[rec.ConsumerGroupKey, None]]:
    """Kafka's ``removeMember``: current assignment, then target, then metadata (the order matters)."""
    return [(rec.ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id), None),
            (rec.ConsumerGroupTargetAssignmentMemberKey(group_id, member_id), None),
            (rec.ConsumerGroupMemberMetadataKey(group_id, member_id), None)]


def group_tombstones(group: ConsumerGroup) -> list[tuple[rec.ConsumerGroupKey, None]]:
    """Kafka's ``createGroupTombstoneRecords`` for a consumer group (plus its regexes, as 4.0 does)."""
    gid = group.group_id
    out: list[tuple[rec.ConsumerGroupKey, None]] = []
    out += [(rec.ConsumerGroupCurrentMemberAssignmentKey(gid, m), None) for m in group.members]
    out += [(rec.ConsumerGroupTargetAssignmentMemberKey(gid, m), None) for m in group.members]
    out.append((rec.ConsumerGroupTargetAssignmentMetadataKey(gid), None))
    out += [(rec.ConsumerGroupMemberMetadataKey(gid, m), None) for m in group.members]
    out += [(rec.ConsumerGroupRegularExpressionKey(gid, r), None) for r in group.resolved_regexes]
    out.append((rec.ConsumerGroupPartitionMetadataKey(gid), None))
    out.append((rec.ConsumerGroupMetadataKey(gid), None))
    return out


# --- ConsumerGroupDescribe -----------------------------------------------------------------------


def _describe_partitions(partitions: Partitions, topics: TopicsImage) -> ConsumerGroupDescribeResponse.Assignment:
    out = ConsumerGroupDescribeResponse.Assignment()
    for topic_id, ps in sorted(partitions.items(), key=lambda kv: str(kv[0])):
        t = topics.by_id.get(topic_id)
        if t is not None and ps:
            out.topic_partitions.append(ConsumerGroupDescribeResponse.TopicPartitions(
                topic_id=topic_id, topic_name=t.name, partitions=sorted(ps)))
    return out


def describe(group: ConsumerGroup, *, default_assignor: str, topics: TopicsImage
             ) -> ConsumerGroupDescribeResponse.DescribedGroup:
    """Kafka's ``ConsumerGroup.asDescribedGroup``."""
    described = ConsumerGroupDescribeResponse.DescribedGroup(
        group_id=group.group_id, group_state=group.state.value, group_epoch=group.group_epoch,
        assignment_epoch=group.assignment_epoch,
        assignor_name=preferred_server_assignor(group.members.values()) or default_assignor)
    for m in group.members.values():
        described.members.append(ConsumerGroupDescribeResponse.Member(
            member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id, member_epoch=m.member_epoch,
            client_id=m.client_id, client_host=m.client_host,
            subscribed_topic_names=sorted(m.subscribed_topic_names), subscribed_topic_regex=m.subscribed_topic_regex,
            assignment=_describe_partitions(m.assigned_partitions, topics),
            target_assignment=_describe_partitions(group.target_assignment.get(m.member_id, NO_PARTITIONS), topics)))
    return described


def preferred_server_assignor(members: Iterable[ConsumerGroupMember],
                              order: Sequence[str] = ()) -> str | None:
    """The server assignor most members ask for (ties: the first in ``order``, then by name)."""
    counts = Counter(m.server_assignor for m in members if m.server_assignor is not None)
    if not counts:
        return None
    rank = {name: i for i, name in enumerate(order)}
    return min(counts, key=lambda name: (-counts[name], rank.get(name, len(rank)), name))
