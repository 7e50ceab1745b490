"""Request and response headers, chosen per API and version exactly as Kafka chooses them.

Request header v0 has no client id (only ControlledShutdown v0 uses it); v1 adds the client id;
v2 adds a tagged-field section and is used by every flexible request version. Response header v0
is the correlation id alone and v1 adds tagged fields, used by flexible response versions, with one
exception: ApiVersions responses always use v0, because a client must be able to read the
response to a version it sent before it knows which versions the broker speaks.

The first eight bytes of every request header are the same in all versions (api key, api version,
correlation id), so ``peek_request`` can read them from any frame and a broker can answer a request
it cannot otherwise parse.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.message import ChunkedOut, Message
from protocol.messages import REQUESTS, RESPONSES, ApiKey
from protocol.messages.request_header import RequestHeader
from protocol.messages.response_header import ResponseHeader
from protocol.primitives import I32

_PREFIX = struct.Struct(">hhi")


def request_header_version(api_key: int, api_version: int) -> int:
    if api_key == ApiKey.CONTROLLED_SHUTDOWN and api_version == 0:
        return 0
    cls = REQUESTS.get(api_key)
    return 2 if cls is not None and cls.is_flexible(api_version) else 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key == ApiKey.API_VERSIONS:
        return 0
    cls = RESPONSES.get(api_key)
    return 1 if cls is not None and cls.is_flexible(api_version) else 0


@dataclass(frozen=True, slots=True)
class RequestPrefix:
    """The part of a request header that every version shares."""

    api_key: int
    api_version: int
    correlation_id: int


def peek_request(frame: memoryview) -> RequestPrefix:
    if len(frame) < _PREFIX.size:
        raise ProtocolError(f"request of {len(frame)} bytes is too short for a header")
    return RequestPrefix(*_PREFIX.unpack_from(frame, 0))


def decode_request_header(frame: memoryview) -> tuple[RequestHeader, int]:
    """The header of a request to a known API and version, and where its body starts."""
    prefix = peek_request(frame)
    version = request_header_version(prefix.api_key, prefix.api_version)
    return RequestHeader.decode_from(frame, 0, version)


def decode_request(frame: memoryview) -> tuple[RequestHeader, Message]:
    """Header and body of a request; the caller has checked the API and version are served."""
    header, pos = decode_request_header(frame)
    cls = REQUESTS.get(header.request_api_key)
    if cls is None:
        raise ProtocolError(f"unknown API key {header.request_api_key}")
    body, _ = cls.decode_from(frame, pos, header.request_api_version)
    return header, body


def encode_request(body: Message, api_version: int, correlation_id: int, client_id: str | None) -> bytes:
    """A whole request frame, size prefix included."""
    out = bytearray(b"\0\0\0\0")
    header = RequestHeader(body.API_KEY, api_version, correlation_id, client_id)
    header.encode_into(out, request_header_version(body.API_KEY, api_version))
    body.encode_into(out, api_version)
    I32.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def encode_response(body: Message, api_version: int, correlation_id: int) -> ChunkedOut:
    """A whole response frame, size prefix included, with large records spliced, not copied."""
    out = ChunkedOut()
    out += b"\0\0\0\0"
    header = ResponseHeader(correlation_id)
    header.encode_into(out, response_header_version(body.API_KEY, api_version))
    body.encode_into(out, api_version)
    I32.pack_into(out, 0, len(out) + out.spliced_bytes() - 4)
    return out


def decode_response(frame: memoryview, api_key: int, api_version: int) -> tuple[int, Message]:
    """Correlation id and body of a response frame (without its size prefix)."""
    header, pos = ResponseHeader.decode_from(frame, 0, response_header_version(api_key, api_version))
    body, _ = RESPONSES[api_key].decode_from(frame, pos, api_version)
    return header.correlation_id, body
