"""Goal: classic and consumer groups share one group-id namespace, and meet as Kafka's do.

With ``group.consumer.migration.policy=disabled`` (Kafka 3.9's default): a consumer-protocol
join takes over an empty classic group (one that only holds offsets included) but gets
GROUP_ID_NOT_FOUND from a classic group with members; JoinGroup takes over an empty consumer
group and gets INCONSISTENT_GROUP_PROTOCOL from one with members; the classic APIs find no
classic member in a consumer group; DescribeGroups (v0-v5) sees a consumer group as Dead;
ConsumerGroupDescribe answers GROUP_ID_NOT_FOUND for a classic group (the fallback clients rely
on); ListGroups filters by type; OffsetDelete and offset expiry follow the consumer group's rules.
"""

from __future__ import annotations

from group_harness import Harness, subscription
from test_group_consumer_protocol import T1, ConsumerHarness, Member

from broker.group import GROUP_OPERATIONS_KAFKA_3
from broker.group import records as rec
from protocol.error_codes import ErrorCode
from protocol.messages.consumer_group_describe import ConsumerGroupDescribeRequest
from protocol.messages.describe_groups import DescribeGroupsRequest
from protocol.messages.heartbeat import HeartbeatRequest
from protocol.messages.leave_group import LeaveGroupRequest
from protocol.messages.list_groups import ListGroupsRequest
from protocol.messages.offset_commit import OffsetCommitRequest
from protocol.messages.offset_delete import OffsetDeleteRequest
from protocol.messages.sync_group import SyncGroupRequest


def with_classic(h: ConsumerHarness) -> Harness:
    """A classic-protocol driver over the same coordinator, clock and record list."""
    classic = Harness()
    classic.coord = h.coord
    classic.records = h.records
    return classic


def classic_member(h: ConsumerHarness, group: str) -> str:
    c = with_classic(h)
    c.now = h.now
    member_id, token = c.join_new(group, protocols=(("range", subscription("t1")),))
    c.advance(3_000)  # the initial rebalance delay
    h.now = c.now
    response = c.take(token)
    assert response.error_code == 0, response
    _, synced = c.sync(group, member_id, response.generation_id, {member_id: b""})
    assert synced is not None and synced.error_code == 0
    return member_id


def test_consumer_join_to_a_classic_group_with_members_is_group_id_not_found() -> None:
    h = ConsumerHarness()
    classic_member(h, "g")
    r = h.heartbeat("g")
    assert r.error_code == ErrorCode.GROUP_ID_NOT_FOUND and r.error_message == "Group g is not a consumer group."
    assert h.heartbeat("g", "m", 3, owned={}).error_code == ErrorCode.GROUP_ID_NOT_FOUND
    assert h.heartbeat("g", "m", -1).error_code == ErrorCode.GROUP_ID_NOT_FOUND
    assert h.coord.consumer_group("g") is None and h.coord.group("g") is not None


def test_consumer_join_takes_over_an_empty_classic_group_and_keeps_its_offsets() -> None:
    h = ConsumerHarness()
    commit = OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=-1, topics=[
        OffsetCommitRequest.OffsetCommitRequestTopic("t1", [OffsetCommitRequest.OffsetCommitRequestPartition(0, 7)])])
    h.absorb(h.coord.offset_commit(commit, api_version=9, now_ms=0))
    assert h.coord.group("g") is not None  # a "simple" classic group that only holds offsets
    before = len(h.records)
    a = Member(h)
    assert a.epoch == 1
    assert h.coord.group("g") is None and h.coord.consumer_group("g") is not None
    # The classic group's tombstone comes first.
    assert rec.decode_key(h.records[before].key) == rec.GroupMetadataKey("g") and h.records[before].value is None
    assert h.coord.committed_offset("g", "t1", 0) is not None
    fresh = h.reload()
    assert fresh.group("g") is None and fresh.consumer_group("g") is not None
    assert fresh.committed_offset("g", "t1", 0) is not None


def test_joingroup_to_a_consumer_group_with_members_is_inconsistent_protocol() -> None:
    h = ConsumerHarness()
    Member(h)
    c = with_classic(h)
    for member_id in ("", "someone"):
        _, response = c.join("g", member_id)
        assert response is not None and response.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        assert response.member_id == member_id and response.generation_id == -1


def test_joingroup_takes_over_an_empty_consumer_group() -> None:
    h = ConsumerHarness()
    a = Member(h)
    h.heartbeat("g", a.member_id, -1)
    member_id = classic_member(h, "g")
    assert h.coord.consumer_group("g") is None
    group = h.coord.group("g")
    assert group is not None and member_id in group.members
    fresh = h.reload()
    assert fresh.consumer_group("g") is None and fresh.group("g") is not None


def test_classic_calls_find_no_classic_member_in_a_consumer_group() -> None:
    h = ConsumerHarness()
    a = Member(h, instance="i-a")
    sync = h.coord.sync_group(SyncGroupRequest(group_id="g", generation_id=1, member_id=a.member_id,
                                               protocol_type="consumer", protocol_name="range"),
                              api_version=5, token="s", now_ms=h.now).response
    assert sync is not None and sync.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    beat = h.coord.heartbeat(HeartbeatRequest(group_id="g", generation_id=1, member_id=a.member_id),
                             now_ms=h.now).response
    assert beat is not None and beat.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    leave = h.coord.leave_group(LeaveGroupRequest(group_id="g", members=[
        LeaveGroupRequest.MemberIdentity(member_id=a.member_id),
        LeaveGroupRequest.MemberIdentity(member_id="", group_instance_id="i-a"),
        LeaveGroupRequest.MemberIdentity(member_id="other", group_instance_id="i-a"),
        LeaveGroupRequest.MemberIdentity(member_id="", group_instance_id="nobody"),
    ]), api_version=5, now_ms=h.now).response
    assert leave is not None and leave.error_code == 0
    assert [(m.member_id, m.error_code) for m in leave.members] == [
        (a.member_id, ErrorCode.UNKNOWN_MEMBER_ID), ("", ErrorCode.UNKNOWN_MEMBER_ID),
        ("other", ErrorCode.FENCED_INSTANCE_ID), ("", ErrorCode.UNKNOWN_MEMBER_ID)]
    old = h.coord.leave_group(LeaveGroupRequest(group_id="g", member_id=a.member_id), api_version=2,
                              now_ms=h.now).response
    assert old is not None and old.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    group = h.coord.consumer_group("g")
    assert group is not None and a.member_id in group.members  # nothing left


def test_describe_groups_sees_a_consumer_group_as_dead_and_consumer_group_describe_refuses_classic() -> None:
    h = ConsumerHarness()
    Member(h)
    classic_member(h, "classic")
    response = h.coord.describe_groups(DescribeGroupsRequest(groups=["g", "classic"], include_authorized_operations=True),
                                       api_version=5, now_ms=h.now).response
    assert response is not None
    dead, live = response.groups
    assert (dead.group_id, dead.error_code, dead.group_state, dead.protocol_type, dead.members) == ("g", 0, "Dead", "", [])
    assert dead.authorized_operations == GROUP_OPERATIONS_KAFKA_3
    assert live.group_state == "Stable" and len(live.members) == 1
    [classic, consumer] = h.coord.consumer_group_describe(
        ConsumerGroupDescribeRequest(group_ids=["classic", "g"]), now_ms=h.now).response.groups  # type: ignore[union-attr]
    assert classic.error_code == ErrorCode.GROUP_ID_NOT_FOUND and classic.error_message == "Group classic is not a consumer group."
    assert consumer.error_code == 0 and consumer.group_state == "Stable"


def test_list_groups_by_type_and_state() -> None:
    h = ConsumerHarness()
    Member(h, "cg")
    classic_member(h, "classic")

    def listed(types: list[str], states: list[str] | None = None) -> list[tuple[str, str, str, str]]:
        response = h.coord.list_groups(ListGroupsRequest(states_filter=states or [], types_filter=types),
                                       now_ms=h.now).response
        assert response is not None
        return sorted((g.group_id, g.protocol_type, g.group_state, g.group_type) for g in response.groups)

    both = [("cg", "consumer", "Stable", "consumer"), ("classic", "consumer", "Stable", "classic")]
    assert listed([]) == both
    assert listed(["Consumer"]) == both[:1]
    assert listed(["classic"]) == both[1:]
    assert listed(["classic", "consumer"]) == both
    assert listed(["share"]) == []
    assert listed(["consumer"], ["stable"]) == both[:1]
    assert listed(["consumer"], ["empty"]) == []


def test_offset_delete_in_a_consumer_group_refuses_subscribed_topics_only() -> None:
    h = ConsumerHarness()
    a = Member(h)
    for topic in ("t1", "other"):
        commit = OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=1, member_id=a.member_id, topics=[
            OffsetCommitRequest.OffsetCommitRequestTopic(topic, [OffsetCommitRequest.OffsetCommitRequestPartition(0, 5)])])
        h.absorb(h.coord.offset_commit(commit, api_version=9, now_ms=h.now))
    request = OffsetDeleteRequest(group_id="g", topics=[
        OffsetDeleteRequest.OffsetDeleteRequestTopic(name, [OffsetDeleteRequest.OffsetDeleteRequestPartition(0)])
        for name in ("t1", "other")])
    response = h.absorb(h.coord.offset_delete(request, now_ms=h.now))
    assert response.error_code == 0  # a non-empty consumer group may delete offsets
    assert [t.partitions[0].error_code for t in response.topics] == [ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, 0]
    assert h.coord.committed_offset("g", "other", 0) is None
    assert h.coord.committed_offset("g", "t1", 0) is not None


def test_offsets_of_unsubscribed_topics_expire_and_an_empty_group_goes_with_them() -> None:
    h = ConsumerHarness(offsets_retention_ms=60_000, offsets_retention_check_interval_ms=10_000)
    a = Member(h)
    commit = OffsetCommitRequest(group_id="g", generation_id_or_member_epoch=1, member_id=a.member_id, topics=[
        OffsetCommitRequest.OffsetCommitRequestTopic(t, [OffsetCommitRequest.OffsetCommitRequestPartition(0, 5)])
        for t in ("t1", "gone")])
    h.absorb(h.coord.offset_commit(commit, api_version=9, now_ms=h.now))
    for _ in range(7):
        h.advance(10_000)
        a.beat()
    assert h.coord.committed_offset("g", "gone", 0) is None  # not subscribed: expired
    assert h.coord.committed_offset("g", "t1", 0) is not None  # subscribed: kept
    h.heartbeat("g", a.member_id, -1)
    h.advance(70_000)
    assert h.coord.committed_offset("g", "t1", 0) is None
    assert h.coord.consumer_group("g") is None  # empty and without offsets: deleted
    assert h.reload().group_ids() == []
    assert T1  # (the topic id the harness assigns t1)
