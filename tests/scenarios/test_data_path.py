"""Stories of the data path (paper sections 4.4 and 4.5), run in the simulator on the real Node code."""

from __future__ import annotations

import pytest

from dynakv.core.config import BucketProps, Limits, Timing
from dynakv.core.objects import Content
from dynakv.core.preflist import primaries
from dynakv.protocol.data_path import Settings
from dynakv.protocol.messages import (
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetReply,
    GetRequest,
    PutReply,
    PutRequest,
)
from dynakv.protocol.replica import read_local
from dynakv.sim.simulator import Simulation

NODES = ["n1", "n2", "n3"]


def content(value: bytes, at_ms: int = 1) -> Content:
    return Content(value, content_type="text/plain", last_modified_ms=at_ms)


def put(sim: Simulation, node: str, key: bytes, value: bytes, context: bytes = b"", **kw: object) -> PutReply:
    reply = sim.call(node, PutRequest(b"b", key, content(value, sim.now_ms), context, **kw))  # type: ignore[arg-type]
    assert isinstance(reply, PutReply), reply
    return reply


def get(sim: Simulation, node: str, key: bytes, **kw: object) -> GetReply:
    reply = sim.call(node, GetRequest(b"b", key, **kw))  # type: ignore[arg-type]
    assert isinstance(reply, GetReply), reply
    return reply


def values(reply: GetReply) -> list[bytes]:
    return sorted(c.value for c in reply.siblings)


def test_a_put_is_read_back_through_every_node() -> None:
    sim = Simulation(NODES, seed=1)
    put(sim, "n1", b"k", b"v1")
    for node in NODES:
        reply = get(sim, node, b"k")
        assert reply.found and values(reply) == [b"v1"]
        assert reply.siblings[0].content_type == "text/plain"


def test_a_missing_key_is_not_found() -> None:
    sim = Simulation(NODES, seed=2)
    reply = get(sim, "n2", b"nothing")
    assert not reply.found and reply.siblings == ()


def test_five_puts_with_one_stale_context_leave_five_siblings_and_the_merged_context_one() -> None:
    sim = Simulation(NODES, seed=3)
    put(sim, "n1", b"k", b"v0")
    stale = get(sim, "n1", b"k").context
    for i in range(5):
        put(sim, NODES[i % 3], b"k", f"v{i + 1}".encode(), stale)
    reply = get(sim, "n2", b"k", r=3)
    assert values(reply) == [b"v1", b"v2", b"v3", b"v4", b"v5"]
    put(sim, "n3", b"k", b"resolved", reply.context)
    assert values(get(sim, "n1", b"k", r=3)) == [b"resolved"]


def test_two_clients_with_the_same_context_make_two_siblings() -> None:
    sim = Simulation(NODES, seed=4)
    ctx = put(sim, "n1", b"cart", b"a").context
    put(sim, "n2", b"cart", b"a+b", ctx)
    put(sim, "n3", b"cart", b"a+c", ctx)
    assert values(get(sim, "n1", b"cart", r=3)) == [b"a+b", b"a+c"]


def test_a_delete_hides_the_value_and_a_later_write_supersedes_the_tombstone() -> None:
    sim = Simulation(NODES, seed=5)
    ctx = put(sim, "n1", b"k", b"v").context
    assert isinstance(sim.call("n2", DeleteRequest(b"b", b"k", ctx)), DeleteReply)
    gone = get(sim, "n3", b"k", r=3)
    assert not gone.found and gone.siblings == ()
    put(sim, "n1", b"k", b"again", gone.context)
    assert values(get(sim, "n2", b"k", r=3)) == [b"again"]


def test_a_delete_without_context_removes_what_the_coordinator_holds() -> None:
    sim = Simulation(NODES, seed=13)
    put(sim, "n1", b"k", b"v")
    partition = sim.ring.partition_for_key(b"b", b"k")
    coordinator = primaries(sim.ring, partition, 3)[0]
    assert isinstance(sim.call(coordinator, DeleteRequest(b"b", b"k")), DeleteReply)
    assert not get(sim, "n2", b"k", r=3).found


def test_with_one_node_down_gets_and_puts_succeed() -> None:
    sim = Simulation(NODES, seed=6)
    put(sim, "n1", b"k", b"v1")
    sim.crash("n3")
    ctx = get(sim, "n1", b"k").context
    put(sim, "n2", b"k", b"v2", ctx)
    assert values(get(sim, "n1", b"k")) == [b"v2"]


def test_with_two_of_three_down_a_w2_put_fails_naming_needed_and_acknowledged() -> None:
    sim = Simulation(NODES, seed=7)
    sim.crash("n2")
    sim.crash("n3")
    reply = sim.call("n1", PutRequest(b"b", b"k", content(b"v"), w=2))
    assert isinstance(reply, Failure) and reply.kind is FailureKind.UNAVAILABLE
    assert (reply.field, reply.needed, reply.acknowledged) == ("w", 2, 1)


def test_a_stale_replica_is_repaired_by_a_get() -> None:
    sim = Simulation(NODES, seed=8)
    sim.crash("n3")
    put(sim, "n1", b"k", b"v")
    sim.restart("n3")
    partition = sim.ring.partition_for_key(b"b", b"k")
    assert read_local(sim.storage["n3"], partition, b"b", b"k").is_empty
    assert values(get(sim, "n1", b"k", r=2)) == [b"v"]
    sim.run_for(sim.settings.timing.read_repair_wait_ms + 100)
    repaired = read_local(sim.storage["n3"], partition, b"b", b"k")
    assert [c.value for _, c in repaired.siblings] == [b"v"]


def test_a_restarted_node_keeps_what_it_wrote_durably() -> None:
    sim = Simulation(NODES, seed=9)
    put(sim, "n1", b"k", b"v", w=3, dw=3)
    sim.crash("n2")
    sim.restart("n2")
    partition = sim.ring.partition_for_key(b"b", b"k")
    assert [c.value for _, c in read_local(sim.storage["n2"], partition, b"b", b"k").siblings] == [b"v"]


def test_a_put_sent_to_a_node_outside_the_preference_list_is_forwarded() -> None:
    sim = Simulation(["n1", "n2", "n3", "n4", "n5"], seed=10)
    partition = sim.ring.partition_for_key(b"b", b"k")
    outsider = next(n for n in sorted(sim.nodes) if n not in primaries(sim.ring, partition, 3))
    put(sim, outsider, b"k", b"v")
    assert values(get(sim, outsider, b"k", r=3)) == [b"v"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (GetRequest(b"b", b"k" * 1025), "key"),
        (GetRequest(b"b" * 257, b"k"), "bucket"),
        (GetRequest(b"b", b""), "key"),
        (GetRequest(b"b", b"k", r=4), "r"),
        (PutRequest(b"b", b"k", content(b"x" * (1024 * 1024 + 1))), "value"),
        (PutRequest(b"b", b"k", content(b"v"), b"garbage"), "context"),
        (PutRequest(b"b", b"k", content(b"v"), w=0), "w"),
        (DeleteRequest(b"b", b"k", pw="most"), "pw"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(request_: object, field: str) -> None:
    sim = Simulation(NODES, seed=11)
    reply = sim.call("n1", request_)  # type: ignore[arg-type]
    assert isinstance(reply, Failure) and reply.kind is FailureKind.BAD_REQUEST
    assert reply.field == field, reply


def test_r_above_n_val_names_both() -> None:
    reply = Simulation(NODES, seed=12).call("n1", GetRequest(b"b", b"k", r=4))
    assert isinstance(reply, Failure) and "4" in reply.message and "n_val 3" in reply.message


def test_same_seed_same_trace_and_another_seed_another() -> None:
    def run(seed: int) -> str:
        sim = Simulation(NODES, seed=seed)
        for i in range(10):
            put(sim, NODES[i % 3], f"k{i}".encode(), b"v")
        sim.crash("n2")
        for i in range(10):
            get(sim, NODES[i % 2 * 2], f"k{i}".encode())
        return sim.digest()

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_at_the_sibling_bound_a_put_is_refused_and_nothing_stored_is_dropped() -> None:
    sim = Simulation(NODES, seed=14, settings=Settings(limits=Limits(siblings_max=3)))
    for i in range(3):
        put(sim, "n1", b"k", f"v{i}".encode())  # blind writes: each adds a sibling
    reply = sim.call("n1", PutRequest(b"b", b"k", content(b"one too many")))
    assert isinstance(reply, Failure) and reply.kind is FailureKind.BAD_REQUEST
    assert reply.field == "siblings" and "limit of 3" in reply.message
    assert values(get(sim, "n2", b"k", r=3)) == [b"v0", b"v1", b"v2"]
    resolved = get(sim, "n1", b"k")
    put(sim, "n1", b"k", b"merged", resolved.context)  # resolving is always allowed
    assert values(get(sim, "n3", b"k", r=3)) == [b"merged"]


def test_a_custom_value_limit_is_enforced() -> None:
    sim = Simulation(NODES, seed=15, settings=Settings(limits=Limits(value_bytes_max=10)))
    reply = sim.call("n1", PutRequest(b"b", b"k", content(b"x" * 11)))
    assert isinstance(reply, Failure) and reply.field == "value" and "limit of 10" in reply.message
    put(sim, "n1", b"k", b"x" * 10)


def holders(sim: Simulation, bucket: bytes, key: bytes) -> list[str]:
    partition = sim.ring.partition_for_key(bucket, key)
    return [n for n in sorted(sim.storage) if sim.storage[n].get(partition, bucket, key) is not None]


def test_a_bucket_with_its_own_n_val_and_quorums() -> None:
    settings = Settings(buckets={b"one": BucketProps(n_val=1), b"strict": BucketProps(w="all")})
    sim = Simulation(NODES, seed=16, settings=settings)
    assert isinstance(sim.call("n1", PutRequest(b"one", b"k", content(b"v"))), PutReply)
    assert len(holders(sim, b"one", b"k")) == 1
    assert isinstance(sim.call("n1", PutRequest(b"b", b"k", content(b"v"))), PutReply)
    assert holders(sim, b"b", b"k") == NODES
    sim.crash("n3")
    strict = sim.call("n1", PutRequest(b"strict", b"k", content(b"v")))
    assert isinstance(strict, Failure) and (strict.field, strict.needed) == ("w", 3)
    assert isinstance(sim.call("n1", PutRequest(b"strict", b"k", content(b"v"), w=2)), PutReply)
    refused = sim.call("n1", GetRequest(b"one", b"k", r=2))
    assert isinstance(refused, Failure) and refused.field == "r" and "n_val 1" in refused.message


def test_a_forwarded_put_whose_coordinator_dies_goes_to_the_next_replica() -> None:
    """The node a put was forwarded to crashes before it answers: the forwarding node hears the link
    drop and hands the put to the next reachable primary, so the write succeeds instead of timing out."""
    sim = Simulation(["n1", "n2", "n3", "n4", "n5"], seed=13)
    partition = sim.ring.partition_for_key(b"b", b"k")
    prefs = primaries(sim.ring, partition, 3)
    outsider = next(n for n in sorted(sim.nodes) if n not in prefs)
    ref = sim.submit(outsider, PutRequest(b"b", b"k", content(b"v", sim.now_ms)))
    sim.crash(prefs[0])  # the forward is in flight to it, and is lost with it
    sim.run_until(lambda: ref in sim.replies)
    reply = sim.replies.pop(ref)
    assert isinstance(reply, PutReply), reply
    assert values(get(sim, outsider, b"k", r=2)) == [b"v"]
    assert sim.nodes[outsider] is not None
    assert sim.nodes[outsider].data.counters["forwards.retried"] == 1  # type: ignore[union-attr]


def test_a_forward_retried_past_a_paused_coordinator_is_read_as_one_value() -> None:
    """The coordinator a put was forwarded to is paused (SIGSTOP): once the forwarding node suspects
    it, the put goes to the next primary and succeeds. When the paused node resumes it coordinates the
    request it had queued as well: the key then holds the value under two dots, which a read shows once,
    and a put with the read's context replaces both."""
    settings = Settings(timing=Timing(suspect_after_ms=1_000, probe_interval_ms=250))
    sim = Simulation(["n1", "n2", "n3", "n4", "n5"], seed=14, settings=settings)
    partition = sim.ring.partition_for_key(b"b", b"k")
    prefs = primaries(sim.ring, partition, 3)
    outsider = next(n for n in sorted(sim.nodes) if n not in prefs)
    sim.pause(prefs[0])
    reply = put(sim, outsider, b"k", b"v")  # within the request timeout: retried, not timed out
    sim.resume(prefs[0])

    def stored() -> list[bytes]:
        return [c.value for _, c in read_local(sim.storage[prefs[0]], partition, b"b", b"k").siblings]

    sim.run_until(lambda: len(stored()) == 2)
    assert stored() == [b"v", b"v"]
    read = get(sim, outsider, b"k", r=3)
    assert values(read) == [b"v"]
    put(sim, outsider, b"k", b"w", read.context)
    assert values(get(sim, outsider, b"k", r=3)) == [b"w"]
    assert isinstance(reply, PutReply)
