"""Wiring of the HTTP API (api/http_server.py) into a running node (runtime/node_runner.py).

The api layer may not import the runtime and the runtime may not import the api above it, so the
CLI joins them: `start_http` is the `FrontEnd` that `dynakv node` hands to `node_runner.run_node`. It
runs on the node's own event loop, and its requests enter the Node through `NodeRunner.request`, the
same path (a ref per request) as the native protocol's.
"""

from __future__ import annotations

from collections.abc import Mapping

from dynakv.api.http_server import RiakHttpServer
from dynakv.core.config import Limits
from dynakv.runtime.node_runner import NodeRunner, Stopper
from dynakv.runtime.node_state import Address


async def start_http(runner: NodeRunner, address: Address) -> tuple[Address, Stopper]:
    """Serve the HTTP API on `address` (a loopback address, port 0 allowed); the bound address and
    the coroutine function that stops the server."""

    def stats() -> Mapping[str, int]:
        return dict(runner.counters)

    limits = Limits.from_mapping(runner.config.limits)
    server = RiakHttpServer(runner.request, stats, limits, metrics=runner.metrics)
    host, port = await server.start(address.host, address.port)
    return Address(host, port), server.stop
