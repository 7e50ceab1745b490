"""Goal: Kafka's primitive types encode to the exact bytes Kafka uses and reject malformed input.

Expected encodings are worked out by hand from Kafka's protocol guide (unsigned varints are
little-endian groups of seven bits with a continuation bit; signed ones are zig-zag encoded first)
rather than from the module under test. Decoders must refuse what cannot be valid (over-long or
truncated varints, negative lengths other than the null marker, lengths and counts larger than
what remains) without allocating what the bytes claim, and bytes values must be views into the
frame, not copies.

Reads past the end of the buffer may surface from a primitive as ``struct.error`` or
``IndexError`` (the fast paths index without checking; see the module's contract);
``Message.decode_from`` turns those into ``ProtocolError``, which the last tests check.
"""

from __future__ import annotations

import functools
import struct
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from protocol.errors import EncodeError, ProtocolError
from protocol.messages.metadata import MetadataRequest
from protocol.messages.request_header import RequestHeader
from protocol.primitives import (
    ZERO_UUID,
    read_array_len,
    read_bytes,
    read_compact_array_len,
    read_compact_bytes,
    read_compact_nullable_bytes,
    read_compact_nullable_string,
    read_compact_string,
    read_nullable_array_len,
    read_nullable_bytes,
    read_nullable_string,
    read_string,
    read_tag_header,
    read_tagged_fields,
    read_uuid,
    read_uvarint,
    read_uvarlong,
    read_varint,
    read_varlong,
    skip_tagged_fields,
    uvarint_bytes,
    varint_bytes,
    varlong_bytes,
    write_array_len,
    write_bytes,
    write_compact_array_len,
    write_compact_bytes,
    write_compact_nullable_bytes,
    write_compact_nullable_string,
    write_compact_string,
    write_nullable_bytes,
    write_nullable_string,
    write_string,
    write_tagged_fields,
    write_uuid,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# A primitive reading past the end may raise any of these (see the module docstring).
MALFORMED = (ProtocolError, struct.error, IndexError)


def mv(data: bytes | bytearray) -> memoryview:
    return memoryview(data)


def written(write: Callable[[bytearray, Any], None], value: Any) -> bytes:
    out = bytearray()
    write(out, value)
    return bytes(out)


def peak_bytes_of(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(ProtocolError):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- varints ---------------------------------------------------------------------------------------

UVARINT_CASES = [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"),
    (2**31 - 1, b"\xff\xff\xff\xff\x07"),
    (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
]

# (signed value, zig-zag value): 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3, ..., min -> all ones.
ZIGZAG32_CASES = [(0, 0), (-1, 1), (1, 2), (-2, 3), (2, 4), (-64, 127), (64, 128),
                  (INT32_MAX, 2**32 - 2), (INT32_MIN, 2**32 - 1)]
ZIGZAG64_CASES = [(0, 0), (-1, 1), (1, 2), (-2, 3), (INT32_MAX, 2**32 - 2), (INT32_MIN, 2**32 - 1),
                  (INT64_MAX, 2**64 - 2), (INT64_MIN, 2**64 - 1)]


def reference_uvarint(value: int) -> bytes:
    """Kafka's unsigned varint, straight from the definition: 7 bits a byte, low bits first."""
    groups = []
    while True:
        groups.append(value & 0x7F)
        value >>= 7
        if not value:
            break
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


@pytest.mark.parametrize(("value", "encoded"), UVARINT_CASES)
def test_uvarint_known_encodings(value: int, encoded: bytes) -> None:
    assert reference_uvarint(value) == encoded  # the table itself is right
    assert uvarint_bytes(value) == encoded
    assert read_uvarint(mv(encoded), 0) == (value, len(encoded))
    assert read_uvarlong(mv(encoded), 0) == (value, len(encoded))


@pytest.mark.parametrize(("value", "zigzag"), ZIGZAG32_CASES)
def test_varint_zigzag_boundaries(value: int, zigzag: int) -> None:
    encoded = varint_bytes(value)
    assert encoded == reference_uvarint(zigzag)
    assert read_varint(mv(encoded), 0) == (value, len(encoded))
    # Read at an offset inside a larger buffer, followed by other data.
    assert read_varint(mv(b"\xee" + encoded + b"\x7f"), 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize(("value", "zigzag"), ZIGZAG64_CASES)
def test_varlong_zigzag_boundaries(value: int, zigzag: int) -> None:
    encoded = varlong_bytes(value)
    assert encoded == reference_uvarint(zigzag)
    assert read_varlong(mv(encoded), 0) == (value, len(encoded))


def test_zigzag_known_bytes() -> None:
    assert varint_bytes(-1) == b"\x01"
    assert varint_bytes(1) == b"\x02"
    assert varint_bytes(INT32_MIN) == b"\xff\xff\xff\xff\x0f"
    assert varlong_bytes(-1) == b"\x01"
    assert varlong_bytes(INT64_MAX) == b"\xfe" + b"\xff" * 8 + b"\x01"
    assert varlong_bytes(INT64_MIN) == b"\xff" * 9 + b"\x01"
    assert len(varlong_bytes(INT64_MIN)) == 10


def test_varint_round_trips_across_the_range() -> None:
    values = [0, -1, 1, INT32_MIN, INT32_MAX]
    values += [sign * (2**shift + delta)
               for shift in range(0, 31) for delta in (-1, 0, 1) for sign in (1, -1)]
    for value in values:
        if INT32_MIN <= value <= INT32_MAX:
            assert read_varint(mv(varint_bytes(value)), 0)[0] == value
    for shift in range(0, 63):
        for value in (2**shift - 1, 2**shift, -(2**shift), -(2**shift) - 1):
            assert read_varlong(mv(varlong_bytes(value)), 0)[0] == value


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x80\x80\x80\x80\x80\x01",  # six bytes, the last one terminating
        b"\xff\xff\xff\xff\xff\x00",
        b"\xff\xff\xff\xff\xff",  # five bytes, the fifth still continuing
        b"\x80\x80\x80\x80\x10",  # five bytes, but 33 bits
        b"\xff\xff\xff\xff\x7f",
    ],
)
def test_uvarint_over_long_or_over_32_bits_is_rejected(encoded: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_uvarint(mv(encoded + b"\x00" * 8), 0)
    with pytest.raises(ProtocolError):
        read_varint(mv(encoded + b"\x00" * 8), 0)


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x80" * 10 + b"\x01",  # eleven bytes
        b"\xff" * 10,  # ten bytes, the tenth still continuing
        b"\xff" * 9 + b"\x02",  # ten bytes, but 65 bits
    ],
)
def test_uvarlong_over_long_or_over_64_bits_is_rejected(encoded: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_uvarlong(mv(encoded + b"\x00" * 8), 0)
    with pytest.raises(ProtocolError):
        read_varlong(mv(encoded + b"\x00" * 8), 0)


@pytest.mark.parametrize("encoded", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff\xff"])
@pytest.mark.parametrize("read", [read_uvarint, read_varint, read_uvarlong, read_varlong])
def test_truncated_varints_raise_protocol_error(read: Callable[[memoryview, int], Any],
                                                encoded: bytes) -> None:
    with pytest.raises(ProtocolError):
        read(mv(encoded), 0)
    # Also when the varint starts past the start of the buffer.
    with pytest.raises(ProtocolError):
        read(mv(b"\x05" + encoded), 1)


# --- strings ---------------------------------------------------------------------------------------


def test_string_encodings() -> None:
    assert written(write_string, "abc") == b"\x00\x03abc"
    assert written(write_string, "") == b"\x00\x00"
    assert written(write_string, "é") == b"\x00\x02\xc3\xa9"  # length counts UTF-8 bytes
    assert written(write_nullable_string, None) == b"\xff\xff"
    assert written(write_nullable_string, "") == b"\x00\x00"
    assert written(write_compact_string, "abc") == b"\x04abc"
    assert written(write_compact_string, "") == b"\x01"
    assert written(write_compact_nullable_string, None) == b"\x00"
    assert written(write_compact_string, "x" * 200) == b"\xc9\x01" + b"x" * 200


@pytest.mark.parametrize("value", ["", "a", "kafka", "é€\U0001d11e", "x" * 127, "y" * 128, "z" * 1000])
def test_string_round_trips(value: str) -> None:
    size = len(value.encode())
    for write, read in ((write_string, read_string), (write_nullable_string, read_nullable_string),
                        (write_compact_string, read_compact_string),
                        (write_compact_nullable_string, read_compact_nullable_string)):
        data = written(write, value) + b"tail"
        got, end = read(mv(data), 0)
        assert got == value
        assert end == len(data) - 4
        assert end - size in (1, 2)  # compact prefix of one or two bytes, or an int16


def test_nullable_string_markers() -> None:
    assert read_nullable_string(mv(b"\xff\xff"), 0) == (None, 2)
    assert read_compact_nullable_string(mv(b"\x00"), 0) == (None, 1)


def test_non_nullable_strings_reject_null() -> None:
    with pytest.raises(ProtocolError):
        read_string(mv(b"\xff\xff"), 0)
    with pytest.raises(ProtocolError):
        read_compact_string(mv(b"\x00"), 0)


@pytest.mark.parametrize("length", [-2, -3, -0x8000])
def test_strings_reject_negative_lengths_other_than_null(length: int) -> None:
    data = struct.pack(">h", length) + b"abcdef"
    with pytest.raises(ProtocolError):
        read_string(mv(data), 0)
    with pytest.raises(ProtocolError):
        read_nullable_string(mv(data), 0)


def test_strings_reject_lengths_beyond_what_remains() -> None:
    with pytest.raises(ProtocolError):
        read_string(mv(b"\x00\x05abcd"), 0)
    with pytest.raises(ProtocolError):
        read_nullable_string(mv(b"\x7f\xffabcd"), 0)
    with pytest.raises(ProtocolError):
        read_compact_string(mv(b"\x06abcd"), 0)
    with pytest.raises(ProtocolError):
        read_compact_nullable_string(mv(b"\xff\xff\xff\xff\x0fabcd"), 0)
    # Exactly enough is fine.
    assert read_compact_string(mv(b"\x05abcd"), 0) == ("abcd", 5)


def test_truncated_string_prefixes_are_malformed() -> None:
    for read in (read_string, read_nullable_string):
        with pytest.raises(MALFORMED):
            read(mv(b"\x00"), 0)
    for read in (read_compact_string, read_compact_nullable_string):
        with pytest.raises(MALFORMED):
            read(mv(b""), 0)
        with pytest.raises(ProtocolError):
            read(mv(b"\x80"), 0)


def test_invalid_utf8_is_decoded_leniently_like_kafka() -> None:
    assert read_string(mv(b"\x00\x03a\xffb"), 0) == ("a\ufffdb", 5)
    assert read_compact_string(mv(b"\x03\xc3("), 0) == ("\ufffd(", 3)


def test_write_string_rejects_more_than_an_int16_length() -> None:
    write_string(bytearray(), "x" * 0x7FFF)
    with pytest.raises(EncodeError):
        write_string(bytearray(), "x" * 0x8000)
    with pytest.raises(EncodeError):
        write_nullable_string(bytearray(), "é" * 0x4000)  # 0x8000 bytes of UTF-8
    # A local misuse, so a message that cannot carry it raises EncodeError, not a bare ValueError.
    too_long = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="t" * 0x8000)])
    with pytest.raises(EncodeError):
        too_long.encode(1)
    assert too_long.encode(12)  # compact strings have no int16 limit


# --- bytes -------------------------------------------------------------------------------------------


def test_bytes_encodings() -> None:
    assert written(write_bytes, b"ab") == b"\x00\x00\x00\x02ab"
    assert written(write_nullable_bytes, None) == b"\xff\xff\xff\xff"
    assert written(write_nullable_bytes, b"") == b"\x00\x00\x00\x00"
    assert written(write_compact_bytes, b"ab") == b"\x03ab"
    assert written(write_compact_nullable_bytes, None) == b"\x00"
    assert written(write_compact_bytes, b"") == b"\x01"


def test_bytes_round_trip_and_null_markers() -> None:
    for value in (b"", b"\x00", bytes(range(256))):
        for write, read in ((write_bytes, read_bytes), (write_nullable_bytes, read_nullable_bytes),
                            (write_compact_bytes, read_compact_bytes),
                            (write_compact_nullable_bytes, read_compact_nullable_bytes)):
            data = written(write, value) + b"!"
            got, end = read(mv(data), 0)
            assert got is not None and bytes(got) == value
            assert end == len(data) - 1
    assert read_nullable_bytes(mv(b"\xff\xff\xff\xff"), 0) == (None, 4)
    assert read_compact_nullable_bytes(mv(b"\x00"), 0) == (None, 1)
    with pytest.raises(ProtocolError):
        read_bytes(mv(b"\xff\xff\xff\xff"), 0)
    with pytest.raises(ProtocolError):
        read_compact_bytes(mv(b"\x00"), 0)


@pytest.mark.parametrize("length", [-2, -0x7FFF_FFFF, -0x8000_0000])
def test_bytes_reject_negative_lengths_other_than_null(length: int) -> None:
    data = struct.pack(">i", length) + bytes(16)
    with pytest.raises(ProtocolError):
        read_bytes(mv(data), 0)
    with pytest.raises(ProtocolError):
        read_nullable_bytes(mv(data), 0)


def test_bytes_reject_lengths_beyond_what_remains_without_allocating_them() -> None:
    frame = struct.pack(">i", 0x7FFF_FFFF) + bytes(64)
    compact = b"\xff\xff\xff\xff\x0f" + bytes(64)
    for read, data in ((read_bytes, frame), (read_nullable_bytes, frame), (read_compact_bytes, compact),
                       (read_compact_nullable_bytes, compact)):
        assert peak_bytes_of(functools.partial(read, mv(data), 0)) < 64 * 1024
    with pytest.raises(ProtocolError):
        read_bytes(mv(b"\x00\x00\x00\x05abcd"), 0)
    with pytest.raises(ProtocolError):
        read_compact_bytes(mv(b"\x06abcd"), 0)


def test_bytes_are_views_into_the_frame() -> None:
    frame = bytearray(b"\x00\x00\x00\x03abc\x04xyz")
    view = memoryview(frame)
    plain, pos = read_bytes(view, 0)
    compact, _ = read_compact_bytes(view, pos)
    nullable, _ = read_nullable_bytes(view, 0)
    compact_nullable, _ = read_compact_nullable_bytes(view, pos)
    for got in (plain, compact, nullable, compact_nullable):
        assert isinstance(got, memoryview)
        assert got.obj is frame
    assert nullable is not None and compact_nullable is not None
    frame[4] = ord("A")
    frame[8] = ord("X")
    assert bytes(plain) == b"Abc" and bytes(nullable) == b"Abc"
    assert bytes(compact) == b"Xyz" and bytes(compact_nullable) == b"Xyz"


# --- arrays ------------------------------------------------------------------------------------------


def test_array_length_encodings() -> None:
    assert written(write_array_len, 3) == b"\x00\x00\x00\x03"
    assert written(write_array_len, -1) == b"\xff\xff\xff\xff"
    assert written(write_compact_array_len, 3) == b"\x04"
    assert written(write_compact_array_len, -1) == b"\x00"
    assert written(write_compact_array_len, 200) == b"\xc9\x01"


def test_array_counts_that_fit_are_accepted() -> None:
    data = b"\x00\x00\x00\x03" + bytes(12)
    assert read_array_len(mv(data), 0, 4) == (3, 4)
    assert read_nullable_array_len(mv(data), 0, 4) == (3, 4)
    assert read_nullable_array_len(mv(b"\xff\xff\xff\xff"), 0, 4) == (-1, 4)
    assert read_compact_array_len(mv(b"\x04" + bytes(12)), 0, 4) == (3, 1)
    assert read_compact_array_len(mv(b"\x00"), 0, 4) == (-1, 1)  # null
    assert read_compact_array_len(mv(b"\x01"), 0, 4) == (0, 1)
    assert read_array_len(mv(b"\x00\x00\x00\x00"), 0, 4) == (0, 4)


def test_array_counts_that_cannot_fit_are_rejected() -> None:
    # Three elements of at least four bytes need twelve; eleven remain.
    with pytest.raises(ProtocolError):
        read_array_len(mv(b"\x00\x00\x00\x03" + bytes(11)), 0, 4)
    with pytest.raises(ProtocolError):
        read_nullable_array_len(mv(b"\x00\x00\x00\x03" + bytes(11)), 0, 4)
    with pytest.raises(ProtocolError):
        read_compact_array_len(mv(b"\x04" + bytes(11)), 0, 4)


@pytest.mark.parametrize("count", [-2, -0x8000_0000])
def test_array_negative_counts_are_rejected(count: int) -> None:
    data = struct.pack(">i", count) + bytes(32)
    with pytest.raises(ProtocolError):
        read_array_len(mv(data), 0, 1)
    with pytest.raises(ProtocolError):
        read_nullable_array_len(mv(data), 0, 1)
    with pytest.raises(ProtocolError):
        read_array_len(mv(b"\xff\xff\xff\xff" + bytes(32)), 0, 1)  # null in a non-nullable array


def test_huge_array_counts_are_rejected_without_allocating() -> None:
    data = struct.pack(">i", 0x7FFF_FFFF) + bytes(256)
    compact = b"\xff\xff\xff\xff\x0f" + bytes(256)
    checks: list[Callable[[], object]] = [
        lambda: read_array_len(mv(data), 0, 1),
        lambda: read_nullable_array_len(mv(data), 0, 1),
        lambda: read_compact_array_len(mv(compact), 0, 1),
    ]
    for check in checks:
        assert peak_bytes_of(check) < 64 * 1024


def test_compact_array_count_with_an_over_long_varint_is_rejected() -> None:
    with pytest.raises(ProtocolError):
        read_compact_array_len(mv(b"\x80\x80\x80\x80\x80\x01" + bytes(8)), 0, 1)


# --- uuid --------------------------------------------------------------------------------------------


def test_uuid_round_trip_and_truncation() -> None:
    value = uuid.UUID("12345678-9abc-def0-1122-334455667788")
    assert written(write_uuid, value) == bytes.fromhex("123456789abcdef01122334455667788")
    assert read_uuid(mv(b"\x01" + value.bytes), 1) == (value, 17)
    assert read_uuid(mv(bytes(16)), 0) == (ZERO_UUID, 16)
    with pytest.raises(ProtocolError):
        read_uuid(mv(value.bytes[:15]), 0)


# --- tagged fields -----------------------------------------------------------------------------------


def test_empty_tagged_section() -> None:
    assert written(write_tagged_fields, None) == b"\x00"
    assert written(write_tagged_fields, []) == b"\x00"
    assert read_tagged_fields(mv(b"\x00\x99"), 0) == (None, 1)
    assert skip_tagged_fields(mv(b"\x00\x99"), 0) == 1


def test_unknown_tags_are_kept_in_the_order_read() -> None:
    # Three fields: tag 5 "a", tag 1 "", tag 300 "xyz" (tag 300 is the two-byte varint ac 02).
    section = b"\x03" + b"\x05\x01a" + b"\x01\x00" + b"\xac\x02\x03xyz"
    fields, end = read_tagged_fields(mv(section + b"rest"), 0)
    assert fields == [(5, b"a"), (1, b""), (300, b"xyz")]
    assert end == len(section)
    assert all(type(body) is bytes for _, body in fields)  # copied: they outlive the frame
    assert skip_tagged_fields(mv(section + b"rest"), 0) == len(section)


def test_write_tagged_fields_sorts_by_tag() -> None:
    out = written(write_tagged_fields, [(300, b"xyz"), (5, b"a"), (1, b"")])
    assert out == b"\x03" + b"\x01\x00" + b"\x05\x01a" + b"\xac\x02\x03xyz"
    fields, _ = read_tagged_fields(mv(out), 0)
    assert fields == [(1, b""), (5, b"a"), (300, b"xyz")]


def test_read_tag_header_positions() -> None:
    data = b"\x99\x07\x03abc"
    assert read_tag_header(mv(data), 1) == (7, 3, 6)
    with pytest.raises(ProtocolError):
        read_tag_header(mv(b"\x07\x04abc"), 0)


@pytest.mark.parametrize(
    "section",
    [
        b"",  # nothing at all
        b"\x01",  # one field announced, none present
        b"\x01\x05",  # tag without size
        b"\x01\x05\x04abc",  # body longer than what remains
        b"\x01\x05\xff\xff\xff\xff\x0f",  # body claims 4 GiB
        b"\xff\xff\xff\xff\x0f\x00\x00",  # count claims 4 billion fields
        b"\x03\x05\x01a",  # count larger than the fields present
        b"\x80\x80\x80\x80\x80\x01",  # over-long count
    ],
)
def test_malformed_tagged_sections_are_rejected(section: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_tagged_fields(mv(section), 0)
    with pytest.raises(ProtocolError):
        skip_tagged_fields(mv(section), 0)


def test_huge_tagged_counts_are_rejected_without_allocating() -> None:
    section = b"\xff\xff\xff\xff\x0f" + b"\x01\x00" * 32
    assert peak_bytes_of(lambda: read_tagged_fields(mv(section), 0)) < 64 * 1024


# --- at the top of a decode, every malformed input is a ProtocolError --------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",  # nothing: truncated before the first int32
        b"\x00\x00",  # truncated int32 count
        b"\x00\x00\x00\x02\x00\x01a\x00",  # two topics, "a" and a truncated name length
        b"\x00\x00\x00\x01\x00\x05ab",  # name longer than what remains
        b"\x00\x00\x00\x01\xff\xfe",  # name length -2
        b"\x7f\xff\xff\xff",  # 2 billion topics
    ],
)
def test_message_decode_turns_primitive_failures_into_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        MetadataRequest.decode(body, 1)


@pytest.mark.parametrize(
    "body",
    [
        b"",  # truncated compact array count
        b"\x02",  # one topic, nothing after it
        b"\x02" + bytes(16) + b"\x80\x80",  # topic id, then a truncated name length
        b"\x02" + bytes(16) + b"\x05ab",  # name longer than what remains
        b"\x01\x01\x00",  # no topics, two booleans, then no tagged section at all
        b"\x01\x01\x00\x02\x07",  # two tagged fields announced, one truncated
    ],
)
def test_flexible_decode_turns_primitive_failures_into_protocol_errors(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        MetadataRequest.decode(body, 12)


def test_unknown_tags_survive_a_message_round_trip_sorted() -> None:
    header = RequestHeader(3, 12, 7, "c", [(9, b"late"), (2, b"early")])
    encoded = header.encode(2)
    assert encoded.endswith(b"\x02" + b"\x02\x05early" + b"\x09\x04late")
    decoded = RequestHeader.decode(encoded, 2)
    assert decoded.unknown_tagged_fields == [(2, b"early"), (9, b"late")]
