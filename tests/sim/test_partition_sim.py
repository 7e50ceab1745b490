"""Goal: one partition replicated on three brokers keeps Kafka's replication guarantees under any
mix of faults the simulator can make, and recovers once they stop.

Each seed runs, on ``sim.core``'s seeded scheduler and network, three brokers (each a
``replication.partition.Partition`` over a real ``PartitionLog`` on its own ``SimFileSystem``),
a tiny controller and a producer, all speaking Kafka's messages: Fetch (replica id and broker
epoch, last fetched epoch, current leader epoch), ListOffsets, AlterPartition (v3, broker
epochs), BrokerRegistration (with KIP-966's previous broker epoch: -1 after an unclean
shutdown), BrokerHeartbeat, LeaderAndIsr (the controller's push of the partition state),
Metadata and Produce (acks=all mostly). On a share of the seeds every message is encoded and
decoded on the way, which runs the ``replication.replica_wire`` mapping for real.

The controller model (``ControllerNode``): the partition is created once the three brokers have
registered; a leader is elected from the ISR (alive brokers only), else -- KIP-966's eligible
leader replicas -- from the ELR, else none: there is no unclean election. Every change bumps the
partition epoch, a leader change the leader epoch. A broker whose heartbeats stop for the session
timeout is fenced and leaves the ISR; a broker that registers again (a restart; refused as a
duplicate while the previous life's session lives) leaves the ISR, and after an unclean shutdown
the ELR too. A replica leaving an ISR that is then below
min.insync.replicas joins the ELR (it has everything up to the frozen high watermark); an ISR at
or above it empties the ELR. AlterPartition is checked for the sender's broker epoch, the leader
epoch, the partition epoch and, for each replica added, that it is alive with the broker epoch it
fetched with (KIP-903). ``Profile.elr=False`` is the classic model instead: the last ISR member
never leaves it.

Faults: message delays (reordering), drops, cut directions and isolated nodes (a leader cut off
from the controller but not from its followers and the producer is a zombie), crashes that lose
the page cache (some with torn tails), clean restarts, and disks replaced by empty ones.

Checked after every event (``World.check``), over one global committed sequence (the longest
high-watermark prefix any replica has shown):

* at most one leader per leader epoch;
* a replica's high watermark never goes back while it runs, and is at most its log end;
* every replica's log agrees with the committed sequence below its high watermark (so any two
  replicas agree below the lower of their high watermarks);
* every acknowledged acks=all write is committed at the offset it was acknowledged with, and the
  committed sequence is in the log of every ISR member that is registered in its current life,
  and of every new leader when it is elected and when it takes over;
* a replica joins the ISR only with everything committed and at least the leader epoch start
  offset in its log (checked when the controller commits the expansion).

Then the network heals and every broker runs again; unless unclean shutdowns left the partition
with neither ISR nor ELR (offline by design: no unclean election), a leader must acknowledge new
writes and all three replicas must be back in the ISR within ``LIVENESS_MS``.

``TRAFKA_SIM_SEEDS`` sets how many random seeds run; ``TRAFKA_SIM_SEED=<n>`` reruns one (the
failure message names it). The named scenarios force the situations of the replication issue:
KIP-101's two scenarios, a new leader with a stale high watermark, an AlterPartition in flight
during an election, the last replica standing losing its page cache, a broker back with an empty
disk and a partitioned zombie leader. Two planted bugs show the checks are not vacuous.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages import ApiKey
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.broker_heartbeat import BrokerHeartbeatRequest, BrokerHeartbeatResponse
from protocol.messages.broker_registration import BrokerRegistrationRequest, BrokerRegistrationResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.leader_and_isr import LeaderAndIsrRequest, LeaderAndIsrResponse
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.records import NewRecord, build_batch, iter_batches
from replication.partition import (
    NO_LEADER,
    AlterPartitionProposal,
    AlterPartitionResult,
    FetchedPartition,
    FetchOutcome,
    LeaderAndIsr,
    LogTruncated,
    Partition,
    ProduceCompleted,
    ReplicaConfig,
    ReplicaFetch,
)
from replication.raft import SendRequest, SendResponse
from replication.replica_wire import (
    alter_partition_data_from_proposal,
    alter_partition_result,
    fetch_partition_from_fetch,
    fetched_from_partition_data,
    partition_data_from_response,
    replica_fetch_from_request,
    replica_state_from_fetch,
)
from sim.core import NEVER_MS, Network, NetworkConfig, Simulation, SimulationFailure, chosen_seeds
from storage.config import LogConfig
from storage.fs import SimFileSystem, read_whole, write_atomically
from storage.manager import LogManager

TOPIC = "t"
TOPIC_ID = uuid.UUID(int=0x74726166)
CONTROLLER = 0
CLIENT = 9
BROKERS = (1, 2, 3)
LOG_DIR = "/data"
EPOCH_FILE = "/data/sim-broker-epoch"  # the broker epoch a clean shutdown reports (KIP-966)

WIRE_VERSIONS: dict[int, int] = {
    ApiKey.FETCH: 17,
    ApiKey.LIST_OFFSETS: 9,
    ApiKey.PRODUCE: 11,
    ApiKey.METADATA: 12,
    ApiKey.LEADER_AND_ISR: 7,
    ApiKey.BROKER_REGISTRATION: 4,
    ApiKey.BROKER_HEARTBEAT: 1,
    ApiKey.ALTER_PARTITION: 3,
}

HEARTBEAT_MS = 100
SESSION_TIMEOUT_MS = 600
TICK_MS = 50
PUSH_MS = 300
REGISTER_RETRY_MS = 200
FETCH_IDLE_MS = 20  # a fetch that returned nothing waits this long (the leader answers at once)
FETCH_TIMEOUT_MS = 500
PRODUCE_TIMEOUT_MS = 2_000
CLIENT_TIMEOUT_MS = 3_000
CLIENT_IN_FLIGHT_MAX = 8
METADATA_MS = 150
CHECKPOINT_MS = 200
LIVENESS_MS = 30_000
DEFAULT_SEEDS = 120

Entry = tuple[int, bytes]  # (leader epoch, value) of the record at an offset


@dataclass(slots=True)
class Profile:
    """What one seed's chaos looks like."""

    chaos_ms: int = 5_000
    min_isr: int = 2
    elr: bool = True
    delay_ms_max: int = 10
    drop_probability: float = 0.01
    crashes: int = 2
    wipes: int = 0
    clean_restarts: int = 0
    partitions: int = 1
    lag_ms: int = 1_000
    fetch_bytes_max: int = 1 << 20
    produce_every_ms: tuple[int, int] = (5, 40)
    acks_one_share: float = 0.1
    flush_every_ms: tuple[int, int] = (50, 400)
    segment_bytes: int = 1 << 20
    roundtrip: bool = False


def random_profile(rng: random.Random) -> Profile:
    produce_every_ms = rng.choice([(2, 20), (5, 40), (50, 200)])
    return Profile(
        chaos_ms=rng.randint(2_000, 6_000),
        min_isr=rng.choice([1, 2, 2, 2, 3]),
        delay_ms_max=rng.choice([2, 10, 40]),
        drop_probability=rng.choice([0.0, 0.01, 0.05]),
        crashes=rng.randint(0, 4),
        wipes=1 if rng.random() < 0.25 else 0,
        clean_restarts=rng.randint(0, 2),
        partitions=rng.randint(0, 4),
        lag_ms=rng.choice([300, 1_000, 3_000]),
        # One batch per fetch only with a slow producer: followers must be able to catch up.
        fetch_bytes_max=rng.choice([100, 1 << 20]) if produce_every_ms[0] >= 50 else 1 << 20,
        produce_every_ms=produce_every_ms,
        acks_one_share=rng.choice([0.0, 0.2]),
        flush_every_ms=rng.choice([(20, 100), (50, 400), (500, 2_000)]),
        segment_bytes=rng.choice([700, 4096, 1 << 20]),
        roundtrip=rng.random() < 0.2,
    )


# --- nodes --------------------------------------------------------------------------------------


class _Node:
    """Timers, correlation ids and an outbox: the sans-IO shape ``sim.core`` drives."""

    def __init__(self) -> None:
        self._outbox: list[SendRequest | SendResponse] = []
        self._timers: dict[str, int] = {}
        self._next_correlation_id = 0

    def request(self, destination: int, request: Message) -> int:
        cid = self._next_correlation_id
        self._next_correlation_id += 1
        self._outbox.append(SendRequest(destination=destination, correlation_id=cid, request=request))
        return cid

    def respond(self, destination: int, correlation_id: int, response: Message) -> None:
        self._outbox.append(SendResponse(destination=destination, correlation_id=correlation_id, response=response))

    def set_timer(self, name: str, at_ms: int) -> None:
        self._timers[name] = at_ms

    def poll(self, now_ms: int) -> list[SendRequest | SendResponse]:
        while True:
            due = sorted((at, name) for name, at in self._timers.items() if at <= now_ms)
            if not due:
                break
            for _, name in due:
                del self._timers[name]
                getattr(self, "on_" + name)(now_ms)
        out, self._outbox = self._outbox, []
        return out

    def next_deadline_ms(self) -> int:
        return min(self._timers.values(), default=NEVER_MS)

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        raise NotImplementedError

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        raise NotImplementedError


class BrokerNode(_Node):
    """A broker: the partition replica, its fetcher, its produce path and its registration."""

    def __init__(self, world: World, node_id: int, fs: SimFileSystem, now_ms: int, rng: random.Random) -> None:
        super().__init__()
        self.world = world
        self.id = node_id
        self.fs = fs
        self.rng = rng
        cfg = world.profile
        self.mgr = LogManager.open(fs, LOG_DIR, now_ms=now_ms,
                                   default_config=LogConfig(segment_bytes=cfg.segment_bytes))
        self.clean_start = self.mgr.had_clean_shutdown
        self.previous_epoch = int(read_whole(fs, EPOCH_FILE)) if self.clean_start and fs.exists(EPOCH_FILE) else -1
        if fs.exists(EPOCH_FILE):
            # The epoch belongs to the life that wrote it: a life that shuts down cleanly without
            # having registered must not vouch for an earlier one that crashed (KIP-966).
            fs.remove(EPOCH_FILE)
            fs.sync_dir(LOG_DIR)
        self.log = self.mgr.get_or_create_log(TOPIC, 0, now_ms=now_ms, topic_id=TOPIC_ID)
        self.p = Partition(self.log, broker_id=node_id, config=world.replica_config)
        self.incarnation_id = uuid.UUID(int=rng.getrandbits(128))
        self.broker_epoch = -1  # until the controller answers the registration
        self.fetching: tuple[int, ReplicaFetch, int] | None = None  # correlation id, fetch, sent at
        self.out_of_range: tuple[int, ReplicaFetch, FetchedPartition] | None = None
        self.parked: dict[int, tuple[int, int, int]] = {}  # produce id -> client, correlation id, offset
        self.alter: dict[int, int] = {}  # correlation id -> proposal id
        self.truncated_to: int | None = None  # lowest log end after a truncation, for the checks
        self.appended_as_leader = 0
        for name, at in (("register", now_ms), ("tick", now_ms + TICK_MS), ("checkpoint", now_ms + CHECKPOINT_MS),
                         ("flush", now_ms + rng.randint(*cfg.flush_every_ms))):
            self.set_timer(name, at)

    @property
    def registered(self) -> bool:
        return self.broker_epoch >= 0

    def close(self, now_ms: int) -> None:
        """A clean shutdown: everything flushed, checkpoints and the clean-shutdown marker written."""
        self.mgr.close(now_ms=now_ms)

    # --- timers ----------------------------------------------------------------------------------

    def on_register(self, now_ms: int) -> None:
        if self.registered:
            return
        self.request(CONTROLLER, BrokerRegistrationRequest(
            broker_id=self.id, cluster_id="sim", incarnation_id=self.incarnation_id,
            previous_broker_epoch=self.previous_epoch))
        self.set_timer("register", now_ms + REGISTER_RETRY_MS)

    def on_heartbeat(self, now_ms: int) -> None:
        self.request(CONTROLLER, BrokerHeartbeatRequest(broker_id=self.id, broker_epoch=self.broker_epoch))
        self.set_timer("heartbeat", now_ms + HEARTBEAT_MS)

    def on_tick(self, now_ms: int) -> None:
        self.p.tick(now_ms)
        self.drain(now_ms)
        self.set_timer("tick", now_ms + TICK_MS)

    def on_flush(self, now_ms: int) -> None:
        self.log.flush(now_ms=now_ms)  # the page cache written back
        self.set_timer("flush", now_ms + self.rng.randint(*self.world.profile.flush_every_ms))

    def on_checkpoint(self, now_ms: int) -> None:
        self.mgr.write_checkpoints()
        self.set_timer("checkpoint", now_ms + CHECKPOINT_MS)

    def on_fetch(self, now_ms: int) -> None:
        if self.fetching is not None or self.out_of_range is not None:
            return
        f = self.p.next_fetch(now_ms=now_ms)
        if f is None:
            if self.p.leader_id != self.id:
                self.set_timer("fetch", now_ms + FETCH_IDLE_MS)
            return
        req = FetchRequest(max_wait_ms=0, min_bytes=1, replica_state=replica_state_from_fetch(f),
                           topics=[FetchRequest.FetchTopic(topic=TOPIC, topic_id=TOPIC_ID,
                                                           partitions=[fetch_partition_from_fetch(f, partition_index=0)])])
        self.fetching = (self.request(self.p.leader_id, req), f, now_ms)
        self.set_timer("fetch_timeout", now_ms + FETCH_TIMEOUT_MS)

    def on_fetch_timeout(self, now_ms: int) -> None:
        if self.fetching is not None and self.fetching[2] + FETCH_TIMEOUT_MS <= now_ms:
            self.fetching = None
            self.set_timer("fetch", now_ms)
        if self.out_of_range is not None:
            self.out_of_range = None
            self.set_timer("fetch", now_ms)

    # --- requests --------------------------------------------------------------------------------

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        if isinstance(request, FetchRequest):
            part = request.topics[0].partitions[0]
            resp = self.p.handle_replica_fetch(replica_fetch_from_request(request, part), now_ms=now_ms)
            records = resp.fetched().records
            data = partition_data_from_response(resp, partition_index=0, records=records or None)
            self.drain(now_ms)
            return FetchResponse(responses=[FetchResponse.FetchableTopicResponse(
                topic=TOPIC, topic_id=TOPIC_ID, partitions=[data])])
        if isinstance(request, ProduceRequest):
            return self.produce(now_ms, source, correlation_id, request)
        if isinstance(request, LeaderAndIsrRequest):
            return self.apply_metadata(now_ms, request)
        if isinstance(request, ListOffsetsRequest):
            asked = request.topics[0].partitions[0]
            error, offset = ErrorCode.NONE, -1
            if not self.p.is_leader:
                error = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif asked.current_leader_epoch not in (-1, self.p.leader_epoch):
                error = (ErrorCode.FENCED_LEADER_EPOCH if asked.current_leader_epoch < self.p.leader_epoch
                         else ErrorCode.UNKNOWN_LEADER_EPOCH)
            else:
                offset = self.log.log_end_offset  # LATEST for a replica: the log end
            return ListOffsetsResponse(topics=[ListOffsetsResponse.ListOffsetsTopicResponse(
                name=TOPIC, partitions=[ListOffsetsResponse.ListOffsetsPartitionResponse(
                    partition_index=0, error_code=error, offset=offset, leader_epoch=self.p.leader_epoch)])])
        raise AssertionError(f"broker {self.id} got an unexpected {type(request).__name__}")

    def produce(self, now_ms: int, source: int, correlation_id: int, request: ProduceRequest) -> Message | None:
        records = request.topic_data[0].partition_data[0].records
        assert isinstance(records, bytes | bytearray | memoryview)
        r = self.p.append(records, acks=request.acks, now_ms=now_ms, timeout_ms=request.timeout_ms)
        if r.info is not None:
            self.appended_as_leader += 1
        if r.produce_id >= 0:
            assert r.info is not None
            self.parked[r.produce_id] = (source, correlation_id, r.info.first_offset)
            self.drain(now_ms)
            return None
        self.drain(now_ms)
        return produce_response(r.error, r.info.first_offset if r.info is not None else -1)

    def apply_metadata(self, now_ms: int, request: LeaderAndIsrRequest) -> Message:
        if not self.registered or request.broker_epoch != self.broker_epoch:
            return LeaderAndIsrResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
        ps = request.topic_states[0].partition_states[0]
        state = LeaderAndIsr(leader=ps.leader, leader_epoch=ps.leader_epoch, partition_epoch=ps.partition_epoch,
                             replicas=tuple(ps.replicas), isr=tuple(ps.isr))
        if state.leader == self.id:
            if self.p.become_leader(state, min_insync_replicas=self.world.profile.min_isr, now_ms=now_ms):
                self.world.on_become_leader(self)
        elif self.p.become_follower(state, now_ms=now_ms):
            self.fetching = None
            self.out_of_range = None
            self.set_timer("fetch", now_ms)
        self.drain(now_ms)
        return LeaderAndIsrResponse()

    # --- responses -------------------------------------------------------------------------------

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        if isinstance(response, FetchResponse):
            self.fetched(now_ms, correlation_id, response)
        elif isinstance(response, AlterPartitionResponse):
            proposal_id = self.alter.pop(correlation_id, None)
            if proposal_id is not None:
                if response.topics:
                    result = alter_partition_result(response.topics[0].partitions[0],
                                                    top_level_error=response.error_code)
                else:
                    result = AlterPartitionResult(error=ErrorCode(response.error_code))
                self.p.handle_alter_partition_result(proposal_id, result, now_ms=now_ms)
        elif isinstance(response, BrokerRegistrationResponse):
            if not self.registered and response.error_code == ErrorCode.NONE:
                self.broker_epoch = self.p.broker_epoch = response.broker_epoch
                write_atomically(self.fs, EPOCH_FILE, str(response.broker_epoch).encode())
                self.set_timer("heartbeat", now_ms)
                self.world.on_registered(self)
        elif isinstance(response, ListOffsetsResponse):
            pending = self.out_of_range
            if pending is not None and pending[0] == correlation_id:
                self.out_of_range = None
                part = response.topics[0].partitions[0]
                if part.error_code == ErrorCode.NONE:
                    fetched = dataclasses.replace(pending[2], log_end_offset=part.offset)
                    self.p.handle_fetch_response(pending[1], fetched, now_ms=now_ms)
                self.set_timer("fetch", now_ms + FETCH_IDLE_MS)
        self.drain(now_ms)

    def fetched(self, now_ms: int, correlation_id: int, response: FetchResponse) -> None:
        if self.fetching is None or self.fetching[0] != correlation_id:
            return
        f = self.fetching[1]
        self.fetching = None
        fetched = fetched_from_partition_data(response.responses[0].partitions[0])
        outcome = self.p.handle_fetch_response(f, fetched, now_ms=now_ms)
        if outcome is FetchOutcome.NEED_LEADER_END_OFFSET:
            # Kafka's fetcher asks the leader's log end with ListOffsets(LATEST), as must we.
            req = ListOffsetsRequest(replica_id=self.id, topics=[ListOffsetsRequest.ListOffsetsTopic(
                name=TOPIC, partitions=[ListOffsetsRequest.ListOffsetsPartition(
                    partition_index=0, current_leader_epoch=f.current_leader_epoch, timestamp=-1)])])
            self.out_of_range = (self.request(self.p.leader_id, req), f, fetched)
            self.world.stats["list_offsets"] += 1
            self.set_timer("fetch_timeout", now_ms + FETCH_TIMEOUT_MS)
            return
        busy = outcome in (FetchOutcome.TRUNCATED, FetchOutcome.RESET) or (
            outcome is FetchOutcome.APPENDED and fetched.records)
        self.set_timer("fetch", now_ms + (1 if busy else FETCH_IDLE_MS))

    # --- the partition's effects -----------------------------------------------------------------

    def drain(self, now_ms: int) -> None:
        for e in self.p.take_effects():
            if isinstance(e, AlterPartitionProposal):
                self.world.on_proposal(self, e)
                req = AlterPartitionRequest(broker_id=self.id, broker_epoch=self.broker_epoch, topics=[
                    AlterPartitionRequest.TopicData(topic_id=TOPIC_ID, partitions=[
                        alter_partition_data_from_proposal(e, version=WIRE_VERSIONS[ApiKey.ALTER_PARTITION])])])
                self.alter[self.request(CONTROLLER, req)] = e.proposal_id
            elif isinstance(e, ProduceCompleted):
                parked = self.parked.pop(e.produce_id, None)
                if parked is not None:
                    self.respond(parked[0], parked[1], produce_response(e.error, parked[2]))
            elif isinstance(e, LogTruncated):
                low = e.end_offset if self.truncated_to is None else min(self.truncated_to, e.end_offset)
                self.truncated_to = low
                self.world.stats["truncations"] += 1


def produce_response(error: ErrorCode, offset: int) -> ProduceResponse:
    return ProduceResponse(responses=[ProduceResponse.TopicProduceResponse(name=TOPIC, partition_responses=[
        ProduceResponse.PartitionProduceResponse(index=0, error_code=error, base_offset=offset)])])


@dataclass(slots=True)
class BrokerInfo:
    epoch: int
    incarnation_id: uuid.UUID
    alive: bool  # registered and unfenced
    last_heartbeat_ms: int


class ControllerNode(_Node):
    """The controller model of the module docstring: one partition, replicas (1, 2, 3)."""

    def __init__(self, world: World, now_ms: int) -> None:
        super().__init__()
        self.world = world
        self.min_isr = world.profile.min_isr
        self.elr_enabled = world.profile.elr
        self.created = False
        self.replicas = BROKERS
        self.leader = NO_LEADER
        self.leader_epoch = 0
        self.partition_epoch = 0
        self.isr: tuple[int, ...] = ()
        self.elr: set[int] = set()
        self.brokers: dict[int, BrokerInfo] = {}
        self.next_broker_epoch = 100
        self.rejected: list[tuple[ErrorCode, int]] = []  # AlterPartition errors, with the sender
        self.set_timer("fence", now_ms + TICK_MS)
        self.set_timer("push", now_ms + PUSH_MS)

    def alive(self, broker: int) -> bool:
        info = self.brokers.get(broker)
        return info is not None and info.alive

    def state(self) -> LeaderAndIsr:
        return LeaderAndIsr(leader=self.leader, leader_epoch=self.leader_epoch, partition_epoch=self.partition_epoch,
                            replicas=self.replicas, isr=self.isr)

    # --- timers ----------------------------------------------------------------------------------

    def on_fence(self, now_ms: int) -> None:
        changed = False
        for b, info in self.brokers.items():
            if info.alive and now_ms - info.last_heartbeat_ms > SESSION_TIMEOUT_MS:
                info.alive = False
                self.leave_isr(b, clean=True)  # its shutdown may not have been clean: we learn that later
                changed = True
        if changed:
            self.elect()
            self.push_all()
        self.set_timer("fence", now_ms + TICK_MS)

    def on_push(self, now_ms: int) -> None:
        self.push_all()
        self.set_timer("push", now_ms + PUSH_MS)

    # --- the partition's state -------------------------------------------------------------------

    def set_isr(self, new_isr: tuple[int, ...], removed: set[int]) -> None:
        """Change the ISR with KIP-966's ELR rules; bumps the partition epoch."""
        added = set(new_isr) - set(self.isr)
        self.elr -= added
        if self.elr_enabled:
            if len(new_isr) < self.min_isr:
                self.elr |= removed
            else:
                self.elr = set()
        self.isr = new_isr
        self.partition_epoch += 1

    def leave_isr(self, broker: int, *, clean: bool) -> None:
        if broker in self.isr:
            if not self.elr_enabled and len(self.isr) == 1:
                return  # classic Kafka: the last ISR member stays, to lead again when it is back
            self.set_isr(tuple(r for r in self.isr if r != broker), {broker} if clean else set())
        if not clean and broker in self.elr:
            self.elr.discard(broker)
            self.partition_epoch += 1

    def elect(self) -> None:
        if not self.created:
            return
        if self.leader != NO_LEADER and self.leader in self.isr and self.alive(self.leader):
            return
        candidates = [r for r in self.replicas if r in self.isr and self.alive(r)]
        new = candidates[0] if candidates else NO_LEADER
        from_elr = False
        if new == NO_LEADER and self.elr_enabled:
            eligible = [r for r in self.replicas if r in self.elr and self.alive(r)]
            if eligible:
                new, from_elr = eligible[0], True
                self.isr = (new,)
                self.elr.discard(new)
        if new != self.leader:
            self.leader = new
            self.leader_epoch += 1
            self.partition_epoch += 1
            self.world.on_elected(self, new, from_elr=from_elr)

    def push_all(self) -> None:
        if not self.created:
            return
        for b, info in self.brokers.items():
            ps = LeaderAndIsrRequest.LeaderAndIsrPartitionState(
                partition_index=0, leader=self.leader, leader_epoch=self.leader_epoch, isr=list(self.isr),
                partition_epoch=self.partition_epoch, replicas=list(self.replicas))
            self.request(b, LeaderAndIsrRequest(
                controller_id=CONTROLLER, is_k_raft_controller=True, broker_epoch=info.epoch,
                topic_states=[LeaderAndIsrRequest.LeaderAndIsrTopicState(
                    topic_name=TOPIC, topic_id=TOPIC_ID, partition_states=[ps])]))

    # --- requests --------------------------------------------------------------------------------

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        if isinstance(request, BrokerHeartbeatRequest):
            info = self.brokers.get(request.broker_id)
            if info is None or info.epoch != request.broker_epoch:
                return BrokerHeartbeatResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
            info.last_heartbeat_ms = now_ms
            if not info.alive:
                info.alive = True
                self.elect()
                self.push_all()
            return BrokerHeartbeatResponse(is_caught_up=True, is_fenced=False)
        if isinstance(request, BrokerRegistrationRequest):
            return self.register(now_ms, request)
        if isinstance(request, AlterPartitionRequest):
            return self.alter_partition(request)
        if isinstance(request, MetadataRequest):
            return MetadataResponse(controller_id=CONTROLLER, topics=[MetadataResponse.MetadataResponseTopic(
                name=TOPIC, topic_id=TOPIC_ID, partitions=[MetadataResponse.MetadataResponsePartition(
                    partition_index=0, leader_id=self.leader, leader_epoch=self.leader_epoch,
                    replica_nodes=list(self.replicas), isr_nodes=list(self.isr))])])
        raise AssertionError(f"the controller got an unexpected {type(request).__name__}")

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        pass  # LeaderAndIsr acknowledgements: the periodic push repairs what was lost

    def register(self, now_ms: int, request: BrokerRegistrationRequest) -> Message:
        b = request.broker_id
        info = self.brokers.get(b)
        if info is not None and info.incarnation_id == request.incarnation_id:
            return BrokerRegistrationResponse(broker_epoch=info.epoch)  # a retry of the same registration
        if info is not None and info.alive and now_ms - info.last_heartbeat_ms <= SESSION_TIMEOUT_MS:
            # Another life holds a live session (this may be a late request of a dead one).
            return BrokerRegistrationResponse(error_code=ErrorCode.DUPLICATE_BROKER_REGISTRATION)
        clean = info is not None and request.previous_broker_epoch == info.epoch
        epoch = self.next_broker_epoch
        self.next_broker_epoch += 1
        self.brokers[b] = BrokerInfo(epoch, request.incarnation_id, True, now_ms)
        if self.created:
            self.leave_isr(b, clean=clean)  # a new life: it may have lost its log
            self.elect()
        elif all(r in self.brokers for r in self.replicas):
            self.created = True
            self.isr = self.replicas
            self.elect()
        self.push_all()
        return BrokerRegistrationResponse(broker_epoch=epoch)

    def alter_partition(self, request: AlterPartitionRequest) -> Message:
        pd = request.topics[0].partitions[0]
        sender = self.brokers.get(request.broker_id)
        top = ErrorCode.NONE
        error = ErrorCode.NONE
        if sender is None or sender.epoch != request.broker_epoch:
            top = ErrorCode.STALE_BROKER_EPOCH
        elif pd.leader_epoch < self.leader_epoch:
            error = ErrorCode.FENCED_LEADER_EPOCH
        elif request.broker_id != self.leader or pd.leader_epoch != self.leader_epoch:
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        elif pd.partition_epoch != self.partition_epoch:
            error = ErrorCode.INVALID_UPDATE_VERSION
        else:
            members = [(m.broker_id, m.broker_epoch) for m in pd.new_isr_with_epochs]
            new_isr = tuple(b for b, _ in members)
            if self.leader not in new_isr or any(b not in self.replicas for b in new_isr):
                error = ErrorCode.INVALID_REQUEST
            for b, epoch in members:
                if b not in self.isr:
                    info = self.brokers.get(b)
                    if info is None or not info.alive or (epoch != -1 and epoch != info.epoch):
                        error = ErrorCode.INELIGIBLE_REPLICA  # KIP-903
            if error == ErrorCode.NONE:
                added = [(b, e) for b, e in members if b not in self.isr]
                self.world.on_isr_expanded(self, added, pd.leader_epoch)
                self.set_isr(tuple(sorted(new_isr)), set(self.isr) - set(new_isr))
                self.push_all()
        if top != ErrorCode.NONE or error != ErrorCode.NONE:
            self.rejected.append((top if top != ErrorCode.NONE else error, request.broker_id))
        if top != ErrorCode.NONE:
            return AlterPartitionResponse(error_code=top)
        return AlterPartitionResponse(topics=[AlterPartitionResponse.TopicData(topic_id=TOPIC_ID, partitions=[
            AlterPartitionResponse.PartitionData(
                partition_index=0, error_code=error, leader_id=self.leader, leader_epoch=self.leader_epoch,
                isr=list(self.isr), partition_epoch=self.partition_epoch)])])


class ClientNode(_Node):
    """A producer of unique values, acks=all mostly, to the leader the controller names."""

    def __init__(self, world: World, now_ms: int) -> None:
        super().__init__()
        self.world = world
        self.leader = NO_LEADER
        self.pending: dict[int, tuple[bytes, int, int]] = {}  # correlation id -> value, sent at, acks
        self.producing = True
        self.set_timer("metadata", now_ms)
        self.set_timer("produce", now_ms + 1)

    def on_metadata(self, now_ms: int) -> None:
        self.request(CONTROLLER, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=TOPIC)]))
        self.set_timer("metadata", now_ms + METADATA_MS)

    def on_produce(self, now_ms: int) -> None:
        for cid in [c for c, (_, sent, _) in self.pending.items() if now_ms - sent > CLIENT_TIMEOUT_MS]:
            del self.pending[cid]
        world = self.world
        if self.producing and self.leader != NO_LEADER and len(self.pending) < CLIENT_IN_FLIGHT_MAX:
            value = b"%s%d" % (world.value_prefix, world.next_value)
            world.next_value += 1
            acks = 1 if world.sim.rng.random() < world.profile.acks_one_share else -1
            batch = build_batch([NewRecord(value=value, timestamp=now_ms)])
            req = ProduceRequest(acks=acks, timeout_ms=PRODUCE_TIMEOUT_MS, topic_data=[
                ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
                    ProduceRequest.PartitionProduceData(index=0, records=batch)])])
            self.pending[self.request(self.leader, req)] = (value, now_ms, acks)
            world.produced.add(value)
        self.set_timer("produce", now_ms + world.sim.rng.randint(*world.profile.produce_every_ms))

    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None:
        raise AssertionError("the client serves nothing")

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None:
        if isinstance(response, MetadataResponse):
            self.leader = response.topics[0].partitions[0].leader_id
        elif isinstance(response, ProduceResponse):
            sent = self.pending.pop(correlation_id, None)
            if sent is None:
                return
            pr = response.responses[0].partition_responses[0]
            if pr.error_code == ErrorCode.NONE and sent[2] == -1:
                self.world.on_ack(pr.base_offset, sent[0], source)
            elif pr.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                self.set_timer("metadata", now_ms)


# --- the world: nodes, checks, faults -----------------------------------------------------------


@dataclass(slots=True)
class Mirror:
    """The checks' copy of one broker life's log: an entry per offset, and how much of it has been
    found equal to the committed sequence."""

    incarnation: int
    entries: list[Entry] = field(default_factory=list)
    verified: int = 0
    last_hw: int = 0


class World:
    def __init__(self, seed: int, profile: Profile, *, replica_config: ReplicaConfig | None = None) -> None:
        self.seed = seed
        self.profile = profile
        self.replica_config = replica_config or ReplicaConfig(
            replica_lag_time_max_ms=profile.lag_ms, replica_fetch_backoff_ms=100,
            replica_fetch_max_bytes=profile.fetch_bytes_max, alter_partition_retry_backoff_ms=300)
        self.committed: list[Entry] = []
        self.acked: dict[int, bytes] = {}
        self.produced: set[bytes] = set()
        self.leaders: dict[int, int] = {}  # leader epoch -> broker
        self.mirrors: dict[int, Mirror] = {}
        self.next_value = 0
        self.value_prefix = b"v"
        self.heal_ms: int | None = None
        self.acked_after_heal = 0
        self.stats: dict[str, int] = {"truncations": 0, "list_offsets": 0, "elections": 0, "elr_elections": 0}
        self.hooks: list[Callable[[str, object], None]] = []
        self.controller: ControllerNode | None = None
        self.client: ClientNode | None = None
        self.sim = Simulation(
            seed, (CONTROLLER, *BROKERS, CLIENT), self.make_node,
            network=NetworkConfig(delay_ms_min=1, delay_ms_max=profile.delay_ms_max,
                                  drop_probability=profile.drop_probability),
            checks=[self.check],
            wire_versions=WIRE_VERSIONS if profile.roundtrip else None,
        )

    def make_node(self, node_id: int, fs: SimFileSystem, now_ms: int, rng: random.Random) -> _Node:
        if node_id == CONTROLLER:
            assert self.controller is None, "the controller does not crash"
            self.controller = ControllerNode(self, now_ms)
            return self.controller
        if node_id == CLIENT:
            assert self.client is None, "the client does not crash"
            self.client = ClientNode(self, now_ms)
            return self.client
        return BrokerNode(self, node_id, fs, now_ms, rng)

    def broker(self, node_id: int) -> BrokerNode | None:
        node = self.sim.nodes[node_id]
        assert node is None or isinstance(node, BrokerNode)
        return node

    def running(self) -> list[BrokerNode]:
        return [b for b in (self.broker(i) for i in BROKERS) if b is not None]

    @property
    def ctl(self) -> ControllerNode:
        assert self.controller is not None
        return self.controller

    def participating(self, b: BrokerNode) -> bool:
        """Running, and registered in this life as the broker epoch the controller knows."""
        info = self.ctl.brokers.get(b.id)
        return b.registered and info is not None and info.epoch == b.broker_epoch

    # --- the checks ------------------------------------------------------------------------------

    def mirror(self, b: BrokerNode) -> Mirror:
        """Bring the copy of ``b``'s log up to date (reading only what is new)."""
        inc = self.sim.incarnation[b.id]
        m = self.mirrors.get(b.id)
        if m is None or m.incarnation != inc:
            m = self.mirrors[b.id] = Mirror(inc)
        log = b.log
        assert log.log_start_offset == 0, "nothing in this simulation moves the log start"
        end = log.log_end_offset
        if b.truncated_to is not None:
            cut = min(b.truncated_to, len(m.entries))
            del m.entries[cut:]
            m.verified = min(m.verified, cut)
            b.truncated_to = None
        if end < len(m.entries):
            del m.entries[end:]
            m.verified = min(m.verified, end)
        while len(m.entries) < end:
            res = log.read(len(m.entries), max_bytes=1 << 20)
            views = list(iter_batches(res.read_bytes()))
            assert views, f"broker {b.id}: nothing readable at {len(m.entries)} below its log end {end}"
            for v in views:
                assert v.base_offset == len(m.entries)
                for r in v.records():
                    m.entries.append((v.partition_leader_epoch, bytes(r.value or b"")))
        return m

    def verify(self, b: BrokerNode, m: Mirror, upto: int, what: str) -> None:
        """``b``'s log holds the committed sequence up to ``upto``."""
        assert len(m.entries) >= upto, (
            f"broker {b.id} {what}: its log ends at {len(m.entries)}, {upto} offsets are committed")
        committed = self.committed
        for i in range(m.verified, upto):
            assert m.entries[i] == committed[i], (
                f"broker {b.id} {what}: offset {i} holds {m.entries[i]}, committed was {committed[i]}")
        m.verified = max(m.verified, upto)

    def check(self, sim: Simulation) -> None:
        running = self.running()
        for b in running:
            m = self.mirror(b)
            p = b.p
            hw = p.high_watermark
            assert hw <= len(m.entries), f"broker {b.id}: HW {hw} beyond its log end {len(m.entries)}"
            assert hw >= m.last_hw, f"broker {b.id}'s high watermark went back from {m.last_hw} to {hw}"
            m.last_hw = hw
            if p.is_leader:
                leader = self.leaders.setdefault(p.leader_epoch, b.id)
                assert leader == b.id, f"two leaders in epoch {p.leader_epoch}: {leader} and {b.id}"
            c = len(self.committed)
            self.verify(b, m, min(hw, c), "below its high watermark")
            if hw > c:
                self.committed.extend(m.entries[c:hw])
                m.verified = hw
        c = len(self.committed)
        ctl = self.ctl
        for b in running:
            if b.id in ctl.isr and self.participating(b):
                self.verify(b, self.mirrors[b.id], c, "in the ISR")

    def on_become_leader(self, b: BrokerNode) -> None:
        self.verify(b, self.mirror(b), len(self.committed), f"leading epoch {b.p.leader_epoch}")
        self.emit("leading", (b.id, b.p.high_watermark, len(self.committed)))

    def on_elected(self, ctl: ControllerNode, leader: int, *, from_elr: bool) -> None:
        if leader == NO_LEADER:
            return
        self.stats["elections"] += 1
        self.stats["elr_elections"] += from_elr
        b = self.broker(leader)
        if b is not None and self.participating(b):
            self.verify(b, self.mirror(b), len(self.committed), "elected")
        self.emit("elected", leader)

    def on_isr_expanded(self, ctl: ControllerNode, added: list[tuple[int, int]], leader_epoch: int) -> None:
        leader = self.broker(ctl.leader)
        start = leader.p.leader_epoch_start_offset if leader is not None and leader.p.leader_epoch == leader_epoch else 0
        for broker_id, epoch in added:
            b = self.broker(broker_id)
            if b is None or not self.participating(b) or b.broker_epoch != epoch:
                continue  # not the life that fetched (the controller refuses a stale epoch)
            m = self.mirror(b)
            self.verify(b, m, len(self.committed), "joining the ISR")
            assert len(m.entries) >= start, (
                f"broker {broker_id} joins the ISR at {len(m.entries)}, below the leader epoch start {start}")

    def on_proposal(self, b: BrokerNode, proposal: AlterPartitionProposal) -> None:
        self.emit("proposal", (b.id, proposal))

    def on_registered(self, b: BrokerNode) -> None:
        self.emit("registered", b.id)

    def on_ack(self, offset: int, value: bytes, source: int) -> None:
        assert offset < len(self.committed) and self.committed[offset][1] == value, (
            f"broker {source} acknowledged {value!r} at {offset}, but the committed log has "
            f"{self.committed[offset] if offset < len(self.committed) else 'nothing'} there")
        earlier = self.acked.setdefault(offset, value)
        assert earlier == value, f"offset {offset} acknowledged for {earlier!r} and {value!r}"
        if self.heal_ms is not None:
            self.acked_after_heal += 1
            assert self.client is not None
            self.client.producing = False  # one new write shows progress; then let replicas settle

    def emit(self, event: str, detail: object) -> None:
        for hook in self.hooks:
            hook(event, detail)

    # --- faults ----------------------------------------------------------------------------------

    def crash(self, node_id: int, *, torn: bool = False) -> None:
        self.sim.crash(node_id, torn=torn)

    def clean_restart(self, node_id: int) -> None:
        b = self.broker(node_id)
        if b is None:
            return
        b.close(self.sim.now_ms)
        self.sim.crash(node_id)  # nothing unsynced is left to lose
        self.sim.restart(node_id)

    def restart(self, node_id: int, *, wipe: bool = False) -> None:
        if self.sim.nodes[node_id] is None:
            self.sim.restart(node_id, wipe=wipe)

    def schedule_chaos(self) -> None:
        sim, rng, p = self.sim, self.sim.rng, self.profile
        end = p.chaos_ms
        for _ in range(p.crashes):
            node_id = rng.choice(BROKERS)
            start = rng.randint(300, end)
            torn = rng.random() < 0.3
            sim.schedule(start, partial(self.crash, node_id, torn=torn), f"crash {node_id}")
            sim.schedule(start + rng.randint(0, 2_000), partial(self.restart, node_id), f"restart {node_id}")
        for _ in range(p.wipes):
            node_id = rng.choice(BROKERS)
            start = rng.randint(300, end)
            sim.schedule(start, partial(self.crash, node_id), f"crash {node_id} (disk lost)")
            sim.schedule(start + rng.randint(0, 1_000), partial(self.restart, node_id, wipe=True), f"wipe {node_id}")
        for _ in range(p.clean_restarts):
            node_id = rng.choice(BROKERS)
            sim.schedule(rng.randint(300, end), partial(self.clean_restart, node_id), f"clean restart {node_id}")
        for _ in range(p.partitions):
            start = rng.randint(300, end)
            sim.schedule(start, self.partition_action(rng), "partition")
            sim.schedule(start + rng.randint(100, 3_000), sim.network.heal, "heal network")

    def partition_action(self, rng: random.Random) -> Callable[[], None]:
        kind = rng.choice(["isolate", "zombie", "from-controller", "one-way", "link"])
        a, b = rng.sample(BROKERS, 2)
        net = self.sim.network
        everyone = (CONTROLLER, *BROKERS, CLIENT)

        def act() -> None:
            if kind == "isolate":
                net.isolate(a, everyone)
            elif kind == "zombie":
                # The leader loses the controller (and the producer its metadata), nothing else.
                leader = self.ctl.leader if self.ctl.leader != NO_LEADER else a
                net.cut(leader, CONTROLLER)
                net.cut(CLIENT, CONTROLLER)
            elif kind == "from-controller":
                net.cut(a, CONTROLLER)
            elif kind == "one-way":
                net.cut(a, b, both=False)
            else:
                net.cut(a, b)

        return act

    # --- running ---------------------------------------------------------------------------------

    def heal(self) -> None:
        self.heal_ms = self.sim.now_ms
        self.value_prefix = b"after-heal-"
        self.sim.network.heal()
        self.sim.network.config.drop_probability = 0.0
        for node_id in BROKERS:
            self.restart(node_id)

    def offline_by_design(self) -> bool:
        """Unclean shutdowns left neither ISR nor ELR: without unclean election nobody may lead."""
        ctl = self.ctl
        return ctl.created and not ctl.isr and not ctl.elr

    def settled(self) -> bool:
        ctl = self.ctl
        return (self.offline_by_design()
                or (self.acked_after_heal > 0 and set(ctl.isr) == set(BROKERS) and ctl.leader != NO_LEADER
                    and all(b.p.high_watermark == len(self.committed) for b in self.running())))

    def run(self, *, chaos: bool = True) -> None:
        """Chaos, then heal and require progress; raise ``SimulationFailure`` naming the seed."""
        if chaos:
            self.schedule_chaos()
            self.sim.run_until(self.profile.chaos_ms + 2_500)
        self.finish()

    def finish(self) -> None:
        self.heal()
        if not self.sim.run_until_true(self.settled, deadline_ms=self.sim.now_ms + LIVENESS_MS):
            ctl = self.ctl
            raise self.sim.failure(
                f"no recovery within {LIVENESS_MS} ms of healing: leader {ctl.leader} epoch {ctl.leader_epoch}, "
                f"ISR {ctl.isr}, ELR {sorted(ctl.elr)}, acknowledged after heal {self.acked_after_heal}, HWs "
                + ", ".join(f"{b.id}:{b.p.high_watermark}/{b.p.log_end_offset}" for b in self.running())
                + f", committed {len(self.committed)}")
        self.final_checks()

    def final_checks(self) -> None:
        seen: set[bytes] = set()
        for _, value in self.committed:
            assert value in self.produced, f"committed value {value!r} was never produced"
            assert value not in seen, f"value {value!r} committed twice"
            seen.add(value)

    def run_until(self, predicate: Callable[[], bool], within_ms: int, what: str) -> None:
        if not self.sim.run_until_true(predicate, deadline_ms=self.sim.now_ms + within_ms):
            raise self.sim.failure(f"scenario: {what} did not happen within {within_ms} ms")


def run_seed(seed: int) -> World:
    world = World(seed, random_profile(random.Random(seed * 7919 + 3)))
    world.run()
    return world


def seeds() -> list[int]:
    return chosen_seeds(DEFAULT_SEEDS)


def test_random_faults() -> None:
    totals = dict.fromkeys(("acked", "elections", "truncations", "offline"), 0)
    chosen = seeds()
    for seed in chosen:
        world = run_seed(seed)
        totals["acked"] += len(world.acked)
        totals["elections"] += world.stats["elections"]
        totals["truncations"] += world.stats["truncations"]
        totals["offline"] += world.offline_by_design()
    print(f"{len(chosen)} seeds: {totals}")
    assert totals["acked"] >= 10 * len(chosen), "writes are acknowledged in most runs"
    if len(chosen) >= 20:
        assert totals["elections"] > 2 * len(chosen) and totals["truncations"] > 0, totals


# --- named scenarios ----------------------------------------------------------------------------


def scenario_world(seed: int, **overrides: Any) -> World:
    """A quiet world (no random faults, no drops, short delays) for a scripted scenario."""
    quiet = Profile(crashes=0, partitions=0, drop_probability=0.0, delay_ms_max=5, flush_every_ms=(300, 600))
    return World(seed, dataclasses.replace(quiet, **overrides))


def leader_node(world: World) -> BrokerNode:
    b = world.broker(world.ctl.leader)
    assert b is not None
    return b


def warm_up(world: World, acks: int = 20) -> None:
    world.run_until(lambda: len(world.acked) >= acks and len(world.ctl.isr) == 3, 10_000, f"{acks} acks")


def kip101_scenario1(world: World) -> None:
    """A follower restarts with its data but a stale HW (KIP-101 scenario 1), then the leader
    dies: the follower, elected, must still have every committed record."""
    warm_up(world)
    a = leader_node(world)
    b_id = next(r for r in BROKERS if r != a.id)
    c_id = next(r for r in BROKERS if r not in (a.id, b_id))
    world.crash(c_id)
    world.run_until(lambda: c_id not in world.ctl.isr, 5_000, "the crashed follower leaves the ISR")

    def stale() -> bool:
        b = world.broker(b_id)
        return b is not None and b.p.high_watermark < a.p.high_watermark and b.log.log_end_offset >= a.p.high_watermark
    world.run_until(stale, 5_000, "a follower holding records above its HW")
    world.clean_restart(b_id)
    world.run_until(lambda: b_id in world.ctl.elr, 5_000, "the restarted follower in the ELR")
    world.crash(a.id)
    world.run_until(lambda: world.ctl.leader == b_id, 5_000, "the restarted follower elected")
    world.restart(a.id)
    world.restart(c_id)
    world.finish()


def kip101_scenario2(world: World) -> None:
    """Two of three brokers lose power at once, the leader among them; the survivor leads and the
    others come back with diverged tails, which the epoch check cuts (KIP-101 scenario 2)."""
    warm_up(world)
    a = leader_node(world)
    b_id = next(r for r in BROKERS if r != a.id)

    def tail() -> bool:  # the leader holds records no follower has yet
        return all(b.log.log_end_offset < a.log.log_end_offset for b in world.running() if b is not a)
    world.run_until(tail, 5_000, "an unreplicated tail on the leader")
    a.log.flush(now_ms=world.sim.now_ms)  # which survives the power loss there; b keeps nothing
    world.crash(a.id)
    world.crash(b_id)
    world.run_until(lambda: world.ctl.leader not in (NO_LEADER, a.id, b_id), 5_000, "the survivor elected")
    world.sim.run_until(world.sim.now_ms + 500)
    world.restart(b_id)
    world.restart(a.id)
    world.finish()


def stale_hw_new_leader(world: World) -> None:
    """The leader dies right after advancing its HW, before any follower heard it: the new leader
    starts with a stale HW, which may only move forward, and loses nothing committed."""
    warm_up(world)
    a = leader_node(world)

    def ahead() -> bool:
        return all(b.p.high_watermark < a.p.high_watermark for b in world.running() if b is not a)
    world.run_until(ahead, 5_000, "the leader's HW ahead of every follower's")
    takeovers: list[tuple[int, int, int]] = []

    def hook(event: str, detail: object) -> None:
        if event == "leading" and isinstance(detail, tuple):
            takeovers.append(detail)
    world.hooks.append(hook)
    for r in BROKERS:
        if r != a.id:
            world.sim.network.cut(a.id, r)  # the answers in flight that carry the new HW are lost
    world.crash(a.id)
    world.run_until(lambda: bool(takeovers), 5_000, "a new leader takes over")
    _, hw, committed = takeovers[0]
    assert hw < committed, "the new leader's HW is stale when it takes over"
    world.restart(a.id)
    world.finish()


def alter_partition_during_election(world: World) -> None:
    """A shrink proposal is delayed in the network while the controller fences its sender and
    elects another leader; when it arrives it must be refused (FENCED_LEADER_EPOCH)."""
    warm_up(world)
    a = leader_node(world)
    c_id = next(r for r in BROKERS if r != a.id)
    net = world.sim.network
    delayed: list[AlterPartitionProposal] = []

    def hook(event: str, detail: object) -> None:
        if event == "proposal" and not delayed and isinstance(detail, tuple):
            sender, proposal = detail
            if sender == a.id:
                delayed.append(proposal)
                net.config.delay_ms_min = net.config.delay_ms_max = 2_000
                world.sim.schedule(world.sim.now_ms, lambda: restore_delay(net, world.profile), "restore delay")
                world.sim.schedule(world.sim.now_ms, lambda: net.cut(a.id, CONTROLLER), "fence the proposer")
                world.sim.schedule(world.sim.now_ms + 1_500, net.heal, "heal")
    world.hooks.append(hook)
    net.cut(c_id, a.id)  # the follower stops fetching: the leader will propose to shrink the ISR
    world.run_until(lambda: bool(delayed), 5_000, "a proposal from the leader")
    world.run_until(lambda: world.ctl.leader not in (NO_LEADER, a.id), 3_000, "another leader elected")
    world.run_until(lambda: (ErrorCode.FENCED_LEADER_EPOCH, a.id) in world.ctl.rejected, 3_000,
                    "the late proposal refused")
    world.finish()


def restore_delay(net: Network, profile: Profile) -> None:
    net.config.delay_ms_min, net.config.delay_ms_max = 1, profile.delay_ms_max


def last_replica_standing(world: World) -> None:
    """The followers are cut off from the leader, which shrinks the ISR to itself (they enter the
    ELR), then loses its page cache. An ELR replica must lead next, with every acked write."""
    warm_up(world)
    a = leader_node(world)
    others = [r for r in BROKERS if r != a.id]
    net = world.sim.network
    for r in others:
        net.cut(a.id, r)
    world.run_until(lambda: world.ctl.isr == (a.id,), 10_000, "the ISR shrunk to the leader")
    world.run_until(lambda: a.log.log_end_offset > a.log.durable_offset, 5_000, "unflushed records on the leader")
    world.crash(a.id)
    world.restart(a.id)
    world.run_until(lambda: world.ctl.leader in others or world.offline_by_design(), 5_000, "an ELR replica elected")
    world.finish()


def empty_disk(world: World) -> None:
    """A follower, then the leader, come back with empty disks: each refetches everything and
    rejoins the ISR only at the HW and the leader epoch start."""
    warm_up(world)
    a = leader_node(world)
    f = next(r for r in BROKERS if r != a.id)
    world.crash(f)
    world.restart(f, wipe=True)
    world.run_until(lambda: f in world.ctl.isr, 10_000, "the wiped follower back in the ISR")
    world.crash(a.id)
    world.restart(a.id, wipe=True)
    world.finish()


def zombie_leader(world: World) -> None:
    """The leader (and the producer) lose the controller; the controller elects another leader
    while the zombie keeps taking writes it can never acknowledge; healed, it truncates them."""
    warm_up(world)
    a = leader_node(world)
    net = world.sim.network
    net.cut(a.id, CONTROLLER)
    net.cut(CLIENT, CONTROLLER)
    world.run_until(lambda: world.ctl.leader not in (NO_LEADER, a.id), 5_000, "a new leader")
    appended = a.appended_as_leader
    world.sim.run_until(world.sim.now_ms + 1_500)
    assert a.p.is_leader and a.appended_as_leader > appended, "the zombie took writes"
    truncations = world.stats["truncations"]
    world.finish()
    assert world.stats["truncations"] > truncations, "the zombie's unacknowledged tail was cut"


NO_WRITEBACK: dict[str, object] = {"flush_every_ms": (600_000, 600_000)}  # nothing reaches the disk
SCENARIOS: dict[str, tuple[Callable[[World], None], dict[str, object]]] = {
    "kip101_scenario1": (kip101_scenario1, {}),
    "kip101_scenario2": (kip101_scenario2, NO_WRITEBACK),
    "stale_hw_new_leader": (stale_hw_new_leader, {}),
    "alter_partition_during_election": (alter_partition_during_election, {}),
    "last_replica_standing": (last_replica_standing, NO_WRITEBACK),
    "empty_disk": (empty_disk, {}),
    "zombie_leader": (zombie_leader, {}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_named_scenario(name: str) -> None:
    run, overrides = SCENARIOS[name]
    for seed in range(3):
        run(scenario_world(seed, **overrides))


# --- the checks catch planted bugs --------------------------------------------------------------


def test_without_elr_the_last_replica_standing_loses_acknowledged_writes() -> None:
    """Classic Kafka keeps the last ISR member, which leads again after losing its page cache:
    the checks must see the committed (and acknowledged) writes vanish."""
    failures = 0
    for seed in range(3):
        try:
            last_replica_standing(scenario_world(seed, elr=False, **NO_WRITEBACK))
        except SimulationFailure as e:
            assert "offsets are committed" in str(e), str(e)[:500]
            failures += 1
    assert failures == 3


def test_truncating_to_the_high_watermark_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-KIP-101 rule (a new follower cuts its log at its HW) loses committed records in
    scenario 1; the checks must see it."""
    original = Partition.become_follower

    def truncating(self: Partition, state: LeaderAndIsr, *, now_ms: int) -> bool:
        applied = original(self, state, now_ms=now_ms)
        if applied and self.log.log_end_offset > self.log.high_watermark:
            self.log.truncate_to(self.log.high_watermark, now_ms=now_ms)
            self._effects.append(LogTruncated(end_offset=self.log.log_end_offset, full=False))
        return applied

    monkeypatch.setattr(Partition, "become_follower", truncating)
    for seed in range(3):
        with pytest.raises(SimulationFailure, match="elected: its log ends at"):
            kip101_scenario1(scenario_world(seed))
