"""The trio side of the group coordinator: its clock, its log, and requests that wait.

``broker.group.GroupCoordinator`` is sans-IO; this adapter gives it what it lacks:

- **Persistence.** Every ``OffsetsRecord`` a call returns is appended to its partition of the
  internal topic ``__consumer_offsets`` (created on first use, ``offsets.topic.num.partitions``
  partitions, compacted, as Kafka creates it) *before* any answer leaves, as Kafka answers only
  after the write. At start, every partition is read back and handed to ``load``.
- **Time.** ``run`` sleeps until ``next_deadline_ms`` (or until a call changed the timers) and
  calls ``tick``; session expiry and rebalance timeouts happen there.
- **Topics.** KIP-848 consumer groups are assigned from the broker's topics: ``topics_image``
  takes a snapshot of the topic store (names, ids, partition counts), handed to the coordinator
  with every ConsumerGroupHeartbeat and ConsumerGroupDescribe and before every ``tick``.
- **Parked requests.** JoinGroup and SyncGroup answers arrive later, as completions for the
  token the request was given. A parked handler waits on an event for its token; an abandoned
  token (Kafka drops those requests) gets no answer at all.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.core import Broker
from broker.group import GroupCoordinator, GroupCoordinatorConfig
from broker.group.consumer import TopicInfo, TopicsImage
from broker.group.coordinator import CoordinatorResult
from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.records import NewRecord, build_batch, iter_batches
from storage.log import AppendRejected

log = logging.getLogger("trafka.groups")

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_TOPIC_CONFIGS = {"cleanup.policy": "compact", "compression.type": "producer"}
LOAD_BYTES = 8 * 1024 * 1024


@dataclass(slots=True, eq=False)
class _Parked:
    event: trio.Event = field(default_factory=trio.Event)
    response: Message | None = None


class GroupService:
    """See the module docstring. One per broker; ``load`` before serving, ``run`` in a nursery."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.coordinator = GroupCoordinator(GroupCoordinatorConfig.from_broker_config(broker.config),
                                            new_uuid=lambda: str(broker.new_uuid()))
        self._parked: dict[Hashable, _Parked] = {}
        self._tokens = itertools.count()
        self._timers_changed = trio.Event()

    # --- start ------------------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild groups and offsets from ``__consumer_offsets``, partition by partition."""
        b = self.broker
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
                result = state.log.read(offset, max_bytes=LOAD_BYTES, upper_bound_offset=None)
                if result.error != ErrorCode.NONE or not result.slices:
                    break
                for view in iter_batches(memoryview(result.read_bytes())):
                    offset = view.next_offset
                    if view.is_control:
                        continue
                    for record in view.records():
                        if record.key is not None:
                            pairs.append((bytes(record.key), None if record.value is None else bytes(record.value)))
            self.coordinator.load(pairs, now_ms=b.now_ms())

    def _offsets_topic(self) -> None:
        b = self.broker
        if b.topics.get(OFFSETS_TOPIC) is None:
            cfg = dict(OFFSETS_TOPIC_CONFIGS)
            cfg["segment.bytes"] = str(b.config.offsets_topic_segment_bytes)
            b.create_topic(OFFSETS_TOPIC, b.config.offsets_topic_num_partitions, cfg)

    # --- the clock --------------------------------------------------------------------------

    async def run(self) -> None:
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
            self._apply(self.coordinator.tick(b.now_ms()))

    # --- topics -----------------------------------------------------------------------------

    def topics_image(self) -> TopicsImage:
        """The broker's topics now, as consumer groups see them."""
        return TopicsImage(TopicInfo(t.name, t.topic_id, t.partitions, t.is_internal) for t in self.broker.topics)

    # --- calls ------------------------------------------------------------------------------

    def call(self, fn: Callable[..., CoordinatorResult[Any]], request: Any, **kwargs: Any) -> Message:
        """A call that is always answered at once."""
        result = fn(request, now_ms=self.broker.now_ms(), **kwargs)
        self._apply(result)
        assert result.response is not None
        return result.response

    async def call_parked(self, fn: Callable[..., CoordinatorResult[Any]], request: Any,
                          **kwargs: Any) -> Message | None:
        """A JoinGroup or SyncGroup: answered now, or later through its token (None: never)."""
        token = next(self._tokens)
        parked = self._parked[token] = _Parked()
        try:
            result = fn(request, token=token, now_ms=self.broker.now_ms(), **kwargs)
            self._apply(result)
            if result.response is not None:
                return result.response
            await parked.event.wait()
            return parked.response
        finally:
            del self._parked[token]

    def _apply(self, result: CoordinatorResult[Any]) -> None:
        if result.records:
            self._persist(result.records)
        for completion in result.completions:
            parked = self._parked.get(completion.token)
            if parked is not None:
                parked.response = completion.response
                parked.event.set()
        for token in result.abandoned:
            parked = self._parked.get(token)
            if parked is not None:
                parked.event.set()  # response stays None: no answer, as Kafka drops these
        self._timers_changed.set()

    def _persist(self, records: list[Any]) -> None:
        b = self.broker
        self._offsets_topic()
        by_partition: dict[int, list[NewRecord]] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append(NewRecord(key=r.key, value=r.value))
        for p, new in by_partition.items():
            state = b.partition(OFFSETS_TOPIC, p)
            assert state is not None, p
            batch = build_batch(new, base_timestamp=b.now_ms())
            result = state.log.append_as_leader(batch, leader_epoch=state.leader_epoch, now_ms=b.now_ms())
            if isinstance(result, AppendRejected):
                # The coordinator has already applied the change (it does not model failed writes).
                log.error("could not persist group state to %s-%d: %s", OFFSETS_TOPIC, p, result.message)
                continue
            b.advance_high_watermark(state)
