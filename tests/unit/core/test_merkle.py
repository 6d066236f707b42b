"""Worked examples for the anti-entropy Merkle tree: shape, hashes as documented, walk cost, codec."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from dynakv.core import codec, merkle
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.core.merkle import (
    EMPTY_SEGMENT,
    MerkleTree,
    TreeShapeMismatch,
    decode_level,
    decode_tree,
    diff_segments,
    differing_children,
    encode_level,
    encode_tree,
    key_differences,
    level_sizes,
)


def expected_segment(key: bytes, segments: int) -> int:
    digest = hashlib.blake2b(key, digest_size=8, person=b"dynakv.mk.seg").digest()
    return int.from_bytes(digest, "big") % segments


def expected_leaf(key: bytes, object_hash: bytes) -> bytes:
    data = len(key).to_bytes(4, "big") + key + object_hash
    return hashlib.blake2b(data, digest_size=32, person=b"dynakv.mk.leaf").digest()


def expected_node(children: Sequence[bytes]) -> bytes:
    return hashlib.blake2b(b"".join(children), digest_size=32, person=b"dynakv.mk.node").digest()


def listing(n: int, version: bytes = b"v1") -> dict[bytes, bytes]:
    return {f"bucket/key-{i}".encode(): hashlib.sha256(version + str(i).encode()).digest() for i in range(n)}


@pytest.mark.parametrize(
    ("segments", "branching", "sizes"),
    [(1024, 32, [1, 32, 1024]), (64, 32, [1, 2, 64]), (16, 4, [1, 4, 16]), (8, 4, [1, 2, 8]), (1, 32, [1])],
)
def test_level_sizes_and_depth(segments: int, branching: int, sizes: list[int]) -> None:
    assert level_sizes(segments, branching) == sizes
    tree = MerkleTree(segments, branching)
    assert tree.depth == len(sizes) - 1
    assert [len(tree.level(d)) for d in range(tree.depth + 1)] == sizes


def test_default_shape_is_1024_segments_branching_32() -> None:
    tree = MerkleTree()
    assert tree.shape == (1024, 32)
    assert tree.depth == 2


@pytest.mark.parametrize(("segments", "branching"), [(0, 32), (3, 32), (1 << 17, 32), (16, 1), (16, 4096)])
def test_bad_shapes_are_refused(segments: int, branching: int) -> None:
    with pytest.raises(ConfigError):
        MerkleTree(segments, branching)


def test_empty_tree_hashes_as_documented() -> None:
    tree = MerkleTree(1024, 32)
    assert bytes(32) == EMPTY_SEGMENT
    assert tree.level(2) == [bytes(32)] * 1024
    inner = expected_node([bytes(32)] * 32)
    assert tree.level(1) == [inner] * 32
    assert tree.root() == expected_node([inner] * 32)


def test_one_key_changes_exactly_its_path() -> None:
    key, value = b"users/alice", b"\x01" * 32
    empty = MerkleTree(1024, 32)
    tree = MerkleTree(1024, 32)
    tree.update(key, None, value)
    seg = expected_segment(key, 1024)
    assert tree.segment_of(key) == seg
    assert tree.node(2, seg) == expected_leaf(key, value)
    changed = [i for i, (a, b) in enumerate(zip(tree.level(2), empty.level(2), strict=True)) if a != b]
    assert changed == [seg]
    changed_inner = [i for i, (a, b) in enumerate(zip(tree.level(1), empty.level(1), strict=True)) if a != b]
    assert changed_inner == [seg // 32]
    assert tree.node(1, seg // 32) == expected_node(tree.level(2)[(seg // 32) * 32 : (seg // 32 + 1) * 32])
    assert tree.root() == expected_node(tree.level(1))
    assert tree.root() != empty.root()


def test_segment_hash_is_the_sum_of_its_key_digests() -> None:
    # Two keys that share a segment of a small tree: the segment is the sum mod 2**256 of their digests.
    keys = [f"k{i}".encode() for i in range(200)]
    first = keys[0]
    second = next(k for k in keys[1:] if expected_segment(k, 8) == expected_segment(first, 8))
    tree = MerkleTree.from_items({first: b"a", second: b"b"}, segments=8, branching=4)
    total = sum(int.from_bytes(expected_leaf(k, v), "big") for k, v in ((first, b"a"), (second, b"b")))
    assert tree.node(tree.depth, expected_segment(first, 8)) == (total % 2**256).to_bytes(32, "big")


def test_write_order_does_not_matter() -> None:
    items = listing(50)
    forward, backward = MerkleTree(), MerkleTree()
    for k, v in items.items():
        forward.update(k, None, v)
    for k, v in reversed(list(items.items())):
        backward.update(k, None, v)
    assert forward.root() == backward.root() == MerkleTree.from_items(items).root()
    assert forward == backward


def test_removing_every_key_returns_to_the_empty_tree() -> None:
    items = listing(30)
    tree = MerkleTree.from_items(items, segments=16, branching=4)
    for k, v in items.items():
        tree.update(k, v, None)
    assert tree.level(tree.depth) == [EMPTY_SEGMENT] * 16
    assert tree.root() == MerkleTree(16, 4).root()


def test_replace_equals_a_tree_built_with_the_new_value() -> None:
    items = listing(20)
    tree = MerkleTree.from_items(items)
    key = b"bucket/key-7"
    tree.update(key, items[key], b"new")
    assert tree == MerkleTree.from_items({**items, key: b"new"})
    tree.update(key, b"new", b"new")  # no change at all
    assert tree == MerkleTree.from_items({**items, key: b"new"})


def test_a_write_recomputes_only_the_path_to_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    tree = MerkleTree.from_items(listing(500))
    tree.root()
    calls: list[int] = []
    real = merkle.node_digest

    def counting(children: Sequence[bytes]) -> bytes:
        calls.append(len(children))
        return real(children)

    monkeypatch.setattr(merkle, "node_digest", counting)
    tree.update(b"bucket/key-3", None, b"x")
    assert calls == []  # lazy: nothing until read
    tree.root()
    assert calls == [32, 32]  # one interior node per level above the segment, not 33
    calls.clear()
    tree.root()
    assert calls == []


def test_diff_of_equal_trees_compares_only_the_root() -> None:
    a, b = MerkleTree.from_items(listing(100)), MerkleTree.from_items(listing(100))
    result = diff_segments(a, b)
    assert result.segments == ()
    assert result.hashes_compared == 1
    assert result.hash_bytes == 32


def test_one_differing_key_costs_depth_times_branching_not_all_segments() -> None:
    items = listing(1000)
    key = b"bucket/key-421"
    a = MerkleTree.from_items(items)
    b = MerkleTree.from_items({**items, key: b"other"})
    result = diff_segments(a, b)
    assert result.segments == (expected_segment(key, 1024),)
    assert result.hashes_compared == 1 + 32 + 32
    assert result.hash_bytes < 1024 * 32 / 10


def test_differing_keys_found_through_segment_listings() -> None:
    a_items = listing(300)
    b_items = dict(a_items)
    b_items[b"bucket/key-5"] = b"changed"
    del b_items[b"bucket/key-17"]
    b_items[b"bucket/only-b"] = b"new"
    a, b = MerkleTree.from_items(a_items), MerkleTree.from_items(b_items)
    found: list[bytes] = []
    for seg in diff_segments(a, b).segments:
        mine = {k: v for k, v in a_items.items() if expected_segment(k, 1024) == seg}
        theirs = {k: v for k, v in b_items.items() if expected_segment(k, 1024) == seg}
        found.extend(key_differences(mine, theirs))
    assert sorted(found) == [b"bucket/key-17", b"bucket/key-5", b"bucket/only-b"]


def test_key_differences() -> None:
    local = {b"a": b"1", b"b": b"2", b"c": b"3"}
    remote = {b"b": b"2", b"c": b"4", b"d": b"5"}
    assert key_differences(local, remote) == [b"a", b"c", b"d"]
    assert key_differences(remote, local) == [b"a", b"c", b"d"]
    assert key_differences(local, dict(local)) == []


class WireRemote:
    """A remote served one message at a time through the level codec, as a peer would."""

    def __init__(self, tree: MerkleTree) -> None:
        self.tree = tree
        self.messages = 0

    def root(self) -> bytes:
        self.messages += 1
        return decode_level(encode_level([self.tree.root()]))[0]

    def children(self, depth: int, index: int) -> list[bytes]:
        self.messages += 1
        return decode_level(encode_level(self.tree.children(depth, index)))


def test_step_wise_walk_over_the_level_codec() -> None:
    items = listing(400)
    changed = {**items, b"bucket/key-1": b"x", b"bucket/key-2": b"y"}
    local, remote_tree = MerkleTree.from_items(items), MerkleTree.from_items(changed)
    remote = WireRemote(remote_tree)
    indexes = [0] if local.root() != remote.root() else []
    for depth in range(local.depth):
        indexes = differing_children(local, depth, indexes, [remote.children(depth, i) for i in indexes])
    expected = sorted({expected_segment(b"bucket/key-1", 1024), expected_segment(b"bucket/key-2", 1024)})
    assert indexes == expected
    assert tuple(indexes) == diff_segments(local, WireRemote(remote_tree)).segments


def test_shape_mismatch_is_reported() -> None:
    a = MerkleTree.from_items(listing(10), segments=64, branching=4)
    b = MerkleTree.from_items(listing(10, b"v2"), segments=64, branching=8)
    with pytest.raises(TreeShapeMismatch):
        diff_segments(a, b)
    with pytest.raises(TreeShapeMismatch):
        differing_children(a, 0, [0], [])
    with pytest.raises(TreeShapeMismatch):
        differing_children(a, 0, [0], [[bytes(32)] * 3])


def test_out_of_range_nodes_are_index_errors() -> None:
    tree = MerkleTree(16, 4)
    for call in (lambda: tree.node(3, 0), lambda: tree.node(1, 4), lambda: tree.level(-1)):
        with pytest.raises(IndexError):
            call()
    with pytest.raises(IndexError):
        tree.children(2, 0)  # segments have no children
    assert tree.child_indexes(1, 3) == range(12, 16)


def test_level_codec_round_trip_and_rejection() -> None:
    hashes = [bytes([i]) * 32 for i in range(5)]
    assert decode_level(encode_level(hashes)) == hashes
    assert decode_level(encode_level([])) == []
    for bad in (codec.encode("merkle.level", [b"short"]), codec.encode("merkle.level", "x"), b"\x00garbage"):
        with pytest.raises(DecodeError):
            decode_level(bad)


def test_tree_codec_round_trip_and_rejection() -> None:
    tree = MerkleTree.from_items(listing(100), segments=64, branching=4)
    copy = decode_tree(encode_tree(tree))
    assert copy == tree
    assert copy.shape == (64, 4)
    assert copy.level(1) == tree.level(1)
    assert copy.root() == tree.root()
    bad_payloads = [
        [3, 4, [bytes(32)] * 3],  # not a power of two
        [4, 1, [bytes(32)] * 4],  # branching below 2
        [4, 4, [bytes(32)] * 3],  # wrong number of segments
        [4, 4, [b"x"] * 4],  # wrong hash size
        [4, 4],
    ]
    for payload in bad_payloads:
        with pytest.raises(DecodeError):
            decode_tree(codec.encode("merkle.tree", payload))
    with pytest.raises(DecodeError):
        decode_tree(encode_level([]))  # another tag
