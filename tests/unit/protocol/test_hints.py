"""Hint storage: names, atomic store with the object, restarts, bounds (count, bytes, age), and acks that
delete a hint only while it is still the one that was sent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dynakv.core import codec
from dynakv.core.config import Limits, Timing
from dynakv.core.errors import DecodeError
from dynakv.core.objects import Content, StoredObject, decode_object, encode_object
from dynakv.protocol.hints import (
    HINT_PREFIX,
    Dropped,
    HintLog,
    HintWrite,
    hint_name,
    parse_hint,
    parse_hint_name,
    store_hinted,
    target_prefix,
)
from dynakv.protocol.ports import StorageEngine, StorageError
from dynakv.protocol.replica import EMPTY
from dynakv.storage.faulty import FaultyEngine
from dynakv.storage.memory import MemoryEngine
from dynakv.storage.sqlite import SqliteEngine

DAY_MS = 24 * 3600 * 1000


def version(value: bytes, base: StoredObject = EMPTY, actor: str = "b") -> StoredObject:
    return base.update(base.context(), actor, Content(value, last_modified_ms=1), 1)


def hint_log(
    storage: StorageEngine, counters: Counter[str] | None = None, primary: bool = False, **limits: int
) -> HintLog:
    return HintLog(
        storage,
        Limits(**limits),
        Timing(hint_age_max_ms=DAY_MS),
        counters if counters is not None else Counter(),
        lambda partition, bucket: primary,
    )


def store(
    hints: HintLog, target: str, key: bytes, value: bytes = b"v", *, now_ms: int = 0, durable: bool = True
) -> Dropped | None:
    data = encode_object(version(value))
    return store_hinted(hints, target, 3, b"bucket", key, incoming=data, now_ms=now_ms, durable=durable)


# -- names -------------------------------------------------------------------------------------------


def test_names_round_trip_and_sort_by_target_then_partition() -> None:
    name = hint_name("a", 5, b"b/\x00", b"k\xff")
    assert parse_hint_name(name) == ("a", 5, b"b/\x00", b"k\xff")
    assert hint_name("a", 1, b"z", b"z") < hint_name("a", 2, b"a", b"a") < hint_name("a", 256, b"", b"")
    # One target's prefix never selects another target's hints, whatever the names.
    assert not hint_name("a/b", 0, b"", b"").startswith(target_prefix("a"))
    assert not hint_name("ab", 0, b"", b"").startswith(target_prefix("a"))
    # A bucket and key split differently give different names.
    assert hint_name("a", 0, b"ab", b"c") != hint_name("a", 0, b"a", b"bc")


@pytest.mark.parametrize(
    "name", [b"", b"hint/", b"hint/\x00\x05ab", b"other", hint_name("a", 0, b"bb", b"")[:-1]]
)
def test_malformed_names_are_decode_errors(name: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_hint_name(name)


# -- storing with the object -------------------------------------------------------------------------


def test_a_hinted_write_stores_the_object_and_the_hint_together() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    assert store(hints, "A", b"k", b"v1") is None
    assert decode_object(storage.get(3, b"bucket", b"k") or b"").values()[0].value == b"v1"
    assert hints.pending("A") == 1 and hints.targets() == ["A"] and hints.partitions("A") == [3]
    [hint] = hints.page("A", None, 10)
    assert (hint.partition, hint.bucket, hint.key) == (3, b"bucket", b"k")
    assert hint.size == len(storage.get(3, b"bucket", b"k") or b"") == hints.pending_bytes("A")


def test_a_failed_write_leaves_neither_object_nor_hint() -> None:
    faulty = FaultyEngine(MemoryEngine())
    hints = hint_log(faulty)
    faulty.fail_next("write_batch")
    with pytest.raises(StorageError):
        store(hints, "A", b"k")
    assert faulty.get(3, b"bucket", b"k") is None
    assert faulty.meta_scan(HINT_PREFIX) == [] and hints.pending("A") == 0


def test_writing_a_hinted_key_again_updates_its_one_hint() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    store(hints, "A", b"k", b"v1", now_ms=10)
    first = hints.page("A", None, 10)[0]
    obj = decode_object(storage.get(3, b"bucket", b"k") or b"")
    store_hinted(
        hints,
        "A",
        3,
        b"bucket",
        b"k",
        incoming=encode_object(version(b"v2-longer", obj)),
        now_ms=20,
        durable=True,
    )
    [second] = hints.page("A", None, 10)
    assert hints.pending("A") == 1
    assert second.created_ms == 10  # the age of the oldest write not yet handed off
    assert second.revision > first.revision and second.size > first.size == hints.pending_bytes("A") - (
        second.size - first.size
    )


# -- restarts ------------------------------------------------------------------------------------------


def test_durable_hints_survive_a_crash_and_buffered_ones_vanish_with_their_object() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    store(hints, "A", b"durable", durable=True)
    store(hints, "C", b"durable2", durable=True)
    # Last: a durable write makes every earlier write durable too.
    store(hints, "A", b"buffered", durable=False)
    storage.crash()
    again = hint_log(storage)
    assert again.targets() == ["A", "C"]
    assert again.pending("A") == 1 and again.pending_total() == 2
    assert [h.key for h in again.page("A", None, 10)] == [b"durable"]
    assert storage.get(3, b"bucket", b"buffered") is None  # the write and its hint go together


def test_hints_survive_a_restart_on_sqlite(tmp_path: Path) -> None:
    storage = SqliteEngine(str(tmp_path / "node"))
    hints = hint_log(storage)
    for key in (b"k1", b"k2", b"k3"):
        store(hints, "A", key)
    size = hints.pending_bytes("A")
    storage.close()
    reopened = SqliteEngine(str(tmp_path / "node"))
    counters: Counter[str] = Counter()
    again = hint_log(reopened, counters)
    assert again.pending("A") == 3 and again.pending_bytes("A") == size and counters["hints.pending"] == 3
    reopened.close()


def test_revisions_restart_above_the_stored_ones() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    store(hints, "A", b"k1")
    store(hints, "A", b"k2")
    highest = max(h.revision for h in hints.page("A", None, 10))
    again = hint_log(storage)
    store(again, "A", b"k3")
    assert {h.key: h.revision for h in again.page("A", None, 10)}[b"k3"] > highest


def test_corrupt_hints_are_counted_and_removed_at_startup() -> None:
    storage = MemoryEngine()
    storage.meta_put(hint_name("A", 1, b"b", b"k"), b"not a hint")
    storage.meta_put(HINT_PREFIX + b"garbage", codec.encode("hint", [1, 2, 3]))
    counters: Counter[str] = Counter()
    hints = hint_log(storage, counters)
    assert counters["hints.corrupt"] == 2 and hints.pending_total() == 0
    assert storage.meta_scan(HINT_PREFIX) == []


# -- bounds --------------------------------------------------------------------------------------------


def test_the_count_bound_drops_new_hints_but_keeps_the_object() -> None:
    storage = MemoryEngine()
    counters: Counter[str] = Counter()
    hints = hint_log(storage, counters, hints_per_target_max=2)
    assert store(hints, "A", b"k1") is None and store(hints, "A", b"k2") is None
    dropped = store(hints, "A", b"k3")
    assert isinstance(dropped, Dropped) and dropped.bound == "count" and dropped.pending == 2
    assert "A" in dropped.message() and "count" in dropped.message()
    assert counters["hints.dropped"] == 1 and counters["hints.dropped.count"] == 1
    assert hints.pending("A") == 2
    assert storage.get(3, b"bucket", b"k3") is not None  # stored as any replica: anti-entropy covers A
    assert store(hints, "C", b"k3") is None  # the bound is per target
    assert store(hints, "A", b"k1", b"again") is None  # an update adds no hint: accepted at the bound


def test_the_bytes_bound_drops_new_hints() -> None:
    storage = MemoryEngine()
    counters: Counter[str] = Counter()
    size = len(encode_object(version(b"x" * 100)))
    hints = hint_log(storage, counters, hint_bytes_per_target_max=2 * size)
    assert store(hints, "A", b"k1", b"x" * 100) is None
    assert store(hints, "A", b"k2", b"x" * 100) is None
    dropped = store(hints, "A", b"k3", b"x" * 100)
    assert isinstance(dropped, Dropped) and dropped.bound == "bytes" and dropped.pending_bytes == 2 * size
    assert counters["hints.dropped.bytes"] == 1 and hints.pending("A") == 2


def test_old_hints_expire_and_are_counted_but_their_objects_stay() -> None:
    storage = MemoryEngine()
    counters: Counter[str] = Counter()
    hints = hint_log(storage, counters)
    store(hints, "A", b"old", now_ms=0)
    store(hints, "A", b"young", now_ms=DAY_MS // 2)
    store(hints, "C", b"young", now_ms=DAY_MS // 2)
    assert hints.expire(DAY_MS - 1) == []
    assert hints.expire(DAY_MS) == [("A", 1)]
    assert [h.key for h in hints.page("A", None, 10)] == [b"young"]
    assert (
        counters["hints.expired"] == 1 and counters["hints.dropped"] == 1 and counters["hints.pending"] == 2
    )
    assert storage.get(3, b"bucket", b"old") is not None  # maybe the only copy of an acked write
    assert hints.expire(DAY_MS + DAY_MS // 2) == [("A", 1), ("C", 1)]
    assert hints.pending_total() == 0 and hints.targets() == []


# -- acks ------------------------------------------------------------------------------------------------


def marks(hints: HintLog, target: str) -> list[tuple[bytes, bytes]]:
    return [(h.name, h.value) for h in hints.page(target, None, 100)]


def apply(storage: StorageEngine, hints: HintLog, write: HintWrite) -> None:
    storage.write_batch(write.ops, durable=True)
    hints.applied(write)


def test_an_ack_deletes_the_hint_and_the_fallback_copy() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    store(hints, "A", b"k")
    apply(storage, hints, hints.ack_ops("A", marks(hints, "A")))
    assert hints.pending_total() == 0 and storage.meta_scan(HINT_PREFIX) == []
    assert storage.get(3, b"bucket", b"k") is None


def test_a_primary_keeps_its_copy_after_the_ack() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage, primary=True)
    store(hints, "A", b"k")
    apply(storage, hints, hints.ack_ops("A", marks(hints, "A")))
    assert hints.pending_total() == 0 and storage.get(3, b"bucket", b"k") is not None


def test_a_copy_another_target_still_needs_stays() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    store(hints, "A", b"k")
    store(hints, "C", b"k")
    apply(storage, hints, hints.ack_ops("A", marks(hints, "A")))
    assert storage.get(3, b"bucket", b"k") is not None and hints.pending("C") == 1
    apply(storage, hints, hints.ack_ops("C", marks(hints, "C")))
    assert storage.get(3, b"bucket", b"k") is None


def test_an_ack_of_an_older_version_keeps_the_hint() -> None:
    storage = MemoryEngine()
    counters: Counter[str] = Counter()
    hints = hint_log(storage, counters)
    store(hints, "A", b"k", b"v1")
    sent = marks(hints, "A")
    store(hints, "A", b"k", b"v2")  # written again while the batch with v1 is in flight
    write = hints.ack_ops("A", sent)
    assert write.ops == () and counters["hints.ack_stale"] == 1
    apply(storage, hints, write)
    assert hints.pending("A") == 1 and storage.get(3, b"bucket", b"k") is not None


def test_page_limits_and_resumes_after_a_name() -> None:
    storage = MemoryEngine()
    hints = hint_log(storage)
    for key in (b"a", b"b", b"c"):
        store(hints, "A", key)
    first = hints.page("A", None, 2)
    rest = hints.page("A", first[-1].name, 2)
    assert [h.key for h in first + rest] == [b"a", b"b", b"c"]
    assert parse_hint(first[0].name, first[0].value) == first[0]
    assert hints.page("A", None, 10, partition=4) == []
