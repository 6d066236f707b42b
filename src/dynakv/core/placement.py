"""The three placement strategies of the Dynamo paper (section 6.2), on one representation, and the
metrics that compare them: ownership balance, tail and zone violations, and how much data moves when a
node joins or leaves.

A `Placement` cuts the 2**128 hash ring into contiguous ranges, sorted by start; each range carries its
replicas, the preference list's primaries: the first n_val distinct nodes clockwise (ARCHITECTURE.md
section 5). A key at position p lies in the range with the greatest start <= p; the last range wraps
past 2**128 to the first start.

- Strategy 1: T random tokens per node; a key belongs to the first token clockwise whose position is
  larger than the key's (the paper's words), so a token owns [previous token, token). Ranges are unequal.
- Strategy 2: T random tokens per node and Q equal partitions; a partition goes to the first token
  clockwise from its end, so the tokens only map partitions to nodes and never cut the ring.
- Strategy 3: Q equal partitions, about Q/S per node, laid out by `claim` (Riak's ring).

Tail violation (riak_core#913, as `Ring.tail_violations` counts them): a unit (a token for strategy 1,
a partition for 2 and 3) whose window of n_val consecutive owners clockwise repeats a node, so its
preference-list walk had to skip an owner. The owners walked are tokens for strategies 1 and 2 (for
strategy 2 the window starts at the token that places the partition) and partitions for strategy 3;
with fewer units than n_val the window is all of them. With fewer nodes than n_val every window
repeats. Replica sets stay distinct either way; a skip hands the skipped node's share to whoever comes
next, which skews load.

Zone violation: a unit whose replicas span fewer zones than they could, min(replica count, zones that
hold nodes).

Everything here is pure: randomness arrives as a seeded `random.Random`.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dynakv.core.claim import claim
from dynakv.core.hashing import RING_BITS, RING_SIZE
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.core.ring import zone_violations as ring_zone_violations

Unit = Literal["tokens", "partitions"]
Token = tuple[int, str]  # (position on the ring, node that holds it)


def node_names(count: int) -> tuple[str, ...]:
    """The nodes of a planned cluster: "node1".."node<count>"."""
    return tuple(f"node{i}" for i in range(1, count + 1))


def zone_of(index: int, zone_count: int) -> str:
    """Zone of the index-th node (1-based), round robin so that zones differ in size by at most one."""
    return f"zone{(index - 1) % zone_count + 1}"


def round_robin_zones(nodes: Sequence[str], zone_count: int) -> dict[str, str]:
    return {node: zone_of(i, zone_count) for i, node in enumerate(nodes, start=1)}


@dataclass(frozen=True, slots=True)
class RingRange:
    """Positions [start, start + width) (modulo 2**128) and the nodes that replicate them, primary first."""

    start: int
    width: int
    replicas: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where every key of the ring lives, and what the strategy knew while building it.

    `counts` is per node, in `nodes` order: tokens held (strategy 1) or partitions owned as primary
    (strategies 2 and 3), as `unit` says. `tokens` is empty for strategy 3.
    """

    nodes: tuple[str, ...]
    n_val: int
    ranges: tuple[RingRange, ...]
    unit: Unit
    counts: tuple[int, ...]
    tail_violations: int
    zone_violations: int | None
    tokens: tuple[Token, ...] = ()
    ring: Ring | None = None  # strategy 3 only: the claimed ring, the `previous` of the next claim

    def __post_init__(self) -> None:
        assert self.ranges, "a placement covers the ring"
        assert len(self.counts) == len(self.nodes)
        assert sum(r.width for r in self.ranges) == RING_SIZE, "ranges must cover the ring exactly once"
        for before, after in zip(self.ranges, self.ranges[1:], strict=False):
            assert before.start + before.width == after.start, "ranges must be sorted and contiguous"

    def starts(self) -> list[int]:
        return [r.start for r in self.ranges]

    def replicas_at(self, position: int) -> tuple[str, ...]:
        """The replicas of the key at `position` (for tests and tools; hot loops bisect `starts`)."""
        return self.ranges[_range_index(self.starts(), position)].replicas


def _range_index(starts: Sequence[int], position: int) -> int:
    # Positions before the first start belong to the last range, which wraps past 2**128.
    i = bisect.bisect_right(starts, position) - 1
    return i if i >= 0 else len(starts) - 1


# ----------------------------------------------------------------------------------------------------
# Strategies 1 and 2: random tokens


def draw_tokens(
    nodes: Sequence[str], tokens_per_node: int, rng: random.Random, taken: Sequence[Token] = ()
) -> list[Token]:
    """Draw `tokens_per_node` positions per node, in `nodes` order, from `rng`; never reuse a position
    (a collision in 2**128 is all but impossible, but two nodes on one position would be ambiguous)."""
    assert tokens_per_node >= 1
    used = {position for position, _ in taken}
    drawn: list[Token] = []
    for node in nodes:
        for _ in range(tokens_per_node):
            position = rng.getrandbits(RING_BITS)
            while position in used:
                position = rng.getrandbits(RING_BITS)
            used.add(position)
            drawn.append((position, node))
    return drawn


def _walks(owners: Sequence[str], n_val: int) -> tuple[list[tuple[str, ...]], list[bool]]:
    """For each token index: its replicas (first n_val distinct nodes clockwise from it) and whether the
    window of n_val tokens starting there repeats a node (a tail violation, as `Ring.tail_violations`
    counts them: the window shrinks to all the tokens when there are fewer than n_val)."""
    m = len(owners)
    target = min(n_val, len(set(owners)))
    replicas: list[tuple[str, ...]] = []
    violated: list[bool] = []
    for j in range(m):
        found: list[str] = []
        for k in range(m):
            node = owners[(j + k) % m]
            if node not in found:
                found.append(node)
                if len(found) == target:
                    break
        replicas.append(tuple(found))
        size = min(n_val, m)
        violated.append(len({owners[(j + k) % m] for k in range(size)}) < size)
    return replicas, violated


def _zone_violations(
    units: Sequence[tuple[str, ...]], nodes: Sequence[str], zones: Mapping[str, str] | None
) -> int | None:
    if zones is None:
        return None
    zone_count = len({zones[node] for node in nodes})
    return sum(1 for reps in units if len({zones[n] for n in reps}) < min(len(reps), zone_count))


def _sorted_tokens(tokens: Sequence[Token], nodes: Sequence[str]) -> list[Token]:
    ordered = sorted(tokens)
    assert ordered, "at least one token"
    assert {node for _, node in ordered} <= set(nodes), "every token belongs to a planned node"
    return ordered


def placement_from_tokens(
    tokens: Sequence[Token], nodes: Sequence[str], n_val: int, *, zones: Mapping[str, str] | None = None
) -> Placement:
    """Strategy 1 on given tokens: the token at t owns [previous token, t)."""
    ordered = _sorted_tokens(tokens, nodes)
    positions = [position for position, _ in ordered]
    replicas, violated = _walks([node for _, node in ordered], n_val)
    m = len(ordered)
    # The range of token i starts at token i-1; token 0's range wraps, from the last token, so it comes
    # last in start order.
    ranges = [RingRange(positions[i - 1], positions[i] - positions[i - 1], replicas[i]) for i in range(1, m)]
    ranges.append(RingRange(positions[-1], positions[0] + RING_SIZE - positions[-1], replicas[0]))
    held = dict.fromkeys(nodes, 0)
    for _, node in ordered:
        held[node] += 1
    return Placement(
        nodes=tuple(nodes),
        n_val=n_val,
        ranges=tuple(ranges),
        unit="tokens",
        counts=tuple(held[node] for node in nodes),
        tail_violations=sum(violated),
        zone_violations=_zone_violations(replicas, nodes, zones),
        tokens=tuple(ordered),
    )


def partitioned_placement_from_tokens(
    tokens: Sequence[Token],
    nodes: Sequence[str],
    partitions: int,
    n_val: int,
    *,
    zones: Mapping[str, str] | None = None,
) -> Placement:
    """Strategy 2 on given tokens: partition p, [p*w, (p+1)*w), goes to the first token clockwise from
    its end, that is the first token >= (p+1)*w, since the partition's last key is (p+1)*w - 1."""
    assert partitions >= 1 and RING_SIZE % partitions == 0
    ordered = _sorted_tokens(tokens, nodes)
    positions = [position for position, _ in ordered]
    replicas, violated = _walks([node for _, node in ordered], n_val)
    width = RING_SIZE // partitions
    placing = [bisect.bisect_left(positions, (p + 1) * width) % len(ordered) for p in range(partitions)]
    ranges = tuple(RingRange(p * width, width, replicas[placing[p]]) for p in range(partitions))
    owned = dict.fromkeys(nodes, 0)
    for r in ranges:
        owned[r.replicas[0]] += 1
    return Placement(
        nodes=tuple(nodes),
        n_val=n_val,
        ranges=ranges,
        unit="partitions",
        counts=tuple(owned[node] for node in nodes),
        tail_violations=sum(violated[j] for j in placing),
        zone_violations=_zone_violations([r.replicas for r in ranges], nodes, zones),
        tokens=tuple(ordered),
    )


def strategy1(
    nodes: Sequence[str],
    tokens_per_node: int,
    n_val: int,
    rng: random.Random,
    *,
    zones: Mapping[str, str] | None = None,
) -> Placement:
    """Paper strategy 1: T random tokens per node, partitions by token value (unequal ranges)."""
    return placement_from_tokens(draw_tokens(nodes, tokens_per_node, rng), nodes, n_val, zones=zones)


def strategy2(
    nodes: Sequence[str],
    tokens_per_node: int,
    partitions: int,
    n_val: int,
    rng: random.Random,
    *,
    zones: Mapping[str, str] | None = None,
) -> Placement:
    """Paper strategy 2: T random tokens per node and Q equal-sized partitions."""
    tokens = draw_tokens(nodes, tokens_per_node, rng)
    return partitioned_placement_from_tokens(tokens, nodes, partitions, n_val, zones=zones)


# ----------------------------------------------------------------------------------------------------
# Strategy 3: Q equal partitions laid out by claim


def strategy3(
    nodes: Sequence[str],
    partitions: int,
    n_val: int,
    *,
    zones: Mapping[str, str] | None = None,
    previous: Ring | None = None,
) -> Placement:
    """Paper strategy 3: Q/S tokens per node, equal-sized partitions; `claim` decides the owners and,
    given the `previous` ring, moves as few partitions as it can."""
    ring = claim(tuple(nodes), partitions, n_val, zones=zones, previous=previous)
    return placement_from_ring(ring, nodes, n_val, zones=zones)


def placement_from_ring(
    ring: Ring, nodes: Sequence[str], n_val: int, *, zones: Mapping[str, str] | None = None
) -> Placement:
    partitions = ring.partitions
    width = RING_SIZE // partitions
    ranges = tuple(RingRange(p * width, width, primaries(ring, p, n_val)) for p in range(partitions))
    # The ranges above assume partition p holds [p*w, (p+1)*w); check the ring agrees at the edges.
    assert ring.partition_of(0) == 0 and ring.partition_of(RING_SIZE - 1) == partitions - 1
    assert partitions == 1 or ring.partition_of(width) == 1
    owned = ring.counts()
    return Placement(
        nodes=tuple(nodes),
        n_val=n_val,
        ranges=ranges,
        unit="partitions",
        counts=tuple(owned.get(node, 0) for node in nodes),
        tail_violations=ring.tail_violations(n_val),
        zone_violations=None if zones is None else ring_zone_violations(ring, zones, n_val),
        ring=ring,
    )


# ----------------------------------------------------------------------------------------------------
# Metrics


def owned_widths(placement: Placement) -> dict[str, int]:
    """Per node, the width of the hash space it is the primary (first replica) of."""
    widths = dict.fromkeys(placement.nodes, 0)
    for r in placement.ranges:
        widths[r.replicas[0]] += r.width
    return widths


def ownership(placement: Placement) -> dict[str, float]:
    """Per node, the fraction of the hash space it is the primary of; sums to 1 (up to float rounding)."""
    return {node: width / RING_SIZE for node, width in owned_widths(placement).items()}


def replicated_load(placement: Placement) -> dict[str, float]:
    """Per node, the fraction of the hash space it holds a replica of; sums to min(n_val, S)."""
    widths = dict.fromkeys(placement.nodes, 0)
    for r in placement.ranges:
        for node in r.replicas:
            widths[node] += r.width
    return {node: width / RING_SIZE for node, width in widths.items()}


def balance(placement: Placement) -> float:
    """Max over mean of ownership: 1.0 is perfect; the busiest node carries `balance` times its share."""
    # mean is 1/S of the ring, so max/mean = max_width * S / RING_SIZE, computed exactly on integers.
    return max(owned_widths(placement).values()) * len(placement.nodes) / RING_SIZE


@dataclass(frozen=True, slots=True)
class Movement:
    """What a membership change costs, each as a fraction weighted by range width.

    keys_moved: keys whose replica set changed (some replica must be copied somewhere).
    replicas_moved: key-replicas that must move, sum over keys of |new set - old set| / n_val.
    primaries_moved: keys whose primary (first replica) changed.
    """

    keys_moved: float
    replicas_moved: float
    primaries_moved: float


def movement(before: Placement, after: Placement) -> Movement:
    """Overlay two placements: between consecutive range starts of either, both are constant."""
    assert before.n_val == after.n_val
    b_starts, a_starts = before.starts(), after.starts()
    bounds = sorted(set(b_starts) | set(a_starts))
    keys = replicas = primary = 0  # widths, summed exactly on integers and divided once at the end
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else bounds[0] + RING_SIZE
        width = end - start
        old = before.ranges[_range_index(b_starts, start)].replicas
        new = after.ranges[_range_index(a_starts, start)].replicas
        if set(old) != set(new):
            keys += width
            replicas += width * len(set(new) - set(old))
        if old[0] != new[0]:
            primary += width
    return Movement(keys / RING_SIZE, replicas / (RING_SIZE * before.n_val), primary / RING_SIZE)


def moved_fraction(before: Placement, after: Placement) -> float:
    """Fraction of the key space whose replica set changed between two placements."""
    return movement(before, after).keys_moved


# ----------------------------------------------------------------------------------------------------
# A plan: one placement, and what adding or removing one node would move


@dataclass(frozen=True, slots=True)
class Plan:
    strategy: int
    placement: Placement
    joining: str
    on_add: Movement
    leaving: str | None  # None when the cluster has a single node: nothing can leave
    on_remove: Movement | None


def plan(
    strategy: int,
    node_count: int,
    n_val: int,
    *,
    partitions: int,
    tokens_per_node: int,
    zone_count: int | None = None,
    rng: random.Random,
) -> Plan:
    """Place `node_count` nodes named node1..nodeS with one strategy, then measure a join of node<S+1>
    and a leave of node<S>. For strategies 1 and 2 the joiner draws T tokens from the same `rng` after
    the initial draws, and a leaver's tokens vanish; for strategy 3 claim rebalances from the ring."""
    assert strategy in (1, 2, 3) and node_count >= 1
    names = node_names(node_count + 1)
    nodes, joining = names[:-1], names[-1]
    zones = None if zone_count is None else round_robin_zones(names, zone_count)
    if strategy == 3:
        before, added, removed = _strategy3_changes(nodes, joining, partitions, n_val, zones)
    else:
        before, added, removed = _token_changes(
            strategy,
            nodes,
            joining,
            partitions=partitions,
            n_val=n_val,
            tokens_per_node=tokens_per_node,
            zones=zones,
            rng=rng,
        )
    return Plan(
        strategy=strategy,
        placement=before,
        joining=joining,
        on_add=movement(before, added),
        leaving=nodes[-1] if removed is not None else None,
        on_remove=movement(before, removed) if removed is not None else None,
    )


def _only(zones: Mapping[str, str] | None, nodes: Sequence[str]) -> dict[str, str] | None:
    return None if zones is None else {node: zones[node] for node in nodes}


def _strategy3_changes(
    nodes: Sequence[str], joining: str, partitions: int, n_val: int, zones: Mapping[str, str] | None
) -> tuple[Placement, Placement, Placement | None]:
    before = strategy3(nodes, partitions, n_val, zones=_only(zones, nodes))
    grown = (*nodes, joining)
    added = strategy3(grown, partitions, n_val, zones=_only(zones, grown), previous=before.ring)
    if len(nodes) == 1:
        return before, added, None
    shrunk = nodes[:-1]
    removed = strategy3(shrunk, partitions, n_val, zones=_only(zones, shrunk), previous=before.ring)
    return before, added, removed


def _token_changes(
    strategy: int,
    nodes: Sequence[str],
    joining: str,
    *,
    partitions: int,
    n_val: int,
    tokens_per_node: int,
    zones: Mapping[str, str] | None,
    rng: random.Random,
) -> tuple[Placement, Placement, Placement | None]:
    def build(tokens: Sequence[Token], members: Sequence[str]) -> Placement:
        if strategy == 1:
            return placement_from_tokens(tokens, members, n_val, zones=_only(zones, members))
        return partitioned_placement_from_tokens(
            tokens, members, partitions, n_val, zones=_only(zones, members)
        )

    tokens = draw_tokens(nodes, tokens_per_node, rng)
    before = build(tokens, nodes)
    added = build(tokens + draw_tokens([joining], tokens_per_node, rng, taken=tokens), (*nodes, joining))
    if len(nodes) == 1:
        return before, added, None
    leaving = nodes[-1]
    removed = build([t for t in tokens if t[1] != leaving], nodes[:-1])
    return before, added, removed
