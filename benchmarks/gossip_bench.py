"""Gossip convergence in rounds, for N nodes, with protocol/gossip.py alone (no Node, no network).

A seeded round-based driver: node s0 founds a one-node cluster, every other node starts empty with s0
as its seed. Each round every node gossips with one peer (`Gossip.on_tick`). By default the exchanges
of a round run concurrently: all digests are delivered, then all the answers, then all the push-backs,
so news travels at most two hops per round, as when rounds overlap on a real network. With
--sequential each node's whole exchange completes before the next node's tick (name order), so news
can chain through many nodes within one round: a lower bound. Two phases, each counted in rounds until
every node's state digest is the same:

1. join:   every node finds the cluster through the seed and stages its own join;
2. commit: the claimant commits all the joins (claim computes the new ring) and gossip spreads the
           new epoch. The claimant is s0, the seed, which every node asks every `seed_every` rounds;
3. spread: one change made at the last node, not a seed (it stages its own removal, never
           committed), spreads to all: the plain epidemic.

--seed-every 1000000 turns the periodic seed rounds off (a node still asks a seed when it knows no
peer), to see the epidemic alone.

Prints a table on stderr and, with --json, one JSON object per run on stdout.

    .venv/bin/python benchmarks/gossip_bench.py [--nodes 10 100 1000] [--seed 1] [--seed-every 5]
        [--partitions Q] [--no-commit] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from dynakv.core import cluster_state as cs
from dynakv.protocol import claimant
from dynakv.protocol.gossip import Gossip, GossipSend, GossipSettings, JoinIntent
from dynakv.protocol.gossip_messages import GossipState
from dynakv.wire.gossip_codec import gossip_fields

ROUNDS_MAX = 1000
N_VAL = 3


@dataclass
class Phase:
    rounds: int = 0
    messages: int = 0
    state_messages: int = 0
    bytes: int = 0
    seconds: float = 0.0


class Driver:
    def __init__(self, count: int, seed: int, seed_every: int, partitions: int, sequential: bool) -> None:
        self.sequential = sequential
        settings = GossipSettings(interval_ms=1000, seed_every=seed_every)
        self.now_ms = 0
        self.nodes = {
            "s0": Gossip("s0", cs.new_cluster("s0", partitions), random.Random(f"{seed}/s0"), settings)
        }
        for i in range(1, count):
            name = f"s{i}"
            rng = random.Random(f"{seed}/{name}")
            self.nodes[name] = Gossip(name, cs.empty(), rng, settings, seeds=("s0",), join=JoinIntent())
        self.order = sorted(self.nodes)

    def _deliver(self, sends: list[tuple[str, GossipSend]], phase: Phase) -> list[tuple[str, GossipSend]]:
        """Deliver one hop of messages; the answers they cause, for the next hop."""
        answers: list[tuple[str, GossipSend]] = []
        for sender, send in sends:
            phase.messages += 1
            phase.state_messages += isinstance(send.msg, GossipState)
            phase.bytes += len(msgpack.packb(gossip_fields(send.msg), use_bin_type=True))
            reply = self.nodes[send.dst].on_message(sender, send.msg)
            answers.extend((send.dst, s) for s in reply.sends)
        return answers

    def _round(self, phase: Phase) -> None:
        self.now_ms += 1000
        if self.sequential:
            for name in self.order:
                hop = [(name, s) for s in self.nodes[name].on_tick(self.now_ms).sends]
                while hop:
                    hop = self._deliver(hop, phase)
            return
        hop = [(name, s) for name in self.order for s in self.nodes[name].on_tick(self.now_ms).sends]
        while hop:
            hop = self._deliver(hop, phase)

    def converged(self) -> bool:
        first = self.nodes["s0"].state.digest
        return all(node.state.digest == first for node in self.nodes.values())

    def run_phase(self) -> Phase:
        phase = Phase()
        started = time.perf_counter()
        while not self.converged():
            if phase.rounds >= ROUNDS_MAX:
                raise RuntimeError(f"no convergence in {ROUNDS_MAX} rounds")
            phase.rounds += 1
            self._round(phase)
        phase.seconds = round(time.perf_counter() - started, 3)
        return phase


def run(  # noqa: PLR0917 (a benchmark's knobs)
    count: int, seed: int, seed_every: int, partitions: int, commit: bool, sequential: bool
) -> dict[str, Any]:
    driver = Driver(count, seed, seed_every, partitions, sequential)
    join = driver.run_phase()
    state = driver.nodes["s0"].state
    assert len(state.members) == count and len(state.active_staged()) == count - 1
    result: dict[str, Any] = {"nodes": count, "partitions": partitions, "seed": seed}
    result["seed_every"] = seed_every
    result["mode"] = "sequential" if sequential else "concurrent"
    result["join"] = asdict(join)
    if commit and count > 1:
        boss = cs.acting_claimant(state)
        assert boss is not None
        started = time.perf_counter()
        driver.nodes[boss].update(claimant.commit(state, N_VAL))
        result["claim_seconds"] = round(time.perf_counter() - started, 3)
        phase = driver.run_phase()
        result["commit"] = asdict(phase)
        result["moves"] = len(driver.nodes["s0"].state.moves)
    if count > 1:
        last = driver.nodes[driver.order[-1]]
        last.update(cs.stage_remove(last.state, last.name))  # staged only, never committed
        result["spread"] = asdict(driver.run_phase())
    result["state_bytes"] = len(cs.encode(driver.nodes["s0"].state))
    return result


def _partitions(count: int) -> int:
    q = 64
    while q < 2 * count:
        q *= 2
    return q


def _row(result: dict[str, Any]) -> str:
    phases = [result.get(name, {}) for name in ("join", "commit", "spread")]
    rounds = [p.get("rounds", "-") for p in phases]
    messages = sum(p.get("messages", 0) for p in phases)
    total = sum(p.get("rounds", 0) for p in phases) * result["nodes"]
    seconds = sum(p.get("seconds", 0.0) for p in phases) + result.get("claim_seconds", 0.0)
    return (
        f"{result['nodes']:>6} {result['partitions']:>6} {rounds[0]:>6} {rounds[1]:>7} {rounds[2]:>7}"
        f" {messages / max(1, total):>10.2f} {result['state_bytes'] / 1024:>10.1f} {seconds:>8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seed-every", type=int, default=5)
    parser.add_argument(
        "--partitions", type=int, help="Q (default: the power of two >= 2 x nodes, at least 64)"
    )
    parser.add_argument("--no-commit", action="store_true")
    parser.add_argument("--sequential", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mode = "sequential" if args.sequential else "concurrent"
    sys.stderr.write(
        f"rounds until every view agrees ({mode} exchanges, seed every {args.seed_every} rounds)\n"
    )
    sys.stderr.write(f"{'nodes':>6} {'Q':>6} {'join':>6} {'commit':>7} {'spread':>7} {'msgs/n/r':>10}")
    sys.stderr.write(f" {'state KiB':>10} {'seconds':>8}\n")
    for count in args.nodes:
        q = args.partitions or _partitions(count)
        result = run(count, args.seed, args.seed_every, q, not args.no_commit, args.sequential)
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
        sys.stderr.write(_row(result) + "\n")


if __name__ == "__main__":
    main()
