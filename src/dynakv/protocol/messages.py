"""The messages of the data path: client requests and replies, and node-to-node replica messages.

Messages are nouns (ARCHITECTURE.md section 3). Objects travel between nodes as their stored encoding
(`objects.encode_object`): a replica answers a get with the bytes it read from disk, untouched, and the
coordinator decodes once. Requests from clients carry bucket and key as bytes and quorums as Riak gives
them (an integer or "one", "quorum", "all"; None means the bucket's default).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from dynakv.core.config import Quorum
from dynakv.core.objects import Content
from dynakv.protocol.admin_messages import AdminReply, AdminRequest
from dynakv.protocol.cluster_admin_messages import ClusterPeerMessage, ClusterReply, ClusterRequest
from dynakv.protocol.gossip_messages import GossipDigest, GossipState
from dynakv.protocol.liveness import Ping, Pong

# ---------------------------------------------------------------------------------------------------
# Client requests (native protocol; the HTTP API maps onto the same ones)


@dataclass(frozen=True, slots=True)
class GetRequest:
    bucket: bytes
    key: bytes
    r: Quorum | None = None
    pr: Quorum | None = None
    timeout_ms: int | None = None
    # Riak's: None takes the bucket's. notfound_ok counts a replica's not-found toward r; basic_quorum
    # answers not found as soon as a majority of the replicas said so (with notfound_ok false).
    basic_quorum: bool | None = None
    notfound_ok: bool | None = None


@dataclass(frozen=True, slots=True)
class PutRequest:
    """Store `content` with the `context` of the client's last read (b"" for a blind write)."""

    bucket: bytes
    key: bytes
    content: Content
    context: bytes = b""
    w: Quorum | None = None
    dw: Quorum | None = None
    pw: Quorum | None = None
    return_body: bool = False
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """A delete writes a tombstone with the context, so it takes part in causality like a put."""

    bucket: bytes
    key: bytes
    context: bytes = b""
    w: Quorum | None = None
    dw: Quorum | None = None
    pw: Quorum | None = None
    timeout_ms: int | None = None


ClientRequest = GetRequest | PutRequest | DeleteRequest


# ---------------------------------------------------------------------------------------------------
# Service requests: listings, bucket properties and preference lists. The HTTP API sends them through
# the same node seam as the object requests; the native wire protocol does not carry them yet.

# A bucket property value as Riak's JSON gives it: quorums stay as set (1 stays 1, "all" stays "all").
# The HTTP API passes precommit/postcommit (lists) and chash_keyfun/linkfun (objects) on as the JSON gave
# them, for the node to check that they equal the only values it serves.
PropValue = int | str | bool | list[object] | dict[str, object]


@dataclass(frozen=True, slots=True)
class ListKeysRequest:
    """The keys of one bucket that hold a live value on some replica (a full scan, as in Riak)."""

    bucket: bytes
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ListBucketsRequest:
    """The buckets that hold at least one live value on some replica (a full scan, as in Riak)."""

    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class GetBucketProps:
    bucket: bytes


@dataclass(frozen=True, slots=True)
class SetBucketProps:
    """Change some properties of a bucket, cluster-wide; the ones not named keep their values."""

    bucket: bytes
    props: Mapping[str, PropValue]


@dataclass(frozen=True, slots=True)
class ResetBucketProps:
    """Forget a bucket's own properties, cluster-wide: it takes the cluster's defaults again."""

    bucket: bytes


@dataclass(frozen=True, slots=True)
class PreflistRequest:
    bucket: bytes
    key: bytes


ServiceRequest = (
    ListKeysRequest
    | ListBucketsRequest
    | GetBucketProps
    | SetBucketProps
    | ResetBucketProps
    | PreflistRequest
    | AdminRequest
    | ClusterRequest
)
NodeRequest = ClientRequest | ServiceRequest


# ---------------------------------------------------------------------------------------------------
# Client replies


@dataclass(frozen=True, slots=True)
class GetReply:
    """The siblings and the context to write back with.

    `found` is False when no replica holds a value (never written, or every sibling is a tombstone);
    `siblings` is then empty, and the context is still given, so a write after a delete supersedes the
    tombstone. When found, tombstones concurrent with live values are among the siblings, marked
    `deleted` (Riak shows them as siblings with X-Riak-Deleted).
    """

    found: bool
    siblings: tuple[Content, ...]
    context: bytes


@dataclass(frozen=True, slots=True)
class PutReply:
    """The context of the new object; its visible siblings too when the request asked for the body."""

    context: bytes
    siblings: tuple[Content, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteReply:
    pass


class FailureKind(enum.Enum):
    BAD_REQUEST = "bad_request"  # the request itself is wrong; `field` names what
    UNAVAILABLE = "unavailable"  # too few replicas could take part
    TIMEOUT = "timeout"  # replicas did not answer in time
    OVERLOADED = "overloaded"  # a bound on pending work was reached
    STORAGE = "storage"  # the local storage engine failed


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request failed. For UNAVAILABLE and TIMEOUT, `needed` and `acknowledged` say how many
    replicas had to answer (for the quorum named by `field`: "r", "w", "dw", "pr" or "pw") and how many
    did."""

    kind: FailureKind
    message: str
    field: str | None = None
    needed: int | None = None
    acknowledged: int | None = None


ClientReply = GetReply | PutReply | DeleteReply | Failure


@dataclass(frozen=True, slots=True)
class ListReply:
    """Keys of a bucket or names of buckets, sorted, each once."""

    names: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BucketPropsReply:
    """A bucket's effective properties by their Riak names (`name` included), as Riak's props GET
    shows them; the answer to GetBucketProps, SetBucketProps and ResetBucketProps alike."""

    props: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class PreflistEntry:
    partition: int
    node: str
    primary: bool


@dataclass(frozen=True, slots=True)
class PreflistReply:
    """The key's preference list, primaries first (n_val entries while every primary is up)."""

    entries: tuple[PreflistEntry, ...]


ServiceReply = ListReply | BucketPropsReply | PreflistReply | AdminReply | ClusterReply | Failure
NodeReply = ClientReply | ServiceReply


# ---------------------------------------------------------------------------------------------------
# Node-to-node messages


@dataclass(frozen=True, slots=True)
class ReplicaGet:
    req_id: int
    partition: int
    bucket: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class ReplicaGetReply:
    """`obj` is the stored encoding of the replica's object, or None when it holds nothing; `ok` is
    False when the replica could not read (a storage error), which is not the same as not found."""

    req_id: int
    obj: bytes | None
    ok: bool = True


@dataclass(frozen=True, slots=True)
class ReplicaPut:
    """Merge `obj` (the coordinator's new object, encoded) into the replica's copy and acknowledge.

    `durable` asks the replica to make the write crash-proof before acknowledging (counts toward dw).
    `hint_for` names the unreachable primary a fallback stands in for: the fallback stores the object
    with a hint naming it, to hand it over once that primary answers again (protocol/hints.py).
    """

    req_id: int
    partition: int
    bucket: bytes
    key: bytes
    obj: bytes
    durable: bool
    hint_for: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaPutAck:
    """`ok` is False when the replica could not store (storage error, undecodable object)."""

    req_id: int
    ok: bool
    durable: bool


@dataclass(frozen=True, slots=True)
class ReadRepair:
    """Merge `obj` into a stale replica's copy after a get; no acknowledgement is expected."""

    partition: int
    bucket: bytes
    key: bytes
    obj: bytes


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    """A put or delete sent to a node of the key's preference list by a node outside it."""

    req_id: int
    request: ClientRequest


@dataclass(frozen=True, slots=True)
class ForwardReply:
    req_id: int
    reply: ClientReply


@dataclass(frozen=True, slots=True)
class KeyListRequest:
    """Ask a node for the names it holds live values under: the keys of `bucket`, or with `bucket`
    None the names of the buckets (protocol/listing.py)."""

    req_id: int
    bucket: bytes | None


@dataclass(frozen=True, slots=True)
class KeyListReply:
    """One batch of a node's answer to a KeyListRequest. `seq` numbers the batches from 0 and the
    last one has `done`, so a coordinator knows the answer is whole even if batches arrive out of
    order; `ok` False means the node could not scan (its names then do not count as coverage)."""

    req_id: int
    names: tuple[bytes, ...]
    done: bool
    ok: bool
    seq: int = 0


@dataclass(frozen=True, slots=True)
class BucketPropsEntry:
    """A bucket's own props as some node last set them: `props` the (name, value) pairs set, sorted by
    name, or None after a reset (a tombstone, so the reset propagates too). The newest `stamp` wins."""

    bucket: bytes
    props: tuple[tuple[str, PropValue], ...] | None
    stamp_ms: int
    node: str

    @property
    def stamp(self) -> tuple[int, str]:
        """The order of entries: node names break ties, so two entries from honest nodes never tie
        (`bucket_props.supersedes` orders even those that do)."""
        return self.stamp_ms, self.node


@dataclass(frozen=True, slots=True)
class BucketPropsPush:
    """Bucket props entries for the receiver to merge; with `reply_wanted` it answers with the entries
    it holds that this push lacked or holds newer (protocol/bucket_props.py)."""

    entries: tuple[BucketPropsEntry, ...]
    reply_wanted: bool


@dataclass(frozen=True, slots=True)
class BucketPropsDigest:
    """The digest of the sender's bucket props table; a receiver whose digest differs pushes its own."""

    digest: bytes


# ---------------------------------------------------------------------------------------------------
# Anti-entropy (protocol/anti_entropy.py): an initiator walks a partition's Merkle trees down with one
# other replica, lists the keys of the differing segments and repairs by DVV merge in both directions.
# `xid` numbers the initiator's requests (a fresh one each, so a duplicated or late reply matches none);
# the responder keeps no state and echoes it.

# (bucket, key): a position in a partition's scan order.
AePosition = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class AeNodesRequest:
    """Ask for the hashes of the nodes `indexes` at `depth` of the peer's tree of `partition` (depth 0,
    index 0 is the root). `segments` and `branching` give the asker's tree shape: a peer whose tree has
    another shape, or is not built yet, answers None."""

    xid: int
    partition: int
    segments: int
    branching: int
    depth: int
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AeNodesReply:
    """The hashes of the nodes asked, in the order asked; None if the peer cannot take part."""

    xid: int
    hashes: tuple[bytes, ...] | None


@dataclass(frozen=True, slots=True)
class AeKeysRequest:
    """List the entries of `partition` strictly after `after` and at or before `upto` (None: to the
    end) whose segment, in a tree of `segments` segments, is set in `segment_mask` (bit s is bit
    7 - s % 8 of byte s // 8)."""

    xid: int
    partition: int
    segments: int
    segment_mask: bytes
    after: AePosition | None
    upto: AePosition | None


@dataclass(frozen=True, slots=True)
class AeKeysReply:
    """Matching (bucket, key, object hash) entries in scan order. Every matching entry after the
    request's `after` and at or before `upto` (None: to the end of the request's range) is here; the
    peer stops early, at a smaller `upto`, when its scan page or the message's byte bound is full."""

    xid: int
    entries: tuple[tuple[bytes, bytes, bytes], ...]
    upto: AePosition | None


@dataclass(frozen=True, slots=True)
class AeObjects:
    """Repair: stored objects (bucket, key, encoded object) for the receiver to merge, never overwrite.

    A request (from the initiator) has a `wanted` tuple, possibly empty: the keys whose merged objects
    it wants back. The responder answers with one or more AeObjects whose `wanted` is None, the last
    one `done`, even when it has nothing to send: that paces the initiator."""

    xid: int
    partition: int
    entries: tuple[tuple[bytes, bytes, bytes], ...]
    wanted: tuple[AePosition, ...] | None = None
    done: bool = True


# ---------------------------------------------------------------------------------------------------
# Transfers: the one mechanism that moves objects between nodes in batches (protocol/transfer.py).


class TransferKind(enum.Enum):
    """Why objects move (riak_core's handoff kinds): hints to a primary that is back, a partition to
    its new owner, or a partition's objects to a replica that lost them."""

    HINTED = "hinted"
    OWNERSHIP = "ownership"
    REPAIR = "repair"
    CLEANUP = "cleanup"  # an old owner's copies to a current primary, deleted once acked


@dataclass(frozen=True, slots=True)
class TransferEntry:
    """One object of a transfer, in its stored encoding (`objects.encode_object`)."""

    bucket: bytes
    key: bytes
    obj: bytes


@dataclass(frozen=True, slots=True)
class TransferBatch:
    """Batch `seq` of transfer `transfer_id` (an id of the sender's, unique across its restarts): the
    receiver merges every entry into its copy of `partition` and acknowledges after a durable write.
    `last` marks the final batch (it may be empty)."""

    transfer_id: int
    kind: TransferKind
    partition: int
    seq: int
    entries: tuple[TransferEntry, ...]
    last: bool


@dataclass(frozen=True, slots=True)
class TransferAck:
    """`ok` is True only once every entry of batch `seq` is merged and durable on the receiver."""

    transfer_id: int
    seq: int
    ok: bool


PeerMessage = (
    ReplicaGet
    | ReplicaGetReply
    | ReplicaPut
    | ReplicaPutAck
    | ReadRepair
    | ForwardRequest
    | ForwardReply
    | KeyListRequest
    | KeyListReply
    | BucketPropsPush
    | BucketPropsDigest
    | TransferBatch
    | TransferAck
    | AeNodesRequest
    | AeNodesReply
    | AeKeysRequest
    | AeKeysReply
    | AeObjects
    | Ping
    | Pong
    | GossipDigest
    | GossipState
    | ClusterPeerMessage
)
