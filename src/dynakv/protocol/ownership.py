"""Ownership transfers: after a commit, the data moves to the new owners through the one transfer
mechanism (transfer.py, kind OWNERSHIP), and only then does the ring flip (paper section 4.8).

What must move. Data is stored by the key's partition q and held by the primaries of q (its first n_val
distinct owners clockwise). A commit plans moves (position p from its old owner to a new one), so the
primaries of q in the future ring (`ClusterState.future_ring`) may include nodes that are not primaries
of q now: each such *added* node needs all of q. Every node computes the same duties from the state
(`duties`): for each q, the added nodes are paired in order with the *removed* ones (primaries now,
not in the future), which send; an added node with no removed partner gets q from q's first primary.

Carrying a duty out: the sender streams q to the added node with a `PartitionSource` (batched,
throttled, acked, its cursor persisted on every ack, so a crash of either side resumes where the last
acknowledged batch ended: the manager pauses a transfer whose target goes down and resumes it when the
target is back; a restarted sender recomputes its duties and resumes from the persisted cursors).

Writes that arrive meanwhile. The sender keeps serving (the ring has not flipped), and from the moment
it knows a duty until the ring no longer implies it, every local change of q's data is also sent to the
added node (`ReadRepair`, merged there like any replica copy). The scan covers what was there before; the
forwards cover what came after; merges are joins, so overlap is harmless. A write a coordinator with
an older ring sends after this node has seen the flip (so it is a primary of the partition neither now
nor later) is forwarded the same way to the partition's current primaries. Forwards are not
acknowledged: a forward lost with a dropped link, or queued when the sender crashed, is not resent; the
other replicas the write reached, read repair and anti-entropy cover it (the weakness this design
accepts).

Completion: once every duty of this node is acknowledged to the end, it marks its moves complete
(`cluster_state.mark_complete`); gossip carries the flags to the claimant, which flips them
(`claimant.claimant_tick`). After the flip the old owner hands its copies to a current primary and
deletes them (ownership_cleanup.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Set

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ClusterState
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.cluster import ClusterWiring
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.handoff import Handoff
from dynakv.protocol.messages import ReadRepair, TransferKind
from dynakv.protocol.ownership_cleanup import Cleanup
from dynakv.protocol.ports import StorageEngine
from dynakv.protocol.transfer import NotStarted, PartitionSource, TransferStatus

Duty = tuple[int, str]  # (partition, target)


def duties(state: ClusterState, n_val: int) -> Iterator[tuple[int, str, str]]:
    """Every (partition, target, sender) that the pending moves imply, in partition order."""
    ring, future = state.ring, state.future_ring()
    if ring is None or future is None or not state.moves:
        return
    for partition in range(ring.partitions):
        now = primaries(ring, partition, n_val)
        later = primaries(future, partition, n_val)
        added = [n for n in later if n not in now]
        removed = [n for n in now if n not in later]
        for i, target in enumerate(added):
            yield partition, target, removed[i] if i < len(removed) else now[0]


class Ownership:
    def __init__(
        self,
        name: str,
        storage: StorageEngine,
        handoff: Handoff,
        n_val: int,
        counters: Counter[str],
        *,
        cleanup_delay_ms: int,
    ) -> None:
        self.name = name
        self.storage = storage
        self.handoff = handoff
        self.n_val = n_val
        self.counters = counters
        self._key: tuple[int, tuple[tuple[int, str, str, int], ...]] | None = None
        self._duties: list[Duty] = []
        self._forward: dict[int, list[str]] = {}
        self._done: set[Duty] = set()
        self._outbox: list[Effect] = []
        self._ring: Ring | None = None
        self._future: Ring | None = None
        self._stray: dict[int, tuple[str, ...]] = {}
        self._lost: set[int] = set()  # partitions this node stopped being a primary of at a flip
        # (partition, target): replicas to rebuild after a removal, this node a surviving replica.
        self._repairs: set[Duty] = set()
        self.counters["ownership.duties_pending"] = 0
        self.cleanup = Cleanup(
            name,
            n_val,
            storage,
            handoff.hints,
            is_primary=handoff.is_primary,
            delay_ms=cleanup_delay_ms,
            counters=counters,
        )
        handoff.on_received = self.cleanup.received

    def on_state(self, state: ClusterState) -> None:
        """Recompute this node's duties when the ring epoch or its moves changed."""
        key = (state.ring_version, tuple(m.ident for m in state.moves))
        if key == self._key:
            return
        self._key = key
        mine = [(q, target) for q, target, sender in duties(state, self.n_val) if sender == self.name]
        self._duties = mine
        self._done &= set(mine)
        self._cancel_stale(set(mine), state)
        self._forward = {}
        self._note_lost(self._ring, state.ring)
        self._note_repairs(self._ring, state)
        self._ring, self._future = state.ring, state.future_ring()
        self._stray = {}
        for q, target in mine:
            self._forward.setdefault(q, []).append(target)
        self._level()

    def _level(self) -> None:
        self.counters["ownership.duties_pending"] = len(self._duties) - len(self._done)

    def _cancel_stale(self, mine: set[Duty], state: ClusterState) -> None:
        """Ownership transfers for duties a new epoch no longer implies (a move planned again, a target
        removed) are cancelled: left paused, they would hold places under the manager's bound that the
        new duties need. Repairs for a target no longer a member are dropped likewise."""
        self._repairs = {(q, t) for q, t in self._repairs if state.is_member(t)}
        manager = self.handoff.manager
        for status in manager.status():
            duty = (status.partition, status.target)
            stale_move = status.kind is TransferKind.OWNERSHIP and duty not in mine
            stale_repair = status.kind is TransferKind.REPAIR and duty not in self._repairs
            if stale_move or stale_repair:
                manager.cancel(status.transfer_id)
                self.counters["ownership.transfers_cancelled"] += 1

    def on_tick(self, now_ms: int, down: Set[str], cluster: ClusterWiring, out: list[Effect]) -> None:
        self.on_state(cluster.state)
        for q, target in self._duties:
            if (q, target) in self._done or target in down:
                continue
            source = PartitionSource(self.storage, TransferKind.OWNERSHIP, target, q)
            started = self.handoff.manager.start(target, source, now_ms, out)
            if isinstance(started, NotStarted) and started.at_bound:
                break
        self._start_repairs(now_ms, down, out)
        self._complete_if_done(cluster)
        self.cleanup.on_tick(now_ms, cluster.state, down, self.handoff.manager, out)

    def _complete_if_done(self, cluster: ClusterWiring) -> None:
        state = cluster.state
        waiting = state.moves_from(self.name)
        if not waiting or len(self._done) < len(self._duties):
            return
        for move in waiting:
            state = cs.mark_complete(state, move.partition, move.new_owner)
        if cluster.update(state):
            self.counters["ownership.moves_completed"] += len(waiting)

    def on_finished(self, status: TransferStatus) -> None:
        """A transfer of the shared manager finished: an ownership duty is done when it was one."""
        duty = (status.partition, status.target)
        if status.kind is TransferKind.CLEANUP:
            self.cleanup.finished(status)
        if status.kind is TransferKind.REPAIR and duty in self._repairs:
            self._repairs.discard(duty)
            self.counters["ownership.repairs_done"] += 1
        if status.kind is TransferKind.OWNERSHIP and duty in self._duties:
            self._done.add(duty)
            self._level()

    def sent(self) -> tuple[Duty, ...]:
        """The duties (partition, target) this node finished for the moves pending now, in order."""
        return tuple(sorted(self._done))

    def on_write(
        self, partition: int, bucket: bytes, key: bytes, old: bytes | None, new: bytes | None
    ) -> None:
        """Every local data change: forward it to the nodes this node hands the partition to."""
        if new is None:
            return
        duty_targets = self._forward.get(partition)
        targets = tuple(duty_targets) if duty_targets is not None else self._stray_targets(partition)
        if not targets:
            return
        for target in targets:
            self._outbox.append(Send(target, ReadRepair(partition, bucket, key, new)))
        self.counters["ownership.forwarded"] += len(targets)

    def _note_lost(self, old: Ring | None, new: Ring | None) -> None:
        if old is None or new is None or old == new or old.partitions != new.partitions:
            return
        for q in range(new.partitions):
            if self.name in primaries(new, q, self.n_val):
                self._lost.discard(q)
                self.cleanup.regained(q)
            elif self.name in primaries(old, q, self.n_val):
                self._lost.add(q)
                self.cleanup.lost(q)

    def _note_repairs(self, old: Ring | None, state: ClusterState) -> None:
        """A removal took effect (`dynakv cluster remove`: the dead node's partitions were claimed again
        without a handoff): each new primary of a partition that a removed node held gets the partition
        from the first surviving primary (kind REPAIR). Only nodes that saw the change do this (a
        restarted node leaves it to anti-entropy)."""
        new = state.ring
        if old is None or new is None or old == new or old.partitions != new.partitions:
            return
        for q in range(new.partitions):
            before, after = primaries(old, q, self.n_val), primaries(new, q, self.n_val)
            if all(state.is_member(n) for n in before):
                continue
            survivors = [n for n in before if n in after and state.is_member(n)]
            if survivors and survivors[0] == self.name:
                self._repairs.update((q, target) for target in after if target not in before)

    def _start_repairs(self, now_ms: int, down: Set[str], out: list[Effect]) -> None:
        for q, target in sorted(self._repairs):
            if target in down:
                continue
            source = PartitionSource(self.storage, TransferKind.REPAIR, target, q)
            started = self.handoff.manager.start(target, source, now_ms, out)
            if isinstance(started, NotStarted) and started.at_bound:
                return

    def _stray_targets(self, partition: int) -> tuple[str, ...]:
        """A write here for a partition this node was a primary of until a flip, and is a primary of
        neither now nor after the pending moves: a coordinator with an older ring sent it. Forward it to
        the partition's current primaries, which might not have it."""
        cached = self._stray.get(partition)
        if cached is None:
            cached = ()
            if partition in self._lost and self._ring is not None and self._future is not None:
                now = primaries(self._ring, partition, self.n_val)
                if self.name not in now and self.name not in primaries(self._future, partition, self.n_val):
                    cached = now
            self._stray[partition] = cached
        return cached

    def pending_out(self) -> bool:
        return bool(self._outbox)

    def take_outbox(self) -> list[Effect]:
        outbox, self._outbox = self._outbox, []
        return outbox
