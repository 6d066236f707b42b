"""The pure mapping between Riak KV HTTP requests and dynakv's data path (riak-http.md).

`map_request` turns a parsed HTTP request into either a final `HttpResponse` (every 4xx, and the
answers that need no store: `/`, `/ping`) or an operation for the server to run: `ObjectGet`,
`ObjectPut`, `ObjectDelete`, a `ServiceOp` for listings, props and preflists (riak_service.py), or a
`Route` for stats and metrics. The `render_*` functions turn the data path's replies back into
responses. Nothing here does I/O, reads a clock or draws global randomness, so the HTTP server stays a
thin shell and all of this is tested without sockets.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote_plus

from dynakv.api.riak_failure import failure_response
from dynakv.api.riak_headers import (
    BASE62,
    content_headers,
    encode_vclock,
    parse_content_type,
    parse_indexes,
    parse_links,
    parse_usermeta,
    parse_vclock,
    vtag,
)
from dynakv.api.riak_http import Headers, HttpResponse, text_response
from dynakv.api.riak_multipart import multipart_response, text_siblings_response, wants_multipart
from dynakv.api.riak_params import ObjectParams, parse_object_params, parse_query
from dynakv.api.riak_paths import Route, route_request
from dynakv.api.riak_service import JSON_TYPE, SERVICE_KINDS, ServiceOp, map_service
from dynakv.core.config import Limits
from dynakv.core.dvv import decode_context
from dynakv.core.errors import DecodeError
from dynakv.core.objects import Content
from dynakv.protocol.messages import (
    DeleteReply,
    DeleteRequest,
    Failure,
    GetReply,
    GetRequest,
    PutReply,
    PutRequest,
)

NEW_KEY_CHARS: Final = 22  # base62, about 131 random bits, as long as Riak's generated keys
# The map the client reads on every new connection (section 0.1): advertise only what is served, and
# `riak_kv_wm_buckets` above all, or the client falls back to the legacy URLs for everything.
RESOURCES: Final[Mapping[str, str]] = {
    "riak_kv_wm_buckets": "/buckets",
    "riak_kv_wm_raw": "/riak",
    "riak_kv_wm_ping": "/ping",
    "riak_kv_wm_stats": "/stats",
    "riak_kv_wm_preflist": "/buckets",
}
Headerish = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ObjectGet:
    """A fetch (`basic_quorum` and `notfound_ok` travel in the request); `multipart` says how to
    present siblings; `head` asks for headers only."""

    request: GetRequest
    vtag: str | None = None
    multipart: bool = True
    head: bool = False


@dataclass(frozen=True, slots=True)
class ObjectPut:
    """A store. `if_none_match` (If-None-Match: *) asks the server to answer 412 when the key holds a
    live value; `new_key` is a POST without a key, answered 201 with a Location."""

    request: PutRequest
    if_none_match: bool = False
    new_key: bool = False
    legacy: bool = False
    multipart: bool = True


@dataclass(frozen=True, slots=True)
class ObjectDelete:
    request: DeleteRequest


Operation = ObjectGet | ObjectPut | ObjectDelete | ServiceOp | Route


def resources_response() -> HttpResponse:
    body = json.dumps(dict(RESOURCES), sort_keys=True).encode()
    return HttpResponse(200, (("Content-Type", JSON_TYPE),), body)


def ping_response() -> HttpResponse:
    return HttpResponse(200, (("Content-Type", "text/plain"),), b"OK")


def new_key(rng: random.Random) -> bytes:
    """A server-chosen key: base62 so the client can take it from Location without decoding."""
    return "".join(rng.choice(BASE62) for _ in range(NEW_KEY_CHARS)).encode("ascii")


def _check_names(route: Route, limits: Limits) -> HttpResponse | None:
    if len(route.bucket) > limits.bucket_bytes_max:
        return text_response(400, f"bucket is {len(route.bucket)} bytes, above {limits.bucket_bytes_max}")
    if len(route.key) > limits.key_bytes_max:
        return text_response(400, f"key is {len(route.key)} bytes, above {limits.key_bytes_max}")
    return None


def _content(headers: Headers, body: bytes, now_ms: int, limits: Limits) -> Content | HttpResponse:
    if len(body) > limits.value_bytes_max:
        # 413 as Riak answers an object above its size limit; the client raises RiakError either way.
        return text_response(413, f"value is {len(body)} bytes, above {limits.value_bytes_max}")
    content_type = parse_content_type(headers.get("Content-Type"))
    if isinstance(content_type, HttpResponse):
        return content_type
    links = parse_links(headers.get_all("Link"))
    if isinstance(links, HttpResponse):
        return links
    indexes = parse_indexes(headers)
    if isinstance(indexes, HttpResponse):
        return indexes
    encoding = headers.get("Content-Encoding")
    content = Content(
        body,
        content_type=content_type[0],
        charset=content_type[1],
        content_encoding=encoding.strip() or None if encoding is not None else None,
        usermeta=parse_usermeta(headers),
        links=links,
        indexes=indexes,
        last_modified_ms=now_ms,
    )
    if not _is_text(content):
        return text_response(400, "object headers must be valid UTF-8 text")
    return content


def _is_text(content: Content) -> bool:
    """Whether every string is encodable: a server decoding header bytes with surrogateescape hands us
    lone surrogates for invalid UTF-8, which the stored encoding (msgpack) and quote_plus both refuse."""
    texts = [content.content_type, content.charset or "", content.content_encoding or ""]
    for row in (*content.usermeta, *content.links, *content.indexes):
        texts.extend(row)
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Input:
    """What an object request brings besides its route and parameters."""

    headers: Headers
    body: bytes
    now_ms: int
    limits: Limits


def _put(route: Route, params: ObjectParams, inp: _Input) -> ObjectPut | HttpResponse:
    headers = inp.headers
    content = _content(headers, inp.body, inp.now_ms, inp.limits)
    if isinstance(content, HttpResponse):
        return content
    context = parse_vclock(headers.get("X-Riak-Vclock"))
    if isinstance(context, HttpResponse):
        return context
    request = PutRequest(
        route.bucket, route.key, content, context,
        w=params.w, dw=params.dw, pw=params.pw, return_body=params.return_body, timeout_ms=params.timeout_ms,
    )  # fmt: skip
    if_none_match = (headers.get("If-None-Match") or "").strip() == "*"
    multipart = wants_multipart(headers.get("Accept"))
    return ObjectPut(request, if_none_match, route.kind == "object_new", route.legacy, multipart)


def _object_op(method: str, route: Route, params: ObjectParams, inp: _Input) -> Operation | HttpResponse:
    if method in ("GET", "HEAD"):
        request = GetRequest(
            route.bucket, route.key, params.r, params.pr, params.timeout_ms,
            basic_quorum=params.basic_quorum, notfound_ok=params.notfound_ok,
        )  # fmt: skip
        multipart = wants_multipart(inp.headers.get("Accept"))
        return ObjectGet(request, params.vtag, multipart=multipart, head=method == "HEAD")
    if method == "DELETE":
        context = parse_vclock(inp.headers.get("X-Riak-Vclock"))
        if isinstance(context, HttpResponse):
            return context
        # Riak's legacy delete quorum is rw (a delete once read, then wrote, so one number served as
        # both r and w). Here a delete writes a tombstone and nothing else, so rw can only mean how
        # many replicas must take that write: it stands for w when w is not given; an explicit w wins.
        # The client sends rw, r, w, dw, pr, pw on DELETE; r and pr have nothing to count and are
        # validated only.
        w = params.w if params.w is not None else params.rw
        return ObjectDelete(
            DeleteRequest(route.bucket, route.key, context, w, params.dw, params.pw, params.timeout_ms)
        )
    return _put(route, params, inp)


def map_request(
    method: str,
    raw_path: str,
    query_string: str,
    headers: Headerish,
    body: bytes,
    *,
    now_ms: int,
    rng: random.Random,
    limits: Limits,
) -> Operation | HttpResponse:
    """Map one request. Never raises on any input: every problem is a returned 4xx response."""
    method = method.upper()
    query = parse_query(query_string)
    if isinstance(query, HttpResponse):
        return query
    route = route_request(method, raw_path, query)
    if isinstance(route, HttpResponse):
        return route
    if route.kind == "resources":
        return resources_response()
    if route.kind == "ping":
        return ping_response()
    if route.kind in SERVICE_KINDS:
        too_long = _check_names(route, limits)
        return too_long or map_service(method, route, query, Headers.of(headers), body)
    if route.kind not in ("object", "object_new"):
        return route  # stats and metrics: the server answers them from the node's counters
    params = parse_object_params(query)
    if isinstance(params, HttpResponse):
        return params
    if route.kind == "object_new":
        route = Route("object_new", bucket=route.bucket, key=new_key(rng), legacy=route.legacy)
    too_long = _check_names(route, limits)
    if too_long is not None:
        return too_long
    return _object_op(method, route, params, _Input(Headers.of(headers), body, now_ms, limits))


# ---------------------------------------------------------------------------------------------------
# Replies into responses


def _had_tombstone(context: bytes) -> bool:
    """Whether a not-found context covers some write: then a tombstone was found, not nothing."""
    try:
        return len(decode_context(context)) > 0
    except DecodeError:
        return bool(context)


def not_found_response(context: bytes) -> HttpResponse:
    """404; with a tombstone, its clock and X-Riak-Deleted, so a later write supersedes the delete."""
    if not _had_tombstone(context):
        return text_response(404, "not found")
    return text_response(
        404, "not found", (("X-Riak-Deleted", "true"), ("X-Riak-Vclock", encode_vclock(context)))
    )


def single_response(bucket: bytes, content: Content, context: bytes, status: int = 200) -> HttpResponse:
    headers = [("X-Riak-Vclock", encode_vclock(context)), *content_headers(bucket, content)]
    headers.append(("Vary", "Accept-Encoding"))
    return HttpResponse(status, tuple(headers), content.value)


def siblings_response(
    bucket: bytes, siblings: tuple[Content, ...], context: bytes, multipart: bool
) -> HttpResponse:
    if multipart:
        return multipart_response(bucket, siblings, context)
    return text_siblings_response(siblings, context)


def render_get(op: ObjectGet, reply: GetReply | Failure) -> HttpResponse:
    if isinstance(reply, Failure):
        return failure_response(reply)
    bucket = op.request.bucket
    if op.vtag is not None:
        chosen = next((c for c in reply.siblings if vtag(c) == op.vtag), None)
        if chosen is None:
            return text_response(404, "not found", (("X-Riak-Vclock", encode_vclock(reply.context)),))
        return single_response(bucket, chosen, reply.context)
    if not reply.found or not reply.siblings:
        return not_found_response(reply.context)
    if len(reply.siblings) == 1:
        return single_response(bucket, reply.siblings[0], reply.context)
    return siblings_response(bucket, reply.siblings, reply.context, op.multipart)


def location(op: ObjectPut) -> str:
    bucket, key = quote_plus(op.request.bucket), quote_plus(op.request.key)
    return f"/riak/{bucket}/{key}" if op.legacy else f"/buckets/{bucket}/keys/{key}"


def render_put(op: ObjectPut, reply: PutReply | Failure) -> HttpResponse:
    """204, or 201 + Location for a new key; with returnbody the stored value (200, 201 or 300),
    because a 204 there would make the client wipe its local value (section 0.5)."""
    if isinstance(reply, Failure):
        return failure_response(reply)
    extra: tuple[tuple[str, str], ...] = (("Location", location(op)),) if op.new_key else ()
    if not op.request.return_body or not reply.siblings:
        return HttpResponse(201 if op.new_key else 204, extra)
    bucket = op.request.bucket
    if len(reply.siblings) == 1:
        response = single_response(bucket, reply.siblings[0], reply.context, 201 if op.new_key else 200)
    else:
        response = siblings_response(bucket, reply.siblings, reply.context, op.multipart)
    return HttpResponse(response.status, extra + response.headers, response.body)


def precondition_failed_response() -> HttpResponse:
    """The answer to If-None-Match: * on a key holding a live value."""
    return text_response(412, "precondition failed: the key already holds a value")


def render_delete(reply: DeleteReply | Failure) -> HttpResponse:
    """204 even for a missing key, as Riak 2.x answers."""
    if isinstance(reply, Failure):
        return failure_response(reply)
    return HttpResponse(204)
