"""The state of one broker, shared by its request handlers.

What it owns: the log manager (partition data), the topic catalogue, producer state per
partition, the fetch session cache, the group committer, and the wake-ups that let a waiting
fetch return as soon as an append lands. Handlers (``broker.handlers``) read and change it; the
server (``broker.server``) owns sockets and tasks. Everything here runs on the trio thread; the
fsyncs of appends go to the group committer's worker threads, and a new topic's partitions are
made one step at a time between other requests (``create_topic_in_steps``).

Clock and randomness are injected (``now_ms``, ``rng``), so tests can drive time and ids.
"""

from __future__ import annotations

import base64
import logging
import posixpath
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio
import trio.testing

from broker.config import BrokerConfig, log_config
from broker.fetch_session import FetchSessionCache
from broker.producer_state import (
    CorruptSnapshotError,
    ProducerStateManager,
    parse_snapshot_file_name,
    snapshot_file_name,
)
from broker.topics import Topic, TopicStore
from protocol.error_codes import ErrorCode
from protocol.records import iter_batches
from storage.checkpoint import (
    PARTITION_METADATA,
    read_properties,
    topic_id_from_str,
    write_partition_metadata,
)
from storage.config import LogConfig
from storage.fs import FileSystem, read_whole, write_atomically
from storage.group_commit import GroupCommitter
from storage.layout import partition_dir_name
from storage.log import PartitionLog
from storage.manager import META_PROPERTIES, LogManager

METADATA_TOPIC = "__cluster_metadata"  # replication.raft's; the metadata quorum's own log

if TYPE_CHECKING:
    from broker.cluster import ClusterNode
    from broker.groups import GroupService
    from broker.replicas import ReplicaManager
    from replication.partition import Partition

PRODUCER_IDS_FILE = "trafka-producer-ids"
PRODUCER_ID_BLOCK_SIZE = 1000
REPLAY_BYTES = 8 * 1024 * 1024  # how much log one step of the producer-state rebuild reads
# create_topic_in_steps: partition directories made (or removed) in one step (a mkdir takes about
# 0.3 ms, a partition's step 2-3 ms), and the longest a step waits for the loop to fall idle.
CREATE_DIRS_STEP = 8
CREATE_IDLE_WAIT_MS_MAX = 10

_logger = logging.getLogger(__name__)


@dataclass(slots=True)
class PartitionState:
    """What the broker keeps beside a partition's log."""

    log: PartitionLog
    producers: ProducerStateManager
    leader_epoch: int = 0
    snapshot_offset: int = 0  # where the newest producer-state snapshot was taken
    # Fetches waiting for data on this partition; set on every append.
    waiters: set[trio.Event] = field(default_factory=set)
    # In a cluster: the replica's leader/follower state machine (None on a single node).
    replica: Partition | None = None

    def wake(self) -> None:
        for event in self.waiters:
            event.set()
        self.waiters.clear()


class Broker:
    """See the module docstring. Build with ``Broker.open``; close with ``close``."""

    def __init__(self, config: BrokerConfig, fs: FileSystem, *, now_ms: Callable[[], int],
                 rng: random.Random) -> None:
        self.config = config
        self.fs = fs
        self.now_ms = now_ms
        self.rng = rng
        self.node_id = config.node_id
        self.log_dir = config.log_dirs[0]
        self.topics = TopicStore(fs, self.log_dir, new_uuid=self.new_uuid)
        self.logs: LogManager | None = None
        self.partitions: dict[tuple[str, int], PartitionState] = {}
        self.committer = GroupCommitter(now_ms=now_ms)
        self.fetch_sessions = FetchSessionCache(
            new_session_id=lambda: rng.randint(1, 2**31 - 1),
            topic_name_for_id=self._topic_name_for_id,
            max_slots=config.max_incremental_fetch_session_cache_slots,
        )
        self.groups: GroupService | None = None  # set by open()
        # In cluster mode (controller.quorum.voters set), set by open().
        self.cluster: ClusterNode | None = None
        self.replicas: ReplicaManager | None = None
        self.directory_id = uuid.UUID(int=0)
        self._unassigned: dict[tuple[str, int], PartitionLog] = {}  # cluster mode: logs found at start
        # Set by the server once it is listening: the address Metadata advertises.
        self.advertised_address: tuple[str, int] = ("127.0.0.1", 9092)
        self.cluster_id = ""
        self.timestamp_bounds_set = any(config.is_set(k) for k in (
            "log.message.timestamp.before.max.ms", "log.message.timestamp.after.max.ms",
            "log.message.timestamp.difference.max.ms"))
        self.next_producer_id = 0
        self._producer_ids_reserved = 0

    def new_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Load topics and recover every partition log (blocking; run before serving)."""
        self.fs.makedirs(self.log_dir)
        if not self.config.controller_quorum_voters:
            self.topics.load()  # in a cluster the metadata log is the catalogue
        self._load_producer_ids()
        self.logs = LogManager.open(
            self.fs, self.log_dir, now_ms=self.now_ms(),
            default_config=log_config(self.config, {}),
            dir_config=self.config.log_dir_config(),
            topic_config=self._topic_log_config,
        )
        self.cluster_id = self._cluster_id()
        clustered = bool(self.config.controller_quorum_voters)
        for (name, index), log in list(self.logs.logs.items()):
            if name == METADATA_TOPIC:
                continue
            if clustered:
                # The metadata log says which partitions this broker leads or follows; until it
                # has, the partition serves nobody (a restarted node must not act as a single
                # node and acknowledge writes its leader will make it cut away).
                self._unassigned[(name, index)] = log
                continue
            if self.topics.get(name) is None:
                # A stray partition of a deleted topic (a crash between the two steps of a delete).
                self.logs.delete_log(name, index, now_ms=self.now_ms())
                continue
            latest = log.epochs.latest_epoch
            state = PartitionState(log, self._load_producer_state(log),
                                   leader_epoch=latest if latest is not None else 0)
            self.partitions[(name, index)] = state
            self._become_leader(state)
        if clustered:
            from broker.cluster import ClusterNode
            from broker.replicas import ReplicaManager

            self.cluster = ClusterNode(self)
            self.cluster.open()
            self.replicas = ReplicaManager(self, self.cluster)
        else:
            for topic in self.topics:
                self._ensure_partitions(topic)
        from broker.groups import GroupService  # it builds on this module

        self.groups = GroupService(self)
        self.groups.load()

    def _cluster_id(self) -> str:
        assert self.logs is not None
        path = posixpath.join(self.log_dir, META_PROPERTIES)
        if self.fs.exists(path):
            cluster_id = read_properties(self.fs, path).get("cluster.id", "")
        elif self.config.controller_quorum_voters:
            from broker.cluster import cluster_id_for_voters

            cluster_id = cluster_id_for_voters(",".join(f"{v.node_id}@{v.host}:{v.port}"
                                                       for v in self.config.controller_quorum_voters))
        else:
            cluster_id = _base64_uuid(self.new_uuid())
        props = self.logs.ensure_meta_properties(cluster_id=cluster_id, node_id=self.node_id,
                                                 directory_id=self.new_uuid())
        if props.get("directory.id"):
            self.directory_id = topic_id_from_str(props["directory.id"])
        return cluster_id

    def _topic_log_config(self, topic: str) -> LogConfig:
        if topic == METADATA_TOPIC:
            # The metadata log is never deleted by the topic retention rules: the Raft node moves
            # its start to a snapshot (metadata.max.retention.*). Its segments follow
            # metadata.log.segment.*, as in Kafka's KafkaMetadataLog.
            return log_config(self.config, {
                "retention.ms": "-1", "retention.bytes": "-1",
                "segment.bytes": str(self.config.get_int("metadata.log.segment.bytes")),
                "segment.ms": str(self.config.get_int("metadata.log.segment.ms")),
            })
        t = self.topics.get(topic)
        return log_config(self.config, t.configs if t is not None else {})

    # --- producer state ---------------------------------------------------------------------

    def _new_producer_state(self, start_offset: int) -> ProducerStateManager:
        return ProducerStateManager(producer_id_expiration_ms=self.config.producer_id_expiration_ms,
                                    map_end_offset=start_offset)

    def _load_producer_state(self, log: PartitionLog) -> ProducerStateManager:
        """The newest valid snapshot at or below the log end, then the log replayed after it."""
        state = self._new_producer_state(log.log_start_offset)
        snapshots = sorted((o, n) for n in self.fs.listdir(log.dir)
                           if (o := parse_snapshot_file_name(n)) is not None)
        for offset, name in reversed(snapshots):
            path = posixpath.join(log.dir, name)
            if offset > log.log_end_offset or offset < log.log_start_offset:
                self.fs.remove(path)
                continue
            try:
                state.load_snapshot(read_whole(self.fs, path), snapshot_offset=offset, now_ms=self.now_ms())
                break
            except CorruptSnapshotError:
                self.fs.remove(path)
        offset = max(state.map_end_offset, log.log_start_offset)
        while offset < log.log_end_offset:
            result = log.read(offset, max_bytes=REPLAY_BYTES, upper_bound_offset=None)
            if result.error != ErrorCode.NONE or not result.slices:
                break
            for view in iter_batches(memoryview(result.read_bytes())):
                state.replay(view)
                offset = view.next_offset
        return state

    def write_producer_snapshots(self) -> None:
        """A snapshot of every partition's producer state at its log end (at clean shutdown)."""
        for state in self.partitions.values():
            self._snapshot_producers(state)

    def snapshot_rolled_partitions(self) -> None:
        """Snapshot producer state where a segment rolled since the last snapshot (as Kafka does),
        so that a rebuild after a crash replays at most about one segment."""
        for state in self.partitions.values():
            if state.log.active_segment.base_offset > state.snapshot_offset:
                self._snapshot_producers(state)

    def _snapshot_producers(self, state: PartitionState) -> None:
        log = state.log
        state.producers.advance_map_end_offset(log.log_end_offset)
        offset = state.producers.map_end_offset
        write_atomically(self.fs, posixpath.join(log.dir, snapshot_file_name(offset)), state.producers.snapshot_bytes())
        state.snapshot_offset = offset
        for n in self.fs.listdir(log.dir):
            o = parse_snapshot_file_name(n)
            if o is not None and o != offset:
                self.fs.remove(posixpath.join(log.dir, n))

    def close(self) -> None:
        """Flush every log, write checkpoints and the clean-shutdown marker, which carries this
        node's broker epoch in a cluster (KIP-966: its next registration says it shut down
        cleanly with it)."""
        if self.logs is not None:
            self.write_producer_snapshots()
            epoch = self.cluster.broker_epoch if self.cluster is not None else -1
            self.logs.close(now_ms=self.now_ms(), broker_epoch=epoch)
            self.logs = None

    # --- topics and partitions --------------------------------------------------------------

    def _ensure_partitions(self, topic: Topic) -> None:
        assert self.logs is not None
        for p in range(topic.partitions):
            if (topic.name, p) not in self.partitions:
                log = self.logs.get_or_create_log(topic.name, p, topic_id=topic.topic_id, now_ms=self.now_ms())
                state = PartitionState(log, self._new_producer_state(log.log_start_offset))
                self.partitions[(topic.name, p)] = state
                self._become_leader(state)

    def _become_leader(self, state: PartitionState) -> None:
        """As Kafka's makeLeader: the leader epoch starts at the log end, and a leader that is its
        own whole ISR has everything in its (recovered) log below the high watermark."""
        log = state.log
        log.epochs.assign(epoch=state.leader_epoch, start_offset=log.log_end_offset)
        self.advance_high_watermark(state)

    def advance_high_watermark(self, state: PartitionState) -> None:
        """Move the high watermark as far as the ISR allows and wake waiting fetches.

        In a cluster the replica's state machine decides (``replication.partition``); on a
        single node the ISR is the leader alone.

        For a topic with ``flush.messages=1`` that is the durable offset: a consumer never reads a
        record that a crash could still take away. Otherwise it is the log end, as in Kafka.
        """
        if state.replica is not None:
            state.replica.maybe_advance_high_watermark(self.now_ms())
            if self.replicas is not None:
                self.replicas.drain(state)
            return
        log = state.log
        target = log.durable_offset if log.config.durable_appends else log.log_end_offset
        if target > log.high_watermark:
            log.update_high_watermark(target)
            state.wake()

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        """Create a topic with the loop blocked meanwhile (about five fsyncs a partition):
        for small topics made inline (auto-creation, ``__consumer_offsets``) and for tests. The
        catalogue is written first; should a crash interrupt the partitions, ``open`` makes the
        missing ones. Raises ``ValueError`` if the name is taken or being created."""
        topic = self.topics.create(name, partitions, configs)
        self._ensure_partitions(topic)
        return topic

    async def create_topic_in_steps(self, name: str, partitions: int, configs: dict[str, str]) -> Topic:
        """Create a topic as ``create_topic`` does, one partition at a time with the event loop
        serving other requests between partitions; return once the topic is durable and served.
        Raises ``ValueError`` if the name is taken or being created.

        Theory of operation. A partition costs about five fsyncs (its directory, its first
        segment, ``partition.metadata``, ``leader-epoch-checkpoint``): a topic of 1,000
        partitions blocked the loop for 2.5-5 s. Here:

        1. the name and an id are reserved in the catalogue (taken, but invisible);
        2. the partition directories are made, ``CREATE_DIRS_STEP`` at a time, and their names
           made durable with one sync of the log directory;
        3. each partition in a step of its own: its ``partition.metadata`` is written, its log
           opened (creating the first segment) and leader epoch 0 assigned, each durably. These
           logs are this task's alone: neither the log manager (nor its chores) nor any handler
           can reach them yet;
        4. without a checkpoint in between, the catalogue is written (the commit point) and the
           logs and partition states are registered: the topic appears whole, or not at all.

        A failure or a cancellation before step 4 closes the new logs, releases the name and
        removes the directories. A crash before step 4 leaves directories of a topic that the
        catalogue does not name, which ``open`` deletes as strays: the creation did not happen.

        Before each step the task waits for the loop to fall idle (``_yield_to_requests``), so
        requests go first and each waits for at most the one step under way (2-3 ms, the
        fsyncs of one partition). Steps, not worker threads: a test's virtual clock (trio's
        autojump) would leap ahead while a thread ran, and the steps already keep the loop free.
        """
        assert self.logs is not None
        topic = self.topics.reserve(name, partitions, configs)
        config = log_config(self.config, topic.configs)
        now_ms = self.now_ms()
        dirs = [posixpath.join(self.log_dir, partition_dir_name(name, p)) for p in range(partitions)]
        made: list[PartitionLog] = []
        try:
            for k, d in enumerate(dirs):
                if k % CREATE_DIRS_STEP == 0:
                    await _yield_to_requests()
                self.fs.makedirs(d)
            self.fs.sync_dir(self.log_dir)
            for p, d in enumerate(dirs):
                await _yield_to_requests()
                write_partition_metadata(self.fs, posixpath.join(d, PARTITION_METADATA), topic.topic_id)
                new_log = PartitionLog.load(self.logs.cache, d, name, p, config, now_ms=now_ms, clean_shutdown=True)
                made.append(new_log)
                new_log.epochs.assign(epoch=0, start_offset=new_log.log_end_offset)
            self.topics.commit(topic)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._undo_creation(name, made, dirs, now_ms=now_ms)
            raise
        for p, new_log in enumerate(made):
            self.logs.logs[(name, p)] = new_log  # LogManager.get_or_create_log would load it again
            state = PartitionState(new_log, self._new_producer_state(new_log.log_start_offset))
            self.partitions[(name, p)] = state
            self._become_leader(state)  # epoch 0 is on disk already: nothing is written
        return topic

    async def _undo_creation(self, name: str, made: list[PartitionLog], dirs: list[str], *, now_ms: int) -> None:
        """Undo a creation that failed or was cancelled before its commit (in steps too)."""
        for new_log in made:
            new_log.close(now_ms=now_ms, flush=False)
        self.topics.release(name)
        try:
            for k, d in enumerate(dirs):
                if k % CREATE_DIRS_STEP == 0:
                    await _yield_to_requests()
                if self.fs.exists(d):
                    for file_name in self.fs.listdir(d):
                        self.fs.remove(posixpath.join(d, file_name))
                    self.fs.rmdir(d)
            self.fs.sync_dir(self.log_dir)
        except OSError as e:  # they are strays now: the next open removes them
            _logger.warning("could not remove the directories of topic %s, whose creation failed: %s", name, e)

    def delete_topic(self, name: str) -> Topic:
        assert self.logs is not None
        topic = self.topics.delete(name)
        for p in range(topic.partitions):
            state = self.partitions.pop((name, p), None)
            if state is not None:
                state.wake()
            self.logs.delete_log(name, p, now_ms=self.now_ms())
        return topic

    def add_partitions(self, name: str, count: int) -> None:
        self.topics.set_partitions(name, count)
        topic = self.topics.get(name)
        assert topic is not None
        self._ensure_partitions(topic)

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self.topics.set_configs(name, configs)
        cfg = log_config(self.config, configs)
        topic = self.topics.get(name)
        assert topic is not None
        for p in range(topic.partitions):
            state = self.partitions.get((name, p))
            if state is not None:
                state.log.config = cfg

    def _topic_name_for_id(self, topic_id: uuid.UUID) -> str | None:
        t = self.topics.by_id(topic_id)
        return t.name if t is not None else None

    def min_insync_replicas(self, topic: str) -> int:
        """The topic's override, else (in a cluster with eligible leader replicas) the cluster-level
        default the controller keeps in the metadata log, so that leaders and controller agree on
        it; else this broker's setting."""
        t = self.topics.get(topic)
        value = t.configs.get("min.insync.replicas") if t is not None else None
        if value is None and self.cluster is not None:
            value = self.cluster.image.cluster_config("min.insync.replicas")
        return int(value) if value is not None else self.config.min_insync_replicas

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        return self.partitions.get((topic, partition))

    def ensure_partition(self, topic: str, partition: int, *, topic_id: uuid.UUID) -> PartitionState:
        """The partition's state, its log created if needed (cluster mode: the replica manager
        decides its role)."""
        assert self.logs is not None
        state = self.partitions.get((topic, partition))
        if state is None:
            log = self._unassigned.pop((topic, partition), None)
            if log is None:
                log = self.logs.get_or_create_log(topic, partition, topic_id=topic_id, now_ms=self.now_ms())
            state = PartitionState(log, self._load_producer_state(log))
            self.partitions[(topic, partition)] = state
        return state

    def rebuild_producer_state(self, log: PartitionLog) -> ProducerStateManager:
        """Producer state rebuilt for a log whose tail changed (a follower's truncation)."""
        return self._load_producer_state(log)

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, across restarts too.

        Ids are reserved in blocks (as Kafka's controller hands them out); the end of the reserved
        block is persisted before any id in it is used, so a crash only skips ids.
        """
        if self.next_producer_id >= self._producer_ids_reserved:
            self._producer_ids_reserved = self.next_producer_id + PRODUCER_ID_BLOCK_SIZE
            write_atomically(self.fs, posixpath.join(self.log_dir, PRODUCER_IDS_FILE),
                             str(self._producer_ids_reserved).encode())
        pid = self.next_producer_id
        self.next_producer_id += 1
        return pid

    def _load_producer_ids(self) -> None:
        path = posixpath.join(self.log_dir, PRODUCER_IDS_FILE)
        if self.fs.exists(path):
            self.next_producer_id = self._producer_ids_reserved = int(read_whole(self.fs, path))


async def _yield_to_requests() -> None:
    """Let every other runnable task go first: return when the loop has nothing else to run, or
    after ``CREATE_IDLE_WAIT_MS_MAX`` when it stays busy (so a creation never starves).

    Theory: with a plain ``sleep(0)`` the creating task runs one step in every scheduling pass,
    and a request needs several passes (read, handle, write), so each request paid for several
    steps: ApiVersions took 17 ms (median) during a 1,000-partition creation instead of 0.2 ms.
    Waiting for the loop to be idle makes a request pay for at most the one step under way.
    ``wait_all_tasks_blocked`` is trio's "the run queue is empty" primitive; it lives in
    ``trio.testing`` but is a plain run-loop feature, and a test's autojump clock does not
    leap while a task waits in it.
    """
    with trio.move_on_after(CREATE_IDLE_WAIT_MS_MAX / 1000):
        await trio.testing.wait_all_tasks_blocked()


def _base64_uuid(u: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(u.bytes).decode().rstrip("=")
