"""Goal: the __consumer_offsets records are Kafka's bytes, and groups land on Kafka's partitions.

Byte layouts are written out by hand here, field by field from Kafka's schemas (key version
prefix, then fields; value version prefix, then fields), not produced by the codec under test.
Round trips cover every value version 0-4, including the flexible v4 with tagged fields. The
partition rule is checked against values of Java's String.hashCode worked out by hand.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.group import records as rec
from protocol.errors import ProtocolError


def s16(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def compact(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) + 1 < 128
    return bytes([len(raw) + 1]) + raw


# --- keys ----------------------------------------------------------------------------------------


def test_offset_commit_key_layout() -> None:
    key = rec.OffsetCommitKey("grp", "topic-a", 7)
    expected = struct.pack(">h", 1) + s16("grp") + s16("topic-a") + struct.pack(">i", 7)
    assert rec.encode_key(key) == expected
    assert rec.decode_key(expected) == key
    # Version 0 keys (written by old brokers) have the same fields.
    assert rec.decode_key(struct.pack(">h", 0) + expected[2:]) == key


def test_group_metadata_key_layout() -> None:
    expected = struct.pack(">h", 2) + s16("grp")
    assert rec.encode_key(rec.GroupMetadataKey("grp")) == expected
    assert rec.decode_key(expected) == rec.GroupMetadataKey("grp")


def test_keys_of_other_group_types_are_unknown_not_errors() -> None:
    # Versions 3-8 and 16 are KIP-848 consumer group records (decoded); 9-15 are share groups.
    assert rec.decode_key(struct.pack(">h", 11) + s16("grp")) == rec.UnknownKey(11)
    assert rec.decode_value(rec.UnknownKey(11), b"\x00\x00whatever") is None
    with pytest.raises(ProtocolError):
        rec.decode_key(struct.pack(">h", -1))
    with pytest.raises(ProtocolError):
        rec.decode_key(struct.pack(">h", 1) + s16("grp"))  # truncated


# --- offset commit values ------------------------------------------------------------------------


def test_offset_commit_value_v3_layout_is_what_we_write() -> None:
    value = rec.OffsetCommitValue(offset=42, leader_epoch=5, metadata="meta", commit_timestamp_ms=1_700_000_000_000)
    expected = (struct.pack(">hqi", 3, 42, 5) + s16("meta") + struct.pack(">q", 1_700_000_000_000))
    assert rec.encode_value(value) == expected
    assert rec.decode_value(rec.OffsetCommitKey("g", "t", 0), expected) == value


def test_offset_commit_value_v1_carries_the_expire_timestamp() -> None:
    value = rec.OffsetCommitValue(offset=9, metadata="", commit_timestamp_ms=1000, expire_timestamp_ms=61_000)
    expected = struct.pack(">hq", 1, 9) + s16("") + struct.pack(">qq", 1000, 61_000)
    assert rec.encode_value(value) == expected  # an expire timestamp selects v1, as in Kafka
    assert rec.decode_value(rec.OffsetCommitKey("g", "t", 0), expected) == value


def test_offset_commit_value_v0_v2_and_v4() -> None:
    key = rec.OffsetCommitKey("g", "t", 0)
    v0 = struct.pack(">hq", 0, 9) + s16("m") + struct.pack(">q", 1000)
    assert rec.decode_value(key, v0) == rec.OffsetCommitValue(9, -1, "m", 1000, -1)
    v2 = struct.pack(">hq", 2, 9) + s16("m") + struct.pack(">q", 1000)
    assert rec.decode_value(key, v2) == rec.OffsetCommitValue(9, -1, "m", 1000, -1)
    # v4 is flexible: compact string, then a tagged-field section (here one unknown tag, skipped).
    v4 = struct.pack(">hqi", 4, 9, 3) + compact("m") + struct.pack(">q", 1000) + bytes([1, 7, 2, 0xAA, 0xBB])
    assert rec.decode_value(key, v4) == rec.OffsetCommitValue(9, 3, "m", 1000, -1)
    assert rec.encode_value(rec.OffsetCommitValue(9, 3, "m", 1000), 4) == v4[:-5] + b"\x00"


def test_metadata_strings_come_back_exactly() -> None:
    key = rec.OffsetCommitKey("g", "t", 0)
    for metadata in ("", " spaces kept ", "ünïcödé", "emoji 😀", "nul\x00inside", "x" * 5000):
        for version in (1, 3, 4):
            value = rec.OffsetCommitValue(1, -1, metadata, 5, 77 if version == 1 else -1)
            assert rec.decode_value(key, rec.encode_value(value, version)) == value


def test_tombstones_and_bad_versions() -> None:
    key = rec.OffsetCommitKey("g", "t", 0)
    assert rec.decode_value(key, None) is None
    with pytest.raises(ProtocolError):
        rec.decode_value(key, struct.pack(">hq", 5, 1))
    with pytest.raises(ProtocolError):
        rec.decode_value(key, struct.pack(">hq", 3, 1))  # truncated


# --- group metadata values -----------------------------------------------------------------------


MEMBER = rec.MemberMetadata(
    member_id="c-1", group_instance_id="inst", client_id="cid", client_host="/1.2.3.4",
    rebalance_timeout_ms=30_000, session_timeout_ms=10_000, subscription=b"\x00\x01sub", assignment=b"asg",
)


def test_group_metadata_value_v3_layout() -> None:
    value = rec.GroupMetadataValue("consumer", 4, "range", "c-1", 1234, (MEMBER,))
    expected = (
        struct.pack(">h", 3) + s16("consumer") + struct.pack(">i", 4) + s16("range") + s16("c-1")
        + struct.pack(">q", 1234) + struct.pack(">i", 1)
        + s16("c-1") + s16("inst") + s16("cid") + s16("/1.2.3.4") + struct.pack(">ii", 30_000, 10_000)
        + struct.pack(">i", 5) + b"\x00\x01sub" + struct.pack(">i", 3) + b"asg"
    )
    assert rec.encode_value(value) == expected
    assert rec.decode_value(rec.GroupMetadataKey("g"), expected) == value


def test_empty_group_metadata_value_with_null_protocol_and_leader() -> None:
    value = rec.GroupMetadataValue("", 0, None, None, 99, ())
    expected = struct.pack(">h", 3) + s16("") + struct.pack(">i", 0) + b"\xff\xff\xff\xff" + struct.pack(">qi", 99, 0)
    assert rec.encode_value(value) == expected
    assert rec.decode_value(rec.GroupMetadataKey("g"), expected) == value


def test_group_metadata_value_old_versions_take_defaults() -> None:
    key = rec.GroupMetadataKey("g")
    # v0: no state timestamp, no instance id, no rebalance timeout.
    v0 = (struct.pack(">h", 0) + s16("consumer") + struct.pack(">i", 2) + s16("range") + s16("m")
          + struct.pack(">i", 1) + s16("m") + s16("cid") + s16("/h") + struct.pack(">i", 6000)
          + struct.pack(">i", 1) + b"s" + struct.pack(">i", 1) + b"a")
    decoded = rec.decode_value(key, v0)
    assert decoded == rec.GroupMetadataValue("consumer", 2, "range", "m", -1, (
        rec.MemberMetadata("m", None, "cid", "/h", -1, 6000, b"s", b"a"),))
    # v2 adds the state timestamp and the rebalance timeout (v1+), still no instance id.
    v2 = (struct.pack(">h", 2) + s16("consumer") + struct.pack(">i", 2) + s16("range") + s16("m")
          + struct.pack(">qi", 5, 1) + s16("m") + s16("cid") + s16("/h") + struct.pack(">ii", 7000, 6000)
          + struct.pack(">i", 1) + b"s" + struct.pack(">i", 1) + b"a")
    assert rec.decode_value(key, v2) == rec.GroupMetadataValue("consumer", 2, "range", "m", 5, (
        rec.MemberMetadata("m", None, "cid", "/h", 7000, 6000, b"s", b"a"),))


def test_group_metadata_value_v4_is_flexible() -> None:
    value = rec.GroupMetadataValue("consumer", 4, "range", None, 1234, (MEMBER,))
    expected = (
        struct.pack(">h", 4) + compact("consumer") + struct.pack(">i", 4) + compact("range") + b"\x00"
        + struct.pack(">q", 1234) + bytes([2])
        + compact("c-1") + compact("inst") + compact("cid") + compact("/1.2.3.4") + struct.pack(">ii", 30_000, 10_000)
        + bytes([6]) + b"\x00\x01sub" + bytes([4]) + b"asg" + b"\x00"
        + b"\x00"
    )
    assert rec.encode_value(value, 4) == expected
    assert rec.decode_value(rec.GroupMetadataKey("g"), expected) == value


names = st.text(max_size=20)
members = st.builds(
    rec.MemberMetadata, names, st.none() | names, names, names, st.integers(-1, 2**31 - 1),
    st.integers(0, 2**31 - 1), st.binary(max_size=40), st.binary(max_size=40))


@given(st.builds(rec.GroupMetadataValue, names, st.integers(-(2**31), 2**31 - 1), st.none() | names,
                 st.none() | names, st.integers(-1, 2**62), st.lists(members, max_size=4).map(tuple)),
       st.sampled_from([3, 4]))
def test_group_metadata_round_trip(value: rec.GroupMetadataValue, version: int) -> None:
    assert rec.decode_value(rec.GroupMetadataKey("g"), rec.encode_value(value, version)) == value


@given(st.builds(rec.OffsetCommitValue, st.integers(-1, 2**63 - 1), st.integers(-1, 2**31 - 1), names,
                 st.integers(-1, 2**62)), st.sampled_from([3, 4]))
def test_offset_commit_round_trip(value: rec.OffsetCommitValue, version: int) -> None:
    assert rec.decode_value(rec.OffsetCommitKey("g", "t", 1), rec.encode_value(value, version)) == value


@given(names, names, st.integers(0, 2**31 - 1))
def test_key_round_trip(group: str, topic: str, partition: int) -> None:
    key = rec.OffsetCommitKey(group, topic, partition)
    assert rec.decode_key(rec.encode_key(key)) == key
    assert rec.decode_key(rec.encode_key(rec.GroupMetadataKey(group))) == rec.GroupMetadataKey(group)


# --- placement -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "hashcode"), [
    ("", 0),
    ("a", 97),
    ("hello", 99162322),  # 104, *31+101, *31+108, *31+108, *31+111
    ("Aa", 2112),
    ("BB", 2112),  # Java's classic collision
    ("é", 233),
    ("😀", 0xD83D * 31 + 0xDE00),  # a surrogate pair counts as two UTF-16 units
    ("polygenelubricants", -(2**31)),  # the well-known string that hashes to Integer.MIN_VALUE
])
def test_java_string_hashcode(text: str, hashcode: int) -> None:
    assert rec.java_string_hashcode(text) == hashcode


def test_java_string_hashcode_wraps_to_int32() -> None:
    # 31**7 * ord("z") overflows 32 bits: compute Java's arithmetic by hand with explicit wrapping.
    text = "zzzzzzzz"
    h = 0
    for ch in text:
        h = (h * 31 + ord(ch)) % 2**32
    expected = h - 2**32 if h >= 2**31 else h
    assert rec.java_string_hashcode(text) == expected
    assert expected < 0


def test_partition_for_uses_kafka_abs() -> None:
    assert rec.partition_for("hello", 50) == 99162322 % 50
    assert rec.partition_for("polygenelubricants", 50) == 0  # Utils.abs(MIN_VALUE) == 0
    negative = "zzzzzzzz"
    assert rec.partition_for(negative, 50) == abs(rec.java_string_hashcode(negative)) % 50
    assert rec.java_abs(-5) == 5
    assert rec.java_abs(-(2**31)) == 0
