"""The reachability view: probes, the suspicion bound, links, a node's own stop; and notices."""

from __future__ import annotations

from collections import Counter

import pytest

from dynakv.core.config import Timing
from dynakv.core.errors import ConfigError
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.liveness import Ping, Pong
from dynakv.protocol.notices import Notices
from dynakv.protocol.reachability import Change, Reachability

PEERS = ["a", "b", "c", "d"]
TIMING = Timing(tick_ms=100, probe_interval_ms=1_000, suspect_after_ms=5_000)


def reach() -> Reachability:
    return Reachability("me", [*PEERS, "me"], TIMING)


def pinged(out: list[Effect]) -> list[str]:
    return [e.dst for e in out if isinstance(e, Send) and isinstance(e.msg, Ping)]


def test_every_peer_is_probed_once_per_probe_interval_round_robin() -> None:
    r = reach()
    out: list[Effect] = []
    r.on_tick(0, out)
    assert pinged(out) == PEERS  # the first tick probes everyone
    out.clear()
    for now in range(100, 4_100, 100):
        r.on_tick(now, out)
    assert sorted(pinged(out)) == sorted(PEERS * 4)
    assert pinged(out)[:4] == PEERS


def test_a_ping_is_answered_with_a_pong_of_the_same_seq() -> None:
    out: list[Effect] = []
    reach().on_probe("a", Ping(7), out)
    assert out == [Send("a", Pong(7))]
    out.clear()
    reach().on_probe("a", Pong(7), out)
    assert out == []


def run(r: Reachability, start: int, end: int, heard: list[str]) -> dict[str, int]:
    """Tick from start to end, hearing from `heard` every 500 ms; when each peer turned unreachable."""
    down_at: dict[str, int] = {}
    for now in range(start, end, 100):
        if now % 500 == 0:
            for peer in heard:
                r.heard(peer, now)
        for peer in r.on_tick(now, []).down:
            down_at[peer] = now
    return down_at


def test_a_silent_peer_is_suspected_within_the_bound_and_never_before_two_probe_intervals() -> None:
    r = reach()
    run(r, 0, 3_000, PEERS)
    down_at = run(r, 3_000, 10_000, ["a", "b", "c"])
    assert list(down_at) == ["d"]
    last_heard = 2_500
    assert 2 * TIMING.probe_interval_ms <= down_at["d"] - last_heard <= TIMING.suspect_after_ms
    assert r.view() == ["d"]
    assert r.heard("d", 10_000) == Change(up=("d",))
    assert r.view() == []


def test_a_burst_of_replies_does_not_make_the_detector_hair_triggered() -> None:
    r = reach()
    r.on_tick(0, [])
    for now in range(0, 1_000, 5):
        r.heard("a", now)  # a burst: the mean interval drops to its floor
    down_at = run(r, 1_000, 8_000, ["b", "c", "d"])
    assert down_at["a"] - 995 >= 2 * TIMING.probe_interval_ms


def test_a_lost_link_is_unreachable_until_made_again_whatever_it_says() -> None:
    r = reach()
    r.on_tick(0, [])
    assert r.link_lost("a") == Change(down=("a",))
    assert r.link_lost("a") == Change()
    assert r.heard("a", 100) == Change()  # a late message: the link is still down
    assert r.on_tick(100, []) == Change() and r.view() == ["a"]
    assert r.link_made("a", 200) == Change(up=("a",))
    assert r.view() == []


def test_a_node_that_was_stopped_does_not_suspect_its_peers_when_it_runs_again() -> None:
    r = reach()
    run(r, 0, 1_000, PEERS)
    assert r.on_tick(20_000, []) == Change()  # 19 s without a tick: our silence, not theirs
    down_at = run(r, 20_100, 30_000, [])
    assert set(down_at) == set(PEERS)
    assert min(down_at.values()) - 20_000 >= 2 * TIMING.probe_interval_ms


def test_the_suspicion_bound_must_leave_room_for_two_probes() -> None:
    with pytest.raises(ConfigError) as err:
        Timing(probe_interval_ms=1_000, suspect_after_ms=1_500)
    assert err.value.field == "suspect_after_ms"


def test_notices_are_taken_once_and_bounded() -> None:
    counters: Counter[str] = Counter()
    notices = Notices(counters, max_lines=3)
    for i in range(5):
        notices.add(f"line {i}")
    assert len(notices) == 3
    assert notices.take() == ["line 2", "line 3", "line 4"]
    assert notices.take() == [] and counters["notices.lost"] == 2
