"""The LMDB engine: a memory-mapped copy-on-write B+tree, two named databases (`data` and `meta`).

Durability: LMDB is copy-on-write with two meta pages; a commit writes new pages, then a meta page
naming the new root. Two sync modes (http://www.lmdb.tech/doc/group__mdb__env.html):

* `sync_mode="safe"` (the default) opens the environment with `metasync=False` (MDB_NOMETASYNC): each
  commit fdatasyncs its pages (and with them the previous commit's meta page) but not its own meta page.
  LMDB documents this as keeping integrity while a system crash may undo the last commit. So a buffered
  write (`durable=False`) costs one fdatasync and may be undone by a power loss, never corrupted; a
  durable write commits and then calls `env.sync(True)`, which syncs its meta page too (two syncs).
  kill -9 loses nothing committed: the pages are in the OS page cache.
* `sync_mode="nosync"` (MDB_NOSYNC) makes commits free of syncs and `env.sync(True)` the only flush.
  That breaks the port's contract, which is why it is not the default and why the engine then reports
  `durable = False`: LMDB recycles the pages of old snapshots without knowing which snapshot is on disk,
  so commits after a sync may overwrite, in the page cache, pages of the synced snapshot; if the kernel
  writes those back and the power fails before the next sync, the database is corrupt (LMDB: "a system
  crash can corrupt the database"; its fork libmdbx's "UTTERLY_NOSYNC" is this mode, and it added a
  "SAFE_NOSYNC" precisely to keep the last synced snapshot). It survives kill -9 like the safe mode.
  Use it for throwaway data, benchmarks, and tests that only crash processes.

`flush()` is `env.sync(True)`; `close()` syncs and closes.

Size: the map is reserved address space, not disk (the file grows as pages are used). It starts at
`map_size` bytes and doubles whenever a write hits MDB_MAP_FULL, up to `map_size_max`, past which the
write fails with StorageError (the database does not shrink; a full map is an operating condition).

Keys: LMDB refuses keys over `max_key_size()` bytes (511 in the bundled build), while a data key
(partition, escaped bucket, key) can be longer. Keys shorter than that bound are stored as they are; a
longer key is stored in a *collection record* under its first `max_key_size()` bytes, whose value is the
sorted list of (rest of key, value) of every long key sharing that prefix. Record keys of full length
are always collections and shorter ones never are, and truncation keeps byte order (a key sorts with
its prefix against any key that differs from it within the prefix), so ordered scans stay correct.

Threads: every call holds one lock and opens and ends its transaction inside it, so the engine may be
shared between threads (py-lmdb always uses MDB_NOTLS). One engine per directory per machine: the
directory lock refuses a second opener, because LMDB breaks if one process opens an environment twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lmdb  # type: ignore[import-untyped,unused-ignore]

from dynakv.core import codec
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.protocol.ports import (
    DeleteOp,
    MetaDeleteOp,
    MetaPutOp,
    PutOp,
    ScanEntry,
    StorageClosed,
    StorageError,
    WriteOp,
)
from dynakv.storage.common import (
    PARTITION_BYTES,
    check_bytes,
    check_data_key,
    check_limit,
    check_op,
    check_partition,
    check_start_after,
    decode_data_key,
    encode_data_key,
    fsync_dir,
    lock_data_dir,
    make_data_dir,
    partition_prefix,
    prefix_successor,
    unlock_data_dir,
)

SYNC_MODES = ("safe", "nosync")
_DATA_DB = b"data"
_META_DB = b"meta"
# LMDB refuses empty keys, and an empty meta name is legal, so every meta name is stored behind this
# byte; a common prefix changes no order.
_META_TAG = b"m"


def _decode_collection(raw: bytes) -> list[list[bytes]]:
    """The sorted [rest of key, value] pairs of a collection record; StorageError if it is not one."""
    try:
        items = codec.unpack(raw)
    except DecodeError as e:
        raise StorageError("read", e, "corrupt long-key record") from e
    if not isinstance(items, list) or not all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(part, bytes) for part in item)
        for item in items
    ):
        raise StorageError("read", detail="corrupt long-key record")
    return items


class _Table:
    """One named LMDB database holding arbitrary-length byte keys (see "Keys" above)."""

    def __init__(self, db: Any, cut: int) -> None:
        self.db = db
        self.cut = cut  # record keys of exactly this length are collections of long keys

    def _collection(self, txn: Any, record_key: bytes) -> list[list[bytes]]:
        raw = txn.get(record_key, db=self.db)
        return [] if raw is None else _decode_collection(raw)

    def get(self, txn: Any, key: bytes) -> bytes | None:
        if len(key) < self.cut:
            value: bytes | None = txn.get(key, db=self.db)
            return value
        rest = key[self.cut :]
        for suffix, value in self._collection(txn, key[: self.cut]):
            if suffix == rest:
                return value
        return None

    def put(self, txn: Any, key: bytes, value: bytes | None) -> None:
        """Store `value` under `key`, or delete `key` when `value` is None."""
        if len(key) < self.cut:
            if value is None:
                txn.delete(key, db=self.db)
            else:
                txn.put(key, value, db=self.db)
            return
        record_key, rest = key[: self.cut], key[self.cut :]
        items = [item for item in self._collection(txn, record_key) if item[0] != rest]
        if value is not None:
            items.append([rest, value])
            items.sort(key=lambda item: item[0])
        if items:
            txn.put(record_key, codec.pack(items), db=self.db)
        else:
            txn.delete(record_key, db=self.db)

    def items(
        self, txn: Any, lo: bytes, after: bytes | None, hi: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for keys >= lo, > after and < hi (hi None: no bound), in key order."""
        start = lo if after is None or after < lo else after
        cursor = txn.cursor(db=self.db)
        if not cursor.set_range(start[: self.cut]):
            return
        for record_key, record_value in cursor.iternext(keys=True, values=True):
            if hi is not None and record_key >= hi:
                return
            if len(record_key) < self.cut:
                entries: list[tuple[bytes, bytes]] = [(record_key, record_value)]
            else:
                entries = [(record_key + rest, value) for rest, value in _decode_collection(record_value)]
            for key, value in entries:
                if hi is not None and key >= hi:
                    return
                if key >= lo and (after is None or key > after):
                    yield key, value


class LmdbEngine:
    """The LMDB engine in the directory `path` (created if missing).

    Options: `map_size` (initial map size, bytes), `map_size_max` (growth stops there), `sync_mode`
    ("safe" or "nosync", see the module docstring).
    """

    durable: bool

    def __init__(
        self, path: str, *, map_size: int = 256 << 20, map_size_max: int = 1 << 40, sync_mode: str = "safe"
    ) -> None:
        if sync_mode not in SYNC_MODES:
            raise ConfigError("sync_mode", f"{sync_mode!r} is not one of {', '.join(SYNC_MODES)}")
        self.durable = sync_mode == "safe"
        self._path = path
        self._lock = threading.Lock()
        self._map_size_max = map_size_max
        try:
            make_data_dir(path)
        except OSError as e:
            raise StorageError("open", e) from e
        self._dir_fd = lock_data_dir(path)
        try:
            # max_dbs=2: the named databases are exactly data and meta. readahead off: reads are random.
            self._env: Any = lmdb.open(
                path,
                map_size=map_size,
                subdir=True,
                max_dbs=2,
                sync=sync_mode == "safe",
                metasync=False,
                readahead=False,
            )
            cut = self._env.max_key_size()
            self._data = _Table(self._env.open_db(_DATA_DB), cut)
            self._meta = _Table(self._env.open_db(_META_DB), cut)
            self._env.sync(True)
            fsync_dir(path)
        except (lmdb.Error, OSError) as e:
            if hasattr(self, "_env"):
                self._env.close()
            unlock_data_dir(self._dir_fd)
            raise StorageError("open", e) from e
        self._closed = False

    def __repr__(self) -> str:
        return f"LmdbEngine({self._path!r})"

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StorageClosed(operation, self._path)

    # -- writing ----------------------------------------------------------------------------------

    def _write(self, operation: str, durable: bool, apply: Callable[[Any], None]) -> None:
        with self._lock:
            self._check_open(operation)
            try:
                while True:
                    try:
                        # The context manager commits on success and aborts on any exception, which is
                        # what makes a failed batch leave nothing behind.
                        with self._env.begin(write=True) as txn:
                            apply(txn)
                        break
                    except lmdb.MapFullError:
                        self._grow()
                if durable:
                    self._env.sync(True)
            except lmdb.Error as e:
                raise StorageError(operation, e) from e

    def _grow(self) -> None:
        # set_mapsize needs no transaction open in this process; the lock guarantees that here.
        current = self._env.info()["map_size"]
        if current >= self._map_size_max:
            raise StorageError("write", detail=f"the LMDB map is full at map_size_max={self._map_size_max}")
        self._env.set_mapsize(min(current * 2, self._map_size_max))

    def put(self, partition: int, bucket: bytes, key: bytes, value: bytes, *, durable: bool = False) -> None:
        check_data_key(partition, bucket, key)
        check_bytes("value", value)
        encoded = encode_data_key(partition, bucket, key)
        self._write("put", durable, lambda txn: self._data.put(txn, encoded, value))

    def delete(self, partition: int, bucket: bytes, key: bytes, *, durable: bool = False) -> None:
        check_data_key(partition, bucket, key)
        encoded = encode_data_key(partition, bucket, key)
        self._write("delete", durable, lambda txn: self._data.put(txn, encoded, None))

    def meta_put(self, name: bytes, value: bytes, *, durable: bool = False) -> None:
        check_bytes("name", name)
        check_bytes("value", value)
        self._write("meta_put", durable, lambda txn: self._meta.put(txn, _META_TAG + name, value))

    def meta_delete(self, name: bytes, *, durable: bool = False) -> None:
        check_bytes("name", name)
        self._write("meta_delete", durable, lambda txn: self._meta.put(txn, _META_TAG + name, None))

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        def apply(txn: Any) -> None:
            # Each op is checked inside the transaction: a bad one aborts the ops before it.
            for op in ops:
                check_op(op)
                if isinstance(op, PutOp):
                    self._data.put(txn, encode_data_key(op.partition, op.bucket, op.key), op.value)
                elif isinstance(op, DeleteOp):
                    self._data.put(txn, encode_data_key(op.partition, op.bucket, op.key), None)
                elif isinstance(op, MetaPutOp):
                    self._meta.put(txn, _META_TAG + op.name, op.value)
                elif isinstance(op, MetaDeleteOp):
                    self._meta.put(txn, _META_TAG + op.name, None)

        self._write("write_batch", durable, apply)

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, operation: str, read: Callable[[Any], Any]) -> Any:
        with self._lock:
            self._check_open(operation)
            try:
                with self._env.begin() as txn:
                    return read(txn)
            except (lmdb.Error, DecodeError) as e:
                raise StorageError(operation, e) from e

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        check_data_key(partition, bucket, key)
        encoded = encode_data_key(partition, bucket, key)
        value: bytes | None = self._read("get", lambda txn: self._data.get(txn, encoded))
        return value

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        check_partition(partition)
        check_start_after(start_after)
        check_limit(limit)
        lo, hi = partition_prefix(partition), partition_prefix(partition + 1)
        after = None if start_after is None else encode_data_key(partition, *start_after)

        def read(txn: Any) -> list[ScanEntry]:
            found: list[ScanEntry] = []
            if limit == 0:
                return found
            for encoded, value in self._data.items(txn, lo, after, hi):
                _, bucket, key = decode_data_key(encoded)
                found.append((bucket, key, value))
                if limit is not None and len(found) >= limit:
                    break
            return found

        entries: list[ScanEntry] = self._read("scan", read)
        return entries

    def partitions(self) -> list[int]:
        def read(txn: Any) -> list[int]:
            found: list[int] = []
            cursor = txn.cursor(db=self._data.db)
            seek = b""
            # One seek per partition: jump to the first key of the next possible partition.
            while cursor.set_range(seek):
                partition = int.from_bytes(cursor.key()[:PARTITION_BYTES], "big")
                found.append(partition)
                seek = partition_prefix(partition + 1)
            return found

        partitions: list[int] = self._read("partitions", read)
        return partitions

    def count(self, partition: int) -> int:
        check_partition(partition)
        lo, hi = partition_prefix(partition), partition_prefix(partition + 1)
        total: int = self._read("count", lambda txn: sum(1 for _ in self._data.items(txn, lo, None, hi)))
        return total

    def meta_get(self, name: bytes) -> bytes | None:
        check_bytes("name", name)
        value: bytes | None = self._read("meta_get", lambda txn: self._meta.get(txn, _META_TAG + name))
        return value

    def meta_scan(
        self, prefix: bytes, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        check_bytes("prefix", prefix)
        if start_after is not None:
            check_bytes("start_after", start_after)
        check_limit(limit)

        lo = _META_TAG + prefix
        after = None if start_after is None else _META_TAG + start_after
        upper = prefix_successor(prefix)
        hi = None if upper is None else _META_TAG + upper

        def read(txn: Any) -> list[tuple[bytes, bytes]]:
            found: list[tuple[bytes, bytes]] = []
            if limit == 0:
                return found
            for name, value in self._meta.items(txn, lo, after, hi):
                found.append((name[len(_META_TAG) :], value))
                if limit is not None and len(found) >= limit:
                    break
            return found

        entries: list[tuple[bytes, bytes]] = self._read("meta_scan", read)
        return entries

    # -- lifecycle --------------------------------------------------------------------------------

    def flush(self) -> None:
        with self._lock:
            self._check_open("flush")
            try:
                self._env.sync(True)
            except lmdb.Error as e:
                raise StorageError("flush", e) from e

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._env.sync(True)
            except lmdb.Error as e:
                raise StorageError("close", e) from e
            finally:
                self._env.close()
                unlock_data_dir(self._dir_fd)
