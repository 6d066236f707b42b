"""The storage port's contract, checked against every engine (see `conftest.engine`)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from dynakv.protocol.ports import (
    PARTITION_MAX,
    DeleteOp,
    MetaDeleteOp,
    MetaPutOp,
    PutOp,
    StorageClosed,
    StorageEngine,
    StorageError,
)
from tests.storage.conftest import Opener

MIB = 1 << 20
# Bytes that break naive encodings: NUL, 0xFF, escape look-alikes, prefixes of one another.
AWKWARD = [
    b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x01", b"a", b"a\x00", b"a\x00b", b"ab", b"\xff", b"\xff\xff"
]


def test_put_get_delete(engine: StorageEngine) -> None:
    assert engine.get(1, b"b", b"k") is None
    engine.put(1, b"b", b"k", b"v")
    assert engine.get(1, b"b", b"k") == b"v"
    engine.delete(1, b"b", b"k")
    assert engine.get(1, b"b", b"k") is None
    engine.delete(1, b"b", b"k")  # absent: not an error
    assert engine.scan(1) == []


def test_overwrite_keeps_only_the_last_value(engine: StorageEngine) -> None:
    engine.put(0, b"b", b"k", b"one")
    engine.put(0, b"b", b"k", b"two", durable=True)
    assert engine.get(0, b"b", b"k") == b"two"
    assert engine.count(0) == 1


def test_empty_value_bucket_and_key_are_stored(engine: StorageEngine) -> None:
    engine.put(0, b"", b"", b"")
    assert engine.get(0, b"", b"") == b""
    assert engine.scan(0) == [(b"", b"", b"")]


def test_large_values_round_trip(engine: StorageEngine) -> None:
    rng = random.Random(7)
    big = [rng.randbytes(MIB) for _ in range(3)]
    for i, value in enumerate(big):
        engine.put(2, b"big", b"%d" % i, value, durable=i == 2)
    assert [engine.get(2, b"big", b"%d" % i) for i in range(3)] == big
    assert [v for _, _, v in engine.scan(2)] == big


def test_binary_buckets_and_keys_scan_in_tuple_order(engine: StorageEngine) -> None:
    pairs = [(b, k) for b in AWKWARD for k in AWKWARD]
    random.Random(1).shuffle(pairs)
    for bucket, key in pairs:
        engine.put(3, bucket, key, bucket + b"|" + key)
    expected = sorted(pairs)
    assert [(b, k) for b, k, _ in engine.scan(3)] == expected
    assert all(v == b + b"|" + k for b, k, v in engine.scan(3))
    assert all(engine.get(3, b, k) == b + b"|" + k for b, k in pairs)


def test_long_buckets_and_keys_share_prefixes_and_stay_ordered(engine: StorageEngine) -> None:
    # Longer than LMDB's 511-byte key limit once encoded, and sharing long prefixes, so the lmdb
    # engine's collection records are exercised (and must still order and delete correctly).
    bucket = b"\x00" * 256  # escaping doubles it
    keys = [
        b"k" * 1024, b"k" * 1023, b"k" * 1023 + b"\x00", b"k" * 600 + b"\xff", b"k" * 100, b"k" * 1024 + b"x"
    ]
    for i, key in enumerate(keys):
        engine.put(4, bucket, key, b"%d" % i)
    engine.put(4, bucket + b"\x01", b"after", b"z")
    expected = sorted([(bucket, k) for k in keys] + [(bucket + b"\x01", b"after")])
    assert [(b, k) for b, k, _ in engine.scan(4)] == expected
    assert engine.get(4, bucket, keys[1]) == b"1"
    engine.delete(4, bucket, keys[1])
    assert engine.get(4, bucket, keys[1]) is None
    assert engine.get(4, bucket, keys[0]) == b"0"
    assert engine.count(4) == len(keys)
    page = engine.scan(4, start_after=(bucket, keys[2]), limit=2)
    assert [k for _, k, _ in page] == sorted(k for k in keys if k > keys[2] and k != keys[1])[:2]


def test_paging_covers_every_entry_exactly_once(engine: StorageEngine) -> None:
    rng = random.Random(2)
    pairs = {(rng.randbytes(rng.randrange(0, 6)), rng.randbytes(rng.randrange(0, 6))) for _ in range(400)}
    buckets = [b"bucket-%03d" % i for i in range(40)]
    pairs |= {(rng.choice(buckets), b"key-%d" % i) for i in range(400)}
    engine.write_batch([PutOp(5, b, k, k) for b, k in pairs], durable=False)
    for limit in (1, 7, 100):
        seen: list[tuple[bytes, bytes]] = []
        after: tuple[bytes, bytes] | None = None
        while page := engine.scan(5, start_after=after, limit=limit):
            assert len(page) <= limit
            seen += [(b, k) for b, k, _ in page]
            after = seen[-1]
        assert seen == sorted(pairs)
    assert engine.scan(5, limit=0) == []


def test_start_after_need_not_exist(engine: StorageEngine) -> None:
    for key in (b"a", b"c", b"e"):
        engine.put(0, b"b", key, key)
    assert [k for _, k, _ in engine.scan(0, start_after=(b"b", b"b"))] == [b"c", b"e"]
    assert [k for _, k, _ in engine.scan(0, start_after=(b"a", b"zzz"))] == [b"a", b"c", b"e"]
    assert engine.scan(0, start_after=(b"b", b"e")) == []
    assert engine.scan(0, start_after=(b"c", b"")) == []


def test_partitions_are_isolated(engine: StorageEngine) -> None:
    for partition in (PARTITION_MAX, 0, 63, 1):
        engine.put(partition, b"b", b"k", b"%d" % partition)
        engine.put(partition, b"b", b"only-%d" % partition, b"")
    assert engine.partitions() == [0, 1, 63, PARTITION_MAX]
    for partition in (0, 1, 63, PARTITION_MAX):
        assert engine.get(partition, b"b", b"k") == b"%d" % partition
        assert engine.count(partition) == 2
        assert [k for _, k, _ in engine.scan(partition)] == [b"k", b"only-%d" % partition]
    assert engine.scan(2) == [] and engine.count(2) == 0
    engine.delete(63, b"b", b"k")
    engine.delete(63, b"b", b"only-63")
    assert engine.partitions() == [0, 1, PARTITION_MAX]
    assert engine.get(1, b"b", b"k") == b"1"


def test_meta_space_is_separate_from_data(engine: StorageEngine) -> None:
    engine.meta_put(b"b", b"meta")
    engine.put(0, b"b", b"", b"data")
    assert engine.meta_get(b"b") == b"meta"
    assert engine.scan(0) == [(b"b", b"", b"data")]
    assert engine.meta_scan(b"") == [(b"b", b"meta")]
    engine.meta_delete(b"b", durable=True)
    assert engine.meta_get(b"b") is None
    assert engine.get(0, b"b", b"") == b"data"
    engine.meta_put(b"\x00" * 9, b"looks like partition 0")
    assert engine.partitions() == [0] and engine.count(0) == 1


def test_meta_scan_by_prefix_in_name_order(engine: StorageEngine) -> None:
    names = [b"", b"hint/\xff", b"hint/a/2", b"hint/a/1", b"hint0", b"hin", b"hint/", b"\xff\xff", b"\xff"]
    names.append(b"x" * 900)
    for name in names:
        engine.meta_put(name, name[::-1])
    assert [n for n, _ in engine.meta_scan(b"hint/")] == [b"hint/", b"hint/a/1", b"hint/a/2", b"hint/\xff"]
    assert engine.meta_scan(b"hint/a/", start_after=b"hint/a/1") == [(b"hint/a/2", b"2/a/tnih")]
    assert [n for n, _ in engine.meta_scan(b"hint", limit=2)] == [b"hint/", b"hint/a/1"]
    assert [n for n, _ in engine.meta_scan(b"\xff")] == [b"\xff", b"\xff\xff"]
    assert [n for n, _ in engine.meta_scan(b"")] == sorted(names)
    assert engine.meta_get(b"x" * 900) == b"x" * 900
    assert engine.meta_scan(b"nothing") == [] and engine.meta_scan(b"", limit=0) == []


def test_write_batch_applies_in_order_and_across_spaces(engine: StorageEngine) -> None:
    engine.put(0, b"b", b"gone", b"old")
    engine.write_batch(
        [
            PutOp(0, b"b", b"k", b"1"),
            PutOp(0, b"b", b"k", b"2"),
            DeleteOp(0, b"b", b"gone"),
            PutOp(1, b"b", b"tmp", b"x"),
            DeleteOp(1, b"b", b"tmp"),
            MetaPutOp(b"hint/1", b"h"),
            MetaDeleteOp(b"absent"),
        ],
        durable=True,
    )
    assert engine.scan(0) == [(b"b", b"k", b"2")]
    assert engine.partitions() == [0]
    assert engine.meta_scan(b"") == [(b"hint/1", b"h")]
    engine.write_batch([], durable=True)
    engine.write_batch([], durable=False)


@pytest.mark.parametrize(
    "bad",
    [PutOp(0, b"b", b"k", "text"), DeleteOp(-1, b"b", b"k"), MetaPutOp(b"n", None), "not an op"],  # type: ignore[arg-type]
)
def test_failed_write_batch_applies_nothing(engine: StorageEngine, bad: Any) -> None:
    engine.put(0, b"b", b"kept", b"old")
    ops = [PutOp(0, b"b", b"new", b"1"), PutOp(0, b"b", b"kept", b"changed"), MetaPutOp(b"m", b"1"), bad]
    with pytest.raises((TypeError, ValueError)):
        engine.write_batch(ops, durable=True)
    assert engine.scan(0) == [(b"b", b"kept", b"old")]
    assert engine.meta_scan(b"") == []


def test_batches_are_seen_whole_by_concurrent_readers(engine: StorageEngine) -> None:
    # A writer thread keeps rewriting 20 keys to one generation per batch; a scan must never mix two.
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for generation in range(150):
                batch = [PutOp(0, b"b", b"%02d" % i, b"%d" % generation) for i in range(20)]
                engine.write_batch(batch, durable=False)
        except BaseException as e:
            errors.append(e)
        finally:
            stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    scans = 0
    while not stop.is_set() or scans == 0:
        values = {v for _, _, v in engine.scan(0)}
        assert len(values) <= 1, values
        scans += 1
    writer.join(timeout=30)
    assert not writer.is_alive() and errors == []
    assert engine.count(0) == 20


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda e: e.put(-1, b"b", b"k", b"v"), ValueError),
        (lambda e: e.put(PARTITION_MAX + 1, b"b", b"k", b"v"), ValueError),
        (lambda e: e.put(True, b"b", b"k", b"v"), TypeError),
        (lambda e: e.put(0, "b", b"k", b"v"), TypeError),
        (lambda e: e.put(0, b"b", bytearray(b"k"), b"v"), TypeError),
        (lambda e: e.get(0, b"b", None), TypeError),
        (lambda e: e.scan(0, limit=-1), ValueError),
        (lambda e: e.scan(0, start_after=(b"b",)), TypeError),
        (lambda e: e.meta_put("n", b"v"), TypeError),
        (lambda e: e.meta_scan(None), TypeError),
    ],
)
def test_bad_arguments_are_refused_and_store_nothing(
    engine: StorageEngine, call: Callable[[Any], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(engine)
    assert engine.partitions() == [] and engine.meta_scan(b"") == []


def test_use_after_close_raises_and_close_is_idempotent(engine: StorageEngine) -> None:
    engine.put(0, b"b", b"k", b"v")
    engine.close()
    engine.close()
    calls = [
        lambda: engine.get(0, b"b", b"k"),
        lambda: engine.put(0, b"b", b"k", b"v"),
        lambda: engine.delete(0, b"b", b"k"),
        lambda: engine.write_batch([PutOp(0, b"b", b"k", b"v")], durable=True),
        lambda: engine.write_batch([], durable=False),
        lambda: engine.scan(0),
        engine.partitions,
        lambda: engine.count(0),
        lambda: engine.meta_get(b"n"),
        lambda: engine.meta_put(b"n", b"v"),
        lambda: engine.meta_delete(b"n"),
        lambda: engine.meta_scan(b""),
        engine.flush,
    ]
    for call in calls:
        with pytest.raises(StorageClosed, match="closed"):
            call()
    assert issubclass(StorageClosed, StorageError)


def test_reopen_keeps_buffered_durable_and_meta_writes(reopen: Opener) -> None:
    store = reopen()
    assert store.durable
    store.put(0, b"b", b"buffered", b"1")
    store.put(7, b"b", b"durable", b"2", durable=True)
    store.write_batch([PutOp(7, b"\x00", b"\xff", b"3"), MetaPutOp(b"node/id", b"n1")], durable=False)
    store.put(0, b"b", b"deleted", b"x")
    store.delete(0, b"b", b"deleted")
    store.put(3, b"big", b"v", b"\x00" * MIB)
    store.flush()
    store.meta_put(b"after-flush", b"4")
    store.close()
    again = reopen()
    assert again.scan(0) == [(b"b", b"buffered", b"1")]
    assert again.scan(7) == [(b"\x00", b"\xff", b"3"), (b"b", b"durable", b"2")]
    assert again.get(3, b"big", b"v") == b"\x00" * MIB
    assert again.partitions() == [0, 3, 7]
    assert again.meta_scan(b"") == [(b"after-flush", b"4"), (b"node/id", b"n1")]


def test_a_second_open_of_the_same_directory_is_refused(reopen: Opener) -> None:
    first = reopen()
    with pytest.raises(StorageError, match="in use"):
        reopen()
    first.put(0, b"b", b"k", b"v")
    first.close()
    assert reopen().get(0, b"b", b"k") == b"v"


def test_engines_serve_many_threads(engine: StorageEngine) -> None:
    def work(n: int) -> None:
        for i in range(100):
            engine.put(n, b"b", b"%d" % i, b"v", durable=i % 50 == 0)
            assert engine.get(n, b"b", b"%d" % i) == b"v"

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert [engine.count(n) for n in range(4)] == [100] * 4
