"""A cluster of real ``trafka serve`` processes on loopback, every link through a fault proxy.

Node ``i`` listens on a client port and a controller port of its own; in front of each stands a
``FaultProxy``, and the node *advertises* the proxies (its broker endpoint in the metadata, and
every node's ``controller.quorum.voters`` entry), so clients, replica fetchers and the quorum all
reach node ``i`` through its two proxies. Cutting them isolates node ``i`` from everyone's
requests; SIGKILL, SIGSTOP/SIGCONT and restarts act on the process itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
START_S = 30.0
STOP_S = 10.0
PORT_RETRIES = 3


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago (all held open together while chosen, so
    the kernel cannot hand out one of them twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    client_proxy: FaultProxy
    controller_proxy: FaultProxy
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0
    log_paths: list[Path] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.client_proxy.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """``overrides`` apply to every node, then ``node_overrides[i]`` to node ``i`` (e.g. its
    ``broker.rack``); ``log_level`` is every node's ``--log-level``."""

    def __init__(self, base: Path, nodes: int = 3, overrides: tuple[str, ...] = (),
                 node_overrides: Mapping[int, tuple[str, ...]] | None = None, log_level: str = "INFO") -> None:
        self.base = base
        self.overrides = overrides
        self.node_overrides = dict(node_overrides or {})
        self.log_level = log_level
        self.nodes: dict[int, Node] = {}
        ports = free_ports(2 * nodes)
        for i in range(1, nodes + 1):
            port, cport = ports[2 * i - 2], ports[2 * i - 1]
            self.nodes[i] = Node(i, port, cport, FaultProxy(("127.0.0.1", port)).start(),
                                 FaultProxy(("127.0.0.1", cport)).start(), base / f"node-{i}")

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def _args(self, node: Node) -> list[str]:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_proxy.port}" for n in self.nodes.values())
        props = [
            f"node.id={node.node_id}",
            "process.roles=broker,controller",
            f"listeners=PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.client_proxy.port}",
            "controller.listener.names=CONTROLLER",
            f"controller.quorum.voters={voters}",
            f"log.dirs={node.data_dir}",
            f"default.replication.factor={min(3, len(self.nodes))}",
            *self.overrides,
            *self.node_overrides.get(node.node_id, ()),
        ]
        args = [sys.executable, "-m", "broker", "serve", "--log-level", self.log_level]
        for p in props:
            args += ["--override", p]
        return args

    def start(self, node_id: int | None = None) -> None:
        """Start one node (or all), waiting until each listens. A free port found by binding and
        releasing it can be taken by someone else before the node binds it: then the node gets
        new ports (its proxies follow) and starts again."""
        nodes = [self.nodes[node_id]] if node_id is not None else list(self.nodes.values())
        for node in nodes:
            self._spawn(node)
        for node in nodes:
            for _ in range(PORT_RETRIES):
                if self._wait_listening(node):
                    break
                taken = {p for n in self.nodes.values() for p in (n.port, n.controller_port)}
                node.port, node.controller_port = [p for p in free_ports(8) if p not in taken][:2]
                node.client_proxy.target = ("127.0.0.1", node.port)
                node.controller_proxy.target = ("127.0.0.1", node.controller_port)
                self._spawn(node)
            else:
                raise RuntimeError(f"node {node.node_id} did not start:\n"
                                   f"{node.log_paths[-1].read_text(errors='replace')[-3000:]}")

    def _spawn(self, node: Node) -> None:
        assert not node.running
        node.starts += 1
        out = self.base / f"node-{node.node_id}.{node.starts}.log"
        node.log_paths.append(out)
        with open(out, "wb") as f:
            node.proc = subprocess.Popen(self._args(node), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        node.paused = False

    def _wait_listening(self, node: Node) -> bool:
        """True once the node listens; False if it exited because a port was taken."""
        deadline = time.monotonic() + START_S
        while b"trafka: listening" not in node.log_paths[-1].read_bytes():
            if not node.running:
                text = node.log_paths[-1].read_bytes()
                if b"Address already in use" in text or b"must have a different port" in text:
                    return False
                raise RuntimeError(f"node {node.node_id} exited:\n"
                                   f"{node.log_paths[-1].read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {node.node_id} did not start within {START_S} s")
            time.sleep(0.02)
        return True

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every node is a registered, unfenced broker in the metadata."""
        import confluent_kafka.admin

        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if set(admin.list_topics(timeout=5).brokers) == set(self.nodes):
                    return
            except Exception:  # noqa: BLE001 (not up yet)
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not come up within {timeout_s} s:\n{self.logs()}")

    def kill(self, node_id: int) -> None:
        node = self.nodes[node_id]
        assert node.proc is not None
        if node.paused:
            node.proc.send_signal(signal.SIGCONT)
        node.proc.kill()
        node.proc.wait()
        node.paused = False

    def pause(self, node_id: int) -> None:
        node = self.nodes[node_id]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)
        node.paused = True

    def resume(self, node_id: int) -> None:
        node = self.nodes[node_id]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGCONT)
        node.paused = False

    def cut(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.client_proxy.cut("both")
        node.controller_proxy.cut("both")

    def heal(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.client_proxy.heal()
        node.controller_proxy.heal()

    def terminate(self, node_id: int) -> int:
        """SIGTERM (a clean, controlled shutdown); the exit code."""
        node = self.nodes[node_id]
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        return node.proc.wait(timeout=STOP_S * 2)

    def stop(self) -> None:
        """End every node at once (SIGKILL: the data directories are thrown away, and a clean
        shutdown of the last nodes would wait for a quorum that is gone)."""
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                if node.paused:
                    node.proc.send_signal(signal.SIGCONT)
                node.proc.send_signal(signal.SIGKILL)
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=STOP_S)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.client_proxy.stop()
                node.controller_proxy.stop()

    def logs(self) -> str:
        out = []
        for node in self.nodes.values():
            for p in node.log_paths:
                out.append(f"==== {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def errors_logged(self) -> list[str]:
        lines = []
        for node in self.nodes.values():
            for p in node.log_paths:
                lines += [f"{p.name}: {line}" for line in p.read_text(errors="replace").splitlines()
                          if " ERROR " in line or "Traceback" in line]
        return lines

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
