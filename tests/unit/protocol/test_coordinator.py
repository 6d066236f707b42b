"""Quorum bookkeeping: success, early failure and timeout, with counts that name what happened."""

from __future__ import annotations

from dynakv.protocol.coordinator import GetCoordination, Need, PutCoordination, Target
from dynakv.protocol.messages import Failure, FailureKind

TARGETS = (Target("a", True), Target("b", True), Target("c", True))
ALL = frozenset({"a", "b", "c"})


def put(w: int, dw: int = 0, deadline_ms: int = 100) -> PutCoordination:
    needs = tuple(n for n in (Need("w", w, ALL), Need("dw", dw, ALL)) if n.count)
    return PutCoordination(TARGETS, needs, deadline_ms)


def test_put_succeeds_once_w_acks_arrive() -> None:
    c = put(w=2)
    c.ack("a", True, False)
    assert c.outcome(0) is None
    c.ack("b", True, False)
    assert c.outcome(0) is True


def test_duplicate_and_stray_acks_do_not_count() -> None:
    c = put(w=2)
    c.ack("a", True, False)
    c.ack("a", True, False)
    c.ack("z", True, False)
    assert c.outcome(0) is None


def test_put_fails_as_soon_as_w_cannot_be_met() -> None:
    c = put(w=2)
    c.ack("a", True, False)
    c.ack("b", False, False)
    assert c.outcome(0) is None  # c may still answer
    c.ack("c", False, False)
    outcome = c.outcome(0)
    assert isinstance(outcome, Failure) and outcome.kind is FailureKind.UNAVAILABLE
    assert (outcome.field, outcome.needed, outcome.acknowledged) == ("w", 2, 1)


def test_buffered_acks_do_not_count_toward_dw() -> None:
    c = put(w=2, dw=2)
    c.ack("a", True, True)
    c.ack("b", True, False)
    assert c.outcome(0) is None
    c.ack("c", True, True)
    assert c.outcome(0) is True


def test_put_times_out_naming_what_was_missing() -> None:
    c = put(w=3, deadline_ms=100)
    c.ack("a", True, False)
    assert c.outcome(99) is None
    outcome = c.outcome(100)
    assert isinstance(outcome, Failure) and outcome.kind is FailureKind.TIMEOUT
    assert (outcome.needed, outcome.acknowledged) == (3, 1)
    assert "did not answer in time" in outcome.message


def test_get_counts_not_found_as_a_reply_and_lingers_for_the_rest() -> None:
    c = GetCoordination(TARGETS, (Need("r", 2, ALL),), 100)
    c.answer("a", None)
    c.answer("b", None)
    assert c.outcome(0) is True
    assert not c.all_answered()
    c.fail("c")
    assert c.all_answered()


def test_an_undecodable_replica_answer_counts_as_a_failed_replica() -> None:
    c = GetCoordination(TARGETS, (Need("r", 3, ALL),), 100)
    c.answer("a", b"\x00garbage")
    outcome = c.outcome(0)
    assert isinstance(outcome, Failure) and outcome.acknowledged == 0
