"""What `dynakv cluster transfers` prints: each pending move with the progress of the transfer carrying
it (a text bar when its total is known), the other transfers under way, the members that did not
answer, and a summary line; or the same numbers as one JSON object (`--json`).

The reply comes from one node, which asked every live member for its transfers (protocol/
transfer_progress.py matches them with the moves).
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.protocol.cluster_admin_messages import ClusterTransfersReply
from dynakv.protocol.transfer_progress import MoveProgress, move_progress, other_transfers
from dynakv.protocol.transfer_progress_messages import NodeAnswer, OutboundProgress

BAR_WIDTH: Final = 20
_UNITS: Final = ("KB", "MB", "GB", "TB")


def format_bytes(count: int) -> str:
    """Bytes for people: 512 B, 3.1 MB (powers of 1024)."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def progress_bar(percent: int, width: int = BAR_WIDTH) -> str:
    done = width * percent // 100
    return "[" + "#" * done + "." * (width - done) + "]"


def progress_text(p: OutboundProgress) -> str:
    """`[#####...] 47% 1234/2600 keys 3.1 MB`, or without bar and percentage when the total is unknown."""
    size = format_bytes(p.bytes_acked)
    paused = " (paused)" if p.state == "paused" else ""
    percent = p.percent
    if percent is None:
        total = "" if p.entries_total is None else f"/{p.entries_total}"
        return f"{p.entries_acked}{total} keys {size}{paused}"
    bar = f"{progress_bar(percent)} {percent:>3}%"
    return f"{bar} {p.entries_acked}/{p.entries_total} keys {size}{paused}"


def _move_line(m: MoveProgress) -> str:
    move = m.move
    head = f"  partition {move.partition:<5} {move.old_owner} -> {move.new_owner}  "
    if m.state == "complete":
        return head + "complete"
    if m.progress is not None:
        return head + f"{progress_text(m.progress)}  (sent by {m.sender})"
    if m.sender is not None:
        return head + f"sent by {m.sender}, waiting for its other transfers"
    return head + "waiting"


def settled(reply: ClusterTransfersReply) -> bool:
    """Nothing left to watch: every move flipped, and no member that answered runs a transfer."""
    return not reply.moves and not any(node.transfers for node in reply.nodes)


def _silent(reply: ClusterTransfersReply) -> dict[str, str]:
    return {n.node: n.answer.value for n in reply.nodes if n.answer is not NodeAnswer.ANSWERED}


def _running(reply: ClusterTransfersReply) -> list[OutboundProgress]:
    return [p for node in reply.nodes for p in node.transfers]


def transfers_lines(reply: ClusterTransfersReply) -> list[str]:
    moves = move_progress(reply)
    pending = sum(1 for m in moves if not m.move.complete)
    lines = [f"ring version {reply.ring_version}: {len(moves)} ownership moves, {pending} pending"]
    lines += [_move_line(m) for m in moves]
    others = other_transfers(reply)
    if others:
        lines.append("other transfers under way:")
        lines += [
            f"  {node} -> {p.target}  partition {p.partition}  {p.kind}  {progress_text(p)}"
            for node, p in others
        ]
    silent = _silent(reply)
    if silent:
        lines.append("not in this view: " + ", ".join(f"{n} ({why})" for n, why in silent.items()))
    lines.append(_summary_line(reply, len(moves) - pending, len(moves), len(silent)))
    return lines


def _summary_line(reply: ClusterTransfersReply, complete: int, moves: int, silent: int) -> str:
    nodes = f"{silent} member(s) did not answer" if silent else "every member answered"
    running = _running(reply)
    if not running:
        return f"summary: {complete}/{moves} moves complete; no transfer under way; {nodes}"
    acked = sum(p.entries_acked for p in running)
    known = [p.entries_total for p in running if p.entries_total is not None]
    keys = f"{acked}/{sum(known)} keys" if len(known) == len(running) else f"{acked} keys"
    size = format_bytes(sum(p.bytes_acked for p in running))
    return (
        f"summary: {complete}/{moves} moves complete; {len(running)} transfers under way, "
        f"{keys} {size} acknowledged; {nodes}"
    )


def _progress_json(p: OutboundProgress | None) -> dict[str, Any]:
    if p is None:
        return {"keys_acked": None, "keys_total": None, "bytes_acked": None, "percent": None}
    return {
        "keys_acked": p.entries_acked,
        "keys_total": p.entries_total,
        "bytes_acked": p.bytes_acked,
        "percent": p.percent,
    }


def moves_json(reply: ClusterTransfersReply) -> dict[str, Any]:
    """The moves alone, as `dynakv ring --json` shows them."""
    moves = [
        {"partition": m.partition, "from": m.old_owner, "to": m.new_owner, "complete": m.complete}
        for m in reply.moves
    ]
    pending = sum(1 for m in reply.moves if not m.complete)
    return {"ring_version": reply.ring_version, "transfers_pending": pending, "moves": moves}


def transfers_json(reply: ClusterTransfersReply) -> dict[str, Any]:
    view = moves_json(reply)
    for shown, m in zip(view["moves"], move_progress(reply), strict=True):
        shown.update(state=m.state, sender=m.sender, **_progress_json(m.progress))
    view["other_transfers"] = [
        {"node": node, "kind": p.kind, "target": p.target, "partition": p.partition, "state": p.state}
        | _progress_json(p)
        for node, p in other_transfers(reply)
    ]
    view["nodes"] = {n.node: n.answer.value for n in reply.nodes}
    running = _running(reply)
    view["summary"] = {
        "moves": len(reply.moves),
        "moves_complete": sum(1 for m in reply.moves if m.complete),
        "transfers_running": len(running),
        "keys_acked": sum(p.entries_acked for p in running),
        "keys_total": sum(p.entries_total or 0 for p in running),
        "keys_total_unknown": sum(1 for p in running if p.entries_total is None),
        "bytes_acked": sum(p.bytes_acked for p in running),
        "no_answer": sorted(_silent(reply)),
    }
    return view
