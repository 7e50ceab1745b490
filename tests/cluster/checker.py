"""The checker for fault tests: what was acknowledged against what consumers read afterwards.

Every produced value is unique and says who sent it and in which order: ``<producer>:<seq>``
(seq counts up per producer, across partitions). From the producers we keep what was
*acknowledged* (partition, offset, value); from each consumer, everything it read from the
beginning of every partition. The verdict lists:

* ``lost``: an acknowledged value that a consumer did not read;
* ``misplaced``: an acknowledged value read at another offset than the one acknowledged;
* ``duplicated``: a value stored at more than one offset (an idempotent producer must never
  cause that, retries and leader changes included);
* ``reordered``: within a partition, two values of one producer whose offsets disagree with the
  order they were sent in;
* ``diverged``: an offset that two consumers read with different values.

Unacknowledged values may or may not be present (an ack can be lost after the write); that is
not an error, but it is counted. An acknowledgement may come without an offset: librdkafka's
idempotent producer acknowledges a batch whose own answer was lost once a later batch of the
same partition is acknowledged (sequences prove the earlier one was written), with no offset to
report. Such a value must be in its partition, at any offset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Entry = tuple[int, int, bytes]  # partition, offset, value
Acked = tuple[int, int | None, bytes]  # the offset is None when the producer was not told it


def value_for(producer: str, seq: int) -> bytes:
    return f"{producer}:{seq}".encode()


def parse_value(value: bytes) -> tuple[str, int]:
    producer, _, seq = value.decode().rpartition(":")
    return producer, int(seq)


@dataclass
class Verdict:
    acknowledged: int = 0
    read: int = 0
    unacknowledged_present: int = 0
    lost: list[Acked] = field(default_factory=list)
    misplaced: list[tuple[Acked, int]] = field(default_factory=list)
    duplicated: list[tuple[bytes, list[tuple[int, int]]]] = field(default_factory=list)
    reordered: list[tuple[int, str, int, int]] = field(default_factory=list)
    diverged: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.misplaced or self.duplicated or self.reordered or self.diverged)

    def summary(self) -> str:
        def head(items: list) -> str:  # type: ignore[type-arg]
            return f"{len(items)} {items[:5]!r}" if items else "0"
        return (f"acknowledged {self.acknowledged}, read {self.read}, unacknowledged but present "
                f"{self.unacknowledged_present}; lost {head(self.lost)}; misplaced {head(self.misplaced)}; "
                f"duplicated {head(self.duplicated)}; reordered {head(self.reordered)}; "
                f"diverged {head(self.diverged)}")


def check(acked: Iterable[Acked], reads: Mapping[str, Iterable[Entry]]) -> Verdict:
    verdict = Verdict()
    acked = list(acked)
    verdict.acknowledged = len(acked)
    per_consumer: dict[str, dict[tuple[int, int], bytes]] = {}
    for consumer, entries in reads.items():
        at: dict[tuple[int, int], bytes] = {}
        for partition, offset, value in entries:
            previous = at.setdefault((partition, offset), value)
            if previous != value:  # one consumer reading one offset twice, differently
                verdict.diverged.append((partition, offset, previous, value))
        per_consumer[consumer] = at
    # Agreement between consumers, offset by offset.
    merged: dict[tuple[int, int], bytes] = {}
    for at in per_consumer.values():
        for key, value in at.items():
            first = merged.setdefault(key, value)
            if first != value:
                verdict.diverged.append((key[0], key[1], first, value))
    verdict.read = len(merged)
    # Each value at exactly one offset.
    where: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    for key, value in merged.items():
        where[value].append(key)
    verdict.duplicated = [(v, sorted(keys)) for v, keys in where.items() if len(keys) > 1]
    # Acknowledged values: present for every consumer, at the acknowledged offset (or, for an
    # acknowledgement without one, anywhere in the acknowledged partition).
    acked_values = set()
    read_by = {consumer: {(key[0], value) for key, value in at.items()} for consumer, at in per_consumer.items()}
    for partition, offset, value in acked:
        acked_values.add(value)
        for consumer, at in per_consumer.items():
            if offset is None:
                if (partition, value) in read_by[consumer]:
                    continue
            elif at.get((partition, offset)) == value:
                continue
            if offset is not None and value in where:
                verdict.misplaced.append(((partition, offset, value), where[value][0][1]))
            else:
                verdict.lost.append((partition, offset, value))
            break
    verdict.unacknowledged_present = sum(1 for v in where if v not in acked_values)
    # Per partition and producer, offsets follow the order of sending.
    by_partition: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for (partition, offset), value in merged.items():
        by_partition[partition].append((offset, value))
    for partition, entries in by_partition.items():
        last: dict[str, tuple[int, int]] = {}
        for offset, value in sorted(entries):
            producer, seq = parse_value(value)
            if producer in last and last[producer][0] >= seq:
                verdict.reordered.append((partition, producer, last[producer][1], offset))
            last[producer] = (seq, offset)
    return verdict
