"""The phi-accrual failure detector: low phi under regular arrivals, suspicion within the bound, trust
restored by an answer, bounded memory, round-robin probing, determinism."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.errors import ConfigError
from dynakv.protocol.failure_detector import DetectorSettings, FailureDetector

SETTINGS = DetectorSettings()
intervals = st.lists(st.integers(1, 3_000), min_size=0, max_size=60)


def fed(arrival_gaps: list[int], settings: DetectorSettings = SETTINGS) -> tuple[FailureDetector, int]:
    """A detector that watched peer "p" from 0 and heard from it after each gap; returns the last time."""
    detector = FailureDetector(settings)
    now = 0
    detector.watch("p", now)
    for gap in arrival_gaps:
        now += gap
        detector.heartbeat("p", now)
    return detector, now


@given(st.integers(100, 1_000), st.lists(st.integers(-30, 30), min_size=5, max_size=80))
def test_regular_heartbeats_keep_phi_low(period: int, jitter: list[int]) -> None:
    detector = FailureDetector()
    now = 0
    detector.watch("p", now)
    for j in jitter:
        gap = period + j
        assert detector.phi("p", now + gap) < 1.0  # just before the next arrival
        assert detector.is_available("p", now + gap)
        now += gap
        detector.heartbeat("p", now)


@given(intervals, st.integers(0, 100_000), st.integers(0, 100_000))
def test_silence_raises_phi_monotonically(gaps: list[int], a: int, b: int) -> None:
    detector, last = fed(gaps)
    early, late = sorted((a, b))
    assert detector.phi("p", last + early) <= detector.phi("p", last + late)
    if late > early:
        assert detector.phi("p", last + early) < detector.phi("p", last + late)


@given(intervals)
def test_whatever_the_history_a_silent_peer_is_suspected_within_the_documented_bound(gaps: list[int]) -> None:
    detector, last = fed(gaps)
    at = detector.suspect_at_ms("p")
    assert at <= last + SETTINGS.suspect_within_ms()
    assert detector.is_available("p", at - 1)
    assert not detector.is_available("p", at)
    assert detector.phi("p", at) == pytest.approx(SETTINGS.threshold, rel=1e-3)
    assert detector.suspected(last + SETTINGS.suspect_within_ms()) == ["p"]


def test_the_documented_bound_is_threshold_times_ln10_times_the_largest_mean() -> None:
    assert SETTINGS.suspect_within_ms() == 18_421  # 8 * ln(10) * 1000 ms, rounded up


def test_a_fresh_peer_is_not_suspected_at_once_but_after_the_bootstrap_bound() -> None:
    detector = FailureDetector()
    detector.watch("p", 5_000)
    assert detector.is_available("p", 5_000 + 3 * SETTINGS.bootstrap_interval_ms)
    bound = SETTINGS.suspect_after_ms(SETTINGS.bootstrap_interval_ms)
    assert detector.is_available("p", 5_000 + bound - 1)
    assert not detector.is_available("p", 5_000 + bound)


@given(intervals, st.integers(0, 1_000_000))
def test_a_peer_that_answers_again_is_trusted_again(gaps: list[int], silence: int) -> None:
    detector, last = fed(gaps)
    back = last + SETTINGS.suspect_within_ms() + silence
    assert not detector.is_available("p", back)
    detector.heartbeat("p", back)
    assert detector.phi("p", back) == 0.0
    assert detector.is_available("p", back) and detector.suspected(back) == []


def test_a_long_pause_is_not_learned_as_the_peers_rhythm() -> None:
    detector, last = fed([500] * 20)
    before = detector.mean_interval_ms("p")
    detector.heartbeat("p", last + 60_000)  # back from a SIGSTOP
    assert detector.mean_interval_ms("p") == before == 500
    assert not detector.is_available("p", last + 60_000 + SETTINGS.suspect_after_ms(500))


def test_the_window_is_bounded_and_forgets_old_intervals() -> None:
    settings = DetectorSettings(window=10)
    detector, _ = fed([900] * 50 + [200] * 10, settings)
    assert detector.mean_interval_ms("p") == 200
    detector, _ = fed([900] * 50 + [200] * 9, settings)
    assert detector.mean_interval_ms("p") == (900 + 200 * 9) / 10


def test_the_mean_is_clamped_so_fast_replies_do_not_make_a_hair_trigger() -> None:
    detector, last = fed([1] * 50)
    assert detector.mean_interval_ms("p") == SETTINGS.min_interval_ms
    assert detector.is_available("p", last + 1_000)


def test_arrivals_out_of_order_and_unknown_peers_are_harmless() -> None:
    detector, last = fed([300, 300])
    detector.heartbeat("p", last - 100)
    assert detector.phi("p", last) == 0.0
    assert detector.phi("stranger", 10**9) == 0.0 and detector.is_available("stranger", 10**9)
    detector.forget("p")
    assert detector.peers == [] and detector.suspected(10**9) == []


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 5_000)), max_size=40))
def test_the_same_arrivals_give_the_same_judgement(events: list[tuple[str, int]]) -> None:
    def run() -> list[tuple[float, bool]]:
        detector = FailureDetector()
        now, out = 0, []
        for peer, gap in events:
            now += gap
            detector.heartbeat(peer, now)
            out += [(detector.phi(p, now + 7_000), detector.is_available(p, now + 7_000)) for p in "abc"]
        return out

    assert run() == run()


def test_probes_go_round_robin_over_sorted_peers_through_joins_and_leaves() -> None:
    detector = FailureDetector()
    assert detector.next_probe() is None
    for peer in ("n3", "n1", "n2"):
        detector.watch(peer, 0)
    assert [detector.next_probe() for _ in range(4)] == ["n1", "n2", "n3", "n1"]
    detector.watch("n0", 0)
    detector.forget("n2")
    assert [detector.next_probe() for _ in range(4)] == ["n3", "n0", "n1", "n3"]


@given(st.integers(200, 5_000), st.integers(2, 10))
def test_settings_for_suspecting_a_paused_process_within_a_bound(probe_ms: int, factor: int) -> None:
    within = probe_ms * factor
    settings = DetectorSettings.suspecting_within(within, probe_ms)
    assert settings.suspect_within_ms() <= within
    detector, last = fed([probe_ms] * 30, settings)
    assert detector.is_available("p", last + probe_ms)  # a healthy peer is not suspected
    assert not detector.is_available("p", last + within)  # a paused one is, within the bound


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        DetectorSettings(threshold=0)
    with pytest.raises(ConfigError, match="window"):
        DetectorSettings(window=0)
    with pytest.raises(ConfigError, match="bootstrap_interval_ms"):
        DetectorSettings(bootstrap_interval_ms=5_000)
    with pytest.raises(ConfigError, match="suspect_within_ms"):
        DetectorSettings.suspecting_within(1_500, 1_000)
