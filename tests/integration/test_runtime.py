"""The runtime with real processes: `dynakv dev`, `dynakv node`, loopback TCP and real disk.

Each story runs a real cluster (conftest.py) and talks to it only over the native protocol, the
CLI and the files the nodes write. Every engine runs at least once: sqlite (the main story), memory
(bad input), lmdb (dev restart on per-node addresses).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from dynakv.core.objects import decode_object, visible_siblings
from dynakv.core.ring import Ring
from dynakv.protocol.messages import Failure, FailureKind, GetReply, PutReply
from dynakv.storage.registry import open_engine
from dynakv.wire.codec import PROTOCOL_VERSION, Hello, decode_hello, encode_hello
from dynakv.wire.framing import encode_frame
from tests.integration.conftest import (
    FRAME_MAX,
    Cluster,
    NativeConn,
    StartCluster,
    dynakv_command,
    get,
    parse_address,
    put,
    wait_for,
)

BUCKET = b"b"


def values(reply: object) -> list[bytes]:
    assert isinstance(reply, GetReply), reply
    return sorted(c.value for c in reply.siblings)


def actors_in_log(node_dir: Path) -> list[str]:
    return re.findall(r"\(actor (\S+)\) serving", (node_dir / "node.log").read_text())


def counters_in_log(node_dir: Path) -> dict[str, int]:
    lines = re.findall(r"counters (\{.*\})", (node_dir / "node.log").read_text())
    assert lines, f"no counters line in {node_dir / 'node.log'}"
    counters: dict[str, int] = json.loads(lines[-1])
    return counters


def stored_value(engine_name: str, node_dir: Path, key: bytes, ring: Ring) -> list[bytes]:
    """Read one key straight from a stopped node's storage engine (under its partition in `ring`)."""
    store = open_engine(engine_name, str(node_dir / "storage"))
    try:
        raw = store.get(ring.partition_for_key(BUCKET, key), BUCKET, key)
    finally:
        store.close()
    return [] if raw is None else sorted(c.value for _, c in visible_siblings(decode_object(raw)))


def check_ready_files(cluster: Cluster) -> None:
    for name in cluster.names:
        node = cluster.nodes[name]
        ready = json.loads((node.data_dir / "ready.json").read_text())
        assert ready == {
            "name": name,
            "pid": node.pid,
            "cluster": node.cluster,
            "client": node.client,
            "http": node.http,
        }
        for address in (ready["cluster"], ready["client"]):
            host, port = parse_address(address)
            assert host == "127.0.0.1" and port > 0
            socket.create_connection((host, port), timeout=5).close()  # really listening


def check_formed_through_seeds(cluster: Cluster) -> Ring:
    """`dev` formed the cluster the dynamic way, not from a member list: each node.json names only the
    node itself, and dev2.. have dev1 as their seed; every node holds the same ring, which all members
    share evenly, with no move pending (`Cluster.ring` refuses one). Returns that ring."""
    seed = cluster.nodes["dev1"].cluster
    rings = {}
    for name in cluster.names:
        saved = json.loads((cluster.nodes[name].data_dir / "node.json").read_text())
        assert saved["members"] == {name: cluster.nodes[name].cluster}, saved
        assert saved["seeds"] == ([] if name == "dev1" else [seed]), saved
        rings[name] = cluster.ring(name)
    ring, n_val = rings["dev1"]
    assert all(held == (ring, n_val) for held in rings.values()), rings
    counts = ring.counts()
    assert sorted(counts) == cluster.names and max(counts.values()) - min(counts.values()) <= 1, counts
    return ring


def test_three_nodes_survive_one_kill_fail_clearly_at_two_and_restart_with_their_data(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(nodes=3, storage="sqlite", n_val=3)
    check_ready_files(cluster)
    ring = check_formed_through_seeds(cluster)
    first = cluster.request("dev1", put(BUCKET, b"k1", b"v1", w=2))
    assert isinstance(first, PutReply), first
    for name in cluster.names:
        assert values(cluster.request(name, get(BUCKET, b"k1", r=2))) == [b"v1"], name

    # One node down: gets and puts still succeed (r = w = 2 of n_val 3).
    dev3_pid = cluster.nodes["dev3"].pid
    cluster.kill9("dev3")
    # dev reports the death (it does not restart the node).
    wait_for(
        lambda: f"dev3 (pid {dev3_pid}) exited with code -9" in cluster.dev_log.read_text(), 10, "report"
    )
    for name in ("dev1", "dev2"):
        assert values(cluster.request(name, get(BUCKET, b"k1", r=2))) == [b"v1"]
    assert isinstance(cluster.request("dev2", put(BUCKET, b"k2", b"v2", w=2)), PutReply)
    assert values(cluster.request("dev1", get(BUCKET, b"k2", r=2))) == [b"v2"]

    # Two down: a w=2 put cannot gather its quorum, and says so with the numbers.
    cluster.kill9("dev2")
    failed = cluster.request("dev1", put(BUCKET, b"k3", b"v3", w=2))
    assert isinstance(failed, Failure), failed
    assert (failed.kind, failed.field, failed.needed, failed.acknowledged) == (
        FailureKind.UNAVAILABLE,
        "w",
        2,
        1,
    )

    # Restart dev3 from its data dir alone: it rejoins and serves with the same actor.
    cluster.restart("dev3")
    assert values(cluster.request("dev3", get(BUCKET, b"k1", r=2))) == [b"v1"]
    assert isinstance(cluster.request("dev3", put(BUCKET, b"k4", b"v4", w=2)), PutReply)
    actors = actors_in_log(cluster.nodes["dev3"].data_dir)
    assert len(actors) == 2 and actors[0] == actors[1], actors  # the epoch lives in its storage

    # SIGTERM stops it cleanly (exit 0); its storage, read directly, holds what it acknowledged.
    assert cluster.stop("dev3") == 0
    dev3_dir = cluster.nodes["dev3"].data_dir
    assert stored_value("sqlite", dev3_dir, b"k1", ring) == [b"v1"]
    assert stored_value("sqlite", dev3_dir, b"k4", ring) == [b"v4"]
    assert not (dev3_dir / "ready.json").exists()
    assert cluster.stop_all() == 0


def _expect_closed(conn: NativeConn) -> None:
    assert conn.closed_by_server(), "the node kept a connection open after bad input"


def _bad_client_input(cluster: Cluster) -> int:
    """Each bad input closes its own connection only; returns how many were sent."""
    address = cluster.client("dev1")
    bad_inputs = [
        (False, b"\x00\x00\x00\x05garbage-not-msgpack"),  # garbage instead of a hello
        (True, struct.pack(">I", FRAME_MAX + 1) + b"x"),  # an oversized length prefix
        (True, encode_frame(b"\xc1\xc1\xc1", FRAME_MAX)),  # a frame that is not msgpack
        (
            True,
            encode_frame(encode_hello(Hello("x", PROTOCOL_VERSION, "c", "client")), FRAME_MAX),
        ),  # 2nd hello
    ]
    with NativeConn(address) as bystander:  # a healthy connection open through all of it
        for after_hello, data in bad_inputs:
            with NativeConn(address, hello=after_hello) as conn:
                conn.raw(data)
                _expect_closed(conn)
        assert values(bystander.request(get(BUCKET, b"k", r=1))) == [b"v"]
    return len(bad_inputs)


def _bad_hellos(cluster: Cluster) -> int:
    """Hellos a node refuses: wrong role on each port, wrong version, its own name, other cluster. (A node
    name it does not know is heard: it may be joining through this node.)"""
    refused = [
        (cluster.client("dev1"), Hello("dynakv", PROTOCOL_VERSION, "dev2", "node")),
        (cluster.client("dev1"), Hello("dynakv", PROTOCOL_VERSION + 1, "c", "client")),
        (cluster.nodes["dev1"].cluster, Hello("dynakv", PROTOCOL_VERSION, "c", "client")),
        (cluster.nodes["dev1"].cluster, Hello("dynakv", PROTOCOL_VERSION, "dev1", "node")),
        (cluster.nodes["dev1"].cluster, Hello("other", PROTOCOL_VERSION, "dev2", "node")),
    ]
    for address, hello in refused:
        with NativeConn(address, hello=False) as conn:
            conn.raw(encode_frame(encode_hello(hello), FRAME_MAX))
            _expect_closed(conn)
    return len(refused)


def test_malformed_input_closes_that_connection_only(start_cluster: StartCluster) -> None:
    cluster = start_cluster(nodes=2, storage="memory", n_val=2)
    assert isinstance(cluster.request("dev1", put(BUCKET, b"k", b"v")), PutReply)
    malformed = _bad_client_input(cluster)
    rejected = _bad_hellos(cluster)

    # The cluster port: garbage, an oversized frame, and a bad message after a valid peer hello.
    peer_hello = encode_frame(encode_hello(Hello("dynakv", PROTOCOL_VERSION, "dev2", "node")), FRAME_MAX)
    for data in (
        b"\xff" * 64,
        struct.pack(">I", FRAME_MAX + 1),
        peer_hello + encode_frame(b"\x93\x01", FRAME_MAX),
    ):
        with NativeConn(cluster.nodes["dev1"].cluster, hello=False) as conn:
            conn.raw(data)
            _expect_closed(conn)
        malformed += 1
    with NativeConn(cluster.nodes["dev1"].cluster, hello=False) as conn:
        conn.raw(peer_hello)
        answer = decode_hello(conn.recv_frame())
        assert answer == Hello("dynakv", PROTOCOL_VERSION, "dev1", "node", cluster.nodes["dev1"].cluster)

    # The node goes on serving, and its peer link too (a put needs dev2's ack with w=2).
    assert isinstance(cluster.request("dev1", put(BUCKET, b"k2", b"v2", w=2)), PutReply)
    assert values(cluster.request("dev2", get(BUCKET, b"k2", r=2))) == [b"v2"]
    cluster.stop_all()
    counters = counters_in_log(cluster.nodes["dev1"].data_dir)
    assert counters.get("wire.malformed") == malformed, counters
    assert counters.get("wire.hello_rejected") == rejected, counters


def test_many_requests_in_flight_on_one_connection(start_cluster: StartCluster) -> None:
    cluster = start_cluster(nodes=1, storage="memory")
    with cluster.connect("dev1") as conn:
        assert conn.server_hello is not None and conn.server_hello.cluster == "dynakv"
        sent = {conn.send(put(BUCKET, f"k{i}".encode(), f"v{i}".encode())): i for i in range(200)}
        replies = dict(conn.recv() for _ in sent)
        assert sorted(replies) == sorted(sent)
        assert all(isinstance(r, PutReply) for r in replies.values())
        gets = {conn.send(get(BUCKET, f"k{i}".encode())): i for i in range(200)}
        for _ in gets:
            request_id, reply = conn.recv()
            assert values(reply) == [f"v{gets[request_id]}".encode()]


def _connections_to(port: int) -> set[str]:
    """Local IPv4 addresses of established loopback TCP connections to `port` (Linux /proc/net/tcp)."""
    sources = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            ip = bytes.fromhex(local.split(":")[0])[::-1]  # little-endian on x86 and arm64
            sources.add(socket.inet_ntoa(ip))
    return sources


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_dev_on_own_addresses_restarts_with_its_data(start_cluster: StartCluster) -> None:
    cluster = start_cluster(nodes=3, storage="lmdb", base_ip="127.0.0.41")
    hosts = {name: parse_address(cluster.nodes[name].cluster)[0] for name in cluster.names}
    assert hosts == {"dev1": "127.0.0.41", "dev2": "127.0.0.42", "dev3": "127.0.0.43"}
    assert isinstance(cluster.request("dev2", put(BUCKET, b"k", b"v", w=3)), PutReply)
    # Each node's outgoing cluster connections start from its own address: one firewall rule on an
    # address isolates one node.
    port = parse_address(cluster.nodes["dev2"].cluster)[1]
    assert wait_for(lambda: _connections_to(port) == {"127.0.0.41", "127.0.0.43"}, 10, "peer links to dev2")

    old = {name: cluster.nodes[name].cluster for name in cluster.names}
    old_ring = cluster.ring()
    assert cluster.stop_all() == 0
    dev_output = cluster.dev_log.read_text()
    assert "exited with code" not in dev_output, dev_output  # every node stopped with exit 0
    cluster.relaunch()
    assert {name: cluster.nodes[name].cluster for name in cluster.names} == old
    # The same nodes, restarted on the ring in their stored cluster state: nothing formed again.
    assert all(cluster.ring(name) == old_ring for name in cluster.names)
    for name in cluster.names:
        assert values(cluster.request(name, get(BUCKET, b"k", r=3))) == [b"v"], name
    assert cluster.stop_all() == 0


def test_dev_refuses_a_directory_whose_cluster_never_formed(tmp_path: Path) -> None:
    """A first run stopped while forming leaves node dirs and no cluster.json; restarting those nodes
    would leave joins staged and never committed, so `dev` refuses the directory up front."""
    (tmp_path / "dev1").mkdir()
    (tmp_path / "dev1" / "node.json").write_text("{}")
    run = subprocess.run(
        dynakv_command("dev", "--nodes", "2", "--data", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "no cluster.json" in run.stderr and "start afresh" in run.stderr, run.stderr
    assert not (tmp_path / "dev1" / "node.log").exists()  # nothing was started


def _run_solo(data: Path, *flags: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    with open(data.with_suffix(".log"), "ab") as log:
        proc = subprocess.Popen(dynakv_command("node", "--data", str(data), *flags), stderr=log)
    try:
        return proc, wait_for(lambda: _ready_of(data, proc), 30, "ready.json")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _sigterm(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_alone_port_zero_sigterm_and_restart_flags(tmp_path: Path) -> None:
    data = tmp_path / "solo"
    first, ready = _run_solo(data, "--name", "solo", "--listen", "127.0.0.1:0", "--storage", "memory")
    try:
        for address in (ready["cluster"], ready["client"]):
            assert parse_address(address)[1] > 0
        with NativeConn(ready["client"]) as conn:
            assert isinstance(conn.request(put(BUCKET, b"k", b"v")), PutReply)
    finally:
        assert _sigterm(first) == 0
    assert not (data / "ready.json").exists()

    # Restart with --data alone plus one flag: the flag wins and is saved, the rest is kept.
    second, ready = _run_solo(data, "--cluster-name", "other")
    try:
        with NativeConn(ready["client"]) as conn:
            assert conn.server_hello is not None and conn.server_hello.cluster == "other"
            assert values(conn.request(get(BUCKET, b"k"))) == []  # the memory engine kept nothing
    finally:
        assert _sigterm(second) == 0
    saved = json.loads((data / "node.json").read_text())
    assert (saved["name"], saved["cluster_name"], saved["storage"]) == ("solo", "other", "memory")
    # With the data gone, so is the actor epoch: the node must not reuse its old dots.
    actors = re.findall(r"\(actor (\S+)\) serving", data.with_suffix(".log").read_text())
    assert len(actors) == 2 and actors[0] != actors[1], actors


def _ready_of(data: Path, proc: subprocess.Popen[bytes]) -> dict[str, str] | None:
    assert proc.poll() is None, f"the node exited with {proc.returncode}; see {data.with_suffix('.log')}"
    try:
        ready: dict[str, str] = json.loads((data / "ready.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return ready if ready.get("pid") == proc.pid else None
