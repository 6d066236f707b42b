"""Acceptance: the real `riak` 2.7.0 Python client, over HTTP, against a real 3-node `dynakv dev` cluster.

One cluster serves the whole module (starting one takes a few seconds), with one client per node (each
speaks to that node's HTTP port only). The cluster is shared, so every test uses bucket names of its
own (`fresh()`): listings and bucket properties of one test never see another's.

The client is used as a Riak user would use it; what it sends and expects is summarised in
/work/shared/riak-http.md (the reference for the HTTP API). The two import shims it needs on Python
3.11 live in tests/integration/riak_compat.py.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Cluster, launch_dev, parse_address, wait_for
from tests.integration.riak_compat import close_client, riak_client, riak_module

riak = riak_module()
# The client compares server versions with distutils' LooseVersion on every new connection.
pytestmark = pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")
_buckets = itertools.count()

PROPS_TIMEOUT_S = 10.0
# Riak's default bucket props, except allow_mult: dynakv keeps concurrent writes as siblings unless a
# bucket asks otherwise (docs/adr/0006-bucket-properties.md; Riak's default type says false).
DEFAULT_PROPS = {
    "n_val": 3,
    "allow_mult": True,
    "last_write_wins": False,
    "r": "quorum",
    "w": "quorum",
    "dw": "quorum",
    "rw": "quorum",
    "pr": 0,
    "pw": 0,
}


@dataclass
class RiakCluster:
    cluster: Cluster
    clients: dict[str, Any]  # node name -> riak.RiakClient on that node's HTTP port

    @property
    def client(self) -> Any:
        return self.clients[self.cluster.names[0]]


@pytest.fixture(scope="module")
def rc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RiakCluster]:
    root: Path = tmp_path_factory.mktemp("riak") / "cluster"
    cluster = launch_dev(root, 3, "--storage", "sqlite")
    clients: dict[str, Any] = {}
    try:
        for name, node in cluster.nodes.items():
            assert node.http, f"cluster.json gives no http address for {name}"
            host, port = parse_address(node.http)
            assert host == "127.0.0.1"
            clients[name] = riak_client(port)
        yield RiakCluster(cluster, clients)
    finally:
        for client in clients.values():
            close_client(client)
        cluster.stop_all()


def fresh(prefix: str) -> str:
    """A bucket name no other test (and no earlier run's leftovers) uses."""
    return f"{prefix}-{next(_buckets)}-{secrets.token_hex(3)}"


def text(bucket: Any, key: str | None, value: str) -> Any:
    return bucket.new(key, encoded_data=value.encode(), content_type="text/plain")


def raw(sibling: Any) -> bytes:
    """A sibling's value as bytes: the client decodes the parts of a multipart 300 to `str` (UTF-8)."""
    data = sibling.encoded_data
    return data.encode() if isinstance(data, str) else data


def sibling_values(robj: Any) -> list[bytes]:
    """The values of the live siblings, sorted."""
    return sorted(raw(s) for s in robj.siblings if s.exists)


# -- the client finds its way --------------------------------------------------------------------------


def test_every_node_answers_the_client(rc: RiakCluster) -> None:
    for name, client in rc.clients.items():
        assert client.ping() is True, name
        # The client picks its URL scheme and features from GET / and GET /stats.
        with client._transport() as transport:
            assert transport.server_version.vstring.startswith("2.0."), name
            assert transport.bucket_stream(), name  # >= 1.4: streamed bucket lists
            assert transport.key_list_path("b").startswith("/buckets/b/keys"), name  # not legacy /riak


# -- objects -------------------------------------------------------------------------------------------


def test_store_fetch_delete_json(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("json"))
    stored = bucket.new("doc", data={"name": "ada", "tags": ["a", "b"], "n": 3, "nested": {"x": None}})
    stored.store()
    assert stored.vclock is not None  # return_body=True (the default) brought the stored object back
    for name, client in rc.clients.items():
        got = client.bucket(bucket.name).get("doc", r="all")
        assert got.exists, name
        assert got.data == {"name": "ada", "tags": ["a", "b"], "n": 3, "nested": {"x": None}}, name
        assert got.content_type == "application/json", name
        assert got.vclock is not None, name
        assert got.last_modified is not None, name
    bucket.get("doc").delete()
    for name, client in rc.clients.items():
        gone = client.bucket(bucket.name).get("doc", r="all")
        assert not gone.exists, name
    assert not bucket.get("never-written").exists


def test_text_value(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("text"))
    obj = bucket.new("t", data="h\u00e9llo w\u00f6rld", content_type="text/plain")
    obj.charset = "UTF-8"
    obj.store(return_body=False)
    got = rc.clients["dev2"].bucket(bucket.name).get("t")
    assert got.data == "h\u00e9llo w\u00f6rld"
    assert got.encoded_data == "h\u00e9llo w\u00f6rld".encode()
    assert got.content_type == "text/plain"
    assert got.charset == "UTF-8"


def test_binary_value_round_trips_byte_for_byte(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("binary"))
    value = bytes(range(256)) * 16 + b"\r\n--not-a-boundary--\r\n\x00"
    bucket.new("bin", encoded_data=value, content_type="application/octet-stream").store()
    for name, client in rc.clients.items():
        got = client.bucket(bucket.name).get("bin")
        assert got.content_type == "application/octet-stream", name
        assert got.encoded_data == value, name


def test_empty_value(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("empty"))
    bucket.new("e", encoded_data=b"", content_type="text/plain").store(return_body=False)
    got = rc.clients["dev3"].bucket(bucket.name).get("e")
    assert got.exists
    assert got.encoded_data == b""
    assert got.content_type == "text/plain"


def test_if_none_match_on_an_existing_key_raises(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("inm"))
    text(bucket, "once", "first").store(if_none_match=True)  # a new key: allowed
    with pytest.raises(riak.RiakError, match="412"):
        text(rc.clients["dev2"].bucket(bucket.name), "once", "second").store(if_none_match=True)
    assert bucket.get("once").encoded_data == b"first"


def test_post_generated_key(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("post"))
    obj = bucket.new(data={"made": "by POST"})
    assert obj.key is None
    obj.store(return_body=True)
    assert obj.key, "the client took no key from the 201's Location"
    assert obj.data == {"made": "by POST"}
    got = rc.clients["dev2"].bucket(bucket.name).get(obj.key)
    assert got.data == {"made": "by POST"}
    assert bucket.get_keys() == [obj.key]
    with contextlib.closing(bucket.stream_keys()) as stream:
        assert [key for keys in stream for key in keys] == [obj.key]


# -- siblings ------------------------------------------------------------------------------------------


def test_five_writes_with_one_stale_context_make_five_siblings(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("siblings"))
    bucket.allow_mult = True
    assert bucket.allow_mult is True
    text(bucket, "k", "original").store(return_body=False)
    stale = bucket.get("k").vclock
    assert stale is not None
    for i in range(5):
        writer = text(rc.clients[rc.cluster.names[i % 3]].bucket(bucket.name), "k", f"writer {i}")
        writer.vclock = stale
        writer.store(return_body=False)

    got = bucket.get("k")
    assert len(got.siblings) == 5
    assert sibling_values(got) == [f"writer {i}".encode() for i in range(5)]  # "original" was seen by all
    with pytest.raises(riak.ConflictError):
        _ = got.data
    # Every node sees the same five.
    for name, client in rc.clients.items():
        assert sibling_values(client.bucket(bucket.name).get("k", r="all")) == sibling_values(got), name

    # Write back a resolution with the 300's merged vclock: one value again.
    got.siblings = [got.siblings[0]]
    got.encoded_data = b"resolved"
    got.store(return_body=False)
    for name, client in rc.clients.items():
        resolved = client.bucket(bucket.name).get("k", r="all")
        assert len(resolved.siblings) == 1, name
        assert resolved.encoded_data == b"resolved", name


def test_a_write_with_the_pre_delete_context_shows_the_tombstone_as_a_sibling(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("tombstone"))
    bucket.allow_mult = True
    text(bucket, "k", "before").store(return_body=False)
    before = bucket.get("k")
    pre_delete = before.vclock
    before.delete()  # carries the vclock
    assert not bucket.get("k").exists

    after = text(bucket, "k", "after the delete")
    after.vclock = pre_delete  # concurrent with the delete
    after.store(return_body=False)

    got = bucket.get("k")
    assert len(got.siblings) == 2, [(s.exists, raw(s)) for s in got.siblings]
    assert sorted(s.exists for s in got.siblings) == [False, True]  # one tombstone, one live value
    assert sibling_values(got) == [b"after the delete"]


# -- metadata and links --------------------------------------------------------------------------------


def test_user_metadata_and_300_links_round_trip(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("meta"))
    obj = text(bucket, "k", "linked")
    obj.usermeta = {"color": "blue", "shape": "a round thing", "empty": ""}
    links = [(f"target {i % 3}", f"key/{i} \u00e9", f"tag{i % 7}") for i in range(300)]
    for link in links:
        obj.add_link(link)
    obj.store(return_body=False)
    for name, client in rc.clients.items():
        got = client.bucket(bucket.name).get("k")
        assert got.usermeta == {"color": "blue", "shape": "a round thing", "empty": ""}, name
        assert len(got.links) == 300, name
        assert sorted(got.links) == sorted(links), name
        assert got.encoded_data == b"linked", name


def test_metadata_is_kept_per_sibling(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("meta-siblings"))
    bucket.allow_mult = True
    for i, color in enumerate(("red", "green")):
        obj = text(rc.clients[rc.cluster.names[i]].bucket(bucket.name), "k", color)
        obj.usermeta = {"color": color}
        obj.add_link((bucket.name, f"friend-of-{color}", "friend"))
        obj.store(return_body=False)  # no vclock: two concurrent writes
    got = bucket.get("k")
    assert len(got.siblings) == 2
    by_value = {raw(s): s for s in got.siblings}
    assert set(by_value) == {b"red", b"green"}
    for color in ("red", "green"):
        sibling = by_value[color.encode()]
        assert sibling.usermeta == {"color": color}
        assert sibling.links == [(bucket.name, f"friend-of-{color}", "friend")]


# -- bucket properties ---------------------------------------------------------------------------------


def props_subset(props: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    return {key: props.get(key) for key in keys}


def test_bucket_props_set_get_reset(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("props"))
    defaults = bucket.get_properties()
    assert props_subset(defaults, DEFAULT_PROPS) == DEFAULT_PROPS

    # Every value differs from its default, so each echo below shows the change was stored.
    changed = {"n_val": 2, "allow_mult": False, "r": 1, "w": 1, "dw": "all", "rw": "one", "pr": 1}
    bucket.set_properties(changed)
    props = bucket.get_properties()
    assert props_subset(props, changed) == changed  # echoed as set: 1 stays 1, "all" stays "all"
    assert props["last_write_wins"] is False  # not touched
    # The client's attribute accessors (one GET or PUT each).
    assert (bucket.n_val, bucket.allow_mult, bucket.w, bucket.dw, bucket.r) == (2, False, 1, "all", 1)
    bucket.w = "quorum"
    assert bucket.w == "quorum"

    # Another bucket keeps the defaults.
    assert props_subset(rc.client.bucket(fresh("props-other")).get_properties(), DEFAULT_PROPS) == (
        DEFAULT_PROPS
    )

    assert bucket.clear_properties() is True
    assert bucket.get_properties() == defaults


def test_n_val_per_bucket_takes_effect(rc: RiakCluster) -> None:
    bucket = rc.client.bucket(fresh("nval"))
    bucket.set_properties({"n_val": 1})
    assert bucket.n_val == 1
    text(bucket, "k", "one copy").store(return_body=False)
    assert bucket.get("k", r=1).encoded_data == b"one copy"
    # r above the bucket's n_val is refused (Riak: 400 n_val_violation).
    with pytest.raises(riak.RiakError, match="received 400"):
        bucket.get("k", r=3)


def test_every_node_answers_bucket_props_the_same_after_a_change(rc: RiakCluster) -> None:
    name = fresh("props-everywhere")
    changed = {"n_val": 2, "allow_mult": False, "w": 1, "dw": "all"}
    rc.clients["dev2"].bucket(name).set_properties(changed)

    def all_agree() -> bool:
        answers = [client.bucket(name).get_properties() for client in rc.clients.values()]
        return all(props_subset(props, changed) == changed for props in answers) and all(
            props == answers[0] for props in answers
        )

    wait_for(all_agree, PROPS_TIMEOUT_S, "every node to answer the changed bucket props")

    assert rc.clients["dev3"].bucket(name).clear_properties() is True

    def all_reset() -> bool:
        answers = [client.bucket(name).get_properties() for client in rc.clients.values()]
        return all(props_subset(props, DEFAULT_PROPS) == DEFAULT_PROPS for props in answers)

    wait_for(all_reset, PROPS_TIMEOUT_S, "every node to answer the default bucket props again")


# -- listing -------------------------------------------------------------------------------------------


def streamed(stream: Any) -> list[Any]:
    with contextlib.closing(stream) as pieces:
        return [item for piece in pieces for item in piece]


def test_list_keys_plain_and_streamed(rc: RiakCluster) -> None:
    names = [fresh("keys-a"), fresh("keys-b")]
    expected = {
        names[0]: sorted([f"a{i:03d}" for i in range(120)] + ["with space", "caf\u00e9", "slash/in/key"]),
        names[1]: ["only-b"],
    }
    for name, keys in expected.items():
        bucket = rc.client.bucket(name)
        for key in keys:
            text(bucket, key, key).store(return_body=False)
    deleted = rc.client.bucket(names[1])
    text(deleted, "deleted", "x").store(return_body=False)
    deleted.get("deleted").delete()

    for node, client in rc.clients.items():
        for name, keys in expected.items():
            bucket = client.bucket(name)
            assert sorted(bucket.get_keys()) == keys, (node, name)
            assert sorted(streamed(bucket.stream_keys())) == keys, (node, name)
    assert rc.client.bucket(fresh("keys-never")).get_keys() == []


def test_list_buckets_plain_and_streamed(rc: RiakCluster) -> None:
    names = sorted(fresh("list-buckets") for _ in range(3))
    for name in names:
        text(rc.client.bucket(name), "k", "v").store(return_body=False)
    never = fresh("list-buckets-never")

    plain = {bucket.name for bucket in rc.client.get_buckets()}
    stream = {bucket.name for bucket in streamed(rc.client.stream_buckets())}
    assert set(names) <= plain
    assert never not in plain
    assert plain == stream
    for node, client in rc.clients.items():
        assert set(names) <= {bucket.name for bucket in client.get_buckets()}, node
