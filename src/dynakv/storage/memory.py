"""An in-process storage engine: dicts plus sorted key lists. For tests and the simulator.

Durability: `durable` is False: nothing survives the process, and `flush()` writes nothing anywhere.
The `durable=` flags are still honoured in one way that the simulator needs: `crash()` models a
power loss by undoing every write made since the last durable write or flush, so a protocol that
forgets to write durably where it must loses data in simulation just as it would on a real disk.

Thread safety: every call holds one lock, so the engine may be shared between threads.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from typing import Generic, TypeVar

from dynakv.protocol.ports import (
    DeleteOp,
    MetaDeleteOp,
    MetaPutOp,
    PutOp,
    ScanEntry,
    StorageClosed,
    WriteOp,
)
from dynakv.storage.common import (
    check_bytes,
    check_data_key,
    check_limit,
    check_ops,
    check_partition,
    check_start_after,
    prefix_successor,
)

K = TypeVar("K", tuple[bytes, bytes], bytes)

# Before-images for crash(): ("d", partition, bucket, key) or ("m", name) -> value before the first
# buffered write since the last durable point (None: the entry did not exist).
_UndoKey = tuple[str, int, bytes, bytes]


class _SortedMap(Generic[K]):
    """A dict whose keys are also kept in a sorted list, for ordered range reads."""

    def __init__(self) -> None:
        self.values: dict[K, bytes] = {}
        self.order: list[K] = []

    def set(self, key: K, value: bytes) -> None:
        if key not in self.values:
            insort(self.order, key)
        self.values[key] = value

    def pop(self, key: K) -> None:
        if self.values.pop(key, None) is not None:
            del self.order[bisect_left(self.order, key)]

    def range(self, lo: K | None, after: K | None, hi: K | None, limit: int | None) -> list[K]:
        """Keys >= lo, > after and < hi (each bound optional), at most `limit`."""
        start = 0 if lo is None else bisect_left(self.order, lo)
        if after is not None:
            start = max(start, bisect_right(self.order, after))
        end = len(self.order) if hi is None else bisect_left(self.order, hi)
        if limit is not None:
            end = min(end, start + limit)
        return self.order[start:end] if start < end else []


class MemoryEngine:
    """The memory engine; `path` is accepted by the registry and ignored."""

    durable = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._data: dict[int, _SortedMap[tuple[bytes, bytes]]] = {}
        self._meta: _SortedMap[bytes] = _SortedMap()
        self._undo: dict[_UndoKey, bytes | None] = {}

    def __repr__(self) -> str:
        return "MemoryEngine()"

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StorageClosed(operation, "memory")

    # -- data space -------------------------------------------------------------------------------

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        check_data_key(partition, bucket, key)
        with self._lock:
            self._check_open("get")
            part = self._data.get(partition)
            return None if part is None else part.values.get((bucket, key))

    def put(self, partition: int, bucket: bytes, key: bytes, value: bytes, *, durable: bool = False) -> None:
        self.write_batch([PutOp(partition, bucket, key, value)], durable=durable)

    def delete(self, partition: int, bucket: bytes, key: bytes, *, durable: bool = False) -> None:
        self.write_batch([DeleteOp(partition, bucket, key)], durable=durable)

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        # Checking every op before touching anything is what makes the batch all-or-nothing here.
        check_ops(ops)
        with self._lock:
            self._check_open("write_batch")
            for op in ops:
                if not durable:
                    self._remember(op)
                self._apply(op)
            if durable:
                self._undo.clear()

    def _apply(self, op: WriteOp) -> None:
        if isinstance(op, PutOp):
            self._data.setdefault(op.partition, _SortedMap()).set((op.bucket, op.key), op.value)
        elif isinstance(op, DeleteOp):
            part = self._data.get(op.partition)
            if part is not None:
                part.pop((op.bucket, op.key))
                if not part.values:
                    del self._data[op.partition]
        elif isinstance(op, MetaPutOp):
            self._meta.set(op.name, op.value)
        else:
            self._meta.pop(op.name)

    def _remember(self, op: WriteOp) -> None:
        if isinstance(op, PutOp | DeleteOp):
            undo_key: _UndoKey = ("d", op.partition, op.bucket, op.key)
            if undo_key not in self._undo:
                part = self._data.get(op.partition)
                self._undo[undo_key] = None if part is None else part.values.get((op.bucket, op.key))
        else:
            undo_key = ("m", 0, op.name, b"")
            if undo_key not in self._undo:
                self._undo[undo_key] = self._meta.values.get(op.name)

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        check_partition(partition)
        check_start_after(start_after)
        check_limit(limit)
        with self._lock:
            self._check_open("scan")
            part = self._data.get(partition)
            if part is None:
                return []
            keys = part.range(None, start_after, None, limit)
            return [(bucket, key, part.values[(bucket, key)]) for bucket, key in keys]

    def partitions(self) -> list[int]:
        with self._lock:
            self._check_open("partitions")
            return sorted(self._data)

    def count(self, partition: int) -> int:
        check_partition(partition)
        with self._lock:
            self._check_open("count")
            part = self._data.get(partition)
            return 0 if part is None else len(part.values)

    # -- meta space -------------------------------------------------------------------------------

    def meta_get(self, name: bytes) -> bytes | None:
        check_bytes("name", name)
        with self._lock:
            self._check_open("meta_get")
            return self._meta.values.get(name)

    def meta_put(self, name: bytes, value: bytes, *, durable: bool = False) -> None:
        self.write_batch([MetaPutOp(name, value)], durable=durable)

    def meta_delete(self, name: bytes, *, durable: bool = False) -> None:
        self.write_batch([MetaDeleteOp(name)], durable=durable)

    def meta_scan(
        self, prefix: bytes, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        check_bytes("prefix", prefix)
        if start_after is not None:
            check_bytes("start_after", start_after)
        check_limit(limit)
        with self._lock:
            self._check_open("meta_scan")
            names = self._meta.range(prefix, start_after, prefix_successor(prefix), limit)
            return [(name, self._meta.values[name]) for name in names]

    # -- lifecycle --------------------------------------------------------------------------------

    def flush(self) -> None:
        with self._lock:
            self._check_open("flush")
            self._undo.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._undo.clear()

    def crash(self) -> None:
        """Model a power loss and restart: undo every write not yet made durable. The engine stays
        open (and is reopened if it was closed), as a restarted node would find its disk."""
        with self._lock:
            for (space, partition, first, second), before in self._undo.items():
                if space == "d":
                    op: WriteOp = (
                        DeleteOp(partition, first, second)
                        if before is None
                        else PutOp(partition, first, second, before)
                    )
                else:
                    op = MetaDeleteOp(first) if before is None else MetaPutOp(first, before)
                self._apply(op)
            self._undo.clear()
            self._closed = False
