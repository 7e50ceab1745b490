"""Goal: each rule of the Raft core, one at a time, on a single ``RaftNode`` fed hand-made
messages: vote granting (log up-to-dateness, one vote per epoch, persisted first), pre-votes that
change nothing, epoch fencing of every request kind, the diverging epoch a leader computes, the
high watermark rule (a majority, past the leader's epoch start, never back), fetch parking, the
follower's truncation and high watermark, check quorum and resignation, recovery from the
quorum-state file, observers, and the wire form of every message the core builds.

The whole-cluster behaviour under faults is tests/sim/test_raft_sim.py's job.
"""

from __future__ import annotations

import ast
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from protocol.error_codes import ErrorCode
from protocol.message import Message
from protocol.messages.add_raft_voter import AddRaftVoterRequest, AddRaftVoterResponse
from protocol.messages.begin_quorum_epoch import BeginQuorumEpochRequest, BeginQuorumEpochResponse
from protocol.messages.describe_quorum import DescribeQuorumRequest, DescribeQuorumResponse
from protocol.messages.end_quorum_epoch import EndQuorumEpochRequest, EndQuorumEpochResponse
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.fetch_snapshot import FetchSnapshotRequest, FetchSnapshotResponse
from protocol.messages.leader_change_message import LeaderChangeMessage
from protocol.messages.remove_raft_voter import RemoveRaftVoterRequest, RemoveRaftVoterResponse
from protocol.messages.vote import VoteRequest, VoteResponse
from protocol.records import CONTROL_KEY, ControlRecordType, NewRecord, build_batch, iter_batches
from replication.quorum_state import ElectionState, QuorumStateError, QuorumStateStore
from replication.raft import (
    METADATA_TOPIC,
    METADATA_TOPIC_ID,
    PRE_VOTE_TAG,
    WIRE_VERSIONS,
    CommitCursor,
    ProposeRejected,
    RaftConfig,
    RaftNode,
    RaftRole,
    SendRequest,
    SendResponse,
    is_pre_vote,
)
from storage.config import LogConfig
from storage.files import FileCache
from storage.fs import SimFileSystem, write_atomically
from storage.log import PartitionLog

LOG_DIR = "/meta/__cluster_metadata-0"
STATE = LOG_DIR + "/quorum-state"
CONFIG = RaftConfig()
DIRS = {n: uuid.UUID(int=100 + n) for n in (1, 2, 3)}
T0 = 1_000_000


class Box:
    """One node on its own simulated disk, rebuildable after a crash."""

    def __init__(self, node_id: int = 1, voters: dict[int, uuid.UUID | None] | None = None, *, seed: int = 7) -> None:
        self.node_id = node_id
        self.voters = dict(DIRS) if voters is None else voters
        self.fs = SimFileSystem()
        self.rng = random.Random(seed)
        self.directory = DIRS.get(node_id, uuid.UUID(int=999))
        self.node = self.open()

    def open(self, now_ms: int = T0) -> RaftNode:
        log = PartitionLog.load(FileCache(self.fs), LOG_DIR, METADATA_TOPIC, 0, LogConfig(), now_ms=now_ms, clean_shutdown=False)
        return RaftNode(
            node_id=self.node_id,
            directory_id=self.directory,
            voters=self.voters,
            cluster_id="c1",
            log=log,
            store=QuorumStateStore(self.fs, STATE),
            rng=self.rng,
            now_ms=now_ms,
            config=CONFIG,
        )

    def restart(self) -> RaftNode:
        self.fs.crash()
        self.node = self.open()
        return self.node

    def saved(self) -> ElectionState:
        state = QuorumStateStore(self.fs, STATE).read()
        assert state is not None
        return state


def write_log(box: Box, epochs: list[tuple[int, int]]) -> None:
    """Append batches of one record each: ``(epoch, count)`` runs, as if replicated."""
    log = box.node.log
    for epoch, count in epochs:
        for _ in range(count):
            b = build_batch([NewRecord(value=b"r%d" % log.log_end_offset)], base_offset=log.log_end_offset, partition_leader_epoch=epoch)
            log.append_as_follower(b, now_ms=T0)
    log.flush(now_ms=T0)


def vote_request(epoch: int, candidate: int, last_epoch: int, last_offset: int, *, pre_vote: bool = False,
                 voter: int = 1, voter_dir: uuid.UUID | None = None) -> VoteRequest:
    part = VoteRequest.PartitionData(
        candidate_epoch=epoch, candidate_id=candidate, candidate_directory_id=DIRS.get(candidate, uuid.UUID(int=0)),
        voter_directory_id=DIRS[voter] if voter_dir is None else voter_dir, last_offset_epoch=last_epoch, last_offset=last_offset,
    )
    if pre_vote:
        part.unknown_tagged_fields = [(PRE_VOTE_TAG, b"\x01")]
    return VoteRequest(cluster_id="c1", voter_id=voter, topics=[VoteRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[part])])


def vote_response(epoch: int, granted: bool, leader: int = -1, error: ErrorCode = ErrorCode.NONE) -> VoteResponse:
    part = VoteResponse.PartitionData(error_code=error, leader_id=leader, leader_epoch=epoch, vote_granted=granted)
    return VoteResponse(topics=[VoteResponse.TopicData(topic_name=METADATA_TOPIC, partitions=[part])])


def fetch_request(epoch: int, offset: int, last_epoch: int, *, replica: int = 2, wait_ms: int = 0,
                  directory: uuid.UUID | None = None) -> FetchRequest:
    part = FetchRequest.FetchPartition(
        current_leader_epoch=epoch, fetch_offset=offset, last_fetched_epoch=last_epoch, partition_max_bytes=1 << 20,
        replica_directory_id=DIRS.get(replica, uuid.UUID(int=0)) if directory is None else directory,
    )
    return FetchRequest(
        cluster_id="c1", replica_state=FetchRequest.ReplicaState(replica_id=replica), max_wait_ms=wait_ms,
        topics=[FetchRequest.FetchTopic(topic=METADATA_TOPIC, topic_id=METADATA_TOPIC_ID, partitions=[part])],
    )


def fetch_response(leader: int, epoch: int, *, records: bytes = b"", hw: int = -1,
                   diverging: tuple[int, int] | None = None, error: ErrorCode = ErrorCode.NONE) -> FetchResponse:
    part = FetchResponse.PartitionData(
        error_code=error, high_watermark=hw, records=records,
        current_leader=FetchResponse.LeaderIdAndEpoch(leader_id=leader, leader_epoch=epoch),
    )
    if diverging is not None:
        part.diverging_epoch = FetchResponse.EpochEndOffset(epoch=diverging[0], end_offset=diverging[1])
    return FetchResponse(responses=[FetchResponse.FetchableTopicResponse(topic=METADATA_TOPIC, topic_id=METADATA_TOPIC_ID, partitions=[part])])


def only(message: Message | None) -> Any:
    """The single partition of a quorum request or response."""
    assert message is not None
    if isinstance(message, FetchResponse):
        return message.responses[0].partitions[0]
    any_message: Any = message
    return any_message.topics[0].partitions[0]


def requests(effects: list[SendRequest | SendResponse], kind: type[Message]) -> list[SendRequest]:
    return [e for e in effects if isinstance(e, SendRequest) and isinstance(e.request, kind)]


def elect(box: Box, now_ms: int = T0 + 10_000) -> RaftNode:
    """Drive ``box``'s node from unattached to leader with node 2's (pre-)votes."""
    node = box.node
    pre = requests(node.poll(now_ms), VoteRequest)
    assert node.role is RaftRole.PROSPECTIVE and pre and all(is_pre_vote(only(e.request)) for e in pre)
    to2 = next(e for e in pre if e.destination == 2)
    node.handle_response(now_ms, 2, to2.correlation_id, vote_response(node.epoch, True))
    assert node.role is RaftRole.CANDIDATE
    votes = requests(node.poll(now_ms), VoteRequest)
    to2 = next(e for e in votes if e.destination == 2)
    node.handle_response(now_ms, 2, to2.correlation_id, vote_response(node.epoch, True))
    assert node.role is RaftRole.LEADER
    return node


def follow(box: Box, leader: int, epoch: int, now_ms: int = T0) -> RaftNode:
    begin = BeginQuorumEpochRequest(
        cluster_id="c1", voter_id=box.node_id,
        topics=[BeginQuorumEpochRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[
            BeginQuorumEpochRequest.PartitionData(voter_directory_id=box.directory, leader_id=leader, leader_epoch=epoch)])],
    )
    response = box.node.handle_request(now_ms, leader, 1, begin)
    assert isinstance(response, BeginQuorumEpochResponse) and only(response).error_code == 0
    assert box.node.role is RaftRole.FOLLOWER and box.node.leader_id == leader
    return box.node


# --- the quorum-state file ---------------------------------------------------------------------------


def test_quorum_state_round_trips_and_refuses_garbage() -> None:
    fs = SimFileSystem()
    fs.makedirs("/d")
    store = QuorumStateStore(fs, "/d/quorum-state")
    assert store.read() is None
    state = ElectionState(epoch=7, leader_id=2, voted_id=3, voted_directory_id=uuid.UUID(int=5))
    store.write(state)
    fs.crash()  # written atomically and synced: survives
    assert QuorumStateStore(fs, "/d/quorum-state").read() == state
    for bad in (b"{", b"[]", b'{"leaderEpoch": -1, "leaderId": -1, "votedId": -1, "data_version": 1}',
                b'{"leaderEpoch": 1, "leaderId": "x", "votedId": -1, "data_version": 1}',
                b'{"leaderEpoch": 1, "leaderId": -1, "votedId": -1, "data_version": 9}'):
        write_atomically(fs, "/d/quorum-state", bad)
        with pytest.raises(QuorumStateError):
            store.read()


# --- elections -----------------------------------------------------------------------------------------


def test_single_voter_elects_itself_and_commits_its_leader_change() -> None:
    box = Box(voters={1: DIRS[1]})
    node = box.node
    assert node.role is RaftRole.UNATTACHED and node.epoch == 0
    assert node.poll(T0) == []
    assert node.role is RaftRole.LEADER and node.epoch == 1
    assert box.saved() == ElectionState(epoch=1, leader_id=1, voted_id=1, voted_directory_id=DIRS[1])
    assert node.high_watermark == 1  # the LeaderChange record, committed by a majority of one
    [control] = node.read_committed(0)
    assert control.is_control and control.epoch == 1 and control.base_offset == 0
    raw = node.log.read(0, max_bytes=1 << 16).read_bytes()
    [record] = list(next(iter_batches(raw)).records())
    assert bytes(record.key or b"") == CONTROL_KEY.pack(0, ControlRecordType.LEADER_CHANGE)
    change = LeaderChangeMessage.decode(bytes(record.value or b""), 0)
    assert change.leader_id == 1 and [v.voter_id for v in change.voters] == [1]
    assert node.propose(T0, [b"a", b"b"]) == 2
    assert node.high_watermark == 3
    cursor = CommitCursor()
    batches = cursor.drain(node)
    assert [b.records for b in batches] == [(), (b"a", b"b")] and cursor.next_offset == 3
    assert cursor.drain(node) == []


def test_election_goes_through_pre_vote_then_vote_and_persists_each_step() -> None:
    box = Box()
    node = box.node
    writes = box.node.store.writes
    assert node.poll(T0 + 1) == [] and node.role is RaftRole.UNATTACHED  # before the election timeout
    effects = node.poll(T0 + 2 * CONFIG.election_timeout_ms)
    assert node.role is RaftRole.PROSPECTIVE and node.epoch == 0
    assert node.store.writes == writes, "a pre-vote round persists nothing"
    pre = requests(effects, VoteRequest)
    assert sorted(e.destination for e in pre) == [2, 3]
    p = only(pre[0].request)
    assert is_pre_vote(p) and p.candidate_epoch == 0 and p.candidate_id == 1
    node.handle_response(T0, pre[0].destination, pre[0].correlation_id, vote_response(0, True))
    assert node.role is RaftRole.CANDIDATE and node.epoch == 1
    assert box.saved() == ElectionState(epoch=1, voted_id=1, voted_directory_id=DIRS[1])
    votes = requests(node.poll(T0), VoteRequest)
    assert sorted(e.destination for e in votes) == [2, 3]
    assert not is_pre_vote(only(votes[0].request)) and only(votes[0].request).candidate_epoch == 1
    node.handle_response(T0, votes[1].destination, votes[1].correlation_id, vote_response(1, True))
    assert node.role is RaftRole.LEADER and box.saved().leader_id == 1
    assert node.log_end_offset == 1 and node.last_fetched_epoch == 1
    begins = requests(node.poll(T0), BeginQuorumEpochRequest)
    assert sorted(e.destination for e in begins) == [2, 3]


def test_a_stale_answer_is_ignored() -> None:
    box = Box()
    node = box.node
    pre = requests(node.poll(T0 + 10_000), VoteRequest)
    node.handle_response(T0, pre[0].destination, pre[0].correlation_id + 100, vote_response(0, True))
    assert node.role is RaftRole.PROSPECTIVE
    node.handle_response(T0, 3 if pre[0].destination == 2 else 2, pre[0].correlation_id, vote_response(0, True))
    assert node.role is RaftRole.PROSPECTIVE


def test_rejected_candidate_backs_off_and_a_higher_epoch_in_an_answer_is_followed() -> None:
    box = Box()
    node = box.node
    pre = requests(node.poll(T0 + 10_000), VoteRequest)
    node.handle_response(T0, pre[0].destination, pre[0].correlation_id, vote_response(0, True))
    votes = requests(node.poll(T0), VoteRequest)
    for e in votes:
        node.handle_response(T0, e.destination, e.correlation_id, vote_response(1, False))
    assert node.role is RaftRole.CANDIDATE and node.poll(T0) == []  # backing off, not re-asking
    assert node.next_deadline_ms() <= T0 + CONFIG.election_backoff_max_ms
    # An answer from a voter that already follows a leader of epoch 4.
    box2 = Box(seed=9)
    pre = requests(box2.node.poll(T0 + 10_000), VoteRequest)
    box2.node.handle_response(T0, pre[0].destination, pre[0].correlation_id,
                              vote_response(4, False, leader=3, error=ErrorCode.FENCED_LEADER_EPOCH))
    assert box2.node.role is RaftRole.FOLLOWER and box2.node.epoch == 4 and box2.node.leader_id == 3
    assert box2.saved() == ElectionState(epoch=4, leader_id=3)


# --- granting votes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_epoch", "last_offset", "granted"),
    [
        (2, 5, True),   # equal logs
        (2, 9, True),   # same last epoch, longer
        (3, 1, True),   # later last epoch, however short
        (2, 4, False),  # same last epoch, shorter
        (1, 50, False),  # earlier last epoch, however long
    ],
)
def test_vote_granted_only_to_a_log_at_least_as_up_to_date(last_epoch: int, last_offset: int, granted: bool) -> None:
    box = Box()
    write_log(box, [(1, 2), (2, 3)])  # our log ends at offset 5 in epoch 2
    response = box.node.handle_request(T0, 2, 1, vote_request(4, 2, last_epoch, last_offset))
    assert isinstance(response, VoteResponse)
    p = only(response)
    assert p.error_code == 0 and p.vote_granted is granted and p.leader_epoch == 4
    assert box.node.epoch == 4  # a real vote of a higher epoch moves us there either way
    assert box.saved().voted_id == (2 if granted else -1)


def test_one_vote_per_epoch_and_it_survives_a_crash() -> None:
    box = Box()
    assert only(box.node.handle_request(T0, 2, 1, vote_request(3, 2, 0, 0))).vote_granted
    assert box.saved() == ElectionState(epoch=3, voted_id=2, voted_directory_id=DIRS[2])  # before answering
    assert not only(box.node.handle_request(T0, 3, 2, vote_request(3, 3, 0, 0))).vote_granted
    assert only(box.node.handle_request(T0, 2, 3, vote_request(3, 2, 0, 0))).vote_granted
    node = box.restart()
    assert node.epoch == 3 and node.voted_id == 2
    assert not only(node.handle_request(T0, 3, 4, vote_request(3, 3, 0, 0))).vote_granted
    assert only(node.handle_request(T0, 3, 5, vote_request(4, 3, 0, 0))).vote_granted


def test_pre_vote_changes_nothing() -> None:
    box = Box()
    write_log(box, [(1, 2)])
    follow(box, 2, 2)
    writes = box.node.store.writes
    # A follower that has not fetched from its leader yet grants a pre-vote but keeps its epoch.
    p = only(box.node.handle_request(T0, 3, 1, vote_request(2, 3, 1, 2, pre_vote=True)))
    assert p.vote_granted and p.leader_id == 2 and p.leader_epoch == 2
    assert box.node.role is RaftRole.FOLLOWER and box.node.epoch == 2 and box.node.store.writes == writes
    # Not to a log behind ours.
    assert not only(box.node.handle_request(T0, 3, 2, vote_request(2, 3, 1, 1, pre_vote=True))).vote_granted
    # Once it has fetched from its leader it refuses (KIP-996: the leader is alive).
    fetch = requests(box.node.poll(T0), FetchRequest)[0]
    box.node.handle_response(T0, 2, fetch.correlation_id, fetch_response(2, 2, hw=2))
    assert not only(box.node.handle_request(T0, 3, 3, vote_request(2, 3, 1, 2, pre_vote=True))).vote_granted
    assert box.node.store.writes == writes


def test_leader_and_resigned_grant_nothing() -> None:
    box = Box()
    node = elect(box)
    for pre_vote in (True, False):
        assert not only(node.handle_request(T0, 3, 1, vote_request(node.epoch, 3, 1, 99, pre_vote=pre_vote))).vote_granted
    node.resign(T0)
    assert node.role is RaftRole.RESIGNED
    assert not only(node.handle_request(T0, 3, 2, vote_request(node.epoch, 3, 1, 99, pre_vote=True))).vote_granted


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (vote_request(0, 2, 0, 0), ErrorCode.INVALID_REQUEST),  # last epoch not below the candidate's
        (vote_request(3, 2, 3, 5), ErrorCode.INVALID_REQUEST),
        (vote_request(3, 2, 0, -1), ErrorCode.INVALID_REQUEST),
        (vote_request(3, 9, 0, 0), ErrorCode.INCONSISTENT_VOTER_SET),  # not a voter
        (vote_request(3, 2, 0, 0, voter_dir=uuid.UUID(int=55)), ErrorCode.INVALID_VOTER_KEY),  # meant for another disk
    ],
)
def test_vote_requests_that_are_refused(request_: VoteRequest, error: ErrorCode) -> None:
    box = Box()
    p = only(box.node.handle_request(T0, 2, 1, request_))
    assert p.error_code == error and not p.vote_granted


def test_requests_of_an_older_epoch_are_fenced() -> None:
    box = Box()
    box.node.handle_request(T0, 2, 1, vote_request(5, 2, 0, 0))
    assert box.node.epoch == 5
    vote = only(box.node.handle_request(T0, 3, 2, vote_request(4, 3, 0, 0)))
    assert vote.error_code == ErrorCode.FENCED_LEADER_EPOCH and vote.leader_epoch == 5
    begin = BeginQuorumEpochRequest(topics=[BeginQuorumEpochRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[
        BeginQuorumEpochRequest.PartitionData(leader_id=3, leader_epoch=4)])])
    assert only(box.node.handle_request(T0, 3, 3, begin)).error_code == ErrorCode.FENCED_LEADER_EPOCH
    fetch = only(box.node.handle_request(T0, 3, 4, fetch_request(4, 0, 0)))
    assert fetch.error_code == ErrorCode.FENCED_LEADER_EPOCH and fetch.current_leader.leader_epoch == 5
    fetch = only(box.node.handle_request(T0, 3, 5, fetch_request(6, 0, 0)))
    assert fetch.error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    fetch = only(box.node.handle_request(T0, 3, 6, fetch_request(5, 0, 0)))
    assert fetch.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    other = box.node.handle_request(T0, 3, 7, VoteRequest(cluster_id="other"))
    assert isinstance(other, VoteResponse) and other.error_code == ErrorCode.INCONSISTENT_CLUSTER_ID
    empty = box.node.handle_request(T0, 3, 8, VoteRequest(cluster_id="c1"))
    assert isinstance(empty, VoteResponse) and empty.error_code == ErrorCode.INVALID_REQUEST


# --- the leader's side of fetching --------------------------------------------------------------------


def leader_over(epochs: list[tuple[int, int]], saved_epoch: int) -> tuple[Box, RaftNode]:
    """A leader (of epoch saved_epoch + 1) whose log held ``epochs`` before its own record."""
    box = Box()
    write_log(box, epochs)
    box.node.store.write(ElectionState(epoch=saved_epoch))
    box.node = box.open()
    return box, elect(box)


def test_diverging_epoch_is_where_the_followers_epoch_ends_here() -> None:
    box, node = leader_over([(1, 3), (3, 3)], saved_epoch=3)  # epochs 1: [0,3), 3: [3,6), 4: [6,7)
    assert node.epoch == 4 and node.log_end_offset == 7

    def diverging(offset: int, last_epoch: int) -> tuple[int, int] | None:
        p = only(node.handle_request(T0, 2, 1, fetch_request(4, offset, last_epoch)))
        assert p.error_code == 0
        d = p.diverging_epoch
        return None if d.epoch < 0 and d.end_offset < 0 else (d.epoch, d.end_offset)

    assert diverging(3, 1) is None
    assert diverging(6, 3) is None
    assert diverging(0, 0) is None
    assert diverging(5, 2) == (1, 3)  # epoch 2 never was here: epoch 1 ends at 3
    assert diverging(4, 1) == (1, 3)  # epoch 1 ended at 3, not 4
    assert diverging(8, 3) == (3, 6)  # longer than our epoch 3
    assert diverging(9, 4) == (4, 7)  # beyond our end in our own epoch


def test_high_watermark_needs_a_majority_past_the_epoch_start_and_never_goes_back() -> None:
    box, node = leader_over([(1, 3)], saved_epoch=1)  # old entries [0,3), our record at 3
    assert node.epoch == 2
    node.handle_request(T0, 2, 1, fetch_request(2, 3, 1))  # node 2 has every old entry ...
    assert node.high_watermark == 0, "... but an older epoch's entries wait for one of ours"
    assert only(node.handle_request(T0, 3, 2, fetch_request(2, 3, 1))).high_watermark == -1
    node.handle_request(T0, 2, 3, fetch_request(2, 4, 2))
    assert node.high_watermark == 4
    assert node.propose(T0, [b"x"]) == 4
    node.handle_request(T0, 3, 4, fetch_request(2, 5, 2))
    assert node.high_watermark == 5
    node.handle_request(T0, 3, 5, fetch_request(2, 0, 0))  # node 3 lost its log (or is behind)
    node.handle_request(T0, 2, 6, fetch_request(2, 2, 1))
    assert node.high_watermark == 5
    # An observer's progress never counts.
    node.propose(T0, [b"y"])
    node.handle_request(T0, 9, 7, fetch_request(2, 6, 2, replica=9))
    assert node.high_watermark == 5
    # Nor a voter id fetching from another disk than the one the voter set records.
    node.handle_request(T0, 2, 8, fetch_request(2, 6, 2, directory=uuid.UUID(int=77)))
    assert node.high_watermark == 5
    node.handle_request(T0, 2, 9, fetch_request(2, 6, 2))
    assert node.high_watermark == 6


def test_fetch_at_the_end_is_parked_until_data_or_its_wait_ends() -> None:
    box, node = leader_over([], saved_epoch=0)
    end = node.log_end_offset
    assert node.handle_request(T0, 2, 41, fetch_request(1, end, 1, wait_ms=400)) is None
    assert node.poll(T0 + 100) == [] or all(not isinstance(e, SendResponse) for e in node.poll(T0 + 100))
    node.propose(T0 + 150, [b"z"])
    [done] = [e for e in node.poll(T0 + 150) if isinstance(e, SendResponse)]
    assert done.destination == 2 and done.correlation_id == 41
    records = only(done.response).records
    assert [bytes(r.value or b"") for v in iter_batches(records) for r in v.records()] == [b"z"]
    end = node.log_end_offset
    assert node.handle_request(T0 + 200, 3, 42, fetch_request(1, end, 1, wait_ms=400, replica=3)) is None
    assert node.next_deadline_ms() <= T0 + 200 + 400
    [expired] = [e for e in node.poll(T0 + 600) if isinstance(e, SendResponse)]
    assert expired.correlation_id == 42 and not only(expired.response).records


def test_check_quorum_resigns_a_leader_nobody_fetches_from_and_tells_the_voters() -> None:
    box = Box()
    t = T0 + 10_000
    node = elect(box, t)
    node.handle_request(t + 1_000, 2, 1, fetch_request(node.epoch, 1, 1))  # one fetch: a majority with us
    node.poll(t + 1_000 + CONFIG.check_quorum_ms - 1)
    assert node.role is RaftRole.LEADER
    effects = node.poll(t + 1_000 + CONFIG.check_quorum_ms)
    assert node.role is RaftRole.RESIGNED and node.leader_id == 1
    ends = requests(effects, EndQuorumEpochRequest)
    assert sorted(e.destination for e in ends) == [2, 3]
    p = only(ends[0].request)
    assert [c.candidate_id for c in p.preferred_candidates] == [2, 3]  # node 2 fetched most
    assert node.propose(T0, [b"late"]) == ProposeRejected(error=ErrorCode.NOT_LEADER_OR_FOLLOWER, message="node 1 is not the leader")


def test_end_quorum_epoch_shortens_the_followers_wait_by_its_rank() -> None:
    box = Box()
    node = follow(box, 3, 2)
    fetch = requests(node.poll(T0), FetchRequest)[0]
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 2, hw=0))
    end = EndQuorumEpochRequest(cluster_id="c1", topics=[EndQuorumEpochRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[
        EndQuorumEpochRequest.PartitionData(leader_id=3, leader_epoch=2, preferred_candidates=[
            EndQuorumEpochRequest.ReplicaInfo(candidate_id=1), EndQuorumEpochRequest.ReplicaInfo(candidate_id=2)])])])
    response = node.handle_request(T0 + 10, 3, 2, end)
    assert isinstance(response, EndQuorumEpochResponse) and only(response).error_code == 0
    assert node.next_deadline_ms() <= T0 + 10  # first choice: campaign now
    node.poll(T0 + 10)
    assert node.role is RaftRole.PROSPECTIVE and node.epoch == 2


# --- the follower's side --------------------------------------------------------------------------------


def test_follower_truncates_to_the_diverging_epoch_and_takes_the_validated_high_watermark() -> None:
    box = Box()
    write_log(box, [(1, 3), (2, 4)])  # epoch 2 at [3,7): not on the leader
    node = follow(box, 3, 4)
    fetch = requests(node.poll(T0), FetchRequest)[0]
    p = only(fetch.request)
    assert (p.fetch_offset, p.last_fetched_epoch, p.current_leader_epoch) == (7, 2, 4)
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 4, diverging=(1, 3), hw=5))
    assert node.log_end_offset == 3 and node.last_fetched_epoch == 1
    assert node.high_watermark == 0, "nothing was validated by that answer"
    fetch = requests(node.poll(T0), FetchRequest)[0]
    assert only(fetch.request).fetch_offset == 3
    records = b"".join(
        build_batch([NewRecord(value=b"n%d" % o)], base_offset=o, partition_leader_epoch=4) for o in (3, 4)
    )
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 4, records=records + records[:20], hw=9))
    assert node.log_end_offset == 5 and node.last_fetched_epoch == 4  # the partial batch is dropped
    assert node.high_watermark == 5  # the leader's is 9, but we hold only up to 5
    fetch = requests(node.poll(T0), FetchRequest)[0]
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 4, hw=3))
    assert node.high_watermark == 5, "never back"


def test_leader_high_watermark_is_what_the_leader_last_reported() -> None:
    """What a state machine compares its position with to know it is caught up: a follower's
    own high watermark is capped at what it holds, the leader's report is not; a new leader
    that does not know its high watermark yet reports -1, and so does a node with no leader."""
    box = Box()
    node = follow(box, 3, 4)
    assert node.leader_high_watermark == -1, "nothing heard from the leader yet"
    fetch = requests(node.poll(T0), FetchRequest)[0]
    records = b"".join(build_batch([NewRecord(value=b"n%d" % o)], base_offset=o, partition_leader_epoch=4)
                       for o in (0, 1))
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 4, records=records, hw=9))
    assert (node.high_watermark, node.leader_high_watermark) == (2, 9)  # behind: 9 is committed, 2 held
    fetch = requests(node.poll(T0), FetchRequest)[0]
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 4, hw=-1))
    assert (node.high_watermark, node.leader_high_watermark) == (2, -1)  # the leader no longer knows
    node.poll(T0 + 60_000)  # no leader heard within the fetch timeout: an election starts
    assert node.role is not RaftRole.FOLLOWER and node.leader_high_watermark == -1


def test_follower_never_truncates_below_its_high_watermark() -> None:
    box = Box()
    write_log(box, [(1, 4)])
    node = follow(box, 3, 2)
    fetch = requests(node.poll(T0), FetchRequest)[0]
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 2, hw=4))
    assert node.high_watermark == 4
    fetch = requests(node.poll(T0), FetchRequest)[0]
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(3, 2, diverging=(1, 2)))
    assert node.log_end_offset == 4 and node.high_watermark == 4


def test_fetch_errors_teach_the_follower_the_new_leader() -> None:
    box = Box()
    node = follow(box, 3, 2)
    fetch = requests(node.poll(T0), FetchRequest)[0]
    node.handle_response(T0, 3, fetch.correlation_id, fetch_response(2, 5, error=ErrorCode.FENCED_LEADER_EPOCH))
    assert node.role is RaftRole.FOLLOWER and node.leader_id == 2 and node.epoch == 5
    assert box.saved() == ElectionState(epoch=5, leader_id=2)
    assert [e.destination for e in requests(node.poll(T0), FetchRequest)] == [2]


def test_fetch_timeout_makes_a_follower_prospective() -> None:
    box = Box()
    node = follow(box, 3, 2)
    node.poll(T0)
    node.poll(T0 + CONFIG.fetch_timeout_ms - 1)
    assert node.role is RaftRole.FOLLOWER
    effects = node.poll(T0 + CONFIG.fetch_timeout_ms)
    assert node.role is RaftRole.PROSPECTIVE and node.epoch == 2
    assert {e.destination for e in requests(effects, VoteRequest)} == {2, 3}


# --- recovery and observers --------------------------------------------------------------------------


def test_a_leader_restarts_resigned_and_a_candidate_keeps_its_vote() -> None:
    box = Box()
    elect(box)
    node = box.restart()
    assert node.role is RaftRole.RESIGNED and node.epoch == 1
    assert node.propose(T0, [b"x"]) == ProposeRejected(error=ErrorCode.NOT_LEADER_OR_FOLLOWER, message="node 1 is not the leader")
    box2 = Box(seed=3)
    pre = requests(box2.node.poll(T0 + 10_000), VoteRequest)
    box2.node.handle_response(T0, pre[0].destination, pre[0].correlation_id, vote_response(0, True))
    node2 = box2.restart()
    assert node2.role is RaftRole.UNATTACHED and node2.epoch == 1 and node2.voted_id == 1
    assert not only(node2.handle_request(T0, 2, 1, vote_request(1, 2, 0, 0))).vote_granted


def test_a_lost_disk_makes_a_voter_an_observer() -> None:
    box = Box()
    box.directory = uuid.UUID(int=4242)  # formatted anew: not the directory the voter set records
    node = box.restart()
    assert not node.is_voter
    effects = node.poll(T0 + 60_000)
    assert node.role is RaftRole.UNATTACHED and not requests(effects, VoteRequest)
    [probe] = requests(effects, FetchRequest)  # asks some voter who leads
    node.handle_response(T0, probe.destination, probe.correlation_id, fetch_response(3, 6, error=ErrorCode.FENCED_LEADER_EPOCH))
    assert node.role is RaftRole.FOLLOWER and node.leader_id == 3 and node.epoch == 6
    p = only(node.handle_request(T0, 2, 9, vote_request(7, 2, 0, 0, voter_dir=DIRS[1])))
    assert p.error_code == ErrorCode.INCONSISTENT_VOTER_SET and not p.vote_granted
    node.poll(T0 + 60_000 + 10 * CONFIG.fetch_timeout_ms)
    assert node.role is not RaftRole.PROSPECTIVE


def test_describe_quorum_and_fetch_snapshot() -> None:
    box = Box()
    node = follow(box, 3, 2)
    request = DescribeQuorumRequest(topics=[DescribeQuorumRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[
        DescribeQuorumRequest.PartitionData()])])
    p = only(node.handle_request(T0, 9, 1, request))
    assert p.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER and p.leader_id == 3
    box2 = Box(seed=5)
    leader = elect(box2)
    leader.handle_request(T0 + 5, 2, 1, fetch_request(1, 1, 1))
    response = leader.handle_request(T0 + 6, 9, 2, request)
    assert isinstance(response, DescribeQuorumResponse)
    p = only(response)
    assert p.error_code == 0 and p.leader_id == 1 and p.high_watermark == 1
    assert [(v.replica_id, v.log_end_offset, v.last_fetch_timestamp) for v in p.current_voters] == [
        (1, 1, T0 + 6), (2, 1, T0 + 5), (3, -1, -1)]
    snapshot = FetchSnapshotRequest(topics=[FetchSnapshotRequest.TopicSnapshot(name=METADATA_TOPIC, partitions=[
        FetchSnapshotRequest.PartitionSnapshot(current_leader_epoch=1)])])
    answer = leader.handle_request(T0, 2, 3, snapshot)
    assert isinstance(answer, FetchSnapshotResponse)
    assert answer.topics[0].partitions[0].error_code == ErrorCode.SNAPSHOT_NOT_FOUND


def test_propose_refusals() -> None:
    box = Box(voters={1: DIRS[1]})
    node = box.node
    def error(result: int | ProposeRejected) -> ErrorCode:
        assert isinstance(result, ProposeRejected), result
        return result.error

    assert error(node.propose(T0, [b"x"])) == ErrorCode.NOT_LEADER_OR_FOLLOWER  # not yet leader
    node.poll(T0)
    assert error(node.propose(T0, [b"x"], epoch=node.epoch + 1)) == ErrorCode.FENCED_LEADER_EPOCH
    assert error(node.propose(T0, [])) == ErrorCode.INVALID_REQUEST
    assert error(node.propose(T0, [b"x" * (CONFIG.propose_bytes_max + 1)])) == ErrorCode.RECORD_LIST_TOO_LARGE
    assert node.propose(T0, [b"ok"], epoch=node.epoch) == 1


# --- wire form, configuration, purity -----------------------------------------------------------------


def test_every_message_the_core_builds_survives_its_wire_version() -> None:
    """Encode and decode at ``WIRE_VERSIONS``: the fields the core fills exist there, and the
    pre-vote marker (a tagged field) survives."""
    box = Box()
    sent: list[Message] = []
    node = box.node
    effects = node.poll(T0 + 10_000)
    sent += [e.request for e in requests(effects, VoteRequest)]
    node.handle_response(T0, 2, effects[0].correlation_id if effects[0].destination == 2 else effects[1].correlation_id,
                         vote_response(0, True))
    sent += [e.request for e in requests(node.poll(T0), VoteRequest)]
    leader = elect(Box(seed=4))
    sent += [e.request for e in requests(leader.poll(T0), BeginQuorumEpochRequest)]
    leader.resign(T0)
    sent += [e.request for e in requests(leader.poll(T0), EndQuorumEpochRequest)]
    follower = follow(Box(seed=6), 3, 2)
    sent += [e.request for e in requests(follower.poll(T0), FetchRequest)]
    for request in (vote_request(1, 2, 0, 0), fetch_request(1, 0, 0)):
        response = leader.handle_request(T0, 2, 1, request)
        assert response is not None
        sent.append(response)
    kinds = set()
    for message in sent:
        version = WIRE_VERSIONS[message.API_KEY]
        again = type(message).decode(message.encode(version), version)
        if isinstance(message, FetchRequest) and isinstance(again, FetchRequest):
            assert again.topics[0].topic == ""  # v13+ names the topic by id only
            again.topics[0].topic = message.topics[0].topic
        if isinstance(message, FetchResponse) and isinstance(again, FetchResponse):
            assert again.responses[0].topic == ""
            again.responses[0].topic = message.responses[0].topic
            part = again.responses[0].partitions[0]
            assert bytes(part.records or b"") == bytes(message.responses[0].partitions[0].records or b"")  # type: ignore[arg-type]
            part.records = message.responses[0].partitions[0].records
        assert again == message, type(message).__name__
        kinds.add(type(message).__name__)
    assert {"VoteRequest", "BeginQuorumEpochRequest", "EndQuorumEpochRequest", "FetchRequest"} <= kinds
    pre = [m for m in sent if isinstance(m, VoteRequest) and is_pre_vote(only(m))]
    assert pre and all(only(m).candidate_epoch == 0 for m in pre)


def test_config_from_broker_properties() -> None:
    config = RaftConfig.from_properties({
        "controller.quorum.election.timeout.ms": 300, "controller.quorum.fetch.timeout.ms": 900, "unrelated": 1,
    })
    assert (config.election_timeout_ms, config.fetch_timeout_ms, config.check_quorum_ms) == (300, 900, 1350)
    assert config.request_timeout_ms == RaftConfig().request_timeout_ms
    with pytest.raises(ValueError):
        RaftConfig(election_timeout_ms=0)


FORBIDDEN = {"trio", "asyncio", "socket", "selectors", "threading", "os", "io", "time", "random", "subprocess"}


@pytest.mark.parametrize("module", ["raft.py", "quorum_state.py", "snapshot.py"])
def test_replication_core_is_sans_io(module: str) -> None:
    path = Path(__file__).resolve().parents[2] / "replication" / module
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    assert names and not [n for n in names if n.split(".")[0] in FORBIDDEN]


# --- the voter set in the log (KIP-853) ---------------------------------------------------------------

UNBOUND = dict.fromkeys(DIRS)  # controller.quorum.voters: ids only


def fetch_up(node: RaftNode, replica: int, now_ms: int, *, directory: uuid.UUID | None = None) -> FetchResponse:
    """``replica`` fetches at the leader's log end (it has everything), with its directory id."""
    response = node.handle_request(now_ms, replica, 1, fetch_request(
        node.epoch, node.log_end_offset, node.last_fetched_epoch, replica=replica, directory=directory))
    assert isinstance(response, FetchResponse) and only(response).error_code == 0, response
    return response


def control_types(node: RaftNode) -> list[tuple[int, int]]:
    """(offset, control type) of every control record in ``node``'s log."""
    out = []
    for batch in iter_batches(node.log.read(0, max_bytes=1 << 20).read_bytes()):
        if batch.is_control:
            for r in batch.records():
                assert r.key is not None
                out.append((r.offset, CONTROL_KEY.unpack_from(r.key, 0)[1]))
    return out


def bound_leader(now_ms: int = T0 + 10_000) -> tuple[Box, RaftNode]:
    """Node 1 leads a quorum configured without directory ids and records all three."""
    box = Box(1, voters=dict(UNBOUND))
    node = elect(box, now_ms)
    for replica in (2, 3, 2, 3):
        fetch_up(node, replica, now_ms)
        node.poll(now_ms)
    fetch_up(node, 2, now_ms)
    node.poll(now_ms)
    assert node.voter_set.directories == DIRS and node.high_watermark == node.log_end_offset
    return box, node


def test_voter_set_records_round_trip_in_kafkas_layout() -> None:
    from protocol.messages.voters_record import VotersRecord
    from replication.snapshot import SnapshotId, decode_snapshot, encode_snapshot
    from replication.voters import ControlFound, Endpoint, Voter, VoterSet, VoterSetHistory

    vs = VoterSet.of([Voter(1, DIRS[1], (Endpoint("CONTROLLER", "h1", 9093),)), Voter(2, None)])
    record = VotersRecord.decode(vs.encode(), 0)
    assert [(v.voter_id, v.voter_directory_id) for v in record.voters] == [(1, DIRS[1]), (2, uuid.UUID(int=0))]
    assert record.voters[0].endpoints[0].host == "h1" and record.voters[0].k_raft_version_feature.max_supported_version == 1
    assert VoterSet.decode(vs.encode()) == vs
    assert vs.is_voter(2, uuid.UUID(int=9)) and vs.is_voter(1, DIRS[1]) and not vs.is_voter(1, DIRS[2])
    assert vs.has_exact(2, None) and not vs.has_exact(1, None)
    history = VoterSetHistory(VoterSet.from_directories(UNBOUND))
    history.add(ControlFound(5, kraft_version=1))
    history.add(ControlFound(6, voters=vs))
    assert history.latest == vs and history.at(6) == history.static and history.at(7) == vs
    assert history.kraft_version == 1 and history.kraft_version_at(5) == 0
    assert history.truncate_to(6) and history.latest == history.static and history.kraft_version == 1
    # In a snapshot: after the header, in the header's batch, and read back.
    sid = SnapshotId(10, 2)
    contents = decode_snapshot(sid, encode_snapshot(sid, [b"x"], last_contained_timestamp_ms=1, now_ms=2, voters=vs,
                                                    kraft_version=1))
    assert contents.voters == vs and contents.kraft_version == 1 and contents.records == (b"x",)
    assert decode_snapshot(sid, encode_snapshot(sid, [b"x"], last_contained_timestamp_ms=1, now_ms=2)).voters is None


def test_leader_records_directory_ids_one_at_a_time_once_each_is_caught_up() -> None:
    box = Box(1, voters=dict(UNBOUND))
    now = T0 + 10_000
    node = elect(box, now)
    assert node.kraft_version == 0 and not node.voter_set_recorded
    node.poll(now)
    assert node.log_end_offset == 1, "nothing before the high watermark of this epoch is known"
    fetch_up(node, 2, now)
    node.poll(now)
    # Its own first, with the KRaftVersionRecord, in one control batch.
    assert control_types(node) == [(0, ControlRecordType.LEADER_CHANGE), (1, ControlRecordType.KRAFT_VERSION),
                                   (2, ControlRecordType.KRAFT_VOTERS)]
    assert node.voter_set.directories == {1: DIRS[1], 2: None, 3: None} and node.kraft_version == 1
    node.poll(now)
    assert node.log_end_offset == 3, "one change at a time: the last one is not committed"
    fetch_up(node, 3, now - 10 * CONFIG.fetch_timeout_ms)  # an old fetch: 3 is not known to be caught up
    fetch_up(node, 2, now)
    node.poll(now)
    assert node.voter_set.directories == {1: DIRS[1], 2: DIRS[2], 3: None}
    assert node.committed_voter_set.directories == {1: DIRS[1], 2: None, 3: None}
    fetch_up(node, 2, now)
    node.poll(now)
    assert node.log_end_offset == 4 and node.committed_voter_set.directories[2] == DIRS[2]
    fetch_up(node, 3, now)
    node.poll(now)
    assert node.voter_set.directories == DIRS
    assert [t for _, t in control_types(node)].count(ControlRecordType.KRAFT_VERSION) == 1
    # A snapshot keeps the voter set it ends under, and a restart reads it back from the log.
    fetch_up(node, 2, now)
    end = node.high_watermark
    sid = node.create_snapshot(now, end_offset=end, epoch=node.epoch, last_contained_timestamp_ms=now, records=[])
    assert sid is not None and node.read_snapshot(sid).voters == node.voter_set
    assert box.restart().voter_set.directories == DIRS


def test_without_recording_the_voter_set_stays_static() -> None:
    box = Box(1, voters=dict(UNBOUND))
    box.node.config = RaftConfig(bind_directory_ids=False)
    now = T0 + 10_000
    node = elect(box, now)
    for _ in range(3):
        fetch_up(node, 2, now)
        fetch_up(node, 3, now)
        node.poll(now)
    assert node.log_end_offset == 1 and node.voter_set.directories == UNBOUND and node.kraft_version == 0
    answer = node.handle_request(now, -1, 9, RemoveRaftVoterRequest(cluster_id="c1", voter_id=3))
    assert isinstance(answer, RemoveRaftVoterResponse) and answer.error_code == ErrorCode.UNSUPPORTED_VERSION


def test_follower_uses_the_latest_voter_set_in_its_log_and_forgets_a_truncated_one() -> None:
    from replication.voters import VoterSet, voters_batch_records

    box = Box(2, voters=dict(UNBOUND))
    node = follow(box, 1, 1)
    write_log(box, [(1, 2)])
    other = uuid.UUID(int=77)  # the voter set records another directory for node 2: an old disk
    vs = VoterSet.from_directories({1: DIRS[1], 2: other, 3: DIRS[3]})
    batch = build_batch(voters_batch_records(vs, now_ms=T0, kraft_version=1), base_offset=2, partition_leader_epoch=1,
                        is_control=True)
    assert node.is_voter
    node.handle_response(T0, 1, next(e for e in node.poll(T0) if isinstance(e, SendRequest)).correlation_id,
                         fetch_response(1, 1, records=batch, hw=2))
    assert node.log_end_offset == 4 and node.voter_set == vs and not node.is_voter, "uncommitted, yet in force"
    assert node.committed_voter_set.directories == UNBOUND
    # The leader's log diverges at offset 2 (its next answer says so): the record goes, and the
    # static voter set is back.
    fetch = next(e for e in node.poll(T0 + 1) if isinstance(e, SendRequest))
    node.handle_response(T0 + 1, 1, fetch.correlation_id, fetch_response(1, 1, diverging=(1, 2)))
    assert node.log_end_offset == 2 and node.voter_set.directories == UNBOUND and node.is_voter
    # Recorded again, it is an observer once more: at its fetch timeout it does not campaign.
    fetch = next(e for e in node.poll(T0 + 2) if isinstance(e, SendRequest))
    node.handle_response(T0 + 2, 1, fetch.correlation_id, fetch_response(1, 1, records=batch, hw=2))
    assert not node.is_voter and box.restart().voter_set == vs
    node = box.node
    node.poll(T0 + 10 * CONFIG.fetch_timeout_ms)
    assert node.role is RaftRole.UNATTACHED


def test_remove_and_add_voter_rules_and_error_codes() -> None:
    box, node = bound_leader()
    now = T0 + 10_000

    def call(request: Message) -> Message | None:
        return node.handle_request(now, -1, 42, request)

    def error(answer: Message | None) -> int:
        assert isinstance(answer, RemoveRaftVoterResponse | AddRaftVoterResponse), answer
        return answer.error_code

    def answered(effects: list[SendRequest | SendResponse]) -> list[int]:
        return [e.response.error_code for e in effects if isinstance(e, SendResponse)
                and isinstance(e.response, RemoveRaftVoterResponse | AddRaftVoterResponse)]

    def add(voter: int, directory: uuid.UUID, timeout_ms: int = 5_000) -> Message | None:
        return call(AddRaftVoterRequest(cluster_id="c1", timeout_ms=timeout_ms, voter_id=voter, voter_directory_id=directory,
                                        listeners=[AddRaftVoterRequest.Listener(name="CONTROLLER", host="h", port=9)]))

    new_dir = uuid.UUID(int=333)
    follower = Box(2, voters=dict(UNBOUND)).node
    assert error(follower.handle_request(now, -1, 1, RemoveRaftVoterRequest(cluster_id="c1", voter_id=3))) == \
        ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert error(call(RemoveRaftVoterRequest(cluster_id="other", voter_id=3, voter_directory_id=DIRS[3]))) == \
        ErrorCode.INCONSISTENT_CLUSTER_ID
    # The voter key must match exactly: another directory, no directory, an unknown id.
    for voter, directory in ((3, new_dir), (3, uuid.UUID(int=0)), (9, DIRS[1])):
        assert error(call(RemoveRaftVoterRequest(cluster_id="c1", voter_id=voter, voter_directory_id=directory))) == \
            ErrorCode.VOTER_NOT_FOUND
    assert error(add(2, new_dir)) == ErrorCode.DUPLICATE_VOTER
    # Remove (3, its old directory): in force at once, answered when committed.
    assert call(RemoveRaftVoterRequest(cluster_id="c1", voter_id=3, voter_directory_id=DIRS[3])) is None
    assert node.voter_set.directories == {1: DIRS[1], 2: DIRS[2]}
    assert error(call(RemoveRaftVoterRequest(cluster_id="c1", voter_id=2, voter_directory_id=DIRS[2]))) == \
        ErrorCode.REQUEST_TIMED_OUT, "one change at a time"
    assert answered(node.poll(now)) == []
    fetch_up(node, 3, now, directory=new_dir)  # 3, wiped, fetches: an observer, it counts for nothing
    assert answered(node.poll(now)) == [] and node.high_watermark < node.log_end_offset
    fetch_up(node, 2, now)  # the majority of the new set {1, 2}
    assert answered(node.poll(now)) == [ErrorCode.NONE]
    # Add (3, new directory): not before it has fetched up to the high watermark.
    node.propose(now, [b"more"])
    fetch_up(node, 2, now)
    assert error(add(3, new_dir)) == ErrorCode.REQUEST_TIMED_OUT, "3 lags behind the high watermark"
    assert error(add(3, uuid.UUID(int=0))) == ErrorCode.INVALID_REQUEST
    fetch_up(node, 3, now, directory=new_dir)
    assert error(add(3, DIRS[3])) == ErrorCode.REQUEST_TIMED_OUT, "the old directory is not the one that caught up"
    assert add(3, new_dir, timeout_ms=1_000) is None
    assert node.voter_set.directories == {1: DIRS[1], 2: DIRS[2], 3: new_dir}
    assert answered(node.poll(now + 1_000)) == [ErrorCode.REQUEST_TIMED_OUT], "not committed within its timeout"
    fetch_up(node, 3, now + 1_000, directory=new_dir)
    node.poll(now + 1_000)
    assert node.committed_voter_set.directories[3] == new_dir
    described = node.handle_request(now + 1_000, -1, 1, DescribeQuorumRequest(topics=[
        DescribeQuorumRequest.TopicData(topic_name=METADATA_TOPIC, partitions=[DescribeQuorumRequest.PartitionData()])]))
    voters = only(described).current_voters
    assert [(v.replica_id, v.replica_directory_id) for v in voters] == [(1, DIRS[1]), (2, DIRS[2]), (3, new_dir)]


def test_a_leader_that_removes_itself_resigns_once_that_commits() -> None:
    box, node = bound_leader()
    now = T0 + 10_000
    assert node.handle_request(now, -1, 7, RemoveRaftVoterRequest(cluster_id="c1", voter_id=1,
                                                                   voter_directory_id=DIRS[1])) is None
    assert node.is_leader and not node.is_voter
    node.poll(now)
    assert node.is_leader, "it leads until the new voter set is committed"
    fetch_up(node, 2, now)
    assert node.high_watermark < node.log_end_offset, "the leader no longer counts itself"
    fetch_up(node, 3, now)
    effects = node.poll(now)
    assert any(isinstance(e, SendResponse) and isinstance(e.response, RemoveRaftVoterResponse)
               and e.response.error_code == 0 for e in effects)
    assert node.role is RaftRole.RESIGNED and requests(effects, EndQuorumEpochRequest)
    node.poll(now + 10 * CONFIG.election_timeout_ms)
    assert node.role is RaftRole.UNATTACHED and not node.is_voter
