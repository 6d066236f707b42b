"""Failure handling on the node: the reachability view, and what follows when it changes.

`Reachability` (reachability.py) decides who this node counts as unreachable; `Handoff` (handoff.py)
keeps hints and runs transfers. This module ties them to the data path:

- a peer turning unreachable: requests waiting on it stop waiting (`DataPath.on_peer_down`, and the
  listings'), its transfers pause, and from now on fallbacks stand in for it (`DataPath.down`);
- a peer trusted again: it serves its keys again, and the hints for it replay at once.

`DataPath.down` stays the one set the data path, gossip and anti-entropy read; it changes only here.
"""

from __future__ import annotations

from dynakv.core.ring import Ring
from dynakv.protocol.data_path import DataPath, Settings
from dynakv.protocol.effects import Effect
from dynakv.protocol.handoff import Handoff
from dynakv.protocol.listing import Listings
from dynakv.protocol.liveness import Ping, Pong
from dynakv.protocol.messages import TransferAck, TransferBatch
from dynakv.protocol.notices import Notices
from dynakv.protocol.ports import StorageEngine
from dynakv.protocol.reachability import Change, Reachability

AvailabilityMessage = Ping | Pong | TransferBatch | TransferAck


class Availability:
    def __init__(
        self,
        ring: Ring,
        storage: StorageEngine,
        *,
        settings: Settings,
        data: DataPath,
        listings: Listings,
        notices: Notices,
    ) -> None:
        self.data = data
        self.listings = listings
        self.reach = Reachability(data.name, list(ring.owners), settings.timing)
        self.handoff = Handoff(
            data.name,
            ring,
            storage,
            limits=settings.limits,
            timing=settings.timing,
            counters=data.counters,
            props_for=data.props_for,
            notices=notices,
        )
        self.handoff.hints.defects = settings.defects  # test-only, empty in production
        data.handoff = self.handoff

    def heard(self, src: str, now_ms: int, out: list[Effect]) -> None:
        """Any message from `src`: it is alive (cheap when nothing changes: the hot path calls it)."""
        change = self.reach.heard(src, now_ms)
        if change.up:
            self._apply(change, now_ms, out)

    def on_message(self, src: str, msg: AvailabilityMessage, now_ms: int, out: list[Effect]) -> None:
        if isinstance(msg, Ping | Pong):
            self.reach.on_probe(src, msg, out)
        else:
            self.handoff.on_message(src, msg, now_ms, out)

    def on_tick(self, now_ms: int, out: list[Effect]) -> None:
        self._apply(self.reach.on_tick(now_ms, out), now_ms, out)
        self.handoff.on_tick(now_ms, self.data.down, out)

    def link_made(self, node: str, now_ms: int, out: list[Effect]) -> None:
        self._apply(self.reach.link_made(node, now_ms), now_ms, out)

    def link_lost(self, node: str, now_ms: int, out: list[Effect]) -> None:
        self._apply(self.reach.link_lost(node), now_ms, out)

    def set_members(self, peers: list[str], ring: Ring, ring_known: bool) -> None:
        """Membership changed: watch the new peers, and stop counting those no longer members as down."""
        for node in self.reach.set_peers(peers):
            self.data.down.discard(node)
        self.handoff.set_members(set(peers), ring, ring_known)

    def _apply(self, change: Change, now_ms: int, out: list[Effect]) -> None:
        self.data.counters["peers.turned_unreachable"] += len(change.down)
        for node in change.down:
            self.data.on_peer_down(node, now_ms, out)
            self.listings.on_peer_down(node, now_ms, out)
            self.handoff.on_peer_down(node)
        for node in change.up:
            self.data.down.discard(node)
        for node in change.up:
            self.handoff.on_peer_up(node, now_ms, self.data.down, out)
