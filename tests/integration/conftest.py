"""Real clusters for integration tests: node processes on loopback, real TCP, real disk.

`start_cluster(nodes=3, storage="sqlite", ...)` (a fixture factory) runs `dynakv dev` in a tmp_path
and returns a `Cluster` once DIR/cluster.json is there. A Cluster knows each node's name, client and
cluster address, data dir and pid, and can `kill9(name)`, `restart(name)` (`dynakv node --data DIR`
alone, as a user would), `stop(name)` (SIGTERM) and `stop_all()`. Every process is stopped by pid
when the test ends, whatever happened; nothing is ever killed by name.

`dev` forms a fresh cluster the dynamic way (dev1 alone, the others through it as seed, one commit), so
which node owns which partition is whatever its claimant made of the joins: `live_ring(client)` (and
`Cluster.ring()`) reads the ring a running node holds, as `dynakv ring --json` prints it. A test that
reads a stopped node's storage takes the ring from the cluster while it runs.

`NativeConn` is a deliberately tiny, test-only client of the native protocol over a raw socket (the
real client library lives in dynakv.client and is tested on its own): Hello, then numbered requests.

Waiting is always polling with a deadline, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynakv.core.objects import Content
from dynakv.core.ring import Ring
from dynakv.protocol.messages import ClientReply, ClientRequest, GetReply, GetRequest, PutRequest
from dynakv.wire.codec import (
    PROTOCOL_VERSION,
    Hello,
    decode_client_reply,
    decode_hello,
    encode_client_request,
    encode_hello,
)
from dynakv.wire.framing import FrameDecoder, encode_frame

FRAME_MAX = 64 << 20
START_TIMEOUT_S = 30.0
# `dev` bounds each step of forming a cluster itself (its --ready-timeout, 30 s a step) and says which
# step failed; wait longer than its steps together, so that its message is what a test reports.
FORM_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 15.0
IO_TIMEOUT_S = 10.0


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.02) -> Any:
    """Poll until `predicate()` returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def dynakv_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dynakv", *args]


# -- the native protocol, test-only ------------------------------------------------------------------


class NativeConn:
    """One client connection: `request()` sends a request and reads its reply; `send()`/`recv()` let a
    test pipeline many; `raw()` sends arbitrary bytes. Used as a context manager."""

    def __init__(self, address: str, hello: bool = True, cluster: str = "anything") -> None:
        self.sock = socket.create_connection(parse_address(address), timeout=IO_TIMEOUT_S)
        self.decoder = FrameDecoder(FRAME_MAX)
        self.frames: list[bytes] = []
        self.next_id = 0
        self.server_hello: Hello | None = None
        if hello:
            self.raw(
                encode_frame(encode_hello(Hello(cluster, PROTOCOL_VERSION, "test", "client")), FRAME_MAX)
            )
            self.server_hello = decode_hello(self.recv_frame())

    def __enter__(self) -> NativeConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> bytes:
        while not self.frames:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def send(self, request: ClientRequest) -> int:
        self.next_id += 1
        self.raw(encode_frame(encode_client_request(self.next_id, request), FRAME_MAX))
        return self.next_id

    def recv(self) -> tuple[int, ClientReply]:
        return decode_client_reply(self.recv_frame())

    def request(self, request: ClientRequest) -> ClientReply:
        request_id = self.send(request)
        got, reply = self.recv()
        assert got == request_id, f"reply for {got}, expected {request_id}"
        return reply

    def closed_by_server(self, timeout_s: float = IO_TIMEOUT_S) -> bool:
        """True once the server closed the connection (EOF or reset), False if it stays open."""
        self.sock.settimeout(timeout_s)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def put(bucket: bytes, key: bytes, value: bytes, **kw: Any) -> PutRequest:
    content = Content(value, content_type="text/plain", last_modified_ms=int(time.time() * 1000))
    return PutRequest(bucket, key, content, **kw)


def get(bucket: bytes, key: bytes, **kw: Any) -> GetRequest:
    return GetRequest(bucket, key, **kw)


# -- clusters --------------------------------------------------------------------------------------------


def live_ring(client: str) -> tuple[Ring, int]:
    """The ring the node at client address `client` holds now, and its n_val, read as an operator would
    (`dynakv ring --json --host`). Refuses a ring with moves pending: a test reasons about one settled
    ring, and an unsettled one is not the ring the cluster will keep."""
    run = subprocess.run(
        dynakv_command("ring", "--json", "--host", client),
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT_S * 3,
        check=False,
    )
    assert run.returncode == 0, f"dynakv ring --host {client}: exit {run.returncode}: {run.stderr}"
    view = json.loads(run.stdout)
    assert view["moves"] == [], f"{client} holds a ring with moves pending: {view['moves'][:5]}"
    return Ring(view["partitions"], tuple(view["owners"])), int(view["n_val"])


@dataclass
class NodeInfo:
    name: str
    data_dir: Path
    cluster: str
    client: str
    pid: int
    proc: subprocess.Popen[bytes] | None = None  # set when this fixture (not dev) started the node
    http: str | None = None  # the HTTP API's "host:port"


@dataclass
class Cluster:
    root: Path
    dev: subprocess.Popen[bytes]
    nodes: dict[str, NodeInfo]
    dev_log: Path
    killed: set[str] = field(default_factory=set)

    @property
    def names(self) -> list[str]:
        return sorted(self.nodes)

    def client(self, name: str) -> str:
        return self.nodes[name].client

    def connect(self, name: str, **kw: Any) -> NativeConn:
        return NativeConn(self.nodes[name].client, **kw)

    def request(self, name: str, request: ClientRequest) -> ClientReply:
        with self.connect(name) as conn:
            return conn.request(request)

    def ring(self, name: str | None = None) -> tuple[Ring, int]:
        """The ring `name` (default: the first node not killed) holds now, and its n_val: `live_ring`."""
        asked = name or next(n for n in self.names if n not in self.killed)
        return live_ring(self.client(asked))

    def kill9(self, name: str) -> None:
        node = self.nodes[name]
        os.kill(node.pid, signal.SIGKILL)
        self._wait_dead(node)
        self.killed.add(name)

    def stop(self, name: str) -> int | None:
        """SIGTERM; the exit code if this fixture started the node (dev's children: None)."""
        node = self.nodes[name]
        os.kill(node.pid, signal.SIGTERM)
        code = self._wait_dead(node)
        self.killed.add(name)
        return code

    def restart(self, name: str, *extra: str) -> NodeInfo:
        """`dynakv node --data DIR` (plus `extra` flags), as a user restarts a node; waits until ready."""
        node = self.nodes[name]
        assert name in self.killed, f"{name} is running"
        with open(node.data_dir / "node.log", "ab") as log:
            proc = subprocess.Popen(
                dynakv_command("node", "--data", str(node.data_dir), *extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        node.proc, node.pid = proc, proc.pid
        ready = wait_for(lambda: _ready(node, proc), START_TIMEOUT_S, f"{name} to be ready again")
        node.cluster, node.client, node.http = ready["cluster"], ready["client"], ready["http"]
        self.killed.discard(name)
        return node

    def stop_all(self) -> int:
        """SIGTERM dev (it stops its own nodes) and every node this fixture restarted; dev's exit code."""
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        if self.dev.poll() is None:
            self.dev.send_signal(signal.SIGTERM)
        code = _wait_or_kill(self.dev)
        for node in self.nodes.values():
            if node.proc is not None:
                _wait_or_kill(node.proc)
        return code

    def wait_connected(self, names: list[str] | None = None, n_val: int | None = None) -> None:
        """Poll until a get with r = n_val succeeds through each of `names` (default: all nodes).

        A node is ready when its listeners are bound; its links to the peers come up a moment later
        (and a link that found its peer not yet listening waits out a backoff, or the peer's hello).
        A get with r = n_val needs every replica's answer both ways, so once it succeeds the links
        a fresh test relies on are up.
        """
        some = self.nodes[self.names[0]]
        r = n_val or json.loads((some.data_dir / "node.json").read_text())["n_val"]
        for name in names or self.names:

            def answered(name: str = name) -> bool:
                return isinstance(self.request(name, GetRequest(b"_probe", b"_probe", r=r)), GetReply)

            wait_for(answered, START_TIMEOUT_S, f"{name}'s links to its peers")

    def relaunch(self, *args: str) -> None:
        """After `stop_all()`: run `dynakv dev` again on the same directory (it restarts the same nodes
        from their data dirs) and take over its processes."""
        assert self.dev.poll() is not None, "stop_all() first"
        again = launch_dev(self.root, len(self.nodes), *args)
        self.dev, self.nodes, self.killed = again.dev, again.nodes, set()

    def _wait_dead(self, node: NodeInfo) -> int | None:
        if node.proc is not None:
            return _wait_or_kill(node.proc)
        # dev's child: dev reaps it (it polls its children), so the pid disappears.
        wait_for(lambda: not _alive(node.pid), STOP_TIMEOUT_S, f"pid {node.pid} ({node.name}) to exit")
        return None


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not yet reaped


def _ready(node: NodeInfo, proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    if proc.poll() is not None:
        raise AssertionError(f"{node.name} exited with {proc.returncode}; see {node.data_dir / 'node.log'}")
    try:
        data: dict[str, Any] = json.loads((node.data_dir / "ready.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if data.get("pid") == proc.pid else None


def _wait_or_kill(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"pid {proc.pid} did not stop within {STOP_TIMEOUT_S:g} s of SIGTERM") from None


def _cluster_file(root: Path, dev: subprocess.Popen[bytes], dev_log: Path) -> dict[str, Any] | None:
    if dev.poll() is not None:
        raise AssertionError(f"dynakv dev exited with {dev.returncode}:\n{dev_log.read_text()}")
    path = root / "cluster.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    pids = {node["pid"] for node in data["nodes"]}
    return data if all(_alive(pid) for pid in pids) else None  # not a leftover of an earlier run


def launch_dev(root: Path, nodes: int, *args: str, connected: bool = True) -> Cluster:
    """Run `dynakv dev` (extra `args` go to it) until cluster.json names live nodes and, with
    `connected`, until every node's peer links are up (`Cluster.wait_connected`)."""
    dev_log = root.with_name(root.name + "-dev.log")
    with open(dev_log, "ab") as log:
        dev = subprocess.Popen(
            dynakv_command("dev", "--nodes", str(nodes), "--data", str(root), *args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        data = wait_for(lambda: _cluster_file(root, dev, dev_log), FORM_TIMEOUT_S, "cluster.json")
    except BaseException:
        dev.send_signal(signal.SIGTERM)
        _wait_or_kill(dev)
        raise
    infos = {
        n["name"]: NodeInfo(
            n["name"], Path(n["data_dir"]), n["cluster"], n["client"], n["pid"], http=n.get("http")
        )
        for n in data["nodes"]
    }
    cluster = Cluster(root, dev, infos, dev_log)
    if connected:
        try:
            cluster.wait_connected()
        except BaseException:
            cluster.stop_all()
            raise
    return cluster


StartCluster = Callable[..., Cluster]


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[StartCluster]:
    """`start_cluster(nodes=3, storage="sqlite", n_val=None, partitions=None, base_ip=None)`."""
    clusters: list[Cluster] = []

    def start(
        nodes: int = 3,
        storage: str = "sqlite",
        n_val: int | None = None,
        partitions: int | None = None,
        base_ip: str | None = None,
    ) -> Cluster:
        args = ["--storage", storage]
        for flag, value in (("--n-val", n_val), ("--partitions", partitions), ("--base-ip", base_ip)):
            if value is not None:
                args += [flag, str(value)]
        cluster = launch_dev(tmp_path / f"cluster{len(clusters)}", nodes, *args)
        clusters.append(cluster)
        return cluster

    try:
        yield start
    finally:
        errors = []
        for cluster in clusters:
            try:
                cluster.stop_all()
            except AssertionError as err:  # keep stopping the others; report after
                errors.append(err)
        if errors:
            raise errors[0]
