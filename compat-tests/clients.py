"""The clients of the compatibility matrix: how to run each driver and what each cannot do.

``tools/install_clients.sh`` installs every client below. ``missing()`` says why a client cannot
run here (None when it can); the harness turns that into a failure in CI and a skip elsewhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "drivers"
JS_DIR = HERE / "js"
JAVA_DIR = HERE / "java"
INSTALL_HINT = "run `bash tools/install_clients.sh`"

@dataclass(frozen=True, slots=True)
class Client:
    name: str
    # murmur2 (Java's default partitioner) or crc32 (librdkafka's consistent_random)
    partitioner: str
    not_applicable: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        if self.name == "kafkajs":
            return ["node", str(JS_DIR / "kafkajs_driver.js")]
        if self.name == "java":
            classpath = f"{JAVA_DIR / 'build'}:{JAVA_DIR / 'lib'}/*"
            # A short-lived JVM: skip the optimising compiler and use the simplest collector.
            return ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss1m",
                    "-cp", classpath, "JavaDriver"]
        script = {"kafka-python": "kafka_python_driver.py", "confluent-kafka": "confluent_driver.py",
                  "aiokafka": "aiokafka_driver.py", "kcat": "kcat_driver.py"}[self.name]
        return [sys.executable, str(DRIVERS / script)]

    def missing(self) -> str | None:
        module = {"kafka-python": "kafka", "confluent-kafka": "confluent_kafka", "aiokafka": "aiokafka"}
        if self.name in module and importlib.util.find_spec(module[self.name]) is None:
            return f"Python package {self.name} is not installed in {sys.prefix}; {INSTALL_HINT}"
        kcat = os.environ.get("KCAT", "kcat")  # the same override the kcat driver reads
        if self.name == "kcat" and shutil.which(kcat) is None:
            return f"{kcat} is not on PATH; {INSTALL_HINT}"
        if self.name == "kafkajs":
            if shutil.which("node") is None:
                return "node is not on PATH"
            wanted = json.loads((JS_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
            absent = [name for name in wanted if not (JS_DIR / "node_modules" / name / "package.json").is_file()]
            if absent:
                return f"{', '.join(absent)} not installed in {JS_DIR / 'node_modules'}; {INSTALL_HINT}"
        if self.name == "java":
            if shutil.which("java") is None:
                return "java is not on PATH"
            if not list((JAVA_DIR / "lib").glob("kafka-clients-3.9*.jar")):
                return f"the Kafka Java client jars are not in {JAVA_DIR / 'lib'}; {INSTALL_HINT}"
            compiled = JAVA_DIR / "build" / "JavaDriver.class"
            if not compiled.is_file():
                return f"the Java driver is not compiled into {JAVA_DIR / 'build'}; {INSTALL_HINT}"
            if compiled.stat().st_mtime < (JAVA_DIR / "JavaDriver.java").stat().st_mtime:
                return f"{compiled} is older than JavaDriver.java; {INSTALL_HINT}"
        return None


# What each client cannot do. The cluster rows (cluster_scenarios.py) are here too: a client
# without the admin call is n/a for its row, never a pass.
_NO_OFFLINE_RLK = "librdkafka keeps no offline replicas from Metadata (its partition metadata has leader, replicas, ISR)"
CLIENTS = (
    Client("kafka-python", "murmur2", {
        "group_kip848": "kafka-python has no KIP-848 consumer (group.protocol=consumer)",
    }),
    Client("confluent-kafka", "crc32", {
        "cluster_offline_replicas": _NO_OFFLINE_RLK,
        "cluster_reassign": "confluent-kafka's AdminClient has no alter or list partition reassignments",
    }),
    Client("aiokafka", "murmur2", {
        "group_cooperative": "aiokafka has no cooperative-sticky assignor (eager rebalancing only)",
        "group_kip848": "aiokafka has no KIP-848 consumer (group.protocol=consumer)",
        "cluster_elect_leaders": "aiokafka's admin client has no leader election",
        "cluster_reassign": "aiokafka's admin client has no alter or list partition reassignments",
    }),
    Client("kcat", "crc32", {
        "admin": "kcat has no admin commands",
        "group_kip848": "Debian's kcat links librdkafka 2.0.2, which predates group.protocol=consumer",
        "cluster_offline_replicas": _NO_OFFLINE_RLK + "; kcat -L prints what it has",
        "cluster_describe": "kcat has no admin commands",
        "cluster_elect_leaders": "kcat has no admin commands",
        "cluster_reassign": "kcat has no admin commands",
    }),
    Client("kafkajs", "murmur2", {
        "group_cooperative": "kafkajs rebalances eagerly only (no cooperative-sticky assigner)",
        "group_static": "kafkajs has no static membership (group.instance.id)",
        "group_kip848": "kafkajs has no KIP-848 consumer (group.protocol=consumer)",
        "cluster_elect_leaders": "kafkajs's admin client has no leader election",
    }),
    Client("java", "murmur2"),
)

BY_NAME = {client.name: client for client in CLIENTS}
