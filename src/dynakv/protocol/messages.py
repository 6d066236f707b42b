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
PropValue = int | str | bool


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
)
NodeRequest = ClientRequest | ServiceRequest


# ---------------------------------------------------------------------------------------------------
# Client replies


@dataclass(frozen=True, slots=True)
class GetReply:
    """The visible siblings (never tombstones) and the context to write back with.

    `found` is False when no replica holds a value (never written, or every sibling is a tombstone);
    the context is still given then, so a write after a delete supersedes the tombstone.
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


ServiceReply = ListReply | BucketPropsReply | PreflistReply | Failure
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
    """

    req_id: int
    partition: int
    bucket: bytes
    key: bytes
    obj: bytes
    durable: bool


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


PeerMessage = (
    ReplicaGet | ReplicaGetReply | ReplicaPut | ReplicaPutAck | ReadRepair | ForwardRequest | ForwardReply
)
