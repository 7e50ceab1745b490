"""Fetch from follower (KIP-392) with real clients against a real three-node cluster.

Each node is in a rack of its own (``broker.rack=rack-<id>``) and runs Kafka's rack-aware replica
selector (``replica.selector.class``). A partition with three replicas is written (acks=all);
then a consumer whose ``client.rack`` is a follower's rack reads the whole partition: librdkafka
(confluent-kafka) and, when its jars are installed, the Apache Kafka Java client. What each
reads must equal what was written, offset for offset; and the brokers' own account (DEBUG lines
of ``trafka.fetch``, one per consumer fetch that returned records, naming the replica's role)
must show that the leader only ever pointed the consumer at that follower and that every record
it got came from the follower: no fetch of it returned records on the leader or the third node,
and the follower's fetches start at offset 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
import confluent_kafka.admin
import pytest

from tests.cluster.harness import ROOT, Cluster

TOPIC = "ffr"
RECORDS = 300
SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
OVERRIDES = (f"replica.selector.class={SELECTOR}", "min.insync.replicas=2", "replica.fetch.wait.max.ms=200")
RACKS = {i: f"rack-{i}" for i in (1, 2, 3)}
JAVA_CONSUMER = Path(__file__).with_name("RackConsumer.java")
SERVED = re.compile(r"trafka\.fetch: (\S+)-(\d+): served consumer (\S+) \(rack '([^']*)'\) (\d+) bytes "
                    r"from offset (\d+) as (leader|follower)$")
SENT = re.compile(r"trafka\.fetch: (\S+)-(\d+): consumer (\S+) \(rack '([^']*)'\) at offset (\d+) "
                  r"sent to replica (\d+)$")


@dataclass
class Written:
    cluster: Cluster
    leader: int
    follower: int  # the follower whose rack the consumers say they are in
    values: list[str]  # by offset


def _value(i: int) -> str:
    return f"ffr-{i:04d}-" + "x" * 100


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    base = tmp_path_factory.mktemp("ffr")
    with Cluster(base, 3, OVERRIDES, node_overrides={i: (f"broker.rack={r}",) for i, r in RACKS.items()},
                 log_level="DEBUG") as cluster:
        cluster.start()
        cluster.wait_ready()
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([confluent_kafka.admin.NewTopic(TOPIC, 1, 3)])[TOPIC].result(30)
        deadline = time.monotonic() + 30
        while True:
            t = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
            p = t.partitions.get(0) if t is not None and t.error is None else None
            if p is not None and p.leader >= 0 and len(p.isrs) == 3:
                break
            assert time.monotonic() < deadline, f"no leader with a full ISR:\n{cluster.logs()}"
            time.sleep(0.2)
        producer = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                                             "linger.ms": 5, "batch.num.messages": 20})
        acked: dict[int, str] = {}
        errors: list[object] = []

        def on_delivery(err: object, msg: confluent_kafka.Message) -> None:
            if err is not None:
                errors.append(err)
            else:
                acked[msg.offset()] = msg.value().decode()

        for i in range(RECORDS):
            producer.produce(TOPIC, _value(i).encode(), partition=0, on_delivery=on_delivery)
        assert producer.flush(30) == 0 and not errors, errors
        assert sorted(acked) == list(range(RECORDS))
        follower = min(n for n in RACKS if n != p.leader)
        yield Written(cluster, p.leader, follower, [acked[o] for o in range(RECORDS)])


def _broker_account(w: Written, client_id: str) -> tuple[dict[int, list[tuple[int, str]]], dict[int, list[int]]]:
    """Per node: (fetch offset, role) of each fetch by ``client_id`` that returned records of the
    topic, and the replicas it was sent to."""
    served: dict[int, list[tuple[int, str]]] = {n: [] for n in w.cluster.nodes}
    sent: dict[int, list[int]] = {n: [] for n in w.cluster.nodes}
    for node_id, node in w.cluster.nodes.items():
        for path in node.log_paths:
            for line in path.read_text(errors="replace").splitlines():
                if (m := SERVED.search(line)) and m[1] == TOPIC and m[3] == client_id:
                    served[node_id].append((int(m[6]), m[7]))
                elif (m := SENT.search(line)) and m[1] == TOPIC and m[3] == client_id:
                    sent[node_id].append(int(m[6]))
    return served, sent


def _check_served_by_the_follower(w: Written, client_id: str, read: list[tuple[int, str]]) -> None:
    assert read == list(enumerate(w.values)), f"read {len(read)} records, not what was written"
    served, sent = _broker_account(w, client_id)
    assert sent[w.leader] and set(sent[w.leader]) == {w.follower}, (sent, w.leader, w.follower)
    assert not any(sent[n] for n in w.cluster.nodes if n != w.leader), sent
    others = {n: s for n, s in served.items() if n != w.follower and s}
    assert not others, f"records of {client_id} served elsewhere than by follower {w.follower}: {others}"
    mine = served[w.follower]
    assert mine and {role for _, role in mine} == {"follower"}, mine
    offsets = [o for o, _ in mine]
    assert offsets[0] == 0 and offsets == sorted(offsets), offsets
    assert len(offsets) > 1, "the small fetch size should take several fetches"


def test_librdkafka_reads_a_partition_from_the_follower_in_its_rack(written: Written) -> None:
    w = written
    client_id = "ffr-librdkafka"
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": w.cluster.bootstrap, "group.id": "ffr-librdkafka", "client.id": client_id,
        "client.rack": RACKS[w.follower], "enable.auto.commit": False,
        "fetch.max.bytes": 4096, "max.partition.fetch.bytes": 4096, "message.max.bytes": 4096,  # many fetches
    })
    read: list[tuple[int, str]] = []
    try:
        consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, confluent_kafka.OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while len(read) < RECORDS and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            read.append((msg.offset(), msg.value().decode()))
    finally:
        consumer.close()
    _check_served_by_the_follower(w, client_id, read)


def test_the_java_client_reads_a_partition_from_the_follower_in_its_rack(written: Written, tmp_path: Path) -> None:
    lib = ROOT / "compat-tests" / "java" / "lib"
    if not list(lib.glob("kafka-clients-*.jar")):
        if os.environ.get("CI"):
            pytest.fail(f"the Java client is not in {lib}: run tools/install_clients.sh")
        pytest.skip(f"the Java client is not in {lib}: run tools/install_clients.sh")
    w = written
    client_id = "ffr-java"
    subprocess.run(["javac", "-nowarn", "-cp", f"{lib}/*", "-d", str(tmp_path), str(JAVA_CONSUMER)], check=True)
    done = subprocess.run(["java", "-XX:+UseSerialGC", "-cp", f"{tmp_path}:{lib}/*", "RackConsumer",
                           w.cluster.bootstrap, TOPIC, str(RECORDS), RACKS[w.follower], client_id],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    read = [(r["o"], r["v"]) for r in map(json.loads, done.stdout.splitlines())]
    _check_served_by_the_follower(w, client_id, read)
