"""The node's bucket props service: persistence, the push/digest exchange, bounds and storage errors."""

from __future__ import annotations

from pathlib import Path

from dynakv.core.claim import claim
from dynakv.core.config import Limits, Timing
from dynakv.core.ring import Ring
from dynakv.protocol.bucket_props import encode_entry, meta_name
from dynakv.protocol.data_path import Settings
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.events import ClientRequestReceived, MessageReceived, Tick
from dynakv.protocol.messages import (
    BucketPropsDigest,
    BucketPropsEntry,
    BucketPropsPush,
    BucketPropsReply,
    Failure,
    FailureKind,
    GetBucketProps,
    NodeRequest,
    ResetBucketProps,
    SetBucketProps,
)
from dynakv.protocol.node import Node
from dynakv.protocol.ports import StorageEngine
from dynakv.storage.faulty import FaultyEngine
from dynakv.storage.memory import MemoryEngine
from dynakv.storage.sqlite import SqliteEngine

RING: Ring = claim(["n1", "n2", "n3"], 64, 3)


def node(storage: StorageEngine, name: str = "n1", settings: Settings | None = None) -> Node:
    return Node(name, f"{name}#0", RING, storage, settings)


def ask(n: Node, request: NodeRequest, now_ms: int = 1_000) -> tuple[object, list[Effect]]:
    effects = n.handle(ClientRequestReceived(1, request), now_ms)
    replies = [e.reply for e in effects if isinstance(e, Reply)]
    assert len(replies) == 1
    return replies[0], [e for e in effects if isinstance(e, Send)]


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def test_props_survive_closing_and_reopening_sqlite(tmp_path: Path) -> None:
    engine = SqliteEngine(str(tmp_path))
    reply, pushes = ask(node(engine), SetBucketProps(b"b", {"w": 1, "allow_mult": False}))
    assert isinstance(reply, BucketPropsReply) and reply.props["w"] == 1
    assert sorted(s.dst for s in pushes) == ["n2", "n3"]
    assert all(isinstance(s.msg, BucketPropsPush) and not s.msg.reply_wanted for s in pushes)
    engine.close()
    reopened = node(SqliteEngine(str(tmp_path)))
    assert reopened.data.props_for(b"b").w == 1 and reopened.data.props_for(b"b").allow_mult is False
    reply, _ = ask(reopened, GetBucketProps(b"b"))
    assert isinstance(reply, BucketPropsReply) and reply.props["allow_mult"] is False


def test_a_change_is_durable_before_the_reply() -> None:
    engine = MemoryEngine()
    ask(node(engine), SetBucketProps(b"b", {"n_val": 2}))
    engine.crash()
    assert node(engine).data.props_for(b"b").n_val == 2


def test_a_corrupt_stored_entry_is_skipped_and_counted() -> None:
    engine = MemoryEngine()
    engine.meta_put(meta_name(b"bad"), b"\x00garbage")
    good = BucketPropsEntry(b"good", (("w", 1),), 5, "n2")
    engine.meta_put(meta_name(b"good"), encode_entry(good))
    engine.meta_put(meta_name(b"elsewhere"), encode_entry(good))  # stored under another bucket's name
    n = node(engine)
    assert n.counters["bucket_props.corrupt"] == 2
    assert n.data.props_for(b"good").w == 1


def test_a_storage_error_refuses_the_change() -> None:
    engine = FaultyEngine(MemoryEngine())
    n = node(engine)
    engine.fail_next("meta_put")
    reply, pushes = ask(n, SetBucketProps(b"b", {"w": 1}))
    assert isinstance(reply, Failure) and reply.kind is FailureKind.STORAGE and not pushes
    assert n.data.props_for(b"b").w == "quorum"


def test_an_unchanged_set_makes_no_entry_and_reset_makes_a_tombstone() -> None:
    n = node(MemoryEngine())
    reply, pushes = ask(n, SetBucketProps(b"b", {"old_vclock": 86400}))
    assert isinstance(reply, BucketPropsReply) and not pushes and len(n.props.table) == 0
    reply, pushes = ask(n, ResetBucketProps(b"b"))
    assert isinstance(reply, BucketPropsReply) and len(pushes) == 2
    held = n.props.table.entry(b"b")
    assert held is not None and held.props is None


def test_the_table_bound_refuses_new_buckets() -> None:
    n = node(MemoryEngine(), settings=Settings(limits=Limits(buckets_with_props_max=1)))
    ask(n, SetBucketProps(b"a", {"w": 1}))
    reply, _ = ask(n, SetBucketProps(b"b", {"w": 1}))
    assert isinstance(reply, Failure) and reply.kind is FailureKind.OVERLOADED
    reply, _ = ask(n, SetBucketProps(b"a", {"w": 2}))
    assert isinstance(reply, BucketPropsReply) and reply.props["w"] == 2
    reply, _ = ask(n, SetBucketProps(b"", {"w": 1}))
    assert isinstance(reply, Failure) and reply.field == "bucket"


def test_a_different_digest_gets_a_full_push_and_the_push_gets_what_it_lacked() -> None:
    n1, n2 = node(MemoryEngine(), "n1"), node(MemoryEngine(), "n2")
    ask(n1, SetBucketProps(b"a", {"w": 1}), now_ms=10)
    ask(n2, SetBucketProps(b"b", {"r": 1}), now_ms=20)
    assert n1.handle(MessageReceived("n2", BucketPropsDigest(n1.props.table.digest())), 30) == []
    out = sends(n1.handle(MessageReceived("n2", BucketPropsDigest(n2.props.table.digest())), 30))
    assert [(s.dst, type(s.msg).__name__) for s in out] == [("n2", "BucketPropsPush")]
    push = out[0].msg
    assert isinstance(push, BucketPropsPush) and push.reply_wanted
    back = sends(n2.handle(MessageReceived("n1", push), 40))
    assert len(back) == 1 and isinstance(back[0].msg, BucketPropsPush) and not back[0].msg.reply_wanted
    assert [e.bucket for e in back[0].msg.entries] == [b"b"]
    assert n1.handle(MessageReceived("n2", back[0].msg), 50) == []
    assert n1.props.table.digest() == n2.props.table.digest()
    assert n2.counters["bucket_props.merged"] == 1 and n1.counters["bucket_props.merged"] == 1


def test_merged_entries_are_persisted() -> None:
    engine = MemoryEngine()
    n = node(engine, "n2")
    entry = BucketPropsEntry(b"b", (("n_val", 2),), 10, "n1")
    n.handle(MessageReceived("n1", BucketPropsPush((entry,), reply_wanted=False)), 20)
    engine.crash()
    assert node(engine, "n2").data.props_for(b"b").n_val == 2


def test_a_push_is_split_by_size() -> None:
    settings = Settings(limits=Limits(transfer_batch_bytes_max=600))
    n = node(MemoryEngine(), settings=settings)
    for i in range(10):
        ask(n, SetBucketProps(f"bucket{i}".encode(), {"w": 1}))
    out = sends(n.handle(MessageReceived("n2", BucketPropsDigest(b"")), 2_000))
    assert len(out) > 1
    buckets = [e.bucket for s in out if isinstance(s.msg, BucketPropsPush) for e in s.msg.entries]
    assert buckets == sorted(f"bucket{i}".encode() for i in range(10))


def test_digests_go_round_robin_every_gossip_interval_once_there_is_something_to_sync() -> None:
    n = node(MemoryEngine(), settings=Settings(timing=Timing(gossip_interval_ms=1_000)))
    # An empty table stays quiet (the node's other periodic messages, probes, are not gossip).
    gossip = BucketPropsDigest | BucketPropsPush
    assert [s for s in sends(n.handle(Tick(), 0)) if isinstance(s.msg, gossip)] == []
    ask(n, SetBucketProps(b"b", {"w": 1}), now_ms=0)
    targets = []
    for now in range(0, 4_000, 100):
        targets += [s.dst for s in sends(n.handle(Tick(), now)) if isinstance(s.msg, BucketPropsDigest)]
    assert targets == ["n2", "n3", "n2", "n3"]
