"""Small pieces the handlers share."""

from __future__ import annotations

from broker.core import PartitionState
from protocol.error_codes import ErrorCode

NO_LEADER_EPOCH = -1


def leader_epoch_error(requested: int, current: int) -> ErrorCode:
    """KIP-320: a request's current leader epoch against ours (-1 means "not checked")."""
    if requested in (NO_LEADER_EPOCH, current):
        return ErrorCode.NONE
    return ErrorCode.FENCED_LEADER_EPOCH if requested < current else ErrorCode.UNKNOWN_LEADER_EPOCH


def not_leader(state: PartitionState) -> bool:
    """In a cluster, whether this broker is not the partition's leader (then only the leader
    answers: NOT_LEADER_OR_FOLLOWER). A single node leads everything."""
    return state.replica is not None and not state.replica.is_leader
