"""Storage engine throughput, per engine, printed as JSON (not a test; numbers go in docs/adr/0002).

    .venv/bin/python benchmarks/storage_bench.py [--keys 20000] [--durable-keys 2000] [--engines sqlite,lmdb]

Engines: every registered one, plus `lmdb-nosync` (the lmdb engine with sync_mode="nosync", which does
not keep the power-loss contract; measured to show what that contract costs). Each engine starts empty
in a fresh temporary directory. Workloads, in this order on one engine:
  buffered_put   `--keys` puts with durable=False, then one flush (included in the time)
  get            `--keys` gets of present keys in random order
  scan           every partition read in full with one scan each (entries/s)
  scan_paged     every partition read in pages of 100 (entries/s)
  durable_put    `--durable-keys` puts, each durable=True (each one an fsync)
  batch_durable  `--keys` puts in write_batch calls of 100, each batch durable (puts/s)
Keys spread over 64 partitions and 8 buckets; values are 200 B to 1 KiB of random bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable

from dynakv.protocol.ports import PutOp, StorageEngine
from dynakv.storage.registry import ENGINES, open_engine

VARIANTS: dict[str, tuple[str, dict[str, str]]] = {name: (name, {}) for name in ENGINES}
VARIANTS["lmdb-nosync"] = ("lmdb", {"sync_mode": "nosync"})
PARTITIONS = 64
BATCH = 100
Entry = tuple[int, bytes, bytes, bytes]


def make_entries(count: int, rng: random.Random, tag: bytes) -> list[Entry]:
    return [
        (
            rng.randrange(PARTITIONS),
            b"bucket-%d" % rng.randrange(8),
            tag + b"-%08d" % i,
            rng.randbytes(rng.randint(200, 1024)),
        )
        for i in range(count)
    ]


def timed(work: Callable[[], int]) -> dict[str, float]:
    start = time.perf_counter()
    ops = work()
    seconds = time.perf_counter() - start
    return {"ops": ops, "seconds": round(seconds, 3), "ops_per_s": round(ops / seconds) if seconds else 0}


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def bench_engine(variant: str, keys: int, durable_keys: int, seed: int) -> dict[str, object]:
    name, options = VARIANTS[variant]
    rng = random.Random(seed)
    entries = make_entries(keys, rng, b"k")
    durable = make_entries(durable_keys, rng, b"d")
    batched = make_entries(keys, rng, b"b")
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        store = open_engine(name, os.path.join(tmp, "store"), **options)
        try:
            results = run_workloads(store, entries, durable, batched, rng)
            store.flush()
            results["disk_bytes"] = directory_bytes(tmp)
        finally:
            store.close()
    return results


def run_workloads(
    store: StorageEngine, entries: list[Entry], durable: list[Entry], batched: list[Entry], rng: random.Random
) -> dict[str, object]:
    def buffered_put() -> int:
        for entry in entries:
            store.put(*entry)
        store.flush()
        return len(entries)

    def get() -> int:
        order = entries[:]
        rng.shuffle(order)
        for partition, bucket, key, value in order:
            assert store.get(partition, bucket, key) == value
        return len(order)

    def scan() -> int:
        return sum(len(store.scan(p)) for p in range(PARTITIONS))

    def scan_paged() -> int:
        total = 0
        for partition in range(PARTITIONS):
            after: tuple[bytes, bytes] | None = None
            while page := store.scan(partition, start_after=after, limit=100):
                total += len(page)
                after = page[-1][0], page[-1][1]
        return total

    def durable_put() -> int:
        for entry in durable:
            store.put(*entry, durable=True)
        return len(durable)

    def batch_durable() -> int:
        for i in range(0, len(batched), BATCH):
            store.write_batch([PutOp(*e) for e in batched[i : i + BATCH]], durable=True)
        return len(batched)

    workloads = [buffered_put, get, scan, scan_paged, durable_put, batch_durable]
    return {work.__name__: timed(work) for work in workloads}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--durable-keys", type=int, default=2_000)
    parser.add_argument("--engines", default=",".join(VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "keys": args.keys,
        "durable_keys": args.durable_keys,
        "engines": {
            name: bench_engine(name, args.keys, args.durable_keys, args.seed)
            for name in args.engines.split(",")
        },
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
