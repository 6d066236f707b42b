"""notfound_ok and basic_quorum on a get, Riak's model (riak_kv_get_core): which answers count toward
r, and when not-founds and failures end the get."""

from __future__ import annotations

from dynakv.core.dvv import SiblingSet
from dynakv.core.objects import Content, encode_object
from dynakv.protocol.coordinator import NOT_FOUND, GetCoordination, Need, Target

NODES = ("a", "b", "c", "d", "e")
EMPTY = SiblingSet[Content]()
OBJ = encode_object(EMPTY.update(EMPTY.context(), "x", Content(b"v", last_modified_ms=1), 1))


def get(r: int, *, n: int = 3, notfound_ok: bool = True, basic_quorum: bool = False) -> GetCoordination:
    targets = tuple(Target(node, True) for node in NODES[:n])
    needs = (Need("r", r, frozenset(NODES[:n])),)
    return GetCoordination(targets, needs, 100, notfound_ok=notfound_ok, basic_quorum=basic_quorum)


def test_with_notfound_ok_a_not_found_counts_toward_r() -> None:
    c = get(r=2)
    c.answer("a", None)
    assert c.outcome(0) is None
    c.answer("b", None)
    assert c.outcome(0) is True


def test_without_notfound_ok_a_not_found_does_not_count_toward_r() -> None:
    c = get(r=2, notfound_ok=False)
    c.answer("a", None)
    c.answer("b", OBJ)
    assert c.outcome(0) is None  # one found, one not found: c may still have it
    c.answer("c", OBJ)
    assert c.outcome(0) is True


def test_without_notfound_ok_the_fail_threshold_answers_not_found() -> None:
    c = get(r=2, notfound_ok=False)  # threshold n - r + 1 = 2
    c.answer("a", None)
    assert c.outcome(0) is None
    c.answer("b", None)
    assert c.outcome(0) is NOT_FOUND


def test_failures_and_not_founds_add_up_and_a_not_found_among_them_answers_not_found() -> None:
    c = get(r=2, notfound_ok=False)
    c.fail("a")
    c.answer("b", None)
    assert c.outcome(0) is NOT_FOUND


def test_failures_alone_fail_on_r() -> None:
    c = get(r=2, notfound_ok=False, basic_quorum=True, n=5)  # threshold min(3, 4) = 3
    c.fail("a")
    c.fail("b")
    assert c.outcome(0) is None
    c.fail("c")
    outcome = c.outcome(0)
    assert not isinstance(outcome, bool) and outcome is not None and outcome is not NOT_FOUND
    assert outcome.field == "r" and outcome.needed == 2 and outcome.acknowledged == 0


def test_basic_quorum_gives_up_at_a_majority() -> None:
    # n=5, r=1: without basic_quorum the threshold is 5; with it, 3.
    slow = get(r=1, n=5, notfound_ok=False)
    quick = get(r=1, n=5, notfound_ok=False, basic_quorum=True)
    for c in (slow, quick):
        for node in ("a", "b", "c"):
            c.answer(node, None)
    assert slow.outcome(0) is None
    assert quick.outcome(0) is NOT_FOUND
    assert (slow.fail_threshold(), quick.fail_threshold()) == (5, 3)


def test_basic_quorum_with_notfound_ok_ends_early_on_failures() -> None:
    c = get(r=1, n=5, basic_quorum=True)
    c.fail("a")
    c.fail("b")
    assert c.outcome(0) is None
    c.fail("c")
    outcome = c.outcome(0)
    assert outcome is not None and outcome is not True and outcome is not NOT_FOUND
