"""Laws of the Merkle tree: the walk finds exactly the differing keys, and incremental == from scratch."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from dynakv.core import codec
from dynakv.core.errors import DecodeError
from dynakv.core.merkle import (
    MerkleTree,
    decode_level,
    decode_tree,
    diff_segments,
    encode_tree,
    key_differences,
)

# Small trees make keys share segments and interior nodes; the default shape is the one deployed.
shapes = st.sampled_from([(1, 2), (8, 32), (16, 4), (64, 4), (1024, 32)])
# Short keys and few values make both sides share many keys, often with equal hashes.
keys = st.binary(max_size=2)
object_hashes = st.sampled_from([b"h1", b"h2", b"h3"])
listings = st.dictionaries(keys, object_hashes, max_size=40)


def in_segment(items: dict[bytes, bytes], tree: MerkleTree, segment: int) -> dict[bytes, bytes]:
    return {k: v for k, v in items.items() if tree.segment_of(k) == segment}


@given(shapes, listings, listings)
def test_walk_then_listing_diff_finds_exactly_the_differing_keys(
    shape: tuple[int, int], a: dict[bytes, bytes], b: dict[bytes, bytes]
) -> None:
    segments, branching = shape
    ta = MerkleTree.from_items(a, segments=segments, branching=branching)
    tb = MerkleTree.from_items(b, segments=segments, branching=branching)
    result = diff_segments(ta, tb)
    found: list[bytes] = []
    for seg in result.segments:
        found.extend(key_differences(in_segment(a, ta, seg), in_segment(b, tb, seg)))
    expected = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert sorted(found) == sorted(expected)
    assert set(result.segments) == {ta.segment_of(k) for k in expected}
    assert list(result.segments) == sorted(result.segments)
    assert diff_segments(tb, ta).segments == result.segments
    # The walk never compares more hashes than the whole tree holds.
    assert result.hashes_compared <= sum(len(ta.level(d)) for d in range(ta.depth + 1))


@given(shapes, listings)
def test_equal_listings_give_equal_roots_and_no_diff(shape: tuple[int, int], a: dict[bytes, bytes]) -> None:
    segments, branching = shape
    ta = MerkleTree.from_items(a, segments=segments, branching=branching)
    tb = MerkleTree.from_items(list(reversed(list(a.items()))), segments=segments, branching=branching)
    assert ta.root() == tb.root()
    result = diff_segments(ta, tb)
    assert result.segments == ()
    assert result.hashes_compared == 1


# One step of a write history: (key, new object hash or None for a delete, read the root afterwards?)
steps = st.lists(st.tuples(keys, st.none() | object_hashes, st.booleans()), max_size=60)


@given(shapes, listings, steps)
def test_incremental_updates_equal_a_rebuild_from_scratch(
    shape: tuple[int, int], initial: dict[bytes, bytes], history: list[tuple[bytes, bytes | None, bool]]
) -> None:
    segments, branching = shape
    tree = MerkleTree.from_items(initial, segments=segments, branching=branching)
    model = dict(initial)
    for key, new_hash, read in history:
        tree.update(key, model.get(key), new_hash)
        if new_hash is None:
            model.pop(key, None)
        else:
            model[key] = new_hash
        if read:  # interleave reads so that partial recomputation is exercised, not only the final one
            tree.root()
    rebuilt = MerkleTree.from_items(model, segments=segments, branching=branching)
    assert tree.root() == rebuilt.root()
    for depth in range(rebuilt.depth + 1):
        assert tree.level(depth) == rebuilt.level(depth)


@given(shapes, listings)
def test_tree_codec_round_trip(shape: tuple[int, int], a: dict[bytes, bytes]) -> None:
    segments, branching = shape
    tree = MerkleTree.from_items(a, segments=segments, branching=branching)
    copy = decode_tree(encode_tree(tree))
    assert copy == tree
    assert copy.root() == tree.root()


@given(st.binary(max_size=80))
def test_random_bytes_give_decode_error_only(data: bytes) -> None:
    for decoder in (decode_level, decode_tree):
        with contextlib.suppress(DecodeError):
            decoder(data)


payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70) | st.binary(max_size=33) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


@given(payloads)
def test_well_framed_payloads_of_any_shape_give_a_tree_or_decode_error(payload: object) -> None:
    for tag, decoder in (("merkle.level", decode_level), ("merkle.tree", decode_tree)):
        with contextlib.suppress(DecodeError):
            decoder(codec.encode(tag, payload))
