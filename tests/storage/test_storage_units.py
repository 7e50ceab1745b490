"""Unit tests of the storage building blocks: file systems, checkpoints, epoch cache, indexes, config.

Goal: pin down each piece's contract on its own -- the crash simulator loses exactly what was
not synced, checkpoint files are byte-for-byte Kafka's formats, the epoch cache answers
OffsetForLeaderEpoch as Kafka does, and the sparse indexes find what they should.
"""

from __future__ import annotations

import random
import uuid

import pytest

from storage import checkpoint
from storage.config import LogConfig, LogDirConfig
from storage.epoch import EpochEntry, LeaderEpochCache
from storage.files import FileCache, LazyFile
from storage.fs import OsFileSystem, SimFileSystem, read_whole, write_atomically
from storage.index import OffsetIndex, TimeIndex
from storage.layout import parse_partition_dir, parse_segment_name, segment_name

# --- the crash simulator ---------------------------------------------------------------------------


def test_sim_crash_keeps_only_synced_bytes_and_names() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    fs.sync_dir("/")
    f = fs.open("/d/a", create=True)
    f.append(b"hello")
    f.sync()
    f.append(b" world")
    g = fs.open("/d/b", create=True)
    g.append(b"lost")
    g.sync()  # content synced, but the name never was
    fs.sync_dir("/d")
    h = fs.open("/d/c", create=True)
    h.append(b"unsynced name")
    h.sync()
    fs.crash()
    assert read_whole(fs, "/d/a") == b"hello"
    assert read_whole(fs, "/d/b") == b"lost"
    assert not fs.exists("/d/c")
    with pytest.raises(OSError):
        f.read_at(0, 1)


def test_sim_rename_is_durable_only_after_dir_sync() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    fs.sync_dir("/")
    f = fs.open("/d/x.tmp", create=True)
    f.append(b"new")
    f.sync()
    fs.sync_dir("/d")
    fs.rename("/d/x.tmp", "/d/x")
    fs.crash()
    assert fs.exists("/d/x.tmp") and not fs.exists("/d/x")


def test_sim_torn_crash_keeps_a_prefix_of_the_unsynced_tail() -> None:
    rng = random.Random(7)
    lengths = set()
    for _ in range(50):
        fs = SimFileSystem()
        fs.makedirs("/d")
        fs.sync_dir("/")
        f = fs.open("/d/a", create=True)
        f.append(b"A" * 10)
        f.sync()
        fs.sync_dir("/d")
        f.append(b"B" * 100)
        fs.crash(rng, torn=True)
        data = read_whole(fs, "/d/a")
        assert data[:10] == b"A" * 10 and len(data) <= 110
        lengths.add(len(data))
    assert len(lengths) > 10


@pytest.mark.parametrize("kind", ["os", "sim"])
def test_write_atomically_replaces_whole_file(kind: str, tmp_path: object) -> None:
    if kind == "os":
        fs: OsFileSystem | SimFileSystem = OsFileSystem()
        base = str(tmp_path)
    else:
        fs = SimFileSystem()
        base = "/x"
        fs.makedirs(base)
    path = base + "/cp"
    write_atomically(fs, path, b"one")
    write_atomically(fs, path, b"two two")
    assert read_whole(fs, path) == b"two two"
    assert sorted(fs.listdir(base)) == ["cp"]


def test_file_cache_bounds_open_files_and_reopens() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    cache = FileCache(fs, open_files_max=3)
    files = [LazyFile.create(cache, f"/d/{i}") for i in range(10)]
    for i, f in enumerate(files):
        f.handle().append(bytes([i]) * 3)
        assert cache.open_count <= 3
    assert [f.handle().read_at(0, 3) for f in files] == [bytes([i]) * 3 for i in range(10)]
    assert cache.open_count == 3
    pinned = files[0]
    pinned.pin()
    for f in files[1:]:
        f.handle()
    assert pinned.is_open
    pinned.unpin()


# --- checkpoints: Kafka's exact text ---------------------------------------------------------------


def test_offset_checkpoint_format() -> None:
    fs = SimFileSystem()
    fs.makedirs("/l")
    checkpoint.write_offsets(fs, "/l/recovery-point-offset-checkpoint", {("b", 1): 7, ("a", 0): 1234})
    assert read_whole(fs, "/l/recovery-point-offset-checkpoint") == b"0\n2\na 0 1234\nb 1 7\n"
    assert checkpoint.read_offsets(fs, "/l/recovery-point-offset-checkpoint") == {("a", 0): 1234, ("b", 1): 7}
    assert checkpoint.read_offsets(fs, "/l/absent") == {}


def test_epoch_checkpoint_format_and_errors() -> None:
    fs = SimFileSystem()
    fs.makedirs("/p")
    checkpoint.write_epochs(fs, "/p/leader-epoch-checkpoint", [(0, 0), (3, 120)])
    assert read_whole(fs, "/p/leader-epoch-checkpoint") == b"0\n2\n0 0\n3 120\n"
    write_atomically(fs, "/p/bad", b"0\n3\n0 0\n")
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.read_epochs(fs, "/p/bad")


def test_partition_metadata_and_properties() -> None:
    fs = SimFileSystem()
    fs.makedirs("/p")
    tid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    checkpoint.write_partition_metadata(fs, "/p/partition.metadata", tid)
    text = read_whole(fs, "/p/partition.metadata").decode()
    assert text == f"version: 0\ntopic_id: {checkpoint.topic_id_to_str(tid)}\n"
    assert len(checkpoint.topic_id_to_str(tid)) == 22
    assert checkpoint.read_partition_metadata(fs, "/p/partition.metadata") == tid
    write_atomically(fs, "/p/meta.properties", b"#\n#Thu\nnode.id=1\nversion=1\ncluster.id=abc\n")
    assert checkpoint.read_properties(fs, "/p/meta.properties") == {
        "node.id": "1",
        "version": "1",
        "cluster.id": "abc",
    }


def test_layout_names() -> None:
    assert segment_name(1234, ".log") == "00000000000000001234.log"
    assert parse_segment_name("00000000000000001234.timeindex") == (1234, ".timeindex")
    assert parse_segment_name("00000000000000001234.log.deleted") is None
    assert parse_partition_dir("my.topic-12") == ("my.topic", 12)
    assert parse_partition_dir("a-b-3") == ("a-b", 3)
    assert parse_partition_dir("t-0.abc-delete") is None


# --- leader epoch cache ----------------------------------------------------------------------------


def _cache(*pairs: tuple[int, int]) -> LeaderEpochCache:
    return LeaderEpochCache(None, None, [EpochEntry(epoch=e, start_offset=s) for e, s in pairs])


def test_epoch_end_offset_for_follows_kafka() -> None:
    c = _cache((1, 0), (3, 10), (5, 20))
    assert c.end_offset_for(-1, 30) == (-1, -1)
    assert c.end_offset_for(5, 30) == (5, 30)  # latest: the log end
    assert c.end_offset_for(3, 30) == (3, 20)
    assert c.end_offset_for(4, 30) == (3, 20)  # unknown epoch: largest below, next start
    assert c.end_offset_for(0, 30) == (0, 0)  # below every epoch: itself and the first start
    assert c.end_offset_for(6, 30) == (-1, -1)
    assert _cache().end_offset_for(1, 5) == (-1, -1)


def test_epoch_assign_keeps_monotonic() -> None:
    c = _cache((1, 0), (3, 10), (5, 20))
    assert not c.assign(epoch=5, start_offset=25)
    assert c.assign(epoch=4, start_offset=15)  # drops 5@20
    assert [(e.epoch, e.start_offset) for e in c.entries] == [(1, 0), (3, 10), (4, 15)]
    assert c.assign(epoch=6, start_offset=12)  # drops 4@15 (offset not above)
    assert [(e.epoch, e.start_offset) for e in c.entries] == [(1, 0), (3, 10), (6, 12)]


def test_epoch_truncation_and_persistence() -> None:
    fs = SimFileSystem()
    fs.makedirs("/p")
    c = LeaderEpochCache(fs, "/p/leader-epoch-checkpoint")
    for e, s in [(1, 0), (3, 10), (5, 20)]:
        c.assign(epoch=e, start_offset=s)
    c.truncate_from_end(20)
    assert [(e.epoch, e.start_offset) for e in c.entries] == [(1, 0), (3, 10)]
    c.truncate_from_start(12)
    assert [(e.epoch, e.start_offset) for e in c.entries] == [(3, 12)]
    fs.crash()
    assert LeaderEpochCache.load(fs, "/p/leader-epoch-checkpoint").entries == c.entries
    assert c.epoch_for_offset(11) is None and c.epoch_for_offset(100) == 3


# --- indexes ---------------------------------------------------------------------------------------


def _indexes(base: int = 100, max_bytes: int = 1 << 20) -> tuple[OffsetIndex, TimeIndex]:
    fs = SimFileSystem()
    fs.makedirs("/s")
    cache = FileCache(fs)
    oi = OffsetIndex(
        LazyFile.create(cache, "/s/i"), base_offset=base, index_bytes_max=max_bytes, file_entries=0
    )
    ti = TimeIndex(
        LazyFile.create(cache, "/s/t"), base_offset=base, index_bytes_max=max_bytes, file_entries=0
    )
    return oi, ti


def test_offset_index_lookup_both_ways_and_truncate() -> None:
    oi, _ = _indexes()
    for k in range(1, 200):
        oi.append(100 + 10 * k, 1000 * k)  # enough entries to spill to the file
    assert oi.lookup(99) == (100, 0)
    assert oi.lookup(115) == (110, 1000)
    assert oi.lookup(120) == (120, 2000)
    assert oi.lookup(10**9) == (100 + 10 * 199, 199000)
    assert oi.lookup_position(2500) == (120, 2000)
    oi.truncate_to(125)
    assert oi.last_entry() == (120, 2000) and oi.entry_count == 2
    assert oi.check(log_bytes=5000) is None
    assert oi.check(log_bytes=1500) is not None
    oi.write_pending()
    assert oi.file.size() == 16


def test_index_searches_agree_with_a_scan_across_blocks_and_the_tail() -> None:
    """Searches read the warm tail, probe, then read one block: check every key against a scan,
    with entries in the file and in the unwritten tail, and with narrowed ranges."""
    sim = SimFileSystem()
    sim.makedirs("/s")
    reads = 0

    class CountingHandle:
        def __init__(self, handle: object) -> None:
            self._handle = handle

        def __getattr__(self, name: str) -> object:
            return getattr(self._handle, name)

        def read_at(self, position: int, size: int) -> bytes:
            nonlocal reads
            reads += 1
            data: bytes = self._handle.read_at(position, size)  # type: ignore[attr-defined]
            return data

    class CountingFs:
        def __getattr__(self, name: str) -> object:
            return getattr(sim, name)

        def open(self, path: str, *, create: bool = False) -> object:
            return CountingHandle(sim.open(path, create=create))

    cache = FileCache(CountingFs(), open_files_max=4)  # type: ignore[arg-type]
    oi = OffsetIndex(LazyFile.create(cache, "/s/i"), base_offset=7, index_bytes_max=1 << 20, file_entries=0)
    n = 5000
    entries = [(7 + 3 * k + 2, 100 * k + 50) for k in range(n)]
    for offset, position in entries:
        oi.append(offset, position)
    assert oi.entry_count == n and oi._file_entries < n  # some still in the tail

    def by_offset(key: int) -> tuple[int, int]:
        below = [e for e in entries if e[0] <= key]
        return below[-1] if below else (7, 0)

    def by_position(key: int, first: int = 0, last: int = n - 1) -> tuple[int, int]:
        below = [e for e in entries[first : last + 1] if e[1] <= key]
        return below[-1] if below else (7, 0)

    for key in [0, 7, 8, 9, 10, 11, 3000, 4500, 5000, 6000, 12_000, 10**6, *range(14_900, 15_020, 7)]:
        assert oi.lookup(key) == by_offset(key), key
        i, offset, position = oi.lookup_entry(key)
        assert (offset, position) == by_offset(key) and (i < 0 or entries[i] == (offset, position))
    for key in [0, 49, 50, 51, 99_999, 150_000, 250_000, 10**9, *range(490_000, 500_100, 333)]:
        assert oi.lookup_position(key) == by_position(key), key
        for first, last in [(0, 10), (100, 300), (1500, 2999), (4990, 6000)]:
            assert oi.lookup_position(key, first=first, last=last) == by_position(key, first, last)
    # A lookup near the end reads the warm tail only: a probe and one block.
    oi.write_pending()
    reads = 0
    assert oi.lookup(7 + 3 * 4990 + 2) == entries[4990]
    assert reads <= 2, reads
    reads = 0
    assert oi.lookup(7 + 3 * 10) == entries[9]
    assert reads <= 4, reads  # a probe of the tail, two halvings, one block


def test_time_index_lookup_and_full() -> None:
    _, ti = _indexes(max_bytes=36)
    ti.maybe_append(50, 101)
    ti.maybe_append(50, 102)  # not larger: ignored
    ti.maybe_append(70, 105)
    ti.maybe_append(90, 110)
    assert ti.entry_count == 3 and ti.is_full
    assert ti.lookup(10) == (-1, 100)
    assert ti.lookup(75) == (70, 105)
    ti.truncate_to(105)
    assert ti.last_entry() == (50, 101)


# --- config ----------------------------------------------------------------------------------------


def test_config_defaults_and_properties() -> None:
    c = LogConfig()
    assert (c.segment_bytes, c.segment_ms, c.segment_index_bytes, c.index_interval_bytes) == (
        1 << 30,
        7 * 24 * 3600 * 1000,
        10 << 20,
        4096,
    )
    assert c.max_message_bytes == 1048588 and not c.durable_appends
    t = LogConfig.from_properties({"flush.messages": "1", "message.timestamp.type": "LogAppendTime"})
    assert t.durable_appends and t.log_append_time
    b = LogConfig.from_broker_properties({"log.retention.hours": "1", "log.retention.minutes": "2"})
    assert b.retention_ms == 120_000
    assert LogConfig.from_broker_properties({"log.flush.interval.messages": 5}).flush_messages == 5
    assert (
        LogDirConfig.from_broker_properties(
            {"log.retention.check.interval.ms": "10"}
        ).retention_check_interval_ms
        == 10
    )
    with pytest.raises(ValueError):
        LogConfig(segment_bytes=1)
    with pytest.raises(ValueError):
        LogConfig(message_timestamp_type="Whenever")
