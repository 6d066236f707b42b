"""The node: one sans-IO state machine, `handle(event, now_ms) -> list[Effect]`, for the data path.

The node coordinates the gets, puts and deletes that clients send it, answers its peers' replica
messages, and keeps the table of requests in flight with their deadlines. It never touches a socket
or a clock: the driver (asyncio runtime or simulator) feeds it events and executes the effects in
order. Storage is a synchronous port, so a reply is emitted only after the write has returned.
"""

from __future__ import annotations

from collections import Counter

from dynakv.core.ring import Ring
from dynakv.protocol import data_path
from dynakv.protocol.data_path import DataPath, Settings
from dynakv.protocol.effects import Effect, Reply
from dynakv.protocol.events import (
    ClientRequestReceived,
    Event,
    MessageReceived,
    PeerConnected,
    PeerDisconnected,
    Tick,
)
from dynakv.protocol.messages import (
    DeleteRequest,
    Failure,
    FailureKind,
    GetRequest,
    PutRequest,
    ServiceRequest,
)
from dynakv.protocol.ports import StorageEngine


class Node:
    """`name` is the node's cluster name; `actor` the id it mints dots under (see data_path.py)."""

    def __init__(
        self,
        name: str,
        actor: str,
        ring: Ring,
        storage: StorageEngine,
        settings: Settings | None = None,
    ) -> None:
        self.name = name
        self.counters: Counter[str] = Counter()
        self.data = DataPath(
            name, actor, ring, storage, settings=settings or Settings(), counters=self.counters
        )

    def handle(self, event: Event, now_ms: int) -> list[Effect]:
        out: list[Effect] = []
        match event:
            case MessageReceived(src, msg):
                assert src != self.name, "a node never sends to itself"
                self.data.on_message(src, msg, now_ms, out)
            case ClientRequestReceived(ref, request):
                if isinstance(request, GetRequest | PutRequest | DeleteRequest):
                    self.data.on_client_request(data_path.ClientOrigin(ref), request, now_ms, out)
                else:
                    self._on_service_request(ref, request, now_ms, out)
            case Tick():
                self.data.on_tick(now_ms, out)
            case PeerConnected(node):
                self.data.down.discard(node)
            case PeerDisconnected(node):
                self.data.on_peer_down(node, now_ms, out)
        return out

    def _on_service_request(self, ref: int, request: ServiceRequest, now_ms: int, out: list[Effect]) -> None:
        why = f"{type(request).__name__} is not served yet"
        out.append(Reply(ref, Failure(FailureKind.BAD_REQUEST, why)))
