"""The partition log API: leader and follower appends, reads, rolls, time lookups, truncation,
retention, high watermark, epochs, and the log manager around it.

Goal: each rule of the storage issue has a test that would fail if the rule were broken --
offsets assigned by rewriting the base offset, the leader epoch stamped, nothing written when a
batch is refused, reads that start at the batch holding the offset and end on a batch boundary,
rolls on every trigger, retention that never deletes above the high watermark.
"""

from __future__ import annotations

import random
import struct

import pytest
from storage_helpers import batch, read_all

from protocol.error_codes import ErrorCode
from protocol.records import NewRecord, RecordBatchView, TimestampType, build_batch, iter_batches
from storage.config import LogConfig, LogDirConfig
from storage.fs import SimFileSystem
from storage.log import AppendInfo, AppendRejected, PartitionLog
from storage.manager import LogManager


def _log(**cfg: int | str) -> tuple[SimFileSystem, LogManager, PartitionLog]:
    fs = SimFileSystem()
    mgr = LogManager.open(fs, "/data", now_ms=0, default_config=LogConfig(**cfg))  # type: ignore[arg-type]
    return fs, mgr, mgr.get_or_create_log("t", 0, now_ms=0)


def _ok(r: AppendInfo | AppendRejected) -> AppendInfo:
    assert isinstance(r, AppendInfo), r
    return r


# --- leader appends --------------------------------------------------------------------------------


def test_leader_assigns_offsets_epoch_and_returns_info() -> None:
    _, _, log = _log()
    a = _ok(log.append_as_leader(batch(3), leader_epoch=7, now_ms=5))
    b = _ok(log.append_as_leader(batch(2) + batch(4), leader_epoch=7, now_ms=5))
    assert (a.first_offset, a.last_offset, b.first_offset, b.last_offset) == (0, 2, 3, 8)
    assert a.log_append_time_ms == -1 and a.log_start_offset == 0
    views = read_all(log)
    assert [(v.base_offset, v.last_offset, v.partition_leader_epoch) for v in views] == [
        (0, 2, 7),
        (3, 4, 7),
        (5, 8, 7),
    ]
    for v in views:
        v.validate()
    assert log.log_end_offset == 9
    assert [(e.epoch, e.start_offset) for e in log.epochs.entries] == [(7, 0)]


def test_log_append_time_is_stamped() -> None:
    _, _, log = _log(message_timestamp_type="LogAppendTime")
    info = _ok(log.append_as_leader(batch(2, ts=5), leader_epoch=0, now_ms=123_456))
    assert info.log_append_time_ms == 123_456
    (v,) = read_all(log)
    v.validate()
    assert v.timestamp_type == TimestampType.LOG_APPEND_TIME and v.max_timestamp == 123_456


def test_refused_batches_write_nothing() -> None:
    _, _, log = _log(max_message_bytes=200, segment_bytes=100_000)
    good = batch(1)
    corrupt = bytearray(batch(1))
    corrupt[-1] ^= 0xFF
    cases = {
        ErrorCode.CORRUPT_MESSAGE: [good + bytes(corrupt), good + good[:30]],
        ErrorCode.MESSAGE_TOO_LARGE: [good + batch(1, size=300)],
        ErrorCode.INVALID_RECORD: [
            build_batch([NewRecord(value=b"v")], last_offset_delta=3),
            # Magic 0 and 1: Kafka's produce path answers INVALID_RECORD, not UNSUPPORTED_VERSION.
            good[:16] + b"\x01" + good[17:],
            good + good[:16] + b"\x00" + good[17:],
        ],
    }
    for code, payloads in cases.items():
        for payload in payloads:
            r = log.append_as_leader(payload, leader_epoch=0, now_ms=0)
            assert isinstance(r, AppendRejected) and r.error == code, (code, r)
    _, _, small = _log(segment_bytes=100)
    r = small.append_as_leader(batch(1, size=60) + batch(1, size=60), leader_epoch=0, now_ms=0)
    assert isinstance(r, AppendRejected) and r.error == ErrorCode.RECORD_LIST_TOO_LARGE
    assert log.log_end_offset == 0 and log.size_bytes == 0


def test_caller_buffer_is_rewritten_in_place_when_writable() -> None:
    _, _, log = _log()
    _ok(log.append_as_leader(batch(1), leader_epoch=0, now_ms=0))
    buf = bytearray(batch(2))
    _ok(log.append_as_leader(buf, leader_epoch=4, now_ms=0))
    assert RecordBatchView(buf).base_offset == 1 and RecordBatchView(buf).partition_leader_epoch == 4


# --- follower appends ------------------------------------------------------------------------------


def test_follower_keeps_offsets_and_epochs_and_refuses_gaps_and_overlaps() -> None:
    _, _, leader = _log()
    for epoch in (1, 1, 2, 5):
        _ok(leader.append_as_leader(batch(2), leader_epoch=epoch, now_ms=0))
    data = b"".join(bytes(v.raw()) for v in read_all(leader))
    _, _, follower = _log()
    views = list(iter_batches(data))
    _ok(follower.append_as_follower(bytes(views[0].raw()), now_ms=0))
    gap = follower.append_as_follower(bytes(views[2].raw()), now_ms=0)
    overlap = follower.append_as_follower(bytes(views[0].raw()), now_ms=0)
    assert isinstance(gap, AppendRejected) and gap.error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert isinstance(overlap, AppendRejected)
    _ok(follower.append_as_follower(b"".join(bytes(v.raw()) for v in views[1:]), now_ms=0))
    assert b"".join(bytes(v.raw()) for v in read_all(follower)) == data
    assert follower.epochs.entries == leader.epochs.entries
    assert follower.end_offset_for_epoch(2) == (2, 6) and follower.end_offset_for_epoch(5) == (5, 8)


# --- reads -----------------------------------------------------------------------------------------


def test_read_starts_at_containing_batch_and_ends_on_boundaries() -> None:
    _, _, log = _log(segment_bytes=1000, index_interval_bytes=50)
    sizes = []
    for i in range(40):
        info = _ok(log.append_as_leader(batch(3, size=i % 7), leader_epoch=0, now_ms=0))
        sizes.append(info.size_bytes)
    assert len(log.segments) > 3
    for start in range(0, 120):
        for max_bytes in (1, 100, 333, 5000):
            res = log.read(start, max_bytes=max_bytes)
            views = list(iter_batches(res.read_bytes()))
            assert sum(v.size_bytes for v in views) == res.size_bytes  # whole batches only
            assert views[0].base_offset <= start <= views[0].last_offset
            assert res.next_offset == views[-1].next_offset
            assert res.size_bytes <= max_bytes or len(views) == 1
            offsets = [o for v in views for o in range(v.base_offset, v.last_offset + 1)]
            assert offsets == list(range(views[0].base_offset, views[-1].last_offset + 1))
    empty = log.read(5, max_bytes=10, min_one_batch=False)
    assert empty.slices == () and empty.next_offset == 5
    assert log.read(120, max_bytes=100).slices == ()
    assert log.read(120, max_bytes=100).next_offset == 120
    assert log.read(121, max_bytes=100).error == ErrorCode.OFFSET_OUT_OF_RANGE
    # Reading on from next_offset visits every batch once, across segments.
    offset, seen = 0, b""
    while offset < log.log_end_offset:
        res = log.read(offset, max_bytes=333)
        seen += res.read_bytes()
        offset = res.next_offset
    assert seen == log.read(0, max_bytes=1 << 20).read_bytes() and len(seen) == sum(sizes)


def test_read_never_passes_the_upper_bound() -> None:
    _, _, log = _log(segment_bytes=300)
    for _ in range(20):
        _ok(log.append_as_leader(batch(2), leader_epoch=0, now_ms=0))
    for bound in range(0, 41):
        views = read_all(log, 0, bound=bound)
        assert (views[-1].next_offset if views else 0) == bound - bound % 2


@pytest.mark.parametrize("seed", range(4))
def test_reads_from_where_a_read_ended_agree_with_fresh_lookups(seed: int) -> None:
    """A read remembers where it ended; the next read from there skips the index lookup. The
    shortcut must give what a lookup gives, through appends, rolls, truncations and retention."""
    rng = random.Random(seed)
    _, _, log = _log(segment_bytes=700, index_interval_bytes=rng.choice([0, 64, 300]), retention_ms=-1)
    next_offsets = [0]
    for step in range(400):
        op = rng.random()
        if op < 0.4 or log.log_end_offset == 0:
            _ok(
                log.append_as_leader(
                    batch(rng.randint(1, 4), size=rng.randint(0, 60)), leader_epoch=0, now_ms=0
                )
            )
            log.update_high_watermark(log.log_end_offset)
        elif op < 0.47:
            log.truncate_to(rng.randint(log.log_start_offset, log.log_end_offset), now_ms=0)
        elif op < 0.5:
            log.delete_records_before(rng.randint(log.log_start_offset, log.high_watermark), now_ms=0)
        else:
            start = rng.choice(next_offsets)
            if not log.log_start_offset <= start <= log.log_end_offset:
                start = rng.randint(log.log_start_offset, log.log_end_offset)
            kw = {
                "max_bytes": rng.randint(1, 400),
                "upper_bound_offset": rng.randint(start, log.log_end_offset),
            }
            res = log.read(start, **kw)  # type: ignore[arg-type]
            hints = dict(log._read_hints)
            log._read_hints.clear()
            fresh = log.read(start, **kw)  # type: ignore[arg-type]
            log._read_hints.update(hints)
            assert res == fresh, (step, start, kw)
            next_offsets = [*next_offsets[-3:], res.next_offset]


# --- rolling ---------------------------------------------------------------------------------------


def test_roll_on_segment_bytes_index_full_and_segment_ms() -> None:
    _, _, log = _log(segment_bytes=500)
    for _ in range(20):
        _ok(log.append_as_leader(batch(1, size=50), leader_epoch=0, now_ms=0))
    assert all(s.size <= 500 for s in log.segments) and len(log.segments) >= 3
    bases = [s.base_offset for s in log.segments]
    assert bases == sorted(bases) and bases[0] == 0

    _, _, log = _log(segment_index_bytes=16, index_interval_bytes=0)
    for _ in range(10):
        _ok(log.append_as_leader(batch(1), leader_epoch=0, now_ms=0))
    assert len(log.segments) >= 3 and all(s.offset_index.entry_count <= 2 for s in log.segments)

    _, _, log = _log(segment_ms=1000)
    _ok(log.append_as_leader(batch(1, ts=10_000), leader_epoch=0, now_ms=0))
    _ok(log.append_as_leader(batch(1, ts=10_500), leader_epoch=0, now_ms=0))
    assert len(log.segments) == 1
    _ok(log.append_as_leader(batch(1, ts=11_001), leader_epoch=0, now_ms=0))
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_roll_on_relative_offset_overflow() -> None:
    _, _, log = _log()
    _ok(log.append_as_leader(batch(1), leader_epoch=0, now_ms=0))
    # A follower batch whose offsets run past 2**31 from the segment base needs a new segment.
    far = bytearray(build_batch([NewRecord(value=b"x")], base_offset=1, last_offset_delta=(1 << 31) - 1))
    _ok(log.append_as_follower(bytes(far), now_ms=0))
    assert [s.base_offset for s in log.segments] == [0, 1]


def test_sparse_index_rule() -> None:
    _, _, log = _log(index_interval_bytes=4096)
    for _ in range(100):
        _ok(log.append_as_leader(batch(1, size=1000), leader_epoch=0, now_ms=0))
    seg = log.active_segment
    # Kafka's rule: a batch gets an entry when more than 4096 bytes were appended since the last.
    expected, since, position = [], 0, 0
    for v in read_all(log):
        if since > 4096:
            expected.append((v.last_offset, position))
            since = 0
        since += v.size_bytes
        position += v.size_bytes
    assert [seg.offset_index.lookup(off) for off, _ in expected] == expected
    assert seg.offset_index.entry_count == len(expected) == 24


# --- offsets by time -------------------------------------------------------------------------------


def test_offsets_for_timestamps() -> None:
    _, _, log = _log(segment_bytes=400, index_interval_bytes=10)
    for i in range(30):
        _ok(log.append_as_leader(batch(2, ts=1000 + 10 * i), leader_epoch=0, now_ms=0))
    # batch i holds offsets 2i, 2i+1 with timestamps 1000+10i, 1001+10i
    assert log.offset_for_timestamp(-2).offset == 0
    assert log.offset_for_timestamp(-1).offset == 60
    mx = log.offset_for_timestamp(-3)
    assert (mx.timestamp, mx.offset) == (1291, 59)
    for t in range(990, 1300):
        found = log.offset_for_timestamp(t)
        expected = [
            o for i in range(30) for o, ts in ((2 * i, 1000 + 10 * i), (2 * i + 1, 1001 + 10 * i)) if ts >= t
        ]
        assert (found.offset if found else None) == (expected[0] if expected else None), t
    assert log.offset_for_timestamp(1292) is None


# --- truncation, start offset, high watermark ------------------------------------------------------


def test_truncate_to_and_fully() -> None:
    _, _, log = _log(segment_bytes=300)
    for epoch in range(10):
        _ok(log.append_as_leader(batch(2), leader_epoch=epoch, now_ms=0))
    log.update_high_watermark(20)
    log.truncate_to(11, now_ms=0)  # inside the batch 10..11: the whole batch goes
    assert log.log_end_offset == 10 and log.high_watermark == 10
    assert [v.next_offset for v in read_all(log)][-1] == 10
    assert log.epochs.latest_epoch == 4
    _ok(log.append_as_leader(batch(1), leader_epoch=9, now_ms=0))
    assert read_all(log)[-1].base_offset == 10
    log.truncate_fully_and_start_at(500, now_ms=0)
    assert (log.log_start_offset, log.log_end_offset, len(log.segments)) == (500, 500, 1)
    assert log.epochs.entries == []
    assert _ok(log.append_as_leader(batch(1), leader_epoch=10, now_ms=0)).first_offset == 500


def test_delete_records_and_high_watermark_clamps() -> None:
    _, _, log = _log(segment_bytes=300)
    for _ in range(10):
        _ok(log.append_as_leader(batch(2), leader_epoch=1, now_ms=0))
    assert log.update_high_watermark(100) == 20
    assert log.delete_records_before(21, now_ms=0) == ErrorCode.OFFSET_OUT_OF_RANGE
    log.update_high_watermark(15)
    assert log.delete_records_before(9, now_ms=0) == ErrorCode.NONE
    assert log.log_start_offset == 9
    assert log.segments[0].base_offset <= 9 < log._next_base(0)
    assert log.read(8, max_bytes=100).error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert read_all(log)[0].base_offset == 8  # the batch holding offset 9
    assert log.epochs.entries[0].start_offset == 9


# --- retention -------------------------------------------------------------------------------------


def test_retention_by_time_and_size_respects_high_watermark() -> None:
    fs, mgr, log = _log(segment_bytes=300, retention_ms=1000, file_delete_delay_ms=10)
    for i in range(20):
        _ok(log.append_as_leader(batch(2, ts=i * 100), leader_epoch=0, now_ms=0))
    nsegs = len(log.segments)
    assert log.delete_expired_segments(now_ms=10_000) == 0  # high watermark 0: nothing may go
    log.update_high_watermark(log.log_end_offset)
    deleted = log.delete_expired_segments(now_ms=1_300)
    assert 0 < deleted < nsegs
    assert log.log_start_offset == log.segments[0].base_offset
    assert all(s.max_timestamp >= 200 for s in log.segments)
    assert any(n.endswith(".deleted") for n in fs.listdir(log.dir))
    mgr.remove_deleted(now_ms=10**9)
    assert not any(n.endswith(".deleted") for n in fs.listdir(log.dir))
    # Everything expired: the active segment is rolled and deleted too, the log stays usable.
    log.delete_expired_segments(now_ms=10**9)
    assert log.size_bytes == 0 and log.log_start_offset == log.log_end_offset == 40
    assert _ok(log.append_as_leader(batch(1), leader_epoch=0, now_ms=0)).first_offset == 40

    _, _, log = _log(segment_bytes=300, retention_bytes=600)
    for _ in range(20):
        _ok(log.append_as_leader(batch(2), leader_epoch=0, now_ms=0))
    log.update_high_watermark(log.log_end_offset)
    log.delete_expired_segments(now_ms=0)
    assert log.size_bytes <= 600 + 300 and log.active_segment.size > 0


def test_manager_tick_runs_retention_on_its_interval() -> None:
    fs = SimFileSystem()
    cfg = LogConfig(segment_bytes=300, retention_ms=10, file_delete_delay_ms=0)
    mgr = LogManager.open(
        fs, "/d", now_ms=0, default_config=cfg, dir_config=LogDirConfig(retention_check_interval_ms=5000)
    )
    log = mgr.get_or_create_log("t", 0, now_ms=0)
    for _ in range(10):
        _ok(log.append_as_leader(batch(2, ts=0), leader_epoch=0, now_ms=0))
    log.update_high_watermark(20)
    mgr.tick(now_ms=4999)
    assert log.log_start_offset == 0
    mgr.tick(now_ms=5000)
    assert log.log_start_offset > 0


# --- manager, layout, scale ------------------------------------------------------------------------


def test_layout_on_disk_matches_kafka(tmp_path: object) -> None:
    from storage.fs import OsFileSystem

    fs = OsFileSystem()
    root = str(tmp_path)
    mgr = LogManager.open(
        fs, root, now_ms=0, default_config=LogConfig(segment_bytes=200, index_interval_bytes=0)
    )
    import uuid

    tid = uuid.uuid4()
    log = mgr.get_or_create_log("orders", 3, now_ms=0, topic_id=tid)
    for _ in range(5):
        _ok(log.append_as_leader(batch(2), leader_epoch=2, now_ms=0))
    mgr.ensure_meta_properties(cluster_id="c1", node_id=1, directory_id=uuid.UUID(int=1))
    mgr.close(now_ms=0)
    import os

    names = sorted(os.listdir(root))
    assert names == [
        ".kafka_cleanshutdown",
        "log-start-offset-checkpoint",
        "meta.properties",
        "orders-3",
        "recovery-point-offset-checkpoint",
        "replication-offset-checkpoint",
    ]
    part = sorted(os.listdir(os.path.join(root, "orders-3")))
    assert (
        "00000000000000000000.log" in part
        and "leader-epoch-checkpoint" in part
        and "partition.metadata" in part
    )
    with open(os.path.join(root, "recovery-point-offset-checkpoint")) as f:
        assert f.read() == "0\n1\norders 3 10\n"
    # Index entries: 8 bytes (relative offset, position) pointing at real batch starts.
    seg1 = sorted(n for n in part if n.endswith(".index"))[0]
    with open(os.path.join(root, "orders-3", seg1), "rb") as f:
        raw = f.read()
    with open(os.path.join(root, "orders-3", seg1[:-6] + ".log"), "rb") as f:
        data = f.read()
    assert len(raw) % 8 == 0 and raw
    for rel, pos in struct.iter_unpack(">ii", raw):
        assert RecordBatchView(data, pos).last_offset == rel  # base offset 0
    mgr2 = LogManager.open(fs, root, now_ms=0)
    assert mgr2.had_clean_shutdown
    assert mgr2.get_log("orders", 3).topic_id == tid


def test_many_partitions_bounded_open_files() -> None:
    fs = SimFileSystem()
    cfg = LogConfig(segment_bytes=200)
    mgr = LogManager.open(
        fs, "/d", now_ms=0, default_config=cfg, dir_config=LogDirConfig(open_segments_max=32)
    )
    for p in range(300):
        log = mgr.get_or_create_log("t", p, now_ms=0)
        for _ in range(3):
            _ok(log.append_as_leader(batch(2), leader_epoch=0, now_ms=0))
        assert mgr.cache.open_count <= 32
    mgr.close(now_ms=0)
    mgr = LogManager.open(
        fs, "/d", now_ms=0, default_config=cfg, dir_config=LogDirConfig(open_segments_max=32)
    )
    assert mgr.had_clean_shutdown and mgr.cache.open_count <= 32
    for p in range(300):
        log = mgr.get_log("t", p)
        assert log is not None and log.log_end_offset == 6
        assert [v.base_offset for v in read_all(log)] == [0, 2, 4]
    assert mgr.cache.open_count <= 32


def test_delete_log_removes_directory_later() -> None:
    fs, mgr, log = _log(file_delete_delay_ms=100)
    _ok(log.append_as_leader(batch(1), leader_epoch=0, now_ms=0))
    assert mgr.delete_log("t", 0, now_ms=0)
    assert [n for n in fs.listdir("/data") if n.endswith("-delete")]
    mgr.remove_deleted(now_ms=100)
    assert not [n for n in fs.listdir("/data") if n.startswith("t-0")]


@pytest.mark.parametrize("flush_messages", [1, 3])
def test_flush_needed_follows_flush_messages(flush_messages: int) -> None:
    _, _, log = _log(flush_messages=flush_messages)
    needed = []
    for _ in range(6):
        info = _ok(log.append_as_leader(batch(1), leader_epoch=0, now_ms=0))
        needed.append(info.flush_needed)
        if info.flush_needed:
            log.flush(now_ms=0)
    assert needed == ([True] * 6 if flush_messages == 1 else [False, False, True, False, False, True])
