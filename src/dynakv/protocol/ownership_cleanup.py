"""Old owners delete what they handed off (paper section 4.9: the node that gives a key range away
"transfers the keys" and no longer stores them).

A node that was a primary of partition q until a flip handed q to its new owner first (ownership.py:
the ring flips only after the new owner holds all of q), so its copy has no use, and keeping it does
harm: should the node become a primary of q again much later, its stale copy (deleted keys included,
whose tombstones the real replicas may have reaped by then) would be merged back as if current.

Never lose a write by it. The writes that reached the old owner during the move were forwarded to the
new owner without acknowledgement (ownership.py); one forward lost, and the old copy may be the only
one of an acknowledged write. So the copies are not simply deleted: they go to a current primary of q
through the one transfer mechanism (kind `cleanup`: batched, throttled, acknowledged), and each key is
deleted once that primary acknowledged it durably, and only if its stored bytes are still the ones
sent (a write since then is kept for the next pass). Anti-entropy spreads it to the other primaries.
The cost: each handed-off partition crosses the network a second time, mostly as merges that change
nothing on the receiver.

When. Once the ring has had no move pending for `Timing.ownership_cleanup_delay_ms`, so that gossip has
carried the flip to the other members and coordinators with the old ring are rare (a write that still
arrives is stored and forwarded, ownership.py's stray writes, and the next pass takes it). Which
partitions: those this node saw itself lose at a flip, and, surveyed when the ring turns quiet and once
per delay after, every stored partition it is no primary of (a flip it did not live to see, a write
since a pass); a partition that received a transfer batch within the delay waits (a move to this node
that gossip has not announced yet). Which keys: each key whose bucket's n_val does not make this node a
primary (a bucket with a larger n_val may) and that no hint names (a fallback's copy, handed off by
hinted handoff).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Set

from dynakv.core.cluster_state import ClusterState
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.effects import Effect
from dynakv.protocol.hints import HintLog
from dynakv.protocol.messages import TransferEntry, TransferKind
from dynakv.protocol.ports import DeleteOp, StorageEngine, StorageError, WriteOp
from dynakv.protocol.transfer import (
    SCAN_PAGE,
    Chunk,
    NotStarted,
    TransferStatus,
    decode_cursor,
    encode_cursor,
    entry_bytes,
)
from dynakv.protocol.transfer_manager import TransferManager

Keep = Callable[[int, bytes, bytes], bool]  # (partition, bucket, key) -> whether the key stays here


class CleanupSource:
    """The keys of one partition this node does not keep, as a transfer source (kind CLEANUP): the ack
    of a batch deletes each key sent whose stored bytes are still those sent. No cursor is persisted:
    after a restart the survey finds what is left and a new transfer sends it."""

    def __init__(self, storage: StorageEngine, partition: int, keep: Keep, counters: Counter[str]) -> None:
        self.storage = storage
        self._partition = partition
        self.keep = keep
        self.counters = counters
        self._deleted = 0

    @property
    def kind(self) -> TransferKind:
        return TransferKind.CLEANUP

    @property
    def partition(self) -> int:
        return self._partition

    def start_cursor(self) -> bytes | None:
        return None

    def total(self) -> int | None:
        return self.storage.count(self._partition)

    def read(self, after: bytes | None, bytes_max: int) -> Chunk:
        position = None if after is None else decode_cursor(after)
        entries: list[TransferEntry] = []
        marks: list[tuple[bytes, bytes]] = []
        size = 0
        while True:
            page = self.storage.scan(self._partition, position, SCAN_PAGE)
            for bucket, key, obj in page:
                if self.keep(self._partition, bucket, key):
                    position, after = (bucket, key), encode_cursor(bucket, key)
                    continue
                cost = entry_bytes(bucket, key, obj)
                if entries and size + cost > bytes_max:
                    return Chunk(tuple(entries), after, False, tuple(marks))
                entries.append(TransferEntry(bucket, key, obj))
                marks.append((encode_cursor(bucket, key), obj))
                size += cost
                position, after = (bucket, key), encode_cursor(bucket, key)
            if len(page) < SCAN_PAGE:
                return Chunk(tuple(entries), after, True, tuple(marks))

    def ack_ops(self, chunk: Chunk, last: bool) -> list[WriteOp]:
        ops: list[WriteOp] = []
        for name, sent in chunk.marks:
            bucket, key = decode_cursor(name)
            if self.storage.get(self._partition, bucket, key) == sent:
                ops.append(DeleteOp(self._partition, bucket, key))
        self._deleted = len(ops)
        return ops

    def ack_applied(self, chunk: Chunk, last: bool) -> None:
        self.counters["ownership.cleaned_keys"] += self._deleted
        self._deleted = 0


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
        self._running: dict[int, tuple[str, int]] = {}  # partition -> (target, transfer id)
        self._quiet_since_ms: int | None = None
        self._next_survey_ms = 0
        self._received_ms: dict[int, int] = {}
        self._level()

    def _level(self) -> None:
        self.counters["ownership.cleanup_pending"] = len(self._lost)

    def lost(self, partition: int) -> None:
        """This node stopped being a primary of `partition` at a flip it saw."""
        self._lost.add(partition)
        self._level()

    def regained(self, partition: int) -> None:
        self._lost.discard(partition)
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

    def finished(self, status: TransferStatus) -> None:
        """A cleanup transfer finished: the partition is done (the next survey finds anything left)."""
        running = self._running.get(status.partition)
        if running is not None and running[1] == status.transfer_id:
            del self._running[status.partition]
            self._lost.discard(status.partition)
            self._level()

    def on_tick(
        self, now_ms: int, state: ClusterState, down: Set[str], manager: TransferManager, out: list[Effect]
    ) -> None:
        ring = state.ring
        if state.moves or ring is None:
            self._quiet_since_ms = None
            self._next_survey_ms = 0  # survey as soon as the ring is quiet again
            return
        if self._quiet_since_ms is None:
            self._quiet_since_ms = now_ms
        if now_ms >= self._next_survey_ms:
            # At once when the ring turns quiet (what is pending shows from then on), then once a delay.
            self._next_survey_ms = now_ms + self.delay_ms
            self._survey(ring)
        self._drop_stale(ring, manager)
        if now_ms - self._quiet_since_ms < self.delay_ms:
            return
        for partition in sorted(self._lost):
            if partition in self._running or self._recently_received(partition, now_ms):
                continue
            targets = [n for n in primaries(ring, partition, self.n_val) if n not in down and n != self.name]
            if not targets:
                continue
            source = CleanupSource(self.storage, partition, self._keep, self.counters)
            started = manager.start(targets[0], source, now_ms, out)
            if isinstance(started, NotStarted):
                if started.at_bound:
                    return
                continue
            self._running[partition] = (targets[0], started)

    def _drop_stale(self, ring: Ring, manager: TransferManager) -> None:
        """A running cleanup whose target no longer is a primary of the partition (the ring changed, it
        was removed) would wait forever: cancel it; the partition goes again to a current primary."""
        for partition, (target, transfer_id) in sorted(self._running.items()):
            owners = primaries(ring, partition, self.n_val)
            if target not in owners or self.name in owners:
                manager.cancel(transfer_id)
                del self._running[partition]

    def _survey(self, ring: Ring) -> None:
        """Every stored partition this node is no primary of goes to the cleanup: left by a flip this
        process did not see (it restarted), or written since a pass (a stray write, a late transfer)."""
        try:
            held = self.storage.partitions()
        except StorageError:
            self.counters["ownership.cleanup_errors"] += 1
            return
        for q in held:
            if self.name not in primaries(ring, q, self.n_val):
                self._lost.add(q)
        self._level()

    def _keep(self, partition: int, bucket: bytes, key: bytes) -> bool:
        return self.is_primary(partition, bucket) or self.hints.names(partition, bucket, key)
