"""A deterministic simulator for a cluster of sans-IO nodes: one seed, one outcome.

What it owns: a virtual clock and a priority queue of events (message deliveries, node timers and
the test's own scheduled actions), one ``random.Random(seed)`` from which every random choice is
drawn (network delays and drops, crash damage, and each node's own random source), a simulated
network between node ids, and one ``storage.fs.SimFileSystem`` per node as its disk.

Nodes are any objects with the sans-IO shape the replication cores share (``SimNode``):
``handle_request(now_ms, source, correlation_id, request)`` answering with a message or None (a
parked request, answered later), ``handle_response(now_ms, source, correlation_id, response)``,
``poll(now_ms)`` returning effects and ``next_deadline_ms()``. An effect is anything with
``destination`` and ``correlation_id`` and either ``request`` or ``response`` (for example
``replication.raft.SendRequest``/``SendResponse``). The simulator polls a node after every event
that touched it, sends what it returned and wakes it at its next deadline.

The network. Each message gets a random delay in [``delay_ms_min``, ``delay_ms_max``] (so
messages between two nodes overtake one another: reordering) and is dropped with
``drop_probability``. ``cut(a, b)`` cuts the direction a -> b (``both=True`` both); a message is
lost when its direction is cut at delivery time. Like a TCP connection, a response only reaches
the incarnation of the node that sent the request: a restarted node never sees answers meant for
its previous life.

Crashes. ``crash(n)`` drops node n's object and makes its disk lose every byte and name that was
not synced (``torn=True``: parts of the unsynced tails survive, some sectors zeroed); messages in
flight to it are lost. ``restart(n)`` builds the node again from that disk through the factory;
``restart(n, wipe=True)`` gives it an empty disk (a replaced drive).

Checks. After every event each function in ``checks`` runs with the simulation (``touched``
names the nodes the event polled, crashed or started: every change to a node's state happens
in one of those, so a check may look at those nodes only); an
``AssertionError`` from one (or from a node) is re-raised with the seed and the last events, so a
failure can be replayed exactly with the same seed. Single-threaded and fast: events are tuples,
the trace is formatted only when something fails.
"""

from __future__ import annotations

import heapq
import os
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from protocol.message import Message
from storage.fs import SimFileSystem

TRACE_EVENTS_MAX = 60
NEVER_MS = 1 << 62


class SimNode(Protocol):
    def handle_request(self, now_ms: int, source: int, correlation_id: int, request: Message) -> Message | None: ...

    def handle_response(self, now_ms: int, source: int, correlation_id: int, response: Message) -> None: ...

    def poll(self, now_ms: int) -> Sequence[Any]: ...

    def next_deadline_ms(self) -> int: ...


# (node_id, disk, now_ms, rng for the node) -> the node, recovered from that disk
NodeFactory = Callable[[int, SimFileSystem, int, random.Random], SimNode]
Check = Callable[["Simulation"], None]


@dataclass(slots=True)
class NetworkConfig:
    delay_ms_min: int = 1
    delay_ms_max: int = 10
    drop_probability: float = 0.0


@dataclass(slots=True)
class Envelope:
    source: int
    destination: int
    correlation_id: int
    message: Message
    is_request: bool
    # requests: the sender's incarnation; responses: the incarnation that sent the request
    incarnation: int


class Network:
    """Delays, drops and cut directions between node ids (see the module docstring)."""

    __slots__ = ("config", "_cut", "_rng", "sent", "dropped")

    def __init__(self, rng: random.Random, config: NetworkConfig) -> None:
        self.config = config
        self._cut: set[tuple[int, int]] = set()
        self._rng = rng
        self.sent = 0
        self.dropped = 0

    def cut(self, a: int, b: int, *, both: bool = True) -> None:
        self._cut.add((a, b))
        if both:
            self._cut.add((b, a))

    def isolate(self, node: int, others: Iterable[int], *, inbound: bool = True, outbound: bool = True) -> None:
        for other in others:
            if other != node:
                if inbound:
                    self._cut.add((other, node))
                if outbound:
                    self._cut.add((node, other))

    def split(self, side: Iterable[int], other_side: Iterable[int]) -> None:
        for a in side:
            for b in other_side:
                self.cut(a, b)

    def heal(self) -> None:
        self._cut.clear()

    def is_cut(self, a: int, b: int) -> bool:
        return (a, b) in self._cut

    @property
    def cuts(self) -> frozenset[tuple[int, int]]:
        return frozenset(self._cut)

    def delay_ms(self) -> int:
        c = self.config
        return c.delay_ms_min if c.delay_ms_max <= c.delay_ms_min else self._rng.randint(c.delay_ms_min, c.delay_ms_max)

    def drops(self) -> bool:
        p = self.config.drop_probability
        return p > 0 and self._rng.random() < p


class SimulationFailure(AssertionError):
    """An invariant failed; the message names the seed and shows the last events."""


class Simulation:
    """See the module docstring. Build, add ``checks``, schedule actions, ``run_until``."""

    def __init__(
        self,
        seed: int,
        node_ids: Sequence[int],
        factory: NodeFactory,
        *,
        network: NetworkConfig | None = None,
        checks: Sequence[Check] = (),
        wire_versions: Mapping[int, int] | None = None,
        trace_events_max: int = TRACE_EVENTS_MAX,
        describe: Callable[[Message], str] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now_ms = 0
        self.factory = factory
        self.node_ids = tuple(node_ids)
        self.network = Network(self.rng, network or NetworkConfig())
        self.checks: list[Check] = list(checks)
        self.wire_versions = wire_versions  # set: every message is encoded and decoded on the way
        self.describe = describe or _short  # how the failure trace shows a message
        self.disks: dict[int, SimFileSystem] = {}
        self.nodes: dict[int, SimNode | None] = {}
        self.incarnation: dict[int, int] = {}
        self.events = 0
        self.touched: set[int] = set()  # the nodes the current event polled, crashed or started
        self.trace: deque[tuple[int, str, object]] = deque(maxlen=trace_events_max)
        self._queue: list[tuple[int, int, int, object]] = []
        self._seq = 0
        self._wake_at: dict[int, int] = {}
        self._reply_incarnation: dict[tuple[int, int, int], int] = {}
        # Answers to requests from outside the simulated nodes (an admin client calling a
        # node's handle_request directly): (destination, correlation id, message), in order.
        self.outside: list[tuple[int, int, Message]] = []
        for n in self.node_ids:
            self.disks[n] = SimFileSystem()
            self.incarnation[n] = 0
            self.nodes[n] = None
        for n in self.node_ids:
            self._start(n)

    # --- nodes ------------------------------------------------------------------------------------

    def node(self, node_id: int) -> SimNode | None:
        return self.nodes[node_id]

    def alive(self) -> list[int]:
        return [n for n in self.node_ids if self.nodes[n] is not None]

    def _start(self, n: int) -> None:
        node_rng = random.Random(self.rng.getrandbits(64))
        self.incarnation[n] += 1
        self.nodes[n] = self.factory(n, self.disks[n], self.now_ms, node_rng)
        self._wake_at.pop(n, None)
        self.touch(n)

    def crash(self, node_id: int, *, torn: bool = False) -> None:
        """Kill the node: its object is dropped and its disk loses what was not synced."""
        if self.nodes[node_id] is None:
            return
        self.nodes[node_id] = None
        self.touched.add(node_id)
        self._wake_at.pop(node_id, None)
        for key in [k for k in self._reply_incarnation if k[0] == node_id]:
            del self._reply_incarnation[key]
        self.disks[node_id].crash(self.rng, torn=torn)
        self._record("crash", (node_id, torn))

    def restart(self, node_id: int, *, wipe: bool = False) -> None:
        """Start a crashed node from its disk (``wipe``: from an empty one)."""
        assert self.nodes[node_id] is None, f"node {node_id} is running"
        if wipe:
            self.disks[node_id] = SimFileSystem()
        self._record("restart", (node_id, wipe))
        self._start(node_id)

    def touch(self, node_id: int) -> None:
        """Poll a node after something happened to it (the test called one of its methods)."""
        node = self.nodes[node_id]
        if node is None:
            return
        self.touched.add(node_id)
        for effect in node.poll(self.now_ms):
            self._send(node_id, effect)
        deadline = node.next_deadline_ms()
        if deadline < NEVER_MS:
            deadline = max(deadline, self.now_ms + 1)
            scheduled = self._wake_at.get(node_id)
            if scheduled is None or deadline < scheduled or scheduled <= self.now_ms:
                self._wake_at[node_id] = deadline
                self._push(deadline, 1, node_id)

    # --- events -----------------------------------------------------------------------------------

    def _push(self, at_ms: int, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_ms, self._seq, kind, payload))

    def schedule(self, at_ms: int, action: Callable[[], None], label: str = "action") -> None:
        """Run ``action`` at virtual time ``at_ms`` (not before now)."""
        self._push(max(at_ms, self.now_ms), 2, (action, label))

    def _send(self, source: int, effect: Any) -> None:
        request = getattr(effect, "request", None)
        message = request if request is not None else effect.response
        destination = effect.destination
        if destination not in self.nodes:
            self.outside.append((destination, effect.correlation_id, message))
            return
        if request is not None:
            incarnation = self.incarnation[source]
        else:
            incarnation = self._reply_incarnation.pop((source, destination, effect.correlation_id), -1)
        if self.wire_versions is not None:
            version = self.wire_versions[message.API_KEY]
            message = type(message).decode(message.encode(version), version)
        self.network.sent += 1
        if self.network.drops():
            self.network.dropped += 1
            self._record("drop", (source, destination, message))
            return
        env = Envelope(source, destination, effect.correlation_id, message, request is not None, incarnation)
        self._push(self.now_ms + self.network.delay_ms(), 0, env)

    def _deliver(self, env: Envelope) -> None:
        if self.network.is_cut(env.source, env.destination):
            self.network.dropped += 1
            self._record("lost", env)
            return
        node = self.nodes[env.destination]
        if node is None:
            return
        self._record("deliver", env)
        if env.is_request:
            response = node.handle_request(self.now_ms, env.source, env.correlation_id, env.message)
            if response is None:
                self._reply_incarnation[(env.destination, env.source, env.correlation_id)] = env.incarnation
            else:
                if self.wire_versions is not None:
                    version = self.wire_versions[response.API_KEY]
                    response = type(response).decode(response.encode(version), version)
                reply = Envelope(env.destination, env.source, env.correlation_id, response, False, env.incarnation)
                self.network.sent += 1
                if self.network.drops():
                    self.network.dropped += 1
                else:
                    self._push(self.now_ms + self.network.delay_ms(), 0, reply)
        else:
            if self.incarnation[env.destination] != env.incarnation:
                return  # meant for a previous life of this node
            node.handle_response(self.now_ms, env.source, env.correlation_id, env.message)
        self.touch(env.destination)

    def step(self) -> bool:
        """Run the next event and the checks; False when there is none."""
        if not self._queue:
            return False
        at_ms, _, kind, payload = heapq.heappop(self._queue)
        self.now_ms = at_ms
        self.events += 1
        self.touched.clear()
        try:
            if kind == 0:
                assert isinstance(payload, Envelope)
                self._deliver(payload)
            elif kind == 1:
                assert isinstance(payload, int)
                if self._wake_at.get(payload) != at_ms:
                    return True  # superseded by an earlier wake-up
                del self._wake_at[payload]
                self._record("wake", payload)
                self.touch(payload)
            else:
                action, label = cast(tuple[Callable[[], None], str], payload)
                self._record("action", label)
                action()
            for check in self.checks:
                check(self)
        except SimulationFailure:
            raise
        except AssertionError as exc:
            raise self.failure(str(exc)) from exc
        return True

    def run_until(self, at_ms: int) -> None:
        """Run every event up to virtual time ``at_ms``; the clock then reads ``at_ms``."""
        while self._queue and self._queue[0][0] <= at_ms:
            self.step()
        self.now_ms = max(self.now_ms, at_ms)

    def run_until_true(self, predicate: Callable[[], bool], *, deadline_ms: int) -> bool:
        """Run until ``predicate()`` holds (checked after every event) or ``deadline_ms``."""
        while not predicate():
            if not self._queue or self._queue[0][0] > deadline_ms:
                self.now_ms = max(self.now_ms, deadline_ms)
                return predicate()
            self.step()
        return True

    # --- failures ---------------------------------------------------------------------------------

    def _record(self, kind: str, detail: object) -> None:
        self.trace.append((self.now_ms, kind, detail))

    def failure(self, message: str) -> SimulationFailure:
        lines = [f"seed {self.seed} failed at t={self.now_ms}ms after {self.events} events: {message}"]
        lines.append(f"rerun with: TRAFKA_SIM_SEED={self.seed}")
        lines.append("last events:")
        for at_ms, kind, detail in self.trace:
            lines.append(f"  {at_ms:>7} {kind:<8} {self._describe(detail)}")
        return SimulationFailure("\n".join(lines))

    def _describe(self, detail: object) -> str:
        if isinstance(detail, Envelope):
            arrow = "->" if detail.is_request else "=>"
            return f"{detail.source} {arrow} {detail.destination} #{detail.correlation_id} {self.describe(detail.message)}"
        if isinstance(detail, tuple) and len(detail) == 3 and isinstance(detail[2], Message):
            return f"{detail[0]} -> {detail[1]} {self.describe(detail[2])}"
        return repr(detail)


def _short(message: Message) -> str:
    text = repr(message)
    return text if len(text) <= 200 else text[:197] + "..."


def chosen_seeds(default_count: int) -> list[int]:
    """The seeds a simulator's random test runs: ``TRAFKA_SIM_SEED=n`` reruns one,
    ``TRAFKA_SIM_SEEDS=N`` runs 0..N-1, else 0..default_count-1."""
    one = os.environ.get("TRAFKA_SIM_SEED")
    if one is not None:
        return [int(one)]
    return list(range(int(os.environ.get("TRAFKA_SIM_SEEDS", str(default_count)))))
