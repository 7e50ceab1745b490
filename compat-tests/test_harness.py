"""The harness's own tests: its checks must reject what a wrong broker would return, and its proxy
must pass bytes through unchanged while recording frames. No client or broker is needed.
"""

from __future__ import annotations

import copy
import socket
import struct
import threading
from typing import Any

import pytest

import matrix
import scenarios
from capture import CaptureProxy


def test_murmur2_matches_the_java_client() -> None:
    # Values of org.apache.kafka.common.utils.Utils.murmur2 for these inputs.
    known = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
             "a-little-bit-longer-string": -1486304829, "abc": 479470107,
             "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    assert {k: scenarios.murmur2(k.encode()) for k in known} == known


def _faithful(params: dict[str, Any], partitioner: str) -> dict[str, Any]:
    """What a correct broker gives back for a round-trip step."""
    next_offset: dict[int, int] = {}
    produced, consumed = [], []
    for m in params["messages"]:
        p = scenarios.partition_for(partitioner, m["key"], params["partitions"])
        offset = next_offset.get(p, 0)
        next_offset[p] = offset + 1
        produced.append({"partition": p, "offset": offset})
        consumed.append({"partition": p, "offset": offset, "key": m["key"], "value": m["value"],
                         "headers": copy.deepcopy(m["headers"]), "timestamp": 0})
    consumed.sort(key=lambda r: (-r["partition"], r["offset"]))  # any order of arrival will do
    return {"produced": produced, "consumed": consumed}


ROUND_TRIP = {"topic": "t", "partitions": 3, "messages": scenarios.round_trip_messages()}


def _in_partition(result: dict[str, Any], partition: int) -> list[dict[str, Any]]:
    return sorted((r for r in result["consumed"] if r["partition"] == partition), key=lambda r: r["offset"])


def _drop_one(result: dict[str, Any]) -> None:
    result["consumed"].pop()


def _duplicate_one(result: dict[str, Any]) -> None:
    extra = dict(result["consumed"][0])
    extra["offset"] = max(r["offset"] for r in _in_partition(result, extra["partition"])) + 1
    result["consumed"].append(extra)


def _swap_values(result: dict[str, Any]) -> None:
    first, second = _in_partition(result, 0)[:2]
    first["value"], second["value"] = second["value"], first["value"]
    first["key"], second["key"] = second["key"], first["key"]


def _reorder_headers(result: dict[str, Any]) -> None:
    result["consumed"][0]["headers"].reverse()


def _change_header_value(result: dict[str, Any]) -> None:
    result["consumed"][0]["headers"][0][1] += "!"


def _gap_in_offsets(result: dict[str, Any]) -> None:
    for r in _in_partition(result, 0)[1:]:
        r["offset"] += 1


def _wrong_ack(result: dict[str, Any]) -> None:
    result["produced"][3]["offset"] += 1


@pytest.mark.parametrize("corrupt", [_drop_one, _duplicate_one, _swap_values, _reorder_headers,
                                     _change_header_value, _gap_in_offsets, _wrong_ack])
def test_round_trip_check_rejects_a_wrong_broker(corrupt: Any) -> None:
    result = _faithful(ROUND_TRIP, "murmur2")
    scenarios.check_round_trip(ROUND_TRIP, copy.deepcopy(result), "murmur2")
    corrupt(result)
    with pytest.raises(AssertionError):
        scenarios.check_round_trip(ROUND_TRIP, result, "murmur2")


def test_round_trip_check_knows_each_clients_partitioner() -> None:
    result = _faithful(ROUND_TRIP, "crc32")
    scenarios.check_round_trip(ROUND_TRIP, result, "crc32")
    with pytest.raises(AssertionError, match="murmur2 says"):
        scenarios.check_round_trip(ROUND_TRIP, result, "murmur2")


def test_offsets_check_follows_kafkas_rule() -> None:
    base_ms = 1_700_000_000_000
    queries = scenarios.offsets_queries(base_ms)
    params: dict[str, Any] = {"topic": "t", "seek_offset": scenarios.SEEK_OFFSET, "query_timestamps": queries}
    by_time: dict[str, int | None] = dict(zip(map(str, queries), [0, 2, 4, None], strict=True))
    good: dict[str, Any] = {"earliest": 0, "latest": 10, "by_time": by_time,
                            "seek": {"offset": 6, "value": "m-6"}}
    scenarios.check_offsets(params, good, base_ms)
    bad = copy.deepcopy(good)
    bad["by_time"][str(queries[2])] = 3  # the record before the time, not after
    with pytest.raises(AssertionError, match="by_time"):
        scenarios.check_offsets(params, bad, base_ms)


@pytest.mark.parametrize(("text", "kind"), [
    ("KafkaTimeoutError: Failed to update metadata after 5.0 secs.", "timeout"),
    ("KafkaError _UNKNOWN_TOPIC: Local: Unknown topic", "unknown_topic"),
    ("KafkaJSProtocolError: This server does not host this topic-partition", "unknown_topic"),
    ("TimeoutException: Topic compat-x not present in metadata after 5000 ms.", "unknown_topic"),
    ("% Delivery failed for message: Local: Message timed out", "timeout"),
    ("RecordTooLargeException: too big", "other"),
])
def test_missing_topic_errors_are_classified(text: str, kind: str) -> None:
    assert scenarios.classify_error(text) == kind


def _frame(api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    payload = struct.pack(">hhi", api_key, api_version, correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


def test_proxy_forwards_both_ways_and_records_request_frames() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve() -> None:  # read two frames, answer once
        conn, _ = upstream.accept()
        with conn:
            while len(received) < 2 * 4 + 8 + 3 + 8 + 5000:
                received.extend(conn.recv(65536))
            conn.sendall(b"\x00\x00\x00\x04pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    first, second = _frame(18, 3, 1, b"abc"), _frame(0, 9, 2, b"x" * 5000)
    with CaptureProxy("127.0.0.1", upstream.getsockname()[1]) as proxy:
        proxy.label = "test"
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            wire = first + second
            client.sendall(wire[:5])  # a frame split across reads
            client.sendall(wire[5:])
            reply = b""
            while len(reply) < 8:
                reply += client.recv(16)
        thread.join(timeout=5)
        frames = proxy.frames_for("test")
    upstream.close()
    assert bytes(received) == first + second
    assert reply == b"\x00\x00\x00\x04pong"
    assert [(f.api_key, f.api_version, f.correlation_id) for f in frames] == [(18, 3, 1), (0, 9, 2)]
    assert frames[0].data == first[4:]


def test_matrix_rewrites_only_its_section() -> None:
    doc = f"# Title\n\nhand-written\n\n{matrix.BEGIN}\nold table\n{matrix.END}\n\nmore prose\n"
    new = matrix.updated(doc, "new table")
    assert new == f"# Title\n\nhand-written\n\n{matrix.BEGIN}\nnew table\n{matrix.END}\n\nmore prose\n"
