"""Routing of Riak HTTP paths and query parameters (riak-http.md sections 1.2, 1.3 and 0.9)."""

from __future__ import annotations

import pytest

from dynakv.api.riak_http import HttpResponse
from dynakv.api.riak_params import ObjectParams, parse_object_params, parse_query
from dynakv.api.riak_paths import Route, decode_segment, route_request


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/", {}, Route("resources")),
        ("GET", "/ping", {}, Route("ping")),
        ("GET", "/stats", {}, Route("stats")),
        ("GET", "/metrics", {}, Route("metrics")),
        ("GET", "/buckets", {"buckets": "true"}, Route("list_buckets")),
        ("GET", "/buckets", {"buckets": "stream"}, Route("list_buckets", stream=True)),
        ("GET", "/buckets/b/keys", {"keys": "true", "props": "false"}, Route("list_keys", bucket=b"b")),
        ("GET", "/buckets/b/keys", {"keys": "stream"}, Route("list_keys", bucket=b"b", stream=True)),
        ("POST", "/buckets/b/keys", {}, Route("object_new", bucket=b"b")),
        ("GET", "/buckets/b/props", {}, Route("props", bucket=b"b")),
        ("PUT", "/buckets/b/props", {}, Route("props", bucket=b"b")),
        ("DELETE", "/buckets/b/props", {}, Route("props", bucket=b"b")),
        ("GET", "/buckets/b/keys/k", {}, Route("object", bucket=b"b", key=b"k")),
        ("PUT", "/buckets/b/keys/k", {}, Route("object", bucket=b"b", key=b"k")),
        ("POST", "/buckets/b/keys/k", {}, Route("object", bucket=b"b", key=b"k")),
        ("DELETE", "/buckets/b/keys/k/", {}, Route("object", bucket=b"b", key=b"k")),
        ("GET", "/buckets/b/keys/k/preflist", {}, Route("preflist", bucket=b"b", key=b"k")),
        ("GET", "/riak/b/k", {}, Route("object", bucket=b"b", key=b"k", legacy=True)),
        ("POST", "/riak/b", {}, Route("object_new", bucket=b"b", legacy=True)),
        ("GET", "/riak", {"buckets": "true"}, Route("list_buckets", legacy=True)),
        ("GET", "/riak/b", {"props": "true", "keys": "false"}, Route("props", bucket=b"b", legacy=True)),
        ("PUT", "/riak/b", {}, Route("props", bucket=b"b", legacy=True)),
        (
            "GET",
            "/riak/b",
            {"keys": "true", "props": "false"},
            Route("list_keys", bucket=b"b", legacy=True),
        ),
        (
            "GET",
            "/riak/b",
            {"keys": "stream"},
            Route("list_keys", bucket=b"b", stream=True, legacy=True, with_props=True),
        ),
    ],
)
def test_routes(method: str, path: str, query: dict[str, str], expected: Route) -> None:
    assert route_request(method, path, query) == expected


def test_segments_are_split_before_unquoting() -> None:
    # The client quote_plus-encodes each segment: "/" inside a key is %2F, space is "+".
    route = route_request("GET", "/buckets/my+bucket/keys/a%2Fb%20c+d%C3%A9", {})
    assert route == Route("object", bucket=b"my bucket", key="a/b c dé".encode())
    assert decode_segment("%FF%00") == b"\xff\x00"
    assert decode_segment("%2B") == b"+"


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/nope", {}),
        ("GET", "/buckets/b/keys/k/extra/more", {}),
        ("GET", "/buckets/b/other", {}),
        ("GET", "/riak/b/k/b,t,1", {}),
        ("GET", "/mapred", {}),
        ("GET", "/ping/x", {}),
        ("GET", "relative/path", {}),
        ("GET", "/types/t/buckets/b/keys/k", {}),
        ("PUT", "/types/t/props", {}),
        ("GET", "/types/t/buckets", {"buckets": "true"}),
        ("GET", "/metrics/x", {}),
    ],
)
def test_unknown_paths_are_404(method: str, path: str, query: dict[str, str]) -> None:
    result = route_request(method, path, query)
    assert isinstance(result, HttpResponse)
    assert result.status == 404
    assert result.header("Content-Type") == "text/plain"


@pytest.mark.parametrize(
    ("method", "path", "query", "allow"),
    [
        ("PUT", "/ping", {}, "GET, HEAD"),
        ("POST", "/stats", {}, "GET, HEAD"),
        ("DELETE", "/", {}, "GET, HEAD"),
        ("PATCH", "/buckets/b/keys/k", {}, "GET, HEAD, PUT, POST, DELETE"),
        ("POST", "/buckets/b/props", {}, "GET, HEAD, PUT, DELETE"),
        ("PUT", "/buckets/b/keys", {}, "POST"),
        ("DELETE", "/buckets/b/keys/k/preflist", {}, "GET, HEAD"),
        ("DELETE", "/riak/b", {}, "GET, HEAD, PUT"),
        ("POST", "/metrics", {}, "GET, HEAD"),
    ],
)
def test_wrong_methods_are_405_with_allow(method: str, path: str, query: dict[str, str], allow: str) -> None:
    result = route_request(method, path, query)
    assert isinstance(result, HttpResponse)
    assert (result.status, result.header("Allow")) == (405, allow)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/buckets", {}),
        ("/buckets", {"buckets": "yes"}),
        ("/buckets/b/keys", {}),
        ("/buckets/b/keys", {"keys": "false"}),
        ("/buckets//keys/k", {}),
        ("/riak//k", {}),
    ],
)
def test_bad_listings_and_empty_names_are_400(path: str, query: dict[str, str]) -> None:
    result = route_request("GET", path, query)
    assert isinstance(result, HttpResponse)
    assert result.status == 400


def test_query_takes_the_first_value_and_keeps_blanks() -> None:
    assert parse_query("r=2&r=3&returnbody=&x=%20y") == {"r": "2", "returnbody": "", "x": " y"}


def test_query_with_too_many_fields_is_400() -> None:
    result = parse_query("&".join(f"a{i}=1" for i in range(500)))
    assert isinstance(result, HttpResponse)
    assert result.status == 400


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ObjectParams()),
        (
            {"r": "2", "pr": "0", "w": "one", "dw": "quorum", "pw": "all"},
            ObjectParams(r=2, pr=0, w="one", dw="quorum", pw="all"),
        ),
        ({"r": "default", "rw": "3"}, ObjectParams(r=None, rw=3)),
        (
            {"basic_quorum": "true", "notfound_ok": "false"},
            ObjectParams(basic_quorum=True, notfound_ok=False),
        ),
        ({"notfound_ok": "default"}, ObjectParams()),
        ({"timeout": "1500"}, ObjectParams(timeout_ms=1500)),
        ({"returnbody": "true"}, ObjectParams(return_body=True)),
        ({"returnbody": "TRUE"}, ObjectParams(return_body=False)),
        ({"returnbody": "1"}, ObjectParams(return_body=False)),
        ({"vtag": "abc", "asis": "true", "unknown": "x"}, ObjectParams(vtag="abc")),
    ],
)
def test_object_params(query: dict[str, str], expected: ObjectParams) -> None:
    assert parse_object_params(query) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("r", "two"),
        ("r", "-1"),
        ("r", "1.5"),
        ("r", ""),
        ("w", " 1"),
        ("w", "+1"),
        ("dw", "ALL"),
        ("rw", "1e3"),
        ("pr", "9999999999"),
        ("pw", "\uff10"),  # a fullwidth zero: str.isdigit() would accept it
        ("basic_quorum", "yes"),
        ("notfound_ok", "1"),
        ("timeout", "0"),
        ("timeout", "-5"),
        ("timeout", "1s"),
        ("timeout", ""),
    ],
)
def test_bad_params_are_400_naming_the_parameter(name: str, value: str) -> None:
    result = parse_object_params({name: value})
    assert isinstance(result, HttpResponse)
    assert result.status == 400
    assert result.header("Content-Type") == "text/plain"
    assert result.body.startswith(f"{name} query parameter".encode())
