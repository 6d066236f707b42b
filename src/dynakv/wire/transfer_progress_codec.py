"""Transfer progress (protocol/transfer_progress_messages.py) <-> msgpack field lists.

The peer messages take tags 14 (request) and 15 (reply); cluster_admin_codec.py routes them and uses
`node_transfers_fields` / `decode_node_transfers` for the per-node part of `ClusterTransfersReply`.
Decoding trusts nothing and raises DecodeError only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from dynakv.core.codec import want_int, want_list, want_list_of, want_optional, want_str
from dynakv.core.errors import DecodeError
from dynakv.protocol.messages import TransferKind
from dynakv.protocol.transfer import TransferState
from dynakv.protocol.transfer_progress_messages import (
    Duty,
    NodeAnswer,
    NodeTransfers,
    OutboundProgress,
    TransferProgressMessage,
    TransferProgressReply,
    TransferProgressRequest,
)

T = TypeVar("T")

PROGRESS_REQUEST, PROGRESS_REPLY = 14, 15
PROGRESS_TAGS: Final = frozenset({PROGRESS_REQUEST, PROGRESS_REPLY})

_INT64_MAX: Final = (1 << 63) - 1
_NAME_MAX: Final = 1024
# Far above what a node runs (transfers_concurrent_max) or owes (partitions x n_val duties).
_ITEMS_MAX: Final = 1 << 20
_KINDS: Final = frozenset(k.value for k in TransferKind)
# A transfer under way is running or paused; a finished one is no longer listed.
_STATES: Final = frozenset({TransferState.RUNNING.value, TransferState.PAUSED.value})


def _u64(value: Any, field: str) -> int:
    return want_int(value, field, 0, _INT64_MAX)


def _name(value: Any, field: str) -> str:
    text = want_str(value, field)
    if not 0 < len(text) <= _NAME_MAX:
        raise DecodeError(f"{field}: a node name is 1 to {_NAME_MAX} characters")
    return text


def _one_of(value: Any, field: str, allowed: frozenset[str]) -> str:
    text = want_str(value, field)
    if text not in allowed:
        raise DecodeError(f"{field}: {text!r} is not one of {sorted(allowed)}")
    return text


def _items(value: Any, field: str, decode: Callable[[Any, str], T]) -> tuple[T, ...]:
    items = want_list(value, field)
    if len(items) > _ITEMS_MAX:
        raise DecodeError(f"{field}: more than {_ITEMS_MAX} items")
    return tuple(want_list_of(items, field, decode))


def _progress_fields(p: OutboundProgress) -> list[Any]:
    return [p.kind, p.target, p.partition, p.state, p.entries_acked, p.bytes_acked, p.entries_total]


def _progress(value: Any, field: str) -> OutboundProgress:
    items = want_list(value, field)
    if len(items) != 7:
        raise DecodeError(f"{field}: expected 7 items, got {len(items)}")
    return OutboundProgress(
        _one_of(items[0], f"{field}.kind", _KINDS),
        _name(items[1], f"{field}.target"),
        _u64(items[2], f"{field}.partition"),
        _one_of(items[3], f"{field}.state", _STATES),
        _u64(items[4], f"{field}.entries_acked"),
        _u64(items[5], f"{field}.bytes_acked"),
        want_optional(items[6], f"{field}.entries_total", _u64),
    )


def _duty(value: Any, field: str) -> Duty:
    items = want_list(value, field)
    if len(items) != 2:
        raise DecodeError(f"{field}: expected 2 items, got {len(items)}")
    return _u64(items[0], f"{field}.partition"), _name(items[1], f"{field}.target")


def _parts_fields(transfers: tuple[OutboundProgress, ...], sent: tuple[Duty, ...]) -> list[Any]:
    return [[_progress_fields(p) for p in transfers], [list(d) for d in sent]]


def node_transfers_fields(node: NodeTransfers) -> list[Any]:
    return [node.node, node.answer.value, *_parts_fields(node.transfers, node.sent)]


def decode_node_transfers(value: Any, field: str) -> NodeTransfers:
    items = want_list(value, field)
    if len(items) != 4:
        raise DecodeError(f"{field}: expected 4 items, got {len(items)}")
    try:
        answer = NodeAnswer(want_str(items[1], f"{field}.answer"))
    except ValueError:
        raise DecodeError(f"{field}.answer: {items[1]!r} is not an answer") from None
    return NodeTransfers(
        _name(items[0], f"{field}.node"),
        answer,
        _items(items[2], f"{field}.transfers", _progress),
        _items(items[3], f"{field}.sent", _duty),
    )


def decode_nodes(value: Any, field: str) -> tuple[NodeTransfers, ...]:
    return _items(value, field, decode_node_transfers)


def progress_fields(msg: TransferProgressMessage) -> list[Any]:
    match msg:
        case TransferProgressRequest(req_id):
            return [PROGRESS_REQUEST, req_id]
        case TransferProgressReply(req_id, transfers, sent):
            return [PROGRESS_REPLY, req_id, *_parts_fields(transfers, sent)]
    raise AssertionError(f"not a transfer progress message: {msg!r}")


def decode_progress(tag: int, f: list[Any]) -> TransferProgressMessage:
    if tag == PROGRESS_REQUEST and len(f) == 1:
        return TransferProgressRequest(_u64(f[0], "req_id"))
    if tag == PROGRESS_REPLY and len(f) == 3:
        return TransferProgressReply(
            _u64(f[0], "req_id"), _items(f[1], "transfers", _progress), _items(f[2], "sent", _duty)
        )
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a transfer progress message")
