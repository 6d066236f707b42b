"""Any request maps to an operation or a returned 4xx, and any stored content renders: never an
exception, because the HTTP server must answer bad input, not crash on it (issue 4: no 500s)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dynakv.api.riak_http import HttpResponse
from dynakv.api.riak_mapping import ObjectGet, ObjectPut, map_request, render_get, render_put
from dynakv.core import codec
from dynakv.core.config import Limits
from dynakv.core.objects import Content, content_to_payload
from dynakv.protocol.messages import GetReply, GetRequest, PutReply

LIMITS = Limits(key_bytes_max=64, bucket_bytes_max=64, value_bytes_max=256)
SEGMENT_ALPHABET = st.sampled_from(
    ["buckets", "riak", "keys", "props", "preflist", "ping", "stats", "metrics", "types", "b", "k"]
)
# Surrogates included: a server decoding raw bytes with surrogateescape hands those to the mapping.
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
SEGMENTS = st.one_of(SEGMENT_ALPHABET, ANY_TEXT)
PATHS = st.one_of(
    st.lists(SEGMENTS, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    ANY_TEXT,
)
PARAM_NAMES = st.sampled_from(
    ["r", "w", "dw", "pr", "pw", "rw", "returnbody", "vtag", "basic_quorum", "notfound_ok", "timeout",
     "keys", "buckets", "props", "x"]
)  # fmt: skip
PARAM_VALUES = st.one_of(
    st.sampled_from(["1", "0", "one", "quorum", "all", "default", "true", "false", "stream", "-1", ""]),
    st.text(max_size=12),
)
QUERIES = st.one_of(
    st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=6).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
    ),
    st.text(max_size=40),
)
HEADER_NAMES = st.sampled_from(
    ["Content-Type", "X-Riak-Vclock", "Link", "X-Riak-Meta-a", "X-Riak-Index-a_int", "X-Riak-Index-b_bin",
     "X-Riak-Index-", "X-Riak-Meta-", "X-Riak-Meta-\udc80", "If-None-Match", "Accept", "Content-Encoding",
     "Other"]
)  # fmt: skip
HEADER_VALUES = st.one_of(
    st.sampled_from(
        ['</buckets/b/keys/k>; riaktag="t"', "text/plain; charset=", "*", "YQ==", "a/b", "application/json"]
    ),
    ANY_TEXT,
)
METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "get", ""])


@settings(max_examples=400, deadline=None)
@given(
    METHODS,
    PATHS,
    QUERIES,
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    st.binary(max_size=300),
)
def test_no_request_raises(
    method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    result = map_request(method, path, query, headers, body, now_ms=0, rng=random.Random(0), limits=LIMITS)
    if isinstance(result, HttpResponse):
        # Only `/` and `/ping` are answered without the store; everything else returned is a 4xx.
        assert result.status == 200 or 400 <= result.status < 500
        if result.status >= 400:
            assert result.body
    elif isinstance(result, ObjectPut):
        # What the data path does next with the content: encode it for storage.
        codec.pack(content_to_payload(result.request.content))


TEXT = st.text(max_size=20)
CONTENTS = st.builds(
    Content,
    st.binary(max_size=40),
    content_type=TEXT,
    charset=st.none() | TEXT,
    content_encoding=st.none() | TEXT,
    usermeta=st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
    links=st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=3).map(tuple),
    indexes=st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
    last_modified_ms=st.integers(0, 2**40),
    deleted=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=20), st.lists(CONTENTS, min_size=1, max_size=4), st.binary(max_size=30))
def test_any_stored_content_renders(bucket: bytes, siblings: list[Content], context: bytes) -> None:
    reply = GetReply(True, tuple(siblings), context)
    for response in (
        render_get(ObjectGet(GetRequest(bucket, b"k")), reply),
        render_get(ObjectGet(GetRequest(bucket, b"k"), multipart=False), reply),
    ):
        assert response.status in (200, 300)
        for name, value in response.headers:
            assert "\r" not in name + value
            assert "\n" not in name + value
    put = map_request(
        "PUT", "/buckets/b/keys/k", "returnbody=true", [("Content-Type", "a/b")], b"",
        now_ms=0, rng=random.Random(0), limits=LIMITS,
    )  # fmt: skip
    assert isinstance(put, ObjectPut)
    assert render_put(put, PutReply(context, tuple(siblings))).status in (200, 300)
