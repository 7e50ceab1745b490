"""``trafka cluster describe`` and ``trafka topics describe`` against a real three-node cluster:
the quorum's voters, the brokers, a killed broker reported fenced, each partition's leader,
replicas and ISR moving after the kill, and back once the broker returns (it catches up, rejoins
the ISR, and the controller's automatic rebalancing gives preferred replicas their leadership
back); and SIGTERM is a controlled shutdown: the broker hands its leaderships over before it
stops, cleanly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.cluster.harness import ROOT, Cluster

OVERRIDES = ("broker.session.timeout.ms=2000", "broker.heartbeat.interval.ms=400", "min.insync.replicas=2",
             "leader.imbalance.check.interval.seconds=2", "replica.lag.time.max.ms=3000")


def _trafka(*args: str, may_fail: bool = False) -> str:
    """The command's output; with ``may_fail`` (while a killed node is still listed, a command
    may reach it and fail) an empty string for a failure."""
    done = subprocess.run([sys.executable, "-m", "broker", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    if may_fail and done.returncode != 0:
        return ""
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1:]:
        if not line or not line[0].isdigit():
            break
        rows.append(line.split())
    return rows


def test_cluster_and_topic_describe_follow_a_broker_failure(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, OVERRIDES) as cluster:
        cluster.start()
        cluster.wait_ready()
        bootstrap = cluster.nodes[1].bootstrap
        out = _trafka("cluster", "describe", "--bootstrap-server", bootstrap)
        voters = _rows(out, "NODE")
        assert sorted(int(r[0]) for r in voters) == [1, 2, 3] and all(r[1] == "voter" for r in voters), out
        brokers = _rows(out, "ID")
        assert [(int(r[0]), r[-1]) for r in brokers] == [(1, "active"), (2, "active"), (3, "active")], out

        _trafka("topics", "create", "--bootstrap-server", bootstrap, "--topic", "t", "--partitions", "3",
                "--replication-factor", "3")
        out = _trafka("topics", "describe", "--bootstrap-server", bootstrap, "--topic", "t")
        assert "ReplicationFactor: 3" in out, out
        leaders = {line.split("Partition: ")[1].split()[0]: line.split("Leader: ")[1].split()[0]
                   for line in out.splitlines() if "Leader:" in line}
        assert len(leaders) == 3 and "Isr: " in out, out

        # A config change goes through the controller and reaches every broker.
        _trafka("topics", "alter-config", "--bootstrap-server", bootstrap, "--topic", "t",
                "--config", "retention.ms=12345")
        for node in cluster.nodes.values():
            deadline = time.monotonic() + 10
            while "retention.ms=12345" not in _trafka("topics", "describe", "--bootstrap-server", node.bootstrap,
                                                      "--topic", "t"):
                assert time.monotonic() < deadline, f"node {node.node_id} never saw the new config"
                time.sleep(0.2)

        victim = 3 if cluster.nodes[1].node_id != 3 else 2
        cluster.kill(victim)
        deadline = time.monotonic() + 20
        while True:
            out = _trafka("cluster", "describe", "--bootstrap-server", bootstrap, may_fail=True)
            status = {int(r[0]): r[-1] for r in _rows(out, "ID")} if out else {}
            topics = _trafka("topics", "describe", "--bootstrap-server", bootstrap, "--topic", "t", may_fail=True)
            isrs = [line.split("Isr: ")[1].split()[0].split(",") for line in topics.splitlines() if "Isr:" in line]
            if topics and status.get(victim) == "offline" and f"Leader: {victim}\t" not in topics \
                    and all(str(victim) not in isr for isr in isrs):
                break
            assert time.monotonic() < deadline, (out, topics)
            time.sleep(0.5)
        # The fenced broker leads nothing and left every ISR; the others lead and keep the data.
        assert "fenced or offline" in out
        assert len(isrs) == 3 and all(len(isr) == 2 for isr in isrs), topics

        cluster.start(victim)
        deadline = time.monotonic() + 30
        while True:
            topics = _trafka("topics", "describe", "--bootstrap-server", bootstrap, "--topic", "t", may_fail=True)
            rows = [line for line in topics.splitlines() if "Leader:" in line]
            preferred = all(line.split("Leader: ")[1].split()[0] == line.split("Replicas: ")[1].split(",")[0]
                            and len(line.split("Isr: ")[1].split()[0].split(",")) == 3 for line in rows)
            if len(rows) == 3 and preferred:
                break
            assert time.monotonic() < deadline, topics
            time.sleep(0.5)

        leader_of_0 = int(rows[0].split("Leader: ")[1].split()[0])
        assert cluster.terminate(leader_of_0) == 0
        node = cluster.nodes[leader_of_0]
        assert "stopped cleanly" in node.log_paths[-1].read_text(), node.log_paths[-1].read_text()[-2000:]
        other = next(n for n in cluster.nodes.values() if n.node_id != leader_of_0)
        topics = _trafka("topics", "describe", "--bootstrap-server", other.bootstrap, "--topic", "t")
        assert f"Leader: {leader_of_0}\t" not in topics, topics
