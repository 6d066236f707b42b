"""The gossiped cluster state: members, the ring, the pending ownership moves, and staged changes.

One value every node holds and gossips (paper section 4.8; riak_core's ring record):

- `members`: the `MembershipView` (versioned per member, merged by `membership.merge`).
- The ring epoch, written only by the claimant: `ring`, `ring_version`, `moves` (riak_core's `next`:
  for a partition, its current owner, the owner it is moving to, the ring version that planned the
  move, and whether the transfer is complete) and `claimant`, the node that wrote the epoch.
- `staged`: admin requests (join, leave, remove) waiting for `dynakv cluster commit`, one entry per
  node name with a version; a committed or cleared request stays as a `NONE` entry (a tombstone), so
  stale gossip cannot stage it again.

Merge. Members and staged entries merge entry by entry, keeping the greater entry in a total order
(a join-semilattice whatever the inputs). Ring epochs are ordered by (ring_version, the epoch's
canonical bytes without completion flags) and the greater epoch wins whole: ring, moves and claimant
are never mixed from two epochs, so the result is always a ring some claimant computed, with a `next`
list consistent with it. Two different epochs share a version only when two nodes both acted as
claimant before their views agreed (for example the claimant changed while a commit was in flight);
the loser's commit or flip is dropped everywhere, which is safe because a flip is only ever a
*confirmation* that the new owner holds the data: the old owner keeps serving until the winning epoch
flips too, and the winner's claimant redoes the flip once it sees the completion (next paragraph).

Completion flags are facts about data, not about an epoch: a move (partition, old owner, new owner,
planned_at) completed in any input stays completed in the result, whether the winning epoch is the
same or a newer one that still lists the identical move. So a completion marked by an old owner is not
lost when the claimant concurrently bumps the version for another partition. With this carry-over,
merge is commutative and idempotent for any inputs, and associative for states whose epochs come from
one history (each epoch derived from the one before by a single claimant, the normal case): a move once
dropped is never listed again under the same planned_at. Gossip converges in every case, since all
nodes end on the greatest epoch, whose completion flags then merge by "or".

Encoding is canonical (members and staged in name order, moves in partition order), so equal states
have equal digests: gossip compares 16-byte digests before sending whole states.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from types import MappingProxyType
from typing import Any, Final

from dynakv.core import codec
from dynakv.core.codec import want_bool, want_bytes, want_int, want_list, want_optional, want_str, want_tuple
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.core.membership import (
    NAME_BYTES_MAX,
    VERSION_MAX,
    Member,
    MembershipView,
    MemberState,
    add_joining,
    decode_view,
    encode_view,
)
from dynakv.core.membership import merge as merge_members
from dynakv.core.ring import Ring

STATE_TAG: Final = "cluster.state"
DIGEST_BYTES: Final = 16
CLUSTER_ID_MAX: Final = 64
_PERSON: Final = b"dynakv.cluster"


class ChangeKind(enum.Enum):
    """A staged admin request; NONE is a committed or cleared one (a tombstone)."""

    NONE = "none"
    JOIN = "join"
    LEAVE = "leave"
    REMOVE = "remove"


# At equal versions (two admins staging concurrently) a real request beats a tombstone, so a request
# staged while the claimant committed an older one survives; among requests the stronger one wins.
_CHANGE_PRECEDENCE: Final = MappingProxyType(
    {ChangeKind.NONE: 0, ChangeKind.JOIN: 1, ChangeKind.LEAVE: 2, ChangeKind.REMOVE: 3}
)


@dataclass(frozen=True, slots=True)
class Staged:
    """The staged request for node `name`, versioned like a member entry."""

    name: str
    kind: ChangeKind
    version: int = 1

    def precedence(self) -> tuple[int, int]:
        return self.version, _CHANGE_PRECEDENCE[self.kind]


@dataclass(frozen=True, slots=True)
class Move:
    """One entry of the `next` list: `partition` moves from `old_owner` (its owner in the ring) to
    `new_owner`. `planned_at` is the ring version of the commit that planned it, so a move planned
    again after a cancel is a different move whose completion must be earned again."""

    partition: int
    old_owner: str
    new_owner: str
    planned_at: int
    complete: bool = False

    @property
    def ident(self) -> tuple[int, str, str, int]:
        return self.partition, self.old_owner, self.new_owner, self.planned_at


@dataclass(frozen=True)
class ClusterState:
    """The whole gossiped state; see the module docstring. Construct through `empty`, `new_cluster`,
    `decode` or the functions below: `__post_init__` checks the invariants the claimant relies on."""

    members: MembershipView = field(default_factory=MembershipView)
    ring: Ring | None = None
    ring_version: int = 0
    moves: tuple[Move, ...] = ()
    claimant: str | None = None
    staged: Mapping[str, Staged] = field(default_factory=lambda: MappingProxyType({}))
    # Chosen once, by the node that founds the cluster (`new_cluster`), and carried by every state since:
    # two clusters founded apart under one cluster name never merge (`foreign`). "" until a node holds a
    # founded cluster's state, and for statically configured clusters (`from_ring`).
    cluster_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.staged, MappingProxyType):
            object.__setattr__(self, "staged", MappingProxyType(dict(sorted(self.staged.items()))))
        object.__setattr__(self, "moves", tuple(self.moves))
        if not 0 <= self.ring_version <= VERSION_MAX:
            raise ConfigError("ring_version", f"{self.ring_version} is out of range")
        if not isinstance(self.cluster_id, str) or len(self.cluster_id) > CLUSTER_ID_MAX:
            raise ConfigError("cluster_id", f"expected a string of at most {CLUSTER_ID_MAX} characters")
        if self.ring is None and (self.moves or self.ring_version or self.claimant is not None):
            raise ConfigError("ring", "moves, a ring version or a claimant without a ring")
        if any(a.partition >= b.partition for a, b in pairwise(self.moves)):
            raise ConfigError("moves", "expected one move per partition, in partition order")
        for move in self.moves:
            _check_move(move, self.ring, self.ring_version)
        for name, staged in self.staged.items():
            if staged.name != name:
                raise ConfigError("staged", f"entry {staged.name!r} filed under {name!r}")

    def __hash__(self) -> int:
        # The generated hash would hash `staged`, a mapping; equal states have equal digests.
        return int.from_bytes(self.digest[:8], "big")

    @functools.cached_property
    def encoded(self) -> bytes:
        fields = [_members_bytes(self), *_epoch_fields(self, flags=True), _staged(self)]
        # A state of no founded cluster keeps the six fields it was written with before cluster ids.
        return codec.encode(STATE_TAG, [*fields, self.cluster_id] if self.cluster_id else fields)

    @functools.cached_property
    def digest(self) -> bytes:
        """A hash of the canonical encoding: equal states, equal digests."""
        return hashlib.blake2b(self.encoded, digest_size=DIGEST_BYTES, person=_PERSON).digest()

    @functools.cached_property
    def epoch_key(self) -> tuple[int, bytes]:
        """The order in which ring epochs win a merge (completion flags left out: they merge apart)."""
        return self.ring_version, codec.pack(_epoch_fields(self, flags=False))

    def is_member(self, name: str) -> bool:
        member = self.members.get(name)
        return member is not None and member.state is not MemberState.REMOVED

    def active_staged(self) -> list[Staged]:
        """The requests waiting for a commit, in name order."""
        return [s for s in self.staged.values() if s.kind is not ChangeKind.NONE]

    def move_of(self, partition: int) -> Move | None:
        for move in self.moves:
            if move.partition == partition:
                return move
        return None

    def moves_from(self, node: str) -> list[Move]:
        """The transfers `node` has to carry out as the old owner (still awaiting)."""
        return [m for m in self.moves if m.old_owner == node and not m.complete]

    def future_ring(self) -> Ring | None:
        """The ring once every pending move has flipped."""
        if self.ring is None or not self.moves:
            return self.ring
        owners = list(self.ring.owners)
        for move in self.moves:
            owners[move.partition] = move.new_owner
        return Ring(self.ring.partitions, tuple(owners))


def _check_move(move: Move, ring: Ring | None, version: int) -> None:
    assert ring is not None
    if not 0 <= move.partition < ring.partitions:
        raise ConfigError("moves", f"partition {move.partition} outside the ring")
    if ring.owners[move.partition] != move.old_owner:
        raise ConfigError("moves", f"partition {move.partition}: {move.old_owner} is not its owner")
    if move.new_owner == move.old_owner or not move.new_owner:
        raise ConfigError("moves", f"partition {move.partition}: bad new owner {move.new_owner!r}")
    if not 0 < move.planned_at <= version:
        raise ConfigError("moves", f"partition {move.partition}: planned at {move.planned_at} > {version}")


# --- construction and admin changes ------------------------------------------------------------------


def empty() -> ClusterState:
    """A node that belongs to no cluster yet (started with a seed, before it has heard from it)."""
    return ClusterState()


def new_cluster(
    name: str,
    partitions: int,
    zone: str | None = None,
    address: str | None = None,
    cluster_id: str = "",
) -> ClusterState:
    """A one-node cluster (a node started without a seed): it is valid, owns every partition and is
    the claimant. Version 1, so that any real cluster state beats the empty one. `cluster_id` names
    this founding (the runtime draws it at random)."""
    members = MembershipView([Member(name, MemberState.VALID, 1, zone, address)])
    ring = Ring(partitions, (name,) * partitions)
    return ClusterState(members, ring, 1, (), name, cluster_id=cluster_id)


def foreign(a: ClusterState, b: ClusterState) -> bool:
    """Whether `a` and `b` belong to clusters founded apart: such states must never be merged."""
    return bool(a.cluster_id) and bool(b.cluster_id) and a.cluster_id != b.cluster_id


def _bump(state: ClusterState, name: str, kind: ChangeKind) -> ClusterState:
    old = state.staged.get(name)
    version = 1 if old is None else old.version + 1
    if version > VERSION_MAX:
        raise ConfigError("staged", f"{name}: version cannot be bumped")
    return replace(state, staged={**state.staged, name: Staged(name, kind, version)})


def stage_join(
    state: ClusterState, name: str, zone: str | None = None, address: str | None = None
) -> ClusterState:
    """`name` asks to join: it enters the view as joining (owning nothing) and the request waits for a
    commit. A removed member may join again under the same name."""
    if state.ring is None:
        raise ConfigError("cluster", "no cluster to join yet")
    members = add_joining(state.members, name, zone, address)
    return _bump(replace(state, members=members), name, ChangeKind.JOIN)


def stage_leave(state: ClusterState, name: str) -> ClusterState:
    """`dynakv cluster leave NAME`: only a valid member can hand its partitions off."""
    member = state.members.get(name)
    if member is None or member.state is not MemberState.VALID:
        raise ConfigError(name, "only a valid member can leave")
    return _bump(state, name, ChangeKind.LEAVE)


def stage_remove(state: ClusterState, name: str) -> ClusterState:
    """`dynakv cluster remove NAME`, for a dead node: its partitions are reassigned without handoff."""
    if not state.is_member(name):
        raise ConfigError(name, "is not a member")
    return _bump(state, name, ChangeKind.REMOVE)


def clear_staged(state: ClusterState, names: Iterable[str] | None = None) -> ClusterState:
    """Drop staged requests (all, or those of `names`) without carrying them out."""
    chosen = set(names) if names is not None else {s.name for s in state.active_staged()}
    for staged in state.active_staged():
        if staged.name in chosen:
            state = _bump(state, staged.name, ChangeKind.NONE)
    return state


def mark_complete(state: ClusterState, partition: int, new_owner: str) -> ClusterState:
    """Record that the transfer of `partition` to `new_owner` finished. Any node may do it (the old
    owner, when its ownership transfer is acknowledged to the end); it changes no version, since a
    completion merges by "or". Unchanged if the ring no longer plans that move (a stale report)."""
    move = state.move_of(partition)
    if move is None or move.new_owner != new_owner or move.complete:
        return state
    moves = tuple(replace(m, complete=True) if m is move else m for m in state.moves)
    return replace(state, moves=moves)


def acting_claimant(state: ClusterState) -> str | None:
    """Who computes ownership: the claimant that wrote the epoch while it is still valid or leaving
    (a stable choice, as Riak's), else the first valid member in name order; None with no valid member.
    A member staged for removal is passed over: it is usually dead, and a dead claimant could never
    commit its own removal (the operator's `cluster remove` is what moves the role, as Riak's
    `down`). Every node with the same state names the same claimant."""
    doomed = {s.name for s in state.active_staged() if s.kind is ChangeKind.REMOVE}
    current = state.members.get(state.claimant) if state.claimant is not None else None
    stays = current is not None and current.state in (MemberState.VALID, MemberState.LEAVING)
    if current is not None and stays and current.name not in doomed:
        return current.name
    valid = (m.name for m in state.members.values() if m.state is MemberState.VALID and m.name not in doomed)
    return next(valid, None)


# --- merge -------------------------------------------------------------------------------------------


def _merge_staged(a: Mapping[str, Staged], b: Mapping[str, Staged]) -> Mapping[str, Staged]:
    merged = dict(a)
    for name, theirs in b.items():
        ours = merged.get(name)
        if ours is None or theirs.precedence() > ours.precedence():
            merged[name] = theirs
    return merged


def _completed(*states: ClusterState) -> set[tuple[int, str, str, int]]:
    return {m.ident for s in states for m in s.moves if m.complete}


def merge(a: ClusterState, b: ClusterState) -> ClusterState:
    """The least state that includes both (module docstring): members and staged entries by version,
    the greater ring epoch whole, completion flags by "or", the cluster id of the founded one. States
    of two clusters (`foreign`) have no merge."""
    assert not foreign(a, b), f"merging clusters {a.cluster_id!r} and {b.cluster_id!r}"
    if a.digest == b.digest:
        return a
    members = a.members if a.members == b.members else merge_members(a.members, b.members)
    staged = a.staged if a.staged == b.staged else _merge_staged(a.staged, b.staged)
    winner = a if a.epoch_key >= b.epoch_key else b
    done = _completed(a, b)
    moves = tuple(replace(m, complete=True) if m.ident in done else m for m in winner.moves)
    epoch = (winner.ring, winner.ring_version, moves, winner.claimant)
    merged = ClusterState(members, *epoch, staged, a.cluster_id or b.cluster_id)
    # Hand back an input itself when it already is the result: callers compare digests, and the
    # cached encoding is reused.
    return a if merged == a else (b if merged == b else merged)


# --- encoding ----------------------------------------------------------------------------------------


def _members_bytes(state: ClusterState) -> bytes:
    return encode_view(state.members)


def _epoch_fields(state: ClusterState, *, flags: bool) -> list[Any]:
    ring = state.ring.encode() if state.ring is not None else None
    moves = [
        [m.partition, m.old_owner, m.new_owner, m.planned_at, *([m.complete] if flags else [])]
        for m in state.moves
    ]
    return [ring, state.ring_version, moves, state.claimant]


def _staged(state: ClusterState) -> list[list[Any]]:
    return [[s.name, s.kind.value, s.version] for s in state.staged.values()]


def encode(state: ClusterState) -> bytes:
    return state.encoded


def _name(value: Any, field_name: str) -> str:
    text = want_str(value, field_name)
    if not text or len(text.encode()) > NAME_BYTES_MAX:
        raise DecodeError(f"{field_name}: empty or longer than {NAME_BYTES_MAX} bytes")
    return text


def _decode_move(value: Any, at: str) -> Move:
    partition, old, new, planned, complete = want_tuple(value, at, 5)
    return Move(
        want_int(partition, f"{at}.partition", 0),
        _name(old, f"{at}.old_owner"),
        _name(new, f"{at}.new_owner"),
        want_int(planned, f"{at}.planned_at", 1, VERSION_MAX),
        want_bool(complete, f"{at}.complete"),
    )


def _decode_staged(value: Any, at: str) -> Staged:
    name, kind, version = want_tuple(value, at, 3)
    try:
        change = ChangeKind(want_str(kind, f"{at}.kind"))
    except ValueError:
        raise DecodeError(f"{at}.kind: {kind!r} is not a change") from None
    return Staged(_name(name, f"{at}.name"), change, want_int(version, f"{at}.version", 0, VERSION_MAX))


def decode(data: bytes) -> ClusterState:
    """The state `encode` wrote; anything else (including broken invariants) raises `DecodeError`."""
    payload = codec.decode(data, STATE_TAG)
    fields = list(want_list(payload, "state"))
    cluster_id = ""
    if len(fields) == 7:
        cluster_id = want_str(fields.pop(), "state.cluster_id")
        if not cluster_id:
            raise DecodeError("state.cluster_id: an empty id is written as no field")
    members_raw, ring_raw, version, moves_raw, claimant, staged_raw = want_tuple(fields, "state", 6)
    members = decode_view(want_bytes(members_raw, "state.members"))
    ring = want_optional(ring_raw, "state.ring", lambda v, f: Ring.decode(want_bytes(v, f)))
    moves = [_decode_move(m, f"state.moves[{i}]") for i, m in enumerate(want_list(moves_raw, "state.moves"))]
    staged = [_decode_staged(s, f"state.staged[{i}]") for i, s in enumerate(want_list(staged_raw, "staged"))]
    names = [s.name for s in staged]
    if any(x >= y for x, y in pairwise(names)):
        raise DecodeError("state.staged: expected strictly increasing names")
    try:
        return ClusterState(
            members,
            ring,
            want_int(version, "state.ring_version", 0, VERSION_MAX),
            tuple(moves),
            want_optional(claimant, "state.claimant", _name),
            {s.name: s for s in staged},
            cluster_id,
        )
    except ConfigError as exc:
        raise DecodeError(f"state: {exc}") from None


def from_ring(ring: Ring, addresses: Mapping[str, str] | None = None) -> ClusterState:
    """The state of a statically configured cluster: every owner of `ring` a valid member (version 1,
    with its peer address when given), the ring at version 1, the first owner in name order its
    claimant. Every node configured with the same ring builds the same state, so gossip between them
    costs one digest a round."""
    names = sorted(set(ring.owners))
    where = addresses or {}
    members = MembershipView([Member(n, MemberState.VALID, 1, None, where.get(n)) for n in names])
    return ClusterState(members, ring, 1, (), names[0])
