"""Active anti-entropy (paper section 4.7): replicas of a partition compare Merkle trees and repair what
differs by DVV merge, in both directions, never by overwriting.

One exchange is between this node (the initiator) and one other primary of a partition (the responder):

1. Walk the trees down: ask for the root, then for the children of the nodes that differ, level by
   level (`AeNodesRequest`, cut to the byte bound), until the differing segments are known. Identical
   replicas stop after the root: one request, one 32-byte hash back.
2. List the differing segments' keys with their object hashes (`AeKeysRequest`), a bounded scan page
   at a time on both sides. The initiator scans its own page first and asks the responder for the same
   key range, so both listings cover the same range and are compared exactly (`(bucket, key)` order is
   the storage scan order on every engine).
3. Repair each range's differing keys (`AeObjects`): the initiator sends its objects and names the keys
   whose objects it wants back; the responder merges what it got, then sends back its merged object for
   each wanted key, which the initiator merges. After that both hold the join of the two, so a second
   exchange finds equal roots and moves nothing.

Throttling: at most `max_concurrent` exchanges at once and at most one periodic start per `interval_ms`;
partitions are taken round-robin in ascending order among those this node is a primary of, each paired
with its other primaries in turn; building trees costs at most `build_entries_per_tick` scanned entries
per Tick. A responder keeps no state (ae_peer.py), so an initiator that vanishes costs it nothing; an
initiator whose peer stops answering abandons the exchange after `timeout_ms` (counted).

`repair(partition)` queues exchanges with every other primary of one partition, or of all of this
node's, that start at once (still within `max_concurrent`); `progress()` shows how far they got.

Counters (`ae.*`): exchanges_started / _completed / _timed_out / _declined (the peer had no tree) /
_failed (a malformed reply or a local storage error), keys_repaired (merges that changed this node's
data), messages_sent and bytes_sent (an upper bound of the encoded size, see ae_peer.py), and the
walk's hashes_compared, segments_differing, keys_listed, keys_differing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Set
from dataclasses import dataclass, field, fields

from dynakv.core.config import Limits
from dynakv.core.errors import ConfigError
from dynakv.core.merkle import BRANCHING_DEFAULT, SEGMENTS_DEFAULT
from dynakv.core.preflist import primaries, replica_partitions
from dynakv.core.ring import Ring
from dynakv.protocol.ae_initiator import Exchange, Initiator
from dynakv.protocol.ae_peer import (
    AeMessage,
    Merge,
    Sender,
    answer_keys,
    answer_nodes,
    answer_objects,
)
from dynakv.protocol.ae_trees import TreeStore
from dynakv.protocol.effects import Effect
from dynakv.protocol.messages import AeKeysReply, AeKeysRequest, AeNodesReply, AeNodesRequest, AeObjects
from dynakv.protocol.ports import StorageEngine, StorageError

_WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class AeSettings:
    """Anti-entropy settings, all intervals in milliseconds; a Node takes them from Timing and Limits
    (node_admin.ae_settings), so node.json sets them."""

    enabled: bool = True  # periodic exchanges; repair() works either way
    interval_ms: int = 10_000  # at most one periodic exchange start per interval
    max_concurrent: int = 1  # exchanges this node initiates at once
    timeout_ms: int = 30_000  # an exchange whose peer is silent this long is abandoned
    build_entries_per_tick: int = 2_000  # storage entries scanned per Tick to build trees
    scan_page_entries: int = 1_000  # entries one key-listing round scans, on each side
    segments: int = SEGMENTS_DEFAULT
    branching: int = BRANCHING_DEFAULT
    # Rebuild a tree from storage this long after its last build (Riak's tree expiry): catches what
    # bypassed on_write. None: never.
    rebuild_after_ms: int | None = _WEEK_MS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "enabled" or (f.name == "rebuild_after_ms" and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f.name, f"expected a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class RepairProgress:
    """How far the last `repair()` got: partitions whose exchanges all ended, of those asked; keys
    this node's merges changed since it began; exchanges that did not complete."""

    partitions_total: int
    partitions_done: int
    keys_repaired: int
    exchanges_failed: int

    @property
    def finished(self) -> bool:
        return self.partitions_done == self.partitions_total


@dataclass(slots=True)
class _RepairRun:
    pending: dict[int, int] = field(default_factory=dict)  # partition -> exchanges not ended yet
    total: int = 0
    done: int = 0
    failed: int = 0
    repaired_before: int = 0


class AntiEntropy:
    """The anti-entropy of one node: its trees, the exchanges it initiates, its answers to its peers.

    `merge` merges an incoming object into local storage (see ae_peer.Merge). With
    `merge_updates_trees` False (until the data path provides the merge) this module records each
    merge in the trees itself; True means `merge` already calls `on_write`.
    """

    def __init__(
        self,
        name: str,
        ring: Ring,
        n_val: int,
        storage: StorageEngine,
        merge: Merge,
        *,
        settings: AeSettings | None = None,
        limits: Limits | None = None,
        counters: Counter[str] | None = None,
        merge_updates_trees: bool = False,
    ) -> None:
        self.name = name
        self.ring = ring
        self.n_val = n_val
        self.storage = storage
        self.settings = settings or AeSettings()
        self.bound = (limits or Limits()).transfer_batch_bytes_max
        self.counters: Counter[str] = counters if counters is not None else Counter()
        s = self.settings
        self.trees = TreeStore(
            storage,
            segments=s.segments,
            branching=s.branching,
            rebuild_after_ms=s.rebuild_after_ms,
            counters=self.counters,
        )
        self._merge = merge
        self._merge_trees = None if merge_updates_trees else self.trees
        self._sender = Sender(self.counters)
        self._initiator = Initiator(
            self.trees,
            merge,
            self._merge_trees,
            self._sender,
            timeout_ms=s.timeout_ms,
            scan_page_entries=s.scan_page_entries,
            bound=self.bound,
        )
        # The first periodic start waits one interval from the first Tick: a cluster starting (or a
        # node restarting, its trees still building) does not begin with an exchange storm.
        self._next_start_ms: int | None = None
        self._last_partition = -1
        self._peer_turn: dict[int, int] = {}
        self._forced: list[tuple[int, str]] = []
        self._run = _RepairRun()
        self._mine: tuple[Ring, int, tuple[int, ...]] | None = None

    # -- setup and local writes -----------------------------------------------------------------------

    def start(self) -> None:
        """Keep trees for the partitions this node is a primary of and those it holds data for; they
        build in the background from the next Tick on."""
        for partition in sorted({*self.my_partitions(), *self.storage.partitions()}):
            self.trees.track(partition)

    def set_ring(self, ring: Ring) -> None:
        self.ring = ring
        for partition in self.my_partitions():
            self.trees.track(partition)

    def on_write(
        self, partition: int, bucket: bytes, key: bytes, old_obj: bytes | None, new_obj: bytes | None
    ) -> None:
        """Every local change of the data space, with the stored bytes before and after."""
        self.trees.on_write(partition, bucket, key, old_obj, new_obj)

    def my_partitions(self) -> tuple[int, ...]:
        """The partitions this node is a primary of, ascending (cached per ring)."""
        if self._mine is None or self._mine[0] is not self.ring or self._mine[1] != self.n_val:
            self._mine = (self.ring, self.n_val, replica_partitions(self.ring, self.name, self.n_val))
        return self._mine[2]

    def others(self, partition: int) -> tuple[str, ...]:
        """The other primaries of `partition`, in preference-list order."""
        return tuple(n for n in primaries(self.ring, partition, self.n_val) if n != self.name)

    # -- events ---------------------------------------------------------------------------------------

    def on_tick(self, now_ms: int, out: list[Effect], down: Set[str] = frozenset()) -> None:
        self.trees.step(self.settings.build_entries_per_tick, now_ms)
        for ex in self._initiator.expired(now_ms):
            self._ended(ex, "timed_out")
        self._start_exchanges(now_ms, down, out)

    def on_message(self, src: str, msg: AeMessage, now_ms: int, out: list[Effect]) -> None:
        """Answer a peer's request, or advance one of our exchanges with its reply."""
        match msg:
            case AeNodesRequest():
                reply: AeMessage = answer_nodes(self.trees.tree(msg.partition), msg, self.bound)
                self._sender.send(src, reply, out)
            case AeKeysRequest():
                self._answer_keys(src, msg, out)
            case AeObjects(wanted=wanted) if wanted is not None:
                pages = answer_objects(
                    self.storage,
                    self._merge,
                    self._merge_trees,
                    msg,
                    bound=self.bound,
                    counters=self.counters,
                )
                for page in pages:
                    self._sender.send(src, page, out)
            case AeNodesReply() | AeKeysReply() | AeObjects():
                ended = self._initiator.on_reply(src, msg, now_ms, out)
                for ex, outcome in ended:
                    self._ended(ex, outcome)
                if ended and self._forced:
                    # A repair goes on at once rather than at the next Tick: an exchange of equal trees
                    # is one round trip, and waiting a tick for each would make a repair take minutes.
                    self._start_exchanges(now_ms, frozenset(), out, forced_only=True)

    def _answer_keys(self, src: str, msg: AeKeysRequest, out: list[Effect]) -> None:
        # The request names its segment count, so the answer never depends on this node's tree.
        try:
            reply = answer_keys(self.storage, msg, self.settings.scan_page_entries, self.bound)
        except StorageError:
            # No answer: the initiator times out and a later exchange tries again.
            self.counters["ae.storage_failed"] += 1
            return
        self._sender.send(src, reply, out)

    # -- scheduling -----------------------------------------------------------------------------------

    def _start_exchanges(
        self, now_ms: int, down: Set[str], out: list[Effect], *, forced_only: bool = False
    ) -> None:
        while len(self._initiator.active) < self.settings.max_concurrent:
            pair = self._pick_forced()
            forced = pair is not None
            if pair is None and forced_only:
                return
            if pair is None:
                if self._next_start_ms is None:
                    self._next_start_ms = now_ms + self.settings.interval_ms
                if not self.settings.enabled or now_ms < self._next_start_ms:
                    return
                pair = self._pick_periodic(down)
                if pair is None:
                    return
                self._next_start_ms = now_ms + self.settings.interval_ms
            partition, peer = pair
            self.counters["ae.exchanges_started"] += 1
            for ex, outcome in self._initiator.begin(partition, peer, forced, now_ms, out):
                self._ended(ex, outcome)

    def _busy(self, partition: int, peer: str) -> bool:
        return any(ex.partition == partition and ex.peer == peer for ex in self._initiator.active)

    def _pick_forced(self) -> tuple[int, str] | None:
        for i, (partition, peer) in enumerate(self._forced):
            if self.trees.tree(partition) is not None and not self._busy(partition, peer):
                return self._forced.pop(i)
        return None

    def _pick_periodic(self, down: Set[str]) -> tuple[int, str] | None:
        mine = self.my_partitions()
        after = [p for p in mine if p > self._last_partition]
        for partition in after + [p for p in mine if p <= self._last_partition]:
            others = self.others(partition)
            if self.trees.tree(partition) is None or not others:
                continue
            turn = self._peer_turn.get(partition, 0)
            for step in range(len(others)):
                peer = others[(turn + step) % len(others)]
                if peer not in down and not self._busy(partition, peer):
                    self._peer_turn[partition] = (turn + step + 1) % len(others)
                    self._last_partition = partition
                    return partition, peer
        return None

    # -- forced repair --------------------------------------------------------------------------------

    def repair(self, partition: int | None = None) -> RepairProgress:
        """Exchange now with every other primary of `partition`, or of every partition this node is a
        primary of. A call while a repair runs adds to it."""
        if partition is not None and not 0 <= partition < self.ring.partitions:
            raise ConfigError("partition", f"{partition} is not in [0, {self.ring.partitions})")
        if self._run.done == self._run.total:
            self._run = _RepairRun(repaired_before=self.counters["ae.keys_repaired"])
        run = self._run
        for p in self.my_partitions() if partition is None else (partition,):
            if p in run.pending:
                continue
            self.trees.track(p)
            others = self.others(p)
            run.total += 1
            if not others:
                run.done += 1
                continue
            run.pending[p] = len(others)
            self._forced.extend((p, peer) for peer in others)
        return self.progress()

    def progress(self) -> RepairProgress:
        run = self._run
        repaired = self.counters["ae.keys_repaired"] - run.repaired_before
        return RepairProgress(run.total, run.done, repaired, run.failed)

    def _ended(self, ex: Exchange, outcome: str) -> None:
        self.counters[f"ae.exchanges_{outcome}"] += 1
        run = self._run
        if not ex.forced or ex.partition not in run.pending:
            return
        if outcome != "completed":
            run.failed += 1
        run.pending[ex.partition] -= 1
        if run.pending[ex.partition] == 0:
            del run.pending[ex.partition]
            run.done += 1
