"""The consumer-group scenarios: several member processes of one client in one group at once.

Each member is the client's driver run as ``--scenario group_member`` (drivers/common.py gives
the contract): it joins the group, prints an event line whenever its assignment changes, and
runs until its standard input is closed (then it leaves cleanly) or until it has consumed and
committed what it was asked to. The harness starts members, reads their events on a thread per
member, kills them with SIGKILL (the member's whole process group, so kcat's child dies too),
and waits for the group to reach a state, every wait bounded and failing at once when a member
reports an error or dies unasked.

A state counts as reached when it has held for ``SETTLE_S``: an eager rebalance passes through
states (everything revoked, half assigned) that must not be mistaken for the end.

Three flows run per client:

- membership: members a and b split the topic (``group_split``), c joins (``group_join``), a is
  killed and b and c take its partitions after the session timeout (``group_failover``);
- offsets: consume and commit 10, 5 and 5 records in three member runs, the broker restarted
  before the last; each run must start where the previous one committed (``group_offsets``);
- cooperative (``group_cooperative``), static (``group_static``) and KIP-848 (``group_kip848``),
  each its own group.

A flow stops at its first failing check; the scenarios after it in the same flow report that.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import scenarios
from clients import Client

SETTLE_S = 1.0
JOIN_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 15.0
# A client that cannot use the consumer protocol may wait forever without a word (librdkafka
# does): a working KIP-848 join takes a second or two here.
KIP848_TIMEOUT_S = 15.0
STDERR_TAIL_BYTES = 2000
EVENTS_SHOWN = 12


class GroupMember:
    """One member process and the events it printed."""

    def __init__(self, name: str, argv: list[str], files: Path) -> None:
        """``files``: where its output goes, as ``files``.stdout and ``files``.stderr."""
        self.name = name
        self.stderr_path = files.with_name(files.name + ".stderr")
        self.stdout_path = files.with_name(files.name + ".stdout")
        self._events: list[dict[str, Any]] = []
        self._step: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.killed = False
        self.started = time.monotonic()
        with open(self.stderr_path, "wb") as err:
            # A session of its own: SIGKILL reaches every process of the member (kcat's child).
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.stdout_path, "wb") as copy:
            for raw in self.proc.stdout:
                copy.write(raw)
                copy.flush()
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(line, dict):
                    continue
                with self._lock:
                    if "event" in line:
                        self._events.append(line)
                    elif "step" in line:
                        self._step = line

    # --- what it said -------------------------------------------------------------------------

    def events(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._events[since:] if kind is None or e["event"] == kind]

    def mark(self) -> int:
        with self._lock:
            return len(self._events)

    def assignment(self) -> frozenset[int] | None:
        """What it holds now, None before its first assignment."""
        for event in reversed(self.events()):
            if event["event"] in ("assigned", "revoked"):
                return frozenset(event["assignment"])
        return None

    def records(self) -> list[list[int]]:
        return [r for e in self.events("records") for r in e["records"]]

    def step_line(self) -> dict[str, Any] | None:
        """The step line the driver printed when it finished (None before that)."""
        with self._lock:
            return self._step

    def failure(self) -> str | None:
        """Why the member is no good any more: an error it reported, or an exit nobody asked for."""
        errors = self.events("error")
        if errors:
            return f"{self.name} reported: {errors[0]['error']}"
        with self._lock:
            step = self._step
        if step is not None and step.get("status") != "ok":
            return f"{self.name} ended its step with {step.get('status')}: {step.get('error')}"
        code = self.proc.poll()
        if code is not None and not self.killed and not self.events("closed"):
            return f"{self.name} exited with {code} before closing"
        return None

    def describe(self) -> str:
        events = self.events()
        shown = [json.dumps(e) for e in events[-EVENTS_SHOWN:]]
        with contextlib.suppress(OSError):
            tail = self.stderr_path.read_bytes()[-STDERR_TAIL_BYTES:].decode("utf-8", errors="replace")
        return (f"--- {self.name} (pid {self.proc.pid}, exit {self.proc.poll()}), last {len(shown)} of "
                f"{len(events)} events:\n" + "\n".join(shown) + f"\n--- {self.name} stderr tail:\n{tail}")

    # --- what it is told ----------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL: no LeaveGroup, no commit; the broker finds out by the session timeout."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=CLOSE_TIMEOUT_S)

    def request_close(self) -> None:
        """End of standard input: the member closes its consumer cleanly and exits."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait_exit(self, timeout_s: float) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        """Close, and kill what does not exit in time."""
        self.request_close()
        if self.wait_exit(CLOSE_TIMEOUT_S) is None:
            self.kill()


def wait_until(members: list[GroupMember], predicate: Callable[[], str | None], what: str,
               timeout_s: float = JOIN_TIMEOUT_S, settle_s: float = SETTLE_S) -> float:
    """Wait until ``predicate`` (None when satisfied, else what is still wrong) has held for
    ``settle_s``; returns the monotonic time it started holding. Fails at once when one of
    ``members`` fails, and after ``timeout_s`` with every member's recent events."""
    deadline = time.monotonic() + timeout_s
    since: float | None = None
    problem: str | None = None
    while True:
        for member in members:
            failure = member.failure()
            if failure is not None:
                raise AssertionError(f"while waiting for {what}: {failure}\n{member.describe()}")
        problem = predicate()
        now = time.monotonic()
        if problem is None:
            since = now if since is None else since
            if now - since >= settle_s:
                return since
        else:
            since = None
        if now >= deadline:
            details = "\n".join(m.describe() for m in members)
            raise AssertionError(f"no {what} after {timeout_s:.0f} s: {problem}\n{details}")
        time.sleep(0.05)


def _closed_problem(member: GroupMember) -> str | None:
    return None if member.events("closed") else "still consuming"


def assignments(members: list[GroupMember]) -> dict[str, frozenset[int] | None]:
    return {m.name: m.assignment() for m in members}


class GroupRuns:
    """The group flows of one client, run on first use; each scenario's outcome kept."""

    def __init__(self, client: Client, bootstrap: Callable[[], str], work_dir: Path,
                 restart_broker: Callable[[], None], create_topic: Callable[[str, int], None],
                 seed: Callable[[str, int], None], committed: Callable[[str, str], dict[int, int]]) -> None:
        self.client = client
        self.bootstrap = bootstrap
        self.work_dir = work_dir
        self.restart_broker = restart_broker
        self.create_topic = create_topic
        self.seed = seed
        self.committed = committed
        self.outcomes: dict[str, str | None] = {}  # scenario -> None (passed) or why it failed
        self.details: dict[str, str] = {}  # scenario -> what it saw, for a passing test's output
        self.members: list[GroupMember] = []
        self.count = 0

    def outcome(self, scenario: str) -> str | None:
        if scenario not in self.outcomes:
            flows = {self._membership: ("group_split", "group_join", "group_failover"),
                     self._offsets: ("group_offsets",), self._cooperative: ("group_cooperative",),
                     self._static: ("group_static",), self._kip848: ("group_kip848",)}
            flow, covered = next((f, names) for f, names in flows.items() if scenario in names)
            try:
                flow()
            except Exception as exc:  # outside any phase: setting up the topic, say
                for name in covered:
                    self.outcomes.setdefault(name, f"{type(exc).__name__}: {exc}")
            finally:
                for member in self.members:
                    member.stop()
                self.members = []
        return self.outcomes.get(scenario, f"{scenario} was not reached")

    @contextlib.contextmanager
    def phase(self, scenario: str, after: tuple[str, ...] = ()) -> Iterator[None]:
        """Record the scenario's outcome; on failure, the later scenarios of the flow are not reached."""
        try:
            yield
        except Exception as exc:
            self.outcomes[scenario] = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            for later in after:
                self.outcomes[later] = f"not reached: {scenario} failed first"
            raise
        self.outcomes[scenario] = None

    def member(self, name: str, params: dict[str, Any]) -> GroupMember:
        self.count += 1
        argv = [*self.client.argv(), "--bootstrap", self.bootstrap(), "--scenario", "group_member",
                "--params", json.dumps(params)]
        member = GroupMember(name, argv, self.work_dir / f"{self.client.name}.group{self.count}-{name}")
        self.members.append(member)
        return member

    def _topic(self, scenario: str, partitions: int) -> str:
        topic = scenarios.topic_name(self.client.name, scenario)
        self.create_topic(topic, partitions)
        return topic

    # --- the flows ----------------------------------------------------------------------------

    def _membership(self) -> None:
        p = scenarios.GROUP_PARTITIONS
        topic = self._topic("group", p)
        params = scenarios.member_params(topic, f"{topic}-membership")
        with contextlib.suppress(Exception):
            with self.phase("group_split", after=("group_join", "group_failover")):
                a, b = self.member("a", params), self.member("b", params)
                wait_until([a, b], lambda: scenarios.split_problem(assignments([a, b]), p, each=p // 2),
                           "split of the partitions between a and b")
                self.details["group_split"] = scenarios.format_assignments(assignments([a, b]))
            with self.phase("group_join", after=("group_failover",)):
                c = self.member("c", params)
                wait_until([a, b, c], lambda: scenarios.split_problem(assignments([a, b, c]), p),
                           "split of the partitions between a, b and c")
                self.details["group_join"] = scenarios.format_assignments(assignments([a, b, c]))
            with self.phase("group_failover"):
                held = a.assignment()
                killed_at = time.monotonic()
                a.kill()
                session_s = scenarios.GROUP_SESSION_TIMEOUT_MS / 1000
                moved_at = wait_until([b, c], lambda: scenarios.split_problem(assignments([b, c]), p),
                                      f"split between b and c after a (holding {sorted(held or ())}) was killed",
                                      timeout_s=session_s + JOIN_TIMEOUT_S)
                after_s = moved_at - killed_at
                # The broker learns of the death only by the missing heartbeats: a's last one came
                # at most one heartbeat interval before the kill.
                earliest_s = session_s - scenarios.GROUP_HEARTBEAT_INTERVAL_MS / 1000 - 0.5
                assert after_s >= earliest_s, (
                    f"a's partitions moved {after_s:.1f} s after the kill, before its {session_s:.0f} s "
                    "session timeout could have expired")
                self.details["group_failover"] = (f"{scenarios.format_assignments(assignments([b, c]))} "
                                                  f"{after_s:.1f} s after the kill")

    def _offsets(self) -> None:
        topic = self._topic("group-offsets", 1)
        self.seed(topic, scenarios.GROUP_SEEDED_COUNT)
        group = f"{topic}-group"
        seen: list[str] = []
        with contextlib.suppress(Exception), self.phase("group_offsets"):
            for run, (count, start) in enumerate(scenarios.GROUP_OFFSET_RUNS):
                last = run == len(scenarios.GROUP_OFFSET_RUNS) - 1
                if last:
                    self.restart_broker()
                member = self.member(f"run{run + 1}", scenarios.member_params(topic, group, consume_count=count))
                wait_until([member], functools.partial(_closed_problem, member),
                           f"run {run + 1} to consume {count} records, commit and close",
                           timeout_s=EXIT_TIMEOUT_S, settle_s=0)
                where = "after the broker restart" if last else f"in run {run + 1}"
                try:
                    scenarios.check_consumed_run(member.records(), count, start)
                except AssertionError as exc:
                    raise AssertionError(f"{where}: {exc}") from None
                committed = self.committed(group, topic)
                assert committed == {0: start + count}, (
                    f"{where}: the group's committed offsets are {committed}, expected {{0: {start + count}}}")
                seen.append(f"{start}..{start + count - 1}")
            self.details["group_offsets"] = f"runs read {', '.join(seen)}; the last after a broker restart"

    def _cooperative(self) -> None:
        p = scenarios.GROUP_PARTITIONS
        topic = self._topic("group-coop", p)
        params = scenarios.member_params(topic, f"{topic}-group", assignor="cooperative-sticky")
        with contextlib.suppress(Exception), self.phase("group_cooperative"):
            a, b = self.member("a", params), self.member("b", params)
            wait_until([a, b], lambda: scenarios.split_problem(assignments([a, b]), p, each=p // 2),
                       "split of the partitions between a and b")
            before = {"a": a.assignment() or frozenset(), "b": b.assignment() or frozenset()}
            marks = {"a": a.mark(), "b": b.mark()}
            c = self.member("c", params)
            wait_until([a, b, c], lambda: scenarios.split_problem(assignments([a, b, c]), p),
                       "split of the partitions between a, b and c")
            after = {m.name: m.assignment() or frozenset() for m in (a, b, c)}
            revoked = {m.name: {x for e in m.events("revoked", since=marks[m.name]) for x in e["partitions"]}
                       for m in (a, b)}
            scenarios.check_cooperative(before, after, revoked, "c")
            self.details["group_cooperative"] = (f"{scenarios.format_assignments(before)} -> "
                                                 f"{scenarios.format_assignments(after)}")

    def _static(self) -> None:
        p = scenarios.GROUP_PARTITIONS
        topic = self._topic("group-static", p)
        group = f"{topic}-group"
        with contextlib.suppress(Exception), self.phase("group_static"):
            a = self.member("a", scenarios.member_params(topic, group, instance_id="static-a"))
            b = self.member("b", scenarios.member_params(topic, group, instance_id="static-b"))
            wait_until([a, b], lambda: scenarios.split_problem(assignments([a, b]), p, each=p // 2),
                       "split of the partitions between static members a and b")
            held_a, held_b = a.assignment(), b.assignment()
            generation_a = [e.get("generation") for e in a.events("assigned")][-1]
            mark = a.mark()
            killed_at = time.monotonic()
            b.kill()
            b2 = self.member("b2", scenarios.member_params(topic, group, instance_id="static-b"))
            wait_until([a, b2], lambda: None if b2.assignment() == held_b else
                       f"b2 holds {sorted(b2.assignment() or ())}, b held {sorted(held_b or ())}",
                       f"b's restart (same group.instance.id) to get b's partitions {sorted(held_b or ())} back")
            # Past the killed member's session timeout too: its old member id must not expire into
            # a rebalance either.
            quiet_until = killed_at + scenarios.GROUP_SESSION_TIMEOUT_MS / 1000 + 2 * SETTLE_S
            while time.monotonic() < quiet_until:
                for member in (a, b2):
                    failure = member.failure()
                    assert failure is None, f"{failure}\n{member.describe()}"
                time.sleep(0.1)
            moves = [e for e in a.events(since=mark) if e["event"] in ("assigned", "revoked")]
            assert not moves, f"a rebalanced when static member b came back: {moves}"
            assert a.assignment() == held_a and b2.assignment() == held_b, (
                f"a holds {sorted(a.assignment() or ())} (held {sorted(held_a or ())}), "
                f"b2 {sorted(b2.assignment() or ())} (b held {sorted(held_b or ())})")
            generation_b2 = [e.get("generation") for e in b2.events("assigned")][-1]
            assert generation_a == generation_b2, (
                f"a is in generation {generation_a}, b2 joined generation {generation_b2}")
            self.details["group_static"] = (f"a={sorted(held_a or ())} kept; b2 got b's {sorted(held_b or ())}"
                                            + (f" in generation {generation_b2}" if generation_b2 is not None else ""))

    def _kip848(self) -> None:
        p = scenarios.GROUP_PARTITIONS
        topic = self._topic("group-kip848", p)
        params = scenarios.member_params(topic, f"{topic}-group", protocol="consumer")
        with contextlib.suppress(Exception), self.phase("group_kip848"):
            a, b = self.member("a", params), self.member("b", params)
            wait_until([a, b], lambda: scenarios.split_problem(assignments([a, b]), p, each=p // 2),
                       "split of the partitions between a and b over the consumer protocol",
                       timeout_s=KIP848_TIMEOUT_S)
            self.details["group_kip848"] = scenarios.format_assignments(assignments([a, b]))
