"""Where a key lives on the ring: a 128-bit position from MD5 (the Dynamo paper's hash, section 4.2).

The position hashes an unambiguous encoding of the (bucket, key) pair: the bucket's length as 4 bytes
big-endian, the bucket, then the key. Without the length prefix ("ab", "c") and ("a", "bc") would hash
the same bytes and always land together. hashlib gives every process and every machine the same
answer; the builtin `hash()` is salted per process, so nodes would disagree about placement.
"""

from __future__ import annotations

import hashlib
from typing import Final

RING_BITS: Final = 128
RING_SIZE: Final = 1 << RING_BITS


def as_bytes(value: bytes | str) -> bytes:
    """Bucket and key names as bytes; text is encoded as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"expected bytes or str, got {type(value).__name__}")


def key_position(bucket: bytes | str, key: bytes | str) -> int:
    """The ring position of (bucket, key): an integer in [0, 2**128)."""
    bucket_bytes = as_bytes(bucket)
    # Placement, not security: FIPS-mode builds refuse md5 unless told so.
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(len(bucket_bytes).to_bytes(4, "big"))
    digest.update(bucket_bytes)
    digest.update(as_bytes(key))
    return int.from_bytes(digest.digest(), "big")
