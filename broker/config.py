"""Broker and topic configuration: Kafka's names, types, defaults and rules, in one table.

What this module owns:

- ``BROKER_CONFIGS`` and ``TOPIC_CONFIGS``: declarative tables of every setting Trafka accepts, each a
  ``ConfigKey`` with Kafka's property name, type, default (Kafka 3.9's own, except the few documented
  deviations that make a single embedded node start with no configuration), validator, importance and a
  one-line description. Topic keys carry their broker-level synonyms in Kafka's order.
- ``load(path, overrides)``: reads a Java ``.properties`` file and ``key=value`` overrides (the CLI's
  ``--override``; they win over the file) into a frozen ``BrokerConfig``. Every problem is a
  ``ConfigError`` naming the key: an unknown key (with close matches suggested), a bad type, a value
  out of range, or settings that contradict each other.
- Kafka's precedence rules: ``log.retention.ms`` > ``log.retention.minutes`` > ``log.retention.hours``;
  ``log.roll.ms`` > ``log.roll.hours`` (and the jitter pair); ``log.flush.interval.ms`` >
  ``log.flush.scheduler.interval.ms``; ``log.dirs`` > ``log.dir``; ``node.id`` and ``broker.id`` are one
  setting under two names.
- ``log_config``: the ``storage.config.LogConfig`` a partition obeys: topic overrides layered on the
  broker-wide defaults. ``topic_config_values`` gives every topic key's effective value, including
  the ones ``LogConfig`` does not carry yet.
- DescribeConfigs: ``describe_broker_configs`` and ``describe_topic_configs`` return ``ConfigEntry``
  values with the wire's source and type codes, Kafka's synonym order (topic override, then static
  broker settings, then defaults) and passwords masked (value ``None``, ``sensitive=True``).
- AlterConfigs / IncrementalAlterConfigs / CreateTopics: ``validate_topic_config`` (one key),
  ``validate_topic_configs`` (a whole set, with cross-key rules) and ``normalise_topic_config``
  (the canonical text to store).
- ``render_markdown``: docs/configuration.md, generated from the tables
  (``python -m broker.config --markdown``); a test keeps the committed file in step.

What it never does: it touches no socket and keeps no global mutable state; the only I/O is reading
the properties file in ``load``. Dynamic (runtime) broker config changes are not supported yet: the
``dynamic`` flag of a key records whether Kafka can change it at runtime, which is what DescribeConfigs
reports as ``read_only``.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from replication.read_replica import (
    RACK_AWARE_REPLICA_SELECTOR,
    REPLICA_SELECTOR_CLASS_KEY,
    REPLICA_SELECTORS,
    replica_selector_error,
)
from storage.config import LogConfig, LogDirConfig

INT_MIN = -(1 << 31)
INT_MAX = (1 << 31) - 1
LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
SHORT_MIN = -(1 << 15)
SHORT_MAX = (1 << 15) - 1
DOUBLE_MAX = sys.float_info.max

HOUR_MS = 3_600_000
MINUTE_MS = 60_000

# Kafka's ListenerName.forSecurityProtocol names; also the valid security protocols.
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")


class ConfigType(enum.IntEnum):
    """The type codes of DescribeConfigs v3+ (``ConfigType``)."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(enum.IntEnum):
    """The source codes of DescribeConfigs v1+ (``ConfigSource``), as Kafka puts them on the wire."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    DYNAMIC_CLIENT_METRICS_CONFIG = 7
    DYNAMIC_GROUP_CONFIG = 8


class Importance(enum.Enum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ConfigError(Exception):
    """A configuration the broker cannot start with (or a topic config it cannot accept).

    ``key`` names the offending property when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class Secret:
    """A password value: compares by value, never shows it in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('[hidden]')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# ---------------------------------------------------------------------------------------------
# Validators. Each checks a parsed value and returns a reason (or None), and describes itself for
# the docs in Kafka's notation.


class Validator:
    __slots__ = ()

    def check(self, value: object) -> str | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Range(Validator):
    """``min <= value <= max``; either bound may be open."""

    min: int | float | None = None
    max: int | float | None = None

    def check(self, value: object) -> str | None:
        assert isinstance(value, int | float)
        if self.min is not None and value < self.min:
            return f"value must be at least {self.min}"
        if self.max is not None and value > self.max:
            return f"value must be no more than {self.max}"
        return None

    def describe(self) -> str:
        if self.max is None:
            return f"[{self.min},...]"
        if self.min is None:
            return f"[...,{self.max}]"
        return f"[{self.min},...,{self.max}]"


@dataclass(frozen=True, slots=True)
class OneOf(Validator):
    """A string that is one of ``options`` (case-sensitive, as Kafka's ``ValidString``)."""

    options: tuple[str, ...]

    def check(self, value: object) -> str | None:
        if value not in self.options:
            return f"string must be one of: {', '.join(self.options)}"
        return None

    def describe(self) -> str:
        return "[" + ", ".join(self.options) + "]"


@dataclass(frozen=True, slots=True)
class EachOneOf(Validator):
    """A list whose every item is one of ``options`` (Kafka's ``ValidList``)."""

    options: tuple[str, ...]

    def check(self, value: object) -> str | None:
        assert isinstance(value, tuple)
        for item in value:
            if item not in self.options:
                return f"{item!r} is not one of: {', '.join(self.options)}"
        return None

    def describe(self) -> str:
        return "[" + ", ".join(self.options) + "]"


@dataclass(frozen=True, slots=True)
class Check(Validator):
    """Any other rule: ``func`` returns a reason or None; ``description`` is for the docs."""

    func: Callable[[object], str | None]
    description: str

    def check(self, value: object) -> str | None:
        return self.func(value)

    def describe(self) -> str:
        return self.description


def _gzip_level(value: object) -> str | None:
    assert isinstance(value, int)
    if value == -1 or 1 <= value <= 9:
        return None
    return "value must be between 1 and 9, or -1 for the codec's default"


_VERSION_RE = re.compile(r"\d+\.\d+(\.\d+)?(-IV\d+)?")


def _metadata_version(value: object) -> str | None:
    assert isinstance(value, str)
    return None if _VERSION_RE.fullmatch(value) else "expected a Kafka version such as 3.9 or 3.0-IV1"


def _throttled_replicas(value: object) -> str | None:
    assert isinstance(value, tuple)
    items = [item.strip() for item in value]
    if "".join(items) == "*" or all(re.fullmatch(r"([0-9]+:[0-9]+)?", item) for item in items):
        return None
    return "expected '*' or a list of partition:broker pairs"


def _voters(value: object) -> str | None:
    assert isinstance(value, tuple)
    for item in value:
        try:
            _parse_voter(item)
        except ValueError as e:
            return str(e)
    return None


def _host_ports(value: object) -> str | None:
    assert isinstance(value, tuple)
    for item in value:
        try:
            _parse_host_port(item)
        except ValueError as e:
            return str(e)
    return None


def _listener_list(value: object) -> str | None:
    assert isinstance(value, str)
    for entry in _csv(value):
        try:
            _parse_endpoint(entry)
        except ValueError as e:
            return str(e)
    return None


def _protocol_map(value: object) -> str | None:
    assert isinstance(value, str)
    try:
        _parse_protocol_map(value)
    except ValueError as e:
        return str(e)
    return None


def _per_ip_overrides(value: object) -> str | None:
    assert isinstance(value, str)
    try:
        _parse_per_ip_overrides(value)
    except ValueError as e:
        return str(e)
    return None


def _only_false(value: object) -> str | None:
    return None if value is False else "Trafka has no tiered storage"


def _only_empty(value: object) -> str | None:
    return None if value == "" else "Trafka has no authorizer yet, so none can be named"


def _replica_selector(value: object) -> str | None:
    assert isinstance(value, str)
    return replica_selector_error(value)


def _no_classes(value: object) -> str | None:
    return None if value == () else "Trafka cannot load Java plugins"


# ---------------------------------------------------------------------------------------------
# The tables.


@dataclass(frozen=True, slots=True)
class Synonym:
    """A broker property a topic key inherits its default from; values are multiplied by ``unit_ms``."""

    name: str
    unit_ms: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigKey:
    """One configuration property.

    ``default`` is a parsed value (``None``: no default). ``kafka_default`` is Kafka's default as text
    when Trafka's differs, else ``None``. ``dynamic`` is whether Kafka can change the key at runtime.
    ``note`` says how Trafka treats the key when that is not the obvious (e.g. accepted, no effect).
    ``synonyms`` (topic keys only): the broker properties it inherits from, most specific first.
    """

    name: str
    type: ConfigType
    default: object
    importance: Importance
    doc: str
    validator: Validator | None = None
    dynamic: bool = False
    kafka_default: str | None = None
    note: str = ""
    synonyms: tuple[Synonym, ...] = ()

    @property
    def sensitive(self) -> bool:
        return self.type == ConfigType.PASSWORD


_B = ConfigType.BOOLEAN
_S = ConfigType.STRING
_I = ConfigType.INT
_SH = ConfigType.SHORT
_L = ConfigType.LONG
_D = ConfigType.DOUBLE
_LS = ConfigType.LIST
_P = ConfigType.PASSWORD
_HIGH = Importance.HIGH
_MED = Importance.MEDIUM
_LOW = Importance.LOW

_NO_EFFECT = "Accepted for compatibility; no effect: Trafka runs on one trio event loop, not thread pools."
_COMPAT = "Accepted for compatibility; no effect."
_ZK_ONLY = "Accepted for compatibility; no effect: a ZooKeeper-mode setting."
_NOT_YET = "Not used by Trafka yet."


def _k(
    name: str,
    type_: ConfigType,
    default: object,
    importance: Importance,
    doc: str,
    validator: Validator | None = None,
    *,
    dynamic: bool = False,
    kafka_default: str | None = None,
    note: str = "",
    synonyms: tuple[Synonym, ...] = (),
) -> ConfigKey:
    return ConfigKey(
        name=name,
        type=type_,
        default=default,
        importance=importance,
        doc=doc,
        validator=validator,
        dynamic=dynamic,
        kafka_default=kafka_default,
        note=note,
        synonyms=synonyms,
    )


_AT_LEAST_0 = Range(0)
_AT_LEAST_1 = Range(1)

# Broker keys by section, in the order the reference documents them.
BROKER_SECTIONS: tuple[tuple[str, tuple[ConfigKey, ...]], ...] = (
    ("Node and roles", (
        _k("node.id", _I, 1, _HIGH, "This node's id; unique among the cluster's brokers and controllers.",
           _AT_LEAST_0, kafka_default="-1",
           note="Kafka's -1 means unset, which KRaft refuses; Trafka defaults to 1 so that a single node "
                "starts with no configuration."),
        _k("broker.id", _I, 1, _HIGH, "Older name of node.id. When only one of the two is set the other "
           "takes its value; when both are set they must be equal.", _AT_LEAST_0, kafka_default="-1",
           note="Defaults to node.id's default, 1."),
        _k("process.roles", _LS, ("broker", "controller"), _HIGH, "The roles this node plays: broker, "
           "controller, or both.", EachOneOf(("broker", "controller")), kafka_default='""',
           note="Kafka's empty default means ZooKeeper mode, which Trafka does not have; Trafka's default "
                "is a combined node that is its own controller."),
        _k("broker.rack", _S, None, _MED, "Rack or availability zone of this broker, for rack-aware replica "
           "placement and, with replica.selector.class, for consumers in the same rack to fetch from it."),
        _k("initial.broker.registration.timeout.ms", _I, 60000, _MED, "How long a starting broker waits for "
           "the controller to accept its registration."),
        _k("broker.heartbeat.interval.ms", _I, 2000, _MED, "Time between a broker's heartbeats to the "
           "controller."),
        _k("broker.session.timeout.ms", _I, 9000, _MED, "How long the controller waits for a heartbeat "
           "before it fences a broker."),
        _k("eligible.leader.replicas.enable", _B, True, _HIGH, "Whether the controller keeps eligible "
           "leader replicas (KIP-966).", kafka_default="false",
           note="Kafka 3.7-3.9's switch; Kafka 4 replaced it with the eligible.leader.replicas.version "
                "feature, on for new clusters from 4.1. Here it is the level a new cluster's metadata log "
                "starts with (true: 1, false: 0); an existing cluster keeps the level its log has, which "
                "UpdateFeatures (kafka-features.sh upgrade/downgrade) changes."),
        _k("inter.broker.protocol.version", _S, "3.9-IV0", _MED, "Protocol version brokers speak to one "
           "another.", Check(_metadata_version, "x.y[.z][-IVn]"),
           note="Accepted for compatibility; no effect: in KRaft mode the metadata.version feature decides."),
    )),
    ("Controller quorum", (
        _k("controller.quorum.voters", _LS, (), _HIGH, "Fixed quorum membership as id@host:port entries, "
           "e.g. 1@localhost:9093.", Check(_voters, "id@host:port,...")),
        _k("controller.quorum.bootstrap.servers", _LS, (), _HIGH, "Controller addresses (host:port) used "
           "to discover a dynamic quorum.", Check(_host_ports, "host:port,...")),
        _k("controller.listener.names", _S, "CONTROLLER", _HIGH, "Comma-separated names of the listeners "
           "that serve the controller; they are never advertised to clients.", kafka_default="null",
           note="Trafka names CONTROLLER so that a CONTROLLER:// listener needs no protocol-map entry. "
                "A single node's embedded controller needs no listener at all."),
        _k("controller.quorum.election.timeout.ms", _I, 1000, _HIGH, "How long a voter waits without "
           "hearing from a leader before it starts an election."),
        _k("controller.quorum.fetch.timeout.ms", _I, 2000, _HIGH, "How long a follower waits for a "
           "successful fetch from the leader before it considers the leader gone."),
        _k("controller.quorum.election.backoff.max.ms", _I, 1000, _HIGH, "Upper bound of the randomised "
           "wait before a new election."),
        _k("controller.quorum.append.linger.ms", _I, 25, _MED, "How long the quorum leader gathers writes "
           "before it appends them as one batch."),
        _k("controller.quorum.request.timeout.ms", _I, 2000, _MED, "Deadline of a quorum request before "
           "it is retried."),
        _k("controller.quorum.retry.backoff.ms", _I, 20, _LOW, "Pause before a failed quorum request is "
           "retried."),
        _k("sasl.mechanism.controller.protocol", _S, "GSSAPI", _HIGH, "SASL mechanism used to reach the "
           "controller."),
        _k("metadata.log.dir", _S, None, _HIGH, "Directory of the cluster metadata log; unset means the "
           "first log directory."),
        _k("metadata.log.segment.bytes", _I, 1073741824, _HIGH, "Largest segment of the metadata log.",
           Range(12), note="Kafka also refuses values below its internal metadata.log.segment.min.bytes "
                           "(8 MiB); Trafka takes any value from 12, so tests can use tiny segments."),
        _k("metadata.log.segment.ms", _L, 604800000, _HIGH, "Age at which the metadata log rolls a new "
           "segment."),
        _k("metadata.max.retention.bytes", _L, 104857600, _HIGH, "Size of metadata log and snapshots "
           "kept before old ones are deleted."),
        _k("metadata.max.retention.ms", _L, 604800000, _HIGH, "Age of metadata log segments and snapshots "
           "kept before they are deleted.", note="As in Kafka, the age of a snapshot is that of the last record "
           "it covers, and the newest snapshot and the log after it are always kept."),
        _k("metadata.log.max.record.bytes.between.snapshots", _L, 20971520, _HIGH, "Bytes of new metadata "
           "records after which a snapshot is taken.", _AT_LEAST_1),
        _k("metadata.log.max.snapshot.interval.ms", _L, 3600000, _HIGH, "Longest time between metadata "
           "snapshots when there are new records; 0 disables the time trigger.", _AT_LEAST_0),
        _k("metadata.max.idle.interval.ms", _I, 500, _LOW, "How often an idle quorum leader writes a "
           "no-op record so followers see progress.", _AT_LEAST_0),
    )),
    ("Listeners and connections", (
        _k("listeners", _S, "PLAINTEXT://127.0.0.1:9092", _HIGH, "Addresses to listen on, as comma-separated "
           "NAME://host:port; an empty host means every interface; IPv6 hosts go in brackets.",
           Check(_listener_list, "NAME://host:port,..."), dynamic=True, kafka_default="PLAINTEXT://:9092",
           note="Trafka's default binds the loopback address only, so an embedded broker is not exposed "
                "to the network by accident."),
        _k("advertised.listeners", _S, None, _HIGH, "Addresses given to clients in metadata when they "
           "differ from listeners; unset means listeners. Controller listeners are never advertised.",
           Check(_listener_list, "NAME://host:port,..."), dynamic=True),
        _k("listener.security.protocol.map", _S,
           "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT", _LOW,
           "Security protocol of each listener name, as NAME:PROTOCOL pairs. When it is not set, the "
           "controller listener names map to PLAINTEXT as well (unless SSL or SASL is in use).",
           Check(_protocol_map, "NAME:PROTOCOL,..."), dynamic=True),
        _k("inter.broker.listener.name", _S, None, _MED, "Listener brokers use to reach each other; unset "
           "means the listener named after security.inter.broker.protocol."),
        _k("security.inter.broker.protocol", _S, "PLAINTEXT", _MED, "Security protocol between brokers. "
           "Set this or inter.broker.listener.name, not both.", OneOf(SECURITY_PROTOCOLS)),
        _k("socket.send.buffer.bytes", _I, 102400, _HIGH, "SO_SNDBUF of client connections; -1 keeps the "
           "operating system's default."),
        _k("socket.receive.buffer.bytes", _I, 102400, _HIGH, "SO_RCVBUF of client connections; -1 keeps "
           "the operating system's default."),
        _k("socket.request.max.bytes", _I, 104857600, _HIGH, "Largest request frame accepted; a bigger "
           "frame closes the connection.", _AT_LEAST_1),
        _k("socket.listen.backlog.size", _I, 50, _MED, "Pending-connection queue length of each listening "
           "socket.", _AT_LEAST_1),
        _k("connections.max.idle.ms", _L, 600000, _MED, "Connections idle for longer than this are "
           "closed."),
        _k("connection.failed.authentication.delay.ms", _I, 100, _LOW, "Delay before a connection that "
           "failed authentication is closed.", _AT_LEAST_0),
        _k("max.connections", _I, INT_MAX, _MED, "Most connections the broker holds open at once.",
           _AT_LEAST_0, dynamic=True),
        _k("max.connections.per.ip", _I, INT_MAX, _MED, "Most connections from one IP address; further "
           "ones are dropped.", _AT_LEAST_0, dynamic=True),
        _k("max.connections.per.ip.overrides", _S, "", _MED, "Per-host exceptions to "
           "max.connections.per.ip, as host:limit pairs.", Check(_per_ip_overrides, "host:limit,..."),
           dynamic=True),
        _k("max.connection.creation.rate", _I, INT_MAX, _MED, "Most new connections accepted per second.",
           _AT_LEAST_0, dynamic=True),
        _k("queued.max.requests", _I, 500, _HIGH, "Requests that may wait for processing before the "
           "broker stops reading from connections.", _AT_LEAST_1),
        _k("queued.max.request.bytes", _L, -1, _MED, "Bytes of queued requests before the broker stops "
           "reading; -1 means no limit."),
        _k("request.timeout.ms", _I, 30000, _HIGH, "How long the broker waits for a response to a request "
           "it sends."),
        _k("socket.connection.setup.timeout.ms", _L, 10000, _MED, "Initial deadline for the broker's own "
           "outgoing connections to be established."),
        _k("socket.connection.setup.timeout.max.ms", _L, 30000, _MED, "Upper bound of that deadline as it "
           "backs off."),
        _k("num.network.threads", _I, 3, _HIGH, "Threads that move bytes between sockets and requests.",
           _AT_LEAST_1, dynamic=True, note=_NO_EFFECT),
        _k("num.io.threads", _I, 8, _HIGH, "Threads that process requests.", _AT_LEAST_1, dynamic=True,
           note=_NO_EFFECT),
        _k("background.threads", _I, 10, _HIGH, "Threads for background work.", _AT_LEAST_1, dynamic=True,
           note=_NO_EFFECT),
    )),
    ("Log storage", (
        _k("log.dirs", _S, None, _HIGH, "Comma-separated directories that hold partition data; takes "
           "precedence over log.dir."),
        _k("log.dir", _S, "./trafka-data", _HIGH, "The data directory used when log.dirs is not set.",
           kafka_default="/tmp/kafka-logs",
           note="Trafka's default is relative to the working directory, not shared /tmp."),
        _k("num.partitions", _I, 1, _MED, "Partitions of a topic created without a partition count.",
           _AT_LEAST_1),
        _k("num.recovery.threads.per.data.dir", _I, 1, _HIGH, "Threads per data directory that recover "
           "logs at startup and flush them at shutdown.", _AT_LEAST_1, dynamic=True, note=_NO_EFFECT),
        _k("log.segment.bytes", _I, 1073741824, _HIGH, "Size at which a partition's active segment is "
           "closed and a new one started.", Range(14), dynamic=True),
        _k("log.roll.ms", _L, None, _HIGH, "Age at which the active segment is rolled even if not full; "
           "takes precedence over log.roll.hours.", _AT_LEAST_1, dynamic=True),
        _k("log.roll.hours", _I, 168, _HIGH, "log.roll.ms in hours, used when log.roll.ms is not set.",
           _AT_LEAST_1),
        _k("log.roll.jitter.ms", _L, None, _HIGH, "Largest random amount taken off the roll time, so that "
           "segments do not all roll at once; takes precedence over log.roll.jitter.hours.", _AT_LEAST_0,
           dynamic=True),
        _k("log.roll.jitter.hours", _I, 0, _HIGH, "log.roll.jitter.ms in hours, used when "
           "log.roll.jitter.ms is not set.", _AT_LEAST_0),
        _k("log.retention.ms", _L, None, _HIGH, "Age after which closed segments are deleted; -1 keeps "
           "them forever. Takes precedence over log.retention.minutes and log.retention.hours.",
           dynamic=True),
        _k("log.retention.minutes", _I, None, _HIGH, "log.retention.ms in minutes, used when "
           "log.retention.ms is not set; takes precedence over log.retention.hours."),
        _k("log.retention.hours", _I, 168, _HIGH, "log.retention.ms in hours, used when neither "
           "log.retention.ms nor log.retention.minutes is set."),
        _k("log.retention.bytes", _L, -1, _HIGH, "Size a partition may reach before its oldest segments "
           "are deleted; -1 means no size limit.", dynamic=True),
        _k("log.retention.check.interval.ms", _L, 300000, _MED, "How often the broker looks for segments "
           "to delete.", _AT_LEAST_1),
        _k("log.cleanup.policy", _LS, ("delete",), _MED, "What happens to old segments: delete, compact, "
           "or both.", EachOneOf(("compact", "delete")), dynamic=True),
        _k("log.index.size.max.bytes", _I, 10485760, _MED, "Largest offset or time index file of a "
           "segment; a full index rolls the segment.", Range(4), dynamic=True),
        _k("log.index.interval.bytes", _I, 4096, _MED, "Bytes appended between two offset index entries.",
           _AT_LEAST_0, dynamic=True),
        _k("log.flush.interval.messages", _L, LONG_MAX, _HIGH, "Messages appended to a partition before "
           "it is fsynced; 1 fsyncs every append before acknowledging it.", _AT_LEAST_1, dynamic=True),
        _k("log.flush.interval.ms", _L, None, _HIGH, "Longest time appended data may stay unsynced; "
           "unset means log.flush.scheduler.interval.ms.", _AT_LEAST_0, dynamic=True),
        _k("log.flush.scheduler.interval.ms", _L, LONG_MAX, _HIGH, "How often the flusher checks "
           "whether a log is due for fsync; also the default of log.flush.interval.ms."),
        _k("log.flush.offset.checkpoint.interval.ms", _I, 60000, _HIGH, "How often the recovery-point "
           "checkpoint is written.", _AT_LEAST_0),
        _k("log.flush.start.offset.checkpoint.interval.ms", _I, 60000, _HIGH, "How often the log-start-"
           "offset checkpoint is written.", _AT_LEAST_0),
        _k("log.segment.delete.delay.ms", _L, 60000, _HIGH, "How long a deleted segment's files linger "
           "before they are removed from disk.", _AT_LEAST_0, dynamic=True),
        _k("log.preallocate", _B, False, _MED, "Whether new segment files are preallocated to full size.",
           dynamic=True),
        _k("log.message.timestamp.type", _S, "CreateTime", _MED, "Which timestamp a record keeps: the "
           "producer's (CreateTime) or the broker's append time (LogAppendTime).",
           OneOf(("CreateTime", "LogAppendTime")), dynamic=True),
        _k("log.message.timestamp.before.max.ms", _L, LONG_MAX, _MED, "How far in the past a CreateTime "
           "timestamp may be, relative to the broker's clock, before the batch is rejected.", _AT_LEAST_0,
           dynamic=True),
        _k("log.message.timestamp.after.max.ms", _L, LONG_MAX, _MED, "How far in the future a CreateTime "
           "timestamp may be before the batch is rejected.", _AT_LEAST_0, dynamic=True),
        _k("log.message.timestamp.difference.max.ms", _L, LONG_MAX, _MED, "Deprecated: both timestamp "
           "bounds at once; used for a bound that is left at its default.", _AT_LEAST_0, dynamic=True),
        _k("log.message.format.version", _S, "3.0-IV1", _MED, "Deprecated: the record format written.",
           Check(_metadata_version, "x.y[.z][-IVn]"),
           note=_COMPAT),
        _k("log.message.downconversion.enable", _B, True, _LOW, "Whether fetches by old clients may be "
           "answered by converting batches to an older format.", dynamic=True),
        _k("log.dir.failure.timeout.ms", _L, 30000, _LOW, "How long a broker with a failed log directory "
           "waits for the controller before it shuts down.", _AT_LEAST_1),
        _k("log.local.retention.ms", _L, -2, _MED, "Tiered storage: age of segments kept locally; -2 "
           "means log.retention.ms.", Range(-2), dynamic=True),
        _k("log.local.retention.bytes", _L, -2, _MED, "Tiered storage: size of segments kept locally; -2 "
           "means log.retention.bytes.", Range(-2), dynamic=True),
        _k("remote.log.storage.system.enable", _B, False, _MED, "Whether tiered storage is enabled.",
           Check(_only_false, "false"), note="Trafka has no tiered storage: only false is accepted."),
    )),
    ("Log cleaner", (
        _k("log.cleaner.enable", _B, True, _MED, "Whether compacted topics are cleaned."),
        _k("log.cleaner.threads", _I, 1, _MED, "Threads that compact logs.", _AT_LEAST_0, dynamic=True,
           note=_NO_EFFECT),
        _k("log.cleaner.io.max.bytes.per.second", _D, DOUBLE_MAX, _MED, "Throttle on the cleaner's "
           "combined read and write rate.", dynamic=True),
        _k("log.cleaner.dedupe.buffer.size", _L, 134217728, _MED, "Memory for the cleaner's key map, "
           "across all cleaner threads.", dynamic=True),
        _k("log.cleaner.io.buffer.size", _I, 524288, _MED, "Memory for the cleaner's I/O buffers, across "
           "all cleaner threads.", _AT_LEAST_0, dynamic=True),
        _k("log.cleaner.io.buffer.load.factor", _D, 0.9, _MED, "How full the cleaner's key map may get.",
           dynamic=True),
        _k("log.cleaner.backoff.ms", _L, 15000, _MED, "Pause when there is nothing to clean.",
           _AT_LEAST_0, dynamic=True),
        _k("log.cleaner.min.cleanable.ratio", _D, 0.5, _MED, "Dirty share of a log above which it is "
           "cleaned.", Range(0, 1), dynamic=True),
        _k("log.cleaner.delete.retention.ms", _L, 86400000, _MED, "How long tombstones stay in a "
           "compacted log.", _AT_LEAST_0, dynamic=True),
        _k("log.cleaner.min.compaction.lag.ms", _L, 0, _MED, "Least time a record stays uncompacted.",
           _AT_LEAST_0, dynamic=True),
        _k("log.cleaner.max.compaction.lag.ms", _L, LONG_MAX, _MED, "Most time a record may stay "
           "ineligible for compaction.", _AT_LEAST_1, dynamic=True),
    )),
    ("Topics, replication and fetching", (
        _k("auto.create.topics.enable", _B, True, _HIGH, "Whether metadata requests for an unknown topic "
           "create it with the defaults."),
        _k("delete.topic.enable", _B, True, _HIGH, "Whether topics may be deleted."),
        _k("default.replication.factor", _I, 1, _MED, "Replication factor of topics created without one."),
        _k("min.insync.replicas", _I, 1, _HIGH, "Replicas that must have a write before an acks=all "
           "produce succeeds.", _AT_LEAST_1, dynamic=True),
        _k("message.max.bytes", _I, 1048588, _HIGH, "Largest record batch a topic accepts.", _AT_LEAST_0,
           dynamic=True),
        _k("compression.type", _S, "producer", _HIGH, "Codec batches are stored with; producer keeps "
           "the producer's.", OneOf(COMPRESSION_TYPES), dynamic=True),
        _k("compression.gzip.level", _I, -1, _MED, "Compression level when the broker writes gzip.",
           Check(_gzip_level, "[1,...,9] or -1"), dynamic=True),
        _k("compression.lz4.level", _I, 9, _MED, "Compression level when the broker writes lz4.",
           Range(1, 17), dynamic=True),
        _k("compression.zstd.level", _I, 3, _MED, "Compression level when the broker writes zstd.",
           Range(-131072, 22), dynamic=True),
        _k("unclean.leader.election.enable", _B, False, _HIGH, "Whether a replica outside the ISR may "
           "become leader when no in-sync replica is left, at the risk of losing data.", dynamic=True),
        _k("auto.leader.rebalance.enable", _B, True, _HIGH, "Whether leadership is moved back to "
           "preferred replicas in the background."),
        _k("leader.imbalance.per.broker.percentage", _I, 10, _HIGH, "Share of non-preferred leaders on a "
           "broker that triggers a rebalance."),
        _k("leader.imbalance.check.interval.seconds", _L, 300, _HIGH, "How often leader balance is "
           "checked.", _AT_LEAST_1),
        _k("replica.lag.time.max.ms", _L, 30000, _HIGH, "A follower that has not caught up for this long "
           "is removed from the ISR."),
        _k(REPLICA_SELECTOR_CLASS_KEY, _S, None, _MED, "The replica a partition's leader tells a consumer "
           "to fetch from (KIP-392); unset, consumers fetch from leaders. "
           f"{RACK_AWARE_REPLICA_SELECTOR} names a follower in the consumer's client.rack when there is one "
           "that is in sync and holds the fetch offset.",
           Check(_replica_selector, f"[null, {', '.join(REPLICA_SELECTORS)}]"),
           note="Kafka loads the named Java class; Trafka accepts only the name of Kafka's built-in "
                "rack-aware selector, and refuses any other at startup."),
        _k("replica.fetch.max.bytes", _I, 1048576, _MED, "Bytes a follower asks for per partition.",
           _AT_LEAST_0),
        _k("replica.fetch.response.max.bytes", _I, 10485760, _MED, "Bytes a follower asks for per fetch.",
           _AT_LEAST_0),
        _k("replica.fetch.wait.max.ms", _I, 500, _HIGH, "Longest wait of a follower's fetch for new data; "
           "at most replica.lag.time.max.ms and replica.socket.timeout.ms."),
        _k("replica.fetch.min.bytes", _I, 1, _HIGH, "Bytes a follower's fetch waits for."),
        _k("replica.fetch.backoff.ms", _I, 1000, _MED, "Pause after a follower's fetch fails.",
           _AT_LEAST_0),
        _k("replica.socket.timeout.ms", _I, 30000, _HIGH, "Socket timeout of followers' fetches."),
        _k("replica.socket.receive.buffer.bytes", _I, 65536, _HIGH, "SO_RCVBUF of followers' fetch "
           "connections."),
        _k("replica.high.watermark.checkpoint.interval.ms", _L, 5000, _HIGH, "How often high watermarks "
           "are checkpointed to disk."),
        _k("num.replica.fetchers", _I, 1, _HIGH, "Fetcher threads per source broker.", dynamic=True,
           note=_NO_EFFECT),
        _k("num.replica.alter.log.dirs.threads", _I, None, _HIGH, "Threads that move replicas between "
           "log directories.", note=_NO_EFFECT),
        _k("fetch.max.bytes", _I, 57671680, _MED, "Most bytes the broker returns for one fetch request.",
           Range(1024)),
        _k("max.incremental.fetch.session.cache.slots", _I, 1000, _MED, "Incremental fetch sessions the "
           "broker keeps.", _AT_LEAST_0),
        _k("max.request.partition.size.limit", _I, 2000, _MED, "Most partitions one request may name.",
           _AT_LEAST_1),
        _k("controlled.shutdown.enable", _B, True, _MED, "Whether a broker hands off leadership before "
           "it stops."),
        _k("controlled.shutdown.max.retries", _I, 3, _MED, "Attempts at a controlled shutdown.",
           note=_ZK_ONLY),
        _k("controlled.shutdown.retry.backoff.ms", _L, 5000, _MED, "Pause between controlled-shutdown "
           "attempts.", note=_ZK_ONLY),
        _k("fetch.purgatory.purge.interval.requests", _I, 1000, _MED, "Completed-fetch housekeeping "
           "interval, in requests.", note=_COMPAT),
        _k("producer.purgatory.purge.interval.requests", _I, 1000, _MED, "Completed-produce housekeeping "
           "interval, in requests.", note=_COMPAT),
        _k("delete.records.purgatory.purge.interval.requests", _I, 1, _MED, "Completed-delete-records "
           "housekeeping interval, in requests.", note=_COMPAT),
    )),
    ("Consumer groups and offsets", (
        _k("group.initial.rebalance.delay.ms", _I, 3000, _MED, "How long an empty classic group waits "
           "for more members before its first rebalance."),
        _k("group.min.session.timeout.ms", _I, 6000, _MED, "Smallest session timeout a classic group "
           "member may ask for."),
        _k("group.max.session.timeout.ms", _I, 1800000, _MED, "Largest session timeout a classic group "
           "member may ask for."),
        _k("group.max.size", _I, INT_MAX, _MED, "Most members of one classic group.", _AT_LEAST_1),
        _k("group.coordinator.rebalance.protocols", _LS, ("classic", "consumer"), _MED, "Group protocols "
           "the coordinator serves (both are always served: Kafka 4.0's default).",
           EachOneOf(("classic", "consumer", "share")), kafka_default="classic",
           note="Trafka serves the KIP-848 consumer protocol beside the classic one, as Kafka 4.0 does by "
                "default."),
        _k("group.consumer.assignors", _LS, ("uniform", "range"), _MED, "Server-side assignors of "
           "consumer-protocol groups (short names or Kafka's class names); the first is the default.",
           EachOneOf(("uniform", "range", "org.apache.kafka.coordinator.group.assignor.UniformAssignor",
                      "org.apache.kafka.coordinator.group.assignor.RangeAssignor"))),
        _k("group.consumer.migration.policy", _S, "disabled", _MED, "Whether a group may change between the "
           "classic and consumer protocols while it has members (only disabled is implemented).",
           OneOf(("disabled",))),
        _k("group.consumer.session.timeout.ms", _I, 45000, _MED, "Session timeout of consumer-protocol "
           "group members.", _AT_LEAST_1),
        _k("group.consumer.min.session.timeout.ms", _I, 45000, _MED, "Smallest consumer-protocol session "
           "timeout.", _AT_LEAST_1),
        _k("group.consumer.max.session.timeout.ms", _I, 60000, _MED, "Largest consumer-protocol session "
           "timeout.", _AT_LEAST_1),
        _k("group.consumer.heartbeat.interval.ms", _I, 5000, _MED, "Heartbeat interval given to "
           "consumer-protocol members.", _AT_LEAST_1),
        _k("group.consumer.min.heartbeat.interval.ms", _I, 5000, _MED, "Smallest consumer-protocol "
           "heartbeat interval.", _AT_LEAST_1),
        _k("group.consumer.max.heartbeat.interval.ms", _I, 15000, _MED, "Largest consumer-protocol "
           "heartbeat interval.", _AT_LEAST_1),
        _k("group.consumer.max.size", _I, INT_MAX, _MED, "Most members of one consumer-protocol group.",
           _AT_LEAST_1),
        _k("offset.metadata.max.bytes", _I, 4096, _HIGH, "Largest metadata string stored with a committed "
           "offset."),
        _k("offsets.load.buffer.size", _I, 5242880, _HIGH, "Read size when offsets are loaded into the "
           "coordinator's cache.", _AT_LEAST_1),
        _k("offsets.topic.num.partitions", _I, 50, _HIGH, "Partitions of __consumer_offsets; fixed once "
           "the topic exists.", _AT_LEAST_1),
        _k("offsets.topic.replication.factor", _SH, 1, _HIGH, "Replication factor of __consumer_offsets.",
           _AT_LEAST_1, kafka_default="3",
           note="Trafka's default suits a single node, as Kafka's own sample KRaft configuration does."),
        _k("offsets.topic.segment.bytes", _I, 104857600, _HIGH, "Segment size of __consumer_offsets.",
           _AT_LEAST_1),
        _k("offsets.topic.compression.codec", _I, 0, _HIGH, "Codec of offset commits: 0 none, 1 gzip, "
           "2 snappy, 3 lz4, 4 zstd.", Range(0, 4)),
        _k("offsets.retention.minutes", _I, 10080, _HIGH, "How long an empty group's committed offsets "
           "are kept.", _AT_LEAST_1),
        _k("offsets.retention.check.interval.ms", _L, 600000, _HIGH, "How often expired offsets are "
           "looked for.", _AT_LEAST_1),
        _k("offsets.commit.timeout.ms", _I, 5000, _HIGH, "How long an offset commit waits for its write "
           "to be replicated.", _AT_LEAST_1),
    )),
    ("Transactions and idempotent producers", (
        _k("transaction.state.log.num.partitions", _I, 50, _HIGH, "Partitions of __transaction_state.",
           _AT_LEAST_1),
        _k("transaction.state.log.replication.factor", _SH, 1, _HIGH, "Replication factor of "
           "__transaction_state.", _AT_LEAST_1, kafka_default="3",
           note="Trafka's default suits a single node, as Kafka's own sample KRaft configuration does."),
        _k("transaction.state.log.min.isr", _I, 1, _HIGH, "min.insync.replicas of __transaction_state.",
           _AT_LEAST_1, kafka_default="2",
           note="Trafka's default suits a single node, as Kafka's own sample KRaft configuration does."),
        _k("transaction.state.log.segment.bytes", _I, 104857600, _HIGH, "Segment size of "
           "__transaction_state.", _AT_LEAST_1),
        _k("transaction.state.log.load.buffer.size", _I, 5242880, _HIGH, "Read size when transaction "
           "state is loaded.", _AT_LEAST_1),
        _k("transactional.id.expiration.ms", _I, 604800000, _HIGH, "Idle time after which a transactional "
           "id is forgotten.", _AT_LEAST_1),
        _k("transaction.max.timeout.ms", _I, 900000, _HIGH, "Longest transaction timeout a producer may "
           "ask for.", _AT_LEAST_1),
        _k("transaction.abort.timed.out.transaction.cleanup.interval.ms", _I, 10000, _LOW, "How often "
           "timed-out transactions are looked for and aborted.", _AT_LEAST_1),
        _k("transaction.remove.expired.transaction.cleanup.interval.ms", _I, 3600000, _LOW, "How often "
           "expired transactional ids are removed.", _AT_LEAST_1),
        _k("transaction.partition.verification.enable", _B, True, _LOW, "Whether a transactional write "
           "is checked against the partitions added to its transaction.", dynamic=True),
        _k("producer.id.expiration.ms", _I, 86400000, _LOW, "Idle time after which a partition forgets a "
           "producer id's sequence state.", _AT_LEAST_1, dynamic=True),
    )),
    ("Security", (
        _k("authorizer.class.name", _S, "", _LOW, "The authorizer that enforces ACLs; empty means none.",
           Check(_only_empty, '""'), note="Trafka has no authorizer yet; naming one is refused so that "
                                           "nobody believes ACLs are enforced."),
        _k("sasl.enabled.mechanisms", _LS, ("GSSAPI",), _MED, "SASL mechanisms the broker offers.",
           dynamic=True, note=_NOT_YET),
        _k("sasl.mechanism.inter.broker.protocol", _S, "GSSAPI", _MED, "SASL mechanism between brokers.",
           dynamic=True, note=_NOT_YET),
        _k("sasl.jaas.config", _P, None, _MED, "JAAS login configuration, usually set per listener.",
           dynamic=True, note=_NOT_YET),
        _k("sasl.server.max.receive.size", _I, 524288, _MED, "Largest SASL frame accepted before "
           "authentication.", note=_NOT_YET),
        _k("connections.max.reauth.ms", _L, 0, _MED, "Longest session before a SASL client must "
           "re-authenticate; 0 means never.", note=_NOT_YET),
        _k("ssl.protocol", _S, "TLSv1.3", _MED, "TLS protocol used to build the TLS context.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.enabled.protocols", _LS, ("TLSv1.2", "TLSv1.3"), _MED, "TLS versions accepted.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.cipher.suites", _LS, (), _MED, "Cipher suites accepted; empty means the defaults.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.client.auth", _S, "none", _MED, "Whether clients must present a certificate.",
           OneOf(("required", "requested", "none")), dynamic=True, note=_NOT_YET),
        _k("ssl.endpoint.identification.algorithm", _S, "https", _LOW, "Host-name check on peers' "
           "certificates; empty disables it.", dynamic=True, note=_NOT_YET),
        _k("ssl.keystore.type", _S, "JKS", _MED, "Format of the key store.", dynamic=True, note=_NOT_YET),
        _k("ssl.keystore.location", _S, None, _MED, "Path of the key store.", dynamic=True, note=_NOT_YET),
        _k("ssl.keystore.password", _P, None, _MED, "Password of the key store.", dynamic=True,
           note=_NOT_YET),
        _k("ssl.key.password", _P, None, _MED, "Password of the private key in the key store.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.keystore.key", _P, None, _MED, "PEM private key given inline.", dynamic=True, note=_NOT_YET),
        _k("ssl.keystore.certificate.chain", _P, None, _MED, "PEM certificate chain given inline.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.truststore.type", _S, "JKS", _MED, "Format of the trust store.", dynamic=True,
           note=_NOT_YET),
        _k("ssl.truststore.location", _S, None, _MED, "Path of the trust store.", dynamic=True,
           note=_NOT_YET),
        _k("ssl.truststore.password", _P, None, _MED, "Password of the trust store.", dynamic=True,
           note=_NOT_YET),
        _k("ssl.truststore.certificates", _P, None, _MED, "PEM trusted certificates given inline.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.principal.mapping.rules", _S, "DEFAULT", _LOW, "Rules that turn a certificate's "
           "distinguished name into a principal name.", note=_NOT_YET),
        _k("ssl.keymanager.algorithm", _S, "SunX509", _MED, "Key manager algorithm of the TLS context.",
           dynamic=True, note=_NOT_YET),
        _k("ssl.trustmanager.algorithm", _S, "PKIX", _MED, "Trust manager algorithm of the TLS context.",
           dynamic=True, note=_NOT_YET),
    )),
    ("Metrics and quotas", (
        _k("metric.reporters", _LS, (), _LOW, "Classes that receive the broker's metrics.",
           Check(_no_classes, '""'), dynamic=True,
           note="Trafka cannot load Java plugins: only the empty list is accepted."),
        _k("metrics.num.samples", _I, 2, _LOW, "Samples kept to compute a metric.", _AT_LEAST_1),
        _k("metrics.sample.window.ms", _L, 30000, _LOW, "Time covered by one metric sample.",
           _AT_LEAST_1),
        _k("metrics.recording.level", _S, "INFO", _LOW, "Most detailed level of metrics recorded."),
        _k("quota.window.num", _I, 11, _LOW, "Samples kept to enforce client quotas.", _AT_LEAST_1),
        _k("quota.window.size.seconds", _I, 1, _LOW, "Time covered by one client quota sample.",
           _AT_LEAST_1),
        _k("replication.quota.window.num", _I, 11, _LOW, "Samples kept to enforce replication quotas.",
           _AT_LEAST_1),
        _k("replication.quota.window.size.seconds", _I, 1, _LOW, "Time covered by one replication quota "
           "sample.", _AT_LEAST_1),
    )),
)

BROKER_CONFIGS: Mapping[str, ConfigKey] = MappingProxyType(
    {key.name: key for _, keys in BROKER_SECTIONS for key in keys}
)


def _syn(*names: str | tuple[str, int]) -> tuple[Synonym, ...]:
    return tuple(Synonym(n) if isinstance(n, str) else Synonym(n[0], n[1]) for n in names)


TOPIC_CONFIGS: Mapping[str, ConfigKey] = MappingProxyType({key.name: key for key in (
    _k("cleanup.policy", _LS, ("delete",), _MED, "What happens to old segments: delete, compact, or both.",
       EachOneOf(("compact", "delete")), synonyms=_syn("log.cleanup.policy")),
    _k("compression.type", _S, "producer", _MED, "Codec the topic's batches are stored with; producer "
       "keeps the producer's.", OneOf(COMPRESSION_TYPES), synonyms=_syn("compression.type")),
    _k("compression.gzip.level", _I, -1, _MED, "Level used when the broker writes gzip.",
       Check(_gzip_level, "[1,...,9] or -1"), synonyms=_syn("compression.gzip.level")),
    _k("compression.lz4.level", _I, 9, _MED, "Level used when the broker writes lz4.", Range(1, 17),
       synonyms=_syn("compression.lz4.level")),
    _k("compression.zstd.level", _I, 3, _MED, "Level used when the broker writes zstd.",
       Range(-131072, 22), synonyms=_syn("compression.zstd.level")),
    _k("delete.retention.ms", _L, 86400000, _MED, "How long tombstones stay in a compacted topic.",
       _AT_LEAST_0, synonyms=_syn("log.cleaner.delete.retention.ms")),
    _k("file.delete.delay.ms", _L, 60000, _MED, "How long a deleted segment's files linger on disk.",
       _AT_LEAST_0, synonyms=_syn("log.segment.delete.delay.ms")),
    _k("flush.messages", _L, LONG_MAX, _MED, "Messages appended before the partition is fsynced; 1 "
       "fsyncs every append before acknowledging it.", _AT_LEAST_1,
       synonyms=_syn("log.flush.interval.messages")),
    _k("flush.ms", _L, LONG_MAX, _MED, "Longest time appended data may stay unsynced.", _AT_LEAST_0,
       synonyms=_syn("log.flush.interval.ms", "log.flush.scheduler.interval.ms")),
    _k("follower.replication.throttled.replicas", _LS, (), _MED, "Replicas whose follower fetches are "
       "throttled, as partition:broker pairs or *.", Check(_throttled_replicas, "[partition]:[broker],... "
                                                            "or *")),
    _k("index.interval.bytes", _I, 4096, _MED, "Bytes appended between two offset index entries.",
       _AT_LEAST_0, synonyms=_syn("log.index.interval.bytes")),
    _k("leader.replication.throttled.replicas", _LS, (), _MED, "Replicas whose leader-side replication "
       "is throttled, as partition:broker pairs or *.", Check(_throttled_replicas, "[partition]:[broker]"
                                                               ",... or *")),
    _k("local.retention.bytes", _L, -2, _MED, "Tiered storage: local size kept; -2 means retention.bytes.",
       Range(-2), synonyms=_syn("log.local.retention.bytes")),
    _k("local.retention.ms", _L, -2, _MED, "Tiered storage: local age kept; -2 means retention.ms.",
       Range(-2), synonyms=_syn("log.local.retention.ms")),
    _k("max.compaction.lag.ms", _L, LONG_MAX, _MED, "Most time a record may stay ineligible for "
       "compaction.", _AT_LEAST_1, synonyms=_syn("log.cleaner.max.compaction.lag.ms")),
    _k("max.message.bytes", _I, 1048588, _MED, "Largest record batch the topic accepts.", _AT_LEAST_0,
       synonyms=_syn("message.max.bytes")),
    _k("message.downconversion.enable", _B, True, _LOW, "Whether old clients' fetches may be answered "
       "by converting batches to an older format.", synonyms=_syn("log.message.downconversion.enable")),
    _k("message.format.version", _S, "3.0-IV1", _MED, "Deprecated: the record format written.",
       Check(_metadata_version, "x.y[.z][-IVn]"), synonyms=_syn("log.message.format.version"),
       note=_COMPAT),
    _k("message.timestamp.after.max.ms", _L, LONG_MAX, _MED, "How far in the future a CreateTime "
       "timestamp may be before the batch is rejected.", _AT_LEAST_0,
       synonyms=_syn("log.message.timestamp.after.max.ms")),
    _k("message.timestamp.before.max.ms", _L, LONG_MAX, _MED, "How far in the past a CreateTime "
       "timestamp may be before the batch is rejected.", _AT_LEAST_0,
       synonyms=_syn("log.message.timestamp.before.max.ms")),
    _k("message.timestamp.difference.max.ms", _L, LONG_MAX, _MED, "Deprecated: both timestamp bounds at "
       "once; used for a bound left at its default.", _AT_LEAST_0,
       synonyms=_syn("log.message.timestamp.difference.max.ms")),
    _k("message.timestamp.type", _S, "CreateTime", _MED, "Which timestamp a record keeps: the "
       "producer's (CreateTime) or the broker's append time (LogAppendTime).",
       OneOf(("CreateTime", "LogAppendTime")), synonyms=_syn("log.message.timestamp.type")),
    _k("min.cleanable.dirty.ratio", _D, 0.5, _MED, "Dirty share of the log above which it is cleaned.",
       Range(0, 1), synonyms=_syn("log.cleaner.min.cleanable.ratio")),
    _k("min.compaction.lag.ms", _L, 0, _MED, "Least time a record stays uncompacted.", _AT_LEAST_0,
       synonyms=_syn("log.cleaner.min.compaction.lag.ms")),
    _k("min.insync.replicas", _I, 1, _MED, "Replicas that must have a write before an acks=all produce "
       "succeeds.", _AT_LEAST_1, synonyms=_syn("min.insync.replicas")),
    _k("preallocate", _B, False, _MED, "Whether new segment files are preallocated to full size.",
       synonyms=_syn("log.preallocate")),
    _k("remote.log.copy.disable", _B, False, _MED, "Tiered storage: stop copying segments to remote "
       "storage."),
    _k("remote.log.delete.on.disable", _B, False, _MED, "Tiered storage: delete remote data when tiering "
       "is turned off."),
    _k("remote.storage.enable", _B, False, _MED, "Whether the topic uses tiered storage.",
       Check(_only_false, "false"), note="Trafka has no tiered storage: only false is accepted."),
    _k("retention.bytes", _L, -1, _MED, "Size a partition may reach before its oldest segments are "
       "deleted; -1 means no limit.", synonyms=_syn("log.retention.bytes")),
    _k("retention.ms", _L, 604800000, _MED, "Age after which closed segments are deleted; -1 keeps them "
       "forever.", Range(-1), synonyms=_syn("log.retention.ms", ("log.retention.minutes", MINUTE_MS),
                                           ("log.retention.hours", HOUR_MS))),
    _k("segment.bytes", _I, 1073741824, _MED, "Size at which the active segment is closed.", Range(14),
       synonyms=_syn("log.segment.bytes")),
    _k("segment.index.bytes", _I, 10485760, _MED, "Largest index file of a segment.", Range(4),
       synonyms=_syn("log.index.size.max.bytes")),
    _k("segment.jitter.ms", _L, 0, _MED, "Largest random amount taken off the roll time.", _AT_LEAST_0,
       synonyms=_syn("log.roll.jitter.ms", ("log.roll.jitter.hours", HOUR_MS))),
    _k("segment.ms", _L, 604800000, _MED, "Age at which the active segment is rolled even if not full.",
       _AT_LEAST_1, synonyms=_syn("log.roll.ms", ("log.roll.hours", HOUR_MS))),
    _k("unclean.leader.election.enable", _B, False, _MED, "Whether a replica outside the ISR may become "
       "leader when no in-sync replica is left, at the risk of losing data.",
       synonyms=_syn("unclean.leader.election.enable")),
)})

# Kafka's broker-side synonym groups (DynamicBrokerConfig.brokerConfigSynonyms), most specific first.
_BROKER_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
)

# Keys Kafka knows that Trafka refuses, with the reason.
_UNSUPPORTED: Mapping[str, str] = MappingProxyType({
    "control.plane.listener.name": "it is a ZooKeeper-mode setting and Trafka runs only in KRaft mode",
    "broker.id.generation.enable": "it is a ZooKeeper-mode setting and Trafka runs only in KRaft mode",
    "reserved.broker.max.id": "it is a ZooKeeper-mode setting and Trafka runs only in KRaft mode",
})

_LISTENER_PREFIX_RE = re.compile(r"listener\.name\.([^.]+)\.(.+)")
# Settings Kafka lets a listener prefix with a SASL mechanism: listener.name.<l>.<mechanism>.<key>.
_MECHANISM_KEYS = ("sasl.jaas.config", "connections.max.reauth.ms")


# ---------------------------------------------------------------------------------------------
# Values: parsing text into typed values and back, as Kafka's ConfigDef does.


class _BadValue(Exception):
    pass


_INT_RE = re.compile(r"[+-]?[0-9]+")
_DOUBLE_RE = re.compile(r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[fFdD]?")


def _csv(text: str) -> list[str]:
    """Kafka's Csv.parseCsvList: comma-separated, each item trimmed, empty input is no items."""
    text = text.strip()
    return [] if not text else [item.strip() for item in text.split(",")]


def parse_value(key: ConfigKey, text: str, name: str | None = None) -> object:
    """The typed value of ``text`` for ``key``; raises ``ConfigError`` naming the key on a bad value.

    ``name`` is the property as written when it differs from ``key.name`` (a listener-prefixed key).
    """
    name = name or key.name
    try:
        value = _parse_typed(key.type, text)
        reason = key.validator.check(value) if key.validator is not None and value is not None else None
    except _BadValue as e:
        reason = str(e)
    if reason is not None:
        raise ConfigError(f"invalid value {text!r} for configuration {name}: {reason}", key=name)
    return value


def _parse_typed(type_: ConfigType, text: str) -> object:
    trimmed = text.strip()
    if type_ == ConfigType.BOOLEAN:
        if trimmed.lower() == "true":
            return True
        if trimmed.lower() == "false":
            return False
        raise _BadValue("expected true or false")
    if type_ in (ConfigType.INT, ConfigType.LONG, ConfigType.SHORT):
        if not _INT_RE.fullmatch(trimmed):
            raise _BadValue("not a number" if trimmed else "a number is required")
        value = int(trimmed)
        low, high = {
            ConfigType.INT: (INT_MIN, INT_MAX),
            ConfigType.LONG: (LONG_MIN, LONG_MAX),
            ConfigType.SHORT: (SHORT_MIN, SHORT_MAX),
        }[type_]
        if not low <= value <= high:
            raise _BadValue(f"out of range for a {type_.name.lower()} ({low} to {high})")
        return value
    if type_ == ConfigType.DOUBLE:
        if not _DOUBLE_RE.fullmatch(trimmed):
            raise _BadValue("not a number")
        return float(trimmed.rstrip("fFdD"))
    if type_ == ConfigType.LIST:
        return tuple(re.split(r"\s*,\s*", trimmed)) if trimmed else ()
    if type_ == ConfigType.PASSWORD:
        return Secret(trimmed)
    return trimmed


def _java_double(value: float) -> str:
    """``value`` as Java's Double.toString writes it (Kafka's DescribeConfigs text for doubles)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + exponent
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{power}"


def value_text(type_: ConfigType, value: object) -> str | None:
    """The canonical text of a parsed value (Kafka's ConfigDef.convertToString); passwords in clear."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return _java_double(value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# Java .properties files.


def _unescape(text: str, where: str) -> str:
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        if i >= n:
            break  # a lone trailing backslash escapes nothing
        c = text[i]
        i += 1
        if c == "u":
            digits = text[i:i + 4]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ConfigError(f"{where}: malformed \\uXXXX escape")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(c, c))
    result = "".join(out)
    if any("\ud800" <= ch <= "\udfff" for ch in result):
        # \uD83D\uDE00 names one character as a UTF-16 surrogate pair, as in Java.
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return result


def _split_key_value(line: str) -> tuple[str, str]:
    """Split a logical line at the first unescaped '=', ':' or whitespace (Java's rules)."""
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            break
        i += 1
    key = line[:i]
    if i < n and line[i] in " \t\f":
        while i < n and line[i] in " \t\f":
            i += 1
        if i < n and line[i] in "=:":
            i += 1
    elif i < n:
        i += 1  # the '=' or ':' itself
    while i < n and line[i] in " \t\f":
        i += 1
    return key, line[i:]


def _odd_trailing_backslashes(line: str) -> bool:
    return (len(line) - len(line.rstrip("\\"))) % 2 == 1


def parse_properties(text: str, source: str = "<properties>") -> list[tuple[str, str, int]]:
    """The ``(key, value, line)`` entries of Java ``.properties`` text, in order.

    Follows ``java.util.Properties.load``: ``#`` and ``!`` comment lines, ``key=value``, ``key: value``
    and ``key value``, a line ending in an odd number of backslashes continues on the next (whose
    leading whitespace is dropped), and the escapes ``\\t \\n \\r \\f \\uXXXX`` (any other escaped
    character stands for itself). ``line`` is where the entry starts.
    """
    lines = re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))
    entries: list[tuple[str, str, int]] = []
    i = 0
    while i < len(lines):
        start = i + 1
        logical = lines[i].lstrip(" \t\f")
        i += 1
        if not logical or logical[0] in "#!":
            continue
        while _odd_trailing_backslashes(logical):
            logical = logical[:-1]
            if i >= len(lines):
                break
            logical += lines[i].lstrip(" \t\f")
            i += 1
        key, value = _split_key_value(logical)
        where = f"{source}:{start}"
        entries.append((_unescape(key, where), _unescape(value, where), start))
    return entries


# ---------------------------------------------------------------------------------------------
# Listeners and other structured values.


@dataclass(frozen=True, slots=True)
class Listener:
    """One endpoint: ``name`` upper-cased, ``host`` empty for every interface, IPv6 without brackets."""

    name: str
    host: str
    port: int
    security_protocol: str

    @property
    def address(self) -> str:
        """``host:port``, with brackets around an IPv6 host."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.name}://{self.address}"


@dataclass(frozen=True, slots=True)
class QuorumVoter:
    node_id: int
    host: str
    port: int


_HOST_RE = re.compile(r"[0-9a-zA-Z\-%._:]*")


def _parse_port(text: str, entry: str) -> int:
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"bad port in {entry!r}")
    port = int(text)
    if port > 65535:
        raise ValueError(f"port out of range in {entry!r}")
    return port


def _parse_endpoint(entry: str) -> tuple[str, str, int]:
    """``NAME://host:port`` -> (upper-cased name, host, port), as Kafka's listener parser reads it."""
    name, sep, rest = entry.partition("://")
    if not sep or not name:
        raise ValueError(f"cannot parse {entry!r} as NAME://host:port")
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(f"cannot parse {entry!r} as NAME://[ipv6]:port")
        port_text = port_text[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise ValueError(f"cannot parse {entry!r} as NAME://host:port")
    if not _HOST_RE.fullmatch(host):
        raise ValueError(f"bad host in {entry!r}")
    return name.upper(), host, _parse_port(port_text, entry)


def _parse_host_port(entry: str) -> tuple[str, int]:
    entry = entry.strip()
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"cannot parse {entry!r} as host:port")
        port_text = rest[1:]
    else:
        host, colon, port_text = entry.rpartition(":")
        if not colon:
            raise ValueError(f"cannot parse {entry!r} as host:port")
    if not host or not _HOST_RE.fullmatch(host):
        raise ValueError(f"bad host in {entry!r}")
    return host, _parse_port(port_text, entry)


def _parse_voter(entry: str) -> QuorumVoter:
    node, at, address = entry.strip().partition("@")
    try:
        if not at or not re.fullmatch(r"[0-9]+", node):
            raise ValueError
        host, port = _parse_host_port(address)
    except ValueError:
        raise ValueError(f"cannot parse {entry!r} as id@host:port") from None
    return QuorumVoter(node_id=int(node), host=host, port=port)


def _parse_protocol_map(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in _csv(text):
        name, colon, protocol = item.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not colon or not name:
            raise ValueError(f"cannot parse {item!r} as NAME:PROTOCOL")
        if protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"unknown security protocol {protocol!r} for listener {name}")
        if name in result:
            raise ValueError(f"listener {name} appears twice")
        result[name] = protocol
    return result


def _parse_per_ip_overrides(text: str) -> dict[str, int]:
    result: dict[str, int] = {}
    for item in _csv(text):
        host, colon, limit = item.rpartition(":")
        if not colon or not host.strip() or not re.fullmatch(r"[0-9]+", limit.strip()):
            raise ValueError(f"cannot parse {item!r} as host:limit")
        result[host.strip()] = int(limit.strip())
    return result


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _check_distinct(listeners: Sequence[Listener], key: str) -> None:
    names = [listener.name for listener in listeners]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{key}: each listener must have a different name, {name} appears twice",
                              key=key)
    by_port: dict[int, list[Listener]] = {}
    for listener in listeners:
        if listener.port != 0:  # port 0 (pick a free port) may repeat
            by_port.setdefault(listener.port, []).append(listener)
    for port, group in by_port.items():
        if len(group) == 1:
            continue
        versions = sorted(str(_ip_version(listener.host)) for listener in group)
        if versions != ["4", "6"]:
            raise ConfigError(
                f"{key}: each listener must have a different port unless exactly two share it, one on an "
                f"IPv4 address and one on an IPv6 address (port {port})",
                key=key,
            )


# ---------------------------------------------------------------------------------------------
# The broker configuration.


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """The validated broker configuration. Immutable: a change of configuration is a new object.

    Typed fields carry what the broker's subsystems read. A field named after a Kafka key (dots become
    underscores: ``socket.request.max.bytes`` is ``socket_request_max_bytes``) holds that key's
    effective value, parsed; the others (``listeners``, ``log_defaults``...) are derived, as their
    comments say. ``get`` and its typed variants reach every key.

    ``values`` maps every key of ``BROKER_CONFIGS`` (and any ``listener.name.*`` key that was set) to
    its parsed value, ``None`` when unset with no default; passwords are ``Secret``.
    ``explicit`` is the set of keys given in the file or overrides (DescribeConfigs'
    STATIC_BROKER_CONFIG); setting one of node.id and broker.id counts for both, as in Kafka.
    """

    node_id: int
    process_roles: tuple[str, ...]
    listeners: tuple[Listener, ...]  # every listener, controller listeners included
    advertised_listeners: tuple[Listener, ...]  # what clients are told: advertised.listeners or
    # listeners, less the controller listeners
    controller_listener_names: tuple[str, ...]
    inter_broker_listener_name: str
    listener_security_protocol_map: Mapping[str, str]
    controller_quorum_voters: tuple[QuorumVoter, ...]
    controller_quorum_bootstrap_servers: tuple[tuple[str, int], ...]
    broker_rack: str | None
    log_dirs: tuple[str, ...]
    metadata_log_dir: str  # metadata.log.dir, else the first log directory
    log_defaults: LogConfig  # what a topic without overrides obeys: log_config(cfg, {})
    num_partitions: int
    default_replication_factor: int
    min_insync_replicas: int
    auto_create_topics_enable: bool
    delete_topic_enable: bool
    unclean_leader_election_enable: bool
    compression_type: str
    message_max_bytes: int
    socket_request_max_bytes: int
    socket_send_buffer_bytes: int
    socket_receive_buffer_bytes: int
    socket_listen_backlog_size: int
    connections_max_idle_ms: int
    max_connections: int
    max_connections_per_ip: int
    max_connections_per_ip_overrides: Mapping[str, int]
    queued_max_requests: int
    queued_max_request_bytes: int  # -1: no limit
    request_timeout_ms: int
    fetch_max_bytes: int
    max_incremental_fetch_session_cache_slots: int
    max_request_partition_size_limit: int
    replica_lag_time_max_ms: int
    group_initial_rebalance_delay_ms: int
    group_min_session_timeout_ms: int
    group_max_session_timeout_ms: int
    group_max_size: int
    offset_metadata_max_bytes: int
    offsets_topic_num_partitions: int
    offsets_topic_replication_factor: int
    offsets_topic_segment_bytes: int
    offsets_retention_minutes: int
    offsets_retention_check_interval_ms: int
    offsets_commit_timeout_ms: int
    transaction_state_log_num_partitions: int
    transaction_state_log_replication_factor: int
    transaction_state_log_min_isr: int
    transaction_state_log_segment_bytes: int
    transactional_id_expiration_ms: int
    transaction_max_timeout_ms: int
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int
    transaction_remove_expired_transaction_cleanup_interval_ms: int
    producer_id_expiration_ms: int
    values: Mapping[str, object] = field(repr=False)
    explicit: frozenset[str] = field(repr=False)

    @property
    def offsets_retention_ms(self) -> int:
        return self.offsets_retention_minutes * MINUTE_MS

    def log_dir_config(self) -> LogDirConfig:
        """The periods of the log manager's background work."""
        return LogDirConfig.from_broker_properties({
            name: self.get_int(name) for name in (
                "log.retention.check.interval.ms",
                "log.flush.scheduler.interval.ms",
                "log.flush.offset.checkpoint.interval.ms",
                "log.flush.start.offset.checkpoint.interval.ms",
            )
        })

    @property
    def controller_listeners(self) -> tuple[Listener, ...]:
        return tuple(x for x in self.listeners if x.name in self.controller_listener_names)

    @property
    def broker_listeners(self) -> tuple[Listener, ...]:
        """The listeners clients connect to: every listener but the controller's."""
        return tuple(x for x in self.listeners if x.name not in self.controller_listener_names)

    def is_set(self, name: str) -> bool:
        return name in self.explicit

    def get(self, name: str) -> object:
        """The parsed value of any broker key (``KeyError`` for a key Trafka does not know)."""
        return self.values[name]

    def get_int(self, name: str) -> int:
        value = self.values[name]
        assert isinstance(value, int) and not isinstance(value, bool), name
        return value

    def get_bool(self, name: str) -> bool:
        value = self.values[name]
        assert isinstance(value, bool), name
        return value

    def get_str(self, name: str) -> str | None:
        value = self.values[name]
        assert value is None or isinstance(value, str), name
        return value

    def get_list(self, name: str) -> tuple[str, ...]:
        value = self.values[name]
        assert isinstance(value, tuple), name
        return value

    def get_float(self, name: str) -> float:
        value = self.values[name]
        assert isinstance(value, float), name
        return value

    def listener_value(self, listener_name: str, name: str) -> object:
        """``listener.name.<listener>.<name>`` if set, else the broker-wide ``name``."""
        prefixed = f"listener.name.{listener_name.lower()}.{name}"
        return self.values[prefixed] if prefixed in self.values else self.values[name]


def _at(where: str | None, message: str) -> str:
    return f"{where}: {message}" if where else message


def _lookup(key: str, where: str | None = None) -> ConfigKey:
    """The table entry for ``key`` (a listener-prefixed key resolves to its base key)."""
    spec = BROKER_CONFIGS.get(key)
    if spec is not None:
        return spec
    match = _LISTENER_PREFIX_RE.fullmatch(key)
    if match:
        base = match.group(2)
        if base in BROKER_CONFIGS:
            return BROKER_CONFIGS[base]
        mechanism, _, rest = base.partition(".")
        if mechanism and rest in _MECHANISM_KEYS:
            return BROKER_CONFIGS[rest]
        raise ConfigError(_at(where, f"unknown configuration {base!r} in listener-prefixed key {key!r}"),
                          key=key)
    raise ConfigError(_at(where, _unknown_key_message(key)), key=key)


def _unknown_key_message(key: str) -> str:
    if key in _UNSUPPORTED:
        return f"Trafka does not support {key}: {_UNSUPPORTED[key]}"
    if key.startswith("zookeeper."):
        return f"Trafka does not support {key}: Trafka runs only in KRaft mode and has no ZooKeeper"
    if key in TOPIC_CONFIGS:
        synonyms = TOPIC_CONFIGS[key].synonyms
        if synonyms:
            return (f"{key} is a topic-level configuration; the broker-wide default is "
                    f"{synonyms[0].name}")
        return f"{key} is a topic-level configuration with no broker-wide default"
    if key.endswith((".class", ".class.name", ".classes", ".reporters")):
        return f"Trafka does not support {key}: it names a Java class, and Trafka cannot load Java plugins"
    close = difflib.get_close_matches(key, list(BROKER_CONFIGS), n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"unknown configuration {key!r}{hint}"


def from_properties(props: Mapping[str, str], *, origins: Mapping[str, str] | None = None) -> BrokerConfig:
    """A ``BrokerConfig`` from raw property text; ``origins`` names where each key came from, for errors."""
    origins = origins or {}
    values: dict[str, object] = {key.name: key.default for key in BROKER_CONFIGS.values()}
    explicit: set[str] = set()
    for key, raw in props.items():
        where = origins.get(key)
        spec = _lookup(key, where)
        try:
            values[key] = parse_value(spec, raw, key)
        except ConfigError as e:
            raise ConfigError(_at(where, str(e)), key=key) from None
        explicit.add(key)
    return _build(values, explicit, origins)


def load(path: str | None, overrides: Sequence[str] = ()) -> BrokerConfig:
    """The configuration from a ``.properties`` file (optional) and ``key=value`` overrides.

    Overrides win over the file and later entries over earlier ones. The file is read as UTF-8 (Java
    reads ISO-8859-1; the two agree on ASCII and on ``\\uXXXX`` escapes), falling back to ISO-8859-1.
    """
    props: dict[str, str] = {}
    origins: dict[str, str] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read configuration file {path}: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        for key, value, line in parse_properties(text, path):
            props[key] = value
            origins[key] = f"{path}:{line}"
    for override in overrides:
        key, eq, value = override.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--override expects key=value, got {override!r}")
        props[key] = value
        origins[key] = f"--override {key}"
    return from_properties(props, origins=origins)


def _build(values: dict[str, object], explicit: set[str], origins: Mapping[str, str]) -> BrokerConfig:
    def _fail(message: str, key: str) -> ConfigError:
        return ConfigError(_at(origins.get(key), message), key=key)

    def get_int(name: str) -> int:
        value = values[name]
        assert isinstance(value, int)
        return value

    def get_bool(name: str) -> bool:
        value = values[name]
        assert isinstance(value, bool)
        return value

    def get_str(name: str) -> str | None:
        value = values[name]
        assert value is None or isinstance(value, str)
        return value

    def get_list(name: str) -> tuple[str, ...]:
        value = values[name]
        assert isinstance(value, tuple)
        return value

    # node.id and broker.id are one setting (Kafka copies whichever is set into the other).
    if "node.id" in explicit and "broker.id" in explicit:
        if values["node.id"] != values["broker.id"]:
            raise _fail(f"node.id ({values['node.id']}) and broker.id ({values['broker.id']}) must be "
                        "equal; set only node.id", "node.id")
    elif "broker.id" in explicit:
        values["node.id"] = values["broker.id"]
        explicit.add("node.id")
    elif "node.id" in explicit:
        values["broker.id"] = values["node.id"]
        explicit.add("broker.id")
    node_id = get_int("node.id")

    roles = get_list("process.roles")
    if not roles:
        raise _fail("process.roles must name broker, controller or both: Trafka has no ZooKeeper mode",
                    "process.roles")

    # Listeners.
    controller_names = tuple(name.upper() for name in _csv(get_str("controller.listener.names") or ""))
    protocol_text = get_str("listener.security.protocol.map")
    assert protocol_text is not None
    protocol_map = _parse_protocol_map(protocol_text)
    listeners_text = get_str("listeners") or ""
    if "listener.security.protocol.map" not in explicit:
        # As in Kafka's KRaft mode: with the default map, controller listeners speak PLAINTEXT unless
        # SSL or SASL is in use among them or the listeners.
        secure = {"SSL", "SASL_SSL", "SASL_PLAINTEXT"}
        in_use = set(controller_names) | {entry.partition(":")[0].upper() for entry in _csv(listeners_text)}
        if not in_use & secure:
            for name in controller_names:
                protocol_map.setdefault(name, "PLAINTEXT")

    def endpoints(key: str, text: str) -> tuple[Listener, ...]:
        result = []
        for entry in _csv(text):
            name, host, port = _parse_endpoint(entry)
            protocol = protocol_map.get(name)
            if protocol is None:
                raise _fail(f"{key}: no security protocol for listener {name}; add it to "
                            "listener.security.protocol.map", key)
            result.append(Listener(name=name, host=host, port=port, security_protocol=protocol))
        return tuple(result)

    listeners = endpoints("listeners", listeners_text)
    try:
        _check_distinct(listeners, "listeners")
    except ConfigError as e:
        raise _fail(str(e), "listeners") from None
    advertised_text = get_str("advertised.listeners")
    if advertised_text is not None:
        advertised_all = endpoints("advertised.listeners", advertised_text)
        names = [listener.name for listener in advertised_all]
        if len(set(names)) != len(names):
            raise _fail("advertised.listeners: each listener must have a different name",
                        "advertised.listeners")
    else:
        advertised_all = listeners
    advertised = tuple(x for x in advertised_all if x.name not in controller_names)
    for listener in advertised_all:
        if listener.host in ("0.0.0.0", "::"):
            raise _fail(f"advertised.listeners: {listener} is the non-routable wildcard address; "
                        "advertise a routable host", "advertised.listeners")
    listener_names = {listener.name for listener in listeners}
    if roles == ("broker",):
        # A broker-only node dials the controller, so it must know the protocol (a controller listener
        # among listeners already needed one).
        for name in controller_names:
            if name not in protocol_map:
                raise _fail(f"controller.listener.names: listener {name} is not in "
                            "listener.security.protocol.map", "controller.listener.names")

    # The inter-broker listener: named, or derived from security.inter.broker.protocol.
    if "inter.broker.listener.name" in explicit and "security.inter.broker.protocol" in explicit:
        raise _fail("set only one of inter.broker.listener.name and security.inter.broker.protocol",
                    "inter.broker.listener.name")
    named = get_str("inter.broker.listener.name")
    inter_broker = named.upper() if named else get_str("security.inter.broker.protocol") or "PLAINTEXT"
    if named and inter_broker not in protocol_map:
        raise _fail(f"inter.broker.listener.name: listener {inter_broker} is not in "
                    "listener.security.protocol.map", "inter.broker.listener.name")
    if "broker" in roles:
        if not advertised:
            raise _fail("there must be at least one broker listener that is not a controller listener",
                        "listeners")
        advertised_names = {listener.name for listener in advertised}
        if inter_broker not in advertised_names:
            raise _fail(f"inter.broker.listener.name must be an advertised broker listener "
                        f"({', '.join(sorted(advertised_names))}), not {inter_broker}",
                        "inter.broker.listener.name")
        if not advertised_names <= listener_names:
            raise _fail("advertised.listeners may only name listeners that are in listeners",
                        "advertised.listeners")

    # The quorum. A single node is its own controller and needs neither voters nor a controller listener.
    voters = tuple(_parse_voter(entry) for entry in get_list("controller.quorum.voters"))
    bootstrap = tuple(_parse_host_port(entry) for entry in get_list("controller.quorum.bootstrap.servers"))
    voter_ids = [voter.node_id for voter in voters]
    if len(set(voter_ids)) != len(voter_ids):
        raise _fail("controller.quorum.voters: a node id appears twice", "controller.quorum.voters")
    if "controller" in roles and voters and node_id not in voter_ids:
        raise _fail(f"controller.quorum.voters must include this node (node.id {node_id}) when "
                    "process.roles includes controller", "controller.quorum.voters")
    if roles == ("broker",):
        if not voters and not bootstrap:
            raise _fail("a broker-only node needs controller.quorum.voters or "
                        "controller.quorum.bootstrap.servers", "process.roles")
        if node_id in voter_ids:
            raise _fail(f"node {node_id} is broker-only and must not be in controller.quorum.voters",
                        "controller.quorum.voters")

    # Log directories: log.dirs wins over log.dir.
    log_dirs_text = get_str("log.dirs")
    log_dir_key = "log.dirs" if log_dirs_text is not None else "log.dir"
    log_dirs_value = log_dirs_text if log_dirs_text is not None else get_str("log.dir") or ""
    log_dirs = tuple(item for item in _csv(log_dirs_value) if item)
    if not log_dirs:
        raise _fail(f"{log_dir_key}: at least one log directory is required", log_dir_key)

    # Retention and roll, after Kafka's precedence rules.
    topic_defaults = _topic_defaults(values)
    retention_ms = topic_defaults["retention.ms"]
    if retention_ms == 0:
        raise _fail("log.retention.ms must be -1 (unlimited) or at least 1", "log.retention.ms")
    for name in ("replica.socket.timeout.ms", "replica.lag.time.max.ms"):
        if get_int("replica.fetch.wait.max.ms") > get_int(name):
            raise _fail(f"replica.fetch.wait.max.ms must not exceed {name}", "replica.fetch.wait.max.ms")

    for topic_key in _LOG_CONFIG_KEYS:
        # The storage engine may be stricter than Kafka; blame the broker key the value came from.
        value = topic_defaults[topic_key]
        assert isinstance(value, int | str)
        try:
            LogConfig().with_overrides({topic_key: value})
        except ValueError as e:
            synonyms = TOPIC_CONFIGS[topic_key].synonyms
            source = next((s.name for s in synonyms if values.get(s.name) is not None), topic_key)
            raise _fail(f"{source} is refused by the storage engine: {e}", source) from None
    log_defaults = _log_config_from_topic_values(topic_defaults)

    overrides_text = get_str("max.connections.per.ip.overrides") or ""
    return BrokerConfig(
        node_id=node_id,
        process_roles=roles,
        listeners=listeners,
        advertised_listeners=advertised,
        controller_listener_names=controller_names,
        inter_broker_listener_name=inter_broker,
        listener_security_protocol_map=MappingProxyType(protocol_map),
        controller_quorum_voters=voters,
        controller_quorum_bootstrap_servers=bootstrap,
        broker_rack=get_str("broker.rack"),
        log_dirs=log_dirs,
        metadata_log_dir=get_str("metadata.log.dir") or log_dirs[0],
        log_defaults=log_defaults,
        num_partitions=get_int("num.partitions"),
        default_replication_factor=get_int("default.replication.factor"),
        min_insync_replicas=get_int("min.insync.replicas"),
        auto_create_topics_enable=get_bool("auto.create.topics.enable"),
        delete_topic_enable=get_bool("delete.topic.enable"),
        unclean_leader_election_enable=get_bool("unclean.leader.election.enable"),
        compression_type=get_str("compression.type") or "producer",
        message_max_bytes=get_int("message.max.bytes"),
        socket_request_max_bytes=get_int("socket.request.max.bytes"),
        socket_send_buffer_bytes=get_int("socket.send.buffer.bytes"),
        socket_receive_buffer_bytes=get_int("socket.receive.buffer.bytes"),
        socket_listen_backlog_size=get_int("socket.listen.backlog.size"),
        connections_max_idle_ms=get_int("connections.max.idle.ms"),
        max_connections=get_int("max.connections"),
        max_connections_per_ip=get_int("max.connections.per.ip"),
        max_connections_per_ip_overrides=MappingProxyType(_parse_per_ip_overrides(overrides_text)),
        queued_max_requests=get_int("queued.max.requests"),
        queued_max_request_bytes=get_int("queued.max.request.bytes"),
        request_timeout_ms=get_int("request.timeout.ms"),
        fetch_max_bytes=get_int("fetch.max.bytes"),
        max_incremental_fetch_session_cache_slots=get_int("max.incremental.fetch.session.cache.slots"),
        max_request_partition_size_limit=get_int("max.request.partition.size.limit"),
        replica_lag_time_max_ms=get_int("replica.lag.time.max.ms"),
        group_initial_rebalance_delay_ms=get_int("group.initial.rebalance.delay.ms"),
        group_min_session_timeout_ms=get_int("group.min.session.timeout.ms"),
        group_max_session_timeout_ms=get_int("group.max.session.timeout.ms"),
        group_max_size=get_int("group.max.size"),
        offset_metadata_max_bytes=get_int("offset.metadata.max.bytes"),
        offsets_topic_num_partitions=get_int("offsets.topic.num.partitions"),
        offsets_topic_replication_factor=get_int("offsets.topic.replication.factor"),
        offsets_topic_segment_bytes=get_int("offsets.topic.segment.bytes"),
        offsets_retention_minutes=get_int("offsets.retention.minutes"),
        offsets_retention_check_interval_ms=get_int("offsets.retention.check.interval.ms"),
        offsets_commit_timeout_ms=get_int("offsets.commit.timeout.ms"),
        transaction_state_log_num_partitions=get_int("transaction.state.log.num.partitions"),
        transaction_state_log_replication_factor=get_int("transaction.state.log.replication.factor"),
        transaction_state_log_min_isr=get_int("transaction.state.log.min.isr"),
        transaction_state_log_segment_bytes=get_int("transaction.state.log.segment.bytes"),
        transactional_id_expiration_ms=get_int("transactional.id.expiration.ms"),
        transaction_max_timeout_ms=get_int("transaction.max.timeout.ms"),
        transaction_abort_timed_out_transaction_cleanup_interval_ms=get_int(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms"),
        transaction_remove_expired_transaction_cleanup_interval_ms=get_int(
            "transaction.remove.expired.transaction.cleanup.interval.ms"),
        producer_id_expiration_ms=get_int("producer.id.expiration.ms"),
        values=MappingProxyType(values),
        explicit=frozenset(explicit),
    )


def default_config() -> BrokerConfig:
    """The configuration of a broker started with no file and no overrides."""
    return from_properties({})


# ---------------------------------------------------------------------------------------------
# Topic configuration.

# Topic keys the storage engine's LogConfig carries.
_LOG_CONFIG_KEYS = (
    "segment.bytes", "segment.ms", "segment.jitter.ms", "segment.index.bytes", "index.interval.bytes",
    "flush.messages", "flush.ms", "retention.ms", "retention.bytes", "max.message.bytes",
    "message.timestamp.type", "file.delete.delay.ms",
)


def _topic_defaults(broker_values: Mapping[str, object]) -> dict[str, object]:
    """Each topic key's value for a topic with no overrides, derived from the broker's settings."""
    result: dict[str, object] = {}
    for key in TOPIC_CONFIGS.values():
        value = key.default
        for synonym in key.synonyms:
            found = broker_values.get(synonym.name)
            if found is not None:
                if synonym.unit_ms != 1:
                    assert isinstance(found, int)
                    found *= synonym.unit_ms
                value = found
                break
        result[key.name] = value
    # Kafka's KafkaConfig.logRetentionTimeMillis: any negative retention means unlimited.
    retention = result["retention.ms"]
    assert isinstance(retention, int)
    if retention < 0:
        result["retention.ms"] = -1
    # Kafka hands topics the broker's timestamp bounds after the deprecated difference fallback.
    difference = broker_values.get("log.message.timestamp.difference.max.ms")
    for name in ("message.timestamp.before.max.ms", "message.timestamp.after.max.ms"):
        if result[name] == LONG_MAX and difference is not None:
            result[name] = difference
    return result


def _log_config_from_topic_values(values: Mapping[str, object]) -> LogConfig:
    props: dict[str, str | int] = {}
    for name in _LOG_CONFIG_KEYS:
        value = values[name]
        assert isinstance(value, int | str)
        props[name] = value
    return LogConfig.from_properties(props)


def validate_topic_config(key: str, value: str | None) -> str | None:
    """Why ``key=value`` cannot be a topic config (message for INVALID_CONFIG), or None if it can.

    A null value (CreateTopics and AlterConfigs allow one on the wire) is refused, as Kafka does.
    """
    spec = TOPIC_CONFIGS.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, list(TOPIC_CONFIGS), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"Unknown topic config name: {key}{hint}"
    if value is None:
        return f"Null value not supported for topic configs: {key}"
    try:
        parsed = parse_value(spec, value)
    except ConfigError as e:
        return str(e)
    if key in _LOG_CONFIG_KEYS:
        # The storage engine may be stricter than Kafka (e.g. an index must hold one entry).
        assert isinstance(parsed, int | str)
        try:
            LogConfig().with_overrides({key: parsed})
        except ValueError as e:
            return f"invalid value {value!r} for configuration {key}: {e}"
    return None


def normalise_topic_config(key: str, value: str) -> str:
    """The canonical text of a valid topic config value (what Kafka stores and describes)."""
    error = validate_topic_config(key, value)
    if error is not None:
        raise ConfigError(error, key=key)
    text = value_text(TOPIC_CONFIGS[key].type, parse_value(TOPIC_CONFIGS[key], value))
    assert text is not None
    return text


def validate_topic_configs(broker: BrokerConfig, configs: Mapping[str, str]) -> tuple[str, str] | None:
    """The first problem with a topic's whole set of overrides as ``(key, message)``, or None.

    Checks each key, then the rules between keys on the effective values (overrides over broker
    defaults): ``min.compaction.lag.ms`` may not exceed ``max.compaction.lag.ms``.
    """
    for key, value in configs.items():
        error = validate_topic_config(key, value)
        if error is not None:
            return key, error
    values = topic_config_values(broker, configs)
    low, high = values["min.compaction.lag.ms"], values["max.compaction.lag.ms"]
    assert isinstance(low, int) and isinstance(high, int)
    if low > high:
        return ("min.compaction.lag.ms",
                f"min.compaction.lag.ms ({low}) must not exceed max.compaction.lag.ms ({high})")
    return None


def topic_config_values(broker: BrokerConfig, overrides: Mapping[str, str]) -> dict[str, object]:
    """Every topic key's effective parsed value: the topic's override, else the broker's default.

    Raises ``ConfigError`` for an unknown key or a bad value among ``overrides``.
    """
    values = _topic_defaults(broker.values)
    for key, text in overrides.items():
        error = validate_topic_config(key, text)
        if error is not None:
            raise ConfigError(error, key=key)
        values[key] = parse_value(TOPIC_CONFIGS[key], text)
    return values


def log_config(broker: BrokerConfig, topic_overrides: Mapping[str, str]) -> LogConfig:
    """The ``LogConfig`` a partition of a topic with ``topic_overrides`` obeys."""
    values = topic_config_values(broker, topic_overrides)
    try:
        return _log_config_from_topic_values(values)
    except ValueError as e:  # pragma: no cover - validate_topic_config already ran each key through it
        raise ConfigError(f"topic configuration: {e}") from None


def timestamp_bounds_ms(values: Mapping[str, object]) -> tuple[int, int]:
    """``(before, after)``: how far a CreateTime timestamp may lag or lead the broker's clock.

    ``values`` is ``topic_config_values(...)``. A bound left at its default falls back to the deprecated
    ``message.timestamp.difference.max.ms``, as in Kafka 3.x.
    """
    difference = values["message.timestamp.difference.max.ms"]
    assert isinstance(difference, int)
    bounds = []
    for name in ("message.timestamp.before.max.ms", "message.timestamp.after.max.ms"):
        bound = values[name]
        assert isinstance(bound, int)
        bounds.append(difference if bound == LONG_MAX else bound)
    return bounds[0], bounds[1]


# ---------------------------------------------------------------------------------------------
# DescribeConfigs.


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One entry of a DescribeConfigs response (``DescribeConfigsResourceResult``)."""

    name: str
    value: str | None
    read_only: bool
    source: ConfigSource
    sensitive: bool
    synonyms: tuple[ConfigSynonym, ...]
    config_type: ConfigType
    documentation: str | None


def _doc(key: ConfigKey) -> str:
    return f"{key.doc} {key.note}" if key.note else key.doc


def _broker_synonym_names(name: str) -> tuple[str, ...]:
    for group in _BROKER_SYNONYM_GROUPS:
        if name in group:
            return group
    match = _LISTENER_PREFIX_RE.fullmatch(name)
    if match:
        base = match.group(2)
        mechanism, _, rest = base.partition(".")
        if base not in BROKER_CONFIGS and rest in _MECHANISM_KEYS:
            base = rest
        return name, base
    return (name,)


def _broker_layers(cfg: BrokerConfig, names: Iterable[str], sensitive: bool) -> list[ConfigSynonym]:
    """Static settings of ``names``, then defaults of ``names`` (Kafka's order, dynamic layers aside)."""
    names = list(names)
    result = []
    for name in names:
        if name in cfg.explicit:
            spec = _lookup(name)
            text = None if sensitive else value_text(spec.type, cfg.values[name])
            result.append(ConfigSynonym(name, text, ConfigSource.STATIC_BROKER_CONFIG))
    for name in names:
        base = BROKER_CONFIGS.get(name)
        if base is not None and base.default is not None:
            text = None if sensitive else value_text(base.type, base.default)
            result.append(ConfigSynonym(name, text, ConfigSource.DEFAULT_CONFIG))
    return result


def _wanted(all_names: Iterable[str], keys: Sequence[str] | None) -> list[str]:
    known = list(all_names)
    if not keys:  # Kafka treats an empty key list like a null one: everything
        return sorted(known)
    present = set(known)
    return [name for name in dict.fromkeys(keys) if name in present]


def describe_broker_configs(
    cfg: BrokerConfig,
    keys: Sequence[str] | None = None,
    *,
    include_synonyms: bool = True,
    include_documentation: bool = True,
) -> list[ConfigEntry]:
    """The entries for this broker's own resource (resource name = its node id).

    ``keys`` None or empty means every key (sorted by name); otherwise the known ones among ``keys``,
    in the order asked (unknown names are left out, as Kafka does). The source is that of the first
    synonym; synonyms are this key's broker spellings, static settings before defaults, starting at
    the key itself (Kafka's order). ``read_only`` is whether Kafka could not change the key at runtime.
    Passwords are never returned.
    """
    names = list(BROKER_CONFIGS) + [name for name in cfg.explicit if name not in BROKER_CONFIGS]
    entries = []
    for name in _wanted(names, keys):
        spec = _lookup(name)
        sensitive = spec.sensitive
        synonyms = _broker_layers(cfg, _broker_synonym_names(name), sensitive)
        while synonyms and synonyms[0].name != name:
            synonyms.pop(0)
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        value = None if sensitive else value_text(spec.type, cfg.values.get(name))
        entries.append(ConfigEntry(
            name=name,
            value=value,
            read_only=not spec.dynamic,
            source=source,
            sensitive=sensitive,
            synonyms=tuple(synonyms) if include_synonyms else (),
            config_type=spec.type,
            documentation=_doc(spec) if include_documentation else None,
        ))
    return entries


def describe_topic_configs(
    cfg: BrokerConfig,
    overrides: Mapping[str, str],
    keys: Sequence[str] | None = None,
    *,
    include_synonyms: bool = True,
    include_documentation: bool = True,
) -> list[ConfigEntry]:
    """The entries for a topic whose stored overrides are ``overrides``.

    Synonyms run from most to least specific: the topic's own override (DYNAMIC_TOPIC_CONFIG), then
    the broker spellings that are set (STATIC_BROKER_CONFIG), then those with defaults
    (DEFAULT_CONFIG); the source is the first one's, DEFAULT_CONFIG if there is none. Unlike Kafka,
    coarser spellings (``log.retention.hours``...) are listed even when the finest is unset, so a
    retention set in hours shows as STATIC_BROKER_CONFIG rather than DEFAULT_CONFIG.
    """
    values = _topic_defaults(cfg.values)
    for key, stored in overrides.items():
        known = TOPIC_CONFIGS.get(key)
        if known is not None:
            try:
                values[key] = parse_value(known, stored)
            except ConfigError:
                values[key] = stored  # a stored value we cannot parse is shown as it is
    entries = []
    for name in _wanted(TOPIC_CONFIGS, keys):
        spec = TOPIC_CONFIGS[name]
        value = values[name]
        text = value if isinstance(value, str) else value_text(spec.type, value)
        synonyms = _broker_layers(cfg, (s.name for s in spec.synonyms), sensitive=False)
        if name in overrides:
            synonyms.insert(0, ConfigSynonym(name, text, ConfigSource.DYNAMIC_TOPIC_CONFIG))
        source = synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG
        entries.append(ConfigEntry(
            name=name,
            value=text,
            read_only=False,
            source=source,
            sensitive=False,
            synonyms=tuple(synonyms) if include_synonyms else (),
            config_type=spec.type,
            documentation=_doc(spec) if include_documentation else None,
        ))
    return entries


# ---------------------------------------------------------------------------------------------
# The reference documentation.


def _md_value(type_: ConfigType, value: object) -> str:
    text = value_text(type_, value)
    if text is None:
        return "*unset*"
    if text == "":
        return '`""`'
    return f"`{text}`"


def _md_key_rows(keys: Iterable[ConfigKey], *, topic: bool) -> list[str]:
    rows = []
    for key in keys:
        default = _md_value(key.type, key.default)
        if key.kafka_default is not None:
            default += f" (Kafka: `{key.kafka_default}`)"
        valid = f"`{key.validator.describe()}`" if key.validator is not None else ""
        meaning = key.doc + (f" *Trafka:* {key.note}" if key.note else "")
        if topic:
            synonyms = ", ".join(f"`{s.name}`" for s in key.synonyms) or "none"
            rows.append(f"| `{key.name}` | {key.type.name.lower()} | {default} | {valid} | {synonyms} | "
                        f"{meaning} |")
        else:
            dynamic = "yes" if key.dynamic else "no"
            rows.append(f"| `{key.name}` | {key.type.name.lower()} | {default} | {valid} | "
                        f"{key.importance.value} | {dynamic} | {meaning} |")
    return rows


_MD_INTRO = """\
# Configuration reference

<!-- DO NOT EDIT: generated by `python -m broker.config --markdown` from the tables in broker/config.py;
     tests/test_broker_config.py fails when this file and the tables disagree. -->

Trafka reads the configuration a Kafka broker reads: the same property names, types, defaults and
valid values (those of Apache Kafka 3.9), from an optional Java `.properties` file and any number of
`--override key=value` settings, as `kafka-server-start.sh server.properties --override key=value`
does.

- **Sources.** The file is optional; each `--override key=value` wins over the file, and a later
  entry over an earlier one. The file follows `java.util.Properties`: `#` and `!` comments,
  `key=value`, `key: value` or `key value`, a backslash at the end of a line continues it, and
  `\\t \\n \\r \\f \\uXXXX` escapes. It is read as UTF-8 (Kafka reads ISO-8859-1; the two agree on
  ASCII and on `\\uXXXX` escapes).
- **Strict.** Unlike Kafka, which logs and ignores a key it does not know, Trafka refuses to start:
  the error names the key, where it came from (file and line, or the override) and the closest known
  keys. A bad number, boolean or out-of-range value is refused the same way.
- **Precedence**, as in Kafka: `log.retention.ms` > `log.retention.minutes` > `log.retention.hours`
  (a negative result means unlimited); `log.roll.ms` > `log.roll.hours`; `log.roll.jitter.ms` >
  `log.roll.jitter.hours`; `log.flush.interval.ms` > `log.flush.scheduler.interval.ms`; `log.dirs` >
  `log.dir`. `node.id` and `broker.id` are one setting: set either, or both with the same value.
- **Listeners.** `NAME://host:port`, comma-separated; an empty host binds every interface and an
  IPv6 host goes in brackets (`PLAINTEXT://[::1]:9092`). Each name maps to a security protocol through
  `listener.security.protocol.map`. `advertised.listeners` defaults to `listeners`; controller
  listeners are never advertised to clients.
- **Per-listener settings.** `listener.name.<listener>.<key>` (listener name in lower case) sets
  `<key>` for one listener; SASL login settings may add the mechanism:
  `listener.name.sasl_ssl.plain.sasl.jaas.config`.
- **Single node by default.** With no configuration at all Trafka is one node (`node.id=1`) that is
  both broker and controller, listens on `127.0.0.1:9092` and keeps its data in `./trafka-data`. The
  few defaults that differ from Kafka's for this reason are marked *(Kafka: ...)* below.
- **Describing configs.** DescribeConfigs reports every key below. *Dynamic* says whether Kafka can
  change a key at runtime; the others are reported read-only. Trafka does not change broker configs
  at runtime yet. Passwords are never returned. For a topic key the synonyms run from the topic's
  own override to the broker settings to the defaults; Trafka also lists the coarser broker
  spellings (`log.retention.hours`...) when the finest is unset, where Kafka omits them.
"""


def render_markdown() -> str:
    """docs/configuration.md."""
    lines = [_MD_INTRO]
    lines.append("## Broker configuration\n")
    for title, keys in BROKER_SECTIONS:
        lines.append(f"### {title}\n")
        if title == "Security":
            lines.append("TLS and SASL are not implemented yet: these keys are accepted and reported so "
                         "that existing configuration files load, but nothing reads them.\n")
        lines.append("| key | type | default | valid values | importance | dynamic | meaning |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        lines.extend(_md_key_rows(keys, topic=False))
        lines.append("")
    lines.append("## Topic configuration\n")
    lines.append("Set per topic at creation (CreateTopics) or later (AlterConfigs, "
                 "IncrementalAlterConfigs). A topic without an override takes the value of the first "
                 "broker synonym that is set, else that synonym's default, else the default below. "
                 "An unknown key or a bad value is refused with INVALID_CONFIG.\n")
    lines.append("| key | type | default | valid values | broker synonyms | meaning |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    lines.extend(_md_key_rows(TOPIC_CONFIGS.values(), topic=True))
    lines.append("")
    lines.append("## Kafka keys Trafka refuses\n")
    lines.append("| key | why |")
    lines.append("| --- | --- |")
    lines.append("| `zookeeper.*` | Trafka runs only in KRaft mode and has no ZooKeeper |")
    for key, why in _UNSUPPORTED.items():
        lines.append(f"| `{key}` | {why} |")
    lines.append("| other keys naming Java classes (`*.class`, `*.class.name`, `*.reporters`) | "
                 "Trafka cannot load Java plugins |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--markdown"]:
        sys.stdout.write(render_markdown())
        return 0
    sys.stderr.write("usage: python -m broker.config --markdown > docs/configuration.md\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
