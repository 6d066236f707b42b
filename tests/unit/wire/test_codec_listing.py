"""The listing peer messages (tags 10 and 11) survive encoding; malformed ones are RemoteProtocolErrors."""

from __future__ import annotations

import msgpack
import pytest

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.messages import KeyListReply, KeyListRequest, PeerMessage
from dynakv.wire import codec

MESSAGES: list[PeerMessage] = [
    KeyListRequest(1, b"bucket"),
    KeyListRequest(2, None),
    KeyListRequest(3, b""),
    KeyListReply(4, (), True, True),
    KeyListReply(5, (b"a", b"b\x00", b"}"), False, True, seq=7),
    KeyListReply(6, (), True, False, seq=2),
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_listing_messages_round_trip(msg: PeerMessage) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg


def test_the_tags_are_10_and_11() -> None:
    assert msgpack.unpackb(codec.encode_peer(MESSAGES[0])) == [10, 1, b"bucket"]
    assert msgpack.unpackb(codec.encode_peer(MESSAGES[4])) == [11, 5, [b"a", b"b\x00", b"}"], False, True, 7]


@pytest.mark.parametrize(
    "frame",
    [
        [10, 1],  # no bucket field
        [10, 1, b"b", b"extra"],
        [10, 1, "text bucket"],
        [10, -1, b"b"],
        [10, True, b"b"],
        [11, 1, [b"a"], True],  # no seq
        [11, 1, [b"a"], True, True, 0, 0],
        [11, 1, b"not a list", True, True, 0],
        [11, 1, [b"a", "text"], True, True, 0],
        [11, 1, [b"a", None], True, True, 0],
        [11, 1, [], 1, True, 0],
        [11, 1, [], True, None, 0],
        [11, 1, [], True, True, -1],
        [11, 1, [], True, True, "0"],
    ],
)
def test_malformed_listing_frames_are_refused(frame: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_peer(msgpack.packb(frame))


@pytest.mark.parametrize("msg", MESSAGES)
def test_every_truncation_of_a_listing_frame_is_refused(msg: PeerMessage) -> None:
    data = codec.encode_peer(msg)
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode_peer(data[:cut])


def test_a_listing_frame_is_not_a_client_request() -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_client_request(codec.encode_peer(MESSAGES[0]))
