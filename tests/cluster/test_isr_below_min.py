"""An ISR that falls below ``min.insync.replicas`` under an idempotent librdkafka producer must not
duplicate a record.

The sequence, from the fault test's one duplicate: batches R0, R1, R2 of one producer are in
flight to a leader when its ISR shrinks below the minimum. R0 was written and is answered
NOT_ENOUGH_REPLICAS_AFTER_APPEND; R1 is refused NOT_ENOUGH_REPLICAS. If R2 is then answered
OUT_OF_ORDER_SEQUENCE_NUMBER (its sequence no longer follows), librdkafka bumps its producer
epoch, gets a new producer id and re-sends R0..R2 under it; once the ISR is back, R0 is written a
second time. Kafka checks the ISR before the sequence, so R2 gets NOT_ENOUGH_REPLICAS, R0's
retry keeps its producer id, and the broker recognises it.

Here the topic asks for ``min.insync.replicas=3`` of 3 replicas, so pausing one node (SIGSTOP)
takes every partition's ISR below the minimum while the other two keep the controller quorum;
after it resumes and catches up, a consumer reads everything back and the checker looks for
duplicates, loss and reordering. Repeated a few times per run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import confluent_kafka.admin

from tests.cluster.checker import check
from tests.cluster.harness import Cluster
from tests.cluster.test_cluster_faults import PARTITIONS, TOPIC, WORKER, Worker, _read_all

OVERRIDES = ("broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500",
             "replica.lag.time.max.ms=2000", "replica.fetch.wait.max.ms=200")
PAUSES = 3
PAUSE_S = 6.0


def _isr_sizes(bootstrap: str) -> list[int]:
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap})
    topic = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
    return [len(p.isrs) for p in topic.partitions.values()] if topic is not None else []


def test_isr_below_min_under_an_idempotent_producer_duplicates_nothing(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, OVERRIDES) as cluster:
        cluster.start()
        cluster.wait_ready()
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": cluster.bootstrap})
        futures = admin.create_topics([confluent_kafka.admin.NewTopic(
            TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "3"})], request_timeout=30)
        futures[TOPIC].result(60)
        worker = Worker([sys.executable, str(WORKER)], cluster.bootstrap, "librdkafka")
        shrunk = 0
        try:
            time.sleep(2)
            for k in range(PAUSES):
                victim = 1 + k % 3
                others = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != victim)
                cluster.pause(victim)
                deadline = time.monotonic() + PAUSE_S
                while time.monotonic() < deadline:
                    if any(size < 3 for size in _isr_sizes(others)):
                        shrunk += 1
                        break
                    time.sleep(0.2)
                time.sleep(max(0.0, deadline - time.monotonic()))
                cluster.resume(victim)
                deadline = time.monotonic() + 30
                while _isr_sizes(cluster.bootstrap) != [3] * PARTITIONS and time.monotonic() < deadline:
                    time.sleep(0.5)
                time.sleep(2)
        finally:
            worker.stop()
        reads = _read_all(cluster.bootstrap)
    verdict = check(worker.acked, reads)
    summary = f"{verdict.summary()}; ISR shrank below 3 in {shrunk} of {PAUSES} pauses; errors {worker.errors[:3]}"
    print(summary)
    assert shrunk == PAUSES, summary  # otherwise the test did not test anything
    assert verdict.ok, summary
    assert not [e for e in worker.errors if e.get("fatal")], summary
    assert len(worker.acked) > 1000, summary
