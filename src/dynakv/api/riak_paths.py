"""Routing of Riak KV HTTP paths (riak-http.md sections 1.2 and 0.9) to a small typed `Route`.

The client `quote_plus`-encodes each path segment, so a `/` inside a key arrives as `%2F`: the raw path
is split on `/` first and each segment is unquoted afterwards, with `+` meaning space. Bucket and key
are bytes because a percent-escape may stand for any byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

from dynakv.api.riak_http import HttpResponse, text_response

RouteKind = Literal[
    "resources",
    "ping",
    "stats",
    "metrics",
    "list_buckets",
    "list_keys",
    "props",
    "object",
    "object_new",
    "preflist",
]

# The methods each kind of resource answers; anything else is a 405 naming these in Allow.
ALLOWED: Final[Mapping[RouteKind, tuple[str, ...]]] = {
    "resources": ("GET", "HEAD"),
    "ping": ("GET", "HEAD"),
    "stats": ("GET", "HEAD"),
    "metrics": ("GET", "HEAD"),
    "list_buckets": ("GET", "HEAD"),
    "list_keys": ("GET", "HEAD"),
    "props": ("GET", "HEAD", "PUT", "DELETE"),
    "object": ("GET", "HEAD", "PUT", "POST", "DELETE"),
    "object_new": ("POST",),
    "preflist": ("GET", "HEAD"),
}
STREAM_VALUES: Final = ("true", "stream")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes. `stream` is for listings; `legacy` marks the `/riak/...` URL scheme;
    `with_props` is the legacy key listing that also returns the bucket's props (unless props=false)."""

    kind: RouteKind
    bucket: bytes = b""
    key: bytes = b""
    stream: bool = False
    legacy: bool = False
    with_props: bool = False


class BadSegment(ValueError):
    pass


def decode_segment(segment: str) -> bytes:
    """One path segment, `+` as space then percent-escapes, as the client's quote_plus encodes it."""
    try:
        raw = segment.encode("utf-8", "strict")
    except UnicodeEncodeError as err:
        raise BadSegment(f"path segment is not valid text: {err.reason}") from None
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _not_found() -> HttpResponse:
    return text_response(404, "not found")


def _method_check(route: Route, method: str) -> Route | HttpResponse:
    allowed = ALLOWED[route.kind]
    if method in allowed:
        return route
    return text_response(405, f"method {method} not allowed here", (("Allow", ", ".join(allowed)),))


def _listing(kind: RouteKind, value: str | None, bucket: bytes = b"", legacy: bool = False) -> Route | None:
    if value not in STREAM_VALUES:
        return None
    return Route(kind, bucket=bucket, stream=value == "stream", legacy=legacy)


def _new_scheme(parts: list[bytes], query: Mapping[str, str], method: str) -> Route | HttpResponse:
    """`/buckets...` paths; `parts` are the decoded segments after `buckets`."""
    if not parts:
        listing = _listing("list_buckets", query.get("buckets"))
        return listing or text_response(400, "list buckets with buckets=true or buckets=stream")
    bucket, rest = parts[0], parts[1:]
    if rest == [b"props"]:
        return Route("props", bucket=bucket)
    if rest == [b"keys"]:
        listing = _listing("list_keys", query.get("keys"), bucket)
        if listing is not None and method in ("GET", "HEAD"):
            return listing
        if method in ("GET", "HEAD"):
            return text_response(400, "list keys with keys=true or keys=stream")
        return Route("object_new", bucket=bucket)
    if len(rest) == 2 and rest[0] == b"keys":
        return Route("object", bucket=bucket, key=rest[1])
    if len(rest) == 3 and rest[0] == b"keys" and rest[2] == b"preflist":
        return Route("preflist", bucket=bucket, key=rest[1])
    return _not_found()


def _legacy_scheme(parts: list[bytes], query: Mapping[str, str], method: str) -> Route | HttpResponse:
    """`/riak...` paths. Riak's legacy dispatch picks by query string: `/riak/B` is the bucket's props
    unless props=false, a key listing when keys=true|stream, and POST stores under a new key."""
    if not parts:
        listing = _listing("list_buckets", query.get("buckets"), legacy=True)
        return listing or text_response(400, "list buckets with buckets=true")
    if len(parts) == 2:
        return Route("object", bucket=parts[0], key=parts[1], legacy=True)
    if len(parts) != 1:
        return _not_found()  # link walking (/riak/B/K/b,t,1) is not served
    bucket = parts[0]
    if method == "POST":
        return Route("object_new", bucket=bucket, legacy=True)
    keys = query.get("keys")
    if method in ("GET", "HEAD") and keys in STREAM_VALUES:
        with_props = query.get("props") != "false"
        return Route("list_keys", bucket=bucket, stream=keys == "stream", legacy=True, with_props=with_props)
    if method == "DELETE":
        # Riak's legacy props resource has no DELETE; the client reads 405 as "not supported".
        return text_response(
            405, "the legacy bucket resource cannot be deleted", (("Allow", "GET, HEAD, PUT"),)
        )
    return Route("props", bucket=bucket, legacy=True)


def _split(path: str) -> list[str]:
    segments = path.split("/")
    if segments and segments[0] == "":
        segments = segments[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]  # a trailing slash names the same resource
    return segments


def route_request(method: str, raw_path: str, query: Mapping[str, str]) -> Route | HttpResponse:
    """The route of a request, or the 400/404/405 answer. `query` holds the first value of each name."""
    method = method.upper()
    if not raw_path.startswith("/"):
        return _not_found()
    segments = _split(raw_path)
    if not segments:
        return _method_check(Route("resources"), method)
    head, rest = segments[0], segments[1:]
    if head in ("ping", "stats", "metrics") and not rest:
        kind: RouteKind = "ping" if head == "ping" else "stats" if head == "stats" else "metrics"
        return _method_check(Route(kind), method)
    if head == "types":
        # Bucket types are not served (and `riak_kv_wm_bucket_type` is not advertised, so the client
        # never builds these paths): a 404 saying so, as Riak answers an unknown bucket type.
        return text_response(404, "bucket types are not served: use the default type (/buckets/...)")
    if head not in ("buckets", "riak"):
        return _not_found()
    try:
        parts = [decode_segment(s) for s in rest]
    except BadSegment as err:
        return text_response(400, str(err))
    if any(not p for p in parts):
        return text_response(400, "bucket and key must not be empty")
    scheme = _new_scheme if head == "buckets" else _legacy_scheme
    result = scheme(parts, query, method)
    return result if isinstance(result, HttpResponse) else _method_check(result, method)
