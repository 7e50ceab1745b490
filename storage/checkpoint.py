"""Kafka's small text files: offset checkpoints, partition metadata, meta.properties.

Formats (all UTF-8, ``\\n`` line ends), identical to Kafka's so a data directory can be read by
either:

* offset checkpoints (``recovery-point-offset-checkpoint``, ``replication-offset-checkpoint``,
  ``log-start-offset-checkpoint``)::

      0                      <- version
      2                      <- number of entries
      orders 0 1234          <- topic partition offset
      orders 1 99

* ``leader-epoch-checkpoint``: the same header, then ``<epoch> <start offset>`` lines;
* ``partition.metadata``: ``version: 0`` and ``topic_id: <Kafka's base64 form of the UUID>``;
* ``meta.properties``: Java properties (``key=value`` lines, ``#`` comments).

Every write goes through ``write_atomically`` (temp file, fsync, rename, fsync of the directory),
so a crash leaves the old or the new file, never a mix. Readers raise ``CheckpointError`` (a
``ValueError``) for a file that does not parse; callers decide whether that is fatal.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping

from storage.fs import FileSystem, read_whole, write_atomically

CHECKPOINT_VERSION = 0

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT = "replication-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
PARTITION_METADATA = "partition.metadata"
META_PROPERTIES = "meta.properties"
CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"


class CheckpointError(ValueError):
    """A checkpoint or metadata file exists but does not parse."""


def _format(lines: list[str]) -> bytes:
    return ("\n".join([str(CHECKPOINT_VERSION), str(len(lines)), *lines]) + "\n").encode()


def _parse(data: bytes, path: str, fields: int) -> list[list[str]]:
    try:
        lines = data.decode().split("\n")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8") from e
    if len(lines) < 2:
        raise CheckpointError(f"{path}: too short")
    try:
        version, count = int(lines[0]), int(lines[1])
    except ValueError as e:
        raise CheckpointError(f"{path}: bad header") from e
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: unknown version {version}")
    body = [line.split() for line in lines[2:] if line.strip()]
    if len(body) != count or any(len(parts) != fields for parts in body):
        raise CheckpointError(f"{path}: expected {count} lines of {fields} fields")
    return body


def write_offsets(fs: FileSystem, path: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """Write an offset checkpoint: one ``topic partition offset`` line per partition."""
    lines = [f"{topic} {partition} {offset}" for (topic, partition), offset in sorted(offsets.items())]
    write_atomically(fs, path, _format(lines))


def read_offsets(fs: FileSystem, path: str) -> dict[tuple[str, int], int]:
    """Read an offset checkpoint; an absent file is empty."""
    if not fs.exists(path):
        return {}
    out: dict[tuple[str, int], int] = {}
    for topic, partition, offset in _parse(read_whole(fs, path), path, 3):
        try:
            out[(topic, int(partition))] = int(offset)
        except ValueError as e:
            raise CheckpointError(f"{path}: bad number") from e
    return out


def write_epochs(fs: FileSystem, path: str, entries: Iterable[tuple[int, int]]) -> None:
    """Write a leader-epoch checkpoint from ``(epoch, start_offset)`` pairs."""
    write_atomically(fs, path, _format([f"{epoch} {start}" for epoch, start in entries]))


def read_epochs(fs: FileSystem, path: str) -> list[tuple[int, int]]:
    """Read a leader-epoch checkpoint; an absent file is empty."""
    if not fs.exists(path):
        return []
    try:
        return [(int(e), int(s)) for e, s in _parse(read_whole(fs, path), path, 2)]
    except ValueError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: bad number") from e


def topic_id_to_str(topic_id: uuid.UUID) -> str:
    """Kafka's textual topic id: URL-safe base64 of the 16 bytes, without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


def topic_id_from_str(text: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return uuid.UUID(bytes=raw)
    except ValueError as e:
        raise CheckpointError(f"bad topic id {text!r}") from e


def write_partition_metadata(fs: FileSystem, path: str, topic_id: uuid.UUID) -> None:
    write_atomically(fs, path, f"version: 0\ntopic_id: {topic_id_to_str(topic_id)}\n".encode())


def read_partition_metadata(fs: FileSystem, path: str) -> uuid.UUID | None:
    """The topic id in ``partition.metadata``, or None when the file is absent."""
    if not fs.exists(path):
        return None
    fields = dict(
        line.split(":", 1)
        for line in read_whole(fs, path).decode(errors="replace").splitlines()
        if ":" in line
    )
    if fields.get("version", "").strip() != "0" or "topic_id" not in fields:
        raise CheckpointError(f"{path}: not a version 0 partition metadata file")
    return topic_id_from_str(fields["topic_id"].strip())


def write_properties(fs: FileSystem, path: str, props: Mapping[str, str]) -> None:
    """Write Java-style properties (as ``meta.properties`` is), sorted by key."""
    body = "".join(f"{k}={v}\n" for k, v in sorted(props.items()))
    write_atomically(fs, path, ("#\n#Written by Trafka\n" + body).encode())


def read_properties(fs: FileSystem, path: str) -> dict[str, str]:
    """Read Java-style properties: ``key=value`` lines, ``#``/``!`` comments and blank lines skipped."""
    out: dict[str, str] = {}
    for raw in read_whole(fs, path).decode(errors="replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out
