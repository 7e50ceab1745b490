"""KIP-392's preferred read replica: Kafka's ``findPreferredReadReplica`` and ``RackAwareReplicaSelector``.

Goal: each clause of ``replication.read_replica``'s rule has a case that a rule missing it gets
wrong: no selector keeps the leader; no or empty client rack keeps the leader; a leader in the
client's rack wins over followers there; a follower outside the ISR, or whose log (as the leader
last saw it) starts after or ends before the fetch offset, is not a candidate; among same-rack
candidates the largest log end offset wins, then the most recent catch-up, then the largest
broker id; a broker with no reachable endpoint has no rack. Then the same through a real leader
``Partition``, whose ``follower_states`` must report what its followers' fetches said.
"""

from __future__ import annotations

import pytest

from protocol.records import NewRecord, build_batch
from replication.partition import LeaderAndIsr, Partition, ReplicaFetch
from replication.read_replica import (
    NO_PREFERRED_READ_REPLICA,
    RACK_AWARE_REPLICA_SELECTOR,
    FollowerState,
    ReplicaView,
    preferred_read_replica,
    rack_aware_select,
    replica_selector_error,
)
from storage.config import LogConfig
from storage.fs import SimFileSystem
from storage.manager import LogManager

NOW_MS = 1_000_000
RACKS = {1: "a", 2: "b", 3: "b", 4: "c"}


def follower(broker_id: int, *, start: int = 0, end: int = 100, caught_up_ms: int | None = NOW_MS,
             in_sync: bool = True) -> FollowerState:
    return FollowerState(broker_id=broker_id, in_sync=in_sync, log_start_offset=start, log_end_offset=end,
                         last_caught_up_time_ms=caught_up_ms)


def choose(followers: list[FollowerState], *, client_rack: str | None = "b", fetch_offset: int = 50,
           selector: str | None = RACK_AWARE_REPLICA_SELECTOR, racks: dict[int, str | None] | None = None,
           leader_id: int = 1) -> int:
    return preferred_read_replica(selector, client_rack=client_rack, fetch_offset=fetch_offset, now_ms=NOW_MS,
                                  leader_id=leader_id, leader_log_end_offset=100, followers=followers,
                                  racks=RACKS if racks is None else racks)


def test_the_selector_names_kafkas_class_and_nothing_else() -> None:
    assert replica_selector_error(RACK_AWARE_REPLICA_SELECTOR) is None
    assert replica_selector_error("org.apache.kafka.common.replica.LeaderSelector") is not None
    assert replica_selector_error("") is not None


def test_a_same_rack_follower_is_preferred_only_with_a_selector_and_a_client_rack() -> None:
    followers = [follower(2)]
    assert choose(followers) == 2
    assert choose(followers, selector=None) == NO_PREFERRED_READ_REPLICA
    assert choose(followers, client_rack=None) == NO_PREFERRED_READ_REPLICA
    assert choose(followers, client_rack="") == NO_PREFERRED_READ_REPLICA
    assert choose(followers, client_rack="c") == NO_PREFERRED_READ_REPLICA  # nobody there
    assert choose(followers, client_rack="a") == NO_PREFERRED_READ_REPLICA  # the leader's rack


def test_the_leader_wins_in_its_own_rack_even_against_a_more_caught_up_follower() -> None:
    racks = {1: "b", 2: "b"}
    assert choose([follower(2, end=100)], racks=racks) == NO_PREFERRED_READ_REPLICA


def test_only_in_sync_followers_holding_the_fetch_offset_are_candidates() -> None:
    assert choose([follower(2, in_sync=False)]) == NO_PREFERRED_READ_REPLICA
    assert choose([follower(2, end=49)]) == NO_PREFERRED_READ_REPLICA  # ends before the offset
    assert choose([follower(2, end=50)]) == 2  # its log end offset itself is fine
    assert choose([follower(2, start=51)]) == NO_PREFERRED_READ_REPLICA  # starts after it
    assert choose([follower(2, start=50)]) == 2
    # never fetched since this leader's election: offsets unknown (-1)
    assert choose([follower(2, start=-1, end=-1, caught_up_ms=None)]) == NO_PREFERRED_READ_REPLICA
    # a lagging candidate is skipped for one that holds the offset, even with a smaller id
    assert choose([follower(2), follower(3, end=10)]) == 2


def test_a_broker_without_a_reachable_endpoint_has_no_rack() -> None:
    assert choose([follower(2)], racks={1: "a"}) == NO_PREFERRED_READ_REPLICA
    assert choose([follower(2)], racks={1: "a", 2: None}) == NO_PREFERRED_READ_REPLICA


def test_the_most_caught_up_same_rack_follower_wins() -> None:
    assert choose([follower(2, end=90), follower(3, end=80)]) == 2
    assert choose([follower(2, end=80), follower(3, end=90)]) == 3
    # equal log end: the one that caught up most recently
    assert choose([follower(2, caught_up_ms=NOW_MS - 10), follower(3, caught_up_ms=NOW_MS - 500)]) == 2
    assert choose([follower(2, caught_up_ms=NOW_MS - 500), follower(3, caught_up_ms=NOW_MS - 10)]) == 3
    # never caught up counts as caught up at time 0: the oldest possible
    assert choose([follower(2, caught_up_ms=None), follower(3, caught_up_ms=1)]) == 3
    # a full tie: the largest broker id (Kafka's comparator under max)
    assert choose([follower(3), follower(2)]) == 3


def test_rack_aware_select_on_views() -> None:
    leader = ReplicaView(broker_id=1, rack="a", log_end_offset=10, time_since_last_caught_up_ms=0)
    f2 = ReplicaView(broker_id=2, rack="b", log_end_offset=10, time_since_last_caught_up_ms=5)
    assert rack_aware_select("b", leader=leader, followers=[f2]) is f2
    assert rack_aware_select("a", leader=leader, followers=[f2]) is leader
    assert rack_aware_select(None, leader=leader, followers=[f2]) is leader


# --- through a leader Partition -------------------------------------------------------------------


def batch(*values: bytes) -> bytes:
    return build_batch([NewRecord(value=v, timestamp=1_000) for v in values])


@pytest.fixture
def leader() -> Partition:
    mgr = LogManager.open(SimFileSystem(), "/data", now_ms=0, default_config=LogConfig(segment_bytes=4096))
    p = Partition(mgr.get_or_create_log("t", 0, now_ms=0), broker_id=1)
    assert p.become_leader(LeaderAndIsr(leader=1, leader_epoch=1, partition_epoch=1, replicas=(1, 2, 3, 4),
                                        isr=(1, 2, 3)), min_insync_replicas=1, now_ms=0)
    assert p.append(batch(b"a", b"b", b"c", b"d"), acks=1, now_ms=0, timeout_ms=1).error == 0
    return p


def replica_fetch(p: Partition, replica_id: int, offset: int, *, now_ms: int, log_start: int = 0) -> None:
    answer = p.handle_replica_fetch(ReplicaFetch(replica_id=replica_id, replica_epoch=-1, fetch_offset=offset,
                                                 last_fetched_epoch=-1, current_leader_epoch=1,
                                                 log_start_offset=log_start, max_bytes=1 << 20), now_ms=now_ms)
    assert answer.error == 0, answer


def test_follower_states_report_what_the_followers_fetches_said(leader: Partition) -> None:
    replica_fetch(leader, 2, 4, now_ms=100)  # caught up with the leader's log end (4)
    replica_fetch(leader, 3, 2, now_ms=200, log_start=1)  # behind
    states = {s.broker_id: s for s in leader.follower_states()}
    assert set(states) == {2, 3, 4}
    assert states[2] == FollowerState(broker_id=2, in_sync=True, log_start_offset=0, log_end_offset=4,
                                      last_caught_up_time_ms=100)
    assert (states[3].log_start_offset, states[3].log_end_offset, states[3].in_sync) == (1, 2, True)
    assert (states[4].log_end_offset, states[4].in_sync) == (-1, False)
    racks = {1: "a", 2: "b", 3: "b", 4: "c"}

    def choose_on(p: Partition, offset: int, client_rack: str) -> int:
        return preferred_read_replica(RACK_AWARE_REPLICA_SELECTOR, client_rack=client_rack, fetch_offset=offset,
                                      now_ms=300, leader_id=1, leader_log_end_offset=p.log_end_offset,
                                      followers=p.follower_states(), racks=racks)

    assert choose_on(leader, 3, "b") == 2  # only 2 holds offset 3
    assert choose_on(leader, 0, "b") == 2  # both do, 2 has the larger log end
    replica_fetch(leader, 3, 4, now_ms=250, log_start=1)
    assert choose_on(leader, 0, "b") == 2  # 3 no longer holds offset 0 (its log starts at 1)
    assert choose_on(leader, 1, "b") == 3  # a tie on log end: 3 caught up more recently
    assert choose_on(leader, 1, "c") == NO_PREFERRED_READ_REPLICA  # 4 is not in the ISR

    follower_view = Partition(leader.log, broker_id=2)
    assert follower_view.follower_states() == ()  # not a leader: nothing to choose from
