"""Properties of the object and context encodings: round trips, and DecodeError (only) on bad input."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core import codec
from dynakv.core.dvv import INT_MAX, Dot, SiblingSet, VersionVector, decode_context, encode_context
from dynakv.core.errors import DecodeError
from dynakv.core.objects import (
    Content,
    StoredObject,
    decode_object,
    encode_object,
    last_write_wins,
    object_hash,
    object_to_payload,
)

ACTORS = st.text(min_size=1, max_size=12)
TEXT = st.text(max_size=20)
COUNTERS = st.integers(1, INT_MAX)
TIMES = st.integers(0, INT_MAX)

CONTENTS = st.builds(
    Content,
    st.binary(max_size=64),
    content_type=TEXT,
    charset=st.none() | TEXT,
    content_encoding=st.none() | TEXT,
    usermeta=st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
    links=st.lists(st.tuples(TEXT, TEXT, TEXT), max_size=3).map(tuple),
    indexes=st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
    last_modified_ms=TIMES,
    deleted=st.booleans(),
)

CLOCKS = st.dictionaries(ACTORS, st.tuples(COUNTERS, TIMES), max_size=6).map(
    lambda d: VersionVector.from_triples((a, c, ts) for a, (c, ts) in d.items())
)


@st.composite
def objects(draw: st.DrawFn) -> StoredObject:
    """Any object satisfying the invariants: every sibling's dot at or below the clock's counter."""
    clock = draw(CLOCKS)
    dots: set[Dot] = set()
    for actor, counter in clock.entries:
        counters = draw(st.sets(st.integers(max(1, counter - 5), counter), max_size=2))
        dots.update(Dot(actor, c) for c in counters)
    siblings = tuple((dot, draw(CONTENTS)) for dot in sorted(dots))
    return SiblingSet(clock, siblings)


MSGPACK_INTS = st.integers(-(1 << 63), (1 << 64) - 1)  # what msgpack can encode
LEAVES = (
    st.none()
    | st.booleans()
    | MSGPACK_INTS
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
MSGPACK = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4) | MSGPACK_INTS, inner, max_size=3)
    ),
    max_leaves=20,
)


def decodes_or_refuses(data: bytes) -> None:
    """Decoding gives a valid object (which then round-trips) or a DecodeError; never anything else."""
    try:
        obj = decode_object(data)
    except DecodeError:
        return
    assert decode_object(encode_object(obj)) == obj


@given(objects())
def test_object_round_trip(obj: StoredObject) -> None:
    data = encode_object(obj)
    assert decode_object(data) == obj
    assert encode_object(decode_object(data)) == data
    assert object_hash(decode_object(data)) == object_hash(obj)


@given(objects())
def test_lww_keeps_one_of_the_siblings_and_the_clock(obj: StoredObject) -> None:
    resolved = last_write_wins(obj)
    assert resolved.clock == obj.clock
    assert len(resolved.siblings) == min(1, len(obj.siblings))
    if obj.siblings:
        (kept,) = resolved.siblings
        assert kept in obj.siblings
        newest = max(content.last_modified_ms for content in obj.values())
        assert kept[1].last_modified_ms == newest
        # The documented tie-break, which needs nothing but the siblings, so every replica agrees.
        assert kept[0] == max(dot for dot, content in obj.siblings if content.last_modified_ms == newest)


@given(CLOCKS)
def test_context_round_trip(vv: VersionVector) -> None:
    assert decode_context(encode_context(vv)) == vv


@given(st.binary(max_size=200))
def test_random_bytes_give_decode_error_only(data: bytes) -> None:
    decodes_or_refuses(data)
    with contextlib.suppress(DecodeError):
        decode_context(data)


@given(MSGPACK)
def test_random_msgpack_in_a_valid_envelope_gives_decode_error_only(payload: Any) -> None:
    decodes_or_refuses(codec.encode("obj", payload))
    with contextlib.suppress(DecodeError):
        decode_context(codec.encode("ctx", payload))


def _paths(node: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, list):
        for i, child in enumerate(node):
            found += _paths(child, (*prefix, i))
    return found


@given(objects(), st.data())
def test_one_field_replaced_by_random_msgpack_gives_decode_error_only(
    obj: StoredObject, data: st.DataObject
) -> None:
    payload = object_to_payload(obj)
    path = data.draw(st.sampled_from(_paths(payload)))
    node = payload
    for i in path[:-1]:
        node = node[i]
    node[path[-1]] = data.draw(MSGPACK)
    decodes_or_refuses(codec.encode("obj", payload))


@given(objects(), st.data())
def test_truncated_or_corrupted_bytes_give_decode_error_only(obj: StoredObject, data: st.DataObject) -> None:
    encoded = encode_object(obj)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_object(encoded[:cut])
    position = data.draw(st.integers(0, len(encoded) - 1))
    flipped = bytearray(encoded)
    flipped[position] ^= data.draw(st.integers(1, 255))
    decodes_or_refuses(bytes(flipped))
