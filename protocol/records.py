"""Kafka's v2 record batch (magic 2): header view, validation, rewrites, records, builder.

What this module owns:

* ``RecordBatchView``: the batch header, read in place; ``validate()`` (the cheap path a broker
  runs on every produced batch: one header unpack, one CRC32C pass, no per-record work);
  in-place rewrites of base offset, leader epoch and log-append time; ``records()`` (the deep
  path: decompression within a byte limit, then each record parsed and checked lazily).
* ``iter_batches``: the complete batches in a buffer of concatenated batches.
* ``build_batch`` and ``NewRecord``: encoding batches, for internal topics, compaction and tests;
  ``build_end_txn_marker`` and the control-record parsers for transaction markers.

Contract. ``RecordBatchView`` reads the 61-byte batch header straight out of a caller's buffer
(``bytes``, ``bytearray`` or ``memoryview``) with ``struct.unpack_from``: constructing one copies
nothing, and every property reads the buffer afresh, so an in-place rewrite is visible at once.
A view never owns its buffer; the caller keeps it alive and unchanged (apart from the rewrites
offered here) while the view is in use. Nothing here performs I/O, reads a clock or keeps
global state.

Errors. Malformed input raises ``BatchError``, a ``ProtocolError`` whose ``kind`` says which
Kafka error code a broker should answer with (see ``BatchErrorKind``); no ``IndexError``,
``struct.error`` or codec exception escapes. Misuse by our own code (rewriting a read-only
buffer, building an impossible batch) raises ``ValueError`` or ``TypeError`` instead.

Layout of the header (all integers big-endian)::

    offset  size  field
         0     8  base_offset               not covered by the CRC
         8     4  batch_length              bytes after this field; not covered by the CRC
        12     4  partition_leader_epoch    not covered by the CRC
        16     1  magic                     must be 2
        17     4  crc                       CRC32C of bytes 21..end (attributes to the last record)
        21     2  attributes
        23     4  last_offset_delta
        27     8  base_timestamp
        35     8  max_timestamp
        43     8  producer_id
        51     2  producer_epoch
        53     4  base_sequence
        57     4  record_count
        61        records (compressed as one block when the codec is not NONE)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

import crc32c

from protocol.compression import (
    DECOMPRESSED_BYTES_MAX_DEFAULT,
    Compression,
    CompressionError,
    compress,
    decompress,
)
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.primitives import read_varint, read_varlong, varint_bytes, varlong_bytes

__all__ = [
    "ATTR_COMPRESSION_MASK",
    "ATTR_CONTROL",
    "ATTR_DELETE_HORIZON",
    "ATTR_LOG_APPEND_TIME",
    "ATTR_TRANSACTIONAL",
    "BATCH_HEADER",
    "BATCH_HEADER_BYTES",
    "BATCH_LENGTH_MIN",
    "BATCH_OVERHEAD_BYTES",
    "CRC_START",
    "MAGIC",
    "BatchError",
    "BatchErrorKind",
    "BatchIterator",
    "Compression",
    "ControlRecordType",
    "EndTxnMarker",
    "NewRecord",
    "Record",
    "RecordBatchView",
    "TimestampType",
    "build_batch",
    "build_end_txn_marker",
    "iter_batches",
    "parse_control_record_type",
    "parse_end_txn_marker",
]

# --- layout --------------------------------------------------------------------------------------

BASE_OFFSET_AT = 0
BATCH_LENGTH_AT = 8
PARTITION_LEADER_EPOCH_AT = 12
MAGIC_AT = 16
CRC_AT = 17
ATTRIBUTES_AT = 21
LAST_OFFSET_DELTA_AT = 23
BASE_TIMESTAMP_AT = 27
MAX_TIMESTAMP_AT = 35
PRODUCER_ID_AT = 43
PRODUCER_EPOCH_AT = 51
BASE_SEQUENCE_AT = 53
RECORD_COUNT_AT = 57

CRC_START = ATTRIBUTES_AT
"""The CRC covers everything from the attributes to the end of the batch."""

BATCH_HEADER_BYTES = 61
"""The fixed header; the records start here."""

BATCH_OVERHEAD_BYTES = 12
"""base_offset and batch_length: the bytes a batch has beyond what batch_length counts."""

BATCH_LENGTH_MIN = BATCH_HEADER_BYTES - BATCH_OVERHEAD_BYTES
"""The smallest legal batch_length (49): a header with no records."""

MAGIC = 2
LEGACY_MAGIC_MAX = 1

RECORD_BYTES_MIN = 7
"""The smallest encoded record: length, attributes, timestamp and offset deltas, null key, null
value and header count, one byte each. Bounds how many records a batch's bytes can hold."""

ATTR_COMPRESSION_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20
ATTR_DELETE_HORIZON = 0x40

NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1

BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
"""The whole header in one unpack, fields in layout order."""
assert BATCH_HEADER.size == BATCH_HEADER_BYTES

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")

_CODEC_MAX = max(Compression)


class TimestampType(IntEnum):
    """Bit 3 of the attributes: who set the records' timestamps."""

    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class BatchErrorKind(Enum):
    """What is wrong with a batch, chosen so a broker can map it to one Kafka error code.

    * ``CORRUPT``: the bytes are damaged — short, a length out of range, a CRC mismatch, an
      unknown magic. Answer ``CORRUPT_MESSAGE`` (2).
    * ``INVALID``: the bytes are intact (the CRC matched) but their contents break the format's
      rules — a bad record, inconsistent counts, an unknown codec, compressed data that cannot be
      decoded or expands past its limit. Answer ``INVALID_RECORD`` (87).
    * ``OLD_MAGIC``: a magic 0 or 1 message set, which Kafka 4.0 no longer accepts. Kafka's
      produce path refuses it with ``INVALID_RECORD`` (87) ("... only allowed to contain record
      batches with magic version 2"); the kind is separate so the broker can say exactly that.
    """

    CORRUPT = "corrupt"
    INVALID = "invalid"
    OLD_MAGIC = "old_magic"

    @property
    def error_code(self) -> ErrorCode:
        """The Kafka error code a produce answers with."""
        return ErrorCode.CORRUPT_MESSAGE if self is BatchErrorKind.CORRUPT else ErrorCode.INVALID_RECORD


class BatchError(ProtocolError):
    """Malformed record batch input; ``kind`` says which Kafka error code it deserves."""

    def __init__(self, kind: BatchErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _corrupt(message: str) -> BatchError:
    return BatchError(BatchErrorKind.CORRUPT, message)


def _invalid(message: str) -> BatchError:
    return BatchError(BatchErrorKind.INVALID, message)


def _as_bytes_view(buf: bytes | bytearray | memoryview) -> memoryview:
    mv = memoryview(buf)
    if mv.ndim != 1 or mv.format != "B":
        mv = mv.cast("B")
    return mv


def _check_magic(buf: memoryview, pos: int) -> None:
    """Refuse a batch whose magic byte is not 2, when the buffer reaches that far."""
    if len(buf) - pos > MAGIC_AT:
        magic = buf[pos + MAGIC_AT]
        if magic != MAGIC:
            if magic <= LEGACY_MAGIC_MAX:
                raise BatchError(
                    BatchErrorKind.OLD_MAGIC,
                    f"message format v{magic} (magic {magic}) is not supported; only record batch v2 is",
                )
            raise _corrupt(f"unknown record batch magic {magic}")


class RecordBatchView:
    """A view of one v2 record batch's header at ``pos`` in ``buf``; copies nothing.

    Construction checks only that the 61 header bytes are present (raising ``BatchError``
    otherwise, ``OLD_MAGIC`` if what is there is a legacy message), so every property is safe
    to read. It does not check that the whole batch is present or intact: call ``validate()``
    before trusting anything beyond the header.

    Not thread-safe with respect to the rewrite methods (nothing here is; Trafka runs on one
    thread).
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> None:
        mv = _as_bytes_view(buf)
        if pos < 0:
            raise ValueError(f"negative batch position {pos}")
        if len(mv) - pos < BATCH_HEADER_BYTES:
            _check_magic(mv, pos)
            raise _corrupt(
                f"record batch header needs {BATCH_HEADER_BYTES} bytes, {max(len(mv) - pos, 0)} remain"
            )
        self._buf = mv
        self._pos = pos

    def __repr__(self) -> str:
        return (
            f"RecordBatchView(base_offset={self.base_offset}, last_offset_delta={self.last_offset_delta},"
            f" record_count={self.record_count}, size_bytes={self.size_bytes},"
            f" codec={self.attributes & ATTR_COMPRESSION_MASK}, producer_id={self.producer_id})"
        )

    # --- where the batch is -----------------------------------------------------------------

    @property
    def buffer(self) -> memoryview:
        """The whole underlying buffer (not just this batch)."""
        return self._buf

    @property
    def position(self) -> int:
        """Where this batch starts in ``buffer``."""
        return self._pos

    @property
    def is_complete(self) -> bool:
        """Whether ``size_bytes`` bytes are present from ``position`` (a sane length aside)."""
        return len(self._buf) - self._pos >= self.size_bytes

    def raw(self) -> memoryview:
        """The batch's bytes (header and records) as a slice of the buffer.

        Raises ``BatchError`` (``CORRUPT``) if the batch length is out of range or the buffer
        holds fewer bytes than the batch claims.
        """
        length = self.batch_length
        if length < BATCH_LENGTH_MIN:
            raise _corrupt(f"batch length {length} is below the minimum {BATCH_LENGTH_MIN}")
        end = self._pos + BATCH_OVERHEAD_BYTES + length
        if end > len(self._buf):
            raise _corrupt(
                f"record batch of {end - self._pos} bytes is truncated to {len(self._buf) - self._pos}"
            )
        return self._buf[self._pos : end]

    def records_bytes(self) -> memoryview:
        """The bytes after the header: the records, or their compressed block."""
        return self.raw()[BATCH_HEADER_BYTES:]

    # --- header fields ----------------------------------------------------------------------

    @property
    def base_offset(self) -> int:
        v: int = _I64.unpack_from(self._buf, self._pos)[0]
        return v

    @property
    def batch_length(self) -> int:
        """Bytes after the batch_length field itself (header remainder plus records)."""
        v: int = _I32.unpack_from(self._buf, self._pos + BATCH_LENGTH_AT)[0]
        return v

    @property
    def partition_leader_epoch(self) -> int:
        v: int = _I32.unpack_from(self._buf, self._pos + PARTITION_LEADER_EPOCH_AT)[0]
        return v

    @property
    def magic(self) -> int:
        v: int = _I8.unpack_from(self._buf, self._pos + MAGIC_AT)[0]
        return v

    @property
    def crc(self) -> int:
        """The stored CRC32C, unsigned."""
        v: int = _U32.unpack_from(self._buf, self._pos + CRC_AT)[0]
        return v

    @property
    def attributes(self) -> int:
        v: int = _I16.unpack_from(self._buf, self._pos + ATTRIBUTES_AT)[0]
        return v

    @property
    def last_offset_delta(self) -> int:
        v: int = _I32.unpack_from(self._buf, self._pos + LAST_OFFSET_DELTA_AT)[0]
        return v

    @property
    def base_timestamp(self) -> int:
        v: int = _I64.unpack_from(self._buf, self._pos + BASE_TIMESTAMP_AT)[0]
        return v

    @property
    def max_timestamp(self) -> int:
        v: int = _I64.unpack_from(self._buf, self._pos + MAX_TIMESTAMP_AT)[0]
        return v

    @property
    def producer_id(self) -> int:
        v: int = _I64.unpack_from(self._buf, self._pos + PRODUCER_ID_AT)[0]
        return v

    @property
    def producer_epoch(self) -> int:
        v: int = _I16.unpack_from(self._buf, self._pos + PRODUCER_EPOCH_AT)[0]
        return v

    @property
    def base_sequence(self) -> int:
        v: int = _I32.unpack_from(self._buf, self._pos + BASE_SEQUENCE_AT)[0]
        return v

    @property
    def record_count(self) -> int:
        v: int = _I32.unpack_from(self._buf, self._pos + RECORD_COUNT_AT)[0]
        return v

    # --- derived ----------------------------------------------------------------------------

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        """The offset after this batch's last: where the next batch starts."""
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size_bytes(self) -> int:
        """The batch's whole size on the wire and on disk: batch_length + 12."""
        return self.batch_length + BATCH_OVERHEAD_BYTES

    @property
    def compression(self) -> Compression:
        """The codec; ``BatchError`` (``INVALID``) for ids 5-7, which Kafka does not define."""
        codec = self.attributes & ATTR_COMPRESSION_MASK
        if codec > _CODEC_MAX:
            raise _invalid(f"unknown compression codec id {codec}")
        return Compression(codec)

    @property
    def timestamp_type(self) -> TimestampType:
        if self.attributes & ATTR_LOG_APPEND_TIME:
            return TimestampType.LOG_APPEND_TIME
        return TimestampType.CREATE_TIME

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & ATTR_DELETE_HORIZON)

    @property
    def delete_horizon_ms(self) -> int | None:
        """When the delete-horizon flag is set, base_timestamp holds the horizon (KIP-534)."""
        return self.base_timestamp if self.has_delete_horizon else None

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id > NO_PRODUCER_ID

    # --- validation -------------------------------------------------------------------------

    def compute_crc(self) -> int:
        """The CRC32C of the covered bytes as they are now (the batch must be complete)."""
        raw = self.raw()
        v: int = crc32c.crc32c(raw[CRC_START:])
        return v

    def validate(self, *, from_client: bool = False) -> None:
        """Check the header and the CRC: the cheap path every produced batch goes through.

        This does one header unpack and one CRC32C pass, and no per-record work. Checks, in
        order (the first failure raises ``BatchError``):

        * magic is 2 (``OLD_MAGIC`` for 0 and 1, ``CORRUPT`` for anything else);
        * batch_length >= 49 and the whole batch is present (``CORRUPT``);
        * the CRC matches (``CORRUPT``);
        * the codec id is known; record_count >= 0; last_offset_delta >= 0; record_count <=
          last_offset_delta + 1, since records have distinct offset deltas in
          [0, last_offset_delta]; and an uncompressed batch has at least 7 bytes per record
          (``INVALID``).

        These hold for every legal batch, including compacted ones (whose record_count may be
        lower than the offset range, even 0) and control batches, so storage and replication
        can use this as is. With ``from_client=True`` (a produce request) it also checks, as
        Kafka does for client batches: record_count >= 1, last_offset_delta == record_count - 1,
        the batch is not a control batch, and a batch with a producer id has a base sequence
        (``INVALID``).

        Per-record checks (record lengths, header counts, bytes left over, decompression) are
        the deep path, done by ``records()`` as it iterates.
        """
        buf = self._buf
        pos = self._pos
        _check_magic(buf, pos)
        (
            _base_offset,
            batch_length,
            _leader_epoch,
            _magic,
            crc,
            attributes,
            last_offset_delta,
            _base_ts,
            _max_ts,
            producer_id,
            _producer_epoch,
            base_sequence,
            record_count,
        ) = BATCH_HEADER.unpack_from(buf, pos)
        if batch_length < BATCH_LENGTH_MIN:
            raise _corrupt(f"batch length {batch_length} is below the minimum {BATCH_LENGTH_MIN}")
        end = pos + BATCH_OVERHEAD_BYTES + batch_length
        if end > len(buf):
            raise _corrupt(f"record batch of {end - pos} bytes is truncated to {len(buf) - pos}")
        actual = crc32c.crc32c(buf[pos + CRC_START : end])
        if actual != crc:
            raise _corrupt(f"record batch CRC32C is {actual:#010x} but the header says {crc:#010x}")
        codec = attributes & ATTR_COMPRESSION_MASK
        if codec > _CODEC_MAX:
            raise _invalid(f"unknown compression codec id {codec}")
        if record_count < 0:
            raise _invalid(f"negative record count {record_count}")
        if last_offset_delta < 0:
            raise _invalid(f"negative last offset delta {last_offset_delta}")
        if record_count > last_offset_delta + 1:
            raise _invalid(f"record count {record_count} exceeds the offset range of {last_offset_delta + 1}")
        if codec == Compression.NONE and record_count * RECORD_BYTES_MIN > batch_length - BATCH_LENGTH_MIN:
            raise _invalid(
                f"record count {record_count} cannot fit in {batch_length - BATCH_LENGTH_MIN} bytes of records"
            )
        if from_client:
            if record_count < 1:
                raise _invalid(f"a produced batch must hold records, not {record_count}")
            if last_offset_delta != record_count - 1:
                raise _invalid(
                    f"last offset delta {last_offset_delta} is inconsistent with record count {record_count}"
                )
            if attributes & ATTR_CONTROL:
                raise _invalid("clients may not write control batches")
            if producer_id > NO_PRODUCER_ID and base_sequence < 0:
                raise _invalid(f"producer id {producer_id} with no base sequence ({base_sequence})")

    # --- records (the deep path) ------------------------------------------------------------

    def records(self, *, decompressed_bytes_max: int = DECOMPRESSED_BYTES_MAX_DEFAULT) -> Iterator[Record]:
        """The batch's records, parsed one at a time as the iterator advances.

        Does not check the CRC (call ``validate()`` first when the bytes come from outside).
        Decompression, when the batch is compressed, happens here, eagerly, bounded by
        ``decompressed_bytes_max``; records of an uncompressed batch are views into the
        batch's buffer, and of a compressed one into the decompressed buffer.

        Raises ``BatchError``: ``CORRUPT`` if the batch is incomplete; ``INVALID`` for an
        unknown codec, compressed data that cannot be decoded or expands past the limit, a
        record count that cannot fit in the bytes (checked before iterating, so a huge count
        costs nothing), and — as the iterator reaches them — a malformed record (bad length,
        a field running past its record's end, a negative header count or header key length)
        or bytes left over after the last record. Kafka's leniency is kept: a negative key or
        value length (not only -1) means null, and header keys are decoded as UTF-8 with
        malformed sequences replaced.
        """
        raw = self.raw()
        codec = self.compression
        count = self.record_count
        if count < 0:
            raise _invalid(f"negative record count {count}")
        body = raw[BATCH_HEADER_BYTES:]
        if codec is not Compression.NONE:
            try:
                body = memoryview(decompress(codec, body, decompressed_bytes_max=decompressed_bytes_max))
            except CompressionError as exc:
                raise _invalid(f"cannot decompress {codec.name} records: {exc}") from exc
        if count * RECORD_BYTES_MIN > len(body):
            raise _invalid(f"record count {count} cannot fit in {len(body)} bytes of records")
        log_append_time = self.max_timestamp if self.attributes & ATTR_LOG_APPEND_TIME else None
        return _iter_records(body, count, self.base_offset, self.base_timestamp, log_append_time)

    # --- in-place rewrites ------------------------------------------------------------------

    def _writable(self) -> memoryview:
        if self._buf.readonly:
            raise TypeError(
                "the batch's buffer is read-only; rewrites need a bytearray or writable memoryview"
            )
        return self._buf

    def set_base_offset(self, base_offset: int) -> None:
        """Write base_offset in place; the CRC does not cover it, so it stays valid."""
        _I64.pack_into(self._writable(), self._pos + BASE_OFFSET_AT, base_offset)

    def set_partition_leader_epoch(self, epoch: int) -> None:
        """Write partition_leader_epoch in place; the CRC does not cover it, so it stays valid."""
        _I32.pack_into(self._writable(), self._pos + PARTITION_LEADER_EPOCH_AT, epoch)

    def set_log_append_time(self, log_append_time_ms: int) -> None:
        """Stamp the batch with the broker's time (``message.timestamp.type=LogAppendTime``).

        Sets the timestamp-type attribute bit, writes max_timestamp and recomputes the CRC,
        which covers both. Every record's timestamp then reads as ``log_append_time_ms``.
        The batch must be complete (``BatchError`` otherwise); validate it first, since the new
        CRC would otherwise vouch for damaged bytes.
        """
        buf = self._writable()
        raw = self.raw()
        pos = self._pos
        _I16.pack_into(buf, pos + ATTRIBUTES_AT, self.attributes | ATTR_LOG_APPEND_TIME)
        _I64.pack_into(buf, pos + MAX_TIMESTAMP_AT, log_append_time_ms)
        _U32.pack_into(buf, pos + CRC_AT, crc32c.crc32c(raw[CRC_START:]))

    def set_max_timestamp(self, max_timestamp_ms: int) -> None:
        """Write max_timestamp (keeping the timestamp type) and recompute the CRC."""
        buf = self._writable()
        raw = self.raw()
        _I64.pack_into(buf, self._pos + MAX_TIMESTAMP_AT, max_timestamp_ms)
        _U32.pack_into(buf, self._pos + CRC_AT, crc32c.crc32c(raw[CRC_START:]))


# --- a buffer of concatenated batches ------------------------------------------------------------


class BatchIterator(Iterator[RecordBatchView]):
    """Views of consecutive batches in a buffer: a produce request's records, a segment file.

    Yields a ``RecordBatchView`` for every *complete* batch (its declared size fits in the
    buffer) and stops at the first incomplete one, since fetch responses may end with a
    partial batch. After iteration, ``position`` is where the complete batches end and
    ``trailing_bytes`` how many bytes follow them (0 when the buffer ended on a boundary).

    It reads only each batch's length and magic; it does not validate the batches (call
    ``validate()`` on each). It raises ``BatchError`` when it cannot find the next boundary:
    a batch length below 49 (``CORRUPT``), or a legacy magic (``OLD_MAGIC``) or unknown magic
    (``CORRUPT``) where enough bytes are present to see it.
    """

    __slots__ = ("_buf", "position")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self._buf = _as_bytes_view(buf)
        self.position = pos

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> RecordBatchView:
        buf = self._buf
        pos = self.position
        remaining = len(buf) - pos
        if remaining < BATCH_OVERHEAD_BYTES:
            raise StopIteration
        _check_magic(buf, pos)
        (length,) = _I32.unpack_from(buf, pos + BATCH_LENGTH_AT)
        if length < BATCH_LENGTH_MIN:
            raise _corrupt(f"batch length {length} at byte {pos} is below the minimum {BATCH_LENGTH_MIN}")
        size = BATCH_OVERHEAD_BYTES + length
        if size > remaining:
            raise StopIteration
        view = RecordBatchView(buf, pos)
        self.position = pos + size
        return view

    @property
    def trailing_bytes(self) -> int:
        """Bytes after ``position``: a partial batch once iteration has stopped."""
        return len(self._buf) - self.position


def iter_batches(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchIterator:
    """Iterate the complete batches in ``buf`` from ``pos``; see ``BatchIterator``."""
    return BatchIterator(buf, pos)


# --- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One record read from a batch. ``key``, ``value`` and header values are views into the
    batch's (or its decompressed) buffer; copy them to keep them past that buffer's life.

    ``offset`` is the batch's base_offset plus ``offset_delta``; ``timestamp`` is the batch's
    base_timestamp plus ``timestamp_delta``, or the batch's max_timestamp when the batch uses
    log append time (as Kafka's reader reports it).
    """

    offset: int
    timestamp: int
    key: memoryview | None
    value: memoryview | None
    headers: tuple[tuple[str, memoryview | None], ...]
    attributes: int
    timestamp_delta: int
    offset_delta: int


RECORD_LENGTH_MIN = RECORD_BYTES_MIN - 1
"""The smallest value of a record's length field: six one-byte fields after it."""

HEADER_BYTES_MIN = 2
"""The smallest encoded record header: a key length and a value length, one byte each."""


def _iter_records(
    data: memoryview,
    count: int,
    base_offset: int,
    base_timestamp: int,
    log_append_time: int | None,
) -> Iterator[Record]:
    pos = 0
    end = len(data)
    for index in range(count):
        try:
            length, pos = read_varint(data, pos)
            if length < RECORD_LENGTH_MIN or length > end - pos:
                raise _invalid(f"record {index} has length {length} with {end - pos} bytes remaining")
            rec = data[pos : pos + length]
            pos += length
            record = _parse_record(rec, base_offset, base_timestamp, log_append_time)
        except BatchError:
            raise
        except ProtocolError as exc:
            raise _invalid(f"record {index} is malformed: {exc}") from None
        yield record
    if pos != end:
        raise _invalid(f"{end - pos} bytes remain after the batch's {count} records")


def _parse_record(
    rec: memoryview, base_offset: int, base_timestamp: int, log_append_time: int | None
) -> Record:
    """One record's fields from exactly its bytes (``len(rec) >= RECORD_LENGTH_MIN``)."""
    n = len(rec)
    attributes = rec[0]
    if attributes > 0x7F:
        attributes -= 0x100
    timestamp_delta, p = read_varlong(rec, 1)
    offset_delta, p = read_varint(rec, p)
    klen, p = read_varint(rec, p)
    key = None
    if klen >= 0:
        if klen > n - p:
            raise _invalid(f"key length {klen} runs past the record's end")
        key = rec[p : p + klen]
        p += klen
    vlen, p = read_varint(rec, p)
    value = None
    if vlen >= 0:
        if vlen > n - p:
            raise _invalid(f"value length {vlen} runs past the record's end")
        value = rec[p : p + vlen]
        p += vlen
    header_count, p = read_varint(rec, p)
    if header_count < 0:
        raise _invalid(f"negative header count {header_count}")
    if header_count * HEADER_BYTES_MIN > n - p:
        raise _invalid(f"header count {header_count} cannot fit in {n - p} bytes")
    headers: list[tuple[str, memoryview | None]] = []
    for _ in range(header_count):
        hklen, p = read_varint(rec, p)
        if hklen < 0:
            raise _invalid(f"negative header key length {hklen}")
        if hklen > n - p:
            raise _invalid(f"header key length {hklen} runs past the record's end")
        hkey = str(rec[p : p + hklen], "utf-8", "replace")
        p += hklen
        hvlen, p = read_varint(rec, p)
        hvalue = None
        if hvlen >= 0:
            if hvlen > n - p:
                raise _invalid(f"header value length {hvlen} runs past the record's end")
            hvalue = rec[p : p + hvlen]
            p += hvlen
        headers.append((hkey, hvalue))
    if p != n:
        raise _invalid(f"record states {n} bytes but its fields take {p}")
    return Record(
        offset=base_offset + offset_delta,
        timestamp=base_timestamp + timestamp_delta if log_append_time is None else log_append_time,
        key=key,
        value=value,
        headers=tuple(headers),
        attributes=attributes,
        timestamp_delta=timestamp_delta,
        offset_delta=offset_delta,
    )


# --- building batches ----------------------------------------------------------------------------

_INT32_MAX = 2**31 - 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

BytesLike = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to put in a batch.

    ``timestamp`` is in ms since the epoch; None means the batch's base timestamp.
    ``offset_delta`` None means "the next one": the previous record's delta plus one (0 for
    the first). Give it explicitly only to keep gaps, as compaction does.
    """

    key: BytesLike | None = None
    value: BytesLike | None = None
    headers: Sequence[tuple[str, BytesLike | None]] = ()
    timestamp: int | None = None
    offset_delta: int | None = None

    @classmethod
    def from_record(cls, record: Record) -> NewRecord:
        """The same record again, keeping its offset delta and timestamp (for compaction)."""
        return cls(record.key, record.value, record.headers, record.timestamp, record.offset_delta)


def _encode_nullable(out: bytearray, data: BytesLike | None) -> None:
    if data is None:
        out += varint_bytes(-1)
    else:
        if len(data) > _INT32_MAX:
            raise ValueError(f"{len(data)} bytes is too long for a record field")
        out += varint_bytes(len(data))
        out += data


def _encode_record(out: bytearray, r: NewRecord, timestamp_delta: int, offset_delta: int) -> None:
    body = bytearray(b"\x00")  # attributes: none are defined for records
    body += varlong_bytes(timestamp_delta)
    body += varint_bytes(offset_delta)
    _encode_nullable(body, r.key)
    _encode_nullable(body, r.value)
    body += varint_bytes(len(r.headers))
    for hkey, hvalue in r.headers:
        _encode_nullable(body, hkey.encode())
        _encode_nullable(body, hvalue)
    if len(body) > _INT32_MAX:
        raise ValueError(f"a record of {len(body)} bytes is too long")
    out += varint_bytes(len(body))
    out += body


def build_batch(
    records: Iterable[NewRecord],
    *,
    compression: Compression = Compression.NONE,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
    is_control: bool = False,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    base_timestamp: int | None = None,
    max_timestamp: int | None = None,
    last_offset_delta: int | None = None,
    delete_horizon_ms: int | None = None,
) -> bytes:
    """Encode one v2 batch: for internal topics, control records, compaction and tests.

    Timestamps: ``base_timestamp`` defaults to the first record timestamp given (or -1 if
    none is); a record without one gets the base timestamp. With ``delete_horizon_ms`` the
    delete-horizon attribute is set and the base timestamp *is* the horizon (KIP-534), so
    ``base_timestamp`` must then be omitted. ``max_timestamp`` defaults, for create time, to
    the largest record timestamp (the base timestamp for an empty batch); for log append time
    it is required — it is the append time.

    Offsets: ``last_offset_delta`` defaults to the last record's offset delta; give it to
    keep an offset range wider than the records (compaction, including an empty batch).

    Always compresses with ``compression`` when asked (unlike some clients, which fall back
    to none when it does not help), so the result is deterministic. Raises ``ValueError``
    for an impossible batch: offset deltas not increasing, values out of their field's range.
    """
    items = list(records)
    if delete_horizon_ms is not None:
        if base_timestamp is not None:
            raise ValueError("base_timestamp and delete_horizon_ms are the same field; give one")
        base_timestamp = delete_horizon_ms
    if base_timestamp is None:
        base_timestamp = next((r.timestamp for r in items if r.timestamp is not None), NO_TIMESTAMP)
    body = bytearray()
    delta = -1
    largest_timestamp = None
    for r in items:
        if r.offset_delta is None:
            delta += 1
        elif r.offset_delta > delta:
            delta = r.offset_delta
        else:
            raise ValueError(f"offset delta {r.offset_delta} does not increase from {delta}")
        if delta > _INT32_MAX:
            raise ValueError(f"offset delta {delta} does not fit in 32 bits")
        timestamp = base_timestamp if r.timestamp is None else r.timestamp
        timestamp_delta = timestamp - base_timestamp
        if not _INT64_MIN <= timestamp_delta <= _INT64_MAX:
            raise ValueError(f"timestamp {timestamp} is too far from the base {base_timestamp}")
        if largest_timestamp is None or timestamp > largest_timestamp:
            largest_timestamp = timestamp
        _encode_record(body, r, timestamp_delta, delta)
    if last_offset_delta is None:
        if not items:
            raise ValueError("an empty batch needs an explicit last_offset_delta")
        last_offset_delta = delta
    elif last_offset_delta < delta:
        raise ValueError(f"last_offset_delta {last_offset_delta} is below a record's delta {delta}")
    if max_timestamp is None:
        if timestamp_type is TimestampType.LOG_APPEND_TIME:
            raise ValueError("a log-append-time batch needs max_timestamp (the append time)")
        max_timestamp = base_timestamp if largest_timestamp is None else largest_timestamp

    codec = Compression(compression)
    payload = compress(codec, body) if codec is not Compression.NONE else bytes(body)
    attributes = int(codec)
    if timestamp_type is TimestampType.LOG_APPEND_TIME:
        attributes |= ATTR_LOG_APPEND_TIME
    if is_transactional:
        attributes |= ATTR_TRANSACTIONAL
    if is_control:
        attributes |= ATTR_CONTROL
    if delete_horizon_ms is not None:
        attributes |= ATTR_DELETE_HORIZON
    batch_length = BATCH_LENGTH_MIN + len(payload)
    if batch_length > _INT32_MAX:
        raise ValueError(f"a batch of {batch_length} bytes is too long")
    out = bytearray(BATCH_HEADER_BYTES)
    try:
        BATCH_HEADER.pack_into(
            out,
            0,
            base_offset,
            batch_length,
            partition_leader_epoch,
            MAGIC,
            0,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            len(items),
        )
    except struct.error as exc:
        raise ValueError(f"a batch header field is out of range: {exc}") from None
    out += payload
    _U32.pack_into(out, CRC_AT, crc32c.crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


# --- control records -----------------------------------------------------------------------------


class ControlRecordType(IntEnum):
    """The type in a control record's key (version int16, type int16)."""

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    SNAPSHOT_HEADER = 3
    SNAPSHOT_FOOTER = 4
    KRAFT_VERSION = 5
    KRAFT_VOTERS = 6


CONTROL_KEY = struct.Struct(">hh")
"""A control record's key: version (0), type."""
CONTROL_KEY_VERSION = 0

END_TXN_MARKER_VALUE = struct.Struct(">hi")
"""A transaction marker's value: version (0), coordinator_epoch."""
END_TXN_MARKER_VERSION = 0


@dataclass(frozen=True, slots=True)
class EndTxnMarker:
    """What a COMMIT or ABORT control record says."""

    commit: bool
    coordinator_epoch: int


def build_end_txn_marker(
    *,
    commit: bool,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A control batch holding one COMMIT or ABORT marker, as a partition leader writes it:
    transactional and control attributes set, no compression, no base sequence."""
    kind = ControlRecordType.COMMIT if commit else ControlRecordType.ABORT
    record = NewRecord(
        key=CONTROL_KEY.pack(CONTROL_KEY_VERSION, kind),
        value=END_TXN_MARKER_VALUE.pack(END_TXN_MARKER_VERSION, coordinator_epoch),
        timestamp=timestamp_ms,
    )
    return build_batch(
        [record],
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
    )


def parse_control_record_type(record: Record) -> ControlRecordType | int:
    """The type of a control record from its key; an unknown type comes back as a plain int
    (Kafka skips control records it does not know). ``BatchError`` (``INVALID``) for a key
    that is missing, short or of negative version."""
    key = record.key
    if key is None or len(key) < CONTROL_KEY.size:
        raise _invalid("control record key is missing or shorter than 4 bytes")
    version, kind = CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise _invalid(f"control record key has negative version {version}")
    try:
        return ControlRecordType(kind)
    except ValueError:
        return int(kind)


def parse_end_txn_marker(record: Record) -> EndTxnMarker:
    """The marker in a COMMIT or ABORT control record. Newer versions of the value are read
    by their version-0 prefix, as Kafka does. ``BatchError`` (``INVALID``) otherwise."""
    kind = parse_control_record_type(record)
    if kind not in (ControlRecordType.COMMIT, ControlRecordType.ABORT):
        raise _invalid(f"control record of type {kind} is not a transaction marker")
    value = record.value
    if value is None or len(value) < END_TXN_MARKER_VALUE.size:
        raise _invalid("transaction marker value is missing or shorter than 6 bytes")
    version, coordinator_epoch = END_TXN_MARKER_VALUE.unpack_from(value)
    if version < 0:
        raise _invalid(f"transaction marker has negative version {version}")
    return EndTxnMarker(commit=kind is ControlRecordType.COMMIT, coordinator_epoch=coordinator_epoch)
