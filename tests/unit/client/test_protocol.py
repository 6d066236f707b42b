"""The client's sans-IO core: bytes in, bytes and outcomes out, no sockets, no clock.

A tiny in-test "server" encodes hellos and replies with the real wire codec, so these tests check the
client against the protocol as the server speaks it, not against the client's own idea of it.
"""

from __future__ import annotations

import pytest

from dynakv.client.models import (
    BadRequest,
    ConnectionLost,
    DynakvClientError,
    GetResult,
    Overloaded,
    ProtocolError,
    PutResult,
    Sibling,
    SiblingsError,
    StorageFailure,
    Timeout,
    Unavailable,
)
from dynakv.client.protocol import (
    ClientConnection,
    Outcome,
    State,
    delete_request,
    get_request,
    parse_address,
    parse_addresses,
    put_request,
    reply_wait_s,
)
from dynakv.core.objects import Content
from dynakv.protocol.messages import (
    ClientReply,
    ClientRequest,
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    PutReply,
    PutRequest,
)
from dynakv.wire.codec import (
    PROTOCOL_VERSION,
    Hello,
    decode_client_request,
    decode_hello,
    encode_client_reply,
    encode_hello,
)
from dynakv.wire.framing import HEADER, FrameDecoder, encode_frame

MAX = 1 << 20


def frame(payload: bytes) -> bytes:
    return encode_frame(payload, MAX)


def server_hello(version: int = PROTOCOL_VERSION, role: str = "node", cluster: str = "dev") -> bytes:
    return frame(encode_hello(Hello(cluster, version, "node1", role)))


def reply(request_id: int, message: ClientReply) -> bytes:
    return frame(encode_client_reply(request_id, message))


def content(value: bytes, **meta: object) -> Content:
    return Content(value, last_modified_ms=1_700_000_000_000, **meta)  # type: ignore[arg-type]


def get(key: str) -> GetRequest:
    return get_request("b", key, r=None, pr=None, timeout_ms=None)


def open_connection(**options: object) -> ClientConnection:
    conn = ClientConnection(frame_bytes_max=MAX, **options)  # type: ignore[arg-type]
    conn.initiate()
    assert conn.receive_data(server_hello()) == []
    assert conn.state is State.OPEN
    return conn


def only(outcomes: list[tuple[int, Outcome]], request_id: int) -> Outcome:
    assert [rid for rid, _ in outcomes] == [request_id]
    return outcomes[0][1]


# -- the handshake -------------------------------------------------------------------------------------


def test_the_first_bytes_are_a_client_hello_accepting_any_cluster() -> None:
    conn = ClientConnection(name="tester", frame_bytes_max=MAX)
    frames = FrameDecoder(MAX).feed(conn.initiate())
    assert [decode_hello(f) for f in frames] == [Hello("", PROTOCOL_VERSION, "tester", "client")]
    assert conn.state is State.HANDSHAKE


def test_the_server_hello_opens_the_connection() -> None:
    conn = ClientConnection(frame_bytes_max=MAX)
    conn.initiate()
    assert conn.receive_data(server_hello()) == []
    assert conn.state is State.OPEN
    assert conn.server == Hello("dev", PROTOCOL_VERSION, "node1", "node")


def test_requests_may_go_out_before_the_server_hello_and_complete_after_it() -> None:
    conn = ClientConnection(frame_bytes_max=MAX)
    stream = conn.initiate()
    rid, data = conn.send(get("k"))
    stream += data
    sent = FrameDecoder(MAX).feed(stream)
    assert decode_hello(sent[0]).role == "client"
    assert decode_client_request(sent[1]) == (rid, GetRequest(b"b", b"k"))
    outcome = only(conn.receive_data(server_hello() + reply(rid, GetReply(False, (), b"ctx"))), rid)
    assert outcome == GetResult(siblings=[], context=b"ctx", found=False)


@pytest.mark.parametrize(
    ("hello", "words"),
    [
        (server_hello(version=PROTOCOL_VERSION + 1), "protocol version"),
        (server_hello(role="client"), "role"),
        (reply(1, DeleteReply()), "hello"),  # a reply where the hello must be
    ],
)
def test_a_bad_server_hello_fails_the_connection(hello: bytes, words: str) -> None:
    conn = ClientConnection(frame_bytes_max=MAX)
    conn.initiate()
    rid, _ = conn.send(get("k"))
    error = only(conn.receive_data(hello), rid)
    assert isinstance(error, ProtocolError)
    assert words in str(error)
    assert conn.state is State.CLOSED
    assert isinstance(conn.error, ProtocolError)


def test_a_client_that_names_its_cluster_refuses_another() -> None:
    conn = ClientConnection(cluster="prod", frame_bytes_max=MAX)
    conn.initiate()
    conn.receive_data(server_hello(cluster="dev"))
    assert isinstance(conn.error, ProtocolError)
    assert "'dev'" in str(conn.error)


# -- many requests, any order, any split ---------------------------------------------------------------


def test_request_ids_are_distinct_and_the_bytes_carry_the_request() -> None:
    conn = open_connection()
    requests: list[ClientRequest] = [
        get("a"),
        put_request("b", "k", b"v", last_modified_ms=5),
        delete_request("b", "k"),
    ]
    decoder = FrameDecoder(MAX)
    sent = []
    for request in requests:
        _, data = conn.send(request)
        sent += [decode_client_request(f) for f in decoder.feed(data)]
    assert [rid for rid, _ in sent] == [1, 2, 3]
    assert [r for _, r in sent] == requests
    assert conn.pending == 3


def test_many_requests_complete_with_their_own_replies_in_reverse_order() -> None:
    conn = open_connection()
    ids = {conn.send(get(f"k{i}"))[0]: f"v{i}".encode() for i in range(100)}
    stream = b"".join(
        reply(rid, GetReply(True, (content(v),), v + b"-ctx")) for rid, v in reversed(ids.items())
    )
    outcomes = conn.receive_data(stream)
    assert [rid for rid, _ in outcomes] == sorted(ids, reverse=True)
    for rid, outcome in outcomes:
        assert isinstance(outcome, GetResult)
        assert outcome.value == ids[rid]
        assert outcome.context == ids[rid] + b"-ctx"
    assert conn.pending == 0


def replies_for_split_test(conn: ClientConnection) -> tuple[bytes, dict[int, type]]:
    g, _ = conn.send(get("k"))
    p, _ = conn.send(put_request("b", "k", b"v", last_modified_ms=1, return_body=True))
    d, _ = conn.send(delete_request("b", "k"))
    siblings = (content(b"one", content_type="text/plain", charset="utf-8"), content(b"\xff\x00"))
    stream = (
        reply(p, PutReply(b"\x01" * 40, siblings))
        + reply(d, DeleteReply())
        + reply(g, GetReply(True, siblings, b"\x02" * 40))
    )
    return stream, {p: PutResult, d: type(None), g: GetResult}


def test_replies_split_at_every_byte_give_the_same_outcomes() -> None:
    whole = open_connection()
    stream, kinds = replies_for_split_test(whole)
    expected = whole.receive_data(stream)
    assert {rid: type(o) for rid, o in expected} == kinds
    for cut in range(len(stream) + 1):
        conn = open_connection()
        replies_for_split_test(conn)
        assert conn.receive_data(stream[:cut]) + conn.receive_data(stream[cut:]) == expected, cut


def test_replies_fed_one_byte_at_a_time_give_the_same_outcomes() -> None:
    whole = open_connection()
    stream, _ = replies_for_split_test(whole)
    expected = whole.receive_data(stream)
    conn = open_connection()
    replies_for_split_test(conn)
    got: list[tuple[int, Outcome]] = []
    for i in range(len(stream)):
        got += conn.receive_data(stream[i : i + 1])
    assert got == expected


def test_results_carry_every_field_of_the_siblings() -> None:
    conn = open_connection()
    rid, _ = conn.send(get("k"))
    stored = content(
        b"hi",
        content_type="text/plain",
        charset="utf-8",
        content_encoding="gzip",
        usermeta=(("a", "1"),),
        links=(("b", "k2", "tag"),),
        indexes=(("idx_bin", "x"),),
    )
    result = only(conn.receive_data(reply(rid, GetReply(True, (stored,), b"c"))), rid)
    assert result == GetResult(
        siblings=[
            Sibling(
                b"hi",
                "text/plain",
                "utf-8",
                "gzip",
                {"a": "1"},
                (("b", "k2", "tag"),),
                (("idx_bin", "x"),),
                1_700_000_000_000,
            )
        ],
        context=b"c",
        found=True,
    )


def test_tombstones_beside_live_siblings_are_kept_apart_from_them() -> None:
    conn = open_connection()
    rid, _ = conn.send(get("k"))
    tombstone = Content.tombstone(1_700_000_000_001)
    live = content(b"after the delete", content_type="text/plain")
    result = only(conn.receive_data(reply(rid, GetReply(True, (tombstone, live), b"c"))), rid)
    assert isinstance(result, GetResult)
    assert [s.value for s in result.siblings] == [b"after the delete"]
    assert result.value == b"after the delete"  # one live value: no sibling to resolve
    assert [(s.deleted, s.last_modified_ms) for s in result.tombstones] == [(True, 1_700_000_000_001)]
    assert not result.siblings[0].deleted


def test_value_is_none_when_absent_and_refuses_to_pick_among_siblings() -> None:
    assert GetResult([], b"c", False).value is None
    one = Sibling(b"x", "text/plain")
    assert GetResult([one], b"c", True).value == b"x"
    with pytest.raises(SiblingsError) as info:
        _ = GetResult([one, Sibling(b"y", "text/plain")], b"c", True).value
    assert info.value.count == 2


# -- failures ----------------------------------------------------------------------------------------------


def test_each_failure_kind_becomes_its_exception_with_its_fields() -> None:
    conn = open_connection()
    cases: list[tuple[Failure, type[DynakvClientError], dict[str, object]]] = [
        (
            Failure(FailureKind.UNAVAILABLE, "w=2 needed 2 replicas, 1 acknowledged", "w", 2, 1),
            Unavailable,
            {"needed": 2, "acknowledged": 1, "quorum_field": "w"},
        ),
        (
            Failure(FailureKind.TIMEOUT, "r=3 needed 3 replicas, 2 acknowledged", "r", 3, 2),
            Timeout,
            {"needed": 3, "acknowledged": 2, "quorum_field": "r"},
        ),
        (Failure(FailureKind.BAD_REQUEST, "key is 2000 bytes", "key"), BadRequest, {"field": "key"}),
        (Failure(FailureKind.OVERLOADED, "10000 requests in flight"), Overloaded, {}),
        (Failure(FailureKind.STORAGE, "disk full"), StorageFailure, {}),
    ]
    ids = [conn.send(get("k"))[0] for _ in cases]
    outcomes = dict(conn.receive_data(b"".join(reply(rid, c[0]) for rid, c in zip(ids, cases, strict=True))))
    for rid, (failure, kind, fields) in zip(ids, cases, strict=True):
        error = outcomes[rid]
        assert type(error) is kind
        assert str(error) == failure.message
        for name, value in fields.items():
            assert getattr(error, name) == value
    assert conn.state is State.OPEN  # a failed request leaves the connection usable


def test_connection_lost_fails_every_pending_request_with_its_own_exception() -> None:
    conn = open_connection()
    ids = [conn.send(get(f"k{i}"))[0] for i in range(5)]
    done = conn.receive_data(reply(ids[2], GetReply(False, (), b"")))
    assert [rid for rid, _ in done] == [ids[2]]
    outcomes = conn.connection_lost("reset by peer")
    assert sorted(rid for rid, _ in outcomes) == sorted(set(ids) - {ids[2]})
    errors = [o for _, o in outcomes]
    assert all(isinstance(e, ConnectionLost) and "reset by peer" in str(e) for e in errors)
    assert len({id(e) for e in errors}) == len(errors)
    assert conn.state is State.CLOSED
    with pytest.raises(ConnectionLost):
        conn.send(get("k"))
    assert conn.connection_lost() == []


@pytest.mark.parametrize(
    ("garbage", "words"),
    [
        (frame(b"\xc1"), "malformed frame"),  # 0xc1 is never valid msgpack
        (frame(b"\x93\x1e\x01"), "malformed frame"),  # an array announcing more items than it has
        (HEADER.pack(MAX + 1), "frame length"),  # refused from the header, before any body arrives
        (reply(99, DeleteReply()), "never sent"),
        (reply(2, DeleteReply()), "wants a GetReply"),  # request 2 is a get
        (server_hello(), "malformed frame"),  # a second hello is not a reply
    ],
)
def test_a_malformed_server_frame_fails_every_pending_request(garbage: bytes, words: str) -> None:
    conn = open_connection()
    ids = [conn.send(get(f"k{i}"))[0] for i in range(3)]
    good = reply(ids[0], GetReply(False, (), b""))
    assert conn.receive_data(good) == [(ids[0], GetResult([], b"", False))]
    failed = conn.receive_data(garbage)
    assert sorted(rid for rid, _ in failed) == ids[1:]
    for _, error in failed:
        assert isinstance(error, ProtocolError)
        assert words in str(error)
    assert conn.state is State.CLOSED
    assert conn.receive_data(reply(ids[1], GetReply(False, (), b""))) == []  # nothing after the close
    with pytest.raises(ProtocolError):
        conn.send(get("k"))


def test_a_late_reply_to_an_abandoned_request_is_dropped() -> None:
    conn = open_connection()
    first, _ = conn.send(get("a"))
    second, _ = conn.send(get("b"))
    assert conn.abandon(first)
    assert not conn.abandon(first)
    stream = reply(first, GetReply(False, (), b"late")) + reply(second, GetReply(False, (), b"mine"))
    outcome = only(conn.receive_data(stream), second)
    assert isinstance(outcome, GetResult)
    assert outcome.context == b"mine"
    assert conn.state is State.OPEN


# -- building requests ------------------------------------------------------------------------------------


def test_str_arguments_are_utf8_and_a_str_value_is_labelled_utf8() -> None:
    request = put_request("bücket", "kéy", "välue", last_modified_ms=7, w="quorum", dw=0, pw="one")
    assert request == PutRequest(
        "bücket".encode(),
        "kéy".encode(),
        Content("välue".encode(), charset="utf-8", last_modified_ms=7),
        w="quorum",
        dw=0,
        pw="one",
    )
    raw = put_request(b"b", b"k", b"\xff", last_modified_ms=7, content_type="image/png", usermeta={"x": "y"})
    assert raw.content == Content(
        b"\xff", content_type="image/png", usermeta=(("x", "y"),), last_modified_ms=7
    )
    assert delete_request("b", "k", context=b"c", w=2) == DeleteRequest(b"b", b"k", b"c", w=2)


@pytest.mark.parametrize(
    "build",
    [
        lambda: get_request("b", 5, r=None, pr=None, timeout_ms=None),  # type: ignore[arg-type]
        lambda: get_request("b", "k", r=2.0, pr=None, timeout_ms=None),  # type: ignore[arg-type]
        lambda: get_request("b", "k", r=True, pr=None, timeout_ms=None),
        lambda: put_request("b", "k", 5, last_modified_ms=1),  # type: ignore[arg-type]
        lambda: put_request("b", "k", b"v", last_modified_ms=1, context="base64text"),  # type: ignore[arg-type]
        lambda: put_request("b", "k", b"v", last_modified_ms=1, usermeta={"a": 1}),  # type: ignore[dict-item]
        lambda: put_request("b", "k", b"v", last_modified_ms=1, charset=b"utf-8"),  # type: ignore[arg-type]
    ],
)
def test_arguments_of_the_wrong_type_are_refused_before_anything_is_sent(build: object) -> None:
    with pytest.raises(TypeError):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(("field", "kwargs"), [("timeout_ms", {"timeout_ms": 0}), ("r", {"r": 1 << 64})])
def test_values_the_wire_cannot_carry_are_bad_requests_naming_the_field(
    field: str, kwargs: dict[str, int]
) -> None:
    options: dict[str, int | None] = {"r": None, "pr": None, "timeout_ms": None, **kwargs}
    with pytest.raises(BadRequest) as info:
        get_request("b", "k", **options)
    assert info.value.field == field


def test_a_request_too_large_for_a_frame_is_refused_and_not_left_pending() -> None:
    conn = ClientConnection(frame_bytes_max=1024)
    conn.initiate()
    with pytest.raises(BadRequest) as info:
        conn.send(put_request("b", "k", b"x" * 2048, last_modified_ms=1))
    assert info.value.field == "value"
    assert conn.pending == 0
    rid, _ = conn.send(get("k"))
    assert rid == 1  # the refused request used no id


def test_addresses_parse_as_host_and_port() -> None:
    assert parse_address("127.0.0.1:8087") == ("127.0.0.1", 8087)
    assert parse_address("[::1]:8087") == ("::1", 8087)
    assert parse_addresses("localhost:1") == [("localhost", 1)]
    assert parse_addresses(("127.0.0.1", 2)) == [("127.0.0.1", 2)]
    assert parse_addresses(["a:1", ("b", 2)]) == [("a", 1), ("b", 2)]
    for bad in ("nohost", ":80", "h:port", "h:0", "h:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
    with pytest.raises(ValueError):
        parse_addresses([])


def test_the_client_waits_past_the_server_deadline_only_as_a_safety_net() -> None:
    assert reply_wait_s(None, 10.0, 1.0) == 10.0
    assert reply_wait_s(2500, 10.0, 1.0) == 3.5
