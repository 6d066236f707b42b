"""Preference lists: primaries walk clockwise over distinct nodes; fallbacks replace unreachable ones."""

from __future__ import annotations

import pytest

from dynakv.core.preflist import PreflistEntry, preference_list, primaries, replica_partitions
from dynakv.core.ring import Ring

# a b a c d b c d: partition 0's walk meets a, b, (a again: skipped), c, d.
RING = Ring(8, tuple("abacdbcd"))


def test_primaries_skip_owners_already_in_the_list() -> None:
    assert primaries(RING, 0, 3) == ("a", "b", "c")
    assert primaries(RING, 6, 3) == ("c", "d", "a")  # wraps past the last partition
    assert primaries(RING, 0, 1) == ("a",)


def test_fewer_nodes_than_n_val_gives_every_node() -> None:
    assert primaries(RING, 0, 10) == ("a", "b", "c", "d")
    assert primaries(Ring(8, ("solo",) * 8), 3, 3) == ("solo",)


def test_all_reachable_gives_the_primaries_with_their_partitions() -> None:
    assert preference_list(RING, 0, 3) == (
        PreflistEntry("a", 0, primary=True),
        PreflistEntry("b", 1, primary=True),
        PreflistEntry("c", 3, primary=True),
    )


def test_an_unreachable_primary_is_replaced_by_the_next_node_of_the_walk() -> None:
    entries = preference_list(RING, 0, 3, unreachable=frozenset({"b"}))
    assert entries == (
        PreflistEntry("a", 0, primary=True),
        PreflistEntry("c", 3, primary=True),
        PreflistEntry("d", 4, primary=False, stands_in_for="b"),
    )


def test_fallbacks_follow_the_order_of_the_primaries_they_replace() -> None:
    ring = Ring(8, tuple("abcdefgh"))
    entries = preference_list(ring, 0, 3, unreachable={"a", "c", "d"})
    assert [(e.node, e.primary, e.stands_in_for) for e in entries] == [
        ("b", True, None),
        ("e", False, "a"),
        ("f", False, "c"),
    ]


def test_too_few_reachable_nodes_give_a_shorter_list() -> None:
    entries = preference_list(RING, 0, 3, unreachable={"a", "b", "c"})
    assert [(e.node, e.stands_in_for) for e in entries] == [("d", "a")]
    assert preference_list(RING, 0, 3, unreachable={"a", "b", "c", "d"}) == ()


def test_replica_partitions_are_those_whose_primaries_include_the_node() -> None:
    ring = Ring(8, tuple("abcdabcd"))
    # With n_val 2, d holds replicas of its own partitions and of the partitions just before them.
    assert replica_partitions(ring, "d", 2) == (2, 3, 6, 7)
    assert replica_partitions(ring, "zed", 2) == ()


def test_programmer_errors_are_assertions() -> None:
    with pytest.raises(AssertionError):
        primaries(RING, 0, 0)
    with pytest.raises(AssertionError):
        preference_list(RING, 8, 3)
