"""The Riak-compatible HTTP API against a real 3-node `dynakv dev` cluster, over http.client.

One cluster serves the whole module (starting one takes a few seconds); every test uses its own keys.
After each error case the same node must answer the next request normally.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import IO_TIMEOUT_S, Cluster, launch_dev, parse_address

VALUE_BYTES_MAX = 1 << 20  # Limits.value_bytes_max's default
_health_keys = itertools.count()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class HttpCluster:
    cluster: Cluster
    http: dict[str, str]  # node name -> "host:port"

    @property
    def first(self) -> str:
        return self.http[self.cluster.names[0]]


@pytest.fixture(scope="module")
def hc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpCluster]:
    root: Path = tmp_path_factory.mktemp("http") / "cluster"
    cluster = launch_dev(root, 3, "--storage", "sqlite")
    try:
        addresses = {name: node.http for name, node in cluster.nodes.items()}
        assert all(addresses.values()), f"cluster.json gives no http address: {addresses}"
        yield HttpCluster(cluster, {name: str(address) for name, address in addresses.items()})
    finally:
        cluster.stop_all()


def call(
    address: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    host, port = parse_address(address)
    conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def put(address: str, path: str, value: bytes, **headers: str) -> Answer:
    return call(address, "PUT", path, value, {"Content-Type": "text/plain", **headers})


def assert_serving(address: str) -> None:
    """The node answers the next requests normally: a ping, then a write and a read."""
    assert call(address, "GET", "/ping").body == b"OK"
    path = f"/buckets/health/keys/k{next(_health_keys)}"  # a fresh key: blind writes make siblings
    assert put(address, path, b"fine").status == 204
    answer = call(address, "GET", path)
    assert (answer.status, answer.body) == (200, b"fine")


def test_service_resources(hc: HttpCluster) -> None:
    resources = json.loads(call(hc.first, "GET", "/", headers={"Accept": "application/json"}).body)
    assert resources["riak_kv_wm_buckets"] == "/buckets"
    assert "riak_kv_wm_preflist" not in resources  # not served yet, so not advertised
    ping = call(hc.first, "GET", "/ping")
    assert (ping.status, ping.body) == (200, b"OK")
    assert put(hc.first, "/buckets/stats/keys/k", b"v").status == 204
    stats = json.loads(call(hc.first, "GET", "/stats").body)
    assert stats["riak_kv_version"].startswith("2.0.")
    assert stats["puts"] >= 1
    listing = call(hc.first, "GET", "/buckets?buckets=true")
    assert listing.status == 501
    assert listing.headers["Content-Type"] == "text/plain"


def test_put_then_get_through_every_node(hc: HttpCluster) -> None:
    answer = put(hc.first, "/buckets/b/keys/every", b"hello", **{"X-Riak-Meta-Color": "blue"})
    assert answer.status == 204
    for address in hc.http.values():
        got = call(address, "GET", "/buckets/b/keys/every?r=all")
        assert (got.status, got.body) == (200, b"hello"), address
        assert got.headers["Content-Type"] == "text/plain"
        assert got.headers["X-Riak-Meta-Color"] == "blue"
        assert got.headers["X-Riak-Vclock"]
    head = call(hc.first, "HEAD", "/buckets/b/keys/every")
    assert (head.status, head.body) == (200, b"")


def test_siblings_are_a_multipart_300(hc: HttpCluster) -> None:
    path = "/buckets/b/keys/siblings"
    assert put(hc.first, path, b"one").status == 204
    assert put(hc.http["dev2"], path, b"two").status == 204  # no vclock: concurrent with the first
    got = call(hc.first, "GET", path, headers={"Accept": "multipart/mixed, application/json, */*;q=0.5"})
    assert got.status == 300
    assert got.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    assert got.body.startswith(b"\r\n--")
    assert b"one" in got.body and b"two" in got.body
    # Writing back with the merged clock resolves them.
    resolved = put(hc.first, path, b"both", **{"X-Riak-Vclock": got.headers["X-Riak-Vclock"]})
    assert resolved.status == 204
    assert call(hc.first, "GET", path).body == b"both"


def test_delete_then_not_found(hc: HttpCluster) -> None:
    path = "/buckets/b/keys/gone"
    assert put(hc.first, path, b"here").status == 204
    assert call(hc.http["dev3"], "DELETE", path).status == 204
    for address in hc.http.values():
        assert call(address, "GET", path + "?r=all").status == 404, address
    assert call(hc.first, "DELETE", "/buckets/b/keys/never-written").status == 204


def test_if_none_match(hc: HttpCluster) -> None:
    path = "/buckets/b/keys/once"
    assert put(hc.first, path, b"first", **{"If-None-Match": "*"}).status == 204
    refused = put(hc.http["dev2"], path, b"second", **{"If-None-Match": "*"})
    assert refused.status == 412
    assert call(hc.first, "GET", path).body == b"first"
    assert_serving(hc.http["dev2"])


def test_post_without_key(hc: HttpCluster) -> None:
    created = call(hc.first, "POST", "/buckets/b/keys", b"new", {"Content-Type": "text/plain"})
    assert created.status == 201
    location = created.headers["Location"]
    assert location.startswith("/buckets/b/keys/")
    got = call(hc.http["dev3"], "GET", location)
    assert (got.status, got.body) == (200, b"new")


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/buckets/b/keys/k?r=banana", {}),
        ("PUT", "/buckets/b/keys/k?w=-1", {"Content-Type": "text/plain"}),
        ("PUT", "/buckets/b/keys/k", {}),  # no content type
        ("PUT", "/buckets/b/keys/k", {"Content-Type": "text/plain", "X-Riak-Vclock": "not base64!"}),
        ("DELETE", "/buckets/b/keys/k", {"X-Riak-Vclock": "%%%"}),
    ],
)
def test_bad_input_is_400(hc: HttpCluster, method: str, path: str, headers: dict[str, str]) -> None:
    answer = call(hc.first, method, path, b"v" if method == "PUT" else None, headers)
    assert answer.status == 400, answer.body
    assert answer.headers["Content-Type"] == "text/plain"
    assert_serving(hc.first)


def test_unknown_path_is_404(hc: HttpCluster) -> None:
    assert call(hc.first, "GET", "/nothing/here").status == 404
    assert call(hc.first, "GET", "/buckets/b/keys/k/extra/segments").status == 404
    assert_serving(hc.first)


def test_oversized_value_is_413(hc: HttpCluster) -> None:
    answer = put(hc.first, "/buckets/b/keys/big", b"x" * (VALUE_BYTES_MAX + 1))
    assert answer.status == 413
    assert_serving(hc.first)
    # Far past the limit: refused from Content-Length alone, before the body is read.
    host, port = parse_address(hc.first)
    with socket.create_connection((host, port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(
            b"PUT /buckets/b/keys/huge HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        assert sock.recv(1 << 16).startswith(b"HTTP/1.1 413")
    assert call(hc.first, "GET", "/buckets/b/keys/huge").status == 404
    assert_serving(hc.first)


def test_malformed_http_is_400(hc: HttpCluster) -> None:
    host, port = parse_address(hc.first)
    with socket.create_connection((host, port), timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(b"THIS IS NOT HTTP\x00\r\n\r\n")
        status_line = sock.recv(1 << 16).split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.") and b" 400 " in status_line, status_line
    assert_serving(hc.first)
