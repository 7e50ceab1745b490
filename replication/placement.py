"""Replica placement: which brokers hold the replicas of new partitions, rack-aware.

What it owns. ``place_replicas``: given the usable brokers (id and rack) and how many partitions
of what replication factor to place, the replica list of each partition, first replica being the
preferred leader. The rules (those of Kafka's rack-aware assignment):

- leaders are spread evenly: partition ``p``'s leader is the ``(start + p)``-th broker of a
  *rack-alternated* list (racks in name order, taking one broker from each rack in turn), so
  consecutive partitions are led by brokers of different racks and every broker leads the same
  number of partitions, give or take one;
- a partition's followers are taken walking the same list from the leader with a shift that
  grows by one every full round of brokers, so the follower sets vary between partitions; a
  broker is skipped while its rack already holds a replica of the partition, unless every rack
  does, so the replicas of a partition span ``min(replication factor, racks)`` racks;
- a broker without a rack is in a rack of its own (the "no rack" rack).

``start`` and the initial shift come from an injected random source (Kafka picks them at random
per topic so that many small topics do not all start on the same broker) or are given, for
tests. ``start_partition`` continues the pattern for partitions added to an existing topic.

Contract. Pure: no I/O and no ambient randomness. The caller checks that
``1 <= replication_factor <= len(brokers)`` (that is an INVALID_REPLICATION_FACTOR for the
request); violating it is a programmer error (``assert``). Cost: O(partitions x replication
factor x brokers) in the worst case, O(partitions x replication factor) usually.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class RandomSource(Protocol):
    """What placement and the controller need of a random source (``random.Random`` fits)."""

    def randrange(self, stop: int, /) -> int: ...

    def getrandbits(self, k: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class UsableBroker:
    broker_id: int
    rack: str | None = None


def rack_alternated(brokers: Sequence[UsableBroker]) -> list[UsableBroker]:
    """Brokers ordered one per rack in turn: racks by name (no rack first), brokers by id."""
    by_rack: dict[str | None, list[UsableBroker]] = {}
    for b in sorted(brokers, key=lambda b: b.broker_id):
        by_rack.setdefault(b.rack, []).append(b)
    racks = sorted(by_rack, key=lambda r: (r is not None, r or ""))
    out: list[UsableBroker] = []
    depth = 0
    while len(out) < len(brokers):
        for rack in racks:
            members = by_rack[rack]
            if depth < len(members):
                out.append(members[depth])
        depth += 1
    return out


def place_replicas(
    brokers: Sequence[UsableBroker],
    *,
    partitions: int,
    replication_factor: int,
    start_partition: int = 0,
    rng: RandomSource | None = None,
    start: int | None = None,
    shift: int | None = None,
) -> list[tuple[int, ...]]:
    """The replicas of partitions ``start_partition .. start_partition + partitions - 1``.

    ``start`` and ``shift`` default to draws from ``rng``; one of the two ways must be given.
    """
    assert 1 <= replication_factor <= len(brokers), (replication_factor, len(brokers))
    assert len({b.broker_id for b in brokers}) == len(brokers), "duplicate broker ids"
    ordered = rack_alternated(brokers)
    n = len(ordered)
    rack_count = len({b.rack for b in ordered})
    if start is None or shift is None:
        assert rng is not None, "give rng, or both start and shift"
        start = rng.randrange(n) if start is None else start
        shift = rng.randrange(n) if shift is None else shift
    out: list[tuple[int, ...]] = []
    for p in range(start_partition, start_partition + partitions):
        # The follower shift grows by one each time the leaders have gone once round the brokers.
        replica_shift = shift + p // n
        first = (p + start) % n
        leader = ordered[first]
        chosen = [leader.broker_id]
        racks_used = {leader.rack}
        k = 0
        while len(chosen) < replication_factor:
            candidate = ordered[_follower_index(first, replica_shift * rack_count, k, n)]
            k += 1
            if candidate.broker_id in chosen and len(chosen) < n:
                continue
            if candidate.rack in racks_used and len(racks_used) < rack_count:
                continue
            # Once every rack holds a replica, any broker not yet chosen will do.
            chosen.append(candidate.broker_id)
            racks_used.add(candidate.rack)
        out.append(tuple(chosen))
    return out


def _follower_index(first: int, shift: int, k: int, n: int) -> int:
    """The k-th candidate after ``first``: never ``first`` itself (n > 1)."""
    if n == 1:
        return first
    return (first + 1 + (shift + k) % (n - 1)) % n


__all__ = ["RandomSource", "UsableBroker", "place_replicas", "rack_alternated"]
