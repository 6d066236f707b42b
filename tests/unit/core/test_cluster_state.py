"""The gossiped cluster state on worked examples: staging, merge of epochs and flags, claimant, codec."""

from __future__ import annotations

from dataclasses import replace

import msgpack
import pytest

from dynakv.core import cluster_state as cs
from dynakv.core import codec
from dynakv.core.cluster_state import ChangeKind, ClusterState, Move, Staged
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.core.membership import MemberState, transition
from dynakv.core.ring import Ring
from dynakv.protocol import claimant


def three_nodes() -> ClusterState:
    """a, b, c valid, every transfer done: a ring of 8 partitions at version 3."""
    state = cs.new_cluster("a", 8)
    for name in ("b", "c"):
        state = cs.stage_join(state, name)
    state = claimant.commit(state, 3)
    for move in state.moves:
        state = cs.mark_complete(state, move.partition, move.new_owner)
    return claimant.flip_completed(state)


def test_a_new_cluster_is_one_valid_member_owning_everything() -> None:
    state = cs.new_cluster("a", 8, zone="z1", address="h:1")
    assert state.members["a"].state is MemberState.VALID
    assert state.ring == Ring(8, ("a",) * 8)
    assert (state.ring_version, state.claimant, state.moves) == (1, "a", ())
    assert cs.acting_claimant(state) == "a"


def test_the_empty_state_is_the_bottom_of_merge() -> None:
    state = three_nodes()
    assert cs.merge(cs.empty(), state) is state
    assert cs.merge(state, cs.empty()) is state


def test_staging_a_join_adds_a_joining_member_and_a_request() -> None:
    state = cs.stage_join(cs.new_cluster("a", 8), "b", zone="z", address="h:2")
    assert state.members["b"].state is MemberState.JOINING
    assert state.members["b"].address == "h:2"
    assert state.active_staged() == [Staged("b", ChangeKind.JOIN, 1)]


def test_staging_refuses_what_cannot_be_done() -> None:
    with pytest.raises(ConfigError):
        cs.stage_join(cs.empty(), "b")  # no cluster to join
    state = cs.stage_join(cs.new_cluster("a", 8), "b")
    with pytest.raises(ConfigError):
        cs.stage_leave(state, "b")  # joining, not valid
    with pytest.raises(ConfigError):
        cs.stage_remove(state, "zz")


def test_clearing_leaves_a_tombstone_that_beats_the_stale_request() -> None:
    staged = cs.stage_leave(three_nodes(), "b")
    cleared = cs.clear_staged(staged)
    assert cleared.active_staged() == []
    assert cleared.staged["b"].kind is ChangeKind.NONE
    assert cs.merge(staged, cleared).active_staged() == []


def test_a_request_staged_concurrently_with_a_commit_survives_it() -> None:
    state = three_nodes()
    before = cs.stage_leave(state, "b")
    version = before.staged["b"].version
    committed = claimant.commit(before, 3)  # the leave becomes a tombstone at version + 1
    assert committed.staged["b"] == Staged("b", ChangeKind.NONE, version + 1)
    again = cs.stage_remove(before, "b")  # elsewhere, not yet knowing of the commit: version + 1 too
    merged = cs.merge(committed, again)
    assert merged.staged["b"] == Staged("b", ChangeKind.REMOVE, version + 1)
    assert cs.merge(again, committed).staged == merged.staged


def test_the_greater_ring_epoch_wins_whole() -> None:
    old = three_nodes()
    new = claimant.commit(cs.stage_leave(old, "c"), 3)
    merged = cs.merge(old, new)
    assert (merged.ring, merged.ring_version, merged.moves) == (new.ring, new.ring_version, new.moves)
    assert cs.merge(new, old) == merged


def test_a_completion_marked_on_an_older_epoch_is_carried_into_the_newer() -> None:
    base = claimant.commit(cs.stage_leave(three_nodes(), "c"), 3)
    first, second = base.moves[0], base.moves[1]
    # The old owner marks `first` complete; meanwhile the claimant flipped `second` (a new epoch).
    marked = cs.mark_complete(base, first.partition, first.new_owner)
    flipped = claimant.flip_completed(cs.mark_complete(base, second.partition, second.new_owner))
    assert flipped.ring_version == base.ring_version + 1
    merged = cs.merge(marked, flipped)
    assert merged.ring_version == flipped.ring_version
    move = merged.move_of(first.partition)
    assert move is not None
    assert move.complete


def test_forked_epochs_at_one_version_resolve_the_same_way_everywhere() -> None:
    state = three_nodes()
    left = claimant.commit(cs.stage_leave(state, "b"), 3)
    right = claimant.commit(cs.stage_leave(state, "c"), 3)
    assert left.ring_version == right.ring_version
    assert cs.merge(left, right) == cs.merge(right, left)
    assert cs.merge(left, right).ring in (left.ring, right.ring)


def test_mark_complete_ignores_stale_reports() -> None:
    state = claimant.commit(cs.stage_leave(three_nodes(), "c"), 3)
    move = state.moves[0]
    assert cs.mark_complete(state, move.partition, "nobody") is state
    free = next(p for p in range(8) if state.move_of(p) is None)
    assert cs.mark_complete(state, free, "a") is state


def test_moves_from_and_future_ring() -> None:
    state = claimant.commit(cs.stage_leave(three_nodes(), "c"), 3)
    assert {m.old_owner for m in state.moves_from("c")} == {"c"}
    assert state.ring is not None
    assert [m.partition for m in state.moves_from("c")] == list(state.ring.owned_by("c"))
    future = state.future_ring()
    assert future is not None
    assert "c" not in future.owners


def test_the_claimant_is_stable_while_valid_then_the_first_valid_member() -> None:
    state = three_nodes()
    assert cs.acting_claimant(state) == "a"
    down = replace(state, members=transition(state.members, "a", MemberState.DOWN))
    assert cs.acting_claimant(down) == "b"
    assert cs.acting_claimant(replace(down, claimant="c")) == "c"
    assert cs.acting_claimant(cs.empty()) is None


def test_a_claimant_staged_for_removal_passes_the_role_on() -> None:
    """A dead claimant could never commit its own removal (sim seed 150 of --churn --leave --remove):
    staging the removal moves the role to the first other valid member; clearing it moves it back."""
    state = three_nodes()
    assert cs.acting_claimant(state) == "a"
    doomed = cs.stage_remove(state, "a")
    assert cs.acting_claimant(doomed) == "b"
    assert cs.acting_claimant(cs.stage_remove(doomed, "b")) == "c"
    assert cs.acting_claimant(cs.clear_staged(doomed, ["a"])) == "a"
    committed = claimant.commit(doomed, 3)
    assert committed.members["a"].state is MemberState.REMOVED and committed.claimant == "b"


def test_invariants_are_checked() -> None:
    state = three_nodes()
    ring = state.ring
    assert ring is not None
    owner = ring.owners[0]
    with pytest.raises(ConfigError):
        replace(state, moves=(Move(0, "nobody", "a", 1),))  # not the owner
    with pytest.raises(ConfigError):
        replace(state, moves=(Move(0, owner, owner, 1),))
    with pytest.raises(ConfigError):
        replace(state, moves=(Move(0, owner, "x", state.ring_version + 1),))
    with pytest.raises(ConfigError):
        replace(state, moves=(Move(1, ring.owners[1], "x", 1), Move(0, owner, "x", 1)))
    with pytest.raises(ConfigError):
        ClusterState(ring_version=2)  # a version without a ring


def test_encode_round_trips_and_digests_are_canonical() -> None:
    state = cs.stage_join(claimant.commit(cs.stage_leave(three_nodes(), "c"), 3), "d", "z", "h:4")
    decoded = cs.decode(cs.encode(state))
    assert decoded == state
    assert decoded.digest == state.digest
    assert cs.decode(cs.encode(cs.empty())) == cs.empty()


def _payload(state: ClusterState) -> list[object]:
    result: list[object] = codec.decode(cs.encode(state), cs.STATE_TAG)
    return result


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p[:5],
        lambda p: [b"x", *p[1:]],
        lambda p: [p[0], b"not a ring", *p[2:]],
        lambda p: [*p[:2], -1, *p[3:]],
        lambda p: [*p[:3], [[0, "a", "b", 1]], *p[4:]],  # four fields
        lambda p: [*p[:3], [[0, "zz", "b", 1, False]], *p[4:]],  # not the owner
        lambda p: [*p[:3], [[99, "a", "b", 1, False]], *p[4:]],
        lambda p: [*p[:4], "", p[5]],
        lambda p: [*p[:5], [["b", "leave", 1], ["a", "join", 1]]],  # unsorted
        lambda p: [*p[:5], [["b", "bogus", 1]]],
        lambda p: [*p[:5], [["b", "join", -1]]],
        lambda p: [None, *p[1:]],
    ],
)
def test_malformed_states_are_decode_errors(mutate: object) -> None:
    payload = _payload(cs.stage_leave(three_nodes(), "c"))
    assert callable(mutate)
    with pytest.raises(DecodeError):
        cs.decode(codec.encode(cs.STATE_TAG, mutate(payload)))


def test_the_cluster_id_is_kept_carried_into_a_joiner_and_guards_against_another_cluster() -> None:
    founded = cs.new_cluster("a", 8, cluster_id="f00d")
    assert cs.decode(cs.encode(founded)).cluster_id == "f00d"
    assert len(_payload(founded)) == 7 and len(_payload(cs.new_cluster("a", 8))) == 6
    joiner = cs.merge(cs.empty(), founded)  # a node started with a seed, once it heard from it
    assert joiner.cluster_id == "f00d" and cs.stage_join(joiner, "b").cluster_id == "f00d"
    other = cs.new_cluster("a", 8, cluster_id="beef")
    assert cs.foreign(founded, other) and not cs.foreign(founded, cs.empty())
    with pytest.raises(AssertionError):
        cs.merge(founded, other)


@pytest.mark.parametrize("extra", ["", 7, "x" * (cs.CLUSTER_ID_MAX + 1)])
def test_a_bad_cluster_id_is_a_decode_error(extra: object) -> None:
    with pytest.raises(DecodeError):
        cs.decode(codec.encode(cs.STATE_TAG, [*_payload(cs.new_cluster("a", 8)), extra]))


def test_every_truncation_and_garbage_is_a_decode_error() -> None:
    data = cs.encode(three_nodes())
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            cs.decode(data[:cut])
    with pytest.raises(DecodeError):
        cs.decode(msgpack.packb([1, "membership.view", []]))
