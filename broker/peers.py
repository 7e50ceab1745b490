"""Requests to other nodes by node id: the trio edge under Raft, heartbeats and replica fetchers.

``Peers`` keeps at most one negotiated ``broker.client.Connection`` per node id, opened on first
use inside the nursery ``run`` provides, and dropped when it fails, so the next request
reconnects (after ``reconnect_backoff_ms``, so a dead peer is not hammered). Addresses can change
(``set_address``: a broker re-registers on another port); the old connection is dropped.

Contract: ``request`` returns the response or raises ``PeerUnavailable`` (no address, the
connection failed or timed out); it never raises for the peer's protocol faults in any other
way. The sans-IO cores above it treat ``PeerUnavailable`` as a lost message. Requests to one
peer are pipelined on its connection, up to the connection's in-flight limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import trio

from broker.client import ClientError, Connection, ConnectionConfig, connect
from protocol.errors import ProtocolError
from protocol.message import Message

RECONNECT_BACKOFF_MS_DEFAULT = 50  # Kafka's reconnect.backoff.ms
R = TypeVar("R", bound=Message)


class PeerUnavailable(Exception):
    """The request could not be delivered or answered; treat it as a lost message."""


@dataclass(slots=True)
class _Peer:
    address: tuple[str, int]
    connection: Connection | None = None
    connecting: trio.Event | None = None
    failed_at_ms: float = -math.inf


class Peers:
    def __init__(self, addresses: Mapping[int, tuple[str, int]], *, config: ConnectionConfig,
                 now_ms: Callable[[], float] | None = None,
                 reconnect_backoff_ms: int = RECONNECT_BACKOFF_MS_DEFAULT) -> None:
        self.config = config
        self.reconnect_backoff_ms = reconnect_backoff_ms
        self._now_ms = now_ms or (lambda: trio.current_time() * 1000)
        self._peers = {node: _Peer(address) for node, address in addresses.items()}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the connections' reader tasks until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for peer in self._peers.values():
                if peer.connection is not None:
                    with trio.CancelScope(shield=True):
                        await peer.connection.aclose()
                    peer.connection = None

    def address(self, node_id: int) -> tuple[str, int] | None:
        peer = self._peers.get(node_id)
        return peer.address if peer is not None else None

    def set_address(self, node_id: int, address: tuple[str, int]) -> None:
        peer = self._peers.get(node_id)
        if peer is None:
            self._peers[node_id] = _Peer(address)
        elif peer.address != address:
            if peer.connection is not None and self._nursery is not None:
                self._nursery.start_soon(peer.connection.aclose)
            self._peers[node_id] = _Peer(address)

    async def request(self, node_id: int, body: Message, response_type: type[R], *,
                      api_version: int | None = None, timeout_ms: int | None = None) -> R:
        conn = await self._connection(node_id)
        try:
            return await conn.request(body, response_type, api_version=api_version, timeout_ms=timeout_ms)
        except (ClientError, ProtocolError) as e:
            self._drop(node_id, conn)
            raise PeerUnavailable(f"node {node_id}: {e}") from e

    async def _connection(self, node_id: int) -> Connection:
        peer = self._peers.get(node_id)
        if peer is None:
            raise PeerUnavailable(f"node {node_id} has no known address")
        while True:
            if peer.connection is not None and not peer.connection.closed:
                return peer.connection
            if peer.connecting is not None:
                await peer.connecting.wait()
                if peer.connection is None:
                    raise PeerUnavailable(f"node {node_id} at {_text(peer.address)} is unreachable")
                continue
            if self._now_ms() - peer.failed_at_ms < self.reconnect_backoff_ms:
                raise PeerUnavailable(f"node {node_id} at {_text(peer.address)} failed moments ago")
            if self._nursery is None:
                raise PeerUnavailable("peers are not running")
            peer.connecting = trio.Event()
            try:
                peer.connection = await connect(*peer.address, self._nursery, self.config)
            except (ClientError, ProtocolError, OSError) as e:
                peer.connection = None
                peer.failed_at_ms = self._now_ms()
                raise PeerUnavailable(f"node {node_id}: {e}") from e
            finally:
                peer.connecting.set()
                peer.connecting = None

    def _drop(self, node_id: int, conn: Connection) -> None:
        peer = self._peers.get(node_id)
        if peer is not None and peer.connection is conn:
            peer.connection = None
            peer.failed_at_ms = self._now_ms()
        if self._nursery is not None:
            self._nursery.start_soon(conn.aclose)


def _text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"
