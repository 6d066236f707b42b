"""Transfer progress (the peer query of `dynakv cluster transfers` and the per-node part of its reply)
round-trips through the codec; malformed, truncated and random frames fail with RemoteProtocolError only."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.cluster_admin_messages import ClusterTransfersReply, TransferInfo
from dynakv.protocol.messages import NodeReply, PeerMessage
from dynakv.protocol.transfer_progress_messages import (
    NodeAnswer,
    NodeTransfers,
    OutboundProgress,
    TransferProgressReply,
    TransferProgressRequest,
)
from dynakv.wire import codec
from dynakv.wire.ae_codec import AE_TAGS
from dynakv.wire.cluster_admin_codec import COMMIT_FORWARD, COMMIT_FORWARD_REPLY
from dynakv.wire.gossip_codec import GOSSIP_TAGS
from dynakv.wire.liveness_codec import LIVENESS_TAGS
from dynakv.wire.props_codec import PROPS_TAGS
from dynakv.wire.service_codec import SERVICE_REPLY_TAGS, SERVICE_REQUEST_TAGS
from dynakv.wire.transfer_codec import TRANSFER_TAGS
from dynakv.wire.transfer_progress_codec import PROGRESS_REPLY, PROGRESS_REQUEST

RUNNING = OutboundProgress("ownership", "n4", 9, "running", 1234, 3_100_000, 2600)
HINTED = OutboundProgress("hinted", "n2", 3, "paused", 17, 2048, None)

PEER: list[PeerMessage] = [
    TransferProgressRequest(7),
    TransferProgressReply(7, (), ()),
    TransferProgressReply(8, (RUNNING, HINTED), ((1, "n4"), (9, "n5"))),
]
REPLIES: list[NodeReply] = [
    ClusterTransfersReply(
        4,
        (TransferInfo(9, "n1", "n4", False),),
        (
            NodeTransfers("n1", NodeAnswer.ANSWERED, (RUNNING,), ((2, "n4"),)),
            NodeTransfers("n2", NodeAnswer.NO_ANSWER),
            NodeTransfers("n3", NodeAnswer.UNREACHABLE),
        ),
    ),
]


def test_the_tags_are_used_by_no_other_message() -> None:
    """Peer and client messages share one numbering (wire/codec.py): 14 and 15 must be free of both."""
    others = [
        AE_TAGS,
        TRANSFER_TAGS,
        LIVENESS_TAGS,
        PROPS_TAGS,
        GOSSIP_TAGS,
        {COMMIT_FORWARD, COMMIT_FORWARD_REPLY},
        SERVICE_REQUEST_TAGS,
        SERVICE_REPLY_TAGS,
        {v for k, v in vars(codec).items() if k[:1] == "_" and k.isupper() and not k.endswith("_MAX")},
    ]
    mine = {PROGRESS_REQUEST, PROGRESS_REPLY}
    assert all(not mine & set(tags) for tags in others)
    assert [codec.codec.unpack(codec.encode_peer(m))[0] for m in PEER] == [14, 15, 15]


@pytest.mark.parametrize("msg", PEER)
def test_peer_messages_round_trip(msg: PeerMessage) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg


@pytest.mark.parametrize("reply", REPLIES)
def test_replies_round_trip(reply: NodeReply) -> None:
    assert codec.decode_client_reply(codec.encode_client_reply(5, reply)) == (5, reply)


GOOD = ["ownership", "n4", 9, "running", 1, 2, None]


@pytest.mark.parametrize(
    "frame",
    [
        [14],
        [14, -1],
        [14, 1, 2],
        [15, 1, []],  # the duties missing
        [15, 1, [["moving", "n4", 9, "running", 1, 2, 3]], []],  # not a transfer kind
        [15, 1, [["ownership", "n4", 9, "done", 1, 2, 3]], []],  # finished ones are not listed
        [15, 1, [["ownership", "", 9, "running", 1, 2, 3]], []],  # no target
        [15, 1, [["ownership", "n4", 9, "running", -1, 2, 3]], []],
        [15, 1, [["ownership", "n4", 9, "running", 1, 2, "3"]], []],
        [15, 1, [GOOD[:6]], []],
        [15, 1, [GOOD], [[1]]],
        [15, 1, [GOOD], [[1, 2]]],
        [15, 1, [GOOD], "n4"],
    ],
)
def test_malformed_progress_frames_are_refused(frame: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_peer(msgpack.packb(frame))


@pytest.mark.parametrize(
    "nodes",
    [
        [["n1", "asleep", [], []]],  # not an answer
        [["n1", "answered", []]],
        [["", "answered", [], []]],
        [["n1", "answered", [GOOD[:3]], []]],
        "n1",
    ],
)
def test_malformed_nodes_of_a_transfers_reply_are_refused(nodes: object) -> None:
    frame = [65, 1, 2, [[9, "n1", "n4", False]], nodes]
    with pytest.raises(RemoteProtocolError):
        codec.decode_client_reply(msgpack.packb(frame))


@pytest.mark.parametrize("msg", PEER)
def test_every_truncation_of_a_progress_frame_is_refused(msg: PeerMessage) -> None:
    data = codec.encode_peer(msg)
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode_peer(data[:cut])


def test_every_truncation_of_a_transfers_reply_is_refused() -> None:
    data = codec.encode_client_reply(5, REPLIES[0])
    for cut in range(len(data)):
        with pytest.raises(RemoteProtocolError):
            codec.decode_client_reply(data[:cut])


NEAR = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 20)
    | st.sampled_from(["ownership", "hinted", "running", "paused", "answered", "n1", ""]),
    lambda inner: st.lists(inner, max_size=8),
    max_leaves=24,
)


@given(st.sampled_from([14, 15]), st.lists(NEAR, max_size=4))
def test_random_fields_under_the_progress_tags_are_refused_cleanly(tag: int, fields: list[object]) -> None:
    with contextlib.suppress(RemoteProtocolError):
        msg = codec.decode_peer(msgpack.packb([tag, *fields]))
        assert codec.decode_peer(codec.encode_peer(msg)) == msg  # what decodes, encodes back the same


@given(st.binary(max_size=120))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    for decode in (codec.decode_peer, codec.decode_client_reply):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)
