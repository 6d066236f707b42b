"""The Node's anti-entropy wiring and its answers to the admin service requests (admin_messages.py).

Kept out of node.py, which only dispatches: this module builds the `AntiEntropy` of a node over its
`TrackedStorage` (so every write path keeps the Merkle trees current, and anti-entropy's own merges are
not recorded twice) and answers repair and status requests from the node's state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Set

from dynakv.core.cluster_state import ClusterState
from dynakv.core.errors import ConfigError
from dynakv.core.membership import MemberState
from dynakv.core.ring import Ring
from dynakv.protocol import replica
from dynakv.protocol.admin_messages import (
    AdminReply,
    AdminRequest,
    MemberStatus,
    RepairRequest,
    RepairStatus,
    StatusReply,
    StatusRequest,
)
from dynakv.protocol.ae_peer import Merge
from dynakv.protocol.anti_entropy import AeSettings, AntiEntropy, RepairProgress
from dynakv.protocol.cluster import moves_pending
from dynakv.protocol.data_path import Settings
from dynakv.protocol.messages import Failure, FailureKind
from dynakv.protocol.ports import StorageError
from dynakv.protocol.tracked_storage import TrackedStorage

# The counters other parts of the node keep current (hinted handoff, transfers).
HINTS_PENDING = "hints.pending"
TRANSFERS_ACTIVE = "transfers.active"


def ae_settings(settings: Settings) -> AeSettings:
    """The operator's knobs (Timing and Limits, so node.json sets them) as anti-entropy settings."""
    timing, limits = settings.timing, settings.limits
    return AeSettings(
        interval_ms=timing.anti_entropy_interval_ms,
        timeout_ms=timing.anti_entropy_timeout_ms,
        rebuild_after_ms=timing.anti_entropy_tree_rebuild_ms,
        max_concurrent=limits.anti_entropy_concurrent_max,
        build_entries_per_tick=limits.anti_entropy_build_entries_per_tick,
    )


def bucket_merge(storage: TrackedStorage, last_write_wins: Callable[[bytes], bool]) -> Merge:
    """Anti-entropy's merge: the replicas' DVV merge (replica.merge_local) with the bucket's
    last_write_wins, reporting the bytes stored before and after. The two extra reads go to the engine
    itself (merge_local's own read is the one the wrapper remembers for its write); they are the price
    of reporting bytes (merge_local returns the object) and are paid on repairs only."""

    def merge(
        partition: int, bucket: bytes, key: bytes, incoming: bytes
    ) -> tuple[bytes | None, bytes | None]:
        old = storage.engine.get(partition, bucket, key)
        lww = last_write_wins(bucket)
        replica.merge_local(storage, partition, bucket, key, incoming, durable=False, lww=lww)
        return old, storage.engine.get(partition, bucket, key)

    return merge


def build_anti_entropy(
    name: str,
    ring: Ring,
    storage: TrackedStorage,
    settings: Settings,
    counters: Counter[str],
    *,
    last_write_wins: Callable[[bytes], bool],
) -> AntiEntropy:
    """The node's anti-entropy, its trees fed by `storage`'s change reports.

    Limitation: trees and exchanges use the cluster's n_val. A bucket with a larger n_val has replicas
    on nodes that are not among the cluster-n_val primaries of its partition; those extra replicas are
    not compared (read repair and hinted handoff still reach them). A smaller n_val is covered: its
    primaries are a prefix of the cluster's."""
    ae = AntiEntropy(
        name,
        ring,
        settings.cluster.n_val,
        storage,
        bucket_merge(storage, last_write_wins),
        settings=ae_settings(settings),
        limits=settings.limits,
        counters=counters,
        merge_updates_trees=True,  # the merge writes through `storage`, which reports to the trees
    )
    storage.on_change = ae.on_write
    try:
        ae.start()
    except StorageError:
        # The engine could not list its partitions: keep trees for those this node is a primary of
        # (a fallback partition gets its tree at its next write); the builds retry on their own.
        counters["ae.storage_failed"] += 1
        for partition in ae.my_partitions():
            ae.trees.track(partition)
    return ae


def _repair_status(progress: RepairProgress) -> RepairStatus:
    return RepairStatus(
        progress.partitions_total,
        progress.partitions_done,
        progress.keys_repaired,
        progress.exchanges_failed,
        progress.finished,
    )


def _member_states(state: ClusterState | None, ring: Ring) -> dict[str, str]:
    """Each member's state (the ring's owners valid when there is no cluster state), removed ones out."""
    states = dict.fromkeys(ring.members, MemberState.VALID.value)
    if state is not None:
        states.update({m.name: m.state.value for m in state.members.values()})
    return {n: s for n, s in sorted(states.items()) if s != MemberState.REMOVED.value}


def status(
    name: str,
    ring: Ring,
    ae: AntiEntropy,
    counters: Counter[str],
    down: Set[str],
    *,
    state: ClusterState | None = None,
) -> StatusReply:
    counts = ring.counts()
    members = []
    for member, member_state in _member_states(state, ring).items():
        reachable = member == name or member not in down
        shown = member_state if reachable or member_state != MemberState.VALID.value else "down"
        members.append(MemberStatus(member, reachable, counts.get(member, 0), shown))
    return StatusReply(
        name,
        tuple(members),
        hints_pending=max(0, counters[HINTS_PENDING]),
        transfers_pending=0 if state is None else moves_pending(state),
        partitions=ring.partitions,
        n_val=ae.n_val,
        trees_building=len(ae.trees.building()),
        transfers_active=max(0, counters[TRANSFERS_ACTIVE]),
    )


def answer_admin(
    request: AdminRequest,
    name: str,
    ae: AntiEntropy,
    counters: Counter[str],
    down: Set[str],
    *,
    state: ClusterState | None = None,
) -> AdminReply | Failure:
    match request:
        case RepairRequest(partition):
            try:
                return _repair_status(ae.repair(partition))
            except ConfigError as err:
                return Failure(FailureKind.BAD_REQUEST, str(err), "partition")
        case StatusRequest():
            return status(name, ae.ring, ae, counters, down, state=state)
    return _repair_status(ae.progress())
