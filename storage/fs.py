"""The one filesystem interface the storage engine uses, a real one and a crash simulator.

Contract: every byte the storage engine reads or writes, and every name it creates, renames or
removes, goes through a ``FileSystem``. Files are written only at their end (``append``) and
shortened only by ``truncate``; nothing is ever overwritten in place. That is enough for segment
files, index files and checkpoints (written whole to a temp name and renamed), and it keeps the
crash model simple.

``OsFileSystem`` maps the interface onto POSIX calls (``pread``, ``write`` on an ``O_APPEND``
descriptor, ``fdatasync``, ``rename``, an ``fsync`` of the directory, and Linux's ``syncfs`` for
``sync_filesystem``).

``SimFileSystem`` keeps everything in memory and models what a kernel promises after a power cut:
a file's bytes survive only up to its last ``sync``; a created, renamed or removed name survives
only once its directory has been synced. ``crash()`` throws the rest away, optionally keeping a
random part of the unsynced tail of each file with some sectors zeroed, as a torn write does.
``sync_filesystem`` makes every file and every name durable at once, as ``syncfs`` does. Handles
opened before a crash are dead afterwards.

Thread-safety: ``OsFileSystem`` handles may be ``sync``-ed from a worker thread while the event
loop thread appends to them (the kernel serialises these). ``SimFileSystem`` takes one lock around
each call so it can be used the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import posixpath
import random
import sys
import threading
from collections.abc import Callable
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

    def sync_filesystem(self, path: str) -> bool:
        """Make every file's bytes and every name on the file system holding ``path`` durable,
        as a ``sync`` of every file and directory there would (Linux ``syncfs``), and return True;
        or return False, having done nothing, where that cannot be done in one call."""
        ...

    def writeback_pending_bytes(self, path: str) -> int | None:
        """How many written bytes a ``sync_filesystem(path)`` would have to write back (or more:
        an upper bound will do), or None where that is not known."""
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

    def sync_filesystem(self, path: str) -> bool:
        """``syncfs`` on a descriptor of ``path``'s file system, opened on first use and kept
        (one per file system and process), so that a writeback error anywhere on that file system
        since then is raised here. False off Linux and before Linux 5.8 (see ``_SYNCFS_MIN_KERNEL``)."""
        found = _syncfs_descriptor(path)
        if found is None:
            return False
        call, fd = found
        if call(fd) != 0:
            err = ctypes.get_errno() or errno.EIO
            raise OSError(err, f"syncfs({path}): {os.strerror(err)}")
        return True

    def writeback_pending_bytes(self, path: str) -> int | None:
        """Linux: ``Dirty`` plus ``Writeback`` of ``/proc/meminfo``, every file system's (the
        kernel tells no one file system's to an unprivileged reader): an upper bound. About 30 us."""
        try:
            with open("/proc/meminfo", "rb") as f:
                text = f.read()
        except OSError:
            return None
        total = 0
        found = 0
        for line in text.splitlines():
            if line.startswith((b"Dirty:", b"Writeback:")):
                fields = line.split()
                total += int(fields[1]) * (1024 if fields[-1:] == [b"kB"] else 1)
                found += 1
        return total if found == 2 else None


# ``syncfs(2)`` (Linux): one call writes back and waits for every dirty page and inode of a file
# system, commits its journal and flushes the device cache, as ``fsync`` does for one file. It
# reports writeback errors (of any file there, since the descriptor was opened) only from Linux
# 5.8 on; before that it returned 0 regardless, so it is not used there.
_SYNCFS_MIN_KERNEL = (5, 8)
_syncfs_lock = threading.Lock()
_syncfs_call: Callable[[int], int] | None = None
_syncfs_probed = False
_syncfs_fds: dict[int, int] = {}  # st_dev -> a descriptor kept open (errors are reported per descriptor)
_syncfs_pid = 0


def _kernel_version(release: str) -> tuple[int, int]:
    parts = (release.split("-", 1)[0].split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except ValueError:
        return 0, 0


def _load_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or _kernel_version(os.uname().release) < _SYNCFS_MIN_KERNEL:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    call: Callable[[int], int] = fn
    return call


def _syncfs_descriptor(path: str) -> tuple[Callable[[int], int], int] | None:
    """The ``syncfs`` function and the kept descriptor for ``path``'s file system, or None."""
    global _syncfs_call, _syncfs_probed, _syncfs_pid
    dev = os.stat(path).st_dev
    with _syncfs_lock:
        if not _syncfs_probed:
            _syncfs_call = _load_syncfs()
            _syncfs_probed = True
        if _syncfs_call is None:
            return None
        if _syncfs_pid != os.getpid():  # a forked child: its own descriptors, its own error cursor
            for inherited in _syncfs_fds.values():
                with contextlib.suppress(OSError):
                    os.close(inherited)
            _syncfs_fds.clear()
            _syncfs_pid = os.getpid()
        fd = _syncfs_fds.get(dev)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            _syncfs_fds[dev] = fd
        return _syncfs_call, fd


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

    def sync_filesystem(self, path: str) -> bool:
        """Everything becomes durable: every file's bytes (open or not) and every name."""
        with self.lock:
            if not self.exists(path):
                raise FileNotFoundError(path)
            for node in self._files.values():
                node.durable = bytes(node.data)
            self._durable_files = dict(self._files)
            self._durable_dirs = set(self._dirs)
            self.sync_count += 1
            return True

    def writeback_pending_bytes(self, path: str) -> int | None:
        """The bytes of every file beyond (or instead of) what is synced."""
        with self.lock:
            return sum(
                len(n.data) if n.data[: len(n.durable)] != n.durable else len(n.data) - len(n.durable)
                for n in self._files.values()
                if len(n.data) != len(n.durable) or n.data != n.durable
            )

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
