"""Availability with real node processes (issue 5's acceptance): sloppy quorum, hinted handoff, and
failure detection under SIGSTOP.

(a) 5 nodes, n_val 3, sqlite. Two primaries A and B of a set of keys (all with the same preference list
A, B, C) are killed with SIGKILL. At once, puts with w=2 through the survivor C must succeed (a put sent
before C noticed may fail, but only within the documented detection bound). Once C's preference list
names the two fallbacks, each key is read and a successor written with its context: a put of the first
round acknowledged while C still counted B up may have left B without a copy and without a hint (only
anti-entropy would bring it), while every put of the second round reaches both fallbacks. The fallbacks
then hold at least one hint per key, shown by `/stats` (`pending_hints`) and `dynakv status --json`
(`hints_pending`). A and B are restarted from their data dirs; every node's hints drain to 0; then A and
B are stopped and their storage read directly (nothing reads the keys after the restart, so read repair
cannot be what put them there): each holds exactly the second value of every key. The fallbacks'
storage must no longer hold the keys nor any hint.

(b) 5 nodes with a short detection bound in node.json (`suspect_after_ms` 2000, `probe_interval_ms`
500). Four writer threads put fresh keys (w=2) and read each back (r=2) through dev1, with a 2 s request
timeout, for 23 s; dev3 is SIGSTOPped for 10 s in the middle. With w=2 of 3 a stopped replica alone
never fails a request; what does fail is a put that dev1 (not a primary of the key) forwards to its
first target, dev3, before dev1 suspects it. So failures may only start after the SIGSTOP and before
dev1 counts dev3 down (watched through dev1's status), and must all end within the detection bound
(suspect_after + one probe interval) plus the request timeout and a slack; puts that dev1 would forward
to dev3 must succeed again while dev3 is still stopped. After SIGCONT every node's hints drain to 0,
then dev3 is stopped and its storage read: it holds every acknowledged key it is a primary of, those
written while it was stopped included. Its storage is read rather than asked with r=all because such a
get would read-repair dev3 itself and so prove nothing.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynakv.client import Client, DynakvClientError
from dynakv.core.config import Timing
from dynakv.core.objects import visible_siblings
from dynakv.core.preflist import preference_list, primaries
from dynakv.core.ring import Ring
from dynakv.protocol.hints import HINT_PREFIX
from dynakv.protocol.replica import read_local
from dynakv.storage.registry import open_engine
from tests.integration.conftest import IO_TIMEOUT_S, Cluster, StartCluster, parse_address, wait_for

BUCKET = b"avail"
REQUEST_TIMEOUT_MS = 2_000
RUN_TIMEOUT_S = 60
# Scheduling slack on 2 cores running 5 node processes and the test: ticks (100 ms), the client's reply
# margin, a loop busy with a burst of work.
SLACK_S = 1.0
DRAIN_DEADLINE_S = 30.0
log = logging.getLogger(__name__)


# -- helpers -----------------------------------------------------------------------------------------


def settings(cluster: Cluster, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cluster.nodes[name].data_dir / "node.json").read_text())
    return data


def value_of(key: bytes) -> bytes:
    return b"value of " + key


def first_value(key: bytes) -> bytes:
    return b"first value of " + key


def http_json(address: str | None, path: str) -> Any:
    assert address is not None
    host, port = parse_address(address)
    conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body)
        return json.loads(body)
    finally:
        conn.close()


def pending_hints_stat(cluster: Cluster, name: str) -> int:
    return int(http_json(cluster.nodes[name].http, "/stats")["pending_hints"])


def status_cli(cluster: Cluster, name: str) -> dict[str, Any]:
    """`dynakv status --json --host NODE`, as an operator runs it."""
    run = subprocess.run(
        [sys.executable, "-m", "dynakv", "status", "--json", "--host", cluster.client(name)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def hints_pending(cluster: Cluster, names: list[str]) -> dict[str, int]:
    """Each node's own `hints_pending`, through the client's status request (what `dynakv status`
    shows; in-process, so polling is cheap)."""
    found = {}
    for name in names:
        with Client([cluster.client(name)], timeout_s=IO_TIMEOUT_S) as client:
            found[name] = client.status().hints_pending
    return found


def wait_drained(cluster: Cluster) -> float:
    """Poll every node until its hints_pending is 0 (deadline); the seconds it took."""
    began = time.monotonic()
    seen: dict[str, int] = {}

    def drained() -> bool:
        seen.update(hints_pending(cluster, cluster.names))
        return not any(seen.values())

    try:
        wait_for(drained, DRAIN_DEADLINE_S, "every node's hints to drain", interval_s=0.1)
    except AssertionError as err:
        raise AssertionError(f"{err}; hints pending last seen: {seen}") from None
    return time.monotonic() - began


@dataclass
class Held:
    values: dict[bytes, list[bytes]]  # key -> visible sibling values
    hints: int  # hint entries in the meta space


def held(node_dir: Path, ring: Ring, keys: list[bytes]) -> Held:
    """What a stopped sqlite node holds of `keys`, read straight from its storage."""
    storage = open_engine("sqlite", str(node_dir / "storage"))
    try:
        values = {}
        for key in keys:
            obj = read_local(storage, ring.partition_for_key(BUCKET, key), BUCKET, key)
            values[key] = sorted(content.value for _, content in visible_siblings(obj))
        return Held(values, len(storage.meta_scan(HINT_PREFIX)))
    finally:
        storage.close()


def keys_with_primaries(ring: Ring, n_val: int, wanted: tuple[str, ...], count: int) -> list[bytes]:
    keys: list[bytes] = []
    i = 0
    while len(keys) < count:
        key = b"a-%d" % i
        if primaries(ring, ring.partition_for_key(BUCKET, key), n_val) == wanted:
            keys.append(key)
        i += 1
    return keys


# -- (a) kill -9 two primaries ------------------------------------------------------------------------


def test_puts_survive_two_dead_primaries_and_the_hints_drain_to_them(start_cluster: StartCluster) -> None:
    cluster = start_cluster(nodes=5, storage="sqlite", n_val=3)
    ring, n_val = cluster.ring()
    first = b"a-0"
    partition = ring.partition_for_key(BUCKET, first)
    prefs = primaries(ring, partition, n_val)
    dead, survivor = list(prefs[:2]), prefs[2]
    keys = keys_with_primaries(ring, n_val, prefs, 20)
    expected = preference_list(ring, partition, n_val, frozenset(dead))
    fallbacks = [e.node for e in expected if not e.primary]
    assert len(fallbacks) == 2 and set(fallbacks).isdisjoint(prefs)

    # The server's own preference list agrees with the one computed here.
    listed = http_json(cluster.nodes[survivor].http, "/buckets/avail/keys/a-0/preflist")["preflist"]
    assert [(e["node"], e["primary"]) for e in listed] == [(p, True) for p in prefs]

    for name in dead:
        cluster.kill9(name)
    killed_at = time.monotonic()

    # First round, at once: a put sent before the survivor noticed may fail (a timeout, or unavailable
    # when both targets turn out dead mid-request); past the documented detection bound (suspect_after_ms
    # plus a probe interval) plus one request timeout, every put must succeed.
    timing = Timing()
    bound_s = (timing.suspect_after_ms + timing.probe_interval_ms + REQUEST_TIMEOUT_MS) / 1000 + SLACK_S
    failures: list[tuple[float, bytes, str]] = []
    with Client([cluster.client(survivor)], timeout_s=IO_TIMEOUT_S) as client:
        for key in keys:
            while True:
                try:
                    client.put(BUCKET, key, first_value(key), w=2, timeout_ms=REQUEST_TIMEOUT_MS)
                    break
                except DynakvClientError as err:
                    failures.append((time.monotonic() - killed_at, key, repr(err)))
                    assert time.monotonic() - killed_at < bound_s, f"puts still failing: {failures}"
    puts_done_s = time.monotonic() - killed_at
    log.info("(a) %d puts done %.2f s after the kill; failures: %s", len(keys), puts_done_s, failures)

    # The survivor serves the keys from the two fallbacks, each standing in for one dead primary.
    def sloppy() -> bool:
        listed = http_json(cluster.nodes[survivor].http, "/buckets/avail/keys/a-0/preflist")["preflist"]
        return [(e["node"], e["primary"]) for e in listed] == [(e.node, e.primary) for e in expected]

    wait_for(sloppy, max(0.0, killed_at + bound_s - time.monotonic()), f"{survivor} to count {dead} down")
    seen_s = time.monotonic() - killed_at  # an upper bound: first looked at after the first round
    log.info("(a) %s's preference list names the fallbacks %.2f s after the kill", survivor, seen_s)

    # Second round, now that the survivor counts both down: read each key and write a successor. A put
    # of the first round acknowledged while the survivor still counted one dead primary up left that
    # primary without a copy and without a hint (only anti-entropy would bring it); every put of this
    # round goes to both fallbacks, so each holds at least one hint per key. A fallback may hold one
    # more for a key: in the first round it may have stood in for the other dead primary (the one counted
    # down first), and a hint names its target, so both stay until handed off.
    with Client([cluster.client(survivor)], timeout_s=IO_TIMEOUT_S) as client:
        for key in keys:
            got = client.get(BUCKET, key, r=2, timeout_ms=REQUEST_TIMEOUT_MS)
            assert {s.value for s in got.siblings} == {first_value(key)}, (key, got)
            client.put(BUCKET, key, value_of(key), context=got.context, w=2, timeout_ms=REQUEST_TIMEOUT_MS)

    # w=2 may answer before the second fallback's write lands: poll.
    shown: dict[str, int] = {}

    def hints_shown() -> bool:
        shown.update({name: pending_hints_stat(cluster, name) for name in fallbacks})
        return all(len(keys) <= count <= 2 * len(keys) for count in shown.values())

    try:
        wait_for(hints_shown, 10, f"/stats pending_hints >= {len(keys)} on {fallbacks}", interval_s=0.05)
    except AssertionError as err:
        raise AssertionError(f"{err}; last seen {shown}") from None
    assert pending_hints_stat(cluster, survivor) == 0
    report = status_cli(cluster, fallbacks[0])
    assert report["hints_pending"] == pending_hints_stat(cluster, fallbacks[0]) >= len(keys)
    reachable = {m["name"]: m["reachable"] for m in report["members"]}
    assert reachable == {name: name not in dead for name in cluster.names}

    restarted_at = time.monotonic()
    for name in dead:
        cluster.restart(name)
    drain_s = wait_drained(cluster)
    log.info(
        "(a) hints drained %.2f s after both nodes were up (%.2f s after the first restart began)",
        *(drain_s, time.monotonic() - restarted_at),
    )
    report = status_cli(cluster, fallbacks[0])
    assert report["hints_pending"] == 0
    assert all(m["reachable"] for m in report["members"]), report
    assert [pending_hints_stat(cluster, name) for name in fallbacks] == [0, 0]

    for name in dead + fallbacks:
        cluster.stop(name)
    for name in dead:
        got = held(cluster.nodes[name].data_dir, ring, keys)
        wrong = {k: v for k, v in got.values.items() if v != [value_of(k)]}
        assert not wrong, f"{name} lacks {len(wrong)} of {len(keys)} keys: {sorted(wrong.items())[:3]}"
        assert got.hints == 0
    for name in fallbacks:
        got = held(cluster.nodes[name].data_dir, ring, keys)
        kept = {k: v for k, v in got.values.items() if v}
        assert not kept, f"fallback {name} still holds {len(kept)} keys: {sorted(kept)[:3]}"
        assert got.hints == 0, f"fallback {name} still has {got.hints} hints in its meta space"


# -- (b) SIGSTOP one node under load ------------------------------------------------------------------

SUSPECT_AFTER_MS = 2_000
PROBE_INTERVAL_MS = 500
CLIENT_NODE = "dev1"
STOPPED = "dev3"
LOAD_BEFORE_S = 5.0
STOPPED_S = 10.0
LOAD_AFTER_S = 8.0
WRITERS = 4  # while some wait out a timed-out request, the others keep probing the cluster
PACE_S = 0.08  # per writer: ~12 puts and as many gets a second; ~50 of each in all, not a CPU hog


@dataclass
class Attempt:
    op: str
    key: bytes
    start: float
    end: float
    error: str | None


class Load(threading.Thread):
    """Puts of fresh keys with w=2, each read back with r=2, through one node until told to stop."""

    def __init__(self, address: str, prefix: bytes) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.prefix = prefix
        self.attempts: list[Attempt] = []
        self.acked: list[bytes] = []
        self.halt = threading.Event()
        self.crashed: BaseException | None = None

    def run(self) -> None:
        try:
            with Client([self.address], timeout_s=IO_TIMEOUT_S) as client:
                i = 0
                while not self.halt.is_set():
                    began = time.monotonic()
                    key = self.prefix + b"-%d" % i
                    i += 1
                    if self._attempt("put", key, functools.partial(self._put, client, key)):
                        self.acked.append(key)
                        self._attempt("get", key, functools.partial(self._get, client, key))
                    self.halt.wait(max(0.0, began + PACE_S - time.monotonic()))  # pacing, not waiting
        except BaseException as err:  # reported by the test
            self.crashed = err

    def _attempt(self, op: str, key: bytes, call: Callable[[], None]) -> bool:
        start = time.monotonic()
        error = None
        try:
            call()
        except DynakvClientError as err:
            error = repr(err)
        self.attempts.append(Attempt(op, key, start, time.monotonic(), error))
        return error is None

    @staticmethod
    def _put(client: Client, key: bytes) -> None:
        client.put(BUCKET, key, value_of(key), w=2, timeout_ms=REQUEST_TIMEOUT_MS)

    @staticmethod
    def _get(client: Client, key: bytes) -> None:
        got = client.get(BUCKET, key, r=2, timeout_ms=REQUEST_TIMEOUT_MS)
        if [s.value for s in got.siblings] != [value_of(key)]:
            raise DynakvClientError(f"read back {[s.value for s in got.siblings]}")


class Watch(threading.Thread):
    """Polls CLIENT_NODE's status: when it counts STOPPED unreachable, and when reachable again."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.changes: list[tuple[float, bool]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        last = None
        while not self.halt.wait(0.05):
            try:
                with Client([self.address], timeout_s=IO_TIMEOUT_S) as client:
                    status = client.status()
            except DynakvClientError:
                continue
            up = next(m.reachable for m in status.members if m.name == STOPPED)
            if up != last:
                self.changes.append((time.monotonic(), up))
                last = up


@dataclass
class Run:
    attempts: list[Attempt]
    acked: list[bytes]
    changes: list[tuple[float, bool]]  # (time, STOPPED reachable) in CLIENT_NODE's view
    stopped_at: float
    continued_at: float


def configure_timing(cluster: Cluster, timing: dict[str, int]) -> None:
    """Set node.json `timing` on every node, restarting the cluster on its data dirs to apply it."""
    cluster.stop_all()
    for name in cluster.names:
        path = cluster.nodes[name].data_dir / "node.json"
        data = json.loads(path.read_text())
        data["timing"] = timing
        path.write_text(json.dumps(data, indent=2))
    # `dev` picks listening ports below the kernel's ephemeral range, so no outbound connection made
    # while the nodes are down can take one of them before they bind again (cli/dev_cmd.py).
    cluster.relaunch()


def run_with_a_stop(cluster: Cluster) -> Run:
    """The load through CLIENT_NODE for LOAD_BEFORE_S + STOPPED_S + LOAD_AFTER_S, STOPPED stopped in the
    middle. STOPPED is always continued, and every thread stopped, whatever happens."""
    address = cluster.client(CLIENT_NODE)
    loads = [Load(address, b"b%d" % i) for i in range(WRITERS)]
    watch = Watch(address)
    threads: list[Load | Watch] = [*loads, watch]
    pid = cluster.nodes[STOPPED].pid
    stopped_at = continued_at = 0.0
    for thread in threads:
        thread.start()
    try:
        # The scenario's phases are durations of load (and of the fault), not waits for a condition.
        time.sleep(LOAD_BEFORE_S)
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            time.sleep(STOPPED_S)
        finally:
            os.kill(pid, signal.SIGCONT)
            continued_at = time.monotonic()
        time.sleep(LOAD_AFTER_S)
    finally:
        for thread in threads:
            thread.halt.set()
        for thread in threads:
            thread.join(timeout=2 * IO_TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert all(load.crashed is None for load in loads), [repr(load.crashed) for load in loads]
    attempts = sorted((a for load in loads for a in load.attempts), key=lambda a: a.start)
    acked = [key for load in loads for key in load.acked]
    return Run(attempts, acked, watch.changes, stopped_at, continued_at)


def test_a_stopped_node_fails_requests_only_until_detected_and_catches_up(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(nodes=5, storage="sqlite", n_val=3)
    configure_timing(cluster, {"suspect_after_ms": SUSPECT_AFTER_MS, "probe_interval_ms": PROBE_INTERVAL_MS})
    assert settings(cluster, STOPPED)["timing"]["suspect_after_ms"] == SUSPECT_AFTER_MS
    ring, n_val = cluster.ring()

    def prefs(key: bytes) -> tuple[str, ...]:
        return primaries(ring, ring.partition_for_key(BUCKET, key), n_val)

    def forwarded_to_stopped(key: bytes) -> bool:
        """A put the client's node does not coordinate and, with every node up, forwards to STOPPED."""
        return CLIENT_NODE not in prefs(key) and prefs(key)[0] == STOPPED

    run = run_with_a_stop(cluster)
    stopped_at, continued_at = run.stopped_at, run.continued_at
    failures = [a for a in run.attempts if a.error is not None]
    detected_s = next((t - stopped_at for t, up in run.changes if t > stopped_at and not up), None)
    trusted_s = next((t - continued_at for t, up in run.changes if t > continued_at and up), None)
    log.info(
        "(b) %d requests, %d failed; %s counted %s down %s s after SIGSTOP, up again %s s after SIGCONT",
        *(len(run.attempts), len(failures), CLIENT_NODE, STOPPED, detected_s, trusted_s),
    )
    for a in failures:
        since = (a.start - stopped_at, a.end - stopped_at)
        log.info("  %s %r %s [%+.2f, %+.2f] s after SIGSTOP: %s", a.op, a.key, prefs(a.key), *since, a.error)

    # Failures: only of requests still unanswered at the SIGSTOP (one sent just before it, whose
    # coordinator froze before answering, fails too: seen in CI on a loaded machine), and all over within
    # the detection bound (suspect_after plus a probe interval: the last message heard may be that old)
    # plus one request timeout (a request sent just before the bound fails that much later) plus slack.
    bound_s = (SUSPECT_AFTER_MS + PROBE_INTERVAL_MS + REQUEST_TIMEOUT_MS) / 1000 + SLACK_S
    early = [a for a in failures if a.end < stopped_at or a.start < stopped_at - REQUEST_TIMEOUT_MS / 1000]
    assert not early, f"failed before the SIGSTOP: {early[:3]}"
    late = [a for a in failures if a.end - stopped_at > bound_s]
    assert not late, f"{len(late)} requests failed past {bound_s:g} s after the SIGSTOP: {late[:3]}"
    assert detected_s is not None, f"{CLIENT_NODE} never counted {STOPPED} unreachable: {run.changes}"
    assert detected_s <= (SUSPECT_AFTER_MS + PROBE_INTERVAL_MS) / 1000 + SLACK_S
    # Sharper: only a request sent before the client's node counted the stopped one down fails (the
    # watch sees the change at most a poll late, so the observed time is no earlier than the change).
    after = [a for a in failures if a.start - stopped_at > detected_s + 0.1]
    assert not after, f"{len(after)} requests sent after the detection failed: {after[:3]}"

    # After the failures, still during the stop, requests succeed, including puts the client's node used
    # to forward to the stopped node and puts and gets of keys the stopped node is a primary of.
    recovered = max((a.end for a in failures), default=stopped_at)
    ok = [a for a in run.attempts if a.error is None and recovered <= a.start and a.end <= continued_at]
    assert any(a.op == "put" and forwarded_to_stopped(a.key) for a in ok), "no rerouted put succeeded"
    assert any(a.op == "put" and STOPPED in prefs(a.key) for a in ok)
    assert any(a.op == "get" and STOPPED in prefs(a.key) for a in ok)
    rerouted = min(
        (
            a.start
            for a in run.attempts
            if a.error is None and a.start > stopped_at and forwarded_to_stopped(a.key)
        ),
        default=continued_at,
    )
    log.info(
        "  failures span %.2f s (first sent to last answered); the first put rerouted around %s was sent "
        "%.2f s after SIGSTOP",
        *(recovered - min((a.start for a in failures), default=recovered), STOPPED, rerouted - stopped_at),
    )

    # Catch-up: every node's hints drain, then the stopped node holds every acknowledged key it is a
    # primary of, those written while it was stopped included.
    drain_s = wait_drained(cluster)
    log.info("  hints drained %.2f s after the load ended", drain_s)
    puts = {a.key: a for a in run.attempts if a.op == "put"}
    mine = [key for key in run.acked if STOPPED in prefs(key)]
    during = [key for key in mine if stopped_at <= puts[key].start <= continued_at]
    assert during, "no acknowledged write of the stopped node's keys while it was stopped"
    cluster.stop(STOPPED)
    got = held(cluster.nodes[STOPPED].data_dir, ring, mine)
    # Each key is written once; a put whose coordinator froze mid-request and that dev1 then handed to
    # another replica is stored twice (two dots, one content), which readers see as one value.
    missing = {k: v for k, v in got.values.items() if set(v) != {value_of(k)}}
    assert not missing, (
        f"{STOPPED} lacks {len(missing)} of its {len(mine)} keys ({len(during)} written while stopped, "
        f"{sum(k in missing for k in during)} of them missing): {sorted(missing)[:5]}"
    )
    assert got.hints == 0
    log.info(
        "  %s holds all %d of its acknowledged keys, %d written while stopped",
        STOPPED,
        len(mine),
        len(during),
    )
