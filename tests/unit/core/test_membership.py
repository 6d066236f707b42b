"""Member states, the transition table, and the view's operations on worked examples."""

from __future__ import annotations

import itertools

import pytest

from dynakv.core import codec
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.core.membership import (
    TRANSITIONS,
    IllegalTransition,
    Member,
    MembershipView,
    MemberState,
    add_joining,
    can_transition,
    decode_view,
    encode_view,
    members_in,
    merge,
    owners_eligible,
    transition,
)

J, V, L, E, D, R = (
    MemberState.JOINING,
    MemberState.VALID,
    MemberState.LEAVING,
    MemberState.EXITING,
    MemberState.DOWN,
    MemberState.REMOVED,
)

# The decision, written out independently of the module so that a change to the table shows up here.
DECIDED_LEGAL = {
    (J, V), (J, D), (J, R),
    (V, L), (V, D), (V, R),
    (L, E), (L, V), (L, D), (L, R),
    (E, R),
    (D, V), (D, R),
    (R, J),
}  # fmt: skip


def test_state_values_are_the_riak_names() -> None:
    assert [s.value for s in MemberState] == ["joining", "valid", "leaving", "exiting", "down", "removed"]


def test_the_table_is_the_decided_one() -> None:
    assert set(TRANSITIONS) == set(MemberState)
    table_pairs = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table_pairs == DECIDED_LEGAL


def test_table_shape() -> None:
    # No state moves to itself; every state can end in removal; every state is reachable from joining.
    assert all(a not in targets for a, targets in TRANSITIONS.items())
    for start in MemberState:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert R in seen or start is R
        if start is J:
            assert seen == set(MemberState)


def view_with(state: MemberState) -> MembershipView:
    return MembershipView(
        [Member("n1", state, 4, "z1", "10.0.0.1:7000"), Member("n2", MemberState.VALID, 9, "z2", None)]
    )


@pytest.mark.parametrize(("current", "new"), list(itertools.product(MemberState, MemberState)))
def test_every_pair_of_states_follows_the_table(current: MemberState, new: MemberState) -> None:
    view = view_with(current)
    assert can_transition(current, new) == (new in TRANSITIONS[current])
    if can_transition(current, new):
        after = transition(view, "n1", new)
        assert after["n1"] == Member("n1", new, 5, "z1", "10.0.0.1:7000")
        assert after["n2"] == view["n2"]
        assert view["n1"].state is current  # the old view is untouched
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(view, "n1", new)
        assert current.value in str(info.value)
        assert new.value in str(info.value)
        assert "n1" in str(info.value)
        assert isinstance(info.value, ConfigError)


def test_unknown_member_cannot_transition() -> None:
    with pytest.raises(ConfigError, match="not a member"):
        transition(MembershipView(), "ghost", MemberState.VALID)


def test_life_cycle_and_rejoin() -> None:
    view = add_joining(MembershipView(), "n1", "z1", "h:1")
    assert view["n1"] == Member("n1", J, 1, "z1", "h:1")
    for state in (V, L, E, R):
        view = transition(view, "n1", state)
    assert view["n1"] == Member("n1", R, 5, "z1", "h:1")
    again = add_joining(view, "n1", "z2", "h:2")
    assert again["n1"] == Member("n1", J, 6, "z2", "h:2")
    with pytest.raises(IllegalTransition):
        add_joining(transition(again, "n1", V), "n1")


def test_removal_beats_stale_gossip() -> None:
    old = MembershipView([Member("n1", V, 3)])
    removed = transition(transition(old, "n1", L), "n1", R)
    stale = transition(old, "n1", D)  # a concurrent change someone made from the old view
    assert merge(removed, stale)["n1"].state is R
    assert merge(stale, removed)["n1"].state is R


@pytest.mark.parametrize(("winner", "loser"), [(R, D), (D, J), (J, V), (V, E), (E, L), (R, L), (D, L)])
def test_equal_version_conflicts_follow_riak_precedence(winner: MemberState, loser: MemberState) -> None:
    a = MembershipView([Member("n1", winner, 7)])
    b = MembershipView([Member("n1", loser, 7)])
    assert merge(a, b)["n1"].state is winner
    assert merge(b, a)["n1"].state is winner


def test_equal_version_and_state_conflicts_are_broken_by_zone_then_address() -> None:
    entries = [Member("n", V, 2, None, None), Member("n", V, 2, "", None), Member("n", V, 2, "", "a"),
               Member("n", V, 2, "a", None)]  # fmt: skip
    for x, y in itertools.permutations(entries, 2):
        left = merge(MembershipView([x]), MembershipView([y]))
        right = merge(MembershipView([y]), MembershipView([x]))
        assert left == right
    everything = MembershipView([entries[0]])
    for e in entries[1:]:
        everything = merge(everything, MembershipView([e]))
    assert everything["n"] == Member("n", V, 2, "a", None)


def test_merge_takes_the_union_and_the_higher_version() -> None:
    a = MembershipView([Member("a", V, 1), Member("b", L, 5)])
    b = MembershipView([Member("b", V, 4), Member("c", J, 1)])
    assert merge(a, b) == MembershipView([Member("a", V, 1), Member("b", L, 5), Member("c", J, 1)])


def test_queries_are_sorted_by_name() -> None:
    view = MembershipView(
        [Member("d", L), Member("b", V), Member("a", D), Member("c", L), Member("e", J), Member("f", E)]
    )
    assert list(view) == ["a", "b", "c", "d", "e", "f"]
    assert [m.name for m in members_in(view, {L, V})] == ["b", "c", "d"]
    assert [m.name for m in members_in(view, [])] == []
    assert [m.name for m in owners_eligible(view)] == ["b", "c", "d"]
    assert [m.name for m in owners_eligible(view, owners={"b", "d"})] == ["b", "d"]
    assert [m.name for m in owners_eligible(view, owners=set())] == ["b"]


def test_digest_depends_on_content_only() -> None:
    a = MembershipView([Member("x", V, 2, "z"), Member("y", J, 1)])
    b = MembershipView([Member("y", J, 1), Member("x", V, 2, "z")])
    assert a == b
    assert a.digest() == b.digest()
    assert len(a.digest()) == 16
    assert transition(a, "y", V).digest() != a.digest()
    no_zone, empty_zone = Member("x", V, 2, None), Member("x", V, 2, "")
    assert MembershipView([no_zone]).digest() != MembershipView([empty_zone]).digest()


def test_bad_members_and_views_are_refused() -> None:
    for make in (
        lambda: Member("", V),
        lambda: Member("n", V, -1),
        lambda: Member("n", V, 2**63),
        lambda: Member("n", "valid"),  # type: ignore[arg-type]
        lambda: MembershipView([Member("n", V), Member("n", D)]),
    ):
        with pytest.raises(ConfigError):
            make()


def test_codec_round_trip() -> None:
    view = MembershipView([Member("a", V, 3, "z1", "h:1"), Member("b", R, 9), Member("c", D, 0, None, "h:3")])
    data = encode_view(view)
    assert decode_view(data) == view
    assert decode_view(encode_view(MembershipView())) == MembershipView()
    assert encode_view(decode_view(data)) == data


@pytest.mark.parametrize(
    "payload",
    [
        [["a", "sleeping", 1, None, None]],
        [["a", "valid", -1, None, None]],
        [["a", "valid", 1, None, None], ["a", "down", 2, None, None]],
        [["", "valid", 1, None, None]],
        [["a", "valid", 1, 5, None]],
        [["a", "valid", 1, None]],
        [["a", "valid", True, None, None]],
        {"a": 1},
    ],
)
def test_malformed_views_are_decode_errors(payload: object) -> None:
    with pytest.raises(DecodeError):
        decode_view(codec.encode("membership.view", payload))
