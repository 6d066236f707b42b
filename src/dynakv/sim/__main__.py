"""`python -m dynakv.sim`: run the cart workload under the nemesis for one seed or a range, and check.

    python -m dynakv.sim --seed 1234              # one seed, the report of every checker
    python -m dynakv.sim --seeds 0:200            # seeds 0..199, one line each; stops at the first failure
    python -m dynakv.sim --seeds 0:50 --broken hint-deleted-before-ack   # a deliberately broken node
    python -m dynakv.sim --seeds 0:200 --no-anti-entropy     # hinted handoff as the only repair path
    python -m dynakv.sim --seeds 0:30 --churn [--leave] [--remove]   # a join (a leave, a removal) too

Exits 0 when every seed passed, 1 at the first failing seed (after printing its report and the command
that replays it), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from dynakv.sim.sweep import DEFECTS, RunConfig, replay_command, run_seed


def _seed_range(text: str) -> range:
    start, sep, stop = text.partition(":")
    try:
        lo, hi = int(start), int(stop)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not A:B (two integers)") from None
    if not sep or hi <= lo:
        raise argparse.ArgumentTypeError(f"{text!r}: expected A:B with A < B")
    return range(lo, hi)


def _parser() -> argparse.ArgumentParser:
    default = RunConfig()
    parser = argparse.ArgumentParser(
        prog="python -m dynakv.sim", description="Seeded simulation runs of the cart workload, checked."
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--seed", type=int, help="run this one seed")
    which.add_argument("--seeds", type=_seed_range, metavar="A:B", help="run seeds A to B-1")
    parser.add_argument("--nodes", type=int, default=default.nodes, help="cluster size (default %(default)s)")
    parser.add_argument("--keys", type=int, default=default.cart.keys, help="carts (default %(default)s)")
    parser.add_argument("--clients", type=int, default=default.cart.clients, help="(default %(default)s)")
    parser.add_argument(
        "--adds", type=int, default=default.cart.adds_per_client, help="adds per client (default %(default)s)"
    )
    parser.add_argument(
        "--no-anti-entropy",
        action="store_true",
        help="no periodic anti-entropy: hinted handoff and read repair are the only repair paths",
    )
    parser.add_argument("--churn", action="store_true", help="a node joins during the workload window")
    parser.add_argument("--leave", action="store_true", help="with --churn: a node leaves as well")
    parser.add_argument(
        "--remove", action="store_true", help="with --churn: a node crashes for good and is removed"
    )
    parser.add_argument(
        "--broken", action="append", choices=DEFECTS, default=[], help="switch on a test-only defect"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="every checker's report for each seed")
    return parser


def _config(args: argparse.Namespace) -> RunConfig:
    default = RunConfig()
    cart = replace(default.cart, keys=args.keys, clients=args.clients, adds_per_client=args.adds)
    return replace(
        default,
        nodes=args.nodes,
        cart=cart,
        defects=frozenset(args.broken),
        anti_entropy=not args.no_anti_entropy,
        churn=args.churn or args.leave or args.remove,
        leave=args.leave,
        remove=args.remove,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _config(args)
    seeds = range(args.seed, args.seed + 1) if args.seed is not None else args.seeds
    verbose = args.verbose or len(seeds) == 1
    out = sys.stdout
    for seed in seeds:
        result = run_seed(seed, config)
        out.write((result.report() if verbose or not result.passed else result.summary()) + "\n")
        if not result.passed:
            out.write(f"seed {seed} failed; replay it with:\n  {replay_command(seed, config)}\n")
            return 1
    if len(seeds) > 1:
        out.write(f"all {len(seeds)} seeds passed ({seeds.start}:{seeds.stop})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
