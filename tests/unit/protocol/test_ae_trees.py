"""The anti-entropy trees: kept current on write, built in the background without losing the writes
made meanwhile, rebuilt periodically, and equal to a tree built from scratch from storage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynakv.core.objects import decode_object, encode_object, object_hash
from dynakv.protocol.ae_trees import TreeStore, leaf_hash, tree_from_storage, tree_key
from dynakv.storage.memory import MemoryEngine

from .ae_harness import blob, obj

P = 5
SEGMENTS, BRANCHING = 64, 8


def write(
    storage: MemoryEngine, trees: TreeStore, key: bytes, value: bytes | None, bucket: bytes = b"b"
) -> None:
    old = storage.get(P, bucket, key)
    if value is None:
        storage.delete(P, bucket, key)
    else:
        storage.put(P, bucket, key, value)
    trees.on_write(P, bucket, key, old, value)


def scratch(storage: MemoryEngine) -> object:
    return tree_from_storage(storage, P, SEGMENTS, BRANCHING)


def test_tree_keys_keep_bucket_and_key_apart() -> None:
    assert tree_key(b"ab", b"c") != tree_key(b"a", b"bc")
    assert tree_key(b"", b"abc") != tree_key(b"abc", b"")


def test_the_leaf_is_the_objects_hash_and_encoding_is_canonical() -> None:
    # The tree hashes stored bytes, which is sound because one object has one encoding: decoding and
    # re-encoding gives the same bytes, so the leaf equals object_hash of the decoded object.
    canonical = encode_object(obj("w", b"v"))
    assert encode_object(decode_object(canonical)) == canonical
    assert leaf_hash(canonical) == object_hash(decode_object(canonical))
    assert leaf_hash(canonical) != leaf_hash(blob("w", b"other"))
    # A corrupt value still gets a (different) leaf, so the tree stays consistent with storage.
    assert len(leaf_hash(b"\x00garbage")) == 16


def test_writes_during_a_background_build_end_up_in_the_tree() -> None:
    storage = MemoryEngine()
    for i in range(100):
        storage.put(P, b"b", b"k%03d" % i, blob("w", b"%d" % i))
    trees = TreeStore(storage, segments=SEGMENTS, branching=BRANCHING)
    trees.track(P)
    assert trees.step(30) == 30
    assert trees.tree(P) is None and trees.building() == [P]
    write(storage, trees, b"k005", blob("w", b"changed, scanned"))  # behind the cursor
    write(storage, trees, b"k090", blob("w", b"changed, not reached"))  # ahead of it
    write(storage, trees, b"k010", None)  # deleted behind the cursor
    write(storage, trees, b"k095", None)  # deleted ahead of it
    write(storage, trees, b"k000a", blob("w", b"new, behind"))
    write(storage, trees, b"k500", blob("w", b"new, ahead"))
    while trees.building():
        trees.step(7)
    assert trees.tree(P) == scratch(storage)


def test_a_write_to_an_untracked_partition_starts_its_tree() -> None:
    storage = MemoryEngine()
    trees = TreeStore(storage, segments=SEGMENTS, branching=BRANCHING)
    write(storage, trees, b"k", blob("w", b"v"))
    assert trees.building() == [P]
    trees.step(10)
    assert trees.tree(P) == scratch(storage)


def test_a_periodic_rebuild_catches_a_change_made_behind_the_trees_back_and_serves_meanwhile() -> None:
    storage = MemoryEngine()
    trees = TreeStore(storage, segments=SEGMENTS, branching=BRANCHING, rebuild_after_ms=1_000)
    trees.track(P)
    for i in range(50):
        write(storage, trees, b"k%03d" % i, blob("w", b"%d" % i))
    trees.step(1_000, now_ms=0)
    storage.put(P, b"b", b"k007", blob("x", b"behind the back"))  # no on_write
    stale = trees.tree(P)
    assert stale != scratch(storage)
    trees.step(10, now_ms=1_000)  # the rebuild starts; the old tree keeps serving
    assert trees.tree(P) is stale and trees.building() == [P]
    write(storage, trees, b"k001", blob("w", b"during the rebuild"))
    while trees.building():
        trees.step(10, now_ms=1_100)
    assert trees.tree(P) == scratch(storage)


ops = st.lists(
    st.tuples(
        st.sampled_from([b"", b"b", b"bb"]),
        st.binary(max_size=3),
        st.one_of(st.none(), st.binary(max_size=4)),
        st.integers(min_value=0, max_value=3),  # build steps taken before this write
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(initial=st.lists(st.binary(max_size=3), max_size=30, unique=True), writes=ops)
def test_a_tree_kept_on_write_equals_one_built_from_scratch(
    initial: list[bytes], writes: list[tuple[bytes, bytes, bytes | None, int]]
) -> None:
    storage = MemoryEngine()
    for key in initial:
        storage.put(P, b"b", key, blob("w", key))
    trees = TreeStore(storage, segments=SEGMENTS, branching=BRANCHING)
    trees.track(P)
    for bucket, key, value, steps in writes:
        for _ in range(steps):
            trees.step(3)
        write(storage, trees, key, None if value is None else blob("w", value), bucket)
    while trees.building():
        trees.step(3)
    assert trees.tree(P) == scratch(storage)
