"""Hypothesis: any sequence of operations leaves every engine equal to a dict model, across reopens."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.protocol.ports import DeleteOp, MetaDeleteOp, MetaPutOp, PutOp, StorageEngine, WriteOp
from dynakv.storage.registry import DISK_ENGINES, ENGINES, open_engine

# Few distinct values so that operations collide on the same keys; the awkward bytes stay in.
SMALL_BYTES = st.sampled_from([b"", b"\x00", b"\x00\xff", b"\xff", b"a", b"a\x00", b"ab"])
LONG_BYTES = st.sampled_from([b"L" * 600, b"L" * 600 + b"\x00", b"L" * 700])  # lmdb collection records
BYTES = st.one_of(SMALL_BYTES, SMALL_BYTES, LONG_BYTES)
PARTITIONS = st.integers(min_value=0, max_value=3)

DATA_OP = st.builds(PutOp, PARTITIONS, BYTES, BYTES, BYTES) | st.builds(DeleteOp, PARTITIONS, BYTES, BYTES)
META_OP = st.builds(MetaPutOp, BYTES, BYTES) | st.builds(MetaDeleteOp, BYTES)
WRITE_OP = DATA_OP | META_OP


@dataclass(frozen=True)
class Batch:
    ops: list[WriteOp]
    durable: bool


@dataclass(frozen=True)
class Reopen:
    pass


@dataclass(frozen=True)
class Flush:
    pass


STEP = st.one_of(
    WRITE_OP,
    WRITE_OP,
    st.builds(Batch, st.lists(WRITE_OP, max_size=6), st.booleans()),
    st.just(Reopen()),
    st.just(Flush()),
)


class Model:
    def __init__(self) -> None:
        self.data: dict[tuple[int, bytes, bytes], bytes] = {}
        self.meta: dict[bytes, bytes] = {}

    def apply(self, op: WriteOp) -> None:
        if isinstance(op, PutOp):
            self.data[(op.partition, op.bucket, op.key)] = op.value
        elif isinstance(op, DeleteOp):
            self.data.pop((op.partition, op.bucket, op.key), None)
        elif isinstance(op, MetaPutOp):
            self.meta[op.name] = op.value
        else:
            self.meta.pop(op.name, None)


def apply_single(store: StorageEngine, op: WriteOp, durable: bool) -> None:
    """Single ops go through the one-op methods, so those are covered as well as write_batch."""
    if isinstance(op, PutOp):
        store.put(op.partition, op.bucket, op.key, op.value, durable=durable)
    elif isinstance(op, DeleteOp):
        store.delete(op.partition, op.bucket, op.key, durable=durable)
    elif isinstance(op, MetaPutOp):
        store.meta_put(op.name, op.value, durable=durable)
    else:
        store.meta_delete(op.name, durable=durable)


def assert_equal(store: StorageEngine, model: Model) -> None:
    partitions = sorted({p for p, _, _ in model.data})
    assert store.partitions() == partitions
    for partition in range(4):
        expected = sorted((b, k, v) for (p, b, k), v in model.data.items() if p == partition)
        assert store.scan(partition) == expected
        assert store.count(partition) == len(expected)
    assert store.meta_scan(b"") == sorted(model.meta.items())
    for (partition, bucket, key), value in model.data.items():
        assert store.get(partition, bucket, key) == value
    for name, value in model.meta.items():
        assert store.meta_get(name) == value


def run(engine_name: str, steps: list[object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_engine(engine_name, tmp)
        model = Model()
        try:
            for i, step in enumerate(steps):
                if isinstance(step, Reopen):
                    if engine_name in DISK_ENGINES:
                        store.close()
                        store = open_engine(engine_name, tmp)
                elif isinstance(step, Flush):
                    store.flush()
                elif isinstance(step, Batch):
                    store.write_batch(step.ops, durable=step.durable)
                    for op in step.ops:
                        model.apply(op)
                else:
                    assert isinstance(step, PutOp | DeleteOp | MetaPutOp | MetaDeleteOp)
                    apply_single(store, step, durable=i % 3 == 0)
                    model.apply(step)
            assert_equal(store, model)
            if engine_name in DISK_ENGINES:
                store.close()
                store = open_engine(engine_name, tmp)
                assert_equal(store, model)
        finally:
            store.close()


@pytest.mark.parametrize("engine_name", ENGINES)
@given(steps=st.lists(STEP, max_size=40))
def test_engine_equals_dict_model(engine_name: str, steps: list[object]) -> None:
    run(engine_name, steps)
