"""The connection fast path of ``broker.server`` over real sockets.

Goal: what the server does to be cheap -- receiving into the frame's own buffer, answering from
the reader without a task switch, answering a pipelined burst in one write, sending file slices
with ``sendfile`` or a copy window, waiting for a slow socket in the writer -- must never change
what a client sees: every byte of every record, responses in request order, none for acks=0, an
answer that is not held back behind a long poll, a failed handler answered with
UNKNOWN_SERVER_ERROR. Nor may it leak: a file pinned for ``sendfile`` is unpinned however the
connection ends. And the connection rules still hold: ``connections.max.idle.ms`` closes idle
connections but not one whose request is being handled, ``max.connections`` refuses the
connection beyond the limit, and a shutdown closes idle connections at once and lets a request
in flight finish.

Sockets are Unix socket pairs (the server end wrapped in ``trio.SocketStream``, so the server
takes its system-call path) or loopback TCP through ``Server.run``; the log is on the real file
system where descriptors matter (``sendfile``). Every wait is bounded by ``fail_after``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from broker_testkit import (
    BASE_MS,
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

from broker.core import Broker
from broker.dispatch import ROUTES, Route
from broker.server import SENDFILE_BYTES_MIN, Listener, Server
from protocol.error_codes import ErrorCode
from protocol.headers import encode_request
from protocol.messages import ApiKey
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.create_topics import CreateTopicsRequest
from protocol.messages.fetch import FetchResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import ProduceResponse
from storage.fs import OsFileSystem

E = ErrorCode
WAIT_S = 20


@asynccontextmanager
async def socket_server(b: Broker) -> AsyncIterator[tuple[Server, trio.Nursery]]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(b.committer.run)
        yield Server(b, []), nursery
        nursery.cancel_scope.cancel()


def connect(server: Server, nursery: trio.Nursery, *, server_sndbuf: int | None = None,
            client_sndbuf: int | None = None) -> Client:
    """A Unix socket pair: the server serves one end through its socket path, the test holds the other."""
    ours, theirs = trio.socket.socketpair()
    if server_sndbuf is not None:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, server_sndbuf)
    if client_sndbuf is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, client_sndbuf)
    nursery.start_soon(server.handle_connection, trio.SocketStream(theirs))
    return Client(trio.SocketStream(ours))


async def create(c: Client, name: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
    resp = await c.request(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1,
        configs=[CreateTopicsRequest.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])]), 7)
    assert resp.topics[0].error_code == E.NONE, resp


async def produce(c: Client, topic: str, partition: int, data: bytes) -> int:
    resp = await c.request(produce_request(topic, partition, data), 9)
    assert isinstance(resp, ProduceResponse)
    p = only_partition(resp)
    assert p.error_code == E.NONE, p
    return p.base_offset


def pins(b: Broker, topic: str, partitions: int) -> int:
    total = 0
    for i in range(partitions):
        state = b.partition(topic, i)
        assert state is not None
        total += sum(seg.log.pins for seg in state.log.segments)
    return total


def values(n: int, size: int, tag: int) -> list[bytes]:
    return [bytes([tag]) * size + b"%d" % i for i in range(n)]


# --- bytes and order -------------------------------------------------------------------------------

async def test_large_and_small_slices_arrive_whole_over_a_slow_socket(tmp_path):
    """Partitions with slices above and below the sendfile threshold, fetched twice with a Metadata
    request between, through a server socket with a tiny send buffer that the client does not
    drain at first: the writer must wait for the socket many times and resume mid-slice, both in
    ``sendfile`` and in ``writev``."""
    b = make_broker(OsFileSystem(), log_dir=str(tmp_path))
    async with socket_server(b) as (server, nursery):
        c = connect(server, nursery, server_sndbuf=4096)
        with trio.fail_after(WAIT_S):
            await create(c, "t", 3)
            expected = {}
            for partition, (n, size) in enumerate([(400, 1000), (25, 1000), (150, 1000)]):
                data = b""
                for k in range(2):
                    sent = batch(values(n, size, partition * 2 + k), timestamp=BASE_MS)
                    data += as_stored(sent, base_offset=await produce(c, "t", partition, sent))
                expected[("t", partition)] = data
            # Partition 1 goes through the copy window, in writes bigger than the socket takes.
            assert len(expected[("t", 0)]) > 2 * SENDFILE_BYTES_MIN
            assert SENDFILE_BYTES_MIN > len(expected[("t", 1)]) > 10 * 4096
            req = fetch_request([("t", 0, 0), ("t", 1, 0), ("t", 2, 0)])
            first = await c.send(req, 12)
            middle = await c.send(MetadataRequest(topics=None), 12)
            last = await c.send(req, 12)
            await trio.sleep(0.2)  # the server fills its socket and waits for it
            resp = await c.receive(ApiKey.FETCH, 12, first)
            assert isinstance(resp, FetchResponse)
            assert {key: records_bytes(p) for key, p in fetched(resp).items()} == expected
            md = await c.receive(ApiKey.METADATA, 12, middle)
            assert isinstance(md, MetadataResponse) and [t.name for t in md.topics] == ["t"]
            resp = await c.receive(ApiKey.FETCH, 12, last)
            assert isinstance(resp, FetchResponse)
            assert {key: records_bytes(p) for key, p in fetched(resp).items()} == expected
            assert pins(b, "t", 3) == 0
            await c.aclose()
    b.close()


async def test_a_file_system_without_sendfile_is_served_by_copies(tmp_path, monkeypatch):
    def no_sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        raise OSError(errno.EINVAL, "sendfile not supported here")

    b = make_broker(OsFileSystem(), log_dir=str(tmp_path))
    async with socket_server(b) as (server, nursery):
        c = connect(server, nursery, server_sndbuf=4096)
        with trio.fail_after(WAIT_S):
            await create(c, "t")
            sent = batch(values(300, 1000, 1))
            expected = as_stored(sent, base_offset=await produce(c, "t", 0, sent))
            assert len(expected) > SENDFILE_BYTES_MIN
            monkeypatch.setattr(os, "sendfile", no_sendfile)
            resp = await c.request(fetch_request([("t", 0, 0)]), 12)
            assert records_bytes(fetched(resp)[("t", 0)]) == expected
            assert pins(b, "t", 1) == 0
            await c.aclose()
    b.close()


async def test_a_client_gone_mid_response_leaves_no_file_pinned(tmp_path):
    b = make_broker(OsFileSystem(), log_dir=str(tmp_path))
    async with socket_server(b) as (server, nursery):
        with trio.fail_after(WAIT_S):
            admin = connect(server, nursery)
            await create(admin, "t")
            for k in range(4):
                await produce(admin, "t", 0, batch(values(500, 1000, k)))
            c = connect(server, nursery, server_sndbuf=4096)
            await c.send(fetch_request([("t", 0, 0)]), 12)
            assert await c.stream.receive_some(1000)
            assert pins(b, "t", 1) > 0  # a slice is in flight with sendfile
            await c.aclose()
            while server.connections > 1:
                await trio.sleep(0.01)
            assert pins(b, "t", 1) == 0
            # The broker serves on.
            resp = await admin.request(fetch_request([("t", 0, 0)], partition_max_bytes=1), 12)
            assert fetched(resp)[("t", 0)].error_code == E.NONE
            await admin.aclose()
    b.close()


async def test_a_large_produce_frame_arrives_in_small_pieces(tmp_path):
    """A 3 MB request (bigger than the staging buffer and the first allocation step, so its buffer
    grows) written in uneven pieces; then a burst of small frames in one write."""
    b = make_broker(OsFileSystem(), log_dir=str(tmp_path))
    async with socket_server(b) as (server, nursery):
        c = connect(server, nursery)
        with trio.fail_after(WAIT_S):
            await create(c, "t", configs={"max.message.bytes": "10000000"})
            big = batch(values(3000, 1000, 7))
            assert len(big) > 3_000_000
            wire = encode_request(produce_request("t", 0, big, acks=1), 9, 99, "t")
            at, step = 0, 1
            while at < len(wire):
                await c.send_raw(wire[at : at + step])
                at += step
                step = step * 3 + 1 if step < 300_000 else 77_777
            resp = await c.receive(ApiKey.PRODUCE, 9, 99)
            assert isinstance(resp, ProduceResponse) and only_partition(resp).error_code == E.NONE
            small = [batch([b"s%d" % i]) for i in range(20)]
            await c.send_raw(b"".join(encode_request(produce_request("t", 0, s, acks=1), 9, 100 + i, "t")
                                      for i, s in enumerate(small)))
            offsets = []
            for i in range(20):
                resp = await c.receive(ApiKey.PRODUCE, 9, 100 + i)
                assert isinstance(resp, ProduceResponse)
                offsets.append(only_partition(resp).base_offset)
            assert offsets == list(range(3000, 3020))
            resp = await c.request(fetch_request([("t", 0, 0)], partition_max_bytes=10_000_000), 12)
            expected = as_stored(big, base_offset=0) + b"".join(
                as_stored(s, base_offset=3000 + i) for i, s in enumerate(small))
            assert records_bytes(fetched(resp)[("t", 0)]) == expected
            await c.aclose()
    b.close()


async def test_pipelined_requests_answered_in_order_and_acks_0_not_at_all():
    b = make_broker()
    async with socket_server(b) as (server, nursery):
        c = connect(server, nursery)
        with trio.fail_after(WAIT_S):
            await create(c, "t")
            reqs = [(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3),
                    (produce_request("t", 0, batch([b"zero"]), acks=0), 9),
                    (MetadataRequest(topics=None), 12),
                    (produce_request("t", 0, batch([b"one"]), acks=1), 9),
                    (fetch_request([("t", 0, 0)]), 12)]
            await c.send_raw(b"".join(encode_request(r, v, 10 + i, "t") for i, (r, v) in enumerate(reqs)))
            av = await c.receive(ApiKey.API_VERSIONS, 3, 10)
            assert isinstance(av, ApiVersionsResponse) and av.error_code == E.NONE
            md = await c.receive(ApiKey.METADATA, 12, 12)  # 11 (acks=0) has no answer
            assert isinstance(md, MetadataResponse)
            pr = await c.receive(ApiKey.PRODUCE, 9, 13)
            assert isinstance(pr, ProduceResponse) and only_partition(pr).base_offset == 1
            fr = await c.receive(ApiKey.FETCH, 12, 14)
            assert isinstance(fr, FetchResponse)
            assert len(records_bytes(fetched(fr)[("t", 0)])) > 0
            await c.aclose()


async def test_an_answer_is_not_held_back_behind_a_long_poll_in_the_same_burst():
    """Metadata and a long-polling Fetch arrive in one write: the Metadata answer must leave while
    the Fetch waits, not with it."""
    b = make_broker()
    async with socket_server(b) as (server, nursery):
        c = connect(server, nursery)
        with trio.fail_after(WAIT_S):
            await create(c, "t")
            burst = (encode_request(MetadataRequest(topics=None), 12, 1, "t")
                     + encode_request(fetch_request([("t", 0, 0)], max_wait_ms=1500, min_bytes=1), 12, 2, "t"))
            start = trio.current_time()
            await c.send_raw(burst)
            md = await c.receive(ApiKey.METADATA, 12, 1)
            assert isinstance(md, MetadataResponse)
            assert trio.current_time() - start < 1.0
            fr = await c.receive(ApiKey.FETCH, 12, 2)
            assert isinstance(fr, FetchResponse)
            assert trio.current_time() - start >= 1.4
            await c.aclose()


async def test_a_failing_handler_is_answered_and_the_connection_lives(monkeypatch, caplog):
    async def broken(ctx, req):
        raise RuntimeError("handler bug")

    route = ROUTES[ApiKey.API_VERSIONS]
    b = make_broker()
    async with socket_server(b) as (server, nursery):
        c = connect(server, nursery)
        with trio.fail_after(WAIT_S):
            monkeypatch.setitem(ROUTES, ApiKey.API_VERSIONS, Route(route.min_version, route.max_version, broken))
            resp = await c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
            assert isinstance(resp, ApiVersionsResponse)
            assert resp.error_code == E.UNKNOWN_SERVER_ERROR
            monkeypatch.undo()
            md = await c.request(MetadataRequest(topics=None), 12)
            assert isinstance(md, MetadataResponse)
            await c.aclose()
    assert any("failed" in r.getMessage() for r in caplog.records if r.name == "trafka.dispatch")


async def test_a_flooding_client_is_held_back_without_holding_up_others():
    """One client pipelines thousands of requests and reads nothing: once its answers fill the
    socket and the queue (``RESPONSES_QUEUED_MAX``), the server stops reading from it, so its
    own send cannot finish; another connection is served meanwhile; then every answer of the
    first arrives, in order."""
    b = make_broker()
    async with socket_server(b) as (server, nursery):
        flood = connect(server, nursery, server_sndbuf=4096, client_sndbuf=4096)
        other = connect(server, nursery)
        with trio.fail_after(WAIT_S):
            count = 2000
            wire = b"".join(encode_request(MetadataRequest(topics=[]), 12, i, "t") for i in range(count))
            sent = trio.Event()

            async def send_all() -> None:
                await flood.send_raw(wire)
                sent.set()

            async with trio.open_nursery() as n:
                n.start_soon(send_all)
                await trio.sleep(0.3)
                md = await other.request(MetadataRequest(topics=None), 12)
                assert isinstance(md, MetadataResponse)
                assert not sent.is_set(), "the server kept reading a client that reads nothing"
                for i in range(count):
                    frame = await flood.read_frame()
                    assert frame is not None and struct.unpack_from(">i", frame)[0] == i
            await flood.aclose()
            await other.aclose()


# --- connection rules (loopback TCP through Server.run) --------------------------------------------

@asynccontextmanager
async def tcp_server(overrides: list[str], *, grace_ms: int = 5000) -> AsyncIterator[tuple[Server, tuple[str, int]]]:
    b = make_broker(overrides=overrides)
    server = Server(b, [Listener("PLAINTEXT", "127.0.0.1", 0)], shutdown_grace_ms=grace_ms)
    async with trio.open_nursery() as nursery:
        (address,) = await nursery.start(server.run)
        yield server, address
        server.shutdown()
    b.close()


async def tcp_client(address: tuple[str, int]) -> Client:
    return Client(await trio.open_tcp_stream(*address))


async def test_idle_connections_close_but_busy_ones_do_not():
    async with tcp_server(["connections.max.idle.ms=300"]) as (server, address):
        with trio.fail_after(WAIT_S):
            admin = await tcp_client(address)
            await create(admin, "t")
            idle = await tcp_client(address)
            start = trio.current_time()

            async def chatty() -> None:
                c = await tcp_client(address)
                for _ in range(12):  # 1.2 s of a request every 100 ms
                    resp = await c.request(ApiVersionsRequest(client_software_name="t", client_software_version="1"), 3)
                    assert resp.error_code == E.NONE
                    await trio.sleep(0.1)
                await c.aclose()

            async def long_poll() -> None:
                c = await tcp_client(address)
                t0 = trio.current_time()
                resp = await c.request(fetch_request([("t", 0, 0)], max_wait_ms=900, min_bytes=1), 12)
                assert isinstance(resp, FetchResponse)
                assert trio.current_time() - t0 >= 0.85  # answered at its deadline, not closed
                await c.aclose()

            async with trio.open_nursery() as n:
                n.start_soon(chatty)
                n.start_soon(long_poll)
                assert await idle.at_eof()
                elapsed = trio.current_time() - start
                assert 0.25 <= elapsed < 1.5, elapsed
            await admin.aclose()


async def test_max_connections_refuses_the_connection_beyond_the_limit():
    async with tcp_server(["max.connections=2"]) as (server, address):
        with trio.fail_after(WAIT_S):
            a, b = await tcp_client(address), await tcp_client(address)
            for c in (a, b):
                assert (await c.request(MetadataRequest(topics=None), 12)) is not None
            refused = await tcp_client(address)
            assert await refused.at_eof()
            await a.aclose()
            while server.connections > 1:
                await trio.sleep(0.01)
            c = await tcp_client(address)
            assert isinstance(await c.request(MetadataRequest(topics=None), 12), MetadataResponse)
            await c.aclose()
            await b.aclose()


async def test_shutdown_closes_idle_connections_at_once_and_finishes_requests_in_flight():
    b = make_broker()
    server = Server(b, [Listener("PLAINTEXT", "127.0.0.1", 0)], shutdown_grace_ms=10_000)
    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(server.run)
            admin = await tcp_client(address)
            await create(admin, "t")
            idle = await tcp_client(address)
            assert (await idle.request(MetadataRequest(topics=None), 12)) is not None
            poller = await tcp_client(address)
            cid = await poller.send(fetch_request([("t", 0, 0)], max_wait_ms=700, min_bytes=1), 12)
            await trio.sleep(0.1)
            start = trio.current_time()
            server.shutdown()
            assert await idle.at_eof()
            assert trio.current_time() - start < 0.5
            resp = await poller.receive(ApiKey.FETCH, 12, cid)
            assert isinstance(resp, FetchResponse)
            assert await poller.at_eof()
        # run() returned once the last request was answered, long before the grace period.
        assert trio.current_time() - start < 3
    b.close()
