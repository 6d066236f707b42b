"""Outgoing peer connections: one per peer, used only to send; reconnected with backoff.

Each peer has a `PeerLink` that outlives its connections. The link connects from this node's own
cluster address (`local_addr=(host, 0)`), so a firewall rule on one loopback address isolates one
node in both directions. Inbound connections (listener.py) only receive; messages are attributed to
the peer that their Hello names.

States of a link, and what a `Send` to it does:

* connecting: a connection attempt (TCP connect, then the Hello exchange) is in progress; frames wait
  in the link's queue and go out once the peer's Hello has been checked.
* up: frames go to the transport at the end of the current loop callback; while the transport's
  buffer is above its high-water mark they wait in the queue.
* down: the last attempt failed or the connection was lost; frames are dropped and counted (the
  Node's deadlines handle the loss, as they would a lost packet). What was queued is dropped too.

The queue holds at most `Limits.send_queue_frames_max` frames; past that, frames are dropped and
counted. The Node hears `PeerConnected` when the Hello exchange succeeds and `PeerDisconnected` when a
link goes down (reported once per transition, including a first attempt that fails), which is how
requests waiting on a dead peer fail fast instead of at their deadline.

Reconnecting: capped exponential backoff with jitter. An inbound Hello from a peer whose link is down
cuts the wait short: the peer evidently just (re)started, and its replies to us need our link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections import deque
from typing import Final

from dynakv.core.errors import ConfigError, RemoteProtocolError
from dynakv.protocol.events import PeerConnected, PeerDisconnected
from dynakv.runtime.backoff import Backoff
from dynakv.runtime.framed import HELLO_TIMEOUT_S, FramedProtocol, HelloRejected, Host, make_hello
from dynakv.runtime.node_state import Address, parse_address
from dynakv.wire.codec import Hello

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 2.0
CONNECTING, UP, DOWN = "connecting", "up", "down"


class OutgoingProtocol(FramedProtocol):
    """Our side of a connection we opened: say Hello, check the peer's, then only write."""

    def __init__(self, host: Host, link: PeerLink) -> None:
        super().__init__(host)
        self.link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write([make_hello(self.host)])

    def on_hello(self, hello: Hello) -> None:
        if hello.role != "node" or hello.cluster != self.host.cluster_name or hello.name != self.link.name:
            raise HelloRejected(
                f"expected node {self.link.name!r} of cluster {self.host.cluster_name!r}, got {hello.role} "
                f"{hello.name!r} of cluster {hello.cluster!r}"
            )
        self.link.on_up(self)

    def on_frame(self, frame: bytes) -> None:
        raise RemoteProtocolError("a frame after the hello on a connection that only sends")

    def on_closed(self) -> None:
        self.link.on_lost(self)

    def on_write_resumed(self) -> None:
        self.link.flush()


class PeerLink:
    """The sending side towards one peer; see the module docstring for its states."""

    def __init__(
        self, host: Host, name: str, address: Address, *, local_host: str, queue_max: int, rng: random.Random
    ) -> None:
        self.host = host
        self.name = name
        self.address = address
        self.local_host = local_host
        self.queue_max = queue_max
        self.state = CONNECTING
        self.backoff = Backoff(rng)
        self._queue: deque[bytes] = deque()
        self._dirty = False
        self._conn: OutgoingProtocol | None = None
        self._reported: bool | None = None  # True: PeerConnected last told; False: PeerDisconnected
        self._ready: asyncio.Future[bool] | None = None
        self._lost = asyncio.Event()
        self._kick = asyncio.Event()
        self._stopping = False

    # -- the runner's side ---------------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        if self.state == DOWN:
            self.host.counters["peer.dropped_down"] += 1
            return
        if len(self._queue) >= self.queue_max:
            self.host.counters["peer.dropped_queue_full"] += 1
            return
        self._queue.append(payload)
        if not self._dirty:
            self._dirty = True
            self.host.mark_dirty(self)

    def flush(self) -> None:
        self._dirty = False
        conn = self._conn
        if self.state == UP and conn is not None and not conn.write_paused and self._queue:
            conn.write(self._queue)
            self._queue.clear()

    def kick(self) -> None:
        """The peer showed signs of life: stop waiting out the backoff. Frames are queued from now on,
        not dropped: the peer's first requests (sent right after its hello) need our replies, and the
        connecting task only runs a few loop turns later."""
        if self.state == DOWN:
            self.state = CONNECTING
            self._kick.set()

    # -- connection events ---------------------------------------------------------------------------------

    def on_up(self, conn: OutgoingProtocol) -> None:
        if self._stopping or conn.closed:
            return
        self._conn = conn
        self.state = UP
        self.backoff.reset()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(True)
        log.info("connected to %s at %s", self.name, self.address)
        if self._reported is not True:
            self._reported = True
            self.host.deliver(PeerConnected(self.name))
        self.flush()

    def on_lost(self, conn: OutgoingProtocol) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(False)
        if conn is self._conn:
            self._conn = None
            if not self._stopping:
                log.info("lost the connection to %s", self.name)
            self._lost.set()
            self._set_down()

    def _set_down(self) -> None:
        self.state = DOWN
        if self._queue:
            self.host.counters["peer.dropped_down"] += len(self._queue)
            self._queue.clear()
        if self._reported is not False and not self._stopping:
            self._reported = False
            self.host.deliver(PeerDisconnected(self.name))
            self.host.flush()

    # -- the connecting task -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stay connected until the connection drops, back off, repeat; until cancelled."""
        while not self._stopping:
            self.state = CONNECTING
            if await self._connect_once():
                await self._lost.wait()
            self._set_down()
            delay_ms = self.backoff.next_delay_ms()
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), delay_ms / 1000)

    async def _connect_once(self) -> bool:
        loop = asyncio.get_running_loop()
        self._lost.clear()
        self._ready = loop.create_future()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: OutgoingProtocol(self.host, self),
                    self.address.host,
                    self.address.port,
                    local_addr=(self.local_host, 0),
                ),
                CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as err:
            if self.backoff.attempt == 0:
                log.info("cannot connect to %s at %s: %s", self.name, self.address, err)
            return False
        try:
            up = await asyncio.wait_for(asyncio.shield(self._ready), HELLO_TIMEOUT_S)
        except TimeoutError:
            log.warning("no hello from %s within %g s", self.name, HELLO_TIMEOUT_S)
            conn.close()
            return False
        if not up and self.backoff.attempt == 0:
            log.warning("%s at %s closed the connection during the hello exchange", self.name, self.address)
        return up

    def stop(self) -> None:
        self._stopping = True
        if self._conn is not None:
            self._conn.close()


class Peers:
    """Every outgoing link of this node, by peer name. Links are added as peers become known: the
    configured members at start, then members learned from the cluster state (`learn`) and nodes that
    say hello with their address (a node joining through this one)."""

    def __init__(self, host: Host, members: dict[str, Address], local_host: str, queue_max: int) -> None:
        self.host = host
        self.local_host = local_host
        self.queue_max = queue_max
        self.links: dict[str, PeerLink] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        for name, address in sorted(members.items()):
            if name != host.name:
                self._add(name, address)

    def _add(self, name: str, address: Address) -> None:
        # Seeded per (node, peer): reproducible, yet different nodes draw different jitter.
        seed = int.from_bytes(hashlib.blake2b(f"{self.host.name}->{name}".encode(), digest_size=8).digest())
        link = PeerLink(
            self.host,
            name,
            address,
            local_host=self.local_host,
            queue_max=self.queue_max,
            rng=random.Random(seed),
        )
        self.links[name] = link
        if self._started:
            self._tasks.append(asyncio.create_task(link.run(), name=f"peer-{name}"))

    def start(self) -> None:
        self._started = True
        self._tasks = [
            asyncio.create_task(link.run(), name=f"peer-{name}") for name, link in self.links.items()
        ]

    def learn(self, name: str, address: Address) -> None:
        """`name` is a peer at `address`: open a link to it, or point its link there (it moved)."""
        if name == self.host.name:
            return
        link = self.links.get(name)
        if link is None:
            log.info("learned of peer %s at %s", name, address)
            self._add(name, address)
        elif link.address != address:
            log.info("peer %s moved to %s", name, address)
            link.address = address
            link.kick()

    def send(self, dst: str, payload: bytes) -> None:
        link = self.links.get(dst)
        if link is None:
            self.host.counters["peer.unknown_destination"] += 1
            log.error("a message for %r, which is not a member", dst)
            return
        link.send(payload)

    def on_inbound_hello(self, name: str, address: str | None = None) -> None:
        link = self.links.get(name)
        if link is None and address is not None:
            try:
                self.learn(name, parse_address(address, "hello address"))
            except ConfigError as err:
                log.warning("%s said hello with an unusable address: %s", name, err)
        elif link is not None:
            link.kick()

    async def stop(self) -> None:
        for link in self.links.values():
            link.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
