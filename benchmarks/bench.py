"""Cluster throughput and latency through the native client, printed as JSON (not a test).

    .venv/bin/python benchmarks/bench.py [--storage sqlite] [--seconds 10] [--concurrency 64]
        [--connections 1] [--value-size 100] [--w W] [--dw DW] [--r R] [--count N] [--cluster DIR]

Without --cluster it starts a 3-node cluster with `dynakv dev --storage ENGINE` in a temporary
directory, waits until every node answers a get with r=all, and stops it at the end (SIGTERM to dev's
pid, which stops its nodes; SIGKILL after a deadline), whatever happened. With --cluster DIR it uses
the running cluster described by DIR/cluster.json and stops nothing.

Two phases, each bounded by --seconds (and by --count operations, if given):
  puts   blind puts of distinct keys new to this run, `--value-size` random bytes each; --w, --dw
  gets   gets of keys written by the put phase, chosen at random (seeded), quorum --r
`--concurrency` requests are in flight at all times, spread over `--connections` AsyncClient
connections (one per node in turn). Quorums left out take the bucket defaults (quorum); they take
integers or one/quorum/all. Latency is measured per request in the client, from the call to the reply.

Output: {"puts": {"ops", "seconds", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "errors"}, "gets":
{...}, "config": {...}}; "errors" maps an error type to its count (failed requests are not in the
latencies). The load generator is one Python process on one event loop: on a small machine it shares
the cores with the nodes, which the numbers include.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynakv.client import AsyncClient, DynakvClientError
from dynakv.storage.registry import ENGINES

BUCKET = b"bench"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
Quorum = int | str


def quorum(text: str) -> Quorum:
    return int(text) if text.isdigit() else text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default="sqlite", choices=ENGINES, help="engine of a cluster started here")
    p.add_argument("--nodes", type=int, default=3, help="nodes of the cluster started here (default 3)")
    p.add_argument("--cluster", type=Path, help="use the running cluster in DIR (DIR/cluster.json)")
    p.add_argument("--seconds", type=float, default=10.0, help="time limit per phase (default 10)")
    p.add_argument("--count", type=int, help="operation limit per phase (default: none)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    p.add_argument("--connections", type=int, default=1, help="client connections (default 1)")
    p.add_argument("--value-size", type=int, default=100, help="bytes per value (default 100)")
    p.add_argument("--w", type=quorum, help="put quorum (default: the bucket's, quorum)")
    p.add_argument("--dw", type=quorum, help="durable-write quorum (default: the bucket's, quorum)")
    p.add_argument("--r", type=quorum, help="get quorum (default: the bucket's, quorum)")
    p.add_argument("--seed", type=int, default=1, help="seed for values and get keys (default 1)")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.connections < 1 or args.seconds <= 0 or args.value_size < 0:
        p.error("--concurrency and --connections must be >= 1, --seconds > 0, --value-size >= 0")
    return args


# -- the cluster -------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def _cluster_file(root: Path, dev: subprocess.Popen[bytes] | None) -> dict[str, Any] | None:
    if dev is not None and dev.poll() is not None:
        log = root.with_name(root.name + "-dev.log")
        raise RuntimeError(f"dynakv dev exited with {dev.returncode}:\n{log.read_text(errors='replace')}")
    try:
        data: dict[str, Any] = json.loads((root / "cluster.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if all(_alive(node["pid"]) for node in data["nodes"]) else None


def _stop(dev: subprocess.Popen[bytes]) -> None:
    if dev.poll() is None:
        dev.send_signal(signal.SIGTERM)
    try:
        dev.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        dev.kill()
        dev.wait()


@contextlib.contextmanager
def cluster_addresses(args: argparse.Namespace) -> Iterator[list[str]]:
    """The client addresses of the nodes: of the cluster in --cluster, or of one started here."""
    if args.cluster is not None:
        data = _cluster_file(args.cluster, None)
        if data is None:
            raise SystemExit(f"no running cluster in {args.cluster} (cluster.json missing or nodes dead)")
        yield [node["client"] for node in data["nodes"]]
        return
    with tempfile.TemporaryDirectory(prefix="dynakv-bench-") as tmp:
        root = Path(tmp) / "cluster"
        command = [sys.executable, "-m", "dynakv", "dev", "--nodes", str(args.nodes), "--data", str(root)]
        with open(Path(tmp) / "cluster-dev.log", "wb") as log:
            dev = subprocess.Popen(
                [*command, "--storage", args.storage], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            data = _wait_for(lambda: _cluster_file(root, dev), START_TIMEOUT_S, "cluster.json")
            yield [node["client"] for node in data["nodes"]]
        finally:
            _stop(dev)


async def wait_connected(addresses: list[str]) -> None:
    """Until a get with r=all succeeds through every node (every peer link is up both ways)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for address in addresses:
        while True:
            try:
                async with AsyncClient(address, timeout_s=5.0) as client:
                    await client.get(b"_bench_probe", b"_probe", r="all")
                break
            except DynakvClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


# -- the load ----------------------------------------------------------------------------------------------


@dataclass
class Phase:
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def report(self) -> dict[str, Any]:
        done = sorted(self.latencies_ns)

        def pct(q: float) -> float | None:
            if not done:
                return None
            return round(done[min(len(done) - 1, math.ceil(q * len(done)) - 1)] / 1e6, 3)

        return {
            "ops": len(done),
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(len(done) / self.seconds, 1) if self.seconds else None,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "errors": dict(sorted(self.errors.items())),
        }


async def run_phase(
    clients: list[AsyncClient],
    concurrency: int,
    seconds: float,
    count: int | None,
    operation: Callable[[AsyncClient, int], Awaitable[object]],
) -> Phase:
    """`concurrency` workers call `operation(client, n)` (n = 0, 1, ... across workers) until the time
    or the count runs out; worker i uses client i mod len(clients)."""
    phase = Phase()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds
    limit = count if count is not None else sys.maxsize

    async def worker(client: AsyncClient) -> None:
        nonlocal issued
        while issued < limit and time.perf_counter() < deadline:
            n = issued
            issued += 1
            t0 = time.perf_counter_ns()
            try:
                await operation(client, n)
            except DynakvClientError as err:
                phase.errors[type(err).__name__] += 1
                continue
            phase.latencies_ns.append(time.perf_counter_ns() - t0)

    await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    return phase


def key_of(run: bytes, n: int) -> bytes:
    return b"%s-%010d" % (run, n)


async def bench(args: argparse.Namespace, addresses: list[str]) -> dict[str, Any]:
    await wait_connected(addresses)
    # Fresh keys on every run: a blind put to a key an earlier run wrote (same --cluster) would add a
    # sibling to it, and the objects, and the work, would grow from run to run.
    run = secrets.token_hex(4).encode()
    rng = random.Random(args.seed)
    values = [rng.randbytes(args.value_size) for _ in range(64)]
    clients = [
        await AsyncClient.connect(addresses[i % len(addresses)], timeout_s=30.0)
        for i in range(args.connections)
    ]
    try:

        async def put(client: AsyncClient, n: int) -> object:
            return await client.put(BUCKET, key_of(run, n), values[n % len(values)], w=args.w, dw=args.dw)

        puts = await run_phase(clients, args.concurrency, args.seconds, args.count, put)
        written = len(puts.latencies_ns) + sum(puts.errors.values())
        if written == 0:
            raise SystemExit("the put phase wrote nothing; no keys to get")

        async def get(client: AsyncClient, n: int) -> object:
            return await client.get(BUCKET, key_of(run, rng.randrange(written)), r=args.r)

        gets = await run_phase(clients, args.concurrency, args.seconds, args.count, get)
    finally:
        for client in clients:
            await client.close()
    return {"puts": puts.report(), "gets": gets.report(), "run": run.decode()}


def config_of(args: argparse.Namespace, addresses: list[str], loop_name: str) -> dict[str, Any]:
    return {
        "cluster": str(args.cluster) if args.cluster else f"dynakv dev --nodes {args.nodes} (started here)",
        "storage": None if args.cluster else args.storage,
        "nodes": len(addresses),
        "concurrency": args.concurrency,
        "connections": args.connections,
        "value_size": args.value_size,
        "w": args.w,
        "dw": args.dw,
        "r": args.r,
        "seconds": args.seconds,
        "count": args.count,
        "client_loop": loop_name,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    loop_name = "asyncio"
    with contextlib.suppress(ImportError):  # without uvloop, the plain asyncio loop
        loop_factory, loop_name = importlib.import_module("uvloop").new_event_loop, "uvloop"
    with cluster_addresses(args) as addresses, asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(bench(args, addresses))
    result["config"] = config_of(args, addresses, loop_name) | {"keys": f"{result.pop('run')}-NNNNNNNNNN"}
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
