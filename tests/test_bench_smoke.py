"""Goal: the broker benchmark never rots. Its ``--quick`` run (Trafka only, tiny sizes, no peers),
started the way a user starts it (``trafka bench broker --quick``), goes through every workload
against a real broker process and ends with one JSON line that parses and holds every figure,
each a positive number, and names the consumer it used; the other consumer still runs; and
``trafka bench`` and ``python -m tools.bench`` are one and the same.

Timings are never asserted, only that there are some. Broker CPU figures may be 0: the kernel
counts CPU time in 10 ms ticks and the quick run's windows are that short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.bench.broker import FIGURES

ROOT = Path(__file__).resolve().parent.parent
QUICK_RUN_S_MAX = 120  # it takes under 20 s; the margin is for a loaded CI machine
TICK_BOUND = {f.key for f in FIGURES if f.key.startswith("cpu_s_per_GB")}
TRAFKA = [sys.executable, "-m", "broker"]  # the console script's entry point
CONSUME_FIGURES = ("consume_100B_MBps", "consume_100B_first_MBps", "consume_1KiB_MBps", "consume_1KiB_first_MBps")


def _report(args: list[str]) -> tuple[dict[str, Any], str]:
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=QUICK_RUN_S_MAX)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout


def test_quick_run_prints_every_figure() -> None:
    report, stdout = _report([*TRAFKA, "bench", "broker", "--quick"])
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
    assert "produce 1 KiB, acks=1" in stdout  # and the table came first
    # The default consumer: kcat wherever it is installed, one process per partition.
    consumer = report["consumer"]
    assert consumer["kind"] == ("kcat" if shutil.which("kcat") else "confluent")
    assert consumer["processes"] == report["sizes"]["partitions"]
    assert consumer["librdkafka"]
    assert f"consume figures with {consumer['kind']}" in stdout


def test_the_confluent_consumer_still_runs() -> None:
    report, _ = _report([sys.executable, "-m", "tools.bench", "broker", "--quick", "--workloads", "consume",
                         "--consumer", "confluent", "--consumer-processes", "1"])
    assert report["consumer"]["kind"] == "confluent" and report["consumer"]["processes"] == 1
    figures = report["brokers"]["trafka"]["figures"]
    for key in CONSUME_FIGURES:
        assert figures[key]["median"] > 0, key
    assert "produce_p99_ms" not in figures and "scale_rss_MB" not in figures  # only the workloads asked for


def test_a_consumer_that_cannot_run_is_refused_up_front() -> None:
    out = subprocess.run([*TRAFKA, "bench", "broker", "--quick", "--consumer-processes", "4"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--consumer-processes must be from 1 to the 3 partitions" in out.stderr


def test_trafka_bench_is_python_m_tools_bench() -> None:
    direct = subprocess.run([sys.executable, "-m", "tools.bench"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    via_cli = subprocess.run([*TRAFKA, "bench"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert direct.returncode == via_cli.returncode == 2
    assert direct.stderr == via_cli.stderr and direct.stdout == via_cli.stdout
    for name in ("codec", "storage", "broker"):
        assert name in direct.stderr
    listed = subprocess.run([*TRAFKA, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "bench" in listed.stdout
