"""Gossip: every node reconciles its cluster state with a random peer once per interval (paper 4.8.1).

Sans-IO, like every machine in `protocol`: the driver (later, the Node) hands in ticks and messages and
gets back what to send plus whether the state changed, in which case it persists the state (meta key
`STATE_META_KEY`) and reacts to ring changes.

- Each round (at most one per `interval_ms`) the node picks a peer uniformly, with the injected
  `random.Random`, among the members it knows (not itself, not removed, not known unreachable), and
  every `seed_every`-th round a seed instead (paper 4.8.2: seeds are known to every node, so two parts
  of a cluster that know nothing of each other still meet through them). A node that knows no peer
  yet (it has just started with a seed) asks a seed every round.
- Seeds are node names. An operator may know only an address: the runtime then resolves it by
  connecting, reading the name from the peer's `Hello`, and passing that name here; the machine never
  deals in addresses.
- The exchange (protocol/gossip_messages.py) is digest first, whole state only when digests differ,
  and at most three messages a round, so a converged cluster costs one 16-byte digest per node per
  round. States merge with `cluster_state.merge`, so order, loss and duplication do not matter.
- A node started with a seed (`join`) stages its own join as soon as it holds a cluster state that
  does not list it: the claimant admits it at the next `dynakv cluster commit`.
- The node that is the acting claimant also flips completed moves and settles leaving members each
  round (`claimant.claimant_tick`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Final

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ClusterState
from dynakv.core.config import Timing
from dynakv.core.errors import ConfigError
from dynakv.core.membership import MemberState
from dynakv.protocol import claimant
from dynakv.protocol.gossip_messages import GossipDigest, GossipMessage, GossipState

STATE_META_KEY: Final = b"cluster/state"
SEED_EVERY_DEFAULT: Final = 5


@dataclass(frozen=True, slots=True)
class GossipSend:
    """Send `msg` to node `dst` (the Node wraps it in its `Send` effect once the messages are wired)."""

    dst: str
    msg: GossipMessage


@dataclass(frozen=True, slots=True)
class GossipOutput:
    sends: tuple[GossipSend, ...] = ()
    changed: bool = False  # the state changed: persist it, and look at the ring


@dataclass(frozen=True, slots=True)
class GossipSettings:
    interval_ms: int = 1_000
    seed_every: int = SEED_EVERY_DEFAULT

    def __post_init__(self) -> None:
        if self.interval_ms < 1 or self.seed_every < 1:
            raise ConfigError("gossip", "interval_ms and seed_every must be at least 1")

    @classmethod
    def from_timing(cls, timing: Timing, seed_every: int = SEED_EVERY_DEFAULT) -> GossipSettings:
        return cls(timing.gossip_interval_ms, seed_every)


@dataclass(frozen=True, slots=True)
class JoinIntent:
    """How a node started with a seed enters the cluster it finds."""

    zone: str | None = None
    address: str | None = None


class Gossip:
    def __init__(
        self,
        name: str,
        state: ClusterState,
        rng: random.Random,
        settings: GossipSettings,
        *,
        seeds: Sequence[str] = (),
        join: JoinIntent | None = None,
    ) -> None:
        self.name = name
        self.rng = rng
        self.settings = settings
        # Sorted, so the same seed list in any order gives the same choices.
        self.seeds = tuple(sorted({s for s in seeds if s != name}))
        self.join = join
        self._state = state
        self._rounds = 0
        self._next_round_ms: int | None = None
        # Cluster ids of states refused (`cluster_state.foreign`), for the node to count and log.
        self.foreign: set[str] = set()

    @property
    def state(self) -> ClusterState:
        return self._state

    @property
    def rounds(self) -> int:
        return self._rounds

    def update(self, state: ClusterState) -> bool:
        """Adopt a state changed locally (an admin staging a change, a transfer marked complete, a
        commit on the claimant); whether it differs from the current one."""
        changed = state.digest != self._state.digest
        self._state = state
        return changed

    def peers(self, unreachable: Set[str] = frozenset()) -> list[str]:
        """The members this node may gossip with, in name order."""
        return [
            m.name
            for m in self._state.members.values()
            if m.name != self.name and m.state is not MemberState.REMOVED and m.name not in unreachable
        ]

    def choose_peer(self, unreachable: Set[str] = frozenset()) -> str | None:
        """This round's partner: a seed every `seed_every`-th round or when no member is known,
        otherwise a random known member; None when there is no one to ask."""
        peers = self.peers(unreachable)
        seeds = [s for s in self.seeds if s not in unreachable]
        seed_round = self._rounds % self.settings.seed_every == 0
        if seeds and (seed_round or not peers):
            return self.rng.choice(seeds)
        return self.rng.choice(peers) if peers else None

    def on_tick(self, now_ms: int, unreachable: Set[str] = frozenset()) -> GossipOutput:
        """One gossip round if the interval has passed: the claimant's step, then a digest to a peer."""
        if self._next_round_ms is not None and now_ms < self._next_round_ms:
            return GossipOutput()
        self._next_round_ms = now_ms + self.settings.interval_ms
        changed = False
        if cs.acting_claimant(self._state) == self.name:
            changed = self.update(claimant.claimant_tick(self._state))
        peer = self.choose_peer(unreachable)  # round 0 asks a seed: a restarted node catches up first
        self._rounds += 1
        sends = () if peer is None else (GossipSend(peer, GossipDigest(self._state.digest)),)
        return GossipOutput(sends, changed)

    def on_message(self, src: str, msg: GossipMessage) -> GossipOutput:
        match msg:
            case GossipDigest(digest):
                if digest == self._state.digest:
                    return GossipOutput()
                return GossipOutput((GossipSend(src, GossipState(self._state, reply=True)),))
            case GossipState(theirs, reply):
                changed = self._absorb(theirs)
                back = reply and self._state.digest != theirs.digest
                sends = (GossipSend(src, GossipState(self._state, reply=False)),) if back else ()
                return GossipOutput(sends, changed)
        raise AssertionError(f"not a gossip message: {msg!r}")

    def _absorb(self, theirs: ClusterState) -> bool:
        if cs.foreign(self._state, theirs):
            # Another cluster under the same name (founded apart): never merge, whatever its epoch.
            self.foreign.add(theirs.cluster_id)
            return False
        before = self._state.digest
        state = cs.merge(self._state, theirs)
        if self.join is not None and state.ring is not None and self.name not in state.members:
            # Started with a seed and now holding the cluster's state: ask to join it.
            state = cs.stage_join(state, self.name, self.join.zone, self.join.address)
        self._state = state
        return state.digest != before
