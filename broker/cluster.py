"""A node of a KRaft cluster: the trio edge around the Raft, controller and metadata cores.

What it owns. When ``controller.quorum.voters`` is set, the broker runs one ``ClusterNode``:

* the metadata quorum (``replication.raft.RaftNode``) over the ``__cluster_metadata-0`` log in
  the first log directory and its ``quorum-state`` file: a voter on controller nodes, an observer
  on broker-only nodes. Its requests travel over the controller listeners (``broker.peers``);
  requests it receives arrive through ``broker.handlers.quorum``;
* on controller nodes, the controller state machine (``replication.controller``), active while
  this node leads the quorum; its writes are proposals to the quorum and its answers leave once
  the quorum has committed them;
* the metadata image every broker serves from, replayed from committed records; ``on_image``
  callbacks (the replica manager) see every new image;
* metadata snapshots (``replication.snapshot``, KIP-630): at a start the image (and the standby
  controller's) is loaded from the newest snapshot and only the log after it is replayed; every
  ``metadata.log.max.record.bytes.between.snapshots`` bytes of committed batches (or
  ``metadata.log.max.snapshot.interval.ms``) the committed image is written as a new snapshot;
  when the Raft node installs a snapshot fetched from the leader, the image is reloaded from it
  (the callbacks see old and new, the controller resets from it);
* the broker's lifecycle: registration with the active controller and heartbeats every
  ``broker.heartbeat.interval.ms``; a fenced broker keeps heartbeating until it is caught up and
  unfenced.

Theory of operation. One task, ``_quorum_loop``, drives the sans-IO cores: it polls the Raft node
(sending its requests, completing held fetches), replays what became committed into the image
and the standby controller, activates or resigns the controller as leadership comes and goes,
runs the controller's timers, and sleeps until the next deadline or a wake-up. Handlers call
into the cores directly (everything runs on the trio thread) and wake the loop. Nothing here
blocks, except the fsyncs the Raft core does on the metadata log (small and rare) and the writing
and reading of a snapshot (one file of the image's size, at most once per
``metadata.log.max.record.bytes.between.snapshots`` of metadata).

The cluster id: every node of a cluster must agree on it. ``meta.properties`` keeps it once
written; a node formatted for the first time in cluster mode derives it from the voter set
(the same string on every node), so no separate format step is needed to try a cluster.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from broker.client import ConnectionConfig
from broker.config import BrokerConfig, describe_topic_configs, normalise_topic_config, validate_topic_configs
from broker.peers import Peers, PeerUnavailable
from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages import RESPONSES
from protocol.messages.add_raft_voter import AddRaftVoterRequest, AddRaftVoterResponse
from protocol.messages.allocate_producer_ids import AllocateProducerIdsRequest, AllocateProducerIdsResponse
from protocol.messages.broker_heartbeat import BrokerHeartbeatRequest, BrokerHeartbeatResponse
from protocol.messages.broker_registration import BrokerRegistrationRequest, BrokerRegistrationResponse
from protocol.messages.create_topics import CreateTopicsResponse
from protocol.messages.remove_raft_voter import RemoveRaftVoterRequest, RemoveRaftVoterResponse
from replication.controller import (
    ELR_VERSION_LEVEL_MAX,
    AnyTopicConfigs,
    ControllerConfig,
    ControllerResult,
    QuorumController,
)
from replication.metadata import ELR_VERSION_FEATURE, EMPTY_IMAGE, METADATA_VERSION_FEATURE, MetadataImage
from replication.quorum_state import QuorumStateStore
from replication.raft import (
    METADATA_PARTITION,
    METADATA_TOPIC,
    METADATA_TOPIC_ID,
    WIRE_VERSIONS,
    CommitCursor,
    CommittedBatch,
    ProposeRejected,
    RaftConfig,
    RaftNode,
    SendRequest,
    SendResponse,
)
from replication.records import decode_record, encode_record
from replication.snapshot import (
    SnapshotId,
    SnapshotPolicy,
    SnapshotPolicyConfig,
    image_from_snapshot,
    image_records,
)

if TYPE_CHECKING:
    from broker.core import Broker

log = logging.getLogger("trafka.cluster")

QUORUM_STATE_FILE = "quorum-state"
CONTROLLER_WAIT_MS_MAX = 30_000
PRODUCER_IDS_WAIT_MS = 5_000
CONTROLLED_SHUTDOWN_WAIT_MS = 10_000
RESIGN_GRACE_MS = 200
ELECT_LEADERS_VERSION = 2  # how long a request waits for the controller's answer to commit
SECURITY_PROTOCOL_PLAINTEXT = 0
METADATA_VERSION_RANGE = (1, 21)  # what this broker can read (the controller bootstraps 21)
SUPPORTED_FEATURES: dict[str, tuple[int, int]] = {  # feature -> the levels this node supports
    METADATA_VERSION_FEATURE: METADATA_VERSION_RANGE,
    ELR_VERSION_FEATURE: (0, ELR_VERSION_LEVEL_MAX),
}
_CLUSTER_NAMESPACE = uuid.UUID("6f2a3b1e-2f6e-4d4c-9a50-7472616b6130")


def cluster_id_for_voters(voters: str) -> str:
    """The cluster id a node derives from its voter set when it is formatted for the first time."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid5(_CLUSTER_NAMESPACE, voters).bytes).decode().rstrip("=")


def controller_config(cfg: BrokerConfig, *, cluster_id: str) -> ControllerConfig:
    """The controller's settings, from the broker's properties."""
    return ControllerConfig(
        cluster_id=cluster_id,
        broker_session_timeout_ms=cfg.get_int("broker.session.timeout.ms"),
        default_replication_factor=cfg.default_replication_factor,
        num_partitions=cfg.num_partitions,
        unclean_leader_election_enable=cfg.unclean_leader_election_enable,
        delete_topic_enable=cfg.delete_topic_enable,
        min_insync_replicas=cfg.min_insync_replicas,
        eligible_leader_replicas_version=1 if cfg.get_bool("eligible.leader.replicas.enable") else 0,
    )


class BrokerTopicConfigs(AnyTopicConfigs):
    """The controller's topic-config rules: the broker's own (``broker.config``), so a cluster
    validates, stores and describes topic overrides exactly as a single node does."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config

    def check(self, configs: Mapping[str, str]) -> tuple[str, str] | None:
        return validate_topic_configs(self.config, configs)

    def normalise(self, key: str, value: str) -> str:
        return normalise_topic_config(key, value)

    def describe(self, configs: Mapping[str, str]) -> list[CreateTopicsResponse.CreatableTopicConfigs]:
        return [CreateTopicsResponse.CreatableTopicConfigs(name=e.name, value=e.value, read_only=e.read_only,
                                                           config_source=e.source, is_sensitive=e.sensitive)
                for e in describe_topic_configs(self.config, configs, None)]


@dataclass(slots=True)
class _Held:
    """A request whose answer comes later: a parked Raft fetch, or a controller write."""

    done: trio.Event = field(default_factory=trio.Event)
    response: Message | None = None


class ClusterNode:
    def __init__(self, broker: Broker) -> None:
        cfg = broker.config
        self.broker = broker
        self.node_id = cfg.node_id
        self.is_controller = "controller" in cfg.process_roles
        self.is_broker = "broker" in cfg.process_roles
        self.voters = {v.node_id: (v.host, v.port) for v in cfg.controller_quorum_voters}
        self.raft_config = RaftConfig.from_properties(cfg.values)
        conn = ConnectionConfig(client_id=f"trafka-node-{self.node_id}",
                                request_timeout_ms=self.raft_config.request_timeout_ms,
                                connect_timeout_ms=self.raft_config.request_timeout_ms)
        # Requests to other nodes' controller listeners wait there until their answer commits,
        # and a connection answers in order: so the quorum's own traffic, the broker's
        # heartbeats and everything else (AlterPartition, forwarded admin requests) each get
        # connections of their own, and none waits behind another.
        self.raft_peers = Peers(self.voters, config=conn)
        self.lifecycle_peers = Peers(self.voters, config=conn)
        self.controller_peers = Peers(self.voters, config=conn)
        self.image: MetadataImage = EMPTY_IMAGE
        self.on_image: list[Callable[[MetadataImage, MetadataImage], None]] = []
        self.controller: QuorumController | None = None
        self.raft: RaftNode | None = None
        self.cursor = CommitCursor()
        self.snapshot_policy = SnapshotPolicy(SnapshotPolicyConfig.from_properties(cfg.values), now_ms=broker.now_ms())
        self._last_batch: CommittedBatch | None = None  # the last batch replayed into the image
        self.snapshots_loaded: list[SnapshotId] = []
        self._installs_seen = 0  # the Raft node's snapshots_fetched when the image last loaded one
        self._was_caught_up = False  # caught_up(image) when the image was last published
        self.broker_epoch = -1
        self.fenced = True
        self.incarnation_id = broker.new_uuid()
        self._wake = trio.Event()
        self._held_fetches: dict[int, _Held] = {}
        self._controller_replies: list[tuple[int, _Held, Message]] = []  # (offset, waiter, response)
        self._next_tag = 0
        self._image_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._producer_ids_lock = trio.Lock()
        self._want_shutdown = False
        self._shutdown_granted = trio.Event()
        self._lifecycle_wake = trio.Event()
        cfg_values = broker.config
        self.rebalance_interval_ms = (cfg_values.get_int("leader.imbalance.check.interval.seconds") * 1000
                                      if cfg_values.get_bool("auto.leader.rebalance.enable") else 0)
        self._next_rebalance_ms = 0
        self._next_producer_id = self._producer_ids_end = 0

    # --- start ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the metadata log and the quorum state (blocking; before serving)."""
        b = self.broker
        assert b.logs is not None
        now = b.now_ms()
        mlog = b.logs.get_or_create_log(METADATA_TOPIC, METADATA_PARTITION, topic_id=METADATA_TOPIC_ID, now_ms=now)
        store = QuorumStateStore(b.fs, f"{mlog.dir}/{QUORUM_STATE_FILE}")
        self.raft = RaftNode(
            node_id=self.node_id, directory_id=b.directory_id, voters=dict.fromkeys(self.voters),
            cluster_id=b.cluster_id, log=mlog, store=store, rng=b.rng, now_ms=now, config=self.raft_config)
        if self.is_controller:
            self.controller = QuorumController(
                controller_config(b.config, cluster_id=b.cluster_id), rng=b.rng,
                topic_configs=BrokerTopicConfigs(b.config))
        log.info("node %d: metadata quorum of %s, %s", self.node_id, sorted(self.voters),
                 "voter" if self.raft.is_voter else "observer")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for peers in (self.raft_peers, self.lifecycle_peers, self.controller_peers):
                await nursery.start(peers.run)
            nursery.start_soon(self._quorum_loop)
            if self.is_broker:
                nursery.start_soon(self._lifecycle_loop)
            task_status.started()

    # --- what handlers and the replica manager use ------------------------------------------------

    def now_ms(self) -> int:
        return self.broker.now_ms()

    def wake(self) -> None:
        self._wake.set()

    @property
    def leader_id(self) -> int:
        assert self.raft is not None
        return self.raft.leader_id

    @property
    def metadata_offset(self) -> int:
        """The last metadata offset replayed into ``image``."""
        return self.image.offset

    async def wait_for_image(self, predicate: Callable[[MetadataImage], bool], timeout_ms: int) -> bool:
        """Wait until the image satisfies ``predicate`` (True) or the timeout passes (False)."""
        with trio.move_on_after(timeout_ms / 1000):
            while not predicate(self.image):
                await self._image_changed.wait()
            return True
        return False

    async def raft_request(self, source: int, request: Message) -> Message:
        """Answer a quorum request (Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch of the
        metadata log, DescribeQuorum, FetchSnapshot); a fetch may be held for new data."""
        assert self.raft is not None
        tag = self._tag()
        response = self.raft.handle_request(self.now_ms(), source, tag, request)
        self.wake()
        if response is not None:
            return response
        held = _Held()
        self._held_fetches[tag] = held
        try:
            await held.done.wait()
        finally:
            self._held_fetches.pop(tag, None)
        assert held.response is not None
        return held.response

    async def voter_change(self, request: AddRaftVoterRequest | RemoveRaftVoterRequest) -> Message:
        """AddRaftVoter/RemoveRaftVoter: the quorum's leader carries it out (answering once the
        new voter set is committed); another node forwards it to the leader."""
        raft = self.raft
        assert raft is not None
        if raft.is_leader:
            return await self.raft_request(-1, request)
        timeout_ms = request.timeout_ms if isinstance(request, AddRaftVoterRequest) and request.timeout_ms > 0 \
            else self.raft_config.request_timeout_ms
        leader = raft.leader_id
        if leader >= 0 and leader != self.node_id:
            try:
                return await self.controller_peers.request(leader, request, RESPONSES[request.API_KEY],
                                                           timeout_ms=timeout_ms + self.raft_config.request_timeout_ms)
            except PeerUnavailable as e:
                log.info("voter change: leader %d unavailable: %s", leader, e)
        message = f"node {self.node_id} does not know a reachable quorum leader"
        if isinstance(request, AddRaftVoterRequest):
            return AddRaftVoterResponse(error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, error_message=message)
        return RemoveRaftVoterResponse(error_code=ErrorCode.NOT_LEADER_OR_FOLLOWER, error_message=message)

    async def controller_call(self, handle: Callable[[QuorumController], ControllerResult[Any]],
                              not_controller: Callable[[], Message]) -> Message:
        """Run one controller handler on this node and answer once its records commit.

        ``not_controller`` builds the NOT_CONTROLLER answer for a node that is not active.
        """
        c = self.controller
        if c is None or not c.is_active:
            return not_controller()
        result = handle(c)
        held = self._write(result)
        if held is None:
            return result.response
        with trio.move_on_after(CONTROLLER_WAIT_MS_MAX / 1000):
            await held.done.wait()
        return held.response if held.response is not None else not_controller()

    async def controlled_shutdown(self) -> None:
        """Before stopping: ask the controller to move this broker's leaderships away (heartbeats
        with WantShutDown until it answers ShouldShutDown, within ``controlled.shutdown`` wait of
        ``CONTROLLED_SHUTDOWN_WAIT_MS``), then, if this node leads the metadata quorum, resign so
        the voters elect another leader at once (EndQuorumEpoch)."""
        self._want_shutdown = True
        self._lifecycle_wake.set()
        if self.is_broker and self.broker_epoch >= 0:
            with trio.move_on_after(CONTROLLED_SHUTDOWN_WAIT_MS / 1000):
                await self._shutdown_granted.wait()
        raft = self.raft
        if raft is not None and raft.is_leader:
            raft.resign(self.now_ms())
            self.wake()
            await trio.sleep(RESIGN_GRACE_MS / 1000)  # time for the EndQuorumEpoch requests to leave

    async def allocate_producer_id(self) -> int | None:
        """A producer id unique in the cluster: from a block the controller handed this broker
        (AllocateProducerIds, as Kafka's brokers get them); None when no controller answers."""
        async with self._producer_ids_lock:
            if self._next_producer_id >= self._producer_ids_end:
                if self.broker_epoch < 0:
                    return None
                req = AllocateProducerIdsRequest(broker_id=self.node_id, broker_epoch=self.broker_epoch)
                resp = await self.controller_request(req, timeout_ms=PRODUCER_IDS_WAIT_MS)
                if not isinstance(resp, AllocateProducerIdsResponse) or resp.error_code != ErrorCode.NONE:
                    return None
                self._next_producer_id = resp.producer_id_start
                self._producer_ids_end = resp.producer_id_start + resp.producer_id_len
            pid = self._next_producer_id
            self._next_producer_id += 1
            return pid

    async def admin_call(self, request: Message, handle: Callable[[QuorumController], ControllerResult[Any]],
                         not_controller: Callable[[], Message], *, api_version: int) -> Message:
        """An admin request from a client (CreateTopics, DeleteTopics, ...): run by this node's
        controller when it is the active one, else forwarded to the active controller."""
        c = self.controller
        if c is not None and c.is_active:
            return await self.controller_call(handle, not_controller)
        resp = await self.controller_request(request, api_version=api_version)
        return resp if resp is not None else not_controller()

    async def controller_request(self, request: Message, *, timeout_ms: int = CONTROLLER_WAIT_MS_MAX,
                                 api_version: int | None = None, peers: Peers | None = None) -> Message | None:
        """Send ``request`` to the active controller (forwarding); None if there is none or it
        could not be reached within the timeout. Retries NOT_CONTROLLER on a new leader."""
        response_type = RESPONSES[request.API_KEY]
        with trio.move_on_after(timeout_ms / 1000):
            while True:
                leader = self.leader_id
                if leader >= 0:
                    try:
                        resp = await (peers or self.controller_peers).request(leader, request, response_type,
                                                                   api_version=api_version, timeout_ms=timeout_ms)
                        if getattr(resp, "error_code", 0) != ErrorCode.NOT_CONTROLLER:
                            return resp
                    except PeerUnavailable as e:
                        log.debug("controller %d unavailable: %s", leader, e)
                await trio.sleep(self.raft_config.retry_backoff_ms / 1000 + 0.05)
        return None

    # --- the loop ---------------------------------------------------------------------------------

    def _tag(self) -> int:
        self._next_tag += 1
        return self._next_tag

    async def _quorum_loop(self) -> None:
        raft = self.raft
        assert raft is not None and self._nursery is not None
        while True:
            now = self.now_ms()
            for effect in raft.poll(now):
                if isinstance(effect, SendRequest):
                    self._nursery.start_soon(self._send_raft, effect)
                elif isinstance(effect, SendResponse):
                    held = self._held_fetches.get(effect.correlation_id)
                    if held is not None:
                        held.response = effect.response
                        held.done.set()
            self._apply_committed(now)
            self._steer_controller(now)
            deadline = raft.next_deadline_ms()
            if self.controller is not None and (d := self.controller.next_deadline_ms()) is not None:
                deadline = min(deadline, d)
            wait_s = max(0.0, (deadline - self.now_ms()) / 1000) if deadline < 1 << 61 else math.inf
            with trio.move_on_after(wait_s):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _send_raft(self, effect: SendRequest) -> None:
        raft = self.raft
        assert raft is not None
        request = effect.request
        try:
            response = await self.raft_peers.request(
                effect.destination, request, RESPONSES[request.API_KEY],
                api_version=WIRE_VERSIONS.get(request.API_KEY), timeout_ms=self.raft_config.request_timeout_ms)
        except PeerUnavailable as e:
            log.debug("quorum request to %d lost: %s", effect.destination, e)
            return  # the core times the request out and retries
        raft.handle_response(self.now_ms(), effect.destination, effect.correlation_id, response)
        self.wake()

    def _apply_committed(self, now: int) -> None:
        raft = self.raft
        assert raft is not None
        old = self.image
        needed = self.cursor.snapshot_needed(raft)
        if needed is not None:
            self._load_snapshot(needed, now)
        while batches := self.cursor.drain(raft):
            for batch in batches:
                self.snapshot_policy.committed(batch.size_bytes)
                self._last_batch = batch
                if batch.is_control or not batch.records:
                    continue
                records = [decode_record(r) for r in batch.records]
                self.image = self.image.apply(records, base_offset=batch.base_offset)
                if self.controller is not None:
                    self.controller.handle_commit(base_offset=batch.base_offset, records=records)
        self._maybe_snapshot(now)
        hw = raft.high_watermark
        # Answer controller writes that are now committed.
        still = []
        for offset, held, response in self._controller_replies:
            if offset < hw:
                held.response = response
                held.done.set()
            else:
                still.append((offset, held, response))
        self._controller_replies = still
        caught_up = self.caught_up()
        if self.image is not old or (caught_up and not self._was_caught_up):
            # (an unchanged image is published again when this node catches up with the quorum:
            # the replica manager defers roles until then)
            for callback in self.on_image:
                callback(old, self.image)
        self._was_caught_up = caught_up
        if self.image is not old:
            self._image_changed.set()
            self._image_changed = trio.Event()

    def caught_up(self) -> bool:
        """Whether the image holds everything the quorum leader last said is committed (every
        batch below that high watermark, control batches included, has been replayed)."""
        raft = self.raft
        if raft is None:
            return False
        hw = raft.leader_high_watermark
        return hw >= 0 and self.cursor.next_offset >= hw

    def _load_snapshot(self, snapshot_id: SnapshotId, now: int) -> None:
        """Replace the image with a snapshot's: at a start, or when the Raft node installed one
        from the leader (the log no longer holds where the image was). The controller, standby
        by then (only a follower installs), resets from it too."""
        raft = self.raft
        assert raft is not None
        contents = raft.read_snapshot(snapshot_id)
        self.image = image_from_snapshot(contents)
        self.cursor.next_offset = snapshot_id.end_offset
        self.snapshot_policy.taken(now)
        self._last_batch = None
        self.snapshots_loaded.append(snapshot_id)
        c = self.controller
        if c is not None:
            if c.is_active:
                c.resign()
                self._fail_controller_replies()
            c.load_snapshot(self.image)
        fetched = raft.snapshots_fetched > self._installs_seen
        self._installs_seen = raft.snapshots_fetched
        log.info("node %d: metadata image loaded from snapshot %s (%d records, %d bytes)%s", self.node_id,
                 snapshot_id, len(contents.records), contents.size_bytes,
                 " fetched from the leader" if fetched else "")

    def _maybe_snapshot(self, now: int) -> None:
        """Write the committed image as a snapshot when the triggers say so."""
        raft, last = self.raft, self._last_batch
        assert raft is not None
        if last is None or last.last_offset + 1 != self.cursor.next_offset or not self.snapshot_policy.due(now):
            return
        snapshot_id = raft.create_snapshot(now, end_offset=self.cursor.next_offset, epoch=last.epoch,
                                           last_contained_timestamp_ms=last.timestamp_ms,
                                           records=image_records(self.image))
        self.snapshot_policy.taken(now)
        if snapshot_id is not None:
            log.info("node %d: wrote metadata snapshot %s; the log starts at %d", self.node_id, snapshot_id,
                     raft.log_start_offset)

    def _steer_controller(self, now: int) -> None:
        c, raft = self.controller, self.raft
        if c is None or raft is None:
            return
        if c.is_active and raft.is_leader and c.next_write_offset != raft.log_end_offset:
            # The Raft leader appended a voter change (a directory id recorded, AddRaftVoter,
            # RemoveRaftVoter): the controller's offsets no longer match the log. It resigns and
            # becomes active again once that is committed and replayed, as after a failover.
            log.info("node %d: controller restarts after a voter set change at %d", self.node_id,
                     c.next_write_offset)
            c.resign()
            self._fail_controller_replies()
            return
        if c.is_active and not raft.is_leader:
            log.info("node %d: controller resigns (epoch %d)", self.node_id, raft.epoch)
            c.resign()
            self._fail_controller_replies()
            return
        if not c.is_active and raft.is_leader and self.cursor.next_offset >= raft.high_watermark \
                and raft.high_watermark >= raft.log_end_offset:
            log.info("node %d: active controller in epoch %d", self.node_id, raft.epoch)
            self._write(c.become_active(next_write_offset=raft.log_end_offset, now_ms=now))
            self._next_rebalance_ms = now + self.rebalance_interval_ms
        if c.is_active:
            self._write(c.tick(now))
            if self.rebalance_interval_ms > 0 and now >= self._next_rebalance_ms:
                self._next_rebalance_ms = now + self.rebalance_interval_ms
                self._rebalance_leaders(c)

    def _rebalance_leaders(self, c: QuorumController) -> None:
        """``auto.leader.rebalance.enable``: every ``leader.imbalance.check.interval.seconds`` the
        active controller moves leadership back to the preferred replicas
        (``QuorumController.imbalanced_leaders``), so leaders spread out again after failovers."""
        req = c.imbalanced_leaders()
        if req is None:
            return
        log.info("node %d: moving %d leaders back to their preferred replicas", self.node_id,
                 sum(len(t.partitions) for t in req.topic_partitions or ()))
        self._write(c.handle_elect_leaders(req, version=ELECT_LEADERS_VERSION))

    def _write(self, result: ControllerResult[Any]) -> _Held | None:
        """Propose a controller result's records; the returned waiter gets the answer once they commit."""
        raft, c = self.raft, self.controller
        assert raft is not None and c is not None
        if not result.records:
            if result.reply_after_offset < 0 or result.reply_after_offset < raft.high_watermark:
                return None
            held = _Held()
            self._controller_replies.append((result.reply_after_offset, held, result.response))
            return held
        offset: int | ProposeRejected
        if raft.log_end_offset != c.next_write_offset - len(result.records):
            # A voter change was appended since the controller counted its offsets (see
            # _steer_controller): these records would not sit where it expects them.
            offset = ProposeRejected(error=ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                     message="the metadata log moved under the controller (a voter change)")
        else:
            offset = raft.propose(self.now_ms(), [encode_record(r) for r in result.records])
        if isinstance(offset, ProposeRejected):
            log.info("node %d: controller write refused (%s); resigning", self.node_id, offset.message)
            c.resign()
            self._fail_controller_replies()
            return _failed()
        held = _Held()
        self._controller_replies.append((max(offset, result.reply_after_offset), held, result.response))
        self.wake()
        return held

    def _fail_controller_replies(self) -> None:
        for _, held, _ in self._controller_replies:
            held.done.set()  # no response: the caller answers NOT_CONTROLLER
        self._controller_replies = []

    # --- broker lifecycle --------------------------------------------------------------------------

    def _registration(self) -> BrokerRegistrationRequest:
        b = self.broker
        host, port = b.advertised_address
        listeners = [BrokerRegistrationRequest.Listener(name=lst.name, host=host if lst.host in ("", "0.0.0.0") else lst.host,
                                                        port=lst.port or port,
                                                        security_protocol=SECURITY_PROTOCOL_PLAINTEXT)
                     for lst in b.config.advertised_listeners] or [
            BrokerRegistrationRequest.Listener(name="PLAINTEXT", host=host, port=port,
                                               security_protocol=SECURITY_PROTOCOL_PLAINTEXT)]
        for x in listeners:
            if x.port == 0:
                x.port = port
        return BrokerRegistrationRequest(
            broker_id=self.node_id, cluster_id=b.cluster_id, incarnation_id=self.incarnation_id,
            listeners=listeners,
            features=[BrokerRegistrationRequest.Feature(name=name, min_supported_version=lo, max_supported_version=hi)
                      for name, (lo, hi) in SUPPORTED_FEATURES.items()],
            rack=b.config.broker_rack, log_dirs=[b.directory_id],
            # KIP-966: the epoch this node had when it last shut down cleanly (-1 after a crash).
            previous_broker_epoch=b.logs.clean_shutdown_broker_epoch if b.logs is not None else -1)

    async def _lifecycle_loop(self) -> None:
        interval_s = self.broker.config.get_int("broker.heartbeat.interval.ms") / 1000
        session_ms = self.broker.config.get_int("broker.session.timeout.ms")
        while True:
            if self.broker_epoch < 0:
                # The answer waits for the record to commit, which may take longer than a heartbeat
                # interval, and a retry writes another registration record: give it as long as a
                # heartbeat gets (the session timeout).
                resp = await self.controller_request(self._registration(), timeout_ms=session_ms,
                                                     peers=self.lifecycle_peers)
                if isinstance(resp, BrokerRegistrationResponse) and resp.error_code == ErrorCode.NONE:
                    self.broker_epoch = resp.broker_epoch
                    log.info("node %d registered with broker epoch %d", self.node_id, self.broker_epoch)
                    # Partition roles wait for the registration (broker.replicas): publish the
                    # image again now that they may be taken.
                    for callback in self.on_image:
                        callback(self.image, self.image)
                    continue
                if resp is not None:
                    log.info("node %d: registration refused: %s", self.node_id,
                             ErrorCode(getattr(resp, "error_code", -1)).name)
                await trio.sleep(interval_s / 4)
                continue
            req = BrokerHeartbeatRequest(broker_id=self.node_id, broker_epoch=self.broker_epoch,
                                         current_metadata_offset=self.metadata_offset, want_fence=False,
                                         want_shut_down=self._want_shutdown)
            resp = await self.controller_request(req, timeout_ms=session_ms, peers=self.lifecycle_peers)
            if isinstance(resp, BrokerHeartbeatResponse):
                if resp.error_code == ErrorCode.STALE_BROKER_EPOCH:
                    self.broker_epoch = -1  # register again (the controller lost us)
                    continue
                if resp.error_code == ErrorCode.NONE and resp.should_shut_down:
                    self._shutdown_granted.set()
                if resp.error_code == ErrorCode.NONE and resp.is_fenced != self.fenced:
                    self.fenced = resp.is_fenced
                    log.info("node %d is %s", self.node_id, "fenced" if self.fenced else "unfenced")
            # A fenced broker asks again soon: it is waiting to be unfenced; so does one shutting down.
            with trio.move_on_after(interval_s / 4 if self.fenced or self._want_shutdown else interval_s):
                await self._lifecycle_wake.wait()
            self._lifecycle_wake = trio.Event()


def _failed() -> _Held:
    held = _Held()
    held.done.set()
    return held
