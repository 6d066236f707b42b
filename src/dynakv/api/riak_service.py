"""The pure mapping of Riak's service endpoints: listings, bucket properties and preference lists
(riak-http.md sections 1.8 and 1.9).

`map_service` turns a routed request into a `ServiceOp` (the node request to send, and how to answer)
or a final 4xx; `render_service` turns the node's reply into the response; `stream_chunks` gives the
body of a streamed listing piece by piece. No I/O here either: the server only sends and writes.

Names (keys, buckets) are bytes, but JSON carries text: they are decoded as UTF-8 with invalid bytes
replaced by U+FFFD, so a key that is not valid UTF-8 is listed under a name that cannot fetch it. Riak's
HTTP listing has the same limit; the native protocol carries names as bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from dynakv.api.riak_failure import failure_response
from dynakv.api.riak_http import Headers, HttpResponse, text_response
from dynakv.api.riak_params import parse_timeout
from dynakv.api.riak_paths import Route
from dynakv.protocol.messages import (
    BucketPropsReply,
    Failure,
    GetBucketProps,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    NodeReply,
    PreflistReply,
    PreflistRequest,
    PropValue,
    ResetBucketProps,
    ServiceRequest,
    SetBucketProps,
)

JSON_TYPE: Final = "application/json"
SERVICE_KINDS: Final = frozenset({"list_buckets", "list_keys", "props", "preflist"})
# Names per object of a streamed listing; Riak sends one object per vnode's batch.
STREAM_CHUNK_NAMES: Final = 1000
# Props whose only JSON shape is a list or an object (Riak's commit hooks and module/function pairs):
# passed on as given, for the node to check they are the values it serves.
LIST_PROPS: Final = frozenset({"precommit", "postcommit"})
OBJECT_PROPS: Final = frozenset({"chash_keyfun", "linkfun"})
ListField = Literal["keys", "buckets"]


@dataclass(frozen=True, slots=True)
class ServiceOp:
    """A service request for the node. `stream` asks for a chunked listing; `with_props` is the legacy
    key listing that also shows the bucket's props (a second request, GetBucketProps)."""

    request: ServiceRequest
    stream: bool = False
    with_props: bool = False


def map_service(
    method: str, route: Route, query: Mapping[str, str], headers: Headers, body: bytes
) -> ServiceOp | HttpResponse:
    """The op of a list_buckets, list_keys, props or preflist route (its method already checked)."""
    if route.kind == "preflist":
        return ServiceOp(PreflistRequest(route.bucket, route.key))
    if route.kind == "props":
        return _props_op(method, route.bucket, headers, body)
    timeout_ms: int | None = None
    if "timeout" in query:
        parsed = parse_timeout(query["timeout"])
        if isinstance(parsed, HttpResponse):
            return parsed
        timeout_ms = parsed
    if route.kind == "list_buckets":
        return ServiceOp(ListBucketsRequest(timeout_ms), stream=route.stream)
    assert route.kind == "list_keys", route
    return ServiceOp(ListKeysRequest(route.bucket, timeout_ms), route.stream, route.with_props)


def _props_op(method: str, bucket: bytes, headers: Headers, body: bytes) -> ServiceOp | HttpResponse:
    if method in ("GET", "HEAD"):
        return ServiceOp(GetBucketProps(bucket))
    if method == "DELETE":
        return ServiceOp(ResetBucketProps(bucket))
    props = parse_props_body(headers.get("Content-Type"), body)
    if isinstance(props, HttpResponse):
        return props
    return ServiceOp(SetBucketProps(bucket, props))


def parse_props_body(content_type: str | None, body: bytes) -> dict[str, PropValue] | HttpResponse:
    """`{"props": {...}}` with Content-Type application/json: the props to change, else 415 (another
    content type, or none) or 400 with the reason."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != JSON_TYPE:
        return text_response(415, f"bucket props must be sent as {JSON_TYPE}, not {media or 'nothing'!r}")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        return text_response(400, f"bucket props are not valid JSON: {err}")
    if not isinstance(document, dict) or not isinstance(document.get("props"), dict):
        return text_response(400, 'bucket props must be a JSON object {"props": {...}}')
    props: dict[str, PropValue] = {}
    for name, value in document["props"].items():
        if not _prop_shape_ok(name, value):
            return text_response(400, f"bucket property {name!r} has a value of the wrong type: {value!r}")
        props[name] = value
    return props


def _prop_shape_ok(name: str, value: object) -> bool:
    if isinstance(value, bool | int | str):
        return True
    if isinstance(value, list):
        return name in LIST_PROPS
    if isinstance(value, dict):
        return name in OBJECT_PROPS
    return False  # null, or a number with a fraction


# ---------------------------------------------------------------------------------------------------
# Replies into responses


def expected_replies(op: ServiceOp) -> tuple[type, ...]:
    """The reply types the node may answer `op` with; any other is a bug in the node."""
    request = op.request
    if isinstance(request, ListKeysRequest | ListBucketsRequest):
        return (ListReply, Failure)
    if isinstance(request, PreflistRequest):
        return (PreflistReply, Failure)
    return (BucketPropsReply, Failure)


def json_response(document: object, status: int = 200) -> HttpResponse:
    # default=str: props come from the node as plain values; anything else is shown, not a crash.
    body = json.dumps(document, default=str).encode()
    return HttpResponse(status, (("Content-Type", JSON_TYPE),), body)


def decode_names(names: Sequence[bytes]) -> list[str]:
    """Names as JSON text: UTF-8, invalid bytes replaced (see the module docstring)."""
    return [name.decode("utf-8", "replace") for name in names]


def list_field(op: ServiceOp) -> ListField:
    return "buckets" if isinstance(op.request, ListBucketsRequest) else "keys"


def render_service(op: ServiceOp, reply: NodeReply, props: NodeReply | None = None) -> HttpResponse:
    """The answer to `op` given the node's reply (and, for a legacy listing with props, the reply to
    its GetBucketProps). A Failure answers per its kind; the caller has checked `expected_replies`."""
    if isinstance(reply, Failure):
        return failure_response(reply)
    if isinstance(props, Failure):
        return failure_response(props)
    if isinstance(reply, ListReply):
        document: dict[str, object] = {}
        if isinstance(props, BucketPropsReply):
            document["props"] = dict(props.props)
        document[list_field(op)] = decode_names(reply.names)
        return json_response(document)
    if isinstance(reply, PreflistReply):
        entries = [{"partition": e.partition, "node": e.node, "primary": e.primary} for e in reply.entries]
        return json_response({"preflist": entries})
    assert isinstance(reply, BucketPropsReply), reply
    if isinstance(op.request, GetBucketProps):
        return json_response({"props": dict(reply.props)})
    return HttpResponse(204)


def stream_chunks(op: ServiceOp, reply: ListReply, props: BucketPropsReply | None = None) -> Iterator[bytes]:
    """A streamed listing's body: back-to-back JSON objects of at most STREAM_CHUNK_NAMES names each,
    ending with an empty one as Riak's does (`{"keys":[]}`). The client cuts the stream at each `}`,
    so the props of a legacy listing (which hold `}`s of their own) come first, in their own object."""
    field = list_field(op)
    if props is not None:
        yield json.dumps({"props": dict(props.props)}, default=str).encode()
    names = reply.names
    for start in range(0, len(names), STREAM_CHUNK_NAMES):
        yield json.dumps({field: decode_names(names[start : start + STREAM_CHUNK_NAMES])}).encode()
    yield json.dumps({field: []}).encode()
