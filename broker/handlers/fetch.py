"""Fetch: batch-aligned slices of segment files, long polls woken by appends, fetch sessions.

Theory of operation: the fetch session cache (KIP-227, ``broker.fetch_session``) turns the
request into the set of partitions to read. Each partition is read from its fetch offset up to
the high watermark (the last stable offset for read_committed, once transactions exist), within
the partition's and the response's byte limits; only the first partition that returns data may
exceed the limits, by one whole batch, so a consumer can always make progress. The records are
never copied into Python objects: each partition's result is a ``SliceRecords`` that the server
writes straight from the segment files. When fewer than ``min_bytes`` are ready and no partition
has an error, the request waits up to ``max_wait_ms``, and any append to one of its partitions
wakes it to read again; it returns as soon as ``min_bytes`` is met.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from broker.core import PartitionState
from broker.dispatch import RequestContext, route
from broker.fetch_session import ContextKind, PartitionToFetch, error_partition_data
from broker.handlers.common import endpoints_of, leader_epoch_error, leader_hint
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.fetch import FetchRequest, FetchResponse
from replication.raft import METADATA_TOPIC, METADATA_TOPIC_ID
from replication.replica_wire import partition_data_from_response, replica_fetch_from_request, replica_id_of
from storage.log import FileSlice

TOPIC_ID_FETCH_VERSION_MIN = 13
LEADER_HINT_ERRORS = (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH)  # KIP-951 (v16+)
FETCH_WAIT_MS_MAX = 60_000  # no client waits longer; bounds what a request can hold on to


@dataclass(frozen=True, slots=True)
class SliceRecords:
    """A partition's records as slices of segment files; the codec only needs their size."""

    slices: tuple[FileSlice, ...]

    @property
    def nbytes(self) -> int:
        return sum(s.length for s in self.slices)

    def buffers(self) -> list[bytes]:
        return [s.read() for s in self.slices]


@route(ApiKey.FETCH, 4, 17)
async def fetch(ctx: RequestContext, req: FetchRequest) -> FetchResponse:
    b = ctx.broker
    if b.cluster is not None:
        if _is_metadata_fetch(req):
            response = await b.cluster.raft_request(replica_id_of(req), req)
            assert isinstance(response, FetchResponse)
            return response
        if replica_id_of(req) >= 0:
            return await _replica_fetch(ctx, req)
    session = b.fetch_sessions.new_context(req, version=ctx.api_version, now_ms=b.now_ms())
    if session.kind is ContextKind.SESSION_ERROR:
        return session.build_response([], now_ms=b.now_ms())
    wait_s = min(max(req.max_wait_ms, 0), FETCH_WAIT_MS_MAX) / 1000
    deadline = trio.current_time() + wait_s
    while True:
        event = trio.Event()
        results, ready = _read_all(ctx, req, session.partitions)
        errored = any(r.error_code != ErrorCode.NONE for r in results)
        if ready >= req.min_bytes or errored or not results or trio.current_time() >= deadline:
            break
        waiting = [b.partition(p.topic, p.partition) for p in session.partitions if p.topic is not None]
        for state in waiting:
            if state is not None:
                state.waiters.add(event)
        with trio.move_on_at(deadline):
            await event.wait()
        for state in waiting:
            if state is not None:
                state.waiters.discard(event)
    response = session.build_response(results, now_ms=b.now_ms())
    leaders = {p.current_leader.leader_id for t in response.responses for p in t.partitions
               if p.error_code in LEADER_HINT_ERRORS and p.current_leader.leader_id >= 0}
    if leaders:
        response.node_endpoints = [FetchResponse.NodeEndpoint(node_id=e.node_id, host=e.host, port=e.port, rack=e.rack)
                                   for e in endpoints_of(b, leaders)]
    return response


def _read_all(ctx: RequestContext, req: FetchRequest,
              partitions: list[PartitionToFetch]) -> tuple[list[FetchResponse.PartitionData], int]:
    remaining = max(req.max_bytes, 0)
    first_data = True
    total = 0
    out: list[FetchResponse.PartitionData] = []
    for p in partitions:
        data, nbytes = _read_partition(ctx, p, remaining, first_data)
        if nbytes:
            first_data = False
            remaining = max(remaining - nbytes, 0)
            total += nbytes
        out.append(data)
    return out, total


def _read_partition(ctx: RequestContext, p: PartitionToFetch, remaining: int,
                    first_data: bool) -> tuple[FetchResponse.PartitionData, int]:
    b = ctx.broker
    if p.topic is None:
        return error_partition_data(p.partition, ErrorCode.UNKNOWN_TOPIC_ID), 0
    state = b.partition(p.topic, p.partition)
    if state is None:
        return error_partition_data(p.partition, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), 0
    error = leader_epoch_error(p.current_leader_epoch, state.leader_epoch)
    if error == ErrorCode.NONE and state.replica is not None and not state.replica.is_leader:
        error = ErrorCode.NOT_LEADER_OR_FOLLOWER
    if error != ErrorCode.NONE:
        data = error_partition_data(p.partition, error)
        hint = leader_hint(state)
        if hint is not None and error in LEADER_HINT_ERRORS:
            data.current_leader = FetchResponse.LeaderIdAndEpoch(leader_id=hint[0], leader_epoch=hint[1])
        return data, 0
    log = state.log
    hw = log.high_watermark
    data = FetchResponse.PartitionData(partition_index=p.partition, error_code=ErrorCode.NONE,
                                       high_watermark=hw, last_stable_offset=hw,
                                       log_start_offset=log.log_start_offset, aborted_transactions=None,
                                       records=b"")
    max_bytes = min(p.partition_max_bytes, remaining)
    if max_bytes <= 0 and not first_data:
        return data, 0
    result = log.read(p.fetch_offset, max_bytes=max_bytes, upper_bound_offset=hw, min_one_batch=first_data)
    if result.error != ErrorCode.NONE:
        data.error_code = result.error
        return data, 0
    records = SliceRecords(result.slices)
    nbytes = records.nbytes
    if nbytes:
        data.records = records
    return data, nbytes


# --- cluster mode: the metadata quorum's fetches and followers' fetches ---------------------------


def _is_metadata_fetch(req: FetchRequest) -> bool:
    return any(t.topic_id == METADATA_TOPIC_ID or t.topic == METADATA_TOPIC for t in req.topics)


async def _replica_fetch(ctx: RequestContext, req: FetchRequest) -> FetchResponse:
    """A follower's fetch (Kafka's Partition.fetchRecords for a replica): each partition is
    answered by its ``replication.partition.Partition``, which records the follower's progress
    (so the high watermark and the ISR can move) before the response is built; the request waits
    up to ``max_wait_ms`` for data, woken by appends, as a consumer's does."""
    b = ctx.broker
    assert b.replicas is not None
    wait_s = min(max(req.max_wait_ms, 0), FETCH_WAIT_MS_MAX) / 1000
    deadline = trio.current_time() + wait_s
    while True:
        topics, states, nbytes = _replica_read(ctx, req)
        if nbytes >= req.min_bytes or trio.current_time() >= deadline or not states:
            break
        event = trio.Event()
        for state in states:
            state.waiters.add(event)
        with trio.move_on_at(deadline):
            await event.wait()
        for state in states:
            state.waiters.discard(event)
    return FetchResponse(throttle_time_ms=0, error_code=ErrorCode.NONE, session_id=0, responses=topics)


def _replica_read(ctx: RequestContext, req: FetchRequest) -> tuple[list[FetchResponse.FetchableTopicResponse],
                                                                   list[PartitionState], int]:
    b = ctx.broker
    assert b.replicas is not None
    now = b.now_ms()
    out: list[FetchResponse.FetchableTopicResponse] = []
    states: list[PartitionState] = []
    total = 0
    for t in req.topics:
        topic = b.topics.by_id(t.topic_id) if ctx.api_version >= TOPIC_ID_FETCH_VERSION_MIN else b.topics.get(t.topic)
        parts = []
        for p in t.partitions:
            state = b.partition(topic.name, p.partition) if topic is not None else None
            if state is None or state.replica is None:
                code = ErrorCode.UNKNOWN_TOPIC_ID if topic is None and ctx.api_version >= TOPIC_ID_FETCH_VERSION_MIN \
                    else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                parts.append(error_partition_data(p.partition, code))
                continue
            answer = state.replica.handle_replica_fetch(replica_fetch_from_request(req, p), now_ms=now)
            b.replicas.drain(state)
            records = SliceRecords(answer.records) if answer.records else None
            if records is not None:
                total += records.nbytes
            parts.append(partition_data_from_response(answer, partition_index=p.partition,
                                                      records=records if records is not None else b""))
            states.append(state)
        out.append(FetchResponse.FetchableTopicResponse(topic=t.topic, topic_id=t.topic_id, partitions=parts))
    return out, states, total
