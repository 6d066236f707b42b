"""The deterministic simulator: the same `Node` code as the runtime, on a virtual clock and network.

Everything that varies comes from one seed: message latencies and the network's faults (network.py).
Events wait in a heap ordered by (time, sequence number), so a run is a pure function of the seed and
the script, and the trace digest (a hash of every event delivered, and of every fault verb the script
or a scheduled action used) proves it: same seed and script, same digest. A run without faults has the
digest it had before faults existed.

A crash drops the node object and every message in flight to it, and undoes what its storage engine
had not made durable (`MemoryEngine.crash`); a restart builds a new `Node` on the same engine.

Membership churn: `add_node` starts a node with a fresh engine that joins through a seed (as the runtime
does with `--seed`: it stages its own join once gossip brings it the cluster's state); `stage_leave`,
`stage_remove` and `commit` are the admin's `dynakv cluster ...` requests, sent to a node as service
requests. A node that sees itself exiting or removed stops, as the runtime does (`departed`: its engine
is kept, so checkers can still read it, but it never runs again). `ring` is the newest ring epoch any
running node holds (the static ring until a commit); `rings_seen` every ring and future ring (the ring
once pending moves flip) any node has held, so checkers know which nodes were ever meant to own what.

A pause models SIGSTOP: the paused node handles nothing. Every event for it (messages, client requests,
ticks) waits, in arrival order, and is delivered at the moment of `resume`, in that order; its ticks do
not pile up (one waits), so its deadlines fire late, as a stopped process's timers do. What it sent
before the pause is already on the wire and arrives. Faults only affect peer messages (`Send`); client
replies and the driver's `PeerConnected`/`PeerDisconnected` notices are local and never lost.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dynakv.core import cluster_state as cs
from dynakv.core.claim import claim
from dynakv.core.membership import MemberState
from dynakv.core.ring import Ring
from dynakv.protocol.cluster import should_stop
from dynakv.protocol.cluster_admin_messages import ClusterCommitRequest, ClusterStageRequest, StageKind
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.events import (
    ClientRequestReceived,
    Event,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    Tick,
)
from dynakv.protocol.gossip import JoinIntent
from dynakv.protocol.messages import NodeReply, NodeRequest, PeerMessage
from dynakv.protocol.node import Node
from dynakv.sim.ledger import Ledger, LedgerEngine
from dynakv.sim.network import CLEAN, Held, LinkPolicy, Network
from dynakv.storage.memory import MemoryEngine


@dataclass(frozen=True, slots=True)
class _Action:
    """A driver-level step scheduled in virtual time (a fault of a nemesis, say); `label` is traced."""

    label: str
    run: Callable[[], None]


@dataclass(order=True, slots=True)
class _Scheduled:
    at_ms: int
    seq: int
    node: str = field(compare=False)
    event: Event | _Action = field(compare=False)
    incarnation: int = field(compare=False)


class Simulation:
    """A cluster of nodes on a virtual network. Drive it with `submit`, `run_until` and `crash`.

    `faults` is the baseline policy of every link (default: none); `network` holds the fault state.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        seed: int,
        settings: Settings | None = None,
        latency_ms: tuple[int, int] = (1, 5),
        faults: LinkPolicy | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = settings or Settings()
        self.initial_ring: Ring = claim(
            sorted(nodes), self.settings.cluster.partitions, self.settings.cluster.n_val
        )
        self.rings_seen: list[Ring] = [self.initial_ring]
        self._rings_known: set[Ring] = {self.initial_ring}
        self._seen: dict[str, cs.ClusterState] = {}  # the state each node held after its last event
        self._joins: dict[str, str] = {}  # a node added at run time -> the seed it joined through
        self.departed: set[str] = set()  # nodes that stopped after a leave or a removal
        self.latency_ms = latency_ms
        self.now_ms = 0
        self.ledger = Ledger()  # every dot that carried each value (the antichain checker's record)
        self.storage: dict[str, MemoryEngine] = {name: LedgerEngine(self.ledger) for name in sorted(nodes)}
        self.nodes: dict[str, Node | None] = {}
        self.incarnations = dict.fromkeys(self.storage, 0)
        self.replies: dict[int, NodeReply] = {}
        self._on_reply: dict[int, Callable[[NodeReply], None]] = {}
        self._heap: list[_Scheduled] = []
        self._seq = 0
        self._next_ref = 0
        self._digest = hashlib.sha256()
        self.network = Network(self.storage, faults or CLEAN)
        self._paused: dict[str, list[Event]] = {}
        for name in self.storage:
            self._start(name)
        for name in self.storage:
            self._schedule_tick(name)

    # -- the script's verbs -----------------------------------------------------------------------------

    def submit(
        self, node: str, request: NodeRequest, on_reply: Callable[[NodeReply], None] | None = None
    ) -> int:
        """Send a client request to `node` now; the reply lands in `replies[ref]`, or with `on_reply`
        is handed to it the moment it arrives (a simulated client reacting at once). A request whose
        node crashes gets no reply at all: clients keep deadlines of their own."""
        self._next_ref += 1
        if on_reply is not None:
            self._on_reply[self._next_ref] = on_reply
        self._push(self.now_ms, node, ClientRequestReceived(self._next_ref, request))
        return self._next_ref

    def call(self, node: str, request: NodeRequest, limit_ms: int = 60_000) -> NodeReply:
        """Submit and run until the reply arrives."""
        ref = self.submit(node, request)
        self.run_until(lambda: ref in self.replies, limit_ms)
        return self.replies.pop(ref)

    def crash(self, name: str) -> None:
        """Kill `name` (a paused one too): what was in flight to it or waiting for it is lost."""
        held = self._paused.pop(name, None)
        self.nodes[name] = None
        self.incarnations[name] += 1  # messages in flight to the old incarnation are dropped
        if held is not None and any(isinstance(event, Tick) for event in held):
            self._schedule_tick(name)  # the tick chain it held goes on, as for any crashed node
        self.storage[name].crash()
        self._tell_peers(name, PeerDisconnected(name))

    def restart(self, name: str) -> None:
        assert self.nodes[name] is None, f"{name} is running"
        self._start(name)
        self._tell_peers(name, PeerConnected(name))

    # -- membership (docs/adr/0008-membership.md) -------------------------------------------------------

    @property
    def ring(self) -> Ring:
        """The ring of the newest epoch a running node holds (ties: the first such node by name)."""
        best: tuple[int, Ring] | None = None
        for _, node in sorted(self.nodes.items()):
            if node is None:
                continue
            state = node.cluster.state
            if state.ring is not None and (best is None or state.ring_version > best[0]):
                best = (state.ring_version, state.ring)
        return self.initial_ring if best is None else best[1]

    def add_node(self, name: str, seed: str) -> None:
        """Start a new node `name` on a fresh engine; it joins through `seed` (stages its own join once it
        holds the cluster's state; a `commit` admits it)."""
        assert name not in self.storage, f"{name} exists already"
        self._note(f"add_node {name} seed={seed}")
        self.storage[name] = LedgerEngine(self.ledger)
        self.incarnations[name] = 0
        self._joins[name] = seed
        self.network.nodes = tuple(sorted(self.storage))
        self._start(name)
        self._schedule_tick(name)

    def stage_leave(self, name: str, via: str | None = None, limit_ms: int = 60_000) -> NodeReply:
        """`dynakv cluster leave NAME`, asked of `via` (default: `name`)."""
        return self.call(via or name, ClusterStageRequest(StageKind.LEAVE, name), limit_ms)

    def stage_remove(self, name: str, via: str, limit_ms: int = 60_000) -> NodeReply:
        """`dynakv cluster remove NAME` (for a dead node), asked of `via`."""
        return self.call(via, ClusterStageRequest(StageKind.REMOVE, name), limit_ms)

    def commit(self, via: str, limit_ms: int = 60_000) -> NodeReply:
        """`dynakv cluster commit`, asked of `via` (a node that is not the claimant forwards it)."""
        return self.call(via, ClusterCommitRequest(), limit_ms)

    def running(self) -> list[str]:
        return [name for name, node in sorted(self.nodes.items()) if node is not None]

    def converged(self) -> bool:
        """Every running node holds the same cluster state, with no move pending, nothing staged and
        no member on its way out."""
        states = [node.cluster.state for node in self.nodes.values() if node is not None]
        if not states or len({s.digest for s in states}) > 1:
            return False
        state = states[0]
        leaving = (MemberState.JOINING, MemberState.LEAVING, MemberState.EXITING)
        return (
            not state.moves
            and not state.active_staged()
            and not any(m.state in leaving for m in state.members.values())
        )

    def run_until(self, done: Callable[[], bool], limit_ms: int = 60_000) -> None:
        """Deliver events in order until `done()` holds; fail loudly if virtual time runs out first."""
        deadline = self.now_ms + limit_ms
        while not done():
            assert self._heap, "nothing left to happen"
            if self._heap[0].at_ms > deadline:
                raise AssertionError(f"seed {self.seed}: not done after {limit_ms} ms of virtual time")
            self._step()

    def run_for(self, ms: int) -> None:
        end = self.now_ms + ms
        while self._heap and self._heap[0].at_ms <= end:
            self._step()
        self.now_ms = end

    def digest(self) -> str:
        return self._digest.hexdigest()

    # -- faults (network.py has the details of each) ---------------------------------------------------

    def set_link(self, src: str, dst: str, policy: LinkPolicy, *, both_ways: bool = False) -> None:
        """Give the link src->dst (and dst->src with `both_ways`) its own loss/duplication/delay."""
        self._note(f"set_link {src}->{dst} {policy} both_ways={both_ways}")
        self.network.set_link(src, dst, policy)
        if both_ways:
            self.network.set_link(dst, src, policy)

    def partition(self, group_a: Iterable[str], group_b: Iterable[str] | None = None) -> None:
        """Symmetric partition: no message crosses between the groups (`group_b` defaults to the rest)."""
        a = sorted(set(group_a))
        b = sorted(set(group_b) if group_b is not None else set(self.storage) - set(a))
        self._note(f"partition {a} {b}")
        self.network.partition(a, b)

    def cut(self, src: str, dst: str) -> None:
        """One-way cut: what `src` sends to `dst` is dropped; `dst` still reaches `src`."""
        self._note(f"cut {src}->{dst}")
        self.network.cut(src, dst)

    def clog(self, src: str, dst: str) -> None:
        """Hold what `src` sends to `dst` until `unclog` or `heal` sends it on, in order."""
        self._note(f"clog {src}->{dst}")
        self.network.clog(src, dst)

    def unclog(self, src: str, dst: str) -> None:
        self._note(f"unclog {src}->{dst}")
        self._resend(self.network.unclog(src, dst))

    def heal(self) -> None:
        """Remove every partition, cut, clog (sending on what it held) and per-link policy. The baseline
        `faults` policy stays; pauses and crashes are undone by `resume` and `restart`."""
        self._note("heal")
        self._resend(self.network.heal())

    def pause(self, name: str) -> None:
        """Stop `name` as SIGSTOP does: it handles nothing until `resume` (see the module docstring)."""
        assert self.nodes[name] is not None, f"{name} is not running"
        assert name not in self._paused, f"{name} is already paused"
        self._note(f"pause {name}")
        self._paused[name] = []

    def resume(self, name: str) -> None:
        """Continue `name`: what waited for it is delivered now, in the order it arrived."""
        held = self._paused.pop(name)
        self._note(f"resume {name}")
        for event in held:
            self._push(self.now_ms, name, event)

    @property
    def paused(self) -> list[str]:
        return sorted(self._paused)

    def at(self, at_ms: int, label: str, action: Callable[[], None]) -> None:
        """Run `action` (a fault verb, say) when virtual time reaches `at_ms`; `label` goes in the trace."""
        assert at_ms >= self.now_ms, f"{label}: {at_ms} is in the past ({self.now_ms})"
        self._seq += 1
        heapq.heappush(self._heap, _Scheduled(at_ms, self._seq, "", _Action(label, action), 0))

    def active_faults(self) -> list[str]:
        """Every fault in force: network faults, paused and crashed nodes. Empty means all healed."""
        faults = self.network.active()
        faults += [f"paused {name}" for name in sorted(self._paused)]
        faults += [
            f"crashed {name}"
            for name, node in sorted(self.nodes.items())
            if node is None and name not in self.departed
        ]
        return faults

    # -- machinery -------------------------------------------------------------------------------------

    def _note(self, label: str) -> None:
        self._digest.update(f"{self.now_ms} ! {label}\n".encode())

    def _start(self, name: str) -> None:
        assert name not in self.departed, f"{name} has left the cluster"
        actor = f"{name}#{self.incarnations[name]}"
        seed = self._joins.get(name)
        if seed is None:
            node = Node(name, actor, self.initial_ring, self.storage[name], self.settings)
        else:
            node = Node(
                name, actor, cs.empty(), self.storage[name], self.settings, seeds=[seed], join=JoinIntent()
            )
        self.nodes[name] = node
        self._seen.pop(name, None)
        self._observe(name, node)

    def _observe(self, name: str, node: Node) -> None:
        """After `node` handled an event: record a new ring epoch; stop it once it has nothing left to
        serve (`cluster.should_stop`: a leave committed and handed off, or a removal), as the runtime does."""
        state = node.cluster.state
        if state is self._seen.get(name):
            return
        self._seen[name] = state
        for ring in (state.ring, state.future_ring()):
            if ring is not None and ring not in self._rings_known:
                self._rings_known.add(ring)
                self.rings_seen.append(ring)
        if should_stop(state, name):
            self._depart(name)

    def _depart(self, name: str) -> None:
        self._note(f"departs {name}")
        self._paused.pop(name, None)
        self.nodes[name] = None
        self.incarnations[name] += 1  # what is in flight to it is lost
        self.departed.add(name)
        self._tell_peers(name, PeerDisconnected(name))

    def _tell_peers(self, name: str, event: Event) -> None:
        for peer in sorted(self.nodes):
            if peer != name:
                self._push(self.now_ms, peer, event)

    def _schedule_tick(self, name: str) -> None:
        self._push(self.now_ms + self.settings.timing.tick_ms, name, Tick())

    def _push(self, at_ms: int, node: str, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Scheduled(at_ms, self._seq, node, event, self.incarnations[node]))

    def _step(self) -> None:
        item = heapq.heappop(self._heap)
        self.now_ms = max(self.now_ms, item.at_ms)
        event = item.event
        if isinstance(event, _Action):
            self._note(event.label)
            event.run()
            return
        held = self._paused.get(item.node)
        if held is not None and item.incarnation == self.incarnations[item.node]:
            held.append(event)  # a paused node's tick chain waits here too, so ticks do not pile up
            return
        if isinstance(event, Tick):
            self._schedule_tick(item.node)
        node = self.nodes[item.node]
        if node is None or item.incarnation != self.incarnations[item.node]:
            return  # the node crashed: what was in flight to it is lost
        if isinstance(event, MessageReceived) and self.network.is_cut(event.src, item.node):
            self.network.stats["dropped_cut_in_flight"] += 1
            return
        if isinstance(event, MessageReceived):
            self.network.stats[f"delivered.{type(event.msg).__name__}"] += 1
        self._digest.update(f"{self.now_ms} {item.node} {event!r}\n".encode())
        self._execute(item.node, node.handle(event, self.now_ms))
        self._observe(item.node, node)

    def _execute(self, src: str, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(src, effect.dst, effect.msg)
            elif isinstance(effect, Reply):
                callback = self._on_reply.pop(effect.ref, None)
                if callback is None:
                    self.replies[effect.ref] = effect.reply
                else:
                    callback(effect.reply)

    def _send(self, src: str, dst: str, msg: PeerMessage) -> None:
        for delay in self.network.route(src, dst, msg, self.latency_ms, self.rng):
            self._push(self.now_ms + delay, dst, MessageReceived(src, msg))

    def _resend(self, held: list[Held]) -> None:
        for message in held:
            self._send(message.src, message.dst, message.msg)
