"""Object requests into data-path requests and replies into Riak responses (riak-http.md 1.4-1.7)."""

from __future__ import annotations

import base64
import json
import random
import re

import pytest

from dynakv.api.riak_headers import http_date, vtag
from dynakv.api.riak_http import HttpResponse
from dynakv.api.riak_mapping import (
    NEW_KEY_CHARS,
    ObjectDelete,
    ObjectGet,
    ObjectPut,
    Operation,
    failure_response,
    map_request,
    precondition_failed_response,
    render_delete,
    render_get,
    render_put,
)
from dynakv.core.config import Limits
from dynakv.core.dvv import VersionVector, encode_context
from dynakv.core.objects import Content
from dynakv.protocol.messages import (
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    PutReply,
    PutRequest,
)

NOW = 1_704_067_200_000  # Mon, 01 Jan 2024 00:00:00 GMT
LIMITS = Limits(key_bytes_max=32, bucket_bytes_max=16, value_bytes_max=1024)
CONTEXT = encode_context(VersionVector.from_counters({"node-a": 3, "node-b": 1}))
BASE62_KEY = re.compile(rf"[0-9A-Za-z]{{{NEW_KEY_CHARS}}}")


def request(
    method: str, path: str, query: str = "", headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> Operation | HttpResponse:
    return map_request(method, path, query, headers, body, now_ms=NOW, rng=random.Random(7), limits=LIMITS)


def status_of(result: Operation | HttpResponse) -> int:
    assert isinstance(result, HttpResponse), result
    return result.status


FULL_HEADERS = (
    ("Content-Type", 'text/plain; charset="UTF-8"'),
    ("Content-Encoding", "gzip"),
    ("X-Riak-Vclock", base64.b64encode(CONTEXT).decode()),
    ("X-Riak-ClientId", "py_b'junk'"),
    ("X-Riak-Meta-Color", "blue"),
    ("x-riak-meta-size", " large "),
    ("X-Riak-Index-Age_int", "1, 22"),
    ("X-Riak-Index-name_bin", "ann"),
    ("Link", '</buckets/b2/keys/k2>; riaktag="t1", </riak/b3/a%2Fb+c>; riaktag="t 2"'),
    ("link", '</buckets/b>; rel="up",</buckets/b4/keys/k4>;riaktag="t3"'),
    ("If-None-Match", "*"),
)
FULL_CONTENT = Content(
    b"hello",
    content_type="text/plain",
    charset="UTF-8",
    content_encoding="gzip",
    usermeta=(("Color", "blue"), ("size", "large")),
    links=(("b2", "k2", "t1"), ("b3", "a/b c", "t 2"), ("b4", "k4", "t3")),
    indexes=(("age_int", "1"), ("age_int", "22"), ("name_bin", "ann")),
    last_modified_ms=NOW,
)


def test_put_maps_every_header_and_parameter() -> None:
    op = request(
        "PUT", "/buckets/b/keys/k", "w=2&dw=all&pw=0&returnbody=true&timeout=100", FULL_HEADERS, b"hello"
    )
    expected = PutRequest(
        b"b", b"k", FULL_CONTENT, CONTEXT, w=2, dw="all", pw=0, return_body=True, timeout_ms=100
    )
    # No Accept header counts as */*, for which Riak shows siblings as text/plain.
    assert op == ObjectPut(expected, if_none_match=True, multipart=False)


def test_put_without_optional_headers_is_a_blind_write() -> None:
    op = request("POST", "/riak/b/k", "", (("Content-Type", "application/json"),), b"{}")
    content = Content(b"{}", content_type="application/json", last_modified_ms=NOW)
    assert op == ObjectPut(PutRequest(b"b", b"k", content), legacy=True, multipart=False)


def test_content_type_keeps_other_parameters_and_splits_the_charset() -> None:
    op = request("PUT", "/buckets/b/keys/k", "", (("Content-Type", "text/html; level=1; charset=latin-1"),))
    assert isinstance(op, ObjectPut)
    content = op.request.content
    assert (content.content_type, content.charset) == ("text/html; level=1", "latin-1")


def test_round_trip_headers_to_put_to_get_headers() -> None:
    # Store with headers, read back the stored content: the response carries the same object headers,
    # and feeding those headers to a PUT again gives the same content (nothing lost either way).
    op = request("PUT", "/buckets/b/keys/k", "", FULL_HEADERS, b"hello")
    assert isinstance(op, ObjectPut)
    got = render_get(ObjectGet(GetRequest(b"b", b"k")), GetReply(True, (op.request.content,), CONTEXT))
    assert got.status == 200
    assert got.body == b"hello"
    headers = dict(got.headers)
    assert headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert headers["Content-Encoding"] == "gzip"
    assert base64.b64decode(headers["X-Riak-Vclock"], validate=True) == CONTEXT
    assert headers["X-Riak-Meta-Color"] == "blue"
    assert headers["X-Riak-Index-age_int"] == "1, 22"
    assert headers["X-Riak-Index-name_bin"] == "ann"
    assert headers["Link"] == (
        '</buckets/b>; rel="up", </buckets/b2/keys/k2>; riaktag="t1", '
        '</buckets/b3/keys/a%2Fb+c>; riaktag="t+2", </buckets/b4/keys/k4>; riaktag="t3"'
    )
    assert headers["ETag"] == f'"{vtag(op.request.content)}"'
    assert headers["Last-Modified"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert [name for name, _ in got.headers].count("Link") == 1
    again = request("PUT", "/buckets/b/keys/k", "", got.headers, got.body)
    assert isinstance(again, ObjectPut)
    # The tag comes back quote_plus-encoded (the client unquotes it), so only it differs.
    assert again.request.content.links[1] == ("b3", "a/b c", "t+2")
    restored = again.request.content
    assert (restored.usermeta, restored.indexes, restored.charset) == (
        FULL_CONTENT.usermeta,
        FULL_CONTENT.indexes,
        "UTF-8",
    )
    assert again.request.context == CONTEXT


def test_post_without_key_generates_a_base62_key() -> None:
    op = request("POST", "/buckets/b/keys", "returnbody=false", (("Content-Type", "text/plain"),), b"v")
    assert isinstance(op, ObjectPut)
    assert op.new_key
    assert BASE62_KEY.fullmatch(op.request.key.decode())
    again = request("POST", "/buckets/b/keys", "", (("Content-Type", "text/plain"),), b"v")
    assert isinstance(again, ObjectPut)
    assert again.request.key == op.request.key  # the key comes from the injected random.Random
    response = render_put(op, PutReply(CONTEXT))
    assert (response.status, response.body) == (201, b"")
    assert response.header("Location") == f"/buckets/b/keys/{op.request.key.decode()}"


def test_post_with_returnbody_answers_201_with_the_body_and_location() -> None:
    op = request("POST", "/riak/my+b", "returnbody=true", (("Content-Type", "text/plain"),), b"v")
    assert isinstance(op, ObjectPut)
    response = render_put(op, PutReply(CONTEXT, (op.request.content,)))
    assert (response.status, response.body) == (201, b"v")
    assert response.header("Location") == f"/riak/my+b/{op.request.key.decode()}"
    assert response.header("X-Riak-Vclock") == base64.b64encode(CONTEXT).decode()


def test_get_maps_quorums_flags_and_accept() -> None:
    op = request(
        "GET",
        "/buckets/b/keys/k",
        "r=quorum&pr=1&timeout=50&basic_quorum=true&notfound_ok=false&vtag=xyz",
        (("Accept", "text/plain"),),
    )
    expected = GetRequest(b"b", b"k", "quorum", 1, 50, basic_quorum=True, notfound_ok=False)
    assert op == ObjectGet(expected, "xyz", multipart=False)
    client_accept = (("Accept", "multipart/mixed, application/json, */*;q=0.5"),)
    assert request("HEAD", "/riak/b/k", "", client_accept) == ObjectGet(GetRequest(b"b", b"k"), head=True)


def test_delete_maps_the_context_and_takes_rw_as_w() -> None:
    vclock = (("X-Riak-Vclock", base64.b64encode(CONTEXT).decode()),)
    op = request("DELETE", "/buckets/b/keys/k", "rw=2&dw=1&pw=0&r=1&pr=1&timeout=9", vclock)
    assert op == ObjectDelete(DeleteRequest(b"b", b"k", CONTEXT, 2, 1, 0, 9))
    op = request("DELETE", "/buckets/b/keys/k", "rw=2&w=all")
    assert op == ObjectDelete(DeleteRequest(b"b", b"k", b"", "all"))
    assert render_delete(DeleteReply()) == HttpResponse(204)


BadCase = tuple[str, str, str, tuple[tuple[str, str], ...], bytes, int]


@pytest.mark.parametrize(
    "case",
    [
        ("PUT", "/buckets/b/keys/k", "", (), b"v", 400),  # no Content-Type
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", " "),), b"v", 400),
        ("POST", "/buckets/b/keys", "", (), b"v", 400),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "plain"),), b"v", 415),
        ("PUT", "/buckets/b/keys/" + "k" * 33, "", (("Content-Type", "a/b"),), b"v", 400),
        ("GET", "/buckets/b/keys/" + "k" * 33, "", (), b"", 400),
        ("GET", "/buckets/" + "b" * 17 + "/keys/k", "", (), b"", 400),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "a/b"),), b"v" * 1025, 413),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "a/b"), ("X-Riak-Vclock", "abc")), b"", 400),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "a/b"), ("X-Riak-Vclock", "a-_b")), b"", 400),
        ("DELETE", "/buckets/b/keys/k", "", (("X-Riak-Vclock", "YWJj\nZA=="),), b"", 400),
        ("DELETE", "/buckets/b/keys/k", "", (("X-Riak-Vclock", "YQ="),), b"", 400),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "a/b"), ("Link", "<b/k>; riaktag=t")), b"", 400),
        (
            "PUT",
            "/buckets/b/keys/k",
            "",
            (("Content-Type", "a/b"), ("Link", '</x/y>; riaktag="t"')),
            b"",
            400,
        ),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "a/b"), ("X-Riak-Index-age", "1")), b"", 400),
        ("PUT", "/buckets/b/keys/k", "", (("Content-Type", "a/b"), ("X-Riak-Index-a_int", "x")), b"", 400),
        ("PUT", "/buckets/b/keys/k", "w=two", (("Content-Type", "a/b"),), b"", 400),
        ("GET", "/buckets/b/keys/k", "r=1.5", (), b"", 400),
        ("GET", "/buckets/b/keys/k", "pr=-1", (), b"", 400),
        ("DELETE", "/buckets/b/keys/k", "rw=many", (), b"", 400),
        ("GET", "/buckets/b/keys/k", "timeout=soon", (), b"", 400),
        ("GET", "/buckets/b/keys/k", "notfound_ok=maybe", (), b"", 400),
        ("GET", "/nowhere", "", (), b"", 404),
        ("GET", "/buckets/b/keys/k/x/y", "", (), b"", 404),
        ("PATCH", "/buckets/b/keys/k", "", (), b"", 405),
    ],
)
def test_bad_requests_are_answered_not_raised(case: BadCase) -> None:
    method, path, query, headers, body, status = case
    result = request(method, path, query, headers, body)
    assert status_of(result) == status
    assert isinstance(result, HttpResponse)
    assert result.header("Content-Type") == "text/plain"
    assert result.body


def test_vclock_is_standard_padded_base64() -> None:
    # Bytes chosen so the encoding needs "+", "/" and padding: a URL-safe token would be corrupted.
    context = b"\xfb\xff\xbf\x01"
    content = Content(b"v", last_modified_ms=NOW)
    response = render_get(ObjectGet(GetRequest(b"b", b"k")), GetReply(True, (content,), context))
    assert response.header("X-Riak-Vclock") == "+/+/AQ=="


def test_service_answers() -> None:
    resources = request("GET", "/", "", (("Accept", "application/json"),))
    assert isinstance(resources, HttpResponse)
    assert (resources.status, resources.header("Content-Type")) == (200, "application/json")
    assert json.loads(resources.body) == {
        "riak_kv_wm_buckets": "/buckets",
        "riak_kv_wm_raw": "/riak",
        "riak_kv_wm_ping": "/ping",
        "riak_kv_wm_stats": "/stats",
        "riak_kv_wm_preflist": "/buckets",
    }
    assert request("GET", "/ping") == HttpResponse(200, (("Content-Type", "text/plain"),), b"OK")


def test_other_routes_are_left_to_the_server() -> None:
    from dynakv.api.riak_paths import Route

    assert request("GET", "/stats") == Route("stats")
    assert request("GET", "/metrics") == Route("metrics")
    assert request("HEAD", "/metrics") == Route("metrics")


@pytest.mark.parametrize(
    ("failure", "status", "text"),
    [
        (Failure(FailureKind.BAD_REQUEST, "r: 5 is above n_val 3", "r"), 400, "r: 5 is above n_val 3\n"),
        (Failure(FailureKind.UNAVAILABLE, "too few", "w", 2, 1), 503, "W-value unsatisfied: 1/2 (too few)\n"),
        (Failure(FailureKind.TIMEOUT, "slow", "r", 2, 0), 503, "timeout: R-value unsatisfied: 0/2 (slow)\n"),
        (Failure(FailureKind.OVERLOADED, "too many pending requests"), 503, "too many pending requests\n"),
        (Failure(FailureKind.STORAGE, "disk full"), 500, "storage error: disk full\n"),
    ],
)
def test_failures(failure: Failure, status: int, text: str) -> None:
    expected = HttpResponse(status, (("Content-Type", "text/plain"),), text.encode())
    assert failure_response(failure) == expected
    assert render_get(ObjectGet(GetRequest(b"b", b"k")), failure) == expected
    assert render_delete(failure) == expected


def test_if_none_match_answer() -> None:
    assert precondition_failed_response().status == 412


def test_http_date_is_rfc_1123_gmt() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(NOW + 1999) == "Mon, 01 Jan 2024 00:00:01 GMT"


@pytest.mark.parametrize(
    "headers",
    [
        (("Content-Type", "a/\udc80"),),
        (("Content-Type", "a/b"), ("Link", '</buckets/b/keys/k>; riaktag="\udc80"')),
        (("Content-Type", "a/b"), ("Link", '</buckets/\udc80/keys/k>; riaktag="t"')),
        (("Content-Type", "a/b"), ("X-Riak-Meta-\udc80", "v")),
        (("Content-Type", "a/b"), ("X-Riak-Meta-m", "\udc80")),
        (("Content-Type", "a/b"), ("X-Riak-Index-i_bin", "\udc80")),
        (("Content-Type", "a/b"), ("Content-Encoding", "\udc80")),
    ],
)
def test_undecodable_header_bytes_are_400(headers: tuple[tuple[str, str], ...]) -> None:
    # What a server decoding invalid UTF-8 with surrogateescape passes on; storing it would fail later.
    assert status_of(request("PUT", "/buckets/b/keys/k", "", headers, b"v")) == 400
