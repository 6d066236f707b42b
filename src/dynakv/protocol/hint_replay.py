"""Hints leaving the node: replayed to their targets through transfers, or moved to new targets.

Paper section 4.6 (hints.py keeps the log). `replay_hints` starts a hinted transfer (`HintSource`) for
every target that is a member and reachable. `Retarget` handles the other way a hint ends: the ring
changed (a join, leave or removal flipped ownership) and its target is no longer a primary of the
hint's partition. Such a hint would wait forever (a departed node never comes back) or deliver to a node
that no longer owns the data, so it is moved to the partition's primaries in the current ring (this
node excepted: its copy then simply is a replica), and the next replay delivers it there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from dynakv.core.errors import DecodeError
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.effects import Effect
from dynakv.protocol.hints import HINT_PREFIX, Dropped, HintLog, HintWrite, parse_hint
from dynakv.protocol.messages import TransferEntry, TransferKind
from dynakv.protocol.ports import WriteOp
from dynakv.protocol.transfer import Chunk, NotStarted, entry_bytes
from dynakv.protocol.transfer_manager import TransferManager

_PAGE: Final = 256
# Hints one batch may settle without sending an object (their data entry is gone).
_MARKS_MAX: Final = 4096
# Hints examined per tick after a ring change: the scan is spread over ticks, never one long stall.
RETARGET_PER_TICK: Final = 512


class HintSource:
    """The hints of one target and partition as a transfer source (kind "hinted"). The cursor is the
    last hint name read; the hints themselves are the progress, so nothing else is persisted."""

    def __init__(self, hints: HintLog, target: str, partition: int) -> None:
        self.hints = hints
        self.storage = hints.storage
        self.target = target
        self._partition = partition
        self._write: HintWrite | None = None

    @property
    def kind(self) -> TransferKind:
        return TransferKind.HINTED

    @property
    def partition(self) -> int:
        return self._partition

    def start_cursor(self) -> bytes | None:
        return None

    def total(self) -> int | None:
        return self.hints.pending(self.target, self._partition)

    def read(self, after: bytes | None, bytes_max: int) -> Chunk:
        chunk = self._read(after, bytes_max)
        if "hint-deleted-before-ack" in self.hints.defects:
            # A deliberate bug, switched on only by the simulator's sweep (sim/sweep.py) to show that its
            # checkers catch it: settle the hints (and the fallback's copies) before the target acked.
            write = self.hints.ack_ops(self.target, chunk.marks)
            self.storage.write_batch(list(write.ops), durable=True)
            self.hints.applied(write)
        return chunk

    def _read(self, after: bytes | None, bytes_max: int) -> Chunk:
        entries: list[TransferEntry] = []
        marks: list[tuple[bytes, bytes]] = []
        size = 0
        while True:
            page = self.hints.page(self.target, after, _PAGE, self._partition)
            for hint in page:
                obj = self.storage.get(self._partition, hint.bucket, hint.key)
                cost = 0 if obj is None else entry_bytes(hint.bucket, hint.key, obj)
                if (entries and size + cost > bytes_max) or len(marks) >= _MARKS_MAX:
                    return Chunk(tuple(entries), after, False, tuple(marks))
                # A hint without its data entry is settled by the ack too, with nothing to send.
                marks.append((hint.name, hint.value))
                after = hint.name
                if obj is not None:
                    entries.append(TransferEntry(hint.bucket, hint.key, obj))
                    size += cost
            if len(page) < _PAGE:
                return Chunk(tuple(entries), after, True, tuple(marks))

    def ack_ops(self, chunk: Chunk, last: bool) -> list[WriteOp]:
        self._write = self.hints.ack_ops(self.target, chunk.marks)
        return list(self._write.ops)

    def ack_applied(self, chunk: Chunk, last: bool) -> None:
        assert self._write is not None
        self.hints.applied(self._write)
        self._write = None


def replay_hints(
    manager: TransferManager,
    hints: HintLog,
    is_up: Callable[[str], bool],
    now_ms: int,
    out: list[Effect],
) -> None:
    """Start a hinted transfer for every (target, partition) with hints whose target is up, in sorted
    order, until the manager's bound; run it on every tick (starting a running one is a no-op)."""
    for target in hints.targets():
        if not is_up(target):
            continue
        for partition in hints.partitions(target):
            started = manager.start(target, HintSource(hints, target, partition), now_ms, out)
            if isinstance(started, NotStarted) and started.at_bound:
                return


class Retarget:
    """After every ring change, one pass over the hint log in name order, `RETARGET_PER_TICK` hints per
    tick, moving each hint whose target is no longer a primary of its partition (for the bucket's n_val)
    to the current primaries. `n_val_of(bucket)` gives the bucket's n_val."""

    def __init__(self, name: str, hints: HintLog, n_val_of: Callable[[bytes], int]) -> None:
        self.name = name
        self.hints = hints
        self.n_val_of = n_val_of
        self.ring: Ring | None = None  # None: the cluster's ring is not known yet, nothing is moved
        self._owners: frozenset[str] = frozenset()
        self._cursor: bytes | None = None
        self._scanning = False

    def set_ring(self, ring: Ring | None) -> None:
        """A new ring (None while this node has not found its cluster): scan again from the start."""
        if ring is not None and ring != self.ring:
            self._cursor, self._scanning = None, True
            self._owners = frozenset(ring.owners)
        self.ring = ring

    def on_tick(self, on_dropped: Callable[[Dropped], None]) -> int:
        """Examine the next hints of the pass; how many were moved. A hint for a node that owns nothing
        in the ring can also arrive after a pass (from a coordinator whose ring was older): that starts
        another pass."""
        if self.ring is None:
            return 0
        if not self._scanning and any(t not in self._owners for t in self.hints.targets()):
            self._cursor, self._scanning = None, True
        if not self._scanning:
            return 0
        moved = 0
        page = self.hints.storage.meta_scan(HINT_PREFIX, self._cursor, RETARGET_PER_TICK)
        for name, value in page:
            self._cursor = name
            try:
                hint = parse_hint(name, value)
            except DecodeError:
                continue
            owners = primaries(self.ring, hint.partition, self.n_val_of(hint.bucket))
            if hint.target in owners:
                continue
            write, dropped = self.hints.retarget_ops(hint, [n for n in owners if n != self.name])
            self.hints.storage.write_batch(list(write.ops), durable=False)
            self.hints.applied(write)
            for each in dropped:
                on_dropped(each)
            moved += 1
        if len(page) < RETARGET_PER_TICK:
            self._scanning = False
        return moved
