"""The gossip peer messages (protocol/gossip.py sends and answers them; wire/gossip_codec.py encodes them).

A round is at most three messages: the initiator sends its 16-byte digest; a peer whose digest
differs answers with its whole state (`reply=True`: "send me what I lack"); the initiator merges and,
if the peer lacked something, pushes the merged state back (`reply=False`, which ends the exchange).
In a converged cluster a round costs one small message.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynakv.core.cluster_state import ClusterState


@dataclass(frozen=True, slots=True)
class GossipDigest:
    digest: bytes


@dataclass(frozen=True, slots=True)
class GossipState:
    state: ClusterState
    reply: bool


GossipMessage = GossipDigest | GossipState
