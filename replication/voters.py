"""The voter set of the metadata quorum as KIP-853 keeps it: in the metadata log.

What it owns.

* ``VoterSet``: each voter's node id, its directory id (None: not recorded, any directory of that
  node is taken as the voter, Kafka's kraft.version 0 meaning) and its endpoints. Immutable; the
  changes the leader makes return a new set (``bind``, ``add``, ``remove``).
* The control records, in Kafka's layout: ``VotersRecord`` (control type 6, version 0; an
  unrecorded directory is written as the zero uuid) and ``KRaftVersionRecord`` (type 5, version
  0), as the values of records whose key is the control key. ``voters_batch_records`` builds the
  records of one control batch; ``read_control_records`` reads them back out of a batch.
* ``VoterSetHistory``: Kafka's ``VoterSetHistory``/``KRaftControlRecordStateMachine`` in small:
  the voter sets found in the log at their offsets, so the Raft node can use the latest one (even
  uncommitted, as Kafka does), forget those a truncation removed, and tell the last committed one.

What it never does: I/O, clocks, or raising for bytes a peer sent (a record that does not decode
is a ``VoterSetError`` for the caller, which treats the batch as not a voter set). Single-threaded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from protocol.errors import ProtocolError
from protocol.messages.k_raft_version_record import KRaftVersionRecord
from protocol.messages.voters_record import VotersRecord
from protocol.primitives import ZERO_UUID
from protocol.records import CONTROL_KEY, CONTROL_KEY_VERSION, ControlRecordType, NewRecord, RecordBatchView

VOTERS_RECORD_VERSION = 0  # the VotersRecord version Kafka writes
KRAFT_VERSION_RECORD_VERSION = 0
KRAFT_VERSION_0 = 0  # static voters, no directory ids
KRAFT_VERSION_1 = 1  # the voter set is in the log (KIP-853)
CONTROLLER_LISTENER = "CONTROLLER"  # the listener name written for a voter's endpoint


class VoterSetError(Exception):
    """A VotersRecord or KRaftVersionRecord that does not decode or makes no sense."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Voter:
    node_id: int
    directory_id: uuid.UUID | None
    endpoints: tuple[Endpoint, ...] = ()


@dataclass(frozen=True, slots=True)
class VoterSet:
    """Voters by node id. See the module docstring."""

    voters: Mapping[int, Voter] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, voters: Iterable[Voter]) -> VoterSet:
        return cls(MappingProxyType({v.node_id: v for v in sorted(voters, key=lambda v: v.node_id)}))

    @classmethod
    def from_directories(
        cls, directories: Mapping[int, uuid.UUID | None], endpoints: Mapping[int, tuple[str, int]] | None = None
    ) -> VoterSet:
        eps = endpoints or {}
        return cls.of(
            Voter(n, d, (Endpoint(CONTROLLER_LISTENER, *eps[n]),) if n in eps else ()) for n, d in directories.items()
        )

    @property
    def directories(self) -> dict[int, uuid.UUID | None]:
        return {n: v.directory_id for n, v in self.voters.items()}

    def is_voter(self, node_id: int, directory_id: uuid.UUID | None) -> bool:
        """Whether (id, directory) is a voter: an unrecorded directory takes any, and a
        directory not given (an old request version) matches any recorded one."""
        v = self.voters.get(node_id)
        if v is None:
            return False
        return v.directory_id is None or directory_id is None or v.directory_id == directory_id

    def has_exact(self, node_id: int, directory_id: uuid.UUID | None) -> bool:
        """Whether the voter key (id, directory) is in the set exactly (Kafka's ReplicaKey equality)."""
        v = self.voters.get(node_id)
        return v is not None and v.directory_id == directory_id

    def bind(self, node_id: int, directory_id: uuid.UUID) -> VoterSet:
        v = self.voters[node_id]
        assert v.directory_id is None, f"voter {node_id} is bound already"
        return VoterSet.of([*(x for x in self.voters.values() if x.node_id != node_id),
                            Voter(node_id, directory_id, v.endpoints)])

    def add(self, voter: Voter) -> VoterSet:
        assert voter.node_id not in self.voters
        return VoterSet.of([*self.voters.values(), voter])

    def remove(self, node_id: int) -> VoterSet:
        assert node_id in self.voters
        return VoterSet.of(v for v in self.voters.values() if v.node_id != node_id)

    def __len__(self) -> int:
        return len(self.voters)

    # --- records ---------------------------------------------------------------------------------

    def to_record(self) -> VotersRecord:
        return VotersRecord(
            version=VOTERS_RECORD_VERSION,
            voters=[
                VotersRecord.Voter(
                    voter_id=v.node_id,
                    voter_directory_id=v.directory_id or ZERO_UUID,
                    endpoints=[VotersRecord.Endpoint(name=e.name, host=e.host, port=e.port) for e in v.endpoints],
                    k_raft_version_feature=VotersRecord.KRaftVersionFeature(
                        min_supported_version=KRAFT_VERSION_0, max_supported_version=KRAFT_VERSION_1
                    ),
                )
                for v in self.voters.values()
            ],
        )

    @classmethod
    def from_record(cls, record: VotersRecord) -> VoterSet:
        if record.version != VOTERS_RECORD_VERSION:
            raise VoterSetError(f"VotersRecord version {record.version}")
        ids = [v.voter_id for v in record.voters]
        if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
            raise VoterSetError(f"a VotersRecord with voter ids {ids}")
        return cls.of(
            Voter(
                v.voter_id,
                None if v.voter_directory_id == ZERO_UUID else v.voter_directory_id,
                tuple(Endpoint(e.name, e.host, e.port) for e in v.endpoints),
            )
            for v in record.voters
        )

    def encode(self) -> bytes:
        return self.to_record().encode(VOTERS_RECORD_VERSION)

    @classmethod
    def decode(cls, value: bytes | memoryview) -> VoterSet:
        try:
            return cls.from_record(VotersRecord.decode(value, VOTERS_RECORD_VERSION))
        except ProtocolError as e:
            raise VoterSetError(f"VotersRecord: {e}") from None


def encode_kraft_version(kraft_version: int) -> bytes:
    return KRaftVersionRecord(version=KRAFT_VERSION_RECORD_VERSION, k_raft_version=kraft_version).encode(
        KRAFT_VERSION_RECORD_VERSION
    )


def decode_kraft_version(value: bytes | memoryview) -> int:
    try:
        record = KRaftVersionRecord.decode(value, KRAFT_VERSION_RECORD_VERSION)
    except ProtocolError as e:
        raise VoterSetError(f"KRaftVersionRecord: {e}") from None
    if record.version != KRAFT_VERSION_RECORD_VERSION or record.k_raft_version not in (KRAFT_VERSION_0, KRAFT_VERSION_1):
        raise VoterSetError(f"KRaftVersionRecord version {record.version}, kraft.version {record.k_raft_version}")
    return record.k_raft_version


def _control(kind: ControlRecordType, value: bytes, now_ms: int) -> NewRecord:
    return NewRecord(key=CONTROL_KEY.pack(CONTROL_KEY_VERSION, kind), value=value, timestamp=now_ms)


def voters_batch_records(voters: VoterSet, *, now_ms: int, kraft_version: int | None = None) -> list[NewRecord]:
    """The records of a control batch that records ``voters`` (after a KRaftVersionRecord when
    ``kraft_version`` is given: the first voter set a log records)."""
    out = []
    if kraft_version is not None:
        out.append(_control(ControlRecordType.KRAFT_VERSION, encode_kraft_version(kraft_version), now_ms))
    out.append(_control(ControlRecordType.KRAFT_VOTERS, voters.encode(), now_ms))
    return out


@dataclass(frozen=True, slots=True)
class ControlFound:
    """A KRaftVersionRecord or VotersRecord at ``offset``."""

    offset: int
    kraft_version: int | None = None
    voters: VoterSet | None = None


def read_control_records(batch: RecordBatchView) -> list[ControlFound]:
    """The KRaftVersion and Voters records of a control batch (none for a data batch); one that
    does not decode raises ``VoterSetError``."""
    if not batch.is_control:
        return []
    out = []
    for r in batch.records():
        if r.key is None or len(r.key) < CONTROL_KEY.size or r.value is None:
            continue
        _version, kind = CONTROL_KEY.unpack_from(r.key, 0)
        if kind == ControlRecordType.KRAFT_VERSION:
            out.append(ControlFound(r.offset, kraft_version=decode_kraft_version(r.value)))
        elif kind == ControlRecordType.KRAFT_VOTERS:
            out.append(ControlFound(r.offset, voters=VoterSet.decode(r.value)))
    return out


class VoterSetHistory:
    """The voter sets and kraft.version values a log records, by offset (see the module docstring).

    ``static`` is the voter set of the configuration (``controller.quorum.voters``), used while
    the log records none."""

    __slots__ = ("static", "_voters", "_versions")

    def __init__(self, static: VoterSet) -> None:
        self.static = static
        self._voters: list[tuple[int, VoterSet]] = []
        self._versions: list[tuple[int, int]] = []

    def add(self, found: ControlFound) -> None:
        """Record what the log holds at ``found.offset``; offsets at or below the latest known
        one (read twice) are ignored."""
        if found.voters is not None and (not self._voters or self._voters[-1][0] < found.offset):
            self._voters.append((found.offset, found.voters))
        if found.kraft_version is not None and (not self._versions or self._versions[-1][0] < found.offset):
            self._versions.append((found.offset, found.kraft_version))

    def truncate_to(self, end_offset: int) -> bool:
        """Forget what was at or after ``end_offset`` (the log was truncated there); True if
        the latest voter set changed."""
        before = len(self._voters)
        self._voters = [e for e in self._voters if e[0] < end_offset]
        self._versions = [e for e in self._versions if e[0] < end_offset]
        return len(self._voters) != before

    def reset(self, offset: int, voters: VoterSet | None, kraft_version: int) -> None:
        """The log now starts at ``offset`` with a snapshot's voter set and kraft.version."""
        self._voters = [] if voters is None else [(offset - 1, voters)]
        self._versions = [(offset - 1, kraft_version)] if kraft_version else []

    @property
    def latest(self) -> VoterSet:
        return self._voters[-1][1] if self._voters else self.static

    @property
    def latest_offset(self) -> int:
        """The offset of the latest VotersRecord, -1 when the log records none."""
        return self._voters[-1][0] if self._voters else -1

    def at(self, end_offset: int) -> VoterSet:
        """The voter set in force below ``end_offset`` (for a snapshot ending there)."""
        found = [v for o, v in self._voters if o < end_offset]
        return found[-1] if found else self.static

    def recorded_at(self, end_offset: int) -> bool:
        return any(o < end_offset for o, _ in self._voters)

    def kraft_version_at(self, end_offset: int) -> int:
        found = [k for o, k in self._versions if o < end_offset]
        return found[-1] if found else KRAFT_VERSION_0

    @property
    def kraft_version(self) -> int:
        return self._versions[-1][1] if self._versions else KRAFT_VERSION_0
