"""The ring value: partitions of the hash space, owners, tail violations, and its encoding."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core import codec
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.core.hashing import RING_SIZE, key_position
from dynakv.core.ring import Ring, dealt_layout, tail_feasible, window_violations, zone_violations

EIGHT = Ring(8, ("a", "b", "c", "a", "b", "c", "a", "b"))


def test_partitions_split_the_hash_space_into_equal_ranges() -> None:
    width = RING_SIZE // 8
    assert EIGHT.partition_of(0) == 0
    assert EIGHT.partition_of(width - 1) == 0
    assert EIGHT.partition_of(width) == 1
    assert EIGHT.partition_of(RING_SIZE - 1) == 7
    assert [EIGHT.partition_start(p) for p in (0, 1, 7)] == [0, width, 7 * width]
    with pytest.raises(ValueError):
        EIGHT.partition_of(RING_SIZE)
    with pytest.raises(ValueError):
        EIGHT.partition_of(-1)


def test_a_key_lands_in_the_partition_covering_its_position() -> None:
    position = key_position(b"photos", b"cat.jpg")
    partition = EIGHT.partition_for_key("photos", "cat.jpg")
    assert EIGHT.partition_start(partition) <= position < EIGHT.partition_start(partition) + RING_SIZE // 8


def test_ownership_queries() -> None:
    assert EIGHT.members == ("a", "b", "c")
    assert EIGHT.owned_by("a") == (0, 3, 6)
    assert EIGHT.owned_by("zed") == ()
    assert EIGHT.counts() == {"a": 3, "b": 3, "c": 2}


def test_tail_violations_worked_example() -> None:
    # a b c a b c a b, circularly: every pair differs (b then a at the wrap), but the triples
    # (a, b, a) starting at 6 and (b, a, b) starting at 7 repeat an owner.
    assert EIGHT.tail_violations(1) == 0
    assert EIGHT.tail_violations(2) == 0
    assert EIGHT.tail_violations(3) == 2
    # Wider than the ring: the window is the whole ring, every start sees the repeats.
    assert EIGHT.tail_violations(9) == 8
    with pytest.raises(ConfigError):
        EIGHT.tail_violations(0)


def test_window_violations_counts_each_window_once() -> None:
    assert window_violations(["x"] * 8, 2) == 8
    assert window_violations(["x", "y"] * 4, 2) == 0
    assert window_violations(["x", "y"] * 4, 3) == 8
    assert window_violations(["x", "y", "z", "x", "w", "v", "u", "t"], 4) == 1


def test_invalid_rings_are_refused() -> None:
    with pytest.raises(ConfigError, match="power of two"):
        Ring(12, ("a",) * 12)
    with pytest.raises(ConfigError, match="power of two"):
        Ring(4, ("a",) * 4)
    with pytest.raises(ConfigError, match="7 owners"):
        Ring(8, ("a",) * 7)
    with pytest.raises(ConfigError, match="non-empty"):
        Ring(8, ("a",) * 7 + ("",))


def test_a_ring_is_frozen_even_when_built_from_a_list() -> None:
    owners = ["a"] * 8
    ring = Ring(8, owners)  # type: ignore[arg-type]
    owners[0] = "b"
    assert ring.owners == ("a",) * 8


def test_encoding_round_trip_and_size() -> None:
    assert Ring.decode(EIGHT.encode()) == EIGHT
    big = Ring(65536, tuple(f"node{i % 40}" for i in range(65536)))
    data = big.encode()
    assert Ring.decode(data) == big
    assert len(data) < 2 * 65536  # owners travel as small indexes, not names


def test_decode_refuses_what_encode_cannot_write() -> None:
    def payload(partitions: object, nodes: object, owners: object) -> bytes:
        return codec.encode("ring", [partitions, nodes, owners])

    cases = [
        payload(8, ["a"], [0] * 7),  # wrong length
        payload(12, ["a"], [0] * 12),  # not a power of two
        payload(8, ["b", "a"], [0, 1] * 4),  # names out of order
        payload(8, ["a", "b"], [0] * 8),  # a listed node owning nothing
        payload(8, ["a"], [0] * 7 + [1]),  # index out of range
        payload(8, ["a"], [0] * 7 + ["a"]),  # not an index
        payload(8, ["a", ""], [0, 1] * 4),  # empty name
        codec.encode("vclock", [8, ["a"], [0] * 8]),  # another type
        msgpack.packb([1, "ring"]),
        b"\xc1",
        EIGHT.encode()[:-1],
    ]
    for data in cases:
        with pytest.raises(DecodeError):
            Ring.decode(data)


@given(st.binary(max_size=80))
def test_random_bytes_decode_to_a_ring_or_a_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        assert isinstance(Ring.decode(data), Ring)


def test_feasibility_worked_examples() -> None:
    assert tail_feasible(8, 3, 2)  # a b c a b c a b: the worked example above, n_val 2
    assert not tail_feasible(64, 3, 3)  # S == n_val but 3 does not divide 64
    assert tail_feasible(64, 4, 4)  # S == n_val dividing Q: round robin
    assert not tail_feasible(8, 6, 5)  # S > n_val is not enough: 2 partitions need 10
    assert tail_feasible(8, 20, 5)  # more nodes than partitions: one each
    assert tail_feasible(8, 1, 1)


def test_dealt_layout_example() -> None:
    # Copies listed a a a b b b c c, dealt into 3 blocks: a b c | a b c | a b.
    assert dealt_layout(["c", "a", "b"], {"a": 3, "b": 3, "c": 2}) == list("abcabcab")


def test_zone_violations_count_replica_sets_short_of_zones() -> None:
    zones = {"a": "east", "b": "east", "c": "west", "d": "west"}
    spread = Ring(8, tuple("acbdacbd"))
    assert zone_violations(spread, zones, 2) == 0
    lumped = Ring(8, tuple("abcdabcd"))
    # Replicas (a, b) and (c, d) stay in one zone; (b, c) and (d, a) span both.
    assert zone_violations(lumped, zones, 2) == 4
    assert zone_violations(lumped, zones, 3) == 0
    with pytest.raises(ConfigError, match="no zone given for d"):
        zone_violations(lumped, {"a": "x", "b": "x", "c": "y"}, 2)
