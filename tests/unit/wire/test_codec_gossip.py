"""The gossip peer messages (tags 26 and 27) survive encoding; malformed ones are DecodeErrors.

wire/codec.py does not frame them yet (the wiring step adds them to the peer-message union), so these
tests go through `gossip_fields`/`decode_gossip` and msgpack, as `codec.encode_peer`/`decode_peer` will.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from dynakv.core import cluster_state as cs
from dynakv.core import codec as core_codec
from dynakv.core.errors import DecodeError
from dynakv.protocol import claimant
from dynakv.protocol.gossip_messages import GossipDigest, GossipMessage, GossipState
from dynakv.wire.gossip_codec import GOSSIP_DIGEST, GOSSIP_STATE, GOSSIP_TAGS, decode_gossip, gossip_fields

STATE = claimant.commit(cs.stage_join(cs.new_cluster("a", 16, address="h:1"), "b", address="h:2"), 3)
MESSAGES: list[GossipMessage] = [
    GossipDigest(STATE.digest),
    GossipDigest(bytes(16)),
    GossipState(STATE, reply=True),
    GossipState(cs.empty(), reply=False),
]


def encode(msg: GossipMessage) -> bytes:
    data: bytes = msgpack.packb(gossip_fields(msg), use_bin_type=True)
    return data


def decode(data: bytes) -> GossipMessage:
    frame = core_codec.unpack(data)
    if not isinstance(frame, list) or not frame or not isinstance(frame[0], int):
        raise DecodeError("not a frame")
    return decode_gossip(frame[0], frame[1:])


@pytest.mark.parametrize("msg", MESSAGES)
def test_gossip_messages_round_trip(msg: GossipMessage) -> None:
    assert decode(encode(msg)) == msg


def test_the_tags_are_26_and_27_and_clear_of_the_others() -> None:
    assert (GOSSIP_DIGEST, GOSSIP_STATE) == (26, 27)
    assert frozenset({26, 27}) == GOSSIP_TAGS
    assert msgpack.unpackb(encode(GossipDigest(b"d" * 16))) == [26, b"d" * 16]
    assert msgpack.unpackb(encode(GossipState(STATE, True))) == [27, cs.encode(STATE), True]


def _state_bytes() -> bytes:
    return cs.encode(STATE)


@pytest.mark.parametrize(
    "frame",
    [
        [26],
        [26, b"x" * 15],
        [26, b"x" * 17],
        [26, "x" * 16],
        [26, b"x" * 16, True],
        [27, b"", True],
        [27, b"garbage", True],
        [27, msgpack.packb([1, "ring", []]), True],
        [27, "state", True],
        [27, None, False],
        [28, b"x" * 16],
    ],
)
def test_malformed_gossip_frames_are_refused(frame: list[Any]) -> None:
    with pytest.raises(DecodeError):
        decode(msgpack.packb(frame, use_bin_type=True))


def test_a_state_frame_needs_a_boolean_reply() -> None:
    for reply in (1, None, "yes"):
        with pytest.raises(DecodeError):
            decode(msgpack.packb([27, _state_bytes(), reply], use_bin_type=True))


def test_a_state_breaking_the_invariants_is_refused() -> None:
    payload = core_codec.decode(_state_bytes(), cs.STATE_TAG)
    payload[3] = [[0, "nobody", "b", 1, False]]  # a move whose old owner does not own the partition
    with pytest.raises(DecodeError):
        decode(msgpack.packb([27, core_codec.encode(cs.STATE_TAG, payload), True], use_bin_type=True))


@pytest.mark.parametrize("msg", MESSAGES)
def test_every_truncation_of_a_gossip_frame_is_refused(msg: GossipMessage) -> None:
    data = encode(msg)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])
