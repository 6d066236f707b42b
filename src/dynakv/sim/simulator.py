"""The deterministic simulator: the same `Node` code as the runtime, on a virtual clock and network.

Everything that varies comes from one seed: message latencies now, faults in a later issue. Events
wait in a heap ordered by (time, sequence number), so a run is a pure function of the seed and the
script, and the trace digest (a hash of every event delivered) proves it: same seed, same digest.

A crash drops the node object and every message in flight to it, and undoes what its storage engine
had not made durable (`MemoryEngine.crash`); a restart builds a new `Node` on the same engine.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dynakv.core.claim import claim
from dynakv.core.ring import Ring
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
from dynakv.protocol.messages import NodeReply, NodeRequest
from dynakv.protocol.node import Node
from dynakv.storage.memory import MemoryEngine


@dataclass(order=True, slots=True)
class _Scheduled:
    at_ms: int
    seq: int
    node: str = field(compare=False)
    event: Event = field(compare=False)
    incarnation: int = field(compare=False)


class Simulation:
    """A cluster of nodes on a virtual network. Drive it with `submit`, `run_until` and `crash`."""

    def __init__(
        self,
        nodes: Sequence[str],
        seed: int,
        settings: Settings | None = None,
        latency_ms: tuple[int, int] = (1, 5),
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.settings = settings or Settings()
        self.ring: Ring = claim(sorted(nodes), self.settings.cluster.partitions, self.settings.cluster.n_val)
        self.latency_ms = latency_ms
        self.now_ms = 0
        self.storage = {name: MemoryEngine() for name in sorted(nodes)}
        self.nodes: dict[str, Node | None] = {}
        self.incarnations = dict.fromkeys(self.storage, 0)
        self.replies: dict[int, NodeReply] = {}
        self._heap: list[_Scheduled] = []
        self._seq = 0
        self._next_ref = 0
        self._digest = hashlib.sha256()
        for name in self.storage:
            self._start(name)
        for name in self.storage:
            self._schedule_tick(name)

    # -- the script's verbs -----------------------------------------------------------------------------

    def submit(self, node: str, request: NodeRequest) -> int:
        """Send a client request to `node` now; the reply lands in `replies[ref]`."""
        self._next_ref += 1
        self._push(self.now_ms, node, ClientRequestReceived(self._next_ref, request))
        return self._next_ref

    def call(self, node: str, request: NodeRequest, limit_ms: int = 60_000) -> NodeReply:
        """Submit and run until the reply arrives."""
        ref = self.submit(node, request)
        self.run_until(lambda: ref in self.replies, limit_ms)
        return self.replies.pop(ref)

    def crash(self, name: str) -> None:
        self.nodes[name] = None
        self.incarnations[name] += 1  # messages in flight to the old incarnation are dropped
        self.storage[name].crash()
        self._tell_peers(name, PeerDisconnected(name))

    def restart(self, name: str) -> None:
        assert self.nodes[name] is None, f"{name} is running"
        self._start(name)
        self._tell_peers(name, PeerConnected(name))

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

    # -- machinery -------------------------------------------------------------------------------------

    def _start(self, name: str) -> None:
        actor = f"{name}#{self.incarnations[name]}"
        self.nodes[name] = Node(name, actor, self.ring, self.storage[name], self.settings)

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
        if isinstance(item.event, Tick):
            self._schedule_tick(item.node)
        node = self.nodes[item.node]
        if node is None or item.incarnation != self.incarnations[item.node]:
            return  # the node crashed: what was in flight to it is lost
        self._digest.update(f"{self.now_ms} {item.node} {item.event!r}\n".encode())
        self._execute(item.node, node.handle(item.event, self.now_ms))

    def _execute(self, src: str, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                delay = self.rng.randint(*self.latency_ms)
                self._push(self.now_ms + delay, effect.dst, MessageReceived(src, effect.msg))
            elif isinstance(effect, Reply):
                self.replies[effect.ref] = effect.reply
