"""The Merkle trees of anti-entropy: one per partition this node holds, kept current on every write.

What a tree summarises: the listing `tree_key(bucket, key) -> leaf_hash(stored bytes)` of one partition
of the local storage. The leaf hash is a digest of the stored bytes themselves, equal to `object_hash`
of the object they encode: every value in storage was written by `encode_object` (on this node, or on a
peer whose bytes `replica.merge_local` keeps as they came), and that encoding is canonical, so two
replicas holding the same sibling set hold the same bytes. Hashing the bytes rather than decoding and
re-encoding them keeps the tree's cost on the write path to one blake2b (decoding doubled the cost of a
write). Should a future release change the encoding, replicas on different releases would see equal
objects as different leaves: anti-entropy would then list and merge them (a no-op for the data), which
costs traffic, never correctness.

Building. A tree is built from a paged scan of the partition, a bounded number of entries per `step`
(the node calls it on every Tick), and until built it takes no part in exchanges. Writes keep coming
during a build; the scan walks keys in `(bucket, key)` order behind a cursor, so:

* a write to a key at or before the cursor (already scanned) is applied to the tree at once: the tree
  already holds the key's old hash, exactly what `MerkleTree.update` needs;
* a write to a key after the cursor (not reached yet) is ignored: the scan reads the new value when it
  gets there (and never sees a deleted one).

Rebuilds. Trees are not persisted: after a restart every tree is rebuilt in the background from the
partition scan. Persisting one on a clean stop would save that scan but needs a crash-safe marker (a
tree loaded at start must be invalidated durably before the first write, or a crash later in the run
leaves a stale tree on disk that is then trusted), and a scan of local data is cheap next to the network
exchange it enables. A tree can also be rebuilt while it serves (`rebuild_after_ms`): a shadow tree is
built behind its own cursor, the serving tree keeps taking writes, and the shadow replaces it when done.
That catches what bypassed `on_write` (a replica changed behind the node's back, a bug), as Riak's
periodic tree expiry does.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from dynakv.core.merkle import BRANCHING_DEFAULT, SEGMENTS_DEFAULT, MerkleTree, segment_of
from dynakv.core.objects import OBJECT_HASH_BYTES
from dynakv.protocol.ports import StorageEngine, StorageError

Position = tuple[bytes, bytes]  # (bucket, key): a position in a partition's scan order


def tree_key(bucket: bytes, key: bytes) -> bytes:
    """The key a tree files `(bucket, key)` under: the bucket length-prefixed, so (b"ab", b"c") and
    (b"a", b"bc") never collide."""
    return len(bucket).to_bytes(4, "big") + bucket + key


def leaf_hash(data: bytes) -> bytes:
    """The tree's hash of a stored value: the digest `object_hash` gives the object it encodes.

    A value that does not decode (local corruption) gets a hash all the same, so the tree stays
    consistent with storage; the key then differs from every healthy replica, and repair merging into it
    fails loudly (counted) rather than being silently skipped.
    """
    return hashlib.blake2b(data, digest_size=OBJECT_HASH_BYTES).digest()


def segment_of_entry(bucket: bytes, key: bytes, segments: int) -> int:
    return segment_of(tree_key(bucket, key), segments)


@dataclass(slots=True)
class _Slot:
    """One partition's trees: `serving` answers exchanges (None until the first build ends); `shadow`
    is being built behind `cursor` (None when no build is running; a None cursor means nothing scanned
    yet)."""

    serving: MerkleTree | None
    shadow: MerkleTree | None
    cursor: Position | None = None
    built_at_ms: int = 0


class TreeStore:
    """The trees of the partitions this node holds. `on_write` must see every local change of the data
    space (puts, merges, deletes), with the bytes stored before and after."""

    def __init__(
        self,
        storage: StorageEngine,
        *,
        segments: int = SEGMENTS_DEFAULT,
        branching: int = BRANCHING_DEFAULT,
        rebuild_after_ms: int | None = None,
        counters: Counter[str] | None = None,
    ) -> None:
        MerkleTree(segments, branching)  # validates the shape once, up front
        self.storage = storage
        self.segments = segments
        self.branching = branching
        self.rebuild_after_ms = rebuild_after_ms
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._slots: dict[int, _Slot] = {}

    def track(self, partition: int) -> None:
        """Start keeping a tree for `partition` (built in the background); no-op if already kept."""
        if partition not in self._slots:
            self._slots[partition] = _Slot(None, self._new_tree())

    def forget(self, partition: int) -> None:
        """Drop a partition's tree (it was handed off, or its data deleted)."""
        self._slots.pop(partition, None)

    def partitions(self) -> list[int]:
        return sorted(self._slots)

    def tree(self, partition: int) -> MerkleTree | None:
        """The built tree of `partition`, or None while it has none yet."""
        slot = self._slots.get(partition)
        return None if slot is None else slot.serving

    def building(self) -> list[int]:
        """Partitions whose (first or periodic) build is still running, ascending."""
        return sorted(p for p, slot in self._slots.items() if slot.shadow is not None)

    def on_write(
        self, partition: int, bucket: bytes, key: bytes, old_obj: bytes | None, new_obj: bytes | None
    ) -> None:
        """Record one local write: O(1) in the partition's size (one decode per side)."""
        if old_obj == new_obj:
            return
        slot = self._slots.get(partition)
        if slot is None:
            # A partition we kept no tree for (a fallback's first write): its build scans this key.
            self.track(partition)
            return
        tkey = tree_key(bucket, key)
        old_hash = None if old_obj is None else leaf_hash(old_obj)
        new_hash = None if new_obj is None else leaf_hash(new_obj)
        if slot.serving is not None:
            slot.serving.update(tkey, old_hash, new_hash)
        if slot.shadow is not None and slot.cursor is not None and (bucket, key) <= slot.cursor:
            slot.shadow.update(tkey, old_hash, new_hash)

    def step(self, budget_entries: int, now_ms: int = 0) -> int:
        """Advance background builds by at most `budget_entries` scanned entries, partitions in
        ascending order; start the periodic rebuilds that are due. Return the entries scanned."""
        assert budget_entries >= 1, "a step must be allowed to scan something"
        self._start_due_rebuilds(now_ms)
        scanned = 0
        for partition in self.building():
            if scanned >= budget_entries:
                break
            slot = self._slots[partition]
            try:
                scanned += self._scan_page(partition, slot, budget_entries - scanned, now_ms)
            except StorageError:
                # A failing disk: the build resumes from its cursor at the next step.
                self.counters["ae.storage_failed"] += 1
                break
        self.counters["ae.tree_entries_scanned"] += scanned
        return scanned

    def _scan_page(self, partition: int, slot: _Slot, limit: int, now_ms: int) -> int:
        shadow = slot.shadow
        assert shadow is not None
        page = self.storage.scan(partition, start_after=slot.cursor, limit=limit)
        for bucket, key, value in page:
            shadow.update(tree_key(bucket, key), None, leaf_hash(value))
        if page:
            slot.cursor = (page[-1][0], page[-1][1])
        if len(page) < limit:
            # The scan reached the end: the shadow now mirrors storage and takes over.
            slot.serving, slot.shadow, slot.cursor, slot.built_at_ms = shadow, None, None, now_ms
            self.counters["ae.trees_built"] += 1
        return len(page)

    def _start_due_rebuilds(self, now_ms: int) -> None:
        if self.rebuild_after_ms is None:
            return
        for slot in self._slots.values():
            due = slot.serving is not None and now_ms - slot.built_at_ms >= self.rebuild_after_ms
            if due and slot.shadow is None:
                slot.shadow, slot.cursor = self._new_tree(), None

    def _new_tree(self) -> MerkleTree:
        return MerkleTree(self.segments, self.branching)


def tree_from_storage(storage: StorageEngine, partition: int, segments: int, branching: int) -> MerkleTree:
    """A tree built from scratch by one full scan (tests and checks compare incremental trees to it)."""
    items = [
        (tree_key(bucket, key), leaf_hash(value))
        for bucket, key, value in storage.scan(partition, None, None)
    ]
    return MerkleTree.from_items(items, segments=segments, branching=branching)
