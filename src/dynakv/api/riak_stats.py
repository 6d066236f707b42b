"""`GET /stats` (Riak's JSON stats) and `GET /metrics` (Prometheus text), from the node's counters and
the runtime's request metrics.

The api layer does not import the runtime: the server is handed a `RequestMetrics` (runtime/metrics.py
implements it) and a callable giving the node's counters, both wired by cli/node_http.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from dynakv.api.riak_http import HttpResponse, text_response
from dynakv.api.riak_service import JSON_TYPE
from dynakv.protocol.messages import FailureKind, TransferKind

# Reported as Riak's version: 2.0.x turns on the client's vclock deletes and streamed lists, and staying
# below 2.1 keeps it from asking for preflists (riak-http.md section 0.2).
RIAK_KV_VERSION: Final = "2.0.0"
# The node counters /stats reports as Riak's names, by the request type the data path counts.
STAT_COUNTERS: Final = {
    "gets": "requests.GetRequest",
    "puts": "requests.PutRequest",
    "deletes": "requests.DeleteRequest",
    "read_repairs": "read_repairs",
    "pending_hints": "hints.pending",
    # Outbound transfers (every kind) this node runs now; `transfers` is the older name of the same.
    "transfers": "transfers.active",
    "transfers_active": "transfers.active",
    # Ownership moves not yet complete in this node's cluster state (protocol/cluster.py).
    "transfers_pending": "transfers.pending",
    "transfer_keys_received": "transfer.entries_received",
    # dynakv's own: partitions handed off whose old copies are still to be deleted, and keys deleted.
    "ownership_cleanup_pending": "ownership.cleanup_pending",
    "ownership_cleaned_keys": "ownership.cleaned_keys",
}
# Totals since the node started, by transfer kind (transfer_manager.py): `transfer_<kind>_<name>`.
TRANSFER_TOTALS: Final = {
    "keys_sent": "entries_sent",
    "bytes_sent": "bytes_sent",  # resends included
    "keys_acked": "entries_acked",
    "bytes_acked": "bytes_acked",
}
# Riak's percentile names, in the order Riak lists them: mean, median, 95th, 99th, maximum.
PERCENTILES: Final = ("mean", "median", "95", "99", "100")
# Ops whose latency Riak names (its deletes are puts of a tombstone, with no stat of their own).
RIAK_TIMES: Final = {"get": "node_get_fsm_time", "put": "node_put_fsm_time"}
# Ops always listed in `latency_ms`, with zeros before the first request.
CORE_OPS: Final = ("get", "put", "delete")


class RequestMetrics(Protocol):
    """What the runtime measures of the requests its node serves (native and HTTP alike)."""

    def ops(self) -> Sequence[str]:
        """The ops with at least one latency sample ("get", "put", "delete", "list_keys", ...)."""

    def latency_us(self, op: str) -> Mapping[str, float]:
        """The op's latency over its recent requests in microseconds, by PERCENTILES (zeros if none)."""

    def siblings(self) -> Mapping[str, float]:
        """Siblings per successful get that found a value over the recent ones, by PERCENTILES."""

    def failures(self) -> Mapping[str, int]:
        """Failed requests by FailureKind value, since the node started."""

    def pending_requests(self) -> int:
        """Requests handed to the node and not answered yet."""

    def exposition(self) -> tuple[str, bytes]:
        """(content type, body) of the Prometheus text exposition."""


def stats_document(counters: Mapping[str, int], metrics: RequestMetrics | None) -> dict[str, object]:
    """`riak_kv_version` (which the client reads) and the node's numbers: counts since it started
    (requests from its clients or forwarded by a peer), hints and transfers (levels now, and keys and
    bytes moved by kind), latencies in microseconds under Riak's names plus dynakv's own `latency_ms`
    map (every op), siblings seen by gets, and failures by kind."""
    stats: dict[str, object] = {"riak_kv_version": RIAK_KV_VERSION}
    for name, counter in STAT_COUNTERS.items():
        stats[name] = int(counters.get(counter, 0))
    for kind in TransferKind:
        for name, counter in TRANSFER_TOTALS.items():
            stats[f"transfer_{kind.value}_{name}"] = int(counters.get(f"transfer.{counter}.{kind.value}", 0))
    if metrics is None:
        return stats
    for op, prefix in RIAK_TIMES.items():
        latency = metrics.latency_us(op)
        for p in PERCENTILES:
            stats[f"{prefix}_{p}"] = round(latency.get(p, 0))
    siblings = metrics.siblings()
    for p in PERCENTILES:
        value = siblings.get(p, 0)
        stats[f"node_get_fsm_siblings_{p}"] = round(value, 3) if p == "mean" else round(value)
    ops = sorted(set(CORE_OPS) | set(metrics.ops()))
    stats["latency_ms"] = {
        op: {p: round(v / 1000, 3) for p, v in metrics.latency_us(op).items()} for op in ops
    }
    failed = metrics.failures()
    stats["failures"] = {kind.value: int(failed.get(kind.value, 0)) for kind in FailureKind}
    stats["pending_requests"] = metrics.pending_requests()
    return stats


def stats_response(counters: Mapping[str, int], metrics: RequestMetrics | None) -> HttpResponse:
    body = json.dumps(stats_document(counters, metrics), sort_keys=True).encode()
    return HttpResponse(200, (("Content-Type", JSON_TYPE),), body)


def metrics_response(metrics: RequestMetrics | None) -> HttpResponse:
    if metrics is None:
        return text_response(404, "metrics are not served by this server")
    content_type, body = metrics.exposition()
    return HttpResponse(200, (("Content-Type", content_type),), body)
