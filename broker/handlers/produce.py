"""Produce: validate, check idempotence, append, wait for durability when the topic asks for it.

The hot path never looks at individual records: each batch's header is validated and its CRC32C
checked by the storage layer, offsets are assigned by rewriting the header in place, and the
request's bytes go to the segment file in one write. Duplicates from an idempotent producer
(a retry of one of its last five batches) are answered with the offsets the original got.
"""

from __future__ import annotations

import logging

import trio

from broker.config import timestamp_bounds_ms, topic_config_values
from broker.core import Broker, PartitionState
from broker.dispatch import CloseConnection, RequestContext, route
from broker.handlers.common import endpoints_of, leader_hint
from broker.replicas import ProduceWait
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages import ApiKey
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.records import BatchError, Compression, RecordBatchView, TimestampType, iter_batches
from storage.log import AppendRejected

_logger = logging.getLogger("trafka.produce")
VALID_ACKS = (-1, 0, 1)
ZSTD_PRODUCE_VERSION_MIN = 7  # KIP-110
MAGIC_2_PRODUCE_VERSION_MIN = 3
PartitionResponse = ProduceResponse.PartitionProduceResponse


@route(ApiKey.PRODUCE, 0, 11)
async def produce(ctx: RequestContext, req: ProduceRequest) -> ProduceResponse | None:
    """Produce v3+ (record batches, magic 2). Versions 0-2 are advertised, as Kafka 4.0 does
    (KAFKA-18659: librdkafka before 2.10 compresses only when the broker lists Produce v0/v1),
    and every partition of such a request is answered UNSUPPORTED_VERSION."""
    b = ctx.broker
    responses: list[ProduceResponse.TopicProduceResponse] = []
    durable_waits: list[tuple[PartitionState, int]] = []
    replication_waits: list[tuple[PartitionResponse, ProduceWait]] = []
    for td in req.topic_data:
        parts = []
        for pd in td.partition_data:
            if ctx.api_version < MAGIC_2_PRODUCE_VERSION_MIN:
                parts.append(_error(pd.index, ErrorCode.UNSUPPORTED_VERSION,
                                    "produce v0-v2 (message format v0/v1) is not supported"))
                continue
            if req.acks not in VALID_ACKS:
                parts.append(_error(pd.index, ErrorCode.INVALID_REQUIRED_ACKS))
                continue
            if req.transactional_id is not None:
                parts.append(_error(pd.index, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                                    "transactions are not supported yet"))
                continue
            state = b.partition(td.name, pd.index)
            if state is None:
                parts.append(_error(pd.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            parts.append(_append(ctx, req, state, pd, durable_waits, replication_waits))
        responses.append(ProduceResponse.TopicProduceResponse(name=td.name, partition_responses=parts))
    for pr, wait in replication_waits:
        # acks=all in a cluster: the answer waits for the ISR (the high watermark).
        with trio.move_on_after(max(req.timeout_ms, 0) / 1000):
            await wait.wait()
        if wait.error != ErrorCode.NONE:
            pr.error_code, pr.base_offset, pr.error_message = wait.error, -1, None
    for state, offset in durable_waits:
        try:
            await b.committer.wait_durable(state.log, offset)
        except OSError as e:
            for tr in responses:
                for pr in tr.partition_responses:
                    if tr.name == state.log.topic and pr.index == state.log.partition:
                        pr.error_code, pr.error_message = ErrorCode.KAFKA_STORAGE_ERROR, str(e)
        b.advance_high_watermark(state)
    if req.acks == 0:
        if any(pr.error_code != ErrorCode.NONE for tr in responses for pr in tr.partition_responses):
            # The producer expects no answer, so closing is the only way to tell it (Kafka does so).
            raise CloseConnection("an acks=0 produce failed")
        return None
    return ProduceResponse(responses=responses, throttle_time_ms=0, node_endpoints=_leader_endpoints(b, responses))


def _leader_endpoints(b: Broker, responses: list[ProduceResponse.TopicProduceResponse]) -> list[ProduceResponse.NodeEndpoint]:
    """KIP-951 (v10+): each partition answered NOT_LEADER_OR_FOLLOWER names its current leader,
    and the response carries those leaders' endpoints, so the producer retries there at once."""
    leaders: set[int] = set()
    for tr in responses:
        for pr in tr.partition_responses:
            if pr.error_code != ErrorCode.NOT_LEADER_OR_FOLLOWER:
                continue
            state = b.partition(tr.name, pr.index)
            hint = leader_hint(state) if state is not None else None
            if hint is not None and hint[0] >= 0:
                pr.current_leader = ProduceResponse.LeaderIdAndEpoch(leader_id=hint[0], leader_epoch=hint[1])
                leaders.add(hint[0])
    return [ProduceResponse.NodeEndpoint(node_id=e.node_id, host=e.host, port=e.port, rack=e.rack)
            for e in endpoints_of(b, leaders)]


def _error(index: int, error: ErrorCode, message: str | None = None) -> ProduceResponse.PartitionProduceResponse:
    return PartitionResponse(index=index, error_code=error, base_offset=-1, error_message=message)


def _append(ctx: RequestContext, req: ProduceRequest, state: PartitionState,
            pd: ProduceRequest.PartitionProduceData,
            durable_waits: list[tuple[PartitionState, int]],
            replication_waits: list[tuple[PartitionResponse, ProduceWait]]) -> PartitionResponse:
    b = ctx.broker
    log = state.log
    if pd.records is None or len(pd.records) == 0:  # type: ignore[arg-type]
        return _error(pd.index, ErrorCode.INVALID_RECORD, "the request has no record batches")
    replica = state.replica
    # As Kafka: leadership and the ISR are checked before the records, so the batches after one
    # refused NOT_ENOUGH_REPLICAS get that answer too (see Partition.refuse_append).
    refused = replica.refuse_append(acks=req.acks) if replica is not None else None
    if refused is not None:
        return _error(pd.index, refused.error, refused.message)
    min_isr = b.min_insync_replicas(log.topic)
    if replica is None and req.acks == -1 and min_isr > 1:
        # A single node is an ISR of one.
        return _error(pd.index, ErrorCode.NOT_ENOUGH_REPLICAS,
                      f"min.insync.replicas={min_isr} but the ISR has 1 replica")
    records = memoryview(pd.records)  # type: ignore[arg-type]
    try:
        views = list(iter_batches(records))
    except ProtocolError as e:
        return _error(pd.index, ErrorCode.CORRUPT_MESSAGE, str(e))
    if not views:
        return _error(pd.index, ErrorCode.CORRUPT_MESSAGE, "the records hold no whole record batch")
    if ctx.api_version < ZSTD_PRODUCE_VERSION_MIN and views[0].compression == Compression.ZSTD:
        return _error(pd.index, ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, "zstd needs produce v7 or later")
    bounds_error = _timestamp_error(b, log.topic, views[0])
    if bounds_error is not None:
        return _error(pd.index, ErrorCode.INVALID_TIMESTAMP, bounds_error)
    if len(views) != 1:
        # Produce v3+ carries exactly one batch per partition, as Kafka requires.
        return _error(pd.index, ErrorCode.INVALID_RECORD,
                      f"a produce request must carry exactly one record batch per partition, not {len(views)}")
    producers = state.producers
    if any(v.producer_id >= 0 for v in views):
        # Kafka checks each batch before its producer state, so that a damaged batch whose header
        # looks like a retry is refused rather than answered as a duplicate.
        try:
            for v in views:
                v.validate(from_client=True)
        except BatchError as e:
            return _error(pd.index, e.kind.error_code, str(e))
    verdict = producers.check_batches(views)
    if verdict.error != ErrorCode.NONE:
        if replica is not None:
            v = views[0]
            _logger.info("%s-%d: producer %d epoch %d sequence %d refused: %s (%s)", log.topic, log.partition,
                         v.producer_id, v.producer_epoch, v.base_sequence, verdict.error.name, verdict.message)
        return _error(pd.index, verdict.error, verdict.message)
    if verdict.duplicate is not None:
        d = verdict.duplicate
        if log.config.durable_appends and d.last_offset >= log.durable_offset:
            durable_waits.append((state, d.last_offset))  # the original may still be on its way to disk
        dup = PartitionResponse(index=pd.index, error_code=ErrorCode.NONE, base_offset=d.first_offset,
                                log_append_time_ms=d.log_append_time_ms, log_start_offset=log.log_start_offset)
        if replica is not None and req.acks == -1 and d.last_offset >= log.high_watermark:
            # A retry of a batch the ISR may not have yet: answer as the original would be answered.
            replication_waits.append((dup, ProduceWait.until_high_watermark(state, d.last_offset + 1)))
        return dup
    wait = None
    if replica is not None:
        appended = replica.append(records, acks=req.acks, now_ms=b.now_ms(), timeout_ms=req.timeout_ms)
        if appended.info is None:
            return _error(pd.index, appended.error, appended.message)
        result = appended.info
        if appended.produce_id >= 0:
            assert b.replicas is not None
            wait = b.replicas.register_produce(state, appended.produce_id)
        elif appended.error != ErrorCode.NONE:
            producers.record_batches(views, result)
            return _error(pd.index, appended.error, appended.message)
    else:
        result_or_rejected = log.append_as_leader(records, leader_epoch=state.leader_epoch, now_ms=b.now_ms())
        if isinstance(result_or_rejected, AppendRejected):
            return _error(pd.index, result_or_rejected.error, result_or_rejected.message)
        result = result_or_rejected
    producers.record_batches(views, result)
    if result.flush_needed and req.acks != 0:
        durable_waits.append((state, result.last_offset))
    b.advance_high_watermark(state)
    if replica is not None:
        # Followers' fetches parked on this partition read the new batch now, not after their
        # replica.fetch.wait.max.ms: acks=all waits for them (Kafka completes them on append).
        state.wake()
    response = PartitionResponse(index=pd.index, error_code=ErrorCode.NONE, base_offset=result.first_offset,
                                 log_append_time_ms=result.log_append_time_ms,
                                 log_start_offset=result.log_start_offset)
    if wait is not None:
        replication_waits.append((response, wait))
    return response


def _timestamp_error(b: Broker, topic: str, view: RecordBatchView) -> str | None:
    """``message.timestamp.before/after.max.ms`` for CreateTime topics.

    The hot path reads no records, so the batch's first and largest timestamps stand for its
    records (Kafka checks every record); both bounds default to unlimited.
    """
    t = b.topics.get(topic)
    overrides = t.configs if t is not None else {}
    if not any(k.startswith("message.timestamp") for k in overrides) and not b.timestamp_bounds_set:
        return None
    values = topic_config_values(b.config, overrides)
    if values["message.timestamp.type"] != "CreateTime" or view.timestamp_type != TimestampType.CREATE_TIME:
        return None
    before, after = timestamp_bounds_ms(values)
    now = b.now_ms()
    if view.base_timestamp < now - before:
        return f"timestamp {view.base_timestamp} is more than {before} ms before the broker's time {now}"
    if view.max_timestamp > now + after:
        return f"timestamp {view.max_timestamp} is more than {after} ms after the broker's time {now}"
    return None
