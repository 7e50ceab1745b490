"""A driver for GroupCoordinator in tests: a fake clock (plain ints), tokens, and a mailbox.

Every call goes through ``absorb``, which files completions under their tokens, keeps every
``__consumer_offsets`` record in order (so a test can replay them into a fresh coordinator) and
remembers abandoned tokens. Helpers speak the classic protocol the way a Java consumer does.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from broker.group import GroupCoordinator, GroupCoordinatorConfig, OffsetsRecord
from broker.group.coordinator import CoordinatorResult
from protocol.error_codes import ErrorCode
from protocol.messages.consumer_protocol_subscription import ConsumerProtocolSubscription
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from protocol.messages.heartbeat import HeartbeatRequest
from protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from protocol.messages.offset_delete import OffsetDeleteRequest, OffsetDeleteResponse
from protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse

RANGE = (("range", b"range-meta"),)
SESSION_MS = 10_000
REBALANCE_MS = 30_000


def subscription(*topics: str) -> bytes:
    """Consumer-protocol subscription metadata (version 0) for ``topics``."""
    return struct.pack(">h", 0) + ConsumerProtocolSubscription(topics=list(topics)).encode(0)


class CountingUuids:
    """Deterministic UUID strings: ...-000000000001, ...-000000000002, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"00000000-0000-4000-8000-{self.n:012d}"


class Harness:
    def __init__(self, **config: Any) -> None:
        self.config = GroupCoordinatorConfig(**config)
        self.coord = GroupCoordinator(self.config, new_uuid=CountingUuids())
        self.now = 0
        self.mailbox: dict[Hashable, Any] = {}
        self.records: list[OffsetsRecord] = []
        self.abandoned: list[Hashable] = []
        self._tokens = itertools.count(1)

    # --- plumbing ----------------------------------------------------------------------------------

    def absorb(self, result: CoordinatorResult[Any]) -> Any:
        for completion in result.completions:
            assert completion.token not in self.mailbox, f"token {completion.token} answered twice"
            self.mailbox[completion.token] = completion.response
        self.records.extend(result.records)
        self.abandoned.extend(result.abandoned)
        return result.response

    def token(self, prefix: str = "t") -> str:
        return f"{prefix}{next(self._tokens)}"

    def take(self, token: Hashable) -> Any:
        """The completion filed under ``token`` (fails if there is none)."""
        assert token in self.mailbox, f"no answer for {token}"
        return self.mailbox.pop(token)

    def advance(self, ms: int) -> None:
        self.now += ms
        self.absorb(self.coord.tick(self.now))

    def run_until(self, done: Callable[[], bool], *, limit_ms: int = 3_600_000) -> None:
        """Tick from deadline to deadline until ``done()`` (at most ``limit_ms`` of fake time)."""
        end = self.now + limit_ms
        while not done():
            deadline = self.coord.next_deadline_ms()
            assert deadline is not None and deadline <= end, "nothing left to wait for"
            self.advance_to(max(deadline, self.now))

    def advance_heartbeating(self, ms: int, group: str, members: Sequence[str], generation: int, *,
                             every_ms: int = 3_000) -> None:
        """Advance ``ms`` while ``members`` heartbeat every ``every_ms`` (each must get NONE)."""
        end = self.now + ms
        while self.now < end:
            self.advance(min(every_ms, end - self.now))
            for member_id in members:
                assert self.heartbeat(group, member_id, generation) == 0

    def advance_to(self, now: int) -> None:
        assert now >= self.now
        self.advance(now - self.now)

    # --- the classic protocol ----------------------------------------------------------------------

    def join(self, group: str, member_id: str = "", *, client: str = "client", instance: str | None = None,
             protocols: Sequence[tuple[str, bytes]] = RANGE, protocol_type: str = "consumer",
             session: int = SESSION_MS, rebalance: int = REBALANCE_MS, version: int = 9,
             token: Hashable | None = None, reason: str | None = None) -> tuple[Hashable, JoinGroupResponse | None]:
        """Send JoinGroup; returns (token, immediate response or None when parked)."""
        token = self.token("join") if token is None else token
        request = JoinGroupRequest(
            group_id=group, session_timeout_ms=session, rebalance_timeout_ms=rebalance, member_id=member_id,
            group_instance_id=instance, protocol_type=protocol_type,
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(n, m) for n, m in protocols],
            reason=reason,
        )
        result = self.coord.join_group(request, api_version=version, client_id=client, client_host="/10.0.0.1",
                                       token=token, now_ms=self.now)
        return token, self.absorb(result)

    def join_new(self, group: str, *, client: str = "client", **kw: Any) -> tuple[str, Hashable]:
        """The KIP-394 round trip: join without an id, get MEMBER_ID_REQUIRED, join with the id.

        Returns (member id, token of the second join, which is usually parked)."""
        _, first = self.join(group, client=client, **kw)
        assert first is not None and first.error_code == ErrorCode.MEMBER_ID_REQUIRED, first
        token, second = self.join(group, first.member_id, client=client, **kw)
        if second is not None:
            self.mailbox[token] = second
        return first.member_id, token

    def sync(self, group: str, member_id: str, generation: int, assignments: dict[str, bytes] | None = None, *,
             instance: str | None = None, protocol_type: str | None = "consumer", protocol_name: str | None = "range",
             version: int = 5, token: Hashable | None = None) -> tuple[Hashable, SyncGroupResponse | None]:
        token = self.token("sync") if token is None else token
        request = SyncGroupRequest(
            group_id=group, generation_id=generation, member_id=member_id, group_instance_id=instance,
            protocol_type=protocol_type, protocol_name=protocol_name,
            assignments=[SyncGroupRequest.SyncGroupRequestAssignment(m, a) for m, a in (assignments or {}).items()],
        )
        result = self.coord.sync_group(request, api_version=version, token=token, now_ms=self.now)
        return token, self.absorb(result)

    def heartbeat(self, group: str, member_id: str, generation: int, *, instance: str | None = None) -> int:
        request = HeartbeatRequest(group_id=group, generation_id=generation, member_id=member_id,
                                   group_instance_id=instance)
        response = self.absorb(self.coord.heartbeat(request, now_ms=self.now))
        return int(response.error_code)

    def leave(self, group: str, *members: tuple[str, str | None], version: int = 5) -> LeaveGroupResponse:
        if version <= 2:
            assert len(members) == 1
            request = LeaveGroupRequest(group_id=group, member_id=members[0][0])
        else:
            request = LeaveGroupRequest(group_id=group, members=[
                LeaveGroupRequest.MemberIdentity(member_id=m, group_instance_id=i) for m, i in members])
        response: LeaveGroupResponse = self.absorb(self.coord.leave_group(request, api_version=version, now_ms=self.now))
        return response

    def commit(self, group: str, offsets: dict[tuple[str, int], int | tuple[int, str | None]], *,
               member_id: str = "", generation: int = -1, instance: str | None = None, version: int = 8,
               retention_ms: int = -1, leader_epoch: int = -1) -> dict[tuple[str, int], int]:
        """OffsetCommit; returns {(topic, partition): error code}."""
        by_topic: dict[str, list[OffsetCommitRequest.OffsetCommitRequestPartition]] = {}
        for (topic, partition), value in offsets.items():
            offset, metadata = (value, "") if isinstance(value, int) else value
            by_topic.setdefault(topic, []).append(OffsetCommitRequest.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_leader_epoch=leader_epoch,
                committed_metadata=metadata))
        request = OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
            group_instance_id=instance, retention_time_ms=retention_ms,
            topics=[OffsetCommitRequest.OffsetCommitRequestTopic(t, ps) for t, ps in by_topic.items()])
        response: OffsetCommitResponse = self.absorb(
            self.coord.offset_commit(request, api_version=version, now_ms=self.now))
        return {(t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions}

    def fetch(self, group: str, topics: dict[str, list[int]] | None = None, *,
              require_stable: bool = False) -> dict[tuple[str, int], tuple[int, int, str | None, int]]:
        """One group's offsets (v8+ shape) as {(topic, partition): (offset, epoch, metadata, error)}."""
        response = self.absorb(self.coord.fetch_offsets(
            group, None if topics is None else list(topics.items()), require_stable=require_stable, now_ms=self.now))
        assert response.error_code == 0
        return {(t.name, p.partition_index): (p.committed_offset, p.committed_leader_epoch, p.metadata, p.error_code)
                for t in response.topics for p in t.partitions}

    def offset_fetch(self, request: OffsetFetchRequest, version: int) -> OffsetFetchResponse:
        response: OffsetFetchResponse = self.absorb(
            self.coord.offset_fetch(request, api_version=version, now_ms=self.now))
        return response

    def delete_offsets(self, group: str, topics: dict[str, list[int]]) -> OffsetDeleteResponse:
        request = OffsetDeleteRequest(group_id=group, topics=[
            OffsetDeleteRequest.OffsetDeleteRequestTopic(t, [OffsetDeleteRequest.OffsetDeleteRequestPartition(p)
                                                             for p in ps]) for t, ps in topics.items()])
        response: OffsetDeleteResponse = self.absorb(self.coord.offset_delete(request, now_ms=self.now))
        return response

    def describe(self, *groups: str, version: int = 5, include_ops: bool = False) -> DescribeGroupsResponse:
        request = DescribeGroupsRequest(groups=list(groups), include_authorized_operations=include_ops)
        response: DescribeGroupsResponse = self.absorb(
            self.coord.describe_groups(request, api_version=version, now_ms=self.now))
        return response

    def list_groups(self, states: Sequence[str] = (), types: Sequence[str] = ()) -> ListGroupsResponse:
        request = ListGroupsRequest(states_filter=list(states), types_filter=list(types))
        response: ListGroupsResponse = self.absorb(self.coord.list_groups(request, now_ms=self.now))
        return response

    def delete_groups(self, *groups: str) -> DeleteGroupsResponse:
        response: DeleteGroupsResponse = self.absorb(
            self.coord.delete_groups(DeleteGroupsRequest(groups_names=list(groups)), now_ms=self.now))
        return response

    # --- whole rounds ------------------------------------------------------------------------------

    def stable_group(self, group: str, n: int, *, instances: Sequence[str | None] | None = None,
                     protocols: Sequence[tuple[str, bytes]] = RANGE, protocol_type: str = "consumer",
                     assignments: dict[int, bytes] | None = None) -> tuple[list[str], int]:
        """Bring a new group of ``n`` members to Stable; returns (member ids, generation).

        Members join at once (dynamic ones through the KIP-394 round), the initial delay runs
        out, the leader (the first member) syncs the assignments, the followers sync too."""
        instances = list(instances) if instances is not None else [None] * n
        ids, tokens = [], []
        for i in range(n):
            if instances[i] is None:
                member_id, token = self.join_new(group, client=f"c{i}", protocols=protocols,
                                                 protocol_type=protocol_type)
            else:
                token, response = self.join(group, client=f"c{i}", instance=instances[i], protocols=protocols,
                                            protocol_type=protocol_type)
                assert response is None
                member_id = ""
            ids.append(member_id)
            tokens.append(token)
        self.run_until(lambda: all(t in self.mailbox for t in tokens))
        answers = [self.take(t) for t in tokens]
        ids = [a.member_id for a in answers]
        generation = answers[0].generation_id
        assert all(a.error_code == 0 and a.generation_id == generation for a in answers)
        leader = answers[0].leader
        assert leader == ids[0]
        plan = {ids[i]: (assignments or {}).get(i, f"assign-{i}".encode()) for i in range(n)}
        follower_tokens = []
        for member_id in ids[1:]:
            token, parked = self.sync(group, member_id, generation, instance=instances[ids.index(member_id)],
                                      protocol_type=protocol_type, protocol_name=protocols[0][0])
            assert parked is None
            follower_tokens.append(token)
        _, synced = self.sync(group, leader, generation, plan, instance=instances[0], protocol_type=protocol_type,
                              protocol_name=protocols[0][0])
        assert synced is not None and synced.error_code == 0
        for token in follower_tokens:
            assert self.take(token).error_code == 0
        return ids, generation
