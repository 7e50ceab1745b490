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

from broker.dispatch import RequestContext, route
from broker.fetch_session import ContextKind, PartitionToFetch, error_partition_data
from broker.handlers.common import leader_epoch_error
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.fetch import FetchRequest, FetchResponse
from storage.log import FileSlice

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
    return session.build_response(results, now_ms=b.now_ms())


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
    epoch_error = leader_epoch_error(p.current_leader_epoch, state.leader_epoch)
    if epoch_error != ErrorCode.NONE:
        return error_partition_data(p.partition, epoch_error), 0
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
