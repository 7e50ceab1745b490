"""The compatibility matrix: every client against a real broker process, scenario by scenario.

Goal: what each real client produces is exactly what it (and the broker) gives back, the
broker's answers to offset queries, bad offsets, missing topics and a restart are Kafka's, and
its consumer groups share out partitions, move them and keep offsets as Kafka's do. One
test per (client, scenario); see scenarios.py for the data and the checks, harness.py for how the
processes run. A client that is not installed fails its tests when CI is set (a green matrix must
mean the clients ran) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os

import pytest

import scenarios
from clients import BY_NAME, CLIENTS
from harness import Harness, advertised_apis, read_back, stored_batches, topic_exists

# Cells that need a broker feature not everywhere yet: (client, scenario) -> (the API whose
# absence from the broker's ApiVersions means the feature is missing, why the cell fails then).
# While the broker lacks the API the cell is a strict xfail ("not yet" in the table; a pass would
# fail the run); once the broker advertises it, an ordinary test that must pass.
NEEDS_API = {
    (client, "group_kip848"): (68, "KIP-848 not implemented yet: the broker does not advertise "
                                   "ConsumerGroupHeartbeat (API 68)")
    for client in ("java", "confluent-kafka")
}
CASES = [(client.name, scenario) for client in CLIENTS for scenario in scenarios.SCENARIOS]


def _ok(line: dict) -> dict:
    assert line["status"] == "ok", f"driver step {line['step']} {line['status']}: {line.get('error')}"
    return line["result"]


@pytest.mark.parametrize(("client_name", "scenario"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_compat(client_name: str, scenario: str, harness: Harness, request: pytest.FixtureRequest) -> None:
    client = BY_NAME[client_name]
    if scenario in client.not_applicable:
        pytest.skip(f"N/A: {client.not_applicable[scenario]}")
    missing = client.missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{client_name} is required in CI: {missing}")
        pytest.skip(missing)

    if (client_name, scenario) in NEEDS_API:
        api_key, reason = NEEDS_API[client_name, scenario]
        if api_key not in advertised_apis(harness.broker_for(client).bootstrap):
            request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))

    if scenario in scenarios.GROUP_SCENARIOS:
        failure = harness.group(client, scenario)
        assert failure is None, failure
        print(harness.groups[client_name].details.get(scenario, ""))  # what it saw, for -rP
        return

    if scenario == "restart":
        params, produce_line, consume_line = harness.restart(client)
        result = _ok(produce_line) | _ok(consume_line)
        scenarios.check_round_trip(params, result, client.partitioner)
        return

    step, line = harness.step(client, scenario)
    result = _ok(line)
    broker = harness.broker_for(client)
    if scenario == "metadata":
        scenarios.check_metadata(step.params, result, "127.0.0.1", broker.port)
    elif scenario == "admin":
        scenarios.check_admin(step.params, result)
    elif scenario in ("produce_consume", "idempotent"):
        scenarios.check_round_trip(step.params, result, client.partitioner)
    elif scenario.startswith("compression_"):
        scenarios.check_round_trip(step.params, result, client.partitioner)
        # What the client compressed must be what another client reads, stored as it was sent.
        topic, partitions = step.params["topic"], step.params["partitions"]
        scenarios.check_stored_codec(step.params, stored_batches(broker.bootstrap, topic, partitions))
        again = read_back(broker.bootstrap, topic, partitions, len(step.params["messages"]))
        try:
            scenarios.check_round_trip(step.params, {"consumed": again}, client.partitioner)
        except AssertionError as exc:
            raise AssertionError(f"read back by kafka-python: {exc}") from None
    elif scenario == "large_message":
        scenarios.check_large(step.params, result)
    elif scenario == "offsets":
        scenarios.check_offsets(step.params, result, harness.seed_base_ms["offsets"])
    elif scenario == "out_of_range":
        scenarios.check_out_of_range(result)
    elif scenario == "missing_topic":
        scenarios.check_missing_topic(result)
        assert broker.alive(), f"the broker died:\n{broker.log_tail()}"
        assert not topic_exists(broker.bootstrap, step.params["topic"]), "the missing topic was created"
    else:
        raise AssertionError(f"no check for scenario {scenario}")
