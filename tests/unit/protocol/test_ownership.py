"""Ownership transfers (protocol/ownership.py): a node joins, the data moves, the ring flips."""

from __future__ import annotations

from collections import deque

from dynakv.core import cluster_state as cs
from dynakv.core.claim import claim
from dynakv.core.config import Timing
from dynakv.core.objects import Content
from dynakv.core.preflist import primaries
from dynakv.protocol import claimant
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.events import ClientRequestReceived, Event, MessageReceived, Tick
from dynakv.protocol.gossip import JoinIntent
from dynakv.protocol.messages import GetReply, GetRequest, PutReply, PutRequest
from dynakv.protocol.node import Node
from dynakv.protocol.ownership import duties
from dynakv.storage.memory import MemoryEngine

NODES = ["n1", "n2", "n3"]
RING = claim(NODES, 16, 3)
SETTINGS = Settings(timing=Timing(gossip_interval_ms=100))


class Net:
    """Every node's effects delivered in order; replies to clients collected by ref."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.engines: dict[str, MemoryEngine] = {}
        self.queue: deque[tuple[str, Event]] = deque()
        self.replies: dict[int, object] = {}
        self.now = 0
        self.drop_to: set[str] = set()

    def add(self, name: str, node: Node) -> None:
        self.nodes[name] = node

    def handle(self, name: str, event: Event) -> None:
        for effect in self.nodes[name].handle(event, self.now):
            self._route(name, effect)

    def _route(self, src: str, effect: Effect) -> None:
        if isinstance(effect, Reply):
            self.replies[effect.ref] = effect.reply
        elif isinstance(effect, Send) and effect.dst in self.nodes and effect.dst not in self.drop_to:
            self.queue.append((effect.dst, MessageReceived(src, effect.msg)))

    def settle(self, ticks: int = 1) -> None:
        """Deliver what is queued; then `ticks` times: tick every node and deliver."""
        self._drain()
        for _ in range(ticks):
            self.now += SETTINGS.timing.tick_ms
            for name in sorted(self.nodes):
                self.handle(name, Tick())
            self._drain()

    def _drain(self) -> None:
        while self.queue:
            dst, event = self.queue.popleft()
            self.handle(dst, event)


def start() -> Net:
    net = Net()
    for name in NODES:
        net.engines[name] = MemoryEngine()
        net.add(name, Node(name, f"{name}#0", RING, net.engines[name], SETTINGS))
    return net


def put_keys(net: Net, count: int, first_ref: int = 1, offset: int = 0) -> None:
    for j in range(count):
        i = offset + j
        request = PutRequest(b"b", f"k{i}".encode(), Content(f"v{i}".encode(), last_modified_ms=1))
        net.handle("n1", ClientRequestReceived(first_ref + j, request))
        net.settle(0)


def test_duties_pair_added_and_removed_primaries() -> None:
    state = cs.stage_join(cs.from_ring(RING), "n4")
    state = claimant.commit(state, 3)
    future = state.future_ring()
    assert state.ring is not None and future is not None
    for q, target, sender in duties(state, 3):
        assert target in primaries(future, q, 3) and target not in primaries(state.ring, q, 3)
        assert sender in primaries(state.ring, q, 3)


def test_a_joined_node_receives_its_partitions_and_the_ring_flips() -> None:
    net = start()
    put_keys(net, 200)
    assert all(isinstance(net.replies[i], PutReply) for i in range(1, 201))
    net.engines["n4"] = MemoryEngine()
    joiner = Node("n4", "n4#0", cs.empty(), net.engines["n4"], SETTINGS, seeds=["n1"], join=JoinIntent())
    net.add("n4", joiner)
    net.settle(20)
    assert net.nodes["n1"].cluster.state.active_staged()
    net.nodes["n1"].cluster.update(claimant.commit(net.nodes["n1"].cluster.state, 3))
    planned = net.nodes["n1"].cluster.state.future_ring()
    # Writes go on while the partitions move (a few between every tick), then everything settles.
    for batch in range(30):
        put_keys(net, 10, first_ref=1000 + 10 * batch, offset=200 + 10 * batch)
        net.settle(1)
    assert net.nodes["n1"].counters["ownership.forwarded"] > 0
    assert all(isinstance(net.replies[1000 + i], PutReply) for i in range(300))
    net.settle(200)
    for name, node in net.nodes.items():
        assert node.cluster.state.ring == planned, name
        assert not node.cluster.state.moves
    assert planned is not None and "n4" in planned.owners
    # Every key, old and new, is on every one of its primaries in the flipped ring.
    for i in range(500):
        key = f"k{i}".encode()
        q = planned.partition_for_key(b"b", key)
        for owner in primaries(planned, q, 3):
            assert net.engines[owner].get(q, b"b", key) is not None, (key, owner)
    # And reads at r = n_val see every key.
    for i in range(500):
        net.handle("n4", ClientRequestReceived(5000 + i, GetRequest(b"b", f"k{i}".encode(), r=3)))
        net.settle(0)
        reply = net.replies[5000 + i]
        assert isinstance(reply, GetReply) and reply.found, i


def test_a_removed_nodes_replicas_are_rebuilt_from_the_survivors() -> None:
    net = start()
    net.engines["n4"] = MemoryEngine()
    net.add(
        "n4", Node("n4", "n4#0", cs.empty(), net.engines["n4"], SETTINGS, seeds=["n1"], join=JoinIntent())
    )
    net.settle(20)
    net.nodes["n1"].cluster.update(claimant.commit(net.nodes["n1"].cluster.state, 3))
    net.settle(100)
    assert not net.nodes["n1"].cluster.state.moves
    put_keys(net, 200)
    # n3 dies for good and is removed: its partitions are claimed again, without a handoff.
    del net.nodes["n3"]
    state = cs.stage_remove(net.nodes["n1"].cluster.state, "n3")
    net.nodes["n1"].cluster.update(claimant.commit(state, 3))
    net.settle(200)
    ring = net.nodes["n1"].cluster.state.ring
    assert ring is not None and "n3" not in ring.owners
    assert sum(node.counters["ownership.repairs_done"] for node in net.nodes.values()) > 0
    for i in range(200):
        key = f"k{i}".encode()
        q = ring.partition_for_key(b"b", key)
        for owner in primaries(ring, q, 3):
            assert net.engines[owner].get(q, b"b", key) is not None, (key, owner)


def test_transfers_to_a_node_removed_mid_move_are_cancelled_and_the_ring_settles() -> None:
    """n4 joins and goes silent while partitions move to it; it is removed. The senders' transfers to
    it, paused and holding places under the manager's bound, are cancelled (sim seed 244 of --churn
    --leave --remove hung on them), and the ring settles on n1..n3 with every key on its primaries."""
    net = start()
    put_keys(net, 200)
    net.engines["n4"] = MemoryEngine()
    joiner = Node("n4", "n4#0", cs.empty(), net.engines["n4"], SETTINGS, seeds=["n1"], join=JoinIntent())
    net.add("n4", joiner)
    net.settle(20)
    net.nodes["n1"].cluster.update(claimant.commit(net.nodes["n1"].cluster.state, 3))
    net.settle(2)
    net.drop_to.add("n4")  # silent from now on: no batch reaches it, no ack comes back
    net.settle(5)
    def sending_to_n4(name: str) -> bool:
        return any(s.target == "n4" for s in net.nodes[name].availability.handoff.manager.status())

    assert any(sending_to_n4(n) for n in NODES), "no transfer to n4 under way"
    del net.nodes["n4"]
    state = cs.stage_remove(net.nodes["n1"].cluster.state, "n4")
    net.nodes["n1"].cluster.update(claimant.commit(state, 3))
    net.settle(300)
    for name in NODES:
        node = net.nodes[name]
        assert not sending_to_n4(name)
        assert not node.cluster.state.moves and "n4" not in (node.cluster.state.ring or RING).owners, name
    ring = net.nodes["n1"].cluster.state.ring
    assert ring is not None
    for i in range(200):
        key = f"k{i}".encode()
        q = ring.partition_for_key(b"b", key)
        assert all(net.engines[o].get(q, b"b", key) is not None for o in primaries(ring, q, 3)), key
