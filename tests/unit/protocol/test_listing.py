"""Listings: the replica's scan (tombstones, corrupt copies, paging, batching) and the coordinator's
bookkeeping (batches out of order, failures, coverage, deadline, bounds), on a Node without a network."""

from __future__ import annotations

from collections import Counter

import pytest

from dynakv.core.claim import claim
from dynakv.core.config import Limits, Timing
from dynakv.core.dvv import VersionVector
from dynakv.core.objects import Content, encode_object
from dynakv.core.preflist import primaries
from dynakv.protocol import listing
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.events import ClientRequestReceived, MessageReceived, PeerDisconnected, Tick
from dynakv.protocol.listing import LISTINGS_MAX, NAME_OVERHEAD_BYTES, batches, collect_names
from dynakv.protocol.messages import (
    Failure,
    FailureKind,
    KeyListReply,
    KeyListRequest,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    NodeRequest,
)
from dynakv.protocol.node import Node
from dynakv.protocol.ports import StorageError
from dynakv.protocol.replica import EMPTY
from dynakv.storage.memory import MemoryEngine

NODES = ["n1", "n2", "n3", "n4"]
RING = claim(NODES, 16, 3)
PEERS = ["n2", "n3", "n4"]


def live(value: bytes = b"v") -> bytes:
    return encode_object(EMPTY.update(VersionVector(), "a", Content(value, last_modified_ms=1), 1))


def deleted() -> bytes:
    obj = EMPTY.update(VersionVector(), "a", Content(b"v", last_modified_ms=1), 1)
    return encode_object(obj.update(obj.context(), "a", Content.tombstone(2), 2))


def collect(
    storage: MemoryEngine, bucket: bytes | None, names_max: int = 100
) -> tuple[set[bytes], Counter[str]]:
    counters: Counter[str] = Counter()
    names = collect_names(storage, bucket, names_max=names_max, key_bytes_max=1024, counters=counters)
    return names, counters


# -- the replica's scan ------------------------------------------------------------------------------


def test_keys_are_listed_exactly_per_bucket_even_when_bucket_names_share_a_prefix() -> None:
    storage = MemoryEngine()
    for partition, bucket, key in [(0, b"b", b"k1"), (3, b"b", b"k2"), (3, b"bb", b"k3"), (5, b"a", b"k4")]:
        storage.put(partition, bucket, key, live())
    assert collect(storage, b"b")[0] == {b"k1", b"k2"}
    assert collect(storage, b"bb")[0] == {b"k3"}
    assert collect(storage, b"none")[0] == set()
    assert collect(storage, None)[0] == {b"a", b"b", b"bb"}


def test_tombstones_are_not_listed_but_a_live_sibling_beside_one_is() -> None:
    storage = MemoryEngine()
    storage.put(0, b"b", b"gone", deleted())
    storage.put(1, b"dead", b"k", deleted())
    concurrent = EMPTY.update(VersionVector(), "x", Content(b"v", last_modified_ms=1), 1).sync(
        EMPTY.update(VersionVector(), "y", Content.tombstone(1), 1)
    )
    storage.put(0, b"b", b"half", encode_object(concurrent))
    assert collect(storage, b"b")[0] == {b"half"}
    assert collect(storage, None)[0] == {b"b"}


def test_an_undecodable_copy_is_skipped_and_counted() -> None:
    storage = MemoryEngine()
    storage.put(0, b"b", b"bad", b"\x00garbage")
    storage.put(0, b"b", b"good", live())
    names, counters = collect(storage, b"b")
    assert names == {b"good"}
    assert counters["listing_errors"] == 1


def test_scans_page_through_partitions_larger_than_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "SCAN_PAGE_ENTRIES", 3)
    storage = MemoryEngine()
    keys = {f"k{i:02}".encode() for i in range(10)}
    for key in keys:
        storage.put(2, b"b", key, live())
        storage.put(2, b"c", key, live())
        storage.put(2, f"x{key.decode()}".encode(), b"k", live())
    assert collect(storage, b"b")[0] == keys
    assert collect(storage, None)[0] == {b"b", b"c"} | {f"x{k.decode()}".encode() for k in keys}


def test_the_scan_stops_one_name_past_the_limit() -> None:
    storage = MemoryEngine()
    for i in range(20):
        storage.put(i % 4, b"b", f"k{i}".encode(), live())
    assert len(collect(storage, b"b", names_max=5)[0]) == 6


def test_batches_stay_under_the_byte_bound_and_keep_every_name_in_order() -> None:
    names = [f"key-{i:03}".encode() for i in range(100)]
    bound = 64
    parts = batches(names, bound)
    assert len(parts) > 1
    assert [n for part in parts for n in part] == names
    assert all(sum(len(n) + NAME_OVERHEAD_BYTES for n in part) < bound for part in parts)


def test_batches_never_come_out_empty_and_a_huge_name_travels_alone() -> None:
    assert batches([], 10) == [()]
    assert batches([b"x" * 50, b"a"], 10) == [(b"x" * 50,), (b"a",)]


# -- the replica's answer ----------------------------------------------------------------------------


def make_node(storage: MemoryEngine | None = None, limits: Limits | None = None) -> Node:
    settings = Settings(limits=limits or Limits(), timing=Timing(request_timeout_ms=1000))
    return Node("n1", "n1#0", RING, storage or MemoryEngine(), settings)


def test_a_replica_answers_in_numbered_batches_the_last_one_done() -> None:
    storage = MemoryEngine()
    keys = sorted(f"key-{i:03}".encode() for i in range(50))
    for i, key in enumerate(keys):
        storage.put(i % 16, b"b", key, live())
    out = make_node(storage, Limits(transfer_batch_bytes_max=100)).handle(
        MessageReceived("n2", KeyListRequest(7, b"b")), 0
    )
    replies = [e.msg for e in out if isinstance(e, Send) and e.dst == "n2"]
    assert len(replies) == len(out) > 1
    assert all(isinstance(r, KeyListReply) and r.req_id == 7 and r.ok for r in replies)
    assert [r.seq for r in replies] == list(range(len(replies)))  # type: ignore[union-attr]
    assert [r.done for r in replies] == [False] * (len(replies) - 1) + [True]  # type: ignore[union-attr]
    assert [n for r in replies for n in r.names] == keys  # type: ignore[union-attr]


class BrokenEngine(MemoryEngine):
    def partitions(self) -> list[int]:
        raise StorageError("partitions", detail="disk on fire")


def test_a_replica_whose_storage_fails_answers_not_ok() -> None:
    out = make_node(BrokenEngine()).handle(MessageReceived("n2", KeyListRequest(3, None)), 0)
    assert out == [Send("n2", KeyListReply(3, (), done=True, ok=False))]


# -- the coordinator -----------------------------------------------------------------------------------


def start(node: Node, request: NodeRequest, ref: int = 1, now_ms: int = 0) -> list[Effect]:
    return node.handle(ClientRequestReceived(ref, request), now_ms)


def reply_of(out: list[Effect], ref: int = 1) -> object:
    replies = [e.reply for e in out if isinstance(e, Reply) and e.ref == ref]
    assert len(replies) <= 1
    return replies[0] if replies else None


def peer(node: Node, src: str, msg: KeyListReply, now_ms: int = 0) -> list[Effect]:
    return node.handle(MessageReceived(src, msg), now_ms)


def test_the_coordinator_asks_every_other_member_and_waits_for_every_batch() -> None:
    storage = MemoryEngine()
    storage.put(0, b"b", b"local", live())
    node = make_node(storage)
    out = start(node, ListKeysRequest(b"b"))
    asked = sorted(e.dst for e in out if isinstance(e, Send) and isinstance(e.msg, KeyListRequest))
    assert asked == PEERS and reply_of(out) is None
    req_id = next(e.msg.req_id for e in out if isinstance(e, Send) and isinstance(e.msg, KeyListRequest))
    # n2's done batch overtakes its first one: n2 is not whole until seq 0 arrives.
    assert reply_of(peer(node, "n2", KeyListReply(req_id, (b"z",), True, True, seq=1))) is None
    assert reply_of(peer(node, "n3", KeyListReply(req_id, (b"local",), True, True))) is None
    assert reply_of(peer(node, "n4", KeyListReply(req_id, (), True, True))) is None
    final = reply_of(peer(node, "n2", KeyListReply(req_id, (b"a",), False, True, seq=0)))
    assert final == ListReply((b"a", b"local", b"z"))


def test_with_two_of_four_nodes_gone_n_val_3_is_still_covered() -> None:
    node = make_node()
    node.handle(PeerDisconnected("n4"), 0)
    out = start(node, ListBucketsRequest())
    assert sorted(e.dst for e in out if isinstance(e, Send)) == ["n2", "n3"]
    peer(node, "n3", KeyListReply(1, (), True, False))
    assert reply_of(peer(node, "n2", KeyListReply(1, (b"b",), True, True))) == ListReply((b"b",))


def test_with_three_of_four_nodes_gone_some_partitions_have_no_replica_answer() -> None:
    node = make_node()
    out = start(node, ListKeysRequest(b"b"))
    assert reply_of(out) is None
    node.handle(PeerDisconnected("n2"), 0)
    peer(node, "n3", KeyListReply(1, (b"k",), True, False))
    final = reply_of(node.handle(PeerDisconnected("n4"), 0))
    uncovered = [p for p in range(16) if "n1" not in primaries(RING, p, 3)]
    assert isinstance(final, Failure) and final.kind is FailureKind.UNAVAILABLE
    assert f"{len(uncovered)} partitions had no replica answer" in final.message
    assert "n2, n3, n4" in final.message


def test_at_the_deadline_a_covered_listing_succeeds_and_an_uncovered_one_times_out() -> None:
    node = make_node()
    start(node, ListKeysRequest(b"b"), ref=1)
    start(node, ListKeysRequest(b"b", timeout_ms=2000), ref=2)
    for req_id in (1, 2):
        peer(node, "n2", KeyListReply(req_id, (b"k",), True, True))
    assert reply_of(node.handle(Tick(), 999)) is None
    assert reply_of(node.handle(Tick(), 1000)) == ListReply((b"k",))
    node = make_node()
    start(node, ListKeysRequest(b"b"))
    final = reply_of(node.handle(Tick(), 1000))
    assert isinstance(final, Failure) and final.kind is FailureKind.TIMEOUT
    assert "no answer in time: n2, n3, n4" in final.message


def test_a_listing_past_the_name_limit_is_refused_as_too_large() -> None:
    node = make_node(limits=Limits(listing_names_max=2))
    start(node, ListKeysRequest(b"b"))
    assert reply_of(peer(node, "n2", KeyListReply(1, (b"a", b"b"), False, True))) is None
    final = reply_of(peer(node, "n3", KeyListReply(1, (b"c",), False, True)))
    assert isinstance(final, Failure) and final.kind is FailureKind.OVERLOADED
    assert "too large" in final.message
    assert peer(node, "n4", KeyListReply(1, (), True, True)) == []  # late answers change nothing


def test_concurrent_listings_are_bounded() -> None:
    node = make_node()
    for ref in range(LISTINGS_MAX):
        assert reply_of(start(node, ListBucketsRequest(), ref=ref), ref) is None
    final = reply_of(start(node, ListBucketsRequest(), ref=99), 99)
    assert isinstance(final, Failure) and final.kind is FailureKind.OVERLOADED


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ListKeysRequest(b""), "bucket"),
        (ListKeysRequest(b"x" * 257), "bucket"),
        (ListKeysRequest(b"b", timeout_ms=0), "timeout_ms"),
        (ListBucketsRequest(timeout_ms=-1), "timeout_ms"),
    ],
)
def test_bad_listing_requests_are_refused_naming_the_field(request_: NodeRequest, field: str) -> None:
    final = reply_of(start(make_node(), request_))
    assert isinstance(final, Failure) and final.kind is FailureKind.BAD_REQUEST and final.field == field


def test_answers_from_nodes_never_asked_are_ignored() -> None:
    node = make_node()
    node.handle(PeerDisconnected("n4"), 0)
    start(node, ListKeysRequest(b"b"))
    peer(node, "n4", KeyListReply(1, (b"intruder",), True, True))
    peer(node, "n2", KeyListReply(1, (), True, True))
    assert reply_of(peer(node, "n3", KeyListReply(1, (), True, True))) == ListReply(())
