"""Listings, bucket props and preflists: requests into node requests and replies into Riak's answers
(riak-http.md sections 1.8 and 1.9), without sockets."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.api.riak_http import HttpResponse
from dynakv.api.riak_mapping import Operation, map_request
from dynakv.api.riak_service import (
    STREAM_CHUNK_NAMES,
    ServiceOp,
    expected_replies,
    parse_props_body,
    render_service,
    stream_chunks,
)
from dynakv.core.config import Limits
from dynakv.protocol.messages import (
    BucketPropsReply,
    Failure,
    FailureKind,
    GetBucketProps,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    PreflistEntry,
    PreflistReply,
    PreflistRequest,
    ResetBucketProps,
    SetBucketProps,
)

LIMITS = Limits(key_bytes_max=32, bucket_bytes_max=16, value_bytes_max=1024)
JSON_HEADERS = (("Content-Type", "application/json"),)
PROPS = {"name": "b", "n_val": 3, "allow_mult": True, "w": "quorum", "precommit": []}


def request(
    method: str, path: str, query: str = "", headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> Operation | HttpResponse:
    return map_request(method, path, query, headers, body, now_ms=0, rng=random.Random(1), limits=LIMITS)


def text_error(result: object, status: int) -> str:
    assert isinstance(result, HttpResponse), result
    assert (result.status, result.header("Content-Type")) == (status, "text/plain"), result
    return result.body.decode()


# -- requests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/buckets", "buckets=true", ServiceOp(ListBucketsRequest())),
        ("GET", "/buckets", "buckets=stream&timeout=500", ServiceOp(ListBucketsRequest(500), stream=True)),
        ("GET", "/riak", "buckets=true", ServiceOp(ListBucketsRequest())),
        ("GET", "/buckets/b/keys", "keys=true&props=false", ServiceOp(ListKeysRequest(b"b"))),
        ("GET", "/buckets/b/keys", "keys=stream", ServiceOp(ListKeysRequest(b"b"), stream=True)),
        ("GET", "/riak/b", "keys=true&props=false", ServiceOp(ListKeysRequest(b"b"))),
        ("GET", "/riak/b", "keys=true", ServiceOp(ListKeysRequest(b"b"), with_props=True)),
        ("GET", "/riak/b", "keys=stream", ServiceOp(ListKeysRequest(b"b"), stream=True, with_props=True)),
        ("GET", "/buckets/b/props", "", ServiceOp(GetBucketProps(b"b"))),
        ("HEAD", "/buckets/b/props", "", ServiceOp(GetBucketProps(b"b"))),
        ("GET", "/riak/b", "props=true&keys=false", ServiceOp(GetBucketProps(b"b"))),
        ("GET", "/riak/b", "", ServiceOp(GetBucketProps(b"b"))),
        ("DELETE", "/buckets/b/props", "", ServiceOp(ResetBucketProps(b"b"))),
        ("GET", "/buckets/b/keys/k/preflist", "", ServiceOp(PreflistRequest(b"b", b"k"))),
        ("GET", "/buckets/a+b/keys/c%2Fd/preflist", "", ServiceOp(PreflistRequest(b"a b", b"c/d"))),
    ],
)
def test_service_requests(method: str, path: str, query: str, expected: ServiceOp) -> None:
    assert request(method, path, query) == expected


@pytest.mark.parametrize("path", ["/buckets/b/props", "/riak/b"])
def test_props_put_maps_the_changes(path: str) -> None:
    body = json.dumps(
        {
            "props": {
                "n_val": 2,
                "w": 1,
                "dw": "all",
                "allow_mult": False,
                "precommit": [],
                "postcommit": [],
                "chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"},
                "linkfun": {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"},
            },
            "other": "ignored",
        }
    ).encode()
    op = request("PUT", path, "", (("Content-Type", "application/json; charset=utf-8"),), body)
    assert isinstance(op, ServiceOp)
    assert isinstance(op.request, SetBucketProps)
    assert op.request.bucket == b"b"
    assert dict(op.request.props) == json.loads(body)["props"]
    assert request("PUT", path, "", JSON_HEADERS, b'{"props": {}}') == ServiceOp(SetBucketProps(b"b", {}))


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-json", "json", ""])
def test_props_put_with_another_content_type_is_415(content_type: str | None) -> None:
    headers = () if content_type is None else (("Content-Type", content_type),)
    text_error(request("PUT", "/buckets/b/props", "", headers, b'{"props": {}}'), 415)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\xfd", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),  # nesting deep enough to exhaust the recursion limit
        (b"[]", '{"props": {...}}'),
        (b'"props"', '{"props": {...}}'),
        (b"{}", '{"props": {...}}'),
        (b'{"props": [1]}', '{"props": {...}}'),
        (b'{"props": null}', '{"props": {...}}'),
        (b'{"props": {"n_val": [3]}}', "'n_val'"),
        (b'{"props": {"r": {"x": 1}}}', "'r'"),
        (b'{"props": {"precommit": {"mod": "m"}}}', "'precommit'"),
        (b'{"props": {"linkfun": []}}', "'linkfun'"),
        (b'{"props": {"n_val": null}}', "'n_val'"),
        (b'{"props": {"n_val": 2.5}}', "'n_val'"),
    ],
)
def test_bad_props_bodies_are_400_with_a_reason(body: bytes, reason: str) -> None:
    assert reason in text_error(request("PUT", "/buckets/b/props", "", JSON_HEADERS, body), 400)


@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_props_body_maps_or_is_a_4xx(body: bytes) -> None:
    result = parse_props_body("application/json", body)
    if isinstance(result, HttpResponse):
        assert result.status == 400
    else:
        assert all(isinstance(name, str) for name in result)


@pytest.mark.parametrize(
    ("method", "path", "query", "status"),
    [
        ("GET", "/buckets", "buckets=false", 400),
        ("GET", "/buckets", "", 400),
        ("GET", "/buckets/b/keys", "keys=yes", 400),
        ("GET", "/buckets", "buckets=true&timeout=never", 400),
        ("GET", "/buckets/b/keys", "keys=stream&timeout=0", 400),
        ("GET", "/buckets/" + "b" * 17 + "/props", "", 400),
        ("GET", "/buckets/" + "b" * 17 + "/keys", "keys=true", 400),
        ("GET", "/buckets/b/keys/" + "k" * 33 + "/preflist", "", 400),
        ("DELETE", "/riak/b", "", 405),
        ("POST", "/buckets/b/props", "", 405),
        ("PUT", "/buckets/b/keys/k/preflist", "", 405),
        ("GET", "/types/t/buckets/b/props", "", 404),
        ("GET", "/types/t/props", "", 404),
    ],
)
def test_bad_service_requests(method: str, path: str, query: str, status: int) -> None:
    text_error(request(method, path, query), status)


def test_bucket_types_are_a_404_saying_so() -> None:
    assert "bucket types are not served" in text_error(request("GET", "/types/t/buckets/b/keys/k"), 404)


# -- replies -------------------------------------------------------------------------------------------


def json_of(response: HttpResponse, status: int = 200) -> object:
    assert (response.status, response.header("Content-Type")) == (status, "application/json")
    return json.loads(response.body)


def test_listings_are_json() -> None:
    keys = ServiceOp(ListKeysRequest(b"b"))
    got = json_of(render_service(keys, ListReply((b"a", b"b c", "é".encode()))))
    assert got == {"keys": ["a", "b c", "é"]}
    buckets = ServiceOp(ListBucketsRequest())
    assert json_of(render_service(buckets, ListReply(()))) == {"buckets": []}


def test_names_that_are_not_utf8_are_listed_with_replacement_characters() -> None:
    got = json_of(render_service(ServiceOp(ListKeysRequest(b"b")), ListReply((b"ok\xff",))))
    assert got == {"keys": ["ok\ufffd"]}


def test_legacy_listing_shows_the_props_too() -> None:
    op = ServiceOp(ListKeysRequest(b"b"), with_props=True)
    got = json_of(render_service(op, ListReply((b"k",)), BucketPropsReply(PROPS)))
    assert got == {"props": PROPS, "keys": ["k"]}
    failed = render_service(op, ListReply((b"k",)), Failure(FailureKind.TIMEOUT, "slow"))
    assert failed.status == 503


def test_props_replies() -> None:
    reply = BucketPropsReply(PROPS)
    assert json_of(render_service(ServiceOp(GetBucketProps(b"b")), reply)) == {"props": PROPS}
    assert render_service(ServiceOp(SetBucketProps(b"b", {"n_val": 2})), reply) == HttpResponse(204)
    assert render_service(ServiceOp(ResetBucketProps(b"b")), reply) == HttpResponse(204)


def test_preflist_reply() -> None:
    reply = PreflistReply((PreflistEntry(3, "dev1", True), PreflistEntry(4, "dev2", False)))
    got = json_of(render_service(ServiceOp(PreflistRequest(b"b", b"k")), reply))
    assert got == {
        "preflist": [
            {"partition": 3, "node": "dev1", "primary": True},
            {"partition": 4, "node": "dev2", "primary": False},
        ]
    }


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (Failure(FailureKind.BAD_REQUEST, "n_val: must be 1..16", "n_val"), 400),
        (Failure(FailureKind.UNAVAILABLE, "too few replicas"), 503),
        (Failure(FailureKind.TIMEOUT, "slow"), 503),
        (Failure(FailureKind.OVERLOADED, "busy"), 503),
        (Failure(FailureKind.STORAGE, "disk"), 500),
    ],
)
def test_failures_answer_per_kind(failure: Failure, status: int) -> None:
    ops = [
        ServiceOp(ListKeysRequest(b"b"), stream=True),
        ServiceOp(ListBucketsRequest()),
        ServiceOp(GetBucketProps(b"b")),
        ServiceOp(SetBucketProps(b"b", {"n_val": 99})),
        ServiceOp(PreflistRequest(b"b", b"k")),
    ]
    for op in ops:
        answer = render_service(op, failure)
        assert (answer.status, answer.header("Content-Type")) == (status, "text/plain")


def test_expected_replies() -> None:
    assert expected_replies(ServiceOp(ListBucketsRequest())) == (ListReply, Failure)
    assert expected_replies(ServiceOp(PreflistRequest(b"b", b"k"))) == (PreflistReply, Failure)
    assert expected_replies(ServiceOp(ResetBucketProps(b"b"))) == (BucketPropsReply, Failure)


# -- streamed listings ------------------------------------------------------------------------------


def client_pieces(stream: bytes) -> list[dict[str, object]]:
    """The reference client's parse: cut at each first `}`, one JSON object per piece."""
    pieces, rest = [], stream.decode()
    while rest:
        end = rest.index("}") + 1
        pieces.append(json.loads(rest[:end]))
        rest = rest[end:]
    return pieces


def test_stream_chunks_hold_at_most_1000_names_and_end_empty() -> None:
    names = tuple(f"k{i:05d}".encode() for i in range(2 * STREAM_CHUNK_NAMES + 500))
    chunks = list(stream_chunks(ServiceOp(ListKeysRequest(b"b"), stream=True), ListReply(names)))
    objects = [json.loads(chunk) for chunk in chunks]
    assert [len(o["keys"]) for o in objects] == [1000, 1000, 500, 0]
    assert client_pieces(b"".join(chunks)) == objects
    assert [k for o in objects for k in o["keys"]] == [n.decode() for n in names]


def test_stream_of_nothing_and_of_buckets() -> None:
    op = ServiceOp(ListBucketsRequest(), stream=True)
    assert list(stream_chunks(op, ListReply(()))) == [b'{"buckets": []}']
    chunks = [json.loads(c) for c in stream_chunks(op, ListReply((b"x",)))]
    assert chunks == [{"buckets": ["x"]}, {"buckets": []}]


def test_legacy_stream_sends_the_props_first() -> None:
    op = ServiceOp(ListKeysRequest(b"b"), stream=True, with_props=True)
    chunks = [json.loads(c) for c in stream_chunks(op, ListReply((b"k",)), BucketPropsReply(PROPS))]
    assert chunks == [{"props": PROPS}, {"keys": ["k"]}, {"keys": []}]
