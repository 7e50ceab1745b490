"""Lazily opened files under one budget of open descriptors.

A broker with thousands of partitions cannot keep every segment's three files open. A
``LazyFile`` names a file and opens it through its ``FileCache`` on first use; the cache keeps at
most ``open_files_max`` handles and closes the least recently used one that is not pinned when it
must open another. Pinning (``pin``/``unpin``) keeps a handle open while a worker thread syncs it.

Contract: the cache is used from one thread; only ``FileHandle.sync`` of a pinned handle may run
elsewhere. A ``LazyFile`` may be renamed (its segment scheduled for deletion) and still read.
"""

from __future__ import annotations

from collections import OrderedDict

from storage.fs import FileHandle, FileSystem


class FileCache:
    """An LRU of open handles, bounded by ``open_files_max``."""

    __slots__ = ("fs", "open_files_max", "_lru", "opens")

    def __init__(self, fs: FileSystem, *, open_files_max: int = 1024) -> None:
        if open_files_max < 1:
            raise ValueError("open_files_max must be at least 1")
        self.fs = fs
        self.open_files_max = open_files_max
        self._lru: OrderedDict[LazyFile, None] = OrderedDict()
        self.opens = 0

    @property
    def open_count(self) -> int:
        return len(self._lru)

    def _opened(self, lf: LazyFile) -> None:
        self.opens += 1
        self._lru[lf] = None
        if len(self._lru) > self.open_files_max:
            for victim in list(self._lru):
                if len(self._lru) <= self.open_files_max:
                    break
                if victim is not lf and victim.pins == 0:
                    victim.close()

    def _touched(self, lf: LazyFile) -> None:
        self._lru.move_to_end(lf)

    def _closed(self, lf: LazyFile) -> None:
        self._lru.pop(lf, None)


class LazyFile:
    """A file opened on demand. ``handle()`` returns an open handle, opening it if needed."""

    __slots__ = ("cache", "path", "_handle", "pins", "_close_pending")

    def __init__(self, cache: FileCache, path: str, handle: FileHandle | None = None) -> None:
        self.cache = cache
        self.path = path
        self._handle = handle
        self.pins = 0
        self._close_pending = False
        if handle is not None:
            cache._opened(self)

    @classmethod
    def create(cls, cache: FileCache, path: str) -> LazyFile:
        """Create (or open) the file now and return it open."""
        return cls(cache, path, cache.fs.open(path, create=True))

    @property
    def is_open(self) -> bool:
        return self._handle is not None

    def handle(self) -> FileHandle:
        h = self._handle
        if h is None:
            h = self.cache.fs.open(self.path)
            self._handle = h
            self.cache._opened(self)
        else:
            self.cache._lru.move_to_end(self)  # _touched, inlined: once per append and read
        return h

    def size(self) -> int:
        h = self._handle
        if h is not None:
            return h.size()
        return self.cache.fs.file_size(self.path)

    def pin(self) -> FileHandle:
        h = self.handle()
        self.pins += 1
        return h

    def unpin(self) -> None:
        assert self.pins > 0
        self.pins -= 1
        if self.pins == 0 and self._close_pending:
            self.close()

    def close(self) -> None:
        """Close the handle now, or when the last pin is released."""
        if self.pins:
            self._close_pending = True
            return
        self._close_pending = False
        h = self._handle
        if h is not None:
            self._handle = None
            self.cache._closed(self)
            h.close()

    def rename(self, new_path: str) -> None:
        self.cache.fs.rename(self.path, new_path)
        self.path = new_path

    def delete(self) -> None:
        """Close and remove the file (absent is fine)."""
        self.close()
        if self.cache.fs.exists(self.path):
            self.cache.fs.remove(self.path)
