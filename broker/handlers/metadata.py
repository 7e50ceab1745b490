"""ApiVersions, Metadata, DescribeTopicPartitions and DescribeCluster: what the broker serves and
what the cluster holds."""

from __future__ import annotations

import re

from broker.cluster import SUPPORTED_FEATURES
from broker.dispatch import RequestContext, route, supported_versions
from broker.handlers.common import live_brokers
from broker.topics import Topic
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.describe_cluster import DescribeClusterRequest, DescribeClusterResponse
from protocol.messages.describe_topic_partitions import (
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
)
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.primitives import ZERO_UUID
from replication.metadata import topic_name_error

# Kafka's "not requested" value for authorized-operations bitfields.
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
# ACL operation codes (AclOperation): with no authorizer every operation is allowed.
_TOPIC_OPERATIONS = (3, 4, 5, 6, 7, 8, 10, 11)  # READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
_CLUSTER_OPERATIONS = (4, 5, 7, 8, 9, 10, 11, 12)  # + CLUSTER_ACTION IDEMPOTENT_WRITE


def _bits(ops: tuple[int, ...]) -> int:
    v = 0
    for op in ops:
        v |= 1 << op
    return v


TOPIC_AUTHORIZED_OPERATIONS = _bits(_TOPIC_OPERATIONS)
CLUSTER_AUTHORIZED_OPERATIONS = _bits(_CLUSTER_OPERATIONS)


# KIP-511: what a client may call itself.
_SOFTWARE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")
CLIENT_SOFTWARE_VERSION_MIN = 3
TOPIC_ID_LOOKUP_VERSION_MIN = 12
AUTO_CREATE_VERSION = 7
AUTO_CREATE_WAIT_MS = 5000


@route(ApiKey.API_VERSIONS, 0, 4)
async def api_versions(ctx: RequestContext, req: ApiVersionsRequest) -> ApiVersionsResponse:
    if ctx.api_version >= CLIENT_SOFTWARE_VERSION_MIN and not (
            _SOFTWARE.match(req.client_software_name) and _SOFTWARE.match(req.client_software_version)):
        return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST, api_keys=[])
    resp = ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=supported_versions())
    if ctx.broker.cluster is not None:
        # v3+ (tagged fields): the features this broker supports and the levels the metadata log
        # has finalized, with the image's offset as their epoch, as a KRaft broker answers (what
        # ``kafka-features.sh describe`` and Admin.describeFeatures read). A level of 0 is unset.
        image = ctx.broker.cluster.image
        resp.supported_features = [ApiVersionsResponse.SupportedFeatureKey(name=name, min_version=lo, max_version=hi)
                                   for name, (lo, hi) in sorted(SUPPORTED_FEATURES.items())]
        resp.finalized_features_epoch = image.offset
        resp.finalized_features = [
            ApiVersionsResponse.FinalizedFeatureKey(name=name, max_version_level=level, min_version_level=level)
            for name, level in sorted(image.features.items()) if level > 0]
    return resp


def _topic_metadata(ctx: RequestContext, topic: Topic, include_ops: bool) -> MetadataResponse.MetadataResponseTopic:
    b = ctx.broker
    parts = []
    if b.cluster is not None:
        parts = _cluster_partitions(ctx, topic)
    for p in range(topic.partitions if b.cluster is None else 0):
        state = b.partition(topic.name, p)
        epoch = state.leader_epoch if state is not None else 0
        parts.append(MetadataResponse.MetadataResponsePartition(
            error_code=ErrorCode.NONE, partition_index=p, leader_id=b.node_id, leader_epoch=epoch,
            replica_nodes=[b.node_id], isr_nodes=[b.node_id], offline_replicas=[]))
    return MetadataResponse.MetadataResponseTopic(
        error_code=ErrorCode.NONE, name=topic.name, topic_id=topic.topic_id, is_internal=topic.is_internal,
        partitions=parts,
        topic_authorized_operations=TOPIC_AUTHORIZED_OPERATIONS if include_ops else AUTHORIZED_OPERATIONS_OMITTED)


def _cluster_partitions(ctx: RequestContext, topic: Topic) -> list[MetadataResponse.MetadataResponsePartition]:
    """A topic's partitions as the metadata image has them: leader (LEADER_NOT_AVAILABLE when
    none), replicas, ISR, and the replicas on brokers that are fenced or gone (offline)."""
    assert ctx.broker.cluster is not None
    image = ctx.broker.cluster.image
    t = image.topic(topic.name)
    parts = []
    for pid, reg in sorted(t.partitions.items()) if t is not None else ():
        parts.append(MetadataResponse.MetadataResponsePartition(
            error_code=ErrorCode.NONE if reg.leader >= 0 else ErrorCode.LEADER_NOT_AVAILABLE,
            partition_index=pid, leader_id=reg.leader, leader_epoch=reg.leader_epoch,
            replica_nodes=list(reg.replicas), isr_nodes=list(reg.isr),
            offline_replicas=list(image.offline_replicas(reg))))
    return parts


def _brokers(ctx: RequestContext) -> list[MetadataResponse.MetadataResponseBroker]:
    return [MetadataResponse.MetadataResponseBroker(node_id=e.node_id, host=e.host, port=e.port, rack=e.rack)
            for e in live_brokers(ctx.broker)]


def _controller_id(ctx: RequestContext, brokers: list[MetadataResponse.MetadataResponseBroker]) -> int:
    """KRaft clients cannot reach the controller: Kafka names a live broker. Trafka names the
    quorum leader when it is a listed broker (combined mode), else this broker, else any listed."""
    b = ctx.broker
    listed = [x.node_id for x in brokers]
    if b.cluster is not None and b.cluster.leader_id in listed:
        return b.cluster.leader_id
    if b.node_id in listed or not listed:
        return b.node_id
    return listed[0]


@route(ApiKey.METADATA, 0, 12)
async def metadata(ctx: RequestContext, req: MetadataRequest) -> MetadataResponse:
    b = ctx.broker
    version = ctx.api_version
    include_ops = req.include_topic_authorized_operations
    topics: list[MetadataResponse.MetadataResponseTopic] = []
    if req.topics is None or (version == 0 and not req.topics):
        topics = [_topic_metadata(ctx, t, include_ops) for t in sorted(b.topics, key=lambda t: t.name)]
    elif version < TOPIC_ID_LOOKUP_VERSION_MIN and any(
            rt.name is None or rt.topic_id != ZERO_UUID for rt in req.topics):
        # Kafka refuses the whole request: topic ids cannot be looked up before v12.
        topics = [MetadataResponse.MetadataResponseTopic(error_code=ErrorCode.INVALID_REQUEST, name=rt.name or "")
                  for rt in req.topics]
    else:
        auto_create = b.config.auto_create_topics_enable and (version < 4 or req.allow_auto_topic_creation)
        for rt in req.topics:
            if rt.name is None:
                t = b.topics.by_id(rt.topic_id)
                if t is None:
                    topics.append(MetadataResponse.MetadataResponseTopic(
                        error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=rt.topic_id))
                else:
                    topics.append(_topic_metadata(ctx, t, include_ops))
                continue
            t = b.topics.get(rt.name)
            if t is None:
                error = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if topic_name_error(rt.name) is not None:
                    error = ErrorCode.INVALID_TOPIC_EXCEPTION
                elif auto_create and b.topics.collides(rt.name) is None:
                    if b.cluster is not None:
                        await _auto_create_in_cluster(ctx, rt.name)
                        error = ErrorCode.LEADER_NOT_AVAILABLE  # the client asks again, as with Kafka
                    else:
                        t = b.create_topic(rt.name, b.config.num_partitions, {})
                if t is None:
                    topics.append(MetadataResponse.MetadataResponseTopic(
                        error_code=error, name=rt.name, is_internal=False,
                        topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED))
                    continue
            topics.append(_topic_metadata(ctx, t, include_ops))
    brokers = _brokers(ctx)
    return MetadataResponse(
        throttle_time_ms=0,
        brokers=brokers,
        cluster_id=b.cluster_id,
        controller_id=_controller_id(ctx, brokers),
        topics=topics,
        cluster_authorized_operations=(CLUSTER_AUTHORIZED_OPERATIONS if req.include_cluster_authorized_operations
                                       else AUTHORIZED_OPERATIONS_OMITTED),
    )


@route(ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0, 0)
async def describe_topic_partitions(ctx: RequestContext,
                                    req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse:
    """KIP-966's describe (Kafka's DescribeTopicPartitionsRequestHandler): Metadata's partition view
    plus each partition's eligible leader replicas and last known ELR, topics in name order from the
    cursor, at most ``min(ResponsePartitionLimit, max.request.partition.size.limit)`` partitions,
    with ``NextCursor`` where the next page starts. Named topics that do not exist are listed with
    an error; asking for every topic lists the existing ones only."""
    b = ctx.broker
    cursor = req.cursor
    start = cursor.topic_name if cursor is not None else ""
    fetch_all = not req.topics
    names = sorted({t.name for t in b.topics} if fetch_all else {t.name for t in req.topics})
    names = [n for n in names if n >= start]
    if (cursor is not None and not fetch_all and cursor.topic_name not in names) or (
            cursor is not None and cursor.partition_index < 0):
        # Kafka throws InvalidRequestException: every topic asked for carries the error.
        return DescribeTopicPartitionsResponse(topics=[
            DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic(
                error_code=ErrorCode.INVALID_REQUEST, name=t.name) for t in req.topics])
    remaining = max(1, min(b.config.max_request_partition_size_limit, req.response_partition_limit))
    out = DescribeTopicPartitionsResponse()
    for name in names:
        if remaining == 0:
            out.next_cursor = DescribeTopicPartitionsResponse.Cursor(topic_name=name, partition_index=0)
            break
        topic = b.topics.get(name)
        if topic is None:
            if not fetch_all:
                error = ErrorCode.INVALID_TOPIC_EXCEPTION if topic_name_error(name) else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                out.topics.append(DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic(
                    error_code=error, name=name, is_internal=False))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        partitions = _described_partitions(ctx, topic)
        page = [p for p in partitions if p.partition_index >= first][:remaining]
        out.topics.append(DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic(
            error_code=ErrorCode.NONE, name=name, topic_id=topic.topic_id, is_internal=topic.is_internal,
            partitions=page, topic_authorized_operations=TOPIC_AUTHORIZED_OPERATIONS))
        remaining -= len(page)
        after = [p for p in partitions if p.partition_index >= first][len(page):]
        if after:
            out.next_cursor = DescribeTopicPartitionsResponse.Cursor(topic_name=name,
                                                                     partition_index=after[0].partition_index)
            break
    return out


def _described_partitions(ctx: RequestContext, topic: Topic
                          ) -> list[DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponsePartition]:
    """A topic's partitions for DescribeTopicPartitions: in a cluster as the metadata image has them
    (with the ELR fields); on a single node, this node leads each, alone."""
    b = ctx.broker
    described = DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponsePartition
    if b.cluster is None:
        out = []
        for p in range(topic.partitions):
            state = b.partition(topic.name, p)
            out.append(described(error_code=ErrorCode.NONE, partition_index=p, leader_id=b.node_id,
                                 leader_epoch=state.leader_epoch if state is not None else 0,
                                 replica_nodes=[b.node_id], isr_nodes=[b.node_id], eligible_leader_replicas=[],
                                 last_known_elr=[], offline_replicas=[]))
        return out
    image = b.cluster.image
    t = image.topic(topic.name)
    return [described(error_code=ErrorCode.NONE, partition_index=pid, leader_id=reg.leader,
                      leader_epoch=reg.leader_epoch, replica_nodes=list(reg.replicas), isr_nodes=list(reg.isr),
                      eligible_leader_replicas=list(reg.elr), last_known_elr=list(reg.last_known_elr),
                      offline_replicas=list(image.offline_replicas(reg)))
            for pid, reg in (sorted(t.partitions.items()) if t is not None else ())]


async def _auto_create_in_cluster(ctx: RequestContext, name: str) -> None:
    """``auto.create.topics.enable`` in a cluster: ask the controller for the topic with the
    defaults (``num.partitions``, ``default.replication.factor``)."""
    b = ctx.broker
    assert b.cluster is not None
    req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=-1, replication_factor=-1)], timeout_ms=AUTO_CREATE_WAIT_MS)
    await b.cluster.admin_call(req, lambda c: c.handle_create_topics(req, version=AUTO_CREATE_VERSION),
                               lambda: CreateTopicsResponse(), api_version=AUTO_CREATE_VERSION)


@route(ApiKey.DESCRIBE_CLUSTER, 0, 1)
async def describe_cluster(ctx: RequestContext, req: DescribeClusterRequest) -> DescribeClusterResponse:
    """The live brokers and the controller id, as Metadata names them (in a cluster: every
    registered, unfenced broker from the metadata image; on a single node: this one)."""
    b = ctx.broker
    if req.endpoint_type != 1:  # 1 = brokers, 2 = controllers (KIP-919)
        error = ErrorCode.MISMATCHED_ENDPOINT_TYPE if req.endpoint_type == 2 else ErrorCode.UNSUPPORTED_ENDPOINT_TYPE
        return DescribeClusterResponse(error_code=error, endpoint_type=req.endpoint_type,
                                       error_message="this listener serves brokers (endpoint type 1)")
    brokers = _brokers(ctx)
    return DescribeClusterResponse(
        error_code=ErrorCode.NONE,
        endpoint_type=req.endpoint_type,
        cluster_id=b.cluster_id,
        controller_id=_controller_id(ctx, brokers),
        brokers=[DescribeClusterResponse.DescribeClusterBroker(broker_id=x.node_id, host=x.host, port=x.port,
                                                               rack=x.rack) for x in brokers],
        cluster_authorized_operations=(CLUSTER_AUTHORIZED_OPERATIONS if req.include_cluster_authorized_operations
                                       else AUTHORIZED_OPERATIONS_OMITTED),
    )
