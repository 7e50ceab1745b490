"""The single exception raised for malformed protocol input.

A ``ProtocolError`` means the peer sent bytes that cannot be a valid Kafka message: truncated
data, a negative length that is not the null marker, a length or count larger than what remains,
an over-long varint, a frame over its limit. The broker answers it by closing that connection.
Kafka *error codes* (``protocol.error_codes.ErrorCode``) are a different thing: values placed in
responses for well-formed requests that cannot be served.
"""


class ProtocolError(Exception):
    """Raised for any malformed input; never IndexError, struct.error or MemoryError."""


class EncodeError(ValueError):
    """Raised when a message cannot be written at the requested version.

    This is a local error (our own code asked for something the protocol cannot carry, such as a
    non-default value in a field the version lacks), not a peer's fault.
    """
