"""Group commit: durable appends wait for an fsync wave they share, and survive a power cut.

Goal: with ``flush.messages=1`` an append is acknowledged only once its bytes are synced; appends
that wait at the same time, on many partitions, share one wave (far fewer fsyncs than appends);
after a simulated crash every acknowledged batch is there, byte for byte. Runs on trio's
autojump clock; the fsyncs themselves run on worker threads.
"""

from __future__ import annotations

import random

import pytest
import trio
from storage_helpers import batch, read_all

from storage.config import LogConfig
from storage.fs import SimFile, SimFileSystem
from storage.group_commit import GroupCommitter, maintenance_pass
from storage.log import AppendInfo, PartitionLog
from storage.manager import LogManager


async def test_concurrent_durable_appends_share_waves_and_survive_a_crash() -> None:
    fs = SimFileSystem()
    cfg = LogConfig(flush_messages=1, segment_bytes=600)
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=cfg)
    committer = GroupCommitter(now_ms=lambda: 0)
    acked: dict[int, list[tuple[int, int, bytes]]] = {p: [] for p in range(16)}
    appends = 0

    async def appender(p: int) -> None:
        nonlocal appends
        log = mgr.get_or_create_log("t", p, now_ms=0)
        for i in range(10):
            info = log.append_as_leader(batch(1 + i % 3, tag=p), leader_epoch=0, now_ms=0)
            assert isinstance(info, AppendInfo) and info.flush_needed
            raw = b"".join(bytes(v.raw()) for v in read_all(log, info.first_offset))
            appends += 1
            await committer.wait_durable(log, info.last_offset)
            assert log.durable_offset > info.last_offset
            acked[p].append((info.first_offset, info.last_offset, raw))
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        async with trio.open_nursery() as inner:
            for p in range(16):
                inner.start_soon(appender, p)
        nursery.cancel_scope.cancel()

    assert appends == 160
    assert committer.waves < appends / 4, committer.waves
    # Unacknowledged bytes in flight would be lost here; acknowledged ones may not be.
    fs.crash(random.Random(1), torn=True)
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=cfg)
    for p, entries in acked.items():
        log = mgr.get_log("t", p)
        assert log is not None
        for first, last, raw in entries:
            got = b"".join(bytes(v.raw()) for v in read_all(log, first, bound=last + 1))
            assert got == raw


async def test_waiters_arriving_during_a_wave_take_the_next_one() -> None:
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=LogConfig(flush_messages=1))
    log = mgr.get_or_create_log("t", 0, now_ms=0)
    committer = GroupCommitter(now_ms=lambda: 0)
    a = log.append_as_leader(batch(1), leader_epoch=0, now_ms=0)
    assert isinstance(a, AppendInfo)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        await committer.wait_durable(log, a.last_offset)
        b = log.append_as_leader(batch(1), leader_epoch=0, now_ms=0)
        assert isinstance(b, AppendInfo)
        assert log.durable_offset == 1
        await committer.wait_durable(log, b.last_offset)
        assert log.durable_offset == 2
        await committer.wait_durable(log, 0)  # already durable: returns at once
        nursery.cancel_scope.cancel()
    assert committer.waves == 2


async def test_truncation_during_a_wait_releases_the_waiter() -> None:
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=LogConfig(flush_messages=1))
    log = mgr.get_or_create_log("t", 0, now_ms=0)
    committer = GroupCommitter(now_ms=lambda: 0)
    info = log.append_as_leader(batch(3), leader_epoch=0, now_ms=0)
    assert isinstance(info, AppendInfo)
    plan = log.begin_sync()  # a wave in flight...
    log.truncate_to(0, now_ms=0)  # ...while a new leader makes us truncate
    plan.execute()
    log.end_sync(plan, now_ms=0)
    assert log.durable_offset == 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        with trio.fail_after(5):
            await committer.wait_durable(log, info.last_offset)
        nursery.cancel_scope.cancel()


async def test_a_failed_fsync_fails_every_waiter_of_its_wave_and_the_next_wave_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=LogConfig(flush_messages=1))
    logs = [mgr.get_or_create_log("t", p, now_ms=0) for p in range(5)]
    committer = GroupCommitter(now_ms=lambda: 0, syncs_in_parallel_max=2)
    errors: list[OSError] = []

    def fail(self: SimFile) -> None:
        raise OSError("the disk is gone")

    async def appender(log: PartitionLog) -> None:
        # No epoch: its checkpoint would meet the failing sync first.
        info = log.append_as_leader(batch(1), leader_epoch=-1, now_ms=0)
        assert isinstance(info, AppendInfo)
        try:
            await committer.wait_durable(log, info.last_offset)
        except OSError as e:
            errors.append(e)

    monkeypatch.setattr(SimFile, "sync", fail)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        with trio.fail_after(5):
            async with trio.open_nursery() as inner:
                for log in logs:
                    inner.start_soon(appender, log)
            assert len(errors) == 5 and all(log.durable_offset == 0 for log in logs)
            monkeypatch.undo()
            await committer.wait_durable(logs[0], 0)  # the committer carries on
        assert logs[0].durable_offset == 1
        nursery.cancel_scope.cancel()


async def test_maintenance_pass_flushes_rolled_segments_and_checkpoints() -> None:
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=LogConfig(segment_bytes=300))
    log = mgr.get_or_create_log("t", 0, now_ms=0)
    for _ in range(10):
        assert isinstance(log.append_as_leader(batch(2), leader_epoch=0, now_ms=0), AppendInfo)
    assert len(log.segments) > 2 and log.recovery_point == 0
    await maintenance_pass(mgr, now_ms=60_000)
    assert log.recovery_point == log.log_end_offset  # everything flushed, indexes included
    assert fs.exists("/d/recovery-point-offset-checkpoint")
    fs.crash()
    mgr = LogManager.open(fs, "/d", now_ms=0, default_config=LogConfig(segment_bytes=300))
    log2 = mgr.get_log("t", 0)
    assert log2 is not None and log2.log_end_offset == log.log_end_offset
