"""Goal: no byte string can make the decoders raise anything but ProtocolError, or make them
allocate what the bytes merely claim.

Theory of operation: seed frames are real encodings of every request and response at every valid
version, both default-constructed and filled with small random values drawn from the schemas.
Each iteration takes a seed and mutates it (bit flips, byte replacements, truncations, inserted
or overwritten hostile lengths and counts such as 0x7fffffff, -2 or an unterminated varint,
garbage bodies behind valid headers, unknown API keys and versions, trailing bytes, splices of two
seeds), then pushes it through ``FrameDecoder``, ``peek_request``, ``decode_request``,
``decode_response`` and ``Message.decode``. Whatever escapes other than ``ProtocolError`` fails
the test with the seed, the campaign, the iteration and the input in hex.

Every iteration draws from its own ``random.Random`` derived from (seed, campaign, iteration), so
a failure reproduces on its own. ``TRAFKA_FUZZ_SEED`` picks another seed, ``TRAFKA_FUZZ_SCALE``
multiplies the iteration counts (the default run pushes more than 100,000 inputs).

Trailing bytes after a complete body are tolerated by design (Kafka ignores them too), so a
mutated input that still decodes is fine; only the kind of exception and the memory matter.
"""

from __future__ import annotations

import contextlib
import os
import random
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from protocol.errors import ProtocolError
from protocol.framing import FRAME_BYTES_MAX_DEFAULT, FrameDecoder
from protocol.headers import (
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
    peek_request,
    request_header_version,
)
from protocol.message import Message
from protocol.messages import OTHERS, REQUESTS, RESPONSES
from protocol.messages.request_header import RequestHeader
from protocol.primitives import I16, I32, uvarint_bytes
from tests.message_values import INT_RANGES, spec_for
from tools.codegen.emit import attr_name
from tools.codegen.schema import FieldSpec, MessageSpec

SEED = int(os.environ.get("TRAFKA_FUZZ_SEED", "20240917"), 0)
SCALE = float(os.environ.get("TRAFKA_FUZZ_SCALE", "1"))

# Mutated inputs per campaign in the default run; their sum is the "at least 100,000"
# (a stream input holds several frames, so more frames than inputs are decoded).
CAMPAIGN_INPUTS = {"request": 44_000, "response": 30_000, "body": 16_000, "stream": 12_000}
INPUTS_MIN = 100_000

# What a batch of hostile inputs may allocate beyond the inputs themselves.
HOSTILE_PEAK_BYTES_MAX = 4 * 1024 * 1024

HOSTILE_I16 = (0x7FFF, -1, -2, -0x8000, 0x4000)
HOSTILE_I32 = (0x7FFFFFFF, -1, -2, -0x80000000, 0x40000000, 0x10000, 0x7FFFFFFE)
HOSTILE_UVARINTS = (
    uvarint_bytes(0xFFFFFFFF),  # largest 32-bit value: count/length 2**32 - 2
    uvarint_bytes(0x80000000),
    uvarint_bytes(0x7FFFFFFF),
    uvarint_bytes(0x10000000),
    uvarint_bytes(0x10001),
    b"\x80\x80\x80\x80\x10",  # five bytes that overflow 32 bits
    b"\xff\xff\xff\xff\xff",  # never terminates within five bytes
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # eleven bytes: over-long even as a varlong
    b"\x00",  # null / empty
)
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


# --- seeds: real frames drawn from the schemas ---------------------------------------------------


class RandomValues:
    """Small random message values for a (class, version), built from the schema with one Random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def message(self, cls: type[Message], version: int) -> Message:
        spec = spec_for(cls.NAME)
        return self._struct(spec, cls, cls, spec.fields, version, depth=0)

    def _struct(self, spec: MessageSpec, top: type, cls: type, fields: list[FieldSpec], version: int,
                depth: int) -> Any:
        kwargs: dict[str, Any] = {}
        for f in fields:
            if version in f.versions:
                kwargs[attr_name(f.name)] = self._field(spec, top, f, version, depth)
        if version in spec.flexible_versions and self.rng.random() < 0.2:
            known = {f.tag for f in fields if f.tag is not None}
            tags = sorted({self.rng.randint(90, 130) for _ in range(self.rng.randint(1, 2))} - known)
            unknown = [(t, self.rng.randbytes(self.rng.randint(0, 6))) for t in tags]
            kwargs["unknown_tagged_fields"] = unknown or None
        return cls(**kwargs)

    def _field(self, spec: MessageSpec, top: type, f: FieldSpec, version: int, depth: int) -> Any:
        rng = self.rng
        t = f.type
        nullable = version in f.nullable_versions or (t.name == "records" and not t.is_array)
        if nullable and rng.random() < 0.15:
            return None
        if t.is_struct:
            nested = getattr(top, t.name)
            struct_fields = spec.structs[t.name].fields
            if t.is_array:
                count = rng.randint(0, 2) if depth < 3 else 0
                return [self._struct(spec, top, nested, struct_fields, version, depth + 1)
                        for _ in range(count)]
            if depth >= 3:
                return nested()
            return self._struct(spec, top, nested, struct_fields, version, depth + 1)
        if t.is_array:
            return [self._primitive(t.name) for _ in range(rng.randint(0, 3))]
        return self._primitive(t.name)

    def _primitive(self, name: str) -> Any:
        rng = self.rng
        if name in INT_RANGES:
            lo, hi = INT_RANGES[name]
            roll = rng.random()
            if roll < 0.3:
                return rng.choice((lo, hi, max(lo, -1), 0))
            if roll < 0.7:
                return rng.randint(max(lo, -3), min(hi, 300))
            return rng.randint(lo, hi)
        if name == "bool":
            return rng.random() < 0.5
        if name == "float64":
            return rng.choice((0.0, -1.5, 1e300, rng.random()))
        if name == "string":
            return "".join(rng.choice("abcxyz-_.0é€\U0001d11e") for _ in range(rng.randint(0, 10)))
        if name in ("bytes", "records"):
            return rng.randbytes(rng.randint(0, 24))
        if name == "uuid":
            return uuid.UUID(int=rng.getrandbits(128))
        raise AssertionError(name)


@dataclass(frozen=True, slots=True)
class Seed:
    cls: type[Message]
    version: int
    frame: bytes  # without the size prefix
    body_pos: int  # where the body starts in ``frame``


def _response_frame(body: Message, version: int, correlation_id: int) -> bytes:
    out = encode_response(body, version, correlation_id)
    assert not out.spliced, "seed records are small and must be copied, not spliced"
    return bytes(out)


def _request_frame(rng: random.Random, body: Message, version: int) -> bytes:
    header_version = request_header_version(body.API_KEY, version)
    if header_version == 2 and rng.random() < 0.3:
        # encode_request never writes header tags; a peer may, so some seeds carry them.
        tags = [(rng.randint(0, 5), b"\x01\x02")]
        header = RequestHeader(body.API_KEY, version, rng.randint(0, 1000), "fuzz", tags)
        out = bytearray()
        header.encode_into(out, header_version)
        body.encode_into(out, version)
        return I32.pack(len(out)) + bytes(out)
    client_id = rng.choice((None, "", "rdkafka", "é" * 3))
    return encode_request(body, version, rng.randint(-5, 2**31 - 1), client_id)


def build_seeds(seed: int) -> tuple[list[Seed], list[Seed], list[Seed]]:
    """Request seeds, response seeds and data/header message seeds, for every version."""
    rng = random.Random(seed)
    values = RandomValues(rng)
    requests: list[Seed] = []
    responses: list[Seed] = []
    others: list[Seed] = []
    for api_key in sorted(REQUESTS):
        for table, out in ((REQUESTS, requests), (RESPONSES, responses)):
            cls = table[api_key]
            lo, hi = cls.VALID_VERSIONS
            for version in range(lo, hi + 1):
                for body in (cls(), values.message(cls, version), values.message(cls, version)):
                    if table is REQUESTS:
                        frame = _request_frame(rng, body, version)[4:]
                        _, body_pos = decode_request_header(memoryview(frame))
                    else:
                        frame = _response_frame(body, version, rng.randint(0, 2**31 - 1))[4:]
                        body_pos = len(frame) - len(body.encode(version))
                    out.append(Seed(cls, version, frame, body_pos))
    for cls in OTHERS.values():
        lo, hi = cls.VALID_VERSIONS
        for version in range(lo, hi + 1):
            for body in (cls(), values.message(cls, version), values.message(cls, version)):
                others.append(Seed(cls, version, body.encode(version), 0))
    return requests, responses, others


_SEEDS: tuple[list[Seed], list[Seed], list[Seed]] | None = None


def seeds() -> tuple[list[Seed], list[Seed], list[Seed]]:
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = build_seeds(SEED)
    return _SEEDS


# --- mutations -----------------------------------------------------------------------------------


def _pos(rng: random.Random, data: bytearray, seed: Seed, *, end_ok: bool = False) -> int:
    """A position, usually in the body, where most of the interesting lengths live."""
    limit = len(data) + (1 if end_ok else 0)
    if limit <= 0:
        return 0
    if seed.body_pos < limit and rng.random() < 0.8:
        return rng.randrange(seed.body_pos, limit)
    return rng.randrange(limit)


def _flip_bits(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        if data:
            data[_pos(rng, data, seed)] ^= 1 << rng.randrange(8)
    return data


def _replace_bytes(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        if data:
            value = rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.randrange(256)
            data[_pos(rng, data, seed)] = value
    return data


def _truncate(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    return data[: rng.randrange(len(data) + 1)]


def _overwrite_int(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    raw = I16.pack(rng.choice(HOSTILE_I16)) if rng.random() < 0.5 else I32.pack(rng.choice(HOSTILE_I32))
    at = _pos(rng, data, seed, end_ok=True)
    data[at : at + len(raw)] = raw
    return data


def _insert_int(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    raw = I32.pack(rng.choice(HOSTILE_I32)) if rng.random() < 0.6 else I16.pack(rng.choice(HOSTILE_I16))
    at = _pos(rng, data, seed, end_ok=True)
    data[at:at] = raw
    return data


def _uvarint(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    raw = rng.choice(HOSTILE_UVARINTS)
    at = _pos(rng, data, seed, end_ok=True)
    replaced = rng.choice((0, 1, 1, len(raw)))  # insert, replace one byte, or overwrite in place
    data[at : at + replaced] = raw
    return data


def _insert_random(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    at = _pos(rng, data, seed, end_ok=True)
    data[at:at] = rng.randbytes(rng.randint(1, 16))
    return data


def _delete_range(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    at = _pos(rng, data, seed, end_ok=True)
    del data[at : at + rng.randint(1, 8)]
    return data


def _duplicate_range(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    at = _pos(rng, data, seed, end_ok=True)
    piece = data[at : at + rng.randint(1, 24)]
    data[at:at] = piece * rng.randint(1, 3)
    return data


def _append(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    data += rng.randbytes(rng.randint(1, 32))
    return data


def _garbage_body(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    body_len = rng.choice((0, 1, 2, 3, 4, 7, 16, 64, 200))
    garbage = bytes(rng.choice(INTERESTING_BYTES) for _ in range(body_len)) if rng.random() < 0.3 \
        else rng.randbytes(body_len)
    return bytearray(seed.frame[: seed.body_pos]) + garbage


def _splice(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    other = rng.choice(pool).frame
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def _header_prefix(rng: random.Random, data: bytearray, seed: Seed, pool: list[Seed]) -> bytearray:
    """Another API key and/or version: unknown, negative, out of range, or another API's."""
    if len(data) < 4:
        return data
    if rng.random() < 0.5:
        key = rng.choice((-1, -32768, 32767, 88, 200, rng.randrange(88), rng.randint(-32768, 32767)))
        data[0:2] = I16.pack(key)
    if rng.random() < 0.7:
        version = rng.choice((-1, -32768, 32767, seed.version + 1, seed.cls.VALID_VERSIONS[1] + 1,
                              rng.randrange(20)))
        data[2:4] = I16.pack(version)
    return data


Mutator = Callable[[random.Random, bytearray, Seed, list[Seed]], bytearray]

BODY_MUTATORS: tuple[Mutator, ...] = (
    _flip_bits, _replace_bytes, _truncate, _overwrite_int, _overwrite_int, _insert_int, _uvarint,
    _uvarint, _insert_random, _delete_range, _duplicate_range, _append, _garbage_body, _splice,
)
REQUEST_MUTATORS: tuple[Mutator, ...] = (*BODY_MUTATORS, _header_prefix, _header_prefix)


def mutate(rng: random.Random, seed: Seed, pool: list[Seed], mutators: tuple[Mutator, ...]) -> bytes:
    data = bytearray(seed.frame)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        data = rng.choice(mutators)(rng, data, seed, pool)
    return bytes(data)


# --- pushing inputs through the decoders ---------------------------------------------------------


def iteration_rng(campaign: str, i: int) -> random.Random:
    return random.Random(f"{SEED}/{campaign}/{i}")


def fail_escape(e: BaseException, campaign: str, i: int, what: str, data: bytes) -> NoReturn:
    pytest.fail(
        f"{type(e).__name__}: {e} escaped {what} "
        f"(TRAFKA_FUZZ_SEED={SEED:#x}, campaign {campaign!r}, iteration {i}); input: {data.hex()}",
        pytrace=True,
    )


def frames_from(rng: random.Random, wire: bytes, frame_bytes_max: int) -> tuple[list[memoryview], bool]:
    """Feed ``wire`` to a FrameDecoder in random pieces: the frames out, and whether it gave up."""
    decoder = FrameDecoder(frame_bytes_max)
    frames: list[memoryview] = []
    at = 0
    while at < len(wire):
        step = rng.choice((1, 2, 3, 4, 5, 8, 64, len(wire)))
        decoder.receive_data(wire[at : at + step])
        at += step
        try:
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
        except ProtocolError:
            return frames, True
    return frames, False


def run_request(i: int) -> int:
    requests, _, _ = seeds()
    rng = iteration_rng("request", i)
    seed = rng.choice(requests)
    data = mutate(rng, seed, requests, REQUEST_MUTATORS)
    frame_bytes_max = rng.choice((FRAME_BYTES_MAX_DEFAULT, FRAME_BYTES_MAX_DEFAULT, 2**31 - 1, len(data),
                                  max(len(data) - 1, 0), 16))
    wire = I32.pack(len(data)) + data
    try:
        frames, refused = frames_from(rng, wire, frame_bytes_max)
    except Exception as e:
        fail_escape(e, "request", i, "FrameDecoder", wire)
    # The prefix is honest here, so the decoder's answer is known exactly.
    if len(data) > frame_bytes_max:
        assert refused and not frames, f"frame of {len(data)} bytes over a limit of {frame_bytes_max}"
        return 1
    assert not refused and [bytes(f) for f in frames] == [data], f"FrameDecoder lost the frame: {data.hex()}"
    frame = frames[0]
    try:
        prefix = peek_request(frame)
    except ProtocolError:
        assert len(data) < 8
        return 1
    except Exception as e:
        fail_escape(e, "request", i, "peek_request", data)
    assert (prefix.api_key, prefix.api_version, prefix.correlation_id) == tuple(
        int.from_bytes(data[a:b], "big", signed=True) for a, b in ((0, 2), (2, 4), (4, 8)))
    try:
        header, _ = decode_request(frame)
    except ProtocolError:
        return 1
    except Exception as e:
        fail_escape(e, "request", i, "decode_request", data)
    assert header.request_api_key == prefix.api_key and header.correlation_id == prefix.correlation_id
    return 1


def run_response(i: int) -> int:
    _, responses, _ = seeds()
    rng = iteration_rng("response", i)
    seed = rng.choice(responses)
    data = mutate(rng, seed, responses, BODY_MUTATORS)
    version = seed.version
    if rng.random() < 0.05:
        version = rng.choice((-1, seed.cls.VALID_VERSIONS[1] + 1, 0x7FFF))
    try:
        decode_response(memoryview(data), seed.cls.API_KEY, version)
    except ProtocolError:
        pass
    except Exception as e:
        fail_escape(e, "response", i, f"decode_response({seed.cls.NAME}, v{version})", data)
    return 1


def run_body(i: int) -> int:
    requests, responses, others = seeds()
    rng = iteration_rng("body", i)
    pool = rng.choice((requests, responses, others))
    seed = rng.choice(pool)
    body_seed = Seed(seed.cls, seed.version, seed.frame[seed.body_pos :], 0)
    data = mutate(rng, body_seed, pool, BODY_MUTATORS)
    try:
        seed.cls.decode(data, seed.version)
    except ProtocolError:
        pass
    except Exception as e:
        fail_escape(e, "body", i, f"{seed.cls.NAME}.decode(v{seed.version})", data)
    return 1


def run_stream(i: int) -> int:
    """Several prefixed frames in one stream, mutated as a whole (prefixes included)."""
    requests, _, _ = seeds()
    rng = iteration_rng("stream", i)
    parts = [rng.choice(requests) for _ in range(rng.randint(2, 5))]
    wire = bytearray(b"".join(I32.pack(len(p.frame)) + p.frame for p in parts))
    whole = Seed(parts[0].cls, parts[0].version, bytes(wire), 0)
    wire = bytearray(mutate(rng, whole, requests, BODY_MUTATORS))
    if rng.random() < 0.2:  # a hostile size prefix somewhere in the stream
        at = rng.randrange(len(wire) + 1)
        wire[at:at] = I32.pack(rng.choice(HOSTILE_I32))
    data = bytes(wire)
    try:
        frames, _ = frames_from(rng, data, rng.choice((FRAME_BYTES_MAX_DEFAULT, 2**31 - 1, 4096, 64)))
    except Exception as e:
        fail_escape(e, "stream", i, "FrameDecoder", data)
    for frame in frames:
        try:
            peek_request(frame)
            decode_request(frame)
        except ProtocolError:
            pass
        except Exception as e:
            fail_escape(e, "stream", i, "decode_request", bytes(frame))
    return len(frames)


CAMPAIGNS: dict[str, Callable[[int], int]] = {
    "request": run_request, "response": run_response, "body": run_body, "stream": run_stream,
}


# --- tests ---------------------------------------------------------------------------------------


def test_campaigns_push_at_least_100k_inputs() -> None:
    assert sum(CAMPAIGN_INPUTS.values()) >= INPUTS_MIN


def test_seeds_are_valid_frames_of_every_api_and_version() -> None:
    """A fuzzer whose seeds were already broken would explore nothing but the first error."""
    requests, responses, others = seeds()
    assert {s.cls.API_KEY for s in requests} == set(REQUESTS)
    assert {(s.cls.API_KEY, s.version) for s in responses} == {
        (k, v) for k, c in RESPONSES.items() for v in range(c.VALID_VERSIONS[0], c.VALID_VERSIONS[1] + 1)}
    for s in requests:
        header, body = decode_request(memoryview(s.frame))
        assert (header.request_api_key, header.request_api_version) == (s.cls.API_KEY, s.version)
        assert body.encode(s.version) == s.frame[s.body_pos :]
    for s in responses:
        _, body = decode_response(memoryview(s.frame), s.cls.API_KEY, s.version)
        assert body.encode(s.version) == s.frame[s.body_pos :]
    for s in others:
        assert s.cls.decode(s.frame, s.version).encode(s.version) == s.frame
    # Random seeds must reach into nested arrays, not just be defaults.
    assert sum(len(s.frame) for s in requests) > 20 * len(requests)


@pytest.mark.parametrize("campaign", list(CAMPAIGNS))
def test_only_protocol_error_escapes(campaign: str) -> None:
    iterations = int(CAMPAIGN_INPUTS[campaign] * SCALE)
    run = CAMPAIGNS[campaign]
    pushed = sum(run(i) for i in range(iterations))
    print(f"fuzz campaign {campaign}: {iterations} mutated inputs ({pushed} frames or bodies decoded), "
          f"TRAFKA_FUZZ_SEED={SEED:#x}")


def _response_decoder(seed: Seed) -> Callable[[memoryview], object]:
    return lambda frame: decode_response(frame, seed.cls.API_KEY, seed.version)


def _hostile_inputs() -> list[tuple[Callable[[memoryview], object], bytes]]:
    """Frames whose lengths and counts claim up to 2 GiB (or 4 GiB for varints)."""
    requests, responses, _ = seeds()
    rng = random.Random(SEED ^ 0x5A5A)
    biggest_requests = sorted(requests, key=lambda s: len(s.frame) - s.body_pos)[-24:]
    biggest_responses = sorted(responses, key=lambda s: len(s.frame) - s.body_pos)[-24:]
    claims = [I32.pack(0x7FFFFFFF), I32.pack(0x7FFFFFF0), I16.pack(0x7FFF), uvarint_bytes(0xFFFFFFFF),
              uvarint_bytes(0x80000000)]
    out: list[tuple[Callable[[memoryview], object], bytes]] = []
    for group in (biggest_requests, biggest_responses):
        for seed in group:
            decode: Callable[[memoryview], object] = (
                decode_request if group is biggest_requests else _response_decoder(seed))
            positions = range(seed.body_pos, len(seed.frame))
            for at in rng.sample(positions, min(len(positions), 60)):
                for claim in claims:
                    data = bytearray(seed.frame)
                    data[at : at + len(claim)] = claim
                    out.append((decode, bytes(data)))
    return out


def test_hostile_lengths_allocate_only_what_the_input_holds() -> None:
    inputs = _hostile_inputs()
    assert len(inputs) > 5_000
    # Size prefixes that claim 2 GiB frames, fed to decoders that allow them and to ones that do not.
    claimed_frames = [I32.pack(0x7FFFFFFF) + bytes(1000), I32.pack(0x7FFFFFF0) + bytes(3), I32.pack(-2)]
    refused = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for decode, data in inputs:
            with contextlib.suppress(ProtocolError):
                decode(memoryview(data))
        for wire in claimed_frames:
            (size,) = I32.unpack_from(wire)
            for frame_bytes_max in (FRAME_BYTES_MAX_DEFAULT, 2**31 - 1):
                decoder = FrameDecoder(frame_bytes_max)
                decoder.receive_data(wire)
                if 0 <= size <= frame_bytes_max:
                    assert decoder.next_frame() is None
                else:
                    with pytest.raises(ProtocolError):
                        decoder.next_frame()
                    refused += 1
                del decoder
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused == 4
    print(f"{len(inputs)} hostile frames decoded with a peak of {peak} bytes")
    assert peak < HOSTILE_PEAK_BYTES_MAX, f"decoding hostile frames peaked at {peak} bytes"
