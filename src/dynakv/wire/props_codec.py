"""Bucket props peer messages <-> msgpack field lists (tags 8 and 9; wire/codec.py frames them).

A push is `[8, [[bucket, props, stamp_ms, node], ...], reply_wanted]` with props `[[name, value], ...]`
sorted by name, or nil for a reset; a digest is `[9, digest]`. Entries decode through
`bucket_props.entry_from_payload`, the same checks as entries read back from disk. Decoding trusts
nothing and raises DecodeError only; `codec.decode_peer` turns that into RemoteProtocolError.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core.codec import want_bool, want_bytes, want_list_of
from dynakv.core.errors import DecodeError
from dynakv.protocol.bucket_props import entry_from_payload, entry_to_payload
from dynakv.protocol.messages import BucketPropsDigest, BucketPropsPush

BUCKET_PROPS_PUSH: Final = 8
BUCKET_PROPS_DIGEST: Final = 9
PROPS_TAGS: Final = frozenset({BUCKET_PROPS_PUSH, BUCKET_PROPS_DIGEST})
# A sha256 digest is 32 bytes; a little room for a later hash, no room for a hostile blob.
_DIGEST_BYTES_MAX: Final = 64

PropsMessage = BucketPropsPush | BucketPropsDigest


def props_fields(msg: PropsMessage) -> list[Any]:
    """The frame of one bucket props message: `[tag, field, ...]`."""
    if isinstance(msg, BucketPropsPush):
        return [BUCKET_PROPS_PUSH, [entry_to_payload(entry) for entry in msg.entries], msg.reply_wanted]
    return [BUCKET_PROPS_DIGEST, msg.digest]


def decode_props(tag: int, f: list[Any]) -> PropsMessage:
    if tag == BUCKET_PROPS_PUSH and len(f) == 2:
        entries = tuple(want_list_of(f[0], "entries", entry_from_payload))
        return BucketPropsPush(entries, want_bool(f[1], "reply_wanted"))
    if tag == BUCKET_PROPS_DIGEST and len(f) == 1:
        digest = want_bytes(f[0], "digest")
        if len(digest) > _DIGEST_BYTES_MAX:
            raise DecodeError(f"digest: {len(digest)} bytes, over {_DIGEST_BYTES_MAX}")
        return BucketPropsDigest(digest)
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a bucket props message")
