"""Kafka's framing: every request and response is an int32 size followed by that many bytes.

``FrameDecoder`` is a sans-IO reassembler in the style of h11. It never reads a socket itself;
it says where the next received bytes should go and hands out whole frames:

* ``get_buffer()`` / ``buffer_updated(n)``: the caller receives straight into the writable view
  that ``get_buffer`` returns (``recv_into``/``readv``) and then says how many bytes landed --
  the interface of asyncio's ``BufferedProtocol``. ``receive_data(data)`` is the same for bytes
  the caller already holds (streams without ``recv_into``, tests); it copies them in.
* ``next_frame()``: the next whole frame without its size prefix, or None until more arrives.

Theory of operation. Bytes land first in a small *staging* buffer (``staging_bytes``, 16 KiB),
so small frames that arrive together cost one receive and each comes out with one small copy.
When the frame at the head of the staging buffer is too big to complete there, the decoder
gives that frame a buffer of its own, moves the part already received into it, and from then
on ``get_buffer`` returns the rest of *that* buffer: the body of a large frame (a produce
request) is received once, by the kernel, into the buffer the handler will use, and it stays a
writable buffer, so the broker can stamp offsets into the records where they lie. Only the part
that arrived with the prefix (at most ``staging_bytes``) is copied.

Memory. The size prefix is checked against ``frame_bytes_max`` (``socket.request.max.bytes``)
and refused if negative *before* anything is set aside for the frame: a negative or oversized
size is a ``ProtocolError`` (the stream can no longer be trusted; close the connection). A frame
under the limit gets at most ``frame_allocation_step_bytes`` (1 MiB) at first, and its buffer
then at most doubles each time it fills, so what is held for a frame is never more than
max(1 MiB, twice what actually arrived): a peer cannot make us allocate what it merely claims.

Contract: single-threaded; a view from ``get_buffer`` must be released (``with`` it, or drop
it) before the decoder is called again, because the frame buffer behind it may be resized.
"""

from __future__ import annotations

from protocol.errors import ProtocolError
from protocol.primitives import I32

FRAME_SIZE_BYTES = 4
# Kafka's socket.request.max.bytes default (100 MiB); the broker passes its configured value.
FRAME_BYTES_MAX_DEFAULT = 104_857_600
# Receives land here first; a frame that cannot complete here gets a buffer of its own.
STAGING_BYTES_DEFAULT = 16 * 1024
# The most set aside for a frame before its bytes arrive; bigger frames grow as they arrive.
FRAME_ALLOCATION_STEP_BYTES = 1024 * 1024


class FrameDecoder:
    """Splits a byte stream into frames, each a writable buffer of its own.

    Holds at most: the staging buffer, and for a frame being received into its own buffer
    max(``frame_allocation_step_bytes``, twice the bytes of it that arrived). Bytes given to
    ``receive_data`` that contain several whole frames are held until ``next_frame`` takes them.
    """

    __slots__ = ("frame_bytes_max", "frame_allocation_step_bytes", "staging_bytes", "_staging", "_start", "_end",
                 "_frame", "_frame_have", "_frame_size")

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT, *,
                 staging_bytes: int = STAGING_BYTES_DEFAULT,
                 frame_allocation_step_bytes: int = FRAME_ALLOCATION_STEP_BYTES) -> None:
        if staging_bytes < FRAME_SIZE_BYTES or frame_allocation_step_bytes < 1:
            raise ValueError("staging_bytes must hold a size prefix and frame_allocation_step_bytes be positive")
        self.frame_bytes_max = frame_bytes_max
        self.staging_bytes = staging_bytes
        self.frame_allocation_step_bytes = frame_allocation_step_bytes
        self._staging: bytearray | None = None  # allocated on first use: idle decoders cost nothing
        self._start = 0  # staging[_start:_end] is received and not yet framed
        self._end = 0
        self._frame: bytearray | None = None  # a frame being received into its own buffer
        self._frame_have = 0
        self._frame_size = 0

    # --- bytes in ----------------------------------------------------------------------------

    def get_buffer(self) -> memoryview:
        """Where the next received bytes go: a non-empty writable view. Call ``buffer_updated``
        with how many were written into it (from its start) and release the view.

        Raises ``ProtocolError`` when the frame being received has a size that is refused.
        """
        frame = self._frame
        if frame is not None and self._frame_have < self._frame_size:
            have = self._frame_have
            if have == len(frame):
                # Full but the frame is not complete: at most double (what has arrived).
                frame += bytes(min(self._frame_size, 2 * len(frame)) - len(frame))
            return memoryview(frame)[have:]
        # (A complete frame not yet taken stays where it is; what follows it goes to staging.)
        staging = self._staging
        if staging is None:
            staging = self._staging = bytearray(self.staging_bytes)
        start, end = self._start, self._end
        if start == end:
            self._start = self._end = 0
            return memoryview(staging)
        avail = end - start
        if avail >= FRAME_SIZE_BYTES and frame is None:
            total = FRAME_SIZE_BYTES + self._checked_size(staging, start)
            if avail < total:  # the head frame is incomplete, so nothing follows it
                if total > len(staging):
                    return self._receive_frame_directly(total - FRAME_SIZE_BYTES)
                if start + total > len(staging):
                    self._compact()
        if self._end == len(staging):
            if self._start:
                self._compact()
            else:
                # Whole frames that the caller has not taken yet fill it (``receive_data`` of a
                # large chunk): hold them, they arrived.
                staging += bytes(len(staging))
        return memoryview(staging)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of the view ``get_buffer`` returned."""
        assert nbytes >= 0
        if self._frame is not None and self._frame_have < self._frame_size:
            self._frame_have += nbytes
            assert self._frame_have <= len(self._frame)
        else:
            self._end += nbytes
            assert self._staging is not None and self._end <= len(self._staging)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes the caller already holds (copied in)."""
        view = memoryview(data).cast("B")
        while view:
            with self.get_buffer() as buf:
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
            self.buffer_updated(n)
            view = view[n:]

    # --- frames out --------------------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet taken as frames (size prefixes included)."""
        held = self._end - self._start
        if self._frame is not None:
            held += FRAME_SIZE_BYTES + self._frame_have
        return held

    @property
    def held_bytes(self) -> int:
        """Memory set aside for received bytes: the staging buffer and a frame's own buffer."""
        return (len(self._staging) if self._staging is not None else 0) + (
            len(self._frame) if self._frame is not None else 0)

    def pending_frame_bytes(self) -> int | None:
        """The size of the frame being received, once its prefix is in (validated)."""
        if self._frame is not None:
            return self._frame_size
        if self._end - self._start < FRAME_SIZE_BYTES:
            return None
        assert self._staging is not None
        return self._checked_size(self._staging, self._start)

    def has_frame(self) -> bool:
        """Whether ``next_frame`` would return a frame now (False too if the next size is refused)."""
        if self._frame is not None:
            return self._frame_have == self._frame_size
        avail = self._end - self._start
        if avail < FRAME_SIZE_BYTES:
            return False
        assert self._staging is not None
        (size,) = I32.unpack_from(self._staging, self._start)
        return 0 <= size <= self.frame_bytes_max and avail >= FRAME_SIZE_BYTES + size

    def next_frame(self) -> memoryview | None:
        """The next whole frame (without its size prefix), or None until more data arrives.

        The frame is a writable buffer of its own, so the broker can stamp offsets into a
        produced batch where it lies instead of copying the records once more.
        """
        frame = self._frame
        if frame is not None:
            if self._frame_have < self._frame_size:
                return None
            self._frame = None
            self._frame_have = self._frame_size = 0
            return memoryview(frame)
        start = self._start
        avail = self._end - start
        if avail < FRAME_SIZE_BYTES:
            return None
        staging = self._staging
        assert staging is not None
        size = self._checked_size(staging, start)
        if avail < FRAME_SIZE_BYTES + size:
            return None
        begin = start + FRAME_SIZE_BYTES
        out = bytearray(memoryview(staging)[begin : begin + size])  # one copy, of a small frame
        self._start = begin + size
        if self._start == self._end:
            self._start = self._end = 0
        return memoryview(out)

    # --- internals ---------------------------------------------------------------------------

    def _checked_size(self, staging: bytearray, at: int) -> int:
        (size,) = I32.unpack_from(staging, at)
        if size < 0:
            raise ProtocolError(f"frame size {size} is negative")
        if size > self.frame_bytes_max:
            raise ProtocolError(f"frame size {size} exceeds the limit of {self.frame_bytes_max} bytes")
        return size

    def _compact(self) -> None:
        assert self._staging is not None
        view = memoryview(self._staging)
        avail = self._end - self._start
        view[:avail] = view[self._start : self._end]
        self._start, self._end = 0, avail

    def _receive_frame_directly(self, size: int) -> memoryview:
        """Give the head frame (incomplete, ``size`` bytes of body) a buffer of its own."""
        assert self._staging is not None
        body_start = self._start + FRAME_SIZE_BYTES
        have = self._end - body_start
        frame = bytearray(min(size, max(self.frame_allocation_step_bytes, 2 * have)))
        frame[:have] = memoryview(self._staging)[body_start : self._end]
        self._frame, self._frame_have, self._frame_size = frame, have, size
        self._start = self._end = 0
        return memoryview(frame)[have:]


def frame(body: bytes | bytearray | memoryview) -> bytes:
    """Prefix ``body`` with its size."""
    return I32.pack(len(body)) + bytes(body)
