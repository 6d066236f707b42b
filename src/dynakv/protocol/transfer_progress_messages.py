"""How far the transfers of every node got: the peer messages of `dynakv cluster transfers`, and the
per-node part of its reply.

A transfer's progress is known only on its sender (transfer_manager.py), so the node a client asks
sends every live member a `TransferProgressRequest` and collects the `TransferProgressReply`s, with a
deadline (protocol/transfer_progress.py). Each answer lists the node's outbound transfers still under
way (all kinds) and the ownership duties it finished for the pending moves.

This module imports no other message module: cluster_admin_messages.py (and through it messages.py)
imports it, so kinds and states travel as their string values (a `TransferKind` value; "running" or
"paused"), which the codec checks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

Duty = tuple[int, str]  # (partition, target)


class NodeAnswer(enum.Enum):
    ANSWERED = "answered"
    NO_ANSWER = "no answer"  # asked, and silent until the deadline
    UNREACHABLE = "unreachable"  # counted down by the node asked: not asked at all


@dataclass(frozen=True, slots=True)
class OutboundProgress:
    """One outbound transfer under way on its sender: `kind` a TransferKind value, `state` running or
    paused. Entries and bytes the target acknowledged so far; `entries_total` the entries the source
    held when the transfer started (None when the sender cannot tell cheaply, as for hints)."""

    kind: str
    target: str
    partition: int
    state: str
    entries_acked: int
    bytes_acked: int
    entries_total: int | None

    @property
    def percent(self) -> int | None:
        """Acknowledged entries as a percentage of the total, at most 100 (writes that arrived after
        the start may be sent too); None when the total is unknown or zero."""
        if not self.entries_total:
            return None
        return min(100, self.entries_acked * 100 // self.entries_total)


@dataclass(frozen=True, slots=True)
class NodeTransfers:
    """One member's part of the cluster's progress: whether it answered, its transfers under way, and
    the ownership duties (partition, target) it has finished for the moves pending now."""

    node: str
    answer: NodeAnswer
    transfers: tuple[OutboundProgress, ...] = ()
    sent: tuple[Duty, ...] = ()


@dataclass(frozen=True, slots=True)
class TransferProgressRequest:
    """Peer message: the asking node wants this node's outbound transfers (`req_id` is the asker's)."""

    req_id: int


@dataclass(frozen=True, slots=True)
class TransferProgressReply:
    req_id: int
    transfers: tuple[OutboundProgress, ...]
    sent: tuple[Duty, ...]


TransferProgressMessage = TransferProgressRequest | TransferProgressReply
