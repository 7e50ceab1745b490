"""The group coordinator: classic and KIP-848 consumer groups and committed offsets, sans-IO.

What it owns. Every group this broker coordinates, classic (``ClassicGroup``, classic.py) or
consumer (``ConsumerGroup``, consumer.py), in one group-id namespace; the offsets committed for
them; and the timers that drive rebalances: member session expiry, the join phase's rebalance
timeout and initial delay, the sync phase's timeout, a consumer-group member's revocation
deadline, and the periodic expiry of offsets (``offsets.retention.minutes``). It answers
JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete,
DescribeGroups, ListGroups, DeleteGroups, ConsumerGroupHeartbeat and ConsumerGroupDescribe the way
Kafka's group coordinator does (``GroupMetadataManager``/``OffsetMetadataManager``/
``ClassicGroup``/``ConsumerGroup`` of Kafka 3.9/4.0, which keep the rules of the 3.x Scala
``GroupCoordinator`` for classic groups).

What it never does: I/O, reading a clock, randomness, sleeping. Time comes in as ``now_ms`` on
every call; member ids are made from an injected UUID source; records to persist come out as
values. The trio adapter owns the sockets, the clock and the ``__consumer_offsets`` log.

Theory of operation. Every public method takes decoded request values (the generated request
classes of ``protocol.messages``) and ``now_ms``, and returns a ``CoordinatorResult``:

- ``response``: the answer to this request, or None when it is *parked*. JoinGroup and SyncGroup
  park until the rebalance gets far enough; the caller passes an opaque, hashable ``token``
  (unique among its outstanding requests) and receives the answer later as a ``Completion`` with
  that token, from this or any later call (another member's request, or ``tick``).
- ``completions``: answers to parked requests that this call released, each with its token.
  The response objects are shaped for the API version of the request they answer.
- ``records``: ``OffsetsRecord`` values to append to ``__consumer_offsets`` (partition, key,
  value-or-tombstone), in order, in Kafka's byte format (records.py). The coordinator has already
  applied them to its own state. The adapter should append them before it sends ``response``
  and ``completions``, as Kafka answers only after the write.
- ``abandoned``: tokens of parked requests that will never be answered (Kafka drops them too):
  a member re-sent JoinGroup or SyncGroup while one was parked, or left or was removed while
  parked. The adapter should stop waiting for them.

Time. ``next_deadline_ms()`` is when the earliest timer is due; the adapter calls
``tick(now_ms)`` then (or later). Every other method also runs the timers that are due first, so
a late tick changes nothing but latency. Timers fire in deadline order, ties in scheduling order.

Rebalance in brief (Kafka's rules; the methods below cite the details). JoinGroup from an
unknown member with API v4+ gets MEMBER_ID_REQUIRED and a fresh member id
(``<client_id>-<uuid>``, KIP-394); the id is *pending* until the member rejoins with it or its
session timeout passes. A join moves an Empty, Stable or CompletingRebalance group to
PreparingRebalance. From Empty the join phase waits ``group.initial.rebalance.delay.ms``, again
each time a member arrived during the last wait, never longer than the largest rebalance timeout
allows; otherwise it ends as soon as every member (pending ones included) has rejoined, or when
the rebalance timeout passes, removing dynamic members that did not rejoin. Then the generation
goes up, the protocol every member supports with the most first-choice votes is chosen, every
waiting member gets its JoinGroup answer (the leader with everyone's metadata) and the group
waits in CompletingRebalance for the leader's SyncGroup, whose assignments are persisted and sent
to all members; members that send no SyncGroup within the rebalance timeout are removed and the
group rebalances again. A static member (``group.instance.id``, KIP-345) that rejoins with an
empty member id gets a new id and takes over the old one's place without a rebalance when the
group is Stable and the chosen protocol would not change; requests still carrying the old id get
FENCED_INSTANCE_ID.

Consumer groups in brief (KIP-848; consumer.py has the theory). ConsumerGroupHeartbeat carries
the member's epoch: 0 joins (a member id is made when the request has none), -1 leaves, -2 is a
static member's temporary leave; anything else must match the member's epoch (or its previous
one, with owned partitions within the assignment, when our last answer was lost), else
FENCED_MEMBER_EPOCH. A heartbeat updates the member (records), bumps the group epoch when the
subscriptions or the subscribed topics changed, recomputes the target assignment when the group
epoch is ahead of it, reconciles the member towards its target (revoke first, then assign only
released partitions), and answers with the member's epoch and, when it changed or the request
was a full one, its assignment. The topic metadata comes from the caller (``set_topics`` or the
``topics`` argument). Sessions (``group.consumer.session.timeout.ms``) and revocation deadlines
(the member's rebalance timeout while it holds partitions it must give up) fence members that
miss them: their records are tombstoned and the group epoch goes up.

Classic and consumer groups share the group-id namespace, as in Kafka with
``group.consumer.migration.policy=disabled`` (Kafka 3.9's default; online upgrade and downgrade
are not implemented): a consumer-protocol join takes over an *empty* classic group (tombstoning
it, offsets kept) and is refused with GROUP_ID_NOT_FOUND by a classic group with members; a
JoinGroup takes over an empty consumer group and gets INCONSISTENT_GROUP_PROTOCOL from one with
members (Kafka 3.9/4.0 would instead admit a classic member with protocol type "consumer" into
the consumer group; this coordinator does not mix protocols in a group). SyncGroup and Heartbeat
for a consumer group answer UNKNOWN_MEMBER_ID, LeaveGroup names each member UNKNOWN_MEMBER_ID (or
FENCED_INSTANCE_ID), DescribeGroups (v0-v5) describes it as Dead, and ConsumerGroupDescribe
answers GROUP_ID_NOT_FOUND for a classic group; all as Kafka does.

Partitions. On a single node the coordinator holds every group (``load`` per partition at
start). In a cluster the broker leads only some ``__consumer_offsets`` partitions:
``load_partition`` takes over one partition's groups when the broker becomes its leader, and
``unload_partition`` forgets them when it stops leading (parked JoinGroup and SyncGroup requests
of those groups are answered NOT_COORDINATOR then, as Kafka's ``onGroupUnloaded`` does).

Not modelled (handled by the adapter or not at all): authorization; answering NOT_COORDINATOR
and COORDINATOR_LOAD_IN_PROGRESS for a group of a partition that is not loaded (the adapter
knows which partitions it leads and gates requests before they get here); failed appends (Kafka reverts the change and answers with an error; here state is already
changed); transactional offset commits (only a stub set of pending transactional offsets, which
OffsetFetch with ``require_stable`` and offset expiry consult); per-group configs
(KIP-848 ``IncrementalAlterConfigs`` on groups); classic members inside consumer groups.

Bounds: state grows with groups, members and committed offsets, as Kafka's does; each member has
at most one heartbeat timer and each group one join and one sync timer; a consumer group member
has at most a session and a revocation timer. A ConsumerGroupHeartbeat costs time linear in the
group's members and subscribed topics (Kafka keeps incremental counts; we recompute them). The
timer heap keeps superseded entries until they would have fired, and is compacted when they
outnumber live ones.
Single-threaded; no method blocks.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar
from uuid import UUID

from broker.group import consumer as cg
from broker.group import records as rec
from broker.group.assignors import PartitionAssignor, assignor_by_config_name
from broker.group.classic import (
    ClassicGroup,
    ClassicMember,
    GroupState,
    Protocols,
    Waiter,
    plain_protocols,
)
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from protocol.messages.offset_delete import OffsetDeleteRequest, OffsetDeleteResponse
from protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse

R = TypeVar("R")

UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1
INVALID_OFFSET = -1
DEFAULT_RETENTION_TIME_MS = -1  # OffsetCommit v2-v4: "use the broker's retention"
DEFAULT_COMMIT_TIMESTAMP_MS = -1  # OffsetCommit v1: "stamp the commit with the broker's time"
CLASSIC_GROUP_TYPE = "classic"
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)  # Kafka's Integer.MIN_VALUE: "not requested"

# AclOperation codes, for the DescribeGroups authorized-operations bitfield (bit n = operation n).
ACL_READ = 3
ACL_DELETE = 6
ACL_DESCRIBE = 8
ACL_DESCRIBE_CONFIGS = 10
ACL_ALTER_CONFIGS = 11


def operations_bitfield(operations: Iterable[int]) -> int:
    """Kafka's ``Utils.to32BitField``: one bit per AclOperation code."""
    bits = 0
    for op in operations:
        assert 0 <= op < 32
        bits |= 1 << op
    return bits


# What a broker without an authorizer reports: every operation a group resource supports. Kafka
# 3.x supports READ, DESCRIBE and DELETE on groups (328); Kafka 4.0 adds DESCRIBE_CONFIGS and
# ALTER_CONFIGS (KIP-848 group configs; 3400).
GROUP_OPERATIONS_KAFKA_3 = operations_bitfield((ACL_READ, ACL_DESCRIBE, ACL_DELETE))
GROUP_OPERATIONS_KAFKA_4 = operations_bitfield(
    (ACL_READ, ACL_DESCRIBE, ACL_DELETE, ACL_DESCRIBE_CONFIGS, ACL_ALTER_CONFIGS))


# --- configuration -------------------------------------------------------------------------------


class _BrokerGroupSettings(Protocol):
    """The attributes of ``broker.config.BrokerConfig`` that ``from_broker_config`` reads."""

    @property
    def group_initial_rebalance_delay_ms(self) -> int: ...

    @property
    def group_min_session_timeout_ms(self) -> int: ...

    @property
    def group_max_session_timeout_ms(self) -> int: ...

    @property
    def group_max_size(self) -> int: ...

    @property
    def offset_metadata_max_bytes(self) -> int: ...

    @property
    def offsets_topic_num_partitions(self) -> int: ...

    @property
    def offsets_retention_minutes(self) -> int: ...

    @property
    def offsets_retention_check_interval_ms(self) -> int: ...

    def get(self, name: str) -> object:
        """Any broker key's parsed value (``KeyError`` for a key the configuration does not define)."""
        ...


@dataclass(frozen=True, slots=True)
class GroupCoordinatorConfig:
    """Limits and periods, with Kafka's defaults (its property names in the comments)."""

    session_timeout_ms_min: int = 6_000  # group.min.session.timeout.ms
    session_timeout_ms_max: int = 1_800_000  # group.max.session.timeout.ms
    initial_rebalance_delay_ms: int = 3_000  # group.initial.rebalance.delay.ms
    group_members_max: int = 2**31 - 1  # group.max.size
    # How long a new member's parked JoinGroup may wait before the member is dropped (Kafka's
    # fixed 5 minutes; it cannot heartbeat before it has its first JoinGroup answer).
    new_member_join_timeout_ms: int = 300_000
    # offset.metadata.max.bytes; Kafka compares it with the metadata's length in UTF-16 units.
    offset_metadata_chars_max: int = 4_096
    offsets_retention_ms: int = 10_080 * 60_000  # offsets.retention.minutes
    offsets_retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms
    offsets_topic_partitions: int = 50  # offsets.topic.num.partitions
    # KIP-848 consumer groups.
    consumer_session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms
    consumer_heartbeat_interval_ms: int = 5_000  # group.consumer.heartbeat.interval.ms
    consumer_group_members_max: int = 2**31 - 1  # group.consumer.max.size
    # group.consumer.assignors: names (or Kafka's class names); the first is the default.
    consumer_assignors: tuple[str, ...] = ("uniform", "range")
    # group.consumer.migration.policy: only "disabled" is implemented (see the module docstring).
    consumer_migration_policy: str = "disabled"

    def __post_init__(self) -> None:
        assert self.consumer_assignors, "group.consumer.assignors needs at least one assignor"
        for name in self.consumer_assignors:
            assert assignor_by_config_name(name) is not None, f"no server assignor named {name!r}"

    @classmethod
    def from_broker_config(cls, config: _BrokerGroupSettings) -> GroupCoordinatorConfig:
        defaults = cls()

        def optional(name: str, default: object) -> object:
            try:
                value = config.get(name)
            except KeyError:
                return default
            return default if value is None else value

        assignors = optional("group.consumer.assignors", defaults.consumer_assignors)
        assert isinstance(assignors, tuple)
        consumer_session_timeout_ms = optional("group.consumer.session.timeout.ms", defaults.consumer_session_timeout_ms)
        consumer_heartbeat_interval_ms = optional("group.consumer.heartbeat.interval.ms",
                                                  defaults.consumer_heartbeat_interval_ms)
        consumer_group_members_max = optional("group.consumer.max.size", defaults.consumer_group_members_max)
        migration_policy = optional("group.consumer.migration.policy", defaults.consumer_migration_policy)
        assert isinstance(consumer_session_timeout_ms, int)
        assert isinstance(consumer_heartbeat_interval_ms, int)
        assert isinstance(consumer_group_members_max, int)
        assert isinstance(migration_policy, str)
        return cls(
            consumer_session_timeout_ms=consumer_session_timeout_ms,
            consumer_heartbeat_interval_ms=consumer_heartbeat_interval_ms,
            consumer_group_members_max=consumer_group_members_max,
            consumer_assignors=tuple(assignors),
            consumer_migration_policy=migration_policy.lower(),
            session_timeout_ms_min=config.group_min_session_timeout_ms,
            session_timeout_ms_max=config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            group_members_max=config.group_max_size,
            offset_metadata_chars_max=config.offset_metadata_max_bytes,
            offsets_retention_ms=config.offsets_retention_minutes * 60_000,
            offsets_retention_check_interval_ms=config.offsets_retention_check_interval_ms,
            offsets_topic_partitions=config.offsets_topic_num_partitions,
        )


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OffsetsRecord:
    """One record for ``__consumer_offsets``: its partition, key bytes and value bytes (None: tombstone)."""

    partition: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer to a parked JoinGroup or SyncGroup, for the request the caller tagged ``token``."""

    token: Hashable
    response: JoinGroupResponse | SyncGroupResponse


@dataclass(slots=True)
class CoordinatorResult(Generic[R]):
    """What a call produced; see the module docstring for what the adapter does with each part."""

    response: R | None
    records: list[OffsetsRecord] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    abandoned: list[Hashable] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """One committed offset as the coordinator keeps it."""

    offset: int
    leader_epoch: int  # -1: none
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int | None  # set only by OffsetCommit v2-v4 with an explicit retention


# --- timers --------------------------------------------------------------------------------------

_TimerKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Timer:
    kind: str  # "heartbeat" | "join" | "initial_join" | "sync" | "expire_offsets" | "cg_session" | "cg_revoke"
    group_id: str = ""
    member_id: str = ""
    delay_ms: int = 0  # initial_join: the delay that just ran
    remaining_ms: int = 0  # initial_join: what is left of the rebalance timeout
    generation_id: int = 0  # sync; cg_revoke: the member epoch it must leave


class _Timers:
    """Keyed one-shot deadlines: scheduling a key again replaces its deadline."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _TimerKey]] = []
        self._live: dict[_TimerKey, tuple[int, int, _Timer]] = {}
        self._seq = 0

    def schedule(self, key: _TimerKey, deadline_ms: int, timer: _Timer) -> None:
        self._seq += 1
        self._live[key] = (deadline_ms, self._seq, timer)
        heapq.heappush(self._heap, (deadline_ms, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [(d, s, k) for k, (d, s, _) in self._live.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: _TimerKey) -> None:
        self._live.pop(key, None)

    def cancel_groups(self, group_ids: set[str]) -> None:
        """Cancel every timer of these groups (the global offset-expiry timer has no group)."""
        for key, (_, _, timer) in list(self._live.items()):
            if timer.group_id and timer.group_id in group_ids:
                del self._live[key]

    def is_scheduled(self, key: _TimerKey) -> bool:
        return key in self._live

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            deadline, seq, key = heap[0]
            live = self._live.get(key)
            if live is not None and live[1] == seq:
                return
            heapq.heappop(heap)

    def next_deadline_ms(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> _Timer | None:
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now_ms:
            return None
        _, _, key = heapq.heappop(self._heap)
        return self._live.pop(key)[2]


@dataclass(slots=True)
class _Out:
    records: list[OffsetsRecord] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    abandoned: list[Hashable] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Join:
    """A JoinGroup request, normalised."""

    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: Protocols
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str
    client_host: str
    reason: str
    waiter: Waiter


# --- responses -----------------------------------------------------------------------------------


def _join_error(member_id: str, error: ErrorCode) -> JoinGroupResponse:
    return JoinGroupResponse(error_code=error, member_id=member_id, generation_id=NO_GENERATION)


def _shape_join(response: JoinGroupResponse, api_version: int) -> JoinGroupResponse:
    """Kafka's ``JoinGroupResponse`` constructor: before v7 the protocol name cannot be null."""
    if api_version < 7 and response.protocol_name is None:
        response.protocol_name = ""
    elif api_version >= 7 and response.protocol_name == "":
        response.protocol_name = None
    return response


def _java_length(s: str) -> int:
    """Java's ``String.length()``: UTF-16 code units."""
    if s.isascii():
        return len(s)
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


class GroupCoordinator:
    """Classic and consumer groups and committed offsets for every group this broker coordinates.

    ``new_uuid`` returns a fresh UUID string (Kafka's format: 36 lowercase hex digits and
    dashes) for each new member id; it is the only source of randomness. Tokens of parked
    requests are the caller's: any hashable value except None, distinct among the requests
    still waiting. Not thread-safe.
    """

    def __init__(self, config: GroupCoordinatorConfig, *, new_uuid: Callable[[], str]) -> None:
        self.config = config
        self._new_uuid = new_uuid
        self._groups: dict[str, ClassicGroup] = {}
        # KIP-848 groups; a group id is in at most one of the two dicts.
        self._consumer_groups: dict[str, cg.ConsumerGroup] = {}
        self._offsets: dict[str, dict[str, dict[int, CommittedOffset]]] = {}
        # The topic metadata consumer groups are assigned from, and a counter bumped whenever it
        # changes (what resolved regular expressions are checked against).
        self._topics = cg.EMPTY_TOPICS
        self._topics_version = 0
        # Stub of Kafka's pending transactional offsets: (group, topic, partition) written by an
        # open transaction. OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for
        # them; offset expiry skips them (and keeps their group); OffsetDelete and DeleteGroups
        # write tombstones for them too.
        self.pending_transactional_offsets: set[tuple[str, str, int]] = set()
        self._timers = _Timers()
        self._out = _Out()
        self._now_ms = 0

    # --- inspection ------------------------------------------------------------------------------

    def group(self, group_id: str) -> ClassicGroup | None:
        """The classic group's live state (read it, do not change it), or None."""
        return self._groups.get(group_id)

    def consumer_group(self, group_id: str) -> cg.ConsumerGroup | None:
        """The consumer group's live state (read it, do not change it), or None."""
        return self._consumer_groups.get(group_id)

    def group_ids(self) -> list[str]:
        return list(self._groups) + list(self._consumer_groups)

    def set_topics(self, topics: cg.TopicsImage) -> None:
        """The broker's topics as they are now; consumer groups are assigned from the latest one."""
        if not topics.same_topics(self._topics):
            self._topics = topics
            self._topics_version += 1

    def committed_offset(self, group_id: str, topic: str, partition: int) -> CommittedOffset | None:
        return self._offsets.get(group_id, {}).get(topic, {}).get(partition)

    def committed_offsets(self, group_id: str) -> dict[tuple[str, int], CommittedOffset]:
        return {(topic, p): o for topic, parts in self._offsets.get(group_id, {}).items()
                for p, o in parts.items()}

    def partition_for(self, group_id: str) -> int:
        """The ``__consumer_offsets`` partition of ``group_id`` (FindCoordinator uses the same rule)."""
        return rec.partition_for(group_id, self.config.offsets_topic_partitions)

    def next_deadline_ms(self) -> int | None:
        """When ``tick`` next has work to do; None when no timer is set."""
        return self._timers.next_deadline_ms()

    # --- the call frame --------------------------------------------------------------------------

    def _begin(self, now_ms: int) -> None:
        self._out = _Out()
        self._now_ms = now_ms
        expiry_key = ("expire_offsets",)
        if not self._timers.is_scheduled(expiry_key):
            self._timers.schedule(expiry_key, now_ms + self.config.offsets_retention_check_interval_ms,
                                  _Timer("expire_offsets"))
        while (timer := self._timers.pop_due(now_ms)) is not None:
            self._fire(timer)

    def _finish(self, response: R | None, token: Hashable = None) -> CoordinatorResult[R]:
        out = self._out
        self._out = _Out()
        if response is None and token is not None:
            for i, completion in enumerate(out.completions):
                if completion.token == token:
                    response = completion.response  # type: ignore[assignment]
                    del out.completions[i]
                    break
        return CoordinatorResult(response, out.records, out.completions, out.abandoned)

    def tick(self, now_ms: int) -> CoordinatorResult[None]:
        """Run the timers due at ``now_ms``."""
        self._begin(now_ms)
        return self._finish(None)

    # --- JoinGroup -------------------------------------------------------------------------------

    def join_group(self, request: JoinGroupRequest, *, api_version: int, client_id: str, client_host: str,
                   token: Hashable, now_ms: int) -> CoordinatorResult[JoinGroupResponse]:
        """JoinGroup. ``response`` is None while the join is parked; ``token`` names it then.

        ``client_id`` comes from the request header, ``client_host`` is the peer's address as
        Kafka shows it (``/127.0.0.1``). Responses are shaped for ``api_version``.
        """
        self._begin(now_ms)
        join = _Join(
            member_id=request.member_id,
            group_instance_id=request.group_instance_id,
            protocol_type=request.protocol_type,
            protocols=plain_protocols((p.name, p.metadata) for p in request.protocols),
            session_timeout_ms=request.session_timeout_ms,
            # Version 0 has no rebalance timeout: the session timeout serves as both.
            rebalance_timeout_ms=request.session_timeout_ms if api_version == 0 else request.rebalance_timeout_ms,
            client_id=client_id,
            client_host=client_host,
            reason=request.reason or "not provided",
            waiter=Waiter(token, api_version),
        )
        response = self._join(request.group_id, join)
        if response is not None:
            response = _shape_join(response, api_version)
        return self._finish(response, token)

    def _join(self, group_id: str, join: _Join) -> JoinGroupResponse | None:
        cfg = self.config
        if not group_id:
            return _join_error(join.member_id, ErrorCode.INVALID_GROUP_ID)
        if not cfg.session_timeout_ms_min <= join.session_timeout_ms <= cfg.session_timeout_ms_max:
            return _join_error(join.member_id, ErrorCode.INVALID_SESSION_TIMEOUT)
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            if not consumer_group.is_empty:
                # Kafka 3.9/4.0 would admit a "consumer" protocol member into the consumer group;
                # this coordinator keeps protocols apart (see the module docstring).
                return _join_error(join.member_id, ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
            # Kafka's maybeDeleteEmptyConsumerGroup: an empty consumer group gives way.
            self._emit_all(cg.group_tombstones(consumer_group))
        is_unknown_member = join.member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(group_id)
        is_new_group = group is None
        if group is None:
            # A group is created by a join with no member id; a member id means a group we lost.
            if not is_unknown_member:
                return _join_error(join.member_id, ErrorCode.UNKNOWN_MEMBER_ID)
            group = ClassicGroup(group_id, GroupState.EMPTY, state_timestamp_ms=self._now_ms)
            self._groups[group_id] = group
        records_before = len(self._out.records)
        response: JoinGroupResponse | None
        if not self._accept_joining_member(group, join.member_id):
            self._drop_member(group, join.member_id)
            response = _join_error(UNKNOWN_MEMBER_ID, ErrorCode.GROUP_MAX_SIZE_REACHED)
        elif is_unknown_member:
            response = self._join_new_member(group, join)
        else:
            response = self._join_existing_member(group, join)
        if is_new_group and len(self._out.records) == records_before:
            # Kafka persists a newly created group even when the join wrote nothing else.
            self._emit(rec.GroupMetadataKey(group_id), rec.GroupMetadataValue(
                protocol_type="", generation=0, protocol=None, leader=None,
                current_state_timestamp_ms=self._state_timestamp(group)))
        return response

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        members_max = self.config.group_members_max
        if group.state in (GroupState.EMPTY, GroupState.DEAD):
            return True
        if group.is_in(GroupState.PREPARING_REBALANCE):
            # Counting members awaiting the join (not all members) lets the group shrink back
            # under the limit when it was lowered, dropping the last members to rejoin.
            member = group.members.get(member_id)
            return (member is not None and member.is_awaiting_join) or group.awaiting_join_count < members_max
        return member_id in group.members or len(group.members) < members_max

    def _join_new_member(self, group: ClassicGroup, join: _Join) -> JoinGroupResponse | None:
        if group.is_in(GroupState.DEAD):
            return _join_error(UNKNOWN_MEMBER_ID, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if not group.supports_protocols(join.protocol_type, {name for name, _ in join.protocols}):
            return _join_error(UNKNOWN_MEMBER_ID, ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        prefix = join.group_instance_id if join.group_instance_id is not None else join.client_id
        new_member_id = f"{prefix}-{self._new_uuid()}"
        if join.group_instance_id is not None:
            existing = group.static_member_id(join.group_instance_id)
            if existing is not None:
                return self._update_static_member(group, join, existing, new_member_id)
            self._add_member_and_rebalance(group, join, new_member_id)
            return None
        if join.waiter.api_version >= 4:
            # KIP-394: hand out the id and make the member come back with it, so that a client
            # that times out and retries does not leave a member behind in the group.
            group.add_pending_member(new_member_id)
            self._schedule_heartbeat(group.group_id, new_member_id, join.session_timeout_ms)
            return _join_error(new_member_id, ErrorCode.MEMBER_ID_REQUIRED)
        self._add_member_and_rebalance(group, join, new_member_id)
        return None

    def _join_existing_member(self, group: ClassicGroup, join: _Join) -> JoinGroupResponse | None:
        member_id = join.member_id
        if group.is_in(GroupState.DEAD):
            return _join_error(member_id, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if not group.supports_protocols(join.protocol_type, {name for name, _ in join.protocols}):
            return _join_error(member_id, ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        if group.is_pending_member(member_id):
            if join.group_instance_id is not None:
                # Pending ids are only handed to dynamic members; Kafka fails the request.
                return _join_error(member_id, ErrorCode.UNKNOWN_SERVER_ERROR)
            self._add_member_and_rebalance(group, join, member_id)
            return None
        error = self._validate_member(group, member_id, join.group_instance_id)
        if error is not ErrorCode.NONE:
            return JoinGroupResponse(error_code=error, member_id=member_id, generation_id=NO_GENERATION,
                                     protocol_name=None)
        member = group.members[member_id]
        state = group.state
        if state is GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(group, member, join, f"member {member_id} joining during {state.value}")
            return None
        if state is GroupState.COMPLETING_REBALANCE:
            if member.matches(join.protocols):
                # The member lost our answer; give it the same one again.
                return self._join_response(group, member_id, with_members=group.is_leader(member_id))
            self._update_member_and_rebalance(group, member, join, f"member {member_id} changed metadata")
            return None
        if state is GroupState.STABLE:
            if group.is_leader(member_id):
                # The leader's rejoin is how it asks for a new assignment (e.g. new partitions).
                self._update_member_and_rebalance(group, member, join, f"leader {member_id} rejoining")
                return None
            if not member.matches(join.protocols):
                self._update_member_and_rebalance(group, member, join, f"member {member_id} changed metadata")
                return None
            return self._join_response(group, member_id, with_members=False)
        # Empty: the member belongs to a generation the group no longer has.
        return _join_error(member_id, ErrorCode.UNKNOWN_MEMBER_ID)

    def _join_response(self, group: ClassicGroup, member_id: str, *, with_members: bool,
                       leader: str | None = None, skip_assignment: bool = False) -> JoinGroupResponse:
        members = []
        if with_members:
            members = [JoinGroupResponse.JoinGroupResponseMember(mid, instance_id, metadata)
                       for mid, instance_id, metadata in group.member_metadata_for_join()]
        leader_id = group.leader_id if leader is None else leader
        return JoinGroupResponse(
            error_code=ErrorCode.NONE,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=leader_id or "",
            skip_assignment=skip_assignment,
            member_id=member_id,
            members=members,
        )

    def _add_member_and_rebalance(self, group: ClassicGroup, join: _Join, member_id: str) -> None:
        member = ClassicMember(
            member_id=member_id,
            group_instance_id=join.group_instance_id,
            client_id=join.client_id,
            client_host=join.client_host,
            rebalance_timeout_ms=join.rebalance_timeout_ms,
            session_timeout_ms=join.session_timeout_ms,
            protocol_type=join.protocol_type,
            protocols=join.protocols,
            join_waiter=join.waiter,
            is_new=True,
        )
        if group.is_in(GroupState.PREPARING_REBALANCE) and group.previous_state is GroupState.EMPTY:
            group.new_member_added = True  # extends the initial rebalance delay
        group.add(member)
        # A new member cannot heartbeat until it has its member id, so its session is the
        # (long) new-member join timeout; a member that went away and retries gets dropped.
        self._schedule_heartbeat(group.group_id, member_id, self.config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance_or_complete_join(
            group, f"adding member {member_id} (instance {join.group_instance_id}): {join.reason}")

    def _update_member_and_rebalance(self, group: ClassicGroup, member: ClassicMember, join: _Join,
                                     reason: str) -> None:
        replaced = group.update_member(member, join.protocols, join.rebalance_timeout_ms,
                                       join.session_timeout_ms, join.waiter)
        if replaced is not None and replaced.token != join.waiter.token:
            self._out.abandoned.append(replaced.token)
        self._maybe_prepare_rebalance_or_complete_join(group, f"{reason}: {join.reason}")

    def _update_static_member(self, group: ClassicGroup, join: _Join, old_member_id: str,
                              new_member_id: str) -> JoinGroupResponse | None:
        assert join.group_instance_id is not None
        current_leader = group.leader_id
        old, member = group.replace_static_member(join.group_instance_id, old_member_id, new_member_id)
        # Whoever still waits under the old id has been replaced.
        if old.join_waiter is not None:
            self._deliver_join(old.join_waiter, JoinGroupResponse(
                error_code=ErrorCode.FENCED_INSTANCE_ID, member_id=old_member_id,
                generation_id=NO_GENERATION, protocol_type=None, protocol_name=None, leader=""))
            old.join_waiter = None
        if old.sync_waiter is not None:
            self._deliver_sync(old.sync_waiter, SyncGroupResponse(
                error_code=ErrorCode.FENCED_INSTANCE_ID, protocol_type=None, protocol_name=None,
                assignment=b""))
            old.sync_waiter = None
        self._schedule_heartbeat(group.group_id, new_member_id, member.session_timeout_ms)
        group.update_member(member, join.protocols, join.rebalance_timeout_ms, join.session_timeout_ms,
                            join.waiter)
        reason = f"static member {join.group_instance_id} rejoined as {new_member_id}: {join.reason}"
        state = group.state
        if state is GroupState.STABLE:
            if group.protocol_name == group.select_protocol():
                # Same protocol: no rebalance, just remember the new member id.
                self._emit_group(group, {m.member_id: m.assignment for m in group.members.values()})
                if join.waiter.api_version >= 9:
                    # The leader learns it leads but may skip the assignor (KIP-814).
                    is_leader = group.is_leader(new_member_id)
                    response = self._join_response(group, new_member_id, with_members=is_leader,
                                                   skip_assignment=is_leader)
                else:
                    # Older clients would run the assignor if told they lead, and a Stable group
                    # ignores their assignment: name the previous leader id instead.
                    response = self._join_response(group, new_member_id, with_members=False,
                                                   leader=current_leader or "")
                self._complete_join(group, member, response)
            else:
                self._maybe_prepare_rebalance_or_complete_join(group, reason)
        elif state is GroupState.COMPLETING_REBALANCE:
            # The leader may be assigning to the old id: rebalance so the new id gets partitions.
            self._prepare_rebalance(group, reason)
        else:
            assert state is GroupState.PREPARING_REBALANCE, state
            self._maybe_complete_join_phase(group)
        return None

    # --- the join phase --------------------------------------------------------------------------

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join_phase(group)

    def _maybe_complete_join_phase(self, group: ClassicGroup) -> None:
        if not group.is_in(GroupState.PREPARING_REBALANCE):
            return
        if group.previous_state is GroupState.EMPTY:
            return  # an initial rebalance always waits out its delay
        if group.has_all_members_joined():
            self._complete_join_phase(group)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.is_in(GroupState.COMPLETING_REBALANCE):
            # Members waiting in SyncGroup have to rejoin.
            self._reset_and_propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS)
        self._remove_sync_expiration(group)
        is_initial = group.is_in(GroupState.EMPTY)
        if is_initial:
            delay_ms = self.config.initial_rebalance_delay_ms
            remaining_ms = max(group.rebalance_timeout_ms() - delay_ms, 0)
            self._timers.schedule(("join", group.group_id), self._now_ms + delay_ms, _Timer(
                "initial_join", group.group_id, delay_ms=delay_ms, remaining_ms=remaining_ms))
        group.transition_to(GroupState.PREPARING_REBALANCE, self._now_ms)
        group.last_rebalance_reason = reason
        if not is_initial:
            if group.has_all_members_joined():
                self._complete_join_phase(group)
            else:
                self._timers.schedule(("join", group.group_id), self._now_ms + group.rebalance_timeout_ms(),
                                      _Timer("join", group.group_id))

    def _on_initial_join_timer(self, timer: _Timer) -> None:
        group = self._groups.get(timer.group_id)
        if group is None:
            return
        if group.new_member_added and timer.remaining_ms != 0:
            # Someone joined during the last delay: wait again, within the rebalance timeout.
            group.new_member_added = False
            delay_ms = min(self.config.initial_rebalance_delay_ms, timer.remaining_ms)
            remaining_ms = max(timer.remaining_ms - timer.delay_ms, 0)
            self._timers.schedule(("join", group.group_id), self._now_ms + delay_ms, _Timer(
                "initial_join", group.group_id, delay_ms=delay_ms, remaining_ms=remaining_ms))
        else:
            self._complete_join_phase(group)

    def _complete_join_phase(self, group: ClassicGroup) -> None:
        """End the join phase: drop dynamic members that did not rejoin, start the next generation."""
        group_id = group.group_id
        self._timers.cancel(("join", group_id))
        for member in group.not_yet_rejoined_members():
            if not member.is_static:
                self._drop_member(group, member.member_id)
                self._timers.cancel(("heartbeat", group_id, member.member_id))
        if group.is_in(GroupState.DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Nobody rejoined: wait another rebalance timeout for sessions to expire them.
            self._timers.schedule(("join", group_id), self._now_ms + group.rebalance_timeout_ms(),
                                  _Timer("join", group_id))
            return
        group.init_next_generation(self._now_ms)
        if group.is_in(GroupState.EMPTY):
            self._emit_group(group, {})
            return
        for member in list(group.members.values()):
            response = self._join_response(group, member.member_id, with_members=group.is_leader(member.member_id))
            self._complete_join(group, member, response)  # static members that did not rejoin get none
            self._schedule_heartbeat(group_id, member.member_id, member.session_timeout_ms)
            member.is_new = False
            group.add_pending_sync_member(member.member_id)
        self._timers.schedule(("sync", group_id), self._now_ms + group.rebalance_timeout_ms(),
                              _Timer("sync", group_id, generation_id=group.generation_id))

    # --- SyncGroup -------------------------------------------------------------------------------

    def sync_group(self, request: SyncGroupRequest, *, api_version: int, token: Hashable,
                   now_ms: int) -> CoordinatorResult[SyncGroupResponse]:
        """SyncGroup. ``response`` is None while a follower waits for the leader's assignment."""
        self._begin(now_ms)
        response = self._sync(request, Waiter(token, api_version))
        return self._finish(response, token)

    def _sync(self, request: SyncGroupRequest, waiter: Waiter) -> SyncGroupResponse | None:
        if waiter.api_version >= 5 and (request.protocol_type is None or request.protocol_name is None):
            # From v5 the protocol type and name are mandatory (checked by Kafka's request handler).
            return SyncGroupResponse(error_code=ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        if not request.group_id:
            return SyncGroupResponse(error_code=ErrorCode.INVALID_GROUP_ID)
        if request.group_id in self._consumer_groups:
            return SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID)  # no classic members there
        group = self._groups.get(request.group_id)
        if group is None or group.is_in(GroupState.EMPTY):
            return SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID)
        error = self._validate_sync(group, request)
        if error is not ErrorCode.NONE:
            return SyncGroupResponse(error_code=error)
        member_id = request.member_id
        if group.is_in(GroupState.PREPARING_REBALANCE):
            return SyncGroupResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS)
        member = group.members[member_id]
        if group.is_in(GroupState.COMPLETING_REBALANCE):
            replaced = member.sync_waiter
            if replaced is not None and replaced.token != waiter.token:
                self._out.abandoned.append(replaced.token)
            member.sync_waiter = waiter
            self._remove_pending_sync_member(group, member_id)
            if group.is_leader(member_id):
                assignment = {a.member_id: bytes(a.assignment) for a in request.assignments}
                for mid in group.members:
                    assignment.setdefault(mid, b"")
                self._emit_group(group, assignment)
                self._set_and_propagate_assignment(group, assignment)
                group.transition_to(GroupState.STABLE, self._now_ms)
            return None
        assert group.is_in(GroupState.STABLE), group.state
        self._remove_pending_sync_member(group, member_id)
        return SyncGroupResponse(error_code=ErrorCode.NONE, protocol_type=group.protocol_type,
                                 protocol_name=group.protocol_name, assignment=member.assignment)

    def _validate_sync(self, group: ClassicGroup, request: SyncGroupRequest) -> ErrorCode:
        if group.is_in(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = self._validate_member(group, request.member_id, request.group_instance_id)
        if error is not ErrorCode.NONE:
            return error
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if (_inconsistent(request.protocol_type, group.protocol_type)
                or _inconsistent(request.protocol_name, group.protocol_name)):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return ErrorCode.NONE

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.remove_pending_sync_member(member_id)
        if group.state in (GroupState.DEAD, GroupState.EMPTY, GroupState.PREPARING_REBALANCE) or (
                not group.pending_sync_members):
            self._timers.cancel(("sync", group.group_id))

    def _remove_sync_expiration(self, group: ClassicGroup) -> None:
        group.pending_sync_members.clear()
        self._timers.cancel(("sync", group.group_id))

    def _on_sync_timer(self, timer: _Timer) -> None:
        group = self._groups.get(timer.group_id)
        if group is None or timer.generation_id != group.generation_id:
            return
        if group.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        if group.pending_sync_members:
            late = list(group.pending_sync_members)
            for member_id in late:
                self._drop_member(group, member_id)
                self._timers.cancel(("heartbeat", group.group_id, member_id))
            self._prepare_rebalance(group, f"members {late} sent no SyncGroup in time")

    def _set_and_propagate_assignment(self, group: ClassicGroup, assignment: dict[str, bytes]) -> None:
        assert group.is_in(GroupState.COMPLETING_REBALANCE)
        for member in group.members.values():
            member.assignment = assignment.get(member.member_id, b"")
        self._propagate_assignment(group, ErrorCode.NONE)

    def _reset_and_propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        assert group.is_in(GroupState.COMPLETING_REBALANCE)
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        ok = error is ErrorCode.NONE
        protocol_type = group.protocol_type if ok else None
        protocol_name = group.protocol_name if ok else None
        for member in group.members.values():
            waiter = member.sync_waiter
            if waiter is None:
                continue
            member.sync_waiter = None
            self._deliver_sync(waiter, SyncGroupResponse(error_code=error, protocol_type=protocol_type,
                                                         protocol_name=protocol_name,
                                                         assignment=member.assignment))
            # A session may have run out while the member waited; start it afresh.
            self._schedule_heartbeat(group.group_id, member.member_id, member.session_timeout_ms)

    # --- Heartbeat -------------------------------------------------------------------------------

    def heartbeat(self, request: HeartbeatRequest, *, now_ms: int) -> CoordinatorResult[HeartbeatResponse]:
        """Heartbeat: REBALANCE_IN_PROGRESS tells a member of a rebalancing group to rejoin."""
        self._begin(now_ms)
        return self._finish(HeartbeatResponse(error_code=self._heartbeat(request)))

    def _heartbeat(self, request: HeartbeatRequest) -> ErrorCode:
        if not request.group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self._groups.get(request.group_id)
        if group is None:  # no such group, or a consumer group (it has no classic members)
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = self._validate_member(group, request.member_id, request.group_instance_id)
        if error is not ErrorCode.NONE:
            return error
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_in(GroupState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        member = group.members[request.member_id]
        self._schedule_heartbeat(group.group_id, member.member_id, member.session_timeout_ms)
        if group.is_in(GroupState.PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def _schedule_heartbeat(self, group_id: str, member_id: str, timeout_ms: int) -> None:
        self._timers.schedule(("heartbeat", group_id, member_id), self._now_ms + timeout_ms,
                              _Timer("heartbeat", group_id, member_id))

    def _on_heartbeat_timer(self, timer: _Timer) -> None:
        group = self._groups.get(timer.group_id)
        if group is None or group.is_in(GroupState.DEAD):
            return
        member_id = timer.member_id
        if group.is_pending_member(member_id):
            # A MEMBER_ID_REQUIRED id that never came back.
            group.remove(member_id)
            if group.is_in(GroupState.PREPARING_REBALANCE) and group.has_all_members_joined():
                self._complete_join_phase(group)
            return
        member = group.members.get(member_id)
        if member is None or member.has_satisfied_heartbeat():
            return
        self._remove_member_and_update_group(group, member, f"member {member_id} session expired")

    def _remove_member_and_update_group(self, group: ClassicGroup, member: ClassicMember, reason: str) -> None:
        # A new member can time out while parked in JoinGroup: tell it to start over.
        self._complete_join(group, member, _join_error(UNKNOWN_MEMBER_ID, ErrorCode.UNKNOWN_MEMBER_ID))
        self._drop_member(group, member.member_id)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance_or_complete_join(group, reason)
        elif group.is_in(GroupState.PREPARING_REBALANCE) and group.has_all_members_joined():
            self._complete_join_phase(group)

    # --- LeaveGroup ------------------------------------------------------------------------------

    def leave_group(self, request: LeaveGroupRequest, *, api_version: int,
                    now_ms: int) -> CoordinatorResult[LeaveGroupResponse]:
        """LeaveGroup: v0-v2 name one member, v3+ a batch (by member id or, with an empty member
        id, by group instance id); per-member errors, collapsed to one code before v3."""
        self._begin(now_ms)
        if api_version <= 2:
            identities = [LeaveGroupRequest.MemberIdentity(member_id=request.member_id)]
        else:
            identities = list(request.members)
        top_error, members = self._leave(request.group_id, identities)
        if api_version <= 2:
            code = top_error
            if code is ErrorCode.NONE:
                code = next((ErrorCode(m.error_code) for m in members if m.error_code != 0), ErrorCode.NONE)
            return self._finish(LeaveGroupResponse(error_code=code))
        return self._finish(LeaveGroupResponse(error_code=top_error, members=members))

    def _leave(self, group_id: str, identities: Sequence[LeaveGroupRequest.MemberIdentity]
               ) -> tuple[ErrorCode, list[LeaveGroupResponse.MemberResponse]]:
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, []
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            return ErrorCode.NONE, [self._leave_consumer_group(consumer_group, i) for i in identities]
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [
                LeaveGroupResponse.MemberResponse(i.member_id, i.group_instance_id, ErrorCode.UNKNOWN_MEMBER_ID)
                for i in identities]
        if group.is_in(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        responses = []
        left = []
        for identity in identities:
            member_id, instance_id = identity.member_id, identity.group_instance_id
            error = ErrorCode.NONE
            if member_id == UNKNOWN_MEMBER_ID:
                # Administrative removal of a static member by its instance id.
                static_id = group.static_member_id(instance_id) if instance_id is not None else None
                if static_id is None:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
                else:
                    self._remove_leaving_member(group, static_id)
            elif group.is_pending_member(member_id):
                group.remove(member_id)
                self._timers.cancel(("heartbeat", group_id, member_id))
            else:
                error = self._validate_member(group, member_id, instance_id)
                if error is ErrorCode.NONE:
                    self._remove_leaving_member(group, member_id)
            if error is ErrorCode.NONE:
                left.append(member_id)
            responses.append(LeaveGroupResponse.MemberResponse(member_id, instance_id, error))
        if left:
            reason = f"members {left} left the group"
            if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
                self._maybe_prepare_rebalance_or_complete_join(group, reason)
            elif group.is_in(GroupState.PREPARING_REBALANCE):
                self._maybe_complete_join_phase(group)
        return ErrorCode.NONE, responses

    @staticmethod
    def _leave_consumer_group(group: cg.ConsumerGroup, identity: LeaveGroupRequest.MemberIdentity
                              ) -> LeaveGroupResponse.MemberResponse:
        """Kafka's ``classicGroupLeaveToConsumerGroup`` for a group without classic members: every
        member found uses the consumer protocol, which LeaveGroup cannot remove."""
        member_id, instance_id = identity.member_id, identity.group_instance_id
        if instance_id is not None:
            member = group.static_member(instance_id)
            if member is not None and member_id != UNKNOWN_MEMBER_ID and member.member_id != member_id:
                return LeaveGroupResponse.MemberResponse(member_id, instance_id, ErrorCode.FENCED_INSTANCE_ID)
        return LeaveGroupResponse.MemberResponse(member_id, instance_id, ErrorCode.UNKNOWN_MEMBER_ID)

    def _remove_leaving_member(self, group: ClassicGroup, member_id: str) -> None:
        member = group.members[member_id]
        self._timers.cancel(("heartbeat", group.group_id, member_id))
        self._complete_join(group, member, _join_error(UNKNOWN_MEMBER_ID, ErrorCode.UNKNOWN_MEMBER_ID))
        self._drop_member(group, member_id)

    # --- ConsumerGroupHeartbeat and ConsumerGroupDescribe (KIP-848) ------------------------------

    def consumer_group_heartbeat(self, request: ConsumerGroupHeartbeatRequest, *, api_version: int,
                                 client_id: str, client_host: str, now_ms: int,
                                 topics: cg.TopicsImage | None = None
                                 ) -> CoordinatorResult[ConsumerGroupHeartbeatResponse]:
        """ConsumerGroupHeartbeat (v0-v1): join, heartbeat, leave; always answered at once.

        ``client_id`` comes from the request header, ``client_host`` is the peer as Kafka shows
        it (``/127.0.0.1``); ``topics`` (when given) replaces the topic metadata first.
        """
        if topics is not None:
            self.set_topics(topics)
        self._begin(now_ms)
        error = self._validate_consumer_heartbeat(request, api_version)
        if error is not None:
            return self._finish(_consumer_error(*error))
        if request.member_epoch in (cg.LEAVE_GROUP_MEMBER_EPOCH, cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH):
            return self._finish(self._consumer_leave(request))
        return self._finish(self._consumer_heartbeat(request, client_id, client_host))

    def _validate_consumer_heartbeat(self, request: ConsumerGroupHeartbeatRequest,
                                     api_version: int) -> tuple[ErrorCode, str] | None:
        """Kafka's ``throwIfConsumerGroupHeartbeatRequestIsInvalid``."""
        invalid = ErrorCode.INVALID_REQUEST
        if not request.group_id.strip():
            return invalid, "GroupId can't be empty."
        if request.instance_id is not None and not request.instance_id.strip():
            return invalid, "InstanceId can't be empty."
        if request.rack_id is not None and not request.rack_id.strip():
            return invalid, "RackId can't be empty."
        epoch = request.member_epoch
        if (epoch > 0 or epoch in (cg.LEAVE_GROUP_MEMBER_EPOCH, cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH)) \
                and not request.member_id.strip():
            return invalid, "MemberId can't be empty."
        if epoch == 0:
            if request.rebalance_timeout_ms == -1:
                return invalid, "RebalanceTimeoutMs must be provided in first request."
            if request.topic_partitions is None or request.topic_partitions:
                return invalid, "TopicPartitions must be empty when (re-)joining."
            if request.subscribed_topic_names is None and request.subscribed_topic_regex is None:
                return invalid, "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining."
        elif epoch == cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if request.instance_id is None:
                return invalid, "InstanceId can't be null."
        elif epoch < cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            return invalid, "MemberEpoch is invalid."
        if request.server_assignor is not None and self._assignor(request.server_assignor) is None:
            return ErrorCode.UNSUPPORTED_ASSIGNOR, (
                f"ServerAssignor {request.server_assignor} is not supported. Supported assignors: "
                f"{', '.join(self._assignor_names())}.")
        return None

    def _assignor_names(self) -> list[str]:
        names = []
        for entry in self.config.consumer_assignors:
            assignor = assignor_by_config_name(entry)
            assert assignor is not None
            names.append(assignor.name)
        return names

    def _assignor(self, name: str) -> PartitionAssignor | None:
        return assignor_by_config_name(name) if name in self._assignor_names() else None

    def _consumer_heartbeat(self, request: ConsumerGroupHeartbeatRequest, client_id: str,
                            client_host: str) -> ConsumerGroupHeartbeatResponse:
        """Kafka's ``consumerGroupHeartbeat`` (a join when the member epoch is 0)."""
        group_id, epoch = request.group_id, request.member_epoch
        joining = epoch == 0
        records: list[tuple[rec.GroupMetadataKey | rec.ConsumerGroupKey, rec.RecordValue | None]] = []

        # The group: an existing consumer group, or a new one (it exists once its records replay).
        group = self._consumer_groups.get(group_id)
        if group is None:
            classic = self._groups.get(group_id)
            if classic is not None and not (joining and classic.is_in(GroupState.EMPTY)):
                # Online upgrade is off (group.consumer.migration.policy=disabled).
                return _consumer_error(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
            if classic is None and not joining:
                return _consumer_error(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
            if classic is not None:
                records.append((rec.GroupMetadataKey(group_id), None))  # an empty classic group gives way
            group = cg.ConsumerGroup(group_id)
        members_max = self.config.consumer_group_members_max
        if len(group.members) >= members_max and (not request.member_id or request.member_id not in group.members):
            return _consumer_error(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                   f"The consumer group has reached its maximum capacity of {members_max} members.")
        member_id = request.member_id or _kafka_uuid(self._new_uuid())
        owned = None if request.topic_partitions is None else [
            (tp.topic_id, tp.partitions) for tp in request.topic_partitions]

        # The member: existing (its epoch checked), new, or a static member taking over.
        replaced_id: str | None = None
        member: cg.ConsumerGroupMember
        if request.instance_id is None:
            found = group.members.get(member_id)
            if found is None:
                if not joining:
                    return _consumer_error(ErrorCode.UNKNOWN_MEMBER_ID,
                                           f"Member {member_id} is not a member of group {group_id}.")
                member = cg.ConsumerGroupMember(member_id)
            else:
                member = found
                fenced = _check_member_epoch(member, epoch, owned)
                if fenced is not None:
                    return fenced
        else:
            instance_id = request.instance_id
            existing = group.static_member(instance_id)
            if joining and existing is None:
                member = group.members.get(member_id) or cg.ConsumerGroupMember(member_id)
            elif joining:
                assert existing is not None
                if existing.member_epoch != cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                    return _consumer_error(ErrorCode.UNRELEASED_INSTANCE_ID, (
                        f"Static member {member_id} with instance id {instance_id} cannot join the group "
                        f"because the instance id is owned by member {existing.member_id}."))
                # Kafka's replaceMember: the new id takes over the old member's partitions and target.
                member = replace(existing, member_id=member_id, member_epoch=0, previous_member_epoch=0)
                replaced_id = existing.member_id
                records += cg.member_tombstones(group_id, replaced_id)
                records.append((rec.ConsumerGroupMemberMetadataKey(group_id, member_id), member.metadata_value()))
                records.append((rec.ConsumerGroupTargetAssignmentMemberKey(group_id, member_id),
                                rec.ConsumerGroupTargetAssignmentMemberValue(cg.to_topic_partitions(
                                    group.target_assignment.get(replaced_id, cg.NO_PARTITIONS)))))
                records.append((rec.ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id),
                                member.assignment_value()))
            else:
                if existing is None:
                    return _consumer_error(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
                if existing.member_id != member_id:
                    return _consumer_error(ErrorCode.FENCED_INSTANCE_ID, (
                        f"Static member {member_id} with instance id {instance_id} was fenced by member "
                        f"{existing.member_id}."))
                member = existing
                fenced = _check_member_epoch(member, epoch, owned)
                if fenced is not None:
                    return fenced

        # 1. Update the member; a new subscription (or group) bumps the group epoch.
        updated = replace(
            member,
            instance_id=request.instance_id if request.instance_id is not None else member.instance_id,
            rack_id=request.rack_id if request.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=(request.rebalance_timeout_ms if request.rebalance_timeout_ms != -1
                                  else member.rebalance_timeout_ms),
            server_assignor=request.server_assignor if request.server_assignor is not None else member.server_assignor,
            subscribed_topic_names=(frozenset(request.subscribed_topic_names)
                                    if request.subscribed_topic_names is not None else member.subscribed_topic_names),
            subscribed_topic_regex=(request.subscribed_topic_regex if request.subscribed_topic_regex is not None
                                    else member.subscribed_topic_regex),
            client_id=client_id, client_host=client_host)
        bump = group.group_epoch == 0
        if not updated.same_metadata(member) or member_id not in group.members and replaced_id is None:
            records.append((rec.ConsumerGroupMemberMetadataKey(group_id, member_id), updated.metadata_value()))
            bump |= updated.subscribed_topic_names != member.subscribed_topic_names
        removed = [replaced_id] if replaced_id is not None and replaced_id != member_id else []
        members_after = group.members_with(updated, removed)

        # 2. Regular expressions: check a new one, resolve them (at most every 10 s), forget unused ones.
        resolved = dict(group.resolved_regexes)
        regex_error, regex_bump = self._update_regexes(group, member, updated, members_after, resolved, records)
        if regex_error is not None:
            return regex_error
        bump |= regex_bump

        # 3. The subscribed topics that exist; any change bumps the group epoch.
        metadata = cg.subscription_metadata(cg.subscribed_topic_counts(members_after.values(), resolved), self._topics)
        if metadata != group.subscription_metadata:
            records.append((rec.ConsumerGroupPartitionMetadataKey(group_id), cg.partition_metadata_value(metadata)))
            bump = True
        group_epoch = group.group_epoch
        if bump:
            group_epoch += 1
            records.append((rec.ConsumerGroupMetadataKey(group_id), rec.ConsumerGroupMetadataValue(group_epoch)))

        # 4. A new target assignment when the group epoch is ahead of it.
        target: cg.Partitions
        if group_epoch > group.assignment_epoch:
            assignor = self._group_assignor(members_after.values())
            built = cg.build_target_assignment(
                group, group_epoch=group_epoch, assignor=assignor, members=members_after,
                replaced={member_id: replaced_id} if replaced_id is not None else {},
                metadata=metadata, resolved=resolved, topics=self._topics)
            records += built.records
            target, target_epoch = built.members.get(member_id, cg.NO_PARTITIONS), group_epoch
        else:
            target, target_epoch = group.target_assignment_of(member_id, updated.instance_id), group.assignment_epoch

        # 5. Reconcile the member towards its target: revoke first, then assign what is free.
        reconciled = updated
        if not updated.is_reconciled_to(target_epoch):
            next_member = cg.reconcile(updated, target_epoch=target_epoch, target=target,
                                       partition_epoch=group.current_partition_epoch, owned=owned)
            if next_member is None:
                return _consumer_error(ErrorCode.FENCED_MEMBER_EPOCH, (
                    "The consumer group member is in a unknown state. The member must abandon all its "
                    "partitions and rejoin."))
            reconciled = next_member
        assignment_changed = reconciled.assignment_value() != updated.assignment_value()
        if assignment_changed:
            records.append((rec.ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id),
                            reconciled.assignment_value()))

        self._emit_all(records)
        if assignment_changed:
            if reconciled.state is cg.MemberState.UNREVOKED_PARTITIONS:
                self._schedule_consumer_revocation(group_id, reconciled)
            else:
                self._timers.cancel(("cg_revoke", group_id, member_id))
        self._schedule_consumer_session(group_id, member_id)

        response = ConsumerGroupHeartbeatResponse(
            member_id=member_id, member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.config.consumer_heartbeat_interval_ms)
        full_request = joining or (
            request.rebalance_timeout_ms != -1 and owned is not None
            and (request.subscribed_topic_names is not None or request.subscribed_topic_regex is not None))
        if full_request or dict(reconciled.assigned_partitions) != dict(member.assigned_partitions):
            response.assignment = ConsumerGroupHeartbeatResponse.Assignment(topic_partitions=[
                ConsumerGroupHeartbeatResponse.TopicPartitions(topic_id=t, partitions=sorted(ps))
                for t, ps in sorted(reconciled.assigned_partitions.items(), key=lambda kv: str(kv[0]))])
        return response

    def _update_regexes(self, group: cg.ConsumerGroup, member: cg.ConsumerGroupMember,
                        updated: cg.ConsumerGroupMember, members_after: Mapping[str, cg.ConsumerGroupMember],
                        resolved: dict[str, cg.ResolvedRegex],
                        records: list[tuple[rec.GroupMetadataKey | rec.ConsumerGroupKey, rec.RecordValue | None]],
                        ) -> tuple[ConsumerGroupHeartbeatResponse | None, bool]:
        """Kafka 4.0's ``maybeUpdateRegularExpressions``, resolving synchronously.

        Kafka resolves on a background executor and bumps the group epoch when the result
        lands; we have the topics at hand, so the resolution and its bump happen in this
        heartbeat. The rules are Kafka's: a regex no member used before is checked (an error
        answers INVALID_REGULAR_EXPRESSION) and calls for a resolution; resolutions are refreshed
        when some regex is unresolved or the topics changed since, but at most once every
        ``REGEX_BATCH_REFRESH_INTERVAL_MS``; a regex its last member dropped is forgotten.
        Updates ``resolved`` (the view of the rest of this heartbeat) and ``records``.
        """
        group_id = group.group_id
        old_regex, new_regex = member.regex, updated.regex
        counts_after = group.subscribed_regexes(members_after.values())
        bump = False
        refresh = False
        if old_regex != new_regex:
            if old_regex is not None and counts_after[old_regex] == 0 and old_regex in resolved:
                records.append((rec.ConsumerGroupRegularExpressionKey(group_id, old_regex), None))
                del resolved[old_regex]
            if new_regex is not None:
                if group.subscribed_regexes()[new_regex] == 0:
                    if cg.compile_regex(new_regex) is None:
                        return _consumer_error(ErrorCode.INVALID_REGULAR_EXPRESSION,
                                               f"SubscribedTopicRegex {new_regex} is not a valid regular expression."
                                               ), False
                    refresh = True
                else:
                    bump = new_regex in resolved
        if not counts_after:
            return None, bump
        last_ms = group.last_regex_refresh_ms()
        if last_ms is not None and self._now_ms <= last_ms + cg.REGEX_BATCH_REFRESH_INTERVAL_MS:
            return None, bump
        refresh |= any(r not in resolved or resolved[r].version < self._topics_version for r in counts_after)
        if not refresh:
            return None, bump
        for regex, topics in cg.resolve_regexes(sorted(counts_after), self._topics).items():
            old = resolved.get(regex)
            if old is None or old.topics != topics:
                bump = True
            resolved[regex] = cg.ResolvedRegex(topics, self._topics_version, self._now_ms)
            records.append((rec.ConsumerGroupRegularExpressionKey(group_id, regex), rec.ConsumerGroupRegularExpressionValue(
                tuple(sorted(topics)), self._topics_version, self._now_ms)))
        return None, bump

    def _group_assignor(self, members: Iterable[cg.ConsumerGroupMember]) -> PartitionAssignor:
        """The assignor most members ask for, else the first of ``group.consumer.assignors``."""
        names = self._assignor_names()
        preferred = cg.preferred_server_assignor(members, names)
        assignor = self._assignor(preferred) if preferred is not None else None
        if assignor is None:
            assignor = assignor_by_config_name(names[0])
            assert assignor is not None
        return assignor

    def _consumer_leave(self, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse:
        """Kafka's ``consumerGroupLeave``: -1 leaves for good, -2 is a static member stepping out."""
        group_id, member_id = request.group_id, request.member_id
        group = self._consumer_groups.get(group_id)
        if group is None:
            what = "is not a consumer group" if group_id in self._groups else "not found"
            return _consumer_error(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} {what}.")
        response = ConsumerGroupHeartbeatResponse(member_id=member_id, member_epoch=request.member_epoch)
        if request.instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                return _consumer_error(ErrorCode.UNKNOWN_MEMBER_ID,
                                       f"Member {member_id} is not a member of group {group_id}.")
            self._fence_consumer_member(group, member)
            return response
        member = group.static_member(request.instance_id)
        if member is None:
            return _consumer_error(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {request.instance_id} is unknown.")
        if member.member_id != member_id:
            return _consumer_error(ErrorCode.FENCED_INSTANCE_ID, (
                f"Static member {member_id} with instance id {request.instance_id} was fenced by member "
                f"{member.member_id}."))
        if request.member_epoch == cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # It keeps its partitions (nobody else gets them) until it rejoins or its session ends.
            leaving = replace(member, member_epoch=cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH, partitions_pending_revocation={})
            self._emit(rec.ConsumerGroupCurrentMemberAssignmentKey(group_id, member.member_id),
                       leaving.assignment_value())
            return ConsumerGroupHeartbeatResponse(member_id=member.member_id,
                                                  member_epoch=cg.LEAVE_GROUP_STATIC_MEMBER_EPOCH)
        self._fence_consumer_member(group, member)
        return response

    def _fence_consumer_member(self, group: cg.ConsumerGroup, member: cg.ConsumerGroupMember) -> None:
        """Kafka's ``consumerGroupFenceMember``: drop the member's records and bump the group epoch."""
        group_id, member_id = group.group_id, member.member_id
        records: list[tuple[rec.GroupMetadataKey | rec.ConsumerGroupKey, rec.RecordValue | None]] = []
        records += cg.member_tombstones(group_id, member_id)
        members_after = group.members_with(None, [member_id])
        resolved = dict(group.resolved_regexes)
        regex = member.regex
        if regex is not None and group.subscribed_regexes()[regex] == 1 and regex in resolved:
            records.append((rec.ConsumerGroupRegularExpressionKey(group_id, regex), None))
            del resolved[regex]
        metadata = cg.subscription_metadata(cg.subscribed_topic_counts(members_after.values(), resolved), self._topics)
        if metadata != group.subscription_metadata:
            records.append((rec.ConsumerGroupPartitionMetadataKey(group_id), cg.partition_metadata_value(metadata)))
        records.append((rec.ConsumerGroupMetadataKey(group_id), rec.ConsumerGroupMetadataValue(group.group_epoch + 1)))
        self._emit_all(records)
        self._timers.cancel(("cg_session", group_id, member_id))
        self._timers.cancel(("cg_revoke", group_id, member_id))

    def _schedule_consumer_session(self, group_id: str, member_id: str) -> None:
        self._timers.schedule(("cg_session", group_id, member_id),
                              self._now_ms + self.config.consumer_session_timeout_ms,
                              _Timer("cg_session", group_id, member_id))

    def _schedule_consumer_revocation(self, group_id: str, member: cg.ConsumerGroupMember) -> None:
        self._timers.schedule(("cg_revoke", group_id, member.member_id),
                              self._now_ms + max(member.rebalance_timeout_ms, 0),
                              _Timer("cg_revoke", group_id, member.member_id, generation_id=member.member_epoch))

    def consumer_group_describe(self, request: ConsumerGroupDescribeRequest, *, now_ms: int,
                                topics: cg.TopicsImage | None = None,
                                authorized_operations: Callable[[str], int] | None = None,
                                ) -> CoordinatorResult[ConsumerGroupDescribeResponse]:
        """ConsumerGroupDescribe (v0). A classic or unknown group answers GROUP_ID_NOT_FOUND, as
        Kafka does (clients then fall back to DescribeGroups); an empty id INVALID_GROUP_ID. When
        asked, a group found carries ``authorized_operations(group_id)``, by default the bitfield
        DescribeGroups reports (``GROUP_OPERATIONS_KAFKA_3``)."""
        if topics is not None:
            self.set_topics(topics)
        self._begin(now_ms)
        response = ConsumerGroupDescribeResponse()
        default_assignor = self._assignor_names()[0]
        for group_id in request.group_ids:
            if not group_id:
                response.groups.append(ConsumerGroupDescribeResponse.DescribedGroup(
                    group_id=group_id, error_code=ErrorCode.INVALID_GROUP_ID))
                continue
            group = self._consumer_groups.get(group_id)
            if group is None:
                what = "is not a consumer group" if group_id in self._groups else "not found"
                response.groups.append(ConsumerGroupDescribeResponse.DescribedGroup(
                    group_id=group_id, error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                    error_message=f"Group {group_id} {what}."))
                continue
            described = cg.describe(group, default_assignor=default_assignor, topics=self._topics)
            if request.include_authorized_operations:
                described.authorized_operations = (
                    GROUP_OPERATIONS_KAFKA_3 if authorized_operations is None else authorized_operations(group_id))
            response.groups.append(described)
        return self._finish(response)

    # --- members ---------------------------------------------------------------------------------

    @staticmethod
    def _validate_member(group: ClassicGroup, member_id: str, group_instance_id: str | None) -> ErrorCode:
        """Kafka's ``validateMember``: the instance id (if given) must map to this member id, and
        the member must exist."""
        if group_instance_id is not None:
            existing = group.static_member_id(group_instance_id)
            if existing is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if existing != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return ErrorCode.NONE

    def _drop_member(self, group: ClassicGroup, member_id: str) -> None:
        """Remove a member (or pending id); parked requests it still has are abandoned, as in Kafka."""
        member = group.remove(member_id)
        if member is None:
            return
        for waiter in (member.join_waiter, member.sync_waiter):
            if waiter is not None:
                self._out.abandoned.append(waiter.token)
        member.join_waiter = None
        member.sync_waiter = None

    def _complete_join(self, group: ClassicGroup, member: ClassicMember, response: JoinGroupResponse) -> bool:
        waiter = group.set_join_waiter(member, None)
        if waiter is None:
            return False
        self._deliver_join(waiter, response)
        return True

    def _deliver_join(self, waiter: Waiter, response: JoinGroupResponse) -> None:
        self._out.completions.append(Completion(waiter.token, _shape_join(response, waiter.api_version)))

    def _deliver_sync(self, waiter: Waiter, response: SyncGroupResponse) -> None:
        self._out.completions.append(Completion(waiter.token, response))

    # --- OffsetCommit ----------------------------------------------------------------------------

    def offset_commit(self, request: OffsetCommitRequest, *, api_version: int,
                      now_ms: int) -> CoordinatorResult[OffsetCommitResponse]:
        """OffsetCommit. Generation -1 with no member id is a standalone commit, accepted while
        the group has no members (and creating the group if needed)."""
        self._begin(now_ms)
        error = self._validate_offset_commit(request, api_version)
        if error is not ErrorCode.NONE:
            return self._finish(OffsetCommitResponse(topics=[
                OffsetCommitResponse.OffsetCommitResponseTopic(t.name, [
                    OffsetCommitResponse.OffsetCommitResponsePartition(p.partition_index, error)
                    for p in t.partitions])
                for t in request.topics]))
        group_id = request.group_id
        group = self._groups.get(group_id)  # None: a consumer group (commits are no heartbeats there)
        if group is not None and group.state in (GroupState.STABLE, GroupState.PREPARING_REBALANCE):
            # A commit from a member counts as a heartbeat.
            member = group.members[request.member_id]
            self._schedule_heartbeat(group_id, member.member_id, member.session_timeout_ms)
        expire_ms = None
        if request.retention_time_ms != DEFAULT_RETENTION_TIME_MS:
            expire_ms = self._now_ms + request.retention_time_ms
        chars_max = self.config.offset_metadata_chars_max
        topics = []
        for topic in request.topics:
            partitions = []
            for p in topic.partitions:
                metadata = p.committed_metadata
                if metadata is not None and _java_length(metadata) > chars_max:
                    partitions.append(OffsetCommitResponse.OffsetCommitResponsePartition(
                        p.partition_index, ErrorCode.OFFSET_METADATA_TOO_LARGE))
                    continue
                partitions.append(OffsetCommitResponse.OffsetCommitResponsePartition(p.partition_index, ErrorCode.NONE))
                commit_ms = self._now_ms if p.commit_timestamp == DEFAULT_COMMIT_TIMESTAMP_MS else p.commit_timestamp
                self._emit(rec.OffsetCommitKey(group_id, topic.name, p.partition_index), rec.OffsetCommitValue(
                    offset=p.committed_offset,
                    leader_epoch=p.committed_leader_epoch,
                    metadata="" if metadata is None else metadata,
                    commit_timestamp_ms=commit_ms,
                    expire_timestamp_ms=rec.NO_TIMESTAMP if expire_ms is None else expire_ms,
                ))
            topics.append(OffsetCommitResponse.OffsetCommitResponseTopic(topic.name, partitions))
        return self._finish(OffsetCommitResponse(topics=topics))

    def _validate_offset_commit(self, request: OffsetCommitRequest, api_version: int) -> ErrorCode:
        generation = request.generation_id_or_member_epoch
        consumer_group = self._consumer_groups.get(request.group_id)
        if consumer_group is not None:
            return _validate_consumer_offset_commit(consumer_group, request, api_version)
        group = self._groups.get(request.group_id)
        if group is None:
            if generation >= 0:
                # A member of a group we do not have: v9 (KIP-848 era) says so, older ones
                # answer as to a stale generation.
                return ErrorCode.GROUP_ID_NOT_FOUND if api_version >= 9 else ErrorCode.ILLEGAL_GENERATION
            group = ClassicGroup(request.group_id, GroupState.EMPTY, state_timestamp_ms=self._now_ms)
            self._groups[request.group_id] = group
        if group.is_in(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.is_in(GroupState.EMPTY):
            return ErrorCode.NONE  # admin client or a consumer that assigns partitions itself
        if generation >= 0 or request.member_id != UNKNOWN_MEMBER_ID or request.group_instance_id is not None:
            error = self._validate_member(group, request.member_id, request.group_instance_id)
            if error is not ErrorCode.NONE:
                return error
            if generation != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
        elif not group.is_in(GroupState.EMPTY):
            # Without a member id and generation, only a group with no members takes commits.
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(GroupState.COMPLETING_REBALANCE):
            # The member has its new generation but not its assignment yet.
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    # --- OffsetFetch -----------------------------------------------------------------------------

    def offset_fetch(self, request: OffsetFetchRequest, *, api_version: int,
                     now_ms: int) -> CoordinatorResult[OffsetFetchResponse]:
        """OffsetFetch for a whole request: one group before v8, a batch from v8; null topics
        mean every committed offset of the group. Topic authorization is the caller's (filter
        the request first, or use ``fetch_offsets`` per group)."""
        self._begin(now_ms)
        if api_version >= 8:
            groups = [self._fetch_offsets(
                g.group_id, None if g.topics is None else [(t.name, t.partition_indexes) for t in g.topics],
                request.require_stable, g.member_id, g.member_epoch) for g in request.groups]
            return self._finish(OffsetFetchResponse(groups=groups))
        topics = None if request.topics is None else [(t.name, t.partition_indexes) for t in request.topics]
        group = self._fetch_offsets(request.group_id, topics, request.require_stable)
        response = OffsetFetchResponse(error_code=group.error_code)
        for t in group.topics:
            parts = []
            for p in t.partitions:
                if api_version < 2 and group.error_code != ErrorCode.NONE:
                    parts.append(OffsetFetchResponse.OffsetFetchResponsePartition(
                        p.partition_index, INVALID_OFFSET, -1, "", group.error_code))
                else:
                    parts.append(OffsetFetchResponse.OffsetFetchResponsePartition(
                        p.partition_index, p.committed_offset, p.committed_leader_epoch, p.metadata, p.error_code))
            response.topics.append(OffsetFetchResponse.OffsetFetchResponseTopic(t.name, parts))
        return self._finish(response)

    def fetch_offsets(self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]] | None, *,
                      require_stable: bool, now_ms: int, member_id: str | None = None, member_epoch: int = -1,
                      ) -> CoordinatorResult[OffsetFetchResponse.OffsetFetchResponseGroup]:
        """One group's committed offsets in the v8+ shape; ``topics`` None means all of them.
        ``member_id``/``member_epoch`` (OffsetFetch v9) are checked against a consumer group."""
        self._begin(now_ms)
        return self._finish(self._fetch_offsets(group_id, topics, require_stable, member_id, member_epoch))

    def _fetch_offsets(self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]] | None,
                       require_stable: bool, member_id: str | None = None, member_epoch: int = -1,
                       ) -> OffsetFetchResponse.OffsetFetchResponseGroup:
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None and not (member_id is None and member_epoch < 0):
            # Kafka's ConsumerGroup.validateOffsetFetch; the admin client sends neither.
            member = consumer_group.members.get(member_id or "")
            error = (ErrorCode.UNKNOWN_MEMBER_ID if member is None
                     else ErrorCode.STALE_MEMBER_EPOCH if member.member_epoch != member_epoch else ErrorCode.NONE)
            if error is not ErrorCode.NONE:
                return OffsetFetchResponse.OffsetFetchResponseGroup(group_id=group_id, error_code=error)
        group = self._groups.get(group_id)
        known = (group is not None and not group.is_in(GroupState.DEAD)) or consumer_group is not None
        committed = self._offsets.get(group_id, {}) if known else {}
        result = OffsetFetchResponse.OffsetFetchResponseGroup(group_id=group_id)
        if topics is None:
            pairs: Iterable[tuple[str, Iterable[int]]] = [(t, list(parts)) for t, parts in committed.items()]
        else:
            pairs = topics
        for topic, partitions in pairs:
            by_partition = committed.get(topic, {})
            out = []
            for partition in partitions:
                entry = by_partition.get(partition)
                if require_stable and (group_id, topic, partition) in self.pending_transactional_offsets:
                    out.append(OffsetFetchResponse.OffsetFetchResponsePartitions(
                        partition, INVALID_OFFSET, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT))
                elif entry is None:
                    out.append(OffsetFetchResponse.OffsetFetchResponsePartitions(partition, INVALID_OFFSET, -1, ""))
                else:
                    out.append(OffsetFetchResponse.OffsetFetchResponsePartitions(
                        partition, entry.offset, entry.leader_epoch, entry.metadata))
            result.topics.append(OffsetFetchResponse.OffsetFetchResponseTopics(topic, out))
        return result

    # --- OffsetDelete ----------------------------------------------------------------------------

    def offset_delete(self, request: OffsetDeleteRequest, *, now_ms: int) -> CoordinatorResult[OffsetDeleteResponse]:
        """OffsetDelete: refused for topics the group consumes, and for non-empty groups that do
        not use the consumer protocol."""
        self._begin(now_ms)
        group_id = request.group_id
        if not group_id:
            return self._finish(OffsetDeleteResponse(error_code=ErrorCode.INVALID_GROUP_ID))
        is_subscribed: Callable[[str], bool]
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            is_subscribed = consumer_group.is_subscribed_to_topic  # any state may delete offsets
        else:
            group = self._groups.get(group_id)
            if group is None or group.is_in(GroupState.DEAD):
                return self._finish(OffsetDeleteResponse(error_code=ErrorCode.GROUP_ID_NOT_FOUND))
            if not group.is_in(GroupState.EMPTY) and not group.uses_consumer_protocol():
                return self._finish(OffsetDeleteResponse(error_code=ErrorCode.NON_EMPTY_GROUP))
            is_subscribed = group.is_subscribed_to_topic
        response = OffsetDeleteResponse()
        for topic in request.topics:
            subscribed = is_subscribed(topic.name)
            partitions = []
            for p in topic.partitions:
                if subscribed:
                    partitions.append(OffsetDeleteResponse.OffsetDeleteResponsePartition(
                        p.partition_index, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC))
                    continue
                partitions.append(OffsetDeleteResponse.OffsetDeleteResponsePartition(p.partition_index))
                if (self.committed_offset(group_id, topic.name, p.partition_index) is not None
                        or (group_id, topic.name, p.partition_index) in self.pending_transactional_offsets):
                    self._emit(rec.OffsetCommitKey(group_id, topic.name, p.partition_index), None)
            response.topics.append(OffsetDeleteResponse.OffsetDeleteResponseTopic(topic.name, partitions))
        return self._finish(response)

    # --- DescribeGroups, ListGroups, DeleteGroups ------------------------------------------------

    def describe_groups(self, request: DescribeGroupsRequest, *, api_version: int, now_ms: int,
                        authorized_operations: Callable[[str], int] | None = None
                        ) -> CoordinatorResult[DescribeGroupsResponse]:
        """DescribeGroups. An unknown group is described as Dead with no error. From v3, when the
        request asks, each group found carries ``authorized_operations(group_id)``, by default
        the bitfield of a broker without an authorizer (``GROUP_OPERATIONS_KAFKA_3``)."""
        self._begin(now_ms)
        response = DescribeGroupsResponse()
        for group_id in request.groups:
            described = self._describe(group_id)
            if api_version >= 3 and request.include_authorized_operations and described.error_code == 0:
                described.authorized_operations = (
                    GROUP_OPERATIONS_KAFKA_3 if authorized_operations is None else authorized_operations(group_id))
            response.groups.append(described)
        return self._finish(response)

    def _describe(self, group_id: str) -> DescribeGroupsResponse.DescribedGroup:
        group = self._groups.get(group_id)
        if group is None:  # unknown, or a consumer group: Kafka describes both as Dead before v6
            return DescribeGroupsResponse.DescribedGroup(group_id=group_id, group_state=GroupState.DEAD.value)
        described = DescribeGroupsResponse.DescribedGroup(
            group_id=group_id, group_state=group.state.value, protocol_type=group.protocol_type or "")
        stable = group.is_in(GroupState.STABLE)
        if stable:
            assert group.protocol_name is not None
            described.protocol_data = group.protocol_name
        for m in group.members.values():
            described.members.append(DescribeGroupsResponse.DescribedGroupMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                # Outside Stable Kafka describes members without metadata or assignment.
                member_metadata=m.metadata(group.protocol_name) if stable and group.protocol_name else b"",
                member_assignment=m.assignment if stable else b"",
            ))
        return described

    def list_groups(self, request: ListGroupsRequest, *, now_ms: int) -> CoordinatorResult[ListGroupsResponse]:
        """ListGroups, filtered by state (v4+, case-insensitive) and type (v5+: "classic", "consumer")."""
        self._begin(now_ms)
        states = {s.strip().lower() for s in request.states_filter}
        types = {t.strip().lower() for t in request.types_filter}
        response = ListGroupsResponse()
        if not types or CLASSIC_GROUP_TYPE in types:
            for group in self._groups.values():
                if states and group.state.value.lower() not in states:
                    continue
                response.groups.append(ListGroupsResponse.ListedGroup(
                    group_id=group.group_id, protocol_type=group.protocol_type or "",
                    group_state=group.state.value, group_type=CLASSIC_GROUP_TYPE))
        if not types or cg.CONSUMER_GROUP_TYPE in types:
            for consumer_group in self._consumer_groups.values():
                state = consumer_group.state.value
                if states and state.lower() not in states:
                    continue
                response.groups.append(ListGroupsResponse.ListedGroup(
                    group_id=consumer_group.group_id, protocol_type=cg.CONSUMER_PROTOCOL_TYPE,
                    group_state=state, group_type=cg.CONSUMER_GROUP_TYPE))
        return self._finish(response)

    def delete_groups(self, request: DeleteGroupsRequest, *, now_ms: int) -> CoordinatorResult[DeleteGroupsResponse]:
        """DeleteGroups: only groups with no members; their offsets go with them (tombstones)."""
        self._begin(now_ms)
        response = DeleteGroupsResponse()
        for group_id in dict.fromkeys(request.groups_names):  # Kafka's handler drops duplicates
            consumer_group = self._consumer_groups.get(group_id)
            if consumer_group is not None:
                if not consumer_group.is_empty:
                    error = ErrorCode.NON_EMPTY_GROUP
                else:
                    error = ErrorCode.NONE
                    self._delete_all_offsets(group_id)
                    self._emit_all(cg.group_tombstones(consumer_group))
                response.results.append(DeleteGroupsResponse.DeletableGroupResult(group_id, error))
                continue
            group = self._groups.get(group_id)
            if group is None or group.is_in(GroupState.DEAD):
                error = ErrorCode.GROUP_ID_NOT_FOUND
            elif not group.is_in(GroupState.EMPTY):
                error = ErrorCode.NON_EMPTY_GROUP
            else:
                error = ErrorCode.NONE
                self._delete_all_offsets(group_id)
                self._emit(rec.GroupMetadataKey(group_id), None)
            response.results.append(DeleteGroupsResponse.DeletableGroupResult(group_id, error))
        return self._finish(response)

    def _delete_all_offsets(self, group_id: str) -> None:
        keys = [(topic, p) for topic, parts in self._offsets.get(group_id, {}).items() for p in parts]
        keys += [(topic, p) for g, topic, p in sorted(self.pending_transactional_offsets)
                 if g == group_id and (topic, p) not in keys]
        for topic, partition in keys:
            self._emit(rec.OffsetCommitKey(group_id, topic, partition), None)

    # --- offset expiry ---------------------------------------------------------------------------

    def _on_expire_offsets_timer(self) -> None:
        """Kafka's ``cleanupGroupMetadata``: expire offsets, then delete Empty groups left without any."""
        for group_id in list(self._groups):
            if self._expire_offsets(group_id):
                group = self._groups.get(group_id)
                if group is not None and group.is_in(GroupState.EMPTY):
                    self._emit(rec.GroupMetadataKey(group_id), None)
        for group_id in list(self._consumer_groups):
            if self._expire_offsets(group_id):
                consumer_group = self._consumer_groups.get(group_id)
                if consumer_group is not None and consumer_group.is_empty:
                    self._emit_all(cg.group_tombstones(consumer_group))
        self._timers.schedule(("expire_offsets",), self._now_ms + self.config.offsets_retention_check_interval_ms,
                              _Timer("expire_offsets"))

    def _expire_offsets(self, group_id: str) -> bool:
        """Tombstone the group's expired offsets; True when the group has none left."""
        by_topic = self._offsets.get(group_id)
        if not by_topic:
            return True
        base: Callable[[CommittedOffset], int] | None
        is_subscribed: Callable[[str], bool]
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            # Kafka's ConsumerGroup.offsetExpirationCondition: from the commit, in any state.
            base, is_subscribed = (lambda entry: entry.commit_timestamp_ms), consumer_group.is_subscribed_to_topic
        else:
            group = self._groups[group_id]
            base, is_subscribed = _expiration_base(group), group.is_subscribed_to_topic
        if base is None:
            return False
        now, retention = self._now_ms, self.config.offsets_retention_ms
        expired = []
        all_expired = True
        for topic, partitions in by_topic.items():
            if is_subscribed(topic):
                all_expired = False
                continue
            for partition, entry in partitions.items():
                if entry.expire_timestamp_ms is not None:
                    is_expired = now >= entry.expire_timestamp_ms
                else:
                    is_expired = now - base(entry) >= retention
                if is_expired and (group_id, topic, partition) not in self.pending_transactional_offsets:
                    expired.append((topic, partition))
                else:
                    all_expired = False
        for topic, partition in expired:
            self._emit(rec.OffsetCommitKey(group_id, topic, partition), None)
        has_open_txn = any(g == group_id for g, _, _ in self.pending_transactional_offsets)
        return all_expired and not has_open_txn

    # --- records ---------------------------------------------------------------------------------

    def _state_timestamp(self, group: ClassicGroup) -> int:
        return rec.NO_TIMESTAMP if group.state_timestamp_ms is None else group.state_timestamp_ms

    def _emit_group(self, group: ClassicGroup, assignment: dict[str, bytes]) -> None:
        """Persist the group's membership (Kafka's ``newGroupMetadataRecord``)."""
        members = []
        for m in group.members.values():
            assert group.protocol_name is not None, "a group with members has a protocol"
            members.append(rec.MemberMetadata(
                member_id=m.member_id, group_instance_id=m.group_instance_id, client_id=m.client_id,
                client_host=m.client_host, rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.session_timeout_ms, subscription=m.metadata(group.protocol_name),
                assignment=assignment[m.member_id]))
        self._emit(rec.GroupMetadataKey(group.group_id), rec.GroupMetadataValue(
            protocol_type=group.protocol_type or "", generation=group.generation_id,
            protocol=group.protocol_name, leader=group.leader_id,
            current_state_timestamp_ms=self._state_timestamp(group), members=tuple(members)))

    def _emit(self, key: rec.OffsetCommitKey | rec.GroupMetadataKey | rec.ConsumerGroupKey,
              value: rec.RecordValue | None) -> None:
        """Queue a record for ``__consumer_offsets``; offset records, consumer group records and
        tombstones also take effect here, as Kafka replays them (a classic group's metadata value
        changes nothing: the state has it)."""
        self._out.records.append(OffsetsRecord(
            self.partition_for(key.group), rec.encode_key(key),
            None if value is None else rec.encode_value(value)))
        if value is None or isinstance(value, rec.OffsetCommitValue) or isinstance(key, rec.CONSUMER_GROUP_KEYS):
            self._replay(key, value)

    def _emit_all(self, records: Iterable[tuple[rec.GroupMetadataKey | rec.ConsumerGroupKey,
                                                rec.RecordValue | None]]) -> None:
        for key, value in records:
            self._emit(key, value)

    def _replay(self, key: rec.RecordKey, value: rec.RecordValue | None) -> None:
        if isinstance(key, rec.OffsetCommitKey):
            if value is not None:
                assert isinstance(value, rec.OffsetCommitValue)
                if key.group not in self._groups and key.group not in self._consumer_groups:
                    self._groups[key.group] = ClassicGroup(key.group, GroupState.EMPTY,
                                                           state_timestamp_ms=self._now_ms)
                self._offsets.setdefault(key.group, {}).setdefault(key.topic, {})[key.partition] = CommittedOffset(
                    offset=value.offset, leader_epoch=value.leader_epoch, metadata=value.metadata,
                    commit_timestamp_ms=value.commit_timestamp_ms,
                    expire_timestamp_ms=None if value.expire_timestamp_ms == rec.NO_TIMESTAMP
                    else value.expire_timestamp_ms)
            else:
                by_topic = self._offsets.get(key.group)
                if by_topic is not None:
                    partitions = by_topic.get(key.topic)
                    if partitions is not None:
                        partitions.pop(key.partition, None)
                        if not partitions:
                            del by_topic[key.topic]
                    if not by_topic:
                        del self._offsets[key.group]
        elif isinstance(key, rec.GroupMetadataKey):
            if value is None:
                self._groups.pop(key.group, None)
            else:
                assert isinstance(value, rec.GroupMetadataValue)
                if key.group in self._consumer_groups:
                    raise ProtocolError(f"group {key.group!r}: classic metadata for a consumer group")
                self._groups[key.group] = _group_from_record(key.group, value)
        elif isinstance(key, rec.CONSUMER_GROUP_KEYS):
            self._replay_consumer(key, value)

    def _replay_consumer(self, key: rec.ConsumerGroupKey, value: rec.RecordValue | None) -> None:
        """Kafka's replay of consumer group records (``getOrMaybeCreatePersistedConsumerGroup``)."""
        group = self._consumer_groups.get(key.group)
        if group is None:
            if value is None:
                return  # a tombstone for a group we do not have
            classic = self._groups.get(key.group)
            if classic is not None:
                if classic.protocol_type is not None or classic.members:
                    raise ProtocolError(f"group {key.group!r}: consumer group records for a classic group")
                # A group that only held committed offsets (a "simple" classic group) gives way.
                del self._groups[key.group]
            group = self._consumer_groups[key.group] = cg.ConsumerGroup(key.group)
        assert value is None or not isinstance(value, (rec.OffsetCommitValue, rec.GroupMetadataValue))
        group.replay(key, value)
        if isinstance(key, rec.ConsumerGroupMetadataKey) and value is None:
            del self._consumer_groups[key.group]

    # --- loading ---------------------------------------------------------------------------------

    def load(self, records: Iterable[tuple[bytes | bytearray | memoryview, bytes | bytearray | memoryview | None]],
             *, now_ms: int) -> CoordinatorResult[None]:
        """Rebuild state from ``__consumer_offsets`` records (key, value-or-None), in log order.

        Call it once per partition as the broker reads it back, before serving requests for its
        groups. Classic groups come back Empty or Stable with their last persisted generation;
        members get a fresh session, and a group above ``group_members_max`` starts a rebalance.
        Consumer groups come back exactly as their records left them; members get a fresh
        session, and those still revoking get a fresh revocation deadline. Record types of share
        and streams groups are skipped. Raises ``ProtocolError`` on a malformed record.
        Transaction markers and transactional commits are not handled: pass committed records.
        """
        return self._load(records, now_ms, None)

    def _load(self, records: Iterable[tuple[bytes | bytearray | memoryview, bytes | bytearray | memoryview | None]],
              now_ms: int, partition: int | None) -> CoordinatorResult[None]:
        self._begin(now_ms)
        touched: dict[str, None] = {}
        for raw_key, raw_value in records:
            key = rec.decode_key(raw_key)
            if isinstance(key, rec.UnknownKey) or (partition is not None and self.partition_for(key.group) != partition):
                continue
            self._replay(key, rec.decode_value(key, raw_value))
            touched[key.group] = None
        for group_id in touched:
            consumer_group = self._consumer_groups.get(group_id)
            if consumer_group is not None:
                for m in consumer_group.members.values():
                    self._schedule_consumer_session(group_id, m.member_id)
                    if m.state is cg.MemberState.UNREVOKED_PARTITIONS:
                        self._schedule_consumer_revocation(group_id, m)
                for resolved in consumer_group.resolved_regexes.values():
                    # Our topics version restarts with the process: make loaded resolutions stale.
                    self._topics_version = max(self._topics_version, resolved.version + 1)
            group = self._groups.get(group_id)
            if group is None:
                continue
            for member in group.members.values():
                self._schedule_heartbeat(group_id, member.member_id, member.session_timeout_ms)
            if len(group.members) > self.config.group_members_max:
                self._prepare_rebalance(group, "loaded group is over the size limit")
        return self._finish(None)

    def load_partition(self, partition: int,
                       records: Iterable[tuple[bytes | bytearray | memoryview, bytes | bytearray | memoryview | None]],
                       *, now_ms: int) -> CoordinatorResult[None]:
        """Take over the groups of one ``__consumer_offsets`` partition, from its records in log
        order (a broker that became the partition's leader). As ``load``, except that records
        of groups that belong to another partition (``partition_for``) are skipped: this
        coordinator could never serve them from here, and ``unload_partition`` would not find
        them. The partition's groups must not be loaded already (unload them first)."""
        assert not self.partition_group_ids(partition), f"partition {partition} is loaded already"
        return self._load(records, now_ms, partition)

    def partition_group_ids(self, partition: int) -> list[str]:
        """Ids of the groups (with members, or only offsets) this coordinator holds for ``partition``."""
        ids = dict.fromkeys([*self._groups, *self._consumer_groups, *self._offsets])
        ids.update((g, None) for g, _, _ in self.pending_transactional_offsets)
        return [g for g in ids if self.partition_for(g) == partition]

    def unload_partition(self, partition: int, *, now_ms: int) -> CoordinatorResult[None]:
        """Give up the groups of one ``__consumer_offsets`` partition (this broker no longer
        leads it): they, their offsets and their timers are forgotten, and every parked
        JoinGroup and SyncGroup of theirs is answered NOT_COORDINATOR (Kafka's
        ``onGroupUnloaded``), so the members look for the new coordinator. No records, and no
        timer runs: nothing more may be written to a partition this broker does not lead."""
        self._out = _Out()
        self._now_ms = now_ms
        group_ids = self.partition_group_ids(partition)
        gone = set(group_ids)
        for group_id in group_ids:
            group = self._groups.pop(group_id, None)
            if group is not None:
                for member in group.members.values():
                    if member.join_waiter is not None:
                        self._deliver_join(member.join_waiter, _join_error(member.member_id, ErrorCode.NOT_COORDINATOR))
                        member.join_waiter = None
                    if member.sync_waiter is not None:
                        self._deliver_sync(member.sync_waiter, SyncGroupResponse(error_code=ErrorCode.NOT_COORDINATOR))
                        member.sync_waiter = None
            self._consumer_groups.pop(group_id, None)
            self._offsets.pop(group_id, None)
        self.pending_transactional_offsets = {k for k in self.pending_transactional_offsets if k[0] not in gone}
        self._timers.cancel_groups(gone)
        return self._finish(None)

    # --- timers ----------------------------------------------------------------------------------

    def _fire(self, timer: _Timer) -> None:
        kind = timer.kind
        if kind == "heartbeat":
            self._on_heartbeat_timer(timer)
        elif kind == "join":
            group = self._groups.get(timer.group_id)
            if group is not None:
                self._complete_join_phase(group)
        elif kind == "initial_join":
            self._on_initial_join_timer(timer)
        elif kind == "sync":
            self._on_sync_timer(timer)
        elif kind == "cg_session":
            consumer_group = self._consumer_groups.get(timer.group_id)
            member = None if consumer_group is None else consumer_group.members.get(timer.member_id)
            if consumer_group is not None and member is not None:
                self._fence_consumer_member(consumer_group, member)
        elif kind == "cg_revoke":
            consumer_group = self._consumer_groups.get(timer.group_id)
            member = None if consumer_group is None else consumer_group.members.get(timer.member_id)
            if consumer_group is not None and member is not None and member.member_epoch == timer.generation_id:
                # It did not give up its partitions within its rebalance timeout.
                self._fence_consumer_member(consumer_group, member)
        else:
            assert kind == "expire_offsets", kind
            self._on_expire_offsets_timer()


def _consumer_error(error: ErrorCode, message: str) -> ConsumerGroupHeartbeatResponse:
    """A ConsumerGroupHeartbeat error answer (Kafka's: the code and message, nothing else)."""
    return ConsumerGroupHeartbeatResponse(error_code=error, error_message=message)


def _kafka_uuid(uuid_string: str) -> str:
    """A UUID in Kafka's ``Uuid.toString`` form (URL-safe base64, no padding), as member ids are."""
    return base64.urlsafe_b64encode(UUID(uuid_string).bytes).rstrip(b"=").decode()


def _is_subset(owned: cg.OwnedPartitions, assigned: cg.Partitions) -> bool:
    if owned is None:
        return False
    for topic_id, partitions in owned:
        have = assigned.get(topic_id)
        if have is None or any(p not in have for p in partitions):
            return False
    return True


def _check_member_epoch(member: cg.ConsumerGroupMember, received: int,
                        owned: cg.OwnedPartitions) -> ConsumerGroupHeartbeatResponse | None:
    """Kafka's ``throwIfConsumerGroupMemberEpochIsInvalid``: the member's epoch, or its previous
    epoch with owned partitions within its assignment (our last answer may have been lost)."""
    if received > member.member_epoch:
        return _consumer_error(ErrorCode.FENCED_MEMBER_EPOCH, (
            f"The consumer group member has a greater member epoch ({received}) than the one known by the "
            f"group coordinator ({member.member_epoch}). The member must abandon all its partitions and rejoin."))
    if received < member.member_epoch and (
            received != member.previous_member_epoch or not _is_subset(owned, member.assigned_partitions)):
        return _consumer_error(ErrorCode.FENCED_MEMBER_EPOCH, (
            f"The consumer group member has a smaller member epoch ({received}) than the one known by the "
            f"group coordinator ({member.member_epoch}). The member must abandon all its partitions and rejoin."))
    return None


def _validate_consumer_offset_commit(group: cg.ConsumerGroup, request: OffsetCommitRequest,
                                     api_version: int) -> ErrorCode:
    """Kafka's ``ConsumerGroup.validateOffsetCommit`` for a group of consumer-protocol members."""
    epoch = request.generation_id_or_member_epoch
    if epoch < 0 and group.is_empty:
        return ErrorCode.NONE  # the admin client, or a consumer that assigns partitions itself
    member = group.members.get(request.member_id)
    if member is None:
        return ErrorCode.UNKNOWN_MEMBER_ID
    if api_version < 9:
        return ErrorCode.UNSUPPORTED_VERSION  # consumer-protocol members commit with v9+
    if epoch != member.member_epoch:
        return ErrorCode.STALE_MEMBER_EPOCH
    return ErrorCode.NONE


def _inconsistent(requested: str | None, actual: str | None) -> bool:
    return requested is not None and actual is not None and requested != actual


def _expiration_base(group: ClassicGroup) -> Callable[[CommittedOffset], int] | None:
    """From when an offset's retention runs (Kafka's ``offsetExpirationCondition``), or None
    when the group's offsets do not expire now.

    - A group with a protocol type, Empty: from when it became Empty (the commit time if that
      is unknown).
    - A Stable group of consumers whose subscriptions are known: from the commit, for topics
      it no longer subscribes to.
    - A group without a protocol type (offsets only): from the commit.
    """
    if group.protocol_type is not None:
        if group.is_in(GroupState.EMPTY):
            state_ms = group.state_timestamp_ms
            if state_ms is not None:
                return lambda entry: state_ms
            return lambda entry: entry.commit_timestamp_ms
        if group.uses_consumer_protocol() and group.subscribed_topics is not None and group.is_in(GroupState.STABLE):
            return lambda entry: entry.commit_timestamp_ms
        return None
    return lambda entry: entry.commit_timestamp_ms


def _group_from_record(group_id: str, value: rec.GroupMetadataValue) -> ClassicGroup:
    """A group as loaded (Kafka's ``replay`` of GroupMetadataValue): Stable with its members, or Empty."""
    protocol_type = value.protocol_type or None
    group = ClassicGroup(
        group_id,
        GroupState.STABLE if value.members else GroupState.EMPTY,
        state_timestamp_ms=None if value.current_state_timestamp_ms == rec.NO_TIMESTAMP
        else value.current_state_timestamp_ms,
        generation_id=value.generation,
        protocol_type=protocol_type,
        protocol_name=value.protocol,
        leader_id=value.leader,
    )
    if value.members and value.protocol is None:
        raise ProtocolError(f"group {group_id!r}: a GroupMetadataValue with members has no protocol")
    instance_ids = [m.group_instance_id for m in value.members if m.group_instance_id is not None]
    if (len({m.member_id for m in value.members}) != len(value.members)
            or len(set(instance_ids)) != len(instance_ids)):
        raise ProtocolError(f"group {group_id!r}: a GroupMetadataValue repeats a member or instance id")
    for m in value.members:
        assert value.protocol is not None
        group.add(ClassicMember(
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            rebalance_timeout_ms=m.session_timeout_ms if m.rebalance_timeout_ms == -1 else m.rebalance_timeout_ms,
            session_timeout_ms=m.session_timeout_ms,
            protocol_type=value.protocol_type,
            protocols=((value.protocol, m.subscription),),
            assignment=m.assignment,
        ))
    group.subscribed_topics = group.compute_subscribed_topics()
    return group
