"""confluent-kafka (librdkafka) driver of the compatibility matrix; see common.py for the contract.

Consumers are assigned partitions by hand. librdkafka insists on a group.id for a consumer, so one
is set, but with no subscription and no commits the group is never joined. ``group_member`` is
the exception: one member of a consumer group that the harness drives (see common.py).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import confluent_kafka  # noqa: E402
from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING,
    Consumer,
    ElectionType,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from common import (  # noqa: E402
    Counted,
    FailoverRun,
    MemberEvents,
    Params,
    deadline_after,
    encode,
    expired,
    main,
    pattern_bytes,
    record_dict,
    sha256_hex,
    text,
)

TIMEOUT_S = 10.0
LARGE_LIMIT_BYTES = 4 * 1024 * 1024


def _consumer(bootstrap: str, **overrides: Any) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap, "group.id": f"compat-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
        "enable.partition.eof": True,
    }
    config.update(overrides)
    return Consumer(config)


def _headers(msg: Any) -> list[tuple[str, bytes | None]]:
    return list(msg.headers() or [])


def _record(msg: Any) -> dict[str, Any]:
    _kind, ts = msg.timestamp()
    return record_dict(partition=msg.partition(), offset=msg.offset(), key=msg.key(), value=msg.value(),
                       headers=_headers(msg), timestamp_ms=ts)


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int, **overrides: Any) -> list[Any]:
    """Raw messages of every partition from the beginning up to each partition's end offset."""
    consumer = _consumer(bootstrap, **overrides)
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S, cached=False)[1]
                for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        positions = dict.fromkeys(range(partitions), 0)
        messages: list[Any] = []
        deadline = deadline_after(15)
        while not expired(deadline):
            if len(messages) >= expected and all(positions[p] >= ends[p] for p in positions):
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    positions[msg.partition()] = max(positions[msg.partition()], msg.offset())
                    continue
                raise KafkaException(msg.error())
            messages.append(msg)
            positions[msg.partition()] = msg.offset() + 1
        return messages
    finally:
        consumer.close()


def metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = admin.list_topics(timeout=TIMEOUT_S)
    return {
        "brokers": [{"node_id": b.id, "host": b.host, "port": b.port} for b in cluster.brokers.values()],
        "topics": {name: len(t.partitions) for name, t in cluster.topics.items()},
    }


def _topic_configs(admin: AdminClient, topic: str, names: list[str]) -> dict[str, str | None]:
    (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    entries = future.result(timeout=TIMEOUT_S)
    return {name: (entries[name].value if name in entries else None) for name in names}


def admin(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, create_configs, alter = params["topic"], params["configs"], params["alter_configs"]
    client = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=params["partitions"], replication_factor=1, config=create_configs)
    client.create_topics([new], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    (described,) = client.describe_topics(TopicCollection([topic])).values()
    partitions = len(described.result(timeout=TIMEOUT_S).partitions)
    after_create = _topic_configs(client, topic, list(create_configs))
    entries = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, value in alter.items()]
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    for future in client.incremental_alter_configs([resource]).values():
        future.result(timeout=TIMEOUT_S)
    after_alter = _topic_configs(client, topic, list(alter))
    client.delete_topics([topic], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    listed = True
    deadline = deadline_after(5)
    while listed and not expired(deadline):
        listed = topic in client.list_topics(timeout=TIMEOUT_S).topics
        if listed:
            time.sleep(0.2)
    return {"created": True, "partitions": partitions, "configs_after_create": after_create,
            "configs_after_alter": after_alter, "listed_after_delete": listed}


def _produce(bootstrap: str, topic: str, messages: list[dict[str, Any]], **config: Any) -> list[dict[str, Any]]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config})
    acks: list[dict[str, Any] | None] = [None] * len(messages)
    errors: list[str] = []

    def delivered(index: int) -> Any:
        def callback(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                acks[index] = {"partition": msg.partition(), "offset": msg.offset()}
        return callback

    for i, m in enumerate(messages):
        producer.produce(topic, key=encode(m["key"]), value=encode(m["value"]),
                         headers=[(h, encode(v)) for h, v in m.get("headers", [])],
                         timestamp=m.get("timestamp", 0), on_delivery=delivered(i))
    remaining = producer.flush(TIMEOUT_S)
    if errors or remaining:
        raise RuntimeError(f"delivery failed: {errors[:3]}, {remaining} undelivered")
    return [a for a in acks if a is not None]


def produce(bootstrap: str, params: Params) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if params.get("codec"):
        config["compression.type"] = params["codec"]
    if params.get("idempotent"):
        config.update({"enable.idempotence": True, "retries": 5, "max.in.flight.requests.per.connection": 5})
    return {"produced": _produce(bootstrap, params["topic"], params["messages"], **config)}


def consume(bootstrap: str, params: Params) -> dict[str, Any]:
    messages = _consume_all(bootstrap, params["topic"], params["partitions"], len(params["messages"]))
    return {"consumed": [_record(m) for m in messages]}


def produce_consume(bootstrap: str, params: Params) -> dict[str, Any]:
    return produce(bootstrap, params) | consume(bootstrap, params)


def large_message(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, value = params["topic"], pattern_bytes(params["size"])
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": LARGE_LIMIT_BYTES})
    delivered: list[Any] = []
    producer.produce(topic, key=encode(params["key"]), value=value,
                     on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(TIMEOUT_S)
    if not delivered or delivered[0][0] is not None:
        raise RuntimeError(f"delivery failed: {delivered[0][0] if delivered else 'no report'}")
    msg = delivered[0][1]
    acks = {"partition": msg.partition(), "offset": msg.offset()}
    records = _consume_all(bootstrap, topic, 1, 1, **{
        "fetch.max.bytes": LARGE_LIMIT_BYTES, "max.partition.fetch.bytes": LARGE_LIMIT_BYTES,
        "receive.message.max.bytes": LARGE_LIMIT_BYTES + 1024 * 1024})
    return {"produced": acks,
            "consumed": [{"partition": m.partition(), "offset": m.offset(), "key": text(m.key()),
                          "size": len(m.value()), "sha256": sha256_hex(m.value())} for m in records]}


def offsets(bootstrap: str, params: Params) -> dict[str, Any]:
    topic = params["topic"]
    consumer = _consumer(bootstrap)
    try:
        earliest, latest = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S,
                                                          cached=False)
        by_time: dict[str, int | None] = {}
        for ts in params["query_timestamps"]:
            (found,) = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT_S)
            if found.error is not None:
                raise KafkaException(found.error)
            by_time[str(ts)] = None if found.offset < 0 else found.offset
        consumer.assign([TopicPartition(topic, 0, params["seek_offset"])])
        first = None
        deadline = deadline_after(10)
        while first is None and not expired(deadline):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                first = {"offset": msg.offset(), "value": text(msg.value())}
        return {"earliest": earliest, "latest": latest, "by_time": by_time, "seek": first}
    finally:
        consumer.close()


def out_of_range(bootstrap: str, params: Params) -> dict[str, Any]:
    topic = params["topic"]
    consumer = _consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, params["bad_offset"])])
        error = None
        seen = False
        deadline = deadline_after(10)
        while error is None and not expired(deadline):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                error = str(msg.error())
                # librdkafka reports the broker's OFFSET_OUT_OF_RANGE as _AUTO_OFFSET_RESET when
                # auto.offset.reset=error; its text names the broker error.
                seen = msg.error().code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE) \
                    and "out of range" in error.lower()
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        after_reset: list[int] = []
        deadline = deadline_after(10)
        while len(after_reset) < params["count"] and not expired(deadline):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                after_reset.append(msg.offset())
        return {"out_of_range_seen": seen, "error": error, "offsets_after_reset": after_reset}
    finally:
        consumer.close()


def missing_topic(bootstrap: str, params: Params) -> dict[str, Any]:
    started = time.monotonic()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "message.timeout.ms": params["timeout_ms"]})
    reports: list[Any] = []
    error = None
    try:
        producer.produce(params["topic"], value=b"nobody home", on_delivery=lambda err, msg: reports.append(err))
        producer.flush(params["timeout_ms"] / 1000 + 5)
        if not reports:
            error = "no delivery report before the flush timed out"
        elif reports[0] is not None:
            error = f"KafkaError {reports[0].name()}: {reports[0].str()}"
    except (KafkaException, BufferError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"delivered": error is None, "error": error,
            "elapsed_ms": int((time.monotonic() - started) * 1000)}


def group_member(bootstrap: str, params: Params) -> dict[str, Any]:
    topic = params["topic"]
    events = MemberEvents()
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap, "group.id": params["group"], "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
    }
    if params.get("protocol", "classic") == "classic":
        config.update({"session.timeout.ms": params["session_timeout_ms"],
                       "heartbeat.interval.ms": params["heartbeat_interval_ms"]})
        if params.get("assignor"):
            config["partition.assignment.strategy"] = params["assignor"]
    else:
        # KIP-848: the broker assigns and keeps the timeouts; the client may not set them.
        config["group.protocol"] = params["protocol"]
    if params.get("instance_id"):
        config["group.instance.id"] = params["instance_id"]
    fatal: list[str] = []

    def on_error(err: KafkaError) -> None:
        sys.stderr.write(f"librdkafka error: {err}\n")
        if err.fatal() or err.code() in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
            fatal.append(str(err))

    config["error_cb"] = on_error
    consumer = Consumer(config)
    # With a callback the library still does the (incremental) assign or unassign after it returns.
    mine = lambda partitions: [tp.partition for tp in partitions if tp.topic == topic]  # noqa: E731
    counted = Counted(params.get("consume_count"))
    report = params.get("report_records") or counted.limit is not None
    try:
        consumer.subscribe([topic], on_assign=lambda c, ps: events.assigned(mine(ps)),
                           on_revoke=lambda c, ps: events.revoked(mine(ps)),
                           on_lost=lambda c, ps: events.revoked(mine(ps)))
        events.emit("started")
        while not events.stop.is_set() and not counted.done:
            if fatal:
                raise KafkaException(fatal[0])
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            taken = counted.take([(msg.partition(), msg.offset())])
            if taken and report:
                events.emit("records", records=taken)
        if counted.done:
            offsets = counted.next_offsets()
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
            events.emit("committed", offsets=offsets)
    except Exception as exc:
        events.emit("error", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        consumer.close()
    events.emit("closed")
    return {"consumed": len(counted.records)}


# --- the cluster matrix ------------------------------------------------------------------------------


def cluster_metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    """librdkafka's Metadata view; it does not keep the offline replicas."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = admin.list_topics(params["topic"], timeout=TIMEOUT_S)
    topic = cluster.topics[params["topic"]]
    if topic.error is not None:
        raise KafkaException(topic.error)
    return {
        "brokers": [{"node_id": b.id, "host": b.host, "port": b.port} for b in cluster.brokers.values()],
        "partitions": [{"partition": pid, "leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs),
                        "offline": None} for pid, p in sorted(topic.partitions.items())],
    }


def cluster_describe(bootstrap: str, params: Params) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster = admin.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    (future,) = admin.describe_topics(TopicCollection([params["topic"]]), request_timeout=TIMEOUT_S).values()
    topic = future.result(timeout=TIMEOUT_S)
    return {
        "cluster_id": cluster.cluster_id,
        "controller_id": None if cluster.controller is None else cluster.controller.id,
        "brokers": [{"node_id": n.id, "host": n.host, "port": n.port} for n in cluster.nodes],
        "partitions": [{"partition": p.id, "leader": None if p.leader is None else p.leader.id,
                        "replicas": [n.id for n in p.replicas], "isr": [n.id for n in p.isr]}
                       for p in sorted(topic.partitions, key=lambda p: p.id)],
    }


def _leader(admin: AdminClient, topic: str, partition: int) -> int | None:
    p = admin.list_topics(topic, timeout=TIMEOUT_S).topics[topic].partitions.get(partition)
    return None if p is None else p.leader


def elect_leaders(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, partition = params["topic"], params["partition"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, partition)
    # No timeout keywords: confluent-kafka 2.16 fails to parse them here (a SystemError).
    results = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=TIMEOUT_S)
    errors = [str(err) for got, err in results.items()
              if (got.topic, got.partition) == (topic, partition) and err is not None]
    if not any((got.topic, got.partition) == (topic, partition) for got in results):
        errors.append(f"no result for {topic}-{partition} in {results}")
    leader = _leader(admin, topic, partition)
    deadline = deadline_after(params["wait_ms"] / 1000)
    while leader != params["preferred"] and not expired(deadline):
        time.sleep(0.2)
        leader = _leader(admin, topic, partition)
    return {"error": errors[0] if errors else None, "leader_after": leader}


def failover(bootstrap: str, params: Params) -> dict[str, Any]:
    run = FailoverRun(params, MemberEvents())
    drain_deadline = [float("inf")]

    def on_error(err: KafkaError) -> None:
        (run.on_fatal if err.fatal() else run.on_client_error)(f"{err.name()}: {err.str()}")

    def consume() -> None:
        consumer = _consumer(bootstrap, error_cb=on_error)
        try:
            consumer.assign([TopicPartition(run.topic, run.partition, OFFSET_BEGINNING)])
            while not (run.events.stop.is_set() and run.drained()) and not expired(drain_deadline[0]):
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        on_error(err)
                    continue
                run.on_consumed(msg.offset() or 0, text(msg.value()))  # a record always has its offset
        except Exception as exc:
            run.on_fatal(f"consumer: {type(exc).__name__}: {exc}")
        finally:
            consumer.close()

    def delivered(index: int) -> Any:
        def callback(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                run.on_ack(index, msg.offset())
            else:
                run.on_fail(index, f"{err.name()}: {err.str()}")
        return callback

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": int(run.drain_timeout_s * 1000), "error_cb": on_error})
    try:
        while not run.events.stop.is_set() and not run.fatal:
            while run.sent < run.due():
                index = run.next_index()
                producer.produce(run.topic, value=run.value(index).encode(), partition=run.partition,
                                 on_delivery=delivered(index))
            producer.poll(0.01)
            run.progress()
        drain_deadline[0] = deadline_after(run.drain_timeout_s)
        producer.flush(run.drain_timeout_s)
        while not run.drained() and not expired(drain_deadline[0]):
            run.progress()
            time.sleep(0.05)
    finally:
        drain_deadline[0] = 0.0
        reader.join(timeout=15)
    run.progress(force=True)
    run.events.emit("closed")
    return run.result()


HANDLERS = {
    "cluster_metadata": cluster_metadata,
    "cluster_describe": cluster_describe,
    "elect_leaders": elect_leaders,
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
    own = confluent_kafka.version()  # a string, or (string, int) in older releases
    own = own[0] if isinstance(own, tuple) else own
    version = f"{own} (librdkafka {confluent_kafka.libversion()[0]})"
    sys.exit(main("confluent-kafka", version, HANDLERS))
