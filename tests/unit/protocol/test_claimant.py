"""The claimant: plans and commits of joins, leaves and removals; flips as transfers complete."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ChangeKind, ClusterState
from dynakv.core.membership import MemberState, transition
from dynakv.core.ring import Ring
from dynakv.protocol import claimant
from dynakv.protocol.claimant import PlanRefused

Q, N_VAL = 64, 3


def settled(state: ClusterState) -> ClusterState:
    """Complete every pending transfer, as the old owners report them, and let the claimant flip."""
    for move in state.moves:
        state = cs.mark_complete(state, move.partition, move.new_owner)
    return claimant.claimant_tick(state)


def cluster(*names: str) -> ClusterState:
    state = cs.new_cluster(names[0], Q)
    for name in names[1:]:
        state = cs.stage_join(state, name)
    return settled(claimant.commit(state, N_VAL)) if len(names) > 1 else state


def owners(state: ClusterState) -> Ring:
    assert state.ring is not None
    return state.ring


def test_plan_of_two_joins_into_three_nodes_moves_partitions_and_balances() -> None:
    state = cs.stage_join(cs.stage_join(cluster("a", "b", "c"), "d"), "e")
    plan = claimant.plan(state, N_VAL)
    assert [(c.name, c.kind) for c in plan.changes] == [("d", ChangeKind.JOIN), ("e", ChangeKind.JOIN)]
    assert plan.counts_before == owners(state).counts()
    assert set(plan.counts_after) == {"a", "b", "c", "d", "e"}
    assert max(plan.counts_after.values()) - min(plan.counts_after.values()) <= 1
    assert plan.moves and {m.new_owner for m in plan.moves} >= {"d", "e"}
    # Only what the new nodes need moves: 12 or 13 partitions each, within the claim's bound.
    assert len(plan.moves) <= 2 * 13 * 112 // 100 + 1
    for move in plan.moves:
        assert owners(state).owners[move.partition] == move.old_owner
        assert plan.target.owners[move.partition] == move.new_owner
    assert plan.tail_violations == 0
    text = "\n".join(plan.lines())
    assert "join    d" in text
    assert f"Partition moves: {len(plan.moves)} transfers" in text


def test_plan_changes_nothing() -> None:
    state = cs.stage_join(cluster("a", "b", "c"), "d")
    before = state.digest
    claimant.plan(state, N_VAL)
    assert state.digest == before


def test_commit_then_every_transfer_gives_the_target_ring_without_tail_violations() -> None:
    state = cs.stage_join(cs.stage_join(cluster("a", "b", "c"), "d"), "e")
    plan = claimant.plan(state, N_VAL)
    committed = claimant.commit(state, N_VAL)
    assert committed.ring_version == state.ring_version + 1
    assert committed.moves == plan.moves
    assert committed.members["d"].state is MemberState.VALID
    assert committed.active_staged() == []
    assert owners(committed) == owners(state)  # nothing flips before a transfer completes
    final = committed
    for move in committed.moves:
        final = claimant.on_transfer_complete(final, move.partition, move.new_owner)
    assert owners(final) == plan.target
    assert final.moves == ()
    assert owners(final).tail_violations(N_VAL) == 0


def test_a_partition_flips_only_when_its_own_transfer_completes() -> None:
    committed = claimant.commit(cs.stage_join(cluster("a", "b", "c"), "d"), N_VAL)
    first, second = committed.moves[0], committed.moves[1]
    flipped = claimant.on_transfer_complete(committed, first.partition, first.new_owner)
    assert owners(flipped).owners[first.partition] == first.new_owner
    assert owners(flipped).owners[second.partition] == second.old_owner
    assert flipped.ring_version == committed.ring_version + 1
    assert flipped.move_of(first.partition) is None
    assert flipped.move_of(second.partition) == second


def test_leave_moves_every_partition_of_the_leaver_then_it_exits_and_is_removed() -> None:
    state = cluster("a", "b", "c", "d", "e")
    held = set(owners(state).owned_by("c"))
    committed = claimant.commit(cs.stage_leave(state, "c"), N_VAL)
    assert committed.members["c"].state is MemberState.LEAVING
    assert {m.partition for m in committed.moves_from("c")} == held
    assert "c" not in {m.new_owner for m in committed.moves}
    # Still leaving while any transfer is pending: it serves its partitions until then.
    last = committed.moves_from("c")[-1]
    partial = committed
    for move in committed.moves:
        if move != last:
            partial = cs.mark_complete(partial, move.partition, move.new_owner)
    partial = claimant.claimant_tick(partial)
    assert partial.members["c"].state is MemberState.LEAVING
    done = claimant.on_transfer_complete(partial, last.partition, last.new_owner)
    assert "c" not in owners(done).owners
    assert done.members["c"].state is MemberState.EXITING
    removed = claimant.claimant_tick(done)
    assert removed.members["c"].state is MemberState.REMOVED
    assert owners(removed).tail_violations(N_VAL) == 0
    assert cs.acting_claimant(removed) == "a"


def test_remove_of_a_dead_node_reassigns_its_partitions_at_once() -> None:
    state = cluster("a", "b", "c", "d", "e")
    held = set(owners(state).owned_by("d"))
    plan = claimant.plan(cs.stage_remove(state, "d"), N_VAL)
    assert {r.partition for r in plan.reassigned} == held
    assert all(r.dead_owner == "d" for r in plan.reassigned)
    committed = claimant.commit(cs.stage_remove(state, "d"), N_VAL)
    assert committed.members["d"].state is MemberState.REMOVED
    assert "d" not in owners(committed).owners  # no transfer from a dead node
    assert all(m.old_owner != "d" for m in committed.moves)
    final = settled(committed)
    assert owners(final) == plan.target
    counts = owners(final).counts()
    assert max(counts.values()) - min(counts.values()) <= 1


def test_removing_a_node_that_is_receiving_a_move_cancels_it() -> None:
    committed = claimant.commit(cs.stage_join(cluster("a", "b", "c"), "d"), N_VAL)
    again = claimant.commit(cs.stage_remove(committed, "d"), N_VAL)
    assert all(m.new_owner != "d" for m in again.moves)
    assert "d" not in owners(again).owners


def test_a_second_commit_keeps_the_moves_under_way_it_still_wants() -> None:
    committed = claimant.commit(cs.stage_join(cluster("a", "b", "c", "d"), "e"), N_VAL)
    move = committed.moves[0]
    marked = cs.mark_complete(committed, move.partition, move.new_owner)
    again = claimant.commit(cs.stage_join(marked, "f"), N_VAL)
    kept = again.move_of(move.partition)
    if kept is not None and kept.new_owner == move.new_owner:
        assert kept.complete
        assert kept.planned_at == move.planned_at
    final = settled(again)
    assert max(owners(final).counts().values()) - min(owners(final).counts().values()) <= 1


def test_a_down_member_keeps_its_partitions() -> None:
    state = cluster("a", "b", "c", "d")
    down = replace(state, members=transition(state.members, "b", MemberState.DOWN))
    committed = claimant.commit(cs.stage_join(down, "e"), N_VAL)
    # b keeps a full share in the target: it is not drained as a leaver would be. The few partitions
    # the joiner takes from it wait, owned by b, until b is back to send them.
    assert claimant.plan(cs.stage_join(down, "e"), N_VAL).counts_after["b"] >= Q // 5
    assert set(owners(committed).owned_by("b")) == set(owners(state).owned_by("b"))
    assert all(not m.complete for m in committed.moves_from("b"))


def test_requests_that_no_longer_apply_are_refused_and_cleared() -> None:
    state = cs.stage_leave(cluster("a", "b", "c"), "b")
    state = replace(state, members=transition(state.members, "b", MemberState.DOWN))
    plan = claimant.plan(state, N_VAL)
    assert plan.changes == ()
    assert [name for name, _ in plan.refused] == ["b"]
    committed = claimant.commit(state, N_VAL)
    assert committed.active_staged() == []
    assert committed.members["b"].state is MemberState.DOWN


def test_refused_plans() -> None:
    with pytest.raises(PlanRefused):
        claimant.plan(cluster("a", "b"), N_VAL)  # nothing staged
    with pytest.raises(PlanRefused):
        claimant.plan(cs.empty(), N_VAL)
    with pytest.raises(PlanRefused):
        claimant.plan(cs.stage_remove(cs.new_cluster("a", Q), "a"), N_VAL)  # no one left


def test_plans_and_commits_are_deterministic() -> None:
    def run() -> bytes:
        state = cs.stage_join(cs.stage_join(cluster("a", "b", "c"), "e"), "d")
        state = claimant.commit(cs.stage_leave(claimant.commit(state, N_VAL), "a"), N_VAL)
        return cs.encode(settled(state))

    assert run() == run()


def test_zones_are_used_when_every_owner_has_one() -> None:
    # Two zones, n_val 2: claim can make every pair of neighbours span both zones (zone_feasible).
    state = cs.new_cluster("a", 16, zone="z1")
    for name, zone in (("b", "z2"), ("c", "z1"), ("d", "z2")):
        state = cs.stage_join(state, name, zone=zone)
    final = settled(claimant.commit(state, 2))
    zones = {name: m.zone or "" for name, m in final.members.items()}
    ring = owners(final)
    for p in range(16):
        assert zones[ring.owners[p]] != zones[ring.owners[(p + 1) % 16]]
