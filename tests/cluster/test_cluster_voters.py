"""A voter of a real three-node cluster loses its disk (KIP-853): the voters' directory ids are
recorded in the metadata log soon after the cluster starts; the wiped voter comes back with a new
directory id and ``trafka cluster describe`` shows it as an observer; ``trafka cluster
remove-voter`` (its old directory) and then ``add-voter`` (its new one) make it a voter again,
and the cluster still creates topics."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.cluster.harness import Cluster
from tests.cluster.test_cluster_cli import OVERRIDES, _rows, _trafka


def _quorum(bootstrap: str) -> tuple[int, dict[int, tuple[str, str, int]]]:
    """(leader, {node: (role, directory id, lag)}) from ``trafka cluster describe``; (-1, {}) on a failure."""
    out = _trafka("cluster", "describe", "--bootstrap-server", bootstrap, may_fail=True)
    if not out or "Quorum: leader" not in out:
        return -1, {}
    leader = int(out.split("Quorum: leader ")[1].split(",")[0])
    return leader, {int(r[0]): (r[1], r[2], int(r[4])) for r in _rows(out, "NODE")}


def _wait(what: str, predicate, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_wiped_voter_is_an_observer_until_removed_and_added_back(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, OVERRIDES) as cluster:
        cluster.start()
        cluster.wait_ready()
        bootstrap = cluster.nodes[1].bootstrap

        def recorded() -> tuple[int, dict[int, tuple[str, str, int]]] | None:
            leader, rows = _quorum(bootstrap)
            ok = len(rows) == 3 and all(role == "voter" and d != "-" for role, d, _ in rows.values())
            return (leader, rows) if ok else None

        leader, rows = _wait("the voters' directory ids recorded", recorded)
        victim = next(n for n in (3, 2) if n != leader)
        old_dir = rows[victim][1]
        cluster.kill(victim)
        shutil.rmtree(cluster.nodes[victim].data_dir)
        cluster.nodes[victim].data_dir.mkdir()
        cluster.start(victim)

        def observer() -> str | None:
            _, rows = _quorum(bootstrap)
            row = rows.get(victim)
            return row[1] if row is not None and row[0] == "observer" and row[1] != old_dir and row[2] == 0 else None

        new_dir = _wait("the wiped voter back as a caught-up observer", observer)
        _, rows = _quorum(bootstrap)
        assert sum(role == "voter" for role, _, _ in rows.values()) == 2, rows
        assert rows[victim][0] == "observer", "its old directory id is still the voter until it is removed"

        out = _trafka("cluster", "remove-voter", "--bootstrap-server", bootstrap, "--id", str(victim),
                      "--directory-id", old_dir)
        assert f"Removed voter {victim}" in out, out
        _wait("the observer caught up after the removal", observer)
        port = cluster.nodes[victim].controller_port
        out = _trafka("cluster", "add-voter", "--bootstrap-server", bootstrap, "--id", str(victim),
                      "--directory-id", new_dir, "--endpoint", f"127.0.0.1:{port}")
        assert f"Added voter {victim}" in out, out

        def voter_again() -> bool:
            _, rows = _quorum(bootstrap)
            return rows.get(victim, ("", "", 0))[:2] == ("voter", new_dir) and \
                sum(role == "voter" for role, _, _ in rows.values()) == 3

        _wait("the node a voter again with its new directory id", voter_again)
        _trafka("topics", "create", "--bootstrap-server", bootstrap, "--topic", "after", "--partitions", "1",
                "--replication-factor", "3")
