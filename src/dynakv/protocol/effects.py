"""Effects: what `Node.handle` asks its driver to do, in order."""

from __future__ import annotations

from dataclasses import dataclass

from dynakv.protocol.messages import NodeReply, PeerMessage


@dataclass(frozen=True, slots=True)
class Send:
    dst: str
    msg: PeerMessage


@dataclass(frozen=True, slots=True)
class Reply:
    ref: int
    reply: NodeReply


Effect = Send | Reply
