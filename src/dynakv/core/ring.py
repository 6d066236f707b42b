"""The ring: Q equal partitions of the 128-bit hash space and the node that owns each one.

Partition i covers the positions [i * 2**128/Q, (i+1) * 2**128/Q), so a key's partition is the top
log2(Q) bits of its position (paper section 6.2, strategy 3; Riak's ring_size). Q is a power of two,
fixed when the cluster is created. Who owns which partition is decided by `dynakv.core.claim`; this
module holds the answer, measures it, and provides the layouts claim builds on together with the exact
conditions under which a layout can keep its rules (`tail_feasible`, `zone_quota`).

A tail violation (riak_core#913) is a window of n_val consecutive partitions, taken circularly, in
which some node owns two partitions: the preference list of the window's first partition then has to
walk past it to find n_val distinct nodes. When n_val exceeds Q the window is the whole ring (Q
partitions), since a walk never visits a partition twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

from dynakv.core import codec
from dynakv.core.config import PARTITIONS_MAX, PARTITIONS_MIN
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.core.hashing import RING_BITS, RING_SIZE, key_position

RING_TAG: Final = "ring"


def check_partitions(partitions: object) -> int:
    """Q must be a power of two in [PARTITIONS_MIN, PARTITIONS_MAX]; raise `ConfigError` otherwise."""
    if isinstance(partitions, bool) or not isinstance(partitions, int):
        raise ConfigError("partitions", f"expected an integer, got {partitions!r}")
    if not PARTITIONS_MIN <= partitions <= PARTITIONS_MAX or partitions & (partitions - 1):
        raise ConfigError(
            "partitions", f"{partitions} is not a power of two in [{PARTITIONS_MIN}, {PARTITIONS_MAX}]"
        )
    return partitions


def window_violations(owners: Sequence[object], n_val: int) -> int:
    """How many windows of min(n_val, len(owners)) consecutive items, circularly, repeat an item."""
    size = len(owners)
    width = min(n_val, size)
    # A window starting at s contains positions s..s+width-1; it is violated when it holds some item
    # and that item's next occurrence. Mark, per occurrence, the window starts that hold both ends.
    marks = [0] * (size + 1)
    last: dict[object, int] = {}
    for i in range(2 * size):
        item = owners[i % size]
        if item in last:
            gap = i - last[item]
            if gap < width and i < size + width:
                first, end = i - width + 1, last[item] + 1
                for start in range(first, end):
                    marks[start % size] = 1
        last[item] = i
    return sum(marks[:size])


def spread_violations(labels: Sequence[object], n_val: int) -> int:
    """How many windows of min(n_val, len(labels)) consecutive labels, circularly, hold fewer distinct
    labels than they could: min(window, distinct labels of the whole ring). With zone labels: the
    windows whose replicas (on a ring without tail violations) miss a zone they could span."""
    size = len(labels)
    width = min(n_val, size)
    want = min(width, len(set(labels)))
    held = Counter(labels[:width])
    count = 0
    for start in range(size):
        count += len(held) < want
        held[labels[start]] -= 1
        if not held[labels[start]]:
            del held[labels[start]]
        held[labels[(start + width) % size]] += 1
    return count


@dataclass(frozen=True, slots=True)
class Ring:
    """Q partitions and, for each, the name of its owner node."""

    partitions: int
    owners: tuple[str, ...]

    def __post_init__(self) -> None:
        check_partitions(self.partitions)
        given: Any = self.owners
        if not isinstance(given, tuple):
            # A list would make the ring mutable through the back door; freeze it.
            object.__setattr__(self, "owners", tuple(given))
        if len(self.owners) != self.partitions:
            raise ConfigError("owners", f"{len(self.owners)} owners for {self.partitions} partitions")
        for owner in self.owners:
            if not isinstance(owner, str) or not owner:
                raise ConfigError("owners", f"an owner must be a non-empty node name, got {owner!r}")

    @property
    def partition_bits(self) -> int:
        return self.partitions.bit_length() - 1

    @property
    def members(self) -> tuple[str, ...]:
        """The distinct owners, sorted by name."""
        return tuple(sorted(set(self.owners)))

    def partition_of(self, position: int) -> int:
        """The partition covering a ring position in [0, 2**128)."""
        if not 0 <= position < RING_SIZE:
            raise ValueError(f"ring position {position} is outside [0, 2**{RING_BITS})")
        return position >> (RING_BITS - self.partition_bits)

    def partition_start(self, partition: int) -> int:
        """The first ring position of a partition."""
        return partition << (RING_BITS - self.partition_bits)

    def partition_for_key(self, bucket: bytes | str, key: bytes | str) -> int:
        return self.partition_of(key_position(bucket, key))

    def owned_by(self, node: str) -> tuple[int, ...]:
        return tuple(i for i, owner in enumerate(self.owners) if owner == node)

    def counts(self) -> dict[str, int]:
        """Partitions owned per node, in node-name order."""
        counted = Counter(self.owners)
        return {node: counted[node] for node in sorted(counted)}

    def tail_violations(self, n_val: int) -> int:
        """Windows of n_val consecutive partitions (circularly) that contain a repeated owner."""
        if n_val < 1:
            raise ConfigError("n_val", f"{n_val} is below the minimum 1")
        return window_violations(self.owners, n_val)

    def encode(self) -> bytes:
        # Owners as indexes into the sorted node names: a 65536-partition ring stays small.
        nodes = self.members
        index = {node: i for i, node in enumerate(nodes)}
        return codec.encode(RING_TAG, [self.partitions, list(nodes), [index[o] for o in self.owners]])

    @classmethod
    def decode(cls, data: bytes) -> Ring:
        """The ring `encode` wrote; anything else raises `DecodeError`."""
        payload: Any = codec.decode(data, RING_TAG)
        partitions_raw, nodes_raw, indexes_raw = codec.want_tuple(payload, "ring", 3)
        partitions = codec.want_int(partitions_raw, "ring.partitions", PARTITIONS_MIN, PARTITIONS_MAX)
        nodes = codec.want_list_of(nodes_raw, "ring.nodes", codec.want_str)
        if any(a >= b for a, b in pairwise(nodes)):
            raise DecodeError("ring.nodes: expected strictly increasing node names")
        last = len(nodes) - 1
        indexes = [
            codec.want_int(raw, f"ring.owners[{i}]", 0, last)
            for i, raw in enumerate(codec.want_list(indexes_raw, "ring.owners"))
        ]
        if len(set(indexes)) != len(nodes):
            raise DecodeError("ring.nodes: every listed node must own a partition")
        try:
            return cls(partitions, tuple(nodes[i] for i in indexes))
        except ConfigError as exc:
            raise DecodeError(f"ring: {exc}") from None


# --- what a layout can attain, and zone spread ---------------------------------------------------------
# The arguments are in dynakv.core.claim's docstring; tests/property/test_claim_props.py checks both
# conditions against an exhaustive search on small rings.


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tail_feasible(partitions: int, nodes: int, n_val: int) -> bool:
    """Whether a balanced ring of `nodes` nodes can be free of tail violations: the node owning the
    most partitions, ceil(Q/S), needs n_val partitions between any two of its own."""
    return nodes >= 1 and _ceil_div(partitions, nodes) * min(n_val, partitions) <= partitions


def zone_groups(nodes: Sequence[str], zones: Mapping[str, str]) -> dict[str, list[str]]:
    """The nodes of each zone, zones and nodes in the order given (zones sorted by name)."""
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(zones[node], []).append(node)
    return {zone: groups[zone] for zone in sorted(groups)}


def zone_quota(groups: Mapping[str, Sequence[str]], partitions: int, n_val: int) -> dict[str, int] | None:
    """For a balanced ring with no tail violation whose every n_val consecutive partitions span
    min(n_val, zones) zones: how many nodes of each zone own ceil(Q/S) partitions; None when claim
    cannot promise one. Exact when n_val <= zones; when n_val > zones it asks for zones repeating
    with period Z, which suffices but is not necessary (3 zones with n_val = 4 on a power-of-two ring
    are refused though such rings exist)."""
    n = min(n_val, partitions)
    q, r = divmod(partitions, sum(len(members) for members in groups.values()))
    if n <= len(groups):
        # Windows of n distinct zones already have distinct nodes, so only the zones' shares matter:
        # hand the r larger node shares to the zones that own the fewest partitions so far.
        quota = dict.fromkeys(groups, 0)
        for _ in range(r):
            open_zones = [z for z in groups if quota[z] < len(groups[z])]
            quota[min(open_zones, key=lambda z: (len(groups[z]) * q + quota[z], z))] += 1
        largest = max(len(groups[z]) * q + quota[z] for z in groups)
        return quota if largest * n <= partitions else None
    # Every window of Z < n partitions holds all Z zones, so zones repeat with period Z and each owns
    # Q/Z partitions; inside a zone a node needs ceil(n/Z) of the zone's partitions between its own.
    count = len(groups)
    if partitions % count:
        return None
    per_zone = partitions // count
    quota = {zone: per_zone - len(members) * q for zone, members in groups.items()}
    for zone, members in groups.items():
        if not 0 <= quota[zone] <= len(members) or (q + (quota[zone] > 0)) * _ceil_div(n, count) > per_zone:
            return None
    return quota


def dealt_layout(labels: Sequence[str], counts: Mapping[str, int]) -> list[str]:
    """counts[label] copies of each label around a ring, any two copies of a label at least
    floor(Q / max(counts)) apart: list the copies label by label, largest counts first, and deal the
    list into max(counts) blocks like cards. The witness that `tail_feasible` is sufficient (with
    labels = nodes) and, with labels = zones, that `zone_quota` is."""
    ordered = sorted(labels, key=lambda label: (-counts[label], label))
    copies = [label for label in ordered for _ in range(counts[label])]
    blocks = max(counts.values())
    return [label for b in range(blocks) for label in copies[b::blocks]]


def zoned_layout(
    groups: Mapping[str, Sequence[str]], partitions: int, n_val: int, quota: Mapping[str, int]
) -> list[str]:
    """A balanced ring without tail or zone violations, for a `quota` from `zone_quota`: the zones
    first, dealt as labels, then the nodes inside the partitions of their zone."""
    n = min(n_val, partitions)
    q = partitions // sum(len(members) for members in groups.values())
    if n <= len(groups):
        shares = {zone: len(members) * q + quota[zone] for zone, members in groups.items()}
        used = dict.fromkeys(groups, 0)
        layout = []
        for zone in dealt_layout(list(groups), shares):  # any node will do: the zones differ
            layout.append(groups[zone][used[zone] % len(groups[zone])])
            used[zone] += 1
        return layout
    inner = [
        dealt_layout(members, {node: q + (i < quota[zone]) for i, node in enumerate(members)})
        for zone, members in groups.items()
    ]
    return [inner[i % len(groups)][i // len(groups)] for i in range(partitions)]


def zone_feasible(partitions: int, zones: Mapping[str, str], n_val: int) -> bool:
    """Whether claim guarantees a balanced ring over the nodes of `zones` free of tail and zone
    violations (exact for n_val <= zones, see `zone_quota`)."""
    return bool(zones) and zone_quota(zone_groups(sorted(zones), zones), partitions, n_val) is not None


def zone_violations(ring: Ring, zones: Mapping[str, str], n_val: int) -> int:
    """Partitions whose replicas (primaries: the first n_val distinct owners clockwise) span fewer
    zones than they could, min(replicas, zones of the ring's nodes)."""
    missing = [node for node in ring.members if node not in zones]
    if missing:
        raise ConfigError("zones", f"no zone given for {', '.join(missing)}")
    if n_val < 1:
        raise ConfigError("n_val", f"{n_val} is below the minimum 1")
    zone_count = len({zones[node] for node in ring.members})
    count = 0
    for partition in range(ring.partitions):
        replicas: list[str] = []
        for step in range(ring.partitions):
            node = ring.owners[(partition + step) % ring.partitions]
            if node not in replicas:
                replicas.append(node)
                if len(replicas) == n_val:
                    break
        count += len({zones[node] for node in replicas}) < min(len(replicas), zone_count)
    return count


# --- node layouts ----------------------------------------------------------------------------------


def _skip_rounds(size: int, partitions: int, double: bool) -> list[set[int]] | None:
    """For each round of the member cycle, the member indexes it skips; None if the shape cannot fit.

    Each round skips one member, and a member's skips come in one run of consecutive rounds, so while
    the run lasts that member is absent from a whole stretch of the ring: when another node leaves, its
    partitions there can go to the absent member. A few rounds that skip nobody (`double=False`) or
    two members (`double=True`) make the total come out at Q.
    """
    if double:
        rounds = -(-partitions // (size - 1))
        extra, full = rounds * (size - 1) - partitions, 0
    else:
        (rounds, full), extra = divmod(partitions, size - 1), 0
    if rounds < full or extra > rounds:
        return None
    runs = [(rounds - full) // size + (j < (rounds - full) % size) for j in range(size)]
    skips = rounds - full + extra
    extras = [j for j in range(size) for _ in range(skips // size + (j < skips % size) - runs[j])]
    # Runs in descending member order: consecutive skips then stay at least size-2 members apart.
    schedule = [j for j in reversed(range(size)) for _ in range(runs[j])]
    for k in range(rounds):
        if (k + 1) * full // rounds > k * full // rounds:
            schedule.insert(k, -1)
    plan = [{j} if j >= 0 else set() for j in schedule]
    for t, member in enumerate(extras):
        for k in [(t * rounds // len(extras) + d) % rounds for d in range(rounds)]:
            if (
                len(plan[k]) == 1
                and min((member - schedule[k]) % size, (schedule[k] - member) % size) >= size // 2
            ):
                plan[k].add(member)
                break
        else:
            return None
    return plan


def node_candidates(order: Sequence[str], partitions: int, n: int) -> list[list[str]]:
    """Balanced layouts of the nodes in `order`, the ones kindest to later leaves first."""
    size = len(order)
    q, r = divmod(partitions, size)
    found = []
    for double in (True, False):
        plan = _skip_rounds(size, partitions, double) if size >= max(3, n + 1 + double) else None
        if plan is not None:
            found.append([order[i] for skipped in plan for i in range(size) if i not in skipped])
    found.append(dealt_layout(order, {node: q + (i < r) for i, node in enumerate(order)}))
    found.append([order[i % size] for i in range(partitions)])
    return found


def node_layout(order: Sequence[str], partitions: int, n: int) -> list[str]:
    """The first violation-free balanced candidate, else the one with the fewest violations."""
    candidates = node_candidates(order, partitions, n)
    for layout in candidates:
        if window_violations(layout, n) == 0:
            return layout
    return min(candidates, key=lambda layout: window_violations(layout, n))
