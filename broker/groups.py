"""The trio side of the group coordinator: its clock, its log, and requests that wait.

``broker.group.GroupCoordinator`` is sans-IO; this adapter gives it what it lacks:

- **Persistence.** Every ``OffsetsRecord`` a call returns is appended to its partition of the
  internal topic ``__consumer_offsets`` *before* any answer leaves, as Kafka answers only after
  the write. Records go to the log in the order the coordinator made them: the append happens in
  the same step as the call, before anything else can run.
- **Time.** ``run`` sleeps until ``next_deadline_ms`` (or until a call changed the timers) and
  calls ``tick``; session expiry and rebalance timeouts happen there.
- **Topics.** KIP-848 consumer groups are assigned from the broker's topics: ``topics_image``
  takes a snapshot of the topic store (names, ids, partition counts), handed to the coordinator
  with every ConsumerGroupHeartbeat and ConsumerGroupDescribe and before every ``tick``.
- **Parked requests.** JoinGroup and SyncGroup answers arrive later, as completions for the
  token the request was given. A parked handler waits on an event for its token; an abandoned
  token (Kafka drops those requests) gets no answer at all.

Single node (no ``controller.quorum.voters``). This broker coordinates every group. It creates
``__consumer_offsets`` on first use (``offsets.topic.num.partitions`` partitions, compacted, as
Kafka creates it), appends as the partitions' only replica, and reads every partition back at
start (``load``).

Cluster. Kafka's rule: the coordinator of a group is the leader of its ``__consumer_offsets``
partition (``abs(hashCode(group id)) % offsets.topic.num.partitions``), and it moves with that
partition's leadership.

- *Finding it.* ``find_coordinator`` answers from the metadata image: the partition's leader and
  its endpoint, or COORDINATOR_NOT_AVAILABLE while the partition has no live leader. While the
  topic does not exist, the first FindCoordinator asks the controller to create it
  (``offsets.topic.replication.factor`` replicas, the compacted configs); a task of ``run``
  sends that request, at most once every ``OFFSETS_TOPIC_RETRY_MS``.
- *Taking over and giving up.* Every new metadata image (``ClusterNode.on_image``, after the
  replica manager has applied it) is compared with the partitions this broker leads. A
  partition it now leads is *loading*: a task of ``run`` reads its records, a chunk of
  ``offsets.load.buffer.size`` bytes at a time with the loop free in between, and hands them to
  ``GroupCoordinator.load_partition``; then it is *loaded*. A partition it no longer leads, or
  leads in a new leader epoch (it may have missed another leader's writes in between), is
  unloaded (``unload_partition``: parked JoinGroup/SyncGroup requests get NOT_COORDINATOR), and
  in the second case loaded again.
- *Gating.* ``coordinator_error`` tells the handlers how to refuse a group of a partition that
  is not loaded: NOT_COORDINATOR (not the leader) or COORDINATOR_LOAD_IN_PROGRESS (loading), so
  that clients look for the coordinator again or retry.
- *Writes* go through the partition's replica (``Partition.append`` with acks=-1) and an answer
  leaves only once the write is replicated (``offsets.commit.required.acks=-1``: the produce's
  ``ProduceCompleted``), or fails after ``offsets.commit.timeout.ms``; a failed write is
  reported as Kafka reports it (``broker.group.errors.append_error``). A write the replica
  refused outright (too few in-sync replicas, no longer leader, too large) left the coordinator
  ahead of its log: that partition is reloaded from the log, so memory and log agree again.
- *Reads.* An answer never reveals a state that is not yet replicated: a call that wrote
  nothing to a partition it concerns still waits until that partition's high watermark
  reaches its log end (a read barrier; Kafka reads the last committed snapshot instead).

Bounds: one settling task per timer tick and per load; every wait ends within
``offsets.commit.timeout.ms`` (+ ``WRITE_WAIT_SLACK_MS``); at most one topic creation in flight.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.core import Broker, PartitionState
from broker.group import Completion, GroupCoordinator, GroupCoordinatorConfig
from broker.group.consumer import TopicInfo, TopicsImage
from broker.group.coordinator import CoordinatorResult, OffsetsRecord
from broker.group.errors import (
    WriteKind,
    append_error,
    error_response,
    fail_offset_commit,
    join_error,
    write_kind,
)
from broker.replicas import ProduceWait
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.message import Message
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.join_group import JoinGroupResponse
from protocol.messages.offset_commit import OffsetCommitResponse
from protocol.messages.sync_group import SyncGroupResponse
from protocol.records import NewRecord, build_batch, iter_batches
from replication.metadata import MetadataImage
from storage.log import AppendRejected

log = logging.getLogger("trafka.groups")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "compression.type": "producer"}
ACKS_ALL = -1
CREATE_TOPICS_VERSION = 7  # what this broker speaks to the controller to create __consumer_offsets
CREATE_TOPICS_TIMEOUT_MS = 30_000
OFFSETS_TOPIC_RETRY_MS = 500  # between two attempts to create __consumer_offsets
WRITE_WAIT_SLACK_MS = 1_000  # beyond offsets.commit.timeout.ms, for the replica's own deadline to answer first


@dataclass(slots=True, eq=False)
class _Parked:
    partition: int  # of __consumer_offsets: the group's
    api_version: int
    event: trio.Event = field(default_factory=trio.Event)
    response: Message | None = None


@dataclass(slots=True, eq=False)
class _OffsetsPartition:
    """A ``__consumer_offsets`` partition this broker leads (cluster mode): loading, then loaded.
    A reload replaces the object, so a load in progress can tell it was superseded."""

    leader_epoch: int
    loaded: bool = False
    failed: bool = False  # its records could not be read: refused as NOT_COORDINATOR


@dataclass(slots=True)
class _Settling:
    """One call's writes in flight (cluster mode) and the answers waiting for them."""

    waits: dict[int, ProduceWait]
    outcomes: dict[int, ErrorCode]
    completions: list[Completion]

    def error(self, partitions: Collection[int]) -> ErrorCode:
        for p in sorted(partitions):
            error = self.outcomes.get(p, ErrorCode.NONE)
            if error != ErrorCode.NONE:
                return error
        return ErrorCode.NONE


class GroupService:
    """See the module docstring. One per broker; ``load`` before serving, ``run`` in a nursery."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.coordinator = GroupCoordinator(GroupCoordinatorConfig.from_broker_config(broker.config),
                                            new_uuid=lambda: str(broker.new_uuid()))
        self.clustered = broker.cluster is not None
        self.load_bytes = broker.config.get_int("offsets.load.buffer.size")
        self.commit_timeout_ms = broker.config.offsets_commit_timeout_ms
        self._parked: dict[Hashable, _Parked] = {}
        self._tokens = itertools.count()
        self._timers_changed = trio.Event()
        self._partitions: dict[int, _OffsetsPartition] = {}  # cluster mode: the ones this broker leads
        self._load_wanted = trio.Event()
        self._topic_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        if broker.cluster is not None:
            broker.cluster.on_image.append(self._on_image)

    # --- start ------------------------------------------------------------------------------

    def load(self) -> None:
        """Single node: rebuild groups and offsets from ``__consumer_offsets``, partition by
        partition. In a cluster, partitions are loaded as this broker comes to lead them."""
        b = self.broker
        if self.clustered:
            return
        topic = b.topics.get(OFFSETS_TOPIC)
        if topic is None:
            return
        for p in range(topic.partitions):
            state = b.partition(OFFSETS_TOPIC, p)
            if state is None:
                continue
            pairs: list[tuple[bytes, bytes | None]] = []
            offset = state.log.log_start_offset
            while offset < state.log.log_end_offset:
                offset = self._read_records(state, offset, pairs)
                if offset < 0:
                    break
            self.coordinator.load(pairs, now_ms=b.now_ms())

    def _read_records(self, state: PartitionState, offset: int, pairs: list[tuple[bytes, bytes | None]]) -> int:
        """Append the keyed records of one read from ``offset`` to ``pairs``; the next offset to
        read (-1: nothing more could be read). Raises ``ProtocolError`` on a damaged batch."""
        result = state.log.read(offset, max_bytes=self.load_bytes, upper_bound_offset=None)
        if result.error != ErrorCode.NONE or not result.slices:
            return -1
        start = offset
        for view in iter_batches(memoryview(result.read_bytes())):
            offset = view.next_offset
            if view.is_control:
                continue
            for record in view.records():
                if record.key is not None:
                    pairs.append((bytes(record.key), None if record.value is None else bytes(record.value)))
        return offset if offset > start else -1

    def _offsets_topic(self) -> None:
        b = self.broker
        if b.topics.get(OFFSETS_TOPIC) is None:
            b.create_topic(OFFSETS_TOPIC, b.config.offsets_topic_num_partitions, self._offsets_topic_configs())

    def _offsets_topic_configs(self) -> dict[str, str]:
        cfg = dict(OFFSETS_TOPIC_CONFIGS)
        cfg["segment.bytes"] = str(self.broker.config.offsets_topic_segment_bytes)
        return cfg

    # --- the tasks ----------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.clustered:
                nursery.start_soon(self._loader)
                nursery.start_soon(self._offsets_topic_creator)
            await self._clock()

    async def _clock(self) -> None:
        b = self.broker
        while True:
            deadline = self.coordinator.next_deadline_ms()
            changed = self._timers_changed = trio.Event()
            if deadline is None:
                await changed.wait()
                continue
            delay_s = max(deadline - b.now_ms(), 0) / 1000
            with trio.move_on_after(delay_s):
                await changed.wait()
            self.coordinator.set_topics(self.topics_image())
            result = self.coordinator.tick(b.now_ms())
            if not self.clustered:
                self._apply(result)
                continue
            self._spawn_settle(self._write(result, ()))

    def _spawn_settle(self, settling: _Settling) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._settle, settling)

    # --- topics -----------------------------------------------------------------------------

    def topics_image(self) -> TopicsImage:
        """The broker's topics now, as consumer groups see them."""
        return TopicsImage(TopicInfo(t.name, t.topic_id, t.partitions, t.is_internal) for t in self.broker.topics)

    # --- which groups this broker coordinates -------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        return self.coordinator.partition_for(group_id)

    def coordinator_error(self, group_id: str) -> ErrorCode:
        """NONE when this broker coordinates ``group_id`` now; else how to refuse it:
        NOT_COORDINATOR (it does not lead the group's partition) or COORDINATOR_LOAD_IN_PROGRESS."""
        if not self.clustered:
            return ErrorCode.NONE
        status = self._partitions.get(self.partition_for(group_id))
        if status is None or status.failed:
            return ErrorCode.NOT_COORDINATOR
        return ErrorCode.NONE if status.loaded else ErrorCode.COORDINATOR_LOAD_IN_PROGRESS

    @property
    def is_loading(self) -> bool:
        """A partition this broker leads is still being loaded (ListGroups waits for it)."""
        return any(not s.loaded and not s.failed for s in self._partitions.values())

    def find_coordinator(self, group_id: str) -> tuple[ErrorCode, int, str, int]:
        """Cluster mode: (error, node id, host, port) of the group's coordinator, from the image."""
        cluster = self.broker.cluster
        assert cluster is not None
        image = cluster.image
        topic = image.topic(OFFSETS_TOPIC)
        unavailable = (ErrorCode.COORDINATOR_NOT_AVAILABLE, -1, "", -1)
        if topic is None:
            self._topic_wanted.set()
            return unavailable
        reg = topic.partition(self.partition_for(group_id))
        leader = None if reg is None or reg.leader < 0 else image.broker(reg.leader)
        if leader is None or leader.fenced:
            return unavailable
        ep = leader.endpoint(self.broker.config.inter_broker_listener_name) or (
            leader.endpoints[0] if leader.endpoints else None)
        if ep is None:
            return unavailable
        return ErrorCode.NONE, leader.broker_id, ep.host, ep.port

    async def _offsets_topic_creator(self) -> None:
        """Create ``__consumer_offsets`` through the controller when FindCoordinator wants it."""
        cluster = self.broker.cluster
        assert cluster is not None
        while True:
            await self._topic_wanted.wait()
            self._topic_wanted = trio.Event()
            if cluster.image.topic(OFFSETS_TOPIC) is None:
                await self._create_offsets_topic()
            await trio.sleep(OFFSETS_TOPIC_RETRY_MS / 1000)

    async def _create_offsets_topic(self) -> None:
        cluster = self.broker.cluster
        assert cluster is not None
        cfg = self.broker.config
        req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
            name=OFFSETS_TOPIC, num_partitions=cfg.offsets_topic_num_partitions,
            replication_factor=cfg.offsets_topic_replication_factor,
            configs=[CreateTopicsRequest.CreatableTopicConfig(name=k, value=v)
                     for k, v in sorted(self._offsets_topic_configs().items())])],
            timeout_ms=CREATE_TOPICS_TIMEOUT_MS)
        resp = await cluster.admin_call(
            req, lambda c: c.handle_create_topics(req, version=CREATE_TOPICS_VERSION),
            lambda: CreateTopicsResponse(), api_version=CREATE_TOPICS_VERSION)
        assert isinstance(resp, CreateTopicsResponse)
        for t in resp.topics:
            if t.error_code == ErrorCode.NONE:
                log.info("created %s: %d partitions, replication factor %d", OFFSETS_TOPIC,
                         cfg.offsets_topic_num_partitions, cfg.offsets_topic_replication_factor)
            elif t.error_code != ErrorCode.TOPIC_ALREADY_EXISTS:
                log.warning("could not create %s: %s %s", OFFSETS_TOPIC, ErrorCode(t.error_code).name,
                            t.error_message or "")

    # --- leadership of __consumer_offsets partitions (cluster mode) ---------------------------

    def _leader_epoch(self, partition: int) -> int | None:
        """The leader epoch in which this broker leads the partition now; None: it does not."""
        state = self.broker.partition(OFFSETS_TOPIC, partition)
        replica = None if state is None else state.replica
        return replica.leader_epoch if replica is not None and replica.is_leader else None

    def _on_image(self, old: MetadataImage, new: MetadataImage) -> None:
        """Compare the partitions this broker leads with those it has loaded (see the module docstring)."""
        for p, status in list(self._partitions.items()):
            epoch = self._leader_epoch(p)
            if epoch != status.leader_epoch:
                self._unload(p, "no longer its leader" if epoch is None else f"leader again in epoch {epoch}")
        topic = new.topic(OFFSETS_TOPIC)
        if topic is None:
            return
        for p in sorted(topic.partitions):
            if p >= self.coordinator.config.offsets_topic_partitions or p in self._partitions:
                continue
            epoch = self._leader_epoch(p)
            if epoch is not None:
                log.info("%s-%d: leader in epoch %d, loading its groups", OFFSETS_TOPIC, p, epoch)
                self._partitions[p] = _OffsetsPartition(epoch)
                self._load_wanted.set()

    def _unload(self, partition: int, why: str = "no longer its leader") -> None:
        status = self._partitions.pop(partition, None)
        if status is None or not status.loaded:
            return
        result = self.coordinator.unload_partition(partition, now_ms=self.broker.now_ms())
        log.info("%s-%d: groups unloaded (%s; leader epoch %d)", OFFSETS_TOPIC, partition, why, status.leader_epoch)
        self._deliver(result.completions, {})
        self._timers_changed.set()

    def _reload(self, partition: int) -> None:
        """Make the partition's groups what its log says again (after a refused write)."""
        status = self._partitions.get(partition)
        if status is None:
            return
        self._unload(partition, "reloading")
        if self._leader_epoch(partition) == status.leader_epoch:
            self._partitions[partition] = _OffsetsPartition(status.leader_epoch)
            self._load_wanted.set()

    async def _loader(self) -> None:
        while True:
            await self._load_wanted.wait()
            self._load_wanted = trio.Event()
            for p, status in sorted(self._partitions.items()):
                if not status.loaded and not status.failed and self._partitions.get(p) is status:
                    await self._load_partition(p, status)

    async def _load_partition(self, partition: int, status: _OffsetsPartition) -> None:
        b = self.broker
        state = b.partition(OFFSETS_TOPIC, partition)
        if state is None or self._leader_epoch(partition) != status.leader_epoch:
            if self._partitions.get(partition) is status:
                del self._partitions[partition]
            return
        started_ms = b.now_ms()
        pairs: list[tuple[bytes, bytes | None]] = []
        offset = state.log.log_start_offset
        try:
            while offset < state.log.log_end_offset:
                offset = self._read_records(state, offset, pairs)
                await trio.sleep(0)  # other requests go between chunks
                if self._partitions.get(partition) is not status:
                    return  # unloaded (or reloaded) meanwhile
                if offset < 0:
                    break
            result = self.coordinator.load_partition(partition, pairs, now_ms=b.now_ms())
        except ProtocolError as e:
            log.error("%s-%d: cannot load its groups: %s", OFFSETS_TOPIC, partition, e)
            status.failed = True
            return
        status.loaded = True
        log.info("%s-%d: loaded %d records (groups %s) in %d ms", OFFSETS_TOPIC, partition, len(pairs),
                 self.coordinator.partition_group_ids(partition), b.now_ms() - started_ms)
        self._spawn_settle(self._write(result, ()))

    # --- calls ------------------------------------------------------------------------------

    async def call(self, request: Message, run: Callable[[int], CoordinatorResult[Any]], *, api_version: int,
                   groups: Collection[str]) -> Message:
        """A call that is always answered at once: ``run(now_ms)`` calls the coordinator. In a
        cluster the answer waits for the writes of the call and the read barrier of the
        partitions of ``groups``, and turns into an error answer if they fail."""
        result = run(self.broker.now_ms())
        response = result.response
        assert response is not None
        if not self.clustered:
            self._apply(result)
            return response
        partitions = {self.partition_for(g) for g in groups}
        settling = self._write(result, partitions)
        await self._settle(settling)
        error = settling.error(partitions)
        if error == ErrorCode.NONE:
            return response
        mapped = append_error(error, write_kind(request))
        if isinstance(response, OffsetCommitResponse):
            return fail_offset_commit(response, mapped)
        return error_response(request, mapped, api_version=api_version)

    async def call_parked(self, request: Message, run: Callable[[Hashable, int], CoordinatorResult[Any]], *,
                          api_version: int, group_id: str) -> Message | None:
        """A JoinGroup or SyncGroup (``run(token, now_ms)``): answered now, or later through its
        token (None: never)."""
        token = next(self._tokens)
        partition = self.partition_for(group_id)
        parked = self._parked[token] = _Parked(partition, api_version)
        try:
            result = run(token, self.broker.now_ms())
            if not self.clustered:
                self._apply(result)
                if result.response is not None:
                    return result.response
                await parked.event.wait()
                return parked.response
            settling = self._write(result, {partition})
            await self._settle(settling)
            if result.response is not None:
                error = settling.error({partition})
                if error == ErrorCode.NONE:
                    return result.response
                return error_response(request, append_error(error, WriteKind.GROUP_METADATA), api_version=api_version)
            await parked.event.wait()
            return parked.response
        finally:
            del self._parked[token]

    def _apply(self, result: CoordinatorResult[Any]) -> None:
        """Single node: persist, then answer at once."""
        if result.records:
            self._persist(result.records)
        self._deliver(result.completions, {})
        self._abandon(result.abandoned)
        self._timers_changed.set()

    def _deliver(self, completions: list[Completion], outcomes: dict[int, ErrorCode]) -> None:
        for completion in completions:
            parked = self._parked.get(completion.token)
            if parked is None:
                continue
            error = outcomes.get(parked.partition, ErrorCode.NONE)
            response: Message = completion.response
            if error != ErrorCode.NONE:
                mapped = append_error(error, WriteKind.GROUP_METADATA)
                if isinstance(response, JoinGroupResponse):
                    response = join_error(response.member_id, mapped, api_version=parked.api_version)
                else:
                    response = SyncGroupResponse(error_code=mapped)
            parked.response = response
            parked.event.set()

    def _abandon(self, tokens: list[Hashable]) -> None:
        for token in tokens:
            parked = self._parked.get(token)
            if parked is not None:
                parked.event.set()  # response stays None: no answer, as Kafka drops these

    def _persist(self, records: list[Any]) -> None:
        b = self.broker
        self._offsets_topic()
        for p, new in _by_partition(records).items():
            state = b.partition(OFFSETS_TOPIC, p)
            assert state is not None, p
            batch = build_batch(new, base_timestamp=b.now_ms())
            result = state.log.append_as_leader(batch, leader_epoch=state.leader_epoch, now_ms=b.now_ms())
            if isinstance(result, AppendRejected):
                # The coordinator has already applied the change (it does not model failed writes).
                log.error("could not persist group state to %s-%d: %s", OFFSETS_TOPIC, p, result.message)
                continue
            b.advance_high_watermark(state)

    # --- cluster mode: writes through the replica, answers once replicated --------------------

    def _write(self, result: CoordinatorResult[Any], partitions: Collection[int]) -> _Settling:
        """Append the call's records (now, in the coordinator's order) and set up the waits: its
        writes, and the read barrier of ``partitions`` and of the completions' partitions."""
        waits: dict[int, ProduceWait] = {}
        outcomes: dict[int, ErrorCode] = {}
        for p, new in _by_partition(result.records).items():
            written = self._append(p, new)
            if isinstance(written, ProduceWait):
                waits[p] = written
            else:
                outcomes[p] = written
        barrier = set(partitions)
        barrier.update(parked.partition for c in result.completions if (parked := self._parked.get(c.token)))
        for p in barrier - waits.keys() - outcomes.keys():
            state = self.broker.partition(OFFSETS_TOPIC, p)
            if state is None or state.replica is None or not state.replica.is_leader:
                outcomes[p] = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif state.log.high_watermark < state.log.log_end_offset:
                waits[p] = ProduceWait.until_high_watermark(state, state.log.log_end_offset)
        self._abandon(result.abandoned)
        self._timers_changed.set()
        return _Settling(waits, outcomes, result.completions)

    def _append(self, partition: int, new: list[NewRecord]) -> ProduceWait | ErrorCode:
        b = self.broker
        state = b.partition(OFFSETS_TOPIC, partition)
        replica = None if state is None else state.replica
        if state is None or replica is None or not replica.is_leader:
            log.warning("%s-%d: not its leader, %d group records dropped", OFFSETS_TOPIC, partition, len(new))
            self._unload(partition)
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        now = b.now_ms()
        appended = replica.append(build_batch(new, base_timestamp=now), acks=ACKS_ALL, now_ms=now,
                                  timeout_ms=self.commit_timeout_ms)
        if appended.info is None:
            log.warning("%s-%d: write refused (%s %s); reloading its groups from the log", OFFSETS_TOPIC, partition,
                        ErrorCode(appended.error).name, appended.message or "")
            self._reload(partition)
            return ErrorCode(appended.error)
        wait = None
        if appended.produce_id >= 0:
            assert b.replicas is not None
            wait = b.replicas.register_produce(state, appended.produce_id)
        b.advance_high_watermark(state)
        state.wake()  # followers' fetches waiting on this partition take the records now
        return wait if wait is not None else ErrorCode(appended.error)

    async def _settle(self, settling: _Settling) -> None:
        """Wait for the writes (within the commit timeout), then answer the completions."""
        if settling.waits:
            with trio.move_on_after((self.commit_timeout_ms + WRITE_WAIT_SLACK_MS) / 1000):
                for wait in settling.waits.values():
                    await wait.wait()
            for p, wait in settling.waits.items():
                settling.outcomes[p] = wait.error
        failed = {p: e for p, e in settling.outcomes.items() if e != ErrorCode.NONE}
        if failed:
            log.info("group writes failed: %s", {f"{OFFSETS_TOPIC}-{p}": ErrorCode(e).name for p, e in failed.items()})
        self._deliver(settling.completions, settling.outcomes)


def _by_partition(records: list[OffsetsRecord]) -> dict[int, list[NewRecord]]:
    by_partition: dict[int, list[NewRecord]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(NewRecord(key=r.key, value=r.value))
    return by_partition
