"""Goal: the KIP-848 consumer group records are Kafka's bytes, and every value round-trips.

Golden bytes worked out from Kafka's record schemas (group-coordinator/.../common/message) for one
record of each kind, a Hypothesis round trip of every value, unknown tagged fields skipped, and
malformed input refused with ProtocolError.
"""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.group import records as rec
from protocol.errors import ProtocolError

TID = UUID("0123456789abcdef0123456789abcdef")


def test_keys_golden() -> None:
    cases = [
        (rec.ConsumerGroupMetadataKey("g"), "0003 0001 67"),
        (rec.ConsumerGroupPartitionMetadataKey("g"), "0004 0001 67"),
        (rec.ConsumerGroupMemberMetadataKey("g", "m"), "0005 0001 67 0001 6d"),
        (rec.ConsumerGroupTargetAssignmentMetadataKey("g"), "0006 0001 67"),
        (rec.ConsumerGroupTargetAssignmentMemberKey("g", "m"), "0007 0001 67 0001 6d"),
        (rec.ConsumerGroupCurrentMemberAssignmentKey("g", "m"), "0008 0001 67 0001 6d"),
        (rec.ConsumerGroupRegularExpressionKey("g", "t.*"), "0010 0001 67 0003 742e2a"),
    ]
    for key, hexed in cases:
        raw = bytes.fromhex(hexed.replace(" ", ""))
        assert rec.encode_key(key) == raw, key
        assert rec.decode_key(raw) == key


def test_values_golden() -> None:
    tid = TID.bytes.hex()
    cases: list[tuple[rec.ConsumerGroupKey, rec.ConsumerGroupValue, str]] = [
        (rec.ConsumerGroupMetadataKey("g"), rec.ConsumerGroupMetadataValue(5), "0000 00000005 00"),
        (rec.ConsumerGroupTargetAssignmentMetadataKey("g"), rec.ConsumerGroupTargetAssignmentMetadataValue(7),
         "0000 00000007 00"),
        # version, [1 topic: id, [2 partitions: 0, 2], tags], tags
        (rec.ConsumerGroupTargetAssignmentMemberKey("g", "m"),
         rec.ConsumerGroupTargetAssignmentMemberValue(((TID, (0, 2)),)),
         f"0000 02 {tid} 03 00000000 00000002 00 00"),
        # epoch 3, previous 2, state 1, assigned [t: 0], pending [t: 1], tags
        (rec.ConsumerGroupCurrentMemberAssignmentKey("g", "m"),
         rec.ConsumerGroupCurrentMemberAssignmentValue(3, 2, 1, ((TID, (0,)),), ((TID, (1,)),)),
         f"0000 00000003 00000002 01 02 {tid} 02 00000000 00 02 {tid} 02 00000001 00 00"),
        # instance null, rack "r", client "c", host "h", names ["t"], regex null, timeout 100, assignor "range"
        (rec.ConsumerGroupMemberMetadataKey("g", "m"),
         rec.ConsumerGroupMemberMetadataValue(None, "r", "c", "h", ("t",), None, 100, "range"),
         "0000 00 0272 0263 0268 02 0274 00 00000064 0672616e6765 00"),
        # [1 topic: id, name "t", 4 partitions, no racks, tags], tags
        (rec.ConsumerGroupPartitionMetadataKey("g"),
         rec.ConsumerGroupPartitionMetadataValue((rec.TopicMetadataRecord(TID, "t", 4),)),
         f"0000 02 {tid} 0274 00000004 01 00 00"),
        # topics ["a"], version 9, timestamp 10, tags
        (rec.ConsumerGroupRegularExpressionKey("g", "a"), rec.ConsumerGroupRegularExpressionValue(("a",), 9, 10),
         "0000 02 0261 0000000000000009 000000000000000a 00"),
    ]
    for key, value, hexed in cases:
        raw = bytes.fromhex(hexed.replace(" ", ""))
        assert rec.encode_value(value) == raw, value
        assert rec.decode_value(key, raw) == value


def test_tombstones_and_unknown_tags() -> None:
    key = rec.ConsumerGroupMemberMetadataKey("g", "m")
    assert rec.decode_value(key, None) is None
    # Tag 0 (the classic-protocol metadata of a member) is skipped.
    plain = rec.encode_value(rec.ConsumerGroupMemberMetadataValue("i", None, "c", "h", (), "x.*", 5, None))
    tagged = plain[:-1] + bytes.fromhex("01 00 03 aabbcc".replace(" ", ""))
    assert rec.decode_value(key, tagged) == rec.decode_value(key, plain)


def test_malformed_values_are_protocol_errors() -> None:
    key = rec.ConsumerGroupCurrentMemberAssignmentKey("g", "m")
    good = rec.encode_value(rec.ConsumerGroupCurrentMemberAssignmentValue(1, 0, 0, ((TID, (0, 1)),), ()))
    for cut in range(2, len(good) - 1):
        with pytest.raises(ProtocolError):
            rec.decode_value(key, good[:cut])
    with pytest.raises(ProtocolError):
        rec.decode_value(key, b"\x00\x01" + good[2:])  # value version 1 does not exist
    with pytest.raises(ProtocolError):
        rec.decode_key(b"\x00\x05\x00\x01g")  # member key without its member id


names = st.text(max_size=8)
ids = st.uuids()
topic_partitions = st.lists(st.tuples(ids, st.lists(st.integers(0, 2**31 - 1), max_size=4).map(tuple)),
                            max_size=3).map(tuple)
optional = st.none() | names
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)

values = st.one_of(
    st.builds(lambda e: (rec.ConsumerGroupMetadataKey("g"), rec.ConsumerGroupMetadataValue(e)), int32),
    st.builds(lambda ts: (rec.ConsumerGroupPartitionMetadataKey("g"), rec.ConsumerGroupPartitionMetadataValue(ts)),
              st.lists(st.builds(rec.TopicMetadataRecord, ids, names, int32,
                                 st.lists(st.tuples(int32, st.lists(names, max_size=2).map(tuple)),
                                          max_size=2).map(tuple)), max_size=3).map(tuple)),
    st.builds(lambda *f: (rec.ConsumerGroupMemberMetadataKey("g", "m"), rec.ConsumerGroupMemberMetadataValue(*f)),
              optional, optional, names, names, st.lists(names, max_size=3).map(tuple), optional, int32, optional),
    st.builds(lambda e: (rec.ConsumerGroupTargetAssignmentMetadataKey("g"),
                         rec.ConsumerGroupTargetAssignmentMetadataValue(e)), int32),
    st.builds(lambda tp: (rec.ConsumerGroupTargetAssignmentMemberKey("g", "m"),
                          rec.ConsumerGroupTargetAssignmentMemberValue(tp)), topic_partitions),
    st.builds(lambda *f: (rec.ConsumerGroupCurrentMemberAssignmentKey("g", "m"),
                          rec.ConsumerGroupCurrentMemberAssignmentValue(*f)),
              int32, int32, st.integers(-128, 127), topic_partitions, topic_partitions),
    st.builds(lambda *f: (rec.ConsumerGroupRegularExpressionKey("g", "r"), rec.ConsumerGroupRegularExpressionValue(*f)),
              st.lists(names, max_size=3).map(tuple), int64, int64),
)


@given(values)
def test_every_value_round_trips(pair: tuple[rec.ConsumerGroupKey, rec.ConsumerGroupValue]) -> None:
    key, value = pair
    assert rec.decode_key(rec.encode_key(key)) == key
    assert rec.decode_value(key, rec.encode_value(value)) == value
