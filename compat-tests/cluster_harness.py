"""Runs the cluster rows of the matrix: every client against one real three-node Trafka cluster.

The cluster is tests/cluster/harness.py's ``Cluster``: three ``trafka serve`` processes (broker and
controller each), every node behind fault proxies that it advertises. cluster_scenarios.py says
what each row checks; this module owns the processes, the faults and the order of events.

Theory of operation. One run covers every client, on first use, in phases, so that one node kill
serves every client's metadata, describe, election and reassignment rows:

1. setup: start the cluster; choose the victim (a node that is not the active controller, so
   these rows see a broker failure only); create each client's topics with manual replica
   assignments (which node leads what is then known).
2. healthy: each client's driver describes its metadata topic (Metadata and admin).
3. down: SIGKILL the victim; wait until every live node's Metadata shows it fenced (gone from
   the brokers, out of every ISR, leaders moved: each node serves its own copy of the metadata
   image, and a client may ask any of them); each client describes again, and starts a
   reassignment that adds the victim (it cannot complete while the victim is down) and lists it.
4. back: restart the victim; wait until it is back in the ISR of the election topics and the
   reassignments completed; each client runs a preferred election (the victim is the preferred
   leader) and lists the reassignments (none left) and the moved partition's replicas.
5. failover: per client, one long-running ``failover`` driver (produce and consume); once records
   flow the harness SIGKILLs the partition's leader, restarts it once records sent after the kill
   were consumed, and stops the driver once records sent after the restart were consumed.

The drivers of phases 2-4 bootstrap from the live nodes only. Every wait is bounded. A row's
outcome is its first failed check (later phases of a failed row are skipped); a phase that cannot
go on (the cluster did not come up) fails every row not yet judged. The cluster is stopped with
SIGKILL at the end: nothing after the run needs its data.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.harness import Cluster

import cluster_scenarios as cs
from clients import Client
from group_harness import GroupMember
from harness import Harness

# Kafka property names. Small timeouts so that a killed node is fenced and leaves the ISRs within
# seconds; idempotent producers and the kafkajs group consumer need the internal topics.
CLUSTER_OVERRIDES = (
    "min.insync.replicas=2",
    "replica.lag.time.max.ms=2000",
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.fetch.wait.max.ms=200",
    "auto.create.topics.enable=false",
    "auto.leader.rebalance.enable=false",
    "num.partitions=1",
    "offsets.topic.replication.factor=3",
    "transaction.state.log.replication.factor=3",
    "transaction.state.log.min.isr=2",
    "group.initial.rebalance.delay.ms=0",
)
PLAN_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 60.0
FAILOVER_STEP_TIMEOUT_S = 60.0
FAILOVER_EXIT_TIMEOUT_S = cs.FAILOVER_DRAIN_TIMEOUT_MS / 1000 + 30
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class PartitionView:
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as one node's Metadata answer shows it (``node_view``)."""

    cluster_id: str
    controller: int
    brokers: frozenset[int]
    topics: dict[str, dict[int, PartitionView]]

    def partition(self, topic: str, partition: int = 0) -> PartitionView | None:
        return self.topics.get(topic, {}).get(partition)


class ClusterRun:
    """The whole cluster matrix, run on first use; each (client, row) outcome kept."""

    def __init__(self, work_dir: Path, clients: Sequence[Client]) -> None:
        self.work_dir = work_dir
        self.clients = list(clients)
        self.drivers = Harness(work_dir)  # runs driver plans; never starts a broker of its own
        self.outcomes: dict[tuple[str, str], str | None] = {}  # None: passed
        self.details: dict[tuple[str, str], str] = {}
        self.measured: dict[str, Any] = {}
        self.cluster: Cluster | None = None
        self.roles: cs.Roles | None = None
        self.addresses: dict[int, tuple[str, int]] = {}
        self.cluster_id = ""
        self.started = False
        self.failover_count = 0

    @property
    def versions(self) -> dict[str, str]:
        return self.drivers.versions

    def outcome(self, client: str, scenario: str) -> str | None:
        if not self.started:
            self.started = True
            self._run()
        return self.outcomes.get((client, scenario), f"{scenario} was not reached")

    # --- bookkeeping ---------------------------------------------------------------------------------

    def _applicable(self, client: Client, scenario: str) -> bool:
        return scenario not in client.not_applicable and (client.name, scenario) not in self.outcomes

    def _fail(self, client: Client, scenario: str, why: str) -> None:
        self.outcomes.setdefault((client.name, scenario), why)

    def _pass(self, client: Client, scenario: str, detail: str = "") -> None:
        if (client.name, scenario) not in self.outcomes:
            self.outcomes[client.name, scenario] = None
            if detail:
                self.details[client.name, scenario] = detail

    @contextlib.contextmanager
    def _judging(self, client: Client, scenario: str, phase: str) -> Iterator[None]:
        """A failed check fails the row (once: its first failure is what is reported)."""
        try:
            yield
        except Exception as exc:
            why = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            self._fail(client, scenario, f"{phase}: {why}")

    def _line(self, run: Any, step: str) -> dict[str, Any]:
        line = run.line(step)
        if line["status"] != "ok":
            raise AssertionError(f"driver step {step} {line['status']}: {line.get('error')}")
        result: dict[str, Any] = line["result"]
        return result

    # --- the run -------------------------------------------------------------------------------------

    def _run(self) -> None:
        phase = "setup"
        try:
            self._setup()
            phase = "healthy"
            self._healthy()
            phase = "down"
            self._down()
            phase = "back"
            self._back()
            phase = "failover"
            for index, client in enumerate(self.clients):
                self._failover(client, index)
        except Exception as exc:
            why = f"the {phase} phase could not go on: {type(exc).__name__}: {exc}"
            for client in self.clients:
                for scenario in cs.SCENARIOS:
                    if scenario not in client.not_applicable:
                        self._fail(client, scenario, why)
        finally:
            self._stop()
        for client in self.clients:
            for scenario in cs.SCENARIOS:
                if scenario not in client.not_applicable and scenario != "cluster_failover":
                    self._pass(client, scenario)

    def _stop(self) -> None:
        cluster = self.cluster
        if cluster is None:
            return
        for node in cluster.nodes.values():
            if node.running:
                cluster.kill(node.node_id)  # quicker than a clean stop, and nothing needs the data
        cluster.stop()
        self.cluster = None

    # --- phase 1: setup ----------------------------------------------------------------------------------

    def _setup(self) -> None:
        base = self.work_dir / "cluster"
        base.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster = Cluster(base, len(cs.NODES), CLUSTER_OVERRIDES)
        started = time.monotonic()
        cluster.start()
        cluster.wait_ready()
        self.measured["cluster_start_s"] = round(time.monotonic() - started, 2)
        self.addresses = {n.node_id: ("127.0.0.1", n.client_proxy.port) for n in cluster.nodes.values()}
        view = self._view()
        self.cluster_id = view.cluster_id
        self.roles = roles = cs.Roles.choose(view.controller)
        topics: dict[str, list[list[int]]] = {}
        for index, client in enumerate(self.clients):
            topics[cs.topic_name(client.name, "meta")] = cs.metadata_assignment(roles)
            topics[cs.topic_name(client.name, "elect")] = cs.elect_assignment(roles)
            topics[cs.topic_name(client.name, "move")] = cs.reassign_assignment(roles)
            topics[cs.topic_name(client.name, "failover")] = cs.failover_assignment(index)
        create_topics(cluster.bootstrap, topics)
        self._settle("every topic led by its preferred replica with a full ISR",
                     lambda v: _assignment_problem(v, topics))

    def _views(self) -> list[ClusterView]:
        """Every live node's answer (through its proxy, as the clients reach it)."""
        assert self.cluster is not None
        return [node_view("127.0.0.1", n.client_proxy.port) for n in self.cluster.nodes.values() if n.running]

    def _view(self) -> ClusterView:
        return self._views()[0]

    def _settle(self, what: str, problem: Callable[[ClusterView], str | None],
                timeout_s: float = SETTLE_TIMEOUT_S) -> ClusterView:
        """Wait until ``problem(view)`` is None for every live node's view; AssertionError with the
        last problem after the timeout."""
        deadline = time.monotonic() + timeout_s
        last = "no view yet"
        while True:
            try:
                views = self._views()
                found = next((f"{p} (in one node's view)" for v in views if (p := problem(v)) is not None), None)
                if found is None:
                    return views[0]
                last = found
            except OSError as exc:  # a node going away mid-request: ask again
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise AssertionError(f"no {what} after {timeout_s:.0f} s: {last}")
            time.sleep(0.2)

    def _plan(self, client: Client, steps: list[tuple[str, str, dict[str, Any]]]) -> Any:
        import scenarios

        assert self.cluster is not None
        plan = [scenarios.Step(step_id, scenario, params) for step_id, scenario, params in steps]
        # The live nodes only: a client's first contact with a dead bootstrap node is its own
        # business (kafkajs gives up after a few random picks of it), not what these rows test.
        live = ",".join(n.bootstrap for n in self.cluster.nodes.values() if n.running)
        return self.drivers.run_driver(client, plan, PLAN_TIMEOUT_S, bootstrap=live)

    # --- phase 2: every node up ------------------------------------------------------------------------

    def _healthy(self) -> None:
        roles = self.roles
        assert roles is not None
        meta_assignment = cs.metadata_assignment(roles)
        for client in self.clients:
            meta = cs.topic_name(client.name, "meta")
            steps: list[tuple[str, str, dict[str, Any]]] = [("md_up", "cluster_metadata", {"topic": meta})]
            if "cluster_describe" not in client.not_applicable:
                steps.append(("describe_up", "cluster_describe", {"topic": meta}))
            run = self._plan(client, steps)
            with self._judging(client, "cluster_metadata", "every node up"):
                cs.check_metadata(self._line(run, "md_up"), meta_assignment, self.addresses)
            if self._applicable(client, "cluster_offline_replicas"):
                with self._judging(client, "cluster_offline_replicas", "every node up"):
                    cs.check_offline(self._line(run, "md_up"), meta_assignment)
            if self._applicable(client, "cluster_describe"):
                with self._judging(client, "cluster_describe", "every node up"):
                    cs.check_describe(self._line(run, "describe_up"), meta_assignment, self.addresses,
                                      self.cluster_id)

    # --- phase 3: the victim down -----------------------------------------------------------------------

    def _down(self) -> None:
        roles, cluster = self.roles, self.cluster
        assert roles is not None and cluster is not None
        killed_at = time.monotonic()
        cluster.kill(roles.victim)
        watched = [cs.topic_name(c.name, p) for c in self.clients for p in ("meta", "elect")]

        def fenced(view: ClusterView) -> str | None:
            if roles.victim in view.brokers:
                return f"node {roles.victim} still listed among the brokers {sorted(view.brokers)}"
            for topic in watched:
                for pid, p in view.topics.get(topic, {}).items():
                    if p.leader == roles.victim or roles.victim in p.isr or p.leader < 0:
                        return f"{topic}-{pid}: leader {p.leader}, ISR {list(p.isr)}"
            return None

        try:
            self._settle(f"view without node {roles.victim}", fenced)
        except AssertionError as exc:
            for client in self.clients:
                for scenario in ("cluster_metadata", "cluster_offline_replicas", "cluster_describe",
                                 "cluster_reassign", "cluster_elect_leaders"):
                    if self._applicable(client, scenario):
                        self._fail(client, scenario, f"node {roles.victim} killed: {exc}")
            return
        self.measured["victim_fenced_s"] = round(time.monotonic() - killed_at, 2)
        meta_assignment = cs.metadata_assignment(roles)
        down = [roles.victim]
        for client in self.clients:
            meta, move = cs.topic_name(client.name, "meta"), cs.topic_name(client.name, "move")
            steps: list[tuple[str, str, dict[str, Any]]] = [("md_down", "cluster_metadata", {"topic": meta})]
            if "cluster_describe" not in client.not_applicable:
                steps.append(("describe_down", "cluster_describe", {"topic": meta}))
            if self._applicable(client, "cluster_reassign"):
                steps += [("reassign", "alter_reassignment",
                           {"topic": move, "partition": 0, "replicas": cs.reassign_target(roles)}),
                          ("list_moving", "list_reassignments", {"topic": move, "partition": 0})]
            run = self._plan(client, steps)
            with self._judging(client, "cluster_metadata", f"node {roles.victim} killed"):
                cs.check_metadata(self._line(run, "md_down"), meta_assignment, self.addresses, down)
            if self._applicable(client, "cluster_offline_replicas"):
                with self._judging(client, "cluster_offline_replicas", f"node {roles.victim} killed"):
                    cs.check_offline(self._line(run, "md_down"), meta_assignment, down)
            if self._applicable(client, "cluster_describe"):
                with self._judging(client, "cluster_describe", f"node {roles.victim} killed"):
                    cs.check_describe(self._line(run, "describe_down"), meta_assignment, self.addresses,
                                      self.cluster_id, down)
            if self._applicable(client, "cluster_reassign"):
                with self._judging(client, "cluster_reassign", f"moving a replica to node {roles.victim} while down"):
                    cs.check_reassign_started(self._line(run, "reassign"),
                                              self._line(run, "list_moving"), cs.reassign_target(roles),
                                              cs.reassign_assignment(roles)[0])

    # --- phase 4: the victim back ----------------------------------------------------------------------

    def _back(self) -> None:
        roles, cluster = self.roles, self.cluster
        assert roles is not None and cluster is not None
        restarted_at = time.monotonic()
        cluster.start(roles.victim)
        electing = [c for c in self.clients if self._applicable(c, "cluster_elect_leaders")]
        moving = [c for c in self.clients if self._applicable(c, "cluster_reassign")]

        def ready(view: ClusterView) -> str | None:
            if roles.victim not in view.brokers:
                return f"node {roles.victim} not registered again"
            for client in electing:
                p = view.partition(cs.topic_name(client.name, "elect"))
                if p is None or roles.victim not in p.isr:
                    return f"{client.name}'s election partition: ISR {None if p is None else list(p.isr)}"
                if p.leader == roles.victim:
                    return f"{client.name}'s election partition is led by node {roles.victim} without an election"
            for client in moving:
                p = view.partition(cs.topic_name(client.name, "move"))
                if p is None or list(p.replicas) != cs.reassign_target(roles):
                    return f"{client.name}'s reassignment: replicas {None if p is None else list(p.replicas)}"
            return None

        try:
            self._settle(f"node {roles.victim} back in the ISRs and the reassignments complete", ready)
        except AssertionError as exc:
            for client in electing:
                self._fail(client, "cluster_elect_leaders", f"node {roles.victim} restarted: {exc}")
            for client in moving:
                self._fail(client, "cluster_reassign", f"node {roles.victim} restarted: {exc}")
            return
        self.measured["victim_back_s"] = round(time.monotonic() - restarted_at, 2)
        for client in self.clients:
            steps: list[tuple[str, str, dict[str, Any]]] = []
            if client in electing:
                steps.append(("elect", "elect_leaders", {"topic": cs.topic_name(client.name, "elect"), "partition": 0,
                                                         "preferred": roles.victim, "wait_ms": cs.ELECT_WAIT_MS}))
            if client in moving:
                move = cs.topic_name(client.name, "move")
                steps += [("list_done", "list_reassignments", {"topic": move, "partition": 0}),
                          ("md_moved", "cluster_metadata", {"topic": move})]
            if not steps:
                continue
            run = self._plan(client, steps)
            if client in electing:
                with self._judging(client, "cluster_elect_leaders", f"preferred election of node {roles.victim}"):
                    cs.check_elect(self._line(run, "elect"), roles.victim)
                    leader = self._settle_leader(cs.topic_name(client.name, "elect"), roles.victim)
                    self.details[client.name, "cluster_elect_leaders"] = (
                        f"leader moved back to node {leader} (it was node {roles.a} after the kill)")
            if client in moving:
                with self._judging(client, "cluster_reassign", "after the node came back"):
                    cs.check_reassign_done(self._line(run, "list_done"), self._line(run, "md_moved"),
                                           cs.reassign_target(roles))

    def _settle_leader(self, topic: str, leader: int) -> int:
        view = self._settle(f"{topic} led by node {leader}",
                            lambda v: None if (p := v.partition(topic)) is not None and p.leader == leader
                            else f"leader {None if p is None else p.leader}", timeout_s=10)
        p = view.partition(topic)
        assert p is not None
        return p.leader

    # --- phase 5: produce and consume through a leader failover -----------------------------------------

    def _failover(self, client: Client, index: int) -> None:
        if not self._applicable(client, "cluster_failover"):
            return
        cluster = self.cluster
        assert cluster is not None
        topic = cs.topic_name(client.name, "failover")
        failover_topics = [cs.topic_name(c.name, "failover") for c in self.clients]
        with self._judging(client, "cluster_failover", "before the run"):
            view = self._settle("every node up and every failover partition's ISR full",
                                lambda v: _full_isr_problem(v, failover_topics))
            part = view.partition(topic)
            assert part is not None
            leader = part.leader
        if (client.name, "cluster_failover") in self.outcomes:
            return
        self.failover_count += 1
        argv = [*client.argv(), "--bootstrap", cluster.bootstrap, "--scenario", "failover",
                "--params", json.dumps(cs.failover_params(topic))]
        member = GroupMember("failover", argv, self.work_dir / f"{client.name}.failover{self.failover_count}")
        killed = restarted = False
        summary = ""
        try:
            with self._judging(client, "cluster_failover", "producing and consuming"):
                _wait_progress(member, lambda e: e["last_consumed"] >= cs.FAILOVER_WARMUP_RECORDS - 1,
                               "records flowing before the kill")
                cluster.kill(leader)
                killed = True
                killed_ms = _wall_ms()
                # Records numbered from the count in a line written after the kill were sent after it.
                sent_at_kill = _wait_progress(member, lambda e: e["wall_ms"] >= killed_ms, "progress")["sent"]
                first_after = _wait_progress(member, lambda e: e["last_consumed"] >= sent_at_kill,
                                             f"a record sent after node {leader} was killed acknowledged and read")
                failover_s = (first_after["wall_ms"] - killed_ms) / 1000
                _wait_progress(member, lambda e: e["last_consumed"] >= sent_at_kill + cs.FAILOVER_AFTER_FAULT_RECORDS,
                               "records flowing after the kill")
                cluster.start(leader)
                restarted = True
                restarted_ms = _wall_ms()
                sent_at_restart = _wait_progress(member, lambda e: e["wall_ms"] >= restarted_ms, "progress")["sent"]
                _wait_progress(member,
                               lambda e: e["last_consumed"] >= sent_at_restart + cs.FAILOVER_AFTER_FAULT_RECORDS,
                               f"records flowing after node {leader} restarted")
                member.request_close()
                if member.wait_exit(FAILOVER_EXIT_TIMEOUT_S) is None:
                    raise AssertionError(f"the driver did not finish within {FAILOVER_EXIT_TIMEOUT_S:.0f} s "
                                         f"of being stopped\n{member.describe()}")
                line = member.step_line()
                if line is None or line.get("status") != "ok":
                    raise AssertionError(f"the driver ended with {None if line is None else line.get('status')}: "
                                         f"{None if line is None else line.get('error')}\n{member.describe()}")
                summary = cs.check_failover(line["result"])
                role = "the active controller" if leader == view.controller else "not the controller"
                self.measured.setdefault("failover_s", {})[client.name] = round(failover_s, 2)
                summary = (f"leader node {leader} ({role}) killed after {sent_at_kill} sends; the first record "
                           f"sent after the kill was read back {failover_s:.2f} s after it; {summary}")
        finally:
            member.stop()
            if killed and not restarted and not cluster.nodes[leader].running:
                with contextlib.suppress(Exception):
                    cluster.start(leader)
        self._pass(client, "cluster_failover", summary)


# --- the cluster, seen from this process -------------------------------------------------------------


METADATA_VERSION = 5  # the first with offline replicas; not yet flexible


def node_view(host: str, port: int, timeout_s: float = 5.0) -> ClusterView:
    """What one node answers to a Metadata v5 request for every topic, read off a plain socket:
    each node serves its own copy of the metadata image, and a fault is settled only once every
    live node shows it (the clients may ask any of them)."""
    client_id = b"trafka-compat-cluster"
    header = struct.pack(">hhih", 3, METADATA_VERSION, 1, len(client_id)) + client_id
    request = header + struct.pack(">ib", -1, 0)  # all topics, no auto-creation
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        return parse_metadata_v5(_recv_exactly(sock, size))


def parse_metadata_v5(data: bytes) -> ClusterView:
    """A Metadata v5 response (correlation id first) as a ``ClusterView``."""
    reader = _Reader(data)
    reader.int32()  # correlation id
    reader.int32()  # throttle time
    brokers = []
    for _ in range(reader.int32()):
        node_id = reader.int32()
        reader.string()
        reader.int32()
        reader.string()  # rack
        brokers.append(node_id)
    cluster_id = reader.string() or ""
    controller = reader.int32()
    topics: dict[str, dict[int, PartitionView]] = {}
    for _ in range(reader.int32()):
        reader.int16()  # error code
        name = reader.string() or ""
        reader.int8()  # is internal
        parts = topics.setdefault(name, {})
        for _ in range(reader.int32()):
            reader.int16()
            pid, leader = reader.int32(), reader.int32()
            replicas, isr = reader.int32s(), reader.int32s()
            reader.int32s()  # offline replicas
            parts[pid] = PartitionView(leader, tuple(replicas), tuple(isr))
    return ClusterView(cluster_id, controller, frozenset(brokers), topics)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def _take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def int8(self) -> int:
        return int(self._take(">b"))

    def int16(self) -> int:
        return int(self._take(">h"))

    def int32(self) -> int:
        return int(self._take(">i"))

    def int32s(self) -> list[int]:
        return [self.int32() for _ in range(max(self.int32(), 0))]

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        value = self.data[self.at:self.at + length].decode()
        self.at += length
        return value


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def create_topics(bootstrap: str, assignments: dict[str, list[list[int]]]) -> None:
    """Topics with manual replica assignments, through kafka-python."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=30_000)
    try:
        new = [NewTopic(name, -1, -1, replica_assignments=dict(enumerate(replicas)))
               for name, replicas in assignments.items()]
        admin.create_topics(new)
    finally:
        admin.close()


def _assignment_problem(view: ClusterView, topics: dict[str, list[list[int]]]) -> str | None:
    for name, assignment in topics.items():
        parts = view.topics.get(name)
        if parts is None or len(parts) != len(assignment):
            return f"{name} not listed with {len(assignment)} partitions"
        for pid, replicas in enumerate(assignment):
            p = parts[pid]
            if list(p.replicas) != replicas or p.leader != replicas[0] or sorted(p.isr) != sorted(replicas):
                return f"{name}-{pid}: leader {p.leader}, replicas {list(p.replicas)}, ISR {list(p.isr)}"
    return None


def _full_isr_problem(view: ClusterView, topics: Sequence[str]) -> str | None:
    if len(view.brokers) != len(cs.NODES):
        return f"brokers {sorted(view.brokers)}"
    for name in topics:
        for pid, p in view.topics.get(name, {}).items():
            if sorted(p.isr) != sorted(p.replicas) or p.leader < 0:
                return f"{name}-{pid}: leader {p.leader}, ISR {list(p.isr)}"
    return None


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _wait_progress(member: GroupMember, condition: Callable[[dict[str, Any]], bool], what: str,
                   timeout_s: float = FAILOVER_STEP_TIMEOUT_S) -> dict[str, Any]:
    """The first progress line of the driver that satisfies ``condition``, waiting for it."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        failure = member.failure()
        if failure is not None:
            raise AssertionError(f"while waiting for {what}: {failure}\n{member.describe()}")
        events = member.events("progress")
        for event in events[seen:]:
            if condition(event):
                return event
        seen = len(events)
        if time.monotonic() >= deadline:
            last = events[-1] if events else None
            raise AssertionError(f"no {what} after {timeout_s:.0f} s; last progress {last}\n{member.describe()}")
        time.sleep(POLL_S)
