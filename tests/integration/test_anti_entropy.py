"""A node whose data is wiped is restored by anti-entropy alone, driven through `dynakv repair` (issue 5 (c)).

3 nodes, n_val 3 (every node is a primary of every key), sqlite. Keys are written with w=all; dev3 is
stopped, its storage directory deleted (node.json stays: the node keeps its name, addresses and seed,
as an operator replacing a failed disk would), and it is restarted empty; it learns the cluster's state,
its ring included, again from the others through gossip. No get touches the keys afterwards,
so read repair cannot be what restores them; nothing was written while dev3 was down, so there are no
hints to hand off either: only anti-entropy can move the data back.

`dynakv repair --cluster DIR` runs until finished (retried to a deadline: an exchange with a node whose
trees are still building is declined and counted as failed, exit 3). Then dev3 is stopped cleanly and
its storage read directly: it must hold every key, with the value written. It is restarted once more
(its trees rebuilt from disk) and a second repair must report 0 keys repaired. Finally `dynakv status
--json` must show every member reachable and no hints pending.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dynakv.client import Client
from dynakv.core.objects import visible_siblings
from dynakv.core.ring import Ring
from dynakv.protocol.replica import read_local
from dynakv.storage.registry import open_engine
from tests.integration.conftest import Cluster, StartCluster, wait_for

BUCKET = b"ae"
WIPED = "dev3"
KEYS = [b"key-%03d" % i for i in range(60)]
REPAIR_DEADLINE_S = 60.0
RUN_TIMEOUT_S = 90


def dynakv(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynakv", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def repaired_keys(cluster: Cluster) -> int:
    """Run `dynakv repair --cluster` until it exits 0 (deadline); the keys it reported repaired."""
    deadline = time.monotonic() + REPAIR_DEADLINE_S
    while True:
        run = dynakv("repair", "--cluster", cluster.root, "--timeout", "30")
        if run.returncode == 0:
            break
        assert run.returncode == 3, f"exit {run.returncode}: {run.stderr}\n{run.stdout}"
        assert time.monotonic() < deadline, f"repair never finished cleanly:\n{run.stdout}{run.stderr}"
    finals = re.findall(r"^repair finished: (\d+) keys repaired, 0 exchanges failed$", run.stdout, re.M)
    assert len(finals) == 1, run.stdout
    return int(finals[0])


def held(node_dir: Path, ring: Ring) -> dict[bytes, list[bytes]]:
    """The visible values a stopped sqlite node holds for KEYS, read straight from its storage (under
    each key's partition in the cluster's `ring`)."""
    storage = open_engine("sqlite", str(node_dir / "storage"))
    try:
        found = {}
        for key in KEYS:
            obj = read_local(storage, ring.partition_for_key(BUCKET, key), BUCKET, key)
            found[key] = sorted(content.value for _, content in visible_siblings(obj))
        return found
    finally:
        storage.close()


def status(cluster: Cluster) -> dict[str, Any]:
    run = dynakv("status", "--json", "--host", cluster.client(WIPED))
    assert run.returncode == 0, run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def test_a_wiped_node_is_restored_by_repair_and_a_second_repair_moves_nothing(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(nodes=3, storage="sqlite")
    # Taken while every node runs. The wiped node loses its stored cluster state with its storage, and
    # learns the ring again from its seed (dev1) through gossip.
    ring, _ = cluster.ring()
    with Client([cluster.client("dev1")]) as client:
        for key in KEYS:
            client.put(BUCKET, key, b"value of " + key, w="all")

    cluster.stop(WIPED)
    data_dir = cluster.nodes[WIPED].data_dir
    assert held(data_dir, ring) == {key: [b"value of " + key] for key in KEYS}  # it had them all
    shutil.rmtree(data_dir / "storage")
    cluster.restart(WIPED)
    cluster.wait_connected()  # probes a key never written: no read repair of KEYS

    # Periodic anti-entropy (every 10 s) may have restored some keys already; the repair does the rest.
    assert repaired_keys(cluster) > 0

    cluster.stop(WIPED)
    missing = {key: values for key, values in held(data_dir, ring).items() if values != [b"value of " + key]}
    assert not missing, f"{len(missing)} keys not restored on {WIPED}: {sorted(missing)[:5]}"

    cluster.restart(WIPED)  # its trees are rebuilt from disk in the background
    cluster.wait_connected()
    assert repaired_keys(cluster) == 0

    def settled() -> dict[str, Any] | None:
        report = status(cluster)
        return report if all(m["reachable"] for m in report["members"]) else None

    report = wait_for(settled, 30, "every member reachable from dev3")
    assert sorted(m["name"] for m in report["members"]) == cluster.names
    assert all(m["state"] == "valid" for m in report["members"])
    assert sum(m["partitions"] for m in report["members"]) == report["partitions"]
    assert report["hints_pending"] == 0
    assert report["transfers_pending"] == 0  # no membership change under way
    assert report["transfers_active"] == 0  # and no handoff running on dev3
