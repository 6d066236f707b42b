"""Coordination of one get or put: which replicas answered, and whether the quorums are met.

Pure bookkeeping, no storage and no messages: `node.py` feeds in the answers and acts on the outcome.
A put succeeds when w replicas acknowledged, dw of them durably and pw of them primaries; it fails as
soon as one of these can no longer be reached with the replicas still outstanding, or at the deadline.
A get succeeds after r replies with pr of them primaries. With notfound_ok (Riak's default) a replica's
not-found counts toward r; without it, it does not, and counts with the failures toward Riak's fail
threshold instead: n_val - r + 1 answers that cannot count, or with basic_quorum as soon as a majority
cannot. A get that reaches the threshold answers not found if some replica said so, else fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from dynakv.core.objects import StoredObject, decode_object
from dynakv.protocol.messages import Failure, FailureKind


@dataclass(frozen=True, slots=True)
class Target:
    """A replica asked to take part: a node, whether it is a primary for the key, and for a fallback
    the unreachable primary it stands in for (its writes are kept as hints for that primary)."""

    node: str
    primary: bool
    hint_for: str | None = None


@dataclass(frozen=True, slots=True)
class Need:
    """One quorum: `count` answers from the replicas that `eligible` names."""

    name: str
    count: int
    eligible: frozenset[str]


def _is_target(targets: tuple[Target, ...], node: str) -> bool:
    return any(t.node == node for t in targets)


def _quorum_state(need: Need, done: set[str], failed: set[str]) -> bool | None:
    """True when met, False when it can no longer be met, None while undecided."""
    got = len(done & need.eligible)
    if got >= need.count:
        return True
    outstanding = len(need.eligible - done - failed)
    return False if got + outstanding < need.count else None


def _unavailable(need: Need, done: set[str], failed: set[str], timeout: bool) -> Failure:
    got = len(done & need.eligible)
    lost = len(need.eligible & failed)
    if timeout:
        why = f"{len(need.eligible) - got - lost} did not answer in time"
        if lost:
            why += f" and {lost} failed or could not be reached"
    else:
        why = f"{lost} failed or could not be reached, so {need.count} cannot be met"
    return Failure(
        FailureKind.TIMEOUT if timeout else FailureKind.UNAVAILABLE,
        f"{need.name}={need.count} needed {need.count} replicas, {got} acknowledged; {why}",
        field=need.name,
        needed=need.count,
        acknowledged=got,
    )


def decide(
    needs: Sequence[Need],
    done_for: Callable[[Need], set[str]],
    failed: set[str],
    deadline_ms: int,
    now_ms: int,
) -> bool | Failure | None:
    """True: every quorum is met; a Failure: one cannot be met (or the deadline passed first); None:
    keep waiting. `done_for(need)` is the set of replicas that answered in the way `need` counts."""
    states = [(need, _quorum_state(need, done_for(need), failed)) for need in needs]
    for need, state in states:
        if state is False:
            return _unavailable(need, done_for(need), failed, timeout=False)
    if all(state for _, state in states):
        return True
    if now_ms >= deadline_ms:
        need = next(need for need, state in states if state is None)
        return _unavailable(need, done_for(need), failed, timeout=True)
    return None


@dataclass(slots=True)
class PutCoordination:
    """The acknowledgements of one put. `durable_asked` are the targets asked for a durable write."""

    targets: tuple[Target, ...]
    needs: tuple[Need, ...]
    deadline_ms: int
    acked: set[str] = field(default_factory=set)
    durable_acked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)

    def ack(self, node: str, ok: bool, durable: bool) -> None:
        if node in self.acked or node in self.failed or not _is_target(self.targets, node):
            return  # a duplicate or stray answer changes nothing
        if ok:
            self.acked.add(node)
            if durable:
                self.durable_acked.add(node)
        else:
            self.failed.add(node)

    def outcome(self, now_ms: int) -> bool | Failure | None:
        return decide(self.needs, self._done_for, self.failed, self.deadline_ms, now_ms)

    def _done_for(self, need: Need) -> set[str]:
        return self.durable_acked if need.name == "dw" else self.acked


@dataclass(frozen=True, slots=True)
class NotFound:
    """A get's outcome when too many replicas said not found (or failed) for r to be met, and at least
    one said not found: the answer is not found (Riak's notfound_ok false)."""


NOT_FOUND: Final = NotFound()


@dataclass(slots=True)
class GetCoordination:
    """The replies of one get; after the reply it lingers for read repair until all answered."""

    targets: tuple[Target, ...]
    needs: tuple[Need, ...]
    deadline_ms: int
    notfound_ok: bool = True
    basic_quorum: bool = False
    replies: dict[str, StoredObject | None] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    replied: bool = False

    def answer(self, node: str, obj: bytes | None) -> None:
        """Record a replica's answer; an undecodable object counts as a failed replica."""
        if node in self.replies or node in self.failed or not _is_target(self.targets, node):
            return
        if obj is None:
            self.replies[node] = None
            return
        try:
            self.replies[node] = decode_object(obj)
        except Exception:  # DecodeError, but a replica's bad bytes must never crash the coordinator
            self.failed.add(node)

    def fail(self, node: str) -> None:
        if node not in self.replies and _is_target(self.targets, node):
            self.failed.add(node)

    def outcome(self, now_ms: int) -> bool | NotFound | Failure | None:
        counted = set(self.replies) if self.notfound_ok else self._found()
        misses = self.failed if self.notfound_ok else self.failed | self._not_found()
        verdict = decide(self.needs, lambda _: counted, misses, self.deadline_ms, now_ms)
        if verdict is True or len(misses) < self.fail_threshold():
            return verdict
        if not self.notfound_ok and self._not_found():
            return NOT_FOUND
        if verdict is None:  # basic_quorum gave up before r became impossible
            r_need = next(need for need in self.needs if need.name == "r")
            return _unavailable(r_need, counted & r_need.eligible, misses, timeout=False)
        return verdict

    def fail_threshold(self) -> int:
        """How many answers that cannot count toward r (failures, and not-founds without notfound_ok)
        end the get: Riak's n_val - r + 1, or with basic_quorum at most a majority of n_val."""
        n = len(self.targets)
        r = next((need.count for need in self.needs if need.name == "r"), 1)
        threshold = n - r + 1
        return min(n // 2 + 1, threshold) if self.basic_quorum else threshold

    def _found(self) -> set[str]:
        return {node for node, obj in self.replies.items() if obj is not None}

    def _not_found(self) -> set[str]:
        return {node for node, obj in self.replies.items() if obj is None}

    def all_answered(self) -> bool:
        return len(self.replies) + len(self.failed) >= len(self.targets)

    def objects(self) -> Sequence[StoredObject]:
        return [obj for _, obj in sorted(self.replies.items()) if obj is not None]
