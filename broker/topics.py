"""The topic catalogue of a single-node broker: names, ids, partition counts, config overrides.

What it owns: the set of topics and their metadata, persisted as one JSON document
(``trafka-topics.json`` in the log directory) written temp, fsync, rename, fsync directory through
the storage file system, so topic ids and config overrides survive restarts. Partition data lives
in the log manager; this module never touches it.

The replication issue replaces this file with the KRaft metadata log; the interface (create,
delete, alter, look up by name or id) stays.

Topics being created: a creation that makes its partitions in steps, serving requests in between
(``Broker.create_topic_in_steps``), first ``reserve``s the name and a fresh id, then ``commit``s
the topic once its partitions are durable, or ``release``s it. A reserved topic is invisible
(``get``, ``by_id`` and iteration skip it) and is not in the file, but its name is taken:
``collides`` reports it and ``create`` refuses it. A topic created that way is in the file only
once it is whole.

Also here: Kafka's rules for legal topic names (at most 249 characters of ``[a-zA-Z0-9._-]``, not
``.`` or ``..``) and for names that collide once ``.`` and ``_`` are treated alike.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

# Kafka's topic-name rules live with the metadata image (the controller applies them too).
from replication.metadata import (
    RESOURCE_TOPIC,
    MetadataImage,
    collision_key,
)
from storage.fs import FileSystem, read_whole, write_atomically

TOPICS_FILE = "trafka-topics.json"
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


@dataclass(slots=True)
class Topic:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def is_internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


class TopicStore:
    """See the module docstring. All methods run on the broker's one thread."""

    def __init__(self, fs: FileSystem, log_dir: str, *, new_uuid: Callable[[], uuid.UUID]) -> None:
        self.fs = fs
        self.path = posixpath.join(log_dir, TOPICS_FILE)
        self._new_uuid = new_uuid
        self._by_name: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self._reserved: dict[str, Topic] = {}  # being created: named nowhere else yet

    def load(self) -> None:
        if not self.fs.exists(self.path):
            return
        doc = json.loads(read_whole(self.fs, self.path))
        for t in doc["topics"]:
            self._add(Topic(t["name"], uuid.UUID(t["id"]), int(t["partitions"]), dict(t["configs"])))

    def _save(self) -> None:
        doc = {"version": 1, "topics": [
            {"name": t.name, "id": str(t.topic_id), "partitions": t.partitions, "configs": t.configs}
            for t in sorted(self._by_name.values(), key=lambda t: t.name)
        ]}
        write_atomically(self.fs, self.path, json.dumps(doc, indent=1).encode())

    def _add(self, topic: Topic) -> None:
        self._by_name[topic.name] = topic
        self._by_id[topic.topic_id] = topic

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Topic | None:
        return self._by_name.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def is_reserved(self, name: str) -> bool:
        """True while a topic of that name is being created."""
        return name in self._reserved

    def collides(self, name: str) -> str | None:
        """The existing topic whose name collides with ``name`` ('.' vs '_'), if any; or a topic
        being created under that name or a colliding one (its name is taken, it is not yet there)."""
        if name in self._reserved:
            return name
        key = collision_key(name)
        for other in (*self._by_name, *self._reserved):
            if other != name and collision_key(other) == key:
                return other
        return None

    def _new_topic(self, name: str, partitions: int, configs: Mapping[str, str]) -> Topic:
        if name in self._by_name or name in self._reserved:
            raise ValueError(f"topic {name} exists or is being created")
        ids = {t.topic_id for t in self._reserved.values()}
        topic_id = self._new_uuid()
        while topic_id in self._by_id or topic_id in ids or topic_id.int == 0:
            topic_id = self._new_uuid()
        return Topic(name, topic_id, partitions, dict(configs))

    def create(self, name: str, partitions: int, configs: Mapping[str, str]) -> Topic:
        """Add a topic and persist the catalogue at once. Raises ``ValueError`` if the name is
        taken, by a topic or by one being created."""
        topic = self._new_topic(name, partitions, configs)
        self._add(topic)
        self._save()
        return topic

    def reserve(self, name: str, partitions: int, configs: Mapping[str, str]) -> Topic:
        """Take the name and an id for a topic whose partitions are about to be made; the topic
        stays invisible until ``commit``. Raises ``ValueError`` if the name is taken."""
        topic = self._new_topic(name, partitions, configs)
        self._reserved[name] = topic
        return topic

    def commit(self, topic: Topic) -> None:
        """Make a reserved topic a topic: add it and persist the catalogue. If the write fails the
        topic stays reserved and the error propagates (the caller then ``release``s it)."""
        assert self._reserved.get(topic.name) is topic, topic.name
        self._add(topic)
        try:
            self._save()
        except BaseException:
            del self._by_name[topic.name]
            del self._by_id[topic.topic_id]
            raise
        del self._reserved[topic.name]

    def release(self, name: str) -> None:
        """Give up a reservation (the creation failed or was cancelled); no-op if there is none."""
        self._reserved.pop(name, None)

    def delete(self, name: str) -> Topic:
        topic = self._by_name.pop(name)
        del self._by_id[topic.topic_id]
        self._save()
        return topic

    def set_configs(self, name: str, configs: Mapping[str, str]) -> None:
        self._by_name[name].configs = dict(configs)
        self._save()

    def set_partitions(self, name: str, partitions: int) -> None:
        self._by_name[name].partitions = partitions
        self._save()

    def sync_from_image(self, image: MetadataImage) -> None:
        """Cluster mode: the catalogue becomes the metadata image's topics (names, ids, partition
        counts, config overrides). Nothing is written: the metadata log is the record."""
        by_name: dict[str, Topic] = {}
        for t in image.topics_by_id.values():
            configs = dict(image.configs.get((RESOURCE_TOPIC, t.name), {}))
            old = self._by_name.get(t.name)
            if old is not None and old.topic_id == t.topic_id and old.partitions == t.partition_count \
                    and old.configs == configs:
                by_name[t.name] = old
            else:
                by_name[t.name] = Topic(t.name, t.topic_id, t.partition_count, configs)
        self._by_name = by_name
        self._by_id = {t.topic_id: t for t in by_name.values()}
