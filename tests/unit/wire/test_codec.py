"""Every message survives encoding; every malformed frame is a RemoteProtocolError and nothing else."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dynakv.core.errors import RemoteProtocolError
from dynakv.core.objects import Content
from dynakv.protocol.messages import (
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    ForwardReply,
    ForwardRequest,
    GetReply,
    GetRequest,
    PutReply,
    PutRequest,
    ReadRepair,
    ReplicaGet,
    ReplicaGetReply,
    ReplicaPut,
    ReplicaPutAck,
)
from dynakv.wire import codec

CONTENT = Content(
    b"v",
    content_type="text/plain",
    charset="utf-8",
    usermeta=(("a", "b"),),
    links=(("b", "k", "t"),),
    indexes=(("i_bin", "x"),),
    last_modified_ms=5,
)
REQUESTS = [
    GetRequest(b"b", b"k"),
    GetRequest(b"b", b"k", r="quorum", pr=1, timeout_ms=100),
    PutRequest(b"b", b"k", CONTENT, b"ctx", w=2, dw="all", pw=0, return_body=True, timeout_ms=9),
    DeleteRequest(b"b", b"k", b"ctx", w="one"),
]
REPLIES = [
    GetReply(True, (CONTENT, CONTENT), b"ctx"),
    GetReply(False, (), b""),
    PutReply(b"ctx", (CONTENT,)),
    DeleteReply(),
    Failure(FailureKind.UNAVAILABLE, "w=2 needed 2", field="w", needed=2, acknowledged=1),
    Failure(FailureKind.BAD_REQUEST, "key too long", field="key"),
]
PEER = [
    ReplicaGet(1, 7, b"b", b"k"),
    ReplicaGetReply(1, b"obj"),
    ReplicaGetReply(2, None, ok=False),
    ReplicaPut(3, 7, b"b", b"k", b"obj", True),
    ReplicaPutAck(3, True, False),
    ReadRepair(7, b"b", b"k", b"obj"),
    *[ForwardRequest(9, r) for r in REQUESTS],
    *[ForwardReply(9, r) for r in REPLIES],
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_client_requests_round_trip(request_: object) -> None:
    data = codec.encode_client_request(77, request_)  # type: ignore[arg-type]
    assert codec.decode_client_request(data) == (77, request_)


@pytest.mark.parametrize("reply", REPLIES)
def test_client_replies_round_trip(reply: object) -> None:
    assert codec.decode_client_reply(codec.encode_client_reply(5, reply)) == (5, reply)  # type: ignore[arg-type]


@pytest.mark.parametrize("msg", PEER)
def test_peer_messages_round_trip(msg: object) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg  # type: ignore[arg-type]


def test_hello_round_trip_and_refusals() -> None:
    hello = codec.Hello("dynakv", codec.PROTOCOL_VERSION, "n1", "node")
    assert codec.decode_hello(codec.encode_hello(hello)) == hello
    with pytest.raises(RemoteProtocolError, match="role"):
        codec.decode_hello(msgpack.packb([0, "c", 1, "n", "admin"]))
    with pytest.raises(RemoteProtocolError, match="hello"):
        codec.decode_hello(codec.encode_peer(PEER[0]))


def test_a_peer_frame_on_a_client_connection_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_client_request(codec.encode_peer(PEER[0]))


DECODERS = (codec.decode_peer, codec.decode_client_request, codec.decode_client_reply, codec.decode_hello)
ANY = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.binary(max_size=8) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=10),
    max_leaves=20,
)


@given(st.binary(max_size=80))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


@given(ANY)
@example([0, 0])  # a request id and no fields: once an IndexError
@example([21, 1, None])
def test_random_structures_are_refused_cleanly(value: object) -> None:
    data = msgpack.packb(value)
    for decode in DECODERS:
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


@pytest.mark.parametrize("msg", PEER)
def test_every_truncation_of_a_frame_is_refused(msg: object) -> None:
    data = codec.encode_peer(msg)  # type: ignore[arg-type]
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode_peer(data[:cut])
