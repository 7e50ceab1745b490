"""Goal: the server-side assignors give Kafka's shapes, balance, and stickiness.

``range``: per topic, consecutive ranges in member order (static members by instance id first),
the first members one partition more; co-partitioned topics line up. ``uniform``: every
partition to exactly one subscriber, loads within one of each other where subscriptions allow,
and as few moves as possible when members come and go (homogeneous groups keep Kafka's quota
algorithm; heterogeneous ones are checked on random subscriptions).
"""

from __future__ import annotations

import random
from uuid import UUID

import pytest

from broker.group.assignors import (
    Assignment,
    GroupSpec,
    MemberSpec,
    RangeAssignor,
    TopicSpec,
    UniformAssignor,
    assignor_by_config_name,
)

A = UUID(int=1)
B = UUID(int=2)
C = UUID(int=3)
TOPICS = {A: TopicSpec("a", 3), B: TopicSpec("b", 3), C: TopicSpec("c", 7)}


def spec(members: dict[str, tuple[frozenset[UUID], Assignment]], *, instances: dict[str, str] | None = None,
         topics: dict[UUID, TopicSpec] | None = None) -> GroupSpec:
    instances = instances or {}
    return GroupSpec(members={m: MemberSpec(m, instances.get(m), None, subs, current)
                              for m, (subs, current) in members.items()},
                     topics=TOPICS if topics is None else topics)


def plain(result: dict[str, Assignment]) -> dict[str, dict[UUID, list[int]]]:
    return {m: {t: sorted(ps) for t, ps in a.items()} for m, a in result.items()}


def flat(a: Assignment) -> set[tuple[UUID, int]]:
    return {(t, p) for t, ps in a.items() for p in ps}


def test_range_shape_two_members_two_topics() -> None:
    both = frozenset({A, B})
    result = RangeAssignor().assign(spec({"m2": (both, {}), "m1": (both, {})}))
    assert plain(result) == {"m1": {A: [0, 1], B: [0, 1]}, "m2": {A: [2], B: [2]}}


def test_range_static_members_first_and_heterogeneous() -> None:
    result = RangeAssignor().assign(spec(
        {"dyn": (frozenset({A, C}), {}), "zzz": (frozenset({A}), {}), "aaa": (frozenset({C}), {})},
        instances={"zzz": "i-1", "aaa": "i-2"}))
    # a: zzz (static i-1) then dyn; c: aaa (static i-2) then dyn.
    assert plain(result) == {"zzz": {A: [0, 1]}, "dyn": {A: [2], C: [4, 5, 6]}, "aaa": {C: [0, 1, 2, 3]}}


def test_uniform_shape_two_members_two_topics() -> None:
    both = frozenset({A, B})
    result = UniformAssignor().assign(spec({"m1": (both, {}), "m2": (both, {})}))
    assert plain(result) == {"m1": {A: [0, 1, 2]}, "m2": {B: [0, 1, 2]}}  # 3 and 3, topics in name order


def test_uniform_homogeneous_is_sticky() -> None:
    subs = frozenset({C})
    one = UniformAssignor().assign(spec({"m1": (subs, {})}))
    assert plain(one) == {"m1": {C: list(range(7))}}
    two = UniformAssignor().assign(spec({"m1": (subs, one["m1"]), "m2": (subs, {})}))
    # m1 keeps its quota (4 of 7) and m2 gets the rest: three partitions move, no more.
    assert plain(two) == {"m1": {C: [0, 1, 2, 3]}, "m2": {C: [4, 5, 6]}}
    three = UniformAssignor().assign(spec({"m1": (subs, two["m1"]), "m2": (subs, two["m2"]), "m3": (subs, {})}))
    assert [len(flat(a)) for a in three.values()] == [3, 2, 2]
    assert flat(three["m1"]) <= flat(two["m1"]) and flat(three["m2"]) <= flat(two["m2"])
    # A member leaving: its partitions go to the others, theirs stay.
    after = UniformAssignor().assign(spec({"m1": (subs, three["m1"]), "m3": (subs, three["m3"])}))
    assert flat(three["m1"]) <= flat(after["m1"]) and flat(three["m3"]) <= flat(after["m3"])
    assert flat(after["m1"]) | flat(after["m3"]) == {(C, p) for p in range(7)}


def test_uniform_drops_unsubscribed_topics_and_empty_groups() -> None:
    assert UniformAssignor().assign(spec({})) == {}
    result = UniformAssignor().assign(spec({"m1": (frozenset({A}), {B: frozenset({0})})}))
    assert plain(result) == {"m1": {A: [0, 1, 2]}}
    nothing = UniformAssignor().assign(spec({"m1": (frozenset(), {})}))
    assert plain(nothing) == {"m1": {}}


@pytest.mark.parametrize("seed", range(30))
def test_uniform_heterogeneous_properties(seed: int) -> None:
    rng = random.Random(seed)
    topics = {UUID(int=i + 1): TopicSpec(f"t{i}", rng.randint(1, 8)) for i in range(rng.randint(1, 5))}
    ids = sorted(topics, key=lambda t: topics[t].name)
    current: dict[str, Assignment] = {}
    subs: dict[str, frozenset[UUID]] = {}
    for round_ in range(6):
        # Members come and go and change their subscriptions.
        for m in list(subs):
            if rng.random() < 0.2:
                del subs[m]
                current.pop(m, None)
        for i in range(rng.randint(0, 3)):
            subs[f"m{round_}-{i}"] = frozenset(rng.sample(ids, rng.randint(1, len(ids))))
        if not subs:
            continue
        group = spec({m: (s, current.get(m, {})) for m, s in subs.items()}, topics=topics)
        result = UniformAssignor().assign(group)
        owned: dict[tuple[UUID, int], str] = {}
        for m, a in result.items():
            for t, p in flat(a):
                assert t in subs[m], f"seed {seed}: {m} got a topic it does not subscribe to"
                assert (t, p) not in owned, f"seed {seed}: partition given twice"
                owned[(t, p)] = m
        subscribed = set().union(*subs.values())
        assert set(owned) == {(t, p) for t in subscribed for p in range(topics[t].partitions)}, seed
        # Balance: no member could take a partition from one with two more.
        load = {m: len(flat(a)) for m, a in result.items()}
        for (t, _), m in owned.items():
            for other in subs:
                if t in subs[other]:
                    assert load[other] + 1 >= load[m], f"seed {seed}: {other} could take from {m}"
        current = dict(result)


def test_config_names() -> None:
    assert assignor_by_config_name("uniform") is not None
    assert assignor_by_config_name("org.apache.kafka.coordinator.group.assignor.RangeAssignor") is not None
    assert assignor_by_config_name(" range ") is not None
    assert assignor_by_config_name("sticky") is None
