"""Goal: a whole Trafka KRaft cluster -- metadata quorum, controller, metadata image, broker
lifecycle and replicated partitions, all the real cores wired as the broker wires them -- keeps
Kafka's guarantees under any mix of faults the simulator can make, and recovers once they stop.

Each seed runs, on ``sim.core``'s seeded scheduler, three combined (broker, controller) nodes and
on some seeds a broker-only fourth, each a ``sim.cluster_node.SimClusterNode`` on its own
``SimFileSystem``: a ``RaftNode`` over the metadata log, a ``QuorumController`` active while the
node leads the quorum, the image replayed from committed batches, registration and heartbeats,
and a ``replication.partition.Partition`` per replica, leading or following as the image says,
with its fetchers, AlterPartition requests and acks=all produces. A producer creates a topic
(through whichever node it asks: the request is forwarded to the active controller), follows its
leaders through Metadata requests and sends unique values, mostly acks=all. On a share of seeds
every message is encoded and decoded at the versions the nodes use.

Faults: message delays (so reordering), drops, cut directions (a node isolated, one way or both;
a random split; one link; a partition leader cut off from the other voters: a zombie), stalled
follower fetchers (ISR shrinks and expansions), process kills (the page cache survives), clean
restarts (SIGTERM: a controlled shutdown, then a clean close that writes the broker epoch into
the clean-shutdown marker), power losses (the page cache is lost, sometimes with torn tails),
"strandings" (a partition leader's followers stall until it is the last ISR member, then it
loses power: KIP-966's case) and, on the broker-only node, a disk replaced by an empty one.
Automatic preferred-leader elections move leaderships back on some seeds. Most seeds run with
eligible leader replicas (KIP-966, Kafka 4.1's default for a new cluster), a fifth without
(Kafka 3.9's rules).

Losing data (a power loss, an empty disk) is injected only where the design survives it
(``may_lose_data``): with min.insync.replicas >= 2, every node up and registered, no cut, no
other fault until the node has registered its new life (until then it may still stand in ISRs
and ELRs whose data it lost), and the node not the only replica known to hold a partition's
committed records: the last member of its ISR without ELR (the controller keeps it and elects it
again, with what it has left), or of its ISR and ELR together with ELR (another ELR member leads;
the node, registering without a clean-shutdown marker, leaves both). The named scenario
``last_replica_standing_with_lost_page_cache`` forces the ELR case, and its control run without
ELR shows the checks catching the loss; ``elr_member_back_from_a_power_loss`` and its planted bug
(a controller that takes every restart for a clean one) do the same for unclean-shutdown
detection. A combined node's disk is never replaced: the broker gives the Raft core no directory
ids, so such a voter would vote again with an empty log (docs/replication.md, "Known gaps"; the
Raft simulator's control test).

Checked after every event, over global views the checks keep (``ClusterWorld``):

* Raft: at most one leader per epoch; a node's epoch never goes back and it votes once per
  epoch; its high watermark never goes back while it runs and is at most its log end; every
  node's committed batches are one global sequence; a new leader's log holds all of it (from
  its log start on, with a snapshot below); every node's metadata image equals the replay of
  that sequence up to the image's offset (for a node that loaded a snapshot, as the snapshot
  keeps it: ``replication.snapshot.as_of_snapshot``), and a snapshot it loads ends at a batch
  boundary of the sequence with that batch's epoch. On a share of seeds the nodes write metadata
  snapshots every few hundred bytes and clean the metadata log (``metadata.max.retention.bytes``
  0 or 3000), so restarted and wiped nodes load snapshots and lagging ones fetch them.
* Partitions: at most one leader per leader epoch; a replica's high watermark never goes back
  while it runs and is at most its log end; every replica's log agrees with the partition's
  committed sequence (the longest high-watermark prefix any replica has shown) below its high
  watermark, so any two replicas agree below the lower of theirs; every acknowledged acks=all
  write is committed at the offset it was acknowledged with; the committed sequence is in the
  log of every ISR and ELR member of the committed metadata (registered in its current life), of
  every leader the controller elects and of every replica when it takes leadership; a replica joins
  the ISR (checked when the controller handles the AlterPartition) only with everything
  committed and at least the leader's high watermark and leader epoch start offset in its log.

Then the network heals and every node runs again; within ``LIVENESS_MS`` a controller must be
active, every broker registered and unfenced, every partition led with its full ISR, a new
acks=all write acknowledged on every partition and every replica's high watermark at the end of
the committed sequence.

``TRAFKA_SIM_SEEDS`` sets how many seeds run (``DEFAULT_SEEDS``, 200: about 40 s of CPU here);
``TRAFKA_SIM_SEED=<n>`` reruns one (a failure names it). The named scenarios force an
AlterPartition in flight during a controller election and during a partition leader election, a
broker back with an empty disk, a partitioned zombie leader, the last replica standing losing its
page cache, and an ELR member back from a power loss.

What the simulator found. A node that comes back after losing data (power loss, or a replaced
disk) takes the partition roles of the metadata it replays before its new incarnation has
registered: where the image still names it leader (its old session lives on, and keeps the new
incarnation out with DUPLICATE_BROKER_REGISTRATION), it leads with the log it has left, and its
followers truncate committed, acknowledged records to match. With the broker's order, 10 of the
first 200 random seeds fail (3, 17, 28, 92, 95, 96, 111, 126, 145, 196; seed 95: the broker-only
node's disk is replaced while it leads partition 0, and 7 ms later, empty, it takes leadership
of leader epoch 0 again); ``test_a_restarted_broker_takes_no_role_before_it_registers`` forces
both cases. Kafka's broker publishes no metadata to its replica manager until it has registered
and replayed up to its registration, by which time the controller has moved the old
incarnation's leaderships away; the broker now does the same (``broker.replicas`` takes roles
only then), ``NodeSettings.roles_after_registration`` is that order, and the random seeds run
with it. And when a commit takes longer than the heartbeat interval (slow
links or fsyncs), a broker never registers: ``_lifecycle_loop`` gives a registration
``broker.heartbeat.interval.ms`` to be answered, the answer waits for the commit, and every
retry of the same incarnation writes another RegisterBrokerRecord, forever
(``test_registration_outlasts_a_slow_commit``; fixed: the broker now waits up to
``broker.session.timeout.ms`` for each attempt; a harsher random profile found it: 100 ms message
delays against a 100 ms heartbeat interval). (Also found, and fixed in the broker meanwhile: a restarted node served
partitions before the metadata assigned them, acknowledging writes as a single node; and a
leader's append did not wake the follower fetches it held, so every acks=all produce waited up to
``replica.fetch.wait.max.ms``.)

What should move out of the adapters (so this file's glue could be the adapters' own code):
``ClusterNode._apply_committed``, ``_steer_controller``, ``_rebalance_leaders``, ``_write`` and
``controller_call`` are quorum-loop logic around trio events: a sans-IO ``MetadataNode`` (Raft
node, controller, image, commit cursor, held replies keyed by a caller's token) would serve
both. ``ReplicaManager``'s ``apply_image``/``_apply``/``_remove``/``drain`` decisions,
``_fetch_request``, ``_apply_fetch_response`` and the ListOffsets follow-up are pure given a
partition table and could be functions returning actions; so are the cluster branches of
``handlers.produce._append``, ``handlers.fetch._replica_read`` and ``handlers.offsets``
(``SimClusterNode`` re-states each, naming the original).
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages import ApiKey
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.broker_registration import BrokerRegistrationRequest
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.records import NewRecord, build_batch
from replication.controller import QuorumController
from replication.metadata import MetadataImage, PartitionRegistration
from replication.partition import AlterPartitionProposal, ReplicaConfig
from replication.raft import METADATA_TOPIC_ID, CommittedBatch, RaftConfig, RaftRole, SendRequest
from replication.raft import WIRE_VERSIONS as RAFT_WIRE_VERSIONS
from replication.records import RegisterBrokerRecord, decode_record
from replication.snapshot import SnapshotId, SnapshotPolicyConfig, as_of_snapshot
from sim.cluster_node import NodeSettings, Observer, PartitionState, SimClusterNode, records_of
from sim.core import NetworkConfig, Simulation, SimulationFailure, chosen_seeds
from sim.test_raft_sim import describe as describe_raft
from sim.test_raft_sim import read_log
from storage.fs import SimFileSystem

TOPIC = "t"
CLIENT = 99
LIVENESS_MS = 30_000
DEFAULT_SEEDS = 200
METADATA_MS = 200  # the producer's metadata refresh
PRODUCE_TIMEOUT_MS = 1_500
CLIENT_TIMEOUT_MS = 3_000
IN_FLIGHT_MAX = 4  # per partition

WIRE_VERSIONS: dict[int, int] = {
    **RAFT_WIRE_VERSIONS,
    ApiKey.BROKER_REGISTRATION: 4,
    ApiKey.BROKER_HEARTBEAT: 1,
    ApiKey.ALTER_PARTITION: 3,
    ApiKey.CREATE_TOPICS: 7,
    ApiKey.METADATA: 12,
    ApiKey.PRODUCE: 11,
    ApiKey.LIST_OFFSETS: 10,  # what broker.peers negotiates with a Trafka peer
}

Entry = tuple[int, int, int, bool, tuple[bytes, ...]]  # a metadata batch: base, last, epoch, control, values
Record = tuple[int, bytes]  # a partition record: leader epoch, value


# --- what one seed looks like ----------------------------------------------------------------------


@dataclass(slots=True)
class Profile:
    """What one seed's cluster, workload and chaos look like."""

    brokers_only: int = 0  # broker-only nodes beside the three combined ones
    partitions: int = 2
    replication_factor: int = 3
    min_isr: int = 2
    timing: str = "fast"
    chaos_ms: int = 5_000
    delay_ms_max: int = 10
    drop_probability: float = 0.01
    kills: int = 2
    power_losses: int = 0
    clean_restarts: int = 0
    wipes: int = 0
    cuts: int = 1
    stalls: int = 1  # a node's follower fetchers stop for a while (the leaders shrink their ISRs)
    produce_every_ms: tuple[int, int] = (5, 40)
    acks_one_share: float = 0.1
    fetch_bytes_max: int = 1 << 20
    segment_bytes: int = 1 << 20
    rebalance_ms: int = 0  # auto.leader.rebalance.enable's check interval; 0: off
    writeback_ms: tuple[int, int] = (100, 1_000)  # how soon the OS writes new data back
    roundtrip: bool = False
    snapshot_bytes: int = 0  # metadata.log.max.record.bytes.between.snapshots (0: no snapshots)
    retention_bytes: int = -1  # metadata.max.retention.bytes (-1: the metadata log is never cleaned)
    elr: bool = True  # eligible.leader.replicas.enable: KIP-966's ELR (Kafka 4.1's default for a new cluster)
    strandings: int = 0  # a leader's followers stall until it is the last ISR member, then it loses power


def random_profile(rng: random.Random) -> Profile:
    brokers_only = 1 if rng.random() < 0.4 else 0
    min_isr = rng.choice([1, 2, 2])
    produce_every_ms = rng.choice([(2, 20), (5, 40), (50, 200)])
    return Profile(
        brokers_only=brokers_only,
        partitions=rng.randint(1, 3),
        min_isr=min_isr,
        timing=rng.choice(["fast", "fast", "slow"]),
        chaos_ms=rng.randint(2_000, 6_000),
        delay_ms_max=rng.choice([2, 10, 40]),
        drop_probability=rng.choice([0.0, 0.01, 0.05]),
        kills=rng.randint(0, 4),
        power_losses=rng.randint(0, 3) if min_isr >= 2 else 0,
        clean_restarts=rng.randint(0, 1),
        wipes=rng.randint(0, 1) if brokers_only else 0,
        cuts=rng.randint(0, 3),
        stalls=rng.randint(0, 2),
        produce_every_ms=produce_every_ms,
        acks_one_share=rng.choice([0.0, 0.2]),
        fetch_bytes_max=rng.choice([100, 1 << 20]) if produce_every_ms[0] >= 50 else 1 << 20,
        segment_bytes=rng.choice([700, 4096, 1 << 20]),
        rebalance_ms=rng.choice([0, 1_000, 3_000]),
        roundtrip=rng.random() < 0.2,
        # drawn last, so that every other choice of a seed is what it was before snapshots
        snapshot_bytes=rng.choice([0, 500, 2_000]),
        retention_bytes=rng.choice([-1, 0, 3_000]),
        elr=rng.random() < 0.8,  # drawn after those: the other fields are what they were before ELR
        strandings=rng.randint(0, 2) if min_isr >= 2 else 0,
    )


def settings_for(profile: Profile) -> NodeSettings:
    """Kafka's settings scaled down ("fast": about a tenth, "slow": about a fifth)."""
    voters = (1, 2, 3)
    if profile.timing == "fast":
        raft = RaftConfig(election_timeout_ms=150, fetch_timeout_ms=300, election_backoff_max_ms=150,
                          request_timeout_ms=300, fetch_wait_ms_max=100)
        beat, session, lag, socket = 100, 600, 500, 600
    else:
        raft = RaftConfig(election_timeout_ms=200, fetch_timeout_ms=400, election_backoff_max_ms=200,
                          request_timeout_ms=400, fetch_wait_ms_max=100)
        beat, session, lag, socket = 400, 1_800, 3_000, 2_000
    raft = dataclasses.replace(raft, retention_bytes=profile.retention_bytes, retention_ms=-1, clean_interval_ms=250)
    snapshot = (SnapshotPolicyConfig(record_bytes_between_snapshots=profile.snapshot_bytes, snapshot_interval_ms=0)
                if profile.snapshot_bytes else None)
    return NodeSettings(
        voters=voters, raft=raft, snapshot=snapshot,
        replica=ReplicaConfig(replica_lag_time_max_ms=lag, replica_fetch_backoff_ms=100,
                              replica_fetch_max_bytes=profile.fetch_bytes_max, alter_partition_retry_backoff_ms=200),
        heartbeat_interval_ms=beat, session_timeout_ms=session, fetch_wait_ms=100, socket_timeout_ms=socket,
        tick_ms=50, controller_wait_ms=3_000, min_insync_replicas=profile.min_isr,
        default_replication_factor=3, segment_bytes=profile.segment_bytes, writeback_ms=profile.writeback_ms,
        checkpoint_ms=500, rebalance_interval_ms=profile.rebalance_ms, controlled_shutdown_wait_ms=2_000,
        roles_after_registration=True, eligible_leader_replicas=profile.elr)


# --- the producer ------------------------------------------------------------------------------------


class ProducerClient:
    """Creates the topic, follows its leaders (highest leader epoch wins) and sends unique
    values, one partition per request, without retries: a value is written at most once."""

    def __init__(self, world: ClusterWorld, now_ms: int, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.out: list[SendRequest] = []
        self.next_cid = 0
        self.leaders: dict[int, tuple[int, int]] = {}  # partition -> (leader epoch, leader)
        self.pending: dict[int, tuple[str, int, bytes, int, int]] = {}  # cid -> kind, partition, value, acks, sent
        self.created = False
        self.timers = {"metadata": now_ms, "produce": now_ms + 1}

    def request(self, destination: int, request: Message, kind: str, partition: int = -1, value: bytes = b"",
                acks: int = 0, now_ms: int = 0) -> None:
        cid = self.next_cid
        self.next_cid += 1
        self.out.append(SendRequest(destination=destination, correlation_id=cid, request=request))
        self.pending[cid] = (kind, partition, value, acks, now_ms)

    def poll(self, now_ms: int) -> list[SendRequest]:
        for cid in [c for c, p in self.pending.items() if now_ms - p[4] > CLIENT_TIMEOUT_MS]:
            del self.pending[cid]
        if self.timers["metadata"] <= now_ms:
            self.refresh(now_ms)
        if self.timers["produce"] <= now_ms:
            self.produce(now_ms)
        out, self.out = self.out, []
        return out

    def next_deadline_ms(self) -> int:
        return min(self.timers.values())

    def refresh(self, now_ms: int) -> None:
        node = self.rng.choice(self.world.server_ids)
        if not self.created:
            req: Message = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
                name=TOPIC, num_partitions=self.world.profile.partitions,
                replication_factor=self.world.profile.replication_factor)], timeout_ms=3_000)
            self.request(node, req, "create", now_ms=now_ms)
        else:
            self.request(node, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=TOPIC)]),
                         "metadata", now_ms=now_ms)
        self.timers["metadata"] = now_ms + METADATA_MS

    def produce(self, now_ms: int) -> None:
        world = self.world
        rng = self.rng
        for pid, (_, leader) in sorted(self.leaders.items()):
            if leader < 0 or pid in world.done_after_heal:
                continue
            if sum(1 for p in self.pending.values() if p[0] == "produce" and p[1] == pid) >= IN_FLIGHT_MAX:
                continue
            value = b"%s%d-%d" % (world.value_prefix, pid, world.next_value)
            world.next_value += 1
            acks = 1 if rng.random() < world.profile.acks_one_share else -1
            batch = build_batch([NewRecord(value=value, timestamp=now_ms)])
            req = ProduceRequest(acks=acks, timeout_ms=PRODUCE_TIMEOUT_MS, topic_data=[
                ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
                    ProduceRequest.PartitionProduceData(index=pid, records=batch)])])
            world.produced.add(value)
            self.request(leader, req, "produce", pid, value, acks, now_ms)
        self.timers["produce"] = now_ms + rng.randint(*world.profile.produce_every_ms)

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        raise AssertionError("the producer serves nothing")

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        sent = self.pending.pop(correlation_id, None)
        if sent is None:
            return
        kind, pid, value, acks, at = sent
        if isinstance(response, CreateTopicsResponse):
            code = response.topics[0].error_code if response.topics else -1
            if code in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
                self.created = True
                self.timers["metadata"] = now_ms
        elif isinstance(response, MetadataResponse):
            for t in response.topics:
                if t.name != TOPIC or t.error_code != ErrorCode.NONE:
                    continue
                for p in t.partitions:
                    known = self.leaders.get(p.partition_index)
                    if known is None or p.leader_epoch >= known[0]:
                        self.leaders[p.partition_index] = (p.leader_epoch, p.leader_id)
        elif isinstance(response, ProduceResponse):
            pr = response.responses[0].partition_responses[0]
            if pr.error_code == ErrorCode.NONE and acks == -1:
                self.world.on_ack(pid, pr.base_offset, value, source, now_ms - at)
            elif pr.error_code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                self.timers["metadata"] = min(self.timers["metadata"], now_ms)


# --- the checks' views ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Mirror:
    """The checks' copy of one replica's log in one life of its node."""

    incarnation: int
    log_id: int
    entries: list[Record] = field(default_factory=list)
    verified: int = 0  # entries found equal to the committed sequence
    last_hw: int = 0


@dataclass(slots=True)
class RaftView:
    incarnation: int
    last_hw: int = 0
    image: MetadataImage | None = None  # the last image found equal to the global one


class ClusterWorld(Observer):
    """The simulated cluster, its producer, its faults and the checks of the module docstring."""

    def __init__(self, seed: int, profile: Profile, *, settings: NodeSettings | None = None) -> None:
        self.seed = seed
        self.profile = profile
        self.settings = settings or settings_for(profile)
        self.server_ids = (*self.settings.voters, *range(4, 4 + profile.brokers_only))
        # metadata
        self.meta: list[Entry] = []
        self.meta_at: dict[int, int] = {}  # base offset -> index in meta
        self.meta_end = 0
        self.images: dict[int, MetadataImage] = {-1: MetadataImage()}  # offset -> the committed image there
        self.image_offsets: list[int] = [-1]  # the keys of ``images``, ascending
        self.image = MetadataImage()
        self.raft_leaders: dict[int, int] = {}
        self.complete_epochs: set[int] = set()
        self.raft_epochs: dict[tuple[int, int], int] = {}
        self.votes: dict[tuple[int, int, int], int] = {}
        self.raft_views: dict[int, RaftView] = {}
        # partitions
        self.committed: dict[int, list[Record]] = {}
        self.mirrors: dict[tuple[int, int], Mirror] = {}
        self.part_leaders: dict[tuple[int, int], int] = {}  # (partition, leader epoch) -> node
        self.acked: dict[tuple[int, int], bytes] = {}
        self.produced: set[bytes] = set()
        self.proposals: dict[tuple[int, int, int, int, tuple[int, ...]], int] = {}  # -> first sent at
        self.appended: dict[int, int] = {}  # node -> produces appended as leader
        self.next_value = 0
        self.value_prefix = b"v"
        # faults and progress
        self.heal_ms: int | None = None
        self.done_after_heal: set[int] = set()
        self.exposed_node: int | None = None  # lost data, not registered again yet (``exposed``)
        self.stats: dict[str, int] = dict.fromkeys(
            ("acked", "ack_ms_total", "ack_ms_max", "raft_elections", "partition_elections", "elr_elections",
             "elr_joins", "unclean_registrations", "truncations", "isr_joins", "leader_end_asked", "power_losses",
             "power_losses_skipped", "kills", "wipes", "clean_restarts", "faults_skipped", "snapshots_loaded",
             "snapshots_fetched"), 0)
        self.hooks: list[Callable[[str, object], None]] = []
        self.client: ProducerClient | None = None
        self.sim = Simulation(
            seed, (*self.server_ids, CLIENT), self.make_node,
            network=NetworkConfig(delay_ms_min=1, delay_ms_max=profile.delay_ms_max,
                                  drop_probability=profile.drop_probability),
            checks=[self.check], wire_versions=WIRE_VERSIONS if profile.roundtrip else None, describe=describe)

    def make_node(self, node_id: int, fs: SimFileSystem, now_ms: int, rng: random.Random) -> Any:
        if node_id == CLIENT:
            assert self.client is None, "the producer does not crash"
            self.client = ProducerClient(self, now_ms, rng)
            return self.client
        return SimClusterNode(node_id, fs, now_ms, rng, settings=self.settings, observer=self)

    def node(self, node_id: int) -> SimClusterNode | None:
        n = self.sim.nodes[node_id]
        assert n is None or isinstance(n, SimClusterNode)
        return n

    def running(self) -> list[SimClusterNode]:
        return [n for n in (self.node(i) for i in self.server_ids) if n is not None]

    def controller(self) -> SimClusterNode | None:
        return next((n for n in self.running() if n.controller is not None and n.controller.is_active), None)

    def emit(self, event: str, detail: object) -> None:
        for hook in self.hooks:
            hook(event, detail)

    # --- Raft and the metadata --------------------------------------------------------------------

    def check(self, sim: Simulation) -> None:
        for node_id in sim.touched:
            n = sim.nodes[node_id]
            if isinstance(n, SimClusterNode):
                self.check_raft(n, sim.incarnation[node_id])
                self.check_partitions(n, sim.incarnation[node_id])
        self.check_isr()

    def check_raft(self, n: SimClusterNode, incarnation: int) -> None:
        raft = n.raft
        epoch = raft.epoch
        key = (n.id, n.directory_id.int)
        assert epoch >= self.raft_epochs.get(key, 0), f"node {n.id}'s epoch went back to {epoch}"
        self.raft_epochs[key] = epoch
        if raft.voted_id >= 0:
            earlier = self.votes.setdefault((n.id, n.directory_id.int, epoch), raft.voted_id)
            assert earlier == raft.voted_id, f"node {n.id} voted for {earlier} and {raft.voted_id} in epoch {epoch}"
        if raft.role is RaftRole.LEADER:
            leader = self.raft_leaders.setdefault(epoch, n.id)
            assert leader == n.id, f"two quorum leaders in epoch {epoch}: {leader} and {n.id}"
            if epoch not in self.complete_epochs:
                self.complete_epochs.add(epoch)
                self.stats["raft_elections"] += 1
                start = raft.log_start_offset
                got = read_log(raft.log, start, self.meta_end)
                want = self.meta[self.meta_at[start]:] if start < self.meta_end else []
                assert got[:len(want)] == want, (
                    f"quorum leader {n.id} of epoch {epoch} lacks committed metadata batches")
                latest = raft.latest_snapshot_id
                assert start == 0 or (latest is not None and latest.end_offset >= start), (
                    f"quorum leader {n.id}'s metadata log starts at {start} without a snapshot below")
        view = self.raft_views.get(n.id)
        if view is None or view.incarnation != incarnation:
            view = self.raft_views[n.id] = RaftView(incarnation)
        hw = raft.high_watermark
        assert hw >= view.last_hw, f"node {n.id}'s metadata high watermark went back from {view.last_hw} to {hw}"
        assert hw <= raft.log_end_offset, f"node {n.id}: metadata HW {hw} beyond its log end {raft.log_end_offset}"
        view.last_hw = hw
        assert raft.log_start_offset <= hw, f"node {n.id}: metadata log start beyond its HW {hw}"
        if n.image is not view.image:
            expected = self.committed_image_at(n.image.offset)
            if n.loaded_snapshot_end:
                # Loaded from a snapshot (and maybe replayed on): what a snapshot keeps of the
                # committed image (replication.snapshot.as_of_snapshot).
                expected = as_of_snapshot(expected, n.loaded_snapshot_end)
            assert n.image == expected, (
                f"node {n.id}'s metadata image at offset {n.image.offset} differs from the committed log's"
                + (f" (snapshot to {n.loaded_snapshot_end})" if n.loaded_snapshot_end else ""))
            view.image = n.image

    def committed_image_at(self, offset: int) -> MetadataImage:
        """The image after every committed data record up to ``offset``."""
        i = bisect.bisect_right(self.image_offsets, offset) - 1
        assert i >= 0 and offset < self.meta_end, f"no committed metadata at offset {offset} (it ends at {self.meta_end})"
        return self.images[self.image_offsets[i]]

    def snapshot_loaded(self, node: SimClusterNode, snapshot_id: SnapshotId, fetched: bool) -> None:
        end = snapshot_id.end_offset
        assert end in self.meta_at or end == self.meta_end, f"node {node.id}: snapshot {snapshot_id} ends inside a batch"
        index = self.meta_at.get(end, len(self.meta))
        assert index > 0 and self.meta[index - 1][2] == snapshot_id.epoch, (
            f"node {node.id}: snapshot {snapshot_id}, but the batch before {end} is of epoch {self.meta[index - 1][2]}")
        self.stats["snapshots_loaded"] += 1
        self.stats["snapshots_fetched"] += fetched

    def metadata_committed(self, node: SimClusterNode, batch: CommittedBatch) -> None:
        entry: Entry = (batch.base_offset, batch.last_offset, batch.epoch, batch.is_control, batch.records)
        index = self.meta_at.get(batch.base_offset)
        if index is not None:
            assert self.meta[index] == entry, (
                f"node {node.id} committed metadata {entry[:4]} where {self.meta[index][:4]} was committed")
            return
        assert batch.base_offset == self.meta_end, (
            f"node {node.id} committed a metadata batch at {batch.base_offset}; the committed log ends at {self.meta_end}")
        self.meta_at[batch.base_offset] = len(self.meta)
        self.meta.append(entry)
        self.meta_end = batch.last_offset + 1
        if not batch.is_control and batch.records:
            old = self.image
            records = [decode_record(r) for r in batch.records]
            self.image = self.image.apply(records, base_offset=batch.base_offset)
            self.images[self.image.offset] = self.image
            self.image_offsets.append(self.image.offset)
            self.on_committed_image(old, self.image)
            self.count_unclean_registrations(records, old, self.image)

    def on_committed_image(self, old: MetadataImage, new: MetadataImage) -> None:
        t_new, t_old = new.topic(TOPIC), old.topic(TOPIC)
        if t_new is None:
            return
        for pid, reg in t_new.partitions.items():
            prev = t_old.partitions.get(pid) if t_old is not None else None
            self.committed.setdefault(pid, [])
            if prev is not None:
                self.stats["elr_joins"] += len(set(reg.elr) - set(prev.elr))
            if reg.leader >= 0 and (prev is None or prev.leader_epoch != reg.leader_epoch):
                self.stats["partition_elections"] += 1
                if prev is not None and reg.leader != prev.leader and reg.leader in prev.elr:
                    self.stats["elr_elections"] += 1
                n = self.node(reg.leader)
                if n is not None and self.participating(n, new):
                    state = n.partitions.get((TOPIC, pid))
                    if state is not None:
                        self.verify(n, pid, state, len(self.committed[pid]), f"elected leader of epoch {reg.leader_epoch}")
                self.emit("elected", (pid, reg.leader, reg.leader_epoch))

    def count_unclean_registrations(self, records: list[Any], old: MetadataImage, new: MetadataImage) -> None:
        """A registration written with its broker's removal from an ELR: an unclean shutdown seen."""
        t_old, t_new = old.topic(TOPIC), new.topic(TOPIC)
        if t_old is None or t_new is None:
            return
        for r in records:
            if isinstance(r, RegisterBrokerRecord) and any(
                    r.broker_id in p.elr and (q := t_new.partitions.get(pid)) is not None and r.broker_id not in q.elr
                    for pid, p in t_old.partitions.items()):
                self.stats["unclean_registrations"] += 1

    # --- partitions -------------------------------------------------------------------------------

    def participating(self, n: SimClusterNode, image: MetadataImage | None = None) -> bool:
        """Registered in its current life with the broker epoch the committed metadata has."""
        reg = (image or self.image).broker(n.id)
        return n.broker_epoch >= 0 and reg is not None and reg.epoch == n.broker_epoch

    def mirror(self, n: SimClusterNode, pid: int, state: PartitionState) -> Mirror:
        """Bring the checks' copy of ``n``'s log of ``pid`` up to date (reading only what is new)."""
        inc = self.sim.incarnation[n.id]
        log = state.log
        m = self.mirrors.get((n.id, pid))
        if m is None or m.incarnation != inc or m.log_id != id(log):
            m = self.mirrors[(n.id, pid)] = Mirror(inc, id(log))
        assert log.log_start_offset == 0, f"node {n.id}: partition {pid}'s log starts at {log.log_start_offset}"
        if state.truncated_to is not None:
            self.stats["truncations"] += 1
            cut = min(state.truncated_to, len(m.entries))
            del m.entries[cut:]
            m.verified = min(m.verified, cut)
            state.truncated_to = None
        end = log.log_end_offset
        if end < len(m.entries):
            del m.entries[end:]
            m.verified = min(m.verified, end)
        if len(m.entries) < end:
            m.entries.extend(records_of(log, len(m.entries)))
        return m

    def verify(self, n: SimClusterNode, pid: int, state: PartitionState, upto: int, what: str) -> None:
        """``n``'s log of ``pid`` holds the committed sequence up to ``upto``."""
        m = self.mirror(n, pid, state)
        assert len(m.entries) >= upto, (
            f"node {n.id}, partition {pid}, {what}: its log ends at {len(m.entries)}, {upto} offsets are committed")
        committed = self.committed[pid]
        for i in range(m.verified, upto):
            assert m.entries[i] == committed[i], (
                f"node {n.id}, partition {pid}, {what}: offset {i} holds {m.entries[i]}, committed was {committed[i]}")
        m.verified = max(m.verified, upto)

    def check_partitions(self, n: SimClusterNode, incarnation: int) -> None:
        for (topic, pid), state in n.partitions.items():
            if topic != TOPIC:
                continue
            committed = self.committed.setdefault(pid, [])
            m = self.mirror(n, pid, state)
            hw = state.log.high_watermark
            assert hw <= len(m.entries), f"node {n.id}, partition {pid}: HW {hw} beyond its log end {len(m.entries)}"
            assert hw >= m.last_hw, f"node {n.id}, partition {pid}: high watermark went back from {m.last_hw} to {hw}"
            m.last_hw = hw
            replica = state.replica
            if replica is not None and replica.is_leader:
                leader = self.part_leaders.setdefault((pid, replica.leader_epoch), n.id)
                assert leader == n.id, f"partition {pid}: two leaders in leader epoch {replica.leader_epoch}: {leader}, {n.id}"
            c = len(committed)
            self.verify(n, pid, state, min(hw, c), "below its high watermark")
            if hw > c:
                committed.extend(m.entries[c:hw])
                m.verified = hw

    def check_isr(self) -> None:
        """Every ISR and ELR member (registered in its current life) holds the committed sequence:
        an ELR member is one the controller may elect once the ISR is gone (KIP-966)."""
        t = self.image.topic(TOPIC)
        if t is None:
            return
        for pid, reg in t.partitions.items():
            upto = len(self.committed.get(pid, ()))
            for b, what in [*((b, "ISR") for b in reg.isr), *((b, "ELR") for b in reg.elr)]:
                n = self.node(b)
                if n is None or not self.participating(n):
                    continue
                state = n.partitions.get((TOPIC, pid))
                if state is not None:
                    self.verify(n, pid, state, upto, f"in the {what} (ISR {list(reg.isr)}, ELR {list(reg.elr)}) "
                                                     f"at metadata offset {self.image.offset}")

    def took_leadership(self, node: SimClusterNode, state: PartitionState) -> None:
        pid = state.log.partition
        self.committed.setdefault(pid, [])
        assert state.replica is not None
        self.verify(node, pid, state, len(self.committed[pid]), f"taking leadership in epoch {state.replica.leader_epoch}")
        self.emit("leading", (node.id, pid, state.replica.leader_epoch))

    def produce_appended(self, node: SimClusterNode, state: PartitionState, acks: int) -> None:
        self.appended[node.id] = self.appended.get(node.id, 0) + 1

    def leader_end_offset_asked(self, node: SimClusterNode, state: PartitionState) -> None:
        self.stats["leader_end_asked"] += 1

    def proposal_sent(self, node: SimClusterNode, state: PartitionState, proposal: AlterPartitionProposal) -> None:
        key = (node.id, proposal.partition, proposal.leader_epoch, proposal.partition_epoch, proposal.isr)
        self.proposals.setdefault(key, self.sim.now_ms)
        self.emit("proposal", (node.id, proposal))

    def alter_partition_handled(self, node: SimClusterNode, request: AlterPartitionRequest,
                                before: MetadataImage, after: MetadataImage) -> None:
        changed = [p.partition_index for t in request.topics for p in t.partitions
                   if (b := before.topic_by_id(t.topic_id)) is not None and (a := after.topic_by_id(t.topic_id)) is not None
                   and b.partitions.get(p.partition_index) != a.partitions.get(p.partition_index)]
        self.emit("alter_partition", (node.id, request, changed))
        for t in request.topics:
            topic_before, topic_after = before.topic_by_id(t.topic_id), after.topic_by_id(t.topic_id)
            if topic_before is None or topic_after is None or topic_after.name != TOPIC:
                continue
            for p in t.partitions:
                old, new = topic_before.partition(p.partition_index), topic_after.partition(p.partition_index)
                if old is None or new is None or new.partition_epoch == old.partition_epoch:
                    continue
                isr = tuple(m.broker_id for m in p.new_isr_with_epochs)
                sent_ms = self.proposals.get((request.broker_id, p.partition_index, p.leader_epoch,
                                              p.partition_epoch, isr), -1)
                for m in p.new_isr_with_epochs:
                    if m.broker_id in old.isr or m.broker_id not in new.isr:
                        continue
                    self.check_join(request.broker_id, p.partition_index, p.leader_epoch, m.broker_id,
                                    m.broker_epoch, sent_ms)

    def check_join(self, leader_id: int, pid: int, leader_epoch: int, member: int, epoch: int, sent_ms: int) -> None:
        """A replica joins the ISR only with everything committed, the leader's HW and the leader
        epoch start offset in its log."""
        n = self.node(member)
        if n is None:
            return
        if epoch != -1 and epoch != n.broker_epoch:
            return  # another life fetched (the controller checks that epoch against its registration)
        if epoch == -1 and (sent_ms < 0 or n.started_ms > sent_ms):
            return  # the life that fetched is gone
        state = n.partitions.get((TOPIC, pid))
        assert state is not None, f"node {member} joins the ISR of partition {pid} without a replica"
        self.stats["isr_joins"] += 1
        self.verify(n, pid, state, len(self.committed.setdefault(pid, [])), "joining the ISR")
        leader = self.node(leader_id)
        lstate = leader.partitions.get((TOPIC, pid)) if leader is not None else None
        if lstate is not None and lstate.replica is not None and lstate.replica.leader_epoch == leader_epoch:
            end = state.log.log_end_offset
            start, hw = lstate.replica.leader_epoch_start_offset, lstate.log.high_watermark
            assert end >= start and end >= hw, (
                f"node {member} joins the ISR of partition {pid} at {end}: leader epoch start {start}, HW {hw}")

    def on_ack(self, pid: int, offset: int, value: bytes, source: int, latency_ms: int) -> None:
        committed = self.committed.get(pid, [])
        assert offset < len(committed) and committed[offset][1] == value, (
            f"node {source} acknowledged {value!r} at partition {pid} offset {offset}, but the committed log has "
            f"{committed[offset] if offset < len(committed) else 'nothing'} there")
        earlier = self.acked.setdefault((pid, offset), value)
        assert earlier == value, f"partition {pid} offset {offset} acknowledged for {earlier!r} and {value!r}"
        self.stats["acked"] += 1
        self.stats["ack_ms_total"] += latency_ms
        self.stats["ack_ms_max"] = max(self.stats["ack_ms_max"], latency_ms)
        if self.heal_ms is not None:
            self.done_after_heal.add(pid)
        self.emit("ack", (pid, offset, value))

    # --- faults ----------------------------------------------------------------------------------

    def kill(self, node_id: int) -> None:
        """The process dies; the page cache (everything written) survives."""
        if self.sim.nodes[node_id] is not None:
            self.stats["kills"] += 1
            self.sim.disks[node_id].sync_filesystem("/")
            self.sim.crash(node_id)

    def power_loss(self, node_id: int, *, torn: bool = False, force: bool = False) -> None:
        """The machine loses power: the page cache is lost. Unless ``force``, only when Kafka
        3.9's design survives it (``may_lose_data``); else the process is killed instead."""
        sim = self.sim
        if sim.nodes[node_id] is None:
            return
        if not force and not self.may_lose_data(node_id):
            self.stats["power_losses_skipped"] += 1
            self.kill(node_id)
            return
        self.stats["power_losses"] += 1
        self.exposed_node = node_id
        sim.crash(node_id, torn=torn)

    def wipe(self, node_id: int, *, force: bool = False) -> None:
        """The disk is replaced by an empty one (under the same rule as a power loss)."""
        if self.sim.nodes[node_id] is None:
            return
        if not force and not self.may_lose_data(node_id):
            self.kill(node_id)
            self.sim.schedule(self.sim.now_ms + 500, partial(self.restart, node_id), f"restart {node_id}")
            return
        self.stats["wipes"] += 1
        self.exposed_node = node_id
        self.sim.crash(node_id)
        self.sim.restart(node_id, wipe=True)

    def may_lose_data(self, node_id: int) -> bool:
        """Whether ``node_id`` may lose what it wrote: every node up and registered in its
        current life, no cut, no other node exposed, and ``node_id`` not the only replica known to
        hold a partition's committed records (``sole_holder``)."""
        running = self.running()
        return (not self.exposed() and not self.sim.network.cuts and len(running) == len(self.server_ids)
                and all(self.participating(n) for n in running) and not self.sole_holder(node_id))

    def exposed(self) -> bool:
        """A node lost data and has not registered its new life yet: until then it may stand in
        ISRs whose data it lost, and one more failure could leave it the last member."""
        v = self.exposed_node
        if v is None:
            return False
        n = self.node(v)
        if n is not None and self.participating(n):
            self.exposed_node = None
            return False
        return True

    def sole_holder(self, node_id: int) -> bool:
        """``node_id`` is the last member of an ISR -- or, with ELR, of an ISR and ELR together.
        Without ELR the controller keeps the last ISR member and elects it again when it is back,
        with what it has left; with ELR another member of the ELR leads, and the node, back from
        an unclean shutdown, leaves the ISR and the ELR."""
        t = self.image.topic(TOPIC)
        if t is None:
            return False
        for reg in t.partitions.values():
            holders = set(reg.isr) | (set(reg.elr) if self.image.elr_enabled else set())
            if node_id in holders and not holders - {node_id}:
                return True
        return False

    def clean_restart(self, node_id: int) -> None:
        """SIGTERM and a start: ``ClusterNode.controlled_shutdown`` (heartbeats asking to shut
        down until granted or the wait ends, then the quorum leadership resigned and a grace
        period), a clean close of the logs, and a new process on the same disk."""
        n = self.node(node_id)
        if n is None:
            return
        sim, settings = self.sim, self.settings
        n.begin_controlled_shutdown(sim.now_ms)
        sim.touch(node_id)
        deadline = sim.now_ms + settings.controlled_shutdown_wait_ms

        def wait() -> None:
            if self.node(node_id) is not n:
                return  # it crashed meanwhile
            if not n.shutdown_granted and n.broker_epoch >= 0 and sim.now_ms < deadline:
                sim.schedule(sim.now_ms + 20, wait, f"node {node_id} waits for its controlled shutdown")
                return
            n.resign(sim.now_ms)
            sim.touch(node_id)
            sim.schedule(sim.now_ms + settings.resign_grace_ms, stop, f"node {node_id} stops")

        def stop() -> None:
            if self.node(node_id) is n:
                self.stats["clean_restarts"] += 1
                n.close(sim.now_ms)
                sim.crash(node_id)  # nothing unsynced is left to lose
                sim.restart(node_id)

        wait()

    def restart(self, node_id: int) -> None:
        if self.sim.nodes[node_id] is None:
            self.sim.restart(node_id)

    def stall(self, node_id: int, stalled: bool) -> None:
        n = self.node(node_id)
        if n is not None:
            n.fetchers_stalled = stalled
            self.sim.touch(node_id)

    def strand(self, pid: int, lose_after_ms: int, back_after_ms: int) -> None:
        """KIP-966's "last replica standing": ``pid``'s followers stop fetching, so its leader
        shrinks the ISR to itself (with ELR they enter the ELR); then the leader loses power (under
        the ``may_lose_data`` rule: with ELR another ELR member holds everything committed;
        without, the last ISR member must not lose data, and it is killed instead) and comes back,
        and the followers fetch again."""
        sim = self.sim
        leader = self.partition_leader(pid)
        t = self.image.topic(TOPIC)
        if leader < 0 or t is None:
            return
        followers = [b for b in t.partitions[pid].replicas if b != leader]
        for b in followers:
            self.stall(b, True)
        sim.schedule(sim.now_ms + lose_after_ms, self.fault(partial(self.power_loss, leader), "power loss"),
                     f"power loss {leader}, stranded")
        sim.schedule(sim.now_ms + lose_after_ms + 100, partial(self.restart, leader), f"restart {leader}")
        for b in followers:
            sim.schedule(sim.now_ms + back_after_ms, partial(self.stall, b, False), f"unstall {b}")

    def fault(self, action: Callable[[], None], label: str) -> Callable[[], None]:
        """``action`` unless a node is exposed (see ``exposed``) or the chaos is over."""
        def maybe() -> None:
            if self.heal_ms is None and not self.exposed():
                action()
            else:
                self.stats["faults_skipped"] += 1
        return maybe

    def partition_leader(self, pid: int = 0) -> int:
        t = self.image.topic(TOPIC)
        reg = t.partitions.get(pid) if t is not None else None
        return reg.leader if reg is not None else -1

    def schedule_chaos(self) -> None:
        sim, rng, p = self.sim, self.sim.rng, self.profile
        end = p.chaos_ms
        servers = self.server_ids
        f = self.fault
        for _ in range(p.kills):
            node_id, at = rng.choice(servers), rng.randint(300, end)
            sim.schedule(at, f(partial(self.kill, node_id), "kill"), f"kill {node_id}")
            sim.schedule(at + rng.randint(0, 2_000), partial(self.restart, node_id), f"restart {node_id}")
        for _ in range(p.power_losses):
            node_id, at, torn = rng.choice(servers), rng.randint(300, end), rng.random() < 0.3
            sim.schedule(at, f(partial(self.power_loss, node_id, torn=torn), "power loss"), f"power loss {node_id}")
            sim.schedule(at + rng.randint(0, 2_000), partial(self.restart, node_id), f"restart {node_id}")
        for _ in range(p.clean_restarts):
            node_id = rng.choice(servers)
            sim.schedule(rng.randint(300, end), f(partial(self.clean_restart, node_id), "clean restart"),
                         f"clean restart {node_id}")
        for _ in range(p.wipes):
            node_id = rng.choice(servers[3:])
            sim.schedule(rng.randint(300, end), f(partial(self.wipe, node_id), "wipe"), f"wipe {node_id}")
        for _ in range(p.strandings):
            pid, at = rng.randrange(p.partitions), rng.randint(300, end)
            lose_at = self.settings.replica.replica_lag_time_max_ms + rng.randint(100, 1_500)
            back_at = lose_at + rng.randint(0, 2_000)
            sim.schedule(at, f(partial(self.strand, pid, lose_at, back_at), "strand"), f"strand p{pid}'s leader")
        for _ in range(p.stalls):
            node_id, at = rng.choice(servers), rng.randint(300, end)
            sim.schedule(at, f(partial(self.stall, node_id, True), "stall"), f"stall {node_id}'s fetchers")
            sim.schedule(at + rng.randint(100, 3_000), partial(self.stall, node_id, False), f"unstall {node_id}")
        for _ in range(p.cuts):
            at = rng.randint(300, end)
            sim.schedule(at, f(self.cut_action(rng), "cut"), "cut")
            sim.schedule(at + rng.randint(100, 3_000), sim.network.heal, "heal network")

    def cut_action(self, rng: random.Random) -> Callable[[], None]:
        kind = rng.choice(["isolate", "isolate-in", "isolate-out", "split", "zombie", "link"])
        servers = list(self.server_ids)
        a, b = rng.sample(servers, 2)
        rng.shuffle(servers)
        cut_at = rng.randint(1, len(servers) - 1)
        net = self.sim.network
        everyone = (*self.server_ids, CLIENT)

        def act() -> None:
            if kind == "isolate":
                net.isolate(a, everyone)
            elif kind == "isolate-in":
                net.isolate(a, everyone, outbound=False)
            elif kind == "isolate-out":
                net.isolate(a, everyone, inbound=False)
            elif kind == "split":
                net.split(servers[:cut_at], servers[cut_at:])
            elif kind == "zombie":
                self.cut_zombie(self.partition_leader(0) if self.partition_leader(0) >= 0 else a)
            else:
                net.cut(a, b)

        return act

    def cut_zombie(self, leader: int) -> None:
        """``leader`` loses the quorum's voters (and they it), but keeps its followers and the producer."""
        for v in self.settings.voters:
            if v != leader:
                self.sim.network.cut(leader, v)
        # (the voters are combined nodes, so followers among them are cut off too: a zombie keeps
        # only a broker-only follower and the producer)

    # --- running -----------------------------------------------------------------------------------

    def heal(self) -> None:
        self.heal_ms = self.sim.now_ms
        self.value_prefix = b"h"
        self.sim.network.heal()
        self.sim.network.config.drop_probability = 0.0
        for node_id in self.server_ids:
            self.restart(node_id)
            self.stall(node_id, False)

    def settled(self) -> bool:
        t = self.image.topic(TOPIC)
        if t is None or self.controller() is None:
            return False
        nodes = self.running()
        if len(nodes) != len(self.server_ids) or any(n.fenced or not self.participating(n) for n in nodes):
            return False
        if self.done_after_heal != set(t.partitions):
            return False
        for pid, reg in t.partitions.items():
            if reg.leader < 0 or set(reg.isr) != set(reg.replicas):
                return False
            end = len(self.committed.get(pid, ()))
            for b in reg.replicas:
                n = self.node(b)
                state = n.partitions.get((TOPIC, pid)) if n is not None else None
                if state is None or state.log.high_watermark != end:
                    return False
        return True

    def run(self, *, chaos: bool = True) -> None:
        """Chaos, then heal and require recovery; raise ``SimulationFailure`` naming the seed."""
        if chaos:
            self.schedule_chaos()
            self.sim.run_until(self.profile.chaos_ms + 2_500)
        self.finish()

    def finish(self) -> None:
        self.heal()
        if not self.sim.run_until_true(self.settled, deadline_ms=self.sim.now_ms + LIVENESS_MS):
            raise self.sim.failure(f"no recovery within {LIVENESS_MS} ms of healing: {self.status()}")
        self.final_checks()

    def status(self) -> str:
        t = self.image.topic(TOPIC)
        parts = ", ".join(f"p{pid}: leader {r.leader}@{r.leader_epoch} ISR {list(r.isr)} committed "
                          f"{len(self.committed.get(pid, ()))}" for pid, r in sorted(t.partitions.items())) if t else "no topic"
        nodes = "; ".join(repr(n) + " HWs " + ",".join(
            f"p{tp[1]}:{s.log.high_watermark}/{s.log.log_end_offset}" for tp, s in sorted(n.partitions.items()))
            for n in self.running())
        return f"{parts}; acknowledged after heal {sorted(self.done_after_heal)}; {nodes}"

    def final_checks(self) -> None:
        seen: set[bytes] = set()
        for records in self.committed.values():
            for _, value in records:
                assert value in self.produced, f"committed value {value!r} was never produced"
                assert value not in seen, f"value {value!r} committed twice"
                seen.add(value)

    def run_until(self, predicate: Callable[[], bool], within_ms: int, what: str) -> None:
        if not self.sim.run_until_true(predicate, deadline_ms=self.sim.now_ms + within_ms):
            raise self.sim.failure(f"scenario: {what} did not happen within {within_ms} ms: {self.status()}")


def describe(message: Message) -> str:
    """One line per message for the failure trace."""
    if isinstance(message, FetchRequest) and message.topics and message.topics[0].topic_id != METADATA_TOPIC_ID:
        fetches = [f"p{fp.partition}@{fp.fetch_offset}/e{fp.current_leader_epoch}/last{fp.last_fetched_epoch}"
                   for t in message.topics for fp in t.partitions]
        rs = message.replica_state
        return f"ReplicaFetch(replica={rs.replica_id}@{rs.replica_epoch} {' '.join(fetches)})"
    if isinstance(message, FetchResponse) and message.responses and message.responses[0].topic_id != METADATA_TOPIC_ID:
        answers = []
        for t in message.responses:
            for rp in t.partitions:
                size = len(rp.records) if isinstance(rp.records, bytes | bytearray | memoryview) else 0
                div = rp.diverging_epoch
                answers.append(f"p{rp.partition_index} err={rp.error_code} hw={rp.high_watermark} bytes={size}"
                               + (f" diverging={div.epoch}:{div.end_offset}" if div.epoch >= 0 else ""))
        return f"ReplicaFetchResponse({'; '.join(answers)})"
    if isinstance(message, ProduceRequest):
        return f"Produce(acks={message.acks} p{message.topic_data[0].partition_data[0].index})"
    if isinstance(message, ProduceResponse):
        pr = message.responses[0].partition_responses[0]
        return f"ProduceResponse(p{pr.index} err={pr.error_code} offset={pr.base_offset})"
    if isinstance(message, AlterPartitionRequest):
        ap = message.topics[0].partitions[0]
        return (f"AlterPartition(from={message.broker_id}@{message.broker_epoch} p{ap.partition_index} "
                f"leader_epoch={ap.leader_epoch} partition_epoch={ap.partition_epoch} "
                f"isr={[(m.broker_id, m.broker_epoch) for m in ap.new_isr_with_epochs]})")
    if isinstance(message, AlterPartitionResponse):
        if not message.topics:
            return f"AlterPartitionResponse(err={message.error_code})"
        ar = message.topics[0].partitions[0]
        return (f"AlterPartitionResponse(err={ar.error_code} leader={ar.leader_id}@{ar.leader_epoch} "
                f"partition_epoch={ar.partition_epoch} isr={ar.isr})")
    return describe_raft(message)


# --- random seeds --------------------------------------------------------------------------------------


def run_seed(seed: int) -> ClusterWorld:
    world = ClusterWorld(seed, random_profile(random.Random(seed * 7919 + 11)))
    world.run()
    return world


def seeds() -> list[int]:
    return chosen_seeds(DEFAULT_SEEDS)


def test_random_faults() -> None:
    chosen = seeds()
    totals: dict[str, int] = {}
    events = 0
    for seed in chosen:
        try:
            world = run_seed(seed)
        except SimulationFailure as exc:
            raise SimulationFailure(
                f"rerun: TRAFKA_SIM_SEED={seed} pytest tests/sim/test_cluster_sim.py -k random_faults\n{exc}") from None
        for k, v in world.stats.items():
            totals[k] = max(totals.get(k, 0), v) if k.endswith("_max") else totals.get(k, 0) + v
        events += world.sim.events
    mean_ack = totals["ack_ms_total"] // max(totals["acked"], 1)
    print(f"{len(chosen)} seeds, {events} events: {totals}, mean acks=all latency {mean_ack} ms")
    assert totals["acked"] >= 10 * len(chosen), "writes are acknowledged in most runs"
    if len(chosen) >= 20:
        assert totals["raft_elections"] > len(chosen) and totals["partition_elections"] > 2 * len(chosen), totals
        assert totals["truncations"] > 0 and totals["isr_joins"] > 0 and totals["power_losses"] > 0, totals
        assert totals["elr_joins"] > 0 and totals["unclean_registrations"] > 0, totals
    if len(chosen) >= 100:
        assert totals["snapshots_loaded"] > 0 and totals["snapshots_fetched"] > 0, totals
        assert totals["elr_elections"] > 0, totals  # a leader elected from the ELR (KIP-966)


# --- named scenarios -----------------------------------------------------------------------------------


def scenario_world(seed: int, *, roles_after_registration: bool = True, **overrides: Any) -> ClusterWorld:
    """A quiet world (no random faults, no drops, short delays) for a scripted scenario."""
    quiet = Profile(kills=0, cuts=0, stalls=0, power_losses=0, drop_probability=0.0, delay_ms_max=5, partitions=1,
                    acks_one_share=0.0)
    profile = dataclasses.replace(quiet, **overrides)
    settings = dataclasses.replace(settings_for(profile), roles_after_registration=roles_after_registration)
    return ClusterWorld(seed, profile, settings=settings)


def warm_up(world: ClusterWorld, acks: int = 20) -> None:
    def ready() -> bool:
        t = world.image.topic(TOPIC)
        return (world.stats["acked"] >= acks and t is not None
                and all(set(r.isr) == set(r.replicas) for r in t.partitions.values()))
    world.run_until(ready, 20_000, f"{acks} acknowledged writes with full ISRs")


def registration(world: ClusterWorld, pid: int = 0) -> PartitionRegistration:
    t = world.image.topic(TOPIC)
    reg = t.partitions.get(pid) if t is not None else None
    assert reg is not None, f"partition {pid} does not exist"
    return reg


def alter_partition_during_controller_election(seed: int) -> ClusterWorld:
    """A partition leader's ISR shrink reaches the active controller, which writes it; the
    controller is cut off at once, before the write can commit. The quorum elects another
    controller, the uncommitted change is forgotten, and the leader's proposal (unanswered, or
    NOT_CONTROLLER) is sent again to the new one. Nothing acknowledged is lost; the ISR ends full."""
    world = scenario_world(seed)
    warm_up(world)
    net = world.sim.network
    leader = world.partition_leader(0)
    move_quorum_leadership_from(world, leader)
    controller = world.controller()
    assert controller is not None
    follower = next(b for b in registration(world).replicas if b not in (leader, controller.id))
    handled: list[int] = []

    def hook(event: str, detail: object) -> None:
        if event == "alter_partition" and not handled and isinstance(detail, tuple) and detail[1].broker_id == leader:
            handled.append(detail[0])
            net.isolate(detail[0], (*world.server_ids, CLIENT))  # its records never leave it
    world.hooks.append(hook)
    world.stall(follower, True)  # the follower stops fetching: the leader proposes to shrink the ISR
    world.run_until(lambda: bool(handled), 10_000, "the shrink handled by the controller")
    world.run_until(lambda: (c := world.controller()) is not None and c.id != controller.id, 10_000,
                    "a new controller")
    # The old controller's write never commits (the checks after every event would see an image
    # that differs from the committed log); by now the leader may already have sent its proposal
    # again and the new controller committed it.
    world.run_until(lambda: follower not in registration(world).isr, 10_000,
                    "the shrink sent again and committed by the new controller")
    world.finish()
    return world


def alter_partition_during_leader_election(seed: int) -> ClusterWorld:
    """A shrink proposal is delayed in the network while its sender is cut off from the quorum,
    fenced, and replaced as partition leader; when it reaches the controller it must change
    nothing (FENCED_LEADER_EPOCH), and the old leader, healed, follows the new one."""
    world = scenario_world(seed)
    warm_up(world)
    sim, net = world.sim, world.sim.network
    leader = world.partition_leader(0)
    move_quorum_leadership_from(world, leader)  # the proposal must travel to another node
    follower = next(b for b in registration(world).replicas if b != leader)
    delayed: list[int] = []
    arrived: list[tuple[int, list[int]]] = []

    def hook(event: str, detail: object) -> None:
        if event == "proposal" and not delayed and isinstance(detail, tuple) and detail[0] == leader:
            delayed.append(sim.now_ms)
            net.config.delay_ms_min = net.config.delay_ms_max = 2_000  # this message and its neighbours
            sim.schedule(sim.now_ms, partial(restore_delay, world), "restore delays")
            sim.schedule(sim.now_ms, partial(world.cut_zombie, leader), f"cut {leader} from the quorum")
            sim.schedule(sim.now_ms + 1_500, net.heal, "heal")
        if event == "alter_partition" and delayed and isinstance(detail, tuple) and detail[1].broker_id == leader:
            arrived.append((detail[1].topics[0].partitions[0].leader_epoch, detail[2]))
    world.hooks.append(hook)
    world.stall(follower, True)
    world.run_until(lambda: bool(delayed), 10_000, "a proposal from the leader")
    epoch = registration(world).leader_epoch
    world.run_until(lambda: world.partition_leader(0) not in (-1, leader), 10_000, "another leader elected")
    world.run_until(lambda: any(e == epoch for e, _ in arrived), 5_000, "the late proposal delivered")
    assert all(not changed for e, changed in arrived if e == epoch), "the late proposal was refused"
    world.finish()
    return world


def move_quorum_leadership_from(world: ClusterWorld, node_id: int) -> None:
    """Make sure the active controller is not ``node_id`` (it resigns the quorum leadership)."""
    controller = world.controller()
    if controller is not None and controller.id == node_id:
        controller.resign(world.sim.now_ms)
        world.sim.touch(node_id)
        world.run_until(lambda: (c := world.controller()) is not None and c.id != node_id, 10_000,
                        "another controller")


def restore_delay(world: ClusterWorld) -> None:
    cfg = world.sim.network.config
    cfg.delay_ms_min, cfg.delay_ms_max = 1, world.profile.delay_ms_max


def broker_back_with_an_empty_disk(seed: int) -> ClusterWorld:
    """The broker-only node, a replica of every partition, loses its disk and comes back empty:
    it fetches the metadata log from the start as an observer, registers as a new incarnation
    (which leaves every ISR), refetches every partition and rejoins the ISRs only once caught up
    (checked at every join); then, made leader, it loses nothing committed."""
    world = scenario_world(seed, brokers_only=1, partitions=2, replication_factor=4)
    warm_up(world)
    joins = world.stats["isr_joins"]
    world.wipe(4)
    assert world.stats["wipes"] == 1

    def registered() -> bool:
        n = world.node(4)
        return n is not None and world.participating(n)
    world.run_until(registered, 10_000, "the wiped broker registered again")
    t = world.image.topic(TOPIC)
    assert t is not None and all(4 not in r.isr for r in t.partitions.values()), "a new incarnation leaves the ISRs"
    world.run_until(lambda: all(4 in registration(world, pid).isr for pid in (0, 1)), 15_000,
                    "the wiped broker back in every ISR")
    assert world.stats["isr_joins"] >= joins + 2
    for victim in (1, 2, 3):  # kill the others' processes, leaders first, until it leads
        if world.partition_leader(0) == victim:
            world.kill(victim)
            world.sim.schedule(world.sim.now_ms + 2_000, partial(world.restart, victim), f"restart {victim}")
    world.finish()
    return world


def partitioned_zombie_leader(seed: int) -> ClusterWorld:
    """A partition leader (a combined node) is cut off from the other voters, and the producer
    from everyone else: the zombie keeps its broker-only follower and the producer and goes on
    taking writes. None of its acks=all writes may be acknowledged (the checks see every
    acknowledgement); healed, it follows the new leader and truncates what it alone took."""
    world = scenario_world(seed, brokers_only=1, replication_factor=4, acks_one_share=0.3)
    warm_up(world)
    zombie = world.partition_leader(0)
    z = world.node(zombie)
    assert z is not None
    world.cut_zombie(zombie)
    for b in world.server_ids:
        if b != zombie:
            world.sim.network.cut(CLIENT, b)  # the producer keeps asking the zombie for metadata
    world.run_until(lambda: world.partition_leader(0) not in (-1, zombie), 10_000, "a new leader")
    state = z.partitions[(TOPIC, 0)]
    appended, acked = world.appended.get(zombie, 0), world.stats["acked"]
    world.run_until(lambda: world.appended.get(zombie, 0) > appended, 5_000, "the zombie took writes")
    assert state.replica is not None and state.replica.is_leader, "the zombie still believes it leads"
    world.sim.run_until(world.sim.now_ms + 1_000)
    assert world.stats["acked"] == acked, "no acks=all write was acknowledged by the zombie"
    truncations = world.stats["truncations"]
    world.finish()
    assert world.stats["truncations"] > truncations, "the zombie's unacknowledged tail was cut"
    return world


NO_WRITEBACK = (600_000, 600_000)  # the OS never writes new data back in these scenarios


def last_replica_standing_with_lost_page_cache(seed: int, *, elr: bool = True) -> ClusterWorld:
    """The followers' fetchers stall, so the leader shrinks the ISR to itself; it then loses its
    page cache and comes back at once. The followers stay stalled until the leader's new life has
    registered, so that registration, not a follower rejoining, decides what happens.

    With ELR (KIP-966) the followers left an ISR below min.insync.replicas, so they entered the
    ELR, and the high watermark has not moved since: when the leader's session expires a
    follower is elected from the ELR, and the leader's new life, registering with
    PreviousBrokerEpoch -1 (no clean-shutdown marker), leaves the ELR it had entered when it was
    fenced. Nothing acknowledged is lost. Without ELR (the control: Kafka 3.9's rule) the last ISR
    member stays in the ISR and leads again with what it has left, and acknowledged writes the
    followers held are truncated away."""
    world = scenario_world(seed, min_isr=2, writeback_ms=NO_WRITEBACK, elr=elr)
    warm_up(world)
    leader = world.partition_leader(0)
    followers = [b for b in registration(world).replicas if b != leader]
    for b in followers:
        world.stall(b, True)
    world.run_until(lambda: registration(world).isr == (leader,), 10_000, "the ISR shrunk to the leader")
    assert set(registration(world).elr) == (set(followers) if elr else set())
    unclean = world.stats["unclean_registrations"]
    world.power_loss(leader, force=True)
    world.restart(leader)

    def registered() -> bool:
        n = world.node(leader)
        return n is not None and world.participating(n)
    world.run_until(registered, 10_000, "the leader's new life registered")
    if elr:
        reg = registration(world)
        assert reg.leader in followers and reg.isr == (reg.leader,), reg
        assert leader not in reg.elr and leader not in reg.isr, reg
        assert world.stats["elr_elections"] >= 1 and world.stats["unclean_registrations"] == unclean + 1
    for b in followers:
        world.stall(b, False)
    world.finish()
    return world


def elr_member_back_from_a_power_loss(seed: int) -> ClusterWorld:
    """Replication factor 2: the follower stalls, so the ISR shrinks to the leader and the follower
    enters the ELR; then the follower loses its page cache and comes back, still not fetching.
    Registering with PreviousBrokerEpoch -1 (no clean-shutdown marker), it leaves the ELR:
    KIP-966's unclean-shutdown detection. Then the leader's process dies: no replica known to
    hold everything is left, so the partition waits, leaderless, rather than elect the follower
    with what it has left; the leader, back (its page cache survived), leads again as the last
    known leader."""
    world = scenario_world(seed, min_isr=2, replication_factor=2, writeback_ms=NO_WRITEBACK)
    warm_up(world)
    leader = world.partition_leader(0)
    (follower,) = [b for b in registration(world).replicas if b != leader]
    world.stall(follower, True)
    world.run_until(lambda: registration(world).isr == (leader,), 10_000, "the ISR shrunk to the leader")
    assert registration(world).elr == (follower,)
    world.power_loss(follower, force=True)
    world.restart(follower)
    world.stall(follower, True)  # the new life does not fetch either: it stays out of the ISR

    def registered() -> bool:
        n = world.node(follower)
        return n is not None and world.participating(n)
    world.run_until(registered, 10_000, "the follower's new life registered")
    world.kill(leader)
    world.run_until(lambda: registration(world).isr == (), 10_000, "the leader fenced")
    world.sim.run_until(world.sim.now_ms + 1_000)
    reg = registration(world)
    assert reg.leader == -1 and reg.elr == (leader,) and reg.last_known_elr == (leader,), reg
    world.restart(leader)
    world.finish()
    assert registration(world).leader_epoch >= reg.leader_epoch + 1
    return world


SCENARIOS: dict[str, Callable[[int], ClusterWorld]] = {
    "alter_partition_during_controller_election": alter_partition_during_controller_election,
    "alter_partition_during_leader_election": alter_partition_during_leader_election,
    "broker_back_with_an_empty_disk": broker_back_with_an_empty_disk,
    "partitioned_zombie_leader": partitioned_zombie_leader,
    "last_replica_standing_with_lost_page_cache": last_replica_standing_with_lost_page_cache,
    "elr_member_back_from_a_power_loss": elr_member_back_from_a_power_loss,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_named_scenario(name: str) -> None:
    for seed in range(3):
        SCENARIOS[name](seed)


# --- the checks are not vacuous ---------------------------------------------------------------------------


def test_without_unclean_shutdown_detection_an_elr_member_loses_acked_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: a controller that takes every registration for a clean restart keeps the
    follower that lost its page cache in the ELR, and elects it once the leader is gone; the
    checks must see the acknowledged writes it lacks."""
    original = QuorumController.handle_broker_registration

    def trusting(self: QuorumController, req: BrokerRegistrationRequest, *, now_ms: int) -> Any:
        existing = self.latest_image.broker(req.broker_id)
        if existing is not None:
            req.previous_broker_epoch = existing.epoch
        return original(self, req, now_ms=now_ms)

    monkeypatch.setattr(QuorumController, "handle_broker_registration", trusting)
    for seed in range(3):
        with pytest.raises(SimulationFailure, match="offsets are committed|committed was"):
            elr_member_back_from_a_power_loss(seed)


def test_without_elr_the_last_replica_standing_loses_acked_writes() -> None:
    """The control: with eligible.leader.replicas.enable=false (Kafka 3.9's classic rule) the
    same faults lose acknowledged writes, and the checks must see it."""
    for seed in range(3):
        with pytest.raises(SimulationFailure, match="offsets are committed|committed was"):
            last_replica_standing_with_lost_page_cache(seed, elr=False)


def restarted_leader_with_a_lost_tail(seed: int, *, roles_after_registration: bool) -> ClusterWorld:
    """The partition leader loses power and comes back at once: the metadata still names it
    leader (its old session has not expired, and its new incarnation cannot register until it
    does). If it takes that role before registering, it leads with the tail it lost, and its
    followers truncate committed records to match it."""
    world = scenario_world(seed, min_isr=2, writeback_ms=NO_WRITEBACK,
                           roles_after_registration=roles_after_registration)
    warm_up(world)
    leader = world.partition_leader(0)
    world.power_loss(leader, force=True)
    world.restart(leader)
    world.finish()
    return world


def leader_back_with_an_empty_disk(seed: int, *, roles_after_registration: bool) -> ClusterWorld:
    """The broker-only node leads a partition when its disk is replaced; it is back at once,
    empty, and replays the metadata, which still names it leader (random seed 95 found this
    with the broker's order)."""
    world = scenario_world(seed, brokers_only=1, partitions=4, roles_after_registration=roles_after_registration)
    warm_up(world)
    t = world.image.topic(TOPIC)
    assert t is not None
    led = [pid for pid, r in t.partitions.items() if r.leader == 4]
    assert led, "the broker-only node leads a partition"
    world.wipe(4, force=True)
    world.finish()
    return world


def test_a_restarted_broker_takes_no_role_before_it_registers() -> None:
    """With the roles taken as ``broker.replicas`` takes them today (from the first image, before
    the new incarnation registers), the checks see committed records lost, after a power loss and
    after a disk replacement; with Kafka's order (register, catch up to the registration, then
    take roles) nothing is lost."""
    for seed in range(3):
        for scenario in (restarted_leader_with_a_lost_tail, leader_back_with_an_empty_disk):
            with pytest.raises(SimulationFailure, match="taking leadership"):
                scenario(seed, roles_after_registration=False)
            scenario(seed, roles_after_registration=True)


def slow_commit_world(seed: int, *, registration_timeout_ms: int | None) -> ClusterWorld:
    """Messages take 120-150 ms, the quorum has Kafka's timeouts, and brokers heartbeat every
    200 ms: a commit takes longer than a heartbeat interval."""
    profile = dataclasses.replace(Profile(kills=0, cuts=0, stalls=0, drop_probability=0.0, delay_ms_max=150,
                                          partitions=1, acks_one_share=0.0), timing="slow")
    settings = dataclasses.replace(settings_for(profile), raft=RaftConfig(), heartbeat_interval_ms=200,
                                   session_timeout_ms=2_000, registration_timeout_ms=registration_timeout_ms)
    world = ClusterWorld(seed, profile, settings=settings)
    world.sim.network.config.delay_ms_min = 120
    world.sim.run_until(8_000)
    return world


def test_registration_outlasts_a_slow_commit() -> None:
    """A registration that gave up after the heartbeat interval (the broker before the fix): with
    commits slower than that no broker ever registers, and each retry adds a record to the metadata log. Waiting up to the
    session timeout, as the broker now does, registers every broker."""
    for seed in range(2):
        stuck = slow_commit_world(seed, registration_timeout_ms=200)  # the heartbeat interval
        assert all(n.broker_epoch < 0 for n in stuck.running()), "nobody registered"
        registrations = sum(1 for e in stuck.meta for r in e[4] if isinstance(decode_record(r), RegisterBrokerRecord))
        assert registrations > 20, registrations
        fixed = slow_commit_world(seed, registration_timeout_ms=None)  # the session timeout, as the broker
        assert all(n.broker_epoch >= 0 for n in fixed.running()), "every broker registered"
        assert fixed.image.topic(TOPIC) is not None and fixed.stats["acked"] > 0


def test_same_seed_same_run() -> None:
    """A seed replays exactly: the same events, the same outcome."""
    runs = []
    for _ in range(2):
        world = ClusterWorld(7, random_profile(random.Random(7 * 7919 + 11)))
        world.schedule_chaos()
        world.sim.run_until(3_000)
        runs.append((world.sim.events, dict(world.stats), world.meta_end,
                     {pid: list(c) for pid, c in world.committed.items()}))
    assert runs[0] == runs[1]
