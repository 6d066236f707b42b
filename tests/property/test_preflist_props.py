"""Preference lists on arbitrary rings: distinct reachable nodes, primaries first, one fallback per
unreachable primary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.preflist import preference_list, primaries, walk
from dynakv.core.ring import Ring

NAMES = ["a", "b", "c", "d", "e", "f", "g"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Ring, int, int, frozenset[str]]:
    size = draw(st.sampled_from([8, 16, 32]))
    pool = NAMES[: draw(st.integers(1, len(NAMES)))]
    ring = Ring(size, tuple(draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))))
    partition = draw(st.integers(0, size - 1))
    n_val = draw(st.integers(1, 5))
    unreachable = frozenset(draw(st.sets(st.sampled_from(pool))))
    return ring, partition, n_val, unreachable


@given(cases())
def test_preference_list_properties(case: tuple[Ring, int, int, frozenset[str]]) -> None:
    ring, partition, n_val, unreachable = case
    entries = preference_list(ring, partition, n_val, unreachable)
    nodes = [entry.node for entry in entries]
    order = [node for _, node in walk(ring, partition)]
    chosen = primaries(ring, partition, n_val)

    assert len(set(nodes)) == len(nodes)
    assert not set(nodes) & unreachable
    reachable = set(ring.members) - unreachable
    assert len(entries) == min(n_val, len(reachable))
    for entry in entries:
        assert ring.owners[entry.partition] == entry.node
        assert entry.primary == (entry.stands_in_for is None)

    # The reachable primaries, in walk order, come first; the fallbacks follow, further along the walk.
    served = [entry.node for entry in entries if entry.primary]
    assert served == [node for node in chosen if node not in unreachable]
    assert all(entry.primary for entry in entries[: len(served)])
    fallbacks = entries[len(served) :]
    if fallbacks:
        assert min(order.index(e.node) for e in fallbacks) > max(order.index(n) for n in chosen)
    # Each fallback stands in for a distinct unreachable primary, in the primaries' order.
    down = [node for node in chosen if node in unreachable]
    assert [entry.stands_in_for for entry in fallbacks] == down[: len(fallbacks)]


@given(cases())
def test_primaries_are_the_first_distinct_owners_clockwise(
    case: tuple[Ring, int, int, frozenset[str]],
) -> None:
    ring, partition, n_val, _ = case
    expected: list[str] = []
    for step in range(ring.partitions):
        owner = ring.owners[(partition + step) % ring.partitions]
        if owner not in expected and len(expected) < n_val:
            expected.append(owner)
    assert list(primaries(ring, partition, n_val)) == expected
