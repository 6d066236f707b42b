"""The asyncio driver: one event loop owns one `Node` and feeds it events from real sockets and time.

Events come from the connections' `asyncio.Protocol` callbacks (peer messages, client requests,
peers going up and down) and from a tick every `Timing.tick_ms`; each is handed to `Node.handle` the
moment it arrives, and the effects are executed in order: a `Send` goes to the peer's link (a bounded
queue, see peers.py), a `Reply` to the client connection and request id that `ref` stands for. The
writes of one callback are flushed together at its end (framed.py).

Blocking: the storage port is synchronous and called on the loop thread, inside `Node.handle`; a slow
disk stalls the loop for that call. That is by design for now (a reply is emitted only after its write
returned, ARCHITECTURE.md section 4); group commit per loop turn, or a storage thread, is future work
to be measured first. Nothing else blocks.

Failures: a peer's or client's malformed input closes that one connection (framed.py). An exception
out of `Node.handle` is a broken invariant: the node logs it and stops with exit code 1 rather than
serve on in an unknown state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from dynakv.core import cluster_state as cs
from dynakv.core.claim import claim
from dynakv.core.cluster_state import ClusterState
from dynakv.core.config import Limits, Timing
from dynakv.core.errors import ConfigError
from dynakv.core.membership import MemberState
from dynakv.protocol.cluster import should_stop
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Reply, Send
from dynakv.protocol.events import ClientRequestReceived, Event, Tick
from dynakv.protocol.gossip import JoinIntent
from dynakv.protocol.messages import NodeReply, NodeRequest, PeerMessage
from dynakv.protocol.node import Node
from dynakv.protocol.ports import StorageEngine, StorageError
from dynakv.runtime import node_state
from dynakv.runtime.framed import Flushable, FramedProtocol
from dynakv.runtime.listener import ClientProtocol, InboundPeerProtocol
from dynakv.runtime.loop import Clock, run_forever
from dynakv.runtime.metrics import Metrics
from dynakv.runtime.node_state import Address, NodeConfig
from dynakv.runtime.peers import Peers
from dynakv.runtime.seeds import resolve_seed
from dynakv.storage.common import lock_data_dir, unlock_data_dir
from dynakv.storage.registry import open_engine
from dynakv.wire.codec import encode_peer

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_CRASHED: Final = 1

# A front end served beside the native protocol on the node's loop: the HTTP API, wired in by the CLI
# (the runtime must not import the api layer above it). Given the runner and the address to bind, it
# returns the bound address and a coroutine function that stops it.
Stopper = Callable[[], Awaitable[None]]
FrontEnd = Callable[["NodeRunner", Address], Awaitable[tuple[Address, Stopper]]]


def initial_state(config: NodeConfig) -> tuple[ClusterState, JoinIntent | None]:
    """The cluster state a node starts from when its storage holds none (protocol/cluster.py), and
    whether it joins through seeds: members configured, a static cluster claimed from their sorted
    names; seeds, no cluster yet (it stages its own join once gossip brings the cluster's state); neither,
    a new one-node cluster. Addresses are filled in once the listener is bound (`set_own_address`)."""
    if len(config.members) > 1:
        ring = claim(sorted(config.members), config.partitions, config.n_val)
        return cs.from_ring(ring, {name: str(address) for name, address in config.members.items()}), None
    if config.seeds:
        return cs.empty(), JoinIntent()
    # The founding's id: random, so that two clusters founded apart never merge (cluster_state.foreign).
    return cs.new_cluster(config.name, config.partitions, cluster_id=secrets.token_hex(8)), None


class NodeRunner:
    """Implements `framed.Host` and `listener.ClientHost` for the connections."""

    def __init__(self, config: NodeConfig, storage: StorageEngine, actor: str) -> None:
        self.config = config
        settings = Settings(
            config.cluster_config(),
            Timing.from_mapping(config.timing),
            Limits.from_mapping(config.limits),
            config.bucket_props(),
        )
        initial, join = initial_state(config)
        self.node = Node(config.name, actor, initial, storage, settings, rng=random.Random(), join=join)
        self.name = config.name
        self.cluster_name = config.cluster_name
        self.frame_bytes_max = settings.limits.frame_bytes_max
        self.tick_ms = settings.timing.tick_ms
        self.counters: Counter[str] = self.node.counters
        self.clock = Clock()
        self.peers = Peers(self, config.members, config.listen.host, settings.limits.send_queue_frames_max)
        self.cluster_address: Address | None = None
        self.advertised: str | None = None
        self._members_seen: bytes | None = None
        self._seed_tasks: list[asyncio.Task[None]] = []
        self.client_address: Address | None = None
        self.exit_code = EXIT_OK
        self._dirty: list[Flushable] = []
        # A ref stands for a native connection and its request id, or for a front end's waiting future.
        self._refs: dict[int, tuple[ClientProtocol, int] | asyncio.Future[NodeReply]] = {}
        self._next_ref = 0
        # Latency, siblings and failures of every request, native and front end alike (metrics.py).
        self.metrics = Metrics(self.counters, lambda: len(self._refs))
        self._servers: list[asyncio.Server] = []
        self._connections: set[FramedProtocol] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- Host -----------------------------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        if self._stop.is_set():
            return
        try:
            effects = self.node.handle(event, self.clock.now_ms())
        except Exception:
            log.critical("the node broke an invariant handling %r; stopping", event, exc_info=True)
            self.exit_code = EXIT_CRASHED
            self._stop.set()
            return
        if self.node.notices:  # what the node asks an operator to read (a hint dropped at a bound)
            for line in self.node.take_notices():
                log.warning("%s", line)
        # A fan-out is one message object sent to several peers: encode it once (objects can be MiBs).
        last: tuple[PeerMessage, bytes] | None = None
        for effect in effects:
            if isinstance(effect, Send):
                if last is None or last[0] is not effect.msg:
                    last = (effect.msg, encode_peer(effect.msg))
                self.peers.send(effect.dst, last[1])
            else:
                self._reply(effect)

    def _reply(self, effect: Reply) -> None:
        self.metrics.finished(effect.ref, effect.reply)
        entry = self._refs.pop(effect.ref, None)
        if entry is None:
            log.error("a reply for unknown ref %d", effect.ref)
            return
        if isinstance(entry, asyncio.Future):
            if not entry.done():  # a cancelled waiter (its HTTP client went away) takes no reply
                entry.set_result(effect.reply)
            return
        conn, request_id = entry
        conn.pending -= 1
        conn.reply(request_id, effect.reply)

    def mark_dirty(self, writer: Flushable) -> None:
        self._dirty.append(writer)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            writer.flush()

    def submit(self, conn: ClientProtocol, request_id: int, request: NodeRequest) -> None:
        self._next_ref += 1
        self._refs[self._next_ref] = (conn, request_id)
        self.metrics.started(self._next_ref, request)
        self.deliver(ClientRequestReceived(self._next_ref, request))

    async def request(self, request: NodeRequest) -> NodeReply:
        """Hand a request to the Node and wait for its reply: the seam of front ends other than the
        native protocol (the HTTP API). The Node always replies, at the latest at the request's timeout."""
        future: asyncio.Future[NodeReply] = asyncio.get_running_loop().create_future()
        self._next_ref += 1
        self._refs[self._next_ref] = future
        self.metrics.started(self._next_ref, request)
        self.deliver(ClientRequestReceived(self._next_ref, request))
        self.flush()
        return await future

    # -- lifecycle -------------------------------------------------------------------------------------

    def opened(self, conn: FramedProtocol) -> None:
        self._connections.add(conn)

    def closed(self, conn: FramedProtocol) -> None:
        self._connections.discard(conn)

    async def start(self) -> None:
        """Bind both listeners, then start the peer links and the ticks."""
        loop = asyncio.get_running_loop()
        listen, client = self.config.listen, self.config.client
        cluster_server = await loop.create_server(
            lambda: InboundPeerProtocol(self, self.peers.on_inbound_hello),
            listen.host,
            listen.port,
            reuse_address=True,
        )
        self._servers.append(cluster_server)
        client_server = await loop.create_server(
            lambda: ClientProtocol(self), client.host, client.port, reuse_address=True
        )
        self._servers.append(client_server)
        self.cluster_address = Address(listen.host, cluster_server.sockets[0].getsockname()[1])
        self.client_address = Address(client.host, client_server.sockets[0].getsockname()[1])
        self.advertised = str(self.cluster_address)
        self.node.cluster.set_own_address(self.advertised)
        self.peers.start()
        self._learn_members()
        self._seed_tasks = [
            asyncio.create_task(resolve_seed(self, seed, listen.host, self._seed_found), name=f"seed-{seed}")
            for seed in self.config.seeds
            if seed != self.cluster_address
        ]
        self._tick_task = asyncio.create_task(self._ticks(), name="ticks")
        log.info(
            "node %s (actor %s) serving: cluster %s, client %s; members %s",
            self.name,
            self.node.data.actor,
            self.cluster_address,
            self.client_address,
            ", ".join(sorted(self.config.members)),
        )

    async def _ticks(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.tick_ms / 1000
        next_at = loop.time()
        while True:
            next_at = max(next_at + interval, loop.time() - interval)  # after a stall, do not burst
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.deliver(Tick())
            self._learn_members()
            self.flush()

    def _learn_members(self) -> None:
        """Open links to members the cluster state names that this node has no link to yet."""
        state = self.node.cluster.state
        if state.digest == self._members_seen:
            return
        self._members_seen = state.digest
        if should_stop(state, self.name) and not self._stop.is_set():
            # `dynakv cluster leave` committed and every partition handed off (or this node was removed):
            # nothing is left for it to serve.
            log.info(
                "this node is %s: its partitions are handed off; stopping",
                state.members[self.name].state.value,
            )
            self.request_stop()
        for member in state.members.values():
            if member.address is None or member.state is MemberState.REMOVED or member.name == self.name:
                continue
            try:
                self.peers.learn(member.name, node_state.parse_address(member.address, "member address"))
            except ConfigError as err:
                log.warning("member %s has an unusable address: %s", member.name, err)

    def _seed_found(self, name: str, address: Address) -> None:
        log.info("seed %s is node %s", address, name)
        self.peers.learn(name, address)
        self.node.cluster.add_seed(name)

    def request_stop(self) -> None:
        self._stop.set()

    def on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An exception escaped a callback: a bug in this node, so stop it (exit 1), as for a broken
        invariant in `deliver`; malformed input never gets here (framed.py handles it)."""
        loop.default_exception_handler(context)
        if self.exit_code == EXIT_OK:
            log.critical("unexpected error in the event loop; stopping")
        self.exit_code = EXIT_CRASHED
        self._stop.set()

    async def wait(self) -> int:
        await self._stop.wait()
        return self.exit_code

    async def stop(self) -> None:
        """Stop accepting, close every connection, stop the links and the ticks."""
        self._stop.set()
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.close()
        for task in self._seed_tasks:
            task.cancel()
        for task in self._seed_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.peers.stop()
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        for server in self._servers:
            await server.wait_closed()
        log.info("counters %s", json.dumps(dict(sorted(self.counters.items()))))


_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


async def serve(
    config: NodeConfig,
    data_dir: Path,
    storage: StorageEngine,
    early_stop: list[int] | None = None,
    http: FrontEnd | None = None,
) -> int:
    """Run the node until SIGTERM or SIGINT (exit 0) or a broken invariant (exit 1). `early_stop`
    holds the stop signals that arrived before the loop ran, if any; `http` serves config.http."""
    runner = NodeRunner(config, storage, node_state.actor_id(config.name, storage))
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, runner.request_stop)
    loop.set_exception_handler(runner.on_loop_exception)
    if early_stop:
        runner.request_stop()
    http_address: Address | None = None
    stop_http: Stopper | None = None
    try:
        await runner.start()
        assert runner.cluster_address is not None and runner.client_address is not None
        if config.http is not None and http is None:
            log.warning("--http %s is saved, but no HTTP front end was given", config.http)
        elif config.http is not None and http is not None:
            http_address, stop_http = await http(runner, config.http)
            log.info("node %s serving HTTP on %s", config.name, http_address)
        node_state.write_json_atomically(
            data_dir / node_state.READY_FILE,
            node_state.ready_record(config.name, runner.cluster_address, runner.client_address, http_address),
        )
        code = await runner.wait()
        log.info("stopping")
    finally:
        node_state.remove_ready(data_dir)
        if stop_http is not None:
            await stop_http()
        await runner.stop()
    return code


def run_node(data_dir: Path, given: node_state.Overrides, http: FrontEnd | None = None) -> int:
    """`dynakv node`: settle the settings (node.json + flags, saved back), open the storage, serve.

    Raises ConfigError for bad settings or a data directory in use, StorageError when the engine cannot
    open, OSError when an address cannot be bound.
    """
    # A stop signal during startup (opening a large engine can take a while) must still mean a clean
    # stop with exit 0, not death by the default handler: remember it until the loop's handler is in.
    # The same after the loop: closing it restores the default handlers, and a second signal (dev sends
    # SIGTERM after a Ctrl-C's SIGINT) must not cut the storage flush short.
    early_stop: list[int] = []

    def remember_stop_signals() -> None:
        for sig in _STOP_SIGNALS:
            signal.signal(sig, lambda signum, _frame: early_stop.append(signum))

    remember_stop_signals()
    # Settle the settings before creating anything, so a mistyped --data leaves no empty directory.
    # (node.json is replaced by rename, so reading it before taking the lock sees a whole file.)
    config = node_state.resolve(node_state.load_config(data_dir), given)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = lock_data_dir(str(data_dir))
    except StorageError:
        raise ConfigError("data", f"{data_dir} is in use by another dynakv node") from None
    try:
        node_state.save_config(data_dir, config)
        node_state.remove_ready(data_dir)
        storage = open_engine(config.storage, str(data_dir / node_state.STORAGE_DIR))
        try:
            return run_forever(serve(config, data_dir, storage, early_stop, http))
        finally:
            remember_stop_signals()
            storage.close()  # flushes: everything acknowledged so far is on disk
    finally:
        unlock_data_dir(lock)
