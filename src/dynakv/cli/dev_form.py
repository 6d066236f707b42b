"""How `dynakv dev` forms a fresh cluster: the dynamic way (docs/adr/0008-membership.md), as an operator
would.

dev1 starts alone, so it forms a one-node cluster (valid, the claimant, owner of every partition).
dev2..devN start with `--seed` and dev1's cluster address; each finds the cluster through it and stages
its own join. Once dev1 sees them all joining, dev commits the joins (what `dynakv cluster commit` does)
and waits until every node holds the same ring, shared by all N members, with no move pending. A fresh
cluster holds no data, so its moves are transfers of nothing and the ring flips quickly.

Each step has a deadline (--ready-timeout). When it runs out, dev says what it was waiting for and what
the nodes last answered, with the tail of every node's log.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dynakv.cli.dev_nodes import DevNode, err, first_death, report_logs, start, wait_ready
from dynakv.client import Client, DynakvClientError
from dynakv.client.protocol import parse_address

FORM_POLL_S: Final = 0.1
# Per request: a node of a forming cluster answers at once; one that does not is retried next poll.
CLIENT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class Seen:
    """What one node answered: its members' states, and the ring it holds."""

    states: dict[str, str]
    ring_version: int
    owners: tuple[str, ...]
    moves_pending: int

    def __str__(self) -> str:
        states = ", ".join(f"{name} {state}" for name, state in sorted(self.states.items()))
        owned = ", ".join(f"{name} {count}" for name, count in sorted(Counter(self.owners).items()))
        return (
            f"members [{states}], ring version {self.ring_version} (partitions owned: {owned or 'none'}), "
            f"{self.moves_pending} moves pending"
        )


def _client(node: DevNode) -> Client:
    assert node.ready is not None
    return Client([parse_address(node.ready["client"])], timeout_s=CLIENT_TIMEOUT_S)


def _ask(node: DevNode) -> Seen:
    with _client(node) as client:
        status = client.status()
        transfers = client.cluster_transfers()
    states = {m.name: m.state for m in status.members}
    return Seen(states, transfers.ring_version, transfers.owners, len(transfers.moves))


def _joins_staged(first: DevNode, joiners: list[str]) -> str | None:
    """None once `first` sees itself valid and every joiner joining; else what it sees."""
    seen = _ask(first)
    if seen.states == {first.name: "valid", **dict.fromkeys(joiners, "joining")}:
        return None
    return f"{first.name} sees {seen}"


def _shared(owners: tuple[str, ...], names: set[str]) -> bool:
    """Whether every member owns partitions (all of them can only when there are no more members than
    partitions) and no one else does."""
    held = set(owners)
    return held == names if len(names) <= len(owners) else held <= names


def _settled(nodes: list[DevNode]) -> str | None:
    """None once every node sees all of them valid and holds the same ring, shared by all, with no move
    pending; else what the first node that is not there yet sees."""
    names = {node.name for node in nodes}
    rings = set()
    for node in nodes:
        seen = _ask(node)
        all_valid = seen.states == dict.fromkeys(names, "valid")
        if not all_valid or seen.moves_pending or not _shared(seen.owners, names):
            return f"{node.name} sees {seen}"
        rings.add((seen.ring_version, seen.owners))
    # Each node's ring is final by the test above; tell apart the (impossible) case of two final rings.
    return None if len(rings) == 1 else f"the nodes hold {len(rings)} different rings"


def _poll(
    nodes: list[DevNode], what: str, check: Callable[[], str | None], timeout_s: float, stop: threading.Event
) -> bool:
    """Poll `check` (None when done, else what it still sees) until done. False, said on stderr, if a
    node dies or the deadline passes (with every node's log tail); False at once on Ctrl-C (`stop`)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        if first_death(nodes) is not None:
            return False
        try:
            left = check()
        except DynakvClientError as error:  # a node slow to answer: ask again on the next poll
            left = f"no answer: {type(error).__name__}: {error}"
        if left is None:
            return True
        if time.monotonic() > deadline:
            err(f"gave up after {timeout_s:g} s waiting for {what}; last seen: {left}")
            report_logs(nodes)
            return False
        stop.wait(FORM_POLL_S)
    return False


def _commit(first: DevNode, nodes: list[DevNode]) -> bool:
    """Commit the staged joins on `first`, the claimant. Once only: a commit that timed out may have
    happened, and a second would find nothing staged."""
    try:
        with _client(first) as client:
            client.cluster_commit()
    except DynakvClientError as error:
        err(f"committing the joins on {first.name} failed: {type(error).__name__}: {error}")
        report_logs(nodes)
        return False
    return True


def form(nodes: list[DevNode], timeout_s: float, stop: threading.Event) -> bool:
    """Start `nodes` (not started yet; the first alone, the others through it as seed) and form them
    into one cluster, as the module docstring says. False, said on stderr, if that fails."""
    first, others = nodes[0], nodes[1:]
    start(first)
    if not wait_ready([first], timeout_s, stop):
        return False
    assert first.ready is not None
    for node in others:
        node.command += ["--seed", str(first.ready["cluster"])]
        start(node)
    if not others:
        return True
    if not wait_ready(others, timeout_s, stop):
        return False
    joiners = [node.name for node in others]
    if not _poll(
        nodes,
        f"{first.name} to see {', '.join(joiners)} joining",
        functools.partial(_joins_staged, first, joiners),
        timeout_s,
        stop,
    ):
        return False
    if not _commit(first, nodes):
        return False
    what = f"every node to hold one ring shared by {len(nodes)} members, no move pending"
    return _poll(nodes, what, functools.partial(_settled, nodes), timeout_s, stop)
