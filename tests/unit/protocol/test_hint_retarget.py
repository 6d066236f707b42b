"""Hints whose target the ring no longer makes a primary of their partition (it left, was removed, or a
join took the partition over) move to the partition's current primaries (hint_replay.Retarget): never
lost, never sent to a node that no longer owns the data, and never moved on a placeholder ring."""

from __future__ import annotations

from collections import Counter

from dynakv.core.config import Limits, Timing
from dynakv.core.objects import Content, encode_object
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.hint_replay import RETARGET_PER_TICK, Retarget
from dynakv.protocol.hints import Dropped, HintLog, store_hinted
from dynakv.protocol.replica import EMPTY
from dynakv.storage.memory import MemoryEngine

DAY_MS = 24 * 3600 * 1000
PARTITION = 3
BUCKET = b"bucket"
# Before: x owned partition 3 (with its two successors); after: x is gone, b, c and d own it.
BEFORE = Ring(8, ("a", "b", "c", "x", "c", "d", "a", "b"))
AFTER = Ring(8, ("a", "b", "c", "d", "c", "a", "b", "d"))


def setup(self_name: str = "a", **limits: int) -> tuple[MemoryEngine, HintLog, Retarget]:
    storage = MemoryEngine()
    hints = HintLog(storage, Limits(**limits), Timing(hint_age_max_ms=DAY_MS), Counter(), lambda p, b: False)
    return storage, hints, Retarget(self_name, hints, lambda bucket: 3)


def hinted(storage: MemoryEngine, hints: HintLog, target: str, key: bytes, now_ms: int = 5) -> bytes:
    data = encode_object(EMPTY.update(EMPTY.context(), "a", Content(b"v-" + key, last_modified_ms=1), 1))
    stored = store_hinted(hints, target, PARTITION, BUCKET, key, incoming=data, now_ms=now_ms, durable=True)
    assert stored is None
    return data


def test_the_setup_is_what_the_tests_say() -> None:
    assert primaries(BEFORE, PARTITION, 3) == ("x", "c", "d")
    assert primaries(AFTER, PARTITION, 3) == ("d", "c", "a")


def test_hints_for_a_departed_target_move_to_the_current_primaries_except_this_node() -> None:
    storage, hints, retarget = setup("a")
    data = {key: hinted(storage, hints, "x", key) for key in (b"k1", b"k2")}
    retarget.set_ring(AFTER)
    assert retarget.on_tick(lambda d: None) == 2
    others = sorted(n for n in primaries(AFTER, PARTITION, 3) if n != "a")
    assert hints.targets() == others
    for target in others:
        assert [h.key for h in hints.page(target, None, 10)] == [b"k1", b"k2"]
        assert all(h.created_ms == 5 for h in hints.page(target, None, 10))  # as old as the original
    assert hints.pending("x") == 0 and hints.pending_total() == 2 * len(others)
    for key, stored in data.items():  # the copies stay: they are what the new hints name
        assert storage.get(PARTITION, BUCKET, key) == stored


def test_hints_for_a_target_that_still_is_a_primary_stay() -> None:
    storage, hints, retarget = setup("a")
    still = primaries(AFTER, PARTITION, 3)[0]
    hinted(storage, hints, still, b"k")
    retarget.set_ring(AFTER)
    assert retarget.on_tick(lambda d: None) == 0
    assert hints.targets() == [still]


def test_nothing_moves_until_the_cluster_ring_is_known() -> None:
    storage, hints, retarget = setup("a")
    hinted(storage, hints, "x", b"k")
    retarget.set_ring(None)  # a node that has not found its cluster serves a placeholder ring
    assert retarget.on_tick(lambda d: None) == 0
    assert hints.targets() == ["x"]


def test_the_pass_is_spread_over_ticks_and_ends() -> None:
    storage, hints, retarget = setup("a", hints_per_target_max=10 * RETARGET_PER_TICK)
    count = RETARGET_PER_TICK + 10
    for i in range(count):
        hinted(storage, hints, "x", b"k%05d" % i)
    retarget.set_ring(AFTER)
    assert retarget.on_tick(lambda d: None) == RETARGET_PER_TICK
    assert hints.pending("x") == 10
    assert retarget.on_tick(lambda d: None) == 10
    assert hints.pending("x") == 0
    assert retarget.on_tick(lambda d: None) == 0  # the pass is over until the ring changes again


def test_a_new_target_at_its_bound_gets_no_hint_and_the_copy_stays() -> None:
    storage, hints, retarget = setup("a", hints_per_target_max=1)
    full = primaries(AFTER, PARTITION, 3)[0]
    hinted(storage, hints, full, b"other")  # `full` is at its bound of one hint
    stored = hinted(storage, hints, "x", b"k")
    dropped: list[Dropped] = []
    retarget.set_ring(AFTER)
    assert retarget.on_tick(dropped.append) == 1
    assert [d.target for d in dropped] == [full]
    assert hints.pending("x") == 0
    assert storage.get(PARTITION, BUCKET, b"k") == stored
