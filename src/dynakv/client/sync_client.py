"""The blocking client: the same API as `AsyncClient`, over a plain socket and the same sans-IO core.

One request is in flight at a time (calls from several threads take turns on a lock); the reply is
still matched by request id, so a late reply to a request this client gave up on is recognised and
dropped rather than taken for the answer to the next one.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final

from dynakv.core.config import Quorum
from dynakv.protocol.admin_messages import RepairStatusRequest, StatusRequest
from dynakv.protocol.cluster_admin_messages import (
    ClusterCommitRequest,
    ClusterPlanReply,
    ClusterPlanRequest,
    ClusterStageRequest,
    ClusterTransfersReply,
    ClusterTransfersRequest,
    StageKind,
)
from dynakv.protocol.messages import (
    GetBucketProps,
    ListBucketsRequest,
    NodeRequest,
    ResetBucketProps,
)

from .models import (
    ClusterStatus,
    ConnectionFailed,
    ConnectionLost,
    DynakvClientError,
    GetResult,
    PutResult,
    RepairProgress,
    Timeout,
)
from .protocol import (
    Address,
    ClientConnection,
    Outcome,
    Result,
    State,
    as_bytes,
    check_timeout,
    delete_request,
    format_address,
    get_request,
    parse_addresses,
    put_request,
    reply_wait_s,
)
from .service_requests import list_keys_request, repair_request, set_props_request

_RECV_BYTES: Final = 256 * 1024

AddressArg = str | tuple[str, int] | Sequence[str | tuple[str, int]]


class Client:
    """A blocking client of a dynakv cluster; see `AsyncClient` for the behaviour, which is the same.

    It connects at construction to the first of `addresses` that answers (ConnectionFailed if none
    does); after a lost connection the next call connects to the next address in turn.
    """

    def __init__(
        self,
        addresses: AddressArg,
        *,
        timeout_s: float = 10.0,
        timeout_margin_s: float = 1.0,
        connect_timeout_s: float = 5.0,
        cluster: str = "",
        name: str = "dynakv-client",
        frame_bytes_max: int | None = None,
    ) -> None:
        self._addresses = parse_addresses(addresses)
        self._timeout_s = timeout_s
        self._timeout_margin_s = timeout_margin_s
        self._connect_timeout_s = connect_timeout_s
        self._cluster = cluster
        self._name = name
        self._frame_bytes_max = frame_bytes_max
        self._next = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._conn: ClientConnection | None = None
        self._address: Address | None = None
        self._closed = False
        with self._lock:
            self._open()

    @property
    def address(self) -> str | None:
        """The address of the node currently connected to."""
        return format_address(self._address) if self._address is not None and self._sock else None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()

    # -- the API ----------------------------------------------------------------------------------------

    def get(
        self,
        bucket: str | bytes,
        key: str | bytes,
        *,
        r: Quorum | None = None,
        pr: Quorum | None = None,
        timeout_ms: int | None = None,
    ) -> GetResult:
        """Every visible sibling of the key and the context to write back with (`found` False if none)."""
        result = self._call(get_request(bucket, key, r=r, pr=pr, timeout_ms=timeout_ms), timeout_ms)
        assert isinstance(result, GetResult)
        return result

    def put(
        self,
        bucket: str | bytes,
        key: str | bytes,
        value: str | bytes,
        *,
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
    ) -> PutResult:
        """Store `value` as a successor of `context`. `last_modified_ms` is this client's clock, kept as
        given by the server (as Riak keeps the coordinator's X-Riak-Last-Modified)."""
        request = put_request(
            bucket,
            key,
            value,
            last_modified_ms=time.time_ns() // 1_000_000,
            context=context,
            content_type=content_type,
            charset=charset,
            content_encoding=content_encoding,
            usermeta=usermeta,
            w=w,
            dw=dw,
            pw=pw,
            return_body=return_body,
            timeout_ms=timeout_ms,
        )
        result = self._call(request, timeout_ms)
        assert isinstance(result, PutResult)
        return result

    def delete(
        self,
        bucket: str | bytes,
        key: str | bytes,
        *,
        context: bytes | None = None,
        w: Quorum | None = None,
        dw: Quorum | None = None,
        pw: Quorum | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        """Delete the key: write a tombstone superseding what `context` saw.

        Without a context (None or b"") the coordinating server deletes what it holds of the key, as
        Riak does for a delete without a vclock; a write it has not seen yet survives as a sibling.
        """
        request = delete_request(bucket, key, context=context, w=w, dw=dw, pw=pw, timeout_ms=timeout_ms)
        result = self._call(request, timeout_ms)
        assert result is None

    # -- listings, bucket props and administration ----------------------------------------------------

    def list_keys(self, bucket: str | bytes, *, timeout_ms: int | None = None) -> list[bytes]:
        """The keys of `bucket` that hold a live value on some replica, sorted (a full scan, as Riak's)."""
        result = self._call(list_keys_request(bucket, timeout_ms), timeout_ms)
        assert isinstance(result, list)
        return result

    def list_buckets(self, *, timeout_ms: int | None = None) -> list[bytes]:
        """The buckets that hold a live value on some replica, sorted (a full scan, as Riak's)."""
        request = ListBucketsRequest(check_timeout(timeout_ms))
        result = self._call(request, timeout_ms)
        assert isinstance(result, list)
        return result

    def bucket_props(self, bucket: str | bytes) -> dict[str, object]:
        """The bucket's effective properties by their Riak names, as Riak's props GET shows them."""
        return self._props(GetBucketProps(as_bytes(bucket, "bucket")))

    def set_bucket_props(self, bucket: str | bytes, **props: object) -> dict[str, object]:
        """Change some properties (Riak names: n_val=5, allow_mult=True, ...), cluster-wide; the others
        keep their values. Returns the bucket's effective properties after the change."""
        return self._props(set_props_request(bucket, props))

    def reset_bucket_props(self, bucket: str | bytes) -> dict[str, object]:
        """Forget the bucket's own properties: it takes the cluster's defaults again."""
        return self._props(ResetBucketProps(as_bytes(bucket, "bucket")))

    def repair(self, partition: int | None = None) -> RepairProgress:
        """Start anti-entropy now on the connected node: with the other replicas of `partition`, or of
        every partition the node is a primary of. Returns at once; poll `repair_status`."""
        result = self._call(repair_request(partition), None)
        assert isinstance(result, RepairProgress)
        return result

    def repair_status(self) -> RepairProgress:
        """How far the last repair started on the connected node got."""
        result = self._call(RepairStatusRequest(), None)
        assert isinstance(result, RepairProgress)
        return result

    def status(self) -> ClusterStatus:
        """The cluster as the connected node sees it: members, reachability, ownership, hints, transfers."""
        result = self._call(StatusRequest(), None)
        assert isinstance(result, ClusterStatus)
        return result

    def cluster_stage(self, kind: StageKind, name: str = "") -> ClusterPlanReply:
        """Stage `leave NAME`, `remove NAME` or `clear` on the connected node (gossip spreads it)."""
        return self._plan_call(ClusterStageRequest(kind, name))

    def cluster_plan(self) -> ClusterPlanReply:
        """What a commit would do, as the connected node sees the staged changes."""
        return self._plan_call(ClusterPlanRequest())

    def cluster_commit(self) -> ClusterPlanReply:
        """Carry out the staged changes (on the claimant; the connected node forwards it there)."""
        return self._plan_call(ClusterCommitRequest())

    def cluster_transfers(self) -> ClusterTransfersReply:
        """The pending ownership moves of the ring the connected node holds."""
        result = self._call(ClusterTransfersRequest(), None)
        assert isinstance(result, ClusterTransfersReply)
        return result

    def _plan_call(self, request: NodeRequest) -> ClusterPlanReply:
        result = self._call(request, None)
        assert isinstance(result, ClusterPlanReply)
        return result

    def _props(self, request: NodeRequest) -> dict[str, object]:
        result = self._call(request, None)
        assert isinstance(result, dict)
        return result

    # -- one request at a time ------------------------------------------------------------------------

    def _call(self, request: NodeRequest, timeout_ms: int | None) -> Result:
        wait_s = reply_wait_s(timeout_ms, self._timeout_s, self._timeout_margin_s)
        with self._lock:
            if self._closed:
                raise ConnectionFailed("the client is closed")
            if self._conn is None or self._conn.state is State.CLOSED:
                self._open()
            outcome = self._exchange(request, wait_s)
        if isinstance(outcome, DynakvClientError):
            raise outcome
        return outcome

    def _exchange(self, request: NodeRequest, wait_s: float) -> Outcome:
        sock, conn = self._sock, self._conn
        assert sock is not None and conn is not None
        request_id, frame = conn.send(request)
        deadline = time.monotonic() + wait_s
        try:
            # A send that times out leaves part of a frame on the wire, so it is a lost connection.
            sock.settimeout(wait_s)
            sock.sendall(frame)
            while True:
                outcome = self._receive(sock, conn, request_id, deadline, wait_s)
                if outcome is not _Nothing.YET:
                    return outcome
        except OSError as err:
            return self._lost(conn, request_id, f"{err}")
        except BaseException:
            # Interrupted (Ctrl-C) mid-request: part of a frame may be on the wire or unread, so this
            # connection cannot be trusted; the next call opens a new one.
            self._lost(conn, request_id, "interrupted")
            raise

    def _receive(
        self, sock: socket.socket, conn: ClientConnection, request_id: int, deadline: float, wait_s: float
    ) -> Outcome | _Nothing:
        """One read: the request's outcome if it completed, `_Nothing.YET` otherwise."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            conn.abandon(request_id)  # the connection stays: its late reply will be dropped
            where = format_address(self._address) if self._address else "the server"
            return Timeout(None, None, f"no reply from {where} within {wait_s:.1f} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(_RECV_BYTES)
        except TimeoutError:
            return _Nothing.YET
        if not data:
            return self._lost(conn, request_id, "the server closed the connection")
        mine: Outcome | _Nothing = _Nothing.YET
        for rid, outcome in conn.receive_data(data):
            if rid == request_id:
                mine = outcome
        if conn.error is not None:
            self._drop()
        return mine

    def _lost(self, conn: ClientConnection, request_id: int, reason: str) -> Outcome:
        where = format_address(self._address) if self._address else "the server"
        outcomes = dict(conn.connection_lost(f"the connection to {where} failed: {reason}"))
        self._drop()
        return outcomes.get(request_id, ConnectionLost(reason))

    # -- connections ------------------------------------------------------------------------------------

    def _drop(self) -> None:
        sock, self._sock, self._conn = self._sock, None, None
        if sock is not None:
            sock.close()

    def _open(self) -> None:
        errors: list[str] = []
        count = len(self._addresses)
        for i in range(count):
            index = (self._next + i) % count
            address = self._addresses[index]
            try:
                self._sock, self._conn = self._open_one(address)
            except (OSError, DynakvClientError) as err:
                errors.append(f"{format_address(address)}: {err or type(err).__name__}")
                continue
            self._address = address
            self._next = (index + 1) % count  # after a loss, move on rather than retry the same node
            return
        raise ConnectionFailed("could not connect to " + "; ".join(errors))

    def _open_one(self, address: Address) -> tuple[socket.socket, ClientConnection]:
        conn = ClientConnection(name=self._name, cluster=self._cluster, frame_bytes_max=self._frame_bytes_max)
        sock = socket.create_connection(address, timeout=self._connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(conn.initiate())
            deadline = time.monotonic() + self._connect_timeout_s
            while conn.state is State.HANDSHAKE:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = sock.recv(_RECV_BYTES)
                if not data:
                    raise ConnectionLost("closed during the handshake")
                conn.receive_data(data)
            if conn.error is not None:
                raise conn.error
        except BaseException:
            sock.close()
            raise
        return sock, conn


class _Nothing(enum.Enum):
    """What a read returns when it did not complete the request (a sentinel mypy can narrow)."""

    YET = 0
