"""From a request frame to a response frame: the table of served APIs and versions.

``ROUTES`` maps each API key the broker serves to the versions it serves and its handler. It is
the single source of truth: ApiVersions advertises exactly it, and a request for any other API
or version is answered with UNSUPPORTED_VERSION in a well-formed response of the version asked
for (ApiVersions itself answers with a v0 response listing what is served, as Kafka does, so a
client can retry with a version both sides speak). A request whose API key or version the
schemas do not even define cannot be answered in a form the client could read: that connection
is closed, as Kafka closes it.

A handler that raises answers with UNKNOWN_SERVER_ERROR; the broker and the connection live on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from broker.core import Broker
from protocol.error_codes import ErrorCode
from protocol.errors import EncodeError, ProtocolError
from protocol.headers import decode_request_header, encode_response, peek_request
from protocol.message import ChunkedOut, Message
from protocol.messages import REQUESTS, RESPONSES, ApiKey
from protocol.messages.api_versions import ApiVersionsResponse
from protocol.messages.request_header import RequestHeader

log = logging.getLogger("trafka.dispatch")

class CloseConnection(Exception):  # noqa: N818 (it is an instruction, not an error)
    """Raised by a handler when the only right answer is to close the connection."""


Handler = Callable[["RequestContext", Any], Awaitable[Message | None]]


@dataclass(slots=True)
class RequestContext:
    broker: Broker
    peer: str
    header: RequestHeader | None = None

    @property
    def api_version(self) -> int:
        assert self.header is not None
        return self.header.request_api_version


@dataclass(frozen=True, slots=True)
class Route:
    min_version: int
    max_version: int
    handler: Handler


ROUTES: dict[int, Route] = {}


def route(api_key: ApiKey, min_version: int, max_version: int) -> Callable[[Handler], Handler]:
    """Register a handler for ``api_key`` at ``min_version``..``max_version``."""

    def register(fn: Handler) -> Handler:
        lo, hi = REQUESTS[api_key].VALID_VERSIONS
        assert lo <= min_version <= max_version <= hi, (api_key, min_version, max_version)
        ROUTES[api_key] = Route(min_version, max_version, fn)
        return fn

    return register


def supported_versions() -> list[ApiVersionsResponse.ApiVersion]:
    return [ApiVersionsResponse.ApiVersion(api_key=k, min_version=r.min_version, max_version=r.max_version)
            for k, r in sorted(ROUTES.items())]


async def dispatch(ctx: RequestContext, frame: memoryview) -> ChunkedOut | None:
    """The response frame for one request frame; None when none is due (acks=0)."""
    prefix = peek_request(frame)
    key, version = prefix.api_key, prefix.api_version
    request_cls = REQUESTS.get(key)
    r = ROUTES.get(key)
    served = r is not None and r.min_version <= version <= r.max_version
    if key == ApiKey.API_VERSIONS and not served:
        # KIP-511: an ApiVersions request we cannot parse gets a v0 response with our versions.
        body = ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=supported_versions())
        return encode_response(body, 0, prefix.correlation_id)
    if request_cls is None:
        raise ProtocolError(f"unknown API key {key}")
    lo, hi = request_cls.VALID_VERSIONS
    if not lo <= version <= hi:
        raise ProtocolError(f"{request_cls.NAME} has no version {version}")
    header, pos = decode_request_header(frame)
    ctx.header = header
    if not served:
        return encode_response(error_response(key, version, ErrorCode.UNSUPPORTED_VERSION), version,
                               prefix.correlation_id)
    assert r is not None
    request, _ = request_cls.decode_from(frame, pos, version)
    try:
        response = await r.handler(ctx, request)
    except (ProtocolError, CloseConnection):
        raise
    except Exception:
        log.exception("%s v%d from %s failed", request_cls.NAME, version, ctx.peer)
        response = error_response(key, version, ErrorCode.UNKNOWN_SERVER_ERROR)
    if response is None:
        return None
    try:
        return encode_response(response, version, prefix.correlation_id)
    except EncodeError:
        log.exception("%s v%d response to %s cannot be encoded", request_cls.NAME, version, ctx.peer)
        return encode_response(error_response(key, version, ErrorCode.UNKNOWN_SERVER_ERROR), version,
                               prefix.correlation_id)


def error_response(api_key: int, version: int, error: ErrorCode) -> Message:
    """A response of this API and version that carries ``error`` wherever it has an error code.

    The top-level ``error_code`` is set when the response has one; otherwise the response is
    empty, which clients read as "nothing served" and retry or fail on.
    """
    cls = RESPONSES[api_key]
    body = cls()
    if any(f.name == "error_code" for f in dataclasses.fields(body)):  # type: ignore[arg-type]
        body.error_code = int(error)  # type: ignore[attr-defined]
    return body
