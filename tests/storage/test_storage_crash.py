"""Multi-process crash test: a durable writer killed with SIGKILL, 200 times.

Goal: with ``flush.messages=1`` an acknowledged append is never lost. A writer process (forked
from this one, so it starts in milliseconds) opens the log directory -- recovering it after the
previous kill -- and runs four concurrent appenders on four partitions through the group
committer, plus the maintenance loop (checkpoints every few ms, so kills land in checkpoint
writes too). After each ``wait_durable`` it reports the batch's offsets and bytes through a pipe.
The test kills it at a random moment (after a random number of acknowledgements, or after a
random delay), then recovers the directory itself and checks that every acknowledged batch is
present and byte-identical. SIGKILL keeps the page cache, so this tests recovery and the
acknowledgement path; power-loss durability is tested on the simulated file system.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from functools import partial

import trio

from protocol.records import NewRecord, build_batch, iter_batches
from storage.config import LogConfig, LogDirConfig
from storage.fs import OsFileSystem
from storage.group_commit import GroupCommitter, run_maintenance
from storage.log import AppendInfo
from storage.manager import LogManager

KILLS = 200
PARTITIONS = 4
CFG = LogConfig(flush_messages=1, segment_bytes=16 * 1024, index_interval_bytes=512, retention_ms=-1)
DIR_CFG = LogDirConfig(flush_offset_checkpoint_interval_ms=5, flush_start_offset_checkpoint_interval_ms=5)


def _now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


async def _writer(root: str, out: int, seed: int) -> None:
    rng = random.Random(seed)
    mgr = LogManager.open(OsFileSystem(), root, now_ms=_now_ms(), default_config=CFG, dir_config=DIR_CFG)
    committer = GroupCommitter(now_ms=_now_ms)

    async def appender(p: int) -> None:
        log = mgr.get_or_create_log("crash", p, now_ms=_now_ms())
        while True:
            n = rng.randrange(1, 6)
            payload = build_batch(
                [
                    NewRecord(key=b"%d" % p, value=rng.randbytes(rng.randrange(0, 200)), timestamp=_now_ms())
                    for _ in range(n)
                ]
            )
            info = log.append_as_leader(payload, leader_epoch=seed, now_ms=_now_ms())
            assert isinstance(info, AppendInfo)
            raw = b"".join(
                s.read()
                for s in log.read(
                    info.first_offset, max_bytes=1, upper_bound_offset=info.last_offset + 1
                ).slices
            )
            await committer.wait_durable(log, info.last_offset)
            os.write(out, f"{p} {info.first_offset} {raw.hex()}\n".encode())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(committer.run)
        nursery.start_soon(partial(run_maintenance, mgr, now_ms=_now_ms, period_ms=3))
        for p in range(PARTITIONS):
            nursery.start_soon(appender, p)


def _run_child(root: str, out: int, seed: int) -> None:
    code = 1
    try:
        trio.run(_writer, root, out, seed)
    finally:
        os._exit(code)


def _collect(fd: int, pid: int, rng: random.Random) -> list[str]:
    """Read acknowledgements; SIGKILL the child at the moment the plan says; drain the pipe."""
    buf = b""
    lines: list[str] = []
    acks_before_kill = rng.choice([None, 0, 1, 3, 8, 20, 40])
    delay_s = rng.uniform(0, 0.03)
    start = time.monotonic()
    killed = False
    while True:
        if not killed:
            if (
                acks_before_kill is None
                and time.monotonic() - start >= delay_s
                or acks_before_kill is not None
                and buf.count(b"\n") >= acks_before_kill
            ):
                os.kill(pid, signal.SIGKILL)
                killed = True
            elif time.monotonic() - start > 20:
                raise AssertionError("the writer made no progress")
        ready, _, _ = select.select([fd], [], [], 0.001 if not killed else 5)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buf += chunk
    lines = [ln for ln in buf.decode().split("\n")[:-1]]  # a torn last line was never complete
    return lines


def _verify(root: str, acked: dict[tuple[int, int], bytes], check: list[tuple[int, int]]) -> None:
    mgr = LogManager.open(OsFileSystem(), root, now_ms=_now_ms(), default_config=CFG, dir_config=DIR_CFG)
    try:
        for p, offset in check:
            log = mgr.get_log("crash", p)
            assert log is not None, p
            want = acked[(p, offset)]
            res = log.read(offset, max_bytes=1)
            got = b"".join(s.read() for s in res.slices)
            views = list(iter_batches(got))
            assert views and views[0].base_offset == offset, (p, offset)
            assert bytes(views[0].raw()) == want, (p, offset)
    finally:
        # Leave without a clean-shutdown marker: the next writer must recover again.
        for log in mgr.logs.values():
            for seg in log.segments:
                seg.close()


def test_sigkill_never_loses_an_acknowledged_append(tmp_path: object) -> None:
    root = str(tmp_path)
    rng = random.Random(20240601)
    acked: dict[tuple[int, int], bytes] = {}
    total_lines = 0
    for kill in range(KILLS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer
            os.close(r)
            _run_child(root, w, kill)
        os.close(w)
        try:
            lines = _collect(r, pid, rng)
        finally:
            os.close(r)
            os.waitpid(pid, 0)
        new: list[tuple[int, int]] = []
        for line in lines:
            p, offset, hexraw = line.split(" ")
            key = (int(p), int(offset))
            raw = bytes.fromhex(hexraw)
            # An offset is acknowledged once; a later writer may not reuse it.
            assert acked.get(key, raw) == raw, key
            acked[key] = raw
            new.append(key)
        total_lines += len(lines)
        sample = new + rng.sample(sorted(acked), min(len(acked), 20))
        _verify(root, acked, sample)
    assert total_lines > KILLS  # the writers did make progress between kills
    _verify(root, acked, sorted(acked))
    print(f"{KILLS} kills, {total_lines} acknowledged appends, all present")
