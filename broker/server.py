"""The trio server: listeners, connections, framing, dispatch, ordered responses, shutdown.

What it owns: the listening sockets, every connection's bytes in and out, and the order of its
responses. What it never does: parse a request beyond its frame (``broker.dispatch`` does) or
block the event loop on anything but a non-blocking system call.

Theory of operation. Each listener accepts connections into a nursery of its own; beyond
``max.connections`` a new connection is closed at once. A connection runs two tasks:

* The *reader* receives straight into the buffers of ``protocol.framing.FrameDecoder`` with
  non-blocking ``readv`` on the socket (``recv_into`` semantics), so a large frame (a produce
  request) is written by the kernel into the buffer the handler uses -- no copy in Python -- and
  the size prefix is checked against ``socket.request.max.bytes`` before anything is set aside
  for the frame. It decodes and handles each request to completion before it takes the next, as
  Kafka does: a connection's requests are handled in order and its responses leave in order.
  Then it writes the response itself, without a task switch: when no further request is
  already buffered it sends everything queued with one non-blocking ``writev`` before it reads
  again. Only when the socket cannot take it all does the rest go to the writer.
* The *writer* waits for the socket to become writable and sends what the reader could not, in
  order; the reader keeps handling requests meanwhile (at most ``RESPONSES_QUEUED_MAX`` queued).
  When several requests arrived together (a pipelining client), the reader answers them all in
  one write at the end of the burst, and wakes the writer so that, should one of them wait (a
  long poll, a durable produce), the answers before it leave meanwhile.

Responses are lists of chunks (``ChunkedOut.chunks``): encoded bytes, and records held in
segment files (``SliceRecords``). A file slice of ``SENDFILE_BYTES_MIN`` or more goes out with
``os.sendfile``, its file pinned open until it is sent (a descriptor closed by the file cache
and reused meanwhile would send another file's bytes); shorter ones are read with ``preadv``
into a reused send window (``SEND_WINDOW_BYTES``; windows come from a small per-server pool)
and leave in the same ``writev`` as the encoded bytes around them, so a small response is one
system call. Either way nothing is materialized beyond one window, however long the response.
Measured on the 2-core VM, broker CPU per GB consumed by librdkafka consumers over loopback
(1 KiB records, medians of 5-9 interleaved runs): joining the parts into one ``bytes`` (the
previous writer) 1.03 s/GB; a reused copy window and ``writev`` 0.52-0.56; ``sendfile`` 0.20
(0.18-0.50: who pays for loopback delivery varies), at the same consumer throughput. (An
isolated Python reader was 15-20% slower behind ``sendfile`` than behind copies; librdkafka
showed no difference.)

A request with acks=0 gets no response. A frame that cannot be parsed closes that connection
only; a handler that fails answers with UNKNOWN_SERVER_ERROR (``dispatch``) and the connection
lives on. Streams that are not sockets (trio's memory streams in tests) take the same path with
``receive_some``/``send_all`` in place of the system calls.

Idle connections: a connection whose reader has waited for bytes for ``connections.max.idle.ms``
with nothing left to send is closed by a sweep that runs every quarter of that time (at most
every second), rather than by a timer armed for every read: arming and disarming a cancel
scope per request costs more than the rest of the receive path.

Shutdown (SIGTERM/SIGINT, or ``Server.shutdown``): stop accepting; connections waiting between
requests stop at once, requests in flight get ``shutdown_grace_ms`` to finish and send their
responses, then the rest is cancelled; then the broker flushes its logs, writes its checkpoints
and the clean-shutdown marker.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from broker.core import Broker
from broker.dispatch import CloseConnection, RequestContext, dispatch
from broker.handlers.fetch import SliceRecords
from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder
from protocol.message import RecordsSource
from storage.files import LazyFile
from storage.log import FileSlice

log = logging.getLogger("trafka.server")

RECEIVE_BYTES_MAX = 65536  # one receive_some on a stream that is not a socket
RESPONSES_QUEUED_MAX = 16  # per connection; the reader waits for the writer beyond it
SHUTDOWN_GRACE_MS_DEFAULT = 5000
SENDFILE_BYTES_MIN = 64 * 1024  # file slices at least this long are sent with sendfile...
SEND_WINDOW_BYTES = 256 * 1024  # ...shorter ones are copied into a window, this much per write
SEND_WINDOWS_KEPT_MAX = 8  # free send windows a server keeps for reuse
IOV_ENTRIES_MAX = 512  # buffers in one writev (Linux allows 1024)
IDLE_SWEEP_MS_MAX = 1000
CLOSE_FLUSH_MS = 1000  # what is queued when a reader stops still gets this long to leave

_Piece = memoryview | FileSlice
# sendfile errors that mean "not for this file or socket" rather than a broken connection.
_NO_SENDFILE_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    host: str
    port: int


class ShortReadError(OSError):
    """A file slice queued for sending had fewer bytes than it claimed (the file shrank)."""


class Server:
    """Serves one broker on its listeners. ``run`` until cancelled or ``shutdown``."""

    def __init__(self, broker: Broker, listeners: Sequence[Listener],
                 shutdown_grace_ms: int = SHUTDOWN_GRACE_MS_DEFAULT) -> None:
        self.broker = broker
        self.listeners = listeners
        self.shutdown_grace_ms = shutdown_grace_ms
        self.bound: list[tuple[str, int]] = []
        self.connections = 0
        self._conns: set[_Connection] = set()
        self._windows: list[bytearray] = []  # free send windows
        self._accept_scope: trio.CancelScope | None = None
        self._stopping = trio.Event()
        self._draining = False

    async def run(self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as root:
            root.start_soon(self.broker.committer.run)
            root.start_soon(self._maintenance)
            root.start_soon(self._sweep_idle)
            if self.broker.groups is not None:
                root.start_soon(self.broker.groups.run)
            async with trio.open_nursery() as conns:
                self._accept_scope = trio.CancelScope()
                tcp = []
                for lst in self.listeners:
                    host = lst.host or None
                    tcp += await trio.open_tcp_listeners(lst.port, host=host)
                self.bound = [t.socket.getsockname()[:2] for t in tcp]
                conns.start_soon(self._accept_all, tcp, conns)
                task_status.started(self.bound)
                await self._stopping.wait()
                # Stop accepting and reading; give requests in flight their grace period, then cancel.
                self._accept_scope.cancel()
                self._draining = True
                for conn in list(self._conns):
                    if conn.waiting_since != math.inf:  # between requests (or inside one's bytes)
                        conn.stop_reading()
                with trio.move_on_after(self.shutdown_grace_ms / 1000):
                    while self.connections:
                        await trio.sleep(0.01)
                conns.cancel_scope.cancel()
            root.cancel_scope.cancel()

    def shutdown(self) -> None:
        self._stopping.set()

    async def _maintenance(self) -> None:
        from storage.group_commit import maintenance_pass

        while True:
            await trio.sleep(1)
            if self.broker.logs is not None:
                await maintenance_pass(self.broker.logs, now_ms=self.broker.now_ms())
                self.broker.snapshot_rolled_partitions()

    async def _sweep_idle(self) -> None:
        """Close connections idle for ``connections.max.idle.ms`` (-1: never)."""
        idle_ms = self.broker.config.connections_max_idle_ms
        if idle_ms < 0:
            return
        idle_s = idle_ms / 1000
        period_s = max(min(idle_s / 4, IDLE_SWEEP_MS_MAX / 1000), 0.001)
        while True:
            await trio.sleep(period_s)
            now = trio.current_time()
            for conn in list(self._conns):
                if conn.waiting_since + idle_s <= now and not conn.outbox.has_output():
                    log.debug("closing idle connection from %s", conn.peer)
                    conn.stop_reading()

    async def _accept_all(self, listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
        assert self._accept_scope is not None
        with self._accept_scope:
            async with trio.open_nursery() as accept:
                for lst in listeners:
                    accept.start_soon(self._accept_loop, lst, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                stream = await listener.accept()
                if self.connections >= self.broker.config.max_connections:
                    await trio.aclose_forcefully(stream)
                    continue
                nursery.start_soon(self.handle_connection, stream)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        """Serve one connection; nothing that happens on it reaches the rest of the broker."""
        self.connections += 1
        conn = _Connection(self, stream)
        self._conns.add(conn)
        try:
            await self._serve(conn)
        except* ShortReadError as eg:
            log.warning("closing connection from %s: %s", conn.peer, eg.exceptions[0])
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            log.debug("connection from %s went away", conn.peer)
        except* Exception:
            log.exception("connection from %s failed", conn.peer)
        finally:
            self._conns.discard(conn)
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    async def _serve(self, conn: _Connection) -> None:
        try:
            await self._serve_until_closed(conn)
        finally:
            conn.outbox.discard()

    async def _serve_until_closed(self, conn: _Connection) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.outbox.run_writer)
            try:
                with conn.reader_scope:
                    await self._reader(conn)
            finally:
                conn.outbox.close()  # the writer sends what is queued, then returns

    async def _reader(self, conn: _Connection) -> None:
        decoder, outbox, peer = conn.decoder, conn.outbox, conn.peer
        sock = conn.socket
        fd = sock.fileno() if sock is not None else -1
        handled = False  # whether a request was handled since the task last yielded
        while not self._draining:
            try:
                frame = decoder.next_frame()
            except ProtocolError as e:
                log.info("closing connection from %s: %s", peer, e)
                return
            if frame is None:
                if outbox.has_output():
                    outbox.flush_nowait()
                if sock is None:
                    conn.waiting_since = trio.current_time()
                    data = await conn.stream.receive_some(RECEIVE_BYTES_MAX)
                    conn.waiting_since = math.inf
                    if not data:
                        return
                    decoder.receive_data(data)
                    continue
                try:
                    with decoder.get_buffer() as view:
                        n = os.readv(fd, (view,))
                except BlockingIOError:
                    conn.waiting_since = trio.current_time()
                    await trio.lowlevel.wait_readable(sock)
                    conn.waiting_since = math.inf
                    handled = False
                    continue
                except ProtocolError as e:
                    log.info("closing connection from %s: %s", peer, e)
                    return
                if n == 0:
                    return
                decoder.buffer_updated(n)
                if handled:
                    # Requests keep coming without a wait: yield once per burst handled anyway,
                    # so a client that never pauses cannot keep the others from running.
                    await trio.lowlevel.checkpoint()
                    handled = False
                continue
            ctx = RequestContext(broker=self.broker, peer=peer)
            handled = True
            try:
                response = await dispatch(ctx, frame)
            except ProtocolError as e:
                log.info("closing connection from %s: malformed request: %s", peer, e)
                return
            except CloseConnection as e:
                log.info("closing connection from %s: %s", peer, e)
                return
            if response is None:
                continue
            outbox.enqueue(response.chunks())
            if outbox.queued > RESPONSES_QUEUED_MAX:
                await outbox.wait_for_room()
            elif decoder.has_frame():
                # Answer the whole burst in one write once it is handled; but should a request
                # of it wait, the writer sends the answers before it meanwhile.
                outbox.wake_writer()


class _Connection:
    """One connection's state, as the server's idle sweep and shutdown see it."""

    __slots__ = ("stream", "socket", "peer", "decoder", "outbox", "reader_scope", "waiting_since")

    def __init__(self, server: Server, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self.peer = _peer(stream)
        self.decoder = FrameDecoder(server.broker.config.socket_request_max_bytes)
        self.outbox = _Outbox(stream, self.socket, server._windows)
        self.reader_scope = trio.CancelScope()
        # When the reader began waiting for bytes; inf while it handles a request.
        self.waiting_since = math.inf

    def stop_reading(self) -> None:
        """Stop the reader where it waits for bytes; what is queued is still sent."""
        self.reader_scope.cancel()


class _FileRun:
    """A file slice being sent with ``sendfile``; its file is pinned open until it is sent."""

    __slots__ = ("file", "fd", "position", "remaining")

    def __init__(self, file: LazyFile, fd: int, position: int, remaining: int) -> None:
        self.file, self.fd, self.position, self.remaining = file, fd, position, remaining


class _Outbox:
    """A connection's responses that have not left yet, in order, and the writer task.

    ``enqueue`` a response's chunks; ``flush_nowait`` sends as much as the socket takes now;
    ``run_writer`` is the task that waits for the socket to take the rest. Both send from the
    same state and neither yields between a write and its bookkeeping, so the order holds
    whichever of them sends. ``discard`` releases what is left when the connection ends.
    """

    __slots__ = ("_stream", "_sock", "_fd", "_pool", "_responses", "_at", "queued", "_unsent", "_unsent_files",
                 "_window", "_wake", "_room", "_writer_waiting", "_writer_scope", "_closing")

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType | None, pool: list[bytearray]) -> None:
        self._stream = stream
        self._sock = sock
        self._fd = sock.fileno() if sock is not None else -1
        self._pool = pool
        self._responses: deque[list[_Piece]] = deque()
        self._at = 0  # the next piece of _responses[0]
        self.queued = 0  # responses not yet (wholly) taken into _unsent
        self._unsent: list[memoryview | _FileRun] = []  # taken, partly written
        self._unsent_files = False  # whether _unsent holds a _FileRun
        self._window: bytearray | None = None  # behind _unsent's copied file data
        self._wake = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self._writer_waiting = False  # for the socket to become writable
        self._writer_scope = trio.CancelScope()
        self._closing = False

    def has_output(self) -> bool:
        return bool(self._unsent) or bool(self._responses)

    def enqueue(self, chunks: list[memoryview | RecordsSource]) -> None:
        if len(chunks) == 1 and type(chunks[0]) is memoryview:
            self._responses.append(chunks)  # type: ignore[arg-type]  # (checked: all memoryview)
        else:
            self._responses.append(_pieces(chunks))
        self.queued += 1

    def wake_writer(self) -> None:
        self._wake.unpark()

    async def wait_for_room(self) -> None:
        self.wake_writer()
        while self.queued > RESPONSES_QUEUED_MAX:
            await self._room.park()

    def close(self) -> None:
        """No more responses: the writer sends what is queued within ``CLOSE_FLUSH_MS``, then returns."""
        self._closing = True
        self._writer_scope.deadline = min(self._writer_scope.deadline, trio.current_time() + CLOSE_FLUSH_MS / 1000)
        self.wake_writer()

    def discard(self) -> None:
        """Drop what was not sent; unpin the files of slices in flight."""
        for item in self._unsent:
            if type(item) is _FileRun:
                item.file.unpin()
        self._unsent = []
        self._responses.clear()
        self._release_window()

    def flush_nowait(self) -> None:
        """Send what the socket takes now; hand the rest to the writer."""
        if self._writer_waiting:
            return  # the writer is waiting for the socket: nothing would go now
        if self._sock is None or not self._send_nowait():
            self.wake_writer()

    async def run_writer(self) -> None:
        with self._writer_scope:
            while True:
                if self.has_output():
                    await self._send_all()
                elif self._closing:
                    return
                else:
                    await self._wake.park()

    async def _send_all(self) -> None:
        if self._sock is None:
            while self.has_output():
                if not self._unsent:
                    self._unsent = self._take()
                await self._stream.send_all(b"".join(self._unsent))  # type: ignore[arg-type]  # (no _FileRun)
                self._unsent = []
                self._release_window()
            return
        while not self._send_nowait():
            self._writer_waiting = True
            try:
                await trio.lowlevel.wait_writable(self._sock)
            finally:
                self._writer_waiting = False

    def _send_nowait(self) -> bool:
        """Write until everything is sent (True) or the socket takes no more (False)."""
        fd = self._fd
        while True:
            unsent = self._unsent
            if not unsent:
                self._release_window()
                if not self._responses:
                    return True
                unsent = self._unsent = self._take()
            head = unsent[0]
            if type(head) is _FileRun:
                try:
                    n = os.sendfile(fd, head.fd, head.position, head.remaining)
                except BlockingIOError:
                    return False
                except OSError as e:
                    if e.errno not in _NO_SENDFILE_ERRNOS:
                        raise
                    unsent[0] = _read_run(head)  # a file system without sendfile: copy this one
                    continue
                if n == 0:
                    raise ShortReadError(f"{head.file.path}: nothing at {head.position} of {head.remaining} bytes")
                head.position += n
                head.remaining -= n
                if not head.remaining:
                    head.file.unpin()
                    del unsent[0]
                continue
            if self._unsent_files:  # the buffers up to the next file slice
                k = 1
                while k < len(unsent) and type(unsent[k]) is not _FileRun:
                    k += 1
                bufs = unsent[:k]
            else:
                bufs = unsent
            try:
                n = os.writev(fd, bufs)  # type: ignore[arg-type]  # (bufs holds no _FileRun)
            except BlockingIOError:
                return False
            # Drop what was written.
            for i, buf in enumerate(bufs):
                assert type(buf) is memoryview
                size = len(buf)
                if n < size:
                    del unsent[:i]
                    unsent[0] = buf[n:]
                    break
                n -= size
            else:
                del unsent[: len(bufs)]

    def _take(self) -> list[memoryview | _FileRun]:
        """Queued output, in order, for the next writes: encoded chunks as they are, large file
        slices to be sent with ``sendfile``, small ones copied into a send window (at most
        ``SEND_WINDOW_BYTES`` of them, so a small response is still one ``writev``)."""
        out: list[memoryview | _FileRun] = []
        responses = self._responses
        window: memoryview | None = None
        used = 0
        files = False
        can_sendfile = self._sock is not None
        while responses and len(out) < IOV_ENTRIES_MAX:
            pieces = responses[0]
            i = self._at
            while i < len(pieces) and len(out) < IOV_ENTRIES_MAX:
                p = pieces[i]
                if type(p) is memoryview:
                    out.append(p)
                    i += 1
                    continue
                assert isinstance(p, FileSlice)
                if p.length == 0:
                    i += 1
                    continue
                handle = p.file.handle()
                fd = handle.fileno()
                if fd is None:  # a file system without descriptors (tests): its bytes as read
                    data = handle.read_at(p.position, p.length)
                    if len(data) != p.length:
                        raise ShortReadError(f"{p.file.path}: {len(data)} of {p.length} bytes at {p.position}")
                    out.append(memoryview(data))
                    i += 1
                    continue
                if can_sendfile and p.length >= SENDFILE_BYTES_MIN:
                    p.file.pin()  # kept open (its descriptor not reused) until it is sent
                    out.append(_FileRun(p.file, fd, p.position, p.length))
                    files = True
                    i += 1
                    continue
                if window is None:
                    self._window = self._pool.pop() if self._pool else bytearray(SEND_WINDOW_BYTES)
                    window = memoryview(self._window)
                n = min(len(window) - used, p.length)
                if n == 0:
                    break
                view = window[used : used + n]
                got = os.preadv(fd, (view,), p.position)
                if got != n:
                    raise ShortReadError(f"{p.file.path}: {got} of {n} bytes at {p.position}")
                out.append(view)
                used += n
                if n == p.length:
                    i += 1
                else:
                    pieces[i] = FileSlice(p.file, p.position + n, p.length - n)
                    break
            if i < len(pieces):
                self._at = i
                break
            responses.popleft()
            self._at = 0
            self.queued -= 1
            if self._room:
                self._room.unpark_all()
        self._unsent_files = files
        if window is not None and used == 0:
            self._release_window()
        return out

    def _release_window(self) -> None:
        window = self._window
        if window is not None:
            self._window = None
            if len(self._pool) < SEND_WINDOWS_KEPT_MAX:
                self._pool.append(window)


def _read_run(run: _FileRun) -> memoryview:
    """The rest of ``run`` read into memory; its file unpinned."""
    data = os.pread(run.fd, run.remaining, run.position)
    if len(data) != run.remaining:
        raise ShortReadError(f"{run.file.path}: {len(data)} of {run.remaining} bytes at {run.position}")
    run.file.unpin()
    return memoryview(data)


def _pieces(chunks: list[memoryview | RecordsSource]) -> list[_Piece]:
    """A response's chunks as encoded bytes and file slices."""
    out: list[_Piece] = []
    for c in chunks:
        if isinstance(c, memoryview):
            out.append(c)
        elif isinstance(c, SliceRecords):
            out += c.slices
        else:  # another kind of records held elsewhere: its bytes, as it gives them
            out += [memoryview(b) for b in c.buffers()]  # type: ignore[attr-defined]
    return out


def _peer(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "memory:0"
    try:
        address = sock.getpeername()
    except OSError:
        return "unknown"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return f"unix:{address!r}"  # a Unix socket's peer address is a path, often empty

