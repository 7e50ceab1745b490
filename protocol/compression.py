"""The codecs of Kafka record batches: gzip, snappy, lz4 and zstd, through ``cramjam``.

Contract. ``compress(codec, data)`` returns the bytes Kafka's own Java client would put after a
batch header; ``decompress(codec, data, decompressed_bytes_max=...)`` reverses it for anything a
real client writes, and never produces — or allocates room for — more than
``decompressed_bytes_max`` bytes (plus one, to tell "exactly at the limit" from "over it"),
whatever sizes the compressed data claims. A decompression bomb therefore costs at most that
much memory and about that much work. Every failure to decode raises ``CompressionError`` (a
``ProtocolError``); ``too_large`` tells a bomb from damaged data. Nothing here performs I/O or
keeps state between calls.

The formats, and what we write:

* gzip: RFC 1952, read with ``zlib`` (standard library) in bounded steps; concatenated members
  are accepted, as Java's ``GZIPInputStream`` does, other trailing bytes are not.
* snappy: Kafka's Java client writes the *xerial* framing — an 8-byte magic
  ``\\x82SNAPPY\\x00``, two big-endian int32 version fields (1, 1), then repeated
  ``[int32 big-endian length][raw snappy block]`` over 32 KiB pieces of input — while
  librdkafka writes one raw snappy block. We read both, telling them apart by the magic as
  Java's reader does (no valid raw block starts with it: after the length varint ``82 53``
  comes ``N``, a copy tag, and a copy before any literal is invalid), and write xerial, which
  every Java consumer can read. A raw block states its uncompressed length in a leading
  varint; we check every stated length against the limit before decompressing anything.
* lz4: the LZ4 *frame* format (with the header checksum that KIP-57 fixed). Kafka's Java reader
  refuses frames with linked blocks, so we write what Kafka writes: 64 KiB independent blocks,
  no checksums, no content size, incompressible blocks stored raw. We read any valid frame.
* zstd: standard zstd frames.

Theory of operation for the bounded path (lz4, zstd): cramjam's one-shot ``decompress_into``
writes into a caller's fixed buffer and fails as soon as the output would overflow it, without
decoding the rest. We start with a buffer sized from the compressed length and grow it
fourfold, capped at ``decompressed_bytes_max + 1``; data that still does not fit is refused.
The total work is at most about 4/3 of the final size. cramjam reports an overflow and damaged
data with the same exception type, told apart by its wording; a failure not worded as an
overflow gets one last attempt at the cap before it is called damage, so damaged lz4 or zstd
input can cost one limit-sized buffer (as a bomb can), but a change of wording can never make
us refuse good data.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from enum import IntEnum

import cramjam

from protocol.errors import ProtocolError

__all__ = [
    "DECOMPRESSED_BYTES_MAX_DEFAULT",
    "Compression",
    "CompressionError",
    "compress",
    "decompress",
]


DECOMPRESSED_BYTES_MAX_DEFAULT = 64 * 1024 * 1024
"""The default bound on one batch's decompressed records: 64 MiB. Kafka's default
``message.max.bytes`` is 1 MiB of *compressed* batch, and real data rarely expands more than
tenfold, so this leaves ample room for legitimate batches while a bomb stops here. A broker
should pass a limit derived from its own configured maximum batch size."""

_GROW_FACTOR = 4
_FIRST_GUESS_BYTES_MIN = 64 * 1024
_FIRST_GUESS_RATIO = 8
_GZIP_STEP_BYTES = 256 * 1024
_OVERFLOW_WORDING = "failed to write whole buffer"
"""How cramjam's ``decompress_into`` says the output buffer is too small (a test pins it)."""

XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_HEADER = struct.Struct(">8sii")
XERIAL_VERSION = 1
XERIAL_COMPATIBLE_VERSION = 1
XERIAL_BLOCK_BYTES = 32 * 1024
_I32 = struct.Struct(">i")

# The LZ4 frame header Kafka's Java client writes: magic 0x184D2204 (little-endian), FLG 0x60
# (version 01, independent blocks, no block checksum, no content size, no content checksum),
# BD 0x40 (64 KiB maximum block size), HC 0x82 (the second byte of xxHash32 of FLG and BD).
LZ4_FRAME_HEADER = b"\x04\x22\x4d\x18\x60\x40\x82"
LZ4_BLOCK_BYTES = 64 * 1024
LZ4_UNCOMPRESSED_FLAG = 0x80000000
LZ4_END_MARK = b"\x00\x00\x00\x00"
_U32LE = struct.Struct("<I")


class Compression(IntEnum):
    """The codec ids of a record batch's attributes, bits 0-2."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class CompressionError(ProtocolError):
    """Compressed data that cannot be decoded (``too_large`` False) or that expands past its
    limit (``too_large`` True)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


Buffer = bytes | bytearray | memoryview


# --- compress ------------------------------------------------------------------------------------


def compress(codec: Compression, data: Buffer) -> bytes:
    """Compress ``data`` the way Kafka's Java client does for ``codec`` (see the module doc).

    ``Compression.NONE`` returns the data unchanged. Raises ``ValueError`` for a codec id that
    is not a ``Compression``.
    """
    codec = Compression(codec)
    if codec is Compression.NONE:
        return bytes(data)
    if codec is Compression.GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec is Compression.SNAPPY:
        return _snappy_xerial_compress(memoryview(data))
    if codec is Compression.LZ4:
        return _lz4_frame_compress(memoryview(data))
    return bytes(cramjam.zstd.compress(data))


def _snappy_xerial_compress(data: memoryview) -> bytes:
    out = bytearray(XERIAL_HEADER.pack(XERIAL_MAGIC, XERIAL_VERSION, XERIAL_COMPATIBLE_VERSION))
    for start in range(0, len(data), XERIAL_BLOCK_BYTES):
        block = cramjam.snappy.compress_raw(data[start : start + XERIAL_BLOCK_BYTES])
        out += _I32.pack(len(block))
        out += block
    return bytes(out)


def _lz4_frame_compress(data: memoryview) -> bytes:
    out = bytearray(LZ4_FRAME_HEADER)
    for start in range(0, len(data), LZ4_BLOCK_BYTES):
        chunk = data[start : start + LZ4_BLOCK_BYTES]
        block = cramjam.lz4.compress_block(chunk, store_size=False)
        if len(block) < len(chunk):
            out += _U32LE.pack(len(block))
            out += block
        else:
            out += _U32LE.pack(len(chunk) | LZ4_UNCOMPRESSED_FLAG)
            out += chunk
    out += LZ4_END_MARK
    return bytes(out)


# --- decompress ----------------------------------------------------------------------------------


def decompress(
    codec: Compression,
    data: Buffer,
    *,
    decompressed_bytes_max: int = DECOMPRESSED_BYTES_MAX_DEFAULT,
) -> bytes | bytearray:
    """Decompress ``data``, producing at most ``decompressed_bytes_max`` bytes.

    Returns a fresh buffer the caller owns. Raises ``CompressionError`` for data the codec
    cannot decode or that would expand past the limit; never a codec library's own exception.
    ``Compression.NONE`` returns a copy, checked against the limit like the rest.
    """
    if decompressed_bytes_max < 0:
        raise ValueError(f"negative decompressed_bytes_max {decompressed_bytes_max}")
    codec = Compression(codec)
    view = memoryview(data)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    if codec is Compression.NONE:
        if len(view) > decompressed_bytes_max:
            raise _too_large(decompressed_bytes_max)
        return bytes(view)
    if codec is Compression.GZIP:
        return _gzip_decompress(view, decompressed_bytes_max)
    if codec is Compression.SNAPPY:
        if view[: len(XERIAL_MAGIC)] == XERIAL_MAGIC:
            return _snappy_xerial_decompress(view, decompressed_bytes_max)
        return _snappy_raw_decompress(view, decompressed_bytes_max)
    if codec is Compression.LZ4:
        return _decompress_into_growing(cramjam.lz4.decompress_into, "lz4", view, decompressed_bytes_max)
    return _decompress_into_growing(cramjam.zstd.decompress_into, "zstd", view, decompressed_bytes_max)


def _too_large(limit: int) -> CompressionError:
    return CompressionError(f"compressed records expand past the {limit}-byte limit", too_large=True)


def _gzip_decompress(data: memoryview, limit: int) -> bytearray:
    out = bytearray()
    pending: Buffer = data
    while True:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            while True:
                room = limit + 1 - len(out)
                out += d.decompress(pending, min(_GZIP_STEP_BYTES, room))
                if len(out) > limit:
                    raise _too_large(limit)
                pending = d.unconsumed_tail
                if d.eof:
                    break
                if not pending:
                    # All input consumed; ask zlib for anything it still holds.
                    out += d.flush(room)
                    if len(out) > limit:
                        raise _too_large(limit)
                    if not d.eof:
                        raise CompressionError("gzip data is truncated")
                    break
        except zlib.error as exc:
            raise CompressionError(f"gzip data is corrupt: {exc}") from None
        pending = d.unused_data
        if not pending:
            return out
        # Another member follows (Java's GZIPInputStream reads concatenated members).


def _snappy_raw_len(block: Buffer) -> int:
    try:
        n: int = cramjam.snappy.decompress_raw_len(block)
    except Exception as exc:  # any codec failure is the input's fault
        raise CompressionError(f"snappy block is corrupt: {exc}") from None
    return n


def _snappy_raw_into(block: Buffer, out: memoryview) -> None:
    try:
        written = cramjam.snappy.decompress_raw_into(block, out)
    except Exception as exc:
        raise CompressionError(f"snappy block is corrupt: {exc}") from None
    if written != len(out):
        raise CompressionError(f"snappy block decoded to {written} bytes, not the {len(out)} it states")


def _snappy_raw_decompress(data: memoryview, limit: int) -> bytearray:
    n = _snappy_raw_len(data)
    if n > limit:
        raise _too_large(limit)
    out = bytearray(n)
    if n:
        _snappy_raw_into(data, memoryview(out))
    elif len(data) != 1:
        raise CompressionError("snappy block of length 0 has trailing bytes")
    return out


def _xerial_blocks(data: memoryview) -> list[memoryview]:
    """The raw snappy blocks of a xerial stream (possibly several concatenated streams)."""
    blocks = []
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos : pos + len(XERIAL_MAGIC)] == XERIAL_MAGIC:
            if end - pos < XERIAL_HEADER.size:
                raise CompressionError("xerial snappy header is truncated")
            pos += XERIAL_HEADER.size
            continue
        if end - pos < _I32.size:
            raise CompressionError("xerial snappy block length is truncated")
        (n,) = _I32.unpack_from(data, pos)
        pos += _I32.size
        if n < 0 or n > end - pos:
            raise CompressionError(f"xerial snappy block length {n} does not fit in {end - pos} bytes")
        blocks.append(data[pos : pos + n])
        pos += n
    return blocks


def _snappy_xerial_decompress(data: memoryview, limit: int) -> bytearray:
    # Each block costs at least 4 bytes of input, so the list is bounded by the input's size.
    blocks = _xerial_blocks(data)
    sizes = []
    total = 0
    for block in blocks:
        n = _snappy_raw_len(block)
        total += n
        if total > limit:
            raise _too_large(limit)
        sizes.append(n)
    out = bytearray(total)
    view = memoryview(out)
    pos = 0
    for block, n in zip(blocks, sizes, strict=True):
        if n:
            _snappy_raw_into(block, view[pos : pos + n])
        elif len(block) != 1:
            raise CompressionError("snappy block of length 0 has trailing bytes")
        pos += n
    return out


def _decompress_into_growing(
    decompress_into: Callable[[Buffer, Buffer], int],
    name: str,
    data: memoryview,
    limit: int,
) -> bytearray:
    cap = limit + 1
    size = min(cap, max(_FIRST_GUESS_BYTES_MIN, len(data) * _FIRST_GUESS_RATIO))
    while True:
        out = bytearray(size)
        try:
            written = decompress_into(data, out)
        except Exception as exc:  # any codec failure is the input's fault
            del out  # before the next, larger buffer exists, so only one is ever alive
            overflow = _OVERFLOW_WORDING in str(exc)
            if size >= cap:
                if overflow:
                    raise _too_large(limit) from None
                raise CompressionError(f"{name} data is corrupt: {exc}") from None
            # An overflow grows the buffer; any other failure gets one last try at the cap, so
            # a change in cramjam's wording costs time on damaged input, never a wrong answer.
            size = min(cap, size * _GROW_FACTOR) if overflow else cap
            continue
        if written > limit:
            raise _too_large(limit)
        del out[written:]
        return out
