"""Server-side partition assignors of KIP-848 consumer groups: ``uniform`` and ``range``, sans-IO.

What it owns. Given every member's subscription (topic ids) and its current *target* assignment,
and the partition count of every subscribed topic, an assignor returns the new target
assignment of every member. The coordinator (consumer.py) turns the difference into records and
reconciles each member towards it; an assignor never sees epochs or owned partitions.

The two assignors Kafka's group coordinator ships (``group.consumer.assignors``, default
``uniform,range``; a member may pick one with ``ServerAssignor``):

- ``uniform`` (Kafka's ``UniformAssignor``): spreads all partitions of all subscribed topics as
  evenly as possible over the members that subscribe to them, moving as few as it can.
  *Homogeneous* groups (every member subscribes to the same topics) follow Kafka's algorithm:
  each member, in order, gets a quota of ``total // members`` partitions, the first
  ``total % members`` members one more; a member keeps the partitions it already has up to its
  quota (and only of topics it still subscribes to), the rest are released, and the members with
  room left are filled, in order, from the unassigned partitions (topics by name, partitions in
  order). *Heterogeneous* groups use our own algorithm with the same goals (Kafka's builder is
  not reproduced): keep what each member has and still subscribes to, place each unassigned
  partition (fewest subscribers first) on the least-loaded subscriber, then move partitions from
  a member to a less-loaded subscriber while their loads differ by more than one.
- ``range`` (Kafka's ``RangeAssignor`` of the group coordinator): for each topic, the members
  subscribed to it, static members first by instance id and then dynamic ones by member id, get
  consecutive ranges of ``partitions // subscribers`` partitions, the first
  ``partitions % subscribers`` one more. Members with the same subscriptions therefore get the
  same partition numbers of co-partitioned topics. Not sticky, as Kafka's is not.

Contract: pure functions of their inputs, deterministic (member order is the order of
``GroupSpec.members``; topics are ordered by name); they never fail: topics without a partition
count are skipped. Every partition of every subscribed topic is assigned to exactly one member
that subscribes to it whenever at least one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

# topic id -> partitions; values are never mutated once built.
Assignment = Mapping[UUID, frozenset[int]]

UNIFORM_ASSIGNOR_NAME = "uniform"
RANGE_ASSIGNOR_NAME = "range"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A subscribed topic as the assignor sees it."""

    name: str
    partitions: int


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One member: who it is, what it subscribes to, and its current target assignment."""

    member_id: str
    instance_id: str | None
    rack_id: str | None
    subscribed_topic_ids: frozenset[UUID]
    assignment: Assignment


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """Everything an assignor may look at. ``topics`` holds the subscribed topics that exist."""

    members: Mapping[str, MemberSpec]
    topics: Mapping[UUID, TopicSpec]

    @property
    def is_homogeneous(self) -> bool:
        """Whether every member subscribes to the same topics (Kafka's HOMOGENEOUS subscription type)."""
        subscriptions = {m.subscribed_topic_ids for m in self.members.values()}
        return len(subscriptions) <= 1


class PartitionAssignor(Protocol):
    """A server-side assignor: a name (what ``ServerAssignor`` and DescribeGroups show) and ``assign``."""

    @property
    def name(self) -> str: ...

    def assign(self, spec: GroupSpec) -> dict[str, Assignment]:
        """The new target assignment of every member of ``spec`` (members with nothing map to {})."""
        ...


def _freeze(assignment: Mapping[UUID, set[int] | frozenset[int]]) -> dict[UUID, frozenset[int]]:
    return {t: frozenset(ps) for t, ps in assignment.items() if ps}


def _sorted_topic_ids(spec: GroupSpec, topic_ids: frozenset[UUID] | set[UUID]) -> list[UUID]:
    return sorted((t for t in topic_ids if t in spec.topics), key=lambda t: (spec.topics[t].name, str(t)))


# --- uniform -------------------------------------------------------------------------------------


class UniformAssignor:
    """See the module docstring."""

    name = UNIFORM_ASSIGNOR_NAME

    def assign(self, spec: GroupSpec) -> dict[str, Assignment]:
        if not spec.members:
            return {}
        if spec.is_homogeneous:
            return _uniform_homogeneous(spec)
        return _uniform_heterogeneous(spec)


def _uniform_homogeneous(spec: GroupSpec) -> dict[str, Assignment]:
    first = next(iter(spec.members.values()))
    topic_ids = _sorted_topic_ids(spec, first.subscribed_topic_ids)
    if not topic_ids:
        return {m: {} for m in spec.members}
    subscribed = set(topic_ids)
    # Partitions some member's current target holds (the inverted target assignment).
    held: set[tuple[UUID, int]] = set()
    for m in spec.members.values():
        for t, ps in m.assignment.items():
            held.update((t, p) for p in ps)
    total = sum(spec.topics[t].partitions for t in topic_ids)
    unassigned = [(t, p) for t in topic_ids for p in range(spec.topics[t].partitions) if (t, p) not in held]
    members_count = len(spec.members)
    quota_min, extra = divmod(total, members_count)

    result: dict[str, dict[UUID, set[int]]] = {}
    unfilled: list[tuple[str, int]] = []
    for member_id, m in spec.members.items():
        quota = quota_min
        if extra > 0:
            quota += 1
            extra -= 1
        kept: dict[UUID, set[int]] = {}
        for t in sorted(m.assignment, key=lambda t: (spec.topics[t].name if t in spec.topics else "", str(t))):
            if t not in subscribed:
                continue  # no longer subscribed (or gone): released, not re-offered
            count = spec.topics[t].partitions
            for p in sorted(m.assignment[t]):
                if p >= count:
                    continue  # the topic shrank (cannot happen in Kafka; harmless here)
                if quota > 0:
                    kept.setdefault(t, set()).add(p)
                    quota -= 1
                else:
                    unassigned.append((t, p))
        result[member_id] = kept
        if quota > 0:
            unfilled.append((member_id, quota))

    i = 0
    for member_id, room in unfilled:
        target = result[member_id]
        while room > 0 and i < len(unassigned):
            t, p = unassigned[i]
            i += 1
            target.setdefault(t, set()).add(p)
            room -= 1
    assert i == len(unassigned), "partitions were left unassigned"
    return {m: _freeze(a) for m, a in result.items()}


def _uniform_heterogeneous(spec: GroupSpec) -> dict[str, Assignment]:
    members = list(spec.members)
    subscribers: dict[UUID, list[str]] = {}
    for member_id, m in spec.members.items():
        for t in m.subscribed_topic_ids:
            if t in spec.topics:
                subscribers.setdefault(t, []).append(member_id)

    owner: dict[tuple[UUID, int], str] = {}
    load = dict.fromkeys(members, 0)
    # 1. Stickiness: keep what each member has, still subscribes to, and nobody kept before.
    for member_id, m in spec.members.items():
        for t in _sorted_topic_ids(spec, set(m.assignment)):
            if t not in m.subscribed_topic_ids:
                continue
            for p in sorted(m.assignment[t]):
                if p < spec.topics[t].partitions and (t, p) not in owner:
                    owner[(t, p)] = member_id
                    load[member_id] += 1

    # 2. Place the rest, most constrained partitions first, on the least-loaded subscriber.
    position = {m: i for i, m in enumerate(members)}
    pending = [(t, p) for t in _sorted_topic_ids(spec, set(subscribers))
               for p in range(spec.topics[t].partitions) if (t, p) not in owner]
    pending.sort(key=lambda tp: len(subscribers[tp[0]]))
    for t, p in pending:
        chosen = min(subscribers[t], key=lambda m: (load[m], position[m]))
        owner[(t, p)] = chosen
        load[chosen] += 1

    # 3. Balance: move a partition to a subscriber with at least two fewer. Each move lowers the
    # sum of squared loads, so this ends.
    by_member: dict[str, list[tuple[UUID, int]]] = {m: [] for m in members}
    for tp, owner_id in sorted(owner.items(), key=lambda item: (spec.topics[item[0][0]].name, item[0][1])):
        by_member[owner_id].append(tp)
    moved = True
    while moved:
        moved = False
        for giver in sorted(members, key=lambda m: (-load[m], position[m])):
            for tp in reversed(by_member[giver]):
                taker = min(subscribers[tp[0]], key=lambda m: (load[m], position[m]))
                if load[taker] + 1 < load[giver]:
                    by_member[giver].remove(tp)
                    by_member[taker].append(tp)
                    load[giver] -= 1
                    load[taker] += 1
                    moved = True
                    break
            if moved:
                break

    result: dict[str, dict[UUID, set[int]]] = {m: {} for m in members}
    for member_id, tps in by_member.items():
        for t, p in tps:
            result[member_id].setdefault(t, set()).add(p)
    return {m: _freeze(a) for m, a in result.items()}


# --- range ---------------------------------------------------------------------------------------


class RangeAssignor:
    """See the module docstring."""

    name = RANGE_ASSIGNOR_NAME

    def assign(self, spec: GroupSpec) -> dict[str, Assignment]:
        ordered = sorted(spec.members.values(), key=_range_order)
        result: dict[str, dict[UUID, set[int]]] = {m: {} for m in spec.members}
        all_topics: set[UUID] = set()
        for m in ordered:
            all_topics.update(m.subscribed_topic_ids)
        for t in _sorted_topic_ids(spec, all_topics):
            subscribed = [m.member_id for m in ordered if t in m.subscribed_topic_ids]
            count = spec.topics[t].partitions
            quota, extra = divmod(count, len(subscribed))
            start = 0
            for member_id in subscribed:
                size = quota + (1 if extra > 0 else 0)
                extra -= 1 if extra > 0 else 0
                end = min(start + size, count)
                if start < end:
                    result[member_id][t] = set(range(start, end))
                start = end
        return {m: _freeze(a) for m, a in result.items()}


def _range_order(m: MemberSpec) -> tuple[int, str]:
    """Static members first, by instance id; then dynamic members by member id."""
    if m.instance_id is not None:
        return (0, m.instance_id)
    return (1, m.member_id)


ASSIGNORS: dict[str, PartitionAssignor] = {
    UNIFORM_ASSIGNOR_NAME: UniformAssignor(),
    RANGE_ASSIGNOR_NAME: RangeAssignor(),
}

# ``group.consumer.assignors`` takes names or Kafka's class names.
ASSIGNOR_CLASS_NAMES = {
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": UNIFORM_ASSIGNOR_NAME,
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": RANGE_ASSIGNOR_NAME,
    "org.apache.kafka.coordinator.group.api.assignor.UniformAssignor": UNIFORM_ASSIGNOR_NAME,
    "org.apache.kafka.coordinator.group.api.assignor.RangeAssignor": RANGE_ASSIGNOR_NAME,
}


def assignor_by_config_name(name: str) -> PartitionAssignor | None:
    """The assignor a ``group.consumer.assignors`` entry names, or None when we have none by that name."""
    return ASSIGNORS.get(ASSIGNOR_CLASS_NAMES.get(name.strip(), name.strip()))
