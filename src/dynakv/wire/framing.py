"""Length-prefixed framing: each frame is a 4-byte big-endian length, then that many bytes.

The decoder is incremental and sans-IO: the runtime feeds it whatever the socket delivered, in chunks of
any size, and gets back the complete frames. A length above the limit (or zero: no message encodes to
nothing) is a `RemoteProtocolError`, raised before any of the announced bytes are buffered, so a peer
cannot make a node allocate more than `frame_bytes_max` plus one read's worth.
"""

from __future__ import annotations

import struct
from typing import Final

from dynakv.core.errors import RemoteProtocolError

HEADER: Final = struct.Struct(">I")
HEADER_BYTES: Final = HEADER.size
# Compact the buffer only when its consumed head is large: avoids a memmove per frame on the hot path.
_COMPACT_BYTES: Final = 64 * 1024


def encode_frame(payload: bytes, frame_bytes_max: int) -> bytes:
    """The frame for `payload`; refusing our own oversized output keeps peers from having to."""
    size = len(payload)
    if size == 0 or size > frame_bytes_max:
        raise ValueError(f"frame of {size} bytes is outside 1..{frame_bytes_max}")
    return HEADER.pack(size) + payload


class FrameDecoder:
    """Splits a byte stream into frames; one decoder per connection."""

    __slots__ = ("_buf", "_frame_bytes_max", "_pos")

    def __init__(self, frame_bytes_max: int) -> None:
        assert frame_bytes_max > 0
        self._frame_bytes_max = frame_bytes_max
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next chunk of the stream and return every frame it completed, in order."""
        self._buf += data
        frames: list[bytes] = []
        buf, pos, end = self._buf, self._pos, len(self._buf)
        while end - pos >= HEADER_BYTES:
            (size,) = HEADER.unpack_from(buf, pos)
            if size == 0 or size > self._frame_bytes_max:
                raise RemoteProtocolError(f"frame length {size} is outside 1..{self._frame_bytes_max}")
            if end - pos - HEADER_BYTES < size:
                break
            start = pos + HEADER_BYTES
            frames.append(bytes(buf[start : start + size]))
            pos = start + size
        if pos == end:
            buf.clear()
            pos = 0
        elif pos >= _COMPACT_BYTES:
            del buf[:pos]
            pos = 0
        self._pos = pos
        return frames
