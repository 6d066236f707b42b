"""One seeded run of the cart workload under the nemesis, and the checkers after heal and quiesce.

A run: a `Simulation` of `nodes` nodes, the nemesis' faults (faults.py) over the workload's window, the
cart clients (workload.py) beside them; then everything healed (network, paused nodes resumed, crashed
nodes restarted), the clients finished, and the cluster left alone until it is quiet: no hint left on
any node and, when the Node runs anti-entropy, equal Merkle roots on every partition's primaries, or
until `quiesce_ms_max` of virtual time has passed. Then the checkers (checkers.py) look at storage.

Churn (`churn`): a new node joins through a seed a quarter into the window and is committed (the
commit retried through a random running node until the claimant has admitted it); with `leave` too,
a node of the initial cluster chosen by the seed stages its leave at half the window and is committed
the same way; with `remove`, three quarters into the window another node crashes for good and is
removed (churn.py). The quiesce then also waits for the cluster to converge (`Simulation.converged`), and
the checkers use the final ring's primaries.

Everything is a function of the seed and the `RunConfig`, so `replay_command` is all it takes to run a
failing seed again: `python -m dynakv.sim --seed N` plus the flags that differ from the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynakv.core.config import ClusterConfig, Timing
from dynakv.protocol.data_path import Settings
from dynakv.protocol.messages import GetReply, GetRequest
from dynakv.sim import checkers
from dynakv.sim.checkers import Check
from dynakv.sim.churn import Churn
from dynakv.sim.faults import Nemesis, NemesisSettings
from dynakv.sim.simulator import Simulation
from dynakv.sim.workload import CART_BUCKET, CartSettings, CartWorkload

# Test-only defects a run can switch on, to prove the checkers catch what they are meant to.
DEFECTS = ("hint-deleted-before-ack", "hint-not-stored")
# An anti-entropy interval longer than any run: periodic exchanges never start.
AE_OFF_MS = 10**12


@dataclass(frozen=True, slots=True)
class RunConfig:
    nodes: int = 5
    partitions: int = 16
    cart: CartSettings = field(default_factory=CartSettings)
    faults_max: int = 6
    # Short, so that a quiesce sees every partition's exchanges within seconds of virtual time (with
    # `partitions` 16 and 5 nodes, each node initiates about 20 exchanges per round).
    anti_entropy_interval_ms: int = 500
    # False leaves hinted handoff (and read repair) as the only ways a replica catches up: anti-entropy
    # would otherwise repair what a broken handoff lost, and the sweep could not see the defect.
    anti_entropy: bool = True
    settle_ms: int = 10_000  # time left alone after the heal before quiescence is looked for
    quiesce_ms_max: int = 120_000
    defects: frozenset[str] = frozenset()
    churn: bool = False  # a join during the workload window (see the module docstring)
    leave: bool = False  # with churn: a leave as well
    remove: bool = False  # with churn: a node crashed for good, then removed

    def __post_init__(self) -> None:
        assert self.nodes >= 1 and self.settle_ms >= 0 and self.quiesce_ms_max >= 0
        unknown = sorted(self.defects - set(DEFECTS))
        assert not unknown, f"unknown defects {unknown}; known: {list(DEFECTS)}"
        assert self.churn or not (self.leave or self.remove), "leave and remove are kinds of churn"

    def node_names(self) -> list[str]:
        return [f"n{i + 1}" for i in range(self.nodes)]

    def settings(self) -> Settings:
        # `defects` is the one test-only switch on the Node's settings (protocol/data_path.py).
        return Settings(
            cluster=ClusterConfig(partitions=self.partitions),
            timing=Timing(
                anti_entropy_interval_ms=self.anti_entropy_interval_ms if self.anti_entropy else AE_OFF_MS
            ),
            defects=self.defects,
        )


def replay_command(seed: int, config: RunConfig) -> str:
    """The command that runs `seed` again with `config` (only the flags that differ from the defaults)."""
    parts = ["python -m dynakv.sim", f"--seed {seed}"]
    default = RunConfig()
    if config.nodes != default.nodes:
        parts.append(f"--nodes {config.nodes}")
    if config.cart.keys != default.cart.keys:
        parts.append(f"--keys {config.cart.keys}")
    if config.cart.clients != default.cart.clients:
        parts.append(f"--clients {config.cart.clients}")
    if config.cart.adds_per_client != default.cart.adds_per_client:
        parts.append(f"--adds {config.cart.adds_per_client}")
    if not config.anti_entropy:
        parts.append("--no-anti-entropy")
    if config.churn:
        parts.append("--churn")
    if config.leave:
        parts.append("--leave")
    if config.remove:
        parts.append("--remove")
    parts.extend(f"--broken {defect}" for defect in sorted(config.defects))
    return " ".join(parts)


@dataclass(slots=True)
class RunResult:
    seed: int
    config: RunConfig
    checks: list[Check]
    acknowledged: int
    attempted: int
    faults: list[str]
    digest: str
    quiet: bool  # whether quiescence was reached before quiesce_ms_max
    end_ms: int
    owners: tuple[str, ...] = ()  # the nodes that own partitions in the final ring

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        skipped = [c.name for c in self.checks if c.skipped is not None]
        notes = f", skipped: {'; '.join(skipped)}" if skipped else ""
        quiet = "" if self.quiet else ", not quiet at the limit"
        return (
            f"seed {self.seed}: {verdict}: {self.acknowledged}/{self.attempted} adds acknowledged, "
            f"{len(self.faults)} faults, {self.end_ms} ms, digest {self.digest[:16]}{quiet}{notes}"
        )

    def report(self) -> str:
        lines = [self.summary(), *(f"  {check.describe()}" for check in self.checks)]
        lines.append(f"  faults: {'; '.join(self.faults) or 'none'}")
        if not self.passed:
            lines.append(f"  replay: {replay_command(self.seed, self.config)}")
        return "\n".join(lines)


class SeedFailed(AssertionError):
    """A seed whose checks failed; the message names the seed, the violations and the replay command."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(result.report())
        self.result = result


def run_seed(seed: int, config: RunConfig | None = None) -> RunResult:
    """Run `seed` end to end and check it; never raises for a failed check (see `check_seed`)."""
    config = config or RunConfig()
    sim = Simulation(config.node_names(), seed, settings=config.settings())
    faults = NemesisSettings(faults_max=config.faults_max, window_ms=config.cart.window_ms)
    nemesis = Nemesis(sim, settings=faults)
    workload = CartWorkload(sim, config.cart)
    monitor = checkers.DotMonitor(sim, workload)
    healed_ms = nemesis.start()
    workload.start()
    monitor.start()
    if config.churn:
        window_ms = config.cart.window_ms
        Churn(sim, config.node_names(), window_ms, leave=config.leave, remove=config.remove).start()
    limit_ms = config.cart.window_ms + 4 * config.cart.client_timeout_ms
    # Strictly after the heal: events due at healed_ms itself (the heal, faults clipped at the window's
    # end) must all have run, not only the first of them.
    sim.run_until(lambda: sim.now_ms > healed_ms and workload.done(), limit_ms)
    assert sim.active_faults() == [], f"seed {seed}: still in force after the heal: {sim.active_faults()}"
    monitor.stop_ms = sim.now_ms + config.settle_ms
    sim.run_for(config.settle_ms)
    quiet = quiesce(sim, config.quiesce_ms_max, merkle=config.anti_entropy, membership=config.churn)
    if not config.anti_entropy:
        _read_every_cart(sim, workload)
    checks = checkers.run_all(sim, workload, monitor)
    if not config.anti_entropy:  # replicas need not agree without it: only what was acknowledged must be
        off = Check(checkers.MERKLE_CHECK, skipped="anti-entropy off")
        checks = [off if c.name == checkers.MERKLE_CHECK else c for c in checks]
    return RunResult(
        seed,
        config,
        checks,
        workload.tally.acknowledged,
        len(workload.written),
        [fault.describe() for fault in nemesis.faults],
        sim.digest(),
        quiet,
        sim.now_ms,
        tuple(sorted(set(sim.ring.owners))),
    )


def check_seed(seed: int, config: RunConfig | None = None) -> RunResult:
    """Run `seed`; raise `SeedFailed` (with the replay command) if a checker found a violation."""
    result = run_seed(seed, config)
    if not result.passed:
        raise SeedFailed(result)
    return result


def _read_every_cart(sim: Simulation, workload: CartWorkload) -> None:
    """Without anti-entropy, a primary that missed a write no hint covers (it was a target, and the
    message was lost) catches up only by read repair: read every cart from all its primaries (r=all),
    then give read repair its time. What the reads cannot find anywhere, a broken handoff lost."""
    node = sorted(sim.storage)[0]
    for key in workload.settings.key_names():
        reply = sim.call(node, GetRequest(CART_BUCKET, key, r="all"))
        assert isinstance(reply, GetReply), f"seed {sim.seed}: the final read of {key!r} failed: {reply}"
    sim.run_for(2 * sim.settings.timing.read_repair_wait_ms)


def _quiet(sim: Simulation, merkle: bool, membership: bool = False) -> bool:
    if membership and not sim.converged():
        return False
    if membership and any(
        node is not None and node.counters["ownership.cleanup_pending"] for node in sim.nodes.values()
    ):
        return False  # old owners have not deleted what they handed off yet
    if not checkers.hints_drained(sim).passed:
        return False
    return not merkle or checkers.merkle_roots(sim, against_storage=False).passed


def quiesce(
    sim: Simulation, limit_ms: int, step_ms: int = 1_000, *, merkle: bool = True, membership: bool = False
) -> bool:
    """Run until the cluster is quiet (see the module docstring), at most `limit_ms`; whether it is.
    With `membership`, quiet also needs the cluster converged (no move, staged change or departure
    pending)."""
    end_ms = sim.now_ms + limit_ms
    while not _quiet(sim, merkle, membership):
        if sim.now_ms >= end_ms:
            return False
        sim.run_for(step_ms)
    return True
