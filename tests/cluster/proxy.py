"""A fault-injecting TCP proxy for real-process cluster tests.

One ``FaultProxy`` listens on a loopback port and forwards every connection to one target
address. It runs its own trio loop on a thread, so a synchronous test (which also drives real
client libraries and subprocesses) can cut and heal links while traffic flows:

* ``cut("both" | "forward" | "backward")``: stop moving bytes in that direction. Bytes are never
  dropped mid-stream (that would corrupt Kafka's framing, which TCP never does); a cut link stalls
  like a network partition, the peers' timeouts fire, and whatever was in flight is delivered
  when the link heals, as TCP retransmission would.
* ``heal()``: move bytes again in both directions.
* ``reset()``: close every open connection abruptly (a link that dies).

``forward`` is client-to-target (e.g. follower to leader), ``backward`` the answers.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import trio

CHUNK_BYTES = 65536


@dataclass
class _Direction:
    open: trio.Event = field(default_factory=trio.Event)


class FaultProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.cuts = 0
        self.resets = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: trio.Event | None = None
        self._forward: _Direction | None = None
        self._backward: _Direction | None = None
        self._conn_scopes: set[trio.CancelScope] = set()
        self._error: BaseException | None = None

    # --- control (any thread) -----------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        if self._error is not None:
            raise RuntimeError("the proxy failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            stop = self._stop
            trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join(10)

    def cut(self, direction: str = "both") -> None:
        assert direction in ("both", "forward", "backward"), direction
        self.cuts += 1
        self._call(self._set, direction, False)

    def heal(self) -> None:
        self._call(self._set, "both", True)

    def reset(self) -> None:
        self.resets += 1
        self._call(self._reset_all)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the loop -----------------------------------------------------------------------

    def _call(self, fn: object, *args: object) -> None:
        assert self._token is not None
        trio.from_thread.run_sync(fn, *args, trio_token=self._token)  # type: ignore[arg-type]

    def _set(self, direction: str, is_open: bool) -> None:
        assert self._forward is not None and self._backward is not None
        for name, d in (("forward", self._forward), ("backward", self._backward)):
            if direction not in ("both", name):
                continue
            if is_open:
                d.open.set()
            elif d.open.is_set():
                d.open = trio.Event()  # a fresh, unset event: pumps wait on it

    def _reset_all(self) -> None:
        for scope in list(self._conn_scopes):
            scope.cancel()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to start(); the thread must not die silently
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._forward, self._backward = _Direction(), _Direction()
        self._forward.open.set()
        self._backward.open.set()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._accept, listeners[0], nursery)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                client = await listener.accept()
                nursery.start_soon(self._connection, client)

    async def _connection(self, client: trio.SocketStream) -> None:
        scope = trio.CancelScope()
        self._conn_scopes.add(scope)
        try:
            with scope:
                try:
                    upstream = await trio.open_tcp_stream(*self.target)
                except OSError:
                    return
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                async with trio.open_nursery() as pumps:
                    pumps.start_soon(self._pump, client, upstream, "forward", pumps.cancel_scope)
                    pumps.start_soon(self._pump, upstream, client, "backward", pumps.cancel_scope)
        finally:
            self._conn_scopes.discard(scope)
            await trio.aclose_forcefully(client)
            if "upstream" in locals():
                await trio.aclose_forcefully(upstream)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, name: str,
                    both: trio.CancelScope) -> None:
        try:
            while True:
                await self._direction(name).open.wait()
                data = await src.receive_some(CHUNK_BYTES)
                if not data:
                    break
                # A cut that came while we were receiving holds these bytes until the heal.
                while not self._direction(name).open.is_set():
                    await self._direction(name).open.wait()
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        both.cancel()

    def _direction(self, name: str) -> _Direction:
        d = self._forward if name == "forward" else self._backward
        assert d is not None
        return d
