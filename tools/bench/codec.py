"""Codec benchmark: Trafka's generated codec against kafka-python's, on the same messages.

    python -m tools.bench.codec            # the full run (a few seconds per case)
    python -m tools.bench.codec --quick    # CI smoke run: tiny loops, same code paths

Cases (the issue's): a ProduceRequest with one partition and a 16 KiB batch (records are not
copied on decode), a FetchResponse around 100 partitions of record slices, and a MetadataResponse
of 100 topics x 10 partitions. kafka-python gets the very same bytes: its objects are made by
decoding what we encoded. Each figure is the best of several repeats (microseconds per op), and
the ratio column is kafka-python's time over ours. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol.message import ChunkedOut, Message
from protocol.messages.fetch import FetchResponse
from protocol.messages.metadata import MetadataResponse
from protocol.messages.produce import ProduceRequest

BATCH_BYTES = 16 * 1024
SLICE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class FileSlice:
    """Stands in for the broker's segment-file slices: the codec only needs the size."""

    nbytes: int


def produce_request() -> ProduceRequest:
    batch = bytes(range(256)) * (BATCH_BYTES // 256)
    part = ProduceRequest.PartitionProduceData(index=0, records=batch)
    return ProduceRequest(transactional_id=None, acks=-1, timeout_ms=30000,
                          topic_data=[ProduceRequest.TopicProduceData(name="bench", partition_data=[part])])


def fetch_response(records: Callable[[int], Any]) -> FetchResponse:
    parts = [
        FetchResponse.PartitionData(partition_index=i, error_code=0, high_watermark=1000 + i,
                                    last_stable_offset=1000 + i, log_start_offset=0, records=records(i))
        for i in range(100)
    ]
    return FetchResponse(throttle_time_ms=0, error_code=0, session_id=12345,
                         responses=[FetchResponse.FetchableTopicResponse(topic="bench", partitions=parts)])


def metadata_response() -> MetadataResponse:
    brokers = [MetadataResponse.MetadataResponseBroker(node_id=i, host=f"broker-{i}.example", port=9092, rack=None)
               for i in range(3)]
    topics = []
    for t in range(100):
        parts = [MetadataResponse.MetadataResponsePartition(
            error_code=0, partition_index=p, leader_id=p % 3, leader_epoch=5,
            replica_nodes=[p % 3, (p + 1) % 3, (p + 2) % 3], isr_nodes=[p % 3, (p + 1) % 3], offline_replicas=[])
            for p in range(10)]
        topics.append(MetadataResponse.MetadataResponseTopic(
            error_code=0, name=f"topic-{t:03d}", topic_id=uuid.UUID(int=t + 1), is_internal=False,
            partitions=parts, topic_authorized_operations=-2147483648))
    return MetadataResponse(throttle_time_ms=0, brokers=brokers, cluster_id="trafka-bench", controller_id=0,
                            topics=topics)


@dataclass(slots=True)
class Case:
    name: str
    version: int
    ours: Message
    theirs_cls: Any
    fetch_slices: bool = False


def cases() -> list[Case]:
    from kafka.protocol.consumer import FetchResponse as KFetchResponse
    from kafka.protocol.metadata import MetadataResponse as KMetadataResponse
    from kafka.protocol.producer import ProduceRequest as KProduceRequest

    return [
        Case("ProduceRequest v9, 1 x 16 KiB batch", 9, produce_request(), KProduceRequest),
        Case("FetchResponse v12, 100 partitions of 1 KiB slices", 12,
             fetch_response(lambda i: bytes(SLICE_BYTES)), KFetchResponse, fetch_slices=True),
        Case("MetadataResponse v12, 100 topics x 10 partitions", 12, metadata_response(), KMetadataResponse),
    ]


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def run(quick: bool) -> list[dict[str, Any]]:
    number, repeat = (3, 1) if quick else (0, 5)
    rows = []
    for case in cases():
        data = case.ours.encode(case.version)
        ours_cls = type(case.ours)
        theirs = case.theirs_cls.decode(data, version=case.version)
        theirs._header = None  # its decoder leaves the header slot unset
        assert bytes(theirs.encode(version=case.version)) == data, f"{case.name}: codecs disagree"

        def our_decode(data: bytes = data, cls: type[Message] = ours_cls, v: int = case.version) -> object:
            return cls.decode(data, v)

        def their_decode(data: bytes = data, cls: Any = case.theirs_cls, v: int = case.version) -> object:
            return cls.decode(data, version=v)

        if case.fetch_slices:
            # The broker encodes a fetch response around file slices: records are spliced, not copied.
            spliced = fetch_response(lambda i: FileSlice(SLICE_BYTES))

            def our_encode(msg: Message = spliced, v: int = case.version) -> object:
                out = ChunkedOut()
                msg.encode_into(out, v)
                return out.chunks()
        else:
            def our_encode(msg: Message = case.ours, v: int = case.version) -> object:
                return msg.encode(v)

        def their_encode(obj: Any = theirs, v: int = case.version) -> object:
            return obj.encode(version=v)

        n = number or max(1, int(0.2 / max(timeit.timeit(our_decode, number=3) / 3, 1e-7)))
        figures = {
            "decode_us": (best_us(our_decode, n, repeat), best_us(their_decode, max(1, n // 4), repeat)),
            "encode_us": (best_us(our_encode, n, repeat), best_us(their_encode, max(1, n // 4), repeat)),
        }
        for op, (ours_us, theirs_us) in figures.items():
            rows.append({"case": case.name, "op": op.split("_")[0], "trafka_us": round(ours_us, 2),
                         "kafka_python_us": round(theirs_us, 2), "ratio": round(theirs_us / ours_us, 2),
                         "bytes": len(data)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.codec", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with tiny loops (CI)")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(f"{'case':52} {'op':7} {'trafka us':>10} {'kafka-python us':>16} {'ratio':>6}")
    for r in rows:
        print(f"{r['case']:52} {r['op']:7} {r['trafka_us']:>10.2f} {r['kafka_python_us']:>16.2f} {r['ratio']:>5.1f}x")
    print(json.dumps({"bench": "codec", "quick": args.quick, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
