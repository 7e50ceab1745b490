"""A frame-capturing TCP proxy between Kafka clients and a broker, and the golden-frame recorder.

``CaptureProxy`` listens on a loopback port, opens one upstream connection per client connection,
passes bytes both ways unchanged, and keeps a copy of every *request* frame the clients send (the
bytes after the int32 size prefix: request header and body, as ``protocol.framing`` hands them
on). Clients connect to the broker's advertised address after bootstrapping, so the broker must
advertise the proxy's port (``advertised.listeners``) for all their traffic to pass through it.

Run as a script, it records golden request frames from every installed client:

    python compat-tests/capture.py [--clients kafka-python,java] [--out DIR]

It starts a broker (``TRAFKA_COMPAT_BROKER``, Trafka by default) behind the proxy, runs each
client's driver through the batched scenarios (not the 1 MiB one), and writes the first request of
each API version a client sent to ``DIR/<client>/<api>_v<version>.bin`` (``api`` is the snake-case
name of ``protocol.messages.ApiKey``). DIR defaults to tests/golden for Trafka and to
compat-tests/captures/<broker> (not committed) for any other broker.

Threads and plain sockets, two threads per proxied connection: this is a test tool, meant for a
handful of connections at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import scenarios  # noqa: E402
from broker_process import HOST, BrokerProcess, broker_kind, free_port  # noqa: E402
from clients import BY_NAME, CLIENTS  # noqa: E402
from harness import BROKER_OVERRIDES, create_topic, seed_topic  # noqa: E402

CHUNK_BYTES = 65536
FRAME_BYTES_MAX = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
GOLDEN_SKIP = ("large_message", "missing_topic")  # a 1 MiB golden helps nobody; the other waits


@dataclass(frozen=True, slots=True)
class Frame:
    label: str | None  # what the proxy was told was running when the frame arrived
    connection: int
    api_key: int
    api_version: int
    correlation_id: int
    data: bytes  # request header and body, without the size prefix


def api_name(api_key: int) -> str:
    try:
        from protocol.messages import ApiKey

        return ApiKey(api_key).name.lower()
    except (ImportError, ValueError):
        return f"api{api_key}"


class CaptureProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; records request frames into ``frames``."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.label: str | None = None
        self.frames: list[Frame] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._connections = 0
        self._listener = socket.create_server((HOST, port))
        self.port = self._listener.getsockname()[1]
        self._closed = False

    def start(self) -> CaptureProxy:
        self._spawn(self._accept_loop)
        return self

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> CaptureProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += 1
                connection = self._connections
                self._sockets += [client, upstream]
            self._spawn(self._pump_requests, client, upstream, connection)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(CHUNK_BYTES):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _pump_requests(self, client: socket.socket, upstream: socket.socket, connection: int) -> None:
        buffer = bytearray()
        try:
            while chunk := client.recv(CHUNK_BYTES):
                # Record the frames a chunk completes before forwarding it: once the broker has
                # the bytes it may answer, and whoever reads the answer may look at the frames.
                buffer += chunk
                while len(buffer) >= 4:
                    (size,) = struct.unpack_from(">i", buffer)
                    if size < 8 or size > FRAME_BYTES_MAX:
                        raise ValueError(f"connection {connection}: frame size {size} makes no sense")
                    if len(buffer) < 4 + size:
                        break
                    data = bytes(buffer[4:4 + size])
                    del buffer[:4 + size]
                    api_key, api_version, correlation_id = struct.unpack_from(">hhi", data)
                    with self._lock:
                        self.frames.append(Frame(self.label, connection, api_key, api_version, correlation_id, data))
                upstream.sendall(chunk)
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError):
                print(exc, file=sys.stderr)
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

    def frames_for(self, label: str) -> list[Frame]:
        with self._lock:
            return [f for f in self.frames if f.label == label]


def write_goldens(frames: list[Frame], out_dir: Path) -> list[Path]:
    """The first frame of each (API, version) into out_dir/<api>_v<version>.bin."""
    written = []
    seen: set[tuple[int, int]] = set()
    out_dir.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        key = (frame.api_key, frame.api_version)
        if key in seen:
            continue
        seen.add(key)
        path = out_dir / f"{api_name(frame.api_key)}_v{frame.api_version}.bin"
        path.write_bytes(frame.data)
        written.append(path)
    return written


def capture_goldens(client_names: list[str], out_root: Path) -> int:
    from harness import Harness

    failures = 0
    with tempfile.TemporaryDirectory(prefix="trafka-capture-") as tmp:
        work = Path(tmp)
        proxy_port = free_port()
        broker = BrokerProcess(log_dir=work / "data", overrides=BROKER_OVERRIDES, advertised_port=proxy_port)
        broker.start()
        try:
            with CaptureProxy(HOST, broker.port, proxy_port) as proxy:
                harness = Harness(work)
                now_ms = int(time.time() * 1000)
                for name in client_names:
                    client = BY_NAME[name]
                    missing = client.missing()
                    if missing is not None:
                        print(f"{name}: skipped: {missing}", file=sys.stderr)
                        failures += 1
                        continue
                    steps = []
                    for scenario in scenarios.BATCHED:
                        if scenario in client.not_applicable or scenario in GOLDEN_SKIP:
                            continue
                        scenario_steps, setups = scenarios.step_for(f"{name}-golden", scenario, now_ms)
                        for setup in setups:
                            create_topic(f"{HOST}:{proxy_port}", setup.name, setup.partitions)
                            if setup.seed_base_ms is not None:
                                seed_topic(f"{HOST}:{proxy_port}", setup.name, setup.seed_base_ms)
                        steps += scenario_steps
                    proxy.label = name
                    # The driver bootstraps through the proxy; the broker advertises the proxy too.
                    run = harness.run_driver(client, steps, timeout_s=240, bootstrap=f"{HOST}:{proxy_port}")
                    proxy.label = None
                    bad = [s for s, line in run.lines.items() if line.get("status") != "ok"]
                    if bad or len(run.lines) != len(steps):
                        print(f"{name}: steps not ok: {bad or 'missing output'}", file=sys.stderr)
                    written = write_goldens(proxy.frames_for(name), out_root / name)
                    print(f"{name}: {len(written)} frames: {' '.join(p.name for p in written)}")
        finally:
            broker.stop()
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default=",".join(c.name for c in CLIENTS),
                        help="comma-separated client names (default: all)")
    parser.add_argument("--out", type=Path, help="where to write <client>/<api>_v<version>.bin")
    args = parser.parse_args()
    kind = broker_kind()
    out = args.out
    if out is None:
        out = HERE.parent / "tests" / "golden" if kind == "trafka" else HERE / "captures" / kind.split(":")[0]
    names = [n.strip() for n in args.clients.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown clients {unknown}; known: {[c.name for c in CLIENTS]}")
    return capture_goldens(names, out)


if __name__ == "__main__":
    sys.exit(main())
