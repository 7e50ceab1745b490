"""Goal: the broker benchmark never rots. Its ``--quick`` run (Trafka only, tiny sizes, no peers)
goes through every workload against a real broker process and ends with one JSON line that parses
and holds every figure, each a positive number; the ``python -m tools.bench`` dispatcher finds it.

Timings are never asserted, only that there are some. Broker CPU figures may be 0: the kernel
counts CPU time in 10 ms ticks and the quick run's windows are that short.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tools.bench.broker import FIGURES

ROOT = Path(__file__).resolve().parent.parent
QUICK_RUN_S_MAX = 120  # it takes under 20 s; the margin is for a loaded CI machine
TICK_BOUND = {f.key for f in FIGURES if f.key.startswith("cpu_s_per_GB")}


def test_quick_run_prints_every_figure() -> None:
    out = subprocess.run([sys.executable, "-m", "tools.bench", "broker", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=QUICK_RUN_S_MAX)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bench"] == "broker" and report["quick"] is True
    assert list(report["brokers"]) == ["trafka"]  # no peers in the smoke run
    figures = report["brokers"]["trafka"]["figures"]
    for f in FIGURES:
        s = figures[f.key]
        assert set(s) >= {"median", "min", "max", "n"}, f.key
        assert s["min"] <= s["median"] <= s["max"], f.key
        if f.key in TICK_BOUND:
            assert s["median"] >= 0, f.key
        else:
            assert s["median"] > 0, f.key
    assert report["targets"]["scale_rss_MB"]["met"] in (True, False)
    assert "produce 1 KiB, acks=1" in out.stdout  # and the table came first


def test_dispatcher_lists_the_benchmarks() -> None:
    out = subprocess.run([sys.executable, "-m", "tools.bench"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    for name in ("codec", "storage", "broker"):
        assert name in out.stderr
