"""The harness's own tests: its checks must reject what a wrong broker would return, and its proxy
must pass bytes through unchanged while recording frames. No client or broker is needed.
"""

from __future__ import annotations

import copy
import shutil
import socket
import struct
import threading
from pathlib import Path
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


# --- consumer groups ----------------------------------------------------------------------------


def test_split_problem_accepts_only_a_clean_split() -> None:
    def held(**members: list[int] | None) -> dict[str, frozenset[int] | None]:
        return {name: None if p is None else frozenset(p) for name, p in members.items()}

    assert scenarios.split_problem(held(a=[0, 1], b=[2, 3]), 4, each=2) is None
    assert scenarios.split_problem(held(a=[0, 1], b=[2], c=[3]), 4) is None
    assert "no assignment yet" in (scenarios.split_problem(held(a=[0, 1, 2, 3], b=None), 4) or "")
    assert "held twice" in (scenarios.split_problem(held(a=[0, 1], b=[1, 2, 3]), 4) or "")
    assert "held by nobody" in (scenarios.split_problem(held(a=[0], b=[2, 3]), 4) or "")
    assert "c holds []" in (scenarios.split_problem(held(a=[0, 1], b=[2, 3], c=[]), 4) or "")
    assert "a holds [0, 1, 2]" in (scenarios.split_problem(held(a=[0, 1, 2], b=[3]), 4, each=2) or "")


def test_cooperative_check_rejects_an_eager_rebalance() -> None:
    before = {"a": frozenset({0, 1}), "b": frozenset({2, 3})}
    after = {"a": frozenset({0}), "b": frozenset({2, 3}), "c": frozenset({1})}
    scenarios.check_cooperative(before, after, {"a": {1}, "b": set()}, "c")
    with pytest.raises(AssertionError, match="revoked"):  # eager: everything given up and taken back
        scenarios.check_cooperative(before, after, {"a": {0, 1}, "b": {2, 3}}, "c")
    swapped = {"a": frozenset({0, 2}), "b": frozenset({3}), "c": frozenset({1})}
    with pytest.raises(AssertionError, match="a gained"):
        scenarios.check_cooperative(before, swapped, {"a": {1}, "b": {2}}, "c")


def test_consumed_run_check_wants_the_committed_start() -> None:
    scenarios.check_consumed_run([[0, 10], [0, 11]], 2, 10)
    with pytest.raises(AssertionError, match="10..11"):
        scenarios.check_consumed_run([[0, 0], [0, 1]], 2, 10)  # the commit was lost: read from 0


def test_parse_batches_reads_codec_count_and_crc() -> None:
    from kafka.record.default_records import DefaultRecordBatchBuilder

    data = b""
    for codec in (scenarios.CODEC_IDS["gzip"], scenarios.CODEC_IDS["none"]):
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                            producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                            batch_size=1 << 20)
        for i in range(3):
            builder.append(i, timestamp=None, key=b"k", value=b"v" * 100, headers=[])
        data += bytes(builder.build())
    gz, plain = scenarios.parse_batches(2, data + data[:30])  # a cut-off batch at the end is dropped
    assert (gz.partition, gz.codec, gz.records, gz.magic, gz.crc_ok) == (2, 1, 3, 2, True)
    assert (plain.codec, plain.records, plain.crc_ok) == (0, 3, True)
    params = {"codec": "gzip", "messages": [{}] * 3}
    scenarios.check_stored_codec(params, [gz])
    with pytest.raises(AssertionError, match="not gzip"):
        scenarios.check_stored_codec(params, [plain])
    corrupt = bytearray(data)
    corrupt[70] ^= 0xFF
    with pytest.raises(AssertionError, match="crc_ok=False"):
        scenarios.check_stored_codec(params, scenarios.parse_batches(0, bytes(corrupt))[:1])


# --- kafkajs's codec plugins --------------------------------------------------------------------

JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.mark.skipif(shutil.which("node") is None or not (JS_DIR / "node_modules" / "lz4js").is_dir(),
                    reason="node or the kafkajs codec packages are not installed")
def test_kafkajs_codecs_agree_with_the_reference_libraries() -> None:
    """What codecs.js writes, liblz4 (strictly: every block decoded into a buffer of exactly its
    size, which rejects a last match inside the final 12 bytes), zstd and snappy read; and what
    they write (linked LZ4 blocks with checksums, streamed zstd, xerial snappy) codecs.js reads."""
    import base64
    import json
    import random
    import struct
    import subprocess

    import lz4.block
    import lz4.frame
    import snappy
    import zstandard

    rng = random.Random(7)
    inputs = [b"", b"a", bytes(range(256)) * 3]
    for size in (13, 100, 65535, 65536, 65537, 200_000):
        inputs.append(bytes(rng.choice(b"abcab-0123") for _ in range(size)))
        inputs.append(rng.randbytes(size))
    script = """
        const c = require('./codecs')
        const chunks = []
        process.stdin.on('data', d => chunks.push(d))
        process.stdin.on('end', async () => {
          const out = []
          for (const t of JSON.parse(Buffer.concat(chunks))) {
            const d = Buffer.from(t.data, 'base64')
            const back = {}
            for (const [name, codec] of [['lz4', c.lz4Codec], ['zstd', c.zstdCodec], ['snappy', c.snappyCodec()]]) {
              back[name] = (await codec.decompress(Buffer.from(t[name], 'base64'))).toString('base64')
            }
            out.push({ lz4: (await c.lz4Codec.compress({ buffer: d })).toString('base64'),
                       zstd: (await c.zstdCodec.compress({ buffer: d })).toString('base64'),
                       snappy: Buffer.from(await c.snappyCodec().compress({ buffer: d })).toString('base64'),
                       back })
          }
          process.stdout.write(JSON.stringify(out))
        })
    """

    def xerial(data: bytes) -> bytes:
        out = bytes([130, 83, 78, 65, 80, 80, 89, 0]) + struct.pack(">ii", 1, 1)
        for i in range(0, len(data), 32768):
            block = snappy.compress(data[i:i + 32768])
            out += struct.pack(">i", len(block)) + block
        return out

    def streamed_zstd(data: bytes) -> bytes:
        compressor = zstandard.ZstdCompressor().compressobj()
        return compressor.compress(data) + compressor.flush()

    request = [{"data": base64.b64encode(d).decode(),
                "lz4": base64.b64encode(lz4.frame.compress(d, block_linked=True, block_checksum=True,
                                                           content_checksum=True, store_size=True)).decode(),
                "zstd": base64.b64encode(streamed_zstd(d)).decode(),
                "snappy": base64.b64encode(xerial(d)).decode()} for d in inputs]
    done = subprocess.run(["node", "-e", script], input=json.dumps(request).encode(), cwd=JS_DIR,
                          capture_output=True, timeout=120, check=True)
    for data, got in zip(inputs, json.loads(done.stdout), strict=True):
        assert {k: base64.b64decode(v) for k, v in got["back"].items()} == dict.fromkeys(got["back"], data)
        frame = base64.b64decode(got["lz4"])
        assert lz4.frame.decompress(frame) == data
        assert frame[4:6] == b"\x60\x40", "independent 64 KiB blocks, no checksums, as the Java client writes"
        at, start = 7, 0
        while (word := struct.unpack_from("<I", frame, at)[0]) != 0:
            size, raw = word & 0x7FFFFFFF, word >> 31
            block = frame[at + 4:at + 4 + size]
            expected = data[start:start + 65536]
            assert (block if raw else lz4.block.decompress(block, uncompressed_size=len(expected))) == expected
            at, start = at + 4 + size, start + len(expected)
        assert zstandard.ZstdDecompressor().decompress(base64.b64decode(got["zstd"])) == data
        assert snappy.uncompress(base64.b64decode(got["snappy"])) == data
