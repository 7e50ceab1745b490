"""KRaft metadata snapshots (KIP-630): their files, their format, when a node takes one, and the
metadata image one holds.

What it owns.

* ``SnapshotId``: a snapshot's *end offset* (the offset after the last record it covers) and the
  epoch of that last record, Kafka's ``OffsetAndEpoch``. Ordered by end offset, then epoch.
* The format, Kafka's ``RecordsSnapshotWriter``'s: v2 record batches, exactly as in a log
  segment, whose offsets start at 0 and whose partition leader epoch is the snapshot's epoch. The
  first is a control batch holding one ``SnapshotHeader`` record (version 0, the timestamp of the
  last record the snapshot covers), then data batches of opaque record values (for the metadata
  log, ``replication.records`` values), then a control batch holding one ``SnapshotFooter``.
  ``encode_snapshot`` writes it; ``decode_snapshot`` reads it back and refuses anything else: a
  bad CRC, a torn last batch, bytes after the footer, a missing header or footer, offsets that are
  not contiguous, a batch of another epoch. When the log records a voter set (KIP-853,
  ``replication.voters``), the header batch also holds a ``KRaftVersion`` and a ``KRaftVoters``
  record after the header, as Kafka's ``RecordsSnapshotWriter`` writes them; they come back as
  ``SnapshotContents.kraft_version`` and ``.voters``.
* The files (``SnapshotStore``), through ``storage.fs.FileSystem`` only, in the metadata log's
  directory and named as Kafka names them: ``<end offset, 20 digits>-<epoch, 10
  digits>.checkpoint``. A snapshot is written whole to ``<name>.checkpoint.part``, synced, renamed
  and the directory synced, so a crash leaves either no snapshot or a complete one. A snapshot
  fetched from the leader grows in its ``.part`` file chunk by chunk (``PartialSnapshot``) and
  is validated before the rename. Opening the store removes ``.part`` and ``.checkpoint.deleted``
  leftovers and validates every snapshot; one that fails (a disk that rotted) is removed, so an
  older snapshot or the log is used instead.
* ``SnapshotPolicy``: when the state machine on a node writes its next snapshot: once
  ``metadata.log.max.record.bytes.between.snapshots`` bytes of batches were committed since the
  last one, or ``metadata.log.max.snapshot.interval.ms`` passed with something new committed (0
  turns the time trigger off). Kafka's defaults (20 MiB, one hour).
* For the metadata image: ``image_records`` (the record values that rebuild an image: every
  broker registration, topic, partition with all its fields, config, finalized feature and the
  producer id block, ``MetadataImage.snapshot_records``), ``image_from_snapshot`` (the image a
  snapshot holds) and ``as_of_snapshot`` (an image as a snapshot of it reloads: see below).

What a snapshot does not keep. A broker registration's ``registration_offset`` (the offset of its
``RegisterBrokerRecord``) is not a record field: as in Kafka, a registration loaded from a
snapshot counts as made at the snapshot's last offset, and so does the image's own ``offset``
(Trafka's image offset is that of the last *data* record replayed; a snapshot may end with control
batches). ``as_of_snapshot(image, end_offset)`` is the image with exactly those two changes; the
round trip ``image_from_snapshot(snapshot of image) == as_of_snapshot(image, end)`` holds for every
image (tests/replication/test_snapshot.py).

What it never does: I/O other than through the ``FileSystem`` it is given, reading a clock
(``now_ms`` comes in), or raising for bytes a peer sent (a fetched snapshot that does not validate
is a ``SnapshotError`` for the caller to handle: it deletes the file and fetches again). Who takes
snapshots, serves and fetches them and cleans the log is ``replication.raft``'s and the state
machine's business. Single-threaded.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import ClassVar

from protocol.errors import ProtocolError
from protocol.messages.snapshot_footer_record import SnapshotFooterRecord
from protocol.messages.snapshot_header_record import SnapshotHeaderRecord
from protocol.records import (
    CONTROL_KEY,
    CONTROL_KEY_VERSION,
    BatchError,
    ControlRecordType,
    NewRecord,
    build_batch,
    iter_batches,
)
from replication.metadata import MetadataImage
from replication.records import decode_record, encode_record
from replication.voters import VoterSet, VoterSetError, read_control_records, voters_batch_records
from storage.fs import FileHandle, FileSystem

SNAPSHOT_SUFFIX = ".checkpoint"
PARTIAL_SUFFIX = SNAPSHOT_SUFFIX + ".part"
DELETED_SUFFIX = SNAPSHOT_SUFFIX + ".deleted"
OFFSET_DIGITS = 20
EPOCH_DIGITS = 10
HEADER_VERSION = 0  # SnapshotHeaderRecord's version field and schema version (Kafka's current)
FOOTER_VERSION = 0
SNAPSHOT_BATCH_BYTES_MAX = 1024 * 1024  # record bytes per data batch of a snapshot we write
SNAPSHOT_READ_CHUNK_BYTES = 1024 * 1024  # how much of a file one read takes when loading

_NAME = re.compile(r"^(?P<offset>\d{20})-(?P<epoch>\d{10})(?P<suffix>\.checkpoint(?:\.part|\.deleted)?)$")
_VOTER_CONTROL = (ControlRecordType.KRAFT_VERSION, ControlRecordType.KRAFT_VOTERS)


class SnapshotError(Exception):
    """A snapshot's bytes are not a valid snapshot (corrupt, torn, or not ours)."""


@dataclass(frozen=True, slots=True, order=True)
class SnapshotId:
    """A snapshot covers every record below ``end_offset``; ``epoch`` is the last one's epoch."""

    end_offset: int
    epoch: int

    def file_name(self, suffix: str = SNAPSHOT_SUFFIX) -> str:
        return f"{self.end_offset:0{OFFSET_DIGITS}d}-{self.epoch:0{EPOCH_DIGITS}d}{suffix}"

    def __str__(self) -> str:
        return f"{self.end_offset}-{self.epoch}"


def parse_snapshot_name(name: str) -> tuple[SnapshotId, str] | None:
    """``(id, suffix)`` for a snapshot file name (``.checkpoint``, ``.checkpoint.part`` or
    ``.checkpoint.deleted``), None for anything else."""
    m = _NAME.match(name)
    if m is None:
        return None
    return SnapshotId(int(m.group("offset")), int(m.group("epoch"))), m.group("suffix")


# --- the format --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotContents:
    """A validated snapshot: its record values in order and its header's timestamp."""

    snapshot_id: SnapshotId
    last_contained_timestamp_ms: int
    records: tuple[bytes, ...]
    size_bytes: int
    kraft_version: int = 0
    voters: VoterSet | None = None  # the voter set in force at the snapshot's end, if the log recorded one


def _control_record(kind: ControlRecordType, value: bytes, now_ms: int) -> NewRecord:
    return NewRecord(key=CONTROL_KEY.pack(CONTROL_KEY_VERSION, kind), value=value, timestamp=now_ms)


def encode_snapshot(
    snapshot_id: SnapshotId,
    records: Iterable[bytes],
    *,
    last_contained_timestamp_ms: int,
    now_ms: int,
    batch_bytes_max: int = SNAPSHOT_BATCH_BYTES_MAX,
    voters: VoterSet | None = None,
    kraft_version: int = 0,
) -> bytes:
    """A snapshot's bytes: header batch (with the voter set, when given, after the header),
    data batches of about ``batch_bytes_max``, footer batch."""
    epoch = snapshot_id.epoch
    header = SnapshotHeaderRecord(version=HEADER_VERSION, last_contained_log_timestamp=last_contained_timestamp_ms)
    first = [_control_record(ControlRecordType.SNAPSHOT_HEADER, header.encode(HEADER_VERSION), now_ms)]
    if voters is not None:
        first += voters_batch_records(voters, now_ms=now_ms, kraft_version=kraft_version)
    out = [build_batch(first, base_offset=0, partition_leader_epoch=epoch, is_control=True)]
    offset = len(first)
    pending: list[NewRecord] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal offset, pending, pending_bytes
        if pending:
            out.append(build_batch(pending, base_offset=offset, partition_leader_epoch=epoch))
            offset += len(pending)
            pending, pending_bytes = [], 0

    for value in records:
        if pending and pending_bytes + len(value) > batch_bytes_max:
            flush()
        pending.append(NewRecord(value=value, timestamp=now_ms))
        pending_bytes += len(value)
    flush()
    footer = SnapshotFooterRecord(version=FOOTER_VERSION)
    out.append(build_batch([_control_record(ControlRecordType.SNAPSHOT_FOOTER, footer.encode(FOOTER_VERSION), now_ms)],
                           base_offset=offset, partition_leader_epoch=epoch, is_control=True))
    return b"".join(out)


def decode_snapshot(snapshot_id: SnapshotId, data: bytes | bytearray | memoryview) -> SnapshotContents:
    """Validate a whole snapshot and return its contents; ``SnapshotError`` says what is wrong."""
    buf = memoryview(data)
    values: list[bytes] = []
    timestamp = -1
    kraft_version = 0
    voters: VoterSet | None = None
    state = "header"  # header -> body -> done
    next_offset = 0
    it = iter_batches(buf)
    try:
        for batch in it:
            batch.validate()
            if state == "done":
                raise SnapshotError("a batch after the snapshot footer")
            if batch.base_offset != next_offset:
                raise SnapshotError(f"batch at offset {batch.base_offset} where {next_offset} was expected")
            if batch.partition_leader_epoch != snapshot_id.epoch:
                raise SnapshotError(f"batch of epoch {batch.partition_leader_epoch} in a snapshot of epoch "
                                    f"{snapshot_id.epoch}")
            next_offset = batch.next_offset
            records = list(batch.records())
            if not batch.is_control:
                if state != "body":
                    raise SnapshotError("data before the snapshot header")
                for r in records:
                    if r.value is None:
                        raise SnapshotError(f"record at offset {r.offset} has no value")
                    values.append(bytes(r.value))
                continue
            for r in records:
                kind = _control_type(r.key)
                if kind in _VOTER_CONTROL:
                    if state != "body":
                        raise SnapshotError(f"control record {kind} outside the snapshot's body")
                    continue
                if kind == ControlRecordType.SNAPSHOT_HEADER:
                    if state != "header" or r.value is None:
                        raise SnapshotError("a second snapshot header")
                    header = SnapshotHeaderRecord.decode(r.value, HEADER_VERSION)
                    if header.version != HEADER_VERSION:
                        raise SnapshotError(f"snapshot header version {header.version}")
                    timestamp = header.last_contained_log_timestamp
                    state = "body"
                elif kind == ControlRecordType.SNAPSHOT_FOOTER:
                    if state != "body" or r.value is None:
                        raise SnapshotError("a snapshot footer without a header")
                    footer = SnapshotFooterRecord.decode(r.value, FOOTER_VERSION)
                    if footer.version != FOOTER_VERSION:
                        raise SnapshotError(f"snapshot footer version {footer.version}")
                    state = "done"
                else:
                    raise SnapshotError(f"unexpected control record {kind} in a snapshot")
            try:
                for found in read_control_records(batch):
                    if found.voters is not None:
                        voters = found.voters
                    if found.kraft_version is not None:
                        kraft_version = found.kraft_version
            except VoterSetError as e:
                raise SnapshotError(str(e)) from None
    except (BatchError, ProtocolError) as e:
        raise SnapshotError(f"snapshot {snapshot_id}: {e}") from None
    except SnapshotError as e:
        raise SnapshotError(f"snapshot {snapshot_id}: {e}") from None
    if it.trailing_bytes:
        raise SnapshotError(f"snapshot {snapshot_id}: {it.trailing_bytes} bytes of a torn batch at the end")
    if state != "done":
        raise SnapshotError(f"snapshot {snapshot_id}: no footer")
    return SnapshotContents(snapshot_id, timestamp, tuple(values), len(buf), kraft_version, voters)


def _control_type(key: memoryview | None) -> int:
    if key is None or len(key) < CONTROL_KEY.size:
        raise SnapshotError("a control record without a control key")
    _version, kind = CONTROL_KEY.unpack_from(key, 0)
    return int(kind)


# --- the files ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Known:
    size_bytes: int
    last_contained_timestamp_ms: int


class SnapshotStore:
    """The snapshots in one directory. See the module docstring.

    Contract: every method goes through ``fs``; writes are durable when they return (file
    synced, directory synced). I/O errors (``OSError``) propagate. Single-threaded.
    """

    def __init__(self, fs: FileSystem, dir: str) -> None:
        self.fs = fs
        self.dir = dir
        self._known: dict[SnapshotId, _Known] = {}
        self.removed_invalid: list[tuple[SnapshotId, str]] = []  # what opening threw away, and why
        if not fs.exists(dir):
            return
        changed = False
        for name in fs.listdir(dir):
            parsed = parse_snapshot_name(name)
            if parsed is None:
                continue
            snapshot_id, suffix = parsed
            path = posixpath.join(dir, name)
            if suffix != SNAPSHOT_SUFFIX:
                fs.remove(path)  # a fetch or write cut short, or a deletion cut short
                changed = True
                continue
            try:
                contents = decode_snapshot(snapshot_id, _read_file(fs, path))
            except SnapshotError as e:
                self.removed_invalid.append((snapshot_id, str(e)))
                fs.remove(path)
                changed = True
                continue
            self._known[snapshot_id] = _Known(contents.size_bytes, contents.last_contained_timestamp_ms)
        if changed:
            fs.sync_dir(dir)

    # --- queries ------------------------------------------------------------------------------

    @property
    def ids(self) -> list[SnapshotId]:
        return sorted(self._known)

    @property
    def latest(self) -> SnapshotId | None:
        return max(self._known) if self._known else None

    @property
    def earliest(self) -> SnapshotId | None:
        return min(self._known) if self._known else None

    def __contains__(self, snapshot_id: object) -> bool:
        return snapshot_id in self._known

    def __len__(self) -> int:
        return len(self._known)

    def size_bytes(self, snapshot_id: SnapshotId) -> int:
        return self._known[snapshot_id].size_bytes

    def total_bytes(self) -> int:
        return sum(k.size_bytes for k in self._known.values())

    def last_contained_timestamp_ms(self, snapshot_id: SnapshotId) -> int:
        return self._known[snapshot_id].last_contained_timestamp_ms

    def path(self, snapshot_id: SnapshotId, suffix: str = SNAPSHOT_SUFFIX) -> str:
        return posixpath.join(self.dir, snapshot_id.file_name(suffix))

    # --- reading ------------------------------------------------------------------------------

    def read(self, snapshot_id: SnapshotId) -> SnapshotContents:
        """The whole snapshot, validated again (``SnapshotError`` if the file went bad)."""
        return decode_snapshot(snapshot_id, _read_file(self.fs, self.path(snapshot_id)))

    def read_chunk(self, snapshot_id: SnapshotId, position: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` raw bytes from ``position`` (FetchSnapshot: not batch-aligned)."""
        handle = self.fs.open(self.path(snapshot_id))
        try:
            return handle.read_at(position, max(0, min(max_bytes, self.size_bytes(snapshot_id) - position)))
        finally:
            handle.close()

    # --- writing ------------------------------------------------------------------------------

    def write(self, snapshot_id: SnapshotId, data: bytes) -> None:
        """Add a snapshot durably (``.part``, sync, rename, directory sync). The bytes must be
        a valid snapshot (``encode_snapshot``'s); an existing one of that id is kept as is."""
        if snapshot_id in self._known:
            return
        contents = decode_snapshot(snapshot_id, data)  # our own bytes: a failure is a bug, raised
        partial = self.begin_partial(snapshot_id)
        partial.append(data)
        partial.finish()
        assert self._known[snapshot_id].size_bytes == contents.size_bytes

    def begin_partial(self, snapshot_id: SnapshotId) -> PartialSnapshot:
        """An empty ``.part`` file to fill (a snapshot fetched from the leader, chunk by chunk)."""
        self.fs.makedirs(self.dir)
        path = self.path(snapshot_id, PARTIAL_SUFFIX)
        if self.fs.exists(path):
            self.fs.remove(path)
        return PartialSnapshot(self, snapshot_id, self.fs.open(path, create=True))

    def delete(self, snapshot_id: SnapshotId) -> None:
        if self._known.pop(snapshot_id, None) is not None:
            self.fs.remove(self.path(snapshot_id))
            self.fs.sync_dir(self.dir)

    def delete_before(self, snapshot_id: SnapshotId) -> list[SnapshotId]:
        """Remove every snapshot older than ``snapshot_id``; return their ids."""
        doomed = [s for s in self._known if s < snapshot_id]
        for s in doomed:
            del self._known[s]
            self.fs.remove(self.path(s))
        if doomed:
            self.fs.sync_dir(self.dir)
        return sorted(doomed)

    def _frozen(self, snapshot_id: SnapshotId, contents: SnapshotContents) -> None:
        self._known[snapshot_id] = _Known(contents.size_bytes, contents.last_contained_timestamp_ms)


class PartialSnapshot:
    """A snapshot being written into its ``.part`` file. ``finish`` validates it and makes it a
    snapshot of the store (durably); ``abort`` removes the file."""

    __slots__ = ("store", "snapshot_id", "_handle", "size_bytes", "_closed")

    def __init__(self, store: SnapshotStore, snapshot_id: SnapshotId, handle: FileHandle) -> None:
        self.store = store
        self.snapshot_id = snapshot_id
        self._handle = handle
        self.size_bytes = 0
        self._closed = False

    def append(self, data: bytes | bytearray | memoryview) -> None:
        assert not self._closed
        self._handle.append(data)
        self.size_bytes += len(data)

    def finish(self) -> SnapshotContents:
        """Sync, validate and rename into place; ``SnapshotError`` (the file removed) if the
        bytes are not a valid snapshot."""
        assert not self._closed
        store, fs = self.store, self.store.fs
        self._closed = True
        try:
            self._handle.sync()
            data = self._handle.read_at(0, self.size_bytes)
        finally:
            self._handle.close()
        partial = store.path(self.snapshot_id, PARTIAL_SUFFIX)
        try:
            contents = decode_snapshot(self.snapshot_id, data)
        except SnapshotError:
            fs.remove(partial)
            raise
        fs.rename(partial, store.path(self.snapshot_id))
        fs.sync_dir(store.dir)
        store._frozen(self.snapshot_id, contents)
        return contents

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handle.close()
        path = self.store.path(self.snapshot_id, PARTIAL_SUFFIX)
        if self.store.fs.exists(path):
            self.store.fs.remove(path)


def _read_file(fs: FileSystem, path: str) -> bytes:
    handle = fs.open(path)
    try:
        size = handle.size()
        parts = []
        position = 0
        while position < size:
            chunk = handle.read_at(position, min(SNAPSHOT_READ_CHUNK_BYTES, size - position))
            if not chunk:
                break
            parts.append(chunk)
            position += len(chunk)
        return b"".join(parts)
    finally:
        handle.close()


# --- when to take one --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotPolicyConfig:
    """Kafka's ``metadata.log.max.*`` snapshot triggers; defaults are Kafka's."""

    record_bytes_between_snapshots: int = 20 * 1024 * 1024
    snapshot_interval_ms: int = 3_600_000  # 0: no time trigger

    _KEYS: ClassVar[Mapping[str, str]] = {
        "metadata.log.max.record.bytes.between.snapshots": "record_bytes_between_snapshots",
        "metadata.log.max.snapshot.interval.ms": "snapshot_interval_ms",
    }

    def __post_init__(self) -> None:
        if self.record_bytes_between_snapshots < 1:
            raise ValueError("record_bytes_between_snapshots must be at least 1")
        if self.snapshot_interval_ms < 0:
            raise ValueError("snapshot_interval_ms must not be negative")

    @classmethod
    def from_properties(cls, values: Mapping[str, object]) -> SnapshotPolicyConfig:
        kwargs: dict[str, int] = {}
        for key, name in cls._KEYS.items():
            value = values.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                kwargs[name] = value
        return cls(**kwargs)


class SnapshotPolicy:
    """Counts what a state machine applied since its last snapshot and says when to take the next
    (Kafka's ``SnapshotGenerator``): ``committed(size)`` per batch applied, ``due(now_ms)``,
    ``taken(now_ms)`` once written (or loaded)."""

    __slots__ = ("config", "bytes_since", "last_ms")

    def __init__(self, config: SnapshotPolicyConfig, *, now_ms: int) -> None:
        self.config = config
        self.bytes_since = 0
        self.last_ms = now_ms

    def committed(self, size_bytes: int) -> None:
        self.bytes_since += size_bytes

    def due(self, now_ms: int) -> bool:
        if self.bytes_since <= 0:
            return False
        if self.bytes_since >= self.config.record_bytes_between_snapshots:
            return True
        interval = self.config.snapshot_interval_ms
        return interval > 0 and now_ms - self.last_ms >= interval

    def taken(self, now_ms: int) -> None:
        self.bytes_since = 0
        self.last_ms = now_ms


# --- the metadata image ------------------------------------------------------------------------------


def image_records(image: MetadataImage) -> list[bytes]:
    """The record values of a snapshot of ``image`` (``MetadataImage.snapshot_records`` encoded)."""
    return [encode_record(r) for r in image.snapshot_records()]


def image_from_records(values: Iterable[bytes], *, end_offset: int) -> MetadataImage:
    """The image a snapshot ending at ``end_offset`` with these record values holds.
    Raises ``ProtocolError`` for a malformed record and ``ReplayError`` for a contradictory one."""
    return MetadataImage.from_records([decode_record(v) for v in values], offset=end_offset - 1)


def image_from_snapshot(contents: SnapshotContents) -> MetadataImage:
    return image_from_records(contents.records, end_offset=contents.snapshot_id.end_offset)


def as_of_snapshot(image: MetadataImage, end_offset: int) -> MetadataImage:
    """``image`` as a node that loaded a snapshot ending at ``end_offset`` (and replayed the log
    after it, if ``image`` is later) has it: every registration offset below the end, and the
    image's offset if it is below the end, become ``end_offset - 1`` (see the module docstring)."""
    last = end_offset - 1
    brokers = {b: replace(r, registration_offset=last) if r.registration_offset <= last else r
               for b, r in image.brokers.items()}
    return replace(image, offset=max(image.offset, last), brokers=MappingProxyType(brokers))


__all__ = [
    "DELETED_SUFFIX",
    "PARTIAL_SUFFIX",
    "SNAPSHOT_SUFFIX",
    "PartialSnapshot",
    "SnapshotContents",
    "SnapshotError",
    "SnapshotId",
    "SnapshotPolicy",
    "SnapshotPolicyConfig",
    "SnapshotStore",
    "as_of_snapshot",
    "decode_snapshot",
    "encode_snapshot",
    "image_from_records",
    "image_from_snapshot",
    "image_records",
    "parse_snapshot_name",
]
