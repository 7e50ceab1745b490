"""Cross-check of our generated message codec against kafka-python's independent one.

Goal: for every message that both we and kafka-python 3.x define (every API request and response,
the request and response headers, and the consumer protocol's subscription and assignment), at
every version both support, bytes either side encodes decode to the same values on the other side,
and re-encoding gives back the very same bytes. kafka-python builds its codec from its own copy of
Kafka's JSON schemas with its own field classes, so agreement here is evidence about our generator,
not a restatement of it.

Theory of operation:

* Pairing. Our classes come from ``protocol.messages``; theirs are found by walking the
  ``kafka.protocol`` package (skipping ``kafka.protocol.old``, the hand-written legacy classes) and
  are paired with ours by API key and kind, or by name for headers and data messages. The versions
  checked are the intersection of the two schemas' ``validVersions`` (kafka-python reports a minimum
  of 0 for every API whatever its schema says, so its ``min_version`` is not used).
* Layout. At each checked version the two schemas must describe the same wire layout: the same
  fields in the same order with the same types, nullability and tags. Fields are paired by position
  and their names must agree except for the few renames kafka-python makes (``RENAMED``).
  ``test_layouts_agree`` reports any difference; there is none at the common versions today.
* Values. A seeded ``random.Random`` per (message, version, direction) builds our dataclasses from
  the schema model (``tools.codegen.schema``): every field present in that version, with nulls
  where nullable, empty and non-empty arrays, non-default tagged fields, unknown tagged fields,
  unicode strings, uuids and extreme integers. The first examples use fixed profiles (everything
  set, everything null, everything empty) so each of those cases is reached deterministically, and
  each (message, version) asserts that every field took a value, every nullable field was null,
  every array was both empty and non-empty, and (where kafka-python decodes our bytes) every
  flexible struct carried unknown tagged fields at least once. Records are opaque bytes to both.
* Direction ours -> theirs: encode with ours, decode with kafka-python, convert its object back to
  ours and compare every field, then re-encode with kafka-python and compare the bytes.
* Direction theirs -> ours: convert our value to a kafka-python object, encode with kafka-python,
  decode with ours, compare every field, then re-encode with ours and compare the bytes.

kafka-python's representation differs from ours in a few ways the converters bridge: a zero uuid is
``None``; an authorized-operations int32 is a set of bit positions (``None`` for the "not
requested" value -2**31); an absent tagged struct is ``None``; unknown tagged fields are a dict
keyed ``"_<tag>"``, and it decodes them but never re-encodes them, so its re-encoded bytes are
compared with ours encoded without unknown tags. Inside a tagged field it writes nested structs with
an empty tag section and cannot carry tagged fields there, so none are generated in that position.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import io
import math
import pkgutil
import random
import struct
import uuid
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from protocol.message import Message
from protocol.messages import OTHERS, REQUESTS, RESPONSES
from tools.codegen.__main__ import DEFAULT_SCHEMAS
from tools.codegen.emit import attr_name
from tools.codegen.schema import FieldSpec, MessageSpec, Versions, load_all

with warnings.catch_warnings():
    # kafka-python reads its schemas, as it defines its classes, with importlib.resources.read_text
    # (deprecated since Python 3.11).
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.protocol
    from kafka.protocol.api_data import ApiData
    from kafka.protocol.api_header import ApiHeader
    from kafka.protocol.api_message import ApiMessage
    from kafka.protocol.schemas.fields.codecs import BitField

EXAMPLES_PER_CASE = 24
SEED = 20240611

# kafka-python patches a few of its schemas (``json_patch``) to turn authorized-operations int32s into
# sets of bit positions, renaming the field on the way; and Kafka 4.1 renamed API 74 from
# ListClientMetricsResources to ListConfigResources (KIP-1142) with the same v0 layout. The wire is
# unchanged in all of these. (our message, our field) -> kafka-python's schema name of the field.
RENAMED: dict[tuple[str, str], str] = {
    ("MetadataResponse", "ClusterAuthorizedOperations"): "authorized_operations",
    ("MetadataResponse", "TopicAuthorizedOperations"): "authorized_operations",
    ("DescribeClusterResponse", "ClusterAuthorizedOperations"): "authorized_operations",
    ("ListClientMetricsResourcesResponse", "ClientMetricsResources"): "ConfigResources",
    ("ListClientMetricsResourcesResponse", "Name"): "ResourceName",
}

# (message, version, reason) pairs excluded from the value checks. Only verified kafka-python
# deviations from Kafka's schemas belong here; there are none.
EXCLUDED: list[tuple[str, int, str]] = []

ZERO_UUID = uuid.UUID(int=0)
NOT_PROVIDED_OPS = -(1 << 31)  # authorized operations "not requested"; kafka-python's None


# --- pairing our classes with kafka-python's ------------------------------------------------------


@cache
def kafka_python_classes() -> dict[str, type]:
    """Every schema-driven message class kafka-python defines, by schema name."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
        if info.name.startswith("kafka.protocol.old") or info.name.endswith("generate_stubs"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # as for the imports above
            module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, (ApiMessage, ApiData, ApiHeader))
                    and obj.__dict__.get("_json") is not None):
                found[obj._json["name"]] = obj
    return found


@dataclass(frozen=True)
class Pair:
    ours: type[Message]
    theirs: type
    spec: MessageSpec
    versions: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.ours.NAME

    def flexible(self, version: int) -> bool:
        return self.ours.is_flexible(version)

    def their_encode(self, obj: Any, version: int) -> bytes:
        if issubclass(self.theirs, ApiHeader):
            return bytes(obj.encode(flexible=self.flexible(version)))
        if issubclass(self.theirs, ApiData):
            return bytes(obj.encode(version=version, header=False))
        return bytes(obj.encode(version=version))

    def their_decode(self, data: bytes, version: int) -> Any:
        if issubclass(self.theirs, ApiHeader):
            return self.theirs.decode(io.BytesIO(data), flexible=self.flexible(version))
        if issubclass(self.theirs, ApiData):
            return self.theirs.decode(data, version=version, header=False)
        # ApiMessage's own decode: ApiVersionsResponse overrides it to parse any body whose error
        # code is non-zero as version 0 (the client's UNSUPPORTED_VERSION fallback), which is
        # handshake policy, not the codec under test.
        obj = ApiMessage.decode.__func__(self.theirs, data, version=version)  # type: ignore[attr-defined]
        # Its decoder builds objects without running __init__, which leaves the header slot unset and
        # breaks re-encoding them; a decoded message has no header, so say so.
        obj._header = None
        return obj

    def their_new(self, version: int, values: dict[str, Any]) -> Any:
        if issubclass(self.theirs, ApiHeader):
            return self.theirs(**values)
        return self.theirs(version=version, **values)


@cache
def pairs() -> list[Pair]:
    specs = {m.name: m for m in load_all([DEFAULT_SCHEMAS])}
    theirs = kafka_python_classes()
    by_key = {(c._json["apiKey"], c._json["type"]): c for c in theirs.values() if "apiKey" in c._json}
    out: list[Pair] = []
    ours_by_theirs: list[tuple[type[Message], type | None]] = []
    for key, cls in [*REQUESTS.items(), *RESPONSES.items()]:
        ours_by_theirs.append((cls, by_key.get((key, cls.KIND))))
    for name in ("ConsumerProtocolSubscription", "ConsumerProtocolAssignment", "RequestHeader",
                 "ResponseHeader"):
        ours_by_theirs.append((OTHERS[name], theirs[name]))
    for ours, their_cls in ours_by_theirs:
        if their_cls is None:
            continue
        spec = specs[ours.NAME]
        common = spec.valid_versions & Versions.parse(their_cls._json["validVersions"])
        versions = list(common)
        if issubclass(their_cls, ApiHeader):
            # kafka-python writes a header only at its first version or its first flexible one.
            flex = Versions.parse(their_cls._json["flexibleVersions"])
            versions = [v for v in versions if v in (flex.lo, Versions.parse(their_cls._json["validVersions"]).lo)]
        out.append(Pair(ours, their_cls, spec, tuple(versions)))
    return out


def cases() -> list[Any]:
    excluded = {(name, version) for name, version, _ in EXCLUDED}
    return [pytest.param(p, v, id=f"{p.name}-v{v}") for p in pairs() for v in p.versions
            if (p.name, v) not in excluded]


# --- the two schemas' wire layouts ---------------------------------------------------------------


def their_fields(kfield: Any) -> tuple[Any, ...]:
    """The field objects kafka-python encodes a struct (or the elements of a struct array) with."""
    inner = getattr(kfield, "array_of", kfield)
    return tuple(inner._fields)


def wire_type_ours(f: FieldSpec) -> str:
    return ("[]" if f.type.is_array else "") + ("struct" if f.type.is_struct else f.type.name)


def wire_type_theirs(k: Any) -> str:
    t: str = k._json["type"]
    array = t.startswith("[]")
    if k.is_struct() or k.is_struct_array():
        t = "struct"
    elif array:
        t = t[2:]
    if t == "bitfield":
        t = "int32"
    return ("[]" if array else "") + t


def paired_fields(message: str, fields: list[FieldSpec], kfields: tuple[Any, ...],
                  version: int) -> list[tuple[FieldSpec, Any]]:
    """Our fields present at ``version`` with kafka-python's, checking that the layouts agree."""
    ours = [f for f in fields if version in f.versions]
    theirs = [k for k in kfields if k.for_version_q(version)]
    where = f"{message} v{version}"
    assert len(ours) == len(theirs), f"{where}: fields {[f.name for f in ours]} vs {[k._name for k in theirs]}"
    out = []
    for f, k in zip(ours, theirs, strict=True):
        expect = RENAMED.get((message, f.name), f.name)
        ours_wire = (wire_type_ours(f), version in f.nullable_versions,
                     f.tag if version in f.tagged_versions else None, f.flexible_versions is not None)
        theirs_wire = (wire_type_theirs(k), k.nullable_for_version_q(version),
                       k.tag if k.tagged_field_q(version) else None, k._flexible_versions is not None)
        assert k._name == expect, f"{where}: field {f.name} is paired with kafka-python's {k._name}"
        assert ours_wire == theirs_wire, f"{where}: field {f.name} is {ours_wire} here, {theirs_wire} there"
        out.append((f, k))
    return out


@pytest.mark.parametrize("pair", pairs(), ids=lambda p: p.name)
def test_layouts_agree(pair: Pair) -> None:
    """At every common version both schemas describe the same bytes (names aside)."""
    assert pair.versions, f"{pair.name}: no version in common"
    their_flex = Versions.parse(pair.theirs._json["flexibleVersions"])
    for version in pair.versions:
        assert pair.flexible(version) == (version in their_flex), f"{pair.name} v{version}: flexibility"
        walk_layout(pair, pair.spec.fields, their_fields(pair.theirs._struct), version)


def walk_layout(pair: Pair, fields: list[FieldSpec], kfields: tuple[Any, ...], version: int) -> None:
    for f, k in paired_fields(pair.name, fields, kfields, version):
        if f.type.is_struct:
            walk_layout(pair, pair.spec.structs[f.type.name].fields, their_fields(k), version)


def test_every_kafka_python_message_is_paired() -> None:
    """No class kafka-python defines is silently left out of the cross-check."""
    paired = {p.theirs for p in pairs()}
    missing = sorted(n for n, c in kafka_python_classes().items() if c not in paired)
    assert missing == []
    resources = Path(kafka.protocol.__file__).parent / "schemas" / "resources"
    assert {p.stem for p in resources.glob("*.json")} == set(kafka_python_classes())


# --- random values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    null_p: float  # chance a nullable field is null
    lengths: tuple[int, ...]  # array lengths to choose from
    tag_default_p: float  # chance a tagged field keeps its default
    unknown_p: float  # chance a flexible struct carries unknown tagged fields


FULL = Profile(null_p=0.0, lengths=(1, 2), tag_default_p=0.0, unknown_p=1.0)
NULLS = Profile(null_p=1.0, lengths=(1, 2), tag_default_p=0.0, unknown_p=0.0)
EMPTY = Profile(null_p=0.0, lengths=(0,), tag_default_p=0.0, unknown_p=0.0)
RANDOM = Profile(null_p=0.25, lengths=(0, 1, 2, 3), tag_default_p=0.4, unknown_p=0.2)
PROFILES = (FULL, NULLS, EMPTY)

TEXT = "az09 _.-\x00é߷日本語\U0001f642"
INT_BITS = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}


class Values:
    """Random values of our message classes for one (message, version), following the schema."""

    def __init__(self, pair: Pair, version: int, rng: random.Random, profile: Profile,
                 unknown_tags: bool, seen: set[tuple[str, str, str]]) -> None:
        self.pair = pair
        self.version = version
        self.rng = rng
        self.profile = profile
        self.unknown_tags = unknown_tags and pair.flexible(version)
        self.seen = seen

    def message(self) -> Message:
        return self.struct(self.pair.ours, "", self.pair.spec.fields, 0, False)  # type: ignore[no-any-return]

    def struct(self, cls: type, sname: str, fields: list[FieldSpec], depth: int, in_tag: bool) -> Any:
        values: dict[str, Any] = {}
        tags_used = set()
        for f in fields:
            if f.tag is not None:
                tags_used.add(f.tag)
            if self.version not in f.versions:
                continue
            tagged = self.version in f.tagged_versions
            if tagged and (in_tag or self.rng.random() < self.profile.tag_default_p):
                continue
            values[attr_name(f.name)] = self.field(f, sname, depth, in_tag or tagged)
        if self.unknown_tags and not in_tag and self.rng.random() < self.profile.unknown_p:
            first = max(tags_used, default=-1) + 1
            numbers = sorted(self.rng.sample(range(first, first + 40), self.rng.randint(1, 2)))
            values["unknown_tagged_fields"] = [(n, self.rng.randbytes(self.rng.choice((0, 3, 200))))
                                               for n in numbers]
            self.seen.add((sname, "", "unknown"))
        return cls(**values)

    def field(self, f: FieldSpec, sname: str, depth: int, in_tag: bool) -> Any:
        key = (sname, f.name)
        if self.version in f.nullable_versions and self.rng.random() < self.profile.null_p:
            self.seen.add((*key, "null"))
            return None
        self.seen.add((*key, "value"))
        if f.type.is_array:
            choices = self.profile.lengths if depth < 3 else tuple(n for n in self.profile.lengths if n < 2)
            n = self.rng.choice(choices or (0,))
            self.seen.add((*key, "empty" if n == 0 else "nonempty"))
            return [self.element(f, depth, in_tag) for _ in range(n)]
        return self.element(f, depth, in_tag)

    def element(self, f: FieldSpec, depth: int, in_tag: bool) -> Any:
        name = f.type.name
        if f.type.is_struct:
            return self.struct(getattr(self.pair.ours, name), name, self.pair.spec.structs[name].fields,
                               depth + 1, in_tag)
        return self.primitive(name)

    def primitive(self, name: str) -> Any:
        rng = self.rng
        if name in INT_BITS:
            bits = INT_BITS[name]
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            return rng.choice((lo, hi, 0, -1, 1, rng.randint(max(lo, -300), min(hi, 300)), rng.randint(lo, hi)))
        if name == "uint16":
            return rng.choice((0, 1, 0xFFFF, rng.randint(0, 0xFFFF)))
        if name == "uint32":
            return rng.choice((0, 1, 0xFFFFFFFF, rng.randint(0, 0xFFFFFFFF)))
        if name == "bool":
            return rng.random() < 0.5
        if name == "float64":
            special = (0.0, -0.0, 1.5, -2.5e300, math.inf, -math.inf, 5e-324)
            if rng.random() < 0.5:
                return rng.choice(special)
            while True:
                (value,) = struct.unpack(">d", rng.randbytes(8))
                if not math.isnan(value):
                    return value
        if name == "string":
            n = rng.choice((0, 1, 5, 12, 130))
            return "".join(rng.choice(TEXT) for _ in range(n))
        if name == "bytes":
            return rng.randbytes(rng.choice((0, 1, 7, 140)))
        if name == "records":
            return rng.randbytes(rng.choice((0, 1, 61, 300)))
        if name == "uuid":
            return ZERO_UUID if rng.random() < 0.2 else uuid.UUID(int=rng.getrandbits(128))
        raise AssertionError(f"no generator for {name}")


def expected_coverage(pair: Pair, version: int, unknown_tags: bool) -> set[tuple[str, str, str]]:
    """What the examples of one (message, version) must reach between them."""
    out: set[tuple[str, str, str]] = set()

    def walk(sname: str, fields: list[FieldSpec], in_tag: bool, visited: frozenset[str]) -> None:
        if unknown_tags and pair.flexible(version) and not in_tag:
            out.add((sname, "", "unknown"))
        for f in fields:
            if version not in f.versions or (in_tag and version in f.tagged_versions):
                continue
            out.add((sname, f.name, "value"))
            if version in f.nullable_versions:
                out.add((sname, f.name, "null"))
            if f.type.is_array:
                out.update({(sname, f.name, "empty"), (sname, f.name, "nonempty")})
            if f.type.is_struct and f.type.name not in visited:
                walk(f.type.name, pair.spec.structs[f.type.name].fields,
                     in_tag or version in f.tagged_versions, visited | {f.type.name})

    walk("", pair.spec.fields, False, frozenset())
    return out


def examples(pair: Pair, version: int, direction: str, unknown_tags: bool) -> Iterator[tuple[str, Message]]:
    seed = SEED ^ zlib.crc32(f"{pair.name}:{version}:{direction}".encode())
    rng = random.Random(seed)
    seen: set[tuple[str, str, str]] = set()
    for i in range(EXAMPLES_PER_CASE):
        profile = PROFILES[i] if i < len(PROFILES) else RANDOM
        value = Values(pair, version, rng, profile, unknown_tags, seen).message()
        yield f"{pair.name} v{version} {direction}, seed {seed}, example {i}", value
    missing = expected_coverage(pair, version, unknown_tags) - seen
    assert not missing, f"{pair.name} v{version} {direction} (seed {seed}) never generated {sorted(missing)}"


# --- converting between our values and kafka-python's ---------------------------------------------


def is_bitfield(k: Any) -> bool:
    return getattr(k, "_type", None) is BitField


def ops_to_theirs(value: int) -> set[int] | None:
    bits = BitField.from_32_bit_field(value & 0xFFFFFFFF)
    return None if bits == {31} else bits


def ops_to_ours(bits: set[int] | None) -> int:
    value = BitField.to_32_bit_field({31} if bits is None else bits)
    return value - (1 << 32) if value >= 1 << 31 else value


@cache
def our_defaults(cls: type) -> Any:
    return cls()


class Convert:
    """Our values to kafka-python objects and back, at one version."""

    def __init__(self, pair: Pair, version: int) -> None:
        self.pair = pair
        self.version = version

    def fields(self, sname: str, kfields: tuple[Any, ...]) -> list[tuple[FieldSpec, Any]]:
        fields = self.pair.spec.structs[sname].fields if sname else self.pair.spec.fields
        return paired_fields(self.pair.name, fields, kfields, self.version)

    # ours -> theirs

    def to_theirs(self, msg: Message) -> Any:
        values = self.struct_values(msg, "", their_fields(self.pair.theirs._struct))
        return self.pair.their_new(self.version, values)

    def struct_values(self, obj: Any, sname: str, kfields: tuple[Any, ...]) -> dict[str, Any]:
        out = {}
        for f, k in self.fields(sname, kfields):
            value = getattr(obj, attr_name(f.name))
            if self.version in f.tagged_versions and value == getattr(our_defaults(type(obj)), attr_name(f.name)):
                continue  # kafka-python's default for an absent tag may be spelled differently
            out[k.name] = self.value_to_theirs(f, k, value)
        return out

    def value_to_theirs(self, f: FieldSpec, k: Any, value: Any) -> Any:
        if value is None:
            return None
        if f.type.is_array:
            elem = k.array_of
            return [self.element_to_theirs(f, elem, k, v) for v in value]
        return self.element_to_theirs(f, k, k, value)

    def element_to_theirs(self, f: FieldSpec, elem: Any, k: Any, value: Any) -> Any:
        if f.type.is_struct:
            return k.data_class(**self.struct_values(value, f.type.name, their_fields(k)))
        if is_bitfield(elem):
            return ops_to_theirs(value)
        if f.type.name == "uuid":
            return None if value == ZERO_UUID else value
        if f.type.name in ("bytes", "records"):
            return bytes(value)
        return value

    # theirs -> ours

    def to_ours(self, obj: Any) -> Message:
        return self.struct_to_ours(obj, self.pair.ours, "", their_fields(self.pair.theirs._struct))  # type: ignore[no-any-return]

    def struct_to_ours(self, obj: Any, cls: type, sname: str, kfields: tuple[Any, ...]) -> Any:
        values: dict[str, Any] = {}
        for f, k in self.fields(sname, kfields):
            value = getattr(obj, k.name)
            if (value is None and wire_type_ours(f) == "struct" and self.version in f.tagged_versions
                    and self.version not in f.nullable_versions):
                # kafka-python's absent tagged struct; ours is the struct's default
                values[attr_name(f.name)] = getattr(our_defaults(cls), attr_name(f.name))
                continue
            values[attr_name(f.name)] = self.value_to_ours(f, k, value)
        unknown = obj.unknown_tags
        if unknown:
            values["unknown_tagged_fields"] = sorted((int(t[1:]), bytes(b)) for t, b in unknown.items())
        return cls(**values)

    def value_to_ours(self, f: FieldSpec, k: Any, value: Any) -> Any:
        if value is None and not (is_bitfield(k) or wire_type_ours(f) == "uuid"):
            return None
        if f.type.is_array:
            return [self.element_to_ours(f, k.array_of, k, v) for v in value]
        return self.element_to_ours(f, k, k, value)

    def element_to_ours(self, f: FieldSpec, elem: Any, k: Any, value: Any) -> Any:
        if f.type.is_struct:
            cls = getattr(self.pair.ours, f.type.name)
            return self.struct_to_ours(value, cls, f.type.name, their_fields(k))
        if is_bitfield(elem):
            return ops_to_ours(value)
        if f.type.name == "uuid":
            return ZERO_UUID if value is None else value
        if f.type.name in ("bytes", "records"):
            return bytes(value)
        return value


def without_unknown_tags(obj: Any) -> Any:
    """A copy of one of our values with every unknown tagged field dropped (kafka-python drops them)."""
    if isinstance(obj, list):
        return [without_unknown_tags(v) for v in obj]
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    changes = {f.name: without_unknown_tags(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if "unknown_tagged_fields" in changes:
        changes["unknown_tagged_fields"] = None
    return dataclasses.replace(obj, **changes)


# --- the cross-checks -----------------------------------------------------------------------------


def check_ours_to_theirs(pair: Pair, version: int) -> None:
    convert = Convert(pair, version)
    for where, ours in examples(pair, version, "ours->theirs", unknown_tags=True):
        data = ours.encode(version)
        theirs = pair.their_decode(data, version)
        assert convert.to_ours(theirs) == ours, f"{where}: kafka-python decoded other values"
        again = pair.their_encode(theirs, version)
        assert again == without_unknown_tags(ours).encode(version), f"{where}: kafka-python re-encoded other bytes"


def check_theirs_to_ours(pair: Pair, version: int) -> None:
    convert = Convert(pair, version)
    for where, ours in examples(pair, version, "theirs->ours", unknown_tags=False):
        data = pair.their_encode(convert.to_theirs(ours), version)
        decoded = pair.ours.decode(data, version)
        assert decoded == ours, f"{where}: we decoded other values"
        assert decoded.encode(version) == data, f"{where}: we re-encoded other bytes"


@pytest.mark.parametrize(("pair", "version"), cases())
def test_kafka_python_decodes_what_we_encode(pair: Pair, version: int) -> None:
    check_ours_to_theirs(pair, version)


@pytest.mark.parametrize(("pair", "version"), cases())
def test_we_decode_what_kafka_python_encodes(pair: Pair, version: int) -> None:
    check_theirs_to_ours(pair, version)


# --- the cross-check catches a broken codec -------------------------------------------------------


def pair_named(name: str) -> Pair:
    return next(p for p in pairs() if p.name == name)


def test_a_mis_encoded_field_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from protocol.messages.fetch import FetchRequest

    original = FetchRequest.FetchPartition._encode

    def off_by_one(self: Any, out: bytearray, version: int) -> None:
        original(dataclasses.replace(self, fetch_offset=self.fetch_offset ^ 1), out, version)

    monkeypatch.setattr(FetchRequest.FetchPartition, "_encode", off_by_one)
    pair = pair_named("FetchRequest")
    with pytest.raises(AssertionError, match="kafka-python decoded other values"):
        check_ours_to_theirs(pair, 12)
    with pytest.raises(AssertionError, match="we re-encoded other bytes"):
        check_theirs_to_ours(pair, 12)


def test_a_mis_decoded_field_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    from protocol.messages.metadata import MetadataResponse

    original = MetadataResponse.MetadataResponseTopic._decode

    def no_topic_id(buf: memoryview, pos: int, version: int) -> tuple[Any, int]:
        topic, pos = original(buf, pos, version)
        return dataclasses.replace(topic, topic_id=ZERO_UUID), pos

    monkeypatch.setattr(MetadataResponse.MetadataResponseTopic, "_decode", staticmethod(no_topic_id))
    with pytest.raises(AssertionError, match="we decoded other values"):
        check_theirs_to_ours(pair_named("MetadataResponse"), 12)
