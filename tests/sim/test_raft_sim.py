"""Goal: the KIP-595 Raft core keeps Raft's safety properties under any mix of faults the
simulator can make, and makes progress once the faults stop.

Each seed builds a cluster of 3 or 5 voters (``replication.raft.RaftNode`` over a real
``storage.log.PartitionLog`` on a ``SimFileSystem``), a client that proposes unique values to
whoever leads (at most ``UNCOMMITTED_MAX`` offsets ahead of the commit), and a few seconds of
chaos: message delays (and so reordering), drops, network partitions that cut one direction or
both, crashes that lose the page cache (sometimes tearing the unsynced tails), voters that die
right after granting a vote, new leaders that die after replicating part of their log, graceful
resignations, and on five-voter clusters at most one voter that comes back with an empty disk.
The voters are configured without directory ids (``controller.quorum.voters``); the leader records
each voter's directory id in the log (a VotersRecord, KIP-853), and a voter is wiped only once every
voter's log holds all of them: it then comes back as an observer (its directory id no longer
matches) and must never vote or campaign. Timeouts are Kafka's or a
tenth of them; fetch responses are sometimes limited to one batch. Every message is encoded and
decoded at the versions the core targets on a share of the seeds. After every event the checks
below run; a failure names the seed and shows the last events.

* at most one leader per epoch (across restarts);
* a node whose directory differs from the one the committed voter set records for its id (a
  voter back with an empty disk) never grants a vote or becomes candidate or leader;
* a node's epoch never goes back and it never votes for two candidates in one epoch, across
  restarts of the same disk, and a new epoch or vote is in its quorum-state file as soon as the
  node shows it;
* a node's high watermark never goes back while it runs, and what it reports committed (through
  ``read_committed``, the listener API) is the one global committed sequence: the committed prefix
  never changes, and two nodes' logs agree below the lower of their high watermarks;
* a new leader's log holds every entry committed before it was elected (from its log start on;
  below it, a snapshot covers them);
* snapshots (KIP-630), on the seeds that take them: each node runs a state machine (the list of
  committed values) that writes a snapshot every few hundred bytes of committed batches, and the
  log is cleaned with a small ``metadata.max.retention.bytes``, so a node that lagged, crashed or
  lost its disk catches up through FetchSnapshot. A node's log start and latest snapshot are at
  most its high watermark, and a state machine that loads a snapshot (at a start, or after its
  Raft node installed one from the leader) gets exactly the state of a node that replayed the
  committed log to the snapshot's end, and the snapshot's epoch is the epoch of the batch there;
* at the end, every committed data record is a value the client proposed, committed once.

Then the network heals, crashed nodes restart, and within ``LIVENESS_MS`` a leader must commit a
new proposal on every running node.

``TRAFKA_SIM_SEEDS`` sets how many seeds run, odd ones with 3 voters and even ones with 5
(default 600: about 20 s of CPU here, 35 ms a seed); ``TRAFKA_SIM_SEED=<n>`` reruns one seed.
The named scenarios at the bottom force the situations random faults reach only rarely.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages.add_raft_voter import AddRaftVoterRequest
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.remove_raft_voter import RemoveRaftVoterRequest
from protocol.messages.vote import VoteRequest, VoteResponse
from protocol.records import iter_batches
from replication.quorum_state import QuorumStateStore
from replication.raft import (
    METADATA_PARTITION,
    METADATA_TOPIC,
    WIRE_VERSIONS,
    CommitCursor,
    CommittedBatch,
    RaftConfig,
    RaftNode,
    RaftRole,
    is_pre_vote,
)
from replication.snapshot import SnapshotId
from sim.core import NetworkConfig, Simulation, SimulationFailure, chosen_seeds
from storage.config import LogConfig
from storage.files import FileCache
from storage.fs import SimFileSystem, read_whole, write_atomically
from storage.log import PartitionLog

LOG_DIR = "/meta/__cluster_metadata-0"
META_PROPERTIES = "/meta/meta.properties"
LIVENESS_MS = 15_000
DEFAULT_SEEDS = 600

Entry = tuple[int, int, int, bool, tuple[bytes, ...]]  # base, last, epoch, control, record values


@dataclass(slots=True)
class Profile:
    """What one seed's chaos looks like."""

    voters: int = 3
    chaos_ms: int = 4_000
    delay_ms_max: int = 20
    drop_probability: float = 0.05
    partitions: int = 2
    crashes: int = 2
    wipes: int = 0
    resignations: int = 1
    propose_every_ms: tuple[int, int] = (20, 200)
    fetch_bytes_max: int = 1 << 20
    segment_bytes: int = 1 << 20
    roundtrip: bool = False
    timing: str = "kafka"  # "kafka": Kafka's default timeouts; "fast": a tenth of them
    crash_after_vote: float = 0.0  # chance that a voter dies right after granting a vote
    crash_new_leader: float = 0.0  # chance that a newly elected leader dies soon after
    snapshot_bytes: int = 0  # committed batch bytes between a node's snapshots (0: none taken)
    retention_bytes: int = -1  # metadata.max.retention.bytes (-1: the log is never cleaned)


def random_profile(rng: random.Random, voters: int) -> Profile:
    return Profile(
        voters=voters,
        chaos_ms=rng.randint(1_500, 5_000),
        delay_ms_max=rng.choice([2, 10, 30, 80]),
        drop_probability=rng.choice([0.0, 0.02, 0.1, 0.25]),
        partitions=rng.randint(0, 3),
        crashes=rng.randint(0, 3),
        wipes=1 if voters == 5 and rng.random() < 0.2 else 0,
        resignations=rng.randint(0, 1),
        propose_every_ms=rng.choice([(5, 50), (20, 200), (100, 400)]),
        fetch_bytes_max=rng.choice([100, 300, 1 << 20]),
        segment_bytes=rng.choice([600, 4096, 1 << 20]),
        roundtrip=rng.random() < 0.15,
        timing=rng.choice(["kafka", "fast"]),
        crash_after_vote=rng.choice([0.0, 0.3]),
        crash_new_leader=rng.choice([0.0, 0.0, 0.5]),
        snapshot_bytes=rng.choice([0, 300, 1_000, 3_000]),
        retention_bytes=rng.choice([-1, 0, 2_000, 8_000]),
    )


TIMINGS = {
    "kafka": RaftConfig(),
    "fast": RaftConfig(
        election_timeout_ms=150,
        fetch_timeout_ms=300,
        election_backoff_max_ms=150,
        request_timeout_ms=300,
        fetch_wait_ms_max=100,
    ),
}
UNCOMMITTED_MAX = 40  # the client proposes only while the leader has fewer uncommitted offsets
CLEAN_INTERVAL_MS = 250  # how often the retention rules run here (Kafka: every minute)


@dataclass(slots=True)
class Machine:
    """One node's state machine in one life: the committed data values in order, where it is in
    the committed log, and what it applied since its last snapshot."""

    cursor: CommitCursor = dataclasses.field(default_factory=CommitCursor)
    values: list[bytes] = dataclasses.field(default_factory=list)
    bytes_since: int = 0
    last: CommittedBatch | None = None


class RaftWorld:
    """A simulated quorum, its client, and the checks of the module docstring."""

    def __init__(self, seed: int, profile: Profile, *, record_directory_ids: bool = True) -> None:
        self.seed = seed
        self.profile = profile
        self.ids = list(range(1, profile.voters + 1))
        self.initial_dirs = {n: uuid.UUID(int=(seed << 16) + n) for n in self.ids}
        # The static voter set, as broker.cluster builds it from controller.quorum.voters: no
        # directory ids; the leader records them in the log (unless the control turns that off).
        self.voters: dict[int, uuid.UUID | None] = dict.fromkeys(self.ids)
        self.config = dataclasses.replace(
            TIMINGS[profile.timing], fetch_bytes_max=profile.fetch_bytes_max, retention_bytes=profile.retention_bytes,
            retention_ms=-1, clean_interval_ms=CLEAN_INTERVAL_MS, bind_directory_ids=record_directory_ids,
        )
        self.bound: dict[int, uuid.UUID] = {}  # node -> directory id, from the committed voter sets seen
        self.log_config = LogConfig(segment_bytes=profile.segment_bytes)
        self.formatted: set[int] = set()
        # the global view the checks maintain
        self.committed: list[Entry] = []
        self.committed_at: dict[int, int] = {}  # base offset -> index in committed
        self.committed_end = 0
        self.committed_values: list[bytes] = []  # the data values of ``committed``, in order
        self.values_at_end: dict[int, tuple[int, int]] = {0: (0, 0)}  # batch end -> values below, epoch
        self.snapshots_taken = 0
        self.snapshots_loaded = 0
        self.snapshots_fetched = 0
        self.fetch_counts: dict[int, tuple[int, int]] = {}  # node -> incarnation, its snapshots_fetched
        self.leaders: dict[int, int] = {}  # epoch -> node
        self.complete_leaders: set[int] = set()  # epochs whose leader's log was checked
        self.election_seen: dict[int, tuple[int, int, int]] = {}  # node -> incarnation, epoch, vote
        self.chaos_over = False
        self.wiped: set[int] = set()  # crashed with their disk lost, not yet back
        self.epochs: dict[tuple[int, int], int] = {}  # (node, directory) -> epoch
        self.votes: dict[tuple[int, int, int], int] = {}  # (node, directory, epoch) -> vote
        self.machines: dict[int, tuple[int, Machine, int]] = {}  # node -> incarnation, state machine, hw
        self.proposed: dict[bytes, tuple[int, int, int]] = {}  # value -> node, epoch, offset
        self.next_value = 0
        self.heal_ms: int | None = None
        self.post_heal_offset: int | None = None
        self.proposing = True
        self.sim = Simulation(
            seed,
            self.ids,
            self.make_node,
            network=NetworkConfig(
                delay_ms_min=1, delay_ms_max=profile.delay_ms_max, drop_probability=profile.drop_probability
            ),
            checks=[self.check],
            wire_versions=WIRE_VERSIONS if profile.roundtrip else None,
            describe=describe,
        )

    # --- nodes ------------------------------------------------------------------------------------

    def make_node(self, node_id: int, fs: SimFileSystem, now_ms: int, rng: random.Random) -> RaftNode:
        if not fs.exists(META_PROPERTIES):
            # Formatting: the first time with the directory id the voter set records, after a
            # lost disk with a new one (as `kafka-storage format` would make).
            fs.makedirs("/meta")
            fs.sync_dir("/")
            first = node_id not in self.formatted
            self.formatted.add(node_id)
            directory = self.initial_dirs[node_id] if first else uuid.UUID(int=rng.getrandbits(128))
            write_atomically(fs, META_PROPERTIES, str(directory).encode())
        directory = uuid.UUID(read_whole(fs, META_PROPERTIES).decode())
        log = PartitionLog.load(
            FileCache(fs), LOG_DIR, METADATA_TOPIC, METADATA_PARTITION, self.log_config, now_ms=now_ms, clean_shutdown=False
        )
        return RaftNode(
            node_id=node_id,
            directory_id=directory,
            voters=self.voters,
            cluster_id="sim-cluster",
            log=log,
            store=QuorumStateStore(fs, LOG_DIR + "/quorum-state"),
            rng=rng,
            now_ms=now_ms,
            config=self.config,
        )

    def raft(self, node_id: int) -> RaftNode | None:
        node = self.sim.nodes[node_id]
        assert node is None or isinstance(node, RaftNode)
        return node

    def running(self) -> list[RaftNode]:
        return [n for n in (self.raft(i) for i in self.ids) if n is not None]

    def leaders_now(self) -> list[RaftNode]:
        return [n for n in self.running() if n.role is RaftRole.LEADER]

    # --- the checks -------------------------------------------------------------------------------

    def check(self, sim: Simulation) -> None:
        nodes = self.running()
        if nodes:
            # The committed voter set, as the node that knows the most of the committed log has it.
            best = max(nodes, key=lambda n: n.high_watermark)
            self.bound = {v: d for v, d in best.committed_voter_set.directories.items() if d is not None}
        for node_id in sim.touched:
            node = sim.nodes[node_id]
            if node is not None:
                assert isinstance(node, RaftNode)
                self.check_node(node_id, node, sim.incarnation[node_id])

    def check_node(self, node_id: int, node: RaftNode, incarnation: int) -> None:
        recorded = self.bound.get(node_id)
        if recorded is not None and recorded != node.directory_id:
            assert node.role not in (RaftRole.CANDIDATE, RaftRole.LEADER), (
                f"node {node_id} with directory {node.directory_id} (the voter set records {recorded}) is {node.role}"
            )
            assert node.voted_id < 0, f"node {node_id} with a new directory voted for {node.voted_id}"
        epoch = node.epoch
        key = (node_id, node.directory_id.int)
        last_epoch = self.epochs.get(key, 0)
        assert epoch >= last_epoch, f"node {node_id}'s epoch went back from {last_epoch} to {epoch}"
        self.epochs[key] = epoch
        voted = node.voted_id
        if voted >= 0:
            earlier = self.votes.setdefault((node_id, node.directory_id.int, epoch), voted)
            assert earlier == voted, f"node {node_id} voted for {earlier} and {voted} in epoch {epoch}"
        seen = self.election_seen.get(node_id)
        if seen != (incarnation, epoch, voted):
            # A new epoch or vote: it must already be on disk (the quorum-state file is written,
            # synced, before the node acts on it).
            self.election_seen[node_id] = (incarnation, epoch, voted)
            saved = node.store.read()
            assert saved is not None and saved.epoch == epoch, f"node {node_id}: epoch {epoch} not persisted: {saved}"
            assert voted < 0 or saved.voted_id == voted, f"node {node_id}: vote for {voted} not persisted: {saved}"
            if seen is not None and seen[0] == incarnation and voted >= 0 and voted != node_id:
                self.maybe_crash_after_vote(node_id)
        if node.role is RaftRole.LEADER:
            leader = self.leaders.setdefault(epoch, node_id)
            assert leader == node_id, f"two leaders in epoch {epoch}: {leader} and {node_id}"
            if epoch not in self.complete_leaders:
                self.complete_leaders.add(epoch)
                self.check_leader_completeness(node_id, node)
                self.maybe_crash_new_leader(node_id)
        hw = node.high_watermark
        state = self.machines.get(node_id)
        if state is None or state[0] != incarnation:
            state = (incarnation, Machine(), 0)
        inc, machine, last_hw = state
        cursor = machine.cursor
        assert hw >= last_hw, f"node {node_id}'s high watermark went back from {last_hw} to {hw}"
        assert hw <= node.log_end_offset, f"node {node_id}: HW {hw} beyond its log end {node.log_end_offset}"
        latest = node.latest_snapshot_id
        assert node.log_start_offset <= hw, f"node {node_id}: log start {node.log_start_offset} beyond its HW {hw}"
        assert latest is None or latest.end_offset <= hw, f"node {node_id}: snapshot {latest} beyond its HW {hw}"
        needed = cursor.snapshot_needed(node)
        if needed is not None:
            self.load_snapshot(node_id, node, machine, needed)
        while cursor.next_offset < hw:
            batches = cursor.drain(node, max_bytes=1 << 16)
            assert batches, f"node {node_id}: nothing readable below its HW {hw} from {cursor.next_offset}"
            for b in batches:
                self.commit(node_id, (b.base_offset, b.last_offset, b.epoch, b.is_control, b.records))
                machine.values += b.records
                machine.bytes_since += b.size_bytes
                machine.last = b
        assert cursor.next_offset == hw, f"node {node_id}: committed batches end at {cursor.next_offset}, HW {hw}"
        fetched = self.fetch_counts.get(node_id, (incarnation, 0))
        if fetched[0] == incarnation:
            self.snapshots_fetched += node.snapshots_fetched - fetched[1]
        self.fetch_counts[node_id] = (incarnation, node.snapshots_fetched)
        self.maybe_snapshot(node, machine)
        self.machines[node_id] = (inc, machine, hw)

    def load_snapshot(self, node_id: int, node: RaftNode, machine: Machine, snapshot_id: SnapshotId) -> None:
        """The state machine loads a snapshot: it must hold what replaying the log gives."""
        contents = node.read_snapshot(snapshot_id)
        end = snapshot_id.end_offset
        assert end in self.values_at_end, f"node {node_id}: snapshot {snapshot_id} does not end at a committed batch end"
        count, epoch = self.values_at_end[end]
        assert list(contents.records) == self.committed_values[:count], (
            f"node {node_id}: snapshot {snapshot_id} holds {len(contents.records)} values, not the {count} "
            f"committed below {end}"
        )
        assert snapshot_id.epoch == epoch, f"node {node_id}: snapshot {snapshot_id}, but the batch there is of epoch {epoch}"
        machine.values = list(contents.records)
        machine.cursor.next_offset = end
        machine.bytes_since = 0
        self.snapshots_loaded += 1

    def maybe_snapshot(self, node: RaftNode, machine: Machine) -> None:
        """What a node's snapshot generator does after applying committed batches."""
        every = self.profile.snapshot_bytes
        last = machine.last
        if not every or machine.bytes_since < every or last is None or last.last_offset + 1 != machine.cursor.next_offset:
            return
        taken = node.create_snapshot(
            self.sim.now_ms, end_offset=machine.cursor.next_offset, epoch=last.epoch,
            last_contained_timestamp_ms=last.timestamp_ms, records=machine.values,
        )
        machine.bytes_since = 0
        self.snapshots_taken += taken is not None

    def commit(self, node_id: int, entry: Entry) -> None:
        base = entry[0]
        index = self.committed_at.get(base)
        if index is not None:
            assert self.committed[index] == entry, (
                f"node {node_id} committed {entry[:4]} at offset {base} where "
                f"{self.committed[index][:4]} was committed before"
            )
            return
        assert base == self.committed_end, (
            f"node {node_id} committed a batch at {base}, but the committed log ends at {self.committed_end}"
        )
        self.committed_at[base] = len(self.committed)
        self.committed.append(entry)
        self.committed_end = entry[1] + 1
        self.committed_values += entry[4]
        self.values_at_end[self.committed_end] = (len(self.committed_values), entry[2])
        if self.heal_ms is not None and self.post_heal_offset is None:
            for value in entry[4]:
                origin = self.proposed.get(value)
                if origin is not None and value.startswith(b"after-heal"):
                    self.post_heal_offset = entry[1]

    def check_leader_completeness(self, node_id: int, node: RaftNode) -> None:
        """A new leader's log holds every committed entry (from its log start: a snapshot, which
        its state machine checked when it took or loaded it, covers what is below)."""
        start = node.log_start_offset
        got = read_log(node.log, start, self.committed_end)
        want = self.committed[self.committed_at[start]:] if start < self.committed_end else []
        if start > 0:
            latest = node.latest_snapshot_id
            assert latest is not None and latest.end_offset >= start, (
                f"leader {node_id}'s log starts at {start} without a snapshot covering what is below"
            )
        assert got[: len(want)] == want, (
            f"leader {node_id} of epoch {node.epoch} lacks committed entries: "
            f"first difference at {next(i for i in range(len(want)) if i >= len(got) or got[i] != want[i])}"
        )

    def final_checks(self) -> None:
        seen: set[bytes] = set()
        for entry in self.committed:
            for value in entry[4]:
                assert value in self.proposed, f"committed value {value!r} was never proposed"
                assert value not in seen, f"value {value!r} committed twice"
                seen.add(value)

    # --- the client and the faults ---------------------------------------------------------------

    def propose_tick(self) -> None:
        if not self.proposing:
            return
        leaders = self.leaders_now()
        if leaders:
            node = leaders[self.sim.rng.randrange(len(leaders))]
        if leaders and node.log_end_offset - node.high_watermark < UNCOMMITTED_MAX:
            prefix = b"after-heal" if self.heal_ms is not None else b"v"
            value = b"%s-%d" % (prefix, self.next_value)
            self.next_value += 1
            result = node.propose(self.sim.now_ms, [value])
            if isinstance(result, int):
                self.proposed[value] = (node.node_id, node.epoch, result)
            self.sim.touch(node.node_id)
        lo, hi = self.profile.propose_every_ms
        self.sim.schedule(self.sim.now_ms + self.sim.rng.randint(lo, hi), self.propose_tick, "propose")

    def schedule_chaos(self) -> None:
        sim, rng, p = self.sim, self.sim.rng, self.profile
        end = p.chaos_ms
        for _ in range(p.partitions):
            start = rng.randint(0, end)
            sim.schedule(start, self.fault(self.partition_action(rng)), "partition")
            sim.schedule(start + rng.randint(100, 3_000), sim.network.heal, "heal network")
        for _ in range(p.crashes):
            node_id = rng.choice(self.ids)
            start = rng.randint(0, end)
            torn = rng.random() < 0.3
            sim.schedule(start, self.fault(functools.partial(sim.crash, node_id, torn=torn)), f"crash {node_id}")
            sim.schedule(start + rng.randint(0, 2_500), functools.partial(self.restart, node_id), f"restart {node_id}")
        for _ in range(p.wipes):
            node_id = rng.choice(self.ids)
            start = rng.randint(0, end)
            sim.schedule(start, self.fault(functools.partial(self.lose_disk, node_id)), f"crash {node_id} (disk lost)")
            sim.schedule(start + rng.randint(0, 1_000), functools.partial(self.restart, node_id), f"restart {node_id} (empty disk)")
        for _ in range(p.resignations):
            sim.schedule(rng.randint(0, end), self.fault(self.resign_leader), "resign")

    def fault(self, action: Callable[[], None]) -> Callable[[], None]:
        """``action``, done only while the chaos lasts (healing cancels what is still pending)."""

        def maybe() -> None:
            if not self.chaos_over:
                action()

        return maybe

    def all_bound_everywhere(self) -> bool:
        """Every voter's directory id is recorded, and every voter (all running) has that in its log."""
        nodes = self.running()
        return len(nodes) == len(self.ids) and all(
            None not in n.voter_set.directories.values() and len(n.voter_set) == len(self.ids) for n in nodes
        )

    def lose_disk(self, node_id: int) -> None:
        """Crash a node and lose its disk; during the chaos only once the directory ids are
        recorded everywhere (before that an empty disk is as unsafe as without them: see
        replication.raft's docstring), else a little later."""
        if self.profile.wipes and not self.all_bound_everywhere():
            self.sim.schedule(self.sim.now_ms + 100, self.fault(functools.partial(self.lose_disk, node_id)),
                              f"crash {node_id} (disk lost), when recorded")
            return
        self.sim.crash(node_id)
        self.wiped.add(node_id)

    def partition_action(self, rng: random.Random) -> Callable[[], None]:
        kind = rng.choice(["isolate", "isolate-in", "isolate-out", "split"])
        node_id = rng.choice(self.ids)
        shuffled = self.ids[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(self.ids) - 1)
        net = self.sim.network

        def act() -> None:
            if kind == "isolate":
                net.isolate(node_id, self.ids)
            elif kind == "isolate-in":
                net.isolate(node_id, self.ids, outbound=False)
            elif kind == "isolate-out":
                net.isolate(node_id, self.ids, inbound=False)
            else:
                net.split(shuffled[:cut], shuffled[cut:])

        return act

    def maybe_crash_after_vote(self, node_id: int) -> None:
        """A voter that just granted a vote sometimes dies at once (its answer may still be on
        the wire) and comes back soon: whatever it forgot, it may be asked again."""
        sim = self.sim
        if self.chaos_over or sim.rng.random() >= self.profile.crash_after_vote:
            return
        sim.schedule(sim.now_ms, self.fault(lambda: sim.crash(node_id)), f"crash {node_id} after its vote")
        sim.schedule(sim.now_ms + sim.rng.randint(1, 200), lambda: self.restart(node_id), f"restart {node_id}")

    def maybe_crash_new_leader(self, node_id: int) -> None:
        """A new leader sometimes dies soon, having replicated part of its log: the stuff of
        divergent tails and of entries from older epochs waiting to be committed."""
        sim = self.sim
        if self.chaos_over or sim.rng.random() >= self.profile.crash_new_leader:
            return
        at = sim.now_ms + sim.rng.randint(0, 300)
        sim.schedule(at, self.fault(lambda: sim.crash(node_id)), f"crash new leader {node_id}")
        sim.schedule(at + sim.rng.randint(1, 1_000), lambda: self.restart(node_id), f"restart {node_id}")

    def restart(self, node_id: int) -> None:
        """Start a crashed node again: from its disk, or an empty one if it lost its disk."""
        if self.sim.nodes[node_id] is None:
            self.sim.restart(node_id, wipe=node_id in self.wiped)
            self.wiped.discard(node_id)

    def resign_leader(self) -> None:
        for node in self.leaders_now():
            node.resign(self.sim.now_ms)
            self.sim.touch(node.node_id)

    def heal(self) -> None:
        self.heal_ms = self.sim.now_ms
        self.chaos_over = True
        self.sim.network.heal()
        self.sim.network.config.drop_probability = 0.0
        for node_id in self.ids:
            self.restart(node_id)

    def settled(self) -> bool:
        if self.post_heal_offset is None:
            return False
        return all(n.high_watermark > self.post_heal_offset for n in self.running())

    def run(self) -> None:
        """Chaos, then heal and require progress; raise ``SimulationFailure`` naming the seed."""
        self.sim.schedule(0, self.propose_tick, "propose")
        self.schedule_chaos()
        self.sim.run_until(self.profile.chaos_ms + 3_500)  # every scheduled fault has happened
        self.heal()
        if not self.sim.run_until_true(self.settled, deadline_ms=self.sim.now_ms + LIVENESS_MS):
            raise self.sim.failure(
                f"no progress within {LIVENESS_MS} ms of healing: "
                + ", ".join(repr(n) for n in self.running())
            )
        self.final_checks()


def describe(message: Message) -> str:
    """One line per quorum message for the failure trace."""
    if isinstance(message, FetchRequest):
        fp = message.topics[0].partitions[0]
        return f"Fetch(epoch={fp.current_leader_epoch} offset={fp.fetch_offset} last_epoch={fp.last_fetched_epoch})"
    if isinstance(message, FetchResponse):
        if not message.responses:
            return f"FetchResponse(error={message.error_code})"
        rp = message.responses[0].partitions[0]
        div = rp.diverging_epoch
        size = len(rp.records) if isinstance(rp.records, bytes | bytearray | memoryview) else 0
        return (
            f"FetchResponse(error={rp.error_code} leader={rp.current_leader.leader_id}@{rp.current_leader.leader_epoch} "
            f"hw={rp.high_watermark} bytes={size}"
            + (f" diverging={div.epoch}:{div.end_offset})" if div.epoch >= 0 or div.end_offset >= 0 else ")")
        )
    if isinstance(message, VoteRequest):
        vp = message.topics[0].partitions[0]
        kind = "PreVote" if is_pre_vote(vp) else "Vote"
        return f"{kind}(epoch={vp.candidate_epoch} candidate={vp.candidate_id} last={vp.last_offset_epoch}:{vp.last_offset})"
    if isinstance(message, VoteResponse):
        if not message.topics:
            return f"VoteResponse(error={message.error_code})"
        vr = message.topics[0].partitions[0]
        return f"VoteResponse(error={vr.error_code} granted={vr.vote_granted} leader={vr.leader_id}@{vr.leader_epoch})"
    text = repr(message)
    return text if len(text) <= 160 else text[:157] + "..."


def read_log(log: PartitionLog, start: int, end: int) -> list[Entry]:
    """The batches of ``log`` from ``start`` up to ``end``, as the checks compare them."""
    out: list[Entry] = []
    offset = start
    while offset < min(end, log.log_end_offset):
        res = log.read(offset, max_bytes=1 << 16)
        views = list(iter_batches(res.read_bytes()))
        if not views:
            break
        for v in views:
            if v.base_offset >= end:
                return out
            values: tuple[bytes, ...] = ()
            if not v.is_control:
                values = tuple(b"" if r.value is None else bytes(r.value) for r in v.records())
            out.append((v.base_offset, v.last_offset, v.partition_leader_epoch, v.is_control, values))
        offset = views[-1].next_offset
    return out


def run_seed(seed: int, voters: int) -> RaftWorld:
    rng = random.Random(seed * 7919 + voters)
    world = RaftWorld(seed, random_profile(rng, voters))
    world.run()
    return world


def seeds() -> list[int]:
    return chosen_seeds(DEFAULT_SEEDS)


@pytest.mark.parametrize("voters", [3, 5])
def test_random_faults(voters: int) -> None:
    chosen = seeds()
    share = chosen if len(chosen) == 1 else [s for s in chosen if s % 2 == voters % 2]
    totals = {"elections": 0, "committed batches": 0, "events": 0, "dropped": 0, "heal to progress max ms": 0,
              "snapshots taken": 0, "snapshots fetched": 0, "snapshots loaded": 0}
    for seed in share:
        try:
            world = run_seed(seed, voters)
        except SimulationFailure as exc:
            raise SimulationFailure(
                f"{voters} voters; rerun: TRAFKA_SIM_SEED={seed} pytest tests/sim/test_raft_sim.py -k 'random_faults and {voters}'\n{exc}"
            ) from None
        totals["elections"] += len(world.leaders)
        totals["committed batches"] += len(world.committed)
        totals["events"] += world.sim.events
        totals["dropped"] += world.sim.network.dropped
        totals["snapshots taken"] += world.snapshots_taken
        totals["snapshots fetched"] += world.snapshots_fetched
        totals["snapshots loaded"] += world.snapshots_loaded
        assert world.heal_ms is not None
        totals["heal to progress max ms"] = max(totals["heal to progress max ms"], world.sim.now_ms - world.heal_ms)
    print(f"{len(share)} seeds, {voters} voters: {totals}")
    assert totals["elections"] >= len(share), "every run elects"
    if len(share) >= 50:
        assert totals["snapshots fetched"] > 0 and totals["snapshots loaded"] > totals["snapshots fetched"], (
            "some nodes catch up through FetchSnapshot, some load their own snapshot at a restart")


# --- named scenarios ----------------------------------------------------------------------------------


class Script:
    """Steps run against a ``RaftWorld`` after every event: when the current step's condition
    holds its action runs and the next step begins. A step that waits longer than
    ``step_ms_max`` fails the run."""

    def __init__(self, world: RaftWorld, *, step_ms_max: int = 20_000) -> None:
        self.world = world
        self.steps: list[tuple[str, Callable[[], bool], Callable[[], None]]] = []
        self.index = 0
        self.started_ms = 0
        self.step_ms_max = step_ms_max
        world.sim.checks.append(self.advance)

    def step(self, name: str, condition: Callable[[], bool], action: Callable[[], None] = lambda: None) -> None:
        self.steps.append((name, condition, action))

    @property
    def done(self) -> bool:
        return self.index >= len(self.steps)

    def advance(self, sim: Simulation) -> None:
        while not self.done:
            name, condition, action = self.steps[self.index]
            if not condition():
                assert sim.now_ms - self.started_ms <= self.step_ms_max, f"scenario stuck at step {name!r}"
                return
            action()
            self.index += 1
            self.started_ms = sim.now_ms
            sim.schedule(sim.now_ms + 1, lambda: None, f"step {name!r} done")

    def run(self, deadline_ms: int = 120_000) -> None:
        sim = self.world.sim
        sim.schedule(0, lambda: None, "start")
        sim.run_until_true(lambda: self.done, deadline_ms=deadline_ms)
        if not self.done:
            raise sim.failure(f"scenario stuck at step {self.steps[self.index][0]!r}")


def quiet_world(seed: int = 1, *, voters: int = 3, record_directory_ids: bool = True, **changes: object) -> RaftWorld:
    """A world without random faults or client: the scenario drives it."""
    profile = dataclasses.replace(
        Profile(voters=voters, delay_ms_max=5, drop_probability=0.0, partitions=0, crashes=0, resignations=0),
        **changes,  # type: ignore[arg-type]
    )
    return RaftWorld(seed, profile, record_directory_ids=record_directory_ids)


def propose(world: RaftWorld, node: RaftNode | None, *values: bytes) -> None:
    assert node is not None and node.is_leader, node
    for value in values:
        result = node.propose(world.sim.now_ms, [value])
        assert isinstance(result, int), result
        world.proposed[value] = (node.node_id, node.epoch, result)
    world.sim.touch(node.node_id)


def started(world: RaftWorld) -> bool:
    """A leader, every voter's directory id recorded (on every node) and everyone caught up."""
    return (one_leader(world) is not None and world.committed_end > 0 and all_caught_up(world)
            and (world.all_bound_everywhere() or not world.config.bind_directory_ids))


def committed_values(world: RaftWorld) -> set[bytes]:
    return {v for entry in world.committed for v in entry[4]}


def all_caught_up(world: RaftWorld) -> bool:
    nodes = world.running()
    return bool(nodes) and all(n.high_watermark >= world.committed_end for n in nodes)


def one_leader(world: RaftWorld) -> RaftNode | None:
    leaders = world.leaders_now()
    return max(leaders, key=lambda n: n.epoch) if leaders else None


@pytest.mark.parametrize("cut", ["both", "inbound", "outbound"])
def test_partitioned_zombie_leader_never_commits(cut: str) -> None:
    """A leader cut off from the others keeps believing it leads for a while; whatever it
    accepts then is never committed, it steps down (check quorum, or a higher epoch reaches
    it), and after the partition heals it drops its tail and follows the new leader."""
    world = quiet_world(seed=11)
    sim = world.sim
    s = Script(world)
    seen: dict[str, int] = {}

    def isolate() -> None:
        zombie = one_leader(world)
        assert zombie is not None
        seen.update(zombie=zombie.node_id, epoch=zombie.epoch, hw=zombie.high_watermark, at=sim.now_ms)
        sim.network.isolate(zombie.node_id, world.ids, inbound=cut != "outbound", outbound=cut != "inbound")
        # Proposed once the fetches it holds from before the cut have been answered (empty):
        # an answer to one of those could carry a zombie write out, and it could then commit.
        at = sim.now_ms + world.config.fetch_wait_ms_max + 10
        sim.schedule(at, lambda: propose(world, zombie, b"zombie-0", b"zombie-1", b"zombie-2"), "the zombie writes")
        sim.schedule(sim.now_ms + 1_000, lambda: None, "a second into the partition")

    def zombie() -> RaftNode:
        node = world.raft(seen["zombie"])
        assert node is not None
        return node

    def still_leading() -> None:
        assert zombie().role is RaftRole.LEADER, "a fresh partition cannot be noticed yet"
        assert zombie().high_watermark == seen["hw"], "the zombie committed without a majority"

    def new_leader() -> RaftNode | None:
        return next((n for n in world.leaders_now() if n.epoch > seen["epoch"]), None)

    def watch(_: Simulation) -> None:
        if "zombie" in seen and "stepped_down" not in seen and zombie().role is not RaftRole.LEADER:
            seen["stepped_down"] = sim.now_ms

    sim.checks.append(watch)
    s.step("leader elected, all caught up", lambda: started(world),
           lambda: propose(world, one_leader(world), b"before-0", b"before-1"))
    s.step("before-* committed everywhere", lambda: {b"before-0", b"before-1"} <= committed_values(world) and all_caught_up(world), isolate)
    s.step("a second later", lambda: sim.now_ms >= seen["at"] + 1_000, still_leading)
    s.step("the others elect a new leader", lambda: new_leader() is not None,
           lambda: propose(world, new_leader(), b"new-0", b"new-1"))
    s.step("the zombie steps down", lambda: "stepped_down" in seen)
    s.step("new-* committed", lambda: {b"new-0", b"new-1"} <= committed_values(world), sim.network.heal)
    s.step("the old leader follows and caught up",
           lambda: zombie().role is RaftRole.FOLLOWER and all_caught_up(world)
           and zombie().log_end_offset == world.committed_end)
    s.run()
    assert zombie().high_watermark >= world.committed_end
    assert not {b"zombie-0", b"zombie-1", b"zombie-2"} & committed_values(world)
    assert read_log(zombie().log, 0, world.committed_end) == world.committed
    if cut == "both":
        # Nobody fetched: check quorum (1.5 x fetch timeout) made it resign on its own.
        assert seen["stepped_down"] - seen["at"] <= world.config.check_quorum_ms + 100
    world.final_checks()


def empty_disk_scenario(*, record_directory_ids: bool) -> RaftWorld:
    """Voter W acknowledges entries while B is cut off, then loses its disk; the leader A dies.
    B and the wiped W alone must not elect a leader: only W's old disk held the entries."""
    world = quiet_world(seed=5, record_directory_ids=record_directory_ids)
    sim = world.sim
    s = Script(world, step_ms_max=30_000)
    roles: dict[str, int] = {}

    def node(name: str) -> RaftNode | None:
        return world.raft(roles[name])

    def name_roles() -> None:
        leader = one_leader(world)
        assert leader is not None
        others = sorted(n for n in world.ids if n != leader.node_id)
        roles.update(a=leader.node_id, b=others[0], w=others[1])
        sim.network.isolate(roles["b"], world.ids)
        propose(world, leader, b"e-0", b"e-1", b"e-2")

    def wipe_w() -> None:
        sim.crash(roles["w"])
        sim.restart(roles["w"], wipe=True)

    def leaderless_then_restart_a() -> None:
        assert not world.leaders_now(), "B won an election with the vote of a voter that lost its disk"
        sim.restart(roles["a"])

    def a_dies() -> None:
        sim.crash(roles["a"])
        sim.network.heal()
        roles["quiet_from"] = sim.now_ms
        sim.schedule(sim.now_ms + 10_000, lambda: None, "ten quiet seconds")

    s.step("leader elected, all caught up", lambda: started(world), name_roles)
    s.step("e-* committed by A and W", lambda: {b"e-0", b"e-1", b"e-2"} <= committed_values(world), wipe_w)
    s.step("W is back, formatted anew", lambda: node("w") is not None, a_dies)
    s.step("ten seconds later", lambda: sim.now_ms >= roles["quiet_from"] + 10_000, leaderless_then_restart_a)
    s.step("a leader again, everyone caught up",
           lambda: one_leader(world) is not None and all_caught_up(world)
           and {b"e-0", b"e-1", b"e-2"} <= {v for e in read_log(one_leader(world).log, 0, world.committed_end) for v in e[4]})  # type: ignore[union-attr]
    s.run()
    w = node("w")
    assert w is not None and not w.is_voter and w.directory_id != world.initial_dirs[roles["w"]]
    assert w.role is RaftRole.FOLLOWER and w.high_watermark >= world.committed_end
    world.final_checks()
    return world


def test_voter_with_empty_disk_comes_back_as_an_observer() -> None:
    world = empty_disk_scenario(record_directory_ids=True)
    assert max(world.leaders) > 1


def test_without_directory_ids_an_empty_disk_loses_committed_data() -> None:
    """The control experiment: with a voter set that does not record directory ids (Kafka's
    kraft.version 0), the wiped voter votes again and B, lacking the entries, wins. The checks
    must catch that, or the test above proves nothing."""
    with pytest.raises(SimulationFailure, match="lacks committed entries|won an election"):
        empty_disk_scenario(record_directory_ids=False)


def test_divergent_tail_is_truncated_on_the_new_leaders_entries() -> None:
    """KIP-101-like: the old leader's uncommitted tail sits at the offsets where the new leader
    wrote other entries in a later epoch. Back from a crash, the old leader learns the diverging
    epoch from its fetch, truncates, and ends with exactly the committed log."""
    world = quiet_world(seed=3)
    sim = world.sim
    s = Script(world)
    seen: dict[str, int] = {}

    def old() -> RaftNode | None:
        return world.raft(seen["old"])

    def write_tail() -> None:
        leader = one_leader(world)
        assert leader is not None
        seen.update(old=leader.node_id, epoch=leader.epoch)
        sim.network.isolate(leader.node_id, world.ids)
        propose(world, leader, b"t-0", b"t-1", b"t-2", b"t-3")
        sim.crash(leader.node_id)
        sim.schedule(sim.now_ms + 100, sim.network.heal, "heal once nothing is in flight")

    def new_leader() -> RaftNode | None:
        return next((n for n in world.leaders_now() if n.epoch > seen["epoch"]), None)

    s.step("leader elected, all caught up", lambda: started(world), write_tail)
    s.step("a new leader", lambda: new_leader() is not None,
           lambda: propose(world, new_leader(), b"u-0", b"u-1", b"u-2", b"u-3", b"u-4"))
    s.step("u-* committed", lambda: {b"u-0", b"u-4"} <= committed_values(world), lambda: world.restart(seen["old"]))
    s.step("the old leader caught up", lambda: old() is not None and all_caught_up(world)
           and old().log_end_offset >= world.committed_end)  # type: ignore[union-attr]
    s.run()
    node = old()
    assert node is not None
    tail_offsets = [world.proposed[b"t-%d" % i][2] for i in range(4)]
    assert max(tail_offsets) < world.committed_end, "the tail overlapped committed offsets"
    assert not {b"t-0", b"t-1", b"t-2", b"t-3"} & committed_values(world)
    assert read_log(node.log, 0, world.committed_end) == world.committed
    world.final_checks()


def test_entry_of_an_older_epoch_is_not_committed_by_counting_replicas() -> None:
    """Raft's Figure 8, with KRaft's LeaderChange records. A writes x in epoch e1 and dies; B
    leads e2, writes y, dies; A leads e3 and copies x to C, but C does not get A's epoch-e3
    record. x is now on a majority (A, C) yet must not be committed: B (whose last epoch, e2,
    beats C's) can still win with C's vote and overwrite it, which it then does."""
    world = quiet_world(seed=8, fetch_bytes_max=1)  # one batch per fetch
    sim = world.sim
    s = Script(world)
    r: dict[str, int] = {}

    def node(name: str) -> RaftNode | None:
        return world.raft(r[name])

    def a_writes_x_and_dies() -> None:
        a = one_leader(world)
        assert a is not None
        r.update(a=a.node_id, e1=a.epoch)
        sim.network.isolate(a.node_id, world.ids)
        propose(world, a, b"x")
        sim.crash(a.node_id)
        sim.schedule(sim.now_ms + 100, sim.network.heal, "heal once nothing is in flight")

    def b_leads() -> bool:
        leader = one_leader(world)
        return leader is not None and leader.epoch > r["e1"]

    def b_writes_y_and_dies() -> None:
        b = one_leader(world)
        assert b is not None
        c = next(n for n in world.ids if n not in (r["a"], b.node_id))
        r.update(b=b.node_id, c=c, e2=b.epoch)
        sim.network.isolate(b.node_id, world.ids)  # C must not get B's epoch-e2 record
        propose(world, b, b"y")
        sim.crash(b.node_id)
        sim.schedule(sim.now_ms + 100, sim.network.heal, "heal once nothing is in flight")
        sim.schedule(sim.now_ms + 100, lambda: sim.restart(r["a"]), "restart A")

    def a_leads_again() -> bool:
        a = node("a")
        return a is not None and a.is_leader and a.epoch > r["e2"]

    def c_has_x() -> bool:
        c = node("c")
        return c is not None and c.log_end_offset >= world.proposed[b"x"][2] + 1

    def cut_a_to_c() -> None:
        sim.network.cut(r["a"], r["c"], both=False)  # C's next fetch reaches A; the answer is lost
        r["cut_at"] = sim.now_ms
        sim.schedule(sim.now_ms + 300, lambda: None, "C's fetch has reached A")

    def a_dies_b_returns() -> None:
        sim.crash(r["a"])
        sim.network.heal()
        sim.restart(r["b"])

    s.step("A leads e1, all caught up", lambda: started(world),
           a_writes_x_and_dies)
    s.step("B leads e2", b_leads, b_writes_y_and_dies)
    s.step("A leads e3", a_leads_again)
    s.step("C copied x from A", c_has_x, cut_a_to_c)
    s.step("C fetched again", lambda: sim.now_ms >= r["cut_at"] + 300, a_dies_b_returns)
    s.step("B leads again and C follows it",
           lambda: node("b") is not None and node("b").is_leader and all_caught_up(world)  # type: ignore[union-attr]
           and b"y" in committed_values(world))
    s.run()
    assert b"x" not in committed_values(world)
    world.final_checks()


def test_new_leader_with_a_stale_high_watermark() -> None:
    """The voter that becomes leader knows an older high watermark than the other follower.
    No node's high watermark goes back (the checks), the new leader reports none until its own
    epoch's record is committed, and then passes the old one."""
    world = quiet_world(seed=21)
    sim = world.sim
    s = Script(world)
    r: dict[str, int] = {}

    def node(name: str) -> RaftNode:
        n = world.raft(r[name])
        assert n is not None
        return n

    def name_roles() -> None:
        leader = one_leader(world)
        assert leader is not None
        low, high = sorted(n for n in world.ids if n != leader.node_id)
        r.update(leader=leader.node_id, stale=low, fresh=high, epoch=leader.epoch)
        propose(world, leader, b"s-0")

    def stale_but_complete() -> bool:
        leader, stale = node("leader"), node("stale")
        return stale.log_end_offset == leader.log_end_offset and stale.high_watermark < leader.high_watermark

    def freeze_stale() -> None:
        sim.network.cut(r["leader"], r["stale"], both=False)

    def resign() -> None:
        r["old_hw"] = node("fresh").high_watermark
        assert node("stale").high_watermark < r["old_hw"]
        sim.network.heal()
        node("leader").resign(sim.now_ms)  # the lowest id among equals is its first choice
        sim.touch(r["leader"])

    def stale_leads() -> bool:
        n = node("stale")
        return n.is_leader and n.epoch > r["epoch"]

    s.step("leader elected, all caught up", lambda: started(world),
           name_roles)
    s.step("s-0 committed everywhere", lambda: b"s-0" in committed_values(world) and all_caught_up(world),
           lambda: propose(world, node("leader"), b"s-1", b"s-2"))
    s.step("the stale follower has the log, not the HW", stale_but_complete, freeze_stale)
    s.step("the fresh follower knows the HW", lambda: node("fresh").high_watermark == node("leader").high_watermark, resign)
    s.step("the stale follower leads", stale_leads, lambda: r.update(hw_at_election=node("stale").high_watermark))
    s.step("its epoch's record is committed", lambda: node("stale").high_watermark > r["old_hw"])
    s.run()
    assert r["hw_at_election"] < r["old_hw"], "the new leader's high watermark was not stale"
    world.final_checks()


@pytest.mark.parametrize("wipe", [False, True])
def test_a_lagging_or_wiped_node_catches_up_through_a_snapshot(wipe: bool) -> None:
    """A node is down while the others commit enough to take snapshots and clean their logs past
    its log end (or it comes back with an empty disk, an observer then). Back, the leader answers
    its fetch with a snapshot id; it fetches the snapshot in chunks of 100 bytes, installs it, and
    its state machine loads exactly what the others replayed (the checks), then follows the log."""
    world = quiet_world(seed=31, voters=5 if wipe else 3, snapshot_bytes=300, retention_bytes=0, fetch_bytes_max=100)
    sim = world.sim
    s = Script(world, step_ms_max=60_000)
    r: dict[str, int] = {}

    def lagging() -> RaftNode | None:
        return world.raft(r["c"])

    def take_down() -> None:
        leader = one_leader(world)
        assert leader is not None
        c = next(n for n in world.ids if n != leader.node_id)
        node = world.raft(c)
        assert node is not None
        r.update(c=c, leo=node.log_end_offset)
        if wipe:
            world.lose_disk(c)
        else:
            sim.crash(c)
        sim.schedule(sim.now_ms, world.propose_tick, "the client starts")

    def cleaned_past() -> bool:
        leader = one_leader(world)
        return leader is not None and leader.log_start_offset > r["leo"] + 100

    def bring_back() -> None:
        leader = one_leader(world)
        assert leader is not None
        r["target"] = leader.high_watermark
        world.restart(r["c"])

    def caught_up() -> bool:
        node = lagging()
        return node is not None and node.snapshots_fetched >= 1 and node.high_watermark >= r["target"]

    s.step("leader elected, all caught up", lambda: started(world),
           take_down)
    s.step("the others cleaned their logs past its end", cleaned_past, bring_back)
    s.step("it caught up through a snapshot", caught_up, lambda: setattr(world, "proposing", False))
    s.run()
    node = lagging()
    assert node is not None and node.latest_snapshot_id is not None
    assert node.is_voter is not wipe
    assert node.read_snapshot(node.latest_snapshot_id).size_bytes > 10 * world.config.fetch_bytes_max, "many chunks"
    assert world.snapshots_fetched >= 1 and world.snapshots_loaded >= 1
    world.final_checks()


ADMIN = 1000  # the source id of the admin client in the scenarios (not a node)


def admin_call(world: RaftWorld, node: RaftNode, request: Message) -> Message | None:
    """Send an AddRaftVoter/RemoveRaftVoter to ``node`` as an admin client would: the answer
    now, or None when the node answers once the change commits (``Simulation.outside``)."""
    correlation_id = len(world.sim.outside) + 10_000 + world.sim.events
    response = node.handle_request(world.sim.now_ms, ADMIN, correlation_id, request)
    world.sim.touch(node.node_id)
    return response


def admin_answer(world: RaftWorld) -> Message | None:
    return world.sim.outside[-1][2] if world.sim.outside else None


def test_wiped_voter_is_removed_and_added_back() -> None:
    """KIP-853's replacement of a lost disk, one membership change at a time: voter W comes
    back with an empty disk and is an observer (the log records its old directory id); the
    operator removes (W, old directory), the quorum of the other two goes on committing, then
    adds (W, new directory) once W has caught up; W votes again, and with the leader gone the
    quorum (now including the new W) elects a leader that holds every committed entry."""
    world = quiet_world(seed=41)
    sim = world.sim
    s = Script(world, step_ms_max=30_000)
    r: dict[str, int] = {}

    def node(name: str) -> RaftNode:
        n = world.raft(r[name])
        assert n is not None, name
        return n

    def wipe_w() -> None:
        leader = one_leader(world)
        assert leader is not None
        r.update(leader=leader.node_id, w=min(n for n in world.ids if n != leader.node_id))
        assert leader.voter_set.directories[r["w"]] == world.initial_dirs[r["w"]]
        sim.crash(r["w"])
        sim.restart(r["w"], wipe=True)
        propose(world, leader, b"a-0", b"a-1")

    def w_observes() -> bool:
        w = world.raft(r["w"])
        return (w is not None and w.role is RaftRole.FOLLOWER and not w.is_voter
                and b"a-1" in committed_values(world) and w.high_watermark >= world.committed_end)

    def remove_w() -> None:
        leader = node("leader")
        answer = admin_call(world, leader, RemoveRaftVoterRequest(
            cluster_id="sim-cluster", voter_id=r["w"], voter_directory_id=world.initial_dirs[r["w"]]))
        assert answer is None, answer  # answered once the new voter set commits
        assert r["w"] not in leader.voter_set.voters and len(leader.voter_set) == 2

    def answered_ok() -> bool:
        answer = admin_answer(world)
        return answer is not None and getattr(answer, "error_code", None) == ErrorCode.NONE

    def add_w() -> None:
        r["answers"] = len(sim.outside)
        w = node("w")
        answer = admin_call(world, node("leader"), AddRaftVoterRequest(
            cluster_id="sim-cluster", timeout_ms=5_000, voter_id=r["w"], voter_directory_id=w.directory_id,
            listeners=[AddRaftVoterRequest.Listener(name="CONTROLLER", host="localhost", port=9093)]))
        assert answer is None, answer

    def added() -> bool:
        return len(sim.outside) > r["answers"] and answered_ok() and node("w").is_voter

    def leader_dies() -> None:
        propose(world, node("leader"), b"c-0")
        r["epoch"] = node("leader").epoch
        sim.crash(r["leader"])

    def new_leader() -> bool:
        leader = one_leader(world)
        return leader is not None and leader.epoch > r["epoch"]

    s.step("leader elected, ids recorded, all caught up", lambda: started(world), wipe_w)
    s.step("W is back as an observer and caught up", w_observes, remove_w)
    s.step("the removal committed", answered_ok, lambda: propose(world, node("leader"), b"b-0", b"b-1"))
    s.step("two voters commit", lambda: {b"b-0", b"b-1"} <= committed_values(world)
           and node("w").high_watermark >= world.committed_end, add_w)
    s.step("W added back and a voter", added, leader_dies)
    s.step("a new leader commits", new_leader, lambda: propose(world, one_leader(world), b"d-0"))
    s.step("d-0 committed everywhere", lambda: b"d-0" in committed_values(world) and all_caught_up(world))
    s.run()
    w = node("w")
    assert w.is_voter and w.voter_set.directories[r["w"]] == w.directory_id != world.initial_dirs[r["w"]]
    assert {b"a-0", b"a-1", b"b-0", b"b-1", b"d-0"} <= committed_values(world)
    world.final_checks()
