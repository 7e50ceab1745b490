"""CreateTopics, DeleteTopics and CreatePartitions.

CreateTopics makes each topic with ``Broker.create_topic_in_steps``: one partition at a time, the
loop serving other requests in between, and the answer comes once the topic is durable and
served. A topic being created is invisible; creating it again meanwhile is
``TOPIC_ALREADY_EXISTS``, as it is in Kafka once the controller has the topic.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from broker.config import describe_topic_configs, normalise_topic_config, validate_topic_configs
from broker.dispatch import RequestContext, route
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.create_partitions import CreatePartitionsRequest, CreatePartitionsResponse
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from replication.metadata import topic_name_error

_logger = logging.getLogger(__name__)
PARTITIONS_MAX = 100_000  # per topic; a guard against a request that would exhaust the disk


@route(ApiKey.CREATE_TOPICS, 2, 7)
async def create_topics(ctx: RequestContext, req: CreateTopicsRequest) -> CreateTopicsResponse:
    b = ctx.broker
    version = ctx.api_version
    if b.cluster is not None:
        resp = await b.cluster.admin_call(req, lambda c: c.handle_create_topics(req, version=version),
                                          lambda: _not_controller(CreateTopicsResponse, req, version),
                                          api_version=version)
        assert isinstance(resp, CreateTopicsResponse)
        created = {r.name for r in resp.topics if r.error_code == ErrorCode.NONE}
        if created and not req.validate_only:
            # Answer once this broker serves the new topics, so the client's next request finds them.
            await b.cluster.wait_for_image(lambda image: all(image.topic(n) is not None for n in created),
                                           timeout_ms=max(req.timeout_ms, 0))
        return resp
    results = []
    names = [t.name for t in req.topics]
    duplicated = {n for n in names if names.count(n) > 1}
    for t in req.topics:
        r = CreateTopicsResponse.CreatableTopicResult(name=t.name)
        results.append(r)
        error, message = _create_error(ctx, t, duplicated)
        if error != ErrorCode.NONE:
            r.error_code, r.error_message = error, message
            continue
        partitions = t.num_partitions if t.num_partitions != -1 else b.config.num_partitions
        configs = {c.name: normalise_topic_config(c.name, c.value) for c in t.configs if c.value is not None}
        if not req.validate_only:
            try:
                topic = await b.create_topic_in_steps(t.name, partitions, configs)
            except OSError as e:
                _logger.error("creating topic %s failed: %s", t.name, e)
                r.error_code = ErrorCode.KAFKA_STORAGE_ERROR
                r.error_message = f"could not make the partitions of {t.name} on disk: {e}"
                continue
            r.topic_id = topic.topic_id
        r.num_partitions = partitions
        r.replication_factor = 1
        if version >= 5:
            r.configs = [
                CreateTopicsResponse.CreatableTopicConfigs(name=e.name, value=e.value, read_only=e.read_only,
                                                           config_source=e.source, is_sensitive=e.sensitive)
                for e in describe_topic_configs(b.config, configs, None)
            ]
    return CreateTopicsResponse(throttle_time_ms=0, topics=results)


def _create_error(ctx: RequestContext, t: CreateTopicsRequest.CreatableTopic,
                  duplicated: set[str]) -> tuple[ErrorCode, str | None]:
    b = ctx.broker
    if t.name in duplicated:
        # Kafka creates none of the topics a request names twice.
        return ErrorCode.INVALID_REQUEST, "Duplicate topic name."
    reason = topic_name_error(t.name)
    if reason is not None:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, reason
    if b.topics.get(t.name) is not None:
        return ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {t.name} already exists"
    if b.topics.is_reserved(t.name):
        return ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {t.name} is being created"
    other = b.topics.collides(t.name)
    if other is not None:
        return ErrorCode.INVALID_TOPIC_EXCEPTION, f"topic {t.name} collides with existing topic {other} ('.' and '_')"
    if t.assignments:
        if t.num_partitions != -1 or t.replication_factor != -1:
            return (ErrorCode.INVALID_REQUEST,
                    "give either replica assignments or partitions and replication factor, not both")
        for a in t.assignments:
            if a.broker_ids != [b.node_id]:
                return ErrorCode.INVALID_REPLICA_ASSIGNMENT, f"broker ids {a.broker_ids}: this cluster has broker {b.node_id} only"
        if sorted(a.partition_index for a in t.assignments) != list(range(len(t.assignments))):
            return ErrorCode.INVALID_REPLICA_ASSIGNMENT, "partition indexes must run from 0 without gaps"
        t.num_partitions = len(t.assignments)
    if t.num_partitions == 0 or t.num_partitions < -1 or t.num_partitions > PARTITIONS_MAX:
        return ErrorCode.INVALID_PARTITIONS, f"number of partitions must be at least 1 (and at most {PARTITIONS_MAX})"
    if t.replication_factor == 0 or t.replication_factor < -1:
        return ErrorCode.INVALID_REPLICATION_FACTOR, "replication factor must be larger than 0"
    if t.replication_factor > 1:
        return (ErrorCode.INVALID_REPLICATION_FACTOR,
                f"replication factor {t.replication_factor} is larger than the 1 available broker")
    names = [c.name for c in t.configs]
    if len(set(names)) != len(names):
        return ErrorCode.INVALID_REQUEST, "a config name appears more than once"
    for c in t.configs:
        if c.value is None:
            return ErrorCode.INVALID_CONFIG, f"Null value not supported for topic configs: {c.name}"
    problem = validate_topic_configs(b.config, {c.name: c.value for c in t.configs if c.value is not None})
    if problem is not None:
        return ErrorCode.INVALID_CONFIG, problem[1]
    return ErrorCode.NONE, None


@route(ApiKey.DELETE_TOPICS, 1, 6)
async def delete_topics(ctx: RequestContext, req: DeleteTopicsRequest) -> DeleteTopicsResponse:
    b = ctx.broker
    version = ctx.api_version
    if b.cluster is not None:
        resp = await b.cluster.admin_call(req, lambda c: c.handle_delete_topics(req, version=version),
                                          lambda: _not_controller(DeleteTopicsResponse, req, version),
                                          api_version=version)
        assert isinstance(resp, DeleteTopicsResponse)
        gone = {r.name for r in resp.responses if r.error_code == ErrorCode.NONE and r.name}
        if gone:
            await b.cluster.wait_for_image(lambda image: all(image.topic(n) is None for n in gone),
                                           timeout_ms=max(req.timeout_ms, 0))
        return resp
    wanted: list[tuple[str | None, object]] = []
    if version >= 6:
        wanted = [(t.name, t.topic_id) for t in req.topics]
    else:
        wanted = [(name, None) for name in req.topic_names]
    results = []
    for name, topic_id in wanted:
        r = DeleteTopicsResponse.DeletableTopicResult(name=name)
        if isinstance(topic_id, uuid.UUID):
            r.topic_id = topic_id
        results.append(r)
        topic = b.topics.get(name) if name is not None else b.topics.by_id(topic_id)  # type: ignore[arg-type]
        if topic is None:
            r.error_code = ErrorCode.UNKNOWN_TOPIC_ID if name is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            continue
        r.name, r.topic_id = topic.name, topic.topic_id
        if not b.config.delete_topic_enable:
            r.error_code = ErrorCode.TOPIC_DELETION_DISABLED
            continue
        b.delete_topic(topic.name)
    return DeleteTopicsResponse(throttle_time_ms=0, responses=results)


@route(ApiKey.CREATE_PARTITIONS, 0, 3)
async def create_partitions(ctx: RequestContext, req: CreatePartitionsRequest) -> CreatePartitionsResponse:
    b = ctx.broker
    if b.cluster is not None:
        version = ctx.api_version
        resp = await b.cluster.admin_call(req, lambda c: c.handle_create_partitions(req),
                                          lambda: _not_controller(CreatePartitionsResponse, req, version),
                                          api_version=version)
        assert isinstance(resp, CreatePartitionsResponse)
        return resp
    results = []
    seen: set[str] = set()
    for t in req.topics:
        r = CreatePartitionsResponse.CreatePartitionsTopicResult(name=t.name, error_code=ErrorCode.NONE)
        results.append(r)
        topic = b.topics.get(t.name)
        if t.name in seen:
            r.error_code, r.error_message = ErrorCode.INVALID_REQUEST, "duplicate topic in the request"
        elif topic is None:
            r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        elif t.count <= topic.partitions:
            r.error_code = ErrorCode.INVALID_PARTITIONS
            r.error_message = (f"topic {t.name} has {topic.partitions} partitions; "
                               f"the new count must be larger, not {t.count}")
        elif t.count > PARTITIONS_MAX:
            r.error_code, r.error_message = ErrorCode.INVALID_PARTITIONS, f"at most {PARTITIONS_MAX} partitions"
        elif t.assignments is not None and (len(t.assignments) != t.count - topic.partitions
                                            or any(a.broker_ids != [b.node_id] for a in t.assignments)):
            r.error_code = ErrorCode.INVALID_REPLICA_ASSIGNMENT
            r.error_message = f"each new partition must be assigned to broker {b.node_id} alone"
        elif not req.validate_only:
            b.add_partitions(t.name, t.count)
        seen.add(t.name)
    return CreatePartitionsResponse(throttle_time_ms=0, results=results)


def _not_controller(cls: type[Any], req: Any, version: int) -> Any:
    """The answer when no controller could be reached: NOT_CONTROLLER for every topic (a
    retriable error: the client asks again)."""
    if cls is CreateTopicsResponse:
        return CreateTopicsResponse(topics=[CreateTopicsResponse.CreatableTopicResult(
            name=t.name, error_code=ErrorCode.NOT_CONTROLLER) for t in req.topics])
    if cls is DeleteTopicsResponse:
        names = req.topic_names if version < 6 else [t.name for t in req.topics]
        return DeleteTopicsResponse(responses=[DeleteTopicsResponse.DeletableTopicResult(
            name=n, error_code=ErrorCode.NOT_CONTROLLER) for n in names])
    return CreatePartitionsResponse(results=[CreatePartitionsResponse.CreatePartitionsTopicResult(
        name=t.name, error_code=ErrorCode.NOT_CONTROLLER) for t in req.topics])
