"""kill -9 in the middle of a stream of acknowledged puts loses none of them (issue 3, acceptance).

A writer thread streams puts of distinct keys through the real `AsyncClient` with w = dw = n_val = 3,
several in flight at once, and records each key whose put was ACKNOWLEDGED. Once well over a hundred
are acknowledged, one node is killed with SIGKILL while the stream goes on; the writer's next answers
are failures (that is expected) and it stops. The node is restarted from its data dir alone, shown
to serve, stopped cleanly, and then its storage is opened directly (`open_engine` + `read_local`): every
acknowledged key must be there with its value. Reading the engine, not asking the cluster, is the
proof: a get would be answered, and read-repaired, by the two replicas that never died.

What would make this fail: with w = n_val every acknowledged put was acknowledged by the killed node
itself, so its storage must hold it. A node that acknowledged before its write returned (the ack sent
first, or the write parked in a process-memory queue or group-commit buffer that the ack did not wait
for) loses the writes acknowledged in its last moments: the stream keeps several puts in flight at the
kill, so those keys would be missing, and a node on an engine that keeps nothing (memory) would miss
all of them. Checked by hand: with the sqlite engine patched to keep puts in memory and write them 20
at a time (an ack that does not wait for the write), the sqlite case fails with 14 to 17 of about 155
acknowledged keys missing on the killed replica. The control key below shows that the direct read does
report a missing key.
What it cannot catch: kill -9 leaves the OS page cache intact, so a write that reached the kernel but
was never fsynced survives here; only a power loss (out of reach of a test on one machine) tells those
apart. The storage crash suite covers the engines' fsync discipline.

Two cases, to keep the runtime low: sqlite with a replica killed (the writer's coordinator survives and
its puts fail as unavailable, 3 needed, at most 2 acknowledged), and lmdb with the coordinator itself killed
(the writer's connection drops).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dynakv.client import AsyncClient, Client, ConnectionLost, DynakvClientError, Unavailable
from dynakv.core.objects import visible_siblings
from dynakv.core.ring import Ring
from dynakv.protocol.replica import read_local
from dynakv.storage.registry import open_engine
from tests.integration.conftest import Cluster, StartCluster, wait_for

BUCKET = b"durable"
WRITERS = 8  # puts in flight at once
ACKS_BEFORE_KILL = 150
WRITER_STOP_S = 20.0


def value_of(key: bytes) -> bytes:
    return b"value of " + key


@dataclass
class Stream:
    """What the writer thread saw: acknowledged keys in order, and the error that stopped each task."""

    address: str
    acked: list[bytes] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.started = time.monotonic()
        # No failover: the writer talks to one node, and stops at its first failure.
        async with AsyncClient(self.address, timeout_s=10.0) as client:
            await asyncio.gather(*(self._writer(client, i) for i in range(WRITERS)))

    async def _writer(self, client: AsyncClient, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            key = b"w%d-%06d" % (index, n)
            n += 1
            try:
                await client.put(BUCKET, key, value_of(key), w=3, dw=3, content_type="text/plain")
            except DynakvClientError as err:
                self.errors.append(err)
                return
            self.acked.append(key)  # only now: the put was acknowledged
        self.errors.append(AssertionError(f"writer {index} was stopped before it saw a failure"))


def stored_values(engine: str, node_dir: Path, ring: Ring, keys: list[bytes]) -> dict[bytes, list[bytes]]:
    """Each key's visible sibling values, read straight from a stopped node's storage engine (where a
    key is stored: under its partition in the cluster's `ring`)."""
    storage = open_engine(engine, str(node_dir / "storage"))
    try:
        return {
            key: sorted(
                c.value
                for _, c in visible_siblings(
                    read_local(storage, ring.partition_for_key(BUCKET, key), BUCKET, key)
                )
            )
            for key in keys
        }
    finally:
        storage.close()


def stream_until_killed(cluster: Cluster, via: str, victim: str) -> Stream:
    """Run the writer through `via`, kill -9 `victim` once ACKS_BEFORE_KILL puts are acknowledged,
    and return when every writer task has stopped on its failure."""
    stream = Stream(cluster.client(via))
    thread = threading.Thread(target=stream.run, name="writer", daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(stream.acked) >= ACKS_BEFORE_KILL or stream.errors, 30, "acknowledged puts")
        assert not stream.errors, f"the writer failed before the kill: {stream.errors[0]!r}"
        cluster.kill9(victim)
        thread.join(WRITER_STOP_S)
        assert not thread.is_alive(), f"the writer went on for {WRITER_STOP_S:g} s after the kill"
    finally:
        stream.stop.set()
        thread.join(WRITER_STOP_S)
    return stream


@pytest.mark.parametrize(
    ("engine", "victim"),
    [
        pytest.param("sqlite", "dev3", id="sqlite-replica"),
        pytest.param("lmdb", "dev1", id="lmdb-coordinator"),
    ],
)
def test_kill9_during_acknowledged_puts_loses_none_of_them(
    start_cluster: StartCluster, engine: str, victim: str
) -> None:
    cluster = start_cluster(nodes=3, storage=engine, n_val=3)
    ring, _ = cluster.ring()  # now, while every node runs: the victim's storage is read once it stopped
    # dev1 is a primary of every key (3 nodes, n_val 3), so it coordinates every put itself.
    stream = stream_until_killed(cluster, via="dev1", victim=victim)

    # Every writer task stopped on a failure the kill explains, so the kill hit a running stream.
    assert len(stream.errors) == WRITERS, stream.errors
    for err in stream.errors:
        if victim == "dev1":
            assert isinstance(err, ConnectionLost), repr(err)
        else:
            assert isinstance(err, Unavailable), repr(err)
            # dev1's own ack always; dev2's too unless the loss of dev3 decided the put first.
            assert (err.quorum_field, err.needed) == ("w", 3) and err.acknowledged in (1, 2), str(err)
    acked = list(stream.acked)
    assert len(acked) >= ACKS_BEFORE_KILL and len(set(acked)) == len(acked)

    # Restart the killed node from its data dir alone; it serves (a w=3 put needs it), then stops cleanly.
    cluster.restart(victim)
    cluster.wait_connected()  # gets of a probe key only: nothing here can repair the stream's keys
    with Client(cluster.client(victim)) as client:
        client.put(BUCKET, b"after-restart", b"fresh", w=3, dw=3)
    assert cluster.stop(victim) == 0

    control = b"never-written"
    found = stored_values(engine, cluster.nodes[victim].data_dir, ring, [*acked, b"after-restart", control])
    lost = [key for key in acked if found[key] != [value_of(key)]]
    assert not lost, (
        f"{len(lost)} of {len(acked)} acknowledged puts are missing or wrong on {victim} "
        f"after kill -9 and restart, e.g. {[(k, found[k]) for k in lost[:5]]}"
    )
    assert found[b"after-restart"] == [b"fresh"]
    assert found[control] == [], "the direct read finds a key nobody wrote"
