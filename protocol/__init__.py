"""Trafka's sans-IO Kafka protocol codec.

This package owns the bytes of the Kafka wire protocol: primitive types, request and response
headers, framing, every request/response message (generated into ``protocol.messages``) and the
v2 record batch format (``protocol.records``). It performs no I/O and imports nothing from trio,
socket or os; a test enforces that rule. Malformed input raises exactly one exception type,
``ProtocolError``; Kafka error codes are values (``ErrorCode``), never raised across the wire layer.
"""

from protocol.errors import ProtocolError

__all__ = ["ProtocolError"]
