"""The Riak KV compatible HTTP API: thin aiohttp handlers over the pure mapping (riak_mapping.py).

Everything Riak-specific (paths, parameters, headers, status codes, sibling formats) lives in the
mapping and is tested without sockets; this module only reads the request, runs the operation the
mapping asked for and writes the `HttpResponse` back unchanged (header order and repeats kept).

The seam to the node: the server is given a `Submit` (hand a request to the Node, await its reply),
a `Stats` (the node's counters) and a `RequestMetrics` (latencies, siblings, failures; riak_stats.py).
The api layer does not import the runtime; the CLI wires them (cli/node_http.py). Bucket types are not
served: `/types/...` is a 404 and `riak_kv_wm_bucket_type` is not advertised.

Bad input never gives a 5xx: the mapping turns every problem into a 4xx, an oversized body is a 413
before it is read in full, and malformed HTTP is aiohttp's own 400. A 500 means a storage failure, a
503 that too few replicas answered. A streamed listing whose client goes away mid-way just stops.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from dynakv.api.riak_http import HttpResponse, text_response
from dynakv.api.riak_mapping import (
    ObjectDelete,
    ObjectGet,
    ObjectPut,
    Operation,
    map_request,
    precondition_failed_response,
    render_delete,
    render_get,
    render_put,
)
from dynakv.api.riak_service import ServiceOp, expected_replies, render_service, stream_chunks
from dynakv.api.riak_stats import RequestMetrics, metrics_response, stats_response
from dynakv.core.config import Limits
from dynakv.protocol.messages import (
    BucketPropsReply,
    DeleteReply,
    Failure,
    GetBucketProps,
    GetReply,
    GetRequest,
    ListKeysRequest,
    ListReply,
    NodeReply,
    NodeRequest,
    PutReply,
)

log = logging.getLogger(__name__)

Submit = Callable[[NodeRequest], Awaitable[NodeReply]]
Stats = Callable[[], Mapping[str, int]]

# Room above the largest value for the rest of a request body (none today), so a value just past the
# limit still gets the mapping's own 413 text; anything larger is refused before it is read.
BODY_HEADROOM: Final = 64 * 1024
# Seconds a stopping server waits for requests in flight (a stopped Node answers none of them).
SHUTDOWN_TIMEOUT_S: Final = 1.0


def internal_error_response(what: str, reply: NodeReply) -> HttpResponse:
    """A reply of the wrong type: a bug in the node, never bad input."""
    log.error("%s got an unexpected reply %r", what, reply)
    return text_response(500, f"internal error: unexpected reply to {what}")


def to_web(response: HttpResponse) -> web.Response:
    """The response as aiohttp writes it; repeated headers stay separate lines."""
    return web.Response(status=response.status, headers=response.headers, body=response.body or None)


class RiakHttpServer:
    """One node's HTTP API. `start` binds (port 0 allowed) and returns the bound (host, port)."""

    def __init__(
        self,
        submit: Submit,
        stats: Stats,
        limits: Limits,
        rng: random.Random | None = None,
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.submit = submit
        self.stats = stats
        self.metrics = metrics
        self.limits = limits
        self.body_bytes_max = limits.value_bytes_max + BODY_HEADROOM
        self.rng = rng or random.Random()  # seeded from the OS: generated keys must not repeat
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.body_bytes_max)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def start(self, host: str, port: int) -> tuple[str, int]:
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0]  # the real port when port 0 was asked for
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request)
        if isinstance(body, HttpResponse):
            response = to_web(body)
            response.force_close()  # the unread rest of the body must not be taken as the next request
            return response
        raw_path, _, query = request.raw_path.partition("?")
        op = map_request(
            request.method,
            raw_path,
            query,
            request.headers.items(),
            body,
            now_ms=int(time.time() * 1000),
            rng=self.rng,
            limits=self.limits,
        )
        if isinstance(op, ServiceOp):
            return await self._service(request, op)
        return to_web(await self._run(op))

    async def _read_body(self, request: web.Request) -> bytes | HttpResponse:
        length = request.content_length
        if length is not None and length > self.body_bytes_max:
            return text_response(413, f"request body is {length} bytes, above {self.body_bytes_max}")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return text_response(413, f"request body is above {self.body_bytes_max} bytes")

    async def _run(self, op: Operation | HttpResponse) -> HttpResponse:
        if isinstance(op, HttpResponse):
            return op
        if isinstance(op, ObjectGet):
            reply = await self.submit(op.request)
            if not isinstance(reply, GetReply | Failure):
                return internal_error_response("a get", reply)
            return render_get(op, reply)
        if isinstance(op, ObjectPut):
            return await self._put(op)
        if isinstance(op, ObjectDelete):
            deleted = await self.submit(op.request)
            if not isinstance(deleted, DeleteReply | Failure):
                return internal_error_response("a delete", deleted)
            return render_delete(deleted)
        assert not isinstance(op, ServiceOp), op  # handle() runs those
        if op.kind == "stats":
            return stats_response(self.stats(), self.metrics)
        assert op.kind == "metrics", op
        return metrics_response(self.metrics)

    async def _service(self, request: web.Request, op: ServiceOp) -> web.StreamResponse:
        """A listing, props or preflist request: one node request (two for a legacy listing that shows
        the props too), then the mapped answer, or a streamed listing."""
        reply = await self.submit(op.request)
        if not isinstance(reply, expected_replies(op)):
            return to_web(internal_error_response(type(op.request).__name__, reply))
        props: BucketPropsReply | Failure | None = None
        if op.with_props and isinstance(op.request, ListKeysRequest) and not isinstance(reply, Failure):
            got = await self.submit(GetBucketProps(op.request.bucket))
            if not isinstance(got, BucketPropsReply | Failure):
                return to_web(internal_error_response("a listing's props", got))
            props = got
        if op.stream and isinstance(reply, ListReply) and not isinstance(props, Failure):
            return await self._stream(request, op, reply, props)
        return to_web(render_service(op, reply, props))

    async def _stream(
        self, request: web.Request, op: ServiceOp, reply: ListReply, props: BucketPropsReply | None
    ) -> web.StreamResponse:
        """A chunked 200 of back-to-back JSON objects. A client that goes away mid-way (the reference
        client abandons streams) only ends this response: the write fails and the rest is dropped."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            for chunk in stream_chunks(op, reply, props):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:  # reset or closed by the peer (aiohttp raises ConnectionResetError)
            log.debug("a client left a streamed listing of %d names mid-way", len(reply.names))
            response.force_close()
        return response

    async def _put(self, op: ObjectPut) -> HttpResponse:
        if op.if_none_match:
            # If-None-Match: * reads first, as Riak does: 412 when the key holds a live value.
            request = op.request
            found = await self.submit(GetRequest(request.bucket, request.key, timeout_ms=request.timeout_ms))
            if isinstance(found, Failure):
                return render_put(op, found)
            if not isinstance(found, GetReply):
                return internal_error_response("a conditional put's get", found)
            if found.found and found.siblings:
                return precondition_failed_response()
        reply = await self.submit(op.request)
        if not isinstance(reply, PutReply | Failure):
            return internal_error_response("a put", reply)
        return render_put(op, reply)
