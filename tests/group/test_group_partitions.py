"""The coordinator takes over and gives up groups one ``__consumer_offsets`` partition at a time.

Goal: in a cluster a broker coordinates only the groups of the partitions it leads. Loading a
partition must bring back exactly that partition's groups and offsets; unloading must forget
them (and only them), stop their timers, and answer their parked JoinGroup/SyncGroup requests
NOT_COORDINATOR so the members go and find the new coordinator. Also: the error answers the
adapter sends for a refused request or a failed write (``broker.group.errors``), per API and
version, and Kafka's mapping of append errors.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.group import partition_for
from broker.group.errors import WriteKind, append_error, fail_offset_commit
from broker.group.errors import error_response as _error_response
from protocol.error_codes import ErrorCode
from protocol.messages.consumer_group_describe import ConsumerGroupDescribeRequest
from protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatRequest
from protocol.messages.delete_groups import DeleteGroupsRequest
from protocol.messages.describe_groups import DescribeGroupsRequest
from protocol.messages.heartbeat import HeartbeatRequest
from protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from protocol.messages.leave_group import LeaveGroupRequest
from protocol.messages.list_groups import ListGroupsRequest
from protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from protocol.messages.offset_delete import OffsetDeleteRequest
from protocol.messages.offset_fetch import OffsetFetchRequest
from protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse
from tests.group.group_harness import Harness

PARTITIONS = 4
P = 0  # the partition taken over and given up
NOT_COORDINATOR = ErrorCode.NOT_COORDINATOR


def _groups_on(partition: int, n: int) -> list[str]:
    found = [g for g in (f"group-{i}" for i in range(200)) if partition_for(g, PARTITIONS) == partition]
    return found[:n]


A, B = _groups_on(P, 2)
OTHER = _groups_on(1, 1)[0]


def _stable_group(h: Harness, group: str) -> tuple[str, int]:
    """A one-member group, Stable, with an offset committed; (member id, generation)."""
    member, token = h.join_new(group)
    h.run_until(lambda: token in h.mailbox)
    joined = h.take(token)
    _, synced = h.sync(group, member, joined.generation_id, {member: b"assignment"})
    assert synced is not None and synced.error_code == 0
    assert h.commit(group, {("t", 0): 42}, member_id=member, generation=joined.generation_id) == {("t", 0): 0}
    return member, joined.generation_id


def test_load_partition_takes_only_that_partitions_groups() -> None:
    source = Harness(offsets_topic_partitions=PARTITIONS)
    member, generation = _stable_group(source, A)
    _stable_group(source, OTHER)
    assert {r.partition for r in source.records} == {P, 1}
    records = [(r.key, r.value) for r in source.records]  # both partitions' records, as a bad log could hold

    fresh = Harness(offsets_topic_partitions=PARTITIONS)
    fresh.absorb(fresh.coord.load_partition(P, records, now_ms=0))
    assert fresh.coord.partition_group_ids(P) == [A]
    assert fresh.coord.partition_group_ids(1) == []
    committed = fresh.coord.committed_offset(A, "t", 0)
    assert committed is not None and committed.offset == 42
    assert fresh.coord.group(OTHER) is None and fresh.coord.committed_offsets(OTHER) == {}
    group = fresh.coord.group(A)
    assert group is not None and group.generation_id == generation and member in group.members
    # Loading again without unloading first is a programmer error.
    with pytest.raises(AssertionError):
        fresh.coord.load_partition(P, records, now_ms=0)


def test_unload_forgets_the_partitions_groups_offsets_and_timers_only() -> None:
    h = Harness(offsets_topic_partitions=PARTITIONS)
    _stable_group(h, A)
    h.commit(B, {("t", 1): 7})  # a group with offsets only
    other_member, other_generation = _stable_group(h, OTHER)
    assert sorted(h.coord.partition_group_ids(P)) == sorted([A, B])
    records_before = len(h.records)

    result = h.coord.unload_partition(P, now_ms=h.now)
    h.absorb(result)
    assert result.records == [] and result.completions == [] and result.abandoned == []
    assert h.coord.partition_group_ids(P) == []
    assert h.coord.group(A) is None and h.coord.committed_offsets(A) == {} and h.coord.committed_offsets(B) == {}
    assert h.coord.committed_offset(OTHER, "t", 0) is not None
    # A's member never heartbeats again, yet nothing happens to A: its timers are gone. OTHER's
    # member keeps heartbeating and stays.
    h.advance_heartbeating(60_000, OTHER, [other_member], other_generation)
    assert len(h.records) == records_before, h.records[records_before:]
    assert h.coord.group(A) is None


def test_unload_answers_parked_joins_and_syncs_not_coordinator() -> None:
    h = Harness(offsets_topic_partitions=PARTITIONS)
    leader, generation = _stable_group(h, A)
    # A second member joins: the group rebalances, the new member's JoinGroup is parked.
    second, second_token = h.join_new(A, client="second")
    assert second_token not in h.mailbox
    # The leader rejoins; the join phase completes with both; the follower's SyncGroup is parked.
    leader_token, leader_join = h.join(A, leader)
    h.run_until(lambda: leader_token in h.mailbox or leader_join is not None)
    joined = leader_join or h.take(leader_token)
    follower_join = h.take(second_token)
    assert joined.generation_id == follower_join.generation_id == generation + 1
    sync_token, parked_sync = h.sync(A, second, joined.generation_id)
    assert parked_sync is None
    # Meanwhile in group B (same partition), a first member's JoinGroup waits out the initial delay.
    third, third_token = h.join_new(B, client="third", version=5)
    assert third_token not in h.mailbox

    h.absorb(h.coord.unload_partition(P, now_ms=h.now))
    sync_answer = h.take(sync_token)
    assert isinstance(sync_answer, SyncGroupResponse) and sync_answer.error_code == NOT_COORDINATOR
    join_answer = h.take(third_token)
    assert isinstance(join_answer, JoinGroupResponse)
    assert (join_answer.error_code, join_answer.member_id, join_answer.generation_id) == (NOT_COORDINATOR, third, -1)
    assert join_answer.protocol_name == ""  # JoinGroup v5 cannot carry a null protocol name
    assert h.coord.group(A) is None and h.coord.group(B) is None
    assert h.abandoned == []


def test_reload_from_the_records_restores_the_partition() -> None:
    h = Harness(offsets_topic_partitions=PARTITIONS)
    member, generation = _stable_group(h, A)
    h.commit(B, {("t", 3): 9})
    mine = [(r.key, r.value) for r in h.records if r.partition == P]
    h.absorb(h.coord.unload_partition(P, now_ms=h.now))
    h.absorb(h.coord.load_partition(P, mine, now_ms=h.now))
    assert sorted(h.coord.partition_group_ids(P)) == sorted([A, B])
    assert h.heartbeat(A, member, generation) == 0  # the member carries on with its generation
    assert h.fetch(B) == {("t", 3): (9, -1, "", 0)}


# --- broker.group.errors ---------------------------------------------------------------------------


def error_response(request: Any, error: ErrorCode, *, api_version: int) -> Any:
    return _error_response(request, error, api_version=api_version)


def test_append_errors_map_as_kafka_maps_them() -> None:
    for kind in WriteKind:
        for e in (ErrorCode.NOT_ENOUGH_REPLICAS, ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                  ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
            assert append_error(e, kind) is ErrorCode.COORDINATOR_NOT_AVAILABLE
        for e in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
            assert append_error(e, kind) is ErrorCode.NOT_COORDINATOR
        assert append_error(ErrorCode.NONE, kind) is ErrorCode.NONE
    assert append_error(ErrorCode.MESSAGE_TOO_LARGE, WriteKind.OFFSETS) is ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    assert append_error(ErrorCode.RECORD_LIST_TOO_LARGE, WriteKind.GROUP_METADATA) is ErrorCode.UNKNOWN_SERVER_ERROR
    assert append_error(ErrorCode.REQUEST_TIMED_OUT, WriteKind.OFFSETS) is ErrorCode.REQUEST_TIMED_OUT
    assert append_error(ErrorCode.REQUEST_TIMED_OUT, WriteKind.GROUP_METADATA) is ErrorCode.COORDINATOR_NOT_AVAILABLE


def test_error_responses_put_the_code_where_each_api_carries_it() -> None:
    e = ErrorCode.NOT_COORDINATOR
    join = error_response(JoinGroupRequest(group_id="g", member_id="m-1"), e, api_version=9)
    assert (join.error_code, join.member_id, join.generation_id, join.protocol_name) == (e, "m-1", -1, None)
    assert error_response(SyncGroupRequest(group_id="g"), e, api_version=5).error_code == e
    assert error_response(HeartbeatRequest(group_id="g"), e, api_version=4).error_code == e
    leave = error_response(LeaveGroupRequest(group_id="g"), e, api_version=5)
    assert leave.error_code == e and leave.members == []
    commit = error_response(OffsetCommitRequest(group_id="g", topics=[
        OffsetCommitRequest.OffsetCommitRequestTopic("t", [OffsetCommitRequest.OffsetCommitRequestPartition(0),
                                                            OffsetCommitRequest.OffsetCommitRequestPartition(3)])]),
        e, api_version=8)
    assert [(t.name, p.partition_index, p.error_code) for t in commit.topics for p in t.partitions] == [
        ("t", 0, e), ("t", 3, e)]
    # OffsetFetch: per partition (v0-v1), top level (v2-v7), per group (v8+).
    topics = [OffsetFetchRequest.OffsetFetchRequestTopic("t", [1, 2])]
    v1 = error_response(OffsetFetchRequest(group_id="g", topics=topics), e, api_version=1)
    assert [(p.partition_index, p.committed_offset, p.error_code) for t in v1.topics for p in t.partitions] == [
        (1, -1, e), (2, -1, e)]
    v7 = error_response(OffsetFetchRequest(group_id="g", topics=topics), e, api_version=7)
    assert v7.error_code == e and v7.topics == []
    v8 = error_response(OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(group_id="a"),
                                                   OffsetFetchRequest.OffsetFetchRequestGroup(group_id="b")]),
                        e, api_version=8)
    assert [(g.group_id, g.error_code) for g in v8.groups] == [("a", e), ("b", e)]
    assert error_response(OffsetDeleteRequest(group_id="g"), e, api_version=0).error_code == e
    described = error_response(DescribeGroupsRequest(groups=["a", "b"]), e, api_version=5)
    assert [(g.group_id, g.error_code) for g in described.groups] == [("a", e), ("b", e)]
    deleted = error_response(DeleteGroupsRequest(groups_names=["a", "a", "b"]), e, api_version=2)
    assert [(r.group_id, r.error_code) for r in deleted.results] == [("a", e), ("b", e)]
    assert error_response(ListGroupsRequest(), e, api_version=5).error_code == e
    assert error_response(ConsumerGroupHeartbeatRequest(group_id="g"), e, api_version=1).error_code == e
    cg = error_response(ConsumerGroupDescribeRequest(group_ids=["a"]), e, api_version=0)
    assert [(g.group_id, g.error_code) for g in cg.groups] == [("a", e)]


def test_a_failed_commit_keeps_the_partition_errors_the_coordinator_gave() -> None:
    response = OffsetCommitResponse(topics=[OffsetCommitResponse.OffsetCommitResponseTopic("t", [
        OffsetCommitResponse.OffsetCommitResponsePartition(0, ErrorCode.NONE),
        OffsetCommitResponse.OffsetCommitResponsePartition(1, ErrorCode.OFFSET_METADATA_TOO_LARGE)])])
    failed = fail_offset_commit(response, ErrorCode.REQUEST_TIMED_OUT)
    assert [p.error_code for t in failed.topics for p in t.partitions] == [
        ErrorCode.REQUEST_TIMED_OUT, ErrorCode.OFFSET_METADATA_TOO_LARGE]


def test_unload_drops_the_timers_of_the_groups_it_forgets() -> None:
    h = Harness(offsets_topic_partitions=PARTITIONS, offsets_retention_check_interval_ms=600_000)
    _stable_group(h, A)
    expiry_ms = 600_000  # the offset-expiry timer, scheduled by the first call at time 0
    deadline = h.coord.next_deadline_ms()
    assert deadline is not None and deadline < expiry_ms  # A's member session
    h.absorb(h.coord.unload_partition(P, now_ms=h.now))
    assert h.coord.next_deadline_ms() == expiry_ms
