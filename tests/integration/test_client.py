"""The client over real sockets: against a stub server for what a healthy cluster cannot show (a server
that never answers, a connection that drops, a node that is down at connect), then against a real
3-node cluster for the data path itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dynakv.client import (
    AsyncClient,
    BadRequest,
    Client,
    ConnectionFailed,
    ConnectionLost,
    GetResult,
    SiblingsError,
    Timeout,
)
from dynakv.core.objects import Content
from dynakv.protocol.messages import ClientReply, ClientRequest, GetReply, GetRequest
from dynakv.wire.codec import (
    PROTOCOL_VERSION,
    Hello,
    decode_client_request,
    encode_client_reply,
    encode_hello,
)
from dynakv.wire.framing import FrameDecoder, encode_frame
from tests.integration.conftest import Cluster, launch_dev

MAX = 1 << 24

# -- a stub server speaking the real codec ---------------------------------------------------------------

Behaviour = Callable[[list[tuple[int, ClientRequest]]], list[tuple[int, ClientReply]] | None]
"""Given the requests received so far and not yet answered, the replies to send now (and forget those
requests); None closes the connection."""


def echo(pending: list[tuple[int, ClientRequest]]) -> list[tuple[int, ClientReply]] | None:
    """Answer each get with its key as the value, at once."""
    return [(rid, _value_of(req)) for rid, req in pending]


def silent(pending: list[tuple[int, ClientRequest]]) -> list[tuple[int, ClientReply]] | None:
    return []


def hang_up_after(count: int) -> Behaviour:
    """Close the connection once `count` requests are in flight."""

    def behaviour(pending: list[tuple[int, ClientRequest]]) -> list[tuple[int, ClientReply]] | None:
        return [] if len(pending) < count else None

    return behaviour


def reverse_after(count: int) -> Behaviour:
    """Hold replies until `count` requests are in, then answer all of them, last first."""

    def behaviour(pending: list[tuple[int, ClientRequest]]) -> list[tuple[int, ClientReply]] | None:
        if len(pending) < count:
            return []
        return [(rid, _value_of(req)) for rid, req in reversed(pending)]

    return behaviour


def _value_of(request: ClientRequest) -> ClientReply:
    assert isinstance(request, GetRequest)
    content = Content(request.key, last_modified_ms=1)
    return GetReply(True, (content,), b"ctx:" + request.key)


class StubServer:
    """A loopback server on its own threads: answers the hello, then lets `behaviour` reply."""

    def __init__(self, behaviour: Behaviour, version: int = PROTOCOL_VERSION) -> None:
        self.behaviour = behaviour
        self.version = version
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for conn in self._conns:
            # shutdown, not just close: it wakes the thread blocked in recv and sends the FIN now.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = FrameDecoder(MAX)
        greeted = False
        pending: list[tuple[int, ClientRequest]] = []
        with conn:
            while data := _recv(conn):
                for frame in decoder.feed(data):
                    if not greeted:
                        greeted = True
                        hello = Hello("stub", self.version, "stub", "node")
                        conn.sendall(encode_frame(encode_hello(hello), MAX))
                        continue
                    pending.append(decode_client_request(frame))
                if not pending:
                    continue
                replies = self.behaviour(pending)
                if replies is None:
                    return
                answered = {rid for rid, _ in replies}
                pending = [(rid, req) for rid, req in pending if rid not in answered]
                conn.sendall(b"".join(encode_frame(encode_client_reply(r, m), MAX) for r, m in replies))


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def stubs() -> Iterator[Callable[..., StubServer]]:
    started: list[StubServer] = []

    def start(behaviour: Behaviour, version: int = PROTOCOL_VERSION) -> StubServer:
        server = StubServer(behaviour, version)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def dead_address() -> str:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return f"127.0.0.1:{s.getsockname()[1]}"


# -- stub tests --------------------------------------------------------------------------------------------


def loop_factories() -> list[Callable[[], asyncio.AbstractEventLoop]]:
    factories: list[Callable[[], asyncio.AbstractEventLoop]] = [asyncio.new_event_loop]
    try:
        import uvloop
    except ImportError:
        return factories
    return [*factories, uvloop.new_event_loop]  # its transports are not asyncio.Transport subclasses


@pytest.mark.parametrize("loop_factory", loop_factories())
def test_async_replies_in_reverse_order_reach_their_own_callers(
    stubs: Callable[..., StubServer], loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    server = stubs(reverse_after(50))

    async def main() -> list[GetResult]:
        async with AsyncClient(server.address) as client:
            return await asyncio.gather(*(client.get("b", f"k{i}") for i in range(50)))

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        results = runner.run(main())
    assert [r.value for r in results] == [f"k{i}".encode() for i in range(50)]
    assert server.connections == 1


def test_async_client_side_timeout_when_the_server_never_answers(stubs: Callable[..., StubServer]) -> None:
    server = stubs(silent)

    async def main() -> tuple[Timeout, float]:
        async with AsyncClient(server.address, timeout_margin_s=0.2) as client:
            start = time.monotonic()
            with pytest.raises(Timeout) as info:
                await client.get("b", "k", timeout_ms=100)
            return info.value, time.monotonic() - start

    error, elapsed = asyncio.run(main())
    assert error.needed is None and error.acknowledged is None  # the client gave up, not the server
    assert "no reply" in str(error)
    assert 0.25 <= elapsed < 2.0


def test_async_connection_loss_fails_pending_and_the_next_call_uses_the_next_address(
    stubs: Callable[..., StubServer],
) -> None:
    dropping, healthy = stubs(hang_up_after(5)), stubs(echo)

    async def main() -> None:
        async with AsyncClient([dead_address(), dropping.address, healthy.address]) as client:
            assert client.address == dropping.address  # the dead one was skipped
            outcomes = await asyncio.gather(*(client.get("b", "k") for _ in range(5)), return_exceptions=True)
            assert all(isinstance(o, ConnectionLost) for o in outcomes), outcomes
            assert (await client.get("b", "again")).value == b"again"
            assert client.address == healthy.address

    asyncio.run(main())


def test_async_connect_fails_when_no_address_answers(stubs: Callable[..., StubServer]) -> None:
    wrong_version = stubs(echo, version=PROTOCOL_VERSION + 1)

    async def main() -> None:
        with pytest.raises(ConnectionFailed) as info:
            await AsyncClient.connect([dead_address(), wrong_version.address], connect_timeout_s=2.0)
        assert "protocol version" in str(info.value)

    asyncio.run(main())


def test_sync_client_timeout_then_failover(stubs: Callable[..., StubServer]) -> None:
    silent_server, healthy = stubs(silent), stubs(echo)
    with Client([silent_server.address, healthy.address], timeout_margin_s=0.2) as client:
        with pytest.raises(Timeout):
            client.get("b", "k", timeout_ms=100)
        assert client.address == silent_server.address  # a timeout keeps the connection
        silent_server.close()  # now the connection drops
        with pytest.raises(ConnectionLost):
            client.get("b", "k", timeout_ms=100)
        assert client.get("b", "k2").value == b"k2"
        assert client.address == healthy.address


# -- against a real cluster -------------------------------------------------------------------------------
# One cluster for the module: every test below uses its own keys, so they cannot see each other's data,
# and starting three processes once keeps the file fast.


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = launch_dev(tmp_path_factory.mktemp("client") / "cluster", 3, "--storage", "sqlite")
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture(scope="module")
def addresses(cluster: Cluster) -> list[str]:
    return [cluster.client(name) for name in cluster.names]


def test_sync_put_get_delete_through_every_node(addresses: list[str]) -> None:
    with Client(addresses[0]) as writer:
        put = writer.put("sync", "k1", "hé", content_type="text/plain", usermeta={"who": "test"}, w=2)
        assert put.context and put.siblings == []
    for address in addresses:
        with Client(address) as reader:
            got = reader.get("sync", "k1", r=2)
            assert got.found and got.value == "hé".encode()
            sibling = got.sibling
            assert sibling is not None
            assert (sibling.content_type, sibling.charset, sibling.usermeta) == (
                "text/plain",
                "utf-8",
                {"who": "test"},
            )
            assert sibling.text() == "hé"
            assert abs(sibling.last_modified_ms - time.time() * 1000) < 60_000
    with Client(addresses) as client:
        client.delete("sync", "k1", w="all")
        gone = client.get("sync", "k1", r="all")
        assert not gone.found and gone.siblings == [] and gone.value is None


def test_async_put_get_delete(addresses: list[str]) -> None:
    async def main() -> None:
        async with AsyncClient(addresses) as client:
            put = await client.put(b"async", b"k\x00", b"\x00\xff", return_body=True)
            assert [s.value for s in put.siblings] == [b"\x00\xff"]
            got = await client.get(b"async", b"k\x00")
            assert got.value == b"\x00\xff" and got.context
            await client.delete(b"async", b"k\x00", context=got.context)
            assert not (await client.get(b"async", b"k\x00")).found
            await client.put(b"async", b"k\x00", b"again")
            await client.delete(b"async", b"k\x00")  # no context: the server deletes what it holds
            assert not (await client.get(b"async", b"k\x00", r="all")).found

    asyncio.run(main())


def test_200_concurrent_requests_on_one_connection(addresses: list[str]) -> None:
    keys = [f"key-{i}" for i in range(200)]

    async def main() -> list[GetResult]:
        async with AsyncClient(addresses[1]) as client:
            connection = client._connection
            await asyncio.gather(*(client.put("many", k, f"value of {k}") for k in keys))
            results = await asyncio.gather(*(client.get("many", k) for k in keys))
            assert client._connection is connection  # every request went over the one connection
            return results

    start = time.monotonic()
    results = asyncio.run(main())
    assert [r.value for r in results] == [f"value of {k}".encode() for k in keys]
    assert time.monotonic() - start < 20


def test_concurrent_puts_with_one_context_leave_siblings_and_a_merge_resolves_them(
    addresses: list[str],
) -> None:
    with Client(addresses[0]) as alice, Client(addresses[2]) as bob:
        base = alice.put("sib", "doc", "v0", w="all").context
        alice.put("sib", "doc", "from alice", context=base, w="all")
        bob.put("sib", "doc", "from bob", context=base, w="all")
        got = bob.get("sib", "doc", r="all")
        assert sorted(s.value for s in got.siblings) == [b"from alice", b"from bob"]
        with pytest.raises(SiblingsError):
            _ = got.value
        alice.put("sib", "doc", "merged", context=got.context, w="all")
        assert alice.get("sib", "doc", r="all").value == b"merged"
        assert bob.get("sib", "doc", r="all").value == b"merged"


def test_the_server_s_refusals_are_typed_and_leave_the_connection_usable(addresses: list[str]) -> None:
    with Client(addresses[0]) as client:
        with pytest.raises(BadRequest) as too_many:
            client.get("err", "k", r=4)
        assert too_many.value.field == "r"
        assert "n_val" in str(too_many.value)
        with pytest.raises(BadRequest) as too_long:
            client.put("err", "k" * 2000, b"v")
        assert too_long.value.field == "key"
        with pytest.raises(BadRequest) as unknown:
            client.put("err", "k", b"v", w="most")
        assert unknown.value.field == "w"
        assert not client.get("err", "k").found  # same connection, still good
