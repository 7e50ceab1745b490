"""The ``trafka`` subcommands other than ``serve``: topic administration, a console producer and
consumer speaking the Kafka protocol through ``broker.client``, and an offline segment dumper.

    trafka topics create|list|describe|delete|alter-config ...
    trafka groups list|describe|delete|reset-offsets ...
    trafka produce --topic T            lines from stdin become records
    trafka consume --topic T ...        records to stdout, one per line
    trafka dump-log SEGMENT.log         reads the files directly; no broker needed
    trafka cluster describe             the metadata quorum, brokers and fenced brokers
    trafka cluster remove-voter|add-voter  change the quorum's voters (KIP-853)
    trafka dev-cluster --nodes 3        N real nodes on this machine (broker.devcluster)

Contract: ``run`` returns the exit code: 0 on success, 1 on an error (one line on stderr saying
what went wrong: no broker reachable, topic exists, bad argument), 130 when interrupted. Output
that scripts may parse (consumed records, ``dump-log`` lines) goes to stdout, and nothing else
does. The console tools mirror Kafka's ``kafka-console-producer``/``kafka-console-consumer``
where their options overlap (key parsing, the formatter's field order and its ``null`` and
``NO_HEADERS`` spellings), so habits carry over; ``groups`` mirrors ``kafka-consumer-groups``
(its tables, its refusal to reset the offsets of a group with members, its clamping of new
offsets into the log); see docs/cli.md and docs/groups.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import struct
import sys
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, BinaryIO, TextIO

import trio

from broker.client import (
    EARLIEST,
    LATEST,
    AlterConfigOp,
    Client,
    ClientConfig,
    ClientError,
    ConfigOperation,
    ConfigResource,
    ConnectionConfig,
    ConsumerRecord,
    GroupDescription,
    KafkaError,
    ListOffsetsResult,
    NewTopic,
    OffsetAndMetadata,
    TopicInfo,
    UnsupportedVersion,
    default_partition,
    open_client,
    parse_bootstrap,
)
from broker.config import ConfigSource
from protocol.error_codes import ErrorCode
from protocol.errors import ProtocolError
from protocol.messages.add_raft_voter import AddRaftVoterRequest, AddRaftVoterResponse
from protocol.messages.describe_quorum import DescribeQuorumRequest, DescribeQuorumResponse
from protocol.messages.remove_raft_voter import RemoveRaftVoterRequest, RemoveRaftVoterResponse
from protocol.records import (
    BATCH_LENGTH_MIN,
    BATCH_OVERHEAD_BYTES,
    MAGIC,
    BatchError,
    Compression,
    NewRecord,
    RecordBatchView,
    TimestampType,
)
from replication.raft import METADATA_TOPIC
from storage.checkpoint import topic_id_from_str, topic_id_to_str
from storage.index import OFFSET_ENTRY, TIME_ENTRY
from storage.layout import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, parse_segment_name

BOOTSTRAP_DEFAULT = "127.0.0.1:9092"
STDIN_READ_BYTES = 64 * 1024  # one read of stdin; its whole lines go out as one batch per partition
FETCH_WAIT_MS_MAX = 500  # a console consumer's long poll, shortened near its idle timeout
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130
_MAGIC_AT = 16

COMPRESSIONS = {c.name.lower(): c for c in Compression}
# Group states and types as Kafka spells them (ConsumerGroupState, GroupType); the tool accepts
# any case, as Kafka's does.
GROUP_STATES = ("PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty", "Assigning", "Reconciling")
GROUP_TYPES = ("classic", "consumer", "share", "streams")
RESETTABLE_STATES = ("Empty", "Dead")  # Kafka's tool resets only groups with no members (Dead: no such group)
REBALANCING_STATES = ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling")
ACKS = {"all": -1, "-1": -1, "0": 0, "1": 1}


class ToolError(Exception):
    """A usage or input error, reported as one line on stderr."""


# --- argument parsing ----------------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Register the client subcommands on ``sub`` (an argparse subparsers object)."""
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument("--bootstrap-server", default=BOOTSTRAP_DEFAULT, metavar="HOST:PORT[,HOST:PORT]",
                     help=f"brokers to bootstrap from (default {BOOTSTRAP_DEFAULT})")
    net.add_argument("--request-timeout-ms", type=int, default=30_000, metavar="MS",
                     help="how long to wait for a connection or a response (default 30000)")

    topics = sub.add_parser("topics", help="create, list, describe, delete or reconfigure topics")
    tsub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    p = tsub.add_parser("create", parents=[net], help="create a topic")
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=-1, help="default: the broker's num.partitions")
    p.add_argument("--replication-factor", type=int, default=-1,
                   help="default: the broker's default.replication.factor")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="a topic config (repeatable)")
    p.add_argument("--if-not-exists", action="store_true", help="succeed if the topic exists already")
    tsub.add_parser("list", parents=[net], help="list topic names")
    p = tsub.add_parser("describe", parents=[net], help="partitions, leaders, replicas, ISR, ELR and configs")
    p.add_argument("--topic", help="one topic (default: all)")
    p.add_argument("--all-configs", action="store_true", help="every config, not only the topic's overrides")
    p = tsub.add_parser("delete", parents=[net], help="delete a topic")
    p.add_argument("--topic", required=True)
    p.add_argument("--if-exists", action="store_true", help="succeed if there is no such topic")
    p = tsub.add_parser("alter-config", parents=[net], help="set or remove topic config overrides")
    p.add_argument("--topic", required=True)
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="set a config (repeatable)")
    p.add_argument("--delete-config", action="append", default=[], metavar="KEY",
                   help="remove an override, back to the default (repeatable)")

    groups = sub.add_parser("groups", help="list, describe or delete consumer groups, or reset their offsets")
    gsub = groups.add_subparsers(dest="groups_command", required=True, metavar="ACTION")
    p = gsub.add_parser("list", parents=[net], help="list group ids (with --state/--type: a table)")
    p.add_argument("--state", nargs="?", const="", action="append", metavar="STATE[,STATE]",
                   help="show each group's state; only groups in these states when given (repeatable)")
    p.add_argument("--type", nargs="?", const="", action="append", metavar="TYPE[,TYPE]",
                   help="show each group's type; only groups of these types when given (repeatable)")
    p = gsub.add_parser("describe", parents=[net], help="state, members, and offsets and lag per partition")
    p.add_argument("--group", required=True, action="append", help="a group id (repeatable)")
    p = gsub.add_parser("delete", parents=[net], help="delete groups that have no members, with their offsets")
    p.add_argument("--group", required=True, action="append", help="a group id (repeatable)")
    p = gsub.add_parser("reset-offsets", parents=[net],
                        help="set a group's committed offsets (a dry run unless --execute)")
    p.add_argument("--group", required=True)
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--topic", action="append", metavar="TOPIC[:P,P]",
                       help="a topic, all its partitions or only those listed (repeatable)")
    scope.add_argument("--all-topics", action="store_true", help="every partition the group has an offset for")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="each partition's log start offset")
    to.add_argument("--to-latest", action="store_true", help="each partition's log end offset")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N (clamped into the log)")
    to.add_argument("--to-datetime", metavar="YYYY-MM-DDTHH:MM:SS[.mmm][+HH:MM]",
                    help="the first record at or after this time (no zone: local time); latest if none")
    to.add_argument("--shift-by", type=int, metavar="N", help="the committed offset plus N (clamped into the log)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")
    mode.add_argument("--dry-run", action="store_true", help="only print the plan (the default)")

    p = sub.add_parser("produce", parents=[net], help="send each line of stdin as a record")
    p.add_argument("--topic", required=True)
    p.add_argument("--partition", type=int, help="default: by key hash (as Kafka's), unkeyed lines rotate")
    p.add_argument("--key-separator", metavar="SEP", help="split each line at the first SEP into key and value")
    p.add_argument("--header", action="append", default=[], metavar="KEY=VALUE",
                   help="a header on every record (repeatable)")
    p.add_argument("--acks", choices=sorted(ACKS), default="all", help="default: all")
    p.add_argument("--compression", choices=list(COMPRESSIONS), default="none", help="default: none")

    p = sub.add_parser("consume", parents=[net], help="print records to stdout")
    p.add_argument("--topic", required=True)
    p.add_argument("--partition", type=int, help="default: every partition")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the earliest offset (default: latest)")
    start.add_argument("--offset", help="start at this offset, or 'earliest' or 'latest' (needs --partition)")
    p.add_argument("--max-messages", type=int, help="exit after this many records")
    p.add_argument("--timeout-ms", type=int, help="exit when no record arrives for this long")
    p.add_argument("--print-offsets", action="store_true", help="prefix each record with Offset:N")
    p.add_argument("--print-partition", action="store_true", help="prefix each record with Partition:N")
    p.add_argument("--print-timestamp", action="store_true", help="prefix each record with CreateTime:MS")
    p.add_argument("--print-key", action="store_true", help="print the key before the value")
    p.add_argument("--print-headers", action="store_true", help="print headers as k:v,k:v (or NO_HEADERS)")
    p.add_argument("--key-separator", default="\t", metavar="SEP", help="between printed fields (default tab)")

    p = sub.add_parser("dump-log", help="print the batches of a segment file (offline)")
    p.add_argument("file", help="a segment's .log file")
    p.add_argument("--print-records", action="store_true", help="print each record's key, value and headers")
    p.add_argument("--index", action="store_true", help="also print the segment's .index and .timeindex entries")

    cluster = sub.add_parser("cluster", help="describe the cluster: metadata quorum, brokers, fenced brokers")
    csub = cluster.add_subparsers(dest="cluster_command", required=True)
    csub.add_parser("describe", parents=[net], help="the quorum's leader, epoch and voters, and every broker")
    p = csub.add_parser("remove-voter", parents=[net],
                        help="remove a voter (id and directory id, as describe shows them) from the quorum")
    p.add_argument("--id", type=int, required=True, help="the voter's node id")
    p.add_argument("--directory-id", required=True, help="the voter's directory id (as describe shows it)")
    p = csub.add_parser("add-voter", parents=[net],
                        help="add a caught-up observer (id and directory id, as describe shows them) as a voter")
    p.add_argument("--id", type=int, required=True, help="the node id")
    p.add_argument("--directory-id", required=True, help="its directory id (as describe shows it)")
    p.add_argument("--endpoint", required=True, metavar="HOST:PORT", help="its controller listener")
    p.add_argument("--timeout-ms", type=int, default=30_000, help="how long the leader waits for the commit")

    from broker import devcluster

    devcluster.add_command(sub)


def run(args: argparse.Namespace) -> int:
    """Run one client subcommand; returns the exit code."""
    try:
        if args.command == "dev-cluster":
            from broker import devcluster

            return devcluster.run(args)
        if args.command == "dump-log":
            return dump_log(args.file, sys.stdout, print_records=args.print_records, with_index=args.index)
        if args.command == "topics":
            return trio.run(_topics, args)
        if args.command == "groups":
            return trio.run(_groups, args)
        if args.command == "cluster" and args.cluster_command in ("remove-voter", "add-voter"):
            return trio.run(_cluster_voter_change, args, sys.stdout)
        if args.command == "cluster":
            return trio.run(_cluster_describe, args, sys.stdout)
        if args.command == "produce":
            return trio.run(_produce, args, sys.stdin.buffer)
        if args.command == "consume":
            return trio.run(_consume, args, sys.stdout.buffer)
    except BaseException as e:
        leaf = _sole_exception(e)
        if isinstance(leaf, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        if isinstance(leaf, BrokenPipeError):
            # The reader went away (``trafka consume | head``): nothing to say, and nowhere to say it.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_ERROR
        if isinstance(leaf, (ToolError, ClientError, ProtocolError, OSError)):
            sys.stdout.flush()
            print(f"trafka: error: {leaf}", file=sys.stderr)
            return EXIT_ERROR
        raise
    raise SystemExit(f"unknown command {args.command}")


def _sole_exception(e: BaseException) -> BaseException:
    """The one exception inside (nested) single-member exception groups, else ``e`` itself."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e


def _client(args: argparse.Namespace) -> AbstractAsyncContextManager[Client]:
    try:
        servers = parse_bootstrap(args.bootstrap_server)
    except ValueError as e:
        raise ToolError(f"--bootstrap-server: {e}") from None
    timeout_ms = args.request_timeout_ms
    config = ClientConfig(connection=ConnectionConfig(client_id="trafka-cli", request_timeout_ms=timeout_ms,
                                                      connect_timeout_ms=timeout_ms))
    return open_client(servers, config=config)


def _pairs(items: Sequence[str], option: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ToolError(f"{option} {item!r} is not KEY=VALUE")
        out.append((key, value))
    return out


# --- topics --------------------------------------------------------------------------------------


async def _cluster_describe(args: argparse.Namespace, out: TextIO) -> int:
    """``trafka cluster describe``: Kafka's ``kafka-metadata-quorum describe --status/--replication``
    and ``kafka-cluster``'s broker list in one screen."""
    async with _client(args) as client:
        md = await client.metadata([])
        print(f"ClusterId: {md.cluster_id}", file=out)
        request = DescribeQuorumRequest(topics=[DescribeQuorumRequest.TopicData(
            topic_name=METADATA_TOPIC, partitions=[DescribeQuorumRequest.PartitionData(partition_index=0)])])
        conn = await client.any_connection()
        part = None
        for _ in range(2):
            resp = await conn.request(request, DescribeQuorumResponse)
            part = resp.topics[0].partitions[0] if resp.topics and resp.topics[0].partitions else None
            code = part.error_code if part is not None else resp.error_code
            if code == ErrorCode.NOT_LEADER_OR_FOLLOWER and part is not None and part.leader_id in md.brokers:
                conn = await client.node_connection(part.leader_id)  # only the leader can tell
                continue
            if code != ErrorCode.NONE:
                part = None
            break
        voters: list[int] = []
        observers: list[int] = []
        if part is None:
            print("Quorum: none (a single node, its own controller)", file=out)
        else:
            print(f"Quorum: leader {part.leader_id}, epoch {part.leader_epoch}, "
                  f"high watermark {part.high_watermark}", file=out)
            rows = []
            for kind, replicas in (("voter", part.current_voters), ("observer", part.observers)):
                for r in replicas:
                    (voters if kind == "voter" else observers).append(r.replica_id)
                    directory = "-" if r.replica_directory_id.int == 0 else topic_id_to_str(r.replica_directory_id)
                    rows.append([str(r.replica_id), kind, directory, str(r.log_end_offset),
                                 str(max(part.high_watermark - r.log_end_offset, 0)),
                                 _ms_ago(r.last_fetch_timestamp), _ms_ago(r.last_caught_up_timestamp)])
            for line in _table(["NODE", "ROLE", "DIRECTORY-ID", "LOG-END-OFFSET", "LAG", "LAST-FETCH",
                                "LAST-CAUGHT-UP"], rows):
                print(line, file=out)
        rows = [[str(b.node_id), f"{b.host}:{b.port}", b.rack or "-", "active"]
                for b in sorted(md.brokers.values(), key=lambda b: b.node_id)]
        # Nodes the quorum knows that Metadata does not list are fenced or gone.
        rows += [[str(n), "-", "-", "fenced or offline"] for n in sorted({*voters, *observers} - set(md.brokers))]
        print("Brokers:", file=out)
        for line in _table(["ID", "ADDRESS", "RACK", "STATUS"], rows):
            print(line, file=out)
    return EXIT_OK


def _directory_id(text: str) -> uuid.UUID:
    """A directory id as Kafka prints it (22 characters of base64) or as a hyphenated uuid."""
    try:
        return uuid.UUID(text) if "-" in text and len(text) == 36 else topic_id_from_str(text)
    except ValueError:
        raise ToolError(f"--directory-id {text!r} is not a directory id") from None


async def _cluster_voter_change(args: argparse.Namespace, out: TextIO) -> int:
    """``trafka cluster remove-voter|add-voter``: Kafka's ``kafka-metadata-quorum
    remove-controller|add-controller``, one voter change at a time (RemoveRaftVoter/AddRaftVoter,
    answered by the quorum's leader once the new voter set is committed)."""
    directory = _directory_id(args.directory_id)
    request: RemoveRaftVoterRequest | AddRaftVoterRequest
    response_type: type[RemoveRaftVoterResponse] | type[AddRaftVoterResponse]
    if args.cluster_command == "remove-voter":
        request = RemoveRaftVoterRequest(cluster_id=None, voter_id=args.id, voter_directory_id=directory)
        response_type = RemoveRaftVoterResponse
    else:
        host, sep, port = args.endpoint.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ToolError(f"--endpoint {args.endpoint!r} is not HOST:PORT")
        request = AddRaftVoterRequest(cluster_id=None, timeout_ms=args.timeout_ms, voter_id=args.id,
                                      voter_directory_id=directory,
                                      listeners=[AddRaftVoterRequest.Listener(name="CONTROLLER", host=host,
                                                                              port=int(port))])
        response_type = AddRaftVoterResponse
    async with _client(args) as client:
        conn = await client.any_connection()
        resp = await conn.request(request, response_type)
    if resp.error_code != ErrorCode.NONE:
        raise ToolError(f"{ErrorCode(resp.error_code).name}: {resp.error_message or ''}".rstrip(": "))
    verb = "Removed" if args.cluster_command == "remove-voter" else "Added"
    print(f"{verb} voter {args.id} (directory {topic_id_to_str(directory)}).", file=out)
    return EXIT_OK


def _ms_ago(timestamp_ms: int) -> str:
    if timestamp_ms < 0:
        return "-"
    return f"{max(int(datetime.datetime.now().timestamp() * 1000) - timestamp_ms, 0)} ms ago"


async def _topics(args: argparse.Namespace) -> int:
    out = sys.stdout
    async with _client(args) as client:
        action = args.topics_command
        if action == "create":
            configs = dict(_pairs(args.config, "--config"))
            [result] = await client.create_topics(
                [NewTopic(args.topic, args.partitions, args.replication_factor, configs)])
            if args.if_not_exists and result.error == ErrorCode.TOPIC_ALREADY_EXISTS:
                return EXIT_OK
            result.raise_for_error()
            print(f"Created topic {args.topic}.", file=out)
        elif action == "list":
            md = await client.metadata(None)
            for name in sorted(md.topics):
                print(name, file=out)
        elif action == "describe":
            await _describe(client, args.topic, args.all_configs, out)
        elif action == "delete":
            [deleted] = await client.delete_topics([args.topic])
            if args.if_exists and deleted.error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                return EXIT_OK
            deleted.raise_for_error()
            print(f"Deleted topic {args.topic}.", file=out)
        elif action == "alter-config":
            ops = [AlterConfigOp(k, v, ConfigOperation.SET) for k, v in _pairs(args.config, "--config")]
            ops += [AlterConfigOp(k, None, ConfigOperation.DELETE) for k in args.delete_config]
            if not ops:
                raise ToolError("nothing to change: give --config KEY=VALUE or --delete-config KEY")
            await _require_topic(client, args.topic)
            for r in await client.alter_configs({ConfigResource.topic(args.topic): ops}):
                r.raise_for_error()
            print(f"Completed updating config for topic {args.topic}.", file=out)
    return EXIT_OK


async def _require_topic(client: Client, topic: str) -> TopicInfo:
    md = await client.metadata([topic])
    info = md.topics.get(topic)
    if info is None or info.error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
        raise ToolError(f"topic {topic!r} does not exist")
    if info.error != ErrorCode.NONE:
        raise KafkaError(info.error, context=f"topic {topic!r}")
    return info


def _nodes(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids)


async def _describe(client: Client, topic: str | None, all_configs: bool, out: TextIO) -> None:
    if topic is not None:
        infos = [await _require_topic(client, topic)]
    else:
        md = await client.metadata(None)
        infos = [md.topics[name] for name in sorted(md.topics)]
    try:
        elrs = await client.eligible_leader_replicas([info.name for info in infos]) if infos else {}
    except UnsupportedVersion:
        elrs = {}  # a broker without DescribeTopicPartitions: no ELR to show
    for info in infos:
        configs = await _topic_configs(client, info.name, all_configs)
        rf = max((len(p.replicas) for p in info.partitions), default=0)
        print(f"Topic: {info.name}\tTopicId: {info.topic_id}\tPartitionCount: {len(info.partitions)}\t"
              f"ReplicationFactor: {rf}\tConfigs: {configs}", file=out)
        for p in info.partitions:
            leader = str(p.leader) if p.leader >= 0 else "none"
            line = (f"\tTopic: {info.name}\tPartition: {p.partition}\tLeader: {leader}\t"
                    f"Replicas: {_nodes(p.replicas)}\tIsr: {_nodes(p.isr)}")
            elr, last_known = elrs.get((info.name, p.partition), ((), ()))
            if elr or last_known:  # KIP-966, as kafka-topics --describe shows them
                line += f"\tElr: {_nodes(elr)}\tLastKnownElr: {_nodes(last_known)}"
            if p.offline:
                line += f"\tOffline: {_nodes(p.offline)}"
            if p.error != ErrorCode.NONE:
                line += f"\tError: {ErrorCode.from_code(p.error)!s}"
            print(line, file=out)


async def _topic_configs(client: Client, topic: str, all_configs: bool) -> str:
    """``k=v,k=v``: the topic's overrides (Kafka's describe shows those), or every config."""
    try:
        [result] = await client.describe_configs([ConfigResource.topic(topic)])
    except UnsupportedVersion as e:
        return f"(unavailable: {e})"
    if result.error != ErrorCode.NONE:
        return f"(unavailable: {KafkaError(result.error, result.error_message)})"
    shown = [e for e in result.entries if all_configs or e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG]
    return ",".join(f"{e.name}={'<sensitive>' if e.is_sensitive else e.value or ''}"
                    for e in sorted(shown, key=lambda e: e.name))


# --- groups --------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell, two spaces apart, as Kafka's tools
    print them (cells hold no spaces but the coordinator's, so ``split()`` reads a row back)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [headers, *rows]]


def _choices(values: Sequence[str] | None, known: Sequence[str], option: str) -> list[str]:
    """``--state a,b --state c`` as Kafka's spellings; a bare ``--state`` adds nothing."""
    by_lower = {k.lower(): k for k in known}
    out: list[str] = []
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item.lower() not in by_lower:
                raise ToolError(f"{option} {item!r} is not one of {', '.join(known)}")
            out.append(by_lower[item.lower()])
    return list(dict.fromkeys(out))


async def _groups(args: argparse.Namespace) -> int:
    out = sys.stdout
    async with _client(args) as client:
        action = args.groups_command
        if action == "list":
            await _list_groups(client, args, out)
        elif action == "describe":
            for i, group_id in enumerate(dict.fromkeys(args.group)):
                if i:
                    print(file=out)
                await _describe_group(client, group_id, out)
        elif action == "delete":
            return await _delete_groups(client, args.group, out)
        elif action == "reset-offsets":
            await _reset_offsets(client, args, out)
    return EXIT_OK


async def _list_groups(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    states = _choices(args.state, GROUP_STATES, "--state")
    types = _choices(args.type, GROUP_TYPES, "--type")
    listed = await client.list_groups(states=states, types=types)
    if args.state is None and args.type is None:
        for g in listed:
            print(g.group_id, file=out)
        return
    headers = ["GROUP"] + (["TYPE"] if args.type is not None else []) + (["STATE"] if args.state is not None else [])
    rows = [[g.group_id] + ([g.group_type or "-"] if args.type is not None else [])
            + ([g.state or "-"] if args.state is not None else []) for g in listed]
    for line in _table(headers, rows):
        print(line, file=out)


async def _existing_group(client: Client, group_id: str) -> GroupDescription:
    desc = await client.describe_group(group_id)
    desc.raise_for_error()
    if desc.state == "Dead":
        raise ToolError(f"consumer group {group_id!r} does not exist")
    return desc


def _assignment_text(topics: Sequence[tuple[str, Sequence[int]]]) -> str:
    return ",".join(f"{t}({','.join(str(p) for p in sorted(ps))})" for t, ps in sorted(topics) if ps) or "-"


async def _describe_group(client: Client, group_id: str, out: TextIO) -> None:
    """Three tables, like ``kafka-consumer-groups --describe`` with ``--state``, ``--members
    --verbose`` and the default offsets view: the group, its members, and for every partition
    the group owns or has an offset for, the committed offset, the log end offset and the lag."""
    desc = await _existing_group(client, group_id)
    committed = await client.fetch_offsets(group_id)
    c = desc.coordinator
    for line in _table(["GROUP", "COORDINATOR (ID)", "PROTOCOL-TYPE", "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"],
                       [[group_id, f"{c.host}:{c.port} ({c.node_id})", desc.protocol_type or "-",
                         desc.protocol or "-", desc.state, str(len(desc.members))]]):
        print(line, file=out)
    print(file=out)
    if desc.state in REBALANCING_STATES:
        print(f"Consumer group {group_id!r} is rebalancing: assignments may be incomplete.", file=out)
    if not desc.members:
        print(f"Consumer group {group_id!r} has no active members.", file=out)
    else:
        rows = []
        for m in sorted(desc.members, key=lambda m: (m.client_id, m.member_id)):
            count = "-" if m.assignment is None else str(len(m.partitions))
            rows.append([group_id, m.member_id, m.group_instance_id or "-", m.client_host, m.client_id, count,
                         "-" if m.assignment is None else _assignment_text(m.assignment)])
        for line in _table(["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS",
                            "ASSIGNMENT"], rows):
            print(line, file=out)
    print(file=out)
    owners = {tp: m for m in desc.members for tp in m.partitions}
    partitions = sorted(set(committed) | set(owners))
    ends = await client.list_offsets_many({tp: LATEST for tp in partitions})
    rows = []
    for tp in partitions:
        offset = committed.get(tp)
        end = ends[tp]
        known_end = end.error == ErrorCode.NONE and end.offset >= 0
        owner = owners.get(tp)
        rows.append([group_id, tp[0], str(tp[1]),
                     "-" if offset is None else str(offset.offset),
                     str(end.offset) if known_end else "-",
                     str(end.offset - offset.offset) if known_end and offset is not None else "-",
                     "-" if owner is None else owner.member_id,
                     "-" if owner is None else owner.client_host,
                     "-" if owner is None else owner.client_id])
    for line in _table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID",
                        "HOST", "CLIENT-ID"], rows):
        print(line, file=out)


async def _delete_groups(client: Client, group_ids: Sequence[str], out: TextIO) -> int:
    results = await client.delete_groups(group_ids)
    problems = []
    for group_id, error in results.items():
        if error == ErrorCode.NONE:
            print(f"Deleted group {group_id}.", file=out)
        elif error == ErrorCode.NON_EMPTY_GROUP:
            problems.append(f"group {group_id!r} has active members; stop its consumers (or let their sessions"
                            " time out) before deleting it (NON_EMPTY_GROUP)")
        elif error == ErrorCode.GROUP_ID_NOT_FOUND:
            problems.append(f"group {group_id!r} does not exist (GROUP_ID_NOT_FOUND)")
        else:
            problems.append(str(KafkaError(error, context=f"group {group_id!r}")))
    if problems:
        raise ToolError("; ".join(problems))
    return EXIT_OK


def _parse_datetime_ms(text: str) -> int:
    """An ISO-8601 date-time as ms since the epoch; without a zone it is local time, as in
    Kafka's tool."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ToolError(f"--to-datetime {text!r} is not a date-time like 2024-05-01T12:30:00.000+02:00") from None
    if when.tzinfo is None:
        when = when.astimezone()  # the local zone
    return int(when.timestamp() * 1000)


async def _partitions_to_reset(client: Client, args: argparse.Namespace,
                               committed: Mapping[tuple[str, int], OffsetAndMetadata]) -> list[tuple[str, int]]:
    if args.all_topics:
        if not committed:
            raise ToolError(f"group {args.group!r} has no committed offsets; name the partitions with --topic")
        return sorted(committed)
    out: list[tuple[str, int]] = []
    for spec in args.topic:
        topic, sep, listed = spec.partition(":")
        if not topic:
            raise ToolError(f"--topic {spec!r} names no topic")
        count = len((await _require_topic(client, topic)).partitions)
        if not sep:
            out += [(topic, p) for p in range(count)]
            continue
        for item in listed.split(","):
            try:
                p = int(item)
            except ValueError:
                raise ToolError(f"--topic {spec!r}: {item!r} is not a partition number") from None
            if not 0 <= p < count:
                raise ToolError(f"topic {topic!r} has {count} partitions; there is no partition {p}")
            out.append((topic, p))
    return sorted(dict.fromkeys(out))


async def _offsets_at(client: Client, partitions: Sequence[tuple[str, int]], timestamp: int
                      ) -> dict[tuple[str, int], ListOffsetsResult]:
    results = await client.list_offsets_many({tp: timestamp for tp in partitions})
    for (topic, partition), r in results.items():
        r.raise_for_error(topic, partition)
    return results


async def _clamped(client: Client, wanted: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Kafka's ``checkOffsetsRange``: past the log end becomes the log end, before the log start
    the log start, each with a note on stderr."""
    starts = await _offsets_at(client, list(wanted), EARLIEST)
    ends = await _offsets_at(client, list(wanted), LATEST)
    out = {}
    for tp, offset in wanted.items():
        start, end = starts[tp].offset, ends[tp].offset
        if offset > end:
            print(f"note: new offset {offset} of {tp[0]}-{tp[1]} is past its log end; using {end}", file=sys.stderr)
            offset = end
        elif offset < start:
            print(f"note: new offset {offset} of {tp[0]}-{tp[1]} is before its log start; using {start}",
                  file=sys.stderr)
            offset = start
        out[tp] = offset
    return out


async def _reset_plan(client: Client, args: argparse.Namespace, partitions: Sequence[tuple[str, int]],
                      committed: Mapping[tuple[str, int], OffsetAndMetadata]) -> dict[tuple[str, int], int]:
    if args.to_earliest or args.to_latest:
        found = await _offsets_at(client, partitions, EARLIEST if args.to_earliest else LATEST)
        return {tp: found[tp].offset for tp in partitions}
    if args.to_datetime is not None:
        found = await _offsets_at(client, partitions, _parse_datetime_ms(args.to_datetime))
        late = [tp for tp in partitions if found[tp].offset < 0]
        ends = await _offsets_at(client, late, LATEST) if late else {}
        for tp in late:
            print(f"note: {tp[0]}-{tp[1]} has no record at or after {args.to_datetime}; using its log end",
                  file=sys.stderr)
        return {tp: ends[tp].offset if tp in ends else found[tp].offset for tp in partitions}
    if args.to_offset is not None:
        return await _clamped(client, {tp: args.to_offset for tp in partitions})
    wanted = {}
    for tp in partitions:
        current = committed.get(tp)
        if current is None:
            raise ToolError(f"cannot shift the offset of {tp[0]}-{tp[1]}: group {args.group!r} has no committed"
                            " offset there")
        wanted[tp] = current.offset + args.shift_by
    return await _clamped(client, wanted)


async def _reset_offsets(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    """Kafka's ``--reset-offsets``: only for a group with no members (an unknown group is
    created by the commit); a plan table on stdout, committed only with ``--execute``."""
    group_id = args.group
    desc = await client.describe_group(group_id)
    desc.raise_for_error()
    if desc.state not in RESETTABLE_STATES:
        raise ToolError(f"the offsets of group {group_id!r} can only be reset while it has no members, but it is"
                        f" {desc.state} with {len(desc.members)} member{'' if len(desc.members) == 1 else 's'};"
                        " stop its consumers first")
    committed = await client.fetch_offsets(group_id)
    partitions = await _partitions_to_reset(client, args, committed)
    plan = await _reset_plan(client, args, partitions, committed)
    rows = [[group_id, t, str(p), str(committed[(t, p)].offset) if (t, p) in committed else "-", str(plan[(t, p)])]
            for t, p in partitions]
    for line in _table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], rows):
        print(line, file=out)
    if not args.execute:
        out.flush()
        print("Dry run: nothing was committed. Run again with --execute to commit these offsets.", file=sys.stderr)
        return
    errors = await client.commit_offsets(group_id, {tp: OffsetAndMetadata(plan[tp]) for tp in partitions})
    failed = {tp: e for tp, e in errors.items() if e != ErrorCode.NONE}
    if not failed:
        return
    if all(e == ErrorCode.UNKNOWN_MEMBER_ID for e in failed.values()):
        raise ToolError(f"group {group_id!r} gained members while its offsets were being reset; nothing was"
                        " committed (UNKNOWN_MEMBER_ID)")
    (topic, partition), error = next(iter(sorted(failed.items())))
    raise KafkaError(error, context=f"commit the offset of {topic}-{partition} for group {group_id!r}"
                     f" ({len(failed)} of {len(errors)} partitions failed)")


# --- console producer ----------------------------------------------------------------------------


async def _produce(args: argparse.Namespace, stdin: BinaryIO) -> int:
    separator = None if args.key_separator is None else args.key_separator.encode()
    if separator == b"":
        raise ToolError("--key-separator must not be empty")
    headers = [(k, v.encode()) for k, v in _pairs(args.header, "--header")]
    acks = ACKS[args.acks]
    compression = COMPRESSIONS[args.compression]
    async with _client(args) as client:
        partitions = len((await _require_topic(client, args.topic)).partitions)
        if args.partition is not None and not 0 <= args.partition < partitions:
            raise ToolError(f"topic {args.topic!r} has {partitions} partitions; there is no partition {args.partition}")
        sticky = 0  # unkeyed records: one partition per batch, rotating (Kafka's sticky partitioning)
        line_number = 0
        pending = b""
        eof = False
        while not eof:
            chunk = await trio.to_thread.run_sync(_read_some, stdin, abandon_on_cancel=True)
            eof = not chunk
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            if eof and pending:
                lines.append(pending)
            batches: dict[int, list[NewRecord]] = {}
            for line in lines:
                line_number += 1
                key, value = _split_line(line.removesuffix(b"\r"), separator, line_number)
                if args.partition is not None:
                    partition = args.partition
                elif key is not None:
                    partition = default_partition(key, partitions)
                else:
                    partition = sticky
                batches.setdefault(partition, []).append(NewRecord(key, value, headers))
            for partition, records in batches.items():
                await client.produce(args.topic, partition, records, acks=acks, compression=compression)
            if lines:
                sticky = (sticky + 1) % partitions
    return EXIT_OK


def _read_some(stdin: BinaryIO) -> bytes:
    read1 = getattr(stdin, "read1", None)
    return read1(STDIN_READ_BYTES) if read1 is not None else stdin.read(STDIN_READ_BYTES)


def _split_line(line: bytes, separator: bytes | None, line_number: int) -> tuple[bytes | None, bytes]:
    if separator is None:
        return None, line
    key, sep, value = line.partition(separator)
    if not sep:
        raise ToolError(f"no key separator found on line {line_number}: {line.decode(errors='replace')!r}")
    return key, value


# --- console consumer ----------------------------------------------------------------------------


async def _consume(args: argparse.Namespace, out: BinaryIO) -> int:
    if args.offset is not None and args.partition is None:
        raise ToolError("--offset needs --partition")
    if args.max_messages is not None and args.max_messages < 0:
        raise ToolError("--max-messages must not be negative")
    count = 0
    try:
        async with _client(args) as client:
            info = await _require_topic(client, args.topic)
            if args.partition is not None and not 0 <= args.partition < len(info.partitions):
                raise ToolError(f"topic {args.topic!r} has {len(info.partitions)} partitions;"
                                f" there is no partition {args.partition}")
            parts = [args.partition] if args.partition is not None else [p.partition for p in info.partitions]
            reset = EARLIEST if args.from_beginning else LATEST
            positions: dict[tuple[str, int], int] = {}
            for p in parts:
                positions[(args.topic, p)] = await _start_offset(client, args.topic, p, args.offset, reset)
            idle_s = None if args.timeout_ms is None else args.timeout_ms / 1000
            last_record_at = trio.current_time()
            while args.max_messages is None or count < args.max_messages:
                wait_ms = FETCH_WAIT_MS_MAX
                if idle_s is not None:
                    left_s = last_record_at + idle_s - trio.current_time()
                    if left_s <= 0:
                        break
                    wait_ms = max(0, min(wait_ms, int(left_s * 1000)))
                results = await client.fetch_many(positions, max_wait_ms=wait_ms)
                for tp, result in results.items():
                    if result.error == ErrorCode.OFFSET_OUT_OF_RANGE:
                        positions[tp] = (await client.list_offsets(tp[0], tp[1], reset)).offset
                        continue
                    result.raise_for_error()
                    for record in result.records:
                        if args.max_messages is not None and count >= args.max_messages:
                            break
                        out.write(_format(record, args))
                        count += 1
                        positions[tp] = record.offset + 1
                    else:
                        positions[tp] = result.next_offset
                    if result.records:
                        last_record_at = trio.current_time()
                out.flush()
    finally:
        out.flush()
        print(f"Processed a total of {count} messages", file=sys.stderr)
    return EXIT_OK


async def _start_offset(client: Client, topic: str, partition: int, offset: str | None, reset: int) -> int:
    if offset is None or offset in ("earliest", "latest"):
        when = reset if offset is None else (EARLIEST if offset == "earliest" else LATEST)
        return (await client.list_offsets(topic, partition, when)).offset
    try:
        value = int(offset)
    except ValueError:
        raise ToolError(f"--offset {offset!r} is not a number, 'earliest' or 'latest'") from None
    if value < 0:
        raise ToolError(f"--offset must not be negative, not {value}")
    return value


def _format(record: ConsumerRecord, args: argparse.Namespace) -> bytes:
    """One record as Kafka's console consumer prints it: the asked-for prefixes in Kafka's order
    (timestamp, partition, offset, headers, key), then the value, separated by the separator."""
    fields: list[bytes] = []
    if args.print_timestamp:
        if record.timestamp < 0:
            fields.append(b"NO_TIMESTAMP")
        else:
            kind = "LogAppendTime" if record.timestamp_type is TimestampType.LOG_APPEND_TIME else "CreateTime"
            fields.append(f"{kind}:{record.timestamp}".encode())
    if args.print_partition:
        fields.append(f"Partition:{record.partition}".encode())
    if args.print_offsets:
        fields.append(f"Offset:{record.offset}".encode())
    if args.print_headers:
        if record.headers:
            fields.append(b",".join(k.encode() + b":" + (b"null" if v is None else v) for k, v in record.headers))
        else:
            fields.append(b"NO_HEADERS")
    if args.print_key:
        fields.append(b"null" if record.key is None else record.key)
    fields.append(b"null" if record.value is None else record.value)
    return args.key_separator.encode().join(fields) + b"\n"


# --- dump-log ------------------------------------------------------------------------------------

_LENGTH_PREFIX = struct.Struct(">qi")


def _text(data: bytes | memoryview | None) -> str:
    return "null" if data is None else bytes(data).decode("utf-8", "backslashreplace")


def dump_log(path: str, out: TextIO, *, print_records: bool = False, with_index: bool = False) -> int:
    """Print every batch of a segment file: offsets, count, position, size, CRC status, codec,
    producer fields and timestamps; its records with ``print_records``; its index files with
    ``with_index``. Damage is reported, not fatal: the exit code is 0 once the file could be read.
    """
    name = os.path.basename(path)
    parsed = parse_segment_name(name)
    print(f"Dumping {path}", file=out)
    if parsed is not None:
        print(f"Log starting offset: {parsed[0]}", file=out)
    batch_ends: dict[int, int] = {}  # position -> last offset, to check the offset index
    batches = records = invalid = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < size:
            head = f.read(BATCH_OVERHEAD_BYTES)
            if len(head) < BATCH_OVERHEAD_BYTES:
                print(f"position: {pos} trailing: {size - pos} bytes, too few for a batch header", file=out)
                invalid += 1
                break
            _, length = _LENGTH_PREFIX.unpack(head)
            if length < BATCH_LENGTH_MIN or pos + BATCH_OVERHEAD_BYTES + length > size:
                print(f"position: {pos} trailing: {size - pos} bytes; batch length {length} is impossible here"
                      " (the rest of the file cannot be read as batches)", file=out)
                invalid += 1
                break
            data = head + f.read(length)
            batches += 1
            n, ok = _dump_batch(data, pos, out, print_records)
            records += n
            invalid += 0 if ok else 1
            if ok:
                batch_ends[pos] = RecordBatchView(data).last_offset
            pos += len(data)
    print(f"Batches: {batches} Records: {records} Invalid: {invalid} Size: {size}", file=out)
    if with_index:
        base = parsed[0] if parsed is not None else 0
        stem = path[: -len(LOG_SUFFIX)] if path.endswith(LOG_SUFFIX) else path
        _dump_offset_index(stem + INDEX_SUFFIX, base, batch_ends, out)
        _dump_time_index(stem + TIME_INDEX_SUFFIX, base, out)
    return EXIT_OK


def _dump_batch(data: bytes, pos: int, out: TextIO, print_records: bool) -> tuple[int, bool]:
    """Print one batch (``data`` is exactly its bytes); the records it read and whether it is valid."""
    magic = data[_MAGIC_AT] if len(data) > _MAGIC_AT else -1
    if magic != MAGIC:
        print(f"position: {pos} size: {len(data)} magic: {magic} isValid: false"
              " problem: not a v2 record batch", file=out)
        return 0, False
    view = RecordBatchView(data)
    computed = view.compute_crc()
    problem = None
    try:
        view.validate()
    except BatchError as e:
        problem = str(e)
    try:
        codec = view.compression.name.lower()
    except BatchError:
        codec = f"unknown({view.attributes & 0x07})"
    ts_type = "LogAppendTime" if view.timestamp_type is TimestampType.LOG_APPEND_TIME else "CreateTime"
    crc_status = "valid" if computed == view.crc else f"invalid (computed {computed:#010x})"
    last_sequence = -1 if view.base_sequence < 0 else view.base_sequence + view.last_offset_delta
    print(f"baseOffset: {view.base_offset} lastOffset: {view.last_offset} count: {view.record_count}"
          f" position: {pos} size: {view.size_bytes} crc: {view.crc:#010x} {crc_status}"
          f" isValid: {str(problem is None).lower()} compression: {codec}"
          f" producerId: {view.producer_id} producerEpoch: {view.producer_epoch}"
          f" baseSequence: {view.base_sequence} lastSequence: {last_sequence}"
          f" partitionLeaderEpoch: {view.partition_leader_epoch}"
          f" isTransactional: {str(view.is_transactional).lower()} isControl: {str(view.is_control).lower()}"
          f" timestampType: {ts_type} baseTimestamp: {view.base_timestamp} maxTimestamp: {view.max_timestamp}",
          file=out)
    if problem is not None:
        print(f"| problem: {problem}", file=out)
    if not print_records:
        return view.record_count, problem is None
    count = 0
    try:
        for r in view.records():
            count += 1
            headers = ",".join(f"{k}={_text(v)}" for k, v in r.headers)
            print(f"| offset: {r.offset} timestamp: {r.timestamp}"
                  f" keySize: {-1 if r.key is None else len(r.key)}"
                  f" valueSize: {-1 if r.value is None else len(r.value)}"
                  f" headers: [{headers}] key: {_text(r.key)} value: {_text(r.value)}", file=out)
    except BatchError as e:
        print(f"| cannot read further records: {e}", file=out)
        return count, False
    return count, problem is None


def _read_entries(path: str, entry: struct.Struct, out: TextIO) -> list[tuple[int, int]] | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        print(f"No index file {path}", file=out)
        return None
    whole = len(data) - len(data) % entry.size
    entries = [entry.unpack_from(data, i) for i in range(0, whole, entry.size)]
    print(f"Dumping {path} ({len(entries)} entries)", file=out)
    if whole != len(data):
        print(f"trailing: {len(data) - whole} bytes, not a whole entry", file=out)
    return entries


def _dump_offset_index(path: str, base: int, batch_ends: dict[int, int], out: TextIO) -> None:
    entries = _read_entries(path, OFFSET_ENTRY, out)
    for relative, position in entries or ():
        offset = base + relative
        found = batch_ends.get(position)
        note = "" if found == offset else (
            " MISMATCH: no batch starts at this position" if found is None
            else f" MISMATCH: the batch at this position ends at offset {found}")
        print(f"offset: {offset} position: {position}{note}", file=out)


def _dump_time_index(path: str, base: int, out: TextIO) -> None:
    entries = _read_entries(path, TIME_ENTRY, out)
    for timestamp, relative in entries or ():
        print(f"timestamp: {timestamp} offset: {base + relative}", file=out)
