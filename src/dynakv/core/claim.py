"""Claim: which node owns each of the Q partitions (Riak's claim; paper section 6.2, strategy 3).

With S members and w = min(n_val, Q) (a preference list never walks more than Q partitions):

- Balance, always: every member owns floor(Q/S) or ceil(Q/S) partitions (with S > Q: 0 or 1).
- No tail violation (every w consecutive partitions, circularly, have distinct owners) whenever that is
  feasible, which is exactly when ceil(Q/S) * w <= Q (`tail_feasible`). Necessary: a node owning
  ceil(Q/S) partitions needs w - 1 others after each of its own. Sufficient: `ring.dealt_layout`. So
  n_val = 1 and S >= Q always work, S == n_val works only when S divides Q (Q=64, S=n_val=3 cannot), and
  S > n_val is not enough (Q=8, S=6, n_val=5: a node owns 2 partitions and would need 10). Otherwise the
  claim stays balanced and keeps the candidate with the fewest violating windows (round robin leaves at
  most w - 1 when S >= w; preference lists still find distinct nodes by walking further).
- Zones (`zones`: node -> zone, Z zones): also every w consecutive partitions span min(w, Z) zones,
  guaranteed when `zone_feasible` (conditions in `ring.zone_quota`). For w <= Z that is exactly when it
  is possible: distinct zones imply distinct nodes, and the zones' shares can be chosen so that the
  largest times w is at most Q (equal zones: ceil(Q/Z) * w <= Q; 3 zones and n_val = 3 never fit a
  power-of-two Q; a zone of one node among large ones never fits). For w > Z the condition asks for
  zones repeating with period Z (Z divides Q, each zone owning Q/Z, and in each zone
  ceil(Q/S) * ceil(w/Z) <= Q/Z): sufficient, not necessary. Otherwise best effort: no tail violation
  when `tail_feasible`, and the fewest zone violations among the candidates.
- Determinism: the result depends only on the set of members, zones, Q, n_val and `previous`; ties are
  broken by blake2b of names and positions, never by input order or process state.

A fresh claim walks the member cycle round by round, each round skipping one member and each member's
skips falling in one run of rounds (`ring.node_candidates`): every stretch of the ring lacks one node,
so when a node leaves, its partitions there go to the absent node without a tail violation.

With `previous`, the claim keeps every partition whose owner stays, fills the departed nodes' partitions
with nodes that fit and are below their share (most constrained first), lets new nodes take evenly
spaced partitions from the largest owners, fixes the rest with small window searches and balances with
single moves and chains of moves. Where that fails or moves much more than needed, a beam search over
the last w - 1 owners (S <= n_val + 5: little room) or, with zones, over zones finds a valid layout near
`previous`; the last resort is the fresh layout renamed to agree with `previous`. The candidate with the
fewest violations, then the fewest moved partitions, wins.

Moves measured by the property tests and by seeded sweeps of join/leave sequences (Q 8..1024, S 1..40,
n_val 1..5, both rings feasible), in units of the changed node's share: joins at most 1.12 x
ceil(Q/(S+1)); leaves at most 1.5 x ceil(Q/S) while 2 * n_val or more nodes remain, up to 2.8 x with
fewer, and with exactly n_val left (only round robin is valid) the best round robin, up to 4 x. Such
rings have no room: 5 nodes in round robin with n_val = 3 must move twice the leaver's partitions. With
zones, changing the zones' shares can move 7 to 9 x a node's share when w is close to Z.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dynakv.core.errors import ConfigError
from dynakv.core.ring import (
    Ring,
    check_partitions,
    node_candidates,
    node_layout,
    spread_violations,
    tail_feasible,
    window_violations,
    zone_feasible,
    zone_groups,
    zone_quota,
    zone_violations,
    zoned_layout,
)

__all__ = ["claim", "tail_feasible", "zone_feasible", "zone_violations"]

Layout = list[str]
Entry = tuple[tuple[int, ...], tuple[int, ...]]  # a beam search entry: last labels, label counts


def _rank(*parts: object) -> int:
    """A deterministic pseudo-random tie-break, the same on every node and in every run."""
    text = "\x1f".join(str(part) for part in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class _Plan:
    nodes: tuple[str, ...]  # sorted: the result depends on the set of members only
    partitions: int
    width: int  # the owners of every `width` consecutive partitions must differ
    zone_of: Mapping[str, str]
    zone_width: int  # the zones of every `zone_width` consecutive partitions must differ (1: no rule)
    quota: Mapping[str, int] | None  # set when the zone rule is feasible
    feasible: bool  # whether a balanced layout can keep both rules
    lo: int
    hi: int

    def score(self, layout: Sequence[str]) -> tuple[int, int]:
        """(tail violations, windows of n_val whose zones fall short of min(n_val, zones))."""
        zones = [self.zone_of.get(node, "") for node in layout]
        return window_violations(layout, self.width), spread_violations(zones, self.width)


def _make_plan(members: Sequence[str], partitions: int, n_val: int, zones: Mapping[str, str] | None) -> _Plan:
    check_partitions(partitions)
    if isinstance(n_val, bool) or not isinstance(n_val, int) or n_val < 1:
        raise ConfigError("n_val", f"expected an integer of at least 1, got {n_val!r}")
    if isinstance(members, str) or any(not isinstance(node, str) or not node for node in members):
        raise ConfigError("members", f"expected non-empty node names, got {members!r}")
    if not (nodes := tuple(sorted(set(members)))):
        raise ConfigError("members", "a ring needs at least one member")
    width, lo, hi = min(n_val, partitions), partitions // len(nodes), -(-partitions // len(nodes))
    feasible = tail_feasible(partitions, len(nodes), n_val)
    if zones is None:
        return _Plan(nodes, partitions, width, {}, 1, None, feasible, lo, hi)
    if missing := [node for node in nodes if node not in zones]:
        raise ConfigError("zones", f"no zone given for {', '.join(missing)}")
    zone_of = {node: zones[node] for node in nodes}
    quota = zone_quota(zone_groups(nodes, zone_of), partitions, width)
    zone_width = min(width, len(set(zone_of.values()))) if quota is not None else 1
    return _Plan(nodes, partitions, width, zone_of, zone_width, quota, feasible, lo, hi)


def _fresh(plan: _Plan) -> Layout:
    """A ring from scratch: violation-free and balanced whenever that is feasible."""
    if not plan.zone_of:
        return node_layout(plan.nodes, plan.partitions, plan.width)
    groups = zone_groups(plan.nodes, plan.zone_of)
    if plan.quota is not None:
        return zoned_layout(groups, plan.partitions, plan.width, plan.quota)
    # Best effort: layouts keep the cyclic order of nodes, so one node per zone in turn spreads zones.
    depth = max(len(members) for members in groups.values())
    interleaved = [members[i] for i in range(depth) for members in groups.values() if i < len(members)]
    candidates = node_candidates(interleaved, plan.partitions, plan.width)
    candidates += node_candidates(plan.nodes, plan.partitions, plan.width)
    return min(candidates, key=plan.score)


# --- incremental claim: start from the previous ring and change as little as possible ---------------


class _Draft:
    """A layout being repaired in place: owners (None: a hole left by a departed node) and counts."""

    def __init__(self, plan: _Plan, owners: Sequence[str]) -> None:
        self.plan, self.size = plan, plan.partitions
        kept = set(plan.nodes)
        self.owners: list[str | None] = [owner if owner in kept else None for owner in owners]
        self.counts = dict.fromkeys(plan.nodes, 0)
        for owner in self.owners:
            if owner is not None:
                self.counts[owner] += 1

    def fitting(self, p: int) -> list[str]:
        """The nodes that could own partition p without breaking a window around it."""
        owners, size, plan = self.owners, self.size, self.plan
        near = {owners[(p + d) % size] for d in range(1 - plan.width, plan.width) if d}
        zones = {plan.zone_of.get(owners[(p + d) % size] or "") for d in range(1, plan.zone_width)}
        zones |= {plan.zone_of.get(owners[(p - d) % size] or "") for d in range(1, plan.zone_width)}
        return [node for node in plan.nodes if node not in near and plan.zone_of.get(node, "") not in zones]

    def fits(self, p: int, node: str) -> bool:
        return node in self.fitting(p)

    def assign(self, p: int, node: str) -> None:
        old = self.owners[p]
        if old is not None:
            self.counts[old] -= 1
        self.owners[p] = node
        self.counts[node] += 1

    def bad(self, p: int) -> bool:
        owner = self.owners[p]
        return owner is None or not self.fits(p, owner)

    def excess(self, count: int) -> int:
        return max(0, self.plan.lo - count) + max(0, count - self.plan.hi)

    def imbalance(self) -> int:
        return sum(self.excess(count) for count in self.counts.values())


def _fill_holes(draft: _Draft) -> None:
    """Give each hole to a node that may grow and fits there, the most constrained holes first."""
    plan, counts = draft.plan, draft.counts
    holes = [p for p in range(draft.size) if draft.owners[p] is None]
    options = {p: len(draft.fitting(p)) for p in holes}
    for p in sorted(holes, key=lambda p: (options[p], p)):
        if fitting := [node for node in draft.fitting(p) if counts[node] < plan.hi]:
            draft.assign(p, min(fitting, key=lambda n: (counts[n] >= plan.lo, counts[n], _rank(n, p))))


def _take(draft: _Draft) -> None:
    """Nodes below their share (new members) take partitions near evenly spaced targets, from nodes
    above the share where possible, wherever they break no window."""
    plan, size, counts = draft.plan, draft.size, draft.counts
    for node in sorted(plan.nodes, key=lambda n: (counts[n], n)):
        need = plan.lo - counts[node]
        start = _rank(node) % size
        for target in [(start + j * size // need) % size for j in range(max(need, 0))]:
            best: tuple[tuple[bool, int, int], int] | None = None
            for r in range(max(plan.width, size // (2 * need)) + 1):
                for p in sorted({(target + r) % size, (target - r) % size}):
                    owner = draft.owners[p]
                    if owner is None or owner == node or counts[owner] <= plan.lo:
                        continue
                    key = (counts[owner] <= plan.hi, r, _rank(node, p))
                    if (best is None or key < best[0]) and draft.fits(p, node):
                        best = (key, p)
            if best is not None:
                draft.assign(best[1], node)


def _window_search(
    draft: _Draft, center: int, half: int, changes: int
) -> tuple[tuple[int, int, int], Layout] | None:
    """Re-decide the owners of partitions center-half..center+half, changing at most `changes`, so
    that no window touching them breaks a rule; the best answer by (imbalance after, changes, rank)."""
    plan, size, owners, zone_of = draft.plan, draft.size, draft.owners, draft.plan.zone_of
    reach, length = max(plan.width, plan.zone_width) - 1, 2 * half + 1
    if length + 2 * reach > size:
        return None
    first = center - half
    left = [owners[(first - reach + i) % size] for i in range(reach)]
    right = [owners[(first + length + i) % size] for i in range(reach)]
    current = [owners[(first + i) % size] for i in range(length)]
    pool = sorted(plan.nodes, key=lambda n: (draft.counts[n], _rank(n, center)))[:10]  # the ten smallest
    pool += sorted({n for n in current if n is not None and n not in pool})
    base, chosen = draft.imbalance(), list[str]()
    best: list[tuple[tuple[int, int, int], Layout]] = []

    def clash(other: str | None, node: str, d: int) -> bool:
        return other is not None and (
            (other == node and d < plan.width) or (d < plan.zone_width and zone_of[other] == zone_of[node])
        )

    def allowed(i: int, node: str) -> bool:
        before = (left + chosen)[-reach:] if reach else []
        if any(clash(other, node, d) for d, other in enumerate(reversed(before), start=1)):
            return False
        return not any(clash(other, node, length - i + j) for j, other in enumerate(right))

    def search(i: int, used: int, delta: dict[str, int]) -> None:
        if i == length:
            after = base + sum(
                draft.excess(draft.counts[n] + d) - draft.excess(draft.counts[n]) for n, d in delta.items()
            )
            key = (after, used, _rank(*chosen))
            if not best or key < best[0][0]:
                best[:] = [(key, list(chosen))]
            return
        now = current[i]
        for node in ([now] if now is not None else []) + [n for n in pool if n != now]:
            cost = used + (node != now)
            if cost > changes or not allowed(i, node):
                continue
            step = dict(delta)
            if node != now:
                step[node] = step.get(node, 0) + 1
                if now is not None:
                    step[now] = step.get(now, 0) - 1
            chosen.append(node)
            search(i + 1, cost, step)
            chosen.pop()

    search(0, 0, {})
    return best[0] if best else None


def _fix_at(draft: _Draft, center: int) -> bool:
    """Apply the smallest window change around `center` that leaves every window valid, growing the
    window and the number of changes until one works."""
    for half in range(1, draft.plan.width + 2):
        for changes in range(1, 4):
            found = _window_search(draft, center, half, changes)
            if found is not None:
                for i, node in enumerate(found[1]):
                    if draft.owners[(center - half + i) % draft.size] != node:
                        draft.assign((center - half + i) % draft.size, node)
                return True
    return False


def _repair(draft: _Draft) -> None:
    """Fill the holes left and fix broken windows one window at a time, then move partitions until the
    counts balance. Broken windows are only chased when a valid layout exists."""
    size, reach = draft.size, 2 * max(draft.plan.width, draft.plan.zone_width)
    bad = draft.bad if draft.plan.feasible else (lambda p: draft.owners[p] is None)
    todo, stuck = [p for p in range(size) if bad(p)], set()
    while todo:
        p = heapq.heappop(todo)
        if p not in stuck and bad(p):
            if _fix_at(draft, p):
                for q in [(p + d) % size for d in range(-reach, reach + 1)]:
                    if q not in stuck and bad(q):
                        heapq.heappush(todo, q)
            else:
                stuck.add(p)
    for _ in range(size):
        if draft.imbalance() == 0 or not (_pass_on(draft) or _chain(draft)):
            return


def _pass_on(draft: _Draft) -> bool:
    """One sweep of single moves that lower the imbalance: a partition passes from a node over its
    share (or above the floor, to one under it) to a node where it fits. Whether any move was made."""
    plan, counts, found = draft.plan, draft.counts, False
    for p in range(draft.size):
        giver = draft.owners[p]
        if giver is None or counts[giver] <= plan.lo:
            continue
        fitting = [
            node
            for node in draft.fitting(p)
            if counts[node] < plan.hi and (counts[giver] > plan.hi or counts[node] < plan.lo)
        ]
        if fitting:
            draft.assign(p, min(fitting, key=lambda n: (counts[n], _rank(n, p))))
            found = True
    return found


def _chain(draft: _Draft) -> bool:
    """The shortest chain of moves that passes one partition from a node over its share to one under
    it, each node on the way giving one partition to the next where that one fits."""
    plan, counts, owners = draft.plan, draft.counts, draft.owners
    givers = [n for n in plan.nodes if counts[n] > plan.hi] or [n for n in plan.nodes if counts[n] > plan.lo]
    takers = [n for n in plan.nodes if counts[n] < plan.lo] or [n for n in plan.nodes if counts[n] < plan.hi]
    if not takers or not givers:
        return False
    offers: dict[str | None, list[tuple[int, str]]] = {}
    for p in range(draft.size):
        offers.setdefault(owners[p], []).extend((p, node) for node in draft.fitting(p))
    came: dict[str, tuple[int, str]] = {}
    frontier, seen = list(givers), set(givers)
    while frontier and not any(node in came for node in takers):
        reached = []
        for node in frontier:
            for p, other in offers.get(node, []):
                if other not in seen:
                    seen.add(other)
                    came[other] = (p, node)
                    reached.append(other)
        frontier = reached
    end, undo = next((node for node in takers if node in came), None), []
    while end is not None and end not in givers:
        p, before = came[end]
        undo.append((p, owners[p] or ""))
        draft.assign(p, end)
        end = before
    if any(draft.bad(p) for p, _ in undo):
        for p, owner in reversed(undo):  # two moves of the chain landed too close together
            draft.assign(p, owner)
        return False
    return bool(undo)


def _nearest(
    labels: Sequence[str], old: Sequence[str | None], n: int, caps: Sequence[int], room: int, *, exact: bool
) -> Layout | None:
    """A label (a node, or a zone) for each partition, every n consecutive ones distinct, label i used
    at most caps[i] times and at most `room` labels reaching their cap, close to `old`: a beam search
    over the last n-1 labels from a window `old` already has right; None where it would be slow. (With
    n + 1 labels a partition's label is the one n back or the one missing before it: only changes far
    along the ring close a hole, which local repairs cannot find.)"""
    size, count = len(old), len(labels)
    if not 2 <= n <= count <= n + 5:
        return None
    index_of = {label: i for i, label in enumerate(labels)}
    was = [index_of.get(label or "", -1) for label in old]
    start = next((i for i in range(size) if len({was[(i + j) % size] for j in range(n)} - {-1}) == n), 0)
    seed = [was[(start + j) % size] for j in range(n)]
    seed = seed if len(set(seed) - {-1}) == n else list(range(n))
    # A beam entry carries its path's label counts: caps are hard, so a finished path is balanced, and
    # a label ahead of an even pace pays 2 per partition so that paths do not paint themselves into a
    # corner. Entries differ by their last labels, and with `exact` by their counts too (few labels:
    # keep more paths apart). The last n-1 steps wrap around onto the seed window again.
    changed = sum(was[(start + j) % size] != seed[j] for j in range(n))
    counts, pace = tuple(map(seed.count, range(count))), sum(caps)
    beam = {(tuple(seed[1:]), counts if exact else ()): (changed, counts)}
    trail: list[dict[Entry, Entry]] = []
    for k in range(n, size + n - 1):
        forced, here = (seed[k - size], -2) if k >= size else (-1, was[(start + k) % size])
        after: dict[Entry, tuple[int, tuple[int, ...]]] = {}
        came: dict[Entry, Entry] = {}
        for entry, (so_far, held) in beam.items():
            full = sum(h >= c for h, c in zip(held, caps, strict=True))
            for x in [forced] if forced >= 0 else range(count):
                total = so_far + (here > -2 and (x != here) + 2 * (held[x] * pace >= k * caps[x]))
                grows = forced < 0 and (held[x] >= caps[x] or (held[x] + 1 == caps[x] and full >= room))
                grown = held if forced >= 0 else (*held[:x], held[x] + 1, *held[x + 1 :])
                key = ((*entry[0][1:], x), grown if exact else ())
                if x not in entry[0] and not grows and (key not in after or total < after[key][0]):
                    after[key], came[key] = (total, grown), entry
        beam = {key: after[key] for key in sorted(after, key=lambda key: (after[key][0], key))[:256]}
        trail.append(came)
    floors = [cap - (room < count) for cap in caps]
    short = {
        key: sum(max(0, f - h) for f, h in zip(floors, held, strict=True)) for key, (_, held) in beam.items()
    }
    if not short:
        return None
    entry = min(beam, key=lambda key: (short[key], beam[key][0], key))
    layout = [labels[seed[(p - start) % size]] if (p - start) % size < n else "" for p in range(size)]
    for k in range(size + n - 2, n - 1, -1):
        if k < size:
            layout[(start + k) % size] = labels[entry[0][-1]]
        entry = trail[k - n][entry]
    return layout


def _zoned_rebuild(plan: _Plan, previous: Ring) -> Layout | None:
    """With zone rules and n_val <= zones, distinct zones already make distinct owners: find the zone
    sequence nearest to the previous ring's, each zone with its share, then keep each previous owner
    where its zone still is, up to its target count, and give the rest to the nodes of the zone."""
    if plan.quota is None or plan.zone_width < plan.width:
        return None
    groups, held = zone_groups(plan.nodes, plan.zone_of), previous.counts()
    caps = [len(members) * plan.lo + plan.quota[zone] for zone, members in groups.items()]
    old = [plan.zone_of.get(owner) for owner in previous.owners]
    zones = _nearest(list(groups), old, plan.width, caps, len(caps), exact=True)
    if zones is None:
        return None
    target = {}
    for zone, members in groups.items():
        ranked = sorted(members, key=lambda node: (-held.get(node, 0), node))
        target.update({node: plan.lo + (i < plan.quota[zone]) for i, node in enumerate(ranked)})
    layout = []
    for owner, zone in zip(previous.owners, zones, strict=True):
        keep = plan.zone_of.get(owner) == zone and target[owner] > 0
        layout.append(owner if keep else "")
        target[owner] = target.get(owner, 0) - keep
    for p, zone in enumerate(zones):
        if not layout[p]:
            layout[p] = min(groups[zone], key=lambda node: (-target[node], node))
            target[layout[p]] -= 1
    return layout


def _rebuild(plan: _Plan, owners: Sequence[str], fill: bool) -> Layout | None:
    """`owners` with the fewest changes that balance it and keep its windows valid (fill the holes of
    departed nodes and let new nodes take their share first when `fill`); None if repairs fall short."""
    draft = _Draft(plan, owners)
    if fill:
        _fill_holes(draft)
        _take(draft)
    _repair(draft)
    layout = [owner for owner in draft.owners if owner is not None]
    return layout if len(layout) == draft.size and not draft.imbalance() else None


def _aligned(layout: Layout, previous: Ring, plan: _Plan) -> Layout:
    """`layout` with its nodes renamed (each within its zone) so that it agrees with `previous` on as
    many partitions as a greedy matching finds. Renaming keeps windows valid and counts balanced."""
    agree: dict[tuple[str, str], int] = {}
    for mine, theirs in zip(layout, previous.owners, strict=True):
        if theirs in plan.nodes and plan.zone_of.get(mine) == plan.zone_of.get(theirs):
            agree[mine, theirs] = agree.get((mine, theirs), 0) + 1
    rename: dict[str, str] = {}
    for (mine, theirs), _ in sorted(agree.items(), key=lambda item: (-item[1], item[0])):
        if mine not in rename and theirs not in rename.values():
            rename[mine] = theirs
    for zone in sorted({plan.zone_of.get(node, "") for node in plan.nodes}):
        same = [node for node in plan.nodes if plan.zone_of.get(node, "") == zone]
        free = [node for node in same if node not in rename.values()]
        rename.update(zip([node for node in same if node not in rename], free, strict=True))
    return [rename[node] for node in layout]


def claim(
    members: Sequence[str],
    partitions: int,
    n_val: int,
    *,
    zones: Mapping[str, str] | None = None,
    previous: Ring | None = None,
) -> Ring:
    """The owners of `partitions` partitions among `members`; see the module docstring for what is
    guaranteed. With `previous`, members it lacks join, its owners that are not members leave, and the
    new ring keeps as many previous owners as it can. Bad arguments raise `ConfigError`."""
    plan = _make_plan(members, partitions, n_val, zones)
    fresh = _fresh(plan)
    if previous is None:
        return Ring(partitions, tuple(fresh))
    if previous.partitions != partitions:
        raise ConfigError("partitions", f"{partitions} is not the previous ring's {previous.partitions}")

    def cost(layout: Layout) -> tuple[tuple[int, int], int]:
        return plan.score(layout), sum(a != b for a, b in zip(layout, previous.owners, strict=True))

    candidates = [_rebuild(plan, previous.owners, fill=True), _aligned(fresh, previous, plan)]
    # No claim moves fewer partitions than the departed nodes owned, or than new nodes need.
    held, nodes = previous.counts(), plan.nodes
    least = max(
        partitions - sum(held.get(n, 0) for n in nodes), sum(max(0, plan.lo - held.get(n, 0)) for n in nodes)
    )
    if candidates[0] is None or cost(candidates[0])[1] > least * 5 // 4:
        room = partitions % len(nodes) or len(nodes)
        caps = [plan.hi] * len(nodes)
        nearest = (
            None
            if plan.zone_width > 1
            else _nearest(nodes, previous.owners, plan.width, caps, room, exact=False)
        )
        candidates += [nearest and _rebuild(plan, nearest, fill=False), _zoned_rebuild(plan, previous)]
    best: Layout = min((c for c in candidates if c is not None), key=cost)
    return Ring(partitions, tuple(best))
