"""Gossip peer messages <-> msgpack field lists (tags 26 and 27; wire/codec.py will frame them).

A digest is `[26, digest]` (16 bytes), a state `[27, state, reply]` where `state` is the canonical
encoding of `cluster_state.ClusterState` (bytes, decoded and checked here, so a malformed state never
reaches the gossip machine). Decoding trusts nothing and raises DecodeError only; `codec.decode_peer`
turns that into RemoteProtocolError.

The issue suggested tags 30 and 31, but peer and client messages share one numbering (wire/codec.py)
and 30, 31 are GetReply and PutReply; 26 and 27 are free.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core import cluster_state as cs
from dynakv.core.codec import want_bool, want_bytes
from dynakv.core.errors import DecodeError
from dynakv.protocol.gossip_messages import GossipDigest, GossipMessage, GossipState

GOSSIP_DIGEST: Final = 26
GOSSIP_STATE: Final = 27
GOSSIP_TAGS: Final = frozenset({GOSSIP_DIGEST, GOSSIP_STATE})


def gossip_fields(msg: GossipMessage) -> list[Any]:
    """The frame of one gossip message: `[tag, field, ...]`."""
    match msg:
        case GossipDigest(digest):
            return [GOSSIP_DIGEST, digest]
        case GossipState(state, reply):
            return [GOSSIP_STATE, cs.encode(state), reply]
    raise AssertionError(f"not a gossip message: {msg!r}")


def decode_gossip(tag: int, f: list[Any]) -> GossipMessage:
    """The gossip message of a frame's tag and fields; DecodeError for anything malformed."""
    if tag == GOSSIP_DIGEST and len(f) == 1:
        digest = want_bytes(f[0], "digest")
        if len(digest) != cs.DIGEST_BYTES:
            raise DecodeError(f"digest: expected {cs.DIGEST_BYTES} bytes, got {len(digest)}")
        return GossipDigest(digest)
    if tag == GOSSIP_STATE and len(f) == 2:
        return GossipState(cs.decode(want_bytes(f[0], "state")), want_bool(f[1], "reply"))
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a gossip message")
