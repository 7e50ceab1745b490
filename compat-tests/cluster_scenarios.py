"""The cluster rows of the compatibility matrix: what each asks a driver to do, and how we judge it.

The cluster matrix runs every client against one three-node Trafka cluster (cluster_harness.py
drives it). A row (a *cluster scenario*) becomes driver steps in one or more phases of that run:

- ``cluster_failover``: the ``failover`` driver scenario produces (acks=all, idempotent) to a
  partition with replication factor 3 and ``min.insync.replicas=2`` while it consumes it (an
  assigned consumer; kafkajs has only group consumers); the harness SIGKILLs the partition's leader
  once records flow, restarts it once records sent after the kill have been consumed, and stops
  the driver once records sent after the restart have been consumed. The row passes when nothing
  failed beyond the client's own retries and exactly what was sent was read back, once, in order.
- ``cluster_metadata``: the client's Metadata view of a topic (brokers; per partition the leader,
  replicas and ISR) with every node up, and again once a node is killed: the node is gone from
  the brokers, no partition is led by it, and it has left every ISR (fenced after
  ``broker.session.timeout.ms`` or dropped after ``replica.lag.time.max.ms``).
- ``cluster_offline_replicas``: in the same two views, the offline replicas (Metadata v5+): none
  with every node up, the killed node for each of its partitions after.
- ``cluster_describe``: the admin client's describe-cluster (cluster id, controller, brokers) and
  describe-topics, in the same two views.
- ``cluster_elect_leaders``: after the kill moved the leader of a partition whose preferred
  replica is the killed node, and the node is back in the ISR, a preferred election through the
  admin client puts the leadership back.
- ``cluster_reassign``: an alter-partition-reassignments moving a replica onto the killed node
  while it is down stays in progress (listed with the replicas being added and removed); after
  the node returns it completes: nothing listed and the replicas are the target.

A client that cannot do a row at all (no such call) is n/a with the reason, in clients.py. Nothing
here starts processes or talks to a broker; checks raise ``AssertionError`` saying what differed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCENARIOS = (
    "cluster_failover",
    "cluster_metadata",
    "cluster_offline_replicas",
    "cluster_describe",
    "cluster_elect_leaders",
    "cluster_reassign",
)

DESCRIPTIONS = {
    "cluster_failover": "produce (acks=all, idempotent) and consume a partition (RF 3, min.insync.replicas=2) "
                        "while its leader is SIGKILLed and restarted: only retriable errors, everything "
                        "acknowledged read back once, in order",
    "cluster_metadata": "Metadata shows brokers, leaders, replicas and ISR; after a node is killed it is gone "
                        "from the brokers, leads nothing and has left every ISR",
    "cluster_offline_replicas": "Metadata's offline replicas: none with every node up, the killed node's after",
    "cluster_describe": "admin describe cluster (id, controller, brokers) and describe topics, before and after "
                        "a node is killed",
    "cluster_elect_leaders": "preferred leader election through the admin client, after a failover moved the "
                             "leader away from the preferred replica",
    "cluster_reassign": "alter partition reassignments onto a node that is down: listed in progress (adding, "
                        "removing); once the node is back it completes and the replicas are the target",
}

# Node ids of the cluster: 1, 2, 3 (cluster_harness.py). The run kills one node, the *victim*,
# for the metadata, describe, election and reassignment rows; it is never the active controller,
# so those rows see a broker failure and not a controller election as well.
NODES = (1, 2, 3)
FAILOVER_RATE_PER_S = 100
# The harness acts on the failover driver's progress: it kills the leader once this many records
# were consumed, and waits for this many records sent after each fault to be consumed.
FAILOVER_WARMUP_RECORDS = 20
FAILOVER_AFTER_FAULT_RECORDS = 10
FAILOVER_DRAIN_TIMEOUT_MS = 60_000
ELECT_WAIT_MS = 10_000


@dataclass(frozen=True, slots=True)
class Roles:
    """Which node plays which part in the run: ``victim`` is killed; ``a`` and ``b`` stay up."""

    victim: int
    a: int
    b: int

    @staticmethod
    def choose(controller: int) -> Roles:
        victim = min(n for n in NODES if n != controller)
        a, b = (n for n in NODES if n != victim)
        return Roles(victim, a, b)


def topic_name(client: str, purpose: str) -> str:
    return f"cl-{client}-{purpose}"


def metadata_assignment(roles: Roles) -> list[list[int]]:
    """The metadata topic: the victim leads partition 0 and is last in partition 1."""
    return [[roles.victim, roles.a, roles.b], [roles.a, roles.b, roles.victim]]


def elect_assignment(roles: Roles) -> list[list[int]]:
    """The election topic: the victim is the preferred leader."""
    return [[roles.victim, roles.a, roles.b]]


def reassign_assignment(roles: Roles) -> list[list[int]]:
    """The reassignment topic starts on the two survivors, led by ``a``..."""
    return [[roles.a, roles.b]]


def reassign_target(roles: Roles) -> list[int]:
    """...and moves ``a``'s replica to the victim (adding the victim, removing ``a``)."""
    return [roles.victim, roles.b]


def failover_assignment(client_index: int) -> list[list[int]]:
    """Each client's failover partition has another preferred leader, so the leader killed is the
    active controller for some clients and not for others."""
    first = NODES[client_index % len(NODES)]
    return [[first, *(n for n in NODES if n != first)]]


def failover_params(topic: str) -> dict[str, Any]:
    return {"topic": topic, "partition": 0, "rate_per_s": FAILOVER_RATE_PER_S,
            "drain_timeout_ms": FAILOVER_DRAIN_TIMEOUT_MS}


def failover_value(index: int) -> str:
    """The value of the failover scenario's record number ``index`` (every driver writes these)."""
    return f"f-{index:06d}"


def failover_index(value: str | None) -> int:
    if value is None or not value.startswith("f-"):
        raise AssertionError(f"read a record the failover scenario did not write: {value!r}")
    return int(value[2:])


# --- checks -----------------------------------------------------------------------------------------


def check_failover(result: Mapping[str, Any]) -> str:
    """Nothing failed, every send resolved, and the partition holds exactly what was sent, once
    each, in send order, at the offsets the client was told. Returns a summary for the report.

    The partition is judged by offset: a consumer may be handed an offset again (a group consumer
    that rebalanced before committing starts over from its last commit), which is the client's
    at-least-once delivery and fine as long as the offset holds the same value each time; the
    same *value* at two offsets is a duplicate in the log, which idempotence must prevent."""
    sent: int = result["sent"]
    failed = result["failed"]
    problems = []
    if failed:
        problems.append(f"{len(failed)} of {sent} records failed, first: #{failed[0][0]}: {failed[0][1]}")
    for error in result.get("fatal") or []:
        problems.append(f"fatal error: {error}")
    acked = result.get("acked")  # None: the client reports no acknowledgements (kcat)
    if acked is not None:
        unresolved = sent - len(acked) - len(failed)
        if unresolved:
            problems.append(f"{unresolved} of {sent} sends neither acknowledged nor failed")
    by_offset: dict[int, str | None] = {}
    redelivered = 0
    for offset, value in result["consumed"]:
        if offset in by_offset:
            redelivered += 1
            if by_offset[offset] != value:
                problems.append(f"offset {offset} read as {by_offset[offset]!r} and as {value!r}")
        by_offset[offset] = value
    offsets = sorted(by_offset)
    if offsets != list(range(len(offsets))):
        gaps = [(x, y) for x, y in zip(offsets, offsets[1:], strict=False) if y != x + 1]
        problems.append(f"the offsets read are not 0..{len(offsets) - 1} (gaps after {gaps[:3]})")
    indices = [failover_index(by_offset[o]) for o in offsets]
    if indices != list(range(sent)):
        dupes = len(indices) - len(set(indices))
        missing = sorted(set(range(sent)) - set(indices))
        out_of_order = [(x, y) for x, y in zip(indices, indices[1:], strict=False) if y <= x]
        problems.append(f"the partition holds {len(indices)} records of {sent} sent: {dupes} duplicated, "
                        f"{len(missing)} missing (first {missing[:5]}), out of order at {out_of_order[:3]}")
    if acked is not None:
        at = {index: offset for offset, index in zip(offsets, indices, strict=True)}
        wrong = [(i, o, at.get(i)) for i, o in acked if o is not None and at.get(i) != o]
        if wrong:
            problems.append(f"{len(wrong)} records not where their acknowledgement said, first "
                            f"(#, acked offset, read at): {wrong[:3]}")
    assert not problems, "; ".join(problems)
    errors = result.get("client_errors") or []
    again = f" ({redelivered} offsets handed to the consumer twice)" if redelivered else ""
    return (f"{sent} sent, all in the log once each in order{again}; {len(errors)} retriable errors seen"
            + (f", first: {errors[0]}" if errors else ""))


def _brokers(result: Mapping[str, Any]) -> dict[int, tuple[str, int]]:
    return {b["node_id"]: (b["host"], b["port"]) for b in result["brokers"]}


def _partitions(result: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    return {p["partition"]: p for p in result["partitions"]}


def check_partitions(result: Mapping[str, Any], assignment: Sequence[Sequence[int]],
                     down: Iterable[int] = ()) -> None:
    """Each partition has its assigned replicas in order and an ISR of the live ones; the leader
    is the preferred (first) replica when every node is up, else a live ISR member."""
    down = set(down)
    parts = _partitions(result)
    problems = []
    if sorted(parts) != list(range(len(assignment))):
        problems.append(f"partitions {sorted(parts)}, want 0..{len(assignment) - 1}")
    for pid, replicas in enumerate(assignment):
        p = parts.get(pid)
        if p is None:
            continue
        live = [r for r in replicas if r not in down]
        if list(p["replicas"]) != list(replicas):
            problems.append(f"p{pid} replicas {p['replicas']}, want {list(replicas)}")
        if sorted(p["isr"]) != sorted(live):
            problems.append(f"p{pid} ISR {sorted(p['isr'])}, want {sorted(live)}")
        want_leader = replicas[0] if not down else None
        if want_leader is not None and p["leader"] != want_leader:
            problems.append(f"p{pid} leader {p['leader']}, want {want_leader}")
        if down and (p["leader"] in down or p["leader"] not in live):
            problems.append(f"p{pid} leader {p['leader']} with {sorted(down)} down")
    assert not problems, "; ".join(problems)


def check_brokers(result: Mapping[str, Any], addresses: Mapping[int, tuple[str, int]],
                  down: Iterable[int] = ()) -> None:
    down = set(down)
    want = {n: a for n, a in addresses.items() if n not in down}
    got = _brokers(result)
    assert got == want, f"brokers {sorted(got.items())}, want {sorted(want.items())}"


def check_metadata(result: Mapping[str, Any], assignment: Sequence[Sequence[int]],
                   addresses: Mapping[int, tuple[str, int]], down: Iterable[int] = ()) -> None:
    check_brokers(result, addresses, down)
    check_partitions(result, assignment, down)


def check_offline(result: Mapping[str, Any], assignment: Sequence[Sequence[int]], down: Iterable[int] = ()) -> None:
    down = set(down)
    parts = _partitions(result)
    problems = []
    for pid, replicas in enumerate(assignment):
        p = parts.get(pid)
        if p is None:
            problems.append(f"p{pid} missing")
            continue
        if p.get("offline") is None:
            problems.append(f"p{pid}: the client reports no offline replicas")
            continue
        want = sorted(r for r in replicas if r in down)
        if sorted(p["offline"]) != want:
            problems.append(f"p{pid} offline replicas {sorted(p['offline'])}, want {want}")
    assert not problems, "; ".join(problems)


def check_describe(result: Mapping[str, Any], assignment: Sequence[Sequence[int]],
                   addresses: Mapping[int, tuple[str, int]], cluster_id: str, down: Iterable[int] = ()) -> None:
    down = set(down)
    problems = []
    if result["cluster_id"] != cluster_id:
        problems.append(f"cluster id {result['cluster_id']!r}, want {cluster_id!r}")
    live = [n for n in addresses if n not in down]
    if result["controller_id"] not in live:
        problems.append(f"controller {result['controller_id']} is not a live broker ({live})")
    try:
        check_metadata(result, assignment, addresses, down)
    except AssertionError as exc:
        problems.append(str(exc))
    assert not problems, "; ".join(problems)


def check_elect(result: Mapping[str, Any], preferred: int) -> None:
    assert result["error"] is None, f"the election answered {result['error']}"
    assert result["leader_after"] == preferred, (
        f"leader after the election {result['leader_after']}, want the preferred replica {preferred}")


def check_reassign_started(alter: Mapping[str, Any], listed: Mapping[str, Any], target: Sequence[int],
                           before: Sequence[int]) -> None:
    """Accepted, and listed in progress: Kafka's replicas while moving are the target then the
    ones being removed; adding and removing are the differences."""
    assert alter["error"] is None, f"the reassignment was refused: {alter['error']}"
    adding = sorted(set(target) - set(before))
    removing = sorted(set(before) - set(target))
    want = {"partition": 0, "replicas": [*target, *removing], "adding": adding, "removing": removing}
    ongoing = listed["ongoing"]
    assert len(ongoing) == 1, f"listed {ongoing}, want one reassignment in progress: {want}"
    got = dict(ongoing[0])
    got["adding"], got["removing"] = sorted(got["adding"]), sorted(got["removing"])
    assert got == want, f"listed {got}, want {want}"


def check_reassign_done(listed: Mapping[str, Any], described: Mapping[str, Any], target: Sequence[int]) -> None:
    assert listed["ongoing"] == [], f"still listed in progress: {listed['ongoing']}"
    parts = _partitions(described)
    assert list(parts[0]["replicas"]) == list(target), f"replicas {parts[0]['replicas']}, want {list(target)}"
    assert sorted(parts[0]["isr"]) == sorted(target), f"ISR {sorted(parts[0]['isr'])}, want {sorted(target)}"
