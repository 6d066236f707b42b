"""An old owner deletes its copies of a partition it handed off (ownership_cleanup.Cleanup): only once
the ring has been quiet for the delay, only keys it is no primary of for their bucket's n_val and that
no hint names, a bounded number per tick, and not at all for a partition it owns again."""

from __future__ import annotations

import dataclasses
from collections import Counter

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import Move
from dynakv.core.config import Limits, Timing
from dynakv.core.ring import Ring
from dynakv.protocol.hints import HintLog, HintWrite
from dynakv.protocol.ownership_cleanup import CLEANUP_PER_TICK, Cleanup
from dynakv.storage.memory import MemoryEngine

DELAY_MS = 1_000
LOST = 2
# n_val 1: "a" owns partitions 0, 3 and 6; LOST (2) is c's.
RING = Ring(8, ("a", "b", "c", "a", "b", "c", "a", "b"))
QUIET = cs.from_ring(RING)
BUSY = dataclasses.replace(QUIET, moves=(Move(0, "a", "b", 1),))
WIDE = b"wide"  # a bucket whose larger n_val still makes this node a primary of LOST


def setup() -> tuple[MemoryEngine, HintLog, Cleanup, Counter[str]]:
    storage, counters = MemoryEngine(), Counter[str]()
    hints = HintLog(storage, Limits(), Timing(), counters, lambda p, b: False)
    wide = lambda p, bucket: bucket == WIDE  # noqa: E731
    cleanup = Cleanup("a", 1, storage, hints, is_primary=wide, delay_ms=DELAY_MS, counters=counters)
    return storage, hints, cleanup, counters


def keys(storage: MemoryEngine, partition: int = LOST) -> list[tuple[bytes, bytes]]:
    return [(bucket, key) for bucket, key, _ in storage.scan(partition)]


def fill(storage: MemoryEngine, count: int, bucket: bytes = b"b") -> None:
    for i in range(count):
        storage.put(LOST, bucket, b"k%05d" % i, b"v")


def test_nothing_is_deleted_before_the_ring_has_been_quiet_for_the_delay() -> None:
    storage, _, cleanup, counters = setup()
    fill(storage, 3)
    cleanup.lost(LOST)
    assert counters["ownership.cleanup_pending"] == 1
    cleanup.on_tick(0, BUSY)  # a move pending: the clock does not start
    cleanup.on_tick(5_000, QUIET)  # quiet from now on
    cleanup.on_tick(5_000 + DELAY_MS - 1, QUIET)
    assert len(keys(storage)) == 3
    cleanup.on_tick(5_000 + DELAY_MS, QUIET)
    assert keys(storage) == []
    assert counters["ownership.cleaned_keys"] == 3 and counters["ownership.cleanup_pending"] == 0


def test_a_new_move_restarts_the_quiet_clock() -> None:
    storage, _, cleanup, _ = setup()
    fill(storage, 1)
    cleanup.lost(LOST)
    cleanup.on_tick(0, QUIET)
    cleanup.on_tick(DELAY_MS - 1, BUSY)
    cleanup.on_tick(DELAY_MS, QUIET)
    assert len(keys(storage)) == 1
    cleanup.on_tick(2 * DELAY_MS, QUIET)
    assert keys(storage) == []


def test_keys_of_a_wider_bucket_and_hinted_keys_stay() -> None:
    storage, hints, cleanup, _ = setup()
    fill(storage, 2)
    storage.put(LOST, WIDE, b"w", b"v")
    recorded = hints.record_ops("d", LOST, b"b", b"k00001", size=1, now_ms=0)
    assert isinstance(recorded, HintWrite)
    storage.write_batch(list(recorded.ops), durable=True)
    hints.applied(recorded)
    cleanup.lost(LOST)
    cleanup.on_tick(0, QUIET)
    cleanup.on_tick(DELAY_MS, QUIET)
    assert keys(storage) == [(b"b", b"k00001"), (WIDE, b"w")]


def test_a_large_partition_is_cleaned_a_bounded_number_of_keys_a_tick() -> None:
    storage, _, cleanup, counters = setup()
    fill(storage, CLEANUP_PER_TICK + 5)
    storage.put(3, b"b", b"other", b"v")  # a partition it still owns: never touched
    cleanup.lost(LOST)
    cleanup.on_tick(0, QUIET)
    cleanup.on_tick(DELAY_MS, QUIET)
    assert len(keys(storage)) == 5 and counters["ownership.cleanup_pending"] == 1
    cleanup.on_tick(DELAY_MS + 100, QUIET)
    assert keys(storage) == [] and counters["ownership.cleanup_pending"] == 0
    assert keys(storage, 3) == [(b"b", b"other")]


def test_a_partition_owned_again_is_not_cleaned() -> None:
    storage, _, cleanup, _ = setup()
    fill(storage, 2)
    cleanup.lost(LOST)
    cleanup.regained(LOST)
    owned_again = cs.from_ring(Ring(8, ("a", "b", "a", "a", "b", "c", "a", "b")))
    cleanup.on_tick(0, owned_again)
    cleanup.on_tick(DELAY_MS, owned_again)
    assert len(keys(storage)) == 2


def test_partitions_held_but_not_owned_are_found_by_the_survey() -> None:
    """No flip seen (a restart), or a write after the pass: the survey, once per delay, finds them."""
    storage, _, cleanup, counters = setup()
    fill(storage, 2)
    cleanup.on_tick(0, QUIET)
    cleanup.on_tick(DELAY_MS, QUIET)
    assert keys(storage) == []
    storage.put(LOST, b"b", b"late", b"v")
    cleanup.on_tick(DELAY_MS + 100, QUIET)
    assert keys(storage) == [(b"b", b"late")]  # not before the next survey
    cleanup.on_tick(2 * DELAY_MS, QUIET)
    assert keys(storage) == [] and counters["ownership.cleaned_keys"] == 3


def test_a_partition_that_just_received_a_transfer_batch_is_left_alone_for_the_delay() -> None:
    """A move to this node that gossip has not told it of yet looks like data it does not own."""
    storage, _, cleanup, _ = setup()
    fill(storage, 2)
    cleanup.on_tick(0, QUIET)
    cleanup.received(LOST, DELAY_MS - 10)
    cleanup.on_tick(DELAY_MS, QUIET)
    cleanup.on_tick(2 * DELAY_MS - 20, QUIET)
    assert len(keys(storage)) == 2
    cleanup.on_tick(3 * DELAY_MS, QUIET)  # the next survey, with no batch since
    assert keys(storage) == []
