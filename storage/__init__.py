"""Trafka's storage engine: segmented partition logs on disk, Kafka's layout and formats.

A log directory holds one directory per partition; a partition's log is a list of segments, each
a ``.log`` file of record batches exactly as they travel on the wire plus two sparse indexes.
``LogManager`` opens a log directory (recovering it after a crash) and runs its chores;
``PartitionLog`` is the API of one partition for a leader and for a follower; ``GroupCommitter``
(in ``storage.group_commit``, the only module that imports trio) makes durable appends share
fsyncs. All file access goes through ``storage.fs.FileSystem``. See ``docs/storage.md``.
"""

from storage.config import LogConfig, LogDirConfig
from storage.fs import FileSystem, OsFileSystem, SimFileSystem
from storage.log import (
    AppendInfo,
    AppendRejected,
    FileSlice,
    PartitionLog,
    ReadResult,
    SyncPlan,
    TimestampOffset,
)
from storage.manager import LogManager

__all__ = [
    "AppendInfo",
    "AppendRejected",
    "FileSlice",
    "FileSystem",
    "LogConfig",
    "LogDirConfig",
    "LogManager",
    "OsFileSystem",
    "PartitionLog",
    "ReadResult",
    "SimFileSystem",
    "SyncPlan",
    "TimestampOffset",
]
