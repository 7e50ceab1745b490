"""ListOffsets, OffsetForLeaderEpoch, DeleteRecords and InitProducerId."""

from __future__ import annotations

import logging

from broker.dispatch import RequestContext, route
from broker.handlers.common import leader_epoch_error, not_leader
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.delete_records import DeleteRecordsRequest, DeleteRecordsResponse
from protocol.messages.init_producer_id import InitProducerIdRequest, InitProducerIdResponse
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from protocol.messages.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from storage.log import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP

EARLIEST_LOCAL_TIMESTAMP = -4  # KIP-405: the first offset held locally (all of it, here)
_logger = logging.getLogger("trafka.producers")
LATEST_TIERED_TIMESTAMP = -5  # KIP-1005: nothing is tiered, so there is no such offset
READ_COMMITTED = 1
LEADER_EPOCH_VERSION_MIN = 4  # ListOffsets answers carry the leader epoch from v4


@route(ApiKey.LIST_OFFSETS, 1, 10)
async def list_offsets(ctx: RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse:
    b = ctx.broker
    with_epoch = ctx.api_version >= LEADER_EPOCH_VERSION_MIN
    topics = []
    for rt in req.topics:
        parts = []
        for rp in rt.partitions:
            r = ListOffsetsResponse.ListOffsetsPartitionResponse(partition_index=rp.partition_index,
                                                                 timestamp=-1, offset=-1, leader_epoch=-1)
            parts.append(r)
            state = b.partition(rt.name, rp.partition_index)
            if state is None:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            r.error_code = leader_epoch_error(rp.current_leader_epoch, state.leader_epoch)
            if r.error_code != ErrorCode.NONE:
                continue
            if not_leader(state):
                r.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER  # in a cluster only the leader answers
                continue
            log = state.log
            ts = rp.timestamp
            # A new leader whose high watermark has not yet reached its epoch's start offset does
            # not know where its predecessor's high watermark was: a client asking for the end (or
            # for an offset beyond that high watermark) is told OFFSET_NOT_AVAILABLE and retries,
            # as in Kafka, instead of getting an offset that goes back later.
            hw_behind = (req.replica_id < 0 and state.replica is not None
                         and state.replica.leader_epoch_start_offset > log.high_watermark)
            if ts == LATEST_TIMESTAMP:
                # Consumers see up to the high watermark (the last stable offset for read_committed);
                # a follower asking as a replica gets the log end (Kafka's fetcher uses it to find out
                # how far to truncate).
                if hw_behind:
                    r.error_code = ErrorCode.OFFSET_NOT_AVAILABLE
                    continue
                r.offset = log.log_end_offset if req.replica_id >= 0 else log.high_watermark
                r.leader_epoch = state.leader_epoch if with_epoch else -1
                continue
            if ts == LATEST_TIERED_TIMESTAMP:
                continue
            if ts in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
                r.offset = log.log_start_offset
            elif ts == MAX_TIMESTAMP or ts >= 0:
                found = log.offset_for_timestamp(ts)
                if found is not None and found.offset >= log.high_watermark and hw_behind:
                    r.error_code = ErrorCode.OFFSET_NOT_AVAILABLE
                    continue
                if found is None or found.offset >= log.high_watermark:
                    continue  # no record at or after that time (yet visible): offset -1
                r.timestamp, r.offset = found.timestamp, found.offset
            else:
                r.error_code = ErrorCode.INVALID_REQUEST
                continue
            epoch = log.epochs.epoch_for_offset(r.offset)
            r.leader_epoch = epoch if epoch is not None and with_epoch else -1
        topics.append(ListOffsetsResponse.ListOffsetsTopicResponse(name=rt.name, partitions=parts))
    return ListOffsetsResponse(throttle_time_ms=0, topics=topics)


@route(ApiKey.OFFSET_FOR_LEADER_EPOCH, 0, 4)
async def offset_for_leader_epoch(ctx: RequestContext,
                                  req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse:
    b = ctx.broker
    topics = []
    for rt in req.topics:
        parts = []
        for rp in rt.partitions:
            r = OffsetForLeaderEpochResponse.EpochEndOffset(partition=rp.partition, leader_epoch=-1, end_offset=-1)
            parts.append(r)
            state = b.partition(rt.topic, rp.partition)
            if state is None:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            r.error_code = leader_epoch_error(rp.current_leader_epoch, state.leader_epoch)
            if r.error_code == ErrorCode.NONE and not_leader(state):
                r.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
            if r.error_code == ErrorCode.NONE:
                r.leader_epoch, r.end_offset = state.log.end_offset_for_epoch(rp.leader_epoch)
        topics.append(OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic=rt.topic, partitions=parts))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)


@route(ApiKey.DELETE_RECORDS, 0, 2)
async def delete_records(ctx: RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse:
    b = ctx.broker
    topics = []
    for rt in req.topics:
        parts = []
        for rp in rt.partitions:
            r = DeleteRecordsResponse.DeleteRecordsPartitionResult(partition_index=rp.partition_index,
                                                                   low_watermark=-1)
            parts.append(r)
            state = b.partition(rt.name, rp.partition_index)
            if state is None:
                r.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if not_leader(state):
                r.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
                continue
            log = state.log
            offset = log.high_watermark if rp.offset == -1 else rp.offset  # -1: up to the high watermark
            if offset < 0 or offset > log.high_watermark:
                r.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
                continue
            r.error_code = log.delete_records_before(offset, now_ms=b.now_ms())
            r.low_watermark = log.log_start_offset
        topics.append(DeleteRecordsResponse.DeleteRecordsTopicResult(name=rt.name, partitions=parts))
    return DeleteRecordsResponse(throttle_time_ms=0, topics=topics)


@route(ApiKey.INIT_PRODUCER_ID, 0, 5)
async def init_producer_id(ctx: RequestContext, req: InitProducerIdRequest) -> InitProducerIdResponse:
    b = ctx.broker
    if req.transactional_id is not None:
        # Transactions come with the transaction coordinator; until then say so plainly.
        return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                      producer_id=-1, producer_epoch=-1)
    # An idempotent producer (no transactional id) always gets a fresh producer id, epoch 0;
    # in a cluster from a block the controller allotted this broker, so ids never collide.
    if b.cluster is not None:
        cluster_pid = await b.cluster.allocate_producer_id()
        if cluster_pid is None:
            return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                          producer_id=-1, producer_epoch=-1)
        pid = cluster_pid
        client = ctx.header.client_id if ctx.header is not None else None
        _logger.info("producer id %d for %s (asked with producer id %d epoch %d)", pid, client,
                     req.producer_id, req.producer_epoch)
    else:
        pid = b.allocate_producer_id()
    return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.NONE, producer_id=pid, producer_epoch=0)
