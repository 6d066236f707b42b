"""Key positions: MD5 of a length-prefixed (bucket, key) encoding, the same on every node."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.hashing import RING_BITS, RING_SIZE, as_bytes, key_position


def test_position_is_md5_of_the_documented_encoding() -> None:
    # The encoding is part of the cluster's contract (clients route with it): pin it byte for byte.
    expected = int.from_bytes(hashlib.md5(b"\x00\x00\x00\x07artists" + b"Beatles").digest(), "big")
    assert key_position(b"artists", b"Beatles") == expected
    assert RING_BITS == 128
    assert RING_SIZE == 2**128


def test_the_split_between_bucket_and_key_matters() -> None:
    # Without the length prefix both pairs would hash the bytes "abc".
    assert key_position(b"ab", b"c") != key_position(b"a", b"bc")
    assert key_position(b"", b"abc") != key_position(b"abc", b"")


def test_text_is_hashed_as_utf8() -> None:
    assert key_position("bücher", "schlüssel") == key_position("bücher".encode(), "schlüssel".encode())
    assert as_bytes("é") == b"\xc3\xa9"


def test_other_types_are_refused() -> None:
    with pytest.raises(TypeError):
        key_position(b"bucket", 42)  # type: ignore[arg-type]


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_positions_lie_on_the_ring_and_are_stable(bucket: bytes, key: bytes) -> None:
    position = key_position(bucket, key)
    assert 0 <= position < RING_SIZE
    assert key_position(bucket, key) == position


@given(st.binary(max_size=12), st.binary(max_size=12), st.binary(max_size=12), st.binary(max_size=12))
def test_distinct_pairs_get_distinct_positions(b1: bytes, k1: bytes, b2: bytes, k2: bytes) -> None:
    # A collision of MD5 on such short inputs would be news; equal positions mean equal pairs.
    if (b1, k1) != (b2, k2):
        assert key_position(b1, k1) != key_position(b2, k2)
