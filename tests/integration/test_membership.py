"""Dynamic membership with real processes: a node forms a one-node cluster, another finds it through
`--seed` and stages its own join; both see the same membership."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dynakv.client import Client, ClusterStatus
from dynakv.client.protocol import parse_address
from tests.integration.conftest import (
    START_TIMEOUT_S,
    NodeInfo,
    _ready,
    _wait_or_kill,
    dynakv_command,
    wait_for,
)

StartNode = Callable[..., NodeInfo]


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[StartNode]:
    """`start_node(name, *flags)`: `dynakv node` on loopback port 0 in tmp_path/name, ready."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *flags: str) -> NodeInfo:
        data = tmp_path / name
        data.mkdir(exist_ok=True)
        args = ["--data", str(data), "--name", name, "--listen", "127.0.0.1:0", "--storage", "memory"]
        with open(data / "node.log", "ab") as log:
            proc = subprocess.Popen(
                dynakv_command("node", *args, *flags), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        started.append(proc)
        node = NodeInfo(name, data, "", "", proc.pid, proc)
        ready = wait_for(lambda: _ready(node, proc), START_TIMEOUT_S, f"{name} to be ready")
        node.cluster, node.client, node.http = ready["cluster"], ready["client"], ready.get("http")
        return node

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            _wait_or_kill(proc)


def status_of(node: NodeInfo) -> ClusterStatus:
    with Client([parse_address(node.client)]) as client:
        return client.status()


def states(node: NodeInfo) -> dict[str, str]:
    return {m.name: m.state for m in status_of(node).members}


def test_a_node_with_a_seed_stages_its_own_join(start_node: StartNode) -> None:
    first = start_node("m1", "--n-val", "3")
    assert states(first) == {"m1": "valid"}
    assert [m.partitions_owned for m in status_of(first).members] == [64]
    second = start_node("m2", "--seed", first.cluster)
    want = {"m1": "valid", "m2": "joining"}
    wait_for(lambda: states(first) == want, START_TIMEOUT_S, "m1 to see m2 joining")
    wait_for(lambda: states(second) == want, START_TIMEOUT_S, "m2 to hold the cluster's state")
    # A joining member owns nothing until a commit.
    owned = {m.name: m.partitions_owned for m in status_of(second).members}
    assert owned == {"m1": 64, "m2": 0}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(dynakv_command(*args), capture_output=True, text=True, timeout=60, check=False)


def test_plan_and_commit_through_a_node_that_is_not_the_claimant(start_node: StartNode) -> None:
    first = start_node("m1", "--n-val", "3")
    second = start_node("m2", "--seed", first.cluster)
    wait_for(lambda: states(second).get("m2") == "joining", START_TIMEOUT_S, "m2 to stage its join")
    plan = cli("cluster", "plan", "--host", second.client)
    assert plan.returncode == 0, plan.stderr
    assert "m2" in plan.stdout and "claimant m1" in plan.stdout
    # m2 is not the claimant: it forwards the commit to m1.
    commit = cli("cluster", "commit", "--host", second.client, "--json")
    assert commit.returncode == 0, commit.stderr
    assert json.loads(commit.stdout)["claimant"] == "m1"
    wait_for(lambda: states(second) == {"m1": "valid", "m2": "valid"}, START_TIMEOUT_S, "m2 valid")
    transfers = cli("cluster", "transfers", "--host", first.client, "--json")
    assert transfers.returncode == 0, transfers.stderr
    # Whatever is still pending moves from m1 to m2 (the partitions are empty: they move at once).
    assert {(m["from"], m["to"]) for m in json.loads(transfers.stdout)["moves"]} <= {("m1", "m2")}
    # Nothing is staged any more.
    again = cli("cluster", "commit", "--host", first.client)
    assert again.returncode != 0 and "nothing" in again.stderr.lower(), (again.stdout, again.stderr)

    def ring_view() -> dict[str, Any]:
        ring = cli("ring", "--host", first.client, "--json")
        assert ring.returncode == 0, ring.stderr
        view: dict[str, Any] = json.loads(ring.stdout)
        return view

    # Flipped: no move left at all (a move stays listed, complete, until the claimant flips it).
    view = wait_for(lambda: (v := ring_view())["moves"] == [] and v, 60, "the ring to flip")
    assert view["transfers_pending"] == 0
    assert {m["name"]: (m["state"], m["partitions"]) for m in view["members"]} == {
        "m1": ("valid", 32),
        "m2": ("valid", 32),
    }
    assert view["ring_version"] >= 3  # the commit, then the flip
    # Each partition's owner, agreeing with the counts.
    assert len(view["owners"]) == 64
    assert {name: view["owners"].count(name) for name in ("m1", "m2")} == {"m1": 32, "m2": 32}
    status = cli("status", "--host", second.client, "--json")
    assert {m["name"] for m in json.loads(status.stdout)["members"]} == {"m1", "m2"}


def test_leave_and_remove_are_staged_and_checked(start_node: StartNode) -> None:
    first = start_node("m1", "--n-val", "3")
    refused = cli("cluster", "leave", "nobody", "--host", first.client)
    assert refused.returncode != 0 and "nobody" in refused.stderr
    staged = cli("cluster", "leave", "m1", "--host", first.client)
    assert staged.returncode == 0 and "staged: leave m1" in staged.stdout, staged.stderr
    cleared = cli("cluster", "clear", "--host", first.client)
    assert cleared.returncode == 0 and "nothing staged" in cleared.stdout, cleared.stderr


def test_a_join_moves_data_while_a_writer_runs(start_node: StartNode) -> None:
    """Two nodes (n_val 2); a third joins and is committed while writes go on: no write fails, the ring
    flips once its partitions arrived, the new node owns its share, every key reads at r = n_val."""
    first = start_node("m1", "--n-val", "2")
    second = start_node("m2", "--seed", first.cluster, "--n-val", "2")
    wait_for(lambda: states(first).get("m2") == "joining", START_TIMEOUT_S, "m2 joining")
    assert cli("cluster", "commit", "--host", first.client).returncode == 0

    def flipped(node: NodeInfo, owners: int) -> bool:
        status = status_of(node)
        counts = [m.partitions_owned for m in status.members]
        return len(counts) == owners and min(counts) >= 64 // owners - 1 and status.transfers_pending == 0

    wait_for(lambda: flipped(second, 2), 60, "the ring to flip to m1, m2")
    with Client([parse_address(first.client), parse_address(second.client)]) as client:
        for i in range(300):
            client.put(b"b", f"k{i}".encode(), f"v{i}".encode(), w=2)
        third = start_node("m3", "--seed", second.cluster, "--n-val", "2")
        wait_for(lambda: states(first).get("m3") == "joining", START_TIMEOUT_S, "m3 joining")
        assert cli("cluster", "commit", "--host", third.client).returncode == 0
        written = 300
        while not flipped(third, 3):
            client.put(b"b", f"k{written}".encode(), f"v{written}".encode(), w=2)  # raises on failure
            written += 1
            assert written < 100_000, "the ring did not flip"
    with Client([parse_address(third.client)]) as client:
        for i in range(written):
            result = client.get(b"b", f"k{i}".encode(), r=2)
            assert [s.value for s in result.siblings] == [f"v{i}".encode()], i


def three_nodes(start_node: StartNode) -> list[NodeInfo]:
    """m1, then m2 and m3 joining through it one at a time (n_val 2), each commit flipped."""
    nodes = [start_node("m1", "--n-val", "2")]
    for name in ("m2", "m3"):
        nodes.append(start_node(name, "--seed", nodes[0].cluster, "--n-val", "2"))
        wait_for(
            lambda name=name: states(nodes[0]).get(name) == "joining", START_TIMEOUT_S, f"{name} joining"
        )
        assert cli("cluster", "commit", "--host", nodes[0].client).returncode == 0
        count = len(nodes)
        wait_for(
            lambda count=count: (
                [m.partitions_owned > 0 for m in status_of(nodes[0]).members] == [True] * count
            ),
            60,
            f"{name} to own partitions",
        )
    return nodes


def test_a_leaving_node_hands_its_partitions_off_then_exits(start_node: StartNode) -> None:
    nodes = three_nodes(start_node)
    with Client([parse_address(nodes[0].client)]) as client:
        for i in range(200):
            client.put(b"b", f"k{i}".encode(), f"v{i}".encode(), w=2)
    staged = cli("cluster", "leave", "m3", "--host", nodes[1].client)
    assert staged.returncode == 0, staged.stderr
    wait_for(
        lambda: "leave   m3" in cli("cluster", "plan", "--host", nodes[0].client).stdout, 30, "the leave"
    )
    assert cli("cluster", "commit", "--host", nodes[0].client).returncode == 0
    leaving = nodes[2].proc
    assert leaving is not None
    assert leaving.wait(timeout=60) == 0  # it exits by itself once its partitions are handed off
    wait_for(lambda: set(states(nodes[0])) == {"m1", "m2"}, 30, "m3 gone from the membership")
    assert sorted(m.partitions_owned for m in status_of(nodes[0]).members) == [32, 32]
    with Client([parse_address(nodes[0].client)]) as client:
        for i in range(200):
            result = client.get(b"b", f"k{i}".encode(), r=2)
            assert [s.value for s in result.siblings] == [f"v{i}".encode()], i


def test_a_dead_node_is_removed_and_its_replicas_rebuilt(start_node: StartNode) -> None:
    nodes = three_nodes(start_node)
    with Client([parse_address(nodes[0].client)]) as client:
        for i in range(200):
            client.put(b"b", f"k{i}".encode(), f"v{i}".encode(), w=2)
    dead = nodes[2].proc
    assert dead is not None
    dead.kill()
    dead.wait()
    staged = cli("cluster", "remove", "m3", "--host", nodes[0].client)
    assert staged.returncode == 0, staged.stderr
    assert cli("cluster", "commit", "--host", nodes[0].client).returncode == 0
    wait_for(lambda: set(states(nodes[1])) == {"m1", "m2"}, 30, "m3 removed")
    assert sorted(m.partitions_owned for m in status_of(nodes[1]).members) == [32, 32]
    with Client([parse_address(nodes[1].client)]) as client:
        for i in range(200):
            result = client.get(b"b", f"k{i}".encode(), r=2)
            assert [s.value for s in result.siblings] == [f"v{i}".encode()], i
