"""The base of every connection: frames in, the Hello first, frames out in batches.

Hot path: `asyncio.Protocol` callbacks (not streams), so bytes go from the socket to the frame decoder
to the Node in one call, with no task switch per message. Every callback runs on the loop thread, and
the Node is only ever called from such callbacks, so the loop owns the Node and no lock is needed.

Writes are batched: effects executed while handling the frames of one `data_received` (or one tick)
only append payloads to their connection; `Host.flush()` at the end of the callback hands each
connection's payloads to its transport in one `writelines` call. The length prefix is written as its
own small buffer next to the payload, so a payload is never copied to be framed.

A frame or message this side could not have accepted (`RemoteProtocolError`, including an oversized
length prefix, which `FrameDecoder` refuses before buffering the announced bytes) closes that one
connection and counts it; the node goes on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Iterable
from typing import Final, Protocol, cast

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.events import Event
from dynakv.wire.codec import PROTOCOL_VERSION, Hello, decode_hello, encode_hello
from dynakv.wire.framing import HEADER, FrameDecoder

log = logging.getLogger(__name__)

# A connection that has not said Hello by then is dropped: it holds a socket and a decoder buffer.
HELLO_TIMEOUT_S: Final = 10.0


class Flushable(Protocol):
    def flush(self) -> None: ...


class Host(Protocol):
    """What connections need from the node runner."""

    name: str
    cluster_name: str
    frame_bytes_max: int
    counters: Counter[str]
    # This node's cluster address once bound ("host:port"), sent in its Hello to peers.
    advertised: str | None

    def deliver(self, event: Event) -> None:
        """Hand one event to the Node and execute its effects (writes stay batched until flush)."""
        ...

    def mark_dirty(self, writer: Flushable) -> None: ...

    def opened(self, conn: FramedProtocol) -> None:
        """Track a live connection (so that stopping can close it)."""
        ...

    def closed(self, conn: FramedProtocol) -> None: ...

    def flush(self) -> None:
        """Write every batched payload to its transport."""
        ...


class HelloRejected(Exception):
    """A well-formed Hello we refuse (another cluster, another version, an unknown peer)."""


def frame_buffers(payloads: Iterable[bytes], frame_bytes_max: int) -> list[bytes]:
    """Length prefix and payload as separate buffers, for `writelines` (no copy of the payload)."""
    buffers: list[bytes] = []
    for payload in payloads:
        size = len(payload)
        # Our own oversized output is a bug in this node, not the peer's problem: refuse to send it.
        assert 0 < size <= frame_bytes_max, f"frame of {size} bytes is outside 1..{frame_bytes_max}"
        buffers.append(HEADER.pack(size))
        buffers.append(payload)
    return buffers


def make_hello(host: Host) -> bytes:
    return encode_hello(Hello(host.cluster_name, PROTOCOL_VERSION, host.name, "node", host.advertised))


class FramedProtocol(asyncio.Protocol):
    """Decodes frames; the first must be a Hello (`on_hello`), the rest go to `on_frame`."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.decoder = FrameDecoder(host.frame_bytes_max)
        self.transport: asyncio.Transport | None = None
        self.hello: Hello | None = None
        self.closed = False
        self.write_paused = False
        self._hello_timer: asyncio.TimerHandle | None = None

    # -- what subclasses provide ------------------------------------------------------------------------

    def on_hello(self, hello: Hello) -> None:
        """Check the peer's Hello (raise HelloRejected to refuse it) and act on it."""
        raise NotImplementedError

    def on_frame(self, frame: bytes) -> None:
        raise NotImplementedError

    def on_closed(self) -> None:
        """The connection is gone (after connection_lost or our own close)."""

    def on_write_resumed(self) -> None:
        """The transport's buffer drained below its low-water mark."""

    # -- asyncio callbacks --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.host.opened(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Small request/reply frames: never wait for Nagle to coalesce them (batching is ours).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._hello_timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT_S, self._hello_timed_out)

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self.decoder.feed(data):
                if self.closed:
                    break
                if self.hello is None:
                    self._accept_hello(frame)
                else:
                    self.on_frame(frame)
        except RemoteProtocolError as err:
            self.drop("wire.malformed", f"malformed input: {err}")
        except HelloRejected as err:
            self.drop("wire.hello_rejected", f"hello refused: {err}")
        finally:
            self.host.flush()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_hello_timer()
        if not self.closed:
            self.closed = True
            self.host.closed(self)
            self.on_closed()
            self.host.flush()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.on_write_resumed()

    # -- helpers ---------------------------------------------------------------------------------------

    def peer_label(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        name = f" ({self.hello.role} {self.hello.name!r})" if self.hello is not None else ""
        return f"{peer}{name}"

    def write(self, payloads: Iterable[bytes]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines(frame_buffers(payloads, self.host.frame_bytes_max))

    def drop(self, counter: str, why: str) -> None:
        """Close this connection because of what the other side sent; count it; the node goes on."""
        self.host.counters[counter] += 1
        log.warning("closing connection from %s: %s", self.peer_label(), why)
        self.close()

    def close(self) -> None:
        self._cancel_hello_timer()
        if self.transport is not None:
            # abort, not close: what we still had to say to a misbehaving peer does not matter.
            self.transport.abort()
        if not self.closed:
            self.closed = True
            self.host.closed(self)
            self.on_closed()

    def _accept_hello(self, frame: bytes) -> None:
        hello = decode_hello(frame)
        if hello.protocol_version != PROTOCOL_VERSION:
            raise HelloRejected(f"protocol version {hello.protocol_version}, ours is {PROTOCOL_VERSION}")
        self.on_hello(hello)
        self.hello = hello
        self._cancel_hello_timer()

    def _hello_timed_out(self) -> None:
        self._hello_timer = None
        if self.hello is None and not self.closed:
            self.drop("wire.hello_timeout", f"no hello within {HELLO_TIMEOUT_S:g} s")

    def _cancel_hello_timer(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
