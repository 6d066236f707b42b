"""The connection logic without sockets: fake transports and a fake host stand in for the loop's.

Covers what the integration tests cannot reach cheaply: the per-connection pending bound, the send
queue bound and the link states (what is queued, dropped and reported to the Node).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from dynakv.protocol.events import Event, PeerConnected, PeerDisconnected
from dynakv.protocol.messages import ClientRequest, Failure, FailureKind, GetRequest, PutReply
from dynakv.runtime import listener
from dynakv.runtime.framed import Flushable, FramedProtocol
from dynakv.runtime.listener import ClientProtocol
from dynakv.runtime.node_state import Address
from dynakv.runtime.peers import CONNECTING, DOWN, UP, PeerLink
from dynakv.wire.codec import (
    PROTOCOL_VERSION,
    Hello,
    decode_client_reply,
    decode_hello,
    encode_client_request,
    encode_hello,
)
from dynakv.wire.framing import FrameDecoder, encode_frame

MAX = 1 << 20


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.aborted = False
        self.reading = True

    def writelines(self, buffers: list[bytes]) -> None:
        for buf in buffers:
            self.written += buf

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str) -> Any:
        return None

    def frames(self) -> list[bytes]:
        return FrameDecoder(MAX).feed(bytes(self.written))


class FakeHost:
    name = "n1"
    cluster_name = "c"
    frame_bytes_max = MAX
    advertised: str | None = "127.0.0.1:7001"

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.events: list[Event] = []
        self.submitted: list[tuple[ClientProtocol, int, ClientRequest]] = []
        self._dirty: list[Flushable] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def mark_dirty(self, writer: Flushable) -> None:
        self._dirty.append(writer)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            writer.flush()

    def opened(self, conn: FramedProtocol) -> None:
        pass

    def closed(self, conn: FramedProtocol) -> None:
        pass

    def submit(self, conn: ClientProtocol, request_id: int, request: ClientRequest) -> None:
        self.submitted.append((conn, request_id, request))


def in_loop(test: Callable[[], None]) -> None:
    async def main() -> None:
        test()

    asyncio.run(main())


def client_hello() -> bytes:
    return encode_frame(encode_hello(Hello("any", PROTOCOL_VERSION, "cli", "client")), MAX)


def request(request_id: int) -> bytes:
    return encode_frame(encode_client_request(request_id, GetRequest(b"b", b"k")), MAX)


def test_client_hello_pipelining_and_the_pending_bound() -> None:
    def body() -> None:
        host, transport = FakeHost(), FakeTransport()
        conn = ClientProtocol(host)
        conn.connection_made(transport)  # type: ignore[arg-type]
        # Hello and requests in one read, as a pipelining client sends them.
        conn.data_received(
            client_hello() + b"".join(request(i) for i in range(1, listener.CLIENT_PENDING_MAX + 3))
        )
        hello = decode_hello(transport.frames()[0])
        assert (hello.cluster, hello.name, hello.role) == ("c", "n1", "node")
        assert len(host.submitted) == listener.CLIENT_PENDING_MAX
        over = [decode_client_reply(f) for f in transport.frames()[1:]]
        assert [rid for rid, _ in over] == [listener.CLIENT_PENDING_MAX + 1, listener.CLIENT_PENDING_MAX + 2]
        assert all(isinstance(r, Failure) and r.kind is FailureKind.OVERLOADED for _, r in over)
        assert host.counters["client.overloaded"] == 2
        # Replies in any order, each with its request id; a reply frees a slot.
        transport.written.clear()
        for rid in (3, 1):
            conn.pending -= 1
            conn.reply(rid, PutReply(b"ctx"))
        host.flush()
        assert [decode_client_reply(f)[0] for f in transport.frames()] == [3, 1]
        conn.data_received(request(9999))
        assert host.submitted[-1][1] == 9999 and not transport.aborted

    in_loop(body)


def test_client_malformed_input_and_wrong_role_close_and_count() -> None:
    def body() -> None:
        host = FakeHost()
        cases = [
            (b"\x00\x00\x00\x03abc", "wire.malformed"),
            (b"\xff\xff\xff\xff", "wire.malformed"),
            (
                encode_frame(encode_hello(Hello("c", PROTOCOL_VERSION, "n2", "node")), MAX),
                "wire.hello_rejected",
            ),
            (client_hello() + encode_frame(b"\x91\x63", MAX), "wire.malformed"),
        ]
        for data, counter in cases:
            transport = FakeTransport()
            conn = ClientProtocol(host)
            conn.connection_made(transport)  # type: ignore[arg-type]
            before = host.counters[counter]
            conn.data_received(data)
            assert transport.aborted and conn.closed
            assert host.counters[counter] == before + 1
            conn.reply(1, PutReply(b""))  # a late reply to a closed connection goes nowhere
        assert host.submitted == []

    in_loop(body)


def test_client_that_stops_reading_is_not_read_from() -> None:
    def body() -> None:
        transport = FakeTransport()
        conn = ClientProtocol(FakeHost())
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.pause_writing()
        assert not transport.reading
        conn.resume_writing()
        assert transport.reading

    in_loop(body)


class FakeConn:
    def __init__(self) -> None:
        self.write_paused = False
        self.closed = False
        self.sent: list[bytes] = []

    def write(self, payloads: Any) -> None:
        self.sent += list(payloads)

    def close(self) -> None:
        self.closed = True


def make_link(host: FakeHost, queue_max: int = 3) -> PeerLink:
    return PeerLink(
        host,  # type: ignore[arg-type]
        "n2",
        Address("127.0.0.1", 1),
        local_host="127.0.0.1",
        queue_max=queue_max,
        rng=random.Random(1),
    )


def test_link_queues_while_connecting_bounded_then_flushes_when_up() -> None:
    def body() -> None:
        host, conn = FakeHost(), FakeConn()
        link = make_link(host)
        assert link.state == CONNECTING
        for i in range(5):
            link.send(b"m%d" % i)
        assert host.counters["peer.dropped_queue_full"] == 2
        host.flush()
        assert conn.sent == []  # nothing goes out before the hello exchange
        link.on_up(conn)  # type: ignore[arg-type]
        assert link.state == UP and host.events == [PeerConnected("n2")]
        assert conn.sent == [b"m0", b"m1", b"m2"]
        conn.write_paused = True  # the transport's buffer is full: wait in the queue
        link.send(b"m5")
        host.flush()
        assert conn.sent[-1] == b"m2"
        conn.write_paused = False
        link.flush()
        assert conn.sent[-1] == b"m5"

    in_loop(body)


def test_link_down_drops_reports_once_and_counts() -> None:
    def body() -> None:
        host, conn = FakeHost(), FakeConn()
        link = make_link(host)
        link.on_up(conn)  # type: ignore[arg-type]
        conn.write_paused = True
        link.send(b"queued")
        link.on_lost(conn)  # type: ignore[arg-type]
        assert link.state == DOWN
        assert host.events == [PeerConnected("n2"), PeerDisconnected("n2")]
        assert host.counters["peer.dropped_down"] == 1  # what was queued is lost with the connection
        link.send(b"late")
        assert host.counters["peer.dropped_down"] == 2
        link._set_down()  # a failed reconnect attempt: no second report
        assert host.events[-1] == PeerDisconnected("n2") and len(host.events) == 2

    in_loop(body)


def test_first_failed_attempt_reports_the_peer_down() -> None:
    def body() -> None:
        host = FakeHost()
        link = make_link(host)
        link._set_down()
        assert host.events == [PeerDisconnected("n2")]

    in_loop(body)

