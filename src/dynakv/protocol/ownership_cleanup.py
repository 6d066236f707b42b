"""Old owners delete what they handed off (paper section 4.9: the node that gives a key range away
"transfers the keys" and no longer stores them).

A node that was a primary of partition q until a flip handed q to its new owner first (ownership.py:
the ring flips only after the new owner holds all of q), so its copy has no use, and keeping it does
harm: should the node become a primary of q again much later, its stale copy (deleted keys included,
whose tombstones the real replicas may have reaped by then) would be merged back as if current.

When. Once the ring has had no move pending for `Timing.ownership_cleanup_delay_ms`, so that gossip has
carried the flip to the other members and coordinators with the old ring are rare. A write that still
arrives is stored and forwarded to the current primaries (ownership.py, stray writes), then deleted by
the next pass. Which keys. Each key of q whose bucket's n_val does not make this node a primary (a bucket
with a larger n_val may still be) and that no hint names (a fallback's copy waiting for its handoff).
How fast. `CLEANUP_PER_TICK` keys a tick, through the node's tracked storage, so the anti-entropy trees
follow. Which partitions: those this node saw itself lose at a flip, and, surveyed once per delay while
the ring is quiet, every stored partition it is no primary of (a flip it did not live to see, a write
that arrived after a pass).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Final

from dynakv.core.cluster_state import ClusterState
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.hints import HintLog, hint_name
from dynakv.protocol.ports import DeleteOp, StorageEngine, StorageError

CLEANUP_PER_TICK: Final = 256


class Cleanup:
    def __init__(
        self,
        name: str,
        n_val: int,
        storage: StorageEngine,
        hints: HintLog,
        *,
        is_primary: Callable[[int, bytes], bool],
        delay_ms: int,
        counters: Counter[str],
    ) -> None:
        self.name = name
        self.n_val = n_val
        self.storage = storage
        self.hints = hints
        self.is_primary = is_primary
        self.delay_ms = delay_ms
        self.counters = counters
        self._lost: set[int] = set()
        self._cursor: dict[int, tuple[bytes, bytes]] = {}
        self._quiet_since_ms: int | None = None
        self._next_survey_ms = 0
        self._received_ms: dict[int, int] = {}
        self._level()

    def _level(self) -> None:
        self.counters["ownership.cleanup_pending"] = len(self._lost)

    def lost(self, partition: int) -> None:
        """This node stopped being a primary of `partition` at a flip it saw."""
        self._lost.add(partition)
        self._cursor.pop(partition, None)
        self._level()

    def received(self, partition: int, now_ms: int) -> None:
        """A transfer batch for `partition` arrived: it may be a move to this node that a commit this
        node has not heard of yet (gossip lags) planned; leave the partition alone for a delay."""
        self._received_ms[partition] = now_ms

    def _recently_received(self, partition: int, now_ms: int) -> bool:
        at = self._received_ms.get(partition)
        if at is None:
            return False
        if now_ms - at < self.delay_ms:
            return True
        del self._received_ms[partition]
        return False

    def regained(self, partition: int) -> None:
        self._lost.discard(partition)
        self._cursor.pop(partition, None)
        self._level()

    def on_tick(self, now_ms: int, state: ClusterState) -> None:
        if state.moves or state.ring is None:
            self._quiet_since_ms = None
            self._next_survey_ms = 0  # survey as soon as the ring is quiet again
            return
        if self._quiet_since_ms is None:
            self._quiet_since_ms = now_ms
        if now_ms >= self._next_survey_ms:
            # At once when the ring turns quiet (what is pending shows from then on), then once a delay.
            self._next_survey_ms = now_ms + self.delay_ms
            self._survey(state.ring)
        if now_ms - self._quiet_since_ms < self.delay_ms:
            return
        budget = CLEANUP_PER_TICK
        for partition in sorted(self._lost):
            if self._recently_received(partition, now_ms):
                continue  # still pending: looked at again once the delay since the batch is over
            budget -= self._clean(partition, budget)
            if budget <= 0:
                return

    def _survey(self, ring: Ring) -> None:
        """Every stored partition this node is no primary of goes to the cleanup: left by a flip this
        process did not see (it restarted), or written since a pass (a stray write, a late transfer)."""
        try:
            held = self.storage.partitions()
        except StorageError:
            self.counters["ownership.cleanup_errors"] += 1
            return
        for q in held:
            if q not in self._lost and self.name not in primaries(ring, q, self.n_val):
                self._lost.add(q)
        self._level()

    def _clean(self, partition: int, budget: int) -> int:
        """Examine up to `budget` keys of `partition` from its cursor; how many were examined."""
        try:
            page = self.storage.scan(partition, self._cursor.get(partition), budget)
            doomed = [(bucket, key) for bucket, key, _ in page if not self._keep(partition, bucket, key)]
            if doomed:
                ops = [DeleteOp(partition, bucket, key) for bucket, key in doomed]
                self.storage.write_batch(ops, durable=False)
                self.counters["ownership.cleaned_keys"] += len(doomed)
        except StorageError:
            self.counters["ownership.cleanup_errors"] += 1
            return budget  # try again at a later tick
        if len(page) < budget:
            self._lost.discard(partition)
            self._cursor.pop(partition, None)
            self._level()
        else:
            self._cursor[partition] = (page[-1][0], page[-1][1])
        return len(page)

    def _keep(self, partition: int, bucket: bytes, key: bytes) -> bool:
        if self.is_primary(partition, bucket):
            return True
        return any(
            self.storage.meta_get(hint_name(target, partition, bucket, key)) is not None
            for target in self.hints.targets()
            if partition in self.hints.partitions(target)
        )
