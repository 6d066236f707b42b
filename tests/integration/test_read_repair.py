"""A stale replica is repaired by a get, checked on that replica directly (issue 3, acceptance).

3 nodes, n_val 3, sqlite. With every node up, some keys are written with w=3; dev3 is killed with
SIGKILL; while it is down, new keys are written, the old keys get a second version written with their
context, and one old key is deleted (all w=2). dev3's storage, read directly while it is down, shows
the precondition: the new keys absent, the old ones at v1. dev3 is restarted from its data dir alone
(nothing in this version pushes data to it: no hinted handoff, no anti-entropy), and gets with r=2
are issued: most through dev1, so its repairs travel to dev3 as ReadRepair messages, and a few through
dev3 itself, which repairs its own copy once the other replicas answered. Then dev3 is stopped cleanly
(SIGTERM flushes the engine) and its storage is read directly: every key must hold the latest version
only (v2, not v1 and v2 as siblings; the deleted key a tombstone, nothing visible).

Waiting: a repair is sent after the client's reply, once the last replica answered, so a stop right
after the gets could beat it. Before stopping, a w=3 put through dev1 acts as a barrier: dev1 sends to
dev3 over one connection, in order, and dev3 applies what it receives in order, so the put's ack
means every repair dev1 had sent was applied. A repair dev1 had not sent yet can still miss the stop;
so checking is a poll with a deadline: stop, read, and if a key is still stale restart dev3, get that
key again and read again.

The counters each node logs at a clean stop pin down who repaired: dev1's and dev3's read_repairs
together cover every stale key, which the probe keys of `wait_connected` (never written) cannot produce.
Checked by hand: with read repair switched off in data_path.py, the test fails at its deadline, listing
every key as still stale on dev3 (and the precondition shows they were stale to begin with).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from dynakv.client import Client
from dynakv.core.objects import StoredObject, visible_siblings
from dynakv.core.ring import Ring
from dynakv.protocol.replica import read_local
from dynakv.storage.registry import open_engine
from tests.integration.conftest import Cluster, StartCluster

BUCKET = b"repair"
STALE = "dev3"
REPAIR_DEADLINE_S = 15.0

MISSING = [b"missing-%02d" % i for i in range(12)]  # written only while dev3 was down
OUTDATED = [b"outdated-%02d" % i for i in range(6)]  # v1 on all three, v2 while dev3 was down
DELETED = b"deleted"  # on all three, deleted while dev3 was down
KEYS = [*MISSING, *OUTDATED, DELETED]
VIA_STALE = {MISSING[0], MISSING[1], OUTDATED[0]}  # these are read through dev3 itself


def stored(node_dir: Path, ring: Ring, keys: list[bytes]) -> dict[bytes, StoredObject]:
    """The objects a stopped (or killed) sqlite node holds, read straight from its storage engine (under
    each key's partition in the cluster's `ring`)."""
    storage = open_engine("sqlite", str(node_dir / "storage"))
    try:
        return {key: read_local(storage, ring.partition_for_key(BUCKET, key), BUCKET, key) for key in keys}
    finally:
        storage.close()


def values(obj: StoredObject) -> list[bytes]:
    return sorted(content.value for _, content in visible_siblings(obj))


def expected(key: bytes) -> list[bytes]:
    if key == DELETED:
        return []
    return [(b"v2 of " if key in OUTDATED else b"new ") + key]


def is_repaired(key: bytes, obj: StoredObject) -> bool:
    if key == DELETED:
        # A tombstone, not an absent key: the v1 it supersedes is gone, and the delete is remembered.
        return len(obj.siblings) > 0 and values(obj) == []
    return values(obj) == expected(key)


def read_repairs(node_dir: Path) -> int:
    """The node's read_repairs, summed over the runs that stopped cleanly (each logs its own count)."""
    lines = re.findall(r"counters (\{.*\})", (node_dir / "node.log").read_text())
    assert lines, f"no counters line in {node_dir / 'node.log'}"
    return sum(int(json.loads(line).get("read_repairs", 0)) for line in lines)


def repair_by_gets(cluster: Cluster, keys: list[bytes]) -> None:
    """Get each key with r=2 (through dev3 for VIA_STALE, else dev1): each answer is already the latest
    version, from the up-to-date replicas; the repair of dev3 follows. Then the barrier put."""
    with Client(cluster.client("dev1")) as dev1, Client(cluster.client(STALE)) as dev3:
        for key in keys:
            got = (dev3 if key in VIA_STALE else dev1).get(BUCKET, key, r=2)
            assert sorted(s.value for s in got.siblings) == expected(key), key
        dev1.put(BUCKET, b"barrier", b"b", w=3)


def test_a_get_repairs_missing_outdated_and_deleted_copies_on_a_stale_replica(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(nodes=3, storage="sqlite", n_val=3)
    stale_dir = cluster.nodes[STALE].data_dir
    ring, _ = cluster.ring()  # while every node runs: dev3's storage is read while it is down
    with Client(cluster.client("dev1")) as client:
        v1 = {key: client.put(BUCKET, key, b"v1 of " + key, w=3).context for key in [*OUTDATED, DELETED]}
        cluster.kill9(STALE)
        for key in MISSING:
            client.put(BUCKET, key, b"new " + key, w=2)
        for key in OUTDATED:
            client.put(BUCKET, key, b"v2 of " + key, context=v1[key], w=2)
        client.delete(BUCKET, DELETED, context=v1[DELETED], w=2)

    # The precondition, read from the dead node's storage: without a repair the test would fail.
    before = stored(stale_dir, ring, KEYS)
    assert all(len(before[key].siblings) == 0 for key in MISSING), before
    assert all(values(before[key]) == [b"v1 of " + key] for key in [*OUTDATED, DELETED]), before

    cluster.restart(STALE)
    cluster.wait_connected()  # dev1 and dev2 see dev3 up again, or a get would not even ask it
    stale = list(KEYS)
    attempts = 0
    deadline = time.monotonic() + REPAIR_DEADLINE_S
    while True:
        attempts += 1
        repair_by_gets(cluster, stale)
        assert cluster.stop(STALE) == 0
        after = stored(stale_dir, ring, KEYS)
        stale = [key for key in KEYS if not is_repaired(key, after[key])]
        if not stale:
            break
        assert time.monotonic() < deadline, (
            f"after {attempts} rounds of gets, {STALE} still holds stale copies: "
            f"{[(key, values(after[key]), len(after[key].siblings)) for key in stale]}"
        )
        cluster.restart(STALE)
        cluster.wait_connected()

    # Who repaired: dev3 its own copies of VIA_STALE, dev1 the rest (counted at their clean stops).
    assert cluster.stop_all() == 0
    counted = (read_repairs(stale_dir), read_repairs(cluster.nodes["dev1"].data_dir))
    wanted = (len(VIA_STALE), len(KEYS) - len(VIA_STALE))
    if attempts == 1:
        assert counted == wanted, (counted, wanted)
    else:  # a retried key was repaired again
        assert counted[0] >= wanted[0] and counted[1] >= wanted[1], (counted, wanted)
