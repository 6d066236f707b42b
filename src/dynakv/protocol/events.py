"""Events: facts the driver hands to `Node.handle`, each with the time it happened (`now_ms`)."""

from __future__ import annotations

from dataclasses import dataclass

from dynakv.protocol.messages import NodeRequest, PeerMessage


@dataclass(frozen=True, slots=True)
class MessageReceived:
    src: str
    msg: PeerMessage


@dataclass(frozen=True, slots=True)
class ClientRequestReceived:
    """`ref` is the driver's handle for the client connection and request; replies carry it back."""

    ref: int
    request: NodeRequest


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic work: deadlines now; gossip, probes, handoff and anti-entropy in later issues."""


@dataclass(frozen=True, slots=True)
class PeerConnected:
    node: str


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    node: str


Event = MessageReceived | ClientRequestReceived | Tick | PeerConnected | PeerDisconnected
