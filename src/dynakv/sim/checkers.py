"""Checkers run after a simulated run has healed and quiesced (ARCHITECTURE.md section 7).

Each reads the nodes' storage engines directly (never through the data path, which would repair what
it reads) and returns a `Check`: its violations, or why it was skipped.

- `acknowledged_adds`: every add the cart workload had acknowledged is in the merged item set of every
  primary replica of its key (paper section 4.5: an acknowledged write survives; sloppy quorum, hinted
  handoff and anti-entropy must bring it to every primary once the faults are gone).
- `antichain`: the siblings of every stored object are mutually concurrent: no sibling was written
  with a context that covered another sibling's dot, nor read another's item (a sibling that should have
  been superseded survived). Structural invariants (dots distinct, covered by the clock) are checked by
  decoding itself.
- `merkle_roots`: the anti-entropy trees of each partition's primaries have equal roots, and each tree
  agrees with a tree built from its node's storage. Skipped while the Node keeps no trees.
- `hints_drained`: no node holds a hint, in its meta space or in its `hints.pending` counter.
- `DotMonitor`: while the run goes on, a dot names one write: no two stored siblings (on any nodes, at
  any of the sampled moments) carry the same dot with different values. A reused dot makes replicas
  take two writes for one, and sync then silently drops one of them (docs/dvv.md: an actor's counter
  must never restart). The end state may no longer show it, so it samples storage during the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dynakv.core.dvv import Dot
from dynakv.core.errors import DecodeError
from dynakv.core.objects import StoredObject, decode_object
from dynakv.core.preflist import primaries
from dynakv.protocol.ae_trees import tree_from_storage
from dynakv.protocol.hints import HINT_PREFIX
from dynakv.sim.simulator import Simulation
from dynakv.sim.workload import CART_BUCKET, CartWorkload, decode_items, merged_items

SHOWN_MAX = 5  # violations of one kind shown per check, so a broken run stays readable


@dataclass(slots=True)
class Check:
    name: str
    violations: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return not self.violations

    def describe(self) -> str:
        if self.skipped is not None:
            return f"{self.name}: skipped ({self.skipped})"
        if self.passed:
            return f"{self.name}: ok"
        shown = self.violations[:SHOWN_MAX]
        more = len(self.violations) - len(shown)
        tail = f"\n    ... and {more} more" if more else ""
        return f"{self.name}: {len(self.violations)} violation(s)\n    " + "\n    ".join(shown) + tail


def stored_object(sim: Simulation, node: str, key: bytes) -> StoredObject | None:
    """The cart `key` as `node` stores it, or None; decoding failures raise (corruption is a bug)."""
    partition = sim.ring.partition_for_key(CART_BUCKET, key)
    data = sim.storage[node].get(partition, CART_BUCKET, key)
    return None if data is None else decode_object(data)


def key_primaries(sim: Simulation, key: bytes) -> tuple[str, ...]:
    partition = sim.ring.partition_for_key(CART_BUCKET, key)
    return primaries(sim.ring, partition, sim.settings.cluster.n_val)


def acknowledged_adds(sim: Simulation, workload: CartWorkload) -> Check:
    check = Check("acknowledged adds on every primary")
    for key, acked in sorted(workload.acknowledged.items()):
        for node in key_primaries(sim, key):
            obj = stored_object(sim, node, key)
            present = frozenset() if obj is None else merged_items(obj.values())
            missing = sorted(acked - present)
            if missing:
                check.violations.append(
                    f"{node} lacks {len(missing)} of {len(acked)} acknowledged adds of {key.decode()}: "
                    f"{', '.join(missing[:8])}"
                )
    return check


def antichain(sim: Simulation, workload: CartWorkload) -> Check:
    check = Check("siblings form an antichain")
    for node in sorted(sim.storage):
        for key in workload.settings.key_names():
            obj = stored_object(sim, node, key)
            if obj is not None:
                check.violations.extend(_antichain_violations(sim, node, key, obj, workload))
    return check


def _antichain_violations(
    sim: Simulation, node: str, key: bytes, obj: StoredObject, workload: CartWorkload
) -> Iterator[str]:
    where = f"{node} {key.decode()}"
    for dot, content in obj.siblings:
        written = workload.written.get(content.value)
        if written is None or written.key != key:
            yield f"{where}: sibling {dot} holds {content.value!r}, which no client put to this key"
            continue
        items = decode_items(content.value)
        for other_dot, other in obj.siblings:
            if other.value == content.value:
                # The same put coordinated twice (a duplicated forward): concurrent twins, no violation.
                continue
            if written.context.covers(other_dot):
                yield f"{where}: sibling {dot} was written with a context covering sibling {other_dot}"
            other_written = workload.written.get(other.value)
            if other_written is None or other_written.item not in items:
                continue
            # A late twin: the same request coordinated again after a twin dot this write covers had
            # carried its value (sim/ledger.py). What this write read, it read from the twin.
            twins = sim.ledger.dots(CART_BUCKET, key, other.value) - {other_dot}
            if not any(written.context.covers(twin) for twin in twins):
                yield f"{where}: sibling {dot} read item {other_written.item} of sibling {other_dot}"


def _trees(node: object) -> Any:
    """The node's anti-entropy TreeStore (`node.ae.trees`), or None while the Node has none."""
    anti_entropy = getattr(node, "ae", None) or getattr(node, "anti_entropy", None)
    return getattr(anti_entropy, "trees", None)


MERKLE_CHECK = "Merkle roots agree across primaries"


def merkle_roots(sim: Simulation, *, against_storage: bool = True) -> Check:
    """Equal roots per partition across its primaries; with `against_storage`, each tree also equal
    to one built afresh from its node's storage (a tree that missed a write would agree with its
    peers' and still be wrong)."""
    check = Check(MERKLE_CHECK)
    running = [node for _, node in sorted(sim.nodes.items()) if node is not None]
    if not running or any(_trees(node) is None for node in running):
        check.skipped = "the Node keeps no anti-entropy trees (node.ae.trees) yet"
        return check
    check.violations.extend(_root_violations(sim, against_storage))
    return check


def _root_violations(sim: Simulation, against_storage: bool) -> Iterator[str]:
    n_val = sim.settings.cluster.n_val
    for partition in range(sim.settings.cluster.partitions):
        roots: dict[str, bytes] = {}
        for name in primaries(sim.ring, partition, n_val):
            trees = _trees(sim.nodes[name])
            if trees is None:
                yield f"partition {partition}: {name} is not running"
                continue
            tree = trees.tree(partition)
            if tree is None:
                yield f"partition {partition}: {name} has no built tree"
                continue
            roots[name] = tree.root()
            if not against_storage:
                continue
            fresh = tree_from_storage(sim.storage[name], partition, trees.segments, trees.branching)
            if fresh.root() != roots[name]:
                yield f"partition {partition}: {name}'s tree disagrees with its own storage"
        if len(set(roots.values())) > 1:
            shown = ", ".join(f"{name} {root.hex()[:12]}" for name, root in sorted(roots.items()))
            yield f"partition {partition}: roots differ: {shown}"


def no_stray_copies(sim: Simulation, workload: CartWorkload) -> Check:
    """Handoff and cleanup finished: no running node keeps a cart it is not a primary of in the final
    ring. A fallback's copy leaves once the primary acknowledged it (hints are never dropped or expired
    in a sweep; a hint whose target left moves to the new primaries), an old owner deletes what it
    handed off once the ring is quiet (ownership_cleanup.py), and neither read repair nor anti-entropy
    writes to a non-primary: a copy left behind is a handoff or a cleanup that never ran. Nodes that
    left or were removed keep their files, as a stopped node does."""
    check = Check("fallbacks kept no copies")
    for key in workload.settings.key_names():
        primaries = set(key_primaries(sim, key))
        for name in sorted(set(sim.storage) - primaries - sim.departed):
            if stored_object(sim, name, key) is not None:
                owners = ", ".join(sorted(primaries))
                check.violations.append(f"{name} still holds {key.decode()}, whose primaries are {owners}")
    return check


def hints_drained(sim: Simulation) -> Check:
    check = Check("hint queues are empty")
    for name in sorted(set(sim.storage) - sim.departed):  # a departed node's files are left as they are
        stored = sim.storage[name].meta_scan(HINT_PREFIX)
        if stored:
            check.violations.append(f"{name} still stores {len(stored)} hint(s), the first {stored[0][0]!r}")
        node = sim.nodes[name]
        pending = 0 if node is None else node.counters["hints.pending"]
        if pending:
            check.violations.append(f"{name} counts {pending} pending hint(s)")
    return check


class DotMonitor:
    """Samples every node's stored carts every `every_ms` of virtual time (see the module docstring)."""

    def __init__(self, sim: Simulation, workload: CartWorkload, every_ms: int = 200) -> None:
        self.sim = sim
        self.keys = workload.settings.key_names()
        self.every_ms = every_ms
        self.stop_ms: int | None = None
        self._values: dict[tuple[bytes, Dot], tuple[str, int, bytes]] = {}
        self._reported: set[tuple[bytes, Dot, bytes]] = set()
        self._check = Check("a dot names one write")

    def start(self) -> None:
        self.sim.at(self.sim.now_ms, "dot monitor samples", self._tick)

    def _tick(self) -> None:
        self.sample()
        if self.stop_ms is None or self.sim.now_ms < self.stop_ms:
            self.sim.at(self.sim.now_ms + self.every_ms, "dot monitor samples", self._tick)

    def sample(self) -> None:
        for node in sorted(self.sim.storage):
            for key in self.keys:
                obj = stored_object(self.sim, node, key)
                for dot, content in () if obj is None else obj.siblings:
                    self._see(node, key, dot, content.value)

    def _see(self, node: str, key: bytes, dot: Dot, value: bytes) -> None:
        first = self._values.setdefault((key, dot), (node, self.sim.now_ms, value))
        if first[2] != value and (key, dot, value) not in self._reported:
            self._reported.add((key, dot, value))  # each other value of a dot is reported once
            self._check.violations.append(
                f"{key.decode()} dot {dot.actor}:{dot.counter} holds {first[2]!r} on {first[0]} at "
                f"{first[1]} ms and {value!r} on {node} at {self.sim.now_ms} ms"
            )

    def check(self) -> Check:
        self.sample()
        return self._check


def run_all(sim: Simulation, workload: CartWorkload, monitor: DotMonitor | None = None) -> list[Check]:
    try:
        return [
            acknowledged_adds(sim, workload),
            antichain(sim, workload),
            merkle_roots(sim),
            hints_drained(sim),
            no_stray_copies(sim, workload),
            *([] if monitor is None else [monitor.check()]),
        ]
    except DecodeError as err:
        return [Check("stored objects decode", [f"a stored object does not decode: {err}"])]
