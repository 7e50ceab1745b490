"""Goal: the KIP-848 consumer group protocol of GroupCoordinator behaves as Kafka's does, sans-IO.

ConsumerGroupHeartbeat is driven directly with a fake clock (plain ints) and a fixed topic
image: the first member gets every partition; a second member gets partitions only after the
first has revoked them (revoke before assign), with the member and group epochs Kafka would
give; regex subscriptions pick up new topics; leaving (-1), static leaving (-2), session expiry,
revocation deadlines and fencing; server assignor choice; the request checks; and every record
written reloads into an identical group. Assignor shapes are in test_group_consumer_assignors.py,
the meeting of classic and consumer groups in test_group_consumer_conflicts.py.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest

from broker.group import GroupCoordinator, GroupCoordinatorConfig, OffsetsRecord
from broker.group import records as rec
from broker.group.consumer import ConsumerGroupState, MemberState, TopicInfo, TopicsImage
from protocol.error_codes import ErrorCode
from protocol.messages.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from protocol.messages.offset_commit import OffsetCommitRequest
from protocol.messages.offset_fetch import OffsetFetchRequest

T1 = UUID("00000000-0000-0000-0000-0000000000a1")
T2 = UUID("00000000-0000-0000-0000-0000000000a2")
T3 = UUID("00000000-0000-0000-0000-0000000000a3")
REBALANCE_MS = 30_000
SESSION_MS = 45_000

Owned = dict[UUID, list[int]]


class CountingUuids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"00000000-0000-4000-8000-{self.n:012d}"


class ConsumerHarness:
    """A coordinator, a clock, a topic image, and every record written (to reload them)."""

    def __init__(self, topics: dict[str, tuple[UUID, int]] | None = None, **config: Any) -> None:
        self.coord = GroupCoordinator(GroupCoordinatorConfig(**config), new_uuid=CountingUuids())
        self.now = 0
        self.records: list[OffsetsRecord] = []
        self.topics = dict(topics if topics is not None else {"t1": (T1, 4)})

    def image(self) -> TopicsImage:
        return TopicsImage(TopicInfo(name, tid, n, name.startswith("__")) for name, (tid, n) in self.topics.items())

    def absorb(self, result: Any) -> Any:
        self.records.extend(result.records)
        return result.response

    def advance(self, ms: int) -> None:
        self.now += ms
        self.coord.set_topics(self.image())
        self.absorb(self.coord.tick(self.now))

    def heartbeat(self, group: str = "g", member_id: str = "", epoch: int = 0, *,
                  names: Sequence[str] | None = None, regex: str | None = None, owned: Owned | None = None,
                  instance: str | None = None, assignor: str | None = None, rebalance_ms: int | None = None,
                  version: int = 1, client: str = "client") -> ConsumerGroupHeartbeatResponse:
        if epoch == 0:
            rebalance_ms = REBALANCE_MS if rebalance_ms is None else rebalance_ms
            owned = {} if owned is None else owned
            if names is None and regex is None:
                names = ["t1"]
        request = ConsumerGroupHeartbeatRequest(
            group_id=group, member_id=member_id, member_epoch=epoch, instance_id=instance,
            rebalance_timeout_ms=-1 if rebalance_ms is None else rebalance_ms,
            subscribed_topic_names=None if names is None else list(names), subscribed_topic_regex=regex,
            server_assignor=assignor,
            topic_partitions=None if owned is None else [
                ConsumerGroupHeartbeatRequest.TopicPartitions(t, ps) for t, ps in owned.items()])
        response = self.absorb(self.coord.consumer_group_heartbeat(
            request, api_version=version, client_id=client, client_host="/10.0.0.1", now_ms=self.now,
            topics=self.image()))
        assert isinstance(response, ConsumerGroupHeartbeatResponse)
        return response

    def describe(self, *groups: str) -> list[ConsumerGroupDescribeResponse.DescribedGroup]:
        response = self.absorb(self.coord.consumer_group_describe(
            ConsumerGroupDescribeRequest(group_ids=list(groups)), now_ms=self.now, topics=self.image()))
        return list(response.groups)

    def reload(self) -> GroupCoordinator:
        """A fresh coordinator that has read every record written so far."""
        fresh = GroupCoordinator(self.coord.config, new_uuid=CountingUuids())
        fresh.load([(r.key, r.value) for r in self.records], now_ms=self.now)
        return fresh


def assignment(response: ConsumerGroupHeartbeatResponse) -> Owned | None:
    if response.assignment is None:
        return None
    return {tp.topic_id: sorted(tp.partitions) for tp in response.assignment.topic_partitions}


class Member:
    """A well-behaved consumer: owns what it was last given, heartbeats with its epoch."""

    def __init__(self, h: ConsumerHarness, group: str = "g", **join: Any) -> None:
        self.h, self.group = h, group
        response = h.heartbeat(group, **join)
        assert response.error_code == 0, response
        assert response.member_id is not None
        self.member_id = response.member_id
        self.instance = join.get("instance")
        self.client = join.get("client", "client")
        self.names = join.get("names", ["t1"])
        self.full_next = False  # after a lost answer a client sends a full heartbeat
        self.epoch = response.member_epoch
        self.owned: Owned = assignment(response) or {}
        self.last = response

    def beat(self, **kw: Any) -> ConsumerGroupHeartbeatResponse:
        if "names" in kw and kw["names"] is not None:
            self.names = kw["names"]
        if self.full_next:
            kw.setdefault("names", self.names)
            kw.setdefault("rebalance_ms", REBALANCE_MS)
            self.full_next = False
        response = self.h.heartbeat(self.group, self.member_id, self.epoch, owned=self.owned,
                                    instance=self.instance, client=self.client, **kw)
        self.last = response
        if response.error_code == 0:
            self.epoch = response.member_epoch
            new = assignment(response)
            if new is not None:
                self.owned = new
        return response

    def partitions(self) -> set[tuple[UUID, int]]:
        return {(t, p) for t, ps in self.owned.items() for p in ps}


def all_partitions(*tps: tuple[UUID, int]) -> set[tuple[UUID, int]]:
    return {(t, p) for t, n in tps for p in range(n)}


# --- joining and the first assignment ------------------------------------------------------------


def test_first_member_gets_every_partition_at_epoch_1() -> None:
    h = ConsumerHarness()
    r = h.heartbeat(names=["t1"])
    assert r.error_code == 0 and r.error_message is None
    # A member id in Kafka's Uuid form (22 characters of URL-safe base64).
    assert r.member_id is not None and len(r.member_id) == 22
    assert r.member_epoch == 1 and r.heartbeat_interval_ms == 5_000
    assert assignment(r) == {T1: [0, 1, 2, 3]}
    group = h.coord.consumer_group("g")
    assert group is not None and group.state is ConsumerGroupState.STABLE
    assert group.group_epoch == 1 and group.assignment_epoch == 1
    # A plain heartbeat changes nothing and carries no assignment.
    again = h.heartbeat("g", r.member_id, 1, owned={T1: [0, 1, 2, 3]})
    assert again.member_epoch == 1 and again.assignment is None


def test_a_client_generated_member_id_is_kept() -> None:
    h = ConsumerHarness()
    r = h.heartbeat(member_id="my-own-id")
    assert r.member_id == "my-own-id" and r.member_epoch == 1


def test_second_member_waits_for_the_first_to_revoke() -> None:
    h = ConsumerHarness()
    a = Member(h)
    assert a.epoch == 1 and a.partitions() == all_partitions((T1, 4))
    b = Member(h)
    group = h.coord.consumer_group("g")
    assert group is not None
    # B is at the new epoch at once but gets nothing: A still owns everything.
    assert group.group_epoch == 2 and b.epoch == 2 and b.owned == {}
    assert group.members[b.member_id].state is MemberState.UNRELEASED_PARTITIONS
    assert group.state is ConsumerGroupState.RECONCILING

    # A is told to give up half; it stays at epoch 1 until it reports them gone.
    r = a.beat()
    assert r.member_epoch == 1 and assignment(r) == {T1: [0, 1]}
    assert group.members[a.member_id].state is MemberState.UNREVOKED_PARTITIONS
    assert group.members[a.member_id].partitions_pending_revocation == {T1: frozenset({2, 3})}
    # Until then B still gets nothing, however often it asks.
    assert b.beat().assignment is None and b.owned == {}
    # A heartbeat that still reports the revoked partitions does not move A either.
    still = h.heartbeat("g", a.member_id, 1, owned={T1: [0, 1, 2, 3]})
    assert still.member_epoch == 1
    # A reports only what it keeps: it moves to epoch 2; partitions 2 and 3 are free.
    r = a.beat()
    assert r.member_epoch == 2 and group.members[a.member_id].state is MemberState.STABLE
    assert group.current_partition_epoch(T1, 2) == -1
    # Now B gets them.
    r = b.beat()
    assert r.member_epoch == 2 and assignment(r) == {T1: [2, 3]}
    assert group.state is ConsumerGroupState.STABLE
    assert a.partitions().isdisjoint(b.partitions())
    assert a.partitions() | b.partitions() == all_partitions((T1, 4))


def test_a_member_that_never_reported_its_owned_partitions_is_assumed_to_own_them() -> None:
    h = ConsumerHarness()
    a = Member(h)
    Member(h)
    # owned=None: the member did not say; Kafka assumes it still owns what it must revoke.
    r = h.heartbeat("g", a.member_id, 1)
    assert r.member_epoch == 1
    r = h.heartbeat("g", a.member_id, 1)
    assert r.member_epoch == 1
    r = h.heartbeat("g", a.member_id, 1, owned={T1: [0, 1]})
    assert r.member_epoch == 2


# --- epochs and fencing ------------------------------------------------------------------------


def test_member_epoch_ahead_or_stale_is_fenced_previous_epoch_is_forgiven() -> None:
    h = ConsumerHarness()
    a = Member(h)
    b = Member(h)
    a.beat()
    a.beat()
    assert a.epoch == 2
    group = h.coord.consumer_group("g")
    assert group is not None and group.members[a.member_id].previous_member_epoch == 1
    # The answer that moved A to epoch 2 was lost: epoch 1 with a subset of its partitions is fine.
    r = h.heartbeat("g", a.member_id, 1, owned={T1: [0]})
    assert r.error_code == 0 and r.member_epoch == 2
    # ... but not with partitions it does not have.
    r = h.heartbeat("g", a.member_id, 1, owned={T1: [3]})
    assert r.error_code == ErrorCode.FENCED_MEMBER_EPOCH and r.member_id is None and r.member_epoch == 0
    # Nor an epoch from the future, nor one older than the previous.
    assert h.heartbeat("g", a.member_id, 3, owned={}).error_code == ErrorCode.FENCED_MEMBER_EPOCH
    b.beat()
    assert h.heartbeat("g", b.member_id, 0, owned={}).error_code == ErrorCode.FENCED_MEMBER_EPOCH
    # An unknown member id, or a group that does not exist.
    assert h.heartbeat("g", "nobody", 1, owned={}).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("nope", "nobody", 1, owned={}).error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_revocation_deadline_fences_a_member_that_does_not_let_go() -> None:
    h = ConsumerHarness()
    a = Member(h, rebalance_ms=10_000)
    b = Member(h)
    r = a.beat()  # told to revoke 2 and 3; it never does
    assert r.member_epoch == 1
    h.advance(5_000)
    h.heartbeat("g", a.member_id, 1, owned={T1: [0, 1, 2, 3]})  # still holding on
    b.beat()
    h.advance(5_001)
    group = h.coord.consumer_group("g")
    assert group is not None and a.member_id not in group.members
    assert group.group_epoch == 3
    r = b.beat()
    assert r.member_epoch == 3 and assignment(r) == {T1: [0, 1, 2, 3]}
    assert h.heartbeat("g", a.member_id, 1, owned={}).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_session_expiry_removes_a_silent_member() -> None:
    h = ConsumerHarness()
    a = Member(h)
    b = Member(h)
    for _ in range(3):  # B keeps heartbeating, A goes silent
        h.advance(15_000)
        b.beat()
    # A's session ended at 45 s; B's last heartbeat (at 45 s) already took everything.
    group = h.coord.consumer_group("g")
    assert group is not None and list(group.members) == [b.member_id]
    assert b.epoch == 3 and b.partitions() == all_partitions((T1, 4))
    assert a.beat().error_code == ErrorCode.UNKNOWN_MEMBER_ID
    # The last member's session ends too: the group stays, Empty, with its epoch.
    h.advance(SESSION_MS)
    assert group.state is ConsumerGroupState.EMPTY and group.group_epoch == 4


# --- leaving -------------------------------------------------------------------------------------


def test_leave_with_epoch_minus_one() -> None:
    h = ConsumerHarness()
    a = Member(h)
    b = Member(h)
    a.beat()
    a.beat()
    b.beat()
    r = h.heartbeat("g", a.member_id, -1)
    assert r.error_code == 0 and r.member_id == a.member_id and r.member_epoch == -1
    assert r.heartbeat_interval_ms == 0 and r.assignment is None
    group = h.coord.consumer_group("g")
    assert group is not None and a.member_id not in group.members and group.group_epoch == 3
    assert b.beat().member_epoch == 3 and b.partitions() == all_partitions((T1, 4))
    assert h.heartbeat("g", a.member_id, -1).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("nope", "x", -1).error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_static_member_leaves_with_minus_two_and_comes_back_under_a_new_id() -> None:
    h = ConsumerHarness()
    a = Member(h, instance="alpha")
    b = Member(h, instance="beta")
    a.beat()
    a.beat()
    b.beat()
    assert a.partitions() == all_partitions((T1, 2)) and b.epoch == 2
    group = h.coord.consumer_group("g")
    assert group is not None
    # alpha steps out: it keeps its partitions (at epoch -2), nobody else gets them, no epoch bump.
    r = h.heartbeat("g", a.member_id, -2, instance="alpha")
    assert r.member_epoch == -2 and r.member_id == a.member_id
    assert group.members[a.member_id].member_epoch == -2 and group.group_epoch == 2
    assert group.current_partition_epoch(T1, 0) == -2
    assert b.beat().assignment is None
    # The same instance id may not join while the old member is still active...
    assert h.heartbeat(instance="beta").error_code == ErrorCode.UNRELEASED_INSTANCE_ID
    # ... but alpha's new incarnation takes over the old member's partitions and target.
    r = h.heartbeat(member_id="alpha-2", instance="alpha")
    assert r.error_code == 0 and r.member_id == "alpha-2"
    assert assignment(r) == {T1: [0, 1]} and r.member_epoch == 2
    assert a.member_id not in group.members and group.static_members["alpha"] == "alpha-2"
    assert group.group_epoch == 2 and group.state is ConsumerGroupState.STABLE
    # The old id is fenced by the new one.
    stale = h.heartbeat("g", a.member_id, 2, instance="alpha", owned={})
    assert stale.error_code == ErrorCode.FENCED_INSTANCE_ID
    assert h.heartbeat("g", "x", 2, instance="gamma", owned={}).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_member_that_never_returns_expires_with_its_session() -> None:
    h = ConsumerHarness()
    a = Member(h, instance="alpha")
    b = Member(h)
    a.beat()
    a.beat()
    b.beat()
    h.heartbeat("g", a.member_id, -2, instance="alpha")
    for _ in range(3):
        h.advance(15_000)
        b.beat()
    group = h.coord.consumer_group("g")
    assert group is not None and list(group.members) == [b.member_id]
    assert b.beat().member_epoch == 3 and b.partitions() == all_partitions((T1, 4))


# --- subscriptions -------------------------------------------------------------------------------


def test_subscription_change_and_new_partitions_bump_the_group_epoch() -> None:
    h = ConsumerHarness({"t1": (T1, 2), "t2": (T2, 2)})
    a = Member(h, names=["t1"])
    assert a.partitions() == all_partitions((T1, 2))
    r = a.beat(names=["t1", "t2"])
    assert r.member_epoch == 2 and a.partitions() == all_partitions((T1, 2), (T2, 2))
    h.topics["t2"] = (T2, 3)  # partitions added
    r = a.beat()
    assert r.member_epoch == 3 and a.partitions() == all_partitions((T1, 2), (T2, 3))
    # A subscription to a topic that does not exist yet: a new epoch (the subscription changed)
    # but nothing new, until the topic is created.
    r = a.beat(names=["t1", "t2", "t3"])
    assert r.member_epoch == 4 and r.assignment is None
    h.topics["t3"] = (T3, 1)
    a.beat()
    assert a.epoch == 5 and (T3, 0) in a.partitions()
    # Dropping a topic revokes it first.
    r = a.beat(names=["t3"])
    assert r.member_epoch == 5 and a.partitions() == {(T3, 0)}
    r = a.beat()
    assert r.member_epoch == 6


def test_regex_subscription_picks_up_a_new_topic_after_the_refresh_interval() -> None:
    h = ConsumerHarness({"orders-eu": (T1, 2), "payments": (T2, 1), "__consumer_offsets": (T3, 50)})
    a = Member(h, regex="orders-.*|__.*")
    assert a.partitions() == all_partitions((T1, 2))  # internal topics never match
    group = h.coord.consumer_group("g")
    assert group is not None and set(group.resolved_regexes) == {"orders-.*|__.*"}
    t4 = UUID(int=4)
    h.topics["orders-us"] = (t4, 3)
    h.advance(5_000)
    assert a.beat().assignment is None  # resolved less than 10 s ago: not yet
    h.advance(5_001)
    r = a.beat()
    assert a.epoch == 2 and assignment(r) == {T1: [0, 1], t4: [0, 1, 2]}
    described = h.describe("g")[0].members[0]
    assert described.subscribed_topic_regex == "orders-.*|__.*" and described.subscribed_topic_names == []
    # Switching to names forgets the regex (tombstone) and keeps only the named topic.
    a.beat(names=["payments"], regex="")
    a.beat()
    assert a.partitions() == {(T2, 0)} and group.resolved_regexes == {}


def test_invalid_regex_is_refused() -> None:
    h = ConsumerHarness()
    for bad in ("orders-(", "(?=x)y", r"(a)\1", "a++"):
        r = h.heartbeat(regex=bad)
        assert r.error_code == ErrorCode.INVALID_REGULAR_EXPRESSION, bad
    assert h.coord.consumer_group("g") is None


def test_heterogeneous_subscriptions_are_assigned_to_subscribers_only() -> None:
    h = ConsumerHarness({"t1": (T1, 3), "t2": (T2, 3)})
    a = Member(h, names=["t1"])
    b = Member(h, names=["t1", "t2"])
    for _ in range(4):
        a.beat()
        b.beat()
    assert all(t == T1 for t, _ in a.partitions())
    assert a.partitions() | b.partitions() == all_partitions((T1, 3), (T2, 3))
    assert not a.partitions() & b.partitions()
    assert abs(len(a.partitions()) - len(b.partitions())) <= 1


# --- assignors -----------------------------------------------------------------------------------


def test_server_assignor_is_chosen_by_the_members() -> None:
    h = ConsumerHarness({"t1": (T1, 3), "t2": (T2, 3)})
    a = Member(h, names=["t1", "t2"], assignor="range")
    b = Member(h, names=["t1", "t2"], assignor="range")
    for _ in range(3):
        a.beat()
        b.beat()
    first, second = sorted((a, b), key=lambda m: m.member_id)
    assert first.owned == {T1: [0, 1], T2: [0, 1]} and second.owned == {T1: [2], T2: [2]}
    assert h.describe("g")[0].assignor_name == "range"
    r = h.heartbeat(assignor="sticky")
    assert r.error_code == ErrorCode.UNSUPPORTED_ASSIGNOR and r.error_message is not None


def test_default_assignor_is_the_first_configured() -> None:
    h = ConsumerHarness({"t1": (T1, 3), "t2": (T2, 3)}, consumer_assignors=("range", "uniform"))
    Member(h, names=["t1", "t2"])
    assert h.describe("g")[0].assignor_name == "range"
    h2 = ConsumerHarness()
    Member(h2)
    assert h2.describe("g")[0].assignor_name == "uniform"


# --- request checks ------------------------------------------------------------------------------


def test_malformed_heartbeats_are_invalid_requests() -> None:
    h = ConsumerHarness()

    def send(**kw: Any) -> ConsumerGroupHeartbeatResponse:
        request = ConsumerGroupHeartbeatRequest(**{"group_id": "g", "member_epoch": 0, "rebalance_timeout_ms": 1,
                                                   "subscribed_topic_names": ["t1"], "topic_partitions": [], **kw})
        response = h.coord.consumer_group_heartbeat(request, api_version=1, client_id="c", client_host="/h",
                                                    now_ms=0).response
        assert response is not None
        return response

    assert send().error_code == 0
    for kw in ({"group_id": " "}, {"rebalance_timeout_ms": -1}, {"topic_partitions": None},
               {"topic_partitions": [ConsumerGroupHeartbeatRequest.TopicPartitions(T1, [0])]},
               {"subscribed_topic_names": None}, {"instance_id": ""}, {"rack_id": ""},
               {"member_epoch": 3}, {"member_epoch": -1}, {"member_epoch": -3, "member_id": "m"},
               {"member_epoch": -2, "member_id": "m"}):
        r = send(**kw)
        assert r.error_code == ErrorCode.INVALID_REQUEST and r.error_message, kw


def test_group_size_limit() -> None:
    h = ConsumerHarness(consumer_group_members_max=2)
    a = Member(h)
    Member(h)
    r = h.heartbeat()
    assert r.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert a.beat().error_code == 0  # members already in are fine


# --- describe, offsets ----------------------------------------------------------------------------


def test_consumer_group_describe() -> None:
    h = ConsumerHarness()
    a = Member(h, instance="i-a", client="client-a")
    b = Member(h)
    a.beat()
    [described, missing, empty] = h.describe("g", "missing", "")
    assert empty.error_code == ErrorCode.INVALID_GROUP_ID
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND and missing.error_message
    assert described.error_code == 0 and described.group_state == "Reconciling"
    assert described.group_epoch == 2 and described.assignment_epoch == 2 and described.assignor_name == "uniform"
    by_id = {m.member_id: m for m in described.members}
    ma = by_id[a.member_id]
    assert ma.instance_id == "i-a" and ma.client_id == "client-a" and ma.client_host == "/10.0.0.1"
    assert ma.member_epoch == 1 and ma.subscribed_topic_names == ["t1"]
    assert [(tp.topic_name, tp.partitions) for tp in ma.assignment.topic_partitions] == [("t1", [0, 1])]
    assert [(tp.topic_id, tp.partitions) for tp in ma.target_assignment.topic_partitions] == [(T1, [0, 1])]
    mb = by_id[b.member_id]
    assert mb.assignment.topic_partitions == [] and mb.target_assignment.topic_partitions[0].partitions == [2, 3]
    assert described.authorized_operations == -(2**31)
    with_ops = h.coord.consumer_group_describe(ConsumerGroupDescribeRequest(["g"], True), now_ms=h.now).response
    assert with_ops is not None and with_ops.groups[0].authorized_operations == 328  # READ, DESCRIBE, DELETE


def test_offset_commit_and_fetch_check_the_member_epoch() -> None:
    h = ConsumerHarness()
    a = Member(h)

    def commit(member_id: str, epoch: int, version: int = 9) -> int:
        request = OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=epoch, member_id=member_id, topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic("t1", [
                OffsetCommitRequest.OffsetCommitRequestPartition(0, 42)])])
        response = h.absorb(h.coord.offset_commit(request, api_version=version, now_ms=h.now))
        return int(response.topics[0].partitions[0].error_code)

    assert commit(a.member_id, 1) == 0
    assert commit(a.member_id, 2) == ErrorCode.STALE_MEMBER_EPOCH
    assert commit("stranger", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert commit(a.member_id, 1, version=8) == ErrorCode.UNSUPPORTED_VERSION
    assert commit("", -1) == ErrorCode.UNKNOWN_MEMBER_ID  # the group has members

    def fetch(member_id: str | None, epoch: int) -> tuple[int, list[int]]:
        request = OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(
            "g", member_id, epoch, [OffsetFetchRequest.OffsetFetchRequestTopics("t1", [0])])])
        group = h.absorb(h.coord.offset_fetch(request, api_version=9, now_ms=h.now)).groups[0]
        return group.error_code, [p.committed_offset for t in group.topics for p in t.partitions]

    assert fetch(a.member_id, 1) == (0, [42])
    assert fetch(None, -1) == (0, [42])  # the admin client
    assert fetch(a.member_id, 0)[0] == ErrorCode.STALE_MEMBER_EPOCH
    assert fetch("stranger", 1)[0] == ErrorCode.UNKNOWN_MEMBER_ID
    # Once the group is empty, a standalone commit (epoch -1) is accepted.
    h.heartbeat("g", a.member_id, -1)
    assert commit("", -1) == 0


# --- persistence ---------------------------------------------------------------------------------


def snapshot(coord: GroupCoordinator, group_id: str = "g") -> tuple[object, ...]:
    group = coord.consumer_group(group_id)
    assert group is not None
    return (group.group_epoch, group.assignment_epoch, group.members, group.static_members,
            group.target_assignment, group.subscription_metadata, group.resolved_regexes, group.partition_epochs,
            group.state)


def test_every_record_reloads_into_the_same_group() -> None:
    h = ConsumerHarness({"t1": (T1, 4), "orders": (T2, 2)})
    a = Member(h, instance="alpha", assignor="range", rebalance_ms=12_345)
    b = Member(h, regex="ord.*")
    c = Member(h)
    a.beat()  # revoking: a mid-reconciliation state is persisted too
    b.beat()
    assert snapshot(h.reload()) == snapshot(h.coord)
    h.heartbeat("g", c.member_id, -1)
    h.heartbeat("g", a.member_id, -2, instance="alpha")
    assert snapshot(h.reload()) == snapshot(h.coord)
    # Records are Kafka's key versions, and each value is value version 0.
    kinds = {rec.decode_key(r.key).__class__.__name__ for r in h.records}
    assert kinds == {"ConsumerGroupMetadataKey", "ConsumerGroupPartitionMetadataKey", "ConsumerGroupMemberMetadataKey",
                     "ConsumerGroupTargetAssignmentMetadataKey", "ConsumerGroupTargetAssignmentMemberKey",
                     "ConsumerGroupCurrentMemberAssignmentKey", "ConsumerGroupRegularExpressionKey"}
    assert all(r.value is None or r.value[:2] == b"\x00\x00" for r in h.records)
    assert {r.partition for r in h.records} == {h.coord.partition_for("g")}


def test_reloaded_members_get_fresh_sessions_and_revocation_deadlines() -> None:
    h = ConsumerHarness()
    a = Member(h, rebalance_ms=10_000)
    Member(h)
    a.beat()  # a must revoke
    h.now = 100_000
    fresh = h.reload()
    group = fresh.consumer_group("g")
    assert group is not None and len(group.members) == 2
    deadline = fresh.next_deadline_ms()
    assert deadline is not None and deadline == h.now + 10_000  # a's revocation deadline
    fresh.tick(h.now + 10_000)
    assert a.member_id not in group.members
    fresh.tick(h.now + SESSION_MS)
    assert group.state is ConsumerGroupState.EMPTY


def test_delete_group_tombstones_everything() -> None:
    h = ConsumerHarness()
    from protocol.messages.delete_groups import DeleteGroupsRequest
    a = Member(h, regex="t.*")
    response = h.absorb(h.coord.delete_groups(DeleteGroupsRequest(["g"]), now_ms=h.now))
    assert response.results[0].error_code == ErrorCode.NON_EMPTY_GROUP
    h.heartbeat("g", a.member_id, -1)
    response = h.absorb(h.coord.delete_groups(DeleteGroupsRequest(["g"]), now_ms=h.now))
    assert response.results[0].error_code == 0
    assert h.coord.consumer_group("g") is None and "g" not in h.coord.group_ids()
    fresh = h.reload()
    assert fresh.consumer_group("g") is None and fresh.group_ids() == []


# --- a seeded simulation -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_simulation_never_gives_a_partition_to_two_members(seed: int) -> None:
    """Random joins, leaves, silences, subscription changes and lost answers. After every step
    no two live consumers own the same partition; with everyone heartbeating, the group settles
    with every partition owned."""
    rng = random.Random(seed)
    topics = {"a": (T1, 5), "b": (T2, 3), "c": (T3, 4)}
    h = ConsumerHarness(topics, consumer_assignors=(rng.choice(["uniform", "range"]),))
    members: list[Member] = []
    names = itertools.count()
    print(f"seed {seed}")

    def check() -> None:
        group = h.coord.consumer_group("g")
        live = [m for m in members if group is not None and m.member_id in group.members]
        seen: set[tuple[UUID, int]] = set()
        for m in live:
            assert not (m.partitions() & seen), f"seed {seed}: partition owned twice"
            seen |= m.partitions()

    for _ in range(120):
        action = rng.random()
        if action < 0.15 or not members:
            subs = rng.sample(sorted(topics), rng.randint(1, 3))
            members.append(Member(h, names=subs, client=f"c{next(names)}"))
        elif action < 0.22:
            m = members.pop(rng.randrange(len(members)))
            h.heartbeat("g", m.member_id, -1)
        elif action < 0.27:
            m = rng.choice(members)
            m.beat(names=rng.sample(sorted(topics), rng.randint(1, 3)))
        elif action < 0.32:
            h.advance(rng.choice([1_000, 20_000, 50_000]))  # some sessions may end
        else:
            m = rng.choice(members)
            before = (m.epoch, dict(m.owned))
            r = m.beat()
            if r.error_code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH):
                members.remove(m)  # it lost its partitions; a real client would rejoin
            elif rng.random() < 0.1 and r.error_code == 0:
                m.epoch, m.owned = before  # the answer was lost
                m.full_next = True
        # A member that was fenced or expired has lost its partitions, as a client would.
        group = h.coord.consumer_group("g")
        members = [m for m in members if group is not None and m.member_id in group.members]
        check()

    # Everyone left heartbeats every 5 s for a minute: members the simulation dropped (fenced,
    # or whose answer got lost for good) run out of session and their partitions move on.
    members = [m for m in members if m.beat().error_code == 0]  # some sessions are about to end
    for _ in range(12):
        h.advance(5_000)
        for m in members:
            r = m.beat()
            assert r.error_code == 0, (seed, r)
        check()
    group = h.coord.consumer_group("g")
    if members:
        assert group is not None and group.state is ConsumerGroupState.STABLE, seed
        subscribed = set().union(*(set(group.members[m.member_id].subscribed_topic_names) for m in members))
        owned = set().union(*(m.partitions() for m in members))
        assert owned == {(tid, p) for name, (tid, n) in topics.items() if name in subscribed for p in range(n)}
    assert snapshot(h.reload()) == snapshot(h.coord) if group is not None else True
