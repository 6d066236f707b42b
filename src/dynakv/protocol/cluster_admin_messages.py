"""Cluster admin service requests (`dynakv cluster ...`) and their replies, and the peer messages that
carry a commit to the claimant.

Staged, as Riak does it: `leave NAME` and `remove NAME` (and `clear`) stage a change on whichever node
is asked, and gossip carries it; `plan` shows what the staged changes would do, computed from the asked
node's state; `commit` carries them out on the claimant (a node that is not the claimant forwards it,
`ClusterCommitForward`, and relays the answer). `transfers` lists the pending ownership moves with
the progress of every node's transfers (transfer_progress_messages.py: the asked node asks its peers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dynakv.protocol.transfer_progress_messages import (
    NodeTransfers,
    TransferProgressReply,
    TransferProgressRequest,
)


class StageKind(enum.Enum):
    LEAVE = "leave"
    REMOVE = "remove"
    CLEAR = "clear"  # drop every staged change (name ignored)


@dataclass(frozen=True, slots=True)
class ClusterStageRequest:
    kind: StageKind
    name: str = ""


@dataclass(frozen=True, slots=True)
class ClusterPlanRequest:
    pass


@dataclass(frozen=True, slots=True)
class ClusterCommitRequest:
    pass


@dataclass(frozen=True, slots=True)
class ClusterTransfersRequest:
    pass


@dataclass(frozen=True, slots=True)
class ClusterPlanReply:
    """The plan's lines (claimant.Plan.lines(), or what was staged), the claimant, the ring version."""

    claimant: str
    ring_version: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransferInfo:
    """One pending ownership move: `partition` from `old_owner` to `new_owner`; `complete` once the new
    owner holds all of it (the ring flips at the claimant's next round)."""

    partition: int
    old_owner: str
    new_owner: str
    complete: bool


@dataclass(frozen=True, slots=True)
class ClusterTransfersReply:
    """The ring the asked node holds: its version, the pending moves and the owner of each partition
    (`owners[p]`; empty while the node belongs to no cluster yet), of one ring epoch (a view that asked
    for them apart could straddle a flip); and each member's transfers (`nodes`, in name order: what it
    answered, or that it did not; protocol/transfer_progress.py matches them up)."""

    ring_version: int
    moves: tuple[TransferInfo, ...]
    nodes: tuple[NodeTransfers, ...] = ()
    owners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterCommitForward:
    """Peer message: a node that is not the claimant asks the claimant to commit."""

    req_id: int


@dataclass(frozen=True, slots=True)
class ClusterCommitForwardReply:
    """The claimant's answer: the committed plan, or why not (`error_kind` a `FailureKind` value)."""

    req_id: int
    reply: ClusterPlanReply | None
    error_kind: str = ""
    error: str = ""


ClusterRequest = ClusterStageRequest | ClusterPlanRequest | ClusterCommitRequest | ClusterTransfersRequest
ClusterReply = ClusterPlanReply | ClusterTransfersReply
ClusterPeerMessage = (
    ClusterCommitForward | ClusterCommitForwardReply | TransferProgressRequest | TransferProgressReply
)
