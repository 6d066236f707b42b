"""Merge of cluster states: a join-semilattice over states of one ring history; commutative and
idempotent even across forked histories (two nodes that both acted as claimant); codec round-trips.

States are built the way nodes build them: a claimant's history (stage, commit, mark complete, flip),
and replicas that hold some point of it plus local changes (completions and staged requests of their
own). Arbitrary field combinations would include epochs no claimant could write.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ClusterState
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.protocol import claimant

NAMES = ["a", "b", "c", "d", "e"]
LOCAL_OPS = ["join", "leave", "remove", "clear", "complete", "complete"]
# Weighted towards the steps that make epochs: joins, commits, completions and flips.
OPS = [*LOCAL_OPS, "join", "commit", "commit", "complete", "flip"]
ops = st.lists(
    st.tuples(st.sampled_from(OPS), st.sampled_from(NAMES), st.integers(0, 7)), min_size=8, max_size=30
)


def step(state: ClusterState, op: str, name: str, k: int) -> ClusterState:
    """One change as a node makes it; ConfigError when the change does not apply to this state."""
    if op == "join":
        return cs.stage_join(state, name)
    if op == "leave":
        return cs.stage_leave(state, name)
    if op == "remove":
        return cs.stage_remove(state, name)
    if op == "clear":
        return cs.clear_staged(state, [name])
    if op == "commit":
        return claimant.commit(state, 2)
    if op == "complete" and state.moves:
        move = state.moves[k % len(state.moves)]
        return cs.mark_complete(state, move.partition, move.new_owner)
    if op == "flip":
        return claimant.claimant_tick(state)
    raise ConfigError(op, "does not apply")


def run(state: ClusterState, steps: list[tuple[str, str, int]]) -> list[ClusterState]:
    history = [state]
    for op, name, k in steps:
        try:
            state = step(state, op, name, k)
        except ConfigError:
            continue
        history.append(state)
    return history


@st.composite
def histories(draw: st.DrawFn, cluster_id: str = "c0ffee") -> list[ClusterState]:
    return run(cs.new_cluster("a", 8, cluster_id=cluster_id), draw(ops))


@st.composite
def replica(draw: st.DrawFn, history: list[ClusterState]) -> ClusterState:
    """A point of the claimant's history plus local changes: no commits or flips (only the claimant
    writes epochs), but completions and staged requests."""
    local = draw(
        st.lists(st.tuples(st.sampled_from(LOCAL_OPS), st.sampled_from(NAMES), st.integers(0, 7)), max_size=4)
    )
    return run(draw(st.sampled_from(history)), local)[-1]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_merge_is_commutative_associative_idempotent_on_one_history(data: st.DataObject) -> None:
    history = data.draw(histories(data.draw(st.sampled_from(["", "c0ffee"]))))
    # A node that has just started with a seed holds the empty state (no cluster id yet).
    a, b, c = (data.draw(st.one_of(replica(history), st.just(cs.empty()))) for _ in range(3))
    assert cs.merge(a, b) == cs.merge(b, a)
    assert cs.merge(a, b).digest == cs.merge(b, a).digest
    assert cs.merge(cs.merge(a, b), c) == cs.merge(a, cs.merge(b, c))
    assert cs.merge(a, a) == a
    assert cs.merge(a, cs.merge(a, b)) == cs.merge(a, b)


@settings(max_examples=100, deadline=None)
@given(histories(), histories(), st.data())
def test_forked_histories_merge_commutatively(
    left: list[ClusterState], right: list[ClusterState], data: st.DataObject
) -> None:
    a, b = data.draw(st.sampled_from(left)), data.draw(st.sampled_from(right))
    assert cs.merge(a, b) == cs.merge(b, a)
    assert cs.merge(a, a) == a
    merged = cs.merge(a, b)
    # The winning epoch is one of the inputs', never a mix.
    assert (merged.ring, merged.ring_version) in ((a.ring, a.ring_version), (b.ring, b.ring_version))
    assert [m.ident for m in merged.moves] in ([m.ident for m in a.moves], [m.ident for m in b.moves])


@settings(max_examples=100, deadline=None)
@given(histories())
def test_every_state_of_a_history_round_trips_and_keeps_the_invariants(history: list[ClusterState]) -> None:
    for state in history:
        assert cs.decode(cs.encode(state)) == state
        if state.ring is not None:
            for move in state.moves:
                assert state.ring.owners[move.partition] == move.old_owner


@settings(max_examples=100, deadline=None)
@given(histories())
def test_a_later_state_of_one_history_absorbs_an_earlier_one(history: list[ClusterState]) -> None:
    # Only when the later one also saw the earlier's completions and staging, which a history does.
    last = history[-1]
    for state in history:
        assert cs.merge(state, last).ring_version == last.ring_version
        assert cs.merge(state, last).ring == last.ring


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        cs.decode(data)


@settings(max_examples=50, deadline=None)
@given(histories("c0ffee"), histories("beef"), st.data())
def test_states_of_clusters_founded_apart_are_foreign_and_never_merged(
    left: list[ClusterState], right: list[ClusterState], data: st.DataObject
) -> None:
    a, b = data.draw(st.sampled_from(left)), data.draw(st.sampled_from(right))
    assert cs.foreign(a, b) and cs.foreign(b, a)
    assert not cs.foreign(a, cs.empty()) and cs.merge(cs.empty(), a).cluster_id == "c0ffee"
