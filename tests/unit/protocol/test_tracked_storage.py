"""The storage wrapper reports every data change with the bytes before and after, and its read memory
never hands a write a stale "before"."""

from __future__ import annotations

import pytest

from dynakv.protocol import replica
from dynakv.protocol.ports import DeleteOp, MetaDeleteOp, MetaPutOp, PutOp, StorageError
from dynakv.protocol.tracked_storage import TrackedStorage
from dynakv.storage.memory import MemoryEngine

Change = tuple[int, bytes, bytes, bytes | None, bytes | None]


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def __call__(self, p: int, b: bytes, k: bytes, old: bytes | None, new: bytes | None) -> None:
        self.changes.append((p, b, k, old, new))


class CountingEngine(MemoryEngine):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, partition: int, bucket: bytes, key: bytes) -> bytes | None:
        self.gets += 1
        return super().get(partition, bucket, key)


def tracked() -> tuple[TrackedStorage, CountingEngine, Recorder]:
    engine, recorder = CountingEngine(), Recorder()
    return TrackedStorage(engine, recorder), engine, recorder


def test_put_and_delete_report_before_and_after() -> None:
    storage, _, rec = tracked()
    storage.put(1, b"b", b"k", b"v1")
    storage.put(1, b"b", b"k", b"v2")
    storage.delete(1, b"b", b"k")
    storage.delete(1, b"b", b"k")  # absent: nothing changed, nothing reported
    assert rec.changes == [
        (1, b"b", b"k", None, b"v1"),
        (1, b"b", b"k", b"v1", b"v2"),
        (1, b"b", b"k", b"v2", None),
    ]


def test_a_write_after_a_read_takes_its_before_from_the_read() -> None:
    storage, engine, rec = tracked()
    engine.put(0, b"b", b"k", b"old")
    assert storage.get(0, b"b", b"k") == b"old"
    gets = engine.gets
    storage.put(0, b"b", b"k", b"new")
    assert engine.gets == gets  # no second read
    assert storage.extra_reads == 0
    assert rec.changes == [(0, b"b", b"k", b"old", b"new")]


def test_the_memory_is_forgotten_by_each_write_so_two_writes_after_one_read_stay_right() -> None:
    storage, _, rec = tracked()
    storage.get(0, b"b", b"k")  # None remembered
    storage.put(0, b"b", b"k", b"a")
    storage.put(0, b"b", b"k", b"b")  # must not reuse the remembered None
    assert rec.changes[-1] == (0, b"b", b"k", b"a", b"b")


def test_a_write_by_another_path_between_read_and_write_is_seen() -> None:
    storage, _, rec = tracked()
    storage.put(0, b"b", b"k", b"v1")
    storage.get(0, b"b", b"k")
    storage.write_batch([PutOp(0, b"b", b"k", b"v2")], durable=False)  # between the read and the put
    storage.put(0, b"b", b"k", b"v3")
    assert rec.changes[-2:] == [(0, b"b", b"k", b"v1", b"v2"), (0, b"b", b"k", b"v2", b"v3")]


def test_end_turn_forgets_reads_so_a_change_behind_the_nodes_back_is_not_masked() -> None:
    storage, engine, rec = tracked()
    storage.put(0, b"b", b"k", b"v1")
    storage.get(0, b"b", b"k")
    storage.end_turn()
    engine.put(0, b"b", b"k", b"behind")  # an operator, between two events
    storage.put(0, b"b", b"k", b"v2")
    assert rec.changes[-1] == (0, b"b", b"k", b"behind", b"v2")


def test_batches_report_each_data_key_once_from_before_to_final_and_skip_meta() -> None:
    storage, _, rec = tracked()
    storage.put(0, b"b", b"x", b"x0")
    rec.changes.clear()
    storage.write_batch(
        [
            PutOp(0, b"b", b"x", b"x1"),
            MetaPutOp(b"hint/1", b"h"),
            PutOp(0, b"b", b"y", b"y1"),
            PutOp(0, b"b", b"x", b"x2"),
            DeleteOp(0, b"b", b"z"),  # absent before and after
            MetaDeleteOp(b"hint/0"),
        ],
        durable=True,
    )
    assert sorted(rec.changes) == [(0, b"b", b"x", b"x0", b"x2"), (0, b"b", b"y", None, b"y1")]
    assert storage.meta_get(b"hint/1") == b"h"


def test_a_failed_write_reports_nothing_and_forgets_the_read() -> None:
    storage, engine, rec = tracked()
    storage.get(0, b"b", b"k")

    def broken(*args: object, **kw: object) -> None:
        raise StorageError("put", detail="disk full")

    engine.put = broken  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        storage.put(0, b"b", b"k", b"v")
    assert rec.changes == []
    assert (0, b"b", b"k") not in storage._read


def test_replica_merge_through_the_wrapper_reads_once_and_reports() -> None:
    from dynakv.core.objects import Content, encode_object
    from dynakv.protocol.replica import EMPTY

    storage, engine, rec = tracked()
    obj = EMPTY.update(EMPTY.context(), "a", Content(b"v", last_modified_ms=1), 1)
    replica.merge_local(storage, 3, b"b", b"k", encode_object(obj), durable=False)
    assert engine.gets == 1 and storage.extra_reads == 0
    assert rec.changes == [(3, b"b", b"k", None, encode_object(obj))]
