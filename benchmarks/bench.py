"""Cluster throughput and latency through the native client or the Riak HTTP API, printed as JSON.

    .venv/bin/python benchmarks/bench.py [--protocol native|http|both] [--storage sqlite]
        [--seconds 10] [--concurrency 64] [--connections 1] [--value-size 100] [--w W] [--dw DW]
        [--r R] [--count N] [--cluster DIR]

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

--protocol http drives the same workload through the Riak HTTP API (`PUT|GET /buckets/bench/keys/K`,
`application/octet-stream`, quorums as query parameters; a put must answer 204, a get 200) with one
aiohttp session: keep-alive, at most --concurrency connections open (so never more requests in flight
than that), worker i sending to node i mod --connections. --protocol both runs native, then HTTP, on
the same cluster, each with keys of its own.

Output: {"puts": {"ops", "seconds", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "errors"}, "gets":
{...}, "config": {...}}; "errors" maps an error type to its count (failed requests are not in the
latencies). With --protocol both: {"native": {"puts", "gets"}, "http": {"puts", "gets"},
"ops_per_s": {"puts": {"native", "http"}, "gets": {...}}, "config"}, and a small side-by-side table on
stderr. The load generator is one Python process on one event loop: on a small machine it shares the
cores with the nodes, which the numbers include.
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
from typing import Any, TypeVar

import aiohttp

from dynakv.client import AsyncClient, DynakvClientError
from dynakv.storage.registry import ENGINES

BUCKET = b"bench"
PROTOCOLS = ("native", "http", "both")
C = TypeVar("C")  # a client: an AsyncClient, or an HttpTarget
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
Quorum = int | str


def quorum(text: str) -> Quorum:
    return int(text) if text.isdigit() else text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--protocol", default="native", choices=PROTOCOLS, help="native client, Riak HTTP API, or both"
    )
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


@dataclass
class Nodes:
    client: list[str]  # native client addresses, "host:port"
    http: list[str]  # HTTP API addresses, "host:port"


def _nodes_of(data: dict[str, Any]) -> Nodes:
    return Nodes(
        [node["client"] for node in data["nodes"]], [node.get("http") or "" for node in data["nodes"]]
    )


@contextlib.contextmanager
def cluster_nodes(args: argparse.Namespace) -> Iterator[Nodes]:
    """The nodes' addresses: of the cluster in --cluster, or of one started here."""
    if args.cluster is not None:
        data = _cluster_file(args.cluster, None)
        if data is None:
            raise SystemExit(f"no running cluster in {args.cluster} (cluster.json missing or nodes dead)")
        yield _nodes_of(data)
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
            yield _nodes_of(data)
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


class HttpStatusError(Exception):
    """An HTTP answer with another status than the operation's success status."""


# What a failed request raises: counted by type in "errors", left out of the latencies.
REQUEST_ERRORS = (DynakvClientError, HttpStatusError, aiohttp.ClientError, asyncio.TimeoutError)


async def run_phase(
    clients: list[C],
    concurrency: int,
    seconds: float,
    count: int | None,
    operation: Callable[[C, int], Awaitable[object]],
) -> Phase:
    """`concurrency` workers call `operation(client, n)` (n = 0, 1, ... across workers) until the time
    or the count runs out; worker i uses client i mod len(clients)."""
    phase = Phase()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds
    limit = count if count is not None else sys.maxsize

    async def worker(client: C) -> None:
        nonlocal issued
        while issued < limit and time.perf_counter() < deadline:
            n = issued
            issued += 1
            t0 = time.perf_counter_ns()
            try:
                await operation(client, n)
            except REQUEST_ERRORS as err:
                phase.errors[str(err) if isinstance(err, HttpStatusError) else type(err).__name__] += 1
                continue
            phase.latencies_ns.append(time.perf_counter_ns() - t0)

    await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    return phase


def key_of(run: bytes, n: int) -> bytes:
    return b"%s-%010d" % (run, n)


def workload(args: argparse.Namespace) -> tuple[bytes, random.Random, list[bytes]]:
    """A run id for fresh keys, the seeded generator of get keys, and the values to put."""
    # Fresh keys on every run: a blind put to a key an earlier run wrote (same --cluster) would add a
    # sibling to it, and the objects, and the work, would grow from run to run.
    run = secrets.token_hex(4).encode()
    rng = random.Random(args.seed)
    return run, rng, [rng.randbytes(args.value_size) for _ in range(64)]


def written_by(puts: Phase) -> int:
    written = len(puts.latencies_ns) + sum(puts.errors.values())
    if written == 0:
        raise SystemExit(f"the put phase wrote nothing ({puts.errors}); no keys to get")
    return written


async def bench_native(args: argparse.Namespace, addresses: list[str]) -> dict[str, Any]:
    await wait_connected(addresses)
    run, rng, values = workload(args)
    clients = [
        await AsyncClient.connect(addresses[i % len(addresses)], timeout_s=30.0)
        for i in range(args.connections)
    ]
    try:

        async def put(client: AsyncClient, n: int) -> object:
            return await client.put(BUCKET, key_of(run, n), values[n % len(values)], w=args.w, dw=args.dw)

        puts = await run_phase(clients, args.concurrency, args.seconds, args.count, put)
        written = written_by(puts)

        async def get(client: AsyncClient, n: int) -> object:
            return await client.get(BUCKET, key_of(run, rng.randrange(written)), r=args.r)

        gets = await run_phase(clients, args.concurrency, args.seconds, args.count, get)
    finally:
        for client in clients:
            await client.close()
    return {"puts": puts.report(), "gets": gets.report(), "run": run.decode()}


# -- the same load over the Riak HTTP API ------------------------------------------------------------------


@dataclass
class HttpTarget:
    """One node's HTTP API, reached through the shared session (its keep-alive connection pool)."""

    session: aiohttp.ClientSession
    base: str  # "http://host:port"

    async def put(self, key: bytes, value: bytes, query: dict[str, str]) -> None:
        url = f"{self.base}/buckets/{BUCKET.decode()}/keys/{key.decode()}"
        headers = {"Content-Type": "application/octet-stream"}
        async with self.session.put(url, data=value, params=query, headers=headers) as response:
            await response.read()
            if response.status != 204:
                raise HttpStatusError(f"put: HTTP {response.status}")

    async def get(self, key: bytes, query: dict[str, str]) -> bytes:
        url = f"{self.base}/buckets/{BUCKET.decode()}/keys/{key.decode()}"
        async with self.session.get(url, params=query) as response:
            body = await response.read()
            if response.status != 200:
                raise HttpStatusError(f"get: HTTP {response.status}")
            return body


def quorums(**given: Quorum | None) -> dict[str, str]:
    return {name: str(value) for name, value in given.items() if value is not None}


async def wait_http(session: aiohttp.ClientSession, addresses: list[str]) -> None:
    """Until a get with r=all through each node's HTTP API is answered (404 for the probe key)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    for address in addresses:
        url = f"http://{address}/buckets/_bench_probe/keys/_probe"
        while True:
            try:
                async with session.get(url, params={"r": "all"}) as response:
                    await response.read()
                    if response.status in (200, 404):
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the HTTP API of {address} did not answer a get with r=all")
            await asyncio.sleep(0.05)


async def bench_http(args: argparse.Namespace, addresses: list[str]) -> dict[str, Any]:
    if not all(addresses):
        raise SystemExit("cluster.json gives no http address for some node")
    run, rng, values = workload(args)
    # At most --concurrency connections, kept alive between requests; one per worker in practice.
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        await wait_http(session, addresses)
        targets = [
            HttpTarget(session, f"http://{addresses[i % len(addresses)]}") for i in range(args.connections)
        ]
        put_query = quorums(w=args.w, dw=args.dw)
        get_query = quorums(r=args.r)

        async def put(target: HttpTarget, n: int) -> object:
            return await target.put(key_of(run, n), values[n % len(values)], put_query)

        puts = await run_phase(targets, args.concurrency, args.seconds, args.count, put)
        written = written_by(puts)

        async def get(target: HttpTarget, n: int) -> object:
            return await target.get(key_of(run, rng.randrange(written)), get_query)

        gets = await run_phase(targets, args.concurrency, args.seconds, args.count, get)
    return {"puts": puts.report(), "gets": gets.report(), "run": run.decode()}


async def bench(args: argparse.Namespace, nodes: Nodes) -> dict[str, dict[str, Any]]:
    """The results of each protocol asked for, in order (native first)."""
    results: dict[str, dict[str, Any]] = {}
    if args.protocol in ("native", "both"):
        results["native"] = await bench_native(args, nodes.client)
    if args.protocol in ("http", "both"):
        results["http"] = await bench_http(args, nodes.http)
    return results


def side_by_side(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'':6} {'puts/s':>9} {'put p99 ms':>11} {'gets/s':>9} {'get p99 ms':>11}"]
    for protocol, result in results.items():
        puts, gets = result["puts"], result["gets"]
        lines.append(
            f"{protocol:6} {puts['ops_per_s']!s:>9} {puts['p99_ms']!s:>11} "
            f"{gets['ops_per_s']!s:>9} {gets['p99_ms']!s:>11}"
        )
    return "\n".join(lines) + "\n"


def config_of(args: argparse.Namespace, addresses: list[str], loop_name: str) -> dict[str, Any]:
    return {
        "protocol": args.protocol,
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
    with cluster_nodes(args) as nodes, asyncio.Runner(loop_factory=loop_factory) as runner:
        results = runner.run(bench(args, nodes))
    keys = {protocol: f"{result.pop('run')}-NNNNNNNNNN" for protocol, result in results.items()}
    config = config_of(args, nodes.client, loop_name)
    if args.protocol == "both":
        output: dict[str, Any] = dict(results)
        output["ops_per_s"] = {
            phase: {protocol: result[phase]["ops_per_s"] for protocol, result in results.items()}
            for phase in ("puts", "gets")
        }
        output["config"] = config | {"keys": keys}
        sys.stderr.write(side_by_side(results))
    else:
        output = results[args.protocol] | {"config": config | {"keys": keys[args.protocol]}}
    sys.stdout.write(json.dumps(output, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
