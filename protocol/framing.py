"""Kafka's framing: every request and response is an int32 size followed by that many bytes.

``FrameDecoder`` is a sans-IO reassembler in the style of h11: feed it whatever bytes arrived
(``receive_data``) and take whole frames out (``next_frame``). The claimed size is checked against
``frame_bytes_max`` *before* any buffer for the frame is set aside, so a peer cannot make us
allocate what a frame merely claims. A negative or oversized size is a ``ProtocolError``: the
stream can no longer be trusted and the connection must close.
"""

from __future__ import annotations

from protocol.errors import ProtocolError
from protocol.primitives import I32

FRAME_SIZE_BYTES = 4
# Kafka's socket.request.max.bytes default (100 MiB); the broker passes its configured value.
FRAME_BYTES_MAX_DEFAULT = 104_857_600


class FrameDecoder:
    """Splits a byte stream into frames; holds at most one partial frame plus what was received."""

    __slots__ = ("_buf", "_start", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        self.frame_bytes_max = frame_bytes_max
        self._buf = bytearray()
        self._start = 0

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._start and self._start >= len(self._buf) // 2:
            del self._buf[: self._start]
            self._start = 0
        self._buf += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._start

    def pending_frame_bytes(self) -> int | None:
        """The size of the frame being received, once its prefix is in (validated)."""
        if self.buffered_bytes < FRAME_SIZE_BYTES:
            return None
        (size,) = I32.unpack_from(self._buf, self._start)
        if size < 0:
            raise ProtocolError(f"frame size {size} is negative")
        if size > self.frame_bytes_max:
            raise ProtocolError(f"frame size {size} exceeds the limit of {self.frame_bytes_max} bytes")
        return size

    def next_frame(self) -> memoryview | None:
        """The next whole frame (without its size prefix), or None until more data arrives.

        The frame is a writable buffer of its own, so the broker can stamp offsets into a
        produced batch where it lies instead of copying the records once more.
        """
        size = self.pending_frame_bytes()
        if size is None:
            return None
        begin = self._start + FRAME_SIZE_BYTES
        end = begin + size
        if end > len(self._buf):
            return None
        frame = bytearray(memoryview(self._buf)[begin:end])  # one copy, not a slice and a copy
        self._start = end
        if self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
        return memoryview(frame)


def frame(body: bytes | bytearray | memoryview) -> bytes:
    """Prefix ``body`` with its size."""
    return I32.pack(len(body)) + bytes(body)
