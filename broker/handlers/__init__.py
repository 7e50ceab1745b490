"""Request handlers, one module per area; importing this package registers every route."""

from broker.handlers import admin, fetch, groups, metadata, offsets, produce, quorum, topics

__all__ = ["admin", "fetch", "groups", "metadata", "offsets", "produce", "quorum", "topics"]
