"""Group commit: durable appends across partitions share fsync waves, off the event loop.

The only module of ``storage`` that imports trio. The broker starts ``GroupCommitter.run`` in its
nursery and, for each append whose ``AppendInfo.flush_needed`` is set (always, with
``flush.messages=1``), awaits ``wait_durable(log, info.last_offset)`` before acknowledging.

Theory of operation: a waiter adds its log to the next wave, wakes the committer and waits on
that wave's one event (one event per wave, not per waiter). A *wave* takes every log added to
it, asks each for a ``SyncPlan`` (the log files holding unsynced bytes, plus the partition
directory if a segment was created), runs all their fsyncs at once off the event loop (one
thread hop per wave; that thread fans them out to ``syncs_in_parallel_max`` threads, so the file
system can merge them into few journal commits and the disk overlap its flushes), records each
plan and sets the event; every waiter then re-checks its offset (and joins the next wave in the
rare case it is not durable yet). Appends that arrive while a wave runs wait for the next one, so
with N concurrent appenders a wave costs about one fsync latency and serves up to N appends,
where fsyncing each append on its own (Kafka with ``flush.messages=1``) costs N latencies --
when they share files. Appenders on N different partitions need N fdatasyncs a wave, and what
the disk does with parallel fdatasyncs of different files bounds the gain; so a wave with at
least ``syncfs_files_min`` files to sync may instead make one ``FileSystem.sync_filesystem`` call
(Linux ``syncfs``) per log directory: one journal commit and cache flush for every file and name
there, the plans' directory syncs included, whatever the number of files.

``syncfs`` also writes back everything else dirty on that file system (other topics' page-cache
appends, other programs), so a busy neighbour makes it slow. Guards:

* a wave does not use it while more than ``syncfs_dirty_bytes_max`` bytes wait for writeback
  (as ``FileSystem.writeback_pending_bytes`` tells): it fdatasyncs instead, and ``run`` starts a
  syncfs nobody waits for (one at a time, one per ``syncfs_probe_ms``), after which later waves'
  syncfs have only what was written since. One wave never pays for a large backlog;
* the committer times its waves: for waves of ``syncfs_files_min`` files or more it keeps, for
  each way, the seconds per synced file of its last few waves and uses the way whose median is
  lower (one slow wave does not switch, a few do); when the other way has not run for
  ``syncfs_probe_ms``, one such wave runs that way to re-measure it (older figures are dropped).

Where ``sync_filesystem`` is not available (not Linux, Linux before 5.8) the first attempt says so
and every wave fdatasyncs its files. ``syncfs`` fails on a writeback error anywhere on the file
system, not only in the wave's files: the wave fails, as it would for its own files (and a
background syncfs's error fails the next wave, since that error is reported only once).

``run_maintenance`` is the matching background loop for ``LogManager`` chores: retention,
flushes due by ``flush.ms`` or roll, checkpoints, delayed deletes; its fsyncs and checkpoint
writes run on worker threads too.

Contract: one committer per ``LogManager``; all methods are called from the trio thread; a
failed fsync raises ``OSError`` in every waiter of that wave (the broker then takes the log dir
offline, as Kafka does).
"""

from __future__ import annotations

import posixpath
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import trio

from storage.fs import FileSystem
from storage.log import PartitionLog, SyncPlan
from storage.manager import LogManager

# Parallel fdatasyncs of different files let the file system share journal commits and the device
# overlap its flushes. Measured on the dev VM (ext4 on virtio, 64 files a wave): 8 threads give
# about 16,500 syncs/s, 16 about 20,000, 32 and 64 fewer again.
SYNCS_IN_PARALLEL_MAX_DEFAULT = 16

# Files a wave must sync before one ``syncfs`` may replace its fdatasyncs. Measured on the dev VM
# (ext4 on virtio, quiet neighbours): one syncfs costs about what one fdatasync does with 1 dirty
# file (0.2 ms), 0.2 ms with 4 and 0.8 ms with 64, where parallel fdatasyncs take 0.5 and 2.8 ms.
SYNCFS_FILES_MIN_DEFAULT = 4
# How often (milliseconds) a wave of that size re-measures the way of syncing not in use.
SYNCFS_PROBE_MS_DEFAULT = 1000
# No syncfs while more than this (bytes) waits for writeback (see ``writeback_pending_bytes``): it
# would have to write all of it first. The dev VM writes back about 1.9 GB/s: 16 MiB add up to
# 9 ms to one wave (paid once: the next syncfs has only what was written since). Its neighbours
# keep 20 to 50 MB dirty between the kernel's own writebacks (every 30 s).
SYNCFS_DIRTY_BYTES_MAX_DEFAULT = 16 << 20
_COST_SAMPLES = 5  # the waves whose median is a way's cost


class _Wave:
    """The next (or a running) wave: the logs it will sync, and the one event its waiters share."""

    __slots__ = ("logs", "done", "error")

    def __init__(self) -> None:
        self.logs: dict[PartitionLog, None] = {}  # insertion-ordered set
        self.done = trio.Event()
        self.error: OSError | None = None


class GroupCommitter:
    """See the module docstring."""

    def __init__(
        self,
        *,
        now_ms: Callable[[], int],
        syncs_in_parallel_max: int = SYNCS_IN_PARALLEL_MAX_DEFAULT,
        syncfs_files_min: int = SYNCFS_FILES_MIN_DEFAULT,
        syncfs_probe_ms: int = SYNCFS_PROBE_MS_DEFAULT,
        syncfs_dirty_bytes_max: int = SYNCFS_DIRTY_BYTES_MAX_DEFAULT,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``syncfs_files_min`` (files; 0 never uses ``sync_filesystem``), ``syncfs_probe_ms``
        (milliseconds) and ``syncfs_dirty_bytes_max`` (bytes): see the module docstring.
        ``clock`` (seconds) times the waves."""
        if syncs_in_parallel_max < 1:
            raise ValueError("syncs_in_parallel_max must be at least 1")
        if min(syncfs_files_min, syncfs_probe_ms, syncfs_dirty_bytes_max) < 0:
            raise ValueError(
                "syncfs_files_min, syncfs_probe_ms and syncfs_dirty_bytes_max must not be negative"
            )
        self._now_ms = now_ms
        self._clock = clock
        self._limiter = trio.CapacityLimiter(syncs_in_parallel_max)
        self._syncs_in_parallel_max = syncs_in_parallel_max
        self._syncfs_files_min = syncfs_files_min
        self._syncfs_probe_ms = syncfs_probe_ms
        self._syncfs_dirty_bytes_max = syncfs_dirty_bytes_max
        self._syncfs_supported = True
        # Per way (True: syncfs): seconds per file of its last waves, and when it last ran.
        self._costs_s: dict[bool, deque[float]] = {w: deque(maxlen=_COST_SAMPLES) for w in (False, True)}
        self._measured_ms: dict[bool, int | None] = {False: None, True: None}
        self._next = _Wave()
        self._wake = trio.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._background: trio.Nursery | None = None
        self._backlog_flush_ms: int | None = None
        self._backlog_error: OSError | None = None
        self.backlog_flushing = False
        self.backlog_flushes = 0
        self.waves = 0
        self.fsyncs = 0  # fdatasync, directory fsync and syncfs calls
        self.syncfs_waves = 0
        self.syncfs_declined = 0  # waves that would have used syncfs but for dirty data

    async def wait_durable(self, log: PartitionLog, offset: int) -> None:
        """Return once every byte up to and including ``offset`` of ``log`` is fsynced (or the
        offset is no longer in the log: truncated away, the caller sees the log)."""
        while log.durable_offset <= offset < log.log_end_offset:
            wave = self._next
            wave.logs[log] = None
            self._wake.set()
            await wave.done.wait()
            if wave.error is not None:
                raise wave.error

    async def run(self) -> None:
        """Run waves forever (until cancelled). Owns the fsync threads while it runs, and the
        background flushes of other data (see the module docstring)."""
        lanes = self._syncs_in_parallel_max
        with ThreadPoolExecutor(max_workers=max(lanes - 1, 1), thread_name_prefix="trafka-fsync") as pool:
            async with trio.open_nursery() as background:
                self._pool = pool
                self._background = background
                try:
                    while True:
                        await self._wake.wait()
                        self._wake = trio.Event()
                        await self.wave()
                finally:
                    self._pool = None
                    self._background = None

    def _start_backlog_flush(self, targets: list[tuple[FileSystem, str]], now_ms: int) -> None:
        """A wave could not use syncfs for other data waiting for writeback: write that back
        with a syncfs nobody waits for (at most one at a time, one per ``syncfs_probe_ms``)."""
        last = self._backlog_flush_ms
        if self._background is None or self.backlog_flushing:
            return
        if last is not None and 0 <= now_ms - last < self._syncfs_probe_ms:
            return
        self._backlog_flush_ms = now_ms
        self.backlog_flushing = True
        self._background.start_soon(self._flush_backlog, targets)

    async def _flush_backlog(self, targets: list[tuple[FileSystem, str]]) -> None:
        try:
            await trio.to_thread.run_sync(_sync_all, targets)
            self.backlog_flushes += 1
        except OSError as exc:
            # syncfs reports a writeback error once per descriptor: this one may have been our
            # files' own, which no later syncfs will report again. The next wave fails with it.
            self._backlog_error = exc
        finally:
            self.backlog_flushing = False

    async def wave(self) -> None:
        """One wave: sync every log that has waiters, then wake them all (they re-check)."""
        wave = self._next
        self._next = _Wave()
        plans = [log.begin_sync() for log in wave.logs]
        try:
            await self._execute(plans)
        except BaseException as exc:
            for plan in plans:
                plan.log.abort_sync(plan)
            wave.error = exc if isinstance(exc, OSError) else OSError(f"fsync wave failed: {exc!r}")
            wave.done.set()
            if not isinstance(exc, OSError):
                raise
            return
        now = self._now_ms()
        self.waves += 1
        for plan in plans:
            plan.log.end_sync(plan, now_ms=now)
        wave.done.set()

    async def _execute(self, plans: list[SyncPlan]) -> None:
        if self._backlog_error is not None:
            error, self._backlog_error = self._backlog_error, None
            raise error
        files = sum(len(p.handles) for p in plans)
        now = self._now_ms()
        targets: list[tuple[FileSystem, str]] = []
        if self._use_syncfs(files, now):
            # One call per log directory (its partitions' directories are on its file system).
            targets = list({(p.fs, posixpath.dirname(p.log.dir) or p.log.dir): None for p in plans})
        jobs: list[Callable[[], None]] = [h.sync for p in plans for h in p.handles]
        jobs += [_dir_sync(p, d) for p in plans for d in p.dirs]
        if not jobs:
            return
        lanes = min(len(jobs), self._syncs_in_parallel_max)
        chunks = [jobs[i::lanes] for i in range(lanes)]
        pool = self._pool
        if lanes == 1 or pool is not None:
            # One hop off the event loop per wave: that thread syncs the file systems, or fans
            # the chunks out to the pool.
            outcome, elapsed = await trio.to_thread.run_sync(
                _sync_wave,
                targets,
                self._syncfs_dirty_bytes_max,
                pool,
                chunks,
                self._clock,
                limiter=self._limiter,
            )
        else:  # wave() called without run(): no pool
            start = self._clock()
            outcome = None
            if targets:
                outcome = await trio.to_thread.run_sync(
                    _sync_filesystems, targets, self._syncfs_dirty_bytes_max, limiter=self._limiter
                )
            if outcome != _SYNCED:
                async with trio.open_nursery() as nursery:
                    for chunk in chunks:
                        nursery.start_soon(_run_chunk, chunk, self._limiter)
            elapsed = self._clock() - start
        if outcome == _SYNCED:
            self.fsyncs += len(targets)
            self.syncfs_waves += 1
        else:
            self.fsyncs += len(jobs)
            if outcome == _DIRTY:
                self.syncfs_declined += 1
                self._start_backlog_flush(targets, now)
            elif outcome == _UNSUPPORTED:
                self._syncfs_supported = False
        if 0 < self._syncfs_files_min <= files and self._syncfs_supported:
            self._record(outcome == _SYNCED, files, elapsed, now)

    def _use_syncfs(self, files: int, now_ms: int) -> bool:
        """Whether a wave of ``files`` files syncs its file systems rather than its files."""
        if not (0 < self._syncfs_files_min <= files and self._syncfs_supported):
            return False
        syncfs_s, fdatasync_s = self.cost_s(True), self.cost_s(False)
        preferred = syncfs_s is None or fdatasync_s is None or syncfs_s <= fdatasync_s
        if self._measured_ms[preferred] is None or self._fresh(not preferred, now_ms):
            return preferred
        return not preferred  # a probe

    def cost_s(self, by_syncfs: bool) -> float | None:
        """The median seconds per file of the last waves synced that way (None: not measured)."""
        samples = sorted(self._costs_s[by_syncfs])
        return samples[len(samples) // 2] if samples else None

    def _fresh(self, by_syncfs: bool, now_ms: int) -> bool:
        last = self._measured_ms[by_syncfs]
        return last is not None and 0 <= now_ms - last < self._syncfs_probe_ms

    def _record(self, by_syncfs: bool, files: int, elapsed_s: float, now_ms: int) -> None:
        """A qualifying wave's cost; after a probe it is the way's only one (the rest are stale)."""
        samples = self._costs_s[by_syncfs]
        if not self._fresh(by_syncfs, now_ms):
            samples.clear()
        samples.append(elapsed_s / files)
        self._measured_ms[by_syncfs] = now_ms


def _dir_sync(plan: SyncPlan, path: str) -> Callable[[], None]:
    return lambda: plan.fs.sync_dir(path)


def _run_jobs(chunk: list[Callable[[], None]]) -> None:
    for job in chunk:
        job()


_SYNCED, _DIRTY, _UNSUPPORTED = "synced", "dirty", "unsupported"


def _sync_filesystems(targets: list[tuple[FileSystem, str]], dirty_bytes_max: int) -> str:
    """``sync_filesystem`` each target: ``_SYNCED``; or ``_DIRTY``, having done nothing, when one
    has more than ``dirty_bytes_max`` bytes to write back; or ``_UNSUPPORTED`` if one cannot."""
    for fs, path in targets:
        pending = fs.writeback_pending_bytes(path)
        if pending is not None and pending > dirty_bytes_max:
            return _DIRTY
    for fs, path in targets:
        if not fs.sync_filesystem(path):
            return _UNSUPPORTED
    return _SYNCED


def _sync_all(targets: list[tuple[FileSystem, str]]) -> None:
    for fs, path in targets:
        fs.sync_filesystem(path)


def _sync_wave(
    targets: list[tuple[FileSystem, str]],
    dirty_bytes_max: int,
    pool: ThreadPoolExecutor | None,
    chunks: list[list[Callable[[], None]]],
    clock: Callable[[], float],
) -> tuple[str | None, float]:
    """Sync the ``targets`` file systems if there are any and that works, else run the chunks
    (see ``_fan_out``); the outcome of the first (None: not tried) and the seconds taken."""
    start = clock()
    outcome = _sync_filesystems(targets, dirty_bytes_max) if targets else None
    if outcome != _SYNCED:
        _fan_out(pool, chunks)
    return outcome, clock() - start


def _fan_out(pool: ThreadPoolExecutor | None, chunks: list[list[Callable[[], None]]]) -> None:
    """Run the first chunk here and the others on ``pool``; return once all are done, raising
    the first failure (only then, so no fsync is still running when the plans are released)."""
    futures: list[Future[None]] = [pool.submit(_run_jobs, c) for c in chunks[1:]] if pool else []
    error: BaseException | None = None
    try:
        _run_jobs(chunks[0])
    except BaseException as exc:
        error = exc
    for f in futures:
        failure = f.exception()
        if failure is not None and error is None:
            error = failure
    if error is not None:
        raise error


async def _run_chunk(chunk: list[Callable[[], None]], limiter: trio.CapacityLimiter) -> None:
    await trio.to_thread.run_sync(_run_jobs, chunk, limiter=limiter)


async def run_maintenance(manager: LogManager, *, now_ms: Callable[[], int], period_ms: int = 1000) -> None:
    """Run ``manager``'s chores every ``period_ms`` forever, fsyncs on worker threads."""
    while True:
        await maintenance_pass(manager, now_ms=now_ms())
        await trio.sleep(period_ms / 1000)


async def maintenance_pass(manager: LogManager, *, now_ms: int) -> None:
    """One pass of ``LogManager.tick``, with the blocking parts on worker threads."""
    if manager.retention_due(now_ms):
        manager.apply_retention(now_ms=now_ms)
    plans = manager.flush_plans(now_ms=now_ms)
    for plan in plans:
        try:
            await trio.to_thread.run_sync(plan.execute)
        except BaseException:
            plan.log.abort_sync(plan)
            raise
        plan.log.end_sync(plan, now_ms=now_ms)
    manager.remove_deleted(now_ms=now_ms)
    offsets_due, starts_due = manager.checkpoint_due(now_ms)
    if offsets_due or starts_due:
        await trio.to_thread.run_sync(manager.checkpoint_writer(start_offsets=starts_due))
        manager.mark_checkpointed(now_ms, starts=starts_due)
