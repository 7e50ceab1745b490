"""The leader epoch cache: which leader epoch began at which offset, checkpointed.

Replication lives on this: a follower asks the leader (OffsetForLeaderEpoch) where its last
epoch ended and truncates there. The cache is a sorted list of ``EpochEntry(epoch, start_offset)``
with both fields strictly increasing.

Semantics (Kafka's):

* ``assign(epoch, start_offset)`` records that ``epoch`` starts at ``start_offset``. Nothing changes
  when it repeats the latest entry's epoch at the same or a later offset. Otherwise every entry
  whose epoch is ``>= epoch`` or whose start offset is ``>= start_offset`` is dropped first, so
  the list stays monotonic.
* ``end_offset_for(epoch, log_end_offset)`` answers OffsetForLeaderEpoch: ``(-1, -1)`` for an
  undefined epoch, an empty cache or an epoch above every known one; ``(epoch, log_end_offset)``
  for the latest epoch; otherwise the largest known epoch ``<=`` the requested one (or the
  requested one itself when none is) and the start offset of the first epoch above it.
* ``truncate_from_end(end_offset)`` drops entries starting at or after ``end_offset``;
  ``truncate_from_start(start_offset)`` drops entries wholly before ``start_offset`` and moves the
  last of them up to start there.

Every change is written to the ``leader-epoch-checkpoint`` before the call returns (temp, fsync,
rename, fsync directory), so an acknowledged epoch change survives a crash. Single-threaded.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from storage.checkpoint import read_epochs, write_epochs
from storage.fs import FileSystem

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochEntry:
    epoch: int
    start_offset: int


class LeaderEpochCache:
    """See the module docstring. ``path`` None keeps the cache in memory only (tests)."""

    __slots__ = ("_entries", "_fs", "_path")

    def __init__(
        self, fs: FileSystem | None, path: str | None, entries: list[EpochEntry] | None = None
    ) -> None:
        self._fs = fs
        self._path = path
        self._entries: list[EpochEntry] = list(entries or [])

    @classmethod
    def load(cls, fs: FileSystem, path: str) -> LeaderEpochCache:
        """Load from the checkpoint, keeping only a monotonic prefix if the file is not."""
        entries: list[EpochEntry] = []
        for epoch, start in read_epochs(fs, path):
            if epoch < 0 or start < 0:
                continue
            if entries and (epoch <= entries[-1].epoch or start < entries[-1].start_offset):
                break
            entries.append(EpochEntry(epoch=epoch, start_offset=start))
        return cls(fs, path, entries)

    # --- queries ------------------------------------------------------------------------------

    @property
    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    @property
    def latest(self) -> EpochEntry | None:
        return self._entries[-1] if self._entries else None

    @property
    def latest_epoch(self) -> int | None:
        return self._entries[-1].epoch if self._entries else None

    @property
    def earliest(self) -> EpochEntry | None:
        return self._entries[0] if self._entries else None

    def _index_above(self, epoch: int) -> int:
        """Index of the first entry whose epoch is greater than ``epoch``."""
        return bisect.bisect_right([e.epoch for e in self._entries], epoch)

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """``(epoch, end_offset)`` exactly as OffsetForLeaderEpoch defines it (module docstring)."""
        if requested_epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if self._entries[-1].epoch == requested_epoch:
            return requested_epoch, log_end_offset
        i = self._index_above(requested_epoch)
        if i == len(self._entries):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        higher = self._entries[i]
        if i == 0:
            return requested_epoch, higher.start_offset
        return self._entries[i - 1].epoch, higher.start_offset

    def epoch_for_offset(self, offset: int) -> int | None:
        """The epoch the record at ``offset`` was written in, if known."""
        i = bisect.bisect_right([e.start_offset for e in self._entries], offset)
        return self._entries[i - 1].epoch if i else None

    # --- changes ------------------------------------------------------------------------------

    def assign(self, *, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; True if the cache changed."""
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"epoch {epoch} and start offset {start_offset} must not be negative")
        if self._entries:
            latest = self._entries[-1]
            if latest.epoch == epoch and start_offset >= latest.start_offset:
                return False
        while self._entries and (
            self._entries[-1].epoch >= epoch or self._entries[-1].start_offset >= start_offset
        ):
            self._entries.pop()
        self._entries.append(EpochEntry(epoch=epoch, start_offset=start_offset))
        self._persist()
        return True

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop every entry whose start offset is ``>= end_offset``."""
        if end_offset < 0 or not self._entries or self._entries[-1].start_offset < end_offset:
            return
        while self._entries and self._entries[-1].start_offset >= end_offset:
            self._entries.pop()
        self._persist()

    def truncate_from_start(self, start_offset: int) -> None:
        """Drop entries wholly before ``start_offset``; the last one dropped restarts there."""
        removed: EpochEntry | None = None
        while self._entries and self._entries[0].start_offset <= start_offset:
            removed = self._entries.pop(0)
        if removed is None:
            return
        self._entries.insert(0, EpochEntry(epoch=removed.epoch, start_offset=start_offset))
        self._persist()

    def clear(self) -> None:
        if self._entries:
            self._entries.clear()
            self._persist()

    def _persist(self) -> None:
        if self._fs is not None and self._path is not None:
            write_epochs(self._fs, self._path, [(e.epoch, e.start_offset) for e in self._entries])
