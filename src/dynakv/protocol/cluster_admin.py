"""The node's answers to `dynakv cluster ...` (cluster_admin_messages.py), on its cluster state.

- stage (leave, remove, clear): changes this node's state (`cluster_state.stage_*`); gossip carries the
  staged change to every node, the claimant included. The reply is the plan as this node sees it now.
- plan: `claimant.plan` on this node's state; after staging on another node, wait a gossip round.
- commit: only the claimant commits (`claimant.commit`, then `claimant_tick`), so that two nodes never
  write competing ring epochs; any other node forwards the commit to the claimant it knows
  (`ClusterCommitForward`) and relays the answer, or fails at once if it cannot reach it.
- transfers: the pending moves of the ring epoch this node holds, with every live member's transfer
  progress (transfer_progress.py asks them, with a deadline).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Final

from dynakv.core import cluster_state as cs
from dynakv.core.errors import ConfigError
from dynakv.protocol import claimant
from dynakv.protocol.cluster import ClusterWiring, live_members
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitForward,
    ClusterCommitForwardReply,
    ClusterPeerMessage,
    ClusterPlanReply,
    ClusterPlanRequest,
    ClusterRequest,
    ClusterStageRequest,
    ClusterTransfersReply,
    ClusterTransfersRequest,
    StageKind,
    TransferInfo,
)
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.messages import Failure, FailureKind
from dynakv.protocol.transfer_progress import LocalTransfers, TransferQueries
from dynakv.protocol.transfer_progress_messages import (
    NodeTransfers,
    TransferProgressReply,
    TransferProgressRequest,
)

FORWARD_TIMEOUT_MS: Final = 10_000
PENDING_MAX: Final = 64


@dataclass(slots=True)
class _Pending:
    ref: int
    deadline_ms: int


class ClusterAdmin:
    """`local` gives this node's own transfer progress (transfer_progress.LocalTransfers)."""

    def __init__(self, name: str, cluster: ClusterWiring, n_val: int, local: LocalTransfers) -> None:
        self.name = name
        self.cluster = cluster
        self.n_val = n_val
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self.queries = TransferQueries(name, local, self._transfers)

    # -- requests --------------------------------------------------------------------------------------

    def on_request(
        self, ref: int, request: ClusterRequest, now_ms: int, down: set[str], out: list[Effect]
    ) -> None:
        if isinstance(request, ClusterStageRequest):
            out.append(Reply(ref, self._stage(request)))
        elif isinstance(request, ClusterPlanRequest):
            out.append(Reply(ref, self._plan()))
        elif isinstance(request, ClusterTransfersRequest):
            members = live_members(self.cluster.state, self.name)
            self.queries.start(ref, members, down, now_ms, out)
        else:
            self._commit(ref, now_ms, down, out)

    def _reply_lines(self, lines: list[str]) -> ClusterPlanReply:
        state = self.cluster.state
        return ClusterPlanReply(cs.acting_claimant(state) or "", state.ring_version, tuple(lines))

    def _plan(self) -> ClusterPlanReply | Failure:
        try:
            return self._reply_lines(claimant.plan(self.cluster.state, self.n_val).lines())
        except ConfigError as err:
            return Failure(FailureKind.BAD_REQUEST, str(err))

    def _stage(self, request: ClusterStageRequest) -> ClusterPlanReply | Failure:
        state = self.cluster.state
        try:
            if request.kind is StageKind.LEAVE:
                state = cs.stage_leave(state, request.name)
            elif request.kind is StageKind.REMOVE:
                state = cs.stage_remove(state, request.name)
            else:
                state = cs.clear_staged(state)
        except ConfigError as err:
            return Failure(FailureKind.BAD_REQUEST, str(err), "name")
        self.cluster.update(state)
        staged = [f"staged: {s.kind.value} {s.name}" for s in state.active_staged()]
        return self._reply_lines(staged or ["nothing staged"])

    def _transfers(self, nodes: tuple[NodeTransfers, ...]) -> ClusterTransfersReply:
        """The moves as this node holds them when the members' answers are in."""
        state = self.cluster.state
        moves = tuple(TransferInfo(m.partition, m.old_owner, m.new_owner, m.complete) for m in state.moves)
        owners = () if state.ring is None else state.ring.owners
        return ClusterTransfersReply(state.ring_version, moves, nodes, owners)

    def commit_here(self) -> ClusterPlanReply | Failure:
        """On the claimant: apply the staged changes (the plan's lines say what they do)."""
        state = self.cluster.state
        if cs.acting_claimant(state) != self.name:
            return Failure(FailureKind.UNAVAILABLE, f"{self.name} is not the claimant", "claimant")
        try:
            lines = claimant.plan(state, self.n_val).lines()
            committed = claimant.commit(state, self.n_val)
        except ConfigError as err:
            return Failure(FailureKind.BAD_REQUEST, str(err))
        self.cluster.update(claimant.claimant_tick(committed))
        return self._reply_lines(lines)

    def _commit(self, ref: int, now_ms: int, down: set[str], out: list[Effect]) -> None:
        target = cs.acting_claimant(self.cluster.state)
        if target is None or target == self.name:
            out.append(Reply(ref, self.commit_here() if target else _no_claimant()))
            return
        if target in down:
            out.append(Reply(ref, Failure(FailureKind.UNAVAILABLE, f"the claimant {target} is unreachable")))
            return
        if len(self._pending) >= PENDING_MAX:
            out.append(Reply(ref, Failure(FailureKind.OVERLOADED, "too many commits in flight")))
            return
        self._next_id += 1
        self._pending[self._next_id] = _Pending(ref, now_ms + FORWARD_TIMEOUT_MS)
        out.append(Send(target, ClusterCommitForward(self._next_id)))

    # -- peers and time -----------------------------------------------------------------------------------

    def on_message(self, src: str, msg: ClusterPeerMessage, now_ms: int, out: list[Effect]) -> None:
        if isinstance(msg, TransferProgressRequest | TransferProgressReply):
            self.queries.on_message(src, msg, now_ms, out)
            return
        if isinstance(msg, ClusterCommitForward):
            answer = self.commit_here()
            if isinstance(answer, Failure):
                out.append(
                    Send(src, ClusterCommitForwardReply(msg.req_id, None, answer.kind.value, answer.message))
                )
            else:
                out.append(Send(src, ClusterCommitForwardReply(msg.req_id, answer)))
            return
        pending = self._pending.pop(msg.req_id, None)
        if pending is None:
            return  # timed out already
        if msg.reply is not None:
            out.append(Reply(pending.ref, msg.reply))
            return
        try:
            kind = FailureKind(msg.error_kind)
        except ValueError:
            kind = FailureKind.UNAVAILABLE
        out.append(Reply(pending.ref, Failure(kind, f"the claimant {src}: {msg.error}")))

    def on_tick(self, now_ms: int, down: Set[str], out: list[Effect]) -> None:
        self.queries.on_tick(now_ms, down, out)
        for req_id in sorted(self._pending):
            pending = self._pending[req_id]
            if now_ms >= pending.deadline_ms:
                del self._pending[req_id]
                out.append(Reply(pending.ref, Failure(FailureKind.TIMEOUT, "the claimant did not answer")))


def _no_claimant() -> Failure:
    return Failure(FailureKind.UNAVAILABLE, "no valid member to act as claimant")
