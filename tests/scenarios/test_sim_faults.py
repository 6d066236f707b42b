"""The simulator's faults: partitions, one-way cuts, loss, duplication, clogs, pauses and the nemesis."""

from __future__ import annotations

import pytest

from dynakv.core.objects import Content
from dynakv.protocol.messages import (
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    NodeReply,
    PutReply,
    PutRequest,
    ReadRepair,
)
from dynakv.protocol.replica import read_local
from dynakv.sim.faults import ALL_KINDS, Nemesis, NemesisSettings, plan
from dynakv.sim.network import LinkPolicy
from dynakv.sim.simulator import Simulation

NODES = ["n1", "n2", "n3"]


def put_request(sim: Simulation, key: bytes, value: bytes, context: bytes = b"", **kw: object) -> PutRequest:
    content = Content(value, content_type="text/plain", last_modified_ms=sim.now_ms)
    return PutRequest(b"b", key, content, context, **kw)  # type: ignore[arg-type]


def put(
    sim: Simulation, node: str, key: bytes, value: bytes, context: bytes = b"", **kw: object
) -> NodeReply:
    return sim.call(node, put_request(sim, key, value, context, **kw))


def get(sim: Simulation, node: str, key: bytes, **kw: object) -> GetReply:
    reply = sim.call(node, GetRequest(b"b", key, **kw))  # type: ignore[arg-type]
    assert isinstance(reply, GetReply), reply
    return reply


def stored(sim: Simulation, node: str, key: bytes) -> list[bytes]:
    partition = sim.ring.partition_for_key(b"b", key)
    return sorted(c.value for _, c in read_local(sim.storage[node], partition, b"b", key).siblings)


def scripted_run(seed: int) -> str:
    sim = Simulation(NODES, seed=seed, faults=LinkPolicy(loss=0.05, duplicate=0.1, extra_delay_ms=(0, 20)))
    sim.partition(["n3"])
    for i in range(5):
        sim.submit("n1", put_request(sim, f"k{i}".encode(), b"v", w=1, timeout_ms=500))
    sim.run_for(1_000)
    sim.heal()
    sim.pause("n2")
    sim.submit("n2", GetRequest(b"b", b"k1"))
    sim.run_for(500)
    sim.resume("n2")
    sim.run_for(2_000)
    return sim.digest()


def test_the_same_seed_and_fault_script_give_the_same_digest_and_other_seeds_differ() -> None:
    assert scripted_run(1) == scripted_run(1)
    assert len({scripted_run(seed) for seed in range(1, 5)}) == 4


def test_a_clean_fault_policy_leaves_the_trace_of_a_fault_free_run_unchanged() -> None:
    def run(sim: Simulation) -> str:
        put(sim, "n1", b"k", b"v")
        sim.run_for(1_000)
        return sim.digest()

    assert run(Simulation(NODES, seed=3)) == run(Simulation(NODES, seed=3, faults=LinkPolicy()))
    assert run(Simulation(NODES, seed=3)) != run(Simulation(NODES, seed=3, faults=LinkPolicy(loss=0.5)))


def test_a_partition_fails_a_put_with_w_all_while_w1_on_the_majority_side_succeeds() -> None:
    sim = Simulation(NODES, seed=11)
    sim.partition(["n1", "n2"], ["n3"])
    failed = put(sim, "n1", b"all", b"v", w="all", timeout_ms=1_000)
    assert isinstance(failed, Failure) and failed.kind in (FailureKind.TIMEOUT, FailureKind.UNAVAILABLE)
    assert isinstance(put(sim, "n1", b"k", b"majority", w=1), PutReply)
    alone = put(sim, "n3", b"k3", b"minority", w=2, timeout_ms=1_000)
    assert isinstance(alone, Failure), alone
    assert stored(sim, "n3", b"k") == []
    assert sim.network.stats["dropped_cut"] > 0
    sim.heal()
    assert sim.active_faults() == []
    reply = get(sim, "n3", b"k", r="all")
    assert reply.found and [c.value for c in reply.siblings] == [b"majority"]
    sim.run_for(sim.settings.timing.read_repair_wait_ms + 100)
    assert stored(sim, "n3", b"k") == [b"majority"]


def test_messages_in_flight_when_a_partition_starts_are_lost() -> None:
    sim = Simulation(NODES, seed=12, latency_ms=(50, 50))
    ref = sim.submit("n1", put_request(sim, b"k", b"v", w="all", timeout_ms=1_000))
    sim.run_for(10)  # the replica puts are on the wire
    sim.partition(["n1"])
    sim.run_until(lambda: ref in sim.replies)
    assert isinstance(sim.replies[ref], Failure)
    assert sim.network.stats["dropped_cut_in_flight"] == 2
    assert stored(sim, "n2", b"k") == stored(sim, "n3", b"k") == []


def test_loss_one_on_a_link_drops_everything_on_it_and_only_there() -> None:
    sim = Simulation(NODES, seed=13)
    sim.set_link("n1", "n3", LinkPolicy(loss=1.0))
    for i in range(10):
        reply = put(sim, "n1", f"k{i}".encode(), b"v", w="all", timeout_ms=500)
        assert isinstance(reply, Failure) and reply.kind is FailureKind.TIMEOUT
        assert stored(sim, "n2", f"k{i}".encode()) == [b"v"]
        assert stored(sim, "n3", f"k{i}".encode()) == []
    # The 10 replica puts to n3, and the failure detector's probes on that link too.
    assert sim.network.stats["dropped_loss"] > 10
    assert sim.network.stats["delivered.ReplicaPut"] == 10  # the ones to n2


def test_duplicated_messages_arrive_twice_and_make_no_extra_siblings() -> None:
    sim = Simulation(NODES, seed=14, faults=LinkPolicy(duplicate=1.0))
    first = put(sim, "n1", b"k", b"v1", w="all")
    assert isinstance(first, PutReply)
    sim.run_for(100)  # the reply may beat the second copies
    assert sim.network.stats["delivered.ReplicaPut"] == 4  # two replicas, each twice
    assert isinstance(put(sim, "n2", b"k", b"v2", first.context, w="all"), PutReply)
    sim.run_for(1_000)
    for node in NODES:
        assert stored(sim, node, b"k") == [b"v2"]
    assert [c.value for c in get(sim, "n3", b"k", r="all").siblings] == [b"v2"]
    assert sim.network.stats["duplicated"] > 0


def test_extra_delay_reorders_messages_on_a_link_and_a_clean_link_does_not() -> None:
    def arrivals(policy: LinkPolicy) -> list[int]:
        sim = Simulation(NODES, seed=15, latency_ms=(1, 1))
        sim.set_link("n1", "n2", policy)
        msg = ReadRepair(0, b"b", b"k", b"")
        return [i * 10 + d for i in range(30) for d in sim.network.route("n1", "n2", msg, (1, 1), sim.rng)]

    assert arrivals(LinkPolicy()) == sorted(arrivals(LinkPolicy()))
    delayed = arrivals(LinkPolicy(extra_delay_ms=(0, 200)))
    assert len(delayed) == 30 and delayed != sorted(delayed)
    # In a cluster, blind puts whose replica puts arrive out of order all survive as siblings.
    sim = Simulation(NODES, seed=15, faults=LinkPolicy(extra_delay_ms=(0, 200)))
    for i in range(20):
        put(sim, "n1", b"k", f"v{i}".encode(), w=1)
    sim.run_for(1_000)
    assert len(stored(sim, "n2", b"k")) == 20


def test_a_one_way_cut_drops_one_direction_only() -> None:
    sim = Simulation(NODES, seed=16)
    sim.cut("n3", "n1")
    reply = put(sim, "n1", b"k", b"v", w="all", timeout_ms=1_000)
    assert isinstance(reply, Failure) and reply.kind is FailureKind.TIMEOUT  # n3's ack was lost
    assert stored(sim, "n3", b"k") == [b"v"]  # but n1's replica put reached it
    assert isinstance(put(sim, "n3", b"k2", b"v", w=2), PutReply)  # n2 still answers n3
    sim.run_for(500)
    assert stored(sim, "n1", b"k2") == []
    assert stored(sim, "n2", b"k2") == [b"v"]


def test_a_clogged_link_holds_messages_until_unclogged() -> None:
    sim = Simulation(NODES, seed=17)
    sim.clog("n1", "n2")
    ref = sim.submit("n1", put_request(sim, b"k", b"v", w="all", timeout_ms=10_000))
    sim.run_for(3_000)
    assert ref not in sim.replies and stored(sim, "n2", b"k") == []
    assert sim.active_faults() == ["clog n1->n2"]
    sim.unclog("n1", "n2")
    sim.run_until(lambda: ref in sim.replies, 1_000)
    assert isinstance(sim.replies[ref], PutReply)
    assert stored(sim, "n2", b"k") == [b"v"]


def test_a_paused_node_answers_nothing_until_resumed_then_everything_in_order() -> None:
    sim = Simulation(NODES, seed=18)
    sim.pause("n2")
    refs = []
    for i in range(4):
        refs.append(sim.submit("n2", put_request(sim, b"k", f"v{i}".encode(), w=1, dw=0)))
        refs.append(sim.submit("n2", GetRequest(b"b", b"k", r=1)))
    sim.run_for(5_000)
    assert sim.replies == {} and sim.paused == ["n2"]
    sim.resume("n2")
    sim.run_until(lambda: all(ref in sim.replies for ref in refs), 1_000)
    assert list(sim.replies) == refs  # replies in the order the requests arrived
    for i in range(4):
        reply = sim.replies[refs[2 * i + 1]]
        assert isinstance(reply, GetReply) and len(reply.siblings) == i + 1  # each get saw its puts


def test_a_paused_coordinators_deadline_fires_late_after_resume() -> None:
    sim = Simulation(NODES, seed=19)
    sim.partition(["n2"], ["n3"])
    ref = sim.submit("n2", put_request(sim, b"k", b"v", w="all", timeout_ms=1_000))
    sim.run_for(50)
    sim.pause("n2")
    sim.run_for(5_000)
    assert ref not in sim.replies
    resumed_ms = sim.now_ms
    sim.resume("n2")
    sim.run_until(lambda: ref in sim.replies, 1_000)
    reply = sim.replies[ref]
    assert isinstance(reply, Failure) and reply.kind is FailureKind.TIMEOUT
    assert sim.now_ms == resumed_ms  # the held tick ran at resume and found the deadline long past


def test_a_peer_waiting_on_a_paused_node_gets_its_answer_after_resume() -> None:
    sim = Simulation(NODES, seed=20)
    sim.pause("n3")
    ref = sim.submit("n1", put_request(sim, b"k", b"v", w="all", timeout_ms=10_000))
    sim.run_for(3_000)
    assert ref not in sim.replies
    sim.resume("n3")
    sim.run_until(lambda: ref in sim.replies, 100)
    assert isinstance(sim.replies[ref], PutReply)


def test_crashing_a_paused_node_drops_what_waited_and_it_restarts_normally() -> None:
    sim = Simulation(NODES, seed=21)
    sim.pause("n3")
    lost = sim.submit("n3", GetRequest(b"b", b"k"))
    sim.run_for(500)
    sim.crash("n3")
    assert sim.paused == [] and sim.active_faults() == ["crashed n3"]
    sim.restart("n3")
    assert isinstance(put(sim, "n3", b"k", b"v", w="all"), PutReply)
    sim.run_for(1_000)
    assert lost not in sim.replies


def test_nemesis_plans_are_deterministic_and_bounded() -> None:
    settings = NemesisSettings(faults_max=8, window_ms=10_000)
    plans = [plan(seed, [*NODES, "n4"], settings) for seed in range(50)]
    assert plans[7] == plan(7, ["n4", *NODES], settings)
    assert len({tuple(p) for p in plans}) > 40
    assert {f.kind for p in plans for f in p} == set(ALL_KINDS)
    for faults in plans:
        assert len(faults) <= 8
        assert all(0 <= f.start_ms < f.end_ms <= 10_000 for f in faults)


@pytest.mark.parametrize("seed", range(25))
def test_the_nemesis_always_ends_healed_and_the_cluster_then_works(seed: int) -> None:
    nodes = NODES if seed % 2 else [*NODES, "n4", "n5"]
    sim = Simulation(nodes, seed=seed)
    nemesis = Nemesis(sim, settings=NemesisSettings(window_ms=8_000))
    healed_ms = nemesis.start()
    seen: set[str] = set()
    while sim.now_ms < healed_ms:
        node = nodes[sim.rng.randrange(len(nodes))]
        sim.submit(node, put_request(sim, f"k{sim.now_ms % 7}".encode(), b"v", w=1, timeout_ms=1_000))
        sim.run_for(250)
        seen.update(fault.split()[0] for fault in sim.active_faults())
    assert nemesis.faults and seen  # it did break things
    sim.run_for(sim.settings.timing.request_timeout_ms)
    assert sim.active_faults() == []
    assert isinstance(put(sim, nodes[0], b"after", b"v", w="all", timeout_ms=2_000), PutReply)
    assert [c.value for c in get(sim, nodes[-1], b"after", r="all").siblings] == [b"v"]


def test_a_nemesis_run_replays_exactly_from_its_seed() -> None:
    def run() -> str:
        sim = Simulation(NODES, seed=99)
        Nemesis(sim, settings=NemesisSettings(window_ms=5_000)).start()
        for i in range(20):
            sim.submit(NODES[i % 3], put_request(sim, b"k", f"v{i}".encode(), w=1, timeout_ms=500))
            sim.run_for(300)
        return sim.digest()

    assert run() == run()
