"""`dynakv cluster transfers` across the cluster: every member's transfer progress, collected with a
deadline, and matched with the pending ownership moves.

The node a client asks answers for itself at once and sends a `TransferProgressRequest` to every other
member of its cluster state that is not removed, except those it counts down (reported as
unreachable, never asked). Each member answers from its own transfer manager (`TransferProgressReply`:
outbound transfers under way, ownership duties finished). The query ends when every member asked has
answered, or when it turned unreachable meanwhile, or at the deadline: whoever has not answered then is
reported as "no answer". A client never waits longer than `QUERY_TIMEOUT_MS` for a slow member.

Queries in flight are bounded (`QUERIES_MAX`, a refusal beyond it); a node answers a request without
keeping any state; a late or unasked reply is dropped.

Matching (`move_progress`): a move of `partition` to `new_owner` is carried by the ownership transfer of
that partition to that node, whichever node sends it (ownership.py pairs added and removed primaries,
so the sender need not be the move's old owner). Every other transfer under way (an ownership transfer
of a neighbouring partition whose primaries changed too, hinted handoff, repair) is listed apart
(`other_transfers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from typing import Final

from dynakv.protocol.cluster_admin_messages import ClusterTransfersReply, TransferInfo
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.messages import Failure, FailureKind, TransferKind
from dynakv.protocol.transfer import TransferStatus
from dynakv.protocol.transfer_progress_messages import (
    Duty,
    NodeAnswer,
    NodeTransfers,
    OutboundProgress,
    TransferProgressMessage,
    TransferProgressReply,
    TransferProgressRequest,
)

# A member's answer is a copy of a few counters: one that takes longer is down or overloaded.
QUERY_TIMEOUT_MS: Final = 2_000
QUERIES_MAX: Final = 64

# This node's own part: its transfers under way and its finished ownership duties.
LocalTransfers = Callable[[], tuple[tuple[OutboundProgress, ...], tuple[Duty, ...]]]
# The reply to a client, built from the members' parts when the query ends.
BuildReply = Callable[[tuple[NodeTransfers, ...]], ClusterTransfersReply]


def outbound_progress(statuses: Sequence[TransferStatus]) -> tuple[OutboundProgress, ...]:
    """A transfer manager's statuses (`TransferManager.status()`) as they travel."""
    return tuple(
        OutboundProgress(
            s.kind.value,
            s.target,
            s.partition,
            s.state.value,
            s.progress.entries_acked,
            s.progress.bytes_acked,
            s.progress.total,
        )
        for s in statuses
    )


@dataclass(slots=True)
class _Query:
    ref: int
    deadline_ms: int
    answers: dict[str, NodeTransfers] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)


class TransferQueries:
    def __init__(self, name: str, local: LocalTransfers, build: BuildReply) -> None:
        self.name = name
        self.local = local
        self.build = build
        self._queries: dict[int, _Query] = {}
        self._next_id = 0

    def pending(self) -> int:
        return len(self._queries)

    def start(self, ref: int, members: Sequence[str], down: Set[str], now_ms: int, out: list[Effect]) -> None:
        """Ask `members` (this node's included or not: it answers for itself) for their progress."""
        if len(self._queries) >= QUERIES_MAX:
            why = f"{QUERIES_MAX} transfer queries in flight on this node, the limit; retry later"
            out.append(Reply(ref, Failure(FailureKind.OVERLOADED, why)))
            return
        self._next_id += 1
        req_id = self._next_id
        query = _Query(ref, now_ms + QUERY_TIMEOUT_MS)
        transfers, sent = self.local()
        query.answers[self.name] = NodeTransfers(self.name, NodeAnswer.ANSWERED, transfers, sent)
        for member in sorted(set(members) - {self.name}):
            if member in down:
                query.answers[member] = NodeTransfers(member, NodeAnswer.UNREACHABLE)
            else:
                query.waiting.add(member)
                out.append(Send(member, TransferProgressRequest(req_id)))
        self._queries[req_id] = query
        self._settle(req_id, query, now_ms, out)

    def on_message(self, src: str, msg: TransferProgressMessage, now_ms: int, out: list[Effect]) -> None:
        if isinstance(msg, TransferProgressRequest):
            out.append(Send(src, TransferProgressReply(msg.req_id, *self.local())))
            return
        query = self._queries.get(msg.req_id)
        if query is None or src not in query.waiting:
            return  # late (the query ended), a duplicate, or from a node never asked
        query.waiting.discard(src)
        query.answers[src] = NodeTransfers(src, NodeAnswer.ANSWERED, msg.transfers, msg.sent)
        self._settle(msg.req_id, query, now_ms, out)

    def on_tick(self, now_ms: int, down: Set[str], out: list[Effect]) -> None:
        """Members counted down meanwhile will not answer; a query past its deadline ends."""
        for req_id, query in sorted(self._queries.items()):
            for member in sorted(query.waiting & down):
                query.waiting.discard(member)
                query.answers[member] = NodeTransfers(member, NodeAnswer.UNREACHABLE)
            self._settle(req_id, query, now_ms, out)

    def _settle(self, req_id: int, query: _Query, now_ms: int, out: list[Effect]) -> None:
        if query.waiting and now_ms < query.deadline_ms:
            return
        for member in sorted(query.waiting):
            query.answers[member] = NodeTransfers(member, NodeAnswer.NO_ANSWER)
        del self._queries[req_id]
        out.append(Reply(query.ref, self.build(tuple(query.answers[n] for n in sorted(query.answers)))))


# -- matching moves and transfers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveProgress:
    """A pending move with the transfer that carries it: `sender` runs it (`progress`) or finished it
    (`progress` None); both None when no member that answered runs or finished it."""

    move: TransferInfo
    sender: str | None = None
    progress: OutboundProgress | None = None

    @property
    def state(self) -> str:
        """complete, running, paused, sent (the sender's other duties still run) or waiting."""
        if self.move.complete:
            return "complete"
        if self.progress is not None:
            return self.progress.state
        return "waiting" if self.sender is None else "sent"


def _carries(progress: OutboundProgress, move: TransferInfo) -> bool:
    return (
        progress.kind == TransferKind.OWNERSHIP.value
        and progress.partition == move.partition
        and progress.target == move.new_owner
    )


def move_progress(reply: ClusterTransfersReply) -> list[MoveProgress]:
    """Each move of `reply`, in its order, with its transfer when a member that answered has one."""
    found = []
    for move in reply.moves:
        match = MoveProgress(move)
        duty = (move.partition, move.new_owner)
        for node in reply.nodes:
            running = next((p for p in node.transfers if _carries(p, move)), None)
            if running is not None:
                match = MoveProgress(move, node.node, running)
                break
            if match.sender is None and duty in node.sent:
                match = MoveProgress(move, node.node)
        found.append(match)
    return found


def other_transfers(reply: ClusterTransfersReply) -> list[tuple[str, OutboundProgress]]:
    """The transfers under way that carry none of the moves: (sender, progress), in node order."""
    return [
        (node.node, progress)
        for node in reply.nodes
        for progress in node.transfers
        if not any(_carries(progress, move) for move in reply.moves)
    ]
