"""Probe messages and the hint a replica put may carry, on the wire."""

from __future__ import annotations

import pytest

from dynakv.core import codec as core_codec
from dynakv.core.errors import RemoteProtocolError
from dynakv.protocol.liveness import Ping, Pong
from dynakv.protocol.messages import ReplicaPut
from dynakv.wire import codec


@pytest.mark.parametrize(
    "msg",
    [
        Ping(0),
        Pong(2**63 - 1),
        ReplicaPut(1, 2, b"b", b"k", b"obj", True),
        ReplicaPut(1, 2, b"b", b"k", b"obj", False, "n4"),
    ],
)
def test_round_trip(msg: object) -> None:
    assert codec.decode_peer(codec.encode_peer(msg)) == msg  # type: ignore[arg-type]


def test_a_replica_put_without_a_hint_keeps_its_old_frame() -> None:
    frame = core_codec.unpack(codec.encode_peer(ReplicaPut(1, 2, b"b", b"k", b"obj", True)))
    assert isinstance(frame, list) and len(frame) == 7


@pytest.mark.parametrize(
    "frame",
    [
        [24],
        [24, -1],
        [25, "x"],
        [24, 1, 2],
        [3, 1, 2, b"b", b"k", b"obj", True, ""],
        [3, 1, 2, b"b", b"k", b"obj", True, 5],
        [3, 1, 2, b"b", b"k", b"obj", True, "n" * 2000],
    ],
)
def test_malformed_frames_are_refused(frame: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_peer(core_codec.pack(frame))
