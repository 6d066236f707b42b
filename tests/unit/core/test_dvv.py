"""Worked examples for dotted version vectors: the clock, puts with contexts, sync, contexts, pruning."""

from __future__ import annotations

import pytest

from dynakv.core import codec
from dynakv.core.dvv import (
    EMPTY_VV,
    VV_ENTRIES_MAX,
    Dot,
    Order,
    PruneRule,
    SiblingSet,
    VersionVector,
    compare,
    decode_context,
    encode_context,
    prune,
    reconcile,
)
from dynakv.core.errors import ConfigError, DecodeError, LimitExceeded

VV = VersionVector.from_counters


def test_version_vector_lookups() -> None:
    vv = VV({"b": 2, "a": 1, "c": 0})
    assert vv.entries == (("a", 1), ("b", 2))  # sorted, zero counters left out
    assert vv.get("a") == 1
    assert vv.get("zz") == 0
    assert vv.covers(Dot("b", 2))
    assert not vv.covers(Dot("b", 3))
    assert not vv.covers(Dot("c", 1))


def test_merge_is_pointwise_max() -> None:
    merged = VV({"a": 3, "b": 1}).merge(VV({"b": 4, "c": 2}))
    assert merged.entries == (("a", 3), ("b", 4), ("c", 2))


def test_merge_keeps_the_timestamp_of_the_higher_counter_and_the_later_one_on_a_tie() -> None:
    x = VersionVector((("a", 3), ("b", 1)), (100, 900))
    y = VersionVector((("a", 2), ("b", 1)), (500, 200))
    merged = x.merge(y)
    assert merged.ts_of("a") == 100  # counter 3 wins, with its own timestamp
    assert merged.ts_of("b") == 900  # same counter: the later timestamp
    assert merged == y.merge(x)


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ({"a": 1}, {"a": 1}, Order.EQUAL),
        ({}, {}, Order.EQUAL),
        ({"a": 1}, {"a": 2}, Order.BEFORE),
        ({"a": 2, "b": 1}, {"a": 2}, Order.AFTER),
        ({"a": 2}, {"b": 1}, Order.CONCURRENT),
        ({"a": 2, "b": 1}, {"a": 1, "b": 2}, Order.CONCURRENT),
    ],
)
def test_compare(a: dict[str, int], b: dict[str, int], order: Order) -> None:
    assert compare(VV(a), VV(b)) is order


def test_timestamps_never_affect_causality() -> None:
    early = VersionVector((("a", 1),), (5,))
    late = VersionVector((("a", 1),), (9_000,))
    assert compare(early, late) is Order.EQUAL
    assert early.descends(late)
    assert late.descends(early)
    assert early != late  # but they are different states; a sync makes them equal


def test_five_puts_with_one_stale_context_leave_five_siblings() -> None:
    obj: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "v0", now_ms=1)
    stale = obj.context()
    for i in range(5):
        obj = obj.update(stale, "a", f"w{i}", now_ms=10 + i)
    # v0 was seen by every writer and is gone; the five writes are mutually concurrent.
    assert sorted(obj.values()) == ["w0", "w1", "w2", "w3", "w4"]
    assert len(set(obj.dots())) == 5

    collapsed = obj.update(obj.context(), "a", "resolved", now_ms=20)
    assert collapsed.values() == ("resolved",)


def test_five_stale_puts_through_different_coordinators_leave_five_siblings_after_sync() -> None:
    base: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "v0", now_ms=1)
    replicas = dict.fromkeys("abc", base)
    stale = base.context()
    for i, actor in enumerate("abcab"):
        replicas[actor] = replicas[actor].update(stale, actor, f"w{i}", now_ms=10 + i)
    merged = reconcile(replicas.values())
    assert sorted(merged.values()) == ["w0", "w1", "w2", "w3", "w4"]
    resolved = merged.update(merged.context(), "c", "one", now_ms=30)
    for actor in "abc":
        assert replicas[actor].sync(resolved).values() == ("one",)


def test_put_with_empty_context_to_an_existing_key_adds_a_sibling() -> None:
    obj: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "first", now_ms=1)
    obj = obj.update(EMPTY_VV, "a", "blind", now_ms=2)
    assert sorted(obj.values()) == ["blind", "first"]
    assert obj.dots() == (Dot("a", 1), Dot("a", 2))


def test_new_counter_is_above_both_the_clock_and_the_context() -> None:
    obj: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "x", now_ms=1)
    # A context that knows more about "a" than this replica does (read elsewhere).
    ahead = VV({"a": 7})
    obj = obj.update(ahead, "a", "y", now_ms=2)
    assert obj.dots() == (Dot("a", 8),)
    assert obj.clock.get("a") == 8


def test_update_stamps_the_coordinator_entry_and_clamps_future_context_timestamps() -> None:
    obj: SiblingSet[str] = SiblingSet()
    forged = VersionVector((("z", 1),), (10**15,))
    obj = obj.update(forged, "a", "x", now_ms=500)
    assert obj.clock.ts_of("a") == 500
    assert obj.clock.ts_of("z") == 500


def test_sync_of_two_replicas_each_with_a_concurrent_put_keeps_both() -> None:
    base: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "v0", now_ms=1)
    ctx = base.context()
    left = base.update(ctx, "a", "left", now_ms=5)
    right = base.sync(SiblingSet()).update(ctx, "b", "right", now_ms=6)
    merged = left.sync(right)
    assert sorted(merged.values()) == ["left", "right"]
    assert merged == right.sync(left)
    assert merged.clock.entries == (("a", 2), ("b", 1))


def test_sync_drops_a_sibling_the_other_side_superseded() -> None:
    base: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "old", now_ms=1)
    newer = base.update(base.context(), "b", "new", now_ms=2)
    assert base.sync(newer).values() == ("new",)
    assert newer.sync(base).values() == ("new",)


def test_delete_is_a_put_of_a_tombstone_and_a_concurrent_write_survives_it() -> None:
    base: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "live", now_ms=1)
    deleted = base.update(base.context(), "a", "<tombstone>", now_ms=2)
    assert deleted.values() == ("<tombstone>",)
    concurrent = base.update(base.context(), "b", "rewrite", now_ms=3)
    assert sorted(deleted.sync(concurrent).values()) == ["<tombstone>", "rewrite"]


def test_empty_set_is_the_identity_of_sync() -> None:
    obj: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "x", now_ms=1)
    assert obj.sync(SiblingSet()) == obj
    assert SiblingSet[str]().sync(obj) == obj
    assert SiblingSet[str]().is_empty
    assert not obj.is_empty


def test_sibling_set_asserts_its_invariants() -> None:
    with pytest.raises(AssertionError):
        SiblingSet(EMPTY_VV, ((Dot("a", 1), "x"),))  # dot not covered by the clock
    with pytest.raises(AssertionError):
        SiblingSet(VV({"a": 2}), ((Dot("a", 2), "x"), (Dot("a", 1), "y")))  # not sorted
    with pytest.raises(AssertionError):
        VersionVector((("b", 1), ("a", 1)), (0, 0))


# --- contexts -----------------------------------------------------------------------------------------


def test_context_bytes_round_trip() -> None:
    vv = VersionVector((("node-1", 3), ("node-2", 12)), (1_000, 2_000))
    data = encode_context(vv)
    assert isinstance(data, bytes)
    assert decode_context(data) == vv


def test_empty_context_is_empty_bytes() -> None:
    assert encode_context(EMPTY_VV) == b""
    assert decode_context(b"") == EMPTY_VV


@pytest.mark.parametrize(
    "data",
    [
        b"\x00garbage",
        b"\xc1",
        codec.encode("obj", []),  # another type
        codec.encode("ctx", {"a": 1}),
        codec.encode("ctx", [["a", 0, 0]]),  # counter 0 is never stored
        codec.encode("ctx", [["a", 1, -1]]),
        codec.encode("ctx", [["", 1, 0]]),
        codec.encode("ctx", [["b", 1, 0], ["a", 1, 0]]),  # unsorted
        codec.encode("ctx", [["a", 1, 0], ["a", 2, 0]]),  # duplicate actor
        codec.encode("ctx", [["a", True, 0]]),
        codec.encode("ctx", [["a", 1 << 63, 0]]),
        codec.encode("ctx", [[b"a", 1, 0]]),
    ],
)
def test_bad_context_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_context(data)


def test_context_entries_are_bounded() -> None:
    too_many = [[f"actor{i:05d}", 1, 0] for i in range(VV_ENTRIES_MAX + 1)]
    with pytest.raises(DecodeError):
        decode_context(codec.encode("ctx", too_many))
    at_limit = VV({f"actor{i:05d}": 1 for i in range(VV_ENTRIES_MAX)})
    assert decode_context(encode_context(at_limit)) == at_limit
    with pytest.raises(LimitExceeded):
        encode_context(VV({f"actor{i:05d}": 1 for i in range(VV_ENTRIES_MAX + 1)}))


# --- pruning ------------------------------------------------------------------------------------------


def _aged_clock(count: int, ts_start: int, step_ms: int) -> VersionVector:
    return VersionVector.from_triples((f"n{i:03d}", i + 1, ts_start + i * step_ms) for i in range(count))


def test_prune_keeps_small_clocks_intact_however_old() -> None:
    vv = _aged_clock(5, ts_start=0, step_ms=1)
    rule = PruneRule(small=5, big=5, young_ms=0, old_ms=0)
    assert prune(vv, rule, now_ms=10**12) == vv


def test_prune_trims_big_old_clocks_oldest_first_down_to_big() -> None:
    vv = _aged_clock(10, ts_start=0, step_ms=1_000)
    rule = PruneRule(small=3, big=6, young_ms=1_000, old_ms=10**9)
    pruned = prune(vv, rule, now_ms=100_000)
    assert len(pruned) == 6
    assert pruned.actors() == tuple(f"n{i:03d}" for i in range(4, 10))  # the four oldest went


def test_prune_removes_entries_older_than_old_ms_down_to_small() -> None:
    vv = _aged_clock(10, ts_start=0, step_ms=1_000)
    rule = PruneRule(small=2, big=50, young_ms=0, old_ms=5_500)
    pruned = prune(vv, rule, now_ms=10_000)
    # age = 10_000 - ts; entries n000..n004 (age >= 6_000) are older than old_ms, n005 (5_000) is not.
    assert pruned.actors() == tuple(f"n{i:03d}" for i in range(5, 10))
    assert len(prune(vv, PruneRule(small=4, big=50, young_ms=0, old_ms=0), now_ms=10**9)) == 4


def test_prune_never_removes_young_entries() -> None:
    vv = _aged_clock(10, ts_start=0, step_ms=1_000)
    rule = PruneRule(small=1, big=1, young_ms=8_000, old_ms=0)
    pruned = prune(vv, rule, now_ms=12_000)
    # ages 12_000 .. 3_000; only those at least young_ms old may go.
    assert pruned.actors() == tuple(f"n{i:03d}" for i in range(5, 10))


def test_prune_skips_kept_actors_but_counts_them() -> None:
    vv = _aged_clock(6, ts_start=0, step_ms=1)
    rule = PruneRule(small=2, big=2, young_ms=0, old_ms=10**9)
    pruned = prune(vv, rule, now_ms=100, keep={"n000", "n001"})
    assert pruned.actors() == ("n000", "n001")


def test_prune_rule_validates() -> None:
    with pytest.raises(ConfigError):
        PruneRule(small=-1)
    with pytest.raises(ConfigError):
        PruneRule(old_ms=True)


def _crowded(now_ms: int) -> SiblingSet[str]:
    """A key written by a, then superseded by writes of many fallbacks long ago."""
    obj: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "a-old", now_ms=0)
    for i in range(6):
        obj = obj.update(obj.context(), f"f{i}", f"f{i}", now_ms=now_ms + i)
    return obj


def test_sibling_set_prune_keeps_the_local_actor_and_the_actors_of_live_siblings() -> None:
    obj = _crowded(now_ms=0).update(EMPTY_VV, "f0", "blind", now_ms=10)
    assert {d.actor for d in obj.dots()} == {"f0", "f5"}
    pruned = obj.prune(PruneRule(small=1, big=1, young_ms=0, old_ms=0), now_ms=10**9, local_actor="a")
    assert set(pruned.clock.actors()) == {"a", "f0", "f5"}
    assert pruned.siblings == obj.siblings


def test_pruning_risk_is_a_false_sibling_not_a_lost_write() -> None:
    stale: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "x", "superseded", now_ms=0)
    current = stale.update(stale.context(), "y", "current", now_ms=1)
    for i in range(4):  # other actors join the clock, so it is big enough to prune
        current = current.update(current.context(), f"z{i}", f"z{i}", now_ms=2 + i)
    rule = PruneRule(small=2, big=2, young_ms=0, old_ms=0)
    pruned = current.prune(rule, now_ms=10**6, local_actor="z3")
    assert "x" not in pruned.clock.actors()

    assert current.sync(stale).values() == ("z3",)  # unpruned: the stale sibling is recognised
    merged = pruned.sync(stale)
    assert sorted(merged.values()) == ["superseded", "z3"]  # false concurrency, the write kept
    assert merged.update(merged.context(), "z3", "fixed", now_ms=10**6).values() == ("fixed",)


def test_pruning_the_coordinators_own_entry_would_lose_a_write() -> None:
    """Why SiblingSet.prune keeps `local_actor`: a restarted counter reissues a dot a stale clock covers."""
    obj: SiblingSet[str] = SiblingSet().update(EMPTY_VV, "a", "a1", now_ms=0)
    obj = obj.update(obj.context(), "b", "b1", now_ms=1)
    obj = obj.update(obj.context(), "c", "c1", now_ms=2)
    stale_b = obj  # replica b still knows a:1
    rule = PruneRule(small=1, big=1, young_ms=0, old_ms=0)

    unsafe = SiblingSet(prune(obj.clock, rule, 10**6, keep={"c"}), obj.siblings)  # drops a and b
    lost = unsafe.update(unsafe.context(), "a", "a2", now_ms=10**6)
    assert lost.dots() == (Dot("a", 1),)  # the dot a:1 is reissued ...
    assert "a2" not in stale_b.sync(lost).values()  # ... and the new write vanishes at sync

    safe = obj.prune(rule, 10**6, local_actor="a")
    kept = safe.update(safe.context(), "a", "a2", now_ms=10**6)
    assert stale_b.sync(kept).values() == ("a2",)
