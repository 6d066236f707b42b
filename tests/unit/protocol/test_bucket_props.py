"""Bucket props: checking a change, Riak's echo, the last-writer-wins table, its digest and encoding."""

from __future__ import annotations

import pytest

from dynakv.core import codec
from dynakv.core.config import BucketProps, ClusterConfig
from dynakv.core.errors import ConfigError, DecodeError
from dynakv.protocol.bucket_props import (
    PropsSet,
    PropsTable,
    batches,
    check_change,
    decode_entry,
    encode_entry,
    entry_to_payload,
    layered,
    shown,
)
from dynakv.protocol.messages import BucketPropsEntry, Failure, FailureKind

DEFAULTS = ClusterConfig().bucket_defaults()


def change(
    props: dict[str, object],
    current: PropsSet | None = None,
    base: BucketProps = DEFAULTS,
    ring_nodes: int = 5,
) -> PropsSet | Failure:
    return check_change(b"b", props, current, base, DEFAULTS, n_val_max=16, ring_nodes=ring_nodes)


def refused(props: dict[str, object], field: str, **kw: object) -> str:
    result = change(props, **kw)  # type: ignore[arg-type]
    assert isinstance(result, Failure), result
    assert result.kind is FailureKind.BAD_REQUEST and result.field == field, result
    return result.message


# -- config -------------------------------------------------------------------------------------------


def test_config_has_the_flags_with_allow_mult_true_by_default() -> None:
    assert DEFAULTS.allow_mult is True and DEFAULTS.last_write_wins is False
    assert DEFAULTS.basic_quorum is False and DEFAULTS.notfound_ok is True
    legacy = ClusterConfig(allow_mult=False, notfound_ok=False).bucket_defaults()
    assert legacy.allow_mult is False and legacy.notfound_ok is False
    with pytest.raises(ConfigError, match=r"^allow_mult: expected true or false"):
        ClusterConfig(allow_mult=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^notfound_ok: "):
        BucketProps(notfound_ok="yes")  # type: ignore[arg-type]


def test_default_quorum_means_the_cluster_default() -> None:
    defaults = ClusterConfig(n_val=5, w=4).bucket_defaults()
    props = BucketProps(n_val=5, w="default")
    with pytest.raises(ConfigError, match=r"^w: 'default' must be resolved"):
        props.quorum("w")
    assert props.over(defaults).quorum("w") == 4
    with pytest.raises(ConfigError, match=r"^w: 4 is above n_val 3"):
        BucketProps(n_val=3, w="default").over(defaults)
    with pytest.raises(ConfigError, match=r"^r: 'default' names the cluster default"):
        ClusterConfig(r="default")


# -- checking a change ----------------------------------------------------------------------------------


def test_a_change_merges_with_what_was_set_and_keeps_quorums_as_given() -> None:
    first = change({"w": 1, "dw": "all"})
    assert first == (("dw", "all"), ("w", 1))
    second = change({"n_val": 5, "allow_mult": False}, current=first)  # type: ignore[arg-type]
    assert second == (("allow_mult", False), ("dw", "all"), ("n_val", 5), ("w", 1))


def test_quorums_are_checked_against_the_new_n_val() -> None:
    assert "above n_val 2" in refused({"n_val": 2, "w": 3}, "w")
    # A quorum set earlier is checked against a later n_val too.
    assert "above n_val 1" in refused({"n_val": 1}, "w", current=(("w", 2),))
    assert change({"n_val": 1, "w": "quorum", "r": "default", "pr": 0}) == (
        ("n_val", 1), ("pr", 0), ("r", "default"), ("w", "quorum"),
    )
    assert "below the minimum 1" in refused({"r": 0}, "r")
    assert change({"dw": 0}) == (("dw", 0),)  # dw, pr and pw may be 0
    assert "not a quorum" in refused({"w": "most"}, "w")
    assert "expected an integer" in refused({"w": True}, "w")


def test_n_val_is_bounded_by_partitions_and_the_ring_nodes() -> None:
    assert "outside 1..16" in refused({"n_val": 17}, "n_val")
    assert "outside 1..16" in refused({"n_val": 0}, "n_val")
    assert "expected an integer" in refused({"n_val": "3"}, "n_val")
    message = refused({"n_val": 4}, "n_val", ring_nodes=3)
    assert "above the 3 distinct nodes in the ring" in message
    assert change({"n_val": 3}, ring_nodes=3) == (("n_val", 3),)


def test_flags_must_be_booleans() -> None:
    for flag in ("allow_mult", "last_write_wins", "basic_quorum", "notfound_ok"):
        assert "expected true or false" in refused({flag: 1}, flag)
        assert change({flag: False}) == ((flag, False),)


def test_fixed_props_pass_only_unchanged() -> None:
    echo = shown(b"b", DEFAULTS, None)
    fixed = {name: echo[name] for name in ("name", "old_vclock", "precommit", "chash_keyfun", "dvv_enabled")}
    assert change(fixed) == ()
    assert "does not support changing it" in refused({"old_vclock": 1}, "old_vclock")
    assert "does not support changing it" in refused({"dvv_enabled": False}, "dvv_enabled")
    assert "does not support changing it" in refused({"dvv_enabled": 1}, "dvv_enabled")  # 1 is not true
    assert "does not support changing it" in refused({"name": "other"}, "name")
    assert "does not support changing it" in refused({"postcommit": [{"mod": "m"}]}, "postcommit")
    assert "not a bucket property" in refused({"search_index": "x"}, "search_index")


def test_every_prop_is_echoed_with_quorums_exactly_as_set() -> None:
    echo = shown(b"caf\xc3\xa9\xff", DEFAULTS, (("dw", "all"), ("w", 1)))
    assert echo["name"] == "café\ufffd"
    assert echo["w"] == 1 and echo["dw"] == "all" and echo["r"] == "quorum" and echo["pr"] == 0
    assert echo["n_val"] == 3 and echo["allow_mult"] is True and echo["notfound_ok"] is True
    assert echo["old_vclock"] == 86400 and echo["young_vclock"] == 20 and echo["big_vclock"] == 50
    assert echo["small_vclock"] == 50 and echo["precommit"] == [] and echo["postcommit"] == []
    assert echo["dvv_enabled"] is True and echo["write_once"] is False
    assert echo["chash_keyfun"] == {"mod": "riak_core_util", "fun": "chash_std_keyfun"}
    assert echo["linkfun"] == {"mod": "riak_kv_wm_link_walker", "fun": "mapreduce_linkfun"}
    assert list(echo) == sorted(echo)


def test_layered_resolves_default_and_refuses_inconsistent_props() -> None:
    props = layered(BucketProps(n_val=5), (("r", "default"), ("w", 1)), DEFAULTS)
    assert props.r == "quorum" and props.w == 1 and props.n_val == 5
    with pytest.raises(ConfigError):
        layered(DEFAULTS, (("n_val", 1), ("w", 2)), DEFAULTS)


# -- the table --------------------------------------------------------------------------------------------


def entry(bucket: bytes, props: PropsSet | None, stamp_ms: int, node: str = "n1") -> BucketPropsEntry:
    return BucketPropsEntry(bucket, props, stamp_ms, node)


def table(**kw: object) -> PropsTable:
    return PropsTable(DEFAULTS, kw.pop("static", {}), kw.pop("limit", 10))  # type: ignore[arg-type]


def test_effective_layers_defaults_static_and_set_props() -> None:
    t = table(static={b"s": BucketProps(n_val=5, w="all")})
    assert t.effective(b"x") == DEFAULTS
    assert t.effective(b"s").n_val == 5
    assert t.adopt(entry(b"s", (("r", 1),), 10))
    props = t.effective(b"s")
    assert (props.n_val, props.w, props.r) == (5, "all", 1)
    assert t.shown(b"s")["w"] == "all" and t.shown(b"s")["r"] == 1
    assert t.adopt(entry(b"s", None, 11))  # a reset goes back to the static props
    assert t.effective(b"s") == BucketProps(n_val=5, w="all")
    assert len(t) == 1 and t.props_set(b"s") is None


def test_the_newest_stamp_wins_and_node_names_break_ties() -> None:
    t = table()
    assert t.adopt(entry(b"b", (("w", 1),), 10, "n1"))
    assert not t.adopt(entry(b"b", (("w", 2),), 9, "n9"))
    assert not t.adopt(entry(b"b", (("w", 1),), 10, "n1"))  # the same entry again changes nothing
    assert t.adopt(entry(b"b", (("w", 3),), 10, "n2"))
    assert t.effective(b"b").w == 3
    assert t.next_stamp(5) == 11 and t.next_stamp(50) == 50


def test_invalid_and_excess_entries_are_refused() -> None:
    t = table(limit=1)
    assert not t.adopt(entry(b"b", (("n_val", 1), ("w", 2)), 10))
    assert len(t) == 0
    assert t.adopt(entry(b"a", (("w", 1),), 10))
    assert t.full_for(b"b") and not t.full_for(b"a")
    assert t.adopt(entry(b"b", (("w", 1),), 10))  # a peer's entry: refused only past twice the limit
    assert not t.adopt(entry(b"c", (("w", 1),), 10))
    assert len(t) == 2


def test_digest_is_order_independent_and_sees_every_difference() -> None:
    e1, e2 = entry(b"a", (("w", 1),), 10), entry(b"b", None, 12, "n2")
    t1, t2 = table(), table()
    for e in (e1, e2):
        t1.adopt(e)
    for e in (e2, e1):
        t2.adopt(e)
    assert t1.digest() == t2.digest() and len(t1.digest()) == 32
    assert t1.digest() != table().digest()
    t2.adopt(entry(b"b", None, 13, "n2"))
    assert t1.digest() != t2.digest()
    assert t2.newer_than(t1.entries()) == [entry(b"b", None, 13, "n2")]
    assert t1.newer_than([]) == [e1, e2]


def test_entries_round_trip_and_bad_bytes_are_decode_errors() -> None:
    for e in (entry(b"b", (("dw", "all"), ("n_val", 2), ("notfound_ok", False)), 7), entry(b"b", None, 0)):
        assert decode_entry(encode_entry(e)) == e
    bad_payloads = [
        [b"b", [["w", 1], ["dw", 1]], 1, "n"],  # not sorted
        [b"b", [["zz", 1]], 1, "n"],  # not settable
        [b"b", [["n_val", 99]], 1, "n"],
        [b"b", [["w", "most"]], 1, "n"],
        [b"b", [["allow_mult", 1]], 1, "n"],
        [b"", None, 1, "n"],
        [b"b", None, -1, "n"],
        [b"b", None, 1, ""],
        [b"b", None, 1],
        ["b", None, 1, "n"],
    ]
    for payload in bad_payloads:
        with pytest.raises(DecodeError):
            decode_entry(codec.encode("bucket_props", payload))
    with pytest.raises(DecodeError):
        decode_entry(b"\xc1garbage")


def test_batches_split_by_size_and_never_come_back_empty() -> None:
    entries = [entry(f"bucket{i:03}".encode(), (("w", 1),), i) for i in range(50)]
    runs = batches(entries, 2000)
    assert len(runs) > 1 and [e for run in runs for e in run] == entries
    for run in runs:
        assert sum(len(codec.pack(entry_to_payload(e))) for e in run) <= 2000
    assert batches([], 2000) == [()]
    assert batches(entries[:1], 1) == [tuple(entries[:1])]
