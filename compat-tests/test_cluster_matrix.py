"""The cluster rows of the compatibility matrix: every client against a real three-node Trafka cluster.

Goal: through a leader's SIGKILL and restart a client's acknowledged, idempotent writes are all read
back once and in order, and only retriable errors reach it; its Metadata shows brokers, leaders,
replicas, ISR and offline replicas as they change when a node dies; and its admin client
describes the cluster, elects preferred leaders and moves replicas. One test per (client, row);
cluster_scenarios.py has the checks, cluster_harness.py the processes and the order of events. The
whole run happens once, on the first test, for every client whose tests were selected.
"""

from __future__ import annotations

import os

import pytest

import cluster_scenarios
from broker_process import broker_kind
from clients import BY_NAME, CLIENTS
from cluster_harness import ClusterRun

CASES = [(client.name, scenario) for client in CLIENTS for scenario in cluster_scenarios.SCENARIOS]


@pytest.mark.parametrize(("client_name", "scenario"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_cluster(client_name: str, scenario: str, cluster_run: ClusterRun) -> None:
    client = BY_NAME[client_name]
    if scenario in client.not_applicable:
        pytest.skip(f"N/A: {client.not_applicable[scenario]}")
    if broker_kind() != "trafka":
        pytest.skip(f"the cluster rows run Trafka's own cluster, not {broker_kind()}")
    missing = client.missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{client_name} is required in CI: {missing}")
        pytest.skip(missing)
    failure = cluster_run.outcome(client_name, scenario)
    assert failure is None, failure
    print(cluster_run.details.get((client_name, scenario), ""))  # what it saw, for -rP
