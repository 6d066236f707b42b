"""Properties of sibling sets over random histories of reads, puts, syncs (and prunes).

The model beside the real replicas is the causal history each replica has seen, as a set of value ids
(every put writes a fresh id), with no dots or clocks in it. A read hands the client the replica's
history along with its context; a put of value v with a context whose history is H adds H and v to the
coordinator's history and records that v superseded H; a sync unions histories. DVV is a compact
encoding of exactly this, so a replica must hold the values of its history that no put in its history
superseded (the maximal elements), and its clock must cover exactly the dots of its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dynakv.core.dvv import EMPTY_VV, Dot, PruneRule, SiblingSet, VersionVector, reconcile

Op = tuple[str, int, int]
State = SiblingSet[int]


@dataclass
class History:
    """Real replica states and the model's causal histories, run side by side."""

    replicas: list[State]
    known: list[frozenset[int]]
    # Contexts clients read, with the history each stands for; the first is the empty (blind) context.
    contexts: list[tuple[VersionVector, frozenset[int]]] = field(
        default_factory=lambda: [(EMPTY_VV, frozenset())]
    )
    superseded_by: dict[int, frozenset[int]] = field(default_factory=dict)  # put -> history of its context
    dot_of: dict[int, Dot] = field(default_factory=dict)
    snapshots: list[tuple[State, frozenset[int]]] = field(default_factory=list)

    def written(self) -> frozenset[int]:
        return frozenset(self.superseded_by)

    def covered_by_a_context(self, within: frozenset[int]) -> frozenset[int]:
        """Values that some put in `within` wrote over (its context's history)."""
        return frozenset().union(*(self.superseded_by[p] for p in within))

    def maximal(self, within: frozenset[int]) -> frozenset[int]:
        return within - self.covered_by_a_context(within)


OPS = st.lists(
    st.tuples(st.sampled_from(["read", "put", "put", "sync"]), st.integers(0, 99), st.integers(0, 99)),
    min_size=10,
    max_size=60,
)
# Pruning needs clocks with several entries to bite: longer histories, more syncs, small thresholds.
PRUNE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["read", "read", "put", "put", "sync", "sync", "sync", "prune", "prune"]),
        st.integers(0, 99),
        st.integers(0, 99),
    ),
    min_size=20,
    max_size=80,
)
PRUNE_RULES = st.builds(
    PruneRule,
    small=st.sampled_from([0, 0, 1, 2]),
    big=st.sampled_from([0, 0, 1, 2]),
    young_ms=st.integers(0, 3_000),
    old_ms=st.integers(0, 6_000),
)


def pick_context(y: int, count: int) -> int:
    """Mostly read-modify-write with the latest read; otherwise a blind put or any older, stale read."""
    if y < 40:
        return count - 1
    if y < 55:
        return 0
    return y % count


def run(actors: int, ops: list[Op], rule: PruneRule | None = None) -> History:
    h = History([SiblingSet() for _ in range(actors)], [frozenset() for _ in range(actors)])
    for step, (kind, x, y) in enumerate(ops):
        now_ms = 1_000 * (step + 1)
        r = x % actors
        if kind == "read":
            h.contexts.append((h.replicas[r].context(), h.known[r]))
        elif kind == "put":
            value = len(h.superseded_by)
            context, seen = h.contexts[pick_context(y, len(h.contexts))]
            h.replicas[r] = h.replicas[r].update(context, f"r{r}", value, now_ms)
            h.known[r] = h.known[r] | seen | {value}
            h.superseded_by[value] = seen
            h.dot_of[value] = next(d for d, v in h.replicas[r].siblings if v == value)
        elif kind == "sync":
            other = y % actors
            h.replicas[r] = h.replicas[r].sync(h.replicas[other])
            h.known[r] = h.known[r] | h.known[other]
        elif rule is not None:
            h.replicas[r] = h.replicas[r].prune(rule, now_ms, local_actor=f"r{r}")
        h.snapshots.append((h.replicas[r], h.known[r]))
        check_replica(h, r, exact=rule is None)
    return h


def check_replica(h: History, r: int, *, exact: bool) -> None:
    state, known = h.replicas[r], h.known[r]
    values = set(state.values())
    dots = state.dots()
    assert len(values) == len(dots) == len(set(dots))
    assert all(state.clock.covers(d) for d in dots)
    assert all(h.dot_of[v] == d for d, v in state.siblings)
    assert values <= known
    assert h.maximal(known) <= values  # nothing the history did not supersede is missing
    covered = {v for v in h.written() if state.clock.covers(h.dot_of[v])}
    assert covered <= known
    if exact:
        assert values == h.maximal(known)
        assert covered == known
        # Antichain: no surviving sibling was written with a context that had seen another survivor.
        for v in values:
            assert not (h.superseded_by[v] & values)


def sync_everyone(h: History) -> list[State]:
    states = list(h.replicas)
    for _ in range(2):
        for i in range(len(states)):
            for j in range(len(states)):
                states[i] = states[i].sync(states[j])
    return states


@given(st.integers(3, 5), OPS)
def test_no_value_lost_unless_a_later_context_covered_it(actors: int, ops: list[Op]) -> None:
    h = run(actors, ops)
    states = sync_everyone(h)
    assert all(s == states[0] for s in states)
    expected = h.written() - h.covered_by_a_context(h.written())
    assert set(states[0].values()) == expected
    assert reconcile(h.replicas) == states[0]


# Prune-everything-allowed rules half the time: the lost-write hazard needs a prune to bite at the right step.
# The explicit example is that hazard: r0's write is superseded by r2, r0 prunes its own entry, writes
# again and, were its counter to restart, reissues the dot r0:1, which r2's clock covers.
@settings(max_examples=200)
@given(st.integers(3, 5), PRUNE_OPS, st.just(PruneRule(0, 0, 0, 0)) | PRUNE_RULES)
@example(
    3,
    [
        ("put", 0, 0),
        ("read", 0, 0),
        ("put", 2, 0),
        ("sync", 0, 2),
        ("prune", 0, 0),
        ("read", 0, 0),
        ("put", 0, 0),
        ("sync", 2, 0),
    ],
    PruneRule(0, 0, 0, 0),
)
def test_pruning_may_add_false_siblings_but_never_loses_a_write(
    actors: int, ops: list[Op], rule: PruneRule
) -> None:
    h = run(actors, ops, rule)
    states = sync_everyone(h)
    assert all(s == states[0] for s in states)
    expected = h.written() - h.covered_by_a_context(h.written())
    assert expected <= set(states[0].values())


@given(st.integers(3, 5), PRUNE_OPS, st.none() | PRUNE_RULES, st.data())
def test_sync_is_commutative_associative_idempotent(
    actors: int, ops: list[Op], rule: PruneRule | None, data: st.DataObject
) -> None:
    h = run(actors, ops, rule)
    pool = [s for s, _ in h.snapshots] + list(h.replicas)
    pick = st.sampled_from(pool)
    for _ in range(5):
        x, y, z = data.draw(pick), data.draw(pick), data.draw(pick)
        assert x.sync(y) == y.sync(x)
        assert x.sync(y).sync(z) == x.sync(y.sync(z))
        assert x.sync(x) == x
        assert x.sync(x.sync(y)) == x.sync(y)


@given(st.integers(3, 5), PRUNE_OPS, st.none() | PRUNE_RULES, st.data())
def test_sync_never_drops_a_sibling_no_context_covered(
    actors: int, ops: list[Op], rule: PruneRule | None, data: st.DataObject
) -> None:
    h = run(actors, ops, rule)
    if not h.snapshots:
        return
    pick = st.sampled_from(h.snapshots)
    for _ in range(5):
        (x, known_x), (y, known_y) = data.draw(pick), data.draw(pick)
        covered = h.covered_by_a_context(known_x | known_y)
        merged = set(x.sync(y).values())
        assert set(x.values()) - covered <= merged
        assert set(y.values()) - covered <= merged


@given(st.integers(3, 5), OPS)
def test_a_put_with_the_merged_context_leaves_one_sibling(actors: int, ops: list[Op]) -> None:
    h = run(actors, ops)
    merged = reconcile(h.replicas)
    resolved = merged.update(merged.context(), "r0", -1, now_ms=10**9)
    assert resolved.values() == (-1,)
    for state in h.replicas:
        assert state.sync(resolved).values() == (-1,)
