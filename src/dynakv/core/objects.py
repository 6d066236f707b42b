"""Stored objects: a sibling set of `Content`, its resolution helpers, its encoding and its digest.

A stored object is `SiblingSet[Content]` (see dvv.py): the clock plus one dotted `Content` per sibling.
A delete is a put of a tombstone `Content` with the client's context, so deletes take part in causality
like any write and a concurrent write survives a delete as a sibling.

Objects cross process boundaries (disk, peers), so `decode_object` trusts nothing: any input that this
module could not have written raises `DecodeError`, and nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final

from dynakv.core import codec
from dynakv.core.dvv import (
    INT_MAX,
    Dot,
    SiblingSet,
    dot_from_payload,
    dot_to_payload,
    vv_from_payload,
    vv_to_payload,
)
from dynakv.core.errors import DecodeError, LimitExceeded

OBJECT_TAG: Final = "obj"
# A hard ceiling for decoding only; the configurable Limits.siblings_max is enforced by the coordinator
# well below it. It keeps a hostile object from making us build millions of Content values.
SIBLINGS_DECODE_MAX: Final = 4096
OBJECT_HASH_BYTES: Final = 16

OCTET_STREAM: Final = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Content:
    """One sibling's value and metadata, as Riak stores them. `deleted` marks a tombstone.

    Everything but `value` is keyword-only, and `last_modified_ms` has no default: last-write-wins
    resolution orders by it, so a forgotten timestamp must fail loudly rather than read as 1970.
    """

    value: bytes
    _: KW_ONLY
    content_type: str = OCTET_STREAM
    charset: str | None = None
    content_encoding: str | None = None
    usermeta: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str, str], ...] = ()  # (bucket, key, tag)
    indexes: tuple[tuple[str, str], ...] = ()  # (index name, value)
    last_modified_ms: int
    deleted: bool = False

    def __post_init__(self) -> None:
        assert 0 <= self.last_modified_ms <= INT_MAX, f"last_modified_ms {self.last_modified_ms} out of range"

    @classmethod
    def tombstone(cls, last_modified_ms: int) -> Content:
        """The content a delete writes: no value, `deleted` set."""
        return cls(b"", last_modified_ms=last_modified_ms, deleted=True)


StoredObject = SiblingSet[Content]


def _lww_key(sibling: tuple[Dot, Content]) -> tuple[int, Dot]:
    return sibling[1].last_modified_ms, sibling[0]


def last_write_wins(obj: StoredObject) -> StoredObject:
    """Keep only the sibling with the greatest last_modified_ms; the clock is unchanged.

    Ties go to the greatest dot, so every replica resolving the same siblings keeps the same one. The
    dropped siblings stay covered by the clock, so a sync with a replica still holding them drops them
    there too, exactly as if a put had superseded them.
    """
    if len(obj.siblings) <= 1:
        return obj
    return SiblingSet(obj.clock, (max(obj.siblings, key=_lww_key),))


def visible_siblings(obj: StoredObject) -> tuple[tuple[Dot, Content], ...]:
    """The siblings that are not tombstones, in dot order."""
    return tuple(s for s in obj.siblings if not s[1].deleted)


def is_deleted(obj: StoredObject) -> bool:
    """Whether the object exists only as tombstones. An empty object is absent, not deleted."""
    return bool(obj.siblings) and all(content.deleted for _, content in obj.siblings)


# ---------------------------------------------------------------------------------------------------
# Encoding. A Content is the list [value, content_type, charset, content_encoding, usermeta, links,
# indexes, last_modified_ms, deleted]; an object is [clock, [[dot, content], ...]].


def content_to_payload(content: Content) -> list[Any]:
    return [
        content.value,
        content.content_type,
        content.charset,
        content.content_encoding,
        [list(pair) for pair in content.usermeta],
        [list(link) for link in content.links],
        [list(pair) for pair in content.indexes],
        content.last_modified_ms,
        content.deleted,
    ]


def _want_str_tuples(value: Any, field: str, width: int) -> tuple[tuple[str, ...], ...]:
    rows = codec.want_list(value, field)
    result = []
    for i, row in enumerate(rows):
        items = codec.want_tuple(row, f"{field}[{i}]", width)
        result.append(tuple(codec.want_str(item, f"{field}[{i}][{j}]") for j, item in enumerate(items)))
    return tuple(result)


def content_from_payload(payload: Any, field: str = "content") -> Content:
    (value, content_type, charset, encoding, usermeta, links, indexes, modified, deleted) = codec.want_tuple(
        payload, field, 9
    )
    meta = _want_str_tuples(usermeta, f"{field}.usermeta", 2)
    index_rows = _want_str_tuples(indexes, f"{field}.indexes", 2)
    return Content(
        codec.want_bytes(value, f"{field}.value"),
        content_type=codec.want_str(content_type, f"{field}.content_type"),
        charset=codec.want_optional(charset, f"{field}.charset", codec.want_str),
        content_encoding=codec.want_optional(encoding, f"{field}.content_encoding", codec.want_str),
        usermeta=tuple((k, v) for k, v in meta),
        links=tuple((b, k, t) for b, k, t in _want_str_tuples(links, f"{field}.links", 3)),
        indexes=tuple((k, v) for k, v in index_rows),
        last_modified_ms=codec.want_int(modified, f"{field}.last_modified_ms", 0, INT_MAX),
        deleted=codec.want_bool(deleted, f"{field}.deleted"),
    )


def object_to_payload(obj: StoredObject) -> list[Any]:
    if len(obj.siblings) > SIBLINGS_DECODE_MAX:
        raise LimitExceeded("siblings", len(obj.siblings), SIBLINGS_DECODE_MAX)
    siblings = [[dot_to_payload(dot), content_to_payload(content)] for dot, content in obj.siblings]
    return [vv_to_payload(obj.clock), siblings]


def object_from_payload(payload: Any, field: str = "object") -> StoredObject:
    """Rebuild an object, checking the invariants `SiblingSet` asserts so bad input is a DecodeError."""
    clock_payload, siblings_payload = codec.want_tuple(payload, field, 2)
    clock = vv_from_payload(clock_payload, f"{field}.clock")
    rows = codec.want_list(siblings_payload, f"{field}.siblings")
    if len(rows) > SIBLINGS_DECODE_MAX:
        raise DecodeError(f"{field}.siblings: {len(rows)} siblings, over the limit of {SIBLINGS_DECODE_MAX}")
    siblings: list[tuple[Dot, Content]] = []
    for i, row in enumerate(rows):
        name = f"{field}.siblings[{i}]"
        dot_payload, content_payload = codec.want_tuple(row, name, 2)
        dot = dot_from_payload(dot_payload, f"{name}.dot")
        if siblings and dot <= siblings[-1][0]:
            raise DecodeError(f"{name}: dots not sorted and distinct at {dot}")
        if not clock.covers(dot):
            raise DecodeError(f"{name}: dot {dot} is not covered by the clock")
        siblings.append((dot, content_from_payload(content_payload, f"{name}.content")))
    return SiblingSet(clock, tuple(siblings))


def encode_object(obj: StoredObject) -> bytes:
    """The canonical bytes of an object: equal objects encode to equal bytes."""
    return codec.encode(OBJECT_TAG, object_to_payload(obj))


def decode_object(data: bytes) -> StoredObject:
    """The object in `data`; random, truncated or mis-shaped input raises DecodeError only."""
    return object_from_payload(codec.decode(data, OBJECT_TAG))


def object_hash(obj: StoredObject) -> bytes:
    """A stable 16-byte digest of the canonical encoding, for Merkle trees.

    It covers the clock's timestamps too: replicas that agree causally but not on a timestamp hash
    differently until a sync gives both the later timestamp (merge is a join, so they converge).
    """
    return hashlib.blake2b(encode_object(obj), digest_size=OBJECT_HASH_BYTES).digest()
