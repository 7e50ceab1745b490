"""Fetch from follower (KIP-392) on an in-process broker in cluster mode.

Goal: a consumer's Fetch is answered as Kafka answers it on each side. On a follower, Fetch v11+
is served from the local log up to the follower's own high watermark (not its log end), with the
leader epoch checked against the one the follower knows, OFFSET_OUT_OF_RANGE past its log end,
nothing (and no error) between its high watermark and its log end, a long poll woken when the
high watermark advances, and fetch sessions working; Fetch v10 is still refused
NOT_LEADER_OR_FOLLOWER, and so is ListOffsets. On the leader, with ``replica.selector.class`` set,
a consumer in a follower's rack is sent there (``preferred_read_replica``, no records, at once)
only while that follower is in the ISR and holds the fetch offset; never without the selector,
without a rack, below v11, or when the leader shares the consumer's rack; an epoch error wins over
a redirect. A broker that holds no replica of a partition the metadata has answers
NOT_LEADER_OR_FOLLOWER naming the leader.

The broker is the real one (``Broker.open`` in cluster mode), with its real ``ReplicaManager``;
only the metadata quorum is left out: each test publishes metadata images to it as
``ClusterNode`` does after replaying committed records, and plays the other brokers' part over
the wire (a follower's Fetch) or through the replica's own fetch-answer path (the leader's
answers to this broker's fetches). Time is trio's mock clock.
"""

from __future__ import annotations

import uuid

import trio
from broker_testkit import as_stored, batch, fetch_request, fetched, make_broker, serving, values_of

from broker.core import Broker, PartitionState
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from replication.partition import FetchedPartition
from replication.read_replica import RACK_AWARE_REPLICA_SELECTOR
from replication.records import (
    BrokerEndpoint,
    MetadataRecord,
    PartitionRecord,
    RegisterBrokerRecord,
    TopicRecord,
)

E = ErrorCode
TIMEOUT_S = 30
ME = 1
EPOCH = 5
TOPIC_ID = uuid.UUID(int=0x1234)
RACKS = {1: "a", 2: "b", 3: "c"}


def clustered(*, selector: bool = True) -> Broker:
    """Node 1, rack a, a combined node of a (never started) one-voter quorum."""
    overrides = [f"node.id={ME}", "process.roles=broker,controller", "controller.quorum.voters=1@127.0.0.1:19093",
                 "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
                 "controller.listener.names=CONTROLLER", f"broker.rack={RACKS[ME]}"]
    if selector:
        overrides.append(f"replica.selector.class={RACK_AWARE_REPLICA_SELECTOR}")
    b = make_broker(overrides=overrides)
    assert b.cluster is not None and b.replicas is not None
    return b


def publish(b: Broker, records: list[MetadataRecord]) -> None:
    """A new metadata image, as ``ClusterNode._apply_committed`` hands it on."""
    node = b.cluster
    assert node is not None
    old = node.image
    node.image = old.apply(records, base_offset=old.offset + 1)
    for callback in node.on_image:
        callback(old, node.image)


def start_cluster(b: Broker, *, leader: int, replicas: tuple[int, ...] = (1, 2, 3),
                  isr: tuple[int, ...] = (1, 2, 3)) -> PartitionState | None:
    """Brokers 1-3 registered and unfenced in their racks (this one with epoch 0, which it takes
    as its own registration), topic t with one partition as given; this broker's role applied."""
    assert b.cluster is not None
    b.cluster.broker_epoch = 0
    b.cluster.caught_up = lambda: True  # type: ignore[method-assign]  # no quorum here: the images are committed
    regs: list[MetadataRecord] = [
        RegisterBrokerRecord(broker_id=i, incarnation_id=uuid.UUID(int=i), broker_epoch=0 if i == ME else 100 + i,
                             endpoints=(BrokerEndpoint("PLAINTEXT", f"host{i}", 9000 + i),), rack=RACKS[i],
                             fenced=False)
        for i in (1, 2, 3)]
    publish(b, [*regs, TopicRecord(name="t", topic_id=TOPIC_ID),
                PartitionRecord(topic_id=TOPIC_ID, partition_id=0, replicas=replicas, isr=isr, leader=leader,
                                leader_epoch=EPOCH, partition_epoch=EPOCH)])
    state = b.partition("t", 0)
    if ME not in replicas:
        assert state is None
        return None
    assert state is not None and state.replica is not None
    assert state.replica.is_leader == (leader == ME)
    return state


def leader_answers(b: Broker, state: PartitionState, *, records: bytes = b"", high_watermark: int) -> None:
    """The leader's answer to this follower's next fetch, applied as the replica fetcher does."""
    assert state.replica is not None and b.replicas is not None
    request = state.replica.next_fetch(now_ms=b.now_ms())
    assert request is not None
    state.replica.handle_fetch_response(request, FetchedPartition(error=E.NONE, high_watermark=high_watermark,
                                                                  log_start_offset=0, records=records),
                                        now_ms=b.now_ms())
    b.replicas.drain(state)


def consumer_fetch(offset: int, *, rack: str = "", epoch: int = -1, max_wait_ms: int = 0, min_bytes: int = 0,
                   session_id: int = 0, session_epoch: int = -1) -> FetchRequest:
    req = fetch_request([("t", 0, offset)], max_wait_ms=max_wait_ms, min_bytes=min_bytes, session_id=session_id,
                        session_epoch=session_epoch, topic_ids={"t": TOPIC_ID})
    req.rack_id = rack
    req.topics[0].partitions[0].current_leader_epoch = epoch
    return req


async def fetch_one(c, req: FetchRequest, version: int = 12) -> FetchResponse.PartitionData:
    resp = await c.request(req, version)
    assert isinstance(resp, FetchResponse) and resp.error_code == E.NONE, resp
    (data,) = fetched(resp).values()
    return data


def values(data: FetchResponse.PartitionData) -> list[tuple[int, bytes | None]]:
    return values_of(bytes(data.records)) if data.records else []  # type: ignore[arg-type]


FOUR = [b"r0", b"r1", b"r2", b"r3"]


def two_batches() -> bytes:
    """r0-r3 as the leader stores them, in two batches (a high watermark sits between batches:
    it is always some replica's log end)."""
    return (as_stored(batch(FOUR[:2]), base_offset=0, leader_epoch=EPOCH)
            + as_stored(batch(FOUR[2:]), base_offset=2, leader_epoch=EPOCH))


# --- the follower ----------------------------------------------------------------------------------


async def test_a_follower_serves_consumers_up_to_its_own_high_watermark(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            state = start_cluster(b, leader=2)
            leader_answers(b, state, records=two_batches(), high_watermark=2)
            assert (state.log.log_end_offset, state.log.high_watermark) == (4, 2)

            data = await fetch_one(c, consumer_fetch(0, rack="b", epoch=EPOCH), version=11)
            assert data.error_code == E.NONE, data
            assert (data.high_watermark, data.log_start_offset, data.preferred_read_replica) == (2, 0, -1)
            assert values(data) == [(0, b"r0"), (1, b"r1")]  # not r2, r3: above its high watermark
            # Kafka serves any v11+ consumer fetch from a follower, rack or not, epoch or not.
            data = await fetch_one(c, consumer_fetch(1), version=12)  # the whole batch holding offset 1
            assert values(data) == [(0, b"r0"), (1, b"r1")]

            # between its high watermark and its log end: nothing, no error
            data = await fetch_one(c, consumer_fetch(3, epoch=EPOCH))
            assert (data.error_code, values(data), data.high_watermark) == (E.NONE, [], 2), data
            assert (await fetch_one(c, consumer_fetch(4))).error_code == E.NONE  # its log end
            assert (await fetch_one(c, consumer_fetch(5))).error_code == E.OFFSET_OUT_OF_RANGE  # past it

            # The epoch it knows from the metadata decides.
            assert (await fetch_one(c, consumer_fetch(0, epoch=EPOCH - 1))).error_code == E.FENCED_LEADER_EPOCH
            assert (await fetch_one(c, consumer_fetch(0, epoch=EPOCH + 1))).error_code == E.UNKNOWN_LEADER_EPOCH
            fenced = await c.request(consumer_fetch(0, epoch=EPOCH - 1), 17)
            assert isinstance(fenced, FetchResponse)
            part = fenced.responses[0].partitions[0]
            assert (part.error_code, part.current_leader.leader_id, part.current_leader.leader_epoch) == (
                E.FENCED_LEADER_EPOCH, 2, EPOCH)
            assert [(e.node_id, e.host, e.port, e.rack) for e in fenced.node_endpoints] == [(2, "host2", 9002, "b")]

            # Below v11 (no client metadata) only the leader serves.
            old = await fetch_one(c, consumer_fetch(0), version=10)
            assert (old.error_code, values(old)) == (E.NOT_LEADER_OR_FOLLOWER, []), old

            # The leader moved its high watermark: the follower learns it on its next fetch.
            leader_answers(b, state, high_watermark=4)
            assert values(await fetch_one(c, consumer_fetch(2))) == [(2, b"r2"), (3, b"r3")]


async def test_a_long_poll_on_a_follower_is_woken_when_its_high_watermark_advances(autojump_clock):
    """Not by an append alone (the records are above the high watermark), and before max_wait."""
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            state = start_cluster(b, leader=2)
            leader_answers(b, state, records=as_stored(batch(FOUR[:2]), base_offset=0, leader_epoch=EPOCH),
                           high_watermark=2)
            out = []

            async def poll() -> None:
                start = trio.current_time()
                data = await fetch_one(c, consumer_fetch(2, max_wait_ms=10_000, min_bytes=1))
                out.append((trio.current_time() - start, data))

            async with trio.open_nursery() as n:
                n.start_soon(poll)
                await trio.sleep(1)
                leader_answers(b, state, records=as_stored(batch(FOUR[2:]), base_offset=2, leader_epoch=EPOCH),
                               high_watermark=2)  # appended, high watermark unchanged
                await trio.sleep(1)
                assert not out, "returned before the high watermark moved"
                leader_answers(b, state, high_watermark=4)
            ((waited_s, data),) = out
            assert 2 <= waited_s < 3, waited_s
            assert values(data) == [(2, b"r2"), (3, b"r3")]


async def test_fetch_sessions_work_on_a_follower(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            state = start_cluster(b, leader=2)
            leader_answers(b, state, records=two_batches(), high_watermark=2)
            full = await c.request(consumer_fetch(0, session_epoch=0), 12)
            assert isinstance(full, FetchResponse) and full.session_id != 0, full
            assert values(fetched(full)[("t", 0)]) == [(0, b"r0"), (1, b"r1")]
            session = full.session_id
            # the consumer moves to offset 2, its high watermark: nothing new, the partition is left out
            inc = await c.request(fetch_request([("t", 0, 2)], session_id=session, session_epoch=1,
                                                topic_ids={"t": TOPIC_ID}), 12)
            assert isinstance(inc, FetchResponse) and (inc.error_code, inc.session_id) == (E.NONE, session)
            assert inc.responses == [], inc
            leader_answers(b, state, high_watermark=4)
            inc = await c.request(fetch_request([], session_id=session, session_epoch=2), 12)
            assert isinstance(inc, FetchResponse) and inc.error_code == E.NONE, inc
            data = fetched(inc)[("t", 0)]
            assert (data.high_watermark, values(data)) == (4, [(2, b"r2"), (3, b"r3")])


async def test_list_offsets_stays_with_the_leader(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            start_cluster(b, leader=2)
            req = ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsRequest.ListOffsetsTopic(
                name="t", partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)])])
            resp = await c.request(req, 8)
            assert isinstance(resp, ListOffsetsResponse)
            assert resp.topics[0].partitions[0].error_code == E.NOT_LEADER_OR_FOLLOWER


async def test_a_broker_without_a_replica_names_the_leader(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            start_cluster(b, leader=2, replicas=(2, 3), isr=(2, 3))
            assert b.partition("t", 0) is None
            resp = await c.request(consumer_fetch(0, epoch=EPOCH), 17)
            assert isinstance(resp, FetchResponse)
            part = resp.responses[0].partitions[0]
            assert (part.error_code, part.current_leader.leader_id, part.current_leader.leader_epoch) == (
                E.NOT_LEADER_OR_FOLLOWER, 2, EPOCH), part
            assert [(e.node_id, e.port) for e in resp.node_endpoints] == [(2, 9002)]
            unknown = fetch_request([("t", 1, 0)], topic_ids={"t": TOPIC_ID})  # no such partition
            resp = await c.request(unknown, 17)
            assert isinstance(resp, FetchResponse)
            assert resp.responses[0].partitions[0].error_code == E.UNKNOWN_TOPIC_OR_PARTITION


# --- the leader --------------------------------------------------------------------------------------


def follower_fetch(replica_id: int, offset: int, *, log_start: int = 0) -> FetchRequest:
    """A follower's Fetch (v15+: the replica id in ReplicaState)."""
    req = fetch_request([("t", 0, offset)], topic_ids={"t": TOPIC_ID})
    req.replica_state = FetchRequest.ReplicaState(replica_id=replica_id, replica_epoch=-1)
    p = req.topics[0].partitions[0]
    p.current_leader_epoch, p.log_start_offset = EPOCH, log_start
    return req


async def leading_with_followers_at(c, b: Broker, positions: dict[int, int]) -> PartitionState:
    state = start_cluster(b, leader=ME)
    assert state.replica is not None
    info = state.replica.append(batch(FOUR), acks=1, now_ms=b.now_ms(), timeout_ms=1)
    assert info.error == E.NONE
    for replica_id, offset in positions.items():
        resp = await c.request(follower_fetch(replica_id, offset), 17)
        assert isinstance(resp, FetchResponse)
        assert resp.responses[0].partitions[0].error_code == E.NONE, resp
    return state


async def test_the_leader_sends_a_consumer_to_an_in_sync_follower_in_its_rack(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            state = await leading_with_followers_at(c, b, {2: 4, 3: 4})
            assert state.log.high_watermark == 4

            start = trio.current_time()
            data = await fetch_one(c, consumer_fetch(0, rack="b", epoch=EPOCH, max_wait_ms=5_000, min_bytes=1),
                                   version=11)
            assert trio.current_time() == start, "a redirect is answered at once"
            assert (data.error_code, data.preferred_read_replica, values(data)) == (E.NONE, 2, []), data
            assert (data.high_watermark, data.last_stable_offset, data.log_start_offset) == (4, 4, 0)
            assert (await fetch_one(c, consumer_fetch(2, rack="c"))).preferred_read_replica == 3

            # The leader keeps it: no rack, its own rack, a rack nobody is in, a version without a rack.
            for req, version in ((consumer_fetch(0), 12), (consumer_fetch(0, rack="a"), 12),
                                 (consumer_fetch(0, rack="z"), 12), (consumer_fetch(0, rack="b"), 10)):
                data = await fetch_one(c, req, version)
                assert (data.preferred_read_replica, len(values(data))) == (-1, 4), (version, req.rack_id, data)

            # An epoch error wins over the redirect.
            data = await fetch_one(c, consumer_fetch(0, rack="b", epoch=EPOCH - 1))
            assert (data.error_code, data.preferred_read_replica) == (E.FENCED_LEADER_EPOCH, -1), data

            # A session always carries a redirected partition.
            full = await c.request(consumer_fetch(0, rack="b", session_epoch=0), 12)
            assert isinstance(full, FetchResponse) and full.session_id != 0
            again = fetch_request([], session_id=full.session_id, session_epoch=1)
            again.rack_id = "b"  # each request carries the rack
            inc = await c.request(again, 12)
            assert isinstance(inc, FetchResponse)
            assert fetched(inc)[("t", 0)].preferred_read_replica == 2, inc


async def test_only_a_follower_that_holds_the_offset_is_preferred(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await leading_with_followers_at(c, b, {2: 2, 3: 4})
            assert (await fetch_one(c, consumer_fetch(2, rack="b"))).preferred_read_replica == 2  # its log end
            data = await fetch_one(c, consumer_fetch(3, rack="b"))  # beyond what 2 has: the leader's
            assert (data.error_code, data.preferred_read_replica) == (E.NONE, -1), data
            await c.request(follower_fetch(2, 4, log_start=3), 17)  # 2 caught up, but its log starts at 3
            assert (await fetch_one(c, consumer_fetch(2, rack="b"))).preferred_read_replica == -1
            assert (await fetch_one(c, consumer_fetch(3, rack="b"))).preferred_read_replica == 2


async def test_a_follower_outside_the_isr_is_not_preferred(autojump_clock):
    b = clustered()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            state = start_cluster(b, leader=ME, isr=(1, 3))
            assert state.replica is not None
            assert state.replica.append(batch(FOUR), acks=1, now_ms=b.now_ms(), timeout_ms=1).error == E.NONE
            await c.request(follower_fetch(2, 4), 17)  # caught up, but the controller has not let it in yet
            assert 2 not in state.replica.isr
            assert (await fetch_one(c, consumer_fetch(0, rack="b"))).preferred_read_replica == -1


async def test_without_a_selector_the_leader_serves_every_consumer(autojump_clock):
    b = clustered(selector=False)
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await leading_with_followers_at(c, b, {2: 4, 3: 4})
            data = await fetch_one(c, consumer_fetch(0, rack="b", epoch=EPOCH))
            assert (data.preferred_read_replica, len(values(data))) == (-1, 4), data
