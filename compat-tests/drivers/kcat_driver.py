"""kcat driver of the compatibility matrix: runs the kcat CLI; see common.py for the contract.

kcat has no admin commands (the admin scenario is N/A) and reports no per-record acknowledgement
when producing, so ``produced`` is absent from its results. kcat sets headers per run, not per
record: messages are produced in runs of equal headers, in order.

``group_member`` runs kcat's balanced consumer, ``kcat -G GROUP TOPIC``, and reads its assignments
from the rebalance lines kcat writes on stderr. kcat cannot commit a chosen offset; with
``consume_count`` N it runs ``-c N`` with auto-commit on, so closing commits the offset after
the last record it handed out, which is the same thing.

Debian's kcat links the system librdkafka (2.0.2 on bookworm). With
``TRAFKA_COMPAT_KCAT_LIBRDKAFKA=bundled`` it runs against the newer librdkafka inside the
confluent-kafka wheel instead (useful only against a broker that librdkafka 2.0.2 cannot parse).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from itertools import groupby
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Counted,
    FailoverRun,
    MemberEvents,
    Params,
    Unsupported,
    deadline_after,
    expired,
    main,
    pattern_bytes,
    sha256_hex,
)

KCAT = os.environ.get("KCAT", "kcat")
TIMEOUT_S = 20.0
KEY_DELIMITER = "\t"
LARGE_LIMIT_BYTES = 4 * 1024 * 1024


def _env() -> dict[str, str]:
    env = os.environ.copy()
    if env.get("TRAFKA_COMPAT_KCAT_LIBRDKAFKA") == "bundled":
        spec = importlib.util.find_spec("confluent_kafka")
        assert spec is not None and spec.origin is not None, "bundled librdkafka needs confluent-kafka"
        libs = Path(spec.origin).parent.parent / "confluent_kafka.libs"
        (lib,) = libs.glob("librdkafka-*.so.1")
        link_dir = Path(tempfile.gettempdir()) / f"trafka-compat-rdkafka-{os.getuid()}"
        link_dir.mkdir(exist_ok=True)
        link = link_dir / "librdkafka.so.1"
        if not link.exists():
            link.symlink_to(lib)
        env["LD_LIBRARY_PATH"] = f"{link_dir}:{env.get('LD_LIBRARY_PATH', '')}"
    return env


ENV = _env()


def _kcat(bootstrap: str, *args: str, stdin: bytes | None = None, timeout_s: float = TIMEOUT_S,
          check: bool = True) -> subprocess.CompletedProcess[bytes]:
    argv = [KCAT, "-b", bootstrap, *args]
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout_s, env=ENV)
    sys.stderr.write(done.stderr.decode("utf-8", errors="replace"))
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-500:]}")
    return done


def _version() -> str:
    out = subprocess.run([KCAT, "-V"], capture_output=True, env=ENV).stdout.decode()
    match = re.search(r"Version (\S+) .*?librdkafka (\S+)", out)
    return f"{match.group(1)} (librdkafka {match.group(2)})" if match else "unknown"


def _records(stdout: bytes) -> list[dict[str, Any]]:
    records = []
    for line in stdout.decode("utf-8").splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        flat = r.get("headers") or []
        records.append({
            "partition": r["partition"], "offset": r["offset"], "key": r.get("key"),
            "value": r.get("payload"), "headers": [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)],
            "timestamp": r.get("ts"),
        })
    return records


def metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    listing = json.loads(_kcat(bootstrap, "-L", "-J").stdout)
    brokers = []
    for b in listing["brokers"]:
        host, _, port = b["name"].rpartition(":")
        brokers.append({"node_id": b["id"], "host": host, "port": int(port)})
    return {"brokers": brokers, "topics": {t["topic"]: len(t["partitions"]) for t in listing["topics"]}}


def _consume(bootstrap: str, topic: str, *extra: str) -> list[dict[str, Any]]:
    """Everything from the beginning of every partition; kcat -e stops at the end of each."""
    done = _kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q",
                 "-X", "fetch.wait.max.ms=100", *extra)
    return _records(done.stdout)


def produce(bootstrap: str, params: Params) -> dict[str, Any]:
    config = ["-X", "acks=all"]
    if params.get("codec"):
        config += ["-X", f"compression.codec={params['codec']}"]
    if params.get("idempotent"):
        config += ["-X", "enable.idempotence=true", "-X", "retries=5"]
    for headers, run in groupby(params["messages"], key=lambda m: m.get("headers", [])):
        lines = "".join(f"{m['key']}{KEY_DELIMITER}{m['value']}\n" for m in run)
        header_args = [arg for name, value in headers for arg in ("-H", f"{name}={value}")]
        _kcat(bootstrap, "-P", "-t", params["topic"], "-K", KEY_DELIMITER, *header_args, *config,
              stdin=lines.encode("utf-8"))
    return {}


def consume(bootstrap: str, params: Params) -> dict[str, Any]:
    return {"consumed": _consume(bootstrap, params["topic"])}


def produce_consume(bootstrap: str, params: Params) -> dict[str, Any]:
    return produce(bootstrap, params) | consume(bootstrap, params)


def large_message(bootstrap: str, params: Params) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".bin") as fh:
        fh.write(pattern_bytes(params["size"]))
        fh.flush()
        # A file named on the command line is sent whole, as one message.
        _kcat(bootstrap, "-P", "-t", params["topic"], "-k", params["key"], "-X", "acks=all",
              "-X", f"message.max.bytes={LARGE_LIMIT_BYTES}", fh.name)
    done = _kcat(bootstrap, "-C", "-t", params["topic"], "-o", "beginning", "-e", "-q",
                 "-X", f"fetch.max.bytes={LARGE_LIMIT_BYTES}",
                 "-X", f"receive.message.max.bytes={LARGE_LIMIT_BYTES + 1024 * 1024}",
                 "-f", "%p %o %k %S\n%s\n")
    consumed = []
    lines = done.stdout.split(b"\n")
    for head, value in zip(lines[0::2], lines[1::2], strict=False):
        if not head:
            continue
        partition, offset, key, size = head.decode().split(" ")
        consumed.append({"partition": int(partition), "offset": int(offset), "key": key,
                         "size": len(value), "sha256": sha256_hex(value), "reported_size": int(size)})
    return {"consumed": consumed}


def _query(bootstrap: str, topic: str, ts: int) -> int:
    done = _kcat(bootstrap, "-Q", "-t", f"{topic}:0:{ts}")
    match = re.search(r"\[0\]\s+offset\s+(-?\d+)", done.stdout.decode())
    if match is None:
        raise RuntimeError(f"cannot read kcat -Q output: {done.stdout!r}")
    return int(match.group(1))


def offsets(bootstrap: str, params: Params) -> dict[str, Any]:
    topic = params["topic"]
    by_time: dict[str, int | None] = {}
    for ts in params["query_timestamps"]:
        offset = _query(bootstrap, topic, ts)
        by_time[str(ts)] = None if offset < 0 else offset
    seek = _records(_kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", str(params["seek_offset"]),
                          "-c", "1", "-e", "-J", "-q").stdout)
    return {
        # kcat -Q passes -2 and -1 through as Kafka's EARLIEST and LATEST timestamps.
        "earliest": _query(bootstrap, topic, -2),
        "latest": _query(bootstrap, topic, -1),
        "by_time": by_time,
        "seek": {"offset": seek[0]["offset"], "value": seek[0]["value"]} if seek else None,
    }


def out_of_range(bootstrap: str, params: Params) -> dict[str, Any]:
    topic = params["topic"]
    argv = [KCAT, "-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", str(params["bad_offset"]), "-e", "-J",
            "-X", "auto.offset.reset=error", "-X", "fetch.wait.max.ms=100"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    error = None
    deadline = time.monotonic() + 10
    assert proc.stderr is not None
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        buffered = b""
        while error is None and time.monotonic() < deadline and proc.poll() is None:
            buffered += proc.stderr.read() or b""
            for line in buffered.decode(errors="replace").splitlines():
                if "out of range" in line.lower():
                    error = line.strip()
            time.sleep(0.05)
        buffered += proc.stderr.read() or b""
        for line in buffered.decode(errors="replace").splitlines():
            if error is None and "out of range" in line.lower():
                error = line.strip()
        sys.stderr.write(buffered.decode(errors="replace"))
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    after = _records(_kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J", "-q").stdout)
    return {"out_of_range_seen": error is not None, "error": error,
            "offsets_after_reset": [r["offset"] for r in after]}


def missing_topic(bootstrap: str, params: Params) -> dict[str, Any]:
    started = time.monotonic()
    done = _kcat(bootstrap, "-P", "-t", params["topic"], "-X", f"message.timeout.ms={params['timeout_ms']}",
                 stdin=b"nobody home\n", timeout_s=params["timeout_ms"] / 1000 + 20, check=False)
    # kcat says "% ERROR: ..." for most failures and "% Delivery failed for message: ..." for these.
    errors = [line for line in done.stderr.decode(errors="replace").splitlines()
              if "ERROR" in line or "failed" in line.lower()]
    delivered = done.returncode == 0 and not errors
    return {"delivered": delivered,
            "error": None if delivered else (errors[-1] if errors else f"exit code {done.returncode}"),
            "exit_code": done.returncode, "elapsed_ms": int((time.monotonic() - started) * 1000)}


# Eager:       "% Group G rebalanced (memberid M): assigned: t [0], t [1]" (or "revoked: ...")
# Cooperative: "% Group G rebalanced: incremental assignment of 2 partition(s) (memberid M,
#               COOPERATIVE rebalance protocol): t [0], t [1]" (or "incremental revoke of ...")
REBALANCE_LINE = re.compile(r"^% Group \S+ rebalanced(?: \(memberid [^)]*\))?: (assigned|revoked|lost|"
                            r"incremental assignment|incremental revoke)?(.*)$")
PARTITION = re.compile(r"(\S+) \[(\d+)\]")


def group_member(bootstrap: str, params: Params) -> dict[str, Any]:
    if params.get("protocol", "classic") != "classic":
        raise Unsupported("kcat's librdkafka has no group.protocol=consumer (KIP-848)")
    topic = params["topic"]
    count = params.get("consume_count")
    events = MemberEvents()
    argv = [KCAT, "-b", bootstrap, "-G", params["group"], "-J", "-u",
            "-X", f"session.timeout.ms={params['session_timeout_ms']}",
            "-X", f"heartbeat.interval.ms={params['heartbeat_interval_ms']}",
            "-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=100",
            "-X", f"enable.auto.commit={'true' if count else 'false'}"]
    if params.get("assignor"):
        argv += ["-X", f"partition.assignment.strategy={params['assignor']}"]
    if params.get("instance_id"):
        argv += ["-X", f"group.instance.id={params['instance_id']}"]
    if count:
        argv += ["-c", str(count)]
    proc = subprocess.Popen([*argv, topic], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    counted = Counted(count)
    report = params.get("report_records") or count is not None

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            sys.stderr.write(line + "\n")
            match = REBALANCE_LINE.match(line)
            if match is None:
                continue
            what, listed = match.groups()
            partitions = [int(p) for t, p in PARTITION.findall(listed) if t == topic]
            if what in ("assigned", "incremental assignment"):
                events.assigned(partitions)
            elif what in ("revoked", "lost", "incremental revoke"):
                events.revoked(partitions)
            else:
                events.emit("error", error=line)

    def stop_on_eof() -> None:
        events.stop.wait()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # kcat closes its consumer (LeaveGroup) and exits

    stderr_reader = threading.Thread(target=read_stderr, daemon=True)
    stderr_reader.start()
    threading.Thread(target=stop_on_eof, daemon=True).start()
    events.emit("started")
    assert proc.stdout is not None
    for raw in proc.stdout:
        if not raw.startswith(b"{"):
            continue
        record = json.loads(raw)
        taken = counted.take([(record["partition"], record["offset"])])
        if taken and report:
            events.emit("records", records=taken)
    code = proc.wait()
    stderr_reader.join(timeout=5)
    if code != 0 and not events.stop.is_set():
        events.emit("error", error=f"kcat exited with {code}")
        raise RuntimeError(f"kcat exited with {code}")
    if counted.done:
        events.emit("committed", offsets=counted.next_offsets())  # by auto-commit when kcat closed
    events.emit("closed")
    return {"consumed": len(counted.records)}


# --- the cluster matrix ------------------------------------------------------------------------------


def cluster_metadata(bootstrap: str, params: Params) -> dict[str, Any]:
    """``kcat -L``: librdkafka's Metadata view, which has no offline replicas."""
    listing = json.loads(_kcat(bootstrap, "-L", "-J", "-t", params["topic"]).stdout)
    brokers = []
    for b in listing["brokers"]:
        host, _, port = b["name"].rpartition(":")
        brokers.append({"node_id": b["id"], "host": host, "port": int(port)})
    (topic,) = [t for t in listing["topics"] if t["topic"] == params["topic"]]
    if topic.get("error"):
        raise RuntimeError(f"kcat -L: {topic['error']}")
    return {"brokers": brokers,
            "partitions": [{"partition": p["partition"], "leader": p["leader"],
                            "replicas": [r["id"] for r in p["replicas"]], "isr": [r["id"] for r in p["isrs"]],
                            "offline": None} for p in sorted(topic["partitions"], key=lambda p: p["partition"])]}


def failover(bootstrap: str, params: Params) -> dict[str, Any]:
    """Two kcat processes: ``-P`` fed lines at the scenario's rate (kcat reports no per-record
    acknowledgement: a record counts as acknowledged when kcat exits cleanly without reporting
    its delivery failed) and ``-C`` reading the partition from the beginning."""
    run = FailoverRun(params, MemberEvents())
    partition = str(run.partition)
    consumer = subprocess.Popen(
        [KCAT, "-b", bootstrap, "-C", "-t", run.topic, "-p", partition, "-o", "beginning", "-J", "-u",
         "-X", "fetch.wait.max.ms=100"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=ENV)
    producer = subprocess.Popen(
        [KCAT, "-b", bootstrap, "-P", "-t", run.topic, "-p", partition, "-X", "acks=all",
         "-X", "enable.idempotence=true", "-X", "linger.ms=5",
         "-X", f"message.timeout.ms={int(run.drain_timeout_s * 1000)}"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    delivery_failures: list[str] = []

    def read_records() -> None:
        assert consumer.stdout is not None
        for raw in consumer.stdout:
            if raw.startswith(b"{"):
                record = json.loads(raw)
                run.on_consumed(record["offset"], record.get("payload"))

    def read_errors(proc: subprocess.Popen[bytes], name: str) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            sys.stderr.write(f"[{name}] {line}\n")
            if "Delivery failed" in line:
                delivery_failures.append(line)
            elif "FATAL" in line:
                run.on_fatal(f"kcat {name}: {line}")
            elif "ERROR" in line:
                run.on_client_error(f"kcat {name}: {line}")

    threads = [threading.Thread(target=read_records, daemon=True),
               threading.Thread(target=read_errors, args=(consumer, "-C"), daemon=True),
               threading.Thread(target=read_errors, args=(producer, "-P"), daemon=True)]
    for thread in threads:
        thread.start()
    assert producer.stdin is not None
    try:
        while not run.events.stop.is_set() and not run.fatal:
            lines = []
            while run.sent < run.due():
                lines.append(run.value(run.next_index()) + "\n")
            if lines:
                producer.stdin.write("".join(lines).encode())
                producer.stdin.flush()
            run.progress()
            time.sleep(0.01)
        producer.stdin.close()
        deadline = deadline_after(run.drain_timeout_s)
        try:
            code = producer.wait(timeout=run.drain_timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        threads[2].join(timeout=5)
        if code != 0 or delivery_failures:
            why = delivery_failures[0] if delivery_failures else f"kcat -P exited with {code}"
            for index in range(run.sent):
                run.on_fail(index, why)
        else:
            for index in range(run.sent):
                run.on_ack(index, None)
        while not run.drained() and not expired(deadline) and consumer.poll() is None:
            run.progress()
            time.sleep(0.05)
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    run.progress(force=True)
    run.events.emit("closed")
    return run.result(acks_known=False)


HANDLERS = {
    "cluster_metadata": cluster_metadata,
    "failover": failover,
    "metadata": metadata,
    "produce_consume": produce_consume,
    "produce": produce,
    "consume": consume,
    "large_message": large_message,
    "offsets": offsets,
    "out_of_range": out_of_range,
    "missing_topic": missing_topic,
    "group_member": group_member,
}

if __name__ == "__main__":
    sys.exit(main("kcat", _version(), HANDLERS))
