"""Goal: the metadata record codec writes Kafka's bytes and reads them back, and the image is an
exact, pure replay of records.

Codec: every record type round-trips at every version it has; the frame and a few records are
checked byte for byte against Kafka's layout (worked out by hand from the schemas); malformed
input raises ProtocolError; fields a version cannot carry raise EncodeError; unknown record
types and unknown tagged fields are skipped as Kafka skips them.

Image: replay of broker, topic, partition, config, feature and producer-id records; epochs bump as
PartitionChangeRecord's rules say; records that contradict the image raise ReplayError; images
share what did not change; queries; the per-broker delta; snapshots rebuild the same image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import EncodeError, ProtocolError
from replication.metadata import (
    RESOURCE_TOPIC,
    MetadataDelta,
    MetadataImage,
    PartitionRegistration,
    ReplayError,
    collision_key,
    local_changes,
    topic_name_error,
)
from replication.records import (
    FENCE,
    NO_LEADER,
    RECORD_TYPES,
    RECOVERING,
    UNFENCE,
    BrokerEndpoint,
    BrokerFeature,
    BrokerRegistrationChangeRecord,
    ConfigRecord,
    FeatureLevelRecord,
    FenceBrokerRecord,
    MetadataRecord,
    NoOpRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
    UnfenceBrokerRecord,
    UnknownRecord,
    UnregisterBrokerRecord,
    decode_record,
    decode_record_and_version,
    encode_record,
)

T1 = uuid.UUID("8f0e3b1c-7d35-4b7e-9a41-0f6c2d1e5a77")
T2 = uuid.UUID("1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0")
INC = uuid.UUID("00000000-0000-4000-8000-000000000042")

# One record of each type with every field away from its default, and the versions it has.
FULL: list[MetadataRecord] = [
    RegisterBrokerRecord(broker_id=3, incarnation_id=INC, broker_epoch=77,
                         endpoints=(BrokerEndpoint("PLAINTEXT", "b3.example", 9092, 0),
                                    BrokerEndpoint("SSL", "b3.example", 9093, 1)),
                         features=(BrokerFeature("metadata.version", 1, 21),), rack="rack-a", fenced=False,
                         in_controlled_shutdown=True, is_migrating_zk_broker=True, log_dirs=(T2,)),
    UnregisterBrokerRecord(broker_id=3, broker_epoch=77),
    TopicRecord("orders", T1),
    PartitionRecord(topic_id=T1, partition_id=4, replicas=(1, 2, 3), isr=(1, 2), leader=2, leader_epoch=5,
                    partition_epoch=9, removing_replicas=(3,), adding_replicas=(4,),
                    leader_recovery_state=RECOVERING, directories=(T2, T2, T2), elr=(3,), last_known_elr=(1,)),
    ConfigRecord(RESOURCE_TOPIC, "orders", "retention.ms", "1000"),
    ConfigRecord(RESOURCE_TOPIC, "orders", "retention.ms", None),
    PartitionChangeRecord(topic_id=T1, partition_id=4, isr=(1,), leader=1, replicas=(1, 2), removing_replicas=(),
                          adding_replicas=(2,), leader_recovery_state=0, elr=(2,), last_known_elr=(),
                          directories=(T2, T2)),
    FenceBrokerRecord(broker_id=2, broker_epoch=10),
    UnfenceBrokerRecord(broker_id=2, broker_epoch=10),
    RemoveTopicRecord(T1),
    FeatureLevelRecord("metadata.version", 21),
    ProducerIdsRecord(broker_id=1, broker_epoch=5, next_producer_id=3000),
    BrokerRegistrationChangeRecord(broker_id=2, broker_epoch=10, fenced=UNFENCE, in_controlled_shutdown=1,
                                   log_dirs=(T2,)),
    NoOpRecord(),
]


def test_every_record_type_is_exercised() -> None:
    assert {type(r) for r in FULL} == set(RECORD_TYPES.values())


@pytest.mark.parametrize("record", FULL, ids=lambda r: type(r).__name__)
def test_round_trip_at_the_versions_that_carry_every_field(record: MetadataRecord) -> None:
    assert not isinstance(record, UnknownRecord)
    low, high = record.VERSIONS
    data = encode_record(record)
    back, version = decode_record_and_version(data)
    assert back == record
    assert version == high  # FULL sets the newest fields, so the lowest version that fits is the newest
    for v in range(low, high + 1):
        if v >= record._min_version():
            assert decode_record(encode_record(record, v)) == record


@pytest.mark.parametrize("record", FULL, ids=lambda r: type(r).__name__)
def test_a_version_that_lacks_a_field_in_use_refuses_to_encode(record: MetadataRecord) -> None:
    assert not isinstance(record, UnknownRecord)
    low, high = record.VERSIONS
    for v in range(low, record._min_version()):
        with pytest.raises(EncodeError):
            encode_record(record, v)
    with pytest.raises(EncodeError):
        encode_record(record, high + 1)


def test_defaults_need_version_zero_and_decode_to_defaults() -> None:
    # A pre-KIP-966 partition is a version 0 record; older versions decode newer fields as defaults.
    p = PartitionRecord(topic_id=T1, partition_id=0, replicas=(1,), isr=(1,), leader=1)
    data = encode_record(p)
    assert decode_record_and_version(data) == (p, 0)
    reg = RegisterBrokerRecord(broker_id=1, incarnation_id=INC, broker_epoch=0)
    assert decode_record_and_version(encode_record(reg)) == (reg, 0)
    back = decode_record(encode_record(reg, 3))
    assert isinstance(back, RegisterBrokerRecord) and back.fenced is True  # Fenced defaults to true


def test_topic_record_bytes() -> None:
    # frame 1, api key 2, version 0, compact string "ab" (len+1 = 3), the uuid, no tagged fields.
    expected = bytes([1, 2, 0, 3]) + b"ab" + T1.bytes + b"\x00"
    assert encode_record(TopicRecord("ab", T1)) == expected
    assert decode_record(expected) == TopicRecord("ab", T1)


def test_partition_change_record_bytes_are_tagged_fields_in_tag_order() -> None:
    record = PartitionChangeRecord(topic_id=T1, partition_id=7, isr=(1, 2), leader=2, leader_recovery_state=0)
    expected = (bytes([1, 5, 0]) + (7).to_bytes(4, "big") + T1.bytes
                + bytes([3])  # three tagged fields
                + bytes([0, 9, 3]) + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")  # tag 0 isr
                + bytes([1, 4]) + (2).to_bytes(4, "big")  # tag 1 leader
                + bytes([5, 1, 0]))  # tag 5 leader recovery state
    assert encode_record(record) == expected
    assert decode_record(expected) == record


def test_elr_fields_are_kafkas_tagged_fields_of_version_2() -> None:
    """KIP-966's fields: PartitionChangeRecord tags 6 (EligibleLeaderReplicas) and 7 (LastKnownElr),
    PartitionRecord tags 1 and 2, all in version 2 only; an empty list is written (it clears the
    field), null is not; a tag we do not know between them is skipped."""
    change = PartitionChangeRecord(topic_id=T1, partition_id=7, isr=(), leader=-1, elr=(2, 3), last_known_elr=())
    expected = (bytes([1, 5, 2]) + (7).to_bytes(4, "big") + T1.bytes
                + bytes([4])  # four tagged fields
                + bytes([0, 1, 1])  # tag 0 isr: empty
                + bytes([1, 4]) + (-1).to_bytes(4, "big", signed=True)  # tag 1 leader
                + bytes([6, 9, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")  # tag 6 ELR
                + bytes([7, 1, 1]))  # tag 7 last known ELR: empty
    assert encode_record(change) == expected
    assert decode_record_and_version(expected) == (change, 2)
    with_unknown = bytearray(expected)
    with_unknown[23] = 5  # five tagged fields, the fifth unknown (tag 30) after the others
    with_unknown += bytes([30, 2, 0xAB, 0xCD])
    assert decode_record(bytes(with_unknown)) == change
    with pytest.raises(EncodeError):
        encode_record(change, 1)
    # Tags 6 and 7 in a version 1 record are not the ELR (version 1 has no such fields): skipped.
    v1 = bytes([1, 5, 1]) + (7).to_bytes(4, "big") + T1.bytes + bytes([1, 6, 5, 2]) + (2).to_bytes(4, "big")
    assert decode_record(v1) == PartitionChangeRecord(topic_id=T1, partition_id=7)

    part = PartitionRecord(topic_id=T1, partition_id=0, replicas=(1, 2), isr=(1,), leader=1, elr=(2,),
                           last_known_elr=(1,))
    data = encode_record(part)
    assert data[2] == 2
    tail = (bytes([2])  # two tagged fields (the recovery state is RECOVERED: not written)
            + bytes([1, 5, 2]) + (2).to_bytes(4, "big")  # tag 1 ELR
            + bytes([2, 5, 2]) + (1).to_bytes(4, "big"))  # tag 2 last known ELR
    assert data.endswith(tail)
    assert decode_record(data) == part
    assert encode_record(dataclasses.replace(part, elr=None, last_known_elr=None))[2] == 0


def test_register_broker_record_bytes_v0() -> None:
    record = RegisterBrokerRecord(broker_id=1, incarnation_id=INC, broker_epoch=2,
                                  endpoints=(BrokerEndpoint("P", "h", 9092, 0),), rack=None, fenced=True)
    expected = (bytes([1, 0, 0]) + (1).to_bytes(4, "big") + INC.bytes + (2).to_bytes(8, "big")
                + bytes([2, 2]) + b"P" + bytes([2]) + b"h" + (9092).to_bytes(2, "big") + b"\x00\x00" + b"\x00"
                + bytes([1])  # no features
                + bytes([0])  # null rack
                + bytes([1])  # fenced
                + b"\x00")
    assert encode_record(record) == expected
    assert decode_record(expected) == record


def test_unknown_tagged_fields_are_skipped() -> None:
    data = bytearray(encode_record(FenceBrokerRecord(broker_id=2, broker_epoch=10)))
    assert data[-1] == 0
    data[-1:] = bytes([1, 30, 2, 0xAB, 0xCD])  # one tagged field, tag 30, two bytes
    assert decode_record(bytes(data)) == FenceBrokerRecord(broker_id=2, broker_epoch=10)


def test_unknown_record_types_are_kept_raw() -> None:
    data = bytes([1, 21, 0]) + b"\x07\x00"  # api key 21 (a DelegationTokenRecord) is not ours
    record = decode_record(data)
    assert record == UnknownRecord(api_key=21, version=0, body=b"\x07\x00")
    assert encode_record(record) == data


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (bytes([0, 2, 0]) + bytes([3]) + b"ab" + T1.bytes + b"\x00", "frame version 0"),
    (bytes([2, 2, 0]) + bytes([3]) + b"ab" + T1.bytes + b"\x00", "frame version 2"),
    (bytes([1, 2, 1]) + bytes([3]) + b"ab" + T1.bytes + b"\x00", "TopicRecord has no version 1"),
    (bytes([1, 2, 0]) + bytes([3]) + b"ab" + T1.bytes[:10], "truncated uuid"),
    (bytes([1, 2, 0]) + bytes([3]) + b"ab" + T1.bytes + b"\x00\x00", "trailing byte"),
    (bytes([1, 2, 0]) + bytes([9]) + b"ab", "string longer than the record"),
    (bytes([1, 7, 0]) + (1).to_bytes(4, "big") + (1).to_bytes(8, "big") + bytes([2, 5, 1, 0, 3, 1, 0]),
     "tagged fields out of order"),
    (bytes([1, 7, 0]) + (1).to_bytes(4, "big"), "truncated int64"),
    (bytes([1, 3, 0]) + (0).to_bytes(4, "big") + T1.bytes + bytes([0x7F]), "array count beyond the bytes"),
    (bytes([1, 3, 0]) + (0).to_bytes(4, "big") + T1.bytes + bytes([0]) * 4 + bytes(12) + b"\x00",
     "null non-nullable array"),
    (bytes([1, 5, 0]) + (0).to_bytes(4, "big") + T1.bytes + bytes([1, 1, 5]) + bytes(5),
     "tagged leader body of five bytes"),
])
def test_malformed_records_raise_protocol_error(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError):
        decode_record(data)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_record(data)


int_lists = st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5).map(tuple)


@given(st.builds(
    PartitionChangeRecord,
    topic_id=st.uuids(), partition_id=st.integers(0, 2**31 - 1),
    isr=st.none() | int_lists, leader=st.integers(-2, 100), replicas=st.none() | int_lists,
    removing_replicas=st.none() | int_lists, adding_replicas=st.none() | int_lists,
    leader_recovery_state=st.sampled_from([-1, 0, 1]), elr=st.none() | int_lists,
    last_known_elr=st.none() | int_lists, directories=st.none() | st.lists(st.uuids(), max_size=3).map(tuple)))
def test_partition_change_records_round_trip(record: PartitionChangeRecord) -> None:
    assert decode_record(encode_record(record)) == record


# --- topic names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, ok", [
    ("orders", True), ("a.b_c-D9", True), ("x" * 249, True), ("x" * 250, False), ("", False),
    (".", False), ("..", False), ("a b", False), ("ümlaut", False), ("a/b", False),
])
def test_topic_name_rules(name: str, ok: bool) -> None:
    assert (topic_name_error(name) is None) == ok


def test_collision_key_treats_dot_and_underscore_alike() -> None:
    assert collision_key("a.b") == collision_key("a_b") != collision_key("a-b")


# --- the image ---------------------------------------------------------------------------------------


def register(broker_id: int, epoch: int, *, rack: str | None = None, fenced: bool = False) -> RegisterBrokerRecord:
    return RegisterBrokerRecord(broker_id=broker_id, incarnation_id=uuid.UUID(int=broker_id), broker_epoch=epoch,
                                endpoints=(BrokerEndpoint("PLAINTEXT", f"b{broker_id}", 9092),), rack=rack,
                                fenced=fenced)


def cluster() -> MetadataImage:
    """Three brokers, topic "orders" with two partitions, as a log starting at offset 10."""
    records: list[MetadataRecord] = [
        FeatureLevelRecord("metadata.version", 21),
        register(1, 11), register(2, 12, rack="r2"), register(3, 13, fenced=True),
        TopicRecord("orders", T1),
        PartitionRecord(topic_id=T1, partition_id=0, replicas=(1, 2, 3), isr=(1, 2), leader=1),
        PartitionRecord(topic_id=T1, partition_id=1, replicas=(2, 3, 1), isr=(2, 1), leader=2),
        ConfigRecord(RESOURCE_TOPIC, "orders", "retention.ms", "1000"),
    ]
    return MetadataImage().apply(records, base_offset=10)


def test_replay_builds_brokers_topics_partitions_and_configs() -> None:
    image = cluster()
    assert image.offset == 17
    assert image.features == {"metadata.version": 21}
    assert sorted(image.brokers) == [1, 2, 3]
    b2 = image.broker(2)
    assert b2 is not None and b2.epoch == 12 and b2.rack == "r2" and b2.registration_offset == 12
    assert b2.endpoint("PLAINTEXT") == BrokerEndpoint("PLAINTEXT", "b2", 9092)
    assert image.is_active(1) and not image.is_active(3)
    topic = image.topic("orders")
    assert topic is not None and topic.topic_id == T1 and topic.partition_count == 2
    assert image.topic_by_id(T1) is topic
    assert image.partition(T1, 1) == PartitionRegistration(replicas=(2, 3, 1), isr=(2, 1), leader=2)
    assert image.replicas_of("orders", 0) == (1, 2, 3)
    assert image.replicas_of("nope", 0) == ()
    assert dict(image.topic_configs("orders")) == {"retention.ms": "1000"}


def test_replay_of_changes_bumps_epochs_by_kafka_rules() -> None:
    image = cluster().apply([
        PartitionChangeRecord(topic_id=T1, partition_id=0, isr=(1,)),  # ISR only: partition epoch
        PartitionChangeRecord(topic_id=T1, partition_id=1, leader=1),  # new leader: both epochs
        PartitionChangeRecord(topic_id=T1, partition_id=1, leader=1),  # same leader named: still a bump
    ], base_offset=18)
    p0, p1 = image.partition(T1, 0), image.partition(T1, 1)
    assert p0 is not None and (p0.isr, p0.leader, p0.leader_epoch, p0.partition_epoch) == ((1,), 1, 0, 1)
    assert p1 is not None and (p1.leader, p1.leader_epoch, p1.partition_epoch) == (1, 2, 2)
    # Every field of a change applies; None keeps the old value.
    moved = image.apply([PartitionChangeRecord(
        topic_id=T1, partition_id=0, replicas=(1, 2, 3, 4), adding_replicas=(4,), removing_replicas=(3,),
        leader=NO_LEADER, leader_recovery_state=RECOVERING)], base_offset=21)
    p = moved.partition(T1, 0)
    assert p is not None
    assert (p.replicas, p.adding_replicas, p.removing_replicas, p.isr) == ((1, 2, 3, 4), (4,), (3,), (1,))
    assert not p.has_leader and p.leader_recovery_state == RECOVERING and p.is_reassigning
    assert p.target_replicas() == (1, 2, 4)


def test_broker_fencing_records() -> None:
    image = cluster().apply([
        BrokerRegistrationChangeRecord(3, 13, fenced=UNFENCE),
        BrokerRegistrationChangeRecord(1, 11, in_controlled_shutdown=1),
        FenceBrokerRecord(2, 12),
    ], base_offset=18)
    b1, b2, b3 = image.broker(1), image.broker(2), image.broker(3)
    assert b3 is not None and not b3.fenced and b3.is_active
    assert b1 is not None and b1.in_controlled_shutdown and not b1.fenced and not b1.is_active
    assert b2 is not None and b2.fenced
    back = image.apply([UnfenceBrokerRecord(2, 12), BrokerRegistrationChangeRecord(3, 13, fenced=FENCE)],
                       base_offset=21)
    assert back.is_active(2) and not back.is_active(3)
    gone = back.apply([UnregisterBrokerRecord(3, 13)], base_offset=23)
    assert gone.broker(3) is None
    assert gone.offline_replicas(PartitionRegistration(replicas=(1, 2, 3), isr=(1,), leader=1)) == (3,)


def test_a_new_registration_replaces_the_old_one() -> None:
    image = cluster().apply([register(1, 30, fenced=True)], base_offset=30)
    b1 = image.broker(1)
    assert b1 is not None and b1.epoch == 30 and b1.fenced and b1.registration_offset == 30


def test_remove_topic_drops_partitions_names_and_configs() -> None:
    image = cluster().apply([RemoveTopicRecord(T1)], base_offset=18)
    assert image.topic("orders") is None and image.topic_by_id(T1) is None
    assert dict(image.topic_configs("orders")) == {}
    # The name can be used again, with a new id; configs start empty.
    again = image.apply([TopicRecord("orders", T2), ConfigRecord(RESOURCE_TOPIC, "orders", "a", "b")],
                        base_offset=19)
    t = again.topic("orders")
    assert t is not None and t.topic_id == T2 and dict(again.topic_configs("orders")) == {"a": "b"}


def test_delete_and_create_in_one_batch() -> None:
    image = cluster().apply([
        RemoveTopicRecord(T1), TopicRecord("orders", T2),
        PartitionRecord(topic_id=T2, partition_id=0, replicas=(2,), isr=(2,), leader=2),
    ], base_offset=18)
    t = image.topic("orders")
    assert t is not None and t.topic_id == T2 and list(t.partitions) == [0]
    assert T1 not in image.topics_by_id


def test_configs_features_producer_ids_and_noise() -> None:
    image = cluster().apply([
        ConfigRecord(RESOURCE_TOPIC, "orders", "retention.ms", None),
        ConfigRecord(4, "1", "log.cleaner.threads", "2"),
        FeatureLevelRecord("metadata.version", 22),
        FeatureLevelRecord("kraft.version", 1),
        FeatureLevelRecord("kraft.version", 0),  # level 0 removes a feature
        ProducerIdsRecord(1, 11, 2000),
        NoOpRecord(),
        UnknownRecord(21, 0, b"\x00"),
    ], base_offset=18)
    assert dict(image.topic_configs("orders")) == {}
    assert dict(image.configs[(4, "1")]) == {"log.cleaner.threads": "2"}
    assert dict(image.features) == {"metadata.version": 22}
    assert image.next_producer_id == 2000
    assert image.offset == 25


def test_the_elr_feature_and_the_cluster_level_defaults() -> None:
    image = cluster()
    assert not image.elr_enabled and image.cluster_config("min.insync.replicas") is None
    records = [FeatureLevelRecord("eligible.leader.replicas.version", 1),
               ConfigRecord(4, "", "min.insync.replicas", "2"), ConfigRecord(4, "1", "min.insync.replicas", "3")]
    delta = MetadataDelta(image)
    for offset, r in enumerate(records, 18):
        delta.replay(r, offset)
    assert delta.feature_level("eligible.leader.replicas.version") == 1
    assert delta.cluster_config("min.insync.replicas") == "2"  # the broker resource "" only
    assert delta.topic_config("orders", "retention.ms") == image.topic_configs("orders").get("retention.ms")
    after = delta.apply(20)
    assert after.elr_enabled and after.feature_level("eligible.leader.replicas.version") == 1
    assert after.cluster_config("min.insync.replicas") == "2"
    off = after.apply([FeatureLevelRecord("eligible.leader.replicas.version", 0),
                       ConfigRecord(4, "", "min.insync.replicas", None)], base_offset=21)
    assert not off.elr_enabled and off.cluster_config("min.insync.replicas") is None


def test_elr_fields_replay_and_survive_a_snapshot() -> None:
    image = cluster().apply([PartitionChangeRecord(topic_id=T1, partition_id=0, isr=(), leader=-1, elr=(2, 3),
                                                   last_known_elr=(1,))], base_offset=18)
    p = image.partition(T1, 0)
    assert p is not None and (p.isr, p.elr, p.last_known_elr, p.leader) == ((), (2, 3), (1,), -1)
    again = image.apply([PartitionChangeRecord(topic_id=T1, partition_id=0, isr=(2,), leader=2, elr=(3,),
                                               last_known_elr=())], base_offset=19)
    q = again.partition(T1, 0)
    assert q is not None and (q.isr, q.elr, q.last_known_elr) == ((2,), (3,), ())
    assert q.partition_epoch == p.partition_epoch + 1 and q.leader_epoch == p.leader_epoch + 1
    assert MetadataImage.from_records(image.snapshot_records(), offset=18).partition(T1, 0) == p


@pytest.mark.parametrize("record", [
    PartitionRecord(topic_id=T2, partition_id=0, replicas=(1,), isr=(1,), leader=1),
    PartitionChangeRecord(topic_id=T1, partition_id=9, leader=1),
    PartitionChangeRecord(topic_id=T2, partition_id=0, leader=1),
    TopicRecord("orders", T2),
    TopicRecord("other", T1),
    RemoveTopicRecord(T2),
    FenceBrokerRecord(1, 99),
    BrokerRegistrationChangeRecord(9, 1, fenced=FENCE),
    UnregisterBrokerRecord(2, 11),
], ids=repr)
def test_records_that_contradict_the_image_raise(record: MetadataRecord) -> None:
    with pytest.raises(ReplayError):
        cluster().apply([record], base_offset=18)


def test_images_are_values_and_share_what_did_not_change() -> None:
    before = cluster()
    topic_before = before.topic("orders")
    after = before.apply([TopicRecord("other", T2), register(4, 19)], base_offset=18)
    assert before.topic("other") is None and before.broker(4) is None  # the old image is untouched
    assert after.topic("orders") is topic_before  # untouched topics are shared, not copied
    assert after.broker(1) is before.broker(1)
    with pytest.raises(TypeError):
        after.brokers[9] = after.brokers[1]  # type: ignore[index]
    assert MetadataImage().apply([], base_offset=0) == MetadataImage()


def test_partition_queries() -> None:
    image = cluster()
    assert [(v.topic_name, v.partition_id) for v in image.partitions_led_by(2)] == [("orders", 1)]
    assert [v.partition_id for v in image.partitions_with_replica(3)] == [0, 1]
    assert image.partitions_led_by(3) == []
    p0 = image.partition(T1, 0)
    assert p0 is not None and image.offline_replicas(p0) == (3,)
    assert p0.has_preferred_leader and p0.preferred_leader == 1
    assert image.colliding_topic("orders") is None
    named = image.apply([TopicRecord("a.b", T2)], base_offset=18)
    assert named.colliding_topic("a_b") == "a.b" and named.colliding_topic("a.b") is None
    assert [u.broker_id for u in image.unfenced_brokers()] == [1, 2]


def test_local_changes_for_a_broker() -> None:
    old = cluster()
    new = old.apply([
        PartitionChangeRecord(topic_id=T1, partition_id=1, leader=1),  # broker 1 takes over partition 1
        TopicRecord("fresh", T2),
        PartitionRecord(topic_id=T2, partition_id=0, replicas=(3, 1), isr=(3, 1), leader=3),
    ], base_offset=18)
    c1 = local_changes(old, new, 1)
    assert [(v.topic_name, v.partition_id) for v in c1.leaders] == [("orders", 1)]
    assert [(v.topic_name, v.partition_id) for v in c1.followers] == [("fresh", 0)]
    assert c1.deletes == ()
    c2 = local_changes(old, new, 2)
    assert [(v.topic_name, v.partition_id) for v in c2.followers] == [("orders", 1)]  # demoted
    assert c2.leaders == ()
    assert local_changes(new, new, 1) == local_changes(old, old, 2)  # nothing changed: nothing to do
    # A reassignment that drops broker 3, then the topic's deletion.
    moved = new.apply([PartitionChangeRecord(topic_id=T1, partition_id=0, replicas=(1, 2))], base_offset=21)
    assert [(v.topic_name, v.partition_id) for v in local_changes(new, moved, 3).deletes] == [("orders", 0)]
    dropped = moved.apply([RemoveTopicRecord(T1)], base_offset=22)
    c3 = local_changes(moved, dropped, 3)
    assert [(v.topic_name, v.partition_id) for v in c3.deletes] == [("orders", 1)]
    assert c3.deletes[0].registration.replicas == (2, 3, 1)


def test_snapshot_records_rebuild_the_image() -> None:
    image = cluster().apply([
        ProducerIdsRecord(1, 11, 5000),
        PartitionChangeRecord(topic_id=T1, partition_id=1, leader=1, isr=(1,)),
        BrokerRegistrationChangeRecord(2, 12, in_controlled_shutdown=1),
    ], base_offset=18)
    records = image.snapshot_records()
    rebuilt = MetadataImage.from_records([decode_record(encode_record(r)) for r in records], offset=image.offset)
    assert rebuilt.topics_by_id == image.topics_by_id
    assert rebuilt.topic_ids_by_name == image.topic_ids_by_name
    assert rebuilt.configs == image.configs and rebuilt.features == image.features
    assert rebuilt.next_producer_id == 5000
    for broker_id, b in image.brokers.items():
        r = rebuilt.brokers[broker_id]
        assert r.registration_offset == image.offset  # a snapshot registers everyone at its offset
        assert (r.epoch, r.incarnation_id, r.rack, r.fenced, r.in_controlled_shutdown, r.endpoints) == (
            b.epoch, b.incarnation_id, b.rack, b.fenced, b.in_controlled_shutdown, b.endpoints)


def test_the_metadata_and_controller_modules_are_sans_io() -> None:
    from pathlib import Path

    from tests.test_sans_io import forbidden_imports

    root = Path(__file__).resolve().parents[2]
    for name in ("records", "metadata", "placement", "controller"):
        path = root / "replication" / f"{name}.py"
        assert forbidden_imports(path.read_text(), str(path)) == []
