"""A node's outbound transfers (transfer.py): the bound on how many run at once, the byte throttle,
acks, timeouts, and targets going down and up. Effects are `Send`s of `TransferBatch`es.

Throttle: a budget of `bytes_per_tick` refills on every tick (never above one tick's worth); a batch is
sent while the budget is positive and its size is taken from it, so a batch larger than the budget still
goes out and the debt delays the next ones. Ticks start the round at a rotating position in id order, so
under the throttle every transfer gets its turn (deterministically).

A target going down pauses its ownership and repair transfers (they resume when it is back, from their
cursor) and drops its hinted ones: their progress is the hints themselves, and `hints.replay_hints`
starts them again once the target answers. Paused transfers keep their slot in the concurrency bound.

Counted by kind (`transfer.<what>.<kind>`, for /stats and /metrics): entries and bytes sent (bytes again
on a resend) and acknowledged.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Final

from dynakv.core import codec
from dynakv.core.errors import DecodeError
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.messages import TransferAck, TransferKind
from dynakv.protocol.ports import StorageEngine, StorageError
from dynakv.protocol.transfer import (
    NotStarted,
    OutboundTransfer,
    TransferSettings,
    TransferSource,
    TransferState,
    TransferStatus,
)

# The next free transfer id is kept in the meta space, reserved a block at a time with a durable write,
# so ids stay unique across restarts (a stale ack can never settle a newer transfer's batch).
TRANSFER_IDS_NAME: Final = b"transfer-ids"
ID_BLOCK: Final = 1024
_IDS_TAG: Final = "xfer-ids"


class TransferManager:
    def __init__(
        self, name: str, storage: StorageEngine, settings: TransferSettings, counters: Counter[str]
    ) -> None:
        self.name = name
        self.storage = storage
        self.settings = settings
        self.counters = counters
        self._transfers: dict[int, OutboundTransfer] = {}
        self._by_key: dict[tuple[str, str, int], int] = {}
        self._next_id = 0
        self._id_limit = 0
        self._budget = settings.bytes_per_tick
        self._turn = 0
        self._finished: list[TransferStatus] = []

    # -- starting and ending -------------------------------------------------------------------------

    def _new_id(self) -> int:
        if self._next_id >= self._id_limit:
            data = self.storage.meta_get(TRANSFER_IDS_NAME)
            stored = 0 if data is None else codec.want_int(codec.decode(data, _IDS_TAG), "transfer ids", 0)
            start = max(stored, self._next_id)
            self.storage.meta_put(TRANSFER_IDS_NAME, codec.encode(_IDS_TAG, start + ID_BLOCK), durable=True)
            self._next_id, self._id_limit = start, start + ID_BLOCK
        self._next_id += 1
        return self._next_id - 1

    def start(self, target: str, source: TransferSource, now_ms: int, out: list[Effect]) -> int | NotStarted:
        """Start sending `source` to `target` and send its first batch; the id of the transfer (the
        running one if the same kind, target and partition is already under way), or why not."""
        assert target != self.name, "a node never transfers to itself"
        key = (source.kind.value, target, source.partition)
        running = self._by_key.get(key)
        if running is not None:
            return running
        if len(self._transfers) >= self.settings.concurrent_max:
            self.counters["transfer.at_bound"] += 1
            return NotStarted(f"{len(self._transfers)} transfers running, the limit", True)
        try:
            transfer_id = self._new_id()
            transfer = OutboundTransfer(transfer_id, target, source, self.settings)
        except (StorageError, DecodeError) as err:
            self.counters["transfer.errors"] += 1
            return NotStarted(f"storage: {err}", False)
        self._transfers[transfer_id] = transfer
        self._by_key[key] = transfer_id
        self.counters["transfer.started"] += 1
        self._send(transfer, now_ms, out)
        return transfer_id

    def _remove(self, transfer: OutboundTransfer) -> None:
        del self._transfers[transfer.transfer_id]
        del self._by_key[(transfer.kind.value, transfer.target, transfer.partition)]

    def cancel(self, transfer_id: int) -> bool:
        transfer = self._transfers.get(transfer_id)
        if transfer is None:
            return False
        self._remove(transfer)
        self.counters["transfer.cancelled"] += 1
        return True

    def take_finished(self) -> list[TransferStatus]:
        """The transfers finished since the last call (every entry acked), in the order they finished."""
        finished, self._finished = self._finished, []
        return finished

    def status(self) -> list[TransferStatus]:
        return [_status(self._transfers[tid]) for tid in sorted(self._transfers)]

    # -- sending -------------------------------------------------------------------------------------

    def _send(self, transfer: OutboundTransfer, now_ms: int, out: list[Effect]) -> None:
        if self._budget <= 0:
            return
        running = transfer.state is TransferState.RUNNING
        entries_before = transfer.progress.entries_sent
        try:
            flight = transfer.poll(now_ms)
        except (StorageError, DecodeError):
            self.counters["transfer.errors"] += 1
            transfer.pause(now_ms + self.settings.pause_ms)
            return
        if flight is None:
            if running and transfer.state is TransferState.PAUSED:
                self.counters["transfer.paused"] += 1  # out of retries
            return
        self._budget -= flight.size
        self.counters["transfer.batches_sent"] += 1
        # By kind, for /stats and /metrics: entries once (a resend sends none anew), bytes every time.
        kind = transfer.kind.value
        self.counters[f"transfer.entries_sent.{kind}"] += transfer.progress.entries_sent - entries_before
        self.counters[f"transfer.bytes_sent.{kind}"] += flight.size
        out.append(Send(transfer.target, flight.batch))

    def on_tick(self, now_ms: int, out: list[Effect]) -> None:
        self._budget = min(self._budget + self.settings.bytes_per_tick, self.settings.bytes_per_tick)
        ids = sorted(self._transfers)
        if not ids:
            return
        self._turn = (self._turn + 1) % len(ids)
        for transfer_id in ids[self._turn :] + ids[: self._turn]:
            self._send(self._transfers[transfer_id], now_ms, out)

    def on_ack(self, src: str, ack: TransferAck, now_ms: int, out: list[Effect]) -> None:
        transfer = self._transfers.get(ack.transfer_id)
        if transfer is None or src != transfer.target:
            self.counters["transfer.stale_acks"] += 1
            return
        flight = transfer.on_ack(ack, now_ms)
        if flight is None:
            if not ack.ok:
                self.counters["transfer.refused"] += 1
                self._send(transfer, now_ms, out)
            return
        last = flight.batch.last
        try:
            # Buffered on purpose (transfer.py): losing these writes only makes us resend acked entries.
            self.storage.write_batch(transfer.source.ack_ops(flight.chunk, last), durable=False)
            transfer.source.ack_applied(flight.chunk, last)
        except (StorageError, DecodeError):
            self.counters["transfer.errors"] += 1
            transfer.pause(now_ms + self.settings.pause_ms)
            return
        transfer.settle(flight)
        self.counters[f"transfer.entries_acked.{transfer.kind.value}"] += len(flight.chunk.entries)
        self.counters[f"transfer.bytes_acked.{transfer.kind.value}"] += flight.size
        if transfer.state is TransferState.DONE:
            self._remove(transfer)
            self._finished.append(_status(transfer))
            self.counters[f"transfer.finished.{transfer.kind.value}"] += 1
            return
        self._send(transfer, now_ms, out)

    # -- peers ---------------------------------------------------------------------------------------

    def on_peer_down(self, node: str) -> None:
        for transfer_id in sorted(self._transfers):
            transfer = self._transfers[transfer_id]
            if transfer.target != node:
                continue
            if transfer.kind is TransferKind.HINTED:
                self._remove(transfer)
                self.counters["transfer.cancelled"] += 1
            else:
                transfer.pause(None)

    def on_peer_up(self, node: str, now_ms: int, out: list[Effect]) -> None:
        for transfer_id in sorted(self._transfers):
            transfer = self._transfers[transfer_id]
            if transfer.target == node:
                transfer.resume()
                self._send(transfer, now_ms, out)


def _status(transfer: OutboundTransfer) -> TransferStatus:
    # A copy of the progress: a status is a snapshot, the transfer goes on counting.
    progress = dataclasses.replace(transfer.progress)
    return TransferStatus(
        transfer.transfer_id, transfer.kind, transfer.target, transfer.partition, transfer.state, progress
    )
