"""Goal: KRaft snapshots (KIP-630) as ``replication.snapshot`` and ``replication.raft`` build them.

* The file format: what ``encode_snapshot`` writes reads back; any single changed byte and any
  cut is refused (``SnapshotError``), so a torn or rotted file is never loaded; Kafka's names.
* The store: a write is atomic (a crash before the rename leaves nothing, a ``.part`` left over is
  removed), a corrupt file is removed at open and the older snapshot is used.
* The image: the records of ``image_records`` rebuild every image (hypothesis-generated ones and
  ones a controller built through random operations) up to what a snapshot cannot keep
  (``as_of_snapshot``), and replaying the log after a snapshot ends where replaying it all does.
* The triggers (``SnapshotPolicy``): bytes, time, nothing new.
* The Raft core: a leader answers a fetch below its log start (or at offset 0, or of an epoch older
  than its earliest snapshot) with its latest snapshot's id; FetchSnapshot's error codes; a
  follower fetches a snapshot in several chunks, validates it, installs it (its log restarts at
  the snapshot's end, its last fetched epoch is the snapshot's) and refetches one that fails to
  validate; retention moves the log start to a snapshot and never past the high watermark or the
  latest snapshot; a crash between installing and truncating is finished at the next start.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.error_codes import ErrorCode
from protocol.messages.delete_topics import DeleteTopicsRequest
from protocol.messages.fetch import FetchRequest
from protocol.messages.fetch_snapshot import FetchSnapshotRequest, FetchSnapshotResponse
from protocol.messages.incremental_alter_configs import IncrementalAlterConfigsRequest
from protocol.records import iter_batches
from replication.metadata import MetadataImage
from replication.quorum_state import ElectionState
from replication.raft import CommitCursor, RaftConfig, RaftNode, RaftRole, SendRequest
from replication.records import (
    RECOVERED,
    RECOVERING,
    BrokerEndpoint,
    BrokerFeature,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    FeatureLevelRecord,
    FenceBrokerRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnfenceBrokerRecord,
    UnregisterBrokerRecord,
)
from replication.snapshot import (
    SnapshotError,
    SnapshotId,
    SnapshotPolicy,
    SnapshotPolicyConfig,
    SnapshotStore,
    as_of_snapshot,
    decode_snapshot,
    encode_snapshot,
    image_from_records,
    image_records,
    parse_snapshot_name,
)
from storage.config import LogConfig
from storage.fs import SimFileSystem
from tests.replication.test_controller import Cluster
from tests.replication.test_raft import DIRS, LOG_DIR, T0, Box, elect, fetch_request, follow, only, write_log

SID = SnapshotId(1234, 7)


def snapshot_bytes(values: list[bytes], sid: SnapshotId = SID, batch_bytes_max: int = 64) -> bytes:
    return encode_snapshot(sid, values, last_contained_timestamp_ms=555, now_ms=T0, batch_bytes_max=batch_bytes_max)


# --- the format ----------------------------------------------------------------------------------


def test_kafka_file_names() -> None:
    assert SID.file_name() == "00000000000000001234-0000000007.checkpoint"
    assert parse_snapshot_name("00000000000000001234-0000000007.checkpoint") == (SID, ".checkpoint")
    assert parse_snapshot_name("00000000000000001234-0000000007.checkpoint.part") == (SID, ".checkpoint.part")
    assert parse_snapshot_name("00000000000000001234-0000000007.checkpoint.deleted") == (SID, ".checkpoint.deleted")
    for other in ("00000000000000001234.log", "00000000000000001234-7.checkpoint", "leader-epoch-checkpoint"):
        assert parse_snapshot_name(other) is None
    assert sorted([SnapshotId(5, 9), SnapshotId(7, 1), SnapshotId(5, 2)]) == [
        SnapshotId(5, 2), SnapshotId(5, 9), SnapshotId(7, 1)]


def test_header_records_footer_round_trip() -> None:
    values = [b"v%d" % i * (i % 5 + 1) for i in range(40)]
    data = snapshot_bytes(values)
    batches = list(iter_batches(data))
    assert len(batches) > 3, "small batches: several data batches between header and footer"
    assert batches[0].is_control and batches[-1].is_control
    assert not any(b.is_control for b in batches[1:-1])
    assert [b.base_offset for b in batches][0] == 0
    assert all(b.partition_leader_epoch == SID.epoch for b in batches)
    contents = decode_snapshot(SID, data)
    assert contents.records == tuple(values)
    assert contents.last_contained_timestamp_ms == 555 and contents.size_bytes == len(data)
    assert decode_snapshot(SID, snapshot_bytes([])).records == ()


def test_every_changed_byte_and_every_cut_is_refused() -> None:
    data = snapshot_bytes([b"value-%d" % i for i in range(12)], batch_bytes_max=40)
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x41
        with pytest.raises(SnapshotError):
            decode_snapshot(SID, bytes(damaged))
    for length in range(len(data)):
        with pytest.raises(SnapshotError):
            decode_snapshot(SID, data[:length])
    with pytest.raises(SnapshotError, match="after the snapshot footer"):
        decode_snapshot(SID, data + snapshot_bytes([]))
    with pytest.raises(SnapshotError, match="epoch"):
        decode_snapshot(SnapshotId(SID.end_offset, SID.epoch + 1), data)
    assert decode_snapshot(SID, data).records[-1] == b"value-11"


# --- the store -----------------------------------------------------------------------------------


def test_a_write_is_atomic_and_leftovers_are_removed() -> None:
    fs = SimFileSystem()
    fs.makedirs(LOG_DIR)
    fs.sync_dir("/meta")
    store = SnapshotStore(fs, LOG_DIR)
    first, second = SnapshotId(10, 1), SnapshotId(20, 2)
    store.write(first, snapshot_bytes([b"a"], first))
    partial = store.begin_partial(second)
    partial.append(snapshot_bytes([b"b"], second)[:30])  # a fetch cut short by a crash
    fs.crash()
    reopened = SnapshotStore(fs, LOG_DIR)
    assert reopened.ids == [first] and reopened.read(first).records == (b"a",)
    assert not [n for n in fs.listdir(LOG_DIR) if n.endswith(".part")]
    # A write that never reached its rename leaves nothing behind.
    p2 = reopened.begin_partial(second)
    p2.append(snapshot_bytes([b"b"], second))
    fs.crash()
    assert SnapshotStore(fs, LOG_DIR).ids == [first]


def test_a_corrupt_snapshot_is_deleted_and_the_older_one_used() -> None:
    fs = SimFileSystem()
    fs.makedirs(LOG_DIR)
    store = SnapshotStore(fs, LOG_DIR)
    older, newer = SnapshotId(10, 1), SnapshotId(20, 2)
    store.write(older, snapshot_bytes([b"old"], older))
    store.write(newer, snapshot_bytes([b"new"], newer))
    path = store.path(newer)
    good = fs.open(path).read_at(0, 10_000)
    fs.remove(path)
    handle = fs.open(path, create=True)
    handle.append(good[:-3] + bytes(b ^ 0xFF for b in good[-3:]))  # bit rot in the footer batch
    handle.sync()
    reopened = SnapshotStore(fs, LOG_DIR)
    assert reopened.latest == older and not fs.exists(path)
    assert [s for s, _ in reopened.removed_invalid] == [newer]


def test_finish_refuses_a_snapshot_that_does_not_validate() -> None:
    fs = SimFileSystem()
    store = SnapshotStore(fs, LOG_DIR)
    partial = store.begin_partial(SID)
    data = bytearray(snapshot_bytes([b"x", b"y"]))
    data[70] ^= 1
    partial.append(bytes(data))
    with pytest.raises(SnapshotError):
        partial.finish()
    assert SID not in store and fs.listdir(LOG_DIR) == []


# --- the image -----------------------------------------------------------------------------------


NAMES = ["a", "b", "c.d", "e_f", "orders", "x" * 20]
KEYS = ["cleanup.policy", "retention.ms", "min.insync.replicas"]


@st.composite
def metadata_logs(draw: Any) -> tuple[MetadataImage, list[tuple[int, list[MetadataRecord]]]]:
    """A valid metadata log (its batches) and the image it replays to, built by a small model
    of what exists, so that replay never meets a contradiction."""
    image = MetadataImage()
    batches: list[tuple[int, list[MetadataRecord]]] = []
    offset = 0
    brokers: dict[int, int] = {}
    topics: dict[uuid.UUID, tuple[str, int]] = {}
    ints = st.lists(st.integers(0, 6), max_size=4, unique=True).map(tuple)
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["register", "broker", "unregister", "topic", "change", "remove",
                                     "config", "feature", "pids"]))
        records: list[MetadataRecord] = []
        if kind == "register":
            b = draw(st.integers(0, 6))
            brokers[b] = offset
            records.append(RegisterBrokerRecord(
                broker_id=b, incarnation_id=uuid.UUID(int=draw(st.integers(1, 2**64))), broker_epoch=offset,
                endpoints=(BrokerEndpoint("PLAINTEXT", f"h{b}", draw(st.integers(1, 65535)), 0),),
                features=(BrokerFeature("metadata.version", 1, draw(st.integers(1, 21))),) if draw(st.booleans()) else (),
                rack=draw(st.none() | st.sampled_from(["r1", "r2"])), fenced=draw(st.booleans()),
                in_controlled_shutdown=draw(st.booleans())))
        elif kind == "broker" and brokers:
            b = draw(st.sampled_from(sorted(brokers)))
            records.append(draw(st.sampled_from([
                FenceBrokerRecord(b, brokers[b]), UnfenceBrokerRecord(b, brokers[b]),
                BrokerRegistrationChangeRecord(b, brokers[b], fenced=draw(st.sampled_from([-1, 0, 1])),
                                               in_controlled_shutdown=draw(st.integers(0, 1)))])))
        elif kind == "unregister" and brokers:
            b = draw(st.sampled_from(sorted(brokers)))
            records.append(UnregisterBrokerRecord(b, brokers.pop(b)))
        elif kind == "topic":
            free = [n for n in NAMES if n not in {name for name, _ in topics.values()}]
            if free:
                name = draw(st.sampled_from(free))
                tid = uuid.UUID(int=draw(st.integers(2, 2**128 - 1)))
                if tid not in topics:
                    count = draw(st.integers(1, 3))
                    topics[tid] = (name, count)
                    records.append(TopicRecord(name, tid))
                    for pid in range(count):
                        replicas = draw(ints)
                        records.append(PartitionRecord(
                            topic_id=tid, partition_id=pid, replicas=replicas,
                            isr=draw(ints), leader=draw(st.integers(-1, 6)), leader_epoch=draw(st.integers(0, 9)),
                            partition_epoch=draw(st.integers(0, 9)), removing_replicas=draw(ints),
                            adding_replicas=draw(ints), leader_recovery_state=draw(st.sampled_from([RECOVERED, RECOVERING])),
                            elr=draw(st.none() | ints), last_known_elr=draw(st.none() | ints)))
        elif kind == "change" and topics:
            tid = draw(st.sampled_from(sorted(topics)))
            records.append(PartitionChangeRecord(
                topic_id=tid, partition_id=draw(st.integers(0, topics[tid][1] - 1)),
                isr=draw(st.none() | ints), leader=draw(st.integers(-2, 6)), replicas=draw(st.none() | ints),
                removing_replicas=draw(st.none() | ints), adding_replicas=draw(st.none() | ints),
                leader_recovery_state=draw(st.sampled_from([-1, RECOVERED, RECOVERING])),
                elr=draw(st.none() | ints), last_known_elr=draw(st.none() | ints)))
        elif kind == "remove" and topics:
            tid = draw(st.sampled_from(sorted(topics)))
            del topics[tid]
            records.append(RemoveTopicRecord(tid))
        elif kind == "config":
            records.append(ConfigRecord(draw(st.sampled_from([2, 4])), draw(st.sampled_from(NAMES + ["1"])),
                                        draw(st.sampled_from(KEYS)), draw(st.none() | st.sampled_from(["1", "x"]))))
        elif kind == "feature":
            records.append(FeatureLevelRecord(draw(st.sampled_from(["metadata.version", "kraft.version"])),
                                              draw(st.integers(0, 21))))
        elif kind == "pids":
            records.append(ProducerIdsRecord(1, 1, draw(st.integers(0, 2**40))))
        if records:
            image = image.apply(records, base_offset=offset)
            batches.append((offset, records))
            offset += len(records)
    return image, batches


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata_logs())
def test_snapshot_records_rebuild_every_image(generated: tuple[MetadataImage, list[tuple[int, list[MetadataRecord]]]]) -> None:
    image, batches = generated
    end = image.offset + 1
    values = decode_snapshot(SID, snapshot_bytes(image_records(image))).records
    assert image_from_records(values, end_offset=end) == as_of_snapshot(image, end)
    # A node that loads a snapshot taken part-way and replays the rest ends where a node that
    # replayed everything does.
    if batches:
        cut = len(batches) // 2
        at = batches[cut][0]
        prefix = MetadataImage()
        for base, records in batches[:cut]:
            prefix = prefix.apply(records, base_offset=base)
        loaded = image_from_records(image_records(prefix), end_offset=at)
        for base, records in batches[cut:]:
            loaded = loaded.apply(records, base_offset=base)
        assert loaded == as_of_snapshot(image, at)


def test_snapshot_records_rebuild_images_a_controller_built() -> None:
    """Random controller operations (registrations, topics with configs, deletions, fencing by
    session expiry, ISR changes, elections, producer ids) on many seeds; the image after every
    operation survives a snapshot."""
    checked = 0
    for seed in range(25):
        rng = random.Random(seed)
        cluster = Cluster(seed=seed)
        cluster.start({1: "a", 2: "b", 3: "a", 4: None})
        names: list[str] = []
        for step in range(25):
            op = rng.choice(["create", "create", "delete", "config", "expire", "heartbeat", "elect", "pids"])
            if op == "create":
                name = f"t{seed}-{step}"
                cluster.create(name, partitions=rng.randint(1, 4), rf=rng.randint(1, 3),
                               configs={"cleanup.policy": "compact"} if rng.random() < 0.3 else None)
                names.append(name)
            elif op == "delete" and names:
                name = names.pop(rng.randrange(len(names)))
                cluster.run(cluster.c.handle_delete_topics(DeleteTopicsRequest(topic_names=[name]), version=6))
            elif op == "config" and names:
                res = IncrementalAlterConfigsRequest.AlterConfigsResource(resource_type=2, resource_name=rng.choice(names), configs=[
                    IncrementalAlterConfigsRequest.AlterableConfig(name="retention.ms", config_operation=0, value=str(rng.randint(1, 10**6)))])
                cluster.run(cluster.c.handle_incremental_alter_configs(IncrementalAlterConfigsRequest(resources=[res])))
            elif op == "expire":
                cluster.advance(rng.choice([100, 10_000]))
            elif op == "heartbeat":
                cluster.keep_alive(*rng.sample([1, 2, 3, 4], rng.randint(1, 4)))
            elif op == "elect":
                cluster.advance(0)
            else:
                from protocol.messages.allocate_producer_ids import AllocateProducerIdsRequest

                cluster.run(cluster.c.handle_allocate_producer_ids(
                    AllocateProducerIdsRequest(broker_id=1, broker_epoch=cluster.epochs[1])))
            image = cluster.c.committed_image
            end = image.offset + 1
            assert image_from_records(image_records(image), end_offset=end) == as_of_snapshot(image, end)
            checked += 1
    assert checked == 25 * 25


# --- the triggers --------------------------------------------------------------------------------


def test_policy_counts_bytes_and_time() -> None:
    policy = SnapshotPolicy(SnapshotPolicyConfig(record_bytes_between_snapshots=100, snapshot_interval_ms=1_000), now_ms=0)
    assert not policy.due(10_000), "nothing new: never due"
    policy.committed(60)
    assert not policy.due(10)
    policy.committed(40)
    assert policy.due(10)
    policy.taken(10)
    policy.committed(1)
    assert not policy.due(1_009) and policy.due(1_010)
    no_time = SnapshotPolicy(SnapshotPolicyConfig(record_bytes_between_snapshots=100, snapshot_interval_ms=0), now_ms=0)
    no_time.committed(1)
    assert not no_time.due(10**9)
    assert SnapshotPolicyConfig() == SnapshotPolicyConfig(record_bytes_between_snapshots=20971520, snapshot_interval_ms=3600000)
    assert SnapshotPolicyConfig.from_properties({"metadata.log.max.record.bytes.between.snapshots": 4096,
                                                 "metadata.log.max.snapshot.interval.ms": 0}) == SnapshotPolicyConfig(
        record_bytes_between_snapshots=4096, snapshot_interval_ms=0)


# --- the Raft core -------------------------------------------------------------------------------


SMALL = RaftConfig(fetch_bytes_max=200, retention_bytes=-1, retention_ms=-1)


class SnapBox(Box):
    """A test_raft ``Box`` with its own Raft and log settings."""

    def __init__(self, node_id: int = 1, *, config: RaftConfig = SMALL, segment_bytes: int = 400, seed: int = 7) -> None:
        self.config = config
        self.segment_bytes = segment_bytes
        super().__init__(node_id, seed=seed)

    def open(self, now_ms: int = T0) -> RaftNode:
        from replication.quorum_state import QuorumStateStore
        from storage.files import FileCache
        from storage.log import PartitionLog

        log = PartitionLog.load(FileCache(self.fs), LOG_DIR, "__cluster_metadata", 0, LogConfig(segment_bytes=self.segment_bytes),
                                now_ms=now_ms, clean_shutdown=False)
        return RaftNode(node_id=self.node_id, directory_id=self.directory, voters=self.voters, cluster_id="c1", log=log,
                        store=QuorumStateStore(self.fs, LOG_DIR + "/quorum-state"), rng=self.rng, now_ms=now_ms,
                        config=self.config)


def committed_leader(values: int, *, config: RaftConfig = SMALL, older: int = 0) -> tuple[SnapBox, RaftNode]:
    """Node 1 leads and has committed ``values`` proposals, one batch each (node 2 fetched);
    its epoch is 1, or 2 over ``older`` records of epoch 1."""
    box = SnapBox(1, config=config)
    if older:
        write_log(box, [(1, older)])
        box.node.store.write(ElectionState(epoch=1))
        box.node = box.open()
    leader = elect(box)
    for i in range(values):
        assert isinstance(leader.propose(T0, [b"value-%03d" % i]), int)
    leader.handle_request(T0, 2, 99, fetch_request(leader.epoch, leader.log_end_offset, leader.epoch))
    assert leader.high_watermark == leader.log_end_offset == older + values + 1
    return box, leader


def snap(node: RaftNode, end_offset: int, now_ms: int = T0) -> SnapshotId | None:
    values = [b"state-below-%d" % end_offset] * 20
    return node.create_snapshot(now_ms, end_offset=end_offset, epoch=node.epoch, last_contained_timestamp_ms=now_ms,
                                records=values)


def snapshot_answer(leader: RaftNode, offset: int, last_epoch: int, *, replica: int = 2) -> tuple[int, int] | None:
    p = only(leader.handle_request(T0, replica, 5, fetch_request(leader.epoch, offset, last_epoch, replica=replica)))
    assert p.error_code == 0
    sid = p.snapshot_id
    return None if sid.end_offset < 0 and sid.epoch < 0 else (sid.end_offset, sid.epoch)


def test_leader_answers_a_snapshot_id_below_its_log_start() -> None:
    _, leader = committed_leader(30)
    assert snapshot_answer(leader, 0, 0) is None, "no snapshot yet: offset 0 is read from the log"
    assert snap(leader, 11) == SnapshotId(11, 1)
    assert snap(leader, 21) == SnapshotId(21, 1)
    assert snapshot_answer(leader, 0, 0) == (21, 1), "an empty follower gets the latest snapshot"
    assert snapshot_answer(leader, 5, 1) is None, "the log still starts at 0"
    assert leader._delete_before_snapshot(T0, SnapshotId(21, 1))
    assert leader.log_start_offset == 21 and leader.snapshots.ids == [SnapshotId(21, 1)]
    assert leader.log.segments[0].base_offset <= 21 < leader.log.segments[1].base_offset
    assert snapshot_answer(leader, 5, 1) == (21, 1), "below the log start"
    assert snapshot_answer(leader, 21, 1) is None, "at the log start, in the snapshot's epoch: records"
    assert snapshot_answer(leader, 25, 1) is None
    # At the log start in another epoch, or an epoch older than the earliest snapshot's.
    _, leader2 = committed_leader(20, older=5, config=dataclasses.replace(SMALL, retention_bytes=0))
    assert leader2.epoch == 2 and snapshot_answer(leader2, 3, 1) is None
    assert snap(leader2, 12) == SnapshotId(12, 2)
    assert snap(leader2, 20) == SnapshotId(20, 2) and leader2.log_start_offset == 20
    assert snapshot_answer(leader2, 20, 1) == (20, 2), "at the log start, another epoch"
    assert snapshot_answer(leader2, 22, 1) == (20, 2), "an epoch older than the earliest snapshot's"
    assert snapshot_answer(leader2, 22, 2) is None


def test_retention_moves_the_log_start_to_a_snapshot_and_never_past_the_latest() -> None:
    config = dataclasses.replace(SMALL, retention_bytes=0)
    _, leader = committed_leader(40, config=config)
    size_before = leader.log.size_bytes
    assert snap(leader, 15) == SnapshotId(15, 1)
    assert leader.log_start_offset == 0, "one snapshot: nothing to clean"
    assert snap(leader, 30) == SnapshotId(30, 1)  # creating runs the retention rules
    assert leader.log_start_offset == 30 and leader.snapshots.ids == [SnapshotId(30, 1)]
    assert leader.log.size_bytes < size_before
    assert leader.log.segments[0].base_offset <= 30
    assert leader.read_committed(30)[0].base_offset == 30
    with pytest.raises(ValueError, match="high watermark"):
        leader.propose(T0, [b"uncommitted"])
        snap(leader, leader.log_end_offset)
    assert snap(leader, 20) is None, "below the log start: nothing to write"
    with pytest.raises(ValueError, match="does not match"):
        leader.create_snapshot(T0, end_offset=35, epoch=7, last_contained_timestamp_ms=0, records=[])
    # The time rule: the oldest snapshot's last record is older than retention.ms.
    timed = dataclasses.replace(SMALL, retention_ms=1_000)
    _, old = committed_leader(20, config=timed)
    snap(old, 8, now_ms=T0)
    snap(old, 16, now_ms=T0)  # its last record is at T0 too: both are as old
    assert old.log_start_offset == 0
    old.poll(T0 + timed.clean_interval_ms)
    assert old.log_start_offset == 16 and old.snapshots.ids == [SnapshotId(16, 1)]


def fetch_snapshot(leader: RaftNode, *, epoch: int | None = None, sid: SnapshotId | None = None, position: int = 0,
                   cluster_id: str = "c1", max_bytes: int = 1 << 20) -> Any:
    req = FetchSnapshotRequest(cluster_id=cluster_id, replica_id=2, max_bytes=max_bytes, topics=[
        FetchSnapshotRequest.TopicSnapshot(name="__cluster_metadata", partitions=[FetchSnapshotRequest.PartitionSnapshot(
            current_leader_epoch=leader.epoch if epoch is None else epoch, position=position,
            snapshot_id=FetchSnapshotRequest.SnapshotId(*(dataclasses.astuple(sid) if sid else (0, 0))))])])
    response = leader.handle_request(T0, 2, 7, req)
    assert isinstance(response, FetchSnapshotResponse)
    return response


def test_fetch_snapshot_answers_and_error_codes() -> None:
    _, leader = committed_leader(30)
    sid = snap(leader, 20)
    assert sid is not None
    size = leader.snapshots.size_bytes(sid)
    whole = b""
    position = 0
    while position < size:
        p = only(fetch_snapshot(leader, sid=sid, position=position, max_bytes=1000))
        assert p.error_code == 0 and p.size == size and p.position == position
        assert (p.snapshot_id.end_offset, p.snapshot_id.epoch) == (20, 1)
        assert 0 < len(p.unaligned_records) <= SMALL.fetch_bytes_max, "bounded by the leader's limit too"
        whole += p.unaligned_records
        position += len(p.unaligned_records)
    assert decode_snapshot(sid, whole).records == leader.read_snapshot(sid).records
    assert only(fetch_snapshot(leader, sid=SnapshotId(20, 2))).error_code == ErrorCode.SNAPSHOT_NOT_FOUND
    assert only(fetch_snapshot(leader, sid=sid, position=size)).error_code == ErrorCode.POSITION_OUT_OF_RANGE
    assert only(fetch_snapshot(leader, sid=sid, position=-1)).error_code == ErrorCode.POSITION_OUT_OF_RANGE
    assert only(fetch_snapshot(leader, sid=sid, epoch=0)).error_code == ErrorCode.FENCED_LEADER_EPOCH
    assert only(fetch_snapshot(leader, sid=sid, epoch=2)).error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert fetch_snapshot(leader, sid=sid, cluster_id="other").error_code == ErrorCode.INCONSISTENT_CLUSTER_ID
    follower = follow(SnapBox(3), 1, 1)
    p = only(fetch_snapshot(follower, sid=sid, epoch=1))
    assert p.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER and p.current_leader.leader_id == 1


def pump(leader: RaftNode, follower: RaftNode, now_ms: int, *, until: Callable[[], bool],
         tamper: Callable[[Any], None] | None = None, steps_max: int = 500) -> list[str]:
    """Carry the follower's requests to the leader and the answers back until ``until()``."""
    kinds: list[str] = []
    for _ in range(steps_max):
        if until():
            return kinds
        effects = [e for e in follower.poll(now_ms) if isinstance(e, SendRequest) and e.destination == 1]
        if not effects:
            now_ms += 50
            continue
        for e in effects:
            kinds.append(type(e.request).__name__)
            response = leader.handle_request(now_ms, follower.node_id, e.correlation_id, e.request)
            leader.poll(now_ms)
            assert response is not None, "no parking: the follower is behind"
            if tamper is not None:
                tamper(response)
            follower.handle_response(now_ms, 1, e.correlation_id, response)
    raise AssertionError(f"not done after {steps_max} steps: {follower!r}")


def test_a_follower_fetches_a_snapshot_in_chunks_and_installs_it() -> None:
    _, leader = committed_leader(40, config=dataclasses.replace(SMALL, retention_bytes=0))
    snap(leader, 15)
    sid = snap(leader, 30)
    assert sid is not None and leader.log_start_offset == 30
    box = SnapBox(3)
    follower = follow(box, 1, 1)
    kinds = pump(leader, follower, T0 + 100, until=lambda: follower.log_end_offset == leader.log_end_offset)
    chunks = -(-leader.snapshots.size_bytes(sid) // SMALL.fetch_bytes_max)
    assert chunks >= 3 and kinds[0] == "FetchRequest" and kinds.count("FetchSnapshotRequest") == chunks, kinds
    assert follower.snapshots_fetched == 1 and follower.latest_snapshot_id == sid
    assert follower.log_start_offset == 30 and follower.high_watermark == leader.high_watermark
    assert follower.read_snapshot(sid).records == leader.read_snapshot(sid).records
    assert follower.read_committed(30)[0].records == (b"value-029",)
    assert not [n for n in box.fs.listdir(LOG_DIR) if n.endswith(".part")]
    # The state machine is told to reload: its position is below the new log start.
    assert CommitCursor(12).snapshot_needed(follower) == sid and CommitCursor(0).snapshot_needed(follower) == sid
    assert CommitCursor(30).snapshot_needed(follower) is None
    # After a restart the epoch and end come from the snapshot and the log after it.
    again = box.restart()
    assert again.latest_snapshot_id == sid and again.log_start_offset == 30 and again.high_watermark == 30
    assert again.last_fetched_epoch == 1


def test_an_empty_log_after_a_snapshot_reports_the_snapshots_epoch() -> None:
    _, leader = committed_leader(20, config=dataclasses.replace(SMALL, retention_bytes=0))
    snap(leader, 10)
    sid = snap(leader, 21)  # the whole log
    assert sid is not None and leader.log_start_offset == 21
    follower = follow(SnapBox(3), 1, 1)
    pump(leader, follower, T0 + 100, until=lambda: follower.snapshots_fetched == 1)
    assert follower.log_end_offset == 21 and follower.log.epochs.latest_epoch is None
    assert follower.last_fetched_epoch == 1, "the snapshot's epoch (Kafka's lastFetchedEpoch)"
    fetch = follower.poll(T0 + 200)[0]
    assert isinstance(fetch, SendRequest) and isinstance(fetch.request, FetchRequest)
    assert fetch.request.topics[0].partitions[0].last_fetched_epoch == 1


def test_a_chunk_that_spoils_the_snapshot_is_fetched_again() -> None:
    _, leader = committed_leader(30, config=dataclasses.replace(SMALL, retention_bytes=0))
    snap(leader, 10)
    sid = snap(leader, 25)
    box = SnapBox(3)
    follower = follow(box, 1, 1)
    spoiled = {"done": False}

    def spoil(response: Any) -> None:
        if isinstance(response, FetchSnapshotResponse) and not spoiled["done"]:
            part = response.topics[0].partitions[0]
            if part.position > 0:
                assert isinstance(part.unaligned_records, bytes)
                data = bytearray(part.unaligned_records)
                data[0] ^= 0xFF
                part.unaligned_records = bytes(data)
                spoiled["done"] = True

    kinds = pump(leader, follower, T0 + 100, until=lambda: follower.snapshots_fetched == 1, tamper=spoil)
    assert spoiled["done"] and kinds.count("FetchRequest") >= 2, "the spoiled fetch ended and a new one began"
    assert sid is not None and follower.latest_snapshot_id == sid
    assert follower.read_snapshot(sid).records == leader.read_snapshot(sid).records


def test_snapshot_not_found_starts_over_with_the_newer_snapshot() -> None:
    config = dataclasses.replace(SMALL, retention_bytes=0)
    _, leader = committed_leader(40, config=config)
    snap(leader, 10)
    first = snap(leader, 20)
    follower = follow(SnapBox(3, config=dataclasses.replace(SMALL, fetch_timeout_ms=10_000)), 1, 1)

    def some_chunks() -> bool:
        fetching = follower._state.fetching  # type: ignore[union-attr]
        return fetching is not None and fetching.snapshot_id == first and fetching.partial.size_bytes > 0

    pump(leader, follower, T0 + 100, until=some_chunks)
    # A chunk or two in, the follower goes quiet for longer than the leader's fetch timeout, and
    # the leader takes a newer snapshot and cleans the old one away.
    later = T0 + 100 + SMALL.fetch_timeout_ms + 1
    newer = snap(leader, 35, now_ms=later)
    assert newer is not None and first not in leader.snapshots
    pump(leader, follower, later, until=lambda: follower.snapshots_fetched == 1)
    assert follower.latest_snapshot_id == newer and follower.log_start_offset == 35


def test_a_crash_between_installing_and_truncating_is_finished_at_start() -> None:
    _, leader = committed_leader(20)
    sid = snap(leader, 15)
    assert sid is not None
    box = SnapBox(3)
    follow(box, 1, 1)
    # The follower has an old log (epoch 1 records up to 5) and the complete snapshot file.
    write_log(box, [(1, 5)])
    box.node.snapshots.write(sid, leader.snapshots.read_chunk(sid, 0, leader.snapshots.size_bytes(sid)))
    node = box.restart()
    assert node.log_start_offset == node.log_end_offset == 15 and node.high_watermark == 15
    assert node.last_fetched_epoch == 1 and node.latest_snapshot_id == sid


def test_a_log_start_without_its_snapshot_is_refused() -> None:
    box, leader = committed_leader(30, config=dataclasses.replace(SMALL, retention_bytes=0))
    snap(leader, 10)
    sid = snap(leader, 25)
    assert sid is not None and leader.log_start_offset == 25 and leader.log.segments[0].base_offset > 0
    leader.snapshots.delete(sid)  # what bit rot and the removal of the bad file would leave
    with pytest.raises(SnapshotError, match="no valid snapshot"):
        box.open()


def test_a_voter_fetching_a_snapshot_counts_for_check_quorum() -> None:
    _, leader = committed_leader(20)
    sid = snap(leader, 15)
    assert sid is not None and leader.role is RaftRole.LEADER
    deadline = leader._state.check_quorum_deadline_ms  # type: ignore[union-attr]
    fetch_snapshot(leader, sid=sid)
    leader.handle_request(T0 + 10, 3, 8, FetchSnapshotRequest(cluster_id="c1", replica_id=3, topics=[
        FetchSnapshotRequest.TopicSnapshot(name="__cluster_metadata", partitions=[FetchSnapshotRequest.PartitionSnapshot(
            current_leader_epoch=1, snapshot_id=FetchSnapshotRequest.SnapshotId(15, 1), replica_directory_id=DIRS[3])])]))
    assert leader._state.check_quorum_deadline_ms == T0 + 10 + SMALL.check_quorum_ms > deadline  # type: ignore[union-attr]


def test_the_log_start_does_not_pass_a_snapshot_a_follower_is_fetching() -> None:
    """Trafka's one deviation from Kafka's cleaning: a snapshot a replica asked a chunk of within
    the fetch timeout stays, and the log start stays at or below it, so the follower can finish
    and go on from its end; once nobody asked for that long, cleaning goes on."""
    _, leader = committed_leader(40, config=dataclasses.replace(SMALL, retention_bytes=0))
    snap(leader, 10)
    first = snap(leader, 20)
    assert first is not None and leader.log_start_offset == 20
    assert only(fetch_snapshot(leader, sid=first)).error_code == 0  # replica 2, at T0
    assert snap(leader, 35) == SnapshotId(35, 1)
    assert leader.log_start_offset == 20 and first in leader.snapshots, "pinned by the fetch in progress"
    assert not leader.clean(T0 + SMALL.fetch_timeout_ms)
    assert leader.clean(T0 + SMALL.fetch_timeout_ms + 1)
    assert leader.log_start_offset == 35 and leader.snapshots.ids == [SnapshotId(35, 1)]
