"""Small pieces the handlers share."""

from __future__ import annotations

from dataclasses import dataclass

from broker.core import Broker, PartitionState
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


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerEndpoint:
    """A broker as clients reach it."""

    node_id: int
    host: str
    port: int
    rack: str | None


def live_brokers(b: Broker) -> list[BrokerEndpoint]:
    """The brokers clients are told about, by id: on a single node this one at its advertised
    address; in a cluster every registered, unfenced broker of the metadata image at its
    endpoint for the inter-broker listener (the one listener clients and brokers share)."""
    if b.cluster is None:
        host, port = b.advertised_address
        return [BrokerEndpoint(node_id=b.node_id, host=host, port=port, rack=b.config.broker_rack)]
    listener = b.config.inter_broker_listener_name
    out = []
    for reg in sorted(b.cluster.image.brokers.values(), key=lambda r: r.broker_id):
        ep = reg.endpoint(listener) or (reg.endpoints[0] if reg.endpoints else None)
        if ep is not None and not reg.fenced:
            out.append(BrokerEndpoint(node_id=reg.broker_id, host=ep.host, port=ep.port, rack=reg.rack))
    return out


def leader_hint(state: PartitionState) -> tuple[int, int] | None:
    """KIP-951: the partition's current leader and leader epoch as this broker knows them, for
    a NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH answer, so the client need not ask Metadata
    first (None on a single node, which leads everything)."""
    replica = state.replica
    if replica is None:
        return None
    return replica.leader_id, replica.leader_epoch


def endpoints_of(b: Broker, node_ids: set[int]) -> list[BrokerEndpoint]:
    """The live endpoints of ``node_ids`` (the leaders a response names), in id order."""
    return [e for e in live_brokers(b) if e.node_id in node_ids]
