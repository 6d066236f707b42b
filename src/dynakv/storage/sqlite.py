"""The sqlite engine: one database file in WAL mode, one table per key space.

Layout: ordinary rowid tables with a unique (partition, bucket, key) index, not WITHOUT ROWID tables:
sqlite recommends the latter only for rows much smaller than a page, and stored objects are hundreds of
bytes to megabytes. Measured here (benchmarks/storage_bench.py shape), the rowid layout took buffered
puts from about 7k/s to 14k/s, and a 4000-page auto-checkpoint (a WAL of about 16 MiB instead of 4 MiB)
to 16k/s, for scans about half as fast (still over 250k entries/s).

Durability, and why these settings give it (https://sqlite.org/pragma.html#pragma_synchronous and
https://sqlite.org/wal.html):

* `journal_mode=WAL`: a commit appends frames to the write-ahead log; readers never block the writer.
  Each WAL frame carries a checksum chained from the previous one, so after a crash recovery replays
  exactly the complete commits at the start of the log and ignores a torn tail: a crash can lose recent
  commits but cannot corrupt the database.
* Buffered writes (`durable=False`) commit with `synchronous=NORMAL`: in WAL mode that means no fsync
  at commit; the WAL is fsynced before each checkpoint and the database file after it. The frames are
  written to the file (the OS page cache) before the commit returns, so they already survive kill -9;
  only a power loss can drop them, which the contract allows.
* Durable writes switch the connection to `synchronous=FULL` for that one commit: "in WAL mode when
  synchronous is FULL, the WAL file is synchronized after each transaction commit". One fsync of an
  append-only log covers every earlier frame too, so all previous buffered writes become durable with it.
  (Checked with strace: a buffered commit makes no fsync/fdatasync call, a durable one makes one.)
* `flush()` runs `PRAGMA wal_checkpoint(PASSIVE)`, which fsyncs the WAL, copies it into the database and
  fsyncs that; with the only connection being ours, PASSIVE checkpoints everything.
* The first fsync of a newly created WAL also fsyncs its directory (sqlite's unix VFS does this for
  new journals), and `open` fsyncs the data directory itself, so file creation is durable too.
* `locking_mode=EXCLUSIVE`: one connection, one process. It lets sqlite keep the WAL index in heap
  memory instead of a shared-memory file; the directory lock in `common.lock_data_dir` reports a second
  opener clearly.

Threads: a Python sqlite3 connection refuses use from another thread unless opened with
`check_same_thread=False`. This engine opens it so, and guards every call with one lock, so the runtime
may call it from its loop thread or hand it to a dedicated storage thread, but never two at once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence

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
    check_bytes,
    check_data_key,
    check_limit,
    check_op,
    check_partition,
    check_start_after,
    fsync_dir,
    lock_data_dir,
    make_data_dir,
    prefix_successor,
    unlock_data_dir,
)

FILE_NAME = "dynakv.sqlite3"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS data (partition INTEGER NOT NULL, bucket BLOB NOT NULL, key BLOB NOT NULL,"
    " value BLOB NOT NULL, PRIMARY KEY (partition, bucket, key))",
    "CREATE TABLE IF NOT EXISTS meta (name BLOB NOT NULL PRIMARY KEY, value BLOB NOT NULL)",
)
# A WAL that outgrew this (one huge transaction) is truncated back to it after a checkpoint.
_WAL_BYTES_MAX = 64 << 20
_PUT = "INSERT OR REPLACE INTO data (partition, bucket, key, value) VALUES (?, ?, ?, ?)"
_DELETE = "DELETE FROM data WHERE partition = ? AND bucket = ? AND key = ?"
_GET = "SELECT value FROM data WHERE partition = ? AND bucket = ? AND key = ?"
_META_PUT = "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)"
_META_DELETE = "DELETE FROM meta WHERE name = ?"
# BLOBs compare with memcmp and then by length, which is exactly the order of Python bytes; the row-value
# comparison `(bucket, key) > (?, ?)` is a range on the primary key, so a page costs one index seek.
_SCAN = "SELECT bucket, key, value FROM data WHERE partition = ? ORDER BY bucket, key LIMIT ?"
_SCAN_AFTER = (
    "SELECT bucket, key, value FROM data WHERE partition = ? AND (bucket, key) > (?, ?)"
    " ORDER BY bucket, key LIMIT ?"
)
_NEXT_PARTITION = "SELECT partition FROM data WHERE partition > ? ORDER BY partition LIMIT 1"
_COUNT = "SELECT count(*) FROM data WHERE partition = ?"

Statement = tuple[str, tuple[object, ...]]


class SqliteEngine:
    """The sqlite engine, storing `dynakv.sqlite3` in the directory `path` (created if missing).

    Options: `cache_kib` (page cache size), `mmap_bytes` (memory-mapped reads, 0 disables),
    `checkpoint_pages` (WAL pages that trigger an automatic checkpoint), `busy_timeout_ms` (how long to
    wait for a lock held elsewhere before StorageError).
    """

    durable = True

    def __init__(
        self,
        path: str,
        *,
        cache_kib: int = 64 * 1024,
        mmap_bytes: int = 256 << 20,
        checkpoint_pages: int = 4000,
        busy_timeout_ms: int = 0,
    ) -> None:
        self._path = path
        self._lock = threading.Lock()
        try:
            make_data_dir(path)
        except OSError as e:
            raise StorageError("open", e) from e
        self._dir_fd = lock_data_dir(path)
        try:
            tuning = {
                "cache_size": -int(cache_kib),
                "mmap_size": int(mmap_bytes),
                "wal_autocheckpoint": int(checkpoint_pages),
                "journal_size_limit": _WAL_BYTES_MAX,
            }
            self._conn: sqlite3.Connection | None = self._connect(busy_timeout_ms, tuning)
            fsync_dir(path)
        except (sqlite3.Error, OSError) as e:
            unlock_data_dir(self._dir_fd)
            raise StorageError("open", e) from e

    def _connect(self, busy_timeout_ms: int, tuning: dict[str, int]) -> sqlite3.Connection:
        conn = sqlite3.connect(
            os.path.join(self._path, FILE_NAME),
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,  # autocommit: transactions are only the ones begun here
            check_same_thread=False,  # guarded by self._lock, see the module docstring
        )
        try:
            # locking_mode must precede the first WAL access to keep the WAL index out of shared memory.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StorageError("open", detail=f"sqlite refused WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=NORMAL")
            for name, value in tuning.items():
                conn.execute(f"PRAGMA {name}={value}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except BaseException:
            conn.close()
            raise
        return conn

    def __repr__(self) -> str:
        return f"SqliteEngine({self._path!r})"

    def _connection(self, operation: str) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageClosed(operation, self._path)
        return self._conn

    # -- writing ----------------------------------------------------------------------------------

    def _write(self, operation: str, durable: bool, statements: Iterable[Statement], single: bool) -> None:
        """Run `statements` as one transaction. A `single` statement is atomic on its own in autocommit
        mode, which saves the BEGIN and COMMIT round trips on the hot put path."""
        with self._lock:
            conn = self._connection(operation)
            try:
                if durable:
                    conn.execute("PRAGMA synchronous=FULL")
                try:
                    if not single:
                        conn.execute("BEGIN")
                    for sql, params in statements:
                        conn.execute(sql, params)
                    if not single:
                        conn.execute("COMMIT")
                finally:
                    # A failed statement or COMMIT may leave the transaction open (or sqlite may already
                    # have rolled it back); either way nothing of it must stay.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if durable:
                        conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as e:
                raise StorageError(operation, e) from e

    def put(self, partition: int, bucket: bytes, key: bytes, value: bytes, *, durable: bool = False) -> None:
        check_data_key(partition, bucket, key)
        check_bytes("value", value)
        self._write("put", durable, [(_PUT, (partition, bucket, key, value))], single=True)

    def delete(self, partition: int, bucket: bytes, key: bytes, *, durable: bool = False) -> None:
        check_data_key(partition, bucket, key)
        self._write("delete", durable, [(_DELETE, (partition, bucket, key))], single=True)

    def meta_put(self, name: bytes, value: bytes, *, durable: bool = False) -> None:
        check_bytes("name", name)
        check_bytes("value", value)
        self._write("meta_put", durable, [(_META_PUT, (name, value))], single=True)

    def meta_delete(self, name: bytes, *, durable: bool = False) -> None:
        check_bytes("name", name)
        self._write("meta_delete", durable, [(_META_DELETE, (name,))], single=True)

    def write_batch(self, ops: Sequence[WriteOp], *, durable: bool) -> None:
        if not ops:
            if durable:
                self.flush()
            else:
                with self._lock:
                    self._connection("write_batch")
            return
        self._write("write_batch", durable, _statements(ops), single=False)

    # -- reading ----------------------------------------------------------------------------------

    def _query(self, operation: str, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            conn = self._connection(operation)
            try:
                rows: list[tuple[object, ...]] = conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StorageError(operation, e) from e
            return rows

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        check_data_key(partition, bucket, key)
        rows = self._query("get", _GET, (partition, bucket, key))
        return _blob(rows[0][0]) if rows else None

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        check_partition(partition)
        check_start_after(start_after)
        check_limit(limit)
        sql_limit = -1 if limit is None else limit  # LIMIT -1 is sqlite's "no limit"
        if start_after is None:
            rows = self._query("scan", _SCAN, (partition, sql_limit))
        else:
            rows = self._query("scan", _SCAN_AFTER, (partition, start_after[0], start_after[1], sql_limit))
        return [(_blob(b), _blob(k), _blob(v)) for b, k, v in rows]

    def partitions(self) -> list[int]:
        # One index seek per partition instead of a DISTINCT over every row.
        found: list[int] = []
        last = -1
        while rows := self._query("partitions", _NEXT_PARTITION, (last,)):
            last = _int(rows[0][0])
            found.append(last)
        return found

    def count(self, partition: int) -> int:
        check_partition(partition)
        return _int(self._query("count", _COUNT, (partition,))[0][0])

    def meta_get(self, name: bytes) -> bytes | None:
        check_bytes("name", name)
        rows = self._query("meta_get", "SELECT value FROM meta WHERE name = ?", (name,))
        return _blob(rows[0][0]) if rows else None

    def meta_scan(
        self, prefix: bytes, start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        check_bytes("prefix", prefix)
        check_limit(limit)
        where, params = ["name >= ?"], [prefix]
        if start_after is not None:
            check_bytes("start_after", start_after)
            where.append("name > ?")
            params.append(start_after)
        upper = prefix_successor(prefix)
        if upper is not None:
            where.append("name < ?")
            params.append(upper)
        sql = f"SELECT name, value FROM meta WHERE {' AND '.join(where)} ORDER BY name LIMIT ?"
        rows = self._query("meta_scan", sql, (*params, -1 if limit is None else limit))
        return [(_blob(n), _blob(v)) for n, v in rows]

    # -- lifecycle --------------------------------------------------------------------------------

    def flush(self) -> None:
        # The row is (busy, frames in the log, frames checkpointed). With no other connection nothing can
        # hold the checkpoint back, so anything else means the fsyncs did not all happen.
        busy, logged, copied = self._query("flush", "PRAGMA wal_checkpoint(PASSIVE)", ())[0]
        if busy != 0 or logged != copied:
            detail = f"incomplete checkpoint: busy={busy}, {copied} of {logged} frames"
            raise StorageError("flush", detail=detail)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                raise StorageError("close", e) from e
            finally:
                conn.close()  # the last connection's close checkpoints again and removes the WAL
                unlock_data_dir(self._dir_fd)


def _statements(ops: Sequence[WriteOp]) -> Iterator[Statement]:
    # Generated lazily, inside the transaction: a malformed op rolls back the ops before it.
    for op in ops:
        check_op(op)
        if isinstance(op, PutOp):
            yield _PUT, (op.partition, op.bucket, op.key, op.value)
        elif isinstance(op, DeleteOp):
            yield _DELETE, (op.partition, op.bucket, op.key)
        elif isinstance(op, MetaPutOp):
            yield _META_PUT, (op.name, op.value)
        elif isinstance(op, MetaDeleteOp):
            yield _META_DELETE, (op.name,)


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise StorageError("read", detail=f"expected an INTEGER, found {type(value).__name__} (corrupt?)")
    return value


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise StorageError("read", detail=f"expected a BLOB, found {type(value).__name__} (corrupt?)")
    return value
