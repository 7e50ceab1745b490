"""Reading Apache Kafka's message schemas into a small typed model.

The schema files are JSON with ``//`` comments. This module parses them into ``MessageSpec``,
``StructSpec`` and ``FieldSpec`` values and resolves every version range the generator needs: the
versions in which a struct exists (the hull of the fields that use it), and for each field the
versions in which it is present, nullable, flexible and tagged. It keeps facts only; the schemas'
prose (``about`` texts and comments) is dropped here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

VERSION_MAX = 0x7FFF

PRIMITIVES = frozenset(
    {"bool", "int8", "int16", "uint16", "int32", "uint32", "int64", "float64", "string", "bytes",
     "records", "uuid"}
)
FIXED_FORMATS = {"bool": "?", "int8": "b", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
                 "int64": "q", "float64": "d"}
FIXED_SIZES = {"bool": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
               "float64": 8}


@dataclass(frozen=True, slots=True)
class Versions:
    """An inclusive range of versions; empty when ``lo > hi``."""

    lo: int
    hi: int

    @staticmethod
    def parse(text: str | None) -> Versions:
        if text is None or text == "none":
            return NO_VERSIONS
        text = text.strip()
        if text.endswith("+"):
            return Versions(int(text[:-1]), VERSION_MAX)
        if "-" in text:
            lo, hi = text.split("-")
            return Versions(int(lo), int(hi))
        return Versions(int(text), int(text))

    @property
    def empty(self) -> bool:
        return self.lo > self.hi

    def __and__(self, other: Versions) -> Versions:
        r = Versions(max(self.lo, other.lo), min(self.hi, other.hi))
        return NO_VERSIONS if r.empty else r

    def hull(self, other: Versions) -> Versions:
        if self.empty:
            return other
        if other.empty:
            return self
        return Versions(min(self.lo, other.lo), max(self.hi, other.hi))

    def covers(self, other: Versions) -> bool:
        return other.empty or (self.lo <= other.lo and other.hi <= self.hi)

    def __contains__(self, version: int) -> bool:
        return self.lo <= version <= self.hi

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.lo, self.hi + 1))


NO_VERSIONS = Versions(1, 0)


@dataclass(slots=True)
class TypeSpec:
    """A field's type: a primitive, a struct, or an array of either."""

    name: str  # primitive name or struct name (without "[]")
    is_array: bool

    @property
    def is_struct(self) -> bool:
        return self.name not in PRIMITIVES

    @staticmethod
    def parse(text: str) -> TypeSpec:
        if text.startswith("[]"):
            return TypeSpec(text[2:], True)
        return TypeSpec(text, False)


@dataclass(slots=True)
class FieldSpec:
    name: str
    type: TypeSpec
    versions: Versions
    nullable_versions: Versions
    tagged_versions: Versions
    tag: int | None
    ignorable: bool
    default: object
    map_key: bool
    flexible_versions: Versions | None  # a per-field override ("none" for the header's ClientId)
    zero_copy: bool


@dataclass(slots=True)
class StructSpec:
    name: str
    fields: list[FieldSpec]
    versions: Versions = NO_VERSIONS  # the hull of the versions of every field that uses it


@dataclass(slots=True)
class MessageSpec:
    name: str
    kind: str  # request, response, header, data
    api_key: int | None
    valid_versions: Versions
    flexible_versions: Versions
    deprecated_versions: Versions
    latest_version_unstable: bool
    listeners: tuple[str, ...]
    fields: list[FieldSpec]
    # Every struct of the message in definition order (children before parents).
    structs: dict[str, StructSpec] = field(default_factory=dict)


def strip_comments(text: str) -> str:
    """Remove ``//`` comments outside JSON strings."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _parse_field(raw: dict[str, object], structs: dict[str, StructSpec],
                 common: dict[str, list[dict[str, object]]]) -> FieldSpec:
    ftype = TypeSpec.parse(str(raw["type"]))
    tag = raw.get("tag")
    spec = FieldSpec(
        name=str(raw["name"]),
        type=ftype,
        versions=Versions.parse(str(raw["versions"])),
        nullable_versions=Versions.parse(raw.get("nullableVersions")),  # type: ignore[arg-type]
        tagged_versions=Versions.parse(raw.get("taggedVersions")),  # type: ignore[arg-type]
        tag=None if tag is None else int(tag),  # type: ignore[call-overload]
        ignorable=bool(raw.get("ignorable", False)),
        default=raw.get("default"),
        map_key=bool(raw.get("mapKey", False)),
        flexible_versions=(Versions.parse(str(raw["flexibleVersions"]))
                           if "flexibleVersions" in raw else None),
        zero_copy=bool(raw.get("zeroCopy", False)),
    )
    if ftype.is_struct:
        inline = raw.get("fields")
        if inline is not None:
            _add_struct(ftype.name, inline, structs, common)  # type: ignore[arg-type]
        elif ftype.name not in structs and ftype.name in common:
            _add_struct(ftype.name, common[ftype.name], structs, common)
        elif ftype.name not in structs:
            raise ValueError(f"unknown struct type {ftype.name}")
    return spec


def _add_struct(name: str, raw_fields: list[dict[str, object]], structs: dict[str, StructSpec],
                common: dict[str, list[dict[str, object]]]) -> None:
    if name in structs:
        raise ValueError(f"struct {name} is defined twice")
    fields = [_parse_field(f, structs, common) for f in raw_fields]
    structs[name] = StructSpec(name, fields)


def load_message(path: Path) -> MessageSpec:
    raw = json.loads(strip_comments(path.read_text()))
    common = {str(c["name"]): c["fields"] for c in raw.get("commonStructs", [])}
    structs: dict[str, StructSpec] = {}
    fields = [_parse_field(f, structs, common) for f in raw["fields"]]
    # Common structs that no field reached still belong to the message.
    for cname, cfields in common.items():
        if cname not in structs:
            _add_struct(cname, cfields, structs, common)
    msg = MessageSpec(
        name=raw["name"],
        kind=raw["type"],
        api_key=raw.get("apiKey"),
        valid_versions=Versions.parse(raw["validVersions"]),
        flexible_versions=Versions.parse(raw["flexibleVersions"]),
        deprecated_versions=Versions.parse(raw.get("deprecatedVersions")),
        latest_version_unstable=bool(raw.get("latestVersionUnstable", False)),
        listeners=tuple(raw.get("listeners", ())),
        fields=fields,
        structs=structs,
    )
    _resolve_struct_versions(msg)
    return msg


def _resolve_struct_versions(msg: MessageSpec) -> None:
    def visit(fields: list[FieldSpec], within: Versions) -> None:
        for f in fields:
            present = f.versions & within
            if f.type.is_struct and not present.empty:
                s = msg.structs[f.type.name]
                before = s.versions
                s.versions = s.versions.hull(present)
                if s.versions != before:
                    visit(s.fields, s.versions)

    visit(msg.fields, msg.valid_versions)


def load_all(directories: list[Path]) -> list[MessageSpec]:
    specs: list[MessageSpec] = []
    for d in directories:
        for p in sorted(d.glob("*.json")):
            specs.append(load_message(p))
    return specs


def snake(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()
