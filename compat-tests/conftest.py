"""Fixtures of the compatibility matrix, and the matrix files a run leaves behind.

``harness`` (session scope) owns the broker processes and driver runs (harness.py); ``cluster_run``
(session scope) the three-node cluster of the cluster rows (cluster_harness.py). Every test of
test_matrix.py and test_cluster_matrix.py records its outcome; when the session ends the outcomes
are written to ``compat-tests/matrix.json`` (``matrix-<broker>.json`` when the broker is not
Trafka) and ``compat-tests/cluster-matrix.json``, each only when all of its cells ran, and
``python compat-tests/matrix.py`` renders them into docs/compatibility.md.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cluster_scenarios  # noqa: E402
import scenarios  # noqa: E402
from broker_process import broker_kind  # noqa: E402
from clients import CLIENTS  # noqa: E402
from cluster_harness import ClusterRun  # noqa: E402
from harness import Harness  # noqa: E402

OUTCOMES: dict[tuple[str, str], dict[str, str]] = {}
HARNESS: list[Harness] = []
CLUSTER_RUNS: list[ClusterRun] = []
CLUSTER_MATRIX = HERE / "cluster-matrix.json"


def matrix_path(kind: str) -> Path:
    return HERE / ("matrix.json" if kind == "trafka" else f"matrix-{kind.split(':')[0]}.json")


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("compat"))
    HARNESS.append(h)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="session")
def cluster_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRun]:
    """The cluster run, for the clients whose cluster tests were selected and can run here."""
    selected = {spec.params["client_name"] for item in request.session.items
                if (spec := getattr(item, "callspec", None)) is not None
                and spec.params.get("scenario") in cluster_scenarios.SCENARIOS}
    clients = [c for c in CLIENTS if c.name in selected and c.missing() is None]
    run = ClusterRun(tmp_path_factory.mktemp("cluster"), clients)
    CLUSTER_RUNS.append(run)
    try:
        yield run
    finally:
        run._stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    callspec = getattr(item, "callspec", None)
    if callspec is None or "scenario" not in callspec.params:
        return report
    key = (callspec.params["client_name"], callspec.params["scenario"])
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail") and report.skipped:
            # A strict xfail that failed as expected: shown as "not yet", with why it fails.
            message = getattr(getattr(report.longrepr, "reprcrash", None), "message", "") or ""
            detail = report.wasxfail + (f"; fails with: {message.splitlines()[0][:300]}" if message else "")
            OUTCOMES[key] = {"outcome": "xfail", "detail": detail}
        elif report.passed:
            OUTCOMES[key] = {"outcome": "pass"}
        elif report.skipped:
            reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
            reason = reason.removeprefix("Skipped: ")
            outcome = "n/a" if reason.startswith("N/A: ") else "skipped"
            OUTCOMES[key] = {"outcome": outcome, "detail": reason.removeprefix("N/A: ")}
        else:
            message = getattr(report.longrepr, "reprcrash", None)
            detail = message.message if message is not None else str(report.longrepr)
            OUTCOMES[key] = {"outcome": "fail", "detail": detail.splitlines()[0][:300] if detail else ""}
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not OUTCOMES:
        return
    kind = broker_kind()
    _write_matrix(matrix_path(kind), kind, scenarios.SCENARIOS, scenarios.DESCRIPTIONS,
                  HARNESS[0].versions if HARNESS else {})
    if kind == "trafka" and any(s in cluster_scenarios.SCENARIOS for _, s in OUTCOMES):
        run = CLUSTER_RUNS[0] if CLUSTER_RUNS else None
        for key, detail in (run.details if run else {}).items():  # what a passing cell saw
            if OUTCOMES.get(key, {}).get("outcome") == "pass":
                OUTCOMES[key] = {"outcome": "pass", "detail": detail}
        _write_matrix(CLUSTER_MATRIX, kind, cluster_scenarios.SCENARIOS, cluster_scenarios.DESCRIPTIONS,
                      run.versions if run else {},
                      {"nodes": len(cluster_scenarios.NODES), "measured": run.measured if run else {}})


def _write_matrix(path: Path, broker: str, wanted_scenarios: tuple[str, ...], descriptions: dict[str, str],
                  versions: dict[str, str], extra: dict[str, Any] | None = None) -> None:
    wanted = {(c.name, s) for c in CLIENTS for s in wanted_scenarios}
    if not wanted & OUTCOMES.keys():
        return
    if not wanted <= OUTCOMES.keys():
        # A partial run (-k, -x, a crash) must not pass for the matrix.
        print(f"\ncompat matrix: {len(wanted - OUTCOMES.keys())} cells not run; {path.name} left as it was")
        return
    results: dict[str, dict[str, Any]] = {}
    for client in CLIENTS:
        row: dict[str, Any] = {}
        for scenario in wanted_scenarios:
            if scenario in client.not_applicable:
                row[scenario] = {"outcome": "n/a", "detail": client.not_applicable[scenario]}
            else:
                row[scenario] = OUTCOMES.get((client.name, scenario), {"outcome": "not run"})
        results[client.name] = row
    matrix = {
        "broker": broker,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "clients": {c.name: {"version": versions.get(c.name)} for c in CLIENTS},
        "scenarios": list(wanted_scenarios),
        "descriptions": descriptions,
        "results": results,
        **(extra or {}),
    }
    path.write_text(json.dumps(matrix, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
