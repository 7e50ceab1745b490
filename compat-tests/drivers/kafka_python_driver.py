"""kafka-python driver of the compatibility matrix; the command line is described in common.py.

Consumers use manual assignment (no consumer group) except in ``group_member``, one member of a
consumer group that the harness drives (see common.py).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kafka  # noqa: E402
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic  # noqa: E402
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor  # noqa: E402
from kafka.coordinator.assignors.range import RangePartitionAssignor  # noqa: E402
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor  # noqa: E402
from kafka.errors import OffsetOutOfRangeError, for_code  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

from common import (  # noqa: E402
    Counted,
    FailoverRun,
    MemberEvents,
    Params,
    Unsupported,
    deadline_after,
    describe_error,
    encode,
    expired,
    main,
    pattern_bytes,
    record_dict,
    sha256_hex,
    text,
)

REQUEST_TIMEOUT_MS = 10_000
LARGE_LIMIT_BYTES = 4 * 1024 * 1024


def _consumer(bootstrap: str, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = dict(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", request_timeout_ms=REQUEST_TIMEOUT_MS,
        fetch_max_wait_ms=200,
    )
    config.update(overrides)
    return KafkaConsumer(**config)


def _record(msg: Any) -> dict[str, Any]:
    return record_dict(partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                       headers=list(msg.headers or []), timestamp_ms=msg.timestamp)


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int,
                 timeout_s: float = 15.0, **overrides: Any) -> list[dict[str, Any]]:
    """Every record of the topic from the beginning, read until the end offsets are reached."""
    consumer = _consumer(bootstrap, **overrides)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []
        deadline = deadline_after(timeout_s)
        while not expired(deadline):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(_record(m) for m in batch)
            if len(records) >= expected and all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
        return records
    finally:
        consumer.close()


def metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    consumer = _consumer(bootstrap)
    try:
        topics = {name: len(consumer.partitions_for_topic(name) or ()) for name in consumer.topics()}
        brokers = [{"node_id": b.node_id, "host": b.host, "port": b.port}
                   for b in consumer._client.cluster.brokers()]  # no public accessor for this
        return {"brokers": brokers, "topics": topics}
    finally:
        consumer.close()


def _topic_configs(admin: KafkaAdminClient, topic: str, names: list[str]) -> dict[str, str | None]:
    # All of the topic's configs, then pick: asking for named keys is the rarer request shape.
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    described = admin.describe_configs([resource], config_filter="all")
    entries = next(iter(next(iter(described.values())).values()))
    return {name: (entries[name]["value"] if name in entries else None) for name in names}


def admin(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, create_configs, alter = params["topic"], params["configs"], params["alter_configs"]
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        client.create_topics([NewTopic(topic, params["partitions"], 1, topic_configs=create_configs)])
        described = client.describe_topics([topic])
        partitions = len(described[0]["partitions"])
        after_create = _topic_configs(client, topic, list(create_configs))
        client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=alter)])
        after_alter = _topic_configs(client, topic, list(alter))
        client.delete_topics([topic])
        listed = topic in client.list_topics()
        deadline = deadline_after(5)
        while listed and not expired(deadline):
            time.sleep(0.2)
            listed = topic in client.list_topics()
        return {"created": True, "partitions": partitions, "configs_after_create": after_create,
                "configs_after_alter": after_alter, "listed_after_delete": listed}
    finally:
        client.close()


def _produce(bootstrap: str, topic: str, messages: list[dict[str, Any]], **config: Any) -> list[dict[str, Any]]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=REQUEST_TIMEOUT_MS, max_block_ms=REQUEST_TIMEOUT_MS,
                             **config)
    try:
        futures = [
            producer.send(topic, key=encode(m["key"]), value=encode(m["value"]),
                          headers=[(h, encode(v)) for h, v in m.get("headers", [])],
                          timestamp_ms=m.get("timestamp"))
            for m in messages
        ]
        producer.flush(timeout=REQUEST_TIMEOUT_MS / 1000)
        acks = [f.get(timeout=REQUEST_TIMEOUT_MS / 1000) for f in futures]
        return [{"partition": a.partition, "offset": a.offset} for a in acks]
    finally:
        producer.close(timeout=5)


def produce(bootstrap: str, params: Params) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if params.get("codec"):
        config["compression_type"] = params["codec"]
    if params.get("idempotent"):
        config.update(enable_idempotence=True, retries=5, max_in_flight_requests_per_connection=5)
    return {"produced": _produce(bootstrap, params["topic"], params["messages"], **config)}


def consume(bootstrap: str, params: Params) -> dict[str, Any]:
    return {"consumed": _consume_all(bootstrap, params["topic"], params["partitions"],
                                     len(params["messages"]))}


def produce_consume(bootstrap: str, params: Params) -> dict[str, Any]:
    return produce(bootstrap, params) | consume(bootstrap, params)


def large_message(bootstrap: str, params: Params) -> dict[str, Any]:
    value = pattern_bytes(params["size"])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=LARGE_LIMIT_BYTES,
                             request_timeout_ms=REQUEST_TIMEOUT_MS, max_block_ms=REQUEST_TIMEOUT_MS)
    try:
        ack = producer.send(params["topic"], key=encode(params["key"]), value=value).get(
            timeout=REQUEST_TIMEOUT_MS / 1000)
    finally:
        producer.close(timeout=5)
    records = _consume_all_raw(bootstrap, params["topic"], ack.partition,
                               max_partition_fetch_bytes=LARGE_LIMIT_BYTES, fetch_max_bytes=LARGE_LIMIT_BYTES)
    return {"produced": {"partition": ack.partition, "offset": ack.offset},
            "consumed": [{"partition": m.partition, "offset": m.offset, "key": text(m.key),
                          "size": len(m.value), "sha256": sha256_hex(m.value)} for m in records]}


def _consume_all_raw(bootstrap: str, topic: str, partition: int, **overrides: Any) -> list[Any]:
    consumer = _consumer(bootstrap, **overrides)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        records: list[Any] = []
        deadline = deadline_after(15)
        while consumer.position(tp) < end and not expired(deadline):
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def offsets(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, seek_to = params["topic"], params["seek_offset"]
    consumer = _consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        earliest = consumer.beginning_offsets([tp])[tp]
        latest = consumer.end_offsets([tp])[tp]
        by_time: dict[str, int | None] = {}
        for ts in params["query_timestamps"]:
            found = consumer.offsets_for_times({tp: ts})[tp]
            by_time[str(ts)] = None if found is None else found.offset
        consumer.assign([tp])
        consumer.seek(tp, seek_to)
        first = None
        deadline = deadline_after(10)
        while first is None and not expired(deadline):
            for batch in consumer.poll(timeout_ms=200, max_records=1).values():
                first = {"offset": batch[0].offset, "value": text(batch[0].value)}
        consumer.seek_to_end(tp)
        position_at_end = consumer.position(tp)
        return {"earliest": earliest, "latest": latest, "by_time": by_time, "seek": first,
                "position_after_seek_to_end": position_at_end}
    finally:
        consumer.close()


def out_of_range(bootstrap: str, params: Params) -> dict[str, Any]:
    topic = params["topic"]
    consumer = _consumer(bootstrap, auto_offset_reset="none")
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, params["bad_offset"])
        error = None
        deadline = deadline_after(10)
        while error is None and not expired(deadline):
            try:
                consumer.poll(timeout_ms=200)
            except OffsetOutOfRangeError as exc:
                error = describe_error(exc)
        consumer.seek_to_beginning(tp)
        after_reset: list[int] = []
        deadline = deadline_after(10)
        while len(after_reset) < params["count"] and not expired(deadline):
            for batch in consumer.poll(timeout_ms=200).values():
                after_reset.extend(m.offset for m in batch)
        return {"out_of_range_seen": error is not None, "error": error, "offsets_after_reset": after_reset}
    finally:
        consumer.close()


def missing_topic(bootstrap: str, params: Params) -> dict[str, Any]:
    timeout_ms = params["timeout_ms"]
    started = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_block_ms=timeout_ms,
                             request_timeout_ms=timeout_ms)
    try:
        try:
            producer.send(params["topic"], value=b"nobody home").get(timeout=timeout_ms / 1000)
            error = None
        except Exception as exc:
            error = describe_error(exc)
    finally:
        producer.close(timeout=2)
    return {"delivered": error is None, "error": error,
            "elapsed_ms": int((time.monotonic() - started) * 1000)}


ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
             "cooperative-sticky": CooperativeStickyAssignor}


def group_member(bootstrap: str, params: Params) -> dict[str, Any]:
    if params.get("protocol", "classic") != "classic":
        raise Unsupported("kafka-python has no group.protocol=consumer (KIP-848)")
    topic = params["topic"]
    events = MemberEvents()
    config: dict[str, Any] = dict(
        group_id=params["group"], group_instance_id=params.get("instance_id"), enable_auto_commit=False,
        session_timeout_ms=params["session_timeout_ms"], heartbeat_interval_ms=params["heartbeat_interval_ms"],
        fetch_max_wait_ms=100,
    )
    if params.get("assignor"):
        config["partition_assignment_strategy"] = (ASSIGNORS[params["assignor"]],)
    consumer = _consumer(bootstrap, **config)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            events.revoked([tp.partition for tp in revoked if tp.topic == topic])

        def on_partitions_assigned(self, assigned: Any) -> None:
            events.assigned([tp.partition for tp in assigned if tp.topic == topic])

        def on_partitions_lost(self, lost: Any) -> None:
            events.revoked([tp.partition for tp in lost if tp.topic == topic])

    counted = Counted(params.get("consume_count"))
    report = params.get("report_records") or counted.limit is not None
    try:
        # Known before the first JoinGroup, the topic's partitions go into the first assignment.
        # Otherwise kafka-python 3.0.12 assigns nothing, rejoins once the metadata arrives, and
        # if a poll times out during that rejoin it never applies the assignment it then gets
        # (the leader's new metadata snapshot hides the pending rejoin).
        consumer.partitions_for_topic(topic)
        consumer.subscribe([topic], listener=Listener())
        events.emit("started")
        while not events.stop.is_set() and not counted.done:
            batches = consumer.poll(timeout_ms=100)
            taken = counted.take([(m.partition, m.offset) for batch in batches.values() for m in batch])
            if taken and report:
                events.emit("records", records=taken)
        if counted.done:
            offsets = counted.next_offsets()
            consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
            events.emit("committed", offsets=offsets)
    except Exception as exc:
        events.emit("error", error=describe_error(exc))
        raise
    finally:
        consumer.close(autocommit=False)
    events.emit("closed")
    return {"consumed": len(counted.records)}


# --- the cluster matrix ------------------------------------------------------------------------------


def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=REQUEST_TIMEOUT_MS)


def cluster_metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    """The consumer's own metadata cache, as its fetcher and the producer use it."""
    consumer = _consumer(bootstrap)
    try:
        consumer.partitions_for_topic(params["topic"])  # a Metadata request for the topic
        cluster = consumer._client.cluster  # the partition details have no public accessor
        partitions = cluster._partitions.get(params["topic"], {})
        return {
            "brokers": [{"node_id": b.node_id, "host": b.host, "port": b.port} for b in cluster.brokers()],
            "partitions": [{"partition": pid, "leader": p.leader_id, "replicas": list(p.replica_nodes),
                            "isr": list(p.isr_nodes), "offline": list(p.offline_replicas)}
                           for pid, p in sorted(partitions.items())],
        }
    finally:
        consumer.close()


def cluster_describe(bootstrap: str, params: Params) -> dict[str, Any]:
    client = _admin(bootstrap)
    try:
        cluster = client.describe_cluster()
        (topic,) = client.describe_topics([params["topic"]])
        return {
            "cluster_id": cluster["cluster_id"], "controller_id": cluster["controller_id"],
            "brokers": [{"node_id": b["broker_id"], "host": b["host"], "port": b["port"]} for b in cluster["brokers"]],
            "partitions": [{"partition": p["partition_index"], "leader": p["leader_id"],
                            "replicas": p["replica_nodes"], "isr": p["isr_nodes"]}
                           for p in sorted(topic["partitions"], key=lambda p: p["partition_index"])],
        }
    finally:
        client.close()


def _leader(client: KafkaAdminClient, topic: str, partition: int) -> int | None:
    (described,) = client.describe_topics([topic])
    return next((p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition), None)


def elect_leaders(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, partition = params["topic"], params["partition"]
    client = _admin(bootstrap)
    try:
        response = client.elect_leaders(0, {topic: [partition]}, raise_errors=False)  # 0: preferred
        codes = [getattr(response, "error_code", 0)] + [
            p.error_code for r in response.replica_election_results for p in r.partition_result
            if r.topic == topic and p.partition_id == partition]
        error = next((for_code(c).__name__ for c in codes if c), None)
        leader = _leader(client, topic, partition)
        deadline = deadline_after(params["wait_ms"] / 1000)
        while leader != params["preferred"] and not expired(deadline):
            time.sleep(0.2)
            leader = _leader(client, topic, partition)
        return {"error": error, "leader_after": leader}
    finally:
        client.close()


def alter_reassignment(bootstrap: str, params: Params) -> dict[str, Any]:
    client = _admin(bootstrap)
    try:
        tp = TopicPartition(params["topic"], params["partition"])
        errors = client.alter_partition_reassignments({tp: params["replicas"]})
        if tp not in errors:
            return {"error": "the broker did not answer for the partition"}
        return {"error": None if errors[tp] is None else str(errors[tp].__name__)}
    finally:
        client.close()


def list_reassignments(bootstrap: str, params: Params) -> dict[str, Any]:
    client = _admin(bootstrap)
    try:
        listed = client.list_partition_reassignments({params["topic"]: [params["partition"]]})
        return {"ongoing": [{"partition": tp.partition, "replicas": r["replicas"], "adding": r["adding_replicas"],
                             "removing": r["removing_replicas"]}
                            for tp, r in sorted(listed.items()) if tp.topic == params["topic"]]}
    finally:
        client.close()


def failover(bootstrap: str, params: Params) -> dict[str, Any]:
    run = FailoverRun(params, MemberEvents())
    tp = TopicPartition(run.topic, run.partition)
    servers = bootstrap.split(",")

    def consume() -> None:
        consumer = _consumer(bootstrap, fetch_max_wait_ms=100)
        try:
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            while not (run.events.stop.is_set() and run.drained()) and not expired(drain_deadline[0]):
                for batch in consumer.poll(timeout_ms=100).values():
                    for m in batch:
                        run.on_consumed(m.offset, text(m.value))
        except Exception as exc:
            run.on_fatal(f"consumer: {describe_error(exc)}")
        finally:
            consumer.close()

    drain_deadline = [float("inf")]
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True, linger_ms=5,
                             request_timeout_ms=REQUEST_TIMEOUT_MS, delivery_timeout_ms=int(run.drain_timeout_s * 1000))
    try:
        while not run.events.stop.is_set() and not run.fatal:
            while run.sent < run.due():
                index = run.next_index()
                future = producer.send(run.topic, value=run.value(index).encode(), partition=run.partition)
                future.add_callback(lambda md, i=index: run.on_ack(i, md.offset))
                future.add_errback(lambda exc, i=index: run.on_fail(i, describe_error(exc)))
            run.progress()
            time.sleep(0.01)
        drain_deadline[0] = deadline_after(run.drain_timeout_s)
        producer.flush(timeout=run.drain_timeout_s)
        while not run.drained() and not expired(drain_deadline[0]):
            run.progress()
            time.sleep(0.05)
    finally:
        drain_deadline[0] = 0.0
        producer.close(timeout=5)
        reader.join(timeout=15)
    run.progress(force=True)
    run.events.emit("closed")
    return run.result()


HANDLERS = {
    "cluster_metadata": cluster_metadata,
    "cluster_describe": cluster_describe,
    "elect_leaders": elect_leaders,
    "alter_reassignment": alter_reassignment,
    "list_reassignments": list_reassignments,
    "failover": failover,
    "metadata": metadata,
    "admin": admin,
    "produce_consume": produce_consume,
    "produce": produce,
    "consume": consume,
    "large_message": large_message,
    "offsets": offsets,
    "out_of_range": out_of_range,
    "missing_topic": missing_topic,
    "group_member": group_member,
}

if __name__ == "__main__":
    sys.exit(main("kafka-python", kafka.__version__, HANDLERS))
