"""`dynakv cluster plan|commit|leave|remove|clear|transfers` and `dynakv ring --host|--cluster`.

Membership changes are staged, as in Riak: `leave NAME` (a member hands its partitions off, then exits)
and `remove NAME` (a dead member: its partitions are claimed again) stage a change on the node asked,
and gossip spreads it; `plan` shows the staged changes and the partition moves they cause; `commit`
carries them out on the claimant (the node asked forwards it). A node started with `--seed` stages its
own join. `transfers` shows the pending ownership moves and how far every member's transfers got
(cli/transfers_view.py); `ring` the members and what they own.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from dynakv.cli.admin_cmd import TARGET_HELP, _addresses, _failed, _parser, _seconds
from dynakv.cli.kv_cmd import EXIT_OK, EXIT_UNAVAILABLE
from dynakv.cli.transfers_view import moves_json, settled, transfers_json, transfers_lines
from dynakv.client import Client, DynakvClientError
from dynakv.protocol.cluster_admin_messages import ClusterPlanReply, ClusterTransfersReply, StageKind

CLUSTER_EPILOG: Final = (
    TARGET_HELP
    + """
Staged changes wait for `dynakv cluster commit`; `plan` shows what it would do (the moves it causes).
A node joins by starting with `dynakv node --seed HOST:PORT` (it stages its own join).

exit codes: 0 done, 2 usage, 4 refused (nothing staged, not a member, ...), 5 server failure,
6 no node reachable or the claimant unreachable.
"""
)

TRANSFERS_EPILOG: Final = (
    CLUSTER_EPILOG
    + """
The node asked collects every live member's transfers (a member that does not answer within 2 s is
shown as "no answer", one it counts down as "unreachable", without waiting), and prints per pending move
the progress of the ownership transfer carrying it: [#####.....] percent, keys acknowledged of the keys
the partition held when the transfer started (a transfer resumed after a restart counts from there),
bytes acknowledged (counts only, no percentage, when the total is unknown); "sent" once its sender
finished it (the move completes when all of the sender's transfers are acknowledged), "waiting" before
it starts. Then the other transfers under way (ownership of neighbouring partitions, hinted handoff,
repair) and a summary line.

--json prints {"ring_version", "transfers_pending" (moves not complete), "moves": [{"partition", "from",
"to", "complete", "state", "sender", "keys_acked", "keys_total", "bytes_acked", "percent"}],
"other_transfers": [{"node", "kind", "target", "partition", "state", "keys_acked", "keys_total",
"bytes_acked", "percent"}], "nodes": {NAME: "answered" | "no answer" | "unreachable"}, "summary":
{"moves", "moves_complete", "transfers_running", "keys_acked", "keys_total", "keys_total_unknown",
"bytes_acked", "no_answer"}}; numbers not known are null.

--watch S prints the view again every S seconds (a blank line between two; with --json one compact
object a line) until no move is left and no transfer runs, then exits 0; after 1000 views it stops
with exit code 3.
"""
)
WATCH_REFRESHES_MAX: Final = 1000


def register(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="stage, plan and commit membership changes; show transfers",
        description="Stage, plan and commit membership changes (as Riak's `riak admin cluster`).",
        epilog=CLUSTER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = cluster.add_subparsers(dest="verb", metavar="VERB", required=True)
    simple: list[tuple[str, str, Callable[[Client, argparse.Namespace], Any]]] = [
        ("plan", "show the staged changes and the partition moves they cause", lambda c, a: c.cluster_plan()),
        ("commit", "carry out the staged changes (on the claimant)", lambda c, a: c.cluster_commit()),
        ("clear", "drop every staged change", lambda c, a: c.cluster_stage(StageKind.CLEAR)),
        (
            "transfers",
            "show the pending moves and how far their transfers got",
            lambda c, a: c.cluster_transfers(),
        ),
        ("leave", "stage: NAME hands its partitions off, then exits", _stager(StageKind.LEAVE)),
        ("remove", "stage: NAME (dead) is removed, its partitions claimed again", _stager(StageKind.REMOVE)),
    ]
    for name, help_text, call in simple:
        parser = _parser(verbs, name, help_text)
        parser.epilog = CLUSTER_EPILOG
        if name in ("leave", "remove"):
            parser.add_argument("name", metavar="NAME", help="the member's node name")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.set_defaults(run=functools.partial(_run, parser, call))
        if name == "transfers":
            parser.epilog = TRANSFERS_EPILOG
            parser.add_argument(
                "--watch",
                type=_seconds,
                metavar="S",
                help="print again every S seconds until nothing is left to move",
            )
            parser.set_defaults(run=functools.partial(_run_transfers, parser))


def _stager(kind: StageKind) -> Callable[[Client, argparse.Namespace], Any]:
    return lambda client, args: client.cluster_stage(kind, args.name)


def _run(
    parser: argparse.ArgumentParser,
    call: Callable[[Client, argparse.Namespace], Any],
    args: argparse.Namespace,
) -> int:
    addresses = _addresses(parser, args)
    try:
        with Client(addresses) as client:
            reply = call(client, args)
    except DynakvClientError as err:
        return _failed(err)
    if args.json:
        sys.stdout.write(json.dumps(reply_json(reply), indent=2) + "\n")
    else:
        sys.stdout.write("".join(line + "\n" for line in reply_lines(reply)))
    return EXIT_OK


def _run_transfers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`cluster transfers`: one view, or with --watch one every S seconds until nothing is left."""
    if args.watch is None:
        return _run(parser, lambda client, _args: client.cluster_transfers(), args)
    addresses = _addresses(parser, args)
    try:
        with Client(addresses) as client:
            for shown in range(WATCH_REFRESHES_MAX):
                reply = client.cluster_transfers()
                _write_view(reply, args.json, first=shown == 0)
                if settled(reply):
                    return EXIT_OK
                time.sleep(args.watch)
    except DynakvClientError as err:
        return _failed(err)
    sys.stderr.write(f"still moving after {WATCH_REFRESHES_MAX} views; run it again\n")
    return EXIT_UNAVAILABLE


def _write_view(reply: ClusterTransfersReply, as_json: bool, *, first: bool) -> None:
    if as_json:
        text = json.dumps(transfers_json(reply)) + "\n"  # one object a line
    else:
        text = ("" if first else "\n") + "".join(line + "\n" for line in transfers_lines(reply))
    sys.stdout.write(text)
    sys.stdout.flush()


def reply_json(reply: ClusterPlanReply | ClusterTransfersReply) -> dict[str, Any]:
    if isinstance(reply, ClusterPlanReply):
        return {"claimant": reply.claimant, "ring_version": reply.ring_version, "lines": list(reply.lines)}
    return transfers_json(reply)


def reply_lines(reply: ClusterPlanReply | ClusterTransfersReply) -> list[str]:
    if isinstance(reply, ClusterPlanReply):
        return [f"claimant {reply.claimant}, ring version {reply.ring_version}", *reply.lines]
    return transfers_lines(reply)


def _moves_lines(reply: ClusterTransfersReply) -> list[str]:
    pending = sum(1 for m in reply.moves if not m.complete)
    head = f"ring version {reply.ring_version}: {len(reply.moves)} ownership moves, {pending} pending"
    rows = [
        f"  partition {m.partition}: {m.old_owner} -> {m.new_owner}{' (complete)' if m.complete else ''}"
        for m in reply.moves
    ]
    return [head, *rows]


# -- dynakv ring --host|--cluster ------------------------------------------------------------------------

RING_EPILOG: Final = (
    TARGET_HELP
    + """
Without a RING_COMMAND, `dynakv ring --host ADDR` (or --cluster DIR) shows the live ring as that node
sees it: ring version, members with their state and the partitions they own, the moves of the last
commit until the ring flips them (`dynakv cluster transfers` shows their progress).
--json prints {"ring_version", "partitions", "n_val", "members": [{"name", "state", "partitions"}],
"owners": [the owner of partition 0, of 1, ...], "transfers_pending" (moves not complete),
"moves": [{"partition", "from", "to", "complete"}]}.
"""
)


def add_ring_view(ring: argparse.ArgumentParser) -> None:
    """`dynakv ring` with a target and no subcommand: the live ring (`ring plan` sizes one offline)."""
    ring.epilog = RING_EPILOG
    ring.formatter_class = argparse.RawDescriptionHelpFormatter
    target = ring.add_mutually_exclusive_group()
    target.add_argument("--cluster", type=Path, metavar="DIR", help="a `dynakv dev` directory")
    target.add_argument("--host", metavar="HOST:PORT", help="one node's client address")
    ring.add_argument("--json", action="store_true", help="print one JSON object")
    ring.set_defaults(run=functools.partial(_run_ring, ring))


def _run_ring(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.host is None and args.cluster is None:
        parser.error("give --host HOST:PORT or --cluster DIR (or a RING_COMMAND such as plan)")
    addresses = _addresses(parser, args)
    try:
        with Client(addresses) as client:
            status = client.status()
            transfers = client.cluster_transfers()
    except DynakvClientError as err:
        return _failed(err)
    view = {
        "ring_version": transfers.ring_version,
        "partitions": status.partitions,
        "n_val": status.n_val,
        "members": [
            {"name": m.name, "state": m.state, "partitions": m.partitions_owned} for m in status.members
        ],
        "owners": list(transfers.owners),
        **{k: v for k, v in moves_json(transfers).items() if k != "ring_version"},
    }
    if args.json:
        sys.stdout.write(json.dumps(view, indent=2) + "\n")
        return EXIT_OK
    lines = [f"ring version {transfers.ring_version}: {status.partitions} partitions, n_val {status.n_val}"]
    lines += [f"  {m.name:<20} {m.state:<8} {m.partitions_owned:>5} partitions" for m in status.members]
    lines += _moves_lines(transfers)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return EXIT_OK
