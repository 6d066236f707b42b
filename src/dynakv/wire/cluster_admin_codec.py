"""Cluster admin requests and replies (client connections) and the commit forward (peer connections)
<-> msgpack field lists (protocol/cluster_admin_messages.py).

Requests take tags 60-63 and replies 64-65, framed by wire/codec.py like the other service requests;
the peer messages take 28 and 29, and 14 and 15 for transfer progress (wire/transfer_progress_codec.py).
Decoding trusts nothing and raises DecodeError only.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core.codec import (
    want_bool,
    want_int,
    want_list,
    want_list_of,
    want_optional,
    want_str,
    want_tuple,
)
from dynakv.core.config import PARTITIONS_MAX
from dynakv.core.errors import DecodeError
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitForward,
    ClusterCommitForwardReply,
    ClusterCommitRequest,
    ClusterPeerMessage,
    ClusterPlanReply,
    ClusterPlanRequest,
    ClusterReply,
    ClusterRequest,
    ClusterStageRequest,
    ClusterTransfersReply,
    ClusterTransfersRequest,
    StageKind,
    TransferInfo,
)
from dynakv.protocol.transfer_progress_messages import TransferProgressReply, TransferProgressRequest
from dynakv.wire.transfer_progress_codec import (
    PROGRESS_TAGS,
    decode_nodes,
    decode_progress,
    node_transfers_fields,
    progress_fields,
)

STAGE, PLAN, COMMIT, TRANSFERS = 60, 61, 62, 63
PLAN_REPLY, TRANSFERS_REPLY = 64, 65
COMMIT_FORWARD, COMMIT_FORWARD_REPLY = 28, 29
CLUSTER_REQUEST_TAGS: Final = frozenset({STAGE, PLAN, COMMIT, TRANSFERS})
CLUSTER_REPLY_TAGS: Final = frozenset({PLAN_REPLY, TRANSFERS_REPLY})
CLUSTER_PEER_TAGS: Final = frozenset({COMMIT_FORWARD, COMMIT_FORWARD_REPLY}) | PROGRESS_TAGS

_INT64_MAX: Final = (1 << 63) - 1
_TEXT_MAX: Final = 1024
_LINES_MAX: Final = 100_000


def _u64(value: Any, field: str) -> int:
    return want_int(value, field, 0, _INT64_MAX)


def _text(value: Any, field: str) -> str:
    text = want_str(value, field)
    if len(text) > _TEXT_MAX * 64:
        raise DecodeError(f"{field}: too long")
    return text


def _name(value: Any, field: str) -> str:
    text = want_str(value, field)
    if len(text) > _TEXT_MAX:
        raise DecodeError(f"{field}: longer than {_TEXT_MAX} characters")
    return text


def cluster_request_fields(request: ClusterRequest) -> list[Any]:
    match request:
        case ClusterStageRequest(kind, name):
            return [STAGE, kind.value, name]
        case ClusterPlanRequest():
            return [PLAN]
        case ClusterCommitRequest():
            return [COMMIT]
        case ClusterTransfersRequest():
            return [TRANSFERS]
    raise AssertionError(f"not a cluster request: {request!r}")


def decode_cluster_request(tag: int, f: list[Any]) -> ClusterRequest:
    if tag == STAGE and len(f) == 2:
        try:
            kind = StageKind(want_str(f[0], "kind"))
        except ValueError:
            raise DecodeError(f"kind: {f[0]!r} is not a staged change") from None
        return ClusterStageRequest(kind, _name(f[1], "name"))
    if tag == PLAN and not f:
        return ClusterPlanRequest()
    if tag == COMMIT and not f:
        return ClusterCommitRequest()
    if tag == TRANSFERS and not f:
        return ClusterTransfersRequest()
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a cluster request")


def _plan_fields(reply: ClusterPlanReply) -> list[Any]:
    return [reply.claimant, reply.ring_version, list(reply.lines)]


def _decode_plan(f: list[Any]) -> ClusterPlanReply:
    if len(f) != 3:
        raise DecodeError(f"plan: expected 3 fields, got {len(f)}")
    lines = want_list_of(f[2], "lines", _text)
    if len(lines) > _LINES_MAX:
        raise DecodeError("lines: too many")
    return ClusterPlanReply(_name(f[0], "claimant"), _u64(f[1], "ring_version"), tuple(lines))


def _transfer(value: Any, field: str) -> TransferInfo:
    items = want_list(value, field)
    if len(items) != 4:
        raise DecodeError(f"{field}: expected 4 items, got {len(items)}")
    return TransferInfo(
        _u64(items[0], f"{field}.partition"),
        _name(items[1], f"{field}.old_owner"),
        _name(items[2], f"{field}.new_owner"),
        want_bool(items[3], f"{field}.complete"),
    )


def _owners_fields(owners: tuple[str, ...]) -> list[Any]:
    """`[names, indexes]`: each partition's owner as an index into the sorted distinct names, as the
    ring is stored (core/ring.py), so a 65536-partition ring costs a byte or two per partition."""
    names = sorted(set(owners))
    index = {name: i for i, name in enumerate(names)}
    return [names, [index[owner] for owner in owners]]


def _owners(value: Any, field: str) -> tuple[str, ...]:
    names_raw, indexes_raw = want_tuple(value, field, 2)
    names = want_list_of(names_raw, f"{field}.names", _name)
    indexes = want_list(indexes_raw, f"{field}.indexes")
    if len(indexes) > PARTITIONS_MAX or len(names) > len(indexes):
        raise DecodeError(f"{field}: {len(names)} names for {len(indexes)} partitions")
    last = len(names) - 1
    return tuple(names[want_int(i, f"{field}.indexes", 0, last)] for i in indexes)


def cluster_reply_fields(reply: ClusterReply) -> list[Any]:
    match reply:
        case ClusterPlanReply():
            return [PLAN_REPLY, *_plan_fields(reply)]
        case ClusterTransfersReply(version, moves, nodes, owners):
            return [
                TRANSFERS_REPLY,
                version,
                [[m.partition, m.old_owner, m.new_owner, m.complete] for m in moves],
                [node_transfers_fields(n) for n in nodes],
                _owners_fields(owners),
            ]
    raise AssertionError(f"not a cluster reply: {reply!r}")


def decode_cluster_reply(tag: int, f: list[Any]) -> ClusterReply:
    if tag == PLAN_REPLY:
        return _decode_plan(f)
    if tag == TRANSFERS_REPLY and len(f) == 4:
        return ClusterTransfersReply(
            _u64(f[0], "ring_version"),
            tuple(want_list_of(f[1], "moves", _transfer)),
            decode_nodes(f[2], "nodes"),
            _owners(f[3], "owners"),
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a cluster reply")


def cluster_peer_fields(msg: ClusterPeerMessage) -> list[Any]:
    match msg:
        case TransferProgressRequest() | TransferProgressReply():
            return progress_fields(msg)
        case ClusterCommitForward(req_id):
            return [COMMIT_FORWARD, req_id]
        case ClusterCommitForwardReply(req_id, reply, kind, error):
            return [COMMIT_FORWARD_REPLY, req_id, None if reply is None else _plan_fields(reply), kind, error]
    raise AssertionError(f"not a cluster peer message: {msg!r}")


def decode_cluster_peer(tag: int, f: list[Any]) -> ClusterPeerMessage:
    if tag in PROGRESS_TAGS:
        return decode_progress(tag, f)
    if tag == COMMIT_FORWARD and len(f) == 1:
        return ClusterCommitForward(_u64(f[0], "req_id"))
    if tag == COMMIT_FORWARD_REPLY and len(f) == 4:
        plan = want_optional(f[1], "reply", lambda v, field: _decode_plan(want_list(v, field)))
        return ClusterCommitForwardReply(
            _u64(f[0], "req_id"), plan, _name(f[2], "error_kind"), _text(f[3], "error")
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a cluster peer message")
