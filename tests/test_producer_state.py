"""Tests of broker.producer_state: Kafka's idempotent-producer rules, snapshots, rebuild, expiry.

Goal: show that a produce is accepted, refused or recognised as a retry exactly where Kafka 3.x/4.x
does (epoch fencing, sequence 0 for a new epoch, last + 1 with the int32 wrap, five batches of
memory and no more, chaining within a request); that a duplicate is answered with the offsets
the original got; that the snapshot is Kafka's byte layout (checked against a layout packed here
by hand) and that damage to it is caught; and that state rebuilt from the log equals live state.
A Hypothesis test drives random sends, retries, gaps, epoch bumps and zombies through the
manager and through a plain reference model written independently below, and compares them
after every request.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.producer_state import (
    NUM_BATCHES_TO_RETAIN,
    PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    SEQUENCE_MAX,
    BatchMetadata,
    CorruptSnapshotError,
    ProducerStateEntry,
    ProducerStateManager,
    Verdict,
    decode_snapshot,
    decrement_sequence,
    encode_snapshot,
    increment_sequence,
    parse_snapshot_file_name,
    snapshot_file_name,
)
from protocol.error_codes import ErrorCode
from protocol.records import NewRecord, RecordBatchView, build_batch, build_end_txn_marker

OOO = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
FENCED_EPOCH = ErrorCode.INVALID_PRODUCER_EPOCH


# --- a tiny partition: check, assign offsets, record ---------------------------------------------


@dataclass(frozen=True)
class Appended:
    first_offset: int
    log_append_time_ms: int = -1


def make(pid: int, epoch: int, seq: int, count: int = 1, *, ts: int = 1_000, txn: bool = False) -> bytes:
    """A client's batch: base offset 0, as producers send them."""
    return build_batch(
        [NewRecord(value=b"v", timestamp=ts)] * count,
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, is_transactional=txn,
    )


@dataclass
class Partition:
    """Checks with the manager, then 'appends' as PartitionLog does (offsets assigned in a
    copy of the request), then records with the append's offsets."""

    psm: ProducerStateManager = field(default_factory=ProducerStateManager)
    log: list[bytes] = field(default_factory=list)
    leo: int = 0

    def produce(self, *raws: bytes, append_time_ms: int = -1) -> tuple[Verdict, tuple[int, int] | None]:
        views = [RecordBatchView(r) for r in raws]
        verdict = self.psm.check_batches(views)
        if not verdict.accepted:
            return verdict, None
        first = offset = self.leo
        for r in raws:
            buf = bytearray(r)
            v = RecordBatchView(buf)
            v.set_base_offset(offset)
            if append_time_ms >= 0:
                v.set_log_append_time(append_time_ms)
            self.log.append(bytes(buf))
            offset = v.next_offset
        # The views still show base offset 0: the offsets must come from the append.
        self.psm.record_batches(views, Appended(first, append_time_ms))
        self.leo = offset
        return verdict, (first, offset - 1)

    def marker(self, pid: int, epoch: int, *, commit: bool, coordinator_epoch: int = 0, ts: int = 5_000):
        raw = build_end_txn_marker(commit=commit, producer_id=pid, producer_epoch=epoch,
                                   coordinator_epoch=coordinator_epoch, timestamp_ms=ts, base_offset=self.leo)
        view = RecordBatchView(raw)
        done = self.psm.update(view, first_offset=self.leo, last_offset=self.leo)
        self.log.append(raw)
        self.leo += 1
        return done


def accepted(p: Partition, *raws: bytes) -> tuple[int, int]:
    verdict, offsets = p.produce(*raws)
    assert verdict.accepted, verdict
    assert offsets is not None
    return offsets


def refused(p: Partition, *raws: bytes) -> Verdict:
    before = (dict(p.psm.producers), p.leo)
    verdict, offsets = p.produce(*raws)
    assert not verdict.accepted and offsets is None
    assert (dict(p.psm.producers), p.leo) == before, "a refused request changed state"
    return verdict


def seqs(p: Partition, pid: int) -> list[tuple[int, int]]:
    e = p.psm.entry(pid)
    assert e is not None
    return [(b.first_seq, b.last_seq) for b in e.batches]


# --- the basic rules -----------------------------------------------------------------------------


def test_fresh_producer_at_sequence_zero_is_accepted_and_recorded() -> None:
    p = Partition()
    assert accepted(p, make(7, 0, 0, 3, ts=111)) == (0, 2)
    e = p.psm.entry(7)
    assert e is not None
    assert (e.producer_epoch, e.last_seq, e.last_data_offset, e.last_timestamp_ms) == (0, 2, 2, 111)
    assert e.batches == (BatchMetadata(last_seq=2, last_offset=2, offset_delta=2, timestamp_ms=111),)
    assert p.psm.map_end_offset == 3


def test_in_order_sequences_across_batches_of_several_records() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0, 2))
    accepted(p, make(1, 0, 2, 3))
    assert accepted(p, make(1, 0, 5, 1)) == (5, 5)
    assert seqs(p, 1) == [(0, 1), (2, 4), (5, 5)]


def test_interleaved_producers_keep_separate_sequences() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0))
    accepted(p, make(2, 0, 0))
    accepted(p, make(1, 0, 1))
    accepted(p, make(2, 0, 1))
    assert seqs(p, 1) == [(0, 0), (1, 1)] and seqs(p, 2) == [(0, 0), (1, 1)]
    assert p.psm.entry(1).batches[-1].last_offset == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("seq", [4, 5, 100, SEQUENCE_MAX])
def test_a_gap_is_out_of_order(seq: int) -> None:
    p = Partition()
    accepted(p, make(1, 0, 0, 2))
    accepted(p, make(1, 0, 2))
    v = refused(p, make(1, 0, seq))
    assert v.error == OOO and v.batch_index == 0 and v.duplicate is None


def test_an_old_sequence_that_is_no_retry_is_out_of_order() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0, 3))
    accepted(p, make(1, 0, 3, 3))
    assert refused(p, make(1, 0, 1, 1)).error == OOO  # inside a batch, but not a whole batch
    assert refused(p, make(1, 0, 3, 2)).error == OOO  # same first, different last


@pytest.mark.parametrize("which", range(NUM_BATCHES_TO_RETAIN))
def test_a_retry_of_each_of_the_last_five_batches_gets_its_original_offsets(which: int) -> None:
    p = Partition()
    accepted(p, make(9, 0, 0, 1))  # will be evicted
    originals = []
    seq = 1
    for n in range(NUM_BATCHES_TO_RETAIN):
        raw = make(9, 0, seq, n + 1, ts=2_000 + n)
        originals.append((raw, accepted(p, raw), 2_000 + n))
        seq += n + 1
    raw, (first, last), ts = originals[which]
    verdict, offsets = p.produce(raw)
    assert offsets is None, "a duplicate must not be appended again"
    assert verdict.error == ErrorCode.NONE and not verdict.accepted
    d = verdict.duplicate
    assert d is not None
    assert (d.first_offset, d.last_offset, d.log_append_time_ms, d.batch_index) == (first, last, ts, 0)
    assert p.leo == originals[-1][1][1] + 1


def test_a_retry_of_the_sixth_newest_batch_is_out_of_order_as_in_kafka() -> None:
    p = Partition()
    raws = [make(3, 0, i) for i in range(NUM_BATCHES_TO_RETAIN + 1)]
    for r in raws:
        accepted(p, r)
    assert refused(p, raws[0]).error == OOO
    assert p.psm.check(RecordBatchView(raws[1])).duplicate is not None


def test_an_epoch_bump_must_restart_at_sequence_zero() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0, 4))
    assert refused(p, make(1, 1, 4)).error == OOO
    assert refused(p, make(1, 1, 1)).error == OOO
    accepted(p, make(1, 1, 0, 2))
    e = p.psm.entry(1)
    assert e is not None and e.producer_epoch == 1 and seqs(p, 1) == [(0, 1)], "old epoch's batches forgotten"
    accepted(p, make(1, 3, 0))  # epochs may skip
    assert p.psm.entry(1).producer_epoch == 3  # type: ignore[union-attr]


def test_an_older_epoch_is_fenced_even_when_it_repeats_an_old_batch() -> None:
    p = Partition()
    old = make(1, 0, 0, 2)
    accepted(p, old)
    accepted(p, make(1, 1, 0))
    for raw in (old, make(1, 0, 2), make(1, 0, 0)):
        v = refused(p, raw)
        assert v.error == FENCED_EPOCH and v.duplicate is None


def test_an_unknown_producer_may_start_at_any_sequence_kip_360() -> None:
    p = Partition()
    accepted(p, make(5, 2, 1234, 2))
    assert seqs(p, 5) == [(1234, 1235)]
    assert refused(p, make(5, 2, 1237)).error == OOO  # from then on, the rules hold


def test_sequence_wraps_from_int32_max_to_zero() -> None:
    p = Partition()
    accepted(p, make(1, 0, SEQUENCE_MAX - 2, 3))
    assert seqs(p, 1) == [(SEQUENCE_MAX - 2, SEQUENCE_MAX)]
    assert refused(p, make(1, 0, 1)).error == OOO
    accepted(p, make(1, 0, 0, 2))
    # A batch spanning the wrap: first 2**31-2 is not reachable here, so start a producer there.
    spanning = make(2, 0, SEQUENCE_MAX - 1, 4)  # sequences MAX-1, MAX, 0, 1
    first_last = accepted(p, spanning)
    assert seqs(p, 2) == [(SEQUENCE_MAX - 1, 1)]
    d = p.psm.check(RecordBatchView(spanning)).duplicate
    assert d is not None and (d.first_offset, d.last_offset) == first_last
    accepted(p, make(2, 0, 2))
    assert increment_sequence(SEQUENCE_MAX, 1) == 0 and decrement_sequence(0, 1) == SEQUENCE_MAX
    assert increment_sequence(SEQUENCE_MAX - 1, 3) == 1 and decrement_sequence(1, 3) == SEQUENCE_MAX - 1


def test_batches_without_a_producer_id_are_not_examined() -> None:
    p = Partition()
    plain = build_batch([NewRecord(value=b"x")])
    accepted(p, plain)
    accepted(p, plain)
    assert dict(p.psm.producers) == {}
    assert p.psm.map_end_offset == 2


# --- several batches in one request --------------------------------------------------------------


def test_batches_in_one_request_chain() -> None:
    p = Partition()
    assert accepted(p, make(1, 0, 0, 2), make(1, 0, 2, 2), make(2, 0, 0)) == (0, 4)
    assert seqs(p, 1) == [(0, 1), (2, 3)]
    assert [b.last_offset for b in p.psm.entry(1).batches] == [1, 3]  # type: ignore[union-attr]
    assert p.psm.entry(2).batches[0].last_offset == 4  # type: ignore[union-attr]


def test_a_bad_batch_refuses_the_whole_request() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0))
    v = refused(p, make(1, 0, 1), make(1, 0, 3))
    assert v.error == OOO and v.batch_index == 1
    v = refused(p, make(1, 0, 1), make(1, 0, 1))  # the same batch twice: only committed state has dups
    assert v.error == OOO and v.batch_index == 1
    v = refused(p, make(1, 1, 0), make(1, 0, 1))  # an epoch bump earlier in the request fences
    assert v.error == FENCED_EPOCH and v.batch_index == 1
    v = refused(p, make(1, 1, 0), make(1, 2, 5))  # a second bump in the request needs seq 0 too
    assert v.error == OOO and v.batch_index == 1


def test_a_duplicate_anywhere_in_a_request_answers_for_the_whole_request() -> None:
    p = Partition()
    first = make(1, 0, 0)
    offsets = accepted(p, first)
    verdict, appended = p.produce(make(1, 0, 1), first)
    assert appended is None and verdict.duplicate is not None
    assert (verdict.duplicate.first_offset, verdict.duplicate.batch_index) == (offsets[0], 1)


def test_unknown_producer_chaining_within_a_request_follows_kafka() -> None:
    # Kafka checks the sequence only when the *committed* entry has an epoch, so an unknown
    # producer's second batch in the same request is not sequence-checked.
    p = Partition()
    accepted(p, make(4, 0, 10), make(4, 0, 50))
    assert seqs(p, 4) == [(10, 10), (50, 50)]


# --- transactions --------------------------------------------------------------------------------


def test_transactions_open_and_close_and_bound_the_lso() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0, txn=True))
    accepted(p, make(2, 0, 0))
    accepted(p, make(3, 0, 0, txn=True))
    assert p.psm.ongoing_txns == {0: 1, 2: 3}
    assert p.psm.first_undecided_offset() == 0
    assert refused(p, make(1, 0, 1)).error == ErrorCode.INVALID_TXN_STATE
    accepted(p, make(1, 0, 1, txn=True))  # more of the same transaction
    done = p.marker(1, 0, commit=False, coordinator_epoch=4)
    assert done is not None
    assert (done.producer_id, done.first_offset, done.last_offset, done.is_aborted) == (1, 0, 4, True)
    assert done.last_stable_offset == 2  # producer 3's transaction is still open
    e = p.psm.entry(1)
    assert e is not None and e.current_txn_first_offset is None and e.coordinator_epoch == 4
    assert seqs(p, 1) == [(0, 0), (1, 1)], "a marker of the same epoch keeps the batches"
    assert p.psm.first_undecided_offset() == 2
    assert p.psm.last_stable_offset(high_watermark=6, log_start_offset=0) == 0  # marker not replicated
    p.psm.on_high_watermark_updated(5)
    assert p.psm.last_stable_offset(high_watermark=6, log_start_offset=0) == 2
    done = p.marker(3, 0, commit=True)  # at offset 5
    assert done is not None and done.last_stable_offset == 6 and not done.is_aborted
    p.psm.on_high_watermark_updated(5)
    assert p.psm.last_stable_offset(high_watermark=5, log_start_offset=0) == 2  # marker not below the HW
    assert p.psm.last_stable_offset(high_watermark=5, log_start_offset=3) == 3  # raised to the log start
    p.psm.on_high_watermark_updated(6)
    assert p.psm.first_unstable_offset() is None
    assert p.psm.last_stable_offset(high_watermark=6, log_start_offset=0) == 6
    accepted(p, make(1, 0, 2))  # non-transactional again after the marker
    assert p.marker(2, 0, commit=True) is None  # a marker with no open transaction completes nothing


def test_end_txn_marker_checks() -> None:
    p = Partition()
    accepted(p, make(1, 3, 0, txn=True))
    p.marker(1, 3, commit=True, coordinator_epoch=7)
    check = p.psm.check_end_txn_marker
    assert check(producer_id=1, producer_epoch=2, coordinator_epoch=7).error == FENCED_EPOCH
    assert check(producer_id=1, producer_epoch=3, coordinator_epoch=7).accepted
    assert check(producer_id=1, producer_epoch=3, coordinator_epoch=6).error == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    # TV2: the marker epoch must exceed the producer's, but a retry of the last marker passes.
    assert check(producer_id=1, producer_epoch=3, coordinator_epoch=7, transaction_version=2).accepted
    accepted(p, make(1, 3, 1, txn=True))
    assert check(producer_id=1, producer_epoch=3, coordinator_epoch=7, transaction_version=2).error == FENCED_EPOCH
    assert check(producer_id=1, producer_epoch=4, coordinator_epoch=7, transaction_version=2).accepted


# --- snapshots -----------------------------------------------------------------------------------


def hand_packed_snapshot(entries: list[tuple[int, int, int, int, int, int, int, int]]) -> bytes:
    """Kafka's layout written out field by field, independently of the module."""
    body = struct.pack(">i", len(entries))
    for pid, epoch, last_seq, last_offset, delta, ts, coord, txn in entries:
        body += struct.pack(">q", pid) + struct.pack(">h", epoch) + struct.pack(">i", last_seq)
        body += struct.pack(">q", last_offset) + struct.pack(">i", delta) + struct.pack(">q", ts)
        body += struct.pack(">i", coord) + struct.pack(">q", txn)
    return struct.pack(">h", 1) + struct.pack(">I", crc32c.crc32c(body)) + body


def busy_partition() -> Partition:
    p = Partition()
    for i in range(7):
        accepted(p, make(10, 2, i * 2, 2, ts=100 + i))
    accepted(p, make(11, 0, 0, 3, ts=300, txn=True))
    accepted(p, make(12, 0, 0, ts=400, txn=True))
    p.marker(12, 0, commit=True, coordinator_epoch=3, ts=450)
    return p


def test_snapshot_bytes_are_kafkas_layout() -> None:
    p = busy_partition()
    expected = hand_packed_snapshot([
        (10, 2, 13, 13, 1, 106, -1, -1),
        (11, 0, 2, 16, 2, 300, -1, 14),
        (12, 0, 0, 17, 0, 450, 3, -1),
    ])
    assert p.psm.snapshot_bytes() == expected
    assert encode_snapshot([]) == hand_packed_snapshot([])
    assert len(encode_snapshot([])) == 10


def test_snapshot_round_trip_keeps_the_last_batch_of_each_producer() -> None:
    p = busy_partition()
    q = ProducerStateManager()
    q.load_snapshot(p.psm.snapshot_bytes(), snapshot_offset=p.leo, now_ms=1_000)
    assert q.map_end_offset == p.leo == 19
    assert set(q.producers) == {10, 11, 12}
    for pid, e in p.psm.producers.items():
        loaded = q.producers[pid]
        assert (loaded.producer_epoch, loaded.coordinator_epoch, loaded.last_timestamp_ms,
                loaded.current_txn_first_offset, loaded.last_seq, loaded.last_data_offset) == (
                e.producer_epoch, e.coordinator_epoch, e.last_timestamp_ms, e.current_txn_first_offset,
                e.last_seq, e.last_data_offset)
        assert len(loaded.batches) == 1 and loaded.batches[0].first_seq == e.batches[-1].first_seq
    assert q.ongoing_txns == {14: 11}
    # Only the last batch is remembered: its retry is a duplicate, the one before is not.
    assert q.check(RecordBatchView(make(10, 2, 12, 2))).duplicate is not None
    assert q.check(RecordBatchView(make(10, 2, 10, 2))).error == OOO
    assert q.check(RecordBatchView(make(10, 2, 14))).accepted
    assert decode_snapshot(encode_snapshot(decode_snapshot(p.psm.snapshot_bytes()))) == decode_snapshot(
        p.psm.snapshot_bytes())


def test_snapshot_entry_without_a_batch_round_trips() -> None:
    e = ProducerStateEntry(producer_id=5, producer_epoch=1, coordinator_epoch=2, last_timestamp_ms=9)
    data = encode_snapshot([e])
    assert data == hand_packed_snapshot([(5, 1, -1, -1, 0, 9, 2, -1)])
    assert decode_snapshot(data) == [e]


def test_every_flipped_bit_of_a_snapshot_is_caught() -> None:
    data = busy_partition().psm.snapshot_bytes()
    for i in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(CorruptSnapshotError):
                decode_snapshot(bytes(bad))


def test_short_long_and_odd_snapshots_are_corrupt() -> None:
    data = busy_partition().psm.snapshot_bytes()
    for cut in range(len(data)):
        with pytest.raises(CorruptSnapshotError):
            decode_snapshot(data[:cut])
    # A CRC-valid file whose count disagrees with its length, or of another version.
    body = struct.pack(">i", 5)
    with pytest.raises(CorruptSnapshotError, match="should be"):
        decode_snapshot(struct.pack(">hI", 1, crc32c.crc32c(body)) + body)
    body = struct.pack(">i", -1)
    with pytest.raises(CorruptSnapshotError, match="negative"):
        decode_snapshot(struct.pack(">hI", 1, crc32c.crc32c(body)) + body)
    body = struct.pack(">i", 0)
    with pytest.raises(CorruptSnapshotError, match="version"):
        decode_snapshot(struct.pack(">hI", 2, crc32c.crc32c(body)) + body)


def test_a_corrupt_snapshot_leaves_the_state_alone() -> None:
    p = busy_partition()
    before = dict(p.psm.producers)
    with pytest.raises(CorruptSnapshotError):
        p.psm.load_snapshot(b"\x00\x01garbage", snapshot_offset=0, now_ms=0)
    assert dict(p.psm.producers) == before and p.psm.map_end_offset == 19


def test_snapshot_file_names() -> None:
    assert snapshot_file_name(0) == "00000000000000000000.snapshot"
    assert snapshot_file_name(1234) == "00000000000000001234.snapshot"
    assert parse_snapshot_file_name("00000000000000001234.snapshot") == 1234
    for name in ("00000000000000001234.log", "1234.snapshot", "00000000000000001234.snapshot.tmp",
                 "00000000000000001234.snapshot.deleted"):
        assert parse_snapshot_file_name(name) is None
    with pytest.raises(ValueError):
        snapshot_file_name(-1)


# --- rebuild -------------------------------------------------------------------------------------


def replayed(log: list[bytes], start: int = 0, psm: ProducerStateManager | None = None) -> ProducerStateManager:
    psm = psm or ProducerStateManager(map_end_offset=start)
    for raw in log:
        v = RecordBatchView(raw)
        if v.base_offset >= start:
            psm.replay(v)
    return psm


def test_replay_of_the_log_rebuilds_the_live_state() -> None:
    p = busy_partition()
    accepted(p, make(10, 3, 0))  # epoch bump
    accepted(p, make(13, 0, SEQUENCE_MAX, 2))
    q = replayed(p.log)
    assert dict(q.producers) == dict(p.psm.producers)
    assert q.ongoing_txns == p.psm.ongoing_txns and q.map_end_offset == p.psm.map_end_offset
    assert q.first_unstable_offset() == p.psm.first_unstable_offset()


def test_snapshot_plus_replay_after_it_rebuilds_the_live_state() -> None:
    p = busy_partition()
    snap_at, snap = p.leo, p.psm.snapshot_bytes()
    accepted(p, make(10, 2, 14, ts=500))
    accepted(p, make(11, 0, 3, txn=True, ts=510))
    p.marker(11, 0, commit=False, ts=520)
    accepted(p, make(14, 0, 0, ts=530))
    q = ProducerStateManager()
    q.load_snapshot(snap, snapshot_offset=snap_at, now_ms=600)
    replayed(p.log, snap_at, q)
    assert set(q.producers) == set(p.psm.producers)
    for pid, live in p.psm.producers.items():
        got = q.producers[pid]
        assert (got.producer_epoch, got.last_seq, got.last_data_offset, got.last_timestamp_ms,
                got.coordinator_epoch, got.current_txn_first_offset) == (
                live.producer_epoch, live.last_seq, live.last_data_offset, live.last_timestamp_ms,
                live.coordinator_epoch, live.current_txn_first_offset)
        # The window holds what the snapshot kept plus what was replayed: a suffix of live's.
        # (Timestamps aside: a snapshot gives its one batch the entry's last timestamp, which
        # for producer 12 is its marker's, as in Kafka.)
        def ranges(bs: tuple[BatchMetadata, ...]) -> list[tuple[int, int, int, int]]:
            return [(b.first_seq, b.last_seq, b.first_offset, b.last_offset) for b in bs]
        assert ranges(live.batches)[-len(got.batches):] == ranges(got.batches)
    assert q.ongoing_txns == p.psm.ongoing_txns == {}
    assert q.map_end_offset == p.leo


def test_replay_skips_an_unreadable_marker_and_takes_lower_epochs() -> None:
    psm = ProducerStateManager()
    bad = build_batch([NewRecord(key=b"\x00", value=b"")], producer_id=1, producer_epoch=0,
                      is_transactional=True, is_control=True)  # a control key of one byte
    assert psm.replay(RecordBatchView(bad)) is None
    assert psm.map_end_offset == 1 and psm.entry(1) is None
    raw = bytearray(make(1, 5, 0))
    RecordBatchView(raw).set_base_offset(1)
    psm.replay(RecordBatchView(raw))
    raw = bytearray(make(1, 4, 9))  # a follower takes what the leader wrote, even this
    RecordBatchView(raw).set_base_offset(2)
    psm.replay(RecordBatchView(raw))
    e = psm.entry(1)
    assert e is not None and e.producer_epoch == 4 and e.last_seq == 9


def test_log_append_time_is_what_the_state_records() -> None:
    p = Partition()
    raw = make(1, 0, 0, ts=10)
    _, offsets = p.produce(raw, append_time_ms=99_999)
    assert offsets == (0, 0)
    assert p.psm.entry(1).last_timestamp_ms == 99_999  # type: ignore[union-attr]
    d = p.psm.check(RecordBatchView(raw)).duplicate
    assert d is not None and d.log_append_time_ms == 99_999
    assert dict(replayed(p.log).producers) == dict(p.psm.producers)


# --- truncation ----------------------------------------------------------------------------------


def test_truncate_to_drops_what_lies_at_and_above_the_offset() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0))  # 0
    accepted(p, make(2, 0, 0, txn=True))  # 1
    accepted(p, make(1, 0, 1, 2))  # 2-3
    accepted(p, make(3, 0, 0))  # 4
    accepted(p, make(4, 0, 0, txn=True))  # 5
    p.marker(2, 0, commit=True)  # 6: closes producer 2's transaction from 1
    p.psm.truncate_to(4)
    assert seqs(p, 1) == [(0, 0), (1, 2)]
    assert p.psm.entry(3) is None and p.psm.entry(4) is None
    assert p.psm.ongoing_txns == {1: 2}, "the transaction whose marker was cut is open again"
    assert p.psm.entry(2).current_txn_first_offset == 1  # type: ignore[union-attr]
    assert p.psm.map_end_offset == 4
    p.psm.truncate_to(2)
    assert seqs(p, 1) == [(0, 0)]
    p.psm.truncate_to(1)
    assert set(p.psm.producers) == {1} and p.psm.ongoing_txns == {}
    p.psm.truncate_fully_and_start_at(50)
    assert dict(p.psm.producers) == {} and p.psm.map_end_offset == 50


def test_truncate_then_continue_matches_a_partition_that_never_had_the_tail() -> None:
    a, b = Partition(), Partition()
    for part in (a, b):
        for i in range(4):
            accepted(part, make(1, 0, i))
    accepted(a, make(1, 0, 4))
    a.psm.truncate_to(4)
    a.leo = 4
    a.log = a.log[:4]
    assert dict(a.psm.producers) == dict(b.psm.producers)
    assert accepted(a, make(1, 0, 4, 2)) == accepted(b, make(1, 0, 4, 2))


# --- expiry --------------------------------------------------------------------------------------


def test_producers_expire_after_the_configured_idle_time() -> None:
    p = Partition(ProducerStateManager(producer_id_expiration_ms=1_000))
    accepted(p, make(1, 0, 0, ts=10_000))
    accepted(p, make(2, 0, 0, ts=10_500))
    accepted(p, make(3, 0, 0, ts=5_000, txn=True))  # open transactions never expire
    assert p.psm.remove_expired(10_999) == []
    assert p.psm.remove_expired(11_000) == [1]
    assert set(p.psm.producers) == {2, 3}
    assert p.psm.remove_expired(11_500) == [2]
    assert p.psm.remove_expired(10**12) == []
    # An expired producer is unknown again: it may continue at any sequence.
    accepted(p, make(1, 0, 1))
    assert PRODUCER_ID_EXPIRATION_MS_DEFAULT == 86_400_000


def test_loading_a_snapshot_drops_producers_already_expired() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0, ts=0))
    accepted(p, make(2, 0, 0, ts=50_000_000))
    q = ProducerStateManager()
    q.load_snapshot(p.psm.snapshot_bytes(), snapshot_offset=2, now_ms=PRODUCER_ID_EXPIRATION_MS_DEFAULT)
    assert set(q.producers) == {2}


def test_log_start_movement_keeps_producers() -> None:
    p = Partition()
    accepted(p, make(1, 0, 0))
    accepted(p, make(1, 0, 1))
    p.psm.on_log_start_offset_incremented(2)
    assert p.psm.entry(1) is not None  # KAFKA-7190: state outlives its batches
    assert refused(p, make(1, 0, 5)).error == OOO
    p.psm.on_log_start_offset_incremented(10)
    assert p.psm.map_end_offset == 10


# --- against a reference model -------------------------------------------------------------------
#
# The model keeps every batch a producer appended in its current epoch (not just five) as
# (first_seq, last_seq, first_offset, last_offset), computes sequences modulo 2**31, and copies
# itself wholesale to evaluate a multi-batch request. Kafka's rules, restated:
#   dup      same epoch as committed, (first, last) equal to one of the committed last five
#   fenced   epoch below the epoch so far in this request
#   new      epoch above: sequence must be 0 unless the producer had no epoch so far
#   same     sequence = last + 1 mod 2**31, unless the producer was unknown before the request


MOD = 2**31


@dataclass
class RefProducer:
    epoch: int
    appended: list[tuple[int, int, int, int]]


def ref_request(model: dict[int, RefProducer], batches: list[tuple[int, int, int, int]], leo: int):
    work = copy.deepcopy(model)
    offset = leo
    for index, (pid, epoch, seq, count) in enumerate(batches):
        last = (seq + count - 1) % MOD
        committed = model.get(pid)
        if committed is not None and committed.epoch == epoch:
            for f, lseq, fo, lo in committed.appended[-5:]:
                if (f, lseq) == (seq, last):
                    return ("dup", fo, lo, index)
        p = work.get(pid)
        if p is not None and epoch < p.epoch:
            return ("error", FENCED_EPOCH, index)
        if p is not None and epoch > p.epoch and seq != 0:
            return ("error", OOO, index)
        if (p is not None and epoch == p.epoch and committed is not None
                and seq != (p.appended[-1][1] + 1) % MOD):
            return ("error", OOO, index)
        if p is None or epoch != p.epoch:
            p = work[pid] = RefProducer(epoch, [])
        p.appended.append((seq, last, offset, offset + count - 1))
        offset += count
    model.clear()
    model.update(work)
    return ("ok", leo, offset - 1)


@dataclass
class Client:
    epoch: int = 0
    next_seq: int = 0
    sent: list[tuple[int, int, int]] = field(default_factory=list)  # (epoch, seq, count)


op_strategy = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 2), st.integers(1, 3)),
    st.tuples(st.just("retry"), st.integers(1, 2), st.integers(1, 7)),
    st.tuples(st.just("gap"), st.integers(1, 2), st.integers(1, 3)),
    st.tuples(st.just("bump"), st.integers(1, 2), st.just(0)),
    st.tuples(st.just("zombie"), st.integers(1, 2), st.integers(1, 2)),
    st.tuples(st.just("badbump"), st.integers(1, 2), st.integers(1, 5)),
    st.tuples(st.just("multi"), st.integers(1, 2), st.integers(2, 3)),
    st.tuples(st.just("mixed"), st.integers(1, 2), st.integers(1, 7)),
)


@settings(max_examples=300, deadline=None)
@given(
    starts=st.tuples(st.sampled_from([0, 5, SEQUENCE_MAX - 3]), st.sampled_from([0, SEQUENCE_MAX])),
    ops=st.lists(op_strategy, min_size=1, max_size=40),
)
def test_matches_the_reference_model(starts: tuple[int, int], ops: list[tuple[str, int, int]]) -> None:
    p = Partition()
    model: dict[int, RefProducer] = {}
    clients = {1: Client(next_seq=starts[0]), 2: Client(next_seq=starts[1])}
    for step, (kind, pid, n) in enumerate(ops):
        c = clients[pid]
        batches: list[tuple[int, int, int, int]] = []
        if kind == "send":
            batches = [(pid, c.epoch, c.next_seq, n)]
        elif kind == "retry" and c.sent:
            e, s, k = c.sent[-min(n, len(c.sent))]
            batches = [(pid, e, s, k)]
        elif kind == "gap":
            batches = [(pid, c.epoch, (c.next_seq + n) % MOD, 1)]
        elif kind == "bump":
            c.epoch, c.next_seq = c.epoch + 1, 0
            batches = [(pid, c.epoch, 0, 1)]
        elif kind == "zombie" and c.epoch > 0:
            batches = [(pid, c.epoch - 1, c.next_seq, n)]
        elif kind == "badbump":
            batches = [(pid, c.epoch + 1, n, 1)]
        elif kind == "multi":
            s = c.next_seq
            for k in range(n):
                batches.append((pid, c.epoch, s, k + 1))
                s = (s + k + 1) % MOD
        elif kind == "mixed" and c.sent:  # a new batch, then a retry, in one request
            e, s, k = c.sent[-min(n, len(c.sent))]
            batches = [(pid, c.epoch, c.next_seq, 1), (pid, e, s, k)]
        if not batches:
            continue
        expected = ref_request(model, batches, p.leo)
        raws = [make(b_pid, e, s, k, ts=step) for b_pid, e, s, k in batches]
        verdict, offsets = p.produce(*raws)
        if expected[0] == "ok":
            assert verdict.accepted and offsets == (expected[1], expected[2]), (expected, verdict)
            for b_pid, e, s, k in batches:
                cl = clients[b_pid]
                cl.sent.append((e, s, k))
                cl.epoch, cl.next_seq = e, (s + k) % MOD
        elif expected[0] == "dup":
            d = verdict.duplicate
            assert offsets is None and d is not None, (expected, verdict)
            assert (d.first_offset, d.last_offset, d.batch_index) == expected[1:], (expected, d)
        else:
            assert offsets is None and (verdict.error, verdict.batch_index) == expected[1:], (expected, verdict)
        # The state agrees with the model: epoch and the last five batches of each producer.
        assert set(p.psm.producers) == set(model)
        for m_pid, ref in model.items():
            entry = p.psm.producers[m_pid]
            assert entry.producer_epoch == ref.epoch
            assert [(b.first_seq, b.last_seq, b.first_offset, b.last_offset) for b in entry.batches] == ref.appended[-5:]
    # And the log rebuilds it, directly and through a snapshot of it.
    assert dict(replayed(p.log).producers) == dict(p.psm.producers)
    q = ProducerStateManager()
    q.load_snapshot(p.psm.snapshot_bytes(), snapshot_offset=p.leo, now_ms=0)
    assert {pid: (e.producer_epoch, e.last_seq, e.last_data_offset) for pid, e in q.producers.items()} == {
        pid: (e.producer_epoch, e.last_seq, e.last_data_offset) for pid, e in p.psm.producers.items()}
