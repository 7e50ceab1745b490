"""The cluster matrix's own checks, without a cluster: each rejects what a broken broker would show.

Goal: a cell of the cluster matrix passes only when the broker behaved, so every check here is fed
a good result (it must pass) and the same result broken the way a broker could break it (it must
fail, saying what differed). The harness's Metadata reader is checked against kafka-python's
encoder of the same response.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

import cluster_scenarios as cs
from cluster_harness import PartitionView, parse_metadata_v5

ADDRESSES = {1: ("127.0.0.1", 9001), 2: ("127.0.0.1", 9002), 3: ("127.0.0.1", 9003)}
ROLES = cs.Roles.choose(controller=1)  # victim 2, survivors 1 and 3


def _failover_result(sent: int = 6) -> dict[str, Any]:
    return {"sent": sent, "acked": [[i, i] for i in range(sent)], "failed": [],
            "consumed": [[i, cs.failover_value(i)] for i in range(sent)], "client_errors": ["retried"], "fatal": []}


def test_roles_never_kill_the_controller() -> None:
    for controller in cs.NODES:
        roles = cs.Roles.choose(controller)
        assert roles.victim != controller
        assert sorted((roles.victim, roles.a, roles.b)) == list(cs.NODES)


def test_failover_check_accepts_a_clean_run_and_a_redelivery() -> None:
    assert "6 sent" in cs.check_failover(_failover_result())
    again = _failover_result()
    again["consumed"] = again["consumed"][:4] + again["consumed"][2:]  # a group consumer starting over at 2
    assert "2 offsets handed to the consumer twice" in cs.check_failover(again)
    kcat = _failover_result()
    kcat["acked"] = None  # no per-record acknowledgements
    cs.check_failover(kcat)


def _lost(r: dict[str, Any]) -> None:
    r["consumed"] = r["consumed"][:-1]


def _duplicated(r: dict[str, Any]) -> None:  # the same record written twice: idempotence broken
    r["consumed"].append([6, cs.failover_value(5)])


def _reordered(r: dict[str, Any]) -> None:
    r["consumed"][2][1], r["consumed"][3][1] = r["consumed"][3][1], r["consumed"][2][1]


def _moved(r: dict[str, Any]) -> None:  # acknowledged at one offset, found at another
    r["acked"][1] = [1, 4]


def _failed(r: dict[str, Any]) -> None:
    r["failed"] = [[5, "NotEnoughReplicasError"]]
    r["acked"] = r["acked"][:5]
    r["consumed"] = r["consumed"][:5]


def _unresolved(r: dict[str, Any]) -> None:
    r["acked"] = r["acked"][:5]


def _rewritten(r: dict[str, Any]) -> None:  # an offset read twice with different values: a lost tail rewritten
    r["consumed"].append([3, cs.failover_value(5)])


def _gap(r: dict[str, Any]) -> None:
    r["consumed"] = [[o + (1 if o >= 3 else 0), v] for o, v in r["consumed"]]
    r["acked"] = [[i, o + (1 if o >= 3 else 0)] for i, o in r["acked"]]


def _fatal(r: dict[str, Any]) -> None:
    r["fatal"] = ["consumer: KafkaException: fatal"]


@pytest.mark.parametrize("corrupt", [_lost, _duplicated, _reordered, _moved, _failed, _unresolved, _rewritten,
                                     _gap, _fatal])
def test_failover_check_rejects_a_broken_run(corrupt: Any) -> None:
    result = _failover_result()
    corrupt(result)
    with pytest.raises(AssertionError):
        cs.check_failover(result)


def _metadata(down: tuple[int, ...] = ()) -> dict[str, Any]:
    """What a correct broker shows for the metadata topic with ``down`` killed."""
    assignment = cs.metadata_assignment(ROLES)
    parts = []
    for pid, replicas in enumerate(assignment):
        live = [r for r in replicas if r not in down]
        parts.append({"partition": pid, "leader": live[0], "replicas": list(replicas), "isr": list(reversed(live)),
                      "offline": [r for r in replicas if r in down]})
    brokers = [{"node_id": n, "host": h, "port": p} for n, (h, p) in ADDRESSES.items() if n not in down]
    return {"brokers": brokers, "partitions": parts}


def test_metadata_checks_accept_a_correct_broker() -> None:
    assignment = cs.metadata_assignment(ROLES)
    cs.check_metadata(_metadata(), assignment, ADDRESSES)
    cs.check_offline(_metadata(), assignment)
    down = (ROLES.victim,)
    cs.check_metadata(_metadata(down), assignment, ADDRESSES, down)
    cs.check_offline(_metadata(down), assignment, down)


@pytest.mark.parametrize("corrupt", [
    lambda m: m["brokers"].append({"node_id": ROLES.victim, "host": "127.0.0.1", "port": 9002}),  # still listed
    lambda m: m["partitions"][1].update(leader=ROLES.victim),  # led by the dead node
    lambda m: m["partitions"][0]["isr"].append(ROLES.victim),  # ISR not shrunk
    lambda m: m["partitions"][0].update(replicas=sorted(m["partitions"][0]["replicas"])),  # replicas reordered
    lambda m: m["partitions"].pop(),  # a partition missing
    lambda m: m["partitions"][0].update(leader=-1),  # leaderless
])
def test_metadata_check_rejects_a_broken_view_after_a_kill(corrupt: Any) -> None:
    result = _metadata((ROLES.victim,))
    corrupt(result)
    with pytest.raises(AssertionError):
        cs.check_metadata(result, cs.metadata_assignment(ROLES), ADDRESSES, (ROLES.victim,))


def test_metadata_check_wants_the_preferred_leader_when_all_are_up() -> None:
    result = _metadata()
    result["partitions"][0]["leader"] = result["partitions"][0]["replicas"][1]
    with pytest.raises(AssertionError, match="leader"):
        cs.check_metadata(result, cs.metadata_assignment(ROLES), ADDRESSES)


@pytest.mark.parametrize("offline", [[], None, [ROLES.a]])
def test_offline_check_wants_exactly_the_dead_replica(offline: list[int] | None) -> None:
    result = _metadata((ROLES.victim,))
    result["partitions"][0]["offline"] = offline
    with pytest.raises(AssertionError):
        cs.check_offline(result, cs.metadata_assignment(ROLES), (ROLES.victim,))


def test_describe_check_wants_the_cluster_id_and_a_live_controller() -> None:
    good = _metadata() | {"cluster_id": "abc", "controller_id": 1}
    cs.check_describe(good, cs.metadata_assignment(ROLES), ADDRESSES, "abc")
    for bad in ({"cluster_id": "other"}, {"controller_id": ROLES.victim}):
        result = _metadata((ROLES.victim,)) | {"cluster_id": "abc", "controller_id": ROLES.a} | bad
        with pytest.raises(AssertionError):
            cs.check_describe(result, cs.metadata_assignment(ROLES), ADDRESSES, "abc", (ROLES.victim,))
    one_broker = copy.deepcopy(good)
    one_broker["brokers"] = one_broker["brokers"][:1]  # DescribeCluster naming only the broker asked
    with pytest.raises(AssertionError, match="brokers"):
        cs.check_describe(one_broker, cs.metadata_assignment(ROLES), ADDRESSES, "abc")


def test_elect_check() -> None:
    cs.check_elect({"error": None, "leader_after": 2}, 2)
    with pytest.raises(AssertionError):
        cs.check_elect({"error": None, "leader_after": 1}, 2)
    with pytest.raises(AssertionError):
        cs.check_elect({"error": "PREFERRED_LEADER_NOT_AVAILABLE", "leader_after": 2}, 2)


def test_reassign_checks() -> None:
    before, target = cs.reassign_assignment(ROLES)[0], cs.reassign_target(ROLES)
    moving = {"ongoing": [{"partition": 0, "replicas": [*target, ROLES.a], "adding": [ROLES.victim],
                           "removing": [ROLES.a]}]}
    cs.check_reassign_started({"error": None}, moving, target, before)
    wrong: list[dict[str, Any]] = [{"ongoing": []}, {"ongoing": [{**moving["ongoing"][0], "adding": []}]},
                                   {"ongoing": [{**moving["ongoing"][0], "replicas": target}]}]
    for bad in wrong:
        with pytest.raises(AssertionError):
            cs.check_reassign_started({"error": None}, bad, target, before)
    with pytest.raises(AssertionError):
        cs.check_reassign_started({"error": "INVALID_REPLICA_ASSIGNMENT"}, moving, target, before)
    done = {"partitions": [{"partition": 0, "leader": ROLES.victim, "replicas": target, "isr": target}]}
    cs.check_reassign_done({"ongoing": []}, done, target)
    with pytest.raises(AssertionError):
        cs.check_reassign_done(moving, done, target)
    with pytest.raises(AssertionError):
        cs.check_reassign_done({"ongoing": []}, {"partitions": [{**done["partitions"][0], "replicas": before}]},
                               target)


def test_metadata_reader_agrees_with_kafka_pythons_encoder() -> None:
    from kafka.protocol.metadata import MetadataResponse as R

    response = R(version=5, throttle_time_ms=0, cluster_id="cid", controller_id=3,
                 brokers=[R.MetadataResponseBroker(version=5, node_id=n, host="127.0.0.1", port=9000 + n, rack=rack)
                          for n, rack in ((1, None), (3, "r1"))],
                 topics=[R.MetadataResponseTopic(version=5, error_code=0, name="t", is_internal=False, partitions=[
                     R.MetadataResponseTopic.MetadataResponsePartition(
                         version=5, error_code=0, partition_index=p, leader_id=leader, replica_nodes=[1, 2, 3],
                         isr_nodes=isr, offline_replicas=[2])
                     for p, leader, isr in ((0, 1, [1, 3]), (1, 3, [3]))])])
    view = parse_metadata_v5(b"\x00\x00\x00\x07" + bytes(response.encode(version=5)))
    assert (view.cluster_id, view.controller, view.brokers) == ("cid", 3, frozenset({1, 3}))
    assert view.topics == {"t": {0: PartitionView(1, (1, 2, 3), (1, 3)), 1: PartitionView(3, (1, 2, 3), (3,))}}
