"""The trio server: listeners, connections, framing, dispatch, ordered responses, shutdown.

Theory of operation: each listener accepts connections into a nursery of its own. A connection
runs two tasks: the *reader* reassembles frames (``protocol.framing.FrameDecoder``, the size
checked against ``socket.request.max.bytes`` before the body is read), decodes each request and
runs its handler to completion before it reads the next one, as Kafka does (a connection's
requests are handled in order and its responses leave in order); the *writer* takes finished
responses from a bounded channel and writes every response that is ready in one send. A request
with acks=0 gets no response. A frame that cannot be parsed closes that connection only; a handler
that fails answers with UNKNOWN_SERVER_ERROR and the connection lives on.

Shutdown (SIGTERM/SIGINT, or ``Server.shutdown``): stop accepting, let in-flight requests finish
within ``shutdown_grace_ms``, cancel the rest, then the broker flushes its logs, writes its
checkpoints and the clean-shutdown marker.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from broker.core import Broker
from broker.dispatch import CloseConnection, RequestContext, dispatch
from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder
from protocol.message import RecordsSource

log = logging.getLogger("trafka.server")

RECEIVE_BYTES_MAX = 65536
RESPONSES_QUEUED_MAX = 16
SHUTDOWN_GRACE_MS_DEFAULT = 5000


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int


class Server:
    """Serves one broker on its listeners. ``run`` until cancelled or ``shutdown``."""

    def __init__(self, broker: Broker, listeners: Sequence[Listener],
                 shutdown_grace_ms: int = SHUTDOWN_GRACE_MS_DEFAULT) -> None:
        self.broker = broker
        self.listeners = listeners
        self.shutdown_grace_ms = shutdown_grace_ms
        self.bound: list[tuple[str, int]] = []
        self.connections = 0
        self._accept_scope: trio.CancelScope | None = None
        self._stopping = trio.Event()
        self._draining = False

    async def run(self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as root:
            root.start_soon(self.broker.committer.run)
            root.start_soon(self._maintenance)
            if self.broker.groups is not None:
                root.start_soon(self.broker.groups.run)
            async with trio.open_nursery() as conns:
                self._accept_scope = trio.CancelScope()
                tcp = []
                for lst in self.listeners:
                    host = lst.host or None
                    tcp += await trio.open_tcp_listeners(lst.port, host=host)
                self.bound = [t.socket.getsockname()[:2] for t in tcp]
                conns.start_soon(self._accept_all, tcp, conns)
                task_status.started(self.bound)
                await self._stopping.wait()
                # Stop accepting, give in-flight requests their grace period, then cancel.
                self._accept_scope.cancel()
                self._draining = True
                with trio.move_on_after(self.shutdown_grace_ms / 1000):
                    while self.connections:
                        await trio.sleep(0.01)
                conns.cancel_scope.cancel()
            root.cancel_scope.cancel()

    def shutdown(self) -> None:
        self._stopping.set()

    async def _maintenance(self) -> None:
        from storage.group_commit import maintenance_pass

        while True:
            await trio.sleep(1)
            if self.broker.logs is not None:
                await maintenance_pass(self.broker.logs, now_ms=self.broker.now_ms())
                self.broker.snapshot_rolled_partitions()

    async def _accept_all(self, listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
        assert self._accept_scope is not None
        with self._accept_scope:
            async with trio.open_nursery() as accept:
                for lst in listeners:
                    accept.start_soon(self._accept_loop, lst, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                if self.connections >= self.broker.config.max_connections:
                    await trio.aclose_forcefully(stream)
                    continue
                nursery.start_soon(self.handle_connection, stream)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one connection; nothing that happens on it reaches the rest of the broker."""
        self.connections += 1
        peer = _peer(stream)
        try:
            await self._serve(stream, peer)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            log.debug("connection from %s went away", peer)
        except* Exception:
            log.exception("connection from %s failed", peer)
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream, peer: str) -> None:
        send, receive = trio.open_memory_channel[list[memoryview | RecordsSource] | None](RESPONSES_QUEUED_MAX)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_writer, stream, receive)
            try:
                await self._reader(stream, send, peer)
            finally:
                # Let the writer finish what is queued, then stop. If the writer is gone
                # (the peer closed), there is nothing to finish.
                with trio.move_on_after(1) as scope, contextlib.suppress(trio.BrokenResourceError,
                                                                         trio.ClosedResourceError):
                    scope.shield = True
                    await send.send(None)

    async def _reader(self, stream: trio.abc.Stream,
                      send: trio.MemorySendChannel[list[memoryview | RecordsSource] | None], peer: str) -> None:
        cfg = self.broker.config
        decoder = FrameDecoder(cfg.socket_request_max_bytes)
        idle_s = cfg.connections_max_idle_ms / 1000 if cfg.connections_max_idle_ms >= 0 else math.inf
        while not self._draining:
            try:
                frame = decoder.next_frame()
            except ProtocolError as e:
                log.info("closing connection from %s: %s", peer, e)
                return
            if frame is None:
                with trio.move_on_after(idle_s) as idle:
                    data = await stream.receive_some(RECEIVE_BYTES_MAX)
                if idle.cancelled_caught:
                    log.debug("closing idle connection from %s", peer)
                    return
                if not data:
                    return
                decoder.receive_data(data)
                continue
            ctx = RequestContext(broker=self.broker, peer=peer)
            try:
                response = await dispatch(ctx, frame)
            except ProtocolError as e:
                log.info("closing connection from %s: malformed request: %s", peer, e)
                return
            except CloseConnection as e:
                log.info("closing connection from %s: %s", peer, e)
                return
            if response is not None:
                await send.send(response.chunks())


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("memory", 0)
    except OSError:
        return "unknown"
    return f"{host}:{port}"


async def _writer(stream: trio.abc.Stream,
                  receive: trio.MemoryReceiveChannel[list[memoryview | RecordsSource] | None]) -> None:
    """Write responses in order, every response that is ready in one send."""
    async with receive:
        while True:
            chunks = await receive.receive()
            if chunks is None:
                return
            parts = _materialize(chunks)
            done = False
            while True:
                try:
                    more = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                if more is None:
                    done = True
                    break
                parts += _materialize(more)
            await stream.send_all(b"".join(parts))
            if done:
                return


def _materialize(chunks: list[memoryview | RecordsSource]) -> list[bytes | memoryview]:
    out: list[bytes | memoryview] = []
    for c in chunks:
        if isinstance(c, memoryview):
            out.append(c)
        else:
            out += c.buffers()  # type: ignore[attr-defined]
    return out

