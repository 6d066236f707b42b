"""The cart workload: simulated clients adding unique items to a few shopping carts (paper section 4.4).

Each cart is one key of one bucket with allow_mult on. A client's add is read-modify-write: get the
cart (with `r`), merge the item sets of every sibling, add one new item (`c<client>-<n>`, unique in the
run), and put the merged set back with the get's context (with `w`). The add is *acknowledged* only if
the put replied success; a failed or timed-out get or put is fine (that add may or may not be stored).

What a checker needs is kept here: the acknowledged adds per key, and for every put sent (acknowledged
or not) the value it wrote, its own item and the context it carried, so a stored sibling can be traced
back to the write that made it.

Everything is drawn from a `random.Random` seeded from the run's seed and a fixed label (never the
global generator), and clients are stepped in a fixed order, so a run replays exactly from its seed.
Clients pace themselves on virtual time (`Simulation.at`) and keep deadlines of their own: a request
whose coordinator crashes gets no reply at all.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dynakv.core.dvv import VersionVector, decode_context
from dynakv.core.objects import Content
from dynakv.protocol.messages import Failure, GetReply, GetRequest, NodeReply, PutReply, PutRequest
from dynakv.sim.simulator import Simulation

CART_BUCKET = b"carts"
OnReply = Callable[[NodeReply], None]
CART_CONTENT_TYPE = "application/json"


def encode_items(items: Iterable[str]) -> bytes:
    """A cart's value: its items as a sorted JSON list (canonical: equal sets, equal bytes)."""
    return json.dumps(sorted(set(items)), separators=(",", ":")).encode()


def decode_items(value: bytes) -> frozenset[str]:
    items = json.loads(value)
    assert isinstance(items, list) and all(isinstance(i, str) for i in items), f"not a cart: {value!r}"
    return frozenset(items)


def merged_items(siblings: Iterable[Content]) -> frozenset[str]:
    """The union of the item sets of every live sibling (tombstones hold no cart)."""
    items: set[str] = set()
    for content in siblings:
        if not content.deleted:
            items |= decode_items(content.value)
    return frozenset(items)


@dataclass(frozen=True, slots=True)
class CartSettings:
    """The workload's shape: `adds_per_client` adds each, started within `window_ms` from the start."""

    keys: int = 3
    clients: int = 3
    adds_per_client: int = 10
    window_ms: int = 20_000
    think_ms: tuple[int, int] = (100, 3_000)
    r: int = 2
    w: int = 2
    timeout_ms: int = 3_000  # the coordinator's deadline for each request
    client_timeout_ms: int = 6_000  # the client's own: it gives up on a request it heard nothing of

    def key_names(self) -> list[bytes]:
        return [f"cart{i}".encode() for i in range(self.keys)]


@dataclass(frozen=True, slots=True)
class Written:
    """A put the workload sent: the key, the item it added and the context it carried."""

    key: bytes
    item: str
    context: VersionVector


@dataclass(slots=True)
class Tally:
    """What happened to the adds: each ends in exactly one of these."""

    acknowledged: int = 0
    get_failed: int = 0
    put_failed: int = 0
    timed_out: int = 0


@dataclass(slots=True)
class _Client:
    index: int
    adds_left: int
    request: int = 0  # the number of the request in flight; a reply or deadline for an older one is stale
    busy: bool = False
    sequence: int = 0


@dataclass(slots=True)
class CartWorkload:
    """Drive `settings.clients` clients against `sim`; call `start()`, then run the simulation."""

    sim: Simulation
    settings: CartSettings = field(default_factory=CartSettings)
    acknowledged: dict[bytes, set[str]] = field(default_factory=dict)
    written: dict[bytes, Written] = field(default_factory=dict)  # value bytes -> the put that wrote it
    tally: Tally = field(default_factory=Tally)
    rng: random.Random = field(init=False)
    _clients: list[_Client] = field(default_factory=list)
    _start_ms: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"dynakv-cart/{self.sim.seed}")
        self.acknowledged = {key: set() for key in self.settings.key_names()}

    def start(self) -> None:
        self._start_ms = self.sim.now_ms
        for i in range(self.settings.clients):
            client = _Client(i, self.settings.adds_per_client)
            self._clients.append(client)
            self._later(client, self.rng.randint(*self.settings.think_ms))

    def done(self) -> bool:
        """Whether every client has finished (no add left to start, none in flight)."""
        return all(not c.busy and c.adds_left == 0 for c in self._clients)

    def acknowledged_adds(self) -> int:
        return sum(len(items) for items in self.acknowledged.values())

    # -- one add: get, merge, put ------------------------------------------------------------------

    def _later(self, client: _Client, delay_ms: int) -> None:
        at_ms = self.sim.now_ms + delay_ms
        if client.adds_left == 0 or at_ms > self._start_ms + self.settings.window_ms:
            client.adds_left = 0  # the window is over: this client is done
            return
        self.sim.at(at_ms, f"cart client c{client.index} starts an add", lambda: self._begin(client))

    def _begin(self, client: _Client) -> None:
        client.adds_left -= 1
        client.sequence += 1
        client.busy = True
        key = self.rng.choice(self.settings.key_names())
        item = f"c{client.index}-{client.sequence}"
        request = GetRequest(CART_BUCKET, key, r=self.settings.r, timeout_ms=self.settings.timeout_ms)
        self._submit(client, request, lambda reply: self._on_get(client, key, item, reply))

    def _on_get(self, client: _Client, key: bytes, item: str, reply: NodeReply) -> None:
        if not isinstance(reply, GetReply):
            assert isinstance(reply, Failure), reply
            self.tally.get_failed += 1
            self._finish(client)
            return
        value = encode_items(merged_items(reply.siblings) | {item})
        self.written[value] = Written(key, item, decode_context(reply.context))
        content = Content(value, content_type=CART_CONTENT_TYPE, last_modified_ms=self.sim.now_ms)
        request = PutRequest(
            CART_BUCKET, key, content, reply.context, w=self.settings.w, timeout_ms=self.settings.timeout_ms
        )
        self._submit(client, request, lambda put: self._on_put(client, key, item, put))

    def _on_put(self, client: _Client, key: bytes, item: str, reply: NodeReply) -> None:
        if isinstance(reply, PutReply):
            self.acknowledged[key].add(item)
            self.tally.acknowledged += 1
        else:
            assert isinstance(reply, Failure), reply
            self.tally.put_failed += 1
        self._finish(client)

    def _submit(self, client: _Client, request: GetRequest | PutRequest, handler: OnReply) -> None:
        """Send `request` through a random live node; `handler` gets the reply unless the client's
        own deadline passed first (then the add ends as timed out and a late reply is ignored)."""
        client.request += 1
        number = client.request

        def on_reply(reply: NodeReply) -> None:
            if number == client.request and client.busy:
                handler(reply)

        def expire() -> None:
            if number == client.request and client.busy:
                self.tally.timed_out += 1
                self._finish(client)

        live = [n for n, node in sorted(self.sim.nodes.items()) if node is not None]
        live = [n for n in live if n not in self.sim.paused] or sorted(self.sim.nodes)
        self.sim.submit(self.rng.choice(live), request, on_reply)
        deadline = self.sim.now_ms + self.settings.client_timeout_ms
        self.sim.at(deadline, f"cart client c{client.index} deadline", expire)

    def _finish(self, client: _Client) -> None:
        client.busy = False
        client.request += 1  # whatever still arrives for the finished add is ignored
        self._later(client, self.rng.randint(*self.settings.think_ms))

