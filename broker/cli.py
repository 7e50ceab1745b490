"""The ``trafka`` console script.

    trafka serve [--config server.properties] [--override key=value ...]

``serve`` with no arguments runs a single node on 127.0.0.1:9092 with its data in
``./trafka-data``. Other subcommands (topics, produce, consume, dump-log) speak the Kafka protocol
through the project's own client; see ``trafka --help``. ``trafka bench ...`` is
``python -m tools.bench ...``: the same arguments, the same output and exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import signal
import sys
import time
from collections.abc import Sequence

import trio

from broker.config import BrokerConfig, ConfigError, load
from broker.core import Broker

log = logging.getLogger("trafka")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def serve(config: BrokerConfig, *, ready: trio.Event | None = None) -> None:
    """Run a broker until SIGTERM or SIGINT, then shut it down cleanly."""
    import broker.handlers  # noqa: F401  (registers the routes)
    from broker.server import Listener, Server
    from storage.fs import OsFileSystem

    b = Broker(config, OsFileSystem(), now_ms=_wall_ms, rng=random.Random())
    b.open()
    try:
        # A cluster node serves its controller listeners too (the quorum's and the controller's
        # requests); a single node has no use for them.
        listeners = [Listener(lst.name, lst.host, lst.port) for lst in config.listeners
                     if b.cluster is not None or lst.name not in config.controller_listener_names]
        server = Server(b, listeners)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(server.run)
            b.advertised_address = _advertised(config, bound)
            cluster_scope = trio.CancelScope()
            if b.cluster is not None and b.replicas is not None:
                await nursery.start(_run_cluster, b, cluster_scope)
            log.info("trafka node %d serving %s (cluster %s), data in %s", b.node_id,
                     ", ".join(f"{h}:{p}" for h, p in bound), b.cluster_id, b.log_dir)
            print(f"trafka: listening on {', '.join(f'{h}:{p}' for h, p in bound)}", flush=True)
            if ready is not None:
                ready.set()
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    log.info("shutting down")
                    if b.cluster is not None:
                        # Kafka's controlled shutdown: leaderships move away first, so clients
                        # fail over at once instead of after broker.session.timeout.ms.
                        await b.cluster.controlled_shutdown()
                    server.shutdown()
                    cluster_scope.cancel()
                    break
    finally:
        b.close()
    log.info("stopped cleanly")


async def _run_cluster(b: Broker, scope: trio.CancelScope, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The cluster node and the replica manager, until ``scope`` is cancelled (at shutdown)."""
    assert b.cluster is not None and b.replicas is not None
    with scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(b.cluster.run)
            await nursery.start(b.replicas.run)
            task_status.started()


def _advertised(config: BrokerConfig, bound: list[tuple[str, int]]) -> tuple[str, int]:
    """The first advertised listener; its port 0 (an ephemeral listener) becomes the bound port."""
    if config.advertised_listeners:
        a = config.advertised_listeners[0]
        host = a.host or bound[0][0]
        port = a.port or bound[0][1]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return host, port
    return bound[0]


def main(argv: Sequence[str] | None = None) -> int:
    args_given = list(sys.argv[1:] if argv is None else argv)
    if args_given[:1] == ["bench"]:
        # Everything after the word goes to the benchmark runner untouched (its options are its own).
        from tools.bench.__main__ import main as bench_main

        return bench_main(args_given[1:])
    parser = argparse.ArgumentParser(prog="trafka", description="A Kafka-compatible broker.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run a broker")
    p_serve.add_argument("--config", "-c", help="a server.properties file")
    p_serve.add_argument("--override", "-o", action="append", default=[], metavar="KEY=VALUE",
                         help="set a property (repeatable); wins over the file")
    p_serve.add_argument("--log-level", default="INFO")
    from broker import tool

    tool.add_commands(sub)
    sub.add_parser("bench", add_help=False, help="run a benchmark: trafka bench {codec,storage,broker} [--quick] "
                                                  "[options], as python -m tools.bench")
    args = parser.parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            config = load(args.config, args.override)
            for lst in config.listeners:
                if lst.security_protocol != "PLAINTEXT":
                    raise ConfigError(f"listener {lst} uses {lst.security_protocol}; only PLAINTEXT is "
                                      "supported so far", key="listeners")
        except ConfigError as e:
            print(f"trafka: configuration error: {e}", file=sys.stderr)
            return 2
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve, config)
        return 0
    return tool.run(args)


if __name__ == "__main__":
    sys.exit(main())
