"""Kafka's primitive wire types, as functions over a buffer and a position.

Theory of operation: decoders take ``(buf, pos)`` where ``buf`` is a ``memoryview`` of the whole
frame, and return ``(value, new_pos)``. They check every length against what remains *before*
slicing, so a claimed length never sizes an allocation; bytes values come back as memoryviews
into the frame, never copied. Encoders append to a ``bytearray``. Fixed-width integers are read
and written by the generated code directly through the ``struct.Struct`` objects below, grouped
where consecutive fields allow; this module holds the variable-length pieces.

Contract: malformed input raises ``ProtocolError``, or ``struct.error``/``IndexError`` from a read
past the end, which ``Message.decode_from`` translates into ``ProtocolError`` at the top of a
decode: the fast paths index the buffer without checking first.
"""

from __future__ import annotations

import codecs
import struct
import uuid

from protocol.errors import EncodeError, ProtocolError

I8 = struct.Struct(">b")
I16 = struct.Struct(">h")
U16 = struct.Struct(">H")
I32 = struct.Struct(">i")
U32 = struct.Struct(">I")
I64 = struct.Struct(">q")
F64 = struct.Struct(">d")

ZERO_UUID = uuid.UUID(int=0)

UVARINT_BYTES_MAX = 5
VARLONG_BYTES_MAX = 10

# Unsigned varints below 128 are one byte: precomputed, since lengths and counts are mostly small.
_SMALL_UVARINT = [bytes((i,)) for i in range(128)]


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 32 bits (5 bytes)."""
    try:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
        value = b & 0x7F
        shift = 7
        for i in range(1, UVARINT_BYTES_MAX):
            b = buf[pos + i]
            value |= (b & 0x7F) << shift
            if b < 0x80:
                if value > 0xFFFFFFFF:
                    raise ProtocolError("unsigned varint overflows 32 bits")
                return value, pos + i + 1
            shift += 7
    except IndexError:
        raise ProtocolError("truncated varint") from None
    raise ProtocolError("varint longer than 5 bytes")


def read_uvarlong(buf: memoryview, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 64 bits (10 bytes)."""
    value = 0
    shift = 0
    try:
        for i in range(VARLONG_BYTES_MAX):
            b = buf[pos + i]
            value |= (b & 0x7F) << shift
            if b < 0x80:
                if value > 0xFFFFFFFFFFFFFFFF:
                    raise ProtocolError("varlong overflows 64 bits")
                return value, pos + i + 1
            shift += 7
    except IndexError:
        raise ProtocolError("truncated varlong") from None
    raise ProtocolError("varlong longer than 10 bytes")


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """A zig-zag encoded signed 32-bit varint."""
    v, pos = read_uvarint(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def read_varlong(buf: memoryview, pos: int) -> tuple[int, int]:
    """A zig-zag encoded signed 64-bit varint."""
    v, pos = read_uvarlong(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def uvarint_bytes(value: int) -> bytes:
    if value < 0x80:
        return _SMALL_UVARINT[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_bytes(value: int) -> bytes:
    """Zig-zag encode a signed 32-bit value."""
    return uvarint_bytes(((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def varlong_bytes(value: int) -> bytes:
    """Zig-zag encode a signed 64-bit value."""
    return uvarint_bytes(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


def _take(buf: memoryview, pos: int, n: int) -> tuple[memoryview, int]:
    end = pos + n
    if end > len(buf):
        raise ProtocolError(f"length {n} exceeds the {len(buf) - pos} bytes that remain")
    return buf[pos:end], end


def _too_long(buf: memoryview, pos: int, n: int) -> ProtocolError:
    return ProtocolError(f"length {n} exceeds the {len(buf) - pos} bytes that remain")


# Kafka decodes strings leniently (malformed sequences become U+FFFD); so do we.
_utf8 = codecs.utf_8_decode

# The compact readers below inline the one-byte varint case: lengths under 127 are the rule.

# --- strings -------------------------------------------------------------------------------------


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = I16.unpack_from(buf, pos)
    if n < 0:
        raise ProtocolError(f"non-nullable string has length {n}")
    pos += 2
    end = pos + n
    if end > len(buf):
        raise _too_long(buf, pos, n)
    return _utf8(buf[pos:end], "replace", True)[0], end


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    (n,) = I16.unpack_from(buf, pos)
    if n == -1:
        return None, pos + 2
    if n < 0:
        raise ProtocolError(f"string has negative length {n}")
    pos += 2
    end = pos + n
    if end > len(buf):
        raise _too_long(buf, pos, n)
    return _utf8(buf[pos:end], "replace", True)[0], end


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise ProtocolError("non-nullable compact string is null")
    end = pos + n - 1
    if end > len(buf):
        raise _too_long(buf, pos, n - 1)
    return _utf8(buf[pos:end], "replace", True)[0], end


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = pos + n - 1
    if end > len(buf):
        raise _too_long(buf, pos, n - 1)
    return _utf8(buf[pos:end], "replace", True)[0], end


def write_string(out: bytearray, value: str) -> None:
    raw = value.encode()
    if len(raw) > 0x7FFF:
        raise EncodeError(f"string of {len(raw)} bytes is too long for an int16 length")
    out += I16.pack(len(raw))
    out += raw


def write_nullable_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += b"\xff\xff"
    else:
        write_string(out, value)


def write_compact_string(out: bytearray, value: str) -> None:
    raw = value.encode()
    n = len(raw) + 1
    out += _SMALL_UVARINT[n] if n < 0x80 else uvarint_bytes(n)
    out += raw


def write_compact_nullable_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += b"\x00"
    else:
        write_compact_string(out, value)


# --- bytes (zero-copy on read) -------------------------------------------------------------------


def read_bytes(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    (n,) = I32.unpack_from(buf, pos)
    if n < 0:
        raise ProtocolError(f"non-nullable bytes have length {n}")
    return _take(buf, pos + 4, n)


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    (n,) = I32.unpack_from(buf, pos)
    if n == -1:
        return None, pos + 4
    if n < 0:
        raise ProtocolError(f"bytes have negative length {n}")
    return _take(buf, pos + 4, n)


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[memoryview, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n == 0:
        raise ProtocolError("non-nullable compact bytes are null")
    end = pos + n - 1
    if end > len(buf):
        raise _too_long(buf, pos, n - 1)
    return buf[pos:end], end


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[memoryview | None, int]:
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = pos + n - 1
    if end > len(buf):
        raise _too_long(buf, pos, n - 1)
    return buf[pos:end], end


def write_bytes(out: bytearray, value: bytes | bytearray | memoryview) -> None:
    out += I32.pack(len(value))
    out += value


def write_nullable_bytes(out: bytearray, value: bytes | bytearray | memoryview | None) -> None:
    if value is None:
        out += b"\xff\xff\xff\xff"
    else:
        write_bytes(out, value)


def write_compact_bytes(out: bytearray, value: bytes | bytearray | memoryview) -> None:
    out += uvarint_bytes(len(value) + 1)
    out += value


def write_compact_nullable_bytes(out: bytearray, value: bytes | bytearray | memoryview | None) -> None:
    if value is None:
        out += b"\x00"
    else:
        write_compact_bytes(out, value)


# --- arrays --------------------------------------------------------------------------------------
# Every element takes at least item_bytes_min (>= 1) bytes, so a count that could not fit in what
# remains is malformed. This bounds every loop and list by the frame's real size.


def read_array_len(buf: memoryview, pos: int, item_bytes_min: int) -> tuple[int, int]:
    """A non-nullable int32 array count, checked against the bytes that remain."""
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        raise ProtocolError(f"non-nullable array has count {n}")
    if n * item_bytes_min > len(buf) - pos:
        raise _count_error(buf, pos, n)
    return n, pos


def read_nullable_array_len(buf: memoryview, pos: int, item_bytes_min: int) -> tuple[int, int]:
    """An int32 array count where -1 is null (returned as -1)."""
    (n,) = I32.unpack_from(buf, pos)
    pos += 4
    if n < -1:
        raise ProtocolError(f"array has negative count {n}")
    if n * item_bytes_min > len(buf) - pos:
        raise _count_error(buf, pos, n)
    return n, pos


def read_compact_array_len(buf: memoryview, pos: int, item_bytes_min: int) -> tuple[int, int]:
    """A compact (uvarint, count + 1) array count; null (0) is returned as -1."""
    n = buf[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_uvarint(buf, pos)
    n -= 1
    if n * item_bytes_min > len(buf) - pos:
        raise _count_error(buf, pos, n)
    return n, pos


def _count_error(buf: memoryview, pos: int, count: int) -> ProtocolError:
    return ProtocolError(f"array count {count} cannot fit in the {len(buf) - pos} bytes that remain")


def write_array_len(out: bytearray, n: int) -> None:
    out += I32.pack(n)


def write_compact_array_len(out: bytearray, n: int) -> None:
    """``n`` is the element count, or -1 for null."""
    out += uvarint_bytes(n + 1)


# --- uuid ----------------------------------------------------------------------------------------


def read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    raw, end = _take(buf, pos, 16)
    return uuid.UUID(bytes=bytes(raw)), end


def write_uuid(out: bytearray, value: uuid.UUID) -> None:
    out += value.bytes


# --- tagged fields -------------------------------------------------------------------------------


def read_unknown_tag(buf: memoryview, pos: int, tag: int) -> tuple[tuple[int, bytes], int]:
    """The size-prefixed body of a tagged field we do not know, kept to be written back."""
    size, pos = read_uvarint(buf, pos)
    raw, pos = _take(buf, pos, size)
    return (tag, bytes(raw)), pos


def write_tagged_raw(out: bytearray, tag: int, body: bytes | bytearray | memoryview) -> None:
    out += uvarint_bytes(tag)
    out += uvarint_bytes(len(body))
    out += body


def skip_tagged_fields(buf: memoryview, pos: int) -> int:
    """Skip a whole tagged-field section (used by headers that keep no tags)."""
    count, pos = read_uvarint(buf, pos)
    if count > len(buf) - pos:
        raise ProtocolError(f"tagged field count {count} cannot fit")
    for _ in range(count):
        _, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        _, pos = _take(buf, pos, size)
    return pos


def read_tag_header(buf: memoryview, pos: int) -> tuple[int, int, int]:
    """A tagged field's tag and size: returns (tag, body position, body end)."""
    tag, pos = read_uvarint(buf, pos)
    size, pos = read_uvarint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise ProtocolError(f"tagged field {tag} of {size} bytes exceeds the {len(buf) - pos} that remain")
    return tag, pos, end


def read_tagged_fields(buf: memoryview, pos: int) -> tuple[list[tuple[int, bytes]] | None, int]:
    """A tagged-field section where no tag is known: every field is kept raw, in order."""
    try:
        if buf[pos] == 0:
            return None, pos + 1
    except IndexError:
        raise ProtocolError("truncated tagged fields") from None
    count, pos = read_uvarint(buf, pos)
    if count * 2 > len(buf) - pos:
        raise ProtocolError(f"tagged field count {count} cannot fit")
    fields = []
    for _ in range(count):
        tag, pos, end = read_tag_header(buf, pos)
        fields.append((tag, bytes(buf[pos:end])))
        pos = end
    return fields, pos


def write_tagged_fields(out: bytearray, fields: list[tuple[int, bytes | bytearray]] | list[tuple[int, bytes]] | None) -> None:
    """A tagged-field section, in ascending tag order as the protocol requires."""
    if not fields:
        out += b"\x00"
        return
    out += uvarint_bytes(len(fields))
    for tag, body in sorted(fields, key=lambda t: t[0]):
        write_tagged_raw(out, tag, body)
