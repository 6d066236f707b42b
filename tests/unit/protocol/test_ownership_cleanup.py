"""An old owner hands the copies of a partition it no longer owns to a current primary, then deletes
them (ownership_cleanup): only once the ring has been quiet for the delay, only keys it is no primary of
for their bucket's n_val and that no hint names, each deleted after the primary's durable ack and only
if unchanged since it was sent; never a partition it owns again or one that just received a batch."""

from __future__ import annotations

import dataclasses
from collections import Counter

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import Move
from dynakv.core.config import Limits, Timing
from dynakv.core.objects import Content, encode_object
from dynakv.core.ring import Ring
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.hints import HintLog, HintWrite
from dynakv.protocol.messages import TransferBatch, TransferKind
from dynakv.protocol.ownership_cleanup import Cleanup
from dynakv.protocol.replica import EMPTY
from dynakv.protocol.transfer import TransferSettings, receive_batch
from dynakv.protocol.transfer_manager import TransferManager
from dynakv.storage.memory import MemoryEngine

DELAY_MS = 1_000
LOST = 2
# n_val 1: "a" owns partitions 0, 3 and 6; LOST (2) is c's, so the cleanup hands it to c.
RING = Ring(8, ("a", "b", "c", "a", "b", "c", "a", "b"))
QUIET = cs.from_ring(RING)
BUSY = dataclasses.replace(QUIET, moves=(Move(0, "a", "b", 1),))
WIDE = b"wide"  # a bucket whose larger n_val still makes "a" a primary of LOST


class OldOwner:
    def __init__(self, batch_bytes: int = 1 << 20) -> None:
        self.storage, self.counters = MemoryEngine(), Counter[str]()
        self.hints = HintLog(self.storage, Limits(), Timing(), self.counters, lambda p, b: False)
        settings = TransferSettings(batch_bytes, 1 << 30, 4, 1_000, 3, 10_000)
        self.manager = TransferManager("a", self.storage, settings, self.counters)
        wide = lambda p, bucket: bucket == WIDE  # noqa: E731
        self.cleanup = Cleanup(
            "a", 1, self.storage, self.hints, is_primary=wide, delay_ms=DELAY_MS, counters=self.counters
        )
        self.primary = MemoryEngine()  # c, the current owner of LOST
        self.out: list[Effect] = []

    def tick(self, now_ms: int, state: cs.ClusterState = QUIET) -> list[TransferBatch]:
        self.cleanup.on_tick(now_ms, state, frozenset(), self.manager, self.out)
        return self.deliver(now_ms)

    def deliver(self, now_ms: int, before_ack: object = None) -> list[TransferBatch]:
        sent = []
        while self.out:
            effect = self.out.pop(0)
            assert isinstance(effect, Send) and isinstance(effect.msg, TransferBatch) and effect.dst == "c"
            sent.append(effect.msg)
            ack = receive_batch(self.primary, effect.msg, lww=lambda b: False, counters=Counter())
            if callable(before_ack):
                before_ack()
            self.manager.on_ack("c", ack, now_ms, self.out)
        for status in self.manager.take_finished():
            self.cleanup.finished(status)
        return sent

    def keys(self, storage: MemoryEngine | None = None, partition: int = LOST) -> list[tuple[bytes, bytes]]:
        return [(b, k) for b, k, _ in (storage or self.storage).scan(partition)]


def obj(value: bytes) -> bytes:
    return encode_object(EMPTY.update(EMPTY.context(), "a", Content(value, last_modified_ms=1), 1))


def fill(node: OldOwner, count: int, bucket: bytes = b"b") -> None:
    for i in range(count):
        node.storage.put(LOST, bucket, b"k%05d" % i, obj(b"v%d" % i))


def test_nothing_moves_before_the_ring_has_been_quiet_for_the_delay_then_the_copies_go_to_c() -> None:
    node = OldOwner()
    fill(node, 3)
    assert node.tick(0, BUSY) == []  # a move pending: the clock does not start
    assert node.tick(5_000) == [] and node.counters["ownership.cleanup_pending"] == 1
    assert node.tick(5_000 + DELAY_MS - 1) == []
    sent = node.tick(5_000 + DELAY_MS)
    assert sent and all(b.kind is TransferKind.CLEANUP and b.partition == LOST for b in sent)
    assert node.keys() == [] and len(node.keys(node.primary)) == 3
    assert node.counters["ownership.cleaned_keys"] == 3 and node.counters["ownership.cleanup_pending"] == 0


def test_a_new_move_restarts_the_quiet_clock() -> None:
    node = OldOwner()
    fill(node, 1)
    node.tick(0)
    node.tick(DELAY_MS - 1, BUSY)
    node.tick(DELAY_MS)
    assert len(node.keys()) == 1
    node.tick(2 * DELAY_MS)
    assert node.keys() == []


def test_keys_of_a_wider_bucket_and_hinted_keys_stay_and_are_not_sent() -> None:
    node = OldOwner()
    fill(node, 2)
    node.storage.put(LOST, WIDE, b"w", obj(b"w"))
    recorded = node.hints.record_ops("d", LOST, b"b", b"k00001", size=1, now_ms=0)
    assert isinstance(recorded, HintWrite)
    node.storage.write_batch(list(recorded.ops), durable=True)
    node.hints.applied(recorded)
    node.tick(0)
    node.tick(DELAY_MS)
    assert node.keys() == [(b"b", b"k00001"), (WIDE, b"w")]
    assert node.keys(node.primary) == [(b"b", b"k00000")]


def test_a_key_written_while_its_batch_was_in_flight_stays_for_the_next_pass() -> None:
    node = OldOwner()
    fill(node, 2)
    node.tick(0)
    node.cleanup.on_tick(DELAY_MS, QUIET, frozenset(), node.manager, node.out)
    newer = obj(b"newer")
    node.deliver(DELAY_MS, before_ack=lambda: node.storage.put(LOST, b"b", b"k00000", newer))
    assert node.keys() == [(b"b", b"k00000")]  # the stray write survives, not deleted unsent
    node.tick(2 * DELAY_MS)  # the next survey finds it and hands it over
    assert node.keys() == [] and node.primary.get(LOST, b"b", b"k00000") is not None


def test_a_large_partition_goes_in_batches_and_a_partition_it_owns_is_never_touched() -> None:
    node = OldOwner(batch_bytes=8 * 1024)
    fill(node, 300)
    node.storage.put(3, b"b", b"mine", obj(b"m"))
    node.tick(0)
    assert len(node.tick(DELAY_MS)) > 1
    assert node.keys() == [] and len(node.keys(node.primary)) == 300
    assert node.keys(partition=3) == [(b"b", b"mine")]


def test_a_partition_owned_again_is_not_cleaned() -> None:
    node = OldOwner()
    fill(node, 2)
    node.cleanup.lost(LOST)
    node.cleanup.regained(LOST)
    owned_again = cs.from_ring(Ring(8, ("a", "b", "a", "a", "b", "c", "a", "b")))
    node.tick(0, owned_again)
    node.tick(DELAY_MS, owned_again)
    assert len(node.keys()) == 2 and node.keys(node.primary) == []


def test_a_partition_that_just_received_a_transfer_batch_waits_for_the_delay() -> None:
    """A move to this node that gossip has not told it of yet looks like data it does not own."""
    node = OldOwner()
    fill(node, 2)
    node.tick(0)
    node.cleanup.received(LOST, DELAY_MS - 10)
    node.tick(DELAY_MS)
    node.tick(2 * DELAY_MS - 20)
    assert len(node.keys()) == 2
    node.tick(2 * DELAY_MS)
    assert node.keys() == []
