"""Service requests and replies <-> msgpack field lists, for client connections (tags 40 and up).

wire/codec.py frames them like the object requests: `[tag, request_id, field, ...]`. Requests take
40-48 and replies 50-54; a failure is the shared `Failure` frame (tag 33). Bucket property values travel
as msgpack values shaped like Riak's JSON (null, booleans, integers, strings, lists, maps with string
keys), bounded in depth so that a hostile frame cannot recurse without end.

Decoding trusts nothing and raises DecodeError only; codec.py turns that into RemoteProtocolError.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core.codec import (
    want_bool,
    want_bytes,
    want_int,
    want_list,
    want_list_of,
    want_optional,
    want_str,
)
from dynakv.core.errors import DecodeError
from dynakv.protocol.admin_messages import (
    MemberStatus,
    RepairRequest,
    RepairStatus,
    RepairStatusRequest,
    StatusReply,
    StatusRequest,
)
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitRequest,
    ClusterPlanReply,
    ClusterPlanRequest,
    ClusterStageRequest,
    ClusterTransfersReply,
    ClusterTransfersRequest,
)
from dynakv.protocol.messages import (
    BucketPropsReply,
    GetBucketProps,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    PreflistEntry,
    PreflistReply,
    PreflistRequest,
    PropValue,
    ResetBucketProps,
    ServiceReply,
    ServiceRequest,
    SetBucketProps,
)
from dynakv.wire.cluster_admin_codec import (
    CLUSTER_REPLY_TAGS,
    CLUSTER_REQUEST_TAGS,
    cluster_reply_fields,
    cluster_request_fields,
    decode_cluster_reply,
    decode_cluster_request,
)

LIST_KEYS, LIST_BUCKETS, GET_PROPS, SET_PROPS, RESET_PROPS = 40, 41, 42, 43, 44
PREFLIST, REPAIR, REPAIR_STATUS, STATUS = 45, 46, 47, 48
LIST_REPLY, PROPS_REPLY, PREFLIST_REPLY, REPAIR_STATUS_REPLY, STATUS_REPLY = 50, 51, 52, 53, 54
# Cluster admin requests and replies (wire/cluster_admin_codec.py) travel the same way.
SERVICE_REQUEST_TAGS: Final = frozenset(range(40, 49)) | CLUSTER_REQUEST_TAGS
SERVICE_REPLY_TAGS: Final = frozenset(range(50, 55)) | CLUSTER_REPLY_TAGS

_INT64_MAX: Final = (1 << 63) - 1
# Riak's props are flat but for precommit/postcommit lists of {mod, fun} maps: depth 3 is what an
# honest peer sends; a little room, no room for a recursion bomb.
_VALUE_DEPTH_MAX: Final = 8
_NAME_CHARS_MAX: Final = 1024

# Where a non-failure service reply goes, by its type (Failure is codec.py's).
NonFailureReply = (
    ListReply
    | BucketPropsReply
    | PreflistReply
    | RepairStatus
    | StatusReply
    | ClusterPlanReply
    | ClusterTransfersReply
)


def _u64(value: Any, field: str) -> int:
    return want_int(value, field, 0, _INT64_MAX)


def _name(value: Any, field: str) -> str:
    text = want_str(value, field)
    if not 0 < len(text) <= _NAME_CHARS_MAX:
        raise DecodeError(f"{field}: a name is 1 to {_NAME_CHARS_MAX} characters")
    return text


def json_value(value: Any, field: str, depth: int = 0) -> object:
    """A value shaped like JSON (msgpack's nil, bool, int, str, array, map with str keys), checked."""
    if depth > _VALUE_DEPTH_MAX:
        raise DecodeError(f"{field}: nested deeper than {_VALUE_DEPTH_MAX}")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list):
        return [json_value(v, f"{field}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        items = value.items()
        return {want_str(k, f"{field} key"): json_value(v, f"{field}.{k}", depth + 1) for k, v in items}
    raise DecodeError(f"{field}: {type(value).__name__} is not a JSON-like value")


def _prop_value(value: Any, field: str) -> PropValue:
    checked = json_value(value, field)
    if checked is None:
        raise DecodeError(f"{field}: a property value cannot be null")
    assert isinstance(checked, int | str | bool | list | dict)  # what json_value returns, bar None
    return checked


def _props(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{field}: expected a map, got {type(value).__name__}")
    return {want_str(k, f"{field} key"): v for k, v in value.items()}


# -- requests ------------------------------------------------------------------------------------------


def service_request_fields(request: ServiceRequest) -> list[Any]:
    """The frame of one service request without its request id: `[tag, field, ...]`."""
    match request:
        case ListKeysRequest(bucket, timeout_ms):
            return [LIST_KEYS, bucket, timeout_ms]
        case ListBucketsRequest(timeout_ms):
            return [LIST_BUCKETS, timeout_ms]
        case GetBucketProps(bucket):
            return [GET_PROPS, bucket]
        case SetBucketProps(bucket, props):
            return [SET_PROPS, bucket, dict(props)]
        case ResetBucketProps(bucket):
            return [RESET_PROPS, bucket]
        case PreflistRequest(bucket, key):
            return [PREFLIST, bucket, key]
        case RepairRequest(partition):
            return [REPAIR, partition]
        case RepairStatusRequest():
            return [REPAIR_STATUS]
        case StatusRequest():
            return [STATUS]
        case (
            ClusterStageRequest() | ClusterPlanRequest() | ClusterCommitRequest() | ClusterTransfersRequest()
        ):
            return cluster_request_fields(request)
    raise AssertionError(f"not a service request: {request!r}")


def decode_service_request(tag: int, f: list[Any]) -> ServiceRequest:
    if tag in CLUSTER_REQUEST_TAGS:
        return decode_cluster_request(tag, f)
    timeout = "timeout_ms"
    if tag == LIST_KEYS and len(f) == 2:
        return ListKeysRequest(want_bytes(f[0], "bucket"), want_optional(f[1], timeout, _u64))
    if tag == LIST_BUCKETS and len(f) == 1:
        return ListBucketsRequest(want_optional(f[0], timeout, _u64))
    if tag in (GET_PROPS, RESET_PROPS) and len(f) == 1:
        bucket = want_bytes(f[0], "bucket")
        return GetBucketProps(bucket) if tag == GET_PROPS else ResetBucketProps(bucket)
    if tag == SET_PROPS and len(f) == 2:
        props = {k: _prop_value(v, f"props.{k}") for k, v in _props(f[1], "props").items()}
        return SetBucketProps(want_bytes(f[0], "bucket"), props)
    if tag == PREFLIST and len(f) == 2:
        return PreflistRequest(want_bytes(f[0], "bucket"), want_bytes(f[1], "key"))
    if tag == REPAIR and len(f) == 1:
        return RepairRequest(want_optional(f[0], "partition", _u64))
    if tag == REPAIR_STATUS and not f:
        return RepairStatusRequest()
    if tag == STATUS and not f:
        return StatusRequest()
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a service request")


# -- replies -------------------------------------------------------------------------------------------


def service_reply_fields(reply: NonFailureReply) -> list[Any]:
    """The frame of one service reply (not a failure) without its request id: `[tag, field, ...]`."""
    match reply:
        case ListReply(names):
            return [LIST_REPLY, list(names)]
        case BucketPropsReply(props):
            return [PROPS_REPLY, dict(props)]
        case PreflistReply(entries):
            return [PREFLIST_REPLY, [[e.partition, e.node, e.primary] for e in entries]]
        case RepairStatus(total, done, repaired, failed, finished):
            return [REPAIR_STATUS_REPLY, total, done, repaired, failed, finished]
        case StatusReply():
            members = [[m.name, m.reachable, m.partitions_owned, m.state] for m in reply.members]
            counts = [reply.hints_pending, reply.transfers_pending, reply.partitions, reply.n_val]
            return [STATUS_REPLY, reply.node, members, *counts, reply.trees_building, reply.transfers_active]
        case ClusterPlanReply() | ClusterTransfersReply():
            return cluster_reply_fields(reply)
    raise AssertionError(f"not a service reply: {reply!r}")


def _preflist_entry(value: Any, field: str) -> PreflistEntry:
    items = want_list(value, field)
    if len(items) != 3:
        raise DecodeError(f"{field}: expected 3 items, got {len(items)}")
    return PreflistEntry(
        _u64(items[0], f"{field}.partition"),
        _name(items[1], f"{field}.node"),
        want_bool(items[2], f"{field}.primary"),
    )


def _member(value: Any, field: str) -> MemberStatus:
    items = want_list(value, field)
    if len(items) not in (3, 4):
        raise DecodeError(f"{field}: expected 3 or 4 items, got {len(items)}")
    state = _name(items[3], f"{field}.state") if len(items) == 4 else "valid"
    return MemberStatus(
        _name(items[0], f"{field}.name"),
        want_bool(items[1], f"{field}.reachable"),
        _u64(items[2], f"{field}.partitions_owned"),
        state,
    )


def decode_service_reply(tag: int, f: list[Any]) -> ServiceReply:
    if tag in CLUSTER_REPLY_TAGS:
        return decode_cluster_reply(tag, f)
    if tag == LIST_REPLY and len(f) == 1:
        return ListReply(tuple(want_list_of(f[0], "names", want_bytes)))
    if tag == PROPS_REPLY and len(f) == 1:
        return BucketPropsReply({k: json_value(v, f"props.{k}") for k, v in _props(f[0], "props").items()})
    if tag == PREFLIST_REPLY and len(f) == 1:
        return PreflistReply(tuple(want_list_of(f[0], "entries", _preflist_entry)))
    if tag == REPAIR_STATUS_REPLY and len(f) == 5:
        total, done, repaired, failed = (_u64(v, name) for v, name in zip(f[:4], _REPAIR_FIELDS, strict=True))
        if done > total:
            raise DecodeError(f"partitions_done: {done} is above partitions_total {total}")
        return RepairStatus(total, done, repaired, failed, want_bool(f[4], "finished"))
    if tag == STATUS_REPLY and len(f) == 8:
        counts = [_u64(v, name) for v, name in zip(f[2:], _STATUS_COUNTS, strict=True)]
        members = tuple(want_list_of(f[1], "members", _member))
        return StatusReply(_name(f[0], "node"), members, *counts)
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a service reply")


_REPAIR_FIELDS: Final = ("partitions_total", "partitions_done", "keys_repaired", "exchanges_failed")
_STATUS_COUNTS: Final = (
    "hints_pending",
    "transfers_pending",
    "partitions",
    "n_val",
    "trees_building",
    "transfers_active",
)
