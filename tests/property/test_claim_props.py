"""Claim's acceptance criteria as properties: the feasibility conditions against exhaustive search,
and for fresh and incremental claims balance, no tail or zone violations whenever feasible,
independence from input order, and how many partitions move on a join or a leave.

Movement bounds asserted (S nodes before the change; both rings feasible): a join moves at most
1.5 x ceil(Q/(S+1)); a leave at most 1.5 x ceil(Q/S) when 2 * n_val or more nodes remain, at most
3 x ceil(Q/S) when fewer do, and exactly as few as the best round robin when n_val remain.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from hypothesis import event, given, settings
from hypothesis import strategies as st

from dynakv.core.claim import claim, tail_feasible, zone_feasible, zone_violations
from dynakv.core.ring import Ring, dealt_layout, window_violations

SIZES = [8, 16, 32, 64, 128, 256, 512, 1024]


def names(count: int, prefix: str = "n") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(count)]


def balanced(ring: Ring, members: Sequence[str]) -> bool:
    counts = [ring.counts().get(node, 0) for node in members]
    return set(ring.owners) <= set(members) and max(counts) - min(counts) <= 1


def moved(before: Ring, after: Ring) -> int:
    return sum(a != b for a, b in zip(before.owners, after.owners, strict=True))


# --- feasibility, against exhaustive search ----------------------------------------------------------


def exists(size: int, counts: Sequence[int], ok: object, kinds: Sequence[int] | None = None) -> bool:
    """Whether a circular sequence with counts[i] copies of label i passes `ok` (a check of the whole
    sequence, also used on prefixes to prune). Labels of equal count and kind are interchangeable, so
    an unused one is only tried if the others of its kind before it are in use."""
    assert callable(ok)
    seq: list[int] = []
    left = list(counts)
    kind = [(c, k) for c, k in zip(counts, kinds or [0] * len(counts), strict=True)]

    def search() -> bool:
        if len(seq) == size:
            return bool(ok(seq, True))
        for label, count in enumerate(left):
            first_of_kind = all(left[j] != counts[j] or kind[j] != kind[label] for j in range(label))
            if count and (left[label] != counts[label] or first_of_kind):
                seq.append(label)
                left[label] -= 1
                if ok(seq, False) and search():
                    return True
                left[label] += 1
                seq.pop()
        return False

    return search()


def windows_ok(seq: list[int], closed: bool, width: int, rule: object) -> bool:
    assert callable(rule)
    ext = seq + seq[: width - 1] if closed else seq
    return all(rule(ext[i : i + width]) for i in range(len(ext) - width + 1))


def test_tail_feasible_is_exact_on_small_rings() -> None:
    for size in range(2, 11):
        for nodes in range(1, size + 2):
            for n_val in range(1, 6):
                width = min(n_val, size)
                q, r = divmod(size, nodes)
                counts = [q + 1] * r + [q] * (nodes - r)

                def distinct(seq: list[int], closed: bool, width: int = width) -> bool:
                    return windows_ok(seq, closed, width, lambda w: len(set(w)) == len(w))

                assert tail_feasible(size, nodes, n_val) == exists(size, counts, distinct), (
                    size,
                    nodes,
                    n_val,
                )


def zones_exist(size: int, zone_sizes: Sequence[int], n_val: int) -> bool:
    """A balanced ring where every window of w = min(n_val, Q) has distinct owners spanning min(w, Z)
    zones, trying every split of the larger shares among the zones."""
    width, nodes = min(n_val, size), sum(zone_sizes)
    q, r = divmod(size, nodes)
    zone_of = [z for z, k in enumerate(zone_sizes) for _ in range(k)]
    spread = min(width, len(zone_sizes))

    def rule(window: list[int]) -> bool:
        return len(set(window)) == len(window) and len({zone_of[x] for x in window}) >= min(
            spread, len(window)
        )

    for extra in itertools.product(*[range(k + 1) for k in zone_sizes]):
        if sum(extra) == r:
            counts = [
                q + (i < e) for z, (k, e) in enumerate(zip(zone_sizes, extra, strict=True)) for i in range(k)
            ]
            if exists(size, counts, lambda seq, closed: windows_ok(seq, closed, width, rule), zone_of):
                return True
    return False


def test_zone_feasible_is_exact_when_n_val_does_not_exceed_the_zones_and_sufficient_otherwise() -> None:
    for size in range(2, 9):
        for zone_count in (2, 3):
            for zone_sizes in itertools.combinations_with_replacement(range(1, 4), zone_count):
                zones = {f"z{z}n{i}": f"z{z}" for z, k in enumerate(zone_sizes) for i in range(k)}
                for n_val in range(1, 5):
                    found = zones_exist(size, zone_sizes, n_val)
                    if min(n_val, size) <= zone_count:
                        assert zone_feasible(size, zones, n_val) == found, (size, zone_sizes, n_val)
                    elif zone_feasible(size, zones, n_val):
                        assert found, (size, zone_sizes, n_val)


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 6), min_size=1), st.integers(1, 6))
def test_dealt_layout_keeps_copies_apart(counts: dict[str, int], n_val: int) -> None:
    size = sum(counts.values())
    layout = dealt_layout(sorted(counts), counts)
    assert sorted(layout) == sorted(label for label, count in counts.items() for _ in range(count))
    if max(counts.values()) * min(n_val, size) <= size:
        assert window_violations(layout, n_val) == 0


# --- fresh claims ------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(st.sampled_from(SIZES), st.integers(1, 40), st.integers(1, 5), st.randoms(use_true_random=False))
def test_fresh_claim(partitions: int, count: int, n_val: int, rng: object) -> None:
    members = names(count)
    ring = claim(members, partitions, n_val)
    assert balanced(ring, members)
    if tail_feasible(partitions, count, n_val):
        assert ring.tail_violations(n_val) == 0
    elif count >= n_val:
        assert ring.tail_violations(n_val) <= n_val - 1
    shuffled = members + members[:3]
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert claim(shuffled, partitions, n_val) == ring


# --- incremental claims ------------------------------------------------------------------------------

History = tuple[int, int, list[str], Ring]


@st.composite
def histories(draw: st.DrawFn, small: bool = False) -> History:
    """A ring made by claim from scratch, then through up to two joins or leaves. `small`: between
    n_val + 1 and 2 * n_val + 1 nodes, where leaves are hardest."""
    partitions = draw(st.sampled_from(SIZES[:6]))
    n_val = draw(st.integers(2, 5) if small else st.integers(1, 5))
    width = min(n_val, partitions)
    members = names(draw(st.integers(width + 1, 2 * width + 1) if small else st.integers(1, 40)))
    ring = claim(members, partitions, n_val)
    joiners = iter(names(3, "j"))
    for _ in range(draw(st.integers(0, 2))):
        if len(members) > 1 and draw(st.booleans()):
            members.remove(draw(st.sampled_from(members)))
        else:
            members.append(next(joiners))
        ring = claim(members, partitions, n_val, previous=ring)
    return partitions, n_val, members, ring


def check_valid(ring: Ring, members: Sequence[str], n_val: int) -> None:
    assert balanced(ring, members)
    if tail_feasible(ring.partitions, len(members), n_val):
        assert ring.tail_violations(n_val) == 0


@settings(max_examples=150)
@given(histories())
def test_join(history: History) -> None:
    partitions, n_val, members, ring = history
    after = claim([*members, "newcomer"], partitions, n_val, previous=ring)
    check_valid(after, [*members, "newcomer"], n_val)
    both = tail_feasible(partitions, len(members), n_val) and tail_feasible(
        partitions, len(members) + 1, n_val
    )
    event(f"join {'feasible' if both else 'infeasible'}, Q={partitions}")
    if both:
        assert moved(ring, after) <= 1.5 * math.ceil(partitions / (len(members) + 1))


def check_leave(history: History, gone: str) -> str:
    """Claim without `gone`; check validity and the movement bound; return which bound applied."""
    partitions, n_val, members, ring = history
    rest = [node for node in members if node != gone]
    after = claim(rest, partitions, n_val, previous=ring)
    check_valid(after, rest, n_val)
    width, share = min(n_val, partitions), math.ceil(partitions / len(members))
    if not (tail_feasible(partitions, len(members), n_val) and tail_feasible(partitions, len(rest), n_val)):
        return "infeasible"
    if len(rest) >= 2 * width:
        assert moved(ring, after) <= 1.5 * share
        return "roomy"
    if len(rest) > width:
        assert moved(ring, after) <= 3 * share
        return "tight"
    # Only round robin is valid: no claim can do better than the round robin nearest the old ring.
    agree = max(
        sum(owner == order[p % width] for p, owner in enumerate(ring.owners))
        for order in itertools.permutations(rest)
    )
    assert moved(ring, after) == partitions - agree
    return "round robin"


@settings(max_examples=150)
@given(histories(), st.data())
def test_leave(history: History, data: st.DataObject) -> None:
    if len(history[2]) > 1:
        event(check_leave(history, data.draw(st.sampled_from(history[2]))))


@settings(max_examples=150)
@given(histories(small=True), st.data())
def test_leave_from_a_small_cluster(history: History, data: st.DataObject) -> None:
    if len(history[2]) > 1:
        event(check_leave(history, data.draw(st.sampled_from(history[2]))))


@settings(max_examples=60)
@given(histories())
def test_several_changes_at_once(history: History) -> None:
    partitions, n_val, members, ring = history
    changed = [*members[1:], "x1", "x2"]
    after = claim(changed, partitions, n_val, previous=ring)
    check_valid(after, changed, n_val)
    assert claim(list(reversed(changed)), partitions, n_val, previous=ring) == after


# --- zones -------------------------------------------------------------------------------------------


@settings(max_examples=100)
@given(st.sampled_from(SIZES[:6]), st.integers(1, 5), st.integers(2, 4), st.integers(1, 6), st.data())
def test_equal_zones(
    partitions: int, n_val: int, zone_count: int, per_zone: int, data: st.DataObject
) -> None:
    zones = {f"z{z}n{i}": f"z{z}" for z in range(zone_count) for i in range(per_zone)}
    if len(zones) < n_val + 1:
        return
    ring = claim(sorted(zones), partitions, n_val, zones=zones)
    check_valid(ring, sorted(zones), n_val)
    if zone_feasible(partitions, zones, n_val):
        assert zone_violations(ring, zones, n_val) == 0
    # Then one node joins a zone or leaves; the guarantees hold for the new zones.
    changed = dict(zones)
    if data.draw(st.booleans()):
        zone = f"z{data.draw(st.integers(0, zone_count - 1))}"
        changed[f"{zone}n99"] = zone
    else:
        del changed[data.draw(st.sampled_from(sorted(zones)))]
    after = claim(sorted(changed), partitions, n_val, zones=changed, previous=ring)
    check_valid(after, sorted(changed), n_val)
    if zone_feasible(partitions, changed, n_val):
        assert zone_violations(after, changed, n_val) == 0
