"""The transfer peer messages (tags 12 and 13) survive encoding; malformed ones are RemoteProtocolErrors."""

from __future__ import annotations

import msgpack
import pytest

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.messages import PeerMessage, TransferAck, TransferBatch, TransferEntry, TransferKind
from dynakv.protocol.ports import PARTITION_MAX
from dynakv.wire import codec

ENTRY = TransferEntry(b"bucket", b"key\x00", b"\x93\x01obj")
MESSAGES: list[PeerMessage] = [
    TransferBatch(1, TransferKind.HINTED, 0, 0, (), True),
    TransferBatch(2, TransferKind.OWNERSHIP, PARTITION_MAX, 7, (ENTRY, TransferEntry(b"", b"", b"")), False),
    TransferBatch((1 << 63) - 1, TransferKind.REPAIR, 5, 3, (ENTRY,), True),
    TransferAck(1, 0, True),
    TransferAck(2, 7, False),
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_transfer_messages_round_trip(msg: PeerMessage) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg


def test_the_tags_are_12_and_13() -> None:
    batch = TransferBatch(4, TransferKind.HINTED, 9, 2, (ENTRY,), False)
    assert msgpack.unpackb(codec.encode_peer(batch)) == [
        12,
        4,
        "hinted",
        9,
        2,
        [[b"bucket", b"key\x00", b"\x93\x01obj"]],
        False,
    ]
    assert msgpack.unpackb(codec.encode_peer(TransferAck(4, 2, True))) == [13, 4, 2, True]


@pytest.mark.parametrize(
    "frame",
    [
        [12, 1, "hinted", 0, 0, []],  # no last
        [12, 1, "hinted", 0, 0, [], True, 0],
        [12, 1, "handoff", 0, 0, [], True],  # unknown kind
        [12, 1, b"hinted", 0, 0, [], True],
        [12, -1, "hinted", 0, 0, [], True],
        [12, 1, "hinted", -1, 0, [], True],
        [12, 1, "hinted", 1 << 63, 0, [], True],
        [12, 1, "hinted", 0, True, [], True],
        [12, 1, "hinted", 0, 0, b"entries", True],
        [12, 1, "hinted", 0, 0, [[b"b", b"k"]], True],
        [12, 1, "hinted", 0, 0, [[b"b", b"k", "obj"]], True],
        [12, 1, "hinted", 0, 0, [[b"b", None, b"o"]], True],
        [12, 1, "hinted", 0, 0, [], 1],
        [13, 1, 0],
        [13, 1, 0, True, 0],
        [13, 1, 0, None],
        [13, 1, -1, True],
        [13, "1", 0, True],
    ],
)
def test_malformed_transfer_frames_are_refused(frame: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_peer(msgpack.packb(frame))


@pytest.mark.parametrize("msg", MESSAGES)
def test_every_truncation_of_a_transfer_frame_is_refused(msg: PeerMessage) -> None:
    data = codec.encode_peer(msg)
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode_peer(data[:cut])


def test_a_transfer_frame_is_not_a_client_request() -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_client_request(codec.encode_peer(MESSAGES[1]))
