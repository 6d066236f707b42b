"""The `dynakv` command: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dynakv import __version__
from dynakv.cli import admin_cmd, cluster_cmd, dev_cmd, kv_cmd, node_cmd, ring_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynakv",
        description="dynakv: a Dynamo-style, highly available key-value store.",
    )
    parser.add_argument("--version", action="version", version=f"dynakv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ring_cmd.register(commands)
    node_cmd.register(commands)
    dev_cmd.register(commands)
    kv_cmd.register(commands)
    admin_cmd.register(commands)
    cluster_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except BrokenPipeError:
        # `dynakv ... | head` closed our stdout: not an error worth a traceback.
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return code
