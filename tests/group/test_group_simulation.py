"""Goal: under random joins, leaves, crashes, restarts and timing, the coordinator keeps its
invariants after every event and, once the chaos stops, settles: one Stable generation whose
members are exactly the live clients, each holding the assignment its leader gave it, and whose
persisted records rebuild that same group.

Each seed drives a few simulated consumers (some static) that behave like Kafka's Java client:
KIP-394 member id round, rejoin on REBALANCE_IN_PROGRESS, reset on UNKNOWN_MEMBER_ID and
ILLEGAL_GENERATION, stop on FENCED_INSTANCE_ID, heartbeats every 2 s. A failing seed is named in
the assertion message.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass

import pytest
from group_harness import CountingUuids, Harness

from broker.group import ClassicGroup, GroupCoordinator, GroupState
from protocol.error_codes import ErrorCode

G = "sim"
HEARTBEAT_MS = 2_000


@dataclass
class Client:
    name: str
    instance: str | None
    session_ms: int
    rebalance_ms: int
    member_id: str = ""
    generation: int = -1
    phase: str = "idle"  # idle | joining | syncing | stable | dead
    token: Hashable | None = None
    last_heartbeat: int = 0
    assignment: bytes | None = None


def check_invariants(group: ClassicGroup | None) -> None:
    if group is None:
        return
    members = group.members
    assert group.awaiting_join_count == sum(m.join_waiter is not None for m in members.values())
    counts: dict[str, int] = {}
    for m in members.values():
        for name, _ in m.protocols:
            counts[name] = counts.get(name, 0) + 1
    assert {k: v for k, v in group.supported_protocols.items() if v} == counts
    assert group.static_members == {m.group_instance_id: m.member_id for m in members.values()
                                    if m.group_instance_id is not None}
    assert (group.leader_id is None) == (not members)
    assert group.leader_id is None or group.leader_id in members
    # (pending_sync_members may name a static member's replaced id: Kafka does not move it to the
    # new id, so the sync timeout later removes nobody but still rebalances the group.)
    assert not set(group.pending_join_members) & set(members)
    if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
        assert members and group.protocol_name is not None
        assert all(group.protocol_name in m.protocol_names() for m in members.values())
    if group.state is GroupState.EMPTY:
        assert not members
    if group.state is not GroupState.COMPLETING_REBALANCE:
        assert all(m.sync_waiter is None for m in members.values())


class Sim:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.h = Harness(initial_rebalance_delay_ms=rng.choice([0, 500, 3_000]))
        self.clients = [
            Client(f"c{i}", f"inst-{i}" if rng.random() < 0.4 else None, rng.choice([6_000, 10_000]),
                   rng.choice([10_000, 20_000]))
            for i in range(rng.randint(2, 5))
        ]
        self.by_token: dict[Hashable, Client] = {}

    # --- client behaviour -------------------------------------------------------------------------

    def send_join(self, c: Client) -> None:
        token, response = self.h.join(G, c.member_id, client=c.name, instance=c.instance,
                                      protocols=(("range", c.name.encode()),), session=c.session_ms,
                                      rebalance=c.rebalance_ms)
        c.phase, c.token = "joining", token
        self.by_token[token] = c
        if response is not None:
            self.h.mailbox[token] = response

    def send_sync(self, c: Client, members: list[tuple[str, bytes]], skip: bool) -> None:
        plan = {} if skip else dict(members)  # the leader hands each member its own metadata
        token, response = self.h.sync(G, c.member_id, c.generation, plan, instance=c.instance)
        c.phase, c.token = "syncing", token
        self.by_token[token] = c
        if response is not None:
            self.h.mailbox[token] = response

    def reset(self, c: Client) -> None:
        # Whatever the client still waited for is dropped (its connection is gone, or it moved on).
        c.member_id, c.generation, c.phase, c.assignment, c.token = "", -1, "idle", None, None

    def on_join(self, c: Client, r: object) -> None:
        code = r.error_code  # type: ignore[attr-defined]
        if code == ErrorCode.NONE:
            c.member_id, c.generation = r.member_id, r.generation_id  # type: ignore[attr-defined]
            members = [(m.member_id, bytes(m.metadata)) for m in r.members]  # type: ignore[attr-defined]
            self.send_sync(c, members, r.skip_assignment)  # type: ignore[attr-defined]
        elif code == ErrorCode.MEMBER_ID_REQUIRED:
            c.member_id = r.member_id  # type: ignore[attr-defined]
            self.send_join(c)
        elif code == ErrorCode.FENCED_INSTANCE_ID:
            c.phase = "dead"  # a newer instance took over
        else:
            assert code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.GROUP_MAX_SIZE_REACHED), code
            self.reset(c)

    def on_sync(self, c: Client, r: object) -> None:
        code = r.error_code  # type: ignore[attr-defined]
        if code == ErrorCode.NONE:
            c.phase, c.assignment, c.last_heartbeat = "stable", bytes(r.assignment), self.h.now  # type: ignore[attr-defined]
        elif code == ErrorCode.REBALANCE_IN_PROGRESS:
            self.send_join(c)
        elif code == ErrorCode.FENCED_INSTANCE_ID:
            c.phase = "dead"
        else:
            assert code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION), code
            self.reset(c)

    def deliver(self) -> None:
        h = self.h
        for token in list(h.abandoned):
            c = self.by_token.pop(token)
            if c.token == token and c.phase != "dead":
                self.reset(c)
            assert token not in h.mailbox, f"token {token} both answered and abandoned"  # the request is lost: start over, as after a request timeout
        h.abandoned.clear()
        while h.mailbox:
            token, response = next(iter(h.mailbox.items()))
            del h.mailbox[token]
            c = self.by_token.pop(token)
            if c.token != token or c.phase == "dead":
                continue  # an answer to a client that has moved on or died
            c.token = None
            (self.on_join if c.phase == "joining" else self.on_sync)(c, response)
            check_invariants(h.coord.group(G))

    def act(self, c: Client, chaos: bool) -> None:
        h, rng = self.h, self.rng
        if c.phase == "dead":
            if chaos and rng.random() < 0.05:  # restart (a static member comes back with its instance id)
                self.reset(c)
            return
        if chaos and rng.random() < 0.01:
            c.phase, c.token = "dead", None  # crash: just stop
            return
        if chaos and c.phase == "stable" and rng.random() < 0.01:
            h.leave(G, (c.member_id, c.instance))
            self.reset(c)
            return
        if c.phase == "idle":
            self.send_join(c)
        elif c.phase in ("stable", "syncing") and c.member_id and h.now - c.last_heartbeat >= HEARTBEAT_MS:
            c.last_heartbeat = h.now
            code = h.heartbeat(G, c.member_id, c.generation, instance=c.instance)
            if code == ErrorCode.REBALANCE_IN_PROGRESS and c.phase == "stable":
                self.send_join(c)
            elif code in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
                self.reset(c)
            elif code == ErrorCode.FENCED_INSTANCE_ID:
                c.phase = "dead"
            if c.phase == "stable" and rng.random() < 0.2:
                h.commit(G, {("t", 0): h.now}, member_id=c.member_id, generation=c.generation, instance=c.instance)

    def step(self, chaos: bool) -> None:
        self.h.advance(self.rng.randint(0, 1_500))
        self.deliver()
        for c in self.rng.sample(self.clients, len(self.clients)):
            self.act(c, chaos)
            check_invariants(self.h.coord.group(G))
            self.deliver()

    def settled(self) -> bool:
        group = self.h.coord.group(G)
        live = [c for c in self.clients if c.phase != "dead"]
        if group is None or group.state is not GroupState.STABLE:
            return False
        return (all(c.phase == "stable" and c.generation == group.generation_id for c in live)
                and sorted(group.members) == sorted(c.member_id for c in live))


@pytest.mark.parametrize("seed", range(40))
def test_random_membership_churn(seed: int) -> None:
    sim = Sim(seed)
    for _ in range(300):
        sim.step(chaos=True)
    if all(c.phase == "dead" for c in sim.clients):
        sim.clients[0].phase = "idle"
        sim.reset(sim.clients[0])
    quiet_ms = 0
    while not sim.settled():
        sim.step(chaos=False)
        quiet_ms = sim.h.now
        assert quiet_ms < 10_000_000, f"seed {seed}: no Stable group after the chaos stopped"
    group = sim.h.coord.group(G)
    assert group is not None
    for c in sim.clients:
        if c.phase != "dead":
            assert c.assignment == c.name.encode(), f"seed {seed}: {c.name} holds {c.assignment!r}"
    # The persisted records rebuild the settled group.
    fresh = GroupCoordinator(sim.h.config, new_uuid=CountingUuids())
    fresh.load([(r.key, r.value) for r in sim.h.records], now_ms=sim.h.now)
    loaded = fresh.group(G)
    assert loaded is not None, f"seed {seed}"
    assert (loaded.state, loaded.generation_id, loaded.leader_id, sorted(loaded.members)) == (
        group.state, group.generation_id, group.leader_id, sorted(group.members)), f"seed {seed}"
    assert {m.member_id: m.assignment for m in loaded.members.values()} == {
        m.member_id: m.assignment for m in group.members.values()}, f"seed {seed}"
