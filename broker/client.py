"""Trafka's own Kafka client: a sans-IO connection core, a trio connection, and a small client.

What this module owns, bottom up:

* ``ConnectionCore``: the protocol state of one client connection, with no I/O (h11-style).
  Requests go in as messages and come out as frame bytes (``send_request``); whatever bytes the
  socket delivered go in (``receive_data``) and responses come out, decoded, in the order the
  requests were sent (``next_response``). It assigns correlation ids, checks that every response
  answers the oldest request in flight (Kafka answers a connection's requests in order), bounds
  the frame size (``frame_bytes_max``) and the requests in flight (``in_flight_max``), and keeps
  each request's deadline so its owner can enforce timeouts from ``now_ms`` alone.
* ``negotiate_versions``: the ApiVersions rule, the highest version both sides speak per API.
* ``Connection``: the trio adapter around a core, one TCP stream. Requests are pipelined: any
  number of tasks may call ``request`` at once (up to ``in_flight_max`` in flight); one reader
  task matches responses to callers.
* ``Client``: bootstrap servers, a metadata cache, leader lookup and one connection per broker,
  with helpers for topics, configs, produce, fetch, list-offsets and delete-records, and for
  consumer groups as an admin sees them (find the coordinator, list, describe with decoded
  assignments, fetch and commit offsets from outside the group, delete). Replication will reuse
  ``Connection`` for broker-to-broker traffic; the tool (``broker.tool``) uses ``Client``.

Errors. ``ProtocolError`` (from ``protocol.errors``) means the peer sent bytes that cannot be a
Kafka response (a frame over the limit, a wrong correlation id, an undecodable body): the
connection is closed and every caller waiting on it gets that error. ``ConnectionFailed`` means
connecting failed or the connection was lost; ``RequestTimedOut`` that a response did not come in
time, after which the connection is closed, as Kafka's clients close it, since a peer that does
not answer is presumed dead and later responses could not be trusted to be timely. A caller
that is itself cancelled does not disturb the connection: its response is read and dropped.
``UnsupportedVersion`` means the broker serves no version of an API that we speak.
``KafkaError`` carries a Kafka error code that a broker put in a response. Misuse by our own
code (an impossible request) raises ``protocol.errors.EncodeError`` before anything is sent.

Time. Timeouts and backoffs run on trio's clock (``trio.current_time``), which a test injects
with ``trio.run(..., clock=MockClock(...))``; the core itself only ever sees ``now_ms``. Record
timestamps come from the wall clock the ``Client`` is given (``wall_clock_ms``). Nothing here
keeps global state.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeVar

import trio

from broker.config import ConfigSource
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.framing import FRAME_BYTES_MAX_DEFAULT, FrameDecoder
from protocol.headers import decode_response, encode_request
from protocol.message import Message
from protocol.messages import REQUESTS, ApiKey
from protocol.messages.api_versions import ApiVersionsRequest, ApiVersionsResponse
from protocol.messages.consumer_protocol_assignment import ConsumerProtocolAssignment
from protocol.messages.create_topics import CreateTopicsRequest, CreateTopicsResponse
from protocol.messages.delete_groups import DeleteGroupsRequest, DeleteGroupsResponse
from protocol.messages.delete_records import DeleteRecordsRequest, DeleteRecordsResponse
from protocol.messages.delete_topics import DeleteTopicsRequest, DeleteTopicsResponse
from protocol.messages.describe_configs import DescribeConfigsRequest, DescribeConfigsResponse
from protocol.messages.describe_groups import DescribeGroupsRequest, DescribeGroupsResponse
from protocol.messages.describe_topic_partitions import (
    DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse,
)
from protocol.messages.fetch import FetchRequest, FetchResponse
from protocol.messages.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse
from protocol.messages.incremental_alter_configs import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from protocol.messages.list_groups import ListGroupsRequest, ListGroupsResponse
from protocol.messages.list_offsets import ListOffsetsRequest, ListOffsetsResponse
from protocol.messages.metadata import MetadataRequest, MetadataResponse
from protocol.messages.offset_commit import OffsetCommitRequest, OffsetCommitResponse
from protocol.messages.offset_fetch import OffsetFetchRequest, OffsetFetchResponse
from protocol.messages.produce import ProduceRequest, ProduceResponse
from protocol.primitives import I16
from protocol.records import (
    BatchError,
    Compression,
    NewRecord,
    TimestampType,
    build_batch,
    iter_batches,
)

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_TIMESTAMP",
    "AlterConfigOp",
    "AlterConfigsResult",
    "BrokerInfo",
    "Client",
    "ClientConfig",
    "ClientError",
    "ClusterMetadata",
    "ConfigEntry",
    "ConfigOperation",
    "ConfigResource",
    "ConfigResourceType",
    "Connection",
    "ConnectionConfig",
    "ConnectionCore",
    "ConnectionFailed",
    "ConsumerRecord",
    "CoordinatorInfo",
    "CreateTopicResult",
    "DeleteTopicResult",
    "DescribeConfigsResult",
    "FetchResult",
    "GroupDescription",
    "GroupListing",
    "InFlight",
    "KafkaError",
    "ListOffsetsResult",
    "MemberDescription",
    "NewTopic",
    "OffsetAndMetadata",
    "PartitionInfo",
    "ProduceResult",
    "ProtocolError",
    "RequestTimedOut",
    "TopicInfo",
    "UnsupportedVersion",
    "client_versions",
    "decode_consumer_assignment",
    "default_partition",
    "murmur2",
    "negotiate_versions",
    "open_client",
    "open_connection",
    "parse_bootstrap",
]

# --- limits and defaults -------------------------------------------------------------------------

IN_FLIGHT_MAX_DEFAULT = 5  # Kafka's max.in.flight.requests.per.connection
REQUEST_TIMEOUT_MS_DEFAULT = 30_000  # Kafka's request.timeout.ms
CONNECT_TIMEOUT_MS_DEFAULT = 10_000
RECEIVE_BYTES_MAX = 256 * 1024  # one read from the socket
CORRELATION_ID_MAX = 2**31 - 1
CLIENT_SOFTWARE_NAME = "trafka-client"
CLIENT_SOFTWARE_VERSION = "0.1.0"

# ListOffsets' special timestamps.
LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3

# Partition errors that a metadata refresh can cure: the request is sent again to the new leader.
_REFRESH_ERRORS = frozenset({
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.LEADER_NOT_AVAILABLE,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ErrorCode.UNKNOWN_TOPIC_ID,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
    ErrorCode.REPLICA_NOT_AVAILABLE,
})

# Errors meaning "ask FindCoordinator again": the group's coordinator moved, is loading its
# state, or is not up yet. The group request is sent again to the coordinator found then.
_COORDINATOR_ERRORS = frozenset({
    ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    ErrorCode.NOT_COORDINATOR,
})

COORDINATOR_KEY_GROUP = 0  # FindCoordinator key types
COORDINATOR_KEY_TRANSACTION = 1
CONSUMER_PROTOCOL_TYPE = "consumer"  # the protocol type of groups whose members are consumers
NO_OFFSET = -1  # OffsetFetch's "nothing committed"; ListOffsets' "no such offset"


# --- errors --------------------------------------------------------------------------------------


class ClientError(Exception):
    """The base of the errors this module raises (``ProtocolError`` aside)."""


class ConnectionFailed(ClientError):
    """Connecting failed, or the connection was lost or closed before a response came."""


class RequestTimedOut(ClientError):
    """No response within the request's timeout; the connection has been closed."""


class UnsupportedVersion(ClientError):
    """The broker serves no version of this API that this client speaks."""


class KafkaError(ClientError):
    """A Kafka error code from a broker's response, with the broker's message when it gave one."""

    def __init__(self, code: ErrorCode | int, message: str | None = None, *, context: str = "") -> None:
        self.code = ErrorCode.from_code(code)
        self.broker_message = message
        name = self.code.name if isinstance(self.code, ErrorCode) else f"error code {self.code}"
        text = message or (self.code.message if isinstance(self.code, ErrorCode) else "unknown error")
        prefix = f"{context}: " if context else ""
        super().__init__(f"{prefix}{text} ({name})")

    @property
    def retriable(self) -> bool:
        return isinstance(self.code, ErrorCode) and self.code.retriable


def _check(code: int, message: str | None = None, *, context: str = "") -> None:
    if code != ErrorCode.NONE:
        raise KafkaError(code, message, context=context)


# --- versions ------------------------------------------------------------------------------------


def client_versions() -> dict[int, tuple[int, int]]:
    """Every API and version range this client can encode, leaving out versions Kafka marks
    unstable (a broker advertises them only when told to, and they may still change)."""
    out: dict[int, tuple[int, int]] = {}
    for key, cls in REQUESTS.items():
        lo, hi = cls.VALID_VERSIONS
        if getattr(cls, "LATEST_VERSION_UNSTABLE", False):
            hi -= 1
        if hi >= lo:
            out[int(key)] = (lo, hi)
    return out


def negotiate_versions(
    theirs: Iterable[ApiVersionsResponse.ApiVersion],
    ours: Mapping[int, tuple[int, int]] | None = None,
    caps: Mapping[int, int] | None = None,
) -> dict[int, int]:
    """For each API both sides speak, the highest version in both ranges (and under ``caps``)."""
    mine = client_versions() if ours is None else ours
    out: dict[int, int] = {}
    for v in theirs:
        if v.api_key not in mine:
            continue
        lo, hi = mine[v.api_key]
        hi = min(hi, v.max_version)
        if caps is not None and v.api_key in caps:
            hi = min(hi, caps[v.api_key])
        if hi >= max(lo, v.min_version):
            out[v.api_key] = hi
    return out


def _api_name(api_key: int) -> str:
    cls = REQUESTS.get(api_key)
    return cls.NAME.removesuffix("Request") if cls is not None else f"API {api_key}"


# --- the sans-IO core ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InFlight:
    """A request sent and not yet answered."""

    correlation_id: int
    api_key: int
    api_version: int
    deadline_ms: int


class ConnectionCore:
    """The protocol state of one client connection; performs no I/O and reads no clock.

    Theory of operation: requests are framed by ``send_request``, which assigns the next
    correlation id and, unless the request expects no response (Produce with acks=0), appends it
    to the in-flight queue with its deadline. Bytes from the peer go to a ``FrameDecoder``, which
    refuses a frame whose size prefix exceeds ``frame_bytes_max`` before buffering it. Each whole
    frame must answer the oldest request in flight; anything else is the peer's fault and raises
    ``ProtocolError``, after which the core stays broken (every later call raises the same error)
    and the connection must be closed.

    Using more than ``in_flight_max`` requests at once is our own misuse and raises
    ``RuntimeError``; the trio adapter gates callers with a semaphore so it never happens.
    """

    __slots__ = ("client_id", "in_flight_max", "_decoder", "_in_flight", "_next_id", "_broken")

    def __init__(
        self,
        *,
        client_id: str | None,
        frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
        in_flight_max: int = IN_FLIGHT_MAX_DEFAULT,
        first_correlation_id: int = 0,
    ) -> None:
        assert in_flight_max >= 1
        self.client_id = client_id
        self.in_flight_max = in_flight_max
        self._decoder = FrameDecoder(frame_bytes_max)
        self._in_flight: deque[InFlight] = deque()
        self._next_id = first_correlation_id
        self._broken: ProtocolError | None = None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def frame_bytes_max(self) -> int:
        return self._decoder.frame_bytes_max

    def send_request(
        self,
        body: Message,
        *,
        api_version: int,
        now_ms: int,
        timeout_ms: int,
        expect_response: bool = True,
    ) -> tuple[InFlight | None, bytes]:
        """The frame to send for ``body``, and its in-flight entry (None if no response is due).

        Encoding happens first, so a request that cannot be encoded (``EncodeError``) leaves no
        trace.
        """
        if self._broken is not None:
            raise self._broken
        if expect_response and len(self._in_flight) >= self.in_flight_max:
            raise RuntimeError(f"{self.in_flight_max} requests are in flight already")
        correlation_id = self._next_id
        data = encode_request(body, api_version, correlation_id, self.client_id)
        self._next_id = 0 if correlation_id >= CORRELATION_ID_MAX else correlation_id + 1
        if not expect_response:
            return None, data
        entry = InFlight(correlation_id, body.API_KEY, api_version, now_ms + max(timeout_ms, 0))
        self._in_flight.append(entry)
        return entry, data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken is not None:
            raise self._broken
        self._decoder.receive_data(data)

    def next_response(self) -> tuple[InFlight, Message] | None:
        """The next whole response and the request it answers; None until more bytes arrive."""
        if self._broken is not None:
            raise self._broken
        try:
            frame = self._decoder.next_frame()
            if frame is None:
                return None
            if not self._in_flight:
                raise ProtocolError(f"received a response of {len(frame)} bytes with no request in flight")
            entry = self._in_flight[0]
            if len(frame) < 4:
                raise ProtocolError(f"response of {len(frame)} bytes is too short for a header")
            correlation_id = int.from_bytes(frame[:4], "big", signed=True)
            if correlation_id != entry.correlation_id:
                raise ProtocolError(
                    f"response correlation id {correlation_id} does not answer the oldest request in flight"
                    f" ({_api_name(entry.api_key)} v{entry.api_version}, correlation id {entry.correlation_id})"
                )
            body = self._decode(frame, entry)
        except ProtocolError as e:
            self._broken = e
            raise
        self._in_flight.popleft()
        return entry, body

    def _decode(self, frame: memoryview, entry: InFlight) -> Message:
        version = entry.api_version
        if entry.api_key == ApiKey.API_VERSIONS and version > 0 and len(frame) >= 6:
            # A broker that does not speak our ApiVersions version answers with a v0 body (its
            # header is always v0) carrying UNSUPPORTED_VERSION and the versions it does speak.
            (error_code,) = I16.unpack_from(frame, 4)
            if error_code == ErrorCode.UNSUPPORTED_VERSION:
                version = 0
        try:
            _, body = decode_response(frame, entry.api_key, version)
        except KeyError:
            raise ProtocolError(f"no decoder for API key {entry.api_key}") from None
        return body

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline of the requests in flight."""
        return min((e.deadline_ms for e in self._in_flight), default=None)

    def overdue(self, now_ms: int) -> InFlight | None:
        """A request in flight whose deadline has passed, if there is one."""
        for e in self._in_flight:
            if e.deadline_ms <= now_ms:
                return e
        return None


# --- the trio connection -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """How a ``Connection`` behaves; every limit is named with its unit."""

    client_id: str | None = CLIENT_SOFTWARE_NAME
    request_timeout_ms: int = REQUEST_TIMEOUT_MS_DEFAULT
    connect_timeout_ms: int = CONNECT_TIMEOUT_MS_DEFAULT
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT
    in_flight_max: int = IN_FLIGHT_MAX_DEFAULT
    receive_bytes_max: int = RECEIVE_BYTES_MAX
    # Highest version to use per API key, below what negotiation would pick (tests, replication).
    version_caps: Mapping[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Waiter:
    """A caller's place in line: set once, by the reader or by the connection failing."""

    done: trio.Event = field(default_factory=trio.Event)
    registered: bool = False  # in ``Connection._waiters``, holding an in-flight slot
    response: Message | None = None
    error: BaseException | None = None


def _now_ms() -> int:
    """trio's clock in ms: the clock a test injects into ``trio.run``."""
    return int(trio.current_time() * 1000)


R = TypeVar("R", bound=Message)


class Connection:
    """One TCP stream to a broker, speaking the negotiated versions; requests are pipelined.

    Use ``open_connection`` (an async context manager), or construct one over any
    ``trio.abc.Stream``, start ``run`` in a nursery (it is the reader, and returns when the
    connection ends, never raising for the peer's faults), then call ``negotiate`` before
    ``request``. ``aclose`` ends it; callers still waiting get ``ConnectionFailed``.
    """

    def __init__(self, stream: trio.abc.Stream, *, config: ConnectionConfig = ConnectionConfig(),
                 peer: str = "broker") -> None:
        self.config = config
        self.peer = peer
        self.versions: dict[int, int] = {}
        self._stream = stream
        self._core = ConnectionCore(client_id=config.client_id, frame_bytes_max=config.frame_bytes_max,
                                    in_flight_max=config.in_flight_max)
        self._waiters: dict[int, _Waiter] = {}
        self._slots = trio.Semaphore(config.in_flight_max)
        self._send_lock = trio.StrictFIFOLock()
        self._read_scope: trio.CancelScope | None = None
        self._failure: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._failure is not None

    @property
    def core(self) -> ConnectionCore:
        return self._core

    def version(self, api_key: int) -> int:
        """The negotiated version of an API; ``UnsupportedVersion`` if there is none."""
        v = self.versions.get(api_key)
        if v is None:
            raise UnsupportedVersion(f"the broker at {self.peer} does not support {_api_name(api_key)}"
                                     " in any version this client speaks")
        return v

    def supports(self, api_key: int) -> bool:
        return api_key in self.versions

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read responses and hand them to their callers until the connection ends."""
        task_status.started()
        try:
            await self._read_loop()
        except (ProtocolError, ClientError) as e:
            self._fail(e)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self._fail(ConnectionFailed(f"connection to {self.peer} lost: {e or type(e).__name__}"))
        finally:
            self._fail(ConnectionFailed(f"connection to {self.peer} closed"))
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)

    async def _read_loop(self) -> None:
        core = self._core
        while self._failure is None:
            deadline_ms = core.next_deadline_ms()
            with trio.CancelScope(deadline=math.inf if deadline_ms is None else deadline_ms / 1000) as scope:
                self._read_scope = scope
                try:
                    data = await self._stream.receive_some(self.config.receive_bytes_max)
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                late = core.overdue(_now_ms())
                if late is not None:
                    name = _api_name(late.api_key)
                    self._finish(late.correlation_id, error=RequestTimedOut(
                        f"{name} to {self.peer} had no response within its timeout"
                        f" (request timeout {self.config.request_timeout_ms} ms unless the call set its own)"))
                    raise ConnectionFailed(f"connection to {self.peer} closed: a {name} request timed out")
                continue
            if not data:
                raise ConnectionFailed(f"{self.peer} closed the connection")
            core.receive_data(data)
            while (answered := core.next_response()) is not None:
                entry, body = answered
                self._finish(entry.correlation_id, response=body)

    def _finish(self, correlation_id: int, *, response: Message | None = None,
                error: BaseException | None = None) -> None:
        """Hand a caller its outcome and free its in-flight slot (a cancelled caller's too)."""
        waiter = self._waiters.pop(correlation_id, None)
        if waiter is None:
            return
        waiter.response, waiter.error = response, error
        waiter.done.set()
        self._slots.release()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        for correlation_id in list(self._waiters):
            self._finish(correlation_id, error=self._failure)
        if self._read_scope is not None:
            self._read_scope.cancel()

    async def negotiate(self) -> None:
        """ApiVersions: learn what the broker speaks and pick, per API, the highest common version."""
        ours = client_versions()
        version = min(ours[ApiKey.API_VERSIONS][1], self.config.version_caps.get(ApiKey.API_VERSIONS, 99))
        for _ in range(2):
            req = ApiVersionsRequest(client_software_name=CLIENT_SOFTWARE_NAME,
                                     client_software_version=CLIENT_SOFTWARE_VERSION)
            resp = await self.request(req, ApiVersionsResponse, api_version=version)
            if resp.error_code == ErrorCode.UNSUPPORTED_VERSION:
                theirs = next((v for v in resp.api_keys if v.api_key == ApiKey.API_VERSIONS), None)
                if theirs is None or theirs.max_version < ours[ApiKey.API_VERSIONS][0]:
                    break
                version = min(theirs.max_version, version)
                continue
            _check(resp.error_code, context=f"ApiVersions to {self.peer}")
            self.versions = negotiate_versions(resp.api_keys, ours, self.config.version_caps)
            return
        raise UnsupportedVersion(f"the broker at {self.peer} speaks no ApiVersions version this client speaks")

    async def request(self, body: Message, response_type: type[R], *, api_version: int | None = None,
                      timeout_ms: int | None = None) -> R:
        """Send ``body`` and wait for its response (which must be a ``response_type``)."""
        version = self.version(body.API_KEY) if api_version is None else api_version
        timeout = self.config.request_timeout_ms if timeout_ms is None else timeout_ms
        # The slot is freed when the response (or the connection's end) arrives, not when this
        # caller leaves: a cancelled caller's request is still in flight.
        await self._slots.acquire()
        waiter = _Waiter()
        try:
            await self._send(body, version, timeout, waiter)
        finally:
            if not waiter.registered:
                self._slots.release()
        await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        response = waiter.response
        if not isinstance(response, response_type):
            raise ProtocolError(f"expected a {response_type.__name__}, decoded a {type(response).__name__}")
        return response

    async def send_only(self, body: Message, *, api_version: int | None = None) -> None:
        """Send a request that gets no response (Produce with acks=0)."""
        version = self.version(body.API_KEY) if api_version is None else api_version
        await self._send(body, version, 0, None)

    async def _send(self, body: Message, version: int, timeout_ms: int, waiter: _Waiter | None) -> None:
        async with self._send_lock:
            if self._failure is not None:
                raise self._failure
            entry, data = self._core.send_request(body, api_version=version, now_ms=_now_ms(),
                                                  timeout_ms=timeout_ms, expect_response=waiter is not None)
            if entry is not None and waiter is not None:
                self._waiters[entry.correlation_id] = waiter
                waiter.registered = True
                scope = self._read_scope
                if scope is not None and entry.deadline_ms / 1000 < scope.deadline:
                    scope.deadline = entry.deadline_ms / 1000
            # A frame goes out whole or the connection ends: a caller cancelled halfway through a
            # frame would leave the stream out of step for everyone, so the write is shielded from
            # the caller's cancellation and bounded by the request timeout instead.
            problem: str | None = None
            with trio.CancelScope(shield=True):
                with trio.move_on_after(self.config.request_timeout_ms / 1000) as write:
                    try:
                        await self._stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                        problem = f"sending to {self.peer} failed: {e or type(e).__name__}"
                if write.cancelled_caught:
                    problem = f"sending to {self.peer} took over {self.config.request_timeout_ms} ms"
                if problem is not None:
                    self._fail(ConnectionFailed(problem))
                    await trio.aclose_forcefully(self._stream)
            if self._failure is not None and problem is not None:
                raise self._failure

    async def aclose(self) -> None:
        self._fail(ConnectionFailed(f"connection to {self.peer} closed"))
        await trio.aclose_forcefully(self._stream)


def _os_reason(e: OSError) -> str:
    """The operating system's words for a failed connect (trio wraps one error per address)."""
    cause = e.__cause__
    if isinstance(cause, BaseExceptionGroup):
        first = cause.exceptions[0]
        if isinstance(first, OSError):
            e = first
    return e.strerror.lower() if e.strerror else str(e)


async def connect(host: str, port: int, nursery: trio.Nursery, config: ConnectionConfig) -> Connection:
    """A negotiated connection whose reader runs in ``nursery``; ``ConnectionFailed`` if none."""
    peer = f"{host}:{port}"
    try:
        with trio.fail_after(config.connect_timeout_ms / 1000):
            stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectionFailed(f"cannot connect to {peer}: no answer within {config.connect_timeout_ms} ms") from None
    except OSError as e:
        raise ConnectionFailed(f"cannot connect to {peer}: {_os_reason(e)}") from None
    conn = Connection(stream, config=config, peer=peer)
    await nursery.start(conn.run)
    try:
        await conn.negotiate()
    except BaseException:
        await conn.aclose()
        raise
    return conn


@asynccontextmanager
async def open_connection(host: str, port: int, *,
                          config: ConnectionConfig = ConnectionConfig()) -> AsyncIterator[Connection]:
    """A negotiated connection to one broker, closed on exit."""
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            conn = await connect(host, port, nursery, config)
            try:
                yield conn
            finally:
                await conn.aclose()
        except Exception as e:
            failure = e  # raised below as itself, not wrapped in the nursery's exception group
    if failure is not None:
        raise failure


# --- metadata ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...] = ()
    error: ErrorCode | int = ErrorCode.NONE


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    is_internal: bool
    partitions: tuple[PartitionInfo, ...]  # by partition index
    error: ErrorCode | int = ErrorCode.NONE


@dataclass(frozen=True, slots=True)
class ClusterMetadata:
    """A snapshot of what a Metadata response said."""

    cluster_id: str | None = None
    controller_id: int = -1
    brokers: Mapping[int, BrokerInfo] = field(default_factory=dict)
    topics: Mapping[str, TopicInfo] = field(default_factory=dict)

    def partition(self, topic: str, partition: int) -> PartitionInfo | None:
        t = self.topics.get(topic)
        if t is None or t.error != ErrorCode.NONE or not 0 <= partition < len(t.partitions):
            return None
        p = t.partitions[partition]
        return p if p.partition == partition else None


def _cluster_from(resp: MetadataResponse) -> ClusterMetadata:
    brokers = {b.node_id: BrokerInfo(b.node_id, b.host, b.port, b.rack) for b in resp.brokers}
    topics: dict[str, TopicInfo] = {}
    for t in resp.topics:
        if t.name is None:
            continue
        parts = sorted(
            (PartitionInfo(p.partition_index, p.leader_id, p.leader_epoch, tuple(p.replica_nodes),
                           tuple(p.isr_nodes), tuple(p.offline_replicas), ErrorCode.from_code(p.error_code))
             for p in t.partitions),
            key=lambda p: p.partition,
        )
        topics[t.name] = TopicInfo(t.name, t.topic_id, t.is_internal, tuple(parts), ErrorCode.from_code(t.error_code))
    return ClusterMetadata(resp.cluster_id, resp.controller_id, brokers, topics)


# --- requests and results ------------------------------------------------------------------------


class ConfigResourceType(IntEnum):
    """Kafka's ConfigResource.Type wire codes."""

    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8
    CLIENT_METRICS = 16
    GROUP = 32


class ConfigOperation(IntEnum):
    """IncrementalAlterConfigs operations."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


@dataclass(frozen=True, slots=True)
class ConfigResource:
    type: ConfigResourceType
    name: str

    @classmethod
    def topic(cls, name: str) -> ConfigResource:
        return cls(ConfigResourceType.TOPIC, name)

    @classmethod
    def broker(cls, node_id: int) -> ConfigResource:
        return cls(ConfigResourceType.BROKER, str(node_id))


@dataclass(frozen=True, slots=True)
class AlterConfigOp:
    name: str
    value: str | None = None
    op: ConfigOperation = ConfigOperation.SET


@dataclass(frozen=True, slots=True)
class NewTopic:
    """A topic to create; -1 partitions or replication factor means the broker's default."""

    name: str
    partitions: int = -1
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateTopicResult:
    name: str
    error: ErrorCode | int
    error_message: str | None = None
    topic_id: uuid.UUID | None = None
    partitions: int = -1
    replication_factor: int = -1

    def raise_for_error(self) -> None:
        _check(self.error, self.error_message, context=f"topic {self.name!r}")


@dataclass(frozen=True, slots=True)
class DeleteTopicResult:
    name: str
    error: ErrorCode | int
    error_message: str | None = None

    def raise_for_error(self) -> None:
        _check(self.error, self.error_message, context=f"topic {self.name!r}")


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: ConfigSource | int
    read_only: bool = False
    is_default: bool = False
    is_sensitive: bool = False


@dataclass(frozen=True, slots=True)
class DescribeConfigsResult:
    resource: ConfigResource
    error: ErrorCode | int
    error_message: str | None
    entries: tuple[ConfigEntry, ...]

    def raise_for_error(self) -> None:
        _check(self.error, self.error_message, context=f"{self.resource.type.name.lower()} {self.resource.name!r}")


@dataclass(frozen=True, slots=True)
class AlterConfigsResult:
    resource: ConfigResource
    error: ErrorCode | int
    error_message: str | None = None

    def raise_for_error(self) -> None:
        _check(self.error, self.error_message, context=f"{self.resource.type.name.lower()} {self.resource.name!r}")


@dataclass(frozen=True, slots=True)
class ProduceResult:
    """Where a produced batch landed; base_offset is -1 with acks=0 (nobody said)."""

    base_offset: int
    log_append_time_ms: int = -1
    log_start_offset: int = -1


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: TimestampType
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One partition's part of a fetch. ``next_offset`` is where the next fetch should start: past
    the last whole batch returned (control batches included), or the offset asked for."""

    topic: str
    partition: int
    error: ErrorCode | int
    records: tuple[ConsumerRecord, ...] = ()
    next_offset: int = -1
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1

    def raise_for_error(self) -> None:
        _check(self.error, context=f"fetch from {self.topic}-{self.partition}")


@dataclass(frozen=True, slots=True)
class ListOffsetsResult:
    """An offset ListOffsets found (-1 when a timestamp matched no record). ``error`` is set only
    by ``list_offsets_many``, which returns partition errors instead of raising them."""

    offset: int
    timestamp: int = -1
    leader_epoch: int = -1
    error: ErrorCode | int = ErrorCode.NONE

    def raise_for_error(self, topic: str, partition: int) -> None:
        _check(self.error, context=f"list offsets of {topic}-{partition}")


@dataclass(frozen=True, slots=True)
class CoordinatorInfo:
    """The broker FindCoordinator named for a key."""

    node_id: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class GroupListing:
    """One group in a ListGroups answer; ``state`` (v4+) and ``group_type`` (v5+) are "" when the
    broker's version does not say."""

    group_id: str
    protocol_type: str
    state: str = ""
    group_type: str = ""


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """A member as DescribeGroups shows it. ``assignment`` is its partitions, decoded from the
    consumer protocol's assignment bytes: () before it has one, None when the group is not a
    consumer group (or the bytes cannot be read); ``assignment_bytes`` are the raw bytes."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: tuple[tuple[str, tuple[int, ...]], ...] | None
    assignment_bytes: bytes = b""

    @property
    def partitions(self) -> list[tuple[str, int]]:
        return [(t, p) for t, ps in self.assignment or () for p in ps]


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A DescribeGroups answer for one group. A group the coordinator does not know is ``Dead``
    with no error, as Kafka describes it. ``protocol`` (the assignor, for consumers) is "" unless
    the group is Stable."""

    group_id: str
    error: ErrorCode | int
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...]
    coordinator: CoordinatorInfo
    authorized_operations: int = -(2**31)

    def raise_for_error(self) -> None:
        _check(self.error, context=f"group {self.group_id!r}")


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    """A committed offset: the next record the group will read, with its leader epoch and the
    committer's metadata string."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""


def decode_consumer_assignment(data: bytes | bytearray | memoryview) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The partitions in a consumer-protocol assignment (an int16 version, then a
    ``ConsumerProtocolAssignment``), by topic; () for empty bytes (no assignment yet). A version
    newer than ours is read as our newest, as Kafka's ``ConsumerProtocol`` does, since later
    versions only add fields at the end. ``ProtocolError`` when the bytes are not an assignment."""
    if len(data) == 0:
        return ()
    if len(data) < 2:
        raise ProtocolError(f"a consumer assignment of {len(data)} byte is too short for its version")
    version = int.from_bytes(bytes(data[:2]), "big", signed=True)
    lo, hi = ConsumerProtocolAssignment.VALID_VERSIONS
    if version < lo:
        raise ProtocolError(f"consumer assignment version {version} is not valid")
    body = ConsumerProtocolAssignment.decode(memoryview(data)[2:], min(version, hi))
    return tuple((tp.topic, tuple(tp.partitions)) for tp in body.assigned_partitions)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    connection: ConnectionConfig = ConnectionConfig()
    metadata_max_age_ms: int = 300_000  # Kafka's metadata.max.age.ms
    retries_max: int = 5  # for errors a metadata refresh can cure
    retry_backoff_ms: int = 100
    fetch_max_wait_ms: int = 500  # Kafka's fetch.max.wait.ms
    fetch_max_bytes: int = 1_048_576  # per partition; Kafka's max.partition.fetch.bytes


def parse_bootstrap(servers: str | Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """``"host:port,host2:port2"`` (IPv6 as ``[::1]:9092``) as a list of addresses."""
    if not isinstance(servers, str):
        return [(h, int(p)) for h, p in servers]
    out = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"bootstrap server {item!r} is not host:port")
        out.append((host.removeprefix("[").removesuffix("]"), int(port)))
    if not out:
        raise ValueError("no bootstrap servers given")
    return out


def _system_wall_ms() -> int:
    return time.time_ns() // 1_000_000


# --- partitioning --------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32-bit, seed 0x9747b28c) as Kafka's default partitioner computes it, as a
    signed int32, so keyed records land in the same partition as with Kafka's Java producer."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & _M32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & _M32
        k ^= k >> 24
        k = (k * m) & _M32
        h = ((h * m) & _M32) ^ k
    tail = data[whole:]
    if tail:
        for i in range(len(tail) - 1, -1, -1):
            h ^= tail[i] << (8 * i)
        h = (h * m) & _M32
    h ^= h >> 13
    h = (h * m) & _M32
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


def default_partition(key: bytes, partitions: int) -> int:
    """Kafka's partition for a keyed record: positive murmur2 of the key modulo the count."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# --- the client ----------------------------------------------------------------------------------

T = TypeVar("T")


class Client:
    """A Kafka client over one connection per broker, with a metadata cache.

    Create it with ``open_client``. Requests for a partition go to its leader, found in the
    cached metadata (refreshed when older than ``metadata_max_age_ms`` or when a broker says it is
    stale); topic administration goes to the controller the metadata names, or any broker.
    Errors that a metadata refresh can cure (not leader, unknown partition, fenced epoch) are
    retried up to ``retries_max`` times after ``retry_backoff_ms``; a lost connection is retried
    for reads only, since a write may have landed.

    Not safe to share across trio runs; safe for concurrent use by tasks of one run.
    """

    def __init__(self, bootstrap: Sequence[tuple[str, int]], nursery: trio.Nursery, *,
                 config: ClientConfig = ClientConfig(),
                 wall_clock_ms: Callable[[], int] = _system_wall_ms) -> None:
        self.bootstrap_servers = list(bootstrap)
        self.config = config
        self.wall_clock_ms = wall_clock_ms
        self.cluster = ClusterMetadata()
        self._metadata_at_ms: int | None = None
        self._nursery = nursery
        self._conns: dict[tuple[str, int], Connection] = {}
        self._connecting: dict[tuple[str, int], trio.Lock] = {}
        self._coordinators: dict[tuple[int, str], CoordinatorInfo] = {}  # (key type, key) -> coordinator

    # -- connections --

    async def _connection(self, host: str, port: int) -> Connection:
        addr = (host, port)
        lock = self._connecting.setdefault(addr, trio.Lock())
        async with lock:
            conn = self._conns.get(addr)
            if conn is None or conn.closed:
                conn = await connect(host, port, self._nursery, self.config.connection)
                self._conns[addr] = conn
            return conn

    async def any_connection(self) -> Connection:
        """An open connection to some broker: one already open, else the bootstrap servers and
        known brokers in turn."""
        for conn in self._conns.values():
            if not conn.closed:
                return conn
        candidates = list(self.bootstrap_servers)
        candidates += [(b.host, b.port) for b in self.cluster.brokers.values() if (b.host, b.port) not in candidates]
        errors = []
        for host, port in candidates:
            try:
                return await self._connection(host, port)
            except ConnectionFailed as e:
                errors.append(str(e))
        raise ConnectionFailed("no broker reachable: " + "; ".join(errors))

    async def node_connection(self, node_id: int) -> Connection:
        broker = self.cluster.brokers.get(node_id)
        if broker is None:
            await self.metadata([])
            broker = self.cluster.brokers.get(node_id)
            if broker is None:
                raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, f"broker {node_id} is not in the cluster metadata")
        return await self._connection(broker.host, broker.port)

    async def _controller_connection(self) -> Connection:
        if self._metadata_at_ms is None:
            await self.metadata([])
        if self.cluster.controller_id in self.cluster.brokers:
            return await self.node_connection(self.cluster.controller_id)
        return await self.any_connection()

    async def aclose(self) -> None:
        for conn in list(self._conns.values()):
            await conn.aclose()
        self._conns.clear()

    # -- retries --

    async def _retrying(self, op: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        attempt = 0
        while True:
            try:
                return await op()
            except KafkaError as e:
                if e.code not in _REFRESH_ERRORS or attempt >= self.config.retries_max:
                    raise
            except (ConnectionFailed, RequestTimedOut):
                if not idempotent or attempt >= self.config.retries_max:
                    raise
            attempt += 1
            self._metadata_at_ms = None
            await trio.sleep(self.config.retry_backoff_ms / 1000)

    # -- metadata --

    async def metadata(self, topics: Sequence[str] | None = None, *,
                       allow_auto_create: bool = False) -> ClusterMetadata:
        """Metadata for ``topics`` (all topics when None; brokers only for an empty list). The
        cache is updated with what the response says; per-topic errors are in ``TopicInfo.error``."""
        return await self._retrying(lambda: self._metadata(topics, allow_auto_create), idempotent=True)

    async def _metadata(self, topics: Sequence[str] | None, allow_auto_create: bool) -> ClusterMetadata:
        conn = await self.any_connection()
        version = conn.version(ApiKey.METADATA)
        wanted: list[MetadataRequest.MetadataRequestTopic] | None
        wanted = None if topics is None else [MetadataRequest.MetadataRequestTopic(name=t) for t in topics]
        if version == 0 and wanted is None:
            wanted = []
        elif version == 0 and not wanted:
            raise UnsupportedVersion("Metadata v0 cannot ask for brokers only")
        # Before v4 the request cannot say; the broker's auto.create.topics.enable decides.
        auto_create = allow_auto_create if version >= 4 else True
        resp = await conn.request(MetadataRequest(topics=wanted, allow_auto_topic_creation=auto_create),
                                  MetadataResponse)
        fresh = _cluster_from(resp)
        merged = dict(self.cluster.topics) if topics is not None else {}
        for name in topics or ():
            merged.pop(name, None)
        merged.update({n: t for n, t in fresh.topics.items() if t.error == ErrorCode.NONE})
        self.cluster = ClusterMetadata(fresh.cluster_id, fresh.controller_id, fresh.brokers, merged)
        self._metadata_at_ms = _now_ms()
        return fresh

    async def eligible_leader_replicas(self, topics: Sequence[str]
                                       ) -> dict[tuple[str, int], tuple[tuple[int, ...], tuple[int, ...]]]:
        """KIP-966's (eligible leader replicas, last known ELR) of every partition of ``topics``, by
        (topic, partition), from DescribeTopicPartitions (following its cursor; topics with an
        error are left out). ``UnsupportedVersion`` if the broker does not serve it."""
        conn = await self.any_connection()
        version = conn.version(ApiKey.DESCRIBE_TOPIC_PARTITIONS)
        out: dict[tuple[str, int], tuple[tuple[int, ...], tuple[int, ...]]] = {}
        cursor: DescribeTopicPartitionsRequest.Cursor | None = None
        while True:
            req = DescribeTopicPartitionsRequest(
                topics=[DescribeTopicPartitionsRequest.TopicRequest(name=t) for t in topics], cursor=cursor)
            resp = await conn.request(req, DescribeTopicPartitionsResponse, api_version=version)
            for t in resp.topics:
                if t.error_code == ErrorCode.NONE and t.name is not None:
                    for p in t.partitions:
                        out[(t.name, p.partition_index)] = (tuple(p.eligible_leader_replicas or ()),
                                                            tuple(p.last_known_elr or ()))
            nxt = resp.next_cursor
            if nxt is None or (cursor is not None and (nxt.topic_name, nxt.partition_index)
                               <= (cursor.topic_name, cursor.partition_index)):
                return out
            cursor = DescribeTopicPartitionsRequest.Cursor(topic_name=nxt.topic_name,
                                                           partition_index=nxt.partition_index)

    async def partition_info(self, topic: str, partition: int) -> PartitionInfo:
        """The cached partition metadata, refreshed for this topic when missing or stale."""
        stale = (self._metadata_at_ms is None
                 or _now_ms() - self._metadata_at_ms > self.config.metadata_max_age_ms)
        info = None if stale else self.cluster.partition(topic, partition)
        if info is None:
            fresh = await self.metadata([topic])
            t = fresh.topics.get(topic)
            if t is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, context=f"topic {topic!r}")
            _check(t.error, context=f"topic {topic!r}")
            info = self.cluster.partition(topic, partition)
            if info is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"topic {topic!r} has {len(t.partitions)} partitions, not partition {partition}")
        if info.leader < 0:
            raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, context=f"{topic}-{partition}")
        return info

    async def leader_for(self, topic: str, partition: int) -> int:
        return (await self.partition_info(topic, partition)).leader

    async def partitions_for(self, topic: str) -> int:
        """How many partitions the topic has (from fresh-enough metadata)."""
        await self.partition_info(topic, 0)
        return len(self.cluster.topics[topic].partitions)

    # -- topics --

    async def create_topics(self, topics: Sequence[NewTopic], *, timeout_ms: int = 30_000,
                            validate_only: bool = False) -> list[CreateTopicResult]:
        conn = await self._controller_connection()
        req = CreateTopicsRequest(
            topics=[CreateTopicsRequest.CreatableTopic(
                name=t.name, num_partitions=t.partitions, replication_factor=t.replication_factor,
                configs=[CreateTopicsRequest.CreatableTopicConfig(name=k, value=v) for k, v in t.configs.items()])
                for t in topics],
            timeout_ms=timeout_ms, validate_only=validate_only)
        resp = await conn.request(req, CreateTopicsResponse, timeout_ms=self.config.connection.request_timeout_ms
                                  + timeout_ms)
        self._metadata_at_ms = None
        return [CreateTopicResult(r.name, ErrorCode.from_code(r.error_code), r.error_message,
                                  r.topic_id if r.error_code == ErrorCode.NONE else None,
                                  r.num_partitions, r.replication_factor)
                for r in resp.topics]

    async def delete_topics(self, names: Sequence[str], *, timeout_ms: int = 30_000) -> list[DeleteTopicResult]:
        conn = await self._controller_connection()
        version = conn.version(ApiKey.DELETE_TOPICS)
        if version >= 6:
            req = DeleteTopicsRequest(topics=[DeleteTopicsRequest.DeleteTopicState(name=n) for n in names],
                                      timeout_ms=timeout_ms)
        else:
            req = DeleteTopicsRequest(topic_names=list(names), timeout_ms=timeout_ms)
        resp = await conn.request(req, DeleteTopicsResponse, timeout_ms=self.config.connection.request_timeout_ms
                                  + timeout_ms)
        topics = dict(self.cluster.topics)
        for n in names:
            topics.pop(n, None)
        self.cluster = ClusterMetadata(self.cluster.cluster_id, self.cluster.controller_id, self.cluster.brokers,
                                       topics)
        return [DeleteTopicResult(r.name or "", ErrorCode.from_code(r.error_code), r.error_message)
                for r in resp.responses]

    # -- configs --

    async def _resource_connection(self, resource: ConfigResource) -> Connection:
        if resource.type in (ConfigResourceType.BROKER, ConfigResourceType.BROKER_LOGGER) and resource.name:
            return await self.node_connection(int(resource.name))
        return await self.any_connection()

    async def describe_configs(self, resources: Sequence[ConfigResource], *,
                               keys: Sequence[str] | None = None) -> list[DescribeConfigsResult]:
        """The configs of each resource (only ``keys`` when given), in the order asked."""
        out: list[DescribeConfigsResult] = []
        for resource in resources:  # each may live on a different broker
            conn = await self._resource_connection(resource)
            req = DescribeConfigsRequest(resources=[DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=resource.type, resource_name=resource.name,
                configuration_keys=None if keys is None else list(keys))])
            resp = await conn.request(req, DescribeConfigsResponse)
            for r in resp.results:
                entries = tuple(
                    ConfigEntry(c.name, c.value, _config_source(c, conn.version(ApiKey.DESCRIBE_CONFIGS)),
                                c.read_only, c.is_default or c.config_source == ConfigSource.DEFAULT_CONFIG,
                                c.is_sensitive)
                    for c in r.configs)
                out.append(DescribeConfigsResult(resource, ErrorCode.from_code(r.error_code), r.error_message,
                                                 entries))
        return out

    async def alter_configs(self, changes: Mapping[ConfigResource, Sequence[AlterConfigOp]], *,
                            validate_only: bool = False) -> list[AlterConfigsResult]:
        """IncrementalAlterConfigs: set, delete, append to or subtract from individual keys."""
        out: list[AlterConfigsResult] = []
        for resource, ops in changes.items():
            conn = await self._resource_connection(resource)
            req = IncrementalAlterConfigsRequest(
                resources=[IncrementalAlterConfigsRequest.AlterConfigsResource(
                    resource_type=resource.type, resource_name=resource.name,
                    configs=[IncrementalAlterConfigsRequest.AlterableConfig(name=o.name, config_operation=o.op,
                                                                            value=o.value) for o in ops])],
                validate_only=validate_only)
            resp = await conn.request(req, IncrementalAlterConfigsResponse)
            out += [AlterConfigsResult(resource, ErrorCode.from_code(r.error_code), r.error_message)
                    for r in resp.responses]
        return out

    # -- produce --

    async def produce(self, topic: str, partition: int, records: Sequence[NewRecord], *, acks: int = -1,
                      compression: Compression = Compression.NONE, timeout_ms: int = 30_000) -> ProduceResult:
        """Send ``records`` as one batch to the partition's leader. Records without a timestamp
        get the client's wall-clock time. ``KafkaError`` if the broker refuses the batch."""
        if not records:
            raise ValueError("nothing to produce")
        if acks not in (-1, 0, 1):
            raise ValueError(f"acks must be -1 (all), 0 or 1, not {acks}")
        batch = build_batch(records, compression=compression, base_timestamp=self.wall_clock_ms())
        req = ProduceRequest(transactional_id=None, acks=acks, timeout_ms=timeout_ms, topic_data=[
            ProduceRequest.TopicProduceData(name=topic, partition_data=[
                ProduceRequest.PartitionProduceData(index=partition, records=batch)])])

        async def attempt() -> ProduceResult:
            leader = await self.leader_for(topic, partition)
            conn = await self.node_connection(leader)
            if acks == 0:
                await conn.send_only(req)
                return ProduceResult(base_offset=-1)
            resp = await conn.request(req, ProduceResponse,
                                      timeout_ms=self.config.connection.request_timeout_ms + timeout_ms)
            for tr in resp.responses:
                for pr in tr.partition_responses:
                    if tr.name == topic and pr.index == partition:
                        message = pr.error_message
                        if pr.record_errors:
                            message = "; ".join(f"record {e.batch_index}: {e.batch_index_error_message}"
                                                for e in pr.record_errors)
                        _check(pr.error_code, message, context=f"produce to {topic}-{partition}")
                        return ProduceResult(pr.base_offset, pr.log_append_time_ms, pr.log_start_offset)
            raise ProtocolError(f"the produce response has no result for {topic}-{partition}")

        return await self._retrying(attempt, idempotent=False)

    # -- fetch --

    async def fetch(self, topic: str, partition: int, offset: int, *, max_bytes: int | None = None,
                    max_wait_ms: int | None = None, min_bytes: int = 1,
                    isolation_level: int = 0) -> FetchResult:
        """Records of one partition from ``offset``; ``KafkaError`` for a partition error."""
        results = await self.fetch_many({(topic, partition): offset}, max_bytes=max_bytes,
                                        max_wait_ms=max_wait_ms, min_bytes=min_bytes,
                                        isolation_level=isolation_level)
        result = results[(topic, partition)]
        result.raise_for_error()
        return result

    async def fetch_many(self, positions: Mapping[tuple[str, int], int], *, max_bytes: int | None = None,
                         max_wait_ms: int | None = None, min_bytes: int = 1,
                         isolation_level: int = 0) -> dict[tuple[str, int], FetchResult]:
        """One fetch per leader for all ``positions`` ((topic, partition) -> offset), sent
        concurrently. ``max_bytes`` is per partition. Partition errors are returned in the results
        (after retrying those a metadata refresh can cure), not raised."""
        partition_bytes = self.config.fetch_max_bytes if max_bytes is None else max_bytes
        wait_ms = self.config.fetch_max_wait_ms if max_wait_ms is None else max_wait_ms
        results: dict[tuple[str, int], FetchResult] = {}
        pending = dict(positions)
        attempt = 0
        while True:
            by_leader: dict[int, list[tuple[str, int, int, PartitionInfo]]] = {}
            for (topic, partition), offset in pending.items():
                try:
                    info = await self.partition_info(topic, partition)
                except KafkaError as e:
                    results[(topic, partition)] = FetchResult(topic, partition, e.code, next_offset=offset)
                    continue
                by_leader.setdefault(info.leader, []).append((topic, partition, offset, info))

            failures: list[Exception] = []

            async def one_leader(leader: int, items: list[tuple[str, int, int, PartitionInfo]],
                                 failures: list[Exception] = failures) -> None:
                try:
                    results.update(await self._fetch_from(leader, items, partition_bytes, wait_ms, min_bytes,
                                                          isolation_level))
                except (ConnectionFailed, RequestTimedOut):
                    for topic, partition, offset, _ in items:
                        results[(topic, partition)] = FetchResult(topic, partition, ErrorCode.NETWORK_EXCEPTION,
                                                                  next_offset=offset)
                except Exception as e:  # raised below, not as an exception group
                    failures.append(e)

            if len(by_leader) == 1:
                await one_leader(*next(iter(by_leader.items())))
            else:
                async with trio.open_nursery() as nursery:
                    for leader, items in by_leader.items():
                        nursery.start_soon(one_leader, leader, items)
            if failures:
                raise failures[0]
            retry = {tp: off for tp, off in pending.items()
                     if results[tp].error in _REFRESH_ERRORS or results[tp].error == ErrorCode.NETWORK_EXCEPTION}
            if not retry or attempt >= self.config.retries_max:
                return results
            attempt += 1
            pending = retry
            self._metadata_at_ms = None
            await trio.sleep(self.config.retry_backoff_ms / 1000)

    async def _fetch_from(self, leader: int, items: list[tuple[str, int, int, PartitionInfo]],
                          partition_bytes: int, wait_ms: int, min_bytes: int,
                          isolation_level: int) -> dict[tuple[str, int], FetchResult]:
        conn = await self.node_connection(leader)
        version = conn.version(ApiKey.FETCH)
        topic_ids = {t: self.cluster.topics[t].topic_id for t, _, _, _ in items if t in self.cluster.topics}
        if version >= 13 and any(topic_ids.get(t, _NO_TOPIC_ID) == _NO_TOPIC_ID for t, _, _, _ in items):
            version = 12  # fetch by name: the metadata gave no topic id
        by_topic: dict[str, list[FetchRequest.FetchPartition]] = {}
        for topic, partition, offset, info in items:
            by_topic.setdefault(topic, []).append(FetchRequest.FetchPartition(
                partition=partition, current_leader_epoch=info.leader_epoch, fetch_offset=offset,
                partition_max_bytes=partition_bytes))
        req = FetchRequest(
            replica_id=-1, max_wait_ms=wait_ms, min_bytes=min_bytes,
            max_bytes=min(partition_bytes * len(items), 2**31 - 1), isolation_level=isolation_level,
            session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=t, topic_id=topic_ids.get(t, _NO_TOPIC_ID), partitions=ps)
                    for t, ps in by_topic.items()])
        resp = await conn.request(req, FetchResponse, api_version=version,
                                  timeout_ms=self.config.connection.request_timeout_ms + wait_ms)
        names_by_id = {v: k for k, v in topic_ids.items()}
        asked = {(t, p): o for t, p, o, _ in items}
        out: dict[tuple[str, int], FetchResult] = {}
        for tr in resp.responses:
            name = tr.topic if version < 13 else names_by_id.get(tr.topic_id, "")
            for pd in tr.partitions:
                key = (name, pd.partition_index)
                if key not in asked:
                    continue
                error = pd.error_code if pd.error_code != ErrorCode.NONE else resp.error_code
                out[key] = _fetch_result(name, pd, asked[key], error)
        for t, p, o, _ in items:
            if (t, p) not in out:
                out[(t, p)] = FetchResult(t, p, resp.error_code or ErrorCode.UNKNOWN_SERVER_ERROR, next_offset=o)
        return out

    # -- offsets --

    async def list_offsets(self, topic: str, partition: int, timestamp: int, *,
                           isolation_level: int = 0) -> ListOffsetsResult:
        """The offset for ``timestamp``: ``EARLIEST`` (-2), ``LATEST`` (-1, the high watermark),
        ``MAX_TIMESTAMP`` (-3), or the first offset whose timestamp is at or after a time in ms
        (offset -1 when there is none)."""

        async def attempt() -> ListOffsetsResult:
            info = await self.partition_info(topic, partition)
            conn = await self.node_connection(info.leader)
            version = conn.version(ApiKey.LIST_OFFSETS)
            req = ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level, topics=[
                ListOffsetsRequest.ListOffsetsTopic(name=topic, partitions=[
                    ListOffsetsRequest.ListOffsetsPartition(partition_index=partition,
                                                            current_leader_epoch=info.leader_epoch,
                                                            timestamp=timestamp)])],
                timeout_ms=self.config.connection.request_timeout_ms)
            resp = await conn.request(req, ListOffsetsResponse)
            for tr in resp.topics:
                for pr in tr.partitions:
                    if tr.name == topic and pr.partition_index == partition:
                        _check(pr.error_code, context=f"list offsets of {topic}-{partition}")
                        if version == 0:
                            offset = pr.old_style_offsets[0] if pr.old_style_offsets else -1
                            return ListOffsetsResult(offset)
                        return ListOffsetsResult(pr.offset, pr.timestamp, pr.leader_epoch)
            raise ProtocolError(f"the list-offsets response has no result for {topic}-{partition}")

        return await self._retrying(attempt, idempotent=True)

    async def list_offsets_many(self, specs: Mapping[tuple[str, int], int], *,
                                isolation_level: int = 0) -> dict[tuple[str, int], ListOffsetsResult]:
        """``list_offsets`` for many partitions ((topic, partition) -> timestamp), one request per
        leader. Partition errors are returned in the results (after retrying those a metadata
        refresh can cure), not raised."""
        results: dict[tuple[str, int], ListOffsetsResult] = {}
        pending = dict(specs)
        attempt = 0
        while True:
            by_leader: dict[int, list[tuple[str, int, int, PartitionInfo]]] = {}
            for (topic, partition), timestamp in pending.items():
                try:
                    info = await self.partition_info(topic, partition)
                except KafkaError as e:
                    results[(topic, partition)] = ListOffsetsResult(NO_OFFSET, error=e.code)
                    continue
                by_leader.setdefault(info.leader, []).append((topic, partition, timestamp, info))
            for leader, items in by_leader.items():
                try:
                    results.update(await self._list_offsets_from(leader, items, isolation_level))
                except (ConnectionFailed, RequestTimedOut):
                    for topic, partition, _, _ in items:
                        results[(topic, partition)] = ListOffsetsResult(NO_OFFSET, error=ErrorCode.NETWORK_EXCEPTION)
            retry = {tp: ts for tp, ts in pending.items()
                     if results[tp].error in _REFRESH_ERRORS or results[tp].error == ErrorCode.NETWORK_EXCEPTION}
            if not retry or attempt >= self.config.retries_max:
                return results
            attempt += 1
            pending = retry
            self._metadata_at_ms = None
            await trio.sleep(self.config.retry_backoff_ms / 1000)

    async def _list_offsets_from(self, leader: int, items: list[tuple[str, int, int, PartitionInfo]],
                                 isolation_level: int) -> dict[tuple[str, int], ListOffsetsResult]:
        conn = await self.node_connection(leader)
        version = conn.version(ApiKey.LIST_OFFSETS)
        by_topic: dict[str, list[ListOffsetsRequest.ListOffsetsPartition]] = {}
        for topic, partition, timestamp, info in items:
            by_topic.setdefault(topic, []).append(ListOffsetsRequest.ListOffsetsPartition(
                partition_index=partition, current_leader_epoch=info.leader_epoch, timestamp=timestamp))
        req = ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level,
                                 topics=[ListOffsetsRequest.ListOffsetsTopic(name=t, partitions=ps)
                                         for t, ps in by_topic.items()],
                                 timeout_ms=self.config.connection.request_timeout_ms)
        resp = await conn.request(req, ListOffsetsResponse)
        out: dict[tuple[str, int], ListOffsetsResult] = {}
        for tr in resp.topics:
            for pr in tr.partitions:
                error = ErrorCode.from_code(pr.error_code)
                if error != ErrorCode.NONE:
                    out[(tr.name, pr.partition_index)] = ListOffsetsResult(NO_OFFSET, error=error)
                elif version == 0:
                    offset = pr.old_style_offsets[0] if pr.old_style_offsets else NO_OFFSET
                    out[(tr.name, pr.partition_index)] = ListOffsetsResult(offset)
                else:
                    out[(tr.name, pr.partition_index)] = ListOffsetsResult(pr.offset, pr.timestamp, pr.leader_epoch)
        for topic, partition, _, _ in items:
            if (topic, partition) not in out:
                raise ProtocolError(f"the list-offsets response has no result for {topic}-{partition}")
        return out

    async def delete_records(self, topic: str, partition: int, before_offset: int, *,
                             timeout_ms: int = 30_000) -> int:
        """DeleteRecords: move the partition's log start up to ``before_offset`` (-1: the high
        watermark); the new log start offset. ``KafkaError`` if the leader refuses."""

        async def attempt() -> int:
            leader = await self.leader_for(topic, partition)
            conn = await self.node_connection(leader)
            req = DeleteRecordsRequest(topics=[DeleteRecordsRequest.DeleteRecordsTopic(name=topic, partitions=[
                DeleteRecordsRequest.DeleteRecordsPartition(partition_index=partition, offset=before_offset)])],
                timeout_ms=timeout_ms)
            resp = await conn.request(req, DeleteRecordsResponse,
                                      timeout_ms=self.config.connection.request_timeout_ms + timeout_ms)
            for tr in resp.topics:
                for pr in tr.partitions:
                    if tr.name == topic and pr.partition_index == partition:
                        _check(pr.error_code, context=f"delete records of {topic}-{partition}")
                        return pr.low_watermark
            raise ProtocolError(f"the delete-records response has no result for {topic}-{partition}")

        # Deleting up to the same offset twice leaves the same log, so a lost connection is retried.
        return await self._retrying(attempt, idempotent=True)

    # -- groups --
    #
    # Every group request goes to the group's coordinator, which FindCoordinator names (cached
    # per group). An answer saying the coordinator moved, is loading or is not ready
    # (``_COORDINATOR_ERRORS``) forgets the cached one and tries again after a backoff, up to
    # ``retries_max`` times, as Kafka's admin client does.

    async def find_coordinator(self, key: str, *, key_type: int = COORDINATOR_KEY_GROUP) -> CoordinatorInfo:
        """The coordinator of a group (or, with ``key_type`` 1, a transactional id)."""
        cached = self._coordinators.get((key_type, key))
        if cached is not None:
            return cached

        async def attempt() -> CoordinatorInfo:
            conn = await self.any_connection()
            version = conn.version(ApiKey.FIND_COORDINATOR)
            if version >= 4:
                resp = await conn.request(FindCoordinatorRequest(key_type=key_type, coordinator_keys=[key]),
                                          FindCoordinatorResponse)
                found = next((c for c in resp.coordinators if c.key == key), None)
                if found is None:
                    raise ProtocolError(f"the find-coordinator response has no answer for {key!r}")
                _check(found.error_code, found.error_message, context=f"find the coordinator of {key!r}")
                return CoordinatorInfo(found.node_id, found.host, found.port)
            if version == 0 and key_type != COORDINATOR_KEY_GROUP:
                raise UnsupportedVersion(f"the broker at {conn.peer} cannot find transaction coordinators")
            resp = await conn.request(FindCoordinatorRequest(key=key, key_type=key_type), FindCoordinatorResponse)
            _check(resp.error_code, resp.error_message, context=f"find the coordinator of {key!r}")
            return CoordinatorInfo(resp.node_id, resp.host, resp.port)

        info = await self._coordinator_retrying(attempt, lambda: None, idempotent=True)
        self._coordinators[(key_type, key)] = info
        return info

    async def _coordinator_retrying(self, op: Callable[[], Awaitable[T]], forget: Callable[[], None], *,
                                    idempotent: bool) -> T:
        attempt = 0
        while True:
            try:
                return await op()
            except KafkaError as e:
                if e.code not in _COORDINATOR_ERRORS or attempt >= self.config.retries_max:
                    raise
            except (ConnectionFailed, RequestTimedOut):
                if not idempotent or attempt >= self.config.retries_max:
                    raise
            attempt += 1
            forget()
            await trio.sleep(self.config.retry_backoff_ms / 1000)

    async def _group_call(self, group_id: str, op: Callable[[Connection, CoordinatorInfo], Awaitable[T]], *,
                          idempotent: bool = True) -> T:
        """``op`` on a connection to the group's coordinator, retried when the coordinator moved."""

        async def attempt() -> T:
            coordinator = await self.find_coordinator(group_id)
            conn = await self._connection(coordinator.host, coordinator.port)
            return await op(conn, coordinator)

        def forget() -> None:
            self._coordinators.pop((COORDINATOR_KEY_GROUP, group_id), None)

        return await self._coordinator_retrying(attempt, forget, idempotent=idempotent)

    async def list_groups(self, *, states: Sequence[str] = (), types: Sequence[str] = ()) -> list[GroupListing]:
        """Every group of every broker (ListGroups goes to each), by group id; only those in one
        of ``states`` (ListGroups v4+) and of one of ``types`` (v5+) when given. Kafka matches
        both case-insensitively."""
        md = await self.metadata([])
        found: dict[str, GroupListing] = {}
        nodes: list[tuple[str, int] | None] = [(b.host, b.port) for b in md.brokers.values()]
        for address in nodes or [None]:
            conn = await (self.any_connection() if address is None else self._connection(*address))
            version = conn.version(ApiKey.LIST_GROUPS)
            if states and version < 4:
                raise UnsupportedVersion(f"the broker at {conn.peer} cannot filter groups by state (ListGroups v4+)")
            if types and version < 5:
                raise UnsupportedVersion(f"the broker at {conn.peer} cannot filter groups by type (ListGroups v5+)")
            resp = await conn.request(ListGroupsRequest(states_filter=list(states), types_filter=list(types)),
                                      ListGroupsResponse)
            _check(resp.error_code, context=f"list groups on {conn.peer}")
            for g in resp.groups:
                found[g.group_id] = GroupListing(g.group_id, g.protocol_type, g.group_state, g.group_type)
        return [found[g] for g in sorted(found)]

    async def describe_group(self, group_id: str) -> GroupDescription:
        """DescribeGroups for one group, from its coordinator. A consumer group's members come
        with their assigned partitions decoded."""

        async def op(conn: Connection, coordinator: CoordinatorInfo) -> GroupDescription:
            resp = await conn.request(DescribeGroupsRequest(groups=[group_id]), DescribeGroupsResponse)
            g = next((g for g in resp.groups if g.group_id == group_id), None)
            if g is None:
                raise ProtocolError(f"the describe-groups response has no answer for {group_id!r}")
            if g.error_code in _COORDINATOR_ERRORS:
                _check(g.error_code, context=f"group {group_id!r}")
            members = []
            for m in g.members:
                raw = bytes(m.member_assignment)
                assignment: tuple[tuple[str, tuple[int, ...]], ...] | None = None
                if g.protocol_type == CONSUMER_PROTOCOL_TYPE:
                    try:
                        assignment = decode_consumer_assignment(raw)
                    except ProtocolError:
                        assignment = None
                members.append(MemberDescription(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                                 assignment, raw))
            return GroupDescription(g.group_id, ErrorCode.from_code(g.error_code), g.group_state, g.protocol_type,
                                    g.protocol_data, tuple(members), coordinator, g.authorized_operations)

        return await self._group_call(group_id, op)

    async def fetch_offsets(self, group_id: str, partitions: Iterable[tuple[str, int]] | None = None
                            ) -> dict[tuple[str, int], OffsetAndMetadata]:
        """The group's committed offsets: of ``partitions``, or every one it has when None.
        Partitions with nothing committed are left out. ``KafkaError`` for a group or partition
        error."""
        wanted: dict[str, list[int]] | None = None
        if partitions is not None:
            wanted = {}
            for topic, partition in partitions:
                wanted.setdefault(topic, []).append(partition)

        async def op(conn: Connection, coordinator: CoordinatorInfo) -> dict[tuple[str, int], OffsetAndMetadata]:
            version = conn.version(ApiKey.OFFSET_FETCH)
            context = f"fetch the offsets of group {group_id!r}"
            if version >= 8:
                topics = None if wanted is None else [
                    OffsetFetchRequest.OffsetFetchRequestTopics(name=t, partition_indexes=ps) for t, ps in wanted.items()]
                resp = await conn.request(OffsetFetchRequest(groups=[OffsetFetchRequest.OffsetFetchRequestGroup(
                    group_id=group_id, topics=topics)]), OffsetFetchResponse)
                group = next((g for g in resp.groups if g.group_id == group_id), None)
                if group is None:
                    raise ProtocolError(f"the offset-fetch response has no answer for {group_id!r}")
                _check(group.error_code, context=context)
                rows = [(t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch, p.metadata,
                         p.error_code) for t in group.topics for p in t.partitions]
            else:
                if wanted is None and version < 2:
                    raise UnsupportedVersion(f"the broker at {conn.peer} cannot list all of a group's offsets"
                                             " (OffsetFetch v2+)")
                resp = await conn.request(OffsetFetchRequest(group_id=group_id, topics=None if wanted is None else [
                    OffsetFetchRequest.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                    for t, ps in wanted.items()]), OffsetFetchResponse)
                _check(resp.error_code, context=context)
                rows = [(t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch, p.metadata,
                         p.error_code) for t in resp.topics for p in t.partitions]
            out: dict[tuple[str, int], OffsetAndMetadata] = {}
            for topic, partition, offset, epoch, metadata, error in rows:
                _check(error, context=f"{context}, {topic}-{partition}")
                if offset >= 0:
                    out[(topic, partition)] = OffsetAndMetadata(offset, epoch, metadata or "")
            return out

        return await self._group_call(group_id, op)

    async def commit_offsets(self, group_id: str, offsets: Mapping[tuple[str, int], int | OffsetAndMetadata]
                             ) -> dict[tuple[str, int], ErrorCode | int]:
        """Commit ``offsets`` for the group as an outsider (generation -1, no member id), as
        Kafka's admin client alters a group's offsets: the coordinator accepts this only while the
        group has no members (else UNKNOWN_MEMBER_ID), and creates the group if it has none. The
        error of each partition, NONE when it was committed."""
        by_topic: dict[str, list[OffsetCommitRequest.OffsetCommitRequestPartition]] = {}
        for (topic, partition), value in offsets.items():
            om = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(value)
            by_topic.setdefault(topic, []).append(OffsetCommitRequest.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=om.offset, committed_leader_epoch=om.leader_epoch,
                committed_metadata=om.metadata))
        req = OffsetCommitRequest(group_id=group_id, generation_id_or_member_epoch=-1, member_id="",
                                  topics=[OffsetCommitRequest.OffsetCommitRequestTopic(name=t, partitions=ps)
                                          for t, ps in by_topic.items()])

        async def op(conn: Connection, coordinator: CoordinatorInfo) -> dict[tuple[str, int], ErrorCode | int]:
            resp = await conn.request(req, OffsetCommitResponse)
            out: dict[tuple[str, int], ErrorCode | int] = {}
            for t in resp.topics:
                for p in t.partitions:
                    if p.error_code in _COORDINATOR_ERRORS:
                        _check(p.error_code, context=f"commit offsets of group {group_id!r}")
                    out[(t.name, p.partition_index)] = ErrorCode.from_code(p.error_code)
            for tp in offsets:
                if tp not in out:
                    raise ProtocolError(f"the offset-commit response has no result for {tp[0]}-{tp[1]}")
            return out

        # Setting the same offsets twice leaves the same state, so a lost connection is retried.
        return await self._group_call(group_id, op)

    async def delete_groups(self, group_ids: Sequence[str]) -> dict[str, ErrorCode | int]:
        """DeleteGroups, each group at its coordinator: the error of each, NONE when deleted. Kafka
        refuses groups with members (NON_EMPTY_GROUP) and unknown ones (GROUP_ID_NOT_FOUND)."""
        out: dict[str, ErrorCode | int] = {}
        for group_id in dict.fromkeys(group_ids):

            async def op(conn: Connection, coordinator: CoordinatorInfo, group_id: str = group_id) -> int:
                resp = await conn.request(DeleteGroupsRequest(groups_names=[group_id]), DeleteGroupsResponse)
                r = next((r for r in resp.results if r.group_id == group_id), None)
                if r is None:
                    raise ProtocolError(f"the delete-groups response has no result for {group_id!r}")
                if r.error_code in _COORDINATOR_ERRORS:
                    _check(r.error_code, context=f"delete group {group_id!r}")
                return r.error_code

            out[group_id] = ErrorCode.from_code(await self._group_call(group_id, op, idempotent=False))
        return out


_NO_TOPIC_ID = uuid.UUID(int=0)


def _config_source(c: DescribeConfigsResponse.DescribeConfigsResourceResult, version: int) -> ConfigSource | int:
    if version == 0:  # v0 has no source, only is_default
        return ConfigSource.DEFAULT_CONFIG if c.is_default else ConfigSource.UNKNOWN
    try:
        return ConfigSource(c.config_source)
    except ValueError:
        return c.config_source


def _fetch_result(topic: str, pd: FetchResponse.PartitionData, offset: int, error: int) -> FetchResult:
    """Decode a partition's records: whole batches only, CRC checked, control batches skipped,
    records before ``offset`` (the start of a batch it falls inside) dropped."""
    if error != ErrorCode.NONE:
        return FetchResult(topic, pd.partition_index, ErrorCode.from_code(error), next_offset=offset,
                           high_watermark=pd.high_watermark, last_stable_offset=pd.last_stable_offset,
                           log_start_offset=pd.log_start_offset)
    records: list[ConsumerRecord] = []
    next_offset = offset
    data = pd.records
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("decoded records are not in memory")
    try:
        for batch in iter_batches(data or b""):
            batch.validate()
            next_offset = max(next_offset, batch.next_offset)
            if batch.is_control:
                continue
            ts_type = batch.timestamp_type
            epoch = batch.partition_leader_epoch
            for r in batch.records():
                if r.offset < offset:
                    continue
                records.append(ConsumerRecord(
                    topic, pd.partition_index, r.offset, r.timestamp, ts_type,
                    None if r.key is None else bytes(r.key), None if r.value is None else bytes(r.value),
                    tuple((k, None if v is None else bytes(v)) for k, v in r.headers), epoch))
    except BatchError as e:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, str(e), context=f"fetch from {topic}-{pd.partition_index}") from e
    return FetchResult(topic, pd.partition_index, ErrorCode.NONE, tuple(records), next_offset,
                       pd.high_watermark, pd.last_stable_offset, pd.log_start_offset)


@asynccontextmanager
async def open_client(bootstrap: str | Sequence[tuple[str, int]], *, config: ClientConfig = ClientConfig(),
                      wall_clock_ms: Callable[[], int] = _system_wall_ms) -> AsyncIterator[Client]:
    """A client connected to the first reachable bootstrap server; every connection is closed on
    exit. ``ConnectionFailed`` when none is reachable."""
    servers = parse_bootstrap(bootstrap)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        client = Client(servers, nursery, config=config, wall_clock_ms=wall_clock_ms)
        try:
            try:
                await client.any_connection()
                yield client
            finally:
                await client.aclose()
        except Exception as e:
            failure = e  # raised below as itself, not wrapped in the nursery's exception group
    if failure is not None:
        raise failure
