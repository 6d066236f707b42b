"""Each node's own view of which peers it can reach: lost links and the failure detector's suspicion.

A peer is unreachable while its link is down (`PeerDisconnected` until `PeerConnected`) or while the
phi-accrual detector (failure_detector.py) suspects it. The view changes preference lists only (who
serves a key: sloppy quorum), never ownership, and it is local: two nodes may disagree for a while.

Arrivals: every message from a peer is a heartbeat. For links that carry nothing else, the node probes:
each tick it sends `Ping`s round robin (`FailureDetector.next_probe`) at a rate that reaches every peer
once per `Timing.probe_interval_ms`; a peer answers `Pong`. Probing a single peer per interval would let
a healthy peer's silence grow with the cluster's size, past the suspicion bound in a large cluster.

The bound: a peer silent for `Timing.suspect_after_ms` is suspected, whatever its history
(`DetectorSettings.suspecting_within`), and none is suspected before two probe intervals of silence
(`detector_settings`); it is trusted again by its next message.

A node that was itself stopped (SIGSTOP, a long GC, an overloaded loop) sees every peer silent when it
runs again; that silence says nothing about them. A tick arriving more than a probe interval late
restarts every peer's silence from now, so a resumed node does not suspect the whole cluster at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dynakv.core.config import Timing
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.failure_detector import LN10, DetectorSettings, FailureDetector
from dynakv.protocol.liveness import Ping, Pong


@dataclass(frozen=True, slots=True)
class Change:
    """Peers that became unreachable (`down`) and reachable again (`up`), each sorted."""

    down: tuple[str, ...] = ()
    up: tuple[str, ...] = ()


class Reachability:
    def __init__(self, name: str, peers: list[str], timing: Timing) -> None:
        self.name = name
        self.peers = sorted(p for p in set(peers) if p != name)
        self.probe_interval_ms = timing.probe_interval_ms
        self.detector = FailureDetector(detector_settings(timing))
        self.link_down: set[str] = set()
        self.unreachable: set[str] = set()
        self._seq = 0
        self._last_tick_ms: int | None = None
        self._credit_ms = 0

    # -- arrivals and links --------------------------------------------------------------------------

    def heard(self, peer: str, now_ms: int) -> Change:
        """A message from `peer`: a heartbeat; a suspected peer with a working link is trusted again."""
        self.detector.heartbeat(peer, now_ms)
        if peer in self.unreachable and peer not in self.link_down:
            self.unreachable.discard(peer)
            return Change(up=(peer,))
        return _NONE

    def on_probe(self, src: str, msg: Ping | Pong, out: list[Effect]) -> None:
        if isinstance(msg, Ping):
            out.append(Send(src, Pong(msg.seq)))

    def link_lost(self, peer: str) -> Change:
        self.link_down.add(peer)
        if peer in self.unreachable:
            return _NONE
        self.unreachable.add(peer)
        return Change(down=(peer,))

    def link_made(self, peer: str, now_ms: int) -> Change:
        """A link (re)made: the peer just completed a handshake, which is a sign of life too."""
        self.link_down.discard(peer)
        return self.heard(peer, now_ms)

    def set_peers(self, peers: list[str]) -> list[str]:
        """The members to watch changed (membership): new ones are watched from the next tick on; the
        peers no longer members are forgotten, and returned if they were counted unreachable."""
        wanted = sorted(p for p in set(peers) if p != self.name)
        gone = sorted(set(self.peers) - set(wanted))
        self.peers = wanted
        for peer in gone:
            self.detector.forget(peer)
            self.link_down.discard(peer)
        dropped = [p for p in gone if p in self.unreachable]
        self.unreachable.difference_update(gone)
        return dropped

    # -- time ----------------------------------------------------------------------------------------

    def on_tick(self, now_ms: int, out: list[Effect]) -> Change:
        """Send the probes due, then judge every peer; what changed in the view."""
        last = self._last_tick_ms
        self._last_tick_ms = now_ms
        if last is None or now_ms - last > self.probe_interval_ms:
            # The first tick, or this node was stopped: every peer's silence starts now.
            for peer in self.peers:
                self.detector.forget(peer)
                self.detector.watch(peer, now_ms)
        for peer in self.peers:
            self.detector.watch(peer, now_ms)  # a member learned since the last tick (a no-op otherwise)
        self._probe(None if last is None else now_ms - last, out)
        return self._judge(now_ms)

    def _probe(self, elapsed_ms: int | None, out: list[Effect]) -> None:
        # Credit accrues at one probe interval per peer per interval elapsed; one Ping spends one
        # interval. The first tick probes every peer at once.
        cap = len(self.peers) * self.probe_interval_ms
        gained = cap if elapsed_ms is None else len(self.peers) * elapsed_ms
        self._credit_ms = min(cap, self._credit_ms + gained)
        while self._credit_ms >= self.probe_interval_ms:
            peer = self.detector.next_probe()
            if peer is None:
                return
            self._credit_ms -= self.probe_interval_ms
            self._seq += 1
            out.append(Send(peer, Ping(self._seq)))

    def _judge(self, now_ms: int) -> Change:
        down, up = [], []
        for peer in self.peers:
            reachable = peer not in self.link_down and self.detector.is_available(peer, now_ms)
            if reachable and peer in self.unreachable:
                self.unreachable.discard(peer)
                up.append(peer)
            elif not reachable and peer not in self.unreachable:
                self.unreachable.add(peer)
                down.append(peer)
        return Change(tuple(down), tuple(up)) if down or up else _NONE

    def view(self) -> list[str]:
        """The peers this node counts as unreachable now, sorted."""
        return sorted(self.unreachable)


_NONE = Change()


def detector_settings(timing: Timing) -> DetectorSettings:
    """Suspect a silent peer within `suspect_after_ms`, and never before two probe intervals of silence:
    a burst of replies lowers a peer's mean interval, and without this floor one lost probe answer
    after a burst would be enough to suspect it."""
    settings = DetectorSettings.suspecting_within(timing.suspect_after_ms, timing.probe_interval_ms)
    floor = math.ceil(2 * timing.probe_interval_ms / (settings.threshold * LN10))
    return dataclasses.replace(settings, min_interval_ms=min(settings.max_interval_ms, floor))
