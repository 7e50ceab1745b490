"""Goal: static membership (KIP-345) behaves as in Kafka.

A static member (``group.instance.id``) that restarts rejoins with an empty member id; it gets a
new member id and takes over its old place without a rebalance when the group is Stable and the
chosen protocol would not change, and with one otherwise. Every request still carrying the old
member id with the instance id is answered FENCED_INSTANCE_ID, and requests parked under it are
fenced at once. Static members that do not rejoin stay through a rebalance.
"""

from __future__ import annotations

from group_harness import REBALANCE_MS, Harness

from broker.group import GroupState
from broker.group import records as rec
from protocol.error_codes import ErrorCode

G = "static-group"


def test_static_member_restart_without_rebalance() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group(G, 2, instances=["inst-1", None])
    assert s1.startswith("inst-1-")  # static member ids start with the instance id
    h.records.clear()
    _, answer = h.join(G, client="c0", instance="inst-1")
    assert answer is not None
    new_id = answer.member_id
    assert new_id != s1 and new_id.startswith("inst-1-")
    # v9: the (static) leader learns that it leads, and that it may skip the assignor.
    assert (answer.error_code, answer.generation_id, answer.leader, answer.skip_assignment) == (0, gen, new_id, True)
    assert [m.member_id for m in answer.members] == [m2, new_id]
    group = h.coord.group(G)
    assert group is not None
    assert group.state is GroupState.STABLE and group.generation_id == gen
    assert group.static_members == {"inst-1": new_id}
    assert group.members[new_id].assignment == b"assign-0"  # kept from the old member id
    # The new member id is persisted: one group metadata record naming it.
    assert len(h.records) == 1
    value = rec.decode_value(rec.GroupMetadataKey(G), h.records[0].value)
    assert isinstance(value, rec.GroupMetadataValue)
    assert [m.member_id for m in value.members] == [m2, new_id]
    assert [m.assignment for m in value.members] == [b"assign-1", b"assign-0"]

    # The old id is fenced everywhere it shows up with the instance id.
    assert h.heartbeat(G, s1, gen, instance="inst-1") == ErrorCode.FENCED_INSTANCE_ID
    assert h.heartbeat(G, s1, gen) == ErrorCode.UNKNOWN_MEMBER_ID  # without it, simply unknown
    _, sync = h.sync(G, s1, gen, instance="inst-1")
    assert sync is not None and sync.error_code == ErrorCode.FENCED_INSTANCE_ID
    _, join = h.join(G, s1, instance="inst-1")
    assert join is not None and join.error_code == ErrorCode.FENCED_INSTANCE_ID
    assert h.commit(G, {("t", 0): 1}, member_id=s1, generation=gen, instance="inst-1") == {
        ("t", 0): ErrorCode.FENCED_INSTANCE_ID}
    leave = h.leave(G, (s1, "inst-1"))
    assert leave.members[0].error_code == ErrorCode.FENCED_INSTANCE_ID
    # The new id works, and the follower never noticed.
    assert h.heartbeat(G, new_id, gen, instance="inst-1") == 0
    _, synced = h.sync(G, new_id, gen, instance="inst-1")
    assert synced is not None and synced.assignment == b"assign-0"
    assert h.heartbeat(G, m2, gen) == 0


def test_static_leader_restart_before_v9_names_the_old_leader() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group(G, 2, instances=["inst-1", None])
    _, answer = h.join(G, client="c0", instance="inst-1", version=8)
    assert answer is not None
    # Older clients would run the assignor if told they lead; the old id keeps them from it.
    assert (answer.leader, answer.members, answer.skip_assignment) == (s1, [], False)
    group = h.coord.group(G)
    assert group is not None and group.leader_id == answer.member_id


def test_static_follower_restart() -> None:
    h = Harness()
    (m1, s2), gen = h.stable_group(G, 2, instances=[None, "inst-2"])
    _, answer = h.join(G, client="c1", instance="inst-2")
    assert answer is not None
    assert (answer.leader, answer.members, answer.skip_assignment) == (m1, [], False)
    assert h.coord.group(G).state is GroupState.STABLE  # type: ignore[union-attr]


def test_static_rejoin_that_changes_the_protocol_rebalances() -> None:
    h = Harness()
    both = (("range", b"r"), ("roundrobin", b"rr"))
    (s1, m2), gen = h.stable_group(G, 2, instances=["inst-1", None], protocols=both)
    token, answer = h.join(G, client="c0", instance="inst-1", protocols=(("roundrobin", b"rr"),))
    assert answer is None  # parked: the group must rebalance to switch protocols
    group = h.coord.group(G)
    assert group is not None and group.state is GroupState.PREPARING_REBALANCE
    assert h.heartbeat(G, m2, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    _, last = h.join(G, m2, protocols=both)
    assert last is not None and last.protocol_name == "roundrobin"
    assert h.take(token).generation_id == gen + 1


def test_static_rejoin_during_completing_rebalance_fences_the_old_sync_and_rebalances() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    t2, _ = h.join(G, client="b", instance="inst-2")
    h.run_until(lambda: t2 in h.mailbox)
    assert h.take(t1).leader == m1
    s2 = h.take(t2).member_id
    old_sync, parked = h.sync(G, s2, 1, instance="inst-2")
    assert parked is None  # waits for the leader
    # inst-2 restarts while the group waits for the leader's assignment.
    t_new, answer = h.join(G, client="b", instance="inst-2")
    assert answer is None
    fenced = h.take(old_sync)
    assert (fenced.error_code, fenced.assignment, fenced.protocol_name) == (ErrorCode.FENCED_INSTANCE_ID, b"", None)
    group = h.coord.group(G)
    assert group is not None and group.state is GroupState.PREPARING_REBALANCE
    _, leader_sync = h.sync(G, m1, 1, {m1: b"A", s2: b"B"})
    assert leader_sync is not None and leader_sync.error_code == ErrorCode.REBALANCE_IN_PROGRESS
    _, last = h.join(G, m1)
    assert last is not None and last.generation_id == 2
    new_answer = h.take(t_new)
    assert new_answer.generation_id == 2 and new_answer.member_id != s2


def test_parked_join_of_the_old_id_is_fenced() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group(G, 2, instances=["inst-1", None])
    h.join(G, m2)  # the follower changes nothing, so rejoin the leader to start a rebalance:
    old_join, parked = h.join(G, s1, instance="inst-1")
    assert parked is None
    # A second instance of inst-1 appears with an empty member id: it replaces the first.
    new_join, _ = h.join(G, client="c0", instance="inst-1")
    fenced = h.take(old_join)
    assert (fenced.error_code, fenced.member_id) == (ErrorCode.FENCED_INSTANCE_ID, s1)
    _, last = h.join(G, m2)
    assert last is not None and last.generation_id == gen + 1
    assert h.take(new_join).member_id != s1


def test_static_members_survive_a_rebalance_they_miss() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group(G, 2, instances=["inst-1", None])
    t2, _ = h.join(G, m2, protocols=(("range", b"changed"),))  # a rebalance without s1
    started = h.now
    while h.now + 3_000 < started + REBALANCE_MS:
        h.advance(3_000)
        assert h.heartbeat(G, s1, gen, instance="inst-1") == ErrorCode.REBALANCE_IN_PROGRESS
    h.advance_to(started + REBALANCE_MS)
    answer = h.take(t2)
    # s1 did not rejoin but, being static, stays a member; m2 leads the new generation.
    assert answer.generation_id == gen + 1
    assert answer.leader == m2
    assert sorted(m.member_id for m in answer.members) == sorted([s1, m2])


def test_static_member_with_pending_member_id_is_refused() -> None:
    h = Harness()
    (m1,), _ = h.stable_group(G, 1)
    _, first = h.join(G, client="x")
    assert first is not None
    _, bad = h.join(G, first.member_id, instance="inst-9")
    assert bad is not None and bad.error_code == ErrorCode.UNKNOWN_SERVER_ERROR


def test_leave_by_instance_id_of_a_static_member() -> None:
    h = Harness()
    (s1, m2), gen = h.stable_group(G, 2, instances=["inst-1", None])
    response = h.leave(G, ("", "inst-1"))
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in response.members] == [("", "inst-1", 0)]
    group = h.coord.group(G)
    assert group is not None and list(group.members) == [m2] and group.leader_id == m2


def test_a_rebalance_nobody_rejoins_waits_for_static_members() -> None:
    h = Harness()
    (s1, s2, m3), gen = h.stable_group(G, 3, instances=["inst-1", "inst-2", None])
    h.leave(G, (m3, None))
    started = h.now
    # Nobody rejoins: at the rebalance timeout the static members stay and the phase is extended.
    while h.now + 2_000 <= started + REBALANCE_MS:
        h.advance(2_000)
        assert h.heartbeat(G, s1, gen, instance="inst-1") == ErrorCode.REBALANCE_IN_PROGRESS
        assert h.heartbeat(G, s2, gen, instance="inst-2") == ErrorCode.REBALANCE_IN_PROGRESS
    h.advance_to(started + REBALANCE_MS)
    group = h.coord.group(G)
    assert group is not None and group.state is GroupState.PREPARING_REBALANCE
    assert sorted(group.members) == sorted([s1, s2])
    t1, parked = h.join(G, s1, instance="inst-1")
    assert parked is None  # s2 has not rejoined, and s1 waits for the extended phase to end
    while h.now + 2_000 < started + 2 * REBALANCE_MS:
        h.advance(2_000)
        assert h.heartbeat(G, s2, gen, instance="inst-2") == ErrorCode.REBALANCE_IN_PROGRESS
    assert t1 not in h.mailbox
    h.advance_to(started + 2 * REBALANCE_MS)
    answer = h.take(t1)
    assert (answer.generation_id, answer.leader) == (gen + 1, s1)
    assert sorted(m.member_id for m in answer.members) == sorted([s1, s2])
