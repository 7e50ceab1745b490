"""Kafka's wire messages for replication, mapped to and from ``replication.partition``'s types.

What it owns: the field-by-field correspondence between the generated messages and the plain
dataclasses the ``Partition`` state machine takes and returns, so that the broker's fetch
handler, its replica fetcher and its AlterPartition sender each make one call per partition.
Pure functions; no I/O.

* Follower fetch, leader side: ``replica_fetch_from_request`` turns a ``FetchRequest`` partition
  into a ``ReplicaFetch`` (the replica id and broker epoch are in ``replica_state`` from v15, in
  ``replica_id`` below); ``partition_data_from_response`` turns the ``ReplicaFetchResponse`` back
  into ``FetchResponse.PartitionData``. The records stay the caller's: the broker wraps the
  response's ``FileSlice`` s in its spliced-records type.
* Follower fetch, follower side: ``fetch_partition_from_fetch`` and ``replica_state_from_fetch``
  build the request; ``fetched_from_partition_data`` reads the answer. Kafka's FetchResponse
  has no log end offset: pass the one ListOffsets(LATEST) returned when the partition asked for
  it (``FetchOutcome.NEED_LEADER_END_OFFSET``).
* AlterPartition: ``alter_partition_data_from_proposal`` builds the request partition (v3 sends
  each member's broker epoch, KIP-903; v0-v2 the ids only) and ``alter_partition_result``
  reads an answer, a top-level error overriding the partition's.
"""

from __future__ import annotations

from protocol.error_codes import ErrorCode
from protocol.message import RecordsValue
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from replication.partition import (
    NO_EPOCH,
    UNKNOWN_OFFSET,
    AlterPartitionProposal,
    AlterPartitionResult,
    EpochEndOffset,
    FetchedPartition,
    ReplicaFetch,
    ReplicaFetchResponse,
)

BROKER_EPOCHS_ALTER_PARTITION_VERSION_MIN = 3  # NewIsrWithEpochs (KIP-903)


# --- fetch: the leader's side ---------------------------------------------------------------------


def replica_id_of(request: FetchRequest) -> int:
    """The fetching replica's id (-1 for a consumer): ``replica_state`` from v15, else the
    top-level field."""
    state_id = request.replica_state.replica_id
    return state_id if state_id >= 0 else request.replica_id


def replica_fetch_from_request(request: FetchRequest, partition: FetchRequest.FetchPartition) -> ReplicaFetch:
    return ReplicaFetch(
        replica_id=replica_id_of(request),
        replica_epoch=request.replica_state.replica_epoch,
        fetch_offset=partition.fetch_offset,
        last_fetched_epoch=partition.last_fetched_epoch,
        current_leader_epoch=partition.current_leader_epoch,
        log_start_offset=partition.log_start_offset,
        max_bytes=partition.partition_max_bytes,
    )


def partition_data_from_response(response: ReplicaFetchResponse, *, partition_index: int,
                                 records: RecordsValue | None = None) -> FetchResponse.PartitionData:
    data = FetchResponse.PartitionData(
        partition_index=partition_index,
        error_code=response.error,
        high_watermark=response.high_watermark,
        last_stable_offset=response.high_watermark,
        log_start_offset=response.log_start_offset,
        aborted_transactions=None,
        records=records,
    )
    if response.diverging_epoch is not None:
        data.diverging_epoch = FetchResponse.EpochEndOffset(
            epoch=response.diverging_epoch.epoch, end_offset=response.diverging_epoch.end_offset)
    if response.error == ErrorCode.NOT_LEADER_OR_FOLLOWER or response.error == ErrorCode.FENCED_LEADER_EPOCH:
        data.current_leader = FetchResponse.LeaderIdAndEpoch(
            leader_id=response.leader_id, leader_epoch=response.leader_epoch)
    return data


# --- fetch: the follower's side -------------------------------------------------------------------


def replica_state_from_fetch(fetch: ReplicaFetch) -> FetchRequest.ReplicaState:
    """The request-level replica fields (also set ``FetchRequest.replica_id`` below v15)."""
    return FetchRequest.ReplicaState(replica_id=fetch.replica_id, replica_epoch=fetch.replica_epoch)


def fetch_partition_from_fetch(fetch: ReplicaFetch, *, partition_index: int) -> FetchRequest.FetchPartition:
    return FetchRequest.FetchPartition(
        partition=partition_index,
        current_leader_epoch=fetch.current_leader_epoch,
        fetch_offset=fetch.fetch_offset,
        last_fetched_epoch=fetch.last_fetched_epoch,
        log_start_offset=fetch.log_start_offset,
        partition_max_bytes=fetch.max_bytes,
    )


def fetched_from_partition_data(data: FetchResponse.PartitionData, *,
                                leader_log_end_offset: int = UNKNOWN_OFFSET) -> FetchedPartition:
    diverging = data.diverging_epoch
    records = data.records
    raw = bytes(records) if isinstance(records, bytes | bytearray | memoryview) else b""
    return FetchedPartition(
        error=_error(data.error_code),
        high_watermark=data.high_watermark,
        log_start_offset=data.log_start_offset,
        log_end_offset=leader_log_end_offset,
        diverging_epoch=(EpochEndOffset(epoch=diverging.epoch, end_offset=diverging.end_offset)
                         if diverging.epoch != NO_EPOCH and diverging.end_offset != UNKNOWN_OFFSET else None),
        leader_id=data.current_leader.leader_id,
        leader_epoch=data.current_leader.leader_epoch,
        records=raw,
    )


# --- AlterPartition -------------------------------------------------------------------------------


def alter_partition_data_from_proposal(proposal: AlterPartitionProposal, *,
                                       version: int) -> AlterPartitionRequest.PartitionData:
    data = AlterPartitionRequest.PartitionData(
        partition_index=proposal.partition,
        leader_epoch=proposal.leader_epoch,
        partition_epoch=proposal.partition_epoch,
    )
    if version >= BROKER_EPOCHS_ALTER_PARTITION_VERSION_MIN:
        data.new_isr_with_epochs = [
            AlterPartitionRequest.BrokerState(broker_id=m.broker_id, broker_epoch=m.broker_epoch)
            for m in proposal.new_isr
        ]
    else:
        data.new_isr = list(proposal.isr)
    return data


def alter_partition_result(data: AlterPartitionResponse.PartitionData, *,
                           top_level_error: int = ErrorCode.NONE) -> AlterPartitionResult:
    code = top_level_error if top_level_error != ErrorCode.NONE else data.error_code
    return AlterPartitionResult(
        error=_error(code),
        leader_id=data.leader_id,
        leader_epoch=data.leader_epoch,
        partition_epoch=data.partition_epoch,
        isr=tuple(data.isr),
    )


def _error(code: int) -> ErrorCode:
    """A peer's error code; one this table does not know is an unknown server error."""
    error = ErrorCode.from_code(code)
    return error if isinstance(error, ErrorCode) else ErrorCode.UNKNOWN_SERVER_ERROR
