"""Settings are validated on construction with errors that name the field and the bound."""

from __future__ import annotations

import pytest

from dynakv.core.config import BucketProps, ClusterConfig, Limits, Timing, resolve_quorum
from dynakv.core.errors import ConfigError


def test_defaults_are_riak_like() -> None:
    config = ClusterConfig()
    assert (config.partitions, config.n_val) == (64, 3)
    assert [config.quorum(q) for q in ("r", "w", "dw", "rw", "pr", "pw")] == [2, 2, 2, 2, 0, 0]


def test_r_above_n_val_names_both() -> None:
    with pytest.raises(ConfigError) as err:
        ClusterConfig(n_val=3, r=4)
    assert err.value.field == "r"
    assert "4" in str(err.value) and "n_val 3" in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"), [("w", 0), ("r", 0), ("pw", 4), ("dw", -1), ("r", "most"), ("w", True)]
)
def test_quorums_out_of_range_are_refused(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: "):
        ClusterConfig(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("symbol", "n_val", "expected"), [("one", 5, 1), ("quorum", 5, 3), ("quorum", 4, 3), ("all", 5, 5)]
)
def test_symbolic_quorums(symbol: str, n_val: int, expected: int) -> None:
    assert resolve_quorum("r", symbol, n_val) == expected


@pytest.mark.parametrize("q", [4, 7, 100, 131072, 0])
def test_partitions_must_be_a_power_of_two_in_range(q: int) -> None:
    with pytest.raises(ConfigError, match=r"^partitions: "):
        ClusterConfig(partitions=q)


def test_n_val_above_partitions_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^n_val: "):
        ClusterConfig(partitions=8, n_val=9)


def test_unknown_setting_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^n_vall: unknown setting"):
        ClusterConfig.from_mapping({"n_vall": 3})
    assert ClusterConfig.from_mapping({"n_val": 5, "w": 4}).quorum("w") == 4


def test_timing_refuses_intervals_shorter_than_a_tick() -> None:
    with pytest.raises(ConfigError, match=r"^request_timeout_ms: 50 is below the minimum 100"):
        Timing(tick_ms=100, request_timeout_ms=50)


def test_limits_keep_a_frame_big_enough_for_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^frame_bytes_max: "):
        Limits(object_bytes_max=10_000_000, frame_bytes_max=10_000_000)
    with pytest.raises(ConfigError, match=r"^value_bytes_max: "):
        Limits(value_bytes_max=2_000, object_bytes_max=1_000)
    with pytest.raises(ConfigError, match=r"^siblings_max: "):
        Limits(siblings_max=0)


def test_bucket_props_check_quorums_against_their_own_n_val() -> None:
    assert BucketProps(n_val=5, w="quorum").quorum("w") == 3
    with pytest.raises(ConfigError, match=r"^w: 3 is above n_val 2"):
        BucketProps(n_val=2, w=3)
    with pytest.raises(ConfigError, match=r"^n_val: 17 is above the maximum 16"):
        BucketProps(n_val=17)
    assert ClusterConfig(n_val=5, r=1).bucket_defaults() == BucketProps(n_val=5, r=1)
