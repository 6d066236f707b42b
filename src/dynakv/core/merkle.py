"""Merkle trees for anti-entropy, one per ring partition (paper section 4.7).

A tree summarises the `key -> object hash` listing of one partition. Keys are spread over `segments`
leaves by a hash of the key; a segment's hash is an order-independent sum of per-key digests, so a write
updates it in O(1) without reading the other keys of the segment. Interior levels have a fixed
branching factor (1024 segments, branching 32: levels of 1, 32 and 1024 nodes) and each interior node
is the digest of its children. Interior nodes are recomputed lazily: `update` marks a segment dirty and
the next read recomputes only the paths from dirty segments to the root, never the whole tree.

Two replicas of a partition compare roots; where they differ they descend only into differing
children (`differing_children`, one step per round trip, or `diff_segments` for a whole walk), then
exchange the key listings of the differing segments and compare them (`key_differences`). Repair merges
siblings; that is the caller's business, not this module's.

Depth 0 is the root; depth `tree.depth` is the segment level.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from dynakv.core import codec
from dynakv.core.codec import want_bytes, want_int, want_list, want_tuple
from dynakv.core.errors import ConfigError, DecodeError, DynakvError

DIGEST_BYTES: Final = 32
SEGMENTS_DEFAULT: Final = 1024
BRANCHING_DEFAULT: Final = 32
SEGMENTS_MAX: Final = 1 << 16
BRANCHING_MAX: Final = 1024

# The hash of a segment holding no key: the empty sum. Fixed, so two replicas that both lack every key
# of a segment agree on it without exchanging anything.
EMPTY_SEGMENT: Final = bytes(DIGEST_BYTES)

LEVEL_TAG: Final = "merkle.level"
TREE_TAG: Final = "merkle.tree"

_MODULUS: Final = 1 << (8 * DIGEST_BYTES)
# Distinct blake2b personalisations keep the three uses of the hash apart: a segment choice can never be
# mistaken for a leaf digest or an interior node.
_SEGMENT_PERSON: Final = b"dynakv.mk.seg"
_LEAF_PERSON: Final = b"dynakv.mk.leaf"
_NODE_PERSON: Final = b"dynakv.mk.node"


class TreeShapeMismatch(DynakvError, ValueError):
    """Two trees (or a tree and a peer's level data) do not have the same segments and branching."""


def segment_of(key: bytes, segments: int) -> int:
    """The segment of `key` in a tree of `segments` segments.

    The keys of one partition share the top bits of their ring hash (that is what puts them in the same
    partition), so the ring hash would crowd them into a few segments; a separate, personalised hash of
    the key spreads them evenly. `segments` is a power of two, so the modulo is unbiased.
    """
    digest = hashlib.blake2b(key, digest_size=8, person=_SEGMENT_PERSON).digest()
    return int.from_bytes(digest, "big") % segments


def leaf_digest(key: bytes, object_hash: bytes) -> int:
    """The contribution of one `(key, object hash)` pair to its segment's sum.

    The key is length-prefixed so that no two different pairs feed blake2b the same bytes.
    """
    h = hashlib.blake2b(digest_size=DIGEST_BYTES, person=_LEAF_PERSON)
    h.update(len(key).to_bytes(4, "big"))
    h.update(key)
    h.update(object_hash)
    return int.from_bytes(h.digest(), "big")


def node_digest(children: Sequence[bytes]) -> bytes:
    """The hash of an interior node: blake2b of its children's hashes, concatenated in index order."""
    return hashlib.blake2b(b"".join(children), digest_size=DIGEST_BYTES, person=_NODE_PERSON).digest()


def level_sizes(segments: int, branching: int) -> list[int]:
    """The number of nodes at each depth, root first: (1024, 32) -> [1, 32, 1024]."""
    sizes = [segments]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // branching))
    sizes.reverse()
    return sizes


def _check_shape(segments: int, branching: int) -> None:
    if isinstance(segments, bool) or not isinstance(segments, int):
        raise ConfigError("segments", f"expected an integer, got {segments!r}")
    if not 1 <= segments <= SEGMENTS_MAX or segments & (segments - 1):
        raise ConfigError("segments", f"{segments} is not a power of two in [1, {SEGMENTS_MAX}]")
    if isinstance(branching, bool) or not isinstance(branching, int):
        raise ConfigError("branching", f"expected an integer, got {branching!r}")
    if not 2 <= branching <= BRANCHING_MAX:
        raise ConfigError("branching", f"{branching} is not in [2, {BRANCHING_MAX}]")


class MerkleTree:
    """The Merkle tree of one partition, updated incrementally as keys are written.

    Segment hashes: each key adds `leaf_digest(key, object_hash)` to its segment's sum modulo 2**256.
    Addition is commutative and invertible, so a segment's hash depends only on the set of pairs in it,
    never on the order of writes, and replacing or removing a key subtracts its old digest in O(1)
    without knowing the segment's other keys. This is safe because a key occurs at most once in a
    partition's listing: each key contributes exactly one term, so no two equal terms can cancel, and two
    different sets collide only if their digest sums agree modulo 2**256 (chance 2**-256 per compared
    segment for honest data). Addition is chosen over XOR because XOR is linear over GF(2): a writer who
    picks about 257 values can make a chosen set cancel by Gaussian elimination (Bellare and Micciancio's
    attack on XHASH), while modular addition (AdHash) resists that. A segment without keys sums to
    zero, `EMPTY_SEGMENT`, whatever keys came and went.

    The caller must pass the object hash it stored for the key as `old_hash`; a wrong one corrupts the
    segment until the tree is rebuilt with `from_items` (which the anti-entropy driver may do after a
    restart, from storage).
    """

    __slots__ = ("_branching", "_dirty", "_levels", "_segments", "_sums")

    def __init__(self, segments: int = SEGMENTS_DEFAULT, branching: int = BRANCHING_DEFAULT) -> None:
        _check_shape(segments, branching)
        self._segments = segments
        self._branching = branching
        self._sums = [0] * segments
        self._dirty: set[int] = set()
        self._levels: list[list[bytes]] = []
        self._rebuild_levels()

    @classmethod
    def from_items(
        cls,
        items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]],
        *,
        segments: int = SEGMENTS_DEFAULT,
        branching: int = BRANCHING_DEFAULT,
    ) -> MerkleTree:
        """Build a tree from scratch from a `key -> object hash` listing whose keys are distinct."""
        tree = cls(segments, branching)
        pairs = items.items() if isinstance(items, Mapping) else items
        sums = tree._sums
        for key, object_hash in pairs:
            s = segment_of(key, segments)
            sums[s] = (sums[s] + leaf_digest(key, object_hash)) % _MODULUS
        tree._rebuild_levels()
        return tree

    @classmethod
    def _from_sums(cls, sums: list[int], branching: int) -> MerkleTree:
        tree = cls(len(sums), branching)
        tree._sums = sums
        tree._rebuild_levels()
        return tree

    @property
    def segments(self) -> int:
        return self._segments

    @property
    def branching(self) -> int:
        return self._branching

    @property
    def depth(self) -> int:
        """The depth of the segment level (the root is depth 0): 2 for 1024 segments, branching 32."""
        return len(self._levels) - 1

    @property
    def shape(self) -> tuple[int, int]:
        return (self._segments, self._branching)

    def segment_of(self, key: bytes) -> int:
        return segment_of(key, self._segments)

    def update(self, key: bytes, old_hash: bytes | None, new_hash: bytes | None) -> None:
        """Record a write: add (`old_hash` None), replace, or remove (`new_hash` None) one key."""
        if old_hash == new_hash:
            return
        s = segment_of(key, self._segments)
        total = self._sums[s]
        if old_hash is not None:
            total -= leaf_digest(key, old_hash)
        if new_hash is not None:
            total += leaf_digest(key, new_hash)
        self._sums[s] = total % _MODULUS
        self._dirty.add(s)

    def root(self) -> bytes:
        return self.node(0, 0)

    def level(self, depth: int) -> list[bytes]:
        """A copy of the hashes at `depth`, in index order."""
        self._check_depth(depth)
        self._flush()
        return list(self._levels[depth])

    def node(self, depth: int, index: int) -> bytes:
        self._check_index(depth, index)
        self._flush()
        return self._levels[depth][index]

    def child_indexes(self, depth: int, index: int) -> range:
        """The indexes, at `depth + 1`, of the children of node `(depth, index)`."""
        self._check_index(depth, index)
        if depth >= self.depth:
            raise IndexError(f"depth {depth} is the segment level; segments have no children")
        first = index * self._branching
        return range(first, min(first + self._branching, len(self._levels[depth + 1])))

    def children(self, depth: int, index: int) -> list[bytes]:
        indexes = self.child_indexes(depth, index)
        self._flush()
        return self._levels[depth + 1][indexes.start : indexes.stop]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MerkleTree):
            return NotImplemented
        return self.shape == other.shape and self._sums == other._sums

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"MerkleTree(segments={self._segments}, branching={self._branching}, root={self.root().hex()})"

    def _check_depth(self, depth: int) -> None:
        if not 0 <= depth < len(self._levels):
            raise IndexError(f"depth {depth} is not in [0, {self.depth}]")

    def _check_index(self, depth: int, index: int) -> None:
        self._check_depth(depth)
        size = len(self._levels[depth])
        if not 0 <= index < size:
            raise IndexError(f"index {index} is not in [0, {size}) at depth {depth}")

    def _rebuild_levels(self) -> None:
        """Recompute every level from the segment sums (construction only, never per write)."""
        sizes = level_sizes(self._segments, self._branching)
        levels: list[list[bytes]] = [[] for _ in sizes]
        levels[-1] = [s.to_bytes(DIGEST_BYTES, "big") for s in self._sums]
        b = self._branching
        for depth in range(len(sizes) - 2, -1, -1):
            below = levels[depth + 1]
            levels[depth] = [node_digest(below[i * b : (i + 1) * b]) for i in range(sizes[depth])]
        self._levels = levels
        self._dirty.clear()

    def _flush(self) -> None:
        """Recompute the segment hashes marked dirty and the interior nodes on their paths to the root."""
        if not self._dirty:
            return
        b = self._branching
        bottom = self._levels[-1]
        dirty = sorted(self._dirty)
        for s in dirty:
            bottom[s] = self._sums[s].to_bytes(DIGEST_BYTES, "big")
        for depth in range(self.depth - 1, -1, -1):
            below = self._levels[depth + 1]
            dirty = sorted({i // b for i in dirty})
            for i in dirty:
                self._levels[depth][i] = node_digest(below[i * b : (i + 1) * b])
        self._dirty.clear()


class MerkleNodes(Protocol):
    """What a diff needs from the other side: its root and the children of a node (a `MerkleTree`,
    or a proxy that fetches them from a peer)."""

    def root(self) -> bytes: ...

    def children(self, depth: int, index: int) -> Sequence[bytes]: ...


@dataclass(frozen=True, slots=True)
class SegmentDiff:
    """The outcome of a tree walk: the differing segments (ascending) and how many node hashes were
    compared, each of which a networked exchange has to ship once."""

    segments: tuple[int, ...]
    hashes_compared: int

    @property
    def hash_bytes(self) -> int:
        return self.hashes_compared * DIGEST_BYTES


def differing_children(
    local: MerkleTree, depth: int, indexes: Sequence[int], remote_hashes: Sequence[Sequence[bytes]]
) -> list[int]:
    """One step of the walk: given differing nodes `indexes` at `depth` and, for each of them in the
    same order, the remote's hashes of its children, return the differing children (indexes at
    `depth + 1`, ascending). Raise `TreeShapeMismatch` if the remote's data cannot come from a tree of
    the same shape."""
    if len(indexes) != len(remote_hashes):
        raise TreeShapeMismatch(f"{len(indexes)} nodes asked, children of {len(remote_hashes)} received")
    found: list[int] = []
    for index, theirs in zip(indexes, remote_hashes, strict=True):
        positions = local.child_indexes(depth, index)
        if len(theirs) != len(positions):
            raise TreeShapeMismatch(
                f"node ({depth}, {index}) has {len(positions)} children here, {len(theirs)} remotely"
            )
        ours = local.children(depth, index)
        found.extend(i for i, mine, other in zip(positions, ours, theirs, strict=True) if mine != other)
    found.sort()
    return found


def diff_segments(local: MerkleTree, remote: MerkleNodes) -> SegmentDiff:
    """Walk down from the roots, descending only into differing nodes; return the differing segments.

    With one differing key in a 1024/32 tree this compares 1 + 32 + 32 hashes, not 1024.
    """
    compared = 1
    if local.root() == remote.root():
        return SegmentDiff((), compared)
    frontier = [0]
    for depth in range(local.depth):
        theirs = [remote.children(depth, i) for i in frontier]
        compared += sum(len(hashes) for hashes in theirs)
        frontier = differing_children(local, depth, frontier, theirs)
    return SegmentDiff(tuple(frontier), compared)


def key_differences(local: Mapping[bytes, bytes], remote: Mapping[bytes, bytes]) -> list[bytes]:
    """The keys, ascending, whose object hash differs between two listings or that one side lacks."""
    keys = local.keys() | remote.keys()
    return sorted(k for k in keys if local.get(k) != remote.get(k))


def encode_level(hashes: Sequence[bytes]) -> bytes:
    """Encode the hashes of one level (or of a node's children) for exchange."""
    for h in hashes:
        assert isinstance(h, bytes) and len(h) == DIGEST_BYTES, "not a node hash"
    return codec.encode(LEVEL_TAG, list(hashes))


def _want_hashes(value: Any, field: str) -> list[bytes]:
    items = want_list(value, field)
    if len(items) > SEGMENTS_MAX:
        raise DecodeError(f"{field}: {len(items)} hashes, over the maximum {SEGMENTS_MAX}")
    hashes = []
    for i, item in enumerate(items):
        h = want_bytes(item, f"{field}[{i}]")
        if len(h) != DIGEST_BYTES:
            raise DecodeError(f"{field}[{i}]: {len(h)} bytes, expected {DIGEST_BYTES}")
        hashes.append(h)
    return hashes


def decode_level(data: bytes) -> list[bytes]:
    return _want_hashes(codec.decode(data, LEVEL_TAG), "level")


def encode_tree(tree: MerkleTree) -> bytes:
    """Encode a whole tree: its shape and segment hashes (interior nodes are recomputed on decode, so
    a decoded tree is always internally consistent)."""
    return codec.encode(TREE_TAG, [tree.segments, tree.branching, tree.level(tree.depth)])


def decode_tree(data: bytes) -> MerkleTree:
    segments_raw, branching_raw, hashes_raw = want_tuple(codec.decode(data, TREE_TAG), "tree", 3)
    segments = want_int(segments_raw, "segments", 1, SEGMENTS_MAX)
    branching = want_int(branching_raw, "branching", 2, BRANCHING_MAX)
    if segments & (segments - 1):
        raise DecodeError(f"segments: {segments} is not a power of two")
    hashes = _want_hashes(hashes_raw, "segment hashes")
    if len(hashes) != segments:
        raise DecodeError(f"segment hashes: {len(hashes)} given for {segments} segments")
    return MerkleTree._from_sums([int.from_bytes(h, "big") for h in hashes], branching)
