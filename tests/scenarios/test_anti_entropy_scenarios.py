"""Anti-entropy in the simulator, wired into the Node (paper section 4.7; issue 5 acceptance (c)).

No test here reads a key through the cluster after the damage, so read repair never runs, and nothing
is written while a node is down, so there are no hints: what restores a replica is anti-entropy alone,
periodic (no repair request) unless a test says otherwise.
"""

from __future__ import annotations

from dynakv.core.config import ClusterConfig, Limits, Timing
from dynakv.core.objects import Content, decode_object, visible_siblings
from dynakv.protocol.admin_messages import (
    RepairRequest,
    RepairStatus,
    RepairStatusRequest,
    StatusReply,
    StatusRequest,
)
from dynakv.protocol.ae_trees import tree_from_storage
from dynakv.protocol.data_path import Settings
from dynakv.protocol.messages import PutReply, PutRequest
from dynakv.protocol.node import Node
from dynakv.sim.simulator import Simulation
from dynakv.storage.memory import MemoryEngine

NODES = ["n1", "n2", "n3"]
BUCKET = b"ae"
KEYS = [b"k%03d" % i for i in range(40)]
PARTITIONS = 8


def settings(**timing: int) -> Settings:
    ae = {"anti_entropy_interval_ms": 300, "anti_entropy_timeout_ms": 5_000, **timing}
    return Settings(cluster=ClusterConfig(partitions=PARTITIONS), timing=Timing(**ae))


def write_all(sim: Simulation, value: bytes = b"v1") -> None:
    for key in KEYS:
        content = Content(value + b":" + key, last_modified_ms=sim.now_ms + 1)
        reply = sim.call("n1", PutRequest(BUCKET, key, content, w="all", dw="all"))
        assert isinstance(reply, PutReply), reply


def visible(sim: Simulation, node: str, key: bytes) -> list[bytes]:
    data = sim.storage[node].get(sim.ring.partition_for_key(BUCKET, key), BUCKET, key)
    return [] if data is None else sorted(c.value for _, c in visible_siblings(decode_object(data)))


def restored(sim: Simulation, node: str, value: bytes = b"v1") -> bool:
    return all(visible(sim, node, key) == [value + b":" + key] for key in KEYS)


def node(sim: Simulation, name: str) -> Node:
    running = sim.nodes[name]
    assert running is not None
    return running


def total(sim: Simulation, counter: str) -> int:
    return sum(node(sim, name).counters[counter] for name in NODES)


def trees_match_storage(sim: Simulation, name: str) -> bool:
    trees = node(sim, name).ae.trees
    for partition in trees.partitions():
        tree = trees.tree(partition)
        expected = tree_from_storage(sim.storage[name], partition, trees.segments, trees.branching)
        if tree is None or tree.root() != expected.root():
            return False
    return True


def test_a_replica_changed_behind_the_clusters_back_is_restored_by_periodic_anti_entropy() -> None:
    # The change bypasses the node, so its tree does not see it: the periodic tree rebuild (Riak's
    # tree expiry, here every 2 s) does, and the next exchanges repair it.
    sim = Simulation(NODES, seed=5, settings=settings(anti_entropy_tree_rebuild_ms=2_000))
    write_all(sim)
    engine = sim.storage["n3"]
    for key in KEYS[:10]:
        engine.delete(sim.ring.partition_for_key(BUCKET, key), BUCKET, key)
    assert not any(visible(sim, "n3", key) for key in KEYS[:10])
    sim.run_until(lambda: restored(sim, "n3"), limit_ms=60_000)
    assert total(sim, "ae.keys_repaired") >= 10
    assert total(sim, "read_repairs") == 0


def test_a_wiped_node_is_restored_and_a_second_exchange_repairs_nothing() -> None:
    sim = Simulation(NODES, seed=7, settings=settings())
    write_all(sim)
    sim.crash("n3")
    sim.storage["n3"] = MemoryEngine()  # a new, empty disk (the network shares the dict)
    sim.restart("n3")
    assert not any(visible(sim, "n3", key) for key in KEYS)
    sim.run_until(lambda: restored(sim, "n3"), limit_ms=60_000)
    repaired = total(sim, "ae.keys_repaired")
    assert repaired >= len(KEYS)
    # Let every node run exchanges with every peer over every partition again: nothing moves.
    completed = total(sim, "ae.exchanges_completed")
    sim.run_for(PARTITIONS * 2 * 300 + 2_000)
    assert total(sim, "ae.exchanges_completed") >= completed + PARTITIONS
    assert total(sim, "ae.keys_repaired") == repaired
    assert all(trees_match_storage(sim, name) for name in NODES)
    assert total(sim, "read_repairs") == 0


def test_trees_are_rebuilt_in_the_background_after_a_restart_and_exchanges_wait_for_them() -> None:
    # A small build budget: 40 keys over 8 partitions take several ticks to scan.
    limits = Limits(anti_entropy_build_entries_per_tick=3)
    base = settings()
    sim = Simulation(NODES, seed=11, settings=Settings(base.cluster, base.timing, limits))
    write_all(sim)
    sim.crash("n1")
    sim.restart("n1")
    n1 = node(sim, "n1")
    assert n1.ae.trees.building() == n1.ae.trees.partitions()  # nothing built yet
    assert n1.counters["ae.exchanges_started"] == 0
    status = sim.call("n1", StatusRequest())
    assert isinstance(status, StatusReply) and status.trees_building > 0
    # A repair asked for now waits for the trees: an exchange only ever runs on a built tree.
    assert isinstance(sim.call("n1", RepairRequest(None)), RepairStatus)

    def built() -> bool:
        for ex in n1.ae._initiator.active:
            assert n1.ae.trees.tree(ex.partition) is not None, f"an exchange on unbuilt {ex.partition}"
        return not n1.ae.trees.building()

    sim.run_until(built, limit_ms=10_000)
    assert trees_match_storage(sim, "n1")
    sim.run_for(5_000)
    reply = sim.call("n1", RepairStatusRequest())
    assert isinstance(reply, RepairStatus) and reply.finished
    assert (reply.partitions_done, reply.keys_repaired, reply.exchanges_failed) == (PARTITIONS, 0, 0)
