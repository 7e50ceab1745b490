"""Creating a topic keeps the event loop serving, and is all-or-nothing across crashes.

Goal: ``Broker.create_topic_in_steps`` (what CreateTopics uses) makes a big topic one partition
at a time while other requests are served; the topic stays invisible and its name taken until it
is whole; the answer comes only when the topic is durable (a crash right after loses nothing of
it); and a crash, an I/O error or a cancellation at any point of the creation leaves either no
trace of the topic or the whole topic, never a half-made one that breaks the next start.

The responsiveness test runs on trio's real clock (the creation waits for the loop to be idle,
which an autojump clock would make instantaneous); the others need no clock at all.
"""

from __future__ import annotations

import posixpath
import uuid

import pytest
import trio
from broker_testkit import batch, make_broker, only_partition, produce_request, serving

from broker.core import Broker
from protocol.error_codes import ErrorCode
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import ProduceResponse
from storage.checkpoint import (
    LEADER_EPOCH_CHECKPOINT,
    PARTITION_METADATA,
    read_epochs,
    read_partition_metadata,
)
from storage.fs import FileHandle, SimFileSystem
from storage.layout import parse_partition_dir

E = ErrorCode
BIG_PARTITIONS = 200
REAL_S_MAX = 60  # the responsiveness test takes about a second; the margin is for a loaded machine
PINGS_DURING_CREATION_MIN = 20


class PowerCut(BaseException):
    """The machine stops: raised by ``CuttingFS`` from the cut on, through every handler."""


class CuttingFS:
    """A ``SimFileSystem`` that counts what the creation does and can stop the machine.

    ``cut_after`` (when set) is how many more changing calls (creating, appending, syncing,
    renaming, removing) succeed; the next and every call after it raise ``PowerCut``, or
    ``OSError`` once when ``error`` is set. ``metadata_files`` counts ``partition.metadata`` files
    put in place: the creation's progress.
    """

    def __init__(self, sim: SimFileSystem) -> None:
        self.sim = sim
        self.cut_after: int | None = None
        self.error = False
        self.changes = 0
        self.metadata_files = 0
        self.dead = False

    def _change(self) -> None:
        if self.dead:
            raise PowerCut
        self.changes += 1
        if self.cut_after is not None and self.changes > self.cut_after:
            if self.error:
                self.cut_after = None
                raise OSError(28, "No space left on device (injected)")
            self.dead = True
            raise PowerCut

    def _read(self) -> None:
        if self.dead:
            raise PowerCut

    def open(self, path: str, *, create: bool = False) -> FileHandle:
        if create and not self.sim.exists(path):
            self._change()
        else:
            self._read()
        return _CuttingFile(self, self.sim.open(path, create=create))

    def exists(self, path: str) -> bool:
        self._read()
        return self.sim.exists(path)

    def is_dir(self, path: str) -> bool:
        self._read()
        return self.sim.is_dir(path)

    def file_size(self, path: str) -> int:
        self._read()
        return self.sim.file_size(path)

    def listdir(self, path: str) -> list[str]:
        self._read()
        return self.sim.listdir(path)

    def makedirs(self, path: str) -> None:
        self._change()
        self.sim.makedirs(path)

    def rename(self, src: str, dst: str) -> None:
        self._change()
        self.sim.rename(src, dst)
        if posixpath.basename(dst) == PARTITION_METADATA:
            self.metadata_files += 1

    def remove(self, path: str) -> None:
        self._change()
        self.sim.remove(path)

    def rmdir(self, path: str) -> None:
        self._change()
        self.sim.rmdir(path)

    def sync_dir(self, path: str) -> None:
        self._change()
        self.sim.sync_dir(path)

    def sync_filesystem(self, path: str) -> bool:
        self._change()
        return self.sim.sync_filesystem(path)

    def writeback_pending_bytes(self, path: str) -> int | None:
        return self.sim.writeback_pending_bytes(path)


class _CuttingFile:
    def __init__(self, fs: CuttingFS, handle: FileHandle) -> None:
        self.fs = fs
        self.handle = handle

    @property
    def path(self) -> str:
        return self.handle.path

    def read_at(self, position: int, size: int) -> bytes:
        self.fs._read()
        return self.handle.read_at(position, size)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self.fs._change()
        self.handle.append(data)

    def size(self) -> int:
        self.fs._read()
        return self.handle.size()

    def truncate(self, size: int) -> None:
        self.fs._change()
        self.handle.truncate(size)

    def sync(self) -> None:
        self.fs._change()
        self.handle.sync()

    def fileno(self) -> int | None:
        return None

    def close(self) -> None:
        self.handle.close()


# --- helpers ---------------------------------------------------------------------------------------


def create_request(name: str, partitions: int) -> CreateTopicsRequest:
    return CreateTopicsRequest(timeout_ms=60_000, topics=[CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1)])


def metadata_request(names: list[str] | None) -> MetadataRequest:
    topics = None if names is None else [MetadataRequest.MetadataRequestTopic(name=n) for n in names]
    return MetadataRequest(topics=topics, allow_auto_topic_creation=False)


def live_partition_dirs(sim: SimFileSystem, topic: str) -> list[str]:
    out = []
    for name in sim.listdir("/data"):
        tp = parse_partition_dir(name)
        if tp is not None and tp[0] == topic:
            out.append(name)
    return out


def assert_whole(b: Broker, name: str, partitions: int, topic_id: uuid.UUID | None = None) -> None:
    """The topic is in the catalogue and served: every partition has its state, an empty log
    whose directory names the topic id, and leader epoch 0 from offset 0."""
    topic = b.topics.get(name)
    assert topic is not None and topic.partitions == partitions
    if topic_id is not None:
        assert topic.topic_id == topic_id
    for p in range(partitions):
        state = b.partition(name, p)
        assert state is not None, p
        assert state.log.topic_id == topic.topic_id
        assert [(e.epoch, e.start_offset) for e in state.log.epochs.entries] == [(0, 0)]
    assert b.partition(name, partitions) is None


# --- the loop keeps serving ------------------------------------------------------------------------


async def test_requests_are_served_while_a_big_topic_is_created_and_it_is_whole_and_durable_after():
    sim = SimFileSystem()
    fs = CuttingFS(sim)
    b = make_broker(fs)
    b.create_topic("small", 1, {})
    progress_seen: list[int] = []
    with trio.fail_after(REAL_S_MAX):
        async with serving(b) as h:
            creator, other = h.connect(), h.connect()
            created = b.topics.get("small")
            assert created is not None
            await creator.send(create_request("big", BIG_PARTITIONS), 7)
            while not b.topics.is_reserved("big"):
                await trio.sleep(0.001)
            # While it is made: ApiVersions, Metadata and Produce on another topic are answered,
            # the new topic is invisible and its name is taken.
            while b.topics.is_reserved("big"):
                resp = await other.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
                assert isinstance(resp, ApiVersionsResponse) and resp.error_code == E.NONE
                if b.topics.is_reserved("big"):
                    progress_seen.append(fs.metadata_files)
                await trio.sleep(0.001)
                if len(progress_seen) == 5:
                    md = await other.request(metadata_request(None), 12)
                    assert isinstance(md, MetadataResponse)
                    assert [t.name for t in md.topics] == ["small"]
                    md = await other.request(metadata_request(["big"]), 12)
                    assert isinstance(md, MetadataResponse)
                    assert md.topics[0].error_code == E.UNKNOWN_TOPIC_OR_PARTITION  # not auto-created either
                    again = await other.request(create_request("big", 1), 7)
                    assert isinstance(again, CreateTopicsResponse)
                    assert again.topics[0].error_code == E.TOPIC_ALREADY_EXISTS
                    pr = await other.request(produce_request("small", 0, batch([b"meanwhile"]), acks=1), 9)
                    assert isinstance(pr, ProduceResponse) and only_partition(pr).error_code == E.NONE
            resp = await creator.receive(CreateTopicsRequest.API_KEY, 7, 1)
            assert isinstance(resp, CreateTopicsResponse)
            (result,) = resp.topics
            assert result.error_code == E.NONE, result
            assert result.num_partitions == BIG_PARTITIONS

            assert len(progress_seen) >= PINGS_DURING_CREATION_MIN, progress_seen
            # Served throughout the creation, not only before it began or after it ended.
            assert min(progress_seen) < BIG_PARTITIONS // 4 and max(progress_seen) > 3 * BIG_PARTITIONS // 4

            assert_whole(b, "big", BIG_PARTITIONS, result.topic_id)
            md = await other.request(metadata_request(["big"]), 12)
            assert isinstance(md, MetadataResponse)
            (t,) = md.topics
            assert t.error_code == E.NONE and t.topic_id == result.topic_id
            assert [(p.partition_index, p.leader_id) for p in t.partitions] == [
                (p, b.node_id) for p in range(BIG_PARTITIONS)]
            pr = await other.request(produce_request("big", BIG_PARTITIONS - 1, batch([b"x"]), acks=1), 9)
            assert isinstance(pr, ProduceResponse) and only_partition(pr).error_code == E.NONE

    # Answered means durable: a power cut right after loses nothing of the topic.
    sim.crash()
    for p in range(BIG_PARTITIONS):
        d = f"/data/big-{p}"
        assert read_partition_metadata(sim, posixpath.join(d, PARTITION_METADATA)) == result.topic_id
        assert read_epochs(sim, posixpath.join(d, LEADER_EPOCH_CHECKPOINT)) == [(0, 0)]
    b2 = make_broker(sim)
    assert_whole(b2, "big", BIG_PARTITIONS, result.topic_id)
    assert b2.topics.get("small") is not None
    b2.close()


# --- all or nothing --------------------------------------------------------------------------------


PARTITIONS = 3


def _broker_with_a_topic() -> tuple[SimFileSystem, CuttingFS, Broker, uuid.UUID]:
    sim = SimFileSystem()
    fs = CuttingFS(sim)
    b = make_broker(fs)
    keep = b.create_topic("keep", 2, {})
    return sim, fs, b, keep.topic_id


async def _changes_of_a_whole_creation() -> int:
    _, fs, b, _ = _broker_with_a_topic()
    before = fs.changes
    await b.create_topic_in_steps("big", PARTITIONS, {})
    return fs.changes - before


async def test_a_power_cut_at_any_point_of_a_creation_leaves_no_half_made_topic():
    """Cut the power before each changing call of a creation in turn, then start again on what
    the disk kept: the topic is absent with no partition directory left (the catalogue names
    topics only once they are whole), the other topic is intact, and creating it again works."""
    total = await _changes_of_a_whole_creation()
    assert total >= 5 * PARTITIONS  # directories, segments, partition.metadata, epochs, catalogue
    for cut in range(total):
        sim, fs, b, keep_id = _broker_with_a_topic()
        fs.cut_after = fs.changes + cut
        with pytest.raises(PowerCut):
            await b.create_topic_in_steps("big", PARTITIONS, {})
        sim.crash()
        b2 = make_broker(sim)
        assert b2.topics.get("big") is None, cut
        assert live_partition_dirs(sim, "big") == [], cut
        assert b2.partition("big", 0) is None
        assert_whole(b2, "keep", 2, keep_id)
        topic = await b2.create_topic_in_steps("big", PARTITIONS, {})
        assert_whole(b2, "big", PARTITIONS, topic.topic_id)
        b2.close()


async def test_an_io_error_is_a_storage_error_for_that_topic_and_undone():
    sim = SimFileSystem()
    fs = CuttingFS(sim)
    b = make_broker(fs)
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(REAL_S_MAX):
            fs.error = True
            fs.cut_after = fs.changes + 4 * PARTITIONS  # some partitions are made, then the disk fills
            resp = await c.request(create_request("big", PARTITIONS), 7)
            assert isinstance(resp, CreateTopicsResponse)
            assert resp.topics[0].error_code == E.KAFKA_STORAGE_ERROR, resp
            assert b.topics.get("big") is None and not b.topics.is_reserved("big")
            assert live_partition_dirs(sim, "big") == []
            resp = await c.request(create_request("big", PARTITIONS), 7)
            assert isinstance(resp, CreateTopicsResponse)
            assert resp.topics[0].error_code == E.NONE, resp
    assert_whole(b, "big", PARTITIONS, resp.topics[0].topic_id)
    b.close()


async def test_a_cancelled_creation_is_undone():
    """Cancellation (a shutdown) midway: the name is free again, no directory is left, and
    nothing of the topic reached the log manager or the catalogue file."""
    sim = SimFileSystem()
    fs = CuttingFS(sim)
    b = make_broker(fs)
    with trio.fail_after(REAL_S_MAX):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.create_topic_in_steps, "big", BIG_PARTITIONS, {})
            while fs.metadata_files < BIG_PARTITIONS // 2:
                await trio.sleep(0)
            nursery.cancel_scope.cancel()
    assert not b.topics.is_reserved("big") and b.topics.get("big") is None
    assert live_partition_dirs(sim, "big") == []
    assert b.logs is not None and not any(name == "big" for name, _ in b.logs.logs)
    b.close()
    b2 = make_broker(sim)
    assert b2.topics.get("big") is None
    topic = await b2.create_topic_in_steps("big", PARTITIONS, {})
    assert_whole(b2, "big", PARTITIONS, topic.topic_id)
    b2.close()
