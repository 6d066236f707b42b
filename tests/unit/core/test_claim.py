"""Claim: worked examples of balance, tail violations, zones, movement and argument checking."""

from __future__ import annotations

import pytest

from dynakv.core.claim import claim, tail_feasible, zone_feasible, zone_violations
from dynakv.core.errors import ConfigError
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring


def moved(before: Ring, after: Ring) -> int:
    return sum(a != b for a, b in zip(before.owners, after.owners, strict=True))


def test_eight_partitions_three_nodes_two_replicas() -> None:
    ring = claim(["a", "b", "c"], 8, 2)
    assert sorted(ring.counts().values()) == [2, 3, 3]
    assert ring.tail_violations(2) == 0
    # So every partition's two replicas sit on its own owner and the next partition's owner.
    for p in range(8):
        assert primaries(ring, p, 2) == (ring.owners[p], ring.owners[(p + 1) % 8])


def test_round_robin_when_the_nodes_divide_the_ring() -> None:
    ring = claim(["d", "c", "b", "a"], 64, 4)
    assert ring.counts() == {"a": 16, "b": 16, "c": 16, "d": 16}
    assert ring.tail_violations(4) == 0


def test_infeasible_ring_stays_balanced_with_the_fewest_possible_violations() -> None:
    # 64 = 3 * 21 + 1: some node owns 22 partitions and would need 66 with two others after each.
    assert not tail_feasible(64, 3, 3)
    ring = claim(["a", "b", "c"], 64, 3)
    assert sorted(ring.counts().values()) == [21, 21, 22]
    # 22 gaps summing to 64, each wanting 3: one gap of 1 or two gaps of 2, and each breaks two
    # windows or one: at least 2 violated windows, which the claim reaches.
    assert ring.tail_violations(3) == 2


def test_more_nodes_than_n_val_is_not_always_enough() -> None:
    assert not tail_feasible(8, 6, 5)
    ring = claim([f"n{i}" for i in range(6)], 8, 5)
    assert sorted(ring.counts().values()) == [1, 1, 1, 1, 2, 2]
    assert ring.tail_violations(5) > 0


def test_more_nodes_than_partitions() -> None:
    nodes = [f"n{i:02d}" for i in range(20)]
    ring = claim(nodes, 8, 5)
    assert sorted(ring.counts().values()) == [1] * 8
    assert ring.tail_violations(5) == 0


def test_the_result_depends_on_the_set_of_members_only() -> None:
    forward = claim(["a", "b", "c", "d", "e"], 64, 3)
    assert claim(["e", "c", "a", "d", "b", "c"], 64, 3) == forward
    assert claim(tuple("edcba"), 64, 3, previous=forward) == forward


def test_a_join_moves_about_the_new_nodes_share() -> None:
    four = claim(["a", "b", "c", "d"], 64, 3)
    five = claim(["a", "b", "c", "d", "e"], 64, 3, previous=four)
    assert five.counts()["e"] in (12, 13)
    assert five.tail_violations(3) == 0
    assert moved(four, five) <= 13  # only the partitions the new node takes change hands


def test_a_leave_hands_over_the_leavers_partitions() -> None:
    five = claim(["a", "b", "c", "d", "e"], 64, 3)
    four = claim(["a", "b", "c", "d"], 64, 3, previous=five)
    assert four.counts() == {"a": 16, "b": 16, "c": 16, "d": 16}
    assert four.tail_violations(3) == 0
    assert moved(five, four) <= 1.5 * 13


def test_replacing_every_node_at_once() -> None:
    old = claim(["a", "b", "c", "d"], 32, 3)
    new = claim(["w", "x", "y", "z"], 32, 3, previous=old)
    assert new.counts() == {"w": 8, "x": 8, "y": 8, "z": 8}
    assert new.tail_violations(3) == 0


def test_changing_n_val_repairs_the_windows() -> None:
    old = claim([f"n{i}" for i in range(6)], 64, 2)
    new = claim([f"n{i}" for i in range(6)], 64, 4, previous=old)
    assert new.tail_violations(4) == 0
    assert max(new.counts().values()) - min(new.counts().values()) <= 1


def test_zones_spread_every_replica_set() -> None:
    zones = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "c2": "c"}
    assert zone_feasible(64, zones, 2)
    ring = claim(sorted(zones), 64, 2, zones=zones)
    assert ring.tail_violations(2) == 0
    assert zone_violations(ring, zones, 2) == 0
    assert sorted(ring.counts().values()) == [10, 10, 11, 11, 11, 11]


def test_three_equal_zones_cannot_spread_three_replicas_on_a_power_of_two_ring() -> None:
    # Every window of 3 spanning 3 zones makes the zones repeat with period 3, and 3 does not divide 64.
    zones = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c", "c2": "c"}
    assert not zone_feasible(64, zones, 3)
    ring = claim(sorted(zones), 64, 3, zones=zones)
    assert ring.tail_violations(3) == 0  # the node rule still holds
    assert 0 < zone_violations(ring, zones, 3) <= 2


def test_a_lone_node_in_its_zone_cannot_be_in_every_window() -> None:
    zones = {"a": "east", "b": "west", "c": "west", "d": "west", "e": "west"}
    assert not zone_feasible(64, zones, 2)
    ring = claim(sorted(zones), 64, 2, zones=zones)
    assert ring.tail_violations(2) == 0
    assert sorted(ring.counts().values()) == [12, 13, 13, 13, 13]


def test_two_zones_with_more_replicas_than_zones() -> None:
    zones = {f"{zone}{i}": zone for zone in ("east", "west") for i in range(3)}
    ring = claim(sorted(zones), 64, 3, zones=zones)
    assert zone_feasible(64, zones, 3)
    assert zone_violations(ring, zones, 3) == 0
    assert ring.tail_violations(3) == 0


@pytest.mark.parametrize(
    ("members", "partitions", "n_val", "zones", "field"),
    [
        (["a"], 12, 1, None, "partitions"),
        (["a"], 4, 1, None, "partitions"),
        (["a"], 8, 0, None, "n_val"),
        (["a"], 8, True, None, "n_val"),
        ([], 8, 1, None, "members"),
        (["a", ""], 8, 1, None, "members"),
        ("ab", 8, 1, None, "members"),
        (["a", "b"], 8, 1, {"a": "x"}, "zones"),
    ],
)
def test_bad_arguments_raise_config_errors(
    members: list[str], partitions: int, n_val: int, zones: dict[str, str] | None, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        claim(members, partitions, n_val, zones=zones)
    assert caught.value.field == field


def test_previous_ring_of_another_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="previous"):
        claim(["a", "b"], 16, 2, previous=claim(["a", "b"], 8, 2))
