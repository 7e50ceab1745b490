"""Shared helpers for the storage tests: batches to append and a way to read them back."""

from __future__ import annotations

from protocol.records import NewRecord, RecordBatchView, build_batch, iter_batches
from storage.log import PartitionLog


def batch(n: int = 1, *, size: int = 10, ts: int = 1_000, tag: int = 0) -> bytes:
    """A client batch of ``n`` records with ``size``-byte values, timestamps ts, ts+1, ..."""
    return build_batch(
        [NewRecord(key=b"k%d" % tag, value=bytes([tag % 256]) * size, timestamp=ts + i) for i in range(n)]
    )


def read_all(
    log: PartitionLog, start: int | None = None, *, bound: int | None = None
) -> list[RecordBatchView]:
    """Every batch from ``start`` (the log start) up to the bound, through ``read``."""
    offset = log.log_start_offset if start is None else start
    out: list[RecordBatchView] = []
    while True:
        res = log.read(offset, max_bytes=1 << 16, upper_bound_offset=bound)
        views = list(iter_batches(res.read_bytes()))
        if not views:
            return out
        out += views
        offset = views[-1].next_offset
