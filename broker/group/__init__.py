"""Consumer-group coordination: classic groups and committed offsets, sans-IO.

``GroupCoordinator`` (coordinator.py) is the entry point: decoded requests and ``now_ms`` in,
responses, completions of parked requests and ``__consumer_offsets`` records out. ``ClassicGroup``
(classic.py) is one group's membership state machine; records.py is the byte format of what the
coordinator persists; errors.py shapes the answers of requests refused by a broker that does not
coordinate the group (a cluster) or whose write failed. Nothing here performs I/O, reads a clock
or draws random numbers.
"""

from broker.group.classic import ClassicGroup, ClassicMember, GroupState, Waiter
from broker.group.coordinator import (
    GROUP_OPERATIONS_KAFKA_3,
    GROUP_OPERATIONS_KAFKA_4,
    CommittedOffset,
    Completion,
    CoordinatorResult,
    GroupCoordinator,
    GroupCoordinatorConfig,
    OffsetsRecord,
)
from broker.group.records import java_string_hashcode, partition_for

__all__ = [
    "GROUP_OPERATIONS_KAFKA_3",
    "GROUP_OPERATIONS_KAFKA_4",
    "ClassicGroup",
    "ClassicMember",
    "CommittedOffset",
    "Completion",
    "CoordinatorResult",
    "GroupCoordinator",
    "GroupCoordinatorConfig",
    "GroupState",
    "OffsetsRecord",
    "Waiter",
    "java_string_hashcode",
    "partition_for",
]
