"""What is particular to one engine: key encoding, lmdb map growth, sqlite sync settings, corrupt files,
the memory engine's crash model, and the registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.errors import ConfigError
from dynakv.protocol.ports import PARTITION_MAX, MetaPutOp, PutOp, StorageEngine, StorageError
from dynakv.storage import sqlite as sqlite_engine
from dynakv.storage.common import decode_data_key, encode_data_key, prefix_successor
from dynakv.storage.lmdb import LmdbEngine
from dynakv.storage.memory import MemoryEngine
from dynakv.storage.registry import DEFAULT_ENGINE, DISK_ENGINES, ENGINES, open_engine
from dynakv.storage.sqlite import SqliteEngine

# Bytes drawn mostly from the awkward end of the alphabet, where escaping and ordering can go wrong.
AWKWARD_BYTES = st.binary(max_size=6) | st.lists(st.sampled_from([0, 1, 0xFE, 0xFF]), max_size=6).map(bytes)
DATA_KEYS = st.tuples(st.integers(0, PARTITION_MAX), AWKWARD_BYTES, AWKWARD_BYTES)


@given(st.lists(DATA_KEYS, max_size=30))
def test_encoded_data_keys_sort_like_tuples(keys: list[tuple[int, bytes, bytes]]) -> None:
    assert sorted(encode_data_key(*k) for k in keys) == [encode_data_key(*k) for k in sorted(keys)]


@given(DATA_KEYS)
def test_encoded_data_keys_decode_back(key: tuple[int, bytes, bytes]) -> None:
    assert decode_data_key(encode_data_key(*key)) == key


@given(AWKWARD_BYTES, AWKWARD_BYTES)
def test_prefix_successor_bounds_exactly_the_names_with_the_prefix(prefix: bytes, name: bytes) -> None:
    upper = prefix_successor(prefix)
    below_upper = upper is None or name < upper
    assert (name >= prefix and below_upper) == name.startswith(prefix)


# -- lmdb -----------------------------------------------------------------------------------------


def test_lmdb_map_grows_when_full(tmp_path: Path) -> None:
    store = LmdbEngine(str(tmp_path / "s"), map_size=64 << 10)
    try:
        values = [bytes([i]) * (1 << 20) for i in range(4)]
        for i, value in enumerate(values):
            store.put(0, b"b", b"%d" % i, value)
        assert [v for _, _, v in store.scan(0)] == values
    finally:
        store.close()


def test_lmdb_full_map_at_its_bound_is_a_storage_error_and_loses_nothing(tmp_path: Path) -> None:
    store = LmdbEngine(str(tmp_path / "s"), map_size=256 << 10, map_size_max=512 << 10)
    try:
        store.put(0, b"b", b"small", b"v", durable=True)
        with pytest.raises(StorageError, match="map is full"):
            store.write_batch([PutOp(0, b"b", b"big", b"x" * (1 << 20)), MetaPutOp(b"m", b"1")], durable=True)
        assert store.scan(0) == [(b"b", b"small", b"v")]
        assert store.meta_scan(b"") == []
        store.put(0, b"b", b"small2", b"w")
        assert store.count(0) == 2
    finally:
        store.close()


def test_lmdb_nosync_mode_does_not_claim_durability_and_modes_are_checked(tmp_path: Path) -> None:
    store = open_engine("lmdb", str(tmp_path / "s"), sync_mode="nosync")
    try:
        assert not store.durable
        store.put(0, b"b", b"k", b"v", durable=True)
    finally:
        store.close()
    again = open_engine("lmdb", str(tmp_path / "s"))
    assert again.get(0, b"b", b"k") == b"v" and again.durable
    again.close()
    with pytest.raises(ConfigError, match="sync_mode"):
        open_engine("lmdb", str(tmp_path / "t"), sync_mode="fast")


# -- sqlite ---------------------------------------------------------------------------------------


def test_sqlite_durable_commits_run_with_synchronous_full_and_buffered_with_normal(tmp_path: Path) -> None:
    store = SqliteEngine(str(tmp_path / "s"))
    statements: list[str] = []
    try:
        conn = store._conn
        assert conn is not None
        conn.set_trace_callback(statements.append)
        store.put(0, b"b", b"buffered", b"v")
        assert not any("synchronous" in s for s in statements)
        statements.clear()
        store.write_batch([PutOp(0, b"b", b"k", b"v")], durable=True)
        kinds = [
            s.split()[0] + ("=FULL" if "FULL" in s else "=NORMAL" if "NORMAL" in s else "")
            for s in statements
        ]
        assert kinds == ["PRAGMA=FULL", "BEGIN", "INSERT", "COMMIT", "PRAGMA=NORMAL"]
        conn.set_trace_callback(None)
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_sqlite_error_in_a_batch_rolls_back_and_restores_normal_sync(tmp_path: Path) -> None:
    store = SqliteEngine(str(tmp_path / "s"))
    try:
        with pytest.raises(TypeError):
            store.write_batch([PutOp(0, b"b", b"k", b"v"), PutOp(0, b"b", b"k2", 3)], durable=True)  # type: ignore[arg-type]
        conn = store._conn
        assert conn is not None
        assert not conn.in_transaction
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert store.scan(0) == []
    finally:
        store.close()


# -- corrupt files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_name", "file_name"), [("sqlite", sqlite_engine.FILE_NAME), ("lmdb", "data.mdb")]
)
def test_a_corrupt_file_is_a_storage_error_with_its_cause(
    tmp_path: Path, engine_name: str, file_name: str
) -> None:
    path = tmp_path / "s"
    open_engine(engine_name, str(path)).close()
    (path / file_name).write_bytes(b"this is not a database file, not even close" * 200)
    with pytest.raises(StorageError) as caught:
        open_engine(engine_name, str(path))
    assert caught.value.operation == "open"
    assert caught.value.cause is not None and caught.value.__cause__ is caught.value.cause
    # The failed open released the directory lock: a second try fails on the file again, not on the lock.
    with pytest.raises(StorageError) as again:
        open_engine(engine_name, str(path))
    assert "in use" not in str(again.value)


def test_a_path_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    for name in DISK_ENGINES:
        with pytest.raises(StorageError):
            open_engine(name, str(tmp_path / "file"))


# -- memory ---------------------------------------------------------------------------------------


def test_memory_crash_keeps_exactly_what_was_made_durable() -> None:
    store = MemoryEngine()
    assert not store.durable
    store.put(0, b"b", b"old", b"1", durable=True)
    store.meta_put(b"m", b"1", durable=True)
    store.put(0, b"b", b"buffered-then-flushed", b"2")
    store.flush()
    store.put(0, b"b", b"old", b"changed")
    store.delete(0, b"b", b"buffered-then-flushed")
    store.put(1, b"b", b"new", b"3")
    store.meta_put(b"m", b"2")
    store.meta_put(b"n", b"2")
    store.crash()
    assert store.scan(0) == [(b"b", b"buffered-then-flushed", b"2"), (b"b", b"old", b"1")]
    assert store.partitions() == [0]
    assert store.meta_scan(b"") == [(b"m", b"1")]
    store.put(2, b"b", b"k", b"v")
    store.put(3, b"b", b"k", b"v", durable=True)  # makes the put to partition 2 durable too
    store.crash()
    assert store.partitions() == [0, 2, 3]


# -- registry -------------------------------------------------------------------------------------


def test_registry_opens_every_engine_and_defaults_to_a_disk_engine(tmp_path: Path) -> None:
    assert DEFAULT_ENGINE in DISK_ENGINES
    assert set(DISK_ENGINES) < set(ENGINES)
    for name in ENGINES:
        store: StorageEngine = open_engine(name, str(tmp_path / name))
        assert store.durable == (name in DISK_ENGINES)
        store.close()
    assert sorted(os.listdir(tmp_path)) == sorted(DISK_ENGINES)


def test_registry_refuses_unknown_names_options_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown engine"):
        open_engine("rocksdb", str(tmp_path))
    with pytest.raises(ConfigError, match="needs a directory"):
        open_engine("sqlite", None)
    with pytest.raises(ConfigError, match="bad option"):
        open_engine("lmdb", str(tmp_path / "l"), page_size=4096)
    with pytest.raises(ConfigError, match="no options"):
        open_engine("memory", None, map_size=1)
    store = open_engine("lmdb", str(tmp_path / "l"), map_size=1 << 20)
    store.close()
