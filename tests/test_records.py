"""Tests of protocol.records: the v2 batch header view, validation, rewrites and iteration.

Goal: show that the view reads exactly the bytes Kafka's layout puts at each position, that
validation catches every damaged byte the CRC covers (and only refuses what it should), that
in-place rewrites leave a batch valid, and that malformed input of any shape raises
``ProtocolError`` and nothing else. Batches are packed here by hand (struct + crc32c) or by
kafka-python, so a mistake in our own builder cannot hide a mistake in the reader.
"""

from __future__ import annotations

import struct

import crc32c
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from protocol.compression import compress
from protocol.errors import ProtocolError
from protocol.records import (
    BATCH_HEADER_BYTES,
    BATCH_LENGTH_MIN,
    BATCH_OVERHEAD_BYTES,
    CRC_START,
    BatchError,
    BatchErrorKind,
    Compression,
    ControlRecordType,
    NewRecord,
    Record,
    RecordBatchView,
    TimestampType,
    build_batch,
    build_end_txn_marker,
    iter_batches,
    parse_control_record_type,
    parse_end_txn_marker,
)

_HEADER = struct.Struct(">qiibIhiqqqhii")


def pack_batch(
    *,
    base_offset: int = 0,
    partition_leader_epoch: int = 0,
    magic: int = 2,
    attributes: int = 0,
    last_offset_delta: int = 0,
    base_timestamp: int = 0,
    max_timestamp: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    record_count: int = 0,
    body: bytes = b"",
    crc: int | None = None,
    batch_length: int | None = None,
) -> bytearray:
    """A batch packed field by field, independently of the code under test."""
    length = BATCH_HEADER_BYTES - BATCH_OVERHEAD_BYTES + len(body) if batch_length is None else batch_length
    out = bytearray(
        _HEADER.pack(
            base_offset,
            length,
            partition_leader_epoch,
            magic,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        )
    )
    out += body
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])) if crc is None else crc)
    return out


# One record: length 7 | attributes 0 | ts delta 0 | offset delta 0 | key len 1 'k' | value null | 0 headers
ONE_RECORD = bytes([7 * 2, 0, 0, 0, 1 * 2, ord("k"), 1, 0])


def one_record_batch(**kw: int) -> bytearray:
    return pack_batch(record_count=1, last_offset_delta=0, body=ONE_RECORD, **kw)


def test_layout_constants() -> None:
    assert BATCH_HEADER_BYTES == 61
    assert BATCH_OVERHEAD_BYTES == 12
    assert BATCH_LENGTH_MIN == 49
    assert CRC_START == 21


def test_header_fields_read_from_their_positions() -> None:
    raw = pack_batch(
        base_offset=0x0102030405060708,
        partition_leader_epoch=0x11121314,
        attributes=0x3 | 0x08 | 0x10 | 0x40,
        last_offset_delta=4,
        base_timestamp=1_700_000_000_000,
        max_timestamp=1_700_000_000_999,
        producer_id=0x2122232425262728,
        producer_epoch=0x3132,
        base_sequence=0x41424344,
        record_count=3,
        body=b"xyz" * 10,
    )
    v = RecordBatchView(raw)
    assert v.base_offset == 0x0102030405060708
    assert v.batch_length == 49 + 30
    assert v.size_bytes == 61 + 30
    assert v.partition_leader_epoch == 0x11121314
    assert v.magic == 2
    assert v.crc == crc32c.crc32c(bytes(raw[21:]))
    assert v.attributes == 0x5B
    assert v.last_offset_delta == 4
    assert v.last_offset == 0x0102030405060708 + 4
    assert v.next_offset == 0x0102030405060708 + 5
    assert v.base_timestamp == 1_700_000_000_000
    assert v.max_timestamp == 1_700_000_000_999
    assert v.producer_id == 0x2122232425262728
    assert v.producer_epoch == 0x3132
    assert v.base_sequence == 0x41424344
    assert v.record_count == 3
    assert v.compression is Compression.LZ4
    assert v.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert v.is_transactional
    assert not v.is_control
    assert v.has_delete_horizon
    assert v.delete_horizon_ms == 1_700_000_000_000
    assert v.has_producer_id
    assert bytes(v.records_bytes()) == b"xyz" * 10
    assert bytes(v.raw()) == bytes(raw)


def test_flags_clear_and_negative_fields() -> None:
    v = RecordBatchView(pack_batch(attributes=0x20, partition_leader_epoch=-1, base_offset=-5))
    assert v.compression is Compression.NONE
    assert v.timestamp_type is TimestampType.CREATE_TIME
    assert not v.is_transactional
    assert v.is_control
    assert not v.has_delete_horizon
    assert v.delete_horizon_ms is None
    assert not v.has_producer_id
    assert v.partition_leader_epoch == -1
    assert v.base_offset == -5


@pytest.mark.parametrize("codec", list(Compression))
def test_every_codec_id_is_read(codec: Compression) -> None:
    assert RecordBatchView(pack_batch(attributes=codec | 0x10)).compression is codec


def test_view_at_an_offset_in_a_larger_buffer_of_each_buffer_type() -> None:
    batch = one_record_batch(base_offset=77)
    whole = b"\xee" * 13 + bytes(batch) + b"\xee" * 5
    for buf in (whole, bytearray(whole), memoryview(whole), memoryview(bytearray(whole))):
        v = RecordBatchView(buf, 13)
        assert v.base_offset == 77
        assert v.position == 13
        v.validate()
        assert bytes(v.raw()) == bytes(batch)


def test_view_does_not_copy_and_sees_later_writes() -> None:
    raw = one_record_batch()
    v = RecordBatchView(raw)
    struct.pack_into(">q", raw, 0, 12345)
    assert v.base_offset == 12345
    assert v.buffer.obj is raw


def test_valid_batches_pass() -> None:
    RecordBatchView(one_record_batch()).validate()
    RecordBatchView(one_record_batch()).validate(from_client=True)
    # An empty batch (left by compaction) is legal in the log.
    RecordBatchView(pack_batch(record_count=0, last_offset_delta=9)).validate()


def test_every_bit_flip_in_the_crc_covered_region_is_detected() -> None:
    raw = one_record_batch(producer_id=7, producer_epoch=1, base_sequence=0)
    for byte in range(CRC_START, len(raw)):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[byte] ^= 1 << bit
            with pytest.raises(BatchError) as exc:
                RecordBatchView(damaged).validate()
            assert exc.value.kind is BatchErrorKind.CORRUPT, (byte, bit)


def test_every_bit_flip_in_the_stored_crc_is_detected() -> None:
    raw = one_record_batch()
    for byte in range(17, 21):
        for bit in range(8):
            damaged = bytearray(raw)
            damaged[byte] ^= 1 << bit
            with pytest.raises(BatchError, match="CRC") as exc:
                RecordBatchView(damaged).validate()
            assert exc.value.kind is BatchErrorKind.CORRUPT


def test_fields_outside_the_crc_do_not_affect_it() -> None:
    raw = one_record_batch()
    for byte in range(0, 8):  # base_offset
        damaged = bytearray(raw)
        damaged[byte] ^= 0xFF
        RecordBatchView(damaged).validate()
    for byte in range(12, 16):  # partition_leader_epoch
        damaged = bytearray(raw)
        damaged[byte] ^= 0xFF
        RecordBatchView(damaged).validate()


@pytest.mark.parametrize("magic", [0, 1])
def test_legacy_magic_is_refused_distinctly(magic: int) -> None:
    with pytest.raises(BatchError, match="not supported") as exc:
        RecordBatchView(one_record_batch(magic=magic)).validate()
    assert exc.value.kind is BatchErrorKind.OLD_MAGIC


@pytest.mark.parametrize("magic", [0, 1])
def test_short_legacy_message_is_refused_as_old_magic(magic: int) -> None:
    # A v0/v1 message is often smaller than a v2 header: offset, size, crc, magic, ...
    legacy = struct.pack(">qiIbb", 0, 20, 0, magic, 0) + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x02hi"
    with pytest.raises(BatchError) as exc:
        RecordBatchView(legacy)
    assert exc.value.kind is BatchErrorKind.OLD_MAGIC
    with pytest.raises(BatchError) as exc:
        list(iter_batches(legacy))
    assert exc.value.kind is BatchErrorKind.OLD_MAGIC


@pytest.mark.parametrize("magic", [3, 127, -1])
def test_unknown_magic_is_corrupt(magic: int) -> None:
    with pytest.raises(BatchError) as exc:
        RecordBatchView(one_record_batch(magic=magic)).validate()
    assert exc.value.kind is BatchErrorKind.CORRUPT


@pytest.mark.parametrize("length", [-1, 0, 48, -(2**31)])
def test_batch_length_below_minimum_is_corrupt(length: int) -> None:
    raw = one_record_batch()
    struct.pack_into(">i", raw, 8, length)
    with pytest.raises(BatchError) as exc:
        RecordBatchView(raw).validate()
    assert exc.value.kind is BatchErrorKind.CORRUPT
    with pytest.raises(BatchError) as exc:
        RecordBatchView(raw).raw()
    assert exc.value.kind is BatchErrorKind.CORRUPT
    with pytest.raises(BatchError):
        list(iter_batches(raw))


def test_batch_length_beyond_the_buffer_is_corrupt() -> None:
    raw = one_record_batch()
    struct.pack_into(">i", raw, 8, 2**31 - 1)
    with pytest.raises(BatchError, match="truncated") as exc:
        RecordBatchView(raw).validate()
    assert exc.value.kind is BatchErrorKind.CORRUPT
    assert not RecordBatchView(raw).is_complete


def test_truncation_at_every_byte() -> None:
    raw = bytes(one_record_batch())
    for cut in range(len(raw)):
        short = raw[:cut]
        with pytest.raises(BatchError) as exc:
            RecordBatchView(short).validate()
        assert exc.value.kind is BatchErrorKind.CORRUPT
        it = iter_batches(short)
        assert list(it) == []
        assert it.position == 0
        assert it.trailing_bytes == cut


def test_unknown_codec_is_invalid() -> None:
    for codec in (5, 6, 7):
        v = RecordBatchView(pack_batch(attributes=codec))
        with pytest.raises(BatchError) as exc:
            v.validate()
        assert exc.value.kind is BatchErrorKind.INVALID
        with pytest.raises(BatchError):
            _ = v.compression


@pytest.mark.parametrize(
    ("count", "last_delta", "body"),
    [
        (-1, 0, b""),  # negative count
        (1, -1, ONE_RECORD),  # negative offset delta range
        (3, 1, ONE_RECORD * 3),  # more records than offsets
        (2, 1, ONE_RECORD[:-1]),  # uncompressed: too few bytes for two records
        (2**31 - 1, 2**31 - 1, ONE_RECORD),  # a huge count, refused without looping
    ],
)
def test_impossible_counts_are_invalid(count: int, last_delta: int, body: bytes) -> None:
    with pytest.raises(BatchError) as exc:
        RecordBatchView(pack_batch(record_count=count, last_offset_delta=last_delta, body=body)).validate()
    assert exc.value.kind is BatchErrorKind.INVALID


def test_compacted_shapes_pass_lenient_but_not_client_validation() -> None:
    # Compaction keeps the offset range but drops records.
    gappy = pack_batch(record_count=1, last_offset_delta=5, body=ONE_RECORD)
    RecordBatchView(gappy).validate()
    with pytest.raises(BatchError, match="inconsistent") as exc:
        RecordBatchView(gappy).validate(from_client=True)
    assert exc.value.kind is BatchErrorKind.INVALID
    empty = pack_batch(record_count=0, last_offset_delta=0)
    RecordBatchView(empty).validate()
    with pytest.raises(BatchError):
        RecordBatchView(empty).validate(from_client=True)


def test_client_validation_refuses_control_batches_and_missing_sequences() -> None:
    with pytest.raises(BatchError, match="control") as exc:
        RecordBatchView(one_record_batch(attributes=0x20)).validate(from_client=True)
    assert exc.value.kind is BatchErrorKind.INVALID
    with pytest.raises(BatchError, match="sequence"):
        RecordBatchView(one_record_batch(producer_id=5, producer_epoch=0, base_sequence=-1)).validate(
            from_client=True
        )
    RecordBatchView(one_record_batch(producer_id=5, producer_epoch=0, base_sequence=0)).validate(
        from_client=True
    )


# --- in-place rewrites ---------------------------------------------------------------------------


def test_rewrite_base_offset_and_leader_epoch_keep_crc() -> None:
    raw = one_record_batch()
    before_crc = bytes(raw[17:21])
    v = RecordBatchView(raw)
    v.set_base_offset(2**40 + 3)
    v.set_partition_leader_epoch(17)
    assert v.base_offset == 2**40 + 3
    assert v.partition_leader_epoch == 17
    assert bytes(raw[17:21]) == before_crc
    v.validate()
    assert RecordBatchView(bytes(raw)).base_offset == 2**40 + 3


def test_rewrite_through_a_writable_memoryview_at_an_offset() -> None:
    backing = bytearray(b"\x00" * 9) + one_record_batch()
    v = RecordBatchView(memoryview(backing), 9)
    v.set_base_offset(99)
    v.set_log_append_time(1_234)
    assert struct.unpack_from(">q", backing, 9)[0] == 99
    v.validate()


def test_set_log_append_time_sets_bit_and_timestamp_and_fixes_crc() -> None:
    raw = one_record_batch(attributes=int(Compression.NONE) | 0x10, max_timestamp=5)
    v = RecordBatchView(raw)
    old_crc = v.crc
    v.set_log_append_time(1_700_000_000_123)
    assert v.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert v.max_timestamp == 1_700_000_000_123
    assert v.is_transactional  # the other bits are kept
    assert v.crc != old_crc
    assert v.crc == crc32c.crc32c(bytes(raw[21:]))
    v.validate()


def test_set_max_timestamp_keeps_type() -> None:
    raw = one_record_batch()
    v = RecordBatchView(raw)
    v.set_max_timestamp(42)
    assert v.max_timestamp == 42
    assert v.timestamp_type is TimestampType.CREATE_TIME
    v.validate()


def test_rewrites_of_read_only_buffers_are_refused() -> None:
    v = RecordBatchView(bytes(one_record_batch()))
    with pytest.raises(TypeError):
        v.set_base_offset(1)
    with pytest.raises(TypeError):
        v.set_log_append_time(1)


def test_log_append_time_on_a_truncated_batch_raises_before_writing() -> None:
    raw = one_record_batch()[:-1]
    snapshot = bytes(raw)
    with pytest.raises(BatchError):
        RecordBatchView(raw).set_log_append_time(7)
    assert bytes(raw) == snapshot


# --- iteration over concatenated batches ----------------------------------------------------------


def test_iter_batches_walks_consecutive_batches() -> None:
    batches = [one_record_batch(base_offset=i * 10) for i in range(4)]
    buf = b"".join(bytes(b) for b in batches)
    it = iter_batches(buf)
    views = list(it)
    assert [v.base_offset for v in views] == [0, 10, 20, 30]
    assert [v.position for v in views] == [i * len(batches[0]) for i in range(4)]
    assert it.position == len(buf)
    assert it.trailing_bytes == 0
    for v in views:
        v.validate()


def test_iter_batches_stops_at_a_partial_trailing_batch() -> None:
    whole = bytes(one_record_batch()) * 2
    for cut in range(len(whole) // 2, len(whole)):
        it = iter_batches(whole[:cut])
        views = list(it)
        assert len(views) == 1
        assert it.position == len(whole) // 2
        assert it.trailing_bytes == cut - len(whole) // 2


def test_iter_batches_of_empty_buffer() -> None:
    it = iter_batches(b"")
    assert list(it) == []
    assert it.trailing_bytes == 0


def test_header_view_of_a_kafka_python_batch() -> None:
    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=True,
        producer_id=4242,
        producer_epoch=3,
        base_sequence=100,
        batch_size=1 << 20,
    )
    for i in range(5):
        b.append(i, timestamp=1_000 + i * 7, key=b"k%d" % i, value=b"v" * i, headers=[])
    raw = bytes(b.build())
    v = RecordBatchView(raw)
    v.validate(from_client=True)
    assert (v.record_count, v.last_offset_delta) == (5, 4)
    assert (v.base_timestamp, v.max_timestamp) == (1_000, 1_028)
    assert (v.producer_id, v.producer_epoch, v.base_sequence) == (4242, 3, 100)
    assert v.is_transactional
    assert v.size_bytes == len(raw)


def test_errors_are_protocol_errors() -> None:
    assert issubclass(BatchError, ProtocolError)


# --- records: round trips ------------------------------------------------------------------------


CODECS = list(Compression)
MiB = 1024 * 1024

_bytes = st.none() | st.binary(max_size=64)
_header_key = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
new_records = st.lists(
    st.builds(
        NewRecord,
        key=_bytes,
        value=st.none() | st.binary(max_size=300),
        headers=st.lists(st.tuples(_header_key, _bytes), max_size=4).map(tuple),
        timestamp=st.none() | st.integers(0, 2**42),
    ),
    min_size=1,
    max_size=25,
)


def plain(data: memoryview | bytes | None) -> bytes | None:
    return None if data is None else bytes(data)


def as_tuple(r: Record) -> tuple[object, ...]:
    return (r.offset, r.timestamp, plain(r.key), plain(r.value), [(k, plain(v)) for k, v in r.headers])


def expected(records: list[NewRecord], base_offset: int = 0) -> list[tuple[object, ...]]:
    base_ts = next((r.timestamp for r in records if r.timestamp is not None), -1)
    return [
        (
            base_offset + i,
            base_ts if r.timestamp is None else r.timestamp,
            r.key,
            r.value,
            [(k, v) for k, v in r.headers],
        )
        for i, r in enumerate(records)
    ]


@settings(max_examples=60, deadline=None)
@given(records=new_records, codec=st.sampled_from(CODECS), base_offset=st.integers(0, 2**62))
def test_build_then_read_round_trip(records: list[NewRecord], codec: Compression, base_offset: int) -> None:
    raw = build_batch(records, compression=codec, base_offset=base_offset)
    v = RecordBatchView(raw)
    v.validate(from_client=True)
    assert v.compression is codec
    assert v.record_count == len(records)
    assert v.base_offset == base_offset
    assert v.last_offset == base_offset + len(records) - 1
    got = list(v.records())
    assert [as_tuple(r) for r in got] == expected(records, base_offset)
    assert [r.offset_delta for r in got] == list(range(len(records)))
    assert v.max_timestamp == max(r.timestamp for r in got)


@settings(max_examples=60, deadline=None)
@given(records=new_records, codec=st.sampled_from(CODECS))
def test_kafka_python_reads_our_batches(records: list[NewRecord], codec: Compression) -> None:
    raw = build_batch(records, compression=codec, producer_id=9, producer_epoch=2, base_sequence=40)
    theirs = DefaultRecordBatch(bytearray(raw))
    assert theirs.validate_crc()
    assert theirs.compression_type == codec
    assert (theirs.producer_id, theirs.producer_epoch, theirs.base_sequence) == (9, 2, 40)
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs]
    assert got == expected(records)


@settings(max_examples=60, deadline=None)
@given(records=new_records, codec=st.sampled_from(CODECS))
def test_we_read_kafka_python_batches(records: list[NewRecord], codec: Compression) -> None:
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 30,
    )  # fmt: skip
    stamped = [NewRecord(r.key, r.value, r.headers, 1_000 + i if r.timestamp is None else r.timestamp)
               for i, r in enumerate(records)]  # fmt: skip
    for i, r in enumerate(stamped):
        b.append(i, timestamp=r.timestamp, key=r.key, value=r.value, headers=list(r.headers))
    raw = bytes(b.build())
    v = RecordBatchView(raw)
    v.validate(from_client=True)
    # kafka-python falls back to no compression when compressing does not shrink the records.
    assert v.compression in (codec, Compression.NONE)
    assert [as_tuple(r) for r in v.records()] == expected(stamped)


@pytest.mark.parametrize("codec", CODECS)
def test_we_read_compressed_kafka_python_batches(codec: Compression) -> None:
    b = DefaultRecordBatchBuilder(2, codec, True, 77, 5, 1000, 1 << 30)
    originals = []
    for i in range(300):
        rec = (b"key-%d" % (i % 7), b"value %d " % i * 20, [("trace", b"abc"), ("empty", None)])
        originals.append(rec)
        b.append(i, timestamp=1_700_000_000_000 + i, key=rec[0], value=rec[1], headers=rec[2])
    v = RecordBatchView(bytes(b.build()))
    v.validate(from_client=True)
    assert v.compression is codec  # compressible data: kafka-python really used the codec
    assert v.is_transactional
    got = list(v.records())
    assert [(plain(r.key), plain(r.value), [(k, plain(x)) for k, x in r.headers]) for r in got] == originals
    assert [r.offset for r in got] == list(range(300))
    assert [r.timestamp for r in got] == [1_700_000_000_000 + i for i in range(300)]


def test_records_are_views_into_an_uncompressed_batch() -> None:
    raw = bytearray(build_batch([NewRecord(b"k", b"value")]))
    (r,) = RecordBatchView(raw).records()
    assert r.value is not None and r.value.obj is raw


# --- builder options -----------------------------------------------------------------------------


def test_log_append_time_batches_report_the_append_time() -> None:
    raw = build_batch(
        [NewRecord(b"a", timestamp=5), NewRecord(b"b", timestamp=9)],
        timestamp_type=TimestampType.LOG_APPEND_TIME,
        max_timestamp=1_000_000,
    )
    v = RecordBatchView(raw)
    assert v.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in v.records()] == [1_000_000, 1_000_000]
    assert [r.timestamp_delta for r in v.records()] == [0, 4]
    theirs = DefaultRecordBatch(bytearray(raw))
    assert [r.timestamp for r in theirs] == [1_000_000, 1_000_000]


@pytest.mark.parametrize("codec", CODECS)
def test_set_log_append_time_is_seen_by_kafka_python(codec: Compression) -> None:
    raw = bytearray(
        build_batch([NewRecord(b"a", timestamp=5), NewRecord(b"b", timestamp=9)], compression=codec)
    )
    RecordBatchView(raw).set_log_append_time(77_777)
    RecordBatchView(raw).validate()
    theirs = DefaultRecordBatch(raw)
    assert theirs.validate_crc()
    assert theirs.timestamp_type == 1
    assert [r.timestamp for r in theirs] == [77_777, 77_777]
    assert [r.timestamp for r in RecordBatchView(raw).records()] == [77_777, 77_777]


def test_delete_horizon() -> None:
    raw = build_batch(
        [NewRecord(b"a", timestamp=500), NewRecord(b"b", None, timestamp=700)], delete_horizon_ms=10_000
    )
    v = RecordBatchView(raw)
    v.validate()
    assert v.has_delete_horizon
    assert v.delete_horizon_ms == 10_000
    assert [r.timestamp for r in v.records()] == [500, 700]
    assert [r.timestamp_delta for r in v.records()] == [-9_500, -9_300]
    with pytest.raises(ValueError):
        build_batch([NewRecord(b"a")], delete_horizon_ms=1, base_timestamp=2)


def test_compaction_shapes_keep_offsets() -> None:
    original = build_batch(
        [NewRecord(b"k%d" % i, b"v", timestamp=100 + i) for i in range(6)], base_offset=1000
    )
    kept = [r for r in RecordBatchView(original).records() if r.offset_delta in (1, 4)]
    rebuilt = build_batch(
        [NewRecord.from_record(r) for r in kept],
        base_offset=1000,
        last_offset_delta=RecordBatchView(original).last_offset_delta,
        base_timestamp=RecordBatchView(original).base_timestamp,
    )
    v = RecordBatchView(rebuilt)
    v.validate()
    assert (v.record_count, v.last_offset, v.next_offset) == (2, 1005, 1006)
    assert [(r.offset, r.timestamp, plain(r.key)) for r in v.records()] == [
        (1001, 101, b"k1"),
        (1004, 104, b"k4"),
    ]
    with pytest.raises(BatchError):
        v.validate(from_client=True)
    empty = RecordBatchView(build_batch([], base_offset=1000, last_offset_delta=5, base_timestamp=100))
    empty.validate()
    assert (empty.record_count, empty.next_offset, list(empty.records())) == (0, 1006, [])


def test_builder_refuses_impossible_batches() -> None:
    with pytest.raises(ValueError):
        build_batch([NewRecord(offset_delta=3), NewRecord(offset_delta=3)])
    with pytest.raises(ValueError):
        build_batch([NewRecord(offset_delta=-1)])
    with pytest.raises(ValueError):
        build_batch([NewRecord(offset_delta=2**31)])
    with pytest.raises(ValueError):
        build_batch([NewRecord(offset_delta=4)], last_offset_delta=3)
    with pytest.raises(ValueError):
        build_batch([])
    with pytest.raises(ValueError):
        build_batch([NewRecord()], timestamp_type=TimestampType.LOG_APPEND_TIME)
    with pytest.raises(ValueError):
        build_batch([NewRecord()], producer_epoch=2**15)


def test_builder_header_fields() -> None:
    raw = build_batch(
        [NewRecord(b"x", timestamp=50)],
        base_offset=7,
        partition_leader_epoch=3,
        producer_id=11,
        producer_epoch=4,
        base_sequence=99,
        is_transactional=True,
        compression=Compression.ZSTD,
    )
    v = RecordBatchView(raw)
    assert (v.base_offset, v.partition_leader_epoch, v.producer_id, v.producer_epoch, v.base_sequence) == (
        7, 3, 11, 4, 99,
    )  # fmt: skip
    assert v.is_transactional and not v.is_control
    assert (v.base_timestamp, v.max_timestamp) == (50, 50)
    assert v.size_bytes == len(raw)


# --- control records -----------------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_end_txn_marker(commit: bool) -> None:
    raw = build_end_txn_marker(
        commit=commit,
        producer_id=123,
        producer_epoch=7,
        coordinator_epoch=42,
        timestamp_ms=1_000,
        base_offset=55,
    )
    v = RecordBatchView(raw)
    v.validate()
    assert v.is_control and v.is_transactional
    assert (v.producer_id, v.producer_epoch, v.base_sequence, v.base_offset) == (123, 7, -1, 55)
    (r,) = v.records()
    assert bytes(r.key or b"") == struct.pack(">hh", 0, 1 if commit else 0)
    assert bytes(r.value or b"") == struct.pack(">hi", 0, 42)
    assert parse_control_record_type(r) is (ControlRecordType.COMMIT if commit else ControlRecordType.ABORT)
    marker = parse_end_txn_marker(r)
    assert (marker.commit, marker.coordinator_epoch) == (commit, 42)
    (theirs,) = DefaultRecordBatch(bytearray(raw))
    assert theirs.commit is commit
    assert theirs.abort is not commit
    with pytest.raises(BatchError):  # clients may not produce these
        v.validate(from_client=True)


def _record_with(key: bytes | None, value: bytes | None) -> Record:
    return Record(
        0,
        0,
        None if key is None else memoryview(key),
        None if value is None else memoryview(value),
        (),
        0,
        0,
        0,
    )


def test_control_record_parsing_errors() -> None:
    for key in (None, b"", b"\x00\x00\x00"):
        with pytest.raises(BatchError):
            parse_control_record_type(_record_with(key, b""))
    with pytest.raises(BatchError):
        parse_control_record_type(_record_with(struct.pack(">hh", -1, 0), None))
    assert parse_control_record_type(_record_with(struct.pack(">hh", 0, 99), None)) == 99
    assert (
        parse_control_record_type(_record_with(struct.pack(">hh", 1, 2), None))
        is ControlRecordType.LEADER_CHANGE
    )
    commit_key = struct.pack(">hh", 0, 1)
    for value in (None, b"\x00\x00\x00\x00\x00", struct.pack(">hi", -1, 3)):
        with pytest.raises(BatchError):
            parse_end_txn_marker(_record_with(commit_key, value))
    with pytest.raises(BatchError):
        parse_end_txn_marker(_record_with(struct.pack(">hh", 0, 2), struct.pack(">hi", 0, 3)))
    # A newer value version is read by its version-0 prefix.
    assert (
        parse_end_txn_marker(_record_with(commit_key, struct.pack(">hi", 1, 3) + b"\x00")).coordinator_epoch
        == 3
    )


# --- records: malformed input --------------------------------------------------------------------


def records_of(body: bytes, count: int, attributes: int = 0) -> list[Record]:
    raw = pack_batch(
        record_count=count, last_offset_delta=max(count - 1, 0), body=body, attributes=attributes
    )
    return list(RecordBatchView(raw).records())


def zz(n: int) -> bytes:
    """Zig-zag varint, written here independently of protocol.primitives."""
    u = (n << 1) ^ (n >> 63)
    u &= 2**64 - 1
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def rec(fields: bytes, length: int | None = None) -> bytes:
    return zz(len(fields) if length is None else length) + fields


GOOD_FIELDS = b"\x00" + zz(0) + zz(0) + zz(1) + b"k" + zz(2) + b"vv" + zz(1) + zz(1) + b"h" + zz(-1)


def test_hand_made_record_is_read() -> None:
    (r,) = records_of(rec(GOOD_FIELDS), 1)
    assert (plain(r.key), plain(r.value), [(k, plain(v)) for k, v in r.headers]) == (
        b"k",
        b"vv",
        [("h", None)],
    )


def test_negative_key_and_value_lengths_mean_null_as_in_kafka() -> None:
    fields = b"\x00" + zz(0) + zz(0) + zz(-5) + zz(-2) + zz(0)
    (r,) = records_of(rec(fields), 1)
    assert r.key is None and r.value is None


@pytest.mark.parametrize(
    ("body", "count"),
    [
        pytest.param(rec(GOOD_FIELDS, len(GOOD_FIELDS) + 1) + b"\x00", 1, id="length-too-long"),
        pytest.param(rec(GOOD_FIELDS, len(GOOD_FIELDS) - 1) + b"\x00", 1, id="length-too-short"),
        pytest.param(zz(-1) + b"\x00" * 8, 1, id="negative-length"),
        pytest.param(zz(3) + b"\x00" * 8, 1, id="length-below-minimum"),
        pytest.param(zz(2**30) + b"\x00" * 8, 1, id="length-past-the-end"),
        pytest.param(rec(b"\x00" + zz(0) + zz(0) + zz(50) + b"k" + zz(-1) + zz(0)), 1, id="key-past-record"),
        pytest.param(rec(b"\x00" + zz(0) + zz(0) + zz(-1) + zz(50) + zz(0)), 1, id="value-past-record"),
        pytest.param(rec(b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(-1)), 1, id="negative-header-count"),
        pytest.param(
            rec(b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(2**30) + b"\x00"), 1, id="huge-header-count"
        ),
        pytest.param(
            rec(b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(1) + zz(-1) + zz(-1)), 1, id="null-header-key"
        ),
        pytest.param(
            rec(b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(1) + zz(9) + zz(-1)), 1, id="header-key-past"
        ),
        pytest.param(
            rec(b"\x00" + zz(0) + zz(0) + zz(-1) + zz(-1) + zz(1) + zz(0) + zz(9)), 1, id="header-value-past"
        ),
        pytest.param(rec(b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00"), 1, id="overlong-varlong"),
        pytest.param(rec(GOOD_FIELDS) + b"\x00", 1, id="bytes-left-over"),
        pytest.param(rec(GOOD_FIELDS) * 2, 3, id="fewer-records-than-count"),
        pytest.param(rec(GOOD_FIELDS), 2**31 - 1, id="huge-count"),
        pytest.param(rec(GOOD_FIELDS), -3, id="negative-count"),
    ],
)
def test_malformed_records_are_invalid(body: bytes, count: int) -> None:
    with pytest.raises(BatchError) as exc:
        records_of(body, count)
    assert exc.value.kind is BatchErrorKind.INVALID


def test_truncated_batch_records_are_corrupt_at_every_byte() -> None:
    for codec in CODECS:
        raw = build_batch([NewRecord(b"key", b"value" * 5, [("h", b"v")], 10)] * 3, compression=codec)
        for cut in range(BATCH_HEADER_BYTES, len(raw)):
            with pytest.raises(BatchError) as exc:
                list(RecordBatchView(raw[:cut]).records())
            assert exc.value.kind is BatchErrorKind.CORRUPT


def test_undecodable_compressed_records_are_invalid() -> None:
    for codec in CODECS[1:]:
        raw = pack_batch(attributes=codec, record_count=1, body=b"\x00definitely not compressed data")
        RecordBatchView(raw).validate()  # the CRC vouches for the bytes, not their meaning
        with pytest.raises(BatchError) as exc:
            list(RecordBatchView(raw).records())
        assert exc.value.kind is BatchErrorKind.INVALID


def test_compressed_record_bomb_is_refused() -> None:
    c = zstandard.ZstdCompressor().compressobj()
    bomb = b"".join(c.compress(bytes(MiB)) for _ in range(1024)) + c.flush()  # 1 GiB of zeros
    raw = pack_batch(attributes=Compression.ZSTD, record_count=1, body=bomb)
    with pytest.raises(BatchError) as exc:
        RecordBatchView(raw).records(decompressed_bytes_max=MiB)
    assert exc.value.kind is BatchErrorKind.INVALID
    assert isinstance(exc.value.__cause__, ProtocolError)


def test_huge_count_in_compressed_batch_is_refused_before_iterating() -> None:
    raw = pack_batch(
        attributes=Compression.LZ4, record_count=2**31 - 1, body=compress(Compression.LZ4, rec(GOOD_FIELDS))
    )
    with pytest.raises(BatchError):
        RecordBatchView(raw).records()


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=200), count=st.integers(-2, 40))
def test_random_record_bytes_raise_only_batch_error(body: bytes, count: int) -> None:
    try:
        for r in records_of(body, count):
            assert isinstance(r, Record)
    except BatchError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    codec=st.sampled_from(CODECS),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=3),
)
def test_mutated_batches_raise_only_protocol_error(codec: Compression, flips: list[tuple[int, int]]) -> None:
    raw = bytearray(
        build_batch(
            [NewRecord(b"key%d" % i, b"val" * i, [("h", b"x")], 100 + i) for i in range(8)], compression=codec
        )
    )
    for where, mask in flips:
        raw[where % len(raw)] ^= mask
    # Refresh the CRC so the damage reaches the deep path instead of stopping at validate().
    if len(raw) >= BATCH_HEADER_BYTES:
        struct.pack_into(">I", raw, 17, crc32c.crc32c(bytes(raw[21:])))
    try:
        v = RecordBatchView(raw)
        v.validate()
        list(v.records(decompressed_bytes_max=MiB))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_buffers_through_iter_batches_raise_only_protocol_error(data: bytes) -> None:
    try:
        for v in iter_batches(data):
            v.validate()
            list(v.records())
    except ProtocolError:
        pass


def test_segment_like_buffer_of_mixed_batches() -> None:
    parts = [
        build_batch([NewRecord(b"a", b"1")], base_offset=0, compression=Compression.GZIP),
        build_end_txn_marker(
            commit=True, producer_id=1, producer_epoch=0, coordinator_epoch=0, timestamp_ms=5, base_offset=1
        ),
        build_batch(
            [NewRecord(b"b", b"2"), NewRecord(b"c", b"3")], base_offset=2, compression=Compression.LZ4
        ),
    ]
    buf = b"".join(parts) + parts[0][:30]
    it = iter_batches(buf)
    offsets = []
    for v in it:
        v.validate()
        offsets += [r.offset for r in v.records()]
    assert offsets == [0, 1, 2, 3]
    assert it.trailing_bytes == 30


def test_repr_never_raises() -> None:
    assert "codec=7" in repr(RecordBatchView(pack_batch(attributes=7)))
