"""Real processes under real faults: a three-node cluster keeps every acknowledged write.

Goal: with replication factor 3 and ``min.insync.replicas=2``, two idempotent acks=all producers
(confluent-kafka, i.e. librdkafka, and the Apache Kafka Java client) write while a fault injector repeatedly SIGKILLs a partition leader (and restarts it), pauses a
node with SIGSTOP, and cuts a node off behind its fault proxies; afterwards two different
consumers read every partition from the start and the checker proves that no acknowledged
record was lost or moved, nothing was duplicated, each producer's order held per partition, and
both consumers read the same value at every offset. Failover time (leader killed -> first
acknowledged produce to a partition it led) is reported.

``TRAFKA_FAULTS`` sets how many faults (default 20), ``TRAFKA_FAULT_SEED`` the seed of their
order (printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import confluent_kafka
import confluent_kafka.admin

from tests.cluster.checker import check
from tests.cluster.harness import ROOT, Cluster

TOPIC = "faults"
PARTITIONS = 3
FAULTS = int(os.environ.get("TRAFKA_FAULTS", "20"))
SEED = int(os.environ.get("TRAFKA_FAULT_SEED", str(random.randrange(1 << 30))))
FAULT_S = (1.0, 2.5)
SETTLE_S = 1.0
WORKER = Path(__file__).with_name("produce_worker.py")
JAVA_WORKER = Path(__file__).with_name("ProduceWorker.java")
OVERRIDES = (
    "min.insync.replicas=2",
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=5000",
    "replica.fetch.wait.max.ms=200",
    "offsets.topic.replication.factor=3",
)


def java_worker_argv(build_dir: Path) -> list[str]:
    """Compile the Java client's worker (seconds) and return how to run it."""
    lib = ROOT / "compat-tests" / "java" / "lib"
    assert list(lib.glob("kafka-clients-3.9*.jar")), f"the Java client is not in {lib}: run tools/install_clients.sh"
    build_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["javac", "-nowarn", "-cp", f"{lib}/*", "-d", str(build_dir), str(JAVA_WORKER)], check=True)
    return ["java", "-XX:+UseSerialGC", "-cp", f"{build_dir}:{lib}/*", "ProduceWorker"]


class Worker:
    def __init__(self, argv: list[str], bootstrap: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen([*argv, bootstrap, TOPIC, str(PARTITIONS), name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.acked: list[tuple[int, int, bytes]] = []
        self.ack_times: list[tuple[float, int]] = []
        self.errors: list[dict[str, object]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            rec = json.loads(line)
            if "err" in rec:
                self.errors.append(rec)
            else:
                self.acked.append((rec["p"], rec["o"], rec["v"].encode()))
                self.ack_times.append((rec["t"], rec["p"]))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=90)
        self.thread.join(10)


def _leaders(bootstrap: str) -> dict[int, int]:
    """Each partition's leader as Metadata says; partitions answered without one (mid-failover,
    or from a broker whose metadata lags) are left out, after a few tries."""
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    leaders: dict[int, int] = {}
    for _ in range(20):
        md = admin.list_topics(TOPIC, timeout=10)
        topic = md.topics.get(TOPIC)
        leaders = {p: pm.leader for p, pm in (topic.partitions.items() if topic is not None else ()) if pm.leader >= 0}
        if len(leaders) == PARTITIONS:
            break
        time.sleep(0.25)
    return leaders


def _read_all(bootstrap: str) -> dict[str, list[tuple[int, int, bytes]]]:
    """Every record of every partition, read by confluent-kafka and by kafka-python."""
    from kafka import KafkaConsumer, TopicPartition

    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    kc = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False,
                       consumer_timeout_ms=5000, request_timeout_ms=30000)
    kc.assign(tps)
    kc.seek_to_beginning(*tps)
    ends = kc.end_offsets(tps)
    reads: dict[str, list[tuple[int, int, bytes]]] = {"kafka-python": [], "confluent-kafka": []}
    deadline = time.monotonic() + 120
    while any(kc.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for batch in kc.poll(timeout_ms=1000).values():
            reads["kafka-python"] += [(r.partition, r.offset, r.value) for r in batch]
    kc.close()
    cc = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "checker",
                                   "enable.auto.commit": False, "enable.partition.eof": True})
    cc.assign([confluent_kafka.TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    done: set[int] = set()
    while len(done) < PARTITIONS and time.monotonic() < deadline:
        for m in cc.consume(1000, 1):
            if m.error() is None:
                reads["confluent-kafka"].append((m.partition(), m.offset(), m.value()))
            elif m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF \
                    and m.offset() >= ends[TopicPartition(TOPIC, m.partition())]:
                done.add(m.partition())
    cc.close()
    return reads


def test_three_nodes_keep_every_acknowledged_write_through_faults(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    faults: dict[str, int] = {"kill": 0, "pause": 0, "cut": 0}
    kills: list[tuple[list[int], float]] = []
    with Cluster(tmp_path, 3, OVERRIDES) as cluster:
        try:
            cluster.start()
            cluster.wait_ready()
            admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": cluster.bootstrap})
            futures = admin.create_topics([confluent_kafka.admin.NewTopic(TOPIC, PARTITIONS, 3)],
                                          request_timeout=30)
            futures[TOPIC].result(60)
            java = java_worker_argv(tmp_path / "java")
            workers = [Worker([sys.executable, str(WORKER)], cluster.bootstrap, "librdkafka"),
                       Worker(java, cluster.bootstrap, "java")]
            time.sleep(2)
            for k in range(FAULTS):
                kind = ("kill", "pause", "cut")[k % 3] if k < 3 else rng.choice(("kill", "kill", "pause", "cut"))
                if kind == "kill":
                    leaders = _leaders(cluster.bootstrap)
                    partition = rng.randrange(PARTITIONS)
                    victim = leaders.get(partition, -1)
                    if victim not in cluster.nodes:
                        victim = rng.choice(list(cluster.nodes))
                    led = [p for p, leader in leaders.items() if leader == victim]
                    killed_at = time.time()
                    cluster.kill(victim)
                    time.sleep(rng.uniform(*FAULT_S))
                    cluster.start(victim)
                    kills.append((led, killed_at))
                else:
                    victim = rng.choice(list(cluster.nodes))
                    if kind == "pause":
                        cluster.pause(victim)
                        time.sleep(rng.uniform(*FAULT_S))
                        cluster.resume(victim)
                    else:
                        cluster.cut(victim)
                        time.sleep(rng.uniform(*FAULT_S))
                        cluster.heal(victim)
                faults[kind] += 1
                time.sleep(SETTLE_S)
            time.sleep(3)
            for w in workers:
                w.stop()
            acked = [e for w in workers for e in w.acked]
            reads = _read_all(cluster.bootstrap)
        except BaseException:
            print(f"seed {SEED}; node logs:\n{cluster.logs()}")
            raise
    verdict = check(acked, reads)
    failovers = [t for led, at in kills for t in _failover_times(workers, led, at)]
    errors = [e for w in workers for e in w.errors]
    per_client = {w.name: len(w.acked) for w in workers}
    summary = (f"seed {SEED}: faults {faults}; acknowledged per client {per_client}; {verdict.summary()}; "
               f"producer errors {len(errors)} "
               f"{errors[:3]}; failover s p50 {_pct(failovers, 50)} p99 {_pct(failovers, 99)} over "
               f"{len(failovers)} leader kills")
    print(summary)
    if not verdict.ok:
        summary += "\n" + _diagnose(tmp_path, verdict)
    assert verdict.ok, summary
    assert all(n > 500 for n in per_client.values()), summary
    assert not [e for e in errors if e.get("fatal")], summary
    assert sum(faults.values()) == FAULTS


def _failover_times(workers: list[Worker], partitions: list[int], killed_at: float) -> list[float]:
    """Per partition the victim led: seconds from the kill to the first acknowledged produce."""
    out = []
    for p in partitions:
        firsts = [t for w in workers for t, part in list(w.ack_times) if part == p and t > killed_at]
        if firsts:
            out.append(min(firsts) - killed_at)
    return out


def _pct(values: list[float], q: int) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[q - 1]:.2f}"


def _diagnose(base: Path, verdict: object) -> str:
    """For a failed check: the batch headers (producer id, epoch, sequence) holding each offset
    in question on every node's log, and a copy of the data directories kept for later."""
    from protocol.records import iter_batches

    wanted: set[tuple[int, int]] = set()
    for _value, places in getattr(verdict, "duplicated", []):
        wanted.update(places)
    for partition, offset, _value in getattr(verdict, "lost", []):
        if offset is not None:  # an acknowledgement without an offset names no place to look
            wanted.add((partition, offset))
    lines = []
    for node_dir in sorted(base.glob("node-*/")):
        for partition, offset in sorted(wanted):
            for seg in sorted((node_dir / f"{TOPIC}-{partition}").glob("*.log")):
                for view in iter_batches(memoryview(seg.read_bytes())):
                    if view.base_offset <= offset <= view.last_offset:
                        lines.append(f"{node_dir.name} {TOPIC}-{partition}@{offset}: batch {view.base_offset}-"
                                     f"{view.last_offset} leader epoch {view.partition_leader_epoch} producer "
                                     f"{view.producer_id} epoch {view.producer_epoch} base sequence {view.base_sequence}")
    keep = Path(f"/tmp/trafka-fault-failure-{SEED}")
    shutil.copytree(base, keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("java"))
    lines.append(f"data directories and node logs kept in {keep}")
    return "\n".join(lines)
