"""The two listeners: the cluster port (peers' connections, receive only) and the client port.

Cluster port: the connecting peer says Hello first (role "node", our cluster name, our protocol
version, a member's name other than ours); we answer with our Hello, then every frame is a peer
message attributed to the peer the Hello named. Replies to it go over our own outgoing link
(peers.py), never back over this connection.

Client port (the native protocol): the client says Hello first with role "client"; any cluster name
is accepted (a client may not know it yet) and we answer with a Hello carrying ours, so the client
can check. Then each frame is a numbered request (an object request, or a service request: listings,
bucket props, preflists, repair, status); many may be in flight on one connection and
replies go back in whatever order they complete, each carrying its request id. At most
`CLIENT_PENDING_MAX` requests per connection are in flight: past that a request is answered at once
with an "overloaded" failure (a typed result, as the Node does at its own bound). When the client
stops reading and our write buffer fills, we stop reading its requests until it drains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, Protocol

from dynakv.protocol.events import MessageReceived
from dynakv.protocol.messages import Failure, FailureKind, NodeReply, NodeRequest
from dynakv.runtime.framed import FramedProtocol, HelloRejected, Host, make_hello
from dynakv.wire.codec import Hello, decode_client_request, decode_peer, encode_client_reply

log = logging.getLogger(__name__)

# Per client connection. Limits has only the node-wide bound (pending_requests_max); this one stops a
# single connection from taking all of it. 1024 in flight is far past what one client needs to
# saturate a node (issue 3 measured the one-in-flight cap at 10-17k ops/s; a few dozen lift it).
CLIENT_PENDING_MAX: Final = 1024


class InboundPeerProtocol(FramedProtocol):
    def __init__(self, host: Host, on_peer_hello: Callable[[str, str | None], None]) -> None:
        super().__init__(host)
        self.on_peer_hello = on_peer_hello
        self.peer = ""

    def on_hello(self, hello: Hello) -> None:
        host = self.host
        if hello.role != "node":
            raise HelloRejected(f"role {hello.role!r} on the cluster port (clients use the client port)")
        if hello.cluster != host.cluster_name:
            raise HelloRejected(f"cluster {hello.cluster!r}, ours is {host.cluster_name!r}")
        if hello.name == host.name:
            raise HelloRejected(f"{hello.name!r} is our own name")
        # Any node of our cluster is heard: a node joining through us is not a member yet. Membership
        # itself decides what its messages change (gossip merges; data requests name partitions).
        self.peer = hello.name
        self.write([make_hello(host)])
        self.on_peer_hello(hello.name, hello.address)

    def on_frame(self, frame: bytes) -> None:
        self.host.deliver(MessageReceived(self.peer, decode_peer(frame)))


class ClientHost(Host, Protocol):
    def submit(self, conn: ClientProtocol, request_id: int, request: NodeRequest) -> None:
        """Hand a client request to the Node; its reply comes back through `conn.reply`."""
        ...


class ClientProtocol(FramedProtocol):
    def __init__(self, host: ClientHost) -> None:
        super().__init__(host)
        self.client_host = host
        self.pending = 0
        self._replies: list[bytes] = []
        self._dirty = False

    def on_hello(self, hello: Hello) -> None:
        if hello.role != "client":
            raise HelloRejected(f"role {hello.role!r} on the client port (nodes use the cluster port)")
        self.write([make_hello(self.host)])

    def on_frame(self, frame: bytes) -> None:
        request_id, request = decode_client_request(frame)
        if self.pending >= CLIENT_PENDING_MAX:
            self.host.counters["client.overloaded"] += 1
            message = f"{CLIENT_PENDING_MAX} requests in flight on this connection, the limit; retry later"
            self.reply(request_id, Failure(FailureKind.OVERLOADED, message))
            return
        self.pending += 1
        self.client_host.submit(self, request_id, request)

    def reply(self, request_id: int, reply: NodeReply) -> None:
        if self.closed:
            return
        self._replies.append(encode_client_reply(request_id, reply))
        if not self._dirty:
            self._dirty = True
            self.host.mark_dirty(self)

    def flush(self) -> None:
        self._dirty = False
        if self._replies:
            self.write(self._replies)
            self._replies = []

    def pause_writing(self) -> None:
        super().pause_writing()
        # The client is not reading its replies: stop taking requests until it does (what is pending
        # is bounded by CLIENT_PENDING_MAX, so the buffer stays bounded too).
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def on_write_resumed(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
