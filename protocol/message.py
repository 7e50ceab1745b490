"""The base of every generated message class, and the zero-copy records plumbing.

Generated classes (``protocol.messages.*``) subclass ``Message`` and provide ``_decode`` and
``_encode``; this module gives them the public entry points, which check the version, turn short
reads into ``ProtocolError`` and turn impossible encodings into ``EncodeError``.

Records are the one field type whose bytes can be large: decoding returns them as memoryviews
into the frame, and encoding can *splice* them instead of copying. When the output buffer is a
``ChunkedOut``, a records value that is large, or that is a ``RecordsSource`` (for example slices
of segment files the broker will send itself), is recorded as a separate chunk at the current
position rather than copied; ``ChunkedOut.chunks()`` then yields the frame as a list of pieces for
one vectored write.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, Protocol, Self, TypeAlias, runtime_checkable

from protocol.errors import EncodeError, ProtocolError
from protocol.primitives import I32, uvarint_bytes

# Records at least this large are spliced into a ChunkedOut rather than copied into it.
SPLICE_BYTES_MIN = 4096


@runtime_checkable
class RecordsSource(Protocol):
    """Record bytes held elsewhere (e.g. file slices); only their size is known to the codec."""

    @property
    def nbytes(self) -> int: ...


RecordsValue: TypeAlias = bytes | bytearray | memoryview | RecordsSource


class ChunkedOut(bytearray):
    """A bytearray that can also carry spliced chunks at positions within it."""

    def __init__(self) -> None:
        super().__init__()
        self.spliced: list[tuple[int, memoryview | RecordsSource]] = []

    def splice(self, value: memoryview | RecordsSource) -> None:
        self.spliced.append((len(self), value))

    def chunks(self) -> list[memoryview | RecordsSource]:
        """The output in order: pieces of this buffer interleaved with the spliced values."""
        whole = memoryview(self)
        out: list[memoryview | RecordsSource] = []
        start = 0
        for at, value in self.spliced:
            if at > start:
                out.append(whole[start:at])
            out.append(value)
            start = at
        if start < len(self) or not out:
            out.append(whole[start:])
        return out

    def spliced_bytes(self) -> int:
        return sum(_records_len(v) for _, v in self.spliced)


def _records_len(value: RecordsValue) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return memoryview(value).nbytes
    return value.nbytes


def _put_records(out: bytearray, value: RecordsValue) -> None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        if isinstance(out, ChunkedOut) and len(value) >= SPLICE_BYTES_MIN:
            out.splice(memoryview(value))
        else:
            out += value
    elif isinstance(out, ChunkedOut):
        out.splice(value)
    else:
        raise EncodeError("records held outside memory need a ChunkedOut to be written")


def write_records(out: bytearray, value: RecordsValue | None) -> None:
    """Records with an int32 length (-1 for null)."""
    if value is None:
        out += b"\xff\xff\xff\xff"
        return
    out += I32.pack(_records_len(value))
    _put_records(out, value)


def write_compact_records(out: bytearray, value: RecordsValue | None) -> None:
    """Records with an unsigned varint length + 1 (0 for null)."""
    if value is None:
        out += b"\x00"
        return
    out += uvarint_bytes(_records_len(value) + 1)
    _put_records(out, value)


def null_error(message: str, field: str, version: int) -> EncodeError:
    return EncodeError(f"{message} version {version} cannot carry a null {field}")


def version_error(message: str, fields: str, version: int) -> EncodeError:
    return EncodeError(f"{message} version {version} cannot carry a non-default {fields}")


class Message:
    """A request, response, header or data message, generated from one Kafka schema."""

    __slots__ = ()

    NAME: ClassVar[str]
    KIND: ClassVar[str]
    API_KEY: ClassVar[int]
    VALID_VERSIONS: ClassVar[tuple[int, int]]
    FLEXIBLE_VERSION_MIN: ClassVar[int]

    @staticmethod
    def _decode(buf: memoryview, pos: int, version: int) -> tuple[Any, int]:
        raise NotImplementedError

    def _encode(self, out: bytearray, version: int) -> None:
        raise NotImplementedError

    @classmethod
    def is_flexible(cls, version: int) -> bool:
        return version >= cls.FLEXIBLE_VERSION_MIN

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, version: int) -> Self:
        """Decode a whole body; trailing bytes are ignored, as Kafka ignores them."""
        obj, _ = cls.decode_from(memoryview(data), 0, version)
        return obj

    @classmethod
    def decode_from(cls, buf: memoryview, pos: int, version: int) -> tuple[Self, int]:
        lo, hi = cls.VALID_VERSIONS
        if not lo <= version <= hi:
            raise ProtocolError(f"{cls.NAME} has no version {version} (valid: {lo}-{hi})")
        try:
            return cls._decode(buf, pos, version)
        except (struct.error, IndexError) as e:
            raise ProtocolError(f"truncated {cls.NAME} v{version}: {e}") from None
        except RecursionError:
            raise ProtocolError(f"{cls.NAME} v{version} nests too deeply") from None

    def encode_into(self, out: bytearray, version: int) -> None:
        lo, hi = self.VALID_VERSIONS
        if not lo <= version <= hi:
            raise EncodeError(f"{self.NAME} has no version {version} (valid: {lo}-{hi})")
        try:
            self._encode(out, version)
        except (struct.error, AttributeError, TypeError, OverflowError) as e:
            raise EncodeError(f"{self.NAME} v{version} cannot be encoded: {e}") from e

    def encode(self, version: int) -> bytes:
        out = bytearray()
        self.encode_into(out, version)
        return bytes(out)
