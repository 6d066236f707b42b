"""Anti-entropy, the initiator's side: the state machine of the exchanges this node runs (the steps are
described in protocol/anti_entropy.py, which schedules them).

Every request gets a fresh id (`xid`) and the exchange waits for replies carrying exactly that id, so a
duplicated, reordered or late reply (the simulator makes all three) matches nothing and is dropped
(counted as `ae.stale_replies`); what it would have repaired is found again by the next exchange.
Replies are checked before they are used: a reply that could not answer the request ends the exchange
as failed rather than being trusted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Final

from dynakv.core.merkle import DIGEST_BYTES, MerkleTree
from dynakv.protocol.ae_peer import (
    AeMessage,
    Merge,
    Sender,
    apply_objects,
    make_mask,
    mask_has,
    request_pages,
    value_size,
    wire_size,
)
from dynakv.protocol.ae_trees import TreeStore, leaf_hash, segment_of_entry
from dynakv.protocol.effects import Effect
from dynakv.protocol.messages import (
    AeKeysReply,
    AeKeysRequest,
    AeNodesReply,
    AeNodesRequest,
    AeObjects,
    AePosition,
)
from dynakv.protocol.ports import StorageError

COMPLETED: Final = "completed"
DECLINED: Final = "declined"
FAILED: Final = "failed"
TIMED_OUT: Final = "timed_out"

Entry = tuple[bytes, bytes, bytes]
Ended = list[tuple["Exchange", str]]

_REPLY_TO: Final[dict[type, type[AeNodesReply | AeKeysReply | AeObjects]]] = {
    AeNodesRequest: AeNodesReply,
    AeKeysRequest: AeKeysReply,
    AeObjects: AeObjects,
}


@dataclass(slots=True)
class Exchange:
    """One exchange: with `peer`, over `partition`. The walk fields hold the level being compared
    (`depth`): indexes still to ask (`todo`), those in flight (`asked`), those found differing. The
    listing fields hold the range cursor and this side's entries of the current round."""

    partition: int
    peer: str
    forced: bool
    deadline_ms: int
    rid: int = 0  # the id of the request in flight
    expect: type[AeNodesReply | AeKeysReply | AeObjects] = AeNodesReply
    depth: int = 0
    todo: list[int] = field(default_factory=list)
    asked: tuple[int, ...] = ()
    differing: list[int] = field(default_factory=list)
    mask: bytes = b""
    cursor: AePosition | None = None
    local: list[Entry] = field(default_factory=list)
    local_upto: AePosition | None = None
    keys_done: bool = False
    batches: list[AeObjects] = field(default_factory=list)
    wanted: frozenset[AePosition] = frozenset()


class Initiator:
    def __init__(
        self,
        trees: TreeStore,
        merge: Merge,
        merge_trees: TreeStore | None,
        sender: Sender,
        *,
        timeout_ms: int,
        scan_page_entries: int,
        bound: int,
    ) -> None:
        self.trees = trees
        self.storage = trees.storage
        self.merge = merge
        self.merge_trees = merge_trees
        self.sender = sender
        self.counters: Counter[str] = sender.counters
        self.timeout_ms = timeout_ms
        self.scan_page = scan_page_entries
        self.bound = bound
        self.active: list[Exchange] = []
        self._awaiting: dict[int, Exchange] = {}
        self._next_rid = 1
        # How many node hashes one reply may carry within the bound (at least one: progress).
        per_hash = value_size(bytes(DIGEST_BYTES))
        self.nodes_per_request = max(1, (bound - wire_size(AeNodesReply(0, ()))) // per_hash)

    # -- lifecycle ----------------------------------------------------------------------------------

    def begin(self, partition: int, peer: str, forced: bool, now_ms: int, out: list[Effect]) -> Ended:
        ex = Exchange(partition, peer, forced, now_ms + self.timeout_ms, todo=[0])
        self.active.append(ex)
        return self._next_nodes(ex, out)

    def expired(self, now_ms: int) -> list[Exchange]:
        gone = [ex for ex in self.active if ex.deadline_ms <= now_ms]
        for ex in gone:
            self._end(ex)
        return gone

    def _end(self, ex: Exchange) -> None:
        self._awaiting.pop(ex.rid, None)
        self.active.remove(ex)

    def _finish(self, ex: Exchange, outcome: str) -> Ended:
        self._end(ex)
        return [(ex, outcome)]

    def _ask(self, ex: Exchange, msg: AeMessage, out: list[Effect]) -> None:
        self._awaiting.pop(ex.rid, None)
        ex.rid = self._next_rid
        self._next_rid += 1
        self._awaiting[ex.rid] = ex
        ex.expect = _REPLY_TO[type(msg)]
        self.sender.send(ex.peer, replace(msg, xid=ex.rid), out)

    def on_reply(
        self, src: str, msg: AeNodesReply | AeKeysReply | AeObjects, now_ms: int, out: list[Effect]
    ) -> Ended:
        ex = self._awaiting.get(msg.xid)
        if ex is None or ex.peer != src:
            self.counters["ae.stale_replies"] += 1
            return []
        if not isinstance(msg, ex.expect):
            return self._finish(ex, FAILED)
        ex.deadline_ms = now_ms + self.timeout_ms
        try:
            if isinstance(msg, AeNodesReply):
                return self._on_nodes(ex, msg, out)
            if isinstance(msg, AeKeysReply):
                return self._on_keys(ex, msg, out)
            return self._on_objects(ex, msg, out)
        except StorageError:
            # Our own disk failed mid-exchange: give up on this one; the next exchange starts over.
            return self._finish(ex, FAILED)

    # -- 1. the tree walk ----------------------------------------------------------------------------

    def _next_nodes(self, ex: Exchange, out: list[Effect]) -> Ended:
        tree = self.trees.tree(ex.partition)
        if tree is None:
            return self._finish(ex, FAILED)  # the tree is being rebuilt from scratch; try later
        chunk, ex.todo = ex.todo[: self.nodes_per_request], ex.todo[self.nodes_per_request :]
        ex.asked = tuple(chunk)
        request = AeNodesRequest(0, ex.partition, tree.segments, tree.branching, ex.depth, ex.asked)
        self._ask(ex, request, out)
        return []

    def _on_nodes(self, ex: Exchange, msg: AeNodesReply, out: list[Effect]) -> Ended:
        tree = self.trees.tree(ex.partition)
        if msg.hashes is None:
            return self._finish(ex, DECLINED)
        if tree is None or len(msg.hashes) != len(ex.asked):
            return self._finish(ex, FAILED)
        self.counters["ae.hashes_compared"] += len(ex.asked)
        ex.differing += [i for i, h in zip(ex.asked, msg.hashes, strict=True) if tree.node(ex.depth, i) != h]
        ex.asked = ()
        if ex.todo:
            return self._next_nodes(ex, out)
        if not ex.differing:
            return self._finish(ex, COMPLETED)
        if ex.depth == tree.depth:
            self.counters["ae.segments_differing"] += len(ex.differing)
            ex.mask = make_mask(tree.segments, ex.differing)
            return self._keys_round(ex, tree, out)
        ex.todo = [child for i in ex.differing for child in tree.child_indexes(ex.depth, i)]
        ex.depth += 1
        ex.differing = []
        return self._next_nodes(ex, out)

    # -- 2. the key listings --------------------------------------------------------------------------

    def _keys_round(self, ex: Exchange, tree: MerkleTree, out: list[Effect]) -> Ended:
        """Scan one page of our side, then ask the peer for the same range."""
        page = self.storage.scan(ex.partition, start_after=ex.cursor, limit=self.scan_page)
        segments = tree.segments
        ex.local = [e for e in page if mask_has(ex.mask, segment_of_entry(e[0], e[1], segments))]
        ex.local_upto = (page[-1][0], page[-1][1]) if len(page) == self.scan_page else None
        request = AeKeysRequest(0, ex.partition, segments, ex.mask, ex.cursor, ex.local_upto)
        self._ask(ex, request, out)
        return []

    def _valid_listing(self, ex: Exchange, msg: AeKeysReply, segments: int) -> bool:
        """The reply covers a non-empty part of the range asked, and lists only keys of that part and
        of the segments asked, in scan order."""
        end = msg.upto
        if ex.local_upto is not None and (end is None or end > ex.local_upto):
            return False
        if end is not None and ex.cursor is not None and end <= ex.cursor:
            return False
        previous = ex.cursor
        for bucket, key, _ in msg.entries:
            position = (bucket, key)
            if (previous is not None and position <= previous) or (end is not None and position > end):
                return False
            if not mask_has(ex.mask, segment_of_entry(bucket, key, segments)):
                return False
            previous = position
        return True

    def _on_keys(self, ex: Exchange, msg: AeKeysReply, out: list[Effect]) -> Ended:
        tree = self.trees.tree(ex.partition)
        if tree is None or not self._valid_listing(ex, msg, tree.segments):
            return self._finish(ex, FAILED)
        end = msg.upto
        local = [e for e in ex.local if end is None or (e[0], e[1]) <= end]
        ex.local, ex.cursor, ex.keys_done = [], end, end is None
        remote = {(bucket, key): digest for bucket, key, digest in msg.entries}
        mine = {(bucket, key): (leaf_hash(value), value) for bucket, key, value in local}
        send: list[Entry] = []
        want: list[AePosition] = []
        for position in sorted(remote.keys() | mine.keys()):
            ours, theirs = mine.get(position), remote.get(position)
            if ours is not None and ours[0] == theirs:
                continue
            if ours is not None:
                send.append((position[0], position[1], ours[1]))
            if theirs is not None:
                want.append(position)
        self.counters["ae.keys_listed"] += len(msg.entries)
        self.counters["ae.keys_differing"] += len(set(want) | {(b, k) for b, k, _ in send})
        ex.batches = request_pages(ex.partition, send, want, self.bound)
        return self._next_batch(ex, tree, out)

    # -- 3. repair ------------------------------------------------------------------------------------

    def _next_batch(self, ex: Exchange, tree: MerkleTree, out: list[Effect]) -> Ended:
        if ex.batches:
            page = ex.batches.pop(0)
            ex.wanted = frozenset(page.wanted or ())
            self._ask(ex, AeObjects(0, page.partition, page.entries, page.wanted), out)
            return []
        if not ex.keys_done:
            return self._keys_round(ex, tree, out)
        return self._finish(ex, COMPLETED)

    def _on_objects(self, ex: Exchange, msg: AeObjects, out: list[Effect]) -> Ended:
        if msg.wanted is not None or msg.partition != ex.partition:
            return self._finish(ex, FAILED)
        # Only what we asked for is merged: a merge never loses data, but nothing else is expected.
        entries = [e for e in msg.entries if (e[0], e[1]) in ex.wanted]
        self.counters["ae.unexpected_objects"] += len(msg.entries) - len(entries)
        apply_objects(self.merge, self.merge_trees, ex.partition, entries, self.counters)
        if not msg.done:
            return []
        tree = self.trees.tree(ex.partition)
        if tree is None:
            return self._finish(ex, FAILED)
        return self._next_batch(ex, tree, out)
