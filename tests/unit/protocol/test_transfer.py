"""The transfer mechanism, driven end to end: a sender's TransferManager and a receiver's storage, with
the Send effects carried across by hand (lost, duplicated or refused where a test says so)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from dynakv.core.config import Limits, Timing
from dynakv.core.objects import Content, StoredObject, decode_object, encode_object
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.hint_replay import replay_hints
from dynakv.protocol.hints import HintLog, store_hinted
from dynakv.protocol.messages import TransferAck, TransferBatch, TransferEntry, TransferKind
from dynakv.protocol.ports import StorageEngine
from dynakv.protocol.replica import EMPTY
from dynakv.protocol.transfer import (
    NotStarted,
    PartitionSource,
    TransferSettings,
    TransferState,
    entry_bytes,
    receive_batch,
)
from dynakv.protocol.transfer_manager import TransferManager
from dynakv.storage.faulty import FaultyEngine
from dynakv.storage.memory import MemoryEngine

TIMEOUT_MS = 1_000


def version(value: bytes, base: StoredObject = EMPTY, actor: str = "b") -> StoredObject:
    return base.update(base.context(), actor, Content(value, last_modified_ms=1), 1)


def settings(**changes: int) -> TransferSettings:
    values = {
        "batch_bytes_max": 1 << 20,
        "bytes_per_tick": 1 << 30,
        "concurrent_max": 4,
        "ack_timeout_ms": TIMEOUT_MS,
        "retries_max": 3,
        "pause_ms": 10_000,
    }
    return TransferSettings(**(values | changes))


def no_lww(bucket: bytes) -> bool:
    return False


def batches(out: list[Effect]) -> list[TransferBatch]:
    sent = []
    for effect in out:
        assert isinstance(effect, Send) and isinstance(effect.msg, TransferBatch)
        sent.append(effect.msg)
    out.clear()
    return sent


def deliver(
    manager: TransferManager,
    receiver: StorageEngine,
    out: list[Effect],
    now_ms: int = 0,
    lose_ack: Callable[[TransferBatch], bool] = lambda batch: False,
) -> list[TransferBatch]:
    """Carry batches to the receiver and its acks back until nothing is left to send."""
    sent: list[TransferBatch] = []
    while out:
        assert len(sent) < 1000, "the transfer does not end"
        effect = out.pop(0)
        assert isinstance(effect, Send) and isinstance(effect.msg, TransferBatch)
        sent.append(effect.msg)
        ack = receive_batch(receiver, effect.msg, lww=no_lww, counters=Counter())
        if not lose_ack(effect.msg):
            manager.on_ack(effect.dst, ack, now_ms, out)
    return sent


class Fallback:
    """Node B, standing in for A: its storage, hint log and transfer manager."""

    def __init__(self, storage: StorageEngine | None = None, **limits: int) -> None:
        self.storage = storage or MemoryEngine()
        self.counters: Counter[str] = Counter()
        self.hints = HintLog(self.storage, Limits(), Timing(), self.counters, lambda p, b: False)
        self.manager = TransferManager("B", self.storage, settings(**limits), self.counters)

    def write(self, key: bytes, obj: StoredObject, partition: int = 3) -> None:
        store_hinted(
            self.hints, "A", partition, b"b", key, incoming=encode_object(obj), now_ms=0, durable=True
        )

    def replay(self, now_ms: int = 0) -> list[Effect]:
        out: list[Effect] = []
        replay_hints(self.manager, self.hints, lambda node: node == "A", now_ms, out)
        return out


def values(storage: StorageEngine, partition: int, key: bytes) -> list[bytes]:
    data = storage.get(partition, b"b", key)
    return [] if data is None else [c.value for c in decode_object(data).values()]


# -- hinted handoff --------------------------------------------------------------------------------------


def test_hints_are_replayed_to_the_primary_and_then_deleted() -> None:
    b, a = Fallback(), MemoryEngine()
    for key in (b"k1", b"k2"):
        b.write(key, version(b"v-" + key))
    b.write(b"k3", version(b"v-k3"), partition=5)
    sent = deliver(b.manager, a, b.replay())
    assert {batch.partition for batch in sent} == {3, 5} and all(
        batch.kind is TransferKind.HINTED for batch in sent
    )
    assert values(a, 3, b"k1") == [b"v-k1"] and values(a, 5, b"k3") == [b"v-k3"]
    assert b.hints.pending_total() == 0 and b.storage.get(3, b"b", b"k1") is None
    assert [s.kind for s in b.manager.take_finished()] == [TransferKind.HINTED] * 2
    assert b.counters["transfer.finished.hinted"] == 2 and b.manager.status() == []


def test_replay_sends_the_newest_version_of_a_key() -> None:
    b, a = Fallback(), MemoryEngine()
    v1 = version(b"v1")
    b.write(b"k", v1)
    b.write(b"k", version(b"v2", v1))
    [batch] = deliver(b.manager, a, b.replay())
    assert len(batch.entries) == 1
    assert values(a, 3, b"k") == [b"v2"]


def test_a_refused_or_lost_ack_keeps_the_hint_and_the_batch_is_resent() -> None:
    b = Fallback()
    a = FaultyEngine(MemoryEngine())
    b.write(b"k", version(b"v"))
    a.fail_next("write_batch")  # the receiver's durable write fails: it must answer ok=False
    out = b.replay()
    [first] = batches(list(out))
    ack = receive_batch(a, first, lww=no_lww, counters=Counter())
    assert ack == TransferAck(first.transfer_id, first.seq, False) and a.get(3, b"b", b"k") is None
    out.clear()
    b.manager.on_ack("A", ack, 0, out)
    assert b.hints.pending("A") == 1 and b.counters["transfer.refused"] == 1
    [again] = deliver(b.manager, a, out, lose_ack=lambda batch: True)  # resent at once; its ack is lost
    assert again == first and b.hints.pending("A") == 1
    b.manager.on_tick(TIMEOUT_MS - 1, out)
    assert out == []
    b.manager.on_tick(TIMEOUT_MS, out)
    [third] = deliver(b.manager, a, out)
    assert third == first and b.hints.pending("A") == 0 and values(a, 3, b"k") == [b"v"]


def test_a_key_written_again_while_its_batch_is_in_flight_is_replayed_again() -> None:
    b, a = Fallback(), MemoryEngine()
    v1 = version(b"v1")
    b.write(b"k", v1)
    out = b.replay()
    b.write(b"k", version(b"v2", v1))
    deliver(b.manager, a, out)
    assert values(a, 3, b"k") == [b"v1"] and b.hints.pending("A") == 1
    assert b.storage.get(3, b"b", b"k") is not None
    deliver(b.manager, a, b.replay())
    assert values(a, 3, b"k") == [b"v2"] and b.hints.pending("A") == 0


def test_a_target_going_down_drops_its_hinted_transfer_and_replay_starts_it_again() -> None:
    b, a = Fallback(), MemoryEngine()
    b.write(b"k", version(b"v"))
    lost = b.replay()
    b.manager.on_peer_down("A")
    assert b.manager.status() == [] and b.hints.pending("A") == 1
    assert batches(lost)[0].seq == 0
    deliver(b.manager, a, b.replay())
    assert b.hints.pending("A") == 0


# -- batches -----------------------------------------------------------------------------------------------


def fill(storage: StorageEngine, partition: int, sizes: list[int]) -> list[bytes]:
    keys = []
    for i, size in enumerate(sizes):
        key = b"k%03d" % i
        storage.put(partition, b"b", key, encode_object(version(b"x" * size)), durable=True)
        keys.append(key)
    return keys


def test_batches_respect_the_byte_bound_and_a_large_entry_goes_alone() -> None:
    sender, receiver = MemoryEngine(), MemoryEngine()
    fill(sender, 7, [300] * 10 + [5000] + [300] * 3)
    manager = TransferManager("B", sender, settings(batch_bytes_max=1000), Counter())
    out: list[Effect] = []
    manager.start("C", PartitionSource(sender, TransferKind.REPAIR, "C", 7), 0, out)
    sent = deliver(manager, receiver, out)
    sizes = [sum(entry_bytes(e.bucket, e.key, e.obj) for e in batch.entries) for batch in sent]
    [large] = [i for i, size in enumerate(sizes) if size > 1000]
    assert len(sent[large].entries) == 1 and len(sent[large].entries[0].obj) > 5000
    assert all(0 < len(batch.entries) <= 2 for batch in sent)  # two 300-byte objects fit, three do not
    assert [batch.seq for batch in sent] == list(range(len(sent))) and sent[-1].last
    assert receiver.scan(7) == sender.scan(7)


def test_a_lost_batch_is_resent_after_the_timeout_and_a_duplicate_is_harmless() -> None:
    sender, receiver = MemoryEngine(), MemoryEngine()
    fill(sender, 2, [10, 10])
    counters: Counter[str] = Counter()
    manager = TransferManager("B", sender, settings(), counters)
    out: list[Effect] = []
    manager.start("C", PartitionSource(sender, TransferKind.OWNERSHIP, "C", 2), 0, out)
    [lost] = batches(out)
    manager.on_tick(TIMEOUT_MS - 1, out)
    assert out == []
    manager.on_tick(TIMEOUT_MS, out)
    [resent] = batches(list(out))
    assert resent == lost
    # The first copy arrives late after all: merged twice, acked twice; the second ack is stale.
    first = receive_batch(receiver, lost, lww=no_lww, counters=Counter())
    stored = receiver.scan(2)
    second = receive_batch(receiver, resent, lww=no_lww, counters=Counter())
    assert first == second and first.ok and receiver.scan(2) == stored
    out.clear()
    manager.on_ack("C", first, TIMEOUT_MS, out)
    manager.on_ack("C", second, TIMEOUT_MS, out)
    assert out == [] and counters["transfer.finished.ownership"] == 1
    assert manager.take_finished()[0].progress.resends == 1


def test_the_receiver_merges_siblings_and_writes_durably() -> None:
    receiver = MemoryEngine()
    mine = version(b"mine", actor="c")
    receiver.put(1, b"b", b"k", encode_object(mine))
    theirs = version(b"theirs", actor="b")
    batch = TransferBatch(
        9, TransferKind.REPAIR, 1, 0, (TransferEntry(b"b", b"k", encode_object(theirs)),), True
    )
    stored: list[tuple[object, ...]] = []
    assert receive_batch(
        receiver, batch, lww=no_lww, counters=Counter(), on_stored=lambda *e: stored.append(e)
    ).ok
    assert stored == [(1, b"b", b"k", encode_object(mine), receiver.get(1, b"b", b"k"))]
    assert receive_batch(
        receiver, batch, lww=no_lww, counters=Counter(), on_stored=lambda *e: stored.append(e)
    ).ok
    assert len(stored) == 1  # the duplicate changed nothing
    receiver.crash()  # only what was made durable is left
    assert sorted(values(receiver, 1, b"k")) == [b"mine", b"theirs"]


def test_an_undecodable_entry_fails_the_whole_batch() -> None:
    receiver = MemoryEngine()
    good = TransferEntry(b"b", b"good", encode_object(version(b"v")))
    batch = TransferBatch(9, TransferKind.REPAIR, 1, 0, (good, TransferEntry(b"b", b"bad", b"junk")), True)
    counters: Counter[str] = Counter()
    assert not receive_batch(receiver, batch, lww=no_lww, counters=counters).ok
    assert receiver.get(1, b"b", b"good") is None and counters["transfer.receive_errors"] == 1


# -- resuming ------------------------------------------------------------------------------------------------


def test_an_ownership_transfer_resumes_after_the_last_acked_entry_after_a_sender_crash() -> None:
    sender, receiver = MemoryEngine(), MemoryEngine()
    keys = fill(sender, 4, [100] * 12)
    out: list[Effect] = []
    manager = TransferManager("B", sender, settings(batch_bytes_max=400), Counter())
    manager.start("C", PartitionSource(sender, TransferKind.OWNERSHIP, "C", 4), 0, out)
    acked: list[bytes] = []
    for _ in range(2):  # two batches acked, the third lost in the crash
        [batch] = batches(list(out))
        out.clear()
        manager.on_ack("C", receive_batch(receiver, batch, lww=no_lww, counters=Counter()), 0, out)
        acked += [e.key for e in batch.entries]
    old_id = batch.transfer_id
    sender.flush()  # the buffered cursor made durable by some later write
    sender.crash()
    restarted = TransferManager("B", sender, settings(batch_bytes_max=400), Counter())
    out = []
    restarted.start("C", PartitionSource(sender, TransferKind.OWNERSHIP, "C", 4), 0, out)
    sent = batches(list(out))
    assert sent[0].transfer_id != old_id  # an ack from before the crash cannot match it
    assert sent[0].entries[0].key == keys[len(acked)]
    rest = deliver(restarted, receiver, out)
    assert acked + [e.key for batch in rest for e in batch.entries] == keys
    assert receiver.scan(4) == sender.scan(4) and sender.meta_scan(b"transfer/") == []


def test_a_crash_that_loses_the_cursor_resends_but_skips_nothing() -> None:
    sender, receiver = MemoryEngine(), MemoryEngine()
    keys = fill(sender, 4, [100] * 6)
    out: list[Effect] = []
    manager = TransferManager("B", sender, settings(batch_bytes_max=400), Counter())
    manager.start("C", PartitionSource(sender, TransferKind.OWNERSHIP, "C", 4), 0, out)
    [batch] = batches(list(out))
    out.clear()
    manager.on_ack("C", receive_batch(receiver, batch, lww=no_lww, counters=Counter()), 0, out)
    sender.crash()  # the cursor was written buffered: gone
    restarted = TransferManager("B", sender, settings(batch_bytes_max=400), Counter())
    out = []
    restarted.start("C", PartitionSource(sender, TransferKind.OWNERSHIP, "C", 4), 0, out)
    rest = deliver(restarted, receiver, out)
    assert [e.key for b in rest for e in b.entries] == keys


# -- the manager ---------------------------------------------------------------------------------------------


def test_the_concurrency_bound_and_one_transfer_per_kind_target_and_partition() -> None:
    storage = MemoryEngine()
    fill(storage, 1, [10])
    fill(storage, 2, [10])
    counters: Counter[str] = Counter()
    manager = TransferManager("B", storage, settings(concurrent_max=1), counters)
    out: list[Effect] = []
    first = manager.start("C", PartitionSource(storage, TransferKind.REPAIR, "C", 1), 0, out)
    assert manager.start("C", PartitionSource(storage, TransferKind.REPAIR, "C", 1), 0, out) == first
    refused = manager.start("C", PartitionSource(storage, TransferKind.REPAIR, "C", 2), 0, out)
    assert isinstance(refused, NotStarted) and refused.at_bound and counters["transfer.at_bound"] == 1
    assert len(batches(out)) == 1


def test_the_throttle_spreads_batches_over_ticks_and_takes_turns() -> None:
    storage = MemoryEngine()
    fill(storage, 1, [500] * 2)
    fill(storage, 2, [500] * 2)
    manager = TransferManager("B", storage, settings(batch_bytes_max=600, bytes_per_tick=500), Counter())
    out: list[Effect] = []
    manager.start("C", PartitionSource(storage, TransferKind.REPAIR, "C", 1), 0, out)
    manager.start("D", PartitionSource(storage, TransferKind.REPAIR, "D", 2), 0, out)
    assert [e.dst for e in out if isinstance(e, Send)] == ["C"]  # the budget is spent
    batches(out)
    manager.on_tick(100, out)
    assert [e.dst for e in out if isinstance(e, Send)] == ["D"]


def test_ownership_transfers_pause_while_the_target_is_down_and_after_too_many_retries() -> None:
    storage, receiver = MemoryEngine(), MemoryEngine()
    fill(storage, 1, [10])
    counters: Counter[str] = Counter()
    manager = TransferManager("B", storage, settings(retries_max=1, pause_ms=5_000), counters)
    out: list[Effect] = []
    manager.start("C", PartitionSource(storage, TransferKind.OWNERSHIP, "C", 1), 0, out)
    batches(out)
    manager.on_peer_down("C")
    manager.on_tick(10 * TIMEOUT_MS, out)
    assert out == [] and manager.status()[0].state is TransferState.PAUSED
    manager.on_peer_up("C", 10 * TIMEOUT_MS, out)
    assert len(batches(out)) == 1  # read again from the cursor
    manager.on_tick(11 * TIMEOUT_MS, out)
    assert len(batches(out)) == 1  # the one resend allowed
    manager.on_tick(12 * TIMEOUT_MS, out)
    assert out == [] and counters["transfer.paused"] == 1
    manager.on_tick(12 * TIMEOUT_MS + 5_000, out)
    deliver(manager, receiver, out)
    assert counters["transfer.finished.ownership"] == 1 and receiver.scan(1) == storage.scan(1)


def test_acks_from_another_node_or_transfer_are_ignored() -> None:
    storage = MemoryEngine()
    fill(storage, 1, [10])
    counters: Counter[str] = Counter()
    manager = TransferManager("B", storage, settings(), counters)
    out: list[Effect] = []
    manager.start("C", PartitionSource(storage, TransferKind.REPAIR, "C", 1), 0, out)
    [batch] = batches(out)
    manager.on_ack("D", TransferAck(batch.transfer_id, batch.seq, True), 0, out)
    manager.on_ack("C", TransferAck(batch.transfer_id + 1, batch.seq, True), 0, out)
    manager.on_ack("C", TransferAck(batch.transfer_id, batch.seq + 1, True), 0, out)
    assert counters["transfer.stale_acks"] == 2 and manager.status()[0].progress.entries_acked == 0


class CountingScans(MemoryEngine):
    """Counts the entries its scans hand out."""

    def __init__(self) -> None:
        super().__init__()
        self.scanned = 0

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[tuple[bytes, bytes, bytes]]:
        page = super().scan(partition, start_after, limit)
        self.scanned += len(page)
        return page


def test_a_partition_of_large_values_is_read_about_a_batch_at_a_time() -> None:
    """A batch holds four 32 KiB values: each read scans about that many entries, not a fixed page of
    128 that it mostly drops (seen in benchmarks/transfer_bench.py: 4x the bytes read as sent)."""
    storage = CountingScans()
    for i in range(400):
        storage.put(5, b"b", b"k%04d" % i, b"x" * 32 * 1024)
    source = PartitionSource(storage, TransferKind.OWNERSHIP, "C", 5)
    after, sent, batches = None, 0, 0
    while True:
        chunk = source.read(after, 4 * 33 * 1024)
        sent, batches, after = sent + len(chunk.entries), batches + 1, chunk.cursor
        if chunk.done:
            break
    assert sent == 400 and batches == 100
    # Five entries a batch: the four that fit and the one that ends it (the first read knows no sizes
    # yet and scans a whole page); 128 a batch before.
    assert storage.scanned <= 128 + 5 * batches, storage.scanned
