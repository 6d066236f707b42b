"""Service requests and replies on client connections: round trips, and malformed frames refused."""

from __future__ import annotations

from typing import Any

import pytest

from dynakv.core import codec as core_codec
from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.admin_messages import (
    MemberStatus,
    RepairRequest,
    RepairStatus,
    RepairStatusRequest,
    StatusReply,
    StatusRequest,
)
from dynakv.protocol.messages import (
    BucketPropsReply,
    Failure,
    FailureKind,
    GetBucketProps,
    GetRequest,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    NodeReply,
    NodeRequest,
    PreflistEntry,
    PreflistReply,
    PreflistRequest,
    ResetBucketProps,
    SetBucketProps,
)
from dynakv.wire.codec import (
    decode_client_reply,
    decode_client_request,
    encode_client_reply,
    encode_client_request,
)

REQUESTS: list[NodeRequest] = [
    ListKeysRequest(b"b"),
    ListKeysRequest(b"", timeout_ms=5),
    ListBucketsRequest(),
    ListBucketsRequest(timeout_ms=7),
    GetBucketProps(b"b"),
    SetBucketProps(b"b", {"n_val": 5, "allow_mult": False, "w": "quorum", "precommit": []}),
    SetBucketProps(b"b", {"chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"}}),
    ResetBucketProps(b"b"),
    PreflistRequest(b"b", b"k"),
    RepairRequest(None),
    RepairRequest(12),
    RepairStatusRequest(),
    StatusRequest(),
    GetRequest(b"b", b"k"),  # object requests still go through
]

REPLIES: list[NodeReply] = [
    ListReply((b"a", b"b")),
    ListReply(()),
    BucketPropsReply({"name": "b", "n_val": 3, "allow_mult": True, "precommit": [], "x": None}),
    PreflistReply((PreflistEntry(3, "n1", True), PreflistEntry(4, "n2", False))),
    RepairStatus(8, 3, 17, 1, False),
    RepairStatus(8, 8, 0, 0, True),
    StatusReply("n1", (MemberStatus("n1", True, 22), MemberStatus("n2", False, 21)), 4, 1, 64, 3, 0, 2),
    Failure(FailureKind.BAD_REQUEST, "partition: 99 is not in [0, 64)", "partition"),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_requests_round_trip(request_: NodeRequest) -> None:
    assert decode_client_request(encode_client_request(41, request_)) == (41, request_)


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_replies_round_trip(reply: NodeReply) -> None:
    assert decode_client_reply(encode_client_reply(9, reply)) == (9, reply)


MALFORMED_REQUESTS: list[list[Any]] = [
    [40, 1],  # list keys without fields
    [40, 1, "text", None],  # bucket not bytes
    [40, 1, b"b", -1],  # negative timeout
    [43, 1, b"b", [1, 2]],  # props not a map
    [43, 1, b"b", {"n_val": None}],  # null prop value
    [43, 1, b"b", {"n_val": 1.5}],  # a float
    [43, 1, b"b", {"n_val": b"bytes"}],  # bytes
    [43, 1, b"b", {1: 2}],  # a non-str name
    [43, 1, b"b", {"deep": [[[[[[[[[[1]]]]]]]]]]}],  # nested past the bound
    [46, 1, -3],  # negative partition
    [46, 1, "3"],  # partition not an int
    [47, 1, None],  # repair status takes no field
    [48, 1, 0],  # status takes no field
    [49, 1],  # a tag in no table
]


@pytest.mark.parametrize("frame", MALFORMED_REQUESTS, ids=repr)
def test_malformed_requests_are_protocol_errors(frame: list[Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_client_request(core_codec.pack(frame))


MALFORMED_REPLIES: list[list[Any]] = [
    [50, 1, ["a"]],  # names not bytes
    [51, 1, {"n": 1.0}],
    [52, 1, [[1, "n1"]]],  # entry too short
    [52, 1, [[1, "", True]]],  # empty node name
    [53, 1, 8, 9, 0, 0, False],  # done above total
    [53, 1, 8, 3, 0, 0],  # a field short
    [54, 1, "n1", [["n1", True]], 0, 0, 64, 3, 0, 0],  # member too short
    [54, 1, "n1", [], 0, 0, 64, 3, 0],  # a count short (transfers_active)
    [54, 1, "n1", [], -1, 0, 64, 3, 0, 0],  # negative hints
    [54, 1, "n1", [], 0, 0, 64, 3, 0, -1],  # negative transfers_active
]


@pytest.mark.parametrize("frame", MALFORMED_REPLIES, ids=repr)
def test_malformed_replies_are_protocol_errors(frame: list[Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_client_reply(core_codec.pack(frame))


def test_a_service_request_tag_is_not_a_reply_and_the_reverse() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_client_reply(encode_client_request(1, StatusRequest()))
    with pytest.raises(RemoteProtocolError):
        decode_client_request(encode_client_reply(1, RepairStatus(1, 1, 0, 0, True)))
