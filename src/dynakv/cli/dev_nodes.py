"""The node processes of `dynakv dev`: start one, wait until it is ready, report its death with the tail
of its log, stop them all by pid. `dev_cmd` (the command) and `dev_form` (forming a fresh cluster) share
these.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from dynakv.runtime.node_state import READY_FILE

STOP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.05
LOG_TAIL_LINES: Final = 15


@dataclass
class DevNode:
    name: str
    data_dir: Path
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] | None = None
    reported_dead: bool = False

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"


def err(text: str) -> None:
    sys.stderr.write(f"dynakv dev: {text}\n")
    sys.stderr.flush()


def start(node: DevNode) -> None:
    node.data_dir.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = open(node.log_path, "ab")  # noqa: SIM115 (the child keeps it; closed below)
    try:
        node.proc = subprocess.Popen(node.command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        log.close()


def _read_ready(node: DevNode) -> dict[str, Any] | None:
    try:
        data = json.loads((node.data_dir / READY_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet (the rename makes a partial file impossible; be lenient anyway)
    assert node.proc is not None
    # A ready.json left by an earlier, killed run names another pid: not this node's.
    return data if isinstance(data, dict) and data.get("pid") == node.proc.pid else None


def log_tail(node: DevNode) -> str:
    try:
        lines = node.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(f"    {line}" for line in lines[-LOG_TAIL_LINES:])


def report_death(node: DevNode) -> None:
    assert node.proc is not None
    node.reported_dead = True
    err(f"{node.name} (pid {node.proc.pid}) exited with code {node.proc.returncode}; log {node.log_path}:")
    tail = log_tail(node)
    if tail:
        sys.stderr.write(tail + "\n")


def report_logs(nodes: Iterable[DevNode]) -> None:
    """The tail of every node's log, to go with an error that names no single culprit."""
    for node in nodes:
        sys.stderr.write(f"  {node.name}, log {node.log_path}:\n")
        tail = log_tail(node)
        if tail:
            sys.stderr.write(tail + "\n")
    sys.stderr.flush()


def first_death(nodes: Iterable[DevNode]) -> DevNode | None:
    """A started node whose process has exited, reported on stderr; None while all run."""
    for node in nodes:
        if node.proc is not None and node.proc.poll() is not None:
            if not node.reported_dead:
                report_death(node)
            return node
    return None


def wait_ready(nodes: list[DevNode], timeout_s: float, stop: threading.Event) -> bool:
    """Until every node has written its ready.json; False (said on stderr) if one dies first or the
    deadline passes, and False at once on Ctrl-C or SIGTERM (`stop`)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        for node in nodes:
            if node.ready is None:
                node.ready = _read_ready(node)
            assert node.proc is not None
            if node.ready is None and node.proc.poll() is not None:
                report_death(node)
                return False
        if all(node.ready is not None for node in nodes):
            return True
        if time.monotonic() > deadline:
            late = ", ".join(n.name for n in nodes if n.ready is None)
            err(f"not ready after {timeout_s:g} s: {late} (see their node.log)")
            return False
        stop.wait(POLL_S)
    return False


def stop_all(nodes: list[DevNode]) -> None:
    """SIGTERM every node still running (by pid: only processes this dev started), SIGKILL after a
    deadline. Popen knows whether its child exited, so a reaped pid is never signalled."""
    running = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
    for node in running:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for node in running:
        assert node.proc is not None
        try:
            code = node.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            err(f"{node.name} (pid {node.proc.pid}) did not stop within {STOP_TIMEOUT_S:g} s; killing it")
            node.proc.kill()
            node.proc.wait()
            continue
        if code != 0:
            report_death(node)
