"""Goal: the classic rebalance protocol answers exactly as Kafka's coordinator does, step by step.

JoinGroup/SyncGroup happy paths for one, two and three members; the KIP-394 member-id round;
protocol selection and leader election; the initial rebalance delay and its extension; rebalances
on join, leave, session expiry, rebalance timeout and sync timeout; joins during
CompletingRebalance; the leader leaving before SyncGroup; empty assignments; and the error each
request gets at each step. Time is a plain int advanced by the tests.
"""

from __future__ import annotations

import pytest
from group_harness import RANGE, REBALANCE_MS, SESSION_MS, Harness

from broker.group import GroupState
from protocol.error_codes import ErrorCode

G = "group-1"


def state(h: Harness, group: str = G) -> GroupState:
    g = h.coord.group(group)
    assert g is not None
    return g.state


# --- happy paths ---------------------------------------------------------------------------------


def test_single_member_join_sync_heartbeat() -> None:
    h = Harness()
    _, first = h.join(G, client="app")
    assert first is not None
    assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    assert first.member_id == "app-00000000-0000-4000-8000-000000000001"
    assert first.generation_id == -1
    assert state(h) is GroupState.EMPTY  # a pending member id does not start a rebalance

    token, parked = h.join(G, first.member_id, client="app")
    assert parked is None
    assert state(h) is GroupState.PREPARING_REBALANCE
    assert h.coord.next_deadline_ms() == 3_000  # group.initial.rebalance.delay.ms

    h.advance(2_999)
    assert token not in h.mailbox
    h.advance(1)
    joined = h.take(token)
    assert joined.error_code == 0
    assert joined.generation_id == 1
    assert joined.protocol_type == "consumer"
    assert joined.protocol_name == "range"
    assert joined.leader == first.member_id
    assert joined.member_id == first.member_id
    assert [(m.member_id, m.group_instance_id, m.metadata) for m in joined.members] == [
        (first.member_id, None, b"range-meta")]
    assert state(h) is GroupState.COMPLETING_REBALANCE

    _, synced = h.sync(G, first.member_id, 1, {first.member_id: b"partitions"})
    assert synced is not None
    assert (synced.error_code, synced.assignment) == (0, b"partitions")
    assert (synced.protocol_type, synced.protocol_name) == ("consumer", "range")
    assert state(h) is GroupState.STABLE
    assert h.heartbeat(G, first.member_id, 1) == 0


def test_two_members_follower_waits_for_the_leader() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t1 in h.mailbox and t2 in h.mailbox)
    r1, r2 = h.take(t1), h.take(t2)
    assert r1.leader == r2.leader == m1
    assert [m.member_id for m in r1.members] == [m1, m2]
    assert r2.members == []  # only the leader sees the members
    assert r1.generation_id == r2.generation_id == 1

    follower, parked = h.sync(G, m2, 1)
    assert parked is None  # waits for the leader's assignment
    _, leader = h.sync(G, m1, 1, {m1: b"p0", m2: b"p1"})
    assert leader is not None and leader.assignment == b"p0"
    answer = h.take(follower)
    assert (answer.error_code, answer.assignment, answer.protocol_name) == (0, b"p1", "range")
    assert state(h) is GroupState.STABLE
    # A member that syncs again in Stable gets its assignment straight away.
    _, again = h.sync(G, m2, 1)
    assert again is not None and again.assignment == b"p1"


def test_three_members_and_the_initial_delay_extension() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    h.advance(1_000)
    m2, t2 = h.join_new(G, client="b")
    h.advance(1_000)
    m3, t3 = h.join_new(G, client="c")
    # At 3 s the delay runs out, but members arrived during it: wait another 3 s.
    h.advance_to(3_000)
    assert not ({t1, t2, t3} & h.mailbox.keys())
    assert h.coord.next_deadline_ms() == 6_000
    h.advance_to(6_000)
    answers = [h.take(t) for t in (t1, t2, t3)]
    assert {a.generation_id for a in answers} == {1}
    assert [len(a.members) for a in answers] == [3, 0, 0]
    assert answers[0].leader == m1

    tokens = [h.sync(G, m, 1)[0] for m in (m2, m3)]
    _, leader = h.sync(G, m1, 1, {m1: b"A", m2: b"B", m3: b"C"})
    assert leader is not None and leader.assignment == b"A"
    assert [h.take(t).assignment for t in tokens] == [b"B", b"C"]
    assert [h.heartbeat(G, m, 1) for m in (m1, m2, m3)] == [0, 0, 0]


def test_initial_delay_is_bounded_by_the_rebalance_timeout() -> None:
    h = Harness()
    # Rebalance timeout 5 s, delay 3 s: the join phase may last at most 5 s however many arrive.
    _, t1 = h.join_new(G, client="a", rebalance=5_000)
    h.advance(1_000)
    _, t2 = h.join_new(G, client="b", rebalance=5_000)
    h.advance_to(3_000)
    assert h.coord.next_deadline_ms() == 5_000  # min(delay, 2 s remaining)
    h.advance(1_000)
    _, t3 = h.join_new(G, client="c", rebalance=5_000)
    h.advance_to(5_000)
    assert all(h.take(t).generation_id == 1 for t in (t1, t2, t3))


def test_initial_delay_zero_completes_on_the_next_tick() -> None:
    h = Harness(initial_rebalance_delay_ms=0)
    _, token = h.join_new(G)
    assert token not in h.mailbox
    assert h.coord.next_deadline_ms() == 0
    h.advance(0)
    assert h.take(token).generation_id == 1


def test_join_before_v4_gets_a_member_id_without_the_extra_round() -> None:
    h = Harness()
    token, parked = h.join(G, client="old", version=3)
    assert parked is None
    h.advance(3_000)
    answer = h.take(token)
    assert answer.error_code == 0
    assert answer.member_id.startswith("old-")
    assert answer.protocol_name == "range"


def test_join_v0_uses_the_session_timeout_as_rebalance_timeout() -> None:
    h = Harness()
    h.join(G, version=0, session=7_000, rebalance=-1)
    group = h.coord.group(G)
    assert group is not None
    assert [m.rebalance_timeout_ms for m in group.members.values()] == [7_000]


def test_protocol_name_null_only_from_v7() -> None:
    h = Harness()
    _, v6 = h.join(G, version=6, session=1)
    _, v7 = h.join(G, version=7, session=1)
    assert v6 is not None and v7 is not None
    assert v6.error_code == v7.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    assert v6.protocol_name == ""  # v0-v6 cannot encode null
    assert v7.protocol_name is None
    v6.encode(6)
    v7.encode(7)


# --- protocol selection and leadership -----------------------------------------------------------


def test_protocol_selection_picks_the_most_voted_common_protocol() -> None:
    h = Harness()
    # a prefers rr, b and c prefer range; all support both, only a supports sticky.
    _, t1 = h.join_new(G, client="a", protocols=(("sticky", b"s"), ("rr", b"a-rr"), ("range", b"a-range")))
    _, t2 = h.join_new(G, client="b", protocols=(("range", b"b-range"), ("rr", b"b-rr")))
    _, t3 = h.join_new(G, client="c", protocols=(("range", b"c-range"), ("rr", b"c-rr")))
    h.run_until(lambda: t3 in h.mailbox)
    leader = h.take(t1)
    assert leader.protocol_name == "range"
    # The leader gets each member's metadata for the chosen protocol.
    assert [m.metadata for m in leader.members] == [b"a-range", b"b-range", b"c-range"]


def test_join_with_no_common_protocol_is_refused() -> None:
    h = Harness()
    h.stable_group(G, 1)
    _, other = h.join(G, protocols=(("roundrobin", b""),))
    assert other is not None
    assert other.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert other.member_id == ""
    _, wrong_type = h.join(G, protocol_type="connect")
    assert wrong_type is not None and wrong_type.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    # An empty group takes any protocol, but not none at all.
    _, nothing = h.join("g2", protocols=())
    assert nothing is not None and nothing.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_bad_requests() -> None:
    h = Harness()
    _, no_group = h.join("")
    assert no_group is not None and no_group.error_code == ErrorCode.INVALID_GROUP_ID
    for session in (5_999, 1_800_001):
        _, response = h.join(G, session=session)
        assert response is not None and response.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.coord.group(G) is None
    _, unknown = h.join(G, "made-up-id")
    assert unknown is not None
    assert (unknown.error_code, unknown.member_id) == (ErrorCode.UNKNOWN_MEMBER_ID, "made-up-id")
    assert h.coord.group(G) is None  # a known member id never creates a group


def test_group_max_size() -> None:
    h = Harness(group_members_max=2)
    h.stable_group(G, 2)
    _, refused = h.join(G, client="third")
    assert refused is not None
    assert (refused.error_code, refused.member_id) == (ErrorCode.GROUP_MAX_SIZE_REACHED, "")
    assert state(h) is GroupState.STABLE


def test_group_max_size_counts_members_awaiting_the_join() -> None:
    h = Harness(group_members_max=2)
    m1, t1 = h.join_new(G, client="a")
    # One member awaits the join: a third client still gets a member id ...
    _, third = h.join(G, client="c")
    assert third is not None and third.error_code == ErrorCode.MEMBER_ID_REQUIRED
    m2, t2 = h.join_new(G, client="b")
    # ... but two await it now, so the third's join is refused and its pending id dropped.
    _, refused = h.join(G, third.member_id, client="c")
    assert refused is not None
    assert (refused.error_code, refused.member_id) == (ErrorCode.GROUP_MAX_SIZE_REACHED, "")
    group = h.coord.group(G)
    assert group is not None and third.member_id not in group.pending_join_members
    _, fourth = h.join(G, client="d")
    assert fourth is not None and fourth.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    h.run_until(lambda: t2 in h.mailbox)
    assert [m.member_id for m in h.take(t1).members] == [m1, m2]


# --- rebalances ----------------------------------------------------------------------------------


def test_new_member_triggers_a_rebalance_of_a_stable_group() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2)
    m3, t3 = h.join_new(G, client="new")
    assert state(h) is GroupState.PREPARING_REBALANCE
    assert h.heartbeat(G, m1, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    t1, parked = h.join(G, m1)
    assert parked is None  # m2 has not rejoined yet
    t2, last = h.join(G, m2)
    # The last member to rejoin completes the join phase and gets its answer at once.
    assert last is not None and last.generation_id == gen + 1
    assert h.take(t1).generation_id == h.take(t3).generation_id == gen + 1
    assert state(h) is GroupState.COMPLETING_REBALANCE
    assert h.heartbeat(G, m1, gen) == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat(G, m1, gen + 1) == 0  # heartbeats are fine while waiting to sync


def test_follower_rejoining_unchanged_in_stable_gets_the_current_generation() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2)
    _, same = h.join(G, m2)
    assert same is not None
    assert (same.error_code, same.generation_id, same.leader, same.members) == (0, gen, m1, [])
    assert state(h) is GroupState.STABLE
    # Changed metadata forces a rebalance.
    _, changed = h.join(G, m2, protocols=(("range", b"new-topics"),))
    assert changed is None
    assert state(h) is GroupState.PREPARING_REBALANCE


def test_leader_rejoin_in_stable_forces_a_rebalance() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1)
    _, answer = h.join(G, m1)
    # A lone member completes the join phase at once (not an initial rebalance).
    assert answer is not None and answer.generation_id == gen + 1
    assert [m.member_id for m in answer.members] == [m1]


def test_member_leaving_triggers_a_rebalance() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2)
    response = h.leave(G, (m2, None))
    assert [(m.member_id, m.error_code) for m in response.members] == [(m2, 0)]
    assert state(h) is GroupState.PREPARING_REBALANCE
    _, answer = h.join(G, m1)
    assert answer is not None and answer.generation_id == gen + 1
    assert [m.member_id for m in answer.members] == [m1]


def test_last_member_leaving_empties_the_group() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1)
    h.records.clear()
    h.leave(G, (m1, None))
    g = h.coord.group(G)
    assert g is not None
    assert g.state is GroupState.EMPTY
    assert g.generation_id == gen + 1
    assert g.protocol_name is None
    assert g.protocol_type == "consumer"  # kept, so the offsets expire by the Empty-group rule
    assert len(h.records) == 1  # the empty generation is persisted


def test_session_expiry_removes_the_member_and_rebalances() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2)
    start = h.now
    # m1 heartbeats every 3 s, m2 never does.
    while h.now < start + SESSION_MS - 3_000:
        h.advance(3_000)
        assert h.heartbeat(G, m1, gen) == 0
    h.advance_to(start + SESSION_MS)
    group = h.coord.group(G)
    assert group is not None and m2 not in group.members
    assert state(h) is GroupState.PREPARING_REBALANCE
    assert h.heartbeat(G, m1, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    assert h.heartbeat(G, m2, gen) == ErrorCode.UNKNOWN_MEMBER_ID
    _, answer = h.join(G, m1)
    assert answer is not None and answer.generation_id == gen + 1 and len(answer.members) == 1


def test_rebalance_timeout_removes_members_that_do_not_rejoin() -> None:
    h = Harness()
    (m1, m2), gen = h.stable_group(G, 2)
    t1, _ = h.join(G, m1)
    started = h.now
    # m2 keeps its session alive but ignores REBALANCE_IN_PROGRESS.
    while h.now + 3_000 < started + REBALANCE_MS:
        h.advance(3_000)
        assert h.heartbeat(G, m2, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    assert t1 not in h.mailbox
    h.advance_to(started + REBALANCE_MS)
    answer = h.take(t1)
    assert answer.generation_id == gen + 1
    assert [m.member_id for m in answer.members] == [m1]
    assert h.heartbeat(G, m2, gen) == ErrorCode.UNKNOWN_MEMBER_ID


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    joined_at = h.now
    h.take(t1), h.take(t2)
    _, leader = h.sync(G, m1, 1, {m1: b"A", m2: b"B"})
    assert leader is not None and leader.error_code == 0
    while h.now + 3_000 < joined_at + REBALANCE_MS:
        h.advance(3_000)
        assert h.heartbeat(G, m1, 1) == 0
        assert h.heartbeat(G, m2, 1) == 0  # alive, but never sends SyncGroup
    assert state(h) is GroupState.STABLE
    h.advance_to(joined_at + REBALANCE_MS)
    group = h.coord.group(G)
    assert group is not None and list(group.members) == [m1]
    assert state(h) is GroupState.PREPARING_REBALANCE


def test_member_whose_session_expires_unblocks_the_join_phase() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1)
    _, t2 = h.join_new(G, client="b")  # m1 never rejoins and never heartbeats
    h.advance(SESSION_MS)
    answer = h.take(t2)
    assert answer.error_code == 0 and answer.generation_id == gen + 1
    assert [m.member_id for m in answer.members] == [answer.member_id]


def test_new_member_parked_in_join_expires_after_the_new_member_timeout() -> None:
    h = Harness(new_member_join_timeout_ms=20_000)
    (m1,), gen = h.stable_group(G, 1)
    m2, t2 = h.join_new(G, client="b")
    started = h.now
    # m1 stays alive but does not rejoin, so the phase lasts the full rebalance timeout (30 s);
    # the new member's 20 s join timeout runs out first.
    while h.now + 3_000 <= started + 20_000:
        h.advance(3_000)
        assert h.heartbeat(G, m1, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    h.advance_to(started + 20_000)
    answer = h.take(t2)
    assert (answer.error_code, answer.member_id) == (ErrorCode.UNKNOWN_MEMBER_ID, "")
    group = h.coord.group(G)
    assert group is not None and m2 not in group.members
    h.advance_to(started + REBALANCE_MS)
    assert state(h) is GroupState.EMPTY  # m1 never rejoined either


def test_pending_member_id_expires_after_its_session_timeout() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1)
    _, first = h.join(G, client="late")
    assert first is not None and first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    given_at = h.now
    # The leader rejoins: the phase waits for the pending id too.
    t1, parked = h.join(G, m1)
    assert parked is None
    h.advance(SESSION_MS - 1)
    assert t1 not in h.mailbox
    h.advance_to(given_at + SESSION_MS)
    answer = h.take(t1)
    assert answer.generation_id == gen + 1 and len(answer.members) == 1
    _, stale = h.join(G, first.member_id, client="late")
    assert stale is not None and stale.error_code == ErrorCode.UNKNOWN_MEMBER_ID


# --- the scenarios of the issue ------------------------------------------------------------------


def test_member_joining_while_another_is_in_completing_rebalance() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    assert state(h) is GroupState.COMPLETING_REBALANCE
    follower, parked = h.sync(G, m2, 1)
    assert parked is None

    _, first = h.join(G, client="c")
    assert first is not None and first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    assert state(h) is GroupState.COMPLETING_REBALANCE  # the id round alone changes nothing
    t3, _ = h.join(G, first.member_id, client="c")
    assert state(h) is GroupState.PREPARING_REBALANCE
    # The parked follower is told to rejoin, with no protocol and no assignment.
    answer = h.take(follower)
    assert (answer.error_code, answer.assignment, answer.protocol_name) == (ErrorCode.REBALANCE_IN_PROGRESS, b"", None)
    _, leader_sync = h.sync(G, m1, 1, {m1: b"A", m2: b"B"})
    assert leader_sync is not None and leader_sync.error_code == ErrorCode.REBALANCE_IN_PROGRESS
    h.join(G, m1)
    _, last = h.join(G, m2)
    assert last is not None and last.generation_id == 2
    assert h.take(t3).generation_id == 2


def test_rejoin_during_completing_rebalance_with_same_metadata_repeats_the_answer() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    _, again = h.join(G, m1)  # the leader lost its answer
    assert again is not None
    assert (again.generation_id, again.leader, len(again.members)) == (1, m1, 2)
    assert state(h) is GroupState.COMPLETING_REBALANCE


def test_leader_leaving_before_sync() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    follower, _ = h.sync(G, m2, 1)
    h.leave(G, (m1, None))
    assert h.take(follower).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    group = h.coord.group(G)
    assert group is not None and group.leader_id == m2
    assert state(h) is GroupState.PREPARING_REBALANCE
    _, answer = h.join(G, m2)
    assert answer is not None
    assert (answer.generation_id, answer.leader) == (2, m2)
    assert [m.member_id for m in answer.members] == [m2]
    _, synced = h.sync(G, m2, 2, {m2: b"all"})
    assert synced is not None and synced.assignment == b"all"


def test_empty_and_missing_assignments() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    follower, _ = h.sync(G, m2, 1)
    # The leader assigns only to itself (and to a member that does not exist).
    _, leader = h.sync(G, m1, 1, {m1: b"everything", "ghost": b"x"})
    assert leader is not None and leader.assignment == b"everything"
    answer = h.take(follower)
    assert (answer.error_code, answer.assignment) == (0, b"")
    # An entirely empty plan works too.
    h.join(G, m1)
    _, rejoined = h.join(G, m2)
    assert rejoined is not None
    _, leader2 = h.sync(G, m1, 2, {})
    assert leader2 is not None and (leader2.error_code, leader2.assignment) == (0, b"")


def test_sync_group_errors_at_each_step() -> None:
    h = Harness()
    _, unknown_group = h.sync("nope", "m", 1)
    assert unknown_group is not None and unknown_group.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    _, no_group_id = h.sync("", "m", 1)
    assert no_group_id is not None and no_group_id.error_code == ErrorCode.INVALID_GROUP_ID
    (m1, m2), gen = h.stable_group(G, 2)
    cases = [
        (dict(member_id="stranger", generation=gen), ErrorCode.UNKNOWN_MEMBER_ID),
        (dict(member_id=m1, generation=gen + 1), ErrorCode.ILLEGAL_GENERATION),
        (dict(member_id=m1, generation=gen, protocol_name="rr"), ErrorCode.INCONSISTENT_GROUP_PROTOCOL),
        (dict(member_id=m1, generation=gen, protocol_type="connect"), ErrorCode.INCONSISTENT_GROUP_PROTOCOL),
        # v5 makes the protocol type and name mandatory; v4 does not send them at all.
        (dict(member_id=m1, generation=gen, protocol_name=None), ErrorCode.INCONSISTENT_GROUP_PROTOCOL),
        (dict(member_id=m1, generation=gen, protocol_name=None, protocol_type=None, version=4), ErrorCode.NONE),
    ]
    for kwargs, expected in cases:
        member_id = kwargs.pop("member_id")
        generation = kwargs.pop("generation")
        _, response = h.sync(G, member_id, generation, **kwargs)  # type: ignore[arg-type]
        assert response is not None and response.error_code == expected, (kwargs, response)
    h.join(G, m1)  # leader rejoin: PreparingRebalance
    _, during = h.sync(G, m2, gen)
    assert during is not None and during.error_code == ErrorCode.REBALANCE_IN_PROGRESS


def test_heartbeat_errors_at_each_step() -> None:
    h = Harness()
    assert h.heartbeat("nope", "m", 0) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("", "m", 0) == ErrorCode.INVALID_GROUP_ID
    (m1, m2), gen = h.stable_group(G, 2)
    assert h.heartbeat(G, m1, gen) == 0
    assert h.heartbeat(G, "stranger", gen) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat(G, m1, gen - 1) == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat(G, m1, gen, instance="not-static") == ErrorCode.UNKNOWN_MEMBER_ID
    h.leave(G, (m2, None))
    assert h.heartbeat(G, m1, gen) == ErrorCode.REBALANCE_IN_PROGRESS
    assert h.heartbeat(G, m2, gen) == ErrorCode.UNKNOWN_MEMBER_ID
    h.leave(G, (m1, None))
    assert state(h) is GroupState.EMPTY
    assert h.heartbeat(G, m1, gen + 1) == ErrorCode.UNKNOWN_MEMBER_ID


def test_rejoin_of_a_member_of_an_emptied_group() -> None:
    h = Harness()
    (m1,), _ = h.stable_group(G, 1)
    h.leave(G, (m1, None))
    _, answer = h.join(G, m1)
    assert answer is not None and answer.error_code == ErrorCode.UNKNOWN_MEMBER_ID


# --- LeaveGroup ----------------------------------------------------------------------------------


def test_batched_leave_with_per_member_errors() -> None:
    h = Harness()
    (s1, m2, m3), gen = h.stable_group(G, 3, instances=["inst-1", None, None])
    response = h.leave(G, (m2, None), ("stranger", None), ("", "inst-1"), ("", "inst-unknown"),
                       (m3, "inst-1"))
    assert response.error_code == 0
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in response.members] == [
        (m2, None, 0),
        ("stranger", None, ErrorCode.UNKNOWN_MEMBER_ID),
        ("", "inst-1", 0),  # administrative removal by instance id
        ("", "inst-unknown", ErrorCode.UNKNOWN_MEMBER_ID),
        (m3, "inst-1", ErrorCode.UNKNOWN_MEMBER_ID),  # inst-1 has left by now
    ]
    group = h.coord.group(G)
    assert group is not None and list(group.members) == [m3]
    assert group.static_members == {}
    assert state(h) is GroupState.PREPARING_REBALANCE


def test_leave_of_unknown_group_and_old_versions() -> None:
    h = Harness()
    response = h.leave("nope", ("a", None), ("b", "i"))
    assert response.error_code == 0
    assert [m.error_code for m in response.members] == [ErrorCode.UNKNOWN_MEMBER_ID] * 2
    assert h.leave("nope", ("a", None), version=2).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    (m1,), _ = h.stable_group(G, 1)
    v1 = h.leave(G, (m1, None), version=1)
    assert (v1.error_code, v1.members) == (0, [])
    assert h.leave("", ("x", None)).error_code == ErrorCode.INVALID_GROUP_ID


def test_leave_of_a_pending_member_id() -> None:
    h = Harness()
    (m1,), gen = h.stable_group(G, 1)
    _, first = h.join(G, client="x")
    assert first is not None
    response = h.leave(G, (first.member_id, None))
    assert response.members[0].error_code == 0
    group = h.coord.group(G)
    assert group is not None and not group.pending_join_members
    # Kafka counts it as a member that left, so a Stable group rebalances.
    assert state(h) is GroupState.PREPARING_REBALANCE
    assert h.heartbeat(G, m1, gen) == ErrorCode.REBALANCE_IN_PROGRESS


def test_member_resending_join_abandons_the_first_request() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    t1b, parked = h.join(G, m1, client="a")
    assert parked is None
    assert h.abandoned == [t1]
    h.advance(3_000)
    assert t1 not in h.mailbox and h.take(t1b).generation_id == 1


@pytest.mark.parametrize("version", [1, 5, 6, 7, 9])
def test_join_responses_encode_at_their_version(version: int) -> None:
    h = Harness()
    token, response = h.join(G, version=version)
    if response is not None:
        response.encode(version)
        token, response = h.join(G, response.member_id, version=version)
    h.advance(3_000)
    h.take(token).encode(version)
    assert RANGE


def test_leader_that_never_syncs_is_removed_and_followers_told_to_rejoin() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    joined_at = h.now
    h.take(t1), h.take(t2)
    follower, _ = h.sync(G, m2, 1)
    h.advance_heartbeating(REBALANCE_MS - 1_000, G, [m1], 1)  # the leader lives but never syncs
    assert follower not in h.mailbox
    h.advance_to(joined_at + REBALANCE_MS)
    assert h.take(follower).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    group = h.coord.group(G)
    assert group is not None and list(group.members) == [m2] and group.leader_id == m2
    _, answer = h.join(G, m2)
    assert answer is not None and answer.generation_id == 2


def test_changed_metadata_during_completing_rebalance_restarts_the_rebalance() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    follower, _ = h.sync(G, m2, 1)
    t1b, parked = h.join(G, m1, protocols=(("range", b"more-topics"),))
    assert parked is None
    assert h.take(follower).error_code == ErrorCode.REBALANCE_IN_PROGRESS
    assert state(h) is GroupState.PREPARING_REBALANCE
    _, last = h.join(G, m2)
    assert last is not None and last.generation_id == 2
    leader = h.take(t1b)
    assert [m.metadata for m in leader.members] == [b"more-topics", b"range-meta"]


def test_resent_sync_abandons_the_first_one() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    first, _ = h.sync(G, m2, 1)
    second, _ = h.sync(G, m2, 1)
    assert h.abandoned == [first]
    h.sync(G, m1, 1, {m1: b"A", m2: b"B"})
    assert first not in h.mailbox and h.take(second).assignment == b"B"


def test_member_leaving_while_parked_in_sync_abandons_its_sync() -> None:
    h = Harness()
    m1, t1 = h.join_new(G, client="a")
    m2, t2 = h.join_new(G, client="b")
    h.run_until(lambda: t2 in h.mailbox)
    h.take(t1), h.take(t2)
    parked, _ = h.sync(G, m2, 1)
    h.leave(G, (m2, None))
    assert h.abandoned == [parked]  # Kafka never answers it either
    assert parked not in h.mailbox
    assert state(h) is GroupState.PREPARING_REBALANCE


def test_join_errors_before_v7_carry_an_empty_protocol_name() -> None:
    h = Harness()
    h.stable_group(G, 1)
    _, v6 = h.join(G, "stranger", version=6)
    assert v6 is not None and (v6.error_code, v6.protocol_name) == (ErrorCode.UNKNOWN_MEMBER_ID, "")
    v6.encode(6)
