"""The one filesystem interface the storage engine uses, a real one and a crash simulator.

Contract: every byte the storage engine reads or writes, and every name it creates, renames or
removes, goes through a ``FileSystem``. Files are written only at their end (``append``) and
shortened only by ``truncate``; nothing is ever overwritten in place. That is enough for segment
files, index files and checkpoints (written whole to a temp name and renamed), and it keeps the
crash model simple.

``OsFileSystem`` maps the interface onto POSIX calls (``pread``, ``write`` on an ``O_APPEND``
descriptor, ``fdatasync``, ``rename``, an ``fsync`` of the directory).

``SimFileSystem`` keeps everything in memory and models what a kernel promises after a power cut:
a file's bytes survive only up to its last ``sync``; a created, renamed or removed name survives
only once its directory has been synced. ``crash()`` throws the rest away, optionally keeping a
random part of the unsynced tail of each file with some sectors zeroed, as a torn write does.
Handles opened before a crash are dead afterwards.

Thread-safety: ``OsFileSystem`` handles may be ``sync``-ed from a worker thread while the event
loop thread appends to them (the kernel serialises these). ``SimFileSystem`` takes one lock around
each call so it can be used the same way.
"""

from __future__ import annotations

import os
import posixpath
import random
import threading
from dataclasses import dataclass, field
from typing import Protocol


class FileHandle(Protocol):
    """An open file: positional reads, appends at the end, truncation and durability."""

    @property
    def path(self) -> str: ...

    def read_at(self, position: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``position``; fewer only at the end of the file."""
        ...

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the end of the file."""
        ...

    def size(self) -> int: ...

    def truncate(self, size: int) -> None: ...

    def sync(self) -> None:
        """Make every byte written so far, and the file's size, durable."""
        ...

    def fileno(self) -> int | None:
        """The OS descriptor (for ``sendfile``), or None when there is none."""
        ...

    def close(self) -> None: ...


class FileSystem(Protocol):
    """Names and handles. Paths are plain strings joined with ``/``."""

    def open(self, path: str, *, create: bool = False) -> FileHandle:
        """Open for reading and appending; raise FileNotFoundError unless it exists or ``create``."""
        ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def file_size(self, path: str) -> int: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None:
        """Create ``path`` and any missing parents; no error if it already exists."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (both in the same directory tree)."""
        ...

    def remove(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def sync_dir(self, path: str) -> None:
        """Make the names in directory ``path`` durable."""
        ...


def read_whole(fs: FileSystem, path: str) -> bytes:
    """The whole content of a small file (checkpoints, metadata)."""
    handle = fs.open(path)
    try:
        return handle.read_at(0, handle.size())
    finally:
        handle.close()


def write_atomically(fs: FileSystem, path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content.

    Written to ``<path>.tmp``, synced, renamed over ``path``, and the directory synced.
    """
    tmp = path + ".tmp"
    if fs.exists(tmp):
        fs.remove(tmp)
    handle = fs.open(tmp, create=True)
    try:
        handle.append(data)
        handle.sync()
    finally:
        handle.close()
    fs.rename(tmp, path)
    fs.sync_dir(posixpath.dirname(path) or ".")


# --- the real thing ------------------------------------------------------------------------------


class OsFile:
    """A descriptor opened ``O_RDWR | O_APPEND``; the size is tracked to avoid ``fstat`` calls."""

    __slots__ = ("_fd", "_path", "_size")

    def __init__(self, path: str, fd: int) -> None:
        self._path = path
        self._fd = fd
        self._size = os.fstat(fd).st_size

    @property
    def path(self) -> str:
        return self._path

    def read_at(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = os.write(self._fd, data)
        self._size += n
        if n < len(data):
            view = memoryview(data)[n:]
            while view:
                n = os.write(self._fd, view)
                self._size += n
                view = view[n:]

    def size(self) -> int:
        return self._size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._size = size

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def fileno(self) -> int | None:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsFileSystem:
    """The real filesystem."""

    __slots__ = ()

    def open(self, path: str, *, create: bool = False) -> OsFile:
        flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT
        return OsFile(path, os.open(path, flags, 0o644))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def file_size(self, path: str) -> int:
        return os.stat(path).st_size

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the crash simulator -------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Node:
    """One file's content: what the page cache holds and what has reached the disk."""

    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


class SimFile:
    """A handle on a ``SimFileSystem`` node; dead after the file system crashes."""

    __slots__ = ("_fs", "_generation", "_node", "_path", "_closed")

    def __init__(self, fs: SimFileSystem, path: str, node: _Node) -> None:
        self._fs = fs
        self._path = path
        self._node = node
        self._generation = fs.generation
        self._closed = False

    @property
    def path(self) -> str:
        return self._path

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"I/O on closed file {self._path}")
        if self._generation != self._fs.generation:
            raise OSError(f"handle on {self._path} did not survive the crash")

    def read_at(self, position: int, size: int) -> bytes:
        with self._fs.lock:
            self._check()
            return bytes(self._node.data[position : position + size])

    def append(self, data: bytes | bytearray | memoryview) -> None:
        with self._fs.lock:
            self._check()
            self._node.data += data

    def size(self) -> int:
        with self._fs.lock:
            self._check()
            return len(self._node.data)

    def truncate(self, size: int) -> None:
        with self._fs.lock:
            self._check()
            if size < len(self._node.data):
                del self._node.data[size:]
            else:
                self._node.data += bytes(size - len(self._node.data))

    def sync(self) -> None:
        with self._fs.lock:
            self._check()
            self._node.durable = bytes(self._node.data)
            self._fs.sync_count += 1

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self._closed = True


SECTOR_BYTES = 512


class SimFileSystem:
    """An in-memory file system that can lose everything not yet synced.

    ``crash(rng)`` reverts the namespace to its last synced state per directory and every file to
    its synced bytes. With ``torn=True`` each file additionally keeps a random prefix of its
    unsynced appended tail in which some 512-byte sectors read back as zeros: what a disk that
    wrote some of the pages before the power went may leave.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.generation = 0
        self.sync_count = 0
        self._files: dict[str, _Node] = {}
        self._dirs: set[str] = {"/"}
        self._durable_files: dict[str, _Node] = {}
        self._durable_dirs: set[str] = {"/"}

    @staticmethod
    def _norm(path: str) -> str:
        return posixpath.normpath(posixpath.join("/", path))

    def open(self, path: str, *, create: bool = False) -> SimFile:
        p = self._norm(path)
        with self.lock:
            node = self._files.get(p)
            if node is None:
                if not create:
                    raise FileNotFoundError(path)
                if posixpath.dirname(p) not in self._dirs:
                    raise FileNotFoundError(posixpath.dirname(p))
                node = _Node()
                self._files[p] = node
            return SimFile(self, path, node)

    def exists(self, path: str) -> bool:
        p = self._norm(path)
        with self.lock:
            return p in self._files or p in self._dirs

    def is_dir(self, path: str) -> bool:
        with self.lock:
            return self._norm(path) in self._dirs

    def file_size(self, path: str) -> int:
        with self.lock:
            node = self._files.get(self._norm(path))
            if node is None:
                raise FileNotFoundError(path)
            return len(node.data)

    def listdir(self, path: str) -> list[str]:
        p = self._norm(path)
        with self.lock:
            if p not in self._dirs:
                raise FileNotFoundError(path)
            names = [posixpath.basename(f) for f in self._files if posixpath.dirname(f) == p]
            names += [posixpath.basename(d) for d in self._dirs if d != p and posixpath.dirname(d) == p]
            return sorted(names)

    def makedirs(self, path: str) -> None:
        p = self._norm(path)
        with self.lock:
            while p not in self._dirs:
                if p in self._files:
                    raise FileExistsError(path)
                self._dirs.add(p)
                p = posixpath.dirname(p)

    def rename(self, src: str, dst: str) -> None:
        s, d = self._norm(src), self._norm(dst)
        with self.lock:
            if s in self._dirs:
                # A directory: move it and everything under it.
                prefix = s + "/"
                for f in [f for f in self._files if f.startswith(prefix)]:
                    self._files[d + f[len(s) :]] = self._files.pop(f)
                for sub in [x for x in self._dirs if x == s or x.startswith(prefix)]:
                    self._dirs.discard(sub)
                    self._dirs.add(d + sub[len(s) :])
                return
            node = self._files.pop(s, None)
            if node is None:
                raise FileNotFoundError(src)
            self._files[d] = node

    def remove(self, path: str) -> None:
        with self.lock:
            if self._files.pop(self._norm(path), None) is None:
                raise FileNotFoundError(path)

    def rmdir(self, path: str) -> None:
        p = self._norm(path)
        with self.lock:
            if any(posixpath.dirname(f) == p for f in self._files) or any(
                posixpath.dirname(d) == p for d in self._dirs if d != p
            ):
                raise OSError(f"directory not empty: {path}")
            self._dirs.discard(p)

    def sync_dir(self, path: str) -> None:
        p = self._norm(path)
        with self.lock:
            for f in [f for f in self._durable_files if posixpath.dirname(f) == p]:
                del self._durable_files[f]
            for f, node in self._files.items():
                if posixpath.dirname(f) == p:
                    self._durable_files[f] = node
            self._durable_dirs = {d for d in self._durable_dirs if posixpath.dirname(d) != p or d == p}
            self._durable_dirs |= {d for d in self._dirs if posixpath.dirname(d) == p and d != p}
            self._durable_dirs.add(p)
            self.sync_count += 1

    def crash(self, rng: random.Random | None = None, *, torn: bool = False) -> None:
        """Lose everything that was not synced; see the class docstring."""
        with self.lock:
            self.generation += 1
            # A directory whose parent's name was never made durable is gone, with its files.
            dirs = {"/"}
            for d in sorted(self._durable_dirs, key=len):
                if posixpath.dirname(d) in dirs:
                    dirs.add(d)
            self._dirs = dirs
            self._files = {f: n for f, n in self._durable_files.items() if posixpath.dirname(f) in dirs}
            for node in self._files.values():
                content = bytearray(node.durable)
                tail = node.data[len(node.durable) :]
                if torn and rng is not None and tail and node.data[: len(node.durable)] == node.durable:
                    # Some sectors of the tail reached the disk, some did not (they read as zeros).
                    kept = bytearray(tail[: rng.randrange(len(tail) + 1)])
                    start = len(content)
                    first_sector = start // SECTOR_BYTES
                    last_sector = (start + len(kept)) // SECTOR_BYTES
                    for sector in range(first_sector, last_sector + 1):
                        if rng.random() < 0.3:
                            lo = max(sector * SECTOR_BYTES, start) - start
                            hi = min((sector + 1) * SECTOR_BYTES - start, len(kept))
                            kept[lo:hi] = bytes(max(hi - lo, 0))
                    content += kept
                node.data = content
                node.durable = bytes(content)
            self._durable_dirs = set(dirs)
            self._durable_files = dict(self._files)
