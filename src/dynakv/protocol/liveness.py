"""The failure detector's probe messages (protocol/reachability.py sends and answers them).

Every `Timing.probe_interval_ms` a node pings each peer in turn; the peer answers with a Pong echoing
`seq`. Any message from a peer counts as a sign of life, so the pair only matters for quiet links.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to `Ping(seq)`."""

    seq: int
