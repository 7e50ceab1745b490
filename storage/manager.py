"""The log manager: every partition log of one log directory, its checkpoints and chores.

What it owns: the directory's ``meta.properties``, its three offset checkpoints
(``recovery-point-offset-checkpoint``, ``replication-offset-checkpoint``,
``log-start-offset-checkpoint``), the clean-shutdown marker, the shared ``FileCache`` (one budget
of open files for all partitions) and a ``PartitionLog`` per ``<topic>-<partition>`` directory.

Opening: if ``.kafka_cleanshutdown`` exists the previous run shut down cleanly and logs are
opened without recovery; the marker is removed (durably) before anything is written, so a crash
from then on is detected. Otherwise each log is recovered from its checkpointed recovery point.
The marker is Kafka's JSON, ``{"version":0,"brokerEpoch":N}``: the broker epoch the previous run
had when it closed (-1 if it had none), which a cluster node offers its controller as KIP-966's
PreviousBrokerEpoch (``clean_shutdown_broker_epoch``; -1 after a crash or an unreadable marker).
Directories named ``*-delete`` (deleted partitions) are removed.

Chores (``tick``), each on its own Kafka period: retention every
``log.retention.check.interval.ms``; a flush of logs whose ``flush.ms`` expired or whose rolled
segments are not yet flushed; the recovery-point and high-watermark checkpoints every
``log.flush.offset.checkpoint.interval.ms``, the log-start checkpoint every
``log.flush.start.offset.checkpoint.interval.ms``; removal of ``.deleted`` files whose delay
passed. ``tick`` does its fsyncs inline; the trio adapter (``storage.group_commit``) moves them to
a worker thread. Closing flushes everything, writes the checkpoints and then the marker.

Single-threaded; ``now_ms`` comes from the caller.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Callable, Iterator

from storage.checkpoint import (
    CLEAN_SHUTDOWN_MARKER,
    LOG_START_OFFSET_CHECKPOINT,
    META_PROPERTIES,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    CheckpointError,
    read_offsets,
    read_properties,
    topic_id_to_str,
    write_offsets,
    write_partition_metadata,
    write_properties,
)
from storage.config import LogConfig, LogDirConfig
from storage.files import FileCache
from storage.fs import FileSystem, read_whole, write_atomically
from storage.layout import DELETE_DIR_SUFFIX, parse_partition_dir, partition_dir_name
from storage.log import PartitionLog, SyncPlan

TopicPartition = tuple[str, int]


class LogManager:
    """See the module docstring. Build with ``LogManager.open``."""

    def __init__(
        self,
        fs: FileSystem,
        log_dir: str,
        *,
        default_config: LogConfig,
        dir_config: LogDirConfig,
        topic_config: Callable[[str], LogConfig] | None = None,
    ) -> None:
        self.fs = fs
        self.log_dir = log_dir
        self.default_config = default_config
        self.dir_config = dir_config
        self.topic_config = topic_config or (lambda _topic: default_config)
        self.cache = FileCache(fs, open_files_max=dir_config.open_segments_max)
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self.had_clean_shutdown = False
        self.clean_shutdown_broker_epoch = -1  # the marker's broker epoch (-1: none, or not clean)
        self._deleted_dirs: list[tuple[int, str]] = []
        self._delete_seq = 0
        self._last_retention_ms = 0
        self._last_checkpoint_ms = 0
        self._last_start_checkpoint_ms = 0
        self._last_scheduled_flush_ms = 0

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        log_dir: str,
        *,
        now_ms: int,
        default_config: LogConfig | None = None,
        dir_config: LogDirConfig | None = None,
        topic_config: Callable[[str], LogConfig] | None = None,
    ) -> LogManager:
        mgr = cls(
            fs,
            log_dir,
            default_config=default_config or LogConfig(),
            dir_config=dir_config or LogDirConfig(),
            topic_config=topic_config,
        )
        fs.makedirs(log_dir)
        marker = posixpath.join(log_dir, CLEAN_SHUTDOWN_MARKER)
        clean = fs.exists(marker)
        if clean:
            mgr.clean_shutdown_broker_epoch = _marker_broker_epoch(fs, marker)
            fs.remove(marker)
            fs.sync_dir(log_dir)
        try:
            recovery_points = read_offsets(fs, mgr._path(RECOVERY_POINT_CHECKPOINT))
        except CheckpointError:
            recovery_points, clean = {}, False
        try:
            high_watermarks = read_offsets(fs, mgr._path(REPLICATION_OFFSET_CHECKPOINT))
        except CheckpointError:
            high_watermarks = {}
        try:
            start_offsets = read_offsets(fs, mgr._path(LOG_START_OFFSET_CHECKPOINT))
        except CheckpointError:
            start_offsets = {}
        mgr.had_clean_shutdown = clean
        if not clean:
            mgr.clean_shutdown_broker_epoch = -1
        for name in fs.listdir(log_dir):
            path = posixpath.join(log_dir, name)
            if not fs.is_dir(path):
                continue
            if name.endswith(DELETE_DIR_SUFFIX):
                mgr._remove_dir(path)
                continue
            tp = parse_partition_dir(name)
            if tp is None:
                continue
            mgr.logs[tp] = PartitionLog.load(
                mgr.cache,
                path,
                tp[0],
                tp[1],
                mgr.topic_config(tp[0]),
                now_ms=now_ms,
                clean_shutdown=clean,
                recovery_point=recovery_points.get(tp, 0),
                log_start_offset=start_offsets.get(tp, 0),
                high_watermark=high_watermarks.get(tp, 0),
            )
        mgr._last_retention_ms = mgr._last_checkpoint_ms = mgr._last_start_checkpoint_ms = now_ms
        mgr._last_scheduled_flush_ms = now_ms
        if not clean and mgr.logs:
            mgr.write_checkpoints()
        return mgr

    def _path(self, name: str) -> str:
        return posixpath.join(self.log_dir, name)

    # --- meta.properties ----------------------------------------------------------------------

    def ensure_meta_properties(
        self, *, cluster_id: str, node_id: int, directory_id: uuid.UUID
    ) -> dict[str, str]:
        """Write ``meta.properties`` (KRaft, version 1) unless present; return its properties.

        Raises ``ValueError`` if an existing file names another cluster or node.
        """
        path = self._path(META_PROPERTIES)
        if self.fs.exists(path):
            props = read_properties(self.fs, path)
            if props.get("cluster.id") != cluster_id or props.get("node.id") != str(node_id):
                raise ValueError(
                    f"{path} belongs to cluster {props.get('cluster.id')} node {props.get('node.id')}"
                )
            return props
        props = {
            "version": "1",
            "cluster.id": cluster_id,
            "node.id": str(node_id),
            "directory.id": topic_id_to_str(directory_id),
        }
        write_properties(self.fs, path, props)
        return props

    # --- partitions ---------------------------------------------------------------------------

    def get_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def get_or_create_log(
        self,
        topic: str,
        partition: int,
        *,
        now_ms: int,
        config: LogConfig | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> PartitionLog:
        tp = (topic, partition)
        log = self.logs.get(tp)
        if log is None:
            path = self._path(partition_dir_name(topic, partition))
            log = PartitionLog.load(
                self.cache,
                path,
                topic,
                partition,
                config or self.topic_config(topic),
                now_ms=now_ms,
                clean_shutdown=True,
            )
            self.logs[tp] = log
        if topic_id is not None and log.topic_id != topic_id:
            write_partition_metadata(self.fs, posixpath.join(log.dir, "partition.metadata"), topic_id)
            log.topic_id = topic_id  # type: ignore[assignment]
        return log

    def delete_log(self, topic: str, partition: int, *, now_ms: int) -> bool:
        """Rename the partition's directory ``*-delete`` and remove it after ``file.delete.delay.ms``."""
        log = self.logs.pop((topic, partition), None)
        if log is None:
            return False
        log.close(now_ms=now_ms, flush=False)
        self._delete_seq += 1
        target = f"{log.dir}.{now_ms:x}{self._delete_seq:04x}{DELETE_DIR_SUFFIX}"
        self.fs.rename(log.dir, target)
        self.fs.sync_dir(self.log_dir)
        self._deleted_dirs.append((now_ms + log.config.file_delete_delay_ms, target))
        return True

    def _remove_dir(self, path: str) -> None:
        for name in self.fs.listdir(path):
            self.fs.remove(posixpath.join(path, name))
        self.fs.rmdir(path)

    # --- checkpoints --------------------------------------------------------------------------

    def checkpoint_writer(self, *, start_offsets: bool = True) -> Callable[[], None]:
        """Snapshot the offsets now; the returned callable writes them (on any thread)."""
        fs = self.fs
        rp = {tp: log.recovery_point for tp, log in self.logs.items()}
        hw = {tp: log.high_watermark for tp, log in self.logs.items()}
        lso = {tp: log.log_start_offset for tp, log in self.logs.items()} if start_offsets else None

        def write() -> None:
            write_offsets(fs, self._path(RECOVERY_POINT_CHECKPOINT), rp)
            write_offsets(fs, self._path(REPLICATION_OFFSET_CHECKPOINT), hw)
            if lso is not None:
                write_offsets(fs, self._path(LOG_START_OFFSET_CHECKPOINT), lso)

        return write

    def write_checkpoints(self) -> None:
        self.checkpoint_writer()()

    # --- chores -------------------------------------------------------------------------------

    def retention_due(self, now_ms: int) -> bool:
        return now_ms - self._last_retention_ms >= self.dir_config.retention_check_interval_ms

    def apply_retention(self, *, now_ms: int) -> int:
        """Delete expired segments of every log now; how many were scheduled for removal."""
        self._last_retention_ms = now_ms
        return sum(log.delete_expired_segments(now_ms=now_ms) for log in self.logs.values())

    def flush_plans(self, *, now_ms: int) -> list[SyncPlan]:
        """Full-flush plans for logs whose ``flush.ms`` passed, that have unflushed rolled
        segments, or all dirty logs when ``log.flush.scheduler.interval.ms`` passed."""
        scheduled = now_ms - self._last_scheduled_flush_ms >= self.dir_config.flush_scheduler_interval_ms
        if scheduled:
            self._last_scheduled_flush_ms = now_ms
        plans = []
        for log in self.logs.values():
            if log._syncing:
                continue
            rolled = log.recovery_point < log.active_segment.base_offset
            if rolled or log.flush_due(now_ms=now_ms) or (scheduled and log.needs_sync()):
                plans.append(log.begin_sync(full=True))
        return plans

    def remove_deleted(self, *, now_ms: int) -> int:
        removed = sum(log.remove_deleted_files(now_ms=now_ms) for log in self.logs.values())
        keep = []
        for due, path in self._deleted_dirs:
            if due <= now_ms:
                if self.fs.exists(path):
                    self._remove_dir(path)
                removed += 1
            else:
                keep.append((due, path))
        self._deleted_dirs = keep
        return removed

    def checkpoint_due(self, now_ms: int) -> tuple[bool, bool]:
        return (
            now_ms - self._last_checkpoint_ms >= self.dir_config.flush_offset_checkpoint_interval_ms,
            now_ms - self._last_start_checkpoint_ms
            >= self.dir_config.flush_start_offset_checkpoint_interval_ms,
        )

    def tick(self, *, now_ms: int) -> None:
        """Run every chore that is due, inline (fsyncs included)."""
        if self.retention_due(now_ms):
            self.apply_retention(now_ms=now_ms)
        for plan in self.flush_plans(now_ms=now_ms):
            log = plan.log
            try:
                plan.execute()
            except BaseException:
                log.abort_sync(plan)
                raise
            log.end_sync(plan, now_ms=now_ms)
        self.remove_deleted(now_ms=now_ms)
        offsets_due, starts_due = self.checkpoint_due(now_ms)
        if offsets_due or starts_due:
            self.checkpoint_writer(start_offsets=starts_due)()
            self.mark_checkpointed(now_ms, starts=starts_due)

    def mark_checkpointed(self, now_ms: int, *, starts: bool) -> None:
        self._last_checkpoint_ms = now_ms
        if starts:
            self._last_start_checkpoint_ms = now_ms

    def iter_logs(self) -> Iterator[PartitionLog]:
        return iter(list(self.logs.values()))

    # --- shutdown -----------------------------------------------------------------------------

    def close(self, *, now_ms: int, broker_epoch: int = -1) -> None:
        """Clean shutdown: flush every log, write checkpoints, close files, write the marker with
        ``broker_epoch`` (the epoch this run registered with; -1 for none)."""
        for log in self.logs.values():
            log.close(now_ms=now_ms)
        self.write_checkpoints()
        write_atomically(
            self.fs, self._path(CLEAN_SHUTDOWN_MARKER),
            json.dumps({"version": 0, "brokerEpoch": broker_epoch}).encode(),
        )


def _marker_broker_epoch(fs: FileSystem, path: str) -> int:
    """The broker epoch in a clean-shutdown marker; -1 if it has none or cannot be read (Kafka's
    CleanShutdownFileHandler reads an old empty marker, or a broken one, the same way)."""
    try:
        content = json.loads(read_whole(fs, path) or b"{}")
        epoch = content.get("brokerEpoch", -1) if isinstance(content, dict) else -1
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else -1
    except (OSError, ValueError):
        return -1
