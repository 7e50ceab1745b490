"""A real ``python -m broker serve`` process for tests that need one, shared by every such test.

``running_broker(base, overrides)`` starts a broker on an ephemeral loopback port with its data in
``base/data``, waits for its "listening" line, yields a ``BrokerProcess``, and on exit stops it
with SIGTERM (a clean shutdown) and, when ``check_log`` is set, fails if the broker logged an
error or a traceback.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROKER_START_S = 30.0
BROKER_STOP_S = 10.0
_LISTENING = re.compile(rb"trafka: listening on 127\.0\.0\.1:(\d+)")


@dataclass
class BrokerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def running_broker(base: Path, overrides: Sequence[str] = (), *, check_log: bool = False) -> Iterator[BrokerProcess]:
    log_dir = base / "data"
    out_path, err_path = base / "stdout", base / "stderr"
    args = [sys.executable, "-m", "broker", "serve", "--override", "listeners=PLAINTEXT://127.0.0.1:0",
            "--override", f"log.dirs={log_dir}", "--override", "node.id=1"]
    for o in overrides:
        args += ["--override", o]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + BROKER_START_S
        while (m := _LISTENING.search(out_path.read_bytes())) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"broker did not start:\n{err_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.02)
        yield BrokerProcess(proc, int(m.group(1)), log_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=BROKER_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if check_log:
        errors = [line for line in err_path.read_text(errors="replace").splitlines()
                  if " ERROR " in line or "Traceback" in line]
        assert errors == [], "\n".join(errors[-20:])
