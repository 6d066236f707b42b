"""`dynakv node`: run one node in the foreground until SIGTERM or SIGINT.

A first start names the node and its addresses; everything is saved in DIR/node.json, so a restart
needs only `--data DIR` (flags given on a restart override the saved settings and are saved).
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path
from typing import Any

from dynakv.cli.node_http import start_http
from dynakv.core.config import N_VAL_MAX, PARTITIONS_MAX, PARTITIONS_MIN
from dynakv.core.errors import ConfigError
from dynakv.protocol.ports import StorageError
from dynakv.runtime import node_runner
from dynakv.runtime.node_state import Address, Overrides, check_name, parse_address
from dynakv.storage.registry import ENGINES

EXIT_USAGE = 2

NODE_EPILOG = """\
files in DIR:
  node.json   the node's settings: name, cluster_name, listen, client, http, members {name: "host:port"},
              storage, partitions, n_val, timing and limits overrides, buckets {name: {n_val, r, w, ...}},
              seeds ["host:port"]
  ready.json  written when the listeners are bound: {"name", "pid", "cluster", "client", "http"}, the
              real "host:port" addresses (port 0 is allowed); removed on a clean stop
  storage/    the storage engine's files
  dynakv.lock one node per directory

Addresses are IPv4 loopback (127.0.0.0/8). Membership: with --member the ring is claimed from the sorted
member names (a static cluster); with --seed the node finds its cluster through a seed and stages its
own join (`dynakv cluster plan` / `commit` admit it); with neither it forms a new one-node cluster. The
cluster state (members, ring, pending moves) is kept in the storage's meta space and wins on restart.
SIGTERM or SIGINT stops the node cleanly (storage flushed) with exit code 0.
"""


def _address(field: str, text: str) -> Address:
    try:
        return parse_address(text, field)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _member(text: str) -> tuple[str, Address]:
    name, sep, address = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=HOST:PORT")
    try:
        return check_name(name, "member"), parse_address(address, "member")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _name(text: str) -> str:
    try:
        return check_name(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "node",
        help="run one node in the foreground",
        description="Run one dynakv node until SIGTERM or SIGINT. A restart needs only --data DIR.",
        epilog=NODE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--data", required=True, type=Path, metavar="DIR", help="the node's data directory")
    add("--name", type=_name, help="the node's name (first start)")
    add("--listen", type=functools.partial(_address, "listen"), metavar="HOST:PORT", help="cluster address")
    add(
        "--client",
        type=functools.partial(_address, "client"),
        metavar="HOST:PORT",
        help="native client protocol address (default: the listen host, any port)",
    )
    add("--http", type=functools.partial(_address, "http"), metavar="HOST:PORT", help="HTTP API address")
    add(
        "--member",
        type=_member,
        action="append",
        metavar="NAME=HOST:PORT",
        help="another member's cluster address (repeat; replaces the saved list)",
    )
    add(
        "--seed",
        type=functools.partial(_address, "seed"),
        action="append",
        metavar="HOST:PORT",
        help="a cluster node's cluster address: find the cluster through it and stage this node's join "
        "(repeat for more seeds; without --seed or --member the node forms a new one-node cluster)",
    )
    add("--cluster-name", metavar="C", help="cluster name (default dynakv)")
    add("--storage", choices=ENGINES, help="storage engine (default sqlite)")
    add(
        "--partitions",
        type=_int,
        metavar="Q",
        help=f"ring size, a power of two {PARTITIONS_MIN}-{PARTITIONS_MAX}",
    )
    add(
        "--n-val",
        type=_int,
        metavar="N",
        help=f"replicas per key, 1-{N_VAL_MAX} (default 3, or fewer members)",
    )
    add("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    parser.set_defaults(run=run_node)


def run_node(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    given = Overrides(
        name=args.name,
        listen=args.listen,
        client=args.client,
        http=args.http,
        members=dict(args.member) if args.member else None,
        cluster_name=args.cluster_name,
        storage=args.storage,
        partitions=args.partitions,
        n_val=args.n_val,
        seeds=tuple(args.seed) if args.seed else None,
    )
    try:
        return node_runner.run_node(args.data, given, start_http)
    except ConfigError as err:
        sys.stderr.write(f"dynakv node: {err}\n")
        return EXIT_USAGE
    except (StorageError, OSError) as err:
        sys.stderr.write(f"dynakv node: {err}\n")
        return 1
