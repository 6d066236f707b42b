"""The bucket props peer messages (tags 8 and 9) and get's basic_quorum/notfound_ok on the wire."""

from __future__ import annotations

import msgpack
import pytest

from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.messages import (
    BucketPropsDigest,
    BucketPropsEntry,
    BucketPropsPush,
    ForwardRequest,
    GetRequest,
)
from dynakv.wire import codec

ENTRIES = (
    BucketPropsEntry(b"a", (("allow_mult", False), ("dw", "all"), ("n_val", 2), ("w", 1)), 17, "n1"),
    BucketPropsEntry(b"b", None, 18, "n2"),
)


@pytest.mark.parametrize(
    "msg",
    [
        BucketPropsPush(ENTRIES, reply_wanted=True),
        BucketPropsPush((), reply_wanted=False),
        BucketPropsDigest(b"\x01" * 32),
    ],
)
def test_bucket_props_messages_round_trip(msg: object) -> None:
    data = codec.encode_peer(msg)  # type: ignore[arg-type]
    assert codec.decode_peer(data) == msg
    assert msgpack.unpackb(data)[0] == (8 if isinstance(msg, BucketPropsPush) else 9)


@pytest.mark.parametrize(
    "frame",
    [
        [8, [], "yes"],
        [8, [[b"a", None, 1]], True],
        [8, [[b"a", [["w", 1.5]], 1, "n"]], True],
        [8, [[b"a", [["bogus", 1]], 1, "n"]], True],
        [8, [[b"a", [["w", 1], ["w", 2]], 1, "n"]], True],
        [8, [[b"a", None, -3, "n"]], True],
        [8, "entries", True],
        [8, [], True, 1],
        [9, "digest"],
        [9, b"x" * 65],
        [9],
    ],
)
def test_malformed_bucket_props_messages_are_protocol_errors(frame: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_peer(msgpack.packb(frame, use_bin_type=True))


@pytest.mark.parametrize(
    "request_",
    [
        GetRequest(b"b", b"k", basic_quorum=True, notfound_ok=False),
        GetRequest(b"b", b"k", r=1, basic_quorum=False, timeout_ms=5),
        GetRequest(b"b", b"k", notfound_ok=True),
    ],
)
def test_get_flags_round_trip(request_: GetRequest) -> None:
    assert codec.decode_client_request(codec.encode_client_request(3, request_)) == (3, request_)
    assert codec.decode_peer(codec.encode_peer(ForwardRequest(1, request_))) == ForwardRequest(1, request_)


def test_the_older_five_field_get_still_decodes() -> None:
    frame = msgpack.packb([20, 9, b"b", b"k", "all", None, 100], use_bin_type=True)
    assert codec.decode_client_request(frame) == (9, GetRequest(b"b", b"k", r="all", timeout_ms=100))


@pytest.mark.parametrize("flags", [["yes", None], [None, 1], [None]])
def test_malformed_get_flags_are_protocol_errors(flags: list[object]) -> None:
    frame = msgpack.packb([20, 9, b"b", b"k", None, None, *flags, None], use_bin_type=True)
    with pytest.raises(RemoteProtocolError):
        codec.decode_client_request(frame)
