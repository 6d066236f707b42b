"""Serving and spreading bucket props: the node's side of protocol/bucket_props.py.

A change made on one node is stored durably in the meta space (`bucket_props/<bucket>`), then pushed to
every other ring member. Pushes can be lost (a node down, a crash), so every `gossip_interval_ms` each node
also sends the digest of its table to the next ring peer in sorted round-robin order; a peer whose digest
differs pushes its whole table with `reply_wanted`, and the digest's sender merges it and pushes back what
the push lacked or held older. Until gossip proper arrives, that is how a node that missed a change (or
was down when it was made) catches up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from dynakv.core.config import N_VAL_MAX
from dynakv.core.errors import DecodeError
from dynakv.core.ring import Ring
from dynakv.protocol.bucket_props import (
    META_PREFIX,
    PropsSet,
    PropsTable,
    batches,
    check_change,
    decode_entry,
    encode_entry,
    meta_name,
    supersedes,
)
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.messages import (
    BucketPropsDigest,
    BucketPropsEntry,
    BucketPropsPush,
    BucketPropsReply,
    Failure,
    FailureKind,
    GetBucketProps,
    ResetBucketProps,
    SetBucketProps,
)
from dynakv.protocol.ports import MetaPutOp, StorageEngine, StorageError
from dynakv.protocol.requests import check_bucket

PropsRequest = GetBucketProps | SetBucketProps | ResetBucketProps
PropsMessage = BucketPropsPush | BucketPropsDigest

_LOAD_PAGE = 1000


class PropsService:
    """Owns the node's `PropsTable`: loads it from storage, answers props requests, syncs with peers."""

    def __init__(
        self,
        name: str,
        ring: Ring,
        storage: StorageEngine,
        settings: Settings,
        counters: Counter[str],
    ) -> None:
        self.name = name
        self.ring = ring
        self.storage = storage
        self.limits = settings.limits
        self.gossip_interval_ms = settings.timing.gossip_interval_ms
        self.table = PropsTable(
            settings.cluster.bucket_defaults(), settings.buckets, settings.limits.buckets_with_props_max
        )
        self.counters = counters
        self._next_gossip_ms = 0
        self._gossip_turn = 0
        self._load()

    def _load(self) -> None:
        """Read the persisted entries. A corrupt one is skipped and counted: a peer's digest differs
        then, so sync brings it back. A storage error propagates: a node must not serve without them."""
        start: bytes | None = None
        while True:
            page = self.storage.meta_scan(META_PREFIX, start_after=start, limit=_LOAD_PAGE)
            for name, data in page:
                try:
                    entry = decode_entry(data)
                except DecodeError:
                    self.counters["bucket_props.corrupt"] += 1
                    continue
                if meta_name(entry.bucket) != name or not self.table.adopt(entry):
                    self.counters["bucket_props.corrupt"] += 1
            if len(page) < _LOAD_PAGE:
                return
            start = page[-1][0]

    # -- client requests -----------------------------------------------------------------------------

    def on_request(self, request: PropsRequest, now_ms: int, out: list[Effect]) -> BucketPropsReply | Failure:
        bucket = request.bucket
        failure = check_bucket(bucket, self.limits)
        if failure is not None:
            return failure
        if isinstance(request, GetBucketProps):
            return BucketPropsReply(self.table.shown(bucket))
        if self.table.full_for(bucket):
            if isinstance(request, ResetBucketProps):
                return BucketPropsReply(self.table.shown(bucket))  # nothing held, nothing to reset
            why = f"{self.table.limit} buckets already have props of their own, the limit"
            return Failure(FailureKind.OVERLOADED, why, field="buckets_with_props_max")
        current = self.table.props_set(bucket)
        if isinstance(request, ResetBucketProps):
            props: PropsSet | None = None
        else:
            checked = check_change(
                bucket,
                request.props,
                current,
                self.table.base(bucket),
                self.table.defaults,
                n_val_max=min(N_VAL_MAX, self.ring.partitions),
                ring_nodes=len(self.ring.members),
            )
            if isinstance(checked, Failure):
                return checked
            if checked == (current or ()):
                return BucketPropsReply(self.table.shown(bucket))  # no change: no new entry to spread
            props = checked
        entry = BucketPropsEntry(bucket, props, self.table.next_stamp(now_ms), self.name)
        try:
            self.storage.meta_put(meta_name(bucket), encode_entry(entry), durable=True)
        except StorageError as err:
            return Failure(FailureKind.STORAGE, f"local storage failed: {err}")
        taken = self.table.adopt(entry)
        assert taken, f"a checked local change must be adopted: {entry!r}"
        for peer in self._peers():
            out.append(Send(peer, BucketPropsPush((entry,), reply_wanted=False)))
        return BucketPropsReply(self.table.shown(bucket))

    # -- peers ------------------------------------------------------------------------------------------

    def _peers(self) -> list[str]:
        return [member for member in self.ring.members if member != self.name]

    def on_message(self, src: str, msg: PropsMessage, out: list[Effect]) -> None:
        match msg:
            case BucketPropsDigest(digest):
                if digest != self.table.digest():
                    self._push(src, self.table.entries(), reply_wanted=True, out=out)
            case BucketPropsPush(entries, reply_wanted):
                self._merge(entries)
                if reply_wanted:
                    back = self.table.newer_than(entries)
                    if back:
                        self._push(src, back, reply_wanted=False, out=out)

    def _push(
        self, dst: str, entries: Iterable[BucketPropsEntry], *, reply_wanted: bool, out: list[Effect]
    ) -> None:
        for run in batches(entries, self.limits.transfer_batch_bytes_max):
            out.append(Send(dst, BucketPropsPush(run, reply_wanted)))

    def _merge(self, entries: Iterable[BucketPropsEntry]) -> None:
        """Persist, then adopt, the entries newer than the table's (durably: a restart keeps them)."""
        newest: dict[bytes, BucketPropsEntry] = {}
        for entry in entries:
            held = newest.get(entry.bucket)
            if held is None or supersedes(entry, held):
                newest[entry.bucket] = entry
        taken = [
            entry
            for _, entry in sorted(newest.items())
            if self.table.is_newer(entry) and self.table.check(entry) is not None
        ]
        if not taken:
            return
        ops = [MetaPutOp(meta_name(entry.bucket), encode_entry(entry)) for entry in taken]
        try:
            self.storage.write_batch(ops, durable=True)
        except StorageError:
            # Not adopted either, so the digests still differ and the next sync round retries.
            self.counters["bucket_props.storage_errors"] += 1
            return
        for entry in taken:
            if self.table.adopt(entry):
                self.counters["bucket_props.merged"] += 1
            else:
                self.counters["bucket_props.refused"] += 1

    def on_tick(self, now_ms: int, down: set[str], out: list[Effect]) -> None:
        """Every gossip interval, the digest to the next peer that is up, in sorted round-robin order.

        A node with an empty table stays quiet: it has nothing to give, and any peer holding entries
        sends it digests in turn and so learns that it lacks them. A cluster without bucket props of
        its own thus sends no props traffic at all."""
        if now_ms < self._next_gossip_ms or not len(self.table):
            return
        self._next_gossip_ms = now_ms + self.gossip_interval_ms
        peers = self._peers()
        for _ in range(len(peers)):
            peer = peers[self._gossip_turn % len(peers)]
            self._gossip_turn += 1
            if peer not in down:
                out.append(Send(peer, BucketPropsDigest(self.table.digest())))
                return
