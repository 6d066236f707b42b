"""The node's cluster state wired in: loaded from the meta space, gossiped, persisted, and its ring applied.

Paper section 4.8. The node holds one `ClusterState` (core/cluster_state.py), kept by the `Gossip`
machine (gossip.py). This module is the seam between that machine and the node:

- At start the state persisted under `STATE_META_KEY` wins; a node that has none starts from the state
  the driver hands in (a static cluster's configured ring, `cluster_state.from_ring`; later a one-node
  cluster or the empty state of a node joining through a seed).
- Every tick runs a gossip round (at most one per `Timing.gossip_interval_ms`), with the peers this
  node counts as unreachable left out; gossip messages are answered as they arrive.
- Whenever the state changes (a merge, the claimant's step, a local admin change through `update`) it
  is written to the meta space (durably: a node must never restart on a ring older than one it has
  already acted on), and when the ring or the member list changed, `on_change` tells the node, which
  hands the new ring to the data path, anti-entropy, props and handoff and the members to reachability.
- The level `transfers.pending` (the moves not complete yet, for /stats and /metrics) follows every
  change of the state.
- The history: each new ring epoch (a commit or a flip) is appended to a bounded log in the meta space
  (`HISTORY_META_KEY`, the last `HISTORY_MAX` epochs), so an operator can see what changed and when.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence, Set
from dataclasses import replace
from typing import Any, Final

from dynakv.core import cluster_state as cs
from dynakv.core import codec
from dynakv.core.cluster_state import ClusterState
from dynakv.core.errors import DecodeError
from dynakv.core.membership import MemberState
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.gossip import STATE_META_KEY, Gossip, GossipOutput, GossipSettings, JoinIntent
from dynakv.protocol.gossip_messages import GossipMessage
from dynakv.protocol.ports import StorageEngine, StorageError

HISTORY_META_KEY: Final = b"cluster/history"
# The level kept current for /stats and /metrics: `moves_pending` of the state held.
MOVES_PENDING: Final = "transfers.pending"
HISTORY_MAX: Final = 64
_HISTORY_TAG: Final = "cluster.history"

# Called with the state after a change of the ring or of the member list.
OnChange = Callable[[ClusterState], None]


def load_state(storage: StorageEngine, initial: ClusterState, counters: Counter[str]) -> ClusterState:
    """The persisted state, or `initial` when there is none (or it cannot be read: counted)."""
    data = storage.meta_get(STATE_META_KEY)
    if data is None:
        return initial
    try:
        return cs.decode(data)
    except DecodeError:
        counters["cluster.state_corrupt"] += 1
        return initial


def _shape(state: ClusterState) -> tuple[Any, ...]:
    """What the node's components depend on: the ring and who the members are (and in what state)."""
    members = tuple((m.name, m.state.value, m.address) for m in state.members.values())
    return state.ring, members


def history_entry(state: ClusterState) -> list[Any]:
    """One line of the change history: the epoch, its claimant, member states, and moves planned."""
    return [
        state.ring_version,
        state.claimant,
        [[m.name, m.state.value] for m in state.members.values()],
        [[m.partition, m.old_owner, m.new_owner] for m in state.moves],
    ]


def load_history(storage: StorageEngine) -> list[list[Any]]:
    """The persisted change history, oldest first (empty when none or unreadable)."""
    data = storage.meta_get(HISTORY_META_KEY)
    if data is None:
        return []
    try:
        entries = codec.want_list(codec.decode(data, _HISTORY_TAG), "history")
        return [codec.want_list(e, "history entry") for e in entries]
    except DecodeError:
        return []


class ClusterWiring:
    def __init__(
        self,
        name: str,
        initial: ClusterState,
        storage: StorageEngine,
        *,
        rng: random.Random,
        settings: GossipSettings,
        counters: Counter[str],
        seeds: Sequence[str] = (),
        join: JoinIntent | None = None,
    ) -> None:
        self.storage = storage
        self.counters = counters
        state = load_state(storage, initial, counters)
        self.gossip = Gossip(name, state, rng, settings, seeds=seeds, join=join)
        self.on_change: OnChange = lambda _state: None
        self._level(state)
        self._shape = _shape(state)
        self._epoch = state.ring_version
        if storage.meta_get(STATE_META_KEY) is None:
            self._persist(state)

    @property
    def state(self) -> ClusterState:
        return self.gossip.state

    def on_tick(self, now_ms: int, unreachable: Set[str], out: list[Effect]) -> None:
        self._apply(self.gossip.on_tick(now_ms, unreachable), out)

    def on_message(self, src: str, msg: GossipMessage, out: list[Effect]) -> None:
        self._apply(self.gossip.on_message(src, msg), out)
        if self.gossip.foreign:
            # A state of another cluster with this cluster's name: refused (cluster_state.foreign).
            self.counters["cluster.foreign_refused"] += len(self.gossip.foreign)
            self.gossip.foreign.clear()

    def update(self, state: ClusterState) -> bool:
        """Adopt a state changed on this node (an admin change, a completed transfer); whether it changed."""
        changed = self.gossip.update(state)
        if changed:
            self._changed()
        return changed

    def add_seed(self, name: str) -> None:
        """A seed's name, learned by the driver from its address (gossip asks seeds by name)."""
        gossip = self.gossip
        gossip.seeds = tuple(sorted({*gossip.seeds, name} - {gossip.name}))

    def set_own_address(self, address: str) -> None:
        """This node's cluster address, known to the driver once it has bound its listener: joined
        with it when the node is still looking for its cluster, else written into its own member entry
        (a version bump) when it differs, so peers learn where to reach it after a restart on a new port."""
        gossip = self.gossip
        if gossip.join is not None:
            gossip.join = replace(gossip.join, address=address)
        member = self.state.members.get(gossip.name)
        if member is None or member.address == address:
            return
        changed = replace(member, address=address, version=member.version + 1)
        self.update(replace(self.state, members=self.state.members.with_member(changed)))

    def _apply(self, output: GossipOutput, out: list[Effect]) -> None:
        if output.changed:
            self._changed()
        for send in output.sends:
            out.append(Send(send.dst, send.msg))

    def _level(self, state: ClusterState) -> None:
        self.counters[MOVES_PENDING] = moves_pending(state)

    def _changed(self) -> None:
        state = self.gossip.state
        self._level(state)
        self._persist(state)
        if state.ring_version > self._epoch:
            self._epoch = state.ring_version
            self._append_history(state)
        shape = _shape(state)
        if shape != self._shape:
            self._shape = shape
            self.on_change(state)

    def _persist(self, state: ClusterState) -> None:
        try:
            self.storage.meta_put(STATE_META_KEY, cs.encode(state), durable=True)
        except StorageError:
            self.counters["cluster.persist_errors"] += 1

    def _append_history(self, state: ClusterState) -> None:
        entries = [*load_history(self.storage), history_entry(state)][-HISTORY_MAX:]
        try:
            self.storage.meta_put(HISTORY_META_KEY, codec.encode(_HISTORY_TAG, entries), durable=True)
        except StorageError:
            self.counters["cluster.persist_errors"] += 1


def moves_pending(state: ClusterState) -> int:
    """The ownership moves whose data has not all arrived (the ring flips them once complete): what an
    operator waits on after a commit, the same on every node once gossip agrees."""
    return sum(1 for move in state.moves if not move.complete)


def live_members(state: ClusterState, name: str) -> list[str]:
    """The members other than `name` that are not removed, in name order: the peers to watch."""
    return [m.name for m in state.members.values() if m.name != name and m.state is not MemberState.REMOVED]


def should_stop(state: ClusterState, name: str) -> bool:
    """Whether node `name` has nothing left to serve and may stop: it was removed, or it is exiting
    (a leave committed and handed off) in an epoch another node wrote. A leaving claimant makes itself
    exiting in an epoch only it holds: stopping then would take that epoch (its last flip) with it and
    leave every other node waiting on a claimant that is gone; it goes on gossiping instead until the
    next claimant, having seen it exiting, marks it removed."""
    me = state.members.get(name)
    if me is None:
        return False
    return me.state is MemberState.REMOVED or (me.state is MemberState.EXITING and state.claimant != name)
