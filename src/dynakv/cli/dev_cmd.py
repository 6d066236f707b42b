"""`dynakv dev`: a local cluster of N `dynakv node` processes, for trying dynakv and for tests.

Node i (1..N) is named "dev{i}", keeps its data in DIR/dev{i} (log in DIR/dev{i}/node.log) and binds
127.0.0.1, or with --base-ip the i-th address counting from there (dev1 on the base, dev2 on the next).
Each node serves the native protocol on its client port and the Riak-compatible HTTP API on its http
port; cluster.json records both.

A fresh DIR's cluster forms the way an operator grows one (membership is dynamic): dev1 starts alone,
a one-node cluster; dev2..devN start with `--seed` and dev1's cluster address, and each stages its own
join; dev commits the joins (as `dynakv cluster commit`) and waits until every node holds the ring
shared by all N members, with no move pending. Only then does it write DIR/cluster.json and print the
nodes. Every node is given the same --storage, --partitions and --n-val (n_val 3 by default, or N if
fewer). --ready-timeout bounds each step: a node ready, the joins seen, the ring settled.

Ports: a node's addresses are saved in its node.json and gossiped to the others, so a restart must
bind the same ports again, and port 0 will not do. `dev` picks free ports itself, below the kernel's
ephemeral range (a port in that range can be taken by an outgoing connection while its node is down,
so a restart could not bind it again): it binds a random free port on each node's address, and closes
the socket just before starting the nodes (all sockets stay open until every port is picked, so no two
nodes get the same one). Another process can take a port in between; that node then fails to bind,
and `dev` reports it with its log. Fixed base ports were the alternative, but they collide whenever two
clusters (two test runs, two users) share a machine.

A re-run on an existing DIR restarts the same nodes from their data dirs (`dynakv node --data
DIR/dev{i}`), with the addresses saved in their node.json and the ring in their stored cluster state;
it forms nothing. A DIR whose first run stopped before its cluster had formed (it has no cluster.json)
is refused: remove it and start afresh. A node that dies is reported on stderr, not restarted; restart
it by hand with `dynakv node --data DIR/dev{i}` (this `dev` will then not stop it). Ctrl-C or SIGTERM
stops every node `dev` started: SIGTERM by pid, SIGKILL after a deadline.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Final

from dynakv.cli import dev_form
from dynakv.cli.dev_nodes import DevNode, err, report_death, start, stop_all, wait_ready
from dynakv.core.config import N_VAL_MAX, ClusterConfig
from dynakv.runtime.node_state import (
    NODE_FILE,
    Address,
    load_config,
    parse_address,
    write_json_atomically,
)
from dynakv.storage.registry import DEFAULT_ENGINE, ENGINES

READY_TIMEOUT_S: Final = 30.0
WATCH_S: Final = 0.2
CLUSTER_FILE: Final = "cluster.json"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "dev",
        help="run a local cluster of N nodes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--nodes", type=int, required=True, metavar="N", help="number of nodes")
    add("--data", type=Path, required=True, metavar="DIR", help="the cluster's directory")
    add("--storage", choices=ENGINES, help=f"storage engine (default {DEFAULT_ENGINE})")
    add("--base-ip", metavar="IP", help="node i binds the i-th address from IP (default: all on 127.0.0.1)")
    add("--partitions", type=int, metavar="Q", help="ring size (default 64)")
    add("--n-val", type=int, metavar="N", help=f"replicas per key, 1-{N_VAL_MAX} (default 3, or N if fewer)")
    add(
        "--ready-timeout",
        type=float,
        default=READY_TIMEOUT_S,
        metavar="S",
        help="seconds for each step of a start: nodes ready, joins seen, ring settled (default 30)",
    )
    parser.set_defaults(run=run_dev)


def _hosts(count: int, base_ip: str | None) -> list[str]:
    if base_ip is None:
        return ["127.0.0.1"] * count
    base = parse_address(f"{base_ip}:0", "base-ip")
    first = ipaddress.IPv4Address(base.host)
    return [parse_address(f"{first + i}:0", "base-ip").host for i in range(count)]


# Where listening ports are drawn from: below the kernel's ephemeral range, which the nodes' own outgoing
# connections use. A port drawn from that range (what binding port 0 gives) can be taken as the local
# end of some connection while its node is down, and the node then cannot listen on it again when it
# restarts ("address already in use"; it happened to the tests' relaunches).
LISTEN_PORT_LOW = 10_000
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORT_TRIES = 64


def _ephemeral_low() -> int | None:
    """The first port of the kernel's ephemeral range, or None where it cannot be read (not Linux)."""
    try:
        low, _high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low


def _bind_listen_port(sock: socket.socket, host: str) -> None:
    """Bind `sock` to a free port below the ephemeral range (random, so that two clusters on one machine
    rarely try the same), or to any free port where there is no room below it."""
    low = _ephemeral_low()
    if low is not None and low - LISTEN_PORT_LOW > PORT_TRIES:
        draw = random.Random()  # seeded from the OS: concurrent `dev` runs must not draw alike
        for _ in range(PORT_TRIES):
            try:
                sock.bind((host, draw.randrange(LISTEN_PORT_LOW, low)))
            except OSError:
                continue
            return
    sock.bind((host, 0))


def _free_ports(hosts: list[str]) -> list[tuple[int, int, int]]:
    """(cluster, client, http) ports per host, free at the time of asking (see the module docstring)."""
    held: list[socket.socket] = []
    try:
        ports = []
        for host in hosts:
            picked = []
            for _ in range(3):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                _bind_listen_port(sock, host)
                picked.append(sock.getsockname()[1])
            ports.append((picked[0], picked[1], picked[2]))
        return ports
    finally:
        for sock in held:
            sock.close()


def _node_command(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "dynakv", "node", "--data", str(data_dir)]


def _n_val(args: argparse.Namespace) -> int:
    """The n_val every node of a fresh cluster is given. Explicitly, even the default: dev1 starts
    alone, and a lone node's own default is its member count, 1."""
    given: int | None = args.n_val
    nodes: int = args.nodes
    return given if given is not None else min(ClusterConfig().n_val, nodes)


def _fresh_nodes(args: argparse.Namespace, root: Path) -> list[DevNode]:
    """The nodes' first-start commands; `dev_form.form` adds the seed to all but dev1's."""
    names = [f"dev{i}" for i in range(1, args.nodes + 1)]
    hosts = _hosts(args.nodes, args.base_ip)
    ports = _free_ports(hosts)
    nodes = []
    for name, host, (cluster_port, client_port, http_port) in zip(names, hosts, ports, strict=True):
        command = [*_node_command(root / name), "--name", name, "--listen", str(Address(host, cluster_port))]
        command += ["--client", str(Address(host, client_port)), "--http", str(Address(host, http_port))]
        command += ["--n-val", str(_n_val(args))]
        for flag, value in (("--storage", args.storage), ("--partitions", args.partitions)):
            if value is not None:
                command += [flag, str(value)]
        nodes.append(DevNode(name, root / name, command))
    return nodes


def _existing_nodes(args: argparse.Namespace, root: Path) -> list[DevNode] | None:
    """The nodes of an earlier run in DIR, None if there are none; raises ValueError on a mismatch."""
    found = sorted(p.parent.name for p in root.glob(f"dev*/{NODE_FILE}"))
    if not found:
        return None
    if not (root / CLUSTER_FILE).exists():
        raise ValueError(
            f"{root} holds nodes ({', '.join(found)}) but no {CLUSTER_FILE}: an earlier `dynakv dev` "
            "stopped before its cluster had formed; remove the directory to start afresh"
        )
    expected = [f"dev{i}" for i in range(1, args.nodes + 1)]
    if sorted(found) != sorted(expected):
        raise ValueError(
            f"{root} holds nodes {', '.join(found)}, not the {args.nodes} of --nodes {args.nodes}"
        )
    flags = {"--storage": args.storage, "--base-ip": args.base_ip, "--partitions": args.partitions}
    ignored = [flag for flag, value in {**flags, "--n-val": args.n_val}.items() if value is not None]
    if ignored:
        err(f"restarting the nodes in {root}: {', '.join(ignored)} ignored (settings are in each node.json)")
    return [DevNode(name, root / name, _node_command(root / name)) for name in expected]


def _cluster_record(nodes: list[DevNode]) -> dict[str, Any]:
    entries = []
    for node in nodes:
        assert node.ready is not None and node.proc is not None
        entries.append(
            {
                "name": node.name,
                "pid": node.proc.pid,
                "data_dir": str(node.data_dir.resolve()),
                "cluster": node.ready["cluster"],
                "client": node.ready["client"],
                "http": node.ready.get("http"),
            }
        )
    return {"nodes": entries}


def _announce(root: Path, nodes: list[DevNode]) -> None:
    config = load_config(nodes[0].data_dir)
    shape = (
        "" if config is None else f" ({config.storage}, {config.partitions} partitions, n_val {config.n_val})"
    )
    out = [f"dynakv dev: {len(nodes)} nodes ready{shape}"]
    for node in nodes:
        assert node.ready is not None and node.proc is not None
        out.append(
            f"  {node.name:<6} pid {node.proc.pid:<7} cluster {node.ready['cluster']:<21} "
            f"client {node.ready['client']:<21} http {node.ready.get('http') or '-':<21} log {node.log_path}"
        )
    out += [
        f"cluster file: {root / CLUSTER_FILE}",
        "try:",
        f"  dynakv put --cluster {root} mybucket mykey 'hello'",
        f"  dynakv get --cluster {root} mybucket mykey",
        f"restart a stopped node with: dynakv node --data {nodes[0].data_dir}",
        "Ctrl-C stops every node.",
    ]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def _watch(nodes: list[DevNode], stop: threading.Event) -> None:
    """Until Ctrl-C or SIGTERM: report nodes that die (they are not restarted)."""
    while not stop.wait(WATCH_S):
        for node in nodes:
            if node.proc is not None and not node.reported_dead and node.proc.poll() is not None:
                report_death(node)


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, or None."""
    if args.nodes < 1:
        return "--nodes must be at least 1"
    if args.n_val is not None:
        # More replicas than nodes: a static cluster refused it; a growing one would accept it and give
        # every key fewer distinct replicas than n_val, so dev refuses it as before. A lone node was
        # always allowed any n_val (its replicas are all on itself).
        most = N_VAL_MAX if args.nodes == 1 else min(N_VAL_MAX, args.nodes)
        if not 1 <= args.n_val <= most:
            return f"--n-val {args.n_val} is outside 1 to {most} for {args.nodes} nodes"
    return None


def _start_nodes(nodes: list[DevNode], fresh: bool, timeout_s: float, stop: threading.Event) -> bool:
    """Start the nodes: a fresh cluster is formed (dev_form), an earlier one restarted as it was."""
    if fresh:
        return dev_form.form(nodes, timeout_s, stop)
    for node in nodes:
        start(node)
    return wait_ready(nodes, timeout_s, stop)


def run_dev(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        err(problem)
        return 2
    root: Path = args.data
    root.mkdir(parents=True, exist_ok=True)
    try:
        existing = _existing_nodes(args, root)
        nodes = existing or _fresh_nodes(args, root)
    except (ValueError, OSError) as error:
        err(str(error))
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not _start_nodes(nodes, existing is None, args.ready_timeout, stop):
            return 0 if stop.is_set() else 1
        write_json_atomically(root / CLUSTER_FILE, _cluster_record(nodes))
        _announce(root, nodes)
        _watch(nodes, stop)
        return 0
    finally:
        stop_all(nodes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
