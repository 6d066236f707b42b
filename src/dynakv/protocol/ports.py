"""Ports: the interfaces through which the sans-IO layers reach the outside (ARCHITECTURE.md section 4).

L1 declares them as `typing.Protocol`s and never imports an implementation; L2 (`dynakv.storage`)
implements them. This module does no I/O itself.

The storage port
----------------
Two separate key spaces live in one engine:

* the data space: `(partition, bucket, key) -> value`, where `value` is the encoded stored object
  (storage never interprets it). A scan of one partition yields entries in `(bucket, key)` order, the
  order of Python tuples of bytes (bytewise, a shorter prefix first).
* the meta space: `name -> value`, for hints and node metadata, scanned by name prefix in name order.

A data scan never sees meta entries and a meta scan never sees data entries.

Partitions are ints in `[0, PARTITION_MAX]`. Buckets, keys, names and values are `bytes`, empty allowed;
size limits are the caller's business (`core.config.Limits`), not the engine's.

Durability (paper section 6.1, "buffered writes"):

* `durable=True`: when the call returns, this write *and every write before it* survives a process
  crash (kill -9) and a power loss: it has been fsynced.
* `durable=False`: the write is visible at once and survives a clean `close()`; it becomes crash-proof
  at the next durable write or `flush()`. (Most engines also keep it through a process crash, but only
  a power loss is the promise that matters, and callers must not rely on more.)
* `flush()` makes everything written so far durable; `write_batch([], durable=True)` does the same.
* `durable` (the attribute) is False for an engine that cannot survive a crash at all (memory).

Errors: an operating condition of the disk (full, corrupt, I/O error, locked by another process) raises
`StorageError` carrying the cause; use after `close()` raises `StorageClosed` (a `StorageError`).
Arguments of the wrong type or range are programmer errors (`TypeError`, `ValueError`), never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dynakv.core.errors import DynakvError

# Partitions are stored as signed 64-bit integers by some engines (sqlite), so the range stops at 2**63.
PARTITION_MAX = (1 << 63) - 1


class StorageError(DynakvError):
    """The storage engine could not do what was asked (disk full, corrupt file, I/O error...).

    `operation` names what was attempted; `cause` is the engine's own exception, also chained as
    `__cause__`. L1 catches this type alone and turns it into a typed result (HTTP 500/503).
    """

    def __init__(self, operation: str, cause: BaseException | None = None, detail: str = "") -> None:
        reason = detail or (f"{type(cause).__name__}: {cause}" if cause is not None else "failed")
        super().__init__(f"storage {operation}: {reason}")
        self.operation = operation
        self.cause = cause


class StorageClosed(StorageError):
    """The engine was used after `close()`."""

    def __init__(self, operation: str, where: str) -> None:
        super().__init__(operation, detail=f"the storage engine ({where}) is closed")


@dataclass(frozen=True, slots=True)
class PutOp:
    """Store `value` under `(partition, bucket, key)` in the data space."""

    partition: int
    bucket: bytes
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Remove `(partition, bucket, key)` from the data space; absent keys are fine."""

    partition: int
    bucket: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class MetaPutOp:
    """Store `value` under `name` in the meta space."""

    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class MetaDeleteOp:
    """Remove `name` from the meta space; absent names are fine."""

    name: bytes


# Meta ops are allowed in a batch so that, for example, a fallback can store an object and its hint
# in one atomic write.
WriteOp = PutOp | DeleteOp | MetaPutOp | MetaDeleteOp

# One entry of a data scan: (bucket, key, value).
ScanEntry = tuple[bytes, bytes, bytes]


class StorageEngine(Protocol):
    """A local, synchronous key-value store; see the module docstring for the contract.

    Engines are synchronous and serialize their own calls, so one engine may be shared by a runtime's
    event loop and a dedicated storage thread; they are not meant to be opened twice at the same path.
    """

    @property
    def durable(self) -> bool:
        """Whether writes can survive a crash at all (False for the memory engine)."""
        ...

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        """The value stored under the key, or None."""
        ...

    def put(self, partition: int, bucket: bytes, key: bytes, value: bytes, *, durable: bool = False) -> None:
        """Store (or overwrite) one value."""
        ...

    def delete(self, partition: int, bucket: bytes, key: bytes, *, durable: bool = False) -> None:
        """Remove one key; removing an absent key is not an error."""
        ...

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        """Apply `ops` in order, all or none: no reader sees part of the batch, and if any op fails
        (a bad argument or a storage error) none is applied. Later ops on the same key win."""
        ...

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        """Entries of one partition in `(bucket, key)` order, strictly after `start_after`, at most
        `limit` of them. Page through a large partition by passing the last `(bucket, key)` seen."""
        ...

    def partitions(self) -> list[int]:
        """The partitions that hold at least one data entry, ascending."""
        ...

    def count(self, partition: int) -> int:
        """How many data entries the partition holds (may take time linear in that number)."""
        ...

    def meta_get(self, name: bytes) -> bytes | None:
        """The meta value stored under `name`, or None."""
        ...

    def meta_put(self, name: bytes, value: bytes, *, durable: bool = False) -> None:
        """Store (or overwrite) one meta value."""
        ...

    def meta_delete(self, name: bytes, *, durable: bool = False) -> None:
        """Remove one meta name; removing an absent name is not an error."""
        ...

    def meta_scan(
        self, prefix: bytes, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Meta entries whose name starts with `prefix`, in name order, strictly after `start_after`,
        at most `limit` of them."""
        ...

    def flush(self) -> None:
        """Make every write so far durable (fsync); a no-op on the memory engine."""
        ...

    def close(self) -> None:
        """Flush and release the engine; idempotent. Any other call afterwards raises StorageClosed."""
        ...
