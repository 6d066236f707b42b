"""Anti-entropy peer messages <-> msgpack field lists (tags 16-19 and 23; wire/codec.py frames them).

Tags 20-22 are the client's get, put and delete in the shared numbering, so the fifth message takes 23.
Decoding trusts nothing and raises DecodeError only; `codec.decode_peer` turns that into
RemoteProtocolError. Every count is bounded by what an honest peer can send (a tree has at most
`SEGMENTS_MAX` nodes on a level), so a hostile frame cannot make us build more than the frame holds.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core.codec import want_bool, want_bytes, want_int, want_list, want_optional, want_tuple
from dynakv.core.errors import DecodeError
from dynakv.core.merkle import BRANCHING_MAX, DIGEST_BYTES, SEGMENTS_MAX
from dynakv.core.objects import OBJECT_HASH_BYTES
from dynakv.protocol.messages import (
    AeKeysReply,
    AeKeysRequest,
    AeNodesReply,
    AeNodesRequest,
    AeObjects,
    AePosition,
)

AE_NODES_REQUEST: Final = 16
AE_NODES_REPLY: Final = 17
AE_KEYS_REQUEST: Final = 18
AE_KEYS_REPLY: Final = 19
AE_OBJECTS: Final = 23
AE_TAGS: Final = frozenset({AE_NODES_REQUEST, AE_NODES_REPLY, AE_KEYS_REQUEST, AE_KEYS_REPLY, AE_OBJECTS})

AeMessage = AeNodesRequest | AeNodesReply | AeKeysRequest | AeKeysReply | AeObjects

_INT64_MAX: Final = (1 << 63) - 1
# 1 + log2(SEGMENTS_MAX) levels at the smallest branching (2).
_DEPTH_MAX: Final = 16


def _position(pos: AePosition | None) -> list[bytes] | None:
    return None if pos is None else [pos[0], pos[1]]


def ae_fields(msg: AeMessage) -> list[Any]:
    """The frame of one anti-entropy message: `[tag, field, ...]`."""
    match msg:
        case AeNodesRequest(xid, partition, segments, branching, depth, indexes):
            return [AE_NODES_REQUEST, xid, partition, segments, branching, depth, list(indexes)]
        case AeNodesReply(xid, hashes):
            return [AE_NODES_REPLY, xid, None if hashes is None else list(hashes)]
        case AeKeysRequest(xid, partition, segments, mask, after, upto):
            return [AE_KEYS_REQUEST, xid, partition, segments, mask, _position(after), _position(upto)]
        case AeKeysReply(xid, entries, upto):
            return [AE_KEYS_REPLY, xid, [list(e) for e in entries], _position(upto)]
        case AeObjects(xid, partition, entries, wanted, done):
            want = None if wanted is None else [list(w) for w in wanted]
            return [AE_OBJECTS, xid, partition, [list(e) for e in entries], want, done]
    raise AssertionError(f"not an anti-entropy message: {msg!r}")


def _u64(value: Any, field: str) -> int:
    return want_int(value, field, 0, _INT64_MAX)


def _bounded_list(value: Any, field: str) -> list[Any]:
    items = want_list(value, field)
    if len(items) > SEGMENTS_MAX:
        raise DecodeError(f"{field}: {len(items)} items, over {SEGMENTS_MAX}")
    return items


def _want_position(value: Any, field: str) -> AePosition:
    bucket, key = want_tuple(value, field, 2)
    return want_bytes(bucket, f"{field}.bucket"), want_bytes(key, f"{field}.key")


def _want_positions(value: Any, field: str) -> tuple[AePosition, ...]:
    return tuple(_want_position(w, f"{field}[{i}]") for i, w in enumerate(want_list(value, field)))


def _want_digest(value: Any, field: str, size: int) -> bytes:
    digest = want_bytes(value, field)
    if len(digest) != size:
        raise DecodeError(f"{field}: {len(digest)} bytes, expected {size}")
    return digest


def _want_segments(value: Any, field: str) -> int:
    segments = want_int(value, field, 1, SEGMENTS_MAX)
    if segments & (segments - 1):
        raise DecodeError(f"{field}: {segments} is not a power of two")
    return segments


def _triples(value: Any, field: str, third_size: int | None) -> tuple[tuple[bytes, bytes, bytes], ...]:
    """(bucket, key, bytes) rows; the third is a digest of `third_size` bytes when given. Object
    entries are bounded by the frame size, not by a count."""
    rows = want_list(value, field)
    out = []
    for i, row in enumerate(rows):
        name = f"{field}[{i}]"
        bucket, key, data = want_tuple(row, name, 3)
        third = (
            want_bytes(data, f"{name}.data") if third_size is None else _want_digest(data, name, third_size)
        )
        out.append((want_bytes(bucket, f"{name}.bucket"), want_bytes(key, f"{name}.key"), third))
    return tuple(out)


def _decode_nodes(tag: int, f: list[Any]) -> AeMessage:
    if tag == AE_NODES_REQUEST and len(f) == 6:
        indexes = _bounded_list(f[5], "indexes")
        return AeNodesRequest(
            _u64(f[0], "xid"),
            _u64(f[1], "partition"),
            _want_segments(f[2], "segments"),
            want_int(f[3], "branching", 2, BRANCHING_MAX),
            want_int(f[4], "depth", 0, _DEPTH_MAX),
            tuple(want_int(v, f"indexes[{i}]", 0, SEGMENTS_MAX - 1) for i, v in enumerate(indexes)),
        )
    if tag == AE_NODES_REPLY and len(f) == 2:
        hashes = None
        if f[1] is not None:
            items = _bounded_list(f[1], "hashes")
            hashes = tuple(_want_digest(h, f"hashes[{i}]", DIGEST_BYTES) for i, h in enumerate(items))
        return AeNodesReply(_u64(f[0], "xid"), hashes)
    raise DecodeError(f"tag {tag} with {len(f)} fields is not an anti-entropy message")


def decode_ae(tag: int, f: list[Any]) -> AeMessage:
    """Decode the fields `f` (after the tag) of an anti-entropy frame."""
    if tag in (AE_NODES_REQUEST, AE_NODES_REPLY):
        return _decode_nodes(tag, f)
    if tag == AE_KEYS_REQUEST and len(f) == 6:
        segments = _want_segments(f[2], "segments")
        mask = want_bytes(f[3], "segment_mask")
        if len(mask) != -(-segments // 8):
            raise DecodeError(f"segment_mask: {len(mask)} bytes for {segments} segments")
        return AeKeysRequest(
            _u64(f[0], "xid"),
            _u64(f[1], "partition"),
            segments,
            mask,
            want_optional(f[4], "after", _want_position),
            want_optional(f[5], "upto", _want_position),
        )
    if tag == AE_KEYS_REPLY and len(f) == 3:
        entries = _triples(f[1], "entries", OBJECT_HASH_BYTES)
        return AeKeysReply(_u64(f[0], "xid"), entries, want_optional(f[2], "upto", _want_position))
    if tag == AE_OBJECTS and len(f) == 5:
        wanted = want_optional(f[3], "wanted", _want_positions)
        return AeObjects(
            _u64(f[0], "xid"),
            _u64(f[1], "partition"),
            _triples(f[2], "entries", None),
            wanted,
            want_bool(f[4], "done"),
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not an anti-entropy message")
