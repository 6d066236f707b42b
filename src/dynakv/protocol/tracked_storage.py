"""A storage engine wrapper that reports every change of the data space, for the anti-entropy trees.

The Merkle trees (ae_trees.py) must see every local write with the bytes stored before and after it.
Rather than teach each write path (coordinated puts, replica merges, read repair, hinted writes and
their atomic data+meta batches, transfer batches, anti-entropy merges) to report, the Node wraps the
engine it is given and hands the wrapper to all of them: a write that goes through storage is reported,
whoever made it.

The "before" bytes. Reporting needs the stored value before each write; reading it again would double
the storage reads of the hot path, since every write path already reads the key just before writing it
(`replica.read_local`, `replica.merge_local`, the transfer receiver). So `get` remembers what it read
per key, and a write takes its "before" from there when present, from the engine otherwise. The memory
lives for one Node event at most: the Node calls `end_turn()` after each event, so a value changed
behind the node's back between events (an operator, a test) is never taken for the current one. Every
write forgets the keys it touches (written or not: a failed batch may have changed nothing), so a
cached value is always what the engine holds. Within a turn the memory is bounded
(`_REMEMBERED_MAX` keys; past it, it starts over: only a cost, never a wrong answer).

Meta-space operations pass straight through; they are not part of any tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from dynakv.protocol.ports import DeleteOp, PutOp, ScanEntry, StorageEngine, WriteOp

# on_change(partition, bucket, key, bytes before, bytes after): None is "absent".
OnChange = Callable[[int, bytes, bytes, bytes | None, bytes | None], None]

DataKey = tuple[int, bytes, bytes]

# A transfer batch reads each of its keys before one write_batch (1 MiB of objects: a few thousand
# keys at most); a data path turn reads one. Past this bound the memory starts over.
_REMEMBERED_MAX: Final = 8192


def _ignore(partition: int, bucket: bytes, key: bytes, old: bytes | None, new: bytes | None) -> None:
    return None


class TrackedStorage:
    """Implements the `StorageEngine` port around `engine`, calling `on_change` after each data write
    that returned (never for a write that raised: nothing changed)."""

    def __init__(self, engine: StorageEngine, on_change: OnChange | None = None) -> None:
        self.engine = engine
        self.on_change: OnChange = on_change or _ignore
        self._read: dict[DataKey, bytes | None] = {}
        # Reads the engine did on behalf of a write (a cache miss): how often the memory did not help.
        self.extra_reads = 0

    def end_turn(self) -> None:
        """Forget every value read: the next event may follow a change made behind the node's back."""
        if self._read:
            self._read.clear()

    # -- the data space -------------------------------------------------------------------------------

    @property
    def durable(self) -> bool:
        return self.engine.durable

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        value = self.engine.get(partition, bucket, key)
        if len(self._read) >= _REMEMBERED_MAX:
            self._read.clear()
        self._read[(partition, bucket, key)] = value
        return value

    def _before(self, ident: DataKey) -> bytes | None:
        """The stored value of `ident`, from the memory when it has it; forgets it either way."""
        try:
            return self._read.pop(ident)
        except KeyError:
            self.extra_reads += 1
            return self.engine.get(*ident)

    def put(self, partition: int, bucket: bytes, key: bytes, value: bytes, *, durable: bool = False) -> None:
        old = self._before((partition, bucket, key))
        self.engine.put(partition, bucket, key, value, durable=durable)
        self.on_change(partition, bucket, key, old, value)

    def delete(self, partition: int, bucket: bytes, key: bytes, *, durable: bool = False) -> None:
        old = self._before((partition, bucket, key))
        self.engine.delete(partition, bucket, key, durable=durable)
        if old is not None:
            self.on_change(partition, bucket, key, old, None)

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        # Per data key: the value before the batch, and after it (later ops on a key win).
        before: dict[DataKey, bytes | None] = {}
        after: dict[DataKey, bytes | None] = {}
        for op in ops:
            if isinstance(op, PutOp | DeleteOp):
                ident = (op.partition, op.bucket, op.key)
                if ident not in before:
                    before[ident] = self._before(ident)
                after[ident] = op.value if isinstance(op, PutOp) else None
        self.engine.write_batch(ops, durable=durable)
        for ident, new in after.items():
            old = before[ident]
            if old != new:
                self.on_change(ident[0], ident[1], ident[2], old, new)

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        return self.engine.scan(partition, start_after, limit)

    def partitions(self) -> list[int]:
        return self.engine.partitions()

    def count(self, partition: int) -> int:
        return self.engine.count(partition)

    # -- the meta space and the engine's lifecycle: passed through -----------------------------------

    def meta_get(self, name: bytes) -> bytes | None:
        return self.engine.meta_get(name)

    def meta_put(self, name: bytes, value: bytes, *, durable: bool = False) -> None:
        self.engine.meta_put(name, value, durable=durable)

    def meta_delete(self, name: bytes, *, durable: bool = False) -> None:
        self.engine.meta_delete(name, durable=durable)

    def meta_scan(
        self, prefix: bytes, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        return self.engine.meta_scan(prefix, start_after, limit)

    def flush(self) -> None:
        self.engine.flush()

    def close(self) -> None:
        self._read.clear()
        self.engine.close()
