"""Plumbing shared by the Python drivers: the command line, the plan, one JSON line per step.

Every driver of the compatibility matrix (Python, JavaScript, Java, and the kcat wrapper) keeps the
same contract, stated once in compat-tests/README.md:

    DRIVER --bootstrap HOST:PORT --plan PLAN.json
    DRIVER --bootstrap HOST:PORT --scenario NAME [--params JSON]

A plan is a JSON list of steps, ``{"id": ID, "scenario": NAME, "params": {...}}``. The driver runs the steps
in order and prints one JSON object per step on its own line of stdout, as soon as the step ends:

    {"client": ..., "client_version": ..., "step": ID, "scenario": NAME, "status": "ok" | "error" |
     "unsupported", "result": {...}, "error": "...", "elapsed_ms": N}

``status`` says whether the driver could carry the step out; whether the *broker* behaved is for
the harness to judge from ``result``. A scenario that expects the broker to refuse something (an
unknown topic, an offset out of range) reports the refusal in ``result`` with status "ok". The
exit code is 0 when every step's status is "ok" or "unsupported", 1 otherwise, 2 for bad usage.
Diagnostics go to stderr, never to stdout.

Strings in messages are UTF-8 text; a record's key, value and header values are reported the
same way (null for a null key or value).

One scenario runs differently: ``group_member`` (run with ``--scenario``) is one member of a
consumer group, kept alive by the harness, which runs several at once. Before its step line it
prints *event* lines as things happen, ``{"event": NAME, "t_ms": MS_SINCE_START, ...}``:

    started                                  the consumer subscribed
    assigned  partitions, assignment         partitions added; assignment = all it now holds
    revoked   partitions, assignment         partitions taken away (lost ones too)
    records   records: [[partition, offset], ...]   what it consumed (with report_records or
                                             consume_count)
    committed offsets: {partition: offset}   after its commit (with consume_count)
    error     error                          something failed; the member stops
    closed                                   the consumer closed cleanly

``assigned`` and ``revoked`` may carry ``generation`` when the client tells it. The member runs
until its standard input reaches end of file (then it closes the consumer cleanly, which for a
dynamic member sends LeaveGroup) or, with ``consume_count`` N, until it has consumed N records:
it then commits the offset after the last of them, synchronously, and closes. Its params (see
``scenarios.member_params``): ``topic``, ``group``, ``session_timeout_ms``,
``heartbeat_interval_ms``, ``assignor`` (``range``, ``roundrobin``, ``cooperative-sticky`` or null
for the client's default), ``instance_id`` (``group.instance.id``, null for a dynamic member),
``protocol`` (``classic``, or ``consumer`` for KIP-848), ``report_records`` and ``consume_count``.

The cluster matrix (compat-tests/cluster_scenarios.py) adds admin and metadata scenarios, run in
plans like the others:

    cluster_metadata   {topic}  -> {brokers: [{node_id, host, port}], partitions: [{partition, leader,
                       replicas, isr, offline}]}, from the client's Metadata (offline is null when
                       the client does not expose offline replicas)
    cluster_describe   {topic}  -> {cluster_id, controller_id, brokers, partitions: [{partition,
                       leader, replicas, isr}]}, from the admin client's describe cluster and topics
    elect_leaders      {topic, partition, preferred, wait_ms} -> {error, leader_after}: a preferred
                       election; then the leader the client sees, polled until it is ``preferred``
                       or ``wait_ms`` passed
    alter_reassignment {topic, partition, replicas} -> {error}
    list_reassignments {topic, partition} -> {ongoing: [{partition, replicas, adding, removing}]}

and one long-running scenario, ``failover`` (run with ``--scenario``, stopped like a group member
by the end of its standard input). It consumes ``topic``/``partition`` from offset 0 (an assigned
consumer where the client has one) while it produces the values ``f-000000``, ``f-000001``, ... to
it at ``rate_per_s`` with acks=all and idempotence, retrying as long as the client allows. Every
``PROGRESS_INTERVAL_S`` it prints ``{"event": "progress", "sent", "acked", "consumed",
"last_consumed", "wall_ms"}`` (last_consumed: the number in the last value read, -1 before the
first; wall_ms: the wall clock when the counts were taken, which the harness compares with the
time of its faults). When
its standard input ends it stops sending, waits for every send to be acknowledged or to fail,
then for the consumer to read everything acknowledged (at most ``drain_timeout_ms`` in all), and
returns ``{sent, acked: [[number, offset or null]] or null, failed: [[number, error]], consumed:
[[offset, value]], client_errors: [...], fatal: [...]}``. ``client_errors`` are the errors the
client reported and retried past (a broker went away); ``fatal`` the ones it gave up on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

# The bytes of the large message: this alphabet repeated, cut to the requested size. Every
# driver builds the same bytes from the size alone, so the plan need not carry a megabyte.
PATTERN = b"abcdefghijklmnopqrstuvwxyz"

Params = dict[str, Any]
Handler = Callable[[str, Params], dict[str, Any]]


class Unsupported(Exception):
    """The client has no way to do what the step asks (e.g. a codec it was built without)."""


def pattern_bytes(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text(data: bytes | None) -> str | None:
    """A key, value or header value as the harness compares it."""
    if data is None:
        return None
    return data.decode("utf-8", errors="backslashreplace")


def encode(value: str | None) -> bytes | None:
    return None if value is None else value.encode("utf-8")


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def deadline_after(seconds: float) -> float:
    return time.monotonic() + seconds


def expired(deadline: float) -> bool:
    return time.monotonic() >= deadline


def record_dict(*, partition: int, offset: int, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes | None]], timestamp_ms: int | None) -> dict[str, Any]:
    return {
        "partition": partition,
        "offset": offset,
        "key": text(key),
        "value": text(value),
        "headers": [[name, text(val)] for name, val in headers],
        "timestamp": timestamp_ms,
    }


class MemberEvents:
    """A group member's side channel: event lines on stdout and end of stdin as the stop signal."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.assignment: set[int] = set()
        threading.Thread(target=self._watch_stdin, daemon=True).start()

    def _watch_stdin(self) -> None:
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except (OSError, ValueError):
            pass
        self.stop.set()

    def emit(self, event: str, **fields: Any) -> None:
        line = {"event": event, "t_ms": int((time.monotonic() - self.started) * 1000), **fields}
        with self._lock:
            print(json.dumps(line), flush=True)

    def assigned(self, partitions: list[int], generation: int | None = None) -> None:
        """Partitions added (eager clients hand over the whole new set, which is the same)."""
        with self._lock:
            self.assignment |= set(partitions)
        extra = {} if generation is None else {"generation": generation}
        self.emit("assigned", partitions=sorted(partitions), assignment=sorted(self.assignment), **extra)

    def revoked(self, partitions: list[int], generation: int | None = None) -> None:
        if not partitions:
            return  # eager clients "revoke" nothing on their first join
        with self._lock:
            self.assignment -= set(partitions)
        extra = {} if generation is None else {"generation": generation}
        self.emit("revoked", partitions=sorted(partitions), assignment=sorted(self.assignment), **extra)


class Counted:
    """The first ``limit`` records a member consumes (all of them when limit is None)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.records: list[tuple[int, int]] = []

    def take(self, records: list[tuple[int, int]]) -> list[tuple[int, int]]:
        room = len(records) if self.limit is None else max(0, self.limit - len(self.records))
        kept = records[:room]
        self.records += kept
        return kept

    @property
    def done(self) -> bool:
        return self.limit is not None and len(self.records) >= self.limit

    def next_offsets(self) -> dict[int, int]:
        """What to commit: the offset after the last record taken, per partition."""
        out: dict[int, int] = {}
        for partition, offset in self.records:
            out[partition] = max(out.get(partition, 0), offset + 1)
        return out


PROGRESS_INTERVAL_S = 0.2
CLIENT_ERRORS_KEPT = 50


class FailoverRun:
    """The bookkeeping of the ``failover`` scenario, shared by the threads of a driver (the
    producer's callbacks, the consumer loop, the main loop): what was sent, acknowledged, failed
    and consumed, and the progress lines the harness acts on."""

    def __init__(self, params: Params, events: MemberEvents) -> None:
        self.topic: str = params["topic"]
        self.partition: int = params.get("partition", 0)
        self.rate_per_s: float = params.get("rate_per_s", 100)
        self.drain_timeout_s: float = params.get("drain_timeout_ms", 60_000) / 1000
        self.events = events
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_progress = 0.0
        self.sent = 0
        self.acked: dict[int, int | None] = {}
        self.failed: dict[int, str] = {}
        self.consumed: list[tuple[int, str | None]] = []
        self.offsets_read: set[int] = set()  # a group consumer may be handed an offset twice
        self.last_consumed = -1
        self.client_errors: list[str] = []
        self.fatal: list[str] = []

    @staticmethod
    def value(index: int) -> str:
        return f"f-{index:06d}"

    def due(self) -> int:
        """How many records should have been sent by now at the scenario's rate."""
        return int((time.monotonic() - self._started) * self.rate_per_s) + 1

    def next_index(self) -> int:
        with self._lock:
            index = self.sent
            self.sent += 1
            return index

    def on_ack(self, index: int, offset: int | None) -> None:
        with self._lock:
            self.acked[index] = offset

    def on_fail(self, index: int, error: str) -> None:
        with self._lock:
            self.failed[index] = error

    def on_consumed(self, offset: int, value: str | None) -> None:
        with self._lock:
            self.consumed.append((offset, value))
            self.offsets_read.add(offset)
            if value is not None and value.startswith("f-"):
                self.last_consumed = max(self.last_consumed, int(value[2:]))

    def on_client_error(self, error: str) -> None:
        with self._lock:
            if len(self.client_errors) < CLIENT_ERRORS_KEPT:
                self.client_errors.append(error)

    def on_fatal(self, error: str) -> None:
        with self._lock:
            self.fatal.append(error)

    def resolved(self) -> bool:
        with self._lock:
            return len(self.acked) + len(self.failed) >= self.sent

    def drained(self) -> bool:
        """Everything acknowledged was read (or something went wrong for good)."""
        with self._lock:
            return bool(self.fatal) or (len(self.acked) + len(self.failed) >= self.sent
                                        and len(self.offsets_read) >= len(self.acked))

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        with self._lock:
            fields = {"sent": self.sent, "acked": len(self.acked), "failed": len(self.failed),
                      "consumed": len(self.consumed), "last_consumed": self.last_consumed,
                      "wall_ms": int(time.time() * 1000)}
        self.events.emit("progress", **fields)

    def result(self, acks_known: bool = True) -> dict[str, Any]:
        with self._lock:
            return {
                "sent": self.sent,
                "acked": sorted([i, o] for i, o in self.acked.items()) if acks_known else None,
                "failed": sorted([i, e] for i, e in self.failed.items()),
                "consumed": [[o, v] for o, v in self.consumed],
                "client_errors": list(self.client_errors),
                "fatal": list(self.fatal),
            }


def _parse_args(argv: list[str] | None) -> tuple[str, list[dict[str, Any]]]:
    parser = argparse.ArgumentParser(description="Run compatibility scenarios with one client.")
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--plan", help="JSON file: a list of {scenario, params} steps")
    group.add_argument("--scenario", help="run this one scenario")
    parser.add_argument("--params", default="{}", help="JSON object of the scenario's params")
    args = parser.parse_args(argv)
    if args.plan:
        with open(args.plan, encoding="utf-8") as fh:
            steps = json.load(fh)
    else:
        steps = [{"scenario": args.scenario, "params": json.loads(args.params)}]
    return args.bootstrap, steps


def main(client: str, client_version: str, handlers: Mapping[str, Handler],
         argv: list[str] | None = None) -> int:
    bootstrap, steps = _parse_args(argv)
    all_ok = True
    for step in steps:
        name = step["scenario"]
        line: dict[str, Any] = {"client": client, "client_version": client_version,
                                "step": step.get("id", name), "scenario": name}
        started = time.monotonic()
        handler = handlers.get(name)
        try:
            if handler is None:
                raise Unsupported(f"{client} has no scenario {name!r}")
            line["result"] = handler(bootstrap, step.get("params", {}))
            line["status"] = "ok"
        except Unsupported as exc:
            line["status"] = "unsupported"
            line["error"] = str(exc)
        except Exception as exc:  # report and go on with the next step
            traceback.print_exc(file=sys.stderr)
            line["status"] = "error"
            line["error"] = describe_error(exc)
            all_ok = False
        line["elapsed_ms"] = int((time.monotonic() - started) * 1000)
        print(json.dumps(line), flush=True)
    return 0 if all_ok else 1
