"""Every 4xx of the HTTP API against a real 3-node `dynakv dev` cluster, over raw http.client: bad
quorums (and one above n_val, which only the node can tell), missing or wrong content types, oversized
names and values, malformed vclocks and bucket props, unknown paths and methods. After each, the same
node must serve a normal write and read. No input ever gets a 5xx.

Also the streamed key listing against an in-process server: a client resetting the connection
mid-stream only ends that response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from dynakv.api.http_server import RiakHttpServer
from dynakv.core.config import Limits
from dynakv.protocol.messages import (
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    ListKeysRequest,
    ListReply,
    NodeReply,
    NodeRequest,
)
from tests.integration.conftest import launch_dev
from tests.integration.test_http import VALUE_BYTES_MAX, assert_serving, call

KEY_BYTES_MAX = 1024  # Limits' defaults
BUCKET_BYTES_MAX = 256
TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The HTTP address of the first node of a 3-node cluster (n_val 3)."""
    root: Path = tmp_path_factory.mktemp("http-errors") / "cluster"
    cluster = launch_dev(root, 3, "--storage", "sqlite")
    try:
        http = cluster.nodes[cluster.names[0]].http
        assert http, "cluster.json gives no http address"
        yield http
    finally:
        cluster.stop_all()


Case = tuple[str, str, bytes | None, dict[str, str], int, str]

CASES: list[Case] = [
    # quorums and flags (1.3): the API's own checks...
    ("GET", "/buckets/e/keys/k?r=foo", None, {}, 400, "r query parameter"),
    ("PUT", "/buckets/e/keys/k?w=-1", b"v", TEXT, 400, "w query parameter"),
    ("GET", "/buckets/e/keys/k?basic_quorum=maybe", None, {}, 400, "basic_quorum"),
    ("GET", "/buckets/e/keys/k?notfound_ok=1", None, {}, 400, "notfound_ok"),
    ("GET", "/buckets/e/keys/k?timeout=soon", None, {}, 400, "timeout"),
    # ...and the node's: quorums above the bucket's n_val of 3 (rw stands for w on a delete)
    ("GET", "/buckets/e/keys/k?r=4", None, {}, 400, "r"),
    ("GET", "/buckets/e/keys/k?pr=4", None, {}, 400, "pr"),
    ("PUT", "/buckets/e/keys/k?w=4", b"v", TEXT, 400, "w"),
    ("PUT", "/buckets/e/keys/k?dw=5", b"v", TEXT, 400, "dw"),
    ("DELETE", "/buckets/e/keys/k?rw=4", None, {}, 400, "w"),
    # content type, sizes, vclocks (1.5)
    ("PUT", "/buckets/e/keys/k", b"v", {}, 400, "Content-Type"),
    ("PUT", "/buckets/e/keys/k", b"v", {"Content-Type": "plain"}, 415, "media type"),
    ("PUT", "/buckets/e/keys/" + "k" * (KEY_BYTES_MAX + 1), b"v", TEXT, 400, "key is"),
    ("GET", "/buckets/e/keys/" + "k" * (KEY_BYTES_MAX + 1), None, {}, 400, "key is"),
    ("GET", "/buckets/" + "b" * (BUCKET_BYTES_MAX + 1) + "/keys/k", None, {}, 400, "bucket is"),
    ("PUT", "/buckets/e/keys/big", b"x" * (VALUE_BYTES_MAX + 1), TEXT, 413, "value is"),
    ("PUT", "/buckets/e/keys/k", b"v", {**TEXT, "X-Riak-Vclock": "not base64!"}, 400, "X-Riak-Vclock"),
    ("DELETE", "/buckets/e/keys/k", None, {"X-Riak-Vclock": "%%%"}, 400, "X-Riak-Vclock"),
    # bucket props (1.9)
    ("PUT", "/buckets/e/props", b'{"props": {"n_val": 2', JSON, 400, "not valid JSON"),
    ("PUT", "/buckets/e/props", b'{"n_val": 2}', JSON, 400, '{"props"'),
    ("PUT", "/buckets/e/props", b'{"props": [2]}', JSON, 400, '{"props"'),
    ("PUT", "/buckets/e/props", b'{"props": {"n_val": null}}', JSON, 400, "n_val"),
    ("PUT", "/buckets/e/props", b'{"props": {"n_val": 2}}', TEXT, 415, "application/json"),
    ("PUT", "/buckets/e/props", b'{"props": {"n_val": 2}}', {}, 415, "application/json"),
    ("PUT", "/riak/e", b"[", JSON, 400, "not valid JSON"),
    # listings (1.8)
    ("GET", "/buckets?buckets=yes", None, {}, 400, "buckets=true"),
    ("GET", "/buckets/e/keys?keys=false", None, {}, 400, "keys=true"),
    ("GET", "/buckets/e/keys?keys=true&timeout=0", None, {}, 400, "timeout"),
    # unknown paths
    ("GET", "/nothing/here", None, {}, 404, "not found"),
    ("GET", "/mapred", None, {}, 404, "not found"),
    ("GET", "/buckets/e/keys/k/extra/segments", None, {}, 404, "not found"),
    ("GET", "/riak/e/k/b,t,1", None, {}, 404, "not found"),
    ("GET", "/types/t/buckets/e/keys/k", None, {}, 404, "bucket types"),
    ("PUT", "/types/t/props", b'{"props": {}}', JSON, 404, "bucket types"),
    # unsupported methods
    ("PATCH", "/buckets/e/keys/k", b"v", TEXT, 405, "PATCH"),
    ("POST", "/stats", None, {}, 405, "POST"),
    ("DELETE", "/riak/e", None, {}, 405, "cannot be deleted"),
    ("PUT", "/buckets/e/keys", b"v", TEXT, 405, "PUT"),
    ("DELETE", "/buckets/e/keys/k/preflist", None, {}, 405, "DELETE"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]} {c[1][:60]} {c[4]}" for c in CASES])
def test_each_4xx_then_the_node_serves_on(address: str, case: Case) -> None:
    method, path, body, headers, status, reason = case
    answer = call(address, method, path, body, headers)
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "text/plain"
    assert reason.encode() in answer.body, answer.body
    assert_serving(address)


def test_a_quorum_above_n_val_names_it(address: str) -> None:
    """The API cannot know a bucket's n_val: the node refuses, and its reason comes through."""
    answer = call(address, "GET", "/buckets/e/keys/k?r=4")
    assert answer.status == 400
    assert b"n_val" in answer.body, answer.body
    assert call(address, "GET", "/buckets/e/keys/k?r=3").status == 404  # r = n_val is fine


# -- a streamed listing and a client that goes away ---------------------------------------------------

# About 13 MB of JSON: far more than the socket buffers hold, so the server is mid-stream at the reset.
STREAM_NAMES = tuple(b"key-%07d" % i for i in range(1_000_000))


async def fake_node(request: NodeRequest) -> NodeReply:
    if isinstance(request, ListKeysRequest):
        return ListReply(STREAM_NAMES if request.bucket == b"big" else (b"a", b"b"))
    if isinstance(request, GetRequest):
        return GetReply(False, (), b"")
    return Failure(FailureKind.BAD_REQUEST, "not served by this fake")


async def reset_mid_stream(host: str, port: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /buckets/big/keys?keys=stream HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower(), head
    assert await reader.read(4096)  # the first names
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # linger 0: a TCP reset, not a clean close


async def stream_scenario() -> list[dict[str, list[str]]]:
    server = RiakHttpServer(fake_node, dict, Limits())
    host, port = await server.start("127.0.0.1", 0)
    try:
        for _ in range(3):
            await reset_mid_stream(host, port)
        async with aiohttp.ClientSession() as session:
            url = f"http://{host}:{port}/buckets/small/keys?keys=stream"
            async with session.get(url) as response:
                assert response.status == 200
                body = await response.read()
            async with session.get(f"http://{host}:{port}/buckets/b/keys/k") as response:
                assert response.status == 404
    finally:
        await server.stop()
    pieces, text = [], body.decode()
    while text:  # the reference client's parse: one object per first `}`
        end = text.index("}") + 1
        pieces.append(json.loads(text[:end]))
        text = text[end:]
    return pieces


def test_a_client_resetting_a_stream_only_ends_that_response(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dynakv.api.http_server")
    pieces = asyncio.run(stream_scenario())
    assert pieces == [{"keys": ["a", "b"]}, {"keys": []}]
    left = [r for r in caplog.records if "left a streamed listing" in r.getMessage()]
    assert len(left) == 3  # each reset was seen mid-stream, and handled
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
