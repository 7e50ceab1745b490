"""Restart tests: what a broker acknowledged is there, byte for byte, after it comes back.

Goal: after a clean close and reopen on a real directory, topics (names, ids, partition counts,
config overrides), every acknowledged record, the offsets clients see and the idempotent
producers' state are as before: a retried duplicate gets its original offsets and the next
sequence is accepted. After an unclean stop (no ``close``: the process died, so no checkpoints and
no clean-shutdown marker) the same holds for the data; and on a simulated disk that loses every
unsynced byte (``SimFileSystem.crash``), nothing acknowledged (or shown to a consumer) from a
``flush.messages=1`` topic is lost.
"""

from __future__ import annotations

import random

import trio
from broker_testkit import (
    as_stored,
    batch,
    fetch_request,
    fetched,
    make_broker,
    only_partition,
    produce_request,
    records_bytes,
    serving,
)

from protocol.error_codes import ErrorCode
from protocol.messages.create_partitions import CreatePartitionsRequest
from protocol.messages.create_topics import CreateTopicsRequest
from protocol.messages.delete_records import DeleteRecordsRequest
from protocol.messages.delete_topics import DeleteTopicsRequest
from protocol.messages.init_producer_id import InitProducerIdRequest
from protocol.messages.list_offsets import ListOffsetsRequest
from protocol.messages.metadata import MetadataRequest
from storage.fs import OsFileSystem, SimFileSystem

E = ErrorCode
TIMEOUT_S = 30
CONFIGS = {"retention.ms": "86400000", "segment.bytes": "65536", "cleanup.policy": "delete"}


async def create(c, name: str, partitions: int, configs: dict[str, str]) -> None:
    resp = await c.request(CreateTopicsRequest(topics=[CreateTopicsRequest.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1,
        configs=[CreateTopicsRequest.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])]), 7)
    assert resp.topics[0].error_code == E.NONE, resp


async def grow(c, name: str, count: int) -> None:
    resp = await c.request(CreatePartitionsRequest(timeout_ms=1000, topics=[
        CreatePartitionsRequest.CreatePartitionsTopic(name=name, count=count, assignments=None)]), 3)
    assert resp.results[0].error_code == E.NONE, resp


async def delete_topic(c, name: str) -> None:
    resp = await c.request(DeleteTopicsRequest(topic_names=[name], timeout_ms=1000), 5)
    assert resp.responses[0].error_code == E.NONE, resp


async def delete_records(c, topic: str, partition: int, offset: int) -> None:
    resp = await c.request(DeleteRecordsRequest(timeout_ms=1000, topics=[DeleteRecordsRequest.DeleteRecordsTopic(
        name=topic, partitions=[DeleteRecordsRequest.DeleteRecordsPartition(partition_index=partition,
                                                                           offset=offset)])]), 2)
    r = resp.topics[0].partitions[0]
    assert (r.error_code, r.low_watermark) == (E.NONE, offset), r


async def earliest_offset(c, topic: str, partition: int) -> int:
    resp = await c.request(ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsRequest.ListOffsetsTopic(
        name=topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=partition,
                                                                       timestamp=-2)])]), 7)
    return resp.topics[0].partitions[0].offset


async def produce(c, topic: str, partition: int, data: bytes, acks: int = -1):
    return only_partition(await c.request(produce_request(topic, partition, data, acks=acks), 9))


async def init_pid(c) -> int:
    resp = await c.request(InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000), 4)
    assert resp.error_code == E.NONE
    return resp.producer_id


async def read_partition(c, topic: str, partition: int):
    """Everything from the log start (one fetch; the test logs are small) and the partition's fields."""
    start = await earliest_offset(c, topic, partition)
    resp = await c.request(fetch_request([(topic, partition, start)], max_bytes=64 << 20,
                                         partition_max_bytes=64 << 20), 12)
    p = fetched(resp)[(topic, partition)]
    assert p.error_code == E.NONE, p
    return p


async def latest_offset(c, topic: str, partition: int) -> int:
    resp = await c.request(ListOffsetsRequest(replica_id=-1, topics=[ListOffsetsRequest.ListOffsetsTopic(
        name=topic, partitions=[ListOffsetsRequest.ListOffsetsPartition(partition_index=partition,
                                                                       timestamp=-1)])]), 7)
    r = resp.topics[0].partitions[0]
    assert r.error_code == E.NONE
    return r.offset


class Workload:
    """What the first broker acknowledged: stored bytes per partition and the idempotent batches.

    Topics: ``plain`` (created with two partitions and ``configs``, grown to three halfway),
    ``idem`` (one idempotent producer) and ``gone`` (deleted with its data, then created again
    under the same name with new data)."""

    def __init__(self, configs: dict[str, str]) -> None:
        self.configs = configs
        self.stored: dict[tuple[str, int], list[bytes]] = {}
        self.end: dict[tuple[str, int], int] = {}
        self.idempotent: list[tuple[bytes, int]] = []  # (batch as produced, its base offset)
        self.producer_id = -1
        self.next_sequence = 0
        self.topic_ids: dict[str, object] = {}

    async def run(self, c, rng: random.Random) -> None:
        flush = {k: v for k, v in self.configs.items() if k == "flush.messages"}
        await create(c, "plain", 2, self.configs)
        await create(c, "idem", 1, flush)
        await create(c, "gone", 2, flush)
        await produce(c, "gone", 1, batch([b"deleted with its topic"]))
        for i in range(30):
            if i == 10:
                await grow(c, "plain", 3)
            p = rng.randrange(2 if i < 10 else 3)
            b = batch([b"plain-%d-" % i + bytes(rng.randrange(0, 3000)) for _ in range(rng.randrange(1, 4))])
            r = await produce(c, "plain", p, b)
            assert r.error_code == E.NONE, r
            self._stored("plain", p, b, r.base_offset)
        await delete_topic(c, "gone")
        await create(c, "gone", 1, flush)
        b = batch([b"the new gone"])
        r = await produce(c, "gone", 0, b)
        self._stored("gone", 0, b, r.base_offset)
        self.producer_id = await init_pid(c)
        for i in range(8):
            n = rng.randrange(1, 4)
            b = batch([b"idem-%d-%d" % (i, k) for k in range(n)], producer_id=self.producer_id,
                      producer_epoch=0, base_sequence=self.next_sequence)
            r = await produce(c, "idem", 0, b)
            assert r.error_code == E.NONE, r
            self._stored("idem", 0, b, r.base_offset)
            self.idempotent.append((b, r.base_offset))
            self.next_sequence += n
        md = await c.request(MetadataRequest(topics=None), 12)
        self.topic_ids = {t.name: t.topic_id for t in md.topics}

    def _stored(self, topic: str, partition: int, b: bytes, base_offset: int) -> None:
        key = (topic, partition)
        assert base_offset == self.end.get(key, 0)
        self.stored.setdefault(key, []).append(as_stored(b, base_offset=base_offset))
        self.end[key] = base_offset + _count(b)

    async def check(self, c, h, *, retried_batches: int) -> None:
        """Everything acknowledged reads back exactly; the producer's state survived.

        ``retried_batches``: how many of the producer's last batches a retry must be recognised
        for. A producer snapshot (Kafka's format, written at clean shutdown) keeps only each
        producer's last batch, so after a clean restart Kafka knows that one; rebuilt by replaying
        the log, the state holds the last five, as before the restart."""
        b = h.broker
        md = await c.request(MetadataRequest(topics=None), 12)
        assert {t.name: t.topic_id for t in md.topics} == self.topic_ids
        assert {t.name: len(t.partitions) for t in md.topics} == {"plain": 3, "idem": 1, "gone": 1}
        assert b.topics.get("plain").configs == self.configs
        assert b.partition("plain", 0).log.config.segment_bytes == 65536
        assert b.partition("gone", 1) is None
        for (topic, partition), batches in self.stored.items():
            log = b.partition(topic, partition).log
            assert log.log_end_offset == self.end[(topic, partition)], "records lost"
            p = await read_partition(c, topic, partition)
            assert records_bytes(p) == b"".join(batches), (topic, partition)
            assert p.high_watermark == self.end[(topic, partition)], (topic, partition, p.high_watermark)
            assert await latest_offset(c, topic, partition) == self.end[(topic, partition)]
        # A retry of the producer's last batches: the original offsets, nothing appended.
        end = self.end[("idem", 0)]
        for produced, base_offset in self.idempotent[-retried_batches:]:
            r = await produce(c, "idem", 0, produced)
            assert (r.error_code, r.base_offset) == (E.NONE, base_offset), r
        assert b.partition("idem", 0).log.log_end_offset == end
        # Out of sequence is still refused; the next sequence is accepted where the log ends.
        gap = batch([b"gap"], producer_id=self.producer_id, producer_epoch=0, base_sequence=self.next_sequence + 3)
        assert (await produce(c, "idem", 0, gap)).error_code == E.OUT_OF_ORDER_SEQUENCE_NUMBER
        nxt = batch([b"next"], producer_id=self.producer_id, producer_epoch=0, base_sequence=self.next_sequence)
        r = await produce(c, "idem", 0, nxt)
        assert (r.error_code, r.base_offset) == (E.NONE, end), r
        # A new producer id is never one handed out before the restart.
        assert await init_pid(c) > self.producer_id


def _count(b: bytes) -> int:
    from protocol.records import RecordBatchView

    return RecordBatchView(b).record_count


async def test_clean_restart_keeps_topics_records_and_producer_state(tmp_path, autojump_clock):
    fs = OsFileSystem()
    log_dir = str(tmp_path / "logs")
    work = Workload(CONFIGS)
    b1 = make_broker(fs, log_dir=log_dir)
    async with serving(b1) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await work.run(c, random.Random(7))
            start = work.end[("plain", 1)] - 1
            await delete_records(c, "plain", 1, start)
    cluster_id = b1.cluster_id
    b1.close()

    b2 = make_broker(fs, log_dir=log_dir)
    assert b2.cluster_id == cluster_id
    async with serving(b2) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            # The log start offset moved by DeleteRecords is kept exactly.
            assert await earliest_offset(c, "plain", 1) == start
            work.stored[("plain", 1)] = work.stored[("plain", 1)][-1:]
            await work.check(c, h, retried_batches=1)
    b2.close()


async def test_restart_after_unclean_stop_keeps_acknowledged_records(tmp_path, autojump_clock):
    """The process dies (no ``close``): no checkpoints, no producer snapshots, no clean-shutdown
    marker. The page cache survives, so everything acknowledged must be recovered and served:
    a single-replica leader's high watermark is its log end once it leads again (Kafka's
    Partition.makeLeader increments the high watermark when the ISR is just the leader)."""
    fs = OsFileSystem()
    log_dir = str(tmp_path / "logs")
    work = Workload(CONFIGS)
    b1 = make_broker(fs, log_dir=log_dir)
    async with serving(b1) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await work.run(c, random.Random(8))
    # No b1.close(): the next broker finds the directory as a killed process leaves it.

    b2 = make_broker(fs, log_dir=log_dir)
    async with serving(b2) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await work.check(c, h, retried_batches=5)
    b2.close()


async def test_crash_loses_nothing_acknowledged_with_flush_messages_1():
    """On a disk that loses every unsynced byte, each acknowledged batch of a flush.messages=1
    topic survives, for plain and idempotent producers alike, and producer state is rebuilt from
    the log (there is no snapshot: snapshots are written at clean shutdown).

    Real clock: the group committer fsyncs on worker threads, and an autojump clock would leap
    to the next deadline while a thread runs."""
    fs = SimFileSystem()
    durable = {**CONFIGS, "flush.messages": "1"}
    work = Workload(durable)
    b1 = make_broker(fs)
    async with serving(b1) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await work.run(c, random.Random(9))
    fs.crash(random.Random(1), torn=True)

    b2 = make_broker(fs)
    async with serving(b2) as h:
        c = h.connect()
        with trio.fail_after(TIMEOUT_S):
            await work.check(c, h, retried_batches=5)
    b2.close()


async def test_a_consumer_never_sees_a_record_a_crash_can_take_away(autojump_clock):
    """flush.messages=1: Kafka flushes inside the append, before the high watermark moves, so a
    record is never served to a consumer until it is on disk. Here the fsync never completes (the
    group committer is stopped): a fetch must not return the record, and after the crash that
    loses it, nobody has seen it."""
    fs = SimFileSystem()
    b1 = make_broker(fs)
    async with serving(b1, committer=False) as h:
        producer, consumer = h.connect(), h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create(producer, "d", 1, {"flush.messages": "1"})
            async with trio.open_nursery() as n:
                n.start_soon(produce, producer, "d", 0, batch([b"not yet durable"]))
                while b1.partition("d", 0).log.log_end_offset == 0:
                    await trio.sleep(0.001)
                p = await read_partition(consumer, "d", 0)
                seen = records_bytes(p)
                n.cancel_scope.cancel()
    fs.crash()
    b2 = make_broker(fs)
    survived = b2.partition("d", 0).log.log_end_offset
    assert seen == b"" or survived >= 1, "a consumer read a record that the crash then took away"


async def test_a_retried_duplicate_is_acknowledged_only_once_durable(autojump_clock):
    """flush.messages=1 with an idempotent producer whose first attempt is still waiting for its
    fsync: the retry (say, on a new connection after a timeout) is a duplicate of a batch that is
    not on disk yet. Answering it NONE before the fsync acknowledges a record a crash can lose."""
    fs = SimFileSystem()
    b1 = make_broker(fs)
    acked = False
    async with serving(b1, committer=False) as h:
        first, retry = h.connect(), h.connect()
        with trio.fail_after(TIMEOUT_S):
            await create(first, "d", 1, {"flush.messages": "1"})
            pid = await init_pid(first)
            b = batch([b"once"], producer_id=pid, producer_epoch=0, base_sequence=0)
            async with trio.open_nursery() as n:
                n.start_soon(produce, first, "d", 0, b)
                while b1.partition("d", 0).log.log_end_offset == 0:
                    await trio.sleep(0.001)
                with trio.move_on_after(5):
                    r = await produce(retry, "d", 0, b)
                    acked = r.error_code == E.NONE
                n.cancel_scope.cancel()
    fs.crash()
    b2 = make_broker(fs)
    survived = b2.partition("d", 0).log.log_end_offset
    assert not acked or survived == 1, "the retry was acknowledged, then the crash lost the record"
