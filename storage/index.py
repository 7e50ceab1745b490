"""Sparse indexes of one segment: offset -> file position, timestamp -> offset.

Both are files of fixed-width big-endian entries, Kafka's formats:

* ``.index``: 8 bytes per entry, ``int32 offset - base_offset``, ``int32 position``. The offset is
  the *last* offset of the batch that starts at ``position`` (as Kafka writes it). Offsets and
  positions both strictly increase.
* ``.timeindex``: 12 bytes per entry, ``int64 timestamp``, ``int32 offset - base_offset``. An
  entry says "up to this offset, the largest timestamp seen is this"; timestamps strictly
  increase, offsets never decrease.

Theory of operation: the log is the truth and the indexes are derived from it, so they may lag
or be rebuilt at will. Entries are appended to an in-memory tail (``pending``) and written to the
file in groups (when the tail fills, and at every flush, roll and close), so an append costs no
extra system call most of the time. Lookups are binary searches that read the file with
``read_at`` (nothing is mapped or cached), plus the tail; a segment's index therefore costs no
memory while it is idle. Index files are never preallocated: their size is their content.

A search costs few system calls: like Kafka's "warm section", it first tries the last
``SEARCH_BLOCK_BYTES`` of entries (where tailing readers and appends look), otherwise it bisects
with one-entry reads until the candidates fit in one block, then reads that block with one
``read_at`` and bisects it in memory. A caller that knows where to look (a fetch's end lies at
most ``max_bytes / index.interval.bytes`` entries after its start) narrows the range first, and
the search is then a single read.

Contract: single-threaded; ``check()`` reports an index that cannot be trusted, and the segment
then rebuilds it from the log.
"""

from __future__ import annotations

import struct

from storage.files import LazyFile

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
PENDING_ENTRIES_MAX = 64
SEARCH_BLOCK_BYTES = 8192  # a search ends with one read of at most this much index (Kafka's warm section)
RELATIVE_OFFSET_MAX = (1 << 31) - 1


class _FixedIndex:
    """Shared mechanics: a file of fixed-width entries plus an unwritten tail."""

    __slots__ = ("file", "base_offset", "entries_max", "entry_count", "_file_entries", "_pending", "_last")

    ENTRY: struct.Struct = OFFSET_ENTRY

    def __init__(self, file: LazyFile, *, base_offset: int, index_bytes_max: int, file_entries: int) -> None:
        self.file = file
        self.base_offset = base_offset
        self.entries_max = max(1, index_bytes_max // self.ENTRY.size)
        self._file_entries = file_entries
        self.entry_count = file_entries  # in the file plus in the pending tail
        self._pending = bytearray()
        self._last: tuple[int, int] | None = None

    @property
    def is_full(self) -> bool:
        return self.entry_count >= self.entries_max

    def _raw(self, i: int) -> tuple[int, int]:
        size = self.ENTRY.size
        if i >= self._file_entries:
            a, b = self.ENTRY.unpack_from(self._pending, (i - self._file_entries) * size)
        else:
            data = self.file.handle().read_at(i * size, size)
            if len(data) != size:
                raise OSError(f"{self.file.path}: entry {i} is beyond the end of the file")
            a, b = self.ENTRY.unpack(data)
        return a, b

    def _entries_bytes(self, first: int, end: int) -> bytes | bytearray:
        """Entries ``[first, end)`` as raw bytes: one read of the file part, plus the tail."""
        size = self.ENTRY.size
        file_entries = self._file_entries
        if first >= file_entries:
            return self._pending[(first - file_entries) * size : (end - file_entries) * size]
        want = (min(end, file_entries) - first) * size
        data = self.file.handle().read_at(first * size, want)
        if len(data) != want:
            raise OSError(f"{self.file.path}: entries {first}..{end} are beyond the end of the file")
        if end > file_entries:
            data += self._pending[: (end - file_entries) * size]
        return data

    def _append_raw(self, a: int, b: int) -> None:
        self._pending += self.ENTRY.pack(a, b)
        self.entry_count += 1
        if len(self._pending) >= PENDING_ENTRIES_MAX * self.ENTRY.size:
            self.write_pending()

    def write_pending(self) -> None:
        """Write the in-memory tail to the file."""
        if self._pending:
            self.file.handle().append(self._pending)
            self._file_entries += len(self._pending) // self.ENTRY.size
            self._pending.clear()

    def sync(self) -> None:
        self.write_pending()
        self.file.handle().sync()

    def _truncate_entries(self, n: int) -> None:
        size = self.ENTRY.size
        if n >= self._file_entries:
            del self._pending[(n - self._file_entries) * size :]
            self.entry_count = min(self.entry_count, n)
        else:
            self._pending.clear()
            self.file.handle().truncate(n * size)
            self._file_entries = self.entry_count = n
        self._last = None

    def reset(self) -> None:
        """Drop every entry (before a rebuild)."""
        self._pending.clear()
        self.file.handle().truncate(0)
        self._file_entries = self.entry_count = 0
        self._last = None

    def _search(self, key: int, field: int, first: int = 0, last: int | None = None) -> tuple[int, int, int]:
        """``(i, a, b)``: the last entry ``i`` in ``[first, last]`` whose ``field`` is <= key (raw
        values) and its two raw fields; ``(-1, 0, 0)`` when there is none. See the module
        docstring for what it reads."""
        lo = first
        hi = self.entry_count - 1 if last is None else min(last, self.entry_count - 1)
        found = (-1, 0, 0)
        block_entries = SEARCH_BLOCK_BYTES // self.ENTRY.size
        if hi - lo >= block_entries:
            # The warm section: the last block, where most lookups land.
            mid = hi - block_entries + 1
            entry = self._raw(mid)
            if entry[field] <= key:
                found, lo = (mid, *entry), mid + 1
            else:
                hi = mid - 1
        while hi - lo >= block_entries:
            mid = (lo + hi) // 2
            entry = self._raw(mid)
            if entry[field] <= key:
                found, lo = (mid, *entry), mid + 1
            else:
                hi = mid - 1
        if lo > hi:
            return found
        block = self._entries_bytes(lo, hi + 1)
        unpack_from = self.ENTRY.unpack_from
        size = self.ENTRY.size
        a, b = 0, hi - lo
        while a <= b:
            m = (a + b) // 2
            entry = unpack_from(block, m * size)
            if entry[field] <= key:
                found, a = (lo + m, *entry), m + 1
            else:
                b = m - 1
        return found

    def _check_shape(self) -> str | None:
        size = self.file.size()
        if size % self.ENTRY.size:
            return f"size {size} is not a multiple of {self.ENTRY.size}"
        if size // self.ENTRY.size != self._file_entries:
            return "entry count disagrees with the file size"
        if self.entry_count > self.entries_max:
            return "more entries than the index may hold"
        return None


class OffsetIndex(_FixedIndex):
    """``.index``: the position of the batch ending at an offset, every ``index.interval.bytes``."""

    __slots__ = ()
    ENTRY = OFFSET_ENTRY

    def last_entry(self) -> tuple[int, int]:
        """``(offset, position)`` of the last entry, or ``(base_offset, 0)`` when empty."""
        if self._last is None:
            n = self.entry_count
            if n == 0:
                return self.base_offset, 0
            rel, pos = self._raw(n - 1)
            self._last = (self.base_offset + rel, pos)
        return self._last

    def append(self, offset: int, position: int) -> None:
        rel = offset - self.base_offset
        assert 0 <= rel <= RELATIVE_OFFSET_MAX, (offset, self.base_offset)
        if self.entry_count:
            last = self._last or self.last_entry()
            assert offset > last[0] and position > last[1], (offset, position, last)
        self._pending += OFFSET_ENTRY.pack(rel, position)
        self.entry_count += 1
        if len(self._pending) >= PENDING_ENTRIES_MAX * OFFSET_ENTRY.size:
            self.write_pending()
        self._last = (offset, position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """The last entry whose offset is <= ``offset``, or ``(base_offset, 0)``."""
        _, found_offset, pos = self.lookup_entry(offset)
        return found_offset, pos

    def lookup_entry(self, offset: int) -> tuple[int, int, int]:
        """``(entry number, offset, position)`` of the last entry whose offset is <= ``offset``;
        ``(-1, base_offset, 0)`` when there is none."""
        i, rel, pos = self._search(offset - self.base_offset, 0)
        if i < 0:
            return -1, self.base_offset, 0
        return i, self.base_offset + rel, pos

    def lookup_position(self, position: int, *, first: int = 0, last: int | None = None) -> tuple[int, int]:
        """The last entry whose position is <= ``position``, or ``(base_offset, 0)``.

        ``first`` and ``last`` (entry numbers) narrow the search: a caller that knows the
        answer lies there saves reads; if it does not, a lower entry may come back (still one
        whose position is <= ``position``), or ``(base_offset, 0)``.
        """
        _, offset, pos = self.lookup_position_entry(position, first=first, last=last)
        return offset, pos

    def lookup_position_entry(
        self, position: int, *, first: int = 0, last: int | None = None
    ) -> tuple[int, int, int]:
        """``lookup_position`` with the entry's number first (-1 for ``(base_offset, 0)``)."""
        i, rel, pos = self._search(position, 1, max(first, 0), last)
        if i < 0:
            return -1, self.base_offset, 0
        return i, self.base_offset + rel, pos

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose offset is >= ``offset``."""
        self._truncate_entries(self._search(offset - 1 - self.base_offset, 0)[0] + 1)

    def check(self, *, log_bytes: int) -> str | None:
        """Why this index cannot be trusted for a log of ``log_bytes``, or None if it can."""
        problem = self._check_shape()
        if problem or self.entry_count == 0:
            return problem
        rel, pos = self._raw(self.entry_count - 1)
        if rel < 0 or pos < 0 or pos >= log_bytes:
            return f"last entry ({rel}, {pos}) lies outside the log of {log_bytes} bytes"
        if self.entry_count > 1:
            prev_rel, prev_pos = self._raw(self.entry_count - 2)
            if prev_rel >= rel or prev_pos >= pos:
                return "last entries are not increasing"
        return None


class TimeIndex(_FixedIndex):
    """``.timeindex``: the largest timestamp seen up to an offset, when it grows."""

    __slots__ = ()
    ENTRY = TIME_ENTRY

    def last_entry(self) -> tuple[int, int]:
        """``(timestamp, offset)`` of the last entry, or ``(-1, base_offset)`` when empty."""
        if self._last is None:
            n = self.entry_count
            if n == 0:
                return -1, self.base_offset
            ts, rel = self._raw(n - 1)
            self._last = (ts, self.base_offset + rel)
        return self._last

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Append unless ``timestamp`` is not above the last entry's."""
        last_ts, last_offset = self.last_entry()
        if self.entry_count and timestamp <= last_ts:
            return
        if timestamp < 0:
            return
        if self.entry_count and offset < last_offset:
            return
        rel = offset - self.base_offset
        assert 0 <= rel <= RELATIVE_OFFSET_MAX, (offset, self.base_offset)
        self._append_raw(timestamp, rel)
        self._last = (timestamp, offset)

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """The last entry whose timestamp is <= ``timestamp``, or ``(-1, base_offset)``."""
        i, ts, rel = self._search(timestamp, 0)
        if i < 0:
            return -1, self.base_offset
        return ts, self.base_offset + rel

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose offset is >= ``offset``."""
        # Offsets never decrease: binary search for the first entry at or past ``offset``.
        lo, hi = 0, self.entry_count - 1
        keep = 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.base_offset + self._raw(mid)[1] < offset:
                keep = mid + 1
                lo = mid + 1
            else:
                hi = mid - 1
        self._truncate_entries(keep)

    def check(self, *, next_offset: int) -> str | None:
        problem = self._check_shape()
        if problem or self.entry_count == 0:
            return problem
        ts, rel = self._raw(self.entry_count - 1)
        if rel < 0 or self.base_offset + rel >= max(next_offset, self.base_offset + 1):
            return f"last entry's offset {self.base_offset + rel} is outside the segment"
        if self.entry_count > 1:
            prev_ts, prev_rel = self._raw(self.entry_count - 2)
            if prev_ts >= ts or prev_rel > rel:
                return "last entries are not increasing"
        return None
