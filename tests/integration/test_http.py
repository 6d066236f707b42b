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
from typing import Any
from urllib.parse import quote_plus

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import IO_TIMEOUT_S, Cluster, launch_dev, parse_address, wait_for

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
    assert resources["riak_kv_wm_preflist"] == "/buckets"
    assert "riak_kv_wm_bucket_type" not in resources  # bucket types are not served
    ping = call(hc.first, "GET", "/ping")
    assert (ping.status, ping.body) == (200, b"OK")
    assert put(hc.first, "/buckets/stats/keys/k", b"v").status == 204
    stats = json.loads(call(hc.first, "GET", "/stats").body)
    assert stats["riak_kv_version"] == "2.0.0"
    assert stats["puts"] >= 1


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


# -- /stats and /metrics -------------------------------------------------------------------------------

PERCENTILES = ("mean", "median", "95", "99", "100")


def stats_of(address: str) -> dict[str, Any]:
    answer = call(address, "GET", "/stats")
    assert (answer.status, answer.headers["Content-Type"]) == (200, "application/json")
    stats: dict[str, Any] = json.loads(answer.body)
    return stats


def metric_samples(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = call(address, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def test_stats_count_and_time_requests(hc: HttpCluster) -> None:
    address = hc.http["dev3"]
    path = "/buckets/stats/keys/counted"
    assert put(address, path, b"v").status == 204
    before = stats_of(address)
    for _ in range(5):
        assert call(address, "GET", path).status == 200
    assert call(address, "GET", path + "?r=4").status == 400  # above n_val: the node's BAD_REQUEST
    assert call(address, "GET", path + "?r=foo").status == 400  # the API's own: never reaches the node
    after = stats_of(address)
    assert after["gets"] - before["gets"] == 6
    assert after["puts"] == before["puts"]
    assert after["failures"]["bad_request"] - before["failures"]["bad_request"] == 1
    assert set(after["failures"]) == {"bad_request", "unavailable", "timeout", "overloaded", "storage"}
    for prefix in ("node_get_fsm_time", "node_put_fsm_time", "node_get_fsm_siblings"):
        for p in PERCENTILES:
            assert after[f"{prefix}_{p}"] >= 0, (prefix, p)
    assert after["node_get_fsm_time_100"] > 0  # a get takes at least a microsecond
    assert after["node_put_fsm_time_100"] > 0
    times = [after[f"node_get_fsm_time_{p}"] for p in ("median", "95", "99", "100")]
    assert times == sorted(times)
    for op in ("get", "put", "delete"):
        assert set(after["latency_ms"][op]) == set(PERCENTILES)
        assert all(v >= 0 for v in after["latency_ms"][op].values())
    assert after["latency_ms"]["get"]["100"] > 0
    assert after["pending_requests"] == 0  # nothing in flight on a quiet node
    assert (after["pending_hints"], after["transfers"]) == (0, 0)
    assert after["read_repairs"] >= 0


def test_stats_show_the_siblings_gets_see(hc: HttpCluster) -> None:
    address = hc.http["dev2"]
    path = "/buckets/stats/keys/two-siblings"
    assert put(address, path, b"one").status == 204
    assert put(hc.first, path, b"two").status == 204  # no vclock: concurrent with the first
    before = metric_samples(address)
    got = call(address, "GET", path, headers={"Accept": "multipart/mixed, application/json, */*;q=0.5"})
    assert got.status == 300
    after = metric_samples(address)
    assert after[("dynakv_get_siblings_count", ())] - before[("dynakv_get_siblings_count", ())] == 1
    assert after[("dynakv_get_siblings_sum", ())] - before[("dynakv_get_siblings_sum", ())] == 2
    stats = stats_of(address)
    assert stats["node_get_fsm_siblings_100"] >= 2
    assert stats["node_get_fsm_siblings_mean"] > 1  # every found get sees at least 1, this one 2


def test_metrics_count_the_gets_made(hc: HttpCluster) -> None:
    address = hc.first
    path = "/buckets/metrics/keys/k"
    assert put(address, path, b"v").status == 204
    get_total = ("dynakv_requests_total", (("op", "get"),))
    before = metric_samples(address)[get_total]
    for _ in range(7):
        assert call(address, "GET", path).status == 200
    assert call(address, "HEAD", path).status == 200
    after = metric_samples(address)
    assert after[get_total] - before == 8
    assert after[get_total] == stats_of(address)["gets"]  # the node's own count agrees
    assert after[("dynakv_request_duration_seconds_count", (("op", "get"),))] == after[get_total]
    assert after[("dynakv_node_events_total", (("event", "requests.GetRequest"),))] == after[get_total]
    assert after[("dynakv_pending_requests", ())] == 0


# -- listings, bucket props, preflists (sections 1.8, 1.9) -----------------------------------------------

def stream_pieces(body: bytes) -> list[dict[str, Any]]:
    """The reference client's parse of a streamed listing: one JSON object per first `}`."""
    pieces, text = [], body.decode()
    while text:
        end = text.index("}") + 1
        pieces.append(json.loads(text[:end]))
        text = text[end:]
    return pieces


def test_listings_plain_and_streamed_agree(hc: HttpCluster) -> None:
    keys = ["a", "b c", "d/e", "é"]
    for key in keys:
        assert put(hc.first, f"/buckets/listed/keys/{quote_plus(key)}", b"v").status == 204
    plain = call(hc.http["dev2"], "GET", "/buckets/listed/keys?keys=true&props=false")
    assert (plain.status, plain.headers["Content-Type"]) == (200, "application/json")
    assert sorted(json.loads(plain.body)["keys"]) == sorted(keys)
    streamed = call(hc.http["dev3"], "GET", "/buckets/listed/keys?keys=stream")
    assert streamed.status == 200
    pieces = stream_pieces(streamed.body)
    assert pieces[-1] == {"keys": []}
    assert sorted(k for piece in pieces for k in piece["keys"]) == sorted(keys)
    buckets = json.loads(call(hc.first, "GET", "/buckets?buckets=true").body)["buckets"]
    assert "listed" in buckets
    streamed_buckets = stream_pieces(call(hc.first, "GET", "/buckets?buckets=stream").body)
    assert sorted(b for piece in streamed_buckets for b in piece["buckets"]) == sorted(buckets)
    legacy = json.loads(call(hc.first, "GET", "/riak/listed?keys=true").body)
    assert sorted(legacy["keys"]) == sorted(keys)
    assert legacy["props"]["n_val"] == 3


def test_a_post_to_a_new_bucket_lists_one_key(hc: HttpCluster) -> None:
    created = call(hc.first, "POST", "/buckets/posted-once/keys", b"v", {"Content-Type": "text/plain"})
    assert created.status == 201
    listing = call(hc.first, "GET", "/buckets/posted-once/keys?keys=true")
    assert json.loads(listing.body)["keys"] == [created.headers["Location"].rsplit("/", 1)[1]]


def props_of(address: str, bucket: str) -> dict[str, Any]:
    answer = call(address, "GET", f"/buckets/{bucket}/props")
    assert (answer.status, answer.headers["Content-Type"]) == (200, "application/json")
    props: dict[str, Any] = json.loads(answer.body)["props"]
    return props


def set_props(address: str, bucket: str, props: dict[str, Any]) -> Answer:
    body = json.dumps({"props": props}).encode()
    headers = {"Content-Type": "application/json"}
    return call(address, "PUT", f"/buckets/{bucket}/props", body, headers)


def test_bucket_props_round_trip(hc: HttpCluster) -> None:
    defaults = props_of(hc.first, "propped")
    assert (defaults["name"], defaults["n_val"]) == ("propped", 3)
    assert set_props(hc.first, "propped", {"n_val": 2, "w": 1, "dw": "all"}).status == 204
    for address in hc.http.values():  # cluster-wide, echoed exactly as set

        def changed(address: str = address) -> bool:
            props = props_of(address, "propped")
            return (props["n_val"], props["w"], props["dw"]) == (2, 1, "all")

        wait_for(changed, IO_TIMEOUT_S, f"the props at {address}")
    refused = call(hc.first, "GET", "/buckets/propped/keys/k?r=3")  # above the bucket's n_val now
    assert refused.status == 400, refused.body
    assert set_props(hc.first, "propped", {"n_val": "many"}).status == 400
    assert set_props(hc.first, "propped", {"precommit": [], "postcommit": []}).status == 204
    assert set_props(hc.first, "propped", {"precommit": [{"mod": "m", "fun": "f"}]}).status == 400
    legacy = call(hc.first, "GET", "/riak/propped?props=true&keys=false")
    assert json.loads(legacy.body)["props"]["n_val"] == 2
    assert call(hc.first, "DELETE", "/riak/propped").status == 405
    assert call(hc.first, "DELETE", "/buckets/propped/props").status == 204
    wait_for(lambda: props_of(hc.http["dev3"], "propped")["n_val"] == 3, IO_TIMEOUT_S, "the reset props")
    assert_serving(hc.first)


def test_preflist(hc: HttpCluster) -> None:
    answer = call(hc.first, "GET", "/buckets/b/keys/some%20key/preflist")
    assert (answer.status, answer.headers["Content-Type"]) == (200, "application/json")
    entries = json.loads(answer.body)["preflist"]
    assert len(entries) == 3
    assert {e["node"] for e in entries} == set(hc.cluster.names)
    assert all(e["primary"] is True and isinstance(e["partition"], int) for e in entries)
