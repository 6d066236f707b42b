"""The cluster state wired into the Node: loaded, gossiped, persisted, its ring applied (cluster.py)."""

from __future__ import annotations

from dataclasses import replace

from dynakv.core import cluster_state as cs
from dynakv.core.claim import claim
from dynakv.core.config import Timing
from dynakv.core.membership import MemberState
from dynakv.protocol import claimant
from dynakv.protocol.cluster import HISTORY_META_KEY, load_history, should_stop
from dynakv.protocol.cluster_admin import FORWARD_TIMEOUT_MS
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitForward,
    ClusterCommitForwardReply,
    ClusterCommitRequest,
    ClusterPlanReply,
)
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.events import ClientRequestReceived, MessageReceived, Tick
from dynakv.protocol.gossip import STATE_META_KEY
from dynakv.protocol.gossip_messages import GossipDigest, GossipState
from dynakv.protocol.messages import Failure, FailureKind
from dynakv.protocol.node import Node
from dynakv.storage.memory import MemoryEngine
from dynakv.wire.codec import decode_peer, encode_peer

NODES = ["n1", "n2", "n3"]
RING = claim(NODES, 16, 3)
SETTINGS = Settings(timing=Timing(gossip_interval_ms=1_000))


def cluster() -> tuple[dict[str, Node], dict[str, MemoryEngine]]:
    engines = {n: MemoryEngine() for n in NODES}
    return {n: Node(n, f"{n}#0", RING, engines[n], SETTINGS) for n in NODES}, engines


def gossip_of(out: list[Effect]) -> list[Send]:
    return [e for e in out if isinstance(e, Send) and isinstance(e.msg, GossipDigest | GossipState)]


def run(nodes: dict[str, Node], now_ms: int, rounds: int = 6) -> int:
    """Tick every node once a gossip interval; deliver the gossip (through the codec) until quiet."""
    for _ in range(rounds):
        now_ms += 1_000
        queue = [(n, s) for n in sorted(nodes) for s in gossip_of(nodes[n].handle(Tick(), now_ms))]
        while queue:
            src, send = queue.pop(0)
            if send.dst not in nodes:
                continue  # a member not running here (n4): the message is lost
            msg = decode_peer(encode_peer(send.msg))
            out = nodes[send.dst].handle(MessageReceived(src, msg), now_ms)
            queue += [(send.dst, s) for s in gossip_of(out)]
    return now_ms


def test_a_static_cluster_starts_from_its_ring_and_persists_it() -> None:
    nodes, engines = cluster()
    state = nodes["n1"].cluster.state
    assert state == cs.from_ring(RING)
    assert {m.state for m in state.members.values()} == {MemberState.VALID}
    for name in NODES:
        assert nodes[name].cluster.state.digest == state.digest
        assert engines[name].meta_get(STATE_META_KEY) == cs.encode(state)


def test_a_converged_cluster_gossips_digests_only() -> None:
    nodes, _ = cluster()
    out = nodes["n1"].handle(Tick(), 1_000)
    sends = gossip_of(out)
    assert len(sends) == 1 and isinstance(sends[0].msg, GossipDigest)
    answer = nodes[sends[0].dst].handle(MessageReceived("n1", sends[0].msg), 1_000)
    assert gossip_of(answer) == []


def committed_and_flipped(state: cs.ClusterState) -> cs.ClusterState:
    """n4 joins; every move it causes completes; the claimant flips the ring."""
    state = claimant.commit(cs.stage_join(state, "n4", address="127.0.0.1:9004"), n_val=3)
    assert state.moves
    for move in state.moves:
        state = cs.mark_complete(state, move.partition, move.new_owner)
    return claimant.claimant_tick(state)


def test_a_ring_change_reaches_every_node_and_its_components() -> None:
    nodes, engines = cluster()
    flipped = committed_and_flipped(nodes["n1"].cluster.state)
    assert flipped.ring is not None and "n4" in flipped.ring.owners
    assert nodes["n1"].cluster.update(flipped)
    run(nodes, 0)
    for name, node in nodes.items():
        assert node.cluster.state.ring == flipped.ring
        assert node.data.ring == flipped.ring
        assert node.props.ring == flipped.ring
        assert node.ae.ring == flipped.ring
        assert node.availability.handoff.ring == flipped.ring
        assert "n4" in node.availability.reach.peers
        assert cs.decode(engines[name].meta_get(STATE_META_KEY) or b"").ring == flipped.ring


def test_the_state_survives_a_restart_and_history_is_kept() -> None:
    nodes, engines = cluster()
    flipped = committed_and_flipped(nodes["n1"].cluster.state)
    nodes["n1"].cluster.update(flipped)
    history = load_history(engines["n1"])
    assert [entry[0] for entry in history] == [flipped.ring_version]
    assert engines["n1"].meta_get(HISTORY_META_KEY) is not None
    # Restarted with the static ring it was configured with: the persisted state wins.
    again = Node("n1", "n1#1", RING, engines["n1"], SETTINGS)
    assert again.cluster.state.digest == flipped.digest
    assert again.data.ring == flipped.ring


def test_a_removed_member_is_no_longer_watched_or_counted_down() -> None:
    nodes, _ = cluster()
    node = nodes["n1"]
    node.availability.reach.unreachable.add("n3")
    node.data.down.add("n3")
    state = node.cluster.state
    members = replace(state.members["n3"], state=MemberState.REMOVED, version=2)
    node.cluster.update(replace(state, members=state.members.with_member(members)))
    assert "n3" not in node.availability.reach.peers
    assert "n3" not in node.data.down


def test_a_commit_asked_of_another_node_is_forwarded_to_the_claimant() -> None:
    nodes, _ = cluster()
    staged = cs.stage_join(nodes["n2"].cluster.state, "n4", address="127.0.0.1:9004")
    nodes["n2"].cluster.update(staged)
    now = run(nodes, 0)
    assert nodes["n1"].cluster.state.active_staged()  # gossip brought the staged join to the claimant
    out = nodes["n2"].handle(ClientRequestReceived(1, ClusterCommitRequest()), now)
    (forward,) = [e for e in out if isinstance(e, Send)]
    assert forward.dst == "n1" and isinstance(forward.msg, ClusterCommitForward)
    (answer,) = nodes["n1"].handle(MessageReceived("n2", forward.msg), now)
    assert isinstance(answer, Send) and isinstance(answer.msg, ClusterCommitForwardReply)
    assert nodes["n1"].cluster.state.ring_version == 2  # committed on the claimant
    (reply,) = nodes["n2"].handle(MessageReceived("n1", answer.msg), now)
    assert isinstance(reply, Reply) and isinstance(reply.reply, ClusterPlanReply)
    assert reply.reply.claimant == "n1" and any("n4" in line for line in reply.reply.lines)


def test_a_forwarded_commit_times_out_when_the_claimant_is_silent() -> None:
    nodes, _ = cluster()
    nodes["n2"].handle(ClientRequestReceived(1, ClusterCommitRequest()), 0)
    out = nodes["n2"].handle(Tick(), FORWARD_TIMEOUT_MS)
    replies = [e for e in out if isinstance(e, Reply)]
    assert [r.reply.kind for r in replies if isinstance(r.reply, Failure)] == [FailureKind.TIMEOUT]


def test_a_leaving_claimant_stops_only_once_another_node_holds_its_exit() -> None:
    state = claimant.commit(cs.stage_leave(cs.from_ring(RING), "n1"), n_val=3)
    for move in state.moves:
        state = cs.mark_complete(state, move.partition, move.new_owner)
    exiting = claimant.claimant_tick(state)  # n1 flips its own last moves and makes itself exiting
    assert exiting.members["n1"].state is MemberState.EXITING and exiting.claimant == "n1"
    assert not should_stop(exiting, "n1")  # only n1 holds this epoch yet
    assert cs.acting_claimant(exiting) == "n2"
    removed = claimant.claimant_tick(exiting)  # on n2, once gossip brought it the epoch
    assert removed.members["n1"].state is MemberState.REMOVED and should_stop(removed, "n1")
