"""Dynamic membership with real processes: a node forms a one-node cluster, another finds it through
`--seed` and stages its own join; both see the same membership."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

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
        node.cluster, node.client = ready["cluster"], ready["client"]
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
