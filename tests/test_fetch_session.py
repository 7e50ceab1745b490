"""Incremental fetch sessions (broker/fetch_session.py) follow KIP-227 as Kafka's broker does.

Goal: every request shape (sessionless, new session, incremental, close), every session error,
the incremental response filter, the eviction rule and topic-id handling behave as Kafka's
FetchManager / FetchSessionCache do, with time and session ids driven by the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

import pytest

from broker.fetch_session import (
    EPOCH_MAX,
    FINAL_EPOCH,
    INITIAL_EPOCH,
    ContextKind,
    FetchContext,
    FetchSessionCache,
    PartitionToFetch,
    error_partition_data,
    is_from_follower,
    next_epoch,
)
from protocol.error_codes import ErrorCode
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.primitives import ZERO_UUID

FOO = uuid.UUID(int=0xF00)
BAR = uuid.UUID(int=0xBA2)
ZAR = uuid.UUID(int=0x2A2)
NAMES = {FOO: "foo", BAR: "bar", ZAR: "zar"}

Topic = str | uuid.UUID


# --- helpers ------------------------------------------------------------------------------------


class SessionIds:
    """A session id source that hands out 101, 102, ... (or a given script)."""

    def __init__(self, script: Iterable[int] = ()) -> None:
        self.script = list(script)
        self.next = 101

    def __call__(self) -> int:
        if self.script:
            return self.script.pop(0)
        self.next += 1
        return self.next - 1


def make_cache(
    *, max_slots: int = 10, eviction_ms: int = 1000, names: dict[uuid.UUID, str] | None = None,
    ids: SessionIds | None = None,
) -> FetchSessionCache:
    table = NAMES if names is None else names
    return FetchSessionCache(
        new_session_id=ids or SessionIds(), topic_name_for_id=table.get,
        max_slots=max_slots, eviction_ms=eviction_ms,
    )


def fetch_request(
    *,
    session_id: int = 0,
    epoch: int = FINAL_EPOCH,
    parts: Iterable[tuple[Topic, int, int]] = (),
    forgotten: Iterable[tuple[Topic, int]] = (),
    version: int = 12,
    replica_id: int = -1,
) -> FetchRequest:
    """A request as a client builds one; consecutive partitions of a topic share an entry."""
    topics: list[FetchRequest.FetchTopic] = []
    for topic, partition, offset in parts:
        name, tid = (topic, ZERO_UUID) if isinstance(topic, str) else ("", topic)
        fp = FetchRequest.FetchPartition(partition=partition, fetch_offset=offset, partition_max_bytes=1000)
        if topics and (topics[-1].topic, topics[-1].topic_id) == (name, tid):
            topics[-1].partitions.append(fp)
        else:
            topics.append(FetchRequest.FetchTopic(topic=name, topic_id=tid, partitions=[fp]))
    forgot: list[FetchRequest.ForgottenTopic] = []
    for topic, partition in forgotten:
        name, tid = (topic, ZERO_UUID) if isinstance(topic, str) else ("", topic)
        forgot.append(FetchRequest.ForgottenTopic(topic=name, topic_id=tid, partitions=[partition]))
    request = FetchRequest(
        session_id=session_id, session_epoch=epoch, topics=topics, forgotten_topics_data=forgot
    )
    if version >= 15:
        request.replica_state.replica_id = replica_id
    else:
        request.replica_id = replica_id
    return request


def pdata(
    hw: int = 10, *, lso: int | None = None, log_start: int = 0, records: bytes | None = None,
    error: ErrorCode = ErrorCode.NONE, preferred: int = -1, diverging_epoch: int = -1,
) -> FetchResponse.PartitionData:
    data = FetchResponse.PartitionData(
        error_code=int(error), high_watermark=hw, last_stable_offset=hw if lso is None else lso,
        log_start_offset=log_start, records=records, preferred_read_replica=preferred,
    )
    data.diverging_epoch.epoch = diverging_epoch
    if diverging_epoch >= 0:
        data.diverging_epoch.end_offset = 5
    return data


Reader = Callable[[PartitionToFetch], FetchResponse.PartitionData]


def steady(p: PartitionToFetch) -> FetchResponse.PartitionData:
    """A broker with nothing new: hw 10 everywhere; unknown ids answered as Kafka does."""
    if p.topic is None:
        return error_partition_data(p.partition, ErrorCode.UNKNOWN_TOPIC_ID)
    return pdata()


def run(
    cache: FetchSessionCache, request: FetchRequest, *, version: int = 12, now_ms: int = 0,
    read: Reader = steady,
) -> tuple[FetchContext, FetchResponse]:
    ctx = cache.new_context(request, version=version, now_ms=now_ms)
    response = ctx.build_response([read(p) for p in ctx.partitions], now_ms=now_ms)
    return ctx, response


def answered(response: FetchResponse) -> list[tuple[Topic, int]]:
    """(name or id, partition) for each partition in the response, in order."""
    out: list[tuple[Topic, int]] = []
    for t in response.responses:
        for p in t.partitions:
            out.append((t.topic_id if t.topic_id != ZERO_UUID else t.topic, p.partition_index))
    return out


def planned(ctx: FetchContext) -> list[tuple[str | None, int, int]]:
    return [(p.topic, p.partition, p.fetch_offset) for p in ctx.partitions]


def new_session(
    cache: FetchSessionCache, parts: Iterable[tuple[Topic, int, int]], *, version: int = 12,
    now_ms: int = 0, replica_id: int = -1, read: Reader = steady,
) -> int:
    request = fetch_request(epoch=INITIAL_EPOCH, parts=parts, version=version, replica_id=replica_id)
    ctx, response = run(cache, request, version=version, now_ms=now_ms, read=read)
    assert ctx.kind is ContextKind.FULL
    assert response.error_code == ErrorCode.NONE
    return response.session_id


# --- epochs and request kinds ------------------------------------------------------------------


def test_next_epoch_wraps_to_one_and_final_stays_final() -> None:
    assert next_epoch(INITIAL_EPOCH) == 1
    assert next_epoch(41) == 42
    assert next_epoch(EPOCH_MAX) == 1
    assert next_epoch(FINAL_EPOCH) == FINAL_EPOCH


def test_sessionless_fetch_answers_everything_and_caches_nothing() -> None:
    cache = make_cache()
    request = fetch_request(parts=[("foo", 1, 5), ("bar", 0, 7), ("foo", 0, 9)])
    ctx, response = run(cache, request)
    assert ctx.kind is ContextKind.SESSIONLESS
    assert planned(ctx) == [("foo", 1, 5), ("bar", 0, 7), ("foo", 0, 9)]
    assert response.session_id == 0 and response.error_code == ErrorCode.NONE
    assert answered(response) == [("foo", 1), ("bar", 0), ("foo", 0)]
    # Only consecutive partitions of one topic share an entry, so the order survives.
    assert [t.topic for t in response.responses] == ["foo", "bar", "foo"]
    assert len(cache) == 0


def test_new_session_gets_injected_id_epoch_one_and_cached_state() -> None:
    cache = make_cache(ids=SessionIds([0, 7]))  # 0 is never a session id: drawn again
    ctx, response = run(cache, fetch_request(epoch=INITIAL_EPOCH, parts=[("foo", 0, 3), ("foo", 1, 4)]))
    assert ctx.kind is ContextKind.FULL
    assert response.session_id == ctx.session_id == 7
    assert answered(response) == [("foo", 0), ("foo", 1)]
    session = cache.get(7)
    assert session is not None and session.epoch == 1 and not session.privileged
    assert [(c.topic, c.partition, c.fetch_offset, c.high_watermark) for c in session.partitions.values()] == [
        ("foo", 0, 3, 10), ("foo", 1, 4, 10)]
    assert cache.total_partitions == 2


def test_in_use_session_id_is_drawn_again() -> None:
    cache = make_cache(ids=SessionIds([5, 5, 6]))
    assert new_session(cache, [("foo", 0, 0)]) == 5
    assert new_session(cache, [("foo", 0, 0)]) == 6


def test_incremental_epochs_must_match_and_advance() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)])
    for epoch in (1, 2, 3):
        ctx, response = run(cache, fetch_request(session_id=sid, epoch=epoch))
        assert ctx.kind is ContextKind.INCREMENTAL
        assert response.error_code == ErrorCode.NONE and response.session_id == sid
    session = cache.get(sid)
    assert session is not None and session.epoch == 4

    # A repeated (retried) epoch and a skipped one are both refused, without touching the session.
    for epoch in (3, 5, -2):
        ctx, response = run(cache, fetch_request(session_id=sid, epoch=epoch, parts=[("bar", 0, 0)]))
        assert ctx.kind is ContextKind.SESSION_ERROR and ctx.partitions == []
        assert response.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
        assert response.session_id == 0 and response.responses == []
    assert session.epoch == 4 and list(session.partitions) == [("foo", 0)]


@pytest.mark.parametrize(("session_id", "epoch"), [(999, 1), (0, 1)])
def test_unknown_session_is_not_found(session_id: int, epoch: int) -> None:
    cache = make_cache()
    new_session(cache, [("foo", 0, 0)])
    ctx, response = run(cache, fetch_request(session_id=session_id, epoch=epoch))
    assert ctx.kind is ContextKind.SESSION_ERROR
    assert response.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert response.session_id == 0 and response.responses == []


def test_epoch_wraps_after_max() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)])
    session = cache.get(sid)
    assert session is not None
    session.epoch = EPOCH_MAX
    ctx, _ = run(cache, fetch_request(session_id=sid, epoch=EPOCH_MAX))
    assert ctx.kind is ContextKind.INCREMENTAL and session.epoch == 1


def test_final_epoch_closes_session_and_fetches_sessionless() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)])
    ctx, response = run(cache, fetch_request(session_id=sid, epoch=FINAL_EPOCH, parts=[("bar", 0, 1)]))
    assert ctx.kind is ContextKind.SESSIONLESS
    assert answered(response) == [("bar", 0)] and response.session_id == 0
    assert cache.get(sid) is None and len(cache) == 0 and cache.total_partitions == 0
    # The closed session is gone for good.
    _, response = run(cache, fetch_request(session_id=sid, epoch=1))
    assert response.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_initial_epoch_with_session_id_replaces_the_session() -> None:
    cache = make_cache()
    old = new_session(cache, [("foo", 0, 0)])
    _, response = run(cache, fetch_request(session_id=old, epoch=INITIAL_EPOCH, parts=[("bar", 0, 0)]))
    assert response.session_id not in (0, old)
    assert cache.get(old) is None and len(cache) == 1
    # Closing a session the broker does not have is not an error.
    _, response = run(cache, fetch_request(session_id=12345, epoch=INITIAL_EPOCH, parts=[("bar", 0, 0)]))
    assert response.error_code == ErrorCode.NONE and response.session_id != 0


# --- the session's partition set -----------------------------------------------------------------


def test_incremental_adds_updates_and_forgets_partitions() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 10), ("foo", 1, 20)])

    # Add bar-0 (goes to the end), move foo-0's position, forget foo-1.
    request = fetch_request(session_id=sid, epoch=1, parts=[("foo", 0, 15), ("bar", 0, 3)],
                            forgotten=[("foo", 1)])
    ctx, _ = run(cache, request)
    assert planned(ctx) == [("foo", 0, 15), ("bar", 0, 3)]

    # Nothing listed: the session's partitions are fetched from their cached positions.
    ctx, _ = run(cache, fetch_request(session_id=sid, epoch=2))
    assert planned(ctx) == [("foo", 0, 15), ("bar", 0, 3)]
    assert [p.partition_max_bytes for p in ctx.partitions] == [1000, 1000]
    assert cache.total_partitions == 2

    # Forgetting a partition the session lacks changes nothing.
    ctx, _ = run(cache, fetch_request(session_id=sid, epoch=3, forgotten=[("zar", 9)]))
    assert planned(ctx) == [("foo", 0, 15), ("bar", 0, 3)]


def test_forgetting_every_partition_closes_the_session() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)])
    ctx, response = run(cache, fetch_request(session_id=sid, epoch=1, forgotten=[("foo", 0), ("foo", 1)]))
    assert ctx.kind is ContextKind.SESSIONLESS and ctx.partitions == []
    assert response.session_id == 0 and response.responses == []
    assert len(cache) == 0 and cache.total_partitions == 0


def test_repeated_partition_in_request_keeps_first_place_and_last_values() -> None:
    cache = make_cache()
    request = fetch_request(epoch=INITIAL_EPOCH, parts=[("foo", 0, 1), ("bar", 0, 2), ("foo", 0, 3)])
    ctx, response = run(cache, request)
    assert planned(ctx) == [("foo", 0, 3), ("bar", 0, 2)]
    assert answered(response) == [("foo", 0), ("bar", 0)]


def test_empty_full_fetch_still_creates_a_session() -> None:
    cache = make_cache()
    sid = new_session(cache, [])
    assert sid != 0 and cache.total_partitions == 0
    # ... which the next incremental fetch closes, as it has no partitions.
    ctx, response = run(cache, fetch_request(session_id=sid, epoch=1))
    assert ctx.kind is ContextKind.SESSIONLESS and response.session_id == 0 and len(cache) == 0


# --- incremental responses -----------------------------------------------------------------------


def test_incremental_response_carries_only_changed_partitions() -> None:
    cache = make_cache()
    parts = [("foo", 0, 0), ("foo", 1, 0), ("bar", 0, 0), ("bar", 1, 0), ("zar", 0, 0)]
    sid = new_session(cache, parts)

    _, response = run(cache, fetch_request(session_id=sid, epoch=1))
    assert response.session_id == sid and response.responses == []  # nothing new anywhere

    changes = {
        ("foo", 1): pdata(11, lso=10),  # high watermark moved
        ("bar", 0): pdata(records=b"batch"),  # records
        ("zar", 0): pdata(error=ErrorCode.NOT_LEADER_OR_FOLLOWER),  # error
    }

    def read(p: PartitionToFetch) -> FetchResponse.PartitionData:
        return changes.get((p.topic or "", p.partition)) or pdata()

    _, response = run(cache, fetch_request(session_id=sid, epoch=2), read=read)
    assert answered(response) == [("foo", 1), ("bar", 0), ("zar", 0)]
    assert [t.topic for t in response.responses] == ["foo", "bar", "zar"]

    # Steady state again: only the partition whose error cleared comes back (its hw was reset).
    _, response = run(cache, fetch_request(session_id=sid, epoch=3), read=lambda p: pdata(
        11, lso=10) if (p.topic, p.partition) == ("foo", 1) else pdata())
    assert answered(response) == [("zar", 0)]


@pytest.mark.parametrize(
    "changed",
    [
        pdata(log_start=3),
        pdata(lso=7),
        pdata(preferred=2),
        pdata(diverging_epoch=4),
        pdata(records=b"x"),
        pdata(error=ErrorCode.OFFSET_OUT_OF_RANGE),
    ],
    ids=["log_start", "lso", "preferred_replica", "diverging_epoch", "records", "error"],
)
def test_each_kind_of_change_is_sent(changed: FetchResponse.PartitionData) -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)])
    _, response = run(cache, fetch_request(session_id=sid, epoch=1),
                      read=lambda p: changed if p.partition == 1 else pdata())
    assert answered(response) == [("foo", 1)]
    assert response.responses[0].partitions[0] is changed


def test_preferred_replica_and_diverging_epoch_are_sent_every_time() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)])
    for epoch in (1, 2):
        _, response = run(cache, fetch_request(session_id=sid, epoch=epoch), read=lambda p: pdata(preferred=3))
        assert answered(response) == [("foo", 0)]
    for epoch in (3, 4):
        _, response = run(cache, fetch_request(session_id=sid, epoch=epoch),
                          read=lambda p: pdata(diverging_epoch=1))
        assert answered(response) == [("foo", 0)]


def test_partitions_that_returned_records_move_to_the_back() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 1, 0), ("bar", 2, 0), ("zar", 3, 0)])
    ctx, response = run(cache, fetch_request(session_id=sid, epoch=1), read=lambda p: {
        "foo": pdata(11), "bar": pdata(11, records=b"r"), "zar": pdata()}[p.topic or ""])
    assert answered(response) == [("foo", 1), ("bar", 2)]
    ctx = cache.new_context(fetch_request(session_id=sid, epoch=2), version=12, now_ms=0)
    assert planned(ctx) == [("foo", 1, 0), ("zar", 3, 0), ("bar", 2, 0)]


def test_response_order_follows_the_plan() -> None:
    cache = make_cache()
    parts = [("foo", 2, 0), ("bar", 0, 0), ("foo", 0, 0), ("foo", 1, 0)]
    sid = new_session(cache, parts)
    _, response = run(cache, fetch_request(session_id=sid, epoch=1), read=lambda p: pdata(20))
    assert answered(response) == [("foo", 2), ("bar", 0), ("foo", 0), ("foo", 1)]
    assert [(t.topic, len(t.partitions)) for t in response.responses] == [("foo", 1), ("bar", 1), ("foo", 2)]


def test_session_moved_on_while_fetch_waited() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)])
    waiting = cache.new_context(fetch_request(session_id=sid, epoch=1), version=12, now_ms=0)
    run(cache, fetch_request(session_id=sid, epoch=2))  # a later request got in first
    response = waiting.build_response([pdata(50)], now_ms=0)
    assert response.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert response.session_id == sid and response.responses == []
    throttled = waiting.throttled_response(30)
    assert throttled.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH and throttled.throttle_time_ms == 30


def test_waiting_fetch_survives_a_request_that_emptied_the_session() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)])
    waiting = cache.new_context(fetch_request(session_id=sid, epoch=1), version=12, now_ms=0)
    run(cache, fetch_request(session_id=sid, epoch=2, forgotten=[("foo", 0)]))
    response = waiting.build_response([pdata(50)], now_ms=0)
    assert response.error_code == ErrorCode.NONE and response.responses == []


def test_preview_and_throttle_leave_the_session_alone() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)])
    ctx = cache.new_context(fetch_request(session_id=sid, epoch=1), version=12, now_ms=0)
    results = [pdata(), pdata(12)]
    assert answered(ctx.preview_response(results)) == [("foo", 1)]
    assert answered(ctx.preview_response(results)) == [("foo", 1)]
    throttled = ctx.throttled_response(100)
    assert throttled.session_id == sid and throttled.error_code == ErrorCode.NONE
    assert throttled.responses == [] and throttled.throttle_time_ms == 100
    assert answered(ctx.build_response(results, now_ms=0)) == [("foo", 1)]
    assert answered(ctx.build_response(results, now_ms=0)) == []

    # A throttled full fetch creates no session.
    full = cache.new_context(fetch_request(epoch=INITIAL_EPOCH, parts=[("bar", 0, 0)]), version=12, now_ms=0)
    assert answered(full.preview_response([pdata()])) == [("bar", 0)]
    assert full.throttled_response(5).session_id == 0 and len(cache) == 1


def test_full_fetch_error_is_resent_once_it_clears() -> None:
    cache = make_cache()
    sid = new_session(cache, [("foo", 0, 0)],
                      read=lambda p: pdata(10, error=ErrorCode.NOT_LEADER_OR_FOLLOWER))
    _, response = run(cache, fetch_request(session_id=sid, epoch=1))
    assert answered(response) == [("foo", 0)]


# --- the cache: capacity and eviction --------------------------------------------------------


def test_full_cache_answers_session_id_zero() -> None:
    cache = make_cache(max_slots=1)
    first = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)], now_ms=0)
    second = new_session(cache, [("foo", 0, 0)], now_ms=10)
    assert first != 0 and second == 0
    assert cache.get(first) is not None and len(cache) == 1 and cache.evictions == 0


def test_zero_slots_never_caches() -> None:
    cache = make_cache(max_slots=0)
    assert new_session(cache, [("foo", 0, 0)]) == 0


def test_idle_session_is_evicted_least_recently_used_first() -> None:
    cache = make_cache(max_slots=2, eviction_ms=1000)
    s1 = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)], now_ms=0)
    s2 = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)], now_ms=500)
    run(cache, fetch_request(session_id=s1, epoch=1), now_ms=1000)  # s1 used after s2 was made

    # At 1501 s2 has been idle 1001 ms (> eviction_ms) and is the least recently used.
    s3 = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)], now_ms=1501)
    assert s3 != 0
    assert cache.get(s1) is not None and cache.get(s2) is None and cache.get(s3) is not None
    assert cache.evictions == 1


def test_idle_time_must_exceed_eviction_ms() -> None:
    cache = make_cache(max_slots=1, eviction_ms=1000)
    s1 = new_session(cache, [("foo", 0, 0)], now_ms=0)
    assert new_session(cache, [("foo", 0, 0)], now_ms=1000) == 0
    assert new_session(cache, [("foo", 0, 0)], now_ms=1001) != 0
    assert cache.get(s1) is None


def test_privileged_newcomer_evicts_young_unprivileged_session() -> None:
    cache = make_cache(max_slots=2, eviction_ms=1000)
    follower = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)], now_ms=0, replica_id=2)
    consumer = new_session(cache, [("foo", 0, 0), ("foo", 1, 0)], now_ms=500)
    assert cache.get(follower).privileged  # type: ignore[union-attr]

    # Another consumer may not evict anything young.
    assert new_session(cache, [("foo", i, 0) for i in range(50)], now_ms=600) == 0
    # A follower evicts the unprivileged session even though it is recent and bigger.
    follower2 = new_session(cache, [("foo", 0, 0)], now_ms=700, replica_id=3)
    assert follower2 != 0
    assert cache.get(consumer) is None and cache.get(follower) is not None
    # A third follower cannot evict young privileged sessions...
    assert new_session(cache, [("foo", i, 0) for i in range(50)], now_ms=800, replica_id=4) == 0
    # ... but the first follower, idle beyond eviction_ms, goes for one.
    follower4 = new_session(cache, [("foo", 0, 0)], now_ms=1001, replica_id=4)
    assert follower4 != 0 and cache.get(follower) is None and cache.get(follower2) is not None


def test_aged_session_is_evicted_by_a_bigger_one() -> None:
    cache = make_cache(max_slots=2, eviction_ms=1000)
    small = new_session(cache, [("foo", 0, 0)], now_ms=0)
    big = new_session(cache, [("foo", i, 0) for i in range(3)], now_ms=0)
    # Keep both in use, and past their creation age, so neither is idle but both are evictable.
    run(cache, fetch_request(session_id=small, epoch=1), now_ms=1500)
    run(cache, fetch_request(session_id=big, epoch=1), now_ms=1500)

    # The same size as the smallest is not enough; one more partition is.
    assert new_session(cache, [("bar", 0, 0)], now_ms=1600) == 0
    newcomer = new_session(cache, [("bar", 0, 0), ("bar", 1, 0)], now_ms=1600)
    assert newcomer != 0 and cache.get(small) is None and cache.get(big) is not None
    assert cache.total_partitions == 5


def test_evictability_is_decided_when_a_session_is_touched() -> None:
    cache = make_cache(max_slots=1, eviction_ms=1000)
    s1 = new_session(cache, [("foo", 0, 0)], now_ms=0)
    # Old enough by now, but not touched since it was young, and not idle: not evictable.
    run(cache, fetch_request(session_id=s1, epoch=1), now_ms=900)
    assert new_session(cache, [("bar", i, 0) for i in range(9)], now_ms=1800) == 0
    run(cache, fetch_request(session_id=s1, epoch=2), now_ms=1800)
    assert new_session(cache, [("bar", i, 0) for i in range(9)], now_ms=1850) != 0


def test_is_from_follower_reads_replica_state_from_v15() -> None:
    assert is_from_follower(fetch_request(version=14, replica_id=1), 14)
    assert not is_from_follower(fetch_request(version=14), 14)
    assert is_from_follower(fetch_request(version=15, replica_id=0), 15)
    request = fetch_request(version=15)
    request.replica_id = 3  # ignored from v15
    assert not is_from_follower(request, 15)


# --- topic ids (v13+) -------------------------------------------------------------------------


def test_topic_ids_resolve_names_and_key_partitions() -> None:
    cache = make_cache()
    request = fetch_request(epoch=INITIAL_EPOCH, parts=[(FOO, 0, 1), (BAR, 0, 2)], version=13)
    ctx, response = run(cache, request, version=13)
    assert [(p.topic_id, p.topic) for p in ctx.partitions] == [(FOO, "foo"), (BAR, "bar")]
    assert answered(response) == [(FOO, 0), (BAR, 0)]
    assert [t.topic for t in response.responses] == ["foo", "bar"]
    sid = response.session_id
    session = cache.get(sid)
    assert session is not None and session.uses_topic_ids
    assert list(session.partitions) == [(FOO, 0), (BAR, 0)]

    # Forget by id; update by id.
    request = fetch_request(session_id=sid, epoch=1, parts=[(BAR, 0, 9)], forgotten=[(FOO, 0)], version=13)
    ctx, _ = run(cache, request, version=13)
    assert planned(ctx) == [("bar", 0, 9)]


def test_unknown_topic_id_is_answered_and_resolved_later() -> None:
    names: dict[uuid.UUID, str] = {BAR: "bar"}
    cache = make_cache(names=names)
    request = fetch_request(epoch=INITIAL_EPOCH, parts=[(FOO, 0, 0), (BAR, 0, 0)], version=16)
    ctx, response = run(cache, request, version=16)
    assert [p.topic for p in ctx.partitions] == [None, "bar"]
    assert answered(response) == [(FOO, 0), (BAR, 0)]
    foo_entry = response.responses[0]
    assert foo_entry.topic == "" and foo_entry.topic_id == FOO
    assert foo_entry.partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
    assert foo_entry.partitions[0].high_watermark == -1
    sid = response.session_id
    assert sid != 0

    # Still unknown: answered again (errors are always sent).
    _, response = run(cache, fetch_request(session_id=sid, epoch=1, version=16), version=16)
    assert answered(response) == [(FOO, 0)]

    # The id becomes known: the cached partition takes the name and is read normally.
    names[FOO] = "foo"
    ctx, response = run(cache, fetch_request(session_id=sid, epoch=2, version=16), version=16)
    assert [p.topic for p in ctx.partitions] == ["foo", "bar"]
    assert answered(response) == [(FOO, 0)]  # its error cleared, so it is sent once more
    assert response.responses[0].topic == "foo"

    # Once named it stays named, even if the broker forgets the id.
    names.clear()
    ctx, _ = run(cache, fetch_request(session_id=sid, epoch=3, version=16), version=16)
    assert [p.topic for p in ctx.partitions] == ["foo", "bar"]


def test_unknown_topic_id_can_be_forgotten() -> None:
    cache = make_cache(names={})
    sid = new_session(cache, [(FOO, 0, 0), (BAR, 0, 0)], version=13)
    ctx, _ = run(cache, fetch_request(session_id=sid, epoch=1, forgotten=[(FOO, 0)], version=13), version=13)
    assert [(p.topic_id, p.topic) for p in ctx.partitions] == [(BAR, None)]


@pytest.mark.parametrize(("created", "then"), [(12, 13), (13, 12), (11, 17)])
def test_switching_topic_id_use_mid_session_is_an_error(created: int, then: int) -> None:
    cache = make_cache()
    topic: Topic = FOO if created >= 13 else "foo"
    sid = new_session(cache, [(topic, 0, 0)], version=created)
    ctx, response = run(cache, fetch_request(session_id=sid, epoch=1, version=then), version=then)
    assert ctx.kind is ContextKind.SESSION_ERROR
    assert response.error_code == ErrorCode.FETCH_SESSION_TOPIC_ID_ERROR and response.session_id == 0
    # The session is untouched: the right version still works at the same epoch.
    ctx, _ = run(cache, fetch_request(session_id=sid, epoch=1, version=created), version=created)
    assert ctx.kind is ContextKind.INCREMENTAL


def test_same_name_different_id_are_different_partitions() -> None:
    # A topic deleted and re-created keeps its name but gets a new id.
    new_foo = uuid.UUID(int=0xF01)
    cache = make_cache(names={FOO: "foo", new_foo: "foo"})
    request = fetch_request(epoch=INITIAL_EPOCH, parts=[(FOO, 0, 0), (new_foo, 0, 0)], version=13)
    ctx, response = run(cache, request, version=13)
    assert len(ctx.partitions) == 2
    assert answered(response) == [(FOO, 0), (new_foo, 0)]
    assert len(response.responses) == 2


@pytest.mark.parametrize("version", [4, 7, 12, 13, 17])
def test_responses_encode_at_the_request_version(version: int) -> None:
    cache = make_cache()
    topic: Topic = FOO if version >= 13 else "foo"
    request = fetch_request(epoch=INITIAL_EPOCH if version >= 7 else FINAL_EPOCH,
                            parts=[(topic, 0, 0), (topic, 1, 0)], version=version)
    request = FetchRequest.decode(request.encode(version), version)
    _, response = run(cache, request, version=version, read=lambda p: pdata(records=b""))
    decoded = FetchResponse.decode(response.encode(version), version)
    assert [p.partition_index for p in decoded.responses[0].partitions] == [0, 1]
    assert decoded.session_id == (response.session_id if version >= 7 else 0)
