"""Every generated message at every valid version survives encode -> decode -> encode.

Values come from the schemas themselves (tests/message_values.py), so a field the generator
skipped, mis-gated or mis-typed shows up as an inequality or a different byte string.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.message import Message
from tests.message_values import all_classes, message_strategy

PAIRS = [(cls, v) for cls in all_classes() for v in range(cls.VALID_VERSIONS[0], cls.VALID_VERSIONS[1] + 1)]


def test_every_schema_is_generated() -> None:
    from protocol import messages

    assert len(messages.REQUESTS) == len(messages.RESPONSES) == 88
    assert set(messages.REQUESTS) == set(messages.RESPONSES) == {int(k) for k in messages.ApiKey}


@pytest.mark.parametrize(("cls", "version"), PAIRS, ids=[f"{c.NAME}-v{v}" for c, v in PAIRS])
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_roundtrip(cls: type[Message], version: int, data: st.DataObject) -> None:
    original = data.draw(message_strategy(cls, version))
    encoded = original.encode(version)
    decoded = cls.decode(encoded, version)
    assert decoded == original
    assert decoded.encode(version) == encoded
