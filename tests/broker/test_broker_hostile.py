"""Hostile input: a broker serving real TCP connections that send garbage must keep serving the rest.

Goal (the issue's words): random bytes, truncated frames, oversize length prefixes, unknown API keys
and versions and negative counts on some connections, while other connections keep producing and
consuming correctly. A real ``Server`` listens on a loopback port in this process; hostile
connections (seeded, so a failure can be replayed from the printed seed) run at the same time as
well-behaved producers and consumers. Every hostile connection must be answered with well-formed
frames or closed; the good connections must see exactly the data they wrote; the server must log
no unexpected failure, and must still serve afterwards. A claimed frame size over the limit must be
refused from its four prefix bytes, before any buffer is set aside for it.

Everything is bounded: a fixed number of connections and requests, and ``fail_after`` on each phase.
"""

from __future__ import annotations

import functools
import logging
import random
import struct
import tracemalloc
from collections.abc import Awaitable, Callable

import trio
import trio.testing
from broker_testkit import (
    Client,
    as_stored,
    batch,
    fetch_request,
    fetched,
    make_broker,
    only_partition,
    produce_request,
    records_bytes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.core import Broker
from broker.dispatch import ROUTES, CloseConnection, RequestContext, dispatch
from broker.server import Listener, Server
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.headers import encode_request
from protocol.messages import REQUESTS, ApiKey
from protocol.messages.api_versions import ApiVersionsRequest
from protocol.messages.create_topics import CreateTopicsRequest
from protocol.messages.fetch import FetchResponse
from protocol.messages.metadata import MetadataRequest
from protocol.records import RecordBatchView, iter_batches
from tests.message_values import message_strategy

SEED = 20240611
HOSTILE_CONNECTIONS = 40
GOOD_BATCHES = 40
EOF_WAIT_S = 5
PHASE_S = 30


def start_server(nursery: trio.Nursery, server: Server) -> Awaitable[list[tuple[str, int]]]:
    return nursery.start(server.run)


async def open_client(address: tuple[str, int]) -> Client:
    host, port = address
    return Client(await trio.open_tcp_stream(host, port))


async def closes_without_answer(c: Client) -> None:
    """The broker closes the connection and sends nothing first."""
    with trio.fail_after(EOF_WAIT_S):
        assert await c.at_eof()


def header(api_key: int, version: int, correlation_id: int, client_id: bytes = b"hostile") -> bytes:
    """A v1 request header by hand (flexible versions would add an empty tag section)."""
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


# --- the hostile repertoire: each opens its own connection and checks what the broker did -------

Hostile = Callable[[random.Random, tuple[str, int]], Awaitable[str]]


async def oversize_prefix(rng: random.Random, address: tuple[str, int]) -> str:
    c = await open_client(address)
    claim = rng.choice([2**31 - 1, 2**30, 104_857_601, 200_000_000])
    await c.send_raw(struct.pack(">i", claim))
    await closes_without_answer(c)
    return f"oversize prefix {claim}"


async def negative_prefix(rng: random.Random, address: tuple[str, int]) -> str:
    c = await open_client(address)
    claim = rng.choice([-1, -(2**31), -12345])
    await c.send_raw(struct.pack(">i", claim) + b"\x00" * rng.randrange(0, 16))
    await closes_without_answer(c)
    return f"negative prefix {claim}"


async def too_short_for_a_header(rng: random.Random, address: tuple[str, int]) -> str:
    c = await open_client(address)
    n = rng.randrange(0, 8)
    await c.send_raw(framed(bytes(rng.randrange(256) for _ in range(n))))
    await closes_without_answer(c)
    return f"{n}-byte frame"


async def unknown_api_key(rng: random.Random, address: tuple[str, int]) -> str:
    c = await open_client(address)
    key = rng.choice([-1, 1000, 9999, 32767, -32768])
    await c.send_raw(framed(header(key, 0, 7) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))))
    await closes_without_answer(c)
    return f"unknown api key {key}"


async def unknown_version(rng: random.Random, address: tuple[str, int]) -> str:
    c = await open_client(address)
    key = rng.choice([ApiKey.METADATA, ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.LIST_OFFSETS])
    version = rng.choice([-1, REQUESTS[key].VALID_VERSIONS[1] + 1, 99, 32767])
    await c.send_raw(framed(header(key, version, 8) + b"\x00" * rng.randrange(0, 40)))
    await closes_without_answer(c)
    return f"api {key} version {version}"


async def negative_or_huge_count(rng: random.Random, address: tuple[str, int]) -> str:
    c = await open_client(address)
    count = rng.choice([-2, -5, -(2**31), 2**31 - 1, 1_000_000])
    kind = rng.randrange(3)
    if kind == 0:  # Metadata v1: topics (nullable: -1 is null, so -2 and below are malformed)
        body = header(ApiKey.METADATA, 1, 9) + struct.pack(">i", count)
    elif kind == 1:  # Produce v3: transactional id null, acks, timeout, topic_data count
        body = header(ApiKey.PRODUCE, 3, 9) + struct.pack(">hhii", -1, 1, 1000, count)
    else:  # Fetch v4: replica, max wait, min bytes, max bytes, isolation, topics count
        body = header(ApiKey.FETCH, 4, 9) + struct.pack(">iiiibi", -1, 0, 0, 1 << 20, 0, count)
    await c.send_raw(framed(body))
    await closes_without_answer(c)
    return f"count {count} in request kind {kind}"


async def random_bytes(rng: random.Random, address: tuple[str, int]) -> str:
    """Anything at all, then end of stream: whatever comes back must be whole frames, then EOF."""
    c = await open_client(address)
    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    await c.send_raw(data)
    await c.stream.send_eof()
    with trio.fail_after(EOF_WAIT_S):
        while await c.read_frame() is not None:
            pass
    return f"{len(data)} random bytes"


async def truncated_frame(rng: random.Random, address: tuple[str, int]) -> str:
    """A real request cut short, then end of stream: no answer, the connection closes."""
    c = await open_client(address)
    whole = encode_request(produce_request("good", 0, batch([b"cut" * 100]), acks=1), 9, 11, "hostile")
    cut = rng.randrange(1, len(whole))
    await c.send_raw(whole[:cut])
    await c.stream.send_eof()
    await closes_without_answer(c)
    return f"frame cut at {cut} of {len(whole)}"


async def garbage_body(rng: random.Random, address: tuple[str, int]) -> str:
    """A real header for a served API and version, then junk: answered (with our correlation id)
    or closed, never anything else."""
    c = await open_client(address)
    key = rng.choice(sorted(ROUTES))
    version = rng.randint(ROUTES[key].min_version, ROUTES[key].max_version)
    correlation_id = rng.randrange(1, 2**31)
    hdr = bytearray(struct.pack(">hhih", key, version, correlation_id, 1) + b"h")
    if REQUESTS[key].is_flexible(version):
        hdr += b"\x00"
    await c.send_raw(framed(bytes(hdr) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))))
    await c.stream.send_eof()
    with trio.fail_after(EOF_WAIT_S):
        while (frame := await c.read_frame()) is not None:
            assert struct.unpack_from(">i", frame, 0)[0] == correlation_id
    return f"junk body for api {key} v{version}"


HOSTILES: list[Hostile] = [oversize_prefix, negative_prefix, too_short_for_a_header, unknown_api_key,
                           unknown_version, negative_or_huge_count, random_bytes, truncated_frame, garbage_body]


# --- the well-behaved side -----------------------------------------------------------------------

async def producer(address: tuple[str, int], rng: random.Random, sent: list[tuple[int, bytes]]) -> None:
    """Produces GOOD_BATCHES batches to partition 0 with acks=all; offsets must be consecutive."""
    c = await open_client(address)
    next_offset = 0
    for i in range(GOOD_BATCHES):
        values = [bytes([i % 256]) * rng.randrange(1, 4000) for _ in range(rng.randrange(1, 5))]
        b = batch(values)
        resp = await c.request(produce_request("good", 0, b, acks=-1), 9)
        r = only_partition(resp)
        assert (r.error_code, r.base_offset) == (ErrorCode.NONE, next_offset), (i, r)
        sent.append((r.base_offset, b))
        next_offset += len(values)
        await trio.sleep(rng.random() * 0.005)
    await c.aclose()


async def consumer(address: tuple[str, int], received: bytearray, total_records: Callable[[], int | None]) -> None:
    """Long-polls partition 0 from offset 0 until it has every record the producer wrote."""
    c = await open_client(address)
    offset = 0
    while True:
        want = total_records()
        if want is not None and offset >= want:
            break
        resp = await c.request(fetch_request([("good", 0, offset)], max_wait_ms=200, min_bytes=1), 12)
        assert isinstance(resp, FetchResponse)
        p = fetched(resp)[("good", 0)]
        assert p.error_code == ErrorCode.NONE, p
        data = records_bytes(p)
        if data:
            received += data
            for view in iter_batches(memoryview(data)):
                offset = view.next_offset
    await c.aclose()


async def ping_pong(address: tuple[str, int], rng: random.Random) -> None:
    """Produce one batch to partition 1, fetch it straight back, byte for byte, many times."""
    c = await open_client(address)
    for i in range(GOOD_BATCHES):
        b = batch([b"pp%d-" % i + bytes(rng.randrange(0, 2000))])
        r = only_partition(await c.request(produce_request("good", 1, b, acks=1), 9))
        assert (r.error_code, r.base_offset) == (ErrorCode.NONE, i), r
        resp = await c.request(fetch_request([("good", 1, i)]), 12)
        p = fetched(resp)[("good", 1)]
        assert records_bytes(p) == as_stored(b, base_offset=i)
    await c.aclose()


def unexpected_failures(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.name.startswith("trafka") and r.levelno >= logging.ERROR]


async def test_hostile_connections_while_good_ones_produce_and_consume(caplog):
    caplog.set_level(logging.INFO, logger="trafka")
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    b = make_broker()
    server = Server(b, [Listener("PLAINTEXT", "127.0.0.1", 0)], shutdown_grace_ms=200)
    async with trio.open_nursery() as nursery:
        (address,) = await start_server(nursery, server)
        with trio.fail_after(PHASE_S):
            admin = await open_client(address)
            resp = await admin.request(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
                name="good", num_partitions=2, replication_factor=1)]), 7)
            assert resp.topics[0].error_code == ErrorCode.NONE

            sent: list[tuple[int, bytes]] = []
            received = bytearray()
            producer_done = trio.Event()
            outcomes: list[str] = []

            def total_records() -> int | None:
                if not producer_done.is_set():
                    return None
                last_offset, last = sent[-1]
                return last_offset + RecordBatchView(last).record_count

            async def run_producer() -> None:
                await producer(address, random.Random(rng.random()), sent)
                producer_done.set()

            async def run_hostile(i: int, hostile: Hostile, seed: float) -> None:
                await trio.sleep(i * 0.01)
                outcomes.append(await hostile(random.Random(seed), address))

            async with trio.open_nursery() as traffic:
                traffic.start_soon(run_producer)
                traffic.start_soon(consumer, address, received, total_records)
                traffic.start_soon(ping_pong, address, random.Random(rng.random()))
                for i in range(HOSTILE_CONNECTIONS):
                    traffic.start_soon(run_hostile, i, HOSTILES[i % len(HOSTILES)], rng.random())

            assert len(outcomes) == HOSTILE_CONNECTIONS
            print("\n".join(outcomes))
            expected = b"".join(as_stored(data, base_offset=offset) for offset, data in sent)
            assert bytes(received) == expected

            # Every connection but the admin one is gone; the server still answers.
            while server.connections > 1:
                await trio.sleep(0.01)
            av = await admin.request(ApiVersionsRequest(client_software_name="trafka-test", client_software_version="1"), 3)
            assert av.error_code == ErrorCode.NONE
            fresh = await open_client(address)
            md = await fresh.request(MetadataRequest(topics=None), 12)
            assert [t.name for t in md.topics] == ["good"]
            await fresh.aclose()
            await admin.aclose()
        assert unexpected_failures(caplog) == []
        with trio.fail_after(PHASE_S):
            server.shutdown()
    b.close()


async def test_oversize_length_prefix_is_refused_without_allocating():
    """A claimed 2 GiB frame (and anything over socket.request.max.bytes) is refused from its four
    prefix bytes; a claim under the limit makes the broker hold only what actually arrived."""
    b = make_broker()
    server = Server(b, [Listener("PLAINTEXT", "127.0.0.1", 0)], shutdown_grace_ms=200)
    budget_bytes = 4 * 1024 * 1024
    async with trio.open_nursery() as nursery:
        (address,) = await start_server(nursery, server)
        tracemalloc.start()
        try:
            with trio.fail_after(PHASE_S):
                for claim in (2**31 - 1, -(2**31), b.config.socket_request_max_bytes + 1):
                    tracemalloc.reset_peak()
                    before, _ = tracemalloc.get_traced_memory()
                    c = await open_client(address)
                    await c.send_raw(struct.pack(">i", claim))
                    await closes_without_answer(c)
                    await c.aclose()
                    _, peak = tracemalloc.get_traced_memory()
                    assert peak - before < budget_bytes, (claim, peak - before)
                # Under the limit: the broker waits for the rest, holding only what arrived.
                tracemalloc.reset_peak()
                before, _ = tracemalloc.get_traced_memory()
                c = await open_client(address)
                await c.send_raw(struct.pack(">i", b.config.socket_request_max_bytes) + b"\x00" * 4096)
                await trio.sleep(0.2)
                _, peak = tracemalloc.get_traced_memory()
                assert peak - before < budget_bytes, peak - before
                await c.aclose()
                # Still serving.
                ok = await open_client(address)
                assert (await ok.request(ApiVersionsRequest(), 0)).error_code == ErrorCode.NONE
                await ok.aclose()
        finally:
            tracemalloc.stop()
        server.shutdown()
    b.close()


# --- well-formed but arbitrary requests ---------------------------------------------------------

SERVED = [(k, v) for k, r in sorted(ROUTES.items()) for v in range(r.min_version, r.max_version + 1)]


@functools.cache
def fuzz_broker() -> Broker:
    """One broker for every example (state carries over, as on a long-lived broker)."""
    b = make_broker(now_ms=lambda: 1_700_000_000_000)
    b.create_topic("t", 3, {})
    return b


@st.composite
def served_requests(draw):  # type: ignore[no-untyped-def]
    key, version = draw(st.sampled_from(SERVED))
    return key, version, draw(message_strategy(REQUESTS[key], version))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(served_requests())
def test_arbitrary_well_formed_requests_never_break_dispatch(caplog, req):
    """Any request that decodes is answered (or, acks=0, not) without a handler failing and without
    the response failing to encode: a well-formed request never costs its connection."""
    key, version, message = req
    frame = encode_request(message, version, 1, "fuzz")[4:]

    async def one() -> None:
        with trio.fail_after(5):
            try:
                out = await dispatch(RequestContext(broker=fuzz_broker(), peer="fuzz"), memoryview(frame))
            except ProtocolError:
                return  # a request the broker may refuse to parse further (closes the connection)
            except CloseConnection:
                # Kafka closes the connection when an acks=0 produce fails: it cannot answer.
                assert key == ApiKey.PRODUCE and message.acks == 0, (key, version, message)
                return
            assert out is not None or key == ApiKey.PRODUCE, (key, version)

    caplog.clear()
    trio.run(one, clock=trio.testing.MockClock(autojump_threshold=0))
    assert unexpected_failures(caplog) == [], (key, version, message)
