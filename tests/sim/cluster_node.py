"""One Trafka cluster node as a sans-IO ``sim.core`` node: the real cores, wired as the broker wires them.

What it owns. ``SimClusterNode`` does what ``broker.cluster.ClusterNode``,
``broker.replicas.ReplicaManager`` and the cluster-mode branches of the handlers
(``broker.handlers.{quorum,fetch,produce,offsets,metadata}``) do, with trio taken out: the
metadata quorum (``replication.raft.RaftNode`` over the ``__cluster_metadata-0`` log of the
node's ``storage.manager.LogManager`` on its ``SimFileSystem``), the controller
(``replication.controller.QuorumController``) active while this node leads the quorum, the
metadata image replayed from committed batches (``replication.records``) and its snapshots
(``replication.snapshot``: loaded at a start and after an install from the leader, written every
``NodeSettings.snapshot`` bytes of committed batches), the broker's registration (with KIP-966's
PreviousBrokerEpoch from the clean-shutdown marker), heartbeats, controlled shutdown and clean
close, and one ``replication.partition.Partition``
per replica, leading or following as the image says, with its follower fetcher per leader, its
AlterPartition requests to the active controller and its acks=all produces waiting for the high
watermark. Every core is the real one; what is re-written here is only the adapters' glue, kept
line for line where the adapters have logic (each method's docstring names the adapter method it
re-states), so that a bug in that glue shows here too. Where the adapters mix that logic with
trio, ``tests/sim/test_cluster_sim.py``'s docstring lists the pure functions that should move
out so both could share them.

How it maps the adapters' tasks onto one poll-driven object. ``ClusterNode._quorum_loop`` is
``_quorum_pass`` run from every ``poll``; the lifecycle loop, the replica fetchers and the
ticker are timers and small state machines; an ``await`` on a peer request is an entry in
``_pending`` with the adapter's timeout (a request lost by the network or a dead peer times out:
the sim has no connection resets); a handler that waits (a parked Raft fetch, a follower fetch
waiting for data, a controller write waiting for its commit, an acks=all produce) answers None
and sends its answer later as a ``SendResponse``. Requests carry this node's own correlation
ids; the Raft node's ids are mapped, as a connection would.

Deviations, on purpose and small: producers send no producer ids (no idempotence state is
kept, AllocateProducerIds is never asked); CreateTopics is answered without waiting for the
local image to show the topic;
topic configs never change (their application to the logs is not re-stated); a peer request
fails only by timing out; a produce request carries one partition. ``NodeSettings`` names each
setting after the broker property it stands for. ``roles_after_registration`` and
``registration_timeout_ms`` were fixes this simulator found; the broker now does both, so they
are on by default, and control tests turn them off to show the loss and the stall they prevent. The
``Observer`` receives the events the invariant checks need. Single-threaded; every method takes
``now_ms``.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.dispatch import error_response
from broker.handlers.common import leader_epoch_error
from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.begin_quorum_epoch import BeginQuorumEpochRequest
from protocol.messages.broker_heartbeat import BrokerHeartbeatRequest, BrokerHeartbeatResponse
from protocol.messages.broker_registration import BrokerRegistrationRequest, BrokerRegistrationResponse
from protocol.messages.create_topics import CreateTopicsRequest
from protocol.messages.describe_quorum import DescribeQuorumRequest
from protocol.messages.end_quorum_epoch import EndQuorumEpochRequest
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.fetch_snapshot import FetchSnapshotRequest
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.messages.vote import VoteRequest
from protocol.records import iter_batches
from replication.controller import ELR_VERSION_LEVEL_MAX, ControllerConfig, ControllerResult, QuorumController
from replication.metadata import (
    ELR_VERSION_FEATURE,
    EMPTY_IMAGE,
    METADATA_VERSION_FEATURE,
    MetadataImage,
    PartitionView,
    local_changes,
)
from replication.partition import (
    AlterPartitionProposal,
    FetchOutcome,
    HighWatermarkAdvanced,
    LeaderAndIsr,
    LogTruncated,
    Partition,
    ProduceCompleted,
    ReplicaConfig,
    ReplicaFetch,
    Role,
)
from replication.quorum_state import QuorumStateStore
from replication.raft import (
    METADATA_PARTITION,
    METADATA_TOPIC,
    METADATA_TOPIC_ID,
    CommitCursor,
    CommittedBatch,
    ProposeRejected,
    RaftConfig,
    RaftNode,
    SendRequest,
    SendResponse,
)
from replication.records import decode_record, encode_record
from replication.replica_wire import (
    alter_partition_data_from_proposal,
    alter_partition_result,
    fetch_partition_from_fetch,
    fetched_from_partition_data,
    partition_data_from_response,
    replica_fetch_from_request,
    replica_id_of,
    replica_state_from_fetch,
)
from replication.snapshot import (
    SnapshotId,
    SnapshotPolicy,
    SnapshotPolicyConfig,
    image_from_snapshot,
    image_records,
)
from storage.checkpoint import topic_id_from_str
from storage.config import LogConfig, LogDirConfig
from storage.fs import SimFileSystem
from storage.log import LATEST_TIMESTAMP, PartitionLog
from storage.manager import LogManager

LOG_DIR = "/data"
CLUSTER_ID = "sim-cluster"
QUORUM_STATE_FILE = "quorum-state"  # broker.cluster's
NEVER_MS = 1 << 62
ALTER_PARTITION_VERSION = 3  # broker.replicas'
ELECT_LEADERS_VERSION = 2  # broker.cluster's
CREATE_TOPICS_VERSION = 7
METADATA_VERSION_RANGE = (1, 21)  # broker.cluster's
QUORUM_LOOP_PASSES_MAX = 8  # _quorum_pass repeats while it makes progress, at most this often
SECURITY_PROTOCOL_PLAINTEXT = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSettings:
    """The broker settings a simulated node runs with (Kafka's names in the comments)."""

    voters: tuple[int, ...]  # controller.quorum.voters; these nodes run broker,controller
    raft: RaftConfig = field(default_factory=RaftConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    heartbeat_interval_ms: int = 2_000  # broker.heartbeat.interval.ms
    session_timeout_ms: int = 9_000  # broker.session.timeout.ms
    fetch_wait_ms: int = 500  # replica.fetch.wait.max.ms
    socket_timeout_ms: int = 30_000  # replica.socket.timeout.ms
    fetch_response_bytes_max: int = 10 * 1024 * 1024  # replica.fetch.response.max.bytes
    tick_ms: int = 250  # broker.replicas.TICK_MS
    controller_wait_ms: int = 30_000  # broker.cluster.CONTROLLER_WAIT_MS_MAX
    min_insync_replicas: int = 1  # min.insync.replicas (the broker default)
    eligible_leader_replicas: bool = True  # eligible.leader.replicas.enable (a new cluster's ELR level)
    default_replication_factor: int = 3  # default.replication.factor
    segment_bytes: int = 1 << 30  # log.segment.bytes
    writeback_ms: tuple[int, int] = (1_000, 5_000)  # how often the OS writes a log's dirty pages back
    checkpoint_ms: int = 60_000  # log.flush.offset.checkpoint.interval.ms
    rebalance_interval_ms: int = 0  # auto.leader.rebalance.enable x leader.imbalance.check.interval.seconds
    controlled_shutdown_wait_ms: int = 10_000  # broker.cluster.CONTROLLED_SHUTDOWN_WAIT_MS
    resign_grace_ms: int = 200  # broker.cluster.RESIGN_GRACE_MS
    # Fixes this simulator found in broker code, which the broker now has (test_cluster_sim's
    # docstring says what each fixes): partition roles wait until this life has registered and
    # the image has reached its registration, as Kafka's broker waits; a registration waits this
    # long for its answer (None: broker.session.timeout.ms, as the broker now waits; before the
    # fix it gave up after the heartbeat interval).
    roles_after_registration: bool = True
    registration_timeout_ms: int | None = None
    # metadata.log.max.record.bytes.between.snapshots and metadata.log.max.snapshot.interval.ms
    # (None: no snapshots are taken; the retention settings are the Raft config's).
    snapshot: SnapshotPolicyConfig | None = None


class Observer:
    """What the invariant checks hear from a node, as it happens (every method may raise
    ``AssertionError``). The defaults do nothing."""

    def snapshot_loaded(self, node: SimClusterNode, snapshot_id: SnapshotId, fetched: bool) -> None:
        """``node`` replaced its image with a snapshot's: at a start, or (``fetched``) after its
        Raft node installed one from the leader."""

    def metadata_committed(self, node: SimClusterNode, batch: CommittedBatch) -> None:
        """``node`` replayed a committed metadata batch into its image."""

    def took_leadership(self, node: SimClusterNode, state: PartitionState) -> None:
        """``node`` applied a partition state naming it leader (``become_leader`` returned True)."""

    def alter_partition_handled(self, node: SimClusterNode, request: AlterPartitionRequest,
                                before: MetadataImage, after: MetadataImage) -> None:
        """The active controller on ``node`` handled an AlterPartition (before its records commit)."""

    def proposal_sent(self, node: SimClusterNode, state: PartitionState, proposal: AlterPartitionProposal) -> None:
        """A partition leader on ``node`` sends an ISR change to the controller."""

    def produce_appended(self, node: SimClusterNode, state: PartitionState, acks: int) -> None:
        """A produce was appended to ``state``'s log on ``node``."""

    def leader_end_offset_asked(self, node: SimClusterNode, state: PartitionState) -> None:
        """A follower on ``node`` asks its leader's log end (ListOffsets) after OFFSET_OUT_OF_RANGE."""


@dataclass(slots=True, eq=False)
class PartitionState:
    """``broker.core.PartitionState`` for the simulator: the log, the replica and its waiters."""

    log: PartitionLog
    leader_epoch: int = 0
    replica: Partition | None = None
    woken: bool = False  # ``wake()`` was called: parked follower fetches read again
    truncated_to: int | None = None  # lowest log end after a truncation since the checks looked

    def wake(self) -> None:
        self.woken = True


@dataclass(slots=True)
class _Pending:
    """A request this node sent, waiting for its answer."""

    destination: int
    deadline_ms: int
    on_response: Callable[[int, Message], None]
    on_timeout: Callable[[int], None]


@dataclass(slots=True)
class _ControllerCall:
    """``ClusterNode.controller_request``: send to the quorum leader, retry NOT_CONTROLLER and
    an unknown leader after a backoff, give up (None) at the deadline."""

    request: Message
    api_version: int | None
    deadline_ms: int
    on_done: Callable[[int, Message | None], None]
    retry_at_ms: int = -1  # >= 0: waiting to try again
    done: bool = False


@dataclass(slots=True)
class _Reply:
    """An answer owed to a requester: a controller write waiting for its commit, an acks=all
    produce waiting for the ISR, a follower fetch waiting for data, a forwarded request."""

    source: int
    correlation_id: int
    deadline_ms: int
    response: Message | None = None  # the answer once done (controller writes: set when built)
    fallback: Message | None = None  # sent at the deadline (NOT_CONTROLLER, REQUEST_TIMED_OUT)
    done: bool = False  # answered


@dataclass(slots=True)
class _ParkedFetch:
    source: int
    correlation_id: int
    request: FetchRequest
    deadline_ms: int
    states: list[PartitionState]


@dataclass(slots=True)
class _Fetcher:
    """``ReplicaManager._fetcher`` for one leader: one request in flight at a time."""

    leader: int
    in_flight: int = -1  # correlation id
    wake_at_ms: int = 0  # asleep until then (a backoff or the idle wait); a wake-up sets it to now


@dataclass(slots=True)
class _ProduceWait:
    """``broker.replicas.ProduceWait`` plus the response the handler will send."""

    reply: _Reply
    response: ProduceResponse
    partition_response: ProduceResponse.PartitionProduceResponse


class SimClusterNode:
    """A combined (broker, controller) or broker-only node; see the module docstring."""

    def __init__(self, node_id: int, fs: SimFileSystem, now_ms: int, rng: random.Random, *,
                 settings: NodeSettings, observer: Observer | None = None) -> None:
        self.id = node_id
        self.fs = fs
        self.rng = rng
        self.settings = s = settings
        self.observer = observer or Observer()
        self.started_ms = now_ms
        self.is_controller = node_id in s.voters
        # Broker.open: the log directory, meta.properties (a new directory id on a new disk)
        # and every partition on disk, roles unknown until the image names them.
        self.mgr = LogManager.open(
            fs, LOG_DIR, now_ms=now_ms, default_config=LogConfig(segment_bytes=s.segment_bytes),
            dir_config=LogDirConfig(flush_offset_checkpoint_interval_ms=s.checkpoint_ms,
                                    flush_start_offset_checkpoint_interval_ms=s.checkpoint_ms),
            topic_config=self._topic_log_config)
        props = self.mgr.ensure_meta_properties(cluster_id=CLUSTER_ID, node_id=node_id,
                                                directory_id=self._new_uuid())
        self.directory_id = topic_id_from_str(props["directory.id"])
        self.previous_broker_epoch = self.mgr.clean_shutdown_broker_epoch  # KIP-966, from the marker
        self.partitions: dict[tuple[str, int], PartitionState] = {}
        # found on disk: they serve nobody until the metadata assigns them (Broker._unassigned)
        self.unassigned = {tp: log for tp, log in self.mgr.logs.items() if tp[0] != METADATA_TOPIC}
        # ClusterNode.__init__ and open
        mlog = self.mgr.get_or_create_log(METADATA_TOPIC, METADATA_PARTITION, topic_id=METADATA_TOPIC_ID,
                                          now_ms=now_ms)
        self.metadata_log = mlog
        self.raft = RaftNode(
            node_id=node_id, directory_id=self.directory_id, voters=dict.fromkeys(s.voters),
            cluster_id=CLUSTER_ID, log=mlog, store=QuorumStateStore(fs, f"{mlog.dir}/{QUORUM_STATE_FILE}"),
            rng=rng, now_ms=now_ms, config=s.raft)
        self.controller: QuorumController | None = None
        if self.is_controller:
            self.controller = QuorumController(
                ControllerConfig(cluster_id=CLUSTER_ID, broker_session_timeout_ms=s.session_timeout_ms,
                                 default_replication_factor=s.default_replication_factor,
                                 min_insync_replicas=s.min_insync_replicas,
                                 eligible_leader_replicas_version=1 if s.eligible_leader_replicas else 0),
                rng=rng)
        self.image: MetadataImage = EMPTY_IMAGE
        self.roles_image: MetadataImage = EMPTY_IMAGE  # the image the partition roles were taken from
        self.cursor = CommitCursor()
        self.snapshot_policy = SnapshotPolicy(s.snapshot or SnapshotPolicyConfig(), now_ms=now_ms)
        self._last_batch: CommittedBatch | None = None
        self.loaded_snapshot_end = 0  # the end of the last snapshot this life loaded (0: none)
        self._installs_seen = 0
        self.broker_epoch = -1
        self.fenced = True
        self.incarnation_id = self._new_uuid()
        # the glue's own state
        self._next_cid = rng.getrandbits(40) << 16  # a new life never reuses an earlier life's ids
        self._next_tag = 0
        self._out: list[SendRequest | SendResponse] = []
        self._pending: dict[int, _Pending] = {}
        self._held_fetches: dict[int, _Reply] = {}  # Raft tag -> the requester
        self._controller_replies: list[tuple[int, _Reply]] = []  # (offset, waiter)
        self._calls: list[_ControllerCall] = []
        self._replies: list[_Reply] = []  # forwarded requests and produce waits, for their deadlines
        self._produce_waits: dict[tuple[str, int, int], _ProduceWait] = {}
        self._parked: list[_ParkedFetch] = []
        self._fetchers: dict[int, _Fetcher] = {}
        self._timers: dict[str, int] = {"lifecycle": now_ms, "ticker": now_ms + s.tick_ms,
                                        "chores": now_ms + 100}
        self._writeback: list[tuple[int, int, tuple[str, int]]] = []  # (at, seq, log) heap
        self._seq = 0
        self._next_rebalance_ms = 0
        self.want_shutdown = False  # controlled shutdown asked (SIGTERM)
        self.shutdown_granted = False
        self.fetchers_stalled = False  # a fault: the follower fetchers send nothing (a stuck disk)

    def _new_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _topic_log_config(self, topic: str) -> LogConfig:
        return LogConfig(segment_bytes=self.settings.segment_bytes)

    def __repr__(self) -> str:
        c = self.controller
        return (f"node {self.id} ({self.raft!r}, controller {'active' if c is not None and c.is_active else '-'}, "
                f"broker epoch {self.broker_epoch}{' fenced' if self.fenced else ''}, image at {self.image.offset})")

    # --- the sim.core node interface -----------------------------------------------------------

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        if isinstance(request, FetchRequest):
            if any(t.topic_id == METADATA_TOPIC_ID or t.topic == METADATA_TOPIC for t in request.topics):
                return self._raft_request(now_ms, replica_id_of(request), source, correlation_id, request)
            if replica_id_of(request) >= 0:
                return self._replica_fetch(now_ms, source, correlation_id, request)
            raise AssertionError("consumers are not simulated")
        if isinstance(request, VoteRequest):
            who = next((p.candidate_id for t in request.topics for p in t.partitions), -1)
            return self._raft_request(now_ms, who, source, correlation_id, request)
        if isinstance(request, BeginQuorumEpochRequest | EndQuorumEpochRequest):
            who = next((p.leader_id for t in request.topics for p in t.partitions), -1)
            return self._raft_request(now_ms, who, source, correlation_id, request)
        if isinstance(request, DescribeQuorumRequest):
            return self._raft_request(now_ms, -1, source, correlation_id, request)
        if isinstance(request, FetchSnapshotRequest):
            return self._raft_request(now_ms, request.replica_id, source, correlation_id, request)
        if isinstance(request, BrokerRegistrationRequest):
            return self._controller_call(now_ms, source, correlation_id, request,
                                         lambda c: c.handle_broker_registration(request, now_ms=now_ms))
        if isinstance(request, BrokerHeartbeatRequest):
            return self._controller_call(now_ms, source, correlation_id, request,
                                         lambda c: c.handle_broker_heartbeat(request, now_ms=now_ms))
        if isinstance(request, AlterPartitionRequest):
            return self._alter_partition_call(now_ms, source, correlation_id, request)
        if isinstance(request, CreateTopicsRequest):
            return self._admin_call(now_ms, source, correlation_id, request,
                                    lambda c: c.handle_create_topics(request, version=CREATE_TOPICS_VERSION),
                                    CREATE_TOPICS_VERSION)
        if isinstance(request, ProduceRequest):
            return self._produce(now_ms, source, correlation_id, request)
        if isinstance(request, MetadataRequest):
            return self._metadata(request)
        if isinstance(request, ListOffsetsRequest):
            return self._list_offsets(request)
        raise AssertionError(f"node {self.id} got an unexpected {type(request).__name__}")

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        pending = self._pending.pop(correlation_id, None)
        if pending is not None:
            pending.on_response(now_ms, response)

    def poll(self, now_ms: int) -> Sequence[SendRequest | SendResponse]:
        self._run_timers(now_ms)
        for _ in range(QUORUM_LOOP_PASSES_MAX):
            if not self._quorum_pass(now_ms):
                break
        self._serve_parked_fetches(now_ms)
        self._run_fetchers(now_ms)
        out, self._out = self._out, []
        return out

    def next_deadline_ms(self) -> int:
        d = min(self.raft.next_deadline_ms(), min(self._timers.values(), default=NEVER_MS))
        if self.controller is not None and (cd := self.controller.next_deadline_ms()) is not None:
            d = min(d, cd)
        if self._writeback:
            d = min(d, self._writeback[0][0])
        for p in self._pending.values():
            d = min(d, p.deadline_ms)
        for call in self._calls:
            d = min(d, call.retry_at_ms if call.retry_at_ms >= 0 else call.deadline_ms)
        for _, r in self._controller_replies:
            d = min(d, r.deadline_ms)
        for r in self._replies:
            d = min(d, r.deadline_ms)
        for f in self._parked:
            d = min(d, f.deadline_ms)
        for fetcher in self._fetchers.values():
            if fetcher.in_flight < 0:
                d = min(d, fetcher.wake_at_ms)
        return d

    # --- messaging -------------------------------------------------------------------------------

    def _request(self, now_ms: int, destination: int, request: Message, timeout_ms: int,
                 on_response: Callable[[int, Message], None],
                 on_timeout: Callable[[int], None] = lambda _now: None) -> int:
        cid = self._next_cid
        self._next_cid += 1
        self._out.append(SendRequest(destination=destination, correlation_id=cid, request=request))
        self._pending[cid] = _Pending(destination, now_ms + timeout_ms, on_response, on_timeout)
        return cid

    def _respond(self, reply: _Reply, response: Message) -> None:
        if reply.done or reply.source < 0:
            return
        reply.done = True
        self._out.append(SendResponse(destination=reply.source, correlation_id=reply.correlation_id,
                                      response=response))

    def _run_timers(self, now_ms: int) -> None:
        for cid in [c for c, p in self._pending.items() if p.deadline_ms <= now_ms]:
            self._pending.pop(cid).on_timeout(now_ms)
        for call in list(self._calls):
            if not call.done and 0 <= call.retry_at_ms <= now_ms:
                call.retry_at_ms = -1
                self._attempt(now_ms, call)
            elif not call.done and call.deadline_ms <= now_ms and call.retry_at_ms < 0:
                self._finish_call(now_ms, call, None)
        self._calls = [c for c in self._calls if not c.done]
        due = [r for _, r in self._controller_replies if r.deadline_ms <= now_ms]
        if due:
            self._controller_replies = [(o, r) for o, r in self._controller_replies if r.deadline_ms > now_ms]
            for r in due:
                assert r.fallback is not None
                self._respond(r, r.fallback)
        if any(r.deadline_ms <= now_ms for r in self._replies):
            for r in [r for r in self._replies if r.deadline_ms <= now_ms]:
                self._replies.remove(r)
                self._expire_reply(r)
        while self._writeback and self._writeback[0][0] <= now_ms:
            _, _, tp = heapq.heappop(self._writeback)
            log = self.mgr.get_log(*tp)
            if log is not None and log.needs_sync():
                log.flush(now_ms=now_ms)  # the kernel writes the dirty pages back
        for name, at in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if at <= now_ms:
                del self._timers[name]
                getattr(self, "_on_" + name)(now_ms)

    def _expire_reply(self, r: _Reply) -> None:
        for wait in list(self._produce_waits.values()):
            if wait.reply is r:
                # the handler's move_on_after(timeout_ms): REQUEST_TIMED_OUT, the wait stays
                # registered (as in broker.replicas) until the partition completes it
                wait.partition_response.error_code = ErrorCode.REQUEST_TIMED_OUT
                wait.partition_response.base_offset = -1
                self._respond(r, wait.response)
                return
        assert r.fallback is not None
        self._respond(r, r.fallback)

    def _on_chores(self, now_ms: int) -> None:
        # the broker's background chores (LogManager.tick), and the OS's writeback of new data
        self.mgr.tick(now_ms=now_ms)
        lo, hi = self.settings.writeback_ms
        for tp, log in self.mgr.logs.items():
            if log.needs_sync() and not any(w[2] == tp for w in self._writeback):
                self._seq += 1
                heapq.heappush(self._writeback, (now_ms + self.rng.randint(lo, hi), self._seq, tp))
        self._timers["chores"] = now_ms + 100

    # --- ClusterNode: the quorum ------------------------------------------------------------------

    def _tag(self) -> int:
        self._next_tag += 1
        return self._next_tag

    def _raft_request(self, now_ms: int, who: int, source: int, correlation_id: int,
                      request: Message) -> Message | None:
        """``ClusterNode.raft_request`` (``who`` is the node the handler reads from the request)."""
        tag = self._tag()
        response = self.raft.handle_request(now_ms, who, tag, request)
        if response is not None:
            return response
        self._held_fetches[tag] = _Reply(source, correlation_id, NEVER_MS)
        return None

    def _quorum_pass(self, now_ms: int) -> bool:
        """One pass of ``ClusterNode._quorum_loop``; True if it did something."""
        effects = self.raft.poll(now_ms)
        for effect in effects:
            if isinstance(effect, SendRequest):
                self._send_raft(now_ms, effect)
            else:
                held = self._held_fetches.pop(effect.correlation_id, None)
                if held is not None:
                    self._respond(held, effect.response)
        changed = self._apply_committed(now_ms)
        wrote = self._steer_controller(now_ms)
        return bool(effects) or changed or wrote

    def _send_raft(self, now_ms: int, effect: SendRequest) -> None:
        raft_cid = effect.correlation_id
        dest = effect.destination

        def answered(now: int, response: Message) -> None:
            self.raft.handle_response(now, dest, raft_cid, response)

        self._request(now_ms, dest, effect.request, self.settings.raft.request_timeout_ms, answered)

    def _apply_committed(self, now_ms: int) -> bool:
        """``ClusterNode._apply_committed``."""
        raft = self.raft
        old = self.image
        needed = self.cursor.snapshot_needed(raft)
        if needed is not None:
            self._load_snapshot(needed, now_ms)
        while batches := self.cursor.drain(raft):
            for batch in batches:
                self.observer.metadata_committed(self, batch)
                self.snapshot_policy.committed(batch.size_bytes)
                self._last_batch = batch
                if batch.is_control or not batch.records:
                    continue
                records = [decode_record(r) for r in batch.records]
                self.image = self.image.apply(records, base_offset=batch.base_offset)
                if self.controller is not None:
                    self.controller.handle_commit(base_offset=batch.base_offset, records=records)
        self._maybe_snapshot(now_ms)
        hw = raft.high_watermark
        still = []
        answered = False
        for offset, reply in self._controller_replies:
            if offset < hw:
                if reply.response is not None:
                    self._respond(reply, reply.response)
                answered = True
            else:
                still.append((offset, reply))
        self._controller_replies = still
        roles_before = self.roles_image
        self.publish(now_ms)  # also an unchanged image, once this node has caught up
        return self.image is not old or self.roles_image is not roles_before or answered

    def caught_up(self) -> bool:
        """``ClusterNode.caught_up``."""
        hw = self.raft.leader_high_watermark
        return hw >= 0 and self.cursor.next_offset >= hw

    def _load_snapshot(self, snapshot_id: SnapshotId, now_ms: int) -> None:
        """``ClusterNode._load_snapshot``."""
        contents = self.raft.read_snapshot(snapshot_id)
        self.image = image_from_snapshot(contents)
        self.cursor.next_offset = snapshot_id.end_offset
        self.snapshot_policy.taken(now_ms)
        self._last_batch = None
        self.loaded_snapshot_end = snapshot_id.end_offset
        c = self.controller
        if c is not None:
            if c.is_active:
                c.resign()
                self._fail_controller_replies()
            c.load_snapshot(self.image)
        fetched = self.raft.snapshots_fetched > self._installs_seen
        self._installs_seen = self.raft.snapshots_fetched
        self.observer.snapshot_loaded(self, snapshot_id, fetched)

    def _maybe_snapshot(self, now_ms: int) -> None:
        """``ClusterNode._maybe_snapshot`` (taken only when the settings ask for snapshots)."""
        last = self._last_batch
        if self.settings.snapshot is None or last is None or last.last_offset + 1 != self.cursor.next_offset \
                or not self.snapshot_policy.due(now_ms):
            return
        self.raft.create_snapshot(now_ms, end_offset=self.cursor.next_offset, epoch=last.epoch,
                                  last_contained_timestamp_ms=last.timestamp_ms, records=image_records(self.image))
        self.snapshot_policy.taken(now_ms)

    def publish(self, now_ms: int) -> None:
        """Hand the image to the replica manager (``ClusterNode.on_image``). With
        ``roles_after_registration`` only once this life has registered and the image has
        reached its registration (Kafka's broker waits for that before it publishes)."""
        if self.settings.roles_after_registration and not (0 <= self.broker_epoch <= self.image.offset):
            return
        if not self.caught_up():  # ``ClusterNode.caught_up``, checked by ``ReplicaManager``
            return
        if self.roles_image is not self.image:
            old, self.roles_image = self.roles_image, self.image
            self.apply_image(now_ms, old, self.image)

    def _steer_controller(self, now_ms: int) -> bool:
        """``ClusterNode._steer_controller``; True if it wrote something."""
        c, raft = self.controller, self.raft
        if c is None:
            return False
        if c.is_active and (not raft.is_leader or c.next_write_offset != raft.log_end_offset):
            c.resign()
            self._fail_controller_replies()
            return True
        wrote = False
        if not c.is_active and raft.is_leader and self.cursor.next_offset >= raft.high_watermark \
                and raft.high_watermark >= raft.log_end_offset:
            wrote = self._write(now_ms, c.become_active(next_write_offset=raft.log_end_offset, now_ms=now_ms),
                                None) is not None
            self._next_rebalance_ms = now_ms + self.settings.rebalance_interval_ms
        if c.is_active:
            wrote = self._write(now_ms, c.tick(now_ms), None) is not None or wrote
            interval = self.settings.rebalance_interval_ms
            if interval > 0 and now_ms >= self._next_rebalance_ms:
                self._next_rebalance_ms = now_ms + interval
                wrote = self._rebalance_leaders(now_ms, c) or wrote
        return wrote

    def _rebalance_leaders(self, now_ms: int, c: QuorumController) -> bool:
        """``ClusterNode._rebalance_leaders``."""
        req = c.imbalanced_leaders()
        if req is None:
            return False
        self._write(now_ms, c.handle_elect_leaders(req, version=ELECT_LEADERS_VERSION), None)
        return True

    def _write(self, now_ms: int, result: ControllerResult[Any], reply: _Reply | None) -> _Reply | None:
        """``ClusterNode._write``: None when the answer may go now; else the waiter, which gets
        ``response`` once the records commit (or ``fallback``: NOT_CONTROLLER)."""
        raft, c = self.raft, self.controller
        assert c is not None
        waiter = reply if reply is not None else _Reply(-1, -1, NEVER_MS)
        waiter.response = result.response
        if not result.records:
            if result.reply_after_offset < 0 or result.reply_after_offset < raft.high_watermark:
                return None
            self._controller_replies.append((result.reply_after_offset, waiter))
            return waiter
        offset: int | ProposeRejected
        if raft.log_end_offset != c.next_write_offset - len(result.records):
            # The Raft leader appended a voter change since: the records would not sit where
            # the controller counts them (``ClusterNode._write``).
            offset = ProposeRejected(error=ErrorCode.NOT_LEADER_OR_FOLLOWER, message="the log moved under the controller")
        else:
            offset = raft.propose(now_ms, [encode_record(r) for r in result.records])
        if isinstance(offset, ProposeRejected):
            c.resign()
            self._fail_controller_replies()
            waiter.response = waiter.fallback
            if reply is not None and reply.fallback is not None:
                self._respond(reply, reply.fallback)
            return waiter
        self._controller_replies.append((max(offset, result.reply_after_offset), waiter))
        return waiter

    def _fail_controller_replies(self) -> None:
        for _, reply in self._controller_replies:
            if reply.fallback is not None:
                self._respond(reply, reply.fallback)
        self._controller_replies = []

    def _controller_call(self, now_ms: int, source: int, correlation_id: int, request: Message,
                         handle: Callable[[QuorumController], ControllerResult[Any]],
                         api_version: int | None = None) -> Message | None:
        """``ClusterNode.controller_call``."""
        c = self.controller
        not_controller = error_response(request.API_KEY, api_version if api_version is not None else 0,
                                        ErrorCode.NOT_CONTROLLER)
        if c is None or not c.is_active:
            return not_controller
        result = handle(c)
        reply = _Reply(source, correlation_id, now_ms + self.settings.controller_wait_ms, fallback=not_controller)
        held = self._write(now_ms, result, reply)
        if held is None:
            return result.response
        return None  # answered from _apply_committed, _fail_controller_replies or the deadline

    def _alter_partition_call(self, now_ms: int, source: int, correlation_id: int,
                              request: AlterPartitionRequest) -> Message | None:
        c = self.controller
        before = c.latest_image if c is not None and c.is_active else None

        def handle(ctl: QuorumController) -> ControllerResult[Any]:
            result = ctl.handle_alter_partition(request, version=ALTER_PARTITION_VERSION)
            assert before is not None
            self.observer.alter_partition_handled(self, request, before, ctl.latest_image)
            return result

        return self._controller_call(now_ms, source, correlation_id, request, handle)

    def _admin_call(self, now_ms: int, source: int, correlation_id: int, request: Message,
                    handle: Callable[[QuorumController], ControllerResult[Any]], api_version: int) -> Message | None:
        """``ClusterNode.admin_call``: here when this node's controller is active, else forwarded."""
        c = self.controller
        if c is not None and c.is_active:
            return self._controller_call(now_ms, source, correlation_id, request, handle, api_version)
        not_controller = error_response(request.API_KEY, api_version, ErrorCode.NOT_CONTROLLER)
        reply = _Reply(source, correlation_id, NEVER_MS, fallback=not_controller)

        def done(now: int, response: Message | None) -> None:
            self._respond(reply, response if response is not None else not_controller)

        self.controller_request(now_ms, request, done, timeout_ms=self.settings.controller_wait_ms,
                                api_version=api_version)
        return None

    def controller_request(self, now_ms: int, request: Message, on_done: Callable[[int, Message | None], None], *,
                           timeout_ms: int, api_version: int | None = None) -> None:
        """``ClusterNode.controller_request``."""
        call = _ControllerCall(request, api_version, now_ms + timeout_ms, on_done)
        self._calls.append(call)
        self._attempt(now_ms, call)

    def _attempt(self, now_ms: int, call: _ControllerCall) -> None:
        if now_ms >= call.deadline_ms:
            self._finish_call(now_ms, call, None)
            return
        leader = self.raft.leader_id
        if leader < 0:
            self._retry_later(now_ms, call)
            return

        def answered(now: int, response: Message) -> None:
            if call.done:
                return
            if getattr(response, "error_code", 0) != ErrorCode.NOT_CONTROLLER:
                self._finish_call(now, call, response)
            else:
                self._retry_later(now, call)

        def lost(now: int) -> None:
            if not call.done:
                self._retry_later(now, call)

        self._request(now_ms, leader, call.request, call.deadline_ms - now_ms, answered, lost)

    def _retry_later(self, now_ms: int, call: _ControllerCall) -> None:
        at = now_ms + self.settings.raft.retry_backoff_ms + 50
        if at >= call.deadline_ms:
            self._finish_call(now_ms, call, None)
        else:
            call.retry_at_ms = at

    def _finish_call(self, now_ms: int, call: _ControllerCall, response: Message | None) -> None:
        if call.done:
            return
        call.done = True
        call.on_done(now_ms, response)

    # --- ClusterNode: the broker lifecycle ----------------------------------------------------------

    def registration(self) -> BrokerRegistrationRequest:
        """``ClusterNode._registration``."""
        return BrokerRegistrationRequest(
            broker_id=self.id, cluster_id=CLUSTER_ID, incarnation_id=self.incarnation_id,
            listeners=[BrokerRegistrationRequest.Listener(name="PLAINTEXT", host=f"node-{self.id}", port=9092,
                                                          security_protocol=SECURITY_PROTOCOL_PLAINTEXT)],
            features=[BrokerRegistrationRequest.Feature(name=METADATA_VERSION_FEATURE,
                                                        min_supported_version=METADATA_VERSION_RANGE[0],
                                                        max_supported_version=METADATA_VERSION_RANGE[1]),
                      BrokerRegistrationRequest.Feature(name=ELR_VERSION_FEATURE, min_supported_version=0,
                                                        max_supported_version=ELR_VERSION_LEVEL_MAX)],
            rack=None, log_dirs=[self.directory_id], previous_broker_epoch=self.previous_broker_epoch)

    def _on_lifecycle(self, now_ms: int) -> None:
        """One turn of ``ClusterNode._lifecycle_loop``."""
        interval = self.settings.heartbeat_interval_ms
        if self.broker_epoch < 0:
            def registered(now: int, resp: Message | None) -> None:
                if isinstance(resp, BrokerRegistrationResponse) and resp.error_code == ErrorCode.NONE:
                    self.broker_epoch = resp.broker_epoch
                    self._timers["lifecycle"] = now
                    self.publish(now)
                else:
                    self._timers["lifecycle"] = now + interval // 4

            timeout = self.settings.registration_timeout_ms or self.settings.session_timeout_ms
            self.controller_request(now_ms, self.registration(), registered, timeout_ms=timeout)
            return
        req = BrokerHeartbeatRequest(broker_id=self.id, broker_epoch=self.broker_epoch,
                                     current_metadata_offset=self.image.offset, want_fence=False,
                                     want_shut_down=self.want_shutdown)

        def beat(now: int, resp: Message | None) -> None:
            if isinstance(resp, BrokerHeartbeatResponse):
                if resp.error_code == ErrorCode.STALE_BROKER_EPOCH:
                    self.broker_epoch = -1
                    self._timers["lifecycle"] = now
                    return
                if resp.error_code == ErrorCode.NONE and resp.should_shut_down:
                    self.shutdown_granted = True
                if resp.error_code == ErrorCode.NONE and resp.is_fenced != self.fenced:
                    self.fenced = resp.is_fenced
            soon = self.fenced or self.want_shutdown
            self._timers["lifecycle"] = now + (interval // 4 if soon else interval)

        self.controller_request(now_ms, req, beat, timeout_ms=interval)

    def begin_controlled_shutdown(self, now_ms: int) -> None:
        """``ClusterNode.controlled_shutdown``'s first step (the caller waits for
        ``shutdown_granted`` up to ``controlled_shutdown_wait_ms``, then calls ``resign``)."""
        self.want_shutdown = True
        if "lifecycle" in self._timers:
            self._timers["lifecycle"] = now_ms  # _lifecycle_wake

    def resign(self, now_ms: int) -> None:
        """``ClusterNode.controlled_shutdown``'s last step: resign the quorum leadership."""
        if self.raft.is_leader:
            self.raft.resign(now_ms)

    def close(self, now_ms: int) -> None:
        """``Broker.close``: flush, checkpoints, and the clean-shutdown marker with this life's
        broker epoch (the next life's PreviousBrokerEpoch)."""
        self.mgr.close(now_ms=now_ms, broker_epoch=self.broker_epoch)

    # --- ReplicaManager: metadata --------------------------------------------------------------------

    def min_insync_replicas(self, image: MetadataImage, topic: str) -> int:
        """``Broker.min_insync_replicas`` (the topic catalogue is synced from the image)."""
        value = image.topic_configs(topic).get("min.insync.replicas")
        if value is None:
            value = image.cluster_config("min.insync.replicas")
        return int(value) if value is not None else self.settings.min_insync_replicas

    def apply_image(self, now_ms: int, old: MetadataImage, new: MetadataImage) -> None:
        """``ReplicaManager.apply_image``."""
        changes = local_changes(old, new, self.id)
        for view in changes.deletes:
            self._remove(now_ms, view)
        for view in (*changes.leaders, *changes.followers):
            self._apply(now_ms, new, view)
        if old.brokers is not new.brokers or changes.leaders or changes.followers:
            live = {bid: reg.epoch for bid, reg in new.brokers.items() if not reg.fenced}
            for state in list(self.partitions.values()):
                if state.replica is not None:
                    state.replica.set_live_brokers(live, now_ms=now_ms)
                    self.drain(now_ms, state)
        for topic in new.topics_by_id.values():
            min_isr = self.min_insync_replicas(new, topic.name)
            for pid in topic.partitions:
                held = self.partitions.get((topic.name, pid))
                if held is not None and held.replica is not None and held.replica.is_leader \
                        and held.replica.min_insync_replicas != min_isr:
                    held.replica.set_min_insync_replicas(min_isr, now_ms=now_ms)
                    self.drain(now_ms, held)
        self._start_fetchers(now_ms)

    def _apply(self, now_ms: int, image: MetadataImage, view: PartitionView) -> None:
        """``ReplicaManager._apply``."""
        key = (view.topic_name, view.partition_id)
        state = self.partitions.get(key)
        if state is None:  # Broker.ensure_partition
            log = self.unassigned.pop(key, None)
            if log is None:
                log = self.mgr.get_or_create_log(view.topic_name, view.partition_id, topic_id=view.topic_id,
                                                 now_ms=now_ms)
            state = self.partitions[key] = PartitionState(log)
        if state.replica is None:
            state.replica = Partition(state.log, broker_id=self.id, config=self.settings.replica,
                                      broker_epoch=self.broker_epoch)
        reg = view.registration
        lai = LeaderAndIsr(leader=reg.leader, leader_epoch=reg.leader_epoch, partition_epoch=reg.partition_epoch,
                           replicas=reg.replicas, isr=reg.isr)
        if reg.leader == self.id:
            changed = state.replica.become_leader(
                lai, min_insync_replicas=self.min_insync_replicas(image, view.topic_name), now_ms=now_ms)
            if changed:
                self.observer.took_leadership(self, state)
        else:
            state.replica.become_follower(lai, now_ms=now_ms)
        state.leader_epoch = max(state.leader_epoch, reg.leader_epoch)
        self.drain(now_ms, state)
        state.wake()

    def _remove(self, now_ms: int, view: PartitionView) -> None:
        """``ReplicaManager._remove``."""
        state = self.partitions.pop((view.topic_name, view.partition_id), None)
        if state is None:
            return
        if state.replica is not None:
            state.replica.stop()
            self.drain(now_ms, state)
        state.wake()
        self.mgr.delete_log(view.topic_name, view.partition_id, now_ms=now_ms)

    # --- ReplicaManager: effects ----------------------------------------------------------------------

    def drain(self, now_ms: int, state: PartitionState) -> None:
        """``ReplicaManager.drain``."""
        replica = state.replica
        if replica is None:
            return
        for effect in replica.take_effects():
            if isinstance(effect, ProduceCompleted):
                wait = self._produce_waits.pop((state.log.topic, state.log.partition, effect.produce_id), None)
                if wait is not None and not wait.reply.done:
                    if wait.reply in self._replies:
                        self._replies.remove(wait.reply)
                    if effect.error != ErrorCode.NONE:
                        wait.partition_response.error_code = effect.error
                        wait.partition_response.base_offset = -1
                    self._respond(wait.reply, wait.response)
            elif isinstance(effect, HighWatermarkAdvanced):
                state.wake()
            elif isinstance(effect, LogTruncated):
                low = effect.end_offset if state.truncated_to is None else min(state.truncated_to, effect.end_offset)
                state.truncated_to = low  # (the broker rebuilds producer state here)
            elif isinstance(effect, AlterPartitionProposal):
                self._alter_partition(now_ms, state, effect)

    def _alter_partition(self, now_ms: int, state: PartitionState, proposal: AlterPartitionProposal) -> None:
        """``ReplicaManager._alter_partition``."""
        topic_id = self.image.topic_ids_by_name.get(proposal.topic)
        if topic_id is None:
            return
        self.observer.proposal_sent(self, state, proposal)
        req = AlterPartitionRequest(broker_id=self.id, broker_epoch=self.broker_epoch, topics=[
            AlterPartitionRequest.TopicData(topic_id=topic_id, partitions=[
                alter_partition_data_from_proposal(proposal, version=ALTER_PARTITION_VERSION)])])

        def done(now: int, resp: Message | None) -> None:
            if not isinstance(resp, AlterPartitionResponse) or state.replica is None:
                return
            data = next((p for t in resp.topics for p in t.partitions if p.partition_index == proposal.partition),
                        None)
            if data is None:
                return
            result = alter_partition_result(data, top_level_error=resp.error_code)
            state.replica.handle_alter_partition_result(proposal.proposal_id, result, now_ms=now)
            self.drain(now, state)

        self.controller_request(now_ms, req, done, api_version=ALTER_PARTITION_VERSION,
                                timeout_ms=self.settings.replica.alter_partition_retry_backoff_ms * 5)

    def _on_ticker(self, now_ms: int) -> None:
        """One turn of ``ReplicaManager._ticker``."""
        for state in list(self.partitions.values()):
            if state.replica is not None and state.replica.role is Role.LEADER:
                state.replica.tick(now_ms)
                self.drain(now_ms, state)
        for fetcher in self._fetchers.values():
            fetcher.wake_at_ms = min(fetcher.wake_at_ms, now_ms)
        self._timers["ticker"] = now_ms + self.settings.tick_ms

    # --- ReplicaManager: followers --------------------------------------------------------------------

    def _start_fetchers(self, now_ms: int) -> None:
        leaders = {s.replica.leader_id for s in self.partitions.values()
                   if s.replica is not None and s.replica.role is Role.FOLLOWER and s.replica.leader_id >= 0}
        for leader in leaders:
            fetcher = self._fetchers.get(leader)
            if fetcher is None:
                self._fetchers[leader] = _Fetcher(leader, wake_at_ms=now_ms)
            else:
                fetcher.wake_at_ms = min(fetcher.wake_at_ms, now_ms)

    def _following(self, leader: int) -> list[PartitionState]:
        return [s for s in self.partitions.values()
                if s.replica is not None and s.replica.role is Role.FOLLOWER and s.replica.leader_id == leader]

    def _run_fetchers(self, now_ms: int) -> None:
        """The loop of every ``ReplicaManager._fetcher`` that is not waiting for an answer."""
        for leader, fetcher in list(self._fetchers.items()):
            if fetcher.in_flight >= 0 or fetcher.wake_at_ms > now_ms:
                continue
            if self.fetchers_stalled:
                fetcher.wake_at_ms = now_ms + self.settings.tick_ms
                continue
            states = self._following(leader)
            if not states:
                del self._fetchers[leader]
                continue
            fetches: list[tuple[PartitionState, ReplicaFetch]] = []
            for s in states:
                assert s.replica is not None
                s.replica.broker_epoch = self.broker_epoch
                f = s.replica.next_fetch(now_ms=now_ms)
                if f is not None:
                    fetches.append((s, f))
            if not fetches:
                fetcher.wake_at_ms = now_ms + self.settings.tick_ms
                continue
            fetcher.in_flight = self._send_fetch(now_ms, fetcher, fetches)

    def _send_fetch(self, now_ms: int, fetcher: _Fetcher, fetches: list[tuple[PartitionState, ReplicaFetch]]) -> int:
        def answered(now: int, response: Message) -> None:
            fetcher.in_flight = -1
            fetcher.wake_at_ms = now
            assert isinstance(response, FetchResponse)
            need_end = self._apply_fetch_response(now, fetches, response)
            self._with_leader_end_offsets(now, fetcher, need_end, [s for s, _ in fetches])

        def lost(now: int) -> None:  # PeerUnavailable
            fetcher.in_flight = -1
            fetcher.wake_at_ms = now + min(self.settings.replica.replica_fetch_backoff_ms, 500)

        return self._request(now_ms, fetcher.leader, self._fetch_request(fetches), self.settings.socket_timeout_ms,
                             answered, lost)

    def _fetch_request(self, fetches: list[tuple[PartitionState, ReplicaFetch]]) -> FetchRequest:
        """``ReplicaManager._fetch_request``."""
        topics: dict[str, FetchRequest.FetchTopic] = {}
        for s, f in fetches:
            topic_id = self.image.topic_ids_by_name.get(s.log.topic)
            if topic_id is None:
                continue
            t = topics.get(s.log.topic)
            if t is None:
                t = topics[s.log.topic] = FetchRequest.FetchTopic(topic=s.log.topic, topic_id=topic_id)
            t.partitions.append(fetch_partition_from_fetch(f, partition_index=s.log.partition))
        first = fetches[0][1]
        return FetchRequest(replica_id=-1, replica_state=replica_state_from_fetch(first),
                            max_wait_ms=self.settings.fetch_wait_ms, min_bytes=1,
                            max_bytes=self.settings.fetch_response_bytes_max, isolation_level=0, session_id=0,
                            session_epoch=-1, topics=list(topics.values()), forgotten_topics_data=[], rack_id="")

    def _with_leader_end_offsets(self, now_ms: int, fetcher: _Fetcher,
                                 need_end: list[tuple[PartitionState, ReplicaFetch, FetchResponse.PartitionData]],
                                 states: list[PartitionState]) -> None:
        """The rest of one turn of ``ReplicaManager._fetcher``: ``_with_leader_end_offset`` for
        each partition that asked for it, one at a time, then ``_make_durable``."""
        if not need_end:
            for st in states:  # _make_durable (flush.messages on a follower)
                log = st.log
                if log.config.durable_appends and log.durable_offset < log.log_end_offset:
                    log.flush(now_ms=now_ms)
            return
        state, fetch, data = need_end[0]
        rest = need_end[1:]
        self.observer.leader_end_offset_asked(self, state)
        req = ListOffsetsRequest(replica_id=self.id, isolation_level=0, topics=[ListOffsetsRequest.ListOffsetsTopic(
            name=state.log.topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(
                partition_index=state.log.partition, current_leader_epoch=fetch.current_leader_epoch,
                timestamp=LATEST_TIMESTAMP)])])

        def answered(now: int, resp: Message) -> None:
            fetcher.in_flight = -1
            fetcher.wake_at_ms = now
            assert isinstance(resp, ListOffsetsResponse)
            answer = next((p for t in resp.topics for p in t.partitions), None)
            if answer is not None and answer.error_code == ErrorCode.NONE and state.replica is not None:
                fetched = fetched_from_partition_data(data, leader_log_end_offset=answer.offset)
                state.replica.handle_fetch_response(fetch, fetched, now_ms=now)
                self.drain(now, state)
            self._with_leader_end_offsets(now, fetcher, rest, states)

        def lost(now: int) -> None:
            fetcher.in_flight = -1
            fetcher.wake_at_ms = now
            self._with_leader_end_offsets(now, fetcher, rest, states)

        fetcher.in_flight = self._request(now_ms, fetcher.leader, req, self.settings.socket_timeout_ms, answered, lost)

    def _list_offsets(self, req: ListOffsetsRequest) -> ListOffsetsResponse:
        """``broker.handlers.offsets.list_offsets`` for what a follower asks: LATEST as a replica."""
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                r = ListOffsetsResponse.ListOffsetsPartitionResponse(partition_index=p.partition_index, offset=-1,
                                                                     leader_epoch=-1)
                parts.append(r)
                state = self.partitions.get((t.name, p.partition_index))
                if state is None:
                    r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    continue
                r.error_code = leader_epoch_error(p.current_leader_epoch, state.leader_epoch)
                if r.error_code != ErrorCode.NONE:
                    continue
                if state.replica is not None and not state.replica.is_leader:
                    r.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                    continue
                assert p.timestamp == LATEST_TIMESTAMP, "followers ask for LATEST only"
                r.offset = state.log.log_end_offset if req.replica_id >= 0 else state.log.high_watermark
                r.leader_epoch = state.leader_epoch
            topics.append(ListOffsetsResponse.ListOffsetsTopicResponse(name=t.name, partitions=parts))
        return ListOffsetsResponse(topics=topics)

    def _apply_fetch_response(self, now_ms: int, fetches: list[tuple[PartitionState, ReplicaFetch]],
                              resp: FetchResponse) -> list[tuple[PartitionState, ReplicaFetch, FetchResponse.PartitionData]]:
        """``ReplicaManager._apply_fetch_response``: returns the partitions that need the
        leader's log end offset."""
        need_end: list[tuple[PartitionState, ReplicaFetch, FetchResponse.PartitionData]] = []
        by_id = {t.topic_id: t for t in resp.responses}
        for s, f in fetches:
            replica = s.replica
            if replica is None:
                continue
            topic_id = self.image.topic_ids_by_name.get(s.log.topic)
            t = by_id.get(topic_id) if topic_id is not None else None
            data = next((p for p in t.partitions if p.partition_index == s.log.partition), None) if t else None
            if data is None:
                continue
            outcome = replica.handle_fetch_response(f, fetched_from_partition_data(data), now_ms=now_ms)
            if outcome is FetchOutcome.NEED_LEADER_END_OFFSET:
                need_end.append((s, f, data))
            self.drain(now_ms, s)
        return need_end

    # --- handlers: follower fetches (the leader's side) ----------------------------------------------

    def _replica_fetch(self, now_ms: int, source: int, correlation_id: int, req: FetchRequest) -> Message | None:
        """``broker.handlers.fetch._replica_fetch``: answer now, or park until data or the wait ends."""
        topics, states, nbytes = self._replica_read(now_ms, req)
        if nbytes >= req.min_bytes or req.max_wait_ms <= 0 or not states:
            return FetchResponse(throttle_time_ms=0, error_code=ErrorCode.NONE, session_id=0, responses=topics)
        for s in states:
            s.woken = False
        self._parked.append(_ParkedFetch(source, correlation_id, req, now_ms + req.max_wait_ms, states))
        return None

    def _serve_parked_fetches(self, now_ms: int) -> None:
        if not self._parked:
            for s in self.partitions.values():
                s.woken = False
            return
        keep = []
        for f in self._parked:
            if f.deadline_ms > now_ms and not any(s.woken for s in f.states):
                keep.append(f)
                continue
            topics, states, nbytes = self._replica_read(now_ms, f.request)
            if nbytes >= f.request.min_bytes or f.deadline_ms <= now_ms or not states:
                self._out.append(SendResponse(destination=f.source, correlation_id=f.correlation_id,
                                              response=FetchResponse(throttle_time_ms=0, error_code=ErrorCode.NONE,
                                                                     session_id=0, responses=topics)))
            else:
                f.states = states
                keep.append(f)
        for s in self.partitions.values():
            s.woken = False
        self._parked = keep

    def _replica_read(self, now_ms: int, req: FetchRequest) -> tuple[list[FetchResponse.FetchableTopicResponse],
                                                                     list[PartitionState], int]:
        """``broker.handlers.fetch._replica_read`` (Fetch v13+: topics by id)."""
        out: list[FetchResponse.FetchableTopicResponse] = []
        states: list[PartitionState] = []
        total = 0
        for t in req.topics:
            topic = self.image.topic_by_id(t.topic_id)
            parts = []
            for p in t.partitions:
                state = self.partitions.get((topic.name, p.partition)) if topic is not None else None
                if state is None or state.replica is None:
                    code = ErrorCode.UNKNOWN_TOPIC_ID if topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    parts.append(FetchResponse.PartitionData(partition_index=p.partition, error_code=code))
                    continue
                answer = state.replica.handle_replica_fetch(replica_fetch_from_request(req, p), now_ms=now_ms)
                self.drain(now_ms, state)
                records = answer.fetched().records if answer.records else b""
                total += len(records)
                parts.append(partition_data_from_response(answer, partition_index=p.partition, records=records))
                states.append(state)
            out.append(FetchResponse.FetchableTopicResponse(topic=t.topic, topic_id=t.topic_id, partitions=parts))
        return out, states, total

    # --- handlers: produce and metadata ------------------------------------------------------------

    def _produce(self, now_ms: int, source: int, correlation_id: int, req: ProduceRequest) -> Message | None:
        """``broker.handlers.produce.produce``/``_append`` in cluster mode (no producer ids)."""
        responses: list[ProduceResponse.TopicProduceResponse] = []
        response = ProduceResponse(responses=responses, throttle_time_ms=0)
        reply = _Reply(source, correlation_id, now_ms + max(req.timeout_ms, 0))
        waiting = 0
        for td in req.topic_data:
            parts = []
            for pd in td.partition_data:
                state = self.partitions.get((td.name, pd.index))
                if state is None:
                    parts.append(_produce_error(pd.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                    continue
                pr, waits = self._append(now_ms, req, state, pd, reply, response)
                parts.append(pr)
                waiting += waits
            responses.append(ProduceResponse.TopicProduceResponse(name=td.name, partition_responses=parts))
        if not waiting:
            return response
        # The producer here sends one partition a request: one wait answers it.
        assert waiting == 1, "one acks=all partition per produce request"
        if not reply.done:  # (it may have completed while the handler ran: answered by poll)
            self._replies.append(reply)
        return None

    def _append(self, now_ms: int, req: ProduceRequest, state: PartitionState,
                pd: ProduceRequest.PartitionProduceData, reply: _Reply,
                response: ProduceResponse) -> tuple[ProduceResponse.PartitionProduceResponse, int]:
        """``broker.handlers.produce._append`` in cluster mode, where every partition a broker
        serves has a replica; also how many acks=all waits it registered."""
        log = state.log
        assert isinstance(pd.records, bytes | bytearray | memoryview)
        replica = state.replica
        assert replica is not None, "a partition state in cluster mode has its replica"
        if not replica.is_leader:
            return _produce_error(pd.index, ErrorCode.NOT_LEADER_OR_FOLLOWER), 0
        pr = ProduceResponse.PartitionProduceResponse(index=pd.index, error_code=ErrorCode.NONE)
        waits = 0
        appended = replica.append(memoryview(pd.records), acks=req.acks, now_ms=now_ms, timeout_ms=req.timeout_ms)
        if appended.info is None:
            return _produce_error(pd.index, appended.error), 0
        result = appended.info
        if appended.produce_id >= 0:  # ReplicaManager.register_produce
            self._produce_waits[(log.topic, log.partition, appended.produce_id)] = _ProduceWait(reply, response, pr)
            waits = 1
        elif appended.error != ErrorCode.NONE:
            return _produce_error(pd.index, appended.error), 0
        self.observer.produce_appended(self, state, req.acks)
        self._advance_high_watermark(now_ms, state)  # Broker.advance_high_watermark
        state.wake()  # followers' fetches parked on this partition read the new batch now
        pr.base_offset = result.first_offset
        pr.log_start_offset = result.log_start_offset
        return pr, waits

    def _advance_high_watermark(self, now_ms: int, state: PartitionState) -> None:
        """``Broker.advance_high_watermark`` for a replica."""
        assert state.replica is not None
        state.replica.maybe_advance_high_watermark(now_ms)
        self.drain(now_ms, state)

    def _metadata(self, req: MetadataRequest) -> MetadataResponse:
        """``broker.handlers.metadata`` in cluster mode: partitions as the image has them."""
        image = self.image
        names = [t.name for t in req.topics or () if t.name] if req.topics is not None else list(image.topic_ids_by_name)
        topics = []
        for name in names:
            t = image.topic(name)
            if t is None:
                topics.append(MetadataResponse.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                                                     name=name))
                continue
            parts = [MetadataResponse.MetadataResponsePartition(
                error_code=ErrorCode.NONE if reg.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=pid, leader_id=reg.leader, leader_epoch=reg.leader_epoch,
                replica_nodes=list(reg.replicas), isr_nodes=list(reg.isr),
                offline_replicas=list(image.offline_replicas(reg))) for pid, reg in sorted(t.partitions.items())]
            topics.append(MetadataResponse.MetadataResponseTopic(name=name, topic_id=t.topic_id, partitions=parts))
        return MetadataResponse(cluster_id=CLUSTER_ID, controller_id=self.raft.leader_id, topics=topics)


def _produce_error(index: int, error: ErrorCode) -> ProduceResponse.PartitionProduceResponse:
    return ProduceResponse.PartitionProduceResponse(index=index, error_code=error, base_offset=-1)


def records_of(log: PartitionLog, start: int) -> list[tuple[int, bytes]]:
    """(leader epoch, value) of every record of ``log`` from ``start`` (a batch boundary) to its end."""
    out: list[tuple[int, bytes]] = []
    offset = start
    while offset < log.log_end_offset:
        res = log.read(offset, max_bytes=1 << 20)
        views = list(iter_batches(res.read_bytes()))
        assert views, f"{log.topic}-{log.partition}: nothing readable at {offset} below its log end {log.log_end_offset}"
        for v in views:
            assert v.base_offset == offset, f"{log.topic}-{log.partition}: batch at {v.base_offset}, expected {offset}"
            for r in v.records():
                out.append((v.partition_leader_epoch, bytes(r.value or b"")))
            offset = v.next_offset
    return out


__all__ = ["NodeSettings", "Observer", "PartitionState", "SimClusterNode", "records_of"]
