"""Incremental fetch sessions (KIP-227): which partitions a Fetch reads and which it answers.

A fetcher that asks for thousands of partitions would otherwise send and receive all of them on
every Fetch. With a session the broker remembers the partition set and each partition's last
reported state, so a request only lists what changed and a response only carries partitions with
something new. This module owns that memory and nothing else: it never reads a log, never looks
at a clock and never draws a random number. The fetch handler does the reads; time (``now_ms``)
and session ids (``new_session_id``) are passed in. Single-threaded (the trio thread).

Use, per Fetch request::

    ctx = cache.new_context(request, version=v, now_ms=now)
    results = [read(p) if p.topic is not None
               else error_partition_data(p.partition, ErrorCode.UNKNOWN_TOPIC_ID)
               for p in ctx.partitions]          # one PartitionData per entry, same order
    response = ctx.build_response(results, now_ms=now)

Request metadata, as the client's ``FetchMetadata`` defines it (session id, epoch):

* ``(0, -1)``: sessionless full fetch; the response carries session id 0.
* ``(0, 0)``: full fetch that asks for a new session. The session is created when the response is
  built, holding every partition of the response at epoch 1; its id goes in the response, or 0
  when the cache is full and nothing can be evicted.
* ``(X, -1)`` closes session X and does a sessionless full fetch; ``(X, 0)`` closes X and asks for
  a new session. An unknown X is not an error in either case.
* ``(X, N)`` with any other N is incremental. Errors, checked in this order, each answered with
  only a top-level error code and session id 0: no session X, FETCH_SESSION_ID_NOT_FOUND; N not
  the session's expected epoch, INVALID_FETCH_SESSION_EPOCH; the session created at version >= 13
  and this request below 13 or the reverse, FETCH_SESSION_TOPIC_ID_ERROR. Otherwise the request's
  partitions are added to the session (new ones at the end) or update the cached fetch position,
  then the forgotten ones are removed, the session is touched and its epoch advances (after
  2**31-1 comes 1). If no partition is left the session is closed and the request becomes
  sessionless.

Partitions are keyed by (topic id, partition) from version 13 and by (topic name, partition)
below. From 13 names come from ``topic_name_for_id``; an id the broker does not know gives a
partition with ``topic`` None, for which the handler answers UNKNOWN_TOPIC_ID. Such a partition
stays in the session and is named on a later request once the id resolves; once named it stays
named.

An incremental response holds the session partitions for which at least one holds: records were
returned, the high watermark or log start offset or last stable offset differs from the last one
sent, the partition has an error (its cached high watermark is then set to -1 so that it is sent
again once the error clears), a preferred read replica is set, or a diverging epoch is set. Full
and sessionless responses hold every partition. Either way partitions keep the order of
``ctx.partitions``, and consecutive partitions of one topic share a topic entry, as Kafka builds
them. In a session, a partition that returned records moves to the end of the session's order so
that the others go first on the next fetch under ``max_bytes``.

Eviction (Kafka's rule). When the cache holds ``max_slots`` sessions, a new session may take the
place of: the least recently used session if it has been idle more than ``eviction_ms``;
otherwise the "least valuable" evictable session (unprivileged before privileged, then fewest
partitions, then lowest id), if the new one is worth strictly more (privileged over unprivileged,
then more partitions). Sessions from followers (replica id >= 0) are privileged. A session
younger than ``eviction_ms`` (by creation) is evictable only by a privileged newcomer and only if
it is itself unprivileged; the evictable sets are decided each time a session is touched.

Differences from Kafka, all deliberate: one cache rather than eight shards (Kafka's 3.x sharding
is a lock-contention fix and we have one thread); the last stable offset is also tracked, so a
partition whose LSO moved is sent even if nothing else changed; and a session created by a full
fetch caches high watermark -1 for a partition answered with an error, as an incremental fetch
would, so that the partition is re-sent once the error clears.

Cost: creating a session when the cache is full scans the sessions (O(max_slots)); everything else
is O(partitions in the request or session).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from protocol.error_codes import ErrorCode
from protocol.message import RecordsValue
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.primitives import ZERO_UUID

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
EPOCH_MAX = 2**31 - 1

# max.incremental.fetch.session.cache.slots and Kafka's fixed minimum eviction time.
MAX_SLOTS_DEFAULT = 1000
EVICTION_MS_DEFAULT = 120_000

# The first Fetch version that names topics by id.
TOPIC_ID_VERSION_MIN = 13
# The first Fetch version that carries the replica id in ReplicaState.
REPLICA_STATE_VERSION_MIN = 15

INVALID_HIGH_WATERMARK = -1
NO_PREFERRED_READ_REPLICA = -1

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
# A fair source of 31-bit ids almost never repeats; many repeats mean the source is broken.
_SESSION_ID_DRAWS_MAX = 64

# Session partitions are keyed by (topic id, partition) from version 13, (name, partition) below.
_Key: TypeAlias = tuple[uuid.UUID | str, int]


def next_epoch(epoch: int) -> int:
    """The session epoch that follows ``epoch``: -1 stays -1, 2**31-1 wraps to 1."""
    if epoch < 0:
        return FINAL_EPOCH
    if epoch == EPOCH_MAX:
        return 1
    return epoch + 1


def is_from_follower(request: FetchRequest, version: int) -> bool:
    """True when the fetcher is a replica (a broker id >= 0), whose sessions are privileged."""
    if version >= REPLICA_STATE_VERSION_MIN:
        return request.replica_state.replica_id >= 0
    return request.replica_id >= 0


def error_partition_data(partition: int, error: ErrorCode) -> FetchResponse.PartitionData:
    """A partition answered only with an error (high watermark -1), as Kafka builds one."""
    return FetchResponse.PartitionData(
        partition_index=partition, error_code=int(error), high_watermark=INVALID_HIGH_WATERMARK
    )


class ContextKind(enum.Enum):
    SESSION_ERROR = "session_error"  # top-level error; nothing to read
    SESSIONLESS = "sessionless"  # full fetch, no session
    FULL = "full"  # full fetch that creates a session when the response is built
    INCREMENTAL = "incremental"  # fetch within an existing session


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionToFetch:
    """One partition the handler must read for this request, with the fetcher's position.

    ``topic`` is None when a version >= 13 request names a topic id the broker does not know;
    the handler answers it with UNKNOWN_TOPIC_ID. ``topic_id`` is the zero UUID below version 13.
    """

    topic_id: uuid.UUID
    topic: str | None
    partition: int
    fetch_offset: int
    log_start_offset: int  # the fetcher's own log start offset (followers); -1 from consumers
    partition_max_bytes: int
    current_leader_epoch: int
    last_fetched_epoch: int


@dataclass(slots=True, kw_only=True)
class CachedPartition:
    """A session partition: the fetcher's last request for it and what it was last told."""

    topic_id: uuid.UUID
    topic: str | None
    partition: int
    fetch_offset: int
    fetcher_log_start_offset: int
    partition_max_bytes: int
    current_leader_epoch: int
    last_fetched_epoch: int
    # What the last response that carried this partition said; -1 before any.
    high_watermark: int = -1
    local_log_start_offset: int = -1
    last_stable_offset: int = -1

    def to_fetch(self) -> PartitionToFetch:
        return PartitionToFetch(
            topic_id=self.topic_id,
            topic=self.topic,
            partition=self.partition,
            fetch_offset=self.fetch_offset,
            log_start_offset=self.fetcher_log_start_offset,
            partition_max_bytes=self.partition_max_bytes,
            current_leader_epoch=self.current_leader_epoch,
            last_fetched_epoch=self.last_fetched_epoch,
        )

    def update_request(self, p: PartitionToFetch) -> None:
        self.fetch_offset = p.fetch_offset
        self.fetcher_log_start_offset = p.log_start_offset
        self.partition_max_bytes = p.partition_max_bytes
        self.current_leader_epoch = p.current_leader_epoch
        self.last_fetched_epoch = p.last_fetched_epoch

    def must_respond(self, data: FetchResponse.PartitionData) -> bool:
        """Whether an incremental response must carry ``data`` for this partition."""
        return (
            _records_bytes(data.records) > 0
            or data.high_watermark != self.high_watermark
            or data.log_start_offset != self.local_log_start_offset
            or data.last_stable_offset != self.last_stable_offset
            or data.preferred_read_replica != NO_PREFERRED_READ_REPLICA
            or data.error_code != ErrorCode.NONE
            or data.diverging_epoch.epoch >= 0
        )

    def update_response(self, data: FetchResponse.PartitionData) -> None:
        """Remember what the fetcher has now been told."""
        self.high_watermark = data.high_watermark
        self.local_log_start_offset = data.log_start_offset
        self.last_stable_offset = data.last_stable_offset
        if data.error_code != ErrorCode.NONE:
            # Forget the high watermark so that the partition is sent once the error clears.
            self.high_watermark = INVALID_HIGH_WATERMARK


def _cached(p: PartitionToFetch) -> CachedPartition:
    return CachedPartition(
        topic_id=p.topic_id,
        topic=p.topic,
        partition=p.partition,
        fetch_offset=p.fetch_offset,
        fetcher_log_start_offset=p.log_start_offset,
        partition_max_bytes=p.partition_max_bytes,
        current_leader_epoch=p.current_leader_epoch,
        last_fetched_epoch=p.last_fetched_epoch,
    )


@dataclass(slots=True, kw_only=True)
class FetchSession:
    """One cached session. Owned by ``FetchSessionCache``; read-only to everyone else."""

    id: int
    privileged: bool
    uses_topic_ids: bool
    creation_ms: int
    last_used_ms: int
    epoch: int  # the epoch the next incremental request must carry
    partitions: dict[_Key, CachedPartition] = field(default_factory=dict)
    # Set by the cache on each touch: the partition count then (-1 when not in the cache) and
    # which newcomers may evict this session while it is younger than the eviction time.
    cached_size: int = -1
    evictable_by_all: bool = False
    evictable_by_privileged: bool = False


class FetchSessionCache:
    """See the module docstring.

    ``new_session_id`` returns a random non-zero int32, e.g. ``lambda: rng.randint(1, 2**31 - 1)``
    (positive, as Kafka's are); zero, out-of-range and in-use ids are drawn again.
    ``topic_name_for_id`` maps a topic id to the name the broker knows it by, or None.
    """

    __slots__ = (
        "_eviction_ms",
        "_max_slots",
        "_new_session_id",
        "_sessions",
        "_topic_name_for_id",
        "evictions",
        "total_partitions",
    )

    def __init__(
        self,
        *,
        new_session_id: Callable[[], int],
        topic_name_for_id: Callable[[uuid.UUID], str | None],
        max_slots: int = MAX_SLOTS_DEFAULT,
        eviction_ms: int = EVICTION_MS_DEFAULT,
    ) -> None:
        assert max_slots >= 0 and eviction_ms >= 0
        self._new_session_id = new_session_id
        self._topic_name_for_id = topic_name_for_id
        self._max_slots = max_slots
        self._eviction_ms = eviction_ms
        self._sessions: dict[int, FetchSession] = {}
        self.evictions = 0  # sessions evicted to make room, for metrics
        self.total_partitions = 0  # partitions cached over all sessions, as of their last touch

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    def remove(self, session_id: int) -> FetchSession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self.total_partitions -= session.cached_size
            session.cached_size = -1
        return session

    # --- requests ---------------------------------------------------------------------------

    def new_context(self, request: FetchRequest, *, version: int, now_ms: int) -> FetchContext:
        """Decide what this request fetches, updating the session it names (see module doc)."""
        uses_ids = version >= TOPIC_ID_VERSION_MIN
        session_id, epoch = request.session_id, request.session_epoch
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != INVALID_SESSION_ID:
                self.remove(session_id)
            kind = ContextKind.SESSIONLESS if epoch == FINAL_EPOCH else ContextKind.FULL
            wanted = list(self._requested(request, uses_ids).values())
            return FetchContext(
                self, kind, version=version, partitions=wanted,
                privileged=is_from_follower(request, version),
            )

        session = self._sessions.get(session_id)
        if session is None:
            return self._error(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, version)
        if session.epoch != epoch:
            return self._error(ErrorCode.INVALID_FETCH_SESSION_EPOCH, version)
        if session.uses_topic_ids != uses_ids:
            return self._error(ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR, version)

        requested = self._requested(request, uses_ids)
        cached = session.partitions
        for key, p in requested.items():
            entry = cached.get(key)
            if entry is None:
                cached[key] = _cached(p)
            else:
                entry.update_request(p)
        for forgotten in request.forgotten_topics_data:
            topic_key: uuid.UUID | str = forgotten.topic_id if uses_ids else forgotten.topic
            for partition in forgotten.partitions:
                cached.pop((topic_key, partition), None)

        if not cached:
            self.remove(session.id)
            return FetchContext(
                self, ContextKind.SESSIONLESS, version=version, partitions=list(requested.values())
            )
        self._touch(session, now_ms)
        session.epoch = next_epoch(session.epoch)
        if uses_ids:
            for entry in cached.values():
                if entry.topic is None:
                    entry.topic = self._topic_name_for_id(entry.topic_id)
        return FetchContext(
            self, ContextKind.INCREMENTAL, version=version,
            partitions=[entry.to_fetch() for entry in cached.values()],
            session=session, expected_epoch=session.epoch,
        )

    def _error(self, error: ErrorCode, version: int) -> FetchContext:
        return FetchContext(self, ContextKind.SESSION_ERROR, version=version, partitions=[], error=error)

    def _requested(self, request: FetchRequest, uses_ids: bool) -> dict[_Key, PartitionToFetch]:
        """The request's partitions by key, in request order; a repeated key keeps its first
        place and takes its last values, as Kafka's LinkedHashMap does."""
        out: dict[_Key, PartitionToFetch] = {}
        for t in request.topics:
            topic_id = t.topic_id if uses_ids else ZERO_UUID
            name = self._topic_name_for_id(topic_id) if uses_ids else t.topic
            topic_key: uuid.UUID | str = topic_id if uses_ids else t.topic
            for fp in t.partitions:
                out[(topic_key, fp.partition)] = PartitionToFetch(
                    topic_id=topic_id,
                    topic=name,
                    partition=fp.partition,
                    fetch_offset=fp.fetch_offset,
                    log_start_offset=fp.log_start_offset,
                    partition_max_bytes=fp.partition_max_bytes,
                    current_leader_epoch=fp.current_leader_epoch,
                    last_fetched_epoch=fp.last_fetched_epoch,
                )
        return out

    # --- sessions ---------------------------------------------------------------------------

    def _create(
        self, partitions: dict[_Key, CachedPartition], *, privileged: bool, uses_topic_ids: bool,
        now_ms: int,
    ) -> int:
        """Cache a new session if there is room or room can be made; its id, or 0."""
        if len(self._sessions) >= self._max_slots and not self._try_evict(
            privileged, len(partitions), now_ms
        ):
            return INVALID_SESSION_ID
        session = FetchSession(
            id=self._draw_session_id(), privileged=privileged, uses_topic_ids=uses_topic_ids,
            creation_ms=now_ms, last_used_ms=now_ms, epoch=next_epoch(INITIAL_EPOCH),
            partitions=partitions,
        )
        self._sessions[session.id] = session
        self._touch(session, now_ms)
        return session.id

    def _draw_session_id(self) -> int:
        for _ in range(_SESSION_ID_DRAWS_MAX):
            session_id = self._new_session_id()
            if (
                session_id != INVALID_SESSION_ID
                and _INT32_MIN <= session_id <= _INT32_MAX
                and session_id not in self._sessions
            ):
                return session_id
        raise AssertionError(f"new_session_id gave no usable id in {_SESSION_ID_DRAWS_MAX} draws")

    def _touch(self, session: FetchSession, now_ms: int) -> None:
        """Mark the session used now and re-decide its size and who may evict it."""
        session.last_used_ms = now_ms
        if session.cached_size != -1:
            self.total_partitions -= session.cached_size
        session.cached_size = len(session.partitions)
        self.total_partitions += session.cached_size
        aged = now_ms - session.creation_ms > self._eviction_ms
        session.evictable_by_all = aged
        session.evictable_by_privileged = aged or not session.privileged

    def _try_evict(self, privileged: bool, size: int, now_ms: int) -> bool:
        """Evict one session to make room for a new one (see module doc); whether one went."""
        if not self._sessions:
            return False
        lru = min(self._sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now_ms - lru.last_used_ms > self._eviction_ms:
            victim = lru
        else:
            candidates = [
                s for s in self._sessions.values()
                if (s.evictable_by_privileged if privileged else s.evictable_by_all)
            ]
            if not candidates:
                return False
            victim = min(candidates, key=lambda s: (s.privileged, s.cached_size, s.id))
            if (privileged, size) <= (victim.privileged, victim.cached_size):
                return False
        self.remove(victim.id)
        self.evictions += 1
        return True


class FetchContext:
    """What one Fetch request reads, and how its response is built. From ``new_context``.

    ``kind``: see ``ContextKind``. ``error``: the top-level error (NONE unless SESSION_ERROR).
    ``partitions``: what to read, in order (empty for SESSION_ERROR). ``session_id``: the session
    this request is in (INCREMENTAL), or the one created by ``build_response`` (FULL), else 0.
    """

    __slots__ = (
        "_cache",
        "_expected_epoch",
        "_privileged",
        "_session",
        "error",
        "kind",
        "partitions",
        "session_id",
        "version",
    )

    def __init__(
        self,
        cache: FetchSessionCache,
        kind: ContextKind,
        *,
        version: int,
        partitions: list[PartitionToFetch],
        error: ErrorCode = ErrorCode.NONE,
        privileged: bool = False,
        session: FetchSession | None = None,
        expected_epoch: int = 0,
    ) -> None:
        self._cache = cache
        self.kind = kind
        self.version = version
        self.partitions = partitions
        self.error = error
        self._privileged = privileged
        self._session = session
        self._expected_epoch = expected_epoch
        self.session_id = session.id if session is not None else INVALID_SESSION_ID

    @property
    def uses_topic_ids(self) -> bool:
        return self.version >= TOPIC_ID_VERSION_MIN

    def build_response(
        self, results: Sequence[FetchResponse.PartitionData], *, now_ms: int, throttle_time_ms: int = 0
    ) -> FetchResponse:
        """The response for this request, updating the session; call once, when the fetch is done.

        ``results[i]`` answers ``partitions[i]``; its ``partition_index`` is set here. A FULL
        context creates its session now (``now_ms`` is its creation time), holding every
        partition. An INCREMENTAL context whose session has moved on since (a retried or
        concurrent request) answers INVALID_FETCH_SESSION_EPOCH with no partitions.
        """
        assert len(results) == len(self.partitions), "one result per partition to fetch"
        if self.kind is ContextKind.SESSION_ERROR:
            return FetchResponse(throttle_time_ms=throttle_time_ms, error_code=int(self.error))
        if self.kind is ContextKind.INCREMENTAL:
            return self._incremental(results, throttle_time_ms, update=True)
        if self.kind is ContextKind.FULL:
            cached: dict[_Key, CachedPartition] = {}
            for p, data in zip(self.partitions, results, strict=True):
                entry = _cached(p)
                entry.update_response(data)
                cached[self._key(p)] = entry
            self.session_id = self._cache._create(
                cached, privileged=self._privileged, uses_topic_ids=self.uses_topic_ids, now_ms=now_ms
            )
        return self._response(
            list(zip(self.partitions, results, strict=True)), self.session_id, throttle_time_ms
        )

    def preview_response(self, results: Sequence[FetchResponse.PartitionData]) -> FetchResponse:
        """The partitions ``build_response`` would send, changing no session (for sizing a
        response against a quota before deciding to throttle). It sets ``partition_index`` on the
        results, as ``build_response`` does. A FULL context's session id is still 0 here."""
        assert len(results) == len(self.partitions), "one result per partition to fetch"
        if self.kind is ContextKind.SESSION_ERROR:
            return FetchResponse(error_code=int(self.error))
        if self.kind is ContextKind.INCREMENTAL:
            return self._incremental(results, 0, update=False)
        return self._response(list(zip(self.partitions, results, strict=True)), self.session_id, 0)

    def throttled_response(self, throttle_time_ms: int) -> FetchResponse:
        """The empty response sent instead when the fetcher is over its quota. Creates no session;
        an INCREMENTAL context keeps its session id (or reports a moved-on session's epoch)."""
        if self.kind is ContextKind.INCREMENTAL:
            assert self._session is not None
            error = ErrorCode.NONE
            if self._session.epoch != self._expected_epoch:
                error = ErrorCode.INVALID_FETCH_SESSION_EPOCH
            return FetchResponse(
                throttle_time_ms=throttle_time_ms, error_code=int(error), session_id=self._session.id
            )
        return FetchResponse(throttle_time_ms=throttle_time_ms)

    # --- internals --------------------------------------------------------------------------

    def _key(self, p: PartitionToFetch) -> _Key:
        if self.uses_topic_ids:
            return (p.topic_id, p.partition)
        assert p.topic is not None
        return (p.topic, p.partition)

    def _incremental(
        self, results: Sequence[FetchResponse.PartitionData], throttle_time_ms: int, *, update: bool
    ) -> FetchResponse:
        session = self._session
        assert session is not None
        if session.epoch != self._expected_epoch:
            return FetchResponse(
                throttle_time_ms=throttle_time_ms,
                error_code=int(ErrorCode.INVALID_FETCH_SESSION_EPOCH),
                session_id=session.id,
            )
        cached = session.partitions
        sent: list[tuple[PartitionToFetch, FetchResponse.PartitionData]] = []
        for p, data in zip(self.partitions, results, strict=True):
            key = self._key(p)
            entry = cached.get(key)
            # A request that forgot every partition closes the session without moving its epoch,
            # so a fetch still waiting on the session may find its partitions gone: skip them.
            if entry is None or not entry.must_respond(data):
                continue
            sent.append((p, data))
            if update:
                entry.update_response(data)
                if _records_bytes(data.records) > 0:
                    # Let partitions that got nothing go first next time.
                    del cached[key]
                    cached[key] = entry
        return self._response(sent, session.id, throttle_time_ms)

    def _response(
        self,
        pairs: list[tuple[PartitionToFetch, FetchResponse.PartitionData]],
        session_id: int,
        throttle_time_ms: int,
    ) -> FetchResponse:
        """Group partitions into topic entries, keeping order: a partition joins the previous
        entry only when that entry is for the same topic."""
        topics: list[FetchResponse.FetchableTopicResponse] = []
        by_id = self.uses_topic_ids
        for p, data in pairs:
            data.partition_index = p.partition
            last = topics[-1] if topics else None
            if last is not None and (last.topic_id == p.topic_id if by_id else last.topic == p.topic):
                last.partitions.append(data)
            else:
                topics.append(
                    FetchResponse.FetchableTopicResponse(
                        topic=p.topic or "", topic_id=p.topic_id, partitions=[data]
                    )
                )
        return FetchResponse(
            throttle_time_ms=throttle_time_ms, error_code=int(ErrorCode.NONE),
            session_id=session_id, responses=topics,
        )


def _records_bytes(records: RecordsValue | None) -> int:
    if records is None:
        return 0
    if isinstance(records, bytes | bytearray | memoryview):
        return memoryview(records).nbytes
    return records.nbytes
