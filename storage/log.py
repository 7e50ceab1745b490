"""A partition's log: an ordered list of segments, for a leader and for a follower.

What it owns: the segments of one ``<topic>-<partition>`` directory, the partition's leader epoch
cache, and five offsets::

    log_start_offset <= high_watermark <= log_end_offset
    recovery_point   <= durable_offset <= log_end_offset

* ``log_end_offset`` (LEO): the offset the next record gets.
* ``log_start_offset``: the first offset a reader may ask for (retention and DeleteRecords move it).
* ``high_watermark``: stored here, advanced by the caller (replication), checkpointed by the
  log manager; reads for consumers pass it as their upper bound.
* ``durable_offset``: every byte of every batch below it is fsynced (group commit moves it).
* ``recovery_point``: below it, logs *and* indexes are fsynced; recovery after a crash starts
  here. Checkpointed by the log manager.

Appends. ``append_as_leader`` validates every batch first (whole, magic 2, CRC32C, offsets
consistent with the record count, ``max.message.bytes``) and writes nothing if one fails, returning
an ``AppendRejected`` with Kafka's error code. It then rewrites each batch's base offset and leader
epoch (and, for ``LogAppendTime`` topics, its max timestamp) in place -- the CRC does not cover the
first two -- and writes the whole buffer with one ``append``. ``append_as_follower`` keeps the
leader's offsets and epochs and accepts only batches that continue the log exactly. An
``AppendInfo.flush_needed`` tells the caller that the append may be acknowledged only once
``durable_offset`` passes it (``flush.messages``); ``storage.group_commit`` does that wait.

Reads return ``FileSlice`` s of segment files, batch-aligned, so a fetch can send file bytes
unparsed. Error codes are returned as values (``ReadResult.error``, ``AppendRejected.error``).

Durability: ``begin_sync``/``end_sync`` split a flush into a plan whose ``execute`` (the fsyncs)
may run on another thread; everything else is single-threaded and takes ``now_ms`` from its
caller.
"""

from __future__ import annotations

import bisect
import dataclasses
import posixpath
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.error_codes import ErrorCode
from protocol.records import (
    BATCH_OVERHEAD_BYTES,
    BatchError,
    RecordBatchView,
    iter_batches,
)
from storage.checkpoint import LEADER_EPOCH_CHECKPOINT, PARTITION_METADATA, read_partition_metadata
from storage.config import LogConfig
from storage.epoch import LeaderEpochCache
from storage.files import FileCache, LazyFile
from storage.fs import FileHandle, FileSystem
from storage.layout import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    TMP_SUFFIX,
    parse_segment_name,
)
from storage.segment import BatchAt, BatchHeader, LogSegment

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
MAX_TIMESTAMP = -3
NO_TIMESTAMP = -1

# The header fields an append needs, in one unpack: batch_length (at 8), last_offset_delta (at
# 23), max_timestamp (at 35). And the rewrite of base_offset (0) and partition_leader_epoch (12)
# in one pack, batch_length (8) written back as it was.
_LENGTH_DELTA_MAX_TS = struct.Struct(">8xi11xi8xq")
_OFFSET_LENGTH_EPOCH = struct.Struct(">qii")
READ_HINTS_MAX = 4  # where recent reads ended, per log: the next fetches start there


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendInfo:
    """What an accepted append did."""

    first_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    max_timestamp_ms: int
    batch_count: int
    size_bytes: int
    flush_needed: bool  # acknowledge only once durable_offset > last_offset


_APPEND_INFO_SETTERS = tuple(getattr(AppendInfo, f.name).__set__ for f in dataclasses.fields(AppendInfo))


def _new_append_info(
    first_offset: int,
    last_offset: int,
    log_append_time_ms: int,
    log_start_offset: int,
    max_timestamp_ms: int,
    batch_count: int,
    size_bytes: int,
    flush_needed: bool,
) -> AppendInfo:
    """``AppendInfo(...)`` at a third of the cost (one per produce): a frozen dataclass's
    ``__init__`` goes through ``object.__setattr__`` per field; the slots' own descriptors do
    the same job directly. Arguments in field order."""
    info = object.__new__(AppendInfo)
    s0, s1, s2, s3, s4, s5, s6, s7 = _APPEND_INFO_SETTERS
    s0(info, first_offset)
    s1(info, last_offset)
    s2(info, log_append_time_ms)
    s3(info, log_start_offset)
    s4(info, max_timestamp_ms)
    s5(info, batch_count)
    s6(info, size_bytes)
    s7(info, flush_needed)
    return info


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendRejected:
    """Nothing was written. ``batch_index`` is the first offending batch (-1: the whole append)."""

    error: ErrorCode
    message: str
    batch_index: int = -1


@dataclass(frozen=True, slots=True)
class FileSlice:
    """``length`` bytes at ``position`` of a segment file: whole batches, ready to send."""

    file: LazyFile
    position: int
    length: int

    def read(self) -> bytes:
        return self.file.handle().read_at(self.position, self.length)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadResult:
    """What ``PartitionLog.read`` found. ``next_offset`` is where the next read in sequence
    starts: the offset after the last returned batch, ``start_offset`` when no slice was
    returned, -1 with an error."""

    error: ErrorCode
    slices: tuple[FileSlice, ...]
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    next_offset: int = -1

    @property
    def size_bytes(self) -> int:
        return sum(s.length for s in self.slices)

    def read_bytes(self) -> bytes:
        return b"".join(s.read() for s in self.slices)


@dataclass(frozen=True, slots=True)
class TimestampOffset:
    timestamp: int
    offset: int


@dataclass(slots=True, eq=False)
class SyncPlan:
    """The fsyncs that make a log durable up to ``durable_offset`` (see ``PartitionLog.begin_sync``)."""

    log: PartitionLog
    fs: FileSystem
    files: list[LazyFile]
    handles: list[FileHandle]
    dirs: list[str]
    durable_offset: int
    recovery_point: int | None
    generation: int
    done: bool = field(default=False)

    def execute(self) -> None:
        """The blocking part; may run on a worker thread."""
        for h in self.handles:
            h.sync()
        for d in self.dirs:
            self.fs.sync_dir(d)


class PartitionLog:
    """See the module docstring. Build with ``PartitionLog.load``."""

    __slots__ = (
        "fs",
        "cache",
        "dir",
        "topic",
        "partition",
        "config",
        "epochs",
        "log_start_offset",
        "log_end_offset",
        "high_watermark",
        "recovery_point",
        "durable_offset",
        "topic_id",
        "_segments",
        "_bases",
        "_dir_dirty",
        "_generation",
        "_last_flush_ms",
        "_deleted",
        "_syncing",
        "_read_hints",
        "recovered_bytes_truncated",
    )

    def __init__(self, cache: FileCache, dir: str, topic: str, partition: int, config: LogConfig) -> None:
        self.fs = cache.fs
        self.cache = cache
        self.dir = dir
        self.topic = topic
        self.partition = partition
        self.config = config
        self.epochs = LeaderEpochCache(self.fs, posixpath.join(dir, LEADER_EPOCH_CHECKPOINT))
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.high_watermark = 0
        self.recovery_point = 0
        self.durable_offset = 0
        self.topic_id = None
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self._dir_dirty = False
        self._generation = 0
        self._last_flush_ms = 0
        self._deleted: list[tuple[int, list[LazyFile]]] = []
        self._syncing = 0
        # Where recent reads ended: next offset -> (segment, the batch there). Cleared by
        # truncations; a hint whose segment is gone (retention) no longer matches.
        self._read_hints: dict[int, tuple[LogSegment, BatchAt]] = {}
        self.recovered_bytes_truncated = 0

    # --- loading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        cache: FileCache,
        dir: str,
        topic: str,
        partition: int,
        config: LogConfig,
        *,
        now_ms: int,
        clean_shutdown: bool,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        high_watermark: int = 0,
    ) -> PartitionLog:
        """Open (creating if absent) the log in ``dir``, recovering it unless ``clean_shutdown``.

        Recovery scans every segment from the one holding ``recovery_point``, cuts the log at the
        first bad byte and drops the segments after it, rebuilds indexes, trims the epoch cache to
        the log end, and fsyncs what it recovered. A segment that starts above the offset where
        the previous one ends marks lost bytes (offsets are contiguous in Trafka's logs, which
        are never compacted): the log ends there too.
        """
        fs = cache.fs
        log = cls(cache, dir, topic, partition, config)
        created = not fs.exists(dir)
        if created:
            fs.makedirs(dir)
            fs.sync_dir(posixpath.dirname(dir) or ".")
        log.epochs = LeaderEpochCache.load(fs, posixpath.join(dir, LEADER_EPOCH_CHECKPOINT))
        log.topic_id = read_partition_metadata(fs, posixpath.join(dir, PARTITION_METADATA))  # type: ignore[assignment]
        bases, swapped = log._tidy_directory()
        kw = {
            "index_interval_bytes": config.index_interval_bytes,
            "index_bytes_max": config.segment_index_bytes,
        }
        for base in sorted(bases):
            log._add_segment(LogSegment.open(cache, dir, base, now_ms=now_ms, **kw))
        if not log._segments:
            seg = LogSegment.create(cache, dir, max(log_start_offset, 0), now_ms=now_ms, **kw)
            log._add_segment(seg)
            fs.sync_dir(dir)
            log.log_end_offset = seg.base_offset
        elif clean_shutdown and not swapped:
            active = log._segments[-1]
            active.ensure_indexes(active.base_offset + (1 << 62))
            log.log_end_offset, end = active.read_next_offset()
            if end != active.size:
                # The shutdown was not as clean as the marker says: recover the active segment.
                log.log_end_offset = active.recover(next_segment_base=None).next_offset
                active.flush()
        else:
            log._recover(recovery_point, swapped)
        leo = log.log_end_offset
        log.log_start_offset = max(log_start_offset, log._segments[0].base_offset)
        if log.log_start_offset > leo:
            log.truncate_fully_and_start_at(log.log_start_offset, now_ms=now_ms)
        log.high_watermark = min(max(high_watermark, log.log_start_offset), log.log_end_offset)
        log.epochs.truncate_from_end(log.log_end_offset)
        if log.epochs.earliest is not None and log.epochs.earliest.start_offset < log.log_start_offset:
            log.epochs.truncate_from_start(log.log_start_offset)
        log.recovery_point = log.durable_offset = log.log_end_offset
        log._last_flush_ms = now_ms
        return log

    def _tidy_directory(self) -> tuple[set[int], set[int]]:
        """Deal with leftovers and return the base offsets of live segments (and swapped-in ones).

        ``.tmp``, ``.deleted`` and ``.cleaned`` files are removed (an interrupted checkpoint write,
        deletion or compaction). A ``.log.swap`` file is a finished compaction that was not yet
        renamed into place: it replaces the segment of the same name, its indexes are rebuilt,
        and segments it covers are dropped during recovery. Index files without a log are removed.
        """
        fs = self.fs
        names = fs.listdir(self.dir)
        for name in names:
            if name.endswith((TMP_SUFFIX, DELETED_SUFFIX, CLEANED_SUFFIX)) or (
                name.endswith(SWAP_SUFFIX) and not name.endswith(LOG_SUFFIX + SWAP_SUFFIX)
            ):
                fs.remove(posixpath.join(self.dir, name))
        swapped: set[int] = set()
        for name in names:
            if name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
                target = name[: -len(SWAP_SUFFIX)]
                parsed = parse_segment_name(target)
                if parsed is None:
                    continue
                fs.rename(posixpath.join(self.dir, name), posixpath.join(self.dir, target))
                for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                    p = posixpath.join(self.dir, target[: -len(LOG_SUFFIX)] + suffix)
                    if fs.exists(p):
                        fs.remove(p)
                swapped.add(parsed[0])
        bases: set[int] = set()
        index_only: list[tuple[int, str]] = []
        for name in fs.listdir(self.dir):
            parsed = parse_segment_name(name)
            if parsed is None:
                continue
            if parsed[1] == LOG_SUFFIX:
                bases.add(parsed[0])
            else:
                index_only.append((parsed[0], name))
        for base, name in index_only:
            if base not in bases:
                fs.remove(posixpath.join(self.dir, name))
        if swapped:
            fs.sync_dir(self.dir)
        return bases, swapped

    def _recover(self, recovery_point: int, swapped: set[int]) -> None:
        first = self._segment_index_for(recovery_point)
        if swapped:
            first = min(first, min(self._bases.index(b) for b in swapped))
        i = first
        truncated = 0
        prev_next: int | None = None
        while i < len(self._segments):
            seg = self._segments[i]
            if prev_next is not None and seg.base_offset < prev_next:
                # Covered by a swapped-in segment before it: drop.
                self._drop_segment(i)
                continue
            if prev_next is not None and seg.base_offset > prev_next:
                # The previous segment lost its tail: offsets are contiguous in our logs, so the
                # valid prefix ends there and later segments (written after the lost bytes) go.
                while len(self._segments) > i:
                    self._drop_segment(i)
                break
            nxt = self._bases[i + 1] if i + 1 < len(self._segments) else None
            if seg.base_offset in swapped:
                nxt = None
            result = seg.recover(next_segment_base=nxt)
            truncated += result.truncated_bytes
            prev_next = result.next_offset
            seg.flush()
            if result.problem is not None:
                # Everything after the first bad byte is gone, including later segments.
                while len(self._segments) > i + 1:
                    self._drop_segment(i + 1)
                break
            i += 1
        # Recovery always runs to the last segment, which is then the active one.
        assert prev_next is not None
        self.log_end_offset = prev_next
        self.recovered_bytes_truncated = truncated
        self.fs.sync_dir(self.dir)

    def _drop_segment(self, i: int) -> None:
        seg = self._segments.pop(i)
        self._bases.pop(i)
        seg.delete_now()

    def _add_segment(self, seg: LogSegment) -> None:
        assert not self._bases or seg.base_offset > self._bases[-1]
        self._segments.append(seg)
        self._bases.append(seg.base_offset)

    # --- queries ------------------------------------------------------------------------------

    @property
    def segments(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def _segment_index_for(self, offset: int) -> int:
        """Index of the last segment whose base offset is <= ``offset`` (0 if none)."""
        return max(bisect.bisect_right(self._bases, offset) - 1, 0)

    def _next_base(self, i: int) -> int:
        return self._bases[i + 1] if i + 1 < len(self._bases) else self.log_end_offset

    # --- appends ------------------------------------------------------------------------------

    def append_as_leader(
        self, records: bytes | bytearray | memoryview, *, leader_epoch: int, now_ms: int
    ) -> AppendInfo | AppendRejected:
        """Validate, assign offsets and the leader epoch, and append. See the module docstring.

        Theory of operation (this is the produce hot path, so it is one plain loop): each batch
        is validated by ``RecordBatchView.validate`` and the four header fields storage needs are
        read with one ``struct`` unpack; nothing is rewritten until every batch has passed. On a
        ``BatchError`` the append is refused through ``_parse``, the general walk, which finds the
        same first bad batch and words the refusal exactly.
        """
        buf = _writable(records)
        mv = memoryview(buf)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        cfg = self.config
        total = len(mv)
        message_bytes_max = cfg.max_message_bytes
        found: list[tuple[int, int, int, int]] = []  # position, batch_length, last_offset_delta, max_ts
        too_large = -1
        pos = 0
        try:
            while pos < total:
                RecordBatchView(mv, pos).validate(from_client=True)
                length, delta, ts = _LENGTH_DELTA_MAX_TS.unpack_from(mv, pos)
                if length + BATCH_OVERHEAD_BYTES > message_bytes_max and too_large < 0:
                    too_large = len(found)
                found.append((pos, length, delta, ts))
                pos += length + BATCH_OVERHEAD_BYTES
        except BatchError:
            _, rejected = self._parse(mv, from_client=True)
            assert rejected is not None
            return rejected
        if too_large >= 0:
            size = found[too_large][1] + BATCH_OVERHEAD_BYTES
            return AppendRejected(
                error=ErrorCode.MESSAGE_TOO_LARGE,
                message=f"batch of {size} bytes exceeds max.message.bytes={message_bytes_max}",
                batch_index=too_large,
            )
        if total > cfg.segment_bytes:
            return AppendRejected(
                error=ErrorCode.RECORD_LIST_TOO_LARGE,
                message=f"{total} bytes exceed segment.bytes={cfg.segment_bytes}",
            )
        first = offset = self.log_end_offset
        append_time = now_ms if cfg.log_append_time else NO_TIMESTAMP
        if not found:
            return self._info(first, first - 1, append_time, NO_TIMESTAMP, 0, 0)
        infos: list[tuple[int, int, int]] = []
        max_ts = NO_TIMESTAMP
        for pos, length, delta, ts in found:
            # Base offset and leader epoch are outside the CRC: rewritten in place, with the
            # batch length between them written back unchanged.
            _OFFSET_LENGTH_EPOCH.pack_into(mv, pos, offset, length, leader_epoch)
            if append_time != NO_TIMESTAMP:
                RecordBatchView(mv, pos).set_log_append_time(append_time)
                ts = append_time
            offset += delta + 1
            infos.append((offset - 1, ts, length + BATCH_OVERHEAD_BYTES))
            if ts > max_ts:
                max_ts = ts
        if leader_epoch >= 0:
            self.epochs.assign(epoch=leader_epoch, start_offset=first)
        self._write(mv, infos, first, max_ts, now_ms)
        return _new_append_info(
            first,
            offset - 1,
            append_time,
            self.log_start_offset,
            max_ts,
            len(found),
            total,
            offset - self.durable_offset >= cfg.flush_messages,
        )

    def append_as_follower(
        self, records: bytes | bytearray | memoryview, *, now_ms: int
    ) -> AppendInfo | AppendRejected:
        """Append the leader's batches as they are: offsets must continue the log exactly."""
        buf = records if isinstance(records, bytes | bytearray) else bytes(records)
        views, rejected = self._parse(buf, from_client=False)
        if rejected is not None:
            return rejected
        expected = self.log_end_offset
        infos: list[tuple[int, int, int]] = []
        max_ts = NO_TIMESTAMP
        for i, v in enumerate(views):
            if v.base_offset != expected:
                kind = "overlaps" if v.base_offset < expected else "leaves a gap after"
                return AppendRejected(
                    error=ErrorCode.OFFSET_OUT_OF_RANGE,
                    message=f"batch at offset {v.base_offset} {kind} the log ending at {expected}",
                    batch_index=i,
                )
            expected = v.next_offset
            infos.append((expected - 1, v.max_timestamp, v.size_bytes))
            max_ts = max(max_ts, v.max_timestamp)
        first = self.log_end_offset
        if not views:
            return self._info(first, first - 1, NO_TIMESTAMP, max_ts, 0, 0)
        for v in views:
            if v.partition_leader_epoch >= 0:
                self.epochs.assign(epoch=v.partition_leader_epoch, start_offset=v.base_offset)
        self._write(buf, infos, first, max_ts, now_ms)
        return self._info(first, expected - 1, NO_TIMESTAMP, max_ts, len(views), len(buf))

    def _parse(
        self, buf: bytes | bytearray | memoryview, *, from_client: bool
    ) -> tuple[list[RecordBatchView], AppendRejected | None]:
        views: list[RecordBatchView] = []
        it = iter_batches(buf)
        try:
            for v in it:
                v.validate(from_client=from_client)
                views.append(v)
        except BatchError as e:
            return views, AppendRejected(
                error=e.kind.error_code, message=str(e), batch_index=len(views)
            )
        if it.trailing_bytes:
            return views, AppendRejected(
                error=ErrorCode.CORRUPT_MESSAGE,
                message=f"{it.trailing_bytes} bytes after the last whole batch",
                batch_index=len(views),
            )
        return views, None

    def _info(
        self, first: int, last: int, append_time: int, max_ts: int, count: int, size: int
    ) -> AppendInfo:
        return _new_append_info(
            first,
            last,
            append_time,
            self.log_start_offset,
            max_ts,
            count,
            size,
            count > 0 and self.log_end_offset - self.durable_offset >= self.config.flush_messages,
        )

    def _write(
        self,
        buf: bytes | bytearray | memoryview,
        infos: list[tuple[int, int, int]],
        first: int,
        max_ts: int,
        now_ms: int,
    ) -> None:
        last = infos[-1][0]
        self._maybe_roll(len(buf), max_ts, last, now_ms).append(buf, infos)
        self.log_end_offset = last + 1

    # --- rolling ------------------------------------------------------------------------------

    def _maybe_roll(self, size: int, max_ts: int, last_offset: int, now_ms: int) -> LogSegment:
        """Roll if the append of ``size`` bytes ending at ``last_offset`` must go to a new
        segment; return the segment it goes to."""
        seg = self._segments[-1]
        seg_size = seg.size
        if seg_size == 0 and seg.base_offset == self.log_end_offset:
            return seg
        cfg = self.config
        if (
            seg_size + size > cfg.segment_bytes
            or seg.indexes_full
            or not seg.can_hold(last_offset)
            or (seg_size and self._segment_ms_passed(seg, max_ts, now_ms))
        ):
            return self.roll(now_ms=now_ms)
        return seg

    def _segment_ms_passed(self, seg: LogSegment, max_ts: int, now_ms: int) -> bool:
        first_ts = seg.rolling_timestamp()
        if first_ts is not None and first_ts >= 0 and max_ts >= 0:
            waited = max_ts - first_ts
        else:
            waited = now_ms - seg.created_ms
        cfg = self.config
        # The jitter is at most segment.jitter.ms: compute it only when it can matter.
        return waited > cfg.segment_ms - cfg.segment_jitter_ms and waited > cfg.segment_ms - self._jitter(seg)

    def _jitter(self, seg: LogSegment) -> int:
        if self.config.segment_jitter_ms <= 0:
            return 0
        # Deterministic per segment: spreads the rolls of many partitions without a random source.
        return (seg.base_offset * 2654435761) % (
            min(self.config.segment_jitter_ms, self.config.segment_ms - 1) + 1
        )

    def roll(self, *, now_ms: int) -> LogSegment:
        """Start a new active segment at the log end offset (no-op if the active one is empty)."""
        active = self._segments[-1]
        if active.is_empty and active.base_offset == self.log_end_offset:
            return active
        active.on_roll()
        # The old segment's indexes just changed: the next full flush must include them.
        self.recovery_point = min(self.recovery_point, active.base_offset)
        seg = LogSegment.create(
            self.cache,
            self.dir,
            self.log_end_offset,
            index_interval_bytes=self.config.index_interval_bytes,
            index_bytes_max=self.config.segment_index_bytes,
            now_ms=now_ms,
        )
        if active.is_empty:
            # An empty active segment below the log end (after truncation): replace it.
            self._segments.pop()
            self._bases.pop()
            active.delete_now()
        self._add_segment(seg)
        self._dir_dirty = True
        return seg

    # --- reads --------------------------------------------------------------------------------

    def read(
        self,
        start_offset: int,
        *,
        max_bytes: int,
        upper_bound_offset: int | None = None,
        min_one_batch: bool = True,
    ) -> ReadResult:
        """Batch-aligned file slices from the batch holding ``start_offset``.

        At most ``max_bytes`` unless the first batch alone is larger and ``min_one_batch``; never a
        batch whose last offset reaches ``upper_bound_offset`` (the high watermark or last stable
        offset; the log end when None). ``OFFSET_OUT_OF_RANGE`` outside [log start, log end].
        ``ReadResult.next_offset`` is where the next read in sequence starts.

        Cost (no record is parsed, no batch read): per segment, one offset-index lookup and a
        short header walk to find the start (``LogSegment.locate``); when ``max_bytes`` cuts the
        read, one read of the stretch of index that can hold the end and a short walk
        (``LogSegment.boundary_at_or_before``); a bound inside the segment costs one more
        ``locate``. A read that ends inside a segment remembers where (``_read_hints``, a few
        per log), so the next read from its ``next_offset`` -- a consumer's or follower's next
        fetch -- skips the start lookup.
        """
        leo = self.log_end_offset
        if start_offset < self.log_start_offset or start_offset > leo:
            return self._read_result(ErrorCode.OFFSET_OUT_OF_RANGE, [], -1)
        bound = leo if upper_bound_offset is None else min(upper_bound_offset, leo)
        slices: list[FileSlice] = []
        remaining = max_bytes
        offset = start_offset
        next_offset = start_offset
        i = self._segment_index_for(offset)
        hint = self._read_hints.get(offset)
        while i < len(self._segments) and offset < bound:
            seg = self._segments[i]
            seg_next = self._next_base(i)
            seg.ensure_indexes(seg_next)
            if hint is not None and hint[0] is seg:
                found: BatchAt | None = hint[1]
            else:
                found = seg.locate(offset)
            hint = None
            if found is None:
                i += 1
                offset = max(offset, seg_next)
                continue
            entry, start, first_base, first_length, first_delta = found
            if first_base + first_delta >= bound:
                break
            if bound >= seg_next:
                at_bound: BatchAt | None = None
                bound_pos = seg.size
            else:
                at_bound = seg.locate(bound)
                bound_pos = seg.size if at_bound is None else at_bound[1]
            if start + remaining >= bound_pos:
                end, at_end = bound_pos, at_bound
                # Offsets are contiguous across segments: the next one starts where this one ends.
                end_next = seg_next if at_bound is None else at_bound[2]
            else:
                at_end = seg.boundary_at_or_before(start + remaining, start, start_entry=entry)
                end, end_next = at_end[1], at_end[2]
                if end > start and end_next < 0:
                    end = start  # no readable header after the window (a damaged file)
                if end == start:
                    at_end = None
                    if not slices and min_one_batch:
                        end = start + first_length + BATCH_OVERHEAD_BYTES
                        end_next = first_base + first_delta + 1
            if end > start:
                slices.append(FileSlice(seg.log, start, end - start))
                remaining -= end - start
                next_offset = end_next
                if at_end is not None:
                    self._remember_read_end(seg, at_end)
            if end < bound_pos or remaining <= 0:
                break
            i += 1
            offset = seg_next
        return self._read_result(ErrorCode.NONE, slices, next_offset)

    def _remember_read_end(self, seg: LogSegment, at: BatchAt) -> None:
        hints = self._read_hints
        if len(hints) >= READ_HINTS_MAX:
            del hints[next(iter(hints))]
        hints[at[2]] = (seg, at)

    def _read_result(self, error: ErrorCode, slices: list[FileSlice], next_offset: int) -> ReadResult:
        return ReadResult(
            error=error,
            slices=tuple(slices),
            log_start_offset=self.log_start_offset,
            log_end_offset=self.log_end_offset,
            high_watermark=self.high_watermark,
            next_offset=next_offset,
        )

    # --- offsets by time ----------------------------------------------------------------------

    def offset_for_timestamp(self, timestamp: int) -> TimestampOffset | None:
        """ListOffsets: -2 earliest, -1 latest (the log end), -3 the record with the largest
        timestamp, else the first record whose timestamp is >= ``timestamp`` (None past the end).

        The time index finds the batch; only that one batch is read and its records parsed (for a
        compressed batch, decompressed) to pick the record. Offsets are clamped to the log start.
        """
        if timestamp == EARLIEST_TIMESTAMP:
            return TimestampOffset(NO_TIMESTAMP, self.log_start_offset)
        if timestamp == LATEST_TIMESTAMP:
            return TimestampOffset(NO_TIMESTAMP, self.log_end_offset)
        if timestamp == MAX_TIMESTAMP:
            best: LogSegment | None = None
            for seg in self._segments:
                if not seg.is_empty and (best is None or seg.max_timestamp > best.max_timestamp):
                    best = seg
            if best is None or best.max_timestamp < 0:
                return None
            h = best.find_batch(best.offset_of_max_timestamp)
            if h is None:
                return None
            target = best.max_timestamp
            found = _record_in_batch(best, h, lambda ts: ts >= target)
            return TimestampOffset(found.timestamp, max(found.offset, self.log_start_offset))
        if timestamp < 0:
            return None
        for i, seg in enumerate(self._segments):
            if seg.is_empty or seg.max_timestamp < timestamp:
                continue
            seg.ensure_indexes(self._next_base(i))
            _, ts_offset = seg.time_index.lookup(timestamp)
            _, pos = seg.offset_index.lookup(ts_offset)
            for h in seg.headers(pos):
                if h.max_timestamp >= timestamp and h.last_offset >= self.log_start_offset:
                    found = _record_in_batch(seg, h, lambda ts: ts >= timestamp)
                    return TimestampOffset(found.timestamp, max(found.offset, self.log_start_offset))
        return None

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: ``(epoch, end_offset)``; see ``LeaderEpochCache.end_offset_for``."""
        return self.epochs.end_offset_for(epoch, self.log_end_offset)

    # --- offsets moved by the caller ----------------------------------------------------------

    def update_high_watermark(self, offset: int) -> int:
        """Set the high watermark, clamped to [log start, log end]; returns the value set."""
        self.high_watermark = min(max(offset, self.log_start_offset), self.log_end_offset)
        return self.high_watermark

    def truncate_to(self, offset: int, *, now_ms: int) -> None:
        """Remove everything at and after ``offset`` (a follower diverged from its leader).

        A batch that holds ``offset`` is removed whole, so the log end may land below ``offset``
        when it is not a batch boundary.
        """
        if offset >= self.log_end_offset:
            return
        if offset < self._bases[0]:
            self.truncate_fully_and_start_at(offset, now_ms=now_ms)
            return
        self._generation += 1
        dropped = False
        while len(self._segments) > 1 and self._bases[-1] >= offset:
            seg = self._segments.pop()
            self._bases.pop()
            seg.delete_now()
            dropped = True
        seg = self._segments[-1]
        cut = seg.truncate_to(offset)
        new_end = cut if cut >= 0 else seg.read_next_offset()[0]
        seg.log.handle().sync()
        if dropped:
            self.fs.sync_dir(self.dir)
        self.log_end_offset = new_end
        self.log_start_offset = min(self.log_start_offset, offset, new_end)
        self._after_truncation()

    def truncate_fully_and_start_at(self, offset: int, *, now_ms: int) -> None:
        """Delete every segment and restart the log, empty, at ``offset``."""
        self._generation += 1
        for seg in self._segments:
            seg.delete_now()
        self._segments.clear()
        self._bases.clear()
        seg = LogSegment.create(
            self.cache,
            self.dir,
            offset,
            index_interval_bytes=self.config.index_interval_bytes,
            index_bytes_max=self.config.segment_index_bytes,
            now_ms=now_ms,
        )
        self._add_segment(seg)
        self.fs.sync_dir(self.dir)
        self.log_start_offset = offset
        self.log_end_offset = offset
        self.epochs.clear()
        self._after_truncation()

    def _after_truncation(self) -> None:
        self._read_hints.clear()
        leo = self.log_end_offset
        self.high_watermark = min(self.high_watermark, leo)
        self.recovery_point = min(self.recovery_point, leo)
        self.durable_offset = min(self.durable_offset, leo)
        self.epochs.truncate_from_end(leo)

    def delete_records_before(self, offset: int, *, now_ms: int) -> ErrorCode:
        """DeleteRecords: move the log start offset up to ``offset`` (at most the high watermark)
        and delete the segments wholly below it."""
        if offset > self.high_watermark:
            return ErrorCode.OFFSET_OUT_OF_RANGE
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self.epochs.truncate_from_start(offset)
            self._delete_segments_below_start(now_ms)
        return ErrorCode.NONE

    # --- retention ----------------------------------------------------------------------------

    def delete_expired_segments(self, *, now_ms: int) -> int:
        """Apply ``retention.ms``, ``retention.bytes`` and the log start offset; return how many
        segments were scheduled for deletion.

        Only segments wholly below the high watermark go. The active segment goes only when it
        too has expired (it is rolled first, so the log keeps an empty active segment).
        """
        deleted = self._delete_segments_below_start(now_ms)
        cfg = self.config
        if cfg.retention_ms >= 0:
            deleted += self._delete_oldest(
                lambda seg, _: now_ms - seg.max_timestamp > cfg.retention_ms, now_ms
            )
        if cfg.retention_bytes >= 0:
            excess = self.size_bytes - cfg.retention_bytes

            def too_big(seg: LogSegment, _: int) -> bool:
                nonlocal excess
                if excess - seg.size >= 0:
                    excess -= seg.size
                    return True
                return False

            deleted += self._delete_oldest(too_big, now_ms)
        return deleted

    def _delete_segments_below_start(self, now_ms: int) -> int:
        return self._delete_oldest(lambda _seg, next_base: next_base <= self.log_start_offset, now_ms)

    def _delete_oldest(self, predicate: Callable[[LogSegment, int], bool], now_ms: int) -> int:
        doomed = 0
        while doomed < len(self._segments):
            seg = self._segments[doomed]
            next_base = self._next_base(doomed)
            if seg.is_empty or next_base > self.high_watermark or not predicate(seg, next_base):
                break
            doomed += 1
        if doomed == 0:
            return 0
        if doomed == len(self._segments):
            self.roll(now_ms=now_ms)
        for _ in range(doomed):
            seg = self._segments.pop(0)
            self._bases.pop(0)
            self._deleted.append((now_ms + self.config.file_delete_delay_ms, seg.mark_deleted()))
        new_start = self._bases[0]
        if new_start > self.log_start_offset:
            self.log_start_offset = new_start
            self.epochs.truncate_from_start(new_start)
        self.high_watermark = max(self.high_watermark, self.log_start_offset)
        # Make the renames durable now: a deleted segment that came back after a crash, maybe
        # without its unsynced bytes, would look like lost data in the middle of the log.
        self.fs.sync_dir(self.dir)
        return doomed

    def remove_deleted_files(self, *, now_ms: int) -> int:
        """Remove ``.deleted`` files whose ``file.delete.delay.ms`` has passed; return how many."""
        removed = 0
        keep: list[tuple[int, list[LazyFile]]] = []
        for due, files in self._deleted:
            if due <= now_ms:
                for f in files:
                    f.delete()
                    removed += 1
            else:
                keep.append((due, files))
        self._deleted = keep
        return removed

    # --- durability ---------------------------------------------------------------------------

    def needs_sync(self) -> bool:
        return self.durable_offset < self.log_end_offset or self._dir_dirty

    def flush_due(self, *, now_ms: int) -> bool:
        """Whether ``flush.ms`` (or ``flush.messages``) asks for a flush now."""
        if self.recovery_point >= self.log_end_offset and not self._dir_dirty:
            return False
        return (
            now_ms - self._last_flush_ms >= self.config.flush_ms
            or self.log_end_offset - self.durable_offset >= self.config.flush_messages
        )

    def begin_sync(self, *, full: bool = False) -> SyncPlan:
        """Plan the fsyncs that make everything appended so far durable.

        ``full`` also syncs indexes and moves the recovery point; otherwise only the log files of
        the segments holding unsynced offsets are synced (and the directory if a segment was
        created or deleted). The handles are pinned until ``end_sync`` or ``abort_sync``.
        """
        start = self.recovery_point if full else self.durable_offset
        files: list[LazyFile] = []
        for seg in self._segments[self._segment_index_for(start) :] if start < self.log_end_offset else []:
            files.append(seg.log)
            if full:
                seg.offset_index.write_pending()
                seg.time_index.write_pending()
                files += [seg.offset_index.file, seg.time_index.file]
        handles = [f.pin() for f in files]
        dirs = [self.dir] if self._dir_dirty else []
        self._dir_dirty = False
        self._syncing += 1
        return SyncPlan(
            log=self,
            fs=self.fs,
            files=files,
            handles=handles,
            dirs=dirs,
            durable_offset=self.log_end_offset,
            recovery_point=self.log_end_offset if full else None,
            generation=self._generation,
        )

    def end_sync(self, plan: SyncPlan, *, now_ms: int) -> None:
        """Record a finished plan: advance ``durable_offset`` (and the recovery point)."""
        self._release(plan)
        if plan.generation != self._generation:
            return  # truncated meanwhile: the plan's offsets no longer mean the same bytes
        self.durable_offset = max(self.durable_offset, min(plan.durable_offset, self.log_end_offset))
        if plan.recovery_point is not None:
            self.recovery_point = max(self.recovery_point, min(plan.recovery_point, self.log_end_offset))
            self._last_flush_ms = now_ms

    def abort_sync(self, plan: SyncPlan) -> None:
        """A plan failed or was abandoned: release it; what it would have synced is dirty again."""
        self._release(plan)
        if plan.dirs:
            self._dir_dirty = True

    def _release(self, plan: SyncPlan) -> None:
        if not plan.done:
            plan.done = True
            self._syncing -= 1
            for f in plan.files:
                f.unpin()

    def flush(self, *, now_ms: int) -> None:
        """Make everything durable now, on this thread (logs, indexes, directory)."""
        plan = self.begin_sync(full=True)
        try:
            plan.execute()
        except BaseException:
            self.abort_sync(plan)
            raise
        self.end_sync(plan, now_ms=now_ms)

    def close(self, *, now_ms: int, flush: bool = True) -> None:
        """Record the active segment's final time index entry, flush everything (unless told
        not to: the log is being deleted) and close every file."""
        self._segments[-1].on_roll()
        if flush:
            self.flush(now_ms=now_ms)
        for seg in self._segments:
            seg.close()
        for _, files in self._deleted:
            for f in files:
                f.close()


def _record_in_batch(seg: LogSegment, h: BatchHeader, wanted: Callable[[int], bool]) -> TimestampOffset:
    """The first record of batch ``h`` whose timestamp is ``wanted`` (the batch's base offset and
    max timestamp if its records cannot be read, which recovery makes unlikely)."""
    view = RecordBatchView(seg.log.handle().read_at(h.position, h.size_bytes))
    try:
        for record in view.records():
            if wanted(record.timestamp):
                return TimestampOffset(record.timestamp, record.offset)
    except BatchError:
        pass
    return TimestampOffset(h.max_timestamp, h.base_offset)


def _writable(records: bytes | bytearray | memoryview) -> bytearray | memoryview:
    if isinstance(records, bytearray):
        return records
    if isinstance(records, memoryview) and not records.readonly:
        return records
    return bytearray(records)
