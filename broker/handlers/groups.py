"""FindCoordinator and the consumer-group APIs, classic and KIP-848, answered by ``broker.groups``.

A single node coordinates every group (and every transactional id, once transactions exist), so
FindCoordinator always names this broker. The group APIs hand their decoded requests to the
sans-IO coordinator through ``GroupService``; JoinGroup and SyncGroup may wait there for the
rebalance. ConsumerGroupHeartbeat (v0-v1: v1 adds the regex subscription, stable from Kafka 4.0)
and ConsumerGroupDescribe (v0) are served whatever ``group.coordinator.rebalance.protocols``
says, as with Kafka 4.0's default (``classic,consumer``).
"""

from __future__ import annotations

from broker.dispatch import RequestContext, route
from broker.groups import GroupService
from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages import ApiKey
from protocol.messages.consumer_group_describe import ConsumerGroupDescribeRequest
from protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatRequest
from protocol.messages.delete_groups import DeleteGroupsRequest
from protocol.messages.describe_groups import DescribeGroupsRequest
from protocol.messages.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from protocol.messages.heartbeat import HeartbeatRequest
from protocol.messages.join_group import JoinGroupRequest
from protocol.messages.leave_group import LeaveGroupRequest
from protocol.messages.list_groups import ListGroupsRequest
from protocol.messages.offset_commit import OffsetCommitRequest
from protocol.messages.offset_delete import OffsetDeleteRequest
from protocol.messages.offset_fetch import OffsetFetchRequest
from protocol.messages.sync_group import SyncGroupRequest

KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION = 0, 1
BATCHED_KEYS_VERSION_MIN = 4


def _groups(ctx: RequestContext) -> GroupService:
    service = ctx.broker.groups
    assert isinstance(service, GroupService)
    return service


@route(ApiKey.FIND_COORDINATOR, 0, 5)
async def find_coordinator(ctx: RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse:
    b = ctx.broker
    host, port = b.advertised_address
    if req.key_type not in (KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION):
        error, message = ErrorCode.INVALID_REQUEST, f"key type {req.key_type} is unknown"
    else:
        error, message = ErrorCode.NONE, None
    if ctx.api_version < BATCHED_KEYS_VERSION_MIN:
        if error != ErrorCode.NONE:
            return FindCoordinatorResponse(error_code=error, error_message=message, node_id=-1, host="", port=-1)
        return FindCoordinatorResponse(error_code=ErrorCode.NONE, node_id=b.node_id, host=host, port=port)
    return FindCoordinatorResponse(coordinators=[
        FindCoordinatorResponse.Coordinator(key=k, node_id=b.node_id if error == ErrorCode.NONE else -1,
                                            host=host if error == ErrorCode.NONE else "",
                                            port=port if error == ErrorCode.NONE else -1,
                                            error_code=error, error_message=message)
        for k in req.coordinator_keys])


def _client_host(ctx: RequestContext) -> str:
    """The peer's address as Kafka shows it (``/127.0.0.1``)."""
    return "/" + ctx.peer.rsplit(":", 1)[0]


@route(ApiKey.JOIN_GROUP, 0, 9)
async def join_group(ctx: RequestContext, req: JoinGroupRequest) -> Message | None:
    assert ctx.header is not None
    c = _groups(ctx).coordinator
    return await _groups(ctx).call_parked(c.join_group, req, api_version=ctx.api_version,
                                          client_id=ctx.header.client_id or "", client_host=_client_host(ctx))


@route(ApiKey.SYNC_GROUP, 0, 5)
async def sync_group(ctx: RequestContext, req: SyncGroupRequest) -> Message | None:
    c = _groups(ctx).coordinator
    return await _groups(ctx).call_parked(c.sync_group, req, api_version=ctx.api_version)


@route(ApiKey.HEARTBEAT, 0, 4)
async def heartbeat(ctx: RequestContext, req: HeartbeatRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.heartbeat, req)


@route(ApiKey.LEAVE_GROUP, 0, 5)
async def leave_group(ctx: RequestContext, req: LeaveGroupRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.leave_group, req, api_version=ctx.api_version)


@route(ApiKey.OFFSET_COMMIT, 0, 9)
async def offset_commit(ctx: RequestContext, req: OffsetCommitRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.offset_commit, req, api_version=ctx.api_version)


@route(ApiKey.OFFSET_FETCH, 0, 9)
async def offset_fetch(ctx: RequestContext, req: OffsetFetchRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.offset_fetch, req, api_version=ctx.api_version)


@route(ApiKey.OFFSET_DELETE, 0, 0)
async def offset_delete(ctx: RequestContext, req: OffsetDeleteRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.offset_delete, req)


@route(ApiKey.DESCRIBE_GROUPS, 0, 5)
async def describe_groups(ctx: RequestContext, req: DescribeGroupsRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.describe_groups, req, api_version=ctx.api_version)


@route(ApiKey.LIST_GROUPS, 0, 5)
async def list_groups(ctx: RequestContext, req: ListGroupsRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.list_groups, req)


@route(ApiKey.DELETE_GROUPS, 0, 2)
async def delete_groups(ctx: RequestContext, req: DeleteGroupsRequest) -> Message:
    return _groups(ctx).call(_groups(ctx).coordinator.delete_groups, req)


@route(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1)
async def consumer_group_heartbeat(ctx: RequestContext, req: ConsumerGroupHeartbeatRequest) -> Message:
    assert ctx.header is not None
    service = _groups(ctx)
    return service.call(service.coordinator.consumer_group_heartbeat, req, api_version=ctx.api_version,
                        client_id=ctx.header.client_id or "", client_host=_client_host(ctx),
                        topics=service.topics_image())


@route(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 0)
async def consumer_group_describe(ctx: RequestContext, req: ConsumerGroupDescribeRequest) -> Message:
    service = _groups(ctx)
    return service.call(service.coordinator.consumer_group_describe, req, topics=service.topics_image())
