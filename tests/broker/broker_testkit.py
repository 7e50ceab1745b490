"""Shared pieces for the broker tests: a broker on an injected file system and clock, a client that
speaks Kafka frames over any trio stream, and record-batch helpers.

The client is deliberately dumb: it encodes with ``protocol.headers.encode_request``, reads one
size-prefixed frame at a time and decodes with ``decode_response`` at the version it asked for,
so every test sees exactly the bytes the broker wrote.
"""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
import trio.testing

import broker.handlers  # noqa: F401  (registers every route)
from broker.config import BrokerConfig, load
from broker.core import Broker
from broker.server import Server
from protocol.headers import decode_response, encode_request
from protocol.message import Message
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.records import NewRecord, build_batch, iter_batches
from storage.fs import FileSystem, SimFileSystem

# Wall-clock origin for the injected clock: record timestamps near "now" look like real ones.
BASE_MS = 1_700_000_000_000
FRAME_BYTES_MAX = 64 * 1024 * 1024  # what the test client accepts in one response


def mock_now_ms() -> int:
    """The broker's clock in tests: BASE_MS plus trio's (possibly mocked) time."""
    return BASE_MS + int(trio.current_time() * 1000)


def make_config(log_dir: str = "/data", overrides: Sequence[str] = ()) -> BrokerConfig:
    return load(None, [f"log.dirs={log_dir}", *overrides])


def make_broker(fs: FileSystem | None = None, *, log_dir: str = "/data", overrides: Sequence[str] = (),
                now_ms: Callable[[], int] = mock_now_ms, seed: int = 1) -> Broker:
    b = Broker(make_config(log_dir, overrides), fs if fs is not None else SimFileSystem(), now_ms=now_ms,
               rng=random.Random(seed))
    b.open()
    return b


class Client:
    """One Kafka connection: requests out, frames back, correlation ids checked."""

    def __init__(self, stream: trio.abc.Stream, client_id: str = "trafka-test") -> None:
        self.stream = stream
        self.client_id = client_id
        self.next_correlation_id = 1
        self._buf = bytearray()

    async def send(self, body: Message, version: int) -> int:
        correlation_id = self.next_correlation_id
        self.next_correlation_id += 1
        await self.stream.send_all(encode_request(body, version, correlation_id, self.client_id))
        return correlation_id

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_frame(self) -> bytes | None:
        """The next response frame without its size prefix; None if the broker closed first."""
        while True:
            if len(self._buf) >= 4:
                (size,) = struct.unpack_from(">i", self._buf, 0)
                assert 0 <= size <= FRAME_BYTES_MAX, size
                if len(self._buf) >= 4 + size:
                    frame = bytes(self._buf[4 : 4 + size])
                    del self._buf[: 4 + size]
                    return frame
            data = await self.stream.receive_some(65536)
            if not data:
                assert not self._buf, f"connection closed inside a frame ({len(self._buf)} bytes buffered)"
                return None
            self._buf += data

    async def receive(self, api_key: int, version: int, correlation_id: int) -> Message:
        frame = await self.read_frame()
        assert frame is not None, "the broker closed the connection instead of answering"
        got_id, body = decode_response(memoryview(frame), api_key, version)
        assert got_id == correlation_id, (got_id, correlation_id)
        return body

    async def request(self, body: Message, version: int) -> Message:
        correlation_id = await self.send(body, version)
        return await self.receive(body.API_KEY, version, correlation_id)

    async def at_eof(self) -> bool:
        """True once the broker has closed the connection (anything received first is a failure)."""
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return True
        assert not data, f"expected the connection to close, got {len(data)} bytes"
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def serving(b: Broker, *, committer: bool = True) -> AsyncIterator[Harness]:
    """Run the broker's background tasks; ``connect()`` opens in-memory connections to it.

    ``committer=False`` leaves the group committer stopped: appends that must be durable before
    they are acknowledged (``flush.messages=1``) then wait for ever, as behind a stalled disk.
    """
    async with trio.open_nursery() as nursery:
        if committer:
            nursery.start_soon(b.committer.run)
        h = Harness(b, Server(b, []), nursery)
        yield h
        nursery.cancel_scope.cancel()


@dataclass
class Harness:
    broker: Broker
    server: Server
    nursery: trio.Nursery

    def connect(self) -> Client:
        client_end, server_end = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.server.handle_connection, server_end)
        return Client(client_end)


# --- records ----------------------------------------------------------------------------------

def batch(values: Sequence[bytes], *, timestamp: int | None = None, producer_id: int = -1,
          producer_epoch: int = -1, base_sequence: int = -1, keys: Sequence[bytes | None] | None = None) -> bytes:
    ts = BASE_MS if timestamp is None else timestamp
    records = [NewRecord(key=keys[i] if keys else None, value=v, timestamp=ts + i) for i, v in enumerate(values)]
    return build_batch(records, producer_id=producer_id, producer_epoch=producer_epoch,
                       base_sequence=base_sequence)


def produce_request(topic: str, partition: int, records: bytes, *, acks: int = -1,
                    transactional_id: str | None = None) -> ProduceRequest:
    return ProduceRequest(transactional_id=transactional_id, acks=acks, timeout_ms=30_000, topic_data=[
        ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.PartitionProduceData(index=partition, records=records)])])


def only_partition(resp: ProduceResponse) -> ProduceResponse.PartitionProduceResponse:
    assert len(resp.responses) == 1 and len(resp.responses[0].partition_responses) == 1, resp
    return resp.responses[0].partition_responses[0]


def fetch_request(parts: Sequence[tuple[str, int, int]], *, max_wait_ms: int = 0, min_bytes: int = 0,
                  max_bytes: int = 50 * 1024 * 1024, partition_max_bytes: int = 1024 * 1024,
                  session_id: int = 0, session_epoch: int = -1,
                  topic_ids: dict[str, object] | None = None) -> FetchRequest:
    """A fetch of (topic, partition, offset) triples, grouped by topic in the given order."""
    topics: list[FetchRequest.FetchTopic] = []
    for topic, partition, offset in parts:
        if not topics or topics[-1].topic != topic:
            t = FetchRequest.FetchTopic(topic=topic)
            if topic_ids is not None:
                t.topic_id = topic_ids[topic]  # type: ignore[assignment]
            topics.append(t)
        topics[-1].partitions.append(FetchRequest.FetchPartition(
            partition=partition, fetch_offset=offset, partition_max_bytes=partition_max_bytes))
    return FetchRequest(max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=max_bytes, isolation_level=0,
                        session_id=session_id, session_epoch=session_epoch, topics=topics)


def fetched(resp: FetchResponse) -> dict[tuple[str, int], FetchResponse.PartitionData]:
    """Partition results keyed by (topic, partition); topic is the name, or the id below v13's names."""
    out = {}
    for t in resp.responses:
        for p in t.partitions:
            out[(t.topic or str(t.topic_id), p.partition_index)] = p
    return out


def records_bytes(p: FetchResponse.PartitionData) -> bytes:
    return bytes(p.records) if p.records is not None else b""  # type: ignore[arg-type]


def values_of(data: bytes) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record in a run of batches."""
    out = []
    for view in iter_batches(memoryview(data)):
        for r in view.records():
            out.append((r.offset, None if r.value is None else bytes(r.value)))
    return out


def as_stored(produced: bytes, *, base_offset: int, leader_epoch: int = 0) -> bytes:
    """A produced batch as the leader stores and serves it: the same bytes with the base offset and
    the partition leader epoch (the two header fields outside the CRC) assigned."""
    out = bytearray(produced)
    struct.pack_into(">q", out, 0, base_offset)
    struct.pack_into(">i", out, 12, leader_epoch)
    return bytes(out)
