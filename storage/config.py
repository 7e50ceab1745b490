"""Per-log and per-log-directory configuration, with Kafka's names and defaults.

``LogConfig`` carries the topic-level settings a partition log obeys (``segment.bytes``,
``flush.messages``, ``retention.ms``, ...). Its defaults are Kafka's broker defaults; build one
from topic properties with ``LogConfig.from_properties`` or from broker properties (the
``log.*`` names) with ``LogConfig.from_broker_properties``; ``with_overrides`` layers a topic's
overrides on a broker-wide config. ``LogDirConfig`` carries the broker-wide periods of the log
manager's background work. Both are frozen: a change of config is a new object.

Contract: values are validated (``ValueError`` for a bad one), unknown property names are ignored
(other subsystems own them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

LONG_MAX = (1 << 63) - 1

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

TIMESTAMP_CREATE_TIME = "CreateTime"
TIMESTAMP_LOG_APPEND_TIME = "LogAppendTime"

# Topic property name -> field name.
_TOPIC_NAMES: dict[str, str] = {
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "segment.jitter.ms": "segment_jitter_ms",
    "segment.index.bytes": "segment_index_bytes",
    "index.interval.bytes": "index_interval_bytes",
    "flush.messages": "flush_messages",
    "flush.ms": "flush_ms",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "max.message.bytes": "max_message_bytes",
    "message.timestamp.type": "message_timestamp_type",
    "file.delete.delay.ms": "file_delete_delay_ms",
}

# Broker property name -> field name (the defaults a topic inherits).
_BROKER_NAMES: dict[str, str] = {
    "log.segment.bytes": "segment_bytes",
    "log.roll.ms": "segment_ms",
    "log.roll.jitter.ms": "segment_jitter_ms",
    "log.index.size.max.bytes": "segment_index_bytes",
    "log.index.interval.bytes": "index_interval_bytes",
    "log.flush.interval.messages": "flush_messages",
    "log.flush.interval.ms": "flush_ms",
    "log.retention.ms": "retention_ms",
    "log.retention.bytes": "retention_bytes",
    "message.max.bytes": "max_message_bytes",
    "log.message.timestamp.type": "message_timestamp_type",
    "log.segment.delete.delay.ms": "file_delete_delay_ms",
}

# Kafka's coarser broker spellings, coarsest first: a finer spelling, applied later, wins.
_BROKER_COARSE: dict[str, tuple[str, int]] = {
    "log.roll.hours": ("segment_ms", HOUR_MS),
    "log.roll.jitter.hours": ("segment_jitter_ms", HOUR_MS),
    "log.retention.hours": ("retention_ms", HOUR_MS),
    "log.retention.minutes": ("retention_ms", 60_000),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """What one partition log obeys. Defaults are Kafka's."""

    segment_bytes: int = GIB
    segment_ms: int = 7 * DAY_MS
    segment_jitter_ms: int = 0
    segment_index_bytes: int = 10 * MIB
    index_interval_bytes: int = 4096
    # Kafka's defaults are Long.MAX_VALUE: never fsync on the append path, leave it to the OS.
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    max_message_bytes: int = 1_048_588
    message_timestamp_type: str = TIMESTAMP_CREATE_TIME
    file_delete_delay_ms: int = 60_000

    def __post_init__(self) -> None:
        # Kafka's minimum segment size is 14 bytes (one empty legacy message); ours is one batch header.
        if self.segment_bytes < 14:
            raise ValueError(f"segment.bytes must be at least 14, got {self.segment_bytes}")
        if self.segment_ms < 1:
            raise ValueError(f"segment.ms must be at least 1, got {self.segment_ms}")
        if self.segment_jitter_ms < 0:
            raise ValueError("segment.jitter.ms must not be negative")
        if self.segment_index_bytes < 8:
            raise ValueError(f"segment.index.bytes must be at least 8, got {self.segment_index_bytes}")
        if self.index_interval_bytes < 0:
            raise ValueError("index.interval.bytes must not be negative")
        if self.flush_messages < 1:
            raise ValueError("flush.messages must be at least 1")
        if self.flush_ms < 0:
            raise ValueError("flush.ms must not be negative")
        if self.retention_ms < -1:
            raise ValueError("retention.ms must be -1 (unlimited) or more")
        if self.max_message_bytes < 0:
            raise ValueError("max.message.bytes must not be negative")
        if self.message_timestamp_type not in (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME):
            raise ValueError(
                f"message.timestamp.type must be CreateTime or LogAppendTime, got {self.message_timestamp_type!r}"
            )
        if self.file_delete_delay_ms < 0:
            raise ValueError("file.delete.delay.ms must not be negative")

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == TIMESTAMP_LOG_APPEND_TIME

    @property
    def durable_appends(self) -> bool:
        """True when every append must be fsynced before it is acknowledged (``flush.messages=1``)."""
        return self.flush_messages == 1

    @classmethod
    def from_properties(cls, props: Mapping[str, str | int], base: LogConfig | None = None) -> LogConfig:
        """A config from topic property names (``segment.bytes``...) on top of ``base``."""
        return (base or cls()).with_overrides(props)

    @classmethod
    def from_broker_properties(cls, props: Mapping[str, str | int]) -> LogConfig:
        """The broker-wide defaults from ``log.*`` property names."""
        values: dict[str, object] = {}
        for name, (fld, unit_ms) in _BROKER_COARSE.items():
            if name in props:
                values[fld] = int(props[name]) * unit_ms
        for name, fld in _BROKER_NAMES.items():
            if name in props:
                values[fld] = _convert(fld, props[name])
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, props: Mapping[str, str | int]) -> LogConfig:
        """This config with topic-level property overrides applied."""
        values = {fld: _convert(fld, props[name]) for name, fld in _TOPIC_NAMES.items() if name in props}
        return dataclasses.replace(self, **values)  # type: ignore[arg-type]


def _convert(fld: str, value: str | int) -> int | str:
    if fld == "message_timestamp_type":
        return str(value)
    return int(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogDirConfig:
    """Broker-wide periods of the log manager's background work. Defaults are Kafka's."""

    retention_check_interval_ms: int = 300_000  # log.retention.check.interval.ms
    flush_scheduler_interval_ms: int = LONG_MAX  # log.flush.scheduler.interval.ms
    flush_offset_checkpoint_interval_ms: int = 60_000  # log.flush.offset.checkpoint.interval.ms
    flush_start_offset_checkpoint_interval_ms: int = 60_000  # log.flush.start.offset.checkpoint.interval.ms
    # Not a Kafka setting: how many segment files may be open at once across all logs of a directory.
    open_segments_max: int = 1024

    @classmethod
    def from_broker_properties(cls, props: Mapping[str, str | int]) -> LogDirConfig:
        names = {
            "log.retention.check.interval.ms": "retention_check_interval_ms",
            "log.flush.scheduler.interval.ms": "flush_scheduler_interval_ms",
            "log.flush.offset.checkpoint.interval.ms": "flush_offset_checkpoint_interval_ms",
            "log.flush.start.offset.checkpoint.interval.ms": "flush_start_offset_checkpoint_interval_ms",
        }
        return cls(**{fld: int(props[name]) for name, fld in names.items() if name in props})
