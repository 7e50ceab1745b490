"""Fixtures of the compatibility matrix, and the matrix file a run leaves behind.

``harness`` (session scope) owns the broker processes and driver runs (harness.py). Every test of
test_matrix.py records its outcome; when the session ends the outcomes are written to
``compat-tests/matrix.json`` (``matrix-<broker>.json`` when the broker is not Trafka), which
``python compat-tests/matrix.py`` renders into docs/compatibility.md.
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

import scenarios  # noqa: E402
from broker_process import broker_kind  # noqa: E402
from clients import CLIENTS  # noqa: E402
from harness import Harness  # noqa: E402

OUTCOMES: dict[tuple[str, str], dict[str, str]] = {}
HARNESS: list[Harness] = []


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
    wanted = {(c.name, s) for c in CLIENTS for s in scenarios.SCENARIOS}
    if not OUTCOMES:
        return
    if not wanted <= OUTCOMES.keys():
        # A partial run (-k, -x, a crash) must not pass for the matrix.
        print(f"\ncompat matrix: {len(wanted - OUTCOMES.keys())} cells not run; {matrix_path(broker_kind()).name} "
              "left as it was")
        return
    kind = broker_kind()
    versions = HARNESS[0].versions if HARNESS else {}
    results: dict[str, dict[str, Any]] = {}
    for client in CLIENTS:
        row: dict[str, Any] = {}
        for scenario in scenarios.SCENARIOS:
            if scenario in client.not_applicable:
                row[scenario] = {"outcome": "n/a", "detail": client.not_applicable[scenario]}
            else:
                row[scenario] = OUTCOMES.get((client.name, scenario), {"outcome": "not run"})
        results[client.name] = row
    matrix = {
        "broker": kind,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "clients": {c.name: {"version": versions.get(c.name)} for c in CLIENTS},
        "scenarios": list(scenarios.SCENARIOS),
        "descriptions": scenarios.DESCRIPTIONS,
        "results": results,
    }
    matrix_path(kind).write_text(json.dumps(matrix, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
