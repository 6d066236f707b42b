"""The node: one sans-IO state machine, `handle(event, now_ms) -> list[Effect]`, for the data path.

The node coordinates the gets, puts and deletes that clients send it, answers its peers' replica
messages, and keeps the table of requests in flight with their deadlines. It never touches a socket
or a clock: the driver (asyncio runtime or simulator) feeds it events and executes the effects in
order. Storage is a synchronous port, so a reply is emitted only after the write has returned.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ClusterState
from dynakv.core.ring import Ring
from dynakv.protocol import node_admin
from dynakv.protocol.admin_messages import RepairRequest, RepairStatusRequest, StatusRequest
from dynakv.protocol.ae_peer import AeMessage
from dynakv.protocol.availability import Availability, AvailabilityMessage
from dynakv.protocol.cluster import ClusterWiring, live_members
from dynakv.protocol.cluster_admin import ClusterAdmin
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitRequest,
    ClusterPeerMessage,
    ClusterPlanRequest,
    ClusterStageRequest,
    ClusterTransfersRequest,
)
from dynakv.protocol.data_path import DataPath, Settings
from dynakv.protocol.effects import Effect, Reply
from dynakv.protocol.events import (
    ClientRequestReceived,
    Event,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    Tick,
)
from dynakv.protocol.gossip import GossipSettings, JoinIntent
from dynakv.protocol.gossip_messages import GossipDigest, GossipState
from dynakv.protocol.listing import Listings
from dynakv.protocol.messages import (
    BucketPropsDigest,
    BucketPropsPush,
    DeleteRequest,
    Failure,
    FailureKind,
    GetRequest,
    KeyListReply,
    KeyListRequest,
    ListBucketsRequest,
    ListKeysRequest,
    PeerMessage,
    PreflistRequest,
    PutRequest,
    ServiceRequest,
)
from dynakv.protocol.notices import Notices
from dynakv.protocol.ownership import Ownership
from dynakv.protocol.pending import ClientOrigin
from dynakv.protocol.ports import StorageEngine
from dynakv.protocol.preflists import preflist_reply
from dynakv.protocol.props_service import PropsService
from dynakv.protocol.tracked_storage import TrackedStorage
from dynakv.protocol.transfer_progress import outbound_progress
from dynakv.protocol.transfer_progress_messages import Duty, OutboundProgress


def default_rng(name: str) -> random.Random:
    """A generator seeded from the node's name: deterministic, different per node (drivers that want
    fresh randomness hand in their own)."""
    return random.Random(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big"))


class Node:
    """`name` is the node's cluster name; `actor` the id it mints dots under (see data_path.py).

    `cluster` is the cluster state to start from when the storage holds none: a `Ring` stands for a
    statically configured cluster (`cluster_state.from_ring`). `rng` drives gossip's choice of peers;
    `seeds` and `join` are gossip's (protocol/gossip.py)."""

    def __init__(
        self,
        name: str,
        actor: str,
        cluster: Ring | ClusterState,
        storage: StorageEngine,
        settings: Settings | None = None,
        *,
        rng: random.Random | None = None,
        seeds: Sequence[str] = (),
        join: JoinIntent | None = None,
    ) -> None:
        self.name = name
        # Every write path below gets the wrapper, so the anti-entropy trees see every data change.
        self.storage = storage = TrackedStorage(storage)
        self.counters: Counter[str] = Counter()
        settings = settings or Settings()
        initial = cs.from_ring(cluster) if isinstance(cluster, Ring) else cluster
        self.cluster = ClusterWiring(
            name,
            initial,
            storage,
            rng=rng or default_rng(name),
            settings=GossipSettings.from_timing(settings.timing),
            counters=self.counters,
            seeds=seeds,
            join=join,
        )
        ring = self._ring_of(self.cluster.state, settings.cluster.partitions)
        # Loads the bucket props persisted in storage, so a restarted node serves them at once.
        self.props = PropsService(name, ring, storage, settings, self.counters)
        self.data = DataPath(
            name, actor, ring, storage, settings=settings, counters=self.counters, props=self.props.table
        )
        self.listings = Listings(self.data)
        self.ae = node_admin.build_anti_entropy(
            name, ring, self.storage, settings, self.counters, last_write_wins=self._last_write_wins
        )
        # Lines for the operator's log (a hint dropped at a bound): the driver drains them after each
        # handle with `take_notices`.
        self.notices = Notices(self.counters)
        # Failure detection, sloppy quorum's view of who is down, and hinted handoff (hints are
        # rebuilt from storage here, so a restarted node replays what it held).
        self.availability = Availability(
            ring, storage, settings=settings, data=self.data, listings=self.listings, notices=self.notices
        )
        known = self.cluster.state.ring is not None
        self.availability.set_members(live_members(self.cluster.state, name), ring, known)
        self.cluster.on_change = self._on_cluster_change
        self.cluster_admin = ClusterAdmin(name, self.cluster, settings.cluster.n_val, self._local_transfers)
        handoff = self.availability.handoff
        delay_ms = settings.timing.ownership_cleanup_delay_ms
        self.ownership = Ownership(
            name, storage, handoff, settings.cluster.n_val, self.counters, cleanup_delay_ms=delay_ms
        )
        handoff.on_finished = self.ownership.on_finished
        self.ownership.on_state(self.cluster.state)
        storage.on_change = self._on_data_change

    def handle(self, event: Event, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        match event:
            case MessageReceived(src, msg):
                assert src != self.name, "a node never sends to itself"
                self.availability.heard(src, now_ms, out)
                self._on_peer_message(src, msg, now_ms, out)
            case ClientRequestReceived(ref, request):
                if isinstance(request, GetRequest | PutRequest | DeleteRequest):
                    self._on_data_request(ref, request, now_ms, out)
                else:
                    self._on_service_request(ref, request, now_ms, out)
            case Tick():
                self.data.on_tick(now_ms, out)
                self.listings.on_tick(now_ms, out)
                # After the deadlines above: a request due now times out rather than fails on a view change.
                self.availability.on_tick(now_ms, out)
                self.props.on_tick(now_ms, self.data.down, out)
                self.ae.on_tick(now_ms, out, down=self.data.down)
                self.cluster.on_tick(now_ms, self.data.down, out)
                self.cluster_admin.on_tick(now_ms, self.data.down, out)
                self.ownership.on_tick(now_ms, self.data.down, self.cluster, out)
            case PeerConnected(node):
                self.availability.link_made(node, now_ms, out)
            case PeerDisconnected(node):
                self.availability.link_lost(node, now_ms, out)
        if self.ownership.pending_out():
            out.extend(self.ownership.take_outbox())  # writes forwarded to new owners (ownership.py)
        self.storage.end_turn()  # values read this turn may change behind the node's back before the next
        return out

    def _on_data_request(
        self, ref: int, request: GetRequest | PutRequest | DeleteRequest, now_ms: int, out: list[Effect]
    ) -> None:
        if self.cluster.state.ring is None:
            # Started with a seed and not yet holding the cluster's state: it knows no owners.
            out.append(Reply(ref, Failure(FailureKind.UNAVAILABLE, "this node has not joined a cluster yet")))
            return
        self.data.on_client_request(ClientOrigin(ref), request, now_ms, out)

    def _on_peer_message(self, src: str, msg: PeerMessage, now_ms: int, out: list[Effect]) -> None:
        if isinstance(msg, AvailabilityMessage):
            self.availability.on_message(src, msg, now_ms, out)
        elif isinstance(msg, KeyListRequest | KeyListReply):
            self.listings.on_message(src, msg, now_ms, out)
        elif isinstance(msg, BucketPropsPush | BucketPropsDigest):
            self.props.on_message(src, msg, out)
        elif isinstance(msg, AeMessage):
            self.ae.on_message(src, msg, now_ms, out)
        elif isinstance(msg, GossipDigest | GossipState):
            self.cluster.on_message(src, msg, out)
        elif isinstance(msg, ClusterPeerMessage):
            self.cluster_admin.on_message(src, msg, now_ms, out)
        else:
            self.data.on_message(src, msg, now_ms, out)

    def _on_data_change(
        self, partition: int, bucket: bytes, key: bytes, old: bytes | None, new: bytes | None
    ) -> None:
        self.ae.on_write(partition, bucket, key, old, new)
        self.ownership.on_write(partition, bucket, key, old, new)

    def _ring_of(self, state: ClusterState, partitions: int) -> Ring:
        """The ring the data path uses: the state's, or (a node that has not found its cluster yet)
        one that names this node owner of everything, so it serves nothing but itself."""
        if state.ring is not None:
            return state.ring
        return Ring(partitions, (self.name,) * partitions)

    def _on_cluster_change(self, state: ClusterState) -> None:
        """The ring or the member list changed (gossip, a commit, a flip): every component follows."""
        ring = self._ring_of(state, self.data.cluster.partitions)
        self.data.ring = ring
        self.props.ring = ring
        self.ae.set_ring(ring)
        self.availability.set_members(live_members(state, self.name), ring, state.ring is not None)

    def _local_transfers(self) -> tuple[tuple[OutboundProgress, ...], tuple[Duty, ...]]:
        """This node's part of `dynakv cluster transfers`: its transfers under way, its duties done."""
        return outbound_progress(self.availability.handoff.manager.status()), self.ownership.sent()

    def take_notices(self) -> list[str]:
        """The log lines added since the last call (the driver logs them at WARNING)."""
        return self.notices.take()

    def _last_write_wins(self, bucket: bytes) -> bool:
        return self.data.props_for(bucket).last_write_wins

    def _on_service_request(self, ref: int, request: ServiceRequest, now_ms: int, out: list[Effect]) -> None:
        if isinstance(request, ListKeysRequest | ListBucketsRequest):
            self.listings.start(ref, request, now_ms, out)
            return
        if isinstance(
            request, ClusterStageRequest | ClusterPlanRequest | ClusterCommitRequest | ClusterTransfersRequest
        ):
            self.cluster_admin.on_request(ref, request, now_ms, self.data.down, out)
            return
        if isinstance(request, PreflistRequest):
            out.append(Reply(ref, preflist_reply(self.data, request)))
            return
        if isinstance(request, RepairRequest | RepairStatusRequest | StatusRequest):
            reply = node_admin.answer_admin(
                request, self.name, self.ae, self.counters, self.data.down, state=self.cluster.state
            )
            out.append(Reply(ref, reply))
            return
        # What is left is a bucket props request (GetBucketProps, SetBucketProps, ResetBucketProps).
        # The reply goes first: the pushes to peers that a change makes follow it in `out`.
        pushes: list[Effect] = []
        out.append(Reply(ref, self.props.on_request(request, now_ms, pushes)))
        out.extend(pushes)
