"""Preference lists: which nodes hold the replicas of a partition (paper section 4.3).

Walk the ring clockwise from the key's partition and collect distinct nodes: the first n_val are the
primaries. With sloppy quorum (paper section 4.6) a primary that cannot be reached is replaced by the
next reachable node further along the walk, a fallback, which keeps the write as a hint naming the
primary it stands in for. The walk only ever skips partitions whose owner is already in the list, so
on a ring without tail violations the primaries are exactly the owners of n_val consecutive partitions.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from dataclasses import dataclass

from dynakv.core.ring import Ring


@dataclass(frozen=True, slots=True)
class PreflistEntry:
    """One replica of a preference list.

    `partition` is the ring partition whose ownership put `node` in the list. A fallback has
    `primary=False` and names in `stands_in_for` the unreachable primary whose writes it keeps as hints.
    """

    node: str
    partition: int
    primary: bool
    stands_in_for: str | None = None


def walk(ring: Ring, partition: int) -> Iterator[tuple[int, str]]:
    """(partition, node) for each distinct node met walking clockwise from `partition`."""
    assert 0 <= partition < ring.partitions, f"partition {partition} outside [0, {ring.partitions})"
    seen: set[str] = set()
    owners = ring.owners
    for step in range(ring.partitions):
        index = (partition + step) % ring.partitions
        node = owners[index]
        if node not in seen:
            seen.add(node)
            yield index, node


def primaries(ring: Ring, partition: int, n_val: int) -> tuple[str, ...]:
    """The first n_val distinct nodes clockwise from `partition` (fewer if the ring has fewer nodes)."""
    assert n_val >= 1, f"n_val must be at least 1, got {n_val}"
    found: list[str] = []
    for _, node in walk(ring, partition):
        found.append(node)
        if len(found) == n_val:
            break
    return tuple(found)


def preference_list(
    ring: Ring, partition: int, n_val: int, unreachable: Set[str] = frozenset()
) -> tuple[PreflistEntry, ...]:
    """The nodes that serve `partition`: reachable primaries in walk order, then one fallback per
    unreachable primary (in the primaries' order), each the next reachable node further clockwise.

    At most n_val entries, all distinct nodes, none of them unreachable; fewer when the ring does not
    have enough reachable nodes.
    """
    assert n_val >= 1, f"n_val must be at least 1, got {n_val}"
    served: list[PreflistEntry] = []
    down: list[str] = []
    nodes = walk(ring, partition)
    for index, node in nodes:
        if node in unreachable:
            down.append(node)
        else:
            served.append(PreflistEntry(node, index, primary=True))
        if len(served) + len(down) == n_val:
            break
    for primary in down:
        for index, node in nodes:
            if node not in unreachable:
                served.append(PreflistEntry(node, index, primary=False, stands_in_for=primary))
                break
        else:
            break
    return tuple(served)


def replica_partitions(ring: Ring, node: str, n_val: int) -> tuple[int, ...]:
    """The partitions whose primaries include `node`, in partition order."""
    return tuple(p for p in range(ring.partitions) if node in primaries(ring, p, n_val))
