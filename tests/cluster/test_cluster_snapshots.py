"""Metadata snapshots (KIP-630) in a real three-node cluster, with tiny thresholds: the nodes write
snapshots of their metadata image and clean their metadata logs; a node that was down while the
others cleaned past the end of its log comes back, is answered with a snapshot id, fetches the
snapshot over FetchSnapshot, installs it, and then serves the same topics as the others. Its
data directory shows the fetched snapshot and a log that starts at the snapshot's end; its log
says the image was loaded from a snapshot fetched from the leader. Then every node restarts from
its snapshot plus the log after it and still lists the same topics."""

from __future__ import annotations

import time
from pathlib import Path

import confluent_kafka.admin

from protocol.records import iter_batches
from replication.snapshot import parse_snapshot_name
from storage.layout import LOG_SUFFIX, parse_segment_name
from tests.cluster.harness import Cluster

OVERRIDES = (
    "broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500",
    "metadata.log.max.record.bytes.between.snapshots=4096",
    "metadata.max.retention.bytes=0",  # keep only the latest snapshot and the log after it
    "metadata.log.segment.bytes=4096",
)
TOPICS = 80
METADATA_DIR = "__cluster_metadata-0"


def metadata_dir(cluster: Cluster, node_id: int) -> Path:
    return cluster.nodes[node_id].data_dir / METADATA_DIR


def segments(cluster: Cluster, node_id: int) -> list[Path]:
    found = []
    for p in metadata_dir(cluster, node_id).iterdir():
        parsed = parse_segment_name(p.name)
        if parsed is not None and parsed[1] == LOG_SUFFIX:
            found.append((parsed[0], p))
    return [p for _, p in sorted(found)]


def log_end(cluster: Cluster, node_id: int) -> int:
    """The offset after the last whole batch of a stopped node's metadata log."""
    end = 0
    for path in segments(cluster, node_id):
        end = max(end, int(path.name[:20]))
        for batch in iter_batches(path.read_bytes()):
            end = batch.next_offset
    return end


def snapshot_ends(cluster: Cluster, node_id: int) -> list[int]:
    ends = []
    for p in metadata_dir(cluster, node_id).iterdir():
        parsed = parse_snapshot_name(p.name)
        if parsed is not None and parsed[1] == ".checkpoint":
            ends.append(parsed[0].end_offset)
    return sorted(ends)


def topics_of(bootstrap: str) -> set[str] | None:
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    try:
        return set(admin.list_topics(timeout=5).topics)
    except confluent_kafka.KafkaException:
        return None


def wait_for(what: str, condition: object, timeout_s: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s\n{cluster.logs()}")
        time.sleep(0.3)


def test_a_node_behind_the_cleaned_logs_catches_up_through_a_snapshot(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, OVERRIDES) as cluster:
        cluster.start()
        cluster.wait_ready()
        controller = confluent_kafka.admin.AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(
            timeout=10).controller_id
        victim = 3 if controller != 3 else 2
        others = [n for n in (1, 2, 3) if n != victim]
        cluster.kill(victim)
        old_end = log_end(cluster, victim)
        live = ",".join(cluster.nodes[n].bootstrap for n in others)
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": live})
        names = [f"churn-{i:03d}" for i in range(TOPICS)]
        for i in range(0, TOPICS, 10):
            batch = [confluent_kafka.admin.NewTopic(n, 1, 1) for n in names[i:i + 10]]
            for future in admin.create_topics(batch, operation_timeout=30).values():
                future.result(60)
        doomed = names[::2]
        for future in admin.delete_topics(doomed, operation_timeout=30).values():
            future.result(60)
        kept = set(names) - set(doomed)

        # The live nodes snapshot and clean: their metadata logs now start past the victim's end.
        def cleaned_past_victim() -> bool:
            return all(snapshot_ends(cluster, n) and segments(cluster, n)
                       and int(segments(cluster, n)[0].name[:20]) > old_end for n in others)

        wait_for("the live nodes cleaned their logs past the stopped node's end", cleaned_past_victim, 30, cluster)

        cluster.start(victim)
        bootstrap = cluster.nodes[victim].bootstrap

        def same_topics() -> bool:
            got = topics_of(bootstrap)
            return got is not None and kept <= got and not set(doomed) & got and got == topics_of(live)

        wait_for("the restarted node lists the live nodes' topics", same_topics, 60, cluster)
        text = cluster.nodes[victim].log_paths[-1].read_text(errors="replace")
        assert "fetched from the leader" in text, text[-3000:]
        fetched = [e for e in snapshot_ends(cluster, victim) if e > old_end]
        assert fetched, f"no snapshot past offset {old_end} in {sorted(p.name for p in metadata_dir(cluster, victim).iterdir())}"
        assert int(segments(cluster, victim)[0].name[:20]) >= min(fetched), "its log restarts at the snapshot's end"

        # Every node restarts from its newest snapshot plus the log after it.
        for n in (1, 2, 3):
            cluster.kill(n)
        cluster.start()
        cluster.wait_ready(timeout_s=60)
        for n in (1, 2, 3):
            wait_for(f"node {n} lists the topics after a restart",
                     lambda n=n: (got := topics_of(cluster.nodes[n].bootstrap)) is not None and kept <= got
                     and not set(doomed) & got, 60, cluster)
            assert "metadata image loaded from snapshot" in cluster.nodes[n].log_paths[-1].read_text(errors="replace")
        assert not [line for line in cluster.errors_logged() if "Traceback" in line], cluster.errors_logged()
