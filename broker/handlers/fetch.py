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

Fetch from follower (KIP-392), in a cluster. A consumer's Fetch v11+ (the version that carries its
``rack_id``) may be served by any replica, not only the leader, as Kafka serves it when the
request has client metadata: a follower reads its own log up to its own high watermark (which it
learns from the leader's fetch answers, so it trails the leader's by up to one replica fetch),
checks the request's leader epoch against the one it knows, answers OFFSET_OUT_OF_RANGE for an
offset outside its log and nothing for one between its high watermark and its log end, and
wakes a waiting fetch when its high watermark advances. Older versions are served by the leader
only (NOT_LEADER_OR_FOLLOWER elsewhere). The leader, when ``replica.selector.class`` is set,
chooses for each partition whether the consumer should read elsewhere
(``replication.read_replica``): if so it answers that partition with ``preferred_read_replica``,
its offsets and no records, and the request returns at once. Followers never redirect, as in
Kafka. At DEBUG, logger ``trafka.fetch`` notes every consumer fetch that returned records (which
replica served which offset) and every redirect.

One difference from Kafka, on purpose: a fetch offset above the high watermark (a follower behind
the leader, a new leader whose high watermark lags) waits for it like any long poll; Kafka's
delayed fetch returns such a fetch at once, empty, and the consumer asks again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from broker.core import Broker, PartitionState
from broker.dispatch import RequestContext, route
from broker.fetch_session import ContextKind, PartitionToFetch, error_partition_data
from broker.handlers.common import endpoints_of, leader_epoch_error, leader_hint, live_brokers
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.fetch import FetchRequest, FetchResponse
from replication.partition import Partition, Role
from replication.raft import METADATA_TOPIC, METADATA_TOPIC_ID
from replication.read_replica import (
    CLIENT_METADATA_FETCH_VERSION_MIN,
    NO_PREFERRED_READ_REPLICA,
    REPLICA_SELECTOR_CLASS_KEY,
    preferred_read_replica,
)
from replication.replica_wire import partition_data_from_response, replica_fetch_from_request, replica_id_of
from storage.log import FileSlice

TOPIC_ID_FETCH_VERSION_MIN = 13
LEADER_HINT_ERRORS = (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH)  # KIP-951 (v16+)
FETCH_WAIT_MS_MAX = 60_000  # no client waits longer; bounds what a request can hold on to

_logger = logging.getLogger("trafka.fetch")


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
        # An error or a redirect to another replica is answered at once, as in Kafka.
        done = any(r.error_code != ErrorCode.NONE or r.preferred_read_replica != NO_PREFERRED_READ_REPLICA
                   for r in results)
        if ready >= req.min_bytes or done or not results or trio.current_time() >= deadline:
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
    if _logger.isEnabledFor(logging.DEBUG):
        _log_reads(ctx, req, session.partitions, results)
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
    chooser = _ReadReplicaChooser.for_request(ctx, req)
    for p in partitions:
        data, nbytes = _read_partition(ctx, p, remaining, first_data, chooser)
        if nbytes:
            first_data = False
            remaining = max(remaining - nbytes, 0)
            total += nbytes
        out.append(data)
    return out, total


def _read_partition(ctx: RequestContext, p: PartitionToFetch, remaining: int, first_data: bool,
                    chooser: _ReadReplicaChooser | None) -> tuple[FetchResponse.PartitionData, int]:
    b = ctx.broker
    if p.topic is None:
        return error_partition_data(p.partition, ErrorCode.UNKNOWN_TOPIC_ID), 0
    state = b.partition(p.topic, p.partition)
    if state is None:
        return _not_hosted(b, p.topic, p.partition), 0
    replica = state.replica
    # Kafka decides the preferred read replica before it checks the epoch: an epoch error wins.
    preferred = chooser.choose(replica, p.fetch_offset) if chooser is not None and replica is not None \
        else NO_PREFERRED_READ_REPLICA
    error = leader_epoch_error(p.current_leader_epoch, state.leader_epoch)
    if error == ErrorCode.NONE and replica is not None and not _serves_consumers(replica, ctx.api_version):
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
    if preferred != NO_PREFERRED_READ_REPLICA:
        data.preferred_read_replica = preferred  # read nothing: the consumer goes there
        return data, 0
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


def _not_hosted(b: Broker, topic: str, partition: int) -> FetchResponse.PartitionData:
    """A partition this broker holds no replica of. In a cluster, one the metadata has is
    NOT_LEADER_OR_FOLLOWER, with the leader the metadata names (Kafka's answer, which sends a
    consumer back to the leader, e.g. from a preferred read replica that was moved away);
    otherwise the partition is unknown."""
    reg = None
    if b.cluster is not None:
        image_topic = b.cluster.image.topic(topic)
        reg = image_topic.partition(partition) if image_topic is not None else None
    if reg is None:
        return error_partition_data(partition, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    data = error_partition_data(partition, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    data.current_leader = FetchResponse.LeaderIdAndEpoch(leader_id=reg.leader, leader_epoch=reg.leader_epoch)
    return data


def _serves_consumers(replica: Partition, version: int) -> bool:
    """Kafka's ``fetchOnlyFromLeader``: a consumer's Fetch below v11 is the leader's alone; from
    v11 a follower serves it too."""
    if replica.is_leader:
        return True
    return version >= CLIENT_METADATA_FETCH_VERSION_MIN and replica.role is Role.FOLLOWER


@dataclass(slots=True)
class _ReadReplicaChooser:
    """A consumer request's inputs to the preferred read replica rule, gathered once per read
    pass: the selector, the client's rack and every reachable broker's rack."""

    broker: Broker
    selector: str
    client_rack: str
    racks: dict[int, str | None]

    @staticmethod
    def for_request(ctx: RequestContext, req: FetchRequest) -> _ReadReplicaChooser | None:
        """None when no partition of this request can have one: a single node, no selector, a
        version without client metadata, or a request without a rack (the rack-aware selector
        then always keeps the leader)."""
        b = ctx.broker
        selector = b.config.get_str(REPLICA_SELECTOR_CLASS_KEY)
        if b.cluster is None or selector is None or ctx.api_version < CLIENT_METADATA_FETCH_VERSION_MIN \
                or not req.rack_id:
            return None
        return _ReadReplicaChooser(b, selector, req.rack_id, {e.node_id: e.rack for e in live_brokers(b)})

    def choose(self, replica: Partition, fetch_offset: int) -> int:
        if not replica.is_leader:
            return NO_PREFERRED_READ_REPLICA  # only the leader chooses (Kafka's leaderIdIfLocal)
        return preferred_read_replica(self.selector, client_rack=self.client_rack, fetch_offset=fetch_offset,
                                      now_ms=self.broker.now_ms(), leader_id=replica.broker_id,
                                      leader_log_end_offset=replica.log_end_offset,
                                      followers=replica.follower_states(), racks=self.racks)


def _log_reads(ctx: RequestContext, req: FetchRequest, partitions: list[PartitionToFetch],
               results: list[FetchResponse.PartitionData]) -> None:
    """DEBUG: which replica served a consumer which records, and which redirects it got."""
    b = ctx.broker
    client = ctx.header.client_id if ctx.header is not None else None
    for p, data in zip(partitions, results, strict=True):
        state = b.partition(p.topic, p.partition) if p.topic is not None else None
        if state is None:
            continue
        role = "leader" if state.replica is None or state.replica.is_leader else "follower"
        if data.preferred_read_replica != NO_PREFERRED_READ_REPLICA:
            _logger.debug("%s-%d: consumer %s (rack %r) at offset %d sent to replica %d", p.topic, p.partition,
                          client, req.rack_id, p.fetch_offset, data.preferred_read_replica)
        elif isinstance(data.records, SliceRecords) and data.records.nbytes:
            _logger.debug("%s-%d: served consumer %s (rack %r) %d bytes from offset %d as %s", p.topic,
                          p.partition, client, req.rack_id, data.records.nbytes, p.fetch_offset, role)


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
