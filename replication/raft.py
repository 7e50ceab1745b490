"""A KIP-595 Raft node for the controller quorum, sans-IO: Kafka's KRaft replication protocol.

What it owns. One node's part in the election and replication of the cluster metadata log
(``__cluster_metadata``, partition 0): its role and epoch, the quorum-state file
(``replication.quorum_state``), the metadata log itself (a ``storage.log.PartitionLog`` it
appends to, flushes and truncates), the log's snapshots (``replication.snapshot.SnapshotStore``,
in the log's directory: KIP-630), the high watermark (what is committed), the requests it has in
flight and, as leader, every replica's progress and the fetches it holds until there is data.
Behaviour follows Kafka's ``KafkaRaftClient``/``QuorumState`` (3.9, with 4.0's pre-vote, KIP-996).

What it never does: I/O other than through the log, the quorum-state store and the snapshot store
(all three go through ``storage.fs.FileSystem``), reading a clock, drawing randomness it was not given,
sleeping, or raising for what a peer sent. Time comes in as ``now_ms``; randomness (election
timeouts, backoff, which voter an observer asks) from an injected ``random.Random``-like source.

Interface. ``handle_request(now_ms, source, correlation_id, request)`` answers a Vote,
BeginQuorumEpoch, EndQuorumEpoch, Fetch, DescribeQuorum, FetchSnapshot, AddRaftVoter or
RemoveRaftVoter request (the generated classes of ``protocol.messages``) with a response, or with None when a Fetch is *parked*: the
leader holds a fetch that finds no new data until data arrives, the high watermark moves or the
fetch's wait ends, and then answers it as a ``SendResponse`` effect. ``handle_response(now_ms,
source, correlation_id, response)`` takes the answer to a request this node sent; answers that do
not match the one request in flight to that node are ignored, as Kafka's ``RequestManager`` does.
``poll(now_ms)`` runs the timers and returns the effects (``SendRequest``/``SendResponse``) to
carry out; call it after every ``handle_*`` and ``propose`` call and at ``next_deadline_ms()``.
``propose(now_ms, records)`` appends opaque records as one batch on the leader and returns the
offset of the last one (or a ``ProposeRejected``); ``read_committed``/``CommitCursor`` hand
committed batches, in order and once each, to the state machine that applies them.
``create_snapshot`` stores the state machine's snapshot at a committed batch end;
``CommitCursor.snapshot_needed`` tells a state machine when it must load one (``read_snapshot``)
instead of reading on: at its start, and after this node installed one from the leader.

Theory of operation.

* Roles (``RaftRole``): *unattached* (an epoch, maybe a vote, no leader), *prospective* (asking for
  pre-votes, same epoch, nothing persisted), *candidate* (epoch bumped, voted for itself),
  *leader*, *follower* (fetching from a known leader) and *resigned* (a leader that stepped
  down and tells the voters so with EndQuorumEpoch). A node that is not in the voter set (or
  whose directory id differs from the one the voter set records, KIP-853) is an *observer*: it
  follows the leader and never votes or campaigns.
* Durability first. Every change of epoch, vote or known leader is written to the quorum-state
  file (atomically, synced) before the node acts on it or answers, so a node never votes twice
  in an epoch or returns to an older epoch after a crash. Appends are flushed before a follower
  fetches again (its fetch offset is what the leader counts as replicated) and before the leader
  counts its own log end; a crash may lose only what nobody was told.
* Election. A voter that hears from no leader for ``election_timeout_ms`` (randomised up to
  twice that) or whose fetches fail for ``fetch_timeout_ms`` becomes *prospective* and asks the
  voters for pre-votes, which change nobody's state. A voter grants a pre-vote when the asker's
  log is at least as up to date as its own (last epoch, then end offset) and it is not following
  a leader it has fetched from; a follower of a live leader therefore refuses, so a partitioned
  node cannot disrupt a working quorum by bumping the epoch. With a majority of pre-votes the node
  becomes *candidate* (epoch + 1, its vote persisted) and asks for real votes, granted by a voter
  that has not voted in that epoch (or voted for this candidate), knows no leader for it, and
  whose log is not ahead. Rejected by a majority, a candidate backs off for a random,
  exponentially growing time (bounded by ``election_backoff_max_ms``) before trying again.
* Leading. A new leader persists itself, appends a LeaderChange control batch at the start of its
  epoch, and sends BeginQuorumEpoch to voters until each has fetched or answered. Followers fetch
  with (fetch offset, last fetched epoch); the leader checks them against its epoch cache and
  either answers with records or with a *diverging epoch* (the end of the largest epoch it has
  at or below the follower's), on which the follower truncates to the lower of that end and its
  own end for the epoch and fetches again. A fetch that matched tells the leader the follower's
  log equals its own below the fetch offset. The high watermark is the largest offset a majority
  of voters have reached, counted only once it passes the leader's epoch start (so an entry of an
  older epoch is committed only together with one of the current epoch) and never moved back.
* Staying honest. A leader that has not been fetched from by a majority within 1.5 x
  ``fetch_timeout_ms`` resigns (check quorum), so a partitioned leader stops accepting writes; it
  could not commit them anyway. A follower takes the leader's high watermark only up to the end of
  what that leader validated in the same response, and never truncates below its own high
  watermark (a response asking for that is ignored).
* Snapshots (KIP-630, Kafka's ``KafkaMetadataLog`` and ``KafkaRaftClient`` rules). A snapshot
  ``<end offset>-<epoch>`` holds the state below its end offset; the epoch is that of the last
  batch it covers. The state machine writes one at a committed batch end (``create_snapshot``:
  at or below the high watermark and matching the log's epochs, else ``ValueError``). Every
  ``clean_interval_ms``, and after a snapshot is written, the retention rules run (``clean``):
  while the log and the snapshots together exceed ``retention_bytes``, or the oldest snapshot's
  last record is older than ``retention_ms``, the log start moves to the next snapshot, the
  segments wholly below it and the older snapshots are deleted; the log start never passes the
  latest snapshot or the high watermark. The leader answers a fetch with the id of its latest
  snapshot instead of records when the follower's log is empty and a snapshot exists, or when
  (``_validate_offset_and_epoch``) the fetch offset is below the log start, at it with another
  epoch than the earliest snapshot's, or the follower's last epoch is older than that snapshot's.
  The follower then sends FetchSnapshot for that id (position = what it has, at most
  ``fetch_bytes_max`` per answer) into a ``.part`` file; once it has the size the leader
  announced it validates the snapshot (a bad one is deleted and fetched again from the start),
  truncates its log fully to start, empty, at the snapshot's end, and takes that end as its high
  watermark; its last fetched epoch is then the snapshot's (Kafka's rule for an empty log). The
  leader answers FetchSnapshot SNAPSHOT_NOT_FOUND for an id it does not have (cleaned away:
  the follower starts over with a fetch), POSITION_OUT_OF_RANGE, the epoch errors and
  NOT_LEADER_OR_FOLLOWER of any leader-only request, INCONSISTENT_CLUSTER_ID. One deviation:
  the log start does not pass a snapshot a replica asked a chunk of within ``fetch_timeout_ms``
  (Kafka deletes it at once; the simulator found that a follower slower to fetch a snapshot than
  the leader is to take the next one then never finishes). At a start, a log whose latest
  snapshot lies past its end (a crash between installing a snapshot and truncating) is truncated
  fully to it, snapshots below the log start are deleted, and the latest snapshot's end is the
  high watermark; a log that starts above zero with no snapshot covering it cannot be replayed
  and is refused (``SnapshotError``), as Kafka refuses it.
* Voter set (KIP-853, ``replication.voters``). The node uses the latest ``VotersRecord`` of its
  log, committed or not (Kafka's rule); a truncation that removes it brings back the previous
  one; a snapshot carries the one in force at its end; with none in the log, the static set
  given to the constructor. A leader records directory ids into it (``_maybe_bind``): once the
  high watermark of its epoch is known and the last voter set in the log is committed, it
  appends a set that binds one unbound voter, its own directory first (after a
  ``KRaftVersionRecord`` of 1), then a voter whose fetch with its directory id matched the log up
  to the high watermark within ``fetch_timeout_ms``. Safe because a binding changes no id (the
  majorities keep their sizes) and only narrows which directory counts, so every quorum of the
  new set is one of the old set; and the directory bound holds the committed log. Once a voter
  is bound, an empty disk (a new directory id) of it is refused as candidate and as voter
  (INCONSISTENT_VOTER_SET, INVALID_VOTER_KEY) and counted as an observer. Before its binding
  reaches a candidate's log, that candidate asks it with the zero directory id and the empty disk
  may grant (kraft.version 0's hole, docs/replication.md). AddRaftVoter/RemoveRaftVoter
  (``_on_voter_change_request``): Kafka's checks and error codes, one change at a time, each
  only once the previous one and a record of the leader's epoch are committed, the new set in
  force at once and the answer sent once it is committed; a leader that removed itself stops
  counting itself and resigns once that is committed.
* Requests: at most one in flight per destination; a request unanswered after
  ``request_timeout_ms`` is forgotten and the destination backs off ``retry_backoff_ms``. Every
  change of role forgets what is in flight, so a late answer to an older role is ignored.

Wire versions. The core builds messages for the versions in ``WIRE_VERSIONS`` (it fills fields such
as ``FetchRequest.replica_state`` that only exist there); it reads requests of any version.
KIP-996's pre-vote flag is a field of VoteRequest v2, which the schemas vendored here (Kafka 3.9)
do not have yet; until they do, a pre-vote is marked by a Trafka-private tagged field
(``PRE_VOTE_TAG``) on the partition, which Kafka's codecs keep and ignore.

Not built: UpdateRaftVoter, auto-join, the ApiVersions check of a new voter, the bootstrap
snapshot (``0-0.checkpoint``) and formatting without the static voter set, the append linger (each proposal is one batch, appended
at once). Snapshot files are written, read and deleted synchronously (Kafka deletes
asynchronously after ``file.delete.delay.ms``). Single-threaded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Protocol, TypeVar

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages.add_raft_voter import AddRaftVoterRequest, AddRaftVoterResponse
from protocol.messages.begin_quorum_epoch import BeginQuorumEpochRequest, BeginQuorumEpochResponse
from protocol.messages.describe_quorum import DescribeQuorumRequest, DescribeQuorumResponse
from protocol.messages.end_quorum_epoch import EndQuorumEpochRequest, EndQuorumEpochResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.fetch_snapshot import FetchSnapshotRequest, FetchSnapshotResponse
from protocol.messages.leader_change_message import LeaderChangeMessage
from protocol.messages.remove_raft_voter import RemoveRaftVoterRequest, RemoveRaftVoterResponse
from protocol.messages.vote import VoteRequest, VoteResponse
from protocol.primitives import ZERO_UUID
from protocol.records import (
    CONTROL_KEY,
    CONTROL_KEY_VERSION,
    BatchError,
    ControlRecordType,
    NewRecord,
    build_batch,
    iter_batches,
)
from replication.quorum_state import NO_NODE, ElectionState, QuorumStateStore
from replication.snapshot import (
    PartialSnapshot,
    SnapshotContents,
    SnapshotError,
    SnapshotId,
    SnapshotStore,
    encode_snapshot,
)
from replication.voters import (
    CONTROLLER_LISTENER,
    KRAFT_VERSION_1,
    Endpoint,
    Voter,
    VoterSet,
    VoterSetError,
    VoterSetHistory,
    read_control_records,
    voters_batch_records,
)
from storage.log import AppendRejected, PartitionLog

METADATA_TOPIC = "__cluster_metadata"
METADATA_PARTITION = 0
METADATA_TOPIC_ID = uuid.UUID(int=1)  # Kafka's Uuid.METADATA_TOPIC_ID
# Trafka-private tagged field marking a VoteRequest partition as a pre-vote (see the module
# docstring); replaced by VoteRequest v2's PreVote field once the schemas have it.
PRE_VOTE_TAG = 0x7A01
LEADER_CHANGE_VERSION = 0  # the LeaderChangeMessage version Kafka writes
ELECTION_BACKOFF_BASE_MS = 50  # the unit of the exponential backoff after a lost election
OBSERVERS_MAX = 1024  # observers the leader tracks (for DescribeQuorum); the oldest goes first

# The versions whose fields the core fills when it builds a request (the adapter sends these).
WIRE_VERSIONS: Mapping[int, int] = {
    VoteRequest.API_KEY: 1,
    BeginQuorumEpochRequest.API_KEY: 1,
    EndQuorumEpochRequest.API_KEY: 1,
    FetchRequest.API_KEY: 17,
    DescribeQuorumRequest.API_KEY: 2,
    FetchSnapshotRequest.API_KEY: 1,
}

MIB = 1024 * 1024
_NEVER = 1 << 62


class RandomSource(Protocol):
    """What the node draws on (``random.Random`` has it); injected, never global."""

    def randrange(self, start: int, stop: int | None = None, step: int = 1, /) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    """Timeouts and limits, named after Kafka's ``controller.quorum.*`` settings; defaults are Kafka's."""

    election_timeout_ms: int = 1000
    fetch_timeout_ms: int = 2000
    election_backoff_max_ms: int = 1000
    request_timeout_ms: int = 2000
    retry_backoff_ms: int = 20
    fetch_wait_ms_max: int = 500  # how long the leader holds a fetch that finds nothing new
    fetch_bytes_max: int = 8 * MIB  # per fetch response (at least one whole batch is sent), and per snapshot chunk
    propose_bytes_max: int = 8 * MIB  # record bytes of one proposal
    parked_fetches_max: int = 1024
    retention_bytes: int = 100 * MIB  # log plus snapshots kept before the log start moves (-1: no limit)
    retention_ms: int = 7 * 24 * 3_600_000  # age of the oldest snapshot before the log start moves (-1: none)
    clean_interval_ms: int = 60_000  # how often the retention rules run (Kafka's fixed interval)
    # Trafka's: the leader records each unrecorded voter's directory id in the log (see the
    # module docstring, "Voter set"); False only for tests that show what happens without it.
    bind_directory_ids: bool = True

    _KEYS: ClassVar[Mapping[str, str]] = {
        "controller.quorum.election.timeout.ms": "election_timeout_ms",
        "controller.quorum.fetch.timeout.ms": "fetch_timeout_ms",
        "controller.quorum.election.backoff.max.ms": "election_backoff_max_ms",
        "controller.quorum.request.timeout.ms": "request_timeout_ms",
        "controller.quorum.retry.backoff.ms": "retry_backoff_ms",
        "metadata.max.retention.bytes": "retention_bytes",
        "metadata.max.retention.ms": "retention_ms",
    }

    def __post_init__(self) -> None:
        for name in (
            "election_timeout_ms",
            "fetch_timeout_ms",
            "election_backoff_max_ms",
            "request_timeout_ms",
            "fetch_bytes_max",
            "propose_bytes_max",
            "parked_fetches_max",
            "clean_interval_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.retention_bytes < -1 or self.retention_ms < -1:
            raise ValueError("retention_bytes and retention_ms must be -1 (no limit) or more")
        if self.retry_backoff_ms < 0 or self.fetch_wait_ms_max < 0:
            raise ValueError("retry_backoff_ms and fetch_wait_ms_max must not be negative")

    @classmethod
    def from_properties(cls, values: Mapping[str, object]) -> RaftConfig:
        """From broker properties (``BrokerConfig.values``); keys not given keep the defaults."""
        kwargs: dict[str, int | bool] = {}
        for key, name in cls._KEYS.items():
            value = values.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                kwargs[name] = value
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def check_quorum_ms(self) -> int:
        return self.fetch_timeout_ms * 3 // 2

    @property
    def begin_quorum_epoch_retry_ms(self) -> int:
        return max(self.fetch_timeout_ms // 2, 1)


class RaftRole(Enum):
    UNATTACHED = "unattached"
    PROSPECTIVE = "prospective"
    CANDIDATE = "candidate"
    LEADER = "leader"
    FOLLOWER = "follower"
    RESIGNED = "resigned"


# --- effects and results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRequest:
    """Send ``request`` to node ``destination``; hand its answer to ``handle_response`` with
    the same ``correlation_id``."""

    destination: int
    correlation_id: int
    request: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResponse:
    """Answer request ``correlation_id`` of node ``destination`` (a parked fetch, completed)."""

    destination: int
    correlation_id: int
    response: Message


RaftEffect = SendRequest | SendResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeRejected:
    """Nothing was appended. NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH: not the leader (of
    that epoch); INVALID_REQUEST, RECORD_LIST_TOO_LARGE, ...: the records themselves."""

    error: ErrorCode
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedBatch:
    """One committed batch of the metadata log. ``records`` are the record values of a data
    batch, in offset order (empty for a control batch)."""

    base_offset: int
    last_offset: int
    epoch: int
    timestamp_ms: int
    is_control: bool
    records: tuple[bytes, ...]
    size_bytes: int = 0  # the whole batch as stored (what snapshot triggers count)


@dataclass(frozen=True, slots=True)
class LeaderAndEpoch:
    leader_id: int  # -1 when unknown
    epoch: int


# --- per-role state ---------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Unattached:
    role: ClassVar[RaftRole] = RaftRole.UNATTACHED
    epoch: int
    voted_id: int = NO_NODE
    voted_dir: uuid.UUID | None = None
    election_deadline_ms: int


@dataclass(slots=True, kw_only=True)
class _Prospective:
    role: ClassVar[RaftRole] = RaftRole.PROSPECTIVE
    epoch: int
    voted_id: int = NO_NODE
    voted_dir: uuid.UUID | None = None
    leader_id: int = NO_NODE  # the leader it followed in this epoch, if any
    granted: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    election_deadline_ms: int


@dataclass(slots=True, kw_only=True)
class _Candidate:
    role: ClassVar[RaftRole] = RaftRole.CANDIDATE
    epoch: int
    granted: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    election_deadline_ms: int
    backoff_until_ms: int = -1  # >= 0: lost; waiting before the next pre-vote round


@dataclass(slots=True, kw_only=True)
class _Progress:
    """What the leader knows of one replica."""

    directory_id: uuid.UUID | None
    end_offset: int = -1
    last_fetch_ms: int = -1
    last_caught_up_ms: int = -1
    acknowledged: bool = False  # it knows this leader (fetched in its epoch or answered Begin)


@dataclass(slots=True, kw_only=True)
class _Parked:
    correlation_id: int
    partition: FetchRequest.FetchPartition
    max_bytes: int
    deadline_ms: int


@dataclass(slots=True, kw_only=True)
class _Leader:
    role: ClassVar[RaftRole] = RaftRole.LEADER
    epoch: int
    epoch_start_offset: int
    voters: dict[int, _Progress]  # the other voters
    observers: dict[int, _Progress] = field(default_factory=dict)
    granting: tuple[int, ...] = ()
    hw_known: bool = False  # the majority has passed the epoch start: the HW is this epoch's
    check_quorum_deadline_ms: int
    fetched_voters: set[int] = field(default_factory=set)
    parked: dict[int, _Parked] = field(default_factory=dict)
    voter_change: _VoterChange | None = None  # an AddRaftVoter/RemoveRaftVoter waiting for its commit


@dataclass(slots=True, kw_only=True)
class _VoterChange:
    """A voter change the leader appended at ``offset``, answered once that commits."""

    source: int
    correlation_id: int
    remove: bool
    offset: int
    deadline_ms: int


@dataclass(slots=True, kw_only=True)
class _SnapshotFetch:
    """A snapshot the leader named in a fetch response, arriving chunk by chunk."""

    snapshot_id: SnapshotId
    partial: PartialSnapshot


@dataclass(slots=True, kw_only=True)
class _Follower:
    role: ClassVar[RaftRole] = RaftRole.FOLLOWER
    epoch: int
    leader_id: int
    voted_id: int = NO_NODE
    voted_dir: uuid.UUID | None = None
    fetch_deadline_ms: int
    has_fetched: bool = False  # a fetch from this leader succeeded (KIP-996: refuse pre-votes)
    fetching: _SnapshotFetch | None = None  # FetchSnapshot instead of Fetch until it is installed
    leader_hw: int = -1  # the high watermark this leader reported last (-1: not yet, or unknown to it)


@dataclass(slots=True, kw_only=True)
class _Resigned:
    role: ClassVar[RaftRole] = RaftRole.RESIGNED
    epoch: int
    election_deadline_ms: int
    unacked: set[int] = field(default_factory=set)
    preferred: tuple[int, ...] = ()


_State = _Unattached | _Prospective | _Candidate | _Leader | _Follower | _Resigned


@dataclass(slots=True, kw_only=True)
class _InFlight:
    correlation_id: int
    kind: str  # "vote", "prevote", "begin", "end", "fetch", "fetch_any", "fetch_snapshot"
    epoch: int
    deadline_ms: int


_T = TypeVar("_T")
_P = TypeVar("_P")


def _only_partition(
    topics: Sequence[_T],
    name_of: Callable[[_T], str],
    partitions_of: Callable[[_T], Sequence[_P]],
    index_of: Callable[[_P], int],
    *,
    id_of: Callable[[_T], uuid.UUID] | None = None,
) -> _P | None:
    """The single metadata-log partition a quorum message must carry, or None."""
    if len(topics) != 1:
        return None
    topic = topics[0]
    if name_of(topic) != METADATA_TOPIC and (id_of is None or id_of(topic) != METADATA_TOPIC_ID):
        return None
    parts = partitions_of(topic)
    if len(parts) != 1 or index_of(parts[0]) != METADATA_PARTITION:
        return None
    return parts[0]


def is_pre_vote(partition: VoteRequest.PartitionData) -> bool:
    """Whether a VoteRequest partition asks for a pre-vote (KIP-996)."""
    return any(tag == PRE_VOTE_TAG and data[:1] == b"\x01" for tag, data in partition.unknown_tagged_fields or ())


def _dir_or_none(value: uuid.UUID) -> uuid.UUID | None:
    return None if value == ZERO_UUID else value


class RaftNode:
    """One voter (or observer) of the metadata quorum. See the module docstring."""

    def __init__(
        self,
        *,
        node_id: int,
        directory_id: uuid.UUID,
        voters: Mapping[int, uuid.UUID | None],
        cluster_id: str | None,
        log: PartitionLog,
        store: QuorumStateStore,
        rng: RandomSource,
        now_ms: int,
        config: RaftConfig | None = None,
        endpoints: Mapping[int, tuple[str, int]] | None = None,
    ) -> None:
        """Recover from ``store`` and ``log`` (already opened and recovered by the caller).

        ``voters`` is the static voter set (``controller.quorum.voters``): each voter's node id
        and directory id (None: not recorded, so any directory is taken as that voter, Kafka's
        kraft.version 0); ``endpoints`` their (host, port), written into the VotersRecords this
        node writes as leader. The latest voter set the log (or its snapshot) records replaces
        it. ``directory_id`` is this node's log directory id (meta.properties' ``directory.id``):
        a node whose disk was lost and formatted anew has a new one and is then an observer once
        its directory is recorded, never a voter that forgot its votes and its log.
        """
        if not voters:
            raise ValueError("the voter set must not be empty")
        self.node_id = node_id
        self.directory_id = directory_id
        self.cluster_id = cluster_id
        self.log = log
        self.store = store
        self.rng = rng
        self.config = config or RaftConfig()
        self._history = VoterSetHistory(VoterSet.from_directories(voters, endpoints))
        self._voter_set = self._history.static
        self._voters: dict[int, uuid.UUID | None] = dict(voters)
        self._majority = len(self._voters) // 2 + 1
        self._hw = 0
        self._next_correlation_id = 0
        self._inflight: dict[int, _InFlight] = {}
        self._backoff_until: dict[int, int] = {}
        self._out: list[RaftEffect] = []
        self._retries = 0  # elections lost in a row (exponential backoff)
        self.snapshots = SnapshotStore(log.fs, log.dir)
        self.snapshots_fetched = 0  # snapshots installed from a leader since this node started
        # As leader: the snapshot each replica is fetching and when it last asked for a chunk.
        self._snapshot_readers: dict[int, tuple[SnapshotId, int]] = {}
        self._next_clean_ms = now_ms + self.config.clean_interval_ms
        self._recover_snapshots(now_ms)
        self._load_voter_history()
        self._state: _State = self._recover(now_ms)

    def _recover_snapshots(self, now_ms: int) -> None:
        """Kafka's ``KafkaMetadataLog`` start: a log behind its latest snapshot (a crash between
        installing a fetched snapshot and truncating) is truncated fully to start there; snapshots
        below the log start are deleted; the latest snapshot's end is committed."""
        store, log = self.snapshots, self.log
        latest = store.latest
        if latest is not None:
            log_epoch = log.epochs.latest_epoch or 0
            if latest.epoch > log_epoch or (latest.epoch == log_epoch and latest.end_offset > log.log_end_offset):
                log.truncate_fully_and_start_at(latest.end_offset, now_ms=now_ms)
                store.delete_before(latest)
        for old in store.ids:
            if old.end_offset < log.log_start_offset:
                store.delete(old)
        latest = store.latest
        if log.log_start_offset > 0 and (latest is None or latest.end_offset < log.log_start_offset):
            raise SnapshotError(
                f"the metadata log in {log.dir} starts at {log.log_start_offset} but no valid snapshot "
                f"covers the records below it (latest: {latest}); the log cannot be replayed"
            )
        if latest is not None:
            self._hw = log.update_high_watermark(latest.end_offset)

    def _load_voter_history(self) -> None:
        """The voter sets of the latest snapshot and of the log after it (Kafka's
        ``KRaftControlRecordStateMachine`` at a start)."""
        latest = self.snapshots.latest
        start = self.log.log_start_offset
        if latest is not None:
            contents = self.snapshots.read(latest)
            self._history.reset(latest.end_offset, contents.voters, contents.kraft_version)
            start = max(start, latest.end_offset)
        while start < self.log.log_end_offset:
            res = self.log.read(start, max_bytes=MIB)
            if res.error:
                break
            data = res.read_bytes()
            if not data:
                break
            start = self._scan_appended(data, from_offset=start)
        self._refresh_voters()

    def _scan_appended(self, data: bytes | memoryview, *, from_offset: int = 0) -> int:
        """Record the voter sets and kraft.version of the control batches in ``data`` (just
        appended, or read at a start); the offset after the last whole batch."""
        end = from_offset
        for batch in iter_batches(data):
            end = batch.next_offset
            if batch.next_offset <= from_offset or not batch.is_control:
                continue
            try:
                found = read_control_records(batch)
            except VoterSetError:
                continue  # not a voter set we can use; the log keeps it as it is
            for f in found:
                if f.offset >= from_offset:
                    self._history.add(f)
        return end

    def _refresh_voters(self, now_ms: int | None = None) -> None:
        """Use the latest voter set of the log (uncommitted too, as Kafka does); a leader moves
        replicas between its voters and observers to match."""
        vs = self._history.latest
        if vs is self._voter_set:
            return
        self._voter_set = vs
        self._voters = vs.directories
        self._majority = len(self._voters) // 2 + 1
        s = getattr(self, "_state", None)
        if isinstance(s, _Leader):
            for node in list(s.voters):
                if node not in self._voters or node == self.node_id:
                    s.observers[node] = s.voters.pop(node)
                    s.fetched_voters.discard(node)
            for node, directory in self._voters.items():
                if node == self.node_id:
                    continue
                progress = s.voters.get(node)
                if progress is None:
                    progress = s.observers.pop(node, None) or _Progress(directory_id=directory)
                    s.voters[node] = progress
                if directory is not None and progress.directory_id not in (None, directory):
                    progress.end_offset = -1  # another directory: nothing of it counts
                progress.directory_id = directory if directory is not None else progress.directory_id
            s.observers.pop(self.node_id, None)

    def _recover(self, now_ms: int) -> _State:
        saved = self.store.read()
        log_epoch = self.last_fetched_epoch
        voter = self.is_voter
        deadline = now_ms + self._election_timeout_ms()
        if saved is None or log_epoch > saved.epoch:
            # A fresh node (or a lost quorum-state with the log kept): start in the log's epoch.
            epoch = log_epoch if saved is None else max(log_epoch, saved.epoch)
            self.store.write(ElectionState(epoch=epoch))
            return _Unattached(epoch=epoch, election_deadline_ms=deadline)
        epoch = saved.epoch
        voted_dir = saved.voted_directory_id
        if saved.leader_id == self.node_id:
            if voter:
                return _Resigned(epoch=epoch, election_deadline_ms=deadline, unacked=self._other_voters())
            return _Unattached(epoch=epoch, election_deadline_ms=deadline)
        if saved.leader_id != NO_NODE:
            return _Follower(
                epoch=epoch,
                leader_id=saved.leader_id,
                voted_id=saved.voted_id,
                voted_dir=voted_dir,
                fetch_deadline_ms=now_ms + self.config.fetch_timeout_ms,
            )
        if saved.voted_id != NO_NODE and voter:
            return _Unattached(epoch=epoch, voted_id=saved.voted_id, voted_dir=voted_dir, election_deadline_ms=deadline)
        return _Unattached(epoch=epoch, election_deadline_ms=deadline)

    # --- what the outside may read -----------------------------------------------------------------

    @property
    def role(self) -> RaftRole:
        return self._state.role

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def leader_id(self) -> int:
        """The leader of the current epoch as far as this node knows, -1 when unknown."""
        return self._known_leader()

    @property
    def leader_and_epoch(self) -> LeaderAndEpoch:
        return LeaderAndEpoch(self._known_leader(), self._state.epoch)

    @property
    def voted_id(self) -> int:
        s = self._state
        if isinstance(s, _Unattached | _Prospective | _Follower):
            return s.voted_id
        if isinstance(s, _Candidate | _Leader):
            return self.node_id
        return NO_NODE

    @property
    def high_watermark(self) -> int:
        """Every offset below it is committed; never goes back while this node runs."""
        return self._hw

    @property
    def leader_high_watermark(self) -> int:
        """The high watermark as the current leader reported it in its last answer to a fetch
        that this node appended (the leader: its own); -1 while no leader is known, since a
        snapshot was installed, or while the leader does not know it yet. A state machine that
        has applied everything below it is caught up with the quorum; one that has not may hold
        an image older than what is committed (Kafka's brokers wait for that before acting)."""
        s = self._state
        if isinstance(s, _Leader):
            return self._hw
        if isinstance(s, _Follower) and s.fetching is None:
            return s.leader_hw
        return -1

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def last_fetched_epoch(self) -> int:
        """The epoch of the last batch in the log; for a log that is empty since a snapshot
        (its start and end are the snapshot's end), the snapshot's epoch; else 0."""
        latest = self.log.epochs.latest_epoch
        if latest is not None:
            return latest
        snapshot = self.snapshots.latest
        if snapshot is not None and snapshot.end_offset == self.log.log_end_offset:
            return snapshot.epoch
        return 0

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def latest_snapshot_id(self) -> SnapshotId | None:
        return self.snapshots.latest

    @property
    def earliest_snapshot_id(self) -> SnapshotId | None:
        return self.snapshots.earliest

    @property
    def fetching_snapshot(self) -> SnapshotId | None:
        """The snapshot this follower is fetching from its leader, if any."""
        s = self._state
        return s.fetching.snapshot_id if isinstance(s, _Follower) and s.fetching is not None else None

    @property
    def voters(self) -> Mapping[int, uuid.UUID | None]:
        return dict(self._voters)

    @property
    def is_voter(self) -> bool:
        return self._is_voter_key(self.node_id, self.directory_id)

    @property
    def voter_set(self) -> VoterSet:
        """The voter set in use: the log's latest (maybe uncommitted), else the static one."""
        return self._voter_set

    @property
    def committed_voter_set(self) -> VoterSet:
        """The voter set of the committed log (the static one while the committed log records none)."""
        return self._history.at(self._hw)

    @property
    def voter_set_recorded(self) -> bool:
        """Whether the log (or its snapshot) records a voter set (else the static one is used)."""
        return self._history.latest_offset >= 0

    @property
    def kraft_version(self) -> int:
        """1 once the log records a KRaftVersionRecord of 1 (the voter set is in the log), else 0."""
        return self._history.kraft_version

    @property
    def is_leader(self) -> bool:
        return isinstance(self._state, _Leader)

    def __repr__(self) -> str:
        return (
            f"RaftNode(id={self.node_id}, {self.role.value}, epoch={self.epoch}, "
            f"leader={self._known_leader()}, leo={self.log_end_offset}, hw={self._hw})"
        )

    # --- proposals and committed data ------------------------------------------------------------

    def propose(self, now_ms: int, records: Sequence[bytes], *, epoch: int | None = None) -> int | ProposeRejected:
        """Append ``records`` as one batch if this node leads (in ``epoch``, when given).

        Returns the offset of the last record; it is committed once ``high_watermark`` passes it
        and then comes out of ``read_committed`` (on every node). A leader that loses its
        leadership before that may never commit it.
        """
        s = self._state
        if not isinstance(s, _Leader):
            return ProposeRejected(error=ErrorCode.NOT_LEADER_OR_FOLLOWER, message=f"node {self.node_id} is not the leader")
        if epoch is not None and epoch != s.epoch:
            return ProposeRejected(
                error=ErrorCode.FENCED_LEADER_EPOCH, message=f"epoch {epoch} is not the current epoch {s.epoch}"
            )
        if not records:
            return ProposeRejected(error=ErrorCode.INVALID_REQUEST, message="no records to append")
        size = sum(len(r) for r in records)
        if size > self.config.propose_bytes_max:
            return ProposeRejected(
                error=ErrorCode.RECORD_LIST_TOO_LARGE,
                message=f"{size} bytes exceed propose_bytes_max={self.config.propose_bytes_max}",
            )
        batch = build_batch([NewRecord(value=r, timestamp=now_ms) for r in records])
        info = self.log.append_as_leader(batch, leader_epoch=s.epoch, now_ms=now_ms)
        if isinstance(info, AppendRejected):
            return ProposeRejected(error=info.error, message=info.message)
        self.log.flush(now_ms=now_ms)
        self._maybe_advance_leader_hw(now_ms, s)
        self._complete_parked(now_ms, s)
        return info.last_offset

    def resign(self, now_ms: int) -> bool:
        """Step down gracefully (shutdown): stop leading and tell the voters with EndQuorumEpoch,
        naming the most caught-up first. False when this node is not the leader."""
        s = self._state
        if not isinstance(s, _Leader):
            return False
        self._to_resigned(now_ms, s)
        return True

    def read_committed(self, start_offset: int, *, max_bytes: int = MIB) -> list[CommittedBatch]:
        """Committed batches from the one holding ``start_offset``, about ``max_bytes`` of them
        (at least one when any is committed), in offset order. Empty when nothing from there is
        committed yet."""
        hw = self._hw
        if start_offset >= hw or start_offset < self.log.log_start_offset:
            return []
        res = self.log.read(start_offset, max_bytes=max_bytes, upper_bound_offset=hw)
        out: list[CommittedBatch] = []
        for v in iter_batches(res.read_bytes()):
            if v.next_offset <= start_offset:
                continue
            values: tuple[bytes, ...] = ()
            if not v.is_control:
                values = tuple(b"" if r.value is None else bytes(r.value) for r in v.records())
            out.append(
                CommittedBatch(
                    base_offset=v.base_offset,
                    last_offset=v.last_offset,
                    epoch=v.partition_leader_epoch,
                    timestamp_ms=v.max_timestamp,
                    is_control=v.is_control,
                    records=values,
                    size_bytes=v.size_bytes,
                )
            )
        return out

    # --- snapshots and log cleaning ------------------------------------------------------------

    def create_snapshot(
        self,
        now_ms: int,
        *,
        end_offset: int,
        epoch: int,
        last_contained_timestamp_ms: int,
        records: Sequence[bytes],
    ) -> SnapshotId | None:
        """Write the state machine's snapshot of everything below ``end_offset`` (committed;
        ``epoch`` is the epoch of the batch ending there, ``CommittedBatch.epoch``), durably, and
        run the retention rules. None when there is nothing new to keep: the offset is at or
        below the log start or the latest snapshot. ``ValueError`` when the id is not one of
        this log's committed batch ends (the caller's mistake)."""
        if end_offset < 1:
            raise ValueError(f"a snapshot must cover at least one record, not end at {end_offset}")
        latest = self.snapshots.latest
        if end_offset <= self.log.log_start_offset or (latest is not None and end_offset <= latest.end_offset):
            return None
        if end_offset > self._hw:
            raise ValueError(f"snapshot end {end_offset} is beyond the high watermark {self._hw}")
        problem = self._validate_offset_and_epoch(end_offset, epoch)
        if problem is not None:
            raise ValueError(f"snapshot id {end_offset}-{epoch} does not match the log: {problem}")
        snapshot_id = SnapshotId(end_offset, epoch)
        voters = self._history.at(end_offset) if self._history.recorded_at(end_offset) else None
        data = encode_snapshot(snapshot_id, records, last_contained_timestamp_ms=last_contained_timestamp_ms,
                               now_ms=now_ms, voters=voters, kraft_version=self._history.kraft_version_at(end_offset))
        self.snapshots.write(snapshot_id, data)
        self.clean(now_ms)
        return snapshot_id

    def read_snapshot(self, snapshot_id: SnapshotId) -> SnapshotContents:
        """A snapshot's records, for the state machine to load (``SnapshotError`` if its file went bad)."""
        return self.snapshots.read(snapshot_id)

    def clean(self, now_ms: int) -> bool:
        """Kafka's ``maybeClean``: while the log and snapshots together exceed ``retention_bytes``,
        or the oldest snapshot's last record is older than ``retention_ms``, move the log start
        to the next snapshot, deleting the segments wholly below it and the older snapshots. The
        log start never passes the latest snapshot or the high watermark, so one snapshot always
        remains. True when something was deleted."""
        cleaned = False
        cfg = self.config
        if cfg.retention_bytes >= 0:
            ids = self.snapshots.ids
            total = sum(self.snapshots.size_bytes(i) for i in ids)
            for older, newer in zip(ids, ids[1:], strict=False):
                if self.log.size_bytes + total <= cfg.retention_bytes:
                    break
                older_bytes = self.snapshots.size_bytes(older)
                if not self._delete_before_snapshot(now_ms, newer):
                    break
                total -= older_bytes
                cleaned = True
        if cfg.retention_ms >= 0:
            ids = self.snapshots.ids
            for older, newer in zip(ids, ids[1:], strict=False):
                if now_ms - self.snapshots.last_contained_timestamp_ms(older) <= cfg.retention_ms:
                    break
                if not self._delete_before_snapshot(now_ms, newer):
                    break
                cleaned = True
        self.log.remove_deleted_files(now_ms=now_ms)
        return cleaned

    def _pinned_snapshot(self, now_ms: int) -> SnapshotId | None:
        """The oldest snapshot a replica asked a chunk of within ``fetch_timeout_ms``: the log
        start does not pass it, so that a follower can finish fetching it and go on with the log
        from its end. (Kafka deletes it; the follower is told SNAPSHOT_NOT_FOUND and starts over,
        which never ends where snapshots come faster than a slow follower fetches one.)"""
        readers = self._snapshot_readers
        for replica, (_, at_ms) in list(readers.items()):
            if now_ms - at_ms > self.config.fetch_timeout_ms:
                del readers[replica]
        return min((sid for sid, _ in readers.values()), default=None)

    def _delete_before_snapshot(self, now_ms: int, snapshot_id: SnapshotId) -> bool:
        """Move the log start to ``snapshot_id`` (Kafka's ``deleteBeforeSnapshot``)."""
        latest = self.snapshots.latest
        offset = snapshot_id.end_offset
        pinned = self._pinned_snapshot(now_ms)
        if (
            latest is None
            or snapshot_id not in self.snapshots
            or not self.log.log_start_offset < offset <= latest.end_offset
            or offset > self._hw
            or (pinned is not None and pinned < snapshot_id)
        ):
            return False
        if self.log.delete_records_before(offset, now_ms=now_ms) != ErrorCode.NONE:
            return False
        self.snapshots.delete_before(snapshot_id)
        return True

    def _install_snapshot(self, now_ms: int, snapshot_id: SnapshotId) -> None:
        """A snapshot from the leader is complete: the log restarts, empty, at its end."""
        contents = self.snapshots.read(snapshot_id)
        self.log.truncate_fully_and_start_at(snapshot_id.end_offset, now_ms=now_ms)
        self.snapshots.delete_before(snapshot_id)
        self._history.reset(snapshot_id.end_offset, contents.voters, contents.kraft_version)
        self._refresh_voters()
        self._advance_hw(snapshot_id.end_offset)
        self.log.update_high_watermark(self._hw)
        self.snapshots_fetched += 1

    # --- requests ------------------------------------------------------------------------------------

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        """Answer a quorum request from node ``source``; None: a parked fetch (see the module
        docstring). Requests of other APIs are the caller's mistake (``TypeError``)."""
        if isinstance(request, FetchRequest):
            return self._on_fetch_request(now_ms, source, correlation_id, request)
        if isinstance(request, VoteRequest):
            return self._on_vote_request(now_ms, request)
        if isinstance(request, BeginQuorumEpochRequest):
            return self._on_begin_quorum_epoch_request(now_ms, request)
        if isinstance(request, EndQuorumEpochRequest):
            return self._on_end_quorum_epoch_request(now_ms, request)
        if isinstance(request, DescribeQuorumRequest):
            return self._on_describe_quorum_request(now_ms, request)
        if isinstance(request, FetchSnapshotRequest):
            return self._on_fetch_snapshot_request(now_ms, request)
        if isinstance(request, AddRaftVoterRequest | RemoveRaftVoterRequest):
            return self._on_voter_change_request(now_ms, source, correlation_id, request)
        raise TypeError(f"not a quorum request: {type(request).__name__}")

    def _cluster_ok(self, cluster_id: str | None) -> bool:
        return cluster_id is None or self.cluster_id is None or cluster_id == self.cluster_id

    def _validate_voter_only(self, remote: int, epoch: int, directory: uuid.UUID | None) -> ErrorCode:
        if epoch < self._state.epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if remote < 0:
            return ErrorCode.INVALID_REQUEST
        if not self.is_voter or not self._is_voter_key(remote, directory):
            return ErrorCode.INCONSISTENT_VOTER_SET
        return ErrorCode.NONE

    def _validate_leader_only(self, epoch: int) -> ErrorCode:
        if epoch < self._state.epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if epoch > self._state.epoch:
            return ErrorCode.UNKNOWN_LEADER_EPOCH
        if not isinstance(self._state, _Leader):
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return ErrorCode.NONE

    def _addressed_to_me(self, voter_id: int, voter_dir: uuid.UUID) -> bool:
        """KIP-853: a request meant for another voter key (an older incarnation's directory)."""
        if voter_id >= 0 and voter_id != self.node_id:
            return False
        return voter_dir == ZERO_UUID or voter_dir == self.directory_id

    # Vote ------------------------------------------------------------------------------------------

    def _on_vote_request(self, now_ms: int, req: VoteRequest) -> VoteResponse:
        if not self._cluster_ok(req.cluster_id):
            return VoteResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        p = _only_partition(
            req.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        if p is None:
            return VoteResponse(error_code=ErrorCode.INVALID_REQUEST)
        pre_vote = is_pre_vote(p)
        epoch = p.candidate_epoch
        illegal = p.last_offset_epoch > epoch if pre_vote else p.last_offset_epoch >= epoch
        if p.last_offset < 0 or p.last_offset_epoch < 0 or illegal:
            return self._vote_response(ErrorCode.INVALID_REQUEST, granted=False)
        candidate_dir = _dir_or_none(p.candidate_directory_id)
        error = self._validate_voter_only(p.candidate_id, epoch, candidate_dir)
        if error:
            return self._vote_response(error, granted=False)
        if epoch > self._state.epoch:
            self._to_unattached(now_ms, epoch)
        if not self._addressed_to_me(req.voter_id, p.voter_directory_id):
            return self._vote_response(ErrorCode.INVALID_VOTER_KEY, granted=False)
        up_to_date = (p.last_offset_epoch, p.last_offset) >= (self.last_fetched_epoch, self.log_end_offset)
        granted = self._can_grant(p.candidate_id, candidate_dir, up_to_date=up_to_date, pre_vote=pre_vote)
        s = self._state
        if granted and not pre_vote and isinstance(s, _Unattached | _Prospective) and s.voted_id == NO_NODE:
            # Persist the vote before anyone hears of it.
            self.store.write(
                ElectionState(epoch=s.epoch, voted_id=p.candidate_id, voted_directory_id=candidate_dir)
            )
            s.voted_id, s.voted_dir = p.candidate_id, candidate_dir
            if isinstance(s, _Unattached):
                s.election_deadline_ms = now_ms + self._election_timeout_ms()
        return self._vote_response(ErrorCode.NONE, granted=granted)

    def _can_grant(self, candidate: int, directory: uuid.UUID | None, *, up_to_date: bool, pre_vote: bool) -> bool:
        """Kafka's ``EpochState.canGrantVote`` per role (with KIP-996's pre-vote rules)."""
        s = self._state
        if isinstance(s, _Unattached | _Prospective):
            if pre_vote:
                return up_to_date
            if s.voted_id != NO_NODE:
                return s.voted_id == candidate and (s.voted_dir is None or directory in (None, s.voted_dir))
            if isinstance(s, _Prospective) and s.leader_id != NO_NODE:
                return False
            return up_to_date
        if isinstance(s, _Follower):
            return pre_vote and not s.has_fetched and up_to_date
        if isinstance(s, _Candidate):
            return pre_vote and up_to_date
        return False  # leader, resigned

    def _vote_response(self, error: ErrorCode, *, granted: bool) -> VoteResponse:
        part = VoteResponse.PartitionData(
            partition_index=METADATA_PARTITION,
            error_code=error,
            leader_id=self._known_leader(),
            leader_epoch=self._state.epoch,
            vote_granted=granted,
        )
        return VoteResponse(topics=[VoteResponse.TopicData(topic_name=METADATA_TOPIC, partitions=[part])])

    # BeginQuorumEpoch / EndQuorumEpoch ----------------------------------------------------------------

    def _on_begin_quorum_epoch_request(self, now_ms: int, req: BeginQuorumEpochRequest) -> BeginQuorumEpochResponse:
        if not self._cluster_ok(req.cluster_id):
            return BeginQuorumEpochResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        p = _only_partition(
            req.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        if p is None:
            return BeginQuorumEpochResponse(error_code=ErrorCode.INVALID_REQUEST)
        error = self._validate_voter_only(p.leader_id, p.leader_epoch, None)
        if error:
            return self._begin_response(error)
        self._maybe_transition(now_ms, p.leader_id, p.leader_epoch)
        if not self._addressed_to_me(req.voter_id, p.voter_directory_id):
            return self._begin_response(ErrorCode.INVALID_VOTER_KEY)
        return self._begin_response(ErrorCode.NONE)

    def _begin_response(self, error: ErrorCode) -> BeginQuorumEpochResponse:
        part = BeginQuorumEpochResponse.PartitionData(
            partition_index=METADATA_PARTITION, error_code=error, leader_id=self._known_leader(), leader_epoch=self.epoch
        )
        return BeginQuorumEpochResponse(
            topics=[BeginQuorumEpochResponse.TopicData(topic_name=METADATA_TOPIC, partitions=[part])]
        )

    def _on_end_quorum_epoch_request(self, now_ms: int, req: EndQuorumEpochRequest) -> EndQuorumEpochResponse:
        if not self._cluster_ok(req.cluster_id):
            return EndQuorumEpochResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        p = _only_partition(
            req.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        if p is None:
            return EndQuorumEpochResponse(error_code=ErrorCode.INVALID_REQUEST)
        error = self._validate_voter_only(p.leader_id, p.leader_epoch, None)
        if error:
            return self._end_response(error)
        self._maybe_transition(now_ms, p.leader_id, p.leader_epoch)
        s = self._state
        if isinstance(s, _Follower) and s.epoch == p.leader_epoch and s.leader_id == p.leader_id:
            # The leader is gone: stop refusing pre-votes and campaign soon, the most
            # caught-up voters (first in the list) soonest.
            preferred = [c.candidate_id for c in p.preferred_candidates] or list(p.preferred_successors)
            s.has_fetched = False
            s.fetch_deadline_ms = min(s.fetch_deadline_ms, now_ms + self._end_epoch_backoff_ms(preferred))
        return self._end_response(ErrorCode.NONE)

    def _end_epoch_backoff_ms(self, preferred: Sequence[int]) -> int:
        """Kafka's strict exponential backoff by position in the preferred successors."""
        cap = self.config.election_backoff_max_ms
        if self.node_id not in preferred:
            return cap
        position = list(preferred).index(self.node_id)
        if position == 0:
            return 0
        base = cap >> (len(preferred) - 1)
        return min(cap, base << (position - 1))

    def _end_response(self, error: ErrorCode) -> EndQuorumEpochResponse:
        part = EndQuorumEpochResponse.PartitionData(
            partition_index=METADATA_PARTITION, error_code=error, leader_id=self._known_leader(), leader_epoch=self.epoch
        )
        return EndQuorumEpochResponse(topics=[EndQuorumEpochResponse.TopicData(topic_name=METADATA_TOPIC, partitions=[part])])

    # Fetch (leader side) --------------------------------------------------------------------------------

    def _on_fetch_request(self, now_ms: int, source: int, correlation_id: int, req: FetchRequest) -> FetchResponse | None:
        if not self._cluster_ok(req.cluster_id):
            return FetchResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        p = _only_partition(
            req.topics,
            lambda t: t.topic,
            lambda t: t.partitions,
            lambda x: x.partition,
            id_of=lambda t: t.topic_id,
        )
        if p is None:
            return FetchResponse(error_code=ErrorCode.INVALID_REQUEST)
        replica_id = req.replica_state.replica_id if req.replica_state.replica_id >= 0 else req.replica_id
        if p.fetch_offset < 0 or p.last_fetched_epoch < 0 or p.last_fetched_epoch > p.current_leader_epoch:
            return self._fetch_response(ErrorCode.INVALID_REQUEST)
        error = self._validate_leader_only(p.current_leader_epoch)
        if error:
            return self._fetch_response(error)
        s = self._state
        assert isinstance(s, _Leader)
        diverging = self._accept_fetch(now_ms, s, replica_id, p)
        if isinstance(diverging, SnapshotId):
            return self._fetch_response(ErrorCode.NONE, snapshot_id=diverging, hw=self._leader_hw(s))
        if isinstance(diverging, ErrorCode):
            return self._fetch_response(diverging, hw=self._leader_hw(s))
        if diverging is not None:
            return self._fetch_response(ErrorCode.NONE, diverging=diverging, hw=self._leader_hw(s))
        max_bytes = min(req.max_bytes, p.partition_max_bytes or req.max_bytes, self.config.fetch_bytes_max)
        max_bytes = max(max_bytes, 1)
        wait_ms = min(req.max_wait_ms, self.config.fetch_wait_ms_max)
        if (
            p.fetch_offset >= self.log.log_end_offset
            and wait_ms > 0
            and (source in s.parked or len(s.parked) < self.config.parked_fetches_max)
        ):
            s.parked[source] = _Parked(
                correlation_id=correlation_id, partition=p, max_bytes=max_bytes, deadline_ms=now_ms + wait_ms
            )
            return None
        return self._fetch_records(s, p, max_bytes)

    def _heard_from_voter(self, now_ms: int, s: _Leader, replica_id: int, directory: uuid.UUID | None) -> _Progress | None:
        """A voter fetched (records or a snapshot): it knows this leader, and counts for check quorum."""
        if replica_id == self.node_id or not self._is_voter_key(replica_id, directory):
            return None
        progress = s.voters.get(replica_id)
        if progress is not None:
            progress.acknowledged = True
            s.fetched_voters.add(replica_id)
            if len(s.fetched_voters) + self._self_votes() >= self._majority:
                s.fetched_voters.clear()
                s.check_quorum_deadline_ms = now_ms + self.config.check_quorum_ms
        return progress

    def _accept_fetch(
        self, now_ms: int, s: _Leader, replica_id: int, p: FetchRequest.FetchPartition
    ) -> FetchResponse.EpochEndOffset | SnapshotId | ErrorCode | None:
        """Record what a fetch says of its sender; if its log differs from ours, the diverging
        epoch or the snapshot to fetch instead (``_validate_fetch``)."""
        directory = _dir_or_none(p.replica_directory_id)
        progress: _Progress | None = None
        if replica_id != self.node_id and self._is_voter_key(replica_id, directory):
            progress = self._heard_from_voter(now_ms, s, replica_id, directory)
        elif replica_id >= 0 and replica_id != self.node_id:
            progress = s.observers.pop(replica_id, None) or _Progress(directory_id=directory)
            s.observers[replica_id] = progress  # most recent last
            if len(s.observers) > OBSERVERS_MAX:
                del s.observers[next(iter(s.observers))]
        if progress is not None:
            progress.last_fetch_ms = now_ms
        diverging = self._validate_fetch(p.fetch_offset, p.last_fetched_epoch)
        if diverging is not None or progress is None:
            return diverging
        progress.directory_id = directory
        progress.end_offset = p.fetch_offset
        if p.fetch_offset >= self.log.log_end_offset:
            progress.last_caught_up_ms = now_ms
        if progress is s.voters.get(replica_id):
            self._maybe_advance_leader_hw(now_ms, s)
        return None

    def _validate_fetch(
        self, fetch_offset: int, last_epoch: int
    ) -> FetchResponse.EpochEndOffset | SnapshotId | ErrorCode | None:
        """How the leader answers a fetch at (``fetch_offset``, ``last_epoch``): None to send
        records; the latest snapshot's id for an empty follower when there is one (fetching it
        beats replaying the log, Kafka's rule) or for a log that ``_validate_offset_and_epoch``
        says needs one; else the diverging epoch."""
        latest = self.snapshots.latest
        if fetch_offset == 0 and latest is not None:
            return latest
        return self._validate_offset_and_epoch(fetch_offset, last_epoch)

    def _validate_offset_and_epoch(
        self, offset: int, epoch: int
    ) -> FetchResponse.EpochEndOffset | SnapshotId | ErrorCode | None:
        """Kafka's ``ReplicatedLog.validateOffsetAndEpoch``: None when this log holds ``epoch`` up
        to at least ``offset``. The latest snapshot when the log no longer holds what the
        follower needs: the offset is below the log start, or at it with another epoch than the
        snapshot there, or the epoch is older than the earliest snapshot's. Else where the
        largest epoch at or below ``epoch`` ends here (the diverging epoch)."""
        start = self.log.log_start_offset
        if start == 0 and offset == 0:
            return None
        earliest, latest = self.snapshots.earliest, self.snapshots.latest
        if earliest is not None and latest is not None and (
            offset < start or (offset == start and epoch != earliest.epoch) or epoch < earliest.epoch
        ):
            return latest
        if offset < start:
            return ErrorCode.OFFSET_OUT_OF_RANGE  # no snapshot below the log start: a damaged disk
        found_epoch, end = self._end_offset_for_epoch(epoch)
        if found_epoch == epoch and end >= offset:
            return None
        return FetchResponse.EpochEndOffset(epoch=found_epoch, end_offset=end)

    def _end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """Kafka's ``KafkaMetadataLog.endOffsetForEpoch``: ``(epoch, end offset)`` of the largest
        epoch at or below ``epoch``, from the epoch cache; the earliest snapshot when that answer
        is the log start (the epoch ended before the log starts); the log end and last fetched
        epoch when the cache knows nothing of it."""
        found_epoch, end = self.log.end_offset_for_epoch(epoch)
        earliest = self.snapshots.earliest
        if found_epoch >= 0 and end >= 0:
            if earliest is not None and end == earliest.end_offset and found_epoch == epoch:
                return earliest.epoch, earliest.end_offset
            return found_epoch, end
        return self.last_fetched_epoch, self.log.log_end_offset

    def _fetch_records(self, s: _Leader, p: FetchRequest.FetchPartition, max_bytes: int) -> FetchResponse:
        res = self.log.read(p.fetch_offset, max_bytes=max_bytes)
        if res.error:
            return self._fetch_response(res.error, hw=self._leader_hw(s))
        return self._fetch_response(ErrorCode.NONE, records=res.read_bytes(), hw=self._leader_hw(s))

    def _leader_hw(self, s: _Leader) -> int:
        return self._hw if s.hw_known else -1

    def _fetch_response(
        self,
        error: ErrorCode,
        *,
        records: bytes = b"",
        diverging: FetchResponse.EpochEndOffset | None = None,
        snapshot_id: SnapshotId | None = None,
        hw: int = -1,
    ) -> FetchResponse:
        part = FetchResponse.PartitionData(
            partition_index=METADATA_PARTITION,
            error_code=error,
            high_watermark=hw,
            log_start_offset=self.log.log_start_offset,
            current_leader=FetchResponse.LeaderIdAndEpoch(leader_id=self._known_leader(), leader_epoch=self.epoch),
            records=records,
        )
        if diverging is not None:
            part.diverging_epoch = diverging
        if snapshot_id is not None:
            part.snapshot_id = FetchResponse.SnapshotId(end_offset=snapshot_id.end_offset, epoch=snapshot_id.epoch)
        topic = FetchResponse.FetchableTopicResponse(topic=METADATA_TOPIC, topic_id=METADATA_TOPIC_ID, partitions=[part])
        return FetchResponse(responses=[topic])

    def _complete_parked(self, now_ms: int, s: _Leader, *, expired_only: bool = False) -> None:
        """Answer parked fetches: all of them (new data or a new HW), or those whose wait ended."""
        if not s.parked:
            return
        for source, parked in list(s.parked.items()):
            if expired_only and now_ms < parked.deadline_ms:
                continue
            del s.parked[source]
            response = self._fetch_records(s, parked.partition, parked.max_bytes)
            self._out.append(SendResponse(destination=source, correlation_id=parked.correlation_id, response=response))

    def _maybe_advance_leader_hw(self, now_ms: int, s: _Leader) -> None:
        ends = [p.end_offset for p in s.voters.values()]
        if self.is_voter:
            ends.append(self.log.log_end_offset)
        ends.sort(reverse=True)
        matched = ends[self._majority - 1]
        if matched <= s.epoch_start_offset:
            return  # nothing of this epoch is on a majority yet: older entries wait for it
        s.hw_known = True
        if matched > self._hw:
            self._hw = self.log.update_high_watermark(matched)
            self._complete_parked(now_ms, s)

    # DescribeQuorum / FetchSnapshot -------------------------------------------------------------------

    def _on_describe_quorum_request(self, now_ms: int, req: DescribeQuorumRequest) -> DescribeQuorumResponse:
        p = _only_partition(
            req.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        if p is None:
            return DescribeQuorumResponse(error_code=ErrorCode.INVALID_REQUEST, error_message="not the metadata log")
        s = self._state
        part = DescribeQuorumResponse.PartitionData(
            partition_index=METADATA_PARTITION,
            error_message=None,
            leader_id=self._known_leader(),
            leader_epoch=s.epoch,
            high_watermark=self._hw,
        )
        if not isinstance(s, _Leader):
            part.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
            part.error_message = f"node {self.node_id} is not the leader"
        else:

            def state(node: int, pr: _Progress) -> DescribeQuorumResponse.ReplicaState:
                return DescribeQuorumResponse.ReplicaState(
                    replica_id=node,
                    replica_directory_id=pr.directory_id or ZERO_UUID,
                    log_end_offset=pr.end_offset,
                    last_fetch_timestamp=pr.last_fetch_ms,
                    last_caught_up_timestamp=pr.last_caught_up_ms,
                )

            me = DescribeQuorumResponse.ReplicaState(
                replica_id=self.node_id,
                replica_directory_id=self.directory_id,
                log_end_offset=self.log.log_end_offset,
                last_fetch_timestamp=now_ms,
                last_caught_up_timestamp=now_ms,
            )
            voters = [state(n, pr) for n, pr in sorted(s.voters.items())]
            observers = [state(n, pr) for n, pr in sorted(s.observers.items())]
            if self.is_voter:
                voters.insert(0, me)
            else:
                observers.insert(0, me)  # a leader that removed itself, until that commits
            part.current_voters = voters
            part.observers = observers
        return DescribeQuorumResponse(
            error_message=None, topics=[DescribeQuorumResponse.TopicData(topic_name=METADATA_TOPIC, partitions=[part])]
        )

    def _on_fetch_snapshot_request(self, now_ms: int, req: FetchSnapshotRequest) -> FetchSnapshotResponse:
        """Kafka's ``handleFetchSnapshotRequest``: a chunk of a snapshot file from ``position``,
        at most ``max_bytes`` (and ``fetch_bytes_max``), not aligned to batches."""
        if not self._cluster_ok(req.cluster_id):
            return FetchSnapshotResponse(error_code=ErrorCode.INCONSISTENT_CLUSTER_ID)
        p = _only_partition(
            req.topics, lambda t: t.name, lambda t: t.partitions, lambda x: x.partition
        )
        if p is None:
            return FetchSnapshotResponse(error_code=ErrorCode.INVALID_REQUEST)
        error = self._validate_leader_only(p.current_leader_epoch)
        if error:
            return self._fetch_snapshot_response(error)
        snapshot_id = SnapshotId(p.snapshot_id.end_offset, p.snapshot_id.epoch)
        if snapshot_id not in self.snapshots:
            return self._fetch_snapshot_response(ErrorCode.SNAPSHOT_NOT_FOUND)
        size = self.snapshots.size_bytes(snapshot_id)
        if not 0 <= p.position < size:
            return self._fetch_snapshot_response(ErrorCode.POSITION_OUT_OF_RANGE)
        s = self._state
        assert isinstance(s, _Leader)
        self._heard_from_voter(now_ms, s, req.replica_id, _dir_or_none(p.replica_directory_id))
        if req.replica_id in self._snapshot_readers or len(self._snapshot_readers) < OBSERVERS_MAX:
            self._snapshot_readers[req.replica_id] = (snapshot_id, now_ms)
        max_bytes = max(1, min(req.max_bytes, self.config.fetch_bytes_max))
        chunk = self.snapshots.read_chunk(snapshot_id, p.position, max_bytes)
        response = self._fetch_snapshot_response(ErrorCode.NONE)
        part = response.topics[0].partitions[0]
        part.snapshot_id = FetchSnapshotResponse.SnapshotId(end_offset=snapshot_id.end_offset, epoch=snapshot_id.epoch)
        part.size = size
        part.position = p.position
        part.unaligned_records = chunk
        return response

    def _fetch_snapshot_response(self, error: ErrorCode) -> FetchSnapshotResponse:
        part = FetchSnapshotResponse.PartitionSnapshot(
            index=METADATA_PARTITION,
            error_code=error,
            snapshot_id=FetchSnapshotResponse.SnapshotId(end_offset=-1, epoch=-1),
            current_leader=FetchSnapshotResponse.LeaderIdAndEpoch(leader_id=self._known_leader(), leader_epoch=self.epoch),
        )
        return FetchSnapshotResponse(topics=[FetchSnapshotResponse.TopicSnapshot(name=METADATA_TOPIC, partitions=[part])])

    # AddRaftVoter / RemoveRaftVoter and the binding of directory ids (KIP-853) -----------------------

    def _voter_change_blocked(self, s: _Leader) -> str | None:
        """Why the leader may not change the voter set now (Kafka's checks, REQUEST_TIMED_OUT):
        a change in progress, no high watermark of this epoch yet (so changes of older leaders
        are fenced), or a voter set not committed yet. None: it may."""
        if s.voter_change is not None:
            return "waiting for the leader to finish the previous voter change"
        if not s.hw_known:
            return "waiting for the leader to establish the high watermark and fence previous voter changes"
        latest = self._history.latest_offset
        if latest >= self._hw:
            return f"waiting for the voters to commit the latest voter change at {latest} (high watermark {self._hw})"
        return None

    def _append_voters(self, now_ms: int, s: _Leader, voters: VoterSet) -> int:
        """Append a control batch recording ``voters`` (after a KRaftVersionRecord of 1 when the
        log records none yet); the new set is in force at once. Returns the batch's last offset."""
        first = self._history.kraft_version < KRAFT_VERSION_1
        records = voters_batch_records(voters, now_ms=now_ms, kraft_version=KRAFT_VERSION_1 if first else None)
        start = self.log.log_end_offset
        batch = build_batch(records, base_offset=start, partition_leader_epoch=s.epoch, is_control=True)
        result = self.log.append_as_follower(batch, now_ms=now_ms)
        assert not isinstance(result, AppendRejected), result
        self.log.flush(now_ms=now_ms)
        self._scan_appended(batch, from_offset=start)
        self._refresh_voters()
        self._maybe_advance_leader_hw(now_ms, s)
        self._complete_parked(now_ms, s)
        return start + len(records) - 1

    def _maybe_bind(self, now_ms: int, s: _Leader) -> None:
        """Record the directory id of one voter the voter set has none for: the leader's own,
        or that of a voter whose fetch (with that directory id) matched the log up to the high
        watermark within the fetch timeout. See the module docstring for why this is safe."""
        if not self.config.bind_directory_ids or self._voter_change_blocked(s) is not None:
            return
        unbound = sorted(n for n, d in self._voters.items() if d is None)
        for node in unbound:
            if node == self.node_id:
                directory: uuid.UUID | None = self.directory_id
            else:
                progress = s.voters.get(node)
                if (
                    progress is None
                    or progress.directory_id is None
                    or progress.end_offset < self._hw
                    or now_ms - progress.last_fetch_ms > self.config.fetch_timeout_ms
                ):
                    continue
                directory = progress.directory_id
            assert directory is not None
            self._append_voters(now_ms, s, self._voter_set.bind(node, directory))
            return

    def _on_voter_change_request(
        self, now_ms: int, source: int, correlation_id: int, req: AddRaftVoterRequest | RemoveRaftVoterRequest
    ) -> Message | None:
        """Kafka's ``AddVoterHandler``/``RemoveVoterHandler``: check, append the new voter set,
        and answer once it is committed (None now; a ``SendResponse`` then), REQUEST_TIMED_OUT
        when that takes longer than the request's timeout (AddRaftVoter's ``TimeoutMs``, else
        ``request_timeout_ms``)."""
        remove = isinstance(req, RemoveRaftVoterRequest)

        def answer(error: ErrorCode, message: str | None = None) -> Message:
            if remove:
                return RemoveRaftVoterResponse(error_code=error, error_message=message)
            return AddRaftVoterResponse(error_code=error, error_message=message)

        if not self._cluster_ok(req.cluster_id):
            return answer(ErrorCode.INCONSISTENT_CLUSTER_ID, f"this is cluster {self.cluster_id}")
        s = self._state
        if not isinstance(s, _Leader):
            return answer(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"node {self.node_id} is not the leader")
        blocked = self._voter_change_blocked(s)
        if blocked is not None:
            return answer(ErrorCode.REQUEST_TIMED_OUT, blocked)
        if self.kraft_version < KRAFT_VERSION_1:
            return answer(ErrorCode.UNSUPPORTED_VERSION,
                          "the log records no voter set yet (kraft.version 0): voters cannot change")
        directory = _dir_or_none(req.voter_directory_id)
        if isinstance(req, RemoveRaftVoterRequest):
            if not self._voter_set.has_exact(req.voter_id, directory) or len(self._voter_set) == 1:
                return answer(ErrorCode.VOTER_NOT_FOUND,
                              f"voter ({req.voter_id}, {req.voter_directory_id}) is not in the voter set "
                              f"{self._voters} or is its only voter")
            new = self._voter_set.remove(req.voter_id)
            timeout_ms = self.config.request_timeout_ms
        else:
            if req.voter_id in self._voters:
                return answer(ErrorCode.DUPLICATE_VOTER, f"voter id {req.voter_id} is already in the voter set {self._voters}")
            if req.voter_id < 0 or directory is None:
                return answer(ErrorCode.INVALID_REQUEST, "a new voter needs a node id and a directory id")
            if not req.listeners:
                return answer(ErrorCode.INVALID_REQUEST, "a new voter needs at least one listener")
            progress = s.observers.get(req.voter_id)
            if (
                progress is None
                or progress.directory_id != directory
                or progress.end_offset < self._hw
                or now_ms - progress.last_fetch_ms > self.config.fetch_timeout_ms
            ):
                return answer(ErrorCode.REQUEST_TIMED_OUT,
                              f"the new voter ({req.voter_id}, {req.voter_directory_id}) has not caught up to the "
                              f"high watermark {self._hw} (it must fetch as an observer first)")
            endpoints = tuple(Endpoint(x.name or CONTROLLER_LISTENER, x.host, x.port) for x in req.listeners)
            new = self._voter_set.add(Voter(req.voter_id, directory, endpoints))
            timeout_ms = req.timeout_ms if req.timeout_ms > 0 else self.config.request_timeout_ms
        offset = self._append_voters(now_ms, s, new)
        s.voter_change = _VoterChange(
            source=source, correlation_id=correlation_id, remove=remove, offset=offset, deadline_ms=now_ms + timeout_ms
        )
        return None

    def _answer_voter_change(self, change: _VoterChange, error: ErrorCode, message: str | None = None) -> None:
        response: Message
        if change.remove:
            response = RemoveRaftVoterResponse(error_code=error, error_message=message)
        else:
            response = AddRaftVoterResponse(error_code=error, error_message=message)
        self._out.append(SendResponse(destination=change.source, correlation_id=change.correlation_id, response=response))

    def _poll_voter_change(self, now_ms: int, s: _Leader) -> bool:
        """Answer a voter change that committed or timed out; resign once the committed voter set
        no longer holds this leader (it removed itself). True when it resigned."""
        change = s.voter_change
        if change is not None and change.offset < self._hw:
            s.voter_change = None
            self._answer_voter_change(change, ErrorCode.NONE)
        elif change is not None and now_ms >= change.deadline_ms:
            s.voter_change = None  # the change stays in the log; the next one waits for its commit
            self._answer_voter_change(change, ErrorCode.REQUEST_TIMED_OUT, "the new voter set did not commit in time")
        if not self.is_voter and self._history.latest_offset < self._hw:
            self._to_resigned(now_ms, s)
            return True
        return False

    # --- responses -------------------------------------------------------------------------------------

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        """Take the answer to the request in flight to ``source``; anything else is ignored."""
        sent = self._inflight.get(source)
        if sent is None or sent.correlation_id != correlation_id:
            return
        del self._inflight[source]
        if isinstance(response, FetchResponse) and sent.kind in ("fetch", "fetch_any"):
            self._on_fetch_response(now_ms, source, sent, response)
        elif isinstance(response, FetchSnapshotResponse) and sent.kind == "fetch_snapshot":
            self._on_fetch_snapshot_response(now_ms, source, sent, response)
        elif isinstance(response, VoteResponse) and sent.kind in ("vote", "prevote"):
            self._on_vote_response(now_ms, source, sent, response)
        elif isinstance(response, BeginQuorumEpochResponse) and sent.kind == "begin":
            self._on_begin_response(now_ms, source, sent, response)
        elif isinstance(response, EndQuorumEpochResponse) and sent.kind == "end":
            self._on_end_response(now_ms, source, sent, response)
        else:
            self._back_off(now_ms, source)

    def _back_off(self, now_ms: int, destination: int, delay_ms: int | None = None) -> None:
        self._backoff_until[destination] = now_ms + (self.config.retry_backoff_ms if delay_ms is None else delay_ms)

    def _handled(
        self, now_ms: int, source: int, error: int, leader_id: int, epoch: int, retry_ms: int | None = None
    ) -> bool:
        """True when a response needs no more handling: it moved us to a newer epoch or leader,
        or it was stale or an error (then ``source`` backs off, so a peer that keeps answering
        the same way is not asked again at once)."""
        before = self._state
        if self._handle_common(now_ms, error, leader_id, epoch) or error:
            if self._state is before:
                self._back_off(now_ms, source, retry_ms)
            return True
        return False

    def _handle_common(self, now_ms: int, error: int, leader_id: int, epoch: int) -> bool:
        """Kafka's ``maybeHandleCommonResponse``: learn a newer epoch or the leader of ours.
        True when the response says nothing more (it was stale, or it moved us)."""
        if epoch < self._state.epoch or error == ErrorCode.UNKNOWN_LEADER_EPOCH:
            return True
        if epoch > self._state.epoch or (
            leader_id >= 0 and leader_id != self.node_id and self._known_leader() == NO_NODE
        ):
            self._maybe_transition(now_ms, leader_id, epoch)
            return True
        return False

    def _on_vote_response(self, now_ms: int, source: int, sent: _InFlight, resp: VoteResponse) -> None:
        p = _only_partition(
            resp.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        if resp.error_code or p is None:
            self._back_off(now_ms, source)
            return
        if self._handled(now_ms, source, p.error_code, p.leader_id, p.leader_epoch):
            return
        s = self._state
        if sent.kind == "prevote" and isinstance(s, _Prospective) and s.epoch == sent.epoch:
            (s.granted if p.vote_granted else s.rejected).add(source)
            self._check_prospective(now_ms, s)
        elif sent.kind == "vote" and isinstance(s, _Candidate) and s.epoch == sent.epoch:
            (s.granted if p.vote_granted else s.rejected).add(source)
            self._check_candidate(now_ms, s)

    def _on_begin_response(self, now_ms: int, source: int, sent: _InFlight, resp: BeginQuorumEpochResponse) -> None:
        p = _only_partition(
            resp.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        retry_ms = self.config.begin_quorum_epoch_retry_ms
        if resp.error_code or p is None:
            self._back_off(now_ms, source, retry_ms)
            return
        if self._handled(now_ms, source, p.error_code, p.leader_id, p.leader_epoch, retry_ms):
            return
        s = self._state
        if isinstance(s, _Leader) and s.epoch == sent.epoch and source in s.voters:
            s.voters[source].acknowledged = True
        else:
            self._back_off(now_ms, source, retry_ms)

    def _on_end_response(self, now_ms: int, source: int, sent: _InFlight, resp: EndQuorumEpochResponse) -> None:
        p = _only_partition(
            resp.topics, lambda t: t.topic_name, lambda t: t.partitions, lambda x: x.partition_index
        )
        retry_ms = self.config.begin_quorum_epoch_retry_ms
        if resp.error_code or p is None:
            self._back_off(now_ms, source, retry_ms)
            return
        if self._handled(now_ms, source, p.error_code, p.leader_id, p.leader_epoch, retry_ms):
            return
        s = self._state
        if isinstance(s, _Resigned) and s.epoch == sent.epoch:
            s.unacked.discard(source)
        else:
            self._back_off(now_ms, source, retry_ms)

    def _on_fetch_response(self, now_ms: int, source: int, sent: _InFlight, resp: FetchResponse) -> None:
        p = _only_partition(
            resp.responses,
            lambda t: t.topic,
            lambda t: t.partitions,
            lambda x: x.partition_index,
            id_of=lambda t: t.topic_id,
        )
        if resp.error_code or p is None:
            self._back_off(now_ms, source)
            return
        leader = p.current_leader
        if self._handled(now_ms, source, p.error_code, leader.leader_id, leader.leader_epoch):
            return
        s = self._state
        if not isinstance(s, _Follower) or s.leader_id != source or s.epoch != sent.epoch:
            return
        s.fetch_deadline_ms = now_ms + self.config.fetch_timeout_ms
        s.has_fetched = True
        div = p.diverging_epoch
        if div.epoch >= 0 or div.end_offset >= 0:
            self._truncate_to_diverging(now_ms, source, div)
            return
        if p.snapshot_id.end_offset >= 0 or p.snapshot_id.epoch >= 0:
            self._start_snapshot_fetch(now_ms, source, s, p.snapshot_id.end_offset, p.snapshot_id.epoch)
            return
        data = p.records
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            self._back_off(now_ms, source)
            return
        if data:
            it = iter_batches(data)
            try:
                for _ in it:
                    pass
            except BatchError:
                self._back_off(now_ms, source)
                return
            whole = bytes(memoryview(data)[: it.position])  # a partial batch at the end is dropped
            if whole:
                result = self.log.append_as_follower(whole, now_ms=now_ms)
                if isinstance(result, AppendRejected):
                    self._back_off(now_ms, source)
                    return
                self.log.flush(now_ms=now_ms)
                self._scan_appended(whole)
                self._refresh_voters()
        s.leader_hw = p.high_watermark
        if p.high_watermark >= 0:
            # Everything below our log end was just validated against this leader's log.
            self._advance_hw(min(p.high_watermark, self.log.log_end_offset))

    def _truncate_to_diverging(self, now_ms: int, source: int, div: FetchResponse.EpochEndOffset) -> None:
        local_epoch, local_end = self._end_offset_for_epoch(div.epoch)
        if local_epoch < 0:
            local_end = self.log.log_start_offset
        target = min(div.end_offset, local_end) if div.end_offset >= 0 else local_end
        if target < self._hw or target < self.log.log_start_offset:
            # A leader may not ask us to drop committed data; refuse and let the fetch timeout
            # decide (this never happens in a correct quorum).
            self._back_off(now_ms, source, self.config.fetch_timeout_ms)
            return
        if target < self.log.log_end_offset:
            self.log.truncate_to(target, now_ms=now_ms)
            if self._history.truncate_to(target):
                self._refresh_voters()

    def _start_snapshot_fetch(self, now_ms: int, source: int, s: _Follower, end_offset: int, epoch: int) -> None:
        """The leader's log no longer continues ours: fetch its snapshot (Kafka's FETCH_SNAPSHOT)."""
        if end_offset < 0 or epoch < 0 or end_offset < self._hw:
            # Half an id, or one that would drop committed data (never in a correct quorum).
            self._back_off(now_ms, source, self.config.fetch_timeout_ms)
            return
        snapshot_id = SnapshotId(end_offset, epoch)
        if snapshot_id in self.snapshots:
            self._install_snapshot(now_ms, snapshot_id)  # we hold it already
            return
        self._abort_snapshot_fetch(s)
        s.fetching = _SnapshotFetch(snapshot_id=snapshot_id, partial=self.snapshots.begin_partial(snapshot_id))

    def _abort_snapshot_fetch(self, s: _Follower) -> None:
        if s.fetching is not None:
            s.fetching.partial.abort()
            s.fetching = None

    def _on_fetch_snapshot_response(self, now_ms: int, source: int, sent: _InFlight, resp: FetchSnapshotResponse) -> None:
        """Kafka's ``handleFetchSnapshotResponse``: append the chunk at its position; once the
        size is reached, validate the snapshot and install it."""
        p = _only_partition(resp.topics, lambda t: t.name, lambda t: t.partitions, lambda x: x.index)
        if resp.error_code or p is None:
            self._back_off(now_ms, source)
            return
        leader = p.current_leader
        before = self._state
        if self._handle_common(now_ms, p.error_code, leader.leader_id, leader.leader_epoch):
            if self._state is before:
                self._back_off(now_ms, source)
            return
        s = self._state
        if not isinstance(s, _Follower) or s.leader_id != source or s.epoch != sent.epoch or s.fetching is None:
            return
        f = s.fetching
        if p.error_code in (ErrorCode.SNAPSHOT_NOT_FOUND, ErrorCode.POSITION_OUT_OF_RANGE):
            # The leader no longer has it (cleaned away by a newer one): start over with a
            # fetch, which names the snapshot it has now.
            self._abort_snapshot_fetch(s)
            s.fetch_deadline_ms = now_ms + self.config.fetch_timeout_ms
            return
        if p.error_code:
            self._back_off(now_ms, source)
            return
        data = p.unaligned_records
        if (
            SnapshotId(p.snapshot_id.end_offset, p.snapshot_id.epoch) != f.snapshot_id
            or p.position != f.partial.size_bytes
            or not isinstance(data, bytes | bytearray | memoryview)
            or p.position + len(data) > p.size
            or (not data and p.position < p.size)
        ):
            self._back_off(now_ms, source)
            return
        s.fetch_deadline_ms = now_ms + self.config.fetch_timeout_ms
        s.has_fetched = True
        f.partial.append(data)
        if f.partial.size_bytes < p.size:
            return
        s.fetching = None
        s.leader_hw = -1  # the image jumps to the snapshot: caught up only after the next fetch says so
        try:
            f.partial.finish()
        except SnapshotError:
            self._back_off(now_ms, source)  # the file is gone; the next fetch starts over
            return
        self._install_snapshot(now_ms, f.snapshot_id)

    def _advance_hw(self, hw: int) -> None:
        if hw > self._hw:
            self._hw = self.log.update_high_watermark(hw)

    # --- timers --------------------------------------------------------------------------------------

    def poll(self, now_ms: int) -> list[RaftEffect]:
        """Run due timers and return what to send. See the module docstring."""
        for dest, sent in list(self._inflight.items()):
            if now_ms >= sent.deadline_ms:
                del self._inflight[dest]
                self._back_off(now_ms, dest)
        for dest, until in list(self._backoff_until.items()):
            if until <= now_ms:
                del self._backoff_until[dest]
        if now_ms >= self._next_clean_ms:
            self._next_clean_ms = now_ms + self.config.clean_interval_ms
            self.clean(now_ms)
        for _ in range(6):  # a timer may change the role; the new role's sends go out now too
            s = self._state
            if isinstance(s, _Leader):
                self._poll_leader(now_ms, s)
            elif isinstance(s, _Follower):
                self._poll_follower(now_ms, s)
            elif isinstance(s, _Unattached):
                self._poll_unattached(now_ms, s)
            elif isinstance(s, _Prospective):
                self._poll_prospective(now_ms, s)
            elif isinstance(s, _Candidate):
                self._poll_candidate(now_ms, s)
            else:
                self._poll_resigned(now_ms, s)
            if self._state is s:
                break
        out, self._out = self._out, []
        return out

    def next_deadline_ms(self) -> int:
        """When ``poll`` next has work (valid after a ``poll``); a large value when none."""
        deadline = self._next_clean_ms
        for sent in self._inflight.values():
            deadline = min(deadline, sent.deadline_ms)
        for until in self._backoff_until.values():
            deadline = min(deadline, until)
        s = self._state
        if isinstance(s, _Leader):
            deadline = min(deadline, s.check_quorum_deadline_ms)
            for parked in s.parked.values():
                deadline = min(deadline, parked.deadline_ms)
        elif isinstance(s, _Follower):
            deadline = min(deadline, s.fetch_deadline_ms)
        elif isinstance(s, _Candidate):
            deadline = min(deadline, s.backoff_until_ms if s.backoff_until_ms >= 0 else s.election_deadline_ms)
        elif self.is_voter or not isinstance(s, _Unattached):
            deadline = min(deadline, s.election_deadline_ms)
        return deadline

    def _ready(self, now_ms: int, destination: int) -> bool:
        return destination not in self._inflight and self._backoff_until.get(destination, 0) <= now_ms

    def _send(self, now_ms: int, destination: int, kind: str, request: Message, timeout_ms: int | None = None) -> None:
        correlation_id = self._next_correlation_id
        self._next_correlation_id += 1
        self._inflight[destination] = _InFlight(
            correlation_id=correlation_id,
            kind=kind,
            epoch=self._state.epoch,
            deadline_ms=now_ms + (self.config.request_timeout_ms if timeout_ms is None else timeout_ms),
        )
        self._out.append(SendRequest(destination=destination, correlation_id=correlation_id, request=request))

    def _poll_leader(self, now_ms: int, s: _Leader) -> None:
        if self._poll_voter_change(now_ms, s):
            return
        if self._self_votes() >= self._majority:
            s.check_quorum_deadline_ms = _NEVER  # a quorum of one: nobody else need fetch
        elif s.check_quorum_deadline_ms == _NEVER:
            s.check_quorum_deadline_ms = now_ms + self.config.check_quorum_ms
        self._maybe_bind(now_ms, s)
        if now_ms >= s.check_quorum_deadline_ms:
            self._to_resigned(now_ms, s)  # no majority fetched within the window: step down
            return
        self._complete_parked(now_ms, s, expired_only=True)
        for voter, progress in s.voters.items():
            if not progress.acknowledged and self._ready(now_ms, voter):
                self._send(now_ms, voter, "begin", self._begin_request(voter, s.epoch))

    def _poll_follower(self, now_ms: int, s: _Follower) -> None:
        if now_ms >= s.fetch_deadline_ms:
            if self.is_voter:
                self._to_prospective(now_ms)
            else:
                self._to_unattached(now_ms, s.epoch)
            return
        if not self._ready(now_ms, s.leader_id):
            return
        if s.fetching is not None:
            self._send(now_ms, s.leader_id, "fetch_snapshot", self._fetch_snapshot_request(s.fetching))
            return
        self._send(
            now_ms,
            s.leader_id,
            "fetch",
            self._fetch_request(),
            timeout_ms=self.config.request_timeout_ms + self.config.fetch_wait_ms_max,
        )

    def _poll_unattached(self, now_ms: int, s: _Unattached) -> None:
        if self.is_voter:
            if now_ms >= s.election_deadline_ms or self._voters.keys() == {self.node_id}:
                self._to_prospective(now_ms)
            return
        # An observer finds the leader by asking any voter (it answers with the leader it knows).
        if any(sent.kind == "fetch_any" for sent in self._inflight.values()):
            return
        ready = [v for v in sorted(self._voters) if v != self.node_id and self._ready(now_ms, v)]
        if ready:
            target = ready[self.rng.randrange(len(ready))]
            self._send(now_ms, target, "fetch_any", self._fetch_request())

    def _poll_prospective(self, now_ms: int, s: _Prospective) -> None:
        if self._check_prospective(now_ms, s):
            return
        if now_ms >= s.election_deadline_ms:
            self._prospective_lost(now_ms, s)
            return
        for voter in self._other_voters():
            if voter not in s.granted and voter not in s.rejected and self._ready(now_ms, voter):
                self._send(now_ms, voter, "prevote", self._vote_request(voter, s.epoch, pre_vote=True))

    def _poll_candidate(self, now_ms: int, s: _Candidate) -> None:
        if self._check_candidate(now_ms, s):
            return
        if s.backoff_until_ms >= 0:
            if now_ms >= s.backoff_until_ms:
                self._to_prospective(now_ms)
            return
        if now_ms >= s.election_deadline_ms:
            self._retries += 1
            self._to_prospective(now_ms)
            return
        for voter in self._other_voters():
            if voter not in s.granted and voter not in s.rejected and self._ready(now_ms, voter):
                self._send(now_ms, voter, "vote", self._vote_request(voter, s.epoch, pre_vote=False))

    def _poll_resigned(self, now_ms: int, s: _Resigned) -> None:
        if now_ms >= s.election_deadline_ms:
            if self.is_voter:
                self._to_prospective(now_ms)
            else:
                self._to_unattached(now_ms, s.epoch)
            return
        for voter in sorted(s.unacked):
            if self._ready(now_ms, voter):
                self._send(now_ms, voter, "end", self._end_request(s))

    def _check_prospective(self, now_ms: int, s: _Prospective) -> bool:
        if len(s.granted) >= self._majority:
            self._to_candidate(now_ms)
            return True
        if len(s.rejected) > len(self._voters) - self._majority:
            self._prospective_lost(now_ms, s)
            return True
        return False

    def _prospective_lost(self, now_ms: int, s: _Prospective) -> None:
        """No majority of pre-votes: back to the leader it knew, or wait for a new timeout."""
        if s.leader_id != NO_NODE:
            self._to_follower(now_ms, s.epoch, s.leader_id)
        else:
            self._to_unattached(now_ms, s.epoch, voted_id=s.voted_id, voted_dir=s.voted_dir)

    def _check_candidate(self, now_ms: int, s: _Candidate) -> bool:
        if len(s.granted) >= self._majority:
            self._to_leader(now_ms, s)
            return True
        if len(s.rejected) > len(self._voters) - self._majority and s.backoff_until_ms < 0:
            self._retries += 1
            s.backoff_until_ms = now_ms + self._election_backoff_ms()
        return False

    # --- transitions -------------------------------------------------------------------------------

    def _set_state(self, state: _State) -> None:
        old = self._state
        if isinstance(old, _Follower):
            self._abort_snapshot_fetch(old)
        self._snapshot_readers.clear()
        self._state = state
        self._inflight.clear()
        self._backoff_until.clear()
        if isinstance(old, _Leader):
            change = old.voter_change
            if change is not None:
                self._answer_voter_change(change, ErrorCode.NOT_LEADER_OR_FOLLOWER, "the leader stepped down")
            for source, parked in old.parked.items():
                response = self._fetch_response(ErrorCode.NOT_LEADER_OR_FOLLOWER)
                self._out.append(SendResponse(destination=source, correlation_id=parked.correlation_id, response=response))

    def _maybe_transition(self, now_ms: int, leader_id: int, epoch: int) -> None:
        """Kafka's ``maybeTransition``: follow a newer epoch, or the leader of ours."""
        s = self._state
        if epoch < s.epoch:
            return
        if epoch > s.epoch:
            if leader_id >= 0 and leader_id != self.node_id:
                self._to_follower(now_ms, epoch, leader_id)
            else:
                self._to_unattached(now_ms, epoch)
            return
        if leader_id < 0 or leader_id == self.node_id:
            return
        if isinstance(s, _Leader | _Resigned | _Follower):
            return  # we lead (or led) this epoch, or already follow its leader
        self._to_follower(now_ms, epoch, leader_id)

    def _to_unattached(
        self, now_ms: int, epoch: int, *, voted_id: int = NO_NODE, voted_dir: uuid.UUID | None = None
    ) -> None:
        self.store.write(ElectionState(epoch=epoch, voted_id=voted_id, voted_directory_id=voted_dir))
        self._set_state(
            _Unattached(
                epoch=epoch,
                voted_id=voted_id,
                voted_dir=voted_dir,
                election_deadline_ms=now_ms + self._election_timeout_ms(),
            )
        )

    def _to_prospective(self, now_ms: int) -> None:
        s = self._state
        voted_id, voted_dir, leader = NO_NODE, None, NO_NODE
        if isinstance(s, _Unattached | _Prospective):
            voted_id, voted_dir = s.voted_id, s.voted_dir
        elif isinstance(s, _Follower):
            voted_id, voted_dir, leader = s.voted_id, s.voted_dir, s.leader_id
        elif isinstance(s, _Candidate):
            voted_id, voted_dir = self.node_id, self.directory_id
        state = _Prospective(
            epoch=s.epoch,
            voted_id=voted_id,
            voted_dir=voted_dir,
            leader_id=leader,
            granted={self.node_id},
            election_deadline_ms=now_ms + self._election_timeout_ms(),
        )
        self._set_state(state)  # nothing persisted: a pre-vote changes no durable state
        self._check_prospective(now_ms, state)

    def _to_candidate(self, now_ms: int) -> None:
        epoch = self._state.epoch + 1
        self.store.write(ElectionState(epoch=epoch, voted_id=self.node_id, voted_directory_id=self.directory_id))
        state = _Candidate(epoch=epoch, granted={self.node_id}, election_deadline_ms=now_ms + self._election_timeout_ms())
        self._set_state(state)
        self._check_candidate(now_ms, state)

    def _to_leader(self, now_ms: int, s: _Candidate) -> None:
        epoch = s.epoch
        self.store.write(
            ElectionState(epoch=epoch, leader_id=self.node_id, voted_id=self.node_id, voted_directory_id=self.directory_id)
        )
        start = self.log.log_end_offset
        state = _Leader(
            epoch=epoch,
            epoch_start_offset=start,
            voters={v: _Progress(directory_id=self._voters[v]) for v in self._other_voters()},
            granting=tuple(sorted(s.granted)),
            check_quorum_deadline_ms=(
                _NEVER if len(self._voters) == 1 else now_ms + self.config.check_quorum_ms
            ),
        )
        self._set_state(state)
        self._retries = 0
        message = LeaderChangeMessage(
            version=LEADER_CHANGE_VERSION,
            leader_id=self.node_id,
            voters=[LeaderChangeMessage.Voter(voter_id=v) for v in sorted(self._voters)],
            granting_voters=[LeaderChangeMessage.Voter(voter_id=v) for v in state.granting],
        )
        record = NewRecord(
            key=CONTROL_KEY.pack(CONTROL_KEY_VERSION, ControlRecordType.LEADER_CHANGE),
            value=message.encode(LEADER_CHANGE_VERSION),
            timestamp=now_ms,
        )
        batch = build_batch([record], base_offset=start, partition_leader_epoch=epoch, is_control=True)
        # A control batch cannot go through append_as_leader (it refuses control batches from
        # clients); it is built with its final offset and epoch, which append_as_follower keeps.
        result = self.log.append_as_follower(batch, now_ms=now_ms)
        assert not isinstance(result, AppendRejected), result
        self.log.flush(now_ms=now_ms)
        self._maybe_advance_leader_hw(now_ms, state)

    def _to_follower(self, now_ms: int, epoch: int, leader_id: int) -> None:
        s = self._state
        voted_id, voted_dir = NO_NODE, None
        if s.epoch == epoch:
            if isinstance(s, _Unattached | _Prospective | _Follower):
                voted_id, voted_dir = s.voted_id, s.voted_dir
            elif isinstance(s, _Candidate):
                voted_id, voted_dir = self.node_id, self.directory_id
        self.store.write(
            ElectionState(epoch=epoch, leader_id=leader_id, voted_id=voted_id, voted_directory_id=voted_dir)
        )
        self._set_state(
            _Follower(
                epoch=epoch,
                leader_id=leader_id,
                voted_id=voted_id,
                voted_dir=voted_dir,
                fetch_deadline_ms=now_ms + self.config.fetch_timeout_ms,
            )
        )
        self._retries = 0

    def _to_resigned(self, now_ms: int, s: _Leader) -> None:
        preferred = tuple(sorted(s.voters, key=lambda v: (-s.voters[v].end_offset, v)))
        # The durable state (this node led this epoch) does not change.
        self._set_state(
            _Resigned(
                epoch=s.epoch,
                election_deadline_ms=now_ms + self._election_timeout_ms(),
                unacked=set(s.voters),
                preferred=preferred,
            )
        )

    # --- requests we build -------------------------------------------------------------------------

    def _vote_request(self, voter: int, epoch: int, *, pre_vote: bool) -> VoteRequest:
        part = VoteRequest.PartitionData(
            partition_index=METADATA_PARTITION,
            candidate_epoch=epoch,
            candidate_id=self.node_id,
            candidate_directory_id=self.directory_id,
            voter_directory_id=self._voters.get(voter) or ZERO_UUID,
            last_offset_epoch=self.last_fetched_epoch,
            last_offset=self.log_end_offset,
        )
        if pre_vote:
            part.unknown_tagged_fields = [(PRE_VOTE_TAG, b"\x01")]
        return VoteRequest(
            cluster_id=self.cluster_id,
            voter_id=voter,
            topics=[VoteRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[part])],
        )

    def _begin_request(self, voter: int, epoch: int) -> BeginQuorumEpochRequest:
        part = BeginQuorumEpochRequest.PartitionData(
            partition_index=METADATA_PARTITION,
            voter_directory_id=self._voters.get(voter) or ZERO_UUID,
            leader_id=self.node_id,
            leader_epoch=epoch,
        )
        return BeginQuorumEpochRequest(
            cluster_id=self.cluster_id,
            voter_id=voter,
            topics=[BeginQuorumEpochRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[part])],
        )

    def _end_request(self, s: _Resigned) -> EndQuorumEpochRequest:
        part = EndQuorumEpochRequest.PartitionData(
            partition_index=METADATA_PARTITION,
            leader_id=self.node_id,
            leader_epoch=s.epoch,
            preferred_candidates=[
                EndQuorumEpochRequest.ReplicaInfo(candidate_id=v, candidate_directory_id=self._voters.get(v) or ZERO_UUID)
                for v in s.preferred
            ],
        )
        return EndQuorumEpochRequest(
            cluster_id=self.cluster_id,
            topics=[EndQuorumEpochRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[part])],
        )

    def _fetch_request(self) -> FetchRequest:
        part = FetchRequest.FetchPartition(
            partition=METADATA_PARTITION,
            current_leader_epoch=self.epoch,
            fetch_offset=self.log.log_end_offset,
            last_fetched_epoch=self.last_fetched_epoch,
            log_start_offset=self.log.log_start_offset,
            partition_max_bytes=self.config.fetch_bytes_max,
            replica_directory_id=self.directory_id,
        )
        return FetchRequest(
            cluster_id=self.cluster_id,
            replica_state=FetchRequest.ReplicaState(replica_id=self.node_id, replica_epoch=-1),
            max_wait_ms=self.config.fetch_wait_ms_max,
            min_bytes=1,
            max_bytes=self.config.fetch_bytes_max,
            topics=[FetchRequest.FetchTopic(topic=METADATA_TOPIC, topic_id=METADATA_TOPIC_ID, partitions=[part])],
        )

    def _fetch_snapshot_request(self, f: _SnapshotFetch) -> FetchSnapshotRequest:
        part = FetchSnapshotRequest.PartitionSnapshot(
            partition=METADATA_PARTITION,
            current_leader_epoch=self.epoch,
            snapshot_id=FetchSnapshotRequest.SnapshotId(end_offset=f.snapshot_id.end_offset, epoch=f.snapshot_id.epoch),
            position=f.partial.size_bytes,
            replica_directory_id=self.directory_id,
        )
        return FetchSnapshotRequest(
            cluster_id=self.cluster_id,
            replica_id=self.node_id,
            max_bytes=self.config.fetch_bytes_max,
            topics=[FetchSnapshotRequest.TopicSnapshot(name=METADATA_TOPIC, partitions=[part])],
        )

    # --- small helpers -----------------------------------------------------------------------------

    def _known_leader(self) -> int:
        s = self._state
        if isinstance(s, _Leader | _Resigned):
            return self.node_id
        if isinstance(s, _Follower | _Prospective):
            return s.leader_id
        return NO_NODE

    def _self_votes(self) -> int:
        return 1 if self.is_voter else 0

    def _other_voters(self) -> set[int]:
        return {v for v in self._voters if v != self.node_id}

    def _is_voter_key(self, node: int, directory: uuid.UUID | None) -> bool:
        if node not in self._voters:
            return False
        expected = self._voters[node]
        return expected is None or directory is None or directory == expected

    def _election_timeout_ms(self) -> int:
        timeout = self.config.election_timeout_ms
        return timeout + self.rng.randrange(timeout)

    def _election_backoff_ms(self) -> int:
        exponent = min(20, max(self._retries, 1) - 1)
        return min(ELECTION_BACKOFF_BASE_MS * self.rng.randrange(2 << exponent), self.config.election_backoff_max_ms)


class CommitCursor:
    """Where a state machine is in the committed log: ``drain`` hands each committed batch
    once, in order. Start at 0 (or after what a snapshot covered).

    Before draining, a state machine asks ``snapshot_needed``: a snapshot id means it must load
    that snapshot (``RaftNode.read_snapshot``), replacing its state, and continue from its end
    (``next_offset = snapshot_id.end_offset``)."""

    __slots__ = ("next_offset",)

    def __init__(self, next_offset: int = 0) -> None:
        self.next_offset = next_offset

    def snapshot_needed(self, node: RaftNode) -> SnapshotId | None:
        """The node's latest snapshot, when the log no longer holds ``next_offset`` (cleaned
        away, or replaced by a snapshot fetched from the leader) or when the state machine is
        empty (``next_offset`` 0: a start) and a snapshot exists. Else None."""
        latest = node.latest_snapshot_id
        if latest is None or latest.end_offset <= self.next_offset:
            return None
        if self.next_offset == 0 or self.next_offset < node.log_start_offset:
            return latest
        return None

    def drain(self, node: RaftNode, *, max_bytes: int = MIB) -> list[CommittedBatch]:
        batches = node.read_committed(self.next_offset, max_bytes=max_bytes)
        if batches:
            self.next_offset = batches[-1].last_offset + 1
        return batches
