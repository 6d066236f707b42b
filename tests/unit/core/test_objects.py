"""Worked examples for stored objects: tombstones, last-write-wins, encoding, decoding errors, digests."""

from __future__ import annotations

from typing import Any

import pytest

from dynakv.core import codec
from dynakv.core.dvv import EMPTY_VV, Dot, SiblingSet, VersionVector, reconcile
from dynakv.core.errors import DecodeError
from dynakv.core.objects import (
    SIBLINGS_DECODE_MAX,
    Content,
    StoredObject,
    content_to_payload,
    decode_object,
    encode_object,
    is_deleted,
    last_write_wins,
    object_hash,
    object_to_payload,
    visible_siblings,
)


def _content(value: bytes, modified_ms: int) -> Content:
    return Content(value, last_modified_ms=modified_ms)


def _rich() -> StoredObject:
    full = Content(
        b"\x00\xffbody",
        content_type="text/plain",
        charset="UTF-8",
        content_encoding="gzip",
        usermeta=(("colour", "blue"), ("a", "")),
        links=(("people", "bob", "friend"),),
        indexes=(("age_int", "42"), ("name_bin", "ann")),
        last_modified_ms=1_700_000_000_000,
    )
    obj: StoredObject = SiblingSet().update(EMPTY_VV, "node-a", full, now_ms=5)
    return obj.update(EMPTY_VV, "node-b", Content.tombstone(9), now_ms=9)


def test_content_needs_a_last_modified_time() -> None:
    with pytest.raises(TypeError):
        Content(b"x")  # type: ignore[call-arg]


def test_delete_writes_a_tombstone_with_the_context() -> None:
    obj: StoredObject = SiblingSet().update(EMPTY_VV, "a", _content(b"v", 1), now_ms=1)
    assert not is_deleted(obj)
    deleted = obj.update(obj.context(), "a", Content.tombstone(2), now_ms=2)
    assert is_deleted(deleted)
    assert visible_siblings(deleted) == ()
    assert deleted.siblings[0][1].deleted


def test_a_write_concurrent_with_a_delete_keeps_the_key_alive() -> None:
    obj: StoredObject = SiblingSet().update(EMPTY_VV, "a", _content(b"v", 1), now_ms=1)
    deleted = obj.update(obj.context(), "a", Content.tombstone(2), now_ms=2)
    rewritten = obj.update(obj.context(), "b", _content(b"w", 3), now_ms=3)
    merged = deleted.sync(rewritten)
    assert not is_deleted(merged)
    assert [c.value for _, c in visible_siblings(merged)] == [b"w"]
    assert len(merged.siblings) == 2


def test_an_empty_object_is_absent_not_deleted() -> None:
    assert not is_deleted(SiblingSet())


def test_lww_keeps_the_newest_sibling_and_the_clock() -> None:
    obj: StoredObject = SiblingSet()
    for actor, modified in (("a", 30), ("b", 50), ("c", 40)):
        obj = obj.update(EMPTY_VV, actor, _content(actor.encode(), modified), now_ms=modified)
    resolved = last_write_wins(obj)
    assert [c.value for c in resolved.values()] == [b"b"]
    assert resolved.clock == obj.clock


def test_lww_breaks_ties_the_same_way_on_every_replica() -> None:
    base: StoredObject = SiblingSet()
    # Three writes with the same timestamp, reaching two replicas in different orders.
    writes = [base.update(EMPTY_VV, actor, _content(actor.encode(), 7), now_ms=7) for actor in "xyz"]
    replica_1 = reconcile(writes)
    replica_2 = reconcile(reversed(writes))
    assert replica_1 == replica_2
    picked_1 = last_write_wins(replica_1)
    picked_2 = last_write_wins(replica_2)
    assert picked_1 == picked_2
    assert len(picked_1.siblings) == 1
    # After resolving on one replica only, a sync still agrees: the dropped siblings are covered.
    assert picked_1.sync(writes[0]).sync(writes[1]).sync(writes[2]) == picked_1


def test_lww_leaves_a_single_sibling_alone() -> None:
    obj: StoredObject = SiblingSet().update(EMPTY_VV, "a", _content(b"v", 1), now_ms=1)
    assert last_write_wins(obj) is obj
    assert last_write_wins(SiblingSet()) == SiblingSet()


def test_encoding_round_trips_every_field() -> None:
    obj = _rich()
    assert decode_object(encode_object(obj)) == obj
    assert decode_object(bytearray(encode_object(obj))) == obj


def test_equal_objects_hash_equal_whatever_the_merge_order() -> None:
    base: StoredObject = SiblingSet()
    writes = [base.update(EMPTY_VV, actor, _content(actor.encode(), 1), now_ms=1) for actor in "pqr"]
    one = writes[0].sync(writes[1]).sync(writes[2])
    two = writes[2].sync(writes[0].sync(writes[1]))
    assert encode_object(one) == encode_object(two)
    assert object_hash(one) == object_hash(two)
    assert len(object_hash(one)) == 16
    assert object_hash(one) != object_hash(writes[0])


def _envelope(payload: Any) -> bytes:
    return codec.encode("obj", payload)


def _good_payload() -> list[Any]:
    return object_to_payload(_rich())


def _with(path: tuple[int, ...], value: Any) -> bytes:
    payload = _good_payload()
    node = payload
    for i in path[:-1]:
        node = node[i]
    node[path[-1]] = value
    return _envelope(payload)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x93\x01\xa3obj",  # truncated envelope
        encode_object(SiblingSet())[:-1],
        codec.encode("ctx", [[], []]),
        _envelope([[], [], []]),
        _envelope({"clock": []}),
        _with((1, 0, 0), ["node-a", 0]),  # dot counter out of range
        _with((1, 0, 0), ["node-z", 1]),  # dot not covered by the clock
        _with((1, 1, 0), ["node-a", 1]),  # second dot sorts before the first
        _with((1, 0, 1, 0), "not bytes"),
        _with((1, 0, 1, 2), 5),  # charset
        _with((1, 0, 1, 4), [["k"]]),  # usermeta pair of one
        _with((1, 0, 1, 5), [["b", "k", 7]]),  # link tag not a string
        _with((1, 0, 1, 7), -1),  # last_modified_ms
        _with((1, 0, 1, 8), 1),  # deleted must be a bool
        _with((1, 0, 1), content_to_payload(Content(b"", last_modified_ms=0))[:8]),
        _with((0, 0), ["node-a", 1]),  # clock entry of two
    ],
)
def test_malformed_objects_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_object(data)


def test_duplicate_dots_are_refused() -> None:
    payload = _good_payload()
    payload[1] = [payload[1][0], payload[1][0]]
    with pytest.raises(DecodeError):
        decode_object(_envelope(payload))


def test_sibling_count_is_bounded_on_decode() -> None:
    content = content_to_payload(Content(b"", last_modified_ms=0))
    count = SIBLINGS_DECODE_MAX + 1
    clock = [["a", count, 0]]
    siblings = [[["a", i + 1], content] for i in range(count)]
    with pytest.raises(DecodeError):
        decode_object(_envelope([clock, siblings]))
    assert len(decode_object(_envelope([clock, siblings[:-1]])).siblings) == SIBLINGS_DECODE_MAX


def test_decoded_objects_keep_the_clock_timestamps() -> None:
    clock = VersionVector((("a", 2), ("b", 1)), (10, 20))
    obj: StoredObject = SiblingSet(clock, ((Dot("a", 2), _content(b"v", 3)),))
    assert decode_object(encode_object(obj)).clock.ts_ms == (10, 20)
