"""The KRaft APIs between nodes: the metadata quorum's (Vote, BeginQuorumEpoch, EndQuorumEpoch,
DescribeQuorum, FetchSnapshot; its Fetch goes through ``broker.handlers.fetch``), the voter
changes an admin client asks for (AddRaftVoter, RemoveRaftVoter: carried out by the quorum's
leader, to which another node forwards them), and the
controller's (BrokerRegistration, BrokerHeartbeat, UnregisterBroker, AlterPartition,
AllocateProducerIds), and the admin requests only a cluster can carry out (ElectLeaders,
AlterPartitionReassignments, ListPartitionReassignments, UpdateFeatures).

Each hands the request to the node's ``broker.cluster.ClusterNode``. A node that is not part of a
cluster (the single-node default) answers these with an error (INVALID_REQUEST for the quorum
APIs: it has no quorum to vote in; NOT_CONTROLLER for the controller's), never with a crash. Controller requests on a node
whose controller is not active are answered NOT_CONTROLLER, and the sender looks for the leader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from broker.cluster import ClusterNode
from broker.dispatch import RequestContext, error_response, route
from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages import ApiKey
from protocol.messages.add_raft_voter import AddRaftVoterRequest
from protocol.messages.allocate_producer_ids import AllocateProducerIdsRequest
from protocol.messages.alter_partition import AlterPartitionRequest
from protocol.messages.alter_partition_reassignments import AlterPartitionReassignmentsRequest
from protocol.messages.begin_quorum_epoch import BeginQuorumEpochRequest
from protocol.messages.broker_heartbeat import BrokerHeartbeatRequest
from protocol.messages.broker_registration import BrokerRegistrationRequest
from protocol.messages.describe_quorum import DescribeQuorumRequest
from protocol.messages.elect_leaders import ElectLeadersRequest, ElectLeadersResponse
from protocol.messages.end_quorum_epoch import EndQuorumEpochRequest
from protocol.messages.fetch_snapshot import FetchSnapshotRequest
from protocol.messages.list_partition_reassignments import (
    ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
)
from protocol.messages.remove_raft_voter import RemoveRaftVoterRequest
from protocol.messages.unregister_broker import UnregisterBrokerRequest
from protocol.messages.update_features import UpdateFeaturesRequest
from protocol.messages.vote import VoteRequest
from replication.controller import QuorumController

NO_SOURCE = -1


def _cluster(ctx: RequestContext) -> ClusterNode | None:
    return ctx.broker.cluster


async def _quorum(ctx: RequestContext, request: Message, source: int) -> Message:
    node = _cluster(ctx)
    if node is None or node.raft is None:
        return error_response(request.API_KEY, ctx.api_version, ErrorCode.INVALID_REQUEST)
    return await node.raft_request(source, request)


@route(ApiKey.VOTE, 0, 1)
async def vote(ctx: RequestContext, req: VoteRequest) -> Message:
    source = next((p.candidate_id for t in req.topics for p in t.partitions), NO_SOURCE)
    return await _quorum(ctx, req, source)


@route(ApiKey.BEGIN_QUORUM_EPOCH, 0, 1)
async def begin_quorum_epoch(ctx: RequestContext, req: BeginQuorumEpochRequest) -> Message:
    source = next((p.leader_id for t in req.topics for p in t.partitions), NO_SOURCE)
    return await _quorum(ctx, req, source)


@route(ApiKey.END_QUORUM_EPOCH, 0, 1)
async def end_quorum_epoch(ctx: RequestContext, req: EndQuorumEpochRequest) -> Message:
    source = next((p.leader_id for t in req.topics for p in t.partitions), NO_SOURCE)
    return await _quorum(ctx, req, source)


@route(ApiKey.DESCRIBE_QUORUM, 0, 2)
async def describe_quorum(ctx: RequestContext, req: DescribeQuorumRequest) -> Message:
    return await _quorum(ctx, req, NO_SOURCE)


@route(ApiKey.FETCH_SNAPSHOT, 0, 1)
async def fetch_snapshot(ctx: RequestContext, req: FetchSnapshotRequest) -> Message:
    return await _quorum(ctx, req, req.replica_id)


async def _voter_change(ctx: RequestContext, request: AddRaftVoterRequest | RemoveRaftVoterRequest) -> Message:
    node = _cluster(ctx)
    if node is None or node.raft is None:
        return error_response(request.API_KEY, ctx.api_version, ErrorCode.INVALID_REQUEST)
    return await node.voter_change(request)


@route(ApiKey.ADD_RAFT_VOTER, 0, 0)
async def add_raft_voter(ctx: RequestContext, req: AddRaftVoterRequest) -> Message:
    return await _voter_change(ctx, req)


@route(ApiKey.REMOVE_RAFT_VOTER, 0, 0)
async def remove_raft_voter(ctx: RequestContext, req: RemoveRaftVoterRequest) -> Message:
    return await _voter_change(ctx, req)


async def _controller(ctx: RequestContext, request: Message,
                      handle: Callable[[QuorumController], Any]) -> Message:
    node = _cluster(ctx)

    def not_controller() -> Message:
        return error_response(request.API_KEY, ctx.api_version, ErrorCode.NOT_CONTROLLER)

    if node is None:
        return not_controller()
    return await node.controller_call(handle, not_controller)


@route(ApiKey.BROKER_REGISTRATION, 0, 4)
async def broker_registration(ctx: RequestContext, req: BrokerRegistrationRequest) -> Message:
    node = _cluster(ctx)
    now = node.now_ms() if node is not None else 0
    return await _controller(ctx, req, lambda c: c.handle_broker_registration(req, now_ms=now))


@route(ApiKey.BROKER_HEARTBEAT, 0, 1)
async def broker_heartbeat(ctx: RequestContext, req: BrokerHeartbeatRequest) -> Message:
    node = _cluster(ctx)
    now = node.now_ms() if node is not None else 0
    return await _controller(ctx, req, lambda c: c.handle_broker_heartbeat(req, now_ms=now))


@route(ApiKey.UNREGISTER_BROKER, 0, 0)
async def unregister_broker(ctx: RequestContext, req: UnregisterBrokerRequest) -> Message:
    return await _controller(ctx, req, lambda c: c.handle_unregister_broker(req))


@route(ApiKey.ALTER_PARTITION, 0, 3)
async def alter_partition(ctx: RequestContext, req: AlterPartitionRequest) -> Message:
    version = ctx.api_version
    return await _controller(ctx, req, lambda c: c.handle_alter_partition(req, version=version))


@route(ApiKey.ALLOCATE_PRODUCER_IDS, 0, 0)
async def allocate_producer_ids(ctx: RequestContext, req: AllocateProducerIdsRequest) -> Message:
    return await _controller(ctx, req, lambda c: c.handle_allocate_producer_ids(req))


# --- admin requests that only a cluster's controller can carry out ---------------------------------


async def _admin(ctx: RequestContext, request: Message, handle: Callable[[QuorumController], Any],
                 single_node_error: ErrorCode) -> Message:
    """Run on the active controller (here or forwarded). A single node answers
    ``single_node_error``: it has one replica per partition, nothing to elect or move."""
    node = _cluster(ctx)
    version = ctx.api_version
    if node is None:
        return error_response(request.API_KEY, version, single_node_error)
    return await node.admin_call(request, handle,
                                 lambda: error_response(request.API_KEY, version, ErrorCode.NOT_CONTROLLER),
                                 api_version=version)


@route(ApiKey.ELECT_LEADERS, 0, 2)
async def elect_leaders(ctx: RequestContext, req: ElectLeadersRequest) -> Message:
    version = ctx.api_version
    if _cluster(ctx) is None:
        # One replica per partition: it leads already (ElectLeaders v0 has no top-level error).
        b = ctx.broker
        return ElectLeadersResponse(replica_election_results=[
            ElectLeadersResponse.ReplicaElectionResult(topic=t.topic, partition_result=[
                ElectLeadersResponse.PartitionResult(
                    partition_id=p,
                    error_code=ErrorCode.ELECTION_NOT_NEEDED if b.partition(t.topic, p) is not None
                    else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                for p in t.partitions])
            for t in req.topic_partitions or []])
    return await _admin(ctx, req, lambda c: c.handle_elect_leaders(req, version=version),
                        ErrorCode.ELECTION_NOT_NEEDED)


@route(ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, 0)
async def alter_partition_reassignments(ctx: RequestContext, req: AlterPartitionReassignmentsRequest) -> Message:
    return await _admin(ctx, req, lambda c: c.handle_alter_partition_reassignments(req),
                        ErrorCode.INVALID_REPLICA_ASSIGNMENT)


@route(ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, 0)
async def list_partition_reassignments(ctx: RequestContext, req: ListPartitionReassignmentsRequest) -> Message:
    node = _cluster(ctx)
    if node is None:
        return ListPartitionReassignmentsResponse(topics=[])  # nothing ever moves on a single node
    return await _admin(ctx, req, lambda c: c.handle_list_partition_reassignments(req), ErrorCode.NONE)


@route(ApiKey.UPDATE_FEATURES, 0, 2)
async def update_features(ctx: RequestContext, req: UpdateFeaturesRequest) -> Message:
    """kafka-features upgrade/downgrade; only eligible.leader.replicas.version can change (KIP-966).
    A single node has no finalized features: INVALID_REQUEST."""
    version = ctx.api_version
    return await _admin(ctx, req, lambda c: c.handle_update_features(req, version=version),
                        ErrorCode.INVALID_REQUEST)
