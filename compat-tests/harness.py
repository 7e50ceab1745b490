"""Runs the drivers against a broker process and keeps what they report, for test_matrix.py.

Theory of operation: the tests are ordered client by client. The first test of a client stops the
previous client's broker, starts a fresh one (new port, new data directory, auto-create off),
creates and fills the topics every batched scenario needs, and runs the client's driver *once* with
a plan holding all batched scenarios; each test then judges its own step of that run. ``restart``
runs for each client after the batch: the driver produces, the harness restarts the broker on
the same port and directory, and the driver consumes. The group scenarios run several driver
processes at once (group_harness.py), on the same broker. One broker per client and few driver
processes keep the whole matrix within a few minutes (a JVM or node start costs a second or so);
the group scenarios' session timeouts are most of it.

Topic setup and the checks after a scenario (does a topic exist?) go through kafka-python in this
process, so a broker must at least serve kafka-python's CreateTopics, Produce and Metadata.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import scenarios
from broker_process import BrokerProcess
from clients import Client
from group_harness import GroupRuns

# Kafka property names; a single broker needs replication factor 1 for its internal topics.
BROKER_OVERRIDES = {
    "auto.create.topics.enable": "false",
    "num.partitions": "1",
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
}
BATCH_TIMEOUT_S = 180.0
STEP_TIMEOUT_S = 90.0
STDERR_TAIL_BYTES = 3000


class DriverRun:
    """What one driver process printed: its lines by step id, and the tail of its stderr."""

    def __init__(self, lines: dict[str, dict[str, Any]], stderr_tail: str, returncode: int | None,
                 timed_out: bool) -> None:
        self.lines = lines
        self.stderr_tail = stderr_tail
        self.returncode = returncode
        self.timed_out = timed_out

    def line(self, step_id: str) -> dict[str, Any]:
        if step_id not in self.lines:
            why = "timed out" if self.timed_out else f"exited with {self.returncode}"
            raise AssertionError(f"the driver printed no result for step {step_id!r} ({why}); "
                                 f"stderr tail:\n{self.stderr_tail}")
        return self.lines[step_id]


class Harness:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.broker: BrokerProcess | None = None
        self.broker_client: str | None = None
        self.batches: dict[str, DriverRun] = {}
        self.plans: dict[str, dict[str, scenarios.Step]] = {}
        self.seed_base_ms: dict[str, int] = {}
        self.versions: dict[str, str] = {}
        self.groups: dict[str, GroupRuns] = {}
        self.runs = 0

    # --- broker --------------------------------------------------------------------------------

    def broker_for(self, client: Client) -> BrokerProcess:
        if self.broker_client != client.name or self.broker is None:
            self.close()
            self.broker = BrokerProcess(log_dir=self.work_dir / f"{client.name}-data",
                                        overrides=BROKER_OVERRIDES)
            self.broker.start()
            self.broker_client = client.name
        assert self.broker is not None
        if not self.broker.alive():
            raise AssertionError(f"the broker died:\n{self.broker.log_tail()}")
        return self.broker

    def close(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        self.broker = None
        self.broker_client = None

    # --- drivers -------------------------------------------------------------------------------

    def run_driver(self, client: Client, steps: list[scenarios.Step], timeout_s: float,
                   bootstrap: str | None = None) -> DriverRun:
        """Run the client's driver on a plan; against the client's broker unless told otherwise."""
        if bootstrap is None:
            bootstrap = self.broker_for(client).bootstrap
        self.runs += 1
        plan_path = self.work_dir / f"{client.name}.{self.runs}.plan.json"
        plan_path.write_text(json.dumps([s.as_json() for s in steps]), encoding="utf-8")
        stderr_path = self.work_dir / f"{client.name}.{self.runs}.stderr"
        argv = [*client.argv(), "--bootstrap", bootstrap, "--plan", str(plan_path)]
        timed_out = False
        with open(stderr_path, "wb") as err:
            try:
                done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                      timeout=timeout_s, env=os.environ.copy())
                stdout, returncode = done.stdout, done.returncode
            except subprocess.TimeoutExpired as exc:
                stdout, returncode, timed_out = exc.stdout or b"", None, True
        (self.work_dir / f"{client.name}.{self.runs}.stdout").write_bytes(stdout)
        lines: dict[str, dict[str, Any]] = {}
        for raw in stdout.decode("utf-8", errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict) and "step" in line:
                lines[line["step"]] = line
                if line.get("client_version"):
                    self.versions[client.name] = str(line["client_version"])
        tail = stderr_path.read_bytes()[-STDERR_TAIL_BYTES:].decode("utf-8", errors="replace")
        return DriverRun(lines, tail, returncode, timed_out)

    def batch(self, client: Client) -> DriverRun:
        """The client's one run of every batched scenario (run on first use)."""
        if client.name in self.batches:
            return self.batches[client.name]
        broker = self.broker_for(client)
        now_ms = int(time.time() * 1000)
        steps: dict[str, scenarios.Step] = {}
        for scenario in scenarios.BATCHED:
            if scenario in client.not_applicable:
                continue
            scenario_steps, setups = scenarios.step_for(client.name, scenario, now_ms)
            for setup in setups:
                create_topic(broker.bootstrap, setup.name, setup.partitions)
                if setup.seed_base_ms is not None:
                    seed_topic(broker.bootstrap, setup.name, setup.seed_base_ms)
                    self.seed_base_ms[scenario] = setup.seed_base_ms
            for step in scenario_steps:
                steps[step.id] = step
        self.plans[client.name] = steps
        run = self.run_driver(client, list(steps.values()), BATCH_TIMEOUT_S)
        self.batches[client.name] = run
        return run

    def step(self, client: Client, scenario: str) -> tuple[scenarios.Step, dict[str, Any]]:
        run = self.batch(client)
        return self.plans[client.name][scenario], run.line(scenario)

    def restart(self, client: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Produce, restart the broker, consume: (params, produce line, consume line)."""
        broker = self.broker_for(client)
        params, setup = scenarios.restart_params(client.name)
        create_topic(broker.bootstrap, setup.name, setup.partitions)
        produced = self.run_driver(client, [scenarios.Step("produce", "produce", params)], STEP_TIMEOUT_S)
        produce_line = produced.line("produce")
        code = broker.restart()
        assert code == 0, f"the broker exited with {code} on SIGTERM:\n{broker.log_tail()}"
        consumed = self.run_driver(client, [scenarios.Step("consume", "consume", params)], STEP_TIMEOUT_S)
        return params, produce_line, consumed.line("consume")

    def group(self, client: Client, scenario: str) -> str | None:
        """Run the client's group flow holding ``scenario`` (once); None when it passed, else why not."""
        if client.name not in self.groups:
            def restart_broker() -> None:
                broker = self.broker_for(client)
                code = broker.restart()
                assert code == 0, f"the broker exited with {code} on SIGTERM:\n{broker.log_tail()}"

            self.groups[client.name] = GroupRuns(
                client, lambda: self.broker_for(client).bootstrap, self.work_dir, restart_broker,
                lambda topic, partitions: create_topic(self.broker_for(client).bootstrap, topic, partitions),
                lambda topic, count: seed_values(self.broker_for(client).bootstrap, topic, count),
                lambda group, topic: committed_offsets(self.broker_for(client).bootstrap, group, topic))
        return self.groups[client.name].outcome(scenario)


# --- topic setup through kafka-python -----------------------------------------------------------


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def seed_topic(bootstrap: str, topic: str, base_ms: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
    try:
        for value, ts in scenarios.seeded_records(base_ms):
            producer.send(topic, value=value.encode(), partition=0, timestamp_ms=ts).get(timeout=10)
    finally:
        producer.close(timeout=5)


def topic_exists(bootstrap: str, name: str) -> bool:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        return name in admin.list_topics()
    finally:
        admin.close()


def seed_values(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records ``g-0``, ``g-1``, ... into partition 0."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000)
    try:
        for i in range(count):
            producer.send(topic, value=f"g-{i}".encode(), partition=0).get(timeout=10)
    finally:
        producer.close(timeout=5)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets for the topic's partitions (OffsetFetch through kafka-python)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def read_back(bootstrap: str, topic: str, partitions: int, expected: int) -> list[dict[str, Any]]:
    """Every record of the topic, read by kafka-python in this process, as the drivers report them."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=10_000, fetch_max_wait_ms=100)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if len(records) >= expected and all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend({
                    "partition": m.partition, "offset": m.offset,
                    "key": None if m.key is None else m.key.decode("utf-8", errors="backslashreplace"),
                    "value": None if m.value is None else m.value.decode("utf-8", errors="backslashreplace"),
                    "headers": [[k, None if v is None else v.decode("utf-8", errors="backslashreplace")]
                                for k, v in m.headers or []],
                } for m in batch)
        return records
    finally:
        consumer.close()


def stored_batches(bootstrap: str, topic: str, partitions: int) -> list[scenarios.BatchHeader]:
    """The record batches the broker serves for the topic, from a plain Fetch v4 (the oldest Kafka
    4 serves) read off the socket here, so no client's decoding stands between us and the bytes."""
    host, port = bootstrap.rsplit(":", 1)
    name = topic.encode()
    body = struct.pack(">iiiib", -1, 0, 0, 64 * 1024 * 1024, 0)
    body += struct.pack(">ih", 1, len(name)) + name + struct.pack(">i", partitions)
    for p in range(partitions):
        body += struct.pack(">iqi", p, 0, 16 * 1024 * 1024)
    client_id = b"trafka-compat"
    request = struct.pack(">hhih", 1, 4, 7, len(client_id)) + client_id + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        data = _recv_exactly(sock, size)
    at = 8  # correlation id, throttle time
    batches: list[scenarios.BatchHeader] = []
    (topics,) = struct.unpack_from(">i", data, at)
    at += 4
    for _ in range(topics):
        (length,) = struct.unpack_from(">h", data, at)
        at += 2 + length
        (count,) = struct.unpack_from(">i", data, at)
        at += 4
        for _ in range(count):
            partition, error, _hw, _lso, aborted = struct.unpack_from(">ihqqi", data, at)
            at += 26 + 16 * max(aborted, 0)
            (records_size,) = struct.unpack_from(">i", data, at)
            at += 4
            assert error == 0, f"Fetch of {topic}-{partition} answered error {error}"
            batches += scenarios.parse_batches(partition, data[at:at + max(records_size, 0)])
            at += max(records_size, 0)
    return batches


def advertised_apis(bootstrap: str) -> dict[int, tuple[int, int]]:
    """The broker's ApiVersions (v0) answer: api key -> (min version, max version)."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"trafka-compat"
    request = struct.pack(">hhih", 18, 0, 9, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        data = _recv_exactly(sock, size)
    _correlation, error, count = struct.unpack_from(">ihi", data)
    assert error == 0, f"ApiVersions answered error {error}"
    entries = (struct.unpack_from(">hhh", data, 10 + 6 * i) for i in range(count))
    return {key: (low, high) for key, low, high in entries}


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data
