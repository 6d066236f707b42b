"""Cluster settings, timings and limits, validated on construction.

A bad value raises `ConfigError` naming the field and the bound it broke, so an operator reading the
message knows what to change. Quorum settings may be given as Riak does, as an integer or as one of
"one", "quorum", "all"; `resolve_quorum` turns them into an integer for a given n_val. A bucket's quorum
may also be "default", Riak's name for the cluster default's value (`BucketProps.over`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

from dynakv.core.errors import ConfigError

PARTITIONS_MIN: Final = 8
PARTITIONS_MAX: Final = 65536
N_VAL_MAX: Final = 16
SYMBOLIC_QUORUMS: Final = ("one", "quorum", "all")
DEFAULT_QUORUM: Final = "default"

Quorum = int | str
C = TypeVar("C")


def resolve_quorum(name: str, value: Quorum, n_val: int, *, minimum: int = 1) -> int:
    """Turn a quorum setting into an integer in [minimum, n_val], or raise naming `name`."""
    if isinstance(value, str):
        if value == "one":
            return 1
        if value == "quorum":
            return n_val // 2 + 1
        if value == "all":
            return n_val
        raise ConfigError(name, f"{value!r} is not a quorum (use an integer or one of {SYMBOLIC_QUORUMS})")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not a quorum (use an integer or one of {SYMBOLIC_QUORUMS})")
    if value < minimum:
        raise ConfigError(name, f"{value} is below the minimum {minimum}")
    if value > n_val:
        raise ConfigError(name, f"{value} is above n_val {n_val} ({name} must be at most n_val)")
    return value


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected true or false, got {value!r}")
    return value


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if value < lo:
        raise ConfigError(name, f"{value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(name, f"{value} is above the maximum {hi}")
    return value


def _from_mapping(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build a settings dataclass from a mapping, refusing unknown fields by name."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for name in sorted(values):
        if name not in known:
            raise ConfigError(name, f"unknown setting for {cls.__name__}")
    return cls(**values)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Settings fixed for a cluster, and the default request quorums of its buckets.

    `partitions` is Q, the number of equal partitions of the ring (paper section 6.2, strategy 3; Riak's
    ring_size): a power of two, fixed when the cluster is created.
    """

    cluster_name: str = "dynakv"
    partitions: int = 64
    n_val: int = 3
    r: Quorum = "quorum"
    w: Quorum = "quorum"
    dw: Quorum = "quorum"
    rw: Quorum = "quorum"
    pr: Quorum = 0
    pw: Quorum = 0
    # True on purpose (docs/adr/0006): concurrent writes stay visible as siblings, never silently
    # hidden; set false for Riak's legacy default.
    allow_mult: bool = True
    last_write_wins: bool = False
    basic_quorum: bool = False
    notfound_ok: bool = True

    def __post_init__(self) -> None:
        if not self.cluster_name or len(self.cluster_name.encode()) > 64:
            raise ConfigError("cluster_name", "must be 1 to 64 bytes")
        q = _check_int("partitions", self.partitions, PARTITIONS_MIN, PARTITIONS_MAX)
        if q & (q - 1):
            raise ConfigError("partitions", f"{q} is not a power of two")
        n = _check_int("n_val", self.n_val, 1, N_VAL_MAX)
        if n > q:
            raise ConfigError("n_val", f"{n} is above partitions {q}")
        for name in _QUORUM_MINIMUM:
            if getattr(self, name) == DEFAULT_QUORUM:
                raise ConfigError(name, "'default' names the cluster default, which must be a quorum itself")
        _check_quorums(self, n)
        _check_flags(self)

    def quorum(self, name: str) -> int:
        """The integer value of the quorum setting `name` ("r", "w", "dw", "rw", "pr", "pw")."""
        return self.bucket_defaults().quorum(name)

    def bucket_defaults(self) -> BucketProps:
        """The properties of every bucket that has none of its own."""
        return BucketProps(
            n_val=self.n_val,
            r=self.r,
            w=self.w,
            dw=self.dw,
            rw=self.rw,
            pr=self.pr,
            pw=self.pw,
            allow_mult=self.allow_mult,
            last_write_wins=self.last_write_wins,
            basic_quorum=self.basic_quorum,
            notfound_ok=self.notfound_ok,
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        return _from_mapping(cls, values)


@dataclass(frozen=True, slots=True)
class BucketProps:
    """The replication settings of one bucket (Riak's bucket properties): n_val, the default quorums
    and flags of its requests (a request may override the quorums, basic_quorum and notfound_ok), and
    how siblings are resolved. Buckets without their own take the cluster's
    (`ClusterConfig.bucket_defaults`).

    A quorum may be "default", meaning the cluster default's value: such props are checked and resolved
    only once laid over the cluster's defaults with `over`.
    """

    n_val: int = 3
    r: Quorum = "quorum"
    w: Quorum = "quorum"
    dw: Quorum = "quorum"
    rw: Quorum = "quorum"
    pr: Quorum = 0
    pw: Quorum = 0
    allow_mult: bool = True
    last_write_wins: bool = False
    basic_quorum: bool = False
    notfound_ok: bool = True

    def __post_init__(self) -> None:
        n = _check_int("n_val", self.n_val, 1, N_VAL_MAX)
        _check_quorums(self, n, skip_default=True)
        _check_flags(self)

    def quorum(self, name: str) -> int:
        """The integer value of the quorum setting `name` ("r", "w", "dw", "rw", "pr", "pw")."""
        value: Quorum = getattr(self, name)
        if value == DEFAULT_QUORUM:
            raise ConfigError(name, "'default' must be resolved against the cluster defaults first")
        return resolve_quorum(name, value, self.n_val, minimum=_QUORUM_MINIMUM[name])

    def over(self, defaults: BucketProps) -> BucketProps:
        """These props with every "default" quorum replaced by the value `defaults` has for it,
        checked against this n_val (ConfigError naming the quorum when out of range)."""
        changes = {
            name: getattr(defaults, name) for name in _QUORUM_MINIMUM if getattr(self, name) == DEFAULT_QUORUM
        }
        if not changes:
            return self
        resolved = dataclasses.replace(self, **changes)
        _check_quorums(resolved, resolved.n_val)
        return resolved

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        return _from_mapping(cls, values)


_QUORUM_MINIMUM: Final = {"r": 1, "w": 1, "rw": 1, "dw": 0, "pr": 0, "pw": 0}


_FLAGS: Final = ("allow_mult", "last_write_wins", "basic_quorum", "notfound_ok")


def _check_quorums(settings: object, n_val: int, *, skip_default: bool = False) -> None:
    for name, minimum in _QUORUM_MINIMUM.items():
        value = getattr(settings, name)
        if skip_default and value == DEFAULT_QUORUM:
            continue
        resolve_quorum(name, value, n_val, minimum=minimum)


def _check_flags(settings: object) -> None:
    for name in _FLAGS:
        _check_bool(name, getattr(settings, name))


@dataclass(frozen=True, slots=True)
class Timing:
    """Intervals and timeouts, all in milliseconds. `tick_ms` drives all periodic work."""

    tick_ms: int = 100
    request_timeout_ms: int = 5_000
    read_repair_wait_ms: int = 500
    gossip_interval_ms: int = 1_000
    probe_interval_ms: int = 1_000
    # A peer silent this long (no message, no probe answer) is suspected: this node serves its keys
    # from fallbacks until it answers again (protocol/reachability.py). At least twice the probe
    # interval, or healthy peers would be suspected between two probes.
    suspect_after_ms: int = 5_000
    hint_age_max_ms: int = 7 * 24 * 3600 * 1000
    # Anti-entropy (protocol/anti_entropy.py): at most one periodic Merkle exchange starts per interval;
    # an exchange whose peer is silent this long is abandoned; a tree is rebuilt from storage this long
    # after its last build, catching what changed behind the node's back (Riak's tree expiry).
    anti_entropy_interval_ms: int = 10_000
    anti_entropy_timeout_ms: int = 30_000
    anti_entropy_tree_rebuild_ms: int = 7 * 24 * 3600 * 1000
    # After a flip, an old owner deletes its copies of the partitions it handed off once the ring has
    # had no move pending this long (protocol/ownership_cleanup.py): time for gossip to bring the new
    # ring to every member, so that few writes still reach it from coordinators with the old ring.
    ownership_cleanup_delay_ms: int = 30_000

    def __post_init__(self) -> None:
        tick = _check_int("tick_ms", self.tick_ms, 1, 60_000)
        for f in dataclasses.fields(self):
            if f.name != "tick_ms":
                _check_int(f.name, getattr(self, f.name), tick)
        if self.suspect_after_ms < 2 * self.probe_interval_ms:
            raise ConfigError(
                "suspect_after_ms",
                f"{self.suspect_after_ms} is below twice probe_interval_ms {self.probe_interval_ms}",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        return _from_mapping(cls, values)


_KIB: Final = 1024
_MIB: Final = 1024 * 1024
# Room in a frame for the envelope, the key and the sibling metadata around the object bytes.
FRAME_OVERHEAD_BYTES: Final = 64 * _KIB


@dataclass(frozen=True, slots=True)
class Limits:
    """Every size and count bound in one place (ARCHITECTURE.md section 6): at a bound, refuse clearly."""

    key_bytes_max: int = 1 * _KIB
    bucket_bytes_max: int = 256
    value_bytes_max: int = 1 * _MIB
    siblings_max: int = 100
    object_bytes_max: int = 50 * _MIB
    frame_bytes_max: int = 64 * _MIB
    pending_requests_max: int = 10_000
    send_queue_frames_max: int = 10_000
    hints_per_target_max: int = 1_000_000
    hint_bytes_per_target_max: int = 1024 * _MIB
    transfer_batch_bytes_max: int = 1 * _MIB
    # Outbound transfers (hinted, ownership, repair) at once, and the bytes they may send per tick
    # together (a throttle: one batch may overshoot it, the debt is paid on the next ticks).
    transfers_concurrent_max: int = 4
    transfer_bytes_per_tick_max: int = 4 * _MIB
    # Buckets with props of their own (reset ones included: their tombstones must keep propagating).
    buckets_with_props_max: int = 100_000
    # Names one key or bucket listing may return; past it the listing is refused, never truncated.
    listing_names_max: int = 1_000_000
    # Anti-entropy throttles: exchanges this node initiates at once, and storage entries it scans per
    # tick to build its Merkle trees (after a restart, in the background).
    anti_entropy_concurrent_max: int = 1
    anti_entropy_build_entries_per_tick: int = 2_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_int(f.name, getattr(self, f.name), 1)
        if self.value_bytes_max > self.object_bytes_max:
            raise ConfigError(
                "value_bytes_max",
                f"{self.value_bytes_max} is above object_bytes_max {self.object_bytes_max}",
            )
        needed = self.object_bytes_max + FRAME_OVERHEAD_BYTES
        if self.frame_bytes_max < needed:
            raise ConfigError(
                "frame_bytes_max",
                f"{self.frame_bytes_max} is below object_bytes_max + {FRAME_OVERHEAD_BYTES} = {needed}",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        return _from_mapping(cls, values)
