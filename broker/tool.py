"""The ``trafka`` subcommands other than ``serve``, speaking the Kafka protocol to a broker."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register the client subcommands on ``sub`` (an argparse subparsers object)."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit(f"unknown command {args.command}")
