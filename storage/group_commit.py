"""Group commit: durable appends across partitions share fsync waves, off the event loop.

The only module of ``storage`` that imports trio. The broker starts ``GroupCommitter.run`` in its
nursery and, for each append whose ``AppendInfo.flush_needed`` is set (always, with
``flush.messages=1``), awaits ``wait_durable(log, info.last_offset)`` before acknowledging.

Theory of operation: waiters register ``(log, offset)`` and wake the committer. A *wave* takes
every log with waiters, asks each for a ``SyncPlan`` (the log files holding unsynced bytes, plus
the partition directory if a segment was created), runs all their fsyncs at once on worker
threads (``syncs_in_parallel_max`` of them, so the file system can merge them into few journal
commits), then records each plan and wakes every waiter whose offset is now durable. Appends that
arrive while a wave runs wait for the next one, so with N concurrent appenders a wave costs about
one fsync latency and serves up to N appends, where fsyncing each append on its own (Kafka with
``flush.messages=1``) costs N latencies.

``run_maintenance`` is the matching background loop for ``LogManager`` chores: retention,
flushes due by ``flush.ms`` or roll, checkpoints, delayed deletes; its fsyncs and checkpoint
writes run on worker threads too.

Contract: one committer per ``LogManager``; all methods are called from the trio thread; a
failed fsync raises ``OSError`` in every waiter of that wave (the broker then takes the log dir
offline, as Kafka does).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from storage.fs import FileHandle
from storage.log import PartitionLog, SyncPlan
from storage.manager import LogManager


class _Waiter:
    __slots__ = ("offset", "event", "error")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.event = trio.Event()
        self.error: BaseException | None = None


class GroupCommitter:
    """See the module docstring."""

    def __init__(self, *, now_ms: Callable[[], int], syncs_in_parallel_max: int = 8) -> None:
        if syncs_in_parallel_max < 1:
            raise ValueError("syncs_in_parallel_max must be at least 1")
        self._now_ms = now_ms
        self._limiter = trio.CapacityLimiter(syncs_in_parallel_max)
        self._syncs_in_parallel_max = syncs_in_parallel_max
        self._waiters: dict[PartitionLog, list[_Waiter]] = {}
        self._wake = trio.Event()
        self.waves = 0
        self.fsyncs = 0

    async def wait_durable(self, log: PartitionLog, offset: int) -> None:
        """Return once every byte up to and including ``offset`` of ``log`` is fsynced."""
        if log.durable_offset > offset:
            return
        waiter = _Waiter(offset)
        self._waiters.setdefault(log, []).append(waiter)
        self._wake.set()
        await waiter.event.wait()
        if waiter.error is not None:
            raise waiter.error

    async def run(self) -> None:
        """Run waves forever (until cancelled)."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await self.wave()

    async def wave(self) -> None:
        """One wave: sync every log that has waiters, then wake the satisfied ones."""
        waiting = self._waiters
        self._waiters = {}
        plans = [log.begin_sync() for log in waiting]
        try:
            await self._execute(plans)
        except BaseException as exc:
            for plan in plans:
                plan.log.abort_sync(plan)
            for waiters in waiting.values():
                for w in waiters:
                    w.error = exc if isinstance(exc, OSError) else OSError(f"fsync wave failed: {exc!r}")
                    w.event.set()
            if not isinstance(exc, OSError):
                raise
            return
        now = self._now_ms()
        self.waves += 1
        for plan in plans:
            plan.log.end_sync(plan, now_ms=now)
        for log, waiters in waiting.items():
            for w in waiters:
                if log.durable_offset > w.offset or w.offset >= log.log_end_offset:
                    # Durable, or truncated away (the append is gone; the caller sees the log).
                    w.event.set()
                else:
                    self._waiters.setdefault(log, []).append(w)
        if self._waiters:
            self._wake.set()

    async def _execute(self, plans: list[SyncPlan]) -> None:
        handles: list[FileHandle] = [h for p in plans for h in p.handles]
        dirs = [(p, d) for p in plans for d in p.dirs]
        jobs: list[Callable[[], None]] = [h.sync for h in handles]
        jobs += [_dir_sync(p, d) for p, d in dirs]
        self.fsyncs += len(jobs)
        if not jobs:
            return
        if len(jobs) == 1:
            await trio.to_thread.run_sync(jobs[0], limiter=self._limiter)
            return
        # Spread the jobs over at most syncs_in_parallel_max threads, all at once.
        lanes = min(len(jobs), self._syncs_in_parallel_max)
        chunks = [jobs[i::lanes] for i in range(lanes)]
        async with trio.open_nursery() as nursery:
            for chunk in chunks:
                nursery.start_soon(_run_chunk, chunk, self._limiter)


def _dir_sync(plan: SyncPlan, path: str) -> Callable[[], None]:
    return lambda: plan.fs.sync_dir(path)


async def _run_chunk(chunk: list[Callable[[], None]], limiter: trio.CapacityLimiter) -> None:
    def work() -> None:
        for job in chunk:
            job()

    await trio.to_thread.run_sync(work, limiter=limiter)


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
