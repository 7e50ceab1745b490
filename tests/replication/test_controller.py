"""Goal: the controller state machine follows Kafka's controller rules, one test per rule.

A ``Cluster`` drives one active ``QuorumController`` over a pretend metadata log: every result's
records are appended at the offset the controller expects and committed at once (unless a test
holds them back), and a standby controller replays the same log from scratch and must arrive at
the very image the active one built incrementally. The tests cover registration and broker
epochs, heartbeats (unfence when caught up, session expiry, controlled shutdown), CreateTopics
validation and rack-aware placement, DeleteTopics, CreatePartitions, a table of elections (ISR
first; unclean off and on; last replica standing), AlterPartition validation including KIP-903
broker epochs and an AlterPartition in flight during an election, reassignments, ElectLeaders,
IncrementalAlterConfigs, producer id blocks, resignation and determinism.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages.allocate_producer_ids import AllocateProducerIdsRequest
from protocol.messages.alter_partition import AlterPartitionRequest, AlterPartitionResponse
from protocol.messages.alter_partition_reassignments import AlterPartitionReassignmentsRequest
from protocol.messages.broker_heartbeat import BrokerHeartbeatRequest, BrokerHeartbeatResponse
from protocol.messages.broker_registration import BrokerRegistrationRequest, BrokerRegistrationResponse
from protocol.messages.create_partitions import CreatePartitionsRequest
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.delete_topics import DeleteTopicsRequest
from protocol.messages.elect_leaders import ElectLeadersRequest
from protocol.messages.incremental_alter_configs import IncrementalAlterConfigsRequest
from protocol.messages.list_partition_reassignments import ListPartitionReassignmentsRequest
from protocol.messages.unregister_broker import UnregisterBrokerRequest
from protocol.messages.update_features import UpdateFeaturesRequest
from replication.controller import (
    AnyTopicConfigs,
    ControllerConfig,
    ControllerResult,
    Election,
    QuorumController,
    partition_change,
)
from replication.metadata import PartitionRegistration
from replication.placement import UsableBroker, place_replicas, rack_alternated
from replication.records import (
    NO_LEADER,
    NO_LEADER_CHANGE,
    RECOVERED,
    RECOVERING,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    FeatureLevelRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    decode_record,
    encode_record,
)

CLUSTER_ID = "test-cluster"
SESSION_MS = 9000
R = TypeVar("R")


@dataclass
class Cluster:
    """An active controller, its log, a standby replaying the log, and a clock."""

    config: ControllerConfig = field(default_factory=lambda: ControllerConfig(cluster_id=CLUSTER_ID))
    seed: int = 7
    policy: Any = None
    now: int = 1_000
    log: list[MetadataRecord] = field(default_factory=list)
    committed: int = 0  # how many records of the log are committed
    epochs: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.c = QuorumController(self.config, rng=random.Random(self.seed), topic_configs=self.policy)
        self.standby = QuorumController(self.config, rng=random.Random(0))
        self.run(self.c.become_active(next_write_offset=0, now_ms=self.now))

    # --- the log ---

    def run(self, result: ControllerResult[R], *, commit: bool = True) -> R:
        """Append the result's records where the controller expects them; commit unless told not to."""
        base = len(self.log)
        if result.records:
            assert result.reply_after_offset == base + len(result.records) - 1
            assert self.c.next_write_offset == base + len(result.records)
        for r in result.records:  # what goes into the log must survive the codec
            assert decode_record(encode_record(r)) == r
        self.log += result.records
        if commit:
            self.commit()
        return result.response

    def commit(self) -> None:
        """Commit everything written so far; the standby must agree with the active controller."""
        base, records = self.committed, self.log[self.committed:]
        if not records:
            return
        self.committed = len(self.log)
        self.c.handle_commit(base_offset=base, records=records)
        self.standby.handle_commit(base_offset=base, records=records)
        assert self.standby.committed_image == self.c.committed_image == self.c.latest_image

    @property
    def image(self) -> Any:
        return self.c.latest_image

    def written(self, result: ControllerResult[Any]) -> list[MetadataRecord]:
        return list(result.records)

    # --- brokers ---

    def register(self, broker_id: int, *, rack: str | None = None, incarnation: int | None = None,
                 features: Sequence[tuple[str, int, int]] = (), previous_epoch: int = -1
                 ) -> BrokerRegistrationResponse:
        req = BrokerRegistrationRequest(
            broker_id=broker_id, cluster_id=CLUSTER_ID,
            incarnation_id=uuid.UUID(int=incarnation if incarnation is not None else broker_id),
            listeners=[BrokerRegistrationRequest.Listener("PLAINTEXT", f"b{broker_id}", 9092, 0)],
            features=[BrokerRegistrationRequest.Feature(n, lo, hi) for n, lo, hi in features], rack=rack,
            previous_broker_epoch=previous_epoch)
        resp = self.run(self.c.handle_broker_registration(req, now_ms=self.now))
        if resp.error_code == ErrorCode.NONE:
            self.epochs[broker_id] = resp.broker_epoch
        return resp

    def heartbeat(self, broker_id: int, *, want_fence: bool = False, want_shut_down: bool = False,
                  offset: int | None = None, epoch: int | None = None, commit: bool = True
                  ) -> BrokerHeartbeatResponse:
        req = BrokerHeartbeatRequest(
            broker_id=broker_id, broker_epoch=self.epochs[broker_id] if epoch is None else epoch,
            current_metadata_offset=len(self.log) - 1 if offset is None else offset,
            want_fence=want_fence, want_shut_down=want_shut_down)
        return self.run(self.c.handle_broker_heartbeat(req, now_ms=self.now), commit=commit)

    def start(self, racks: Mapping[int, str | None]) -> None:
        for b, rack in racks.items():
            self.register(b, rack=rack)
        for b in racks:
            assert not self.heartbeat(b).is_fenced

    def advance(self, ms: int) -> list[MetadataRecord]:
        self.now += ms
        result = self.c.tick(self.now)
        self.run(result)
        return list(result.records)

    def keep_alive(self, *brokers: int) -> None:
        for b in brokers:
            self.heartbeat(b)

    # --- topics ---

    def create(self, name: str, partitions: int = 1, rf: int = 3, *, version: int = 7,
               assignments: Mapping[int, Sequence[int]] | None = None,
               configs: Mapping[str, str | None] | None = None,
               validate_only: bool = False) -> CreateTopicsResponse.CreatableTopicResult:
        topic = CreateTopicsRequest.CreatableTopic(name=name, num_partitions=partitions, replication_factor=rf)
        if assignments is not None:
            topic.num_partitions, topic.replication_factor = -1, -1
            topic.assignments = [CreateTopicsRequest.CreatableReplicaAssignment(p, list(b))
                                 for p, b in assignments.items()]
        topic.configs = [CreateTopicsRequest.CreatableTopicConfig(k, v) for k, v in (configs or {}).items()]
        resp = self.run(self.c.handle_create_topics(
            CreateTopicsRequest(topics=[topic], validate_only=validate_only), version=version))
        assert len(resp.topics) == 1
        return resp.topics[0]

    def topic_id(self, name: str) -> uuid.UUID:
        t = self.image.topic(name)
        assert t is not None
        return t.topic_id

    def part(self, name: str, pid: int = 0) -> PartitionRegistration:
        p = self.image.partition(self.topic_id(name), pid)
        assert p is not None
        return p

    def alter_isr(self, sender: int, name: str, pid: int, isr: Sequence[int], *, version: int = 3,
                  epochs: Mapping[int, int] | None = None, leader_epoch: int | None = None,
                  partition_epoch: int | None = None, recovery: int = RECOVERED,
                  sender_epoch: int | None = None, commit: bool = True) -> AlterPartitionResponse:
        p = self.part(name, pid)
        data = AlterPartitionRequest.PartitionData(
            partition_index=pid, leader_epoch=p.leader_epoch if leader_epoch is None else leader_epoch,
            partition_epoch=p.partition_epoch if partition_epoch is None else partition_epoch,
            leader_recovery_state=recovery if version >= 1 else 0)
        if version >= 3:
            data.new_isr_with_epochs = [
                AlterPartitionRequest.BrokerState(b, (epochs or {}).get(b, self.epochs.get(b, -1))) for b in isr]
        else:
            data.new_isr = list(isr)
        topic = AlterPartitionRequest.TopicData(partitions=[data])
        if version >= 2:
            topic.topic_id = self.topic_id(name)
        else:
            topic.topic_name = name
        req = AlterPartitionRequest(broker_id=sender,
                                    broker_epoch=self.epochs[sender] if sender_epoch is None else sender_epoch,
                                    topics=[topic])
        return self.run(self.c.handle_alter_partition(req, version=version), commit=commit)


def alter_error(resp: AlterPartitionResponse) -> int:
    assert resp.error_code == ErrorCode.NONE, ErrorCode(resp.error_code)
    return resp.topics[0].partitions[0].error_code


def three(racks: Sequence[str | None] = (None, None, None), **config: Any) -> Cluster:
    cluster = Cluster(config=ControllerConfig(cluster_id=CLUSTER_ID, **config))
    cluster.start({i + 1: r for i, r in enumerate(racks)})
    return cluster


def roundtrip(msg: Message, versions: range) -> None:
    """A response the controller built must encode at every version of its API."""
    for v in versions:
        type(msg).decode(msg.encode(v), v)


# --- activation -------------------------------------------------------------------------------------


def test_an_empty_log_is_bootstrapped_with_the_metadata_version() -> None:
    c = QuorumController(ControllerConfig(cluster_id=CLUSTER_ID, eligible_leader_replicas_version=0),
                         rng=random.Random(1))
    result = c.become_active(next_write_offset=5, now_ms=0)
    assert result.records == (FeatureLevelRecord("metadata.version", 21),)
    assert result.reply_after_offset == 5 and c.next_write_offset == 6
    c.resign()
    c.handle_commit(base_offset=5, records=result.records)
    # A second activation over a bootstrapped log writes nothing more.
    assert c.become_active(next_write_offset=6, now_ms=0).records == ()


def test_a_new_cluster_starts_with_eligible_leader_replicas_on() -> None:
    """Kafka 4.1's default for a new cluster: eligible.leader.replicas.version 1; and with it the
    cluster-level min.insync.replicas in the log, from the controller's own setting."""
    c = QuorumController(ControllerConfig(cluster_id=CLUSTER_ID, min_insync_replicas=2), rng=random.Random(1))
    result = c.become_active(next_write_offset=0, now_ms=0)
    assert result.records == (FeatureLevelRecord("metadata.version", 21),
                              FeatureLevelRecord("eligible.leader.replicas.version", 1),
                              ConfigRecord(4, "", "min.insync.replicas", "2"))
    image = c.latest_image
    assert image.elr_enabled and image.cluster_config("min.insync.replicas") == "2"
    c.resign()
    c.handle_commit(base_offset=0, records=result.records)
    assert c.become_active(next_write_offset=3, now_ms=0).records == ()


def test_a_standby_answers_not_controller_to_everything() -> None:
    c = QuorumController(ControllerConfig(cluster_id=CLUSTER_ID), rng=random.Random(1))
    results: list[ControllerResult[Any]] = [
        c.handle_broker_registration(BrokerRegistrationRequest(broker_id=1, cluster_id=CLUSTER_ID), now_ms=0),
        c.handle_broker_heartbeat(BrokerHeartbeatRequest(broker_id=1), now_ms=0),
        c.handle_alter_partition(AlterPartitionRequest(broker_id=1), version=3),
        c.handle_alter_partition_reassignments(AlterPartitionReassignmentsRequest()),
        c.handle_list_partition_reassignments(ListPartitionReassignmentsRequest()),
        c.handle_allocate_producer_ids(AllocateProducerIdsRequest()),
        c.handle_unregister_broker(UnregisterBrokerRequest(broker_id=1)),
        c.handle_elect_leaders(ElectLeadersRequest(topic_partitions=None), version=2),
    ]
    for r in results:
        assert r.records == () and r.reply_after_offset == -1
        assert r.response.error_code == ErrorCode.NOT_CONTROLLER
    ct = c.handle_create_topics(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(name="t")]),
                                version=7)
    assert [t.error_code for t in ct.response.topics] == [ErrorCode.NOT_CONTROLLER]
    dt = c.handle_delete_topics(DeleteTopicsRequest(topic_names=["t"]), version=5)
    assert [t.error_code for t in dt.response.responses] == [ErrorCode.NOT_CONTROLLER]
    cp = c.handle_create_partitions(CreatePartitionsRequest(topics=[
        CreatePartitionsRequest.CreatePartitionsTopic(name="t", count=2)]))
    assert [t.error_code for t in cp.response.results] == [ErrorCode.NOT_CONTROLLER]
    ia = c.handle_incremental_alter_configs(IncrementalAlterConfigsRequest(resources=[
        IncrementalAlterConfigsRequest.AlterConfigsResource(resource_type=2, resource_name="t")]))
    assert [t.error_code for t in ia.response.responses] == [ErrorCode.NOT_CONTROLLER]
    assert c.tick(10**9).records == () and c.next_deadline_ms() is None


# --- registration and heartbeats --------------------------------------------------------------------


def test_the_broker_epoch_is_the_offset_of_the_registration_record() -> None:
    cluster = Cluster()
    first = cluster.register(1, rack="a")
    assert first.error_code == ErrorCode.NONE
    assert first.broker_epoch == len(cluster.log) - 1
    assert isinstance(cluster.log[first.broker_epoch], RegisterBrokerRecord)
    second = cluster.register(2)
    assert second.broker_epoch == len(cluster.log) - 1 == first.broker_epoch + 1
    reg = cluster.image.broker(1)
    assert reg.fenced and reg.rack == "a" and reg.endpoints[0].host == "b1"


def test_a_registered_broker_is_unfenced_once_caught_up_with_its_registration() -> None:
    cluster = Cluster()
    epoch = cluster.register(1).broker_epoch
    behind = cluster.heartbeat(1, offset=epoch - 1)
    assert (behind.is_caught_up, behind.is_fenced) == (False, True)
    assert cluster.image.broker(1).fenced
    asked_to_stay_fenced = cluster.heartbeat(1, offset=epoch, want_fence=True)
    assert (asked_to_stay_fenced.is_caught_up, asked_to_stay_fenced.is_fenced) == (True, True)
    caught_up = cluster.heartbeat(1, offset=epoch)
    assert (caught_up.is_caught_up, caught_up.is_fenced, caught_up.should_shut_down) == (True, False, False)
    assert cluster.log[-1] == BrokerRegistrationChangeRecord(1, epoch, fenced=-1)
    assert cluster.image.is_active(1)


def test_reregistering_the_same_incarnation_keeps_the_epoch_and_state() -> None:
    cluster = three()
    before = cluster.epochs[2]
    again = cluster.register(2, rack="moved")
    assert again.broker_epoch == before
    reg = cluster.image.broker(2)
    assert not reg.fenced and reg.rack == "moved" and reg.registration_offset == len(cluster.log) - 1


def test_a_second_process_with_the_same_id_is_refused_while_the_first_is_alive() -> None:
    cluster = three()
    dup = cluster.register(2, incarnation=99)
    assert dup.error_code == ErrorCode.DUPLICATE_BROKER_REGISTRATION
    assert cluster.image.broker(2).incarnation_id == uuid.UUID(int=2)


def test_a_new_incarnation_after_the_session_expired_gets_a_new_epoch_and_leaves_the_isrs() -> None:
    cluster = three()
    cluster.create("t", partitions=3, rf=3)
    cluster.now += SESSION_MS + 1  # broker 2's session lapses; the controller has not ticked yet
    cluster.keep_alive(1, 3)
    old_epoch = cluster.epochs[2]
    resp = cluster.register(2, incarnation=99)
    assert resp.error_code == ErrorCode.NONE and resp.broker_epoch > old_epoch
    assert cluster.log[resp.broker_epoch] == cluster.log[-1]  # the epoch is the record's offset
    reg = cluster.image.broker(2)
    assert reg.fenced and reg.incarnation_id == uuid.UUID(int=99)
    for pid in range(3):
        p = cluster.part("t", pid)
        assert 2 not in p.isr and p.leader != 2
    # The old incarnation's heartbeats now carry a stale epoch.
    stale = cluster.heartbeat(2, epoch=old_epoch)
    assert stale.error_code == ErrorCode.STALE_BROKER_EPOCH


def test_registration_refusals() -> None:
    cluster = Cluster()
    wrong = BrokerRegistrationRequest(broker_id=1, cluster_id="other", incarnation_id=uuid.UUID(int=1))
    assert cluster.run(cluster.c.handle_broker_registration(wrong, now_ms=0)).error_code == \
        ErrorCode.INCONSISTENT_CLUSTER_ID
    too_old = cluster.register(1, features=[("metadata.version", 1, 20)])
    assert too_old.error_code == ErrorCode.UNSUPPORTED_VERSION
    fine = cluster.register(1, features=[("metadata.version", 1, 21), ("unknown.feature", 0, 3)])
    assert fine.error_code == ErrorCode.NONE


def test_heartbeats_with_a_stale_or_unknown_epoch_are_refused() -> None:
    cluster = three()
    assert cluster.heartbeat(1, epoch=cluster.epochs[1] - 1).error_code == ErrorCode.STALE_BROKER_EPOCH
    cluster.epochs[9] = 0
    assert cluster.heartbeat(9).error_code == ErrorCode.STALE_BROKER_EPOCH


def test_an_expired_session_fences_the_broker_and_moves_its_leadership() -> None:
    cluster = three()
    cluster.create("t", partitions=3, rf=3)
    led_by_2 = [pid for pid in range(3) if cluster.part("t", pid).leader == 2]
    assert led_by_2
    before = {pid: cluster.part("t", pid) for pid in range(3)}
    assert cluster.c.next_deadline_ms() == cluster.now + SESSION_MS + 1
    cluster.now += SESSION_MS
    cluster.keep_alive(1, 3)
    assert cluster.advance(0) == []  # exactly at the timeout the session is still valid
    records = cluster.advance(1)
    assert isinstance(records[-1], BrokerRegistrationChangeRecord) and records[-1].fenced == 1
    assert cluster.image.broker(2).fenced
    for pid in range(3):
        p, old = cluster.part("t", pid), before[pid]
        assert 2 not in p.isr and p.leader != 2 and p.leader in p.isr
        assert p.partition_epoch == old.partition_epoch + 1
        # Only a leader change bumps the leader epoch.
        assert p.leader_epoch == old.leader_epoch + (1 if pid in led_by_2 else 0)
    # Brokers 1 and 3 last heartbeat 1 ms ago: their sessions expire a session later.
    assert cluster.c.next_deadline_ms() == cluster.now - 1 + SESSION_MS + 1


def test_a_broker_asking_to_be_fenced_is_fenced_at_once() -> None:
    cluster = three()
    cluster.create("t", partitions=1, rf=3, assignments={0: [2, 1, 3]})
    resp = cluster.heartbeat(2, want_fence=True)
    assert resp.is_fenced and not resp.should_shut_down
    assert cluster.image.broker(2).fenced
    p = cluster.part("t")
    assert p.leader == 1 and p.isr == (1, 3)


def test_controlled_shutdown_moves_leadership_then_waits_for_the_others_to_catch_up() -> None:
    cluster = three()
    cluster.create("t", partitions=2, rf=2, assignments={0: [2, 1], 1: [3, 2]})
    start = len(cluster.log)
    first = cluster.heartbeat(2, want_shut_down=True)
    assert (first.is_fenced, first.should_shut_down) == (False, False)
    reg = cluster.image.broker(2)
    assert reg.in_controlled_shutdown and not reg.fenced and not reg.is_active
    assert cluster.log[start] == BrokerRegistrationChangeRecord(2, cluster.epochs[2], in_controlled_shutdown=1)
    assert cluster.part("t", 0).leader == 1 and cluster.part("t", 0).isr == (1,)
    assert cluster.part("t", 1).leader == 3 and cluster.part("t", 1).isr == (3,)
    shutdown_offset = len(cluster.log) - 1
    # Broker 3 has not seen the leadership changes yet: broker 2 must wait.
    cluster.heartbeat(1, offset=shutdown_offset)
    cluster.heartbeat(3, offset=shutdown_offset - 1)
    waiting = cluster.heartbeat(2, want_shut_down=True)
    assert (waiting.is_fenced, waiting.should_shut_down) == (False, False)
    cluster.heartbeat(3, offset=shutdown_offset)
    done = cluster.heartbeat(2, want_shut_down=True)
    assert (done.is_fenced, done.should_shut_down) == (True, True)
    assert cluster.image.broker(2).fenced


def test_a_broker_that_leads_nothing_shuts_down_at_once() -> None:
    cluster = three()
    cluster.create("t", partitions=1, rf=2, assignments={0: [1, 3]})
    resp = cluster.heartbeat(2, want_shut_down=True)
    assert (resp.is_fenced, resp.should_shut_down) == (True, True)


def test_unregister_broker() -> None:
    cluster = three()
    cluster.create("t", partitions=1, rf=3, assignments={0: [3, 1, 2]})
    resp = cluster.run(cluster.c.handle_unregister_broker(UnregisterBrokerRequest(broker_id=3)))
    assert resp.error_code == ErrorCode.NONE
    assert cluster.image.broker(3) is None and cluster.part("t").leader == 1 and 3 not in cluster.part("t").isr
    missing = cluster.run(cluster.c.handle_unregister_broker(UnregisterBrokerRequest(broker_id=3)))
    assert missing.error_code == ErrorCode.BROKER_ID_NOT_REGISTERED


# --- CreateTopics ------------------------------------------------------------------------------------


def test_create_topics_writes_topic_configs_and_partitions_and_answers_after_commit() -> None:
    cluster = three(("a", "b", "c"))
    start = len(cluster.log)
    topic = CreateTopicsRequest.CreatableTopic(name="orders", num_partitions=3, replication_factor=2, configs=[
        CreateTopicsRequest.CreatableTopicConfig("retention.ms", "1000")])
    result = cluster.c.handle_create_topics(CreateTopicsRequest(topics=[topic]), version=7)
    assert result.reply_after_offset == start + 4  # TopicRecord, ConfigRecord, three PartitionRecords
    cluster.run(result)
    t = result.response.topics[0]
    assert t.error_code == ErrorCode.NONE and t.num_partitions == 3 and t.replication_factor == 2
    assert [(c.name, c.value) for c in t.configs or []] == [("retention.ms", "1000")]
    records = cluster.log[start:]
    assert records[0] == TopicRecord("orders", t.topic_id)
    assert records[1] == ConfigRecord(2, "orders", "retention.ms", "1000")
    for pid, r in enumerate(records[2:]):
        assert isinstance(r, PartitionRecord) and r.partition_id == pid
        assert r.isr == r.replicas and r.leader == r.replicas[0] and r.leader_epoch == r.partition_epoch == 0
    assert t.topic_id.version == 4 and cluster.image.topic_by_id(t.topic_id).name == "orders"
    roundtrip(result.response, range(2, 8))


def test_create_topics_defaults_and_older_versions() -> None:
    cluster = three(num_partitions=4, default_replication_factor=3)
    t = cluster.create("d", partitions=-1, rf=-1, version=4)
    assert t.error_code == ErrorCode.NONE
    assert t.num_partitions == -1 and t.configs == []  # v4 has no such fields: left at defaults
    topic = cluster.image.topic("d")
    assert topic.partition_count == 4 and all(len(p.replicas) == 3 for p in topic.partitions.values())


@pytest.mark.parametrize("kwargs, error", [
    (dict(name="bad name"), ErrorCode.INVALID_TOPIC_EXCEPTION),
    (dict(name=""), ErrorCode.INVALID_TOPIC_EXCEPTION),
    (dict(name="x" * 250), ErrorCode.INVALID_TOPIC_EXCEPTION),
    (dict(name="exists"), ErrorCode.TOPIC_ALREADY_EXISTS),
    (dict(name="col_lide"), ErrorCode.INVALID_TOPIC_EXCEPTION),
    (dict(rf=0), ErrorCode.INVALID_REPLICATION_FACTOR),
    (dict(rf=-2), ErrorCode.INVALID_REPLICATION_FACTOR),
    (dict(rf=4), ErrorCode.INVALID_REPLICATION_FACTOR),
    (dict(partitions=0), ErrorCode.INVALID_PARTITIONS),
    (dict(partitions=-5), ErrorCode.INVALID_PARTITIONS),
    (dict(partitions=20_000), ErrorCode.INVALID_PARTITIONS),
    (dict(configs={"retention.ms": None}), ErrorCode.INVALID_CONFIG),
    (dict(assignments={0: [1, 2], 2: [2, 3]}), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # gap
    (dict(assignments={0: [1, 9]}), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # unregistered broker
    (dict(assignments={0: [1, 1]}), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # broker twice
    (dict(assignments={0: []}), ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    (dict(assignments={0: [1, 2], 1: [3]}), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # inconsistent RF
    (dict(assignments={0: [4]}), ErrorCode.INVALID_REPLICA_ASSIGNMENT),  # only a fenced broker
], ids=repr)
def test_create_topics_refusals(kwargs: dict[str, Any], error: ErrorCode) -> None:
    cluster = three()
    cluster.register(4)  # registered, never unfenced
    assert cluster.create("exists", rf=1).error_code == ErrorCode.NONE
    assert cluster.create("col.lide", rf=1).error_code == ErrorCode.NONE
    assignments = kwargs.pop("assignments", None)
    before = len(cluster.log)
    result = cluster.create(**{"name": "new", **kwargs}, assignments=assignments)
    assert result.error_code == error, result.error_message
    assert result.error_message
    assert len(cluster.log) == before


def test_create_topics_manual_assignment_with_mismatched_fields_and_duplicates() -> None:
    cluster = three()
    topic = CreateTopicsRequest.CreatableTopic(name="m", num_partitions=1, replication_factor=-1, assignments=[
        CreateTopicsRequest.CreatableReplicaAssignment(0, [1])])
    resp = cluster.run(cluster.c.handle_create_topics(CreateTopicsRequest(topics=[topic]), version=7))
    assert resp.topics[0].error_code == ErrorCode.INVALID_REQUEST
    topic.num_partitions, topic.replication_factor = -1, 2
    resp = cluster.run(cluster.c.handle_create_topics(CreateTopicsRequest(topics=[topic]), version=7))
    assert resp.topics[0].error_code == ErrorCode.INVALID_REQUEST
    twice = CreateTopicsRequest.CreatableTopic(name="m", num_partitions=1, replication_factor=1,
                                               assignments=[CreateTopicsRequest.CreatableReplicaAssignment(0, [1]),
                                                            CreateTopicsRequest.CreatableReplicaAssignment(0, [2])])
    twice.num_partitions, twice.replication_factor = -1, -1
    resp = cluster.run(cluster.c.handle_create_topics(CreateTopicsRequest(topics=[twice]), version=7))
    assert resp.topics[0].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    good = cluster.create("m", assignments={0: [3, 1], 1: [1, 2]})
    assert good.error_code == ErrorCode.NONE
    assert cluster.part("m", 0).replicas == (3, 1) and cluster.part("m", 0).leader == 3


def test_a_request_naming_a_topic_twice_creates_neither_and_collisions_within_a_request() -> None:
    cluster = three()
    req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(name="d", num_partitions=1,
                                                                         replication_factor=1)] * 2 + [
        CreateTopicsRequest.CreatableTopic(name="x.y", num_partitions=1, replication_factor=1),
        CreateTopicsRequest.CreatableTopic(name="x_y", num_partitions=1, replication_factor=1)])
    resp = cluster.run(cluster.c.handle_create_topics(req, version=7))
    assert [t.error_code for t in resp.topics] == [ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_REQUEST,
                                                  ErrorCode.NONE, ErrorCode.INVALID_TOPIC_EXCEPTION]
    assert cluster.image.topic("d") is None and cluster.image.topic("x_y") is None


def test_validate_only_writes_nothing() -> None:
    cluster = three()
    before = len(cluster.log)
    result = cluster.create("v", partitions=2, rf=2, validate_only=True)
    assert result.error_code == ErrorCode.NONE and result.num_partitions == 2
    assert len(cluster.log) == before and cluster.image.topic("v") is None


class StrictPolicy(AnyTopicConfigs):
    def check(self, configs: Mapping[str, str]) -> tuple[str, str] | None:
        for k, v in configs.items():
            if k != "retention.ms" or not v.isdigit():
                return k, f"bad config {k}={v}"
        return None

    def normalise(self, key: str, value: str) -> str:
        return str(int(value))


def test_topic_configs_are_checked_and_normalised_by_the_policy() -> None:
    cluster = Cluster(policy=StrictPolicy())
    cluster.start({1: None})
    bad = cluster.create("p", rf=1, configs={"retention.ms": "soon"})
    assert bad.error_code == ErrorCode.INVALID_CONFIG and "retention.ms" in (bad.error_message or "")
    good = cluster.create("p", rf=1, configs={"retention.ms": "0100"})
    assert good.error_code == ErrorCode.NONE
    assert dict(cluster.image.topic_configs("p")) == {"retention.ms": "100"}


# --- placement ---------------------------------------------------------------------------------------


def test_rack_aware_placement_spreads_replicas_over_racks_and_leaders_over_brokers() -> None:
    racks = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
    brokers = [UsableBroker(b, r) for b, r in racks.items()]
    assert [b.broker_id for b in rack_alternated(brokers)] == [1, 3, 5, 2, 4, 6]
    for seed in range(20):
        placed = place_replicas(brokers, partitions=12, replication_factor=3, rng=random.Random(seed))
        for replicas in placed:
            assert len(set(replicas)) == 3
            assert {racks[b] for b in replicas} == {"a", "b", "c"}  # one replica per rack
        leaders = Counter(r[0] for r in placed)
        assert sorted(leaders.values()) == [2] * 6  # every broker leads the same number
        replicas_per_broker = Counter(b for r in placed for b in r)
        assert max(replicas_per_broker.values()) - min(replicas_per_broker.values()) <= 2


def test_placement_with_more_replicas_than_racks_and_without_racks() -> None:
    racks = {1: "a", 2: "a", 3: "a", 4: "b"}
    placed = place_replicas([UsableBroker(b, r) for b, r in racks.items()], partitions=8, replication_factor=3,
                            start=0, shift=0)
    for replicas in placed:
        assert len(set(replicas)) == 3 and {racks[b] for b in replicas} == {"a", "b"}
    flat = place_replicas([UsableBroker(b) for b in range(5)], partitions=10, replication_factor=2,
                          rng=random.Random(3))
    assert Counter(r[0] for r in flat) == {b: 2 for b in range(5)}
    # Added partitions continue the leader rotation.
    more = place_replicas([UsableBroker(b) for b in range(5)], partitions=5, replication_factor=2,
                          start_partition=10, start=0, shift=0)
    assert sorted(r[0] for r in more) == [0, 1, 2, 3, 4]
    assert place_replicas([UsableBroker(7)], partitions=2, replication_factor=1, start=0, shift=0) == [(7,), (7,)]


def test_create_topics_places_on_unfenced_brokers_across_racks() -> None:
    cluster = three(("a", "b", "c"))
    cluster.register(4, rack="a")  # fenced: never chosen
    assert cluster.create("r", partitions=6, rf=3).error_code == ErrorCode.NONE
    topic = cluster.image.topic("r")
    for p in topic.partitions.values():
        assert sorted(p.replicas) == [1, 2, 3]
    assert Counter(p.leader for p in topic.partitions.values()) == {1: 2, 2: 2, 3: 2}
    too_many = cluster.create("r4", partitions=1, rf=4)
    assert too_many.error_code == ErrorCode.INVALID_REPLICATION_FACTOR


# --- DeleteTopics and CreatePartitions ----------------------------------------------------------------


def test_delete_topics_by_name_and_by_id() -> None:
    cluster = three()
    cluster.create("a", rf=1)
    cluster.create("b", rf=1)
    a_id, b_id = cluster.topic_id("a"), cluster.topic_id("b")
    resp = cluster.run(cluster.c.handle_delete_topics(DeleteTopicsRequest(topic_names=["a", "a", "zz"]), version=5))
    assert [r.error_code for r in resp.responses] == [ErrorCode.NONE, ErrorCode.INVALID_REQUEST,
                                                     ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    assert cluster.log[-1] == RemoveTopicRecord(a_id)
    assert cluster.image.topic("a") is None
    v6 = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=b_id),
                                     DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=uuid.UUID(int=5)),
                                     DeleteTopicsRequest.DeleteTopicState(name="b", topic_id=b_id),
                                     DeleteTopicsRequest.DeleteTopicState(name=None)])
    resp = cluster.run(cluster.c.handle_delete_topics(v6, version=6))
    assert [r.error_code for r in resp.responses] == [ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_ID,
                                                     ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_REQUEST]
    assert resp.responses[0].name == "b" and cluster.image.topic("b") is None
    roundtrip(resp, range(6, 7))


def test_topic_deletion_can_be_disabled() -> None:
    cluster = three(delete_topic_enable=False)
    cluster.create("a", rf=1)
    resp = cluster.run(cluster.c.handle_delete_topics(DeleteTopicsRequest(topic_names=["a"]), version=5))
    assert resp.responses[0].error_code == ErrorCode.TOPIC_DELETION_DISABLED
    assert cluster.image.topic("a") is not None


def test_create_partitions() -> None:
    cluster = three()
    cluster.create("t", partitions=2, rf=2)

    def grow(count: int, assignments: list[list[int]] | None = None, validate_only: bool = False,
             name: str = "t") -> tuple[int, str | None]:
        req = CreatePartitionsRequest(validate_only=validate_only, topics=[
            CreatePartitionsRequest.CreatePartitionsTopic(
                name=name, count=count,
                assignments=None if assignments is None else [
                    CreatePartitionsRequest.CreatePartitionsAssignment(a) for a in assignments])])
        r = cluster.run(cluster.c.handle_create_partitions(req)).results[0]
        return r.error_code, r.error_message

    assert grow(2)[0] == ErrorCode.INVALID_PARTITIONS
    assert grow(1)[0] == ErrorCode.INVALID_PARTITIONS
    assert grow(3, name="nope")[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert grow(4, [[1, 2]])[0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT  # one assignment for two partitions
    assert grow(3, [[1]])[0] == ErrorCode.INVALID_REPLICA_ASSIGNMENT  # wrong replication factor
    assert grow(3, validate_only=True)[0] == ErrorCode.NONE
    assert cluster.image.topic("t").partition_count == 2
    assert grow(3, [[3, 1]]) == (ErrorCode.NONE, None)
    assert cluster.part("t", 2).replicas == (3, 1) and cluster.part("t", 2).leader == 3
    assert grow(5)[0] == ErrorCode.NONE
    topic = cluster.image.topic("t")
    assert topic.partition_count == 5 and all(len(p.replicas) == 2 for p in topic.partitions.values())


# --- elections ---------------------------------------------------------------------------------------

T = uuid.UUID(int=77)


@pytest.mark.parametrize("case, isr, leader, alive, election, expect_leader, expect_isr, recovering", [
    ("the leader goes: the first ISR member in replica order", (1, 2, 3), 1, {2, 3}, Election.ONLINE, 2, (2, 3),
     False),
    ("an out-of-sync replica is skipped even when first", (1, 3), 1, {2, 3}, Election.ONLINE, 3, (3,), False),
    ("no ISR member left, unclean off: leaderless, ISR keeps the last", (1,), 1, {2, 3}, Election.ONLINE,
     NO_LEADER, None, False),
    ("no ISR member left, unclean on: an out-of-sync replica", (1,), 1, {2, 3}, Election.UNCLEAN, 2, (2,), True),
    ("unclean never picks a dead replica", (1,), 1, {3}, Election.UNCLEAN, 3, (3,), True),
    ("unclean with nobody alive: leaderless", (1,), 1, set(), Election.UNCLEAN, NO_LEADER, None, False),
    ("the last replica standing comes back and leads", (1,), NO_LEADER, {1}, Election.ONLINE, 1, None, False),
    ("an out-of-sync replica does not lead a leaderless partition", (1,), NO_LEADER, {2, 3}, Election.ONLINE,
     NO_LEADER_CHANGE, None, False),
    ("a qualifying leader is kept", (1, 2, 3), 2, {1, 2, 3}, Election.ONLINE, NO_LEADER_CHANGE, None, False),
    ("preferred: the first replica takes over", (1, 2, 3), 2, {1, 2, 3}, Election.PREFERRED, 1, None, False),
    ("preferred out of the ISR: the leader stays", (2, 3), 2, {1, 2, 3}, Election.PREFERRED, NO_LEADER_CHANGE,
     None, False),
], ids=lambda x: x if isinstance(x, str) else None)
def test_election_table(case: str, isr: tuple[int, ...], leader: int, alive: set[int], election: Election,
                        expect_leader: int, expect_isr: tuple[int, ...] | None, recovering: bool) -> None:
    part = PartitionRegistration(replicas=(1, 2, 3), isr=isr, leader=leader, leader_epoch=4, partition_epoch=9)
    # The ISR the controller asks for leaves out dead brokers, but never becomes empty.
    target = [r for r in isr if r in alive]
    change = partition_change(part, topic_id=T, partition_id=0, acceptable=alive.__contains__, election=election,
                              target_isr=target)
    if expect_leader == NO_LEADER_CHANGE and expect_isr is None:
        assert change is None
        return
    assert change is not None
    assert change.leader == expect_leader
    after = part.merge(change)
    assert change.isr == expect_isr
    assert after.isr == (expect_isr if expect_isr is not None else isr)
    assert after.isr  # never empty
    assert after.leader_recovery_state == (RECOVERING if recovering else RECOVERED)
    assert after.leader_epoch == 5 and after.partition_epoch == 10
    if after.leader != NO_LEADER and not recovering:
        assert after.leader in after.isr  # a clean leader is always in sync


def test_a_broker_in_controlled_shutdown_never_becomes_leader() -> None:
    part = PartitionRegistration(replicas=(1, 2), isr=(1, 2), leader=1)
    shutting_down = {2}
    change = partition_change(part, topic_id=T, partition_id=0, election=Election.ONLINE, target_isr=[2],
                              acceptable=lambda b: b not in shutting_down and b != 1)
    assert change is not None and change.leader == NO_LEADER and change.isr == (2,)


def test_last_replica_standing_through_the_controller() -> None:
    """Without ELR (Kafka 3.9's rule) the last ISR member stays in the ISR and leads again."""
    cluster = three(eligible_leader_replicas_version=0)
    cluster.create("t", assignments={0: [1, 2]})
    cluster.heartbeat(2, want_fence=True)  # broker 2 goes: ISR [1]
    assert cluster.part("t").isr == (1,)
    cluster.heartbeat(1, want_fence=True)  # the last ISR member goes
    p = cluster.part("t")
    assert (p.leader, p.isr, p.leader_epoch) == (NO_LEADER, (1,), 1)
    cluster.heartbeat(2)  # the out-of-sync replica comes back: no unclean election
    assert not cluster.image.broker(2).fenced
    assert cluster.part("t").leader == NO_LEADER
    cluster.heartbeat(1)  # the last ISR member comes back and leads again
    p = cluster.part("t")
    assert (p.leader, p.isr, p.leader_epoch) == (1, (1,), 2)


def test_unclean_election_by_topic_config() -> None:
    cluster = three()
    cluster.create("u", assignments={0: [1, 2]}, configs={"unclean.leader.election.enable": "true"})
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(2)  # back, but out of sync
    cluster.heartbeat(1, want_fence=True)
    p = cluster.part("u")
    assert (p.leader, p.isr, p.leader_recovery_state) == (2, (2,), RECOVERING)
    # While recovering the ISR may not grow; the leader says when it has recovered.
    cluster.heartbeat(1)
    assert alter_error(cluster.alter_isr(2, "u", 0, [2, 1], recovery=RECOVERING)) == ErrorCode.INVALID_REQUEST
    assert alter_error(cluster.alter_isr(2, "u", 0, [2], recovery=RECOVERED)) == ErrorCode.NONE
    assert cluster.part("u").leader_recovery_state == RECOVERED
    assert alter_error(cluster.alter_isr(2, "u", 0, [2], recovery=RECOVERING)) == ErrorCode.INVALID_REQUEST


def test_enabling_unclean_election_elects_leaderless_partitions() -> None:
    cluster = three()
    cluster.create("u", assignments={0: [1, 2]})
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(2)
    cluster.heartbeat(1, want_fence=True)
    assert cluster.part("u").leader == NO_LEADER
    resp = cluster.run(cluster.c.handle_incremental_alter_configs(IncrementalAlterConfigsRequest(resources=[
        IncrementalAlterConfigsRequest.AlterConfigsResource(resource_type=2, resource_name="u", configs=[
            IncrementalAlterConfigsRequest.AlterableConfig("unclean.leader.election.enable", 0, "true")])])))
    assert resp.responses[0].error_code == ErrorCode.NONE
    p = cluster.part("u")
    assert (p.leader, p.isr) == (2, (2,))


def test_unclean_election_from_the_broker_config() -> None:
    cluster = three(unclean_leader_election_enable=True)
    cluster.create("u", assignments={0: [1, 2]})
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(2)
    cluster.heartbeat(1, want_fence=True)
    assert cluster.part("u").leader == 2


# --- eligible leader replicas (KIP-966) ---------------------------------------------------------------


ELR_CASES = [
    # case, isr, elr, last known, leader, target ISR, alive, election, min ISR, unclean shutdown,
    # -> leader (NO_LEADER_CHANGE: unchanged), ISR, ELR, last known (None: unchanged), recovering
    ("below the minimum the member leaving the ISR enters the ELR", (1, 2, 3), (), (), 1, (1, 2), {1, 2, 3},
     Election.ONLINE, 3, (), NO_LEADER_CHANGE, (1, 2), (3,), None, False),
    ("one that left at the minimum stays out: the HW moved on without it", (1, 2), (), (), 1, (1,), {1, 2, 3},
     Election.ONLINE, 2, (), NO_LEADER_CHANGE, (1,), (2,), None, False),
    ("back at the minimum the ELR is cleared", (1,), (2, 3), (), 1, (1, 2), {1, 2, 3},
     Election.ONLINE, 2, (), NO_LEADER_CHANGE, (1, 2), (), None, False),
    ("a member rejoining below the minimum leaves the ELR", (1,), (2, 3), (), 1, (1, 2), {1, 2, 3},
     Election.ONLINE, 3, (), NO_LEADER_CHANGE, (1, 2), (3,), None, False),
    ("the ISR's last member goes: an acceptable ELR member leads and is the ISR", (1,), (2, 3), (), 1, (),
     {3}, Election.ONLINE, 2, (), 3, (3,), (1, 2), None, False),
    ("no acceptable ELR member: leaderless, the ISR empty, the last leader remembered", (1,), (2, 3), (), 1, (),
     set(), Election.ONLINE, 2, (), NO_LEADER, (), (1, 2, 3), (1,), False),
    ("a replica back from an unclean shutdown never joins the ELR", (1,), (3,), (), 1, (), {3},
     Election.ONLINE, 2, (1,), 3, (3,), (), None, False),
    ("the minimum is capped by the replica count", (1, 2, 3), (), (), 1, (1, 2), {1, 2, 3},
     Election.ONLINE, 5, (), NO_LEADER_CHANGE, (1, 2), (3,), None, False),
    ("ISR and ELR empty: the last known leader leads, as an unclean election", (), (), (1,), NO_LEADER, (),
     {1, 2}, Election.ONLINE, 2, (), 1, (1,), None, (), True),
    ("a fenced last known leader is not elected", (), (), (1,), NO_LEADER, (), {2, 3}, Election.ONLINE, 2, (),
     NO_LEADER_CHANGE, None, None, None, False),
    ("unclean on: an alive ELR member before an out-of-sync replica", (1,), (2,), (), 1, (), {2, 3},
     Election.UNCLEAN, 2, (), 2, (2,), (1,), None, False),
    ("unclean on, no acceptable ISR or ELR member: an out-of-sync replica, ELR cleared", (1,), (2,), (), 1, (),
     {3}, Election.UNCLEAN, 2, (), 3, (3,), (), None, True),
    ("a new leader clears the last known leader", (), (2,), (1,), NO_LEADER, (), {2}, Election.ONLINE, 2, (),
     2, (2,), (), (), False),
    ("preferred: an ELR member may lead a partition with an empty ISR", (), (1, 3), (2,), NO_LEADER, (),
     {1, 2, 3}, Election.PREFERRED, 2, (), 1, (1,), (3,), (), False),
]


@pytest.mark.parametrize(
    "case, isr, elr, last_known, leader, target, alive, election, min_isr, unclean_shutdown, "
    "expect_leader, expect_isr, expect_elr, expect_last_known, recovering",
    ELR_CASES, ids=[c[0] for c in ELR_CASES])
def test_elr_election_table(case: str, isr: tuple[int, ...], elr: tuple[int, ...], last_known: tuple[int, ...],
                            leader: int, target: tuple[int, ...], alive: set[int], election: Election, min_isr: int,
                            unclean_shutdown: tuple[int, ...], expect_leader: int,
                            expect_isr: tuple[int, ...] | None, expect_elr: tuple[int, ...] | None,
                            expect_last_known: tuple[int, ...] | None, recovering: bool) -> None:
    part = PartitionRegistration(replicas=(1, 2, 3), isr=isr, leader=leader, leader_epoch=4, partition_epoch=9,
                                 elr=elr, last_known_elr=last_known)
    change = partition_change(part, topic_id=T, partition_id=0, acceptable=alive.__contains__, election=election,
                              target_isr=target, elr=True, min_insync_replicas=min_isr,
                              unclean_shutdown=unclean_shutdown)
    if expect_leader == NO_LEADER_CHANGE and expect_isr is None and expect_elr is None:
        assert change is None
        return
    assert change is not None
    assert (change.leader, change.isr, change.elr, change.last_known_elr) == (
        expect_leader, expect_isr, expect_elr, expect_last_known)
    after = part.merge(change)
    assert not set(after.isr) & set(after.elr) and set(after.elr) <= set(after.replicas)
    assert after.leader_recovery_state == (RECOVERING if recovering else RECOVERED)
    assert after.leader == NO_LEADER or after.leader in after.isr
    assert decode_record(encode_record(change)) == change


def test_without_elr_the_elr_fields_are_never_set_and_stale_ones_are_cleared() -> None:
    part = PartitionRegistration(replicas=(1, 2, 3), isr=(1, 2), leader=1)
    change = partition_change(part, topic_id=T, partition_id=0, acceptable=lambda b: True, target_isr=[1],
                              min_insync_replicas=2)
    assert change is not None and (change.isr, change.elr, change.last_known_elr) == ((1,), None, None)
    stale = PartitionRegistration(replicas=(1, 2, 3), isr=(1,), leader=1, elr=(2,), last_known_elr=(3,))
    change = partition_change(stale, topic_id=T, partition_id=0, acceptable=lambda b: True, target_isr=[1])
    assert change is not None and (change.elr, change.last_known_elr) == ((), ())


def elr_cluster(min_isr: int = 2, **config: Any) -> Cluster:
    """Three brokers, ELR on (the default), ``min.insync.replicas`` as given, topic t on 1, 2, 3."""
    cluster = three(min_insync_replicas=min_isr, **config)
    cluster.create("t", assignments={0: [1, 2, 3]})
    return cluster


def test_shrinking_below_the_minimum_fills_the_elr_and_rejoining_empties_it() -> None:
    cluster = elr_cluster(min_isr=2)
    assert alter_error(cluster.alter_isr(1, "t", 0, [1, 2])) == ErrorCode.NONE
    p = cluster.part("t")
    assert (p.isr, p.elr) == ((1, 2), ())  # at the minimum: the high watermark moves on without 3
    assert alter_error(cluster.alter_isr(1, "t", 0, [1])) == ErrorCode.NONE
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr, p.leader_epoch) == (1, (1,), (2,), 0)  # 3 left earlier: not eligible
    record = cluster.log[-1]
    assert isinstance(record, PartitionChangeRecord) and record.elr == (2,)
    assert encode_record(record)[2] == 2  # the ELR needs PartitionChangeRecord version 2
    assert alter_error(cluster.alter_isr(1, "t", 0, [1, 3])) == ErrorCode.NONE
    p = cluster.part("t")
    assert (p.isr, p.elr) == ((1, 3), ())  # back at the minimum


def test_fencing_the_last_isr_member_elects_from_the_elr() -> None:
    cluster = elr_cluster(min_isr=2)
    cluster.alter_isr(1, "t", 0, [1, 2])
    cluster.heartbeat(2, want_fence=True)  # the ISR falls below the minimum: 2 enters the ELR
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr) == (1, (1,), (2,))
    cluster.heartbeat(1, want_fence=True)  # the last ISR member goes; the ELR member is fenced too
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr, p.last_known_elr) == (NO_LEADER, (), (1, 2), (1,))
    cluster.heartbeat(3)  # an out-of-sync replica: no unclean election
    assert cluster.part("t").leader == NO_LEADER
    cluster.heartbeat(2)  # an ELR member is back: it leads, and is the ISR
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr, p.last_known_elr, p.leader_recovery_state) == (2, (2,), (1,), (), RECOVERED)
    assert p.leader_epoch == 2


def test_an_elr_member_that_is_fenced_stays_eligible() -> None:
    cluster = elr_cluster(min_isr=3)
    cluster.alter_isr(1, "t", 0, [1])
    assert cluster.part("t").elr == (2, 3)
    cluster.heartbeat(3, want_fence=True)
    assert cluster.part("t").elr == (2, 3)
    cluster.heartbeat(1, want_fence=True)  # 2 is the only acceptable ELR member
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr) == (2, (2,), (1, 3))


def test_controlled_shutdown_below_the_minimum_enters_the_elr() -> None:
    cluster = elr_cluster(min_isr=2)
    cluster.alter_isr(1, "t", 0, [1, 2])
    cluster.heartbeat(1, want_shut_down=True)
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr) == (2, (2,), (1,))


def lapse(cluster: Cluster, broker: int) -> None:
    """``broker``'s session expires (the controller has not ticked yet); the others stay alive."""
    cluster.now += SESSION_MS + 1
    cluster.keep_alive(*(b for b in (1, 2, 3) if b != broker))


def test_a_registration_after_an_unclean_shutdown_leaves_the_isr_and_the_elr() -> None:
    cluster = elr_cluster(min_isr=3)
    cluster.alter_isr(1, "t", 0, [1, 2])
    assert cluster.part("t").elr == (3,)
    cluster.heartbeat(3, want_fence=True)
    # 3 comes back without a clean-shutdown marker (PreviousBrokerEpoch -1): it may have lost
    # what it had, so it is no longer eligible.
    resp = cluster.register(3, incarnation=33, previous_epoch=-1)
    assert resp.error_code == ErrorCode.NONE
    assert cluster.part("t").elr == ()
    # 2 is still in the ISR when its session lapses and a new process registers: unclean, it
    # leaves the ISR and does not enter the ELR.
    lapse(cluster, 2)
    cluster.register(2, incarnation=22, previous_epoch=-1)
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr) == (1, (1,), ())


def test_a_registration_after_a_clean_shutdown_stays_eligible() -> None:
    cluster = elr_cluster(min_isr=3)
    cluster.alter_isr(1, "t", 0, [1, 2])
    old = cluster.epochs[3]
    cluster.heartbeat(3, want_fence=True)
    resp = cluster.register(3, incarnation=33, previous_epoch=old)  # the epoch its marker holds
    assert resp.error_code == ErrorCode.NONE and resp.broker_epoch > old
    assert cluster.part("t").elr == (3,)
    # A clean restart of an ISR member: it leaves the ISR, and enters the ELR since the ISR is
    # below the minimum.
    lapse(cluster, 2)
    cluster.register(2, incarnation=22, previous_epoch=cluster.epochs[2])
    p = cluster.part("t")
    assert (p.isr, p.elr) == ((1,), (2, 3))


def test_an_old_epoch_or_an_older_request_version_counts_as_unclean() -> None:
    cluster = elr_cluster(min_isr=3)
    cluster.alter_isr(1, "t", 0, [1, 2])
    first = cluster.epochs[3]
    cluster.heartbeat(3, want_fence=True)
    cluster.register(3, incarnation=33, previous_epoch=first)
    cluster.heartbeat(3)
    cluster.heartbeat(3, want_fence=True)
    # The marker of a life before the last one (that life crashed) proves nothing.
    cluster.register(3, incarnation=34, previous_epoch=first)
    assert cluster.part("t").elr == ()
    # BrokerRegistration v0-v2 has no PreviousBrokerEpoch: it decodes as -1.
    wire = BrokerRegistrationRequest(broker_id=3, cluster_id=CLUSTER_ID, incarnation_id=uuid.UUID(int=35),
                                     previous_broker_epoch=cluster.epochs[3])
    assert BrokerRegistrationRequest.decode(wire.encode(2), 2).previous_broker_epoch == -1


def test_an_unclean_leader_leaves_and_an_elr_member_takes_over() -> None:
    cluster = elr_cluster(min_isr=2)
    cluster.alter_isr(1, "t", 0, [1])
    lapse(cluster, 1)
    cluster.register(1, incarnation=11, previous_epoch=-1)
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr, p.leader_recovery_state) == (2, (2,), (3,), RECOVERED)


def test_with_isr_and_elr_gone_the_last_known_leader_leads_again() -> None:
    """Kafka's last resort: when every ISR and ELR member is gone -- here each came back from an
    unclean shutdown -- the partition waits for the leader it last had, and elects it (an
    unclean election) once it is back and unfenced; never a replica that merely fell behind."""
    cluster = elr_cluster(min_isr=1)
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(3, want_fence=True)
    cluster.heartbeat(1, want_fence=True)
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr, p.last_known_elr) == (NO_LEADER, (), (1,), (1,))
    cluster.register(1, incarnation=11, previous_epoch=-1)
    p = cluster.part("t")
    assert (p.isr, p.elr, p.last_known_elr) == ((), (), (1,))
    cluster.heartbeat(2)
    assert cluster.part("t").leader == NO_LEADER
    cluster.heartbeat(1)
    p = cluster.part("t")
    assert (p.leader, p.isr, p.last_known_elr, p.leader_recovery_state) == (1, (1,), (), RECOVERING)


def test_with_elr_off_the_controller_behaves_as_before() -> None:
    """eligible.leader.replicas.version 0: the same faults as above, Kafka 3.9's outcomes, and no
    record ever carries an ELR field."""
    cluster = elr_cluster(min_isr=2, eligible_leader_replicas_version=0)
    assert not cluster.image.elr_enabled and cluster.image.cluster_config("min.insync.replicas") is None
    cluster.alter_isr(1, "t", 0, [1, 2])
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(1, want_fence=True)
    p = cluster.part("t")
    assert (p.leader, p.isr, p.elr) == (NO_LEADER, (1,), ())  # the last ISR member stays
    cluster.heartbeat(2)
    assert cluster.part("t").leader == NO_LEADER
    cluster.register(1, incarnation=11, previous_epoch=-1)  # unclean: still the last ISR member
    cluster.heartbeat(1)
    p = cluster.part("t")
    assert (p.leader, p.isr) == (1, (1,))
    for r in cluster.log:
        if isinstance(r, PartitionChangeRecord | PartitionRecord):
            assert r.elr is None and r.last_known_elr is None, r


def test_a_topic_min_isr_change_re_evaluates_its_elr() -> None:
    cluster = elr_cluster(min_isr=3)
    cluster.create("u", assignments={0: [1, 2, 3]})
    cluster.alter_isr(1, "t", 0, [1, 2])
    cluster.alter_isr(1, "u", 0, [1])
    assert (cluster.part("t").elr, cluster.part("u").elr) == ((3,), (2, 3))
    start = len(cluster.log)
    alter_configs(cluster, ("min.insync.replicas", 0, "2"), resource=(2, "t"))
    # t's ISR is at the new minimum: its high watermark moves on without 3, which is no longer eligible.
    assert cluster.part("t").elr == ()
    assert cluster.log[start] == ConfigRecord(2, "t", "min.insync.replicas", "2")
    assert isinstance(cluster.log[start + 1], PartitionChangeRecord) and len(cluster.log) == start + 2
    alter_configs(cluster, ("min.insync.replicas", 0, "2"), resource=(2, "u"))
    # u is still below it: its high watermark stays where it was when 2 and 3 left; they stay.
    assert cluster.part("u").elr == (2, 3)
    # The topic's minimum decides the next change too.
    cluster.alter_isr(1, "t", 0, [1])
    assert cluster.part("t").elr == (2,)


def test_a_controller_with_another_min_isr_re_evaluates_every_elr() -> None:
    cluster = elr_cluster(min_isr=3)
    cluster.alter_isr(1, "t", 0, [1, 2])
    assert cluster.part("t").elr == (3,)
    successor = QuorumController(ControllerConfig(cluster_id=CLUSTER_ID, min_insync_replicas=2),
                                 rng=random.Random(3))
    successor.handle_commit(base_offset=0, records=cluster.log)
    result = successor.become_active(next_write_offset=len(cluster.log), now_ms=cluster.now)
    assert result.records[0] == ConfigRecord(4, "", "min.insync.replicas", "2")
    p = successor.latest_image.partition(cluster.topic_id("t"), 0)
    assert p is not None and p.elr == ()
    # The same setting again changes nothing.
    again = QuorumController(ControllerConfig(cluster_id=CLUSTER_ID, min_insync_replicas=3), rng=random.Random(3))
    again.handle_commit(base_offset=0, records=cluster.log)
    assert again.become_active(next_write_offset=len(cluster.log), now_ms=cluster.now).records == ()


def update_features(cluster: Cluster, level: int, *, upgrade_type: int = 1, version: int = 2,
                    feature: str = "eligible.leader.replicas.version", validate_only: bool = False
                    ) -> tuple[int, str | None, list[MetadataRecord]]:
    start = len(cluster.log)
    req = UpdateFeaturesRequest(feature_updates=[UpdateFeaturesRequest.FeatureUpdateKey(
        feature=feature, max_version_level=level, upgrade_type=upgrade_type if version >= 1 else 1,
        allow_downgrade=upgrade_type != 1 and version == 0)], validate_only=validate_only)
    resp = cluster.run(cluster.c.handle_update_features(req, version=version))
    roundtrip(resp, range(3))
    return resp.error_code, resp.error_message, cluster.log[start:]


def test_turning_elr_off_gives_every_partition_an_isr_kafka_3_9_can_elect_from() -> None:
    """kafka-features downgrade --feature eligible.leader.replicas.version=0: a partition whose ISR
    emptied gets its ELR as its ISR (each member holds everything committed), the ELR fields go,
    and from then on the controller behaves as Kafka 3.9's."""
    cluster = elr_cluster(min_isr=2)
    cluster.create("u", assignments={0: [1, 2, 3]})
    cluster.alter_isr(1, "t", 0, [1, 2])
    cluster.alter_isr(1, "u", 0, [1])
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(1, want_fence=True)
    assert (cluster.part("t").isr, cluster.part("t").elr, cluster.part("t").leader) == ((), (1, 2), NO_LEADER)
    assert (cluster.part("u").isr, cluster.part("u").elr, cluster.part("u").leader) == ((3,), (1, 2), 3)
    code, message, _ = update_features(cluster, 0)  # a downgrade needs a downgrade type
    assert code == ErrorCode.INVALID_UPDATE_VERSION and "downgrade" in (message or "")
    code, _, written = update_features(cluster, 0, upgrade_type=2)
    assert code == ErrorCode.NONE and written[0] == FeatureLevelRecord("eligible.leader.replicas.version", 0)
    assert not cluster.image.elr_enabled
    t, u = cluster.part("t"), cluster.part("u")
    assert (t.isr, t.elr, t.last_known_elr, t.leader) == ((1, 2), (), (), NO_LEADER)
    assert (u.isr, u.elr, u.leader) == ((3,), (), 3)
    cluster.heartbeat(2)  # an ISR member again: it leads
    assert cluster.part("t").leader == 2
    cluster.heartbeat(3, want_fence=True)  # Kafka 3.9's last replica standing
    assert (cluster.part("u").isr, cluster.part("u").leader) == ((3,), NO_LEADER)


def test_turning_elr_on_writes_the_cluster_min_isr_and_needs_every_broker() -> None:
    cluster = Cluster(config=ControllerConfig(cluster_id=CLUSTER_ID, eligible_leader_replicas_version=0,
                                              min_insync_replicas=2))
    elr = ("eligible.leader.replicas.version", 0, 1)
    for b in (1, 2):
        cluster.register(b, features=[elr])
    cluster.register(3)  # lists no such feature: it supports level 0 only
    for b in (1, 2, 3):
        cluster.heartbeat(b)
    code, message, written = update_features(cluster, 1)
    assert code == ErrorCode.INVALID_UPDATE_VERSION and "Broker 3" in (message or "") and not written
    cluster.heartbeat(3, want_fence=True)
    cluster.register(3, incarnation=33, features=[elr])
    cluster.heartbeat(3)
    assert update_features(cluster, 1, validate_only=True)[::2] == (ErrorCode.NONE, [])
    code, _, written = update_features(cluster, 1, version=0)
    assert code == ErrorCode.NONE
    assert written == [FeatureLevelRecord("eligible.leader.replicas.version", 1),
                       ConfigRecord(4, "", "min.insync.replicas", "2")]
    cluster.create("t", assignments={0: [1, 2, 3]})
    cluster.alter_isr(1, "t", 0, [1])
    assert cluster.part("t").elr == (2, 3)


@pytest.mark.parametrize("feature, level, upgrade_type", [
    ("metadata.version", 22, 1),
    ("kraft.version", 1, 1),
    ("eligible.leader.replicas.version", 2, 1),
    ("eligible.leader.replicas.version", -1, 2),
    ("eligible.leader.replicas.version", 1, 7),
])
def test_feature_updates_this_controller_refuses(feature: str, level: int, upgrade_type: int) -> None:
    cluster = elr_cluster()
    code, _, written = update_features(cluster, level, upgrade_type=upgrade_type, feature=feature)
    assert code == ErrorCode.INVALID_UPDATE_VERSION and not written


def test_elr_invariants_hold_through_random_faults() -> None:
    """A seeded walk of fences, returns (clean and unclean), ISR changes and controlled
    shutdowns: ISR and ELR never overlap, the ELR is empty at or above the minimum, a leader is
    in the ISR, and a broker back from an unclean shutdown is in no ISR or ELR."""
    for seed in range(20):
        rng = random.Random(seed)
        cluster = elr_cluster(min_isr=rng.choice([1, 2, 3]))
        min_isr = cluster.c.config.min_insync_replicas
        incarnation = 100
        for _ in range(60):
            b = rng.choice([1, 2, 3])
            reg = cluster.image.broker(b)
            action = rng.random()
            unclean = -1
            if reg.fenced and action < 0.5:
                incarnation += 1
                clean = rng.random() < 0.5
                cluster.register(b, incarnation=incarnation, previous_epoch=cluster.epochs[b] if clean else -1)
                unclean = -1 if clean else b
            elif reg.fenced:
                cluster.heartbeat(b)
            elif action < 0.3:
                cluster.heartbeat(b, want_fence=True)
            elif action < 0.4:
                cluster.heartbeat(b, want_shut_down=True)
            else:
                p = cluster.part("t")
                if p.leader >= 0 and cluster.image.is_active(p.leader):
                    others = [r for r in p.replicas if r != p.leader and cluster.image.is_active(r)]
                    isr = [p.leader, *rng.sample(others, rng.randint(0, len(others)))]
                    cluster.alter_isr(p.leader, "t", 0, isr)
            p = cluster.part("t")
            assert not set(p.isr) & set(p.elr), p
            assert set(p.elr) <= set(p.replicas) and len(p.last_known_elr) <= 1, p
            assert not p.elr or len(p.isr) < min_isr, p
            assert p.leader == NO_LEADER or p.leader in p.isr, p
            assert unclean not in p.isr and unclean not in p.elr, p


# --- AlterPartition ----------------------------------------------------------------------------------


def test_alter_partition_shrinks_and_expands_the_isr() -> None:
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    resp = cluster.alter_isr(1, "t", 0, [1, 2])
    data = resp.topics[0].partitions[0]
    assert data.error_code == ErrorCode.NONE
    assert (data.leader_id, data.isr, data.leader_epoch, data.partition_epoch) == (1, [1, 2], 0, 1)
    assert cluster.part("t").isr == (1, 2)
    again = cluster.alter_isr(1, "t", 0, [1, 2, 3])
    assert again.topics[0].partitions[0].isr == [1, 2, 3] and cluster.part("t").partition_epoch == 2
    before = len(cluster.log)
    same = cluster.alter_isr(1, "t", 0, [1, 2, 3])  # nothing to change: nothing written
    assert same.topics[0].partitions[0].partition_epoch == 2 and len(cluster.log) == before
    roundtrip(resp, range(2, 4))


def test_alter_partition_by_name_in_old_versions() -> None:
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    for version in (0, 1):
        resp = cluster.alter_isr(1, "t", 0, [1, 2, 3][: 3 - version], version=version)
        assert alter_error(resp) == ErrorCode.NONE
        roundtrip(resp, range(version, version + 1))
    assert cluster.part("t").isr == (1, 2)


@pytest.mark.parametrize("change, error", [
    (dict(partition_epoch=-1), ErrorCode.INVALID_UPDATE_VERSION),
    (dict(leader_epoch=-1), ErrorCode.FENCED_LEADER_EPOCH),
    (dict(leader_epoch=1), ErrorCode.NOT_CONTROLLER),
    (dict(partition_epoch=9), ErrorCode.NOT_CONTROLLER),
    (dict(sender=2), ErrorCode.NOT_LEADER_OR_FOLLOWER),
    (dict(isr=[1, 4]), ErrorCode.INVALID_REQUEST),  # 4 is not a replica
    (dict(isr=[2, 3]), ErrorCode.INVALID_REQUEST),  # without the leader
    (dict(isr=[1, 2, 2]), ErrorCode.INVALID_REQUEST),
    (dict(isr=[1], recovery=RECOVERING), ErrorCode.INVALID_REQUEST),  # RECOVERED cannot go back
    (dict(isr=[1, 3], epochs={3: 999}), ErrorCode.INELIGIBLE_REPLICA),  # KIP-903: wrong broker epoch
    (dict(isr=[1, 3], fence=3, version=1), ErrorCode.OPERATION_NOT_ATTEMPTED),  # v0-1 carry no epochs
    (dict(isr=[1, 3], fence=3), ErrorCode.INELIGIBLE_REPLICA),
    (dict(isr=[1, 3], shut_down=3), ErrorCode.INELIGIBLE_REPLICA),
], ids=repr)
def test_alter_partition_refusals(change: dict[str, Any], error: ErrorCode) -> None:
    cluster = three()
    cluster.register(4)
    cluster.create("t", assignments={0: [1, 2, 3]})
    cluster.alter_isr(1, "t", 0, [1, 2])
    if "fence" in change:
        cluster.heartbeat(change.pop("fence"), want_fence=True)
    if "shut_down" in change:
        cluster.create("led", assignments={0: [change["shut_down"]]})  # so that it cannot shut down at once
        assert not cluster.heartbeat(change.pop("shut_down"), want_shut_down=True).should_shut_down
    p = cluster.part("t")
    sender = change.pop("sender", 1)
    isr = change.pop("isr", [1, 2, 3])
    kwargs = {"leader_epoch": p.leader_epoch + change.pop("leader_epoch", 0),
              "partition_epoch": p.partition_epoch + change.pop("partition_epoch", 0), **change}
    before = len(cluster.log)
    resp = cluster.alter_isr(sender, "t", 0, isr, **kwargs)
    assert alter_error(resp) == error
    assert len(cluster.log) == before and cluster.part("t") == p


def test_kip_903_a_restarted_follower_cannot_rejoin_with_its_old_epoch() -> None:
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    old_epoch = cluster.epochs[3]
    cluster.now += SESSION_MS + 1
    cluster.keep_alive(1, 2)
    cluster.register(3, incarnation=33)  # broker 3 restarts (a new incarnation), leaving the ISR
    assert cluster.part("t").isr == (1, 2)
    cluster.heartbeat(3)  # caught up and unfenced
    stale = cluster.alter_isr(1, "t", 0, [1, 2, 3], epochs={3: old_epoch})
    assert alter_error(stale) == ErrorCode.INELIGIBLE_REPLICA
    fresh = cluster.alter_isr(1, "t", 0, [1, 2, 3])  # the leader learned the new epoch
    assert alter_error(fresh) == ErrorCode.NONE and cluster.part("t").isr == (1, 2, 3)


def test_alter_partition_from_a_stale_sender_or_for_unknown_partitions() -> None:
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    resp = cluster.alter_isr(1, "t", 0, [1, 2], sender_epoch=cluster.epochs[1] - 1)
    assert resp.error_code == ErrorCode.STALE_BROKER_EPOCH and resp.topics == []
    unknown_id = AlterPartitionRequest(broker_id=1, broker_epoch=cluster.epochs[1], topics=[
        AlterPartitionRequest.TopicData(topic_id=uuid.UUID(int=5), partitions=[AlterPartitionRequest.PartitionData()])])
    resp = cluster.run(cluster.c.handle_alter_partition(unknown_id, version=2))
    assert alter_error(resp) == ErrorCode.UNKNOWN_TOPIC_ID
    unknown_name = AlterPartitionRequest(broker_id=1, broker_epoch=cluster.epochs[1], topics=[
        AlterPartitionRequest.TopicData(topic_name="nope", partitions=[AlterPartitionRequest.PartitionData()])])
    resp = cluster.run(cluster.c.handle_alter_partition(unknown_name, version=1))
    assert alter_error(resp) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    unknown_partition = AlterPartitionRequest(broker_id=1, broker_epoch=cluster.epochs[1], topics=[
        AlterPartitionRequest.TopicData(topic_id=cluster.topic_id("t"),
                                        partitions=[AlterPartitionRequest.PartitionData(partition_index=7)])])
    resp = cluster.run(cluster.c.handle_alter_partition(unknown_partition, version=3))
    assert alter_error(resp) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_alter_partition_in_flight_during_an_election_is_rejected() -> None:
    # The leader asks to expand the ISR with the partition epoch it knows; before the request
    # arrives, a follower's session expires and the controller shrinks the ISR. The request's
    # partition epoch is now stale: it must not resurrect the ISR the controller just changed.
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    cluster.alter_isr(1, "t", 0, [1, 2])
    seen = cluster.part("t")
    cluster.now += SESSION_MS + 1
    cluster.keep_alive(1, 3)
    fencing = cluster.c.tick(cluster.now)  # broker 2 fenced: ISR [1], same leader
    cluster.run(fencing, commit=False)  # ...and not yet committed when the request arrives
    after_election = cluster.c.latest_image.partition(cluster.topic_id("t"), 0)
    assert after_election is not None
    assert after_election.isr == (1,) and after_election.leader_epoch == seen.leader_epoch
    stale = cluster.alter_isr(1, "t", 0, [1, 2, 3], leader_epoch=seen.leader_epoch,
                              partition_epoch=seen.partition_epoch, commit=False)
    assert alter_error(stale) == ErrorCode.INVALID_UPDATE_VERSION
    cluster.commit()
    assert cluster.part("t") == after_election
    # And when the election moved leadership, the old leader is fenced by its leader epoch.
    seen = cluster.part("t")
    cluster.heartbeat(1, want_fence=True)  # broker 1 goes; broker 3 is not in the ISR: leaderless
    cluster.heartbeat(1)  # back: it is the last ISR member and leads again, in a new epoch
    assert cluster.part("t").leader == 1 and cluster.part("t").leader_epoch == seen.leader_epoch + 2
    old = cluster.alter_isr(1, "t", 0, [1, 3], leader_epoch=seen.leader_epoch,
                            partition_epoch=seen.partition_epoch)
    assert alter_error(old) == ErrorCode.FENCED_LEADER_EPOCH


def test_an_old_leaders_alter_partition_after_failover_is_fenced() -> None:
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    seen = cluster.part("t")
    cluster.now += SESSION_MS + 1
    cluster.keep_alive(2, 3)
    cluster.advance(0)  # broker 1's session expired: broker 2 leads
    assert cluster.part("t").leader == 2
    cluster.heartbeat(1)  # broker 1 is back (same process): unfenced, but no longer leader
    resp = cluster.alter_isr(1, "t", 0, [1, 2], leader_epoch=seen.leader_epoch,
                             partition_epoch=seen.partition_epoch)
    assert alter_error(resp) == ErrorCode.FENCED_LEADER_EPOCH
    now = cluster.alter_isr(1, "t", 0, [1, 2])  # with current epochs, but not the leader
    assert alter_error(now) == ErrorCode.NOT_LEADER_OR_FOLLOWER


# --- reassignments -----------------------------------------------------------------------------------


def reassign(cluster: Cluster, name: str, pid: int, replicas: list[int] | None) -> tuple[int, str | None]:
    req = AlterPartitionReassignmentsRequest(topics=[AlterPartitionReassignmentsRequest.ReassignableTopic(
        name=name, partitions=[AlterPartitionReassignmentsRequest.ReassignablePartition(pid, replicas)])])
    resp = cluster.run(cluster.c.handle_alter_partition_reassignments(req))
    assert resp.error_code == ErrorCode.NONE
    roundtrip(resp, range(0, 1))
    r = resp.responses[0].partitions[0]
    return r.error_code, r.error_message


def ongoing(cluster: Cluster, topics: list[tuple[str, list[int]]] | None = None) -> list[tuple[str, int, list[int],
                                                                                              list[int], list[int]]]:
    req = ListPartitionReassignmentsRequest(topics=None if topics is None else [
        ListPartitionReassignmentsRequest.ListPartitionReassignmentsTopics(n, p) for n, p in topics])
    result = cluster.c.handle_list_partition_reassignments(req)
    assert result.records == () and result.reply_after_offset == -1
    roundtrip(result.response, range(0, 1))
    return [(t.name, p.partition_index, p.replicas, p.adding_replicas, p.removing_replicas)
            for t in result.response.topics for p in t.partitions]


def four() -> Cluster:
    cluster = three()
    cluster.register(4)
    cluster.heartbeat(4)
    return cluster


def test_a_reassignment_adds_then_completes_when_the_targets_are_in_sync() -> None:
    cluster = four()
    cluster.create("t", partitions=2, assignments={0: [1, 2, 3], 1: [2, 3, 1]})
    before = cluster.part("t")
    assert reassign(cluster, "t", 0, [1, 2, 4]) == (ErrorCode.NONE, None)
    p = cluster.part("t")
    assert (p.replicas, p.adding_replicas, p.removing_replicas, p.isr) == ((1, 2, 4, 3), (4,), (3,), (1, 2, 3))
    assert p.leader == 1 and p.leader_epoch == before.leader_epoch  # nothing removed yet
    assert ongoing(cluster) == [("t", 0, [1, 2, 4, 3], [4], [3])]
    assert ongoing(cluster, [("t", [1]), ("nope", [0])]) == []
    # The leader adds broker 4 to the ISR: the reassignment completes in the same change.
    resp = cluster.alter_isr(1, "t", 0, [1, 2, 3, 4])
    data = resp.topics[0].partitions[0]
    assert data.error_code == ErrorCode.NONE and data.isr == [1, 2, 4]
    p = cluster.part("t")
    assert (p.replicas, p.isr, p.adding_replicas, p.removing_replicas) == ((1, 2, 4), (1, 2, 4), (), ())
    assert p.leader_epoch == before.leader_epoch + 1  # a replica left: new leader epoch
    assert ongoing(cluster) == []


def test_a_reassignment_that_removes_the_leader_elects_a_new_one() -> None:
    cluster = four()
    cluster.create("t", assignments={0: [1, 2, 3]})
    reassign(cluster, "t", 0, [2, 3, 4])
    resp = cluster.alter_isr(1, "t", 0, [1, 2, 3, 4])
    assert alter_error(resp) == ErrorCode.NEW_LEADER_ELECTED
    p = cluster.part("t")
    assert (p.replicas, p.isr, p.leader) == ((2, 3, 4), (2, 3, 4), 2)


def test_reassignment_completion_answers_fenced_leader_epoch_to_old_versions() -> None:
    cluster = four()
    cluster.create("t", assignments={0: [1, 2, 3]})
    reassign(cluster, "t", 0, [2, 3, 4])
    assert alter_error(cluster.alter_isr(1, "t", 0, [1, 2, 3, 4], version=1)) == ErrorCode.FENCED_LEADER_EPOCH


def test_a_reordering_completes_at_once_and_cancel_reverts() -> None:
    cluster = four()
    cluster.create("t", partitions=2, assignments={0: [1, 2, 3], 1: [1, 2, 3]})
    assert reassign(cluster, "t", 0, [3, 2, 1])[0] == ErrorCode.NONE
    p = cluster.part("t", 0)
    assert (p.replicas, p.is_reassigning, p.leader) == ((3, 2, 1), False, 1)
    reassign(cluster, "t", 1, [1, 2, 4])
    assert reassign(cluster, "t", 1, None) == (ErrorCode.NONE, None)
    p = cluster.part("t", 1)
    assert (p.replicas, p.isr, p.is_reassigning) == ((1, 2, 3), (1, 2, 3), False)
    assert reassign(cluster, "t", 1, None)[0] == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS


@pytest.mark.parametrize("target, error", [
    ([], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ([1, 9], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ([1, 1], ErrorCode.INVALID_REPLICA_ASSIGNMENT),
])
def test_invalid_reassignments(target: list[int], error: ErrorCode) -> None:
    cluster = four()
    cluster.create("t", assignments={0: [1, 2, 3]})
    assert reassign(cluster, "t", 0, target)[0] == error
    assert reassign(cluster, "t", 5, [1])[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert reassign(cluster, "nope", 0, [1])[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_cancelling_needs_an_unclean_election_when_only_added_replicas_are_in_sync() -> None:
    cluster = four()
    cluster.create("t", assignments={0: [1, 2]})
    reassign(cluster, "t", 0, [1, 2, 3, 4])
    cluster.alter_isr(1, "t", 0, [1, 3])  # strange but legal: the original follower fell out
    cluster.heartbeat(1, want_fence=True)  # broker 1 leaves: ISR [3], leader 3
    assert cluster.part("t").isr == (3,)
    code, message = reassign(cluster, "t", 0, None)
    assert code == ErrorCode.INVALID_REPLICA_ASSIGNMENT and "unclean" in (message or "")


# --- ElectLeaders ------------------------------------------------------------------------------------


def elect(cluster: Cluster, election_type: int, partitions: dict[str, list[int]] | None,
          version: int = 2) -> dict[tuple[str, int], int]:
    req = ElectLeadersRequest(election_type=election_type, topic_partitions=None if partitions is None else [
        ElectLeadersRequest.TopicPartitions(t, p) for t, p in partitions.items()])
    resp = cluster.run(cluster.c.handle_elect_leaders(req, version=version))
    roundtrip(resp, range(version, 3))
    return {(t.topic, p.partition_id): p.error_code for t in resp.replica_election_results for p in t.partition_result}


def test_preferred_leader_election() -> None:
    cluster = three()
    cluster.create("t", partitions=2, assignments={0: [1, 2, 3], 1: [2, 3, 1]})
    cluster.heartbeat(1, want_fence=True)
    cluster.heartbeat(1)
    assert cluster.part("t", 0).leader == 2 and 1 not in cluster.part("t", 0).isr
    assert elect(cluster, 0, {"t": [0]}) == {("t", 0): ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}
    cluster.alter_isr(2, "t", 0, [2, 3, 1])
    assert elect(cluster, 0, {"t": [0, 1, 7], "nope": [0]}) == {
        ("t", 0): ErrorCode.NONE, ("t", 1): ErrorCode.ELECTION_NOT_NEEDED,
        ("t", 7): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert cluster.part("t", 0).leader == 1
    assert elect(cluster, 0, None) == {}  # every leader is preferred: nothing listed


def test_unclean_leader_election_on_request() -> None:
    cluster = three()
    cluster.create("t", partitions=2, assignments={0: [1, 2], 1: [1, 3]})
    cluster.heartbeat(2, want_fence=True)
    cluster.heartbeat(2)
    cluster.heartbeat(3, want_fence=True)
    cluster.heartbeat(1, want_fence=True)
    assert cluster.part("t", 0).leader == NO_LEADER and cluster.part("t", 1).leader == NO_LEADER
    assert elect(cluster, 1, None) == {("t", 0): ErrorCode.NONE, ("t", 1): ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE}
    p = cluster.part("t", 0)
    assert (p.leader, p.isr, p.leader_recovery_state) == (2, (2,), RECOVERING)
    assert elect(cluster, 1, {"t": [0]}) == {("t", 0): ErrorCode.ELECTION_NOT_NEEDED}


def test_elect_leaders_with_an_unknown_type_or_version_0() -> None:
    cluster = three()
    cluster.create("t", rf=1)
    bad = cluster.run(cluster.c.handle_elect_leaders(ElectLeadersRequest(election_type=5), version=2))
    assert bad.error_code == ErrorCode.INVALID_REQUEST
    assert elect(cluster, 0, {"t": [0]}, version=0) == {("t", 0): ErrorCode.ELECTION_NOT_NEEDED}


# --- configs and producer ids ------------------------------------------------------------------------


def alter_configs(cluster: Cluster, *ops: tuple[str, int, str | None], resource: tuple[int, str] = (2, "t"),
                  validate_only: bool = False) -> tuple[int, str | None]:
    req = IncrementalAlterConfigsRequest(validate_only=validate_only, resources=[
        IncrementalAlterConfigsRequest.AlterConfigsResource(resource_type=resource[0], resource_name=resource[1],
                                                            configs=[
            IncrementalAlterConfigsRequest.AlterableConfig(n, op, v) for n, op, v in ops])])
    resp = cluster.run(cluster.c.handle_incremental_alter_configs(req))
    roundtrip(resp, range(0, 2))
    return resp.responses[0].error_code, resp.responses[0].error_message


def test_incremental_alter_configs() -> None:
    cluster = three()
    cluster.create("t", rf=1, configs={"cleanup.policy": "delete", "retention.ms": "10"})
    start = len(cluster.log)
    assert alter_configs(cluster, ("retention.ms", 0, "20"), ("cleanup.policy", 2, "compact"),
                         ("segment.ms", 0, "5")) == (ErrorCode.NONE, None)
    assert dict(cluster.image.topic_configs("t")) == {"cleanup.policy": "delete,compact", "retention.ms": "20",
                                                     "segment.ms": "5"}
    assert cluster.log[start:] == [ConfigRecord(2, "t", "cleanup.policy", "delete,compact"),
                                   ConfigRecord(2, "t", "retention.ms", "20"),
                                   ConfigRecord(2, "t", "segment.ms", "5")]
    assert alter_configs(cluster, ("cleanup.policy", 3, "delete"), ("segment.ms", 1, None))[0] == ErrorCode.NONE
    assert dict(cluster.image.topic_configs("t")) == {"cleanup.policy": "compact", "retention.ms": "20"}
    before = len(cluster.log)
    assert alter_configs(cluster, ("retention.ms", 0, "99"), validate_only=True)[0] == ErrorCode.NONE
    assert alter_configs(cluster, ("retention.ms", 0, "20"))[0] == ErrorCode.NONE  # no change: no record
    assert len(cluster.log) == before


@pytest.mark.parametrize("ops, resource, error", [
    ([("retention.ms", 0, "1")], (2, "nope"), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    ([("log.cleaner.threads", 0, "2")], (4, "1"), ErrorCode.INVALID_REQUEST),
    ([("retention.ms", 0, "1")], (3, "g"), ErrorCode.INVALID_REQUEST),
    ([("retention.ms", 0, "1"), ("retention.ms", 1, None)], (2, "t"), ErrorCode.INVALID_REQUEST),
    ([("retention.ms", 7, "1")], (2, "t"), ErrorCode.INVALID_REQUEST),
    ([("retention.ms", 2, "1")], (2, "t"), ErrorCode.INVALID_REQUEST),  # APPEND to a non-list
    ([("retention.ms", 0, None)], (2, "t"), ErrorCode.INVALID_CONFIG),
    ([("retention.ms", 0, "later")], (2, "t"), ErrorCode.INVALID_CONFIG),  # the policy says no
], ids=repr)
def test_incremental_alter_configs_refusals(ops: list[tuple[str, int, str | None]], resource: tuple[int, str],
                                            error: ErrorCode) -> None:
    cluster = Cluster(policy=StrictPolicy())
    cluster.start({1: None})
    cluster.create("t", rf=1)
    before = len(cluster.log)
    code, message = alter_configs(cluster, *ops, resource=resource)
    assert code == error and message
    assert len(cluster.log) == before


def test_producer_id_blocks_never_overlap_and_survive_failover() -> None:
    cluster = three()

    def allocate(broker: int, epoch: int | None = None) -> tuple[int, int, int]:
        r = cluster.run(cluster.c.handle_allocate_producer_ids(AllocateProducerIdsRequest(
            broker_id=broker, broker_epoch=cluster.epochs[broker] if epoch is None else epoch)))
        return r.error_code, r.producer_id_start, r.producer_id_len

    assert allocate(1) == (ErrorCode.NONE, 0, 1000)
    assert allocate(2) == (ErrorCode.NONE, 1000, 1000)
    assert allocate(2, epoch=1)[0] == ErrorCode.STALE_BROKER_EPOCH
    successor = cluster.standby
    successor.become_active(next_write_offset=len(cluster.log), now_ms=cluster.now)
    r = successor.handle_allocate_producer_ids(AllocateProducerIdsRequest(broker_id=3,
                                                                          broker_epoch=cluster.epochs[3]))
    assert (r.response.producer_id_start, r.response.producer_id_len) == (2000, 1000)


# --- resignation, failover, determinism ---------------------------------------------------------------


def test_resigning_forgets_uncommitted_writes() -> None:
    cluster = three()
    committed = cluster.c.committed_image
    result = cluster.c.handle_create_topics(CreateTopicsRequest(topics=[
        CreateTopicsRequest.CreatableTopic(name="lost", num_partitions=1, replication_factor=1)]), version=7)
    assert result.records and cluster.c.latest_image.topic("lost") is not None
    # The next request already sees the uncommitted topic.
    dup = cluster.c.handle_create_topics(CreateTopicsRequest(topics=[
        CreateTopicsRequest.CreatableTopic(name="lost", num_partitions=1, replication_factor=1)]), version=7)
    assert dup.response.topics[0].error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    assert dup.reply_after_offset == result.reply_after_offset  # answered after the write it depends on
    cluster.c.resign()
    assert not cluster.c.is_active and cluster.c.latest_image is committed
    assert cluster.c.latest_image.topic("lost") is None
    # Leadership comes back: the log has what was committed, and the controller carries on from there.
    cluster.c.become_active(next_write_offset=len(cluster.log), now_ms=cluster.now)
    assert cluster.create("lost", rf=1).error_code == ErrorCode.NONE


def test_a_standby_takes_over_with_fresh_sessions() -> None:
    cluster = three(eligible_leader_replicas_version=0)
    cluster.create("t", assignments={0: [1, 2, 3]})
    successor = cluster.standby
    assert successor.committed_image == cluster.c.committed_image
    cluster.now += 5_000
    successor.become_active(next_write_offset=len(cluster.log), now_ms=cluster.now)
    # Every broker gets a full session from the takeover, whatever it had with the old controller.
    assert successor.next_deadline_ms() == cluster.now + SESSION_MS + 1
    assert successor.tick(cluster.now + SESSION_MS).records == ()
    fenced = successor.tick(cluster.now + SESSION_MS + 1)
    assert sum(isinstance(r, BrokerRegistrationChangeRecord) and r.fenced == 1 for r in fenced.records) == 3
    after = successor.latest_image.partition(cluster.topic_id("t"), 0)
    assert after is not None and after.leader == NO_LEADER and after.isr == (3,)  # ISR kept its last member


def test_the_same_seed_writes_the_same_log() -> None:
    def run(seed: int) -> list[MetadataRecord]:
        cluster = Cluster(seed=seed)
        cluster.start({1: "a", 2: "b", 3: "c", 4: "a"})
        cluster.create("x", partitions=5, rf=3)
        cluster.create("y", partitions=3, rf=2)
        cluster.now += SESSION_MS + 1
        cluster.keep_alive(1, 2, 3)
        cluster.advance(0)
        return cluster.log

    assert run(1) == run(1)
    assert run(1) != run(2)
    log = run(3)
    assert sum(isinstance(r, PartitionChangeRecord) for r in log) > 0


def test_a_commit_of_part_of_a_write_keeps_the_committed_image_behind() -> None:
    cluster = three()
    base = len(cluster.log)
    result = cluster.c.handle_create_topics(CreateTopicsRequest(topics=[
        CreateTopicsRequest.CreatableTopic(name="p", num_partitions=3, replication_factor=1)]), version=7)
    assert len(result.records) == 4
    cluster.c.handle_commit(base_offset=base, records=result.records[:2])
    assert cluster.c.committed_image.topic("p") is None  # the write is atomic: all or nothing
    cluster.c.handle_commit(base_offset=base + 2, records=result.records[2:])
    assert cluster.c.committed_image.topic("p") is not None
    assert cluster.c.committed_image == cluster.c.latest_image


def test_a_controller_loaded_from_a_snapshot_carries_on() -> None:
    cluster = three()
    cluster.create("t", assignments={0: [1, 2, 3]})
    image = cluster.c.committed_image
    loaded = QuorumController(cluster.config, rng=random.Random(1))
    loaded.load_snapshot(type(image).from_records(image.snapshot_records(), offset=image.offset))
    loaded.become_active(next_write_offset=len(cluster.log), now_ms=cluster.now)
    assert loaded.latest_image.topics_by_id == image.topics_by_id
    ok = loaded.handle_broker_heartbeat(BrokerHeartbeatRequest(
        broker_id=2, broker_epoch=cluster.epochs[2], current_metadata_offset=image.offset), now_ms=cluster.now)
    assert ok.response.error_code == ErrorCode.NONE and not ok.response.is_fenced


def test_controller_config_from_the_broker_config() -> None:
    from broker.cluster import controller_config
    from broker.config import from_properties

    cfg = from_properties({"broker.session.timeout.ms": "4000", "default.replication.factor": "3",
                           "num.partitions": "6", "unclean.leader.election.enable": "true",
                           "delete.topic.enable": "false"})
    assert controller_config(cfg, cluster_id="c") == ControllerConfig(
        cluster_id="c", broker_session_timeout_ms=4000, default_replication_factor=3, num_partitions=6,
        unclean_leader_election_enable=True, delete_topic_enable=False, min_insync_replicas=1,
        eligible_leader_replicas_version=1)
    off = from_properties({"eligible.leader.replicas.enable": "false", "min.insync.replicas": "2"})
    assert (controller_config(off, cluster_id="c").eligible_leader_replicas_version,
            controller_config(off, cluster_id="c").min_insync_replicas) == (0, 2)
