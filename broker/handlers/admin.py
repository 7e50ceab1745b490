"""DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeLogDirs, DescribeProducers.

Topic config changes are validated as a whole before anything is stored, stored through the
topic catalogue (so they survive restarts) and applied to the topic's partition logs at once.
Broker configs are static here (``server.properties`` and ``--override``): describing them works,
altering them answers INVALID_REQUEST, since dynamic broker configs need the controller's
metadata log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from broker.config import (
    ConfigEntry,
    describe_broker_configs,
    describe_topic_configs,
    normalise_topic_config,
    validate_topic_configs,
)
from broker.dispatch import RequestContext, route
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.alter_configs import AlterConfigsRequest, AlterConfigsResponse
from protocol.messages.describe_configs import DescribeConfigsRequest, DescribeConfigsResponse
from protocol.messages.describe_log_dirs import DescribeLogDirsRequest, DescribeLogDirsResponse
from protocol.messages.describe_producers import DescribeProducersRequest, DescribeProducersResponse
from protocol.messages.incremental_alter_configs import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)

# ConfigResource.Type codes.
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
# IncrementalAlterConfigs operations.
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
LIST_CONFIGS = frozenset({"cleanup.policy", "leader.replication.throttled.replicas",
                          "follower.replication.throttled.replicas"})


@route(ApiKey.DESCRIBE_CONFIGS, 1, 4)
async def describe_configs(ctx: RequestContext, req: DescribeConfigsRequest) -> DescribeConfigsResponse:
    b = ctx.broker
    version = ctx.api_version
    results = []
    for res in req.resources:
        r = DescribeConfigsResponse.DescribeConfigsResult(resource_type=res.resource_type,
                                                          resource_name=res.resource_name)
        results.append(r)
        keys = res.configuration_keys
        entries: list[ConfigEntry]
        if res.resource_type == RESOURCE_TOPIC:
            topic = b.topics.get(res.resource_name)
            if topic is None:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                r.error_message = f"topic {res.resource_name} does not exist"
                continue
            entries = describe_topic_configs(b.config, topic.configs, keys,
                                             include_synonyms=req.include_synonyms,
                                             include_documentation=req.include_documentation)
        elif res.resource_type == RESOURCE_BROKER:
            if res.resource_name == "":
                # The cluster-wide dynamic defaults: there are none without a controller log.
                r.error_code, r.configs = ErrorCode.NONE, []
                continue
            if res.resource_name != str(b.node_id):
                r.error_code = ErrorCode.INVALID_REQUEST
                r.error_message = f"this is broker {b.node_id}, not {res.resource_name}"
                continue
            entries = describe_broker_configs(b.config, keys, include_synonyms=req.include_synonyms,
                                              include_documentation=req.include_documentation)
        else:
            r.error_code = ErrorCode.INVALID_REQUEST
            r.error_message = f"resource type {res.resource_type} cannot be described here"
            continue
        r.error_code = ErrorCode.NONE
        r.configs = [_entry(e, version) for e in entries]
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


def _entry(e: ConfigEntry, version: int) -> DescribeConfigsResponse.DescribeConfigsResourceResult:
    return DescribeConfigsResponse.DescribeConfigsResourceResult(
        name=e.name, value=e.value, read_only=e.read_only, config_source=int(e.source),
        is_sensitive=e.sensitive,
        synonyms=[DescribeConfigsResponse.DescribeConfigsSynonym(name=s.name, value=s.value, source=int(s.source))
                  for s in e.synonyms],
        config_type=int(e.config_type) if version >= 3 else 0,
        documentation=e.documentation if version >= 3 else None,
    )


@route(ApiKey.ALTER_CONFIGS, 0, 2)
async def alter_configs(ctx: RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse:
    if ctx.broker.cluster is not None:
        return await _alter_configs_in_cluster(ctx, req)
    responses = []
    for res in req.resources:
        # AlterConfigs replaces the whole set of overrides.
        wanted: dict[str, str | None] = {c.name: c.value for c in res.configs}
        error, message = _apply(ctx, res.resource_type, res.resource_name, _replace_with(wanted),
                                req.validate_only)
        responses.append(AlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=error, error_message=message, resource_type=res.resource_type,
            resource_name=res.resource_name))
    return AlterConfigsResponse(throttle_time_ms=0, responses=responses)


@route(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, 1)
async def incremental_alter_configs(ctx: RequestContext,
                                    req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse:
    if ctx.broker.cluster is not None:
        return await _incremental_in_cluster(ctx, req, ctx.api_version)
    responses = []
    for res in req.resources:
        ops = [(c.name, c.config_operation, c.value) for c in res.configs]
        error, message = _apply(ctx, res.resource_type, res.resource_name, _incrementally(ops),
                                req.validate_only)
        responses.append(IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=error, error_message=message, resource_type=res.resource_type,
            resource_name=res.resource_name))
    return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=responses)


INCREMENTAL_VERSION_FOR_LEGACY = 1


class _Invalid(Exception):
    pass


# --- in a cluster the controller changes configs; the metadata log carries them to every broker ---


async def _incremental_in_cluster(ctx: RequestContext, req: IncrementalAlterConfigsRequest,
                                  version: int) -> IncrementalAlterConfigsResponse:
    b = ctx.broker
    assert b.cluster is not None

    def not_controller() -> IncrementalAlterConfigsResponse:
        return IncrementalAlterConfigsResponse(responses=[IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
            error_code=ErrorCode.NOT_CONTROLLER, resource_type=r.resource_type, resource_name=r.resource_name)
            for r in req.resources])

    resp = await b.cluster.admin_call(req, lambda c: c.handle_incremental_alter_configs(req), not_controller,
                                      api_version=version)
    assert isinstance(resp, IncrementalAlterConfigsResponse)
    return resp


async def _alter_configs_in_cluster(ctx: RequestContext, req: AlterConfigsRequest) -> AlterConfigsResponse:
    """AlterConfigs replaces a topic's whole set of overrides: sent to the controller as the
    incremental change that has that effect (SET what is given, DELETE every other override)."""
    b = ctx.broker
    resources = []
    for res in req.resources:
        topic = b.topics.get(res.resource_name) if res.resource_type == RESOURCE_TOPIC else None
        given = {c.name for c in res.configs}
        ops = [IncrementalAlterConfigsRequest.AlterableConfig(name=c.name, config_operation=OP_SET, value=c.value)
               for c in res.configs]
        if topic is not None:
            ops += [IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=OP_DELETE, value=None)
                    for k in sorted(topic.configs) if k not in given]
        resources.append(IncrementalAlterConfigsRequest.AlterConfigsResource(
            resource_type=res.resource_type, resource_name=res.resource_name, configs=ops))
    incremental = IncrementalAlterConfigsRequest(resources=resources, validate_only=req.validate_only)
    resp = await _incremental_in_cluster(ctx, incremental, INCREMENTAL_VERSION_FOR_LEGACY)
    return AlterConfigsResponse(throttle_time_ms=0, responses=[AlterConfigsResponse.AlterConfigsResourceResponse(
        error_code=r.error_code, error_message=r.error_message, resource_type=r.resource_type,
        resource_name=r.resource_name) for r in resp.responses])


Change = Callable[[dict[str, str]], Mapping[str, str | None]]


def _replace_with(wanted: dict[str, str | None]) -> Change:
    return lambda _old: wanted


def _incrementally(ops: list[tuple[str, int, str | None]]) -> Change:
    return lambda old: _incremental(old, ops)


def _incremental(old: dict[str, str], ops: list[tuple[str, int, str | None]]) -> dict[str, str | None]:
    new: dict[str, str | None] = dict(old)
    names = [name for name, _, _ in ops]
    if len(set(names)) != len(names):
        raise _Invalid("a config name appears more than once")
    for name, op, value in ops:
        if op == OP_SET:
            new[name] = value
        elif op == OP_DELETE:
            new.pop(name, None)
        elif op in (OP_APPEND, OP_SUBTRACT):
            if name not in LIST_CONFIGS:
                raise _Invalid(f"{name} is not a list; APPEND and SUBTRACT need one")
            items = [v for v in (new.get(name) or "").split(",") if v]
            given = [v for v in (value or "").split(",") if v]
            if op == OP_APPEND:
                items += [v for v in given if v not in items]
            else:
                items = [v for v in items if v not in given]
            new[name] = ",".join(items)
        else:
            raise _Invalid(f"config operation {op} is unknown")
    return new


def _apply(ctx: RequestContext, resource_type: int, name: str,
           change: Change,
           validate_only: bool) -> tuple[int, str | None]:
    b = ctx.broker
    if resource_type in (RESOURCE_BROKER, RESOURCE_BROKER_LOGGER):
        return ErrorCode.INVALID_REQUEST, "broker configs are static here: set them in server.properties"
    if resource_type != RESOURCE_TOPIC:
        return ErrorCode.INVALID_REQUEST, f"resource type {resource_type} cannot be altered"
    topic = b.topics.get(name)
    if topic is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name} does not exist"
    try:
        new = change(dict(topic.configs))
    except _Invalid as e:
        return ErrorCode.INVALID_REQUEST, str(e)
    configs = {k: v for k, v in new.items() if v is not None}
    if len(configs) != len(new):
        key = next(k for k, v in new.items() if v is None)
        return ErrorCode.INVALID_CONFIG, f"Null value not supported for topic configs: {key}"
    problem = validate_topic_configs(b.config, configs)
    if problem is not None:
        return ErrorCode.INVALID_CONFIG, problem[1]
    if not validate_only:
        b.set_topic_configs(name, {k: normalise_topic_config(k, v) for k, v in configs.items()})
    return ErrorCode.NONE, None


@route(ApiKey.DESCRIBE_LOG_DIRS, 1, 4)
async def describe_log_dirs(ctx: RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse:
    b = ctx.broker
    wanted: dict[str, set[int] | None] | None = None
    if req.topics is not None:
        wanted = {t.topic: set(t.partitions) for t in req.topics}
    topics: dict[str, list[DescribeLogDirsResponse.DescribeLogDirsPartition]] = {}
    for (topic, p), state in sorted(b.partitions.items()):
        if wanted is not None and (topic not in wanted or p not in (wanted[topic] or ())):
            continue
        topics.setdefault(topic, []).append(DescribeLogDirsResponse.DescribeLogDirsPartition(
            partition_index=p, partition_size=state.log.size_bytes, offset_lag=0, is_future_key=False))
    try:
        st = os.statvfs(b.log_dir)
        total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    except OSError:
        total = usable = -1
    result = DescribeLogDirsResponse.DescribeLogDirsResult(
        error_code=ErrorCode.NONE, log_dir=os.path.abspath(b.log_dir),
        topics=[DescribeLogDirsResponse.DescribeLogDirsTopic(name=n, partitions=ps) for n, ps in topics.items()],
        total_bytes=total, usable_bytes=usable)
    return DescribeLogDirsResponse(throttle_time_ms=0, error_code=ErrorCode.NONE, results=[result])


@route(ApiKey.DESCRIBE_PRODUCERS, 0, 0)
async def describe_producers(ctx: RequestContext, req: DescribeProducersRequest) -> DescribeProducersResponse:
    b = ctx.broker
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partition_indexes:
            r = DescribeProducersResponse.PartitionResponse(partition_index=p)
            parts.append(r)
            state = b.partition(t.name, p)
            if state is None:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            r.active_producers = [
                DescribeProducersResponse.ProducerState(
                    producer_id=e.producer_id, producer_epoch=e.producer_epoch, last_sequence=e.last_seq,
                    last_timestamp=e.last_timestamp_ms, coordinator_epoch=e.coordinator_epoch,
                    current_txn_start_offset=e.current_txn_first_offset
                    if e.current_txn_first_offset is not None else -1)
                for e in state.producers.producers.values()
            ]
        topics.append(DescribeProducersResponse.TopicResponse(name=t.name, partitions=parts))
    return DescribeProducersResponse(throttle_time_ms=0, topics=topics)
