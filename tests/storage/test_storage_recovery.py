"""Recovery: the longest valid prefix, consistent indexes, and nothing valid and fsynced lost.

Goal: cut a log at every byte of its last batches, and append garbage, and show that recovery
keeps exactly the whole batches before the cut, rebuilds indexes that agree with the log, trims
the epoch cache, drops later segments after a bad one, cleans up leftover files, and is skipped
after a clean shutdown. Then crash the simulated file system (losing unsynced bytes, tearing the
tail) and show that every flushed batch survives.
"""

from __future__ import annotations

import json
import random

import pytest
from storage_helpers import batch, read_all

from protocol.records import RecordBatchView, iter_batches
from storage.checkpoint import CLEAN_SHUTDOWN_MARKER
from storage.config import LogConfig
from storage.fs import SimFileSystem, read_whole
from storage.log import AppendInfo, PartitionLog
from storage.manager import LogManager
from storage.segment import LogSegment

DIR = "/data/t-0"


def _built_log(n: int, cfg: LogConfig, epochs: bool = True) -> dict[str, bytes]:
    """The files of a log of ``n`` batches after a clean shutdown."""
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/data", now_ms=0, default_config=cfg)
    log = mgr.get_or_create_log("t", 0, now_ms=0)
    for i in range(n):
        r = log.append_as_leader(
            batch(1 + i % 3, size=i % 11, ts=1000 + i, tag=i), leader_epoch=i // 4 if epochs else 0, now_ms=0
        )
        assert isinstance(r, AppendInfo)
    mgr.close(now_ms=0)
    return {f"{DIR}/{name}": read_whole(fs, f"{DIR}/{name}") for name in fs.listdir(DIR)}


def _fs_with(files: dict[str, bytes]) -> SimFileSystem:
    fs = SimFileSystem()
    fs.makedirs(DIR)
    for path, data in files.items():
        h = fs.open(path, create=True)
        h.append(data)
        h.sync()
        h.close()
    fs.sync_dir("/")
    fs.sync_dir("/data")
    fs.sync_dir(DIR)
    return fs


def _assert_indexes_consistent(log: PartitionLog) -> None:
    """Every index entry names a real batch (its last offset and position); the time index's
    entries are running maxima; a rebuild from the log produces the same entries."""
    for i, seg in enumerate(log.segments):
        data = seg.log.handle().read_at(0, seg.size)
        starts = {}
        pos = 0
        for v in iter_batches(data):
            starts[pos] = v
            pos += v.size_bytes
        assert pos == seg.size
        oi = [seg.offset_index.lookup_position(p) for p in sorted(starts)]
        for off, p in set(oi):
            if (off, p) != (seg.base_offset, 0):
                assert starts[p].last_offset == off
        before = _entries(seg)
        seg.rebuild_indexes()
        assert _entries(seg) == before, i


def _entries(seg: LogSegment) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    oi = [seg.offset_index._raw(k) for k in range(seg.offset_index.entry_count)]
    ti = [seg.time_index._raw(k) for k in range(seg.time_index.entry_count)]
    return oi, ti


CFG = LogConfig(segment_bytes=1_000_000, index_interval_bytes=60)


def test_cut_at_every_byte_of_the_last_batches() -> None:
    files = _built_log(30, CFG)
    log_path = f"{DIR}/00000000000000000000.log"
    data = files[log_path]
    views = list(iter_batches(data))
    ends = []
    pos = 0
    for v in views:
        pos += v.size_bytes
        ends.append((pos, v.next_offset))
    first_cut = ends[-4][0]
    for cut in range(first_cut, len(data) + 1):
        damaged = dict(files)
        damaged[log_path] = data[:cut]
        fs = _fs_with(damaged)
        mgr = LogManager.open(fs, "/data", now_ms=0, default_config=CFG)
        log = mgr.get_log("t", 0)
        assert log is not None
        valid_end, next_offset = max((e for e in ends if e[0] <= cut), default=(0, 0))
        assert log.log_end_offset == next_offset, cut
        assert log.active_segment.size == valid_end
        assert b"".join(bytes(v.raw()) for v in read_all(log)) == data[:valid_end]
        assert (log.epochs.latest.start_offset if log.epochs.latest else 0) < max(next_offset, 1)
        _assert_indexes_consistent(log)
        # The recovered log takes appends where it ends.
        r = log.append_as_leader(batch(1), leader_epoch=99, now_ms=0)
        assert isinstance(r, AppendInfo) and r.first_offset == next_offset


@pytest.mark.parametrize("seed", range(20))
def test_garbage_after_the_log_and_flipped_bytes(seed: int) -> None:
    rng = random.Random(seed)
    files = _built_log(20, CFG)
    log_path = f"{DIR}/00000000000000000000.log"
    data = files[log_path]
    damaged = dict(files)
    if seed % 2:
        damaged[log_path] = data + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        expected = data
    else:
        views = list(iter_batches(data))
        k = rng.randrange(len(views))
        start = sum(v.size_bytes for v in views[:k])
        # Any byte but the base offset and leader epoch, which the CRC does not cover.
        at = rng.choice([start + i for i in range(8, views[k].size_bytes) if not 12 <= i < 16])
        raw = bytearray(data)
        raw[at] ^= 1 << rng.randrange(8)
        damaged[log_path] = bytes(raw)
        expected = data[:start]
    fs = _fs_with(damaged)
    log = LogManager.open(fs, "/data", now_ms=0, default_config=CFG).get_log("t", 0)
    assert log is not None
    assert b"".join(bytes(v.raw()) for v in read_all(log)) == expected
    _assert_indexes_consistent(log)


def test_bad_middle_segment_drops_the_later_ones() -> None:
    cfg = LogConfig(segment_bytes=400, index_interval_bytes=60)
    files = _built_log(40, cfg)
    logs = sorted(p for p in files if p.endswith(".log"))
    assert len(logs) >= 4
    victim = logs[1]
    raw = bytearray(files[victim])
    first = RecordBatchView(raw)
    raw[first.size_bytes + 30] ^= 0xFF  # the second batch of the second segment
    files[victim] = bytes(raw)
    fs = _fs_with(files)
    log = LogManager.open(fs, "/data", now_ms=0, default_config=cfg).get_log("t", 0)
    assert log is not None
    assert len(log.segments) == 2
    assert log.log_end_offset == first.next_offset
    assert sorted(n for n in fs.listdir(DIR) if n.endswith(".log")) == [p.rsplit("/", 1)[1] for p in logs[:2]]
    assert all(e.start_offset < log.log_end_offset for e in log.epochs.entries)


def test_clean_shutdown_skips_recovery_and_bad_indexes_are_rebuilt() -> None:
    cfg = LogConfig(segment_bytes=400, index_interval_bytes=60)
    files = _built_log(40, cfg)
    marker = f"/data/{CLEAN_SHUTDOWN_MARKER}"
    files[marker] = b'{"version":0,"brokerEpoch":-1}'
    idx = sorted(p for p in files if p.endswith(".index"))
    files[idx[0]] = files[idx[0]][:-3]  # not a multiple of 8: rebuilt at open
    files[idx[1]] = b"\x7f" * 16  # nonsense entries: rebuilt when first used
    tidx = sorted(p for p in files if p.endswith(".timeindex"))
    del files[tidx[2]]  # missing: rebuilt at open
    # A damaged batch in an old segment: a recovery would cut the log there, a clean open does not
    # look (reads serve the damaged batch as it is; consumers check CRCs).
    log_path = sorted(p for p in files if p.endswith(".log"))[0]
    raw = bytearray(files[log_path])
    raw[-1] ^= 0xFF
    files[log_path] = bytes(raw)
    fs = _fs_with(files)
    mgr = LogManager.open(fs, "/data", now_ms=0, default_config=cfg)
    assert mgr.had_clean_shutdown and not fs.exists(marker)
    log = mgr.get_log("t", 0)
    assert log is not None
    expected = _built_log(40, cfg)
    want = b"".join(
        files[p] if p == log_path else expected[p] for p in sorted(p for p in expected if p.endswith(".log"))
    )
    assert b"".join(bytes(v.raw()) for v in read_all(log)) == want
    for t in range(990, 1050):
        found = log.offset_for_timestamp(t)
        assert found is None or found.timestamp >= t
    _assert_indexes_consistent(log)


def test_leftover_files_are_dealt_with() -> None:
    cfg = LogConfig(segment_bytes=400, index_interval_bytes=60)
    files = _built_log(40, cfg)
    logs = sorted(p for p in files if p.endswith(".log"))
    files[logs[0] + ".deleted"] = b"old"
    files[f"{DIR}/leader-epoch-checkpoint.tmp"] = b"half"
    files[f"{DIR}/00000000000000000999.log.cleaned"] = b"x"
    files[f"{DIR}/00000000000000000999.index.swap"] = b"x"
    files[f"{DIR}/00000000000000005555.index"] = b""  # an index without its log
    # A finished compaction of the second segment that was never renamed into place.
    files[logs[1] + ".swap"] = files[logs[1]]
    del files[logs[1]]
    fs = _fs_with(files)
    log = LogManager.open(fs, "/data", now_ms=0, default_config=cfg).get_log("t", 0)
    assert log is not None
    names = fs.listdir(DIR)
    assert not [n for n in names if n.endswith((".deleted", ".tmp", ".cleaned", ".swap"))]
    assert "00000000000000005555.index" not in names
    assert len([n for n in names if n.endswith(".log")]) == len(logs)
    assert log.log_end_offset == sum(1 + i % 3 for i in range(40))


@pytest.mark.parametrize("seed", range(25))
def test_crash_loses_only_unflushed_batches(seed: int) -> None:
    """Flushed batches survive a power cut with torn writes; the rest is a valid prefix."""
    rng = random.Random(seed)
    cfg = LogConfig(
        segment_bytes=rng.choice([300, 2000, 100_000]), index_interval_bytes=rng.choice([0, 100, 4096])
    )
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/data", now_ms=0, default_config=cfg)
    log = mgr.get_or_create_log("t", 0, now_ms=0)
    written: list[bytes] = []
    flushed = 0
    for i in range(rng.randrange(5, 60)):
        r = log.append_as_leader(
            batch(1 + rng.randrange(4), size=rng.randrange(30), ts=i, tag=i), leader_epoch=i // 7, now_ms=0
        )
        assert isinstance(r, AppendInfo)
        written.append(b"".join(bytes(v.raw()) for v in read_all(log, r.first_offset)))
        if rng.random() < 0.3:
            plan = log.begin_sync()  # the group-commit flavour: log files and directory only
            plan.execute()
            log.end_sync(plan, now_ms=0)
            flushed = len(written)
        if rng.random() < 0.05:
            mgr.write_checkpoints()
    fs.crash(rng, torn=True)
    mgr = LogManager.open(fs, "/data", now_ms=0, default_config=cfg)
    log2 = mgr.get_log("t", 0)
    assert log2 is not None
    got = [bytes(v.raw()) for v in read_all(log2)]
    assert got[:flushed] == written[:flushed], seed
    assert got == written[: len(got)]
    _assert_indexes_consistent(log2)


def test_marker_with_garbage_after_the_active_segment_still_recovers_it() -> None:
    files = _built_log(10, CFG)
    files[f"/data/{CLEAN_SHUTDOWN_MARKER}"] = b""
    log_path = f"{DIR}/00000000000000000000.log"
    clean = files[log_path]
    files[log_path] = clean + b"\x00" * 7
    fs = _fs_with(files)
    log = LogManager.open(fs, "/data", now_ms=0, default_config=CFG).get_log("t", 0)
    assert log is not None
    assert fs.file_size(log_path) == len(clean)
    r = log.append_as_leader(batch(1), leader_epoch=9, now_ms=0)
    assert isinstance(r, AppendInfo) and r.first_offset == sum(1 + i % 3 for i in range(10))
    assert read_whole(fs, log_path).startswith(clean)


@pytest.mark.parametrize("content, epoch", [
    (b'{"version":0,"brokerEpoch":42}', 42),
    (b'{"version":0,"brokerEpoch":-1}', -1),
    (b"", -1),  # an old, empty marker: clean, but no epoch to offer
    (b"not json", -1),
    (b'{"version":0,"brokerEpoch":"42"}', -1),
])
def test_the_clean_shutdown_marker_carries_the_broker_epoch(content: bytes, epoch: int) -> None:
    """KIP-966: a clean close writes the broker epoch into the marker (Kafka's JSON); the next
    open reads it back for the registration's PreviousBrokerEpoch, and only once: the marker is
    gone, so a crash after that open offers -1."""
    fs = _fs_with({f"/data/{CLEAN_SHUTDOWN_MARKER}": content})
    mgr = LogManager.open(fs, "/data", now_ms=0, default_config=CFG)
    assert mgr.had_clean_shutdown and mgr.clean_shutdown_broker_epoch == epoch
    mgr.close(now_ms=0, broker_epoch=77)
    assert json.loads(read_whole(fs, f"/data/{CLEAN_SHUTDOWN_MARKER}")) == {"version": 0, "brokerEpoch": 77}
    again = LogManager.open(fs, "/data", now_ms=0, default_config=CFG)
    assert again.clean_shutdown_broker_epoch == 77
    crashed = LogManager.open(fs, "/data", now_ms=0, default_config=CFG)  # no close before this open
    assert not crashed.had_clean_shutdown and crashed.clean_shutdown_broker_epoch == -1
