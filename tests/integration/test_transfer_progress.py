"""Transfer progress an operator can see, with real processes: `dynakv cluster transfers --json`,
`dynakv status --json` and `/stats` while a cluster grows from two nodes to three.

The senders are throttled (8 KiB per 100 ms tick each, in 4 KiB batches), so moving what the third node
receives (about 2/3 of N values of 1 KiB at n_val 2) takes several seconds: long enough to catch a move
part way by polling, however slow the machine (the throttle bounds the speed, not the duration).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from dynakv.client import Client
from dynakv.client.protocol import parse_address
from tests.integration.conftest import START_TIMEOUT_S, NodeInfo, _wait_or_kill, dynakv_command, wait_for
from tests.integration.test_availability import http_json
from tests.integration.test_membership import StartNode, cli, start_node, states
from tests.integration.test_membership_acceptance import BUCKET, commit, wait_settled, write_node_json

__all__ = ["start_node"]  # the fixture, imported for pytest

SLOW = {"transfer_bytes_per_tick_max": 8 * 1024, "transfer_batch_bytes_max": 4 * 1024}
KEYS = 2_000
VALUE = b"x" * 1024
HTTP = ("--http", "127.0.0.1:0")


def cli_json(*args: str) -> dict[str, Any]:
    done = cli(*args, "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def transfers(node: NodeInfo) -> dict[str, Any]:
    return cli_json("cluster", "transfers", "--host", node.client)


def status(node: NodeInfo) -> dict[str, Any]:
    return cli_json("status", "--host", node.client)


def stats(node: NodeInfo) -> dict[str, Any]:
    ready = json.loads((node.data_dir / "ready.json").read_text())
    found: dict[str, Any] = http_json(ready["http"], "/stats")
    return found


def part_way(node: NodeInfo) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The transfers view once some move's transfer is under way with part of its keys acknowledged."""
    view = transfers(node)
    moving = [m for m in view["moves"] if m["state"] == "running" and 0 < m["keys_acked"] < m["keys_total"]]
    return (view, moving[0]) if moving else None


def test_a_growing_cluster_shows_its_transfers_progress(start_node: StartNode, tmp_path: Path) -> None:
    for name in ("m1", "m2"):
        write_node_json(tmp_path / name, name, 2, SLOW)
    first = start_node("m1", *HTTP)
    second = start_node("m2", "--seed", first.cluster, *HTTP)
    wait_for(lambda: states(first).get("m2") == "joining", START_TIMEOUT_S, "m2 joining")
    commit(first)
    wait_settled([first, second], "m1, m2 to settle")
    senders = (first, second)
    before = {n.name: stats(n) for n in senders}
    with Client([parse_address(first.client)]) as client:
        for i in range(KEYS):
            client.put(BUCKET, f"k{i}", VALUE, w=2)

    third = start_node("m3", "--seed", second.cluster, "--n-val", "2", *HTTP)
    wait_for(lambda: states(first).get("m3") == "joining", START_TIMEOUT_S, "m3 joining")
    commit(first)
    watched = tmp_path / "watch.jsonl"
    with open(watched, "wb") as sink:
        args = ("cluster", "transfers", "--host", first.client, "--watch", "0.5", "--json")
        watcher = subprocess.Popen(dynakv_command(*args), stdout=sink, stderr=subprocess.DEVNULL)
    try:
        check_progress(first, second, third, before)
        # (4) --watch printed the views as the moves went on, and ended by itself once all had flipped.
        assert watcher.wait(timeout=60) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
        _wait_or_kill(watcher)
    views = [json.loads(line) for line in watched.read_text().splitlines()]
    assert len(views) >= 2 and any(m["state"] == "running" for v in views for m in v["moves"])
    assert views[-1]["moves"] == [] and views[-1]["summary"]["transfers_running"] == 0

    # (5) A member that cannot answer is named, and the view comes back anyway, without hanging.
    assert third.proc is not None
    third.proc.send_signal(signal.SIGKILL)
    third.proc.wait()
    started = time.monotonic()
    lost = transfers(first)
    assert lost["nodes"]["m3"] in ("no answer", "unreachable") and lost["summary"]["no_answer"] == ["m3"]
    assert time.monotonic() - started < 10


def check_progress(first: NodeInfo, second: NodeInfo, third: NodeInfo, before: dict[str, Any]) -> None:
    """Steps (1) to (3): the views while the moves run, and once they are all done."""
    senders = (first, second)

    # (1) cluster transfers: a move part way, with its numbers, every member answering.
    view, move = wait_for(lambda: part_way(first), 60, "a move part way", 0.1)
    assert move["to"] == "m3" and move["sender"] in ("m1", "m2") and not move["complete"]
    assert move["percent"] == move["keys_acked"] * 100 // move["keys_total"] < 100
    assert move["bytes_acked"] >= move["keys_acked"] * len(VALUE)
    assert view["nodes"] == {"m1": "answered", "m2": "answered", "m3": "answered"}
    assert view["transfers_pending"] == sum(1 for m in view["moves"] if not m["complete"]) > 0
    assert view["summary"]["transfers_running"] >= 1
    assert view["summary"]["keys_acked"] >= move["keys_acked"] and view["summary"]["no_answer"] == []
    text = cli("cluster", "transfers", "--host", first.client)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("ring version ") and "ownership moves" in lines[0]
    assert lines[-1].startswith("summary: ") and "every member answered" in lines[-1]

    # (2) status and /stats of the senders move while the transfers run.
    def busy() -> bool:
        seen = [(status(n), stats(n)) for n in senders]
        return any(
            report["transfers_pending"] > 0
            and report["transfers_active"] > 0
            and now["transfers_active"] > 0
            and now["transfers_pending"] > 0
            and now["transfer_ownership_keys_acked"] > before[n.name]["transfer_ownership_keys_acked"]
            for n, (report, now) in zip(senders, seen, strict=True)
        )

    wait_for(busy, 60, "status and /stats to show the transfers running", 0.1)

    # (3) Everything complete: the ring flips, nothing pending or running anywhere.
    nodes = [first, second, third]
    wait_settled(nodes, "the ring to flip to m1, m2, m3")
    done = transfers(second)
    assert (done["moves"], done["transfers_pending"], done["other_transfers"]) == ([], 0, [])
    assert done["summary"]["transfers_running"] == 0
    assert done["nodes"] == {"m1": "answered", "m2": "answered", "m3": "answered"}
    for node in nodes:
        report, now = status(node), stats(node)
        assert (report["transfers_pending"], report["transfers_active"]) == (0, 0), node.name
        assert (now["transfers_pending"], now["transfers_active"]) == (0, 0), node.name
    after = {n.name: stats(n) for n in senders}

    def moved(what: str) -> int:
        name = f"transfer_ownership_{what}"
        return sum(int(after[n][name]) - int(before[n][name]) for n in after)

    acked, sent, bytes_acked = moved("keys_acked"), moved("keys_sent"), moved("bytes_acked")
    received = stats(third)["transfer_keys_received"]
    # m3 owned nothing before: what it received is what the moves sent (a resent batch counts twice
    # on arrival, once acknowledged); each key carries a 1 KiB value.
    assert 0 < acked <= received and acked <= sent
    assert acked > KEYS // 3 and bytes_acked >= acked * len(VALUE)
