"""Goal: ``trafka groups`` shows and changes consumer groups exactly as Kafka's
``kafka-consumer-groups`` would, against a real broker and a real group consumer.

One broker process (``group.initial.rebalance.delay.ms=0``, so a group forms at once) serves the
module. A kafka-python consumer in a real group consumes a topic whose partition 0 starts at
offset 2 (records deleted), commits part of it and leaves. Then, in order:

* ``list`` (with and without ``--state``/``--type``) and ``describe`` while the member is there:
  state, assignor, the member's client id, host and decoded assignment, and per partition the
  committed offset, log end offset and lag, to the digit;
* ``delete`` and ``reset-offsets`` of the active group are refused, with a clear message;
* after the consumer leaves: ``describe`` of the Empty group; ``reset-offsets --to-earliest`` as a
  dry run changes nothing, and with ``--execute`` sets the log start, which both ``describe`` and
  a kafka-python consumer resuming in the group see;
* ``--to-offset`` clamped into [log start, log end], ``--shift-by -2``, ``--to-datetime`` against
  record timestamps the test chose (and the fall-back to the log end past the last record);
* ``delete`` of the now empty group succeeds, and the group is gone.

Also, without a broker: decoding consumer-protocol assignments, including versions newer than
ours.
"""

from __future__ import annotations

import datetime
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata as KafkaOffset

from broker.cli import main as cli_main
from broker.client import ClientConfig, NewTopic, decode_consumer_assignment, open_client
from protocol.errors import ProtocolError
from protocol.messages.consumer_protocol_assignment import ConsumerProtocolAssignment
from protocol.records import NewRecord
from tests.broker_process import BrokerProcess, running_broker

ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 30.0
CONSUMER_WAIT_S = 15.0

TOPIC = "groups-t"
GROUP = "groups-g"
CLIENT_ID = "groups-consumer"
BASE_MS = 1_700_000_000_000  # record i of a partition has timestamp BASE_MS + i * STEP_MS
STEP_MS = 1_000
RECORDS = {0: 10, 1: 4}
LOG_START_0 = 2  # partition 0's first records are deleted


# --- assignments, no broker ----------------------------------------------------------------------


def assignment_bytes(version: int, topics: list[tuple[str, list[int]]], trailer: bytes = b"") -> bytes:
    body = ConsumerProtocolAssignment(
        assigned_partitions=[ConsumerProtocolAssignment.TopicPartition(t, ps) for t, ps in topics], user_data=b"u")
    return version.to_bytes(2, "big", signed=True) + body.encode(min(version, 3)) + trailer


def test_consumer_assignments_decode_and_newer_versions_read_as_ours() -> None:
    assert decode_consumer_assignment(b"") == ()
    assert decode_consumer_assignment(assignment_bytes(0, [("a", [0, 2]), ("b", [1])])) == (("a", (0, 2)), ("b", (1,)))
    # A later version only adds fields at the end: read as our newest, the rest ignored (Kafka's rule).
    assert decode_consumer_assignment(assignment_bytes(9, [("a", [3])], trailer=b"\x00\x07more")) == (("a", (3,)),)
    for bad in (b"\x00", b"\xff\xff", assignment_bytes(1, [("a", [1])])[:-6]):
        with pytest.raises(ProtocolError):
            decode_consumer_assignment(bad)


# --- a real broker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path_factory.mktemp("groups-broker"), ('group.initial.rebalance.delay.ms=0', 'offsets.topic.num.partitions=3'), check_log=False) as b:
        yield b


def cli(*args: str) -> tuple[int, str, str]:
    """``trafka ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli_main(list(args))
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def ok(*args: str) -> str:
    code, out, err = cli(*args)
    assert code == 0, err
    return out


def fails(*args: str) -> str:
    code, out, err = cli(*args)
    assert code == 1, (out, err)
    assert err.startswith("trafka: error: ") and "Traceback" not in err
    return err


def rows(out: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose header line starts with ``first_header`` (then ``GROUP``)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["GROUP", first_header])
    table = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        table.append(line.split())
    return table


def offsets(out: str) -> dict[int, tuple[str, str, str, str]]:
    """describe's offsets table: partition -> (current offset, log end offset, lag, consumer id)."""
    return {int(r[2]): (r[3], r[4], r[5], r[6]) for r in rows(out, "TOPIC") if r[1] == TOPIC}


def plan(out: str) -> dict[int, tuple[str, str]]:
    """reset-offsets' table: partition -> (current offset, new offset)."""
    return {int(r[2]): (r[3], r[4]) for r in rows(out, "TOPIC")}


async def prepare(bootstrap: str) -> None:
    async with open_client(bootstrap, config=ClientConfig(retries_max=2, retry_backoff_ms=20)) as client:
        [created] = await client.create_topics([NewTopic(TOPIC, len(RECORDS))])
        created.raise_for_error()
        for partition, count in RECORDS.items():
            await client.produce(TOPIC, partition, [
                NewRecord(value=f"{partition}-{i}".encode(), timestamp=BASE_MS + i * STEP_MS) for i in range(count)])
        assert await client.delete_records(TOPIC, 0, LOG_START_0) == LOG_START_0


def consumer(bootstrap: str, *, reset: str) -> KafkaConsumer:
    return KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=GROUP, client_id=CLIENT_ID,
                         enable_auto_commit=False, auto_offset_reset=reset, session_timeout_ms=10_000,
                         heartbeat_interval_ms=1_000)


def first_offsets(c: KafkaConsumer, wanted: int) -> dict[int, list[int]]:
    """Poll until ``wanted`` records came; the offsets read, by partition."""
    seen: dict[int, list[int]] = {}
    deadline = time.monotonic() + CONSUMER_WAIT_S
    while sum(len(v) for v in seen.values()) < wanted:
        assert time.monotonic() < deadline, f"consumed only {seen}"
        for tp, records in c.poll(timeout_ms=200).items():
            seen.setdefault(tp.partition, []).extend(r.offset for r in records)
    return seen


def iso(ms: int, zone_hours: int) -> str:
    zone = datetime.timezone(datetime.timedelta(hours=zone_hours))
    return datetime.datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="milliseconds")


def test_groups_cli_against_a_real_group(broker: BrokerProcess) -> None:
    b = ("--bootstrap-server", broker.bootstrap)
    trio.run(prepare, broker.bootstrap)
    end = {0: RECORDS[0], 1: RECORDS[1]}

    # A real group member consumes everything and commits part of it.
    c = consumer(broker.bootstrap, reset="earliest")
    try:
        assert first_offsets(c, end[0] - LOG_START_0 + end[1]) == {0: list(range(LOG_START_0, end[0])),
                                                                    1: list(range(end[1]))}
        c.commit({TopicPartition(TOPIC, 0): KafkaOffset(6, "", -1), TopicPartition(TOPIC, 1): KafkaOffset(1, "", -1)})

        assert GROUP in ok("groups", "list", *b).splitlines()
        assert [GROUP, "classic", "Stable"] in rows(ok("groups", "list", "--type", "--state", *b), "TYPE")
        assert GROUP not in ok("groups", "list", "--state", "empty", *b)
        assert GROUP in ok("groups", "list", "--state", "Empty,STABLE", "--type", "classic", *b)
        assert GROUP not in ok("groups", "list", "--type", "consumer", *b)

        out = ok("groups", "describe", "--group", GROUP, *b)
        [group_row] = rows(out, "COORDINATOR")
        assert group_row == [GROUP, broker.bootstrap, "(1)", "consumer", "range", "Stable", "1"]
        [member] = rows(out, "CONSUMER-ID")
        member_id = member[1]
        assert member_id.startswith(f"{CLIENT_ID}-")
        assert member == [GROUP, member_id, "-", "/127.0.0.1", CLIENT_ID, "2", f"{TOPIC}(0,1)"]
        assert offsets(out) == {0: ("6", "10", "4", member_id), 1: ("1", "4", "3", member_id)}
        assert [r[7:] for r in rows(out, "TOPIC")] == [["/127.0.0.1", CLIENT_ID]] * 2

        err = fails("groups", "delete", "--group", GROUP, *b)
        assert f"group '{GROUP}' has active members" in err and "NON_EMPTY_GROUP" in err
        err = fails("groups", "reset-offsets", "--group", GROUP, "--topic", TOPIC, "--to-earliest", *b)
        assert "can only be reset while it has no members, but it is Stable with 1 member" in err
    finally:
        c.close()

    # Empty now: the offsets stay, owned by no one.
    out = ok("groups", "describe", "--group", GROUP, *b)
    assert rows(out, "COORDINATOR")[0][-2:] == ["Empty", "0"]
    assert f"Consumer group '{GROUP}' has no active members." in out
    assert offsets(out) == {0: ("6", "10", "4", "-"), 1: ("1", "4", "3", "-")}

    # To the earliest offsets: first a dry run, which commits nothing.
    code, out, err = cli("groups", "reset-offsets", "--group", GROUP, "--topic", TOPIC, "--to-earliest", *b)
    assert code == 0 and "Dry run" in err
    assert out.splitlines()[0].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]
    assert plan(out) == {0: ("6", str(LOG_START_0)), 1: ("1", "0")}
    assert offsets(ok("groups", "describe", "--group", GROUP, *b)) == {0: ("6", "10", "4", "-"),
                                                                      1: ("1", "4", "3", "-")}
    code, out, err = cli("groups", "reset-offsets", "--group", GROUP, "--topic", TOPIC, "--to-earliest",
                         "--execute", *b)
    assert code == 0 and "Dry run" not in err and plan(out) == {0: ("6", str(LOG_START_0)), 1: ("1", "0")}
    assert offsets(ok("groups", "describe", "--group", GROUP, *b)) == {0: ("2", "10", "8", "-"),
                                                                      1: ("0", "4", "4", "-")}
    # A consumer in the group resumes there (with "latest" as its reset policy, so only the
    # committed offsets can explain starting at the log start), and commits nothing.
    c = consumer(broker.bootstrap, reset="latest")
    try:
        seen = first_offsets(c, end[0] - LOG_START_0 + end[1])
        assert (seen[0][0], seen[1][0]) == (LOG_START_0, 0)
        assert c.committed(TopicPartition(TOPIC, 0)) == LOG_START_0
    finally:
        c.close()

    def reset(*args: str) -> dict[int, tuple[str, str]]:
        code, out, err = cli("groups", "reset-offsets", "--group", GROUP, *args, "--execute", *b)
        assert code == 0, err
        return plan(out)

    # --to-offset is clamped into [log start, log end], with a note; one partition can be named.
    code, out, err = cli("groups", "reset-offsets", "--group", GROUP, "--topic", TOPIC, "--to-offset", "100",
                         "--execute", *b)
    assert code == 0 and plan(out) == {0: ("2", "10"), 1: ("0", "4")}
    assert f"new offset 100 of {TOPIC}-0 is past its log end; using 10" in err
    assert reset("--topic", f"{TOPIC}:0", "--to-offset", "0") == {0: ("10", str(LOG_START_0))}
    assert reset("--topic", f"{TOPIC}:0", "--to-offset", "7") == {0: ("2", "7")}
    # --shift-by moves from the committed offset, and is clamped too.
    assert reset("--topic", TOPIC, "--shift-by", "-2") == {0: ("7", "5"), 1: ("4", "2")}
    assert reset("--all-topics", "--shift-by", "-4") == {0: ("5", "2"), 1: ("2", "0")}
    # --to-datetime: the first record at or after the time, in any zone; none after it: log end.
    assert reset("--topic", TOPIC, "--to-datetime", iso(BASE_MS + 4_500, 2)) == {0: ("2", "5"), 1: ("0", "4")}
    assert reset("--topic", TOPIC, "--to-datetime", iso(BASE_MS + 1_000, -5)) == {0: ("5", "2"), 1: ("4", "1")}
    assert reset("--topic", f"{TOPIC}:1", "--to-latest") == {1: ("1", "4")}
    out = ok("groups", "describe", "--group", GROUP, *b)
    assert offsets(out) == {0: ("2", "10", "8", "-"), 1: ("4", "4", "0", "-")}

    assert "no partition 5" in fails("groups", "reset-offsets", "--group", GROUP, "--topic", f"{TOPIC}:5",
                                     "--to-latest", *b)
    assert "has no committed offset" in fails("groups", "reset-offsets", "--group", "other", "--topic", TOPIC,
                                              "--shift-by", "1", *b)

    # Deleting the empty group takes its offsets with it.
    assert ok("groups", "delete", "--group", GROUP, *b) == f"Deleted group {GROUP}.\n"
    assert GROUP not in ok("groups", "list", *b).splitlines()
    assert "does not exist" in fails("groups", "describe", "--group", GROUP, *b)
    assert "GROUP_ID_NOT_FOUND" in fails("groups", "delete", "--group", GROUP, *b)


def test_groups_cli_as_a_process(broker: BrokerProcess) -> None:
    """The same code through ``python -m broker``: an unknown group, and a bad option value."""
    r = subprocess.run([sys.executable, "-m", "broker", "groups", "describe", "--group", "nobody",
                        "--bootstrap-server", broker.bootstrap], cwd=ROOT, capture_output=True, timeout=CLI_TIMEOUT_S)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"trafka: error: consumer group 'nobody' does not exist\n")
    err = fails("groups", "list", "--state", "Sleeping", "--bootstrap-server", broker.bootstrap)
    assert "--state 'Sleeping' is not one of" in err
