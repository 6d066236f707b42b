"""The membership changes of a churn run (sweep.py), scheduled in virtual time.

A new node joins through a seed a quarter into the window; with `leave`, a node of the initial cluster
stages its leave at half the window; with `remove`, three quarters in, a running node other than the
leaver and the acting claimant crashes for good and is removed (`dynakv cluster remove`): its partitions
are claimed again and rebuilt from the surviving replicas. Each change is staged through a random live
node, and committed through one, every `RETRY_MS`, until some node sees it take effect (faults may be
in force: a request can be lost, or reach a paused node). Choices come from the seed alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ChangeKind
from dynakv.core.membership import MemberState
from dynakv.protocol.cluster_admin_messages import ClusterCommitRequest, ClusterStageRequest, StageKind
from dynakv.protocol.node import Node
from dynakv.sim.simulator import Simulation


class Churn:
    RETRY_MS = 1_000

    def __init__(
        self, sim: Simulation, names: Sequence[str], window_ms: int, *, leave: bool, remove: bool
    ) -> None:
        self.sim = sim
        self.window_ms = window_ms
        self.remove = remove
        self.rng = random.Random(f"dynakv-churn/{sim.seed}")
        self.joiner = f"n{len(names) + 1}"
        self.seed_node = self.rng.choice(list(names))
        self.leaver = self.rng.choice(list(names)) if leave else None
        self.victim: str | None = None

    def start(self) -> None:
        now, window = self.sim.now_ms, self.window_ms
        self.sim.at(now + window // 4, f"churn: {self.joiner} joins", self._join)
        if self.leaver is not None:
            self.sim.at(now + window // 2, f"churn: {self.leaver} leaves", self._leave)
        if self.remove:
            self.sim.at(now + 3 * window // 4, "churn: a node crashes for good", self._crash_one)

    def _join(self) -> None:
        self.sim.add_node(self.joiner, seed=self.seed_node)
        self._commit_until(lambda s: s is not MemberState.JOINING, self.joiner)

    def _leave(self) -> None:
        assert self.leaver is not None
        self._stage_then_commit(self.leaver, StageKind.LEAVE, ChangeKind.LEAVE, self._leave)

    def _crash_one(self) -> None:
        claimants = {cs.acting_claimant(node.cluster.state) for node in self._live()}
        candidates = [
            name
            for name in self._live_names()
            if name not in claimants and name not in (self.leaver, self.joiner, self.seed_node)
        ]
        if not candidates:  # everyone is busy or down right now: try again shortly
            self.sim.at(self.sim.now_ms + self.RETRY_MS, "churn: a node crashes for good", self._crash_one)
            return
        self.victim = self.rng.choice(candidates)
        self.sim.crash(self.victim)
        # Gone for good: no heal restarts it, and the checkers ignore its files as a departed node's.
        self.sim.departed.add(self.victim)
        self._removal()

    def _removal(self) -> None:
        assert self.victim is not None
        self._stage_then_commit(self.victim, StageKind.REMOVE, ChangeKind.REMOVE, self._removal)

    def _stage_then_commit(
        self, name: str, stage: StageKind, change: ChangeKind, again: Callable[[], None]
    ) -> None:
        """Stage `stage` of `name` (through a random live node) until some node holds it staged or
        sees it under way, then commit until some node sees `name` no longer valid."""
        if not self._someone_sees(name, lambda s: s is not MemberState.VALID):
            staged = any(
                node.cluster.state.staged.get(name) is not None
                and node.cluster.state.staged[name].kind is change
                for node in self._live()
            )
            if not staged:
                live = [n for n in self._live_names() if n != name]
                if live:
                    self.sim.submit(self.rng.choice(live), ClusterStageRequest(stage, name))
                self.sim.at(self.sim.now_ms + self.RETRY_MS, f"churn: {stage.value} {name}", again)
                return
        self._commit_until(lambda s: s is not MemberState.VALID, name)

    def _commit_until(self, done: Callable[[MemberState], bool], name: str) -> None:
        """Ask a random running node to commit, every RETRY_MS, until some node sees `name` admitted."""
        if self._someone_sees(name, done):
            return
        live = self._live_names()
        if live:
            self.sim.submit(self.rng.choice(live), ClusterCommitRequest())
        again = self.sim.now_ms + self.RETRY_MS
        self.sim.at(again, f"churn: commit for {name}", lambda: self._commit_until(done, name))

    def _live_names(self) -> list[str]:
        return [n for n in self.sim.running() if n not in self.sim.paused]

    def _live(self) -> list[Node]:
        return [node for node in self.sim.nodes.values() if node is not None]

    def _someone_sees(self, name: str, test: Callable[[MemberState], bool]) -> bool:
        for node in self._live():
            member = node.cluster.state.members.get(name)
            if member is not None and test(member.state):
                return True
        return False
