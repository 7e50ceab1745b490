"""One segment of a partition log: a ``.log`` file of record batches and its two indexes.

The ``.log`` file is record batches back to back, exactly as they travel in Produce and Fetch
responses, with their final offsets. Its base offset (the file name) is the first offset it may
hold. The indexes follow Kafka's one sparse-index rule: when more than ``index_interval_bytes``
of log have been appended since the last entry, the next batch gets an offset-index entry (its
last offset and position) and the time index gets the largest timestamp seen so far, if it grew.
Appending and rebuilding apply the same rule batch by batch, so a rebuilt index equals the one
written by appends.

Contract: a segment never parses more than a batch's 61-byte header except in ``recover``, which
reads and checks every byte (length, magic, CRC32C, offsets) and cuts the file at the first bad
byte. Files are opened lazily through the log directory's ``FileCache``; an idle segment holds
no descriptor and no index in memory. Single-threaded, except that ``sync_plan`` hands pinned
handles to a worker thread.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.records import (
    BATCH_HEADER_BYTES,
    BATCH_LENGTH_MIN,
    BATCH_OVERHEAD_BYTES,
    BatchError,
    RecordBatchView,
)
from storage.files import FileCache, LazyFile
from storage.index import RELATIVE_OFFSET_MAX, OffsetIndex, TimeIndex
from storage.layout import DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_name

READ_AHEAD_BYTES = 1 << 20
HEADER_READ_BYTES = 4096

# What a walk from batch to batch needs: base_offset (at 0), batch_length (8), last_offset_delta (23).
_WALK = struct.Struct(">qi11xi")

BatchAt = tuple[int, int, int, int, int]
"""``(index entry, position, base_offset, batch_length, last_offset_delta)`` of a batch, where
``index entry`` is the number of an offset-index entry at or before it (-1: none)."""


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """Where one batch lies in a segment and the header fields storage needs."""

    position: int
    base_offset: int
    last_offset: int
    size_bytes: int
    max_timestamp: int
    partition_leader_epoch: int

    @property
    def end_position(self) -> int:
        return self.position + self.size_bytes

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    valid_bytes: int
    truncated_bytes: int
    next_offset: int
    problem: str | None


class LogSegment:
    """See the module docstring."""

    __slots__ = (
        "base_offset",
        "dir",
        "log",
        "offset_index",
        "time_index",
        "index_interval_bytes",
        "created_ms",
        "_max_ts",
        "_max_ts_offset",
        "_max_loaded",
        "_bytes_since_index",
        "_size",
        "_rolling_timestamp",
        "_index_checked",
    )

    def __init__(
        self,
        *,
        dir: str,
        base_offset: int,
        log: LazyFile,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        index_interval_bytes: int,
        created_ms: int,
        size: int,
    ) -> None:
        self.dir = dir
        self.base_offset = base_offset
        self.log = log
        self.offset_index = offset_index
        self.time_index = time_index
        self.index_interval_bytes = index_interval_bytes
        self.created_ms = created_ms
        self._size = size
        self._bytes_since_index = 0
        # Largest timestamp in the segment and the last offset of the batch that carries it;
        # for a reopened segment they come from the time index's last entry, read when needed.
        self._max_ts = -1
        self._max_ts_offset = base_offset
        self._max_loaded = False
        self._rolling_timestamp: int | None = None
        self._index_checked = False

    # --- creation -----------------------------------------------------------------------------

    @staticmethod
    def paths(dir: str, base_offset: int) -> tuple[str, str, str]:
        return (
            posixpath.join(dir, segment_name(base_offset, LOG_SUFFIX)),
            posixpath.join(dir, segment_name(base_offset, INDEX_SUFFIX)),
            posixpath.join(dir, segment_name(base_offset, TIME_INDEX_SUFFIX)),
        )

    @classmethod
    def create(
        cls,
        cache: FileCache,
        dir: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        index_bytes_max: int,
        now_ms: int,
    ) -> LogSegment:
        """Create the three files of a new, empty segment (any old ones are emptied)."""
        log_path, index_path, time_path = cls.paths(dir, base_offset)
        log = LazyFile.create(cache, log_path)
        if log.handle().size():
            log.handle().truncate(0)
        oi = LazyFile.create(cache, index_path)
        ti = LazyFile.create(cache, time_path)
        for f in (oi, ti):
            if f.handle().size():
                f.handle().truncate(0)
        return cls(
            dir=dir,
            base_offset=base_offset,
            log=log,
            offset_index=OffsetIndex(
                oi, base_offset=base_offset, index_bytes_max=index_bytes_max, file_entries=0
            ),
            time_index=TimeIndex(
                ti, base_offset=base_offset, index_bytes_max=index_bytes_max, file_entries=0
            ),
            index_interval_bytes=index_interval_bytes,
            created_ms=now_ms,
            size=0,
        )

    @classmethod
    def open(
        cls,
        cache: FileCache,
        dir: str,
        base_offset: int,
        *,
        index_interval_bytes: int,
        index_bytes_max: int,
        now_ms: int,
    ) -> LogSegment:
        """An existing segment, opened lazily; missing index files are created empty (and
        reported by ``indexes_need_rebuild``)."""
        fs = cache.fs
        log_path, index_path, time_path = cls.paths(dir, base_offset)
        size = fs.file_size(log_path)
        missing = False
        for p in (index_path, time_path):
            if not fs.exists(p):
                fs.open(p, create=True).close()
                missing = True
        oi_size = fs.file_size(index_path)
        ti_size = fs.file_size(time_path)
        oi = OffsetIndex(
            LazyFile(cache, index_path),
            base_offset=base_offset,
            index_bytes_max=index_bytes_max,
            file_entries=oi_size // OffsetIndex.ENTRY.size,
        )
        ti = TimeIndex(
            LazyFile(cache, time_path),
            base_offset=base_offset,
            index_bytes_max=index_bytes_max,
            file_entries=ti_size // TimeIndex.ENTRY.size,
        )
        seg = cls(
            dir=dir,
            base_offset=base_offset,
            log=LazyFile(cache, log_path),
            offset_index=oi,
            time_index=ti,
            index_interval_bytes=index_interval_bytes,
            created_ms=now_ms,
            size=size,
        )
        if missing or oi_size % OffsetIndex.ENTRY.size or ti_size % TimeIndex.ENTRY.size:
            seg.rebuild_indexes()
        return seg

    # --- state --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def is_empty(self) -> bool:
        return self._size == 0

    def rolling_timestamp(self) -> int | None:
        """The max timestamp of the segment's first batch (what ``segment.ms`` counts from)."""
        if self._rolling_timestamp is None and self._size > 0:
            h = self.header_at(0)
            self._rolling_timestamp = h.max_timestamp if h is not None else None
        return self._rolling_timestamp

    def _load_max(self) -> None:
        if not self._max_loaded:
            if self.time_index.entry_count == 0 and self._size > 0:
                # Every non-empty segment that stopped being active has a final time index
                # entry; without one, the index was lost: rebuild it (this sets the maximum).
                self.rebuild_indexes()
            else:
                self._max_ts, self._max_ts_offset = self.time_index.last_entry()
            self._max_loaded = True

    @property
    def max_timestamp(self) -> int:
        """The largest batch max timestamp in the segment (-1 when none)."""
        self._load_max()
        return self._max_ts

    @property
    def offset_of_max_timestamp(self) -> int:
        """The last offset of the (first) batch carrying ``max_timestamp``."""
        self._load_max()
        return self._max_ts_offset

    def _set_max(self, ts: int, offset: int) -> None:
        self._max_ts, self._max_ts_offset, self._max_loaded = ts, offset, True

    # --- appends ------------------------------------------------------------------------------

    def append(self, data: bytes | bytearray | memoryview, batches: list[tuple[int, int, int]]) -> None:
        """Append ``data``: whole batches described by ``(last_offset, max_timestamp, size)``."""
        position = self._size
        if position == 0 and batches:
            self._rolling_timestamp = batches[0][1]
        if not self._max_loaded:
            self._load_max()
        self.log.handle().append(data)
        # _index_batch, inlined: this runs once per produced batch.
        interval = self.index_interval_bytes
        since = self._bytes_since_index
        for last_offset, max_ts, size in batches:
            if max_ts > self._max_ts:
                self._max_ts, self._max_ts_offset = max_ts, last_offset
            if since > interval:
                self.offset_index.append(last_offset, position)
                self.time_index.maybe_append(self._max_ts, self._max_ts_offset)
                since = 0
            since += size
            position += size
        self._bytes_since_index = since
        self._size = position

    def _index_batch(self, last_offset: int, max_ts: int, position: int, size: int) -> None:
        if max_ts > self.max_timestamp:
            self._set_max(max_ts, last_offset)
        if self._bytes_since_index > self.index_interval_bytes:
            self.offset_index.append(last_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index = 0
        self._bytes_since_index += size

    @property
    def indexes_full(self) -> bool:
        """Whether either index has no room for another entry (the segment must roll)."""
        oi, ti = self.offset_index, self.time_index
        return oi.entry_count >= oi.entries_max or ti.entry_count >= ti.entries_max

    def can_hold(self, last_offset: int) -> bool:
        """Whether ``last_offset`` fits the 4-byte relative offsets of this segment's indexes."""
        return 0 <= last_offset - self.base_offset <= RELATIVE_OFFSET_MAX

    def on_roll(self) -> None:
        """The segment stops being active: record its final max timestamp, write index tails."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        self.offset_index.write_pending()
        self.time_index.write_pending()

    # --- reading headers ----------------------------------------------------------------------

    def header_at(self, position: int) -> BatchHeader | None:
        """The header of the batch at ``position``, or None at (or past) the end."""
        if position + BATCH_HEADER_BYTES > self._size:
            return None
        data = self.log.handle().read_at(position, BATCH_HEADER_BYTES)
        return _header(data, 0, position)

    def headers(self, position: int, end: int | None = None) -> Iterator[BatchHeader]:
        """Headers of consecutive batches from ``position`` (a batch boundary) up to ``end``."""
        end = self._size if end is None else min(end, self._size)
        handle = self.log.handle()
        block = b""
        block_start = 0
        while position + BATCH_HEADER_BYTES <= end:
            if not (block_start <= position and position + BATCH_HEADER_BYTES <= block_start + len(block)):
                block = handle.read_at(position, min(HEADER_READ_BYTES, end - position))
                block_start = position
            h = _header(block, position - block_start, position)
            if h is None or h.end_position > end:
                return
            yield h
            position = h.end_position

    def find_batch(self, offset: int) -> BatchHeader | None:
        """The first batch whose last offset is >= ``offset``, or None."""
        found = self._locate(offset)
        if found is None:
            return None
        _, position, block, at = found
        return _header(block, at, position)

    def locate(self, offset: int) -> BatchAt | None:
        """The first batch whose last offset is >= ``offset`` (None when there is none), and
        as ``entry`` the number of the offset-index entry the search started from.

        One index lookup, then a walk of headers read ``HEADER_READ_BYTES`` at a time: from the
        entry to the batch holding ``offset`` is at most ``index.interval.bytes`` and a batch.
        """
        found = self._locate(offset)
        if found is None:
            return None
        entry, position, block, at = found
        return (entry, position, *_WALK.unpack_from(block, at))

    def _locate(self, offset: int) -> tuple[int, int, bytes, int] | None:
        """``locate``, with the header as ``block[at:]``."""
        entry, _, position = self.offset_index.lookup_entry(offset)
        end = self._size
        handle = self.log.handle()
        block = b""
        block_start = position
        unpack_from = _WALK.unpack_from
        while position + BATCH_HEADER_BYTES <= end:
            at = position - block_start
            if at + BATCH_HEADER_BYTES > len(block):
                block = handle.read_at(position, min(HEADER_READ_BYTES, end - position))
                block_start, at = position, 0
            base, length, delta = unpack_from(block, at)
            if length < BATCH_LENGTH_MIN or position + length + BATCH_OVERHEAD_BYTES > end:
                return None
            if base + delta >= offset:
                return entry, position, block, at
            position += length + BATCH_OVERHEAD_BYTES
        return None

    def boundary_at_or_before(self, limit: int, start: int, *, start_entry: int = -1) -> BatchAt:
        """The largest batch boundary in ``[start, limit]`` (``start`` is one) and the batch that
        starts there, as ``(entry, position, base_offset, batch_length, last_offset_delta)``; the
        last three are -1 when no header can be read there (the end of the segment, or a
        damaged file). ``entry`` is the number of an offset-index entry at or before it.

        ``start_entry`` is the number of an index entry at or before ``start`` (from
        ``locate``). Entries are more than ``index_interval_bytes`` apart, so the one just below
        ``limit`` is at most ``(limit - start) / index_interval_bytes + 1`` entries further: one
        read of that stretch of the index finds it, and the walk from there to ``limit`` is
        short. (An index written with another interval only makes the walk longer.)
        """
        first = max(start_entry, 0)
        interval = self.index_interval_bytes
        last = first + (limit - start) // interval + 1 if interval > 0 else None
        entry, _, pos = self.offset_index.lookup_position_entry(limit, first=first, last=last)
        if pos < start:
            entry, pos = start_entry, start
        end = self._size
        handle = self.log.handle()
        block = b""
        block_start = position = pos
        unpack_from = _WALK.unpack_from
        while position + BATCH_HEADER_BYTES <= end:
            at = position - block_start
            if at + BATCH_HEADER_BYTES > len(block):
                block = handle.read_at(position, min(HEADER_READ_BYTES, end - position))
                block_start, at = position, 0
            base, length, delta = unpack_from(block, at)
            if length < BATCH_LENGTH_MIN:
                break
            batch_end = position + length + BATCH_OVERHEAD_BYTES
            if batch_end > limit:
                return entry, position, base, length, delta
            position = batch_end
        return entry, position, -1, -1, -1

    def last_header_from(self, position: int) -> BatchHeader | None:
        last = None
        for h in self.headers(position):
            last = h
        return last

    def read_next_offset(self) -> tuple[int, int]:
        """``(next offset, end position)`` of the segment's last whole batch, found by walking
        headers from the last index entry; ``(base_offset, 0)`` when empty."""
        _, pos = self.offset_index.last_entry()
        last = self.last_header_from(pos)
        if last is None and pos:
            last = self.last_header_from(0)
        return (last.next_offset, last.end_position) if last is not None else (self.base_offset, 0)

    # --- integrity ----------------------------------------------------------------------------

    def ensure_indexes(self, next_offset: int) -> bool:
        """Check the indexes once (the first time they are needed); rebuild if untrustworthy."""
        if self._index_checked:
            return False
        self._index_checked = True
        problem = self.offset_index.check(log_bytes=max(self._size, 1)) or self.time_index.check(
            next_offset=next_offset
        )
        if problem is None:
            return False
        self.rebuild_indexes()
        return True

    def rebuild_indexes(self) -> None:
        """Rebuild both indexes from the log's headers (the log is trusted to be whole)."""
        self.offset_index.reset()
        self.time_index.reset()
        self._set_max(-1, self.base_offset)
        self._bytes_since_index = 0
        for h in self.headers(0):
            self._index_batch(h.last_offset, h.max_timestamp, h.position, h.size_bytes)
        self._index_checked = True

    def recover(self, *, next_segment_base: int | None, start_offset: int | None = None) -> RecoveryResult:
        """Check every batch; cut the log at the first bad byte; rebuild both indexes.

        A batch is good when it is complete, its magic is 2, its CRC32C matches, its base offset
        is at least the segment's base (and at least ``start_offset`` and the previous batch's
        next offset), its offsets fit the indexes and stay below ``next_segment_base``.
        """
        self.offset_index.reset()
        self.time_index.reset()
        self._set_max(-1, self.base_offset)
        self._bytes_since_index = 0
        self._rolling_timestamp = None
        handle = self.log.handle()
        file_size = handle.size()
        expected = max(self.base_offset, start_offset if start_offset is not None else self.base_offset)
        next_offset = self.base_offset
        pos = 0
        buf = b""
        buf_start = 0
        problem: str | None = None

        def window(a: int, b: int) -> memoryview:
            nonlocal buf, buf_start
            if not (buf_start <= a and b <= buf_start + len(buf)):
                buf = handle.read_at(a, max(b - a, READ_AHEAD_BYTES))
                buf_start = a
            return memoryview(buf)[a - buf_start : b - buf_start]

        while pos < file_size:
            if file_size - pos < BATCH_HEADER_BYTES:
                problem = f"{file_size - pos} trailing bytes at {pos}"
                break
            head = window(pos, pos + BATCH_HEADER_BYTES)
            try:
                view = RecordBatchView(head)
                size = view.size_bytes
            except BatchError as e:
                problem = f"bad header at {pos}: {e}"
                break
            if size < BATCH_HEADER_BYTES or pos + size > file_size:
                problem = f"batch at {pos} of {size} bytes overruns the file"
                break
            whole = window(pos, pos + size)
            view = RecordBatchView(whole)
            try:
                view.validate()
            except BatchError as e:
                problem = f"bad batch at {pos}: {e}"
                break
            base, last = view.base_offset, view.last_offset
            if (
                base < expected
                or not self.can_hold(last)
                or (next_segment_base is not None and last >= next_segment_base)
            ):
                problem = f"batch at {pos} has offsets {base}..{last} out of order"
                break
            if pos == 0:
                self._rolling_timestamp = view.max_timestamp
            self._index_batch(last, view.max_timestamp, pos, size)
            expected = last + 1
            next_offset = last + 1
            pos += size
        truncated = file_size - pos
        if truncated:
            handle.truncate(pos)
        self._size = pos
        self._index_checked = True
        return RecoveryResult(
            valid_bytes=pos, truncated_bytes=truncated, next_offset=next_offset, problem=problem
        )

    # --- truncation, flushing, deletion -------------------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Remove the batch holding ``offset`` and all after it; the new next offset, or -1 if
        nothing in the segment was at or after ``offset``."""
        h = self.find_batch(offset)
        if h is None:
            return -1
        self.offset_index.truncate_to(h.base_offset)
        self.time_index.truncate_to(h.base_offset)
        handle = self.log.handle()
        handle.truncate(h.position)
        self._size = h.position
        self._bytes_since_index = 0
        # Recompute the max timestamp from what the time index still says.
        self._set_max(*self.time_index.last_entry())
        _, ipos = self.offset_index.last_entry()
        for hh in self.headers(ipos):
            if hh.max_timestamp > self._max_ts:
                self._set_max(hh.max_timestamp, hh.last_offset)
        if h.position == 0:
            self._rolling_timestamp = None
        return h.base_offset

    def flush(self) -> None:
        """Make the log and both indexes durable."""
        self.log.handle().sync()
        self.offset_index.sync()
        self.time_index.sync()

    def close(self) -> None:
        self.offset_index.write_pending()
        self.time_index.write_pending()
        for f in (self.log, self.offset_index.file, self.time_index.file):
            f.close()

    def mark_deleted(self) -> list[LazyFile]:
        """Rename the files ``*.deleted`` (removal happens later); return them."""
        files = [self.log, self.offset_index.file, self.time_index.file]
        for f in files:
            f.close()
            if f.cache.fs.exists(f.path):
                f.rename(f.path + DELETED_SUFFIX)
        return files

    def delete_now(self) -> None:
        for f in (self.log, self.offset_index.file, self.time_index.file):
            f.delete()


def _header(buf: bytes | memoryview, at: int, position: int) -> BatchHeader | None:
    try:
        v = RecordBatchView(buf, at)
        size = v.size_bytes
        if size < BATCH_HEADER_BYTES:
            return None
        return BatchHeader(
            position=position,
            base_offset=v.base_offset,
            last_offset=v.last_offset,
            size_bytes=size,
            max_timestamp=v.max_timestamp,
            partition_leader_epoch=v.partition_leader_epoch,
        )
    except BatchError:
        return None
