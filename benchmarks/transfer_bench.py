"""Ownership-transfer throughput on loopback: how fast a join moves a ~100 MiB partition, real processes.

    .venv/bin/python benchmarks/transfer_bench.py [--mib 100] [--value-size 32768] [--partitions 8]
        [--moving 1] [--storage sqlite|lmdb|memory] [--batch-bytes B] [--bytes-per-tick B]
        [--concurrent N] [--load-concurrency 16] [--timeout 600] [--json]

1. n1 starts alone (`dynakv node`, n_val 1, Q = --partitions, HTTP on for /metrics; port 0 on 127.0.0.1,
   the real ports read from ready.json); n2 starts with `--seed` n1 and stages its own join.
2. `cluster plan` on n1 names the partitions the join will move to n2. --mib MiB of --value-size values
   are written through n1 (w=1, dw=0; not timed) under keys hashing into the first --moving of them,
   spread evenly; every other partition stays empty.
3. `cluster commit`; n1's `cluster transfers` is polled every 50 ms until every move is complete (every
   batch acknowledged: the data moved), then until the ring flipped (the claimant's next round). Both
   nodes' /metrics are sampled every 100 ms meanwhile (receiver: `transfer.entries_received`; sender:
   `transfer.finished.ownership`, the partitions' finish times), their CPU time read from /proc.

Throughput = bytes moved / (completion - commit), an entry counted as the transfer counts it
(`entry_bytes` of its stored object, computed here for one sibling of --value-size bytes). The data
phase (first entry received to last, at the sampling's resolution) is reported too.

Settings: the `Limits`/`Timing` defaults, with --batch-bytes (`transfer_batch_bytes_max`),
--bytes-per-tick (`transfer_bytes_per_tick_max`) and --concurrent (`transfers_concurrent_max`) written
into both nodes' node.json before their first start. Both nodes are stopped by pid at the end (SIGTERM,
SIGKILL after 20 s) whatever happened; the counters they log on a clean stop are reported. A summary
goes to stderr; --json prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from dynakv.client import AsyncClient, Client
from dynakv.client.protocol import parse_address
from dynakv.core.config import Limits, Timing
from dynakv.core.dvv import EMPTY_VV, SiblingSet
from dynakv.core.objects import Content, encode_object
from dynakv.core.ring import Ring
from dynakv.protocol.transfer import TransferSettings, entry_bytes
from dynakv.storage.registry import DEFAULT_ENGINE, ENGINES

BUCKET = b"xfer"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.05
SAMPLE_S = 0.1
MIB = 1024 * 1024
_MOVE_LINE = re.compile(r"^\s+(\d+) (\S+) -> (\S+)$")
_EVENT_LINE = re.compile(r'^dynakv_node_events_total\{event="([^"]+)"\} (\S+)$', re.MULTILINE)
CONFIG = ("storage", "partitions", "moving", "value_size", "mib", "limits")
_LIMITS = {
    "batch_bytes": "transfer_batch_bytes_max",
    "bytes_per_tick": "transfer_bytes_per_tick_max",
    "concurrent": "transfers_concurrent_max",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--mib", type=float, default=100.0, help="MiB (2**20 bytes) of values to move (default 100)")
    add("--value-size", type=int, default=32 * 1024, help="bytes per value (default 32768)")
    add("--partitions", type=int, default=8, help="ring size Q (default 8)")
    add("--moving", type=int, default=1, help="moving partitions the data is spread over (default 1)")
    add("--storage", default=DEFAULT_ENGINE, choices=ENGINES, help=f"both nodes' (default {DEFAULT_ENGINE})")
    for flag, limit in _LIMITS.items():
        add(f"--{flag.replace('_', '-')}", type=int, help=f"{limit} (default: Limits')")
    add("--load-concurrency", type=int, default=16, help="puts in flight while loading (default 16)")
    add("--timeout", type=float, default=600.0, help="bound on the load, and on the moves (default 600 s)")
    add("--seed", type=int, default=1, help="seed of the values (default 1)")
    add("--json", action="store_true", help="print the result as JSON on stdout")
    args = p.parse_args(argv)
    args.limits = {limit: getattr(args, f) for f, limit in _LIMITS.items() if getattr(args, f) is not None}
    if args.mib <= 0 or not 0 < args.value_size <= Limits().value_bytes_max or args.moving < 1:
        p.error("--mib must be > 0, --value-size in 1..value_bytes_max, --moving >= 1")
    Limits.from_mapping(args.limits)  # a bad value fails here, not in the nodes
    return args


def settings_in_effect(limits: dict[str, int]) -> dict[str, Any]:
    timing = Timing()
    settings = TransferSettings.from_config(Limits.from_mapping(limits), timing)
    ceiling = settings.bytes_per_tick / MIB * 1000 / timing.tick_ms
    return dataclasses.asdict(settings) | {"tick_ms": timing.tick_ms, "throttle_mib_s": round(ceiling, 1)}


# -- the nodes ---------------------------------------------------------------------------------------------


@dataclass
class NodeProc:
    name: str
    data: Path
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def client(self) -> str:
        return str(self.ready["client"])

    def log(self) -> str:
        return (self.data / "node.log").read_text(errors="replace")


def write_node_json(data: Path, name: str, args: argparse.Namespace) -> None:
    """A first start's node.json, so that the limits overrides are in effect from the start."""
    config = {
        "format": 1, "name": name, "cluster_name": "dynakv", "listen": "127.0.0.1:0",
        "client": "127.0.0.1:0", "http": "127.0.0.1:0", "members": {name: "127.0.0.1:0"},
        "storage": args.storage, "partitions": args.partitions, "n_val": 1, "timing": {},
        "limits": args.limits, "buckets": {}, "seeds": [],
    }  # fmt: skip
    data.mkdir()
    (data / "node.json").write_text(json.dumps(config, indent=2))


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)
    return value


def _ready(node: NodeProc) -> dict[str, Any] | None:
    if node.proc.poll() is not None:
        raise RuntimeError(f"{node.name} exited with {node.proc.returncode}:\n{node.log()[-3000:]}")
    try:
        data: dict[str, Any] = json.loads((node.data / "ready.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if data.get("pid") == node.proc.pid else None


def start_node(root: Path, name: str, args: argparse.Namespace, seed: str | None) -> NodeProc:
    data = root / name
    write_node_json(data, name, args)
    command = [sys.executable, "-m", "dynakv", "node", "--data", str(data)]  # the rest is in node.json
    command += ["--seed", seed] if seed else []
    with open(data / "node.log", "wb") as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    node = NodeProc(name, data, proc)
    node.ready = wait_for(lambda: _ready(node), START_TIMEOUT_S, f"{name} to be ready")
    return node


def stop_node(node: NodeProc) -> dict[str, int]:
    """SIGTERM by pid, SIGKILL if it is still there after STOP_TIMEOUT_S; the transfer and ownership
    counters it logged on a clean stop ({} after a SIGKILL)."""
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
    try:
        node.proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        node.proc.kill()
        node.proc.wait()
    lines = re.findall(r"counters (\{.*\})", node.log())
    counters: dict[str, int] = json.loads(lines[-1]) if lines else {}
    return {k: v for k, v in counters.items() if k.startswith(("transfer", "ownership"))}


@contextlib.contextmanager
def two_nodes(args: argparse.Namespace) -> Iterator[tuple[NodeProc, NodeProc]]:
    """n1 alone, then n2 through --seed n1 (its join staged); both stopped, the files removed, at the end."""
    with tempfile.TemporaryDirectory(prefix="dynakv-xfer-") as tmp:
        started: list[NodeProc] = []
        try:
            started.append(start_node(Path(tmp), "n1", args, None))
            started.append(start_node(Path(tmp), "n2", args, started[0].ready["cluster"]))
            yield started[0], started[1]
        finally:
            for node in started:
                stop_node(node)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# -- plan and load -----------------------------------------------------------------------------------------


def moves_of(lines: Sequence[str]) -> list[int]:
    """The partitions moving from n1 to n2 in the lines of a plan (or of a commit's reply)."""
    moves = [re.match(_MOVE_LINE, line) for line in lines]
    return sorted(int(m[1]) for m in moves if m is not None and m[2] == "n1" and m[3] == "n2")


def planned_moves(n1: NodeProc) -> list[int]:
    """The partitions the staged join will move from n1 to n2, once n1 sees n2 joining."""
    with Client([parse_address(n1.client)]) as client:

        def joining() -> bool:
            return any(m.name == "n2" and m.state == "joining" for m in client.status().members)

        wait_for(joining, START_TIMEOUT_S, "n1 to see n2 joining")
        return moves_of(client.cluster_plan().lines)


def keys_into(partitions: int, targets: list[int], count: int) -> list[bytes]:
    """`count` keys hashing into `targets`, spread evenly (round robin over the targets)."""
    ring = Ring(partitions, ("n1",) * partitions)
    found: dict[int, list[bytes]] = {q: [] for q in targets}
    want = math.ceil(count / len(targets))
    n = 0
    while any(len(keys) < want for keys in found.values()):
        key = b"k%09d" % n
        n += 1
        keys = found.get(ring.partition_for_key(BUCKET, key))
        if keys is not None and len(keys) < want:
            keys.append(key)
    return [found[targets[i % len(targets)]][i // len(targets)] for i in range(count)]


async def load(address: str, keys: list[bytes], args: argparse.Namespace) -> float:
    rng = random.Random(args.seed)
    values = [rng.randbytes(args.value_size) for _ in range(16)]
    todo = iter(enumerate(keys))
    started = time.perf_counter()
    async with AsyncClient(address, timeout_s=60.0) as client:

        async def worker() -> None:
            for n, key in todo:  # one iterator shared by the workers: each key is written once
                await client.put(BUCKET, key, values[n % len(values)], w=1, dw=0)

        workers = [worker() for _ in range(args.load_concurrency)]
        await asyncio.wait_for(asyncio.gather(*workers), args.timeout)
    return time.perf_counter() - started


def stored_entry_bytes(value_size: int) -> int:
    """What one loaded entry counts for in a transfer batch: `entry_bytes` of its stored object (one
    sibling, written by an actor id as long as a node's)."""
    content = Content(b"\0" * value_size, last_modified_ms=time.time_ns() // 1_000_000)
    obj = SiblingSet[Content]().update(EMPTY_VV, "n1#0123456789abcdef", content, content.last_modified_ms)
    return entry_bytes(BUCKET, b"k%09d" % 0, encode_object(obj))


# -- the moves ---------------------------------------------------------------------------------------------


class Sampler:
    """Both nodes' event counters from /metrics every SAMPLE_S, in a thread, until stopped."""

    def __init__(self, nodes: list[NodeProc], t0: float) -> None:
        self.urls = [f"http://{node.ready['http']}/metrics" for node in nodes]
        self.t0 = t0
        self.samples: list[tuple[float, list[dict[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                scraped = []
                for url in self.urls:
                    with urllib.request.urlopen(url, timeout=2.0) as response:
                        text = response.read().decode()
                    scraped.append({m[1]: float(m[2]) for m in _EVENT_LINE.finditer(text)})
                self.samples.append((time.monotonic() - self.t0, scraped))
            self._stop.wait(SAMPLE_S)

    def first(self, node: int, event: str, at_least: float) -> float | None:
        """The first sample time at which node's counter reached `at_least`."""
        found = next((t for t, s in self.samples if s[node].get(event, 0.0) >= at_least), None)
        return None if found is None else round(found, 2)

    def rises(self, node: int, event: str) -> list[float]:
        """The sample times at which node's counter rose, once per unit it rose by."""
        values = pairwise([0.0] + [s[node].get(event, 0.0) for _, s in self.samples])
        rises = zip(self.samples, values, strict=True)
        return [round(t, 2) for (t, _), (a, b) in rises for _ in range(int(b - a))]

    def gap_max(self) -> float:
        return round(max((b - a for a, b in pairwise([0.0] + [t for t, _ in self.samples])), default=0.0), 2)


def watch_moves(n1: NodeProc, version_before: int, timeout_s: float, t0: float) -> tuple[float, float]:
    """Seconds after t0 until every move is complete, and until the ring flipped (none pending)."""
    complete: float | None = None
    deadline = time.monotonic() + timeout_s
    with Client([parse_address(n1.client)]) as client:
        while True:
            reply = client.cluster_transfers()
            now = time.monotonic() - t0
            flipped = not reply.moves and reply.ring_version > version_before
            if complete is None and (flipped or (reply.moves and all(m.complete for m in reply.moves))):
                complete = now
            if flipped and complete is not None:
                return complete, now
            if time.monotonic() > deadline:
                raise TimeoutError(f"the moves did not finish within {timeout_s:g} s: {reply}")
            time.sleep(POLL_S)


def run_moves(n1: NodeProc, n2: NodeProc, args: argparse.Namespace, entries: int) -> dict[str, Any]:
    """Commit the join, wait for the moves to complete and the ring to flip; the timings."""
    with Client([parse_address(n1.client)]) as client:
        version_before = client.cluster_transfers().ring_version
    cpu_before = [cpu_seconds(n.proc.pid) for n in (n1, n2)]
    load_before = os.getloadavg()
    t0 = time.monotonic()
    with Sampler([n1, n2], t0) as sampler:
        with Client([parse_address(n1.client)]) as client:
            committed = client.cluster_commit()
        commit_s = time.monotonic() - t0
        complete_s, flip_s = watch_moves(n1, version_before, args.timeout, t0)
        cpu = [cpu_seconds(n.proc.pid) - before for n, before in zip((n1, n2), cpu_before, strict=True)]
        time.sleep(2 * SAMPLE_S)  # one more sample after the end
    return {
        "commit_call_s": round(commit_s, 3),
        "complete_s": round(complete_s, 3),
        "flip_s": round(flip_s, 3),
        "first_entry_s": sampler.first(1, "transfer.entries_received", 1),
        "last_entry_s": sampler.first(1, "transfer.entries_received", entries),
        "finished_s": sampler.rises(0, "transfer.finished.ownership"),
        "sample_gap_max_s": sampler.gap_max(),
        "cpu_s": {"n1": round(cpu[0], 2), "n2": round(cpu[1], 2)},
        "moved_partitions": moves_of(committed.lines),
        "loadavg_at_commit": load_before,
    }


# -- the run -----------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    count = math.ceil(args.mib * MIB / args.value_size)
    with two_nodes(args) as (n1, n2):
        moving = planned_moves(n1)
        if len(moving) < args.moving:
            raise SystemExit(f"the join moves {len(moving)} partitions ({moving}), fewer than --moving")
        targets = moving[: args.moving]
        load_s = asyncio.run(load(n1.client, keys_into(args.partitions, targets, count), args))
        moves = run_moves(n1, n2, args, count)
        if not set(targets) <= set(moves["moved_partitions"]):
            raise SystemExit(f"the commit moved {moves['moved_partitions']}, not the loaded {targets}")
        counters = {n.name: stop_node(n) for n in (n1, n2)}  # now: the logs go with the temp dir
    moved = count * stored_entry_bytes(args.value_size)
    first, last = moves["first_entry_s"], moves["last_entry_s"]
    data_s = last - first if first is not None and last is not None and last > first else None
    return {
        "entries": count,
        "entries_received": counters["n2"].get("transfer.entries_received"),
        "value_bytes": count * args.value_size,
        "moved_bytes": moved,
        "loaded_partitions": targets,
        "load_s": round(load_s, 2),
        "moves": moves,
        "mib_per_s": round(moved / MIB / moves["complete_s"], 2),
        "mb_per_s": round(moved / 1e6 / moves["complete_s"], 2),
        "data_phase_mib_per_s": round(moved / MIB / data_s, 2) if data_s else None,
        "counters": counters,
        "config": {name: getattr(args, name) for name in CONFIG}
        | {"n_val": 1, "transfer_settings": settings_in_effect(args.limits), "cpus": os.cpu_count()}
        | {"loadavg_at_end": os.getloadavg(), "python": platform.python_version()},
    }


def summary(result: dict[str, Any]) -> str:
    moves, config = result["moves"], result["config"]
    return "\n".join([
        f"storage {config['storage']}, Q {config['partitions']}, n_val 1; transfer settings "
        f"{json.dumps(config['transfer_settings'])}",
        f"loaded {result['entries']} x {config['value_size']} B into partitions {result['loaded_partitions']}"
        f" in {result['load_s']} s; the join moved {moves['moved_partitions']}",
        f"moved {result['moved_bytes'] / MIB:.1f} MiB ({result['entries_received']} entries received)",
        f"commit -> all moves complete {moves['complete_s']} s, ring flipped {moves['flip_s']} s",
        f"first entry received {moves['first_entry_s']} s, last {moves['last_entry_s']} s; transfers "
        f"finished at {moves['finished_s']} s (largest gap between samples {moves['sample_gap_max_s']} s)",
        f"throughput {result['mib_per_s']} MiB/s ({result['mb_per_s']} MB/s) commit to complete; "
        f"data phase {result['data_phase_mib_per_s']} MiB/s",
        f"CPU during the moves: n1 (sender) {moves['cpu_s']['n1']} s, n2 (receiver) {moves['cpu_s']['n2']} s;"
        f" load average at the commit {moves['loadavg_at_commit']}",
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = bench(args)
    sys.stderr.write(summary(result))
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
