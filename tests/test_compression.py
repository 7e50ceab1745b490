"""Tests of protocol.compression: Kafka's codecs, their interoperability and their limits.

Goal: what we compress, the reference libraries Kafka clients use (python-lz4, python-snappy
through kafka-python's xerial code, zstandard, gzip) read back; what they compress, we read;
the LZ4 and snappy framings are the ones Kafka's Java client writes; and no input — damaged,
truncated, or a bomb claiming or expanding to a gigabyte — makes ``decompress`` raise anything
but ``CompressionError`` or use memory beyond its limit.
"""

from __future__ import annotations

import contextlib
import gzip
import resource
import struct
import tracemalloc
import zlib
from collections.abc import Callable

import cramjam
import lz4.frame
import pytest
import snappy
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import codec as kafka_codec

from protocol.compression import (
    _OVERFLOW_WORDING,
    DECOMPRESSED_BYTES_MAX_DEFAULT,
    LZ4_FRAME_HEADER,
    XERIAL_MAGIC,
    Compression,
    CompressionError,
    compress,
    decompress,
)
from protocol.errors import ProtocolError

CODECS = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]
MiB = 1024 * 1024
GiB = 1024 * MiB

TEXT = b"".join(b"record %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(5000))


# --- round trips and interoperability ------------------------------------------------------------


@pytest.mark.parametrize("codec", list(Compression))
@pytest.mark.parametrize("data", [b"", b"x", TEXT, bytes(range(256)) * 1000, bytes(200_000)])
def test_round_trip(codec: Compression, data: bytes) -> None:
    packed = compress(codec, data)
    assert bytes(decompress(codec, packed)) == data
    assert bytes(decompress(codec, memoryview(packed))) == data
    assert bytes(decompress(codec, bytearray(packed))) == data


@settings(max_examples=150, deadline=None)
@given(codec=st.sampled_from(list(Compression)), data=st.binary(max_size=300_000))
def test_round_trip_hypothesis(codec: Compression, data: bytes) -> None:
    assert bytes(decompress(codec, compress(codec, data))) == data


def test_none_is_identity() -> None:
    assert compress(Compression.NONE, b"abc") == b"abc"
    assert bytes(decompress(Compression.NONE, b"abc")) == b"abc"


def test_unknown_codec_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        compress(5, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decompress(7, b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", TEXT, bytes(range(256)) * 700])
def test_reference_libraries_read_what_we_write(data: bytes) -> None:
    assert gzip.decompress(compress(Compression.GZIP, data)) == data
    assert kafka_codec.gzip_decode(compress(Compression.GZIP, data)) == data
    if data:  # kafka-python takes a header-only xerial stream (Java's empty output) for raw snappy
        assert kafka_codec.snappy_decode(compress(Compression.SNAPPY, data)) == data
    assert lz4.frame.decompress(compress(Compression.LZ4, data)) == data
    assert kafka_codec.lz4_decode(compress(Compression.LZ4, data)) == data
    assert (
        zstandard.ZstdDecompressor().decompress(
            compress(Compression.ZSTD, data), max_output_size=len(data) + 1
        )
        == data
    )
    assert kafka_codec.zstd_decode(compress(Compression.ZSTD, data)) == data


@pytest.mark.parametrize("data", [b"a", TEXT, bytes(range(256)) * 700])
def test_we_read_what_reference_libraries_write(data: bytes) -> None:
    def ours(codec: Compression, packed: bytes) -> bytes:
        return bytes(decompress(codec, packed))

    assert ours(Compression.GZIP, gzip.compress(data)) == data
    assert ours(Compression.GZIP, kafka_codec.gzip_encode(data)) == data
    # Java client: xerial framing; librdkafka: one raw block.
    assert ours(Compression.SNAPPY, kafka_codec.snappy_encode(data)) == data
    assert ours(Compression.SNAPPY, kafka_codec.snappy_encode(data, xerial_blocksize=1024)) == data
    assert ours(Compression.SNAPPY, snappy.compress(data)) == data
    # Frames of every shape a client might write, including linked blocks and checksums.
    for linked in (False, True):
        for checksum in (False, True):
            for size in (lz4.frame.BLOCKSIZE_MAX64KB, lz4.frame.BLOCKSIZE_MAX4MB):
                frame = lz4.frame.compress(
                    data, block_linked=linked, content_checksum=checksum, block_size=size, store_size=checksum
                )
                assert ours(Compression.LZ4, frame) == data
    assert ours(Compression.LZ4, kafka_codec.lz4_encode(data)) == data
    assert ours(Compression.ZSTD, zstandard.ZstdCompressor().compress(data)) == data
    assert ours(Compression.ZSTD, zstandard.ZstdCompressor(write_content_size=False).compress(data)) == data
    assert ours(Compression.ZSTD, kafka_codec.zstd_encode(data)) == data


def test_concatenated_gzip_members_are_read() -> None:
    assert bytes(decompress(Compression.GZIP, gzip.compress(b"one ") + gzip.compress(b"two"))) == b"one two"


def test_gzip_trailing_garbage_is_refused() -> None:
    with pytest.raises(CompressionError):
        decompress(Compression.GZIP, gzip.compress(b"one") + b"garbage!")


def test_concatenated_xerial_streams_are_read() -> None:
    packed = compress(Compression.SNAPPY, b"one ") + compress(Compression.SNAPPY, b"two")
    assert bytes(decompress(Compression.SNAPPY, packed)) == b"one two"


def test_lz4_frame_is_what_kafka_writes() -> None:
    packed = compress(Compression.LZ4, TEXT)
    assert packed.startswith(LZ4_FRAME_HEADER)
    info = lz4.frame.get_frame_info(packed)
    assert info["block_linked"] is False  # Kafka's Java reader refuses linked blocks
    assert info["block_checksum"] is False
    assert info["content_checksum"] is False
    assert info["block_size"] == 64 * 1024
    assert packed.endswith(b"\x00\x00\x00\x00")


def test_lz4_incompressible_blocks_are_stored_raw() -> None:
    noise = bytes((i * 2654435761 >> 13) & 0xFF for i in range(100_000))
    packed = compress(Compression.LZ4, noise)
    (first_block,) = struct.unpack_from("<I", packed, len(LZ4_FRAME_HEADER))
    if first_block & 0x80000000:
        assert packed[len(LZ4_FRAME_HEADER) + 4 : len(LZ4_FRAME_HEADER) + 4 + 65536] == noise[:65536]
    assert lz4.frame.decompress(packed) == noise


def test_snappy_framing_is_xerial_with_32k_blocks() -> None:
    packed = compress(Compression.SNAPPY, TEXT)
    assert packed[:16] == XERIAL_MAGIC + struct.pack(">ii", 1, 1)
    pos, blocks = 16, []
    while pos < len(packed):
        (n,) = struct.unpack_from(">i", packed, pos)
        blocks.append(snappy.uncompress(packed[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    assert pos == len(packed)
    assert [len(b) for b in blocks[:-1]] == [32 * 1024] * (len(blocks) - 1)
    assert b"".join(blocks) == TEXT


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [Compression.NONE, *CODECS])
def test_exactly_at_the_limit_passes_and_one_over_fails(codec: Compression) -> None:
    data = TEXT[:100_000]
    packed = compress(codec, data)
    assert bytes(decompress(codec, packed, decompressed_bytes_max=len(data))) == data
    with pytest.raises(CompressionError) as exc:
        decompress(codec, packed, decompressed_bytes_max=len(data) - 1)
    assert exc.value.too_large
    with pytest.raises(CompressionError):
        decompress(codec, packed, decompressed_bytes_max=0)


@pytest.mark.parametrize("codec", CODECS)
def test_large_legitimate_payload_beyond_the_first_guess(codec: Compression) -> None:
    # Zeros compress thousands-fold, so the output outgrows any guess from the input size.
    data = bytes(20 * MiB)
    assert decompress(codec, compress(codec, data)) == data


def test_empty_input_at_zero_limit() -> None:
    for codec in CODECS:
        assert bytes(decompress(codec, compress(codec, b""), decompressed_bytes_max=0)) == b""


@pytest.mark.parametrize("codec", [Compression.LZ4, Compression.ZSTD])
def test_cramjam_overflow_wording_is_what_we_rely_on(codec: Compression) -> None:
    # decompress() tells "buffer too small" from "corrupt" by this wording; if cramjam changes
    # it, decompress stays correct but damaged input gets one extra attempt at the full limit.
    fn = cramjam.lz4.decompress_into if codec is Compression.LZ4 else cramjam.zstd.decompress_into
    with pytest.raises(Exception, match=_OVERFLOW_WORDING):
        fn(compress(codec, TEXT), bytearray(100))


# --- bombs ----------------------------------------------------------------------------------------


def gzip_bomb(size: int) -> bytes:
    """A valid gzip member of ``size`` zero bytes, built from one repeated full-flush block."""
    chunk = bytes(MiB)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor has forgotten everything, so every later identical
    # chunk compresses to the same bytes.
    body = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush()
    crc = 0
    for _ in range(size // MiB):
        crc = zlib.crc32(chunk, crc)
    # The stream so far holds size // MiB + 1 chunks if we use head + body * (n-1); rebuild the
    # trailer for exactly n chunks: gzip's trailer is CRC32 and size mod 2**32, little-endian.
    n = size // MiB
    stream = head + body * (n - 1) + tail
    deflate_end = len(stream) - 8
    return stream[:deflate_end] + struct.pack("<II", crc, size & 0xFFFFFFFF)


def zstd_bomb(size: int) -> bytes:
    c = zstandard.ZstdCompressor().compressobj(size=size)
    chunk = bytes(MiB)
    return b"".join(c.compress(chunk) for _ in range(size // MiB)) + c.flush()


def lz4_bomb(size: int) -> bytes:
    """A Kafka-shaped LZ4 frame of ``size`` zeros: one 64 KiB block, compressed once, repeated."""
    block = bytes(cramjam.lz4.compress_block(bytes(65536), store_size=False))
    return LZ4_FRAME_HEADER + (struct.pack("<I", len(block)) + block) * (size // 65536) + b"\x00" * 4


def snappy_xerial_bomb(size: int) -> bytes:
    block = snappy.compress(bytes(32 * 1024))
    return (
        XERIAL_MAGIC
        + struct.pack(">ii", 1, 1)
        + (struct.pack(">i", len(block)) + block) * (size // (32 * 1024))
    )


def snappy_lying_block(claimed: int) -> bytes:
    """A raw snappy block whose varint header claims ``claimed`` bytes but holds almost none."""
    out = bytearray()
    n = claimed
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + b"\x00\x00"


def test_bomb_builders_are_honest() -> None:
    # The bombs are real streams: at a small size they decode, with reference decoders, to zeros.
    assert gzip.decompress(gzip_bomb(4 * MiB)) == bytes(4 * MiB)
    assert zstandard.ZstdDecompressor().decompress(zstd_bomb(4 * MiB)) == bytes(4 * MiB)
    assert lz4.frame.decompress(lz4_bomb(4 * MiB)) == bytes(4 * MiB)
    assert kafka_codec.snappy_decode(snappy_xerial_bomb(4 * MiB)) == bytes(4 * MiB)


BOMBS = [
    pytest.param(Compression.GZIP, lambda: gzip_bomb(GiB), id="gzip-1GiB"),
    pytest.param(Compression.ZSTD, lambda: zstd_bomb(GiB), id="zstd-1GiB"),
    pytest.param(Compression.LZ4, lambda: lz4_bomb(GiB), id="lz4-1GiB"),
    pytest.param(Compression.SNAPPY, lambda: snappy_xerial_bomb(256 * MiB), id="snappy-xerial-256MiB"),
    pytest.param(Compression.SNAPPY, lambda: snappy_lying_block(2**32 - 1), id="snappy-raw-claims-4GiB"),
    pytest.param(
        Compression.SNAPPY,
        lambda: (
            XERIAL_MAGIC + struct.pack(">ii", 1, 1) + (struct.pack(">i", 7) + snappy_lying_block(2**31)) * 3
        ),
        id="snappy-xerial-claims-6GiB",
    ),
]


@pytest.mark.parametrize(("codec", "make"), BOMBS)
def test_bombs_are_refused_within_bounded_memory(codec: Compression, make: Callable[[], bytes]) -> None:
    bomb = make()
    assert len(bomb) < 64 * MiB
    limit = 4 * MiB
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError) as exc:
            decompress(codec, bomb, decompressed_bytes_max=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.too_large
    assert isinstance(exc.value, ProtocolError)
    assert peak < 3 * limit, peak
    # Native allocations (inside the codec library) escape tracemalloc; the peak RSS catches
    # any attempt to materialise the bomb.
    rss_after_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert (rss_after_kib - rss_before_kib) * 1024 < 128 * MiB


@pytest.mark.parametrize("codec", CODECS)
def test_bomb_at_the_default_limit(codec: Compression) -> None:
    bomb = {
        Compression.GZIP: lambda: gzip_bomb(128 * MiB),
        Compression.ZSTD: lambda: zstd_bomb(128 * MiB),
        Compression.LZ4: lambda: lz4_bomb(128 * MiB),
        Compression.SNAPPY: lambda: snappy_lying_block(DECOMPRESSED_BYTES_MAX_DEFAULT + 1),
    }[codec]()
    with pytest.raises(CompressionError) as exc:
        decompress(codec, bomb)
    assert exc.value.too_large


# --- damaged input --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(codec=st.sampled_from(CODECS), data=st.binary(max_size=2000))
def test_random_bytes_raise_only_compression_error(codec: Compression, data: bytes) -> None:
    with contextlib.suppress(CompressionError):
        decompress(codec, data, decompressed_bytes_max=MiB)


@settings(max_examples=300, deadline=None)
@given(
    codec=st.sampled_from(CODECS),
    data=st.binary(min_size=1, max_size=5000),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_damaged_streams_raise_only_compression_error(
    codec: Compression, data: bytes, flips: list[tuple[int, int]]
) -> None:
    packed = bytearray(compress(codec, data * 3))
    for where, mask in flips:
        packed[where % len(packed)] ^= mask
    with contextlib.suppress(CompressionError):
        decompress(codec, packed, decompressed_bytes_max=MiB)


@pytest.mark.parametrize("codec", CODECS)
def test_truncation_at_every_byte(codec: Compression) -> None:
    data = TEXT[:3000]
    packed = compress(codec, data)
    for cut in range(len(packed)):
        try:
            out = bytes(decompress(codec, packed[:cut], decompressed_bytes_max=MiB))
        except CompressionError:
            continue
        # Only xerial snappy has no end marker: a cut on a block boundary is a shorter stream.
        assert codec is Compression.SNAPPY, cut
        assert data.startswith(out)


def test_snappy_block_decoding_short_of_its_stated_length() -> None:
    with pytest.raises(CompressionError):
        decompress(Compression.SNAPPY, snappy_lying_block(1000))


def test_xerial_bad_chunk_lengths() -> None:
    header = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
    for tail in (struct.pack(">i", -1), struct.pack(">i", 100) + b"ab", b"\x00\x00", XERIAL_MAGIC + b"\x00"):
        with pytest.raises(CompressionError):
            decompress(Compression.SNAPPY, header + tail)
