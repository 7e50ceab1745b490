"""In-process broker tests: real request frames over trio memory streams, time on a mock clock.

Goal: every API the broker serves behaves as Kafka's broker does for the requests clients send,
checked through the same path a socket takes (``Server.handle_connection``: framing, header
versions, dispatch, ordered responses), without sockets or wall-clock waits. The broker's clock is
wired to trio's, so with ``autojump_clock`` a long poll's ``max_wait_ms`` passes in no real time and
"returned early" is a fact about virtual time, not a race.
"""

from __future__ import annotations

import random
import struct

import pytest
import trio
from broker_testkit import (
    BASE_MS,
    as_stored,
    batch,
    fetch_request,
    fetched,
    make_broker,
    only_partition,
    produce_request,
    records_bytes,
    serving,
    values_of,
)

from broker.dispatch import ROUTES
from protocol.error_codes import ErrorCode
from protocol.headers import decode_response
from protocol.messages import REQUESTS, ApiKey
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.create_partitions import CreatePartitionsRequest, CreatePartitionsResponse
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.delete_records import DeleteRecordsRequest, DeleteRecordsResponse
from protocol.messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from protocol.messages.describe_acls import DescribeAclsRequest, DescribeAclsResponse
from protocol.messages.describe_topic_partitions import (
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
)
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.init_producer_id import InitProducerIdRequest, InitProducerIdResponse
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.offset_for_leader_epoch import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
)
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.primitives import ZERO_UUID
from replication.partition import LeaderAndIsr, Partition
from storage.log import AppendRejected

E = ErrorCode
TIMEOUT_S = 30  # virtual seconds with autojump; a hang fails at once instead of stalling the run


# --- small request helpers ------------------------------------------------------------------------

async def create_topic(client, name: str, partitions: int = 1, configs: dict[str, str] | None = None,
                       *, version: int = 7) -> CreateTopicsResponse.CreatableTopicResult:
    req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1,
        configs=[CreateTopicsRequest.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])])
    resp = await client.request(req, version)
    assert isinstance(resp, CreateTopicsResponse)
    (result,) = resp.topics
    return result


async def create_ok(client, name: str, partitions: int = 1, configs: dict[str, str] | None = None):
    r = await create_topic(client, name, partitions, configs)
    assert r.error_code == E.NONE, r
    return r


async def produce(client, topic: str, partition: int, records: bytes, *, acks: int = -1,
                  version: int = 9) -> ProduceResponse.PartitionProduceResponse:
    resp = await client.request(produce_request(topic, partition, records, acks=acks), version)
    assert isinstance(resp, ProduceResponse)
    return only_partition(resp)


async def fetch(client, req: FetchRequest, version: int = 12) -> FetchResponse:
    resp = await client.request(req, version)
    assert isinstance(resp, FetchResponse)
    return resp


async def fetch_one(client, topic: str, partition: int, offset: int, **kw) -> FetchResponse.PartitionData:
    resp = await fetch(client, fetch_request([(topic, partition, offset)], **kw))
    assert resp.error_code == E.NONE, resp
    return fetched(resp)[(topic, partition)]


async def metadata(client, names: list[str] | None, *, version: int = 12,
                   allow_auto_topic_creation: bool = True) -> MetadataResponse:
    topics = None if names is None else [MetadataRequest.MetadataRequestTopic(name=n) for n in names]
    resp = await client.request(MetadataRequest(topics=topics, allow_auto_topic_creation=allow_auto_topic_creation),
                                version)
    assert isinstance(resp, MetadataResponse)
    return resp


async def list_offset(client, topic: str, partition: int, timestamp: int,
                      version: int = 8) -> ListOffsetsResponse.ListOffsetsPartitionResponse:
    req = ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsRequest.ListOffsetsTopic(
        name=topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=partition,
                                                                       timestamp=timestamp)])])
    resp = await client.request(req, version)
    assert isinstance(resp, ListOffsetsResponse)
    return resp.topics[0].partitions[0]


async def init_producer_id(client) -> tuple[int, int]:
    resp = await client.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000), 4)
    assert isinstance(resp, InitProducerIdResponse)
    assert resp.error_code == E.NONE, resp
    return resp.producer_id, resp.producer_epoch


# --- ApiVersions ------------------------------------------------------------------------------------

async def test_every_advertised_api_and_version_is_answered(autojump_clock):
    """Each (API, version) ApiVersions advertises takes a request of that version and answers it in
    a response that decodes at that version, on one connection, in order."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            av = await c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
            assert isinstance(av, ApiVersionsResponse) and av.error_code == E.NONE
            advertised = {k.api_key: (k.min_version, k.max_version) for k in av.api_keys}
            assert advertised == {k: (r.min_version, r.max_version) for k, r in ROUTES.items()}
            for key, (lo, hi) in sorted(advertised.items()):
                for version in range(lo, hi + 1):
                    body = REQUESTS[key]()
                    if key == ApiKey.PRODUCE:
                        body.acks = 1  # acks=0 is answered by silence
                    resp = await c.request(body, version)
                    error = getattr(resp, "error_code", E.NONE)
                    assert error != E.UNSUPPORTED_VERSION, (key, version, resp)


async def test_unsupported_version_of_a_served_api_gets_unsupported_version(autojump_clock):
    """Produce v2 and ListOffsets v0 exist in the schemas but are not served: each is answered
    with a well-formed response of that version, and the connection carries on."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            # Produce v0-v2 are advertised (as Kafka 4.0 does, for old librdkafka's compression)
            # but every partition is refused.
            assert ROUTES[ApiKey.PRODUCE].min_version == 0
            resp = await c.request(produce_request("t", 0, batch([b"x"]), acks=1), 2)
            assert isinstance(resp, ProduceResponse)
            assert [p.error_code for t in resp.responses for p in t.partition_responses] == [E.UNSUPPORTED_VERSION]
            resp = await c.request(ListOffsetsRequest(), 0)
            assert isinstance(resp, ListOffsetsResponse)
            # An API the broker does not serve at all, whose response has a top-level error code.
            assert ApiKey.DESCRIBE_ACLS not in ROUTES
            resp = await c.request(DescribeAclsRequest(), 1)
            assert isinstance(resp, DescribeAclsResponse)
            assert resp.error_code == E.UNSUPPORTED_VERSION
            # Still serving on the same connection.
            av = await c.request(ApiVersionsRequest(), 0)
            assert av.error_code == E.NONE


async def test_api_versions_from_the_future_gets_v0_response_with_the_list(autojump_clock):
    """KIP-511: an ApiVersions version the broker does not know (body unparseable) is answered with
    a v0 response (response header v0), error UNSUPPORTED_VERSION, and the full version list."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            correlation_id = 4242
            # Header v2 shape (key, version, correlation id, client id, tags) and a body of junk.
            body = struct.pack(">hhih", ApiKey.API_VERSIONS, 127, correlation_id, 1) + b"c" + b"\x00" + b"\xde\xad"
            await c.send_raw(struct.pack(">i", len(body)) + body)
            frame = await c.read_frame()
            assert frame is not None
            got_id, resp = decode_response(memoryview(frame), ApiKey.API_VERSIONS, 0)
            assert got_id == correlation_id
            assert isinstance(resp, ApiVersionsResponse)
            assert resp.error_code == E.UNSUPPORTED_VERSION
            assert {k.api_key for k in resp.api_keys} == set(ROUTES)
            av = next(k for k in resp.api_keys if k.api_key == ApiKey.API_VERSIONS)
            assert av.min_version == 0 and av.max_version >= 3


# --- Metadata ---------------------------------------------------------------------------------------

async def test_metadata_all_topics_and_topic_ids(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            a = await create_ok(c, "alpha", 3)
            b = await create_ok(c, "beta", 1)
            for version, names in ((0, []), (1, None), (9, None), (12, None)):
                md = await metadata(c, names, version=version)
                by_name = {t.name: t for t in md.topics}
                assert set(by_name) == {"alpha", "beta"}, (version, md)
                assert [p.partition_index for p in by_name["alpha"].partitions] == [0, 1, 2]
                for p in by_name["alpha"].partitions:
                    assert p.leader_id == h.broker.node_id and p.isr_nodes == [h.broker.node_id]
                if version >= 10:
                    assert by_name["alpha"].topic_id == a.topic_id != ZERO_UUID
                    assert by_name["beta"].topic_id == b.topic_id != ZERO_UUID
                else:
                    assert by_name["alpha"].topic_id == ZERO_UUID
            assert [b.node_id for b in md.brokers] == [h.broker.node_id]
            assert md.controller_id == h.broker.node_id and md.cluster_id
            # v12: a topic by id (name null).
            req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(topic_id=a.topic_id, name=None)])
            md = await c.request(req, 12)
            assert [(t.name, t.error_code) for t in md.topics] == [("alpha", E.NONE)]


async def test_describe_topic_partitions_pages_with_a_cursor(autojump_clock):
    """DescribeTopicPartitions (KIP-966's describe): topics in name order, at most the partition
    limit per response, and a NextCursor where the next page starts; named topics that do not
    exist carry an error; a cursor naming a topic not asked for is INVALID_REQUEST."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            a = await create_ok(c, "alpha", 3)
            await create_ok(c, "beta", 2)
            DTP = DescribeTopicPartitionsRequest

            async def page(limit: int, cursor: tuple[str, int] | None, names: list[str] | None = None
                           ) -> DescribeTopicPartitionsResponse:
                req = DTP(topics=[DTP.TopicRequest(name=n) for n in names or []], response_partition_limit=limit,
                          cursor=DTP.Cursor(topic_name=cursor[0], partition_index=cursor[1]) if cursor else None)
                return await c.request(req, 0)

            seen: list[tuple[str, int]] = []
            cursor: tuple[str, int] | None = None
            for _ in range(10):
                resp = await page(2, cursor)
                for t in resp.topics:
                    assert t.error_code == E.NONE
                    for p in t.partitions:
                        assert (p.leader_id, p.isr_nodes, p.eligible_leader_replicas, p.last_known_elr) == (
                            h.broker.node_id, [h.broker.node_id], [], [])
                        seen.append((t.name, p.partition_index))
                assert sum(len(t.partitions) for t in resp.topics) <= 2
                if resp.next_cursor is None:
                    break
                cursor = (resp.next_cursor.topic_name, resp.next_cursor.partition_index)
            assert seen == [("alpha", 0), ("alpha", 1), ("alpha", 2), ("beta", 0), ("beta", 1)]
            whole = await page(2000, None, ["beta", "nope", "alpha"])
            assert [(t.name, t.error_code) for t in whole.topics] == [
                ("alpha", E.NONE), ("beta", E.NONE), ("nope", E.UNKNOWN_TOPIC_OR_PARTITION)]
            assert whole.topics[0].topic_id == a.topic_id and whole.next_cursor is None
            bad = await page(10, ("zeta", 0), ["alpha"])
            assert [(t.name, t.error_code) for t in bad.topics] == [("alpha", E.INVALID_REQUEST)]


async def test_metadata_auto_create_on(autojump_clock):
    async with serving(make_broker(overrides=["num.partitions=2"])) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            md = await metadata(c, ["auto-made"], version=12)
            (t,) = md.topics
            # Kafka answers LEADER_NOT_AVAILABLE until the new topic's leaders are elected; a
            # synchronous create may answer NONE. Either way the topic now exists.
            assert t.error_code in (E.NONE, E.LEADER_NOT_AVAILABLE), t
            md = await metadata(c, ["auto-made"], version=12)
            (t,) = md.topics
            assert t.error_code == E.NONE and len(t.partitions) == 2 and t.topic_id != ZERO_UUID
            # allow_auto_topic_creation=false (v4+) is obeyed even with the broker setting on.
            md = await metadata(c, ["not-made"], version=12, allow_auto_topic_creation=False)
            assert [(t.name, t.error_code) for t in md.topics] == [("not-made", E.UNKNOWN_TOPIC_OR_PARTITION)]
            assert h.broker.topics.get("not-made") is None


async def test_metadata_auto_create_off_and_invalid_names(autojump_clock):
    async with serving(make_broker(overrides=["auto.create.topics.enable=false"])) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            md = await metadata(c, ["nope"], version=12)
            assert [(t.name, t.error_code) for t in md.topics] == [("nope", E.UNKNOWN_TOPIC_OR_PARTITION)]
            md = await metadata(c, ["bad name!", "x" * 250, ".."], version=12)
            assert [t.error_code for t in md.topics] == [E.INVALID_TOPIC_EXCEPTION] * 3
            assert len(h.broker.topics) == 0


# --- Produce ----------------------------------------------------------------------------------------

async def test_produce_acks_0_gives_no_response_and_acks_1_and_all_give_offsets(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            r = await produce(c, "t", 0, batch([b"a", b"b", b"c"]), acks=1)
            assert (r.error_code, r.base_offset, r.log_start_offset) == (E.NONE, 0, 0)
            r = await produce(c, "t", 0, batch([b"d"]), acks=-1)
            assert (r.error_code, r.base_offset) == (E.NONE, 3)
            # acks=0: nothing comes back; the next frame on the wire answers the next request.
            await c.send(produce_request("t", 0, batch([b"e", b"f"]), acks=0), 9)
            md_id = await c.send(MetadataRequest(topics=None), 12)
            md = await c.receive(ApiKey.METADATA, 12, md_id)
            assert isinstance(md, MetadataResponse)
            r = await produce(c, "t", 0, batch([b"g"]), acks=1)
            assert r.base_offset == 6  # the acks=0 batch was appended at 4..5
            p = await fetch_one(c, "t", 0, 0)
            assert [v for _, v in values_of(records_bytes(p))] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


async def test_produce_errors(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "small", 1, {"max.message.bytes": "1024"})
            big = batch([bytes(2000)])
            r = await produce(c, "small", 0, big)
            assert r.error_code == E.MESSAGE_TOO_LARGE, r
            r = await produce(c, "small", 0, batch([bytes(100)]))
            assert (r.error_code, r.base_offset) == (E.NONE, 0)

            bad = bytearray(batch([b"hello", b"world"]))
            bad[-1] ^= 0xFF  # inside the CRC-covered records
            r = await produce(c, "small", 0, bytes(bad))
            assert r.error_code == E.CORRUPT_MESSAGE, r

            r = await produce(c, "missing", 0, batch([b"x"]))
            assert r.error_code == E.UNKNOWN_TOPIC_OR_PARTITION, r
            r = await produce(c, "small", 7, batch([b"x"]))
            assert r.error_code == E.UNKNOWN_TOPIC_OR_PARTITION, r
            r = await produce(c, "small", 0, batch([b"x"]), acks=2)
            assert r.error_code == E.INVALID_REQUIRED_ACKS, r
            assert h.broker.topics.get("missing") is None
            # None of the refused batches reached the log.
            assert h.broker.partition("small", 0).log.log_end_offset == 1


async def test_idempotent_producer(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "idem")
            pid, epoch = await init_producer_id(c)
            assert pid >= 0 and epoch == 0
            b0 = batch([b"a", b"b", b"c"], producer_id=pid, producer_epoch=0, base_sequence=0)
            b1 = batch([b"d", b"e"], producer_id=pid, producer_epoch=0, base_sequence=3)
            assert (await produce(c, "idem", 0, b0)).base_offset == 0
            assert (await produce(c, "idem", 0, b1)).base_offset == 3
            # Retries of either of the last batches: the original offsets, nothing appended.
            r = await produce(c, "idem", 0, b0)
            assert (r.error_code, r.base_offset) == (E.NONE, 0)
            r = await produce(c, "idem", 0, b1)
            assert (r.error_code, r.base_offset) == (E.NONE, 3)
            assert h.broker.partition("idem", 0).log.log_end_offset == 5
            # A gap in the sequence.
            gap = batch([b"z"], producer_id=pid, producer_epoch=0, base_sequence=7)
            assert (await produce(c, "idem", 0, gap)).error_code == E.OUT_OF_ORDER_SEQUENCE_NUMBER
            # The next in sequence is still fine.
            r = await produce(c, "idem", 0, batch([b"f"], producer_id=pid, producer_epoch=0, base_sequence=5))
            assert (r.error_code, r.base_offset) == (E.NONE, 5)
            # A bumped epoch starts again at sequence 0; then the old epoch is fenced.
            r = await produce(c, "idem", 0, batch([b"g"], producer_id=pid, producer_epoch=1, base_sequence=0))
            assert (r.error_code, r.base_offset) == (E.NONE, 6)
            old = batch([b"h"], producer_id=pid, producer_epoch=0, base_sequence=6)
            assert (await produce(c, "idem", 0, old)).error_code == E.INVALID_PRODUCER_EPOCH
            # A second producer gets a different id.
            pid2, _ = await init_producer_id(c)
            assert pid2 != pid
            p = await fetch_one(c, "idem", 0, 0)
            assert [v for _, v in values_of(records_bytes(p))] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


# --- Fetch ------------------------------------------------------------------------------------------

async def test_fetch_returns_the_produced_bytes_exactly(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            sent = [batch([b"v%d" % i for i in range(n)], timestamp=BASE_MS + n) for n in (1, 5, 2)]
            expected = b""
            for b in sent:
                r = await produce(c, "t", 0, b)
                expected += as_stored(b, base_offset=r.base_offset, leader_epoch=0)
            for version in (4, 11, 12, 17):
                if version >= 13:
                    md = await metadata(c, ["t"])
                    ids = {"t": md.topics[0].topic_id}
                    resp = await fetch(c, fetch_request([("t", 0, 0)], topic_ids=ids), version)
                    assert resp.responses[0].topic_id == ids["t"]
                    p = resp.responses[0].partitions[0]
                else:
                    resp = await fetch(c, fetch_request([("t", 0, 0)]), version)
                    p = fetched(resp)[("t", 0)]
                assert p.error_code == E.NONE
                assert records_bytes(p) == expected, version
            # From the middle: whole batches, starting with the batch holding the offset.
            p = await fetch_one(c, "t", 0, 3)
            assert records_bytes(p) == expected[len(sent[0]):]


async def test_fetch_offset_out_of_range(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            await produce(c, "t", 0, batch([b"a", b"b"]))
            p = await fetch_one(c, "t", 0, 2)  # the log end: nothing yet, no error
            assert (p.error_code, records_bytes(p), p.high_watermark) == (E.NONE, b"", 2)
            for offset in (3, 1000, -1):
                p = await fetch_one(c, "t", 0, offset)
                assert p.error_code == E.OFFSET_OUT_OF_RANGE, (offset, p)
            p = await fetch_one(c, "nope", 0, 0)
            assert p.error_code == E.UNKNOWN_TOPIC_OR_PARTITION


async def test_fetch_max_bytes_and_partition_max_bytes(autojump_clock):
    """Limits are met with whole batches; only the first batch of the first partition with data may
    exceed them (KIP-74), so a consumer always makes progress."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t", 2)
            stored: dict[int, list[bytes]] = {0: [], 1: []}
            for p in (0, 1):
                for i in range(3):
                    b = batch([bytes([65 + i]) * 500])
                    r = await produce(c, "t", p, b)
                    stored[p].append(as_stored(b, base_offset=r.base_offset))
            size = len(stored[0][0])
            assert all(len(b) == size for bs in stored.values() for b in bs)
            both = [("t", 0, 0), ("t", 1, 0)]

            # max_bytes smaller than one batch: the first batch of partition 0 only.
            resp = await fetch(c, fetch_request(both, max_bytes=10))
            got = fetched(resp)
            assert records_bytes(got[("t", 0)]) == stored[0][0]
            assert records_bytes(got[("t", 1)]) == b""
            # max_bytes just short of two batches: one batch, never a partial one.
            resp = await fetch(c, fetch_request(both, max_bytes=2 * size - 1))
            got = fetched(resp)
            assert records_bytes(got[("t", 0)]) == stored[0][0]
            assert records_bytes(got[("t", 1)]) == b""
            # max_bytes for four batches: three from partition 0, one from partition 1.
            resp = await fetch(c, fetch_request(both, max_bytes=4 * size))
            got = fetched(resp)
            assert records_bytes(got[("t", 0)]) == b"".join(stored[0])
            assert records_bytes(got[("t", 1)]) == stored[1][0]

            # partition_max_bytes below one batch: only the first partition gets its first batch.
            resp = await fetch(c, fetch_request(both, partition_max_bytes=10))
            got = fetched(resp)
            assert records_bytes(got[("t", 0)]) == stored[0][0]
            assert records_bytes(got[("t", 1)]) == b""
            # partition_max_bytes of two batches: two from each.
            resp = await fetch(c, fetch_request(both, partition_max_bytes=2 * size))
            got = fetched(resp)
            assert records_bytes(got[("t", 0)]) == b"".join(stored[0][:2])
            assert records_bytes(got[("t", 1)]) == b"".join(stored[1][:2])
            # Partition 0 empty at its fetch offset: partition 1 is then the first with data.
            resp = await fetch(c, fetch_request([("t", 0, 3), ("t", 1, 0)], partition_max_bytes=10))
            got = fetched(resp)
            assert records_bytes(got[("t", 0)]) == b""
            assert records_bytes(got[("t", 1)]) == stored[1][0]


async def test_fetch_long_poll_woken_by_produce_on_another_connection(autojump_clock):
    async with serving(make_broker()) as h:
        consumer, producer = h.connect(), h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(producer, "t")
            result: list[tuple[float, FetchResponse.PartitionData]] = []

            async def poll() -> None:
                start = trio.current_time()
                p = await fetch_one(consumer, "t", 0, 0, max_wait_ms=20_000, min_bytes=1)
                result.append((trio.current_time() - start, p))

            async with trio.open_nursery() as n:
                n.start_soon(poll)
                await trio.sleep(3)
                assert not result, "the fetch returned before any data existed"
                b = batch([b"wake"])
                r = await produce(producer, "t", 0, b, acks=1)
            ((waited_s, p),) = result
            assert 3 <= waited_s < 4, waited_s  # woken by the append, long before max_wait
            assert records_bytes(p) == as_stored(b, base_offset=r.base_offset)
            assert p.high_watermark == 1


async def test_fetch_long_poll_times_out_and_min_bytes_met_returns_at_once(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            start = trio.current_time()
            p = await fetch_one(c, "t", 0, 0, max_wait_ms=5_000, min_bytes=1)
            assert trio.current_time() - start == pytest.approx(5.0, abs=0.1)
            assert records_bytes(p) == b""
            await produce(c, "t", 0, batch([b"x" * 100]))
            start = trio.current_time()
            p = await fetch_one(c, "t", 0, 0, max_wait_ms=5_000, min_bytes=1)
            assert trio.current_time() - start < 0.01
            assert values_of(records_bytes(p)) == [(0, b"x" * 100)]
            # min_bytes larger than what exists: waits the whole max_wait, then returns what there is.
            start = trio.current_time()
            p = await fetch_one(c, "t", 0, 0, max_wait_ms=2_000, min_bytes=1_000_000)
            assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
            assert values_of(records_bytes(p)) == [(0, b"x" * 100)]


async def test_fetch_offsets_fields(autojump_clock):
    """High watermark, last stable offset (no transactions: the high watermark) and log start offset."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            p = await fetch_one(c, "t", 0, 0)
            assert (p.high_watermark, p.last_stable_offset, p.log_start_offset) == (0, 0, 0)
            await produce(c, "t", 0, batch([b"1", b"2", b"3"]))
            await produce(c, "t", 0, batch([b"4", b"5"]))
            await delete_records(c, "t", 0, 3)
            p = await fetch_one(c, "t", 0, 3)
            assert (p.high_watermark, p.last_stable_offset, p.log_start_offset) == (5, 5, 3)
            assert p.error_code == E.NONE
            assert p.aborted_transactions in (None, [])


async def test_fetch_session_incremental_omits_unchanged_partitions(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t", 3)
            for p in range(3):
                await produce(c, "t", p, batch([b"p%d" % p]))
            parts = [("t", 0, 0), ("t", 1, 0), ("t", 2, 0)]
            # Full fetch that opens a session.
            resp = await fetch(c, fetch_request(parts, session_id=0, session_epoch=0), 12)
            assert resp.error_code == E.NONE and resp.session_id != 0
            sid = resp.session_id
            got = fetched(resp)
            assert sorted(got) == [("t", 0), ("t", 1), ("t", 2)]
            assert all(values_of(records_bytes(p)) for p in got.values())
            # Incremental: positions moved to 1 everywhere; nothing new anywhere -> empty response.
            moved = [("t", 0, 1), ("t", 1, 1), ("t", 2, 1)]
            resp = await fetch(c, fetch_request(moved, session_id=sid, session_epoch=1), 12)
            assert (resp.error_code, resp.session_id) == (E.NONE, sid)
            assert fetched(resp) == {}
            # Nothing listed, nothing changed: still empty.
            resp = await fetch(c, fetch_request([], session_id=sid, session_epoch=2), 12)
            assert fetched(resp) == {}
            # New data on partition 1 only: only partition 1 comes back.
            await produce(c, "t", 1, batch([b"new"]))
            resp = await fetch(c, fetch_request([], session_id=sid, session_epoch=3), 12)
            got = fetched(resp)
            assert list(got) == [("t", 1)]
            assert values_of(records_bytes(got[("t", 1)])) == [(1, b"new")]
            assert got[("t", 1)].high_watermark == 2
            # A stale epoch is refused with a top-level error.
            resp = await fetch(c, fetch_request([], session_id=sid, session_epoch=3), 12)
            assert resp.error_code == E.INVALID_FETCH_SESSION_EPOCH
            resp = await fetch(c, fetch_request([], session_id=sid + 1, session_epoch=1), 12)
            assert resp.error_code == E.FETCH_SESSION_ID_NOT_FOUND


# --- ListOffsets, OffsetForLeaderEpoch, DeleteRecords ------------------------------------------------

async def delete_records(client, topic: str, partition: int, offset: int,
                         version: int = 2) -> DeleteRecordsResponse.DeleteRecordsPartitionResult:
    req = DeleteRecordsRequest(timeout_ms=30_000, topics=[DeleteRecordsRequest.DeleteRecordsTopic(
        name=topic, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=partition,
                                                                           offset=offset)])])
    resp = await client.request(req, version)
    assert isinstance(resp, DeleteRecordsResponse)
    return resp.topics[0].partitions[0]


async def test_list_offsets(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            r = await list_offset(c, "t", 0, -1)
            assert (r.error_code, r.offset) == (E.NONE, 0)
            r = await list_offset(c, "t", 0, -3)
            assert (r.error_code, r.offset, r.timestamp) == (E.NONE, -1, -1)
            # Timestamps 100, 101, 102 | 500, 501 | 300 (max timestamp is at offset 4).
            await produce(c, "t", 0, batch([b"a", b"b", b"c"], timestamp=BASE_MS + 100))
            await produce(c, "t", 0, batch([b"d", b"e"], timestamp=BASE_MS + 500))
            await produce(c, "t", 0, batch([b"f"], timestamp=BASE_MS + 300))
            assert (await list_offset(c, "t", 0, -2)).offset == 0
            r = await list_offset(c, "t", 0, -1)
            assert (r.offset, r.leader_epoch) == (6, 0)
            r = await list_offset(c, "t", 0, -3)
            assert (r.offset, r.timestamp) == (4, BASE_MS + 501)
            for ts, offset, found_ts in ((BASE_MS, 0, BASE_MS + 100), (BASE_MS + 101, 1, BASE_MS + 101),
                                         (BASE_MS + 103, 3, BASE_MS + 500), (BASE_MS + 501, 4, BASE_MS + 501)):
                r = await list_offset(c, "t", 0, ts)
                assert (r.error_code, r.offset, r.timestamp) == (E.NONE, offset, found_ts), ts
            r = await list_offset(c, "t", 0, BASE_MS + 502)
            assert (r.error_code, r.offset, r.timestamp) == (E.NONE, -1, -1)
            r = await list_offset(c, "nope", 0, -1)
            assert r.error_code == E.UNKNOWN_TOPIC_OR_PARTITION
            # After DeleteRecords, earliest is the new log start.
            await delete_records(c, "t", 0, 2)
            assert (await list_offset(c, "t", 0, -2)).offset == 2
            r = await list_offset(c, "t", 0, BASE_MS)
            assert r.offset == 2


async def test_offset_for_leader_epoch(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()

        async def ofle(epoch: int, current: int = -1, topic: str = "t"):
            req = OffsetForLeaderEpochRequest(replica_id=-1, topics=[OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
                topic=topic, partitions=[OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                    partition=0, current_leader_epoch=current, leader_epoch=epoch)])])
            resp = await c.request(req, 4)
            assert isinstance(resp, OffsetForLeaderEpochResponse)
            return resp.topics[0].partitions[0]

        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            await produce(c, "t", 0, batch([b"a", b"b", b"c"]))
            r = await ofle(0)
            assert (r.error_code, r.leader_epoch, r.end_offset) == (E.NONE, 0, 3)
            r = await ofle(0, current=0)
            assert (r.error_code, r.end_offset) == (E.NONE, 3)
            r = await ofle(0, current=5)  # the client has seen a newer leader than this one
            assert r.error_code == E.UNKNOWN_LEADER_EPOCH
            r = await ofle(0, topic="nope")
            assert r.error_code == E.UNKNOWN_TOPIC_OR_PARTITION


async def test_offset_for_leader_epoch_on_an_empty_partition(autojump_clock):
    """A leader records its epoch's start offset when it becomes leader (Kafka's makeLeader calls
    maybeAssignEpochStartOffset(leaderEpoch, logEndOffset)), so even a partition with no records
    answers its current epoch with the log end offset."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            req = OffsetForLeaderEpochRequest(replica_id=-1, topics=[OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
                topic="t", partitions=[OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                    partition=0, current_leader_epoch=0, leader_epoch=0)])])
            r = (await c.request(req, 4)).topics[0].partitions[0]
            assert (r.error_code, r.leader_epoch, r.end_offset) == (E.NONE, 0, 0)


async def test_delete_records(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            for i in range(5):
                await produce(c, "t", 0, batch([b"%d" % i, b"%d'" % i]))  # offsets 2i, 2i+1
            r = await delete_records(c, "t", 0, 4)
            assert (r.error_code, r.low_watermark) == (E.NONE, 4)
            p = await fetch_one(c, "t", 0, 3)
            assert p.error_code == E.OFFSET_OUT_OF_RANGE and p.log_start_offset == 4
            p = await fetch_one(c, "t", 0, 4)
            assert p.error_code == E.NONE and p.log_start_offset == 4
            assert values_of(records_bytes(p))[0] == (4, b"2")
            # Lower than the current start: no change. Beyond the high watermark: refused.
            r = await delete_records(c, "t", 0, 1)
            assert (r.error_code, r.low_watermark) == (E.NONE, 4)
            r = await delete_records(c, "t", 0, 11)
            assert r.error_code == E.OFFSET_OUT_OF_RANGE
            # -1: up to the high watermark.
            r = await delete_records(c, "t", 0, -1)
            assert (r.error_code, r.low_watermark) == (E.NONE, 10)
            p = await fetch_one(c, "t", 0, 10)
            assert (p.error_code, records_bytes(p), p.log_start_offset, p.high_watermark) == (E.NONE, b"", 10, 10)
            r = await delete_records(c, "nope", 0, 0)
            assert r.error_code == E.UNKNOWN_TOPIC_OR_PARTITION


# --- CreateTopics, DeleteTopics, CreatePartitions ----------------------------------------------------

async def test_create_topics_validation(autojump_clock):
    async with serving(make_broker(overrides=["num.partitions=3"])) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            r = await create_ok(c, "good", 2, {"retention.ms": "1000"})
            assert (r.num_partitions, r.replication_factor) == (2, 1)
            assert r.topic_id != ZERO_UUID
            assert {x.name: x.value for x in r.configs}["retention.ms"] == "1000"
            # Defaults from the broker: -1 partitions and -1 replication factor.
            req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
                name="dflt", num_partitions=-1, replication_factor=-1)])
            (r,) = (await c.request(req, 7)).topics
            assert (r.error_code, r.num_partitions) == (E.NONE, 3)

            for name in ("", ".", "..", "has space", "star*", "x" * 250):
                r = await create_topic(c, name)
                assert r.error_code == E.INVALID_TOPIC_EXCEPTION, (name, r)
            r = await create_ok(c, "y" * 249)
            assert (await create_topic(c, "good")).error_code == E.TOPIC_ALREADY_EXISTS
            await create_ok(c, "a.b")
            assert (await create_topic(c, "a_b")).error_code == E.INVALID_TOPIC_EXCEPTION
            assert (await create_topic(c, "zero", 0)).error_code == E.INVALID_PARTITIONS
            assert (await create_topic(c, "neg", -5)).error_code == E.INVALID_PARTITIONS
            req = CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
                name="rf2", num_partitions=1, replication_factor=2)])
            (r,) = (await c.request(req, 7)).topics
            assert r.error_code == E.INVALID_REPLICATION_FACTOR
            r = await create_topic(c, "cfg", 1, {"no.such.config": "1"})
            assert r.error_code == E.INVALID_CONFIG
            r = await create_topic(c, "cfg2", 1, {"retention.ms": "soon"})
            assert r.error_code == E.INVALID_CONFIG
            names = {t.name for t in h.broker.topics}
            assert names == {"good", "dflt", "y" * 249, "a.b"}


async def test_create_topics_validate_only_creates_nothing(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            req = CreateTopicsRequest(validate_only=True, topics=[
                CreateTopicsRequest.CreatableTopic(name="v", num_partitions=4, replication_factor=1),
                CreateTopicsRequest.CreatableTopic(name="bad!", num_partitions=1, replication_factor=1)])
            resp = await c.request(req, 7)
            assert [(t.name, t.error_code) for t in resp.topics] == [("v", E.NONE), ("bad!", E.INVALID_TOPIC_EXCEPTION)]
            assert resp.topics[0].num_partitions == 4
            assert len(h.broker.topics) == 0
            md = await metadata(c, ["v"], allow_auto_topic_creation=False)
            assert md.topics[0].error_code == E.UNKNOWN_TOPIC_OR_PARTITION
            await create_ok(c, "v", 4)  # still free to create for real


async def test_create_topics_same_name_twice_in_one_request(autojump_clock):
    """Kafka answers a name given twice in one CreateTopics with INVALID_REQUEST ("Duplicate topic
    name.") and creates neither (ControllerApis.createTopics collects the duplicates first)."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            one = CreateTopicsRequest.CreatableTopic(name="dup", num_partitions=1, replication_factor=1)
            resp = await c.request(CreateTopicsRequest(topics=[one, one]), 7)
            assert resp.topics and all(t.error_code == E.INVALID_REQUEST for t in resp.topics), resp
            assert h.broker.topics.get("dup") is None


async def test_delete_topics(autojump_clock):
    async with serving(make_broker(overrides=["auto.create.topics.enable=false"])) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            a = await create_ok(c, "a", 2)
            b = await create_ok(c, "b")
            await produce(c, "a", 1, batch([b"x", b"y"]))
            resp = await c.request(DeleteTopicsRequest(topic_names=["a", "missing"], timeout_ms=1000), 5)
            assert isinstance(resp, DeleteTopicsResponse)
            assert [(t.name, t.error_code) for t in resp.responses] == [
                ("a", E.NONE), ("missing", E.UNKNOWN_TOPIC_OR_PARTITION)]
            md = await metadata(c, ["a"])
            assert md.topics[0].error_code == E.UNKNOWN_TOPIC_OR_PARTITION
            assert (await produce(c, "a", 1, batch([b"z"]))).error_code == E.UNKNOWN_TOPIC_OR_PARTITION
            assert (await fetch_one(c, "a", 1, 0)).error_code == E.UNKNOWN_TOPIC_OR_PARTITION
            # v6: by id; an unknown id is UNKNOWN_TOPIC_ID.
            req = DeleteTopicsRequest(timeout_ms=1000, topics=[
                DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=b.topic_id),
                DeleteTopicsRequest.DeleteTopicState(name=None, topic_id=a.topic_id)])
            resp = await c.request(req, 6)
            assert [(t.name, t.topic_id, t.error_code) for t in resp.responses] == [
                ("b", b.topic_id, E.NONE), (None, a.topic_id, E.UNKNOWN_TOPIC_ID)]
            assert len(h.broker.topics) == 0
            # The name is free again: a new id and an empty log.
            a2 = await create_ok(c, "a", 2)
            assert a2.topic_id != a.topic_id
            p = await fetch_one(c, "a", 1, 0)
            assert (p.error_code, p.high_watermark, records_bytes(p)) == (E.NONE, 0, b"")


async def test_delete_topics_disabled(autojump_clock):
    async with serving(make_broker(overrides=["delete.topic.enable=false"])) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "keep")
            resp = await c.request(DeleteTopicsRequest(topic_names=["keep"], timeout_ms=1000), 5)
            assert resp.responses[0].error_code == E.TOPIC_DELETION_DISABLED
            assert h.broker.topics.get("keep") is not None


async def test_create_partitions(autojump_clock):
    async with serving(make_broker(overrides=["auto.create.topics.enable=false"])) as h:
        c = h.connect()

        async def grow(name: str, count: int, *, validate_only: bool = False):
            req = CreatePartitionsRequest(timeout_ms=1000, validate_only=validate_only, topics=[
                CreatePartitionsRequest.CreatePartitionsTopic(name=name, count=count, assignments=None)])
            resp = await c.request(req, 3)
            assert isinstance(resp, CreatePartitionsResponse)
            (r,) = resp.results
            return r

        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t", 1)
            await produce(c, "t", 0, batch([b"old"]))
            assert (await grow("t", 3, validate_only=True)).error_code == E.NONE
            assert len((await metadata(c, ["t"])).topics[0].partitions) == 1
            assert (await grow("t", 3)).error_code == E.NONE
            md = await metadata(c, ["t"])
            assert [p.partition_index for p in md.topics[0].partitions] == [0, 1, 2]
            r = await produce(c, "t", 2, batch([b"new"]))
            assert (r.error_code, r.base_offset) == (E.NONE, 0)
            assert values_of(records_bytes(await fetch_one(c, "t", 0, 0))) == [(0, b"old")]
            assert (await grow("t", 3)).error_code == E.INVALID_PARTITIONS
            assert (await grow("t", 2)).error_code == E.INVALID_PARTITIONS
            assert (await grow("missing", 2)).error_code == E.UNKNOWN_TOPIC_OR_PARTITION


# --- Kafka's request-level checks that clients rarely trip ------------------------------------------

async def test_api_versions_v3_checks_client_software_name_and_version(autojump_clock):
    """ApiVersionsRequest.isValid (v3+): both strings must match [a-zA-Z0-9](?:[a-zA-Z0-9\\-.]*[a-zA-Z0-9])?,
    else KafkaApis answers INVALID_REQUEST (with the version list)."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            ok = await c.request(ApiVersionsRequest(client_software_name="apache-kafka-java",
                                                    client_software_version="3.7.0"), 3)
            assert ok.error_code == E.NONE
            for name, version in (("", "1.0"), ("bad name", "1.0"), ("kafka", "-1")):
                resp = await c.request(ApiVersionsRequest(client_software_name=name,
                                                          client_software_version=version), 3)
                assert resp.error_code == E.INVALID_REQUEST, (name, version, resp.error_code)


async def test_produce_v3_plus_takes_exactly_one_v2_batch_per_partition(autojump_clock):
    """ProduceRequest.validateRecords (v3+): exactly one record batch per partition, magic 2; each
    breach is INVALID_RECORD for that partition, and nothing is appended."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            two = batch([b"a"]) + batch([b"b"])
            r = await produce(c, "t", 0, two)
            assert r.error_code == E.INVALID_RECORD, r
            r = await produce(c, "t", 0, b"")
            assert r.error_code == E.INVALID_RECORD, r
            assert h.broker.partition("t", 0).log.log_end_offset == 0


async def test_produce_zstd_below_v7_is_unsupported_compression_type(autojump_clock):
    from protocol.compression import Compression
    from protocol.records import NewRecord, build_batch

    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            z = build_batch([NewRecord(value=b"zzz" * 100, timestamp=BASE_MS)], compression=Compression.ZSTD)
            r = await produce(c, "t", 0, z, version=6)
            assert r.error_code == E.UNSUPPORTED_COMPRESSION_TYPE, r
            r = await produce(c, "t", 0, z, version=7)
            assert (r.error_code, r.base_offset) == (E.NONE, 0)


async def test_produce_acks_0_with_an_error_closes_the_connection(autojump_clock):
    """KafkaApis.handleProduceRequest: with acks=0 the producer cannot be told about an error, so the
    broker closes the connection (the client then refreshes its metadata)."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await c.send(produce_request("missing", 0, batch([b"x"]), acks=0), 9)
            assert await c.at_eof()
            # The broker is fine; a new connection works.
            c2 = h.connect()
            assert (await c2.request(ApiVersionsRequest(), 0)).error_code == E.NONE


async def test_produce_mixed_partitions_and_min_insync_replicas(autojump_clock):
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t", 2)
            await create_ok(c, "strict", 1, {"min.insync.replicas": "2"})
            req = ProduceRequest(acks=-1, timeout_ms=1000, topic_data=[
                ProduceRequest.TopicProduceData(name="t", partition_data=[
                    ProduceRequest.PartitionProduceData(index=0, records=batch([b"a"])),
                    ProduceRequest.PartitionProduceData(index=9, records=batch([b"b"])),
                    ProduceRequest.PartitionProduceData(index=1, records=batch([b"c", b"d"]))]),
                ProduceRequest.TopicProduceData(name="strict", partition_data=[
                    ProduceRequest.PartitionProduceData(index=0, records=batch([b"e"]))])])
            resp = await c.request(req, 9)
            got = {(t.name, p.index): (p.error_code, p.base_offset) for t in resp.responses
                   for p in t.partition_responses}
            assert got == {("t", 0): (E.NONE, 0), ("t", 9): (E.UNKNOWN_TOPIC_OR_PARTITION, -1),
                           ("t", 1): (E.NONE, 0), ("strict", 0): (E.NOT_ENOUGH_REPLICAS, -1)}
            # acks=1 does not need the ISR.
            r = await produce(c, "strict", 0, batch([b"f"]), acks=1)
            assert (r.error_code, r.base_offset) == (E.NONE, 0)


async def test_responses_leave_in_request_order_behind_a_long_poll(autojump_clock):
    """A connection's requests are handled one at a time: a Metadata sent behind a long-polling
    Fetch is answered after it, and the responses come in request order."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            start = trio.current_time()
            fid = await c.send(fetch_request([("t", 0, 0)], max_wait_ms=2000, min_bytes=1), 12)
            mid = await c.send(MetadataRequest(topics=None), 12)
            resp = await c.receive(ApiKey.FETCH, 12, fid)
            assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)
            assert isinstance(resp, FetchResponse)
            md = await c.receive(ApiKey.METADATA, 12, mid)
            assert isinstance(md, MetadataResponse)


async def test_long_poll_ends_when_its_topic_is_deleted(autojump_clock):
    async with serving(make_broker()) as h:
        consumer, admin = h.connect(), h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(admin, "t")
            out: list[tuple[float, FetchResponse.PartitionData]] = []

            async def poll() -> None:
                start = trio.current_time()
                p = await fetch_one(consumer, "t", 0, 0, max_wait_ms=20_000, min_bytes=1)
                out.append((trio.current_time() - start, p))

            async with trio.open_nursery() as n:
                n.start_soon(poll)
                await trio.sleep(1)
                await admin.request(DeleteTopicsRequest(topic_names=["t"], timeout_ms=1000), 5)
            ((waited_s, p),) = out
            assert waited_s < 2, waited_s
            assert p.error_code == E.UNKNOWN_TOPIC_OR_PARTITION


async def test_metadata_v1_empty_list_means_no_topics_and_fetch_unknown_topic_id(autojump_clock):
    import uuid

    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            md = await metadata(c, [], version=1)
            assert md.topics == []
            ghost = uuid.UUID(int=12345)
            resp = await fetch(c, fetch_request([("", 0, 0)], topic_ids={"": ghost}), 13)
            (t,) = resp.responses
            assert t.topic_id == ghost and t.partitions[0].error_code == E.UNKNOWN_TOPIC_ID


async def test_delete_records_inside_a_batch(autojump_clock):
    """The log start offset moves to exactly the requested offset, even inside a batch; a fetch from
    it returns the whole batch holding it (the consumer skips the records below its position)."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            b0 = batch([b"0", b"1", b"2"])
            await produce(c, "t", 0, b0)
            b1 = batch([b"3", b"4", b"5"])
            await produce(c, "t", 0, b1)
            r = await delete_records(c, "t", 0, 4)
            assert (r.error_code, r.low_watermark) == (E.NONE, 4)
            assert (await fetch_one(c, "t", 0, 3)).error_code == E.OFFSET_OUT_OF_RANGE
            p = await fetch_one(c, "t", 0, 4)
            assert (p.error_code, p.log_start_offset) == (E.NONE, 4)
            assert records_bytes(p) == as_stored(b1, base_offset=3)
            assert (await list_offset(c, "t", 0, -2)).offset == 4


async def test_describe_cluster(autojump_clock):
    from protocol.messages.describe_cluster import DescribeClusterRequest

    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            resp = await c.request(DescribeClusterRequest(), 1)
            assert resp.error_code == E.NONE
            assert [b.broker_id for b in resp.brokers] == [h.broker.node_id]
            assert resp.cluster_id == h.broker.cluster_id


async def test_metadata_v10_null_topic_name_is_answered_not_dropped(autojump_clock):
    """Metadata v10-v11 allow a null topic name on the wire but serve names only; Kafka refuses
    ("Topic name can not be null for version 10") with MetadataRequest.getErrorResponse: each topic
    answered with INVALID_REQUEST (name "" as the response cannot carry null). The connection lives."""
    import uuid

    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            req = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(topic_id=uuid.UUID(int=77), name=None)])
            md = await c.request(req, 10)
            assert isinstance(md, MetadataResponse)
            assert [t.error_code for t in md.topics] == [E.INVALID_REQUEST], md
            assert (await c.request(ApiVersionsRequest(), 0)).error_code == E.NONE


async def test_log_append_time_topic(autojump_clock):
    from protocol.records import RecordBatchView, TimestampType

    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "lat", 1, {"message.timestamp.type": "LogAppendTime"})
            await trio.sleep(12.345)
            now = h.broker.now_ms()
            r = await produce(c, "lat", 0, batch([b"a", b"b"], timestamp=BASE_MS - 999))
            assert (r.error_code, r.log_append_time_ms) == (E.NONE, now)
            p = await fetch_one(c, "lat", 0, 0)
            view = RecordBatchView(records_bytes(p))
            view.validate()  # the CRC covers the rewritten attributes and max timestamp
            assert view.timestamp_type == TimestampType.LOG_APPEND_TIME
            assert view.max_timestamp == now
            assert [rec.timestamp for rec in view.records()] == [now, now]


@pytest.mark.parametrize("codec", ["GZIP", "SNAPPY", "LZ4", "ZSTD"])
async def test_compressed_batches_round_trip(autojump_clock, codec):
    from protocol.compression import Compression
    from protocol.records import NewRecord, build_batch

    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "z")
            b = build_batch([NewRecord(key=b"k%d" % i, value=b"value %d " % i * 50, timestamp=BASE_MS + i)
                             for i in range(20)], compression=Compression[codec])
            r = await produce(c, "z", 0, b)
            assert (r.error_code, r.base_offset) == (E.NONE, 0)
            p = await fetch_one(c, "z", 0, 7)
            assert records_bytes(p) == as_stored(b, base_offset=0)
            assert [v for _, v in values_of(records_bytes(p))] == [b"value %d " % i * 50 for i in range(20)]
            r = await list_offset(c, "z", 0, BASE_MS + 13)
            assert (r.offset, r.timestamp) == (13, BASE_MS + 13)


async def test_create_time_outside_the_topic_timestamp_bounds_is_invalid_timestamp(autojump_clock):
    """message.timestamp.before.max.ms / after.max.ms (KIP-937): a CreateTime batch with a record
    timestamp further from the broker's clock than allowed is refused with INVALID_TIMESTAMP."""
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "bounded", 1, {"message.timestamp.before.max.ms": "3600000",
                                              "message.timestamp.after.max.ms": "3600000"})
            now = h.broker.now_ms()
            r = await produce(c, "bounded", 0, batch([b"old"], timestamp=now - 2 * 3_600_000))
            assert r.error_code == E.INVALID_TIMESTAMP, r
            r = await produce(c, "bounded", 0, batch([b"future"], timestamp=now + 2 * 3_600_000))
            assert r.error_code == E.INVALID_TIMESTAMP, r
            r = await produce(c, "bounded", 0, batch([b"fine"], timestamp=now - 60_000))
            assert (r.error_code, r.base_offset) == (E.NONE, 0)


async def test_fetch_and_list_offsets_across_many_segments(autojump_clock):
    """Small segments: a fetch is stitched from several segment files, whole batches only, and
    every start offset finds the batch that holds it; DeleteRecords drops whole segments below."""
    rng = random.Random(5)
    async with serving(make_broker()) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "seg", 1, {"segment.bytes": "2048"})
            stored: list[tuple[int, int, bytes]] = []  # first offset, count, stored bytes
            for i in range(60):
                n = rng.randrange(1, 4)
                b = batch([bytes([i]) * rng.randrange(10, 400) for _ in range(n)], timestamp=BASE_MS + 10 * i)
                r = await produce(c, "seg", 0, b)
                stored.append((r.base_offset, n, as_stored(b, base_offset=r.base_offset)))
            log = h.broker.partition("seg", 0).log
            assert len(log.segments) > 5
            everything = b"".join(s for _, _, s in stored)
            p = await fetch_one(c, "seg", 0, 0, max_bytes=1 << 20, partition_max_bytes=1 << 20)
            assert records_bytes(p) == everything
            for first, n, _ in stored[::7]:
                for offset in range(first, first + n):
                    p = await fetch_one(c, "seg", 0, offset, max_bytes=1 << 20, partition_max_bytes=1 << 20)
                    i = next(k for k, (f, _, _) in enumerate(stored) if f == first)
                    assert records_bytes(p) == b"".join(s for _, _, s in stored[i:]), offset
            # A budget that ends inside some batch: the whole batches before it, never part of one.
            for budget in (1000, 2047, 2048, 2049, 5000):
                p = await fetch_one(c, "seg", 0, 0, max_bytes=budget, partition_max_bytes=1 << 20)
                got = records_bytes(p)
                assert everything.startswith(got) and 0 < len(got) <= budget
                whole = [len(s) for _, _, s in stored]
                fits = 0
                for size in whole:
                    if fits + size > budget:
                        break
                    fits += size
                # Kafka reads one segment per fetch and may end on a partial batch (the consumer drops
                # it); here a read continues across segments and ends on the last whole batch that fits.
                assert len(got) == (fits or whole[0]), (budget, len(got), fits)
            for i in (0, 17, 59):
                r = await list_offset(c, "seg", 0, BASE_MS + 10 * i)
                assert (r.offset, r.timestamp) == (stored[i][0], BASE_MS + 10 * i)
            segments_before = len(log.segments)
            mid = stored[30][0]
            r = await delete_records(c, "seg", 0, mid)
            assert (r.error_code, r.low_watermark) == (E.NONE, mid)
            assert len(log.segments) < segments_before
            p = await fetch_one(c, "seg", 0, mid, max_bytes=1 << 20, partition_max_bytes=1 << 20)
            assert records_bytes(p) == b"".join(s for _, _, s in stored[30:])


async def test_long_poll_waits_until_min_bytes_accumulate(autojump_clock):
    """Each append wakes the fetch; it goes back to waiting until min_bytes are there. min_bytes=0
    never waits."""
    async with serving(make_broker()) as h:
        consumer, producer = h.connect(), h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(producer, "t")
            start = trio.current_time()
            p = await fetch_one(consumer, "t", 0, 0, max_wait_ms=10_000, min_bytes=0)
            assert trio.current_time() - start < 0.01 and records_bytes(p) == b""
            out: list[tuple[float, bytes]] = []

            async def poll() -> None:
                start = trio.current_time()
                p = await fetch_one(consumer, "t", 0, 0, max_wait_ms=20_000, min_bytes=1000)
                out.append((trio.current_time() - start, records_bytes(p)))

            async with trio.open_nursery() as n:
                n.start_soon(poll)
                for i in range(3):
                    await trio.sleep(1)
                    await produce(producer, "t", 0, batch([bytes([i]) * 400]), acks=1)
                    if i < 2:
                        await trio.sleep(0)
                        assert not out, f"returned with {i + 1} batch(es), under min_bytes"
            ((waited_s, data),) = out
            assert 3 <= waited_s < 4, waited_s
            assert [v for _, v in values_of(data)] == [bytes([i]) * 400 for i in range(3)]


async def test_list_offsets_on_a_new_leader_whose_high_watermark_lags_its_epoch_start(autojump_clock):
    """Kafka's rule for a freshly elected leader: until its high watermark reaches the start of
    its leader epoch it cannot tell clients where the end is (its predecessor's high watermark may
    have been higher), so LATEST, and a timestamp whose record lies at or beyond the high
    watermark, are answered OFFSET_NOT_AVAILABLE; EARLIEST is still answered, and a replica asking
    for the end gets the log end. Once the high watermark reaches the epoch start, all is normal."""
    b = make_broker()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            state = b.partition("t", 0)
            assert state is not None
            # Three records the previous leader wrote and this replica has, above its high watermark.
            appended = state.log.append_as_leader(batch([b"a", b"b", b"c"]), leader_epoch=0, now_ms=b.now_ms())
            assert not isinstance(appended, AppendRejected) and state.log.high_watermark == 0
            state.replica = Partition(state.log, broker_id=b.node_id)
            state.replica.become_leader(LeaderAndIsr(leader=b.node_id, leader_epoch=1, partition_epoch=1,
                                                     replicas=(b.node_id, 99), isr=(b.node_id, 99)),
                                        min_insync_replicas=1, now_ms=b.now_ms())
            assert state.replica.leader_epoch_start_offset == 3
            assert (await list_offset(c, "t", 0, -1)).error_code == E.OFFSET_NOT_AVAILABLE
            assert (await list_offset(c, "t", 0, BASE_MS + 1)).error_code == E.OFFSET_NOT_AVAILABLE
            r = await list_offset(c, "t", 0, -2)
            assert (r.error_code, r.offset) == (E.NONE, 0)
            as_replica = ListOffsetsRequest(replica_id=99, topics=[ListOffsetsRequest.ListOffsetsTopic(
                name="t", partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)])])
            resp = await c.request(as_replica, 8)
            assert isinstance(resp, ListOffsetsResponse)
            assert (resp.topics[0].partitions[0].error_code, resp.topics[0].partitions[0].offset) == (E.NONE, 3)

            state.log.update_high_watermark(3)  # the follower caught up: the HW reaches the epoch start
            r = await list_offset(c, "t", 0, -1)
            assert (r.error_code, r.offset) == (E.NONE, 3)
            r = await list_offset(c, "t", 0, BASE_MS + 1)
            assert (r.error_code, r.offset) == (E.NONE, 1)


async def test_an_isr_below_min_is_answered_before_the_producer_sequence_check(autojump_clock):
    """Kafka checks the ISR (acks=all) before the log validates an idempotent producer's
    sequence. The order matters to librdkafka: batches R0 (written), R1 and R2 in flight while the
    ISR shrinks below min.insync.replicas; R1 is refused NOT_ENOUGH_REPLICAS (not written), and R2
    must be too. Answered OUT_OF_ORDER_SEQUENCE_NUMBER, R2 makes librdkafka bump its producer
    epoch and re-send R0 under a new producer id: a duplicate of a written batch (the fault test
    caught one). A retry of R0 itself is refused the same way until the ISR is back."""
    b = make_broker()
    async with serving(b) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create_ok(c, "t")
            pid, epoch = await init_producer_id(c)
            state = b.partition("t", 0)
            assert state is not None
            state.replica = p = Partition(state.log, broker_id=b.node_id)
            me = b.node_id

            def isr(*members: int, partition_epoch: int) -> None:
                p.become_leader(LeaderAndIsr(leader=me, leader_epoch=1, partition_epoch=partition_epoch,
                                             replicas=(me, 99), isr=members), min_insync_replicas=2, now_ms=b.now_ms())

            def rn(seq: int) -> bytes:
                return batch([b"r%d" % seq], producer_id=pid, producer_epoch=epoch, base_sequence=seq)

            async def send(seq: int, acks: int) -> ProduceResponse.PartitionProduceResponse:
                resp = await c.request(produce_request("t", 0, rn(seq), acks=acks), 9)
                assert isinstance(resp, ProduceResponse)
                return only_partition(resp)

            isr(me, 99, partition_epoch=1)
            r0 = await send(0, acks=1)
            assert (r0.error_code, r0.base_offset) == (E.NONE, 0)
            isr(me, partition_epoch=2)  # the follower fell out of the ISR
            assert (await send(1, acks=-1)).error_code == E.NOT_ENOUGH_REPLICAS
            assert (await send(2, acks=-1)).error_code == E.NOT_ENOUGH_REPLICAS  # not OUT_OF_ORDER
            assert (await send(0, acks=-1)).error_code == E.NOT_ENOUGH_REPLICAS  # a retry of R0 too
            assert state.log.log_end_offset == 1
            isr(me, 99, partition_epoch=3)  # back: the sequence rules answer again
            assert (await send(2, acks=-1)).error_code == E.OUT_OF_ORDER_SEQUENCE_NUMBER
            dup = await send(0, acks=1)
            assert (dup.error_code, dup.base_offset) == (E.NONE, 0)
            assert state.log.log_end_offset == 1
