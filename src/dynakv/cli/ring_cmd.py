"""`dynakv ring plan`: size a cluster before building it.

Lays out S nodes with one of the Dynamo paper's three placement strategies (section 6.2) and reports
what an operator needs to choose Q, n_val and zones: how evenly the nodes share the ring, whether every
preference list lands on n_val distinct nodes (and zones), and how much data moves when one node joins
or leaves.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
from typing import Any

from dynakv.cli import cluster_cmd
from dynakv.core.config import N_VAL_MAX, PARTITIONS_MAX, PARTITIONS_MIN
from dynakv.core.placement import Movement, Plan, balance, ownership, plan, replicated_load, zone_of

TOKENS_DEFAULT = 8
STRATEGIES = {
    1: "T random tokens per node, partition by token value",
    2: "T random tokens per node, Q equal-sized partitions",
    3: "Q/S tokens per node, Q equal-sized partitions (claim)",
}

PLAN_EPILOG = """\
strategies (Dynamo paper section 6.2):
  1  T random tokens per node; a token owns the range up to it (unequal ranges)
  2  T random tokens per node; Q equal partitions, each placed by the first token clockwise from its end
  3  Q equal partitions spread by claim, about Q/S per node (the default; what dynakv runs)

tail violation: a token (strategy 1) or partition (2, 3) whose n_val consecutive owners clockwise are
not n_val distinct nodes, so its preference list skipped owners. zone violation: a token or partition
whose replicas span fewer zones than min(replicas, zones).
node i is in zone "zone{(i-1) % Z + 1}" with --zones Z. The seed makes strategies 1 and 2 reproducible.

--json prints one object:
  strategy, nodes, partitions (null for strategy 1), n_val, tokens (T; null for strategy 3),
  zones (Z or null), seed,
  per_node: [{node, zone (or null), tokens (strategies 1, 2), partitions (strategies 2, 3; owned as
             primary), ownership (fraction of the hash space as primary), replicated_load (fraction of
             the hash space it holds a replica of)}],
  balance (max/mean ownership), tail_violations, zone_violations (null without --zones),
  joining, leaving (node names; leaving is null for a single node),
  moved_on_add, moved_on_remove (fraction of keys whose replica set changes),
  replicas_moved_on_add, replicas_moved_on_remove (fraction of key-replicas that move,
    sum over keys of |new set - old set| / n_val),
  primaries_moved_on_add, primaries_moved_on_remove (fraction of keys whose primary changes).
  The *_on_remove fields are null for a single node.
"""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _at_least_one(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum 1")
    return value


def _partitions(text: str) -> int:
    value = _int(text)
    if not PARTITIONS_MIN <= value <= PARTITIONS_MAX or value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"{value} is not a power of two from {PARTITIONS_MIN} to {PARTITIONS_MAX}"
        )
    return value


def _n_val(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= N_VAL_MAX:
        raise argparse.ArgumentTypeError(f"{value} is outside 1 to {N_VAL_MAX}")
    return value


def _strategy(text: str) -> int:
    value = _int(text)
    if value not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"{value} is not a strategy (use 1, 2 or 3)")
    return value


def register(commands: Any) -> None:
    ring = commands.add_parser(
        "ring",
        help="the live ring (--host/--cluster), or ring placement tools (plan)",
        description="Show the live ring as a node sees it (--host or --cluster), or size one offline "
        "(`ring plan`).",
    )
    ring_commands = ring.add_subparsers(dest="ring_command", metavar="RING_COMMAND", required=False)
    cluster_cmd.add_ring_view(ring)
    parser = ring_commands.add_parser(
        "plan",
        help="compare placement strategies: balance, violations, data moved on join and leave",
        description="Lay out a cluster with one of the Dynamo paper's placement strategies and report "
        "ownership, balance, tail and zone violations, and the keys that move when a node joins or leaves.",
        epilog=PLAN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=_at_least_one, required=True, metavar="S", help="number of nodes")
    parser.add_argument(
        "--partitions",
        type=_partitions,
        required=True,
        metavar="Q",
        help=f"ring size Q, a power of two from {PARTITIONS_MIN} to {PARTITIONS_MAX}",
    )
    parser.add_argument(
        "--n-val", type=_n_val, required=True, metavar="N", help=f"replicas per key, 1 to {N_VAL_MAX}"
    )
    parser.add_argument("--zones", type=_at_least_one, metavar="Z", help="spread nodes over Z zones")
    parser.add_argument(
        "--strategy", type=_strategy, default=3, metavar="{1,2,3}", help="placement strategy (default 3)"
    )
    parser.add_argument(
        "--tokens",
        type=_at_least_one,
        metavar="T",
        help=f"tokens per node for strategies 1 and 2 (default {TOKENS_DEFAULT})",
    )
    parser.add_argument("--seed", type=_int, default=0, help="random seed for strategies 1 and 2 (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (fields below)")
    parser.set_defaults(run=functools.partial(run_plan, parser))


def run_plan(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.n_val > args.partitions:
        parser.error(f"argument --n-val: {args.n_val} is above --partitions {args.partitions}")
    if args.strategy == 3 and args.tokens is not None:
        parser.error("argument --tokens: strategy 3 has Q/S tokens per node; --tokens is for strategies 1, 2")
    tokens = TOKENS_DEFAULT if args.tokens is None else args.tokens
    result = plan(
        args.strategy,
        args.nodes,
        args.n_val,
        partitions=args.partitions,
        tokens_per_node=tokens,
        zone_count=args.zones,
        rng=random.Random(args.seed),
    )
    report = plan_report(result, args.partitions, tokens, args.zones, args.seed)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(format_report(report))
    return 0


def _moved(movement: Movement | None, field: str) -> float | None:
    return None if movement is None else float(getattr(movement, field))


def plan_report(result: Plan, partitions: int, tokens: int, zones: int | None, seed: int) -> dict[str, Any]:
    """The plan as the JSON object documented in PLAN_EPILOG (text output is rendered from it too)."""
    placement = result.placement
    owned = ownership(placement)
    load = replicated_load(placement)
    per_node: list[dict[str, Any]] = []
    for i, (node, count) in enumerate(zip(placement.nodes, placement.counts, strict=True), start=1):
        row: dict[str, Any] = {"node": node, "zone": None if zones is None else zone_of(i, zones)}
        if result.strategy in (1, 2):
            row["tokens"] = sum(1 for _, holder in placement.tokens if holder == node)
        if result.strategy in (2, 3):
            row["partitions"] = count
        row["ownership"] = owned[node]
        row["replicated_load"] = load[node]
        per_node.append(row)
    report: dict[str, Any] = {
        "strategy": result.strategy,
        "nodes": len(placement.nodes),
        "partitions": None if result.strategy == 1 else partitions,
        "n_val": placement.n_val,
        "tokens": None if result.strategy == 3 else tokens,
        "zones": zones,
        "seed": seed,
        "per_node": per_node,
        "balance": balance(placement),
        "tail_violations": placement.tail_violations,
        "zone_violations": placement.zone_violations,
        "joining": result.joining,
        "leaving": result.leaving,
    }
    for change, movement in (("add", result.on_add), ("remove", result.on_remove)):
        report[f"moved_on_{change}"] = _moved(movement, "keys_moved")
        report[f"replicas_moved_on_{change}"] = _moved(movement, "replicas_moved")
        report[f"primaries_moved_on_{change}"] = _moved(movement, "primaries_moved")
    return report


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_report(report: dict[str, Any]) -> str:
    strategy = report["strategy"]
    head = f"strategy {strategy}: {STRATEGIES[strategy]}\n{report['nodes']} nodes"
    if report["partitions"] is not None:
        head += f", {report['partitions']} partitions"
    if report["tokens"] is not None:
        head += f", {report['tokens']} tokens per node (seed {report['seed']})"
    head += f", n_val {report['n_val']}"
    if report["zones"] is not None:
        head += f", {report['zones']} zones"
    columns = ["node"] + (["zone"] if report["zones"] is not None else [])
    columns += [c for c in ("tokens", "partitions") if c in report["per_node"][0]]
    columns += ["ownership", "replicated_load"]
    rows = [[_cell(row[c]) for c in columns] for row in report["per_node"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [head, "", "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines += [
        "",
        f"balance (max/mean ownership)  {report['balance']:.4f}",
        f"tail violations               {report['tail_violations']}",
    ]
    if report["zone_violations"] is not None:
        lines.append(f"zone violations               {report['zone_violations']}")
    for change, who in (("add", report["joining"]), ("remove", report["leaving"])):
        label = f"{change} {who}" if who is not None else f"{change} (no node can leave)"
        lines.append(
            f"{label + ':':<30}keys moved {_fraction(report[f'moved_on_{change}'])}, "
            f"key-replicas moved {_fraction(report[f'replicas_moved_on_{change}'])}, "
            f"primaries moved {_fraction(report[f'primaries_moved_on_{change}'])}"
        )
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
