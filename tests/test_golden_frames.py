"""Request frames captured from real clients decode, re-encode to the same bytes, and carry valid batches.

The frames in tests/golden/<client>/ were recorded by compat-tests/capture.py between each client
(kafka-python, confluent-kafka, aiokafka, kcat, kafkajs, the Java client) and a real broker: the
request header and body of the first request of every API version the client sent. A codec that
misreads any field of what a real client sends fails here: the re-encoded frame would differ.
Bytes after a complete body are allowed (Kafka ignores them; librdkafka sends some).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.headers import decode_request, request_header_version
from protocol.messages import ApiKey
from protocol.messages.produce import ProduceRequest
from protocol.records import iter_batches

GOLDEN = Path(__file__).resolve().parent / "golden"
FRAMES = sorted(GOLDEN.glob("*/*.bin"))
CLIENTS = {"kafka-python", "confluent-kafka", "aiokafka", "kcat", "kafkajs", "java"}


def test_every_client_has_goldens() -> None:
    assert {p.parent.name for p in FRAMES} == CLIENTS
    for client in CLIENTS:
        names = {p.stem.rsplit("_v", 1)[0] for p in FRAMES if p.parent.name == client}
        assert {"api_versions", "metadata", "produce", "fetch", "list_offsets"} <= names, client


@pytest.mark.parametrize("path", FRAMES, ids=[f"{p.parent.name}/{p.stem}" for p in FRAMES])
def test_golden_frame_round_trips(path: Path) -> None:
    frame = memoryview(path.read_bytes())
    header, body = decode_request(frame)
    assert path.stem == f"{ApiKey(header.request_api_key).name.lower()}_v{header.request_api_version}"
    version = header.request_api_version
    again = bytearray()
    header.encode_into(again, request_header_version(header.request_api_key, version))
    body.encode_into(again, version)
    assert bytes(frame[: len(again)]) == bytes(again)


PRODUCES = [p for p in FRAMES if p.stem.startswith("produce_")]


@pytest.mark.parametrize("path", PRODUCES, ids=[p.parent.name for p in PRODUCES])
def test_golden_produce_batches_validate_and_iterate(path: Path) -> None:
    _, body = decode_request(memoryview(path.read_bytes()))
    assert isinstance(body, ProduceRequest)
    batches = 0
    for topic in body.topic_data:
        for part in topic.partition_data:
            assert part.records is not None
            it = iter_batches(memoryview(part.records))  # type: ignore[arg-type]
            for view in it:
                view.validate(from_client=True)
                records = list(view.records())
                assert len(records) == view.record_count > 0
                assert [r.offset_delta for r in records] == list(range(view.record_count))
                batches += 1
            assert it.trailing_bytes == 0
    assert batches >= 1


def test_compatibility_doc_lists_the_served_versions() -> None:
    """docs/compatibility.md's API table is the one ApiVersions answers from."""
    from tools.api_versions_doc import main

    assert main(["--check"]) == 0
