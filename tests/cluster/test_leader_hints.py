"""KIP-951 against a real three-node cluster: a Produce (v10+) sent to a broker that does not lead
the partition, or a Fetch (v16+) sent to one that holds no replica of it, is answered
NOT_LEADER_OR_FOLLOWER (or FENCED_LEADER_EPOCH for a fetch naming an older leader epoch) together
with the current leader and epoch and that leader's endpoint, the one Metadata lists, so a client
can retry there without asking Metadata first. Older versions carry neither; nor do
UNKNOWN_LEADER_EPOCH answers and the leader's own. A follower serves a consumer's Fetch v11+
itself (KIP-392, as Kafka does), so it names no leader; below v11 it refuses it."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from broker.client import NewTopic, open_client
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.records import NewRecord, build_batch
from tests.cluster.harness import Cluster

TOPIC = "hints"
SOLO = "hints-solo"  # one replica: the other live node holds none


def _produce(partition: int) -> ProduceRequest:
    records = build_batch([NewRecord(key=None, value=b"v", timestamp=int(time.time() * 1000))])
    return ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10_000, topic_data=[
        ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
            ProduceRequest.PartitionProduceData(index=partition, records=records)])])


def _fetch(topic_id: object, partition: int, current_leader_epoch: int, topic: str = TOPIC) -> FetchRequest:
    return FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0,
                        session_id=0, session_epoch=-1, topics=[FetchRequest.FetchTopic(
                            topic=topic, topic_id=topic_id, partitions=[FetchRequest.FetchPartition(
                                partition=partition, current_leader_epoch=current_leader_epoch, fetch_offset=0,
                                partition_max_bytes=1 << 20)])])  # type: ignore[arg-type]


async def _create(bootstrap: str) -> int:
    """The topic's first leader, once all three replicas are in sync."""
    async with open_client(bootstrap) as client:
        await client.create_topics([NewTopic(TOPIC, 1, 3)])
        with trio.fail_after(30):
            while True:
                p = (await client.metadata([TOPIC])).partition(TOPIC, 0)
                if p is not None and p.leader >= 0 and len(p.isr) == 3:
                    return p.leader
                await trio.sleep(0.2)


async def _check(bootstrap: str, stopped: int) -> None:
    async with open_client(bootstrap) as client:
        with trio.fail_after(30):
            while True:  # the first leader stopped: a new one, in a later leader epoch
                meta = await client.metadata([TOPIC])
                p = meta.partition(TOPIC, 0)
                if p is not None and p.leader >= 0 and p.leader_epoch > 0 and len(p.isr) == 2:
                    break
                await trio.sleep(0.2)
        leader = meta.brokers[p.leader]
        # (the stopped node may be listed until its session times out: not it)
        follower = next(n for n in sorted(meta.brokers) if n not in (p.leader, stopped))
        topic_id = meta.topics[TOPIC].topic_id
        conn = await client.node_connection(follower)

        resp = await conn.request(_produce(0), ProduceResponse, api_version=11)
        pr = resp.responses[0].partition_responses[0]
        assert pr.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, pr
        assert (pr.current_leader.leader_id, pr.current_leader.leader_epoch) == (p.leader, p.leader_epoch), pr
        assert [(e.node_id, e.host, e.port) for e in resp.node_endpoints] == [
            (leader.node_id, leader.host, leader.port)], resp
        old = await conn.request(_produce(0), ProduceResponse, api_version=9)
        assert old.responses[0].partition_responses[0].current_leader.leader_id == -1 and not old.node_endpoints

        for epoch in (p.leader_epoch, -1):  # KIP-392: the follower serves it
            fr = await conn.request(_fetch(topic_id, 0, epoch), FetchResponse, api_version=17)
            part = fr.responses[0].partitions[0]
            assert part.error_code == ErrorCode.NONE and part.current_leader.leader_id == -1, part
            assert not fr.node_endpoints, fr
        old_fetch = await conn.request(_fetch(topic_id, 0, p.leader_epoch), FetchResponse, api_version=10)
        assert old_fetch.responses[0].partitions[0].error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, old_fetch
        fr = await conn.request(_fetch(topic_id, 0, p.leader_epoch - 1), FetchResponse, api_version=17)
        part = fr.responses[0].partitions[0]
        assert part.error_code == ErrorCode.FENCED_LEADER_EPOCH, part
        assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (p.leader, p.leader_epoch)
        fr = await conn.request(_fetch(topic_id, 0, p.leader_epoch + 1), FetchResponse, api_version=17)
        part = fr.responses[0].partitions[0]
        assert part.error_code == ErrorCode.UNKNOWN_LEADER_EPOCH and part.current_leader.leader_id == -1, part
        assert not fr.node_endpoints, fr

        await client.create_topics([NewTopic(SOLO, 1, 1)])
        with trio.fail_after(30):
            while True:
                meta = await client.metadata([SOLO])
                solo = meta.partition(SOLO, 0)
                if solo is not None and solo.leader >= 0:
                    break
                await trio.sleep(0.2)
        holder = meta.brokers[solo.leader]
        other = next(n for n in sorted(meta.brokers) if n not in (solo.leader, stopped))
        with trio.fail_after(30):
            while True:  # until the other node's metadata has the topic too
                fr = await (await client.node_connection(other)).request(
                    _fetch(meta.topics[SOLO].topic_id, 0, solo.leader_epoch, SOLO), FetchResponse, api_version=17)
                part = fr.responses[0].partitions[0]
                if part.error_code not in (ErrorCode.UNKNOWN_TOPIC_ID, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION):
                    break
                await trio.sleep(0.2)
        assert part.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER, part
        assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (solo.leader, solo.leader_epoch)
        assert [(e.node_id, e.host, e.port) for e in fr.node_endpoints] == [(holder.node_id, holder.host,
                                                                              holder.port)], fr

        lead = await client.node_connection(p.leader)
        ok = await lead.request(_produce(0), ProduceResponse, api_version=11)
        okp = ok.responses[0].partition_responses[0]
        assert okp.error_code == ErrorCode.NONE and okp.current_leader.leader_id == -1 and not ok.node_endpoints, ok
        fr = await lead.request(_fetch(topic_id, 0, p.leader_epoch), FetchResponse, api_version=17)
        assert fr.responses[0].partitions[0].error_code == ErrorCode.NONE and not fr.node_endpoints, fr


def test_not_leader_answers_name_the_leader_and_its_endpoint(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3, ("min.insync.replicas=2",)) as cluster:
        cluster.start()
        cluster.wait_ready()
        first = trio.run(_create, cluster.bootstrap)
        assert cluster.terminate(first) == 0  # a controlled shutdown: leadership moves, epoch + 1
        # (the stopped node's proxy still accepts connections: leave it out)
        trio.run(_check, ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != first), first)
