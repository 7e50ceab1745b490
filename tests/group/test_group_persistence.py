"""Goal: what the coordinator persists is enough to rebuild it, and is written when Kafka writes it.

Records go out as effects (key, value-or-tombstone, partition). A fresh coordinator that loads
them in order has the same groups (Stable or Empty, generation, protocol, leader, members with
their assignments and metadata, static ids, state timestamps) and the same offsets; its members
get fresh sessions, and it goes on serving. Kafka writes a group record when a JoinGroup creates
a group, when the leader's SyncGroup completes a generation, when a group becomes Empty, and when
a static member takes a new member id; tombstones on deletion and expiry.
"""

from __future__ import annotations

import struct

import pytest
from group_harness import SESSION_MS, CountingUuids, Harness, subscription

from broker.group import ClassicGroup, GroupCoordinator, GroupCoordinatorConfig, GroupState
from broker.group import records as rec
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError


def load(h: Harness, config: GroupCoordinatorConfig | None = None) -> GroupCoordinator:
    fresh = GroupCoordinator(config or h.config, new_uuid=CountingUuids())
    result = fresh.load([(r.key, r.value) for r in h.records], now_ms=h.now)
    assert result.records == [] and result.completions == []
    return fresh


def snapshot(group: ClassicGroup) -> dict[str, object]:
    name = group.protocol_name
    return {
        "state": group.state,
        "generation": group.generation_id,
        "protocol_type": group.protocol_type,
        "protocol_name": name,
        "leader": group.leader_id,
        "state_timestamp_ms": group.state_timestamp_ms,
        "static": dict(group.static_members),
        "subscribed": group.subscribed_topics,
        "members": {m.member_id: (m.group_instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms,
                                  m.session_timeout_ms, m.assignment, m.metadata(name) if name else None)
                    for m in group.members.values()},
    }


def kinds(h: Harness) -> list[str]:
    out = []
    for r in h.records:
        key = rec.decode_key(r.key)
        kind = "offset" if isinstance(key, rec.OffsetCommitKey) else "group"
        out.append(kind if r.value is not None else kind + "-tombstone")
    return out


def test_round_trip_rebuilds_the_same_state() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group("alpha", 2, instances=["inst-1", None],
                                   protocols=(("range", subscription("orders", "pay")),))
    h.commit("alpha", {("orders", 0): 100, ("pay", 3): (7, "ü-meta")}, member_id=m2, generation=gen,
             leader_epoch=5)
    h.join("alpha", client="c0", instance="inst-1", protocols=(("range", subscription("orders", "pay")),))
    (b1,), _ = h.stable_group("beta", 1)
    h.commit("beta", {("t", 0): 1}, member_id=b1, generation=1)
    h.advance(1_000)
    h.leave("beta", (b1, None))  # beta is Empty now, generation 2
    h.commit("simple", {("s", 0): 5, ("s", 1): 6})
    h.commit("simple", {("s", 2): 7}, retention_ms=3_600_000, version=2)
    h.delete_offsets("simple", {"s": [1]})
    h.commit("doomed", {("d", 0): 1})
    h.delete_groups("doomed")
    h.join("joining", client="x")  # MEMBER_ID_REQUIRED: the group exists, Empty, persisted

    fresh = load(h)
    original = h.coord
    assert sorted(fresh.group_ids()) == sorted(original.group_ids()) == ["alpha", "beta", "joining", "simple"]
    for group_id in ("alpha", "beta", "joining"):
        before, after = original.group(group_id), fresh.group(group_id)
        assert before is not None and after is not None
        assert snapshot(after) == snapshot(before), group_id
    simple = fresh.group("simple")
    assert simple is not None and simple.state is GroupState.EMPTY and simple.protocol_type is None
    for group_id in ("alpha", "beta", "simple", "doomed"):
        assert fresh.committed_offsets(group_id) == original.committed_offsets(group_id), group_id
    with_expiry = fresh.committed_offset("simple", "s", 2)
    assert with_expiry is not None and with_expiry.expire_timestamp_ms == h.now + 3_600_000
    alpha = fresh.group("alpha")
    assert alpha is not None and alpha.state is GroupState.STABLE
    assert alpha.subscribed_topics == frozenset({"orders", "pay"})


def test_loaded_group_keeps_serving() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group("alpha", 2, instances=["inst-1", None])
    fresh = load(h)
    later = Harness()
    later.coord, later.now, later.config = fresh, h.now, h.config
    # Members carry on with the same generation and assignment.
    assert later.heartbeat("alpha", s1, gen, instance="inst-1") == 0
    _, synced = later.sync("alpha", m2, gen)
    assert synced is not None and synced.assignment == b"assign-1"
    # Sessions were started at load time (a SyncGroup in Stable does not renew one): a member
    # that stays silent is removed.
    loaded_at = later.now
    later.advance_heartbeating(SESSION_MS - 1_000, "alpha", [s1], gen)
    group = fresh.group("alpha")
    assert group is not None and m2 in group.members
    later.advance_to(loaded_at + SESSION_MS)
    assert group is not None and list(group.members) == [s1]
    assert group.state is GroupState.PREPARING_REBALANCE
    _, answer = later.join("alpha", s1, instance="inst-1")
    assert answer is not None and answer.generation_id == gen + 1


def test_a_group_mid_rebalance_comes_back_as_its_last_stable_generation() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group("g", 2)
    h.join("g", m1)  # PreparingRebalance: nothing persisted for it
    fresh = load(h)
    group = fresh.group("g")
    assert group is not None
    assert (group.state, group.generation_id, list(group.members)) == (GroupState.STABLE, gen, [m1, m2])


def test_loading_an_oversized_group_starts_a_rebalance() -> None:
    h = Harness()
    h.stable_group("g", 3)
    fresh = load(h, GroupCoordinatorConfig(group_members_max=2))
    group = fresh.group("g")
    assert group is not None and group.state is GroupState.PREPARING_REBALANCE


def test_records_are_written_when_kafka_writes_them() -> None:
    h = Harness()
    m1, t1 = h.join_new("g", client="a")
    assert kinds(h) == ["group"]  # the new group, empty
    h.run_until(lambda: t1 in h.mailbox)
    h.take(t1)
    assert kinds(h) == ["group"]  # CompletingRebalance is not persisted
    h.sync("g", m1, 1, {m1: b"A"})
    assert kinds(h) == ["group", "group"]
    value = rec.decode_value(rec.GroupMetadataKey("g"), h.records[-1].value)
    assert value == rec.GroupMetadataValue(
        protocol_type="consumer", generation=1, protocol="range", leader=m1,
        current_state_timestamp_ms=3_000,
        members=(rec.MemberMetadata(m1, None, "a", "/10.0.0.1", 30_000, 10_000, b"range-meta", b"A"),))
    h.commit("g", {("t", 0): 1}, member_id=m1, generation=1)
    h.leave("g", (m1, None))
    assert kinds(h) == ["group", "group", "offset", "group"]
    empty = rec.decode_value(rec.GroupMetadataKey("g"), h.records[-1].value)
    assert empty == rec.GroupMetadataValue("consumer", 2, None, None, h.now, ())
    assert {r.partition for r in h.records} == {rec.partition_for("g", 50)}


def test_load_skips_other_group_types_and_rejects_corrupt_records() -> None:
    fresh = GroupCoordinator(GroupCoordinatorConfig(), new_uuid=CountingUuids())
    share_group_key = struct.pack(">h", 11) + struct.pack(">h", 1) + b"g"
    offset = (rec.encode_key(rec.OffsetCommitKey("g", "t", 0)),
              rec.encode_value(rec.OffsetCommitValue(4, -1, "", 10)))
    fresh.load([(share_group_key, b"\x00\x00anything"), offset,
                (rec.encode_key(rec.GroupMetadataKey("never-seen")), None)], now_ms=0)
    assert fresh.group_ids() == ["g"]
    assert fresh.committed_offset("g", "t", 0) is not None
    with pytest.raises(ProtocolError):
        fresh.load([(rec.encode_key(rec.GroupMetadataKey("x")), b"\x00\x03\x00")], now_ms=0)
    no_protocol = rec.GroupMetadataValue("consumer", 1, None, "m", 0, (
        rec.MemberMetadata("m", None, "c", "h", 1, 1, b"", b""),))
    with pytest.raises(ProtocolError):
        fresh.load([(rec.encode_key(rec.GroupMetadataKey("x")), rec.encode_value(no_protocol))], now_ms=0)


def test_load_of_old_value_versions() -> None:
    # A v0 group record (no rebalance timeout: the session timeout stands in) and a v1 commit.
    value = rec.GroupMetadataValue("consumer", 3, "range", "m", -1, (
        rec.MemberMetadata("m", None, "c", "/h", -1, 9_000, b"meta", b"asg"),))
    commit = rec.OffsetCommitValue(11, -1, "x", 5, 500)
    fresh = GroupCoordinator(GroupCoordinatorConfig(), new_uuid=CountingUuids())
    fresh.load([(rec.encode_key(rec.GroupMetadataKey("g")), rec.encode_value(value, 0)),
                (rec.encode_key(rec.OffsetCommitKey("g", "t", 1)), rec.encode_value(commit, 1))], now_ms=100)
    group = fresh.group("g")
    assert group is not None
    assert (group.state, group.generation_id, group.state_timestamp_ms) == (GroupState.STABLE, 3, None)
    assert group.members["m"].rebalance_timeout_ms == 9_000
    entry = fresh.committed_offset("g", "t", 1)
    assert entry is not None and (entry.offset, entry.metadata, entry.expire_timestamp_ms) == (11, "x", 500)
    # The loaded member works; the unknown one does not.
    h = Harness()
    h.coord = fresh
    h.now = 100
    assert h.heartbeat("g", "m", 3) == 0
    assert h.heartbeat("g", "other", 3) == ErrorCode.UNKNOWN_MEMBER_ID


def test_config_from_the_broker_config() -> None:
    from broker.config import from_properties

    config = GroupCoordinatorConfig.from_broker_config(from_properties({
        "group.initial.rebalance.delay.ms": "0", "group.max.size": "7", "offsets.retention.minutes": "2",
        "offsets.topic.num.partitions": "3", "offset.metadata.max.bytes": "10"}))
    assert config == GroupCoordinatorConfig(
        initial_rebalance_delay_ms=0, group_members_max=7, offsets_retention_ms=120_000,
        offsets_topic_partitions=3, offset_metadata_chars_max=10)
    assert GroupCoordinatorConfig.from_broker_config(from_properties({})) == GroupCoordinatorConfig()
