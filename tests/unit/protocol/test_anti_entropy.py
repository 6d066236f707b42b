"""Anti-entropy exchanges between sans-IO nodes over memory engines, messages passed by hand
(tests/unit/protocol/ae_harness.py; every message goes through the wire codec and is measured)."""

from __future__ import annotations

from collections import Counter

import pytest

from dynakv.core.config import Limits
from dynakv.core.errors import ConfigError
from dynakv.core.merkle import DIGEST_BYTES
from dynakv.core.objects import decode_object, encode_object
from dynakv.protocol.ae_peer import mask_has, wire_size
from dynakv.protocol.ae_trees import segment_of_entry, tree_from_storage
from dynakv.protocol.anti_entropy import AeSettings
from dynakv.protocol.messages import AeKeysRequest, AeNodesReply, AeNodesRequest, AeObjects
from dynakv.storage.memory import MemoryEngine

from .ae_harness import Cluster, Sent, blob, obj

P = 3  # the partition most tests use


def fill(cluster: Cluster, count: int, partition: int = P, value_bytes: int = 20) -> None:
    for i in range(count):
        cluster.everywhere(partition, b"b", b"k%05d" % i, blob("w", bytes([i % 251]) * value_bytes))


def kinds(log: list[Sent]) -> Counter[str]:
    return Counter(type(s.msg).__name__ for s in log)


def test_identical_replicas_exchange_only_their_roots() -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 200)
    cluster.build_trees()
    log = cluster.repair("a", P)
    assert kinds(log) == {"AeNodesRequest": 1, "AeNodesReply": 1}
    assert log[0].msg == AeNodesRequest(log[0].msg.xid, P, 1024, 32, 0, (0,))
    # One hash back, plus framing: a few dozen bytes for 200 keys.
    assert sum(s.size for s in log) <= 2 * 32 + DIGEST_BYTES
    assert cluster.ae["a"].counters["ae.exchanges_completed"] == 1
    assert cluster.ae["a"].progress().keys_repaired == 0


@pytest.mark.parametrize("newer", ["a", "b"])
def test_one_key_newer_on_one_side_is_listed_alone_in_its_segment_and_repaired(newer: str) -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 300)
    cluster.build_trees()
    old = obj("w", b"old")
    cluster.everywhere(P, b"b", b"x", encode_object(old))
    new = encode_object(obj("w", b"new", old, now_ms=2))
    cluster.write(newer, P, b"b", b"x", new)

    log = cluster.repair("a", P)

    assert cluster.storage["a"].get(P, b"b", b"x") == new
    assert cluster.storage["b"].get(P, b"b", b"x") == new
    assert cluster.converged(P)
    [keys_request] = [s.msg for s in log if isinstance(s.msg, AeKeysRequest)]
    segment = segment_of_entry(b"b", b"x", 1024)
    assert [s for s in range(1024) if mask_has(keys_request.segment_mask, s)] == [segment]
    in_segment = sum(1 for b, k, _ in cluster.data("a", P) if segment_of_entry(b, k, 1024) == segment)
    assert cluster.ae["a"].counters["ae.keys_listed"] == in_segment
    assert cluster.ae["a"].counters["ae.keys_differing"] == 1
    repaired = cluster.ae["a"].counters["ae.keys_repaired"] + cluster.ae["b"].counters["ae.keys_repaired"]
    assert repaired == 1
    # The one key's objects are the only ones that moved.
    moved = [e for s in log if isinstance(s.msg, AeObjects) for e in s.msg.entries]
    assert {(b, k) for b, k, _ in moved} == {(b"b", b"x")}


def test_concurrent_siblings_on_each_side_end_as_both_siblings_on_both() -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 50)
    cluster.build_trees()
    cluster.write("a", P, b"b", b"x", blob("a", b"from a"))
    cluster.write("b", P, b"b", b"x", blob("b", b"from b"))
    cluster.repair("a", P)
    for node in ("a", "b"):
        stored = cluster.storage[node].get(P, b"b", b"x")
        assert stored is not None
        assert sorted(c.value for c in decode_object(stored).values()) == [b"from a", b"from b"]
    assert cluster.converged(P)
    # Both merges changed something: a sibling arrived on each side.
    assert cluster.ae["a"].counters["ae.keys_repaired"] == 1
    assert cluster.ae["b"].counters["ae.keys_repaired"] == 1


def test_duplicated_messages_are_harmless_and_their_extra_replies_are_dropped() -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 100)
    cluster.build_trees()
    cluster.write("a", P, b"b", b"x", blob("a", b"from a"))
    cluster.write("b", P, b"b", b"x", blob("b", b"from b"))
    cluster.write("b", P, b"b", b"y", blob("b", b"only b"))
    cluster.repair("a", P, duplicate=True)
    assert cluster.converged(P)
    counters = cluster.ae["a"].counters
    assert counters["ae.exchanges_completed"] == 1 and counters["ae.exchanges_failed"] == 0
    assert counters["ae.stale_replies"] > 0
    assert len(cluster.repair("a", P)) == 2


def test_a_key_only_one_side_has_is_copied_whichever_side_starts() -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 50)
    cluster.build_trees()
    cluster.write("a", P, b"b", b"only-a", blob("w", b"1"))
    cluster.write("b", P, b"b", b"only-b", blob("w", b"2"))
    cluster.repair("b", P)
    assert cluster.converged(P)
    assert cluster.storage["a"].get(P, b"b", b"only-b") == blob("w", b"2")


def test_a_wiped_replica_is_fully_restored_and_a_second_exchange_moves_nothing() -> None:
    cluster = Cluster(["a", "b", "c"], partitions=8)
    for p in range(8):
        fill(cluster, 60, partition=p)
    cluster.restart("b", MemoryEngine())  # wiped data dir, restarted: trees rebuild (empty)
    cluster.build_trees()
    cluster.repair("b")  # every partition, with both other primaries
    progress = cluster.ae["b"].progress()
    assert (progress.partitions_done, progress.partitions_total, progress.exchanges_failed) == (8, 8, 0)
    assert progress.keys_repaired == 8 * 60
    assert all(cluster.converged(p) for p in range(8))
    for p in range(8):
        assert cluster.ae["b"].trees.tree(p) == tree_from_storage(cluster.storage["b"], p, 1024, 32)

    again = cluster.repair("b")
    assert kinds(again) == {"AeNodesRequest": 16, "AeNodesReply": 16}
    assert cluster.ae["b"].progress().keys_repaired == 0


def test_periodic_exchanges_alone_restore_a_wiped_replica_round_robin() -> None:
    settings = AeSettings(interval_ms=1_000, timeout_ms=5_000, max_concurrent=1)
    cluster = Cluster(["a", "b", "c"], partitions=8, settings=settings)
    for p in range(8):
        fill(cluster, 20, partition=p)
    cluster.restart("c", MemoryEngine())
    starts: list[tuple[str, int, str]] = []
    for _ in range(200):  # 20 s: every node starts at most 20 exchanges
        cluster.tick(100)
        starts += [
            (s.src, s.msg.partition, s.dst)
            for s in cluster.queue
            if isinstance(s.msg, AeNodesRequest) and s.msg.depth == 0
        ]
        cluster.deliver_all()
    assert all(cluster.converged(p) for p in range(8))
    # At most one start per second per node, partitions in ascending order, peers alternating.
    mine = [(p, peer) for src, p, peer in starts if src == "a"]
    assert len(mine) <= 20
    assert [p for p, _ in mine[:8]] == list(range(8))
    assert mine[8][0] == 0 and mine[8][1] != mine[0][1]


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_message_sizes_respect_the_transfer_batch_bound(initiator: str) -> None:
    """b is empty: from a, the objects go out in pages; from b, a's key listing and a's objects
    (sent back for b's wanted keys) come in pages."""
    bound = 2_048
    cluster = Cluster(["a", "b"], limits=Limits(transfer_batch_bytes_max=bound))
    for i in range(400):
        cluster.write("a", P, b"bucket", b"key-%04d" % i, blob("w", bytes(100)))
    cluster.build_trees()
    log = cluster.repair(initiator, P)
    assert cluster.converged(P)
    assert len(cluster.data("b", P)) == 400
    assert max(s.size for s in log) <= bound
    # Pages really were cut: the 400 objects of ~150 bytes need many messages under the bound.
    object_bytes = sum(len(v) for _, _, v in cluster.data("a", P))
    assert sum(1 for s in log if isinstance(s.msg, AeObjects) and s.msg.entries) >= object_bytes // bound
    # The counted bytes are an upper bound of the encoded ones.
    for node in ("a", "b"):
        assert cluster.ae[node].counters["ae.bytes_sent"] >= sum(s.size for s in log if s.src == node)


def test_a_peer_that_never_answers_times_out_and_its_late_reply_is_ignored() -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 10)
    cluster.write("a", P, b"b", b"x", blob("w", b"1"))
    cluster.build_trees()
    cluster.ae["a"].repair(P)
    cluster.tick()
    [request] = cluster.queue
    cluster.queue.clear()  # b never gets it
    for _ in range(49):
        cluster.tick()
    assert cluster.ae["a"].counters["ae.exchanges_timed_out"] == 0
    cluster.tick(200)
    assert cluster.ae["a"].counters["ae.exchanges_timed_out"] == 1
    progress = cluster.ae["a"].progress()
    assert progress.finished and progress.exchanges_failed == 1
    # The reply arrives after all: it matches no request in flight.
    late = AeNodesReply(request.msg.xid, (bytes(32),))
    cluster.queue.append(Sent("b", "a", late, wire_size(late)))
    cluster.deliver_all()
    assert cluster.ae["a"].counters["ae.stale_replies"] == 1
    assert not cluster.queue


def test_a_peer_without_a_built_tree_declines() -> None:
    cluster = Cluster(["a", "b"])
    fill(cluster, 10)
    cluster.ae["a"].trees.step(100)
    cluster.ae["a"].repair(P)
    cluster.tick(only="a")  # b never ticks: its tree is not built
    cluster.deliver_all()
    assert cluster.ae["b"].trees.tree(P) is None
    assert cluster.ae["a"].counters["ae.exchanges_declined"] == 1
    assert cluster.ae["a"].progress().exchanges_failed == 1


def test_one_percent_divergence_moves_a_small_fraction_of_the_data() -> None:
    """5,000 keys in 4 partitions, 50 changed on one replica. The algorithm bounds what moves:
    the walk ships at most (1 + 32 + 32 * differing depth-1 nodes) hashes per partition each way; the
    listing ships the keys of the differing segments only; the repair ships each differing object at
    most once each way. We compute that bound from the data and check the measured bytes against it."""
    cluster = Cluster(["a", "b"], partitions=8)  # the data goes to 4 of them
    keys = [(p, b"k%05d" % i) for p in range(4) for i in range(1_250)]
    for p, key in keys:
        cluster.everywhere(p, b"bench", key, blob("w", key * 50))  # ~330-byte objects
    cluster.build_trees()
    changed = keys[::100]  # 1%, 12 or 13 per partition
    for p, key in changed:
        cluster.write("b", p, b"bench", key, blob("x", b"changed" * 40))

    log: list[Sent] = []
    for p in range(4):
        log += cluster.repair("a", p)
    assert all(cluster.converged(p) for p in range(4))

    total = sum(len(v) for p in range(4) for _, _, v in cluster.data("a", p))
    moved = sum(s.size for s in log)
    frame = 64  # per-message framing, an overestimate of ae_peer.wire_size's fixed part
    bound = len(log) * frame
    for p in range(4):
        segments = {segment_of_entry(b"bench", k, 1024) for q, k in changed if q == p}
        walk_nodes = 1 + 32 + 32 * len({s // 32 for s in segments})
        bound += 2 * walk_nodes * (DIGEST_BYTES + 2)
        listed = [k for b, k, _ in cluster.data("a", p) if segment_of_entry(b, k, 1024) in segments]
        bound += 2 * sum(len(b"bench") + len(k) + 16 + 4 * 2 for k in listed)
    for p, key in changed:
        bound += 2 * len(cluster.storage["a"].get(p, b"bench", key) or b"") + 64
    assert moved <= bound
    assert moved < total // 10, (moved, total)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        AeSettings(max_concurrent=0)
    with pytest.raises(ConfigError):
        AeSettings(interval_ms=True)
    assert AeSettings(rebuild_after_ms=None).rebuild_after_ms is None
