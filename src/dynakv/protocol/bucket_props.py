"""Cluster-wide bucket properties: checking a change, Riak's echo, and the table nodes merge.

A bucket's effective props layer the cluster defaults (`ClusterConfig.bucket_defaults`) under the static
props of node.json (`Settings.buckets`) under the props set through the API. The set props of a bucket
travel as one `BucketPropsEntry`: the (name, value) pairs set, or None after a reset (a tombstone, so a
reset propagates like a change). Entries merge last-writer-wins by stamp `(stamp_ms, node)`: two
different entries never tie, so merging is commutative, associative and idempotent and every node that
has seen the same entries holds the same table (and digest). docs/adr/0006-bucket-properties.md.

Pure: no storage, no messages. `protocol/props_service.py` persists entries and moves them between nodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from dynakv.core import codec
from dynakv.core.config import DEFAULT_QUORUM, N_VAL_MAX, SYMBOLIC_QUORUMS, BucketProps
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.protocol.messages import BucketPropsEntry, Failure, FailureKind, PropValue

PropsSet = tuple[tuple[str, PropValue], ...]

META_PREFIX: Final = b"bucket_props/"
ENTRY_TAG: Final = "bucket_props"
QUORUM_PROPS: Final = ("r", "w", "dw", "rw", "pr", "pw")
FLAG_PROPS: Final = ("allow_mult", "last_write_wins", "basic_quorum", "notfound_ok")
SETTABLE: Final = ("n_val", *QUORUM_PROPS, *FLAG_PROPS)
QUORUM_WORDS: Final = (*SYMBOLIC_QUORUMS, DEFAULT_QUORUM)
_WORDS: Final = ", ".join(QUORUM_WORDS)

# Hard ceilings for decoding only (a peer's or the disk's bytes); the configured limits sit below them.
_BUCKET_DECODE_MAX: Final = 65_536
_NODE_DECODE_MAX: Final = 1024
_QUORUM_DECODE_MAX: Final = 1 << 31
_STAMP_MAX: Final = (1 << 63) - 1
# Rough bytes of one entry's encoding beyond its bucket and node names, to split pushes by size.
_ENTRY_OVERHEAD_BYTES: Final = 16 + 24 * len(SETTABLE)


def _fixed_props(bucket: bytes) -> dict[str, object]:
    """Riak's props that dynakv shows but does not let a client change (fresh lists and dicts each
    call, so a caller may mutate what it got)."""
    return {
        "name": bucket.decode("utf-8", errors="replace"),
        "chash_keyfun": {"mod": "riak_core_util", "fun": "chash_std_keyfun"},
        "linkfun": {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"},
        "old_vclock": 86400,
        "young_vclock": 20,
        "big_vclock": 50,
        "small_vclock": 50,
        "precommit": [],
        "postcommit": [],
        # dynakv keeps a dot per sibling (dotted version vectors) whatever a client asks.
        "dvv_enabled": True,
        "write_once": False,
    }


# -- checking a change -------------------------------------------------------------------------------


def _bad(prop: str, message: str) -> Failure:
    return Failure(FailureKind.BAD_REQUEST, message, field=prop)


def _same(value: object, expected: object) -> bool:
    # Strict: True must not pass for 1 (nor 86400.0 for 86400), as JSON keeps them apart.
    return type(value) is type(expected) and value == expected


def _check_value(prop: str, value: object, n_val_max: int) -> Failure | None:
    """The type (and for n_val the range) of one settable prop; quorum ranges need the new n_val and
    are checked once the whole change is laid over the current props."""
    if prop == "n_val":
        if isinstance(value, bool) or not isinstance(value, int):
            return _bad(prop, f"n_val: expected an integer, got {value!r}")
        if not 1 <= value <= n_val_max:
            return _bad(prop, f"n_val: {value} is outside 1..{n_val_max}")
    elif prop in FLAG_PROPS:
        if not isinstance(value, bool):
            return _bad(prop, f"{prop}: expected true or false, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | str):
        return _bad(prop, f"{prop}: expected an integer or one of {_WORDS}, got {value!r}")
    elif isinstance(value, str) and value not in QUORUM_WORDS:
        return _bad(prop, f"{prop}: {value!r} is not a quorum (use an integer or one of {_WORDS})")
    return None


def _check_prop(bucket: bytes, prop: str, value: object, n_val_max: int) -> Failure | None:
    if prop in SETTABLE:
        return _check_value(prop, value, n_val_max)
    fixed = _fixed_props(bucket)
    if prop in fixed:
        if _same(value, fixed[prop]):
            return None  # a client may PUT back what it read
        return _bad(prop, f"{prop}: dynakv does not support changing it (it is always {fixed[prop]!r})")
    return _bad(prop, f"{prop}: not a bucket property dynakv knows")


def check_change(
    bucket: bytes,
    changes: Mapping[str, object],
    current: PropsSet | None,
    base: BucketProps,
    defaults: BucketProps,
    *,
    n_val_max: int,
    ring_nodes: int,
) -> PropsSet | Failure:
    """The bucket's new set props after `changes`, or the BAD_REQUEST naming the first wrong prop.

    `current` is what was set before (None: nothing), `base` the props under them (static or cluster
    defaults), `n_val_max` min(N_VAL_MAX, partitions), `ring_nodes` the distinct nodes of the ring.
    """
    for prop in sorted(changes):
        failure = _check_prop(bucket, prop, changes[prop], n_val_max)
        if failure is not None:
            return failure
    n_val = changes.get("n_val")
    if isinstance(n_val, int) and n_val > ring_nodes:
        why = f"n_val: {n_val} is above the {ring_nodes} distinct nodes in the ring"
        return _bad("n_val", why + " (replicas would share nodes)")
    merged: dict[str, PropValue] = dict(current or ())
    for prop in sorted(changes):
        if prop in SETTABLE:
            value = changes[prop]
            assert isinstance(value, int | str)  # _check_value passed (bool is an int)
            merged[prop] = value
    props_set = tuple(sorted(merged.items()))
    try:
        layered(base, props_set, defaults)
    except ConfigError as err:
        return _bad(err.field, f"{err} (with the bucket's other props)")
    return props_set


def layered(base: BucketProps, props_set: PropsSet | None, defaults: BucketProps) -> BucketProps:
    """`props_set` over `base`, every "default" quorum resolved against `defaults`; ConfigError when
    the result is inconsistent (a quorum above n_val...)."""
    props = base
    if props_set:
        changes: dict[str, Any] = dict(props_set)
        props = dataclasses.replace(base, **changes)
    return props.over(defaults)


def shown(bucket: bytes, base: BucketProps, props_set: PropsSet | None) -> dict[str, object]:
    """Riak's props GET for the bucket: every prop, quorums exactly as set (1 stays 1, "all" stays
    "all"), the unset ones as the static props or the cluster defaults have them."""
    props = _fixed_props(bucket)
    for prop in SETTABLE:
        props[prop] = getattr(base, prop)
    props.update(props_set or ())
    return dict(sorted(props.items()))


# -- encoding of an entry (persistence and wire) ------------------------------------------------------


def entry_to_payload(entry: BucketPropsEntry) -> list[Any]:
    props = None if entry.props is None else [[name, value] for name, value in entry.props]
    return [entry.bucket, props, entry.stamp_ms, entry.node]


def _value_from_payload(prop: str, value: Any, field: str) -> PropValue:
    if prop in FLAG_PROPS:
        return codec.want_bool(value, field)
    if prop == "n_val":
        return codec.want_int(value, field, 1, N_VAL_MAX)
    if isinstance(value, str):
        if value not in QUORUM_WORDS:
            raise DecodeError(f"{field}: {value[:32]!r} is not a quorum")
        return value
    return codec.want_int(value, field, 0, _QUORUM_DECODE_MAX)


def _props_from_payload(payload: Any, field: str) -> PropsSet | None:
    if payload is None:
        return None
    rows = codec.want_list(payload, field)
    if len(rows) > len(SETTABLE):
        raise DecodeError(f"{field}: {len(rows)} props, more than there are")
    props: list[tuple[str, PropValue]] = []
    for i, row in enumerate(rows):
        name_payload, value = codec.want_tuple(row, f"{field}[{i}]", 2)
        name = codec.want_str(name_payload, f"{field}[{i}].name")
        if name not in SETTABLE:
            raise DecodeError(f"{field}[{i}]: {name[:32]!r} is not a settable prop")
        if props and name <= props[-1][0]:
            raise DecodeError(f"{field}[{i}]: props not sorted and distinct at {name!r}")
        props.append((name, _value_from_payload(name, value, f"{field}[{i}].value")))
    return tuple(props)


def entry_from_payload(payload: Any, field: str = "entry") -> BucketPropsEntry:
    """An entry from its payload; anything `entry_to_payload` could not have made raises DecodeError."""
    bucket, props, stamp_ms, node = codec.want_tuple(payload, field, 4)
    bucket = codec.want_bytes(bucket, f"{field}.bucket")
    node = codec.want_str(node, f"{field}.node")
    if not bucket or len(bucket) > _BUCKET_DECODE_MAX:
        raise DecodeError(f"{field}.bucket: {len(bucket)} bytes")
    if not node or len(node) > _NODE_DECODE_MAX:
        raise DecodeError(f"{field}.node: {len(node)} characters")
    return BucketPropsEntry(
        bucket,
        _props_from_payload(props, f"{field}.props"),
        codec.want_int(stamp_ms, f"{field}.stamp_ms", 0, _STAMP_MAX),
        node,
    )


def supersedes(new: BucketPropsEntry, old: BucketPropsEntry) -> bool:
    """Whether `new` wins over `old` for the same bucket: the newer stamp. A node never stamps twice
    alike, but a faulty peer could, so equal stamps fall back on the encodings: the order stays total
    and every node picks the same entry whatever order the two arrive in."""
    if new.stamp != old.stamp:
        return new.stamp > old.stamp
    return codec.pack(entry_to_payload(new)) > codec.pack(entry_to_payload(old))


def meta_name(bucket: bytes) -> bytes:
    """Where an entry lives in the storage engine's meta space."""
    return META_PREFIX + bucket


def encode_entry(entry: BucketPropsEntry) -> bytes:
    return codec.encode(ENTRY_TAG, entry_to_payload(entry))


def decode_entry(data: bytes) -> BucketPropsEntry:
    return entry_from_payload(codec.decode(data, ENTRY_TAG))


def entry_bytes(entry: BucketPropsEntry) -> int:
    """An upper estimate of an entry's size on the wire, to keep a push under the batch bound."""
    return len(entry.bucket) + len(entry.node.encode()) + _ENTRY_OVERHEAD_BYTES


def batches(entries: Iterable[BucketPropsEntry], bytes_max: int) -> list[tuple[BucketPropsEntry, ...]]:
    """Split entries, in order, into runs of at most `bytes_max` estimated bytes (an entry bigger than
    that alone goes alone). Always at least one run, maybe empty, so a push can say "I have none"."""
    runs: list[tuple[BucketPropsEntry, ...]] = []
    run: list[BucketPropsEntry] = []
    size = 0
    for entry in entries:
        cost = entry_bytes(entry)
        if run and size + cost > bytes_max:
            runs.append(tuple(run))
            run, size = [], 0
        run.append(entry)
        size += cost
    if run or not runs:
        runs.append(tuple(run))
    return runs


# -- the table -------------------------------------------------------------------------------------------


class PropsTable:
    """Every bucket's set props entry, merged last-writer-wins, and the effective props they make.

    `limit` bounds how many buckets a local change may give entries to; merges of peers' entries are
    refused only past twice that (every node refuses changes at `limit`, so more can only come from
    changes made on several nodes at once), which keeps the table bounded without losing convergence.
    """

    def __init__(self, defaults: BucketProps, static: Mapping[bytes, BucketProps], limit: int) -> None:
        self.defaults = defaults
        self.limit = limit
        self._static = dict(static)
        # Raises ConfigError at startup for static props node.json got wrong ("default" quorum out of range).
        self._static_effective = {bucket: props.over(defaults) for bucket, props in sorted(static.items())}
        self._entries: dict[bytes, BucketPropsEntry] = {}
        self._effective: dict[bytes, BucketProps] = {}
        self._digest: bytes | None = None
        self.newest_ms = 0

    def __len__(self) -> int:
        return len(self._entries)

    def base(self, bucket: bytes) -> BucketProps:
        """The props under the set ones: the static props of node.json, or the cluster defaults."""
        return self._static.get(bucket, self.defaults)

    def effective(self, bucket: bytes) -> BucketProps:
        """The props requests of this bucket use (no "default" left in them)."""
        props = self._effective.get(bucket)
        if props is not None:
            return props
        return self._static_effective.get(bucket, self.defaults)

    def entry(self, bucket: bytes) -> BucketPropsEntry | None:
        return self._entries.get(bucket)

    def props_set(self, bucket: bytes) -> PropsSet | None:
        entry = self._entries.get(bucket)
        return None if entry is None else entry.props

    def entries(self) -> list[BucketPropsEntry]:
        """Every entry, tombstones included, sorted by bucket."""
        return [self._entries[bucket] for bucket in sorted(self._entries)]

    def shown(self, bucket: bytes) -> dict[str, object]:
        return shown(bucket, self.base(bucket), self.props_set(bucket))

    def full_for(self, bucket: bytes) -> bool:
        """Whether a local change to `bucket` would pass the limit."""
        return bucket not in self._entries and len(self._entries) >= self.limit

    def next_stamp(self, now_ms: int) -> int:
        """A stamp above every one seen, so a local change supersedes all this node knows of."""
        return max(now_ms, self.newest_ms + 1)

    def is_newer(self, entry: BucketPropsEntry) -> bool:
        """Whether `entry` would replace what the table holds for its bucket."""
        held = self._entries.get(entry.bucket)
        return held is None or supersedes(entry, held)

    def check(self, entry: BucketPropsEntry) -> BucketProps | None:
        """The effective props `entry` would give its bucket, or None if they are inconsistent here
        (it may come from a peer whose static props differ)."""
        try:
            return layered(self.base(entry.bucket), entry.props, self.defaults)
        except ConfigError:
            return None

    def adopt(self, entry: BucketPropsEntry) -> bool:
        """Take `entry` if it is newer than what is held, valid here and within bounds; True if taken."""
        if not self.is_newer(entry):
            return False
        if entry.bucket not in self._entries and len(self._entries) >= 2 * self.limit:
            return False
        props = self.check(entry)
        if props is None:
            return False
        self._entries[entry.bucket] = entry
        if entry.props is None:
            self._effective.pop(entry.bucket, None)
        else:
            self._effective[entry.bucket] = props
        self.newest_ms = max(self.newest_ms, entry.stamp_ms)
        self._digest = None
        return True

    def digest(self) -> bytes:
        """sha256 of the canonical encoding of every entry in bucket order: equal tables, equal digests."""
        if self._digest is None:
            hasher = hashlib.sha256()
            for entry in self.entries():
                hasher.update(codec.pack(entry_to_payload(entry)))
            self._digest = hasher.digest()
        return self._digest

    def newer_than(self, entries: Iterable[BucketPropsEntry]) -> list[BucketPropsEntry]:
        """The entries held that `entries` lacks or holds older, sorted by bucket."""
        theirs: dict[bytes, BucketPropsEntry] = {}
        for entry in entries:
            held = theirs.get(entry.bucket)
            if held is None or supersedes(entry, held):
                theirs[entry.bucket] = entry
        return [
            entry
            for entry in self.entries()
            if entry.bucket not in theirs or supersedes(entry, theirs[entry.bucket])
        ]
