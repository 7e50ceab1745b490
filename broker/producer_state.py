"""Per-partition state of idempotent and transactional producers: sans-IO, Kafka's rules.

What it owns. For one partition, a map from producer id to a ``ProducerStateEntry``: the
producer's epoch, the metadata of its last ``NUM_BATCHES_TO_RETAIN`` (5) batches (first and last
sequence, last offset, offset delta, timestamp), the coordinator epoch of the last transaction
marker, the first offset of its ongoing transaction and the timestamp of its last write. Beside
it, the partition's ongoing transactions (first offset -> producer id), the completed ones whose
markers may not be replicated yet, and ``map_end_offset``: the offset after the last batch the
state covers (what a snapshot file is named after).

What it never does: I/O, reading a clock, randomness. The broker reads and writes snapshot files
through its file system; this module gives it bytes (``snapshot_bytes``/``load_snapshot``) and
names (``snapshot_file_name``). Time comes in as ``now_ms`` where expiry needs it.

Theory of operation (the produce path, Kafka's ``UnifiedLog.analyzeAndValidateProducerState``)::

    verdict = psm.check_batches(views)        # before appending; changes nothing
    if verdict.duplicate: answer NONE with the ORIGINAL offsets; append nothing
    elif verdict.error:   answer the error; append nothing
    else:
        info = log.append_as_leader(...)
        psm.record_batches(views, info)       # after a successful append, with its offsets

``check_batches`` and ``record_batches`` must run with no ``await`` between them and the append
(or under a per-partition lock), otherwise two requests could both be checked against the same
state. Rules of ``check_batches`` (Kafka 3.x/4.x, ``ProducerAppendInfo`` with origin CLIENT), per
batch with a producer id (>= 0), in order; the first failure rejects the whole request:

1. A batch whose epoch equals the producer's *committed* epoch and whose (first, last) sequence
   equals one of its retained batches is a duplicate: the whole request is answered with that
   batch's original offsets and timestamp (even if an earlier batch in the request was new,
   as Kafka does). Duplicates are looked up in the committed state only, not in earlier batches
   of the same request.
2. Epoch below the producer's epoch -> ``INVALID_PRODUCER_EPOCH`` (Kafka >= 2.7 answers this,
   not ``PRODUCER_FENCED``, on the produce path, for transactional batches too; ``PRODUCER_FENCED``
   comes from the transaction coordinator only).
3. Epoch above the producer's epoch: the sequence must be 0, else
   ``OUT_OF_ORDER_SEQUENCE_NUMBER``; a producer the partition has no state for may start at any
   sequence. That is KIP-360 (Kafka >= 2.5): the broker keeps no memory of why a producer is
   unknown (its state expired, or retention/DeleteRecords removed its batches; since
   KAFKA-7190 state outlives its batches and goes only by expiry), so it accepts rather than
   answering ``UNKNOWN_PRODUCER_ID``; the client-side log-start-offset reasoning of older
   versions is gone, and Kafka's produce path no longer raises ``UNKNOWN_PRODUCER_ID``.
4. Same epoch: the sequence must follow the last one (``last + 1``, and 0 after 2**31 - 1),
   else ``OUT_OF_ORDER_SEQUENCE_NUMBER``; a retry of a batch older than the last five is
   therefore out of order, as in Kafka. Exception, Kafka's: when the producer had no state
   before this request, later batches of the request in the same epoch are not checked either.
5. A non-transactional batch while the producer has an ongoing transaction ->
   ``INVALID_TXN_STATE``.

Batches of one request chain: each is checked against the state the earlier ones would leave.
A batch's sequence span is its offset span (``last_sequence = base_sequence + last_offset_delta``
modulo 2**31), as Kafka assumes.

Restart (Kafka's ``rebuildProducerState``/``truncateAndReload``): delete snapshot files named
above the log end offset or at or below the log start offset; ``load_snapshot`` the newest one
left (on ``CorruptSnapshotError`` delete it and try the next older; with none, start empty with
``map_end_offset`` = log start offset); then ``replay`` every batch from ``map_end_offset`` to
the log end, and write a snapshot at the log end. A snapshot keeps only each producer's *last*
batch, so after a restart duplicates of older batches are detected only if replay re-reads them;
Kafka has the same limit. Replay validates nothing (Kafka's REPLICATION origin), never fails.

Transactions: data batches open a transaction (``current_txn_first_offset``) and markers close
it, in ``update``/``replay``; ``first_unstable_offset``/``last_stable_offset`` give the LSO.
Checking WriteTxnMarkers appends is ``check_end_txn_marker``. TODO(transactions): partition
verification (KIP-890: a transactional batch that opens a transaction must have been verified
with the coordinator, else ``INVALID_TXN_STATE``; TV2 producers must start at sequence 0) is not
done: every transactional batch may open a transaction.

Bounds: the map holds one entry per producer that wrote to the partition within
``producer_id_expiration_ms`` (``remove_expired``); each entry holds at most five batches.
Single-threaded; nothing here blocks.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import crc32c

from protocol.error_codes import ErrorCode
from protocol.records import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    BatchError,
    EndTxnMarker,
    RecordBatchView,
    parse_end_txn_marker,
)

__all__ = [
    "NUM_BATCHES_TO_RETAIN",
    "PRODUCER_ID_EXPIRATION_MS_DEFAULT",
    "SEQUENCE_MAX",
    "SNAPSHOT_SUFFIX",
    "SNAPSHOT_VERSION",
    "Appended",
    "BatchMetadata",
    "CompletedTxn",
    "CorruptSnapshotError",
    "Duplicate",
    "ProducerStateEntry",
    "ProducerStateManager",
    "TxnMetadata",
    "Verdict",
    "decode_snapshot",
    "decrement_sequence",
    "encode_snapshot",
    "increment_sequence",
    "parse_snapshot_file_name",
    "snapshot_file_name",
]

NUM_BATCHES_TO_RETAIN = 5
"""Batches remembered per producer for duplicate detection (Kafka's, and the producer's
``max.in.flight.requests.per.connection`` bound for idempotence)."""

PRODUCER_ID_EXPIRATION_MS_DEFAULT = 86_400_000
"""``producer.id.expiration.ms``: state of a producer idle this long (and with no ongoing
transaction) is dropped."""

SEQUENCE_MAX = 2**31 - 1
"""Sequences are int32 and wrap from here to 0."""

NO_COORDINATOR_EPOCH = -1

# --- sequences -----------------------------------------------------------------------------------


def increment_sequence(sequence: int, increment: int) -> int:
    """``sequence + increment`` in the int32 sequence space, wrapping past 2**31 - 1 to 0."""
    if sequence > SEQUENCE_MAX - increment:
        return increment - (SEQUENCE_MAX - sequence) - 1
    return sequence + increment


def decrement_sequence(sequence: int, decrement: int) -> int:
    """``sequence - decrement`` in the int32 sequence space, wrapping below 0 to 2**31 - 1."""
    if sequence < decrement:
        return SEQUENCE_MAX - (decrement - sequence) + 1
    return sequence - decrement


def _in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == SEQUENCE_MAX)


def _last_sequence(batch: RecordBatchView) -> int:
    base = batch.base_sequence
    if base == NO_SEQUENCE:
        return NO_SEQUENCE
    return increment_sequence(base, batch.last_offset_delta)


# --- values --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchMetadata:
    """One appended batch of a producer. Its sequence span equals its offset span."""

    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp_ms: int

    @property
    def first_seq(self) -> int:
        return decrement_sequence(self.last_seq, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerStateEntry:
    """What a partition knows of one producer. ``batches`` run oldest to newest, all of
    ``producer_epoch``; empty for a producer known only by a marker or a batch-less snapshot."""

    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    coordinator_epoch: int = NO_COORDINATOR_EPOCH
    last_timestamp_ms: int = NO_TIMESTAMP
    current_txn_first_offset: int | None = None
    batches: tuple[BatchMetadata, ...] = ()

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def first_seq(self) -> int:
        return self.batches[0].first_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    @property
    def last_offset_delta(self) -> int:
        return self.batches[-1].offset_delta if self.batches else 0

    def find_duplicate(self, *, producer_epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        """The retained batch with exactly this epoch and sequence range, if any."""
        if producer_epoch != self.producer_epoch:
            return None
        for b in self.batches:
            if b.last_seq == last_seq and b.first_seq == first_seq:
                return b
        return None

    def with_data_batch(
        self, *, producer_epoch: int, last_seq: int, first_offset: int, last_offset: int,
        timestamp_ms: int, is_transactional: bool,
    ) -> ProducerStateEntry:
        """The entry after appending a data batch (no validation). A new epoch forgets the
        batches of the old one; a transactional batch opens a transaction if none is open."""
        kept = self.batches if producer_epoch == self.producer_epoch else ()
        meta = BatchMetadata(
            last_seq=last_seq, last_offset=last_offset, offset_delta=last_offset - first_offset,
            timestamp_ms=timestamp_ms,
        )
        txn = self.current_txn_first_offset
        if txn is None and is_transactional:
            txn = first_offset
        return ProducerStateEntry(
            producer_id=self.producer_id,
            producer_epoch=producer_epoch,
            coordinator_epoch=self.coordinator_epoch,
            last_timestamp_ms=timestamp_ms,
            current_txn_first_offset=txn,
            batches=(*kept, meta)[-NUM_BATCHES_TO_RETAIN:],
        )

    def with_end_txn(self, *, producer_epoch: int, coordinator_epoch: int, timestamp_ms: int) -> ProducerStateEntry:
        """The entry after a COMMIT or ABORT marker: no transaction open, the marker's epochs."""
        kept = self.batches if producer_epoch == self.producer_epoch else ()
        return ProducerStateEntry(
            producer_id=self.producer_id,
            producer_epoch=producer_epoch,
            coordinator_epoch=coordinator_epoch,
            last_timestamp_ms=timestamp_ms,
            current_txn_first_offset=None,
            batches=kept,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    """A retried batch already in the log. Answer NONE with ``base_offset=first_offset`` and, as
    Kafka does, ``log_append_time_ms`` set to the original batch's recorded timestamp (its max
    timestamp, or its append time on a LogAppendTime topic), plus the log's own log start offset.
    ``batch_index`` is the request's batch that matched."""

    first_offset: int
    last_offset: int
    log_append_time_ms: int
    batch_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What ``check_batches`` decided. Exactly one of: accepted (``error`` NONE, no
    ``duplicate``: append, then ``record_batches``); a duplicate (append nothing, answer with
    its offsets); an error (append nothing; ``batch_index`` is the offending batch)."""

    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    batch_index: int = -1
    duplicate: Duplicate | None = None

    @property
    def accepted(self) -> bool:
        return self.error == ErrorCode.NONE and self.duplicate is None


ACCEPTED = Verdict()


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnMetadata:
    """A transaction on this partition: ongoing (``last_offset`` None) or completed with its
    marker at ``last_offset``."""

    producer_id: int
    first_offset: int
    last_offset: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedTxn:
    """A transaction closed by a marker appended at ``last_offset``. ``last_stable_offset`` is
    the LSO right after it (the first offset of the earliest transaction still open, else
    ``last_offset + 1``): what Kafka writes beside an aborted transaction in the txn index."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool
    last_stable_offset: int


class Appended(Protocol):
    """Where an append put its batches; ``storage.log.AppendInfo`` is one."""

    @property
    def first_offset(self) -> int: ...

    @property
    def log_append_time_ms(self) -> int: ...


class CorruptSnapshotError(ValueError):
    """A snapshot file that cannot be trusted: too short, an unknown version, a CRC mismatch,
    or entries that do not fill it exactly. The caller deletes it and rebuilds from the log
    (an older snapshot, or the log start)."""


# --- the manager ---------------------------------------------------------------------------------


class ProducerStateManager:
    """See the module docstring. One per partition; single-threaded."""

    __slots__ = ("producer_id_expiration_ms", "map_end_offset", "_producers", "_ongoing", "_unreplicated")

    def __init__(
        self, *, producer_id_expiration_ms: int = PRODUCER_ID_EXPIRATION_MS_DEFAULT, map_end_offset: int = 0
    ) -> None:
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.map_end_offset = map_end_offset
        self._producers: dict[int, ProducerStateEntry] = {}
        self._ongoing: dict[int, int] = {}  # first offset -> producer id
        self._unreplicated: dict[int, TxnMetadata] = {}  # first offset -> completed txn

    # --- queries ----------------------------------------------------------------------------

    @property
    def producers(self) -> Mapping[int, ProducerStateEntry]:
        """Every known producer (read-only view), e.g. for DescribeProducers."""
        return MappingProxyType(self._producers)

    def entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self._producers.get(producer_id)

    @property
    def ongoing_txns(self) -> Mapping[int, int]:
        """Open transactions: first offset -> producer id."""
        return MappingProxyType(self._ongoing)

    def first_undecided_offset(self) -> int | None:
        """The first offset of the earliest open transaction, None when none is open."""
        return min(self._ongoing) if self._ongoing else None

    def first_unstable_offset(self) -> int | None:
        """The earliest first offset of an open transaction or of a completed one whose marker
        is not yet below the high watermark (see ``on_high_watermark_updated``)."""
        candidates = [*self._ongoing, *self._unreplicated]
        return min(candidates) if candidates else None

    def last_stable_offset(self, *, high_watermark: int, log_start_offset: int) -> int:
        """The LSO, Kafka's way: the first unstable offset (raised to the log start offset) when
        it is below the high watermark, else the high watermark."""
        first = self.first_unstable_offset()
        if first is None:
            return high_watermark
        return min(max(first, log_start_offset), high_watermark)

    # --- the produce path -------------------------------------------------------------------

    def check(self, batch: RecordBatchView) -> Verdict:
        """``check_batches`` of one batch."""
        return self.check_batches((batch,))

    def check_batches(self, batches: Iterable[RecordBatchView]) -> Verdict:
        """Validate a produce request's batches for one partition; see the module docstring.

        Reads headers only (validate the batches' CRCs first to refuse corrupt ones as Kafka
        does, before this). Changes nothing. Batches without a producer id pass unexamined.
        """
        pending: dict[int, ProducerStateEntry] = {}
        for index, batch in enumerate(batches):
            pid = batch.producer_id
            if pid <= NO_PRODUCER_ID:
                continue
            epoch = batch.producer_epoch
            first_seq = batch.base_sequence
            last_seq = _last_sequence(batch)
            committed = self._producers.get(pid)
            if committed is not None:
                dup = committed.find_duplicate(producer_epoch=epoch, first_seq=first_seq, last_seq=last_seq)
                if dup is not None:
                    return Verdict(duplicate=Duplicate(
                        first_offset=dup.first_offset, last_offset=dup.last_offset,
                        log_append_time_ms=dup.timestamp_ms, batch_index=index,
                    ))
            if batch.is_control:
                return Verdict(error=ErrorCode.INVALID_RECORD, batch_index=index,
                               message="a produce request may not carry control batches")
            current = pending.get(pid) or committed or ProducerStateEntry(producer_id=pid)
            committed_epoch = committed.producer_epoch if committed is not None else NO_PRODUCER_EPOCH
            refusal = _check_data_batch(current, committed_epoch=committed_epoch, epoch=epoch, first_seq=first_seq)
            if refusal is not None:
                return Verdict(error=refusal[0], message=f"producer {pid}: {refusal[1]}", batch_index=index)
            if current.current_txn_first_offset is not None and not batch.is_transactional:
                return Verdict(
                    error=ErrorCode.INVALID_TXN_STATE, batch_index=index,
                    message=f"producer {pid} sent a non-transactional batch during its ongoing transaction",
                )
            # TODO(transactions): a transactional batch that opens a transaction must have been
            # verified with the coordinator (KIP-890), else INVALID_TXN_STATE.
            # Offsets are not assigned yet; the client's base offset stands in for chaining.
            pending[pid] = current.with_data_batch(
                producer_epoch=epoch, last_seq=last_seq, first_offset=batch.base_offset,
                last_offset=batch.base_offset + batch.last_offset_delta, timestamp_ms=batch.max_timestamp,
                is_transactional=batch.is_transactional,
            )
        return ACCEPTED

    def record_batches(self, batches: Iterable[RecordBatchView], appended: Appended) -> list[CompletedTxn]:
        """After ``log.append_as_leader`` took ``batches`` (which ``check_batches`` accepted):
        record them with the offsets the append assigned, consecutively from
        ``appended.first_offset``, and its append time when the topic uses LogAppendTime.
        Returns the transactions the batches closed (markers only)."""
        offset = appended.first_offset
        append_time = appended.log_append_time_ms
        completed: list[CompletedTxn] = []
        for batch in batches:
            last = offset + batch.last_offset_delta
            txn = self.update(
                batch, first_offset=offset, last_offset=last,
                timestamp_ms=None if append_time == NO_TIMESTAMP else append_time,
            )
            if txn is not None:
                completed.append(txn)
            offset = last + 1
        return completed

    def update(
        self, batch: RecordBatchView, *, first_offset: int, last_offset: int, timestamp_ms: int | None = None
    ) -> CompletedTxn | None:
        """Record one appended batch at ``first_offset..last_offset`` without validating it.

        ``timestamp_ms`` None means the batch's max timestamp (for a marker, its record's
        timestamp). Batches without a producer id only move ``map_end_offset``. A control batch
        must hold a readable marker (``BatchError`` otherwise: we wrote it ourselves); an empty
        one (compacted away) changes nothing. Returns the transaction a marker closed, if any.
        """
        assert last_offset - first_offset == batch.last_offset_delta, "offsets disagree with the batch"
        self.map_end_offset = last_offset + 1
        if batch.producer_id <= NO_PRODUCER_ID:
            return None
        if batch.is_control:
            found = _read_marker(batch)
            if found is None:
                return None
            marker, record_ts = found
            # A marker batch holds one record: its offset is the transaction's last.
            return self._end_txn(batch, marker, last_offset=first_offset,
                                 timestamp_ms=record_ts if timestamp_ms is None else timestamp_ms)
        self._append_data(batch, first_offset=first_offset, last_offset=last_offset,
                          timestamp_ms=batch.max_timestamp if timestamp_ms is None else timestamp_ms)
        return None

    def replay(self, batch: RecordBatchView) -> CompletedTxn | None:
        """Rebuild state from a batch read back from the log (restart, or a follower's append),
        at its own offsets, validating nothing and never failing: an unreadable marker is
        skipped. Call in log order, from ``map_end_offset``."""
        try:
            return self.update(batch, first_offset=batch.base_offset, last_offset=batch.last_offset)
        except BatchError:
            return None

    def advance_map_end_offset(self, offset: int) -> None:
        """Note an append that touched no producer state (Kafka moves its map end every append)."""
        self.map_end_offset = offset

    def _append_data(self, batch: RecordBatchView, *, first_offset: int, last_offset: int, timestamp_ms: int) -> None:
        pid = batch.producer_id
        before = self._producers.get(pid) or ProducerStateEntry(producer_id=pid)
        after = before.with_data_batch(
            producer_epoch=batch.producer_epoch, last_seq=_last_sequence(batch), first_offset=first_offset,
            last_offset=last_offset, timestamp_ms=timestamp_ms, is_transactional=batch.is_transactional,
        )
        self._producers[pid] = after
        if before.current_txn_first_offset is None and after.current_txn_first_offset is not None:
            self._ongoing[after.current_txn_first_offset] = pid

    def _end_txn(
        self, batch: RecordBatchView, marker: EndTxnMarker, *, last_offset: int, timestamp_ms: int
    ) -> CompletedTxn | None:
        pid = batch.producer_id
        before = self._producers.get(pid) or ProducerStateEntry(producer_id=pid)
        self._producers[pid] = before.with_end_txn(
            producer_epoch=batch.producer_epoch, coordinator_epoch=marker.coordinator_epoch,
            timestamp_ms=timestamp_ms,
        )
        first = before.current_txn_first_offset
        if first is None:
            return None  # a marker for an empty transaction: nothing to complete
        self._ongoing.pop(first, None)
        lso = min(self._ongoing) if self._ongoing else last_offset + 1
        self._unreplicated[first] = TxnMetadata(producer_id=pid, first_offset=first, last_offset=last_offset)
        return CompletedTxn(producer_id=pid, first_offset=first, last_offset=last_offset,
                            is_aborted=not marker.commit, last_stable_offset=lso)

    def check_end_txn_marker(
        self, *, producer_id: int, producer_epoch: int, coordinator_epoch: int, transaction_version: int = 0
    ) -> Verdict:
        """Validate a COMMIT/ABORT marker before a WriteTxnMarkers append (Kafka's
        ``appendEndTxnMarker`` checks). Up to TV1 an epoch below the producer's is
        ``INVALID_PRODUCER_EPOCH``; from TV2 (the coordinator bumps the epoch for each marker)
        an epoch at or below it is, except a retry of the last marker (equal epoch, no open
        transaction), which is accepted. A coordinator epoch below the recorded one is
        ``TRANSACTION_COORDINATOR_FENCED``. TODO(transactions): wire and test with the
        coordinator."""
        entry = self._producers.get(producer_id) or ProducerStateEntry(producer_id=producer_id)
        current = entry.producer_epoch
        stale = producer_epoch <= current if transaction_version >= 2 else producer_epoch < current
        retry = transaction_version >= 2 and producer_epoch == current and entry.current_txn_first_offset is None
        if stale and not retry:
            return Verdict(error=ErrorCode.INVALID_PRODUCER_EPOCH,
                           message=f"marker epoch {producer_epoch} of producer {producer_id} is stale (current {current})")
        if entry.coordinator_epoch > coordinator_epoch:
            return Verdict(error=ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                           message=f"coordinator epoch {coordinator_epoch} is older than {entry.coordinator_epoch}")
        return ACCEPTED

    # --- offsets moving -----------------------------------------------------------------------

    def on_high_watermark_updated(self, high_watermark: int) -> None:
        """Forget completed transactions whose marker is now below the high watermark."""
        self._drop_unreplicated_below(high_watermark)

    def on_log_start_offset_incremented(self, log_start_offset: int) -> None:
        """Retention or DeleteRecords moved the log start. Producers are kept (they go only by
        expiry, KAFKA-7190); completed transactions wholly below it are forgotten."""
        self._drop_unreplicated_below(log_start_offset)
        self.map_end_offset = max(self.map_end_offset, log_start_offset)

    def _drop_unreplicated_below(self, offset: int) -> None:
        for first, txn in list(self._unreplicated.items()):
            if txn.last_offset is not None and txn.last_offset < offset:
                del self._unreplicated[first]

    def remove_expired(self, now_ms: int) -> list[int]:
        """Drop producers idle for ``producer_id_expiration_ms`` or more (by the timestamp of
        their last write) that have no open transaction; return their ids. Kafka runs this
        every ``producer.id.expiration.check.interval.ms`` (600000 by default)."""
        expired = [pid for pid, e in self._producers.items() if self._is_expired(e, now_ms)]
        for pid in expired:
            del self._producers[pid]
        return expired

    def _is_expired(self, entry: ProducerStateEntry, now_ms: int) -> bool:
        return (entry.current_txn_first_offset is None
                and now_ms - entry.last_timestamp_ms >= self.producer_id_expiration_ms)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Forget everything: the log was emptied and restarts at ``offset``."""
        self._producers.clear()
        self._ongoing.clear()
        self._unreplicated.clear()
        self.map_end_offset = offset

    def truncate_to(self, offset: int) -> None:
        """Drop what the state knows of offsets at and above ``offset`` (follower truncation;
        pass the log end after ``PartitionLog.truncate_to``, a batch boundary).

        Exact only for what the entries remember; the approximations, all on the side of
        forgetting rather than inventing:

        * a producer all of whose retained batches are dropped is forgotten (its state before
          them is not kept), so its next batch is taken at any sequence (KIP-360 rule) and
          retries of its older batches are not recognised;
        * an open transaction that started at or above ``offset`` is dropped; a completed one
          whose marker is dropped is reopened, but the marker's epoch and coordinator epoch
          stay, and a transaction whose marker was already below the high watermark is not
          known and so not reopened;
        * ``last_timestamp_ms`` and the epoch stay as they were.

        Kafka instead reloads the newest snapshot at or below ``offset`` and replays the log
        from there (``truncateAndReload``); a caller with snapshots at segment bases can do the
        same with ``load_snapshot`` and ``replay``, which is exact.
        """
        for pid, e in list(self._producers.items()):
            kept = tuple(b for b in e.batches if b.last_offset < offset)
            txn = e.current_txn_first_offset
            if txn is not None and txn >= offset:
                txn = None
            if e.batches and not kept:
                del self._producers[pid]
                continue
            if kept != e.batches or txn != e.current_txn_first_offset:
                self._producers[pid] = ProducerStateEntry(
                    producer_id=pid, producer_epoch=e.producer_epoch, coordinator_epoch=e.coordinator_epoch,
                    last_timestamp_ms=e.last_timestamp_ms, current_txn_first_offset=txn, batches=kept,
                )
        self._ongoing = {first: pid for first, pid in self._ongoing.items() if first < offset}
        for first, t in list(self._unreplicated.items()):
            if t.last_offset is not None and t.last_offset < offset:
                continue
            del self._unreplicated[first]
            owner = self._producers.get(t.producer_id)
            if first < offset and owner is not None and owner.current_txn_first_offset is None:
                self._producers[t.producer_id] = ProducerStateEntry(
                    producer_id=owner.producer_id, producer_epoch=owner.producer_epoch,
                    coordinator_epoch=owner.coordinator_epoch, last_timestamp_ms=owner.last_timestamp_ms,
                    current_txn_first_offset=first, batches=owner.batches,
                )
                self._ongoing[first] = t.producer_id
        self.map_end_offset = min(self.map_end_offset, offset)

    # --- snapshots ----------------------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        """The state as a Kafka producer snapshot file, to be written (temp, fsync, rename) as
        ``snapshot_file_name(self.map_end_offset)``. Kafka writes one when a segment rolls (at
        the new segment's base offset) and at clean shutdown."""
        return encode_snapshot(self._producers.values())

    def load_snapshot(self, data: bytes | bytearray | memoryview, *, snapshot_offset: int, now_ms: int) -> None:
        """Replace the whole state by a snapshot's (file named ``snapshot_offset``), dropping
        producers already expired at ``now_ms``. Raises ``CorruptSnapshotError`` and changes
        nothing if the bytes are bad. Follow with ``replay`` of the log from ``snapshot_offset``."""
        entries = decode_snapshot(data)
        self.truncate_fully_and_start_at(snapshot_offset)
        for e in entries:
            if self._is_expired(e, now_ms):
                continue
            self._producers[e.producer_id] = e
            if e.current_txn_first_offset is not None:
                self._ongoing[e.current_txn_first_offset] = e.producer_id


def _check_data_batch(
    current: ProducerStateEntry, *, committed_epoch: int, epoch: int, first_seq: int
) -> tuple[ErrorCode, str] | None:
    """Kafka's epoch and sequence rules for a client's data batch; None when it may go in."""
    if epoch < current.producer_epoch:
        return ErrorCode.INVALID_PRODUCER_EPOCH, f"epoch {epoch} is older than the current epoch {current.producer_epoch}"
    if epoch != current.producer_epoch:
        if first_seq != 0 and current.producer_epoch != NO_PRODUCER_EPOCH:
            return (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"new epoch {epoch} must start at sequence 0, not {first_seq} (epoch was {current.producer_epoch})")
        return None
    if committed_epoch == NO_PRODUCER_EPOCH or _in_sequence(current.last_seq, first_seq):
        return None
    return (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
            f"sequence {first_seq} does not follow the last sequence {current.last_seq} in epoch {epoch}")


def _read_marker(batch: RecordBatchView) -> tuple[EndTxnMarker, int] | None:
    """The marker in a control batch and its record's timestamp; None for an empty batch."""
    for record in batch.records():
        return parse_end_txn_marker(record), record.timestamp
    return None


# --- the snapshot file format --------------------------------------------------------------------
#
# Kafka's producer snapshot, version 1, big-endian:
#
#     version            int16    1
#     crc                uint32   CRC32C of every byte after this field
#     producer_entries   int32 count, then per entry:
#         producer_id                int64
#         epoch                      int16
#         last_sequence              int32   -1 when the entry has no batch
#         last_offset                int64   -1 when the entry has no batch
#         offset_delta               int32   last batch's last offset - first offset (0 if none)
#         timestamp                  int64   the entry's last timestamp
#         coordinator_epoch          int32
#         current_txn_first_offset   int64   -1 when no transaction is open
#
# Only each producer's last batch is kept; on load it gets the entry's timestamp.

SNAPSHOT_VERSION = 1
SNAPSHOT_SUFFIX = ".snapshot"
_SNAPSHOT_HEADER = struct.Struct(">hIi")
_SNAPSHOT_CRC_START = 6
_SNAPSHOT_ENTRY = struct.Struct(">qhiqiqiq")
_SNAPSHOT_NAME = re.compile(r"^(\d{20})\.snapshot$")


def encode_snapshot(entries: Iterable[ProducerStateEntry]) -> bytes:
    """Kafka's producer snapshot of ``entries`` (written in producer id order)."""
    ordered = sorted(entries, key=lambda e: e.producer_id)
    out = bytearray(_SNAPSHOT_HEADER.size + _SNAPSHOT_ENTRY.size * len(ordered))
    _SNAPSHOT_HEADER.pack_into(out, 0, SNAPSHOT_VERSION, 0, len(ordered))
    pos = _SNAPSHOT_HEADER.size
    for e in ordered:
        _SNAPSHOT_ENTRY.pack_into(
            out, pos, e.producer_id, e.producer_epoch, e.last_seq, e.last_data_offset, e.last_offset_delta,
            e.last_timestamp_ms, e.coordinator_epoch,
            -1 if e.current_txn_first_offset is None else e.current_txn_first_offset,
        )
        pos += _SNAPSHOT_ENTRY.size
    struct.pack_into(">I", out, 2, crc32c.crc32c(memoryview(out)[_SNAPSHOT_CRC_START:]))
    return bytes(out)


def decode_snapshot(data: bytes | bytearray | memoryview) -> list[ProducerStateEntry]:
    """The entries of a producer snapshot; ``CorruptSnapshotError`` for anything Kafka would
    refuse, and for bytes after the last entry (which Kafka ignores and never writes)."""
    buf = memoryview(data).cast("B")
    if len(buf) < _SNAPSHOT_HEADER.size:
        raise CorruptSnapshotError(f"producer snapshot of {len(buf)} bytes is shorter than its header")
    version, crc, count = _SNAPSHOT_HEADER.unpack_from(buf, 0)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"producer snapshot has unknown version {version}")
    actual = crc32c.crc32c(buf[_SNAPSHOT_CRC_START:])
    if actual != crc:
        raise CorruptSnapshotError(f"producer snapshot CRC32C is {actual:#010x} but the file says {crc:#010x}")
    if count < 0:
        raise CorruptSnapshotError(f"producer snapshot has a negative entry count {count}")
    expected = _SNAPSHOT_HEADER.size + count * _SNAPSHOT_ENTRY.size
    if len(buf) != expected:
        raise CorruptSnapshotError(f"producer snapshot of {count} entries should be {expected} bytes, not {len(buf)}")
    entries: list[ProducerStateEntry] = []
    for pos in range(_SNAPSHOT_HEADER.size, expected, _SNAPSHOT_ENTRY.size):
        pid, epoch, last_seq, last_offset, delta, ts, coord, txn = _SNAPSHOT_ENTRY.unpack_from(buf, pos)
        batches: tuple[BatchMetadata, ...] = ()
        if last_offset >= 0:
            batches = (BatchMetadata(last_seq=last_seq, last_offset=last_offset, offset_delta=delta, timestamp_ms=ts),)
        entries.append(ProducerStateEntry(
            producer_id=pid, producer_epoch=epoch, coordinator_epoch=coord, last_timestamp_ms=ts,
            current_txn_first_offset=txn if txn >= 0 else None, batches=batches,
        ))
    return entries


def snapshot_file_name(offset: int) -> str:
    """``00000000000000001234.snapshot``: a snapshot of the state up to (excluding) ``offset``."""
    if offset < 0:
        raise ValueError(f"negative snapshot offset {offset}")
    return f"{offset:020d}{SNAPSHOT_SUFFIX}"


def parse_snapshot_file_name(name: str) -> int | None:
    """The offset a snapshot file is named after; None for any other name."""
    m = _SNAPSHOT_NAME.match(name)
    return int(m.group(1)) if m else None
