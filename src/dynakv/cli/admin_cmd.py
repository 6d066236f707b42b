"""`dynakv status` and `dynakv repair`: the cluster as a node sees it, and anti-entropy on demand.

Both talk to nodes through the native client. `status` asks one node (with --cluster, the first that
answers). `repair` starts anti-entropy on the node named by --host, or on every node of a --cluster
directory, then polls each until its repair has finished, printing a line whenever progress changes.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from dynakv.cli.kv_cmd import EXIT_OK, EXIT_UNAVAILABLE, describe_error, err_text
from dynakv.client import Client, ClusterStatus, DynakvClientError, RepairProgress
from dynakv.client.protocol import Address, format_address, parse_address, parse_addresses

POLL_INTERVAL_S: Final = 0.2
PRINT_INTERVAL_S: Final = 2.0
REPAIR_TIMEOUT_S: Final = 600.0

TARGET_HELP = """\
the cluster: --cluster DIR reads DIR/cluster.json (written by `dynakv dev`); --host HOST:PORT names one
node's client port.
"""

STATUS_EPILOG = (
    TARGET_HELP
    + """
With --cluster the first node that answers is asked. States are the membership view of that node:
joining, valid, leaving, exiting; a member it cannot reach now shows as down. Hints pending are the
hints that node holds for others. Transfers pending are the ownership moves of the last commit whose
data has not all arrived yet, as that node's cluster state has it (the same on every node once gossip
agrees; `dynakv cluster transfers` shows their progress); transfers active are the outbound transfers
of every kind (ownership, hinted, repair) that node is running now.

--json prints one object: node, members [{name, state, partitions, reachable}], hints_pending,
transfers_pending, transfers_active, partitions, n_val, trees_building.

exit codes: 0 done, 2 usage, 5 server failure, 6 no node reachable.
"""
)

REPAIR_EPILOG = (
    TARGET_HELP
    + """
A repair runs anti-entropy now: the node compares its Merkle tree of each partition it is a primary of
(or of --partition P only) with each other primary's, and both merge what differs (never overwrite).
With --host it runs on that node; with --cluster on every node listed, so every replica pair is
compared. A line is printed when a node's progress changes (at most one every 2 s per node, and its
last); it ends when every node has finished.

exit codes:
  0  finished, every exchange completed
  2  usage
  3  not finished within --timeout, or some exchanges failed (a peer down or silent): run it again
  4  bad request (--partition out of range)
  5  server failure
  6  a node could not be reached
"""
)


def register(commands: Any) -> None:
    status = _parser(commands, "status", "show members, reachability, ownership, hints and transfers")
    status.epilog = STATUS_EPILOG
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(run=functools.partial(_run_status, status))

    repair = _parser(commands, "repair", "run anti-entropy now and show its progress until it finishes")
    repair.epilog = REPAIR_EPILOG
    repair.add_argument("--partition", type=_partition, metavar="P", help="repair partition P only")
    repair.add_argument(
        "--timeout",
        type=_seconds,
        default=REPAIR_TIMEOUT_S,
        metavar="S",
        help=f"give up after S seconds (default {REPAIR_TIMEOUT_S:g})",
    )
    repair.set_defaults(run=functools.partial(_run_repair, repair))


def _parser(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--cluster", type=Path, metavar="DIR", help="a `dynakv dev` directory")
    target.add_argument("--host", metavar="HOST:PORT", help="one node's client address")
    return parser


def _partition(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum 0")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not positive")
    return value


def _addresses(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Address]:
    """The client addresses named by --host, or listed in --cluster DIR/cluster.json."""
    try:
        if args.host is not None:
            return [parse_address(args.host)]
        path = args.cluster / "cluster.json"
        try:
            nodes = json.loads(path.read_text())["nodes"]
            texts = [str(node["client"]) for node in nodes if node.get("client")]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            parser.error(f"cannot read {path}: {err}")
        if not texts:
            parser.error(f"{path} lists no node with a client address")
        return parse_addresses(texts)
    except ValueError as err:
        parser.error(f"argument --host/--cluster: {err}")


def _failed(err: DynakvClientError, where: str = "") -> int:
    kind, code = describe_error(err)
    sys.stderr.write(f"{kind}: {where}{err_text(err)}\n")
    return code


# -- status -----------------------------------------------------------------------------------------


def _run_status(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    addresses = _addresses(parser, args)
    try:
        with Client(addresses) as client:
            status = client.status()
    except DynakvClientError as err:
        return _failed(err)
    if args.json:
        sys.stdout.write(json.dumps(status_json(status), indent=2) + "\n")
    else:
        sys.stdout.write(format_status(status))
    return EXIT_OK


def status_json(status: ClusterStatus) -> dict[str, Any]:
    members = [
        {
            "name": m.name,
            "state": m.state,
            "partitions": m.partitions_owned,
            "reachable": m.reachable,
        }
        for m in status.members
    ]
    return {
        "node": status.node,
        "members": members,
        "hints_pending": status.hints_pending,
        "transfers_pending": status.transfers_pending,
        "transfers_active": status.transfers_active,
        "partitions": status.partitions,
        "n_val": status.n_val,
        "trees_building": status.trees_building,
    }


def format_status(status: ClusterStatus) -> str:
    head = f"as seen by {status.node}: {status.partitions} partitions, n_val {status.n_val}"
    rows = [("NAME", "STATE", "PARTITIONS", "REACHABLE")]
    for m in status.members:
        rows.append(
            (
                m.name,
                m.state,
                str(m.partitions_owned),
                "yes" if m.reachable else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        head,
        *("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows),
    ]
    lines += [
        f"hints pending: {status.hints_pending}",
        f"transfers pending: {status.transfers_pending} (ownership moves not complete)",
        f"transfers active: {status.transfers_active} (running on {status.node})",
        f"anti-entropy trees building: {status.trees_building}",
    ]
    return "".join(line + "\n" for line in lines)


# -- repair -----------------------------------------------------------------------------------------


def _run_repair(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    addresses = _addresses(parser, args)
    clients: dict[str, Client] = {}
    code = EXIT_OK
    try:
        for address in addresses:
            where = format_address(address)
            client: Client | None = None
            try:
                client = Client([address])
                client.repair(args.partition)  # its first progress line comes from the first poll
                clients[where] = client
            except DynakvClientError as err:
                if client is not None:
                    client.close()
                code = max(code, _failed(err, f"{where}: "))
        if not clients:
            return code  # every node refused or could not be reached: said on stderr already
        outcome = _poll(clients, time.monotonic() + args.timeout, args.timeout)
    finally:
        for opened in clients.values():
            opened.close()
    return max(code, outcome)


def _poll(clients: dict[str, Client], deadline: float, timeout_s: float) -> int:
    """Poll every node's repair until all have finished; print changes; the exit code."""
    last: dict[str, RepairProgress] = {}
    printed: dict[str, tuple[float, RepairProgress]] = {}
    waiting = dict(clients)
    code = EXIT_OK
    for where, client in _rounds(waiting, deadline):
        try:
            progress = client.repair_status()
        except DynakvClientError as err:
            del waiting[where]
            code = max(code, _failed(err, f"{where}: "))
            continue
        # A line when progress changed, at most one per PRINT_INTERVAL_S a node, and the last one.
        now = time.monotonic()
        at, shown = printed.get(where, (0.0, None))
        if shown != progress and (progress.finished or now - at >= PRINT_INTERVAL_S):
            printed[where] = (now, progress)
            _progress_line(where, progress)
        last[where] = progress
        if progress.finished:
            del waiting[where]
            if progress.exchanges_failed:
                code = max(code, EXIT_UNAVAILABLE)
    if waiting:
        names = ", ".join(sorted(waiting))
        sys.stderr.write(f"timeout: the repair on {names} did not finish within {timeout_s:g} s\n")
        return max(code, EXIT_UNAVAILABLE)
    total = sum(p.keys_repaired for p in last.values())
    failed = sum(p.exchanges_failed for p in last.values())
    sys.stdout.write(f"repair finished: {total} keys repaired, {failed} exchanges failed\n")
    return code


def _rounds(waiting: dict[str, Client], deadline: float) -> Iterator[tuple[str, Client]]:
    """Each waiting node once per round, a pause between rounds, until none waits or the deadline."""
    while waiting and time.monotonic() < deadline:
        yield from sorted(waiting.items())
        if waiting:
            time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))


def _progress_line(where: str, p: RepairProgress) -> None:
    state = "finished" if p.finished else "running"
    sys.stdout.write(
        f"{where}: {state}, partitions {p.partitions_done}/{p.partitions_total} done, "
        f"{p.keys_repaired} keys repaired, {p.exchanges_failed} exchanges failed\n"
    )
    sys.stdout.flush()
