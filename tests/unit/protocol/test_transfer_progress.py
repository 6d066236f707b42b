"""`dynakv cluster transfers` across the cluster (protocol/transfer_progress.py), without sockets: who is
asked, the deadline, the bound on queries in flight, matching moves with transfers; then whole nodes
(Net of test_ownership.py) growing by one while the numbers are read."""

from __future__ import annotations

from dynakv.core import cluster_state as cs
from dynakv.core.config import Limits, Timing
from dynakv.core.objects import Content
from dynakv.protocol import claimant
from dynakv.protocol.admin_messages import StatusReply, StatusRequest
from dynakv.protocol.cluster_admin_messages import (
    ClusterTransfersReply,
    ClusterTransfersRequest,
    TransferInfo,
)
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.events import ClientRequestReceived
from dynakv.protocol.gossip import JoinIntent
from dynakv.protocol.messages import Failure, FailureKind, PutRequest
from dynakv.protocol.node import Node
from dynakv.protocol.transfer_progress import (
    QUERIES_MAX,
    QUERY_TIMEOUT_MS,
    TransferQueries,
    move_progress,
    other_transfers,
)
from dynakv.protocol.transfer_progress_messages import (
    NodeAnswer,
    NodeTransfers,
    OutboundProgress,
    TransferProgressReply,
    TransferProgressRequest,
)
from dynakv.storage.memory import MemoryEngine
from tests.unit.protocol.test_ownership import NODES, RING, Net

MINE = OutboundProgress("ownership", "n4", 3, "running", 10, 1000, 40)
THEIRS = OutboundProgress("hinted", "n1", 5, "paused", 2, 200, None)


def queries() -> TransferQueries:
    return TransferQueries(
        "n1", lambda: ((MINE,), ((7, "n4"),)), lambda nodes: ClusterTransfersReply(9, (), nodes)
    )


def replies(out: list[Effect]) -> list[object]:
    return [e.reply for e in out if isinstance(e, Reply)]


def test_every_live_member_is_asked_once_and_the_reply_waits_for_all() -> None:
    q, out = queries(), []
    q.start(1, ["n2", "n3", "n4"], {"n4"}, 0, out)
    # n4 is counted down: not asked, and not waited for.
    assert out == [Send("n2", TransferProgressRequest(1)), Send("n3", TransferProgressRequest(1))]
    out.clear()
    q.on_message("n2", TransferProgressReply(1, (THEIRS,), ()), 10, out)
    assert out == []  # n3 has not answered yet
    q.on_message("n3", TransferProgressReply(1, (), ((1, "n1"),)), 20, out)
    assert replies(out) == [
        ClusterTransfersReply(
            9,
            (),
            (
                NodeTransfers("n1", NodeAnswer.ANSWERED, (MINE,), ((7, "n4"),)),
                NodeTransfers("n2", NodeAnswer.ANSWERED, (THEIRS,)),
                NodeTransfers("n3", NodeAnswer.ANSWERED, (), ((1, "n1"),)),
                NodeTransfers("n4", NodeAnswer.UNREACHABLE),
            ),
        )
    ]
    assert q.pending() == 0


def test_a_silent_member_is_no_answer_at_the_deadline_and_its_late_answer_is_dropped() -> None:
    q, out = queries(), []
    q.start(1, ["n2", "n3"], set(), 1000, out)
    q.on_message("n2", TransferProgressReply(1, (), ()), 1010, out)
    out.clear()
    q.on_tick(1000 + QUERY_TIMEOUT_MS - 1, set(), out)
    assert out == []
    q.on_tick(1000 + QUERY_TIMEOUT_MS, set(), out)
    [reply] = replies(out)
    assert isinstance(reply, ClusterTransfersReply)
    assert [(n.node, n.answer) for n in reply.nodes] == [
        ("n1", NodeAnswer.ANSWERED),
        ("n2", NodeAnswer.ANSWERED),
        ("n3", NodeAnswer.NO_ANSWER),
    ]
    out.clear()
    q.on_message("n3", TransferProgressReply(1, (THEIRS,), ()), 1000 + QUERY_TIMEOUT_MS + 5, out)
    q.on_tick(1000 + 2 * QUERY_TIMEOUT_MS, set(), out)
    assert out == [] and q.pending() == 0


def test_a_member_counted_down_meanwhile_ends_the_wait_before_the_deadline() -> None:
    q, out = queries(), []
    q.start(1, ["n2"], set(), 0, out)
    out.clear()
    q.on_tick(100, {"n2"}, out)
    [reply] = replies(out)
    assert isinstance(reply, ClusterTransfersReply)
    assert reply.nodes[1] == NodeTransfers("n2", NodeAnswer.UNREACHABLE)


def test_answers_from_nodes_not_asked_or_twice_change_nothing() -> None:
    q, out = queries(), []
    q.start(1, ["n2", "n3"], set(), 0, out)
    q.on_message("n9", TransferProgressReply(1, (THEIRS,), ()), 1, out)  # never asked
    q.on_message("n2", TransferProgressReply(2, (THEIRS,), ()), 1, out)  # another query's id
    q.on_message("n2", TransferProgressReply(1, (), ()), 2, out)
    q.on_message("n2", TransferProgressReply(1, (THEIRS,), ()), 3, out)  # a duplicate
    q.on_message("n3", TransferProgressReply(1, (), ()), 4, out)
    [reply] = replies(out)
    assert isinstance(reply, ClusterTransfersReply)
    assert [(n.node, n.transfers) for n in reply.nodes] == [("n1", (MINE,)), ("n2", ()), ("n3", ())]


def test_a_node_alone_answers_at_once_and_a_peer_is_answered_from_its_own_transfers() -> None:
    q, out = queries(), []
    q.start(4, [], set(), 0, out)
    assert replies(out) == [
        ClusterTransfersReply(9, (), (NodeTransfers("n1", NodeAnswer.ANSWERED, (MINE,), ((7, "n4"),)),))
    ]
    out.clear()
    q.on_message("n3", TransferProgressRequest(77), 0, out)
    assert out == [Send("n3", TransferProgressReply(77, (MINE,), ((7, "n4"),)))]
    assert q.pending() == 0  # answering keeps no state


def test_queries_in_flight_are_bounded() -> None:
    q, out = queries(), []
    for ref in range(QUERIES_MAX):
        q.start(ref, ["n2"], set(), 0, out)
    out.clear()
    q.start(999, ["n2"], set(), 0, out)
    [refused] = replies(out)
    assert isinstance(refused, Failure) and refused.kind is FailureKind.OVERLOADED
    q.on_tick(QUERY_TIMEOUT_MS, set(), out)  # every query ends (n2 never answered)
    assert q.pending() == 0
    out.clear()
    q.start(1000, ["n2"], set(), QUERY_TIMEOUT_MS, out)
    assert out == [Send("n2", TransferProgressRequest(QUERIES_MAX + 1))]


def test_moves_are_matched_with_the_ownership_transfer_of_their_partition_to_their_new_owner() -> None:
    carrying = OutboundProgress("ownership", "n4", 3, "running", 5, 500, 50)
    neighbour = OutboundProgress("ownership", "n4", 4, "running", 1, 100, 60)
    same_place_other_kind = OutboundProgress("hinted", "n4", 3, "running", 1, 10, None)
    reply = ClusterTransfersReply(
        5,
        (
            TransferInfo(3, "n1", "n4", False),
            TransferInfo(5, "n2", "n4", True),
            TransferInfo(9, "n1", "n5", False),
            TransferInfo(11, "n1", "n5", False),
        ),
        (
            NodeTransfers("n1", NodeAnswer.ANSWERED, (same_place_other_kind, neighbour), ((9, "n5"),)),
            # The sender of partition 3 to n4 is n2, not the move's old owner n1 (ownership.duties).
            NodeTransfers("n2", NodeAnswer.ANSWERED, (carrying,)),
            NodeTransfers("n3", NodeAnswer.NO_ANSWER),
        ),
    )
    found = move_progress(reply)
    assert [(m.state, m.sender, m.progress) for m in found] == [
        ("running", "n2", carrying),
        ("complete", None, None),
        ("sent", "n1", None),
        ("waiting", None, None),
    ]
    assert other_transfers(reply) == [("n1", same_place_other_kind), ("n1", neighbour)]
    assert carrying.percent == 10 and same_place_other_kind.percent is None
    # Writes that arrived after the start may take the count past the total: never above 100%.
    assert OutboundProgress("ownership", "n4", 3, "running", 70, 1, 50).percent == 100


# -- whole nodes --------------------------------------------------------------------------------------

# 512-byte batches, 2 KiB per tick per sender: 300 keys of 300 bytes take tens of ticks to move.
SLOW = Settings(
    timing=Timing(gossip_interval_ms=100),
    limits=Limits(transfer_batch_bytes_max=512, transfer_bytes_per_tick_max=2048),
)


def slow_net() -> Net:
    net = Net()
    for name in NODES:
        net.engines[name] = MemoryEngine()
        net.add(name, Node(name, f"{name}#0", RING, net.engines[name], SLOW))
    for i in range(300):
        request = PutRequest(b"b", f"k{i}".encode(), Content(b"v" * 300, last_modified_ms=1))
        net.handle("n1", ClientRequestReceived(i + 1, request))
        net.settle(0)
    net.engines["n4"] = MemoryEngine()
    net.add("n4", Node("n4", "n4#0", cs.empty(), net.engines["n4"], SLOW, seeds=["n1"], join=JoinIntent()))
    net.settle(20)
    net.nodes["n1"].cluster.update(claimant.commit(net.nodes["n1"].cluster.state, 3))
    return net


def ask(net: Net, node: str, request: object, ref: int) -> object:
    net.handle(node, ClientRequestReceived(ref, request))  # type: ignore[arg-type]
    net.settle(0)  # the members' answers arrive within the same round
    return net.replies.pop(ref)


def test_a_growing_cluster_shows_its_moves_progress_then_nothing_pending() -> None:
    net = slow_net()
    seen_running: list[tuple[str | None, OutboundProgress]] = []
    seen_moves = False
    for ref in range(10_000, 10_200):
        net.settle(1)
        reply = ask(net, "n3", ClusterTransfersRequest(), ref)
        assert isinstance(reply, ClusterTransfersReply)
        assert {n.node: n.answer for n in reply.nodes} == dict.fromkeys(
            ["n1", "n2", "n3", "n4"], NodeAnswer.ANSWERED
        )
        running = [(m.sender, m.progress) for m in move_progress(reply) if m.progress is not None]
        seen_running += [(s, p) for s, p in running if 0 < p.entries_acked < (p.entries_total or 0)]
        seen_moves = seen_moves or bool(reply.moves)  # n3 learns of the commit by gossip
        if seen_moves and not reply.moves:
            break
    else:
        raise AssertionError("the moves never flipped")
    assert seen_running, "no move was ever seen part way"
    for sender, progress in seen_running:
        assert sender in NODES and progress.target == "n4" and progress.bytes_acked >= 300
    status = ask(net, "n2", StatusRequest(), 1)
    assert isinstance(status, StatusReply)
    assert (status.transfers_pending, status.transfers_active) == (0, 0)
    net.settle(5)
    final = ask(net, "n1", ClusterTransfersRequest(), 2)
    assert isinstance(final, ClusterTransfersReply) and final.moves == ()
    assert all(n.transfers == () for n in final.nodes)


def test_status_and_counters_follow_the_moves() -> None:
    net = slow_net()
    state = net.nodes["n1"].cluster.state
    planned = sum(1 for m in state.moves if not m.complete)
    assert planned > 0
    status = ask(net, "n1", StatusRequest(), 1)
    assert isinstance(status, StatusReply) and status.transfers_pending == planned
    assert net.nodes["n1"].counters["transfers.pending"] == planned
    net.settle(3)
    active = {name: node.counters["transfers.active"] for name, node in net.nodes.items()}
    status = ask(net, "n1", StatusRequest(), 2)
    assert isinstance(status, StatusReply) and status.transfers_active == active["n1"]
    assert sum(active.values()) > 0
    net.settle(300)
    assert all(not node.cluster.state.moves for node in net.nodes.values())
    counters = {name: node.counters for name, node in net.nodes.items()}
    assert all(c["transfers.pending"] == 0 and c["transfers.active"] == 0 for c in counters.values())
    acked = sum(c["transfer.entries_acked.ownership"] for c in counters.values())
    sent = sum(c["transfer.entries_sent.ownership"] for c in counters.values())
    # Nothing is lost on this network: every key sent is acknowledged once and received once.
    assert acked == sent == counters["n4"]["transfer.entries_received"] > 0
    assert sum(c["transfer.bytes_acked.ownership"] for c in counters.values()) >= acked * 300
    assert all(c["transfer.entries_acked.hinted"] == 0 for c in counters.values())
