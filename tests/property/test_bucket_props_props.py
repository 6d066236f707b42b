"""The bucket props table merges like a join: any order, any repetition, the same table and digest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.config import ClusterConfig
from dynakv.protocol.bucket_props import PropsTable, decode_entry, encode_entry
from dynakv.protocol.messages import BucketPropsEntry

DEFAULTS = ClusterConfig().bucket_defaults()

props_sets = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["n_val", "w", "allow_mult"]),
        st.integers(1, 3),
        max_size=3,
    ).map(lambda d: tuple(sorted((k, (v % 2 == 0) if k == "allow_mult" else v) for k, v in d.items()))),
)
entries = st.builds(
    BucketPropsEntry,
    st.sampled_from([b"a", b"b", b"c"]),
    props_sets,
    st.integers(0, 5),
    st.sampled_from(["n1", "n2", "n3"]),
)


def merged(items: list[BucketPropsEntry]) -> PropsTable:
    table = PropsTable(DEFAULTS, {}, 100)
    for item in items:
        table.adopt(item)
    return table


@given(st.lists(entries, max_size=12), st.randoms(use_true_random=False))
def test_merge_is_order_independent_and_idempotent(items: list[BucketPropsEntry], rnd: object) -> None:
    first = merged(items)
    shuffled = list(items) * 2
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    second = merged(shuffled)
    assert first.entries() == second.entries()
    assert first.digest() == second.digest()
    for bucket in (b"a", b"b", b"c"):
        assert first.effective(bucket) == second.effective(bucket)


@given(st.lists(entries, max_size=8), st.lists(entries, max_size=8))
def test_merging_two_tables_both_ways_converges(
    left: list[BucketPropsEntry], right: list[BucketPropsEntry]
) -> None:
    a, b = merged(left), merged(right)
    for item in b.newer_than(a.entries()):
        a.adopt(item)
    for item in a.newer_than(b.entries()):
        b.adopt(item)
    assert a.digest() == b.digest()


@given(entries)
def test_entries_survive_encoding(item: BucketPropsEntry) -> None:
    assert decode_entry(encode_entry(item)) == item
