"""Gossip: the exchange, peer and seed choice, joining through a seed, convergence in a round driver."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from dynakv.core import cluster_state as cs
from dynakv.core.cluster_state import ClusterState
from dynakv.core.config import Timing
from dynakv.core.membership import Member, MembershipView, MemberState
from dynakv.core.preflist import primaries
from dynakv.protocol import claimant
from dynakv.protocol.gossip import Gossip, GossipOutput, GossipSend, GossipSettings, JoinIntent
from dynakv.protocol.gossip_messages import GossipDigest, GossipState

Q, N_VAL = 32, 3
SETTINGS = GossipSettings(interval_ms=1000, seed_every=5)
Drop = Callable[[str, str], bool]


def node(name: str, state: ClusterState, seeds: tuple[str, ...] = (), seed: int = 0) -> Gossip:
    join = JoinIntent(address=f"{name}:1") if seeds else None
    return Gossip(name, state, random.Random(f"{seed}/{name}"), SETTINGS, seeds=seeds, join=join)


def deliver(nodes: dict[str, Gossip], src: str, out: GossipOutput, drop: Drop, log: list[str]) -> None:
    queue = deque((src, send) for send in out.sends)
    while queue:
        sender, send = queue.popleft()
        log.append(f"{sender}>{send.dst}:{type(send.msg).__name__}")
        if drop(sender, send.dst) or send.dst not in nodes:
            continue
        reply = nodes[send.dst].on_message(sender, send.msg)
        queue.extend((send.dst, s) for s in reply.sends)


def run_round(
    nodes: dict[str, Gossip], now_ms: int, drop: Drop = lambda a, b: False, log: list[str] | None = None
) -> None:
    for name in sorted(nodes):
        deliver(nodes, name, nodes[name].on_tick(now_ms), drop, [] if log is None else log)


def converged(nodes: dict[str, Gossip]) -> bool:
    return len({n.state.digest for n in nodes.values()}) == 1


def rounds_to_converge(nodes: dict[str, Gossip], limit: int = 200, drop: Drop = lambda a, b: False) -> int:
    for r in range(1, limit + 1):
        run_round(nodes, r * SETTINGS.interval_ms, drop)
        if converged(nodes):
            return r
    raise AssertionError(f"no convergence in {limit} rounds")


def joined_cluster(count: int, seed: int = 0) -> dict[str, Gossip]:
    """s0 founds the cluster; s1.. start with seed s0 and an empty state."""
    nodes = {"s0": node("s0", cs.new_cluster("s0", Q))}
    for i in range(1, count):
        nodes[f"s{i}"] = node(f"s{i}", cs.empty(), seeds=("s0",), seed=seed)
    return nodes


# --- the exchange --------------------------------------------------------------------------------------


def test_equal_digests_end_the_exchange_at_once() -> None:
    state = cs.new_cluster("a", Q)
    b = node("b", state)
    assert b.on_message("a", GossipDigest(state.digest)) == GossipOutput()


def test_a_differing_digest_gets_the_state_and_only_a_lacking_peer_gets_one_back() -> None:
    newer = cs.stage_join(cs.new_cluster("a", Q), "b")
    a, b = node("a", newer), node("b", cs.new_cluster("a", Q))
    out = a.on_message("b", GossipDigest(b.state.digest))
    assert out.sends == (GossipSend("b", GossipState(newer, reply=True)),)
    # b merges; it had nothing a lacks, so it sends nothing back.
    back = b.on_message("a", out.sends[0].msg)
    assert back.changed
    assert back.sends == ()
    assert b.state == newer


def test_when_each_side_lacks_something_the_initiator_pushes_the_merge_back_once() -> None:
    base = cs.new_cluster("a", Q)
    a, c = node("a", cs.stage_join(base, "x")), node("c", cs.stage_join(base, "y"))
    answer = c.on_message("a", GossipDigest(a.state.digest))
    push = a.on_message("c", answer.sends[0].msg)
    assert sorted(a.state.members) == ["a", "x", "y"]
    assert push.sends == (GossipSend("c", GossipState(a.state, reply=False)),)
    assert c.on_message("a", push.sends[0].msg).sends == ()
    assert c.state == a.state


def test_a_push_without_reply_is_never_answered() -> None:
    a = node("a", cs.new_cluster("a", Q))
    other = cs.stage_join(cs.new_cluster("a", Q), "x")
    out = a.on_message("z", GossipState(other, reply=False))
    assert out.sends == ()
    assert out.changed


# --- rounds, peers and seeds ---------------------------------------------------------------------------


def test_a_round_runs_once_per_interval() -> None:
    state = cs.stage_join(cs.new_cluster("a", Q), "b")
    a = node("a", state)
    assert len(a.on_tick(0).sends) == 1
    assert a.on_tick(999).sends == ()
    assert len(a.on_tick(1000).sends) == 1
    assert a.rounds == 2


def test_settings_come_from_timing() -> None:
    assert GossipSettings.from_timing(Timing(gossip_interval_ms=250)).interval_ms == 250


def test_peers_are_known_members_other_than_removed_and_unreachable() -> None:
    view = MembershipView(
        [
            Member("a", MemberState.VALID),
            Member("b", MemberState.VALID),
            Member("c", MemberState.REMOVED),
            Member("d", MemberState.JOINING),
            Member("e", MemberState.DOWN),
        ]
    )
    a = node("a", ClusterState(members=view))
    assert a.peers() == ["b", "d", "e"]
    assert a.peers(frozenset({"b"})) == ["d", "e"]


def test_a_seed_is_asked_every_kth_round_and_whenever_no_peer_is_known() -> None:
    state = cs.stage_join(cs.stage_join(cs.new_cluster("a", Q), "b"), "c")
    a = Gossip("a", state, random.Random(1), GossipSettings(1000, seed_every=3), seeds=("z",))
    targets = [a.on_tick(i * 1000).sends[0].dst for i in range(9)]
    assert [t for i, t in enumerate(targets) if i % 3 == 0] == ["z", "z", "z"]
    assert all(t in ("b", "c") for i, t in enumerate(targets) if i % 3)
    lonely = node("x", cs.empty(), seeds=("s1", "s2"))
    assert all(lonely.on_tick(i * 1000).sends[0].dst in ("s1", "s2") for i in range(5))
    assert node("x", cs.empty()).on_tick(0).sends == ()  # nobody to ask


def test_a_node_started_with_a_seed_stages_its_own_join() -> None:
    nodes = joined_cluster(2)
    run_round(nodes, 0)
    for gossip in nodes.values():
        assert gossip.state.members["s1"].state is MemberState.JOINING
        assert gossip.state.members["s1"].address == "s1:1"
        assert [s.name for s in gossip.state.active_staged()] == ["s1"]


def test_the_claimant_flips_completed_moves_on_its_tick() -> None:
    state = claimant.commit(cs.stage_join(cs.new_cluster("a", Q), "b"), N_VAL)
    move = state.moves[0]
    a = node("a", cs.mark_complete(state, move.partition, move.new_owner))
    out = a.on_tick(0)
    assert out.changed
    assert a.state.ring is not None
    assert a.state.ring.owners[move.partition] == "b"
    b = node("b", cs.mark_complete(state, move.partition, move.new_owner))
    assert not b.on_tick(0).changed  # not the claimant


# --- convergence ---------------------------------------------------------------------------------------


def transfer_everything(nodes: dict[str, Gossip]) -> None:
    """Each old owner reports its transfers complete, as its TransferManager would once acked."""
    for name, gossip in sorted(nodes.items()):
        for move in gossip.state.moves_from(name):
            gossip.update(cs.mark_complete(gossip.state, move.partition, move.new_owner))


def test_ten_nodes_join_through_a_seed_commit_and_converge_to_n_val_replicas_everywhere() -> None:
    nodes = joined_cluster(10)
    rounds_to_converge(nodes)
    state = nodes["s0"].state
    assert sorted(state.members) == sorted(nodes)
    assert len(state.active_staged()) == 9
    boss = cs.acting_claimant(state)
    assert boss == "s0"
    nodes[boss].update(claimant.commit(state, N_VAL))
    rounds_to_converge(nodes)
    for r in range(20):
        transfer_everything(nodes)
        run_round(nodes, 10**6 + r * SETTINGS.interval_ms)
        if converged(nodes) and not nodes["s0"].state.moves:
            break
    final = nodes["s1"].state
    assert converged(nodes)
    assert final.moves == ()
    assert final.ring is not None
    assert all(m.state is MemberState.VALID for m in final.members.values())
    assert set(final.ring.owners) == set(nodes)
    for partition in range(Q):
        assert len(set(primaries(final.ring, partition, N_VAL))) == N_VAL


def test_convergence_survives_message_loss() -> None:
    nodes = joined_cluster(10, seed=3)
    lossy = random.Random(7)
    rounds_to_converge(nodes, drop=lambda a, b: lossy.random() < 0.3)
    assert len(nodes["s5"].state.members) == 10


def test_two_nodes_started_with_the_same_seed_end_in_one_cluster() -> None:
    # Both fetch the seed's one-node state before either join reaches it, so x knows {s, x} and y
    # knows {s, y}; the seed hears of both and every view ends up with all three.
    s = node("s", cs.new_cluster("s", Q))
    x, y = node("x", cs.empty(), seeds=("s",)), node("y", cs.empty(), seeds=("s",))
    for joiner in (x, y):
        reply = s.on_message(joiner.name, GossipDigest(joiner.state.digest))
        joiner.on_message("s", reply.sends[0].msg)  # the push back to s is lost
    assert sorted(x.state.members) == ["s", "x"]
    assert sorted(y.state.members) == ["s", "y"]
    nodes = {"s": s, "x": x, "y": y}
    rounds_to_converge(nodes)
    assert sorted(s.state.members) == ["s", "x", "y"]
    committed = claimant.commit(s.state, N_VAL)
    s.update(committed)
    rounds_to_converge(nodes)
    assert all(n.state.members[m].state is MemberState.VALID for n in nodes.values() for m in "sxy")


def test_seeds_prevent_a_logical_partition() -> None:
    # x's persisted view knows only itself and d, a member that is gone for good; gossip with d is lost.
    # Without seeds x never meets the cluster again; with a seed it does, within seed_every rounds.
    cluster = joined_cluster(5)
    rounds_to_converge(cluster)
    base = cluster["s0"].state
    lost = cs.stage_join(cs.stage_join(cs.new_cluster("s0", Q), "d"), "x")
    lost_view = ClusterState(members=MembershipView([lost.members["d"], lost.members["x"]]))
    for seeds in ((), ("s0",)):
        nodes = dict(joined_cluster(5))
        for gossip in nodes.values():
            gossip.update(base)
        nodes["x"] = node("x", lost_view, seeds=seeds)
        for r in range(1, 3 * SETTINGS.seed_every + 1):
            run_round(nodes, r * 1000, drop=lambda a, b: "d" in (a, b))
        assert ("s1" in nodes["x"].state.members) == bool(seeds)
        assert ("x" in nodes["s2"].state.members) == bool(seeds)


def test_gossip_is_deterministic_for_a_seed() -> None:
    def trace(seed: int) -> tuple[list[str], bytes]:
        nodes = joined_cluster(10, seed=seed)
        log: list[str] = []
        for r in range(12):
            run_round(nodes, r * 1000, log=log)
        return log, nodes["s3"].state.digest

    assert trace(5) == trace(5)
    assert trace(5)[0] != trace(6)[0]


def test_a_cluster_founded_apart_under_the_same_name_is_refused_and_a_joiner_takes_the_id() -> None:
    """x founded cluster "a1", y founded "b2": y's state must not be merged into x's (their rings have
    nothing to do with each other; the merge would keep the epoch of one). A joiner through x adopts "a1"."""
    x = node("x", cs.new_cluster("x", Q, cluster_id="a1"))
    y = node("y", cs.new_cluster("y", Q, cluster_id="b2"))
    before = x.state
    out = x.on_message("y", GossipState(y.state, reply=True))
    assert x.state is before and not out.changed and x.foreign == {"b2"}
    joiner = node("j", cs.empty(), seeds=("x",))
    joiner.on_message("x", GossipState(x.state, reply=False))
    assert joiner.state.cluster_id == "a1" and "j" in joiner.state.members
