"""``broker.peers``: requests by node id over real loopback connections to in-process brokers;
a dead peer is reported as ``PeerUnavailable`` (a lost message), and the next request after the
peer is back reconnects on its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from broker.client import ConnectionConfig
from broker.peers import Peers, PeerUnavailable
from broker.server import Listener, Server
from protocol.error_codes import ErrorCode
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from tests.broker.broker_testkit import make_broker


@asynccontextmanager
async def serving_broker(path) -> AsyncIterator[tuple[str, int]]:
    """A broker in this process on an ephemeral loopback port."""
    b = make_broker(log_dir=str(path))
    server = Server(b, [Listener("PLAINTEXT", "127.0.0.1", 0)])
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.run)
        yield bound[0]
        server.shutdown()
    b.close()


async def test_request_by_node_id_and_reconnect_after_the_peer_returns(tmp_path) -> None:
    req = ApiVersionsRequest(client_software_name="t", client_software_version="1")
    async with serving_broker(tmp_path / "a") as addr:
        peers = Peers({7: addr}, config=ConnectionConfig(request_timeout_ms=2000, connect_timeout_ms=1000),
                      reconnect_backoff_ms=0)
        async with trio.open_nursery() as nursery:
            await nursery.start(peers.run)
            resp = await peers.request(7, req, ApiVersionsResponse, api_version=3)
            assert resp.error_code == ErrorCode.NONE and resp.api_keys
            with pytest.raises(PeerUnavailable):
                await peers.request(8, req, ApiVersionsResponse, api_version=3)
            nursery.cancel_scope.cancel()
    # The broker is gone: the same peer is now unavailable, not an exception of another kind.
    async with trio.open_nursery() as nursery:
        await nursery.start(peers.run)
        with pytest.raises(PeerUnavailable):
            await peers.request(7, req, ApiVersionsResponse, api_version=3)
        async with serving_broker(tmp_path / "b") as addr2:
            peers.set_address(7, addr2)
            resp = await peers.request(7, req, ApiVersionsResponse, api_version=3)
            assert resp.error_code == ErrorCode.NONE
        nursery.cancel_scope.cancel()
