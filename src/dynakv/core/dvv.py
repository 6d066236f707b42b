"""Dotted version vectors: dots, version vectors and sibling sets (Riak 2.0's DVV, riak_kv#746).

A stored object is a `SiblingSet`: one object-level version vector (the *clock*) plus one *dot*
(actor, counter) per sibling, naming the single write that created it. Actors are the coordinating
replicas. A put carrying the client's *context* (the clock the client read) drops exactly the siblings
whose dots that context covers and keeps the concurrent ones, so N writers with one stale context leave
N siblings (never 1 or 2, the sibling-explosion/lost-update trade-off of plain vector clocks). Replicas
merge with `sync`, a join: commutative, associative and idempotent.

Each clock entry also keeps `ts_ms`, the time its counter last advanced, for pruning only (paper section
4.4, Riak's small/big/young/old_vclock). Timestamps never take part in causality (`covers`, `descends`,
`compare`); they merge as the lexicographic max of (counter, ts_ms), so `==` on converged replicas still
holds exactly. See `prune` and docs/dvv.md for what pruning costs.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from dynakv.core import codec
from dynakv.core.errors import ConfigError, DecodeError, LimitExceeded

T = TypeVar("T")

CONTEXT_TAG: Final = "ctx"
# A clock holds one entry per actor that ever coordinated a write of the key: the key's replicas and the
# fallbacks that stood in for them, pruned down to big_vclock. A decoded context or clock above this many
# entries is hostile or corrupt; encoding refuses it too, so we never store what we could not read back.
VV_ENTRIES_MAX: Final = 1024
ACTOR_CHARS_MAX: Final = 256
# Counters and timestamps are stored as msgpack integers; keep them in the signed 64-bit range.
INT_MAX: Final = (1 << 63) - 1


class Order(enum.Enum):
    """How two version vectors relate causally."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


@dataclass(frozen=True, slots=True, order=True)
class Dot:
    """One write event: the `counter`-th write of `actor` to one key. Dots sort by (actor, counter)."""

    actor: str
    counter: int

    def __post_init__(self) -> None:
        assert self.actor, "a dot needs an actor"
        assert 1 <= self.counter <= INT_MAX, f"dot counter {self.counter} out of range"


@dataclass(frozen=True, slots=True)
class VersionVector:
    """An immutable version vector: `entries` are (actor, counter) sorted by actor, counters >= 1.

    `ts_ms[i]` is when `entries[i]` last advanced (for `prune` only). An actor without an entry has
    counter 0. Two vectors are `==` when entries and timestamps agree; use `compare` for causality.
    """

    entries: tuple[tuple[str, int], ...] = ()
    ts_ms: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        assert len(self.entries) == len(self.ts_ms), "one timestamp per entry"
        previous = ""
        for actor, counter in self.entries:
            # Strictly increasing actors: sorted and distinct, which makes equality canonical.
            assert actor > previous, f"entries not sorted/distinct at {actor!r}"
            assert 1 <= counter <= INT_MAX, f"counter {counter} of {actor!r} out of range"
            previous = actor
        assert all(0 <= ts <= INT_MAX for ts in self.ts_ms), "timestamp out of range"

    @classmethod
    def from_counters(cls, counters: Mapping[str, int], ts_ms: int = 0) -> VersionVector:
        """Build a vector from actor -> counter (zero counters are left out), every entry stamped ts_ms."""
        items = sorted((actor, counter) for actor, counter in counters.items() if counter != 0)
        return cls(tuple(items), tuple(ts_ms for _ in items))

    @classmethod
    def from_triples(cls, triples: Iterable[tuple[str, int, int]]) -> VersionVector:
        """Build a vector from (actor, counter, ts_ms), one per actor, in any order."""
        ordered = sorted(triples)
        return cls(tuple((a, c) for a, c, _ in ordered), tuple(ts for _, _, ts in ordered))

    def __len__(self) -> int:
        return len(self.entries)

    def triples(self) -> Iterator[tuple[str, int, int]]:
        """(actor, counter, ts_ms) for every entry, in actor order."""
        for (actor, counter), ts in zip(self.entries, self.ts_ms, strict=True):
            yield actor, counter, ts

    def actors(self) -> tuple[str, ...]:
        return tuple(actor for actor, _ in self.entries)

    def _index(self, actor: str) -> int:
        i = bisect_left(self.entries, actor, key=lambda entry: entry[0])
        return i if i < len(self.entries) and self.entries[i][0] == actor else -1

    def get(self, actor: str) -> int:
        """The counter of `actor`, 0 if it has no entry."""
        i = self._index(actor)
        return self.entries[i][1] if i >= 0 else 0

    def ts_of(self, actor: str) -> int | None:
        """When the entry of `actor` last advanced, None if it has no entry."""
        i = self._index(actor)
        return self.ts_ms[i] if i >= 0 else None

    def covers(self, dot: Dot) -> bool:
        """Whether the write `dot` is in the causal past this vector describes."""
        return dot.counter <= self.get(dot.actor)

    def descends(self, other: VersionVector) -> bool:
        """Whether this vector has seen everything `other` has (self >= other pointwise)."""
        return all(counter <= self.get(actor) for actor, counter in other.entries)

    def merge(self, other: VersionVector) -> VersionVector:
        """Pointwise max of counters; a tie keeps the later timestamp so merge stays a join."""
        best: dict[str, tuple[int, int]] = {}
        for actor, counter, ts in (*self.triples(), *other.triples()):
            best[actor] = max(best.get(actor, (0, 0)), (counter, ts))
        return VersionVector.from_triples((a, c, ts) for a, (c, ts) in best.items())

    def with_entry(self, actor: str, counter: int, ts_ms: int) -> VersionVector:
        """This vector with `actor` set to exactly (counter, ts_ms)."""
        kept = [t for t in self.triples() if t[0] != actor]
        return VersionVector.from_triples([*kept, (actor, counter, ts_ms)])

    def without(self, actors: Collection[str]) -> VersionVector:
        """This vector with the entries of `actors` removed (pruning)."""
        if not actors:
            return self
        return VersionVector.from_triples(t for t in self.triples() if t[0] not in actors)

    def clamp_ts(self, now_ms: int) -> VersionVector:
        """Timestamps capped at now_ms, so a client-made context cannot stamp entries in the future."""
        if all(ts <= now_ms for ts in self.ts_ms):
            return self
        return VersionVector(self.entries, tuple(min(ts, now_ms) for ts in self.ts_ms))


EMPTY_VV: Final = VersionVector()


def compare(a: VersionVector, b: VersionVector) -> Order:
    """The causal order of `a` relative to `b` (timestamps ignored)."""
    a_ge, b_ge = a.descends(b), b.descends(a)
    if a_ge and b_ge:
        return Order.EQUAL
    if a_ge:
        return Order.AFTER
    if b_ge:
        return Order.BEFORE
    return Order.CONCURRENT


def _by_dot(sibling: tuple[Dot, Any]) -> Dot:
    return sibling[0]


# No slots: on Python 3.11, `SiblingSet[Content]()` makes typing set __orig_class__, and the __setattr__
# of a frozen *slotted* dataclass then fails with a TypeError (its super() still names the pre-slots class).
@dataclass(frozen=True)
class SiblingSet(Generic[T]):
    """The state of one key at one replica: the clock and the siblings, each with the dot that wrote it.

    Invariants (asserted): siblings sorted by dot, dots distinct, every dot covered by the clock. A dot
    names one write, so two replicas holding the same dot hold the same value.
    """

    clock: VersionVector = EMPTY_VV
    siblings: tuple[tuple[Dot, T], ...] = ()

    def __post_init__(self) -> None:
        previous: Dot | None = None
        for dot, _ in self.siblings:
            assert previous is None or previous < dot, f"siblings not sorted/distinct at {dot}"
            assert self.clock.covers(dot), f"sibling {dot} not covered by the clock"
            previous = dot

    @property
    def is_empty(self) -> bool:
        return not self.siblings

    def context(self) -> VersionVector:
        """What a reader gets back: the clock; a put carrying it supersedes every sibling read."""
        return self.clock

    def values(self) -> tuple[T, ...]:
        return tuple(value for _, value in self.siblings)

    def dots(self) -> tuple[Dot, ...]:
        return tuple(dot for dot, _ in self.siblings)

    def update(self, context: VersionVector, actor: str, value: T, now_ms: int) -> SiblingSet[T]:
        """The coordinating replica `actor` writes `value` with the client's `context`.

        The siblings whose dots the context covers were seen by the client and are replaced; the others
        are concurrent with this write and stay. The new dot's counter is above anything this replica or
        the context knows of `actor`, so the dot is fresh as long as the actor keeps its own entry (see
        `SiblingSet.prune`).
        """
        counter = max(self.clock.get(actor), context.get(actor)) + 1
        assert counter <= INT_MAX, "dot counter overflow"
        kept = [s for s in self.siblings if not context.covers(s[0])]
        clock = self.clock.merge(context.clamp_ts(now_ms)).with_entry(actor, counter, now_ms)
        siblings = sorted([*kept, (Dot(actor, counter), value)], key=_by_dot)
        return SiblingSet(clock, tuple(siblings))

    def sync(self, other: SiblingSet[T]) -> SiblingSet[T]:
        """Merge two replicas of one key (a join: commutative, associative, idempotent).

        A sibling from one side survives iff the other side holds the same dot too, or the other side's
        clock does not cover it; a covered dot missing on the other side was superseded there.
        """
        theirs = {dot for dot, _ in other.siblings}
        mine = {dot for dot, _ in self.siblings}
        kept = [s for s in self.siblings if s[0] in theirs or not other.clock.covers(s[0])]
        # A dot on both sides is taken once, from self (same dot, same value).
        kept += [s for s in other.siblings if s[0] not in mine and not self.clock.covers(s[0])]
        return SiblingSet(self.clock.merge(other.clock), tuple(sorted(kept, key=_by_dot)))

    def prune(self, rule: PruneRule, now_ms: int, local_actor: str) -> SiblingSet[T]:
        """Prune the clock as `prune` does, but never the entry of `local_actor` or of a sibling's actor.

        `local_actor` is the actor of the replica holding this state. Keeping its own entry keeps its
        counter for the key monotonic, so it never issues a dot twice: a reissued dot could be covered by
        a stale replica's clock and that new write dropped at sync (a lost write). Keeping the actors of
        live siblings keeps every dot covered by the clock, so a reader's context can still supersede it.
        """
        keep = {dot.actor for dot, _ in self.siblings}
        keep.add(local_actor)
        return SiblingSet(prune(self.clock, rule, now_ms, keep=keep), self.siblings)


def reconcile(states: Iterable[SiblingSet[T]]) -> SiblingSet[T]:
    """Sync any number of replica states (the empty set is the identity of `sync`)."""
    result: SiblingSet[T] = SiblingSet()
    for state in states:
        result = result.sync(state)
    return result


@dataclass(frozen=True, slots=True)
class PruneRule:
    """Clock pruning thresholds (Riak's small_vclock, big_vclock, young_vclock, old_vclock, in ms)."""

    small: int = 50
    big: int = 50
    young_ms: int = 20_000
    old_ms: int = 86_400_000

    def __post_init__(self) -> None:
        for name in ("small", "big", "young_ms", "old_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, f"expected an integer, got {value!r}")
            if value < 0:
                raise ConfigError(name, f"{value} is below the minimum 0")


def prune(vv: VersionVector, rule: PruneRule, now_ms: int, *, keep: Collection[str] = ()) -> VersionVector:
    """Drop the oldest entries of a large clock, as the paper (section 4.4) and Riak's vclock:prune do.

    Never prunes while the clock has `rule.small` entries or fewer, never an entry younger than
    `rule.young_ms`, never an actor in `keep`. Otherwise removes entries oldest first (ties by actor, so
    replicas agree) while the clock has more than `rule.big` entries or the entry is older than
    `rule.old_ms`.

    Risk: pruning forgets causal knowledge. A sibling whose dot only the pruned entry covered, and which a
    stale replica still holds, comes back as a false sibling when that replica syncs (false concurrency);
    a reader's context also covers less, so a put may keep a sibling the client saw. Neither loses a
    write. Writes can only be lost if an actor's counter restarts, so the replica holding the object
    must keep its own actor (`SiblingSet.prune` does), and the actors of live siblings stay so that
    every sibling remains covered by the clock.
    """
    size = len(vv)
    if size <= rule.small:
        return vv
    candidates = sorted((ts, actor) for actor, _, ts in vv.triples() if actor not in keep)
    dropped: set[str] = set()
    for ts, actor in candidates:
        age_ms = now_ms - ts
        if size <= rule.small or age_ms < rule.young_ms:
            break
        if size <= rule.big and age_ms <= rule.old_ms:
            break
        dropped.add(actor)
        size -= 1
    return vv.without(dropped)


# ---------------------------------------------------------------------------------------------------
# msgpack payloads (the wire layer embeds these) and the opaque client context.


def dot_to_payload(dot: Dot) -> list[Any]:
    return [dot.actor, dot.counter]


def want_actor(value: Any, field: str) -> str:
    actor = codec.want_str(value, field)
    if not 1 <= len(actor) <= ACTOR_CHARS_MAX:
        raise DecodeError(f"{field}: an actor has 1 to {ACTOR_CHARS_MAX} characters, got {len(actor)}")
    return actor


def dot_from_payload(payload: Any, field: str = "dot") -> Dot:
    actor, counter = codec.want_tuple(payload, field, 2)
    return Dot(want_actor(actor, f"{field}.actor"), codec.want_int(counter, f"{field}.counter", 1, INT_MAX))


def vv_to_payload(vv: VersionVector) -> list[Any]:
    if len(vv) > VV_ENTRIES_MAX:
        raise LimitExceeded("version vector entries", len(vv), VV_ENTRIES_MAX)
    return [[actor, counter, ts] for actor, counter, ts in vv.triples()]


def vv_from_payload(payload: Any, field: str = "clock") -> VersionVector:
    items = codec.want_list(payload, field)
    if len(items) > VV_ENTRIES_MAX:
        raise DecodeError(f"{field}: {len(items)} entries, over the limit of {VV_ENTRIES_MAX}")
    triples: list[tuple[str, int, int]] = []
    for i, item in enumerate(items):
        actor, counter, ts = codec.want_tuple(item, f"{field}[{i}]", 3)
        actor = want_actor(actor, f"{field}[{i}].actor")
        if triples and actor <= triples[-1][0]:
            raise DecodeError(f"{field}[{i}]: actors not sorted and distinct at {actor!r}")
        counter = codec.want_int(counter, f"{field}[{i}].counter", 1, INT_MAX)
        triples.append((actor, counter, codec.want_int(ts, f"{field}[{i}].ts_ms", 0, INT_MAX)))
    return VersionVector.from_triples(triples)


def encode_context(vv: VersionVector) -> bytes:
    """The opaque bytes a client carries back on its next put; the empty context is b""."""
    if not vv.entries:
        return b""
    return codec.encode(CONTEXT_TAG, vv_to_payload(vv))


def decode_context(data: bytes) -> VersionVector:
    """The version vector in context bytes; b"" is the empty context. Anything malformed: DecodeError."""
    if isinstance(data, bytes | bytearray | memoryview) and len(data) == 0:
        return EMPTY_VV
    return vv_from_payload(codec.decode(data, CONTEXT_TAG), "context")
