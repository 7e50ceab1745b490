"""The quorum-state file: what a Raft voter must remember across a crash.

What it owns: one small JSON file in the metadata log's directory (Kafka's ``quorum-state``,
``data_version`` 1) holding the current epoch, the leader of that epoch when one is known, and
the candidate this node voted for in it::

    {"leaderId": 2, "leaderEpoch": 7, "votedId": 2, "votedDirectoryId": "...", "data_version": 1}

Contract. ``write`` replaces the file atomically (``storage.fs.write_atomically``: temp file,
fsync, rename, fsync of the directory) and returns once the new content is durable, so a node that
writes before it answers never grants two votes in one epoch, nor goes back to an older epoch,
after a crash. ``read`` returns None when there is no file (a freshly formatted node, or one whose
disk was lost) and raises ``QuorumStateError`` for content it cannot trust: the Raft node must not
guess its epoch. All access goes through the ``storage.fs.FileSystem`` interface; nothing here
reads a clock or performs I/O of its own.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from storage.fs import FileSystem, read_whole, write_atomically

QUORUM_STATE_FILE = "quorum-state"
DATA_VERSION = 1
NO_NODE = -1


class QuorumStateError(ValueError):
    """The quorum-state file exists but does not hold a state this node can trust."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectionState:
    """The durable part of a Raft node's state: an epoch, its leader and this node's vote."""

    epoch: int
    leader_id: int = NO_NODE
    voted_id: int = NO_NODE
    voted_directory_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        assert self.epoch >= 0, self
        assert self.voted_id >= NO_NODE and self.leader_id >= NO_NODE, self

    def to_json(self) -> bytes:
        doc: dict[str, object] = {
            "leaderId": self.leader_id,
            "leaderEpoch": self.epoch,
            "votedId": self.voted_id,
        }
        if self.voted_directory_id is not None:
            doc["votedDirectoryId"] = str(self.voted_directory_id)
        doc["data_version"] = DATA_VERSION
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, *, path: str = QUORUM_STATE_FILE) -> ElectionState:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise QuorumStateError(f"{path}: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise QuorumStateError(f"{path}: expected a JSON object")
        version = doc.get("data_version")
        if version not in (0, DATA_VERSION):
            raise QuorumStateError(f"{path}: unknown data_version {version!r}")

        def integer(name: str) -> int:
            value = doc.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise QuorumStateError(f"{path}: {name} is {value!r}, not an integer")
            return value

        epoch, leader, voted = integer("leaderEpoch"), integer("leaderId"), integer("votedId")
        if epoch < 0 or leader < NO_NODE or voted < NO_NODE:
            raise QuorumStateError(f"{path}: negative epoch or node id in {doc}")
        voted_dir: uuid.UUID | None = None
        raw = doc.get("votedDirectoryId")
        if raw is not None:
            try:
                voted_dir = uuid.UUID(str(raw))
            except ValueError:
                raise QuorumStateError(f"{path}: votedDirectoryId {raw!r} is not a UUID") from None
        return cls(epoch=epoch, leader_id=leader, voted_id=voted, voted_directory_id=voted_dir)


class QuorumStateStore:
    """Reads and atomically rewrites one quorum-state file. Single-threaded."""

    __slots__ = ("fs", "path", "writes")

    def __init__(self, fs: FileSystem, path: str) -> None:
        self.fs = fs
        self.path = path
        self.writes = 0  # how many durable writes were made (tests count them)

    def read(self) -> ElectionState | None:
        if not self.fs.exists(self.path):
            return None
        return ElectionState.from_json(read_whole(self.fs, self.path), path=self.path)

    def write(self, state: ElectionState) -> None:
        """Durably replace the file with ``state``; returns once it would survive a crash."""
        write_atomically(self.fs, self.path, state.to_json())
        self.writes += 1
