"""Hypothesis strategies for any generated message at any version, built from the schemas.

A value drawn for (class, version) sets every field present at that version to a random value of
its type (null where the version allows it, unknown tagged fields where the version is flexible)
and leaves every absent field at its default, so it can be encoded at that version.
"""

from __future__ import annotations

import uuid
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from protocol.message import Message
from tools.codegen.emit import attr_name
from tools.codegen.schema import FieldSpec, MessageSpec, Versions, load_message

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "kafka-spec" / "message"

INT_RANGES = {"int8": (-(2**7), 2**7 - 1), "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
              "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-(2**63), 2**63 - 1)}

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
SMALL_BYTES = st.binary(max_size=24)


@cache
def spec_for(name: str) -> MessageSpec:
    return load_message(SCHEMAS / f"{name}.json")


def message_strategy(cls: type[Message], version: int) -> st.SearchStrategy[Any]:
    spec = spec_for(cls.NAME)
    return _struct(spec, cls, spec.fields, version)


def _struct(spec: MessageSpec, cls: type, fields: list[FieldSpec], version: int) -> st.SearchStrategy[Any]:
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for f in fields:
        if version in f.versions:
            kwargs[attr_name(f.name)] = _field(spec, cls, f, version)
    if version in spec.flexible_versions:
        known = {f.tag for f in fields if f.tag is not None}
        kwargs["unknown_tagged_fields"] = st.one_of(
            st.none(),
            st.lists(st.tuples(st.integers(100, 120), SMALL_BYTES), max_size=2, unique_by=lambda t: t[0])
            .map(lambda ts: sorted(t for t in ts if t[0] not in known) or None),
        )
    return st.builds(cls, **kwargs)


def _field(spec: MessageSpec, owner: type, f: FieldSpec, version: int) -> st.SearchStrategy[Any]:
    t = f.type
    if t.is_struct:
        nested = getattr(_message_class(spec), t.name)
        one = st.deferred(lambda: _struct(spec, nested, spec.structs[t.name].fields, version))
    else:
        one = _primitive(t.name)
    value = st.lists(one, max_size=3) if t.is_array else one
    nullable = version in f.nullable_versions or (t.name == "records" and not t.is_array)
    if nullable:
        value = st.one_of(st.none(), value)
    return value


def _message_class(spec: MessageSpec) -> type:
    from protocol import messages

    for table in (messages.REQUESTS, messages.RESPONSES):
        for c in table.values():
            if spec.name == c.NAME:
                return c
    return messages.OTHERS[spec.name]


def _primitive(name: str) -> st.SearchStrategy[Any]:
    if name in INT_RANGES:
        lo, hi = INT_RANGES[name]
        return st.integers(lo, hi)
    if name == "bool":
        return st.booleans()
    if name == "float64":
        return st.floats(allow_nan=False)
    if name == "string":
        return TEXT
    if name in ("bytes", "records"):
        return SMALL_BYTES
    if name == "uuid":
        return st.uuids().map(lambda u: uuid.UUID(int=u.int))
    raise AssertionError(name)


def all_classes() -> list[type[Message]]:
    from protocol import messages

    return [*messages.REQUESTS.values(), *messages.RESPONSES.values(), *messages.OTHERS.values()]


def versions_of(cls: type[Message]) -> Versions:
    lo, hi = cls.VALID_VERSIONS
    return Versions(lo, hi)

