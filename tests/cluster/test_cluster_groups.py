"""Consumer groups on a real three-node cluster: the coordinator moves with its partition's leader.

Goal: in a cluster, a group's coordinator is the leader of its ``__consumer_offsets`` partition,
and it must survive that leader's death without losing a committed offset. The test

1. asks FindCoordinator before ``__consumer_offsets`` exists (COORDINATOR_NOT_AVAILABLE, and the
   broker has the controller create it), then until it names a node; that node must be the
   partition's leader in the metadata, and the other nodes must refuse group requests for the
   group NOT_COORDINATOR. With a follower of that partition stopped, a commit is answered only
   once the ISR no longer waits for it (acks=all); with ``min.insync.replicas`` raised above the
   ISR, a commit is refused COORDINATOR_NOT_AVAILABLE and the coordinator forgets it (OffsetFetch
   still answers the last replicated commit);
2. runs a confluent-kafka group of two members over a replicated topic, committing
   synchronously what it consumed, and remembers every commit the broker acknowledged;
3. SIGKILLs the group's coordinator, then reads the committed offsets back (a reader of the
   group finds the new coordinator): every acknowledged commit must be there;
4. produces more and lets the same two members consume and commit it: they must find the new
   coordinator on their own (a different node than the killed one);
5. closes them and starts a new member: it must resume exactly after the last acknowledged
   commit of every partition (its first record of each partition is the committed offset).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.client import ConnectionConfig, open_connection
from broker.group import partition_for
from protocol.error_codes import ErrorCode
from protocol.messages.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from tests.cluster.harness import Cluster

confluent_kafka = pytest.importorskip("confluent_kafka")
admin_api = pytest.importorskip("confluent_kafka.admin")

TOPIC = "orders"
PARTITIONS = 4
GROUP = "failover-group"
PROBE_GROUP = "probe-group"
OFFSETS_PARTITIONS = 5
BATCH = 120  # records produced before the kill, and again after it
TAIL = 12  # records produced for the resuming member
DEADLINE_S = 40.0
ISR_WAIT_S_MIN = 1.5  # a stopped follower leaves the ISR after broker.session.timeout.ms (3 s) at the earliest
OVERRIDES = (
    "min.insync.replicas=2",
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=5000",
    "replica.fetch.wait.max.ms=200",
    "offsets.topic.replication.factor=3",
    f"offsets.topic.num.partitions={OFFSETS_PARTITIONS}",
    "group.initial.rebalance.delay.ms=0",
)
CONSUMER = {
    "group.id": GROUP, "enable.auto.commit": False, "auto.offset.reset": "earliest",
    "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500, "topic.metadata.refresh.interval.ms": 1000,
    "enable.partition.eof": False,
}


def _address(cluster: Cluster, node_id: int) -> tuple[str, int]:
    return "127.0.0.1", cluster.nodes[node_id].client_proxy.port


def _find_coordinator(address: tuple[str, int], group: str) -> FindCoordinatorResponse.Coordinator:
    async def ask() -> FindCoordinatorResponse.Coordinator:
        async with open_connection(*address, config=ConnectionConfig(request_timeout_ms=10_000)) as conn:
            resp = await conn.request(FindCoordinatorRequest(key_type=0, coordinator_keys=[group]),
                                      FindCoordinatorResponse, api_version=4)
            return resp.coordinators[0]
    return trio.run(ask)


def _standalone_commit(address: tuple[str, int], group: str, offset: int = 0) -> int:
    """An admin-style OffsetCommit (no member) of ``offset`` for partition 0; its error code."""
    async def ask() -> int:
        async with open_connection(*address, config=ConnectionConfig(request_timeout_ms=10_000)) as conn:
            req = OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
                OffsetCommitRequest.OffsetCommitRequestTopic(TOPIC, [
                    OffsetCommitRequest.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset)])])
            resp = await conn.request(req, OffsetCommitResponse, api_version=8)
            return resp.topics[0].partitions[0].error_code
    return trio.run(ask)


def _fetch_offset(address: tuple[str, int], group: str) -> tuple[int, int]:
    """OffsetFetch v8 of partition 0: (group error, committed offset)."""
    async def ask() -> tuple[int, int]:
        async with open_connection(*address, config=ConnectionConfig(request_timeout_ms=10_000)) as conn:
            req = OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(group_id=group, topics=[
                OffsetFetchRequest.OffsetFetchRequestTopics(TOPIC, [0])])])
            resp = await conn.request(req, OffsetFetchResponse, api_version=8)
            g = resp.groups[0]
            return g.error_code, (g.topics[0].partitions[0].committed_offset if g.topics else -1)
    return trio.run(ask)


def _until_not_loading(ask: Callable[[], Any]) -> Any:
    """``ask()`` again while the coordinator is (re)loading the partition."""
    started = time.monotonic()
    while True:
        answer = ask()
        code = answer[0] if isinstance(answer, tuple) else answer
        if code != ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            return answer
        assert time.monotonic() - started < DEADLINE_S, "the coordinator kept loading"
        time.sleep(0.1)


def _set_offsets_min_isr(admin: Any, value: str | None) -> None:
    op = admin_api.AlterConfigOpType.SET if value is not None else admin_api.AlterConfigOpType.DELETE
    resource = admin_api.ConfigResource(admin_api.ResourceType.TOPIC, "__consumer_offsets", incremental_configs=[
        admin_api.ConfigEntry("min.insync.replicas", value, incremental_operation=op)])
    admin.incremental_alter_configs([resource])[resource].result(30)


def _offsets_leader(admin: Any, group: str) -> int:
    md = admin.list_topics("__consumer_offsets", timeout=10)
    return md.topics["__consumer_offsets"].partitions[partition_for(group, OFFSETS_PARTITIONS)].leader


def _produce(bootstrap: str, start: int, count: int) -> dict[int, int]:
    """``count`` records, round-robin over the partitions; the end offset reached per partition."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                                         "message.timeout.ms": 60_000})
    ends: dict[int, int] = {}
    failures: list[str] = []

    def report(err: object, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for i in range(start, start + count):
        producer.produce(TOPIC, value=f"r{i}".encode(), partition=i % PARTITIONS, on_delivery=report)
    assert producer.flush(60) == 0 and not failures, failures
    return ends


class Member:
    """One group member that commits synchronously what it consumed and remembers every commit
    the broker acknowledged."""

    def __init__(self, bootstrap: str, name: str) -> None:
        self.name = name
        self.consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "client.id": name, **CONSUMER})
        self.consumer.subscribe([TOPIC])
        self.consumed: dict[int, int] = {}  # partition -> next offset to commit
        self.failed_commits = 0

    def step(self, acked: dict[int, int]) -> None:
        for m in self.consumer.consume(num_messages=50, timeout=0.2):
            if m.error() is None:
                self.consumed[m.partition()] = m.offset() + 1
        owned = {tp.partition for tp in self.consumer.assignment()}
        todo = {p: o for p, o in self.consumed.items() if p in owned and o > acked.get(p, 0)}
        if not todo:
            return
        try:
            done = self.consumer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, p, o) for p, o in todo.items()],
                                        asynchronous=False)
        except confluent_kafka.KafkaException:
            self.failed_commits += 1  # retriable (rebalance, coordinator moving): committed again next step
            return
        for tp in done or ():
            if tp.error is None:
                acked[tp.partition] = max(acked.get(tp.partition, 0), tp.offset)


def _run_until(members: list[Member], acked: dict[int, int], ends: dict[int, int], what: str) -> float:
    """Step the members until every partition's acknowledged commit reaches ``ends``; seconds taken."""
    started = time.monotonic()
    while any(acked.get(p, 0) < end for p, end in ends.items()):
        assert time.monotonic() - started < DEADLINE_S, f"{what}: commits {acked}, wanted {ends}"
        for m in members:
            m.step(acked)
    return time.monotonic() - started


def _committed(bootstrap: str) -> dict[int, int]:
    """The group's committed offsets as the coordinator answers them (retried while it moves).

    Read by a consumer of the group that does not join it: the admin client's
    ListConsumerGroupOffsets crashes librdkafka (2.4-2.16) when the coordinator answers
    NOT_COORDINATOR (confluentinc/librdkafka#5040), which a moving coordinator does."""
    reader = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                                       "enable.auto.commit": False})
    started = time.monotonic()
    try:
        while True:
            try:
                tps = reader.committed([confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)],
                                       timeout=10)
                if any(tp.error is not None for tp in tps):  # e.g. the new coordinator still loading
                    raise confluent_kafka.KafkaException(next(tp.error for tp in tps if tp.error is not None))
                return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
            except confluent_kafka.KafkaException:
                assert time.monotonic() - started < DEADLINE_S, "the committed offsets could not be read"
                time.sleep(0.2)
    finally:
        reader.close()


def _coordinator(cluster: Cluster, via: int, group: str) -> FindCoordinatorResponse.Coordinator:
    """The group's coordinator as node ``via`` names it, once it names one (a node's metadata
    image may lag behind another's for a moment)."""
    started = time.monotonic()
    while (found := _find_coordinator(_address(cluster, via), group)).error_code != ErrorCode.NONE:
        assert found.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE, found
        assert time.monotonic() - started < DEADLINE_S, f"node {via} names no coordinator for {group}"
        time.sleep(0.1)
    return found


def test_committed_offsets_survive_the_coordinators_death(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, OVERRIDES) as cluster:
        members: list[Member] = []
        try:
            cluster.start()
            cluster.wait_ready()
            admin = admin_api.AdminClient({"bootstrap.servers": cluster.bootstrap})
            admin.create_topics([admin_api.NewTopic(TOPIC, PARTITIONS, 3)])[TOPIC].result(60)

            # 1. The first FindCoordinator finds no __consumer_offsets and has it created.
            first = _find_coordinator(_address(cluster, 1), PROBE_GROUP)
            assert first.error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE, first
            found = _coordinator(cluster, 1, PROBE_GROUP)
            assert found.node_id == _offsets_leader(admin, PROBE_GROUP)
            assert (found.host, found.port) == _address(cluster, found.node_id)
            for node_id in cluster.nodes:
                assert _coordinator(cluster, node_id, PROBE_GROUP).node_id == found.node_id
                expected = ErrorCode.NONE if node_id == found.node_id else ErrorCode.NOT_COORDINATOR
                code = _standalone_commit(_address(cluster, node_id), PROBE_GROUP)
                if node_id == found.node_id:
                    # The coordinator may still be loading the partition it was just elected for.
                    while code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
                        time.sleep(0.1)
                        code = _standalone_commit(_address(cluster, node_id), PROBE_GROUP)
                assert code == expected, (node_id, ErrorCode(code).name)

            # An acknowledged commit is a replicated one: with a follower of the group's partition
            # stopped, a commit waits until the ISR no longer counts it (or times out).
            controller = admin.list_topics(timeout=10).controller_id
            follower = next(n for n in sorted(cluster.nodes) if n not in (found.node_id, controller))
            coordinator_address = _address(cluster, found.node_id)
            cluster.pause(follower)
            try:
                started = time.monotonic()
                waited_code = ErrorCode(_standalone_commit(coordinator_address, PROBE_GROUP, 5))
                waited_s = time.monotonic() - started
                assert waited_code in (ErrorCode.NONE, ErrorCode.REQUEST_TIMED_OUT), waited_code.name
                assert waited_s >= ISR_WAIT_S_MIN, f"a commit was answered in {waited_s:.3f} s with a replica stopped"
                # A write the replica refuses (the ISR of 2 is below a min.insync.replicas of 3) is
                # COORDINATOR_NOT_AVAILABLE, and the coordinator forgets it: it reloads the partition.
                assert _until_not_loading(lambda: _standalone_commit(coordinator_address, PROBE_GROUP, 5)) == 0
                _set_offsets_min_isr(admin, "3")
                started = time.monotonic()
                while (code := _standalone_commit(coordinator_address, PROBE_GROUP, 5)) != ErrorCode.COORDINATOR_NOT_AVAILABLE:
                    assert code in (ErrorCode.NONE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS), ErrorCode(code).name
                    assert time.monotonic() - started < DEADLINE_S, "min.insync.replicas=3 never applied"
                    time.sleep(0.1)
                code = _until_not_loading(lambda: _standalone_commit(coordinator_address, PROBE_GROUP, 6))
                assert code == ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode(code).name
                assert _until_not_loading(lambda: _fetch_offset(coordinator_address, PROBE_GROUP)) == (0, 5)
                _set_offsets_min_isr(admin, None)
            finally:
                cluster.resume(follower)

            # 2. Two members consume and commit the first batch.
            ends = _produce(cluster.bootstrap, 0, BATCH)
            members = [Member(cluster.bootstrap, "member-a"), Member(cluster.bootstrap, "member-b")]
            acked: dict[int, int] = {}
            _run_until(members, acked, ends, "before the kill")
            before_kill = dict(acked)
            coordinator = int(_coordinator(cluster, 1, GROUP).node_id)
            assert coordinator == _offsets_leader(admin, GROUP)

            # 3. Kill the coordinator: every acknowledged commit is on the new one.
            killed_at = time.monotonic()
            cluster.kill(coordinator)
            assert _committed(cluster.bootstrap) == before_kill
            read_back_s = time.monotonic() - killed_at

            # 4. The same members go on, finding the new coordinator themselves.
            ends = _produce(cluster.bootstrap, BATCH, BATCH)
            after_s = _run_until(members, acked, ends, "after the kill")
            alive = next(n for n in sorted(cluster.nodes) if n != coordinator)
            new_coordinator = int(_coordinator(cluster, alive, GROUP).node_id)
            assert new_coordinator != coordinator and new_coordinator in cluster.nodes
            final = dict(acked)
            failed_commits = sum(m.failed_commits for m in members)
            for m in members:
                m.consumer.close()
            members = []

            # 5. A new member resumes exactly after the last acknowledged commit.
            assert _committed(cluster.bootstrap) == final
            tail_ends = _produce(cluster.bootstrap, 2 * BATCH, TAIL)
            resumed = Member(cluster.bootstrap, "member-c")
            members = [resumed]
            first_seen: dict[int, int] = {}
            started = time.monotonic()
            while len(first_seen) < PARTITIONS or any(resumed.consumed.get(p, 0) < e for p, e in tail_ends.items()):
                assert time.monotonic() - started < DEADLINE_S, f"resumed at {first_seen}, consumed {resumed.consumed}"
                for msg in resumed.consumer.consume(num_messages=50, timeout=0.2):
                    if msg.error() is None:
                        first_seen.setdefault(msg.partition(), msg.offset())
                        resumed.consumed[msg.partition()] = msg.offset() + 1
            assert first_seen == final, (first_seen, final)
            print(f"commit with a follower stopped answered in {waited_s:.2f} s ({waited_code.name}); "
                  f"coordinator {coordinator} killed -> {new_coordinator}; commits read back after "
                  f"{read_back_s:.2f} s; second batch consumed and committed in {after_s:.2f} s; "
                  f"failed commits (retried): {failed_commits}")
        except BaseException:
            print(f"node logs:\n{cluster.logs()}")
            raise
        finally:
            for m in members:
                m.consumer.close()
