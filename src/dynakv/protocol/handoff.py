"""Hinted handoff wired into the node: the hint log, the outbound transfers, and received batches.

Paper section 4.6. A fallback keeps the writes it took for an unreachable primary with hints
(hints.py); once the node's view trusts that primary again, the hints replay through the one transfer
mechanism (transfer.py, transfer_manager.py): at once when it comes back (`on_peer_up`), and on every
tick for what is left (a transfer that paused, hints added while it ran). The primary merges each batch
durably and acks; only then are the hints deleted, with the fallback's copies of keys it is not a
primary of. The receiving side serves every transfer kind alike: a batch is merged and acked.

Levels kept current for /stats and /metrics: `hints.pending` (by the hint log) and `transfers.active`.

The handoff epoch. A coordinator mints a write's dot from its local copy's clock (dvv.py), so a node
that deleted its copy of a key must never mint under the same actor for that key again: it would reuse
a dot, and the primaries, whose clocks cover that dot, would drop the new write as already seen. The
handoff deletes fallback copies; so every ack that deleted one moves the node to a new epoch (persisted
durably before the deletes are written), and a fallback coordinator mints under `actor_for(actor)`, an
actor of the current epoch. A primary keeps its copies and its actor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence, Set
from typing import Final

from dynakv.core import codec
from dynakv.core.config import BucketProps, Limits, Timing
from dynakv.core.errors import DecodeError
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.hint_replay import Retarget, replay_hints
from dynakv.protocol.hints import Dropped, HintLog, HintWrite
from dynakv.protocol.messages import TransferAck, TransferBatch
from dynakv.protocol.notices import Notices
from dynakv.protocol.ports import DeleteOp, PutOp, StorageEngine, StorageError
from dynakv.protocol.transfer import TransferSettings, TransferStatus, receive_batch
from dynakv.protocol.transfer_manager import TransferManager

# How often hints are checked against `Timing.hint_age_max_ms` (at most; sooner when that is shorter).
EXPIRE_INTERVAL_MS: Final = 60_000
EPOCH_NAME: Final = b"handoff-epoch"
_EPOCH_TAG: Final = "handoff-epoch"


class _Hints(HintLog):
    """The hint log, calling `before_delete` before an ack's writes that delete data entries."""

    before_delete: Callable[[], None] = staticmethod(lambda: None)

    def ack_ops(self, target: str, acked: Sequence[tuple[bytes, bytes]]) -> HintWrite:
        write = super().ack_ops(target, acked)
        if any(isinstance(op, DeleteOp) for op in write.ops):
            self.before_delete()
        return write


class Handoff:
    def __init__(
        self,
        name: str,
        ring: Ring,
        storage: StorageEngine,
        *,
        limits: Limits,
        timing: Timing,
        counters: Counter[str],
        props_for: Callable[[bytes], BucketProps],
        notices: Notices,
    ) -> None:
        self.name = name
        self.ring = ring
        self.storage = storage
        self.counters = counters
        self.props_for = props_for
        self.notices = notices
        # Rebuilt from the meta space: hints survive restarts.
        self.hints = _Hints(storage, limits, timing, counters, self.is_primary)
        self.epoch = self._load_epoch()
        self.hints.before_delete = self._next_epoch
        self.manager = TransferManager(name, storage, TransferSettings.from_config(limits, timing), counters)
        # The other members (hints are replayed only to them) and the pass moving hints whose target
        # is no longer a primary of their partition (hint_replay.Retarget).
        self.members: frozenset[str] = frozenset()
        self.retarget = Retarget(name, self.hints, lambda bucket: self.props_for(bucket).n_val)
        self.on_finished: Callable[[TransferStatus], None] = lambda _status: None
        # Told of every batch received (partition, now_ms): the old owners' cleanup leaves such a
        # partition alone for a while (ownership_cleanup.py).
        self.on_received: Callable[[int, int], None] = lambda _partition, _now_ms: None
        self._expire_every_ms = min(EXPIRE_INTERVAL_MS, timing.hint_age_max_ms)
        self._next_expire_ms: int | None = None
        self.counters["transfers.active"] = 0

    def _load_epoch(self) -> int:
        data = self.storage.meta_get(EPOCH_NAME)
        if data is None:
            return 0
        try:
            return codec.want_int(codec.decode(data, _EPOCH_TAG), "handoff epoch", 0)
        except DecodeError:
            # Unreadable: any epoch above every one used before will do, and none was above this.
            self.counters["handoff.epoch_corrupt"] += 1
            return 1 << 32

    def _next_epoch(self) -> None:
        """Called before an ack deletes copies: the new epoch is durable before any copy is gone."""
        self.epoch += 1  # in memory first: this process never mints under the old epoch again
        try:
            self.storage.meta_put(EPOCH_NAME, codec.encode(_EPOCH_TAG, self.epoch), durable=True)
        except StorageError:
            self.counters["handoff.errors"] += 1

    def actor_for(self, actor: str) -> str:
        """The actor a fallback coordinator mints under: the node's own until its first handoff."""
        return actor if self.epoch == 0 else f"{actor}~h{self.epoch}"

    def is_primary(self, partition: int, bucket: bytes) -> bool:
        return self.name in primaries(self.ring, partition, self.props_for(bucket).n_val)

    def _level(self) -> None:
        # Finished transfers are counted (transfer.finished.*) and told to `on_finished` (ownership
        # transfers complete moves); then their statuses are dropped, or they pile up.
        for status in self.manager.take_finished():
            self.on_finished(status)
        self.counters["transfers.active"] = len(self.manager.status())

    # -- the fallback's writes -----------------------------------------------------------------------

    def store(
        self,
        hint_for: str,
        partition: int,
        bucket: bytes,
        key: bytes,
        data: bytes,
        *,
        now_ms: int,
        durable: bool,
    ) -> None:
        """A coordinator that is a fallback stores its new object `data` and the hint naming the primary
        it stands in for, in one atomic write (the replica side uses `hints.store_hinted`, which merges).
        Raises StorageError."""
        recorded = self.hints.record_ops(hint_for, partition, bucket, key, size=len(data), now_ms=now_ms)
        ops = [PutOp(partition, bucket, key, data)]
        if isinstance(recorded, Dropped):
            self.storage.write_batch(ops, durable=durable)
            self.dropped(recorded)
            return
        self.storage.write_batch([*ops, *recorded.ops], durable=durable)
        self.hints.applied(recorded)

    def dropped(self, dropped: Dropped) -> None:
        self.notices.add(dropped.message())

    # -- time and peers ------------------------------------------------------------------------------

    def set_members(self, members: Set[str], ring: Ring, ring_known: bool) -> None:
        """The members other than this node, and the ring (`ring_known` false: a placeholder while the
        node has not found its cluster). Transfers to a node no longer a member are cancelled;
        its hints, like every hint whose target the new ring no longer makes a primary of the hint's
        partition, move to the partition's primaries over the next ticks."""
        for gone in sorted(self.members - members):
            # A node no longer a member receives nothing again: its transfers of every kind end here
            # (paused ones would hold a place under the manager's bound forever).
            for status in self.manager.status():
                if status.target == gone:
                    self.manager.cancel(status.transfer_id)
        self.members = frozenset(members)
        self.ring = ring
        self.retarget.set_ring(ring if ring_known else None)
        self._level()

    def _replayable(self, down: Set[str]) -> Callable[[str], bool]:
        return lambda target: target in self.members and target not in down

    def on_tick(self, now_ms: int, down: Set[str], out: list[Effect]) -> None:
        self.manager.on_tick(now_ms, out)
        self.retarget.on_tick(self.dropped)
        replay_hints(self.manager, self.hints, self._replayable(down), now_ms, out)
        if self._next_expire_ms is None or now_ms >= self._next_expire_ms:
            self._next_expire_ms = now_ms + self._expire_every_ms
            for target, count in self.hints.expire(now_ms):
                self.notices.add(
                    f"{count} hints for {target} expired (older than hint_age_max_ms); "
                    "anti-entropy will repair what they named"
                )
        self._level()

    def on_peer_down(self, node: str) -> None:
        self.manager.on_peer_down(node)
        self._level()

    def on_peer_up(self, node: str, now_ms: int, down: Set[str], out: list[Effect]) -> None:
        """`node` is trusted again: resume its transfers and replay its hints now, not at the next tick."""
        self.manager.on_peer_up(node, now_ms, out)
        replay_hints(self.manager, self.hints, self._replayable(down), now_ms, out)
        self._level()

    # -- messages ------------------------------------------------------------------------------------

    def on_message(self, src: str, msg: TransferBatch | TransferAck, now_ms: int, out: list[Effect]) -> None:
        if isinstance(msg, TransferBatch):
            self.on_received(msg.partition, now_ms)
            ack = receive_batch(
                self.storage,
                msg,
                lww=lambda bucket: self.props_for(bucket).last_write_wins,
                counters=self.counters,
            )
            out.append(Send(src, ack))
            return
        self.manager.on_ack(src, msg, now_ms, out)
        self._level()
