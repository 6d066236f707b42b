"""The state of requests in flight on the data path, and the replies they end with.

Moved out of data_path.py to keep that file under the size cap; the data path is their only user
(besides `ClientOrigin`, which the node uses to hand in client requests).
"""

from __future__ import annotations

from dataclasses import dataclass

from dynakv.core.config import BucketProps
from dynakv.core.objects import Content, StoredObject, last_write_wins, visible_siblings
from dynakv.protocol.coordinator import GetCoordination, PutCoordination, Target
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.messages import ClientReply, ClientRequest, Failure, FailureKind, ForwardReply


@dataclass(frozen=True, slots=True)
class ClientOrigin:
    ref: int


@dataclass(frozen=True, slots=True)
class ForwardOrigin:
    node: str
    req_id: int


Origin = ClientOrigin | ForwardOrigin


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a request goes: the key's partition, the replicas to ask, the quorums as integers, and
    the bucket's props."""

    partition: int
    targets: tuple[Target, ...]
    quorums: dict[str, int]
    props: BucketProps


@dataclass(slots=True)
class PendingPut:
    origin: Origin
    coordination: PutCoordination
    obj: StoredObject
    reply_body: bool
    is_delete: bool
    props: BucketProps


@dataclass(slots=True)
class PendingGet:
    origin: Origin
    coordination: GetCoordination
    partition: int
    bucket: bytes
    key: bytes
    props: BucketProps
    repair_deadline_ms: int = 0


@dataclass(slots=True)
class PendingForward:
    ref: int
    node: str
    deadline_ms: int
    needed: int
    # The request, and the other reachable targets to try if `node` refuses it (it is not a target in
    # its own view of the ring: the views disagree while a membership change spreads).
    request: ClientRequest | None = None
    rest: tuple[str, ...] = ()


def reply_to(origin: Origin, reply: ClientReply, out: list[Effect]) -> None:
    if isinstance(origin, ClientOrigin):
        out.append(Reply(origin.ref, reply))
    else:
        out.append(Send(origin.node, ForwardReply(origin.req_id, reply)))


def client_values(obj: StoredObject, props: BucketProps) -> tuple[Content, ...]:
    """What a client sees of an object: nothing while every sibling is a tombstone (not found), else
    every sibling in dot order, tombstones included (marked `deleted`), as Riak shows them: a delete
    concurrent with a write is a conflict the reader resolves, not something to hide. Without
    allow_mult (or with last_write_wins) only the newest sibling, so a newest delete reads as not
    found; the siblings stay stored, and the context covers them all.

    Siblings with identical content (value, metadata and timestamp) are shown once: the same write
    coordinated twice (a forward retried after its coordinator went silent, a client's retry of the
    same request) is one value to the reader, and the context covers both dots."""
    if not props.allow_mult or props.last_write_wins:
        obj = last_write_wins(obj)
    if not visible_siblings(obj):
        return ()
    shown: list[Content] = []
    for _, content in obj.siblings:
        if content not in shown:
            shown.append(content)
    return tuple(shown)


def resolved(obj: StoredObject, props: BucketProps) -> StoredObject:
    """The object as stored for the bucket: with last_write_wins, its newest sibling only."""
    return last_write_wins(obj) if props.last_write_wins else obj


def storage_failure(err: Exception) -> Failure:
    return Failure(FailureKind.STORAGE, f"local storage failed: {err}")
