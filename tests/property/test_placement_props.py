"""Laws every placement strategy obeys, whatever the cluster shape and seed."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dynakv.core.hashing import RING_SIZE
from dynakv.core.placement import (
    Placement,
    balance,
    movement,
    node_names,
    owned_widths,
    ownership,
    partitioned_placement_from_tokens,
    placement_from_tokens,
    replicated_load,
    strategy1,
    strategy2,
    strategy3,
)

node_counts = st.integers(min_value=1, max_value=12)
n_vals = st.integers(min_value=1, max_value=5)
token_counts = st.integers(min_value=1, max_value=16)
partition_counts = st.sampled_from([8, 16, 32, 64, 128])
seeds = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def placements(draw: st.DrawFn, n_val: int | None = None) -> Placement:
    """Any of the three strategies on any small cluster."""
    strategy = draw(st.sampled_from([1, 2, 3]))
    nodes = node_names(draw(node_counts))
    n_val = draw(n_vals) if n_val is None else n_val
    rng = random.Random(draw(seeds))
    if strategy == 1:
        return strategy1(nodes, draw(token_counts), n_val, rng)
    if strategy == 2:
        return strategy2(nodes, draw(token_counts), draw(partition_counts), n_val, rng)
    return strategy3(nodes, draw(partition_counts), n_val)


@given(placements())
def test_ownership_covers_the_ring_exactly_once(placement: Placement) -> None:
    assert sum(owned_widths(placement).values()) == RING_SIZE
    assert math.isclose(math.fsum(ownership(placement).values()), 1.0, rel_tol=1e-12)


@given(placements())
def test_replica_sets_have_min_n_val_s_distinct_nodes(placement: Placement) -> None:
    expected = min(placement.n_val, len(placement.nodes))
    for r in placement.ranges:
        assert len(r.replicas) == expected
        assert len(set(r.replicas)) == expected
        assert set(r.replicas) <= set(placement.nodes)
    load = replicated_load(placement)
    assert math.isclose(math.fsum(load.values()), expected, rel_tol=1e-12)


@given(placements())
def test_balance_is_at_least_one(placement: Placement) -> None:
    # The busiest node carries at least the mean share; a float rounding of exactly 1 is allowed for.
    assert balance(placement) >= 1.0 - 1e-12


@settings(max_examples=60)
@given(node_counts, partition_counts, n_vals)
def test_strategy3_balance_is_within_one_partition(nodes: int, partitions: int, n_val: int) -> None:
    placement = strategy3(node_names(nodes), partitions, n_val)
    bound = math.ceil(partitions / nodes) / (partitions / nodes)
    assert balance(placement) <= bound + 1e-12


@given(placements())
def test_nothing_moves_between_a_placement_and_itself(placement: Placement) -> None:
    moved = movement(placement, placement)
    assert (moved.keys_moved, moved.replicas_moved, moved.primaries_moved) == (0.0, 0.0, 0.0)


@settings(max_examples=60)
@given(node_counts, partition_counts, n_vals)
def test_strategy3_reclaim_with_unchanged_nodes_moves_nothing(
    nodes: int, partitions: int, n_val: int
) -> None:
    before = strategy3(node_names(nodes), partitions, n_val)
    after = strategy3(node_names(nodes), partitions, n_val, previous=before.ring)
    assert movement(before, after).keys_moved == 0.0


@given(
    st.tuples(node_counts, token_counts, n_vals, seeds), partition_counts, st.randoms(use_true_random=False)
)
def test_token_order_does_not_matter(
    shape: tuple[int, int, int, int], partitions: int, shuffler: random.Random
) -> None:
    nodes, tokens, n_val, seed = shape
    names = node_names(nodes)
    drawn = strategy1(names, tokens, n_val, random.Random(seed)).tokens
    shuffled = list(drawn)
    shuffler.shuffle(shuffled)
    assert (
        movement(
            placement_from_tokens(drawn, names, n_val), placement_from_tokens(shuffled, names, n_val)
        ).keys_moved
        == 0.0
    )
    assert (
        movement(
            partitioned_placement_from_tokens(drawn, names, partitions, n_val),
            partitioned_placement_from_tokens(shuffled, names, partitions, n_val),
        ).keys_moved
        == 0.0
    )


@given(n_vals.flatmap(lambda n: st.tuples(placements(n), placements(n))))
def test_keys_moved_is_symmetric_and_bounded(pair: tuple[Placement, Placement]) -> None:
    a, b = pair
    ab, ba = movement(a, b), movement(b, a)
    assert ab.keys_moved == ba.keys_moved
    assert 0.0 <= ab.replicas_moved <= ab.keys_moved <= 1.0
    assert ab.primaries_moved <= 1.0
