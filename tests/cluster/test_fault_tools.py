"""The fault-test tools themselves: the proxy forwards, stalls on a cut without losing bytes and
delivers them on heal, resets kill connections; the checker catches every kind of anomaly."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from tests.cluster.checker import check, parse_value, value_for
from tests.cluster.proxy import FaultProxy


@pytest.fixture
def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_proxy_forwards_stalls_on_cut_and_delivers_on_heal(echo_server) -> None:
    with FaultProxy(echo_server) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.settimeout(5)
        s.sendall(b"hello")
        assert _recv_exactly(s, 5) == b"hello"
        for direction in ("forward", "backward", "both"):
            proxy.cut(direction)
            s.sendall(b"during-cut")
            s.settimeout(0.3)
            with pytest.raises(socket.timeout):
                s.recv(100)
            proxy.heal()
            s.settimeout(5)
            assert _recv_exactly(s, 10) == b"during-cut"  # held, not lost
        assert proxy.cuts == 3


def test_proxy_reset_closes_connections(echo_server) -> None:
    with FaultProxy(echo_server) as proxy, socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.settimeout(5)
        s.sendall(b"x")
        assert _recv_exactly(s, 1) == b"x"
        proxy.reset()
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
        # New connections still work.
        with socket.create_connection(("127.0.0.1", proxy.port)) as s2:
            s2.settimeout(5)
            s2.sendall(b"again")
            assert _recv_exactly(s2, 5) == b"again"


def _v(p: str, seq: int) -> bytes:
    return value_for(p, seq)


def test_checker_accepts_a_clean_history() -> None:
    acked = [(0, 0, _v("a", 0)), (0, 1, _v("a", 1)), (1, 0, _v("b", 0))]
    reads = {"c1": acked + [(1, 1, _v("b", 1))], "c2": list(acked)}
    verdict = check(acked, reads)
    assert verdict.ok, verdict.summary()
    assert verdict.unacknowledged_present == 1
    assert parse_value(_v("x:y", 7)) == ("x:y", 7)


@pytest.mark.parametrize("kind", ["lost", "misplaced", "duplicated", "reordered", "diverged"])
def test_checker_catches_each_anomaly(kind: str) -> None:
    acked = [(0, 0, _v("a", 0)), (0, 1, _v("a", 1)), (0, 2, _v("a", 2))]
    read = list(acked)
    reads = {"c1": read}
    if kind == "lost":
        reads = {"c1": read[:2]}
    elif kind == "misplaced":
        reads = {"c1": [read[0], (0, 1, _v("a", 2)), (0, 2, _v("a", 1))]}
    elif kind == "duplicated":
        reads = {"c1": read + [(0, 3, _v("a", 2))]}
    elif kind == "reordered":
        acked = [(0, 0, _v("a", 1)), (0, 1, _v("a", 0))]
        reads = {"c1": list(acked)}
    elif kind == "diverged":
        reads = {"c1": read, "c2": [read[0], read[1], (0, 2, _v("b", 9))]}
    verdict = check(acked, reads)
    assert not verdict.ok
    assert getattr(verdict, kind), verdict.summary()


def test_checker_takes_an_acknowledgement_without_an_offset_as_anywhere_in_its_partition() -> None:
    """librdkafka acknowledges a batch whose own answer was lost, once a later one is answered,
    without an offset: the value must be in its partition (by every consumer), at any offset."""
    acked: list[tuple[int, int | None, bytes]] = [(0, 0, _v("a", 0)), (0, None, _v("a", 1)), (0, 2, _v("a", 2))]
    read = [(0, 0, _v("a", 0)), (0, 1, _v("a", 1)), (0, 2, _v("a", 2))]
    assert check(acked, {"c1": read, "c2": list(read)}).ok
    verdict = check(acked, {"c1": read, "c2": [read[0], read[2]]})  # one consumer lacks it
    assert verdict.lost == [(0, None, _v("a", 1))], verdict.summary()
    verdict = check(acked, {"c1": [read[0], (1, 0, _v("a", 1)), read[2]]})  # in another partition
    assert verdict.lost == [(0, None, _v("a", 1))], verdict.summary()
