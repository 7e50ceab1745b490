"""File and directory names of a log directory, Kafka's exactly.

::

    <log.dir>/
        meta.properties
        recovery-point-offset-checkpoint
        replication-offset-checkpoint
        log-start-offset-checkpoint
        .kafka_cleanshutdown                 present only between a clean shutdown and the next open
        <topic>-<partition>/
            00000000000000000000.log         record batches, exactly as on the wire
            00000000000000000000.index       8-byte entries: relative offset, position
            00000000000000000000.timeindex   12-byte entries: timestamp, relative offset
            leader-epoch-checkpoint
            partition.metadata
        <topic>-<partition>.<id>-delete/     a deleted partition, removed in the background

A segment's name is its base offset in 20 digits. Suffixes ``.deleted`` (awaiting removal),
``.cleaned`` and ``.swap`` (compaction leftovers) and ``.tmp`` (checkpoint being written) may
follow a file name after a crash; loading a log deals with each.
"""

from __future__ import annotations

import re

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
TMP_SUFFIX = ".tmp"
DELETE_DIR_SUFFIX = "-delete"

OFFSET_DIGITS = 20

_PARTITION_DIR = re.compile(r"^(?P<topic>[a-zA-Z0-9._-]+)-(?P<partition>\d+)$")
_SEGMENT_FILE = re.compile(r"^(?P<base>\d{20})(?P<suffix>\.log|\.index|\.timeindex)$")


def segment_name(base_offset: int, suffix: str) -> str:
    """``00000000000000001234.log`` for base offset 1234 and suffix ``.log``."""
    return f"{base_offset:0{OFFSET_DIGITS}d}{suffix}"


def parse_segment_name(name: str) -> tuple[int, str] | None:
    """``(base_offset, suffix)`` for a live segment file name, None for anything else."""
    m = _SEGMENT_FILE.match(name)
    if m is None:
        return None
    return int(m.group("base")), m.group("suffix")


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """``(topic, partition)`` for a live partition directory name, None otherwise."""
    if name.endswith(DELETE_DIR_SUFFIX) or name.endswith("-future") or name.endswith("-stray"):
        return None
    m = _PARTITION_DIR.match(name)
    if m is None:
        return None
    return m.group("topic"), int(m.group("partition"))
