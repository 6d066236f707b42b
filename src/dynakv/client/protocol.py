"""The client side of the native protocol, without I/O (the h11 pattern): bytes in, bytes and results out.

One `ClientConnection` per TCP connection. The driver (async or sync) writes what `initiate()` and
`send()` return and feeds whatever the socket delivers to `receive_data()`, which hands back each
completed request as `(request_id, outcome)`: a result, or the typed exception to raise. Replies may come
back in any order; the request id matches them. The connection fails as a whole only when the server
breaks the protocol (every pending request gets `ProtocolError`) or the transport drops
(`connection_lost`: every pending request gets `ConnectionLost`).

Requests are checked here before they are encoded, because the server closes a connection on a frame
it cannot decode: one bad argument must fail one call, not every request in flight beside it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from dynakv.core.config import Limits, Quorum
from dynakv.core.errors import RemoteProtocolError
from dynakv.core.objects import Content
from dynakv.protocol.admin_messages import (
    RepairRequest,
    RepairStatus,
    RepairStatusRequest,
    StatusReply,
    StatusRequest,
)
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitRequest,
    ClusterPlanReply,
    ClusterPlanRequest,
    ClusterStageRequest,
    ClusterTransfersReply,
    ClusterTransfersRequest,
)
from dynakv.protocol.messages import (
    BucketPropsReply,
    DeleteReply,
    DeleteRequest,
    Failure,
    FailureKind,
    GetBucketProps,
    GetReply,
    GetRequest,
    ListBucketsRequest,
    ListKeysRequest,
    ListReply,
    NodeReply,
    NodeRequest,
    PutReply,
    PutRequest,
    ResetBucketProps,
    SetBucketProps,
)
from dynakv.wire.codec import (
    PROTOCOL_VERSION,
    Hello,
    decode_client_reply,
    decode_hello,
    encode_client_request,
    encode_hello,
)
from dynakv.wire.framing import FrameDecoder, encode_frame

from .models import (
    BadRequest,
    ClusterStatus,
    ConnectionLost,
    DynakvClientError,
    GetResult,
    MemberInfo,
    Overloaded,
    ProtocolError,
    PutResult,
    RepairProgress,
    ServerError,
    Sibling,
    StorageFailure,
    Timeout,
    Unavailable,
)

Result: TypeAlias = (
    GetResult
    | PutResult
    | RepairProgress
    | ClusterStatus
    | list[bytes]
    | dict[str, object]
    | ClusterPlanReply
    | ClusterTransfersReply
    | None
)
"""A request's result: GetResult, PutResult, None (a delete), RepairProgress (repair, repair status),
ClusterStatus, list[bytes] (a key or bucket listing), dict[str, object] (bucket props), ClusterPlanReply
and ClusterTransfersReply (cluster admin requests, returned as they come)."""
Outcome: TypeAlias = Result | DynakvClientError
"""What a request completes with: its result, or the exception to raise."""

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_EXPECTED_REPLY: Final[dict[type, type]] = {
    GetRequest: GetReply,
    PutRequest: PutReply,
    DeleteRequest: DeleteReply,
    ListKeysRequest: ListReply,
    ListBucketsRequest: ListReply,
    GetBucketProps: BucketPropsReply,
    SetBucketProps: BucketPropsReply,
    ResetBucketProps: BucketPropsReply,
    RepairRequest: RepairStatus,
    RepairStatusRequest: RepairStatus,
    StatusRequest: StatusReply,
    ClusterStageRequest: ClusterPlanReply,
    ClusterPlanRequest: ClusterPlanReply,
    ClusterCommitRequest: ClusterPlanReply,
    ClusterTransfersRequest: ClusterTransfersReply,
}


class State(enum.Enum):
    HANDSHAKE = "handshake"  # our hello may be out; the server's has not arrived yet
    OPEN = "open"
    CLOSED = "closed"


class ClientConnection:
    """The state of one client connection: request ids, pending requests, the frame decoder."""

    __slots__ = (
        "_cluster",
        "_decoder",
        "_error",
        "_frame_bytes_max",
        "_name",
        "_next_id",
        "_pending",
        "_server",
    )

    def __init__(
        self, *, name: str = "dynakv-client", cluster: str = "", frame_bytes_max: int | None = None
    ) -> None:
        """`cluster` is the cluster name to insist on ("" accepts any server)."""
        self._frame_bytes_max = Limits().frame_bytes_max if frame_bytes_max is None else frame_bytes_max
        self._decoder = FrameDecoder(self._frame_bytes_max)
        self._name = name
        self._cluster = cluster
        self._next_id = 1
        self._pending: dict[int, type] = {}  # request id -> the reply type that answers it
        self._server: Hello | None = None
        self._error: DynakvClientError | None = None

    @property
    def state(self) -> State:
        if self._error is not None:
            return State.CLOSED
        return State.HANDSHAKE if self._server is None else State.OPEN

    @property
    def server(self) -> Hello | None:
        """The server's hello, once it has arrived."""
        return self._server

    @property
    def error(self) -> DynakvClientError | None:
        """Why the connection closed, once it has."""
        return self._error

    @property
    def pending(self) -> int:
        return len(self._pending)

    def initiate(self) -> bytes:
        """The first bytes to write: our hello."""
        hello = Hello(self._cluster, PROTOCOL_VERSION, self._name, "client")
        return encode_frame(encode_hello(hello), self._frame_bytes_max)

    def send(self, request: NodeRequest) -> tuple[int, bytes]:
        """Assign the request an id and return it with the bytes to write. Requests may be sent before
        the server's hello arrives; the server reads ours first."""
        if self._error is not None:
            raise _fresh(self._error)
        request_id = self._next_id
        try:
            frame = encode_frame(encode_client_request(request_id, request), self._frame_bytes_max)
        except ValueError as err:
            raise BadRequest("value", f"the request is too large to send: {err}") from None
        self._next_id += 1
        self._pending[request_id] = _EXPECTED_REPLY[type(request)]
        return request_id, frame

    def abandon(self, request_id: int) -> bool:
        """Stop waiting for a request (the driver's own timeout fired); a late reply is then dropped."""
        return self._pending.pop(request_id, None) is not None

    def receive_data(self, data: bytes) -> list[tuple[int, Outcome]]:
        """Take bytes from the socket; return every request they completed. If they break the
        protocol, the connection closes and every pending request completes with `ProtocolError`."""
        if self._error is not None:
            return []
        done: list[tuple[int, Outcome]] = []
        try:
            for frame in self._decoder.feed(data):
                if self._server is None:
                    self._server = self._check_hello(decode_hello(frame))
                    continue
                completed = self._complete(*decode_client_reply(frame))
                if completed is not None:
                    done.append(completed)
        except (RemoteProtocolError, ProtocolError) as err:
            done.extend(self._fail(ProtocolError(f"the server broke the protocol: {err}")))
        return done

    def connection_lost(self, reason: str = "the connection closed") -> list[tuple[int, Outcome]]:
        """The transport dropped: every pending request completes with `ConnectionLost`."""
        if self._error is not None:
            return []
        return self._fail(ConnectionLost(reason))

    def _check_hello(self, hello: Hello) -> Hello:
        if hello.role != "node":
            raise ProtocolError(f"the peer's hello says role {hello.role!r}, not 'node'")
        if hello.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the server speaks protocol version {hello.protocol_version}, this client {PROTOCOL_VERSION}"
            )
        if self._cluster and hello.cluster != self._cluster:
            raise ProtocolError(f"the server is in cluster {hello.cluster!r}, not {self._cluster!r}")
        return hello

    def _complete(self, request_id: int, reply: NodeReply) -> tuple[int, Outcome] | None:
        expected = self._pending.get(request_id)
        if expected is None:
            if request_id < self._next_id:
                return None  # a late reply to a request the driver abandoned after its own timeout
            raise ProtocolError(f"a reply to request {request_id}, which was never sent")
        if not isinstance(reply, expected | Failure):
            # Still pending, so it fails with the connection like the others.
            raise ProtocolError(
                f"request {request_id} wants a {expected.__name__}, got a {type(reply).__name__}"
            )
        del self._pending[request_id]
        if isinstance(reply, Failure):
            return request_id, error_from_failure(reply)
        return request_id, result_from_reply(reply)

    def _fail(self, error: DynakvClientError) -> list[tuple[int, Outcome]]:
        self._error = error
        failed: list[tuple[int, Outcome]] = [(rid, _fresh(error)) for rid in self._pending]
        self._pending.clear()
        return failed


def _fresh(error: DynakvClientError) -> DynakvClientError:
    """A new instance per waiting caller: one exception object raised in many tasks would chain their
    tracebacks together."""
    return type(error)(*error.args)


def error_from_failure(failure: Failure) -> ServerError:
    """The typed exception for a failure the server reported."""
    message = failure.message
    match failure.kind:
        case FailureKind.BAD_REQUEST:
            return BadRequest(failure.field, message)
        case FailureKind.UNAVAILABLE:
            return Unavailable(failure.needed, failure.acknowledged, failure.field, message)
        case FailureKind.TIMEOUT:
            return Timeout(failure.needed, failure.acknowledged, message, failure.field)
        case FailureKind.OVERLOADED:
            return Overloaded(message)
        case FailureKind.STORAGE:
            return StorageFailure(message)
    raise AssertionError(f"unhandled failure kind {failure.kind}")


def result_from_reply(reply: NodeReply) -> Result:
    """The result of a reply other than a failure (those are `error_from_failure`'s)."""
    match reply:
        case ClusterPlanReply() | ClusterTransfersReply():
            return reply
        case ListReply(names):
            return list(names)
        case BucketPropsReply(props):
            return dict(props)
        case RepairStatus(total, done, repaired, failed, finished):
            return RepairProgress(total, done, repaired, failed, finished)
        case StatusReply():
            members = [MemberInfo(m.name, m.reachable, m.partitions_owned, m.state) for m in reply.members]
            counts = (reply.hints_pending, reply.transfers_pending, reply.partitions, reply.n_val)
            return ClusterStatus(reply.node, members, *counts, reply.trees_building, reply.transfers_active)
    assert not isinstance(reply, Failure), "failures are error_from_failure's"
    if isinstance(reply, GetReply):
        live, dead = _split(reply.siblings)
        return GetResult(siblings=live, context=reply.context, found=reply.found, tombstones=dead)
    if isinstance(reply, PutReply):
        live, dead = _split(reply.siblings)
        return PutResult(context=reply.context, siblings=live, tombstones=dead)
    assert isinstance(reply, DeleteReply), f"no request of this client expects a {type(reply).__name__}"
    return None


def _split(contents: tuple[Content, ...]) -> tuple[list[Sibling], list[Sibling]]:
    """Live siblings and tombstones, each in the server's (dot) order."""
    live = [Sibling.from_content(c) for c in contents if not c.deleted]
    dead = [Sibling.from_content(c) for c in contents if c.deleted]
    return live, dead


# ---------------------------------------------------------------------------------------------------
# Building requests from the public API's arguments


def as_bytes(value: str | bytes | bytearray | memoryview, field: str) -> bytes:
    """Bytes as given; str as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{field}: expected str or bytes, got {type(value).__name__}")


def check_quorum(field: str, value: Quorum | None) -> Quorum | None:
    """Type-check a quorum (the server checks its range against n_val, and the symbolic names)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field}: expected an integer or one of 'one', 'quorum', 'all', got {value!r}")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise BadRequest(field, f"{field}: {value} is out of range")
    return value


def check_timeout(timeout_ms: int | None) -> int | None:
    if timeout_ms is None:
        return None
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
        raise TypeError(f"timeout_ms: expected an integer, got {timeout_ms!r}")
    if not 1 <= timeout_ms <= _INT64_MAX:
        raise BadRequest("timeout_ms", f"timeout_ms: {timeout_ms} is not a positive integer")
    return timeout_ms


def _optional_str(value: str | None, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{field}: expected str or None, got {type(value).__name__}")
    return value


def _context(context: object) -> bytes:
    """The opaque context of an earlier reply (b"" for none). A str is refused rather than encoded:
    a base64 text passed by mistake would silently become a context the server cannot read."""
    if context is None:
        return b""
    if not isinstance(context, bytes | bytearray | memoryview):
        kind = type(context).__name__
        raise TypeError(f"context: expected the bytes of an earlier result's context, got {kind}")
    return bytes(context)


def _usermeta(usermeta: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not usermeta:
        return ()
    pairs = tuple(usermeta.items())
    for k, v in pairs:
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"usermeta: keys and values must be str, got {k!r}: {v!r}")
    return pairs


def get_request(
    bucket: str | bytes, key: str | bytes, *, r: Quorum | None, pr: Quorum | None, timeout_ms: int | None
) -> GetRequest:
    return GetRequest(
        as_bytes(bucket, "bucket"),
        as_bytes(key, "key"),
        r=check_quorum("r", r),
        pr=check_quorum("pr", pr),
        timeout_ms=check_timeout(timeout_ms),
    )


def put_request(
    bucket: str | bytes,
    key: str | bytes,
    value: str | bytes,
    *,
    last_modified_ms: int,
    context: bytes | None = None,
    content_type: str = "application/octet-stream",
    charset: str | None = None,
    content_encoding: str | None = None,
    usermeta: Mapping[str, str] | None = None,
    w: Quorum | None = None,
    dw: Quorum | None = None,
    pw: Quorum | None = None,
    return_body: bool = False,
    timeout_ms: int | None = None,
) -> PutRequest:
    """A str value is sent as UTF-8 and, unless a charset is given, labelled "utf-8"."""
    if isinstance(value, str) and charset is None:
        charset = "utf-8"
    if not isinstance(content_type, str):
        raise TypeError(f"content_type: expected str, got {type(content_type).__name__}")
    content = Content(
        as_bytes(value, "value"),
        content_type=content_type,
        charset=_optional_str(charset, "charset"),
        content_encoding=_optional_str(content_encoding, "content_encoding"),
        usermeta=_usermeta(usermeta),
        last_modified_ms=last_modified_ms,
    )
    return PutRequest(
        as_bytes(bucket, "bucket"),
        as_bytes(key, "key"),
        content,
        context=_context(context),
        w=check_quorum("w", w),
        dw=check_quorum("dw", dw),
        pw=check_quorum("pw", pw),
        return_body=bool(return_body),
        timeout_ms=check_timeout(timeout_ms),
    )


def delete_request(
    bucket: str | bytes,
    key: str | bytes,
    *,
    context: bytes | None = None,
    w: Quorum | None = None,
    dw: Quorum | None = None,
    pw: Quorum | None = None,
    timeout_ms: int | None = None,
) -> DeleteRequest:
    return DeleteRequest(
        as_bytes(bucket, "bucket"),
        as_bytes(key, "key"),
        context=_context(context),
        w=check_quorum("w", w),
        dw=check_quorum("dw", dw),
        pw=check_quorum("pw", pw),
        timeout_ms=check_timeout(timeout_ms),
    )


# ---------------------------------------------------------------------------------------------------
# Settings shared by the drivers

Address: TypeAlias = tuple[str, int]


def parse_address(address: str | tuple[str, int]) -> Address:
    """An address as "host:port" (or "[v6]:port", or a (host, port) pair) as a (host, port) pair."""
    if isinstance(address, tuple):
        host, port = address
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"{address!r} is not host:port")
        host, port = host.removeprefix("[").removesuffix("]"), int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is outside 1..65535")
    return host, port


def parse_addresses(addresses: str | tuple[str, int] | Sequence[str | tuple[str, int]]) -> list[Address]:
    """One address or several; the drivers try them in order."""
    if isinstance(addresses, str):
        return [parse_address(addresses)]
    if isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int):
        return [parse_address((str(addresses[0]), addresses[1]))]  # one (host, port) pair
    parsed = [parse_address(a) for a in addresses]
    if not parsed:
        raise ValueError("no address given")
    return parsed


def reply_wait_s(timeout_ms: int | None, timeout_s: float, margin_s: float) -> float:
    """How long a driver waits for a reply before raising `Timeout` itself.

    The server answers every request by its own deadline (the request's timeout_ms, or the cluster's
    default), with a typed Timeout naming the replicas that answered; that is the answer to prefer.
    The client's wait is only a safety net for a server that stopped answering, so it runs `margin_s`
    past the request's timeout_ms, or `timeout_s` when the request names none.
    """
    return timeout_s if timeout_ms is None else timeout_ms / 1000 + margin_s


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
