"""What a node keeps in its data directory besides the storage engine: identity, settings, readiness.

Layout of a node's data directory DIR:

* `DIR/node.json`: the node's settings (`NodeConfig`), so `dynakv node --data DIR` alone restarts it
  with the same name, addresses, members, engine and ring shape. Written atomically (temp + rename).
* `DIR/storage/`: the storage engine's directory.
* `DIR/ready.json`: written atomically once the listeners are bound, with the real ports (port 0 is
  allowed in node.json); removed at start and on a clean stop, so a reader must also check its pid.
* `DIR/dynakv.lock`: one node process per directory.

The actor id is NOT in node.json: it is "<name>#<epoch>", the epoch a random 64-bit integer kept in
the engine's meta space. Wiping the storage (or running the memory engine) loses the epoch with the
data, so the node mints new dots under a new actor instead of reusing counters the cluster has already
seen under the old one (docs/dvv.md, "Limits and what this layer cannot prevent"; riak_kv#679).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dynakv.core.config import BucketProps, ClusterConfig, Limits, Timing
from dynakv.core.errors import ConfigError
from dynakv.protocol.ports import StorageEngine
from dynakv.storage.registry import DEFAULT_ENGINE, ENGINES

NODE_FILE = "node.json"
READY_FILE = "ready.json"
STORAGE_DIR = "storage"
FORMAT_VERSION = 1
EPOCH_META_NAME = b"node/epoch"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, field_name: str) -> Address:
    """Parse "HOST:PORT", HOST an IPv4 loopback address (127.0.0.0/8): dynakv serves loopback only."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(field_name, f"{text!r} is not HOST:PORT")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(field_name, f"{host!r} is not an IPv4 address") from None
    if ip not in _LOOPBACK:
        raise ConfigError(field_name, f"{host} is not a loopback address (127.0.0.0/8)")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(field_name, f"port {port} is above 65535")
    return Address(str(ip), port)


def check_name(name: str, field_name: str = "name") -> str:
    # '#' separates the name from the epoch in actor ids, so it must never appear in a name.
    if not _NAME_RE.match(name):
        raise ConfigError(field_name, f"{name!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return name


@dataclass(frozen=True)
class NodeConfig:
    """Everything needed to (re)start a node; `members` includes the node itself (its listen address).

    `timing` and `limits` hold overrides of the `Timing` and `Limits` defaults (edit node.json to set
    them); they are validated by building the settings. `buckets` maps a bucket name to its own
    properties (`BucketProps`: n_val, r, w, dw, rw, pr, pw); with static membership every node's
    node.json must say the same (the HTTP issue makes bucket properties cluster-wide).
    """

    name: str
    listen: Address
    client: Address
    members: dict[str, Address]
    cluster_name: str = "dynakv"
    http: Address | None = None
    storage: str = DEFAULT_ENGINE
    partitions: int = 64
    n_val: int = 3
    timing: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Cluster addresses of seeds (`--seed`): the node finds its cluster through them and stages its
    # own join; gossip asks a seed now and then. Empty with no other member: a new one-node cluster.
    seeds: tuple[Address, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.storage not in ENGINES:
            choices = ", ".join(ENGINES)
            raise ConfigError("storage", f"unknown engine {self.storage!r}; choose one of {choices}")
        for member in self.members:
            check_name(member, "member")
        if self.members.get(self.name) != self.listen:
            raise ConfigError("members", f"the node's own entry must be its listen address {self.listen}")
        if len(self.members) > 1 and len(self.members) < self.n_val:
            # A static cluster; a dynamic one (one member, maybe seeds) grows to n_val by joins.
            raise ConfigError("n_val", f"{self.n_val} is above the {len(self.members)} members")
        self.cluster_config()  # validates partitions, n_val and the cluster name
        Timing.from_mapping(self.timing)
        Limits.from_mapping(self.limits)
        self.bucket_props()

    def bucket_props(self) -> dict[bytes, BucketProps]:
        return {
            name.encode(): BucketProps.from_mapping(props) for name, props in sorted(self.buckets.items())
        }

    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(cluster_name=self.cluster_name, partitions=self.partitions, n_val=self.n_val)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "cluster_name": self.cluster_name,
            "listen": str(self.listen),
            "client": str(self.client),
            "http": None if self.http is None else str(self.http),
            "members": {name: str(addr) for name, addr in sorted(self.members.items())},
            "storage": self.storage,
            "partitions": self.partitions,
            "n_val": self.n_val,
            "timing": dict(sorted(self.timing.items())),
            "limits": dict(sorted(self.limits.items())),
            "buckets": {name: dict(sorted(props.items())) for name, props in sorted(self.buckets.items())},
            "seeds": [str(seed) for seed in self.seeds],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeConfig:
        if data.get("format") != FORMAT_VERSION:
            raise ConfigError("format", f"node.json format {data.get('format')!r} is not {FORMAT_VERSION}")
        try:
            http = data["http"]
            return cls(
                name=str(data["name"]),
                cluster_name=str(data["cluster_name"]),
                listen=parse_address(str(data["listen"]), "listen"),
                client=parse_address(str(data["client"]), "client"),
                http=None if http is None else parse_address(str(http), "http"),
                members={str(k): parse_address(str(v), "members") for k, v in dict(data["members"]).items()},
                storage=str(data["storage"]),
                partitions=data["partitions"],
                n_val=data["n_val"],
                timing=dict(data.get("timing", {})),
                limits=dict(data.get("limits", {})),
                buckets={str(k): dict(v) for k, v in dict(data.get("buckets", {})).items()},
                seeds=tuple(parse_address(str(s), "seeds") for s in list(data.get("seeds", []))),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError("node.json", f"malformed: {type(err).__name__}: {err}") from None


@dataclass(frozen=True)
class Overrides:
    """Settings given on the command line; None (or an empty member list) means "keep the saved one"."""

    name: str | None = None
    listen: Address | None = None
    client: Address | None = None
    http: Address | None = None
    members: dict[str, Address] | None = None
    cluster_name: str | None = None
    storage: str | None = None
    partitions: int | None = None
    n_val: int | None = None
    seeds: tuple[Address, ...] | None = None


def _pick(given: Any, saved: Any, default: Any) -> Any:
    return given if given is not None else saved if saved is not None else default


def resolve(saved: NodeConfig | None, given: Overrides) -> NodeConfig:
    """The settings to run with: the saved ones with the given flags on top (a first start needs
    --name and --listen). Given members replace the saved list; the node's own entry is always its
    listen address. n_val defaults to 3, or to the member count when there are fewer members."""
    if saved is None and (given.name is None or given.listen is None):
        raise ConfigError(
            "data", "no node.json in the data directory; a first start needs --name and --listen"
        )
    name: str = _pick(given.name, saved and saved.name, "")
    listen: Address = _pick(given.listen, saved and saved.listen, None)
    members = dict(_pick(given.members, saved and saved.members, {}))
    if saved is not None:
        members.pop(saved.name, None)
    members[name] = listen
    seeds: tuple[Address, ...] = _pick(given.seeds, saved and saved.seeds, ())
    # A node that joins through seeds takes the usual n_val; a lone node without seeds keeps n_val at
    # its member count unless told (so a single-node cluster serves with the defaults).
    n_val_default = _NO_CONFIG["n_val"] if seeds else min(_NO_CONFIG["n_val"], len(members))
    return NodeConfig(
        name=name,
        listen=listen,
        client=_pick(given.client, saved and saved.client, Address(listen.host, 0)),
        members=members,
        cluster_name=_pick(given.cluster_name, saved and saved.cluster_name, _NO_CONFIG["cluster_name"]),
        http=_pick(given.http, saved and saved.http, None),
        storage=_pick(given.storage, saved and saved.storage, _NO_CONFIG["storage"]),
        partitions=_pick(given.partitions, saved and saved.partitions, _NO_CONFIG["partitions"]),
        n_val=_pick(given.n_val, saved and saved.n_val, n_val_default),
        timing=dict(saved.timing) if saved else {},
        limits=dict(saved.limits) if saved else {},
        buckets={k: dict(v) for k, v in saved.buckets.items()} if saved else {},
        seeds=seeds,
    )


# The defaults of a first start, read off the dataclass so they are written down once.
_NO_CONFIG: dict[str, Any] = {
    f: NodeConfig.__dataclass_fields__[f].default for f in ("cluster_name", "storage", "partitions", "n_val")
}


# -- files ---------------------------------------------------------------------------------------------


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write to a temp file in the same directory, fsync, rename: a reader sees the old or new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_config(data_dir: Path) -> NodeConfig | None:
    path = data_dir / NODE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError("node.json", f"{path} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError("node.json", f"{path} does not hold a JSON object")
    return NodeConfig.from_json(data)


def save_config(data_dir: Path, config: NodeConfig) -> None:
    write_json_atomically(data_dir / NODE_FILE, config.to_json())


def ready_record(name: str, cluster: Address, client: Address, http: Address | None) -> dict[str, Any]:
    return {
        "name": name,
        "pid": os.getpid(),
        "cluster": str(cluster),
        "client": str(client),
        "http": None if http is None else str(http),
    }


def remove_ready(data_dir: Path) -> None:
    (data_dir / READY_FILE).unlink(missing_ok=True)


# -- actor identity ------------------------------------------------------------------------------------


def actor_id(name: str, storage: StorageEngine) -> str:
    """The actor id "<name>#<epoch>" (epoch in hex), the epoch read from the engine's meta space, or
    minted and made durable when the engine has none: a node whose data is gone must never reuse the
    dots of its old actor."""
    raw = storage.meta_get(EPOCH_META_NAME)
    if raw is None or len(raw) != 8:
        raw = secrets.randbits(64).to_bytes(8, "big")
        storage.meta_put(EPOCH_META_NAME, raw, durable=True)
    return f"{name}#{int.from_bytes(raw, 'big'):016x}"
