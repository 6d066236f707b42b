"""The nemesis: a bounded, seeded schedule of faults over a time window, healed at its end.

`plan(seed, nodes, settings)` is a pure function: the same seed and nodes give the same faults. It draws
from its own `random.Random` (seeded from the seed and a fixed label), so the schedule does not depend on
the workload run beside it. Faults run on two tracks that never overlap within themselves: the network
track (partitions, one-way cuts, loss bursts, flaky links that duplicate and reorder, clogs) and the node
track (pauses, crash and restart); one fault of each track may be in force at a time.

`Nemesis(sim).start()` schedules the plan in the simulation (`Simulation.at`) and returns the time at
which everything is healed: by then each fault has been undone (network healed, paused nodes resumed,
nodes it crashed restarted) and `sim.active_faults()` lists nothing it caused. A node the script itself
paused or crashed is left alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dynakv.sim.network import LinkPolicy
from dynakv.sim.simulator import Simulation

NETWORK_KINDS = ("partition", "cut", "loss", "flaky", "clog")
NODE_KINDS = ("pause", "crash")
ALL_KINDS = NETWORK_KINDS + NODE_KINDS


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault in force from `start_ms` to `end_ms` (relative to the nemesis' start).

    `nodes` is the first group for a partition, `(src, dst)` for a cut or clog, the pair of a loss
    burst or flaky link (both ways), the one node of a pause or crash. `amount` is a loss burst's
    probability of loss, or a flaky link's probability of duplication."""

    kind: str
    start_ms: int
    end_ms: int
    nodes: tuple[str, ...]
    amount: float = 0.0

    def describe(self) -> str:
        return f"{self.kind} {','.join(self.nodes)} {self.amount} [{self.start_ms}, {self.end_ms})"


@dataclass(frozen=True, slots=True)
class NemesisSettings:
    """Bounds: at most `faults_max` faults, all within `window_ms`, each lasting `duration_ms`
    (clipped at the window's end), with up to `gap_ms_max` of calm before each on its track."""

    faults_max: int = 6
    window_ms: int = 20_000
    duration_ms: tuple[int, int] = (500, 5_000)
    gap_ms_max: int = 2_000
    kinds: tuple[str, ...] = ALL_KINDS

    def __post_init__(self) -> None:
        assert self.faults_max >= 0 and self.window_ms > 0 and self.gap_ms_max >= 0
        assert 0 < self.duration_ms[0] <= self.duration_ms[1], self.duration_ms
        assert self.kinds and set(self.kinds) <= set(ALL_KINDS), self.kinds


def plan(seed: int, nodes: Sequence[str], settings: NemesisSettings | None = None) -> list[Fault]:
    """The faults for `seed`, sorted by start time; a pure function of its arguments."""
    settings = settings or NemesisSettings()
    rng = random.Random(f"dynakv-nemesis/{seed}")
    names = sorted(nodes)
    cursor = {"network": 0, "node": 0}
    faults: list[Fault] = []
    for _ in range(settings.faults_max):
        kind = rng.choice(settings.kinds)
        track = "network" if kind in NETWORK_KINDS else "node"
        start = cursor[track] + rng.randint(0, settings.gap_ms_max)
        if start >= settings.window_ms or (track == "network" and len(names) < 2):
            continue
        end = min(start + rng.randint(*settings.duration_ms), settings.window_ms)
        cursor[track] = end
        faults.append(_draw(kind, start, end, names, rng))
    return sorted(faults, key=lambda f: (f.start_ms, f.end_ms, f.kind))


def _draw(kind: str, start: int, end: int, names: list[str], rng: random.Random) -> Fault:
    if kind == "partition":
        shuffled = list(names)
        rng.shuffle(shuffled)
        group = tuple(sorted(shuffled[: rng.randint(1, len(names) - 1)]))
        return Fault(kind, start, end, group)
    if kind in ("cut", "clog", "loss", "flaky"):
        pair = tuple(rng.sample(names, 2))
        amount = rng.choice((0.1, 0.5, 1.0)) if kind == "loss" else 0.0
        amount = rng.choice((0.1, 0.5)) if kind == "flaky" else amount
        return Fault(kind, start, end, pair, amount)
    return Fault(kind, start, end, (rng.choice(names),))


class Nemesis:
    """Schedules `plan(seed, ...)` in `sim` and undoes it; the seed defaults to the simulation's."""

    def __init__(
        self, sim: Simulation, seed: int | None = None, settings: NemesisSettings | None = None
    ) -> None:
        self.sim = sim
        self.settings = settings or NemesisSettings()
        self.faults = plan(sim.seed if seed is None else seed, sorted(sim.storage), self.settings)
        self._paused: set[str] = set()
        self._crashed: set[str] = set()

    def start(self, at_ms: int | None = None) -> int:
        """Schedule every fault from `at_ms` (default now); returns when all is healed."""
        base = self.sim.now_ms if at_ms is None else at_ms
        for fault in self.faults:
            begin, end = self._actions(fault)
            self.sim.at(base + fault.start_ms, f"nemesis begins {fault.describe()}", begin)
            self.sim.at(base + fault.end_ms, f"nemesis ends {fault.describe()}", end)
        healed_ms = base + self.settings.window_ms
        self.sim.at(healed_ms, "nemesis heals everything", self.heal_all)
        return healed_ms

    def heal_all(self) -> None:
        """Undo every fault the nemesis caused that is still in force."""
        self.sim.heal()
        for name in sorted(self._paused):
            self._resume(name)
        for name in sorted(self._crashed):
            self._restart(name)

    def _actions(self, fault: Fault) -> tuple[Callable[[], None], Callable[[], None]]:
        sim, nodes = self.sim, fault.nodes
        if fault.kind == "pause":
            return lambda: self._pause(nodes[0]), lambda: self._resume(nodes[0])
        if fault.kind == "crash":
            return lambda: self._crash(nodes[0]), lambda: self._restart(nodes[0])
        if fault.kind == "partition":
            return lambda: sim.partition(nodes), sim.heal
        if fault.kind == "cut":
            return lambda: sim.cut(*nodes), sim.heal
        if fault.kind == "clog":
            return lambda: sim.clog(*nodes), sim.heal
        if fault.kind == "loss":
            policy = LinkPolicy(loss=fault.amount)
        else:
            policy = LinkPolicy(duplicate=fault.amount, extra_delay_ms=(0, 50))
        return lambda: sim.set_link(nodes[0], nodes[1], policy, both_ways=True), sim.heal

    def _pause(self, name: str) -> None:
        if self.sim.nodes[name] is not None and name not in self.sim.paused:
            self.sim.pause(name)
            self._paused.add(name)

    def _resume(self, name: str) -> None:
        if name in self._paused:
            self._paused.discard(name)
            if name in self.sim.paused:
                self.sim.resume(name)

    def _crash(self, name: str) -> None:
        if self.sim.nodes[name] is not None and name not in self.sim.paused:
            self.sim.crash(name)
            self._crashed.add(name)

    def _restart(self, name: str) -> None:
        if name in self._crashed:
            self._crashed.discard(name)
            if self.sim.nodes[name] is None:
                self.sim.restart(name)
