"""The pure parts of the runtime: settings resolution, addresses, the actor epoch, backoff, framing."""

from __future__ import annotations

import random

import pytest

from dynakv.core.errors import ConfigError
from dynakv.runtime.backoff import Backoff
from dynakv.runtime.framed import frame_buffers
from dynakv.runtime.node_state import (
    EPOCH_META_NAME,
    Address,
    NodeConfig,
    Overrides,
    actor_id,
    parse_address,
    resolve,
)
from dynakv.storage.memory import MemoryEngine
from dynakv.wire.framing import FrameDecoder

A = Address("127.0.0.11", 7000)
B = Address("127.0.0.12", 7000)
C = Address("127.0.0.13", 7000)


def first_start(**kw: object) -> NodeConfig:
    given = Overrides(name="a", listen=A, members={"b": B, "c": C}, **kw)  # type: ignore[arg-type]
    return resolve(None, given)


def test_parse_address_accepts_loopback_only() -> None:
    assert parse_address("127.0.0.11:7000", "listen") == A
    assert str(parse_address("127.1.2.3:0", "listen")) == "127.1.2.3:0"
    for bad in ("10.0.0.1:7000", "0.0.0.0:1", "localhost:1", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000"):
        with pytest.raises(ConfigError) as err:
            parse_address(bad, "listen")
        assert err.value.field == "listen"


def test_first_start_needs_name_and_listen() -> None:
    with pytest.raises(ConfigError, match="--name and --listen"):
        resolve(None, Overrides(name="a"))


def test_first_start_defaults() -> None:
    config = first_start()
    assert config.members == {"a": A, "b": B, "c": C}
    assert config.client == Address(A.host, 0)
    assert (config.storage, config.partitions, config.n_val, config.cluster_name) == (
        "sqlite",
        64,
        3,
        "dynakv",
    )
    # Fewer members than the default n_val: n_val follows the member count, unless given.
    alone = resolve(None, Overrides(name="solo", listen=A))
    assert alone.n_val == 1
    # A lone node may be given the n_val its cluster will have once others join (dynamic membership);
    # so may a node joining through a seed, whose default is the usual one.
    assert resolve(None, Overrides(name="solo", listen=A, n_val=3)).n_val == 3
    assert resolve(None, Overrides(name="solo", listen=A, seeds=(B,))).n_val == 3
    # A static cluster still needs at least n_val members.
    with pytest.raises(ConfigError, match="n_val"):
        resolve(None, Overrides(name="solo", listen=A, members={"other": B}, n_val=3))


def test_json_round_trip_and_restart_overrides() -> None:
    config = first_start(storage="lmdb", partitions=128, http=Address("127.0.0.11", 8098))
    saved = NodeConfig.from_json(config.to_json())
    assert saved == config
    # A restart with no flags keeps everything.
    assert resolve(saved, Overrides()) == saved
    # Flags override; given members replace the saved list; the node's own entry follows --listen.
    moved = Address("127.0.0.11", 7100)
    again = resolve(saved, Overrides(listen=moved, members={"b": B}, n_val=2, cluster_name="prod"))
    assert again.members == {"a": moved, "b": B}
    assert (again.listen, again.n_val, again.cluster_name, again.storage) == (moved, 2, "prod", "lmdb")


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ConfigError, match="partitions"):
        first_start(partitions=100)
    with pytest.raises(ConfigError, match="storage"):
        first_start(storage="rocks")
    with pytest.raises(ConfigError, match="name"):
        resolve(None, Overrides(name="a#1", listen=A))
    data = first_start().to_json()
    data["timing"] = {"tick_ms": 0}
    with pytest.raises(ConfigError, match="tick_ms"):
        NodeConfig.from_json(data)
    del data["members"]
    with pytest.raises(ConfigError, match=r"node\.json"):
        NodeConfig.from_json(data)


def test_actor_epoch_lives_with_the_data() -> None:
    engine = MemoryEngine()
    first = actor_id("a", engine)
    assert first.startswith("a#") and len(first) == len("a#") + 16
    assert actor_id("a", engine) == first  # same data, same actor
    assert engine.meta_get(EPOCH_META_NAME) is not None
    assert actor_id("a", MemoryEngine()) != first  # data gone: a new actor, never the old dots


def test_backoff_grows_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(random.Random(7), base_ms=50, cap_ms=2000)
    delays = [backoff.next_delay_ms() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(2000, 50 << attempt)
        assert ceiling // 2 <= delay <= ceiling
    assert delays[-1] >= 1000
    assert len(set(delays[-5:])) > 1  # jittered, not a constant
    backoff.reset()
    assert backoff.next_delay_ms() <= 50
    # Seeded: the same seed gives the same delays.
    again = Backoff(random.Random(7), base_ms=50, cap_ms=2000)
    assert [again.next_delay_ms() for _ in range(12)] == delays


def test_frame_buffers_decode_back() -> None:
    payloads = [b"x", b"hello" * 100, b"\x00" * 3]
    stream = b"".join(frame_buffers(payloads, 1 << 20))
    decoder = FrameDecoder(1 << 20)
    got = [frame for i in range(0, len(stream), 7) for frame in decoder.feed(stream[i : i + 7])]
    assert got == payloads
    with pytest.raises(AssertionError):
        frame_buffers([b""], 10)


def test_bucket_properties_in_node_json_are_kept_and_checked() -> None:
    data = first_start().to_json()
    data["buckets"] = {"carts": {"n_val": 2, "w": "all"}}
    config = NodeConfig.from_json(data)
    assert NodeConfig.from_json(config.to_json()) == config
    assert resolve(config, Overrides()).bucket_props()[b"carts"].quorum("w") == 2
    data["buckets"] = {"carts": {"n_val": 2, "r": 3}}
    with pytest.raises(ConfigError, match=r"^r: 3 is above n_val 2"):
        NodeConfig.from_json(data)
