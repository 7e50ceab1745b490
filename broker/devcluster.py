"""``trafka dev-cluster``: a cluster of real ``trafka serve`` processes on one machine, for trying.

    trafka dev-cluster --nodes 3 [--dir ./trafka-dev] [--port 9092] [--override key=value ...]

Node ``i`` (1-based) runs in combined mode (broker and controller) with ``node.id=i``, its client
listener on ``port + i - 1``, its controller listener on ``port + 100 + i - 1``, its data in
``DIR/node-i``, and every node in ``controller.quorum.voters``. Each node's output is printed with
a ``[node i]`` prefix. Ctrl-C (or SIGTERM) stops every node cleanly; if one node exits on its
own, the others are stopped too and the exit code says so. The plan (``node_overrides``) is a
pure function so tests can check it without starting anything.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

PORT_DEFAULT = 9092
CONTROLLER_PORT_OFFSET = 100
NODES_MAX = 9
STOP_WAIT_S = 15.0


def node_overrides(node_id: int, nodes: int, base_dir: str, port: int,
                   host: str = "127.0.0.1") -> list[str]:
    """The ``--override`` values that make node ``node_id`` (1-based) a member of the cluster."""
    voters = ",".join(f"{i}@{host}:{port + CONTROLLER_PORT_OFFSET + i - 1}" for i in range(1, nodes + 1))
    client_port = port + node_id - 1
    controller_port = port + CONTROLLER_PORT_OFFSET + node_id - 1
    return [
        f"node.id={node_id}",
        "process.roles=broker,controller",
        f"listeners=PLAINTEXT://{host}:{client_port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{client_port}",
        "controller.listener.names=CONTROLLER",
        f"controller.quorum.voters={voters}",
        f"log.dirs={os.path.join(base_dir, f'node-{node_id}')}",
        f"default.replication.factor={min(3, nodes)}",
        f"offsets.topic.replication.factor={min(3, nodes)}",
        f"min.insync.replicas={2 if nodes >= 3 else 1}",
    ]


def add_command(sub: Any) -> None:
    p = sub.add_parser("dev-cluster", help="run a cluster of N nodes on this machine, for trying")
    p.add_argument("--nodes", type=int, default=3, help=f"how many nodes (1-{NODES_MAX}, default 3)")
    p.add_argument("--dir", default="./trafka-dev", help="where the nodes keep their data")
    p.add_argument("--port", type=int, default=PORT_DEFAULT,
                   help=f"node 1's client port; node i uses port+i-1 (default {PORT_DEFAULT})")
    p.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a property for every node (repeatable)")
    p.add_argument("--log-level", default="INFO", help="every node's log level (default INFO)")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= NODES_MAX:
        print(f"trafka: --nodes must be between 1 and {NODES_MAX}", file=sys.stderr)
        return 1
    procs: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for i in range(1, args.nodes + 1):
            cmd = [sys.executable, "-m", "broker", "serve", "--log-level", args.log_level]
            for o in node_overrides(i, args.nodes, args.dir, args.port) + list(args.override):
                cmd += ["--override", o]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(proc)
            threading.Thread(target=_relay, args=(proc, f"[node {i}] "), daemon=True).start()
        bootstrap = ",".join(f"127.0.0.1:{args.port + i}" for i in range(args.nodes))
        print(f"trafka dev-cluster: {args.nodes} nodes starting; bootstrap servers {bootstrap}", flush=True)
        code = 0
        while not stopping.is_set():
            exited = [(i, p.returncode) for i, p in enumerate(procs, 1) if p.poll() is not None]
            if exited:
                i, rc = exited[0]
                print(f"trafka dev-cluster: node {i} exited with code {rc}; stopping the others",
                      file=sys.stderr, flush=True)
                code = 1
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        code = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_all(procs)
    return code


def _relay(proc: subprocess.Popen[bytes], prefix: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def _stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
