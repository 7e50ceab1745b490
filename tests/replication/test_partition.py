"""The partition replica state machine: every leader and follower rule, on simulated disks.

Goal: each rule in ``replication.partition``'s docstring has a test that a broken implementation
fails -- acks=all completion and both NOT_ENOUGH_REPLICAS answers, the high watermark over the
maximal ISR and only at or above the min ISR (KIP-966), ISR shrink after the lag time and
expansion only for a follower at the HW and the leader epoch start (with broker epochs, KIP-903),
AlterPartition answers, the fetch errors of KIP-320, the diverging epoch of KIP-279 and the two
scenarios of KIP-101 (follower restart then leader change; two hard failures with lost unflushed
data), a new leader's stale high watermark, and the wire mapping. Each broker has its own
``SimFileSystem``, so a crash loses exactly what its log had not flushed.
"""

from __future__ import annotations

import random
import uuid

import pytest

from protocol.error_codes import ErrorCode
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.records import NewRecord, build_batch, iter_batches
from replication.partition import (
    NO_EPOCH,
    AlterPartitionProposal,
    AlterPartitionResult,
    EpochEndOffset,
    FetchedPartition,
    FetchOutcome,
    HighWatermarkAdvanced,
    IsrChange,
    IsrMember,
    LeaderAndIsr,
    LogTruncated,
    Partition,
    ProduceCompleted,
    ReplicaConfig,
    ReplicaFetch,
    ReplicaFetchResponse,
    Role,
)
from replication.replica_wire import (
    alter_partition_data_from_proposal,
    alter_partition_result,
    fetch_partition_from_fetch,
    fetched_from_partition_data,
    partition_data_from_response,
    replica_fetch_from_request,
    replica_state_from_fetch,
)
from storage.config import LogConfig
from storage.fs import SimFileSystem
from storage.manager import LogManager

LAG_MS = 10_000
CFG = ReplicaConfig(replica_lag_time_max_ms=LAG_MS, replica_fetch_backoff_ms=500,
                    alter_partition_retry_backoff_ms=1_000)
TIMEOUT_MS = 30_000


class Broker:
    """One broker's disk, log and replica of partition ("t", 0)."""

    def __init__(self, broker_id: int, *, config: ReplicaConfig = CFG, log_config: LogConfig | None = None,
                 broker_epoch: int = 100) -> None:
        self.id = broker_id
        self.fs = SimFileSystem()
        self.config = config
        self.log_config = log_config or LogConfig(segment_bytes=4096)
        self.broker_epoch = broker_epoch
        self.open(now_ms=0)

    def open(self, *, now_ms: int) -> None:
        self.mgr = LogManager.open(self.fs, "/data", now_ms=now_ms, default_config=self.log_config)
        self.log = self.mgr.get_or_create_log("t", 0, now_ms=now_ms)
        self.p = Partition(self.log, broker_id=self.id, config=self.config, broker_epoch=self.broker_epoch)

    def crash(self, *, now_ms: int, checkpoint: bool = True) -> None:
        """Power loss: whatever the log did not flush is gone; the replica starts afresh."""
        if checkpoint:
            self.mgr.write_checkpoints()  # the periodic high-watermark checkpoint
        self.fs.crash()
        self.broker_epoch += 1
        self.open(now_ms=now_ms)

    def flush(self) -> None:
        self.log.flush(now_ms=0)

    def values(self) -> list[bytes]:
        out = []
        res = self.log.read(self.log.log_start_offset, max_bytes=1 << 20)
        for v in iter_batches(res.read_bytes()):
            out += [bytes(r.value or b"") for r in v.records()]
        return out

    def epochs(self) -> list[int]:
        res = self.log.read(self.log.log_start_offset, max_bytes=1 << 20)
        return [v.partition_leader_epoch for v in iter_batches(res.read_bytes())]


def state(leader: int, epoch: int, partition_epoch: int, isr: tuple[int, ...],
          replicas: tuple[int, ...] = (1, 2, 3)) -> LeaderAndIsr:
    return LeaderAndIsr(leader=leader, leader_epoch=epoch, partition_epoch=partition_epoch,
                        replicas=replicas, isr=isr)


def lead(b: Broker, s: LeaderAndIsr, *, min_isr: int = 1, now_ms: int = 0) -> None:
    assert b.p.become_leader(s, min_insync_replicas=min_isr, now_ms=now_ms)


def follow(b: Broker, s: LeaderAndIsr, *, now_ms: int = 0) -> None:
    assert b.p.become_follower(s, now_ms=now_ms)


def rec(value: bytes, ts: int = 1_000) -> bytes:
    return build_batch([NewRecord(value=value, timestamp=ts)])


def fetch(follower: Broker, leader: Broker, *, now_ms: int = 0, deliver: bool = True) -> FetchOutcome | None:
    """One fetch round trip; with ``deliver`` False the answer is lost on the way back."""
    req = follower.p.next_fetch(now_ms=now_ms)
    assert req is not None
    resp = leader.p.handle_replica_fetch(req, now_ms=now_ms)
    if not deliver:
        return None
    return follower.p.handle_fetch_response(req, resp.fetched(), now_ms=now_ms)


def produce(b: Broker, value: bytes, *, acks: int = -1, now_ms: int = 0) -> int:
    r = b.p.append(rec(value), acks=acks, now_ms=now_ms, timeout_ms=TIMEOUT_MS)
    assert r.error == ErrorCode.NONE, r
    return r.produce_id


def completions(b: Broker) -> dict[int, ErrorCode]:
    return {e.produce_id: e.error for e in b.p.take_effects() if isinstance(e, ProduceCompleted)}


def proposals(b: Broker) -> list[AlterPartitionProposal]:
    return [e for e in b.p.take_effects() if isinstance(e, AlterPartitionProposal)]


def ok(proposal: AlterPartitionProposal, *, partition_epoch: int | None = None) -> AlterPartitionResult:
    """The controller accepting ``proposal``."""
    return AlterPartitionResult(
        error=ErrorCode.NONE, leader_id=proposal.leader_id, leader_epoch=proposal.leader_epoch,
        partition_epoch=proposal.partition_epoch + 1 if partition_epoch is None else partition_epoch,
        isr=proposal.isr)


def trio_cluster(*, min_isr: int = 1) -> tuple[Broker, Broker, Broker]:
    b1, b2, b3 = Broker(1), Broker(2), Broker(3)
    s = state(1, 0, 0, (1, 2, 3))
    lead(b1, s, min_isr=min_isr)
    follow(b2, s)
    follow(b3, s)
    return b1, b2, b3


# --- produce and acks=all -------------------------------------------------------------------------


def test_single_replica_commits_at_once_and_acks_all_completes_immediately() -> None:
    b = Broker(1)
    lead(b, state(1, 0, 0, (1,), replicas=(1,)))
    r = b.p.append(rec(b"a"), acks=-1, now_ms=0, timeout_ms=TIMEOUT_MS)
    assert r.error == ErrorCode.NONE and r.produce_id == -1 and r.info is not None
    assert b.p.high_watermark == 1
    assert HighWatermarkAdvanced(high_watermark=1) in b.p.take_effects()


def test_acks_all_waits_for_every_isr_member_then_completes() -> None:
    b1, b2, b3 = trio_cluster(min_isr=2)
    pid = produce(b1, b"a")
    assert pid >= 0 and b1.p.high_watermark == 0
    fetch(b2, b1)
    fetch(b3, b1)  # both have the record; the leader does not know yet
    assert completions(b1) == {} and b1.p.high_watermark == 0
    fetch(b2, b1)
    assert completions(b1) == {} and b1.p.high_watermark == 0  # b3 still reported offset 0
    fetch(b3, b1)
    assert b1.p.high_watermark == 1
    assert completions(b1) == {pid: ErrorCode.NONE}
    assert b3.p.high_watermark == 1 and b2.p.high_watermark == 0  # b2 learns on its next fetch
    fetch(b2, b1)
    assert b2.p.high_watermark == 1


def test_acks_all_with_too_small_isr_is_refused_before_writing() -> None:
    b = Broker(1)
    lead(b, state(1, 0, 0, (1,)), min_isr=2)
    r = b.p.append(rec(b"a"), acks=-1, now_ms=0, timeout_ms=TIMEOUT_MS)
    assert r.error == ErrorCode.NOT_ENOUGH_REPLICAS and r.info is None
    assert b.p.log_end_offset == 0
    assert b.p.append(rec(b"a"), acks=1, now_ms=0, timeout_ms=TIMEOUT_MS).error == ErrorCode.NONE
    assert b.p.log_end_offset == 1
    # KIP-966: under the min ISR the high watermark does not move, even for acks=1 writes.
    assert b.p.high_watermark == 0


def test_effective_min_isr_is_capped_by_the_replication_factor() -> None:
    b = Broker(1)
    lead(b, state(1, 0, 0, (1,), replicas=(1,)), min_isr=3)
    assert b.p.min_insync_replicas == 1
    assert b.p.append(rec(b"a"), acks=-1, now_ms=0, timeout_ms=TIMEOUT_MS).error == ErrorCode.NONE
    assert b.p.high_watermark == 1


def test_waiting_produce_fails_after_append_when_the_isr_drops_below_min() -> None:
    b1, b2, b3 = trio_cluster(min_isr=2)
    fetch(b2, b1)
    fetch(b3, b1)
    pid = produce(b1, b"a", now_ms=1)
    fetch(b2, b1, now_ms=2)  # b2 has it, b3 stops fetching
    fetch(b2, b1, now_ms=3)
    assert b1.p.high_watermark == 0
    b1.p.tick(LAG_MS + 100)
    (shrink,) = proposals(b1)
    assert shrink.change is IsrChange.SHRINK and shrink.isr == (1, 2)
    b1.p.handle_alter_partition_result(shrink.proposal_id, ok(shrink), now_ms=LAG_MS + 101)
    # The ISR {1, 2} still meets min.insync.replicas=2: the write commits normally.
    assert completions(b1) == {pid: ErrorCode.NONE}
    pid2 = produce(b1, b"b", now_ms=LAG_MS + 102)
    b1.p.tick(3 * LAG_MS)
    (shrink2,) = proposals(b1)
    assert shrink2.isr == (1,)
    assert completions(b1) == {}  # a shrink in flight changes nothing yet
    b1.p.handle_alter_partition_result(shrink2.proposal_id, ok(shrink2), now_ms=3 * LAG_MS)
    assert completions(b1) == {pid2: ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND}
    assert b1.p.isr == {1} and b1.p.high_watermark == 1  # frozen below the unacknowledged write
    assert b1.p.append(rec(b"c"), acks=-1, now_ms=3 * LAG_MS, timeout_ms=1).error == ErrorCode.NOT_ENOUGH_REPLICAS


def test_waiting_produce_times_out_and_fails_on_leadership_loss() -> None:
    b1, b2, _ = trio_cluster()
    p1 = produce(b1, b"a", now_ms=0)
    b1.p.tick(TIMEOUT_MS - 1)
    assert completions(b1) == {}
    b1.p.tick(TIMEOUT_MS)
    assert completions(b1) == {p1: ErrorCode.REQUEST_TIMED_OUT}
    p2 = produce(b1, b"b", now_ms=TIMEOUT_MS)
    follow(b1, state(2, 1, 1, (2, 3)))
    assert completions(b1) == {p2: ErrorCode.NOT_LEADER_OR_FOLLOWER}
    assert b1.p.append(rec(b"c"), acks=1, now_ms=0, timeout_ms=1).error == ErrorCode.NOT_LEADER_OR_FOLLOWER


# --- high watermark -------------------------------------------------------------------------------


def test_hw_waits_for_a_replica_whose_expansion_is_in_flight() -> None:
    b1, b2, b3 = Broker(1), Broker(2), Broker(3)
    s = state(1, 0, 0, (1, 2))
    lead(b1, s)
    follow(b2, s)
    follow(b3, s)
    fetch(b2, b1)
    fetch(b3, b1)  # LEO 0 >= HW 0 and epoch start 0: joins
    (expand,) = proposals(b1)
    assert expand.change is IsrChange.EXPAND and expand.isr == (1, 2, 3)
    assert b1.p.maximal_isr == {1, 2, 3} and b1.p.isr == {1, 2}
    produce(b1, b"a", acks=1)
    fetch(b2, b1)
    fetch(b2, b1)
    assert b1.p.high_watermark == 0  # b3, joining, has not got it yet
    fetch(b3, b1)
    fetch(b3, b1)
    assert b1.p.high_watermark == 1
    b1.p.handle_alter_partition_result(expand.proposal_id, ok(expand), now_ms=0)
    assert b1.p.isr == {1, 2, 3} and b1.p.partition_epoch == 1 and b1.p.pending_isr_change is None


def test_hw_keeps_waiting_for_a_replica_whose_removal_is_in_flight() -> None:
    b1, b2, b3 = trio_cluster()
    fetch(b2, b1)
    fetch(b3, b1)
    produce(b1, b"a", acks=1, now_ms=1)
    b1.p.tick(LAG_MS + 10)
    (shrink,) = proposals(b1)
    assert shrink.isr == (1,)  # neither follower fetched the record
    fetch(b2, b1, now_ms=LAG_MS + 11)
    fetch(b2, b1, now_ms=LAG_MS + 12)
    assert b1.p.high_watermark == 0  # b3 may still be in the ISR if the shrink fails
    b1.p.handle_alter_partition_result(shrink.proposal_id, ok(shrink), now_ms=LAG_MS + 13)
    assert b1.p.isr == {1}
    assert b1.p.high_watermark == 1  # ISR {1} with min ISR 1


def test_hw_never_moves_backwards() -> None:
    b1, b2, b3 = trio_cluster()
    produce(b1, b"a", acks=1)
    for _ in range(2):
        fetch(b2, b1)
        fetch(b3, b1)
    assert b1.p.high_watermark == 1
    # b3 restarts with an empty disk and fetches from 0: the leader's HW stays.
    b3.fs = SimFileSystem()
    b3.open(now_ms=5)
    follow(b3, state(1, 0, 0, (1, 2, 3)))
    fetch(b3, b1, now_ms=6)
    assert b1.p.follower_log_end_offset(3) == 0
    assert b1.p.high_watermark == 1


def test_caught_up_follower_outside_the_isr_holds_the_hw_while_it_joins() -> None:
    """Kafka's shouldWaitForReplicaToJoinIsr: b3 cannot be proposed while b2's expansion is in
    flight, but being caught up it holds the HW, so it does not fall behind again."""
    b1, b2, b3 = Broker(1), Broker(2), Broker(3)
    s = state(1, 0, 0, (1,))
    lead(b1, s)
    follow(b2, s)
    follow(b3, s)
    fetch(b2, b1, now_ms=1)
    (expand,) = proposals(b1)
    assert expand.isr == (1, 2)
    fetch(b3, b1, now_ms=1)  # caught up (LEO 0 == leader's), but one change at a time
    assert proposals(b1) == []
    produce(b1, b"a", acks=1, now_ms=2)
    fetch(b2, b1, now_ms=3)
    fetch(b2, b1, now_ms=4)
    assert b1.p.high_watermark == 0
    fetch(b3, b1, now_ms=5)
    fetch(b3, b1, now_ms=6)
    assert b1.p.high_watermark == 1


def test_durable_topic_hw_waits_for_the_leaders_flush() -> None:
    b = Broker(1, log_config=LogConfig(segment_bytes=4096, flush_messages=1))
    lead(b, state(1, 0, 0, (1,), replicas=(1,)))
    pid = produce(b, b"a")
    assert pid >= 0 and b.p.high_watermark == 0
    b.flush()
    assert b.p.maybe_advance_high_watermark(0)
    assert b.p.high_watermark == 1 and completions(b) == {pid: ErrorCode.NONE}


# --- a new leader's high watermark ----------------------------------------------------------------


def test_new_leader_keeps_its_stale_hw_until_the_isr_reaches_the_epoch_start() -> None:
    b1, b2, b3 = trio_cluster()
    for v in (b"a", b"b", b"c", b"d", b"e"):
        produce(b1, v, acks=1)
    fetch(b2, b1)  # b2 gets all five; the leader records offset 0
    # b3 only gets the first three (a slow fetch), then reports offset 3.
    req = b3.p.next_fetch(now_ms=0)
    assert req is not None
    small = ReplicaFetch(**{**_fields(req), "max_bytes": 1})
    for _ in range(3):
        resp = b1.p.handle_replica_fetch(small, now_ms=0)
        assert b3.p.handle_fetch_response(small, resp.fetched(), now_ms=0) is FetchOutcome.APPENDED
        small = ReplicaFetch(**{**_fields(small), "fetch_offset": b3.p.log_end_offset,
                                "last_fetched_epoch": 0})
    assert b3.p.log_end_offset == 3
    fetch(b3, b1, deliver=False)  # reports 3: HW = min(5, 0, 3) = 0; the records are lost
    fetch(b2, b1, deliver=False)  # reports 5: the HW becomes 3; b2 does not hear it
    assert b1.p.high_watermark == 3 and b2.p.high_watermark == 0 and b3.p.high_watermark == 0
    # b1 dies; b2 is elected with the ISR {2, 3}. Its HW (0) is stale, its epoch starts at 5.
    s = state(2, 1, 1, (2, 3))
    lead(b2, s)
    follow(b3, s)
    assert b2.p.leader_epoch_start_offset == 5 and b2.p.high_watermark == 0
    produce(b2, b"f", acks=1)
    assert b2.p.high_watermark == 0  # b3's position is unknown to the new leader
    fetch(b3, b2)  # b3 reports 3: the ISR has not reached the epoch start (5)
    assert b2.p.high_watermark == 0  # (Kafka would move to 3 here)
    assert b3.p.log_end_offset == 6
    fetch(b3, b2)
    assert b2.p.high_watermark == 6 and b3.p.high_watermark == 6


def _fields(f: ReplicaFetch) -> dict[str, int]:
    return {k: getattr(f, k) for k in ReplicaFetch.__dataclass_fields__}


def test_reelected_leader_starts_a_new_epoch_and_needs_the_isr_at_its_start() -> None:
    b1, b2, b3 = trio_cluster()
    produce(b1, b"a", acks=1)
    fetch(b2, b1)
    fetch(b3, b1)
    lead(b1, state(1, 1, 1, (1, 2, 3)))
    assert b1.p.leader_epoch_start_offset == 1
    assert [(e.epoch, e.start_offset) for e in b1.log.epochs.entries] == [(0, 0), (1, 1)]
    produce(b1, b"b", acks=1)
    # The followers' old positions (0) are kept but are below the new epoch's start.
    assert b1.p.high_watermark == 0


# --- ISR shrink and expand ------------------------------------------------------------------------


def test_caught_up_follower_stays_in_the_isr_until_it_lags_for_the_lag_time() -> None:
    b1, b2, b3 = trio_cluster()
    fetch(b2, b1, now_ms=1)
    fetch(b3, b1, now_ms=1)
    b1.p.tick(10 * LAG_MS)  # no fetch since, but nothing was appended: both are at the log end
    assert proposals(b1) == []
    t = 10 * LAG_MS
    fetch(b3, b1, now_ms=t)  # b3's last fetch, caught up at t
    produce(b1, b"a", acks=1, now_ms=t)
    fetch(b2, b1, now_ms=t + 1)
    fetch(b2, b1, now_ms=t + 2)
    b1.p.tick(t + LAG_MS)
    assert proposals(b1) == []  # b3 was caught up LAG_MS ago: still in sync
    b1.p.tick(t + LAG_MS + 1)
    (shrink,) = proposals(b1)
    assert shrink.isr == (1, 2) and shrink.partition_epoch == 0 and shrink.change is IsrChange.SHRINK


def test_follower_that_keeps_up_with_the_previous_fetch_stays_in_the_isr() -> None:
    """Kafka's lastCaughtUpTime rule: a follower always one produce behind (the leader appends
    between its fetches) is caught up as of its previous fetch; one that falls further behind
    is not."""
    b1 = Broker(1)
    slow_cfg = ReplicaConfig(replica_lag_time_max_ms=LAG_MS, replica_fetch_max_bytes=1)
    b2, b3 = Broker(2), Broker(3, config=slow_cfg)
    s = state(1, 0, 0, (1, 2, 3))
    lead(b1, s)
    follow(b2, s)
    follow(b3, s)
    now = 0
    for i in range(40):
        now += 1_000
        produce(b1, b"%d" % i, acks=1, now_ms=now)
        fetch(b2, b1, now_ms=now)
        if i % 2 == 0:
            produce(b1, b"x%d" % i, acks=1, now_ms=now)
        fetch(b3, b1, now_ms=now)  # one batch per fetch: it falls further behind
        b1.p.tick(now)
        found = proposals(b1)
        if found:
            break
    assert found and found[0].isr == (1, 2)
    assert b2.p.log_end_offset == b1.p.log_end_offset - 1 or b2.p.log_end_offset == b1.p.log_end_offset - 2
    assert now > LAG_MS


def test_expansion_needs_the_hw_and_the_leader_epoch_start() -> None:
    b1, b2, b3 = Broker(1), Broker(2), Broker(3)
    s0 = state(1, 0, 0, (1, 2, 3))
    lead(b1, s0)
    follow(b2, s0)
    follow(b3, s0)
    for v in (b"a", b"b", b"c", b"d"):
        produce(b1, v, acks=1)
    fetch(b2, b1)
    fetch(b3, b1)
    fetch(b2, b1)
    fetch(b3, b1)
    assert b1.p.high_watermark == 4
    # b1 is re-elected at epoch 1 with the ISR {1, 2}; b3 restarted with an empty disk meanwhile.
    b3.fs = SimFileSystem()
    b3.open(now_ms=0)
    s1 = state(1, 1, 1, (1, 2))
    lead(b1, s1)
    follow(b2, s1)
    follow(b3, s1)
    produce(b1, b"e", acks=1)
    fetch(b2, b1)
    fetch(b2, b1)
    assert b1.p.high_watermark == 5 and b1.p.leader_epoch_start_offset == 4
    tiny = ReplicaConfig(replica_lag_time_max_ms=LAG_MS, replica_fetch_max_bytes=1)
    b3.p.config = tiny
    while b3.p.log_end_offset < 4:
        fetch(b3, b1)
        assert proposals(b1) == [], b3.p.log_end_offset  # below the HW
    fetch(b3, b1)  # at 4: >= epoch start but < HW 5
    assert proposals(b1) == []
    fetch(b3, b1)  # at 5
    (expand,) = proposals(b1)
    assert expand.change is IsrChange.EXPAND and expand.partition_epoch == 1
    # KIP-903: each member's broker epoch, the follower's from its fetch, the leader's own.
    assert expand.new_isr == (IsrMember(broker_id=1, broker_epoch=100), IsrMember(broker_id=2, broker_epoch=100),
                              IsrMember(broker_id=3, broker_epoch=100))


def test_expansion_needs_the_epoch_start_even_when_the_hw_is_below_it() -> None:
    """After an election the HW may be behind the epoch start: a follower at the HW is not
    enough, it must have everything the leader had when elected."""
    b1, b2, b3 = trio_cluster()
    for v in (b"a", b"b", b"c"):
        produce(b1, v, acks=1)
    fetch(b2, b1)
    fetch(b3, b1)
    # b2 is elected with the ISR {1, 2}: b1 is down, so b2's HW (0) cannot move.
    s = state(2, 1, 1, (1, 2))
    lead(b2, s)
    follow(b3, s)
    b3.log.truncate_to(1, now_ms=0)  # b3 lost its tail
    assert (b2.p.high_watermark, b2.p.leader_epoch_start_offset) == (0, 3)
    b3.p.config = ReplicaConfig(replica_lag_time_max_ms=LAG_MS, replica_fetch_max_bytes=1)
    fetch(b3, b2)
    fetch(b3, b2)  # reports 2: >= HW 0, < epoch start 3
    assert b2.p.follower_log_end_offset(3) == 2 and proposals(b2) == []
    fetch(b3, b2)  # reports 3
    (expand,) = proposals(b2)
    assert expand.isr == (1, 2, 3)
    assert b2.p.high_watermark == 0  # b1 still holds it


def test_live_broker_epochs_decide_eligibility_and_fence_old_incarnations() -> None:
    b1, b2, b3 = Broker(1), Broker(2), Broker(3, broker_epoch=7)
    s = state(1, 0, 0, (1, 2))
    lead(b1, s)
    follow(b2, s)
    follow(b3, s)
    b1.p.set_live_brokers({1: 100, 2: 100, 3: 8}, now_ms=0)  # b3 re-registered as epoch 8
    req = b3.p.next_fetch(now_ms=0)
    assert req is not None
    resp = b1.p.handle_replica_fetch(req, now_ms=0)
    assert resp.error == ErrorCode.NOT_LEADER_OR_FOLLOWER and resp.leader_id == 1
    b3.p.broker_epoch = 8
    b1.p.set_live_brokers({1: 100, 2: 100}, now_ms=0)  # b3 fenced
    fetch(b3, b1)
    assert proposals(b1) == []
    b1.p.set_live_brokers({1: 100, 2: 100, 3: 8}, now_ms=0)
    fetch(b3, b1)
    (expand,) = proposals(b1)
    assert IsrMember(broker_id=3, broker_epoch=8) in expand.new_isr


# --- AlterPartition answers -----------------------------------------------------------------------


def _shrunk_cluster() -> tuple[Broker, AlterPartitionProposal]:
    b1, b2, b3 = trio_cluster()
    fetch(b2, b1)
    produce(b1, b"a", acks=1, now_ms=1)
    fetch(b2, b1, now_ms=2)
    fetch(b2, b1, now_ms=3)
    b1.p.tick(LAG_MS + 5)
    (shrink,) = proposals(b1)
    assert shrink.isr == (1, 2)
    return b1, shrink


def test_unanswered_and_retriable_proposals_are_sent_again_unchanged() -> None:
    b1, shrink = _shrunk_cluster()
    b1.p.tick(LAG_MS + 5 + 999)
    assert proposals(b1) == []
    b1.p.tick(LAG_MS + 5 + 1_000)
    assert proposals(b1) == [shrink]
    b1.p.handle_alter_partition_result(shrink.proposal_id, AlterPartitionResult(error=ErrorCode.NOT_CONTROLLER),
                                       now_ms=LAG_MS + 2_000)
    b1.p.tick(LAG_MS + 2_999)
    assert proposals(b1) == []
    b1.p.tick(LAG_MS + 3_000)
    assert proposals(b1) == [shrink]


@pytest.mark.parametrize("error", [ErrorCode.INVALID_UPDATE_VERSION, ErrorCode.FENCED_LEADER_EPOCH])
def test_fenced_or_stale_proposal_waits_for_metadata(error: ErrorCode) -> None:
    b1, shrink = _shrunk_cluster()
    b1.p.handle_alter_partition_result(shrink.proposal_id, AlterPartitionResult(error=error), now_ms=LAG_MS + 6)
    for t in (LAG_MS + 2_000, LAG_MS + 20_000):
        b1.p.tick(t)
        assert proposals(b1) == [] and b1.p.pending_isr_change == shrink
    assert b1.p.isr == {1, 2, 3}
    # A repeat of the metadata already applied changes nothing...
    assert not b1.p.become_leader(state(1, 0, 0, (1, 2, 3)), min_insync_replicas=1, now_ms=LAG_MS + 20_001)
    assert b1.p.pending_isr_change == shrink
    # ...new metadata replaces the proposal, and the next tick may propose again.
    lead(b1, state(1, 0, 1, (1, 2, 3)), now_ms=LAG_MS + 20_002)
    assert b1.p.pending_isr_change is None and b1.p.partition_epoch == 1
    b1.p.tick(LAG_MS + 20_003)
    (again,) = proposals(b1)
    assert again.partition_epoch == 1 and again.proposal_id != shrink.proposal_id


def test_rejected_proposal_is_dropped_and_late_answers_are_ignored() -> None:
    b1, shrink = _shrunk_cluster()
    b1.p.handle_alter_partition_result(shrink.proposal_id, AlterPartitionResult(error=ErrorCode.INELIGIBLE_REPLICA),
                                       now_ms=LAG_MS + 6)
    assert b1.p.pending_isr_change is None and b1.p.isr == {1, 2, 3}
    b1.p.tick(LAG_MS + 7)
    (again,) = proposals(b1)
    # The answer to the first proposal, arriving late, must not be applied.
    b1.p.handle_alter_partition_result(shrink.proposal_id, ok(shrink), now_ms=LAG_MS + 8)
    assert b1.p.isr == {1, 2, 3} and b1.p.pending_isr_change == again
    # A success naming another leader epoch is not ours to apply.
    wrong = AlterPartitionResult(error=ErrorCode.NONE, leader_id=1, leader_epoch=5, partition_epoch=9, isr=(1,))
    b1.p.handle_alter_partition_result(again.proposal_id, wrong, now_ms=LAG_MS + 9)
    assert b1.p.isr == {1, 2, 3} and b1.p.partition_epoch == 0
    b1.p.handle_alter_partition_result(again.proposal_id, ok(again), now_ms=LAG_MS + 10)
    assert b1.p.isr == {1, 2} and b1.p.partition_epoch == 1


def test_stale_metadata_is_ignored() -> None:
    b1, b2, _ = trio_cluster()
    lead(b1, state(1, 3, 7, (1, 2, 3)))
    assert not b1.p.become_leader(state(1, 2, 8, (1, 2, 3)), min_insync_replicas=1, now_ms=0)
    assert not b1.p.become_follower(state(2, 3, 6, (2, 3)), now_ms=0)
    assert b1.p.is_leader and b1.p.leader_epoch == 3 and b1.p.partition_epoch == 7


# --- fetch errors (KIP-320) -----------------------------------------------------------------------


def test_fetch_with_old_or_new_leader_epoch_is_fenced_or_unknown() -> None:
    b1, b2, _ = trio_cluster()
    lead(b1, state(1, 2, 2, (1, 2, 3)))
    base = b2.p.next_fetch(now_ms=0)
    assert base is not None and base.current_leader_epoch == 0
    assert b1.p.handle_replica_fetch(base, now_ms=0).error == ErrorCode.FENCED_LEADER_EPOCH
    ahead = ReplicaFetch(**{**_fields(base), "current_leader_epoch": 3})
    assert b1.p.handle_replica_fetch(ahead, now_ms=0).error == ErrorCode.UNKNOWN_LEADER_EPOCH
    unchecked = ReplicaFetch(**{**_fields(base), "current_leader_epoch": NO_EPOCH})
    assert b1.p.handle_replica_fetch(unchecked, now_ms=0).error == ErrorCode.NONE
    stranger = ReplicaFetch(**{**_fields(base), "replica_id": 9, "current_leader_epoch": 2})
    assert b1.p.handle_replica_fetch(stranger, now_ms=0).error == ErrorCode.UNKNOWN_LEADER_EPOCH
    stranger = ReplicaFetch(**{**_fields(stranger), "current_leader_epoch": NO_EPOCH})
    assert b1.p.handle_replica_fetch(stranger, now_ms=0).error == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_non_leader_answers_not_leader_with_the_leader_it_knows() -> None:
    b1, b2, b3 = trio_cluster()
    req = b3.p.next_fetch(now_ms=0)
    assert req is not None
    resp = b2.p.handle_replica_fetch(req, now_ms=0)
    assert (resp.error, resp.leader_id, resp.leader_epoch) == (ErrorCode.NOT_LEADER_OR_FOLLOWER, 1, 0)


def test_follower_stops_when_fenced_and_backs_off_when_the_leader_is_behind() -> None:
    b1, b2, _ = trio_cluster()
    follow(b2, state(1, 1, 1, (1, 2, 3)))  # b2 heard of epoch 1 before b1 did
    assert fetch(b2, b1, now_ms=10) is FetchOutcome.BACKOFF  # UNKNOWN_LEADER_EPOCH
    assert b2.p.next_fetch(now_ms=10 + 499) is None
    assert b2.p.next_fetch(now_ms=10 + 500) is not None
    lead(b1, state(1, 2, 2, (1, 2, 3)))
    assert fetch(b2, b1, now_ms=600) is FetchOutcome.FENCED
    assert b2.p.next_fetch(now_ms=10_000) is None
    follow(b2, state(1, 2, 2, (1, 2, 3)), now_ms=10_000)
    assert fetch(b2, b1, now_ms=10_000) is FetchOutcome.APPENDED


def test_answer_to_an_outdated_fetch_is_ignored() -> None:
    b1, b2, _ = trio_cluster()
    produce(b1, b"a", acks=1)
    req = b2.p.next_fetch(now_ms=0)
    assert req is not None
    resp = b1.p.handle_replica_fetch(req, now_ms=0).fetched()
    follow(b2, state(1, 1, 1, (1, 2, 3)))
    assert b2.p.handle_fetch_response(req, resp, now_ms=0) is FetchOutcome.IGNORED
    assert b2.p.log_end_offset == 0


# --- divergence and truncation (KIP-101, KIP-279) -------------------------------------------------


def test_kip101_scenario1_restarted_follower_keeps_its_tail_and_saves_a_committed_write() -> None:
    """A follower that learned the HW one round late restarts, then the leader dies. Truncating
    to its own HW on restart (the pre-KIP-101 rule) would lose m2, which was acknowledged."""
    a, b = Broker(1), Broker(2)
    s0 = state(1, 0, 0, (1, 2), replicas=(1, 2))
    lead(a, s0)
    follow(b, s0)
    produce(a, b"m1")
    fetch(b, a)
    p2 = produce(a, b"m2")
    fetch(b, a)  # b gets m2; the HW it hears is 1
    fetch(b, a, deliver=False)  # a's HW becomes 2, the answer is lost
    assert completions(a)[p2] == ErrorCode.NONE
    assert (b.p.high_watermark, b.p.log_end_offset) == (1, 2)
    b.flush()
    b.crash(now_ms=100)  # its checkpointed HW is 1
    assert (b.log.high_watermark, b.log.log_end_offset) == (1, 2)
    follow(b, s0, now_ms=100)
    assert b.p.log_end_offset == 2  # no truncation on becoming a follower
    # a dies; b is elected from the ISR.
    s1 = state(2, 1, 1, (2,), replicas=(1, 2))
    lead(b, s1, now_ms=200)
    assert b.values() == [b"m1", b"m2"] and b.p.high_watermark == 2
    # a comes back and follows b: nothing diverged, nothing is cut.
    a.flush()
    a.crash(now_ms=300)
    follow(a, s1, now_ms=300)
    assert fetch(a, b, now_ms=300) is FetchOutcome.APPENDED
    assert a.values() == b.values() == [b"m1", b"m2"]


def test_kip101_scenario2_two_hard_failures_do_not_leave_diverged_logs() -> None:
    """Both brokers lose power. b loses m2 (never flushed), comes back first and is elected; it
    writes m3 at offset 1. a kept m2 at offset 1 and a HW of 2: truncating to that HW would keep
    m2 and the logs would differ forever. The epoch check truncates a to 1 instead."""
    a, b = Broker(1), Broker(2)
    s0 = state(1, 0, 0, (1, 2), replicas=(1, 2))
    lead(a, s0)
    follow(b, s0)
    produce(a, b"m1")
    fetch(b, a)
    fetch(b, a)
    a.flush()
    b.flush()
    produce(a, b"m2")
    fetch(b, a)
    fetch(b, a)
    assert a.p.high_watermark == 2
    a.flush()  # a has m2 on disk, b only in its page cache
    a.crash(now_ms=10)
    b.crash(now_ms=10, checkpoint=False)
    assert (a.log.log_end_offset, a.log.high_watermark) == (2, 2)
    assert b.log.log_end_offset == 1
    s1 = state(2, 1, 1, (2,), replicas=(1, 2))
    lead(b, s1, now_ms=20)
    produce(b, b"m3", now_ms=20)
    follow(a, s1, now_ms=30)
    assert fetch(a, b, now_ms=30) is FetchOutcome.TRUNCATED
    assert LogTruncated(end_offset=1, full=False) in a.p.take_effects()
    assert fetch(a, b, now_ms=31) is FetchOutcome.APPENDED
    assert a.values() == b.values() == [b"m1", b"m3"]
    assert a.epochs() == b.epochs() == [0, 1]


def test_leader_answers_a_diverging_epoch_without_recording_the_follower() -> None:
    b1, b2, _ = trio_cluster()
    produce(b1, b"a", acks=1)
    produce(b1, b"b", acks=1)
    fetch(b2, b1)
    s = state(2, 1, 1, (2, 3))
    lead(b2, s)
    follow(b1, s)
    # b1 (now follower) had written an extra record as leader in epoch 0 that b2 never got.
    b1.log.append_as_leader(rec(b"x"), leader_epoch=0, now_ms=0)
    req = b1.p.next_fetch(now_ms=0)
    assert req is not None and (req.fetch_offset, req.last_fetched_epoch) == (3, 0)
    resp = b2.p.handle_replica_fetch(req, now_ms=0)
    assert resp.error == ErrorCode.NONE and resp.records == ()
    assert resp.diverging_epoch == EpochEndOffset(epoch=0, end_offset=2)
    assert b2.p.follower_log_end_offset(1) == -1  # not recorded
    assert b1.p.handle_fetch_response(req, resp.fetched(), now_ms=0) is FetchOutcome.TRUNCATED
    assert b1.p.log_end_offset == 2
    assert fetch(b1, b2) is FetchOutcome.APPENDED
    assert b1.values() == b2.values() == [b"a", b"b"]


def test_follower_with_an_epoch_the_leader_never_had_truncates_in_two_steps() -> None:
    """b1 led epoch 1 briefly and wrote x; b2 was then elected at epoch 2 from epoch 0 data.
    b1's last epoch (1) is unknown to b2, which answers with its largest epoch below (0); b1
    cuts to the end of its own epoch 0, then fetches again and agrees."""
    b1, b2 = Broker(1), Broker(2)
    s0 = state(1, 0, 0, (1, 2), replicas=(1, 2))
    lead(b1, s0)
    follow(b2, s0)
    produce(b1, b"a", acks=1)
    produce(b1, b"b", acks=1)
    fetch(b2, b1)
    lead(b1, state(1, 1, 1, (1,), replicas=(1, 2)))
    produce(b1, b"x", acks=1)
    s2 = state(2, 2, 2, (2,), replicas=(1, 2))
    lead(b2, s2)
    produce(b2, b"y", acks=1)
    follow(b1, s2)
    req = b1.p.next_fetch(now_ms=0)
    assert req is not None and (req.fetch_offset, req.last_fetched_epoch) == (3, 1)
    resp = b2.p.handle_replica_fetch(req, now_ms=0)
    assert resp.diverging_epoch == EpochEndOffset(epoch=0, end_offset=2)
    assert b1.p.handle_fetch_response(req, resp.fetched(), now_ms=0) is FetchOutcome.TRUNCATED
    assert b1.p.log_end_offset == 2
    fetch(b1, b2)
    assert b1.values() == b2.values() == [b"a", b"b", b"y"]
    assert b1.epochs() == [0, 0, 2]


def test_follower_cuts_at_its_own_end_of_the_epoch_when_lower_than_the_leaders() -> None:
    """b2 led epoch 1 and wrote x at offset 2, where epoch 0 had c and d on b3 (which it never
    got). b3 leads epoch 2 and answers epoch 0 ending at 4; b2's epoch 0 ends at 2, and that is
    where it must cut -- at the leader's 4 (or its own log end) it would keep x forever."""
    b1, b2, b3 = trio_cluster()
    produce(b1, b"a", acks=1)
    produce(b1, b"b", acks=1)
    fetch(b2, b1)
    fetch(b3, b1)
    produce(b1, b"c", acks=1)
    produce(b1, b"d", acks=1)
    fetch(b3, b1)
    lead(b2, state(2, 1, 1, (2,)))
    produce(b2, b"x", acks=1)
    produce(b2, b"y", acks=1)
    s = state(3, 2, 2, (3,))
    lead(b3, s)
    follow(b2, s)
    req = b2.p.next_fetch(now_ms=0)
    assert req is not None and (req.fetch_offset, req.last_fetched_epoch) == (4, 1)
    resp = b3.p.handle_replica_fetch(req, now_ms=0)
    assert resp.diverging_epoch == EpochEndOffset(epoch=0, end_offset=4)
    assert b2.p.handle_fetch_response(req, resp.fetched(), now_ms=0) is FetchOutcome.TRUNCATED
    assert b2.p.log_end_offset == 2
    assert fetch(b2, b3) is FetchOutcome.APPENDED
    assert b2.values() == b3.values() == [b"a", b"b", b"c", b"d"]


def test_follower_drops_an_epoch_it_led_without_writing() -> None:
    """b2 was elected at epoch 1 and wrote nothing before b3 took over at epoch 2. Its epoch
    cache ends with (1, 2): the leader answers the divergence at b2's log end, and unless that
    entry goes, b2 would send epoch 1 again and diverge forever (Kafka's truncateTo drops it)."""
    b1, b2, b3 = trio_cluster()
    produce(b1, b"a", acks=1)
    produce(b1, b"b", acks=1)
    fetch(b2, b1)
    fetch(b3, b1)
    lead(b2, state(2, 1, 1, (2, 3)))
    s = state(3, 2, 2, (2, 3))
    lead(b3, s)
    follow(b2, s)
    req = b2.p.next_fetch(now_ms=0)
    assert req is not None and (req.fetch_offset, req.last_fetched_epoch) == (2, 1)
    resp = b3.p.handle_replica_fetch(req, now_ms=0)
    assert resp.diverging_epoch == EpochEndOffset(epoch=0, end_offset=2)
    assert b2.p.handle_fetch_response(req, resp.fetched(), now_ms=0) is FetchOutcome.TRUNCATED
    assert b2.p.log_end_offset == 2
    assert [(e.epoch, e.start_offset) for e in b2.log.epochs.entries] == [(0, 0)]
    assert fetch(b2, b3) is FetchOutcome.APPENDED
    assert b3.p.follower_log_end_offset(2) == 2


def test_follower_below_the_leaders_log_start_restarts_there() -> None:
    b1, b2, _ = trio_cluster()
    for v in (b"a", b"b", b"c", b"d"):
        produce(b1, v, acks=1)
    b1.log.update_high_watermark(4)
    assert b1.log.delete_records_before(3, now_ms=0) == ErrorCode.NONE
    b2.fs = SimFileSystem()  # empty disk
    b2.open(now_ms=0)
    follow(b2, state(1, 0, 0, (1, 2, 3)))
    assert fetch(b2, b1) is FetchOutcome.RESET
    assert LogTruncated(end_offset=3, full=True) in b2.p.take_effects()
    assert (b2.log.log_start_offset, b2.log.log_end_offset) == (3, 3)
    fetch(b2, b1)
    assert b2.values() == [b"d"]


def test_follower_above_the_leaders_log_end_truncates_to_it() -> None:
    b1, b2, _ = trio_cluster()
    produce(b1, b"a", acks=1)
    fetch(b2, b1)
    # b2 restarted its log at 5 with no epochs (a follower reset against another leader).
    b2.log.truncate_fully_and_start_at(5, now_ms=0)
    req = b2.p.next_fetch(now_ms=0)
    assert req is not None and req.last_fetched_epoch == NO_EPOCH
    resp = b1.p.handle_replica_fetch(req, now_ms=0)
    assert resp.error == ErrorCode.OFFSET_OUT_OF_RANGE and resp.log_end_offset == 1
    wire = FetchedPartition(error=resp.error, high_watermark=resp.high_watermark,
                            log_start_offset=resp.log_start_offset)
    assert b2.p.handle_fetch_response(req, wire, now_ms=0) is FetchOutcome.NEED_LEADER_END_OFFSET
    assert b2.p.log_end_offset == 5
    assert b2.p.handle_fetch_response(req, resp.fetched(), now_ms=0) is FetchOutcome.TRUNCATED
    assert b2.p.log_end_offset == 1


def test_follower_hw_is_the_leaders_within_its_log_and_never_goes_back() -> None:
    b1, b2, b3 = trio_cluster()
    produce(b1, b"a", acks=1)
    produce(b1, b"b", acks=1)
    fetch(b2, b1)
    fetch(b3, b1)
    fetch(b3, b1)
    fetch(b2, b1)
    assert b1.p.high_watermark == 2 and b2.p.high_watermark == 2
    # b3 is elected with a stale HW (0); following it must not pull b2's HW down.
    s = state(3, 1, 1, (2, 3))
    lead(b3, s)
    follow(b2, s)
    assert b3.p.high_watermark == 0
    fetch(b2, b3)
    assert b2.p.high_watermark == 2


# --- the wire mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [12, 15, 17])
def test_replica_fetch_round_trips_through_the_fetch_request(version: int) -> None:
    f = ReplicaFetch(replica_id=2, replica_epoch=42 if version >= 15 else -1, fetch_offset=17,
                     last_fetched_epoch=3, current_leader_epoch=4, log_start_offset=5, max_bytes=1000)
    part = fetch_partition_from_fetch(f, partition_index=0)
    topic = FetchRequest.FetchTopic(topic="t", partitions=[part])
    if version >= 13:
        topic = FetchRequest.FetchTopic(topic_id=uuid.UUID(int=7), partitions=[part])
    req = FetchRequest(max_wait_ms=500, min_bytes=1, topics=[topic])
    if version >= 15:
        req.replica_state = replica_state_from_fetch(f)
    else:
        req.replica_id = f.replica_id
    decoded = FetchRequest.decode(req.encode(version), version)
    assert replica_fetch_from_request(decoded, decoded.topics[0].partitions[0]) == f


def test_fetch_response_mapping_carries_divergence_and_leader_hint() -> None:
    b1, b2, _ = trio_cluster()
    produce(b1, b"a", acks=1)
    req = b2.p.next_fetch(now_ms=0)
    assert req is not None
    resp = b1.p.handle_replica_fetch(req, now_ms=0)
    records = resp.fetched().records
    data = partition_data_from_response(resp, partition_index=0, records=records)
    topic = FetchResponse.FetchableTopicResponse(topic="t", partitions=[data])
    wire = FetchResponse.decode(FetchResponse(responses=[topic]).encode(12), 12)
    got = fetched_from_partition_data(wire.responses[0].partitions[0])
    want = resp.fetched()
    # The leader's log end and (without an error) its identity are not on the wire.
    assert got == FetchedPartition(error=want.error, high_watermark=want.high_watermark,
                                   log_start_offset=want.log_start_offset, records=want.records)
    assert got.records and list(iter_batches(got.records))[0].base_offset == 0
    assert b2.p.handle_fetch_response(req, got, now_ms=0) is FetchOutcome.APPENDED
    for r in (ReplicaFetchResponse(error=ErrorCode.NONE, high_watermark=0, log_start_offset=0,
                                   diverging_epoch=EpochEndOffset(epoch=1, end_offset=9)),
              ReplicaFetchResponse(error=ErrorCode.NOT_LEADER_OR_FOLLOWER, leader_id=3, leader_epoch=5)):
        d = partition_data_from_response(r, partition_index=0)
        t = FetchResponse.FetchableTopicResponse(topic="t", partitions=[d])
        back = fetched_from_partition_data(FetchResponse.decode(FetchResponse(responses=[t]).encode(12), 12)
                                           .responses[0].partitions[0])
        assert (back.error, back.diverging_epoch) == (r.error, r.diverging_epoch)
        if r.error == ErrorCode.NOT_LEADER_OR_FOLLOWER:
            assert (back.leader_id, back.leader_epoch) == (3, 5)


@pytest.mark.parametrize("version", [2, 3])
def test_alter_partition_mapping(version: int) -> None:
    proposal = AlterPartitionProposal(
        proposal_id=0, topic="t", partition=4, leader_id=1, leader_epoch=3, partition_epoch=9,
        new_isr=(IsrMember(broker_id=1, broker_epoch=10), IsrMember(broker_id=2, broker_epoch=11)),
        change=IsrChange.EXPAND)
    data = alter_partition_data_from_proposal(proposal, version=version)
    req = AlterPartitionRequest(broker_id=1, broker_epoch=10,
                                topics=[AlterPartitionRequest.TopicData(topic_id=uuid.UUID(int=1),
                                                                        partitions=[data])])
    back = AlterPartitionRequest.decode(req.encode(version), version).topics[0].partitions[0]
    assert (back.partition_index, back.leader_epoch, back.partition_epoch) == (4, 3, 9)
    if version >= 3:
        assert [(m.broker_id, m.broker_epoch) for m in back.new_isr_with_epochs] == [(1, 10), (2, 11)]
    else:
        assert back.new_isr == [1, 2]
    answer = AlterPartitionResponse.PartitionData(partition_index=4, error_code=0, leader_id=1, leader_epoch=3,
                                                  isr=[1, 2], partition_epoch=10)
    assert alter_partition_result(answer) == AlterPartitionResult(
        error=ErrorCode.NONE, leader_id=1, leader_epoch=3, partition_epoch=10, isr=(1, 2))
    assert alter_partition_result(answer, top_level_error=ErrorCode.NOT_CONTROLLER).error == ErrorCode.NOT_CONTROLLER
    answer.error_code = 9999
    assert alter_partition_result(answer).error == ErrorCode.UNKNOWN_SERVER_ERROR


# --- a small randomized run of the rules above ----------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_random_fetch_orders_keep_logs_equal_below_the_hw(seed: int) -> None:
    rng = random.Random(seed)
    b1, b2, b3 = trio_cluster(min_isr=2)
    brokers = {1: b1, 2: b2, 3: b3}
    acked: list[bytes] = []
    waiting: dict[int, bytes] = {}
    now = 0
    for i in range(200):
        now += rng.randrange(1, 50)
        r = rng.random()
        if r < 0.3:
            v = b"v%d" % i
            pid = produce(b1, v, now_ms=now)
            waiting[pid] = v
        elif r < 0.9:
            f = brokers[rng.choice((2, 3))]
            fetch(f, b1, now_ms=now)
        else:
            b1.p.tick(now)
        for pid, err in completions(b1).items():
            assert err == ErrorCode.NONE
            acked.append(waiting.pop(pid))
        hw = b1.p.high_watermark
        for f in (b2, b3):
            assert f.p.high_watermark <= hw
            assert f.values()[: f.p.high_watermark] == b1.values()[: f.p.high_watermark]
    assert acked and all(v in b2.values() and v in b3.values() for v in acked)
    assert all(isinstance(e, object) for e in b1.p.take_effects())
    assert b1.p.role is Role.LEADER
