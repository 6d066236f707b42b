"""Cluster admin requests, replies and the commit forward round-trip through the codec; bad frames fail."""

from __future__ import annotations

import pytest

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitForward,
    ClusterCommitForwardReply,
    ClusterCommitRequest,
    ClusterPlanReply,
    ClusterPlanRequest,
    ClusterStageRequest,
    ClusterTransfersReply,
    ClusterTransfersRequest,
    StageKind,
    TransferInfo,
)
from dynakv.protocol.messages import NodeReply, NodeRequest, PeerMessage
from dynakv.wire import codec

PLAN = ClusterPlanReply("n1", 3, ("join n4", "partition 1: n1 -> n4"))

REQUESTS: list[NodeRequest] = [
    ClusterStageRequest(StageKind.LEAVE, "n2"),
    ClusterStageRequest(StageKind.REMOVE, "n3"),
    ClusterStageRequest(StageKind.CLEAR),
    ClusterPlanRequest(),
    ClusterCommitRequest(),
    ClusterTransfersRequest(),
]
REPLIES: list[NodeReply] = [
    PLAN,
    ClusterTransfersReply(4, (TransferInfo(1, "n1", "n4", False), TransferInfo(9, "n2", "n4", True))),
    ClusterTransfersReply(1, ()),
    ClusterTransfersReply(2, (TransferInfo(0, "n1", "n2", False),), owners=("n1", "n1", "n2", "n1")),
]
PEER: list[PeerMessage] = [
    ClusterCommitForward(7),
    ClusterCommitForwardReply(7, PLAN),
    ClusterCommitForwardReply(8, None, "bad_request", "nothing staged"),
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_requests_round_trip(request_: NodeRequest) -> None:
    assert codec.decode_client_request(codec.encode_client_request(5, request_)) == (5, request_)


@pytest.mark.parametrize("reply", REPLIES)
def test_replies_round_trip(reply: NodeReply) -> None:
    assert codec.decode_client_reply(codec.encode_client_reply(5, reply)) == (5, reply)


@pytest.mark.parametrize("msg", PEER)
def test_peer_messages_round_trip(msg: PeerMessage) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg


@pytest.mark.parametrize(
    "frame",
    [
        [60, 1, "promote", "n1"],  # not a staged change
        [61, 1, "extra"],
        [65, 1, 2, [[1, "a", "b"]], [], []],  # a move without its flag
        [65, 1, 2, [[1, "a", "b", False]]],  # no per-node progress, no owners
        [65, 1, 2, [], [], [["a"], [0, 1]]],  # an owner index past the names
        [65, 1, 2, [], [], [["a", "b"], [0]]],  # more names than partitions
        [65, 1, 2, [], [], [["a"]]],  # owners without their indexes
        [28],
        [29, 1, "not a plan", "", ""],
    ],
)
def test_malformed_frames_are_refused(frame: list[object]) -> None:
    data = codec.codec.pack(frame)
    with pytest.raises(RemoteProtocolError):
        if frame[0] in (28, 29):
            codec.decode_peer(data)
        elif frame[0] == 65:
            codec.decode_client_reply(data)
        else:
            codec.decode_client_request(data)
