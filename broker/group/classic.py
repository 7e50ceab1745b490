"""One classic consumer group: its members, generation and state (Kafka's ``ClassicGroup``), sans-IO.

What it owns. The membership of one group that uses the classic rebalance protocol
(JoinGroup/SyncGroup/Heartbeat/LeaveGroup): the members and what each asked for (protocol
type, protocols in preference order, timeouts, client id and host, static instance id), the
request each member is waiting on (a ``Waiter``: the caller's opaque token and the API version
of the parked JoinGroup or SyncGroup), the generation, the chosen protocol and leader, the
members still owed a JoinGroup (``pending_join_members``, KIP-394) or a SyncGroup
(``pending_sync_members``), and the topics the members subscribe to.

What it never does: I/O, clocks, timers or responses. ``GroupCoordinator`` (coordinator.py) drives
it: it calls these methods, keeps the timers, and builds the responses that complete waiters.
Time comes in as ``now_ms`` where a state change stamps the group.

The state machine (Kafka's ``ClassicGroupState``):

- Empty -> PreparingRebalance: a member joins.
- PreparingRebalance -> CompletingRebalance: the join phase ends with members (a new
  generation); -> Empty: it ends with none.
- CompletingRebalance -> Stable: the leader's SyncGroup; -> PreparingRebalance: a join with new
  metadata, a new member, a leave, a session or sync timeout.
- Stable -> PreparingRebalance: a new member, changed metadata, the leader rejoining, a leave, a
  session or sync timeout.
- any -> Dead: deleted or unloaded. (The coordinator removes deleted groups instead of keeping
  them Dead, as Kafka's replay of the tombstone does.)

``transition_to`` refuses any other move (an ``AssertionError``: a coordinator bug, not input).
Member order is insertion order: the first member becomes leader, the next one in order takes
over when the leader leaves, and responses list members in this order. Kafka iterates a
``HashMap`` here, so its order is arbitrary; ours is deterministic.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from protocol.errors import ProtocolError
from protocol.messages.consumer_protocol_subscription import ConsumerProtocolSubscription

CONSUMER_PROTOCOL_TYPE = "consumer"


class GroupState(enum.Enum):
    """A classic group's state; the value is the name DescribeGroups and ListGroups report."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}

Protocols = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Waiter:
    """A parked JoinGroup or SyncGroup: the caller's token and the request's API version."""

    token: Hashable
    api_version: int


@dataclass(slots=True)
class ClassicMember:
    """One member of a classic group (Kafka's ``ClassicGroupMember``)."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: Protocols  # (name, metadata) in the member's order of preference
    assignment: bytes = b""
    join_waiter: Waiter | None = None
    sync_waiter: Waiter | None = None
    # A member added by the current rebalance: it cannot heartbeat yet, so its (long) join
    # timeout may expire it even while it awaits the JoinGroup response.
    is_new: bool = False

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def is_awaiting_join(self) -> bool:
        return self.join_waiter is not None

    @property
    def is_awaiting_sync(self) -> bool:
        return self.sync_waiter is not None

    def metadata(self, protocol_name: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol_name:
                return metadata
        raise AssertionError(f"member {self.member_id} does not support protocol {protocol_name}")

    def protocol_names(self) -> set[str]:
        return {name for name, _ in self.protocols}

    def has_satisfied_heartbeat(self) -> bool:
        """Whether a session expiry leaves this member alone: a parked request counts as a heartbeat."""
        if self.is_new:
            return False
        return self.is_awaiting_join or self.is_awaiting_sync

    def matches(self, protocols: Protocols) -> bool:
        return protocols == self.protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among ``candidates``."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise AssertionError(f"member {self.member_id} supports none of {sorted(candidates)}")


@dataclass(slots=True)
class ClassicGroup:
    """One classic group's membership state. Mutated only by ``GroupCoordinator``."""

    group_id: str
    state: GroupState
    state_timestamp_ms: int | None  # when the group last changed state; None if never known
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    previous_state: GroupState = GroupState.DEAD
    members: dict[str, ClassicMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    # Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet (KIP-394).
    pending_join_members: dict[str, None] = field(default_factory=dict)
    # Members given the new generation that have not sent SyncGroup yet.
    pending_sync_members: dict[str, None] = field(default_factory=dict)
    awaiting_join_count: int = 0
    supported_protocols: dict[str, int] = field(default_factory=dict)  # name -> members supporting it
    subscribed_topics: frozenset[str] | None = None  # None: unknown
    # Set while an initial rebalance is delayed and a member joins, to extend the delay.
    new_member_added: bool = False
    last_rebalance_reason: str = ""

    # --- queries -------------------------------------------------------------------------------

    def is_in(self, state: GroupState) -> bool:
        return self.state is state

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id is not None and self.leader_id == member_id

    def is_pending_member(self, member_id: str) -> bool:
        return member_id in self.pending_join_members

    def static_member_id(self, group_instance_id: str) -> str | None:
        return self.static_members.get(group_instance_id)

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.awaiting_join_count and not self.pending_join_members

    def not_yet_rejoined_members(self) -> list[ClassicMember]:
        return [m for m in self.members.values() if not m.is_awaiting_join]

    def rebalance_timeout_ms(self) -> int:
        """The largest rebalance timeout of any member (0 with no members)."""
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def can_rebalance(self) -> bool:
        return self.state in _VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    def uses_consumer_protocol(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    def is_subscribed_to_topic(self, topic: str) -> bool:
        if self.subscribed_topics is None:
            return self.uses_consumer_protocol()
        return topic in self.subscribed_topics

    def is_simple_group(self) -> bool:
        """A group that only stores offsets: no protocol, no members, none pending."""
        return self.protocol_type is None and self.is_in(GroupState.EMPTY) and not self.pending_join_members

    def supports_protocols(self, protocol_type: str, protocol_names: set[str]) -> bool:
        """Whether a member with these protocols could join: Empty takes any non-empty set, else
        the protocol type must match and one protocol must be supported by every member."""
        if self.is_in(GroupState.EMPTY):
            return protocol_type != "" and bool(protocol_names)
        n = len(self.members)
        return (self.protocol_type == protocol_type
                and any(self.supported_protocols.get(name, 0) == n for name in protocol_names))

    def select_protocol(self) -> str:
        """The protocol every member supports with the most first-choice votes.

        Each member votes for the protocol it prefers most among those all members support.
        Kafka breaks a tie by hash-map order, which is arbitrary; we take the tied protocol the
        earliest member (the leader, usually) prefers most, which is deterministic.
        """
        assert self.members, "cannot select a protocol for an empty group"
        n = len(self.members)
        candidates = {name for name, count in self.supported_protocols.items() if count == n}
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = member.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        best = max(votes.values())
        tied = {name for name, count in votes.items() if count == best}
        first = next(iter(self.members.values()))
        return next(name for name, _ in first.protocols if name in tied)

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        """The union of the members' subscribed topics, for groups of protocol type "consumer".

        None when the protocol type is not "consumer", no protocol is chosen yet, or a member's
        metadata is not a consumer-protocol subscription. Every version of the subscription starts
        with the version-0 layout (int16 version, topics, user data), so that is all we read.
        """
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            metadata = member.metadata(self.protocol_name)
            if len(metadata) < 2:
                return None
            try:
                subscription = ConsumerProtocolSubscription.decode(memoryview(metadata)[2:], 0)
            except ProtocolError:
                return None
            topics.update(subscription.topics)
        return frozenset(topics)

    def member_metadata_for_join(self) -> list[tuple[str, str | None, bytes]]:
        """(member id, instance id, metadata of the chosen protocol) for the leader's JoinGroup response."""
        assert self.state not in (GroupState.DEAD, GroupState.PREPARING_REBALANCE)
        assert self.protocol_name is not None
        name = self.protocol_name
        return [(m.member_id, m.group_instance_id, m.metadata(name)) for m in self.members.values()]

    # --- changes -------------------------------------------------------------------------------

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        assert self.state in _VALID_PREVIOUS[state], f"group {self.group_id}: {self.state} -> {state}"
        self.previous_state = self.state
        self.state = state
        self.state_timestamp_ms = now_ms

    def add(self, member: ClassicMember) -> None:
        """Add a member (its ``join_waiter`` already set if it awaits the join response)."""
        if member.group_instance_id is not None:
            assert member.group_instance_id not in self.static_members
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        assert self.protocol_type == member.protocol_type
        assert self.supports_protocols(member.protocol_type, member.protocol_names())
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self._count_protocols(member, 1)
        if member.is_awaiting_join:
            self.awaiting_join_count += 1
        self.pending_join_members.pop(member.member_id, None)

    def remove(self, member_id: str) -> ClassicMember | None:
        """Remove a member or a pending member id; returns the member removed, if any.

        Waiters of the removed member are left on it: the caller answers or drops them.
        """
        member = self.members.pop(member_id, None)
        if member is not None:
            self._count_protocols(member, -1)
            if member.is_awaiting_join:
                self.awaiting_join_count -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.is_leader(member_id):
            self.leader_id = next(iter(self.members), None)
        self.pending_join_members.pop(member_id, None)
        self.pending_sync_members.pop(member_id, None)
        return member

    def add_pending_member(self, member_id: str) -> None:
        assert member_id not in self.members
        self.pending_join_members[member_id] = None

    def add_pending_sync_member(self, member_id: str) -> None:
        assert member_id in self.members
        self.pending_sync_members[member_id] = None

    def remove_pending_sync_member(self, member_id: str) -> None:
        assert member_id in self.members
        self.pending_sync_members.pop(member_id, None)

    def set_join_waiter(self, member: ClassicMember, waiter: Waiter | None) -> Waiter | None:
        """Park (or clear) the member's JoinGroup; returns the waiter it replaces, if any."""
        old = member.join_waiter
        if waiter is not None and old is None:
            self.awaiting_join_count += 1
        elif waiter is None and old is not None:
            self.awaiting_join_count -= 1
        member.join_waiter = waiter
        return old

    def update_member(self, member: ClassicMember, protocols: Protocols, rebalance_timeout_ms: int,
                      session_timeout_ms: int, waiter: Waiter | None) -> Waiter | None:
        """New protocols and timeouts for a member, and its parked JoinGroup (returns the replaced one)."""
        self._count_protocols(member, -1)
        member.protocols = protocols
        self._count_protocols(member, 1)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        return self.set_join_waiter(member, waiter)

    def replace_static_member(self, group_instance_id: str, old_member_id: str,
                              new_member_id: str) -> tuple[ClassicMember, ClassicMember]:
        """Give a static member a new member id; returns (old member, new member).

        The old member object keeps its waiters so the caller can fence them. The new member
        keeps everything else, including its place as leader and its protocol votes. As in Kafka,
        ``pending_sync_members`` keeps the old id if it was there: the new id need not sync, but
        the sync timeout will then find the old id missing and rebalance the group.
        """
        old = self.members.pop(old_member_id)
        if old.is_awaiting_join:
            self.awaiting_join_count -= 1
        new = ClassicMember(
            member_id=new_member_id,
            group_instance_id=old.group_instance_id,
            client_id=old.client_id,
            client_host=old.client_host,
            rebalance_timeout_ms=old.rebalance_timeout_ms,
            session_timeout_ms=old.session_timeout_ms,
            protocol_type=old.protocol_type,
            protocols=old.protocols,
            assignment=old.assignment,
        )
        self.members[new_member_id] = new
        if self.is_leader(old_member_id):
            self.leader_id = new_member_id
        self.static_members[group_instance_id] = new_member_id
        return old, new

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else pick the first member that did.

        False when there is no leader or no member rejoined.
        """
        if self.leader_id is None:
            return False
        leader = self.members[self.leader_id]
        if leader.is_awaiting_join:
            return True
        for member in self.members.values():
            if member.is_awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    def _count_protocols(self, member: ClassicMember, delta: int) -> None:
        for name, _ in member.protocols:
            self.supported_protocols[name] = self.supported_protocols.get(name, 0) + delta


def plain_protocols(protocols: Iterable[tuple[str, bytes | bytearray | memoryview]]) -> Protocols:
    """Protocols as owned bytes (request fields may be views into a reused frame buffer)."""
    return tuple((name, bytes(metadata)) for name, metadata in protocols)
