"""Stories of key and bucket listings and of a key's preference list, in the simulator on real Nodes."""

from __future__ import annotations

from dynakv.core.config import BucketProps
from dynakv.core.objects import Content
from dynakv.core.preflist import primaries, walk
from dynakv.protocol.data_path import Settings
from dynakv.protocol.messages import (
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    PreflistReply,
    PreflistRequest,
    PutReply,
    PutRequest,
)
from dynakv.sim.simulator import Simulation

FOUR = ["n1", "n2", "n3", "n4"]
FIVE = ["n1", "n2", "n3", "n4", "n5"]


def put(sim: Simulation, node: str, bucket: bytes, key: bytes) -> None:
    reply = sim.call(node, PutRequest(bucket, key, Content(b"v", last_modified_ms=sim.now_ms)))
    assert isinstance(reply, PutReply), reply


def delete(sim: Simulation, node: str, bucket: bytes, key: bytes) -> None:
    got = sim.call(node, GetRequest(bucket, key))
    assert isinstance(got, GetReply) and got.found, got
    assert isinstance(sim.call(node, DeleteRequest(bucket, key, got.context)), DeleteReply)


def list_keys(sim: Simulation, node: str, bucket: bytes) -> ListReply | Failure:
    reply = sim.call(node, ListKeysRequest(bucket))
    assert isinstance(reply, ListReply | Failure), reply
    return reply


def write_buckets(sim: Simulation, nodes: list[str]) -> dict[bytes, list[bytes]]:
    """Keys spread over three buckets, one a prefix of another, written through every node."""
    written: dict[bytes, list[bytes]] = {b"users": [], b"user": [], b"carts": []}
    for i in range(60):
        bucket = sorted(written)[i % 3]
        key = f"k{i:03}".encode()
        put(sim, nodes[i % len(nodes)], bucket, key)
        written[bucket].append(key)
    sim.run_for(200)  # let every replica's write land, not just the quorum's
    return written


def test_keys_are_listed_exactly_per_bucket_from_any_node() -> None:
    sim = Simulation(FOUR, seed=11)
    written = write_buckets(sim, FOUR)
    for node in FOUR:
        for bucket, keys in written.items():
            assert list_keys(sim, node, bucket) == ListReply(tuple(sorted(keys)))
        assert list_keys(sim, node, b"never-written") == ListReply(())


def test_buckets_are_listed_once_each_and_a_fully_deleted_bucket_is_gone() -> None:
    sim = Simulation(FOUR, seed=12)
    written = write_buckets(sim, FOUR)
    for key in written[b"carts"]:
        delete(sim, "n2", b"carts", key)
    sim.run_for(200)
    for node in FOUR:
        assert sim.call(node, ListBucketsRequest()) == ListReply((b"user", b"users"))


def test_deleted_keys_are_not_listed() -> None:
    sim = Simulation(FOUR, seed=13)
    written = write_buckets(sim, FOUR)
    gone = written[b"users"][::2]
    for key in gone:
        delete(sim, "n3", b"users", key)
    sim.run_for(200)
    kept = sorted(set(written[b"users"]) - set(gone))
    for node in FOUR:
        assert list_keys(sim, node, b"users") == ListReply(tuple(kept))


def test_with_one_node_crashed_the_listing_still_covers_every_partition() -> None:
    sim = Simulation(FIVE, seed=14)
    written = write_buckets(sim, FIVE)
    sim.crash("n3")
    for node in ["n1", "n2", "n4", "n5"]:
        assert list_keys(sim, node, b"carts") == ListReply(tuple(sorted(written[b"carts"])))
        assert sim.call(node, ListBucketsRequest()) == ListReply((b"carts", b"user", b"users"))


def test_with_every_primary_of_a_partition_crashed_the_listing_is_unavailable() -> None:
    sim = Simulation(FIVE, seed=15)
    write_buckets(sim, FIVE)
    crashed = primaries(sim.ring, 0, 3)
    for node in crashed:
        sim.crash(node)
    survivor = next(n for n in FIVE if n not in crashed)
    reply = list_keys(sim, survivor, b"users")
    assert isinstance(reply, Failure) and reply.kind is FailureKind.UNAVAILABLE, reply
    assert "partitions had no replica answer" in reply.message
    buckets = sim.call(survivor, ListBucketsRequest())
    assert isinstance(buckets, Failure) and buckets.kind is FailureKind.UNAVAILABLE


def test_coverage_follows_the_bucket_n_val() -> None:
    one = BucketProps(n_val=1)
    sim = Simulation(FOUR, seed=16, settings=Settings(buckets={b"single": one}))
    put(sim, "n1", b"single", b"k")
    put(sim, "n1", b"triple", b"k")
    sim.crash("n4")  # n4 owns partitions, and a bucket with n_val 1 has no other replica of them
    reply = list_keys(sim, "n1", b"single")
    assert isinstance(reply, Failure) and reply.kind is FailureKind.UNAVAILABLE, reply
    assert list_keys(sim, "n1", b"triple") == ListReply((b"k",))


# -- preference lists ----------------------------------------------------------------------------------


def preflist(sim: Simulation, node: str, bucket: bytes, key: bytes) -> PreflistReply:
    reply = sim.call(node, PreflistRequest(bucket, key))
    assert isinstance(reply, PreflistReply), reply
    return reply


def test_the_preflist_is_the_n_val_primaries_in_walk_order() -> None:
    sim = Simulation(FIVE, seed=17, settings=Settings(buckets={b"two": BucketProps(n_val=2)}))
    for bucket, n_val in [(b"b", 3), (b"two", 2)]:
        for i in range(20):
            key = f"key{i}".encode()
            partition = sim.ring.partition_for_key(bucket, key)
            reply = preflist(sim, FIVE[i % 5], bucket, key)
            assert [e.node for e in reply.entries] == list(primaries(sim.ring, partition, n_val))
            assert len({e.node for e in reply.entries}) == n_val
            assert all(e.primary for e in reply.entries)
            assert reply.entries[0].partition == partition
            # Each primary with the partition whose ownership put it in the list.
            assert [(e.partition, e.node) for e in reply.entries] == list(walk(sim.ring, partition))[:n_val]


def test_with_a_primary_down_the_preflist_shows_a_fallback() -> None:
    sim = Simulation(FIVE, seed=18)
    partition = sim.ring.partition_for_key(b"b", b"k")
    prims = primaries(sim.ring, partition, 3)
    down = prims[1]
    sim.crash(down)
    asker = prims[0]
    reply = preflist(sim, asker, b"b", b"k")
    entries = reply.entries
    assert [e.node for e in entries if e.primary] == [prims[0], prims[2]]
    assert entries[0].primary and entries[1].primary and not entries[2].primary  # primaries first
    fallback = entries[2]
    assert fallback.node not in prims and fallback.node != down
    # The fallback keeps the replica of the partition the missing primary sat on.
    assert fallback.partition == next(p for p, n in walk(sim.ring, partition) if n == down)
    sim.restart(down)
    sim.run_for(10)
    assert [e.node for e in preflist(sim, asker, b"b", b"k").entries] == list(prims)


def test_a_preflist_of_an_invalid_key_is_a_bad_request() -> None:
    sim = Simulation(FOUR, seed=19)
    for request, field in [(PreflistRequest(b"b", b""), "key"), (PreflistRequest(b"", b"k"), "bucket")]:
        reply = sim.call("n1", request)
        assert isinstance(reply, Failure) and reply.kind is FailureKind.BAD_REQUEST and reply.field == field
    reply = sim.call("n1", PreflistRequest(b"b", b"k" * 2000))
    assert isinstance(reply, Failure) and reply.field == "key"
