"""FindCoordinator and the consumer-group APIs, classic and KIP-848, answered by ``broker.groups``.

The group APIs hand their decoded requests to the sans-IO coordinator through ``GroupService``;
JoinGroup and SyncGroup may wait there for the rebalance. ConsumerGroupHeartbeat (v0-v1: v1 adds
the regex subscription, stable from Kafka 4.0) and ConsumerGroupDescribe (v0) are served whatever
``group.coordinator.rebalance.protocols`` says, as with Kafka 4.0's default (``classic,consumer``).

Who coordinates. A single node coordinates every group (and every transactional id, once
transactions exist), so FindCoordinator always names this broker. In a cluster, FindCoordinator
names the leader of the group's ``__consumer_offsets`` partition (``GroupService.find_coordinator``),
and every group request is first checked against what this broker coordinates now, as Kafka's
``validateGroupStatus`` does: a group of a partition it does not lead is refused NOT_COORDINATOR,
one of a partition it is still loading COORDINATOR_LOAD_IN_PROGRESS (a Heartbeat then gets NONE:
Kafka "responds blindly" while loading, rather than making the member rejoin). Requests naming
several groups (DescribeGroups, DeleteGroups, OffsetFetch v8+, ConsumerGroupDescribe) are
answered per group; ListGroups waits (COORDINATOR_LOAD_IN_PROGRESS) until every partition it
leads is loaded. An empty group id is the coordinator's to refuse (INVALID_GROUP_ID), not ours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from broker.dispatch import RequestContext, route
from broker.group.errors import error_response
from broker.groups import GroupService
from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages import ApiKey
from protocol.messages.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatRequest
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from protocol.messages.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from protocol.messages.join_group import JoinGroupRequest
from protocol.messages.leave_group import LeaveGroupRequest
from protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from protocol.messages.offset_commit import OffsetCommitRequest
from protocol.messages.offset_delete import OffsetDeleteRequest
from protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from protocol.messages.sync_group import SyncGroupRequest

KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION = 0, 1
BATCHED_KEYS_VERSION_MIN = 4
OFFSET_FETCH_BATCHED_VERSION_MIN = 8
E = TypeVar("E")


def _groups(ctx: RequestContext) -> GroupService:
    service = ctx.broker.groups
    assert isinstance(service, GroupService)
    return service


@route(ApiKey.FIND_COORDINATOR, 0, 5)
async def find_coordinator(ctx: RequestContext, req: FindCoordinatorRequest) -> FindCoordinatorResponse:
    if ctx.api_version < BATCHED_KEYS_VERSION_MIN:
        error, message, node_id, host, port = _coordinator_of(ctx, req.key_type, req.key)
        return FindCoordinatorResponse(error_code=error, error_message=message, node_id=node_id, host=host, port=port)
    coordinators = []
    for key in req.coordinator_keys:
        error, message, node_id, host, port = _coordinator_of(ctx, req.key_type, key)
        coordinators.append(FindCoordinatorResponse.Coordinator(key=key, node_id=node_id, host=host, port=port,
                                                                error_code=error, error_message=message))
    return FindCoordinatorResponse(coordinators=coordinators)


def _coordinator_of(ctx: RequestContext, key_type: int, key: str) -> tuple[ErrorCode, str | None, int, str, int]:
    """(error, message, node id, host, port) of the coordinator of one key."""
    b = ctx.broker
    if key_type not in (KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION):
        return ErrorCode.INVALID_REQUEST, f"key type {key_type} is unknown", -1, "", -1
    if key_type == KEY_TYPE_GROUP and b.cluster is not None:
        error, node_id, host, port = _groups(ctx).find_coordinator(key)
        return error, None, node_id, host, port
    host, port = b.advertised_address
    return ErrorCode.NONE, None, b.node_id, host, port


def _client_host(ctx: RequestContext) -> str:
    """The peer's address as Kafka shows it (``/127.0.0.1``)."""
    return "/" + ctx.peer.rsplit(":", 1)[0]


def _refused(ctx: RequestContext, request: Message, group_id: str, *, empty_is_invalid: bool = True) -> Message | None:
    """The whole answer when this broker does not coordinate ``group_id`` now; None: serve it.
    JoinGroup, SyncGroup, Heartbeat and LeaveGroup (``empty_is_invalid``) leave an empty id to the
    coordinator's INVALID_GROUP_ID; OffsetCommit and OffsetFetch accept one (Kafka's isValidGroupId)."""
    if empty_is_invalid and not group_id:
        return None
    error = _groups(ctx).coordinator_error(group_id)
    return None if error == ErrorCode.NONE else error_response(request, error, api_version=ctx.api_version)


@route(ApiKey.JOIN_GROUP, 0, 9)
async def join_group(ctx: RequestContext, req: JoinGroupRequest) -> Message | None:
    assert ctx.header is not None
    refused = _refused(ctx, req, req.group_id)
    if refused is not None:
        return refused
    c = _groups(ctx).coordinator
    version, client_id, client_host = ctx.api_version, ctx.header.client_id or "", _client_host(ctx)
    return await _groups(ctx).call_parked(
        req, lambda token, now_ms: c.join_group(req, api_version=version, client_id=client_id,
                                                client_host=client_host, token=token, now_ms=now_ms),
        api_version=version, group_id=req.group_id)


@route(ApiKey.SYNC_GROUP, 0, 5)
async def sync_group(ctx: RequestContext, req: SyncGroupRequest) -> Message | None:
    refused = _refused(ctx, req, req.group_id)
    if refused is not None:
        return refused
    c = _groups(ctx).coordinator
    version = ctx.api_version
    return await _groups(ctx).call_parked(
        req, lambda token, now_ms: c.sync_group(req, api_version=version, token=token, now_ms=now_ms),
        api_version=version, group_id=req.group_id)


@route(ApiKey.HEARTBEAT, 0, 4)
async def heartbeat(ctx: RequestContext, req: HeartbeatRequest) -> Message:
    if req.group_id and _groups(ctx).coordinator_error(req.group_id) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
        return HeartbeatResponse(error_code=ErrorCode.NONE)  # Kafka answers blindly while loading
    refused = _refused(ctx, req, req.group_id)
    if refused is not None:
        return refused
    c = _groups(ctx).coordinator
    return await _groups(ctx).call(req, lambda now_ms: c.heartbeat(req, now_ms=now_ms),
                                   api_version=ctx.api_version, groups=[req.group_id])


@route(ApiKey.LEAVE_GROUP, 0, 5)
async def leave_group(ctx: RequestContext, req: LeaveGroupRequest) -> Message:
    refused = _refused(ctx, req, req.group_id)
    if refused is not None:
        return refused
    c, version = _groups(ctx).coordinator, ctx.api_version
    return await _groups(ctx).call(req, lambda now_ms: c.leave_group(req, api_version=version, now_ms=now_ms),
                                   api_version=version, groups=[req.group_id])


@route(ApiKey.OFFSET_COMMIT, 0, 9)
async def offset_commit(ctx: RequestContext, req: OffsetCommitRequest) -> Message:
    refused = _refused(ctx, req, req.group_id, empty_is_invalid=False)
    if refused is not None:
        return refused
    c, version = _groups(ctx).coordinator, ctx.api_version
    return await _groups(ctx).call(req, lambda now_ms: c.offset_commit(req, api_version=version, now_ms=now_ms),
                                   api_version=version, groups=[req.group_id])


@route(ApiKey.OFFSET_FETCH, 0, 9)
async def offset_fetch(ctx: RequestContext, req: OffsetFetchRequest) -> Message:
    service, version = _groups(ctx), ctx.api_version
    c = service.coordinator
    if version < OFFSET_FETCH_BATCHED_VERSION_MIN:
        refused = _refused(ctx, req, req.group_id, empty_is_invalid=False)
        if refused is not None:
            return refused
        return await service.call(req, lambda now_ms: c.offset_fetch(req, api_version=version, now_ms=now_ms),
                                  api_version=version, groups=[req.group_id])

    async def serve(ids: list[str]) -> list[OffsetFetchResponse.OffsetFetchResponseGroup]:
        wanted = set(ids)
        sub = OffsetFetchRequest(groups=[g for g in req.groups if g.group_id in wanted], require_stable=req.require_stable)
        resp = await service.call(sub, lambda now_ms: c.offset_fetch(sub, api_version=version, now_ms=now_ms),
                                  api_version=version, groups=ids)
        assert isinstance(resp, OffsetFetchResponse)
        return resp.groups

    groups = await _per_group(ctx, [g.group_id for g in req.groups], serve,
                              lambda g, e: OffsetFetchResponse.OffsetFetchResponseGroup(group_id=g, error_code=e))
    return OffsetFetchResponse(groups=groups)


@route(ApiKey.OFFSET_DELETE, 0, 0)
async def offset_delete(ctx: RequestContext, req: OffsetDeleteRequest) -> Message:
    refused = _refused(ctx, req, req.group_id)
    if refused is not None:
        return refused
    c = _groups(ctx).coordinator
    return await _groups(ctx).call(req, lambda now_ms: c.offset_delete(req, now_ms=now_ms),
                                   api_version=ctx.api_version, groups=[req.group_id])


@route(ApiKey.DESCRIBE_GROUPS, 0, 5)
async def describe_groups(ctx: RequestContext, req: DescribeGroupsRequest) -> Message:
    service, version = _groups(ctx), ctx.api_version
    c = service.coordinator

    async def serve(ids: list[str]) -> list[DescribeGroupsResponse.DescribedGroup]:
        sub = DescribeGroupsRequest(groups=ids, include_authorized_operations=req.include_authorized_operations)
        resp = await service.call(sub, lambda now_ms: c.describe_groups(sub, api_version=version, now_ms=now_ms),
                                  api_version=version, groups=ids)
        assert isinstance(resp, DescribeGroupsResponse)
        return resp.groups

    groups = await _per_group(ctx, list(req.groups), serve,
                              lambda g, e: DescribeGroupsResponse.DescribedGroup(error_code=e, group_id=g))
    return DescribeGroupsResponse(groups=groups)


@route(ApiKey.LIST_GROUPS, 0, 5)
async def list_groups(ctx: RequestContext, req: ListGroupsRequest) -> Message:
    service = _groups(ctx)
    if service.is_loading:
        return ListGroupsResponse(error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
    c = service.coordinator
    return await service.call(req, lambda now_ms: c.list_groups(req, now_ms=now_ms),
                              api_version=ctx.api_version, groups=())


@route(ApiKey.DELETE_GROUPS, 0, 2)
async def delete_groups(ctx: RequestContext, req: DeleteGroupsRequest) -> Message:
    service, version = _groups(ctx), ctx.api_version
    c = service.coordinator

    async def serve(ids: list[str]) -> list[DeleteGroupsResponse.DeletableGroupResult]:
        sub = DeleteGroupsRequest(groups_names=ids)
        resp = await service.call(sub, lambda now_ms: c.delete_groups(sub, now_ms=now_ms), api_version=version,
                                  groups=ids)
        assert isinstance(resp, DeleteGroupsResponse)
        return resp.results

    results = await _per_group(ctx, list(dict.fromkeys(req.groups_names)), serve,
                               lambda g, e: DeleteGroupsResponse.DeletableGroupResult(g, e))
    return DeleteGroupsResponse(results=results)


@route(ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, 1)
async def consumer_group_heartbeat(ctx: RequestContext, req: ConsumerGroupHeartbeatRequest) -> Message:
    assert ctx.header is not None
    refused = _refused(ctx, req, req.group_id if req.group_id.strip() else "")
    if refused is not None:
        return refused
    service, version = _groups(ctx), ctx.api_version
    client_id, client_host = ctx.header.client_id or "", _client_host(ctx)
    c = service.coordinator
    return await service.call(
        req, lambda now_ms: c.consumer_group_heartbeat(req, api_version=version, client_id=client_id,
                                                       client_host=client_host, topics=service.topics_image(),
                                                       now_ms=now_ms),
        api_version=version, groups=[req.group_id])


@route(ApiKey.CONSUMER_GROUP_DESCRIBE, 0, 0)
async def consumer_group_describe(ctx: RequestContext, req: ConsumerGroupDescribeRequest) -> Message:
    service, version = _groups(ctx), ctx.api_version
    c = service.coordinator

    async def serve(ids: list[str]) -> list[ConsumerGroupDescribeResponse.DescribedGroup]:
        sub = ConsumerGroupDescribeRequest(group_ids=ids, include_authorized_operations=req.include_authorized_operations)
        resp = await service.call(sub, lambda now_ms: c.consumer_group_describe(sub, topics=service.topics_image(),
                                                                                now_ms=now_ms),
                                  api_version=version, groups=ids)
        assert isinstance(resp, ConsumerGroupDescribeResponse)
        return resp.groups

    groups = await _per_group(ctx, list(req.group_ids), serve,
                              lambda g, e: ConsumerGroupDescribeResponse.DescribedGroup(error_code=e, group_id=g))
    return ConsumerGroupDescribeResponse(groups=groups)


async def _per_group(ctx: RequestContext, group_ids: Sequence[str],
                     serve: Callable[[list[str]], Any], refused: Callable[[str, ErrorCode], E]) -> list[E]:
    """Answer a request naming several groups: those this broker coordinates through ``serve``
    (one call, entries in request order), the others with their refusal, in request order."""
    service = _groups(ctx)
    errors = [service.coordinator_error(g) for g in group_ids]
    served = [g for g, e in zip(group_ids, errors, strict=True) if e == ErrorCode.NONE]
    entries: list[E] = list(await serve(served)) if served else []
    assert len(entries) == len(served), (len(entries), len(served))
    out = []
    it = iter(entries)
    for g, e in zip(group_ids, errors, strict=True):
        out.append(next(it) if e == ErrorCode.NONE else refused(g, e))
    return out
