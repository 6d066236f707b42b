"""Sloppy quorum and hinted handoff (paper section 4.6), with failure detection, in the simulator.

Five nodes, n_val 3, real memory engines: the data a node holds is read from its engine directly.
"""

from __future__ import annotations

from dynakv.core.config import Limits, Timing
from dynakv.core.objects import Content
from dynakv.core.preflist import primaries, walk
from dynakv.protocol.data_path import Settings
from dynakv.protocol.messages import (
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    NodeReply,
    PutReply,
    PutRequest,
)
from dynakv.protocol.node import Node
from dynakv.protocol.ports import DeleteOp
from dynakv.protocol.replica import read_local
from dynakv.sim.simulator import Simulation

FIVE = ["n1", "n2", "n3", "n4", "n5"]
KEY = b"k"
TIMING = Timing()


def sim_of(seed: int, settings: Settings | None = None) -> Simulation:
    sim = Simulation(FIVE, seed=seed, settings=settings)
    sim.run_for(300)  # the first probes went round
    return sim


def prims(sim: Simulation, key: bytes = KEY) -> tuple[str, ...]:
    return primaries(sim.ring, sim.ring.partition_for_key(b"b", key), 3)


def others(sim: Simulation, key: bytes = KEY) -> list[str]:
    """The key's would-be fallbacks, in walk order."""
    partition = sim.ring.partition_for_key(b"b", key)
    return [node for _, node in walk(sim.ring, partition) if node not in prims(sim, key)]


def put(sim: Simulation, node: str, value: bytes, key: bytes = KEY, **kw: object) -> NodeReply:
    content = Content(value, content_type="text/plain", last_modified_ms=sim.now_ms)
    return sim.call(node, PutRequest(b"b", key, content, **kw))  # type: ignore[arg-type]


def held(sim: Simulation, node: str, key: bytes = KEY) -> list[bytes]:
    """The values `node`'s engine holds for the key (siblings sorted), read from storage directly."""
    partition = sim.ring.partition_for_key(b"b", key)
    return sorted(c.value for _, c in read_local(sim.storage[node], partition, b"b", key).siblings)


def running(sim: Simulation, name: str) -> Node:
    node = sim.nodes[name]
    assert node is not None
    return node


def pending_hints(sim: Simulation) -> dict[str, int]:
    return {name: n.counters["hints.pending"] for name, n in sorted(sim.nodes.items()) if n is not None}


def test_with_two_primaries_crashed_puts_go_to_fallbacks_and_the_hints_drain_after_restart() -> None:
    sim = sim_of(1)
    p1, p2, p3 = prims(sim)
    sim.crash(p2)
    sim.crash(p3)
    coordinator = others(sim)[0]  # not a primary: it coordinates as a fallback itself
    assert isinstance(put(sim, coordinator, b"v1", w=2), PutReply)
    assert isinstance(put(sim, p1, b"v2", key=KEY, w=3), PutReply)  # p1 and the two fallbacks
    strict = put(sim, p1, b"v3", pw=2, timeout_ms=1_000)
    assert isinstance(strict, Failure) and strict.kind is FailureKind.UNAVAILABLE and strict.field == "pw"
    sim.run_for(200)
    hints = pending_hints(sim)
    fallbacks = others(sim)[:2]
    assert sorted(name for name, count in hints.items() if count) == sorted(fallbacks)
    for fallback, primary in zip(fallbacks, (p2, p3), strict=True):
        assert held(sim, fallback) != []
        assert running(sim, fallback).availability.handoff.hints.targets() == [primary]
    sim.restart(p2)
    sim.restart(p3)
    sim.run_until(lambda: sum(pending_hints(sim).values()) == 0, 10_000)
    final = held(sim, p1)
    assert b"v2" in final and len(final) >= 1
    for primary in (p2, p3):
        assert held(sim, primary) == final  # the handoff brought the fallbacks' writes, merged
    for fallback in fallbacks:
        assert held(sim, fallback) == []  # deleted after the primary's durable ack
    reply = sim.call(p2, GetRequest(b"b", KEY, r=3, pr=3))
    assert isinstance(reply, GetReply) and sorted(c.value for c in reply.siblings) == final
    assert all(running(sim, n).counters["transfers.active"] == 0 for n in FIVE)


def test_a_partition_without_disconnects_is_detected_within_the_bound_and_fallbacks_take_over() -> None:
    sim = sim_of(2)
    p1, p2, p3 = prims(sim)
    side = [n for n in FIVE if n not in (p2, p3)]
    sim.partition([p2, p3])
    start = sim.now_ms
    sim.run_for(TIMING.probe_interval_ms)
    assert running(sim, p1).data.down == set()  # one probe interval of silence is not suspicious
    sim.run_until(lambda: all(running(sim, n).data.down == {p2, p3} for n in side), 10_000)
    assert sim.now_ms - start <= TIMING.suspect_after_ms + TIMING.tick_ms
    assert isinstance(put(sim, p1, b"v", w=3), PutReply)  # p1 and two fallbacks
    assert held(sim, p2) == held(sim, p3) == []
    sim.heal()
    sim.run_until(lambda: sum(pending_hints(sim).values()) == 0, 10_000)
    assert held(sim, p2) == held(sim, p3) == [b"v"]
    sim.run_for(TIMING.probe_interval_ms + TIMING.tick_ms)  # every pair has exchanged a probe since
    assert all(running(sim, n).data.down == set() for n in FIVE)


def test_a_paused_node_is_suspected_while_paused_trusted_after_and_catches_up_by_hints() -> None:
    sim = sim_of(3)
    p1, p2, _ = prims(sim)
    sim.pause(p2)
    sim.run_for(TIMING.suspect_after_ms + TIMING.tick_ms)
    assert all(running(sim, n).data.down == {p2} for n in FIVE if n != p2)
    assert isinstance(put(sim, p1, b"v", w=3, timeout_ms=1_000), PutReply)  # no wait for p2
    assert held(sim, p2) == []
    sim.resume(p2)
    sim.run_until(lambda: sum(pending_hints(sim).values()) == 0, 5_000)
    assert held(sim, p2) == [b"v"]
    assert all(running(sim, n).data.down == set() for n in FIVE)
    # Its own view: after its stop it did not suspect the peers that were silent only to it.
    assert running(sim, p2).counters["peers.turned_unreachable"] == 0
    assert running(sim, p1).counters["peers.turned_unreachable"] == 1


def test_hints_survive_a_fallback_crash_and_restart() -> None:
    sim = sim_of(4)
    p1, p2, p3 = prims(sim)
    sim.crash(p2)
    sim.crash(p3)
    assert isinstance(put(sim, p1, b"v", w=3, dw=3), PutReply)  # durable on the fallbacks too
    fallback = others(sim)[0]
    before = running(sim, fallback).counters["hints.pending"]
    assert before == 1
    sim.crash(fallback)
    sim.restart(fallback)
    assert running(sim, fallback).counters["hints.pending"] == before  # rebuilt from storage
    sim.restart(p2)
    sim.restart(p3)
    sim.run_until(lambda: sum(pending_hints(sim).values()) == 0, 15_000)
    assert held(sim, p2) == held(sim, p3) == [b"v"]
    assert held(sim, fallback) == []


def test_hints_past_the_count_bound_are_dropped_counted_and_noticed() -> None:
    sim = sim_of(5, Settings(limits=Limits(hints_per_target_max=2)))
    victim = "n3"
    sim.crash(victim)
    keys = [f"k{i}".encode() for i in range(40)]
    keys = [k for k in keys if victim in prims(sim, k)]
    assert len(keys) >= 6
    for key in keys:
        coordinator = next(n for n in prims(sim, key) if n != victim)
        assert isinstance(put(sim, coordinator, b"v", key=key, w=3), PutReply)  # stored even when dropped
    nodes = [running(sim, n) for n in FIVE if n != victim]
    assert all(n.counters["hints.pending"] <= 2 for n in nodes)
    dropped = sum(n.counters["hints.dropped.count"] for n in nodes)
    kept = sum(n.counters["hints.pending"] for n in nodes)
    assert dropped > 0 and dropped + kept == len(keys)
    lines = [line for n in nodes for line in n.take_notices()]
    assert len(lines) == dropped
    assert all(f"hint for {victim} dropped at the count bound 2" in line for line in lines)
    assert all(n.take_notices() == [] for n in nodes)  # taken once


def test_read_repair_fixes_a_stale_primary_and_leaves_the_fallback_alone() -> None:
    sim = sim_of(6)
    p1, p2, p3 = prims(sim)
    assert isinstance(put(sim, p1, b"v", w=3), PutReply)
    sim.crash(p3)
    partition = sim.ring.partition_for_key(b"b", KEY)
    sim.storage[p2].write_batch([DeleteOp(partition, b"b", KEY)], durable=True)  # p2 lost it
    reply = sim.call(p1, GetRequest(b"b", KEY, r=3))  # p1, p2 and a fallback answer
    assert isinstance(reply, GetReply) and [c.value for c in reply.siblings] == [b"v"]
    sim.run_for(TIMING.read_repair_wait_ms + 100)
    assert held(sim, p2) == [b"v"]
    assert held(sim, others(sim)[0]) == []  # a fallback keeps hinted writes only


def test_a_fallback_that_coordinates_again_after_a_handoff_never_reuses_a_dot() -> None:
    sim = sim_of(7)
    _, p2, p3 = prims(sim)
    fallback = others(sim)[0]
    for round_ in range(2):
        sim.crash(p2)
        sim.crash(p3)
        assert isinstance(put(sim, fallback, f"v{round_}".encode(), w=2), PutReply)  # blind write
        sim.restart(p2)
        sim.restart(p3)
        sim.run_until(lambda: sum(pending_hints(sim).values()) == 0, 10_000)
        assert held(sim, fallback) == []
    # Two blind writes, concurrent: both must survive as siblings on the primaries.
    assert held(sim, p2) == held(sim, p3) == [b"v0", b"v1"]


def run_digest(seed: int) -> str:
    sim = sim_of(seed)
    _, p2, p3 = prims(sim)
    sim.crash(p2)
    sim.partition([p3])
    for i in range(10):
        content = Content(b"v", last_modified_ms=sim.now_ms)
        sim.submit(FIVE[i % 5], PutRequest(b"b", f"k{i}".encode(), content, w=2, timeout_ms=1_000))
        sim.run_for(700)
    sim.restart(p2)
    sim.heal()
    sim.run_for(8_000)
    return sim.digest()


def test_the_same_seed_gives_the_same_digest_through_detection_and_handoff() -> None:
    assert run_digest(8) == run_digest(8)
    assert run_digest(8) != run_digest(9)
