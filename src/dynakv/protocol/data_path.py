"""Gets, puts and deletes: coordination on the coordinator side, replica work on the other side.

Paper sections 4.5 and 4.6. The replicas of a request are its *targets*: with sloppy quorum, the
first n_val reachable nodes of the extended preference list (reachable primaries, then a fallback for
each unreachable primary, naming it as `hint_for`). A put is coordinated by a target (a node outside
them forwards it): the coordinator applies the write to its own copy (minting a dot under its actor
id), then sends the new object to the other targets and replies after the w, dw and pw quorums are met
(pw and pr count primaries only). A fallback stores the object with a hint for its primary (handoff.py).
A get may be coordinated by any node: it asks the targets, replies after r (and pr) answers with every
sibling merged, then waits a bounded time for the rest and read-repairs stale primaries.

Actor ids: a node's actor id must change whenever it loses its data (see docs/dvv.md, riak_kv#679),
so it is handed in by the driver, which keeps it with the data.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from dynakv.core.config import BucketProps, ClusterConfig, Limits, Timing
from dynakv.core.dvv import decode_context, encode_context, reconcile
from dynakv.core.errors import DecodeError
from dynakv.core.objects import Content, encode_object
from dynakv.core.preflist import preference_list
from dynakv.core.ring import Ring
from dynakv.protocol import replica
from dynakv.protocol.bucket_props import PropsTable
from dynakv.protocol.coordinator import NOT_FOUND, GetCoordination, Need, PutCoordination, Target
from dynakv.protocol.effects import Effect, Reply, Send
from dynakv.protocol.handoff import Handoff
from dynakv.protocol.hints import store_hinted
from dynakv.protocol.messages import (
    ClientReply,
    ClientRequest,
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    ForwardReply,
    ForwardRequest,
    GetReply,
    GetRequest,
    PeerMessage,
    PutReply,
    PutRequest,
    ReadRepair,
    ReplicaGet,
    ReplicaGetReply,
    ReplicaPut,
    ReplicaPutAck,
)
from dynakv.protocol.pending import (
    ClientOrigin,
    ForwardOrigin,
    Origin,
    PendingForward,
    PendingGet,
    PendingPut,
    Plan,
    client_values,
    reply_to,
    resolved,
    storage_failure,
)
from dynakv.protocol.ports import StorageEngine, StorageError
from dynakv.protocol.put_checks import Refused, encode_checked, put_needs
from dynakv.protocol.requests import bad_request, check_sizes, resolve_quorums


@dataclass(frozen=True, slots=True)
class Settings:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)
    # Buckets with properties of their own; every other bucket has the cluster's defaults.
    buckets: Mapping[bytes, BucketProps] = field(default_factory=dict)
    # Test-only: deliberate defects the simulator's sweep switches on to prove its checkers catch them
    # (sim/sweep.py DEFECTS). Always empty in production.
    defects: frozenset[str] = frozenset()


class DataPath:
    def __init__(
        self,
        name: str,
        actor: str,
        ring: Ring,
        storage: StorageEngine,
        *,
        settings: Settings,
        counters: Counter[str],
        props: PropsTable | None = None,
    ) -> None:
        self.name = name
        self.actor = actor
        self.ring = ring
        self.storage = storage
        self.cluster = settings.cluster
        self.buckets = settings.buckets
        self.bucket_defaults = settings.cluster.bucket_defaults()
        # The node hands in the table its PropsService keeps in sync; alone, static props only.
        self.props = (
            props
            if props is not None
            else PropsTable(self.bucket_defaults, self.buckets, settings.limits.buckets_with_props_max)
        )
        self.timing = settings.timing
        self.limits = settings.limits
        self.counters = counters
        # The peers this node counts as unreachable (reachability.py; the node keeps it current): they
        # get no requests, and fallbacks stand in for them.
        self.down: set[str] = set()
        # Hinted handoff, set by the node: a fallback stores with a hint. Alone, fallbacks store plainly.
        self.handoff: Handoff | None = None
        self._next_id = 0
        self._puts: dict[int, PendingPut] = {}
        self._gets: dict[int, PendingGet] = {}
        self._forwards: dict[int, PendingForward] = {}

    # -- bookkeeping ---------------------------------------------------------------------------------

    def pending(self) -> int:
        return len(self._puts) + len(self._gets) + len(self._forwards)

    def props_for(self, bucket: bytes) -> BucketProps:
        """The bucket's effective properties: set ones over static ones over the cluster's defaults."""
        return self.props.effective(bucket)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _deadline(self, request: ClientRequest, now_ms: int) -> int:
        timeout = request.timeout_ms or self.timing.request_timeout_ms
        return now_ms + timeout

    def _targets(self, partition: int, n_val: int) -> tuple[Target, ...]:
        """Sloppy quorum (paper section 4.6): the first n_val reachable nodes of the extended preference
        list, the reachable primaries and a fallback for each unreachable one, naming it."""
        return tuple(
            Target(entry.node, entry.primary, entry.stands_in_for)
            for entry in preference_list(self.ring, partition, n_val, self.down)
        )

    # -- client requests -------------------------------------------------------------------------------

    def on_client_request(
        self, origin: Origin, request: ClientRequest, now_ms: int, out: list[Effect]
    ) -> None:
        self.counters[f"requests.{type(request).__name__}"] += 1
        failure = check_sizes(request, self.limits)
        if failure is None and self.pending() >= self.limits.pending_requests_max:
            limit = self.limits.pending_requests_max
            failure = Failure(FailureKind.OVERLOADED, f"{limit} requests in flight, the limit; retry later")
        props = self.props_for(request.bucket)
        quorums = resolve_quorums(request, props) if failure is None else failure
        if isinstance(quorums, Failure):
            reply_to(origin, quorums, out)
            return
        partition = self.ring.partition_for_key(request.bucket, request.key)
        plan = Plan(partition, self._targets(partition, props.n_val), quorums, props)
        if isinstance(request, GetRequest):
            self._start_get(origin, request, plan, now_ms, out)
        elif any(t.node == self.name for t in plan.targets):
            self._start_put(origin, request, plan, now_ms, out)
        else:
            self._forward(origin, request, plan, now_ms, out)

    def _forward(
        self, origin: Origin, request: ClientRequest, plan: Plan, now_ms: int, out: list[Effect]
    ) -> None:
        needed = plan.quorums["w"]
        up = [t.node for t in plan.targets if t.node not in self.down]
        if not up or isinstance(origin, ForwardOrigin):
            # A forwarded request is never forwarded again: rings that disagree must not make loops.
            why = "no replica of the key is reachable to coordinate it"
            reply_to(origin, Failure(FailureKind.UNAVAILABLE, why, "w", needed, 0), out)
            return
        req_id = self._new_id()
        assert isinstance(origin, ClientOrigin)
        deadline = self._deadline(request, now_ms)
        self._forwards[req_id] = PendingForward(origin.ref, up[0], deadline, needed, request, tuple(up[1:]))
        out.append(Send(up[0], ForwardRequest(req_id, request)))

    # -- puts and deletes ------------------------------------------------------------------------------

    def _start_put(
        self, origin: Origin, request: PutRequest | DeleteRequest, plan: Plan, now_ms: int, out: list[Effect]
    ) -> None:
        partition, targets, quorums = plan.partition, plan.targets, plan.quorums
        try:
            context = decode_context(request.context)
        except DecodeError as err:
            reply_to(origin, bad_request("context", f"context: not a context this store issued ({err})"), out)
            return
        content = request.content if isinstance(request, PutRequest) else Content.tombstone(now_ms)
        durable = quorums["dw"] > 0
        hint_for = next(t.hint_for for t in targets if t.node == self.name)
        # A fallback's copies go after the handoff, and with them its dot history: it mints under an
        # actor of the current handoff epoch, so a dot is never minted twice (handoff.py).
        actor = self.actor if hint_for is None or self.handoff is None else self.handoff.actor_for(self.actor)
        try:
            local = replica.read_local(self.storage, partition, request.bucket, request.key)
            if isinstance(request, DeleteRequest) and not request.context:
                # A delete without a context removes what the coordinator holds (Riak reads before
                # such a delete); a value it has not seen yet survives as a sibling, never lost.
                context = local.context()
            obj = resolved(local.update(context, actor, content, now_ms), plan.props)
            data = encode_checked(obj, self.limits)
            where = (plan.partition, request.bucket, request.key)
            if hint_for is None or self.handoff is None:
                self.storage.put(*where, data, durable=durable)
            else:
                self.handoff.store(hint_for, *where, data, now_ms=now_ms, durable=durable)
        except (StorageError, DecodeError) as err:
            reply_to(origin, storage_failure(err), out)
            return
        except Refused as refused:
            reply_to(origin, refused.failure, out)
            return
        coordination = PutCoordination(targets, put_needs(targets, quorums), self._deadline(request, now_ms))
        coordination.ack(self.name, True, durable)
        req_id = self._new_id()
        put = PendingPut(
            origin,
            coordination,
            obj,
            isinstance(request, PutRequest) and request.return_body,
            isinstance(request, DeleteRequest),
            plan.props,
        )
        self._puts[req_id] = put
        msg = ReplicaPut(req_id, partition, request.bucket, request.key, data, durable)
        for target in targets:
            if target.node == self.name:
                continue
            if target.node in self.down:
                coordination.ack(target.node, False, False)
            elif target.hint_for is None:
                out.append(Send(target.node, msg))
            else:
                out.append(Send(target.node, dataclasses.replace(msg, hint_for=target.hint_for)))
        self._settle_put(req_id, put, now_ms, out)

    def _settle_put(self, req_id: int, put: PendingPut, now_ms: int, out: list[Effect]) -> None:
        outcome = put.coordination.outcome(now_ms)
        if outcome is None:
            return
        del self._puts[req_id]
        if isinstance(outcome, Failure):
            self.counters[f"failures.{outcome.kind.value}"] += 1
            reply_to(put.origin, outcome, out)
        elif put.is_delete:
            reply_to(put.origin, DeleteReply(), out)
        else:
            body = client_values(put.obj, put.props) if put.reply_body else ()
            reply_to(put.origin, PutReply(encode_context(put.obj.context()), body), out)

    # -- gets ----------------------------------------------------------------------------------------

    def _start_get(
        self, origin: Origin, request: GetRequest, plan: Plan, now_ms: int, out: list[Effect]
    ) -> None:
        partition, targets, quorums = plan.partition, plan.targets, plan.quorums
        every = frozenset(t.node for t in targets)
        prims = frozenset(t.node for t in targets if t.primary)
        needs = tuple(
            n for n in (Need("r", quorums["r"], every), Need("pr", quorums["pr"], prims)) if n.count > 0
        )
        props = plan.props
        coordination = GetCoordination(
            targets,
            needs,
            self._deadline(request, now_ms),
            notfound_ok=props.notfound_ok if request.notfound_ok is None else request.notfound_ok,
            basic_quorum=props.basic_quorum if request.basic_quorum is None else request.basic_quorum,
        )
        req_id = self._new_id()
        get = PendingGet(origin, coordination, partition, request.bucket, request.key, props)
        self._gets[req_id] = get
        msg = ReplicaGet(req_id, partition, request.bucket, request.key)
        for target in targets:
            if target.node == self.name:
                try:
                    coordination.answer(self.name, self.storage.get(partition, request.bucket, request.key))
                except StorageError:
                    coordination.fail(self.name)
            elif target.node in self.down:
                coordination.fail(target.node)
            else:
                out.append(Send(target.node, msg))
        self._settle_get(req_id, get, now_ms, out)

    def _settle_get(self, req_id: int, get: PendingGet, now_ms: int, out: list[Effect]) -> None:
        coordination = get.coordination
        if not coordination.replied:
            outcome = coordination.outcome(now_ms)
            if outcome is None:
                return
            coordination.replied = True
            get.repair_deadline_ms = now_ms + self.timing.read_repair_wait_ms
            if isinstance(outcome, Failure):
                self.counters[f"failures.{outcome.kind.value}"] += 1
                reply_to(get.origin, outcome, out)
            else:
                merged = reconcile(coordination.objects())
                visible = () if outcome is NOT_FOUND else client_values(merged, get.props)
                reply_to(get.origin, GetReply(bool(visible), visible, encode_context(merged.context())), out)
        if coordination.all_answered() or now_ms >= get.repair_deadline_ms:
            del self._gets[req_id]
            self._read_repair(get, out)

    def _read_repair(self, get: PendingGet, out: list[Effect]) -> None:
        """Send the merged object to every primary that answered with less (paper section 5). Fallbacks
        are left alone: they keep only the writes they took as hints, and a repair without a hint
        would leave a copy that nothing ever hands over or deletes."""
        objects = get.coordination.objects()
        if not objects:
            return
        merged = resolved(reconcile(objects), get.props)
        fallbacks = {t.node for t in get.coordination.targets if not t.primary}
        data: bytes | None = None
        for node, obj in sorted(get.coordination.replies.items()):
            if obj == merged or node in fallbacks:
                continue
            data = data if data is not None else encode_object(merged)
            self.counters["read_repairs"] += 1
            if node == self.name:
                self._merge_quietly(get.partition, get.bucket, get.key, data)
            else:
                out.append(Send(node, ReadRepair(get.partition, get.bucket, get.key, data)))

    def _merge_quietly(self, partition: int, bucket: bytes, key: bytes, data: bytes) -> bool:
        lww = self.props_for(bucket).last_write_wins
        try:
            replica.merge_local(self.storage, partition, bucket, key, data, durable=False, lww=lww)
        except (StorageError, DecodeError):
            self.counters["replica_errors"] += 1
            return False
        return True

    # -- peer messages ------------------------------------------------------------------------------

    def on_message(self, src: str, msg: PeerMessage, now_ms: int, out: list[Effect]) -> None:
        if isinstance(msg, ReplicaGet | ReplicaPut | ReadRepair):
            self._on_replica_message(src, msg, now_ms, out)
        else:
            self._on_coordinator_message(src, msg, now_ms, out)

    def _on_replica_message(
        self, src: str, msg: ReplicaGet | ReplicaPut | ReadRepair, now_ms: int, out: list[Effect]
    ) -> None:
        """The replica side: answer from, or merge into, local storage."""
        match msg:
            case ReplicaGet(req_id, partition, bucket, key):
                try:
                    out.append(Send(src, ReplicaGetReply(req_id, self.storage.get(partition, bucket, key))))
                except StorageError:
                    out.append(Send(src, ReplicaGetReply(req_id, None, ok=False)))
            case ReplicaPut(req_id=req_id, durable=durable):
                try:
                    self._store_replica(msg, now_ms)
                    out.append(Send(src, ReplicaPutAck(req_id, True, durable)))
                except (StorageError, DecodeError):
                    self.counters["replica_errors"] += 1
                    out.append(Send(src, ReplicaPutAck(req_id, False, False)))
            case ReadRepair(partition, bucket, key, obj):
                self._merge_quietly(partition, bucket, key, obj)

    def _store_replica(self, msg: ReplicaPut, now_ms: int) -> None:
        """Merge a replica put into the local copy; as a fallback (`hint_for`), with the hint."""
        lww = self.props_for(msg.bucket).last_write_wins
        where = (msg.partition, msg.bucket, msg.key)
        if msg.hint_for is None or msg.hint_for == self.name or self.handoff is None:
            replica.merge_local(self.storage, *where, msg.obj, durable=msg.durable, lww=lww)
            return
        dropped = store_hinted(
            self.handoff.hints,
            msg.hint_for,
            *where,
            incoming=msg.obj,
            now_ms=now_ms,
            durable=msg.durable,
            lww=lww,
        )
        if dropped is not None:
            self.handoff.dropped(dropped)

    def _on_coordinator_message(self, src: str, msg: PeerMessage, now_ms: int, out: list[Effect]) -> None:
        """The coordinator side: answers to requests in flight (late or unknown ones are dropped)."""
        match msg:
            case ReplicaGetReply(req_id, obj, ok):
                get = self._gets.get(req_id)
                if get is not None:
                    if ok:
                        get.coordination.answer(src, obj)
                    else:
                        get.coordination.fail(src)
                    self._settle_get(req_id, get, now_ms, out)
            case ReplicaPutAck(req_id, ok, durable):
                put = self._puts.get(req_id)
                if put is not None:
                    put.coordination.ack(src, ok, durable)
                    self._settle_put(req_id, put, now_ms, out)
            case ForwardRequest(req_id, request):
                self.on_client_request(ForwardOrigin(src, req_id), request, now_ms, out)
            case ForwardReply(req_id, reply):
                forward = self._forwards.pop(req_id, None)
                if forward is not None and not self._forward_again(req_id, forward, reply, out):
                    out.append(Reply(forward.ref, reply))

    def _forward_again(
        self, req_id: int, forward: PendingForward, reply: ClientReply, out: list[Effect]
    ) -> bool:
        """A forward refused by a node that is no target in its own view of the ring (views disagree
        while a membership change spreads): try the next reachable target; whether it was sent."""
        refused = (
            isinstance(reply, Failure) and reply.kind is FailureKind.UNAVAILABLE and reply.acknowledged == 0
        )
        return refused and self._forward_to_next(req_id, forward, out)

    def _forward_to_next(self, req_id: int, forward: PendingForward, out: list[Effect]) -> bool:
        """Send the forward to the next reachable target it has not tried; whether there was one."""
        rest = [n for n in forward.rest if n not in self.down]
        if not rest or forward.request is None:
            return False
        self.counters["forwards.retried"] += 1
        self._forwards[req_id] = dataclasses.replace(forward, node=rest[0], rest=tuple(rest[1:]))
        out.append(Send(rest[0], ForwardRequest(req_id, forward.request)))
        return True

    # -- time and peers ------------------------------------------------------------------------------

    def on_tick(self, now_ms: int, out: list[Effect]) -> None:
        for req_id, put in sorted(self._puts.items()):
            self._settle_put(req_id, put, now_ms, out)
        for req_id, get in sorted(self._gets.items()):
            self._settle_get(req_id, get, now_ms, out)
        for req_id, forward in sorted(self._forwards.items()):
            if now_ms >= forward.deadline_ms:
                del self._forwards[req_id]
                why = f"the coordinator {forward.node} did not answer in time"
                out.append(Reply(forward.ref, Failure(FailureKind.TIMEOUT, why, "w", forward.needed, 0)))

    def on_peer_down(self, node: str, now_ms: int, out: list[Effect]) -> None:
        """A lost connection: requests waiting on that node stop waiting for it."""
        self.down.add(node)
        for req_id, put in sorted(self._puts.items()):
            if any(t.node == node for t in put.coordination.targets):
                put.coordination.ack(node, False, False)
                self._settle_put(req_id, put, now_ms, out)
        for req_id, get in sorted(self._gets.items()):
            get.coordination.fail(node)
            self._settle_get(req_id, get, now_ms, out)
        for req_id, forward in sorted(self._forwards.items()):
            if forward.node == node:
                self._coordinator_lost(req_id, forward, out)

    def _coordinator_lost(self, req_id: int, forward: PendingForward, out: list[Effect]) -> None:
        """The node coordinating a forwarded put went away (its connection dropped, or it is suspected):
        hand the put to the next reachable target rather than wait out the deadline. Should the lost
        coordinator have written it before it went, the retry adds a sibling with the same value (as a
        client's retry would): a duplicate the reader merges, never a lost write."""
        del self._forwards[req_id]
        if self._forward_to_next(req_id, forward, out):
            return
        why = f"the coordinator {forward.node} became unreachable, and no other replica of the key is"
        out.append(Reply(forward.ref, Failure(FailureKind.UNAVAILABLE, why, "w", forward.needed, 0)))
