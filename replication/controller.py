"""The KRaft controller's state machine, sans-IO: requests in, metadata records and answers out.

What it owns. The rules of Kafka's ``QuorumController`` (``ClusterControlManager``,
``ReplicationControlManager``, ``PartitionChangeBuilder``, ``BrokerHeartbeatManager``) over the
metadata image of ``replication.metadata``: broker registration and heartbeats (fencing,
unfencing, controlled shutdown, session expiry), topic creation and deletion with rack-aware
placement (``replication.placement``), partition creation, leader election, ISR changes
requested by partition leaders (AlterPartition, with KIP-903's broker epochs), KIP-966's
eligible leader replicas and unclean-shutdown detection, reassignments, preferred and unclean
elections, topic config changes, the ELR feature level (UpdateFeatures) and producer id blocks.
It never touches the network, the disk, a clock or ambient randomness: time comes in as
``now_ms``, randomness (placement starts, topic ids) from an injected source.

Theory of operation. The controller keeps two images: ``committed_image``, the replay of every
record the metadata quorum has committed, and ``latest_image``, that plus the records this
controller has written and is waiting to see committed. A standby controller only replays:
the caller feeds it committed records with ``handle_commit`` (``latest == committed``). Once the
caller's Raft node leads the quorum and every record below the leader's epoch start offset has
been replayed, the caller calls ``become_active(next_write_offset=...)``; from then on each
request handler

1. checks the request against ``latest_image`` (so a request sees every earlier write, committed
   or not, as in Kafka),
2. returns a ``ControllerResult``: ``records`` to append to the metadata log *atomically, in
   order, starting at the offset the controller expects next* (it counts them), and
   ``response``, to send once the log has committed ``reply_after_offset`` (-1: send it now),
3. and applies the records to ``latest_image`` at once.

``handle_commit`` moves ``committed_image`` forward. If the Raft node loses leadership, or an
append fails, the caller calls ``resign()``: uncommitted writes are forgotten
(``latest = committed``) and the caller answers their waiting requests with NOT_CONTROLLER.
Handlers of a standby answer NOT_CONTROLLER at once.

Election rules (Kafka's ``PartitionChangeBuilder``; see ``partition_change``). A leader is
chosen from the ISR among *acceptable* brokers (registered, unfenced, not in controlled
shutdown): the current leader if it still qualifies, else the first qualifying replica in replica
order (for a preferred election, the first replica first). A replica outside the ISR is chosen
only by an unclean election (``unclean.leader.election.enable`` for the topic, or ElectLeaders of
type UNCLEAN); its ISR becomes just the new leader and its recovery state RECOVERING. Every
leader change bumps the leader epoch; so does a reassignment that removes replicas; every change
bumps the partition epoch. ISR shrinks and expansions alone do not bump the leader epoch (Kafka
3.6+). What happens when no ISR member qualifies depends on the ``eligible.leader.replicas.version``
feature (KIP-966; ``ControllerConfig.eligible_leader_replicas_version`` is the level a new log
starts with: 1, Kafka 4.1's default for a new cluster):

* Off (level 0, Kafka 3.9): with no unclean election the partition is leaderless (leader -1) and
  the ISR keeps its last member ("last replica standing": an ISR is never written empty), who
  leads again when it comes back, with whatever its log still holds.
* On: the partition also has an ELR, the replicas that left the ISR while it was below the
  topic's effective ``min.insync.replicas`` (capped by the replica count). The leader's high
  watermark does not move while the ISR is below the minimum (``replication.partition``), so
  each of them holds everything committed. A replica leaving the ISR joins the ELR if the ISR
  it leaves is below the minimum; an ISR at or above it empties the ELR; ISR and ELR never
  overlap; a fenced ELR member stays in the ELR. The ISR may now be written empty. With the ISR
  empty, an acceptable ELR member is elected and becomes the ISR. The last leader of a partition
  whose ISR emptied is kept as its last known ELR; with ISR and ELR both empty it is elected once
  acceptable again (an unclean election, RECOVERING: Kafka's last resort, even with unclean
  election off) and forgotten when the partition has a leader. An unclean election happens only
  when no ISR or ELR member is acceptable, and clears the ELR.

Broker lifecycle. A registration's broker epoch is the offset of its ``RegisterBrokerRecord``.
A broker registers fenced and is unfenced by a heartbeat once its metadata offset has reached
that record. ``tick(now_ms)`` fences every unfenced broker whose last heartbeat is more than
``broker.session.timeout.ms`` old: it leaves every ISR and its partitions elect new leaders. A
heartbeat asking for shutdown puts the broker in controlled shutdown (out of every ISR, its
leaderships moved) and is granted SHUTDOWN_NOW once it leads nothing and every active broker has
caught up with that change. A new incarnation of a broker (a restarted process, which may have
lost its log) is taken out of every ISR before it is registered again. It shut down cleanly only
if its BrokerRegistration's PreviousBrokerEpoch (v3+; -1 otherwise, or after a crash: the broker
takes it from its clean-shutdown marker) equals the epoch the log has for it; after an unclean
shutdown, with ELR on, it leaves every ELR too and is acceptable as leader of none of the
partitions it is taken out of (Kafka's handleBrokerShutdown). A different incarnation while the
current one holds a live session is DUPLICATE_BROKER_REGISTRATION, and a stale incarnation's
heartbeats and AlterPartitions carry an old broker epoch and get STALE_BROKER_EPOCH.

The minimum ISR. Leaders and controller must use the same ``min.insync.replicas`` or the ELR is
unsafe, so with ELR on the cluster-level default lives in the log, as Kafka's does: a ConfigRecord
on the broker resource named "", written by the active controller from its own setting whenever
the log's differs (brokers read it from the image, ``broker.core``); a topic override wins. A
change, of either, rebuilds the ELR of the partitions concerned against the new minimum: a
partition now at or above it loses its ELR; one still below keeps it, since its high watermark
has not moved since those replicas left. (Kafka 4.x clears every ELR concerned, ClearElrRecord.)

Deviations from Kafka 4.1, on purpose: AlterPartition from a broker that is not the partition's
leader is answered NOT_LEADER_OR_FOLLOWER (Kafka answers INVALID_REQUEST); broker (non-topic)
configs are static (IncrementalAlterConfigs on a broker is INVALID_REQUEST, as in the single-node
broker), so the cluster-level min.insync.replicas follows the active controller's setting;
registration checks only the finalized features a broker lists; metadata.version stays 3.9-IV0
(Kafka makes eligible.leader.replicas.version 1 depend on 4.0-IV1; the records it needs are in
3.9's); a min.insync.replicas change rebuilds ELRs rather than clearing them (above); the ELR is
kept within the partition's replicas; the last known leader is never -1, and is cleared, with the
ELR, by a change made while ELR is off; UpdateFeatures changes eligible.leader.replicas.version
only, and turning it off gives each partition whose ISR emptied an ISR again (``_disable_elr``).
Not modelled: log directories (KIP-858), quotas, authorization,
create-topic policies, automatic preferred-leader balancing (``broker.cluster`` asks ElectLeaders
for it), delegation tokens, ACLs, SCRAM; KIP-966's "unclean recovery" (elections
from the replicas' logs) is not in Kafka either.

Bounds. A user request writes at most ``records_per_write_max`` records (Kafka's 10000);
CreateTopics and CreatePartitions refuse what would exceed it. Fencing, unfencing, a new
incarnation and a min.insync.replicas change look at every partition (linear in partitions;
Kafka keeps indexes of ISR and ELR members). Sessions: one per registered broker.
Single-threaded; no method blocks.
"""

from __future__ import annotations

import base64
import enum
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from protocol.error_codes import ErrorCode
from protocol.messages.allocate_producer_ids import AllocateProducerIdsRequest, AllocateProducerIdsResponse
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.alter_partition_reassignments import (
    AlterPartitionReassignmentsRequest,
    AlterPartitionReassignmentsResponse,
)
from protocol.messages.broker_heartbeat import BrokerHeartbeatRequest, BrokerHeartbeatResponse
from protocol.messages.broker_registration import BrokerRegistrationRequest, BrokerRegistrationResponse
from protocol.messages.create_partitions import CreatePartitionsRequest, CreatePartitionsResponse
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from protocol.messages.elect_leaders import ElectLeadersRequest, ElectLeadersResponse
from protocol.messages.incremental_alter_configs import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
)
from protocol.messages.unregister_broker import UnregisterBrokerRequest, UnregisterBrokerResponse
from protocol.messages.update_features import UpdateFeaturesRequest, UpdateFeaturesResponse
from replication.metadata import (
    CLUSTER_DEFAULT,
    ELR_VERSION_FEATURE,
    EMPTY_IMAGE,
    METADATA_VERSION_FEATURE,
    RESOURCE_BROKER,
    RESOURCE_TOPIC,
    MetadataDelta,
    MetadataImage,
    PartitionRegistration,
    collision_key,
    topic_name_error,
)
from replication.placement import RandomSource, UsableBroker, place_replicas
from replication.records import (
    FENCE,
    NO_LEADER,
    NO_LEADER_CHANGE,
    RECOVERED,
    RECOVERING,
    UNFENCE,
    BrokerEndpoint,
    BrokerFeature,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    FeatureLevelRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnregisterBrokerRecord,
)

R = TypeVar("R")

# The metadata.version this controller writes when it bootstraps an empty log: Kafka 3.9-IV0.
METADATA_VERSION_LEVEL = 21
ELR_VERSION_LEVEL_MAX = 1  # eligible.leader.replicas.version levels this controller knows
MIN_ISR_KEY = "min.insync.replicas"

# IncrementalAlterConfigs operations.
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
# ElectLeaders election types.
ELECTION_PREFERRED, ELECTION_UNCLEAN = 0, 1
# UpdateFeatures upgrade types (v1+; v0's AllowDowngrade means SAFE_DOWNGRADE).
UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE = 1, 2, 3
# DescribeConfigs' DYNAMIC_TOPIC_CONFIG source.
_SOURCE_TOPIC = 1

_KAFKA_RESERVED_IDS = frozenset({uuid.UUID(int=0), uuid.UUID(int=1)})  # ZERO and METADATA_TOPIC_ID


# --- configuration and policies --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    cluster_id: str
    broker_session_timeout_ms: int = 9000
    default_replication_factor: int = 1
    num_partitions: int = 1
    unclean_leader_election_enable: bool = False
    delete_topic_enable: bool = True
    records_per_write_max: int = 10_000
    producer_id_block_size: int = 1000
    min_insync_replicas: int = 1  # min.insync.replicas, the broker default
    # The eligible.leader.replicas.version a new cluster starts with (Kafka 4.1: 1 for new
    # clusters); 0 leaves it off. An existing log keeps the level it has.
    eligible_leader_replicas_version: int = 1


class TopicConfigPolicy(Protocol):
    """The topic-config rules the controller applies (the broker's ``broker.config`` has them)."""

    def check(self, configs: Mapping[str, str]) -> tuple[str, str] | None:
        """The first problem with a topic's whole set of overrides as ``(key, message)``."""
        ...

    def normalise(self, key: str, value: str) -> str:
        """The canonical text to store for a valid value."""
        ...

    def is_list(self, key: str) -> bool:
        """Whether APPEND and SUBTRACT apply to ``key``."""
        ...

    def describe(self, configs: Mapping[str, str]) -> list[CreateTopicsResponse.CreatableTopicConfigs]:
        """A new topic's effective configs, for CreateTopics v5+."""
        ...


class AnyTopicConfigs:
    """A permissive policy: any key and value; CreateTopics describes only the overrides."""

    LIST_KEYS = frozenset({"cleanup.policy", "leader.replication.throttled.replicas",
                           "follower.replication.throttled.replicas"})

    def check(self, configs: Mapping[str, str]) -> tuple[str, str] | None:
        return None

    def normalise(self, key: str, value: str) -> str:
        return value

    def is_list(self, key: str) -> bool:
        return key in self.LIST_KEYS

    def describe(self, configs: Mapping[str, str]) -> list[CreateTopicsResponse.CreatableTopicConfigs]:
        return [CreateTopicsResponse.CreatableTopicConfigs(name=k, value=v, config_source=_SOURCE_TOPIC)
                for k, v in sorted(configs.items())]


# --- effects ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControllerResult(Generic[R]):
    """What one call produced.

    ``records``: append to the metadata log atomically, in order, at the offset the controller
    expects next (``QuorumController.next_write_offset`` before the call). ``response``: send it
    once the log has committed ``reply_after_offset`` (-1: at once).
    """

    records: tuple[MetadataRecord, ...]
    response: R
    reply_after_offset: int = -1


# --- partition changes (Kafka's PartitionChangeBuilder) ---------------------------------------------


class Election(enum.Enum):
    PREFERRED = "preferred"  # the first replica if it qualifies, else keep the leader, else any
    ONLINE = "online"  # keep the leader if it qualifies, else the first qualifying ISR (or ELR) member
    UNCLEAN = "unclean"  # as ONLINE, then any acceptable replica, even out of sync


def partition_change(
    part: PartitionRegistration,
    *,
    topic_id: uuid.UUID,
    partition_id: int,
    acceptable: Callable[[int], bool],
    election: Election = Election.ONLINE,
    target_isr: Sequence[int] | None = None,
    target_replicas: Sequence[int] | None = None,
    target_removing: Sequence[int] | None = None,
    target_adding: Sequence[int] | None = None,
    target_recovery_state: int | None = None,
    elr: bool = False,
    min_insync_replicas: int = 1,
    unclean_shutdown: Collection[int] = (),
) -> PartitionChangeRecord | None:
    """The record that moves ``part`` to the targets and elects its leader; None if no change.

    ``acceptable(broker)`` says whether a broker may lead (alive and not shutting down). ``elr``
    turns on KIP-966's eligible leader replicas, with ``min_insync_replicas`` the topic's
    setting (capped here by the partition's replica count, as the leader caps it) and
    ``unclean_shutdown`` the brokers that just came back from an unclean shutdown (they never
    join the ELR). The steps, in Kafka's order: complete a reassignment whose target replicas are
    all in the ISR (dropping the removed replicas from replicas and ISR), work out the target ELR,
    elect (module docstring), force a leader epoch bump when replicas are removed, then write each
    field that differs, the last known leader last.
    """
    isr = tuple(part.isr if target_isr is None else target_isr)
    replicas = tuple(part.replicas if target_replicas is None else target_replicas)
    removing = tuple(part.removing_replicas if target_removing is None else target_removing)
    adding = tuple(part.adding_replicas if target_adding is None else target_adding)

    if removing or adding:
        done_isr = tuple(r for r in isr if r not in removing)
        done_replicas = tuple(r for r in replicas if r not in removing)
        if done_isr and done_replicas and all(r in done_isr for r in done_replicas):
            isr, replicas, removing, adding = done_isr, done_replicas, (), ()

    # The ELR (Kafka's maybePopulateTargetElr): while the ISR is below the minimum the high
    # watermark stands still, so a replica that was in the ISR keeps everything committed and
    # may lead later; at or above the minimum the high watermark moves on without the ELR.
    target_elr: tuple[int, ...] = part.elr
    if elr:
        if len(isr) >= max(1, min(min_insync_replicas, len(replicas))):
            target_elr = ()
        else:
            target_elr = tuple(sorted(r for r in {*part.elr, *part.isr}
                                      if r not in isr and r not in unclean_shutdown and r in replicas))

    def qualifies(r: int) -> bool:
        return (r in isr or (not isr and r in target_elr)) and acceptable(r)

    last_known = NO_LEADER
    if elr and not isr and not target_elr and len(part.last_known_elr) == 1:
        candidate = part.last_known_elr[0]
        if candidate in replicas and acceptable(candidate):
            last_known = candidate

    leader, unclean = _elect(part.leader, replicas, qualifies, acceptable, election, last_known)
    new_leader, recovery = NO_LEADER_CHANGE, -1
    new_isr: tuple[int, ...] | None = None
    if leader != part.leader:
        new_leader = leader
        if leader in target_elr and not unclean:
            # Elected from the ELR: it becomes the ISR.
            isr = (leader,)
            target_elr = tuple(r for r in target_elr if r != leader)
        if unclean:
            new_isr = (leader,)
            if part.leader_recovery_state != RECOVERING:
                recovery = RECOVERING
    if new_leader == NO_LEADER_CHANGE and not set(part.replicas) <= set(replicas):
        new_leader = part.leader  # replicas were removed: the leader epoch must move
    if new_isr is not None or not elr:
        target_elr = ()  # an unclean election, or ELR off: no eligible leader replicas
    new_elr = target_elr if set(target_elr) != set(part.elr) else None
    if new_isr is None and (isr or elr) and isr != part.isr:
        new_isr = isr  # with ELR on the ISR may become empty; without, it keeps its last member
    new_last_known: tuple[int, ...] | None = None
    if elr:
        # Kafka's maybeUpdateLastKnownLeader: when the ISR empties, remember who led; forget it
        # once the partition has a leader again.
        if new_isr == () and part.leader != NO_LEADER and part.last_known_elr != (part.leader,):
            new_last_known = (part.leader,)
        elif (new_leader >= 0 or (part.leader != NO_LEADER and new_leader != NO_LEADER)) and part.last_known_elr:
            new_last_known = ()
    elif part.last_known_elr:
        new_last_known = ()
    if target_recovery_state is not None and target_recovery_state != part.leader_recovery_state:
        recovery = target_recovery_state
    change = PartitionChangeRecord(
        topic_id=topic_id, partition_id=partition_id, isr=new_isr, leader=new_leader,
        replicas=replicas if replicas and replicas != part.replicas else None,
        removing_replicas=removing if removing != part.removing_replicas else None,
        adding_replicas=adding if adding != part.adding_replicas else None,
        leader_recovery_state=recovery, elr=new_elr, last_known_elr=new_last_known,
    )
    if (change.isr is None and change.leader == NO_LEADER_CHANGE and change.replicas is None
            and change.removing_replicas is None and change.adding_replicas is None
            and change.leader_recovery_state == -1 and change.elr is None and change.last_known_elr is None):
        return None
    return change


def _elect(current: int, replicas: Sequence[int], qualifies: Callable[[int], bool],
           acceptable: Callable[[int], bool], election: Election, last_known: int) -> tuple[int, bool]:
    """(new leader or NO_LEADER, whether the choice was unclean).

    ``last_known``: the last known leader when ELR is on and both ISR and ELR are empty (Kafka
    elects it, as an unclean election, even with unclean election off); else NO_LEADER.
    """
    if election is Election.PREFERRED and replicas and qualifies(replicas[0]):
        return replicas[0], False
    if current != NO_LEADER and qualifies(current):
        return current, False
    for r in replicas:
        if qualifies(r):
            return r, False
    if last_known != NO_LEADER:
        return last_known, True
    if election is Election.UNCLEAN:
        for r in replicas:
            if acceptable(r):
                return r, True
    return NO_LEADER, False


# --- the controller --------------------------------------------------------------------------------


class _State(enum.Enum):
    FENCED = "fenced"
    UNFENCED = "unfenced"
    CONTROLLED_SHUTDOWN = "controlled shutdown"
    SHUTDOWN_NOW = "shutdown now"


@dataclass(slots=True)
class _Session:
    """What the active controller knows of a broker between heartbeats (not in the log)."""

    last_contact_ms: int
    metadata_offset: int = -1
    shutdown_offset: int = -1  # offset after which a controlled shutdown is complete; -1: none


class _Write:
    """The records of one write and the state they lead to, as they are added."""

    __slots__ = ("base_offset", "delta", "records")

    def __init__(self, image: MetadataImage, base_offset: int) -> None:
        self.base_offset = base_offset
        self.delta = MetadataDelta(image)
        self.records: list[MetadataRecord] = []

    @property
    def next_offset(self) -> int:
        return self.base_offset + len(self.records)

    def add(self, record: MetadataRecord) -> None:
        self.delta.replay(record, self.next_offset)
        self.records.append(record)


class QuorumController:
    """See the module docstring. One instance per controller node; single-threaded."""

    def __init__(self, config: ControllerConfig, *, rng: RandomSource,
                 topic_configs: TopicConfigPolicy | None = None,
                 image: MetadataImage = EMPTY_IMAGE) -> None:
        self.config = config
        self._rng = rng
        self._policy: TopicConfigPolicy = topic_configs if topic_configs is not None else AnyTopicConfigs()
        self._committed = image
        self._latest = image
        self._pending: deque[tuple[int, MetadataImage]] = deque()  # (last offset, image after)
        self._active = False
        self._next_write_offset = -1
        self._sessions: dict[int, _Session] = {}

    # --- state -------------------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self._active

    @property
    def committed_image(self) -> MetadataImage:
        return self._committed

    @property
    def latest_image(self) -> MetadataImage:
        return self._latest

    @property
    def next_write_offset(self) -> int:
        """Where the next records returned will sit in the log (active only)."""
        return self._next_write_offset

    # --- the log -----------------------------------------------------------------------------------

    def handle_commit(self, *, base_offset: int, records: Sequence[MetadataRecord]) -> None:
        """Records the quorum committed, at consecutive offsets from ``base_offset``.

        A standby replays them. The active controller wrote them itself and already applied
        them; it only moves its committed image forward.
        """
        if not records:
            return
        last = base_offset + len(records) - 1
        if not self._active:
            self._committed = self._committed.apply(records, base_offset=base_offset)
            self._latest = self._committed
            return
        assert last < self._next_write_offset, "a commit of records this controller did not write"
        while self._pending and self._pending[0][0] <= last:
            _, self._committed = self._pending.popleft()

    def load_snapshot(self, image: MetadataImage) -> None:
        """Replace the state with a snapshot's (standby only)."""
        assert not self._active, "the active controller does not load snapshots"
        self._committed = self._latest = image

    def become_active(self, *, next_write_offset: int, now_ms: int) -> ControllerResult[None]:
        """This node now leads the quorum; every record below ``next_write_offset`` is replayed.

        Every registered broker gets a fresh session (Kafka does the same: heartbeats sent to
        the old controller are not held against a broker). An empty log is bootstrapped with
        the metadata.version feature level.
        """
        assert not self._active
        assert next_write_offset > self._committed.offset, (next_write_offset, self._committed.offset)
        self._active = True
        self._next_write_offset = next_write_offset
        self._latest = self._committed
        self._pending.clear()
        self._sessions = {b: _Session(now_ms) for b in self._latest.brokers}
        w = self._write()
        if METADATA_VERSION_FEATURE not in self._latest.features:
            w.add(FeatureLevelRecord(METADATA_VERSION_FEATURE, METADATA_VERSION_LEVEL))
            level = self.config.eligible_leader_replicas_version
            if level > 0:
                w.add(FeatureLevelRecord(ELR_VERSION_FEATURE, min(level, ELR_VERSION_LEVEL_MAX)))
        if w.delta.feature_level(ELR_VERSION_FEATURE) >= 1:
            # With ELR the leaders and this controller must agree on every topic's minimum ISR,
            # so the default lives in the log (Kafka's cluster-level min.insync.replicas), set from
            # this controller's own setting; a change re-evaluates every ELR.
            self._sync_min_isr_default(w)
        return self._finish(w, None)

    def resign(self) -> None:
        """Leadership is lost (or an append failed): forget every uncommitted write."""
        self._active = False
        self._pending.clear()
        self._latest = self._committed
        self._sessions.clear()
        self._next_write_offset = -1

    # --- time --------------------------------------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        """When ``tick`` next has something to do (a session expiring), or None."""
        if not self._active:
            return None
        due = [s.last_contact_ms + self.config.broker_session_timeout_ms + 1
               for b, s in self._sessions.items()
               if (reg := self._latest.brokers.get(b)) is not None and not reg.fenced]
        return min(due, default=None)

    def tick(self, now_ms: int) -> ControllerResult[None]:
        """Fence every unfenced broker whose session has expired."""
        if not self._active:
            return ControllerResult((), None)
        w = self._write()
        for broker_id in sorted(self._sessions):
            session = self._sessions[broker_id]
            reg = w.delta.broker(broker_id)
            if reg is None or reg.fenced:
                continue
            if now_ms > session.last_contact_ms + self.config.broker_session_timeout_ms:
                self._fence(w, broker_id)
                session.shutdown_offset = -1
        return self._finish(w, None)

    # --- brokers -----------------------------------------------------------------------------------

    def handle_broker_registration(self, req: BrokerRegistrationRequest, *,
                                   now_ms: int) -> ControllerResult[BrokerRegistrationResponse]:
        def error(code: ErrorCode) -> ControllerResult[BrokerRegistrationResponse]:
            return self._answer(BrokerRegistrationResponse(error_code=code))

        if not self._active:
            return error(ErrorCode.NOT_CONTROLLER)
        if req.cluster_id != self.config.cluster_id:
            return error(ErrorCode.INCONSISTENT_CLUSTER_ID)
        if req.is_migrating_zk_broker:
            return error(ErrorCode.BROKER_ID_NOT_REGISTERED)
        broker_id = req.broker_id
        existing = self._latest.broker(broker_id)
        new_incarnation = existing is None or existing.incarnation_id != req.incarnation_id
        if existing is not None and new_incarnation and self._has_live_session(broker_id, now_ms):
            return error(ErrorCode.DUPLICATE_BROKER_REGISTRATION)
        for f in req.features:
            level = self._latest.features.get(f.name)
            if level is not None and not f.min_supported_version <= level <= f.max_supported_version:
                return error(ErrorCode.UNSUPPORTED_VERSION)
        w = self._write()
        if new_incarnation:
            # A new process. Its predecessor shut down cleanly only if it says so with the broker
            # epoch it had (PreviousBrokerEpoch, written to its log directory at a clean shutdown;
            # -1 after a crash, and in BrokerRegistration before v3). Either way it leaves every
            # ISR before the new registration, so it rejoins them only through its leaders' ISR
            # expansion. After an unclean shutdown it may have lost what it acknowledged: with ELR
            # on it leaves every ELR too, and may not lead from either (Kafka's
            # handleBrokerShutdown).
            clean = existing is not None and req.previous_broker_epoch == existing.epoch
            unclean = not clean and w.delta.feature_level(ELR_VERSION_FEATURE) >= 1
            self._remove_from_isrs(w, broker_id, unclean_shutdown=unclean)
        if existing is None or new_incarnation:
            epoch, fenced, shutting_down = w.next_offset, True, False
        else:
            epoch, fenced, shutting_down = existing.epoch, existing.fenced, existing.in_controlled_shutdown
        w.add(RegisterBrokerRecord(
            broker_id=broker_id, incarnation_id=req.incarnation_id, broker_epoch=epoch,
            endpoints=tuple(BrokerEndpoint(x.name, x.host, x.port, x.security_protocol) for x in req.listeners),
            features=tuple(BrokerFeature(f.name, f.min_supported_version, f.max_supported_version)
                           for f in req.features),
            rack=req.rack, fenced=fenced, in_controlled_shutdown=shutting_down))
        session = self._sessions.get(broker_id)
        if session is None or new_incarnation:
            self._sessions[broker_id] = _Session(now_ms)
        else:
            session.last_contact_ms = now_ms
        return self._finish(w, BrokerRegistrationResponse(broker_epoch=epoch))

    def handle_broker_heartbeat(self, req: BrokerHeartbeatRequest, *,
                                now_ms: int) -> ControllerResult[BrokerHeartbeatResponse]:
        def error(code: ErrorCode) -> ControllerResult[BrokerHeartbeatResponse]:
            return self._answer(BrokerHeartbeatResponse(error_code=code))

        if not self._active:
            return error(ErrorCode.NOT_CONTROLLER)
        broker_id = req.broker_id
        reg = self._latest.broker(broker_id)
        if reg is None or reg.epoch != req.broker_epoch:
            return error(ErrorCode.STALE_BROKER_EPOCH)
        session = self._sessions.setdefault(broker_id, _Session(now_ms))
        if reg.fenced:
            current = _State.FENCED
        elif reg.in_controlled_shutdown:
            current = _State.CONTROLLED_SHUTDOWN
            if session.shutdown_offset < 0:  # it entered controlled shutdown under another controller
                session.shutdown_offset = self._next_write_offset - 1
        else:
            current = _State.UNFENCED
        caught_up = req.current_metadata_offset >= reg.registration_offset
        nxt = self._next_state(current, req, caught_up, broker_id, session)
        w = self._write()
        if nxt is not current:
            if nxt is _State.UNFENCED:
                w.add(BrokerRegistrationChangeRecord(broker_id, reg.epoch, fenced=UNFENCE))
                self._elect_leaderless(w)
            elif nxt is _State.CONTROLLED_SHUTDOWN:
                w.add(BrokerRegistrationChangeRecord(broker_id, reg.epoch, in_controlled_shutdown=1))
                self._remove_from_isrs(w, broker_id)
                session.shutdown_offset = w.next_offset - 1
            elif current is not _State.FENCED:  # FENCED or SHUTDOWN_NOW
                self._fence(w, broker_id)
        session.last_contact_ms = now_ms
        session.metadata_offset = req.current_metadata_offset
        if nxt in (_State.FENCED, _State.SHUTDOWN_NOW):
            session.shutdown_offset = -1
        return self._finish(w, BrokerHeartbeatResponse(
            is_caught_up=caught_up, is_fenced=nxt in (_State.FENCED, _State.SHUTDOWN_NOW),
            should_shut_down=nxt is _State.SHUTDOWN_NOW))

    def _next_state(self, current: _State, req: BrokerHeartbeatRequest, caught_up: bool,
                    broker_id: int, session: _Session) -> _State:
        """Kafka's ``BrokerHeartbeatManager.calculateNextBrokerState``."""
        if current is _State.FENCED:
            if req.want_shut_down:
                return _State.SHUTDOWN_NOW
            if not req.want_fence and caught_up:
                return _State.UNFENCED
            return _State.FENCED
        if current is _State.UNFENCED:
            if req.want_fence:
                return _State.SHUTDOWN_NOW if req.want_shut_down else _State.FENCED
            if req.want_shut_down:
                return _State.CONTROLLED_SHUTDOWN if self._leads_any(broker_id) else _State.SHUTDOWN_NOW
            return _State.UNFENCED
        # Controlled shutdown: done once it leads nothing and every active broker has seen that.
        if self._leads_any(broker_id):
            return _State.CONTROLLED_SHUTDOWN
        if session.shutdown_offset <= self._lowest_active_offset():
            return _State.SHUTDOWN_NOW
        return _State.CONTROLLED_SHUTDOWN

    def handle_unregister_broker(self, req: UnregisterBrokerRequest) -> ControllerResult[UnregisterBrokerResponse]:
        if not self._active:
            return self._answer(UnregisterBrokerResponse(error_code=ErrorCode.NOT_CONTROLLER))
        reg = self._latest.broker(req.broker_id)
        if reg is None:
            return self._answer(UnregisterBrokerResponse(
                error_code=ErrorCode.BROKER_ID_NOT_REGISTERED,
                error_message=f"broker {req.broker_id} is not registered"))
        w = self._write()
        self._remove_from_isrs(w, req.broker_id, also_elr=True)
        w.add(UnregisterBrokerRecord(req.broker_id, reg.epoch))
        self._sessions.pop(req.broker_id, None)
        return self._finish(w, UnregisterBrokerResponse(error_message=None))

    # --- ISR changes from partition leaders --------------------------------------------------------

    def handle_alter_partition(self, req: AlterPartitionRequest, *,
                               version: int) -> ControllerResult[AlterPartitionResponse]:
        if not self._active:
            return self._answer(AlterPartitionResponse(error_code=ErrorCode.NOT_CONTROLLER))
        sender = self._latest.broker(req.broker_id)
        if sender is None or sender.epoch != req.broker_epoch:
            return self._answer(AlterPartitionResponse(error_code=ErrorCode.STALE_BROKER_EPOCH))
        w = self._write()
        response = AlterPartitionResponse()
        for t in req.topics:
            out = AlterPartitionResponse.TopicData(topic_name=t.topic_name, topic_id=t.topic_id)
            response.topics.append(out)
            topic_id = t.topic_id if version >= 2 else w.delta.topic_id(t.topic_name)
            topic = None if topic_id is None else self._latest.topic_by_id(topic_id)
            if topic_id is None or topic is None:
                code = ErrorCode.UNKNOWN_TOPIC_ID if version >= 2 else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                out.partitions += [AlterPartitionResponse.PartitionData(partition_index=p.partition_index,
                                                                        error_code=code) for p in t.partitions]
                continue
            for p in t.partitions:
                out.partitions.append(self._alter_one_partition(w, req.broker_id, topic.name, topic_id, p, version))
        return self._finish(w, response)

    def _alter_one_partition(self, w: _Write, sender: int, topic_name: str, topic_id: uuid.UUID,
                             p: AlterPartitionRequest.PartitionData, version: int) -> AlterPartitionResponse.PartitionData:
        pid = p.partition_index
        if version >= 3:
            new_isr = [(s.broker_id, s.broker_epoch) for s in p.new_isr_with_epochs]
        else:
            new_isr = [(b, -1) for b in p.new_isr]
        part = w.delta.partition(topic_id, pid)
        code = self._alter_partition_error(w, sender, part, p, new_isr, version)
        if code is not ErrorCode.NONE:
            return AlterPartitionResponse.PartitionData(partition_index=pid, error_code=code)
        assert part is not None
        change = self._change(w, topic_name, topic_id, pid, part, acceptable=w.delta.is_active,
                              target_isr=[b for b, _ in new_isr], target_recovery_state=p.leader_recovery_state)
        if change is not None:
            w.add(change)
            if change.leader not in (NO_LEADER_CHANGE, sender):
                # The ISR change completed a reassignment that moved leadership away.
                return AlterPartitionResponse.PartitionData(
                    partition_index=pid,
                    error_code=ErrorCode.NEW_LEADER_ELECTED if version >= 2 else ErrorCode.FENCED_LEADER_EPOCH)
            part = w.delta.partition(topic_id, pid)
            assert part is not None
        return AlterPartitionResponse.PartitionData(
            partition_index=pid, error_code=ErrorCode.NONE, leader_id=part.leader,
            leader_epoch=part.leader_epoch, isr=list(part.isr),
            leader_recovery_state=part.leader_recovery_state, partition_epoch=part.partition_epoch)

    def _alter_partition_error(self, w: _Write, sender: int, part: PartitionRegistration | None,
                               p: AlterPartitionRequest.PartitionData, new_isr: list[tuple[int, int]],
                               version: int) -> ErrorCode:
        """Kafka's ``validateAlterPartitionData``, in its order."""
        if part is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if p.leader_epoch > part.leader_epoch or p.partition_epoch > part.partition_epoch:
            return ErrorCode.NOT_CONTROLLER  # the sender has seen a newer controller's work
        if p.leader_epoch < part.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if sender != part.leader:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if p.partition_epoch < part.partition_epoch:
            return ErrorCode.INVALID_UPDATE_VERSION
        ids = [b for b, _ in new_isr]
        if len(set(ids)) != len(ids) or any(b not in part.replicas for b in ids) or part.leader not in ids:
            return ErrorCode.INVALID_REQUEST
        if p.leader_recovery_state == RECOVERING and len(ids) > 1:
            return ErrorCode.INVALID_REQUEST
        if part.leader_recovery_state == RECOVERED and p.leader_recovery_state == RECOVERING:
            return ErrorCode.INVALID_REQUEST
        for broker_id, epoch in new_isr:
            reg = w.delta.broker(broker_id)
            if (reg is None or reg.in_controlled_shutdown or reg.fenced
                    or (epoch != -1 and reg.epoch != epoch)):
                return ErrorCode.INELIGIBLE_REPLICA if version >= 2 else ErrorCode.OPERATION_NOT_ATTEMPTED
        return ErrorCode.NONE

    # --- topics ------------------------------------------------------------------------------------

    def handle_create_topics(self, req: CreateTopicsRequest, *,
                             version: int) -> ControllerResult[CreateTopicsResponse]:
        if not self._active:
            return self._answer(CreateTopicsResponse(topics=[
                CreateTopicsResponse.CreatableTopicResult(name=t.name, error_code=ErrorCode.NOT_CONTROLLER,
                                                          error_message=None)
                for t in req.topics]))
        w = self._write()
        names = [t.name for t in req.topics]
        duplicated = {n for n in names if names.count(n) > 1}
        keys_in_request: dict[str, str] = {}
        results = []
        for t in req.topics:
            result = CreateTopicsResponse.CreatableTopicResult(name=t.name, error_message=None)
            results.append(result)
            if t.name in duplicated:
                result.error_code, result.error_message = ErrorCode.INVALID_REQUEST, "Duplicate topic name."
                continue
            error, message = self._create_topic(w, t, version, result, keys_in_request)
            if error is not ErrorCode.NONE:
                result.error_code, result.error_message = error, message
        if req.validate_only:
            w = self._write()
        return self._finish(w, CreateTopicsResponse(topics=results))

    def _create_topic(self, w: _Write, t: CreateTopicsRequest.CreatableTopic, version: int,
                      result: CreateTopicsResponse.CreatableTopicResult,
                      keys_in_request: dict[str, str]) -> tuple[ErrorCode, str | None]:
        reason = topic_name_error(t.name)
        if reason is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
        if w.delta.topic_id(t.name) is not None:
            return ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{t.name}' already exists."
        other = self._latest.colliding_topic(t.name) or keys_in_request.get(collision_key(t.name))
        if other is not None:
            return ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic '{t.name}' collides with existing topic: {other}"
        null_keys = [c.name for c in t.configs if c.value is None]
        if null_keys:
            return ErrorCode.INVALID_CONFIG, f"Null value not supported for topic configs: {','.join(null_keys)}"
        config_names = [c.name for c in t.configs]
        if len(set(config_names)) != len(config_names):
            return ErrorCode.INVALID_REQUEST, "a config name appears more than once"
        configs = {c.name: c.value for c in t.configs if c.value is not None}
        problem = self._policy.check(configs)
        if problem is not None:
            return ErrorCode.INVALID_CONFIG, problem[1]
        if t.assignments:
            if t.replication_factor != -1:
                return (ErrorCode.INVALID_REQUEST,
                        "A manual partition assignment was specified, but replication factor was not set to -1.")
            if t.num_partitions != -1:
                return (ErrorCode.INVALID_REQUEST,
                        "A manual partition assignment was specified, but numPartitions was not set to -1.")
            assignments: dict[int, tuple[int, ...]] = {}
            for a in t.assignments:
                if a.partition_index in assignments:
                    return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"Found multiple manual partition assignments for partition {a.partition_index}")
                problem_text = self._assignment_error(a.broker_ids, next(iter(assignments.values()), None))
                if problem_text is not None:
                    return ErrorCode.INVALID_REPLICA_ASSIGNMENT, problem_text
                if not any(self._latest.is_active(b) for b in a.broker_ids):
                    return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"All brokers specified in the manual partition assignment for partition "
                            f"{a.partition_index} are fenced or in controlled shutdown.")
                assignments[a.partition_index] = tuple(a.broker_ids)
            if sorted(assignments) != list(range(len(assignments))):
                return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partitions should be a consecutive 0-based integer sequence"
            placed = [assignments[i] for i in range(len(assignments))]
        else:
            if t.replication_factor < -1 or t.replication_factor == 0:
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        "Replication factor must be larger than 0, or -1 to use the default value.")
            if t.num_partitions < -1 or t.num_partitions == 0:
                return ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value."
            count = self.config.num_partitions if t.num_partitions == -1 else t.num_partitions
            rf = self.config.default_replication_factor if t.replication_factor == -1 else t.replication_factor
            if len(w.records) + 1 + len(configs) + count > self.config.records_per_write_max:
                return ErrorCode.INVALID_PARTITIONS, self._too_many_records()
            usable = self._usable_brokers()
            if rf > len(usable):
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        f"Unable to replicate the partition {rf} time(s): The target replication factor of "
                        f"{rf} cannot be reached because only {len(usable)} broker(s) are registered.")
            placed = place_replicas(usable, partitions=count, replication_factor=rf, rng=self._rng)
        if len(w.records) + 1 + len(configs) + len(placed) > self.config.records_per_write_max:
            return ErrorCode.INVALID_PARTITIONS, self._too_many_records()
        topic_id = self._new_topic_id(w)
        w.add(TopicRecord(t.name, topic_id))
        for key, value in sorted(configs.items()):
            w.add(ConfigRecord(RESOURCE_TOPIC, t.name, key, self._policy.normalise(key, value)))
        for pid, replicas in enumerate(placed):
            isr = tuple(b for b in replicas if w.delta.is_active(b))
            w.add(PartitionRecord(topic_id=topic_id, partition_id=pid, replicas=replicas, isr=isr, leader=isr[0]))
        keys_in_request[collision_key(t.name)] = t.name
        result.topic_id = topic_id if version >= 7 else result.topic_id
        if version >= 5:
            result.num_partitions = len(placed)
            result.replication_factor = len(placed[0])
            result.configs = self._policy.describe(configs)
        return ErrorCode.NONE, None

    def _assignment_error(self, broker_ids: Sequence[int], previous: tuple[int, ...] | None) -> str | None:
        """Kafka's ``validateManualPartitionAssignment``."""
        if not broker_ids:
            return "The manual partition assignment includes an empty replica list."
        for b in broker_ids:
            if self._latest.broker(b) is None:
                return f"The manual partition assignment includes broker {b}, but no such broker is registered."
        if len(set(broker_ids)) != len(broker_ids):
            return "The manual partition assignment includes a broker more than once."
        if previous is not None and len(previous) != len(broker_ids):
            return (f"The manual partition assignment includes a partition with {len(broker_ids)} replica(s), "
                    f"but this is not consistent with previous partitions, which have {len(previous)} replica(s).")
        return None

    def handle_delete_topics(self, req: DeleteTopicsRequest, *,
                             version: int) -> ControllerResult[DeleteTopicsResponse]:
        wanted: list[tuple[str | None, uuid.UUID | None]]
        if version >= 6:
            wanted = [(t.name, t.topic_id if t.topic_id.int else None) for t in req.topics]
        else:
            wanted = [(name, None) for name in req.topic_names]
        results: list[DeleteTopicsResponse.DeletableTopicResult] = []
        w = self._write()
        seen: set[object] = set()
        deleted: set[uuid.UUID] = set()
        for name, topic_id in wanted:
            r = DeleteTopicsResponse.DeletableTopicResult(name=name)
            if topic_id is not None:
                r.topic_id = topic_id
            results.append(r)
            if not self._active:
                r.error_code = ErrorCode.NOT_CONTROLLER
                continue
            if (name is None) == (topic_id is None):
                r.error_code = ErrorCode.INVALID_REQUEST
                r.error_message = ("You may not specify both topic name and topic id." if name is not None
                                   else "Neither topic name nor id were specified.")
                continue
            key = name if name is not None else topic_id
            if key in seen:
                r.error_code, r.error_message = ErrorCode.INVALID_REQUEST, "Duplicate topic in the request."
                continue
            seen.add(key)
            found = self._latest.topic(name) if name is not None else (
                self._latest.topic_by_id(topic_id) if topic_id is not None else None)
            if found is None:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if name is not None else ErrorCode.UNKNOWN_TOPIC_ID
                continue
            r.name = found.name
            if version >= 6:
                r.topic_id = found.topic_id
            if not self.config.delete_topic_enable:
                r.error_code = ErrorCode.TOPIC_DELETION_DISABLED if version >= 3 else ErrorCode.INVALID_REQUEST
                continue
            if found.topic_id in deleted:  # named once by name and once by id
                r.error_code, r.error_message = ErrorCode.INVALID_REQUEST, "Duplicate topic in the request."
                continue
            deleted.add(found.topic_id)
            w.add(RemoveTopicRecord(found.topic_id))
        if not self._active:
            return self._answer(DeleteTopicsResponse(responses=results))
        return self._finish(w, DeleteTopicsResponse(responses=results))

    def handle_create_partitions(self, req: CreatePartitionsRequest) -> ControllerResult[CreatePartitionsResponse]:
        w = self._write()
        names = [t.name for t in req.topics]
        results = []
        for t in req.topics:
            r = CreatePartitionsResponse.CreatePartitionsTopicResult(name=t.name, error_message=None)
            results.append(r)
            if not self._active:
                r.error_code = ErrorCode.NOT_CONTROLLER
            elif names.count(t.name) > 1:
                r.error_code, r.error_message = ErrorCode.INVALID_REQUEST, "Duplicate topic name."
            else:
                r.error_code, r.error_message = self._create_partitions(w, t)
        if not self._active:
            return self._answer(CreatePartitionsResponse(results=results))
        if req.validate_only:
            w = self._write()
        return self._finish(w, CreatePartitionsResponse(results=results))

    def _create_partitions(self, w: _Write, t: CreatePartitionsRequest.CreatePartitionsTopic) -> tuple[int, str | None]:
        topic = self._latest.topic(t.name)
        if topic is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None
        have = topic.partition_count
        if t.count == have:
            return ErrorCode.INVALID_PARTITIONS, f"Topic already has {have} partition(s)."
        if t.count < have:
            return (ErrorCode.INVALID_PARTITIONS,
                    f"The topic {t.name} currently has {have} partition(s); {t.count} would not be an increase.")
        additional = t.count - have
        if len(w.records) + additional > self.config.records_per_write_max:
            return ErrorCode.INVALID_PARTITIONS, self._too_many_records()
        rf = len(topic.partitions[0].replicas) if 0 in topic.partitions else 1
        if t.assignments is not None:
            if len(t.assignments) != additional:
                return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                        f"Attempted to add {additional} additional partition(s), but only "
                        f"{len(t.assignments)} assignment(s) were specified.")
            placed = []
            for i, a in enumerate(t.assignments):
                problem = self._assignment_error(a.broker_ids, (0,) * rf)
                if problem is not None:
                    return ErrorCode.INVALID_REPLICA_ASSIGNMENT, problem
                if not any(self._latest.is_active(b) for b in a.broker_ids):
                    return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"All brokers specified in the manual partition assignment for partition "
                            f"{have + i} are fenced or in controlled shutdown.")
                placed.append(tuple(a.broker_ids))
        else:
            usable = self._usable_brokers()
            if rf > len(usable):
                return (ErrorCode.INVALID_REPLICATION_FACTOR,
                        f"Unable to replicate the partition {rf} time(s): The target replication factor of "
                        f"{rf} cannot be reached because only {len(usable)} broker(s) are registered.")
            placed = place_replicas(usable, partitions=additional, replication_factor=rf,
                                    start_partition=have, rng=self._rng)
        for i, replicas in enumerate(placed):
            isr = tuple(b for b in replicas if w.delta.is_active(b))
            w.add(PartitionRecord(topic_id=topic.topic_id, partition_id=have + i, replicas=replicas,
                                  isr=isr, leader=isr[0]))
        return ErrorCode.NONE, None

    # --- elections and reassignments ---------------------------------------------------------------

    def imbalanced_leaders(self) -> ElectLeadersRequest | None:
        """``auto.leader.rebalance.enable``'s request: a preferred election of every partition
        whose preferred replica (the first in its list) is in the ISR and active but does not
        lead, as Kafka's controller finds them; None when every leader is where it should be."""
        image = self.latest_image
        wanted: dict[str, list[int]] = {}
        for view in image.partitions():
            reg = view.registration
            preferred = reg.preferred_leader
            if reg.leader != preferred and preferred in reg.isr and image.is_active(preferred):
                wanted.setdefault(view.topic_name, []).append(view.partition_id)
        if not wanted:
            return None
        return ElectLeadersRequest(election_type=ELECTION_PREFERRED, timeout_ms=0, topic_partitions=[
            ElectLeadersRequest.TopicPartitions(topic=t, partitions=ps) for t, ps in sorted(wanted.items())])

    def handle_elect_leaders(self, req: ElectLeadersRequest, *,
                             version: int) -> ControllerResult[ElectLeadersResponse]:
        if not self._active or req.election_type not in (ELECTION_PREFERRED, ELECTION_UNCLEAN):
            code = ErrorCode.NOT_CONTROLLER if not self._active else ErrorCode.INVALID_REQUEST
            if version == 0:  # no top-level error code: say it per partition
                return self._answer(ElectLeadersResponse(replica_election_results=[
                    ElectLeadersResponse.ReplicaElectionResult(topic=t.topic, partition_result=[
                        ElectLeadersResponse.PartitionResult(partition_id=p, error_code=code, error_message=None)
                        for p in t.partitions]) for t in req.topic_partitions or []]))
            return self._answer(ElectLeadersResponse(error_code=code))
        unclean = req.election_type == ELECTION_UNCLEAN
        w = self._write()
        results: list[ElectLeadersResponse.ReplicaElectionResult] = []
        if req.topic_partitions is None:
            for view in self._latest.partitions():
                if not results or results[-1].topic != view.topic_name:
                    results.append(ElectLeadersResponse.ReplicaElectionResult(topic=view.topic_name))
                code = self._elect_one(w, view.topic_name, view.partition_id, unclean)
                if code is not ErrorCode.ELECTION_NOT_NEEDED:
                    results[-1].partition_result.append(ElectLeadersResponse.PartitionResult(
                        partition_id=view.partition_id, error_code=code, error_message=None))
        else:
            for t in req.topic_partitions:
                out = ElectLeadersResponse.ReplicaElectionResult(topic=t.topic)
                results.append(out)
                for pid in t.partitions:
                    code = self._elect_one(w, t.topic, pid, unclean)
                    out.partition_result.append(ElectLeadersResponse.PartitionResult(
                        partition_id=pid, error_code=code, error_message=None))
        return self._finish(w, ElectLeadersResponse(replica_election_results=results))

    def _elect_one(self, w: _Write, topic_name: str, pid: int, unclean: bool) -> ErrorCode:
        topic_id = w.delta.topic_id(topic_name)
        part = None if topic_id is None else w.delta.partition(topic_id, pid)
        if topic_id is None or part is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if (not unclean and part.has_preferred_leader) or (unclean and part.has_leader):
            return ErrorCode.ELECTION_NOT_NEEDED
        change = self._change(w, topic_name, topic_id, pid, part, acceptable=w.delta.is_active,
                              election=Election.UNCLEAN if unclean else Election.PREFERRED)
        if change is None:
            return ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE if unclean else ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
        w.add(change)
        return ErrorCode.NONE

    def handle_alter_partition_reassignments(
            self, req: AlterPartitionReassignmentsRequest) -> ControllerResult[AlterPartitionReassignmentsResponse]:
        if not self._active:
            return self._answer(AlterPartitionReassignmentsResponse(error_code=ErrorCode.NOT_CONTROLLER,
                                                                    error_message=None))
        w = self._write()
        responses = []
        for t in req.topics:
            out = AlterPartitionReassignmentsResponse.ReassignableTopicResponse(name=t.name)
            responses.append(out)
            for p in t.partitions:
                code, message = self._reassign(w, t.name, p.partition_index, p.replicas)
                out.partitions.append(AlterPartitionReassignmentsResponse.ReassignablePartitionResponse(
                    partition_index=p.partition_index, error_code=code, error_message=message))
        return self._finish(w, AlterPartitionReassignmentsResponse(error_message=None, responses=responses))

    def _reassign(self, w: _Write, topic_name: str, pid: int,
                  target: list[int] | None) -> tuple[ErrorCode, str | None]:
        topic_id = w.delta.topic_id(topic_name)
        part = None if topic_id is None else w.delta.partition(topic_id, pid)
        if topic_id is None or part is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {topic_name}:{pid}."
        unclean = self._unclean_enabled(topic_name)
        election = Election.UNCLEAN if unclean else Election.ONLINE
        if target is None:
            # Cancel: drop the replicas being added, keep the ones being removed.
            if not part.is_reassigning:
                return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None
            replicas = [r for r in part.replicas if r not in part.adding_replicas]
            isr = [r for r in part.isr if r not in part.adding_replicas]
            if not isr:
                if not unclean:
                    return (ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                            f"Unable to revert partition assignment for {topic_name}:{pid} because it would "
                            f"require an unclean leader election.")
                isr = replicas[:1]
            change = self._change(w, topic_name, topic_id, pid, part, acceptable=w.delta.is_active,
                                  election=election, target_isr=isr, target_replicas=replicas,
                                  target_removing=(), target_adding=())
        else:
            problem = self._assignment_error(target, None)
            if problem is not None:
                return ErrorCode.INVALID_REPLICA_ASSIGNMENT, problem
            removing = sorted(set(part.replicas) - set(target))
            adding = sorted(set(target) - set(part.replicas))
            change = self._change(
                w, topic_name, topic_id, pid, part, acceptable=w.delta.is_active, election=Election.ONLINE,
                target_replicas=[*target, *removing], target_removing=removing, target_adding=adding)
        if change is not None:
            w.add(change)
        return ErrorCode.NONE, None

    def handle_list_partition_reassignments(
            self, req: ListPartitionReassignmentsRequest) -> ControllerResult[ListPartitionReassignmentsResponse]:
        """Reads the committed image (as Kafka does), so it answers at once."""
        if not self._active:
            return self._answer(ListPartitionReassignmentsResponse(error_code=ErrorCode.NOT_CONTROLLER,
                                                                   error_message=None), now=True)
        image = self._committed
        wanted: Iterable[tuple[str, Iterable[int] | None]]
        if req.topics is None:
            wanted = [(name, None) for name in sorted(image.topic_ids_by_name)]
        else:
            wanted = [(t.name, t.partition_indexes) for t in req.topics]
        topics = []
        for name, pids in wanted:
            topic = image.topic(name)
            if topic is None:
                continue
            ongoing = []
            for pid in sorted(topic.partitions) if pids is None else pids:
                p = topic.partitions.get(pid)
                if p is not None and p.is_reassigning:
                    ongoing.append(ListPartitionReassignmentsResponse.OngoingPartitionReassignment(
                        partition_index=pid, replicas=list(p.replicas), adding_replicas=list(p.adding_replicas),
                        removing_replicas=list(p.removing_replicas)))
            if ongoing:
                topics.append(ListPartitionReassignmentsResponse.OngoingTopicReassignment(name=name,
                                                                                           partitions=ongoing))
        return self._answer(ListPartitionReassignmentsResponse(error_message=None, topics=topics), now=True)

    # --- configs and producer ids ------------------------------------------------------------------

    def handle_incremental_alter_configs(
            self, req: IncrementalAlterConfigsRequest) -> ControllerResult[IncrementalAlterConfigsResponse]:
        w = self._write()
        keys = [(r.resource_type, r.resource_name) for r in req.resources]
        responses = []
        for res in req.resources:
            if not self._active:
                code, message = ErrorCode.NOT_CONTROLLER, None
            elif keys.count((res.resource_type, res.resource_name)) > 1:
                code, message = ErrorCode.INVALID_REQUEST, "Duplicate resource in the request."
            else:
                code, message = self._alter_configs(w, res, req.validate_only)
            responses.append(IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
                error_code=code, error_message=message, resource_type=res.resource_type,
                resource_name=res.resource_name))
        response = IncrementalAlterConfigsResponse(responses=responses)
        if not self._active:
            return self._answer(response)
        return self._finish(w, response)

    def _alter_configs(self, w: _Write, res: IncrementalAlterConfigsRequest.AlterConfigsResource,
                       validate_only: bool) -> tuple[ErrorCode, str | None]:
        if res.resource_type == RESOURCE_BROKER:
            return ErrorCode.INVALID_REQUEST, "broker configs are static here: set them in server.properties"
        if res.resource_type != RESOURCE_TOPIC:
            return ErrorCode.INVALID_REQUEST, f"resource type {res.resource_type} cannot be altered"
        topic_id = w.delta.topic_id(res.resource_name)
        if topic_id is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {res.resource_name} does not exist"
        old = dict(self._latest.topic_configs(res.resource_name))
        new: dict[str, str | None] = dict(old)
        names = [c.name for c in res.configs]
        if len(set(names)) != len(names):
            return ErrorCode.INVALID_REQUEST, "a config name appears more than once"
        for c in res.configs:
            if c.config_operation == OP_SET:
                new[c.name] = c.value
            elif c.config_operation == OP_DELETE:
                new.pop(c.name, None)
            elif c.config_operation in (OP_APPEND, OP_SUBTRACT):
                if not self._policy.is_list(c.name):
                    return ErrorCode.INVALID_REQUEST, f"{c.name} is not a list; APPEND and SUBTRACT need one"
                items = [v for v in (new.get(c.name) or "").split(",") if v]
                given = [v for v in (c.value or "").split(",") if v]
                if c.config_operation == OP_APPEND:
                    items += [v for v in given if v not in items]
                else:
                    items = [v for v in items if v not in given]
                new[c.name] = ",".join(items)
            else:
                return ErrorCode.INVALID_REQUEST, f"config operation {c.config_operation} is unknown"
        nulls = [k for k, v in new.items() if v is None]
        if nulls:
            return ErrorCode.INVALID_CONFIG, f"Null value not supported for topic configs: {nulls[0]}"
        configs = {k: v for k, v in new.items() if v is not None}
        problem = self._policy.check(configs)
        if problem is not None:
            return ErrorCode.INVALID_CONFIG, problem[1]
        if validate_only:
            return ErrorCode.NONE, None
        normalised = {k: self._policy.normalise(k, v) for k, v in configs.items()}
        for key in sorted(set(old) | set(normalised)):
            if old.get(key) != normalised.get(key):
                w.add(ConfigRecord(RESOURCE_TOPIC, res.resource_name, key, normalised.get(key)))
        if _unclean_in(normalised, self.config.unclean_leader_election_enable) and not \
                _unclean_in(old, self.config.unclean_leader_election_enable):
            # Unclean election just became allowed: leaderless partitions get a leader now.
            topic = self._latest.topic_by_id(topic_id)
            assert topic is not None
            for pid in sorted(topic.partitions):
                part = w.delta.partition(topic_id, pid)
                if part is not None and not part.has_leader:
                    change = self._change(w, res.resource_name, topic_id, pid, part,
                                          acceptable=w.delta.is_active, election=Election.UNCLEAN)
                    if change is not None:
                        w.add(change)
        if old.get(MIN_ISR_KEY) != normalised.get(MIN_ISR_KEY):
            self._reevaluate_elr(w, res.resource_name)
        return ErrorCode.NONE, None

    def handle_update_features(self, req: UpdateFeaturesRequest, *,
                               version: int) -> ControllerResult[UpdateFeaturesResponse]:
        """UpdateFeatures (kafka-features upgrade/downgrade), for ``eligible.leader.replicas.version``
        only, with Kafka's FeatureControlManager checks: a level this controller and every
        registered broker support (a broker that does not list the feature supports 0 only), a
        downgrade only with a downgrade type, all or nothing, the first problem as the top-level
        error. Turning ELR on writes the cluster-level min.insync.replicas (``become_active``);
        turning it off (``_disable_elr``) gives each partition back an ISR Kafka 3.9's rules can
        elect from."""
        def answer(code: ErrorCode, message: str | None = None) -> UpdateFeaturesResponse:
            results = [] if code is not ErrorCode.NONE else [
                UpdateFeaturesResponse.UpdatableFeatureResult(feature=u.feature, error_message=None)
                for u in req.feature_updates]
            return UpdateFeaturesResponse(error_code=code, error_message=message, results=results)

        if not self._active:
            return self._answer(answer(ErrorCode.NOT_CONTROLLER))
        names = [u.feature for u in req.feature_updates]
        if len(set(names)) != len(names):
            return self._answer(answer(ErrorCode.INVALID_REQUEST, "a feature appears more than once"))
        w = self._write()
        for u in req.feature_updates:
            upgrade = u.upgrade_type if version >= 1 else (SAFE_DOWNGRADE if u.allow_downgrade else UPGRADE)
            problem = self._feature_update_error(u.feature, u.max_version_level, upgrade)
            if problem is not None:
                return self._answer(answer(ErrorCode.INVALID_UPDATE_VERSION,
                                           f"Invalid update version {u.max_version_level} for feature "
                                           f"{u.feature}. {problem}"))
            if not req.validate_only and u.max_version_level != w.delta.feature_level(u.feature):
                w.add(FeatureLevelRecord(u.feature, u.max_version_level))
                if u.max_version_level >= 1:
                    self._sync_min_isr_default(w)
                else:
                    self._disable_elr(w)
        return self._finish(w, answer(ErrorCode.NONE))

    def _feature_update_error(self, name: str, level: int, upgrade: int) -> str | None:
        if upgrade not in (UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE):
            return "The controller does not support the given upgrade type."
        if name != ELR_VERSION_FEATURE:
            return f"This controller does not change {name}; it changes {ELR_VERSION_FEATURE} only."
        if level < 0:
            return "A feature version cannot be less than 0."
        if level > ELR_VERSION_LEVEL_MAX:
            return f"The controller supports levels 0-{ELR_VERSION_LEVEL_MAX} of it."
        for b in sorted(self._latest.brokers.values(), key=lambda b: b.broker_id):
            supported = next((f for f in b.features if f.name == name), None)
            lo, hi = (supported.min_supported_version, supported.max_supported_version) if supported else (0, 0)
            if not lo <= level <= hi:
                return f"Broker {b.broker_id} only supports versions {lo}-{hi}"
        current = self._latest.feature_level(name)
        if level < current and upgrade == UPGRADE:
            return "Can't downgrade the version of this feature without setting the upgrade type to either " \
                   "safe or unsafe downgrade."
        if level > current and upgrade != UPGRADE:
            return "Can't downgrade to a newer version."
        return None

    def _sync_min_isr_default(self, w: _Write) -> None:
        """With ELR on, the log's cluster-level min.insync.replicas is this controller's setting;
        writing a different one rebuilds every ELR against it."""
        wanted = str(self.config.min_insync_replicas)
        if w.delta.cluster_config(MIN_ISR_KEY) != wanted:
            w.add(ConfigRecord(RESOURCE_BROKER, CLUSTER_DEFAULT, MIN_ISR_KEY, wanted))
            self._reevaluate_elr(w, None)

    def _disable_elr(self, w: _Write) -> None:
        """ELR was just turned off: every partition drops its ELR fields, and one whose ISR is
        empty gets back the ISR Kafka 3.9 would have kept -- its ELR (each member holds everything
        committed), else its last known leader (the last ISR member) -- then elects as usual."""
        for view in self._latest.partitions():
            part = w.delta.partition(view.topic_id, view.partition_id)
            if part is None or (part.isr and not part.elr and not part.last_known_elr):
                continue
            isr = part.isr or part.elr or part.last_known_elr
            change = self._change(w, view.topic_name, view.topic_id, view.partition_id, part,
                                  acceptable=w.delta.is_active, target_isr=isr)
            if change is not None:
                w.add(change)

    def handle_allocate_producer_ids(
            self, req: AllocateProducerIdsRequest) -> ControllerResult[AllocateProducerIdsResponse]:
        if not self._active:
            return self._answer(AllocateProducerIdsResponse(error_code=ErrorCode.NOT_CONTROLLER))
        reg = self._latest.broker(req.broker_id)
        if reg is None or reg.epoch != req.broker_epoch:
            return self._answer(AllocateProducerIdsResponse(error_code=ErrorCode.STALE_BROKER_EPOCH))
        start = self._latest.next_producer_id
        block = self.config.producer_id_block_size
        w = self._write()
        w.add(ProducerIdsRecord(req.broker_id, req.broker_epoch, start + block))
        return self._finish(w, AllocateProducerIdsResponse(producer_id_start=start, producer_id_len=block))

    # --- shared rules ------------------------------------------------------------------------------

    def _fence(self, w: _Write, broker_id: int) -> None:
        """Out of every ISR and leadership, then fenced (Kafka's ``handleBrokerFenced``)."""
        self._remove_from_isrs(w, broker_id)
        reg = w.delta.broker(broker_id)
        assert reg is not None
        w.add(BrokerRegistrationChangeRecord(broker_id, reg.epoch, fenced=FENCE))

    def _remove_from_isrs(self, w: _Write, broker_id: int, *, also_elr: bool = False,
                          unclean_shutdown: bool = False) -> None:
        """Every partition with ``broker_id`` in its ISR: shrink the ISR, move leadership away
        (Kafka's generateLeaderAndIsrUpdates with a broker to remove).

        Without ELR the ISR is never written empty: a partition whose last ISR member leaves
        keeps it and goes leaderless (unless an unclean election finds another replica). With
        ELR the member leaving joins the ELR while the ISR is below the minimum, unless
        ``unclean_shutdown``: then it leaves every ELR it is in as well. ``also_elr`` visits the
        partitions with ``broker_id`` in the ELR too (an unregistration).
        """
        def acceptable(r: int) -> bool:
            return r != broker_id and w.delta.is_active(r)

        in_elr = also_elr or unclean_shutdown
        for view in self._latest.partitions():
            part = w.delta.partition(view.topic_id, view.partition_id)
            if part is None or (broker_id not in part.isr and not (in_elr and broker_id in part.elr)):
                continue
            change = self._change(w, view.topic_name, view.topic_id, view.partition_id, part, acceptable=acceptable,
                                  target_isr=[r for r in part.isr if r != broker_id],
                                  unclean_shutdown=(broker_id,) if unclean_shutdown else ())
            if change is not None:
                w.add(change)

    def _elect_leaderless(self, w: _Write) -> None:
        """A broker became available: every leaderless partition tries an election."""
        for view in self._latest.partitions():
            part = w.delta.partition(view.topic_id, view.partition_id)
            if part is None or part.has_leader:
                continue
            change = self._change(w, view.topic_name, view.topic_id, view.partition_id, part,
                                  acceptable=w.delta.is_active)
            if change is not None:
                w.add(change)

    def _reevaluate_elr(self, w: _Write, topic_name: str | None) -> None:
        """``min.insync.replicas`` changed for ``topic_name`` (None: the cluster default): every
        partition with an ELR is rebuilt against the new minimum (``_change`` reads it from the
        write). One whose ISR is now at or above it loses its ELR, since its high watermark may
        move on without those replicas; one still below keeps it, since its high watermark stays
        where it stood when they left. (Kafka 4.x clears every ELR of the topic, or of the
        cluster, with a ClearElrRecord instead.)"""
        for view in self._latest.partitions():
            if topic_name is not None and view.topic_name != topic_name:
                continue
            part = w.delta.partition(view.topic_id, view.partition_id)
            if part is None or not part.elr:
                continue
            change = self._change(w, view.topic_name, view.topic_id, view.partition_id, part,
                                  acceptable=w.delta.is_active)
            if change is not None:
                w.add(change)

    def _change(self, w: _Write, topic_name: str, topic_id: uuid.UUID, partition_id: int,
                part: PartitionRegistration, *, acceptable: Callable[[int], bool],
                election: Election | None = None, **targets: Any) -> PartitionChangeRecord | None:
        """``partition_change`` with this topic's rules: its unclean election setting (unless
        ``election`` is given), ELR per the feature level, and its minimum ISR, all as the write
        ``w`` leaves them."""
        if election is None:
            election = Election.UNCLEAN if self._unclean_enabled(topic_name) else Election.ONLINE
        return partition_change(
            part, topic_id=topic_id, partition_id=partition_id, acceptable=acceptable, election=election,
            elr=w.delta.feature_level(ELR_VERSION_FEATURE) >= 1,
            min_insync_replicas=self._min_insync_replicas(w, topic_name), **targets)

    def _min_insync_replicas(self, w: _Write, topic_name: str) -> int:
        """The topic's ``min.insync.replicas``: its override, else the cluster-level default in
        the log, else this controller's setting (capped by the replica count in
        ``partition_change``, as the leader caps it)."""
        value = w.delta.topic_config(topic_name, MIN_ISR_KEY)
        if value is None:
            value = w.delta.cluster_config(MIN_ISR_KEY)
        try:
            return int(value) if value is not None else self.config.min_insync_replicas
        except ValueError:
            return self.config.min_insync_replicas

    def _unclean_enabled(self, topic_name: str) -> bool:
        return _unclean_in(self._latest.topic_configs(topic_name), self.config.unclean_leader_election_enable)

    def _leads_any(self, broker_id: int) -> bool:
        return any(v.registration.leader == broker_id for v in self._latest.partitions())

    def _lowest_active_offset(self) -> int:
        offsets = [s.metadata_offset for b, s in self._sessions.items()
                   if self._latest.is_active(b) and s.shutdown_offset < 0]
        return min(offsets, default=1 << 63)

    def _has_live_session(self, broker_id: int, now_ms: int) -> bool:
        reg = self._latest.broker(broker_id)
        session = self._sessions.get(broker_id)
        return (reg is not None and not reg.fenced and session is not None
                and now_ms <= session.last_contact_ms + self.config.broker_session_timeout_ms)

    def _usable_brokers(self) -> list[UsableBroker]:
        return [UsableBroker(b.broker_id, b.rack) for b in self._latest.unfenced_brokers() if b.is_active]

    def _new_topic_id(self, w: _Write) -> uuid.UUID:
        while True:
            topic_id = uuid.UUID(int=self._rng.getrandbits(128), version=4)
            # Kafka also avoids ids whose text (URL-safe base64) starts with '-'.
            text = base64.urlsafe_b64encode(topic_id.bytes)
            if (topic_id not in _KAFKA_RESERVED_IDS and not text.startswith(b"-")
                    and not w.delta.has_topic(topic_id)):
                return topic_id

    def _too_many_records(self) -> str:
        return (f"this request would write more than {self.config.records_per_write_max} metadata records; "
                f"create fewer partitions at a time")

    # --- writes ------------------------------------------------------------------------------------

    def _write(self) -> _Write:
        return _Write(self._latest, self._next_write_offset)

    def _finish(self, w: _Write, response: R) -> ControllerResult[R]:
        """Apply ``w`` to the latest image and count its records as written."""
        if w.records:
            last = w.next_offset - 1
            self._latest = w.delta.apply(last)
            self._pending.append((last, self._latest))
            self._next_write_offset = w.next_offset
        return ControllerResult(tuple(w.records), response, self._next_write_offset - 1)

    def _answer(self, response: R, *, now: bool = False) -> ControllerResult[R]:
        """A response that writes nothing: after earlier writes commit, or at once."""
        if now or not self._active:
            return ControllerResult((), response, -1)
        return ControllerResult((), response, self._next_write_offset - 1)


def _unclean_in(configs: Mapping[str, str], default: bool) -> bool:
    value = configs.get("unclean.leader.election.enable")
    return default if value is None else value.strip().lower() == "true"


__all__ = [
    "ELR_VERSION_LEVEL_MAX",
    "METADATA_VERSION_LEVEL",
    "AnyTopicConfigs",
    "ControllerConfig",
    "ControllerResult",
    "Election",
    "QuorumController",
    "TopicConfigPolicy",
    "partition_change",
]
