"""Storage benchmark: the partition log against plain-file baselines, in the same run and directory.

    python -m tools.bench.storage            # the full run (about a minute)
    python -m tools.bench.storage --quick    # CI smoke run: small sizes, same code paths
    python -m tools.bench.storage --dir /mnt/disk/tmp   # benchmark another disk
    python -m tools.bench.storage --syncfs-files-min 0  # group commit without syncfs waves

Cases (the issue's):

* append MB/s with 16 KiB batches (validate, assign offsets, index, write) vs ``os.write`` of the
  same bytes to a file in the same directory; target ratio >= 0.8;
* durable appends (``flush.messages=1``) with 1, 8 and 64 concurrent appenders on different
  partitions through the group committer: appends/s and p50/p99 latency; group commit should give
  64 appenders at least 10x the appends/s of one. The baseline is one write + fdatasync per append
  (what Kafka does in that mode). Each row says how many of its waves were ``syncfs`` waves (see
  ``storage.group_commit``; "dirty": waves that could not, for other data waiting for
  writeback). The disk's own ceilings are shown next to it: 64 files appended to and fdatasynced
  by plain threads, wave after wave, and the same with one ``syncfs`` a wave. Each case starts
  with the file system written back, so that none pays for an earlier one's page-cache writes;
* reading the log through the slices ``read`` returns vs ``pread`` of the file directly, 1 MiB at
  a time; target ratio >= 0.9. Both sides do what their reader must: the log side calls ``read``,
  preads each slice (what the broker does to send it) and goes on from ``next_offset``;
* recovery MB/s (a full scan with CRC checks) vs a plain read of the same files;
* opening 10,000 partitions after a clean shutdown, in a fresh process: seconds and peak RSS
  (targets: under 10 s and 200 MB).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import trio

from protocol.records import NewRecord, build_batch
from storage.config import LogConfig, LogDirConfig
from storage.fs import OsFile, OsFileSystem
from storage.group_commit import SYNCFS_FILES_MIN_DEFAULT, SYNCS_IN_PARALLEL_MAX_DEFAULT, GroupCommitter
from storage.log import AppendInfo
from storage.manager import LogManager

BATCH_BYTES = 16 * 1024
LANES = int(os.environ.get("TRAFKA_BENCH_LANES", str(SYNCS_IN_PARALLEL_MAX_DEFAULT)))
MIB = 1 << 20


class _NoSyncFile(OsFile):
    __slots__ = ()

    def sync(self) -> None:
        pass


class _NoSyncFileSystem(OsFileSystem):
    """Setup only: builds big layouts quickly by skipping fsyncs (never used for a measurement)."""

    __slots__ = ()

    def open(self, path: str, *, create: bool = False) -> OsFile:
        f = super().open(path, create=create)
        fd = os.dup(f.fileno() or 0)
        f.close()
        return _NoSyncFile(path, fd)

    def sync_dir(self, path: str) -> None:
        pass


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _batch(size: int) -> bytes:
    records = [
        NewRecord(key=b"key-%d" % i, value=b"v" * 1000, timestamp=1_700_000_000_000 + i)
        for i in range(size // 1024)
    ]
    return build_batch(records)


def _row(name: str, ours: str, base: str, ratio: float | None, target: str = "") -> None:
    r = f"{ratio:6.2f}" if ratio is not None else "      "
    print(f"  {name:<44} {ours:>22} {base:>22}  {r}  {target}")


def bench_append_read_recover(root: str, total_bytes: int) -> None:
    batch = _batch(BATCH_BYTES)
    n = max(total_bytes // len(batch), 1)
    pool = [bytearray(batch) for _ in range(32)]

    # Baseline: the same bytes with os.write to a file in the same directory. The two run in
    # alternating rounds so that page-cache writeback weighs on both alike.
    path = os.path.join(root, "plain.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    mgr = LogManager.open(OsFileSystem(), os.path.join(root, "logs"), now_ms=_now_ms())
    log = mgr.get_or_create_log("bench", 0, now_ms=0)
    base_s = ours_s = 0.0
    rounds = 8
    per_round = max(n // rounds, 1)
    n = per_round * rounds
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(per_round):
            os.write(fd, pool[i % 32])
        base_s += time.perf_counter() - t
        t = time.perf_counter()
        for i in range(per_round):
            info = log.append_as_leader(pool[i % 32], leader_epoch=0, now_ms=0)
            assert isinstance(info, AppendInfo)
        ours_s += time.perf_counter() - t
    os.close(fd)
    mb = n * len(batch) / MIB
    _row(
        "append, 16 KiB batches (MB/s)",
        f"{mb / ours_s:.0f}",
        f"{mb / base_s:.0f} os.write",
        base_s / ours_s,
        ">= 0.8",
    )

    # Reads: through the log's slices vs pread of the file, 1 MiB at a time, page cache warm.
    def read_plain() -> int:
        fd = os.open(path, os.O_RDONLY)
        got = pos = 0
        while True:
            chunk = os.pread(fd, MIB, pos)
            if not chunk:
                break
            got += len(chunk)
            pos += len(chunk)
        os.close(fd)
        return got

    def read_log() -> int:
        # What the broker does for a fetch: read, then pread each slice (to send it). The next
        # offset comes with the result; parsing the batches would be the consumer's work.
        got = 0
        offset = log.log_start_offset
        while offset < log.log_end_offset:
            res = log.read(offset, max_bytes=MIB)
            for s in res.slices:
                got += len(s.read())
            offset = res.next_offset
        return got

    read_plain()
    t = time.perf_counter()
    for _ in range(3):
        plain_bytes = read_plain()
    plain_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(3):
        log_bytes = read_log()
    log_s = time.perf_counter() - t
    assert log_bytes == plain_bytes
    mb = 3 * plain_bytes / MIB
    _row(
        "read through slices, 1 MiB (MB/s)",
        f"{mb / log_s:.0f}",
        f"{mb / plain_s:.0f} pread",
        plain_s / log_s,
        ">= 0.9",
    )

    # Recovery: an unclean open scans and checks every batch.
    mgr.close(now_ms=0)
    logs_dir = os.path.join(root, "logs")
    for name in (".kafka_cleanshutdown", "recovery-point-offset-checkpoint"):
        p = os.path.join(logs_dir, name)
        if os.path.exists(p):
            os.remove(p)
    t = time.perf_counter()
    mgr2 = LogManager.open(OsFileSystem(), logs_dir, now_ms=_now_ms())
    rec_s = time.perf_counter() - t
    assert mgr2.get_log("bench", 0).log_end_offset == log.log_end_offset  # type: ignore[union-attr]
    t = time.perf_counter()
    read_plain()
    plain_s = time.perf_counter() - t
    mb = plain_bytes / MIB
    _row("recovery scan (MB/s)", f"{mb / rec_s:.0f}", f"{mb / plain_s:.0f} read", plain_s / rec_s)
    for lg in mgr2.logs.values():
        lg.close(now_ms=0, flush=False)


async def _durable(
    root: str, appenders: int, duration_s: float, lanes: int, syncfs_files_min: int
) -> tuple[float, float, float, str]:
    mgr = LogManager.open(OsFileSystem(), root, now_ms=_now_ms(), default_config=LogConfig(flush_messages=1))
    committer = GroupCommitter(now_ms=_now_ms, syncs_in_parallel_max=lanes, syncfs_files_min=syncfs_files_min)
    batch = _batch(1024)
    latencies: list[float] = []
    done = 0

    async def appender(p: int, deadline: float) -> None:
        nonlocal done
        log = mgr.get_or_create_log("durable", p, now_ms=0)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            info = log.append_as_leader(bytearray(batch), leader_epoch=0, now_ms=0)
            assert isinstance(info, AppendInfo)
            await committer.wait_durable(log, info.last_offset)
            latencies.append(time.perf_counter() - t)
            done += 1

    for p in range(appenders):
        mgr.get_or_create_log("durable", p, now_ms=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        t0 = time.perf_counter()
        async with trio.open_nursery() as inner:
            for p in range(appenders):
                inner.start_soon(appender, p, t0 + duration_s)
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    mgr.close(now_ms=0)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    syncfs = f"syncfs {committer.syncfs_waves}/{committer.waves} waves"
    if committer.syncfs_declined:
        syncfs += f", {committer.syncfs_declined} dirty"
    return done / elapsed, p50, p99, syncfs


def _parallel_fdatasync_rate(root: str, files: int, lanes: int, duration_s: float) -> float:
    """The device's ceiling for group commit, with no Python on the path but threads: 1 KiB
    appended to each of ``files`` files, then all fdatasynced by ``lanes`` threads, wave after
    wave; returns syncs/s."""
    batch = _batch(1024)
    fds = [
        os.open(os.path.join(root, f"ceiling-{i}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for i in range(files)
    ]
    chunks = [fds[i::lanes] for i in range(lanes)]

    def sync(chunk: list[int]) -> None:
        for fd in chunk:
            os.fdatasync(fd)

    n = 0
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration_s:
            for fd in fds:
                os.write(fd, batch)
            list(pool.map(sync, chunks))
            n += files
        rate = n / (time.perf_counter() - t0)
    for fd in fds:
        os.close(fd)
    return rate


def _syncfs_rate(root: str, files: int, duration_s: float) -> float | None:
    """The same waves made durable by one ``sync_filesystem`` (``syncfs``) each; files/s, or None
    where the OS has no such call."""
    fs = OsFileSystem()
    if not fs.sync_filesystem(root):
        return None
    batch = _batch(1024)
    fds = [
        os.open(os.path.join(root, f"ceiling-syncfs-{i}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for i in range(files)
    ]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < duration_s:
        for fd in fds:
            os.write(fd, batch)
        fs.sync_filesystem(root)
        n += files
    rate = n / (time.perf_counter() - t0)
    for fd in fds:
        os.close(fd)
    return rate


def _settle(root: str) -> None:
    """Write back what earlier cases left dirty, so that no case pays for another's."""
    if not OsFileSystem().sync_filesystem(root):
        os.sync()


def bench_durable(root: str, duration_s: float, syncfs_files_min: int) -> None:
    batch = _batch(1024)
    _settle(root)
    path = os.path.join(root, "fsync-each.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < duration_s:
        os.write(fd, batch)
        os.fdatasync(fd)
        n += 1
    base_rate = n / (time.perf_counter() - t0)
    os.close(fd)
    rates = {}
    for appenders in (1, 8, 64):
        _settle(root)
        rate, p50, p99, syncfs = trio.run(
            _durable,
            os.path.join(root, f"durable-{appenders}"),
            appenders,
            duration_s,
            LANES,
            syncfs_files_min,
        )
        rates[appenders] = rate
        _row(
            f"durable appends, {appenders:2d} appenders (appends/s)",
            f"{rate:.0f} p50 {p50:.1f} p99 {p99:.1f}ms",
            f"{base_rate:.0f} fsync each",
            rate / base_rate,
            syncfs,
        )
    # What the disk allows 64 appenders on 64 partitions: 64 files to fdatasync per wave.
    _settle(root)
    ceiling = _parallel_fdatasync_rate(root, 64, LANES, duration_s)
    _row(
        f"fdatasync ceiling, 64 files, {LANES} threads (/s)",
        f"{ceiling:.0f}",
        f"{base_rate:.0f} fsync each",
        ceiling / base_rate,
    )
    _settle(root)
    syncfs_ceiling = _syncfs_rate(root, 64, duration_s)
    if syncfs_ceiling is not None:
        _row(
            "syncfs ceiling, 64 files, one syncfs a wave (/s)",
            f"{syncfs_ceiling:.0f}",
            f"{base_rate:.0f} fsync each",
            syncfs_ceiling / base_rate,
        )
    best = max(ceiling, syncfs_ceiling or 0.0)
    _row(
        "group commit gain, 64 vs 1 appenders",
        f"{rates[64] / rates[1]:.1f}x",
        f"disk {best / base_rate:.1f}x",
        None,
        ">= 10x",
    )


_IDLE_CHILD = """
import storage.manager
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(int(hwm) / 1024)
"""

_OPEN_CHILD = """
import sys, time
from storage.fs import OsFileSystem
from storage.manager import LogManager
t = time.perf_counter()
mgr = LogManager.open(OsFileSystem(), sys.argv[1], now_ms=0)
assert mgr.had_clean_shutdown and len(mgr.logs) == int(sys.argv[2])
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print(time.perf_counter() - t, int(hwm) / 1024)
"""


def bench_open(root: str, partitions: int) -> None:
    logs_dir = os.path.join(root, "many")
    fs = _NoSyncFileSystem()
    mgr = LogManager.open(fs, logs_dir, now_ms=0, dir_config=LogDirConfig(open_segments_max=256))
    batch = _batch(1024)
    for p in range(partitions):
        log = mgr.get_or_create_log("many", p, now_ms=0)
        for _ in range(3):
            info = log.append_as_leader(bytearray(batch), leader_epoch=-1, now_ms=0)
            assert isinstance(info, AppendInfo)
    mgr.close(now_ms=0)
    # A fresh interpreter's baseline RSS, to show what the open itself costs.
    base = subprocess.run(
        [sys.executable, "-c", _IDLE_CHILD],
        capture_output=True,
        text=True,
        check=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", _OPEN_CHILD, logs_dir, str(partitions)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rss = map(float, out.stdout.split())
    _row(
        f"open {partitions} partitions, clean (s / peak MB)",
        f"{seconds:.2f} s {rss:.0f} MB HWM",
        f"{float(base.stdout):.0f} MB idle",
        None,
        "< 10 s, < 200 MB",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.storage", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run with small sizes (CI)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument(
        "--syncfs-files-min",
        type=int,
        default=SYNCFS_FILES_MIN_DEFAULT,
        help=f"the group committer's syncfs_files_min, files (default {SYNCFS_FILES_MIN_DEFAULT}; 0: never syncfs)",
    )
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="trafka-bench-", dir=args.dir)
    try:
        print(f"storage benchmark in {root} ({'quick' if args.quick else 'full'} run)")
        print(f"  {'case':<44} {'trafka':>22} {'baseline':>22}  ratio  target")
        bench_append_read_recover(root, 8 * MIB if args.quick else 512 * MIB)
        bench_durable(root, 0.3 if args.quick else 3.0, args.syncfs_files_min)
        bench_open(root, 200 if args.quick else 10_000)
        print(f"  bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
