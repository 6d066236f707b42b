"""Merge of membership views is a join-semilattice; transitions obey the table; the codec round-trips."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from dynakv.core import codec
from dynakv.core.errors import DecodeError
from dynakv.core.membership import (
    TRANSITIONS,
    IllegalTransition,
    Member,
    MembershipView,
    MemberState,
    decode_view,
    encode_view,
    merge,
    transition,
)

# Few names and small versions, so that views overlap and often disagree at an equal version.
names = st.sampled_from(["a", "b", "c", "d"])
members = st.builds(
    Member,
    name=names,
    state=st.sampled_from(list(MemberState)),
    version=st.integers(0, 3),
    zone=st.sampled_from([None, "", "z1", "z2"]),
    address=st.sampled_from([None, "h:1", "h:2"]),
)
views = st.lists(members, max_size=6, unique_by=lambda m: m.name).map(MembershipView)


@given(views, views)
def test_merge_is_commutative(a: MembershipView, b: MembershipView) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(a, b).digest() == merge(b, a).digest()


@given(views, views, views)
def test_merge_is_associative(a: MembershipView, b: MembershipView, c: MembershipView) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(views)
def test_merge_is_idempotent(a: MembershipView) -> None:
    assert merge(a, a) == a


@given(views, views)
def test_merge_is_an_upper_bound(a: MembershipView, b: MembershipView) -> None:
    m = merge(a, b)
    assert set(m) == set(a) | set(b)
    for name, member in m.items():
        versions = [v[name].version for v in (a, b) if name in v]
        assert member.version == max(versions)
        assert member in [v[name] for v in (a, b) if name in v]  # never invents an entry
    # merged >= a and merged >= b in the lattice order: absorbing either input changes nothing.
    assert merge(m, a) == m
    assert merge(m, b) == m


@given(views, st.lists(st.tuples(names, st.sampled_from(list(MemberState))), max_size=20))
def test_transitions_are_accepted_exactly_when_the_table_allows(
    view: MembershipView, requests: list[tuple[str, MemberState]]
) -> None:
    for name, new_state in requests:
        before = view.get(name)
        if before is None:
            continue
        if new_state in TRANSITIONS[before.state]:
            after = transition(view, name, new_state)
            assert after[name].state is new_state
            assert after[name].version == before.version + 1
            untouched = {n: m for n, m in view.items() if n != name}
            assert {n: m for n, m in after.items() if n != name} == untouched
            # The changed view wins gossip against the one it was made from.
            assert merge(view, after) == after
            view = after
        else:
            try:
                transition(view, name, new_state)
            except IllegalTransition as exc:
                assert (exc.current, exc.new) == (before.state, new_state)
            else:
                raise AssertionError(f"{before.state} -> {new_state} was accepted")


@given(views)
def test_codec_round_trip(view: MembershipView) -> None:
    data = encode_view(view)
    assert decode_view(data) == view
    assert decode_view(data).digest() == view.digest()


@given(views, views)
def test_digest_tells_views_apart(a: MembershipView, b: MembershipView) -> None:
    assert (a.digest() == b.digest()) == (a == b)


@given(st.binary(max_size=80))
def test_random_bytes_give_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_view(data)


payloads = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2**64 - 1)
    | st.text(max_size=8)
    | st.binary(max_size=3)
    | st.sampled_from(["valid", "down", "a"]),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=16,
)


@given(payloads)
def test_well_framed_payloads_of_any_shape_give_a_view_or_decode_error(payload: object) -> None:
    with contextlib.suppress(DecodeError):
        decode_view(codec.encode("membership.view", payload))
