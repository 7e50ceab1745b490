"""Goal: committed offsets follow Kafka's rules: who may commit when, what comes back, when they expire.

OffsetCommit: standalone commits (generation -1, no member id) only while the group has no
members; member and generation checks otherwise; REBALANCE_IN_PROGRESS in CompletingRebalance but
not in PreparingRebalance; metadata kept exactly, and limited in UTF-16 units like Java's
``String.length()``. OffsetFetch: unknown partitions answer -1, null topics mean all,
``require_stable`` and pending transactional offsets, the v1/v7/v8 shapes. Expiry
(``offsets.retention.minutes``, Kafka 2.1+): an Empty group's offsets from when it became
Empty, a standalone group's from their commit, a Stable consumer group's only for topics it no
longer subscribes to. OffsetDelete, DeleteGroups, DescribeGroups and ListGroups.
"""

from __future__ import annotations

from group_harness import Harness, subscription

from broker.group import GROUP_OPERATIONS_KAFKA_3, GroupState
from broker.group import records as rec
from protocol.error_codes import ErrorCode
from protocol.messages.describe_groups import DescribeGroupsRequest
from protocol.messages.offset_fetch import OffsetFetchRequest

G = "offsets-group"
MINUTE = 60_000


def decoded(h: Harness) -> list[tuple[rec.RecordKey, rec.RecordValue | None]]:
    out = []
    for r in h.records:
        key = rec.decode_key(r.key)
        out.append((key, rec.decode_value(key, r.value)))
    return out


# --- OffsetCommit --------------------------------------------------------------------------------


def test_standalone_commit_creates_a_group_and_fetch_reads_it_back() -> None:
    h = Harness()
    h.now = 5_000
    assert h.commit(G, {("t", 0): 10, ("t", 1): (11, "meta"), ("u", 0): 12}) == {
        ("t", 0): 0, ("t", 1): 0, ("u", 0): 0}
    group = h.coord.group(G)
    assert group is not None and group.state is GroupState.EMPTY and group.protocol_type is None
    assert h.fetch(G, {"t": [0, 1, 2], "v": [0]}) == {
        ("t", 0): (10, -1, "", 0),
        ("t", 1): (11, -1, "meta", 0),
        ("t", 2): (-1, -1, "", 0),  # nothing committed
        ("v", 0): (-1, -1, "", 0),
    }
    assert h.fetch(G) == {("t", 0): (10, -1, "", 0), ("t", 1): (11, -1, "meta", 0), ("u", 0): (12, -1, "", 0)}
    assert h.fetch("no-such-group", {"t": [0]}) == {("t", 0): (-1, -1, "", 0)}
    assert h.fetch("no-such-group") == {}
    # Each commit is one record, keyed to the group's partition, in Kafka's v3 value format.
    records = decoded(h)
    assert [k for k, _ in records] == [rec.OffsetCommitKey(G, "t", 0), rec.OffsetCommitKey(G, "t", 1),
                                       rec.OffsetCommitKey(G, "u", 0)]
    assert records[1][1] == rec.OffsetCommitValue(11, -1, "meta", 5_000, -1)
    assert {r.partition for r in h.records} == {rec.partition_for(G, 50)}
    assert all(r.value is not None and r.value[:2] == b"\x00\x03" for r in h.records)


def test_commit_keeps_leader_epoch_and_metadata_exactly() -> None:
    h = Harness()
    weird = "  trailing space, ünïcödé, 😀 and a \x00 "
    h.commit(G, {("t", 0): (7, weird)}, leader_epoch=4)
    h.commit(G, {("t", 1): (8, None)})  # null metadata is stored as ""
    assert h.fetch(G, {"t": [0, 1]}) == {("t", 0): (7, 4, weird, 0), ("t", 1): (8, -1, "", 0)}


def test_metadata_limit_counts_utf16_units() -> None:
    h = Harness(offset_metadata_chars_max=4)
    result = h.commit(G, {("t", 0): (1, "abcd"), ("t", 1): (1, "abcde"), ("t", 2): (1, "éééé"),
                          ("t", 3): (1, "😀😀"), ("t", 4): (1, "😀😀a")})
    assert result == {("t", 0): 0, ("t", 1): ErrorCode.OFFSET_METADATA_TOO_LARGE, ("t", 2): 0, ("t", 3): 0,
                      ("t", 4): ErrorCode.OFFSET_METADATA_TOO_LARGE}
    assert sorted(p for (_, p) in h.fetch(G)) == [0, 2, 3]


def test_commit_v1_timestamp_and_retention_time() -> None:
    h = Harness()
    h.now = 1_000
    h.commit(G, {("t", 0): 5}, retention_ms=MINUTE, version=2)
    key, value = decoded(h)[-1]
    # An explicit retention writes value version 1 with the expire timestamp.
    assert h.records[-1].value is not None and h.records[-1].value[:2] == b"\x00\x01"
    assert value == rec.OffsetCommitValue(5, -1, "", 1_000, 61_000)
    committed = h.coord.committed_offset(G, "t", 0)
    assert committed is not None and committed.expire_timestamp_ms == 61_000


def test_commits_by_members_and_during_a_rebalance() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2)
    assert h.commit(G, {("t", 0): 1}, member_id=m1, generation=gen) == {("t", 0): 0}
    # Without member id and generation, only a group without members takes commits.
    assert h.commit(G, {("t", 0): 2}) == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    assert h.commit(G, {("t", 0): 2}, member_id="stranger", generation=gen) == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    assert h.commit(G, {("t", 0): 2}, member_id=m1, generation=gen + 1) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    assert h.commit(G, {("t", 0): 2}, member_id=m1, generation=-1) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}

    _, t3 = h.join_new(G, client="new")  # PreparingRebalance
    # Still the old generation: commits go through (the heartbeat will tell them to rejoin).
    assert h.commit(G, {("t", 0): 3}, member_id=m1, generation=gen) == {("t", 0): 0}
    h.join(G, m1)
    _, last = h.join(G, m2)
    assert last is not None and last.generation_id == gen + 1
    # CompletingRebalance: the new generation has no assignment yet.
    assert h.commit(G, {("t", 0): 4}, member_id=m1, generation=gen + 1) == {("t", 0): ErrorCode.REBALANCE_IN_PROGRESS}
    assert h.commit(G, {("t", 0): 4}, member_id=m1, generation=gen) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    assert h.fetch(G, {"t": [0]})[("t", 0)][0] == 3


def test_commit_counts_as_a_heartbeat() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1)
    for _ in range(10):
        h.advance(5_000)
        assert h.commit(G, {("t", 0): 1}, member_id=m1, generation=gen) == {("t", 0): 0}
    assert h.heartbeat(G, m1, gen) == 0


def test_commit_to_an_unknown_group_with_a_generation() -> None:
    h = Harness()
    assert h.commit(G, {("t", 0): 1}, member_id="m", generation=3) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    assert h.commit(G, {("t", 0): 1}, member_id="m", generation=3, version=9) == {
        ("t", 0): ErrorCode.GROUP_ID_NOT_FOUND}
    assert h.coord.group(G) is None


# --- OffsetFetch ---------------------------------------------------------------------------------


def test_require_stable_and_pending_transactional_offsets() -> None:
    h = Harness()
    h.commit(G, {("t", 0): 1, ("t", 1): 2})
    h.coord.pending_transactional_offsets.add((G, "t", 1))
    assert h.fetch(G, {"t": [0, 1]}) == {("t", 0): (1, -1, "", 0), ("t", 1): (2, -1, "", 0)}
    assert h.fetch(G, {"t": [0, 1]}, require_stable=True) == {
        ("t", 0): (1, -1, "", 0), ("t", 1): (-1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)}
    assert h.fetch(G, None, require_stable=True)[("t", 1)][3] == ErrorCode.UNSTABLE_OFFSET_COMMIT


def test_offset_fetch_request_shapes() -> None:
    h = Harness()
    h.commit(G, {("t", 0): 7}, leader_epoch=2)
    h.commit("other", {("u", 3): 9})
    v1 = h.offset_fetch(OffsetFetchRequest(group_id=G, topics=[
        OffsetFetchRequest.OffsetFetchRequestTopic("t", [0, 1])]), 1)
    assert [(t.name, [(p.partition_index, p.committed_offset, p.error_code) for p in t.partitions])
            for t in v1.topics] == [("t", [(0, 7, 0), (1, -1, 0)])]
    v1.encode(1)
    v7 = h.offset_fetch(OffsetFetchRequest(group_id=G, topics=None, require_stable=True), 7)
    assert [(t.name, [(p.partition_index, p.committed_offset, p.committed_leader_epoch) for p in t.partitions])
            for t in v7.topics] == [("t", [(0, 7, 2)])]
    v7.encode(7)
    v8 = h.offset_fetch(OffsetFetchRequest(groups=[
        OffsetFetchRequest.OffsetFetchRequestGroup(group_id=G, topics=None),
        OffsetFetchRequest.OffsetFetchRequestGroup(group_id="other", topics=[
            OffsetFetchRequest.OffsetFetchRequestTopics("u", [3])]),
        OffsetFetchRequest.OffsetFetchRequestGroup(group_id="missing", topics=None),
    ]), 8)
    assert [(g.group_id, g.error_code, [(t.name, [p.committed_offset for p in t.partitions]) for t in g.topics])
            for g in v8.groups] == [(G, 0, [("t", [7])]), ("other", 0, [("u", [9])]), ("missing", 0, [])]
    v8.encode(8)


# --- expiry --------------------------------------------------------------------------------------


def test_standalone_offsets_expire_from_their_commit_then_the_group_goes() -> None:
    h = Harness(offsets_retention_ms=60 * MINUTE, offsets_retention_check_interval_ms=10 * MINUTE)
    h.commit(G, {("t", 0): 1})
    h.advance(30 * MINUTE)
    h.commit(G, {("t", 1): 2})
    h.records.clear()
    h.advance_to(60 * MINUTE)  # the check at 60 min: t-0 is 60 min old, t-1 30 min
    assert h.fetch(G) == {("t", 1): (2, -1, "", 0)}
    assert decoded(h) == [(rec.OffsetCommitKey(G, "t", 0), None)]
    h.advance_to(90 * MINUTE)
    assert h.fetch(G) == {}
    # With its last offset gone the empty group is deleted too.
    assert decoded(h)[-2:] == [(rec.OffsetCommitKey(G, "t", 1), None), (rec.GroupMetadataKey(G), None)]
    assert h.coord.group(G) is None


def test_empty_consumer_group_offsets_expire_from_when_it_became_empty() -> None:
    h = Harness(offsets_retention_ms=60 * MINUTE, offsets_retention_check_interval_ms=10 * MINUTE)
    (m1,), gen = h.stable_group(G, 1)
    h.commit(G, {("t", 0): 1}, member_id=m1, generation=gen)
    h.advance(5 * MINUTE)
    h.leave(G, (m1, None))
    emptied_at = h.now
    group = h.coord.group(G)
    assert group is not None and group.state is GroupState.EMPTY and group.state_timestamp_ms == emptied_at
    # A later standalone commit does not move the clock: the group has been empty since emptied_at.
    h.advance(40 * MINUTE)
    h.commit(G, {("t", 1): 2})
    h.run_until(lambda: h.coord.group(G) is None)
    # Both expired at the first check at or after emptied_at + 60 min, and the group with them.
    assert emptied_at + 60 * MINUTE <= h.now < emptied_at + 70 * MINUTE


def test_stable_consumer_group_keeps_offsets_of_subscribed_topics() -> None:
    h = Harness(offsets_retention_ms=60 * MINUTE, offsets_retention_check_interval_ms=10 * MINUTE)
    (m1,), gen = h.stable_group(G, 1, protocols=(("range", subscription("orders")),))
    group = h.coord.group(G)
    assert group is not None and group.subscribed_topics == frozenset({"orders"})
    h.commit(G, {("orders", 0): 1, ("old-topic", 0): 2}, member_id=m1, generation=gen)
    h.advance_heartbeating(80 * MINUTE, G, [m1], gen)
    assert h.fetch(G) == {("orders", 0): (1, -1, "", 0)}


def test_offsets_of_groups_with_unknown_subscriptions_do_not_expire_while_active() -> None:
    h = Harness(offsets_retention_ms=60 * MINUTE, offsets_retention_check_interval_ms=10 * MINUTE)
    (m1,), gen = h.stable_group(G, 1, protocol_type="connect")
    h.commit(G, {("t", 0): 1}, member_id=m1, generation=gen, retention_ms=MINUTE, version=2)
    h.advance_heartbeating(80 * MINUTE, G, [m1], gen)
    assert h.fetch(G) == {("t", 0): (1, -1, "", 0)}


def test_explicit_expire_timestamp_wins_for_empty_groups() -> None:
    h = Harness(offsets_retention_ms=600 * MINUTE, offsets_retention_check_interval_ms=MINUTE)
    h.commit(G, {("t", 0): 1}, retention_ms=5 * MINUTE, version=2)
    h.commit(G, {("t", 1): 1})
    h.advance_to(4 * MINUTE)
    assert len(h.fetch(G)) == 2
    h.advance_to(5 * MINUTE)
    assert h.fetch(G) == {("t", 1): (1, -1, "", 0)}


def test_pending_transactional_offsets_hold_off_expiry() -> None:
    h = Harness(offsets_retention_ms=MINUTE, offsets_retention_check_interval_ms=MINUTE)
    h.commit(G, {("t", 0): 1})
    h.coord.pending_transactional_offsets.add((G, "t", 0))
    h.advance(5 * MINUTE)
    assert h.fetch(G) == {("t", 0): (1, -1, "", 0)}
    h.coord.pending_transactional_offsets.clear()
    h.advance(MINUTE)
    assert h.coord.group(G) is None


# --- OffsetDelete --------------------------------------------------------------------------------


def test_offset_delete() -> None:
    h = Harness()
    response = h.delete_offsets(G, {"t": [0]})
    assert response.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    assert h.delete_offsets("", {"t": [0]}).error_code == ErrorCode.INVALID_GROUP_ID
    h.commit(G, {("t", 0): 1, ("t", 1): 2})
    h.records.clear()
    response = h.delete_offsets(G, {"t": [0, 5]})
    assert response.error_code == 0
    assert [(t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in response.topics] == [
        ("t", [(0, 0), (5, 0)])]
    assert decoded(h) == [(rec.OffsetCommitKey(G, "t", 0), None)]  # only what existed
    assert h.fetch(G) == {("t", 1): (2, -1, "", 0)}


def test_offset_delete_refuses_subscribed_topics_of_active_consumers() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1, protocols=(("range", subscription("orders")),))
    h.commit(G, {("orders", 0): 1, ("old", 0): 2}, member_id=m1, generation=gen)
    response = h.delete_offsets(G, {"orders": [0], "old": [0]})
    assert response.error_code == 0
    assert [(t.name, [p.error_code for p in t.partitions]) for t in response.topics] == [
        ("orders", [ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC]), ("old", [0])]
    assert h.fetch(G) == {("orders", 0): (1, -1, "", 0)}
    # A non-consumer protocol group with members refuses altogether.
    (c1,), cgen = h.stable_group("connect-group", 1, protocol_type="connect")
    h.commit("connect-group", {("x", 0): 1}, member_id=c1, generation=cgen)
    assert h.delete_offsets("connect-group", {"x": [0]}).error_code == ErrorCode.NON_EMPTY_GROUP


# --- DeleteGroups, DescribeGroups, ListGroups ----------------------------------------------------


def test_delete_groups() -> None:
    h = Harness()
    (m1,), _ = h.stable_group("busy", 1)
    h.commit("idle", {("t", 0): 1, ("u", 2): 3})
    h.records.clear()
    response = h.delete_groups("idle", "busy", "ghost", "idle")
    assert [(r.group_id, r.error_code) for r in response.results] == [
        ("idle", 0), ("busy", ErrorCode.NON_EMPTY_GROUP), ("ghost", ErrorCode.GROUP_ID_NOT_FOUND)]
    assert decoded(h) == [(rec.OffsetCommitKey("idle", "t", 0), None), (rec.OffsetCommitKey("idle", "u", 2), None),
                          (rec.GroupMetadataKey("idle"), None)]
    assert h.coord.group("idle") is None and h.fetch("idle") == {}
    assert h.delete_groups("idle").results[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_describe_groups() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2, instances=[None, "inst"], assignments={0: b"a0", 1: b"a1"})
    h.commit("simple", {("t", 0): 1})
    response = h.describe(G, "simple", "ghost")
    stable, simple, ghost = response.groups
    assert (stable.error_code, stable.group_state, stable.protocol_type, stable.protocol_data) == (
        0, "Stable", "consumer", "range")
    assert [(m.member_id, m.group_instance_id, m.client_id, m.client_host, m.member_metadata, m.member_assignment)
            for m in stable.members] == [
        (m1, None, "c0", "/10.0.0.1", b"range-meta", b"a0"),
        (m2, "inst", "c1", "/10.0.0.1", b"range-meta", b"a1")]
    assert (simple.group_state, simple.protocol_type, simple.members) == ("Empty", "", [])
    assert (ghost.error_code, ghost.group_state, ghost.protocol_type) == (0, "Dead", "")
    assert stable.authorized_operations == -(2**31)  # not asked for
    response.encode(5)
    # Outside Stable (Kafka's summaryNoMetadata): no protocol, no member metadata, no assignment.
    h.join(G, m1)
    preparing = h.describe(G).groups[0]
    assert (preparing.group_state, preparing.protocol_data) == ("PreparingRebalance", "")
    assert [m.member_metadata for m in preparing.members] == [b"", b""]
    assert [m.member_assignment for m in preparing.members] == [b"", b""]
    _, last = h.join(G, m2, instance="inst")
    assert last is not None and last.generation_id == gen + 1
    assert h.describe(G).groups[0].group_state == "CompletingRebalance"


def test_describe_groups_authorized_operations() -> None:
    h = Harness()
    h.commit(G, {("t", 0): 1})
    # No authorizer: every operation a group supports (READ 3, DELETE 6, DESCRIBE 8).
    assert GROUP_OPERATIONS_KAFKA_3 == (1 << 3) | (1 << 6) | (1 << 8) == 328
    assert [g.authorized_operations for g in h.describe(G, "ghost", include_ops=True).groups] == [328, 328]
    assert h.describe(G, version=2, include_ops=True).groups[0].authorized_operations == -(2**31)
    custom = h.absorb(h.coord.describe_groups(
        DescribeGroupsRequest(groups=[G], include_authorized_operations=True),
        api_version=5, now_ms=h.now, authorized_operations=lambda group_id: 1 << 8))
    assert custom.groups[0].authorized_operations == 256


def test_list_groups_with_filters() -> None:
    h = Harness()
    h.stable_group("stable", 1)
    h.commit("simple", {("t", 0): 1})
    h.join_new("joining")
    listed = h.list_groups()
    assert sorted((g.group_id, g.protocol_type, g.group_state, g.group_type) for g in listed.groups) == [
        ("joining", "consumer", "PreparingRebalance", "classic"),
        ("simple", "", "Empty", "classic"),
        ("stable", "consumer", "Stable", "classic"),
    ]
    assert [g.group_id for g in h.list_groups(states=[" STABLE ", "empty"]).groups] == ["stable", "simple"]
    assert len(h.list_groups(types=["Classic"]).groups) == 3
    assert h.list_groups(types=["consumer"]).groups == []
    assert h.list_groups(types=["nonsense"]).groups == []
    listed.encode(5)


def test_empty_groups_without_offsets_are_deleted_at_the_next_check() -> None:
    h = Harness(offsets_retention_check_interval_ms=10 * MINUTE)
    _, first = h.join(G)
    assert first is not None and first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    h.records.clear()
    h.advance(10 * MINUTE)
    assert h.coord.group(G) is None
    assert decoded(h) == [(rec.GroupMetadataKey(G), None)]
    _, late = h.join(G, first.member_id)
    assert late is not None and late.error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_empty_group_without_a_state_timestamp_expires_from_the_commit() -> None:
    h = Harness(offsets_retention_ms=60 * MINUTE, offsets_retention_check_interval_ms=10 * MINUTE)
    # A group record from before Kafka 2.1 (value v1) has no state timestamp.
    old = rec.GroupMetadataValue("consumer", 4, None, None, -1, ())
    h.coord.load([(rec.encode_key(rec.GroupMetadataKey(G)), rec.encode_value(old, 1)),
                  (rec.encode_key(rec.OffsetCommitKey(G, "t", 0)),
                   rec.encode_value(rec.OffsetCommitValue(1, -1, "", 30 * MINUTE)))], now_ms=0)
    group = h.coord.group(G)
    assert group is not None and group.state_timestamp_ms is None
    h.advance_to(80 * MINUTE)
    assert h.fetch(G) == {("t", 0): (1, -1, "", 0)}
    h.advance_to(90 * MINUTE)
    assert h.coord.group(G) is None
