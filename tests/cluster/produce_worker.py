"""An idempotent acks=all producer for the fault tests (confluent-kafka), run as its own process.

    python produce_worker.py BOOTSTRAP TOPIC PARTITIONS NAME

Sends ``NAME:seq`` values (seq 0, 1, 2, ...) to partition ``seq % PARTITIONS`` at a steady rate
until its standard input closes, then flushes. Prints one JSON line per acknowledged record
(``{"p": partition, "o": offset, "v": value, "t": wall time}``) and per failed one
(``{"err": ..., "v": value, "retriable": bool}``); nothing else goes to stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from confluent_kafka import KafkaError, Producer

RATE_PER_S = 400
FLUSH_S = 60


def main() -> None:
    bootstrap, topic, partitions, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
        "message.timeout.ms": 120_000, "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 1000,
    })
    out = sys.stdout
    lock = threading.Lock()

    def report(err: KafkaError | None, msg: object) -> None:
        value = msg.value().decode()  # type: ignore[attr-defined]
        if err is None:
            line = {"p": msg.partition(), "o": msg.offset(), "v": value, "t": time.time()}  # type: ignore[attr-defined]
        else:
            line = {"err": str(err), "v": value, "retriable": err.retriable(), "fatal": err.fatal()}
        with lock:
            out.write(json.dumps(line) + "\n")
            out.flush()

    seq = 0
    start = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * RATE_PER_S)
        while seq < due:
            try:
                producer.produce(topic, value=f"{name}:{seq}".encode(), partition=seq % partitions, on_delivery=report)
            except BufferError:
                break
            seq += 1
        producer.poll(0.01)
    producer.flush(FLUSH_S)


if __name__ == "__main__":
    main()
