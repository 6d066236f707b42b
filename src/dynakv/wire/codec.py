"""Messages <-> msgpack, for peer connections and client connections.

A frame holds one msgpack array: `[tag, field, ...]` for peer messages and `[tag, request_id, field,
...]` for client requests and replies, so a client can keep many requests in flight on one connection
and match replies that come back in any order. Arrays rather than maps keep frames small and decoding
fast on the hot path; the protocol version is agreed once per connection by `Hello`, and a tag this
version does not know is an error, not something to skip.

Decoding trusts nothing: any frame that this module could not have written raises
`RemoteProtocolError` (the connection is closed and counted), never another exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from dynakv.core import codec
from dynakv.core.codec import want_bool, want_bytes, want_int, want_list_of, want_optional, want_str
from dynakv.core.errors import DecodeError, RemoteProtocolError
from dynakv.core.objects import Content, content_from_payload, content_to_payload
from dynakv.protocol.cluster_admin_messages import ClusterPeerMessage
from dynakv.protocol.gossip_messages import GossipDigest, GossipState
from dynakv.protocol.liveness import Ping, Pong
from dynakv.protocol.messages import (
    AeKeysReply,
    AeKeysRequest,
    AeNodesReply,
    AeNodesRequest,
    AeObjects,
    BucketPropsDigest,
    BucketPropsPush,
    ClientReply,
    ClientRequest,
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    ForwardReply,
    ForwardRequest,
    GetReply,
    GetRequest,
    KeyListReply,
    KeyListRequest,
    NodeReply,
    NodeRequest,
    PeerMessage,
    PutReply,
    PutRequest,
    ReadRepair,
    ReplicaGet,
    ReplicaGetReply,
    ReplicaPut,
    ReplicaPutAck,
    TransferAck,
    TransferBatch,
)
from dynakv.wire.ae_codec import AE_TAGS, ae_fields, decode_ae
from dynakv.wire.cluster_admin_codec import CLUSTER_PEER_TAGS, cluster_peer_fields, decode_cluster_peer
from dynakv.wire.gossip_codec import GOSSIP_TAGS, decode_gossip, gossip_fields
from dynakv.wire.liveness_codec import LIVENESS_TAGS, decode_liveness, liveness_fields
from dynakv.wire.props_codec import PROPS_TAGS, decode_props, props_fields
from dynakv.wire.service_codec import (
    SERVICE_REPLY_TAGS,
    SERVICE_REQUEST_TAGS,
    decode_service_reply,
    decode_service_request,
    service_reply_fields,
    service_request_fields,
)
from dynakv.wire.transfer_codec import TRANSFER_TAGS, decode_transfer, transfer_fields

PROTOCOL_VERSION: Final = 1
_INT64_MAX: Final = (1 << 63) - 1
_QUORUM_NAME_MAX: Final = 16
_NODE_NAME_MAX: Final = 1024


@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame each side sends. `role` is "node" (a cluster peer) or "client"."""

    cluster: str
    protocol_version: int
    name: str
    role: str
    # A node's own cluster address "host:port", so a peer that does not know it yet (a node joining
    # through a seed) can open its link back (membership). Absent for clients.
    address: str | None = None


# Tags. Peer and client messages share one numbering so that a frame sent on the wrong kind of
# connection is recognised as such.
_HELLO = 0
_REPLICA_GET, _REPLICA_GET_REPLY, _REPLICA_PUT, _REPLICA_PUT_ACK, _READ_REPAIR = 1, 2, 3, 4, 5
_FORWARD_REQUEST, _FORWARD_REPLY = 6, 7
# 8 and 9: bucket props (wire/props_codec.py).
_KEY_LIST_REQUEST, _KEY_LIST_REPLY = 10, 11
# 12 and 13: transfers (wire/transfer_codec.py). 14 and 15: transfer progress
# (wire/transfer_progress_codec.py, routed by cluster_admin_codec.py).
# 16-19 and 23: anti-entropy (wire/ae_codec.py).
# 24 and 25: probes (wire/liveness_codec.py).
# 26 and 27: gossip (wire/gossip_codec.py). 28 and 29: commit forward (wire/cluster_admin_codec.py).
_GET, _PUT, _DELETE = 20, 21, 22
_GET_REPLY, _PUT_REPLY, _DELETE_REPLY, _FAILURE = 30, 31, 32, 33
# 40-48 and 50-54: service requests and replies on client connections (wire/service_codec.py);
# 60-65: cluster admin requests and replies (wire/cluster_admin_codec.py).


def _quorum(value: Any, field: str) -> int | str | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value  # range is the coordinator's to check, with a message naming n_val
    text = want_str(value, field)
    if len(text) > _QUORUM_NAME_MAX:
        raise DecodeError(f"{field}: quorum name too long")
    return text


def _u64(value: Any, field: str) -> int:
    return want_int(value, field, 0, _INT64_MAX)


def _contents(value: Any, field: str) -> tuple[Content, ...]:
    return tuple(want_list_of(value, field, content_from_payload))


# -- client requests and replies -------------------------------------------------------------------


def _request_fields(request: ClientRequest) -> list[Any]:
    if isinstance(request, GetRequest):
        return [
            _GET,
            request.bucket,
            request.key,
            request.r,
            request.pr,
            request.basic_quorum,
            request.notfound_ok,
            request.timeout_ms,
        ]
    if isinstance(request, PutRequest):
        return [
            _PUT,
            request.bucket,
            request.key,
            content_to_payload(request.content),
            request.context,
            request.w,
            request.dw,
            request.pw,
            request.return_body,
            request.timeout_ms,
        ]
    return [
        _DELETE,
        request.bucket,
        request.key,
        request.context,
        request.w,
        request.dw,
        request.pw,
        request.timeout_ms,
    ]


def _decode_request(tag: int, f: list[Any]) -> ClientRequest:
    if not f:
        raise DecodeError(f"tag {tag} with no fields is not a client request")
    timeout = want_optional(f[-1], "timeout_ms", _u64)
    if tag == _GET and len(f) in (5, 7):
        # The 5-field form predates basic_quorum and notfound_ok: both then take the bucket's.
        flags = f[4:6] if len(f) == 7 else [None, None]
        return GetRequest(
            want_bytes(f[0], "bucket"),
            want_bytes(f[1], "key"),
            _quorum(f[2], "r"),
            _quorum(f[3], "pr"),
            timeout,
            want_optional(flags[0], "basic_quorum", want_bool),
            want_optional(flags[1], "notfound_ok", want_bool),
        )
    if tag == _PUT and len(f) == 9:
        return PutRequest(
            want_bytes(f[0], "bucket"),
            want_bytes(f[1], "key"),
            content_from_payload(f[2]),
            want_bytes(f[3], "context"),
            _quorum(f[4], "w"),
            _quorum(f[5], "dw"),
            _quorum(f[6], "pw"),
            want_bool(f[7], "return_body"),
            timeout,
        )
    if tag == _DELETE and len(f) == 7:
        return DeleteRequest(
            want_bytes(f[0], "bucket"),
            want_bytes(f[1], "key"),
            want_bytes(f[2], "context"),
            _quorum(f[3], "w"),
            _quorum(f[4], "dw"),
            _quorum(f[5], "pw"),
            timeout,
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a client request")


def _reply_fields(reply: ClientReply) -> list[Any]:
    if isinstance(reply, GetReply):
        return [_GET_REPLY, reply.found, [content_to_payload(c) for c in reply.siblings], reply.context]
    if isinstance(reply, PutReply):
        return [_PUT_REPLY, reply.context, [content_to_payload(c) for c in reply.siblings]]
    if isinstance(reply, DeleteReply):
        return [_DELETE_REPLY]
    return [_FAILURE, reply.kind.value, reply.message, reply.field, reply.needed, reply.acknowledged]


def _decode_reply(tag: int, f: list[Any]) -> ClientReply:
    if tag == _GET_REPLY and len(f) == 3:
        return GetReply(want_bool(f[0], "found"), _contents(f[1], "siblings"), want_bytes(f[2], "context"))
    if tag == _PUT_REPLY and len(f) == 2:
        return PutReply(want_bytes(f[0], "context"), _contents(f[1], "siblings"))
    if tag == _DELETE_REPLY and not f:
        return DeleteReply()
    if tag == _FAILURE and len(f) == 5:
        try:
            kind = FailureKind(want_str(f[0], "kind"))
        except ValueError:
            raise DecodeError(f"kind: unknown failure kind {f[0]!r}") from None
        return Failure(
            kind,
            want_str(f[1], "message"),
            want_optional(f[2], "field", want_str),
            want_optional(f[3], "needed", _u64),
            want_optional(f[4], "acknowledged", _u64),
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a client reply")


def encode_client_request(request_id: int, request: NodeRequest) -> bytes:
    # Service requests (listings, props, preflists, admin) have frames of their own (service_codec.py).
    if isinstance(request, GetRequest | PutRequest | DeleteRequest):
        fields = _request_fields(request)
    else:
        fields = service_request_fields(request)
    return codec.pack([fields[0], request_id, *fields[1:]])


def encode_client_reply(request_id: int, reply: NodeReply) -> bytes:
    if isinstance(reply, GetReply | PutReply | DeleteReply | Failure):
        fields = _reply_fields(reply)
    else:
        fields = service_reply_fields(reply)
    return codec.pack([fields[0], request_id, *fields[1:]])


def decode_client_request(data: bytes) -> tuple[int, NodeRequest]:
    return _decode_numbered(data, _decode_node_request)


def decode_client_reply(data: bytes) -> tuple[int, NodeReply]:
    return _decode_numbered(data, _decode_node_reply)


def _decode_node_request(tag: int, f: list[Any]) -> NodeRequest:
    return decode_service_request(tag, f) if tag in SERVICE_REQUEST_TAGS else _decode_request(tag, f)


def _decode_node_reply(tag: int, f: list[Any]) -> NodeReply:
    return decode_service_reply(tag, f) if tag in SERVICE_REPLY_TAGS else _decode_reply(tag, f)


def _decode_numbered(data: bytes, decode: Callable[[int, list[Any]], Any]) -> tuple[int, Any]:
    def inner(tag: int, fields: list[Any]) -> tuple[int, Any]:
        if not fields:
            raise DecodeError("missing request id")
        return _u64(fields[0], "request_id"), decode(tag, fields[1:])

    result: tuple[int, Any] = _guarded(data, inner)
    return result


# -- peer messages ------------------------------------------------------------------------------------


def _peer_fields(msg: PeerMessage) -> list[Any]:
    match msg:
        case ReplicaGet(req_id, partition, bucket, key):
            return [_REPLICA_GET, req_id, partition, bucket, key]
        case ReplicaGetReply(req_id, obj, ok):
            return [_REPLICA_GET_REPLY, req_id, obj, ok]
        case ReplicaPut(req_id, partition, bucket, key, obj, durable, hint_for):
            # The hint's target only when there is one: the common frame stays as it was.
            fields = [_REPLICA_PUT, req_id, partition, bucket, key, obj, durable]
            return fields if hint_for is None else [*fields, hint_for]
        case ReplicaPutAck(req_id, ok, durable):
            return [_REPLICA_PUT_ACK, req_id, ok, durable]
        case ReadRepair(partition, bucket, key, obj):
            return [_READ_REPAIR, partition, bucket, key, obj]
        case ForwardRequest(req_id, request):
            return [_FORWARD_REQUEST, req_id, _request_fields(request)]
        case ForwardReply(req_id, reply):
            return [_FORWARD_REPLY, req_id, _reply_fields(reply)]
        case BucketPropsPush() | BucketPropsDigest():
            return props_fields(msg)
        case KeyListRequest(req_id, bucket):
            return [_KEY_LIST_REQUEST, req_id, bucket]
        case KeyListReply(req_id, names, done, ok, seq):
            return [_KEY_LIST_REPLY, req_id, list(names), done, ok, seq]
        case AeNodesRequest() | AeNodesReply() | AeKeysRequest() | AeKeysReply() | AeObjects():
            return ae_fields(msg)
        case TransferBatch() | TransferAck() | Ping() | Pong() | GossipDigest() | GossipState():
            return _side_fields(msg)
    raise AssertionError(f"not a peer message: {msg!r}")


_SideMessage = TransferBatch | TransferAck | Ping | Pong | GossipDigest | GossipState


def _side_fields(msg: _SideMessage) -> list[Any]:
    if isinstance(msg, Ping | Pong):
        return liveness_fields(msg)
    if isinstance(msg, GossipDigest | GossipState):
        return gossip_fields(msg)
    return transfer_fields(msg)


def _nested(value: Any, field: str, decode: Callable[[int, list[Any]], Any]) -> Any:
    items = codec.want_list(value, field)
    if not items:
        raise DecodeError(f"{field}: empty")
    return decode(want_int(items[0], f"{field}.tag"), items[1:])


# The peer messages whose fields live in modules of their own, by their tags.
_SUB_DECODERS: Final[tuple[tuple[frozenset[int], Callable[[int, list[Any]], PeerMessage]], ...]] = (
    (AE_TAGS, decode_ae),
    (TRANSFER_TAGS, decode_transfer),
    (LIVENESS_TAGS, decode_liveness),
    (PROPS_TAGS, decode_props),
    (GOSSIP_TAGS, decode_gossip),
    (CLUSTER_PEER_TAGS, decode_cluster_peer),
)


def _decode_peer(tag: int, f: list[Any]) -> PeerMessage:
    if tag == _REPLICA_GET and len(f) == 4:
        return ReplicaGet(
            _u64(f[0], "req_id"), _u64(f[1], "partition"), want_bytes(f[2], "bucket"), want_bytes(f[3], "key")
        )
    if tag == _REPLICA_GET_REPLY and len(f) == 3:
        return ReplicaGetReply(
            _u64(f[0], "req_id"), want_optional(f[1], "obj", want_bytes), want_bool(f[2], "ok")
        )
    if tag == _REPLICA_PUT and len(f) in (6, 7):
        hint_for = want_str(f[6], "hint_for") if len(f) == 7 else None
        if hint_for is not None and not 0 < len(hint_for.encode()) <= _NODE_NAME_MAX:
            raise DecodeError(f"hint_for: a node name is 1 to {_NODE_NAME_MAX} bytes")
        return ReplicaPut(
            _u64(f[0], "req_id"),
            _u64(f[1], "partition"),
            want_bytes(f[2], "bucket"),
            want_bytes(f[3], "key"),
            want_bytes(f[4], "obj"),
            want_bool(f[5], "durable"),
            hint_for,
        )
    if tag == _REPLICA_PUT_ACK and len(f) == 3:
        return ReplicaPutAck(_u64(f[0], "req_id"), want_bool(f[1], "ok"), want_bool(f[2], "durable"))
    if tag == _READ_REPAIR and len(f) == 4:
        return ReadRepair(
            _u64(f[0], "partition"),
            want_bytes(f[1], "bucket"),
            want_bytes(f[2], "key"),
            want_bytes(f[3], "obj"),
        )
    if tag == _FORWARD_REQUEST and len(f) == 2:
        return ForwardRequest(_u64(f[0], "req_id"), _nested(f[1], "request", _decode_request))
    if tag == _FORWARD_REPLY and len(f) == 2:
        return ForwardReply(_u64(f[0], "req_id"), _nested(f[1], "reply", _decode_reply))
    if tag in (_KEY_LIST_REQUEST, _KEY_LIST_REPLY):
        return _decode_key_list(tag, f)
    for tags, decode in _SUB_DECODERS:
        if tag in tags:
            return decode(tag, f)
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a peer message")


def _decode_key_list(tag: int, f: list[Any]) -> KeyListRequest | KeyListReply:
    if tag == _KEY_LIST_REQUEST and len(f) == 2:
        return KeyListRequest(_u64(f[0], "req_id"), want_optional(f[1], "bucket", want_bytes))
    if tag == _KEY_LIST_REPLY and len(f) == 5:
        return KeyListReply(
            _u64(f[0], "req_id"),
            tuple(want_list_of(f[1], "names", want_bytes)),
            want_bool(f[2], "done"),
            want_bool(f[3], "ok"),
            _u64(f[4], "seq"),
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a key list message")


def encode_peer(msg: PeerMessage) -> bytes:
    if isinstance(msg, ClusterPeerMessage):
        return codec.pack(cluster_peer_fields(msg))
    return codec.pack(_peer_fields(msg))


def decode_peer(data: bytes) -> PeerMessage:
    result: PeerMessage = _guarded(data, _decode_peer)
    return result


# -- hello ----------------------------------------------------------------------------------------


def encode_hello(hello: Hello) -> bytes:
    fields = [_HELLO, hello.cluster, hello.protocol_version, hello.name, hello.role]
    return codec.pack(fields if hello.address is None else [*fields, hello.address])


def decode_hello(data: bytes) -> Hello:
    def inner(tag: int, f: list[Any]) -> Hello:
        if tag != _HELLO or len(f) not in (4, 5):
            raise DecodeError("the first frame must be a hello")
        address = want_str(f[4], "address") if len(f) == 5 else None
        if address is not None and not 0 < len(address) <= _NODE_NAME_MAX:
            raise DecodeError(f"address: 1 to {_NODE_NAME_MAX} characters")
        role = want_str(f[3], "role")
        if role not in ("node", "client"):
            raise DecodeError(f"role: {role!r} is neither 'node' nor 'client'")
        return Hello(
            want_str(f[0], "cluster"), _u64(f[1], "protocol_version"), want_str(f[2], "name"), role, address
        )

    result: Hello = _guarded(data, inner)
    return result


def _guarded(data: bytes, decode: Callable[[int, list[Any]], Any]) -> Any:
    """Run a decoder on one frame; every way the frame can be wrong becomes RemoteProtocolError."""
    try:
        items = codec.want_list(codec.unpack(data), "frame")
        if not items:
            raise DecodeError("empty frame")
        return decode(want_int(items[0], "tag"), items[1:])
    except (DecodeError, AssertionError) as err:
        # AssertionError: a value type's own invariant (e.g. a timestamp out of range) broken by input.
        raise RemoteProtocolError(f"malformed frame: {err}") from None
