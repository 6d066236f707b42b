"""The fault-injecting wrapper fails exactly the calls it is told to, before or after the real call."""

from __future__ import annotations

import random

import pytest

from dynakv.protocol.ports import PutOp, StorageError
from dynakv.storage.faulty import FaultyEngine
from dynakv.storage.memory import MemoryEngine


def test_a_planned_failure_before_the_call_changes_nothing() -> None:
    store = FaultyEngine(MemoryEngine())
    store.fail_next("put", count=2)
    for key in (b"a", b"b"):
        with pytest.raises(StorageError) as caught:
            store.put(0, b"b", key, b"v")
        assert isinstance(caught.value.cause, OSError)
    store.put(0, b"b", b"c", b"v")
    assert store.scan(0) == [(b"b", b"c", b"v")]
    assert store.injected == 2


def test_a_failure_after_the_call_leaves_the_write_applied() -> None:
    store = FaultyEngine(MemoryEngine())
    store.fail_next("write_batch", applied=True, cause=OSError("fsync failed"))
    with pytest.raises(StorageError, match="fsync failed"):
        store.write_batch([PutOp(0, b"b", b"k", b"v")], durable=True)
    assert store.get(0, b"b", b"k") == b"v"


def test_wildcard_failures_hit_any_call_and_unknown_names_are_refused() -> None:
    store = FaultyEngine(MemoryEngine())
    store.fail_next("*")
    with pytest.raises(StorageError):
        store.meta_scan(b"")
    assert store.meta_scan(b"") == []
    with pytest.raises(ValueError, match="unknown"):
        store.fail_next("gett")


def test_random_failures_repeat_with_the_seed() -> None:
    def outcomes(seed: int) -> list[bool]:
        rng = random.Random(seed)
        store = FaultyEngine(MemoryEngine(), rng=rng, write_error_rate=0.3, read_error_rate=0.1)
        results = []
        for i in range(200):
            try:
                store.put(0, b"b", b"%d" % i, b"v")
                store.get(0, b"b", b"%d" % i)
                results.append(True)
            except StorageError:
                results.append(False)
        return results

    first = outcomes(5)
    assert first == outcomes(5)
    assert 40 < first.count(False) < 120
    with pytest.raises(ValueError, match="rng"):
        FaultyEngine(MemoryEngine(), write_error_rate=0.5)
