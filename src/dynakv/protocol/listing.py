"""Key and bucket listings across the cluster: a full scan of every node, as Riak does it.

The coordinator (the node a client asked) scans its own storage and sends a `KeyListRequest` to every
other ring member; each answers with its names in `KeyListReply` batches, the last one marked done.
The coordinator unions the names and finishes when every member answered or failed, or at the
deadline. The listing is then only as good as its coverage: every partition must have at least one of
its primaries among the nodes that answered whole, else the names may miss keys and the client gets
UNAVAILABLE (TIMEOUT at the deadline) rather than a silently partial list.

A node lists a name when at least one of its copies holds a live (non-tombstone) sibling, so a
deleted key is not listed once its tombstone reached the replicas. Every local partition is scanned,
fallback data included: a key a fallback keeps for a crashed primary is a live key too.

The scan runs synchronously inside `Node.handle`, so a large store stalls the node's loop while it
runs; moving it to a storage thread (answering in batches as pages are read) is future work.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from dynakv.core.errors import DecodeError
from dynakv.core.objects import decode_object, visible_siblings
from dynakv.core.preflist import primaries
from dynakv.protocol.data_path import DataPath
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.messages import (
    Failure,
    FailureKind,
    KeyListReply,
    KeyListRequest,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
)
from dynakv.protocol.ports import StorageEngine, StorageError
from dynakv.protocol.requests import check_bucket, check_timeout

# Entries read from storage per scan call: bounds the memory one page takes, whatever the partition.
SCAN_PAGE_ENTRIES: Final = 1000
# Listings one node coordinates at once; each is a full scan of the cluster, so a few are plenty.
LISTINGS_MAX: Final = 16
# What a name costs in a frame beyond its own bytes (a msgpack bin header is at most 5 bytes).
NAME_OVERHEAD_BYTES: Final = 5


# -- the replica side --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Collector:
    """The names found so far. Stops growing just past `names_max`: one name more than allowed is
    enough for the coordinator to refuse the listing, and no more is ever held."""

    bucket: bytes | None
    names_max: int
    # A key greater than any valid key (keys are at most key_bytes_max bytes): scanning from
    # (bucket, after_keys) skips the rest of a bucket already listed.
    after_keys: bytes
    counters: Counter[str]
    names: set[bytes] = field(default_factory=set)

    def full(self) -> bool:
        return len(self.names) > self.names_max

    def is_live(self, value: bytes) -> bool:
        try:
            obj = decode_object(value)
        except (DecodeError, AssertionError):
            # A corrupt copy is skipped, not fatal: other replicas of the key still answer for it.
            self.counters["listing_errors"] += 1
            return False
        return bool(visible_siblings(obj))


def _scan_partition(storage: StorageEngine, partition: int, found: _Collector) -> None:
    bucket = found.bucket
    # Keys are never empty (requests.check_names), so starting strictly after (bucket, b"") skips none.
    start: tuple[bytes, bytes] | None = None if bucket is None else (bucket, b"")
    while True:
        page = storage.scan(partition, start, SCAN_PAGE_ENTRIES)
        for entry_bucket, key, value in page:
            if bucket is not None and entry_bucket != bucket:
                return  # entries come in (bucket, key) order: the bucket's range is over
            start = (entry_bucket, key)
            name = entry_bucket if bucket is None else key
            if name not in found.names and found.is_live(value):
                found.names.add(name)
                if found.full():
                    return
            if bucket is None and name in found.names:
                # Listing buckets: one live key is enough, skip the bucket's other keys. max() keeps
                # the scan moving forward even past an over-long key.
                start = max(start, (entry_bucket, found.after_keys))
                break
        else:
            if len(page) < SCAN_PAGE_ENTRIES:
                return


def collect_names(
    storage: StorageEngine,
    bucket: bytes | None,
    *,
    names_max: int,
    key_bytes_max: int,
    counters: Counter[str],
) -> set[bytes]:
    """The keys of `bucket` (bucket names when None) with a live sibling in local storage; at most
    names_max + 1 of them. Raises StorageError when the engine fails."""
    found = _Collector(bucket, names_max, b"\xff" * (key_bytes_max + 1), counters)
    for partition in storage.partitions():
        _scan_partition(storage, partition, found)
        if found.full():
            break
    return found.names


def batches(names: Sequence[bytes], bytes_max: int) -> list[tuple[bytes, ...]]:
    """Split names into batches whose names take under `bytes_max` bytes on the wire each. A name
    larger than that alone goes alone (it cannot be split). Never empty: the done batch must exist."""
    out: list[tuple[bytes, ...]] = []
    current: list[bytes] = []
    size = 0
    for name in names:
        cost = len(name) + NAME_OVERHEAD_BYTES
        if current and size + cost >= bytes_max:
            out.append(tuple(current))
            current, size = [], 0
        current.append(name)
        size += cost
    if current or not out:
        out.append(tuple(current))
    return out


def answer(data: DataPath, src: str, msg: KeyListRequest) -> list[Effect]:
    """The replica side: scan local storage and send the names back in numbered batches."""
    try:
        names = collect_names(
            data.storage,
            msg.bucket,
            names_max=data.limits.listing_names_max,
            key_bytes_max=data.limits.key_bytes_max,
            counters=data.counters,
        )
    except StorageError:
        data.counters["replica_errors"] += 1
        return [Send(src, KeyListReply(msg.req_id, (), done=True, ok=False))]
    parts = batches(sorted(names), data.limits.transfer_batch_bytes_max)
    last = len(parts) - 1
    return [Send(src, KeyListReply(msg.req_id, part, i == last, True, i)) for i, part in enumerate(parts)]


# -- the coordinator side ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Progress:
    """The batches one node sent so far; whole when the done batch and every one before it arrived."""

    seqs: set[int] = field(default_factory=set)
    last_seq: int | None = None

    def whole(self) -> bool:
        return self.last_seq is not None and len(self.seqs) == self.last_seq + 1


@dataclass(slots=True)
class _Listing:
    ref: int
    bucket: bytes | None
    n_val: int
    deadline_ms: int
    waiting: dict[str, _Progress] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    names: set[bytes] = field(default_factory=set)

    def what(self) -> str:
        return "listing buckets" if self.bucket is None else f"listing keys of bucket {self.bucket!r}"


def uncovered_partitions(data: DataPath, n_val: int, finished: set[str]) -> list[int]:
    """The partitions none of whose primaries answered whole."""
    ring = data.ring
    return [p for p in range(ring.partitions) if not any(n in finished for n in primaries(ring, p, n_val))]


class Listings:
    """The listings this node coordinates, and its answers to other coordinators."""

    def __init__(self, data: DataPath) -> None:
        self.data = data
        self._listings: dict[int, _Listing] = {}
        self._next_id = 0

    def pending(self) -> int:
        return len(self._listings)

    def _refusal(self, request: ListKeysRequest | ListBucketsRequest) -> Failure | None:
        if isinstance(request, ListKeysRequest):
            failure = check_bucket(request.bucket, self.data.limits)
            if failure is not None:
                return failure
        failure = check_timeout(request.timeout_ms)
        if failure is None and len(self._listings) >= LISTINGS_MAX:
            why = f"{LISTINGS_MAX} listings in flight on this node, the limit; retry later"
            failure = Failure(FailureKind.OVERLOADED, why)
        return failure

    def start(
        self, ref: int, request: ListKeysRequest | ListBucketsRequest, now_ms: int, out: list[Effect]
    ) -> None:
        data = self.data
        data.counters[f"requests.{type(request).__name__}"] += 1
        failure = self._refusal(request)
        if failure is not None:
            out.append(Reply(ref, failure))
            return
        bucket = request.bucket if isinstance(request, ListKeysRequest) else None
        # Buckets listing: the cluster's n_val decides coverage (a bucket with a smaller n_val of its
        # own may then be missed while nodes are down).
        n_val = data.cluster.n_val if bucket is None else data.props_for(bucket).n_val
        timeout_ms = request.timeout_ms or data.timing.request_timeout_ms
        self._next_id += 1
        req_id = self._next_id
        listing = _Listing(ref, bucket, n_val, now_ms + timeout_ms)
        self._listings[req_id] = listing
        for member in data.ring.members:
            if member == data.name:
                self._scan_local(listing)
            elif member in data.down:
                listing.failed.add(member)
            else:
                listing.waiting[member] = _Progress()
                out.append(Send(member, KeyListRequest(req_id, bucket)))
        self._settle(req_id, listing, now_ms, out)

    def _scan_local(self, listing: _Listing) -> None:
        limits = self.data.limits
        try:
            names = collect_names(
                self.data.storage,
                listing.bucket,
                names_max=limits.listing_names_max,
                key_bytes_max=limits.key_bytes_max,
                counters=self.data.counters,
            )
        except StorageError:
            self.data.counters["replica_errors"] += 1
            listing.failed.add(self.data.name)
            return
        listing.names |= names
        listing.finished.add(self.data.name)

    def on_message(
        self, src: str, msg: KeyListRequest | KeyListReply, now_ms: int, out: list[Effect]
    ) -> None:
        if isinstance(msg, KeyListRequest):
            out.extend(answer(self.data, src, msg))
            return
        listing = self._listings.get(msg.req_id)
        progress = None if listing is None else listing.waiting.get(src)
        if listing is None or progress is None:
            return  # late (the listing finished), duplicate after done, or from a node never asked
        if not msg.ok:
            del listing.waiting[src]
            listing.failed.add(src)
        else:
            listing.names.update(msg.names)
            progress.seqs.add(msg.seq)
            if msg.done:
                progress.last_seq = msg.seq
            if progress.whole():
                del listing.waiting[src]
                listing.finished.add(src)
        self._settle(msg.req_id, listing, now_ms, out)

    def on_tick(self, now_ms: int, out: list[Effect]) -> None:
        for req_id, listing in sorted(self._listings.items()):
            self._settle(req_id, listing, now_ms, out)

    def on_peer_down(self, node: str, now_ms: int, out: list[Effect]) -> None:
        """A lost connection: its batches may never come, so the node counts as failed."""
        for req_id, listing in sorted(self._listings.items()):
            if listing.waiting.pop(node, None) is not None:
                listing.failed.add(node)
                self._settle(req_id, listing, now_ms, out)

    def _settle(self, req_id: int, listing: _Listing, now_ms: int, out: list[Effect]) -> None:
        names_max = self.data.limits.listing_names_max
        if len(listing.names) > names_max:
            why = f"{listing.what()}: more than {names_max} names, the limit; the listing is too large"
            reply: ListReply | Failure = Failure(FailureKind.OVERLOADED, why)
        elif listing.waiting and now_ms < listing.deadline_ms:
            return
        else:
            reply = self._covered_reply(listing, timed_out=bool(listing.waiting))
        del self._listings[req_id]
        if isinstance(reply, Failure):
            self.data.counters[f"failures.{reply.kind.value}"] += 1
        out.append(Reply(listing.ref, reply))

    def _covered_reply(self, listing: _Listing, *, timed_out: bool) -> ListReply | Failure:
        uncovered = uncovered_partitions(self.data, listing.n_val, listing.finished)
        if not uncovered:
            return ListReply(tuple(sorted(listing.names)))
        partitions = self.data.ring.partitions
        why = (
            f"{listing.what()}: {len(uncovered)} partitions had no replica answer "
            f"(of {partitions}, n_val {listing.n_val}); "
            f"failed or unreachable: {', '.join(sorted(listing.failed)) or 'none'}"
        )
        if timed_out:
            why += f"; no answer in time: {', '.join(sorted(listing.waiting))}"
        kind = FailureKind.TIMEOUT if timed_out else FailureKind.UNAVAILABLE
        return Failure(kind, why)
