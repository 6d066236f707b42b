"""The one transfer mechanism: batched, acknowledged, bounded in flight, resumable (ARCHITECTURE.md 5).

Hinted handoff, ownership moves and repairs (riak_core's handoff kinds) all move objects the same way:
a sender reads entries `(bucket, key, obj)` of one partition from a *source* in order, sends them as
`TransferBatch`es of at most `Limits.transfer_batch_bytes_max` (at least one entry, however large), one
batch in flight per transfer, and waits for a `TransferAck`. The receiver merges every entry into its
copy with the replicas' DVV merge, all in one durable `write_batch`, and only then acks `ok=True`.

Why this is safe under loss, duplication and crashes of either side:

* The receiver keeps no per-transfer state: merging is a join (idempotent), so a batch sent twice (a
  lost ack, a retry) is merged twice harmlessly and acked again.
* The sender advances only on an ack of the batch in flight (same transfer id and seq, from the target).
  On an ack it applies the source's ack ops (hinted: delete the acked hints; ownership/repair: store the
  cursor) *buffered*, not durably: losing them in a crash only moves the sender back, and resending what
  the receiver already holds is harmless. Nothing is ever skipped: the cursor is the last acked entry.
* Transfer ids are unique across the sender's restarts (blocks reserved durably in the meta space), so
  an ack from before a crash can never settle a batch of a transfer started after it.
* A batch unacknowledged after `ack_timeout_ms` is resent (same seq); after `retries_max` resends, or
  when the target goes down, the transfer pauses and later resumes from its cursor (re-reading the
  source, so a resumed transfer sends the newest objects).

Sources read live storage: an entry written before the cursor after the transfer started is not sent
by this transfer (an ownership move must forward or re-scan such writes; the membership issue's job).

`TransferManager` (transfer_manager.py) runs a node's outbound transfers: the concurrency bound, the
throttle, acks and peers going down and up.

Pure: no I/O but the storage port, no clock (`now_ms` is handed in).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from dynakv.core import codec
from dynakv.core.config import Limits, Timing
from dynakv.core.errors import DecodeError
from dynakv.core.objects import decode_object, encode_object, last_write_wins
from dynakv.protocol.messages import TransferAck, TransferBatch, TransferEntry, TransferKind
from dynakv.protocol.ports import MetaDeleteOp, MetaPutOp, PutOp, StorageEngine, StorageError, WriteOp

# Bytes an entry costs in a batch besides bucket, key and object: msgpack headers, generously.
ENTRY_OVERHEAD_BYTES: Final = 16
SCAN_PAGE: Final = 128
_CURSOR_TAG: Final = "xfer-cursor"


def entry_bytes(bucket: bytes, key: bytes, obj: bytes) -> int:
    return len(bucket) + len(key) + len(obj) + ENTRY_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class Chunk:
    """What a source read for one batch: the entries, the cursor after them (where the next read
    starts), whether the source is exhausted, and `marks`, source-specific facts its ack settles (for
    hints: each hint's name and value as read)."""

    entries: tuple[TransferEntry, ...]
    cursor: bytes | None
    done: bool
    marks: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def size(self) -> int:
        return sum(entry_bytes(e.bucket, e.key, e.obj) for e in self.entries)


class TransferSource(Protocol):
    """Where a transfer's entries come from, and what an ack of them changes on the sender."""

    @property
    def kind(self) -> TransferKind: ...

    @property
    def partition(self) -> int: ...

    def start_cursor(self) -> bytes | None:
        """Where a (re)started transfer begins: a persisted cursor, or None for the beginning."""
        ...

    def total(self) -> int | None:
        """How many entries are left to send, if cheaply known (for progress reports)."""
        ...

    def read(self, after: bytes | None, bytes_max: int) -> Chunk:
        """The entries after `after`, at most `bytes_max` of them by `entry_bytes` (at least one)."""
        ...

    def ack_ops(self, chunk: Chunk, last: bool) -> list[WriteOp]:
        """The writes that record `chunk` as delivered (`last`: and the transfer as finished)."""
        ...

    def ack_applied(self, chunk: Chunk, last: bool) -> None:
        """Called after `ack_ops` were written, to update what the source keeps in memory."""
        ...


# ---------------------------------------------------------------------------------------------------
# The receiving side


def merge_bytes(stored: bytes | None, incoming: bytes, *, lww: bool) -> bytes | None:
    """The bytes to store after merging `incoming` into `stored` (DVV sync, as `replica.merge_local`),
    or None when the stored copy already holds everything. Raises DecodeError for undecodable input."""
    theirs = decode_object(incoming)
    if lww and len(theirs.siblings) > 1:
        theirs = last_write_wins(theirs)
        incoming = encode_object(theirs)
    if stored is None:
        return incoming
    ours = decode_object(stored)
    merged = ours.sync(theirs)
    if lww:
        merged = last_write_wins(merged)
    if merged == ours:
        return None
    return incoming if merged == theirs else encode_object(merged)


# Called for every entry a batch changed, after the durable write: (partition, bucket, key, old, new).
Stored = Callable[[int, bytes, bytes, bytes | None, bytes], None]


def receive_batch(
    storage: StorageEngine,
    batch: TransferBatch,
    *,
    lww: Callable[[bytes], bool],
    counters: Counter[str],
    on_stored: Stored | None = None,
) -> TransferAck:
    """Merge a batch into local storage in one durable write; ack ok only once that write returned.

    An undecodable entry fails the whole batch (ok=False, counted): an ack must mean every entry is
    stored. A duplicate batch merges to no change and is acked again. `lww` gives a bucket's
    last_write_wins property; `on_stored` hears of every changed entry (to update Merkle trees).
    """
    ops: dict[tuple[bytes, bytes], PutOp] = {}
    old: dict[tuple[bytes, bytes], bytes | None] = {}
    try:
        for entry in batch.entries:
            ident = (entry.bucket, entry.key)
            if ident not in old:
                old[ident] = storage.get(batch.partition, *ident)
            before = ops[ident].value if ident in ops else old[ident]
            data = merge_bytes(before, entry.obj, lww=lww(entry.bucket))
            if data is not None:
                ops[ident] = PutOp(batch.partition, entry.bucket, entry.key, data)
        # Durable even when nothing changed: the copies may have been written buffered before, and a
        # durable write makes every earlier write durable too (ports.py).
        storage.write_batch(list(ops.values()), durable=True)
    except (StorageError, DecodeError):
        counters["transfer.receive_errors"] += 1
        return TransferAck(batch.transfer_id, batch.seq, False)
    counters["transfer.entries_received"] += len(batch.entries)
    if on_stored is not None:
        for (bucket, key), op in ops.items():
            on_stored(batch.partition, bucket, key, old[(bucket, key)], op.value)
    return TransferAck(batch.transfer_id, batch.seq, True)


# ---------------------------------------------------------------------------------------------------
# A partition as a source (ownership and repair)


def cursor_name(kind: TransferKind, target: str, partition: int) -> bytes:
    """The meta name of a partition transfer's persisted cursor; the target is length-prefixed so no
    name is a prefix of another's."""
    raw = target.encode()
    return (
        b"transfer/"
        + kind.value.encode()
        + b"/"
        + len(raw).to_bytes(2, "big")
        + raw
        + partition.to_bytes(8, "big")
    )


def encode_cursor(bucket: bytes, key: bytes) -> bytes:
    return codec.encode(_CURSOR_TAG, [bucket, key])


def decode_cursor(data: bytes) -> tuple[bytes, bytes]:
    bucket, key = codec.want_tuple(codec.decode(data, _CURSOR_TAG), "cursor", 2)
    return codec.want_bytes(bucket, "cursor.bucket"), codec.want_bytes(key, "cursor.key")


class PartitionSource:
    """Every data entry of one partition in scan order; the cursor, persisted on each ack under
    `cursor_name`, lets a transfer restarted after a crash resume after the last acked entry."""

    def __init__(self, storage: StorageEngine, kind: TransferKind, target: str, partition: int) -> None:
        assert kind is not TransferKind.HINTED, "hinted transfers read hints (hints.HintSource)"
        self.storage = storage
        self._kind = kind
        self._partition = partition
        self.name = cursor_name(kind, target, partition)
        # The mean entry size seen so far: a scan page holds about what one batch takes, not SCAN_PAGE
        # entries of which most would be read only to be dropped (large values, small batches).
        self._mean_entry_bytes: int | None = None

    @property
    def kind(self) -> TransferKind:
        return self._kind

    @property
    def partition(self) -> int:
        return self._partition

    def start_cursor(self) -> bytes | None:
        data = self.storage.meta_get(self.name)
        if data is None:
            return None
        decode_cursor(data)  # a corrupt cursor raises DecodeError here, not in the middle of a scan
        return data

    def total(self) -> int | None:
        return self.storage.count(self._partition)

    def read(self, after: bytes | None, bytes_max: int) -> Chunk:
        position = None if after is None else decode_cursor(after)
        entries: list[TransferEntry] = []
        size = 0
        while True:
            limit = self._page_limit(bytes_max - size)
            page = self.storage.scan(self._partition, position, limit)
            for bucket, key, obj in page:
                cost = entry_bytes(bucket, key, obj)
                mean = self._mean_entry_bytes
                self._mean_entry_bytes = cost if mean is None else (mean * 7 + cost) // 8
                if entries and size + cost > bytes_max:
                    return Chunk(tuple(entries), after, False)
                entries.append(TransferEntry(bucket, key, obj))
                size += cost
                position = (bucket, key)
                after = encode_cursor(bucket, key)
            if len(page) < limit:
                return Chunk(tuple(entries), after, True)

    def _page_limit(self, room: int) -> int:
        """Entries to scan for `room` bytes: one more than fit at the mean size (the one that does not
        fit ends the batch), at least 2, at most SCAN_PAGE; SCAN_PAGE before any entry was seen."""
        if self._mean_entry_bytes is None:
            return SCAN_PAGE
        return max(2, min(SCAN_PAGE, room // max(1, self._mean_entry_bytes) + 1))

    def ack_ops(self, chunk: Chunk, last: bool) -> list[WriteOp]:
        if last:
            return [MetaDeleteOp(self.name)]
        return [] if chunk.cursor is None else [MetaPutOp(self.name, chunk.cursor)]

    def ack_applied(self, chunk: Chunk, last: bool) -> None:
        return None


# ---------------------------------------------------------------------------------------------------
# The sending side


class TransferState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class TransferSettings:
    batch_bytes_max: int
    bytes_per_tick: int
    concurrent_max: int
    ack_timeout_ms: int
    retries_max: int = 5
    # How long a transfer that exhausted its retries waits before it tries again by itself.
    pause_ms: int = 30_000

    @classmethod
    def from_config(cls, limits: Limits, timing: Timing) -> TransferSettings:
        return cls(
            batch_bytes_max=limits.transfer_batch_bytes_max,
            bytes_per_tick=limits.transfer_bytes_per_tick_max,
            concurrent_max=limits.transfers_concurrent_max,
            # A batch is one durable write of at most a MiB on the receiver: a request's time is ample.
            ack_timeout_ms=timing.request_timeout_ms,
        )


@dataclass(slots=True)
class Progress:
    entries_sent: int = 0
    bytes_sent: int = 0
    entries_acked: int = 0
    bytes_acked: int = 0
    batches_sent: int = 0
    resends: int = 0
    total: int | None = None


@dataclass(slots=True)
class _Flight:
    batch: TransferBatch
    chunk: Chunk
    size: int
    deadline_ms: int
    resends: int = 0


class OutboundTransfer:
    """The sender's state of one transfer: cursor, the batch in flight, retries, progress."""

    def __init__(
        self, transfer_id: int, target: str, source: TransferSource, settings: TransferSettings
    ) -> None:
        self.transfer_id = transfer_id
        self.target = target
        self.source = source
        self.settings = settings
        self.state = TransferState.RUNNING
        self.cursor = source.start_cursor()
        self.seq = 0
        self.flight: _Flight | None = None
        self.resume_at_ms: int | None = None
        self.progress = Progress(total=source.total())

    @property
    def kind(self) -> TransferKind:
        return self.source.kind

    @property
    def partition(self) -> int:
        return self.source.partition

    def poll(self, now_ms: int) -> _Flight | None:
        """The batch to send now (new or resent), or None. Raises StorageError from the source."""
        if (
            self.state is TransferState.PAUSED
            and self.resume_at_ms is not None
            and now_ms >= self.resume_at_ms
        ):
            self.resume()
        if self.state is not TransferState.RUNNING:
            return None
        flight = self.flight
        if flight is None:
            chunk = self.source.read(self.cursor, self.settings.batch_bytes_max)
            batch = TransferBatch(
                self.transfer_id, self.kind, self.partition, self.seq, chunk.entries, chunk.done
            )
            self.seq += 1
            flight = self.flight = _Flight(batch, chunk, chunk.size, now_ms + self.settings.ack_timeout_ms)
            self.progress.entries_sent += len(chunk.entries)
        elif now_ms < flight.deadline_ms:
            return None
        elif flight.resends >= self.settings.retries_max:
            self.pause(now_ms + self.settings.pause_ms)
            return None
        else:
            flight.resends += 1
            flight.deadline_ms = now_ms + self.settings.ack_timeout_ms
            self.progress.resends += 1
        self.progress.batches_sent += 1
        self.progress.bytes_sent += flight.size
        return flight

    def on_ack(self, ack: TransferAck, now_ms: int) -> _Flight | None:
        """The flight this ack settles (ok, right seq), or None. A refusal (ok=False) makes the batch
        due for resending now: it counts as a retry, so a receiver that keeps failing pauses us."""
        flight = self.flight
        if flight is None or ack.seq != flight.batch.seq or self.state is not TransferState.RUNNING:
            return None
        if not ack.ok:
            flight.deadline_ms = now_ms
            return None
        return flight

    def settle(self, flight: _Flight) -> None:
        """Record an acked flight whose ack ops were written: advance the cursor."""
        assert flight is self.flight
        self.cursor = flight.chunk.cursor
        self.flight = None
        self.progress.entries_acked += len(flight.chunk.entries)
        self.progress.bytes_acked += flight.size
        if flight.batch.last:
            self.state = TransferState.DONE

    def pause(self, resume_at_ms: int | None) -> None:
        """Stop sending; forget the batch in flight (it is read again from the cursor on resume).
        `resume_at_ms` None waits for `resume()` (the target is down)."""
        self.state = TransferState.PAUSED
        self.flight = None
        self.resume_at_ms = resume_at_ms

    def resume(self) -> None:
        if self.state is TransferState.PAUSED:
            self.state = TransferState.RUNNING
            self.resume_at_ms = None


@dataclass(frozen=True, slots=True)
class TransferStatus:
    transfer_id: int
    kind: TransferKind
    target: str
    partition: int
    state: TransferState
    progress: Progress


@dataclass(frozen=True, slots=True)
class NotStarted:
    """A transfer could not start: too many are running (`at_bound`), or the storage failed."""

    reason: str
    at_bound: bool
