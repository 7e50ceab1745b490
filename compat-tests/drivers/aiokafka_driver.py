"""aiokafka driver of the compatibility matrix; see common.py for the command-line contract.

Consumers are assigned partitions by hand (group_id=None), except in ``group_member``: one member
of a consumer group that the harness drives (see common.py). aiokafka's admin client hands back
the raw responses, so this driver checks their error codes itself.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiokafka  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: E402
from aiokafka.coordinator.assignors.range import RangePartitionAssignor  # noqa: E402
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor  # noqa: E402
from aiokafka.errors import OffsetOutOfRangeError  # noqa: E402

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


def _consumer(bootstrap: str, **overrides: Any) -> AIOKafkaConsumer:
    config: dict[str, Any] = dict(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", request_timeout_ms=REQUEST_TIMEOUT_MS, fetch_max_wait_ms=200,
    )
    config.update(overrides)
    return AIOKafkaConsumer(**config)


def _record(msg: Any) -> dict[str, Any]:
    return record_dict(partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                       headers=list(msg.headers or []), timestamp_ms=msg.timestamp)


async def _consume_all(bootstrap: str, topic: str, partitions: list[int], expected: int,
                       **overrides: Any) -> list[Any]:
    consumer = _consumer(bootstrap, **overrides)
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        messages: list[Any] = []
        deadline = deadline_after(15)
        while not expired(deadline):
            positions = [await consumer.position(tp) for tp in tps]
            if len(messages) >= expected and all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                messages.extend(batch)
        return messages
    finally:
        await consumer.stop()


async def metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    # The admin client's describe_* calls are plain Metadata requests.
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await client.start()
        cluster = await client.describe_cluster()
        topics = await client.describe_topics()
        return {
            "brokers": [{"node_id": b["node_id"], "host": b["host"], "port": b["port"]} for b in cluster["brokers"]],
            "topics": {t["topic"]: len(t["partitions"]) for t in topics},
        }
    finally:
        await client.close()


def _check(response: Any) -> Any:
    """Raise on any non-zero error code anywhere in an admin response; return it as dicts."""
    obj = response.to_object()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            code = node.get("error_code")
            if code:
                raise RuntimeError(f"{type(response).__name__} error_code {code}: {node}")
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(obj)
    return obj


async def _topic_configs(client: AIOKafkaAdminClient, topic: str, names: list[str]) -> dict[str, str | None]:
    (response,) = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    obj = _check(response)
    entries = {e["config_names"]: e["config_value"] for r in obj["resources"] for e in r["config_entries"]}
    return {name: entries.get(name) for name in names}


async def admin(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, create_configs, alter = params["topic"], params["configs"], params["alter_configs"]
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await client.start()
        _check(await client.create_topics([NewTopic(topic, params["partitions"], 1, topic_configs=create_configs)]))
        (described,) = await client.describe_topics([topic])
        partitions = len(described["partitions"])
        after_create = await _topic_configs(client, topic, list(create_configs))
        for response in await client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, alter)]):
            _check(response)
        after_alter = await _topic_configs(client, topic, list(alter))
        _check(await client.delete_topics([topic]))
        listed = topic in await client.list_topics()
        deadline = deadline_after(5)
        while listed and not expired(deadline):
            await asyncio.sleep(0.2)
            listed = topic in await client.list_topics()
        return {"created": True, "partitions": partitions, "configs_after_create": after_create,
                "configs_after_alter": after_alter, "listed_after_delete": listed}
    finally:
        await client.close()


async def _produce(bootstrap: str, topic: str, messages: list[dict[str, Any]], **config: Any) -> list[dict[str, Any]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                request_timeout_ms=REQUEST_TIMEOUT_MS, **config)
    try:
        await producer.start()
        futures = [
            await producer.send(topic, key=encode(m["key"]), value=encode(m["value"]),
                                headers=[(h, encode(v)) for h, v in m.get("headers", [])],
                                timestamp_ms=m.get("timestamp"))
            for m in messages
        ]
        acks = await asyncio.gather(*futures)
        return [{"partition": a.partition, "offset": a.offset} for a in acks]
    finally:
        await producer.stop()


async def produce(bootstrap: str, params: Params) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if params.get("codec"):
        config["compression_type"] = params["codec"]
    if params.get("idempotent"):
        config["enable_idempotence"] = True
    return {"produced": await _produce(bootstrap, params["topic"], params["messages"], **config)}


async def consume(bootstrap: str, params: Params) -> dict[str, Any]:
    messages = await _consume_all(bootstrap, params["topic"], list(range(params["partitions"])),
                                  len(params["messages"]))
    return {"consumed": [_record(m) for m in messages]}


async def produce_consume(bootstrap: str, params: Params) -> dict[str, Any]:
    return await produce(bootstrap, params) | await consume(bootstrap, params)


async def large_message(bootstrap: str, params: Params) -> dict[str, Any]:
    topic, value = params["topic"], pattern_bytes(params["size"])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=LARGE_LIMIT_BYTES,
                                request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await producer.start()
        ack = await producer.send_and_wait(topic, key=encode(params["key"]), value=value)
    finally:
        await producer.stop()
    records = await _consume_all(bootstrap, topic, [ack.partition], 1,
                                 max_partition_fetch_bytes=LARGE_LIMIT_BYTES, fetch_max_bytes=LARGE_LIMIT_BYTES)
    return {"produced": {"partition": ack.partition, "offset": ack.offset},
            "consumed": [{"partition": m.partition, "offset": m.offset, "key": text(m.key),
                          "size": len(m.value), "sha256": sha256_hex(m.value)} for m in records]}


async def offsets(bootstrap: str, params: Params) -> dict[str, Any]:
    consumer = _consumer(bootstrap)
    try:
        await consumer.start()
        tp = TopicPartition(params["topic"], 0)
        earliest = (await consumer.beginning_offsets([tp]))[tp]
        latest = (await consumer.end_offsets([tp]))[tp]
        by_time: dict[str, int | None] = {}
        for ts in params["query_timestamps"]:
            found = (await consumer.offsets_for_times({tp: ts}))[tp]
            by_time[str(ts)] = None if found is None else found.offset
        consumer.assign([tp])
        consumer.seek(tp, params["seek_offset"])
        first = None
        deadline = deadline_after(10)
        while first is None and not expired(deadline):
            for batch in (await consumer.getmany(tp, timeout_ms=200, max_records=1)).values():
                first = {"offset": batch[0].offset, "value": text(batch[0].value)}
        await consumer.seek_to_end(tp)
        position_at_end = await consumer.position(tp)
        return {"earliest": earliest, "latest": latest, "by_time": by_time, "seek": first,
                "position_after_seek_to_end": position_at_end}
    finally:
        await consumer.stop()


async def out_of_range(bootstrap: str, params: Params) -> dict[str, Any]:
    consumer = _consumer(bootstrap, auto_offset_reset="none")
    try:
        await consumer.start()
        tp = TopicPartition(params["topic"], 0)
        consumer.assign([tp])
        consumer.seek(tp, params["bad_offset"])
        error = None
        deadline = deadline_after(10)
        while error is None and not expired(deadline):
            try:
                await consumer.getmany(timeout_ms=200)
            except OffsetOutOfRangeError as exc:
                error = describe_error(exc)
        await consumer.seek_to_beginning(tp)
        after_reset: list[int] = []
        deadline = deadline_after(10)
        while len(after_reset) < params["count"] and not expired(deadline):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                after_reset.extend(m.offset for m in batch)
        return {"out_of_range_seen": error is not None, "error": error, "offsets_after_reset": after_reset}
    finally:
        await consumer.stop()


async def missing_topic(bootstrap: str, params: Params) -> dict[str, Any]:
    timeout_ms = params["timeout_ms"]
    started = time.monotonic()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=timeout_ms)
    await producer.start()
    error = None
    try:
        await asyncio.wait_for(producer.send_and_wait(params["topic"], value=b"nobody home"),
                               timeout=timeout_ms / 1000 + 10)
    except Exception as exc:
        error = describe_error(exc)
    finally:
        await producer.stop()
    return {"delivered": error is None, "error": error,
            "elapsed_ms": int((time.monotonic() - started) * 1000)}


ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}


async def group_member(bootstrap: str, params: Params) -> dict[str, Any]:
    if params.get("protocol", "classic") != "classic":
        raise Unsupported("aiokafka has no group.protocol=consumer (KIP-848)")
    if params.get("assignor") and params["assignor"] not in ASSIGNORS:
        raise Unsupported(f"aiokafka has no {params['assignor']} assignor")
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
        async def on_partitions_revoked(self, revoked: Any) -> None:
            events.revoked([tp.partition for tp in revoked if tp.topic == topic])

        async def on_partitions_assigned(self, assigned: Any) -> None:
            events.assigned([tp.partition for tp in assigned if tp.topic == topic])

    counted = Counted(params.get("consume_count"))
    report = params.get("report_records") or counted.limit is not None
    try:
        await consumer.start()
        consumer.subscribe([topic], listener=Listener())
        events.emit("started")
        while not events.stop.is_set() and not counted.done:
            batches = await consumer.getmany(timeout_ms=100)
            taken = counted.take([(m.partition, m.offset) for batch in batches.values() for m in batch])
            if taken and report:
                events.emit("records", records=taken)
        if counted.done:
            offsets = counted.next_offsets()
            await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
            events.emit("committed", offsets=offsets)
    except Exception as exc:
        events.emit("error", error=describe_error(exc))
        raise
    finally:
        await consumer.stop()
    events.emit("closed")
    return {"consumed": len(counted.records)}


# --- the cluster matrix ------------------------------------------------------------------------------


async def _describe(bootstrap: str, topic: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """aiokafka's admin describe calls are Metadata requests, answered as the response's dicts
    (offline replicas included)."""
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        await client.start()
        cluster = await client.describe_cluster()
        (described,) = await client.describe_topics([topic])
        return cluster, described
    finally:
        await client.close()


def _partitions(topic: str, described: dict[str, Any]) -> list[dict[str, Any]]:
    if described["error_code"]:
        raise RuntimeError(f"Metadata answered error {described['error_code']} for {topic}")
    return [{"partition": p["partition"], "leader": p["leader"], "replicas": p["replicas"], "isr": p["isr"],
             "offline": p.get("offline_replicas")}
            for p in sorted(described["partitions"], key=lambda p: p["partition"])]


def _brokers(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"node_id": b["node_id"], "host": b["host"], "port": b["port"]} for b in cluster["brokers"]]


async def cluster_metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    cluster, described = await _describe(bootstrap, params["topic"])
    return {"brokers": _brokers(cluster), "partitions": _partitions(params["topic"], described)}


async def cluster_describe(bootstrap: str, params: Params) -> dict[str, Any]:
    cluster, described = await _describe(bootstrap, params["topic"])
    partitions = _partitions(params["topic"], described)
    for p in partitions:
        del p["offline"]
    return {"cluster_id": cluster["cluster_id"], "controller_id": cluster["controller_id"],
            "brokers": _brokers(cluster), "partitions": partitions}


async def failover(bootstrap: str, params: Params) -> dict[str, Any]:
    run = FailoverRun(params, MemberEvents())
    tp = TopicPartition(run.topic, run.partition)
    drain_deadline = [float("inf")]

    async def consume() -> None:
        consumer = _consumer(bootstrap, fetch_max_wait_ms=100)
        try:
            await consumer.start()
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while not (run.events.stop.is_set() and run.drained()) and not expired(drain_deadline[0]):
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    for m in batch:
                        run.on_consumed(m.offset, text(m.value))
        except Exception as exc:
            run.on_fatal(f"consumer: {describe_error(exc)}")
        finally:
            await consumer.stop()

    def settle(index: int) -> Any:
        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                run.on_fail(index, "cancelled")
            elif future.exception() is not None:
                run.on_fail(index, describe_error(future.exception()))  # type: ignore[arg-type]
            else:
                run.on_ack(index, future.result().offset)
        return done

    reader = asyncio.create_task(consume())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                request_timeout_ms=REQUEST_TIMEOUT_MS)
    await producer.start()
    try:
        while not run.events.stop.is_set() and not run.fatal:
            while run.sent < run.due():
                index = run.next_index()
                future = await producer.send(run.topic, value=run.value(index).encode(), partition=run.partition)
                future.add_done_callback(settle(index))
            run.progress()
            await asyncio.sleep(0.01)
        drain_deadline[0] = deadline_after(run.drain_timeout_s)
        await asyncio.wait_for(producer.flush(), run.drain_timeout_s)
        while not run.drained() and not expired(drain_deadline[0]):
            run.progress()
            await asyncio.sleep(0.05)
    finally:
        drain_deadline[0] = 0.0
        await producer.stop()
        await asyncio.wait_for(reader, 15)
    run.progress(force=True)
    run.events.emit("closed")
    return run.result()


ASYNC_HANDLERS = {
    "cluster_metadata": cluster_metadata,
    "cluster_describe": cluster_describe,
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


# aiokafka retries some requests until it is stopped (ListOffsets on a dropped connection, for
# one), so each step gets a deadline of its own rather than eating the whole plan's time.
STEP_TIMEOUT_S = 60.0


def _sync(handler: Any) -> Any:
    async def bounded(bootstrap: str, params: Params) -> dict[str, Any]:
        if handler in (group_member, failover):  # run until the harness closes their stdin
            return await handler(bootstrap, params)
        return await asyncio.wait_for(handler(bootstrap, params), STEP_TIMEOUT_S)

    return lambda bootstrap, params: asyncio.run(bounded(bootstrap, params))


if __name__ == "__main__":
    sys.exit(main("aiokafka", aiokafka.__version__, {k: _sync(v) for k, v in ASYNC_HANDLERS.items()}))
