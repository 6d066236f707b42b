"""A phi-accrual failure detector: each node's local, graded suspicion of each peer.

Hayashibara et al., "The phi accrual failure detector" (SRDS 2004), as Cassandra and Akka use it. The
detector does not answer "up or down" but how unlikely the current silence is: it keeps the intervals
between a peer's arrivals (probe answers, heartbeats, any reply) in a bounded window and computes

    phi(t) = -log10(P(the next arrival comes later than t))

where t is the time since the last arrival. phi = 1 means a 10% chance the peer is merely slow, phi = 8
one in 10^8. A peer is suspected while phi >= `threshold`. The verdict changes preference lists only
(who serves), never ownership; it is each node's own view, not a cluster decision.

The model is exponential, as Cassandra's: P(later than t) = exp(-t / mean), so

    phi(t) = t / (mean * ln 10)

Why exponential rather than Akka's normal distribution: (1) phi is linear in the silence, so the time at
which a peer is suspected has a closed form, `threshold * ln 10 * mean`, and an operator can be promised
"a paused process is suspected within X ms" (`DetectorSettings.suspect_within_ms`); under the normal
model that time depends on the variance and phi saturates numerically (the tail underflows); (2) our
arrivals are probe answers at a fixed interval, jittered by queueing, for which the variance says little
while a GC pause or SIGSTOP says everything; (3) it needs no float tricks or approximation of erf.

Bounds that keep it sane, and what an operator can rely on:

- `bootstrap_interval_ms`: the mean assumed before a peer has given two arrivals, so a fresh peer is not
  suspected at once (it is suspected after `threshold * ln 10 * bootstrap_interval_ms` of silence).
- `min_interval_ms`: the mean never drops below it, so a burst of fast replies does not make the
  detector hair-triggered (the role of Akka's minimum standard deviation).
- `max_interval_ms`: the mean never exceeds it, and intervals longer than it (outages, pauses) are not
  recorded, so one long silence does not make the detector slow for the next. Hence the guarantee:
  whatever its history, a peer silent for `suspect_within_ms()` is suspected, and one that answers
  again is trusted at once (phi is 0 right after an arrival).

Pure: no clock (time arrives as `now_ms`), no randomness, no I/O; peers are visited in sorted order.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Self

from dynakv.core.errors import ConfigError

LN10 = math.log(10.0)


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """The detector's knobs (intervals in ms; `threshold` is a phi value, `window` a count)."""

    threshold: float = 8.0
    window: int = 100
    bootstrap_interval_ms: int = 1_000
    min_interval_ms: int = 100
    max_interval_ms: int = 1_000

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 100.0:
            raise ConfigError("threshold", f"{self.threshold} is not in (0, 100]")
        if self.window < 1:
            raise ConfigError("window", f"{self.window} is below the minimum 1")
        if not 1 <= self.min_interval_ms <= self.max_interval_ms:
            raise ConfigError(
                "min_interval_ms", f"need 1 <= min_interval_ms <= max_interval_ms, got {self.min_interval_ms}"
            )
        if not self.min_interval_ms <= self.bootstrap_interval_ms <= self.max_interval_ms:
            raise ConfigError(
                "bootstrap_interval_ms",
                f"{self.bootstrap_interval_ms} is not between min_interval_ms and max_interval_ms",
            )

    def suspect_after_ms(self, mean_ms: float) -> int:
        """The silence after which a peer whose mean interval is `mean_ms` is suspected."""
        return math.ceil(self.threshold * LN10 * mean_ms)

    def suspect_within_ms(self) -> int:
        """The bound for every peer, whatever its history: silent this long, it is suspected."""
        return self.suspect_after_ms(self.max_interval_ms)

    @classmethod
    def suspecting_within(
        cls, suspect_within_ms: int, probe_interval_ms: int, threshold: float = 8.0
    ) -> Self:
        """Settings under which a peer silent for `suspect_within_ms` is suspected.

        `probe_interval_ms` is how often the peer is heard from when healthy. A healthy peer's silence
        never exceeds it (plus jitter), so pick `suspect_within_ms` well above it, three times or more;
        below twice it is refused, as it would suspect healthy peers."""
        if suspect_within_ms < 2 * probe_interval_ms:
            raise ConfigError(
                "suspect_within_ms",
                f"{suspect_within_ms} is below twice the probe interval {probe_interval_ms}",
            )
        # One ms of margin: the ceil() of suspect_after_ms stays within suspect_within_ms.
        max_interval = max(1, math.floor((suspect_within_ms - 1) / (threshold * LN10)))
        bootstrap = min(probe_interval_ms, max_interval)
        return cls(threshold, 100, bootstrap, min(100, bootstrap), max_interval)


@dataclass(slots=True)
class _History:
    last_ms: int
    intervals: deque[int]
    total_ms: int = 0
    arrivals: int = 1


@dataclass(slots=True)
class FailureDetector:
    """Per-peer arrival history and the phi computed from it; one per node."""

    settings: DetectorSettings = field(default_factory=DetectorSettings)
    _peers: dict[str, _History] = field(default_factory=dict)
    _last_probed: str | None = None

    # -- arrivals and peers ---------------------------------------------------------------------------

    def watch(self, peer: str, now_ms: int) -> None:
        """Start judging `peer`, as if it had just answered (its silence counts from now)."""
        if peer not in self._peers:
            self._peers[peer] = _History(now_ms, deque(maxlen=self.settings.window))

    def forget(self, peer: str) -> None:
        """Stop judging `peer` (it left the cluster)."""
        self._peers.pop(peer, None)

    def heartbeat(self, peer: str, now_ms: int) -> None:
        """`peer` was heard from at `now_ms` (a probe answer, any reply). Out-of-order times are ignored."""
        history = self._peers.get(peer)
        if history is None:
            self.watch(peer, now_ms)
            return
        interval = now_ms - history.last_ms
        if interval < 0:
            return
        history.last_ms = now_ms
        history.arrivals += 1
        if 0 < interval <= self.settings.max_interval_ms:
            if len(history.intervals) == history.intervals.maxlen:
                history.total_ms -= history.intervals[0]
            history.intervals.append(interval)
            history.total_ms += interval

    @property
    def peers(self) -> list[str]:
        return sorted(self._peers)

    # -- judging -------------------------------------------------------------------------------------

    def mean_interval_ms(self, peer: str) -> float:
        """The mean arrival interval phi assumes for `peer`, within the settings' bounds."""
        s = self.settings
        history = self._peers[peer]
        if not history.intervals:
            return float(s.bootstrap_interval_ms)
        mean = history.total_ms / len(history.intervals)
        return min(max(mean, float(s.min_interval_ms)), float(s.max_interval_ms))

    def phi(self, peer: str, now_ms: int) -> float:
        """The suspicion level of `peer`; 0.0 for a peer not watched (it is not judged)."""
        history = self._peers.get(peer)
        if history is None:
            return 0.0
        silence = max(0, now_ms - history.last_ms)
        return silence / (self.mean_interval_ms(peer) * LN10)

    def is_available(self, peer: str, now_ms: int) -> bool:
        """True while phi stays below the threshold. Decided in whole ms, with no float at the edge:
        the silence is compared with `ceil(threshold * ln 10 * mean)`, where phi reaches the threshold."""
        return peer not in self._peers or now_ms < self.suspect_at_ms(peer)

    def suspect_at_ms(self, peer: str) -> int:
        """The time at which `peer`, silent from now on, will be suspected (at most
        `settings.suspect_within_ms()` after its last arrival)."""
        return self._peers[peer].last_ms + self.settings.suspect_after_ms(self.mean_interval_ms(peer))

    def suspected(self, now_ms: int) -> list[str]:
        """The watched peers suspected at `now_ms`, sorted."""
        return [p for p in sorted(self._peers) if not self.is_available(p, now_ms)]

    def available(self, now_ms: int) -> list[str]:
        """The watched peers trusted at `now_ms`, sorted."""
        return [p for p in sorted(self._peers) if self.is_available(p, now_ms)]

    # -- probing -------------------------------------------------------------------------------------

    def next_probe(self) -> str | None:
        """The peer to probe next: round robin over the sorted peers, robust to joins and leaves (the
        first peer after the last one probed, wrapping around). None when no peer is watched."""
        peers = sorted(self._peers)
        if not peers:
            return None
        last = self._last_probed
        chosen = next((p for p in peers if last is None or p > last), peers[0])
        self._last_probed = chosen
        return chosen
