"""Property test: the partition log against an in-memory model, through crashes and reopens.

Goal: under any interleaving of leader and follower appends, reads, truncations, rolls, retention,
DeleteRecords, flushes, clean reopens and power cuts (on the simulated file system, with torn
writes), the log holds exactly the model's batches, byte for byte: reads start at the batch
holding the offset and stop at the bound, offsets by time agree with a scan of the model, and
after a crash everything that was durable is still there. Hypothesis runs derandomized (fixed
seed) and prints the failing program of steps.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from storage_helpers import read_all

from protocol.error_codes import ErrorCode
from protocol.records import NewRecord, build_batch, iter_batches
from storage.config import LogConfig
from storage.fs import SimFileSystem
from storage.log import AppendInfo, AppendRejected, PartitionLog
from storage.manager import LogManager


@dataclass(frozen=True, slots=True)
class Batch:
    base: int
    last: int
    epoch: int
    timestamps: tuple[int, ...]
    raw: bytes


class LogMachine(RuleBasedStateMachine):
    """One partition log and its model: the list of batches it must hold."""

    @initialize(
        segment_bytes=st.sampled_from([200, 700, 1 << 20]),
        index_interval_bytes=st.sampled_from([0, 64, 4096]),
        retention_bytes=st.sampled_from([-1, 500, 1500]),
    )
    def setup(self, segment_bytes: int, index_interval_bytes: int, retention_bytes: int) -> None:
        self.cfg = LogConfig(
            segment_bytes=segment_bytes,
            index_interval_bytes=index_interval_bytes,
            retention_bytes=retention_bytes,
            retention_ms=-1,
            file_delete_delay_ms=0,
        )
        self.fs = SimFileSystem()
        self.mgr = LogManager.open(self.fs, "/d", now_ms=0, default_config=self.cfg)
        self.log: PartitionLog = self.mgr.get_or_create_log("t", 0, now_ms=0)
        # Every batch written and not truncated away, including those below the log start offset
        # (a crash may bring the start offset back down: its checkpoint is periodic, as Kafka's).
        self.history: list[Batch] = []
        self.last_next_offset = -1
        self.epoch = 0
        self.clock = 1000
        self.rng = random.Random(0)

    # --- helpers ------------------------------------------------------------------------------

    @property
    def model(self) -> list[Batch]:
        """The batches a reader may see: those not wholly below the log start offset."""
        start = self.log.log_start_offset
        return [b for b in self.history if b.last >= start]

    @property
    def leo(self) -> int:
        return self.history[-1].last + 1 if self.history else self.log.log_start_offset

    def _record(self, raw: bytes) -> None:
        for v in iter_batches(raw):
            rec_ts = tuple(r.timestamp for r in v.records())
            self.history.append(
                Batch(v.base_offset, v.last_offset, v.partition_leader_epoch, rec_ts, bytes(v.raw()))
            )

    # --- operations ---------------------------------------------------------------------------

    @rule(
        counts=st.lists(st.integers(1, 4), min_size=1, max_size=3),
        size=st.integers(0, 120),
        ts_step=st.integers(-5, 50),
        bump=st.booleans(),
    )
    def append_leader(self, counts: list[int], size: int, ts_step: int, bump: bool) -> None:
        if bump:
            self.epoch += 1
        payload = b""
        for n in counts:
            self.clock += ts_step
            payload += build_batch([NewRecord(value=b"v" * size, timestamp=self.clock + i) for i in range(n)])
        info = self.log.append_as_leader(payload, leader_epoch=self.epoch, now_ms=0)
        if len(payload) > self.cfg.segment_bytes:
            assert isinstance(info, AppendRejected) and info.error == ErrorCode.RECORD_LIST_TOO_LARGE
            return
        assert isinstance(info, AppendInfo)
        assert info.first_offset == self.leo
        start = len(self.history)
        self._record(b"".join(bytes(v.raw()) for v in read_all(self.log, info.first_offset)))
        assert self.history[-1].last == info.last_offset
        assert all(b.epoch == self.epoch for b in self.history[start:])

    @rule(n=st.integers(1, 5), gap=st.sampled_from([0, 0, 0, 3]))
    def append_follower(self, n: int, gap: int) -> None:
        self.epoch += 1
        self.clock += 1
        raw = build_batch(
            [NewRecord(value=b"f", timestamp=self.clock)] * n,
            base_offset=self.leo + gap,
            partition_leader_epoch=self.epoch,
        )
        info = self.log.append_as_follower(raw, now_ms=0)
        if gap:
            assert not isinstance(info, AppendInfo)
        else:
            assert isinstance(info, AppendInfo)
            self._record(raw)

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        starts = st.integers(self.log.log_start_offset, self.leo)
        if self.log.log_start_offset <= self.last_next_offset <= self.leo:
            # Often where the last read ended, as consumers do (the log remembers those).
            starts = st.one_of(st.just(self.last_next_offset), starts)
        start = data.draw(starts)
        max_bytes = data.draw(st.integers(1, 2000))
        bound = data.draw(st.integers(start, self.leo))
        res = self.log.read(start, max_bytes=max_bytes, upper_bound_offset=bound)
        views = list(iter_batches(res.read_bytes()))
        got = [bytes(v.raw()) for v in views]
        assert res.next_offset == (views[-1].next_offset if views else start)
        self.last_next_offset = res.next_offset
        want = [b for b in self.model if b.last >= start and b.last < bound]
        expected = []
        total = 0
        for b in want:
            if expected and total + len(b.raw) > max_bytes:
                break
            expected.append(b.raw)
            total += len(b.raw)
        # The log may stop earlier than the model only by ending a read at a size limit.
        assert got == expected[: len(got)]
        assert len(got) == len(expected) or sum(map(len, got)) + len(expected[len(got)]) > max_bytes

    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        if not self.model:
            return
        offset = data.draw(st.integers(self.log.log_start_offset, self.leo))
        self.log.truncate_to(offset, now_ms=0)
        self.history = [b for b in self.history if b.last < offset]
        assert self.log.log_end_offset == self.leo

    @rule()
    def roll(self) -> None:
        self.log.roll(now_ms=0)

    @rule(data=st.data())
    def advance_high_watermark(self, data: st.DataObject) -> None:
        hw = data.draw(st.integers(self.log.high_watermark, self.leo))
        self.log.update_high_watermark(hw)

    @rule()
    def retention(self) -> None:
        start = self.log.log_start_offset
        self.log.delete_expired_segments(now_ms=self.clock)
        self.mgr.remove_deleted(now_ms=10**12)
        assert start <= self.log.log_start_offset <= self.log.high_watermark

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.log.log_start_offset, self.log.high_watermark))
        self.log.delete_records_before(offset, now_ms=0)
        assert self.log.log_start_offset == offset

    @rule(full=st.booleans())
    def flush(self, full: bool) -> None:
        plan = self.log.begin_sync(full=full)
        plan.execute()
        self.log.end_sync(plan, now_ms=0)
        assert self.log.durable_offset == self.log.log_end_offset

    @rule()
    def reopen_clean(self) -> None:
        self.mgr.close(now_ms=0)
        self.mgr = LogManager.open(self.fs, "/d", now_ms=0, default_config=self.cfg)
        assert self.mgr.had_clean_shutdown
        hw = self.log.high_watermark
        log = self.mgr.get_log("t", 0)
        assert log is not None
        assert log.high_watermark == hw
        self.log = log

    @rule(torn=st.booleans(), checkpoint=st.booleans())
    def crash(self, torn: bool, checkpoint: bool) -> None:
        if checkpoint:
            self.mgr.write_checkpoints()
        durable = self.log.durable_offset
        start = self.log.log_start_offset
        self.fs.crash(self.rng, torn=torn)
        self.mgr = LogManager.open(self.fs, "/d", now_ms=0, default_config=self.cfg)
        log = self.mgr.get_log("t", 0)
        assert log is not None
        self.log = log
        # Everything durable survives; the log is a prefix of what was written.
        assert log.log_end_offset >= durable
        self.history = [b for b in self.history if b.last < log.log_end_offset]
        if self.history and self.history[-1].last + 1 != log.log_end_offset:
            # The bytes up to the checkpointed log start were lost (never synced): the log
            # restarted, empty, at that start offset, as Kafka's does.
            assert log.log_start_offset == log.log_end_offset > self.history[-1].last
            self.history = []
        assert log.log_start_offset <= max(start, log.log_end_offset)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def offsets_are_ordered(self) -> None:
        log = self.log
        assert log.log_start_offset <= log.high_watermark <= log.log_end_offset
        assert log.recovery_point <= log.durable_offset <= log.log_end_offset
        assert log.log_end_offset == self.leo

    @invariant()
    def contents_match(self) -> None:
        assert [bytes(v.raw()) for v in read_all(self.log)] == [b.raw for b in self.model]

    @invariant()
    def time_lookups_match(self) -> None:
        if not self.model:
            return
        probes = {self.model[0].timestamps[0] - 1, self.clock, self.clock + 100}
        probes |= {b.timestamps[0] for b in self.model[:: max(1, len(self.model) // 4)]}
        for t in probes:
            found = self.log.offset_for_timestamp(t)
            start = self.log.log_start_offset
            hits = [
                (ts, b.base + i)
                for b in self.model
                for i, ts in enumerate(b.timestamps)
                if ts >= t and b.base + i >= start
            ]
            if not hits:
                assert found is None or found.offset >= start
                continue
            # The log answers with the first batch whose max timestamp reaches t (Kafka's rule).
            first_batch = next(b for b in self.model if max(b.timestamps) >= t and b.last >= start)
            want = next(first_batch.base + i for i, ts in enumerate(first_batch.timestamps) if ts >= t)
            assert found is not None and found.offset == max(want, start), (t, found, want)

    @invariant()
    def epochs_match(self) -> None:
        # The epoch cache may start above the log start after a crash (its truncation from the
        # start is checkpointed at once, the start offset periodically); above, it is exact.
        earliest = self.log.epochs.earliest
        if earliest is None:
            return  # the start moved (trimming the cache), then a crash took the start back
        floor = max(self.log.log_start_offset, earliest.start_offset if earliest else 0)
        for b in self.model:
            if b.base >= floor:
                assert self.log.epochs.epoch_for_offset(b.base) == b.epoch


LogMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("TRAFKA_MODEL_EXAMPLES", "400")),
    derandomize=os.environ.get("TRAFKA_MODEL_RANDOM") is None,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLogModel = LogMachine.TestCase
