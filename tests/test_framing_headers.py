"""Goal: frames are cut out of a byte stream exactly, and headers are the versions Kafka picks.

``FrameDecoder`` must reassemble frames however the bytes arrive, refuse a hostile size prefix as
soon as its four bytes are in (before any body arrives and without setting memory aside for it),
and hold no more than what it was given. Header versions are checked against Kafka's rules, with
the flexible versions of the APIs below read from Kafka's schemas by hand: request header v2 for
flexible request versions and v1 otherwise, v0 only for ControlledShutdown v0; response header v1
for flexible responses and v0 otherwise, except ApiVersions responses, which are always v0.

Clients depend on two further details tested here: trailing bytes after a complete request body
are ignored (librdkafka 2.16 sends an all-topics Metadata v12 request with three extra bytes), and
a tagged field equal to its default is never written (librdkafka before 2.2, as in Debian's kcat,
fails on tagged fields it does not expect in a Fetch response).
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

import pytest

from protocol.errors import ProtocolError
from protocol.framing import (
    FRAME_ALLOCATION_STEP_BYTES,
    FRAME_BYTES_MAX_DEFAULT,
    FRAME_SIZE_BYTES,
    STAGING_BYTES_DEFAULT,
    FrameDecoder,
    frame,
)
from protocol.headers import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    peek_request,
    request_header_version,
    response_header_version,
)
from protocol.message import Message
from protocol.messages import REQUESTS, RESPONSES, ApiKey
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.controlled_shutdown import ControlledShutdownRequest
from protocol.messages.fetch import FetchResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.produce import ProduceRequest

I16 = struct.Struct(">h")
I32 = struct.Struct(">i")
I64 = struct.Struct(">q")


def frames_of(*bodies: bytes) -> bytes:
    return b"".join(I32.pack(len(b)) + b for b in bodies)


def drain(decoder: FrameDecoder) -> list[bytes]:
    out = []
    while (f := decoder.next_frame()) is not None:
        out.append(bytes(f))
    return out


def response_bytes(body: Message, version: int, correlation_id: int) -> bytes:
    out = encode_response(body, version, correlation_id)
    assert not out.spliced
    return bytes(out)


# --- FrameDecoder ----------------------------------------------------------------------------------

BODIES = [b"first frame", b"", b"x" * 300, bytes(range(256)), b"last"]


def test_frames_delivered_byte_by_byte() -> None:
    wire = frames_of(*BODIES)
    decoder = FrameDecoder()
    got: list[bytes] = []
    boundaries = set()
    end = 0
    for body in BODIES:
        end += FRAME_SIZE_BYTES + len(body)
        boundaries.add(end)
    for i in range(len(wire)):
        decoder.receive_data(wire[i : i + 1])
        new = drain(decoder)
        # A frame comes out exactly when its last byte arrives, never before.
        if i + 1 in boundaries:
            assert len(new) == 1
        else:
            assert new == []
        got += new
    assert got == BODIES
    assert decoder.buffered_bytes == 0


def test_several_frames_in_one_chunk_and_a_split_across_chunks() -> None:
    wire = frames_of(*BODIES)
    decoder = FrameDecoder()
    decoder.receive_data(wire)
    assert drain(decoder) == BODIES
    assert decoder.next_frame() is None

    cut = len(wire) // 2 + 3
    decoder = FrameDecoder()
    decoder.receive_data(wire[:cut])
    first = drain(decoder)
    decoder.receive_data(wire[cut:])
    assert first + drain(decoder) == BODIES


@pytest.mark.parametrize("chunk", [2, 3, 5, 7, 64, 1000])
def test_frames_delivered_in_chunks(chunk: int) -> None:
    wire = frames_of(*BODIES) * 3
    decoder = FrameDecoder()
    got: list[bytes] = []
    for at in range(0, len(wire), chunk):
        decoder.receive_data(memoryview(wire)[at : at + chunk])
        got += drain(decoder)
    assert got == BODIES * 3


def test_next_frame_is_none_until_the_frame_is_complete() -> None:
    decoder = FrameDecoder()
    assert decoder.next_frame() is None
    decoder.receive_data(b"\x00\x00")
    assert decoder.next_frame() is None
    assert decoder.pending_frame_bytes() is None
    decoder.receive_data(b"\x00\x05ab")
    assert decoder.pending_frame_bytes() == 5
    assert decoder.next_frame() is None
    decoder.receive_data(b"cd")
    assert decoder.next_frame() is None
    decoder.receive_data(b"e\x00")
    assert bytes(decoder.next_frame() or b"?") == b"abcde"
    assert decoder.next_frame() is None
    assert decoder.buffered_bytes == 1


def test_frame_helper_prefixes_the_size() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


@pytest.mark.parametrize("size", [-1, -2, -0x8000_0000])
def test_negative_size_is_refused_after_the_prefix_alone(size: int) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(I32.pack(size)[:3])
    assert decoder.next_frame() is None
    decoder.receive_data(I32.pack(size)[3:])
    with pytest.raises(ProtocolError):
        decoder.next_frame()
    with pytest.raises(ProtocolError):
        decoder.pending_frame_bytes()


def test_size_limit_is_inclusive_and_checked_after_the_prefix_alone() -> None:
    decoder = FrameDecoder(frame_bytes_max=10)
    decoder.receive_data(frames_of(b"0123456789"))
    assert drain(decoder) == [b"0123456789"]
    decoder.receive_data(I32.pack(11))  # the body never arrives
    with pytest.raises(ProtocolError):
        decoder.next_frame()


def test_default_limit_is_kafkas_socket_request_max_bytes() -> None:
    assert FRAME_BYTES_MAX_DEFAULT == 104_857_600
    decoder = FrameDecoder()
    decoder.receive_data(I32.pack(FRAME_BYTES_MAX_DEFAULT + 1))
    with pytest.raises(ProtocolError):
        decoder.next_frame()


def _peak_bytes(run: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_claimed_sizes_allocate_nothing() -> None:
    def over_the_limit() -> None:
        decoder = FrameDecoder(frame_bytes_max=1024 * 1024)
        decoder.receive_data(I32.pack(0x7FFF_FFFF))
        with pytest.raises(ProtocolError):
            decoder.next_frame()

    def within_a_huge_limit() -> None:
        # Allowed, but nothing is set aside for it: only what actually arrived is held.
        decoder = FrameDecoder(frame_bytes_max=0x7FFF_FFFF)
        decoder.receive_data(I32.pack(0x7FFF_FFF0) + bytes(100))
        assert decoder.next_frame() is None
        assert decoder.buffered_bytes == 104

    assert _peak_bytes(over_the_limit) < 64 * 1024
    assert _peak_bytes(within_a_huge_limit) < 64 * 1024


def test_a_frame_is_copied_out_once() -> None:
    size = 4_000_000
    decoder = FrameDecoder()
    decoder.receive_data(frames_of(bytes(size), b"next"))
    taken: list[memoryview | None] = []
    peak = _peak_bytes(lambda: taken.append(decoder.next_frame()))
    assert taken[0] is not None and len(taken[0]) == size
    assert peak < size * 1.25, f"taking a {size}-byte frame peaked at {peak} bytes"
    decoder.receive_data(b"\x00")  # the buffer can still be compacted and grown afterwards
    assert bytes(decoder.next_frame() or b"?") == b"next"


def test_memory_stays_bounded_while_streaming() -> None:
    body = b"m" * 1000
    wire = frames_of(*([body] * 2000))  # about 2 MB in all

    def stream() -> None:
        decoder = FrameDecoder()
        count = 0
        for at in range(0, len(wire), 3001):
            decoder.receive_data(wire[at : at + 3001])
            while (f := decoder.next_frame()) is not None:
                assert len(f) == 1000
                count += 1
        assert count == 2000
        assert decoder.buffered_bytes == 0

    assert _peak_bytes(stream) < 256 * 1024


# --- FrameDecoder: receiving into its buffers (the socket path) ------------------------------------

def feed_through_buffers(decoder: FrameDecoder, wire: bytes, chunk: int) -> list[tuple[memoryview, int]]:
    """Write ``wire`` into the views ``get_buffer`` hands out, at most ``chunk`` bytes at a time, as
    ``recv_into`` would; take frames as they complete. Returns (frame, bytes received straight into
    the frame's own buffer) for each frame."""
    out: list[tuple[memoryview, int]] = []
    direct: dict[int, int] = {}  # id of a buffer -> bytes written into it
    at = 0
    while at < len(wire):
        with decoder.get_buffer() as view:
            assert len(view) > 0 and not view.readonly
            n = min(len(view), chunk, len(wire) - at)
            view[:n] = wire[at : at + n]
            direct[id(view.obj)] = direct.get(id(view.obj), 0) + n
        decoder.buffer_updated(n)
        at += n
        while decoder.has_frame():
            f = decoder.next_frame()
            assert f is not None
            out.append((f, direct.pop(id(f.obj), 0)))
        assert decoder.next_frame() is None
    return out


BIG_BODY = bytes(range(256)) * 1200  # 300 KiB: beyond the staging buffer
MIXED = [b"a", BIG_BODY, b"", b"x" * 20_000, *(b"p%d" % i for i in range(50)), BIG_BODY[::-1], b"end"]


@pytest.mark.parametrize("chunk", [1, 3, 4, 5, 999, 65536, 10**9])
def test_frames_received_into_get_buffer_however_the_bytes_arrive(chunk: int) -> None:
    bodies = [b"a", b"", bytes(range(256)) * 100, b"end"] if chunk < 5 else MIXED  # (1-byte steps: keep it small)
    decoder = FrameDecoder()
    got = feed_through_buffers(decoder, frames_of(*bodies), chunk)
    assert [bytes(f) for f, _ in got] == bodies
    assert decoder.buffered_bytes == 0


def test_a_large_frame_is_received_straight_into_the_buffer_it_is_handed_out_in() -> None:
    """Only what arrived together with the size prefix is copied; the kernel writes the rest of
    the body where the handler will read it."""
    decoder = FrameDecoder()
    got = feed_through_buffers(decoder, frames_of(b"before", BIG_BODY, b"after"), 64 * 1024)
    assert [bytes(f) for f, _ in got] == [b"before", BIG_BODY, b"after"]
    big, direct = got[1]
    assert len(big) - direct <= STAGING_BYTES_DEFAULT
    assert not big.readonly
    big[0:8] = b"stamped!"  # produce stamps offsets in place
    assert bytes(big[:8]) == b"stamped!"


def test_a_frame_does_not_change_when_more_bytes_arrive() -> None:
    """Small frames are copied out of the staging buffer, which is then reused: a frame handed
    out must not be a view of it."""
    decoder = FrameDecoder(staging_bytes=64)
    decoder.receive_data(frames_of(b"first frame", b"second"))
    first = decoder.next_frame()
    assert first is not None
    assert bytes(decoder.next_frame() or b"?") == b"second"
    for i in range(20):
        decoder.receive_data(frames_of(b"overwrite %d" % i))
        assert bytes(decoder.next_frame() or b"?") == b"overwrite %d" % i
    assert bytes(first) == b"first frame"


def test_memory_for_a_frame_grows_only_with_what_arrives() -> None:
    limit = 64 * 1024 * 1024
    decoder = FrameDecoder(frame_bytes_max=limit)
    claim = 40 * 1024 * 1024
    decoder.receive_data(I32.pack(claim) + bytes(100))
    with decoder.get_buffer():
        pass
    assert decoder.held_bytes <= STAGING_BYTES_DEFAULT + FRAME_ALLOCATION_STEP_BYTES
    arrived = 100
    piece = bytes(256 * 1024)

    def stream() -> None:
        nonlocal arrived
        while arrived < 5 * 1024 * 1024:
            decoder.receive_data(piece)
            arrived += len(piece)
            assert decoder.held_bytes <= STAGING_BYTES_DEFAULT + max(FRAME_ALLOCATION_STEP_BYTES, 2 * arrived)
            assert decoder.next_frame() is None

    assert _peak_bytes(stream) < 3 * 5 * 1024 * 1024
    assert decoder.pending_frame_bytes() == claim
    assert decoder.buffered_bytes == FRAME_SIZE_BYTES + arrived


@pytest.mark.parametrize("size", [-1, -0x8000_0000, 1025])
def test_refused_sizes_are_refused_before_a_frame_buffer_is_set_aside(size: int) -> None:
    decoder = FrameDecoder(frame_bytes_max=1024)
    decoder.receive_data(I32.pack(size) + b"body")
    with pytest.raises(ProtocolError):
        decoder.get_buffer()
    with pytest.raises(ProtocolError):
        decoder.next_frame()
    assert not decoder.has_frame()
    assert decoder.held_bytes == STAGING_BYTES_DEFAULT


# --- request and response header versions ----------------------------------------------------------

# (API, first flexible version or None), read from Kafka's schema files by hand.
KAFKA_FLEXIBLE_VERSION_MIN = {
    ApiKey.PRODUCE: 9,
    ApiKey.FETCH: 12,
    ApiKey.LIST_OFFSETS: 6,
    ApiKey.METADATA: 9,
    ApiKey.CONTROLLED_SHUTDOWN: 3,
    ApiKey.OFFSET_COMMIT: 8,
    ApiKey.FIND_COORDINATOR: 3,
    ApiKey.JOIN_GROUP: 6,
    ApiKey.SASL_HANDSHAKE: None,
    ApiKey.API_VERSIONS: 3,
    ApiKey.CREATE_TOPICS: 5,
    ApiKey.DESCRIBE_CONFIGS: 4,
    ApiKey.SASL_AUTHENTICATE: 2,
    ApiKey.OFFSET_DELETE: None,
}

REQUEST_HEADER_CASES = [
    (ApiKey.PRODUCE, 8, 1), (ApiKey.PRODUCE, 9, 2), (ApiKey.PRODUCE, 3, 1), (ApiKey.PRODUCE, 11, 2),
    (ApiKey.FETCH, 11, 1), (ApiKey.FETCH, 12, 2), (ApiKey.FETCH, 0, 1), (ApiKey.FETCH, 17, 2),
    (ApiKey.METADATA, 8, 1), (ApiKey.METADATA, 9, 2), (ApiKey.METADATA, 12, 2),
    (ApiKey.API_VERSIONS, 0, 1), (ApiKey.API_VERSIONS, 2, 1), (ApiKey.API_VERSIONS, 3, 2),
    (ApiKey.API_VERSIONS, 4, 2),
    (ApiKey.CONTROLLED_SHUTDOWN, 0, 0), (ApiKey.CONTROLLED_SHUTDOWN, 1, 1),
    (ApiKey.CONTROLLED_SHUTDOWN, 2, 1), (ApiKey.CONTROLLED_SHUTDOWN, 3, 2),
    (ApiKey.SASL_HANDSHAKE, 0, 1), (ApiKey.SASL_HANDSHAKE, 1, 1),
    (ApiKey.SASL_AUTHENTICATE, 1, 1), (ApiKey.SASL_AUTHENTICATE, 2, 2),
    (ApiKey.OFFSET_DELETE, 0, 1),
]

RESPONSE_HEADER_CASES = [
    (ApiKey.PRODUCE, 8, 0), (ApiKey.PRODUCE, 9, 1), (ApiKey.FETCH, 11, 0), (ApiKey.FETCH, 12, 1),
    (ApiKey.METADATA, 8, 0), (ApiKey.METADATA, 9, 1), (ApiKey.CONTROLLED_SHUTDOWN, 0, 0),
    (ApiKey.CONTROLLED_SHUTDOWN, 3, 1), (ApiKey.SASL_HANDSHAKE, 1, 0), (ApiKey.OFFSET_DELETE, 0, 0),
    # ApiVersions responses are always v0, even at flexible versions.
    (ApiKey.API_VERSIONS, 0, 0), (ApiKey.API_VERSIONS, 2, 0), (ApiKey.API_VERSIONS, 3, 0),
    (ApiKey.API_VERSIONS, 4, 0),
]


def test_generated_classes_agree_with_kafkas_flexible_versions() -> None:
    for api_key, flexible_min in KAFKA_FLEXIBLE_VERSION_MIN.items():
        for table in (REQUESTS, RESPONSES):
            cls = table[api_key]
            generated_min, version_max = cls.FLEXIBLE_VERSION_MIN, cls.VALID_VERSIONS[1]
            if flexible_min is None:
                assert generated_min > version_max, cls.NAME
            else:
                assert generated_min == flexible_min, cls.NAME


@pytest.mark.parametrize(("api_key", "version", "header_version"), REQUEST_HEADER_CASES)
def test_request_header_version_matches_kafka(api_key: int, version: int, header_version: int) -> None:
    assert request_header_version(api_key, version) == header_version


@pytest.mark.parametrize(("api_key", "version", "header_version"), RESPONSE_HEADER_CASES)
def test_response_header_version_matches_kafka(api_key: int, version: int, header_version: int) -> None:
    assert response_header_version(api_key, version) == header_version


def test_header_versions_for_every_api_and_version() -> None:
    for api_key, cls in REQUESTS.items():
        lo, hi = cls.VALID_VERSIONS
        for version in range(lo, hi + 1):
            flexible = version >= cls.FLEXIBLE_VERSION_MIN
            expected = 0 if (api_key, version) == (ApiKey.CONTROLLED_SHUTDOWN, 0) else 2 if flexible else 1
            assert request_header_version(api_key, version) == expected, (cls.NAME, version)
    for api_key, cls in RESPONSES.items():
        lo, hi = cls.VALID_VERSIONS
        for version in range(lo, hi + 1):
            flexible = version >= cls.FLEXIBLE_VERSION_MIN and api_key != ApiKey.API_VERSIONS
            assert response_header_version(api_key, version) == (1 if flexible else 0), (cls.NAME, version)


# --- header bytes ----------------------------------------------------------------------------------


def test_request_header_v2_bytes() -> None:
    body = ApiVersionsRequest(client_software_name="c", client_software_version="1")
    wire = encode_request(body, 3, 0x01020304, "rdkafka")
    header = (b"\x00\x12" + b"\x00\x03" + b"\x01\x02\x03\x04"
              + b"\x00\x07rdkafka"  # the client id keeps its int16 length even in header v2
              + b"\x00")  # empty tagged-field section
    assert wire == I32.pack(len(wire) - 4) + header + body.encode(3)
    assert body.encode(3) == b"\x02c\x021\x00"


def test_request_header_v1_bytes_and_null_client_id() -> None:
    body = MetadataRequest(topics=None)
    wire = encode_request(body, 8, 7, None)
    assert wire[4:] == b"\x00\x03\x00\x08\x00\x00\x00\x07" + b"\xff\xff" + body.encode(8)
    header, decoded = decode_request(memoryview(wire)[4:])
    assert header.client_id is None and header.correlation_id == 7
    assert decoded == body


def test_request_header_v0_has_no_client_id() -> None:
    body = ControlledShutdownRequest(broker_id=5)
    wire = encode_request(body, 0, 9, "ignored")
    assert wire[4:] == b"\x00\x07\x00\x00\x00\x00\x00\x09" + b"\x00\x00\x00\x05"
    header, decoded = decode_request(memoryview(wire)[4:])
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (7, 0, 9)
    assert decoded == body


@pytest.mark.parametrize("version", [3, 4])
def test_api_versions_response_header_is_v0_even_when_flexible(version: int) -> None:
    api_versions = ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)
    body = ApiVersionsResponse(api_keys=[api_versions])
    wire = response_bytes(body, version, 0x0A0B0C0D)
    # Size, correlation id, then directly the body: no tagged-field byte in between.
    assert wire == I32.pack(len(wire) - 4) + b"\x0a\x0b\x0c\x0d" + body.encode(version)
    assert body.encode(version)[:2] == b"\x00\x00"  # the body starts with its error code
    correlation_id, decoded = decode_response(memoryview(wire)[4:], ApiKey.API_VERSIONS, version)
    assert correlation_id == 0x0A0B0C0D and decoded == body


def test_flexible_response_header_carries_a_tag_section() -> None:
    body = MetadataResponse(cluster_id="c")
    flexible = response_bytes(body, 9, 1)
    assert flexible[4:] == b"\x00\x00\x00\x01" + b"\x00" + body.encode(9)
    rigid = response_bytes(body, 8, 1)
    assert rigid[4:] == b"\x00\x00\x00\x01" + body.encode(8)
    assert decode_response(memoryview(flexible)[4:], ApiKey.METADATA, 9) == (1, body)
    assert decode_response(memoryview(rigid)[4:], ApiKey.METADATA, 8) == (1, body)


def test_request_header_tags_are_read_and_skipped() -> None:
    body = ProduceRequest(acks=1, timeout_ms=100)
    wire = bytearray(encode_request(body, 9, 3, "p"))
    assert wire[-len(body.encode(9)) - 1] == 0
    # Replace the empty header tag section with one holding an unknown tag 4 of two bytes.
    at = len(wire) - len(body.encode(9)) - 1
    wire[at : at + 1] = b"\x01\x04\x02hi"
    header, decoded = decode_request(memoryview(bytes(wire))[4:])
    assert header.unknown_tagged_fields == [(4, b"hi")]
    assert decoded == body


# --- trailing bytes and unknown APIs ---------------------------------------------------------------


def test_trailing_bytes_after_a_request_body_are_tolerated() -> None:
    body = MetadataRequest(topics=None, allow_auto_topic_creation=False)  # all topics, like librdkafka
    wire = encode_request(body, 12, 77, "rdkafka")
    padded = I32.pack(len(wire) - 4 + 3) + wire[4:] + b"\x00\x00\x00"
    decoder = FrameDecoder()
    decoder.receive_data(padded)
    got = decoder.next_frame()
    assert got is not None and len(got) == len(wire) - 4 + 3
    header, decoded = decode_request(got)
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (3, 12, 77)
    assert header.client_id == "rdkafka"
    assert decoded == body
    assert decoded.topics is None


@pytest.mark.parametrize("api_key", [200, 0x7FFF, -1, 88])
def test_unknown_api_key_can_still_be_peeked(api_key: int) -> None:
    request = I16.pack(api_key) + I16.pack(3) + I32.pack(4242) + b"\x00\x01x" + b"whatever follows"
    prefix = peek_request(memoryview(request))
    assert (prefix.api_key, prefix.api_version, prefix.correlation_id) == (api_key, 3, 4242)
    with pytest.raises(ProtocolError):
        decode_request(memoryview(request))


def test_unsupported_version_can_still_be_peeked() -> None:
    request = I16.pack(ApiKey.METADATA) + I16.pack(99) + I32.pack(5) + b"\x00\x01x\x00" + b"\x01\x01\x00\x00"
    prefix = peek_request(memoryview(request))
    assert (prefix.api_key, prefix.api_version, prefix.correlation_id) == (3, 99, 5)
    with pytest.raises(ProtocolError):
        decode_request(memoryview(request))


@pytest.mark.parametrize("size", range(8))
def test_peek_request_needs_eight_bytes(size: int) -> None:
    with pytest.raises(ProtocolError):
        peek_request(memoryview(bytes(size)))


# --- tagged fields at their defaults are never written ---------------------------------------------


def _fetch_partition_v12(partition: FetchResponse.PartitionData) -> bytes:
    """A FetchResponse v12 holding one topic "t" with ``partition``, as Kafka lays it out."""
    return (I32.pack(0) + I16.pack(0) + I32.pack(0)  # throttle time, error code, session id
            + b"\x02" + b"\x02t" + b"\x02"  # one topic named "t" with one partition
            + _partition_fields(partition)
            + b"\x00"  # the topic's tagged fields
            + b"\x00")  # the response's tagged fields


def _partition_fields(p: FetchResponse.PartitionData) -> bytes:
    return (I32.pack(p.partition_index) + I16.pack(p.error_code) + I64.pack(p.high_watermark)
            + I64.pack(p.last_stable_offset) + I64.pack(p.log_start_offset)
            + b"\x01"  # no aborted transactions
            + I32.pack(p.preferred_read_replica)
            + b"\x00")  # null records


def test_default_tagged_fields_are_not_written_in_fetch_responses() -> None:
    partition = FetchResponse.PartitionData(partition_index=3, high_watermark=100, last_stable_offset=100,
                                            log_start_offset=0)
    body = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(topic="t", partitions=[partition])])
    expected = _fetch_partition_v12(partition)
    # The partition's tagged section is the single zero byte just before the topic's and response's.
    assert body.encode(12) == expected[:-2] + b"\x00" + expected[-2:]
    assert response_bytes(body, 12, 1)[4:] == b"\x00\x00\x00\x01\x00" + body.encode(12)


@pytest.mark.parametrize("version", range(12, 18))
def test_default_tagged_fields_add_nothing_at_any_flexible_version(version: int) -> None:
    partition = FetchResponse.PartitionData(partition_index=1)
    body = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(topic="t", partitions=[partition])])
    encoded = body.encode(version)
    # Each struct's tagged section, and the response's own (NodeEndpoints from v16), is one zero byte.
    assert encoded.endswith(b"\x00" + b"\x00" + b"\x00" + b"\x00")  # records null, then three sections
    # Setting a tagged field to the value it already has changes nothing.
    same = FetchResponse.PartitionData(partition_index=1,
                                       diverging_epoch=FetchResponse.EpochEndOffset(-1, -1),
                                       current_leader=FetchResponse.LeaderIdAndEpoch(-1, -1),
                                       snapshot_id=FetchResponse.SnapshotId(-1, -1))
    body.responses[0].partitions[0] = same
    assert body.encode(version) == encoded


def test_non_default_tagged_fields_are_written_in_tag_order() -> None:
    partition = FetchResponse.PartitionData(
        partition_index=3,
        snapshot_id=FetchResponse.SnapshotId(end_offset=50, epoch=4),
        diverging_epoch=FetchResponse.EpochEndOffset(epoch=2, end_offset=40),
    )
    body = FetchResponse(responses=[FetchResponse.FetchableTopicResponse(topic="t", partitions=[partition])])
    tags = (b"\x02"  # two tagged fields
            + b"\x00\x0d" + I32.pack(2) + I64.pack(40) + b"\x00"  # tag 0, DivergingEpoch, 13 bytes
            + b"\x02\x0d" + I64.pack(50) + I32.pack(4) + b"\x00")  # tag 2, SnapshotId, 13 bytes
    expected = _fetch_partition_v12(partition)
    assert body.encode(12) == expected[:-2] + tags + expected[-2:]
    decoded = FetchResponse.decode(body.encode(12), 12)
    assert decoded == body

    leader = FetchResponse.PartitionData(
        current_leader=FetchResponse.LeaderIdAndEpoch(leader_id=2, leader_epoch=0))
    body.responses[0].partitions[0] = leader
    assert body.encode(12) == _fetch_partition_v12(leader)[:-2] + (
        b"\x01" + b"\x01\x09" + I32.pack(2) + I32.pack(0) + b"\x00") + b"\x00\x00"


def test_api_versions_response_writes_no_default_tagged_fields() -> None:
    body = ApiVersionsResponse()
    # Error code, no API keys, throttle time, and an empty tagged section: SupportedFeatures,
    # FinalizedFeaturesEpoch, FinalizedFeatures and ZkMigrationReady are at their defaults.
    assert body.encode(3) == b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00" + b"\x00"
    body.finalized_features_epoch = 7
    assert body.encode(3) == b"\x00\x00\x01\x00\x00\x00\x00" + b"\x01\x01\x08" + I64.pack(7)
