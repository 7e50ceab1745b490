"""The scenarios of the compatibility matrix: what each asks a driver to do, and how we judge it.

A matrix *scenario* (a row of docs/compatibility.md) becomes one or more driver *steps* (see
drivers/common.py for the driver contract). This module owns the data the drivers are given (so
the harness, not the client, decides what "the same" means) and the checks that compare a driver's
report with that data. Checks raise ``AssertionError`` with a message that says what differed.

Nothing here starts processes or talks to a broker: see harness.py for that.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ROUND_TRIP_PARTITIONS = 3
SEEDED_COUNT = 10  # records the harness writes into the offsets and out-of-range topics
SEEDED_STEP_MS = 1000
OUT_OF_RANGE_OFFSET = 1000
SEEK_OFFSET = 6
MISSING_TOPIC_TIMEOUT_MS = 5000
# Longest a client may take to give up on a missing topic: its own timeout plus slack for retries.
MISSING_TOPIC_ELAPSED_MS_MAX = 30_000
# Kafka's message.max.bytes default is 1048588 and bounds the whole record batch (its 61-byte
# header and the record's framing included), so the largest value that fits a default broker is
# a little under 1 MiB: 1 MiB less 128 bytes leaves room for the key and the framing.
LARGE_VALUE_BYTES = 1024 * 1024 - 128
LARGE_PATTERN = b"abcdefghijklmnopqrstuvwxyz"
CODECS = ("gzip", "snappy", "lz4", "zstd")

# Consumer groups (group_harness.py runs them): several member processes of one client at once.
GROUP_SCENARIOS = (
    "group_split",
    "group_join",
    "group_failover",
    "group_offsets",
    "group_cooperative",
    "group_static",
    "group_kip848",
)
GROUP_PARTITIONS = 4
GROUP_SEEDED_COUNT = 20  # records in the group_offsets topic
# The consume-and-commit runs of group_offsets: (records to consume, where they must start).
GROUP_OFFSET_RUNS = ((10, 0), (5, 10), (5, 15))  # the broker restarts before the last one
# Kafka's smallest allowed session timeout (group.min.session.timeout.ms): a killed member's
# partitions move about this long after its last heartbeat.
GROUP_SESSION_TIMEOUT_MS = 6000
GROUP_HEARTBEAT_INTERVAL_MS = 500

SCENARIOS = (
    "metadata",
    "admin",
    "produce_consume",
    *(f"compression_{codec}" for codec in CODECS),
    "idempotent",
    "large_message",
    "offsets",
    "out_of_range",
    "missing_topic",
    "restart",
    *GROUP_SCENARIOS,
)

DESCRIPTIONS = {
    "metadata": "list brokers and topics (Metadata)",
    "admin": "create, describe, alter configs of and delete a topic",
    "produce_consume": "keyed records with headers: exact round trip, same key same partition",
    **{f"compression_{c}": f"round trip of {c}-compressed batches, stored as {c} v2 batches and read back "
                           "exactly by kafka-python" for c in CODECS},
    "idempotent": "idempotent producer with retries: exact round trip, no duplicates",
    "large_message": f"one record with a {LARGE_VALUE_BYTES}-byte value (1 MiB batch)",
    "offsets": "earliest, latest, by-time offsets and seek",
    "out_of_range": "fetch past the end with reset=none gives OFFSET_OUT_OF_RANGE; reset works",
    "missing_topic": "produce to a missing topic with auto-create off: clean error, no topic",
    "restart": "everything acknowledged before a broker restart is read after it",
    "group_split": f"two members of a group split a {GROUP_PARTITIONS}-partition topic, 2 and 2",
    "group_join": "a third member joins: every member holds a partition, none twice, none left over",
    "group_failover": "a member is killed (SIGKILL): after the session timeout the others hold its partitions",
    "group_offsets": "committed offsets survive a consumer restart and a broker restart",
    "group_cooperative": "cooperative-sticky: a joining member takes one partition; nothing else is revoked",
    "group_static": "a static member (group.instance.id) killed and restarted gets its partitions back, "
                    "no rebalance",
    "group_kip848": "the KIP-848 consumer protocol (group.protocol=consumer): two members split the topic",
}

# Scenarios that run in one driver process per client, one after the other, against the broker
# the client's tests share. ``restart`` needs the harness between its two steps, and the group
# scenarios several driver processes at once.
BATCHED = tuple(s for s in SCENARIOS if s != "restart" and s not in GROUP_SCENARIOS)


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    scenario: str  # the driver's scenario name
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario, "params": self.params}


@dataclass(frozen=True, slots=True)
class TopicSetup:
    """A topic the harness creates (and maybe fills) before the driver runs."""

    name: str
    partitions: int
    seed_base_ms: int | None = None  # write SEEDED_COUNT timestamped records when set


def topic_name(client: str, scenario: str) -> str:
    return f"compat-{client}-{scenario}".replace("_", "-")


def round_trip_messages(*, count: int = 24, repeat: int = 1) -> list[dict[str, Any]]:
    """Keyed messages in two blocks with different headers (kcat sets headers per run, not per
    record, so the headers change only between blocks). Values carry non-ASCII text."""
    messages = []
    for i in range(count):
        if i < count // 2:
            headers = [["origin", "compat"], ["dup", "1"], ["dup", "2"]]
        else:
            headers = [["origin", "compat-b"], ["trace", "x-\u00e9"]]
        value = f"value-{i:03d}-\u00e4\u00f6\u00fc-\u2713" * repeat
        messages.append({"key": f"key-{i % 6}", "value": value, "headers": headers})
    return messages


def step_for(client: str, scenario: str, now_ms: int) -> tuple[list[Step], list[TopicSetup]]:
    """The driver steps of a batched scenario and the topics the harness must prepare."""
    topic = topic_name(client, scenario)
    seed_base_ms = (now_ms // 1000) * 1000 - 3_600_000  # an hour ago: inside any retention
    if scenario == "metadata":
        return [Step(scenario, "metadata", {"topic": topic})], [TopicSetup(topic, 2)]
    if scenario == "admin":
        return [Step(scenario, "admin", {
            "topic": topic, "partitions": 3,
            "configs": {"retention.ms": "86400000", "cleanup.policy": "delete"},
            "alter_configs": {"retention.ms": "172800000"},
        })], []
    if scenario == "produce_consume":
        params = {"topic": topic, "partitions": ROUND_TRIP_PARTITIONS, "messages": round_trip_messages()}
        return [Step(scenario, "produce_consume", params)], [TopicSetup(topic, ROUND_TRIP_PARTITIONS)]
    if scenario.startswith("compression_"):
        codec = scenario.removeprefix("compression_")
        params = {"topic": topic, "partitions": ROUND_TRIP_PARTITIONS, "codec": codec,
                  "messages": round_trip_messages(repeat=20)}
        return [Step(scenario, "produce_consume", params)], [TopicSetup(topic, ROUND_TRIP_PARTITIONS)]
    if scenario == "idempotent":
        params = {"topic": topic, "partitions": ROUND_TRIP_PARTITIONS, "idempotent": True,
                  "messages": round_trip_messages(count=30)}
        return [Step(scenario, "produce_consume", params)], [TopicSetup(topic, ROUND_TRIP_PARTITIONS)]
    if scenario == "large_message":
        params = {"topic": topic, "size": LARGE_VALUE_BYTES, "key": "large"}
        return [Step(scenario, "large_message", params)], [TopicSetup(topic, 1)]
    if scenario == "offsets":
        params = {
            "topic": topic, "seek_offset": SEEK_OFFSET,
            "query_timestamps": offsets_queries(seed_base_ms),
        }
        return [Step(scenario, "offsets", params)], [TopicSetup(topic, 1, seed_base_ms)]
    if scenario == "out_of_range":
        params = {"topic": topic, "bad_offset": OUT_OF_RANGE_OFFSET, "count": SEEDED_COUNT}
        return [Step(scenario, "out_of_range", params)], [TopicSetup(topic, 1, seed_base_ms)]
    if scenario == "missing_topic":
        return [Step(scenario, "missing_topic", {"topic": topic, "timeout_ms": MISSING_TOPIC_TIMEOUT_MS})], []
    raise ValueError(f"{scenario} is not a batched scenario")


def restart_params(client: str) -> tuple[dict[str, Any], TopicSetup]:
    topic = topic_name(client, "restart")
    params = {"topic": topic, "partitions": ROUND_TRIP_PARTITIONS, "messages": round_trip_messages()}
    return params, TopicSetup(topic, ROUND_TRIP_PARTITIONS)


def seeded_records(base_ms: int) -> list[tuple[str, int]]:
    """(value, timestamp) of the records the harness writes into a seeded topic, in order."""
    return [(f"m-{i}", base_ms + i * SEEDED_STEP_MS) for i in range(SEEDED_COUNT)]


def offsets_queries(base_ms: int) -> list[int]:
    return [base_ms - 60_000, base_ms + 2 * SEEDED_STEP_MS, base_ms + 3 * SEEDED_STEP_MS + 500,
            base_ms + SEEDED_COUNT * SEEDED_STEP_MS + 60_000]


def expected_offset_for_time(base_ms: int, ts: int) -> int | None:
    """Kafka's rule: the earliest offset whose timestamp is >= ts; none when all are older."""
    for offset, (_, record_ts) in enumerate(seeded_records(base_ms)):
        if record_ts >= ts:
            return offset
    return None


# --- partitioners -----------------------------------------------------------------------------


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of Kafka's default partitioner (seed 0x9747b28c), as a signed int."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(partitioner: str, key: str, partitions: int) -> int:
    data = key.encode("utf-8")
    if partitioner == "murmur2":  # Java, kafka-python, aiokafka, kafkajs
        return (murmur2(data) & 0x7FFFFFFF) % partitions
    if partitioner == "crc32":  # librdkafka's consistent_random for keyed records
        return zlib.crc32(data) % partitions
    raise ValueError(partitioner)


# --- checks -----------------------------------------------------------------------------------


def _fmt(record: dict[str, Any]) -> str:
    return f"p{record.get('partition')}@{record.get('offset')} key={record.get('key')!r}"


def check_round_trip(params: dict[str, Any], result: dict[str, Any], partitioner: str | None) -> None:
    """Exactly the produced records, once each, in send order per partition, keys stable."""
    messages = params["messages"]
    partitions = params["partitions"]
    consumed = sorted(result["consumed"], key=lambda r: (r["partition"], r["offset"]))
    assert len(consumed) == len(messages), (
        f"consumed {len(consumed)} records, produced {len(messages)}: "
        f"{[_fmt(r) for r in consumed][:40]}")

    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in consumed:
        by_partition[record["partition"]].append(record)
    for partition, records in by_partition.items():
        assert 0 <= partition < partitions, f"record in partition {partition} of a {partitions}-partition topic"
        offsets = [r["offset"] for r in records]
        assert offsets == list(range(len(records))), f"partition {partition} offsets are {offsets}"

    key_partitions: dict[str, set[int]] = defaultdict(set)
    for record in consumed:
        key_partitions[record["key"]].add(record["partition"])
    for key, parts in key_partitions.items():
        assert len(parts) == 1, f"key {key!r} landed in partitions {sorted(parts)}"
        if partitioner is not None:
            want = partition_for(partitioner, key, partitions)
            assert parts == {want}, f"key {key!r} in partition {parts}, {partitioner} says {want}"

    # Each partition must hold, in order, exactly the messages sent to it, in send order.
    positions: list[tuple[int, int]] = []
    next_offset: dict[int, int] = defaultdict(int)
    for message in messages:
        (partition,) = key_partitions.get(message["key"], {-1})
        positions.append((partition, next_offset[partition]))
        next_offset[partition] += 1
    for message, (partition, offset) in zip(messages, positions, strict=True):
        records = by_partition.get(partition, [])
        assert offset < len(records), f"message {message['value']!r} missing from partition {partition}"
        got = records[offset]
        assert (got["key"], got["value"]) == (message["key"], message["value"]), (
            f"at p{partition}@{offset} expected {message['key']!r}={message['value']!r}, "
            f"got {got['key']!r}={got['value']!r}")
        assert got["headers"] == message["headers"], (
            f"at p{partition}@{offset} expected headers {message['headers']}, got {got['headers']}")

    produced = result.get("produced")
    if produced is not None:  # kcat reports no acknowledgements
        acked = [(a["partition"], a["offset"]) for a in produced]
        assert acked == positions, f"acknowledged positions {acked} differ from where records are {positions}"


def check_metadata(params: dict[str, Any], result: dict[str, Any], host: str, port: int) -> None:
    brokers = {(b["host"], b["port"]) for b in result["brokers"]}
    assert (host, port) in brokers, f"broker {host}:{port} not among {sorted(brokers)}"
    topics = result["topics"]
    assert topics.get(params["topic"]) == 2, f"topic {params['topic']} with 2 partitions not in {topics}"


def check_admin(params: dict[str, Any], result: dict[str, Any]) -> None:
    assert result["partitions"] == params["partitions"], f"described {result['partitions']} partitions"
    assert result["configs_after_create"] == params["configs"], (
        f"configs after create {result['configs_after_create']}, asked for {params['configs']}")
    assert result["configs_after_alter"] == params["alter_configs"], (
        f"configs after alter {result['configs_after_alter']}, asked for {params['alter_configs']}")
    assert result["listed_after_delete"] is False, "topic still listed after delete"


def check_large(params: dict[str, Any], result: dict[str, Any]) -> None:
    want_sha = hashlib.sha256((LARGE_PATTERN * (params["size"] // 26 + 1))[:params["size"]]).hexdigest()
    consumed = result["consumed"]
    assert len(consumed) == 1, f"consumed {len(consumed)} records: {consumed}"
    (got,) = consumed
    assert got["size"] == params["size"], f"value of {got['size']} bytes, sent {params['size']}"
    assert got["sha256"] == want_sha, "value bytes differ from those sent"
    assert got["key"] == params["key"]
    produced = result.get("produced")
    if produced is not None:
        assert (produced["partition"], produced["offset"]) == (got["partition"], got["offset"])


def check_offsets(params: dict[str, Any], result: dict[str, Any], base_ms: int) -> None:
    """Every part is judged, and every difference reported together."""
    want: dict[str, Any] = {
        "earliest": 0,
        "latest": SEEDED_COUNT,
        "by_time": {str(ts): expected_offset_for_time(base_ms, ts) for ts in params["query_timestamps"]},
        "seek": {"offset": SEEK_OFFSET, "value": f"m-{SEEK_OFFSET}"},
    }
    if "position_after_seek_to_end" in result:  # not every client can tell
        want["position_after_seek_to_end"] = SEEDED_COUNT
    wrong = [f"{name}: got {result.get(name)}, want {value}"
             for name, value in want.items() if result.get(name) != value]
    assert not wrong, "; ".join(wrong)


def check_out_of_range(result: dict[str, Any]) -> None:
    wrong = []
    if not result["out_of_range_seen"]:
        wrong.append(f"no OFFSET_OUT_OF_RANGE reported (error: {result.get('error')})")
    if result["offsets_after_reset"] != list(range(SEEDED_COUNT)):
        wrong.append(f"after reset read offsets {result['offsets_after_reset']}")
    assert not wrong, "; ".join(wrong)


def classify_error(message: str | None) -> str:
    """unknown_topic, timeout or other, from an error's class name and text (any client)."""
    lowered = (message or "").lower()
    if any(s in lowered for s in ("unknown_topic", "unknowntopic", "unknown topic", "does not host this topic",
                                  "not present in metadata")):
        return "unknown_topic"
    if "timeout" in lowered or "timed out" in lowered:
        return "timeout"
    return "other"


def check_missing_topic(result: dict[str, Any]) -> None:
    assert result["delivered"] is False, "a record was delivered to a topic that does not exist"
    kind = classify_error(result["error"])
    assert kind in ("unknown_topic", "timeout"), f"unexpected error: {result['error']}"
    assert result["elapsed_ms"] <= MISSING_TOPIC_ELAPSED_MS_MAX, f"gave up only after {result['elapsed_ms']} ms"


# --- consumer groups --------------------------------------------------------------------------


def member_params(topic: str, group: str, **extra: Any) -> dict[str, Any]:
    """A ``group_member`` driver's params (drivers/common.py describes them)."""
    params: dict[str, Any] = {
        "topic": topic, "group": group, "session_timeout_ms": GROUP_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": GROUP_HEARTBEAT_INTERVAL_MS, "assignor": None, "instance_id": None,
        "protocol": "classic", "report_records": False, "consume_count": None,
    }
    params.update(extra)
    return params


def split_problem(assignments: Mapping[str, frozenset[int] | None], partitions: int,
                  each: int | None = None) -> str | None:
    """None when the members hold every partition exactly once, each member at least one (or
    exactly ``each``); otherwise what is wrong, for a wait that is still waiting or failed."""
    waiting = sorted(name for name, held in assignments.items() if held is None)
    if waiting:
        return f"no assignment yet for {', '.join(waiting)}"
    holders: dict[int, list[str]] = defaultdict(list)
    for name, held in assignments.items():
        for p in held or ():
            holders[p].append(name)
    problems = []
    twice = {p: names for p, names in holders.items() if len(names) > 1}
    if twice:
        problems.append(f"held twice: {twice}")
    missing = sorted(set(range(partitions)) - set(holders))
    if missing:
        problems.append(f"held by nobody: {missing}")
    stray = sorted(set(holders) - set(range(partitions)))
    if stray:
        problems.append(f"not partitions of the topic: {stray}")
    for name, held in sorted(assignments.items()):
        size = len(held or ())
        if (each is not None and size != each) or size == 0:
            problems.append(f"{name} holds {sorted(held or ())}")
    return "; ".join(problems) or None


def format_assignments(assignments: Mapping[str, frozenset[int] | None]) -> str:
    return ", ".join(f"{name}={'?' if held is None else sorted(held)}" for name, held in sorted(assignments.items()))


def check_cooperative(before: dict[str, frozenset[int]], after: dict[str, frozenset[int]],
                      revoked: dict[str, set[int]], newcomer: str) -> None:
    """When ``newcomer`` joined members that held ``before``: the old members only gave up
    partitions (none moved between them), revoked exactly those, and exactly one moved (4
    partitions over 3 members: 2, 1, 1), to the newcomer. An eager rebalance revokes everything."""
    problems = []
    moved: set[int] = set()
    for name, held in before.items():
        gained = after[name] - held
        if gained:
            problems.append(f"{name} gained {sorted(gained)}")
        moved |= held - after[name]
        if revoked[name] != held - after[name]:
            problems.append(f"{name} revoked {sorted(revoked[name])} going from {sorted(held)} to {sorted(after[name])}")
    if len(moved) != 1:
        problems.append(f"{len(moved)} partitions moved ({sorted(moved)}), sticky needs 1")
    if after[newcomer] != moved:
        problems.append(f"{newcomer} holds {sorted(after[newcomer])}, the moved ones are {sorted(moved)}")
    assert not problems, "; ".join(problems)


def check_consumed_run(records: list[list[int]], count: int, start: int) -> None:
    """A consume-and-commit run of group_offsets read partition 0 from ``start``, ``count`` records."""
    want = [[0, offset] for offset in range(start, start + count)]
    got = [list(r) for r in records]
    assert got == want, (f"consumed {[tuple(r) for r in got]}, expected partition 0 offsets "
                         f"{start}..{start + count - 1}")


# --- stored batches -----------------------------------------------------------------------------

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}  # attributes & 7


@dataclass(frozen=True, slots=True)
class BatchHeader:
    partition: int
    base_offset: int
    magic: int
    codec: int
    records: int
    crc_ok: bool | None  # None when no CRC-32C implementation is at hand


def _crc32c() -> Callable[[bytes], int] | None:
    try:
        from crc32c import crc32c
    except ImportError:  # pragma: no cover - the broker's own dependency
        return None
    return crc32c


def parse_batches(partition: int, data: bytes) -> list[BatchHeader]:
    """The v2 record batch headers in a Fetch response's records (a cut-off last batch dropped)."""
    checksum = _crc32c()
    out = []
    at = 0
    while at + 61 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, at)
        if at + 12 + length > len(data):
            break
        magic = data[at + 16]
        (crc,) = struct.unpack_from(">I", data, at + 17)
        attributes, = struct.unpack_from(">h", data, at + 21)
        (records,) = struct.unpack_from(">i", data, at + 57)
        crc_ok = None if checksum is None else checksum(data[at + 21:at + 12 + length]) == crc
        out.append(BatchHeader(partition, base_offset, magic, attributes & 7, records, crc_ok))
        at += 12 + length
    return out


def check_stored_codec(params: dict[str, Any], batches: list[BatchHeader]) -> None:
    """The broker keeps what the client sent: v2 batches, every one compressed with the scenario's
    codec (the compression.type=producer default), CRCs intact, holding all the records."""
    want = CODEC_IDS[params["codec"]]
    names = {v: k for k, v in CODEC_IDS.items()}
    wrong = [f"p{b.partition}@{b.base_offset}: magic {b.magic}, {names.get(b.codec, b.codec)}, crc_ok={b.crc_ok}"
             for b in batches if b.magic != 2 or b.codec != want or b.crc_ok is False]
    assert not wrong, f"stored batches not {params['codec']} v2 with a good CRC: {wrong}"
    total = sum(b.records for b in batches)
    assert total == len(params["messages"]), f"stored batches hold {total} records, {len(params['messages'])} sent"
