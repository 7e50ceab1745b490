"""Cluster mode's partitions: roles from the metadata, follower fetchers, ISR changes, acks=all.

What it owns. For every partition this broker holds a replica of, a
``replication.partition.Partition`` (the sans-IO leader/follower state machine) beside the
broker's ``PartitionState``; the follower fetchers (one task per leader broker, fetching every
partition it follows from that leader in one request, Kafka's ``ReplicaFetcherThread``); the
AlterPartition requests the leaders' ISR changes send to the controller; and the acks=all
produces waiting for the high watermark.

Theory of operation. ``apply_image`` (called by ``broker.cluster.ClusterNode`` for every new
metadata image) makes this broker lead, follow or drop each changed partition, as Kafka's
``ReplicaManager.applyDelta``; then it starts a fetcher for every leader that has partitions to
feed us. Every call into a ``Partition`` is followed by ``drain``, which carries out its effects:
an ISR proposal is sent to the controller, a completed produce wakes its handler, a higher high
watermark wakes waiting consumer fetches, a truncated log rebuilds the partition's producer
state (so that idempotence survives a leader change, followers replay each appended batch into
their producer state too). ``_ticker`` runs the leaders' timers (ISR shrink after
``replica.lag.time.max.ms``, produce deadlines) every ``TICK_MS``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from broker.client import ConnectionConfig
from broker.config import log_config
from broker.peers import Peers, PeerUnavailable
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from protocol.records import iter_batches
from replication.metadata import EMPTY_IMAGE, MetadataImage, PartitionView, local_changes
from replication.partition import (
    AlterPartitionProposal,
    FetchOutcome,
    HighWatermarkAdvanced,
    LeaderAndIsr,
    LogTruncated,
    Partition,
    ProduceCompleted,
    ReplicaConfig,
    ReplicaFetch,
    Role,
)
from replication.replica_wire import (
    alter_partition_data_from_proposal,
    alter_partition_result,
    fetch_partition_from_fetch,
    fetched_from_partition_data,
    replica_state_from_fetch,
)
from storage.log import LATEST_TIMESTAMP

if TYPE_CHECKING:
    from broker.cluster import ClusterNode
    from broker.core import Broker, PartitionState

logger = logging.getLogger("trafka.replicas")

TICK_MS = 250
REPLICA_FETCH_VERSION = 17
ALTER_PARTITION_VERSION = 3
FETCH_RESPONSE_BYTES_MAX_KEY = "replica.fetch.response.max.bytes"


@dataclass(slots=True)
class ProduceWait:
    """An acks=all produce waiting for the ISR: completed by the partition's ``ProduceCompleted``,
    or (``until_high_watermark``) a retried duplicate waiting for the high watermark to pass the
    original. ``error`` stays REQUEST_TIMED_OUT if the wait ends before either."""

    done: trio.Event = field(default_factory=trio.Event)
    error: ErrorCode = ErrorCode.REQUEST_TIMED_OUT
    state: PartitionState | None = None
    required_offset: int = -1

    @staticmethod
    def until_high_watermark(state: PartitionState, required_offset: int) -> ProduceWait:
        return ProduceWait(state=state, required_offset=required_offset)

    async def wait(self) -> None:
        state = self.state
        if state is None:
            await self.done.wait()
            return
        while True:
            replica = state.replica
            if replica is None or not replica.is_leader:
                self.error = ErrorCode.NOT_LEADER_OR_FOLLOWER
                return
            if state.log.high_watermark >= self.required_offset:
                self.error = ErrorCode.NONE
                return
            event = trio.Event()
            state.waiters.add(event)
            try:
                await event.wait()
            finally:
                state.waiters.discard(event)


class ReplicaManager:
    def __init__(self, broker: Broker, node: ClusterNode) -> None:
        cfg = broker.config
        self.broker = broker
        self.node = node
        self.me = cfg.node_id
        self.replica_config = ReplicaConfig(
            replica_lag_time_max_ms=cfg.replica_lag_time_max_ms,
            replica_fetch_backoff_ms=cfg.get_int("replica.fetch.backoff.ms"),
            replica_fetch_max_bytes=cfg.get_int("replica.fetch.max.bytes"),
        )
        self.fetch_wait_ms = cfg.get_int("replica.fetch.wait.max.ms")
        self.fetch_response_bytes_max = cfg.get_int(FETCH_RESPONSE_BYTES_MAX_KEY)
        self.socket_timeout_ms = cfg.get_int("replica.socket.timeout.ms")
        self.inter_broker_listener = cfg.inter_broker_listener_name
        self.data_peers = Peers({}, config=ConnectionConfig(client_id=f"trafka-replica-{self.me}",
                                                          request_timeout_ms=self.socket_timeout_ms))
        self._produce_waits: dict[tuple[str, int, int], ProduceWait] = {}
        self._fetchers: dict[int, trio.Event] = {}  # leader id -> its fetcher's wake-up
        self._nursery: trio.Nursery | None = None
        self._roles_from = EMPTY_IMAGE  # the image the partitions' roles were last taken from
        node.on_image.append(self.apply_image)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.data_peers.run)
            nursery.start_soon(self._ticker)
            task_status.started()
            self._start_fetchers()

    # --- metadata ------------------------------------------------------------------------------

    def apply_image(self, old: MetadataImage, new: MetadataImage) -> None:
        b = self.broker
        now = b.now_ms()
        b.topics.sync_from_image(new)
        if old.brokers is not new.brokers:
            for bid, reg in new.brokers.items():
                ep = reg.endpoint(self.inter_broker_listener) or (reg.endpoints[0] if reg.endpoints else None)
                if ep is not None:
                    self.data_peers.set_address(bid, (ep.host, ep.port))
        # Roles only once this incarnation is registered, the image has caught up with its
        # registration and with the high watermark the quorum leader last reported (Kafka's broker
        # waits for these before it publishes metadata): a node back from a crash that lost data
        # must not lead by the old image, whose leaders the controller has not yet moved off its
        # previous incarnation; nor may a lagging node, e.g. one that just installed a snapshot
        # older than what is committed, lead by a leadership the log has since taken away.
        if not self._may_take_roles(new):
            return
        changes = local_changes(self._roles_from, new, self.me)
        self._roles_from = new
        for view in changes.deletes:
            self._remove(view)
        for view in (*changes.leaders, *changes.followers):
            self._apply(view, now)
        if old.brokers is not new.brokers or changes.leaders or changes.followers:
            live = {bid: reg.epoch for bid, reg in new.brokers.items() if not reg.fenced}
            for state in list(b.partitions.values()):
                if state.replica is not None:
                    state.replica.set_live_brokers(live, now_ms=now)
                    self.drain(state)
        if old.configs is not new.configs:
            for topic in new.topics_by_id.values():
                known = b.topics.get(topic.name)
                cfg = log_config(b.config, known.configs if known is not None else {})
                for pid in topic.partitions:
                    held = b.partitions.get((topic.name, pid))
                    if held is not None and held.log.config != cfg:
                        held.log.config = cfg
        for topic in new.topics_by_id.values():
            min_isr = b.min_insync_replicas(topic.name)
            for pid in topic.partitions:
                held = b.partitions.get((topic.name, pid))
                if held is not None and held.replica is not None and held.replica.is_leader \
                        and held.replica.min_insync_replicas != min_isr:
                    held.replica.set_min_insync_replicas(min_isr, now_ms=now)
                    self.drain(held)
        self._start_fetchers()

    def _may_take_roles(self, image: MetadataImage) -> bool:
        epoch = self.node.broker_epoch
        reg = image.brokers.get(self.me)
        return (epoch >= 0 and image.offset >= epoch and reg is not None and reg.epoch == epoch
                and self.node.caught_up())

    def _apply(self, view: PartitionView, now: int) -> None:
        b = self.broker
        state = b.ensure_partition(view.topic_name, view.partition_id, topic_id=view.topic_id)
        if state.replica is None:
            state.replica = Partition(state.log, broker_id=self.me, config=self.replica_config,
                                      broker_epoch=self.node.broker_epoch)
        reg = view.registration
        lai = LeaderAndIsr(leader=reg.leader, leader_epoch=reg.leader_epoch, partition_epoch=reg.partition_epoch,
                           replicas=reg.replicas, isr=reg.isr)
        if reg.leader == self.me:
            changed = state.replica.become_leader(lai, min_insync_replicas=b.min_insync_replicas(view.topic_name),
                                                  now_ms=now)
        else:
            changed = state.replica.become_follower(lai, now_ms=now)
        if changed:
            logger.info("%s-%d: %s in leader epoch %d (ISR %s)", view.topic_name, view.partition_id,
                     "leader" if reg.leader == self.me else f"follower of {reg.leader}", reg.leader_epoch,
                     list(reg.isr))
        state.leader_epoch = max(state.leader_epoch, reg.leader_epoch)
        self.drain(state)
        state.wake()

    def _remove(self, view: PartitionView) -> None:
        b = self.broker
        state = b.partitions.pop((view.topic_name, view.partition_id), None)
        if state is None:
            return
        if state.replica is not None:
            state.replica.stop()
            self.drain(state)
        state.wake()
        if b.logs is not None:
            b.logs.delete_log(view.topic_name, view.partition_id, now_ms=b.now_ms())

    # --- effects -------------------------------------------------------------------------------

    def drain(self, state: PartitionState) -> None:
        replica = state.replica
        if replica is None:
            return
        for effect in replica.take_effects():
            if isinstance(effect, ProduceCompleted):
                wait = self._produce_waits.pop((state.log.topic, state.log.partition, effect.produce_id), None)
                if wait is not None:
                    wait.error = effect.error
                    wait.done.set()
            elif isinstance(effect, HighWatermarkAdvanced):
                state.wake()
            elif isinstance(effect, LogTruncated):
                state.producers = self.broker.rebuild_producer_state(state.log)
            elif isinstance(effect, AlterPartitionProposal) and self._nursery is not None:
                self._nursery.start_soon(self._alter_partition, state, effect)

    def register_produce(self, state: PartitionState, produce_id: int) -> ProduceWait:
        wait = ProduceWait()
        self._produce_waits[(state.log.topic, state.log.partition, produce_id)] = wait
        return wait

    async def _alter_partition(self, state: PartitionState, proposal: AlterPartitionProposal) -> None:
        topic = self.broker.topics.get(proposal.topic)
        if topic is None:
            return
        req = AlterPartitionRequest(broker_id=self.me, broker_epoch=self.node.broker_epoch, topics=[
            AlterPartitionRequest.TopicData(topic_id=topic.topic_id, partitions=[
                alter_partition_data_from_proposal(proposal, version=ALTER_PARTITION_VERSION)])])
        resp = await self.node.controller_request(req, api_version=ALTER_PARTITION_VERSION,
                                                  timeout_ms=self.replica_config.alter_partition_retry_backoff_ms * 5)
        if not isinstance(resp, AlterPartitionResponse) or state.replica is None:
            return  # the partition resends an unanswered proposal on its own
        data = next((p for t in resp.topics for p in t.partitions if p.partition_index == proposal.partition), None)
        if data is None:
            return
        result = alter_partition_result(data, top_level_error=resp.error_code)
        state.replica.handle_alter_partition_result(proposal.proposal_id, result, now_ms=self.broker.now_ms())
        self.drain(state)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK_MS / 1000)
            now = self.broker.now_ms()
            for state in list(self.broker.partitions.values()):
                if state.replica is not None and state.replica.role is Role.LEADER:
                    state.replica.tick(now)
                    self.drain(state)
            for wake in self._fetchers.values():
                wake.set()  # followers in backoff fetch again once it has passed

    # --- followers -----------------------------------------------------------------------------

    def _start_fetchers(self) -> None:
        if self._nursery is None:
            return
        leaders = {s.replica.leader_id for s in self.broker.partitions.values()
                   if s.replica is not None and s.replica.role is Role.FOLLOWER and s.replica.leader_id >= 0}
        for leader in leaders:
            if leader not in self._fetchers:
                self._fetchers[leader] = trio.Event()
                self._nursery.start_soon(self._fetcher, leader)
            else:
                self._fetchers[leader].set()

    def _following(self, leader: int) -> list[PartitionState]:
        return [s for s in self.broker.partitions.values()
                if s.replica is not None and s.replica.role is Role.FOLLOWER and s.replica.leader_id == leader]

    async def _fetcher(self, leader: int) -> None:
        b = self.broker
        try:
            while True:
                states = self._following(leader)
                if not states:
                    return
                now = b.now_ms()
                fetches: list[tuple[PartitionState, ReplicaFetch]] = []
                for s in states:
                    assert s.replica is not None
                    s.replica.broker_epoch = self.node.broker_epoch
                    f = s.replica.next_fetch(now_ms=now)
                    if f is not None:
                        fetches.append((s, f))
                if not fetches:
                    wake = self._fetchers[leader] = trio.Event()
                    with trio.move_on_after(TICK_MS / 1000):
                        await wake.wait()
                    continue
                try:
                    resp = await self.data_peers.request(leader, self._fetch_request(fetches), FetchResponse,
                                                         api_version=REPLICA_FETCH_VERSION,
                                                         timeout_ms=self.socket_timeout_ms)
                except PeerUnavailable as e:
                    logger.debug("fetch from leader %d failed: %s", leader, e)
                    await trio.sleep(min(self.replica_config.replica_fetch_backoff_ms, 500) / 1000)
                    continue
                for s, f, data in self._apply_fetch_response(fetches, resp):
                    await self._with_leader_end_offset(leader, s, f, data)
                await self._make_durable(states)
        finally:
            self._fetchers.pop(leader, None)

    async def _make_durable(self, states: list[PartitionState]) -> None:
        """``flush.messages`` on a follower: what it appended is fsynced (group commit) before it
        fetches again, since its next fetch offset tells the leader those records are safe here."""
        for s in states:
            log = s.log
            if log.config.durable_appends and log.durable_offset < log.log_end_offset:
                try:
                    await self.broker.committer.wait_durable(log, log.log_end_offset - 1)
                except OSError as e:
                    logger.error("%s-%d: the follower could not make its log durable: %s", log.topic, log.partition, e)

    def _fetch_request(self, fetches: list[tuple[PartitionState, ReplicaFetch]]) -> FetchRequest:
        topics: dict[str, FetchRequest.FetchTopic] = {}
        for s, f in fetches:
            topic = self.broker.topics.get(s.log.topic)
            if topic is None:
                continue
            t = topics.get(s.log.topic)
            if t is None:
                t = topics[s.log.topic] = FetchRequest.FetchTopic(topic=s.log.topic, topic_id=topic.topic_id)
            t.partitions.append(fetch_partition_from_fetch(f, partition_index=s.log.partition))
        first = fetches[0][1]
        return FetchRequest(replica_id=-1, replica_state=replica_state_from_fetch(first),
                            max_wait_ms=self.fetch_wait_ms, min_bytes=1,
                            max_bytes=self.fetch_response_bytes_max, isolation_level=0, session_id=0,
                            session_epoch=-1, topics=list(topics.values()), forgotten_topics_data=[], rack_id="")

    def _apply_fetch_response(self, fetches: list[tuple[PartitionState, ReplicaFetch]], resp: FetchResponse
                              ) -> list[tuple[PartitionState, ReplicaFetch, FetchResponse.PartitionData]]:
        """Apply each partition's answer; returns those that need the leader's log end offset
        (an out-of-range fetch from a follower whose log may be longer than the leader's)."""
        now = self.broker.now_ms()
        need_end: list[tuple[PartitionState, ReplicaFetch, FetchResponse.PartitionData]] = []
        by_id = {t.topic_id: t for t in resp.responses}
        if resp.error_code != ErrorCode.NONE:
            logger.info("fetch refused by the leader: %s", ErrorCode(resp.error_code).name)
        for s, f in fetches:
            replica = s.replica
            if replica is None:
                continue
            topic = self.broker.topics.get(s.log.topic)
            t = by_id.get(topic.topic_id) if topic is not None else None
            data = next((p for p in t.partitions if p.partition_index == s.log.partition), None) if t else None
            if data is None:
                continue
            fetched = fetched_from_partition_data(data)
            before = s.log.log_end_offset
            outcome = replica.handle_fetch_response(f, fetched, now_ms=now)
            if outcome is FetchOutcome.APPENDED and s.log.log_end_offset > before:
                self._replay_producers(s, fetched.records, before)
            elif outcome is FetchOutcome.NEED_LEADER_END_OFFSET:
                need_end.append((s, f, data))
            self.drain(s)
        return need_end

    async def _with_leader_end_offset(self, leader: int, state: PartitionState, fetch: ReplicaFetch,
                                      data: FetchResponse.PartitionData) -> None:
        """Kafka's fetcher asks ListOffsets(LATEST) as a replica for the leader's log end, then
        decides where to truncate; so does this one."""
        req = ListOffsetsRequest(replica_id=self.me, isolation_level=0, topics=[ListOffsetsRequest.ListOffsetsTopic(
            name=state.log.topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(
                partition_index=state.log.partition, current_leader_epoch=fetch.current_leader_epoch,
                timestamp=LATEST_TIMESTAMP)])])
        try:
            resp = await self.data_peers.request(leader, req, ListOffsetsResponse, timeout_ms=self.socket_timeout_ms)
        except PeerUnavailable:
            return
        answer = next((p for t in resp.topics for p in t.partitions), None)
        if answer is None or answer.error_code != ErrorCode.NONE or state.replica is None:
            return
        fetched = fetched_from_partition_data(data, leader_log_end_offset=answer.offset)
        state.replica.handle_fetch_response(fetch, fetched, now_ms=self.broker.now_ms())
        self.drain(state)

    def _replay_producers(self, state: PartitionState, records: bytes, from_offset: int) -> None:
        try:
            for view in iter_batches(memoryview(records)):
                if view.base_offset >= from_offset:
                    state.producers.replay(view)
        except ProtocolError:
            state.producers = self.broker.rebuild_producer_state(state.log)
