"""The claimant's pure functions: plan and commit staged changes, flip the ring as transfers complete.

The claimant (`cluster_state.acting_claimant`, a deterministic choice) is the only node that writes
the ring epoch, as in riak_core_claimant:

- `plan(state, n_val)`: what a commit would do: the staged requests it applies (and refuses), the
  target ring from `core.claim.claim` (incremental, starting from the ring as it will be once the
  pending moves flip, so moves under way are kept), the partition moves, the partitions of removed
  nodes reassigned at once, and the counts per node before and after. `Plan.lines()` is what
  `dynakv cluster plan` prints.
- `commit(state, n_val)`: carry the plan out. Joining members become valid, leaving ones keep
  serving while their partitions move away, removed ones (dead) lose their partitions at once: the
  ring names the new owner immediately and the node rebuilds the replica from the surviving replicas
  (a repair transfer; `Plan.reassigned`). Other changes of owner become `next` moves; the ring flips a
  partition only when its move completes (`on_transfer_complete`, `flip_completed`), so the old owner
  serves until the new one holds everything.
- `settle(state)`: leaving -> exiting once a leaving node owns nothing and has nothing to hand off;
  exiting -> removed on a later call, so the node sees itself exiting and shuts down.

Down members stay owners in the claim (a mark-down moves no data; paper section 4.8: only explicit
admin action changes ownership): they are not drained like leavers, though a join may take a few of
their partitions for balance; those moves wait, the partitions still theirs, until they are back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from dynakv.core import cluster_state as cs
from dynakv.core.claim import claim
from dynakv.core.cluster_state import ChangeKind, ClusterState, Move, Staged
from dynakv.core.errors import ConfigError
from dynakv.core.membership import MembershipView, MemberState, transition
from dynakv.core.ring import Ring

_S = MemberState

# What each staged request needs the member's state to be at commit time (a concurrent mark-down or
# removal can change it after staging), and the state it moves the member to.
_APPLIES: dict[ChangeKind, tuple[frozenset[MemberState], MemberState]] = {
    ChangeKind.JOIN: (frozenset({_S.JOINING}), _S.VALID),
    ChangeKind.LEAVE: (frozenset({_S.VALID}), _S.LEAVING),
    ChangeKind.REMOVE: (frozenset({_S.JOINING, _S.VALID, _S.LEAVING, _S.EXITING, _S.DOWN}), _S.REMOVED),
}


class PlanRefused(ConfigError):
    """A commit that cannot be carried out (nothing staged, no member would be left, no ring)."""

    def __init__(self, message: str) -> None:
        super().__init__("plan", message)


@dataclass(frozen=True, slots=True)
class Reassigned:
    """A removed node's partition, given to `new_owner` without a transfer (its data is rebuilt from
    the surviving replicas)."""

    partition: int
    dead_owner: str
    new_owner: str


@dataclass(frozen=True, slots=True)
class Plan:
    changes: tuple[Staged, ...]  # the requests the commit applies, in name order
    refused: tuple[tuple[str, str], ...]  # (name, why) for requests it would drop
    target: Ring
    moves: tuple[Move, ...]  # the `next` list after the commit (kept and new moves)
    reassigned: tuple[Reassigned, ...]
    counts_before: Mapping[str, int]
    counts_after: Mapping[str, int]
    tail_violations: int

    def lines(self) -> list[str]:
        """The report of `dynakv cluster plan`."""
        out = ["Staged changes:"]
        out += [f"  {c.kind.value:<7} {c.name}" for c in self.changes] or ["  (none)"]
        out += [f"  refused {name}: {why}" for name, why in self.refused]
        out.append(f"Partition moves: {len(self.moves)} transfers, {len(self.reassigned)} reassigned")
        out += [f"  {m.partition:>6} {m.old_owner} -> {m.new_owner}" for m in self.moves]
        out += [f"  {r.partition:>6} {r.dead_owner} (removed) -> {r.new_owner}" for r in self.reassigned]
        out.append("Partitions per node (now -> after):")
        for node in sorted(set(self.counts_before) | set(self.counts_after)):
            before, after = self.counts_before.get(node, 0), self.counts_after.get(node, 0)
            out.append(f"  {node:<24} {before:>6} -> {after:<6}")
        out.append(f"Tail violations after: {self.tail_violations}")
        return out


def _split_staged(
    members: MembershipView, staged: list[Staged]
) -> tuple[list[Staged], list[tuple[str, str]]]:
    changes: list[Staged] = []
    refused: list[tuple[str, str]] = []
    for request in staged:
        member = members.get(request.name)
        allowed, _ = _APPLIES[request.kind]
        if member is None or member.state not in allowed:
            found = "absent" if member is None else member.state.value
            refused.append((request.name, f"{request.kind.value} needs {_names(allowed)}, found {found}"))
        else:
            changes.append(request)
    return changes, refused


def _names(states: frozenset[MemberState]) -> str:
    return "|".join(sorted(s.value for s in states))


def _apply_members(members: MembershipView, changes: list[Staged]) -> MembershipView:
    for change in changes:
        members = transition(members, change.name, _APPLIES[change.kind][1])
    return members


def _claim_members(members: MembershipView) -> list[str]:
    """Who owns partitions after the commit: valid and down members (leaving and removed ones hand
    theirs on). Down members stay: marking a node down moves no data."""
    return [m.name for m in members.values() if m.state in (_S.VALID, _S.DOWN)]


def _zones(members: MembershipView, names: list[str]) -> dict[str, str] | None:
    """Zone-aware claim only when every owner has a zone: a partial zone map would mislead it."""
    zones = {name: members[name].zone for name in names}
    return {n: z for n, z in zones.items() if z is not None} if all(zones.values()) else None


def _moves(
    state: ClusterState, target: Ring, gone: set[str], version: int
) -> tuple[list[str], list[Move], list[Reassigned]]:
    """The ring after the commit (removed owners replaced at once), the `next` list, the reassignments."""
    assert state.ring is not None
    owners = list(state.ring.owners)
    moves: list[Move] = []
    reassigned: list[Reassigned] = []
    for partition, (current, wanted) in enumerate(zip(state.ring.owners, target.owners, strict=True)):
        if current in gone:
            owners[partition] = wanted
            reassigned.append(Reassigned(partition, current, wanted))
        elif current != wanted:
            pending = state.move_of(partition)
            # A move under way to the same node keeps its progress; any other one starts afresh.
            if pending is None or pending.new_owner != wanted:
                pending = Move(partition, current, wanted, version)
            moves.append(pending)
    return owners, moves, reassigned


def _prepare(state: ClusterState, n_val: int) -> tuple[Plan, MembershipView, list[str]]:
    if state.ring is None:
        raise PlanRefused("there is no ring yet")
    if not state.active_staged():
        raise PlanRefused("nothing is staged")
    changes, refused = _split_staged(state.members, state.active_staged())
    members = _apply_members(state.members, changes)
    names = _claim_members(members)
    if not names:
        raise PlanRefused("no member would own the ring")
    base = state.future_ring()
    assert base is not None
    target = claim(names, state.ring.partitions, n_val, zones=_zones(members, names), previous=base)
    gone = {m.name for m in members.values() if m.state is _S.REMOVED}
    owners, moves, reassigned = _moves(state, target, gone, state.ring_version + 1)
    plan = Plan(
        tuple(changes),
        tuple(refused),
        target,
        tuple(moves),
        tuple(reassigned),
        state.ring.counts(),
        target.counts(),
        target.tail_violations(n_val),
    )
    return plan, members, owners


def plan(state: ClusterState, n_val: int) -> Plan:
    """What `commit` would do; `PlanRefused` when there is nothing to do or it cannot be done."""
    return _prepare(state, n_val)[0]


def commit(state: ClusterState, n_val: int) -> ClusterState:
    """Apply every staged request (refused ones are dropped too) and write the new epoch: the ring with
    removed owners replaced, the `next` list, ring version + 1, this claimant. Run on the claimant."""
    result, members, owners = _prepare(state, n_val)
    assert state.ring is not None
    staged = {**state.staged}
    for request in state.active_staged():
        staged[request.name] = Staged(request.name, ChangeKind.NONE, request.version + 1)
    committed = replace(
        state,
        members=members,
        ring=Ring(state.ring.partitions, tuple(owners)),
        ring_version=state.ring_version + 1,
        moves=result.moves,
        claimant=cs.acting_claimant(replace(state, members=members)),
        staged=staged,
    )
    return settle(committed)


def flip_completed(state: ClusterState) -> ClusterState:
    """Flip every partition whose move is complete to its new owner, with one ring version bump."""
    done = [m for m in state.moves if m.complete]
    if not done or state.ring is None:
        return state
    owners = list(state.ring.owners)
    for move in done:
        owners[move.partition] = move.new_owner
    return replace(
        state,
        ring=Ring(state.ring.partitions, tuple(owners)),
        ring_version=state.ring_version + 1,
        moves=tuple(m for m in state.moves if not m.complete),
        claimant=cs.acting_claimant(state),
    )


def on_transfer_complete(state: ClusterState, partition: int, new_owner: str) -> ClusterState:
    """On the claimant: the transfer of `partition` to `new_owner` is done; mark it, flip the ring
    (every completed move, one version bump) and settle leaving members. Other nodes only
    `cluster_state.mark_complete` and let gossip carry the flag to the claimant."""
    return settle(flip_completed(cs.mark_complete(state, partition, new_owner)))


def settle(state: ClusterState) -> ClusterState:
    """exiting -> removed, then leaving -> exiting for members that own nothing and move nothing: both
    decided on the input, so each member is seen exiting for at least one gossip round."""
    owners = set(state.ring.owners) if state.ring is not None else set()
    sources = {m.old_owner for m in state.moves}
    members = state.members
    for member in state.members.values():
        if member.state is _S.EXITING:
            members = transition(members, member.name, _S.REMOVED)
        elif member.state is _S.LEAVING and member.name not in owners and member.name not in sources:
            members = transition(members, member.name, _S.EXITING)
    return state if members is state.members else replace(state, members=members)


def claimant_tick(state: ClusterState) -> ClusterState:
    """The claimant's periodic step (every gossip round): flip completed moves, settle members."""
    return settle(flip_completed(state))
