"""Goal: real clients run KIP-848 consumer groups (group.protocol=consumer) against a real broker.

One ``python -m broker serve`` process serves the module, with a 500 ms consumer heartbeat
interval so that rebalances settle in about a second. Two confluent-kafka (librdkafka) consumers
split a 4-partition topic two and two and consume every record exactly once; the admin client
sees the group through ListGroups, ConsumerGroupDescribe and OffsetFetch; a librdkafka regex
subscription is resolved by the broker; and describing a classic group still works (librdkafka
asks ConsumerGroupDescribe first, gets GROUP_ID_NOT_FOUND, and falls back to DescribeGroups).
Then the split with two Apache Kafka Java 3.9 consumers, when a JDK and the client jars
(``bash tools/install_clients.sh``) are there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.broker_process import BrokerProcess, running_broker

ROOT = Path(__file__).resolve().parents[2]
JAVA_LIB = ROOT / "compat-tests" / "java" / "lib"
SETTLE_S = 30.0
RECORDS = 400
PARTITIONS = 4


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("cg-broker"), ('group.consumer.heartbeat.interval.ms=500', 'group.consumer.min.heartbeat.interval.ms=500'), check_log=True) as b:
        yield b


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, PARTITIONS, 1)]).values():
        future.result(timeout=10)


def produce(bootstrap: str, topic: str) -> set[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap})
    values = set()
    for i in range(RECORDS):
        value = f"{topic}-{i}".encode()
        values.add(value)
        producer.produce(topic, value=value, partition=i % PARTITIONS)
    assert producer.flush(10) == 0
    return values


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- librdkafka ----------------------------------------------------------------------------------


class RdConsumer(threading.Thread):
    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
            "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.topic = topic
        self.stop = threading.Event()
        self.assignment: set[int] = set()
        self.records: list[tuple[int, bytes]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        c = self.consumer
        c.subscribe([self.topic])
        try:
            while not self.stop.is_set():
                m = c.poll(0.1)
                self.assignment = {tp.partition for tp in c.assignment()}
                if m is None:
                    continue
                if m.error():
                    self.errors.append(str(m.error()))
                    continue
                self.records.append((m.partition(), m.value()))
                c.commit(message=m, asynchronous=False)
        finally:
            c.close()


def test_librdkafka_consumers_split_a_topic_and_read_every_record_once(broker: BrokerProcess) -> None:
    topic, group = "cg-rd", "cg-rd-group"
    create_topic(broker.bootstrap, topic)
    consumers = [RdConsumer(broker.bootstrap, group, topic) for _ in range(2)]
    for c in consumers:
        c.start()
    try:
        # Both members in and the group settled: two partitions each, none shared.
        wait_for(lambda: all(len(c.assignment) == 2 for c in consumers), SETTLE_S, "two partitions each")
        assert consumers[0].assignment.isdisjoint(consumers[1].assignment)
        values = produce(broker.bootstrap, topic)
        wait_for(lambda: sum(len(c.records) for c in consumers) >= RECORDS, SETTLE_S, "every record")
        time.sleep(0.5)  # anything more would be a duplicate
        seen = [v for c in consumers for _, v in c.records]
        assert len(seen) == RECORDS and set(seen) == values
        for c in consumers:
            assert {p for p, _ in c.records} == c.assignment, "records only from its own partitions"
            assert c.errors == []

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        listed = admin.list_consumer_groups().result(timeout=10)
        by_id = {g.group_id: g for g in listed.valid}
        assert group in by_id and str(by_id[group].state).endswith("STABLE")
        if hasattr(by_id[group], "type"):
            assert str(by_id[group].type).endswith("CONSUMER")
        described = admin.describe_consumer_groups([group]).get(group)
        assert described is not None
        description = described.result(timeout=10)
        assert len(description.members) == 2
        assert sorted(p.partition for m in description.members for p in m.assignment.topic_partitions) == [0, 1, 2, 3]
        # The committed offsets (OffsetFetch without a member, as the admin client sends it).
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
        offsets = admin.list_consumer_group_offsets([request])[group].result(timeout=10)
        assert [tp.offset for tp in offsets.topic_partitions] == [RECORDS // PARTITIONS] * PARTITIONS
    finally:
        for c in consumers:
            c.stop.set()
        for c in consumers:
            c.join(timeout=15)
    # Both left the group (member epoch -1): it is empty now.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    wait_for(lambda: any(g.group_id == group and str(g.state).endswith("EMPTY")
                         for g in admin.list_consumer_groups().result(timeout=10).valid), 10, "an empty group")


def test_librdkafka_regex_subscription_is_resolved_by_the_broker(broker: BrokerProcess) -> None:
    # librdkafka sends a "^..." subscription as SubscribedTopicRegex (ConsumerGroupHeartbeat v1).
    for topic in ("cg-rx-a", "cg-rx-b", "cg-other"):
        create_topic(broker.bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "cg-rx-group",
                         "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    consumer.subscribe(["^cg-rx-.*"])
    try:
        def assigned() -> set[tuple[str, int]]:
            consumer.poll(0.1)
            return {(tp.topic, tp.partition) for tp in consumer.assignment()}

        expected = {(t, p) for t in ("cg-rx-a", "cg-rx-b") for p in range(PARTITIONS)}
        wait_for(lambda: assigned() == expected, SETTLE_S, "the topics the regex matches")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        description = admin.describe_consumer_groups(["cg-rx-group"])["cg-rx-group"].result(timeout=10)
        assert len(description.members) == 1
    finally:
        consumer.close()


def test_classic_group_is_still_described_after_consumer_group_describe_falls_back(broker: BrokerProcess) -> None:
    topic, group = "cg-classic", "cg-classic-group"
    create_topic(broker.bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "group.protocol": "classic",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        wait_for(lambda: (consumer.poll(0.1), len(consumer.assignment()) == PARTITIONS)[1], SETTLE_S, "assignment")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert len(description.members) == 1
        assert sorted(p.partition for p in description.members[0].assignment.topic_partitions) == [0, 1, 2, 3]
    finally:
        consumer.close()


# --- the Java client -----------------------------------------------------------------------------

JAVA_CONSUMER = r"""
import java.nio.file.*;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class CgConsumer {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[1]);
        p.put("group.protocol", "consumer");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        Path stop = Paths.get(args[3]);
        Set<TopicPartition> last = null;
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.subscribe(Collections.singletonList(args[2]));
            while (!Files.exists(stop)) {
                ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(100));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    System.out.println("record " + r.partition() + " " + new String(r.value()));
                }
                if (!records.isEmpty()) c.commitSync();
                Set<TopicPartition> now = c.assignment();
                if (!now.equals(last)) {
                    StringBuilder b = new StringBuilder("assignment");
                    for (TopicPartition tp : now) b.append(' ').append(tp.partition());
                    System.out.println(b);
                    last = new HashSet<>(now);
                }
                System.out.flush();
            }
        }
        System.out.println("closed");
    }
}
"""


@pytest.fixture(scope="module")
def java_consumer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    jars = sorted(JAVA_LIB.glob("kafka-clients-*.jar"))
    if shutil.which("javac") is None or shutil.which("java") is None or not jars:
        # tools/test.sh installs both; only a developer's partial setup may lack them, never CI.
        if os.environ.get("CI"):
            pytest.fail("CI must have a JDK and the Java client jars (bash tools/install_clients.sh)")
        pytest.skip("needs a JDK and the Java client jars (bash tools/install_clients.sh)")
    build = tmp_path_factory.mktemp("java-cg")
    (build / "CgConsumer.java").write_text(JAVA_CONSUMER)
    subprocess.run(["javac", "-cp", f"{JAVA_LIB}/*", "-d", str(build), str(build / "CgConsumer.java")],
                   check=True, capture_output=True, timeout=120)
    return build


def test_java_consumers_split_a_topic_and_read_every_record_once(broker: BrokerProcess, java_consumer: Path,
                                                                  tmp_path: Path) -> None:
    topic, group = "cg-java", "cg-java-group"
    create_topic(broker.bootstrap, topic)
    stop = tmp_path / "stop"
    outs = [tmp_path / f"consumer{i}.out" for i in range(2)]
    procs = []
    for out in outs:
        with open(out, "wb") as f:
            procs.append(subprocess.Popen(
                ["java", "-cp", f"{java_consumer}:{JAVA_LIB}/*", "CgConsumer", broker.bootstrap, group, topic,
                 str(stop)], stdout=f, stderr=subprocess.STDOUT))

    def last_assignment(out: Path) -> set[int] | None:
        lines = [ln for ln in out.read_text(errors="replace").splitlines() if ln.startswith("assignment")]
        return {int(x) for x in lines[-1].split()[1:]} if lines else None

    def records(out: Path) -> list[tuple[int, str]]:
        return [(int(ln.split()[1]), ln.split()[2]) for ln in out.read_text(errors="replace").splitlines()
                if ln.startswith("record ")]

    try:
        wait_for(lambda: all(len(last_assignment(o) or ()) == 2 for o in outs), 60, "two partitions each")
        a, b = (last_assignment(o) for o in outs)
        assert a is not None and b is not None and a.isdisjoint(b)
        values = {v.decode() for v in produce(broker.bootstrap, topic)}
        wait_for(lambda: sum(len(records(o)) for o in outs) >= RECORDS, 60, "every record")
        time.sleep(0.5)
        seen = [v for o in outs for _, v in records(o)]
        assert len(seen) == RECORDS and set(seen) == values
        for o in outs:
            assert {p for p, _ in records(o)} == last_assignment(o)
    finally:
        stop.touch()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for o in outs:
        assert o.read_text(errors="replace").splitlines()[-1] == "closed", o.read_text(errors="replace")[-2000:]
