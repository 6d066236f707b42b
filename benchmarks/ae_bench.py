"""Anti-entropy over two replicas of a ring's partitions: time, and bytes exchanged against bytes that
differ (not a test; the numbers go in benchmarks/README.md).

    .venv/bin/python benchmarks/ae_bench.py [--storage sqlite|memory|lmdb] [--keys 100000]
        [--partitions 64] [--value-bytes 100] [--divergence 0.01] [--seed 1] [--seconds 600] [--json]
        [--segments 1024] [--branching 32]

Setup. Two replicas, "a" and "b", each an `AntiEntropy` over its own storage engine (sqlite: each in a
fresh temporary directory, removed afterwards), on a ring of `--partitions` partitions with n_val 2, so
both are primaries of every partition. `--keys` keys of one bucket go to the partition the ring hashes
them to; each is written on both replicas as the data path writes it: a one-sibling object (actor: the
partition's first primary) with a `--value-bytes` random value, encoded with `encode_object`. Loading
uses buffered write batches and is not part of any measurement.

Phases, timed separately:
  build    every tree of both replicas built from a scan of storage (`TreeStore.step`, as Ticks do)
  diverge  `--divergence` of the keys changed on the replicas, through storage and `on_write` as the
           data path does, in equal thirds: a newer version (descending from the common one) on one
           replica, the key missing on one replica (never written there: no tombstone), and a concurrent
           sibling written on each replica; the side is chosen at random per key (seeded)
  repair   a.repair() over all partitions, run to the end: Ticks and messages passed by hand, every
           message encoded with the real wire codec (`encode_peer`) and decoded before delivery; bytes
           are those frames plus the 4-byte length prefix, i.e. what would cross the socket
  again    a second a.repair(): identical trees, so the roots alone should move and nothing be repaired

"Bytes that differ" is the sum, over the keys whose stored objects differ between the replicas, of the
encoded size of each replica's object (0 where it is missing): what a repair that knew the differing
keys in advance, and shipped each side's object to the other, would have to move. The ratio is bytes
exchanged / bytes that differ.

At the end every key is checked on both replicas: the objects must be equal, and for each diverged key
equal to the DVV join of what the replicas held before the repair. Any mismatch, a failed exchange, or
a second repair that moves keys exits 1. Going over `--seconds` (all phases together) aborts with exit 2.

Output: a table on stderr; with --json, the figures as JSON on stdout.
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
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, cast

from dynakv.core.claim import claim
from dynakv.core.errors import ConfigError
from dynakv.core.merkle import BRANCHING_DEFAULT, SEGMENTS_DEFAULT, MerkleTree
from dynakv.core.objects import Content, StoredObject, decode_object, encode_object
from dynakv.core.preflist import primaries
from dynakv.core.ring import Ring
from dynakv.protocol.ae_peer import storage_merge
from dynakv.protocol.anti_entropy import AeSettings, AntiEntropy
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.messages import AeKeysReply, AeKeysRequest, AeNodesReply, AeNodesRequest, AeObjects
from dynakv.protocol.ports import PutOp, ScanEntry, StorageEngine
from dynakv.protocol.replica import EMPTY
from dynakv.storage.registry import ENGINES, open_engine
from dynakv.wire.codec import decode_peer, encode_peer
from dynakv.wire.framing import HEADER_BYTES

NODES = ("a", "b")
N_VAL = 2
BUCKET = b"bench"
BASE_MS = 1_700_000_000_000
LOAD_BATCH = 1_000
TICK_MS = 100
KINDS = ("newer", "missing", "concurrent")
AeMsg = AeNodesRequest | AeNodesReply | AeKeysRequest | AeKeysReply | AeObjects
Position = tuple[int, bytes]  # (partition, key); the bucket is always BUCKET


class Aborted(Exception):
    """The run went over --seconds."""


@dataclass(slots=True)
class Deadline:
    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def check(self, phase: str) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed > self.seconds:
            raise Aborted(f"{phase}: {elapsed:.1f} s elapsed, over --seconds {self.seconds:g}")


class MeteredStorage:
    """A storage engine that counts its scans (calls, entries returned, seconds) and delegates the rest."""

    def __init__(self, inner: StorageEngine) -> None:
        self._inner = inner
        self.scans = 0
        self.scanned = 0
        self.scan_seconds = 0.0

    def reset(self) -> None:
        self.scans, self.scanned, self.scan_seconds = 0, 0, 0.0

    def scan(
        self, partition: int, start_after: tuple[bytes, bytes] | None = None, limit: int | None = None
    ) -> list[ScanEntry]:
        start = time.perf_counter()
        page = self._inner.scan(partition, start_after=start_after, limit=limit)
        self.scan_seconds += time.perf_counter() - start
        self.scans += 1
        self.scanned += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass(slots=True)
class Replica:
    name: str
    engine: StorageEngine
    meter: MeteredStorage
    ae: AntiEntropy

    def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        """A local write as the data path makes it: store, then tell the trees."""
        old = self.engine.get(partition, BUCKET, key)
        if value is None:
            self.engine.delete(partition, BUCKET, key)
        else:
            self.engine.put(partition, BUCKET, key, value)
        self.ae.on_write(partition, BUCKET, key, old, value)


@dataclass(slots=True)
class Traffic:
    """What one repair moved: messages and frame bytes per direction and per message type."""

    messages: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    codec_seconds: float = 0.0
    max_frame: int = 0

    def report(self) -> dict[str, Any]:
        directions = [d for d in self.messages if "->" in d]
        kinds = [k for k in self.messages if "->" not in k]
        return {
            "messages": sum(self.messages[d] for d in directions),
            "bytes": sum(self.bytes[d] for d in directions),
            "by_direction": {d: {"messages": self.messages[d], "bytes": self.bytes[d]} for d in directions},
            "by_type": {k: {"messages": self.messages[k], "bytes": self.bytes[k]} for k in sorted(kinds)},
            "max_frame_bytes": self.max_frame,
            "codec_seconds": round(self.codec_seconds, 3),
        }


def new_object(actor: str, value: bytes, now_ms: int, base: StoredObject = EMPTY) -> StoredObject:
    """A put of `value` coordinated by `actor` with the context of `base` (supersedes its siblings)."""
    return base.update(base.context(), actor, Content(value, last_modified_ms=now_ms), now_ms)


def open_replicas(args: argparse.Namespace, ring: Ring, tmp: Path | None) -> list[Replica]:
    settings = AeSettings(
        enabled=False, timeout_ms=3_600_000, segments=args.segments, branching=args.branching
    )
    replicas = []
    for name in NODES:
        engine = open_engine(args.storage, None if tmp is None else str(tmp / name))
        meter = MeteredStorage(engine)
        metered = cast(StorageEngine, meter)
        ae = AntiEntropy(name, ring, N_VAL, metered, storage_merge(metered), settings=settings)
        replicas.append(Replica(name, engine, meter, ae))
    return replicas


def load(replicas: list[Replica], ring: Ring, args: argparse.Namespace, rng: random.Random) -> list[Position]:
    """Write every key, identically, on every replica; return the keys' positions."""
    positions: list[Position] = []
    batch: list[PutOp] = []
    for i in range(args.keys):
        key = b"key-%08d" % i
        partition = ring.partition_for_key(BUCKET, key)
        actor = primaries(ring, partition, N_VAL)[0]
        data = encode_object(new_object(actor, rng.randbytes(args.value_bytes), BASE_MS))
        positions.append((partition, key))
        batch.append(PutOp(partition, BUCKET, key, data))
        if len(batch) == LOAD_BATCH or i == args.keys - 1:
            for replica in replicas:
                replica.engine.write_batch(batch, durable=False)
            batch = []
    for replica in replicas:
        replica.engine.flush()
    return positions


def build_trees(replicas: list[Replica], deadline: Deadline) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for replica in replicas:
        replica.meter.reset()
        start = time.perf_counter()
        replica.ae.start()
        budget = replica.ae.settings.build_entries_per_tick
        while replica.ae.trees.building():
            replica.ae.trees.step(budget, 0)
            deadline.check(f"tree build on {replica.name}")
        result[replica.name] = {
            "seconds": round(time.perf_counter() - start, 3),
            "trees": len(replica.ae.trees.partitions()),
            "entries_scanned": replica.meter.scanned,
        }
    result["seconds"] = round(sum(result[r.name]["seconds"] for r in replicas), 3)
    return result


def diverge(
    replicas: list[Replica], positions: list[Position], fraction: float, value_bytes: int, rng: random.Random
) -> dict[Position, str]:
    """Change `fraction` of the keys, a third of them per kind; return the kind of each changed key."""
    chosen = rng.sample(positions, round(len(positions) * fraction))
    kinds: dict[Position, str] = {}
    for i, (partition, key) in enumerate(chosen):
        kind = KINDS[i % len(KINDS)]
        kinds[(partition, key)] = kind
        data = replicas[0].engine.get(partition, BUCKET, key)
        assert data is not None
        common = decode_object(data)
        now_ms = BASE_MS + 1_000 + i
        if kind == "concurrent":
            for replica in replicas:
                sibling = new_object(replica.name, rng.randbytes(value_bytes), now_ms, common)
                replica.write(partition, key, encode_object(sibling))
            continue
        replica = rng.choice(replicas)
        if kind == "newer":
            newer = new_object(replica.name, rng.randbytes(value_bytes), now_ms, common)
            replica.write(partition, key, encode_object(newer))
        else:
            replica.write(partition, key, None)
    return kinds


def snapshot(replicas: list[Replica], partitions: int) -> dict[Position, list[bytes | None]]:
    """Every key whose stored bytes differ between the replicas, with each replica's bytes."""
    differing: dict[Position, list[bytes | None]] = {}
    for partition in range(partitions):
        sides = [{k: v for _, k, v in r.engine.scan(partition)} for r in replicas]
        for key in sorted(set().union(*sides)):
            values = [side.get(key) for side in sides]
            if any(v != values[0] for v in values[1:]):
                differing[(partition, key)] = values
    return differing


def run_repair(replicas: list[Replica], deadline: Deadline, phase: str) -> tuple[Traffic, dict[str, Any]]:
    """`repair()` on the first replica over all its partitions, messages passed by hand until done."""
    by_name = {r.name: r for r in replicas}
    initiator = replicas[0].ae
    traffic = Traffic()
    queue: deque[tuple[str, str, AeMsg]] = deque()
    before = {r.name: Counter(r.ae.counters) for r in replicas}

    def post(src: str, out: list[Effect]) -> None:
        for effect in out:
            assert isinstance(effect, Send), effect
            msg = effect.msg
            assert isinstance(msg, AeMsg), msg
            start = time.perf_counter()
            frame = encode_peer(msg)
            decoded = decode_peer(frame)
            traffic.codec_seconds += time.perf_counter() - start
            assert decoded == msg, f"the codec changed a {type(msg).__name__}"
            assert isinstance(decoded, AeMsg)
            size = HEADER_BYTES + len(frame)
            for bucket in (f"{src}->{effect.dst}", type(msg).__name__):
                traffic.messages[bucket] += 1
                traffic.bytes[bucket] += size
            traffic.max_frame = max(traffic.max_frame, size)
            queue.append((src, effect.dst, decoded))

    for replica in replicas:
        replica.meter.reset()
    start = time.perf_counter()
    initiator.repair()
    now_ms = 0
    while not initiator.progress().finished:
        now_ms += TICK_MS
        for replica in replicas:
            out: list[Effect] = []
            replica.ae.on_tick(now_ms, out)
            post(replica.name, out)
        while queue:
            src, dst, msg = queue.popleft()
            out = []
            by_name[dst].ae.on_message(src, msg, now_ms, out)
            post(dst, out)
            deadline.check(phase)
    seconds = time.perf_counter() - start
    progress = initiator.progress()
    counters = {r.name: r.ae.counters - before[r.name] for r in replicas}
    keys_repaired = sum(c["ae.keys_repaired"] for c in counters.values())
    detail: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "exchanges": counters[replicas[0].name]["ae.exchanges_started"],
        "exchanges_failed": progress.exchanges_failed,
        "keys_repaired": keys_repaired,
        "keys_repaired_by_replica": {name: c["ae.keys_repaired"] for name, c in counters.items()},
        "scanned_entries": {r.name: r.meter.scanned for r in replicas},
        "scan_seconds": round(sum(r.meter.scan_seconds for r in replicas), 3),
        "ae_counters": {
            name: {k.removeprefix("ae."): v for k, v in sorted(c.items()) if v}
            for name, c in counters.items()
        },
    }
    return traffic, detail


def verify(
    replicas: list[Replica], partitions: int, expected: dict[Position, StoredObject], keys: int
) -> list[str]:
    """Every key equal on every replica, and each diverged key the join of what the replicas held."""
    problems: list[str] = []
    seen = 0
    for partition in range(partitions):
        sides = [{k: v for _, k, v in r.engine.scan(partition)} for r in replicas]
        names = set().union(*sides)
        seen += len(names)
        for key in names:
            values = [side.get(key) for side in sides]
            if any(v is None for v in values):
                problems.append(f"partition {partition} key {key!r}: missing on some replica")
                continue
            objects = [decode_object(v) for v in values if v is not None]
            if any(o != objects[0] for o in objects[1:]):
                problems.append(f"partition {partition} key {key!r}: replicas differ")
            want = expected.get((partition, key))
            if want is not None and objects[0] != want:
                problems.append(f"partition {partition} key {key!r}: not the join of the replicas")
    if seen != keys:
        problems.append(f"{seen} keys stored, expected {keys}")
    return problems


def run(args: argparse.Namespace, tmp: Path | None) -> dict[str, Any]:
    deadline = Deadline(args.seconds)
    rng = random.Random(args.seed)
    ring = claim(list(NODES), args.partitions, N_VAL)
    replicas = open_replicas(args, ring, tmp)
    try:
        start = time.perf_counter()
        positions = load(replicas, ring, args, rng)
        load_seconds = time.perf_counter() - start
        deadline.check("load")
        build = build_trees(replicas, deadline)
        kinds = diverge(replicas, positions, args.divergence, args.value_bytes, rng)
        differing = snapshot(replicas, args.partitions)
        assert set(differing) == set(kinds), "the divergence step changed other keys than it chose"
        expected = {
            pos: reduce(lambda x, y: x.sync(y), [decode_object(v) for v in values if v is not None])
            for pos, values in differing.items()
        }
        differ_bytes = sum(len(v) for values in differing.values() for v in values if v is not None)
        data_bytes = {
            r.name: sum(len(v) for p in range(args.partitions) for _, _, v in r.engine.scan(p))
            for r in replicas
        }
        deadline.check("diverge")
        first, first_detail = run_repair(replicas, deadline, "repair")
        second, second_detail = run_repair(replicas, deadline, "second repair")
        problems = verify(replicas, args.partitions, expected, len(positions))
        if first_detail["exchanges_failed"] or second_detail["exchanges_failed"]:
            problems.append("an exchange did not complete")
        if second_detail["keys_repaired"]:
            problems.append(f"the second repair repaired {second_detail['keys_repaired']} keys")
    finally:
        for replica in replicas:
            replica.engine.close()
    exchanged = first.report()
    return {
        "config": {
            "storage": args.storage,
            "keys": args.keys,
            "partitions": args.partitions,
            "value_bytes": args.value_bytes,
            "divergence": args.divergence,
            "seed": args.seed,
            "replicas": len(NODES),
            "segments": replicas[0].ae.settings.segments,
            "branching": replicas[0].ae.settings.branching,
            "scan_page_entries": replicas[0].ae.settings.scan_page_entries,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "load_seconds": round(load_seconds, 3),
        "data_bytes": data_bytes,
        "build": build,
        "diverged": {
            "keys": len(differing),
            "by_kind": dict(Counter(kinds.values())),
            "bytes_differing": differ_bytes,
        },
        "repair": {**first_detail, **exchanged},
        "ratio_exchanged_to_differing": round(exchanged["bytes"] / differ_bytes, 3) if differ_bytes else None,
        "second_repair": {**second_detail, **second.report()},
        "verified": not problems,
        "problems": problems[:20],
    }


def table(report: dict[str, Any]) -> str:
    cfg, rep, again, div = report["config"], report["repair"], report["second_repair"], report["diverged"]
    lines = [
        f"anti-entropy: {cfg['keys']} keys, {cfg['partitions']} partitions, {cfg['value_bytes']} B values,"
        f" {cfg['divergence']:.2%} diverged, {cfg['storage']}, seed {cfg['seed']},"
        f" trees {cfg['segments']}/{cfg['branching']}",
        f"  load (not measured)     {report['load_seconds']:9.2f} s",
        f"  tree build (a + b)      {report['build']['seconds']:9.2f} s"
        f"   ({report['build']['a']['entries_scanned']} entries each)",
        f"  diverged keys           {div['keys']:9d}     {div['by_kind']}",
        f"  bytes differing         {div['bytes_differing']:9d}     (data per replica: "
        f"{report['data_bytes']['a']} B)",
        f"  repair                  {rep['seconds']:9.2f} s   ({rep['exchanges']} exchanges, storage scans "
        f"{rep['scan_seconds']:.2f} s, codec {rep['codec_seconds']:.2f} s)",
    ]
    for direction, row in rep["by_direction"].items():
        lines.append(f"    {direction:<20} {row['messages']:9d} msgs {row['bytes']:11d} B")
    lines.append(f"    {'total':<20} {rep['messages']:9d} msgs {rep['bytes']:11d} B")
    for kind, row in rep["by_type"].items():
        lines.append(f"      {kind:<18} {row['messages']:9d} msgs {row['bytes']:11d} B")
    verdict = "yes" if report["verified"] else "NO: " + "; ".join(report["problems"])
    lines += [
        f"  entries scanned         {rep['scanned_entries']}",
        f"  ratio exchanged/differ  {report['ratio_exchanged_to_differing']:9.2f}",
        f"  keys repaired           {rep['keys_repaired']:9d}     {rep['keys_repaired_by_replica']}",
        f"  second repair           {again['seconds']:9.2f} s   {again['messages']} msgs {again['bytes']} B,"
        f" {again['keys_repaired']} keys repaired",
        f"  verified                {verdict}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default="sqlite", choices=ENGINES)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=64)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--divergence", type=float, default=0.01, help="fraction of the keys changed")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--segments", type=int, default=SEGMENTS_DEFAULT, help="tree segments per partition")
    p.add_argument("--branching", type=int, default=BRANCHING_DEFAULT, help="tree branching factor")
    p.add_argument("--seconds", type=float, default=600.0, help="abort (exit 2) past this many seconds")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = p.parse_args(argv)
    if args.keys < 1 or args.partitions < 1 or args.value_bytes < 0 or not 0 <= args.divergence <= 1:
        p.error("need --keys >= 1, --partitions >= 1, --value-bytes >= 0, 0 <= --divergence <= 1")
    try:
        MerkleTree(args.segments, args.branching)
    except ConfigError as e:
        p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.storage == "memory":
            report = run(args, None)
        else:
            with tempfile.TemporaryDirectory(prefix="ae-bench-") as tmp:
                report = run(args, Path(tmp))
    except Aborted as e:
        sys.stderr.write(f"ae_bench: ABORTED, {e}\n")
        return 2
    sys.stderr.write(table(report) + "\n")
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0 if report["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
