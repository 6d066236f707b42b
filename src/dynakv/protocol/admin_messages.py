"""Admin service requests and their replies: repair (anti-entropy now) and the node's view of the cluster.

They travel like the other service requests (messages.py unions them into `ServiceRequest` and
`ServiceReply`): the native protocol carries them (wire/service_codec.py) and the Node answers them
itself, from its own state, without asking its peers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """Run anti-entropy now between this node and the other primaries of `partition`, or of every
    partition this node is a primary of (None). A request while a repair runs adds to it."""

    partition: int | None = None


@dataclass(frozen=True, slots=True)
class RepairStatusRequest:
    """How far the last repair started on this node got."""


@dataclass(frozen=True, slots=True)
class RepairStatus:
    """Partitions whose exchanges all ended, of those the repair covers; keys this node's merges changed
    since the repair began; exchanges that did not complete (timed out, declined, failed)."""

    partitions_total: int
    partitions_done: int
    keys_repaired: int
    exchanges_failed: int
    finished: bool


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """The cluster as this node sees it."""


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member: whether this node can reach it now, and how many partitions it is a primary owner of
    (claimed in the ring, not counting the n_val replicas it also holds)."""

    name: str
    reachable: bool
    partitions_owned: int
    # joining, valid, leaving, exiting or down (a valid member this node cannot reach shows as down).
    state: str = "valid"


@dataclass(frozen=True, slots=True)
class StatusReply:
    """`members` sorted by name, this node included; hints this node holds for others; the ownership
    moves not yet complete in this node's cluster state (`transfers_pending`: what an operator waits on
    after a commit, the same on every node once gossip agrees); its anti-entropy trees still building
    after a start; and the outbound transfers of every kind this node is running (`transfers_active`)."""

    node: str
    members: tuple[MemberStatus, ...]
    hints_pending: int
    transfers_pending: int
    partitions: int
    n_val: int
    trees_building: int
    transfers_active: int


AdminRequest = RepairRequest | RepairStatusRequest | StatusRequest
AdminReply = RepairStatus | StatusReply
