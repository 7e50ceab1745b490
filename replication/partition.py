"""The replica of one partition on one broker, as leader or follower: a sans-IO state machine.

What it owns. A ``Partition`` wraps the broker's ``storage.PartitionLog`` of one topic-partition
and everything replication keeps beside it: the partition state the controller last gave it
(leader, leader epoch, partition epoch, replicas, ISR), and

* as leader: each follower's fetch progress, the high watermark rule, ISR change proposals
  (at most one in flight), and the acks=all produces waiting for the high watermark;
* as follower: what the next fetch asks for, and how a fetch answer changes the log (append,
  truncate on a diverging epoch, restart at the leader's log start).

It performs no I/O of its own beyond calling the log, never reads a clock and never draws a
random number: every call takes ``now_ms``. What the owner must do is returned as effects
(frozen dataclasses) collected in an outbox, drained with ``take_effects()``:
``AlterPartitionProposal`` (send an AlterPartition to the controller), ``ProduceCompleted``
(answer a waiting acks=all produce), ``HighWatermarkAdvanced`` (wake fetches waiting on the
partition) and ``LogTruncated`` (the log lost its tail: rebuild producer state). Kafka's wire
types stay at the edge: the fetch and AlterPartition exchanges use the plain dataclasses below,
and ``replication.replica_wire`` maps them to and from the generated ``FetchRequest``,
``FetchResponse``, ``AlterPartitionRequest`` and ``AlterPartitionResponse`` fields.

Bounds: at most ``pending_produces_max`` waiting produces (more are refused REQUEST_TIMED_OUT
before anything is written), at most one ISR change in flight; the outbox holds what the calls
since the last ``take_effects`` produced, so drain it after every call. Cost: a follower fetch
is O(replicas) plus the read; produces wait in offset order, so completing them looks only at
the front of the queue.

Single-threaded; one ``Partition`` per log. A metadata change is applied with
``become_leader``/``become_follower``; a state whose partition epoch (or leader epoch) is older
than the one already applied is ignored and the call returns False, as Kafka's makeLeader and
makeFollower skip it; so is a repeat of the state already applied (both return False).

Leader rules, and where each comes from
---------------------------------------

* Leader epoch start (KIP-101). On a new leader epoch the leader records in its epoch cache that
  the epoch starts at its log end offset, even before any record of the epoch exists, so that a
  follower holding records of a later-numbered but abandoned epoch still finds its truncation
  point. That offset is the *leader epoch start offset*.
* High watermark (Kafka's Partition.maybeIncrementLeaderHW, KIP-497, KIP-966). The candidate is
  the smallest log end offset among the leader and every member of the *maximal ISR* (the
  committed ISR plus a replica whose expansion is in flight), and every other follower that is
  caught up and ISR-eligible (it is about to join: waiting for it keeps it from falling behind
  again). A follower whose position is unknown (none since this leader's election) counts as -1,
  so nothing advances until every ISR member has fetched. The HW moves only forward, only while
  the committed ISR has at least ``min(min.insync.replicas, replicas)`` members (KIP-966), and --
  stricter than Kafka, as Raft commits only entries of its own term -- only to an offset at or
  above the leader epoch start: a new leader's HW stays at its own, possibly stale, value until
  the ISR has everything it had when elected ("the high watermark may be behind", which Kafka
  reports to ListOffsets as OFFSET_NOT_AVAILABLE). With ``flush.messages=1`` the leader's own
  contribution is its durable offset, not its log end (Trafka's single-node rule: a consumer
  never reads what a crash of the leader could take back); call ``maybe_advance_high_watermark``
  after a flush.
* A leader the controller elected from the ELR (KIP-966: the ISR had emptied) is applied like
  any other: its ISR is just itself, so the HW stays where it was (every committed record is in
  its log: the HW stood still while the ISR was below the minimum) and acks=all is refused until
  followers holding its HW and leader epoch start bring the ISR back to the minimum. The ELR
  itself is the controller's; this module never sees it.
* Follower fetch (KIP-320, KIP-279, KIP-903). The request's current leader epoch, if given,
  must equal ours: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH; then a non-leader
  answers NOT_LEADER_OR_FOLLOWER with the leader it knows. A replica outside the assignment gets
  UNKNOWN_LEADER_EPOCH (NOT_LEADER_OR_FOLLOWER without an epoch). A fetch from an older
  incarnation of the follower's broker (its broker epoch below the one the owner registered via
  ``set_live_brokers``) is refused NOT_LEADER_OR_FOLLOWER. When the request carries the last
  fetched epoch, the leader looks up the end offset of that epoch in its own epoch cache: an
  unknown epoch or a fetch offset below the log start is OFFSET_OUT_OF_RANGE; a smaller epoch or
  an end offset below the fetch offset is a *diverging epoch* (epoch, end offset), returned with
  no records and without touching the follower's recorded position. Otherwise the records from
  the fetch offset up to the log end are returned as ``FileSlice`` s, and the follower's log end
  offset, log start offset, broker epoch and last caught-up time are recorded (Kafka's
  Replica.updateFetchStateOrThrow: caught up "now" when the fetch offset reaches the leader's log
  end at this fetch, "at the previous fetch" when it reaches the log end the previous fetch saw).
* ISR shrink (replica.lag.time.max.ms). On ``tick``, with no change in flight, every ISR
  follower that is not caught up -- its log end differs from the leader's and its last caught-up
  time is older than the lag time, or unknown -- is proposed for removal.
* ISR expand (Kafka's isFollowerInSync, KIP-903). With no change in flight, a follower outside
  the ISR that is ISR-eligible joins once its log end offset is at or above both the high
  watermark and the leader epoch start offset. The proposal carries every member's broker epoch
  (the one from its latest fetch; the owner's ``broker_epoch`` for the leader itself; -1 when
  unknown) so the controller can refuse a replica that has since restarted.
* AlterPartition (KIP-497). A proposal carries the partition epoch it was built on. While it is
  in flight the HW uses the maximal ISR (for a shrink that is the current ISR: the shrink may
  fail) and every min-ISR check uses the committed ISR. A success commits the returned ISR and
  partition epoch; OPERATION_NOT_ATTEMPTED and INELIGIBLE_REPLICA drop the proposal;
  FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID,
  INVALID_REQUEST and NEW_LEADER_ELECTED keep it pending, unsent, until new metadata replaces
  it; any other error, and an unanswered proposal, is sent again after
  ``alter_partition_retry_backoff_ms``.
* Produce (Kafka's appendRecordsToLeader and checkEnoughReplicasReachOffset). acks=-1 with a
  committed ISR smaller than the effective min ISR is refused NOT_ENOUGH_REPLICAS, writing
  nothing. An accepted acks=-1 produce waits for the HW to pass its last offset; it completes
  NONE, or NOT_ENOUGH_REPLICAS_AFTER_APPEND if the maximal ISR is then below the min ISR.
  Because KIP-966 stops the HW while the ISR is below the min ISR, a produce waiting when the
  committed ISR drops below it would otherwise only time out: it completes at once with
  NOT_ENOUGH_REPLICAS_AFTER_APPEND, the answer a producer got before KIP-966. It also completes
  REQUEST_TIMED_OUT at its deadline (checked by ``tick``), and NOT_LEADER_OR_FOLLOWER when
  leadership is lost.

Follower rules
--------------

* The next fetch asks from the log end offset, with the latest epoch of the epoch cache as the
  last fetched epoch (KIP-279) and the leader epoch of the metadata (KIP-320).
* A diverging epoch (KIP-279, the fetch-based form of KIP-101's OffsetForLeaderEpoch) truncates
  the log: to the follower's own end offset of that epoch and the leader's, whichever is lower,
  when the follower knows the epoch; else to the end of the follower's largest epoch below it,
  and the next fetch compares again. A cut at or past the log end still drops epoch-cache
  entries that start there (an epoch this replica began as leader and never wrote to), as
  Kafka's truncateTo does; kept, that epoch would be sent, and diverge, forever. The follower
  never truncates to its own high watermark (KIP-101's scenarios 1 and 2 are the data loss and
  divergence that rule caused).
* OFFSET_OUT_OF_RANGE: a log ending below the leader's log start restarts empty there; a log
  ending above the leader's log end is truncated to it. The leader's log end offset is not in
  Kafka's FetchResponse: Kafka's fetcher asks ListOffsets(LATEST), and so must the owner when
  ``handle_fetch_response`` answers ``FetchOutcome.NEED_LEADER_END_OFFSET``.
* Otherwise the records are appended as they are (``append_as_follower``) and the high
  watermark becomes min(leader's HW, own log end) -- but never lower than it was: everything
  below a follower's HW was committed, and a new leader's stale HW does not undo that (Kafka
  lets the follower's HW follow the leader's down; Trafka keeps it monotonic). The log start
  moves up to the leader's, within the high watermark.
* FENCED_LEADER_EPOCH stops fetching until new metadata arrives; other errors back off
  ``replica_fetch_backoff_ms``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from protocol.error_codes import ErrorCode
from replication.read_replica import FollowerState
from storage.log import AppendInfo, AppendRejected, FileSlice, PartitionLog

NO_LEADER = -1
NO_EPOCH = -1
UNKNOWN_OFFSET = -1
ACKS_ALL = -1

# AlterPartition errors after which the proposal stays pending, unsent, until metadata replaces
# it (Kafka's Partition.handleAlterPartitionError).
_WAIT_FOR_METADATA = frozenset({
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.INVALID_UPDATE_VERSION,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.UNKNOWN_TOPIC_ID,
    ErrorCode.INVALID_REQUEST,
    ErrorCode.NEW_LEADER_ELECTED,
})
# ...and after which it is dropped: the controller says it was not applied.
_DROP_PROPOSAL = frozenset({ErrorCode.OPERATION_NOT_ATTEMPTED, ErrorCode.INELIGIBLE_REPLICA})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    """The broker settings a replica uses (``broker.config`` names in the comments)."""

    replica_lag_time_max_ms: int = 30_000  # replica.lag.time.max.ms
    replica_fetch_backoff_ms: int = 1_000  # replica.fetch.backoff.ms
    replica_fetch_max_bytes: int = 1_048_576  # replica.fetch.max.bytes
    alter_partition_retry_backoff_ms: int = 1_000  # resend an unanswered AlterPartition
    pending_produces_max: int = 100_000  # acks=all produces waiting at once, per partition

    def __post_init__(self) -> None:
        for name in ("replica_lag_time_max_ms", "replica_fetch_backoff_ms", "alter_partition_retry_backoff_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.replica_fetch_max_bytes < 1 or self.pending_produces_max < 1:
            raise ValueError("replica_fetch_max_bytes and pending_produces_max must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderAndIsr:
    """A partition's state in the metadata: what ``become_leader``/``become_follower`` apply."""

    leader: int  # NO_LEADER when none
    leader_epoch: int
    partition_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


# --- the follower fetch exchange -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaFetch:
    """One partition of a follower's Fetch (``FetchRequest.FetchPartition`` plus the request's
    replica id and broker epoch; see ``replication.replica_wire``)."""

    replica_id: int
    replica_epoch: int  # the follower's broker epoch (KIP-903); -1 unknown
    fetch_offset: int
    last_fetched_epoch: int  # NO_EPOCH: none, no divergence check
    current_leader_epoch: int  # NO_EPOCH: not checked (KIP-320)
    log_start_offset: int
    max_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEndOffset:
    epoch: int
    end_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaFetchResponse:
    """The leader's answer to a ``ReplicaFetch``. Offsets are -1 when unknown. ``log_end_offset``
    is not part of Kafka's FetchResponse (see the module docstring)."""

    error: ErrorCode
    high_watermark: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    log_end_offset: int = UNKNOWN_OFFSET
    diverging_epoch: EpochEndOffset | None = None
    leader_id: int = NO_LEADER  # the current leader as this replica knows it
    leader_epoch: int = NO_EPOCH
    records: tuple[FileSlice, ...] = ()

    def fetched(self) -> FetchedPartition:
        """What the follower receives: the same fields with the records read into bytes."""
        return FetchedPartition(
            error=self.error,
            high_watermark=self.high_watermark,
            log_start_offset=self.log_start_offset,
            log_end_offset=self.log_end_offset,
            diverging_epoch=self.diverging_epoch,
            leader_id=self.leader_id,
            leader_epoch=self.leader_epoch,
            records=b"".join(s.read() for s in self.records),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedPartition:
    """A fetch answer as the follower gets it (``FetchResponse.PartitionData``)."""

    error: ErrorCode
    high_watermark: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    log_end_offset: int = UNKNOWN_OFFSET
    diverging_epoch: EpochEndOffset | None = None
    leader_id: int = NO_LEADER
    leader_epoch: int = NO_EPOCH
    records: bytes = b""


class FetchOutcome(enum.Enum):
    """What ``handle_fetch_response`` did, so the fetcher knows when to fetch next."""

    APPENDED = "appended"  # records (maybe none) appended, high watermark updated
    TRUNCATED = "truncated"  # log cut at the divergence point or the leader's end: fetch again
    RESET = "reset"  # log restarted empty at the leader's log start: fetch again
    IGNORED = "ignored"  # the answer to a fetch the replica no longer stands behind
    BACKOFF = "backoff"  # retriable error: the next fetch waits replica_fetch_backoff_ms
    FENCED = "fenced"  # our leader epoch is stale: no fetch until new metadata
    NEED_LEADER_END_OFFSET = "need_leader_end_offset"  # ask ListOffsets(LATEST), answer again


# --- AlterPartition ------------------------------------------------------------------------------


class IsrChange(enum.Enum):
    EXPAND = "expand"
    SHRINK = "shrink"


@dataclass(frozen=True, slots=True, kw_only=True)
class IsrMember:
    broker_id: int
    broker_epoch: int  # -1 unknown (KIP-903)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterPartitionProposal:
    """Effect: send this ISR change to the controller and pass its answer, with
    ``proposal_id``, to ``handle_alter_partition_result``."""

    proposal_id: int
    topic: str
    partition: int
    leader_id: int
    leader_epoch: int
    partition_epoch: int  # the epoch the proposal was built on
    new_isr: tuple[IsrMember, ...]
    change: IsrChange

    @property
    def isr(self) -> tuple[int, ...]:
        return tuple(m.broker_id for m in self.new_isr)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterPartitionResult:
    """The controller's answer to one partition of an AlterPartition."""

    error: ErrorCode
    leader_id: int = NO_LEADER
    leader_epoch: int = NO_EPOCH
    partition_epoch: int = NO_EPOCH
    isr: tuple[int, ...] = ()


# --- produce and the other effects ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    """What ``append`` did. ``produce_id >= 0``: an acks=all produce that waits; it is answered
    by a ``ProduceCompleted`` with that id. Otherwise ``error`` is the answer."""

    error: ErrorCode
    message: str | None = None
    info: AppendInfo | None = None
    produce_id: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceCompleted:
    produce_id: int
    error: ErrorCode


@dataclass(frozen=True, slots=True, kw_only=True)
class HighWatermarkAdvanced:
    high_watermark: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LogTruncated:
    """The follower's log lost its tail (or everything, ``full``); it now ends at ``end_offset``."""

    end_offset: int
    full: bool


Effect = AlterPartitionProposal | ProduceCompleted | HighWatermarkAdvanced | LogTruncated


class Role(enum.Enum):
    NONE = "none"  # no metadata applied yet, or stopped
    LEADER = "leader"
    FOLLOWER = "follower"


# --- internal state ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Progress:
    """The leader's view of one follower (Kafka's ReplicaState). None: never."""

    log_start_offset: int = UNKNOWN_OFFSET
    log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_time_ms: int | None = None
    last_caught_up_time_ms: int | None = None
    broker_epoch: int | None = None


@dataclass(slots=True)
class _PendingIsrChange:
    proposal: AlterPartitionProposal
    maximal_isr: frozenset[int]
    resend_at_ms: int | None  # None: wait for metadata


@dataclass(slots=True)
class _PendingProduce:
    produce_id: int
    required_offset: int  # last offset + 1
    deadline_ms: int


class Partition:
    """See the module docstring."""

    __slots__ = (
        "log",
        "broker_id",
        "broker_epoch",
        "config",
        "_role",
        "_leader_id",
        "_leader_epoch",
        "_partition_epoch",
        "_replicas",
        "_isr",
        "_min_isr",
        "_epoch_start_offset",
        "_progress",
        "_pending_isr",
        "_live_brokers",
        "_produces",
        "_next_produce_id",
        "_next_proposal_id",
        "_fetch_backoff_until_ms",
        "_fetch_fenced",
        "_effects",
    )

    def __init__(self, log: PartitionLog, *, broker_id: int, config: ReplicaConfig | None = None,
                 broker_epoch: int = -1) -> None:
        self.log = log
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch  # this broker's registration epoch, set by the owner
        self.config = config or ReplicaConfig()
        self._role = Role.NONE
        self._leader_id = NO_LEADER
        self._leader_epoch = NO_EPOCH
        self._partition_epoch = NO_EPOCH
        self._replicas: tuple[int, ...] = ()
        self._isr: frozenset[int] = frozenset()
        self._min_isr = 1
        self._epoch_start_offset = UNKNOWN_OFFSET
        self._progress: dict[int, _Progress] = {}
        self._pending_isr: _PendingIsrChange | None = None
        self._live_brokers: dict[int, int] | None = None
        self._produces: deque[_PendingProduce] = deque()  # in offset order
        self._next_produce_id = 0
        self._next_proposal_id = 0
        self._fetch_backoff_until_ms = 0
        self._fetch_fenced = False
        self._effects: list[Effect] = []

    # --- queries ----------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def leader_id(self) -> int:
        return self._leader_id

    @property
    def leader_epoch(self) -> int:
        return self._leader_epoch

    @property
    def partition_epoch(self) -> int:
        return self._partition_epoch

    @property
    def replicas(self) -> tuple[int, ...]:
        return self._replicas

    @property
    def isr(self) -> frozenset[int]:
        """The committed ISR (the last one the controller confirmed)."""
        return self._isr

    @property
    def maximal_isr(self) -> frozenset[int]:
        """The committed ISR plus a replica whose expansion is in flight (KIP-497)."""
        return self._pending_isr.maximal_isr if self._pending_isr is not None else self._isr

    @property
    def pending_isr_change(self) -> AlterPartitionProposal | None:
        return self._pending_isr.proposal if self._pending_isr is not None else None

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def leader_epoch_start_offset(self) -> int:
        """Where the current leader epoch began in this log (-1 unless leader)."""
        return self._epoch_start_offset

    @property
    def min_insync_replicas(self) -> int:
        """The effective min ISR: ``min.insync.replicas``, at most the replication factor."""
        return max(1, min(self._min_isr, len(self._replicas) or 1))

    @property
    def pending_produce_count(self) -> int:
        return len(self._produces)

    def follower_log_end_offset(self, replica_id: int) -> int:
        """The leader's record of a follower's log end offset (-1 unknown)."""
        p = self._progress.get(replica_id)
        return p.log_end_offset if p is not None else UNKNOWN_OFFSET

    def follower_states(self) -> tuple[FollowerState, ...]:
        """As leader, what it knows of each follower from their fetches, in replica order (for
        choosing a consumer's preferred read replica, ``replication.read_replica``); empty
        otherwise."""
        if self._role is not Role.LEADER:
            return ()
        return tuple(FollowerState(broker_id=r, in_sync=r in self._isr, log_start_offset=p.log_start_offset,
                                   log_end_offset=p.log_end_offset, last_caught_up_time_ms=p.last_caught_up_time_ms)
                     for r in self._replicas if (p := self._progress.get(r)) is not None)

    def take_effects(self) -> list[Effect]:
        """Every effect produced since the last call, oldest first."""
        out, self._effects = self._effects, []
        return out

    # --- metadata ---------------------------------------------------------------------------

    def become_leader(self, state: LeaderAndIsr, *, min_insync_replicas: int, now_ms: int) -> bool:
        """Apply a state that names this broker leader (Kafka's Partition.makeLeader)."""
        assert state.leader == self.broker_id, "become_leader with another broker as leader"
        was_leader = self._role is Role.LEADER
        if self._is_stale(state) or (was_leader and self._is_current(state)):
            # Stale, or what is already applied (a repeat must not cancel a proposal in flight).
            if was_leader and min_insync_replicas != self._min_isr and not self._is_stale(state):
                self.set_min_insync_replicas(min_insync_replicas, now_ms=now_ms)
            return False
        new_epoch = state.leader_epoch > self._leader_epoch or not was_leader
        self._min_isr = min_insync_replicas
        self._set_assignment(state)
        self._pending_isr = None  # metadata overrides whatever was in flight
        followers = [r for r in state.replicas if r != self.broker_id]
        self._progress = {r: self._progress.get(r, _Progress()) for r in followers} if was_leader else {
            r: _Progress() for r in followers}
        if new_epoch:
            start = self.log.log_end_offset
            self.log.epochs.assign(epoch=state.leader_epoch, start_offset=start)
            self._epoch_start_offset = start
            for r, p in self._progress.items():
                in_sync = r in self._isr
                p.last_caught_up_time_ms = now_ms if in_sync else None
                if was_leader:
                    # Re-elected: keep the follower's position (Kafka's resetReplicaState).
                    p.last_fetch_leader_log_end_offset = start
                    p.last_fetch_time_ms = now_ms if in_sync else None
        self._leader_epoch = state.leader_epoch
        self._role = Role.LEADER
        self._leader_id = self.broker_id
        self._fetch_fenced = False
        self._after_isr_change(now_ms)
        return True

    def become_follower(self, state: LeaderAndIsr, *, now_ms: int) -> bool:
        """Apply a state that names another broker (or none) leader (Kafka's makeFollower).

        Nothing is truncated here: the fetch's diverging epoch decides that (KIP-101/279)."""
        assert state.leader != self.broker_id, "become_follower with this broker as leader"
        if self._is_stale(state) or (self._role is Role.FOLLOWER and self._is_current(state)):
            return False
        if self._role is Role.LEADER:
            self._fail_produces(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        new_epoch = state.leader_epoch > self._leader_epoch or self._role is not Role.FOLLOWER
        self._set_assignment(state)
        self._pending_isr = None
        self._progress = {}
        self._epoch_start_offset = UNKNOWN_OFFSET
        self._leader_epoch = state.leader_epoch
        self._leader_id = state.leader
        self._role = Role.FOLLOWER
        if new_epoch:
            self._fetch_fenced = False
            self._fetch_backoff_until_ms = now_ms
        return True

    def stop(self) -> None:
        """Stop replicating (the partition moved away or was deleted)."""
        self._fail_produces(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        self._role = Role.NONE
        self._pending_isr = None
        self._progress = {}

    def set_min_insync_replicas(self, value: int, *, now_ms: int) -> None:
        """``min.insync.replicas`` changed (a dynamic topic config)."""
        self._min_isr = value
        self._after_isr_change(now_ms)

    def set_live_brokers(self, broker_epochs: Mapping[int, int] | None, *, now_ms: int) -> None:
        """The registered, unfenced brokers and their epochs, from the metadata (KIP-903).

        A replica missing here is not ISR-eligible; a fetch with an older broker epoch is
        refused. None (the default) makes every replica eligible and leaves the check to the
        controller, which validates the epochs of an AlterPartition anyway.
        """
        self._live_brokers = dict(broker_epochs) if broker_epochs is not None else None
        self.maybe_advance_high_watermark(now_ms)

    def _is_stale(self, state: LeaderAndIsr) -> bool:
        return state.partition_epoch < self._partition_epoch or state.leader_epoch < self._leader_epoch

    def _is_current(self, state: LeaderAndIsr) -> bool:
        return state.partition_epoch == self._partition_epoch and state.leader_epoch == self._leader_epoch

    def _set_assignment(self, state: LeaderAndIsr) -> None:
        self._replicas = tuple(state.replicas)
        self._isr = frozenset(state.isr)
        self._partition_epoch = state.partition_epoch

    # --- leader: produce ----------------------------------------------------------------------

    def append(self, records: bytes | bytearray | memoryview, *, acks: int, now_ms: int,
               timeout_ms: int) -> AppendResult:
        """Append a produce's records as leader; see the module docstring for acks=-1."""
        refused = self.refuse_append(acks=acks)
        if refused is not None:
            return refused
        result = self.log.append_as_leader(records, leader_epoch=self._leader_epoch, now_ms=now_ms)
        if isinstance(result, AppendRejected):
            return AppendResult(error=result.error, message=result.message)
        self.maybe_advance_high_watermark(now_ms)
        if acks != ACKS_ALL:
            return AppendResult(error=ErrorCode.NONE, info=result)
        required = result.last_offset + 1
        done = self._acks_all_outcome(required)
        if done is not None:
            return AppendResult(error=done, info=result)
        produce_id = self._next_produce_id
        self._next_produce_id += 1
        self._produces.append(_PendingProduce(produce_id, required, now_ms + max(timeout_ms, 0)))
        return AppendResult(error=ErrorCode.NONE, info=result, produce_id=produce_id)

    def refuse_append(self, *, acks: int) -> AppendResult | None:
        """The answer to a produce refused before its records are looked at (not the leader;
        for acks=all an ISR below the min ISR, or too many produces waiting), else None.

        The broker asks this before its idempotence checks too, as Kafka's
        ``Partition.appendRecordsToLeader`` checks the ISR before the log validates producer
        sequences: behind a batch refused NOT_ENOUGH_REPLICAS, the producer's next batches must
        be refused the same way, not OUT_OF_ORDER_SEQUENCE_NUMBER, on which librdkafka bumps
        its producer epoch and re-sends under a new producer id what an earlier batch
        (answered NOT_ENOUGH_REPLICAS_AFTER_APPEND, i.e. written) already holds: a duplicate."""
        if self._role is not Role.LEADER:
            return AppendResult(error=ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if acks != ACKS_ALL:
            return None
        min_isr = self.min_insync_replicas
        if len(self._isr) < min_isr:
            return AppendResult(error=ErrorCode.NOT_ENOUGH_REPLICAS,
                                message=f"the ISR has {len(self._isr)} replicas, min.insync.replicas is {min_isr}")
        if len(self._produces) >= self.config.pending_produces_max:
            return AppendResult(error=ErrorCode.REQUEST_TIMED_OUT,
                                message="too many acks=all produces are waiting on this partition")
        return None

    def _acks_all_outcome(self, required_offset: int) -> ErrorCode | None:
        """The answer for an acks=all produce ending below ``required_offset``, or None: wait."""
        min_isr = self.min_insync_replicas
        if self.log.high_watermark >= required_offset:
            return ErrorCode.NONE if len(self.maximal_isr) >= min_isr else ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        if len(self._isr) < min_isr:
            return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return None

    def _complete_produces(self, now_ms: int, *, expire: bool = False) -> None:
        """Answer the waiting produces that are done. They wait in offset order, so only the
        front is looked at, except for deadlines (``expire``, from ``tick``)."""
        waiting = self._produces
        while waiting:
            outcome = self._acks_all_outcome(waiting[0].required_offset)
            if outcome is None:
                break
            self._effects.append(ProduceCompleted(produce_id=waiting.popleft().produce_id, error=outcome))
        if expire and waiting and any(p.deadline_ms <= now_ms for p in waiting):
            for p in waiting:
                if p.deadline_ms <= now_ms:
                    self._effects.append(ProduceCompleted(produce_id=p.produce_id, error=ErrorCode.REQUEST_TIMED_OUT))
            self._produces = deque(p for p in waiting if p.deadline_ms > now_ms)

    def _fail_produces(self, error: ErrorCode) -> None:
        for p in self._produces:
            self._effects.append(ProduceCompleted(produce_id=p.produce_id, error=error))
        self._produces.clear()

    # --- leader: high watermark ---------------------------------------------------------------

    def maybe_advance_high_watermark(self, now_ms: int) -> bool:
        """Move the HW as far as the rules allow and answer the produces it completes."""
        advanced = self._advance_high_watermark(now_ms)
        self._complete_produces(now_ms)
        return advanced

    def _advance_high_watermark(self, now_ms: int) -> bool:
        if self._role is not Role.LEADER:
            return False
        if len(self._isr) < self.min_insync_replicas:
            return False  # KIP-966
        log = self.log
        leo = log.log_end_offset
        candidate = log.durable_offset if log.config.durable_appends else leo
        maximal = self.maximal_isr
        for r in maximal:
            if r != self.broker_id:
                p = self._progress.get(r)
                candidate = min(candidate, p.log_end_offset if p is not None else UNKNOWN_OFFSET)
        for r, p in self._progress.items():
            if r not in maximal and p.log_end_offset < candidate and self._caught_up(p, leo, now_ms) \
                    and self._isr_eligible(r, p):
                candidate = p.log_end_offset  # about to join: wait for it (Kafka's rule)
        if candidate < self._epoch_start_offset or candidate <= log.high_watermark:
            return False
        log.update_high_watermark(candidate)
        self._effects.append(HighWatermarkAdvanced(high_watermark=log.high_watermark))
        return True

    def _caught_up(self, p: _Progress, leader_end_offset: int, now_ms: int) -> bool:
        """Kafka's ReplicaState.isCaughtUp."""
        if p.log_end_offset == leader_end_offset:
            return True
        t = p.last_caught_up_time_ms
        return t is not None and now_ms - t <= self.config.replica_lag_time_max_ms

    def _isr_eligible(self, replica_id: int, p: _Progress) -> bool:
        """Kafka's isReplicaIsrEligible: registered, unfenced, and fetching with its current
        broker epoch (KIP-903). Without broker information, every assigned replica is."""
        if self._live_brokers is None:
            return True
        current = self._live_brokers.get(replica_id)
        if current is None or p.broker_epoch is None:
            return False
        return p.broker_epoch in (-1, current)

    # --- leader: follower fetches -------------------------------------------------------------

    def handle_replica_fetch(self, fetch: ReplicaFetch, *, now_ms: int) -> ReplicaFetchResponse:
        """Answer one partition of a follower's fetch (Kafka's Partition.fetchRecords)."""
        error = self._epoch_error(fetch.current_leader_epoch)
        if error == ErrorCode.NONE and self._role is not Role.LEADER:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        if error != ErrorCode.NONE:
            return self._error_response(error)
        p = self._progress.get(fetch.replica_id)
        if p is None:
            return self._error_response(ErrorCode.UNKNOWN_LEADER_EPOCH if fetch.current_leader_epoch != NO_EPOCH
                                        else ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if self._live_brokers is not None and fetch.replica_epoch != -1:
            current = self._live_brokers.get(fetch.replica_id)
            if current is not None and current > fetch.replica_epoch:
                return self._error_response(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        log = self.log
        start, leo = log.log_start_offset, log.log_end_offset
        if fetch.last_fetched_epoch != NO_EPOCH:
            epoch, end = log.end_offset_for_epoch(fetch.last_fetched_epoch)
            if epoch == NO_EPOCH or end == UNKNOWN_OFFSET or fetch.fetch_offset < start:
                return self._error_response(ErrorCode.OFFSET_OUT_OF_RANGE)
            if epoch < fetch.last_fetched_epoch or end < fetch.fetch_offset:
                return self._response(ErrorCode.NONE, diverging_epoch=EpochEndOffset(epoch=epoch, end_offset=end))
        result = log.read(fetch.fetch_offset, max_bytes=fetch.max_bytes, upper_bound_offset=None)
        if result.error != ErrorCode.NONE:
            return self._error_response(result.error)
        self._record_fetch(fetch.replica_id, p, fetch, leo, now_ms)
        self._maybe_expand_isr(fetch.replica_id, p, now_ms)
        self.maybe_advance_high_watermark(now_ms)
        return self._response(ErrorCode.NONE, records=result.slices)

    def _epoch_error(self, requested: int) -> ErrorCode:
        """KIP-320: the request's current leader epoch against ours (-1: not checked)."""
        if requested in (NO_EPOCH, self._leader_epoch):
            return ErrorCode.NONE
        return ErrorCode.FENCED_LEADER_EPOCH if requested < self._leader_epoch else ErrorCode.UNKNOWN_LEADER_EPOCH

    def _response(self, error: ErrorCode, *, diverging_epoch: EpochEndOffset | None = None,
                  records: tuple[FileSlice, ...] = ()) -> ReplicaFetchResponse:
        log = self.log
        return ReplicaFetchResponse(
            error=error,
            high_watermark=log.high_watermark,
            log_start_offset=log.log_start_offset,
            log_end_offset=log.log_end_offset,
            diverging_epoch=diverging_epoch,
            leader_id=self._leader_id,
            leader_epoch=self._leader_epoch,
            records=records,
        )

    def _error_response(self, error: ErrorCode) -> ReplicaFetchResponse:
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            return self._response(error)  # the follower needs the leader's offsets to recover
        return ReplicaFetchResponse(error=error, leader_id=self._leader_id, leader_epoch=self._leader_epoch)

    def _record_fetch(self, replica_id: int, p: _Progress, fetch: ReplicaFetch, leader_end_offset: int,
                      now_ms: int) -> None:
        """Kafka's Replica.updateFetchStateOrThrow (``leader_end_offset`` as before the read)."""
        offset = fetch.fetch_offset
        caught_up = p.last_caught_up_time_ms
        if offset >= leader_end_offset:
            caught_up = now_ms if caught_up is None else max(caught_up, now_ms)
        elif (p.last_fetch_time_ms is not None and p.last_fetch_leader_log_end_offset != UNKNOWN_OFFSET
              and offset >= p.last_fetch_leader_log_end_offset):
            caught_up = p.last_fetch_time_ms if caught_up is None else max(caught_up, p.last_fetch_time_ms)
        p.last_caught_up_time_ms = caught_up
        p.log_start_offset = fetch.log_start_offset
        p.log_end_offset = offset
        p.last_fetch_leader_log_end_offset = max(leader_end_offset, p.last_fetch_leader_log_end_offset)
        p.last_fetch_time_ms = now_ms
        p.broker_epoch = fetch.replica_epoch

    # --- leader: ISR changes ------------------------------------------------------------------

    def _maybe_expand_isr(self, replica_id: int, p: _Progress, now_ms: int) -> None:
        if self._pending_isr is not None or replica_id in self._isr or not self._isr_eligible(replica_id, p):
            return
        if p.log_end_offset >= self.log.high_watermark and p.log_end_offset >= self._epoch_start_offset:
            self._propose(self._isr | {replica_id}, IsrChange.EXPAND, now_ms)

    def out_of_sync_replicas(self, now_ms: int) -> frozenset[int]:
        """ISR followers that have not caught up within replica.lag.time.max.ms."""
        leo = self.log.log_end_offset
        out = set()
        for r in self._isr:
            if r == self.broker_id:
                continue
            p = self._progress.get(r)
            if p is None or not self._caught_up(p, leo, now_ms):
                out.add(r)
        return frozenset(out)

    def _propose(self, new_isr: frozenset[int], change: IsrChange, now_ms: int) -> None:
        members = []
        for b in sorted(new_isr):
            if b == self.broker_id:
                epoch = self.broker_epoch
            else:
                p = self._progress.get(b)
                epoch = p.broker_epoch if p is not None and p.broker_epoch is not None else -1
            members.append(IsrMember(broker_id=b, broker_epoch=epoch))
        proposal = AlterPartitionProposal(
            proposal_id=self._next_proposal_id,
            topic=self.log.topic,
            partition=self.log.partition,
            leader_id=self.broker_id,
            leader_epoch=self._leader_epoch,
            partition_epoch=self._partition_epoch,
            new_isr=tuple(members),
            change=change,
        )
        self._next_proposal_id += 1
        # An expansion is assumed to succeed (the HW waits for the new member too: safe either
        # way); a shrink is not, or a failed one would have let the HW run ahead (KIP-497).
        maximal = self._isr | new_isr if change is IsrChange.EXPAND else self._isr
        self._pending_isr = _PendingIsrChange(
            proposal, maximal, now_ms + self.config.alter_partition_retry_backoff_ms)
        self._effects.append(proposal)

    def handle_alter_partition_result(self, proposal_id: int, result: AlterPartitionResult, *,
                                      now_ms: int) -> None:
        """The controller's answer to the proposal ``proposal_id``; see the module docstring."""
        pending = self._pending_isr
        if self._role is not Role.LEADER or pending is None or pending.proposal.proposal_id != proposal_id:
            return  # answered after metadata replaced it: out of date
        error = result.error
        if error == ErrorCode.NONE:
            if result.leader_epoch != self._leader_epoch or result.partition_epoch < self._partition_epoch:
                pending.resend_at_ms = None
                return
            self._isr = frozenset(result.isr)
            self._partition_epoch = result.partition_epoch
            self._pending_isr = None
            self._after_isr_change(now_ms)
        elif error in _DROP_PROPOSAL:
            self._pending_isr = None
        elif error in _WAIT_FOR_METADATA:
            pending.resend_at_ms = None
        else:
            pending.resend_at_ms = now_ms + self.config.alter_partition_retry_backoff_ms

    def _after_isr_change(self, now_ms: int) -> None:
        self._advance_high_watermark(now_ms)
        self._complete_produces(now_ms)

    # --- time ---------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Periodic work: ISR shrink, unanswered AlterPartition resend, produce deadlines."""
        if self._role is not Role.LEADER:
            return
        pending = self._pending_isr
        if pending is None:
            out = self.out_of_sync_replicas(now_ms)
            if out:
                self._propose(self._isr - out, IsrChange.SHRINK, now_ms)
        elif pending.resend_at_ms is not None and now_ms >= pending.resend_at_ms:
            pending.resend_at_ms = now_ms + self.config.alter_partition_retry_backoff_ms
            self._effects.append(pending.proposal)
        # A caught-up replica that stopped fetching no longer holds the HW back once its lag
        # time has passed.
        self._advance_high_watermark(now_ms)
        self._complete_produces(now_ms, expire=True)

    # --- follower -----------------------------------------------------------------------------

    def next_fetch(self, *, now_ms: int) -> ReplicaFetch | None:
        """What to fetch from ``leader_id`` next, or None when there is nothing to fetch now."""
        if (self._role is not Role.FOLLOWER or self._leader_id == NO_LEADER or self._fetch_fenced
                or now_ms < self._fetch_backoff_until_ms):
            return None
        log = self.log
        latest = log.epochs.latest_epoch
        return ReplicaFetch(
            replica_id=self.broker_id,
            replica_epoch=self.broker_epoch,
            fetch_offset=log.log_end_offset,
            last_fetched_epoch=latest if latest is not None else NO_EPOCH,
            current_leader_epoch=self._leader_epoch,
            log_start_offset=log.log_start_offset,
            max_bytes=self.config.replica_fetch_max_bytes,
        )

    def handle_fetch_response(self, request: ReplicaFetch, response: FetchedPartition, *,
                              now_ms: int) -> FetchOutcome:
        """Apply the leader's answer to ``request``; see the module docstring."""
        log = self.log
        if (self._role is not Role.FOLLOWER or request.current_leader_epoch != self._leader_epoch
                or request.fetch_offset != log.log_end_offset):
            return FetchOutcome.IGNORED
        error = response.error
        if error == ErrorCode.NONE:
            if response.diverging_epoch is not None:
                self._truncate_to_divergence(response.diverging_epoch, now_ms)
                return FetchOutcome.TRUNCATED
            if response.records:
                appended = log.append_as_follower(response.records, now_ms=now_ms)
                if isinstance(appended, AppendRejected):
                    return self._backoff(now_ms)
            self._follow_high_watermark(response.high_watermark)
            if response.log_start_offset > log.log_start_offset:
                log.delete_records_before(min(response.log_start_offset, log.high_watermark), now_ms=now_ms)
            return FetchOutcome.APPENDED
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            return self._handle_out_of_range(response, now_ms)
        if error == ErrorCode.FENCED_LEADER_EPOCH:
            self._fetch_fenced = True
            return FetchOutcome.FENCED
        return self._backoff(now_ms)

    def _backoff(self, now_ms: int) -> FetchOutcome:
        self._fetch_backoff_until_ms = now_ms + self.config.replica_fetch_backoff_ms
        return FetchOutcome.BACKOFF

    def _truncate_to_divergence(self, diverging: EpochEndOffset, now_ms: int) -> None:
        """KIP-279 (Kafka's AbstractFetcherThread.getOffsetTruncationState)."""
        log = self.log
        epoch, end = log.end_offset_for_epoch(diverging.epoch)
        if epoch == NO_EPOCH:
            target = diverging.end_offset  # no epoch at or below: the leader's answer stands
        elif epoch != diverging.epoch:
            target = end  # we never had that epoch: cut to the end of ours below it, ask again
        else:
            target = min(end, diverging.end_offset)
        self._truncate(max(target, 0), now_ms)

    def _truncate(self, offset: int, now_ms: int) -> None:
        log = self.log
        if offset >= log.log_end_offset:
            # No record to cut, but the epoch cache may end with an epoch this replica started
            # as leader and never wrote to (Kafka's UnifiedLog.truncateTo drops it too): kept,
            # it would be the last fetched epoch again and diverge again, forever.
            log.epochs.truncate_from_end(log.log_end_offset)
            return
        log.truncate_to(offset, now_ms=now_ms)
        self._effects.append(LogTruncated(end_offset=log.log_end_offset, full=False))

    def _handle_out_of_range(self, response: FetchedPartition, now_ms: int) -> FetchOutcome:
        log = self.log
        leo = log.log_end_offset
        if response.log_start_offset > leo:
            log.truncate_fully_and_start_at(response.log_start_offset, now_ms=now_ms)
            self._effects.append(LogTruncated(end_offset=log.log_end_offset, full=True))
            return FetchOutcome.RESET
        if response.log_end_offset == UNKNOWN_OFFSET:
            return FetchOutcome.NEED_LEADER_END_OFFSET
        if response.log_end_offset < leo:
            self._truncate(response.log_end_offset, now_ms)
            return FetchOutcome.TRUNCATED
        return self._backoff(now_ms)

    def _follow_high_watermark(self, leader_high_watermark: int) -> None:
        log = self.log
        target = min(leader_high_watermark, log.log_end_offset)
        if target > log.high_watermark:
            log.update_high_watermark(target)
            self._effects.append(HighWatermarkAdvanced(high_watermark=log.high_watermark))
