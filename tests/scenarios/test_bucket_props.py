"""Stories of cluster-wide bucket props and the semantics they switch on, in the simulator.

Bucket props are set on one node, pushed to the others and repaired by digest sync; allow_mult,
last_write_wins, notfound_ok and basic_quorum change what gets and puts do (docs/adr/0006).
"""

from __future__ import annotations

from dynakv.core.objects import Content
from dynakv.core.preflist import primaries
from dynakv.protocol.messages import (
    BucketPropsReply,
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetBucketProps,
    GetReply,
    GetRequest,
    PutReply,
    PutRequest,
    ResetBucketProps,
    SetBucketProps,
)
from dynakv.protocol.replica import read_local
from dynakv.sim.simulator import Simulation

NODES = ["n1", "n2", "n3"]
GOSSIP_MS = 1_000


def set_props(sim: Simulation, node: str, bucket: bytes = b"b", **props: object) -> dict[str, object]:
    reply = sim.call(node, SetBucketProps(bucket, props))  # type: ignore[arg-type]
    assert isinstance(reply, BucketPropsReply), reply
    return dict(reply.props)


def get_props(sim: Simulation, node: str, bucket: bytes = b"b") -> dict[str, object]:
    reply = sim.call(node, GetBucketProps(bucket))
    assert isinstance(reply, BucketPropsReply), reply
    return dict(reply.props)


def put(sim: Simulation, node: str, key: bytes, value: bytes, context: bytes = b"", **kw: object) -> PutReply:
    content = Content(value, last_modified_ms=sim.now_ms)
    reply = sim.call(node, PutRequest(b"b", key, content, context, **kw))  # type: ignore[arg-type]
    assert isinstance(reply, PutReply), reply
    return reply


def get(sim: Simulation, node: str, key: bytes, **kw: object) -> GetReply:
    reply = sim.call(node, GetRequest(b"b", key, **kw))  # type: ignore[arg-type]
    assert isinstance(reply, GetReply), reply
    return reply


def stored(sim: Simulation, node: str, key: bytes) -> list[bytes]:
    """The values (tombstones as b"<deleted>") of every sibling the node stores for the key."""
    partition = sim.ring.partition_for_key(b"b", key)
    obj = read_local(sim.storage[node], partition, b"b", key)
    return sorted(b"<deleted>" if c.deleted else c.value for _, c in obj.siblings)


# -- props spread -------------------------------------------------------------------------------------


def test_props_set_on_one_node_are_served_by_every_node() -> None:
    sim = Simulation(NODES, seed=21)
    echo = set_props(sim, "n1", w=1, dw="all", allow_mult=False)
    assert (echo["w"], echo["dw"], echo["allow_mult"], echo["r"]) == (1, "all", False, "quorum")
    sim.run_for(50)
    for node in NODES:
        assert get_props(sim, node) == echo
        assert get_props(sim, node, b"other")["w"] == "quorum"


def test_a_bad_change_is_refused_and_changes_nothing() -> None:
    sim = Simulation(NODES, seed=22)
    reply = sim.call("n2", SetBucketProps(b"b", {"n_val": 4}))
    assert isinstance(reply, Failure) and reply.kind is FailureKind.BAD_REQUEST and reply.field == "n_val"
    assert "3 distinct nodes" in reply.message
    reply = sim.call("n2", SetBucketProps(b"b", {"young_vclock": 1}))
    assert isinstance(reply, Failure) and reply.field == "young_vclock"
    assert get_props(sim, "n2")["n_val"] == 3


def test_a_node_down_during_a_change_catches_up_by_digest_sync() -> None:
    sim = Simulation(NODES, seed=23)
    sim.crash("n3")
    echo = set_props(sim, "n1", n_val=2, notfound_ok=False)
    sim.run_for(100)
    sim.restart("n3")
    node = sim.nodes["n3"]
    assert node is not None and node.props.table.shown(b"b")["n_val"] == 3  # the push was lost
    sim.run_for(3 * GOSSIP_MS)
    assert get_props(sim, "n3") == echo
    assert node.data.props_for(b"b").n_val == 2


def test_a_change_made_while_a_link_is_cut_arrives_once_it_heals() -> None:
    sim = Simulation(NODES, seed=24)
    sim.partition(["n1"], ["n2", "n3"])
    echo = set_props(sim, "n1", r=1)
    sim.run_for(2 * GOSSIP_MS)
    assert get_props(sim, "n2")["r"] == "quorum"
    sim.heal()
    sim.run_for(4 * GOSSIP_MS)
    for node in NODES:
        assert get_props(sim, node) == echo


def test_a_reset_propagates() -> None:
    sim = Simulation(NODES, seed=25)
    set_props(sim, "n1", w="all", allow_mult=False)
    sim.run_for(50)
    reply = sim.call("n2", ResetBucketProps(b"b"))
    assert isinstance(reply, BucketPropsReply) and reply.props["w"] == "quorum"
    sim.run_for(50)
    for node in NODES:
        props = get_props(sim, node)
        assert props["w"] == "quorum" and props["allow_mult"] is True
    node3 = sim.nodes["n3"]
    assert node3 is not None and node3.data.props_for(b"b").allow_mult is True


def test_a_restarted_node_keeps_its_props() -> None:
    sim = Simulation(NODES, seed=26)
    set_props(sim, "n1", w=1, last_write_wins=True)
    sim.run_for(50)
    for node in NODES:
        sim.crash(node)  # the memory engine undoes what was not durable
    for node in NODES:
        sim.restart(node)
        restarted = sim.nodes[node]
        assert restarted is not None
        assert restarted.props.table.shown(b"b")["w"] == 1
        assert restarted.data.props_for(b"b").last_write_wins is True


# -- what props change --------------------------------------------------------------------------------


def test_n_val_one_puts_later_writes_on_one_replica() -> None:
    sim = Simulation(NODES, seed=27)
    put(sim, "n1", b"before", b"v", w=3)
    set_props(sim, "n1", n_val=1)
    sim.run_for(50)
    put(sim, "n2", b"after", b"v")
    sim.run_for(100)
    assert sum(1 for node in NODES if stored(sim, node, b"before")) == 3
    holders = [node for node in NODES if stored(sim, node, b"after")]
    partition = sim.ring.partition_for_key(b"b", b"after")
    assert holders == [primaries(sim.ring, partition, 1)[0]]
    assert get(sim, "n3", b"after").found


def test_allow_mult_false_hides_siblings_but_keeps_them() -> None:
    sim = Simulation(NODES, seed=28)
    set_props(sim, "n1", allow_mult=False)
    sim.run_for(50)
    ctx = put(sim, "n1", b"k", b"v0", w=3).context
    sim.run_for(10)
    put(sim, "n2", b"k", b"older", ctx, w=3)
    sim.run_for(10)
    newest = put(sim, "n3", b"k", b"newer", ctx, w=3, return_body=True)
    assert [c.value for c in newest.siblings] == [b"newer"]
    reply = get(sim, "n1", b"k", r=3)
    assert reply.found and [c.value for c in reply.siblings] == [b"newer"]
    assert stored(sim, "n1", b"k") == [b"newer", b"older"]  # resolution is for the reader
    put(sim, "n1", b"k", b"resolved", reply.context, w=3)
    for node in NODES:
        assert stored(sim, node, b"k") == [b"resolved"]


def test_allow_mult_false_reads_a_newest_tombstone_as_not_found() -> None:
    sim = Simulation(NODES, seed=29)
    ctx = put(sim, "n1", b"k", b"v0", w=3).context
    sim.run_for(10)
    put(sim, "n2", b"k", b"v1", ctx, w=3)
    sim.run_for(10)
    assert isinstance(sim.call("n3", DeleteRequest(b"b", b"k", ctx, w=3)), DeleteReply)
    with_siblings = get(sim, "n1", b"k", r=3)
    # allow_mult true: the live sibling shows, and the concurrent delete beside it as a tombstone
    assert sorted((c.deleted, c.value) for c in with_siblings.siblings) == [(False, b"v1"), (True, b"")]
    set_props(sim, "n1", allow_mult=False)
    sim.run_for(50)
    hidden = get(sim, "n1", b"k", r=3)
    assert not hidden.found and hidden.siblings == () and hidden.context == with_siblings.context


def test_last_write_wins_keeps_one_sibling() -> None:
    sim = Simulation(NODES, seed=30)
    set_props(sim, "n1", last_write_wins=True)
    sim.run_for(50)
    ctx = put(sim, "n1", b"k", b"v0", w=3).context
    sim.run_for(10)
    put(sim, "n2", b"k", b"first", ctx, w=3)
    sim.run_for(10)
    put(sim, "n3", b"k", b"second", ctx, w=3)
    sim.run_for(100)
    for node in NODES:
        assert stored(sim, node, b"k") == [b"second"]
    assert [c.value for c in get(sim, "n1", b"k", r=3).siblings] == [b"second"]


def test_without_last_write_wins_the_same_writes_keep_both() -> None:
    sim = Simulation(NODES, seed=30)
    ctx = put(sim, "n1", b"k", b"v0", w=3).context
    sim.run_for(10)
    put(sim, "n2", b"k", b"first", ctx, w=3)
    sim.run_for(10)
    put(sim, "n3", b"k", b"second", ctx, w=3)
    assert stored(sim, "n1", b"k") == [b"first", b"second"]


# -- notfound_ok and basic_quorum ---------------------------------------------------------------------


def one_replica_holds_it(sim: Simulation, key: bytes) -> tuple[str, list[str]]:
    """Write `key` with only one replica reachable; return it and the two replicas without the key."""
    holder, *others = NODES
    sim.partition([holder], others)
    put(sim, holder, key, b"v", w=1, dw=0)
    sim.heal()
    return holder, others


def test_notfound_ok_true_lets_not_founds_answer_r() -> None:
    sim = Simulation(NODES, seed=31)
    holder, (coordinator, third) = one_replica_holds_it(sim, b"k")
    sim.clog(holder, coordinator)
    sim.clog(third, coordinator)
    assert not get(sim, coordinator, b"k", r=1).found  # its own not-found is enough for r=1


def test_notfound_ok_false_waits_for_a_replica_that_has_it() -> None:
    sim = Simulation(NODES, seed=32)
    _holder, (coordinator, _third) = one_replica_holds_it(sim, b"k")
    reply = get(sim, coordinator, b"k", r=1, notfound_ok=False)
    assert reply.found and [c.value for c in reply.siblings] == [b"v"]


def test_notfound_ok_false_from_the_bucket_props() -> None:
    sim = Simulation(NODES, seed=33)
    holder, (coordinator, _third) = one_replica_holds_it(sim, b"k1")
    one_replica_holds_it(sim, b"k2")
    set_props(sim, "n1", notfound_ok=False)
    sim.run_for(50)
    sim.clog(holder, coordinator)
    # The request overrides the bucket: its own not-found answers r=1 before the holder can.
    assert not get(sim, coordinator, b"k1", r=1, notfound_ok=True).found
    sim.unclog(holder, coordinator)
    assert get(sim, coordinator, b"k2", r=1).found


def test_basic_quorum_answers_not_found_once_a_majority_said_so() -> None:
    sim = Simulation(NODES, seed=34)
    holder, (coordinator, _third) = one_replica_holds_it(sim, b"k")
    sim.clog(holder, coordinator)  # the one replica holding it answers late
    reply = get(sim, coordinator, b"k", r=1, notfound_ok=False, basic_quorum=True)
    assert not reply.found and reply.siblings == ()
    slow = sim.submit(coordinator, GetRequest(b"b", b"k", r=1, notfound_ok=False))
    sim.run_for(200)
    assert slow not in sim.replies  # without basic_quorum it waits for the third answer
    sim.unclog(holder, coordinator)
    sim.run_until(lambda: slow in sim.replies)
    answer = sim.replies.pop(slow)
    assert isinstance(answer, GetReply) and answer.found


def test_notfound_ok_false_with_every_replica_empty_is_not_found() -> None:
    sim = Simulation(NODES, seed=35)
    reply = get(sim, "n1", b"nothing", notfound_ok=False)
    assert not reply.found


def test_failures_without_not_founds_fail_on_r() -> None:
    sim = Simulation(NODES, seed=36)
    sim.crash("n2")
    sim.crash("n3")
    reply = sim.call("n1", GetRequest(b"b", b"k", r=2, notfound_ok=False))
    # n1 said not found and two failed: the threshold (2) is reached with a not-found among them.
    assert isinstance(reply, GetReply) and not reply.found
    put(sim, "n1", b"k2", b"v", w=1, dw=0)
    reply = sim.call("n1", GetRequest(b"b", b"k2", r=2, notfound_ok=False))
    assert isinstance(reply, Failure) and reply.field == "r" and reply.needed == 2
