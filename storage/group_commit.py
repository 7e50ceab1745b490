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
when they share files. Appenders on N different partitions still need N fdatasyncs a wave, run
in parallel: what the disk does with parallel fdatasyncs of different files bounds the gain.

``run_maintenance`` is the matching background loop for ``LogManager`` chores: retention,
flushes due by ``flush.ms`` or roll, checkpoints, delayed deletes; its fsyncs and checkpoint
writes run on worker threads too.

Contract: one committer per ``LogManager``; all methods are called from the trio thread; a
failed fsync raises ``OSError`` in every waiter of that wave (the broker then takes the log dir
offline, as Kafka does).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import trio

from storage.log import PartitionLog, SyncPlan
from storage.manager import LogManager

# Parallel fdatasyncs of different files let the file system share journal commits and the device
# overlap its flushes. Measured on the dev VM (ext4 on virtio, 64 files a wave): 8 threads give
# about 16,500 syncs/s, 16 about 20,000, 32 and 64 fewer again.
SYNCS_IN_PARALLEL_MAX_DEFAULT = 16


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
        self, *, now_ms: Callable[[], int], syncs_in_parallel_max: int = SYNCS_IN_PARALLEL_MAX_DEFAULT
    ) -> None:
        if syncs_in_parallel_max < 1:
            raise ValueError("syncs_in_parallel_max must be at least 1")
        self._now_ms = now_ms
        self._limiter = trio.CapacityLimiter(syncs_in_parallel_max)
        self._syncs_in_parallel_max = syncs_in_parallel_max
        self._next = _Wave()
        self._wake = trio.Event()
        self._pool: ThreadPoolExecutor | None = None
        self.waves = 0
        self.fsyncs = 0

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
        """Run waves forever (until cancelled). Owns the fsync threads while it runs."""
        lanes = self._syncs_in_parallel_max
        with ThreadPoolExecutor(max_workers=max(lanes - 1, 1), thread_name_prefix="trafka-fsync") as pool:
            self._pool = pool
            try:
                while True:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    await self.wave()
            finally:
                self._pool = None

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
        jobs: list[Callable[[], None]] = [h.sync for p in plans for h in p.handles]
        jobs += [_dir_sync(p, d) for p in plans for d in p.dirs]
        self.fsyncs += len(jobs)
        if not jobs:
            return
        lanes = min(len(jobs), self._syncs_in_parallel_max)
        chunks = [jobs[i::lanes] for i in range(lanes)]
        pool = self._pool
        if lanes == 1 or pool is not None:
            # One hop off the event loop per wave: that thread fans the chunks out to the pool.
            await trio.to_thread.run_sync(_fan_out, pool, chunks, limiter=self._limiter)
            return
        async with trio.open_nursery() as nursery:  # wave() called without run(): no pool
            for chunk in chunks:
                nursery.start_soon(_run_chunk, chunk, self._limiter)


def _dir_sync(plan: SyncPlan, path: str) -> Callable[[], None]:
    return lambda: plan.fs.sync_dir(path)


def _run_jobs(chunk: list[Callable[[], None]]) -> None:
    for job in chunk:
        job()


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
