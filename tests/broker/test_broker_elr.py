"""A cluster node's side of KIP-966 (eligible leader replicas), without a network: what it writes
into its clean-shutdown marker and offers at registration, the min.insync.replicas its leaders
use, and DescribeTopicPartitions from the metadata image. The controller's rules are in
tests/replication/test_controller.py; the whole cluster under faults in tests/sim."""

from __future__ import annotations

import trio
from broker_testkit import make_broker

from broker.core import Broker
from broker.dispatch import RequestContext
from broker.handlers.metadata import api_versions, describe_topic_partitions
from protocol.error_codes import ErrorCode
from protocol.messages import ApiKey
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.describe_topic_partitions import DescribeTopicPartitionsRequest
from protocol.messages.request_header import RequestHeader
from replication.records import (
    ConfigRecord,
    FeatureLevelRecord,
    PartitionChangeRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
)
from storage.fs import SimFileSystem

CLUSTER = ["node.id=1", "process.roles=broker,controller", "controller.quorum.voters=1@127.0.0.1:19093",
           "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19093"]


def test_a_cluster_node_offers_the_epoch_of_its_clean_shutdown_at_registration() -> None:
    """KIP-966's unclean-shutdown detection, broker side: a clean close writes this life's broker
    epoch into the clean-shutdown marker, and the next life registers with it as
    PreviousBrokerEpoch; a life that died without closing leaves none, so the next offers -1 (and
    so does a life that never registered)."""
    fs = SimFileSystem()

    def start() -> Broker:
        return make_broker(fs, overrides=CLUSTER, now_ms=lambda: 1_000)

    b = start()
    assert b.cluster is not None and b.cluster._registration().previous_broker_epoch == -1
    b.cluster.broker_epoch = 41  # as if the controller had answered its registration
    b.close()
    b = start()
    assert b.cluster is not None
    reg = b.cluster._registration()
    assert reg.previous_broker_epoch == 41
    assert {(f.name, f.min_supported_version, f.max_supported_version) for f in reg.features} >= {
        ("eligible.leader.replicas.version", 0, 1)}
    # This life dies without closing (kill -9): the next one has no marker to show.
    fs.sync_filesystem("/")
    b = start()
    assert b.cluster is not None and b.cluster._registration().previous_broker_epoch == -1
    b.close()  # never registered: it vouches for nothing
    b = start()
    assert b.cluster is not None and b.cluster._registration().previous_broker_epoch == -1


def test_a_cluster_node_takes_the_default_min_isr_from_the_metadata() -> None:
    """With ELR the controller keeps the cluster-level min.insync.replicas in the metadata log, and
    a leader's high watermark rule must use the value the controller's ELR rule uses: the log's
    wins over the broker's own setting, and a topic override over both."""
    b = make_broker(SimFileSystem(), overrides=[*CLUSTER, "min.insync.replicas=1"], now_ms=lambda: 1_000)
    assert b.cluster is not None
    assert b.min_insync_replicas("t") == 1
    topic_id = b.new_uuid()
    image = b.cluster.image.apply([TopicRecord("t", topic_id),
                                   PartitionRecord(topic_id=topic_id, partition_id=0, replicas=(1,), isr=(1,), leader=1),
                                   ConfigRecord(4, "", "min.insync.replicas", "2")], base_offset=0)
    b.cluster.image = image
    b.topics.sync_from_image(image)
    assert b.min_insync_replicas("t") == 2
    b.cluster.image = image.apply([ConfigRecord(2, "t", "min.insync.replicas", "3")], base_offset=3)
    b.topics.sync_from_image(b.cluster.image)
    assert b.min_insync_replicas("t") == 3


def test_describe_topic_partitions_reports_the_elr_from_the_image() -> None:
    b = make_broker(SimFileSystem(), overrides=CLUSTER, now_ms=lambda: 1_000)
    assert b.cluster is not None
    topic_id = b.new_uuid()
    image = b.cluster.image.apply([
        RegisterBrokerRecord(broker_id=2, incarnation_id=b.new_uuid(), broker_epoch=0, fenced=False),
        TopicRecord("t", topic_id),
        PartitionRecord(topic_id=topic_id, partition_id=0, replicas=(1, 2, 3), isr=(1, 2, 3), leader=1),
        PartitionChangeRecord(topic_id=topic_id, partition_id=0, isr=(), leader=-1, elr=(2, 3),
                              last_known_elr=(1,))], base_offset=0)
    b.cluster.image = image
    b.topics.sync_from_image(image)
    req = DescribeTopicPartitionsRequest(topics=[DescribeTopicPartitionsRequest.TopicRequest(name="t")])
    resp = trio.run(describe_topic_partitions, RequestContext(broker=b, peer="test"), req)
    (t,) = resp.topics
    assert (t.name, t.error_code, t.topic_id) == ("t", ErrorCode.NONE, topic_id)
    (p,) = t.partitions
    assert (p.leader_id, p.leader_epoch, p.replica_nodes, p.isr_nodes, p.eligible_leader_replicas,
            p.last_known_elr, p.offline_replicas) == (-1, 1, [1, 2, 3], [], [2, 3], [1], [1, 3])


def test_api_versions_names_the_supported_and_finalized_features() -> None:
    """A cluster node's ApiVersions (v3+) carries the features it supports and the levels the
    metadata log finalized (what kafka-features.sh describe reads), the image offset as their
    epoch; a feature at level 0 is unset and left out, and v2 has no place for any of it."""
    b = make_broker(SimFileSystem(), overrides=CLUSTER, now_ms=lambda: 1_000)
    assert b.cluster is not None
    b.cluster.image = b.cluster.image.apply([FeatureLevelRecord("metadata.version", 21),
                                             FeatureLevelRecord("eligible.leader.replicas.version", 1)], base_offset=6)
    req = ApiVersionsRequest(client_software_name="test", client_software_version="1")
    resp = trio.run(api_versions, RequestContext(broker=b, peer="test", header=RequestHeader(ApiKey.API_VERSIONS, 3, 1, "test")), req)
    again = ApiVersionsResponse.decode(resp.encode(3), 3)
    assert {(f.name, f.min_version, f.max_version) for f in again.supported_features} == {
        ("metadata.version", 1, 21), ("eligible.leader.replicas.version", 0, 1)}
    assert {(f.name, f.min_version_level, f.max_version_level) for f in again.finalized_features} == {
        ("metadata.version", 21, 21), ("eligible.leader.replicas.version", 1, 1)}
    assert again.finalized_features_epoch == b.cluster.image.offset == 7
    b.cluster.image = b.cluster.image.apply([FeatureLevelRecord("eligible.leader.replicas.version", 0)], base_offset=8)
    resp = trio.run(api_versions, RequestContext(broker=b, peer="test", header=RequestHeader(ApiKey.API_VERSIONS, 3, 1, "test")), req)
    assert [f.name for f in resp.finalized_features] == ["metadata.version"]
    old = ApiVersionsResponse.decode(resp.encode(2), 2)
    assert not old.supported_features and not old.finalized_features and old.api_keys
