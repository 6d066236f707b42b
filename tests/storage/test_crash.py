"""Acknowledged writes survive kill -9 of the writing process (real processes, disk engines).

A child (`crash_writer`) writes durably and prints each key as its write is acknowledged; the parent
reads at least `ACKS_BEFORE_KILL` acknowledgements, kills the child with SIGKILL while it is still
writing, reopens the engine and checks that every acknowledged key is there with its value, and that
nothing unacknowledged came back garbled.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynakv.storage.registry import open_engine
from tests.storage.crash_writer import PARTITIONS, entry

REPO_ROOT = Path(__file__).resolve().parents[2]
ACKS_BEFORE_KILL = 200
DEADLINE_S = 30.0


def read_acks(proc: subprocess.Popen[bytes], want: int, deadline: float) -> tuple[list[int], bytes]:
    """Read acknowledged key numbers until there are `want`; returns them and any partial line."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    acks: list[int] = []
    pending = b""
    while len(acks) < want:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"only {len(acks)} acknowledgements before the deadline")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            pytest.fail(f"the writer exited early (code {proc.wait()}) after {len(acks)} acknowledgements")
        *lines, pending = (pending + chunk).split(b"\n")
        acks += [int(line) for line in lines]
    return acks, pending


@pytest.mark.parametrize("mode", ["durable", "flush"])
def test_acknowledged_writes_survive_kill_9(disk_engine_name: str, mode: str, tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.crash_writer", disk_engine_name, path, mode],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        acks, pending = read_acks(proc, ACKS_BEFORE_KILL, time.monotonic() + DEADLINE_S)
        assert proc.poll() is None, "the writer must still be writing when it is killed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL
        # Lines printed before the kill were acknowledged too; a torn last line was not.
        assert proc.stdout is not None
        *lines, _torn = (pending + proc.stdout.read()).split(b"\n")
        acks += [int(line) for line in lines]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    assert acks == list(range(len(acks)))
    store = open_engine(disk_engine_name, path)
    try:
        for i in acks:
            partition, bucket, key, value = entry(i)
            assert store.get(partition, bucket, key) == value, f"acknowledged key {i} lost"
        found = [(p, b, k, v) for p in range(PARTITIONS) for b, k, v in store.scan(p)]
        assert len(found) >= len(acks)
        for partition, bucket, key, value in found:
            assert entry(int(key.removeprefix(b"key-"))) == (partition, bucket, key, value)
    finally:
        store.close()
