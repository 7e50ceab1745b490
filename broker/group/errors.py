"""Error answers of the group APIs when the coordinator cannot serve a request, sans-IO.

What it owns. Two rules the trio adapter (``broker.groups``) applies in a cluster, where only
the leader of a group's ``__consumer_offsets`` partition coordinates the group:

- ``error_response``: the answer to a group request that is refused as a whole (this broker
  is not the group's coordinator, is still loading its partition, or the write the request
  caused failed), shaped as Kafka shapes it for that API and version: a top-level code where
  the response has one, else the code on every group, topic or partition the request named.
- ``append_error``: how a failed write to ``__consumer_offsets`` is reported to the client
  (Kafka's ``GroupMetadataManager`` and ``GroupCoordinatorService``): the partition has too
  few in-sync replicas or is gone -> COORDINATOR_NOT_AVAILABLE; this broker no longer leads it
  -> NOT_COORDINATOR; the batch was too large -> INVALID_COMMIT_OFFSET_SIZE for an offset
  commit, UNKNOWN_SERVER_ERROR otherwise; a write not replicated in time stays
  REQUEST_TIMED_OUT, except for group membership (JoinGroup, SyncGroup), where Kafka 4's
  ``appendGroupMetadataErrorToResponseError`` makes it COORDINATOR_NOT_AVAILABLE.

Never raises for a request it does not know: that is a programmer error (``assert``).
"""

from __future__ import annotations

import enum

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages.consumer_group_describe import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
)
from protocol.messages.consumer_group_heartbeat import (
    ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
)
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from protocol.messages.heartbeat import HeartbeatRequest, HeartbeatResponse
from protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from protocol.messages.offset_delete import OffsetDeleteRequest, OffsetDeleteResponse
from protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse

INVALID_OFFSET = -1
NO_GENERATION = -1
OFFSET_FETCH_TOP_LEVEL_ERROR_VERSION_MIN = 2  # v0-v1 carry errors per partition only
OFFSET_FETCH_BATCHED_VERSION_MIN = 8
LEAVE_GROUP_BATCHED_VERSION_MIN = 3
JOIN_GROUP_NULLABLE_PROTOCOL_VERSION_MIN = 7


class WriteKind(enum.Enum):
    """What a write to ``__consumer_offsets`` carried, for ``append_error``."""

    OFFSETS = "offsets"  # OffsetCommit (and the other offset APIs)
    GROUP_METADATA = "group_metadata"  # JoinGroup and SyncGroup: classic group membership
    OTHER = "other"


_NOT_AVAILABLE = frozenset({ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                            ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND})
_NOT_COORDINATOR = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR})
_TOO_LARGE = frozenset({ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE})


def append_error(error: ErrorCode, kind: WriteKind) -> ErrorCode:
    """The error a client sees when the write its request caused failed with ``error``."""
    if error in _NOT_AVAILABLE:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    if error in _NOT_COORDINATOR:
        return ErrorCode.NOT_COORDINATOR
    if error in _TOO_LARGE:
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE if kind is WriteKind.OFFSETS else ErrorCode.UNKNOWN_SERVER_ERROR
    if error is ErrorCode.REQUEST_TIMED_OUT and kind is WriteKind.GROUP_METADATA:
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    return error


def write_kind(request: Message) -> WriteKind:
    if isinstance(request, (JoinGroupRequest, SyncGroupRequest)):
        return WriteKind.GROUP_METADATA
    if isinstance(request, (OffsetCommitRequest, OffsetDeleteRequest)):
        return WriteKind.OFFSETS
    return WriteKind.OTHER


def error_response(request: Message, error: ErrorCode, *, api_version: int) -> Message:
    """The answer to ``request`` refused as a whole with ``error`` (see the module docstring)."""
    if isinstance(request, JoinGroupRequest):
        return join_error(request.member_id, error, api_version=api_version)
    if isinstance(request, SyncGroupRequest):
        return SyncGroupResponse(error_code=error)
    if isinstance(request, HeartbeatRequest):
        return HeartbeatResponse(error_code=error)
    if isinstance(request, LeaveGroupRequest):
        return LeaveGroupResponse(error_code=error)
    if isinstance(request, OffsetCommitRequest):
        return OffsetCommitResponse(topics=[
            OffsetCommitResponse.OffsetCommitResponseTopic(t.name, [
                OffsetCommitResponse.OffsetCommitResponsePartition(p.partition_index, error) for p in t.partitions])
            for t in request.topics])
    if isinstance(request, OffsetFetchRequest):
        return _offset_fetch_error(request, error, api_version)
    if isinstance(request, OffsetDeleteRequest):
        return OffsetDeleteResponse(error_code=error)
    if isinstance(request, DescribeGroupsRequest):
        return DescribeGroupsResponse(groups=[
            DescribeGroupsResponse.DescribedGroup(error_code=error, group_id=g) for g in request.groups])
    if isinstance(request, DeleteGroupsRequest):
        return DeleteGroupsResponse(results=[
            DeleteGroupsResponse.DeletableGroupResult(g, error) for g in dict.fromkeys(request.groups_names)])
    if isinstance(request, ListGroupsRequest):
        return ListGroupsResponse(error_code=error)
    if isinstance(request, ConsumerGroupHeartbeatRequest):
        return ConsumerGroupHeartbeatResponse(error_code=error)
    if isinstance(request, ConsumerGroupDescribeRequest):
        return ConsumerGroupDescribeResponse(groups=[
            ConsumerGroupDescribeResponse.DescribedGroup(error_code=error, group_id=g) for g in request.group_ids])
    raise AssertionError(f"no error answer for {type(request).__name__}")


def join_error(member_id: str, error: ErrorCode, *, api_version: int) -> JoinGroupResponse:
    """A JoinGroup refusal: the member id sent back, no generation (before v7 the protocol name
    cannot be null)."""
    return JoinGroupResponse(error_code=error, member_id=member_id, generation_id=NO_GENERATION,
                             protocol_name=None if api_version >= JOIN_GROUP_NULLABLE_PROTOCOL_VERSION_MIN else "")


def _offset_fetch_error(request: OffsetFetchRequest, error: ErrorCode, api_version: int) -> OffsetFetchResponse:
    """Kafka's ``OffsetFetchRequest.getErrorResponse``: v8+ an error per group; v2-v7 the
    top-level code; v0-v1 (no top-level code) every requested partition carries it."""
    if api_version >= OFFSET_FETCH_BATCHED_VERSION_MIN:
        return OffsetFetchResponse(groups=[
            OffsetFetchResponse.OffsetFetchResponseGroup(group_id=g.group_id, error_code=error) for g in request.groups])
    if api_version >= OFFSET_FETCH_TOP_LEVEL_ERROR_VERSION_MIN:
        return OffsetFetchResponse(error_code=error)
    return OffsetFetchResponse(topics=[
        OffsetFetchResponse.OffsetFetchResponseTopic(t.name, [
            OffsetFetchResponse.OffsetFetchResponsePartition(p, INVALID_OFFSET, -1, "", error)
            for p in t.partition_indexes])
        for t in request.topics or ()])


def fail_offset_commit(response: OffsetCommitResponse, error: ErrorCode) -> OffsetCommitResponse:
    """A commit whose write failed: every partition the coordinator accepted gets ``error``;
    those it refused (OFFSET_METADATA_TOO_LARGE, ...) keep their own code, as in Kafka."""
    for t in response.topics:
        for p in t.partitions:
            if p.error_code == ErrorCode.NONE:
                p.error_code = error
    return response
