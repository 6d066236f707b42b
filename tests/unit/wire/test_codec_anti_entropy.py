"""The anti-entropy peer messages (tags 16-19 and 23) survive encoding, their encoded size stays under
the protocol layer's estimate, and malformed frames are RemoteProtocolErrors."""

from __future__ import annotations

import msgpack
import pytest

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.ae_peer import wire_size
from dynakv.protocol.messages import (
    AeKeysReply,
    AeKeysRequest,
    AeNodesReply,
    AeNodesRequest,
    AeObjects,
    PeerMessage,
)
from dynakv.wire import codec

H32 = bytes(range(32))
H16 = bytes(range(16))
BIG = (1 << 63) - 1

MESSAGES: list[AeNodesRequest | AeNodesReply | AeKeysRequest | AeKeysReply | AeObjects] = [
    AeNodesRequest(1, 3, 1024, 32, 0, (0,)),
    AeNodesRequest(BIG, BIG, 1, 2, 2, ()),
    AeNodesReply(2, (H32, H32)),
    AeNodesReply(3, None),
    AeNodesReply(4, ()),
    AeKeysRequest(5, 3, 1024, bytes(128), None, None),
    AeKeysRequest(6, 3, 8, b"\x81", (b"b", b"k"), (b"", b"")),
    AeKeysReply(7, ((b"b", b"k", H16), (b"", b"", H16)), (b"b", b"k")),
    AeKeysReply(8, (), None),
    AeObjects(9, 3, ((b"b", b"k", b"obj" * 100),), ((b"b", b"k"), (b"", b"x"))),
    AeObjects(10, 3, (), ()),
    AeObjects(11, 3, ((b"b", b"k", b""),), None, done=False),
    AeObjects(12, 0, (), None, done=True),
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_anti_entropy_messages_round_trip(msg: PeerMessage) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg


@pytest.mark.parametrize("msg", MESSAGES)
def test_the_size_estimate_bounds_the_encoding(msg: AeNodesRequest) -> None:
    assert len(codec.encode_peer(msg)) <= wire_size(msg)


def test_the_tags() -> None:
    tags = [msgpack.unpackb(codec.encode_peer(m))[0] for m in MESSAGES]
    assert sorted(set(tags)) == [16, 17, 18, 19, 23]
    assert msgpack.unpackb(codec.encode_peer(MESSAGES[0])) == [16, 1, 3, 1024, 32, 0, [0]]
    assert msgpack.unpackb(codec.encode_peer(MESSAGES[12])) == [23, 12, 0, [], None, True]


@pytest.mark.parametrize(
    "frame",
    [
        [16, 1, 3, 1024, 32, 0],  # no indexes
        [16, 1, 3, 1000, 32, 0, [0]],  # segments not a power of two
        [16, 1, 3, 1024, 1, 0, [0]],  # branching below 2
        [16, 1, 3, 1024, 32, 17, [0]],  # depth beyond any tree
        [16, 1, 3, 1024, 32, 0, [-1]],
        [16, 1, 3, 1024, 32, 0, [1 << 16]],
        [16, 1, 3, 1024, 32, 0, list(range((1 << 16) + 1))],  # more nodes than a level has
        [16, -1, 3, 1024, 32, 0, [0]],
        [16, 1, True, 1024, 32, 0, [0]],
        [17, 1, [b"short"]],
        [17, 1, [H32, "text"]],
        [17, 1, H32],
        [18, 1, 3, 1024, bytes(127), None, None],  # mask of the wrong length
        [18, 1, 3, 1024, bytes(128), [b"b"], None],
        [18, 1, 3, 1024, bytes(128), None, [b"b", "k"]],
        [18, 1, 3, 1024, "mask", None, None],
        [19, 1, [[b"b", b"k", b"short"]], None],
        [19, 1, [[b"b", b"k"]], None],
        [19, 1, [[b"b", b"k", H16]]],
        [23, 1, 3, [[b"b", b"k", "obj"]], None, True],
        [23, 1, 3, [], [[b"b"]], True],
        [23, 1, 3, [], None, 1],
        [23, 1, 3, [], None],
        [23, 1, 3, {}, None, True],
    ],
)
def test_malformed_anti_entropy_frames_are_refused(frame: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_peer(msgpack.packb(frame))


@pytest.mark.parametrize("msg", MESSAGES)
def test_every_truncation_of_an_anti_entropy_frame_is_refused(msg: PeerMessage) -> None:
    data = codec.encode_peer(msg)
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode_peer(data[:cut])
