"""The simulated network: per-link fault policies, partitions, one-way cuts and clogging.

Links are directed: `(src, dst)` carries what `src` sends to `dst`. What a test can rely on:

- A `LinkPolicy` draws only what it needs from the simulation's seeded `random.Random` (never the global
  generator, never `hash()`): a clean policy draws nothing beyond the base latency, so a fault-free run
  has the digest it had before this module existed, and the same seed and fault script always give the
  same run.
- `loss` is the probability that a message is dropped; `duplicate` the probability that it is delivered
  twice (the copy gets a latency of its own, so it may overtake the original); `extra_delay_ms` adds a
  uniformly drawn delay to each copy, which reorders messages on the link.
- A cut link drops what is sent on it, and what was in flight on it when it is delivered (a partition
  loses the packets on the wire). `partition(a, b)` cuts every link between the groups both ways;
  `cut(src, dst)` one way only.
- A clogged link holds what is sent on it, in order, until `unclog` or `heal` releases it.
- `heal()` removes cuts, clogs and per-link policies; the baseline policy given at construction stays.
- `stats` counts what happened: `dropped_cut` (at send), `dropped_cut_in_flight` (at delivery),
  `dropped_loss`, `duplicated`, `held` (clogged), and `delivered.<MessageType>` for each delivery.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from dynakv.protocol.messages import PeerMessage

Link = tuple[str, str]


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """How one directed link treats each message: probabilities in [0, 1], delays in ms."""

    loss: float = 0.0
    duplicate: float = 0.0
    extra_delay_ms: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: {value} is not a probability in [0, 1]")
        lo, hi = self.extra_delay_ms
        if not 0 <= lo <= hi:
            raise ValueError(f"extra_delay_ms: {self.extra_delay_ms} is not a range 0 <= lo <= hi")

    @property
    def is_clean(self) -> bool:
        return self.loss == 0.0 and self.duplicate == 0.0 and self.extra_delay_ms == (0, 0)


CLEAN = LinkPolicy()


@dataclass(frozen=True, slots=True)
class Held:
    """A message held on a clogged link, released in order by `unclog` or `heal`."""

    src: str
    dst: str
    msg: PeerMessage


class Network:
    """The fault state of every link. The simulator asks it, per message, when copies arrive."""

    def __init__(self, nodes: Iterable[str], baseline: LinkPolicy = CLEAN) -> None:
        self.nodes = tuple(sorted(nodes))
        self.baseline = baseline
        self.stats: Counter[str] = Counter()
        self._policies: dict[Link, LinkPolicy] = {}
        self._cuts: set[Link] = set()
        self._clogged: dict[Link, list[Held]] = {}

    # -- configuring faults -------------------------------------------------------------------------

    def policy(self, src: str, dst: str) -> LinkPolicy:
        return self._policies.get((src, dst), self.baseline)

    def set_link(self, src: str, dst: str, policy: LinkPolicy) -> None:
        self._check(src, dst)
        self._policies[(src, dst)] = policy

    def cut(self, src: str, dst: str) -> None:
        """Drop everything `src` sends to `dst` (one way: `dst` still reaches `src`)."""
        self._check(src, dst)
        self._cuts.add((src, dst))

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between the two groups, both ways."""
        a, b = sorted(set(group_a)), sorted(set(group_b))
        assert not set(a) & set(b), f"the groups overlap: {sorted(set(a) & set(b))}"
        for x in a:
            for y in b:
                self.cut(x, y)
                self.cut(y, x)

    def clog(self, src: str, dst: str) -> None:
        """Hold what `src` sends to `dst` until `unclog(src, dst)` or `heal()`."""
        self._check(src, dst)
        self._clogged.setdefault((src, dst), [])

    def unclog(self, src: str, dst: str) -> list[Held]:
        """Stop clogging the link; returns what it held, in the order it was sent."""
        return self._clogged.pop((src, dst), [])

    def heal(self) -> list[Held]:
        """Remove every cut, clog and per-link policy; returns the held messages to send again."""
        self._cuts.clear()
        self._policies.clear()
        released: list[Held] = []
        for link in sorted(self._clogged):
            released.extend(self._clogged[link])
        self._clogged.clear()
        return released

    def is_cut(self, src: str, dst: str) -> bool:
        return (src, dst) in self._cuts

    def active(self) -> list[str]:
        """A description of every fault in force, sorted; empty once healed."""
        faults = [f"cut {s}->{d}" for s, d in sorted(self._cuts)]
        faults += [f"clog {s}->{d}" for s, d in sorted(self._clogged)]
        faults += [f"link {s}->{d} {p}" for (s, d), p in sorted(self._policies.items()) if not p.is_clean]
        return faults

    def _check(self, src: str, dst: str) -> None:
        assert src in self.nodes and dst in self.nodes, f"unknown link {src}->{dst}"
        assert src != dst, f"a link joins two nodes, not {src} to itself"

    # -- routing one message -------------------------------------------------------------------------

    def route(
        self, src: str, dst: str, msg: PeerMessage, latency_ms: tuple[int, int], rng: random.Random
    ) -> list[int]:
        """The delays after which copies of `msg` arrive: none (lost, cut or held), one, or two.

        The base latency is drawn first and always, as the simulator did before faults existed.
        """
        delay = rng.randint(*latency_ms)
        if (src, dst) in self._cuts:
            self.stats["dropped_cut"] += 1
            return []
        held = self._clogged.get((src, dst))
        if held is not None:
            held.append(Held(src, dst, msg))
            self.stats["held"] += 1
            return []
        policy = self.policy(src, dst)
        if policy.is_clean:
            return [delay]
        if policy.loss > 0.0 and rng.random() < policy.loss:
            self.stats["dropped_loss"] += 1
            return []
        delays = [delay + self._extra(policy, rng)]
        if policy.duplicate > 0.0 and rng.random() < policy.duplicate:
            self.stats["duplicated"] += 1
            delays.append(rng.randint(*latency_ms) + self._extra(policy, rng))
        return delays

    @staticmethod
    def _extra(policy: LinkPolicy, rng: random.Random) -> int:
        lo, hi = policy.extra_delay_ms
        return rng.randint(lo, hi) if hi > 0 else 0
