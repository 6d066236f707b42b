"""An engine wrapper that fails on purpose, for tests of how the layers above handle storage errors.

`FaultyEngine(inner)` behaves exactly like `inner` until told otherwise:

* `fail_next(operation, count=1, cause=None, applied=False)` makes the next `count` calls of
  `operation` (a method name such as "put" or "write_batch", or "*" for any call but close) raise
  `StorageError`. With `applied=False` the call never reaches the inner engine, so nothing changed
  (disk full before the write); with `applied=True` the inner call runs first and the error comes after
  it (the write may be on disk, but the caller cannot know: an fsync that failed after the write).
* `read_error_rate` / `write_error_rate` fail calls at random, drawn from an injected `random.Random`,
  so a simulation with the same seed fails the same calls.

Every injected error is counted in `injected`. The default cause is `OSError(ENOSPC)`.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from dynakv.protocol.ports import ScanEntry, StorageEngine, StorageError, WriteOp

T = TypeVar("T")

READS = frozenset({"get", "scan", "partitions", "count", "meta_get", "meta_scan"})
WRITES = frozenset({"put", "delete", "write_batch", "meta_put", "meta_delete", "flush"})


class _Plan:
    def __init__(self, count: int, cause: BaseException | None, applied: bool) -> None:
        self.count = count
        self.cause = cause
        self.applied = applied


class FaultyEngine:
    """A `StorageEngine` that forwards to `inner` and injects `StorageError`s (see the module docstring)."""

    def __init__(
        self,
        inner: StorageEngine,
        *,
        rng: random.Random | None = None,
        read_error_rate: float = 0.0,
        write_error_rate: float = 0.0,
    ) -> None:
        if (read_error_rate or write_error_rate) and rng is None:
            raise ValueError("random error rates need an injected rng")
        self.inner = inner
        self.injected = 0
        self._rng = rng
        self._rates = {"read": read_error_rate, "write": write_error_rate}
        self._plans: dict[str, _Plan] = {}

    @property
    def durable(self) -> bool:
        return self.inner.durable

    def fail_next(
        self, operation: str, count: int = 1, cause: BaseException | None = None, applied: bool = False
    ) -> None:
        if operation != "*" and operation not in READS | WRITES:
            raise ValueError(f"unknown storage operation {operation!r}")
        self._plans[operation] = _Plan(count, cause, applied)

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        plan = self._plans.get(operation) or self._plans.get("*")
        cause: BaseException | None = None
        applied = False
        if plan is not None and plan.count > 0:
            plan.count -= 1
            cause = plan.cause or OSError(errno.ENOSPC, "injected: no space left on device")
            applied = plan.applied
        elif self._rng is not None:
            rate = self._rates["read" if operation in READS else "write"]
            if rate and self._rng.random() < rate:
                cause = OSError(errno.EIO, "injected: input/output error")
        if cause is None:
            return call()
        if applied:
            call()
        self.injected += 1
        raise StorageError(operation, cause) from cause

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        return self._call("get", lambda: self.inner.get(partition, bucket, key))

    def put(self, partition: int, bucket: bytes, key: bytes, value: bytes, *, durable: bool = False) -> None:
        self._call("put", lambda: self.inner.put(partition, bucket, key, value, durable=durable))

    def delete(self, partition: int, bucket: bytes, key: bytes, *, durable: bool = False) -> None:
        self._call("delete", lambda: self.inner.delete(partition, bucket, key, durable=durable))

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        self._call("write_batch", lambda: self.inner.write_batch(ops, durable=durable))

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        return self._call("scan", lambda: self.inner.scan(partition, start_after, limit))

    def partitions(self) -> list[int]:
        return self._call("partitions", self.inner.partitions)

    def count(self, partition: int) -> int:
        return self._call("count", lambda: self.inner.count(partition))

    def meta_get(self, name: bytes) -> bytes | None:
        return self._call("meta_get", lambda: self.inner.meta_get(name))

    def meta_put(self, name: bytes, value: bytes, *, durable: bool = False) -> None:
        self._call("meta_put", lambda: self.inner.meta_put(name, value, durable=durable))

    def meta_delete(self, name: bytes, *, durable: bool = False) -> None:
        self._call("meta_delete", lambda: self.inner.meta_delete(name, durable=durable))

    def meta_scan(
        self, prefix: bytes, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        return self._call("meta_scan", lambda: self.inner.meta_scan(prefix, start_after, limit))

    def flush(self) -> None:
        self._call("flush", self.inner.flush)

    def close(self) -> None:
        self.inner.close()
