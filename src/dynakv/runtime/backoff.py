"""Capped exponential backoff with jitter, for reconnecting to peers (pure; the caller sleeps)."""

from __future__ import annotations

import random


class Backoff:
    """Delays of `base_ms * 2**attempt`, capped at `cap_ms`, each drawn uniformly from its upper half.

    The jitter keeps nodes that lost the same peer at the same moment from reconnecting in lockstep;
    the upper half (rather than 0..ceiling) keeps a down peer from being hammered by short draws.
    `rng` is injected and seeded by the caller so a run can be reproduced.
    """

    def __init__(self, rng: random.Random, base_ms: int = 50, cap_ms: int = 2_000) -> None:
        assert 0 < base_ms <= cap_ms
        self._rng = rng
        self._base_ms = base_ms
        self._cap_ms = cap_ms
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay_ms(self) -> int:
        # Stop doubling once past the cap, so the exponent (and the int) stays small forever.
        ceiling = min(self._cap_ms, self._base_ms << min(self._attempt, 30))
        self._attempt += 1
        return ceiling // 2 + self._rng.randint(0, ceiling - ceiling // 2)

    def reset(self) -> None:
        self._attempt = 0
