"""Fetch from follower (KIP-392): which replica a consumer should read a partition from.

What it owns. The broker setting ``replica.selector.class`` and the rule a partition's leader
applies, on every consumer Fetch v11+ (the version that carries the consumer's ``rack_id``), to
name a *preferred read replica*: another replica the consumer should fetch this partition from,
or none (keep fetching from the leader). The leader answers a partition that has one with the
replica's id, its own offsets and no records; the consumer then fetches from that replica, which
serves it from its local log up to its own high watermark (``broker.handlers.fetch``).

The rule, as Kafka's ``ReplicaManager.findPreferredReadReplica`` and its
``RackAwareReplicaSelector`` have it:

* Only the leader chooses, only for consumers (a follower's own fetch never gets one), and only
  when a selector is configured: unset (Kafka's null default) means "the leader", always.
* The candidates are the leader itself and each follower that is in the committed ISR and whose
  log, as the leader last saw it (the follower's log start and log end offsets from its latest
  fetch), holds the fetch offset: ``log_start_offset <= fetch_offset <= log_end_offset``. A
  replica with no endpoint the client can reach (not registered, fenced) has no rack.
* ``RackAwareReplicaSelector``: with no client rack (null or empty), the leader. Otherwise the
  candidates in the client's rack; none, the leader; the leader among them, the leader; else the
  "most caught up" of them: largest log end offset, then the least time since it last caught up
  with the leader, then the largest broker id (Kafka's ``ReplicaView.comparator`` with ``max``).
* The leader chosen is "no preferred read replica": the response says -1.

Kafka loads the selector as a Java class; Trafka cannot, so the setting accepts exactly the name
of Kafka's one built-in selector (``RACK_AWARE_REPLICA_SELECTOR``) and the configuration refuses
anything else at startup.

Pure: no I/O, no clock (``now_ms`` is passed in), no randomness. Cost: O(replicas).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

REPLICA_SELECTOR_CLASS_KEY = "replica.selector.class"
RACK_AWARE_REPLICA_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
REPLICA_SELECTORS = (RACK_AWARE_REPLICA_SELECTOR,)
NO_PREFERRED_READ_REPLICA = -1
# Fetch v11 added the consumer's rack (KIP-392); from it a consumer may read from a follower.
CLIENT_METADATA_FETCH_VERSION_MIN = 11


def replica_selector_error(value: str) -> str | None:
    """Why ``value`` cannot be ``replica.selector.class`` (None if it can)."""
    if value in REPLICA_SELECTORS:
        return None
    return ("Trafka cannot load Java classes; the only replica selector it has is "
            f"{RACK_AWARE_REPLICA_SELECTOR} (leave the setting unset to read from leaders only)")


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerState:
    """What the leader knows of one follower from its fetches (``Partition.follower_states``)."""

    broker_id: int
    in_sync: bool  # in the committed ISR
    log_start_offset: int  # -1 until the follower has fetched since this leader's election
    log_end_offset: int  # -1 likewise
    last_caught_up_time_ms: int | None  # None: never caught up with this leader


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaView:
    """A candidate replica as the selector sees it (Kafka's ``ReplicaView``)."""

    broker_id: int
    rack: str | None  # None: no rack, or no endpoint the client can reach
    log_end_offset: int
    time_since_last_caught_up_ms: int  # 0 for the leader


def candidates(followers: Iterable[FollowerState], *, fetch_offset: int, now_ms: int,
               racks: Mapping[int, str | None]) -> list[ReplicaView]:
    """The followers a consumer at ``fetch_offset`` may be sent to: in the ISR, and holding the
    offset as far as the leader knows. ``racks`` maps each reachable broker to its rack; a broker
    missing from it has none. A follower that never caught up counts as caught up at time 0, as
    Kafka's initial ``lastCaughtUpTimeMs`` is."""
    out = []
    for f in followers:
        if f.in_sync and f.log_start_offset <= fetch_offset <= f.log_end_offset:
            caught_up = f.last_caught_up_time_ms if f.last_caught_up_time_ms is not None else 0
            out.append(ReplicaView(broker_id=f.broker_id, rack=racks.get(f.broker_id),
                                   log_end_offset=f.log_end_offset,
                                   time_since_last_caught_up_ms=now_ms - caught_up))
    return out


def rack_aware_select(client_rack: str | None, *, leader: ReplicaView,
                      followers: Iterable[ReplicaView]) -> ReplicaView:
    """Kafka's ``RackAwareReplicaSelector.select`` (see the module docstring)."""
    if not client_rack:
        return leader
    if leader.rack == client_rack:
        return leader
    same_rack = [r for r in followers if r.rack == client_rack]
    if not same_rack:
        return leader
    return max(same_rack, key=lambda r: (r.log_end_offset, -r.time_since_last_caught_up_ms, r.broker_id))


def preferred_read_replica(selector: str | None, *, client_rack: str | None, fetch_offset: int, now_ms: int,
                           leader_id: int, leader_log_end_offset: int, followers: Iterable[FollowerState],
                           racks: Mapping[int, str | None]) -> int:
    """The replica a consumer at ``fetch_offset`` should fetch from, as the partition's leader
    decides it: a follower's broker id, or ``NO_PREFERRED_READ_REPLICA`` (the leader)."""
    if selector is None:
        return NO_PREFERRED_READ_REPLICA
    assert selector in REPLICA_SELECTORS, f"unchecked replica selector {selector!r}"
    leader = ReplicaView(broker_id=leader_id, rack=racks.get(leader_id), log_end_offset=leader_log_end_offset,
                         time_since_last_caught_up_ms=0)
    chosen = rack_aware_select(client_rack, leader=leader,
                               followers=candidates(followers, fetch_offset=fetch_offset, now_ms=now_ms, racks=racks))
    return NO_PREFERRED_READ_REPLICA if chosen.broker_id == leader_id else chosen.broker_id
