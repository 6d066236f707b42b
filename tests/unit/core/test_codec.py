"""The envelope of every encoded core value: version, tag, and one error type for bad input."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core import codec
from dynakv.core.errors import DecodeError

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@given(plain)
def test_round_trip(payload: object) -> None:
    assert codec.decode(codec.encode("thing", payload), "thing") == payload


def test_wrong_tag_and_version_are_refused() -> None:
    data = codec.encode("ring", [1])
    with pytest.raises(DecodeError, match="expected a 'obj' value"):
        codec.decode(data, "obj")
    future = msgpack.packb([codec.FORMAT_VERSION + 1, "ring", [1]])
    with pytest.raises(DecodeError, match="format version"):
        codec.decode(future, "ring")


@given(st.binary(max_size=64))
def test_random_bytes_give_decode_error_only(data: bytes) -> None:
    # Either it happens to be a valid envelope, or it is refused with DecodeError; nothing else.
    with contextlib.suppress(DecodeError):
        codec.decode(data, "thing")


@given(plain)
def test_truncations_give_decode_error_only(payload: object) -> None:
    data = codec.encode("thing", payload)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut], "thing")


def test_hostile_length_prefix_is_refused_without_allocating() -> None:
    # A bin32 header claiming 4 GiB followed by nothing.
    with pytest.raises(DecodeError):
        codec.unpack(b"\xc6\xff\xff\xff\xff")


def test_field_checks_name_the_field() -> None:
    with pytest.raises(DecodeError, match=r"^n_val: expected an integer"):
        codec.want_int("3", "n_val")
    with pytest.raises(DecodeError, match=r"^n_val: 0 is below the minimum 1"):
        codec.want_int(0, "n_val", lo=1)
    with pytest.raises(DecodeError, match=r"^flag: expected a boolean"):
        codec.want_bool(1, "flag")
    with pytest.raises(DecodeError, match=r"^xs\[1\]: expected bytes"):
        codec.want_list_of([b"a", "b"], "xs", codec.want_bytes)
