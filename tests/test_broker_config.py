"""Goal: broker/config.py reads configuration exactly as a Kafka broker would, and reports it as Kafka does.

The expected defaults, precedence rules and DescribeConfigs codes below were read from Apache Kafka
3.9's sources (ServerLogConfigs, ServerConfigs, SocketServerConfigs, ReplicationConfigs,
GroupCoordinatorConfig, TransactionLogConfigs, LogConfig, ServerTopicConfigSynonyms, ConfigHelper,
DescribeConfigsResponse), independently of the module under test, so a wrong default, a broken
precedence or a shifted wire code fails here. Properties parsing is checked against the rules of
``java.util.Properties.load``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from broker import config as c
from broker.config import ConfigError, ConfigSource, ConfigType
from storage.config import LogConfig

LONG_MAX = (1 << 63) - 1
INT_MAX = (1 << 31) - 1
HOUR_MS = 3_600_000
REPO = Path(__file__).resolve().parent.parent


def cfg(**props: str) -> c.BrokerConfig:
    """A config from keyword properties; ``__`` stands for ``.`` in names."""
    return c.from_properties({k.replace("__", "."): v for k, v in props.items()})


def entry(entries: list[c.ConfigEntry], name: str) -> c.ConfigEntry:
    (found,) = [e for e in entries if e.name == name]
    return found


def synonyms(e: c.ConfigEntry) -> list[tuple[str, str | None, ConfigSource]]:
    return [(s.name, s.value, s.source) for s in e.synonyms]


# --- defaults --------------------------------------------------------------------------------

# Kafka 3.9's defaults, as text, for a spread of keys across every area.
KAFKA_DEFAULTS = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "auto.create.topics.enable": "true",
    "delete.topic.enable": "true",
    "message.max.bytes": "1048588",
    "socket.request.max.bytes": "104857600",
    "socket.send.buffer.bytes": "102400",
    "socket.receive.buffer.bytes": "102400",
    "connections.max.idle.ms": "600000",
    "max.connections": str(INT_MAX),
    "max.connections.per.ip": str(INT_MAX),
    "queued.max.requests": "500",
    "num.network.threads": "3",
    "num.io.threads": "8",
    "log.segment.bytes": "1073741824",
    "log.roll.ms": None,
    "log.roll.hours": "168",
    "log.roll.jitter.hours": "0",
    "log.index.size.max.bytes": "10485760",
    "log.index.interval.bytes": "4096",
    "log.flush.interval.messages": str(LONG_MAX),
    "log.flush.interval.ms": None,
    "log.flush.scheduler.interval.ms": str(LONG_MAX),
    "log.retention.ms": None,
    "log.retention.minutes": None,
    "log.retention.hours": "168",
    "log.retention.bytes": "-1",
    "log.retention.check.interval.ms": "300000",
    "log.segment.delete.delay.ms": "60000",
    "log.cleanup.policy": "delete",
    "log.message.timestamp.type": "CreateTime",
    "log.message.timestamp.before.max.ms": str(LONG_MAX),
    "log.message.timestamp.after.max.ms": str(LONG_MAX),
    "log.preallocate": "false",
    "log.cleaner.min.cleanable.ratio": "0.5",
    "log.cleaner.io.max.bytes.per.second": "1.7976931348623157E308",
    "compression.type": "producer",
    "offsets.topic.num.partitions": "50",
    "offsets.retention.minutes": "10080",
    "offsets.retention.check.interval.ms": "600000",
    "group.initial.rebalance.delay.ms": "3000",
    "group.min.session.timeout.ms": "6000",
    "group.max.session.timeout.ms": "1800000",
    "group.max.size": str(INT_MAX),
    "transaction.state.log.num.partitions": "50",
    "transactional.id.expiration.ms": "604800000",
    "transaction.max.timeout.ms": "900000",
    "producer.id.expiration.ms": "86400000",
    "max.incremental.fetch.session.cache.slots": "1000",
    "fetch.max.bytes": "57671680",
    "replica.lag.time.max.ms": "30000",
    "unclean.leader.election.enable": "false",
    "broker.rack": None,
    "advertised.listeners": None,
    "inter.broker.listener.name": None,
    # Kafka builds it from a HashMap keyed by listener name, hence the odd order.
    "listener.security.protocol.map": "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,"
                                      "SASL_PLAINTEXT:SASL_PLAINTEXT",
    "controller.quorum.voters": "",
    "controller.quorum.bootstrap.servers": "",
}

# Where Trafka's default deliberately differs, and what Kafka's is.
DEVIATIONS = {
    "node.id": ("1", "-1"),
    "broker.id": ("1", "-1"),
    "process.roles": ("broker,controller", '""'),
    "listeners": ("PLAINTEXT://127.0.0.1:9092", "PLAINTEXT://:9092"),
    "log.dir": ("./trafka-data", "/tmp/kafka-logs"),
    "controller.listener.names": ("CONTROLLER", "null"),
    "offsets.topic.replication.factor": ("1", "3"),
    "transaction.state.log.replication.factor": ("1", "3"),
    "transaction.state.log.min.isr": ("1", "2"),
    "group.coordinator.rebalance.protocols": ("classic,consumer", "classic"),
    "eligible.leader.replicas.enable": ("true", "false"),
}


@pytest.mark.parametrize("name", sorted(KAFKA_DEFAULTS))
def test_default_is_kafkas(name: str) -> None:
    key = c.BROKER_CONFIGS[name]
    assert c.value_text(key.type, key.default) == KAFKA_DEFAULTS[name]
    assert key.kafka_default is None


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_deviations_are_recorded(name: str) -> None:
    key = c.BROKER_CONFIGS[name]
    trafka, kafka = DEVIATIONS[name]
    assert c.value_text(key.type, key.default) == trafka
    assert key.kafka_default == kafka
    assert key.note  # every deviation says why


def test_only_the_listed_keys_deviate() -> None:
    assert {k.name for k in c.BROKER_CONFIGS.values() if k.kafka_default is not None} == set(DEVIATIONS)


def test_topic_defaults_are_kafkas() -> None:
    expected = {
        "cleanup.policy": "delete", "compression.type": "producer", "delete.retention.ms": "86400000",
        "file.delete.delay.ms": "60000", "flush.messages": str(LONG_MAX), "flush.ms": str(LONG_MAX),
        "index.interval.bytes": "4096", "max.compaction.lag.ms": str(LONG_MAX),
        "max.message.bytes": "1048588", "message.timestamp.type": "CreateTime",
        "min.cleanable.dirty.ratio": "0.5", "min.compaction.lag.ms": "0", "min.insync.replicas": "1",
        "preallocate": "false", "retention.bytes": "-1", "retention.ms": "604800000",
        "segment.bytes": "1073741824", "segment.index.bytes": "10485760", "segment.jitter.ms": "0",
        "segment.ms": "604800000", "unclean.leader.election.enable": "false",
        "message.downconversion.enable": "true", "local.retention.ms": "-2", "local.retention.bytes": "-2",
        "remote.storage.enable": "false",
    }
    for name, text in expected.items():
        key = c.TOPIC_CONFIGS[name]
        assert c.value_text(key.type, key.default) == text, name


def test_every_topic_synonym_is_a_broker_key() -> None:
    for key in c.TOPIC_CONFIGS.values():
        for synonym in key.synonyms:
            assert synonym.name in c.BROKER_CONFIGS, (key.name, synonym.name)
            # The broker key and the topic key agree on what the default means.
            broker = c.BROKER_CONFIGS[synonym.name]
            if broker.default is not None and synonym.unit_ms == 1 and key.name != "flush.ms":
                assert broker.default == key.default, key.name


def test_empty_configuration_is_a_single_node() -> None:
    config = c.load(None, [])
    assert config.node_id == 1
    assert config.process_roles == ("broker", "controller")
    assert [str(x) for x in config.listeners] == ["PLAINTEXT://127.0.0.1:9092"]
    assert config.advertised_listeners == config.listeners
    assert config.inter_broker_listener_name == "PLAINTEXT"
    assert config.log_dirs == ("./trafka-data",)
    assert config.metadata_log_dir == "./trafka-data"
    assert config.log_defaults == LogConfig()  # storage's defaults are Kafka's too
    assert config.offsets_retention_ms == 10080 * 60_000
    assert config.listener_security_protocol_map["CONTROLLER"] == "PLAINTEXT"


def test_a_kafka_sample_kraft_configuration_loads(tmp_path: Path) -> None:
    # The keys of the combined-mode server.properties shipped with Kafka, written out here.
    path = tmp_path / "server.properties"
    path.write_text(
        "process.roles=broker,controller\n"
        "node.id=1\n"
        "controller.quorum.bootstrap.servers=localhost:9093\n"
        "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n"
        "inter.broker.listener.name=PLAINTEXT\n"
        "advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,"
        "SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL\n"
        "num.network.threads=3\nnum.io.threads=8\n"
        "socket.send.buffer.bytes=102400\nsocket.receive.buffer.bytes=102400\n"
        "socket.request.max.bytes=104857600\n"
        f"log.dirs={tmp_path}/kraft-combined-logs\n"
        "num.partitions=1\nnum.recovery.threads.per.data.dir=1\n"
        "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        "#log.flush.interval.messages=10000\n"
        "log.retention.hours=168\nlog.segment.bytes=1073741824\n"
        "log.retention.check.interval.ms=300000\n"
    )
    config = c.load(str(path), [])
    assert [str(x) for x in config.listeners] == ["PLAINTEXT://:9092", "CONTROLLER://:9093"]
    assert [str(x) for x in config.advertised_listeners] == ["PLAINTEXT://localhost:9092"]
    assert [str(x) for x in config.controller_listeners] == ["CONTROLLER://:9093"]
    assert config.controller_quorum_bootstrap_servers == (("localhost", 9093),)
    assert config.log_dirs == (f"{tmp_path}/kraft-combined-logs",)


def test_fields_named_after_keys_hold_their_values() -> None:
    config = cfg(num__partitions="4", message__max__bytes="5000", broker__rack="r1",
                 group__max__size="9", connections__max__idle__ms="-1", offsets__retention__minutes="3")
    structured = {"listeners", "advertised_listeners", "controller_listener_names", "log_dirs",
                  "listener_security_protocol_map", "controller_quorum_voters", "metadata_log_dir",
                  "controller_quorum_bootstrap_servers", "max_connections_per_ip_overrides",
                  "inter_broker_listener_name"}
    checked = 0
    for f in dataclasses.fields(config):
        key = f.name.replace("_", ".")
        if key in c.BROKER_CONFIGS and f.name not in structured:
            assert getattr(config, f.name) == config.get(key), f.name
            checked += 1
    assert checked > 40
    assert (config.num_partitions, config.message_max_bytes, config.broker_rack) == (4, 5000, "r1")
    assert config.offsets_retention_ms == 3 * 60_000


# --- precedence ------------------------------------------------------------------------------


def test_retention_ms_beats_minutes_beats_hours() -> None:
    assert cfg(log__retention__hours="2").log_defaults.retention_ms == 2 * HOUR_MS
    assert cfg(log__retention__hours="2", log__retention__minutes="3").log_defaults.retention_ms == 180_000
    both = cfg(log__retention__hours="2", log__retention__minutes="3", log__retention__ms="1234")
    assert both.log_defaults.retention_ms == 1234


def test_negative_retention_means_unlimited_and_zero_is_refused() -> None:
    assert cfg(log__retention__hours="-1").log_defaults.retention_ms == -1
    assert cfg(log__retention__ms="-7").log_defaults.retention_ms == -1
    with pytest.raises(ConfigError, match="log.retention.ms"):
        cfg(log__retention__minutes="0")


def test_roll_and_jitter_ms_beat_hours() -> None:
    config = cfg(log__roll__hours="5", log__roll__jitter__hours="1")
    assert config.log_defaults.segment_ms == 5 * HOUR_MS
    assert config.log_defaults.segment_jitter_ms == HOUR_MS
    config = cfg(log__roll__hours="5", log__roll__ms="777", log__roll__jitter__hours="1",
                 log__roll__jitter__ms="5")
    assert config.log_defaults.segment_ms == 777
    assert config.log_defaults.segment_jitter_ms == 5


def test_flush_interval_ms_beats_scheduler_interval() -> None:
    assert cfg(log__flush__scheduler__interval__ms="2000").log_defaults.flush_ms == 2000
    config = cfg(log__flush__scheduler__interval__ms="2000", log__flush__interval__ms="10")
    assert config.log_defaults.flush_ms == 10
    assert config.log_dir_config().flush_scheduler_interval_ms == 2000


def test_log_dirs_beats_log_dir() -> None:
    assert cfg(log__dir="/a").log_dirs == ("/a",)
    assert cfg(log__dir="/a", log__dirs="/b, /c").log_dirs == ("/b", "/c")
    with pytest.raises(ConfigError, match="log.dirs") as e:
        cfg(log__dirs=" , ")
    assert e.value.key == "log.dirs"


def test_node_id_and_broker_id_are_one_setting() -> None:
    assert cfg(broker__id="7").node_id == 7
    only_node = cfg(node__id="8")
    assert only_node.get_int("broker.id") == 8
    assert only_node.is_set("broker.id")  # Kafka copies one into the other
    assert cfg(node__id="9", broker__id="9").node_id == 9
    with pytest.raises(ConfigError, match="node.id .* broker.id"):
        cfg(node__id="1", broker__id="2")


def test_message_max_bytes_flows_to_topics() -> None:
    config = cfg(message__max__bytes="2000", log__message__timestamp__type="LogAppendTime")
    assert config.log_defaults.max_message_bytes == 2000
    assert config.log_defaults.log_append_time


# --- properties files ------------------------------------------------------------------------


def props(text: str) -> dict[str, str]:
    return {k: v for k, v, _ in c.parse_properties(text)}


def test_separators() -> None:
    assert props("a=1\nb:2\nc 3\nd = 4\ne : 5\nf\t \t6\ng   =   7\n") == {
        "a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7"}
    # Only the first separator counts; a key alone has an empty value; trailing blanks stay.
    assert props("url=a=b:c\nalone\nspaced=x  \n") == {"url": "a=b:c", "alone": "", "spaced": "x  "}
    # "key = : value": whitespace ends the key, one '=' is eaten, the ':' is part of the value.
    assert props("k = : v") == {"k": ": v"}


def test_comments_and_blank_lines() -> None:
    text = "# comment\n! also a comment\n   # indented comment\n\n   \na=1 # not a comment\n"
    assert props(text) == {"a": "1 # not a comment"}


def test_continuations() -> None:
    assert props("list=a,\\\n     b,\\\n\tc\n") == {"list": "a,b,c"}
    # A continuation line is never a comment, and an even number of backslashes does not continue.
    assert props("k=one\\\n# two\n") == {"k": "one# two"}
    assert props("k=path\\\\\nnext=1\n") == {"k": "path\\", "next": "1"}
    # A backslash at the very end of the file continues into nothing.
    assert props("k=v\\") == {"k": "v"}
    # Line numbers are where an entry starts.
    assert [line for _, _, line in c.parse_properties("a=1\\\n2\nb=3\n")] == [1, 3]


def test_line_endings() -> None:
    assert props("a=1\r\nb=2\rc=3\n") == {"a": "1", "b": "2", "c": "3"}


def test_escapes() -> None:
    assert props(r"a\=b\:c\ d=v") == {"a=b:c d": "v"}
    assert props(r"k=tab\there\nnew\rret\fff") == {"k": "tab\there\nnew\rret\fff"}
    assert props(r"k=\u00e9\u4e2d\q\\") == {"k": "\u00e9\u4e2dq\\"}
    assert props(r"k=\uD83D\uDE00") == {"k": "\U0001F600"}
    assert props(r"\#notcomment=1") == {"#notcomment": "1"}
    with pytest.raises(ConfigError, match="x.properties:2: malformed"):
        c.parse_properties("ok=1\nbad=\\u12G4\n", "x.properties")


def test_duplicate_keys_last_wins_and_bom_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.properties"
    path.write_bytes(b"\xef\xbb\xbfnum.partitions=2\nnum.partitions=3\n")
    assert c.load(str(path)).num_partitions == 3


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = tmp_path / "s.properties"
    path.write_text("num.partitions=2\nlog.retention.hours=10\n")
    config = c.load(str(path), ["num.partitions=5", "log.retention.ms=60000", "num.partitions = 6"])
    assert config.num_partitions == 6
    assert config.log_defaults.retention_ms == 60_000
    assert c.load(None, ["broker.rack="]).broker_rack == ""


def test_bad_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        c.load(None, ["num.partitions"])
    with pytest.raises(ConfigError, match="cannot read"):
        c.load(str(tmp_path / "missing.properties"))


# --- errors ----------------------------------------------------------------------------------


def test_unknown_key_is_named_with_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "s.properties"
    path.write_text("num.partitions=1\nlog.retention.hour=5\n")
    with pytest.raises(ConfigError) as e:
        c.load(str(path))
    message = str(e.value)
    assert e.value.key == "log.retention.hour"
    assert f"{path}:2" in message
    assert "'log.retention.hours'" in message
    with pytest.raises(ConfigError, match="--override nmu.partitions: .*'num.partitions'"):
        c.load(None, ["nmu.partitions=3"])
    with pytest.raises(ConfigError, match="unknown configuration 'completely.different'$"):
        cfg(completely__different="1")


def test_refused_kafka_keys_say_why() -> None:
    with pytest.raises(ConfigError, match="no ZooKeeper"):
        cfg(zookeeper__connect="localhost:2181")
    with pytest.raises(ConfigError, match="Java"):
        cfg(client__quota__callback__class="com.example.Quota")
    with pytest.raises(ConfigError, match="topic-level .* log.retention.ms"):
        cfg(retention__ms="1000")
    with pytest.raises(ConfigError, match="KRaft"):
        cfg(control__plane__listener__name="CONTROLLER")
    with pytest.raises(ConfigError, match="authorizer"):
        cfg(authorizer__class__name="kafka.security.authorizer.AclAuthorizer")
    with pytest.raises(ConfigError, match="tiered storage"):
        cfg(remote__log__storage__system__enable="true")


def test_replica_selector_class_is_unset_or_kafkas_rack_aware_selector() -> None:
    """KIP-392's replica.selector.class: unset (Kafka's null default: leaders only) or the name
    of Kafka's built-in rack-aware selector; any other class, and an empty value (Kafka fails to
    load the class ""), is refused at startup, naming the one accepted."""
    assert cfg().get_str("replica.selector.class") is None
    rack_aware = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
    assert cfg(replica__selector__class=rack_aware).get_str("replica.selector.class") == rack_aware
    for bad in ("org.apache.kafka.common.replica.LeaderSelector", "RackAwareReplicaSelector", "",
                "com.example.MySelector"):
        with pytest.raises(ConfigError, match=f"replica.selector.class: .*cannot load Java .*{rack_aware}"):
            cfg(replica__selector__class=bad)


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("num.partitions", "many", "not a number"),
    ("num.partitions", "", "a number is required"),
    ("num.partitions", "1_000", "not a number"),
    ("num.partitions", "0", "at least 1"),
    ("num.partitions", "2147483648", "out of range for a int"),
    ("log.retention.bytes", "9223372036854775808", "out of range for a long"),
    ("offsets.topic.replication.factor", "40000", "out of range for a short"),
    ("auto.create.topics.enable", "yes", "true or false"),
    ("log.cleanup.policy", "compact,shred", "'shred' is not one of"),
    ("log.message.timestamp.type", "createtime", "one of: CreateTime, LogAppendTime"),
    ("compression.type", "brotli", "one of"),
    ("compression.gzip.level", "0", "between 1 and 9"),
    ("log.cleaner.min.cleanable.ratio", "1.5", "no more than 1"),
    ("log.cleaner.min.cleanable.ratio", "half", "not a number"),
    ("fetch.max.bytes", "1023", "at least 1024"),
    ("process.roles", "broker,worker", "'worker'"),
    ("controller.quorum.voters", "1@localhost", "id@host:port"),
    ("listeners", "PLAINTEXT//:9092", "NAME://host:port"),
    ("listeners", "PLAINTEXT://:99999", "port out of range"),
    ("listener.security.protocol.map", "A:TLS", "unknown security protocol"),
])
def test_bad_values_are_refused_with_the_key(key: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        c.load(None, [f"{key}={value}"])
    assert e.value.key == key
    assert key in str(e.value)
    assert reason in str(e.value)


def test_values_are_trimmed_and_parsed_like_java() -> None:
    config = cfg(num__partitions=" +3 ", auto__create__topics__enable=" FALSE",
                 log__cleanup__policy="compact , delete", log__cleaner__min__cleanable__ratio="0.25d")
    assert config.num_partitions == 3
    assert config.auto_create_topics_enable is False
    assert config.get_list("log.cleanup.policy") == ("compact", "delete")
    assert config.get_float("log.cleaner.min.cleanable.ratio") == 0.25


def test_storage_limits_name_the_broker_key() -> None:
    # Kafka accepts a 4-byte index; Trafka's storage engine needs room for one entry.
    with pytest.raises(ConfigError, match="log.index.size.max.bytes is refused by the storage engine") as e:
        c.load(None, ["log.index.size.max.bytes=5"])
    assert e.value.key == "log.index.size.max.bytes"


def test_replica_fetch_wait_is_bounded() -> None:
    with pytest.raises(ConfigError, match="replica.fetch.wait.max.ms"):
        cfg(replica__fetch__wait__max__ms="40000")


def test_process_roles_cannot_be_empty_and_broker_only_needs_a_quorum() -> None:
    with pytest.raises(ConfigError, match="ZooKeeper"):
        cfg(process__roles="")
    with pytest.raises(ConfigError, match="controller.quorum"):
        cfg(process__roles="broker")
    broker = cfg(process__roles="broker", node__id="4", controller__quorum__voters="1@ctl:9093")
    assert broker.controller_quorum_voters == (c.QuorumVoter(node_id=1, host="ctl", port=9093),)
    with pytest.raises(ConfigError, match="must include this node"):
        cfg(node__id="4", controller__quorum__voters="1@ctl:9093,2@ctl2:9093")


# --- listeners -------------------------------------------------------------------------------


def test_listener_parsing() -> None:
    config = cfg(listeners="plaintext://:9092,SSL://[::1]:9093,INTERNAL://10.0.0.1:9094",
                 listener__security__protocol__map="PLAINTEXT:PLAINTEXT,SSL:SSL,internal:sasl_plaintext")
    assert [(x.name, x.host, x.port, x.security_protocol) for x in config.listeners] == [
        ("PLAINTEXT", "", 9092, "PLAINTEXT"),
        ("SSL", "::1", 9093, "SSL"),
        ("INTERNAL", "10.0.0.1", 9094, "SASL_PLAINTEXT"),
    ]
    assert config.listeners[1].address == "[::1]:9093"
    assert str(config.listeners[0]) == "PLAINTEXT://:9092"
    assert config.advertised_listeners == config.listeners


def test_listener_needs_a_protocol() -> None:
    with pytest.raises(ConfigError, match="no security protocol for listener CLIENT"):
        cfg(listeners="CLIENT://:9092")


def test_listener_names_and_ports_are_distinct() -> None:
    with pytest.raises(ConfigError, match="different name"):
        cfg(listeners="PLAINTEXT://:9092,PLAINTEXT://:9093")
    with pytest.raises(ConfigError, match="different port"):
        cfg(listeners="PLAINTEXT://:9092,SSL://:9092")
    # One IPv4 and one IPv6 address may share a port; port 0 (any free port) may repeat.
    cfg(listeners="PLAINTEXT://127.0.0.1:9092,SSL://[::1]:9092")
    cfg(listeners="PLAINTEXT://:0,SSL://:0")


def test_advertised_listeners() -> None:
    config = cfg(listeners="PLAINTEXT://0.0.0.0:9092,CONTROLLER://:9093",
                 advertised__listeners="PLAINTEXT://broker.example.com:19092")
    assert [str(x) for x in config.advertised_listeners] == ["PLAINTEXT://broker.example.com:19092"]
    assert [str(x) for x in config.broker_listeners] == ["PLAINTEXT://0.0.0.0:9092"]
    with pytest.raises(ConfigError, match="routable"):
        cfg(listeners="PLAINTEXT://0.0.0.0:9092")  # advertised defaults to listeners
    with pytest.raises(ConfigError, match="only name listeners that are in listeners"):
        cfg(advertised__listeners="PLAINTEXT://h:1,SSL://h:2", inter__broker__listener__name="PLAINTEXT")


def test_inter_broker_listener() -> None:
    config = cfg(listeners="CLIENT://:9092,REPL://:9093",
                 listener__security__protocol__map="CLIENT:SSL,REPL:PLAINTEXT",
                 inter__broker__listener__name="repl")
    assert config.inter_broker_listener_name == "REPL"
    with pytest.raises(ConfigError, match="inter.broker.listener.name must be an advertised"):
        cfg(listeners="CLIENT://:9092", listener__security__protocol__map="CLIENT:PLAINTEXT")
    with pytest.raises(ConfigError, match="only one of"):
        cfg(inter__broker__listener__name="PLAINTEXT", security__inter__broker__protocol="PLAINTEXT")


def test_controller_listeners_default_to_plaintext_only_with_the_default_map() -> None:
    assert cfg(listeners="PLAINTEXT://:9092,CONTROLLER://:9093").listener_security_protocol_map[
        "CONTROLLER"] == "PLAINTEXT"
    with pytest.raises(ConfigError, match="CONTROLLER"):
        cfg(listeners="PLAINTEXT://:9092,CONTROLLER://:9093",
            listener__security__protocol__map="PLAINTEXT:PLAINTEXT")
    # With SSL in use Kafka adds no implicit mapping either.
    with pytest.raises(ConfigError, match="CONTROLLER"):
        cfg(listeners="SSL://:9092,CONTROLLER://:9093", security__inter__broker__protocol="SSL")


def test_per_listener_settings() -> None:
    config = c.load(None, ["listener.name.internal.max.connections=5",
                           "listener.name.sasl_ssl.plain.sasl.jaas.config=secret-jaas"])
    assert config.listener_value("INTERNAL", "max.connections") == 5
    assert config.listener_value("EXTERNAL", "max.connections") == INT_MAX
    with pytest.raises(ConfigError, match="nonsense"):
        c.load(None, ["listener.name.internal.nonsense=1"])
    with pytest.raises(ConfigError, match="listener.name.internal.max.connections"):
        c.load(None, ["listener.name.internal.max.connections=-1"])


def test_per_ip_overrides() -> None:
    config = cfg(max__connections__per__ip__overrides="hostA:100, 127.0.0.1:200")
    assert dict(config.max_connections_per_ip_overrides) == {"hostA": 100, "127.0.0.1": 200}
    with pytest.raises(ConfigError, match="host:limit"):
        cfg(max__connections__per__ip__overrides="hostA")


# --- topic configs ---------------------------------------------------------------------------


def test_topic_overrides_layer_over_broker_defaults() -> None:
    broker = cfg(log__retention__hours="1", log__segment__bytes="100000", log__flush__interval__messages="1")
    plain = c.log_config(broker, {})
    assert (plain.retention_ms, plain.segment_bytes, plain.flush_messages) == (HOUR_MS, 100000, 1)
    assert plain.durable_appends
    layered = c.log_config(broker, {"retention.ms": "5000", "segment.bytes": " 2048 ",
                                    "cleanup.policy": "compact"})
    assert (layered.retention_ms, layered.segment_bytes, layered.flush_messages) == (5000, 2048, 1)
    values = c.topic_config_values(broker, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
    assert values["cleanup.policy"] == ("compact",)
    assert values["min.insync.replicas"] == 2
    assert values["retention.ms"] == HOUR_MS
    with pytest.raises(ConfigError) as e:
        c.log_config(broker, {"segment.bytes": "big"})
    assert e.value.key == "segment.bytes"


def test_timestamp_bounds_fall_back_to_the_deprecated_difference() -> None:
    broker = c.default_config()
    values = c.topic_config_values(broker, {"message.timestamp.difference.max.ms": "1000"})
    assert c.timestamp_bounds_ms(values) == (1000, 1000)
    values = c.topic_config_values(broker, {"message.timestamp.difference.max.ms": "1000",
                                            "message.timestamp.after.max.ms": "5"})
    assert c.timestamp_bounds_ms(values) == (1000, 5)
    # A broker-wide difference is handed to topics as their bounds, as Kafka does.
    broker = cfg(log__message__timestamp__difference__max__ms="300")
    assert c.topic_config_values(broker, {})["message.timestamp.before.max.ms"] == 300


def test_validate_topic_config() -> None:
    assert c.validate_topic_config("retention.ms", "-1") is None
    assert c.validate_topic_config("cleanup.policy", "compact,delete") is None
    unknown = c.validate_topic_config("retention.msec", "1")
    assert unknown is not None and unknown.startswith("Unknown topic config name: retention.msec")
    assert "'retention.ms'" in unknown
    bad = c.validate_topic_config("retention.ms", "-2")
    assert bad is not None and "retention.ms" in bad and "at least -1" in bad
    assert "true or false" in (c.validate_topic_config("preallocate", "maybe") or "")
    assert "tiered storage" in (c.validate_topic_config("remote.storage.enable", "true") or "")
    # The storage engine is stricter than Kafka about an index too small to hold one entry.
    assert c.validate_topic_config("segment.index.bytes", "4") is not None
    assert c.validate_topic_config("retention.ms", None) == (
        "Null value not supported for topic configs: retention.ms")
    # Broker-only keys are not topic keys.
    assert c.validate_topic_config("log.retention.ms", "1") is not None


def test_normalise_topic_config() -> None:
    assert c.normalise_topic_config("cleanup.policy", " compact , delete ") == "compact,delete"
    assert c.normalise_topic_config("preallocate", "TRUE") == "true"
    assert c.normalise_topic_config("min.cleanable.dirty.ratio", "0.50") == "0.5"
    assert c.normalise_topic_config("retention.ms", "+100") == "100"
    with pytest.raises(ConfigError):
        c.normalise_topic_config("retention.ms", "soon")


def test_validate_topic_configs_checks_keys_together() -> None:
    broker = cfg(log__cleaner__max__compaction__lag__ms="1000")
    assert c.validate_topic_configs(broker, {"min.compaction.lag.ms": "500"}) is None
    problem = c.validate_topic_configs(broker, {"min.compaction.lag.ms": "5000"})
    assert problem is not None and problem[0] == "min.compaction.lag.ms"
    assert c.validate_topic_configs(broker, {"min.compaction.lag.ms": "5000",
                                             "max.compaction.lag.ms": "6000"}) is None
    assert c.validate_topic_configs(broker, {"nope": "1"}) == ("nope", "Unknown topic config name: nope")


# --- DescribeConfigs -------------------------------------------------------------------------


def test_wire_codes_are_kafkas() -> None:
    # DescribeConfigsResponse.ConfigSource and ConfigType, by code.
    assert [(s.name, s.value) for s in ConfigSource] == [
        ("UNKNOWN", 0), ("DYNAMIC_TOPIC_CONFIG", 1), ("DYNAMIC_BROKER_CONFIG", 2),
        ("DYNAMIC_DEFAULT_BROKER_CONFIG", 3), ("STATIC_BROKER_CONFIG", 4), ("DEFAULT_CONFIG", 5),
        ("DYNAMIC_BROKER_LOGGER_CONFIG", 6), ("DYNAMIC_CLIENT_METRICS_CONFIG", 7),
        ("DYNAMIC_GROUP_CONFIG", 8)]
    assert [(t.name, t.value) for t in ConfigType] == [
        ("UNKNOWN", 0), ("BOOLEAN", 1), ("STRING", 2), ("INT", 3), ("SHORT", 4), ("LONG", 5),
        ("DOUBLE", 6), ("LIST", 7), ("CLASS", 8), ("PASSWORD", 9)]


def test_topic_entry_sources_and_synonym_order() -> None:
    broker = cfg(log__segment__bytes="5000", log__retention__hours="72")
    entries = c.describe_topic_configs(broker, {"segment.bytes": "4000"})
    assert [e.name for e in entries] == sorted(c.TOPIC_CONFIGS)

    segment = entry(entries, "segment.bytes")
    assert (segment.value, segment.source, segment.read_only, segment.sensitive) == (
        "4000", ConfigSource.DYNAMIC_TOPIC_CONFIG, False, False)
    assert segment.config_type == ConfigType.INT
    assert synonyms(segment) == [
        ("segment.bytes", "4000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.segment.bytes", "5000", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG),
    ]

    retention = entry(entries, "retention.ms")
    assert (retention.value, retention.source) == (str(72 * HOUR_MS), ConfigSource.STATIC_BROKER_CONFIG)
    assert synonyms(retention) == [
        ("log.retention.hours", "72", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]

    policy = entry(entries, "cleanup.policy")
    assert (policy.value, policy.source, policy.config_type) == ("delete", ConfigSource.DEFAULT_CONFIG,
                                                                  ConfigType.LIST)
    assert synonyms(policy) == [("log.cleanup.policy", "delete", ConfigSource.DEFAULT_CONFIG)]

    remote = entry(entries, "remote.storage.enable")
    assert (remote.value, remote.source, remote.synonyms) == ("false", ConfigSource.DEFAULT_CONFIG, ())


def test_topic_entry_with_every_retention_spelling() -> None:
    broker = cfg(log__retention__ms="100", log__retention__minutes="2", log__retention__hours="3")
    (retention,) = c.describe_topic_configs(broker, {"retention.ms": "50"}, ["retention.ms"])
    assert retention.value == "50"
    assert synonyms(retention) == [
        ("retention.ms", "50", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.retention.ms", "100", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.minutes", "2", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "3", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]


def test_topic_describe_keys_and_flags() -> None:
    broker = c.default_config()
    entries = c.describe_topic_configs(broker, {}, ["segment.ms", "nonsense", "flush.ms", "segment.ms"],
                                       include_synonyms=False, include_documentation=False)
    assert [e.name for e in entries] == ["segment.ms", "flush.ms"]
    assert all(e.synonyms == () and e.documentation is None for e in entries)
    assert entries[0].source == ConfigSource.DEFAULT_CONFIG  # the source survives without synonyms
    (flush,) = c.describe_topic_configs(broker, {}, ["flush.ms"])
    assert synonyms(flush) == [
        ("log.flush.scheduler.interval.ms", str(LONG_MAX), ConfigSource.DEFAULT_CONFIG)]
    assert flush.documentation
    assert c.describe_topic_configs(broker, {}, []) == c.describe_topic_configs(broker, {}, None)


def test_broker_entries() -> None:
    broker = cfg(log__retention__hours="72", num__io__threads="4", ssl__keystore__password="hunter2")
    entries = c.describe_broker_configs(broker)
    assert [e.name for e in entries] == sorted(c.BROKER_CONFIGS)

    hours = entry(entries, "log.retention.hours")
    assert (hours.value, hours.source, hours.read_only) == ("72", ConfigSource.STATIC_BROKER_CONFIG, True)
    assert synonyms(hours) == [
        ("log.retention.hours", "72", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]
    # Describing the finer spelling starts its synonyms at itself, as Kafka does.
    millis = entry(entries, "log.retention.ms")
    assert (millis.value, millis.source, millis.synonyms, millis.read_only) == (
        None, ConfigSource.DEFAULT_CONFIG, (), False)

    io = entry(entries, "num.io.threads")
    assert (io.value, io.source, io.config_type) == ("4", ConfigSource.STATIC_BROKER_CONFIG, ConfigType.INT)
    listeners = entry(entries, "listeners")
    assert (listeners.value, listeners.source) == ("PLAINTEXT://127.0.0.1:9092", ConfigSource.DEFAULT_CONFIG)
    assert entry(entries, "broker.id").read_only
    assert entry(entries, "offsets.topic.replication.factor").config_type == ConfigType.SHORT
    assert entry(entries, "log.cleanup.policy").config_type == ConfigType.LIST


def test_passwords_are_masked() -> None:
    broker = c.load(None, ["ssl.keystore.password=hunter2",
                           "listener.name.sasl_ssl.plain.sasl.jaas.config=jaas-secret"])
    assert "hunter2" not in repr(broker) and "hunter2" not in repr(broker.get("ssl.keystore.password"))
    assert broker.get("ssl.keystore.password") == c.Secret("hunter2")
    entries = c.describe_broker_configs(broker)
    masked = ("ssl.keystore.password", "listener.name.sasl_ssl.plain.sasl.jaas.config", "ssl.key.password")
    for name in masked:
        e = entry(entries, name)
        assert e.value is None and e.sensitive and e.config_type == ConfigType.PASSWORD, name
        assert all(s.value is None for s in e.synonyms), name
    password = entry(entries, "ssl.keystore.password")
    assert synonyms(password) == [("ssl.keystore.password", None, ConfigSource.STATIC_BROKER_CONFIG)]
    jaas = entry(entries, "listener.name.sasl_ssl.plain.sasl.jaas.config")
    assert synonyms(jaas) == [("listener.name.sasl_ssl.plain.sasl.jaas.config", None,
                               ConfigSource.STATIC_BROKER_CONFIG)]
    assert not entry(entries, "ssl.key.password").synonyms  # unset, no default
    assert "hunter2" not in repr(entries)


def test_listener_prefixed_entry_lists_its_base_key() -> None:
    broker = c.load(None, ["listener.name.internal.max.connections=5", "max.connections=50"])
    (e,) = c.describe_broker_configs(broker, ["listener.name.internal.max.connections"])
    assert (e.value, e.config_type, e.sensitive) == ("5", ConfigType.INT, False)
    assert synonyms(e) == [
        ("listener.name.internal.max.connections", "5", ConfigSource.STATIC_BROKER_CONFIG),
        ("max.connections", "50", ConfigSource.STATIC_BROKER_CONFIG),
        ("max.connections", str(INT_MAX), ConfigSource.DEFAULT_CONFIG),
    ]


# --- odds and ends ---------------------------------------------------------------------------


def test_java_double_text() -> None:
    assert [c.value_text(ConfigType.DOUBLE, x) for x in (0.5, 2.0, 1e7, 1.5e-4, 0.001, 12345678.9)] == [
        "0.5", "2.0", "1.0E7", "1.5E-4", "0.001", "1.23456789E7"]


def test_secret_never_shows_its_value() -> None:
    secret = c.Secret("pw")
    assert "pw" not in repr(secret) and "pw" not in str(secret)
    assert secret.reveal() == "pw"


def test_every_key_is_documented() -> None:
    for key in list(c.BROKER_CONFIGS.values()) + list(c.TOPIC_CONFIGS.values()):
        assert key.doc.endswith("."), key.name
        assert "|" not in key.doc + key.note, key.name  # it would break the Markdown table
        if key.default is not None:
            # Every default passes its own validator.
            assert key.validator is None or key.validator.check(key.default) is None, key.name


def test_committed_reference_matches_the_tables() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == c.render_markdown(), "run: python -m broker.config --markdown > docs/configuration.md"


def test_markdown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert c.main(["--markdown"]) == 0
    assert capsys.readouterr().out == c.render_markdown()
    assert c.main([]) == 2
