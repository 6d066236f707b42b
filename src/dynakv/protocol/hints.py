"""Hinted handoff: hints kept in the node's meta space, bounded per target, replayed by transfers.

Paper section 4.6. A fallback B that takes a write for a primary A that is down merges the object into
its own data space under the key's partition, as any replica does, and records a *hint* in the same
atomic `write_batch` (`store_hinted`): the write and its hint survive a crash together or not at all.

A hint names the data entry, it does not copy the object: replay reads the object from the data space,
so a later write of the key on B is replayed in its newest version, and a key written many times while
A is down costs one hint. Names sort by target, then partition, then bucket and key:

    b"hint/" + u16 len(target) + target + u64 partition + u32 len(bucket) + bucket + key

(big-endian; the lengths make the name unambiguous and no target's prefix a prefix of another's). The
value is `[created_ms, size, revision]`: the age of the oldest unreplayed write of the key, the size of
the object to replay, and a revision that changes on every write of the hint.

The revision fixes a race of "hints point at the data": if the key is written again while a batch with
its older version is in flight, the ack of that batch must not delete the hint, or the newer version
would never reach A. An ack deletes a hint only if its value is still the one the batch read (the
revision is per process, restarted above every stored one; transfer ids are unique across restarts, so
no ack from before a restart is ever applied).

Bounds (ARCHITECTURE.md section 6), per target: `Limits.hints_per_target_max` hints and
`Limits.hint_bytes_per_target_max` bytes of objects for *new* hints (a write of a key that already has
a hint only updates it: the entry count does not grow, and dropping the update would keep a hint whose
revision an in-flight ack could match); `Timing.hint_age_max_ms` for all (`expire`). A hint dropped at a
bound is returned as `Dropped` (for the caller to log) and counted in `hints.dropped`; the object stays
stored on the fallback, and anti-entropy between the primaries (or a repair transfer) covers A.

After A acknowledged a batch durably, the acked hints are deleted, with the data entries that this node
keeps only as a fallback (not a primary of the partition for the bucket, and no other target's hint
names it). Expired hints leave their data entries: the copy may be the only one of an acked write.

Counts per target and partition live in memory, rebuilt by a scan of the meta space at startup.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from dynakv.core import codec
from dynakv.core.config import Limits, Timing
from dynakv.core.dvv import INT_MAX
from dynakv.core.errors import DecodeError
from dynakv.protocol.ports import (
    DeleteOp,
    MetaDeleteOp,
    MetaPutOp,
    PutOp,
    StorageEngine,
    StorageError,
    WriteOp,
)
from dynakv.protocol.transfer import merge_bytes

HINT_PREFIX: Final = b"hint/"
_HINT_TAG: Final = "hint"
_PAGE: Final = 256


def target_prefix(target: str) -> bytes:
    raw = target.encode()
    assert 0 < len(raw) <= 0xFFFF, f"node name of {len(raw)} bytes"
    return HINT_PREFIX + struct.pack(">H", len(raw)) + raw


def partition_prefix(target: str, partition: int) -> bytes:
    return target_prefix(target) + struct.pack(">Q", partition)


def hint_name(target: str, partition: int, bucket: bytes, key: bytes) -> bytes:
    return partition_prefix(target, partition) + struct.pack(">I", len(bucket)) + bucket + key


def parse_hint_name(name: bytes) -> tuple[str, int, bytes, bytes]:
    """(target, partition, bucket, key) of a hint name; DecodeError if it is not one."""
    try:
        if not name.startswith(HINT_PREFIX):
            raise ValueError("no hint prefix")
        at = len(HINT_PREFIX)
        (target_len,) = struct.unpack_from(">H", name, at)
        target = name[at + 2 : at + 2 + target_len].decode()
        at += 2 + target_len
        partition, bucket_len = struct.unpack_from(">QI", name, at)
        at += 12
        if not target or len(target.encode()) != target_len or at + bucket_len > len(name):
            raise ValueError("truncated")
        return target, partition, name[at : at + bucket_len], name[at + bucket_len :]
    except (struct.error, ValueError) as err:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"hint name {name[:64]!r}: {err}") from None


@dataclass(frozen=True, slots=True)
class Hint:
    target: str
    partition: int
    bucket: bytes
    key: bytes
    created_ms: int
    size: int
    revision: int
    name: bytes
    value: bytes


def parse_hint(name: bytes, value: bytes) -> Hint:
    target, partition, bucket, key = parse_hint_name(name)
    created, size, revision = codec.want_tuple(codec.decode(value, _HINT_TAG), "hint", 3)
    return Hint(
        target,
        partition,
        bucket,
        key,
        codec.want_int(created, "hint.created_ms", 0, INT_MAX),
        codec.want_int(size, "hint.size", 0, INT_MAX),
        codec.want_int(revision, "hint.revision", 0, INT_MAX),
        name,
        value,
    )


@dataclass(frozen=True, slots=True)
class Dropped:
    """A hint not recorded because its target is at a bound ("count" or "bytes")."""

    target: str
    bound: str
    limit: int
    pending: int
    pending_bytes: int

    def message(self) -> str:
        return (
            f"hint for {self.target} dropped at the {self.bound} bound {self.limit} "
            f"({self.pending} hints, {self.pending_bytes} bytes pending); anti-entropy will repair it"
        )


@dataclass(frozen=True, slots=True)
class _Change:
    target: str
    partition: int
    count: int
    size: int
    created_ms: int | None


@dataclass(frozen=True, slots=True)
class HintWrite:
    """Writes to add to a batch; after the batch was written, pass this to `HintLog.applied`."""

    ops: tuple[WriteOp, ...]
    changes: tuple[_Change, ...]


@dataclass(slots=True)
class _Target:
    partitions: dict[int, int] = field(default_factory=dict)
    size: int = 0
    oldest_ms: int = INT_MAX


class HintLog:
    """The hints of one node. `is_primary(partition, bucket)` says whether this node is a primary of
    the partition for the bucket's n_val (then an acked hint's data entry stays: it is a replica)."""

    def __init__(
        self,
        storage: StorageEngine,
        limits: Limits,
        timing: Timing,
        counters: Counter[str],
        is_primary: Callable[[int, bytes], bool],
    ) -> None:
        self.storage = storage
        self.limits = limits
        self.timing = timing
        self.counters = counters
        self.is_primary = is_primary
        # Test-only defects (Settings.defects, set by the node); empty in production.
        self.defects: frozenset[str] = frozenset()
        self._targets: dict[str, _Target] = {}
        self._total = 0
        self._revision = self._rebuild()

    def _rebuild(self) -> int:
        """Count the stored hints; delete (and count) corrupt ones; the highest revision seen."""
        revision = 0
        bad: list[WriteOp] = []
        after: bytes | None = None
        while True:
            page = self.storage.meta_scan(HINT_PREFIX, after, _PAGE)
            for name, value in page:
                try:
                    hint = parse_hint(name, value)
                except DecodeError:
                    bad.append(MetaDeleteOp(name))
                    continue
                self._account(_Change(hint.target, hint.partition, 1, hint.size, hint.created_ms))
                revision = max(revision, hint.revision)
            if len(page) < _PAGE:
                break
            after = page[-1][0]
        if bad:
            self.counters["hints.corrupt"] += len(bad)
            self.storage.write_batch(bad, durable=False)
        self.counters["hints.pending"] = self._total
        return revision

    def _account(self, change: _Change) -> None:
        state = self._targets.setdefault(change.target, _Target())
        count = state.partitions.get(change.partition, 0) + change.count
        if count > 0:
            state.partitions[change.partition] = count
        else:
            state.partitions.pop(change.partition, None)
        state.size += change.size
        if change.created_ms is not None:
            state.oldest_ms = min(state.oldest_ms, change.created_ms)
        self._total += change.count
        if not state.partitions:
            del self._targets[change.target]
        self.counters["hints.pending"] = self._total

    # -- reading -------------------------------------------------------------------------------------

    def targets(self) -> list[str]:
        return sorted(self._targets)

    def partitions(self, target: str) -> list[int]:
        state = self._targets.get(target)
        return [] if state is None else sorted(state.partitions)

    def pending(self, target: str, partition: int | None = None) -> int:
        state = self._targets.get(target)
        if state is None:
            return 0
        return sum(state.partitions.values()) if partition is None else state.partitions.get(partition, 0)

    def pending_bytes(self, target: str) -> int:
        state = self._targets.get(target)
        return 0 if state is None else state.size

    def pending_total(self) -> int:
        return self._total

    def page(self, target: str, after: bytes | None, limit: int, partition: int | None = None) -> list[Hint]:
        """Hints of `target` (of one partition if given) in name order, after the name `after`."""
        prefix = target_prefix(target) if partition is None else partition_prefix(target, partition)
        hints = []
        for name, value in self.storage.meta_scan(prefix, after, limit):
            try:
                hints.append(parse_hint(name, value))
            except DecodeError:
                self.counters["hints.corrupt"] += 1
        return hints

    def _read(self, name: bytes) -> Hint | None:
        value = self.storage.meta_get(name)
        if value is None:
            return None
        try:
            return parse_hint(name, value)
        except DecodeError:
            return None

    # -- writing -------------------------------------------------------------------------------------

    def record_ops(
        self, target: str, partition: int, bucket: bytes, key: bytes, *, size: int, now_ms: int
    ) -> HintWrite | Dropped:
        """The write recording a hint for `target` (or updating the key's hint), or Dropped at a bound."""
        name = hint_name(target, partition, bucket, key)
        old = self._read(name)
        if old is None:
            dropped = self._at_bound(target, size)
            if dropped is not None:
                self.counters["hints.dropped"] += 1
                self.counters[f"hints.dropped.{dropped.bound}"] += 1
                return dropped
        created = now_ms if old is None else old.created_ms
        self._revision += 1
        value = codec.encode(_HINT_TAG, [created, size, self._revision])
        change = _Change(
            target, partition, int(old is None), size - (0 if old is None else old.size), created
        )
        return HintWrite((MetaPutOp(name, value),), (change,))

    def _at_bound(self, target: str, size: int) -> Dropped | None:
        count, used = self.pending(target), self.pending_bytes(target)
        if count + 1 > self.limits.hints_per_target_max:
            return Dropped(target, "count", self.limits.hints_per_target_max, count, used)
        if used + size > self.limits.hint_bytes_per_target_max:
            return Dropped(target, "bytes", self.limits.hint_bytes_per_target_max, count, used)
        return None

    def ack_ops(self, target: str, acked: Sequence[tuple[bytes, bytes]]) -> HintWrite:
        """The writes deleting hints `target` acknowledged, given as (name, value) as they were read:
        a hint whose value changed since (the key was written again) stays, to be replayed again."""
        ops: list[WriteOp] = []
        changes: list[_Change] = []
        for name, value in acked:
            if self.storage.meta_get(name) != value:
                # Written again (or expired) since the batch read it.
                self.counters["hints.ack_stale"] += 1
                continue
            hint = parse_hint(name, value)
            assert hint.target == target, f"hint {name!r} is not for {target}"
            ops.append(MetaDeleteOp(name))
            changes.append(_Change(target, hint.partition, -1, -hint.size, None))
            if not self.is_primary(hint.partition, hint.bucket) and not self._named_elsewhere(hint):
                ops.append(DeleteOp(hint.partition, hint.bucket, hint.key))
        return HintWrite(tuple(ops), tuple(changes))

    def _named_elsewhere(self, hint: Hint) -> bool:
        """Whether another target's hint names the same data entry (so it must stay)."""
        return self.names(hint.partition, hint.bucket, hint.key, besides=hint.target)

    def names(self, partition: int, bucket: bytes, key: bytes, besides: str | None = None) -> bool:
        """Whether a hint (of a target other than `besides`) names this data entry."""
        for target in sorted(self._targets):
            if target == besides or partition not in self._targets[target].partitions:
                continue
            if self.storage.meta_get(hint_name(target, partition, bucket, key)) is not None:
                return True
        return False

    def applied(self, write: HintWrite) -> None:
        """Account for a HintWrite whose ops were written (call before the next record_ops)."""
        for change in write.changes:
            self._account(change)

    def expire(self, now_ms: int) -> list[tuple[str, int]]:
        """Delete hints older than `hint_age_max_ms`: (target, how many) per target, for the log.
        Only targets whose oldest hint is that old are scanned."""
        cutoff = now_ms - self.timing.hint_age_max_ms
        expired = []
        for target in sorted(self._targets):
            if self._targets[target].oldest_ms > cutoff:
                continue
            try:
                count = self._expire_target(target, cutoff)
            except StorageError:
                self.counters["hints.errors"] += 1
                continue
            self.counters["hints.expired"] += count
            self.counters["hints.dropped"] += count
            expired.append((target, count))
        return expired

    def _expire_target(self, target: str, cutoff: int) -> int:
        count = 0
        oldest = INT_MAX
        after: bytes | None = None
        while True:
            page = self.page(target, after, _PAGE)
            old = [h for h in page if h.created_ms <= cutoff]
            oldest = min([oldest, *(h.created_ms for h in page if h.created_ms > cutoff)])
            if old:
                # Buffered: an expired hint that a crash brings back only expires again.
                self.storage.write_batch([MetaDeleteOp(h.name) for h in old], durable=False)
                for h in old:
                    self._account(_Change(target, h.partition, -1, -h.size, None))
                count += len(old)
            if len(page) < _PAGE:
                break
            after = page[-1].name
        if target in self._targets:
            self._targets[target].oldest_ms = oldest
        return count

    # -- re-targeting (hint_replay.Retarget) ---------------------------------------------------------

    def retarget_ops(self, hint: Hint, targets: Sequence[str]) -> tuple[HintWrite, list[Dropped]]:
        """The write moving `hint` to `targets` (its partition's primaries now; its own target is no
        longer one): a hint for each, as old as this one, and this one deleted. Never a data entry: a
        target at a bound gets no hint (returned as Dropped) and the copy stays here, not lost."""
        ops: list[WriteOp] = [MetaDeleteOp(hint.name)]
        changes = [_Change(hint.target, hint.partition, -1, -hint.size, None)]
        dropped: list[Dropped] = []
        for target in targets:
            recorded = self.record_ops(
                target, hint.partition, hint.bucket, hint.key, size=hint.size, now_ms=hint.created_ms
            )
            if isinstance(recorded, Dropped):
                dropped.append(recorded)
            else:
                ops.extend(recorded.ops)
                changes.extend(recorded.changes)
        self.counters["hints.retargeted"] += 1
        return HintWrite(tuple(ops), tuple(changes)), dropped


def store_hinted(
    hints: HintLog,
    hint_for: str,
    partition: int,
    bucket: bytes,
    key: bytes,
    *,
    incoming: bytes,
    now_ms: int,
    durable: bool,
    lww: bool = False,
) -> Dropped | None:
    """A fallback's side of a ReplicaPut carrying `hint_for`: merge the object into the local copy and
    record the hint in one atomic write. The object is stored even when the hint is Dropped (returned
    for the log). Raises StorageError and DecodeError as `replica.merge_local` does."""
    storage = hints.storage
    stored = storage.get(partition, bucket, key)
    data = merge_bytes(stored, incoming, lww=lww)
    current = data if data is not None else stored
    assert current is not None
    ops: list[WriteOp] = [] if data is None else [PutOp(partition, bucket, key, data)]
    if "hint-not-stored" in hints.defects:
        # A deliberate bug, switched on only by the simulator's sweep (sim/sweep.py): the fallback keeps
        # the object but forgets whom it is for, so nothing ever hands it to the primary.
        storage.write_batch(ops, durable=durable)
        return None
    recorded = hints.record_ops(hint_for, partition, bucket, key, size=len(current), now_ms=now_ms)
    if isinstance(recorded, Dropped):
        storage.write_batch(ops, durable=durable)
        return recorded
    storage.write_batch([*ops, *recorded.ops], durable=durable)
    hints.applied(recorded)
    return None
