"""Anti-entropy, the responder's side and the helpers both sides share (protocol/anti_entropy.py drives).

The responder keeps no state: each request is answered from its tree or a bounded scan of its storage
and is a bounded amount of work, so a peer that vanishes mid-exchange costs it nothing.

Sizes. This layer cannot encode (the wire layer sits above it), so `wire_size` is an upper bound of a
message's msgpack encoding: every bytes field counts its length plus the largest bin header (5), every
int the largest int encoding (9), every array its largest header (5). Messages are cut to keep that
bound under `Limits.transfer_batch_bytes_max`; only a single entry larger than the bound on its own goes
out alone in a bigger message (an object can be up to `object_bytes_max`, which a frame always holds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Final

from dynakv.core.errors import DecodeError
from dynakv.core.merkle import MerkleTree
from dynakv.protocol import replica
from dynakv.protocol.ae_trees import TreeStore, leaf_hash, segment_of_entry
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.messages import (
    AeKeysReply,
    AeKeysRequest,
    AeNodesReply,
    AeNodesRequest,
    AeObjects,
    AePosition,
    PeerMessage,
)
from dynakv.protocol.ports import StorageEngine, StorageError

# merge(partition, bucket, key, incoming object bytes) -> (stored bytes before, stored bytes after).
# It must merge (DVV sync), never overwrite; the data path's version also keeps the trees current.
Merge = Callable[[int, bytes, bytes, bytes], tuple[bytes | None, bytes | None]]

_BYTES_HEADER: Final = 5
_INT_MAX_BYTES: Final = 9
_ARRAY_HEADER: Final = 5
# The frame's own array header and tag.
_FRAME_BYTES: Final = _ARRAY_HEADER + 1

AeMessage = AeNodesRequest | AeNodesReply | AeKeysRequest | AeKeysReply | AeObjects


def value_size(value: object) -> int:
    """An upper bound of the msgpack encoding of one field value."""
    if isinstance(value, bytes):
        return len(value) + _BYTES_HEADER
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return _INT_MAX_BYTES
    if isinstance(value, tuple | list):
        return _ARRAY_HEADER + sum(value_size(v) for v in value)
    raise AssertionError(f"no size for {type(value).__name__}")


def wire_size(msg: AeMessage) -> int:
    """An upper bound of the encoded size of an anti-entropy message (the frame, not the length prefix)."""
    return _FRAME_BYTES + sum(value_size(getattr(msg, f.name)) for f in fields(msg))


def make_mask(segments: int, chosen: Iterable[int]) -> bytes:
    """The bitmap of `chosen` segments: bit s is bit 7 - s % 8 of byte s // 8."""
    mask = bytearray(-(-segments // 8))
    for s in chosen:
        mask[s // 8] |= 0x80 >> (s % 8)
    return bytes(mask)


def mask_has(mask: bytes, segment: int) -> bool:
    return bool(mask[segment // 8] & (0x80 >> (segment % 8)))


def storage_merge(storage: StorageEngine, *, durable: bool = False) -> Merge:
    """A `Merge` over `replica.merge_local` (DVV sync), for use until the data path provides one that
    also applies the bucket's last_write_wins. It reads the stored bytes around the merge to report
    them; the caller updates the trees."""

    def merge(
        partition: int, bucket: bytes, key: bytes, incoming: bytes
    ) -> tuple[bytes | None, bytes | None]:
        old = storage.get(partition, bucket, key)
        replica.merge_local(storage, partition, bucket, key, incoming, durable=durable)
        return old, storage.get(partition, bucket, key)

    return merge


@dataclass(slots=True)
class Sender:
    """Sends anti-entropy messages and counts them: messages and (upper-bound) bytes."""

    counters: Counter[str]

    def send(self, dst: str, msg: AeMessage, out: list[Effect]) -> None:
        self.counters["ae.messages_sent"] += 1
        self.counters["ae.bytes_sent"] += wire_size(msg)
        peer_msg: PeerMessage = msg
        out.append(Send(dst, peer_msg))


def apply_objects(
    merge: Merge,
    trees: TreeStore | None,
    partition: int,
    entries: Sequence[tuple[bytes, bytes, bytes]],
    counters: Counter[str],
) -> dict[AePosition, bytes | None]:
    """Merge incoming objects into local storage; return what is stored afterwards per key (absent
    from the result: the merge failed). `trees` is None when `merge` keeps the trees current itself."""
    stored: dict[AePosition, bytes | None] = {}
    for bucket, key, obj in entries:
        try:
            old, new = merge(partition, bucket, key, obj)
        except (DecodeError, StorageError):
            # A corrupt incoming or local object, or a failing disk: skip the key, the next exchange
            # retries it; the counter makes it visible.
            counters["ae.merge_failed"] += 1
            continue
        if old != new:
            counters["ae.keys_repaired"] += 1
            if trees is not None:
                trees.on_write(partition, bucket, key, old, new)
        stored[(bucket, key)] = new
    return stored


def answer_nodes(tree: MerkleTree | None, msg: AeNodesRequest, bound: int) -> AeNodesReply:
    """The hashes asked, or None when the tree is missing, has another shape, or the request is out of
    range or would need a reply over the byte bound (an honest initiator never asks that)."""
    refused = AeNodesReply(msg.xid, None)
    if tree is None or tree.shape != (msg.segments, msg.branching) or msg.depth > tree.depth:
        return refused
    size = tree.segments if msg.depth == tree.depth else len(tree.level(msg.depth))
    if any(i >= size for i in msg.indexes):
        return refused
    reply = AeNodesReply(msg.xid, tuple(tree.node(msg.depth, i) for i in msg.indexes))
    return reply if wire_size(reply) <= bound else refused


def answer_keys(storage: StorageEngine, msg: AeKeysRequest, page_entries: int, bound: int) -> AeKeysReply:
    """List the matching entries of one bounded scan page (see AeKeysRequest/AeKeysReply).

    The reply covers (after, upto]: the request's whole range when the scan got there, else the last
    entry examined. At least one entry is examined per reply, so the initiator always makes progress.
    """
    page = storage.scan(msg.partition, start_after=msg.after, limit=page_entries)
    entries: list[tuple[bytes, bytes, bytes]] = []
    size = wire_size(AeKeysReply(msg.xid, (), msg.upto))
    last: AePosition | None = None
    for bucket, key, value in page:
        position = (bucket, key)
        if msg.upto is not None and position > msg.upto:
            return AeKeysReply(msg.xid, tuple(entries), msg.upto)
        if mask_has(msg.segment_mask, segment_of_entry(bucket, key, msg.segments)):
            entry = (bucket, key, leaf_hash(value))
            grown = size + value_size(entry)
            if entries and grown > bound:
                return AeKeysReply(msg.xid, tuple(entries), last)
            entries.append(entry)
            size = grown
        last = position
    if len(page) < page_entries:
        return AeKeysReply(msg.xid, tuple(entries), msg.upto)
    return AeKeysReply(msg.xid, tuple(entries), last)


def reply_pages(
    xid: int, partition: int, entries: Sequence[tuple[bytes, bytes, bytes]], bound: int
) -> list[AeObjects]:
    """Cut a responder's objects into AeObjects of at most `bound` bytes; always at least one message,
    the last one `done`."""
    base = wire_size(AeObjects(xid, partition, (), None))
    pages: list[list[tuple[bytes, bytes, bytes]]] = [[]]
    size = base
    for entry in entries:
        grown = size + value_size(entry)
        if pages[-1] and grown > bound:
            pages.append([])
            grown = base + value_size(entry)
        pages[-1].append(entry)
        size = grown
    last = len(pages) - 1
    return [AeObjects(xid, partition, tuple(rows), None, done=i == last) for i, rows in enumerate(pages)]


def request_pages(
    partition: int, entries: Sequence[tuple[bytes, bytes, bytes]], wanted: Sequence[AePosition], bound: int
) -> list[AeObjects]:
    """Cut the initiator's repair (its objects, then the keys it wants back) into AeObjects requests of
    at most `bound` bytes each. Their xid is 0: each gets a fresh one when sent."""
    base = wire_size(AeObjects(0, partition, (), ()))
    pages: list[tuple[list[tuple[bytes, bytes, bytes]], list[AePosition]]] = []
    size = 0

    def page_for(item_size: int) -> tuple[list[tuple[bytes, bytes, bytes]], list[AePosition]]:
        nonlocal size
        # Every page holds at least one item, so an item over the bound alone still goes, alone.
        if not pages or size + item_size > bound:
            pages.append(([], []))
            size = base
        size += item_size
        return pages[-1]

    for entry in entries:
        page_for(value_size(entry))[0].append(entry)
    for position in wanted:
        page_for(value_size(position))[1].append(position)
    return [AeObjects(0, partition, tuple(rows), tuple(want)) for rows, want in pages]


def answer_objects(
    storage: StorageEngine,
    merge: Merge,
    trees: TreeStore | None,
    msg: AeObjects,
    *,
    bound: int,
    counters: Counter[str],
) -> list[AeObjects]:
    """Merge a request's objects, then send back the merged object of each wanted key this replica
    holds, except where it is exactly what the initiator sent (the initiator has it already)."""
    assert msg.wanted is not None, "a reply is not answered"
    stored = apply_objects(merge, trees, msg.partition, msg.entries, counters)
    sent = {(bucket, key): obj for bucket, key, obj in msg.entries}
    back: list[tuple[bytes, bytes, bytes]] = []
    for bucket, key in sorted(set(msg.wanted)):
        position = (bucket, key)
        try:
            obj = stored[position] if position in stored else storage.get(msg.partition, bucket, key)
        except StorageError:
            counters["ae.read_failed"] += 1
            continue
        if obj is None:
            continue
        theirs = sent.get(position)
        if theirs is not None and leaf_hash(theirs) == leaf_hash(obj):
            continue
        back.append((bucket, key, obj))
    return reply_pages(msg.xid, msg.partition, back, bound)
