"""Framing: frames survive any split of the stream; bad lengths close the connection early."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynakv.core.errors import RemoteProtocolError
from dynakv.wire.framing import HEADER, FrameDecoder, encode_frame

MAX = 1 << 16


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    st.lists(st.integers(1, 97), min_size=1, max_size=50),
)
def test_any_split_of_the_stream_gives_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p, MAX) for p in payloads)
    decoder = FrameDecoder(MAX)
    got: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += decoder.feed(stream[pos : pos + step])
        pos, i = pos + step, i + 1
    assert got == payloads
    assert decoder.buffered_bytes == 0


def test_many_frames_in_one_chunk_and_compaction() -> None:
    payloads = [bytes([i % 251]) * 1000 for i in range(300)]
    stream = b"".join(encode_frame(p, MAX) for p in payloads)
    decoder = FrameDecoder(MAX)
    # Feed all but the last byte so the buffer must keep (and compact) a partial frame.
    assert decoder.feed(stream[:-1]) == payloads[:-1]
    assert decoder.buffered_bytes == 1003
    assert decoder.feed(stream[-1:]) == payloads[-1:]


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(MAX)
    with pytest.raises(RemoteProtocolError, match="frame length 65537"):
        decoder.feed(HEADER.pack(MAX + 1))


def test_zero_length_frame_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="frame length 0"):
        FrameDecoder(MAX).feed(HEADER.pack(0))


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ValueError, match="outside"):
        encode_frame(b"x" * (MAX + 1), MAX)
    with pytest.raises(ValueError, match="outside"):
        encode_frame(b"", MAX)
