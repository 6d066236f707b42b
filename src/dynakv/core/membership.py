"""Cluster membership: member states, their legal transitions, and a view that merges by gossip.

Membership changes only by explicit admin action or by the claimant (paper section 4.8): the failure
detector decides who is *up*, never who is a *member*. The states are Riak's (riak_core_ring):

- joining: admitted by an admin, owns nothing yet; the claimant makes it valid.
- valid:   a full member; the claimant may give it partitions.
- leaving: asked to leave; still owns and serves its partitions until each transfer is acknowledged.
- exiting: has handed off every partition; the claimant removes it.
- down:    marked unreachable by an admin so that ring changes can proceed without it; it keeps its
           partitions (marking down moves no data) and becomes valid again when it comes back.
- removed: a tombstone (Riak's `invalid`). Keeping the entry instead of deleting it lets a removal win
           the merge against stale gossip that still lists the member, so it cannot be resurrected.

Each member carries a version that whoever changes it (a node or the claimant) bumps. A view merges
member by member, keeping the entry with the greater version, so merge is a join-semilattice and gossip
converges in any order.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

from dynakv.core import codec
from dynakv.core.codec import want_int, want_list, want_optional, want_str, want_tuple
from dynakv.core.errors import ConfigError, DecodeError

VIEW_TAG: Final = "membership.view"
VERSION_MAX: Final = (1 << 63) - 1
NAME_BYTES_MAX: Final = 1024


class MemberState(enum.Enum):
    JOINING = "joining"
    VALID = "valid"
    LEAVING = "leaving"
    EXITING = "exiting"
    DOWN = "down"
    REMOVED = "removed"


_S = MemberState

# Who may move a member from one state to another. A state maps to every state it may move to; a
# transition to the same state is never legal (it would bump the version and change nothing).
TRANSITIONS: Final[Mapping[MemberState, frozenset[MemberState]]] = MappingProxyType(
    {
        # The claimant admits a joining member; an admin may drop it before that (no data to move) or
        # mark it down if it vanished.
        _S.JOINING: frozenset({_S.VALID, _S.DOWN, _S.REMOVED}),
        # Leave (with handoff), mark down, or force-remove (Riak's `cluster force-remove`: its
        # partitions are reassigned without handoff; the other n_val - 1 replicas and anti-entropy
        # restore the copies).
        _S.VALID: frozenset({_S.LEAVING, _S.DOWN, _S.REMOVED}),
        # Exiting once every partition is handed off. A leave may be cancelled (back to valid) until
        # then: unlike Riak, which makes a committed leave final, we allow it because it is safe here,
        # since ownership moves only when a transfer is acknowledged and the ring flips, so the member
        # still owns and holds every partition not yet transferred; the claimant drops its pending
        # transfers and rebalances. (A leaving member marked down and later back is valid again too,
        # so the cancel path exists anyway.) Down and force-remove as for valid.
        _S.LEAVING: frozenset({_S.EXITING, _S.VALID, _S.DOWN, _S.REMOVED}),
        # An exiting member owns nothing and shuts down; only its removal is left.
        _S.EXITING: frozenset({_S.REMOVED}),
        # Back up (it kept its partitions), or force-removed because it will not come back. Not
        # leaving: a leave needs a handoff, which a down member cannot do.
        _S.DOWN: frozenset({_S.VALID, _S.REMOVED}),
        # The same name may join again after removal; the new entry's higher version supersedes the
        # tombstone everywhere.
        _S.REMOVED: frozenset({_S.JOINING}),
    }
)

# The tie-break between two different entries with the same version (two concurrent changes): Riak's
# merge_status order, removed > down > joining > valid > exiting > leaving. A removal or a mark-down
# made concurrently with anything else wins, so no node is resurrected and none silently brought back
# up by a race.
_PRECEDENCE: Final[Mapping[MemberState, int]] = MappingProxyType(
    {_S.LEAVING: 0, _S.EXITING: 1, _S.VALID: 2, _S.JOINING: 3, _S.DOWN: 4, _S.REMOVED: 5}
)

# Members that may own partitions while gossip and transfers settle (Riak's ready_members).
OWNER_STATES: Final = frozenset({_S.VALID, _S.LEAVING})


def can_transition(current: MemberState, new: MemberState) -> bool:
    return new in TRANSITIONS[current]


class IllegalTransition(ConfigError):
    """A requested member state change that the transition table does not allow."""

    def __init__(self, name: str, current: MemberState, new: MemberState) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing"
        super().__init__(name, f"cannot move from {current.value} to {new.value} (allowed: {allowed})")
        self.current = current
        self.new = new


@dataclass(frozen=True, slots=True)
class Member:
    """One member's entry: `address` is its cluster address "host:port" once known."""

    name: str
    state: MemberState
    version: int = 1
    zone: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", f"expected a non-empty string, got {self.name!r}")
        if len(self.name.encode()) > NAME_BYTES_MAX:
            raise ConfigError("name", f"longer than {NAME_BYTES_MAX} bytes")
        if not isinstance(self.state, MemberState):
            raise ConfigError("state", f"expected a MemberState, got {self.state!r}")
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise ConfigError("version", f"expected an integer, got {self.version!r}")
        if not 0 <= self.version <= VERSION_MAX:
            raise ConfigError("version", f"{self.version} is not in [0, {VERSION_MAX}]")
        for field, value in (("zone", self.zone), ("address", self.address)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(field, f"expected a string or None, got {value!r}")

    def precedence(self) -> tuple[int, int, bool, str, bool, str]:
        """The total order merge keeps the greatest of: version first, then a tie-break over every
        other field, so that two different entries never compare equal and merge is commutative."""
        return (
            self.version,
            _PRECEDENCE[self.state],
            self.zone is not None,
            self.zone or "",
            self.address is not None,
            self.address or "",
        )


class MembershipView(Mapping[str, Member]):
    """An immutable mapping from member name to `Member`, iterated in name order."""

    __slots__ = ("_members",)

    def __init__(self, members: Iterable[Member] = ()) -> None:
        by_name: dict[str, Member] = {}
        for member in members:
            if member.name in by_name:
                raise ConfigError("members", f"{member.name!r} appears twice")
            by_name[member.name] = member
        self._members: Mapping[str, Member] = MappingProxyType(dict(sorted(by_name.items())))

    def __getitem__(self, name: str) -> Member:
        return self._members[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"MembershipView({list(self._members.values())!r})"

    def digest(self) -> bytes:
        """A hash of the canonical encoding, so gossip can tell equal views apart cheaply."""
        return hashlib.blake2b(encode_view(self), digest_size=16, person=b"dynakv.members").digest()

    def with_member(self, member: Member) -> MembershipView:
        """A view with `member` set, whatever was there (the callers below check the table)."""
        others = (m for m in self._members.values() if m.name != member.name)
        return MembershipView([*others, member])


def merge(a: MembershipView, b: MembershipView) -> MembershipView:
    """Per member, keep the entry with the greatest `precedence()`: commutative, associative, idempotent."""
    merged = dict(a)
    for name, theirs in b.items():
        ours = merged.get(name)
        if ours is None or theirs.precedence() > ours.precedence():
            merged[name] = theirs
    return MembershipView(merged.values())


def _next_version(member: Member) -> int:
    if member.version >= VERSION_MAX:
        raise ConfigError("version", f"{member.name}: version {member.version} cannot be bumped")
    return member.version + 1


def transition(view: MembershipView, name: str, new_state: MemberState) -> MembershipView:
    """Move member `name` to `new_state`, bumping its version; `IllegalTransition` if the table refuses."""
    member = view.get(name)
    if member is None:
        raise ConfigError(name, "is not a member")
    if not can_transition(member.state, new_state):
        raise IllegalTransition(name, member.state, new_state)
    return view.with_member(replace(member, state=new_state, version=_next_version(member)))


def add_joining(
    view: MembershipView, name: str, zone: str | None = None, address: str | None = None
) -> MembershipView:
    """Admit `name` as joining: a new entry at version 1, or a removed member joining again."""
    member = view.get(name)
    if member is None:
        return view.with_member(Member(name, MemberState.JOINING, 1, zone, address))
    if not can_transition(member.state, MemberState.JOINING):
        raise IllegalTransition(name, member.state, MemberState.JOINING)
    rejoined = Member(name, MemberState.JOINING, _next_version(member), zone, address)
    return view.with_member(rejoined)


def members_in(view: MembershipView, states: Iterable[MemberState]) -> list[Member]:
    """The members in any of `states`, sorted by name."""
    wanted = frozenset(states)
    return [m for m in view.values() if m.state in wanted]


def owners_eligible(view: MembershipView, owners: Set[str] | None = None) -> list[Member]:
    """The members that may own partitions, sorted by name: valid ones, and leaving ones that still own.

    Membership alone does not know ownership: pass `owners`, the names that own a partition in the
    current ring, to drop leaving members that have handed everything off; without it every leaving
    member counts.
    """
    return [
        m
        for m in members_in(view, OWNER_STATES)
        if m.state is MemberState.VALID or owners is None or m.name in owners
    ]


def encode_view(view: MembershipView) -> bytes:
    """Encode a view canonically (members in name order), so equal views encode to equal bytes."""
    payload = [[m.name, m.state.value, m.version, m.zone, m.address] for m in view.values()]
    return codec.encode(VIEW_TAG, payload)


def _decode_member(value: Any, field: str) -> Member:
    name, state, version, zone, address = want_tuple(value, field, 5)
    name = want_str(name, f"{field}.name")
    if not name or len(name.encode()) > NAME_BYTES_MAX:
        raise DecodeError(f"{field}.name: empty or longer than {NAME_BYTES_MAX} bytes")
    try:
        member_state = MemberState(want_str(state, f"{field}.state"))
    except ValueError:
        raise DecodeError(f"{field}.state: {state!r} is not a member state") from None
    return Member(
        name,
        member_state,
        want_int(version, f"{field}.version", 0, VERSION_MAX),
        want_optional(zone, f"{field}.zone", want_str),
        want_optional(address, f"{field}.address", want_str),
    )


def decode_view(data: bytes) -> MembershipView:
    items = want_list(codec.decode(data, VIEW_TAG), "members")
    members = [_decode_member(item, f"members[{i}]") for i, item in enumerate(items)]
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise DecodeError("members: a name appears twice")
    return MembershipView(members)
